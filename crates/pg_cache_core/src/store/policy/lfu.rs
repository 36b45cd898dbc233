//! Least frequently used, approximately, as Redis's `allkeys-lfu` does it: each
//! entry has a use count that grows logarithmically with its hits and decays with
//! the time it goes unread, and eviction takes, among the entries near the tail of
//! its list, one read seldom.
//!
//! * **Count.** In the entry head's `pushed_at` (which LRU uses for its push
//!   clock): 8 bits of count and 24 of the minute it last decayed. A new entry
//!   starts at [`INIT`]; a hit adds one with probability 1 / ((count − INIT) ×
//!   [`LOG_FACTOR`] + 1), so 255 takes about 300,000 hits and a hit on a hot
//!   entry rarely writes its line. Each minute unread takes one away: a
//!   once-popular entry loses its count and goes like a new one.
//! * **Eviction.** Hits do not move entries: the list is in order of admission
//!   and second chances. The hand looks at up to [`SAMPLE`] entries from the tail:
//!   the first that is hidden, expired, or no more used than a new entry goes; one
//!   used more gets a second chance (moved to the head, keeping its count). When all
//!   of them were used more, the least used of them goes. A one-time scan of many
//!   keys therefore passes through: its entries are evicted as they reach the tail,
//!   while entries read again and again keep coming back to the head.
//!
//! A hit takes no lock; an eviction examines at most [`SAMPLE`] entries.

use std::sync::atomic::Ordering;

use super::super::*;

/// A new entry's count (Redis's `LFU_INIT_VAL`): room below it for decay.
const INIT: u32 = 5;
/// How slowly the count grows (Redis's default `lfu-log-factor`).
const LOG_FACTOR: u32 = 10;
/// Microseconds unread per count lost (Redis's default `lfu-decay-time`, 1 minute).
const DECAY_US: i64 = 60_000_000;

/// The minute of a time in microseconds, in the 24 bits a count keeps it in (they
/// wrap after 31 years, the wrapping milliseconds of `ms` after 49 days).
pub(in super::super) fn minute_of(us: i64) -> u32 {
    (us.div_euclid(DECAY_US) as u32) & 0x00ff_ffff
}
/// Entries from the tail one eviction examines: 64 list moves at most (about a
/// microsecond under the list lock). Redis samples 5 keys anywhere; a tail window
/// must be wider, as the entries of a hot set admitted together reach the tail
/// together (16 lost 3 of a hot set of 50 to a scan).
const SAMPLE: u32 = 64;

thread_local! {
    /// This process's draws for the count (a backend is one thread); xorshift.
    static DRAWS: std::cell::Cell<u64> = const { std::cell::Cell::new(0x9E37_79B9_7F4A_7C15) };
}

fn draw() -> u64 {
    DRAWS.with(|d| {
        let mut x = d.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d.set(x);
        x
    })
}

fn pack(count: u32, minute: u32) -> u32 {
    count.min(255) | (minute & 0x00ff_ffff) << 8
}

/// The count of a packed `pushed_at` decayed to minute `now_minute`. A minute
/// before the stored one (clocks of different backends differ by up to 100 ms)
/// decays nothing.
fn decayed(packed: u32, now_minute: u32) -> u32 {
    let idle = (now_minute & 0x00ff_ffff).wrapping_sub(packed >> 8) & 0x00ff_ffff;
    let idle = if idle >= 0x0080_0000 { 0 } else { idle };
    (packed & 0xff).saturating_sub(idle)
}

impl<'a, L: Locks> Store<'a, L> {
    /// A new entry goes to the head, counted as used [`INIT`] times; list lock held.
    pub(super) fn lfu_admit(&self, s: &CacheSlot, e: u32, now: i64) {
        // SAFETY: the entry is the installer's, which holds the list lock.
        let h = unsafe { &*self.head(e) };
        h.pushed_at.store(pack(INIT, minute_of(now)), Ordering::Relaxed);
        h.used_at.store(ms(now), Ordering::Relaxed);
        self.lru_push_head(s, e);
    }

    /// A hit: the count decays to now, then grows by one with a probability that
    /// falls as it grows; written only when it changed. No lock: a racing hit may
    /// be lost, counts are approximate.
    pub(super) fn lfu_touch(&self, _s: &CacheSlot, e: u32) {
        // SAFETY: e is on a chain we hold shared, hence allocated.
        let h = unsafe { &*self.head(e) };
        let clock = self.hdr().clock.load(Ordering::Relaxed);
        let minute = self.hdr().minute.load(Ordering::Relaxed);
        let packed = h.pushed_at.load(Ordering::Relaxed);
        let mut count = decayed(packed, minute);
        if count < 255 {
            let odds = count.saturating_sub(INIT) * LOG_FACTOR + 1;
            if draw().is_multiple_of(odds as u64) {
                count += 1;
            }
        }
        let next = pack(count, minute);
        if next != packed {
            h.pushed_at.store(next, Ordering::Relaxed);
            h.used_at.store(clock, Ordering::Relaxed);
        }
    }

    /// The entry to evict from slot `s` (NIL for none), second chances given on the
    /// way; list lock held.
    pub(super) fn lfu_victim(&self, s: &CacheSlot, now: i64) -> u32 {
        let minute = minute_of(now);
        let mut least = (u32::MAX, NIL);
        for _ in 0..SAMPLE {
            let t = s.list.lru_tail.load(Ordering::Relaxed);
            if t == NIL {
                break;
            }
            // SAFETY: t is on the list, hence allocated, and we hold the list lock.
            let h = unsafe { &*self.head(t) };
            let count = decayed(h.pushed_at.load(Ordering::Relaxed), minute);
            if count <= INIT || h.is_hidden(s) || self.is_expired(t, now) || s.list.lru_head.load(Ordering::Relaxed) == t {
                return t;
            }
            if count < least.0 {
                least = (count, t);
            }
            h.pushed_at.store(pack(count, minute), Ordering::Relaxed);
            // Stamped as used now: eviction across caches ranks tails by it, and the
            // tail this exposes must not look older than what was moved.
            h.used_at.store(ms(now), Ordering::Relaxed);
            self.lru_unlink(s, t);
            self.lru_push_head(s, t);
        }
        least.1
    }
}
