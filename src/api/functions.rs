//! The SQL functions. None is STRICT: a NULL argument gets a clear ERROR instead of a
//! silent NULL result. Reads run only in the leader (PARALLEL RESTRICTED) because
//! the transaction's own writes live in the leader's memory; writes are PARALLEL
//! UNSAFE.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use super::args::{self, check_admin, check_key, check_name, check_writable, check_positive, key_arg, resolve_read};
use crate::registry::{self, declarations};
use crate::errors;
use super::jsonb::RawJsonb;
use super::raw::{RawBytea, RawValue};
use pg_cache_core::invalidation::Invalidation;
use pg_cache_core::key;
use pg_cache_core::store::{CacheConfig, Policy, RoleList, MAX_ROLES};
use pg_cache_core::store::Lookup;
use pg_cache_core::writeset::{try_copy, try_string, Expiry, Op, Pending, SetMode};
use crate::pg::{self, now};
use crate::{pending, shmem};

/// A copy of a cache name for the write set; 53200 rather than an abort when memory is out.
pub(super) fn owned(name: &str) -> String {
    try_string(name).unwrap_or_else(|_| errors::out_of_memory("copying a cache name"))
}

/// Stores `value` under `key` when the transaction commits, as a fill: dropped if
/// the key, its cache or its database was invalidated by a commit after this
/// transaction started (it may have been computed from older rows). It expires
/// after `ttl`, at `expires_at` (`infinity`: never), or by its cache's duration.
///
/// The C symbol carries the signature's version (see `cache_create_v3`); the
/// previous one is [`cache_set_wrapper`].
#[pg_extern(name = "cache_set", volatile, parallel_unsafe)]
fn cache_set_v2(
    cache: Option<&str>,
    key: Option<&str>,
    value: Option<RawJsonb>,
    ttl: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Vec<Option<String>>>, "NULL"),
) {
    write_value("cache_set", cache, key, value, args::expiry(ttl, expires_at), SetMode::Fill, tags);
}

/// `cache_set` of a `bytea` value: read it back with `cache_get_bytes`.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_set_bytes(
    cache: Option<&str>,
    key: Option<&str>,
    value: Option<RawBytea>,
    ttl: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Vec<Option<String>>>, "NULL"),
) {
    write_value("cache_set_bytes", cache, key, value, args::expiry(ttl, expires_at), SetMode::Fill, tags);
}

/// The C symbol of `cache_set(cache, key, value, ttl)` of 0.1.0 to 0.3.0: a database
/// not yet updated keeps writing through it (cache_set is on every hot path) until
/// `ALTER EXTENSION pg_cache UPDATE`. Exported by hand: it has no SQL of its own.
#[no_mangle]
pub extern "C" fn pg_finfo_cache_set_wrapper() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[no_mangle]
#[pg_guard]
pub extern "C-unwind" fn cache_set_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: the SQL of those versions declares cache_set(text, text, jsonb,
    // interval), not STRICT: four arguments of these types, any of them NULL.
    let (cache, key, value, ttl) = unsafe {
        (
            pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 0),
            pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 1),
            pgrx::fcinfo::pg_getarg::<RawJsonb>(fcinfo, 2),
            pgrx::fcinfo::pg_getarg::<Interval>(fcinfo, 3),
        )
    };
    write_value("cache_set", cache, key, value, args::expiry(ttl, None), SetMode::Fill, None);
    pgrx::fcinfo::pg_return_void()
}

/// Stores `value` under `key` when the transaction commits, whatever committed
/// meanwhile (last committer wins); fills of the key by transactions that started
/// before this commit are dropped. Expiry as for `cache_set`.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_put(
    cache: Option<&str>,
    key: Option<&str>,
    value: Option<RawJsonb>,
    ttl: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Vec<Option<String>>>, "NULL"),
) {
    write_value("cache_put", cache, key, value, args::expiry(ttl, expires_at), SetMode::Put, tags);
}

/// `cache_put` of a `bytea` value: read it back with `cache_get_bytes`.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_put_bytes(
    cache: Option<&str>,
    key: Option<&str>,
    value: Option<RawBytea>,
    ttl: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Vec<Option<String>>>, "NULL"),
) {
    write_value("cache_put_bytes", cache, key, value, args::expiry(ttl, expires_at), SetMode::Put, tags);
}

#[allow(clippy::too_many_arguments)]
fn write_value<V: RawValue>(
    function: &str,
    cache: Option<&str>,
    key: Option<&str>,
    value: Option<V>,
    expiry: Expiry,
    mode: SetMode,
    tags: Option<Vec<Option<String>>>,
) {
    if mode == SetMode::Fill {
        args::check_fillable(function);
    } else {
        check_writable(function);
    }
    let name = check_name(cache);
    let key = key_arg(key);
    let value = value.unwrap_or_else(|| errors::null_argument("value"));
    // Every install invalidates its key for others' fills in flight: a set or put
    // is never skipped without that invalidation, so without a slot to record it
    // in, it raises whatever pg_cache.on_limit says.
    let (slot, config) = registry::resolve(name);
    args::check_write(name, &config);
    // Under pg_cache.on_limit = warning a key or value over a limit skips the write
    // (see args::Skipped) and the key is invalidated instead, as for a write that
    // finds no room at commit: whatever it meant to replace must not outlive it.
    let over = check_key(Some(slot), key).is_err();
    let stored = registry::stored_key(&config, key);
    let tags = if over { Ok(Vec::new()) } else { args::entry_tags(slot, tags) };
    let Ok(tags) = tags else {
        pending::push(Op::Delete { cache: owned(name), key: stored, seen: None });
        return;
    };
    if over || args::check_value(slot, &config, stored.len() + tags.len() * 8, value.bytes().len()).is_err() {
        pending::push(Op::Delete { cache: owned(name), key: stored, seen: None });
        return;
    }
    // The install reads this bucket at COMMIT: start loading it now.
    shmem::store().prefetch_bucket(key::hash(slot.index, &stored));
    let value = try_copy(value.bytes()).unwrap_or_else(|_| errors::out_of_memory("copying a value"));
    pending::push(Op::Set { cache: owned(name), key: stored, value, kind: V::KIND, expiry, mode, tags });
}

/// What this transaction's own writes say about the key: `Some` of its value (or of
/// `None`, deleted or cleared), or `None` when the shared cache decides. A value of
/// another kind than `V` is an error (`key` names it).
#[inline]
pub(super) fn own_value<V: RawValue>(name: &str, key: &str, stored: &[u8]) -> Option<Option<V>> {
    let own = pending::lookup(name, stored, |p| match p {
        Pending::Value(v, kind) if kind == V::KIND => Some(Ok(Some(V::build(v.len(), |out| out.copy_from_slice(v))))),
        Pending::Value(_, kind) => Some(Err(kind)),
        Pending::Deleted | Pending::Cleared => Some(Ok(None)),
        Pending::Unknown => None,
    });
    own.map(|own| own.unwrap_or_else(|kind| errors::other_kind(name, key, Some(kind), V::KIND)))
}

/// The value of `key`, or `default` when it is missing or expired.
#[pg_extern(volatile, parallel_restricted)]
fn cache_get(cache: Option<&str>, key: Option<&str>, default: default!(Option<RawJsonb>, "NULL")) -> Option<RawJsonb> {
    get(cache, key, default)
}

/// The `bytea` value of `key` (written by `cache_set_bytes` or `cache_put_bytes`),
/// or `default` when it is missing or expired.
#[pg_extern(volatile, parallel_restricted)]
fn cache_get_bytes(cache: Option<&str>, key: Option<&str>, default: default!(Option<RawBytea>, "NULL")) -> Option<RawBytea> {
    get(cache, key, default)
}

#[inline]
fn get<V: RawValue>(cache: Option<&str>, key: Option<&str>, default: Option<V>) -> Option<V> {
    let name = check_name(cache);
    let key = key_arg(key);
    let Ok((slot, config)) = resolve_read(name) else { return default };
    let Ok(key) = check_key(slot, key) else { return default };
    let stored = registry::stored_key(&config, key);
    if let Some(found) = own_value(name, key, &stored) {
        return found.or(default);
    }
    // No slot and no declaration: nothing was committed under the name.
    let Some(slot) = slot else { return default };
    let store = shmem::store();
    let hash = key::hash(slot.index, &stored);
    let hidden = args::hidden_tags(name);
    match store.lookup_as_of(slot, &stored, hash, V::KIND, args::view(&hidden), now, |len, copy| V::build(len, copy)) {
        Lookup::Hit(v) => {
            store.count_hit(slot, pg::stripe());
            Some(v)
        }
        Lookup::Miss => {
            store.count_miss(slot, pg::stripe());
            default
        }
        Lookup::Expired => {
            store.count_miss(slot, pg::stripe());
            store.remove_expired(slot, &stored, hash, now());
            default
        }
        Lookup::OtherKind(kind) => errors::other_kind(name, key, kind, V::KIND),
    }
}

/// Deletes `key` when the transaction commits; whether it was there.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_delete(cache: Option<&str>, key: Option<&str>) -> bool {
    check_writable("cache_delete");
    let name = check_name(cache);
    let key = key_arg(key);
    // An invalidation is never skipped: without a slot for the cache it raises.
    let (slot, config) = registry::resolve(name);
    args::check_write(name, &config);
    let key = args::key_to_invalidate(slot, key);
    let stored = registry::stored_key(&config, key);
    let own = pending::lookup(name, &stored, |p| match p {
        Pending::Value(..) => Some(true),
        Pending::Deleted | Pending::Cleared => Some(false),
        Pending::Unknown => None,
    });
    let existed = own.unwrap_or_else(|| {
        let hash = key::hash(slot.index, &stored);
        shmem::store().contains(slot, &stored, hash, args::latest_view(&args::hidden_tags(name)), now)
    });
    pending::push(Op::Delete { cache: owned(name), key: stored, seen: None });
    existed
}

/// Empties `cache` when the transaction commits; until then this transaction sees
/// only what it writes to it afterwards.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_clear(cache: Option<&str>) {
    check_writable("cache_clear");
    let name = check_name(cache);
    let (_, config) = registry::resolve(name);
    args::check_write(name, &config);
    pending::push(Op::Clear { cache: owned(name) });
    notify(name);
}

/// `NOTIFY pg_cache, payload` in this transaction: PostgreSQL delivers it at commit,
/// drops it on rollback or with a rolled-back savepoint, and merges duplicates.
pub(super) fn notify(payload: &str) {
    pg::notify("pg_cache", payload);
}

/// Empties every cache of the current database when the transaction commits.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_clear_all() {
    check_writable("cache_clear_all");
    shmem::store();
    pending::push(Op::ClearAll);
    notify("*");
}

/// The OIDs of `roles` (NULL: anyone), for `readers` or `writers`.
fn role_list(what: &str, roles: Option<Vec<Option<String>>>) -> (Option<Vec<pg_sys::Oid>>, RoleList) {
    let Some(names) = roles else { return (None, RoleList::ANYONE) };
    let oids: Vec<pg_sys::Oid> = names
        .into_iter()
        .map(|n| {
            let n = n.unwrap_or_else(|| errors::null_argument(&format!("an element of {what}")));
            let c = std::ffi::CString::new(n).unwrap_or_else(|_| errors::invalid(format!("{what} contains a NUL byte"), ""));
            // SAFETY: a NUL-terminated name; missing_ok = false raises 42704 for an unknown role.
            unsafe { pg_sys::get_role_oid(c.as_ptr(), false) }
        })
        .collect();
    let list = RoleList::only(&oids.iter().map(|o| o.to_u32()).collect::<Vec<_>>()).unwrap_or_else(|| {
        errors::too_large(
            format!("{what} names {} roles, more than {MAX_ROLES}", oids.len()),
            "Grant one role to the others and name that one.",
        )
    });
    (Some(oids), list)
}

/// Declares (or changes) a cache; takes effect when the transaction commits. The
/// first declarer owns it; only the owner's members, superusers and members of
/// `pgcache_admin` may change it. `readers` and `writers` (role names; NULL:
/// anyone) restrict reads and writes to members of those roles and of the owner;
/// `max_bytes` caps the memory the cache holds (it evicts its own entries).
///
/// `notify => 'keys'` announces the cache's committed changes on the change feed
/// (see `xact::announce`).
///
/// The C symbol carries the signature's version: a database whose extension SQL
/// still declares an older signature reaches [`cache_create_v3_wrapper`] (0.3.0's,
/// which keeps working until `ALTER EXTENSION pg_cache UPDATE`) or a stand-in that
/// says to update (0.2.0's), never arguments read past their end.
#[pg_extern(name = "cache_create", volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
fn cache_create_v4(
    cache: Option<&str>,
    size_limit: default!(Option<i32>, "NULL"),
    duration: default!(Option<Interval>, "NULL"),
    context: default!(Option<bool>, "true"),
    context_ignored_keys: default!(Option<Vec<Option<String>>>, "'{}'"),
    readers: default!(Option<Vec<Option<String>>>, "NULL"),
    writers: default!(Option<Vec<Option<String>>>, "NULL"),
    max_bytes: default!(Option<i64>, "NULL"),
    notify: default!(Option<&str>, "NULL"),
    policy: default!(Option<&str>, "'lru'"),
) {
    create(cache, size_limit, duration, context, context_ignored_keys, readers, writers, max_bytes, notify, policy);
}

#[allow(clippy::too_many_arguments)]
fn create(
    cache: Option<&str>,
    size_limit: Option<i32>,
    duration: Option<Interval>,
    context: Option<bool>,
    context_ignored_keys: Option<Vec<Option<String>>>,
    readers: Option<Vec<Option<String>>>,
    writers: Option<Vec<Option<String>>>,
    max_bytes: Option<i64>,
    notify: Option<&str>,
    policy: Option<&str>,
) {
    check_writable("cache_create");
    let name = check_name(cache);
    let settings = Settings::checked(size_limit, duration, context, context_ignored_keys, max_bytes, notify, policy);
    let readers = role_list("readers", readers);
    let writers = role_list("writers", writers);
    declare(name, settings, readers, writers);
}

/// The C symbol of `cache_create` of 0.3.0 (eight arguments, no `notify`): a
/// database not yet updated keeps declaring through it until `ALTER EXTENSION
/// pg_cache UPDATE`. Exported by hand: it has no SQL of its own in this version.
#[no_mangle]
pub extern "C" fn pg_finfo_cache_create_v3_wrapper() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[no_mangle]
#[pg_guard]
pub extern "C-unwind" fn cache_create_v3_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: 0.3.0's SQL declares cache_create(text, integer, interval, boolean,
    // text[], text[], text[], bigint), not STRICT: eight arguments of these types,
    // any of them NULL.
    let args = unsafe {
        (
            pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 0),
            pgrx::fcinfo::pg_getarg::<i32>(fcinfo, 1),
            pgrx::fcinfo::pg_getarg::<Interval>(fcinfo, 2),
            pgrx::fcinfo::pg_getarg::<bool>(fcinfo, 3),
            pgrx::fcinfo::pg_getarg::<Vec<Option<String>>>(fcinfo, 4),
            pgrx::fcinfo::pg_getarg::<Vec<Option<String>>>(fcinfo, 5),
            pgrx::fcinfo::pg_getarg::<Vec<Option<String>>>(fcinfo, 6),
            pgrx::fcinfo::pg_getarg::<i64>(fcinfo, 7),
        )
    };
    create(args.0, args.1, args.2, args.3, args.4, args.5, args.6, args.7, None, Some("lru"));
    pgrx::fcinfo::pg_return_void()
}

/// The settings of a declaration but its roles, checked.
struct Settings {
    size_limit: Option<i32>,
    duration: Option<Interval>,
    context: bool,
    ignored: Vec<String>,
    max_bytes: Option<i64>,
    /// The same as the store keeps them (roles and owner not set).
    config: CacheConfig,
}

impl Settings {
    fn checked(
        size_limit: Option<i32>,
        duration: Option<Interval>,
        context: Option<bool>,
        context_ignored_keys: Option<Vec<Option<String>>>,
        max_bytes: Option<i64>,
        notify: Option<&str>,
        policy: Option<&str>,
    ) -> Settings {
        if let Some(n) = size_limit {
            if n < 1 {
                errors::invalid(format!("size_limit must be at least 1, not {n}"), "Pass NULL for the server default.");
            }
        }
        if let Some(n) = max_bytes {
            if n < 1 {
                errors::invalid(format!("max_bytes must be at least 1, not {n}"), "Pass NULL for no limit of its own.");
            }
        }
        let duration_us = duration.map(|d| check_positive("duration", d));
        let context = context.unwrap_or_else(|| errors::null_argument("context"));
        let ignored: Vec<String> = context_ignored_keys
            .unwrap_or_else(|| errors::null_argument("context_ignored_keys"))
            .into_iter()
            .map(|k| k.unwrap_or_else(|| errors::null_argument("an element of context_ignored_keys")))
            .collect();
        if let Some(bad) = ignored.iter().find(|k| k.contains(',') || k.trim().is_empty()) {
            errors::invalid(format!("context_ignored_keys element \"{bad}\" is not a setting name"), "");
        }
        let mut config = CacheConfig::new(size_limit.unwrap_or(0), duration_us.unwrap_or(0), context, &ignored.join(","))
            .unwrap_or_else(|| errors::too_large("context_ignored_keys is longer than 256 bytes in all".into(), ""));
        config.max_bytes = max_bytes.map_or(0, |n| n as u64);
        config.notify = match notify {
            None => false,
            Some("keys") => true,
            Some(other) => errors::invalid(
                format!("notify must be 'keys' or NULL, not '{other}'"),
                "notify => 'keys' announces every committed change of the cache on the pg_cache_feed channel.",
            ),
        };
        let policy = policy.unwrap_or_else(|| errors::null_argument("policy"));
        config.policy = Policy::from_name(policy).unwrap_or_else(|| {
            errors::invalid(
                format!("policy must be 'lru' or 'lfu', not '{policy}'"),
                "'lru' evicts the entry used longest ago, 'lfu' one read seldom.",
            )
        });
        Settings { size_limit, duration, context, ignored, max_bytes, config }
    }

    /// Whether `declared` has these settings (its roles and owner aside).
    fn same_as(&self, declared: &CacheConfig) -> bool {
        let c = &self.config;
        declared.size_limit == c.size_limit
            && declared.duration_us == c.duration_us
            && declared.context == c.context
            && declared.ignored() == c.ignored()
            && declared.max_bytes == c.max_bytes
            && declared.notify == c.notify
            && declared.policy == c.policy
    }
}

/// Logs a declaration of `name` for commit, written to the declarations table now.
fn declare(
    name: &str,
    settings: Settings,
    (reader_oids, readers): (Option<Vec<pg_sys::Oid>>, RoleList),
    (writer_oids, writers): (Option<Vec<pg_sys::Oid>>, RoleList),
) {
    shmem::store();
    let mut previous = declarations::read(name);
    let caller = pg_sys::Oid::from(pg::current_role());
    let Settings { size_limit, duration, context, ignored, max_bytes, mut config } = settings;
    config.readers = readers;
    config.writers = writers;
    let mut declaration = declarations::Declaration {
        size_limit,
        duration,
        context,
        ignored,
        owner: caller,
        readers: reader_oids,
        writers: writer_oids,
        max_bytes,
        notify: config.notify,
        policy: config.policy,
    };
    // Twice at most: a first declaration by another role may commit between the
    // read and the write; then it is a redeclaration of that role's cache.
    let mut written = false;
    for _ in 0..2 {
        declaration.owner = match &previous {
            Some(p) if p.owner != 0 => {
                args::check_redeclare(name, p.owner);
                pg_sys::Oid::from(p.owner)
            }
            _ => caller,
        };
        written = declarations::write(name, &declaration);
        if written {
            break;
        }
        previous = declarations::read(name);
    }
    if !written {
        errors::raise(
            PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            format!("could not declare cache \"{name}\": its declaration changed owner meanwhile"),
            "Retry the transaction.",
        );
    }
    config.owner = declaration.owner.to_u32();
    pending::push(Op::Declare { cache: owned(name), config: Box::new(config), previous: previous.map(Box::new) });
}

/// Declares `cache` with these settings unless it already has them; whether it
/// changed anything. For an ORM that declares its caches lazily: a declaration
/// that is already in effect writes nothing (no row, no WAL), so calling it on every
/// first use is cheap. In a read-write transaction a change is made as by
/// `cache_create` (transactional, in the declarations table), its readers and
/// writers kept. In a READ ONLY transaction it applies at once, outside the
/// transaction, in shared memory only: the cache has these settings for every
/// session until the server restarts or a committed declaration replaces them.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
fn cache_declare(
    cache: Option<&str>,
    size_limit: default!(Option<i32>, "NULL"),
    duration: default!(Option<Interval>, "NULL"),
    context: default!(Option<bool>, "true"),
    context_ignored_keys: default!(Option<Vec<Option<String>>>, "'{}'"),
    max_bytes: default!(Option<i64>, "NULL"),
    notify: default!(Option<&str>, "NULL"),
    policy: default!(Option<&str>, "'lru'"),
) -> bool {
    check_writable("cache_declare");
    let name = check_name(cache);
    let settings = Settings::checked(size_limit, duration, context, context_ignored_keys, max_bytes, notify, policy);
    shmem::store();
    let roles = |list: RoleList| {
        let oids = (!list.is_open()).then(|| list.roles().iter().map(|&r| pg_sys::Oid::from(r)).collect());
        (oids, list)
    };
    // What is in effect: this transaction's own declaration, else the slot's
    // settings (a committed or an earlier at-once declaration: owner set), else the
    // table's row for a slot not made yet.
    let in_effect = || {
        pending::declared(name).or_else(|| {
            registry::resolve_for_read(name)
                .ok()
                .flatten()
                .map(|(_, c)| *c)
                .filter(|c| c.owner != 0)
                .or_else(|| declarations::read(name))
        })
    };
    if !pg::transaction_read_only() {
        // Persisted: the table's row must say it too (an at-once declaration has none).
        let row = pending::declared(name).or_else(|| declarations::read(name));
        if row.as_ref().is_some_and(|c| settings.same_as(c)) && in_effect().is_some_and(|c| settings.same_as(&c)) {
            return false;
        }
        let (readers, writers) = row.map_or((RoleList::ANYONE, RoleList::ANYONE), |c| (c.readers, c.writers));
        declare(name, settings, roles(readers), roles(writers));
        return true;
    }
    if pending::declared(name).is_some() {
        // Declared earlier in this transaction, before it became READ ONLY: that
        // declaration is not committed, so nothing of it may go to shared memory.
        errors::raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot declare cache \"{name}\" at once: this transaction declared it and is now read-only"),
            "Declare it in a read-write transaction.",
        );
    }
    // Judged and applied under the cache's commit lock, against the settings that
    // were checked: a declaration committed in between is redone from the top.
    for _ in 0..3 {
        let current = in_effect();
        if current.as_ref().is_some_and(|c| settings.same_as(c)) {
            return false;
        }
        // Undeclared: no owner, open to anyone (only those are compared and kept).
        let checked = current.unwrap_or_default();
        let mut config = settings.config;
        config.readers = checked.readers;
        config.writers = checked.writers;
        config.owner = if checked.owner != 0 {
            args::check_redeclare(name, checked.owner);
            checked.owner
        } else {
            pg::current_role()
        };
        if crate::xact::declare_now(name, &config, &checked) {
            return true;
        }
    }
    errors::raise(
        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        format!("could not declare cache \"{name}\": its declaration kept changing meanwhile"),
        "Retry the transaction.",
    )
}

/// The C symbol of the 0.2.0 `cache_create` (five arguments). A database still on
/// 0.2.0's SQL reaches this instead of reading arguments that are not there, and is
/// told how to fix it. Exported by hand: it has no SQL of its own in this version.
#[no_mangle]
pub extern "C" fn pg_finfo_cache_create_wrapper() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[no_mangle]
#[pg_guard]
pub extern "C-unwind" fn cache_create_wrapper(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    errors::raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "cache_create of pg_cache 0.2.0 cannot run with this library".into(),
        "Run ALTER EXTENSION pg_cache UPDATE in this database.",
    )
}

/// Drops every cache of a database at once (not transactional, like pg_stat_reset).
#[pg_extern(volatile, parallel_unsafe)]
fn cache_drop(dbname: Option<&str>) {
    check_writable("cache_drop");
    let dbname = dbname.unwrap_or_else(|| errors::null_argument("dbname"));
    check_admin("cache_drop", "drop the caches of a database");
    let cname = std::ffi::CString::new(dbname).unwrap_or_else(|_| errors::invalid("dbname contains a NUL byte".into(), ""));
    // SAFETY: a NUL-terminated name; missing_ok = true.
    let db = unsafe { pg_sys::get_database_oid(cname.as_ptr(), true) };
    if db == pg_sys::InvalidOid {
        errors::raise(PgSqlErrorCode::ERRCODE_INVALID_CATALOG_NAME, format!("database \"{dbname}\" does not exist"), "");
    }
    let store = shmem::store();
    // Fills of transactions running now are dropped at their commit, like after a
    // clear. The caches vanish at once; their memory is freed here rather than left
    // to the worker (a cache a commit still pins is left to it).
    store.invalidate(&Invalidation::DropCaches { db: db.to_u32(), fence: true }, now());
    store.finish_drops();
    // Not transactional: standbys are told now, and durably.
    if crate::wal::logging() {
        crate::wal::log_now(db.to_u32(), pg_cache_core::walrecord::DB_DROP | pg_cache_core::walrecord::IMMEDIATE);
    }
}
