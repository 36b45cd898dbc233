//! The read path: a lookup under one shared partition lock, which starts over when a
//! commit of several writes overlapped it.

use std::sync::atomic::Ordering;

use super::chain::Step;
use super::*;
use crate::value::ValueKind;

pub(super) const OPTIMISTIC_LOOKUPS: usize = 2;

/// Which entry a read saw of a key, so that a write made from it applies at commit
/// only if the key still holds that entry (see `KeyCommit::install_if_unchanged`).
/// The serial tells a reused block apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// No visible entry.
    Absent,
    /// This entry. `expired`: it was past its TTL, a miss, so the key having no entry
    /// at all later is the same state.
    Entry { block: u32, serial: u32, expired: bool },
}

/// What [`Store::observe`] found: the lookup, which entry it saw and when that entry
/// expires ([`NO_EXPIRY`] when never or when there is none).
#[derive(Debug, PartialEq, Eq)]
pub struct Observed<T> {
    pub found: Lookup<T>,
    pub seen: Seen,
    pub expires_at: i64,
    /// The tags of the entry seen (a write computed from it carries them on); empty
    /// for [`Store::lookup`] and its kin, which do not read them.
    pub tags: Tags,
}

/// What one lookup found, before [`Store::observe`] adds the entry's tags.
pub(super) struct Found<T> {
    pub(super) found: Lookup<T>,
    seen: Seen,
    expires_at: i64,
}

/// The tags of an entry (hashes), as [`Store::observe`] read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tags {
    n: u8,
    hashes: [u64; MAX_TAGS],
}

impl Tags {
    pub fn as_slice(&self) -> &[u64] {
        &self.hashes[..self.n as usize]
    }
}

/// What a read may see: entries installed before `installed_before` ([`LATEST`]:
/// any), and none carrying one of `hidden_tags` (tags the reading transaction has
/// invalidated itself, not yet committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View<'a> {
    pub installed_before: i64,
    pub hidden_tags: &'a [u64],
}

impl View<'static> {
    /// The latest committed entries.
    pub const LATEST: View<'static> = View { installed_before: LATEST, hidden_tags: &[] };

    /// Entries installed before `t` (a snapshot read, see [`Store::lookup_as_of`]).
    pub fn as_of(t: i64) -> View<'static> {
        View { installed_before: t, hidden_tags: &[] }
    }
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    Hit(T),
    Miss,
    /// Present but past its TTL, or covered by a tag or prefix invalidation: a miss;
    /// the caller may reclaim it with `remove_expired`.
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
        read: impl FnMut(usize, &dyn Fn(&mut [u8])) -> T,
    ) -> Lookup<T> {
        self.lookup_as_of(r, key, hash, kind, View::LATEST, now, read)
    }

    /// [`Store::lookup`] as `view` sees the cache. For a snapshot read an entry
    /// installed at or after `view.installed_before` (the reading transaction's
    /// start) is a miss, as a row committed after a REPEATABLE READ snapshot is
    /// invisible to it.
    #[allow(clippy::too_many_arguments)]
    pub fn lookup_as_of<T>(
        &self,
        r: SlotRef,
        key: &[u8],
        hash: u64,
        kind: ValueKind,
        view: View,
        now: impl Fn() -> i64,
        read: impl FnMut(usize, &dyn Fn(&mut [u8])) -> T,
    ) -> Lookup<T> {
        self.lookup_seen::<true, T>(r, key, hash, kind, view, now, read).found
    }

    /// [`Store::lookup`], and which entry it saw: for a write that must apply only if
    /// the key still holds that entry when it commits.
    #[allow(clippy::too_many_arguments)]
    pub fn observe<T>(
        &self,
        r: SlotRef,
        key: &[u8],
        hash: u64,
        kind: ValueKind,
        view: View,
        now: impl Fn() -> i64,
        read: impl FnMut(usize, &dyn Fn(&mut [u8])) -> T,
    ) -> Observed<T> {
        let f = self.lookup_seen::<true, T>(r, key, hash, kind, view, now, read);
        let mut o = Observed { found: f.found, seen: f.seen, expires_at: f.expires_at, tags: Tags::default() };
        // Read again under the partition lock: the entry may have gone meanwhile,
        // and then the write made from it will not install (it is not the one seen).
        if let Seen::Entry { block, serial, .. } = o.seen {
            let _p = self.lock_bucket(self.bucket_of(hash), Mode::Shared);
            // SAFETY: any block is allocated memory; its head is read under the
            // partition lock of the key, and used only if it is still the entry seen.
            let h = unsafe { &*self.head(block) };
            if h.serial == serial && h.state.load(Ordering::Acquire) == ENTRY_LIVE && h.tags != 0 {
                let n = self.tags_of(block, h, &mut o.tags.hashes);
                o.tags.n = n as u8;
            }
        }
        o
    }

    /// Looks up each of `keys` (stored key and hash) as [`Store::lookup`] does and
    /// pushes what it found to `out`, in order, all as of one moment: no commit to
    /// the cache lands between the first lookup and the last. `read(i, len, copy)`
    /// reads the value of `keys[i]`; it may run more than once for a key (a pass
    /// that overlapped a commit is thrown away and `out` cleared).
    ///
    /// Optimistic first, like a single lookup: commits of several writes are seen by
    /// the cache's commit sequence, commits of one key by its count of such commits
    /// begun and ended. After two overlapped passes it takes the commit lock
    /// exclusively for one pass (as a commit would: briefly, the keys of one call).
    /// `view` as for [`Store::lookup_as_of`].
    #[allow(clippy::too_many_arguments)]
    pub fn lookup_many<T>(
        &self,
        r: SlotRef,
        keys: &[(&[u8], u64)],
        kind: ValueKind,
        view: View,
        now: impl Fn() -> i64,
        mut read: impl FnMut(usize, usize, &dyn Fn(&mut [u8])) -> T,
        out: &mut Vec<Lookup<T>>,
    ) {
        let s = self.slot(r.index);
        let mut pass = |out: &mut Vec<Lookup<T>>| {
            out.clear();
            for (i, &(key, hash)) in keys.iter().enumerate() {
                let found = self.lookup_once::<true, T>(r, key, hash, kind, view, &now, &mut |len, copy| read(i, len, copy)).found;
                out.push(found);
            }
        };
        for _ in 0..OPTIMISTIC_LOOKUPS {
            let seq = s.commit_seq.load(Ordering::Acquire);
            // Ended before begun: a commit counted in `begun` but not in `ended`
            // between the two loads is still in flight.
            let ended = s.list.key_commits_ended.load(Ordering::Acquire);
            let begun = s.list.key_commits_begun.load(Ordering::Acquire);
            if seq.is_multiple_of(2) && begun == ended {
                pass(out);
                if s.commit_seq.load(Ordering::Acquire) == seq && s.list.key_commits_begun.load(Ordering::Acquire) == begun {
                    return;
                }
            }
            std::hint::spin_loop();
        }
        self.locks.lock_cache(r.index, Mode::Exclusive);
        let _c = CacheReadGuard { locks: self.locks, slot: r.index };
        pass(out);
    }

    /// Whether the key holds a live value of any kind: no copy, no hit counted by the
    /// caller, and the entry is not marked used (a probe must not keep it from
    /// eviction).
    /// `view` as for [`Store::lookup_as_of`].
    pub fn contains(&self, r: SlotRef, key: &[u8], hash: u64, view: View, now: impl Fn() -> i64) -> bool {
        // ValueKind::Jsonb only to have one: a value of another kind answers OtherKind.
        let found = self.lookup_seen::<false, ()>(r, key, hash, ValueKind::Jsonb, view, now, |_, _| ()).found;
        matches!(found, Lookup::Hit(()) | Lookup::OtherKind(_))
    }

    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn lookup_seen<const TOUCH: bool, T>(
        &self,
        r: SlotRef,
        key: &[u8],
        hash: u64,
        kind: ValueKind,
        view: View,
        now: impl Fn() -> i64,
        mut read: impl FnMut(usize, &dyn Fn(&mut [u8])) -> T,
    ) -> Found<T> {
        let s = self.slot(r.index);
        for _ in 0..OPTIMISTIC_LOOKUPS {
            let seq = s.commit_seq.load(Ordering::Acquire);
            if seq.is_multiple_of(2) {
                let found = self.lookup_once::<TOUCH, T>(r, key, hash, kind, view, &now, &mut read);
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
        self.lookup_once::<TOUCH, T>(r, key, hash, kind, view, &now, &mut read)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn lookup_once<const TOUCH: bool, T>(
        &self,
        r: SlotRef,
        key: &[u8],
        hash: u64,
        kind: ValueKind,
        view: View,
        now: &impl Fn() -> i64,
        read: &mut impl FnMut(usize, &dyn Fn(&mut [u8])) -> T,
    ) -> Found<T> {
        let s = self.slot(r.index);
        let bucket = self.bucket_of(hash);
        let _p = self.lock_bucket(bucket, Mode::Shared);
        let mut found = Lookup::Miss;
        let mut seen = Seen::Absent;
        let mut expires_at = NO_EXPIRY;
        // Answers only Next and Stop: the walk writes nothing under the shared lock.
        self.walk_chain(bucket, |e, h| {
            if !self.is_entry_of(e, h, r, hash, key) || h.state.load(Ordering::Acquire) != ENTRY_LIVE {
                return Step::Next;
            }
            // An entry a shadowed commit marked, on the side of it that is not
            // visible yet (or any more); or one hidden by a clear: look further,
            // for the entry of the key that is visible.
            if !self.is_visible(s, h) {
                return Step::Next;
            }
            if h.installed_at >= view.installed_before {
                // Newer than the reading transaction: for it, the key holds nothing.
                return Step::Stop;
            }
            expires_at = h.expires_at.load(Ordering::Relaxed);
            found = if !self.is_valid(r) {
                Lookup::Miss
            } else if (expires_at != NO_EXPIRY && now() >= expires_at) || self.is_invalidated(s, e, h, key, view.hidden_tags) {
                seen = Seen::Entry { block: e, serial: h.serial, expired: true };
                Lookup::Expired
            } else if h.kind() != Some(kind) {
                seen = Seen::Entry { block: e, serial: h.serial, expired: false };
                Lookup::OtherKind(h.kind())
            } else {
                seen = Seen::Entry { block: e, serial: h.serial, expired: false };
                if TOUCH {
                    self.touch(s, e);
                }
                let copy = |out: &mut [u8]| self.copy_value(e, out);
                Lookup::Hit(read(h.value_len as usize, &copy))
            };
            Step::Stop
        });
        Found { found, seen, expires_at }
    }

    /// Whether a live entry of slot `s` (head `h`) is the one lookups see: not on the
    /// hidden side of a shadowed commit, not hidden by a clear. Partition lock held.
    #[inline]
    pub(super) fn is_visible(&self, s: &CacheSlot, h: &EntryHead) -> bool {
        // An entry a shadowed commit marked, on the side of it that is not visible
        // yet (or any more); or one hidden by a clear: look further, for the entry
        // of the key that is visible.
        h.is_published(|| s.installing.load(Ordering::Acquire) != 0) && h.gen == s.gen.load(Ordering::Acquire)
    }

    /// Whether the key still holds what `seen` saw (the same entry, or for one seen
    /// expired, no entry either): then `Some` of that entry's expiry as it is now
    /// (a touch may have moved it; [`NO_EXPIRY`] for no entry). Partition lock held;
    /// the caller holds the cache's commit lock, so no commit of it is half done.
    pub(super) fn still_seen_locked(&self, r: SlotRef, bucket: u32, hash: u64, key: &[u8], seen: Seen) -> Option<i64> {
        let now = self.visible_entry_locked(r, bucket, hash, key);
        // SAFETY: a linked entry, kept so by the partition lock held.
        let head = now.map(|e| unsafe { &*self.head(e) });
        let same = match (seen, head) {
            (Seen::Absent, None) | (Seen::Entry { expired: true, .. }, None) => true,
            (Seen::Entry { block, serial, .. }, Some(h)) => now == Some(block) && h.serial == serial,
            _ => false,
        };
        same.then(|| head.map_or(NO_EXPIRY, |h| h.expires_at.load(Ordering::Relaxed)))
    }

    /// The live entry of (slot, key) that lookups see, if any: not one a committed
    /// tag or prefix invalidation covers, which is as good as deleted (a write
    /// computed from a read of it must not install). Partition lock held.
    pub(super) fn visible_entry_locked(&self, r: SlotRef, bucket: u32, hash: u64, key: &[u8]) -> Option<u32> {
        let s = self.slot(r.index);
        let mut found = None;
        self.walk_chain(bucket, |e, h| {
            if !self.is_entry_of(e, h, r, hash, key) || h.state.load(Ordering::Acquire) != ENTRY_LIVE || !self.is_visible(s, h) {
                return Step::Next;
            }
            if !self.is_invalidated(s, e, h, key, &[]) {
                found = Some(e);
            }
            Step::Stop
        });
        found
    }

    /// Reclaims (slot, key) if it is past its TTL (counted as an expiration) or
    /// covered by a committed tag or prefix invalidation.
    pub fn remove_expired(&self, r: SlotRef, key: &[u8], hash: u64, now: i64) {
        let bucket = self.bucket_of(hash);
        let s = self.slot(r.index);
        let unlinked = {
            let _p = self.lock_bucket(bucket, Mode::Exclusive);
            self.walk_chain(bucket, |e, h| {
                if !self.is_entry_of(e, h, r, hash, key) {
                    return Step::Next;
                }
                let expired = self.is_expired(e, now);
                let invalidated = h.state.load(Ordering::Acquire) == ENTRY_LIVE && self.is_invalidated(s, e, h, key, &[]);
                if !expired && !invalidated {
                    return Step::Next;
                }
                let _g = self.lock_list(s);
                if h.state.load(Ordering::Acquire) == ENTRY_LIVE {
                    if expired && h.gen == s.gen.load(Ordering::Relaxed) {
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
