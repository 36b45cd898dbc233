//! The LFU policy (policy/lfu.rs): scan resistance, aging, and eviction across
//! caches of both policies.

use super::*;

fn cache_with(s: &Store<NoLocks>, name: &str, policy: Policy) -> SlotRef {
    let config = CacheConfig { policy, ..CacheConfig::default() };
    s.find_or_create_slot(1, name, &config, u32::MAX).unwrap()
}

/// A hot set read again and again, then a one-time scan of many keys through a
/// cache of `limit` entries: how many of the hot set are still there.
fn hot_left_after_a_scan(policy: Policy) -> usize {
    let reg = region(8 << 20, 8);
    let s = &reg.store;
    let r = cache_with(s, "c", policy);
    let limit = 100;
    for i in 0..50 {
        set_at(s, r, &format!("hot{i}"), b"v", NO_EXPIRY, limit, 10);
    }
    for _ in 0..5 {
        for i in 0..50 {
            assert!(matches!(get_at(s, r, &format!("hot{i}"), 20), Lookup::Hit(_)));
        }
    }
    for i in 0..2000 {
        set_at(s, r, &format!("scan{i}"), b"v", NO_EXPIRY, limit, 30 + i);
    }
    (0..50).filter(|i| matches!(get_at(s, r, &format!("hot{i}"), 5000), Lookup::Hit(_))).count()
}

#[test]
fn under_lfu_a_scan_passes_through_and_the_hot_set_stays() {
    assert_eq!(hot_left_after_a_scan(Policy::Lfu), 50, "LFU keeps every hot entry");
    assert_eq!(hot_left_after_a_scan(Policy::Lru), 0, "LRU lets the scan push them all out");
}

#[test]
fn a_once_popular_entry_ages_out() {
    let reg = region(8 << 20, 8);
    let s = &reg.store;
    let r = cache_with(s, "c", Policy::Lfu);
    let limit = 20;
    const MINUTE: i64 = 60_000_000;
    set_at(s, r, "once", b"v", NO_EXPIRY, limit, 1);
    for _ in 0..100 {
        assert!(matches!(get_at(s, r, "once", 2), Lookup::Hit(_)));
    }
    let present = || s.contains(r, b"once", hash(r.index, b"once"), View::LATEST, || 0);
    // Then never read again, while a working set that changes every minute is
    // written and read twice.
    let mut gone_at = None;
    for m in 1..120 {
        for j in 0..10 {
            let k = format!("k{m}:{j}");
            set_at(s, r, &k, b"v", NO_EXPIRY, limit, m * MINUTE);
            let _ = get_at(s, r, &k, m * MINUTE);
            let _ = get_at(s, r, &k, m * MINUTE);
        }
        if !present() {
            gone_at = Some(m);
            break;
        }
    }
    let gone_at = gone_at.expect("the once-popular entry was never evicted");
    assert!(gone_at > 2, "it went after {gone_at} minutes: its uses did not protect it");
}

/// Hit ratio of a Zipf(0.99) trace over `keys` keys through a cache of `limit`
/// entries of `policy` (fill on miss).
fn zipf_hit_ratio(policy: Policy, keys: usize, limit: u64, requests: usize) -> f64 {
    let reg = region(64 << 20, 8);
    let s = &reg.store;
    let r = cache_with(s, "z", policy);
    // Inverse-CDF sampling over precomputed weights; a fixed xorshift seed.
    let weights: Vec<f64> = (1..=keys).map(|k| 1.0 / (k as f64).powf(0.99)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(keys);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut hits = 0;
    for t in 0..requests {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        let k = cdf.partition_point(|&c| c < u).min(keys - 1);
        let key = format!("k{k}");
        if matches!(get_at(s, r, &key, t as i64), Lookup::Hit(_)) {
            hits += 1;
        } else {
            set_at(s, r, &key, b"v", NO_EXPIRY, limit, t as i64);
        }
    }
    hits as f64 / requests as f64
}

#[test]
fn on_a_zipf_trace_lfu_hits_at_least_as_often_as_lru() {
    let (lru, lfu) = (zipf_hit_ratio(Policy::Lru, 20_000, 2_000, 200_000), zipf_hit_ratio(Policy::Lfu, 20_000, 2_000, 200_000));
    eprintln!("Zipf 0.99, 20,000 keys, 2,000 entries: LRU {lru:.3}, LFU {lfu:.3}");
    assert!(lfu >= lru, "LFU {lfu:.3} < LRU {lru:.3}");
}

#[test]
fn memory_pressure_evicts_from_caches_of_both_policies() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let (lru, lfu) = (cache_with(s, "lru", Policy::Lru), cache_with(s, "lfu", Policy::Lfu));
    let value = vec![b'v'; 300];
    // Far more than the region holds, alternating between the caches.
    for i in 0..20_000i64 {
        let r = if i % 2 == 0 { lru } else { lfu };
        set_at(s, r, &format!("k{i}"), &value, NO_EXPIRY, u64::MAX, i);
    }
    let (a, b) = (s.stats(lru, String::new()), s.stats(lfu, String::new()));
    assert!(a.evictions > 1000 && b.evictions > 1000, "lru {} / lfu {} evictions", a.evictions, b.evictions);
    let ratio = a.entries as f64 / b.entries as f64;
    assert!((0.5..2.0).contains(&ratio), "entries {} / {}: one cache starved the other", a.entries, b.entries);
}

#[test]
fn the_shared_clock_follows_real_times_from_its_start() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    // A time of today: its wrapping milliseconds are more than 2^31 past 0.
    let today = 850_000_000_000_000i64;
    s.advance_clock(today);
    let r = cache_with(s, "c", Policy::Lfu);
    set_at(s, r, "k", b"v", NO_EXPIRY, u64::MAX, today);
    assert!(matches!(get_at(s, r, "k", today + 1_000), Lookup::Hit(_)));
    // SAFETY: reading the clock of a region this test owns.
    let clock = unsafe { (*s.header()).clock.load(std::sync::atomic::Ordering::Relaxed) };
    assert_eq!(clock, ms(today), "the clock moved to today");
}
