//! The directory of cache slots: isolation, reclaiming, shares, settings, counters.

use super::*;

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
fn directory_fills_up_and_drop_frees_a_slot() {
    let reg = region(1 << 20, 3);
    let s = &reg.store;
    let a = new_cache(s, 3, "a");
    let b = new_cache(s, 1, "b");
    let c = new_cache(s, 2, "c");
    // Slots that hold entries are not reclaimed.
    for r in [b, c] {
        set(s, r, "held", b"1", 10);
    }
    let free = s.free_blocks();
    set(s, a, "k", &[1; 300], 10);
    assert_eq!(s.find_or_create_slot(1, "d", &CacheConfig::default(), u32::MAX), Err(StoreError::DirectoryFull));
    s.invalidate(&Invalidation::DropCaches { db: 3, fence: true }, 0);
    assert_eq!(s.finish_drops(), 1);
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
fn a_directory_of_ten_thousand_names_finds_each_one_through_reclaims() {
    let n = 10_000u32;
    let reg = region(24 << 20, n);
    let s = &reg.store;
    let name = |i: u32| (1 + i % 3, format!("cache{i}"));
    let mut slots = Vec::new();
    for i in 0..n {
        let (db, c) = name(i);
        slots.push(s.find_or_create_slot(db, &c, &CacheConfig::default(), u32::MAX).unwrap());
    }
    // Full: each new name reclaims an empty, undeclared slot, which leaves the index.
    // (Each new cache gets an entry, so that the next takes an old slot, not its.)
    let fresh: Vec<SlotRef> = (0..2_000)
        .map(|i| {
            let r = s.find_or_create_slot(9, &format!("new{i}"), &CacheConfig::default(), u32::MAX).unwrap();
            set(s, r, "k", b"v", 10);
            r
        })
        .collect();
    let mut reclaimed = 0;
    for i in 0..n {
        let (db, c) = name(i);
        match s.find_slot(db, &c) {
            Some(r) => assert_eq!(r, slots[i as usize], "{c} found in its own slot"),
            None => reclaimed += 1,
        }
        assert_eq!(s.find_slot(db + 10, &c), None, "same name, another database");
    }
    assert_eq!(reclaimed, 2_000);
    for (i, r) in fresh.iter().enumerate() {
        assert_eq!(s.find_slot(9, &format!("new{i}")), Some(*r));
    }
}
