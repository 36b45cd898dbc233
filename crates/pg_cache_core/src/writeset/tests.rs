//! Write set tests: the log, its indexes, savepoints and the commit plan.

use super::*;

impl WriteSet {
    fn push_ok(&mut self, level: u32, op: Op) {
        self.push(level, op).expect("memory");
    }
}

fn set(c: &str, k: &str, v: &str) -> Op {
    Op::Set { cache: c.into(), key: k.into(), value: v.into(), kind: ValueKind::Jsonb, expiry: Expiry::Default, mode: SetMode::Fill, tags: Vec::new() }
}

/// An own write given a time (`expires_at`) reads as nothing once that time has
/// passed; one given a `ttl` counts from the commit, so it does not expire before.
#[test]
fn an_own_write_past_its_expiry_time_reads_as_nothing() {
    let mut w = WriteSet::default();
    let at = |t| Op::Set { cache: "c".into(), key: b"k".to_vec(), value: b"1".to_vec(), kind: ValueKind::Jsonb, expiry: Expiry::At(t), mode: SetMode::Fill, tags: Vec::new() };
    w.push_ok(1, at(100));
    assert_eq!(w.lookup("c", b"k", || 99), Pending::Value(b"1", ValueKind::Jsonb));
    assert_eq!(w.lookup("c", b"k", || 100), Pending::Deleted);
    assert!(w.last_set("c", b"k", || 99).is_some());
    assert_eq!(w.last_set("c", b"k", || 100), None, "what add, incr, pull and touch build on: nothing");
    w.push_ok(1, Op::Touch { cache: "c".into(), key: b"t".to_vec(), expiry: Expiry::At(100) });
    assert_eq!(w.lookup("c", b"t", || 99), Pending::Unknown, "the shared value, touched");
    assert_eq!(w.lookup("c", b"t", || 100), Pending::Deleted, "touched to a time that has passed");
    w.push_ok(1, Op::Set { cache: "c".into(), key: b"k".to_vec(), value: b"2".to_vec(), kind: ValueKind::Jsonb, expiry: Expiry::After(1), mode: SetMode::Fill, tags: Vec::new() });
    assert_eq!(w.lookup("c", b"k", || i64::MAX - 1), Pending::Value(b"2", ValueKind::Jsonb));
}

#[test]
fn only_fills_means_every_logged_operation() {
    let mut w = WriteSet::default();
    w.push_ok(1, set("c", "k", "1"));
    w.push_ok(1, set("c", "j", "2"));
    assert!(w.only_fills());
    // A put overwritten by a fill still counts: the fill may derive from it.
    w.push_ok(1, Op::Set { cache: "c".into(), key: b"k".to_vec(), value: b"3".to_vec(), kind: ValueKind::Jsonb, expiry: Expiry::Default, mode: SetMode::Put, tags: Vec::new() });
    w.push_ok(1, set("c", "k", "4"));
    assert!(!w.only_fills());
    // So does a fill written again (what an increment or a touch of it logs).
    let mut w = WriteSet::default();
    w.push_ok(1, set("c", "k", "1"));
    w.push_ok(2, set("c", "k", "2"));
    assert!(!w.only_fills());
    w.rollback_to(2);
    assert!(w.only_fills(), "the second write rolled back with its savepoint");
    let mut w = WriteSet::default();
    w.push_ok(1, set("c", "k", "1"));
    w.push_ok(2, Op::Clear { cache: "c".into() });
    assert!(!w.only_fills());
    // ... but not once its subtransaction rolled back.
    w.rollback_to(2);
    assert!(w.only_fills());
}

#[test]
fn reads_see_own_writes_deletes_and_clears() {
    let mut w = WriteSet::default();
    assert_eq!(w.lookup("c", b"k", || 0), Pending::Unknown);
    w.push_ok(1, set("c", "k", "1"));
    assert_eq!(w.lookup("c", b"k", || 0), Pending::Value(b"1", ValueKind::Jsonb));
    w.push_ok(1, Op::Delete { cache: "c".into(), key: b"k".to_vec(), seen: None });
    assert_eq!(w.lookup("c", b"k", || 0), Pending::Deleted);
    w.push_ok(1, set("c", "k", "2"));
    w.push_ok(1, Op::Clear { cache: "c".into() });
    assert_eq!(w.lookup("c", b"k", || 0), Pending::Cleared);
    assert_eq!(w.lookup("c", b"other", || 0), Pending::Cleared);
    assert_eq!(w.lookup("d", b"k", || 0), Pending::Unknown);
    w.push_ok(1, set("c", "k", "3"));
    assert_eq!(w.lookup("c", b"k", || 0), Pending::Value(b"3", ValueKind::Jsonb));
    w.push_ok(1, Op::ClearAll);
    assert_eq!(w.lookup("d", b"k", || 0), Pending::Cleared);
    assert_eq!(w.lookup("c", b"k", || 0), Pending::Cleared);
}

#[test]
fn plan_keeps_last_write_after_last_clear() {
    let mut w = WriteSet::default();
    w.push_ok(1, set("c", "a", "1"));
    w.push_ok(1, set("c", "b", "1"));
    w.push_ok(1, Op::Clear { cache: "c".into() });
    w.push_ok(1, set("c", "b", "2"));
    w.push_ok(1, set("d", "x", "1"));
    w.push_ok(1, Op::Delete { cache: "d".into(), key: b"x".to_vec(), seen: None });
    let p = w.plan().unwrap();
    assert!(!p.clear_all);
    assert_eq!(p.clears, vec!["c"]);
    assert_eq!(
        p.writes,
        vec![
            Write { op: 3, cache: "c", key: b"b", change: Change::Set { value: b"2", expiry: Expiry::Default }, covered: false },
            Write { op: 5, cache: "d", key: b"x", change: Change::Delete, covered: false },
        ]
    );
}

#[test]
fn plan_has_each_keys_last_write_in_the_order_of_last_writes() {
    let mut w = WriteSet::default();
    w.push_ok(1, set("c", "a", "1"));
    w.push_ok(1, set("c", "b", "1"));
    w.push_ok(1, set("d", "a", "1"));
    w.push_ok(1, set("c", "a", "2"));
    // A rolled-back savepoint's write neither shows nor hides the one before it.
    w.push_ok(2, set("c", "b", "3"));
    w.rollback_to(2);
    assert_eq!(w.lookup("c", b"b", || 0), Pending::Value(b"1", ValueKind::Jsonb));
    let written: Vec<_> = w.plan().unwrap().writes.into_iter().map(|x| (x.op, x.cache, x.key, match x.change {
        Change::Set { value, .. } => Some(value),
        _ => None,
    })).collect();
    assert_eq!(
        written,
        vec![(1, "c", &b"b"[..], Some(&b"1"[..])), (2, "d", &b"a"[..], Some(&b"1"[..])), (3, "c", &b"a"[..], Some(&b"2"[..]))]
    );
    // Operation indexes point at the operations the commit moves out.
    assert_eq!(w.take_op(3), set("c", "a", "2"));
}

#[test]
fn a_touch_shows_the_shared_value_and_a_guard_follows_the_last_write() {
    let mut w = WriteSet::default();
    let seen = Seen::Entry { block: 3, serial: 9, expired: false };
    w.push_ok(1, Op::Touch { cache: "c".into(), key: b"k".to_vec(), expiry: Expiry::After(5) });
    assert_eq!(w.lookup("c", b"k", || 0), Pending::Unknown, "a touch leaves the value to the shared cache");
    assert_eq!(w.seen("c", b"k"), None);
    assert_eq!(w.touched("c", b"k"), Some(Expiry::After(5)));
    let p = w.plan().unwrap();
    assert_eq!(p.writes, vec![Write { op: 0, cache: "c", key: b"k", change: Change::Touch { expiry: Expiry::After(5) }, covered: false }]);
    w.push_ok(1, Op::Set { cache: "c".into(), key: b"k".to_vec(), value: b"1".to_vec(), kind: ValueKind::Jsonb, expiry: Expiry::Default, mode: SetMode::IfUnchanged(seen), tags: Vec::new() });
    assert_eq!(w.seen("c", b"k"), Some(seen));
    assert_eq!(w.last_set("c", b"k", || 0), Some(LastSet { value: b"1", kind: ValueKind::Jsonb, mode: SetMode::IfUnchanged(seen), expiry: Expiry::Default, tags: &[] }));
    assert_eq!(w.plan().unwrap().writes.len(), 1, "the set supersedes the touch");
    w.push_ok(2, Op::Delete { cache: "c".into(), key: b"k".to_vec(), seen: Some(seen) });
    assert_eq!((w.lookup("c", b"k", || 0), w.seen("c", b"k")), (Pending::Deleted, Some(seen)));
    w.push_ok(2, set("c", "k", "2"));
    assert_eq!(w.seen("c", b"k"), None, "a plain write after it is unguarded");
    w.rollback_to(2);
    assert_eq!((w.lookup("c", b"k", || 0), w.seen("c", b"k")), (Pending::Value(b"1", ValueKind::Jsonb), Some(seen)));
    w.push_ok(1, Op::Clear { cache: "c".into() });
    assert_eq!(w.seen("c", b"k"), None, "cleared since");
}

#[test]
fn subtransaction_rollback_drops_only_its_ops() {
    let mut w = WriteSet::default();
    w.push_ok(1, set("c", "k", "outer"));
    w.push_ok(2, set("c", "k", "inner"));
    w.push_ok(3, Op::Clear { cache: "c".into() });
    w.rollback_to(2);
    assert_eq!(w.lookup("c", b"k", || 0), Pending::Value(b"outer", ValueKind::Jsonb));
    assert_eq!(w.len(), 1);
    // A released savepoint hands its ops to the parent; a later rollback of a
    // sibling at the same level keeps them.
    w.push_ok(2, set("c", "k", "released"));
    w.commit_sub(2);
    w.push_ok(2, set("c", "k", "sibling"));
    w.rollback_to(2);
    assert_eq!(w.lookup("c", b"k", || 0), Pending::Value(b"released", ValueKind::Jsonb));
}

#[test]
fn declarations_remember_what_they_replaced() {
    let mut w = WriteSet::default();
    let old = CacheConfig::new(5, 0, true, "").unwrap();
    let new1 = CacheConfig::new(6, 0, true, "").unwrap();
    let new2 = CacheConfig::new(7, 0, false, "").unwrap();
    assert_eq!(w.declared_before("c"), None);
    w.push_ok(1, Op::Declare { cache: "c".into(), config: Box::new(new1), previous: Some(Box::new(old)) });
    w.push_ok(1, Op::Declare { cache: "c".into(), config: Box::new(new2), previous: Some(Box::new(new1)) });
    assert_eq!(w.declared("c"), Some(&new2));
    assert_eq!(w.declared_before("c"), Some(Some(old)));
    assert_eq!(w.plan().unwrap().declares, vec![("c", new2)]);
}

/// Everything a reader or the commit can observe of a write set.
fn observe(w: &WriteSet) -> (Vec<Pending<'_>>, String) {
    let mut seen = Vec::new();
    for c in ["c", "d"] {
        for k in ["a", "b", "x"] {
            seen.push(w.lookup(c, k.as_bytes(), || 0));
        }
    }
    (seen, format!("{:?} {:?} {:?}", w.plan().unwrap(), w.declared("c"), w.declared_before("c")))
}

#[test]
fn rolling_back_a_savepoint_restores_exactly_what_was_there() {
    // Random logs; after each rollback the write set must look as one built from
    // the kept operations alone.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let config = CacheConfig::new(3, 0, true, "").unwrap();
    for _round in 0..300 {
        let mut w = WriteSet::default();
        let mut kept: Vec<(u32, Op)> = Vec::new();
        let mut level = 1;
        for _step in 0..40 {
            let cache = ["c", "d"][next(2) as usize].to_string();
            let key = ["a", "b", "x"][next(3) as usize].as_bytes().to_vec();
            let op = match next(10) {
                0 => Op::Clear { cache },
                1 => Op::ClearAll,
                2 => Op::Declare { cache, config: Box::new(config), previous: None },
                3 => Op::Delete { cache, key, seen: None },
                4 => Op::Touch { cache, key, expiry: Expiry::After(5) },
                _ => Op::Set { cache, key, value: next(100).to_string().into_bytes(), kind: ValueKind::Jsonb, expiry: Expiry::Default, mode: SetMode::Fill, tags: Vec::new() },
            };
            match next(8) {
                0 if level < 5 => level += 1,
                1 if level > 1 => {
                    w.commit_sub(level);
                    for (l, _) in kept.iter_mut().filter(|(l, _)| *l >= level) {
                        *l = level - 1;
                    }
                    level -= 1;
                }
                2 if level > 1 => {
                    w.rollback_to(level);
                    kept.retain(|(l, _)| *l < level);
                    level -= 1;
                    let mut rebuilt = WriteSet::default();
                    for (l, op) in &kept {
                        rebuilt.push_ok(*l, op.clone());
                    }
                    assert_eq!(observe(&w), observe(&rebuilt));
                    assert_eq!(w.len(), rebuilt.len());
                }
                _ => {}
            }
            w.push_ok(level, op.clone());
            kept.push((level, op));
        }
    }
}

fn tagged(c: &str, k: &str, v: &str, tags: &[u64]) -> Op {
    Op::Set { cache: c.into(), key: k.into(), value: v.into(), kind: ValueKind::Jsonb, expiry: Expiry::Default, mode: SetMode::Fill, tags: tags.to_vec() }
}

#[test]
fn own_tag_and_prefix_invalidations_cover_earlier_writes_only() {
    let mut w = WriteSet::default();
    w.push_ok(1, tagged("c", "a", "1", &[7]));
    w.push_ok(1, tagged("c", "b", "2", &[8]));
    w.push_ok(1, tagged("c", "user:1", "3", &[]));
    w.push_ok(1, Op::InvalidateTags { cache: "c".into(), tags: vec![7], names: vec!["seven".into()] });
    w.push_ok(2, Op::DeletePrefix { cache: "c".into(), prefix: b"user:".to_vec() });
    assert_eq!(w.lookup("c", b"a", || 0), Pending::Deleted, "a carries tag 7");
    assert_eq!(w.lookup("c", b"b", || 0), Pending::Value(b"2", ValueKind::Jsonb));
    assert_eq!(w.lookup("c", b"user:1", || 0), Pending::Deleted);
    assert_eq!(w.lookup("c", b"user:2", || 0), Pending::Deleted, "covered without a write of its own");
    assert_eq!(w.lookup("c", b"other", || 0), Pending::Unknown, "tags of the shared cache's entries are the store's to judge");
    assert_eq!(w.lookup("d", b"user:1", || 0), Pending::Unknown, "per cache");
    assert_eq!(w.hidden_tags("c").unwrap(), vec![7]);
    assert_eq!(w.hidden_tags("d").unwrap(), Vec::<u64>::new());
    // Written again after the invalidation: its value.
    w.push_ok(2, tagged("c", "a", "4", &[7]));
    assert_eq!(w.lookup("c", b"a", || 0), Pending::Value(b"4", ValueKind::Jsonb));
    let p = w.plan().unwrap();
    assert_eq!(p.tags, vec![("c", &[7u64][..], &["seven".to_string()][..])]);
    assert_eq!(p.prefixes, vec![("c", &b"user:"[..])]);
    let covered: Vec<_> = p.writes.iter().map(|x| (x.key, x.covered, matches!(x.change, Change::Delete))).collect();
    assert_eq!(covered, vec![(&b"b"[..], false, false), (&b"user:1"[..], true, true), (&b"a"[..], false, false)]);
    drop(p);
    // The savepoint rolls back with its prefix invalidation and later write.
    w.rollback_to(2);
    assert_eq!(w.lookup("c", b"user:1", || 0), Pending::Value(b"3", ValueKind::Jsonb));
    assert_eq!(w.lookup("c", b"a", || 0), Pending::Deleted);
    let p = w.plan().unwrap();
    assert!(p.prefixes.is_empty());
    assert!(p.writes.iter().any(|x| x.key == b"a" && x.covered), "a is committed as a delete");
    // A clear after them makes them moot.
    w.push_ok(1, Op::Clear { cache: "c".into() });
    assert!(w.plan().unwrap().tags.is_empty());
    assert_eq!(w.hidden_tags("c").unwrap(), Vec::<u64>::new());
}
