//! Big commits that readers do not wait for.
//!
//! A [`CacheCommit`] applies its writes with the cache's commit sequence odd, so a
//! lookup that overlaps it starts over and at last waits on the commit lock: a
//! reader of the cache waited 1.35 s while a 1M-key commit applied. A *shadowed*
//! commit (for commits of many writes) instead links its entries in beside the
//! ones they replace, marked so that lookups keep seeing the old state:
//!
//! * a new entry is [`UNPUBLISHED`]: visible only once the commit is published;
//! * an entry the commit replaces or deletes is [`RETIRING`]: visible only until;
//! * a clear is deferred: new entries get the generation the clear will set, so
//!   they are hidden until it is set, and the old ones after.
//!
//! Publishing is one store to the slot's `installing` flag (and the generation for a
//! clear) with the commit sequence odd around it, so a lookup sees all of the
//! commit or none of it and never waits for more than that. Then the commit settles
//! each key again (drops the retiring entries, clears the marks) before it releases
//! the commit lock, so marks never outlive their commit and no other commit of the
//! cache runs meanwhile. Readers pay nothing for this unless an entry is marked.

use std::cell::Cell;
use std::sync::atomic::Ordering;

use super::chain::Step;
use super::*;

/// The mark of an entry a shadowed commit linked in, not yet published.
pub(super) const UNPUBLISHED: u8 = 0x40;
/// The mark of an entry a shadowed commit replaces or deletes.
pub(super) const RETIRING: u8 = 0x20;
/// The bits of [`EntryHead::flags`] that are not the value's kind.
pub(super) const MARKS: u8 = PENDING | UNPUBLISHED | RETIRING;

/// What a shadowed commit has done so far that publishing settles.
#[derive(Default)]
pub(super) struct ShadowState {
    /// The commit clears the cache: new entries carry the next generation.
    pub(super) clearing: Cell<bool>,
    /// Entries and bytes installed in the next generation (the cache's counts once
    /// the deferred clear is published).
    pub(super) new_entries: Cell<u64>,
    pub(super) new_bytes: Cell<u64>,
    pub(super) published: Cell<bool>,
    /// The smallest size limit an install asked for: enforced once, at the end.
    pub(super) size_limit: Cell<u64>,
}

impl EntryHead {
    /// Whether a lookup sees this entry now, given its marks and whether its cache
    /// has a shadowed commit not yet published.
    #[inline]
    pub(super) fn is_published(&self, installing: impl FnOnce() -> bool) -> bool {
        match self.flags & (UNPUBLISHED | RETIRING) {
            0 => true,
            UNPUBLISHED => !installing(),
            _ => installing(),
        }
    }
}

impl<'a, L: Locks> Store<'a, L> {
    /// Opens a commit of many writes to cache `r`: takes its commit lock exclusively
    /// but leaves lookups running (see the module's comment).
    pub fn commit_shadowed(&self, r: SlotRef, now: i64) -> CacheCommit<'_, 'a, L> {
        self.locks.lock_cache(r.index, Mode::Exclusive);
        self.slot(r.index).installing.store(1, Ordering::Release);
        let shadow = ShadowState { size_limit: Cell::new(u64::MAX), ..ShadowState::default() };
        CacheCommit { store: self, r, now: std::cell::Cell::new(now), shadow: Some(shadow) }
    }

    /// Links prepared entry `p` for `key` beside the entries it replaces, which it
    /// marks retiring; fences older fills of the key. `gen` is the generation the
    /// entry will be visible in. Commit lock held exclusively (shadowed commit).
    pub(super) fn install_shadowed_locked(&self, r: SlotRef, p: Prepared, key: &[u8], gen: u32, clearing: bool, now: i64) -> Option<u64> {
        let s = self.slot(r.index);
        self.settle(p);
        self.advance_clock(now);
        let bucket = self.bucket_of(p.hash);
        let _p = self.lock_bucket(bucket, Mode::Exclusive);
        let (_, last) = self.mark_retiring_locked(r, bucket, p.hash, key, now);
        self.raise_key_fence_locked(s, p.hash, now);
        let _g = self.lock_list(s);
        if s.state.load(Ordering::Acquire) != SLOT_ACTIVE || s.incarnation.load(Ordering::Acquire) != r.incarnation {
            return None;
        }
        // At the end of its chain: lookups meet it after the entry it replaces. In
        // a clear, the cache's counts are set when the commit is published.
        Some(self.link_locked(s, bucket, last, p.block, gen, UNPUBLISHED, !clearing, now))
    }

    /// Marks the visible entries of (slot, key) retiring and raises the key's fence:
    /// the shadowed form of a key invalidation. Whether a visible entry was there.
    pub(super) fn retire_key_shadowed(&self, r: SlotRef, key: &[u8], hash: u64, now: i64) -> bool {
        let s = self.slot(r.index);
        let bucket = self.bucket_of(hash);
        let _p = self.lock_bucket(bucket, Mode::Exclusive);
        self.raise_key_fence_locked(s, hash, now);
        self.mark_retiring_locked(r, bucket, hash, key, now).0
    }

    /// Marks every unmarked live entry of (slot, key) retiring; partition lock held
    /// exclusively. Whether one of them was visible (current generation, unexpired),
    /// and the chain's last entry (NIL: empty).
    fn mark_retiring_locked(&self, r: SlotRef, bucket: u32, hash: u64, key: &[u8], now: i64) -> (bool, u32) {
        let s = self.slot(r.index);
        let mut visible = false;
        let mut last = NIL;
        self.walk_chain(bucket, |e, h| {
            last = e;
            if self.is_entry_of(e, h, r, hash, key) && h.state.load(Ordering::Acquire) == ENTRY_LIVE && h.flags & MARKS == 0 {
                visible |= h.gen == s.gen.load(Ordering::Relaxed) && !self.is_expired(e, now);
                // SAFETY: exclusive partition lock held: no reader is on this chain.
                unsafe { (*self.head(e)).flags |= RETIRING };
            }
            Step::Next
        });
        (visible, last)
    }

    /// Publishes a shadowed commit: its entries and deletes become visible at once,
    /// and its clear with them. Allocates nothing and cannot fail.
    pub(super) fn publish_shadowed(&self, r: SlotRef, st: &ShadowState, now: i64) {
        let s = self.slot(r.index);
        s.commit_seq.fetch_add(1, Ordering::AcqRel);
        if st.clearing.get() {
            let _g = self.lock_list(s);
            s.gen.fetch_add(1, Ordering::Release);
            s.list.entries.store(st.new_entries.get(), Ordering::Relaxed);
            s.list.bytes.store(st.new_bytes.get(), Ordering::Relaxed);
            s.last_clear.fetch_max(now, Ordering::Release);
            s.prefix_count.store(0, Ordering::Release);
            s.prefix_resets.fetch_add(1, Ordering::Release);
            self.hdr().hidden.fetch_add(1, Ordering::Release);
        }
        s.installing.store(0, Ordering::Release);
        s.commit_seq.fetch_add(1, Ordering::Release);
        st.published.set(true);
    }

    /// After publishing: drops the retiring entries of (slot, key) and unmarks its
    /// new one. Allocates nothing and cannot fail.
    pub(super) fn settle_key_shadowed(&self, r: SlotRef, key: &[u8], hash: u64, now: i64) {
        let s = self.slot(r.index);
        let bucket = self.bucket_of(hash);
        let unlinked = {
            let _p = self.lock_bucket(bucket, Mode::Exclusive);
            let unlinked = self.walk_chain(bucket, |e, h| {
                if !self.is_entry_of(e, h, r, hash, key) {
                    return Step::Next;
                }
                if h.flags & RETIRING != 0 {
                    return Step::Unlink;
                }
                // SAFETY: exclusive partition lock held: no reader is on this chain.
                unsafe { (*self.head(e)).flags &= !UNPUBLISHED };
                Step::Next
            });
            let _g = self.lock_list(s);
            self.retire_unlinked(s, unlinked.first, now);
            unlinked
        };
        self.free_unlinked(None, unlinked.first);
    }
}
