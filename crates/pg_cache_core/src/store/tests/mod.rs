//! Store tests on a plain byte region with no-op locks, by topic; the helpers here.

use super::*;
use crate::invalidation::Invalidation;
use crate::key::hash;
use crate::value::ValueKind;

/// A jsonb entry (the tests' bytes need not be jsonb: the store never looks inside).
fn entry<'a>(key: &'a [u8], value: &'a [u8], hash: u64, expires_at: i64) -> NewEntry<'a> {
    NewEntry { key, value, kind: ValueKind::Jsonb, hash, expires_at, tags: &[] }
}

/// Single-threaded tests need no locks; they only count the shared acquisitions of
/// commit locks (per test thread).
struct NoLocks;

thread_local! {
    static SHARED_COMMIT_LOCKS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    static EXCLUSIVE_COMMIT_LOCKS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn exclusive_commit_locks() -> u32 {
    EXCLUSIVE_COMMIT_LOCKS.get()
}

fn shared_commit_locks() -> u32 {
    SHARED_COMMIT_LOCKS.get()
}

impl Locks for NoLocks {
    fn lock_partition(&self, _: usize, _: Mode) {}
    fn unlock_partition(&self, _: usize) {}
    fn lock_allocator(&self) {}
    fn unlock_allocator(&self) {}
    fn lock_directory(&self, _: Mode) {}
    fn unlock_directory(&self) {}
    fn lock_cache(&self, _: u32, mode: Mode) {
        if mode == Mode::Shared {
            SHARED_COMMIT_LOCKS.set(SHARED_COMMIT_LOCKS.get() + 1);
        } else {
            EXCLUSIVE_COMMIT_LOCKS.set(EXCLUSIVE_COMMIT_LOCKS.get() + 1);
        }
    }
    fn unlock_cache(&self, _: u32) {}
    fn lock_list(&self, _: u32) {}
    fn try_lock_list(&self, _: u32) -> bool {
        true
    }
    fn unlock_list(&self, _: u32) {}
    fn lock_replica(&self, _: Mode) {}
    fn unlock_replica(&self) {}
}

struct Region {
    _mem: Vec<u64>,
    store: Store<'static, NoLocks>,
}

fn region(bytes: usize, slots: u32) -> Region {
    let geo = Geometry::new(bytes, slots).expect("geometry");
    let mut mem = vec![0u64; bytes.div_ceil(8) + 8];
    let base = mem.as_mut_ptr() as *mut u8;
    // SAFETY: the Vec has 64 spare bytes for the alignment offset.
    let base = unsafe { base.add(base.align_offset(64)) };
    static LOCKS: NoLocks = NoLocks;
    // SAFETY: `mem` holds `bytes` bytes from `base` on, lives as long as the store
    // (both in `Region`), and one thread uses it.
    let store = unsafe { Store::attach(base, geo, &LOCKS) };
    // SAFETY: as above; nobody else uses the region yet.
    unsafe { store.init() };
    Region { _mem: mem, store }
}

/// A second handle on the same region (to set options such as the database share).
fn unsafe_reattach<'a>(s: &Store<'a, NoLocks>) -> Store<'a, NoLocks> {
    static LOCKS: NoLocks = NoLocks;
    // SAFETY: the region stays alive as long as the `Region` the original came from,
    // which the tests keep until they end; one thread uses it.
    unsafe { Store::attach(s.base_for_tests(), s.geometry(), &LOCKS) }
}

fn set(s: &Store<NoLocks>, r: SlotRef, key: &str, value: &[u8], limit: u64) {
    set_at(s, r, key, value, NO_EXPIRY, limit, 0);
}

fn set_at(s: &Store<NoLocks>, r: SlotRef, key: &str, value: &[u8], expires: i64, limit: u64, now: i64) {
    let h = hash(r.index, key.as_bytes());
    let p = s.prepare(None, r, &entry(key.as_bytes(), value, h, expires), now).unwrap().expect("room");
    s.commit(r, now).install(None, p, key.as_bytes(), limit);
}

fn get_at(s: &Store<NoLocks>, r: SlotRef, key: &str, now: i64) -> Lookup<Vec<u8>> {
    let h = hash(r.index, key.as_bytes());
    s.advance_clock(now);
    s.lookup(r, key.as_bytes(), h, ValueKind::Jsonb, || now, |len, copy| {
        let mut v = vec![0u8; len];
        copy(&mut v);
        v
    })
}

fn get(s: &Store<NoLocks>, r: SlotRef, key: &str) -> Option<Vec<u8>> {
    match get_at(s, r, key, 0) {
        Lookup::Hit(v) => Some(v),
        _ => None,
    }
}

fn new_cache(s: &Store<NoLocks>, db: u32, name: &str) -> SlotRef {
    s.find_or_create_slot(db, name, &CacheConfig::default(), u32::MAX).unwrap()
}

fn prepared(s: &Store<NoLocks>, r: SlotRef, key: &str, value: &[u8]) -> (Prepared, u64) {
    let h = hash(r.index, key.as_bytes());
    (s.prepare(None, r, &entry(key.as_bytes(), value, h, NO_EXPIRY), 0).unwrap().expect("room"), h)
}

mod directory;
mod dump;
mod entries;
mod guarded;
mod eviction;
mod invalidation;
mod maintenance;
mod lfu;
mod predicates;
mod replica;
mod read;
mod shadow;
