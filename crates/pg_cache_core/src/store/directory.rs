//! The directory of cache slots: finding or creating the slot of (database, name),
//! reclaiming slots nobody needs, and pinning a slot for a commit in flight.
//!
//! A slot that holds no entry, is not declared and is not pinned by a commit in
//! flight can be reclaimed when a new cache needs a slot: caches emptied by
//! deletes, expiry or eviction cannot use up the directory. One database may hold
//! at most `per_database` slots, so that it cannot take every slot of the server
//! either. Creating a slot is O(1) in the number of slots (a stack of free slots, a
//! table of slots per database) unless it must reclaim, and a reclaim search
//! resumes where the last one stopped.

use std::sync::atomic::Ordering;

use super::*;

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
        let index = if self.db_slots_locked(db) >= per_database {
            // Over its share: only one of its own unused slots will do.
            match self.reclaim_one_locked(Some(db)) {
                Some(i) => i,
                None => return Err(StoreError::DatabaseFull { per_database }),
            }
        } else {
            match h.free_slots.load(Ordering::Relaxed) {
                0 if used < self.geo.slots => used,
                0 => self.reclaim_one_locked(None).ok_or(StoreError::DirectoryFull)?,
                top => top - 1,
            }
        };
        if index + 1 == h.free_slots.load(Ordering::Relaxed) {
            h.free_slots.store(self.slot(index).next_free.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let s = self.slot(index);
        s.db.store(db, Ordering::Relaxed);
        // SAFETY: the slot is free and we hold the directory lock exclusively.
        unsafe {
            (&mut *s.name.get())[..name.len()].copy_from_slice(name.as_bytes());
            *s.config.get() = *config;
        }
        s.name_len.store(name.len() as u32, Ordering::Release);
        self.index_name_locked(index);
        self.count_db_slot_locked(db, 1);
        s.config_version.fetch_add(1, Ordering::Release);
        s.list.lru_head.store(NIL, Ordering::Relaxed);
        s.list.lru_tail.store(NIL, Ordering::Relaxed);
        for c in [&s.list.entries, &s.list.bytes, &s.list.sets, &s.list.deletes, &s.list.evictions, &s.list.expirations, &s.list.stale_sets, &s.list.skipped] {
            c.store(0, Ordering::Relaxed);
        }
        s.list.key_floor.store(NEVER, Ordering::Relaxed);
        s.list.tag_floor.store(NEVER, Ordering::Relaxed);
        s.list.latest_installed.store(NEVER, Ordering::Relaxed);
        s.prefix_count.store(0, Ordering::Relaxed);
        s.list.invalidated_at.store(NEVER, Ordering::Relaxed);
        s.list.max_bytes.store(config.max_bytes, Ordering::Relaxed);
        s.list.policy.store(config.policy as u8, Ordering::Relaxed);
        self.reset_read_counts(index);
        // A database-wide clear or drop before this slot existed counts as its clear
        // (for cache_last_clear; fills are fenced by the database fence anyway).
        s.last_clear.store(self.db_fence(db), Ordering::Relaxed);
        s.state.store(SLOT_ACTIVE, Ordering::Release);
        self.hdr().slots_created.fetch_add(1, Ordering::Release);
        if index == used {
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
    pub(super) fn reclaim_locked(&self, index: u32) -> bool {
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
        self.count_db_slot_locked(s.db.load(Ordering::Relaxed), -1);
        self.forget_slot_locked(s);
        true
    }

    /// Reclaims one unused slot (of database `db` only, if given) and returns it,
    /// free. The search starts where the last one stopped (a clock hand), so slots
    /// found in use are not read again by the next creation: a run of new names
    /// reads each slot about once, where a search from slot 0 read the same full
    /// slots for each. Directory lock held exclusively.
    fn reclaim_one_locked(&self, db: Option<u32>) -> Option<u32> {
        let h = self.hdr();
        let used = h.used_slots.load(Ordering::Relaxed);
        let start = h.reclaim_hand.load(Ordering::Relaxed) % used.max(1);
        let found = (start..used).chain(0..start).find(|&i| {
            db.is_none_or(|db| self.slot(i).db.load(Ordering::Relaxed) == db) && self.reclaim_locked(i)
        })?;
        h.reclaim_hand.store(found + 1, Ordering::Relaxed);
        Some(found)
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

    pub(super) fn slot_name(&self, s: &CacheSlot) -> &[u8] {
        let len = s.name_len.load(Ordering::Acquire) as usize;
        // SAFETY: the name is written only while the slot is free, under the
        // directory lock held exclusively; readers hold it shared.
        unsafe { &(&*s.name.get())[..len] }
    }

    /// The active slot of (db, name), through the name index: O(1) in the number of
    /// slots (a scan of the directory cost 28 µs a name at 10,000 slots, and every
    /// backend pays it for every name it uses). Directory lock held.
    pub(super) fn find_locked(&self, db: u32, name: &str) -> Option<SlotRef> {
        let mask = self.geo.names - 1;
        let mut i = name_hash(db, name.as_bytes()) & mask;
        loop {
            let e = self.name_entry(i).load(Ordering::Relaxed);
            if e == 0 {
                return None;
            }
            let index = e - 1;
            let s = self.slot(index);
            // A dropping slot of the name stays indexed until freed, beside a new one.
            if s.state.load(Ordering::Acquire) == SLOT_ACTIVE
                && s.db.load(Ordering::Relaxed) == db
                && self.slot_name(s) == name.as_bytes()
            {
                return Some(SlotRef { index, incarnation: s.incarnation.load(Ordering::Acquire) });
            }
            i = (i + 1) & mask;
        }
    }

    /// Where slot `index` (named, not yet or still in the index) belongs first.
    fn home_of(&self, index: u32) -> u32 {
        let s = self.slot(index);
        name_hash(s.db.load(Ordering::Relaxed), self.slot_name(s)) & (self.geo.names - 1)
    }

    /// Adds named slot `index` to the name index (linear probing; the index has at
    /// least twice as many entries as there are slots). Directory lock exclusive.
    fn index_name_locked(&self, index: u32) {
        let mask = self.geo.names - 1;
        let mut i = self.home_of(index);
        while self.name_entry(i).load(Ordering::Relaxed) != 0 {
            i = (i + 1) & mask;
        }
        self.name_entry(i).store(index + 1, Ordering::Relaxed);
    }

    /// Takes slot `index` (still named) out of the name index. Directory lock
    /// exclusive.
    fn unindex_name_locked(&self, index: u32) {
        let mask = self.geo.names - 1;
        let mut hole = self.home_of(index);
        loop {
            match self.name_entry(hole).load(Ordering::Relaxed) {
                0 => return, // not indexed (cannot happen: every named slot is)
                e if e == index + 1 => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        self.name_entry(hole).store(0, Ordering::Relaxed);
        remove_probed(
            mask,
            hole,
            |j| match self.name_entry(j).load(Ordering::Relaxed) {
                0 => None,
                e => Some(self.home_of(e - 1)),
            },
            |from, to| {
                self.name_entry(to).store(self.name_entry(from).load(Ordering::Relaxed), Ordering::Relaxed);
                self.name_entry(from).store(0, Ordering::Relaxed);
            },
        );
    }

    /// The active slots of database `db`, from the table of slots per database:
    /// O(1) where counting them read the whole directory. Directory lock held.
    pub(super) fn db_slots_locked(&self, db: u32) -> u32 {
        let mask = self.geo.names - 1;
        let mut i = db_hash(db) & mask;
        loop {
            let e = self.db_entry(i);
            match e.db.load(Ordering::Relaxed) {
                0 => return 0,
                d if d == db => return e.slots.load(Ordering::Relaxed),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Counts a slot of `db` becoming active (+1) or leaving (-1); a database whose
    /// count comes to 0 leaves the table. Directory lock held exclusively.
    fn count_db_slot_locked(&self, db: u32, delta: i32) {
        let mask = self.geo.names - 1;
        let mut i = db_hash(db) & mask;
        let e = loop {
            let e = self.db_entry(i);
            match e.db.load(Ordering::Relaxed) {
                0 => {
                    debug_assert!(delta > 0, "database {db} had no slot counted");
                    e.db.store(db, Ordering::Relaxed);
                    e.slots.store(0, Ordering::Relaxed); // an emptied entry keeps its old count
                    break e;
                }
                d if d == db => break e,
                _ => i = (i + 1) & mask,
            }
        };
        let n = e.slots.load(Ordering::Relaxed).wrapping_add_signed(delta);
        e.slots.store(n, Ordering::Relaxed);
        if n == 0 {
            e.db.store(0, Ordering::Relaxed);
            remove_probed(
                mask,
                i,
                |j| match self.db_entry(j).db.load(Ordering::Relaxed) {
                    0 => None,
                    d => Some(db_hash(d) & mask),
                },
                |from, to| {
                    let (f, t) = (self.db_entry(from), self.db_entry(to));
                    t.db.store(f.db.load(Ordering::Relaxed), Ordering::Relaxed);
                    t.slots.store(f.slots.load(Ordering::Relaxed), Ordering::Relaxed);
                    f.db.store(0, Ordering::Relaxed);
                },
            );
        }
    }

    /// The slots counted for database `db`.
    #[cfg(test)]
    pub(super) fn db_slot_count(&self, db: u32) -> u32 {
        let _dir = self.lock_directory(Mode::Shared);
        self.db_slots_locked(db)
    }

    /// Entries taken in the name index and in the table of slots per database.
    #[cfg(test)]
    pub(super) fn index_sizes(&self) -> (usize, usize) {
        let names = (0..self.geo.names).filter(|&i| self.name_entry(i).load(Ordering::Relaxed) != 0).count();
        let dbs = (0..self.geo.names).filter(|&i| self.db_entry(i).db.load(Ordering::Relaxed) != 0).count();
        (names, dbs)
    }

    /// Moves whenever a slot is created: a backend that found no slot for a name
    /// may trust that while this stands still.
    pub fn slots_created(&self) -> u64 {
        self.hdr().slots_created.load(Ordering::Acquire)
    }

    pub fn find_slot(&self, db: u32, name: &str) -> Option<SlotRef> {
        let _dir = self.lock_directory(Mode::Shared);
        self.find_locked(db, name)
    }

    /// Whether `r` still names a live slot (no drop happened since it was resolved).
    pub fn is_valid(&self, r: SlotRef) -> bool {
        let s = self.slot(r.index);
        s.state.load(Ordering::Acquire) == SLOT_ACTIVE && s.incarnation.load(Ordering::Acquire) == r.incarnation
    }

    /// The slot's settings version: changes whenever `set_config` runs.
    pub fn config_version(&self, r: SlotRef) -> u32 {
        self.slot(r.index).config_version.load(Ordering::Acquire)
    }

    pub fn config(&self, r: SlotRef) -> CacheConfig {
        let s = self.slot(r.index);
        let _g = self.lock_list(s);
        // SAFETY: config is written only under the slot's list lock.
        unsafe { *s.config.get() }
    }

    pub fn set_config(&self, r: SlotRef, config: &CacheConfig) {
        let s = self.slot(r.index);
        let _g = self.lock_list(s);
        if s.incarnation.load(Ordering::Acquire) != r.incarnation {
            return; // dropped meanwhile: the slot may belong to another cache now
        }
        // SAFETY: config is written only under the slot's list lock.
        unsafe { *s.config.get() = *config };
        // Not the key floor nor the last invalidation: a slot starts with them at
        // NEVER, and a redeclaration must not forget a fence (a fill in flight
        // would install stale) nor what a drop of the slot hands to its database.
        s.list.max_bytes.store(config.max_bytes, Ordering::Relaxed);
        s.list.policy.store(config.policy as u8, Ordering::Relaxed);
        s.config_version.fetch_add(1, Ordering::Release);
    }

    /// The live slots of database `db`; the caller holds the directory lock.
    pub(super) fn active_slots_of(&self, db: u32) -> impl Iterator<Item = (SlotRef, &CacheSlot)> + '_ {
        let used = self.hdr().used_slots.load(Ordering::Acquire);
        (0..used).filter_map(move |i| {
            let s = self.slot(i);
            (s.state.load(Ordering::Acquire) == SLOT_ACTIVE && s.db.load(Ordering::Relaxed) == db)
                .then(|| (SlotRef { index: i, incarnation: s.incarnation.load(Ordering::Acquire) }, s))
        })
    }

    /// The slots of database `db` with their cache names.
    pub fn slots_of(&self, db: u32) -> Vec<(SlotRef, String)> {
        let _dir = self.lock_directory(Mode::Shared);
        self.active_slots_of(db).map(|(r, s)| (r, String::from_utf8_lossy(self.slot_name(s)).into_owned())).collect()
    }

    pub fn stats(&self, r: SlotRef, name: String) -> SlotStats {
        let s = self.slot(r.index);
        let last = s.last_clear.load(Ordering::Relaxed);
        let (hits, misses) = self.read_totals(r.index);
        SlotStats {
            name,
            slot: Some(r),
            entries: s.list.entries.load(Ordering::Relaxed),
            bytes: s.list.bytes.load(Ordering::Relaxed),
            hits,
            misses,
            sets: s.list.sets.load(Ordering::Relaxed),
            deletes: s.list.deletes.load(Ordering::Relaxed),
            evictions: s.list.evictions.load(Ordering::Relaxed),
            expirations: s.list.expirations.load(Ordering::Relaxed),
            stale_sets: s.list.stale_sets.load(Ordering::Relaxed),
            skipped: s.list.skipped.load(Ordering::Relaxed),
            last_clear: (last != NEVER).then_some(last),
            config: self.config(r),
        }
    }

    /// When the cache was last cleared by a committed transaction.
    pub fn last_clear(&self, r: SlotRef) -> Option<i64> {
        let t = self.slot(r.index).last_clear.load(Ordering::Acquire);
        (t != NEVER).then_some(t)
    }

    /// Counts a call that met a limit and skipped: in its cache, or server-wide when
    /// it has none (no slot could be had for it).
    pub fn count_skipped(&self, r: Option<SlotRef>) {
        match r {
            Some(r) => self.slot(r.index).list.skipped.fetch_add(1, Ordering::Relaxed),
            None => self.hdr().skipped_without_slot.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Counts a hit in the stripe of the calling backend.
    pub fn count_hit(&self, r: SlotRef, stripe: usize) {
        self.read_counts(r.index, stripe).hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_miss(&self, r: SlotRef, stripe: usize) {
        self.read_counts(r.index, stripe).misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Hits and misses of slot `index`, all stripes added up.
    pub(super) fn read_totals(&self, index: u32) -> (u64, u64) {
        (0..STRIPES).map(|st| self.read_counts(index, st)).fold((0, 0), |(h, m), c| {
            (h + c.hits.load(Ordering::Relaxed), m + c.misses.load(Ordering::Relaxed))
        })
    }

    /// Every stripe's pins of slot `index` added up.
    pub(super) fn pins_of(&self, index: u32) -> u32 {
        (0..STRIPES).map(|st| self.read_counts(index, st).pins.load(Ordering::SeqCst)).sum()
    }

    pub(super) fn reset_read_counts(&self, index: u32) {
        for st in 0..STRIPES {
            let c = self.read_counts(index, st);
            c.hits.store(0, Ordering::Relaxed);
            c.misses.store(0, Ordering::Relaxed);
        }
    }

    /// Makes slot `index` invisible at once (lookups, installs and new slots of the
    /// same name no longer see it); its entries stay until `finish_drop`. Directory
    /// lock held exclusively.
    pub(super) fn begin_drop_locked(&self, index: u32) {
        let s = self.slot(index);
        let _g = self.lock_list(s);
        s.state.store(SLOT_DROPPING, Ordering::Release);
        self.count_db_slot_locked(s.db.load(Ordering::Relaxed), -1);
        self.hdr().hidden.fetch_add(1, Ordering::Release);
    }

    /// Frees the entries of dropping slot `index`, one per lock hold, then the slot.
    pub(super) fn finish_drop(&self, index: u32) -> u64 {
        let s = self.slot(index);
        let mut freed = 0;
        while let Some(v) = self.pop_victim(index, PopReason::Drop, 0) {
            self.reap(v);
            freed += 1;
        }
        let _dir = self.lock_directory(Mode::Exclusive);
        // A slot a commit still pins (its prepared entries are counted there) is freed
        // by a later pass of the worker.
        if s.state.load(Ordering::Acquire) == SLOT_DROPPING
            && s.list.lru_tail.load(Ordering::Acquire) == NIL
            && self.pins_of(index) == 0
        {
            self.forget_slot_locked(s);
        }
        freed
    }

    /// Frees slot `s`. Its key fences are keyed by slot, so a cache created again
    /// under its name elsewhere would not see them: its database's fence takes the
    /// slot's last invalidation, and a new slot starts with that as its last clear.
    /// Directory lock held exclusively.
    fn forget_slot_locked(&self, s: &CacheSlot) {
        let last = s.list.invalidated_at.load(Ordering::Acquire).max(s.list.key_floor.load(Ordering::Acquire));
        if last != NEVER {
            self.hdr().db_fences.raise_locked(s.db.load(Ordering::Relaxed), last);
        }
        let index = self.index_of(s);
        self.unindex_name_locked(index);
        s.incarnation.fetch_add(1, Ordering::Release);
        s.name_len.store(0, Ordering::Release);
        s.state.store(SLOT_FREE, Ordering::Release);
        let h = self.hdr();
        s.next_free.store(h.free_slots.load(Ordering::Relaxed), Ordering::Relaxed);
        h.free_slots.store(index + 1, Ordering::Relaxed);
    }
}

/// Empties entry `hole` of a linear-probing table of `mask + 1` entries and moves
/// back the entries after it whose probe would otherwise start past the hole, so
/// that no probe sequence is broken and no tombstone is left (Knuth's Algorithm R).
/// `home(j)`: where entry j's probe starts, `None` if j is empty; `move_to(from,
/// to)`: moves entry `from` into empty entry `to` and empties `from`.
fn remove_probed(mask: u32, mut hole: u32, home: impl Fn(u32) -> Option<u32>, move_to: impl Fn(u32, u32)) {
    let mut j = hole;
    loop {
        j = (j + 1) & mask;
        let Some(home) = home(j) else { return };
        // Entry j may move into the hole unless its home lies cyclically in (hole, j].
        let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
        if !stays {
            move_to(j, hole);
            hole = j;
        }
    }
}

fn db_hash(db: u32) -> u32 {
    db.wrapping_mul(0x9E37_79B1).rotate_left(16)
}

/// Hash of (database, cache name) for the name index (FNV-1a, then a finalizer).
fn name_hash(db: u32, name: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in db.to_le_bytes().iter().chain(name) {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^ (h >> 13)
}
