//! The write set of one transaction: what it asked to change, in order, tagged with
//! the subtransaction level that asked. Reads consult it first (read your writes);
//! at commit it reduces to a plan (declarations, then clears, then the last write of
//! each key made after its cache's last clear); at rollback it is dropped, and a
//! rolled-back subtransaction drops just its own operations.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use super::store::CacheConfig;

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Set { cache: String, key: Vec<u8>, value: Vec<u8>, ttl_us: Option<i64> },
    Delete { cache: String, key: Vec<u8> },
    Clear { cache: String },
    ClearAll,
    /// A `cache_create`; `previous` is the committed declaration it replaces. Boxed:
    /// a configuration is a few hundred bytes, and every operation is moved around.
    Declare { cache: String, config: Box<CacheConfig>, previous: Option<Box<CacheConfig>> },
}

/// What the transaction's own operations say about a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Pending<'a> {
    Value(&'a [u8]),
    Deleted,
    /// The cache was cleared by this transaction and the key not written since:
    /// a miss, whatever the shared cache holds.
    Cleared,
    /// Nothing: ask the shared cache.
    Unknown,
}

#[derive(Debug, PartialEq)]
pub struct Write<'a> {
    /// Its operation's index, for [`WriteSet::take_op`] at commit.
    pub op: usize,
    pub cache: &'a str,
    pub key: &'a [u8],
    /// `None` deletes; `Some((value, ttl_us))` sets.
    pub value: Option<(&'a [u8], Option<i64>)>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan<'a> {
    pub declares: Vec<(&'a str, CacheConfig)>,
    pub clear_all: bool,
    pub clears: Vec<&'a str>,
    pub writes: Vec<Write<'a>>,
}

const NONE: usize = usize::MAX;

/// The hasher of a map whose keys are already SipHash values: hashing them again
/// would only cost time.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed (`write_u64`); fold anything else in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Logged {
    level: u32,
    op: Op,
    /// For a Set or Delete: the previous write with the same hash of (cache, key)
    /// (`NONE`: none), and whether a later write of the same key replaced it.
    prev_same_hash: usize,
    superseded: bool,
}

/// Sets and deletes are indexed by a hash of (cache, key) rather than by copies of
/// both, so that a write costs no allocation beyond its own operation.
#[derive(Default)]
pub struct WriteSet {
    ops: Vec<Logged>,
    /// Hash of (cache, key) → index of the last Set/Delete with that hash; earlier
    /// ones with the same hash chain through `prev_same_hash`.
    keys: HashMap<u64, usize, BuildHasherDefault<AlreadyHashed>>,
    hasher: RandomState,
    /// cache → index of its last Clear.
    clears: HashMap<String, usize>,
    clear_all: Option<usize>,
    /// cache → index of its last Declare.
    declares: HashMap<String, usize>,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn reset(&mut self) {
        *self = WriteSet::default();
    }

    pub fn push(&mut self, level: u32, op: Op) {
        let i = self.ops.len();
        let mut prev_same_hash = NONE;
        match &op {
            Op::Set { cache, key, .. } | Op::Delete { cache, key } => {
                let key_hash = self.hasher.hash_one((cache.as_str(), key.as_slice()));
                prev_same_hash = self.keys.insert(key_hash, i).unwrap_or(NONE);
                if let Some(last) = self.last_write_from(prev_same_hash, cache, key) {
                    self.ops[last].superseded = true;
                }
            }
            Op::Clear { cache } => {
                self.clears.insert(cache.clone(), i);
            }
            Op::ClearAll => self.clear_all = Some(i),
            Op::Declare { cache, .. } => {
                self.declares.insert(cache.clone(), i);
            }
        }
        self.ops.push(Logged { level, op, prev_same_hash, superseded: false });
    }

    /// The index of the last Set or Delete of (cache, key).
    fn last_write(&self, key_hash: u64, cache: &str, key: &[u8]) -> Option<usize> {
        self.last_write_from(self.keys.get(&key_hash).copied().unwrap_or(NONE), cache, key)
    }

    /// The last Set or Delete of (cache, key) at or before `i` on its hash chain.
    fn last_write_from(&self, mut i: usize, cache: &str, key: &[u8]) -> Option<usize> {
        while i != NONE {
            match &self.ops[i].op {
                Op::Set { cache: c, key: k, .. } | Op::Delete { cache: c, key: k } if c == cache && k == key => {
                    return Some(i);
                }
                _ => i = self.ops[i].prev_same_hash,
            }
        }
        None
    }

    fn last_clear(&self, cache: &str) -> Option<usize> {
        self.clears.get(cache).copied().max(self.clear_all)
    }

    /// Whether this transaction has cleared `cache` (its private view).
    pub fn has_cleared(&self, cache: &str) -> bool {
        self.last_clear(cache).is_some()
    }

    pub fn lookup(&self, cache: &str, key: &[u8]) -> Pending<'_> {
        let last_write = self.last_write(self.hasher.hash_one((cache, key)), cache, key);
        let last_clear = self.last_clear(cache);
        match (last_write, last_clear) {
            (Some(w), c) if c.is_none_or(|c| w > c) => match &self.ops[w].op {
                Op::Set { value, .. } => Pending::Value(value),
                _ => Pending::Deleted,
            },
            (_, Some(_)) => Pending::Cleared,
            _ => Pending::Unknown,
        }
    }

    /// The configuration this transaction has declared for `cache`, if any.
    pub fn declared(&self, cache: &str) -> Option<&CacheConfig> {
        match self.declares.get(cache).map(|&i| &self.ops[i].op) {
            Some(Op::Declare { config, .. }) => Some(&**config),
            _ => None,
        }
    }

    /// The committed declaration this transaction's first `cache_create` replaced:
    /// `Some(None)` when there was none, `None` when the transaction declared nothing.
    pub fn declared_before(&self, cache: &str) -> Option<Option<CacheConfig>> {
        self.ops.iter().find_map(|l| match &l.op {
            Op::Declare { cache: c, previous, .. } if c == cache => Some(previous.as_deref().copied()),
            _ => None,
        })
    }

    /// A subtransaction at `level` rolled back: forget what it and its children did.
    pub fn rollback_to(&mut self, level: u32) {
        let keep = self.ops.iter().position(|l| l.level >= level).unwrap_or(self.ops.len());
        if keep == self.ops.len() {
            return;
        }
        let ops = std::mem::take(&mut self.ops);
        self.reset();
        for l in ops.into_iter().take(keep) {
            self.push(l.level, l.op);
        }
    }

    /// A subtransaction at `level` committed: its operations now belong to its parent.
    pub fn commit_sub(&mut self, level: u32) {
        for l in self.ops.iter_mut().rev() {
            if l.level < level {
                break;
            }
            l.level = level - 1;
        }
    }

    /// What the commit must do, in order: declarations, clears, then the last write
    /// of each key made after its cache's last clear.
    pub fn plan(&self) -> Plan<'_> {
        let mut plan = Plan { clear_all: self.clear_all.is_some(), ..Default::default() };
        for (i, l) in self.ops.iter().enumerate() {
            match &l.op {
                Op::Set { cache, key, value, ttl_us } if !l.superseded && self.after_clear(cache, i) => {
                    plan.writes.push(Write { op: i, cache, key, value: Some((value, *ttl_us)) });
                }
                Op::Delete { cache, key } if !l.superseded && self.after_clear(cache, i) => {
                    plan.writes.push(Write { op: i, cache, key, value: None });
                }
                Op::Clear { cache } if self.clears.get(cache) == Some(&i) => plan.clears.push(cache),
                Op::Declare { cache, config, .. } if self.declares.get(cache) == Some(&i) => {
                    plan.declares.push((cache, **config));
                }
                _ => {}
            }
        }
        plan
    }

    /// Whether operation `i` on `cache` comes after the cache's last clear.
    fn after_clear(&self, cache: &str, i: usize) -> bool {
        self.last_clear(cache).is_none_or(|c| i > c)
    }

    /// Moves operation `i` (a [`Write::op`]) out, for the commit to keep its key and
    /// value without copying them; the write set is dropped afterwards.
    pub fn take_op(&mut self, i: usize) -> Op {
        std::mem::replace(&mut self.ops[i].op, Op::ClearAll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(c: &str, k: &str, v: &str) -> Op {
        Op::Set { cache: c.into(), key: k.into(), value: v.into(), ttl_us: None }
    }

    #[test]
    fn reads_see_own_writes_deletes_and_clears() {
        let mut w = WriteSet::default();
        assert_eq!(w.lookup("c", b"k"), Pending::Unknown);
        w.push(1, set("c", "k", "1"));
        assert_eq!(w.lookup("c", b"k"), Pending::Value(b"1"));
        w.push(1, Op::Delete { cache: "c".into(), key: b"k".to_vec() });
        assert_eq!(w.lookup("c", b"k"), Pending::Deleted);
        w.push(1, set("c", "k", "2"));
        w.push(1, Op::Clear { cache: "c".into() });
        assert_eq!(w.lookup("c", b"k"), Pending::Cleared);
        assert_eq!(w.lookup("c", b"other"), Pending::Cleared);
        assert_eq!(w.lookup("d", b"k"), Pending::Unknown);
        w.push(1, set("c", "k", "3"));
        assert_eq!(w.lookup("c", b"k"), Pending::Value(b"3"));
        w.push(1, Op::ClearAll);
        assert_eq!(w.lookup("d", b"k"), Pending::Cleared);
        assert_eq!(w.lookup("c", b"k"), Pending::Cleared);
    }

    #[test]
    fn plan_keeps_last_write_after_last_clear() {
        let mut w = WriteSet::default();
        w.push(1, set("c", "a", "1"));
        w.push(1, set("c", "b", "1"));
        w.push(1, Op::Clear { cache: "c".into() });
        w.push(1, set("c", "b", "2"));
        w.push(1, set("d", "x", "1"));
        w.push(1, Op::Delete { cache: "d".into(), key: b"x".to_vec() });
        let p = w.plan();
        assert!(!p.clear_all);
        assert_eq!(p.clears, vec!["c"]);
        assert_eq!(
            p.writes,
            vec![
                Write { op: 3, cache: "c", key: b"b", value: Some((b"2", None)) },
                Write { op: 5, cache: "d", key: b"x", value: None },
            ]
        );
    }

    #[test]
    fn plan_has_each_keys_last_write_in_the_order_of_last_writes() {
        let mut w = WriteSet::default();
        w.push(1, set("c", "a", "1"));
        w.push(1, set("c", "b", "1"));
        w.push(1, set("d", "a", "1"));
        w.push(1, set("c", "a", "2"));
        // A rolled-back savepoint's write neither shows nor hides the one before it.
        w.push(2, set("c", "b", "3"));
        w.rollback_to(2);
        assert_eq!(w.lookup("c", b"b"), Pending::Value(b"1"));
        let written: Vec<_> = w.plan().writes.into_iter().map(|x| (x.op, x.cache, x.key, x.value.map(|(v, _)| v))).collect();
        assert_eq!(
            written,
            vec![(1, "c", &b"b"[..], Some(&b"1"[..])), (2, "d", &b"a"[..], Some(&b"1"[..])), (3, "c", &b"a"[..], Some(&b"2"[..]))]
        );
        // Operation indexes point at the operations the commit moves out.
        assert_eq!(w.take_op(3), set("c", "a", "2"));
    }

    #[test]
    fn subtransaction_rollback_drops_only_its_ops() {
        let mut w = WriteSet::default();
        w.push(1, set("c", "k", "outer"));
        w.push(2, set("c", "k", "inner"));
        w.push(3, Op::Clear { cache: "c".into() });
        w.rollback_to(2);
        assert_eq!(w.lookup("c", b"k"), Pending::Value(b"outer"));
        assert_eq!(w.len(), 1);
        // A released savepoint hands its ops to the parent; a later rollback of a
        // sibling at the same level keeps them.
        w.push(2, set("c", "k", "released"));
        w.commit_sub(2);
        w.push(2, set("c", "k", "sibling"));
        w.rollback_to(2);
        assert_eq!(w.lookup("c", b"k"), Pending::Value(b"released"));
    }

    #[test]
    fn declarations_remember_what_they_replaced() {
        let mut w = WriteSet::default();
        let old = CacheConfig::new(5, 0, true, "").unwrap();
        let new1 = CacheConfig::new(6, 0, true, "").unwrap();
        let new2 = CacheConfig::new(7, 0, false, "").unwrap();
        assert_eq!(w.declared_before("c"), None);
        w.push(1, Op::Declare { cache: "c".into(), config: Box::new(new1), previous: Some(Box::new(old)) });
        w.push(1, Op::Declare { cache: "c".into(), config: Box::new(new2), previous: Some(Box::new(new1)) });
        assert_eq!(w.declared("c"), Some(&new2));
        assert_eq!(w.declared_before("c"), Some(Some(old)));
        assert_eq!(w.plan().declares, vec![("c", new2)]);
    }
}
