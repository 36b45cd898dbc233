//! TTL expiry, sweeps, dropped databases.

use super::*;

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

/// What a worker pass does: reclaim hidden entries, sweep the partitions due.
fn worker_pass(s: &Store<NoLocks>, now: i64) -> (u64, Sweep, usize) {
    let hidden = s.reclaim_hidden(now);
    let mut out = Sweep::default();
    let mut swept = 0;
    for p in 0..PARTITIONS {
        if s.partition_due(p) <= now {
            s.sweep_partition(p, 7, now, &mut out);
            swept += 1;
        }
    }
    (hidden, out, swept)
}

#[test]
fn a_worker_pass_reclaims_expired_and_cleared_entries_nobody_reads() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let (a, b) = (new_cache(s, 1, "a"), new_cache(s, 1, "b"));
    let free = s.free_blocks();
    set_at(s, a, "short", b"v", 100, 10, 0);
    set_at(s, a, "long", b"v", 1000, 10, 0);
    set(s, a, "forever", b"v", 10);
    set(s, b, "cleared", b"v", 10);
    let hidden = s.hidden_changes();
    s.commit(b, 50).clear();
    assert_ne!(s.hidden_changes(), hidden, "a clear tells the worker");
    let (reclaimed, swept, _) = worker_pass(s, 500);
    // The cleared entry, from its cache's tail, and an expired one found at a tail.
    assert_eq!(reclaimed, 2);
    // Left for the sweep: nothing to free; "long" is not due before 1000.
    assert_eq!((swept.expired, swept.hidden, swept.next_expiry), (0, 0, NO_EXPIRY));
    assert_eq!(s.free_blocks(), free - 2, "two entries are left");
    let st = s.stats(a, String::new());
    assert_eq!((st.entries, st.expirations, st.bytes), (2, 1, 2 * BLOCK_SIZE as u64));
    assert_eq!(get(s, a, "forever"), Some(b"v".to_vec()));
    // Nothing is due before 1000: a pass sweeps no partition at all.
    assert_eq!(worker_pass(s, 999).2, 0);
    worker_pass(s, 1000);
    assert_eq!(s.stats(a, String::new()).expirations, 2);
    assert_eq!(s.free_blocks(), free - 1);
}

#[test]
fn the_worker_sweeps_only_partitions_with_something_due() {
    let reg = region(4 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    for i in 0..2000 {
        set(s, r, &format!("plain{i}"), b"v", u64::MAX);
    }
    assert_eq!(worker_pass(s, 10).2, 0, "no TTL anywhere: nothing to sweep");
    // Ten entries with a TTL: at most ten partitions are ever swept for them, and
    // none before they are due.
    for i in 0..10 {
        set_at(s, r, &format!("ttl{i}"), b"v", 5000, u64::MAX, 0);
    }
    assert_eq!(worker_pass(s, 4999).2, 0);
    let (_, out, swept) = worker_pass(s, 5000);
    assert!(swept <= 10 && swept > 0, "{swept} partitions swept");
    assert_eq!(out.expired, 10);
    assert_eq!(worker_pass(s, 6000).2, 0, "and then nothing is due again");
}

#[test]
fn an_install_during_a_sweep_of_its_partition_is_not_forgotten() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let h = hash(r.index, b"k");
    let p = (h as u32 & (s.geometry().buckets - 1)) as usize % PARTITIONS;
    // The sweep starts (forgets the due time), the install lands, the sweep ends.
    set_at(s, r, "k", b"v", 100, 10, 0);
    let hdr_due = s.partition_due(p);
    assert_eq!(hdr_due, 100);
    s.sweep_partition(p, 7, 50, &mut Sweep::default());
    assert_eq!(s.partition_due(p), 100, "the sweep kept what it found due");
}

#[test]
fn with_many_ttl_entries_a_pass_reads_only_the_buckets_near_what_expired() {
    let reg = region(64 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let far = 1_000_000_000;
    for i in 0..20_000 {
        set_at(s, r, &format!("later{i}"), b"v", far + i, u64::MAX, 0);
    }
    for i in 0..10 {
        set_at(s, r, &format!("soon{i}"), b"v", 5000, u64::MAX, 0);
    }
    let buckets = s.geometry().buckets as u64;
    assert!(buckets >= 100_000, "{buckets} buckets: every partition holds entries with a TTL");
    let (_, out, _) = worker_pass(s, 5000);
    assert_eq!(out.expired, 10);
    assert!(out.buckets <= 10 * GROUP_BUCKETS as u64, "{} of {buckets} buckets read", out.buckets);
    assert_eq!(s.stats(r, String::new()).entries, 20_000);
    // The groups left alone still tell their partitions when they are due.
    let next = (0..PARTITIONS).map(|p| s.partition_due(p)).min().unwrap();
    assert_eq!(next, far);
    assert_eq!(worker_pass(s, far - 1).1.buckets, 0);
    worker_pass(s, far + 20_000);
    let st = s.stats(r, String::new());
    assert_eq!((st.expirations, st.entries), (20_010, 0));
}

#[test]
fn reclaiming_a_clear_frees_its_entries_and_stops_at_live_ones() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let free = s.free_blocks();
    for i in 0..500 {
        set(s, r, &format!("old{i}"), b"v", u64::MAX);
    }
    s.commit(r, 10).clear();
    for i in 0..5 {
        set(s, r, &format!("new{i}"), b"v", u64::MAX);
    }
    assert_eq!(s.reclaim_hidden(20), 500);
    assert_eq!(s.free_blocks(), free - 5);
    assert_eq!(s.reclaim_hidden(20), 0);
    for i in 0..5 {
        assert_eq!(get(s, r, &format!("new{i}")), Some(b"v".to_vec()));
    }
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
    s.invalidate(&Invalidation::DropCaches { db: 7, fence: false }, 0);
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
fn a_key_listing_gives_the_live_keys_of_one_cache_and_stops_when_asked() {
    let reg = region(4 << 20, 8);
    let s = &reg.store;
    let (r, other) = (new_cache(s, 1, "c"), new_cache(s, 1, "d"));
    for i in 0..300 {
        set_at(s, r, &format!("k{i}"), b"v", NO_EXPIRY, u64::MAX, 100);
    }
    set_at(s, r, "expired", b"v", 150, u64::MAX, 100);
    set_at(s, other, "k0", b"v", NO_EXPIRY, u64::MAX, 100);
    s.commit(r, 200).delete(b"k0", hash(r.index, b"k0"));
    s.commit(r, 200).invalidate_prefix(b"k1");
    let list = |limit: usize| {
        let mut keys = Vec::new();
        s.for_each_key(r, 300, |k| {
            keys.push(String::from_utf8(k.to_vec()).unwrap());
            keys.len() < limit
        })
        .unwrap();
        keys.sort();
        keys
    };
    let all = list(usize::MAX);
    let want: Vec<String> = {
        let mut w: Vec<String> = (1..300).map(|i| format!("k{i}")).filter(|k| !k.starts_with("k1")).collect();
        w.sort();
        w
    };
    assert_eq!(all, want, "no deleted, expired, covered or other cache's key");
    assert_eq!(list(10).len(), 10);
    s.commit(r, 400).clear();
    assert!(list(usize::MAX).is_empty());
}
