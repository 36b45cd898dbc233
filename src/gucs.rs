//! The settings of pg_cache. Statics stay private; the rest of the crate reads them
//! through the getters below.

use std::ffi::CStr;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

/// What a call does when it meets a cache limit (`pg_cache.on_limit`).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum OnLimit {
    /// Raise the ERROR (the default): the caller's transaction aborts.
    Error,
    /// Send a WARNING, count the call in `cache_stats().skipped`, and skip it.
    Warning,
}

/// Most cache slots a server may have: slot indexes are 32 bits, but each slot takes
/// about 1.45 kB of shared memory (about 1,180 bytes in `pg_cache.memory`, two LWLocks), so a
/// million is about 1.45 GB.
const MAX_SLOTS: i32 = 1_000_000;
static MEMORY_KB: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024);
static MAX_CACHES: GucSetting<i32> = GucSetting::<i32>::new(4096);
static MAX_CACHES_PER_DATABASE: GucSetting<i32> = GucSetting::<i32>::new(768);
static DATABASE_SHARE: GucSetting<i32> = GucSetting::<i32>::new(100);
static MAX_KEY_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1024);
static MAX_VALUE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);
static DEFAULT_SIZE_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(1024);
static DEFAULT_DURATION_S: GucSetting<i32> = GucSetting::<i32>::new(0);
static EXPIRY_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
static ON_LIMIT: GucSetting<OnLimit> = GucSetting::<OnLimit>::new(OnLimit::Error);
static SNAPSHOT_READS: GucSetting<bool> = GucSetting::<bool>::new(false);
static KEEP_FILLS_ON_ROLLBACK: GucSetting<bool> = GucSetting::<bool>::new(false);
static STANDBY_INVALIDATION: GucSetting<bool> = GucSetting::<bool>::new(true);
static WARM_RESTART: GucSetting<bool> = GucSetting::<bool>::new(true);
static CONTEXT_SETTINGS: GucSetting<Option<std::ffi::CString>> = GucSetting::<Option<std::ffi::CString>>::new(None);

pub fn init() {
    GucRegistry::define_int_guc(
        c"pg_cache.memory",
        c"Shared memory for all caches of all databases.",
        c"Set at server start. When it is full, writes evict least recently used entries.",
        &MEMORY_KB,
        1024,
        i32::MAX / 2,
        GucContext::Postmaster,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"pg_cache.max_caches",
        c"Most named caches, over all databases.",
        c"Set at server start.",
        &MAX_CACHES,
        1,
        MAX_SLOTS,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_cache.max_caches_per_database",
        c"Most named caches of one database.",
        c"Keeps one database from taking every slot of the server; unused slots are reclaimed first.",
        &MAX_CACHES_PER_DATABASE,
        1,
        MAX_SLOTS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_cache.database_share",
        c"Percent of pg_cache.memory one database may hold when memory is full.",
        c"When a write needs room, a database over its share is evicted from first; 100 gives no share.",
        &DATABASE_SHARE,
        1,
        100,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_cache.max_key_size",
        c"Longest key accepted by pg_cache functions.",
        c"",
        &MAX_KEY_SIZE,
        1,
        1024 * 1024,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_cache.max_value_size",
        c"Largest jsonb value accepted by cache_set.",
        c"",
        &MAX_VALUE_SIZE,
        1,
        i32::MAX / 2,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_cache.default_size_limit",
        c"Most entries of a cache declared without size_limit.",
        c"",
        &DEFAULT_SIZE_LIMIT,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_cache.default_duration",
        c"Time to live of entries of caches declared without duration; 0 means none.",
        c"",
        &DEFAULT_DURATION_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_cache.expiry_interval",
        c"How often the pg_cache worker reclaims expired and cleared entries.",
        c"Each pass visits every bucket in short slices; it is skipped when nothing can have expired.",
        &EXPIRY_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"pg_cache.context_settings",
        c"Comma-separated settings whose values are part of every context-dependent cache key.",
        c"For example 'app.lang, app.company'.",
        &CONTEXT_SETTINGS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_cache.on_limit",
        c"What a pg_cache call does when it meets a limit: error, or warning and skip.",
        c"Limits: pg_cache.max_key_size, pg_cache.max_value_size, what one entry can hold, a cache's max_bytes, no cache slot left. With warning the call skips (a write leaves its key invalidated, a read misses) and is counted in cache_stats().skipped.",
        &ON_LIMIT,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_cache.snapshot_reads",
        c"Whether reads at REPEATABLE READ and SERIALIZABLE see only entries installed before their transaction began.",
        c"Off: a read sees the latest committed entry, as for sequences and other shared state. On: an entry installed after the transaction began is a miss for it, as a row committed after its snapshot is invisible.",
        &SNAPSHOT_READS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_cache.keep_fills_on_rollback",
        c"Whether a ROLLBACK of a transaction that wrote no data keeps its cache fills.",
        c"For read-only work that ends with ROLLBACK: its fills (cache_set) install as at a commit, judged stale the same way; only when the transaction has no transaction ID and wrote nothing else to pg_cache.",
        &KEEP_FILLS_ON_ROLLBACK,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_cache.standby_invalidation",
        c"Whether commits write their cache invalidations to WAL for hot standbys.",
        c"Set at server start (a reload would reach backends one by one, and a standby could trust a primary whose backends do not all log yet). Off: standbys keep no fills. Turn it off before removing pg_cache from shared_preload_libraries.",
        &STANDBY_INVALIDATION,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_cache.warm_restart",
        c"Whether caches come back after a clean shutdown.",
        c"On: the server dumps live entries when it shuts down cleanly and loads them when it next starts from that very shutdown; never after a crash, a restored backup, point-in-time recovery or on a standby.",
        &WARM_RESTART,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // A misspelt pg_cache.* setting is an error rather than a placeholder silently
    // ignored (as pg_stat_statements does); ones already set in postgresql.conf are
    // reported with a WARNING and removed.
    // SAFETY: called from _PG_init, after this module defined its settings.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"pg_cache".as_ptr()) };
}

pub fn memory_bytes() -> usize {
    MEMORY_KB.get() as usize * 1024
}

pub fn max_caches() -> u32 {
    MAX_CACHES.get() as u32
}

pub fn max_caches_per_database() -> u32 {
    MAX_CACHES_PER_DATABASE.get() as u32
}

pub fn database_share() -> u32 {
    DATABASE_SHARE.get() as u32
}

pub fn max_key_size() -> usize {
    MAX_KEY_SIZE.get() as usize
}

pub fn max_value_size() -> usize {
    MAX_VALUE_SIZE.get() as usize
}

pub fn default_size_limit() -> u64 {
    DEFAULT_SIZE_LIMIT.get() as u64
}

pub fn on_limit() -> OnLimit {
    ON_LIMIT.get()
}

pub fn snapshot_reads() -> bool {
    SNAPSHOT_READS.get()
}

pub fn warm_restart() -> bool {
    WARM_RESTART.get()
}

pub fn standby_invalidation() -> bool {
    STANDBY_INVALIDATION.get()
}

pub fn keep_fills_on_rollback() -> bool {
    KEEP_FILLS_ON_ROLLBACK.get()
}

/// `None` when entries live until evicted or cleared.
pub fn default_duration_us() -> Option<i64> {
    let s = DEFAULT_DURATION_S.get();
    (s > 0).then(|| s as i64 * 1_000_000)
}

pub fn expiry_interval() -> std::time::Duration {
    std::time::Duration::from_millis(EXPIRY_INTERVAL_MS.get() as u64)
}

/// The raw `pg_cache.context_settings` string, `None` when unset.
pub fn context_settings() -> Option<&'static CStr> {
    // SAFETY: PostgreSQL keeps the string it stores for the setting alive until the
    // setting changes; callers copy what they need before running more SQL.
    unsafe {
        let p = *CONTEXT_SETTINGS.as_ptr();
        (!p.is_null()).then(|| CStr::from_ptr(p))
    }
}
