//! Writes computed from a read (increments, adds, pulls) apply only if the key still
//! holds what the read saw; touches change an expiry in place; probes leave no trace.

use super::*;

fn observe(s: &Store<NoLocks>, r: SlotRef, key: &str, now: i64) -> (Lookup<Vec<u8>>, Seen) {
    let h = hash(r.index, key.as_bytes());
    let o = s.observe(r, key.as_bytes(), h, ValueKind::Jsonb, View::LATEST, || now, |len, copy| {
        let mut v = vec![0u8; len];
        copy(&mut v);
        v
    });
    (o.found, o.seen)
}

/// Commits `value` under `key` if the key still holds `seen`, as one key's commit.
fn set_if(s: &Store<NoLocks>, r: SlotRef, key: &str, value: &[u8], seen: Seen) -> bool {
    let (p, _) = prepared(s, r, key, value);
    s.commit_one(r, 5).install_if_unchanged(None, p, key.as_bytes(), 100, seen, false)
}

#[test]
fn a_write_made_from_a_read_installs_only_while_the_key_holds_what_the_read_saw() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let (found, seen) = observe(s, r, "n", 0);
    assert_eq!((found, seen), (Lookup::Miss, Seen::Absent));
    assert!(set_if(s, r, "n", b"1", seen), "still absent: installed");
    assert_eq!(get(s, r, "n"), Some(b"1".to_vec()));

    let (found, seen) = observe(s, r, "n", 0);
    assert_eq!(found, Lookup::Hit(b"1".to_vec()));
    assert!(matches!(seen, Seen::Entry { expired: false, .. }));
    // A plain write commits between the read and the write made from it.
    set(s, r, "n", b"100", 100);
    assert!(!set_if(s, r, "n", b"2", seen), "overtaken: not installed");
    assert_eq!(get(s, r, "n"), Some(b"100".to_vec()), "the plain write stands");
    assert_eq!(s.stats(r, String::new()).entries, 1, "the forgone entry was freed, not counted");

    // The same value written again is another entry: a read of the old one is overtaken.
    let (_, seen) = observe(s, r, "n", 0);
    set(s, r, "n", b"100", 100);
    assert!(!set_if(s, r, "n", b"101", seen));

    // Seen absent, then a plain write: overtaken.
    let (_, seen) = observe(s, r, "m", 0);
    set(s, r, "m", b"7", 100);
    assert!(!set_if(s, r, "m", b"1", seen));
    assert_eq!(get(s, r, "m"), Some(b"7".to_vec()));

    // A clear hides what was seen: overtaken.
    let (_, seen) = observe(s, r, "m", 0);
    s.commit(r, 6).clear();
    assert!(!set_if(s, r, "m", b"8", seen));
    assert_eq!(get(s, r, "m"), None);
}

#[test]
fn an_entry_seen_expired_may_be_gone_by_commit_as_it_was_a_miss_already() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set_at(s, r, "t", b"1", 50, 100, 0);
    let (found, seen) = observe(s, r, "t", 60);
    assert_eq!(found, Lookup::Expired);
    assert!(matches!(seen, Seen::Entry { expired: true, .. }));
    let h = hash(r.index, b"t");
    s.remove_expired(r, b"t", h, 60);
    assert!(set_if(s, r, "t", b"2", seen), "the expired entry's removal changed nothing");
    assert_eq!(get_at(s, r, "t", 60), Lookup::Hit(b"2".to_vec()));
}

#[test]
fn a_guarded_delete_removes_only_what_was_seen() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let h = hash(r.index, b"k");
    set(s, r, "k", b"1", 100);
    let (_, seen) = observe(s, r, "k", 0);
    set(s, r, "k", b"2", 100);
    assert!(!s.commit_one(r, 5).delete_if_unchanged(b"k", h, seen), "overtaken by a put");
    assert_eq!(get(s, r, "k"), Some(b"2".to_vec()));
    let (_, seen) = observe(s, r, "k", 0);
    assert!(s.commit_one(r, 5).delete_if_unchanged(b"k", h, seen));
    assert_eq!(get(s, r, "k"), None);
    // In a commit of several writes: asked before the commit changes anything.
    set(s, r, "k", b"3", 100);
    let (_, seen) = observe(s, r, "k", 0);
    let commit = s.commit(r, 7);
    assert_eq!(commit.holds(b"k", h, seen), Some(NO_EXPIRY));
    assert_eq!(commit.holds(b"k", h, Seen::Absent), None);
    drop(commit);
}

#[test]
fn a_touch_moves_the_expiry_in_place_and_fences_no_fill() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let h = hash(r.index, b"k");
    set_at(s, r, "k", b"1", 50, 100, 0);
    let (_, before) = observe(s, r, "k", 0);
    assert!(s.commit_one(r, 10).touch(b"k", h, 500));
    assert_eq!(get_at(s, r, "k", 100), Lookup::Hit(b"1".to_vec()), "alive past its old expiry");
    assert_eq!(get_at(s, r, "k", 500), Lookup::Expired, "expires at the new time");
    let (_, after) = observe(s, r, "k", 0);
    assert_eq!(before, after, "the same entry: a touch does not rewrite it");
    assert!(!s.commit_one(r, 10).touch(b"missing", hash(r.index, b"missing"), 500));
    // A fill by a transaction that started before the touch still installs.
    let (p, _) = prepared(s, r, "k", b"2");
    assert!(s.commit_one(r, 20).install_if_fresh(None, p, b"k", 100, 5));
}

/// What a worker pass at `now` sweeps.
fn sweep_due(s: &Store<NoLocks>, now: i64) {
    let mut out = Sweep::default();
    for p in (0..PARTITIONS).filter(|&p| s.partition_due(p) <= now) {
        s.sweep_partition(p, 7, now, &mut out);
    }
}

#[test]
fn the_worker_finds_an_expiry_a_touch_gave() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set(s, r, "k", b"1", 100);
    sweep_due(s, 1_000_000);
    // An entry with no TTL is due nowhere until a touch gives it one.
    assert!(s.commit_one(r, 30).touch(b"k", hash(r.index, b"k"), 600));
    sweep_due(s, 700);
    assert_eq!(s.stats(r, String::new()).entries, 0, "swept at the new expiry");
}

#[test]
fn a_touch_does_not_bring_back_an_expired_value() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set_at(s, r, "k", b"1", 50, 100, 0);
    assert!(!s.commit_one(r, 70).touch(b"k", hash(r.index, b"k"), 500), "expired by the touch's commit");
    assert_eq!(get_at(s, r, "k", 80), Lookup::Expired);
}

#[test]
fn a_write_that_keeps_the_expiry_takes_the_one_a_touch_gave_meanwhile() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let h = hash(r.index, b"n");
    set_at(s, r, "n", b"1", 50, 100, 0);
    let (_, seen) = observe(s, r, "n", 10);
    assert!(s.commit_one(r, 20).touch(b"n", h, 500));
    let (p, _) = prepared(s, r, "n", b"2");
    assert!(s.commit_one(r, 30).install_if_unchanged(None, p, b"n", 100, seen, true), "a touch is not a change of value");
    assert_eq!(get_at(s, r, "n", 400), Lookup::Hit(b"2".to_vec()), "alive past 50: the touched expiry");
    assert_eq!(get_at(s, r, "n", 500), Lookup::Expired);
    // The same through a commit of several writes.
    let (_, seen) = observe(s, r, "n", 10);
    assert!(s.commit_one(r, 40).touch(b"n", h, 900));
    let (p, _) = prepared(s, r, "n", b"3");
    let commit = s.commit(r, 50);
    let at = commit.holds(b"n", h, seen).expect("unchanged");
    commit.set_prepared_expiry(p, at);
    commit.install(None, p, b"n", 100);
    drop(commit);
    assert_eq!(get_at(s, r, "n", 800), Lookup::Hit(b"3".to_vec()));
    assert_eq!(get_at(s, r, "n", 900), Lookup::Expired);
}

#[test]
fn a_probe_counts_nothing_and_does_not_keep_an_entry_from_eviction() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    for k in ["a", "b", "c"] {
        set(s, r, k, b"v", 3);
    }
    let h = hash(r.index, b"a");
    assert!(s.contains(r, b"a", h, View::LATEST, || 0));
    assert!(!s.contains(r, b"zz", hash(r.index, b"zz"), View::LATEST, || 0));
    // "a" is the least recently used; a probe leaves it so, a read would not.
    set(s, r, "d", b"v", 3);
    assert_eq!(get(s, r, "a"), None, "probed, still evicted first");
    assert_eq!(get(s, r, "b"), Some(b"v".to_vec()));
}
