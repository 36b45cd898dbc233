//! Operations on one key beyond get, set, put and delete: those that read the key and
//! write what they read (add, incr and decr, pull), a single-flight read
//! (get_or_lock), and two that neither copy nor replace a value (has, touch).
//!
//! A read-then-write operation takes the key's lock (see `keylock`) before it reads,
//! so that such operations on one key follow each other: two adders cannot both
//! find the key absent, two incrementers cannot both start from the same value. Its
//! write then commits only if the key still holds what it read: a plain set, put,
//! delete or clear that committed in between (they take no lock) stands, as if it
//! had come after (transaction rule 13).

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use super::args::{self, check_key, check_name, check_writable, key_arg, resolve_read, Skipped};
use super::functions::{owned, own_value};
use super::jsonb::{NotInteger, RawJsonb};
use super::raw::RawValue;
use crate::errors;
use crate::keylock;
use crate::pg::{self, now};
use crate::registry;
use crate::{pending, shmem};
use pg_cache_core::key;
use pg_cache_core::store::{CacheConfig, Lookup, SlotRef, NO_EXPIRY};
use pg_cache_core::value::ValueKind;
use pg_cache_core::writeset::{try_copy, Expiry, Op, Pending, SetMode};

/// A key resolved for a write: its cache's slot and configuration, the stored key.
struct Target<'a> {
    name: &'a str,
    key: &'a str,
    slot: SlotRef,
    config: std::rc::Rc<CacheConfig>,
    stored: Vec<u8>,
}

/// Resolves a key for an operation that writes and also reveals what the key holds
/// (its value, or whether it has one): it needs both privileges. Under
/// `pg_cache.on_limit = warning` a key over the limit or a cache that can get no
/// slot skips the call, as if it had not been made, unless the operation deletes
/// (`invalidates`, a pull): an invalidation is never skipped.
///
/// `allowed` says where the call may run: [`check_writable`], or for a single-flight
/// read, which only takes a key lock for a fill, [`args::check_fillable`] (a hot
/// standby too).
fn target<'a>(
    allowed: fn(&str),
    function: &str,
    cache: Option<&'a str>,
    key: Option<&'a str>,
    invalidates: bool,
) -> Result<Target<'a>, Skipped> {
    allowed(function);
    let name = check_name(cache);
    let key = key_arg(key);
    let (slot, config) = if invalidates { registry::resolve(name) } else { args::resolve_conditional_write(name)? };
    args::check_write(name, &config);
    args::check_read(name, &config);
    let key = if invalidates { args::key_to_invalidate(slot, key) } else { check_key(Some(slot), key)? };
    let stored = registry::stored_key(&config, key);
    Ok(Target { name, key, slot, config, stored })
}

/// What a read-then-write operation starts from, its key's lock held: what the
/// transaction sees under the key (its own write, else the shared cache's), the
/// mode a write made from it commits in, and the expiry of the entry it read.
struct Basis {
    held: Held,
    mode: SetMode,
    expiry: Expiry,
    /// The tags of the entry read: a value computed from it carries them on.
    tags: Vec<u64>,
}

/// What a key holds for an operation on jsonb values.
enum Held {
    Nothing,
    Jsonb(RawJsonb),
    /// A value of another kind (`None`: unknown to this build).
    OtherKind(Option<ValueKind>),
}

impl Held {
    /// The jsonb value, if any; a value of another kind is an error.
    fn jsonb(self, t: &Target) -> Option<RawJsonb> {
        match self {
            Held::Nothing => None,
            Held::Jsonb(v) => Some(v),
            Held::OtherKind(kind) => errors::other_kind(t.name, t.key, kind, ValueKind::Jsonb),
        }
    }
}

fn basis(t: &Target) -> Basis {
    let own = pending::last_set(t.name, &t.stored, |set| {
        set.map(|s| {
            let held = if s.kind == ValueKind::Jsonb {
                Held::Jsonb(RawJsonb::build(s.value.len(), |out| out.copy_from_slice(s.value)))
            } else {
                Held::OtherKind(Some(s.kind))
            };
            (held, s.mode, s.expiry, s.tags.to_vec())
        })
    });
    // A write made from the transaction's own write commits as that one would: a
    // fill stays a fill (it may derive from old rows), a put a put, a write computed
    // from a read keeps that read's condition.
    if let Some((held, mode, expiry, tags)) = own {
        return Basis { held, mode, expiry, tags };
    }
    let deleted = pending::lookup(t.name, &t.stored, |p| !matches!(p, Pending::Unknown));
    if deleted {
        // Deleted or cleared by this transaction: a put, or under the condition of
        // the pull that deleted it; past the time its own write was given, in that
        // write's mode (a fill stays a fill: an add built on it must not become a
        // put that overwrites another session's committed add).
        let mode = pending::last_set_mode(t.name, &t.stored)
            .unwrap_or_else(|| pending::seen(t.name, &t.stored).map_or(SetMode::Put, SetMode::IfUnchanged));
        return Basis { held: Held::Nothing, mode, expiry: Expiry::Default, tags: Vec::new() };
    }
    let hash = key::hash(t.slot.index, &t.stored);
    let hidden = args::hidden_tags(t.name);
    let o = shmem::store().observe(t.slot, &t.stored, hash, ValueKind::Jsonb, args::latest_view(&hidden), now, |len, copy| {
        RawJsonb::build(len, copy)
    });
    let mode = SetMode::IfUnchanged(o.seen);
    let tags = o.tags.as_slice().to_vec();
    // The shared value's expiry: the one this transaction's touch gave it, else
    // whatever it has at commit (a touch committed meanwhile included).
    let kept = pending::touched(t.name, &t.stored).unwrap_or(Expiry::Keep);
    match o.found {
        Lookup::Hit(v) => Basis { held: Held::Jsonb(v), mode, expiry: kept, tags },
        Lookup::Miss | Lookup::Expired => Basis { held: Held::Nothing, mode, expiry: Expiry::Default, tags: Vec::new() },
        Lookup::OtherKind(kind) => Basis { held: Held::OtherKind(kind), mode, expiry: kept, tags },
    }
}

/// Logs `value` under the target's key; a value over a limit skips (the key keeps
/// what it holds: these writes are computed from it).
fn push_value(t: &Target, value: &RawJsonb, expiry: Expiry, mode: SetMode, tags: Vec<u64>) -> Result<(), Skipped> {
    args::check_value(t.slot, &t.config, t.stored.len() + tags.len() * 8, value.bytes().len())?;
    shmem::store().prefetch_bucket(key::hash(t.slot.index, &t.stored));
    let bytes = try_copy(value.bytes()).unwrap_or_else(|_| errors::out_of_memory("copying a value"));
    let stored = try_copy(&t.stored).unwrap_or_else(|_| errors::out_of_memory("copying a key"));
    pending::push(Op::Set { cache: owned(t.name), key: stored, value: bytes, kind: ValueKind::Jsonb, expiry, mode, tags });
    Ok(())
}

/// Stores `value` under `key` at commit if the key holds nothing; whether it did.
/// The answer is the truth at commit: of two transactions adding one key, the
/// second waits for the first to end (as for a unique index) and then gets false
/// if the first committed. NULL when a limit skipped the call.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_add(
    cache: Option<&str>,
    key: Option<&str>,
    value: Option<RawJsonb>,
    ttl: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<bool> {
    let value = value.unwrap_or_else(|| errors::null_argument("value"));
    let expiry = args::expiry(ttl, expires_at);
    let t = target(check_writable, "cache_add", cache, key, false).ok()?;
    // Before the lock: a value too large skips without waiting for other adders.
    args::check_value(t.slot, &t.config, t.stored.len(), value.bytes().len()).ok()?;
    keylock::lock(t.name, &t.stored);
    let b = basis(&t);
    // A value of any kind makes the key present.
    if !matches!(b.held, Held::Nothing) {
        return Some(false);
    }
    push_value(&t, &value, expiry, b.mode, b.tags).ok()?;
    Some(true)
}

/// Adds `delta` to the integer under `key` and returns the value this transaction
/// commits. A missing key starts at `initial` (with `initial => NULL` it stays
/// missing and the result is NULL). Increments of one key by concurrent
/// transactions follow each other (the second waits for the first to end), so N
/// committed increments by 1 add N. Without `ttl` or `expires_at` the key keeps its
/// expiry.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_incr(
    cache: Option<&str>,
    key: Option<&str>,
    delta: default!(Option<i64>, "1"),
    initial: default!(Option<i64>, "0"),
    ttl: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<i64> {
    let delta = delta.unwrap_or_else(|| errors::null_argument("delta"));
    add_to("cache_incr", cache, key, delta, initial, args::expiry(ttl, expires_at))
}

/// [`cache_incr`] by `-delta`.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_decr(
    cache: Option<&str>,
    key: Option<&str>,
    delta: default!(Option<i64>, "1"),
    initial: default!(Option<i64>, "0"),
    ttl: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<i64> {
    let delta = delta.unwrap_or_else(|| errors::null_argument("delta"));
    let delta = delta.checked_neg().unwrap_or_else(|| out_of_range("cache_decr", format!("-({delta})")));
    add_to("cache_decr", cache, key, delta, initial, args::expiry(ttl, expires_at))
}

fn out_of_range(function: &str, what: String) -> ! {
    errors::raise(
        PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        format!("{function}: {what} is out of range for bigint"),
        "The key keeps its value.",
    )
}

fn add_to(function: &str, cache: Option<&str>, key: Option<&str>, delta: i64, initial: Option<i64>, expiry: Expiry) -> Option<i64> {
    let t = target(check_writable, function, cache, key, false).ok()?;
    keylock::lock(t.name, &t.stored);
    let b = basis(&t);
    let current = match &b.held.jsonb(&t) {
        Some(v) => v.as_integer().unwrap_or_else(|e| match e {
            NotInteger::Kind(kind) => errors::raise(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!("{function}: cache \"{}\" holds a {kind} under key \"{}\", not an integer", t.name, t.key),
                "Counters hold JSON integers: put one there first, or delete the key.",
            ),
            NotInteger::OutOfRange => out_of_range(function, format!("the value under key \"{}\"", t.key)),
        }),
        None => initial?,
    };
    let next = current.checked_add(delta).unwrap_or_else(|| out_of_range(function, format!("{current} + {delta}")));
    // A key read from the shared cache keeps the expiry it had; a new one gets its
    // cache's duration.
    let expiry = if expiry == Expiry::Default { b.expiry } else { expiry };
    push_value(&t, &RawJsonb::from_integer(next), expiry, b.mode, b.tags).ok()?;
    Some(next)
}

/// Returns the value of `key` (or `default` when missing) and deletes it at commit.
/// Of two transactions pulling one key, the second waits for the first to end and
/// then finds the key gone if the first committed: one value, one receiver.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_pull(cache: Option<&str>, key: Option<&str>, default: default!(Option<RawJsonb>, "NULL")) -> Option<RawJsonb> {
    let Ok(t) = target(check_writable, "cache_pull", cache, key, true) else { unreachable!("an invalidation is never skipped") };
    keylock::lock(t.name, &t.stored);
    let b = basis(&t);
    let Some(value) = b.held.jsonb(&t) else { return default };
    let seen = match b.mode {
        SetMode::IfUnchanged(seen) => Some(seen),
        SetMode::Fill | SetMode::Put => None,
    };
    let stored = try_copy(&t.stored).unwrap_or_else(|_| errors::out_of_memory("copying a key"));
    pending::push(Op::Delete { cache: owned(t.name), key: stored, seen });
    Some(value)
}

/// Whether `key` holds a value: counts no hit or miss, copies nothing and leaves
/// the entry's place in eviction order as it was.
#[pg_extern(volatile, parallel_restricted)]
fn cache_has(cache: Option<&str>, key: Option<&str>) -> bool {
    let name = check_name(cache);
    let key = key_arg(key);
    let Ok((slot, config)) = resolve_read(name) else { return false };
    let Ok(key) = check_key(slot, key) else { return false };
    let stored = registry::stored_key(&config, key);
    // No copy of the transaction's own value either: whether it has one.
    let own = pending::lookup(name, &stored, |p| match p {
        Pending::Value(..) => Some(true),
        Pending::Deleted | Pending::Cleared => Some(false),
        Pending::Unknown => None,
    });
    if let Some(found) = own {
        return found;
    }
    let Some(slot) = slot else { return false };
    let hidden = args::hidden_tags(name);
    shmem::store().contains(slot, &stored, key::hash(slot.index, &stored), args::view(&hidden), now)
}

/// Gives `key` a new expiry, `ttl` after commit or at `expires_at` (`infinity`:
/// never), without rewriting its value; whether the key holds a value. Not an
/// invalidation: fills of the key by other transactions are not dropped for it. At
/// commit it applies to whatever value the key then holds.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_touch(
    cache: Option<&str>,
    key: Option<&str>,
    ttl: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> bool {
    let expiry = args::expiry(ttl, expires_at);
    if expiry == Expiry::Default {
        errors::null_argument("ttl or expires_at");
    }
    // Over a limit (the key's, or no slot for the cache): the key holds no value.
    let Ok(t) = target(check_writable, "cache_touch", cache, key, false) else { return false };
    // The transaction's own value: written again with the new expiry.
    let own = pending::last_set(t.name, &t.stored, |set| {
        set.map(|s| (try_copy(s.value).unwrap_or_else(|_| errors::out_of_memory("copying a value")), s.kind, s.mode, s.tags.to_vec()))
    });
    let stored = || try_copy(&t.stored).unwrap_or_else(|_| errors::out_of_memory("copying a key"));
    if let Some((value, kind, mode, tags)) = own {
        pending::push(Op::Set { cache: owned(t.name), key: stored(), value, kind, expiry, mode, tags });
        return true;
    }
    if pending::lookup(t.name, &t.stored, |p| !matches!(p, Pending::Unknown)) {
        return false;
    }
    // What the commit will touch: the latest entry, whatever this transaction's snapshot.
    let hidden = args::hidden_tags(t.name);
    if !shmem::store().contains(t.slot, &t.stored, key::hash(t.slot.index, &t.stored), args::latest_view(&hidden), now) {
        return false;
    }
    pending::push(Op::Touch { cache: owned(t.name), key: stored(), expiry });
    true
}

/// Single flight: the value of `key`, or NULL after taking the key's lock until the
/// transaction ends. A caller that gets NULL computes the value, writes it (set or
/// put) and commits; others asking meanwhile wait for that commit (bounded by
/// `lock_timeout`, shown in `pg_locks`, part of deadlock detection) and then get
/// its value, or the lock if it rolled back or its fill was dropped as stale.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_get_or_lock(cache: Option<&str>, key: Option<&str>) -> Option<RawJsonb> {
    // Over a limit: NULL without the lock (the caller's write is skipped too).
    let t = target(args::check_fillable, "cache_get_or_lock", cache, key, false).ok()?;
    if let Some(found) = own_value(t.name, t.key, &t.stored) {
        // This transaction writes the key itself: nobody else's fill to wait for.
        return found;
    }
    let store = shmem::store();
    let hash = key::hash(t.slot.index, &t.stored);
    let hidden = args::hidden_tags(t.name);
    let read = || store.lookup_as_of(t.slot, &t.stored, hash, ValueKind::Jsonb, args::latest_view(&hidden), now, |len, copy| RawJsonb::build(len, copy));
    let found = read();
    match &found {
        Lookup::Hit(_) => store.count_hit(t.slot, pg::stripe()),
        _ => store.count_miss(t.slot, pg::stripe()),
    }
    if let Lookup::Hit(v) = found {
        return Some(v);
    }
    if let Lookup::OtherKind(kind) = found {
        other_kind(&t, kind);
    }
    keylock::lock(t.name, &t.stored);
    match read() {
        Lookup::Hit(v) => {
            // Filled while we waited: nothing left to compute, let others through.
            keylock::unlock(t.name, &t.stored);
            Some(v)
        }
        Lookup::OtherKind(kind) => other_kind(&t, kind),
        // The key was invalidated after this transaction began (for a waiter, often
        // by the fill it waited for, dropped as stale): this transaction's fill
        // would be dropped too (rule 5), so holding others back would only make
        // them compute one after another. They compute side by side instead, and
        // the next transaction's fill installs.
        Lookup::Miss | Lookup::Expired if store.fill_would_be_stale(t.slot, &t.stored, hash, pg::transaction_start()) => {
            keylock::unlock(t.name, &t.stored);
            None
        }
        Lookup::Miss | Lookup::Expired => None,
    }
}

fn other_kind(t: &Target, kind: Option<ValueKind>) -> ! {
    errors::other_kind(t.name, t.key, kind, ValueKind::Jsonb)
}

/// When `key`'s value expires: `infinity` for never, NULL when the key holds none.
/// For a value this transaction wrote, as if it committed now.
#[pg_extern(volatile, parallel_restricted)]
fn cache_expires_at(cache: Option<&str>, key: Option<&str>) -> Option<TimestampWithTimeZone> {
    let name = check_name(cache);
    let key = key_arg(key);
    let (slot, config) = resolve_read(name).ok()?;
    let key = check_key(slot, key).ok()?;
    let stored = registry::stored_key(&config, key);
    let duration = registry::duration_us(&config);
    let own = pending::last_set(name, &stored, |set| set.map(|s| s.expiry));
    if own.is_none() && pending::lookup(name, &stored, |p| !matches!(p, Pending::Unknown)) {
        return None;
    }
    // The shared entry's expiry, when this transaction's own write keeps it or it
    // wrote nothing (then the key must hold a value).
    let shared = || {
        slot.and_then(|slot| {
            let hidden = args::hidden_tags(name);
            let view = args::latest_view(&hidden);
            let o = shmem::store().observe(slot, &stored, key::hash(slot.index, &stored), ValueKind::Jsonb, view, now, |_, _| ());
            matches!(o.found, Lookup::Hit(()) | Lookup::OtherKind(_)).then_some(o.expires_at)
        })
    };
    let at = match own {
        Some(Expiry::Keep) => shared(),
        Some(expiry) => Some(expiry.at(now(), duration, NO_EXPIRY)),
        None => shared(),
    };
    // A touch this transaction made of the shared value: its new expiry.
    let at = at.map(|at| pending::touched(name, &stored).map_or(at, |expiry| expiry.at(now(), duration, at)));
    // An own write whose time has passed holds nothing, as cache_get says.
    let at = at.filter(|&at| own.is_none() || at > now());
    // NO_EXPIRY is i64::MAX, PostgreSQL's 'infinity'.
    at.map(|at| TimestampWithTimeZone::try_from(at).unwrap_or_else(|_| unreachable!("an expiry is a representable time")))
}
