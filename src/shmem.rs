//! The shared-memory region and its locks, set up the way pg_stat_statements does:
//! space and an LWLock tranche requested in `shmem_request_hook`, the region created
//! (or found) in `shmem_startup_hook` under `AddinShmemInitLock`.

use std::ffi::CStr;
use std::ptr::null_mut;

use pgrx::pg_sys;
use pgrx::prelude::*;

use pg_cache_core::store::{Geometry, Locks, Mode, Store, PARTITIONS};
use crate::gucs;

const NAME: &CStr = c"pg_cache";
const DIRECTORY_LOCK: usize = PARTITIONS;
const ALLOCATOR_LOCK: usize = PARTITIONS + 1;
/// Then one commit lock per cache slot, then one list lock per cache slot.
const FIRST_CACHE_LOCK: usize = PARTITIONS + 2;
/// Index of `AddinShmemInitLock` in `MainLWLockArray` (lwlocknames.txt).
const ADDIN_SHMEM_INIT_LOCK: usize = 21;

static mut PREV_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;
static mut REGION: *mut u8 = null_mut();
static mut LOCKS: *mut pg_sys::LWLockPadded = null_mut();
static mut GEOMETRY: Option<Geometry> = None;
/// Set in the postmaster when the last startup hook created the region anew (not
/// found it): what a warm restart may load into.
static mut CREATED: bool = false;

/// The LWLocks of our tranche.
pub struct PgLocks;

static PG_LOCKS: PgLocks = PgLocks;

fn lwlock(i: usize) -> *mut pg_sys::LWLock {
    // SAFETY: LOCKS is set at startup (checked by `store()`) and has `lock_count()` entries.
    unsafe { &raw mut (*LOCKS.add(i)).lock }
}

fn mode(m: Mode) -> pg_sys::LWLockMode::Type {
    match m {
        Mode::Shared => pg_sys::LWLockMode::LW_SHARED,
        Mode::Exclusive => pg_sys::LWLockMode::LW_EXCLUSIVE,
    }
}

impl Locks for PgLocks {
    fn lock_partition(&self, partition: usize, m: Mode) {
        // SAFETY: a valid LWLock of our tranche; an ERROR releases it in abort.
        unsafe { pg_sys::LWLockAcquire(lwlock(partition), mode(m)) };
    }
    fn unlock_partition(&self, partition: usize) {
        // SAFETY: we hold it (the store pairs every lock with an unlock).
        unsafe { pg_sys::LWLockRelease(lwlock(partition)) };
    }
    fn lock_allocator(&self) {
        // SAFETY: as above.
        unsafe { pg_sys::LWLockAcquire(lwlock(ALLOCATOR_LOCK), pg_sys::LWLockMode::LW_EXCLUSIVE) };
    }
    fn unlock_allocator(&self) {
        // SAFETY: as above.
        unsafe { pg_sys::LWLockRelease(lwlock(ALLOCATOR_LOCK)) };
    }
    fn lock_directory(&self, m: Mode) {
        // SAFETY: as above.
        unsafe { pg_sys::LWLockAcquire(lwlock(DIRECTORY_LOCK), mode(m)) };
    }
    fn unlock_directory(&self) {
        // SAFETY: as above.
        unsafe { pg_sys::LWLockRelease(lwlock(DIRECTORY_LOCK)) };
    }
    fn lock_cache(&self, slot: u32, m: Mode) {
        // SAFETY: as above; slot < max_caches, so the lock is in our tranche.
        unsafe { pg_sys::LWLockAcquire(lwlock(FIRST_CACHE_LOCK + slot as usize), mode(m)) };
    }
    fn unlock_cache(&self, slot: u32) {
        // SAFETY: as above.
        unsafe { pg_sys::LWLockRelease(lwlock(FIRST_CACHE_LOCK + slot as usize)) };
    }
    fn lock_list(&self, slot: u32) {
        // SAFETY: as above; slot < max_caches.
        unsafe { pg_sys::LWLockAcquire(lwlock(first_list_lock() + slot as usize), pg_sys::LWLockMode::LW_EXCLUSIVE) };
    }
    fn try_lock_list(&self, slot: u32) -> bool {
        // SAFETY: as above.
        unsafe {
            pg_sys::LWLockConditionalAcquire(lwlock(first_list_lock() + slot as usize), pg_sys::LWLockMode::LW_EXCLUSIVE)
        }
    }
    fn unlock_list(&self, slot: u32) {
        // SAFETY: as above.
        unsafe { pg_sys::LWLockRelease(lwlock(first_list_lock() + slot as usize)) };
    }
    fn lock_replica(&self, m: Mode) {
        // SAFETY: as above; the replica lock is the tranche's last.
        unsafe { pg_sys::LWLockAcquire(lwlock(replica_lock()), mode(m)) };
    }
    fn unlock_replica(&self) {
        // SAFETY: as above.
        unsafe { pg_sys::LWLockRelease(lwlock(replica_lock())) };
    }
}

fn first_list_lock() -> usize {
    FIRST_CACHE_LOCK + gucs::max_caches() as usize
}

/// After the list locks: the lock of a standby's replica fences.
fn replica_lock() -> usize {
    first_list_lock() + gucs::max_caches() as usize
}

fn lock_count() -> usize {
    replica_lock() + 1
}

fn geometry() -> Geometry {
    Geometry::new(gucs::memory_bytes(), gucs::max_caches()).unwrap_or_else(|| {
        error!("pg_cache.memory is too small for pg_cache.max_caches = {}", gucs::max_caches())
    })
}

/// Chains our hooks in front of any others; called from `_PG_init` while preloading.
pub fn install_hooks() {
    // SAFETY: _PG_init runs in the postmaster before any other process exists.
    unsafe {
        PREV_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request_hook);
        PREV_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup_hook);
    }
}

#[pg_guard]
extern "C-unwind" fn request_hook() {
    // SAFETY: called by the postmaster during shared memory sizing.
    unsafe {
        if let Some(prev) = PREV_REQUEST_HOOK {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(geometry().total + 64);
        pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), lock_count() as i32);
    }
}

#[pg_guard]
extern "C-unwind" fn startup_hook() {
    // SAFETY: called in the postmaster (and after a crash restart) with shared memory
    // being set up; AddinShmemInitLock serialises region creation.
    unsafe {
        if let Some(prev) = PREV_STARTUP_HOOK {
            prev();
        }
        let geo = geometry();
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(ADDIN_SHMEM_INIT_LOCK)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let raw = pg_sys::ShmemInitStruct(NAME.as_ptr(), geo.total + 64, &mut found) as *mut u8;
        let base = raw.add(raw.align_offset(64));
        LOCKS = pg_sys::GetNamedLWLockTranche(NAME.as_ptr());
        GEOMETRY = Some(geo);
        REGION = base;
        if !found {
            Store::attach(base, geo, &PG_LOCKS).init();
        }
        CREATED = !found && !pg_sys::IsUnderPostmaster;
        pg_sys::LWLockRelease(init_lock);
    }
}

/// Whether this process (the postmaster) has just created the region anew; for the
/// startup hooks chained after ours (see `restart`).
pub fn created_in_postmaster() -> bool {
    // SAFETY: written by the startup hook of this same process, before this is read.
    unsafe { CREATED }
}

#[cfg(any(test, feature = "pg_test"))]
thread_local! {
    /// How often this backend asked for the store: rule 9's test counts it.
    pub static STORE_USES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The store, or an ERROR when the library was not preloaded.
pub fn store() -> Store<'static, PgLocks> {
    #[cfg(any(test, feature = "pg_test"))]
    STORE_USES.with(|n| n.set(n.get() + 1));
    // SAFETY: REGION, LOCKS and GEOMETRY are written once at startup, before any
    // backend runs SQL, and inherited by every backend.
    unsafe {
        match GEOMETRY {
            Some(geo) if !REGION.is_null() && !LOCKS.is_null() => {
                Store::attach(REGION, geo, &PG_LOCKS).with_database_share(gucs::database_share())
            }
            _ => crate::errors::not_preloaded(),
        }
    }
}
