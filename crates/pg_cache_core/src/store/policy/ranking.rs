//! Which cache gives way when memory is full: the tail used longest ago across every
//! cache, found without ranking every cache on every eviction.
//!
//! A full ranking read each slot's tail (two cache misses a slot): 2.9 µs an evicting
//! write with 10 caches, 197 µs with 10,000. Now a backend ranks all tails once into
//! a *batch*: the oldest [`BATCH`] tails (or one in [`BATCH_SHARE`] of the caches,
//! if more) in a heap, and the *cutoff*, the age of the oldest tail left out. Tails
//! only get younger (a touch moves an entry to the head, a pop exposes the next one,
//! installs are new), so until the heap is empty every tail older than the cutoff
//! is in it, and popping the oldest of the heap, then putting its cache back with
//! its next tail while that is still older than the cutoff, is exact LRU across
//! caches. A cleared or dropped cache (its tail entries are dead) bumps
//! [`Header::hidden`], which makes every backend rank again, so that dead entries
//! are taken first at once. An eviction costs at most about BATCH_SHARE tail reads
//! plus a heap operation, whatever the number of caches.

use std::cell::RefCell;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;

use super::*;

/// Tails kept from one ranking: at least this many, and one in [`BATCH_SHARE`] of
/// the caches. In the worst case every cache gives one entry per batch, so an
/// eviction reads about BATCH_SHARE tails: with a fixed 256 an evicting write at
/// 10,000 caches cost 1.67× what it did at 10 (39 tails, two cache misses each).
const BATCH: usize = 256;
const BATCH_SHARE: usize = 16;
/// While a database is over its share the batch holds only its caches and lives
/// for this many evictions, so that it stops soon after the database is back under.
const OVER_SHARE_BATCH: u32 = 16;
/// A tail that is dead (hidden by a clear, of a dropping cache, expired) ranks
/// older than any live one.
const DEAD: u32 = u32::MAX;

/// A cache's tail as ranked: `age` in milliseconds at ranking time (DEAD for dead).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Tail {
    age: u32,
    slot: u32,
    block: u32,
}

/// One backend's ranking of one region.
#[derive(Default)]
struct Batch {
    region: usize,
    hidden: u64,
    /// `ms(now)` when ranked: ages are counted from it.
    ranked_at: u32,
    /// Age of the oldest tail left out (0 when none was): a tail older than it
    /// may compete in the heap.
    cutoff: u32,
    /// The database whose caches alone were ranked (it was over its share).
    over: Option<u32>,
    evictions_left: u32,
    heap: BinaryHeap<Tail>,
    scratch: Vec<Tail>,
}

#[cfg(test)]
thread_local! {
    /// Tails read by this thread's rankings and evictions: what an eviction costs.
    pub(in crate::store) static TAILS_READ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

thread_local! {
    /// Per backend (a server backend is one thread): rankings need no shared lock,
    /// and two backends evicting at once each pop what is oldest when they lock.
    static RANKING: RefCell<Batch> = RefCell::new(Batch::default());
}

impl<'a, L: Locks> Store<'a, L> {
    /// The tail of slot `i` as of now, or None when it has none (or is free).
    fn tail_of(&self, i: u32, now: i64, ranked_at: u32) -> Option<Tail> {
        #[cfg(test)]
        TAILS_READ.set(TAILS_READ.get() + 1);
        let s = self.slot(i);
        let state = s.state.load(Ordering::Acquire);
        if state == SLOT_FREE {
            return None;
        }
        let t = self.next_victim(s);
        if t == NIL || t >= self.geo.blocks {
            return None;
        }
        // A racy peek used only to rank; pop_victim re-reads under the list lock.
        // SAFETY: t < blocks, so the read stays inside the region.
        let (hidden, used_at) = unsafe { ((*self.head(t)).is_hidden(s), (*self.head(t)).used_at.load(Ordering::Relaxed)) };
        let dead = state == SLOT_DROPPING || hidden || self.is_expired(t, now);
        // Used at or after the ranking: age 0, never older than the cutoff, so a
        // batch ranked long ago never ranks a tail touched since as old.
        let since = ranked_at.wrapping_sub(used_at);
        let age = if dead {
            DEAD
        } else if since as i32 <= 0 {
            0
        } else {
            since.min(DEAD - 1)
        };
        Some(Tail { age, slot: i, block: t })
    }

    /// Ranks every cache's tail into `b`: the oldest BATCH into the heap, the next
    /// one's age as the cutoff. With a database share, a database over it is ranked
    /// alone (unless `over` is given as None by the caller's retry).
    fn rank(&self, b: &mut Batch, now: i64, over: Option<u32>) {
        let used = self.hdr().used_slots.load(Ordering::Acquire);
        b.region = self.base as usize;
        b.hidden = self.hdr().hidden.load(Ordering::Acquire);
        b.ranked_at = ms(now);
        b.over = over;
        // With a share set, a database may go over it at any time: rank again soon.
        b.evictions_left = match over {
            Some(_) => OVER_SHARE_BATCH,
            None if self.database_share != u64::MAX => BATCH as u32,
            None => u32::MAX,
        };
        b.heap.clear();
        b.scratch.clear();
        if b.scratch.try_reserve(used as usize).is_err() {
            // No memory for a ranking: fall back to the single oldest tail.
            let best = (0..used).filter_map(|i| self.ranked_tail(i, now, b.ranked_at, over)).max();
            b.heap.extend(best);
            b.cutoff = DEAD;
            return;
        }
        b.scratch.extend((0..used).filter_map(|i| self.ranked_tail(i, now, b.ranked_at, over)));
        let n = b.scratch.len();
        let batch = BATCH.max(n / BATCH_SHARE);
        if n > batch {
            // Oldest first: the `batch` oldest before index `batch`, the cutoff at it.
            b.scratch.select_nth_unstable_by(batch, |x, y| y.cmp(x));
            b.cutoff = b.scratch[batch].age;
            b.scratch.truncate(batch);
        } else {
            b.cutoff = 0;
        }
        b.heap.extend(b.scratch.drain(..));
    }

    /// `tail_of`, but only for slots of `over` (and dead tails) when it is given.
    fn ranked_tail(&self, i: u32, now: i64, ranked_at: u32, over: Option<u32>) -> Option<Tail> {
        let t = self.tail_of(i, now, ranked_at)?;
        let other_db = over.is_some_and(|db| self.slot(i).db.load(Ordering::Relaxed) != db);
        (t.age == DEAD || !other_db).then_some(t)
    }

    /// Frees memory by evicting one entry: a dead tail first, else the tail used
    /// longest ago among all caches (ages are comparable across caches: see
    /// [`EntryHead::used_at`]), taken from the database furthest over its share
    /// when one is. `false` when nothing can be evicted.
    pub(in crate::store) fn evict_one(&self, now: i64, for_db: u32) -> bool {
        RANKING.with(|b| {
            let mut b = b.borrow_mut();
            self.evict_ranked(&mut b, now, for_db)
        })
    }

    fn evict_ranked(&self, b: &mut Batch, now: i64, for_db: u32) -> bool {
        let fresh = b.region == self.base as usize
            && b.hidden == self.hdr().hidden.load(Ordering::Acquire)
            && b.evictions_left > 0;
        if !fresh {
            self.rank(b, now, self.database_over_share());
        }
        // Each turn pops the heap. When it is empty it ranks again, at most once
        // (unless it just did) and once more without the over-share restriction for
        // a write into another database. A tail that keeps changing under us (others
        // evicting or touching it) is taken as it is after a while.
        let (mut ranked_now, mut widened) = (!fresh, false);
        for turn in 0.. {
            let Some(top) = b.heap.pop() else {
                if !ranked_now {
                    ranked_now = true;
                    self.rank(b, now, self.database_over_share());
                    continue;
                }
                if !widened && b.over.is_some_and(|db| db != for_db) {
                    widened = true;
                    self.rank(b, now, None);
                    continue;
                }
                return false;
            };
            // The slot's tail may have changed since it was ranked: rank it again and
            // put it back while it is still older than the cutoff.
            let Some(current) = self.ranked_tail(top.slot, now, b.ranked_at, b.over) else {
                continue;
            };
            if (current.block != top.block || current.age != top.age) && turn < 4 * BATCH.max(b.heap.capacity()) {
                if current.age > b.cutoff {
                    b.heap.push(current);
                }
                continue;
            }
            let Some(v) = self.pop_victim(top.slot, PopReason::Evict, now) else {
                continue;
            };
            b.evictions_left = b.evictions_left.saturating_sub(1);
            // The cache's next tail competes with the rest while older than the cutoff.
            if let Some(next) = self.ranked_tail(top.slot, now, b.ranked_at, b.over) {
                if next.age > b.cutoff {
                    b.heap.push(next);
                }
            }
            self.reap(v);
            return true;
        }
        unreachable!("the loop returns")
    }
}
