//! The write set of one transaction: what it asked to change, in order, tagged with
//! the subtransaction level that asked. Reads consult it first (read your writes);
//! at commit it reduces to a plan (declarations, then clears, then the last write of
//! each key made after its cache's last clear); at rollback it is dropped, and a
//! rolled-back subtransaction drops just its own operations.

use std::collections::HashMap;

use super::store::CacheConfig;

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Set { cache: String, key: Vec<u8>, value: Vec<u8>, ttl_us: Option<i64> },
    Delete { cache: String, key: Vec<u8> },
    Clear { cache: String },
    ClearAll,
    /// A `cache_create`; `previous` is the committed declaration it replaces.
    Declare { cache: String, config: CacheConfig, previous: Option<CacheConfig> },
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

#[derive(Default)]
pub struct WriteSet {
    ops: Vec<(u32, Op)>,
    /// cache → stored key → index of the last Set/Delete of that key.
    keys: HashMap<String, HashMap<Vec<u8>, usize>>,
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
        self.index(i, &op);
        self.ops.push((level, op));
    }

    fn index(&mut self, i: usize, op: &Op) {
        match op {
            Op::Set { cache, key, .. } | Op::Delete { cache, key } => {
                self.keys.entry(cache.clone()).or_default().insert(key.clone(), i);
            }
            Op::Clear { cache } => {
                self.clears.insert(cache.clone(), i);
            }
            Op::ClearAll => self.clear_all = Some(i),
            Op::Declare { cache, .. } => {
                self.declares.insert(cache.clone(), i);
            }
        }
    }

    fn last_clear(&self, cache: &str) -> Option<usize> {
        self.clears.get(cache).copied().max(self.clear_all)
    }

    /// Whether this transaction has cleared `cache` (its private view).
    pub fn has_cleared(&self, cache: &str) -> bool {
        self.last_clear(cache).is_some()
    }

    pub fn lookup(&self, cache: &str, key: &[u8]) -> Pending<'_> {
        let last_write = self.keys.get(cache).and_then(|m| m.get(key)).copied();
        let last_clear = self.last_clear(cache);
        match (last_write, last_clear) {
            (Some(w), c) if c.is_none_or(|c| w > c) => match &self.ops[w].1 {
                Op::Set { value, .. } => Pending::Value(value),
                _ => Pending::Deleted,
            },
            (_, Some(_)) => Pending::Cleared,
            _ => Pending::Unknown,
        }
    }

    /// The configuration this transaction has declared for `cache`, if any.
    pub fn declared(&self, cache: &str) -> Option<&CacheConfig> {
        match self.declares.get(cache).map(|&i| &self.ops[i].1) {
            Some(Op::Declare { config, .. }) => Some(config),
            _ => None,
        }
    }

    /// The committed declaration this transaction's first `cache_create` replaced:
    /// `Some(None)` when there was none, `None` when the transaction declared nothing.
    pub fn declared_before(&self, cache: &str) -> Option<Option<CacheConfig>> {
        self.ops.iter().find_map(|(_, op)| match op {
            Op::Declare { cache: c, previous, .. } if c == cache => Some(*previous),
            _ => None,
        })
    }

    /// A subtransaction at `level` rolled back: forget what it and its children did.
    pub fn rollback_to(&mut self, level: u32) {
        let keep = self.ops.iter().position(|(l, _)| *l >= level).unwrap_or(self.ops.len());
        if keep == self.ops.len() {
            return;
        }
        let ops = std::mem::take(&mut self.ops);
        self.reset();
        for (l, op) in ops.into_iter().take(keep) {
            self.push(l, op);
        }
    }

    /// A subtransaction at `level` committed: its operations now belong to its parent.
    pub fn commit_sub(&mut self, level: u32) {
        for (l, _) in self.ops.iter_mut().rev() {
            if *l < level {
                break;
            }
            *l = level - 1;
        }
    }

    pub fn plan(&self) -> Plan<'_> {
        let mut plan = Plan { clear_all: self.clear_all.is_some(), ..Default::default() };
        let mut declares: Vec<_> = self.declares.values().copied().collect();
        declares.sort_unstable();
        for i in declares {
            if let Op::Declare { cache, config, .. } = &self.ops[i].1 {
                plan.declares.push((cache, *config));
            }
        }
        let mut clears: Vec<_> = self.clears.iter().map(|(c, &i)| (i, c.as_str())).collect();
        clears.sort_unstable();
        plan.clears = clears.into_iter().map(|(_, c)| c).collect();
        let mut writes: Vec<usize> = self
            .keys
            .iter()
            .flat_map(|(cache, m)| {
                let cleared = self.last_clear(cache);
                m.values().copied().filter(move |&w| cleared.is_none_or(|c| w > c))
            })
            .collect();
        writes.sort_unstable();
        for i in writes {
            match &self.ops[i].1 {
                Op::Set { cache, key, value, ttl_us } => {
                    plan.writes.push(Write { cache, key, value: Some((value, *ttl_us)) })
                }
                Op::Delete { cache, key } => plan.writes.push(Write { cache, key, value: None }),
                _ => unreachable!("only sets and deletes are indexed by key"),
            }
        }
        plan
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
                Write { cache: "c", key: b"b", value: Some((b"2", None)) },
                Write { cache: "d", key: b"x", value: None },
            ]
        );
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
        w.push(1, Op::Declare { cache: "c".into(), config: new1, previous: Some(old) });
        w.push(1, Op::Declare { cache: "c".into(), config: new2, previous: Some(new1) });
        assert_eq!(w.declared("c"), Some(&new2));
        assert_eq!(w.declared_before("c"), Some(Some(old)));
        assert_eq!(w.plan().declares, vec![("c", new2)]);
    }
}
