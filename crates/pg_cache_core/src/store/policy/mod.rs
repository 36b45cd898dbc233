//! Eviction: which entry goes when a cache is over its limits or memory is full,
//! across caches and databases. Each cache keeps its entries in the order of its
//! [`Policy`]; the functions here ask the policy for its next victim and for how
//! long ago that victim was used (comparable across caches and policies: the
//! wrapping milliseconds of [`EntryHead::used_at`]). `lru` is the first policy.

mod lfu;
mod lru;
pub(super) use lfu::minute_of;
mod ranking;
#[cfg(test)]
pub(super) use ranking::TAILS_READ;

use std::sync::atomic::Ordering;

use super::*;

/// An entry taken off an LRU list, to be unlinked from its bucket and freed.
#[derive(Clone, Copy)]
pub(super) struct Victim {
    pub(super) block: u32,
    pub(super) serial: u32,
    pub(super) hash: u32,
}

#[derive(Clone, Copy)]
pub(super) enum PopReason {
    /// Memory pressure or size limit: counted as eviction (or expiration if expired).
    Evict,
    /// Reclaiming: only a tail hidden by a clear or expired (counted as expiration
    /// if expired); a live tail stays and nothing is popped.
    Dead,
    /// The cache is being dropped: counted nowhere.
    Drop,
}

impl<'a, L: Locks> Store<'a, L> {
    /// Takes an entry off its slot's list and its counts; the caller then frees it.
    pub(super) fn retire(&self, s: &CacheSlot, e: u32) {
        // SAFETY: e is a live entry of s; we hold the list lock.
        unsafe {
            // Both policies keep one list through the heads.
            self.lru_unlink(s, e);
            let h = self.head(e);
            (*h).state.store(ENTRY_DEAD, Ordering::Release);
            if (*h).gen == s.gen.load(Ordering::Relaxed) {
                s.list.entries.fetch_sub(1, Ordering::Relaxed);
                s.list.bytes.fetch_sub((*h).blocks() as u64 * BLOCK_SIZE as u64, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn is_expired(&self, e: u32, now: i64) -> bool {
        // SAFETY: e is allocated while the caller holds a lock that keeps it so.
        let exp = unsafe { (*self.head(e)).expires_at.load(Ordering::Relaxed) };
        exp != NO_EXPIRY && now >= exp
    }

    /// The cache's policy, as its slot records it for readers that take no lock.
    #[inline]
    pub(super) fn policy_of(&self, s: &CacheSlot) -> Policy {
        Policy::from_byte(s.list.policy.load(Ordering::Relaxed))
    }

    /// The entry slot `s`'s policy would evict next (NIL for none). The list lock
    /// held, or a racy peek that the caller re-checks under it.
    pub(super) fn next_victim(&self, s: &CacheSlot) -> u32 {
        // LFU's hand starts at the tail too (`lfu_victim` looks further).
        s.list.lru_tail.load(Ordering::Relaxed)
    }

    /// Marks entry `e` of slot `s` used by a hit (see the policy for what that costs).
    #[inline]
    pub(super) fn touch(&self, s: &CacheSlot, e: u32) {
        match self.policy_of(s) {
            Policy::Lru => self.lru_touch(s, e),
            Policy::Lfu => self.lfu_touch(s, e),
        }
    }

    /// Adds a newly installed entry `e` to slot `s`'s order; list lock held.
    pub(super) fn admit(&self, s: &CacheSlot, e: u32, now: i64) {
        match self.policy_of(s) {
            Policy::Lru => self.lru_admit(s, e, now),
            Policy::Lfu => self.lfu_admit(s, e, now),
        }
    }

    /// Takes the entry slot `index`'s policy evicts next off its list (with
    /// `PopReason::Dead`, only if it is hidden or expired).
    pub(super) fn pop_victim(&self, index: u32, reason: PopReason, now: i64) -> Option<Victim> {
        let s = self.slot(index);
        let _g = self.lock_list(s);
        let t = if matches!(reason, PopReason::Evict) && self.policy_of(s) == Policy::Lfu {
            self.lfu_victim(s, now)
        } else {
            self.next_victim(s)
        };
        if t == NIL {
            return None;
        }
        // SAFETY: t is on the list, hence allocated, and we hold the list lock.
        let (stale, hash, serial) = unsafe {
            let h = self.head(t);
            ((*h).is_hidden(s), (*h).hash, (*h).serial)
        };
        if !stale && !matches!(reason, PopReason::Drop) {
            if self.is_expired(t, now) {
                s.list.expirations.fetch_add(1, Ordering::Relaxed);
            } else if let PopReason::Dead = reason {
                return None;
            } else {
                s.list.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.retire(s, t);
        Some(Victim { block: t, serial, hash })
    }

    /// The database holding the most bytes beyond its share, if any does. Racy sums
    /// of the caches' counters, good enough to choose where to evict.
    pub(super) fn database_over_share(&self) -> Option<u32> {
        if self.database_share == u64::MAX {
            return None;
        }
        let used = self.hdr().used_slots.load(Ordering::Acquire);
        // Databases with caches are few; past 16 the rest are not judged.
        let mut per_db = [(0u32, 0u64); 16];
        for i in 0..used {
            let s = self.slot(i);
            if s.state.load(Ordering::Acquire) != SLOT_ACTIVE {
                continue;
            }
            let bytes = s.list.bytes.load(Ordering::Relaxed) + s.list.pending_bytes.load(Ordering::Relaxed);
            let db = s.db.load(Ordering::Relaxed);
            if let Some(e) = per_db.iter_mut().find(|e| e.0 == db || e.0 == 0) {
                *e = (db, e.1 + bytes);
            }
        }
        per_db.iter().filter(|e| e.0 != 0 && e.1 > self.database_share).max_by_key(|e| e.1).map(|e| e.0)
    }

    /// Evicts from the tail while slot `r` holds more than `size_limit` entries or
    /// more bytes than its `max_bytes`.
    pub fn enforce_size_limit(&self, r: SlotRef, size_limit: u64, now: i64) {
        let s = self.slot(r.index);
        let over = || {
            let max_bytes = s.list.max_bytes.load(Ordering::Relaxed);
            s.list.entries.load(Ordering::Relaxed) > size_limit
                || (max_bytes > 0 && s.list.bytes.load(Ordering::Relaxed) > max_bytes)
        };
        while over() {
            match self.pop_victim(r.index, PopReason::Evict, now) {
                Some(v) => self.reap(v),
                None => break,
            }
        }
    }

}
