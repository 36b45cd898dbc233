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
