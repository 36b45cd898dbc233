//! Deletes, clears, declarations, fences and Invalidation values.

use super::*;

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
fn clearing_a_database_clears_and_fences_all_its_caches_but_the_excepted_ones() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let a = new_cache(s, 1, "a");
    let b = new_cache(s, 1, "b");
    let kept = new_cache(s, 1, "kept");
    let other = new_cache(s, 2, "a");
    for r in [a, b, kept, other] {
        set(s, r, "k", b"v", 10);
    }
    s.invalidate(&Invalidation::Database { db: 1, except: &[kept] }, 100);
    assert_eq!((get(s, a, "k"), get(s, b, "k")), (None, None));
    assert_eq!(get(s, kept, "k"), Some(b"v".to_vec()), "excepted");
    assert_eq!(get(s, other, "k"), Some(b"v".to_vec()), "another database");
    // Fills of transactions that started before the clear are stale in every cache
    // it cleared and in one created after it; the excepted cache was not
    // invalidated: its fills stand, like its entries.
    let later = new_cache(s, 1, "later");
    for r in [a, later] {
        assert!(s.commit(r, 200).is_stale(hash(r.index, b"k"), 100));
        assert!(!s.commit(r, 200).is_stale(hash(r.index, b"k"), 101));
    }
    assert!(!s.commit(kept, 200).is_stale(hash(kept.index, b"k"), 100));
    assert!(!s.commit(other, 200).is_stale(hash(other.index, b"k"), 100));
}

#[test]
fn a_key_invalidation_outside_a_commit_removes_the_key_and_raises_its_fence() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set(s, r, "k", b"v", 10);
    set(s, r, "other", b"v", 10);
    let h = hash(r.index, b"k");
    assert!(s.invalidate(&Invalidation::Key { cache: r, key: b"k", hash: h }, 100), "a visible entry went");
    assert!(!s.invalidate(&Invalidation::Key { cache: r, key: b"k", hash: h }, 100), "nothing left");
    assert_eq!(get(s, r, "k"), None);
    assert_eq!(get(s, r, "other"), Some(b"v".to_vec()));
    assert!(s.commit(r, 200).is_stale(h, 100));
}

/// Deletes `key` of `r` in a commit at `now` (raising its fence).
fn delete_at(s: &Store<NoLocks>, r: SlotRef, key: &str, now: i64) {
    s.commit(r, now).delete(key.as_bytes(), hash(r.index, key.as_bytes()));
}

#[test]
fn a_fill_is_kept_while_other_caches_and_databases_churn_their_keys() {
    // A small region: 512 key fences. Others invalidate 40 times that many keys
    // after our transaction started; none of it concerns our keys.
    let reg = region(256 << 10, 8);
    let s = &reg.store;
    let mine = new_cache(s, 1, "mine");
    let (other, elsewhere) = (new_cache(s, 1, "other"), new_cache(s, 2, "mine"));
    let start = 100;
    for i in 0..20_000 {
        delete_at(s, if i % 2 == 0 { other } else { elsewhere }, &format!("k{i}"), start + 1 + i as i64);
    }
    let dropped = (0..1000).filter(|i| s.commit(mine, 50_000).is_stale(hash(mine.index, format!("f{i}").as_bytes()), start)).count();
    assert_eq!(dropped, 0, "fills dropped for keys nobody invalidated");
}

#[test]
fn a_forgotten_key_fence_still_drops_every_older_fill_of_its_key() {
    let reg = region(256 << 10, 8);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let n = 20_000;
    for i in 0..n {
        delete_at(s, r, &format!("k{i}"), 1000 + i as i64);
    }
    // Far more keys than fences: most were forgotten into the cache's floor. A fill
    // that started at or before its key's invalidation is stale, every time.
    for i in 0..n {
        let h = hash(r.index, format!("k{i}").as_bytes());
        assert!(s.commit(r, 100_000).is_stale(h, 1000 + i as i64), "k{i} lost its fence");
    }
    // The newest are still remembered exactly: a fill that started after them stands.
    assert!(!s.commit(r, 100_000).is_stale(hash(r.index, b"k-new"), 1000 + n as i64));
}

#[test]
fn a_cache_created_again_in_another_slot_still_fences_fills_older_than_its_deletes() {
    // Two slots: an empty undeclared cache's slot is reclaimed for a new name, and
    // the old name comes back in the other slot, where its keys hash differently.
    let reg = region(256 << 10, 2);
    let s = &reg.store;
    let c = new_cache(s, 1, "c");
    let d = new_cache(s, 1, "d");
    set(s, d, "x", b"v", 10);
    delete_at(s, c, "k", 100);
    let e = new_cache(s, 1, "e"); // takes c's slot
    assert_eq!(e.index, c.index);
    set(s, e, "x", b"v", 10);
    delete_at(s, d, "x", 50);
    let again = new_cache(s, 1, "c"); // takes d's slot
    assert_eq!(again.index, d.index);
    let h = hash(again.index, b"k");
    assert!(s.commit(again, 200).is_stale(h, 100), "a fill computed before k's delete must not come back");
    assert!(!s.commit(again, 200).is_stale(h, 101));
}
