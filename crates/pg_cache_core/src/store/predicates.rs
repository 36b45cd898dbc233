//! Invalidations by predicate: tags and key prefixes. Neither walks the cache at
//! commit. Each is a time stamped on what it covers, compared with an entry's
//! install time on read (an entry installed before a covering invalidation is a
//! miss) and with a fill's transaction start at commit (a fill that started at or
//! before a covering invalidation is stale), exactly as key fences are.
//!
//! * **Tags.** An entry carries up to [`MAX_TAGS`] tag hashes after its value. The
//!   tag table remembers, per (cache, tag), when the tag was last invalidated: sets
//!   of four ways, read without a lock, written under the partition lock of the
//!   set. A full set forgets its oldest way into that cache's tag floor, which then
//!   covers every tagged entry and tagged fill of the cache: forgetting only ever
//!   drops more.
//! * **Prefixes.** A cache holds up to [`MAX_PREFIXES`] live prefix invalidations
//!   (the first [`PREFIX_BYTES`] bytes of the stored prefix and a time), written
//!   under its commit lock held exclusively, so a lookup sees all of a commit's or
//!   none (the commit sequence). The next one folds them all into a clear of the
//!   cache; any clear retires them, as it covers everything they do. The worker
//!   retires them too ([`Store::retire_prefixes`]): it frees the entries they
//!   cover, then folds their times into the cache's key floor (which fences every
//!   older fill, as they did for some) and forgets them.
//!
//! Both are compared strictly: an entry installed by the same commit as a covering
//! invalidation was written after it (the transaction's own earlier writes are not
//! in its plan), so it stays.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use super::chain::Step;
use super::*;
use crate::invalidation::Invalidation;

/// Most tags one entry carries.
pub const MAX_TAGS: usize = 8;
/// Live prefix invalidations a cache holds before the next folds them into a clear.
/// Four: each costs every cache slot 64 bytes of shared memory whether used or not
/// (a slot is about 850 bytes without them).
pub const MAX_PREFIXES: usize = 4;
/// Bytes of a stored prefix a cache remembers: a longer prefix is remembered by
/// its first 48 bytes, which cover more keys (drop more, never less).
pub const PREFIX_BYTES: usize = 48;
const WORDS: usize = PREFIX_BYTES / 8;

/// A hash of a tag, the same in every cache (the table mixes in the cache).
pub fn tag_hash(tag: &[u8]) -> u64 {
    crate::key::hash(u32::MAX, tag)
}

/// One remembered tag: `id` is (slot + 1) << 32 | high half of the mixed hash (0:
/// free), `at` its last invalidation.
#[repr(C)]
struct TagWay {
    id: AtomicU64,
    at: AtomicI64,
}

/// Four remembered tags on one cache line.
#[repr(C, align(64))]
pub struct TagSet {
    ways: [TagWay; 4],
}

const _: () = assert!(std::mem::size_of::<TagSet>() == 64);

/// One live prefix invalidation of a cache.
#[repr(C, align(64))]
pub struct PrefixFence {
    len: AtomicU32,
    at: AtomicI64,
    words: [AtomicU64; WORDS],
}

impl PrefixFence {
    fn bytes(&self) -> ([u8; PREFIX_BYTES], usize) {
        let mut out = [0u8; PREFIX_BYTES];
        for (i, w) in self.words.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        (out, self.len.load(Ordering::Relaxed) as usize)
    }

    fn covers(&self, key: &[u8]) -> bool {
        let (bytes, len) = self.bytes();
        key.len() >= len && key[..len] == bytes[..len]
    }
}

impl<'a, L: Locks> Store<'a, L> {
    /// The set and the way id of tag `tag` of slot `slot`.
    fn tag_way_of(&self, slot: u32, tag: u64) -> (u32, u64) {
        let h = tag ^ (slot as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let h = h ^ (h >> 29);
        ((h as u32) & (self.geo.tag_sets - 1), ((slot as u64 + 1) << 32) | (h >> 32))
    }

    /// When tag `tag` of cache `s` was last invalidated (or later: its cache's tag
    /// floor), [`NEVER`] if never. Takes no lock: a writer that reuses a way folds
    /// its time into the floor before, and stores the larger time, so a reader that
    /// races it still gets a time at least as late as the tag's.
    pub(super) fn tag_invalidated_at(&self, s: &CacheSlot, tag: u64) -> i64 {
        let (set, id) = self.tag_way_of(self.index_of(s), tag);
        let mut at = NEVER;
        for w in &self.tag_set(set).ways {
            if w.id.load(Ordering::Acquire) == id {
                at = at.max(w.at.load(Ordering::Acquire));
            }
        }
        at.max(s.list.tag_floor.load(Ordering::Acquire))
    }

    /// Records that tag `tag` of cache `s` was invalidated at `now`; the time it
    /// stored, which may be later (a way's time never moves back, and a reused way
    /// keeps the later of its two). Takes the partition lock of the tag's set; no
    /// partition lock held.
    pub(super) fn raise_tag(&self, s: &CacheSlot, tag: u64, now: i64) -> i64 {
        let (set, id) = self.tag_way_of(self.index_of(s), tag);
        let _p = self.lock_bucket(set, Mode::Exclusive);
        let ways = &self.tag_set(set).ways;
        let way = ways
            .iter()
            .find(|w| w.id.load(Ordering::Relaxed) == id)
            .or_else(|| ways.iter().find(|w| w.id.load(Ordering::Relaxed) == 0));
        let stored = if let Some(w) = way {
            let before = w.at.fetch_max(now, Ordering::AcqRel);
            w.id.store(id, Ordering::Release);
            before.max(now)
        } else {
            let w = ways.iter().min_by_key(|w| w.at.load(Ordering::Relaxed)).unwrap_or(&ways[0]);
            let old = w.at.load(Ordering::Relaxed);
            let owner = (w.id.load(Ordering::Relaxed) >> 32) as u32 - 1;
            if owner < self.geo.slots {
                self.slot(owner).list.tag_floor.fetch_max(old, Ordering::AcqRel);
            }
            w.at.store(now.max(old), Ordering::Release);
            w.id.store(id, Ordering::Release);
            now.max(old)
        };
        s.list.invalidated_at.fetch_max(now, Ordering::Relaxed);
        stored
    }

    /// The tags entry `e` carries (its head `h`), into `out`; how many.
    pub(super) fn tags_of(&self, e: u32, h: &EntryHead, out: &mut [u64; MAX_TAGS]) -> usize {
        let n = (h.tags as usize).min(MAX_TAGS);
        let mut bytes = [0u8; MAX_TAGS * 8];
        self.copy_payload(e, h.key_len as usize + h.value_len as usize, &mut bytes[..n * 8]);
        for (i, t) in out.iter_mut().take(n).enumerate() {
            *t = u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        }
        n
    }

    /// The latest prefix invalidation of cache `s` that covers the stored `key`,
    /// [`NEVER`] if none. Under the commit sequence (a lookup) or the commit lock.
    pub(super) fn prefix_invalidated_at(&self, s: &CacheSlot, key: &[u8]) -> i64 {
        let n = (s.prefix_count.load(Ordering::Acquire) as usize).min(MAX_PREFIXES);
        s.prefixes[..n].iter().filter(|p| p.covers(key)).map(|p| p.at.load(Ordering::Relaxed)).max().unwrap_or(NEVER)
    }

    /// Whether the live entry `e` (head `h`) of cache `s`, stored under `key`, is
    /// covered by a committed tag or prefix invalidation installed after it, or
    /// carries one of `hidden_tags` (the reading transaction's own invalidations).
    /// Costs nothing more than two tests for an untagged entry of a cache without
    /// prefix invalidations.
    #[inline]
    pub(super) fn is_invalidated(&self, s: &CacheSlot, e: u32, h: &EntryHead, key: &[u8], hidden_tags: &[u64]) -> bool {
        (h.tags != 0 && self.tags_invalidate(s, e, h, hidden_tags))
            || (s.prefix_count.load(Ordering::Relaxed) != 0 && self.prefix_invalidated_at(s, key) > h.installed_at)
    }

    #[cold]
    fn tags_invalidate(&self, s: &CacheSlot, e: u32, h: &EntryHead, hidden_tags: &[u64]) -> bool {
        let mut tags = [0u64; MAX_TAGS];
        let n = self.tags_of(e, h, &mut tags);
        tags[..n].iter().any(|&t| hidden_tags.contains(&t) || self.tag_invalidated_at(s, t) > h.installed_at)
    }

    /// Whether a fill of `key` carrying `tags` by a transaction that started at
    /// `start` is stale by a tag or prefix invalidation of cache `s` (key, cache and
    /// database fences are `fenced_locked`'s).
    pub(super) fn predicates_fence(&self, s: &CacheSlot, key: &[u8], tags: &[u64], start: i64) -> bool {
        tags.iter().any(|&t| self.tag_invalidated_at(s, t) >= start)
            || (s.prefix_count.load(Ordering::Acquire) != 0 && self.prefix_invalidated_at(s, key) >= start)
    }

    /// [`Store::predicates_fence`] for the prepared fill `p` of `key`.
    pub(super) fn fill_fenced_by_predicates(&self, s: &CacheSlot, p: Prepared, key: &[u8], start: i64) -> bool {
        let mut tags = [0u64; MAX_TAGS];
        let n = self.prepared_tags(p, &mut tags);
        self.predicates_fence(s, key, &tags[..n], start)
    }

    /// The tags of a prepared (not yet linked) entry.
    pub(super) fn prepared_tags(&self, p: Prepared, out: &mut [u64; MAX_TAGS]) -> usize {
        // SAFETY: the prepared entry is ours until installed or freed.
        let h = unsafe { &*self.head(p.block) };
        self.tags_of(p.block, h, out)
    }

    /// Records a prefix invalidation of cache `r` at `now`; with [`MAX_PREFIXES`]
    /// already live, clears the cache instead (which retires them all). The time
    /// the record covering it holds (later than `now` when one remembered already
    /// was). Commit lock held exclusively (the commit sequence is odd).
    pub(super) fn invalidate_prefix_locked(&self, r: SlotRef, prefix: &[u8], now: i64) -> i64 {
        let s = self.slot(r.index);
        if s.incarnation.load(Ordering::Acquire) != r.incarnation {
            return now;
        }
        let len = prefix.len().min(PREFIX_BYTES);
        if len == 0 {
            self.clear_locked(r, now);
            return now;
        }
        let n = s.prefix_count.load(Ordering::Relaxed) as usize;
        let mut stored = now;
        // One already remembered that covers this one needs only a later time.
        if let Some(p) = s.prefixes[..n.min(MAX_PREFIXES)].iter().find(|p| p.len.load(Ordering::Relaxed) as usize <= len && p.covers(prefix)) {
            stored = p.at.fetch_max(now, Ordering::Release).max(now);
        } else if n >= MAX_PREFIXES {
            self.clear_locked(r, now);
            return now;
        } else {
            let p = &s.prefixes[n];
            let mut bytes = [0u8; PREFIX_BYTES];
            bytes[..len].copy_from_slice(&prefix[..len]);
            for (i, w) in p.words.iter().enumerate() {
                w.store(u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or_default()), Ordering::Relaxed);
            }
            p.len.store(len as u32, Ordering::Relaxed);
            p.at.store(now, Ordering::Relaxed);
            s.prefix_count.store(n as u32 + 1, Ordering::Release);
        }
        s.list.invalidated_at.fetch_max(now, Ordering::Relaxed);
        stored
    }

    /// Applies a tag or prefix invalidation of a cache stamped `at` (see
    /// `predicate_time`); the latest time a record covering it now holds, which
    /// what the same commit installs after it must not precede. Commit lock held
    /// exclusively.
    pub(super) fn apply_predicate_locked(&self, inv: &Invalidation, at: i64) -> i64 {
        match *inv {
            Invalidation::Tags { cache, tags } => {
                let s = self.slot(cache.index);
                if s.incarnation.load(Ordering::Acquire) != cache.incarnation {
                    return at;
                }
                tags.iter().map(|&t| self.raise_tag(s, t, at)).fold(at, i64::max)
            }
            Invalidation::Prefix { cache, prefix } => self.invalidate_prefix_locked(cache, prefix, at),
            _ => at,
        }
    }

    /// Retires the prefix invalidations that every cache holds now: sweeps every
    /// bucket, a slice of one partition per lock hold, freeing the live entries they
    /// cover; then, under each such cache's commit lock (readers see the records
    /// change all at once), folds into its key floor and forgets those still as they
    /// were when the sweep began (a clear meanwhile retired them already; one whose
    /// time moved may cover entries swept past, and waits for the next sweep).
    /// Entries installed during the sweep under an older commit time are fills,
    /// dropped by the records still there, or puts, which then count as committed
    /// after the invalidation. Returns the entries freed; nothing to do costs a
    /// look at each slot.
    pub fn retire_prefixes(&self, now: i64, slice: u32) -> u64 {
        let used = self.hdr().used_slots.load(Ordering::Acquire);
        // (slot, incarnation, resets, count, times) of each cache with records.
        let mut caches: Vec<(u32, u32, u32, usize, [i64; MAX_PREFIXES])> = Vec::new();
        for i in 0..used {
            let s = self.slot(i);
            if s.state.load(Ordering::Acquire) != SLOT_ACTIVE || s.prefix_count.load(Ordering::Acquire) == 0 {
                continue;
            }
            self.locks.lock_cache(i, Mode::Shared);
            let _c = CacheReadGuard { locks: self.locks, slot: i };
            let n = (s.prefix_count.load(Ordering::Acquire) as usize).min(MAX_PREFIXES);
            let mut at = [NEVER; MAX_PREFIXES];
            for (t, p) in at.iter_mut().zip(&s.prefixes[..n]) {
                *t = p.at.load(Ordering::Relaxed);
            }
            if caches.try_reserve(1).is_err() {
                break;
            }
            caches.push((i, s.incarnation.load(Ordering::Acquire), s.prefix_resets.load(Ordering::Acquire), n, at));
        }
        if caches.is_empty() {
            return 0;
        }
        let mut freed = 0;
        let per = self.geo.buckets / PARTITIONS as u32;
        for p in 0..PARTITIONS as u32 {
            let mut from = 0;
            while from < per {
                let to = (from + slice.max(1)).min(per);
                {
                    let _p = self.lock_bucket(p, Mode::Exclusive);
                    for k in from..to {
                        let u = self.walk_chain(p + k * PARTITIONS as u32, |e, h| {
                            let s = self.slot(h.slot);
                            if s.prefix_count.load(Ordering::Acquire) == 0 || h.state.load(Ordering::Acquire) != ENTRY_LIVE {
                                return Step::Next;
                            }
                            let mut key = [0u8; PREFIX_BYTES];
                            let n = (h.key_len as usize).min(PREFIX_BYTES);
                            self.copy_payload(e, 0, &mut key[..n]);
                            // A key longer than PREFIX_BYTES is compared by its first
                            // bytes, as records are: a record covers it if they match.
                            let _g = self.lock_list(s);
                            if h.state.load(Ordering::Acquire) != ENTRY_LIVE || self.prefix_invalidated_at(s, &key[..n]) <= h.installed_at {
                                return Step::Next;
                            }
                            self.retire(s, e);
                            freed += 1;
                            Step::Unlink
                        });
                        // As the worker's sweep does: the allocator comes after the
                        // partition lock in the lock order.
                        self.free_unlinked(None, u.first);
                    }
                }
                from = to;
            }
        }
        for (i, incarnation, resets, n, at) in caches {
            let r = SlotRef { index: i, incarnation };
            if !self.is_valid(r) {
                continue;
            }
            let commit = self.commit(r, now);
            let s = self.slot(i);
            if s.prefix_resets.load(Ordering::Acquire) != resets {
                continue; // cleared meanwhile: those records are gone already
            }
            let count = (s.prefix_count.load(Ordering::Acquire) as usize).min(MAX_PREFIXES);
            let mut kept = 0;
            for (j, p) in s.prefixes[..count].iter().enumerate() {
                let t = p.at.load(Ordering::Relaxed);
                if j < n && t == at[j] {
                    s.list.key_floor.fetch_max(t, Ordering::AcqRel);
                    continue;
                }
                if kept != j {
                    let q = &s.prefixes[kept];
                    for (w, v) in q.words.iter().zip(&p.words) {
                        w.store(v.load(Ordering::Relaxed), Ordering::Relaxed);
                    }
                    q.len.store(p.len.load(Ordering::Relaxed), Ordering::Relaxed);
                    q.at.store(t, Ordering::Relaxed);
                }
                kept += 1;
            }
            s.prefix_count.store(kept as u32, Ordering::Release);
            drop(commit);
        }
        freed
    }

    /// The time a tag or prefix invalidation of cache `r` committing at `now` is
    /// stamped with: `now`, or just after the latest install of the cache if that is
    /// later. Entries are judged by their install times, and a commit's `now` is
    /// taken before it waits for the commit lock: one that took an earlier time
    /// could install after another took its own and invalidated first, and an
    /// entry installed at the same microsecond would not count as older. The
    /// caller holds the commit lock exclusively, so no install runs meanwhile; a
    /// later stamp only drops more.
    pub(super) fn predicate_time(&self, r: SlotRef, now: i64) -> i64 {
        now.max(self.slot(r.index).list.latest_installed.load(Ordering::Acquire).saturating_add(1))
    }

    /// Live prefix invalidations of cache `r` (for statistics and tests).
    pub fn prefix_invalidations(&self, r: SlotRef) -> usize {
        self.slot(r.index).prefix_count.load(Ordering::Acquire) as usize
    }
}

const _: () = assert!(std::mem::size_of::<PrefixFence>() == 64);
