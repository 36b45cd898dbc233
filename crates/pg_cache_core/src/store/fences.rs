//! Invalidation fences: when each key was last invalidated by a committed transaction.
//!
//! A fill (a `cache_set`) made by a transaction that started at `start` is stale when
//! its key, its cache or its database was invalidated by a commit at or after `start`:
//! the value may have been computed from data the invalidating transaction changed.
//!
//! Keys are tracked in a table of 64-byte buckets, each remembering the last
//! invalidation time of up to [`WAYS`] keys (by cache slot and a 32-bit tag from the
//! high half of the key hash). When a bucket is full, its oldest remembered time is
//! forgotten into the *key floor* of the cache it belonged to, which then fences
//! every key of that cache (see `raise_key_fence_locked`). Forgetting can therefore
//! only drop more fills, never install a stale one, and it drops fills only of the
//! cache whose keys overflowed: a bucket-wide floor, shared by every cache, lost
//! 36.5% of a transaction's fills on 2 GB while another session committed 1M keys
//! to other caches.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use super::NEVER;

pub const WAYS: usize = 4;

#[repr(C)]
pub struct FenceBucket {
    at: [i64; WAYS],
    tag: [u32; WAYS],
    slot: [u32; WAYS],
}

const _: () = assert!(std::mem::size_of::<FenceBucket>() == 64);

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl FenceBucket {
    pub fn init(&mut self) {
        self.at = [NEVER; WAYS];
        self.tag = [0; WAYS];
        self.slot = [0; WAYS];
    }

    fn way_of(&self, hash: u64, slot: u32) -> Option<usize> {
        let tag = tag_of(hash);
        (0..WAYS).find(|&i| self.at[i] != NEVER && self.tag[i] == tag && self.slot[i] == slot)
    }

    /// Records that the key with `hash` in cache slot `slot` was invalidated at
    /// `now`. When the bucket was full, returns the slot and time of the fence it
    /// forgot to make room: the caller folds it into that cache's key floor.
    #[must_use = "a forgotten fence must be folded into its cache's floor"]
    pub fn raise(&mut self, hash: u64, slot: u32, now: i64) -> Option<(u32, i64)> {
        let mut forgot = None;
        let way = self.way_of(hash, slot).or_else(|| (0..WAYS).find(|&i| self.at[i] == NEVER)).unwrap_or_else(|| {
            let oldest = (0..WAYS).min_by_key(|&i| self.at[i]).unwrap_or(0);
            forgot = Some((self.slot[oldest], self.at[oldest]));
            self.at[oldest] = NEVER;
            oldest
        });
        self.tag[way] = tag_of(hash);
        self.slot[way] = slot;
        self.at[way] = self.at[way].max(now);
        forgot
    }

    /// Whether this bucket remembers the key with `hash` in `slot` invalidated at or
    /// after `start` (the cache's key floor is the caller's to check).
    pub fn fences(&self, hash: u64, slot: u32, start: i64) -> bool {
        self.way_of(hash, slot).is_some_and(|i| self.at[i] >= start)
    }
}

/// Databases whose last database-wide invalidation (`cache_clear_all`, `cache_drop`)
/// is remembered exactly, by OID.
pub const DATABASES: usize = 1024;

/// One remembered database: its OID (0: free) and the time of its last database-wide
/// invalidation.
#[repr(C)]
struct DbFence {
    db: AtomicU32,
    at: AtomicI64,
}

/// Database-wide fences, exact per database for up to [`DATABASES`] of them. Entries
/// are taken in order and a free one is never followed by a taken one. When all are
/// taken, the oldest is folded into `floor`, which fences every database, and given
/// to the new one: forgetting only ever drops more fills.
///
/// Writers serialise on the caller's lock (the directory lock); readers take none: a
/// writer folds an entry into the floor before giving it away, and a reader reads the
/// floor after the entries, so a reader that misses an entry still sees its time.
#[repr(C)]
pub struct DbFences {
    entries: [DbFence; DATABASES],
    floor: AtomicI64,
}

impl DbFences {
    pub fn init(&self) {
        for e in &self.entries {
            e.db.store(0, Ordering::Relaxed);
            e.at.store(NEVER, Ordering::Relaxed);
        }
        self.floor.store(NEVER, Ordering::Relaxed);
    }

    /// The last database-wide invalidation of `db` (or a later time: see the floor).
    pub fn get(&self, db: u32) -> i64 {
        let mut at = NEVER;
        for e in &self.entries {
            match e.db.load(Ordering::Acquire) {
                0 => break,
                d if d == db => {
                    at = e.at.load(Ordering::Acquire);
                    break;
                }
                _ => {}
            }
        }
        at.max(self.floor.load(Ordering::Acquire))
    }

    /// Records a database-wide invalidation of `db` at `now`. The caller holds the lock
    /// that serialises writers.
    pub fn raise_locked(&self, db: u32, now: i64) {
        let mut oldest = 0;
        for (i, e) in self.entries.iter().enumerate() {
            match e.db.load(Ordering::Relaxed) {
                d if d == db => {
                    e.at.fetch_max(now, Ordering::AcqRel);
                    return;
                }
                0 => {
                    e.at.store(now, Ordering::Relaxed);
                    e.db.store(db, Ordering::Release);
                    return;
                }
                _ if e.at.load(Ordering::Relaxed) < self.entries[oldest].at.load(Ordering::Relaxed) => oldest = i,
                _ => {}
            }
        }
        let e = &self.entries[oldest];
        let old = e.at.load(Ordering::Relaxed);
        self.floor.fetch_max(old, Ordering::AcqRel);
        e.db.store(db, Ordering::Release);
        e.at.store(now.max(old), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_fences() -> Box<DbFences> {
        // SAFETY: all-zero bytes are valid atomics; init sets the real start state.
        let f: Box<DbFences> = unsafe { Box::new(std::mem::zeroed()) };
        f.init();
        f
    }

    #[test]
    fn database_fences_are_exact_per_database() {
        let f = db_fences();
        // 1 and 65 are equal modulo 64: they must not share a fence.
        f.raise_locked(1, 100);
        assert_eq!(f.get(1), 100);
        assert_eq!(f.get(65), NEVER, "a clear in one database is not reported in another");
        f.raise_locked(65, 50);
        f.raise_locked(1, 90);
        assert_eq!((f.get(1), f.get(65)), (100, 50), "fences never move back");
    }

    #[test]
    fn a_full_table_forgets_toward_dropping_more() {
        let f = db_fences();
        let n = DATABASES as u32 + 40;
        for db in 1..=n {
            f.raise_locked(db, 1000 + db as i64);
        }
        for db in 1..=n {
            assert!(f.get(db) >= 1000 + db as i64, "database {db} lost its fence");
        }
        // The newest ones are still exact; an unseen database sees only the floor.
        assert_eq!(f.get(n), 1000 + n as i64);
        assert!(f.get(n + 1) < 1000 + n as i64 - DATABASES as i64 + 1);
    }

    fn bucket() -> FenceBucket {
        let mut b = FenceBucket { at: [0; WAYS], tag: [0; WAYS], slot: [0; WAYS] };
        b.init();
        b
    }

    fn h(tag: u32) -> u64 {
        (tag as u64) << 32 | 7
    }

    #[test]
    fn a_raise_fences_fills_that_started_before_it_only() {
        let mut b = bucket();
        assert!(!b.fences(h(1), 0, i64::MIN + 1));
        assert_eq!(b.raise(h(1), 0, 100), None);
        assert!(b.fences(h(1), 0, 100), "a fill that started at the invalidation's time is stale");
        assert!(b.fences(h(1), 0, 50));
        assert!(!b.fences(h(1), 0, 101), "a fill that started later saw the invalidation");
        assert!(!b.fences(h(2), 0, 50), "another key is not fenced");
        assert!(!b.fences(h(1), 3, 50), "nor the same tag in another cache");
    }

    #[test]
    fn fences_never_move_back() {
        let mut b = bucket();
        let _ = b.raise(h(1), 0, 100);
        let _ = b.raise(h(1), 0, 90);
        assert!(b.fences(h(1), 0, 95));
    }

    #[test]
    fn overflow_hands_the_oldest_to_its_own_cache() {
        let mut b = bucket();
        for t in 1..=WAYS as u32 {
            assert_eq!(b.raise(h(t), t, 10 * t as i64), None, "{WAYS} keys fit");
        }
        // The oldest (cache 1's key at 10) is forgotten and handed back, to be
        // folded into cache 1's floor; the others are still judged exactly.
        assert_eq!(b.raise(h(99), 9, 1000), Some((1, 10)));
        assert!(!b.fences(h(1), 1, 10), "forgotten here: the caller's floor covers it now");
        assert!(b.fences(h(2), 2, 20) && !b.fences(h(2), 2, 21));
        assert!(b.fences(h(99), 9, 1000));
    }
}
