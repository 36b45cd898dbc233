//! Entries round-trip; the allocator and the reserve; sizes and memory.

use super::*;

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
    let p = s.prepare(Some(res), r, &entry(key.as_bytes(), value, h, NO_EXPIRY), 0).unwrap().expect("room");
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
    while s.prepare(None, r, &entry(format!("fill{n}").as_bytes(), b"v", n, NO_EXPIRY), 0).unwrap().is_some() && n < 1 << 20 {
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
fn an_entry_over_half_the_pool_is_refused() {
    let reg = region(256 << 10, 2);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let big = vec![0u8; 200 << 10];
    assert_eq!(s.prepare(None, r, &entry(b"k", &big, 1, NO_EXPIRY), 0), Err(StoreError::TooLarge));
    // max_payload is the exact limit: one byte more is refused, that much fits, and
    // it can be stored even when the pool is full of other entries.
    let max = s.max_payload();
    let at_limit = vec![7u8; max - 1];
    assert_eq!(s.prepare(None, r, &entry(b"k", &[at_limit.as_slice(), &[7, 7]].concat(), 1, NO_EXPIRY), 0), Err(StoreError::TooLarge));
    for i in 0..10_000 {
        set(s, r, &format!("filler{i}"), b"x", u64::MAX);
    }
    set(s, r, "k", &at_limit, u64::MAX);
    assert_eq!(get(s, r, "k").map(|v| v.len()), Some(max - 1));
}

#[test]
fn geometry_fits_the_region() {
    // A slot takes about 1 kB of the region: 1 MB holds 256 of them and entries.
    for (mb, slots) in [(1usize, 256), (8, 1024), (64, 4096), (1024, 4096)] {
        let g = Geometry::new(mb << 20, slots).unwrap();
        assert!(g.blocks_off + g.blocks as usize * BLOCK_SIZE <= g.total);
        assert!(g.buckets.is_power_of_two());
        // At least 90% of a large region is block pool, with a bucket per two blocks.
        if mb >= 64 {
            assert!(g.blocks as usize * BLOCK_SIZE * 10 >= g.total * 9, "{mb} MB: {g:?}");
            assert!(g.buckets as usize * 2 >= g.blocks as usize, "{mb} MB: {g:?}");
        }
    }
    assert_eq!(Geometry::new(4096, 1024), None);
    assert_eq!(Geometry::new(1 << 20, 1024), None, "1,024 slots need more than 1 MB");
    eprintln!("a cache slot takes {} bytes of the region", std::mem::size_of::<CacheSlot>() + STRIPES * 24);
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
