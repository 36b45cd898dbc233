//! Tag and prefix invalidations (predicates.rs): misses on read for what they cover,
//! fences for fills, nothing walked at commit.

use super::*;

fn tagged_at(s: &Store<NoLocks>, r: SlotRef, key: &str, tags: &[&str], now: i64) {
    let h = hash(r.index, key.as_bytes());
    let tags: Vec<u64> = tags.iter().map(|t| tag_hash(t.as_bytes())).collect();
    let e = NewEntry { key: key.as_bytes(), value: b"v", kind: ValueKind::Jsonb, hash: h, expires_at: NO_EXPIRY, tags: &tags };
    let p = s.prepare(None, r, &e, now).unwrap().expect("room");
    s.commit(r, now).install(None, p, key.as_bytes(), u64::MAX);
}

fn tagged_fill(s: &Store<NoLocks>, r: SlotRef, key: &str, tags: &[u64]) -> Prepared {
    let h = hash(r.index, key.as_bytes());
    let e = NewEntry { key: key.as_bytes(), value: b"v", kind: ValueKind::Jsonb, hash: h, expires_at: NO_EXPIRY, tags };
    s.prepare(None, r, &e, 0).unwrap().expect("room")
}

fn hit(s: &Store<NoLocks>, r: SlotRef, key: &str, view: View) -> bool {
    let h = hash(r.index, key.as_bytes());
    matches!(s.lookup_as_of(r, key.as_bytes(), h, ValueKind::Jsonb, view, || 0, |_, _| ()), Lookup::Hit(()))
}

fn tags(names: &[&str]) -> Vec<u64> {
    names.iter().map(|t| tag_hash(t.as_bytes())).collect()
}

#[test]
fn a_tag_invalidation_misses_what_carries_the_tag_and_only_that() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let (r, other) = (new_cache(s, 1, "c"), new_cache(s, 1, "d"));
    tagged_at(s, r, "a", &["partner", "lang"], 100);
    tagged_at(s, r, "b", &["lang"], 100);
    tagged_at(s, r, "c", &[], 100);
    tagged_at(s, other, "a", &["partner"], 100);
    s.commit(r, 200).invalidate_tags(&tags(&["partner"]));
    assert!(!hit(s, r, "a", View::LATEST), "it carries the tag");
    assert!(hit(s, r, "b", View::LATEST) && hit(s, r, "c", View::LATEST), "other tags and untagged entries stay");
    assert!(hit(s, other, "a", View::LATEST), "tags are per cache");
    // Written again after the invalidation (or by the same commit, after it): a hit.
    tagged_at(s, r, "a", &["partner"], 200);
    assert!(hit(s, r, "a", View::LATEST));
    // The value is intact behind its tags.
    assert_eq!(get(s, r, "a"), Some(b"v".to_vec()));
    // The reading transaction's own invalidation hides it before commit.
    let mine = tags(&["lang"]);
    assert!(!hit(s, r, "b", View { installed_before: LATEST, hidden_tags: &mine }));
    assert!(hit(s, r, "c", View { installed_before: LATEST, hidden_tags: &mine }));
}

#[test]
fn a_fill_carrying_a_tag_invalidated_after_it_started_is_stale() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let t = tags(&["partner"]);
    let p = tagged_fill(s, r, "k", &t);
    let untagged = tagged_fill(s, r, "u", &[]);
    s.commit(r, 100).invalidate_tags(&t);
    let c = s.commit(r, 150);
    assert!(c.is_stale_fill(p, b"k", 90) && c.is_stale_fill(p, b"k", 100), "started at or before the invalidation");
    assert!(!c.is_stale_fill(p, b"k", 101));
    assert!(!c.is_stale_fill(untagged, b"u", 90), "a fill without the tag is not fenced");
    drop(c);
    // The single-key commit judges it the same way, under the partition lock.
    assert!(!s.commit_one(r, 160).install_if_fresh(None, p, b"k", u64::MAX, 90));
    assert!(s.commit_one(r, 170).install_if_fresh(None, untagged, b"u", u64::MAX, 90));
    assert_eq!((get(s, r, "k"), get(s, r, "u")), (None, Some(b"v".to_vec())));
}

#[test]
fn a_full_tag_table_forgets_toward_dropping_more() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let (r, other) = (new_cache(s, 1, "c"), new_cache(s, 1, "d"));
    let n = s.geometry().tag_sets as usize * 4 + 500;
    for i in 0..20 {
        tagged_at(s, r, &format!("k{i}"), &[&format!("t{i}")], 100);
    }
    tagged_at(s, other, "x", &["x"], 100);
    for i in 0..n {
        s.commit(r, 200 + i as i64).invalidate_tags(&tags(&[&format!("t{i}")]));
    }
    for i in 0..20 {
        assert!(!hit(s, r, &format!("k{i}"), View::LATEST), "k{i} came back after its tag was forgotten");
        let p = tagged_fill(s, r, "f", &tags(&[&format!("t{i}")]));
        assert!(s.commit(r, 100_000).is_stale_fill(p, b"f", 199 + i as i64), "t{i} lost its fence");
        s.discard(p);
    }
    assert!(hit(s, other, "x", View::LATEST), "another cache's tags are not affected");
}

#[test]
fn a_prefix_invalidation_misses_the_keys_it_covers_and_fences_their_fills() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    for k in ["user:1:name", "user:1:mail", "user:10:name", "user:2:name"] {
        set_at(s, r, k, b"v", NO_EXPIRY, u64::MAX, 100);
    }
    let (fill, _) = prepared(s, r, "user:1:lang", b"v");
    let (other_fill, _) = prepared(s, r, "user:2:lang", b"v");
    s.commit(r, 200).invalidate_prefix(b"user:1:");
    assert_eq!(s.prefix_invalidations(r), 1);
    assert!(!hit(s, r, "user:1:name", View::LATEST) && !hit(s, r, "user:1:mail", View::LATEST));
    assert!(hit(s, r, "user:10:name", View::LATEST) && hit(s, r, "user:2:name", View::LATEST));
    let c = s.commit(r, 250);
    assert!(c.is_stale_fill(fill, b"user:1:lang", 200));
    assert!(!c.is_stale_fill(fill, b"user:1:lang", 201));
    assert!(!c.is_stale_fill(other_fill, b"user:2:lang", 150));
    drop(c);
    set_at(s, r, "user:1:name", b"new", NO_EXPIRY, u64::MAX, 300);
    assert_eq!(get(s, r, "user:1:name"), Some(b"new".to_vec()), "written after the invalidation");
    // A read reclaims what it found invalidated.
    let entries = s.stats(r, String::new()).entries;
    s.remove_expired(r, b"user:1:mail", hash(r.index, b"user:1:mail"), 300);
    assert_eq!(s.stats(r, String::new()).entries, entries - 1);
    assert_eq!(s.stats(r, String::new()).expirations, 0, "not counted as an expiry");
    s.discard(fill);
    s.discard(other_fill);
}

#[test]
fn prefix_invalidations_past_the_limit_fold_into_a_clear() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set_at(s, r, "z", b"v", NO_EXPIRY, u64::MAX, 100);
    for i in 0..MAX_PREFIXES {
        s.commit(r, 200 + i as i64).invalidate_prefix(format!("p{i}:").as_bytes());
    }
    assert!(hit(s, r, "z", View::LATEST));
    // Covered by one already remembered: only its time moves.
    s.commit(r, 300).invalidate_prefix(b"p0:x");
    assert_eq!(s.prefix_invalidations(r), MAX_PREFIXES);
    assert_eq!(s.last_clear(r), None);
    s.commit(r, 400).invalidate_prefix(b"q:");
    assert_eq!(s.prefix_invalidations(r), 0, "the clear retires them");
    assert_eq!(s.last_clear(r), Some(400));
    assert!(!hit(s, r, "z", View::LATEST), "a clear drops more, never less");
}

#[test]
fn a_long_prefix_covers_more_never_less() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    let base = "x".repeat(PREFIX_BYTES);
    let (covered, beyond) = (format!("{base}-covered"), format!("{base}+beyond"));
    set_at(s, r, &covered, b"v", NO_EXPIRY, u64::MAX, 100);
    set_at(s, r, &beyond, b"v", NO_EXPIRY, u64::MAX, 100);
    s.commit(r, 200).invalidate_prefix(format!("{base}-").as_bytes());
    assert!(!hit(s, r, &covered, View::LATEST));
    assert!(!hit(s, r, &beyond, View::LATEST), "past its first {PREFIX_BYTES} bytes a prefix covers more");
}

#[test]
fn a_write_computed_from_an_entry_invalidated_since_does_not_install() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    tagged_at(s, r, "n", &["t"], 100);
    let h = hash(r.index, b"n");
    let o = s.observe(r, b"n", h, ValueKind::Jsonb, View::LATEST, || 0, |_, _| ());
    assert!(matches!(o.found, Lookup::Hit(())));
    s.commit(r, 200).invalidate_tags(&tags(&["t"]));
    assert_eq!(s.commit(r, 300).holds(b"n", h, o.seen), None, "as if deleted: the increment is overtaken");
    // A read that saw it invalidated sees the same state in its absence.
    let o = s.observe(r, b"n", h, ValueKind::Jsonb, View::LATEST, || 0, |_, _| ());
    assert_eq!(o.found, Lookup::Expired);
    assert!(s.commit(r, 300).holds(b"n", h, o.seen).is_some());
}

#[test]
fn the_worker_retires_prefix_invalidations_without_losing_a_fence() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let (r, other) = (new_cache(s, 1, "c"), new_cache(s, 1, "d"));
    for k in ["user:1:a", "user:1:b", "user:2:a"] {
        set_at(s, r, k, b"v", NO_EXPIRY, u64::MAX, 100);
    }
    set_at(s, other, "user:1:a", b"v", NO_EXPIRY, u64::MAX, 100);
    let (fill, _) = prepared(s, r, "user:1:c", b"v");
    s.commit(r, 200).invalidate_prefix(b"user:1:");
    assert_eq!(s.retire_prefixes(300, 16), 2, "the two covered entries are freed");
    assert_eq!(s.prefix_invalidations(r), 0, "and the invalidation forgotten");
    assert_eq!(s.stats(r, String::new()).entries, 1);
    assert!(!hit(s, r, "user:1:a", View::LATEST) && hit(s, r, "user:2:a", View::LATEST));
    assert!(hit(s, other, "user:1:a", View::LATEST), "another cache's keys are not touched");
    // A fill that started before the invalidation is still dropped: the key floor
    // took its time. One that started after is not.
    let c = s.commit(r, 400);
    assert!(c.is_stale_fill(fill, b"user:1:c", 150));
    assert!(!c.is_stale_fill(fill, b"user:1:c", 201));
    drop(c);
    s.discard(fill);
    set_at(s, r, "user:1:a", b"new", NO_EXPIRY, u64::MAX, 500);
    assert_eq!(get(s, r, "user:1:a"), Some(b"new".to_vec()));
    assert_eq!(s.retire_prefixes(600, 16), 0, "nothing to do");
}

/// What a retirement sweep costs on a large region (run by hand, with --release
/// --ignored --nocapture).
#[test]
#[ignore]
fn time_a_retirement_sweep() {
    for mb in [64usize, 2048] {
        let reg = region(mb << 20, 64);
        let s = &reg.store;
        let r = new_cache(s, 1, "c");
        for i in 0..100_000 {
            set_at(s, r, &format!("k{i}"), b"v", NO_EXPIRY, u64::MAX, 100);
        }
        s.commit(r, 200).invalidate_prefix(b"k1");
        let t = std::time::Instant::now();
        let freed = s.retire_prefixes(300, 64);
        eprintln!("{mb} MB, {} buckets: {freed} freed in {:?}", s.geometry().buckets, t.elapsed());
    }
}

#[test]
fn an_invalidation_whose_commit_time_is_earlier_than_an_install_still_covers_it() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    // A commit took its time (2000), then waited for the commit lock while another
    // installed entries stamped later (2001) or at the same microsecond.
    tagged_at(s, r, "late", &["t"], 2001);
    set_at(s, r, "user:late", b"v", NO_EXPIRY, u64::MAX, 2000);
    let c = s.commit(r, 2000);
    c.invalidate_tags(&tags(&["t"]));
    c.invalidate_prefix(b"user:");
    // What the same commit installs after them stays.
    let h = hash(r.index, b"mine");
    let t = tags(&["t"]);
    let e = NewEntry { key: b"mine", value: b"v", kind: ValueKind::Jsonb, hash: h, expires_at: NO_EXPIRY, tags: &t };
    let p = s.prepare(None, r, &e, 2000).unwrap().unwrap();
    c.install(None, p, b"mine", u64::MAX);
    drop(c);
    assert!(!hit(s, r, "late", View::LATEST), "installed before the invalidation took the lock: covered");
    assert!(!hit(s, r, "user:late", View::LATEST), "installed at the invalidation's microsecond: covered");
    assert!(hit(s, r, "mine", View::LATEST), "installed by the invalidating commit after it");
}

#[test]
fn what_a_commit_installs_after_its_invalidation_stays_whatever_time_covers_it() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    // Earlier invalidations stamped later than the next commit's clock (another
    // backend's clock, or a way's time that never moves back).
    s.commit(r, 500).invalidate_prefix(b"user:");
    s.commit(r, 500).invalidate_tags(&tags(&["t"]));
    let c = s.commit(r, 400);
    c.invalidate_prefix(b"user:1:");
    c.invalidate_tags(&tags(&["t"]));
    let t = tags(&["t"]);
    for key in ["user:1:x", "tagged"] {
        let h = hash(r.index, key.as_bytes());
        let e = NewEntry { key: key.as_bytes(), value: b"v", kind: ValueKind::Jsonb, hash: h, expires_at: NO_EXPIRY, tags: &t };
        let p = s.prepare(None, r, &e, 400).unwrap().unwrap();
        c.install(None, p, key.as_bytes(), u64::MAX);
    }
    drop(c);
    assert!(hit(s, r, "user:1:x", View::LATEST) && hit(s, r, "tagged", View::LATEST));
}
