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
fn a_database_gets_its_share_back_when_its_caches_are_dropped_or_reclaimed() {
    let reg = region(1 << 20, 3);
    let s = &reg.store;
    let create = |db, name: &str| s.find_or_create_slot(db, name, &CacheConfig::default(), 2);
    create(5, "e").unwrap();
    for n in ["a", "b"] {
        set(s, create(1, n).unwrap(), "k", b"1", 10);
    }
    // The directory is full: database 2 takes database 5's empty slot.
    set(s, create(2, "c").unwrap(), "k", b"1", 10);
    assert_eq!(s.find_slot(5, "e"), None);
    assert_eq!(create(1, "more"), Err(StoreError::DatabaseFull { per_database: 2 }));
    s.invalidate(&Invalidation::DropCaches { db: 1, fence: false }, 0);
    s.finish_drops();
    // Dropped caches and a reclaimed one no longer count against their databases.
    for (db, n) in [(5, "p"), (5, "q")] {
        set(s, create(db, n).unwrap(), "k", b"1", 10);
    }
    s.invalidate(&Invalidation::DropCaches { db: 5, fence: false }, 0);
    s.finish_drops();
    assert!(create(1, "a").is_ok() && create(1, "b").is_ok());
}

#[test]
fn slot_counts_per_database_follow_creations_drops_and_reclaims() {
    let reg = region(1 << 20, 16);
    let s = &reg.store;
    let mut seed = 7u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..2_000 {
        let db = 1 + next(40) as u32;
        match next(4) {
            0 => {
                s.invalidate(&Invalidation::DropCaches { db, fence: false }, 0);
                s.finish_drops();
            }
            op => {
                if let Ok(r) = s.find_or_create_slot(db, &format!("c{}", next(6)), &CacheConfig::default(), 4) {
                    if op == 1 {
                        set(s, r, "k", b"1", 10);
                    }
                }
            }
        }
        for db in 1..=40 {
            assert_eq!(s.db_slot_count(db) as usize, s.slots_of(db).len(), "database {db} after round {round}");
        }
    }
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
    s.count_skipped(Some(r));
    s.count_skipped(None);
    assert_eq!(s.stats(r, String::new()).skipped, 1);
    assert_eq!(s.memory().skipped_without_slot, 1, "a skip without a cache is counted server-wide");
    s.reset_stats(r);
    let st = s.stats(r, String::new());
    assert_eq!((st.hits, st.sets, st.skipped, st.entries), (0, 0, 0, 1));
}

#[test]
fn a_directory_of_seventy_thousand_names_finds_each_one_through_reclaims() {
    // More than 65,535: 500 databases of 200 caches need 32-bit slot indexes.
    let n = 70_000u32;
    let reg = region(100 << 20, n);
    let s = &reg.store;
    let name = |i: u32| (1 + i % 3, format!("cache{i}"));
    let mut slots = Vec::new();
    for i in 0..n {
        let (db, c) = name(i);
        slots.push(s.find_or_create_slot(db, &c, &CacheConfig::default(), u32::MAX).unwrap());
    }
    assert_eq!(s.index_sizes(), (n as usize, 3));
    // Entries of caches past slot 65,535 are theirs, not those of slot index % 65,536.
    for i in [0, 4_464, 65_535, 65_536, 69_999] {
        set(s, slots[i], "k", format!("v{i}").as_bytes(), 10);
    }
    for i in [0, 4_464, 65_535, 65_536, 69_999] {
        assert_eq!(get(s, slots[i], "k"), Some(format!("v{i}").into_bytes()));
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
    // Nothing is left behind in the indexes: one name per slot, four databases.
    assert_eq!(s.index_sizes(), (n as usize, 4));
    let per_db: Vec<usize> = [1, 2, 3, 9].iter().map(|&db| s.slots_of(db).len()).collect();
    assert_eq!(per_db.iter().sum::<usize>(), n as usize);
    assert_eq!(per_db[3], 2_000);
}

#[test]
fn a_redeclaration_forgets_no_fence() {
    use std::sync::atomic::Ordering;
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    // A key fence the table forgot to make room (in the cache's floor), at 100.
    s.slot(r.index).list.key_floor.store(100, Ordering::Relaxed);
    s.slot(r.index).list.invalidated_at.store(100, Ordering::Relaxed);
    s.commit(r, 150).set_config(&CacheConfig { size_limit: 5, ..CacheConfig::default() }, 5);
    assert!(s.commit(r, 200).is_stale(hash(r.index, b"k"), 50), "a fill that began before it is still stale");
    assert_eq!(s.slot(r.index).list.invalidated_at.load(Ordering::Relaxed), 100, "a drop of the slot still fences");
}
