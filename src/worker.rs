//! The pg_cache background worker: reclaims entries past their TTL or hidden by a
//! clear, and frees the memory of dropped caches, in short slices so that no
//! partition lock is held for long.
//!
//! Registered from `_PG_init` (so it starts with the server, on a hot standby once
//! it accepts connections), it connects to no
//! database (it needs shared memory only, but a connection puts it in
//! `pg_stat_activity`), rereads its settings on SIGHUP in its main loop, and exits
//! with status 1 on SIGTERM so that the postmaster restarts it after
//! `RESTART_AFTER`, unless the server is shutting down.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;

use pg_cache_core::store::{Store, Sweep, PARTITIONS};
use crate::pg::now;
use crate::{gucs, shmem, wal};

pub const WORKER_TYPE: &str = "pg_cache worker";
const RESTART_AFTER: Duration = Duration::from_secs(5);
/// Buckets per partition lock hold: about 128 entries at the default load.
const SLICE: u32 = 64;

pub fn register() {
    BackgroundWorkerBuilder::new(WORKER_TYPE)
        .set_type(WORKER_TYPE)
        .set_library("pg_cache")
        .set_function("pg_cache_worker_main")
        .enable_spi_access()
        // On a hot standby too, once it accepts connections: it resolves the
        // invalidations redo leaves pending (enable_spi_access would wait for the
        // end of recovery).
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(RESTART_AFTER))
        .load();
}

fn shutdown_requested() -> bool {
    // SAFETY: a flag set by the SIGTERM handler; reading it is always allowed.
    unsafe { pg_sys::ShutdownRequestPending != 0 }
}

/// One pass: entries hidden by clears since the last pass (popped from their
/// caches' tails), then the partitions holding an entry past its TTL; `false` if
/// SIGTERM cut it short. What it reads follows what expired or was hidden, not the
/// size of the region.
fn pass(store: &Store<'_, shmem::PgLocks>, hidden_seen: &mut u64) -> bool {
    let hidden = store.hidden_changes();
    if hidden != *hidden_seen {
        store.reclaim_hidden(now());
        *hidden_seen = hidden;
    }
    let now = now();
    let mut out = Sweep::default();
    for partition in 0..PARTITIONS {
        if store.partition_due(partition) <= now {
            store.sweep_partition(partition, SLICE, now, &mut out);
            if shutdown_requested() {
                return false;
            }
        }
    }
    // Prefix invalidations: the entries they cover are freed and they are
    // forgotten, so that a cache deleting prefixes all the time does not fold
    // them into clears (a sweep of every bucket while any cache holds one).
    store.retire_prefixes(now, SLICE);
    true
}

/// How often the worker resolves a hot standby's pending invalidations: a fill of a
/// key whose invalidation is pending is dropped, so the sooner they resolve after
/// their commit is replayed, the fewer fills are lost.
const RESOLVE_EVERY: Duration = Duration::from_millis(10);

/// Sleep until the next pass: the expiry interval, or [`RESOLVE_EVERY`] on a hot
/// standby (redo may note an invalidation at any moment) and while any is pending.
fn wake_after() -> Duration {
    // SAFETY: no preconditions.
    let replaying = unsafe { pg_sys::RecoveryInProgress() };
    if replaying || shmem::store().replica_pending() {
        gucs::expiry_interval().min(RESOLVE_EVERY)
    } else {
        gucs::expiry_interval()
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_cache_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    debug1!("{WORKER_TYPE} started");
    let store = shmem::store();
    let mut hidden_seen = 0;
    let mut marked = None;
    wal::mark(&mut marked);
    while BackgroundWorker::wait_latch(Some(wake_after())) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: in the main loop, not in the signal handler (pgrx issue #2057).
            unsafe {
                pg_sys::ConfigReloadPending = 0;
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
        }
        wal::mark(&mut marked);
        wal::resolve_pending();
        store.finish_drops();
        store.advance_clock(now());
        if !pass(&store, &mut hidden_seen) {
            break;
        }
    }
    // SIGTERM: pg_terminate_backend, or the server is stopping. A non-zero status
    // makes the postmaster start us again in the first case, not in the second.
    // SAFETY: ends this process the way PostgreSQL's own workers do.
    unsafe { pg_sys::proc_exit(1) }
}
