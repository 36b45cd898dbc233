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
    /// Buckets read.
    pub buckets: u64,
}

impl Default for Sweep {
    fn default() -> Self {
        Sweep { expired: 0, hidden: 0, ttl_left: 0, next_expiry: NO_EXPIRY, buckets: 0 }
    }
}

impl<L: Locks> Store<'_, L> {
    /// Buckets guarded by one partition lock.
    fn buckets_per_partition(&self) -> u32 {
        self.geo.buckets / PARTITIONS as u32
    }

    /// Records that an entry expiring at `expires_at` was installed in `bucket`;
    /// its partition lock held exclusively. Writes the shared lines only when the
    /// due times move earlier.
    pub(super) fn note_expiry_locked(&self, bucket: u32, expires_at: i64) {
        for due in [self.group_due(self.group_of(bucket)), &self.hdr().due[bucket as usize % PARTITIONS]] {
            if expires_at < due.load(Ordering::Relaxed) {
                due.fetch_min(expires_at, Ordering::AcqRel);
            }
        }
    }

    /// When partition `partition` next holds an expired entry at the earliest
    /// (NO_EXPIRY: it holds none with a TTL, as far as its last sweep and the
    /// installs since tell). A worker pass looks only into the partitions due, and
    /// there sweeps only the expiry groups due, so its cost follows what expires,
    /// not the size of the region: a full pass read every bucket each
    /// `pg_cache.expiry_interval` once anything with a TTL had been written (43 /
    /// 164 / 234 ms of CPU a second at 1 / 4 / 8 GB).
    pub fn partition_due(&self, partition: usize) -> i64 {
        self.hdr().due[partition].load(Ordering::Acquire)
    }

    /// Sweeps the expiry groups of `partition` due at `now`, `slice` buckets per
    /// lock hold, and sets the due times from the entries with a TTL they keep.
    /// Installs during the sweep lower the due times again, so none is missed: the
    /// partition's is reset first, then lowered to the earliest of its groups' as
    /// each stood once that group was done (later installs lower it themselves).
    pub fn sweep_partition(&self, partition: usize, slice: u32, now: i64, out: &mut Sweep) {
        self.hdr().due[partition].store(NO_EXPIRY, Ordering::Release);
        let per = self.groups_per_partition();
        let mut earliest = NO_EXPIRY;
        for g in partition as u32 * per..(partition as u32 + 1) * per {
            let due = self.group_due(g);
            if due.load(Ordering::Acquire) <= now {
                due.store(NO_EXPIRY, Ordering::Release);
                let mut here = Sweep::default();
                let first = (g % per) * GROUP_BUCKETS;
                let end = (first + GROUP_BUCKETS).min(self.buckets_per_partition());
                let mut from = first;
                while from < end {
                    from = self.sweep_slice(partition, from, slice.min(end - from), now, &mut here);
                }
                due.fetch_min(here.next_expiry, Ordering::AcqRel);
                out.expired += here.expired;
                out.hidden += here.hidden;
                out.ttl_left += here.ttl_left;
                out.next_expiry = out.next_expiry.min(here.next_expiry);
                out.buckets += here.buckets;
            }
            earliest = earliest.min(due.load(Ordering::Acquire));
        }
        self.hdr().due[partition].fetch_min(earliest, Ordering::AcqRel);
    }

    /// Moves whenever a clear or a drop hides entries all at once.
    pub fn hidden_changes(&self) -> u64 {
        self.hdr().hidden.load(Ordering::Acquire)
    }

    /// Frees the entries hidden by clears: they lie at the tails of their caches'
    /// lists (a cleared entry is never read, so never moved), so this pops dead
    /// tails, one lock hold each, and stops at each cache's first live one. Its
    /// cost is the slots plus what was hidden; a sweep of every bucket took 6.3 s
    /// to reclaim a clear of 4M entries. Expired tails found on the way go too.
    pub fn reclaim_hidden(&self, now: i64) -> u64 {
        let used = self.hdr().used_slots.load(Ordering::Acquire);
        let mut freed = 0;
        for i in 0..used {
            let s = self.slot(i);
            // Unlocked peeks: a free, dropping (finish_drops' work) or empty slot is skipped.
            if s.state.load(Ordering::Acquire) != SLOT_ACTIVE || self.next_victim(s) == NIL {
                continue;
            }
            while let Some(v) = self.pop_victim(i, PopReason::Dead, now) {
                self.reap(v);
                freed += 1;
            }
        }
        freed
    }

    /// Sweeps buckets `from..from + count` of `partition` (bucket `partition + k ×
    /// PARTITIONS` for each k) under one exclusive hold of that partition's lock:
    /// frees entries past their TTL or hidden by a clear or a drop. Returns where the
    /// next slice starts.
    fn sweep_slice(&self, partition: usize, from: u32, count: u32, now: i64, out: &mut Sweep) -> u32 {
        let end = from.saturating_add(count).min(self.buckets_per_partition());
        out.buckets += (end - from) as u64;
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
            let hidden = h.is_hidden(s) || s.state.load(Ordering::Acquire) != SLOT_ACTIVE;
            let expired = self.is_expired(e, now);
            if hidden {
                out.hidden += 1;
            } else if expired {
                out.expired += 1;
                s.list.expirations.fetch_add(1, Ordering::Relaxed);
            } else if h.expires_at.load(Ordering::Relaxed) != NO_EXPIRY {
                out.ttl_left += 1;
                out.next_expiry = out.next_expiry.min(h.expires_at.load(Ordering::Relaxed));
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
        (0..used)
            .filter(|&i| self.slot(i).state.load(Ordering::Acquire) == SLOT_DROPPING)
            .map(|i| self.finish_drop(i))
            .sum()
    }

    /// Counts `n` entries of cache `r` as evicted that were never installed: the
    /// sets of a commit beyond what the cache keeps (its newest installs survive).
    pub fn count_evicted(&self, r: SlotRef, n: u64) {
        self.slot(r.index).list.evictions.fetch_add(n, Ordering::Relaxed);
    }

    /// Zeroes the event counters of cache `r` (hits, misses, sets, deletes,
    /// evictions, expirations, stale sets, skipped calls); entries and bytes describe its contents
    /// and stay.
    pub fn reset_stats(&self, r: SlotRef) {
        let s = self.slot(r.index);
        self.reset_read_counts(r.index);
        for c in [&s.list.sets, &s.list.deletes, &s.list.evictions, &s.list.expirations, &s.list.stale_sets, &s.list.skipped] {
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
        for i in 0..n {
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
            skipped_without_slot: self.hdr().skipped_without_slot.load(Ordering::Relaxed),
        }
    }
}

/// Buckets of one partition a key listing reads per lock hold.
const KEYS_SLICE: u32 = 64;

impl<L: Locks> Store<'_, L> {
    /// Calls `f` with the stored key of each live entry of cache `r` (visible, not
    /// expired at `now`, not covered by a tag or prefix invalidation) until `f`
    /// returns false. Reads [`KEYS_SLICE`] buckets of one partition per lock hold,
    /// copying their keys out, and calls `f` with no lock held: it never holds a
    /// lock across the cache, so each slice is of its own moment. `Err` when the
    /// copies cannot be allocated (the caller raises 53200).
    pub fn for_each_key(&self, r: SlotRef, now: i64, mut f: impl FnMut(&[u8]) -> bool) -> Result<(), std::collections::TryReserveError> {
        let s = self.slot(r.index);
        let per = self.buckets_per_partition();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for p in 0..PARTITIONS as u32 {
            let mut from = 0;
            while from < per {
                if !self.is_valid(r) {
                    return Ok(());
                }
                keys.clear();
                let to = (from + KEYS_SLICE).min(per);
                {
                    let _p = self.lock_bucket(p, Mode::Shared);
                    for j in from..to {
                        let mut failed = None;
                        self.walk_chain(p + j * PARTITIONS as u32, |e, h| {
                            if h.slot != r.index || h.state.load(Ordering::Acquire) != ENTRY_LIVE || !self.is_visible(s, h) || self.is_expired(e, now) {
                                return Step::Next;
                            }
                            let mut key = Vec::new();
                            if let Err(err) = key.try_reserve_exact(h.key_len as usize).and_then(|_| keys.try_reserve(1)) {
                                failed = Some(err);
                                return Step::Stop;
                            }
                            key.resize(h.key_len as usize, 0);
                            self.copy_payload(e, 0, &mut key);
                            if !self.is_invalidated(s, e, h, &key, &[]) {
                                keys.push(key);
                            }
                            Step::Next
                        });
                        if let Some(err) = failed {
                            return Err(err);
                        }
                    }
                }
                for k in &keys {
                    if !f(k) {
                        return Ok(());
                    }
                }
                from = to;
            }
        }
        Ok(())
    }
}
