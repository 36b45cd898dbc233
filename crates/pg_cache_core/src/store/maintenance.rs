//! What the background worker and the administrative functions do to the store:
//! reclaim expired and hidden entries in bounded slices, finish dropping caches,
//! detach a dropped database, reset counters, report memory.

use std::sync::atomic::Ordering;

use super::chain::Step;
use super::*;

/// What sweeps found, summed over slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Entries past their TTL reclaimed (counted as expirations of their cache).
    pub expired: u64,
    /// Entries hidden by a clear or left by a dropped cache, reclaimed.
    pub hidden: u64,
    /// Entries with a TTL still live, and the earliest of their expiry times.
    pub ttl_left: u64,
    pub next_expiry: i64,
}

impl Default for Sweep {
    fn default() -> Self {
        Sweep { expired: 0, hidden: 0, ttl_left: 0, next_expiry: NO_EXPIRY }
    }
}

impl<L: Locks> Store<'_, L> {
    /// Buckets guarded by one partition lock.
    pub fn buckets_per_partition(&self) -> u32 {
        self.geo.buckets / PARTITIONS as u32
    }

    /// A counter that moves whenever entries may have become reclaimable (a clear, an
    /// install with a TTL, a drop). A sweep can be skipped while it stands still and
    /// no TTL is due.
    pub fn changes(&self) -> u64 {
        self.hdr().changes.load(Ordering::Acquire)
    }

    /// Sweeps buckets `from..from + count` of `partition` (bucket `partition + k ×
    /// PARTITIONS` for each k) under one exclusive hold of that partition's lock:
    /// frees entries past their TTL or hidden by a clear or a drop. Returns where the
    /// next slice starts, `buckets_per_partition()` when the partition is done.
    pub fn sweep_slice(&self, partition: usize, from: u32, count: u32, now: i64, out: &mut Sweep) -> u32 {
        let end = from.saturating_add(count).min(self.buckets_per_partition());
        let _p = self.lock_bucket(partition as u32, Mode::Exclusive);
        for k in from..end {
            let bucket = partition as u32 + k * PARTITIONS as u32;
            self.sweep_bucket_locked(bucket, now, out);
        }
        end
    }

    fn sweep_bucket_locked(&self, bucket: u32, now: i64, out: &mut Sweep) {
        let unlinked = self.walk_chain(bucket, |e, h| {
            let s = self.slot(h.slot);
            let _g = self.lock_list(s);
            if h.state.load(Ordering::Acquire) != ENTRY_LIVE {
                return Step::Next; // popped by an evictor, which unlinks it when it gets this lock
            }
            let hidden = h.gen != s.gen.load(Ordering::Relaxed) || s.state.load(Ordering::Acquire) != SLOT_ACTIVE;
            let expired = self.is_expired(e, now);
            if hidden {
                out.hidden += 1;
            } else if expired {
                out.expired += 1;
                s.list.expirations.fetch_add(1, Ordering::Relaxed);
            } else if h.expires_at != NO_EXPIRY {
                out.ttl_left += 1;
                out.next_expiry = out.next_expiry.min(h.expires_at);
            }
            if hidden || expired {
                self.retire(s, e);
                Step::Unlink
            } else {
                Step::Next
            }
        });
        self.free_unlinked(None, unlinked.first);
    }

    /// Frees the entries of every dropping cache, then the caches; how many entries.
    pub fn finish_drops(&self) -> u64 {
        let used = self.hdr().used_slots.load(Ordering::Acquire);
        (0..used as u16)
            .filter(|&i| self.slot(i).state.load(Ordering::Acquire) == SLOT_DROPPING)
            .map(|i| self.finish_drop(i))
            .sum()
    }

    /// Zeroes the event counters of cache `r` (hits, misses, sets, deletes,
    /// evictions, expirations, stale sets); entries and bytes describe its contents
    /// and stay.
    pub fn reset_stats(&self, r: SlotRef) {
        let s = self.slot(r.index);
        self.reset_read_counts(r.index);
        for c in [&s.list.sets, &s.list.deletes, &s.list.evictions, &s.list.expirations, &s.list.stale_sets] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// The whole region: its size, the bytes held by entries (hidden or expired ones
    /// included until reclaimed), the visible entries, the databases with caches.
    pub fn memory(&self) -> MemoryStats {
        // Saturating: the free list and the reserves are not read in one instant.
        let used = self.geo.blocks.saturating_sub(self.free_blocks());
        let n = self.hdr().used_slots.load(Ordering::Acquire);
        let mut entries = 0;
        let mut dbs = Vec::new();
        for i in 0..n as u16 {
            let s = self.slot(i);
            if s.state.load(Ordering::Acquire) == SLOT_ACTIVE {
                entries += s.list.entries.load(Ordering::Relaxed);
                dbs.push(s.db.load(Ordering::Relaxed));
            }
        }
        dbs.sort_unstable();
        dbs.dedup();
        MemoryStats {
            total_bytes: self.geo.total as u64,
            used_bytes: used as u64 * BLOCK_SIZE as u64,
            entries,
            databases: dbs.len() as u64,
        }
    }
}
