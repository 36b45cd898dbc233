//! What SQL can observe of the caches: per-cache statistics and their reset, the
//! whole region's memory, and when a cache was last cleared (the sync functions for
//! application processes that keep a copy of their own).

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::args::{self, check_admin, check_name};
use crate::errors;
use crate::{registry, shmem};
use crate::pg::database;

fn timestamptz(t: i64) -> Option<TimestampWithTimeZone> {
    TimestampWithTimeZone::try_from(t).ok()
}

/// A row per cache of the current database.
///
/// The C symbol carries the row shape's version (as pg_stat_statements does): a
/// database whose extension SQL still declares an older shape gets "could not find
/// function" until `ALTER EXTENSION pg_cache UPDATE`, never rows of the wrong shape.
///
/// `hit_ratio` is hits / (hits + misses) since the counters were last reset, NULL
/// before the first read; `skipped` counts calls that met a limit and skipped under
/// `pg_cache.on_limit = warning`.
#[pg_extern(name = "cache_stats", volatile, parallel_restricted)]
#[allow(clippy::type_complexity)]
fn cache_stats_v3() -> TableIterator<
    'static,
    (
        name!(cache, String),
        name!(entries, i64),
        name!(bytes, i64),
        name!(hits, i64),
        name!(misses, i64),
        name!(sets, i64),
        name!(deletes, i64),
        name!(evictions, i64),
        name!(expirations, i64),
        name!(stale_sets, i64),
        name!(size_limit, i64),
        name!(duration, Option<Interval>),
        name!(last_clear, Option<TimestampWithTimeZone>),
        name!(hit_ratio, Option<f64>),
        name!(skipped, i64),
    ),
> {
    let store = shmem::store();
    let mut rows: Vec<_> = store
        .slots_of(database())
        .into_iter()
        .map(|(slot, name)| {
            let s = store.stats(slot, name);
            (
                s.name,
                s.entries as i64,
                s.bytes as i64,
                s.hits as i64,
                s.misses as i64,
                s.sets as i64,
                s.deletes as i64,
                s.evictions as i64,
                s.expirations as i64,
                s.stale_sets as i64,
                registry::size_limit(&s.config) as i64,
                registry::duration_us(&s.config).map(Interval::from_micros),
                s.last_clear.and_then(timestamptz),
                (s.hits + s.misses > 0).then(|| s.hits as f64 / (s.hits + s.misses) as f64),
                s.skipped as i64,
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    TableIterator::new(rows)
}

/// The C symbol of 0.2.0 and 0.3.0's `cache_stats` (a row without `hit_ratio`): a
/// database still on their SQL reaches this stand-in, which says how to fix it,
/// instead of reading rows of another shape. Exported by hand: it has no SQL of its
/// own in this version (but their install scripts must find it).
#[no_mangle]
pub extern "C" fn pg_finfo_cache_stats_v2_wrapper() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[no_mangle]
#[pg_guard]
pub extern "C-unwind" fn cache_stats_v2_wrapper(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    outdated("cache_stats")
}

/// Zeroes the counters of every cache of the current database (hits, misses, sets,
/// deletes, evictions, expirations, stale_sets, skipped); entries and bytes stay.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_stats_reset() {
    check_admin("cache_stats_reset", "reset pg_cache statistics");
    let store = shmem::store();
    for (slot, _) in store.slots_of(database()) {
        store.reset_stats(slot);
    }
}

/// The whole shared region, over all databases; `skipped_without_slot` counts calls that
/// skipped under `pg_cache.on_limit = warning` because no slot could be had for
/// their cache (they have no cache to be counted in). The C symbol carries the row
/// shape's version, as `cache_stats`'s does.
#[pg_extern(name = "cache_memory", volatile, parallel_restricted)]
fn cache_memory_v2() -> TableIterator<
    'static,
    (
        name!(total_bytes, i64),
        name!(used_bytes, i64),
        name!(entries, i64),
        name!(databases, i64),
        name!(skipped_without_slot, i64),
    ),
> {
    check_admin("cache_memory", "read pg_cache memory use");
    let m = shmem::store().memory();
    TableIterator::once((
        m.total_bytes as i64,
        m.used_bytes as i64,
        m.entries as i64,
        m.databases as i64,
        m.skipped_without_slot as i64,
    ))
}

/// The C symbol of 0.3.0's `cache_memory` (a row without `skipped_without_slot`):
/// as for `cache_stats_v2_wrapper`.
#[no_mangle]
pub extern "C" fn pg_finfo_cache_memory_wrapper() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[no_mangle]
#[pg_guard]
pub extern "C-unwind" fn cache_memory_wrapper(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    outdated("cache_memory")
}

fn outdated(function: &str) -> ! {
    errors::raise(
        pgrx::pg_sys::errcodes::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("{function} of pg_cache 0.3.0 cannot run with this library"),
        "Run ALTER EXTENSION pg_cache UPDATE in this database.",
    )
}

/// When a committed transaction last cleared `cache` (by `cache_clear`,
/// `cache_clear_all` or `cache_drop`), NULL if never.
#[pg_extern(volatile, parallel_restricted)]
fn cache_last_clear(cache: Option<&str>) -> Option<TimestampWithTimeZone> {
    let name = check_name(cache);
    let (slot, config) = registry::resolve(name);
    args::check_read(name, &config);
    shmem::store().last_clear(slot).and_then(timestamptz)
}

/// Whether `cache` was cleared by a transaction that committed after `since`: a
/// process holding a copy made at `since` must drop it.
#[pg_extern(volatile, parallel_restricted)]
fn cache_sync_since(cache: Option<&str>, since: Option<TimestampWithTimeZone>) -> bool {
    let name = check_name(cache);
    let since = pg_sys::TimestampTz::from(since.unwrap_or_else(|| errors::null_argument("since")));
    let (slot, config) = registry::resolve(name);
    args::check_read(name, &config);
    shmem::store().last_clear(slot).is_some_and(|t| t > since)
}

/// The committed live keys of `cache` (without their context: a key stored in two
/// contexts is listed twice), at most `limit` of them, those matching the `LIKE`
/// pattern `pattern` when given; in no particular order. For superusers and
/// `pgcache_admin`. The cache is read a few buckets at a time, never under one
/// lock as a whole: a listing is not a snapshot.
#[pg_extern(volatile, parallel_restricted)]
fn cache_keys(
    cache: Option<&str>,
    pattern: default!(Option<&str>, "NULL"),
    limit: default!(Option<i32>, "1000"),
) -> SetOfIterator<'static, String> {
    check_admin("cache_keys", "list the keys of a cache");
    let name = check_name(cache);
    let limit = limit.unwrap_or_else(|| errors::null_argument("limit"));
    if limit < 0 {
        errors::invalid(format!("limit must not be negative, not {limit}"), "");
    }
    let mut keys = Vec::new();
    let Ok(Some((slot, _))) = registry::resolve_for_read(name) else { return SetOfIterator::new(keys) };
    if limit == 0 {
        return SetOfIterator::new(keys);
    }
    let listed = shmem::store().for_each_key(slot, crate::pg::now(), |stored| {
        let Some(user) = pg_cache_core::key::user_part(stored) else { return true };
        let key = String::from_utf8_lossy(user);
        if pattern.is_none_or(|p| pg_cache_core::key::like(&key, p)) {
            keys.push(key.into_owned());
        }
        keys.len() < limit as usize
    });
    if listed.is_err() {
        errors::out_of_memory("listing the keys of a cache");
    }
    SetOfIterator::new(keys)
}
