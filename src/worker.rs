//! The pg_cache background worker: reclaims entries past their TTL or hidden by a
//! clear, and frees the memory of dropped caches, in short slices so that no
//! partition lock is held for long.
//!
//! Registered from `_PG_init` (so it starts with the server), it connects to no
//! database (it needs shared memory only, but a connection puts it in
//! `pg_stat_activity`), rereads its settings on SIGHUP in its main loop, and exits
//! with status 1 on SIGTERM so that the postmaster restarts it after
//! `RESTART_AFTER`, unless the server is shutting down.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;

use pg_cache_core::store::{Store, Sweep, NO_EXPIRY, PARTITIONS};
use crate::pg::now;
use crate::{gucs, shmem};

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
        .set_restart_time(Some(RESTART_AFTER))
        .load();
}

/// What the last pass saw, to skip passes that cannot find anything.
struct Pacer {
    changes: Option<u64>,
    next_expiry: i64,
}

fn shutdown_requested() -> bool {
    // SAFETY: a flag set by the SIGTERM handler; reading it is always allowed.
    unsafe { pg_sys::ShutdownRequestPending != 0 }
}

/// One pass over every bucket, slice by slice; `None` if SIGTERM cut it short.
fn sweep(store: &Store<'_, shmem::PgLocks>) -> Option<Sweep> {
    let mut out = Sweep::default();
    let now = now();
    for partition in 0..PARTITIONS {
        let mut from = 0;
        while from < store.buckets_per_partition() {
            from = store.sweep_slice(partition, from, SLICE, now, &mut out);
        }
        if shutdown_requested() {
            return None;
        }
    }
    Some(out)
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_cache_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    debug1!("{WORKER_TYPE} started");
    let store = shmem::store();
    let mut pacer = Pacer { changes: None, next_expiry: NO_EXPIRY };
    while BackgroundWorker::wait_latch(Some(gucs::expiry_interval())) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: in the main loop, not in the signal handler (pgrx issue #2057).
            unsafe {
                pg_sys::ConfigReloadPending = 0;
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
        }
        store.finish_drops();
        store.advance_clock(now());
        let changes = store.changes();
        if pacer.changes == Some(changes) && now() < pacer.next_expiry {
            continue;
        }
        match sweep(&store) {
            Some(done) => pacer = Pacer { changes: Some(changes), next_expiry: done.next_expiry },
            None => break,
        }
    }
    // SIGTERM: pg_terminate_backend, or the server is stopping. A non-zero status
    // makes the postmaster start us again in the first case, not in the second.
    // SAFETY: ends this process the way PostgreSQL's own workers do.
    unsafe { pg_sys::proc_exit(1) }
}
