//! The read path: the seqlock against commits, chain order, value kinds.

use super::*;

#[test]
fn a_lookup_waits_on_the_commit_lock_only_while_a_commit_of_several_writes_applies() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set(s, r, "a", b"1", 10);
    let locks = shared_commit_locks();
    assert_eq!(get(s, r, "a"), Some(b"1".to_vec()));
    assert_eq!(shared_commit_locks(), locks, "no commit applying: the lookup takes no commit lock");
    let (p, _) = prepared(s, r, "b", b"2");
    let commit = s.commit(r, 10);
    commit.install(None, p, b"b", 10);
    assert_eq!(get(s, r, "a"), Some(b"1".to_vec()));
    assert_eq!(shared_commit_locks(), locks + 1, "a commit is applying: the lookup waits for it");
    drop(commit);
    assert_eq!(get(s, r, "b"), Some(b"2".to_vec()));
    assert_eq!(shared_commit_locks(), locks + 1, "the commit is over");
    let single = s.commit_one(r, 20);
    assert_eq!(get(s, r, "b"), Some(b"2".to_vec()));
    assert_eq!(shared_commit_locks(), locks + 2, "the single-key commit's own shared hold only");
    drop(single);
}

/// Which of `keys` the entries on `bucket`'s chain hold, first to last.
fn chain_keys<'k>(s: &Store<NoLocks>, bucket: u32, keys: &[&'k str]) -> Vec<&'k str> {
    let mut found = Vec::new();
    s.walk_chain(bucket, |e, _| {
        found.push(*keys.iter().find(|k| s.key_equals(e, k.as_bytes())).expect("a known key"));
        chain::Step::Next
    });
    found
}

#[test]
fn chains_keep_the_order_in_which_keys_came() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    // Three keys of one bucket.
    let bucket = s.bucket_of(hash(r.index, b"k0"));
    let keys: Vec<String> = (1..)
        .map(|i| format!("k{i}"))
        .filter(|k| s.bucket_of(hash(r.index, k.as_bytes())) == bucket)
        .take(2)
        .collect();
    let (a, b, c) = ("k0", keys[0].as_str(), keys[1].as_str());
    let chain = || chain_keys(s, bucket, &[a, b, c]);
    for k in [a, b, c] {
        set(s, r, k, b"v", 100);
    }
    assert_eq!(chain(), [a, b, c], "new keys go to the end");
    // An overwrite takes the place of the entry it replaces, a delete leaves a gap.
    set(s, r, b, b"longer value", 100);
    assert_eq!(chain(), [a, b, c]);
    set(s, r, a, b"w", 100);
    assert_eq!(chain(), [a, b, c]);
    assert!(s.commit(r, 0).delete(b.as_bytes(), hash(r.index, b.as_bytes())));
    assert_eq!(chain(), [a, c]);
    set(s, r, b, b"v", 100);
    assert_eq!(chain(), [a, c, b]);
    for k in [a, b, c] {
        assert!(get(s, r, k).is_some(), "{k} found");
    }
}

#[test]
fn a_lookup_returns_only_values_of_the_kind_asked_for() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set(s, r, "k", b"v", 10);
    let h = hash(r.index, b"k");
    let found = |kind| s.lookup(r, b"k", h, kind, || 0, |len, copy| {
        let mut v = vec![0; len];
        copy(&mut v);
        v
    });
    assert_eq!(found(ValueKind::Jsonb), Lookup::Hit(b"v".to_vec()));
    assert_eq!(found(ValueKind::Bytea), Lookup::OtherKind(Some(ValueKind::Jsonb)));
    // A bytea entry answers only a bytea reader.
    let hb = hash(r.index, b"b");
    let bytes = NewEntry { key: b"b", value: b"\x00\xff", kind: ValueKind::Bytea, hash: hb, expires_at: NO_EXPIRY, tags: &[] };
    let p = s.prepare(None, r, &bytes, 0).unwrap().expect("room");
    s.commit(r, 0).install(None, p, b"b", 10);
    let found_b = |kind| s.lookup(r, b"b", hb, kind, || 0, |len, copy| {
        let mut v = vec![0; len];
        copy(&mut v);
        v
    });
    assert_eq!(found_b(ValueKind::Bytea), Lookup::Hit(b"\x00\xff".to_vec()));
    assert_eq!(found_b(ValueKind::Jsonb), Lookup::OtherKind(Some(ValueKind::Bytea)));
    // An entry whose head records another kind is not handed to a jsonb reader.
    let mut e = NIL;
    s.walk_chain(s.bucket_of(h), |b, _| {
        e = b;
        chain::Step::Stop
    });
    // SAFETY: single-threaded test; the entry is live.
    unsafe { (*s.head(e)).flags = 0x1f };
    assert_eq!(found(ValueKind::Jsonb), Lookup::OtherKind(None));
}

fn get_many(s: &Store<NoLocks>, r: SlotRef, keys: &[&str]) -> Vec<Option<Vec<u8>>> {
    let keyed: Vec<(&[u8], u64)> = keys.iter().map(|k| (k.as_bytes(), hash(r.index, k.as_bytes()))).collect();
    let mut out = Vec::new();
    s.lookup_many(r, &keyed, ValueKind::Jsonb, View::LATEST, || 0, |_, len, copy| {
        let mut v = vec![0u8; len];
        copy(&mut v);
        v
    }, &mut out);
    out.into_iter().map(|l| match l {
        Lookup::Hit(v) => Some(v),
        _ => None,
    }).collect()
}

#[test]
fn a_read_of_many_keys_takes_no_lock_unless_a_commit_is_in_flight() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set(s, r, "a", b"1", 10);
    set(s, r, "c", b"3", 10);
    let (shared, exclusive) = (shared_commit_locks(), exclusive_commit_locks());
    assert_eq!(get_many(s, r, &["a", "b", "c", "a"]), [Some(b"1".to_vec()), None, Some(b"3".to_vec()), Some(b"1".to_vec())]);
    assert_eq!((shared_commit_locks(), exclusive_commit_locks()), (shared, exclusive), "no commit: no lock");
    // A single-key commit in flight (begun, not ended): the read waits for it by
    // taking the commit lock exclusively, so it cannot see the cache mid-way.
    let one = s.commit_one(r, 20);
    assert_eq!(get_many(s, r, &["a", "c"]).len(), 2);
    assert_eq!(exclusive_commit_locks(), exclusive + 1);
    drop(one);
    // So does a commit of several writes.
    let many = s.commit(r, 30);
    let exclusive = exclusive_commit_locks();
    assert_eq!(get_many(s, r, &["a"]), [Some(b"1".to_vec())]);
    assert_eq!(exclusive_commit_locks(), exclusive + 1);
    drop(many);
    assert_eq!(get_many(s, r, &["c"]), [Some(b"3".to_vec())]);
    assert_eq!(exclusive_commit_locks(), exclusive + 1, "all ended: optimistic again");
}

#[test]
fn a_snapshot_read_does_not_see_entries_installed_after_its_transaction_began() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    set_at(s, r, "old", b"1", NO_EXPIRY, 10, 100);
    set_at(s, r, "new", b"2", NO_EXPIRY, 10, 200);
    let as_of = |key: &str, before: i64| {
        s.lookup_as_of(r, key.as_bytes(), hash(r.index, key.as_bytes()), ValueKind::Jsonb, View::as_of(before), || 300, |len, copy| {
            let mut v = vec![0; len];
            copy(&mut v);
            v
        })
    };
    // A transaction that began at 150 sees what was installed at 100, not at 200.
    assert_eq!(as_of("old", 150), Lookup::Hit(b"1".to_vec()));
    assert_eq!(as_of("new", 150), Lookup::Miss);
    // Installed at the very moment it began: not before it, so not seen.
    assert_eq!(as_of("new", 200), Lookup::Miss);
    assert_eq!(as_of("new", 201), Lookup::Hit(b"2".to_vec()));
    assert!(!s.contains(r, b"new", hash(r.index, b"new"), View::as_of(150), || 300));
    assert!(s.contains(r, b"new", hash(r.index, b"new"), View::LATEST, || 300));
    // A newer value replacing an older one hides the key from the older snapshot.
    set_at(s, r, "old", b"3", NO_EXPIRY, 10, 250);
    assert_eq!(as_of("old", 150), Lookup::Miss);
    let mut out = Vec::new();
    let keyed = [(&b"old"[..], hash(r.index, b"old")), (&b"new"[..], hash(r.index, b"new"))];
    s.lookup_many(r, &keyed, ValueKind::Jsonb, View::as_of(220), || 300, |_, len, copy| {
        let mut v = vec![0; len];
        copy(&mut v);
        v
    }, &mut out);
    assert_eq!(out, [Lookup::Miss, Lookup::Hit(b"2".to_vec())]);
}
