//! The block allocator: a free list and a bump pointer under the allocator lock, and
//! the per-backend reserve that lets an overwrite reuse the blocks it replaced.

use std::cell::Cell;
use std::sync::atomic::Ordering;

use super::*;

/// The blocks of the last entry one backend's commit replaced, kept for its next
/// write of the same size: an overwrite then takes no allocator lock, neither to
/// free nor to allocate, and fills lines it has just read. Backend-local (never in
/// shared memory); counted as free in `Header.reserved`. At most one entry of
/// `RESERVE_MAX_BLOCKS`, handed back with [`Store::release_reserve`] when the
/// backend exits.
#[derive(Debug)]
pub struct Reserve {
    pub(super) stripe: usize,
    /// The kept entry (NIL for none); its head still says how many blocks it links.
    pub(super) entry: Cell<u32>,
}

/// A larger replaced entry goes back to the free list at once.
pub(super) const RESERVE_MAX_BLOCKS: u32 = 4;

impl Reserve {
    /// An empty reserve counted in stripe `stripe % STRIPES`.
    pub fn new(stripe: usize) -> Reserve {
        Reserve { stripe: stripe % STRIPES, entry: Cell::new(NIL) }
    }

    pub fn is_empty(&self) -> bool {
        self.entry.get() == NIL
    }
}


impl<'a, L: Locks> Store<'a, L> {
    /// Takes `n` blocks linked into one chain; `None` when fewer are free.
    pub(super) fn alloc(&self, n: u32) -> Option<(u32, u32)> {
        self.locks.lock_allocator();
        let h = self.hdr();
        // SAFETY: allocator fields are only touched under the allocator lock.
        let got = unsafe {
            let free_head = &mut *h.alloc.free_head.get();
            let free_blocks = &mut *h.alloc.free_blocks.get();
            let bump = &mut *h.alloc.bump.get();
            if *free_blocks as u64 + (self.geo.blocks - *bump) as u64 >= n as u64 {
                let (mut first, mut last) = (NIL, NIL);
                for _ in 0..n {
                    let b = if *free_head != NIL {
                        let b = *free_head;
                        *free_head = self.next_of(b);
                        *free_blocks -= 1;
                        b
                    } else {
                        *bump += 1;
                        *bump - 1
                    };
                    if first == NIL {
                        first = b;
                    } else {
                        self.set_next(last, b);
                    }
                    last = b;
                }
                self.set_next(last, NIL);
                Some((first, last))
            } else {
                None
            }
        };
        self.locks.unlock_allocator();
        got
    }

    /// Returns an entry's blocks to the free list in O(1).
    pub(super) fn free_entry(&self, first: u32) {
        // SAFETY: `first` is an entry nobody else can reach any more.
        let (last, n) = unsafe { ((*self.head(first)).last_block, (*self.head(first)).blocks()) };
        self.locks.lock_allocator();
        // SAFETY: allocator fields are only touched under the allocator lock.
        unsafe {
            let h = self.hdr();
            self.set_next(last, *h.alloc.free_head.get());
            *h.alloc.free_head.get() = first;
            *h.alloc.free_blocks.get() += n;
        }
        self.locks.unlock_allocator();
    }

    /// Keeps a replaced entry's blocks in an empty `reserve` if it is small enough,
    /// else frees them.
    pub(super) fn keep_or_free(&self, reserve: Option<&Reserve>, first: u32) {
        // SAFETY: `first` is an entry nobody else can reach any more.
        let n = unsafe { (*self.head(first)).blocks() };
        match reserve {
            Some(res) if res.is_empty() && n <= RESERVE_MAX_BLOCKS => {
                self.hdr().reserved[res.stripe].fetch_add(n, Ordering::Relaxed);
                res.entry.set(first);
            }
            _ => self.free_entry(first),
        }
    }

    /// The reserve's blocks as an allocation of `n` blocks (first, last), if it holds
    /// exactly that many; a reserve of another size goes back to the free list.
    pub(super) fn take_reserve(&self, reserve: Option<&Reserve>, n: u32) -> Option<(u32, u32)> {
        let (first, blocks, last) = self.empty_reserve(reserve?)?;
        if blocks != n {
            self.free_entry(first);
            return None;
        }
        Some((first, last))
    }

    /// Returns a reserve's blocks to the free list (a backend does so when it exits).
    pub fn release_reserve(&self, reserve: &Reserve) {
        if let Some((first, _, _)) = self.empty_reserve(reserve) {
            self.free_entry(first);
        }
    }

    /// Takes the kept entry out of `reserve` (first block, blocks, last block), no
    /// longer counted as reserved; the caller reuses or frees it.
    pub(super) fn empty_reserve(&self, reserve: &Reserve) -> Option<(u32, u32, u32)> {
        let first = reserve.entry.replace(NIL);
        if first == NIL {
            return None;
        }
        // SAFETY: the kept entry is ours alone; its head still links its blocks.
        let (blocks, last) = unsafe { ((*self.head(first)).blocks(), (*self.head(first)).last_block) };
        self.hdr().reserved[reserve.stripe].fetch_sub(blocks, Ordering::Relaxed);
        Some((first, blocks, last))
    }

    /// Counts, for tests: (free-list blocks + never used blocks) must equal the blocks
    /// no entry holds.
    pub fn free_blocks(&self) -> u32 {
        self.locks.lock_allocator();
        // SAFETY: allocator fields are read under the allocator lock.
        let n = unsafe { *self.hdr().alloc.free_blocks.get() + (self.geo.blocks - *self.hdr().alloc.bump.get()) };
        self.locks.unlock_allocator();
        // Blocks held in backends' reserves are free too, though not on the free list.
        n + self.hdr().reserved.iter().map(|r| r.load(Ordering::Relaxed)).sum::<u32>()
    }
}
