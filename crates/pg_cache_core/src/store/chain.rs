//! Bucket chains of the hash index: linking, unlinking and reaping entries.

use std::sync::atomic::Ordering;

use super::*;

/// What a walk of a chain does with the entry it was shown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Keep it and go on.
    Next,
    /// Keep it and stop.
    Stop,
    /// Unlink it (exclusive partition lock only) and go on.
    Unlink,
    /// Unlink it (exclusive partition lock only) and stop.
    UnlinkAndStop,
}

/// What a walk unlinked.
pub(super) struct Unlinked {
    /// The unlinked entries, chained through `chain_next` (NIL for none). They stay
    /// allocated: the caller takes them off their lists (`retire_unlinked`) and frees
    /// them (`free_unlinked`), with the partition lock released if it likes.
    pub(super) first: u32,
    /// Where a new entry of the key walked for goes (see `chain_insert_after`): in the
    /// place of the first entry unlinked, else after the last entry kept.
    pub(super) insert_after: u32,
}

impl<'a, L: Locks> Store<'a, L> {
    /// The one walk of a bucket chain: shows `visit` each entry in chain order and
    /// does what it answers. The caller holds the bucket's partition lock: shared
    /// when `visit` only ever answers `Next` or `Stop` (the walk then writes
    /// nothing), exclusive otherwise.
    #[inline]
    pub(super) fn walk_chain(&self, bucket: u32, mut visit: impl FnMut(u32, &EntryHead) -> Step) -> Unlinked {
        let mut out = Unlinked { first: NIL, insert_after: NIL };
        let mut first_unlinked_after = None;
        let mut prev = NIL;
        // The chain does not change while the partition lock is held.
        let mut e = self.bucket_head(bucket).load(Ordering::Relaxed);
        while e != NIL {
            // SAFETY: entries on a chain are allocated while the partition lock is held.
            let h = unsafe { &*self.head(e) };
            let next = h.chain_next;
            let step = visit(e, h);
            if matches!(step, Step::Unlink | Step::UnlinkAndStop) {
                self.chain_unlink(bucket, prev, e);
                // SAFETY: unlinked under the exclusive partition lock, so the entry is
                // ours to relink into the list of unlinked entries.
                unsafe { (*self.head(e)).chain_next = out.first };
                out.first = e;
                first_unlinked_after.get_or_insert(prev);
            } else {
                prev = e;
            }
            if matches!(step, Step::Stop | Step::UnlinkAndStop) {
                break;
            }
            e = next;
        }
        out.insert_after = first_unlinked_after.unwrap_or(prev);
        out
    }

    /// Unlinks a popped entry from its bucket and frees it, unless someone holding the
    /// partition lock already did (the serial tells a reused block apart).
    pub(super) fn reap(&self, v: Victim) {
        let bucket = self.bucket_of(v.hash as u64);
        let unlinked = {
            let _p = self.lock_bucket(bucket, Mode::Exclusive);
            self.walk_chain(bucket, |e, h| {
                if e == v.block && h.serial == v.serial { Step::UnlinkAndStop } else { Step::Next }
            })
        };
        self.free_unlinked(None, unlinked.first);
    }

    /// Links `e` into `bucket`'s chain after `prev` (NIL: at the head); exclusive
    /// partition lock held. New keys go to the end of their chain, so a chain is
    /// ordered by when each key first came: entries that have stayed long, which a
    /// cache keeps because they are read, are found before the ones churning behind
    /// them, and a lookup passes fewer entries of other keys (a cache miss each).
    pub(super) fn chain_insert_after(&self, bucket: u32, prev: u32, e: u32) {
        // SAFETY: exclusive partition lock held by the caller; e is ours, prev on the chain.
        unsafe {
            if prev == NIL {
                (*self.head(e)).chain_next = self.bucket_head(bucket).load(Ordering::Relaxed);
                self.bucket_head(bucket).store(e, Ordering::Relaxed);
            } else {
                (*self.head(e)).chain_next = (*self.head(prev)).chain_next;
                (*self.head(prev)).chain_next = e;
            }
        }
    }

    fn chain_unlink(&self, bucket: u32, prev: u32, e: u32) {
        // SAFETY: exclusive partition lock held by the caller.
        unsafe {
            let next = (*self.head(e)).chain_next;
            if prev == NIL {
                self.bucket_head(bucket).store(next, Ordering::Relaxed);
            } else {
                (*self.head(prev)).chain_next = next;
            }
        }
    }

    /// Unlinks every entry of (slot, key) from its bucket; exclusive partition lock
    /// held. See [`Unlinked`] for what the caller does with them.
    pub(super) fn unlink_key_locked(&self, r: SlotRef, bucket: u32, hash: u64, key: &[u8]) -> Unlinked {
        self.walk_chain(bucket, |e, h| {
            if self.is_entry_of(e, h, r, hash, key) { Step::Unlink } else { Step::Next }
        })
    }

    /// Whether entry `e` (head `h`) is stored under `key` (with `hash`) in slot `r`.
    #[inline]
    pub(super) fn is_entry_of(&self, e: u32, h: &EntryHead, r: SlotRef, hash: u64, key: &[u8]) -> bool {
        h.hash == hash as u32 && h.slot == r.index && h.key_len as usize == key.len() && self.key_equals(e, key)
    }

    /// Frees the entries of an [`Unlinked`] list, or keeps one in `reserve`.
    pub(super) fn free_unlinked(&self, reserve: Option<&Reserve>, mut e: u32) {
        while e != NIL {
            // SAFETY: nobody else can reach an unlinked, retired entry.
            let next = unsafe { (*self.head(e)).chain_next };
            self.keep_or_free(reserve, e);
            e = next;
        }
    }
}
