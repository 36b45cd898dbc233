//! The directory of cache slots: finding or creating the slot of (database, name),
//! reclaiming slots nobody needs, and pinning a slot for a commit in flight.
//!
//! A slot that holds no entry, is not declared and is not pinned by a commit in
//! flight can be reclaimed when a new cache needs a slot: reads of many names (each
//! creates a slot, so that its misses are counted) cannot use up the directory. One
//! database may hold at most `per_database` slots, so that it cannot take every slot
//! of the server either.

use std::sync::atomic::Ordering;

use super::{CacheConfig, Locks, Mode, SlotRef, Store, StoreError, MAX_NAME, NIL, SLOT_ACTIVE, SLOT_DROPPING, SLOT_FREE};

impl<L: Locks> Store<'_, L> {
    /// Finds the slot of (db, name) or creates it with `config`, reclaiming an unused
    /// slot when none is free or when `db` already holds `per_database` slots.
    pub fn find_or_create_slot(
        &self,
        db: u32,
        name: &str,
        config: &CacheConfig,
        per_database: u32,
    ) -> Result<SlotRef, StoreError> {
        assert!(name.len() <= MAX_NAME);
        let _dir = self.lock_directory(Mode::Exclusive);
        if let Some(found) = self.find_locked(db, name) {
            return Ok(found);
        }
        let h = self.hdr();
        let used = h.used_slots.load(Ordering::Relaxed);
        let of_db = self.active_slots_of(db).count() as u32;
        let index = if of_db >= per_database {
            // Over its share: only one of its own unused slots will do.
            match (0..used as u16).find(|&i| self.slot(i).db.load(Ordering::Relaxed) == db && self.reclaim_locked(i)) {
                Some(i) => i,
                None => return Err(StoreError::DatabaseFull { per_database }),
            }
        } else {
            match (0..used as u16).find(|&i| self.slot(i).state.load(Ordering::Acquire) == SLOT_FREE) {
                Some(i) => i,
                None if used < self.geo.slots && used < u16::MAX as u32 => used as u16,
                None => match (0..used as u16).find(|&i| self.reclaim_locked(i)) {
                    Some(i) => i,
                    None => return Err(StoreError::DirectoryFull),
                },
            }
        };
        let s = self.slot(index);
        s.db.store(db, Ordering::Relaxed);
        // SAFETY: the slot is free and we hold the directory lock exclusively.
        unsafe {
            (&mut *s.name.get())[..name.len()].copy_from_slice(name.as_bytes());
            *s.config.get() = *config;
        }
        s.name_len.store(name.len() as u32, Ordering::Release);
        s.config_version.fetch_add(1, Ordering::Release);
        s.list.lru_head.store(NIL, Ordering::Relaxed);
        s.list.lru_tail.store(NIL, Ordering::Relaxed);
        for c in [&s.list.entries, &s.list.bytes, &s.list.sets, &s.list.deletes, &s.list.evictions, &s.list.expirations, &s.list.stale_sets] {
            c.store(0, Ordering::Relaxed);
        }
        s.list.max_bytes.store(config.max_bytes, Ordering::Relaxed);
        self.reset_read_counts(index);
        // A database-wide clear or drop before this slot existed counts as its clear
        // (for cache_last_clear; fills are fenced by the database fence anyway).
        s.last_clear.store(self.db_fence(db), Ordering::Relaxed);
        s.state.store(SLOT_ACTIVE, Ordering::Release);
        if index as u32 == used {
            h.used_slots.store(used + 1, Ordering::Release);
        }
        Ok(SlotRef { index, incarnation: s.incarnation.load(Ordering::Acquire) })
    }

    /// Frees slot `index` if it holds no entry (hidden ones included), is not declared
    /// and no commit has pinned it; whether it did. Directory lock held exclusively.
    ///
    /// Against [`Store::pin`], which raises the pin count and then checks the slot's
    /// state, this marks the slot dropping and then checks the pin count (both
    /// sequentially consistent): one of the two sees the other. A pinner that saw it
    /// dropping resolves the name again, which waits for the directory lock, by when
    /// the slot is free or active again.
    pub(super) fn reclaim_locked(&self, index: u16) -> bool {
        let s = self.slot(index);
        let unused = |s: &super::CacheSlot| self.pins_of(index) == 0 && s.list.lru_tail.load(Ordering::Acquire) == NIL;
        if s.state.load(Ordering::Acquire) != SLOT_ACTIVE || !unused(s) || self.config(SlotRef { index, incarnation: s.incarnation.load(Ordering::Acquire) }).owner != 0 {
            return false;
        }
        s.state.store(SLOT_DROPPING, Ordering::SeqCst);
        if !unused(s) {
            s.state.store(SLOT_ACTIVE, Ordering::SeqCst);
            return false;
        }
        s.incarnation.fetch_add(1, Ordering::Release);
        s.name_len.store(0, Ordering::Release);
        s.state.store(SLOT_FREE, Ordering::Release);
        true
    }

    /// Keeps slot `r` from being reclaimed until [`Store::unpin`]: a commit pins the
    /// slots it prepared entries for, in its backend's `stripe`. `false` when the slot
    /// is no longer `r` (dropped or reclaimed): resolve the name again.
    pub fn pin(&self, r: SlotRef, stripe: usize) -> bool {
        let s = self.slot(r.index);
        let pins = &self.read_counts(r.index, stripe).pins;
        pins.fetch_add(1, Ordering::SeqCst);
        let live = s.state.load(Ordering::SeqCst) == SLOT_ACTIVE && s.incarnation.load(Ordering::SeqCst) == r.incarnation;
        if !live {
            pins.fetch_sub(1, Ordering::SeqCst);
        }
        live
    }

    pub fn unpin(&self, r: SlotRef, stripe: usize) {
        self.read_counts(r.index, stripe).pins.fetch_sub(1, Ordering::Release);
    }
}
