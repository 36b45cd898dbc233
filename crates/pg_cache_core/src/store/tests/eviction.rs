//! Eviction: size and byte limits, memory pressure across caches and databases, LRU order.

use super::*;

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
        prepared.push(s.prepare(None, noisy, &entry(key.as_bytes(), &[3; 100], h, NO_EXPIRY), 9_000_000).unwrap().expect("room"));
    }
    assert_eq!(s.stats(quiet, String::new()).entries, third as u64, "still kept while a transaction prepares");
    for p in prepared {
        s.discard(p);
    }
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

#[test]
fn with_a_thousand_caches_eviction_takes_the_oldest_entries_without_ranking_every_cache_each_time() {
    // Entries written round-robin over 1,000 caches, one a millisecond: memory
    // pressure must take them oldest first, across caches, as a full ranking did;
    // but ranking every cache on each eviction (1,000 tails read) is what made an
    // evicting write cost 197 µs at 10,000 caches.
    let caches = 1000;
    let reg = region(4 << 20, caches + 1);
    let s = &reg.store;
    let slots: Vec<SlotRef> = (0..caches).map(|j| new_cache(s, 1, &format!("c{j}"))).collect();
    let key = |i: usize| format!("k{i}");
    let evictions = |s: &Store<NoLocks>| -> u64 { slots.iter().map(|&r| s.stats(r, String::new()).evictions).sum() };
    let mut now = 1_000_000_000;
    let write = |i: usize, now: &mut i64| {
        set_at(s, slots[i % caches as usize], &key(i), b"v", NO_EXPIRY, u64::MAX, *now);
        *now += 1000;
    };
    // One block an entry: memory is full after `blocks` writes.
    let full = s.geometry().blocks as usize;
    for i in 0..full {
        write(i, &mut now);
    }
    let read_before = policy::TAILS_READ.get();
    let more = 3000;
    for i in full..full + more {
        write(i, &mut now);
    }
    let i = full + more;
    let per_eviction = (policy::TAILS_READ.get() - read_before) as f64 / more as f64;
    assert!(per_eviction < 16.0, "{per_eviction:.1} tails read per eviction, of {caches} caches");
    let gone = evictions(s) as usize;
    assert!(gone >= more, "{gone} evictions for {more} writes into full memory");
    let now_get = now;
    for j in 0..i {
        let present = matches!(get_at(s, slots[j % caches as usize], &key(j), now_get), Lookup::Hit(_));
        assert_eq!(present, j >= gone, "entry {j} of {i}: the oldest {gone} go first");
    }
}

#[test]
fn entries_hidden_by_a_clear_are_taken_before_live_ones_even_mid_batch() {
    let reg = region(1 << 20, 400);
    let s = &reg.store;
    let old: Vec<SlotRef> = (0..300).map(|j| new_cache(s, 1, &format!("old{j}"))).collect();
    let young = new_cache(s, 1, "young");
    let full = s.geometry().blocks as usize;
    let mut now = 1_000_000_000;
    // Old entries across 300 caches, then a young cache with the newest 300.
    for i in 0..full - 300 {
        set_at(s, old[i % 300], &format!("k{i}"), b"v", NO_EXPIRY, u64::MAX, now);
        now += 1000;
    }
    for i in 0..300 {
        set_at(s, young, &format!("y{i}"), b"v", NO_EXPIRY, u64::MAX, now);
        now += 1000;
    }
    // Memory is full: this write ranks the caches and evicts the oldest entry.
    set_at(s, old[0], "first", b"v", NO_EXPIRY, u64::MAX, now);
    assert_eq!(get_at(s, old[0], "k0", now), Lookup::Miss);
    // Clearing the young cache makes its entries dead: the next writes take them,
    // not the old live entries the batch ranked first.
    s.commit(young, now).clear();
    for i in 0..250 {
        set_at(s, old[1], &format!("new{i}"), b"v", NO_EXPIRY, u64::MAX, now);
    }
    for i in 1..full - 300 {
        assert!(matches!(get_at(s, old[i % 300], &format!("k{i}"), now), Lookup::Hit(_)), "live entry k{i} was evicted before dead ones");
    }
}
