//! Checks of SQL arguments and of the caller's right to act: each raises the
//! documented SQLSTATE with a message and a hint, or returns the checked value.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;

use crate::errors;
use crate::pg;
use crate::privileges::{acts_as, is_admin, may, role_names};
use crate::registry::declarations::interval_micros;
use crate::shmem;
use crate::gucs::{self, OnLimit};
use crate::registry;
use pg_cache_core::store::{tag_hash, CacheConfig, RoleList, SlotRef, View, MAX_NAME, MAX_TAGS};
use std::rc::Rc;
use pg_cache_core::writeset::Expiry;

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

/// A call that met a cache limit under `pg_cache.on_limit = warning`: its WARNING
/// was sent and it was counted; the caller skips (a write leaves its key
/// invalidated, a read misses).
pub struct Skipped;

/// A cache limit met (a key, value or entry too large, no slot left): by default
/// the ERROR; under `pg_cache.on_limit = warning` a WARNING with the same SQLSTATE,
/// counted in `slot` (server-wide when there is none), and [`Skipped`].
fn over_limit(slot: Option<SlotRef>, code: PgSqlErrorCode, message: String, hint: &str) -> Skipped {
    if gucs::on_limit() == OnLimit::Error {
        errors::raise(code, message, hint);
    }
    errors::warn(code, format!("{message}: skipped (pg_cache.on_limit = warning)"), hint);
    shmem::store().count_skipped(slot);
    Skipped
}

/// What a read of `cache` sees of the shared cache: entries installed before
/// `pg::reads_installed_before()`, none carrying a tag this transaction invalidated.
/// The tags are returned for the caller to hold while it reads.
pub fn hidden_tags(name: &str) -> Vec<u64> {
    crate::pending::hidden_tags(name)
}

/// The view of a read (see [`hidden_tags`]).
pub fn view(hidden: &[u64]) -> View<'_> {
    View { installed_before: pg::reads_installed_before(), hidden_tags: hidden }
}

/// The view of a read of the latest entries (an operation that writes from what it
/// reads), without the entries carrying the tags `hidden`.
pub fn latest_view(hidden: &[u64]) -> View<'_> {
    View { installed_before: pg_cache_core::store::LATEST, hidden_tags: hidden }
}

/// Most distinct tags in one `tags` argument of `cache_invalidate_tags`.
pub const MAX_TAGS_PER_CALL: usize = 10_000;

/// The `tags` of a write (NULL: none): their hashes, duplicates dropped. A NULL
/// element is 22004; more than [`MAX_TAGS`] distinct tags meets a limit (54000, or
/// under `pg_cache.on_limit = warning` skipped like a value over its limit).
pub fn entry_tags(slot: SlotRef, tags: Option<Vec<Option<String>>>) -> Result<Vec<u64>, Skipped> {
    // No allocation for a write without tags (every plain cache_set).
    let Some(tags) = tags.filter(|t| !t.is_empty()) else { return Ok(Vec::new()) };
    if tags.iter().any(Option::is_none) {
        errors::null_argument("an element of tags");
    }
    let mut hashes: Vec<u64> = Vec::with_capacity(tags.len().min(MAX_TAGS + 1));
    for t in tags.into_iter().flatten() {
        let h = tag_hash(t.as_bytes());
        if !hashes.contains(&h) {
            hashes.push(h);
        }
        // No need to look further (a huge array costs no quadratic search).
        if hashes.len() > MAX_TAGS {
            break;
        }
    }
    if hashes.len() > MAX_TAGS {
        return Err(over_limit(
            Some(slot),
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("an entry carries at most {MAX_TAGS} distinct tags"),
            "Tag entries with fewer, coarser tags.",
        ));
    }
    Ok(hashes)
}

/// The hashes of `tags`, duplicates dropped; a NULL element is 22004.
pub fn tag_hashes(tags: Vec<Option<String>>, what: &str) -> Vec<u64> {
    let mut seen = std::collections::HashSet::with_capacity(tags.len());
    let mut out: Vec<u64> = Vec::with_capacity(tags.len());
    for t in tags {
        let h = tag_hash(t.unwrap_or_else(|| errors::null_argument(what)).as_bytes());
        if seen.insert(h) {
            out.push(h);
        }
    }
    out
}

/// The key argument, which must not be NULL.
pub fn key_arg(key: Option<&str>) -> &str {
    key.unwrap_or_else(|| errors::null_argument("key"))
}

/// A key of cache `slot` (`None`: a cache without a slot) within
/// `pg_cache.max_key_size`.
pub fn check_key(slot: Option<SlotRef>, key: &str) -> Result<&str, Skipped> {
    if key.len() > gucs::max_key_size() {
        return Err(over_limit(
            slot,
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("key is {} bytes long, more than pg_cache.max_key_size ({} bytes)", key.len(), gucs::max_key_size()),
            "Use a shorter key (a hash of it, for example) or raise pg_cache.max_key_size.",
        ));
    }
    Ok(key)
}

/// A value within `pg_cache.max_value_size`, the store's limit on one entry (its
/// stored key and value must fit in half of the block pool, so that eviction can
/// always make room) and the cache's own `max_bytes`, if it has one.
pub fn check_value(slot: SlotRef, config: &CacheConfig, stored_key: usize, value: usize) -> Result<(), Skipped> {
    let over = |message: String, hint: &str| Err(over_limit(Some(slot), PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, message, hint));
    if value > gucs::max_value_size() {
        return over(
            format!("value is {value} bytes, more than pg_cache.max_value_size ({} bytes)", gucs::max_value_size()),
            "Cache a smaller value or raise pg_cache.max_value_size.",
        );
    }
    let limit = shmem::store().max_payload();
    if stored_key + value > limit {
        return over(
            format!(
                "value is {value} bytes and its stored key {stored_key} bytes, more than the {limit} bytes one entry can hold"
            ),
            "An entry may take at most half of pg_cache.memory's block pool: cache a smaller value or raise pg_cache.memory (needs a restart).",
        );
    }
    let bytes = pg_cache_core::store::entry_bytes(stored_key + value);
    if config.max_bytes > 0 && bytes as u64 > config.max_bytes {
        return over(
            format!("an entry of this value takes {bytes} bytes, more than the cache's max_bytes ({})", config.max_bytes),
            "Cache a smaller value or declare the cache with a larger max_bytes.",
        );
    }
    Ok(())
}

/// The slot of `name` for an operation that writes only if what it reads allows
/// (add, incr, touch, single flight), the caller's right to write and read it
/// checked: one skipped for want of a slot is as if it had not been called, which
/// loses no invalidation. (Sets, puts and deletes use `registry::resolve`, which
/// raises: an invalidation that cannot be recorded must not be lost.)
pub fn resolve_conditional_write(name: &str) -> Result<(SlotRef, Rc<CacheConfig>), Skipped> {
    registry::try_resolve(name).map_err(|e| {
        check_write(name, &e.config);
        check_read(name, &e.config);
        over_limit(None, PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED, e.message, e.hint)
    })
}

/// A key to invalidate (a delete or a pull): over `pg_cache.max_key_size` it
/// raises by default, and under `pg_cache.on_limit = warning` it is invalidated all
/// the same, without a WARNING: a value may be there (written while the limit was
/// higher), and an invalidation is never skipped.
pub fn key_to_invalidate(slot: SlotRef, key: &str) -> &str {
    if gucs::on_limit() == OnLimit::Error {
        let _ = check_key(Some(slot), key);
    }
    key
}

/// A cache resolved for a read, the caller's right to read it checked: its slot if
/// anything was committed or declared under the name (`None`: nothing can be
/// found), and its settings (the server's defaults for a name nobody declared). A
/// declared cache for which no slot can be made skips the read under
/// `pg_cache.on_limit = warning` (it misses: nothing can be found there).
pub fn resolve_read(name: &str) -> Result<(Option<SlotRef>, Rc<CacheConfig>), Skipped> {
    let (slot, config) = match registry::resolve_for_read(name) {
        Ok(Some((slot, config))) => (Some(slot), config),
        Ok(None) => (None, registry::undeclared()),
        Err(e) => {
            check_read(name, &e.config);
            return Err(over_limit(None, PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED, e.message, e.hint));
        }
    };
    check_read(name, &config);
    Ok((slot, config))
}

/// The longest `ttl` or `duration` accepted: far beyond any use, and far from the
/// end of PostgreSQL's timestamps, so that every expiry time can be represented.
pub const MAX_LIFETIME_YEARS: i128 = 10_000;

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

/// When a written entry expires: after `ttl`, at `expires_at` (`infinity`: never,
/// even in a cache with a duration), or by its cache's duration when both are NULL.
pub fn expiry(ttl: Option<Interval>, expires_at: Option<TimestampWithTimeZone>) -> Expiry {
    match (ttl, expires_at) {
        (None, None) => Expiry::Default,
        (Some(t), None) => Expiry::After(check_positive("ttl", t)),
        (None, Some(at)) => {
            let at = pg_sys::TimestampTz::from(at);
            if at <= pg::now() {
                errors::invalid(
                    "expires_at must be later than now".into(),
                    "Pass 'infinity' for an entry that never expires, or delete the key.",
                );
            }
            Expiry::At(at)
        }
        (Some(_), Some(_)) => errors::invalid("pass ttl or expires_at, not both".into(), ""),
    }
}

/// Writes belong to the leader's transaction: a parallel worker (or a leader in
/// parallel mode) could only lose them. PostgreSQL refuses its own writes there too.
/// A hot standby refuses them as well, fills aside (see [`check_fillable`]): a
/// write there would reach neither the primary nor the other standbys.
pub fn check_writable(function: &str) {
    check_fillable(function);
    if pg::in_recovery() {
        errors::raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot call {function} during recovery"),
            "A hot standby's caches can be read and filled (cache_set, cache_set_many, cache_get_or_lock) but not otherwise written: write to the primary.",
        );
    }
}

/// A fill (`cache_set`) is allowed on a hot standby: its caches are its own, filled
/// from its own rows, and the primary's invalidations reach them through WAL (see
/// `wal`). Not in a parallel operation.
pub fn check_fillable(function: &str) {
    if pg::in_parallel_mode() {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
            format!("cannot call {function} during a parallel operation"),
            "Functions that call it must be marked PARALLEL UNSAFE.",
        );
    }
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
