//! The commit path: entries prepared at PRE_COMMIT (everything that may fail), then
//! linked in at COMMIT under the cache's commit lock (nothing that may fail).

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU8, Ordering};

use super::*;
use crate::invalidation::Invalidation;
use crate::value::ValueKind;


/// An allocated, filled entry not yet linked into the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    pub(super) block: u32,
    pub(super) hash: u64,
}

impl Prepared {
    /// The hash of the key the entry is for.
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// What a write stores: `value` of `kind` under the stored `key` (whose hash is
/// `hash`), until `expires_at` ([`NO_EXPIRY`]: until evicted or invalidated),
/// carrying `tags` (hashes from [`super::tag_hash`], at most [`super::MAX_TAGS`]).
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub kind: ValueKind,
    pub hash: u64,
    pub expires_at: i64,
    pub tags: &'a [u64],
}

/// A commit of several writes, a clear or a declaration to one cache, holding its
/// commit lock exclusively ([`Store::commit`]): lookups see all of it or none of it
/// (they start over when they overlap one). `now` is the commit time, taken after the
/// transaction became visible to new snapshots; fences raised here carry it.
pub struct CacheCommit<'s, 'a, L: Locks> {
    pub(super) store: &'s Store<'a, L>,
    pub(super) r: SlotRef,
    /// The commit time; raised by a tag or prefix invalidation stamped later (see
    /// `predicate_time`), so that what the commit installs after it stays visible.
    pub(super) now: std::cell::Cell<i64>,
    /// Set for a shadowed commit ([`Store::commit_shadowed`]), which lookups do not
    /// wait for: it must be published, then each of its keys settled.
    pub(super) shadow: Option<super::shadow::ShadowState>,
}

/// A commit of one key's set or delete, holding its cache's commit lock shared
/// ([`Store::commit_one`]): one key is visible atomically under its partition lock
/// anyway, so such commits run side by side and wait only for [`CacheCommit`]s.
pub struct KeyCommit<'s, 'a, L: Locks> {
    store: &'s Store<'a, L>,
    r: SlotRef,
    now: i64,
}

/// When a prepared entry is installed at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InstallIf {
    /// Whatever committed meanwhile: a put.
    Always,
    /// Unless the key, its cache or its database was invalidated by a commit at or
    /// after this time (the transaction's start): a fill. A stale fill still
    /// invalidates its key.
    FreshSince(i64),
    /// Only if the key still holds what a read saw: a write computed from that read
    /// (an increment, an add). Otherwise nothing happens at all, as if this write had
    /// committed before the one that changed the key. `true`: the entry takes the
    /// expiry the key's entry has then (an increment without a new expiry keeps
    /// the key's, a touch meanwhile included).
    Unchanged(Seen, bool),
}

impl<L: Locks> Drop for CacheCommit<'_, '_, L> {
    fn drop(&mut self) {
        match &self.shadow {
            None => {
                self.store.slot(self.r.index).commit_seq.fetch_add(1, Ordering::Release);
            }
            Some(st) => {
                if !st.published.get() {
                    debug_assert!(false, "a shadowed commit must be published and settled");
                    self.store.publish_shadowed(self.r, st, self.now.get());
                }
                self.store.enforce_size_limit(self.r, st.size_limit.get(), self.now.get());
            }
        }
        self.store.locks.unlock_cache(self.r.index);
    }
}

impl<L: Locks> Drop for KeyCommit<'_, '_, L> {
    fn drop(&mut self) {
        self.store.slot(self.r.index).list.key_commits_ended.fetch_add(1, Ordering::Release);
        self.store.locks.unlock_cache(self.r.index);
    }
}

impl<L: Locks> CacheCommit<'_, '_, L> {
    /// Whether a fill of the key with `hash` by a transaction that started at `start`
    /// is stale: its key, its cache or its database was invalidated by a commit at or
    /// after `start`. Ask before this commit raises fences of its own.
    pub fn is_stale(&self, hash: u64, start: i64) -> bool {
        let st = self.store;
        let _p = st.lock_bucket(st.bucket_of(hash), Mode::Shared);
        st.fenced_locked(st.slot(self.r.index), hash, start)
    }

    /// [`CacheCommit::is_stale`] for the prepared fill `p` of `key`, judged by the
    /// tags it carries and the cache's prefix invalidations too.
    pub fn is_stale_fill(&self, p: Prepared, key: &[u8], start: i64) -> bool {
        let st = self.store;
        let mut tags = [0u64; MAX_TAGS];
        let n = st.prepared_tags(p, &mut tags);
        let s = st.slot(self.r.index);
        self.is_stale(p.hash, start) || st.predicates_fence(s, key, &tags[..n], start) || st.replica_fenced(s, key, start)
    }

    /// Makes every entry of this cache carrying any of `tags` (hashes from
    /// [`super::tag_hash`]) a miss, and fences fills carrying them.
    pub fn invalidate_tags(&self, tags: &[u64]) {
        self.apply(&Invalidation::Tags { cache: self.r, tags });
    }

    /// Makes every entry of this cache whose stored key starts with `prefix` a miss,
    /// and fences fills of such keys.
    pub fn invalidate_prefix(&self, prefix: &[u8]) {
        self.apply(&Invalidation::Prefix { cache: self.r, prefix });
    }

    /// Whether the key still holds the entry `seen` (see [`KeyCommit::install_if_unchanged`]):
    /// `Some` of its expiry now if it does. Ask before this commit changes anything:
    /// no other commit of the cache can run until this one ends (eviction and the
    /// worker still can: an entry they remove meanwhile is replaced all the same).
    pub fn holds(&self, key: &[u8], hash: u64, seen: Seen) -> Option<i64> {
        let st = self.store;
        let bucket = st.bucket_of(hash);
        let _p = st.lock_bucket(bucket, Mode::Shared);
        st.still_seen_locked(self.r, bucket, hash, key, seen)
    }

    /// Gives a prepared entry, not yet installed, the expiry `at` (what
    /// [`CacheCommit::holds`] found, for a write that keeps the key's expiry).
    pub fn set_prepared_expiry(&self, p: Prepared, at: i64) {
        // SAFETY: the prepared entry is ours until installed or freed.
        unsafe { (*self.store.head(p.block)).expires_at.store(at, Ordering::Relaxed) };
    }

    /// Frees a prepared entry that is not to be installed (its read was overtaken,
    /// see [`CacheCommit::holds`]); changes nothing else.
    pub fn forgo(&self, p: Prepared) {
        self.store.discard(p);
    }

    /// As [`KeyCommit::touch`]. In a shadowed commit this touches the entry visible
    /// now, before the commit is published.
    pub fn touch(&self, key: &[u8], hash: u64, expires_at: i64) -> bool {
        self.store.set_expiry_locked(self.r, key, hash, expires_at, self.now.get())
    }

    /// Applies an invalidation of this cache (a key of it, or all of it).
    pub fn apply(&self, inv: &Invalidation) -> bool {
        debug_assert!(matches!(*inv,
            Invalidation::Key { cache, .. } | Invalidation::Cache { cache } | Invalidation::Tags { cache, .. } | Invalidation::Prefix { cache, .. }
            if cache == self.r));
        debug_assert!(self.shadow.is_none() || matches!(*inv, Invalidation::Key { .. } | Invalidation::Cache { .. }), "tags and prefixes are not shadowed");
        match inv {
            Invalidation::Tags { .. } | Invalidation::Prefix { .. } => {
                // Stamped after every entry installed so far, which no install can
                // join while this commit holds the lock exclusively; then what this
                // commit installs after it is stamped no earlier.
                let at = self.store.predicate_time(self.r, self.now.get());
                let latest = self.store.apply_predicate_locked(inv, at);
                self.now.set(at.max(latest));
                false
            }
            _ => self.store.apply_locked(inv, self.now.get()),
        }
    }

    /// Empties the cache (a generation bump) and fences every fill older than now.
    /// (A shadowed commit bumps the generation when it is published.)
    pub fn clear(&self) {
        match &self.shadow {
            None => {
                self.apply(&Invalidation::Cache { cache: self.r });
            }
            Some(st) => st.clearing.set(true),
        }
    }

    /// Links a prepared entry for `key` in place of any entry with the same key,
    /// fences older fills of that key, then evicts while the cache holds more than
    /// `size_limit`. The entry it replaces goes to `reserve` if that can take it.
    pub fn install(&self, reserve: Option<&Reserve>, p: Prepared, key: &[u8], size_limit: u64) {
        let Some(st) = &self.shadow else {
            self.store.install_locked(reserve, self.r, p, key, size_limit, self.now.get(), InstallIf::Always);
            return;
        };
        st.size_limit.set(st.size_limit.get().min(size_limit));
        let gen = self.store.slot(self.r.index).gen.load(Ordering::Relaxed).wrapping_add(st.clearing.get() as u32);
        match self.store.install_shadowed_locked(self.r, p, key, gen, st.clearing.get(), self.now.get()) {
            Some(bytes) if st.clearing.get() => {
                st.new_entries.set(st.new_entries.get() + 1);
                st.new_bytes.set(st.new_bytes.get() + bytes);
            }
            Some(_) => {}
            None => self.store.keep_or_free(reserve, p.block),
        }
    }

    /// Frees a prepared entry found stale by [`CacheCommit::is_stale`] and counts it;
    /// its key is invalidated all the same (entries removed, fence raised), as the
    /// write meant to replace whatever value was there: a dropped fill never leaves
    /// an older value behind.
    pub fn drop_stale(&self, p: Prepared, key: &[u8]) {
        self.store.slot(self.r.index).list.stale_sets.fetch_add(1, Ordering::Relaxed);
        self.store.settle(p);
        self.store.free_entry(p.block);
        match self.shadow {
            None => {
                self.apply(&Invalidation::Key { cache: self.r, key, hash: p.hash });
            }
            Some(_) => {
                self.store.retire_key_shadowed(self.r, key, p.hash, self.now.get());
            }
        }
    }

    /// Deletes the key and fences older fills of it; whether a visible entry was there.
    pub fn delete(&self, key: &[u8], hash: u64) -> bool {
        if self.shadow.is_none() {
            return self.store.delete_locked(self.r, key, hash, self.now.get(), None);
        }
        let visible = self.store.retire_key_shadowed(self.r, key, hash, self.now.get());
        if visible {
            self.store.slot(self.r.index).list.deletes.fetch_add(1, Ordering::Relaxed);
        }
        visible
    }

    /// Makes a shadowed commit visible, all at once (a no-op for others). Then call
    /// [`CacheCommit::settle_key`] for each key it wrote or deleted.
    pub fn publish(&self) {
        if let Some(st) = &self.shadow {
            self.store.publish_shadowed(self.r, st, self.now.get());
        }
    }

    /// After [`CacheCommit::publish`]: drops what a shadowed commit replaced of `key`
    /// and unmarks its new entry (a no-op for other commits).
    pub fn settle_key(&self, key: &[u8], hash: u64) {
        if self.shadow.is_some() {
            self.store.settle_key_shadowed(self.r, key, hash, self.now.get());
        }
    }

    /// Publishes a declaration. One that changes how keys are stored (`context`, its
    /// ignored keys) also clears the cache: entries stored under the old encoding
    /// would otherwise come back, deletes made meanwhile notwithstanding, when the
    /// cache is switched back.
    pub fn set_config(&self, config: &CacheConfig, size_limit: u64) {
        let old = self.store.config(self.r);
        self.store.set_config(self.r, config);
        if old.context != config.context || old.ignored() != config.ignored() {
            self.clear();
        }
        self.store.enforce_size_limit(self.r, size_limit, self.now.get());
    }
}

impl<L: Locks> KeyCommit<'_, '_, L> {
    /// Applies an invalidation of one key of this cache.
    pub fn apply(&self, inv: &Invalidation) -> bool {
        debug_assert!(matches!(*inv, Invalidation::Key { cache, .. } if cache == self.r));
        self.store.apply_locked(inv, self.now)
    }

    /// Links a prepared entry as [`CacheCommit::install`] does, unless the fill is
    /// stale for a transaction that started at `start`: then it is freed and counted,
    /// and its key invalidated instead (as [`CacheCommit::drop_stale`] does). Judged
    /// under the same partition lock hold as the install, so that concurrent commits
    /// of the same key cannot both pass. Whether it was installed.
    pub fn install_if_fresh(&self, reserve: Option<&Reserve>, p: Prepared, key: &[u8], size_limit: u64, start: i64) -> bool {
        self.store.install_locked(reserve, self.r, p, key, size_limit, self.now, InstallIf::FreshSince(start))
    }

    /// Links a prepared entry as [`KeyCommit::install`] does if the key still holds
    /// the entry `seen` (judged under the same partition lock hold), with that
    /// entry's expiry when `keep_expiry`; otherwise frees it and changes nothing.
    /// Whether it was installed.
    pub fn install_if_unchanged(&self, reserve: Option<&Reserve>, p: Prepared, key: &[u8], size_limit: u64, seen: Seen, keep_expiry: bool) -> bool {
        self.store.install_locked(reserve, self.r, p, key, size_limit, self.now, InstallIf::Unchanged(seen, keep_expiry))
    }

    /// Deletes the key as [`KeyCommit::delete`] does if it still holds the entry
    /// `seen`; otherwise changes nothing. Whether it deleted a visible entry.
    pub fn delete_if_unchanged(&self, key: &[u8], hash: u64, seen: Seen) -> bool {
        self.store.delete_locked(self.r, key, hash, self.now, Some(seen))
    }

    /// Gives the key's entry a new expiry in place (not an invalidation: fills of it
    /// are not dropped); whether there was an entry to touch.
    pub fn touch(&self, key: &[u8], hash: u64, expires_at: i64) -> bool {
        self.store.set_expiry_locked(self.r, key, hash, expires_at, self.now)
    }

    /// Links a prepared entry as [`CacheCommit::install`] does, whatever committed
    /// since its transaction started (a put, not a fill).
    pub fn install(&self, reserve: Option<&Reserve>, p: Prepared, key: &[u8], size_limit: u64) {
        self.store.install_locked(reserve, self.r, p, key, size_limit, self.now, InstallIf::Always);
    }

    /// Deletes the key and fences older fills of it; whether a visible entry was there.
    pub fn delete(&self, key: &[u8], hash: u64) -> bool {
        self.store.delete_locked(self.r, key, hash, self.now, None)
    }
}

impl<'a, L: Locks> Store<'a, L> {
    /// Allocates and fills an entry for (slot, key) → value, evicting as needed.
    /// Takes no partition lock while it allocates. `Ok(None)`: no room could be made
    /// (every block is held by entries other transactions are about to install).
    pub fn prepare(&self, reserve: Option<&Reserve>, r: SlotRef, entry: &NewEntry, now: i64) -> Result<Option<Prepared>, StoreError> {
        let NewEntry { key, value, kind, hash, expires_at, tags } = *entry;
        let tags = &tags[..tags.len().min(MAX_TAGS)];
        let payload = key.len() + value.len() + tags.len() * 8;
        if payload > self.max_payload() {
            return Err(StoreError::TooLarge);
        }
        let n = blocks_for(payload);
        self.prefetch_install(hash);
        let reserved = self.take_reserve(reserve, n as u32);
        let (first, last) = match reserved {
            Some(got) => got,
            None => loop {
                if let Some(got) = self.alloc(n as u32) {
                    break got;
                }
                if !self.evict_one(now, self.slot(r.index).db.load(Ordering::Relaxed)) {
                    // The write is lost like an entry evicted at once: count it so.
                    self.slot(r.index).list.evictions.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                }
            },
        };
        let counted = self.database_share != u64::MAX;
        if counted {
            self.slot(r.index).list.pending_bytes.fetch_add((n * BLOCK_SIZE) as u64, Ordering::Relaxed);
        }
        // SAFETY: the blocks are ours until installed or discarded.
        unsafe {
            let h = self.head(first);
            let next = (*h).next_block;
            std::ptr::write(
                h,
                EntryHead {
                    next_block: next,
                    chain_next: NIL,
                    lru_prev: NIL,
                    lru_next: NIL,
                    hash: hash as u32,
                    serial: self.hdr().serial.fetch_add(1, Ordering::Relaxed),
                    slot: r.index,
                    state: AtomicU8::new(ENTRY_LIVE),
                    flags: kind as u8 | if counted { PENDING } else { 0 },
                    tags: tags.len() as u8,
                    gen: 0,
                    key_len: key.len() as u32,
                    value_len: value.len() as u32,
                    last_block: last,
                    expires_at: AtomicI64::new(expires_at),
                    pushed_at: AtomicU32::new(0),
                    used_at: AtomicU32::new(ms(now)),
                    installed_at: now,
                },
            );
        }
        let mut tag_bytes = [0u8; MAX_TAGS * 8];
        for (i, t) in tags.iter().enumerate() {
            tag_bytes[i * 8..i * 8 + 8].copy_from_slice(&t.to_le_bytes());
        }
        self.write_payload(first, key, value, &tag_bytes[..tags.len() * 8]);
        Ok(Some(Prepared { block: first, hash }))
    }

    /// Starts loading the bucket head of `hash`: a write calls this when it is made,
    /// so that at PRE_COMMIT, microseconds later, `prefetch_install` finds it in cache.
    pub fn prefetch_bucket(&self, hash: u64) {
        prefetch(self.bucket_head(self.bucket_of(hash)) as *const AtomicU32 as *const u8);
    }

    /// Starts loading the lines the install of `hash` reads first (its fence bucket
    /// and the first entry of its chain, random in a large region), so that at
    /// COMMIT, under the partition lock, they are in cache.
    pub(super) fn prefetch_install(&self, hash: u64) {
        prefetch(self.fence_of(hash) as *const u8);
        // Unlocked, so possibly stale: only a hint, and checked to lie in the pool.
        let first = self.bucket_head(self.bucket_of(hash)).load(Ordering::Relaxed);
        if first < self.geo.blocks {
            prefetch(self.head(first) as *const u8);
        }
    }

    /// Frees an entry that will not be installed (its transaction aborted).
    pub fn discard(&self, p: Prepared) {
        self.settle(p);
        self.free_entry(p.block);
    }

    /// Moves the shared clock to `now` if it is 100 ms or more behind, or not set
    /// yet (0): the region starts with a clock of 0, which today's wrapping
    /// milliseconds can be more than 2^31 past, and a test of `behind >= 100` alone
    /// then never moved it (hits stamped entries with a time days off).
    pub fn advance_clock(&self, now: i64) {
        let clock = &self.hdr().clock;
        let current = clock.load(Ordering::Relaxed);
        if current == 0 || ms(now).wrapping_sub(current) as i32 >= 100 {
            clock.store(ms(now), Ordering::Relaxed);
            self.hdr().minute.store(super::policy::minute_of(now), Ordering::Relaxed);
        }
    }

    /// Takes a prepared entry out of its slot's `pending_bytes`, once.
    pub(super) fn settle(&self, p: Prepared) {
        // SAFETY: the entry is ours until installed or freed; nobody else reads its flags.
        unsafe {
            let h = self.head(p.block);
            if (*h).flags & PENDING != 0 {
                (*h).flags &= !PENDING;
                let bytes = (*h).blocks() as usize * BLOCK_SIZE;
                self.slot((*h).slot).list.pending_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
            }
        }
    }

    /// Opens a commit to cache `r` at commit time `now`: takes its commit lock.
    pub fn commit(&self, r: SlotRef, now: i64) -> CacheCommit<'_, 'a, L> {
        self.locks.lock_cache(r.index, Mode::Exclusive);
        self.slot(r.index).commit_seq.fetch_add(1, Ordering::AcqRel);
        CacheCommit { store: self, r, now: std::cell::Cell::new(now), shadow: None }
    }

    /// Opens a commit of a single set or delete to cache `r`: takes its commit lock
    /// shared.
    pub fn commit_one(&self, r: SlotRef, now: i64) -> KeyCommit<'_, 'a, L> {
        self.locks.lock_cache(r.index, Mode::Shared);
        self.slot(r.index).list.key_commits_begun.fetch_add(1, Ordering::AcqRel);
        KeyCommit { store: self, r, now }
    }

    /// Cannot fail and allocates nothing: this is what runs at COMMIT. Commit lock held.
    /// Unless `cond` holds the entry is freed instead (see [`InstallIf`]); whether the
    /// entry was installed.
    ///
    /// The entry it replaces leaves the LRU list in the same slot lock hold that adds
    /// the new one, and both partition and slot lock are released before any block
    /// goes back to the allocator.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn install_locked(
        &self,
        reserve: Option<&Reserve>,
        r: SlotRef,
        p: Prepared,
        key: &[u8],
        size_limit: u64,
        now: i64,
        cond: InstallIf,
    ) -> bool {
        let s = self.slot(r.index);
        self.settle(p);
        self.advance_clock(now);
        let bucket = self.bucket_of(p.hash);
        let replaced;
        let installed = 'locked: {
            let _p = self.lock_bucket(bucket, Mode::Exclusive);
            if let InstallIf::Unchanged(seen, keep_expiry) = cond {
                match self.still_seen_locked(r, bucket, p.hash, key, seen) {
                    // Another write of the key committed after the read this one was
                    // made from: that write stands, as if it came after this one.
                    None => {
                        replaced = NIL;
                        break 'locked false;
                    }
                    // SAFETY: the prepared entry is ours until linked below.
                    Some(at) if keep_expiry => unsafe { (*self.head(p.block)).expires_at.store(at, Ordering::Relaxed) },
                    Some(_) => {}
                }
            }
            // Clears take the commit lock exclusively, so last_clear cannot move while
            // we hold it shared; same-key commits wait for this partition lock.
            let stale = matches!(cond, InstallIf::FreshSince(start)
                if self.fenced_locked(s, p.hash, start)
                    || self.fill_fenced_by_predicates(s, p, key, start)
                    || self.replica_fenced(s, key, start));
            // A stale fill still invalidates its key: whatever the transaction meant
            // to replace must not outlive it.
            let unlinked = self.unlink_key_locked(r, bucket, p.hash, key);
            replaced = unlinked.first;
            self.raise_key_fence_locked(s, p.hash, now);
            let _g = self.lock_list(s);
            self.retire_unlinked(s, replaced, now);
            let live = s.state.load(Ordering::Acquire) == SLOT_ACTIVE
                && s.incarnation.load(Ordering::Acquire) == r.incarnation;
            if stale {
                s.list.stale_sets.fetch_add(1, Ordering::Relaxed);
                false
            } else if live {
                let gen = s.gen.load(Ordering::Relaxed);
                self.link_locked(s, bucket, unlinked.insert_after, p.block, gen, 0, true, now);
                true
            } else {
                false
            }
        };
        self.free_unlinked(reserve, replaced);
        if !installed {
            self.keep_or_free(reserve, p.block);
            return false;
        }
        self.enforce_size_limit(r, size_limit, now);
        true
    }

    /// Links our prepared entry `block` into `bucket` after `after` (NIL: at the
    /// head), in generation `gen` with `marks` set in its flags: notes its expiry,
    /// admits it to its cache's order and counts it (its entries and bytes only when
    /// `counted`). Partition lock (exclusive) and list lock held. Its bytes.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn link_locked(&self, s: &CacheSlot, bucket: u32, after: u32, block: u32, gen: u32, marks: u8, counted: bool, now: i64) -> u64 {
        // SAFETY: the entry is ours, not yet reachable; the caller holds the partition
        // lock and the list lock.
        unsafe {
            let h = self.head(block);
            let expires_at = (*h).expires_at.load(Ordering::Relaxed);
            if expires_at != NO_EXPIRY {
                self.note_expiry_locked(bucket, expires_at);
            }
            (*h).gen = gen;
            (*h).flags |= marks;
            (*h).installed_at = now;
            if now > s.list.latest_installed.load(Ordering::Relaxed) {
                s.list.latest_installed.store(now, Ordering::Release);
            }
            self.admit(s, block, now);
            let bytes = (*h).blocks() as u64 * BLOCK_SIZE as u64;
            if counted {
                s.list.entries.fetch_add(1, Ordering::Relaxed);
                s.list.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            s.list.sets.fetch_add(1, Ordering::Relaxed);
            self.chain_insert_after(bucket, after, block);
            bytes
        }
    }
}
