//! Facts about the calling backend and its transaction, asked of PostgreSQL in one
//! place: every layer above the core reads them from here.

use std::cell::Cell;

use pgrx::pg_sys;

use crate::gucs;
use pg_cache_core::store::LATEST;

/// The current time as PostgreSQL's `TimestampTz` (microseconds since 2000).
pub fn now() -> i64 {
    // SAFETY: no preconditions.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// When the current transaction started: its fills are judged against invalidations
/// committed at or after it.
pub fn transaction_start() -> i64 {
    // SAFETY: no preconditions; set when the transaction started.
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

/// The database this backend is connected to.
pub fn database() -> u32 {
    // SAFETY: MyDatabaseId is set for the whole life of a backend connected to a database.
    unsafe { pg_sys::MyDatabaseId.to_u32() }
}

/// The role whose privileges apply now (`current_user`).
pub fn current_role() -> u32 {
    // SAFETY: GetUserId has no preconditions inside a transaction.
    unsafe { pg_sys::GetUserId() }.to_u32()
}

/// The (sub)transaction nesting level: 1 at top level, +1 per open savepoint.
pub fn nest_level() -> u32 {
    // SAFETY: no preconditions.
    unsafe { pg_sys::GetCurrentTransactionNestLevel() as u32 }
}

/// This backend's stripe of the shared counters and pins.
pub fn stripe() -> usize {
    // SAFETY: MyProc is set up before any SQL function can run in a backend.
    unsafe { (*pg_sys::MyProc).pgprocno as usize }
}

/// The `installed_before` of this transaction's plain reads: its start under
/// `pg_cache.snapshot_reads` at REPEATABLE READ or SERIALIZABLE (it began no later
/// than its snapshot was taken, so an entry installed before it was committed
/// before the snapshot), else [`LATEST`].
pub fn reads_installed_before() -> i64 {
    // SAFETY: a backend global, read in the backend that owns it.
    let xact_snapshot = unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32;
    if xact_snapshot && gucs::snapshot_reads() {
        transaction_start()
    } else {
        LATEST
    }
}

/// Whether the transaction is READ ONLY (`transaction_read_only`).
pub fn transaction_read_only() -> bool {
    // SAFETY: a backend global, read in the backend that owns it.
    unsafe { pg_sys::XactReadOnly }
}

/// Whether this backend runs a parallel operation (as leader or worker).
pub fn in_parallel_mode() -> bool {
    // SAFETY: no preconditions.
    unsafe { pg_sys::IsInParallelMode() }
}

thread_local! {
    /// Set once this backend has seen recovery over: it never starts again for a
    /// running backend, and asking PostgreSQL is an FFI call on every write.
    static RECOVERY_OVER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the server is a hot standby (or still replaying WAL at startup).
pub fn in_recovery() -> bool {
    if RECOVERY_OVER.get() {
        return false;
    }
    // SAFETY: no preconditions.
    let in_recovery = unsafe { pg_sys::RecoveryInProgress() };
    RECOVERY_OVER.set(!in_recovery);
    in_recovery
}

/// Hands memory the allocator keeps after a big transaction back to the system.
/// glibc keeps freed memory for reuse (its mmap threshold even grows to the largest
/// block freed), so a backend that queued a million writes stayed at 199 MB
/// resident after committing them; `malloc_trim` returns the free pages. It cannot
/// fail, so COMMIT and ABORT may call it.
pub fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim only releases free memory; any argument is valid.
        unsafe { malloc_trim(0) };
    }
}

/// `NOTIFY channel, payload` in this transaction: PostgreSQL delivers it at commit,
/// drops it on rollback or with a rolled-back savepoint, and merges duplicates.
pub fn notify(channel: &str, payload: &str) {
    // SAFETY: a call of the built-in pg_notify(text, text) with two non-null text
    // datums; an ERROR it raises unwinds as usual.
    unsafe {
        pg_sys::OidFunctionCall2Coll(
            pg_sys::Oid::from(pg_sys::F_PG_NOTIFY),
            pg_sys::InvalidOid,
            pgrx::IntoDatum::into_datum(channel).unwrap_or_else(|| unreachable!()),
            pgrx::IntoDatum::into_datum(payload).unwrap_or_else(|| unreachable!()),
        );
    }
}
