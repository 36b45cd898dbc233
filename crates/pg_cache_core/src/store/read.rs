//! The read path: a lookup under one shared partition lock, which starts over when a
//! commit of several writes overlapped it.

use std::sync::atomic::Ordering;

use super::chain::Step;
use super::*;
use crate::value::ValueKind;

pub(super) const OPTIMISTIC_LOOKUPS: usize = 2;

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    Hit(T),
    Miss,
    /// Present but past its TTL: a miss; the caller may reclaim it with `remove_expired`.
    Expired,
    /// Present, but holding a value of another kind than asked for (`None`: a kind
    /// this build does not know).
    OtherKind(Option<ValueKind>),
}

impl<'a, L: Locks> Store<'a, L> {
    /// Looks (slot, key) up under a shared partition lock; on a hit of a value of
    /// `kind` marks the entry used and returns `read(value_len, copy)` where `copy`
    /// fills a buffer of `value_len` bytes. `now` is called only for entries with a TTL.
    ///
    /// A lookup never sees half of a commit: it takes no commit lock but checks the
    /// cache's commit sequence before and after, and starts over (at last under the
    /// commit lock, shared) when an exclusive commit overlapped it. So readers write
    /// no shared cache line but their partition lock's.
    pub fn lookup<T>(
        &self,
        r: SlotRef,
        key: &[u8],
        hash: u64,
        kind: ValueKind,
        now: impl Fn() -> i64,
        mut read: impl FnMut(usize, &dyn Fn(&mut [u8])) -> T,
    ) -> Lookup<T> {
        let s = self.slot(r.index);
        for _ in 0..OPTIMISTIC_LOOKUPS {
            let seq = s.commit_seq.load(Ordering::Acquire);
            if seq % 2 == 0 {
                let found = self.lookup_once(r, key, hash, kind, &now, &mut read);
                // If this lookup saw a write of a commit, it took the partition lock
                // after that commit released it, so it sees the commit's first bump.
                if s.commit_seq.load(Ordering::Acquire) == seq {
                    return found;
                }
            }
            std::hint::spin_loop();
        }
        self.locks.lock_cache(r.index, Mode::Shared);
        let _c = CacheReadGuard { locks: self.locks, slot: r.index };
        self.lookup_once(r, key, hash, kind, &now, &mut read)
    }

    pub(super) fn lookup_once<T>(
        &self,
        r: SlotRef,
        key: &[u8],
        hash: u64,
        kind: ValueKind,
        now: &impl Fn() -> i64,
        read: &mut impl FnMut(usize, &dyn Fn(&mut [u8])) -> T,
    ) -> Lookup<T> {
        let s = self.slot(r.index);
        let bucket = self.bucket_of(hash);
        let _p = self.lock_bucket(bucket, Mode::Shared);
        let mut found = Lookup::Miss;
        // Answers only Next and Stop: the walk writes nothing under the shared lock.
        self.walk_chain(bucket, |e, h| {
            if !self.is_entry_of(e, h, r, hash, key) || h.state.load(Ordering::Acquire) != ENTRY_LIVE {
                return Step::Next;
            }
            // An entry a shadowed commit marked, on the side of it that is not
            // visible yet (or any more); or one hidden by a clear: look further,
            // for the entry of the key that is visible.
            if !h.is_published(|| s.installing.load(Ordering::Acquire) != 0) || h.gen != s.gen.load(Ordering::Acquire) {
                return Step::Next;
            }
            found = if !self.is_valid(r) {
                Lookup::Miss
            } else if h.expires_at != NO_EXPIRY && now() >= h.expires_at {
                Lookup::Expired
            } else if h.kind() != Some(kind) {
                Lookup::OtherKind(h.kind())
            } else {
                self.touch(s, e);
                let copy = |out: &mut [u8]| self.copy_value(e, out);
                Lookup::Hit(read(h.value_len as usize, &copy))
            };
            Step::Stop
        });
        found
    }

    /// Reclaims (slot, key) if it is past its TTL; counts an expiration.
    pub fn remove_expired(&self, r: SlotRef, key: &[u8], hash: u64, now: i64) {
        let bucket = self.bucket_of(hash);
        let s = self.slot(r.index);
        let unlinked = {
            let _p = self.lock_bucket(bucket, Mode::Exclusive);
            self.walk_chain(bucket, |e, h| {
                if !self.is_entry_of(e, h, r, hash, key) || !self.is_expired(e, now) {
                    return Step::Next;
                }
                let _g = self.lock_list(s);
                if h.state.load(Ordering::Acquire) == ENTRY_LIVE {
                    if h.gen == s.gen.load(Ordering::Relaxed) {
                        s.list.expirations.fetch_add(1, Ordering::Relaxed);
                    }
                    self.retire(s, e);
                }
                Step::UnlinkAndStop
            })
        };
        self.free_unlinked(None, unlinked.first);
    }
}
