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
use crate::gucs;
use pg_cache_core::store::{CacheConfig, RoleList, MAX_NAME};
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
    let bytes = pg_cache_core::store::entry_bytes(stored_key + value);
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
/// A hot standby refuses them as well: its caches are its own, and a write there
/// would reach neither the primary nor the other standbys.
pub fn check_writable(function: &str) {
    if pg::in_parallel_mode() {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
            format!("cannot call {function} during a parallel operation"),
            "Functions that call it must be marked PARALLEL UNSAFE.",
        );
    }
    if pg::in_recovery() {
        errors::raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot call {function} during recovery"),
            "A hot standby's caches can be read but not written: write to the primary.",
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
