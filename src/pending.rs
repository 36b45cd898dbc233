//! This transaction's pending writes (the write set), per backend: what the SQL
//! functions log, what reads of the transaction's own writes consult, and what the
//! commit in `xact` takes over at PRE_COMMIT. Below `registry` (which reads pending
//! declarations) and `xact`; imports neither.

use std::cell::RefCell;

use crate::errors;
use crate::pg::nest_level;
use pg_cache_core::store::{CacheConfig, Seen};
use pg_cache_core::writeset::{Expiry, LastSet, Op, Pending, WriteSet};

thread_local! {
    static WRITES: RefCell<WriteSet> = RefCell::new(WriteSet::default());
    /// Writes logged since the transaction began: a big one gives its memory back.
    static LOGGED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Whether the transaction logged a tag invalidation (then reads ask which
    /// tags it hides; most transactions have none, and a read costs a flag test).
    static INVALIDATED_TAGS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Logs a write; 53200 when the write set cannot grow (it is then as it was).
pub fn push(op: Op) {
    errors::arm_parachute();
    let level = nest_level();
    if matches!(op, Op::InvalidateTags { .. }) {
        INVALIDATED_TAGS.set(true);
    }
    if WRITES.with_borrow_mut(|w| w.push(level, op)).is_err() {
        errors::out_of_memory("queuing a pg_cache write");
    }
    LOGGED.set(LOGGED.get() + 1);
}

/// Calls `f` with what this transaction's own writes say about (cache, key).
pub fn lookup<R>(cache: &str, key: &[u8], f: impl FnOnce(Pending<'_>) -> R) -> R {
    WRITES.with_borrow(|w| if w.is_empty() { f(Pending::Unknown) } else { f(w.lookup(cache, key, crate::pg::now)) })
}

/// The read this transaction's last write of the key was computed from, if any
/// (a write computed from that write commits under the same condition).
pub fn seen(cache: &str, key: &[u8]) -> Option<Seen> {
    WRITES.with_borrow(|w| if w.is_empty() { None } else { w.seen(cache, key) })
}

/// The tags this transaction invalidated in `cache` (hashes): shared entries
/// carrying one are misses for it. Allocates only when there are some.
pub fn hidden_tags(cache: &str) -> Vec<u64> {
    if !INVALIDATED_TAGS.get() {
        return Vec::new();
    }
    WRITES.with_borrow(|w| if w.is_empty() { Ok(Vec::new()) } else { w.hidden_tags(cache) })
        .unwrap_or_else(|_| errors::out_of_memory("listing invalidated tags"))
}

/// Calls `f` with the transaction's last write of the key if it is a set, else with
/// `None`.
pub fn last_set<R>(cache: &str, key: &[u8], f: impl FnOnce(Option<LastSet<'_>>) -> R) -> R {
    WRITES.with_borrow(|w| f(if w.is_empty() { None } else { w.last_set(cache, key, crate::pg::now) }))
}

/// The mode of the transaction's last set of the key, even one whose `expires_at`
/// has passed (a write built on it commits in that mode: a fill stays a fill).
pub fn last_set_mode(cache: &str, key: &[u8]) -> Option<pg_cache_core::writeset::SetMode> {
    WRITES.with_borrow(|w| if w.is_empty() { None } else { w.last_set(cache, key, || i64::MIN).map(|s| s.mode) })
}

/// The expiry this transaction's touch gave the key's shared value, if its last
/// write of the key is a touch.
pub fn touched(cache: &str, key: &[u8]) -> Option<Expiry> {
    WRITES.with_borrow(|w| if w.is_empty() { None } else { w.touched(cache, key) })
}

/// The declaration this transaction made of `cache`, if any.
pub fn declared(cache: &str) -> Option<CacheConfig> {
    WRITES.with_borrow(|w| w.declared(cache).copied())
}

/// What `cache` was declared as before this transaction's own declaration of it.
pub fn declared_before(cache: &str) -> Option<Option<CacheConfig>> {
    WRITES.with_borrow(|w| w.declared_before(cache))
}

pub fn is_empty() -> bool {
    WRITES.with_borrow(|w| w.is_empty())
}

/// Calls `f` on the write set (PRE_COMMIT plans from it).
pub fn with<R>(f: impl FnOnce(&WriteSet) -> R) -> R {
    WRITES.with_borrow(f)
}

/// Takes the whole write set out (PRE_COMMIT moves keys and values to its plan).
pub fn take() -> WriteSet {
    WRITES.with_borrow_mut(std::mem::take)
}

/// Forgets every pending write (COMMIT and ABORT). Allocates nothing.
pub fn reset() {
    INVALIDATED_TAGS.set(false);
    WRITES.with_borrow_mut(|w| w.reset());
}

/// Writes logged by this transaction so far (savepoints rolled back included).
pub fn logged() -> usize {
    LOGGED.get()
}

/// Starts counting for the next transaction.
pub fn reset_logged() {
    LOGGED.set(0);
}

/// `ROLLBACK TO SAVEPOINT` (or a failed subtransaction) at nesting `level`.
pub fn rollback_to(level: u32) {
    WRITES.with_borrow_mut(|w| w.rollback_to(level));
}

/// `RELEASE SAVEPOINT` at nesting `level`: its writes become the parent's.
pub fn commit_sub(level: u32) {
    WRITES.with_borrow_mut(|w| w.commit_sub(level));
}
