use super::*;
use crate::core::key::hash;

/// Single-threaded tests need no locks; they only count the shared acquisitions of
/// commit locks (per test thread).
struct NoLocks;

thread_local! {
    static SHARED_COMMIT_LOCKS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
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
    fn lock_cache(&self, _: u16, mode: Mode) {
        if mode == Mode::Shared {
            SHARED_COMMIT_LOCKS.set(SHARED_COMMIT_LOCKS.get() + 1);
        }
    }
    fn unlock_cache(&self, _: u16) {}
    fn lock_list(&self, _: u16) {}
    fn try_lock_list(&self, _: u16) -> bool {
        true
    }
    fn unlock_list(&self, _: u16) {}
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
    let p = s.prepare(None, r, key.as_bytes(), value, h, expires, now).unwrap().expect("room");
    s.commit(r, now).install(None, p, key.as_bytes(), limit);
}

fn get_at(s: &Store<NoLocks>, r: SlotRef, key: &str, now: i64) -> Lookup<Vec<u8>> {
    let h = hash(r.index, key.as_bytes());
    s.advance_clock(now);
    s.lookup(r, key.as_bytes(), h, || now, |len, copy| {
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

#[test]
fn set_then_get_round_trips_values_of_every_size() {
    let reg = region(4 << 20, 16);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    for len in [0usize, 1, 63, 64, 65, 187, 188, 189, 1000, 5000, 100_000] {
        let value: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let key = format!("key-{len}");
        set(s, r, &key, &value, 1_000_000);
        assert_eq!(get(s, r, &key).as_deref(), Some(&value[..]), "len {len}");
    }
    assert_eq!(get(s, r, "absent"), None);
}

#[test]
fn keys_and_values_round_trip_whatever_block_boundary_they_cross() {
    let reg = region(4 << 20, 16);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    for key_len in 0..=2 * BLOCK_SIZE + 8 {
        for value_len in [0usize, 1, BLOCK_SIZE - LINK_SIZE + 1] {
            // Keys of one length differ in their last byte only.
            let key: String = (0..key_len).map(|i| (b'a' + ((i + value_len) % 26) as u8) as char).collect();
            let value: Vec<u8> = (0..value_len).map(|i| (i * 13 + key_len) as u8).collect();
            set(s, r, &key, &value, 1_000_000);
            assert_eq!(get(s, r, &key).as_deref(), Some(&value[..]), "key {key_len} value {value_len}");
        }
    }
}

#[test]
fn overwrite_replaces_and_frees_the_old_entry() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let before = s.free_blocks();
    set(s, r, "k", &[1; 500], 100);
    set(s, r, "k", &[2; 10], 100);
    assert_eq!(get(s, r, "k"), Some(vec![2; 10]));
    let st = s.stats(r, String::new());
    assert_eq!((st.entries, st.sets), (1, 2));
    assert_eq!(s.free_blocks(), before - 1);
}

fn set_reserved(s: &Store<NoLocks>, res: &Reserve, r: SlotRef, key: &str, value: &[u8]) -> Prepared {
    let h = hash(r.index, key.as_bytes());
    let p = s.prepare(Some(res), r, key.as_bytes(), value, h, NO_EXPIRY, 0).unwrap().expect("room");
    s.commit(r, 0).install(Some(res), p, key.as_bytes(), 100);
    p
}

#[test]
fn an_overwrite_keeps_the_replaced_blocks_for_the_next_write_of_that_size() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let res = Reserve::new(3);
    let before = s.free_blocks();
    let first = set_reserved(s, &res, r, "k", &[1; 200]);
    assert!(res.is_empty(), "nothing was replaced");
    set_reserved(s, &res, r, "k", &[2; 200]);
    assert!(!res.is_empty(), "the first entry's blocks are kept");
    assert_eq!(s.free_blocks(), before - 3, "kept blocks count as free");
    assert_eq!(s.memory().used_bytes, 3 * BLOCK_SIZE as u64, "and not as used");
    // Another key of the same size reuses them: the same first block, filled anew.
    let again = set_reserved(s, &res, r, "other", &[3; 200]);
    assert_eq!(again, Prepared { block: first.block, hash: again.hash });
    assert!(res.is_empty());
    assert_eq!(get(s, r, "k"), Some(vec![2; 200]));
    assert_eq!(get(s, r, "other"), Some(vec![3; 200]));
    assert_eq!(s.free_blocks(), before - 6);
}

#[test]
fn a_reserve_of_another_size_or_at_exit_goes_back_to_the_free_list() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let res = Reserve::new(0);
    let before = s.free_blocks();
    set_reserved(s, &res, r, "k", &[1; 200]);
    set_reserved(s, &res, r, "k", &[2; 200]);
    // A one-block write cannot use two kept blocks: they are freed, and the write
    // takes the block freed last.
    set_reserved(s, &res, r, "small", b"v");
    assert!(res.is_empty());
    assert_eq!(s.free_blocks(), before - 4);
    set_reserved(s, &res, r, "small", b"w");
    assert!(!res.is_empty());
    assert_eq!(s.free_blocks(), before - 4, "one block kept, counted free");
    s.release_reserve(&res);
    assert!(res.is_empty());
    assert_eq!(s.free_blocks(), before - 4);
    // Every block can still be allocated: none is lost in a reserve.
    let mut n = 0;
    while s.prepare(None, r, format!("fill{n}").as_bytes(), b"v", n, NO_EXPIRY, 0).unwrap().is_some() && n < 1 << 20 {
        n += 1;
        if s.free_blocks() == 0 {
            break;
        }
    }
    assert_eq!(s.free_blocks(), 0);
}

#[test]
fn a_replaced_entry_larger_than_a_reserve_holds_is_freed() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let res = Reserve::new(0);
    let before = s.free_blocks();
    set_reserved(s, &res, r, "k", &[1; 1000]);
    set_reserved(s, &res, r, "k", b"v");
    assert!(res.is_empty());
    assert_eq!(s.free_blocks(), before - 1);
}

#[test]
fn size_limit_evicts_least_recently_used() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    for k in ["k1", "k2", "k3"] {
        set(s, r, k, b"v", 3);
    }
    // Recency now k3 < k2 < k1 < ... : read k2, then k1, then k3.
    get(s, r, "k2");
    get(s, r, "k1");
    get(s, r, "k3");
    set(s, r, "k4", b"v", 3);
    assert_eq!(get(s, r, "k2"), None, "k2 was least recently used");
    for k in ["k1", "k3", "k4"] {
        assert!(get(s, r, k).is_some(), "{k} kept");
    }
    let st = s.stats(r, String::new());
    assert_eq!((st.entries, st.evictions), (3, 1));
}

#[test]
fn ttl_expiry_is_a_miss_and_is_reclaimed() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set_at(s, r, "k", b"v", 100, 10, 0);
    assert_eq!(get_at(s, r, "k", 99), Lookup::Hit(b"v".to_vec()));
    assert_eq!(get_at(s, r, "k", 100), Lookup::Expired);
    let free = s.free_blocks();
    s.remove_expired(r, b"k", hash(r.index, b"k"), 100);
    assert_eq!(s.free_blocks(), free + 1);
    let st = s.stats(r, String::new());
    assert_eq!((st.entries, st.expirations), (0, 1));
    assert_eq!(get_at(s, r, "k", 100), Lookup::Miss);
}

#[test]
fn clear_hides_old_entries_and_keeps_new_ones() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set(s, r, "a", b"1", 10);
    set(s, r, "b", b"2", 10);
    s.commit(r, 42).clear();
    assert_eq!(get(s, r, "a"), None);
    set(s, r, "b", b"3", 10);
    assert_eq!(get(s, r, "b"), Some(b"3".to_vec()));
    let st = s.stats(r, String::new());
    assert_eq!((st.entries, st.last_clear), (1, Some(42)));
    // The stale entry of "a" is reclaimed before any live entry when memory runs out.
    assert!(s.evict_one(0, 1));
    assert_eq!(get(s, r, "b"), Some(b"3".to_vec()));
    assert_eq!(s.stats(r, String::new()).evictions, 0);
}

#[test]
fn delete_reports_whether_the_key_was_visible() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set(s, r, "k", b"v", 10);
    let h = hash(r.index, b"k");
    assert!(s.commit(r, 0).delete(b"k", h));
    assert!(!s.commit(r, 0).delete(b"k", h));
    assert_eq!(get(s, r, "k"), None);
    assert_eq!(s.stats(r, String::new()).deletes, 1);
}

#[test]
fn databases_and_caches_are_isolated() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let a = new_cache(s, 1, "c");
    let b = new_cache(s, 2, "c");
    let c = new_cache(s, 1, "d");
    assert_ne!(a, b);
    assert_ne!(a, c);
    set(s, a, "k", b"db1", 10);
    assert_eq!(get(s, b, "k"), None);
    assert_eq!(get(s, c, "k"), None);
    assert_eq!(s.find_slot(1, "c"), Some(a));
    assert_eq!(s.slots_of(2).len(), 1);
}

#[test]
fn memory_pressure_evicts_instead_of_failing() {
    let reg = region(256 << 10, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let value = vec![9u8; 1000];
    let n = 5 * s.geometry().blocks as usize; // far more than fits
    for i in 0..n / 8 {
        set(s, r, &format!("k{i}"), &value, u64::MAX);
        assert_eq!(get(s, r, &format!("k{i}")).as_deref(), Some(&value[..]));
    }
    let st = s.stats(r, String::new());
    assert!(st.evictions > 0);
    assert_eq!(st.entries + st.evictions, (n / 8) as u64);
    // The oldest went first.
    assert_eq!(get(s, r, "k0"), None);
}

#[test]
fn allocator_survives_fragmentation() {
    // Mixed sizes, random deletes and overwrites: every write finds room and the
    // block accounting balances at the end.
    let reg = region(512 << 10, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut model = std::collections::HashMap::new();
    for _ in 0..20_000 {
        let k = format!("k{}", next() % 500);
        if next() % 4 == 0 {
            s.commit(r, 0).delete(k.as_bytes(), hash(r.index, k.as_bytes()));
            model.remove(&k);
        } else {
            let len = [10, 100, 700, 3000, 20_000][(next() % 5) as usize];
            let v = vec![(next() % 251) as u8; len];
            set(s, r, &k, &v, u64::MAX);
            model.insert(k, v);
        }
    }
    // Whatever is still cached is exactly what was last written.
    let mut held_blocks = 0usize;
    for (k, v) in &model {
        if let Some(got) = get(s, r, k) {
            assert_eq!(&got, v, "{k}");
            held_blocks += blocks_for(k.len() + v.len());
        }
    }
    let st = s.stats(r, String::new());
    assert!(st.evictions > 0, "the test must run out of memory");
    assert_eq!(held_blocks as u64 * BLOCK_SIZE as u64, st.bytes);
    assert_eq!(s.free_blocks() as usize + held_blocks, s.geometry().blocks as usize);
}

#[test]
fn directory_fills_up_and_drop_frees_a_slot() {
    let reg = region(1 << 20, 3);
    let s = &reg.store;
    let a = new_cache(s, 1, "a");
    let b = new_cache(s, 1, "b");
    let c = new_cache(s, 2, "c");
    // Slots that hold entries are not reclaimed.
    for r in [b, c] {
        set(s, r, "held", b"1", 10);
    }
    let free = s.free_blocks();
    set(s, a, "k", &[1; 300], 10);
    assert_eq!(s.find_or_create_slot(1, "d", &CacheConfig::default(), u32::MAX), Err(StoreError::DirectoryFull));
    s.drop_slot(a);
    assert_eq!(s.free_blocks(), free);
    assert!(!s.is_valid(a));
    let d = new_cache(s, 1, "d");
    assert_eq!(d.index, a.index);
    assert_ne!(d.incarnation, a.incarnation);
    assert_eq!(get(s, d, "k"), None);
}

#[test]
fn unused_slots_are_reclaimed_but_never_declared_held_or_pinned_ones() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let declared = CacheConfig { owner: 10, ..CacheConfig::default() };
    let d = s.find_or_create_slot(1, "declared", &declared, u32::MAX).unwrap();
    let held = new_cache(s, 1, "held");
    set(s, held, "k", b"1", 10);
    let pinned = new_cache(s, 1, "pinned");
    assert!(s.pin(pinned, 3));
    let empty = new_cache(s, 1, "empty");
    // The directory is full: the empty, undeclared, unpinned slot is the one reused.
    let fresh = new_cache(s, 2, "fresh");
    assert_eq!(fresh.index, empty.index);
    assert!(!s.is_valid(empty));
    assert!(!s.pin(empty, 3), "a commit that resolved the old slot must resolve again");
    assert!(s.is_valid(d) && s.is_valid(held) && s.is_valid(pinned));
    set(s, fresh, "k", b"1", 10);
    // Nothing else is reclaimable now: the pinned slot stays until unpinned.
    assert_eq!(s.find_or_create_slot(2, "more", &CacheConfig::default(), u32::MAX), Err(StoreError::DirectoryFull));
    s.unpin(pinned, 3);
    let more = new_cache(s, 2, "more");
    assert_eq!(more.index, pinned.index);
    // Hidden entries (a clear not yet reaped) still hold a slot.
    set(s, more, "k", b"1", 10);
    s.commit(more, 5).clear();
    assert_eq!(s.find_or_create_slot(3, "x", &CacheConfig::default(), u32::MAX), Err(StoreError::DirectoryFull));
}

#[test]
fn under_memory_pressure_the_entry_used_longest_ago_goes_first_across_caches() {
    // A cache read in full after every batch of writes to another keeps its entries;
    // a cache written once and never read loses its own. (Each list's push clock
    // counts only its own pushes, so it cannot rank caches against each other.)
    let reg = region(256 << 10, 4);
    let s = &reg.store;
    let (hot, cold, churn) = (new_cache(s, 1, "hot"), new_cache(s, 1, "cold"), new_cache(s, 1, "churn"));
    let mut now = 1_000_000;
    for i in 0..100 {
        set_at(s, cold, &format!("c{i}"), &[1; 100], NO_EXPIRY, u64::MAX, now);
    }
    now += 1_000_000;
    // A small hot cache: its own push clock advances slowly, which is what made
    // per-list clocks rank it as old.
    for i in 0..20 {
        set_at(s, hot, &format!("h{i}"), &[2; 100], NO_EXPIRY, u64::MAX, now);
    }
    for batch in 0..30 {
        now += 1_000_000;
        for i in 0..100 {
            set_at(s, churn, &format!("b{batch}-{i}"), &[3; 100], NO_EXPIRY, u64::MAX, now);
        }
        now += 1_000;
        for i in 0..20 {
            assert!(
                matches!(get_at(s, hot, &format!("h{i}"), now), Lookup::Hit(_)),
                "batch {batch}: hot entry h{i} was evicted"
            );
        }
    }
    let st = s.stats(cold, String::new());
    assert!(st.evictions > 0 && st.entries < 100, "the cold cache gave way: {st:?}");
}

#[test]
fn a_cache_keeps_to_its_byte_limit_by_evicting_its_own_entries() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let other = new_cache(s, 1, "other");
    for i in 0..50 {
        set(s, other, &format!("o{i}"), b"v", u64::MAX);
    }
    let config = CacheConfig { max_bytes: 10 * BLOCK_SIZE as u64, ..CacheConfig::default() };
    let capped = s.find_or_create_slot(1, "capped", &config, u32::MAX).unwrap();
    for i in 0..100 {
        set(s, capped, &format!("c{i}"), b"v", u64::MAX);
    }
    let st = s.stats(capped, String::new());
    assert_eq!((st.entries, st.bytes, st.evictions), (10, 10 * BLOCK_SIZE as u64, 90));
    assert_eq!(get(s, capped, "c99"), Some(b"v".to_vec()), "the newest stay");
    assert_eq!(s.stats(other, String::new()).entries, 50, "other caches are untouched");
    // A redeclaration with a lower limit applies at once.
    s.commit(capped, 0).set_config(&CacheConfig { max_bytes: 3 * BLOCK_SIZE as u64, ..CacheConfig::default() }, u64::MAX);
    assert_eq!(s.stats(capped, String::new()).entries, 3);
}

#[test]
fn when_memory_is_full_a_database_over_its_share_gives_way_first() {
    let reg = region(256 << 10, 4);
    let shared = unsafe_reattach(&reg.store).with_database_share(50);
    let s = &shared;
    let quiet = new_cache(s, 1, "quiet");
    // About a third of the pool, used long ago and never read again: by age alone
    // these would go first.
    let third = s.geometry().blocks as usize / 3 / 2;
    for i in 0..third {
        set_at(s, quiet, &format!("q{i}"), &[1; 100], NO_EXPIRY, u64::MAX, 1_000_000);
    }
    let noisy = new_cache(s, 2, "noisy");
    for i in 0..5 * third {
        set_at(s, noisy, &format!("n{i}"), &[2; 100], NO_EXPIRY, u64::MAX, 2_000_000 + i as i64 * 1000);
    }
    assert_eq!(s.stats(quiet, String::new()).entries, third as u64, "the quiet database kept everything");
    assert!(s.stats(noisy, String::new()).evictions > 0);
    // One transaction prepares all its entries before installing any: prepared
    // entries count toward its database's share too.
    let mut prepared = Vec::new();
    for i in 0..2 * third {
        let key = format!("p{i}");
        let h = hash(noisy.index, key.as_bytes());
        prepared.push(s.prepare(None, noisy, key.as_bytes(), &[3; 100], h, NO_EXPIRY, 9_000_000).unwrap().expect("room"));
    }
    assert_eq!(s.stats(quiet, String::new()).entries, third as u64, "still kept while a transaction prepares");
    for p in prepared {
        s.discard(p);
    }
}

#[test]
fn a_database_holds_at_most_its_share_of_slots() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    for n in ["a", "b"] {
        let r = new_cache(s, 1, n);
        set(s, r, "k", b"1", 10);
    }
    assert_eq!(
        s.find_or_create_slot(1, "c", &CacheConfig::default(), 2),
        Err(StoreError::DatabaseFull { per_database: 2 })
    );
    assert!(s.find_or_create_slot(2, "c", &CacheConfig::default(), 2).is_ok(), "other databases are not limited");
    // Over its share, a database reuses one of its own unused slots.
    let r = s.find_or_create_slot(3, "x", &CacheConfig::default(), 2).unwrap();
    s.find_or_create_slot(3, "y", &CacheConfig::default(), 2).unwrap();
    let z = s.find_or_create_slot(3, "z", &CacheConfig::default(), 2).unwrap();
    assert_eq!(z.index, r.index);
}

#[test]
fn an_entry_over_half_the_pool_is_refused() {
    let reg = region(256 << 10, 2);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let big = vec![0u8; 200 << 10];
    assert_eq!(s.prepare(None, r, b"k", &big, 1, NO_EXPIRY, 0), Err(StoreError::TooLarge));
    // max_payload is the exact limit: one byte more is refused, that much fits, and
    // it can be stored even when the pool is full of other entries.
    let max = s.max_payload();
    let at_limit = vec![7u8; max - 1];
    assert_eq!(s.prepare(None, r, b"k", &[at_limit.as_slice(), &[7, 7]].concat(), 1, NO_EXPIRY, 0), Err(StoreError::TooLarge));
    for i in 0..10_000 {
        set(s, r, &format!("filler{i}"), b"x", u64::MAX);
    }
    set(s, r, "k", &at_limit, u64::MAX);
    assert_eq!(get(s, r, "k").map(|v| v.len()), Some(max - 1));
}

#[test]
fn a_declaration_that_changes_the_key_encoding_clears_the_cache() {
    let reg = region(1 << 20, 2);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set(s, r, "k", b"v", 10);
    let shared = CacheConfig::new(0, 0, false, "").unwrap();
    s.commit(r, 100).set_config(&shared, 10);
    assert_eq!(get(s, r, "k"), None, "context true -> false clears");
    set(s, r, "k", b"v", 10);
    s.commit(r, 200).set_config(&CacheConfig::new(5, 0, false, "").unwrap(), 10);
    assert_eq!(get(s, r, "k"), Some(b"v".to_vec()), "a new size limit keeps the entries");
    s.commit(r, 300).set_config(&CacheConfig::new(5, 0, false, "app.lang").unwrap(), 10);
    assert_eq!(get(s, r, "k"), None, "new ignored keys clear");
    assert_eq!(s.last_clear(r), Some(300));
}

#[test]
fn config_round_trips_and_versions() {
    let reg = region(1 << 20, 2);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let v0 = s.config_version(r);
    let cfg = CacheConfig::new(5, 1_000_000, false, "role,app.lang").unwrap();
    s.set_config(r, &cfg);
    assert_ne!(s.config_version(r), v0);
    assert_eq!(s.config(r), cfg);
    assert_eq!(s.config(r).ignored(), "role,app.lang");
}

#[test]
fn geometry_fits_the_region() {
    for mb in [1usize, 8, 64, 1024] {
        let g = Geometry::new(mb << 20, 1024).unwrap();
        assert!(g.blocks_off + g.blocks as usize * BLOCK_SIZE <= g.total);
        assert!(g.buckets.is_power_of_two());
        // At least 90% of a large region is block pool, with a bucket per two blocks.
        if mb >= 64 {
            assert!(g.blocks as usize * BLOCK_SIZE * 10 >= g.total * 9, "{mb} MB: {g:?}");
            assert!(g.buckets as usize * 2 >= g.blocks as usize, "{mb} MB: {g:?}");
        }
    }
    assert_eq!(Geometry::new(4096, 1024), None);
}

#[test]
fn fence_buckets_share_the_partition_of_their_hash_bucket() {
    for mb in [1usize, 8, 64] {
        let g = Geometry::new(mb << 20, 64).unwrap();
        assert!(g.fence_buckets.is_power_of_two() && g.fence_buckets as usize >= PARTITIONS);
        assert!(g.fence_buckets <= g.buckets);
        for h in [0u64, 1, 127, 128, 0xdead_beef_1234_5678, u64::MAX] {
            let bucket = (h as u32) & (g.buckets - 1);
            let fence = (h as u32) & (g.fence_buckets - 1);
            assert_eq!(bucket as usize % PARTITIONS, fence as usize % PARTITIONS);
        }
    }
}

fn prepared(s: &Store<NoLocks>, r: SlotRef, key: &str, value: &[u8]) -> (Prepared, u64) {
    let h = hash(r.index, key.as_bytes());
    (s.prepare(None, r, key.as_bytes(), value, h, NO_EXPIRY, 0).unwrap().expect("room"), h)
}

#[test]
fn a_fill_older_than_a_committed_delete_or_overwrite_is_stale() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let (p, h) = prepared(s, r, "k", b"old");
    // Another transaction deleted k at 100; our fill began at 90 (before) or 100.
    assert!(s.commit(r, 100).delete(b"k", h) == false);
    let c = s.commit(r, 120);
    assert!(c.is_stale(h, 90));
    assert!(c.is_stale(h, 100), "a tie counts as older");
    assert!(!c.is_stale(h, 101));
    assert!(!c.is_stale(hash(r.index, b"other"), 90), "other keys are not fenced");
    c.drop_stale(p, b"k");
    drop(c);
    assert_eq!(get(s, r, "k"), None);
    // An installed overwrite fences older fills of the same key as well.
    set_at(s, r, "k", b"new", NO_EXPIRY, 10, 200);
    assert!(s.commit(r, 300).is_stale(h, 150));
    let st = s.stats(r, String::new());
    assert_eq!((st.stale_sets, st.entries), (1, 1));
}

#[test]
fn a_dropped_stale_fill_still_invalidates_its_key() {
    // The README's trigger pattern: T1 queues a delete of k (its UPDATE), then reads
    // through the cache and fills k; meanwhile T2 fills k with the old value and
    // commits. T1's fill is stale, but its delete must not be lost with it.
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set_at(s, r, "k", b"old", NO_EXPIRY, 10, 200);
    // One key: judged and applied in one step.
    let (p, _) = prepared(s, r, "k", b"new");
    assert!(!s.commit_one(r, 300).install_if_fresh(None, p, b"k", 10, 150));
    assert_eq!(get(s, r, "k"), None, "the older value is gone with the stale fill");
    assert!(s.commit(r, 310).is_stale(hash(r.index, b"k"), 300), "and the key is fenced as by a delete");
    // Several keys: judged first, then dropped with the same effect.
    set_at(s, r, "k", b"old", NO_EXPIRY, 10, 400);
    set_at(s, r, "j", b"kept", NO_EXPIRY, 10, 400);
    let (p, h) = prepared(s, r, "k", b"new");
    let c = s.commit(r, 500);
    assert!(c.is_stale(h, 350));
    c.drop_stale(p, b"k");
    drop(c);
    assert_eq!(get(s, r, "k"), None);
    assert_eq!(get(s, r, "j").as_deref(), Some(&b"kept"[..]), "other keys stay");
    let st = s.stats(r, String::new());
    assert_eq!((st.stale_sets, st.deletes), (2, 0), "counted as stale fills, not deletes");
}

#[test]
fn a_clear_fences_every_key_of_its_cache_only() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let a = new_cache(s, 1, "a");
    let b = new_cache(s, 1, "b");
    s.commit(a, 100).clear();
    let ha = hash(a.index, b"k");
    let hb = hash(b.index, b"k");
    assert!(s.commit(a, 110).is_stale(ha, 50));
    assert!(!s.commit(a, 110).is_stale(ha, 101));
    assert!(!s.commit(b, 110).is_stale(hb, 50));
}

#[test]
fn a_database_fence_covers_its_caches_even_ones_created_later() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    s.raise_db_fence(7, 100);
    let later = new_cache(s, 7, "later");
    let other_db = new_cache(s, 8, "later");
    let h = hash(later.index, b"k");
    assert!(s.commit(later, 110).is_stale(h, 99));
    assert!(!s.commit(later, 110).is_stale(h, 101));
    assert!(!s.commit(other_db, 110).is_stale(hash(other_db.index, b"k"), 99));
}

fn sweep_all(s: &Store<NoLocks>, now: i64) -> Sweep {
    let mut out = Sweep::default();
    for p in 0..PARTITIONS {
        let mut from = 0;
        while from < s.buckets_per_partition() {
            from = s.sweep_slice(p, from, 7, now, &mut out);
        }
    }
    out
}

#[test]
fn a_sweep_reclaims_expired_and_cleared_entries_nobody_reads() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let (a, b) = (new_cache(s, 1, "a"), new_cache(s, 1, "b"));
    let free = s.free_blocks();
    set_at(s, a, "short", b"v", 100, 10, 0);
    set_at(s, a, "long", b"v", 1000, 10, 0);
    set(s, a, "forever", b"v", 10);
    set(s, b, "cleared", b"v", 10);
    s.commit(b, 50).clear();
    let changes = s.changes();
    let swept = sweep_all(s, 500);
    assert_eq!(swept, Sweep { expired: 1, hidden: 1, ttl_left: 1, next_expiry: 1000 });
    assert_eq!(s.free_blocks(), free - 2, "two entries are left");
    let st = s.stats(a, String::new());
    assert_eq!((st.entries, st.expirations, st.bytes), (2, 1, 2 * BLOCK_SIZE as u64));
    assert_eq!(get(s, a, "forever"), Some(b"v".to_vec()));
    // Nothing new happened: the counter the worker watches stands still.
    assert_eq!(s.changes(), changes);
    set_at(s, a, "ttl", b"v", 2000, 10, 600);
    assert_ne!(s.changes(), changes, "an install with a TTL moves it");
}

#[test]
fn a_detached_database_vanishes_at_once_and_a_new_one_with_its_oid_starts_empty() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let old = new_cache(s, 7, "c");
    let other = new_cache(s, 8, "c");
    set(s, old, "k", b"old", 10);
    set(s, other, "k", b"kept", 10);
    let free = s.free_blocks();
    s.detach_database(7);
    assert!(!s.is_valid(old));
    assert_eq!(s.find_slot(7, "c"), None);
    let again = new_cache(s, 7, "c");
    assert_ne!(again.index, old.index, "the old slot is still being freed");
    assert_eq!(get(s, again, "k"), None);
    assert_eq!(s.stats(again, String::new()).last_clear, None, "the drop is no clear of the new database");
    assert_eq!(s.memory().databases, 2);
    assert_eq!(s.finish_drops(), 1);
    assert_eq!(s.free_blocks(), free + 1);
    assert_eq!(get(s, other, "k"), Some(b"kept".to_vec()));
    // The freed slot is reused by the next new cache.
    assert_eq!(new_cache(s, 9, "d").index, old.index);
}

#[test]
fn memory_counts_bytes_entries_and_databases() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let m0 = s.memory();
    assert_eq!((m0.used_bytes, m0.entries, m0.databases), (0, 0, 0));
    let a = new_cache(s, 1, "a");
    let b = new_cache(s, 2, "b");
    set(s, a, "k", &[1; 100], 10);
    set(s, b, "k", &[1; 1000], 10);
    let m = s.memory();
    assert_eq!(m.total_bytes, 1 << 20);
    assert_eq!(m.used_bytes, (2 + 9) * BLOCK_SIZE as u64);
    assert_eq!((m.entries, m.databases), (2, 2));
}

#[test]
fn reset_stats_zeroes_counters_but_not_contents() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set(s, r, "k", b"v", 10);
    get(s, r, "k");
    s.count_hit(r, 3);
    s.reset_stats(r);
    let st = s.stats(r, String::new());
    assert_eq!((st.hits, st.sets, st.entries), (0, 0, 1));
}

#[test]
fn a_new_cache_inherits_the_last_database_wide_clear() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    assert_eq!(s.stats(new_cache(s, 1, "before"), String::new()).last_clear, None);
    s.raise_db_fence(1, 500);
    assert_eq!(s.stats(new_cache(s, 1, "after"), String::new()).last_clear, Some(500));
}

#[test]
fn a_single_key_commit_judges_and_installs_in_one_step() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let free = s.free_blocks();
    let (p, h) = prepared(s, r, "k", b"stale");
    s.commit_one(r, 100).delete(b"k", h);
    assert!(!s.commit_one(r, 120).install_if_fresh(None, p, b"k", 10, 90), "deleted at 100, filled from 90");
    assert_eq!(s.free_blocks(), free, "the stale entry was freed");
    // The dropped fill invalidated k at its own commit (120): a fill from before
    // that is stale too, one from after it installs.
    let (p, _) = prepared(s, r, "k", b"early");
    assert!(!s.commit_one(r, 125).install_if_fresh(None, p, b"k", 10, 110));
    let (p, _) = prepared(s, r, "k", b"fresh");
    assert!(s.commit_one(r, 130).install_if_fresh(None, p, b"k", 10, 126));
    assert_eq!(get(s, r, "k"), Some(b"fresh".to_vec()));
    // Its install is an overwrite: a fill that began before it is stale now, and
    // takes the value it would have replaced with it.
    let (p, _) = prepared(s, r, "k", b"late");
    assert!(!s.commit_one(r, 140).install_if_fresh(None, p, b"k", 10, 128));
    assert_eq!(get(s, r, "k"), None);
    assert_eq!(s.stats(r, String::new()).stale_sets, 3);
}

#[test]
fn a_lookup_waits_on_the_commit_lock_only_while_a_commit_of_several_writes_applies() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set(s, r, "a", b"1", 10);
    let locks = shared_commit_locks();
    assert_eq!(get(s, r, "a"), Some(b"1".to_vec()));
    assert_eq!(shared_commit_locks(), locks, "no commit applying: the lookup takes no commit lock");
    let (p, _) = prepared(s, r, "b", b"2");
    let commit = s.commit(r, 10);
    commit.install(None, p, b"b", 10);
    assert_eq!(get(s, r, "a"), Some(b"1".to_vec()));
    assert_eq!(shared_commit_locks(), locks + 1, "a commit is applying: the lookup waits for it");
    drop(commit);
    assert_eq!(get(s, r, "b"), Some(b"2".to_vec()));
    assert_eq!(shared_commit_locks(), locks + 1, "the commit is over");
    let single = s.commit_one(r, 20);
    assert_eq!(get(s, r, "b"), Some(b"2".to_vec()));
    assert_eq!(shared_commit_locks(), locks + 2, "the single-key commit's own shared hold only");
    drop(single);
}

#[test]
fn hits_on_the_newer_half_of_the_list_do_not_reorder_it() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    for i in 0..8 {
        set(s, r, &format!("k{i}"), b"v", 8);
    }
    // k4..k7 are the newer half: reading k4 leaves it where it is, so four more
    // entries evict k1..k4; k0, read from the older half, moved to the head.
    get(s, r, "k4");
    get(s, r, "k0");
    for i in 8..12 {
        set(s, r, &format!("k{i}"), b"v", 8);
    }
    let kept: Vec<bool> = (0..8).map(|i| get(s, r, &format!("k{i}")).is_some()).collect();
    assert_eq!(kept, [true, false, false, false, false, true, true, true]);
}

/// Which of `keys` the entries on `bucket`'s chain hold, first to last.
fn chain_keys<'k>(s: &Store<NoLocks>, bucket: u32, keys: &[&'k str]) -> Vec<&'k str> {
    let mut found = Vec::new();
    let mut e = s.bucket_head(bucket).load(Ordering::Relaxed);
    while e != NIL {
        found.push(*keys.iter().find(|k| s.key_equals(e, k.as_bytes())).expect("a known key"));
        // SAFETY: single-threaded; entries on a chain are allocated.
        e = unsafe { (*s.head(e)).chain_next };
    }
    found
}

#[test]
fn chains_keep_the_order_in_which_keys_came() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    // Three keys of one bucket.
    let bucket = s.bucket_of(hash(r.index, b"k0"));
    let keys: Vec<String> = (1..)
        .map(|i| format!("k{i}"))
        .filter(|k| s.bucket_of(hash(r.index, k.as_bytes())) == bucket)
        .take(2)
        .collect();
    let (a, b, c) = ("k0", keys[0].as_str(), keys[1].as_str());
    let chain = || chain_keys(s, bucket, &[a, b, c]);
    for k in [a, b, c] {
        set(s, r, k, b"v", 100);
    }
    assert_eq!(chain(), [a, b, c], "new keys go to the end");
    // An overwrite takes the place of the entry it replaces, a delete leaves a gap.
    set(s, r, b, b"longer value", 100);
    assert_eq!(chain(), [a, b, c]);
    set(s, r, a, b"w", 100);
    assert_eq!(chain(), [a, b, c]);
    assert!(s.commit(r, 0).delete(b.as_bytes(), hash(r.index, b.as_bytes())));
    assert_eq!(chain(), [a, c]);
    set(s, r, b, b"v", 100);
    assert_eq!(chain(), [a, c, b]);
    for k in [a, b, c] {
        assert!(get(s, r, k).is_some(), "{k} found");
    }
}
