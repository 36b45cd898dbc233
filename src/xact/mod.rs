//! The transaction's write set and the callbacks that apply it.
//!
//! Registered once in `_PG_init`. At PRE_COMMIT everything that can fail runs:
//! slots are resolved (maybe created) and entries are allocated and filled, evicting
//! if memory is short. At COMMIT, cache by cache under its commit lock, fills older
//! than a committed invalidation are dropped, then the prepared entries are linked
//! in, clears bump generations and declarations are published: no allocation that
//! can ERROR, no ERROR. At ABORT prepared entries are freed and the write set dropped.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::errors;
use crate::gucs;
use crate::keylock;
use crate::privileges;
use crate::registry;
use pg_cache_core::invalidation::Invalidation;
use pg_cache_core::key;
use pg_cache_core::store::{CacheConfig, NewEntry, Prepared, Reserve, Seen, SlotRef, NO_EXPIRY};
use pg_cache_core::feed;
use pg_cache_core::writeset::{Expiry, Op, SetMode};
use crate::pg::{self, database, nest_level, now, transaction_start};
use crate::{pending, shmem, wal};

mod announce;
mod hooks;
mod logged;

use announce::{announcements, max_payload, FEED_CHANNEL};

/// Keys are kept from PRE_COMMIT on, so that COMMIT allocates nothing.
enum CommitWrite {
    /// `mode`: how it meets what committed meanwhile (see [`SetMode`]). `skip`: a
    /// commit of several writes judged it stale or overtaken before applying any.
    /// `keep_expiry`: the entry takes the key's expiry at commit ([`Expiry::Keep`]).
    Set { entry: Prepared, key: Vec<u8>, hash: u64, mode: SetMode, keep_expiry: bool, skip: Skip },
    /// `seen`: only if the key still holds what a read saw (`cache_pull`).
    Delete { key: Vec<u8>, hash: u64, seen: Option<Seen>, skip: Skip },
    /// A new expiry for the entry the key holds at commit.
    Touch { key: Vec<u8>, hash: u64, expires_at: i64 },
}

/// What a commit of several writes decided about a write before applying any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Skip {
    No,
    /// A fill older than an invalidation of its key: dropped, its key invalidated.
    Stale,
    /// Computed from a read that a later commit overtook: nothing happens.
    Overtaken,
}

/// What the commit does to one cache, in this order: declare, clear, writes.
struct CacheWrites {
    slot: SlotRef,
    /// The cache's name hash, which names it in WAL (see `wal`), and how its keys
    /// are stored ([`registry::key_encoding`]).
    name: u64,
    encoding: u64,
    /// Sets beyond what the cache keeps, committed as deletes: counted as evictions.
    evicted: u64,
    declare: Option<CacheConfig>,
    clear: bool,
    /// Tags (hashes) and stored prefixes this commit invalidates.
    tags: Vec<u64>,
    prefixes: Vec<Vec<u8>>,
    size_limit: u64,
    writes: Vec<CommitWrite>,
}

struct CommitPlan {
    /// When the transaction started: its fills are judged against later invalidations.
    start: i64,
    clear_all: bool,
    /// With `clear_all`: the caches it leaves alone, namely those the caller may not
    /// write (judged at PRE_COMMIT, where a catalog lookup may fail) and those this
    /// plan writes, which their own commit clears before installing.
    /// The first `not_writable` are those the caller may not write.
    not_cleared: Vec<SlotRef>,
    not_writable: usize,
    caches: Vec<CacheWrites>,
}

#[derive(Default)]
struct Txn {
    commit: Option<CommitPlan>,
    /// Databases this transaction drops (`DROP DATABASE`), detached at its commit.
    dropped_databases: Vec<u32>,
    /// This transaction drops the extension in the current database: its caches go
    /// at commit, so that a later `CREATE EXTENSION` starts empty.
    dropped_extension: bool,
    /// Its ROLLBACK prepared its fills to install at ABORT as at a commit (see
    /// [`prepare_fills_kept_at_rollback`]).
    keep_fills: bool,
}

thread_local! {
    static TXN: RefCell<Txn> = RefCell::new(Txn::default());
    /// Slots this transaction's commit pinned (see `resolve_pinned`), kept apart from
    /// `TXN` so that pinning needs no mutable borrow of it. Never holds anything
    /// while `TXN` is empty (pins are taken at PRE_COMMIT, with writes pending), so
    /// `has_writes` need not look here.
    static PINNED: RefCell<Vec<SlotRef>> = const { RefCell::new(Vec::new()) };
    /// The blocks this backend's last overwrite freed, for its next write; handed
    /// back to the free list when the backend exits.
    static RESERVE: Reserve = {
        // SAFETY: registers a callback for this backend's exit, once (this runs on
        // the reserve's first use); it runs before the backend leaves shared memory.
        unsafe { pg_sys::on_shmem_exit(Some(release_reserve), pg_sys::Datum::from(0)) };
        Reserve::new(pg::stripe())
    };
}

#[pg_guard]
unsafe extern "C-unwind" fn release_reserve(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    RESERVE.with(|reserve| shmem::store().release_reserve(reserve));
}

pub fn register() {
    // SAFETY: callback and hook registration, once, from _PG_init in the postmaster.
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
    hooks::install(hooks::Events {
        rollback: before_rollback,
        dropped_database: |db| TXN.with_borrow_mut(|t| t.dropped_databases.push(db)),
        dropped_extension: || TXN.with_borrow_mut(|t| t.dropped_extension = true),
    });
}

#[pg_guard]
unsafe extern "C-unwind" fn before_rollback() {
    if gucs::keep_fills_on_rollback() {
        prepare_fills_kept_at_rollback();
    }
}

/// `pg_cache.keep_fills_on_rollback`: a transaction that wrote no data (it has no
/// transaction ID) read only committed rows, so its fills are as good as a committed
/// transaction's; Tryton runs its reads in such transactions and ends them with
/// ROLLBACK, as PostgreSQL advises. When its pg_cache writes are all fills (a put,
/// delete, clear or guarded write rolls back, and a fill might derive from one), the
/// commit's first half runs here, before the ROLLBACK, where it may still fail; ABORT
/// then installs them as COMMIT would, judged stale the same way (rule 17). A
/// failure here only drops the fills, with a WARNING: it must not fail the ROLLBACK.
fn prepare_fills_kept_at_rollback() {
    if pending::is_empty() || !pending::with(|w| w.only_fills()) {
        return;
    }
    // SAFETY: no preconditions; reads this backend's transaction state.
    let (aborted, xid) = unsafe { (pg_sys::IsAbortedTransactionBlockState(), pg_sys::GetTopTransactionIdIfAny()) };
    if aborted || xid != pg_sys::InvalidTransactionId {
        return;
    }
    if TXN.with_borrow(|t| t.commit.is_some() || !t.dropped_databases.is_empty() || t.dropped_extension) {
        return;
    }
    let prepared = PgTryBuilder::new(|| {
        prepare_commit();
        true
    })
    .catch_others(|e| {
        let message = match &e {
            pgrx::pg_sys::panic::CaughtError::PostgresError(r)
            | pgrx::pg_sys::panic::CaughtError::ErrorReport(r)
            | pgrx::pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => r.message().to_string(),
        };
        pgrx::warning!("pg_cache: the fills of this transaction are dropped with it: {message}");
        false
    })
    .execute();
    if prepared {
        TXN.with_borrow_mut(|t| t.keep_fills = true);
    }
}

/// Resolves `name` and pins its slot until this transaction ends, so that it is not
/// reclaimed while entries are prepared for it. A slot reclaimed between the two is
/// resolved again.
fn resolve_pinned(name: &str) -> (SlotRef, std::rc::Rc<CacheConfig>) {
    let store = shmem::store();
    loop {
        let (slot, config) = registry::resolve(name);
        if PINNED.with_borrow_mut(|p| p.try_reserve(1)).is_err() {
            errors::out_of_memory("planning the commit of pg_cache writes");
        }
        if store.pin(slot, pg::stripe()) {
            PINNED.with_borrow_mut(|p| p.push(slot));
            return (slot, config);
        }
    }
}

/// Gives `name` the settings `config` at once, outside the transaction (a
/// `cache_declare` in a READ ONLY transaction), as a committed declaration's commit
/// does, under the cache's commit lock; but only if its owner and roles are still
/// those of `checked`, which the caller judged its privileges against (else
/// `false`: a declaration committed in between). The slot is pinned meanwhile, so
/// that it is not reclaimed and given to another cache.
pub fn declare_now(name: &str, config: &CacheConfig, checked: &CacheConfig) -> bool {
    let store = shmem::store();
    let stripe = pg::stripe();
    let slot = loop {
        let (slot, _) = registry::resolve(name);
        if store.pin(slot, stripe) {
            break slot;
        }
    };
    // Nothing below can fail: the pin is always released.
    let applied = {
        let commit = store.commit(slot, now());
        let live = store.config(slot);
        let unchanged = live.owner == checked.owner && live.readers == checked.readers && live.writers == checked.writers;
        if unchanged {
            commit.set_config(config, registry::size_limit(config));
        }
        unchanged
    };
    store.unpin(slot, stripe);
    applied
}

/// Unpins what [`resolve_pinned`] pinned; at COMMIT and ABORT, so it cannot fail.
fn unpin_all() {
    let store = shmem::store();
    let stripe = pg::stripe();
    PINNED.with_borrow_mut(|p| {
        for slot in p.drain(..) {
            store.unpin(slot, stripe);
        }
    });
}

/// Reserves room for `n` more items, or raises 53200: PRE_COMMIT may fail, the
/// process may not abort.
fn reserve<T>(v: &mut Vec<T>, n: usize) {
    // Amortized (doubling): the commit plan grows a write at a time.
    if v.try_reserve(n).is_err() {
        errors::out_of_memory("preparing the commit of pg_cache writes");
    }
}

/// One cache of the commit plan as PRE_COMMIT's first phase resolves it: writes are
/// indexes of the write set's operations.
struct Resolved {
    slot: SlotRef,
    name: u64,
    config: std::rc::Rc<CacheConfig>,
    declare: Option<CacheConfig>,
    clear: bool,
    /// Tag and prefix invalidations, copied from the write set.
    tags: Vec<u64>,
    prefixes: Vec<Vec<u8>>,
    /// Operation indexes, and whether a later tag or prefix invalidation of the
    /// transaction covers the write (it commits as a delete).
    writes: Vec<(usize, bool)>,
    /// How many of `writes` install an entry (sets not covered).
    sets: usize,
    /// Room for what phase 2 makes of `writes`, reserved in phase 1.
    out: Vec<CommitWrite>,
}

/// PRE_COMMIT: do everything that can fail.
fn prepare_commit() {
    // Phase 1 may ERROR (slot creation, memory): it allocates nothing in shared
    // memory. Slots are resolved while the write set is in place (resolving consults
    // this transaction's declarations); writes are grouped by cache as operation
    // indexes, and every list phase 2 fills is reserved here.
    let (clear_all, resolved, feed) = pending::with(|writes| {
        let plan = writes.plan().unwrap_or_else(|_| errors::out_of_memory("planning the commit of pg_cache writes"));
        let mut caches: Vec<Resolved> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        // The index in `caches` of `name`'s group, resolved and pinned on first sight.
        fn group<'a>(caches: &mut Vec<Resolved>, index: &mut HashMap<&'a str, usize>, name: &'a str) -> usize {
            if let Some(&i) = index.get(name) {
                return i;
            }
            let (slot, config) = resolve_pinned(name);
            reserve(caches, 1);
            if index.try_reserve(1).is_err() {
                errors::out_of_memory("planning the commit of pg_cache writes");
            }
            caches.push(Resolved {
                slot,
                name: key::name_hash(name.as_bytes()),
                config,
                declare: None,
                clear: false,
                tags: Vec::new(),
                prefixes: Vec::new(),
                writes: Vec::new(),
                sets: 0,
                out: Vec::new(),
            });
            index.insert(name, caches.len() - 1);
            caches.len() - 1
        }
        for &(name, config) in &plan.declares {
            let i = group(&mut caches, &mut index, name);
            caches[i].declare = Some(config);
        }
        for &name in &plan.clears {
            let i = group(&mut caches, &mut index, name);
            caches[i].clear = true;
        }
        for &(name, tags, _) in &plan.tags {
            let i = group(&mut caches, &mut index, name);
            reserve(&mut caches[i].tags, tags.len());
            caches[i].tags.extend_from_slice(tags);
        }
        for &(name, prefix) in &plan.prefixes {
            let i = group(&mut caches, &mut index, name);
            reserve(&mut caches[i].prefixes, 1);
            let prefix = pg_cache_core::writeset::try_copy(prefix).unwrap_or_else(|_| errors::out_of_memory("planning the commit of pg_cache writes"));
            caches[i].prefixes.push(prefix);
        }
        for w in &plan.writes {
            let i = group(&mut caches, &mut index, w.cache);
            reserve(&mut caches[i].writes, 1);
            caches[i].writes.push((w.op, w.covered));
            caches[i].sets += usize::from(matches!(w.change, pg_cache_core::writeset::Change::Set { .. }) && !w.covered);
        }
        let feed = announcements(&plan, &index, |i| (caches[i].config.notify, caches[i].clear));
        (plan.clear_all, caches, feed)
    });
    // Queued now, while the transaction can still fail: PostgreSQL sends them at
    // its commit, and drops them if it aborts after all. Not on a standby, which
    // cannot NOTIFY (and where only fills are made, local to it).
    if !pg::in_recovery() {
        for payload in &feed {
            pg::notify(FEED_CHANNEL, payload);
        }
    }
    let mut plan = CommitPlan { start: transaction_start(), clear_all, not_cleared: Vec::new(), not_writable: 0, caches: Vec::new() };
    if clear_all {
        let store = shmem::store();
        let mut announced = false;
        for (slot, _) in store.slots_of(database()) {
            let config = store.config(slot);
            if config.notify && !announced {
                let cleared = feed::Changes { cleared: true, ..Default::default() };
                pg::notify(FEED_CHANNEL, &feed::payloads("*", &cleared, max_payload())[0]);
                announced = true;
            }
            if !privileges::may(&config, &config.writers) {
                reserve(&mut plan.not_cleared, 1);
                plan.not_cleared.push(slot);
            }
        }
        plan.not_writable = plan.not_cleared.len();
        reserve(&mut plan.not_cleared, resolved.len());
        plan.not_cleared.extend(resolved.iter().map(|r| r.slot));
    }
    reserve(&mut plan.caches, resolved.len());
    let mut resolved = resolved;
    for r in &mut resolved {
        reserve(&mut r.out, r.writes.len());
    }
    // Keys and values move from the write set to the commit plan; nothing reads the
    // write set after PRE_COMMIT.
    let mut ops = pending::take();
    // Phase 2 cannot ERROR: it pushes only into reserved room, and allocation in
    // shared memory evicts instead of failing.
    let store = shmem::store();
    let now = now();
    for r in resolved {
        let mut writes = r.out;
        // A cache keeps at most size_limit entries, and its newest installs are the
        // ones it keeps: the sets before the last size_limit ones would be evicted
        // by this very commit. They are not prepared at all, so that a big commit to
        // a small cache does not first take the memory of every other cache (a
        // 300,000-key commit to a cache of 1,024 entries evicted a concurrent test's
        // whole cache): each deletes what the key held, as installing and evicting
        // would have (a write computed from a read only what it read). Not a fill
        // dropped outright: the plan holds a key's last write only, and a fill may
        // stand for the transaction's own earlier delete of the key (a bound
        // table's trigger, then a refill). Counted as evictions at COMMIT, as they
        // would have been.
        let size_limit = registry::size_limit(&r.config).max(r.declare.as_ref().map_or(0, registry::size_limit));
        let mut not_kept = r.sets.saturating_sub(size_limit.try_into().unwrap_or(usize::MAX));
        let evicted = not_kept as u64;
        for (op, covered) in r.writes {
            match ops.take_op(op) {
                // Covered by the transaction's own later tag or prefix invalidation.
                Op::Set { key, .. } if covered => {
                    let hash = key::hash(r.slot.index, &key);
                    writes.push(CommitWrite::Delete { key, hash, seen: None, skip: Skip::No });
                }
                Op::Set { key, mode, .. } if not_kept > 0 => {
                    not_kept -= 1;
                    let hash = key::hash(r.slot.index, &key);
                    let seen = match mode {
                        SetMode::IfUnchanged(seen) => Some(seen),
                        SetMode::Fill | SetMode::Put => None,
                    };
                    writes.push(CommitWrite::Delete { key, hash, seen, skip: Skip::No });
                }
                Op::Delete { key, seen, .. } => {
                    let hash = key::hash(r.slot.index, &key);
                    writes.push(CommitWrite::Delete { key, hash, seen, skip: Skip::No });
                }
                Op::Touch { key, expiry, .. } => {
                    let hash = key::hash(r.slot.index, &key);
                    let expires_at = expiry.at(now, registry::duration_us(&r.config), NO_EXPIRY);
                    writes.push(CommitWrite::Touch { key, hash, expires_at });
                }
                Op::Set { key, value, kind, expiry, mode, tags, .. } => {
                    let hash = key::hash(r.slot.index, &key);
                    // Kept expiries are set at COMMIT, from the entry the key holds then.
                    let expires_at = expiry.at(now, registry::duration_us(&r.config), NO_EXPIRY);
                    let keep_expiry = expiry == Expiry::Keep;
                    debug_assert!(!keep_expiry || matches!(mode, SetMode::IfUnchanged(_)));
                    // A write that finds no room at all is lost like an entry evicted at
                    // once (counted so by the store), but its key is still invalidated:
                    // the transaction meant to replace whatever was there. (Too large
                    // cannot happen: cache_set checked the store's limit.)
                    let entry = NewEntry { key: &key, value: &value, kind, hash, expires_at, tags: &tags };
                    match RESERVE.with(|res| store.prepare(Some(res), r.slot, &entry, now)) {
                        Ok(Some(entry)) => writes.push(CommitWrite::Set { entry, key, hash, mode, keep_expiry, skip: Skip::No }),
                        // A write computed from a read still deletes only what it read.
                        Ok(None) | Err(_) => {
                            let seen = match mode {
                                SetMode::IfUnchanged(seen) => Some(seen),
                                SetMode::Fill | SetMode::Put => None,
                            };
                            writes.push(CommitWrite::Delete { key, hash, seen, skip: Skip::No })
                        }
                    }
                }
                _ => unreachable!("the plan's writes are sets, deletes and touches"),
            }
        }
        let size_limit = registry::size_limit(&r.config);
        plan.caches.push(CacheWrites {
            slot: r.slot,
            name: r.name,
            encoding: registry::key_encoding(&r.config),
            evicted,
            declare: r.declare,
            clear: r.clear,
            tags: r.tags,
            prefixes: r.prefixes,
            size_limit,
            writes,
        });
    }
    TXN.with_borrow_mut(|t| t.commit = Some(plan));
    // Last, after everything else that can fail; an ERROR here (memory) still aborts
    // cleanly, the plan being in place for ABORT to free.
    if wal::logging() {
        logged::log_invalidations();
    }
}

/// COMMIT: link and swap only, and no allocation (the plan is consumed in place).
/// Runs after the transaction became visible to new snapshots, so `now` is later than
/// any snapshot that missed its changes.
fn apply_commit() {
    pending::reset();
    let plan = TXN.with_borrow_mut(|t| t.commit.take());
    let (dropped, dropped_extension) =
        TXN.with_borrow_mut(|t| (std::mem::take(&mut t.dropped_databases), std::mem::take(&mut t.dropped_extension)));
    let store = shmem::store();
    let now = now();
    for db in dropped {
        store.invalidate(&Invalidation::DropCaches { db, fence: false }, now);
    }
    if dropped_extension {
        // Sessions still connected may be filling: their fills are fenced like
        // after cache_clear_all.
        store.invalidate(&Invalidation::DropCaches { db: database(), fence: true }, now);
    }
    let Some(mut plan) = plan else {
        unpin_all();
        return;
    };
    for cache in &mut plan.caches {
        if cache.evicted > 0 {
            store.count_evicted(cache.slot, cache.evicted);
        }
        if let [write] = cache.writes.as_slice() {
            if !cache.clear && !plan.clear_all && cache.declare.is_none() && cache.tags.is_empty() && cache.prefixes.is_empty() {
                // One key: visible atomically without excluding other commits.
                let commit = store.commit_one(cache.slot, now);
                match write {
                    CommitWrite::Set { entry, key, mode: SetMode::Put, .. } => {
                        RESERVE.with(|res| commit.install(Some(res), *entry, key, cache.size_limit));
                    }
                    CommitWrite::Set { entry, key, mode: SetMode::Fill, .. } => {
                        RESERVE.with(|res| commit.install_if_fresh(Some(res), *entry, key, cache.size_limit, plan.start));
                    }
                    CommitWrite::Set { entry, key, mode: SetMode::IfUnchanged(seen), keep_expiry, .. } => {
                        RESERVE.with(|res| {
                            commit.install_if_unchanged(Some(res), *entry, key, cache.size_limit, *seen, *keep_expiry)
                        });
                    }
                    CommitWrite::Delete { key, hash, seen: None, .. } => {
                        commit.delete(key, *hash);
                    }
                    CommitWrite::Delete { key, hash, seen: Some(seen), .. } => {
                        commit.delete_if_unchanged(key, *hash, *seen);
                    }
                    CommitWrite::Touch { key, hash, expires_at } => {
                        commit.touch(key, *hash, *expires_at);
                    }
                }
                continue;
            }
        }
        // Many writes: a shadowed commit, which lookups do not wait for (they waited
        // 1.35 s for a 1M-key commit); a few: a plain one, which they wait for
        // briefly and which does not walk its keys twice.
        // Not with tag or prefix invalidations, which lookups would see before the
        // shadowed commit is published.
        let shadowed = cache.writes.len() >= SHADOWED_AFTER && cache.tags.is_empty() && cache.prefixes.is_empty();
        let commit = if shadowed { store.commit_shadowed(cache.slot, now) } else { store.commit(cache.slot, now) };
        // Judge every fill and every write computed from a read before this commit
        // changes anything itself.
        for w in &mut cache.writes {
            match w {
                CommitWrite::Set { entry, key, mode: SetMode::Fill, skip, .. } if commit.is_stale_fill(*entry, key, plan.start) => {
                    *skip = Skip::Stale;
                }
                CommitWrite::Set { entry, key, hash, mode: SetMode::IfUnchanged(seen), keep_expiry, skip } => {
                    match commit.holds(key, *hash, *seen) {
                        None => *skip = Skip::Overtaken,
                        Some(at) if *keep_expiry => commit.set_prepared_expiry(*entry, at),
                        Some(_) => {}
                    }
                }
                CommitWrite::Delete { key, hash, seen: Some(seen), skip } if commit.holds(key, *hash, *seen).is_none() => {
                    *skip = Skip::Overtaken;
                }
                _ => {}
            }
        }
        if let Some(config) = &cache.declare {
            commit.set_config(config, cache.size_limit);
        }
        if cache.clear || (plan.clear_all && !plan.not_cleared[..plan.not_writable].contains(&cache.slot)) {
            commit.clear();
        }
        // After the judging above (a fill of this transaction's own is not fenced by
        // its own invalidations) and before its writes, which were made after them
        // (those they cover are deletes by now) and so stay.
        if !cache.tags.is_empty() {
            commit.invalidate_tags(&cache.tags);
        }
        for prefix in &cache.prefixes {
            commit.invalidate_prefix(prefix);
        }
        for w in &cache.writes {
            match w {
                CommitWrite::Set { entry, key, skip: Skip::Stale, .. } => commit.drop_stale(*entry, key),
                CommitWrite::Set { entry, skip: Skip::Overtaken, .. } => commit.forgo(*entry),
                CommitWrite::Set { entry, key, .. } => {
                    RESERVE.with(|res| commit.install(Some(res), *entry, key, cache.size_limit))
                }
                CommitWrite::Delete { skip: Skip::Overtaken, .. } => {}
                CommitWrite::Delete { key, hash, .. } => {
                    commit.delete(key, *hash);
                }
                CommitWrite::Touch { key, hash, expires_at } => {
                    commit.touch(key, *hash, *expires_at);
                }
            }
        }
        if shadowed {
            commit.publish();
            for w in &cache.writes {
                match w {
                    CommitWrite::Set { skip: Skip::Overtaken, .. } | CommitWrite::Delete { skip: Skip::Overtaken, .. } => {}
                    CommitWrite::Set { entry, key, .. } => commit.settle_key(key, entry.hash()),
                    CommitWrite::Delete { key, hash, .. } => commit.settle_key(key, *hash),
                    CommitWrite::Touch { .. } => {}
                }
            }
        }
    }
    if plan.clear_all {
        store.invalidate(&Invalidation::Database { db: database(), except: &plan.not_cleared }, now);
    }
    unpin_all();
}

fn abort() {
    if TXN.with_borrow_mut(|t| std::mem::take(&mut t.keep_fills)) {
        // A plan of fills only, made by the ROLLBACK that is running (see
        // prepare_fills_kept_at_rollback): installed as at COMMIT, which cannot fail.
        apply_commit();
        return;
    }
    pending::reset();
    let plan = TXN.with_borrow_mut(|t| {
        t.dropped_databases.clear();
        t.dropped_extension = false;
        t.commit.take()
    });
    if let Some(plan) = plan {
        let store = shmem::store();
        for w in plan.caches.into_iter().flat_map(|c| c.writes) {
            if let CommitWrite::Set { entry, .. } = w {
                store.discard(entry);
            }
        }
    }
    unpin_all();
}

/// Writes to one cache from which a commit is shadowed (see the store's shadow.rs):
/// a plain commit of 1,000 keys keeps readers of its cache waiting about a
/// millisecond, a shadowed one walks each key twice.
const SHADOWED_AFTER: usize = 1000;

/// Writes after which a transaction's end trims the allocator: a write set of this
/// size holds a few MB, and a trim of a small heap costs microseconds.
const TRIM_AFTER_WRITES: usize = 10_000;

/// The write set and the commit plan are freed by now; when they were big, hand the
/// memory back (see `pg::give_back_free_memory`). Cannot fail.
fn give_back_memory_after_big_transaction() {
    if pending::logged() >= TRIM_AFTER_WRITES {
        pg::give_back_free_memory();
    }
    pending::reset_logged();
}

fn has_writes() -> bool {
    !pending::is_empty()
        || TXN.with_borrow(|t| {
            t.commit.is_some() || !t.dropped_databases.is_empty() || t.dropped_extension
    })
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT if has_writes() => prepare_commit(),
        XACT_EVENT_COMMIT => {
            if has_writes() {
                apply_commit();
                give_back_memory_after_big_transaction();
            }
            keylock::forget();
        }
        // A parallel worker's commit is not its transaction's commit: writes are
        // refused in workers, and anything left would be dropped, never applied.
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => {
            if has_writes() {
                abort();
                give_back_memory_after_big_transaction();
            }
            keylock::forget();
        }
        XACT_EVENT_PRE_PREPARE => {
            if has_writes() {
                errors::raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "cannot PREPARE a transaction that has pending pg_cache writes".into(),
                    "Write to pg_cache in a transaction that commits directly, not with two-phase commit.",
                );
            }
            if keylock::taken() {
                errors::raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "cannot PREPARE a transaction that took pg_cache key locks".into(),
                    "Use cache_add, cache_incr, cache_pull and cache_get_or_lock in a transaction that commits directly.",
                );
            }
        }
        _ => {}
    }
}

#[pg_guard]
pub(crate) unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    match event {
        SUBXACT_EVENT_ABORT_SUB => {
            pending::rollback_to(nest_level());
        }
        SUBXACT_EVENT_COMMIT_SUB => {
            pending::commit_sub(nest_level());
        }
        _ => {}
    }
}
