//! Invalidation fences: when each key was last invalidated by a committed transaction.
//!
//! A fill (a `cache_set`) made by a transaction that started at `start` is stale when
//! its key, its cache or its database was invalidated by a commit at or after `start`:
//! the value may have been computed from data the invalidating transaction changed.
//!
//! Keys are tracked in a table of 64-byte buckets, each remembering the last
//! invalidation time of up to [`WAYS`] keys (by a 32-bit tag from the high half of
//! the key hash) plus a floor. When a bucket is full, the oldest remembered time is
//! folded into the floor, which then fences every key of the bucket. Forgetting can
//! therefore only drop more fills, never install a stale one.

use super::NEVER;

pub const WAYS: usize = 4;

#[repr(C)]
pub struct FenceBucket {
    at: [i64; WAYS],
    tag: [u32; WAYS],
    floor: i64,
    _pad: [u8; 8],
}

const _: () = assert!(std::mem::size_of::<FenceBucket>() == 64);

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl FenceBucket {
    pub fn init(&mut self) {
        self.at = [NEVER; WAYS];
        self.tag = [0; WAYS];
        self.floor = NEVER;
    }

    /// Records that the key with `hash` was invalidated at `now`.
    pub fn raise(&mut self, hash: u64, now: i64) {
        let tag = tag_of(hash);
        let way = (0..WAYS)
            .find(|&i| self.at[i] != NEVER && self.tag[i] == tag)
            .or_else(|| (0..WAYS).find(|&i| self.at[i] == NEVER))
            .unwrap_or_else(|| {
                let oldest = (0..WAYS).min_by_key(|&i| self.at[i]).unwrap_or(0);
                self.floor = self.floor.max(self.at[oldest]);
                self.at[oldest] = NEVER;
                oldest
            });
        self.tag[way] = tag;
        self.at[way] = self.at[way].max(now);
    }

    /// Whether the key with `hash` may have been invalidated at or after `start`.
    pub fn fences(&self, hash: u64, start: i64) -> bool {
        let tag = tag_of(hash);
        self.floor >= start || (0..WAYS).any(|i| self.at[i] != NEVER && self.tag[i] == tag && self.at[i] >= start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket() -> FenceBucket {
        let mut b = FenceBucket { at: [0; WAYS], tag: [0; WAYS], floor: 0, _pad: [0; 8] };
        b.init();
        b
    }

    fn h(tag: u32) -> u64 {
        (tag as u64) << 32 | 7
    }

    #[test]
    fn a_raise_fences_fills_that_started_before_it_only() {
        let mut b = bucket();
        assert!(!b.fences(h(1), i64::MIN + 1));
        b.raise(h(1), 100);
        assert!(b.fences(h(1), 100), "a fill that started at the invalidation's time is stale");
        assert!(b.fences(h(1), 50));
        assert!(!b.fences(h(1), 101), "a fill that started later saw the invalidation");
        assert!(!b.fences(h(2), 50), "another key is not fenced");
    }

    #[test]
    fn fences_never_move_back() {
        let mut b = bucket();
        b.raise(h(1), 100);
        b.raise(h(1), 90);
        assert!(b.fences(h(1), 95));
    }

    #[test]
    fn overflow_folds_the_oldest_into_the_floor() {
        let mut b = bucket();
        for t in 1..=WAYS as u32 {
            b.raise(h(t), 10 * t as i64);
        }
        assert!(!b.fences(h(99), 1), "four keys fit without a floor");
        b.raise(h(99), 1000);
        // The oldest (tag 1 at 10) was forgotten into the floor: every key started at
        // or before 10 is now fenced, later ones are judged exactly.
        assert!(b.fences(h(1), 10));
        assert!(b.fences(h(12345), 10));
        assert!(!b.fences(h(12345), 11));
        assert!(b.fences(h(2), 20) && !b.fences(h(2), 21));
        assert!(b.fences(h(99), 1000));
    }
}
