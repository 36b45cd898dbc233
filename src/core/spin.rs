//! A tiny test-and-set spinlock that lives in shared memory.
//!
//! Held only for a handful of pointer updates (LRU links, counters); nothing that
//! can fail or allocate runs under it, so a backend never errors out holding one.

use std::sync::atomic::{AtomicU32, Ordering};

#[repr(C)]
pub struct SpinLock(AtomicU32);

impl SpinLock {
    pub fn init(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    pub fn lock(&self) -> SpinGuard<'_> {
        let mut spins = 0u32;
        while self
            .0
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        SpinGuard(self)
    }
}

pub struct SpinGuard<'a>(&'a SpinLock);

impl Drop for SpinGuard<'_> {
    fn drop(&mut self) {
        (self.0).0.store(0, Ordering::Release);
    }
}
