//! From a cache name to its shared slot and settings, and from a user key to the
//! stored key (context prefix included). Slots are remembered per backend and
//! revalidated with two atomic loads, so the read path takes no directory lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::ffi::{CStr, CString};

use pgrx::datum::Interval;
use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;

use super::{declarations, errors};
use crate::core::key::{self, Context};
use crate::core::store::{CacheConfig, RoleList, SlotRef, StoreError, MAX_NAME};
use crate::xact::database;
use crate::{gucs, shmem, xact};

#[derive(Clone)]
struct Known {
    slot: SlotRef,
    version: u32,
    /// Shared, not copied: a configuration is a few hundred bytes.
    config: Rc<CacheConfig>,
}

#[derive(Default)]
struct KnownCaches {
    by_name: HashMap<Rc<str>, Known>,
    /// The cache resolved last: most calls name the same cache as the call before,
    /// and comparing the name is cheaper than hashing it.
    last: Option<(Rc<str>, Known)>,
}

thread_local! {
    static KNOWN: RefCell<KnownCaches> = RefCell::new(KnownCaches::default());
}

/// The slot of `name` in the current database (created on first use) and the
/// settings this transaction sees for it (its own pending `cache_create` first).
pub fn resolve(name: &str) -> (SlotRef, Rc<CacheConfig>) {
    let store = shmem::store();
    let still_valid = |kn: &Known| store.is_valid(kn.slot) && store.config_version(kn.slot) == kn.version;
    let known = KNOWN.with_borrow_mut(|k| {
        if let Some((_, kn)) = k.last.as_ref().filter(|(n, kn)| &**n == name && still_valid(kn)) {
            return Some((kn.slot, kn.config.clone()));
        }
        let (n, kn) = k.by_name.get_key_value(name).filter(|(_, kn)| still_valid(kn))?;
        let found = (kn.slot, kn.config.clone());
        k.last = Some((n.clone(), kn.clone()));
        Some(found)
    });
    let (slot, config) = known.unwrap_or_else(|| {
        let slot = match store.find_slot(database(), name) {
            Some(s) => s,
            None => {
                let initial = initial_config(name);
                let per_database = gucs::max_caches_per_database();
                store.find_or_create_slot(database(), name, &initial, per_database).unwrap_or_else(|e| match e {
                    StoreError::DirectoryFull => errors::raise(
                        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                        format!("cannot create cache \"{name}\": all {} cache slots are in use", gucs::max_caches()),
                        "Every slot holds entries or a declaration. Drop unused caches with cache_drop() or raise pg_cache.max_caches (needs a restart).",
                    ),
                    StoreError::DatabaseFull { per_database } => errors::raise(
                        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                        format!("cannot create cache \"{name}\": this database already uses {per_database} cache slots"),
                        "Raise pg_cache.max_caches_per_database, or let unused caches empty out.",
                    ),
                    StoreError::TooLarge => unreachable!(),
                })
            }
        };
        let known = Known { slot, version: store.config_version(slot), config: Rc::new(store.config(slot)) };
        let name: Rc<str> = name.into();
        KNOWN.with_borrow_mut(|k| {
            k.by_name.insert(name.clone(), known.clone());
            k.last = Some((name, known.clone()));
        });
        (slot, known.config)
    });
    match xact::declared(name) {
        Some(declared) => (slot, Rc::new(declared)),
        None => (slot, config),
    }
}

/// This backend's stripe of the shared hit and miss counters.
pub fn stripe() -> usize {
    // SAFETY: MyProc is set up before any SQL function can run in a backend.
    unsafe { (*pg_sys::MyProc).pgprocno as usize }
}

/// The committed declaration a new slot starts with. A declaration this transaction
/// made is not committed yet, so it must not reach shared memory.
fn initial_config(name: &str) -> CacheConfig {
    match xact::declared_before(name) {
        Some(previous) => previous.unwrap_or_default(),
        None => declarations::read(name).unwrap_or_default(),
    }
}

/// The effective size limit and default time to live of a cache.
pub fn size_limit(config: &CacheConfig) -> u64 {
    if config.size_limit > 0 { config.size_limit as u64 } else { gucs::default_size_limit() }
}

pub fn duration_us(config: &CacheConfig) -> Option<i64> {
    if config.duration_us > 0 { Some(config.duration_us) } else { gucs::default_duration_us() }
}

thread_local! {
    /// `pg_cache.context_settings` as last seen, and its names, split once per change
    /// rather than on every read.
    static CONTEXT_NAMES: RefCell<(Option<CString>, Vec<CString>)> = const { RefCell::new((None, Vec::new())) };
}

/// The bytes `key` is stored under in a cache with `config`, in the caller's context.
pub fn stored_key(config: &CacheConfig, key: &str) -> Vec<u8> {
    if !config.context {
        return key::encode(&Context::shared(), key.as_bytes()).unwrap_or_else(|_| errors::out_of_memory("encoding a key"));
    }
    let ignored = |name: &str| config.ignored().split(',').map(str::trim).any(|i| i == name);
    // SAFETY: GetUserId has no preconditions inside a transaction.
    let role = (!ignored("role")).then(|| unsafe { pg_sys::GetUserId() }.to_u32());
    CONTEXT_NAMES.with_borrow_mut(|(raw, names)| {
        let current = gucs::context_settings();
        if raw.as_deref() != current {
            *raw = current.map(CStr::to_owned);
            *names = current
                .and_then(|s| s.to_str().ok())
                .map(|s| s.split(',').map(str::trim).filter(|n| !n.is_empty()).filter_map(|n| CString::new(n).ok()).collect())
                .unwrap_or_default();
        }
        let values: Vec<Option<&[u8]>> = names
            .iter()
            .filter(|n| !ignored(n.to_str().unwrap_or("")))
            .map(|n| {
                // SAFETY: a NUL-terminated name; missing_ok = true returns NULL for unknown
                // settings; the returned string stays valid while no setting changes.
                let v = unsafe { pg_sys::GetConfigOption(n.as_ptr(), true, false) };
                // SAFETY: a non-NULL result is a NUL-terminated string (see above).
                (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_bytes())
            })
            .collect();
        key::encode(&Context { role, settings: values }, key.as_bytes())
    })
    .unwrap_or_else(|_| errors::out_of_memory("encoding a key"))
}

// ---- argument checks ------------------------------------------------------------

pub fn check_name(cache: Option<&str>) -> &str {
    let name = cache.unwrap_or_else(|| errors::null_argument("cache name"));
    if name.is_empty() {
        errors::invalid("cache name must not be empty".into(), "");
    }
    if name == "*" {
        errors::invalid(
            "cache name \"*\" is reserved".into(),
            "LISTEN pg_cache receives '*' for cache_clear_all(): a cache of that name could not be told apart.",
        );
    }
    if name.len() > MAX_NAME {
        errors::raise(
            PgSqlErrorCode::ERRCODE_NAME_TOO_LONG,
            format!("cache name \"{name}\" is {} bytes long, more than {MAX_NAME}", name.len()),
            "Use a shorter cache name.",
        );
    }
    name
}

pub fn check_key(key: Option<&str>) -> &str {
    let key = key.unwrap_or_else(|| errors::null_argument("key"));
    if key.len() > gucs::max_key_size() {
        errors::too_large(
            format!("key is {} bytes long, more than pg_cache.max_key_size ({} bytes)", key.len(), gucs::max_key_size()),
            "Use a shorter key (a hash of it, for example) or raise pg_cache.max_key_size.",
        );
    }
    key
}

pub fn check_value_size(len: usize) {
    if len > gucs::max_value_size() {
        errors::too_large(
            format!("value is {len} bytes, more than pg_cache.max_value_size ({} bytes)", gucs::max_value_size()),
            "Cache a smaller value or raise pg_cache.max_value_size.",
        );
    }
}

/// The store's own limit on one entry: its stored key (context included) and value
/// must fit in half of the block pool, so that eviction can always make room; and in
/// the cache's own `max_bytes`, if it has one.
pub fn check_entry_size(config: &CacheConfig, stored_key: usize, value: usize) {
    let store = shmem::store();
    let limit = store.max_payload();
    if stored_key + value > limit {
        errors::too_large(
            format!(
                "value is {value} bytes and its stored key {stored_key} bytes, more than the {limit} bytes one entry can hold"
            ),
            "An entry may take at most half of pg_cache.memory's block pool: cache a smaller value or raise pg_cache.memory (needs a restart).",
        );
    }
    let bytes = crate::core::store::entry_bytes(stored_key + value);
    if config.max_bytes > 0 && bytes as u64 > config.max_bytes {
        errors::too_large(
            format!("an entry of this value takes {bytes} bytes, more than the cache's max_bytes ({})", config.max_bytes),
            "Cache a smaller value or declare the cache with a larger max_bytes.",
        );
    }
}

/// The longest `ttl` or `duration` accepted: far beyond any use, and far from the
/// end of PostgreSQL's timestamps, so that every expiry time can be represented.
pub const MAX_LIFETIME_YEARS: i128 = 10_000;

/// An interval in microseconds, counted as `extract(epoch FROM interval)` does (a
/// year is 365.25 days, a month of a partial year 30 days): the one conversion used
/// for `ttl`, for `duration` when declared and when read back from the table.
pub fn interval_micros(i: &Interval) -> i128 {
    const DAY: i128 = 86_400_000_000;
    let months = i.months() as i128;
    i.micros() as i128 + i.days() as i128 * DAY + months / 12 * (DAY * 1461 / 4) + months % 12 * 30 * DAY
}

/// An interval in microseconds, which must be positive and at most
/// [`MAX_LIFETIME_YEARS`].
pub fn check_positive(what: &str, interval: Interval) -> i64 {
    let us = interval_micros(&interval);
    if us <= 0 {
        errors::invalid(format!("{what} must be a positive interval, not {interval}"), "");
    }
    if us > MAX_LIFETIME_YEARS * 86_400_000_000 * 1461 / 4 {
        errors::invalid(
            format!("{what} must be at most {MAX_LIFETIME_YEARS} years, not {interval}"),
            "Pass NULL for entries that live until evicted or cleared.",
        );
    }
    us as i64
}

thread_local! {
    /// Set once this backend has seen recovery over: it never starts again for a
    /// running backend, and asking PostgreSQL is an FFI call on every write.
    static RECOVERY_OVER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn in_recovery() -> bool {
    if RECOVERY_OVER.get() {
        return false;
    }
    // SAFETY: no preconditions.
    let in_recovery = unsafe { pg_sys::RecoveryInProgress() };
    RECOVERY_OVER.set(!in_recovery);
    in_recovery
}

/// Writes belong to the leader's transaction: a parallel worker (or a leader in
/// parallel mode) could only lose them. PostgreSQL refuses its own writes there too.
/// A hot standby refuses them as well: its caches are its own, and a write there
/// would reach neither the primary nor the other standbys.
pub fn check_writable(function: &str) {
    // SAFETY: no preconditions.
    if unsafe { pg_sys::IsInParallelMode() } {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
            format!("cannot call {function} during a parallel operation"),
            "Functions that call it must be marked PARALLEL UNSAFE.",
        );
    }
    if in_recovery() {
        errors::raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot call {function} during recovery"),
            "A hot standby's caches can be read but not written: write to the primary.",
        );
    }
}

/// Whether the current user has the privileges of `role` (superusers have all).
fn acts_as(role: u32) -> bool {
    // SAFETY: a catalog lookup inside a transaction; an unknown role is no member.
    role != 0 && unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(role)) }
}

/// Whether the current user is a superuser or has the privileges of `pgcache_admin`.
pub fn is_admin() -> bool {
    // SAFETY: catalog lookups inside a transaction.
    unsafe {
        let admin = pg_sys::get_role_oid(c"pgcache_admin".as_ptr(), true);
        pg_sys::superuser() || (admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(pg_sys::GetUserId(), admin))
    }
}

/// Whether the current user may do what `allowed` restricts on a cache owned by
/// `owner`: anyone when it is open, else its owner's members, the listed roles'
/// members and superusers. Open caches cost one byte compare.
pub fn may(config: &CacheConfig, allowed: &RoleList) -> bool {
    allowed.is_open() || acts_as(config.owner) || allowed.roles().iter().any(|&r| acts_as(r))
}

fn role_names(roles: &RoleList) -> String {
    roles
        .roles()
        .iter()
        .map(|&r| {
            // SAFETY: a syscache lookup; NULL for a dropped role.
            let name = unsafe { pg_sys::GetUserNameFromId(pg_sys::Oid::from(r), true) };
            if name.is_null() {
                format!("(dropped role {r})")
            } else {
                // SAFETY: a palloc'd NUL-terminated name.
                unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Raises 42501 unless the current user may read `name` (`cache_get`, its sync
/// functions).
pub fn check_read(name: &str, config: &CacheConfig) {
    check_may(name, config, &config.readers, "read");
}

/// Raises 42501 unless the current user may write `name` (set, delete, clear).
pub fn check_write(name: &str, config: &CacheConfig) {
    check_may(name, config, &config.writers, "write");
}

fn check_may(name: &str, config: &CacheConfig, allowed: &RoleList, verb: &str) {
    if !may(config, allowed) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {verb} cache \"{name}\""),
            &format!("Its declaration lets its owner and members of {} {verb} it.", role_names(allowed)),
        );
    }
}

/// Raises 42501 unless the current user may redeclare a cache declared by `owner`:
/// members of the owner, superusers and members of `pgcache_admin`.
pub fn check_redeclare(name: &str, owner: u32) {
    if owner != 0 && !acts_as(owner) && !is_admin() {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to redeclare cache \"{name}\""),
            &format!(
                "Only its owner ({}), superusers and members of pgcache_admin may change its declaration.",
                role_names(&RoleList::only(&[owner]).unwrap_or(RoleList::ANYONE))
            ),
        );
    }
}

/// Administrative functions: superusers and members of `pgcache_admin` only.
pub fn check_admin(function: &str, action: &str) {
    if !is_admin() {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {action}"),
            &format!("Only superusers and members of pgcache_admin may call {function}."),
        );
    }
}
