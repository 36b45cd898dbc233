//! Least recently used, approximately: each cache's entries on a doubly linked list
//! through their heads (head = most recent), under the cache's list lock.

use std::sync::atomic::Ordering;

use super::super::*;

impl<'a, L: Locks> Store<'a, L> {
    /// Takes `e` off the list; list lock held.
    pub(super) fn lru_unlink(&self, s: &CacheSlot, e: u32) {
        // SAFETY: e is on s's list; links change only under the list lock, which we hold.
        unsafe {
            let h = self.head(e);
            let (prev, next) = ((*h).lru_prev, (*h).lru_next);
            if prev != NIL {
                (*self.head(prev)).lru_next = next;
            } else {
                s.list.lru_head.store(next, Ordering::Relaxed);
            }
            if next != NIL {
                (*self.head(next)).lru_prev = prev;
            } else {
                s.list.lru_tail.store(prev, Ordering::Relaxed);
            }
            (*h).lru_prev = NIL;
            (*h).lru_next = NIL;
        }
    }

    /// Puts `e` at the head of the list (LFU's list too); list lock held.
    pub(super) fn lru_push_head(&self, s: &CacheSlot, e: u32) {
        // SAFETY: as in `lru_unlink`.
        unsafe {
            let old = s.list.lru_head.load(Ordering::Relaxed);
            (*self.head(e)).lru_prev = NIL;
            (*self.head(e)).lru_next = old;
            if old != NIL {
                (*self.head(old)).lru_prev = e;
            } else {
                s.list.lru_tail.store(e, Ordering::Relaxed);
            }
            s.list.lru_head.store(e, Ordering::Relaxed);
        }
    }

    /// A new entry goes to the head of the list, stamped with the commit time.
    pub(super) fn lru_admit(&self, s: &CacheSlot, e: u32, now: i64) {
        let tick = s.list.tick.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the entry is the installer's, which holds the list lock.
        let h = unsafe { &*self.head(e) };
        h.pushed_at.store(tick as u32, Ordering::Relaxed);
        h.used_at.store(ms(now), Ordering::Relaxed);
        self.lru_push_head(s, e);
    }

    /// Marks a live entry used: moves it to the head of its LRU list, unless it is
    /// still in the newer half of the list (fewer pushes than half the cache's
    /// entries happened since it was last pushed). Hits on recently used entries thus
    /// write nothing shared, at the price of an LRU order that is exact only over
    /// the older half, where eviction happens. When another backend holds the list
    /// lock, the move is skipped rather than waited for (as memcached does) and the
    /// entry stamped as if moved.
    pub(super) fn lru_touch(&self, s: &CacheSlot, e: u32) {
        // SAFETY: e is on a chain we hold shared, hence allocated.
        let h = unsafe { &*self.head(e) };
        let pushes_since = (s.list.tick.load(Ordering::Relaxed) as u32).wrapping_sub(h.pushed_at.load(Ordering::Relaxed));
        if pushes_since as u64 <= s.list.entries.load(Ordering::Relaxed) / 2 {
            // Not moved and not stamped: a hit in the newer half writes nothing. An
            // entry read again and again crosses into the older half as others are
            // pushed, and is moved and stamped then, so a tail's stamp is at most
            // two passes of reading old. (Stamping here, even once a second, would
            // dirty the line of a hit that otherwise writes nothing.)
            return;
        }
        h.used_at.store(self.hdr().clock.load(Ordering::Relaxed), Ordering::Relaxed);
        let Some(_g) = self.try_lock_list(s) else {
            // Busy: count this hit as a move, so that the next hits do not retry it.
            h.pushed_at.store(s.list.tick.load(Ordering::Relaxed) as u32, Ordering::Relaxed);
            return;
        };
        if h.state.load(Ordering::Acquire) == ENTRY_LIVE {
            self.lru_unlink(s, e);
            self.lru_push_head(s, e);
            h.pushed_at.store(s.list.tick.fetch_add(1, Ordering::Relaxed) as u32, Ordering::Relaxed);
        }
    }
}
