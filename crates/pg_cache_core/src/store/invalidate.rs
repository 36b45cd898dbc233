//! Invalidation: removing a key's entries, clearing a cache, fencing a database,
//! and judging whether a fill is older than a committed invalidation.

use std::sync::atomic::Ordering;

use super::*;
use crate::invalidation::Invalidation;

impl<'a, L: Locks> Store<'a, L> {
    /// Whether the key with `hash` in cache `s`, or all of the cache, was
    /// invalidated at or after `start`. The key's partition lock is held. (A
    /// database-wide invalidation clears each of its caches, and a cache created
    /// later starts with its database's fence as its last clear.)
    pub(super) fn fenced_locked(&self, s: &CacheSlot, hash: u64, start: i64) -> bool {
        s.last_clear.load(Ordering::Acquire) >= start
            || s.list.key_floor.load(Ordering::Acquire) >= start
            // SAFETY: the fence bucket is guarded by the partition lock the caller holds.
            || unsafe { (*self.fence_of(hash)).fences(hash, self.index_of(s), start) }
    }

    /// Records that the key with `hash` of cache `s` was invalidated at `now`; a
    /// fence the table forgets to make room goes into its own cache's key floor.
    /// The key's partition lock held exclusively.
    pub(super) fn raise_key_fence_locked(&self, s: &CacheSlot, hash: u64, now: i64) {
        // SAFETY: the fence bucket is guarded by the partition lock the caller holds.
        let forgot = unsafe { (*self.fence_of(hash)).raise(hash, self.index_of(s), now) };
        if let Some((slot, at)) = forgot {
            if slot < self.geo.slots {
                self.slot(slot).list.key_floor.fetch_max(at, Ordering::AcqRel);
            }
        }
        s.list.invalidated_at.fetch_max(now, Ordering::Relaxed);
    }

    pub(super) fn db_fence(&self, db: u32) -> i64 {
        self.hdr().db_fences.get(db)
    }

    /// Applies `inv`, committed at `now`, taking the locks it needs: the entry point
    /// for invalidations made outside a cache's commit (`cache_drop`, `DROP
    /// DATABASE`, `cache_clear_all`; a standby's redo later). Allocates nothing and
    /// cannot fail: this runs at COMMIT. Whether a visible entry was removed (keys only).
    pub fn invalidate(&self, inv: &Invalidation, now: i64) -> bool {
        match *inv {
            Invalidation::Key { cache, .. } => self.commit_one(cache, now).apply(inv),
            Invalidation::Cache { cache } | Invalidation::Tags { cache, .. } | Invalidation::Prefix { cache, .. } => {
                self.commit(cache, now).apply(inv)
            }
            Invalidation::Database { .. } | Invalidation::DropCaches { .. } => self.apply_locked(inv, now),
        }
    }

    /// The one place an invalidation is applied. `Key`: that cache's commit lock held
    /// (shared or exclusive); `Cache`, `Tags`, `Prefix`: held exclusively; the others: no commit lock
    /// held (they take each cache's in turn). Whether a visible entry was removed.
    pub(super) fn apply_locked(&self, inv: &Invalidation, now: i64) -> bool {
        match *inv {
            Invalidation::Key { cache, key, hash } => self.invalidate_key_locked(cache, key, hash, now, None),
            Invalidation::Cache { cache } => {
                self.clear_locked(cache, now);
                false
            }
            Invalidation::Tags { .. } | Invalidation::Prefix { .. } => {
                self.apply_predicate_locked(inv, now);
                false
            }
            Invalidation::Database { db, except } => {
                self.raise_db_fence(db, now);
                let _dir = self.lock_directory(Mode::Shared);
                for (r, _) in self.active_slots_of(db) {
                    if !except.contains(&r) {
                        self.commit(r, now).apply(&Invalidation::Cache { cache: r });
                    }
                }
                false
            }
            Invalidation::DropCaches { db, fence } => {
                if fence {
                    self.raise_db_fence(db, now);
                }
                let _dir = self.lock_directory(Mode::Exclusive);
                for (r, _) in self.active_slots_of(db) {
                    self.begin_drop_locked(r.index);
                }
                false
            }
        }
    }

    /// Fences every fill into database `db` by transactions that started at or before
    /// `now`. Raised before the database's caches are cleared, so that a cache
    /// created meanwhile is covered too.
    pub(super) fn raise_db_fence(&self, db: u32, now: i64) {
        let _dir = self.lock_directory(Mode::Exclusive);
        self.hdr().db_fences.raise_locked(db, now);
    }

    /// Takes the entries of an `unlink_key_locked` list that are still on slot `s`'s
    /// LRU list off it (eviction may have taken some first); its list lock held.
    /// Whether one of them was visible (current generation, unexpired).
    pub(super) fn retire_unlinked(&self, s: &CacheSlot, mut e: u32, now: i64) -> bool {
        let mut visible = false;
        while e != NIL {
            // SAFETY: unlinked entries stay allocated until `free_unlinked`.
            let h = unsafe { &*self.head(e) };
            if h.state.load(Ordering::Acquire) == ENTRY_LIVE {
                visible |= h.gen == s.gen.load(Ordering::Relaxed) && !self.is_expired(e, now);
                self.retire(s, e);
            }
            e = h.chain_next;
        }
        visible
    }

    /// Deletes (slot, key); whether a visible entry was there. With `only_if`, only
    /// if the key still holds the entry a read saw (judged under the same partition
    /// lock hold); otherwise nothing. Commit lock held.
    pub(super) fn delete_locked(&self, r: SlotRef, key: &[u8], hash: u64, now: i64, only_if: Option<Seen>) -> bool {
        let visible = self.invalidate_key_locked(r, key, hash, now, only_if);
        if visible {
            self.slot(r.index).list.deletes.fetch_add(1, Ordering::Relaxed);
        }
        visible
    }

    /// Whether a fill of the key with `hash` by a transaction that started at `start`
    /// would be dropped if it committed now (see [`super::CacheCommit::is_stale`]):
    /// a hint for a filler deciding whether to make others wait for it.
    pub fn fill_would_be_stale(&self, r: SlotRef, key: &[u8], hash: u64, start: i64) -> bool {
        let s = self.slot(r.index);
        let _p = self.lock_bucket(self.bucket_of(hash), Mode::Shared);
        self.fenced_locked(s, hash, start) || self.predicates_fence(s, key, &[], start) || self.replica_fenced(s, key, start)
    }

    /// Sets the expiry of the key's visible entry in place, unless it has expired by
    /// `now` (a touch does not bring a value back); whether there was one. Under the
    /// partition lock (readers of the key) and the list lock (retiring and eviction).
    /// Commit lock held.
    pub(super) fn set_expiry_locked(&self, r: SlotRef, key: &[u8], hash: u64, expires_at: i64, now: i64) -> bool {
        let s = self.slot(r.index);
        let bucket = self.bucket_of(hash);
        let _p = self.lock_bucket(bucket, Mode::Exclusive);
        let Some(found) = self.visible_entry_locked(r, bucket, hash, key).filter(|&e| !self.is_expired(e, now)) else {
            return false;
        };
        let _g = self.lock_list(s);
        // SAFETY: a linked entry, kept so by the partition lock held.
        unsafe { (*self.head(found)).expires_at.store(expires_at, Ordering::Relaxed) };
        if expires_at != NO_EXPIRY {
            self.note_expiry_locked(bucket, expires_at);
        }
        true
    }

    /// Removes every entry of (slot, key) and raises the key's fence, so that fills
    /// older than `now` are dropped; whether a visible entry was there. With
    /// `only_if`, nothing unless the key still holds what a read saw. Counts
    /// nothing: the caller says why. Commit lock held.
    fn invalidate_key_locked(&self, r: SlotRef, key: &[u8], hash: u64, now: i64, only_if: Option<Seen>) -> bool {
        let s = self.slot(r.index);
        let bucket = self.bucket_of(hash);
        let (unlinked, visible) = {
            let _p = self.lock_bucket(bucket, Mode::Exclusive);
            if only_if.is_some_and(|seen| self.still_seen_locked(r, bucket, hash, key, seen).is_none()) {
                return false;
            }
            self.raise_key_fence_locked(s, hash, now);
            let unlinked = self.unlink_key_locked(r, bucket, hash, key).first;
            let visible = unlinked != NIL && {
                let _g = self.lock_list(s);
                self.retire_unlinked(s, unlinked, now)
            };
            (unlinked, visible)
        };
        self.free_unlinked(None, unlinked);
        visible
    }

    /// Clears a cache in O(1): later lookups miss every entry installed before.
    /// Commit lock held.
    pub(super) fn clear_locked(&self, r: SlotRef, now: i64) {
        self.hide_entries_locked(r, Some(now));
    }

    /// Makes every entry of cache `r` a miss (a generation bump); with `fence`, also
    /// fences fills that started at or before it (a standby's redo does not: its
    /// replica fences judge them, see `replica.rs`). Commit lock held.
    pub(super) fn hide_entries_locked(&self, r: SlotRef, fence: Option<i64>) {
        let s = self.slot(r.index);
        let _g = self.lock_list(s);
        if s.incarnation.load(Ordering::Acquire) != r.incarnation {
            return;
        }
        s.gen.fetch_add(1, Ordering::Release);
        s.list.entries.store(0, Ordering::Relaxed);
        s.list.bytes.store(0, Ordering::Relaxed);
        if let Some(now) = fence {
            s.last_clear.fetch_max(now, Ordering::Release);
        }
        // The clear covers every prefix invalidation committed so far.
        s.prefix_count.store(0, Ordering::Release);
        s.prefix_resets.fetch_add(1, Ordering::Release);
        self.hdr().hidden.fetch_add(1, Ordering::Release);
    }
}
