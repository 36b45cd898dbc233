//! The shared-memory store: every database's caches in one region of fixed size.
//!
//! ```text
//! | Header | CacheSlot × max_caches | bucket heads (u32) × 2^k | 128-byte blocks ... |
//! ```
//!
//! * **Blocks.** An entry is a chain of 128-byte blocks: the first holds a 64-byte
//!   header and 64 payload bytes, each further block a 4-byte link and 124 payload
//!   bytes; the payload is the stored key followed by the jsonb value. Any free block
//!   serves any entry, so the pool never fragments: when memory is full, evicting
//!   enough entries always makes room.
//! * **Index.** A chained hash table over all entries. Bucket `b` is guarded by
//!   partition lock `b % PARTITIONS` (shared to read, exclusive to change a chain).
//! * **Caches.** A directory of slots (one per database and cache name) under the
//!   directory lock; each slot has its LRU list, counters and settings under a
//!   per-slot list lock (an LWLock: waiters sleep rather than spin while a holder is
//!   descheduled). A hit holds one partition lock (shared) and, only when the
//!   entry has drifted into the older half of its list, that list lock for a few
//!   pointer updates; hits and misses are counted in per-backend stripes.
//! * **Clear** bumps the slot's generation: entries of an older generation are misses
//!   and sit at the LRU tail, where eviction reclaims them first.
//!
//! * **Commits** to a cache hold that cache's commit lock exclusively while they link
//!   their entries in, raise their fences and bump the generation, and bump its
//!   commit sequence before and after; a lookup that overlapped such a commit starts
//!   over. A transaction's writes to one cache therefore appear together.
//! * **Fences** (see `fences.rs`) remember when each key, cache and database was last
//!   invalidated, so that a fill computed before a committed invalidation is dropped.
//!
//! Lock order: directory → cache commit lock → partition → slot list lock → allocator.
//! Memory is allocated *before* a partition lock is taken, so eviction (which locks
//! the victim's partition) never runs while another partition lock is held.

use std::sync::atomic::Ordering;

mod alloc;
mod chain;
mod commit;
mod config;
mod directory;
mod dump;
mod fences;
mod invalidate;
mod layout;
mod maintenance;
mod policy;
mod predicates;
mod read;
mod replica;
mod shadow;

pub use alloc::Reserve;
pub use commit::{CacheCommit, KeyCommit, NewEntry, Prepared};
pub use config::{CacheConfig, Policy, RoleList, MAX_ROLES};
pub use layout::{blocks_for, entry_bytes, ms, CacheSlot, Geometry, STRIPES};
pub use dump::DumpCounts;
pub use maintenance::Sweep;
pub use predicates::{tag_hash, MAX_PREFIXES, MAX_TAGS, PREFIX_BYTES};
pub use read::{Lookup, Observed, Seen, Tags, View};
pub use replica::{xid_precedes, Covered, Replicated, XidState, EVERY_DATABASE, REDECLARE};
use layout::*;
use policy::*;

/// Number of partition locks over the bucket array.
pub const PARTITIONS: usize = 128;
pub const NIL: u32 = u32::MAX;
/// Longest cache name in bytes (a PostgreSQL identifier).
pub const MAX_NAME: usize = 63;
/// Room for the comma-separated `context_ignored_keys` of a cache.
pub const MAX_IGNORED: usize = 256;
pub const NO_EXPIRY: i64 = i64::MAX;

/// The `installed_before` of a read that sees the latest committed entries (no
/// snapshot filter; see [`Store::lookup_as_of`]).
pub const LATEST: i64 = i64::MAX;
pub const NEVER: i64 = i64::MIN;
/// Lookups that race a commit of several writes before waiting on its commit lock.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// The locks the store needs; PostgreSQL LWLocks in a server, no-ops in unit tests.
pub trait Locks {
    fn lock_partition(&self, partition: usize, mode: Mode);
    fn unlock_partition(&self, partition: usize);
    fn lock_allocator(&self);
    fn unlock_allocator(&self);
    fn lock_directory(&self, mode: Mode);
    fn unlock_directory(&self);
    /// The commit lock of cache slot `slot`.
    fn lock_cache(&self, slot: u32, mode: Mode);
    fn unlock_cache(&self, slot: u32);
    /// The list lock of cache slot `slot`: its LRU list, counters and settings.
    fn lock_list(&self, slot: u32);
    /// Takes the list lock only if nobody holds it; whether it did.
    fn try_lock_list(&self, slot: u32) -> bool;
    fn unlock_list(&self, slot: u32);
    /// The lock of a standby's replica fences (see `replica.rs`).
    fn lock_replica(&self, mode: Mode);
    fn unlock_replica(&self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Every cache slot is in use (by caches that hold entries or are declared).
    DirectoryFull,
    /// The database already uses its share of the slots (`per_database`).
    DatabaseFull { per_database: u32 },
    /// The entry needs more than half of all blocks.
    TooLarge,
}



/// A reference to a cache slot, valid while the slot keeps its incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRef {
    pub index: u32,
    pub incarnation: u32,
}


#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotStats {
    pub name: String,
    pub slot: Option<SlotRef>,
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub deletes: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub stale_sets: u64,
    pub skipped: u64,
    pub last_clear: Option<i64>,
    pub config: CacheConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub entries: u64,
    pub databases: u64,
    /// Calls skipped server-wide for want of a slot ([`Store::count_skipped`]).
    pub skipped_without_slot: u64,
}

pub struct Store<'a, L: Locks> {
    base: *mut u8,
    geo: Geometry,
    locks: &'a L,
    /// Bytes one database may hold when memory is full (`u64::MAX`: no share):
    /// eviction then takes from a database over its share first.
    database_share: u64,
}

/// Holds a partition lock until dropped (also on unwind, when an ERROR passes through).
struct PartitionGuard<'a, L: Locks> {
    locks: &'a L,
    partition: usize,
}

impl<L: Locks> Drop for PartitionGuard<'_, L> {
    fn drop(&mut self) {
        self.locks.unlock_partition(self.partition);
    }
}

struct DirectoryGuard<'a, L: Locks>(&'a L);

/// Holds a cache's commit lock shared (a lookup) until dropped.
struct CacheReadGuard<'a, L: Locks> {
    locks: &'a L,
    slot: u32,
}

/// Holds a cache's list lock until dropped.
struct ListGuard<'a, L: Locks> {
    locks: &'a L,
    slot: u32,
}

impl<L: Locks> Drop for ListGuard<'_, L> {
    fn drop(&mut self) {
        self.locks.unlock_list(self.slot);
    }
}

impl<L: Locks> Drop for CacheReadGuard<'_, L> {
    fn drop(&mut self) {
        self.locks.unlock_cache(self.slot);
    }
}

impl<L: Locks> Drop for DirectoryGuard<'_, L> {
    fn drop(&mut self) {
        self.0.unlock_directory();
    }
}

impl<'a, L: Locks> Store<'a, L> {
    /// # Safety
    /// `base` points to `geo.total` bytes, 64-byte aligned, shared by every user of the
    /// store and initialised once with [`Store::init`].
    pub unsafe fn attach(base: *mut u8, geo: Geometry, locks: &'a L) -> Self {
        Store { base, geo, locks, database_share: u64::MAX }
    }

    /// Gives each database `percent` of the block pool when memory is full (see
    /// [`Store::evict_one`]); 100 gives no share.
    pub fn with_database_share(mut self, percent: u32) -> Self {
        if percent < 100 {
            self.database_share = self.geo.blocks as u64 * BLOCK_SIZE as u64 * percent as u64 / 100;
        }
        self
    }

    /// # Safety
    /// As for `attach`; called once, before any other process uses the region.
    pub unsafe fn init(&self) {
        // SAFETY: the region is ours alone during initialisation.
        unsafe {
            std::ptr::write_bytes(self.base, 0, self.geo.blocks_off);
            let h = self.header();
            (*h).magic = MAGIC;
            *(*h).alloc.0.free_head.get() = NIL;
            let buckets = self.base.add(self.geo.buckets_off) as *mut u32;
            for b in 0..self.geo.buckets as usize {
                *buckets.add(b) = NIL;
            }
            for i in 0..self.geo.slots {
                let s = self.slot(i);
                s.list.lru_head.store(NIL, Ordering::Relaxed);
                s.list.lru_tail.store(NIL, Ordering::Relaxed);
            }
            for f in 0..self.geo.fence_buckets {
                (*self.fence_bucket(f)).init();
            }
            (*h).db_fences.init();
            (*h).replica.init();
            for due in (*h).due.0.iter() {
                due.store(NO_EXPIRY, Ordering::Relaxed);
            }
            for g in 0..self.geo.groups {
                self.group_due(g).store(NO_EXPIRY, Ordering::Relaxed);
            }
        }
    }

    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    pub fn is_initialised(&self) -> bool {
        // SAFETY: the header lies inside the region.
        unsafe { (*self.header()).magic == MAGIC }
    }

    fn lock_bucket(&self, bucket: u32, mode: Mode) -> PartitionGuard<'a, L> {
        let partition = bucket as usize % PARTITIONS;
        self.locks.lock_partition(partition, mode);
        PartitionGuard { locks: self.locks, partition }
    }

    /// Takes the list lock of slot `s` (a reference into the directory).
    fn lock_list(&self, s: &CacheSlot) -> ListGuard<'a, L> {
        let slot = self.index_of(s);
        self.locks.lock_list(slot);
        ListGuard { locks: self.locks, slot }
    }

    /// The list lock of slot `s` if nobody holds it.
    fn try_lock_list(&self, s: &CacheSlot) -> Option<ListGuard<'a, L>> {
        let slot = self.index_of(s);
        self.locks.try_lock_list(slot).then(|| ListGuard { locks: self.locks, slot })
    }

    fn lock_directory(&self, mode: Mode) -> DirectoryGuard<'a, L> {
        self.locks.lock_directory(mode);
        DirectoryGuard(self.locks)
    }
}

#[cfg(test)]
mod tests;
