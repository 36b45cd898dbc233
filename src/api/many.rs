//! Many keys in one call: one round trip and one resolution of the cache, and a
//! read of many keys sees them as of one moment (the store's `lookup_many`).

use std::collections::HashSet;

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

use super::args::{self, check_key, check_name, check_writable, resolve_read};
use super::functions::{owned, own_value};
use super::jsonb::RawJsonb;
use super::raw::{RawBytea, RawValue};
use crate::errors;
use crate::pg::{self, now};
use crate::registry;
use crate::{pending, shmem};
use pg_cache_core::key;
use pg_cache_core::store::Lookup;
use pg_cache_core::value::ValueKind;
use pg_cache_core::writeset::{try_copy, Expiry, Op, Pending, SetMode};

/// Keys (or entries) one call takes: a bound on what one call holds in memory and
/// on how long a read of many keys may keep the cache's commits waiting when it has
/// to take the commit lock.
pub const MAX_KEYS_PER_CALL: usize = 10_000;

fn too_many(what: &str, n: usize) -> ! {
    errors::too_large(
        format!("{what} has {n} elements, more than {MAX_KEYS_PER_CALL}"),
        "Split the call: one call takes at most 10000 keys.",
    )
}

/// The keys of `keys`, none NULL and at most [`MAX_KEYS_PER_CALL`], duplicates
/// dropped (first occurrence kept). Their sizes are the caller's to check.
fn distinct_keys(keys: Option<Vec<Option<String>>>) -> Vec<String> {
    let keys = keys.unwrap_or_else(|| errors::null_argument("keys"));
    if keys.len() > MAX_KEYS_PER_CALL {
        too_many("keys", keys.len());
    }
    let mut seen = HashSet::with_capacity(keys.len());
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let k = k.unwrap_or_else(|| errors::null_argument("an element of keys"));
        if seen.insert(k.clone()) {
            out.push(k);
        }
    }
    out
}

/// The values of those of `keys` that hold one, as `(key, value)` rows in the order
/// of `keys` (each key once). The transaction's own writes count first; the shared
/// cache's values are read as of one moment.
#[pg_extern(volatile, parallel_restricted)]
fn cache_get_many(
    cache: Option<&str>,
    keys: Option<Vec<Option<String>>>,
) -> TableIterator<'static, (name!(key, String), name!(value, RawJsonb))> {
    TableIterator::new(get_many(cache, keys))
}

/// `cache_get_many` of `bytea` values (written by `cache_set_bytes` or
/// `cache_put_bytes`).
#[pg_extern(volatile, parallel_restricted)]
fn cache_get_many_bytes(
    cache: Option<&str>,
    keys: Option<Vec<Option<String>>>,
) -> TableIterator<'static, (name!(key, String), name!(value, RawBytea))> {
    TableIterator::new(get_many(cache, keys))
}

fn get_many<V: RawValue>(cache: Option<&str>, keys: Option<Vec<Option<String>>>) -> Vec<(String, V)> {
    let name = check_name(cache);
    let keys = distinct_keys(keys);
    let Ok((slot, config)) = resolve_read(name) else { return Vec::new() };
    // Under pg_cache.on_limit = warning a key over the limit is a miss.
    let keys: Vec<String> = keys.into_iter().filter(|k| check_key(slot, k).is_ok()).collect();
    let stored: Vec<Vec<u8>> = keys.iter().map(|k| registry::stored_key(&config, k)).collect();
    // What the transaction's own writes say; the rest is asked of the shared cache.
    let mut found: Vec<Option<V>> = Vec::with_capacity(keys.len());
    let mut ask: Vec<usize> = Vec::new();
    for (i, s) in stored.iter().enumerate() {
        let own = own_value(name, &keys[i], s);
        if own.is_none() {
            ask.push(i);
        }
        found.push(own.flatten());
    }
    if let (Some(slot), false) = (slot, ask.is_empty()) {
        let store = shmem::store();
        let keyed: Vec<(&[u8], u64)> = ask.iter().map(|&i| (stored[i].as_slice(), key::hash(slot.index, &stored[i]))).collect();
        let mut results = Vec::with_capacity(keyed.len());
        let hidden = args::hidden_tags(name);
        store.lookup_many(slot, &keyed, V::KIND, args::view(&hidden), now, |_, len, copy| V::build(len, copy), &mut results);
        let stripe = pg::stripe();
        for (j, result) in results.into_iter().enumerate() {
            let i = ask[j];
            match result {
                Lookup::Hit(v) => {
                    store.count_hit(slot, stripe);
                    found[i] = Some(v);
                }
                Lookup::Miss => store.count_miss(slot, stripe),
                Lookup::Expired => {
                    store.count_miss(slot, stripe);
                    store.remove_expired(slot, keyed[j].0, keyed[j].1, now());
                }
                Lookup::OtherKind(kind) => errors::other_kind(name, &keys[i], kind, V::KIND),
            }
        }
    }
    keys.into_iter().zip(found).filter_map(|(k, v)| v.map(|v| (k, v))).collect()
}

/// Stores each member of the JSON object `entries` (key → value) at commit, as
/// `cache_set` does (fills).
#[pg_extern(volatile, parallel_unsafe)]
fn cache_set_many(
    cache: Option<&str>,
    entries: Option<RawJsonb>,
    ttl: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Vec<Option<String>>>, "NULL"),
) {
    write_many("cache_set_many", cache, entries, args::expiry(ttl, expires_at), SetMode::Fill, tags);
}

/// Stores each member of the JSON object `entries` (key → value) at commit, as
/// `cache_put` does (last committer wins, never dropped as stale).
#[pg_extern(volatile, parallel_unsafe)]
fn cache_put_many(
    cache: Option<&str>,
    entries: Option<RawJsonb>,
    ttl: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Vec<Option<String>>>, "NULL"),
) {
    write_many("cache_put_many", cache, entries, args::expiry(ttl, expires_at), SetMode::Put, tags);
}

fn write_many(function: &str, cache: Option<&str>, entries: Option<RawJsonb>, expiry: Expiry, mode: SetMode, tags: Option<Vec<Option<String>>>) {
    if mode == SetMode::Fill {
        args::check_fillable(function);
    } else {
        check_writable(function);
    }
    let name = check_name(cache);
    let entries = entries.unwrap_or_else(|| errors::null_argument("entries")).aligned();
    let members = entries.object_members().unwrap_or_else(|| {
        errors::invalid(
            "entries must be a JSON object of keys and values".into(),
            "For example '{\"k1\": 1, \"k2\": [2]}'.",
        )
    });
    if members.len() > MAX_KEYS_PER_CALL {
        too_many("entries", members.len());
    }
    // As for cache_set: never skipped for want of a slot.
    let (slot, config) = registry::resolve(name);
    args::check_write(name, &config);
    // Every entry carries the same tags; too many skip every entry (each key
    // invalidated) under pg_cache.on_limit = warning.
    let tags = args::entry_tags(slot, tags);
    // Everything is checked before anything is logged: bad input leaves the write
    // set as it was. Under pg_cache.on_limit = warning an entry over a limit is
    // skipped and its key invalidated instead; the others are written.
    let mut ops = Vec::with_capacity(members.len());
    for (k, v) in &members {
        let over = tags.is_err() || check_key(Some(slot), k).is_err();
        let stored = registry::stored_key(&config, k);
        let tag_bytes = tags.as_ref().map_or(0, |t| t.len() * 8);
        if over || args::check_value(slot, &config, stored.len() + tag_bytes, v.bytes().len()).is_err() {
            ops.push(Op::Delete { cache: owned(name), key: stored, seen: None });
            continue;
        }
        shmem::store().prefetch_bucket(key::hash(slot.index, &stored));
        let value = try_copy(v.bytes()).unwrap_or_else(|_| errors::out_of_memory("copying a value"));
        let tags = tags.as_ref().map_or(Vec::new(), |t| t.clone());
        ops.push(Op::Set { cache: owned(name), key: stored, value, kind: ValueKind::Jsonb, expiry, mode, tags });
    }
    for op in ops {
        pending::push(op);
    }
}

/// Deletes each of `keys` at commit; how many of them held a value (as this
/// transaction sees them).
#[pg_extern(volatile, parallel_unsafe)]
fn cache_delete_many(cache: Option<&str>, keys: Option<Vec<Option<String>>>) -> i32 {
    check_writable("cache_delete_many");
    let name = check_name(cache);
    let keys = distinct_keys(keys);
    // An invalidation is never skipped: without a slot for the cache it raises.
    let (slot, config) = registry::resolve(name);
    args::check_write(name, &config);
    for k in &keys {
        args::key_to_invalidate(slot, k);
    }
    let store = shmem::store();
    let hidden = args::hidden_tags(name);
    let mut existed = 0;
    let mut ops = Vec::with_capacity(keys.len());
    for k in &keys {
        let stored = registry::stored_key(&config, k);
        let own = pending::lookup(name, &stored, |p| match p {
            Pending::Value(..) => Some(true),
            Pending::Deleted | Pending::Cleared => Some(false),
            Pending::Unknown => None,
        });
        if own.unwrap_or_else(|| store.contains(slot, &stored, key::hash(slot.index, &stored), args::latest_view(&hidden), now)) {
            existed += 1;
        }
        ops.push(Op::Delete { cache: owned(name), key: stored, seen: None });
    }
    for op in ops {
        pending::push(op);
    }
    existed
}
