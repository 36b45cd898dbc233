//! Key locks: PostgreSQL heavyweight locks on (database, cache, key), held until the
//! transaction ends, for the operations that read a key and write what they read
//! (`cache_add`, `cache_incr`, `cache_pull`) and for single-flight fills
//! (`cache_get_or_lock`).
//!
//! The lock manager already gives what a waiter needs: a wait bounded by
//! `lock_timeout` (and `statement_timeout`), deadlock detection against every other
//! lock, a row in `pg_locks`, release at commit after the commit callbacks ran (so a
//! waiter wakes to find the holder's write installed) and at rollback, and release
//! of a rolled-back savepoint's locks. The tag is an advisory lock's with a fourth
//! field of its own ([`OBJSUBID`]): `pg_advisory_lock` uses 1 and 2 there, so the two
//! never meet. A key lock costs one lock table entry until the transaction ends
//! (`max_locks_per_transaction` × connections in all, PostgreSQL's own limit).

use std::cell::Cell;

use pgrx::pg_sys;
use pg_cache_core::key;

thread_local! {
    /// Whether this transaction took a key lock (it may have been released since,
    /// with a savepoint): such a transaction may not be prepared, since its locks
    /// would pass to the prepared transaction and hold other sessions up until it
    /// is resolved.
    static TAKEN: Cell<bool> = const { Cell::new(false) };
}

/// Whether this transaction took a key lock.
pub fn taken() -> bool {
    TAKEN.get()
}

/// The transaction ended (its locks are released with it). Cannot fail.
pub fn forget() {
    TAKEN.set(false);
}

/// `pg_locks.objsubid` of a key lock (`locktype = 'advisory'`).
pub const OBJSUBID: u16 = 0x7063;

/// The lock of `stored_key` in cache `name` of this database. Two keys share a lock
/// only if their 64-bit hashes are equal: a spurious wait, never a missed one.
fn tag(name: &str, stored_key: &[u8]) -> pg_sys::LOCKTAG {
    let h = key::hash(key::hash(0, name.as_bytes()) as u32, stored_key);
    pg_sys::LOCKTAG {
        locktag_field1: crate::pg::database(),
        locktag_field2: (h >> 32) as u32,
        locktag_field3: h as u32,
        locktag_field4: OBJSUBID,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// Takes the key's lock for the rest of the transaction (or until its savepoint rolls
/// back), waiting for a holder's transaction to end. A wait past `lock_timeout` or a
/// deadlock raises PostgreSQL's own ERROR (55P03, 40P01); a full lock table 53200.
pub fn lock(name: &str, stored_key: &[u8]) {
    let tag = tag(name, stored_key);
    TAKEN.set(true);
    // SAFETY: a filled-in tag; sessionLock = false ties the lock to the current
    // resource owner (the (sub)transaction), dontWait = false waits. ERRORs unwind.
    unsafe {
        pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, false);
    }
}

/// Gives the key's lock back before the transaction ends (a single-flight reader
/// that found the value after all). Once per [`lock`]; cannot fail.
pub fn unlock(name: &str, stored_key: &[u8]) {
    let tag = tag(name, stored_key);
    // SAFETY: as in `lock`; releasing a lock this backend holds.
    unsafe {
        pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false);
    }
}
