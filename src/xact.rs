//! The transaction's write set and the callbacks that apply it.
//!
//! Registered once in `_PG_init`. At PRE_COMMIT everything that can fail runs:
//! slots are resolved (maybe created) and entries are allocated and filled, evicting
//! if memory is short. At COMMIT the prepared entries are only linked in, clears
//! bump generations and declarations are published: no allocation that can ERROR,
//! no ERROR. At ABORT prepared entries are freed and the write set dropped.

use std::cell::RefCell;

use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::api::{caches, errors};
use crate::core::key;
use crate::core::store::{CacheConfig, Prepared, SlotRef, NO_EXPIRY};
use crate::core::writeset::{Op, Pending, WriteSet};
use crate::shmem;

enum CommitWrite {
    Set { slot: SlotRef, entry: Prepared, size_limit: u64 },
    Delete { slot: SlotRef, key: Vec<u8>, hash: u64 },
}

#[derive(Default)]
struct CommitPlan {
    declares: Vec<(SlotRef, CacheConfig, u64)>,
    clear_all: bool,
    clears: Vec<SlotRef>,
    writes: Vec<CommitWrite>,
    now: i64,
}

#[derive(Default)]
struct Txn {
    writes: WriteSet,
    commit: Option<CommitPlan>,
}

thread_local! {
    static TXN: RefCell<Txn> = RefCell::new(Txn::default());
}

pub fn register() {
    // SAFETY: plain callback registration, once per process from _PG_init.
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

fn nest_level() -> u32 {
    // SAFETY: no preconditions.
    unsafe { pg_sys::GetCurrentTransactionNestLevel() as u32 }
}

pub fn push(op: Op) {
    let level = nest_level();
    TXN.with_borrow_mut(|t| t.writes.push(level, op));
}

/// Calls `f` with what this transaction's own writes say about (cache, key).
pub fn lookup<R>(cache: &str, key: &[u8], f: impl FnOnce(Pending<'_>) -> R) -> R {
    TXN.with_borrow(|t| if t.writes.is_empty() { f(Pending::Unknown) } else { f(t.writes.lookup(cache, key)) })
}

pub fn declared(cache: &str) -> Option<CacheConfig> {
    TXN.with_borrow(|t| t.writes.declared(cache).copied())
}

pub fn declared_before(cache: &str) -> Option<Option<CacheConfig>> {
    TXN.with_borrow(|t| t.writes.declared_before(cache))
}

fn now() -> i64 {
    // SAFETY: no preconditions.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// PRE_COMMIT: do everything that can fail.
fn prepare_commit() {
    // Phase 1 may ERROR (slot creation): it allocates nothing in shared memory.
    let resolved = TXN.with_borrow(|t| {
        let plan = t.writes.plan();
        let declares: Vec<_> = plan.declares.iter().map(|(c, cfg)| (caches::resolve(c).0, *cfg)).collect();
        let clears: Vec<_> = plan.clears.iter().map(|c| caches::resolve(c).0).collect();
        let writes: Vec<_> = plan
            .writes
            .iter()
            .map(|w| {
                let (slot, config) = caches::resolve(w.cache);
                (slot, config, w.key.to_vec(), w.value.map(|(v, ttl)| (v.to_vec(), ttl)))
            })
            .collect();
        (declares, plan.clear_all, clears, writes)
    });
    let (declares, clear_all, clears, writes) = resolved;
    // Phase 2 cannot ERROR: allocation in shared memory evicts instead of failing.
    let store = shmem::store();
    let now = now();
    let mut plan = CommitPlan {
        declares: declares.into_iter().map(|(s, c)| (s, c, caches::size_limit(&c))).collect(),
        clear_all,
        clears,
        writes: Vec::with_capacity(writes.len()),
        now,
    };
    for (slot, config, key, value) in writes {
        let hash = key::hash(slot.index, &key);
        match value {
            None => plan.writes.push(CommitWrite::Delete { slot, key, hash }),
            Some((value, ttl)) => {
                let expires_at = ttl.or_else(|| caches::duration_us(&config)).map_or(NO_EXPIRY, |d| now.saturating_add(d));
                // A write that finds no room at all is dropped like an evicted entry.
                if let Ok(Some(entry)) = store.prepare(slot, &key, &value, hash, expires_at, now) {
                    plan.writes.push(CommitWrite::Set { slot, entry, size_limit: caches::size_limit(&config) });
                }
            }
        }
    }
    TXN.with_borrow_mut(|t| t.commit = Some(plan));
}

/// COMMIT: link and swap only.
fn apply_commit() {
    let plan = TXN.with_borrow_mut(|t| {
        t.writes.reset();
        t.commit.take()
    });
    let Some(plan) = plan else { return };
    let store = shmem::store();
    for (slot, config, size_limit) in &plan.declares {
        store.set_config(*slot, config);
        store.enforce_size_limit(*slot, *size_limit, plan.now);
    }
    if plan.clear_all {
        // SAFETY: MyDatabaseId is set in a connected backend.
        let db = unsafe { pg_sys::MyDatabaseId.to_u32() };
        for (slot, _) in store.slots_of(db) {
            store.clear(slot, plan.now);
        }
    }
    for slot in &plan.clears {
        store.clear(*slot, plan.now);
    }
    for w in plan.writes {
        match w {
            CommitWrite::Set { slot, entry, size_limit } => store.install(slot, entry, size_limit, plan.now),
            CommitWrite::Delete { slot, key, hash } => {
                store.delete(slot, &key, hash, plan.now);
            }
        }
    }
}

fn abort() {
    let plan = TXN.with_borrow_mut(|t| {
        t.writes.reset();
        t.commit.take()
    });
    if let Some(plan) = plan {
        let store = shmem::store();
        for w in plan.writes {
            if let CommitWrite::Set { entry, .. } = w {
                store.discard(entry);
            }
        }
    }
}

fn has_writes() -> bool {
    TXN.with_borrow(|t| !t.writes.is_empty() || t.commit.is_some())
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PARALLEL_PRE_COMMIT => {
            if has_writes() {
                prepare_commit();
            }
        }
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => {
            if has_writes() {
                apply_commit();
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => {
            if has_writes() {
                abort();
            }
        }
        XACT_EVENT_PRE_PREPARE => {
            if has_writes() {
                errors::raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "cannot PREPARE a transaction that has pending pg_cache writes".into(),
                    "Write to pg_cache in a transaction that commits directly, not with two-phase commit.",
                );
            }
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    match event {
        SUBXACT_EVENT_ABORT_SUB => {
            let level = nest_level();
            TXN.with_borrow_mut(|t| t.writes.rollback_to(level));
        }
        SUBXACT_EVENT_COMMIT_SUB => {
            let level = nest_level();
            TXN.with_borrow_mut(|t| t.writes.commit_sub(level));
        }
        _ => {}
    }
}
