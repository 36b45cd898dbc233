//! Shadowed commits: lookups see all of a big commit or none of it, without
//! waiting for it, and it leaves the store as a plain commit would.

use super::*;

fn value(s: &Store<NoLocks>, r: SlotRef, key: &str) -> Option<Vec<u8>> {
    match get_at(s, r, key, 0) {
        Lookup::Hit(v) => Some(v),
        _ => None,
    }
}

/// One write of a test commit: a set (Some) or a delete (None).
type Write<'a> = (&'a str, Option<&'a [u8]>);

/// Prepares the entries of `writes` (a delete prepares none), as PRE_COMMIT does.
fn prepare_all(s: &Store<NoLocks>, r: SlotRef, writes: &[Write<'_>]) -> Vec<Option<Prepared>> {
    writes
        .iter()
        .map(|(k, v)| v.map(|v| s.prepare(None, r, &entry(k.as_bytes(), v, hash(r.index, k.as_bytes()), NO_EXPIRY), 0).unwrap().unwrap()))
        .collect()
}

/// Applies a clear (when asked), then `writes`, through commit `c`, as COMMIT does.
fn apply_all(c: &CacheCommit<'_, '_, NoLocks>, r: SlotRef, clear: bool, writes: &[Write<'_>], prepared: Vec<Option<Prepared>>) {
    if clear {
        c.clear();
    }
    for ((k, _), p) in writes.iter().zip(prepared) {
        match p {
            Some(p) => c.install(None, p, k.as_bytes(), u64::MAX),
            None => {
                c.delete(k.as_bytes(), hash(r.index, k.as_bytes()));
            }
        }
    }
}

/// Applies `writes` (and a clear first, when asked) as a shadowed commit, calling
/// `during` before it is published and `published` between publishing and settling.
fn shadowed(
    s: &Store<NoLocks>,
    r: SlotRef,
    clear: bool,
    writes: &[Write<'_>],
    during: impl FnOnce(),
    published: impl FnOnce(),
) {
    let prepared = prepare_all(s, r, writes);
    let c = s.commit_shadowed(r, 100);
    apply_all(&c, r, clear, writes, prepared);
    during();
    c.publish();
    published();
    for (k, _) in writes {
        c.settle_key(k.as_bytes(), hash(r.index, k.as_bytes()));
    }
}

/// The same as a plain commit.
fn plain(s: &Store<NoLocks>, r: SlotRef, clear: bool, writes: &[Write<'_>]) {
    let prepared = prepare_all(s, r, writes);
    apply_all(&s.commit(r, 100), r, clear, writes, prepared);
}

#[test]
fn lookups_see_a_shadowed_commit_whole_or_not_at_all() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    for k in ["over", "gone", "kept"] {
        set(s, r, k, b"old", u64::MAX);
    }
    let free = s.free_blocks();
    let before = [("over", Some(b"old".to_vec())), ("gone", Some(b"old".to_vec())), ("new", None), ("kept", Some(b"old".to_vec()))];
    let after = [("over", Some(b"new".to_vec())), ("gone", None), ("new", Some(b"new".to_vec())), ("kept", Some(b"old".to_vec()))];
    let check = |want: &[(&str, Option<Vec<u8>>)], when: &str| {
        for (k, v) in want {
            assert_eq!(&value(s, r, k), v, "{k} {when}");
        }
    };
    shadowed(
        s,
        r,
        false,
        &[("over", Some(b"new")), ("gone", None), ("new", Some(b"new"))],
        || check(&before, "before the commit is published"),
        || check(&after, "once published"),
    );
    check(&after, "once settled");
    let st = s.stats(r, String::new());
    assert_eq!((st.entries, st.deletes, st.sets), (3, 1, 5));
    assert_eq!(s.free_blocks(), free, "three entries, as before: the replaced and deleted ones were freed");
}

#[test]
fn a_shadowed_clear_hides_the_old_entries_only_when_published() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    for k in ["a", "b"] {
        set(s, r, k, b"old", u64::MAX);
    }
    shadowed(
        s,
        r,
        true,
        &[("a", Some(b"new")), ("c", Some(b"new"))],
        || {
            assert_eq!((value(s, r, "a"), value(s, r, "b"), value(s, r, "c")), (Some(b"old".to_vec()), Some(b"old".to_vec()), None));
            // The worker, meanwhile, must not take the new entries for hidden ones.
            s.reclaim_hidden(0);
            for p in 0..PARTITIONS {
                s.sweep_partition(p, 7, 0, &mut Sweep::default());
            }
        },
        || assert_eq!(value(s, r, "b"), None, "cleared at once"),
    );
    assert_eq!((value(s, r, "a"), value(s, r, "b"), value(s, r, "c")), (Some(b"new".to_vec()), None, Some(b"new".to_vec())));
    let st = s.stats(r, String::new());
    assert_eq!((st.entries, st.bytes), (2, 2 * BLOCK_SIZE as u64));
    assert!(st.last_clear.is_some());
}

#[test]
fn shadowed_and_plain_commits_leave_the_same_cache() {
    // Two stores, the same random commits (sets, deletes, clears over 40 keys), one
    // shadowed and one plain: every key reads alike after each commit.
    let (a, b) = (region(1 << 20, 4), region(1 << 20, 4));
    let (ra, rb) = (new_cache(&a.store, 1, "c"), new_cache(&b.store, 1, "c"));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let values: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 1 + 100 * i]).collect();
    for round in 0..200 {
        let clear = next(10) == 0;
        let mut chosen: Vec<usize> = (0..1 + next(12) as usize).map(|_| next(40) as usize).collect();
        chosen.sort_unstable();
        chosen.dedup(); // a commit writes a key once
        let writes: Vec<Write<'_>> = chosen
            .iter()
            .map(|&k| (keys[k].as_str(), (next(3) != 0).then(|| values[next(5) as usize].as_slice())))
            .collect();
        shadowed(&a.store, ra, clear, &writes, || (), || ());
        plain(&b.store, rb, clear, &writes);
        for k in &keys {
            assert_eq!(value(&a.store, ra, k), value(&b.store, rb, k), "round {round}, {k}");
        }
        let (sa, sb) = (a.store.stats(ra, String::new()), b.store.stats(rb, String::new()));
        assert_eq!((sa.entries, sa.bytes), (sb.entries, sb.bytes), "round {round}");
        assert_eq!(a.store.free_blocks(), b.store.free_blocks(), "round {round}");
    }
}
