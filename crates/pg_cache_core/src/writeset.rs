//! The write set of one transaction: what it asked to change, in order, tagged with
//! the subtransaction level that asked. Reads consult it first (read your writes);
//! at commit it reduces to a plan (declarations, then clears, then the last write of
//! each key made after its cache's last clear); at rollback it is dropped, and a
//! rolled-back subtransaction drops just its own operations.

use std::collections::HashMap;
use std::collections::TryReserveError;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use super::store::{CacheConfig, Seen};
use super::value::ValueKind;

/// How a committed set meets invalidations that committed while its transaction ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// `cache_set`: derived data, dropped at commit when its key, cache or database
    /// was invalidated after the transaction started (it may have been computed
    /// from rows older than the invalidation).
    Fill,
    /// `cache_put`: stored data, installed whatever committed meanwhile; last
    /// committer wins.
    Put,
    /// A value computed from what a read saw of the key (`cache_incr`, `cache_add`):
    /// installed only if the key still holds that at commit; otherwise a write that
    /// committed meanwhile stands, as if this one had come first.
    IfUnchanged(Seen),
}

/// When a written entry expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// After its cache's `duration`, if it has one, counted from the commit.
    Default,
    /// This many microseconds after the commit.
    After(i64),
    /// At this time (a `TimestampTz`); `i64::MAX`: never, whatever the cache's duration.
    At(i64),
    /// Whatever expiry the key's entry has at commit: for a write computed from that
    /// entry (an increment), so that a touch committed meanwhile is not undone.
    /// Only with [`SetMode::IfUnchanged`], whose commit knows the entry.
    Keep,
}

impl Expiry {
    /// The time an entry committed at `now` expires ([`crate::store::NO_EXPIRY`] for
    /// never), given its cache's duration. For [`Expiry::Keep`], `kept`: what the
    /// key's entry has.
    pub fn at(self, now: i64, duration_us: Option<i64>, kept: i64) -> i64 {
        match self {
            Expiry::Default => duration_us.map_or(crate::store::NO_EXPIRY, |d| now.saturating_add(d)),
            Expiry::After(d) => now.saturating_add(d),
            Expiry::At(t) => t,
            Expiry::Keep => kept,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `tags`: hashes ([`crate::store::tag_hash`]) of the tags the entry carries.
    Set { cache: String, key: Vec<u8>, value: Vec<u8>, kind: ValueKind, expiry: Expiry, mode: SetMode, tags: Vec<u64> },
    /// `seen`: only if the key still holds what a read saw (`cache_pull`), as for
    /// [`SetMode::IfUnchanged`].
    Delete { cache: String, key: Vec<u8>, seen: Option<Seen> },
    /// A new expiry for whatever entry the key holds at commit (`cache_touch`). Only
    /// logged while the transaction has no value of its own for the key (with one,
    /// the toucher logs that value again with the new expiry).
    Touch { cache: String, key: Vec<u8>, expiry: Expiry },
    Clear { cache: String },
    /// `cache_invalidate_tags`: every entry carrying any of `tags` (hashes), named
    /// `names` (for the change feed).
    InvalidateTags { cache: String, tags: Vec<u64>, names: Vec<String> },
    /// `cache_delete_prefix`: every key whose stored form starts with `prefix`.
    DeletePrefix { cache: String, prefix: Vec<u8> },
    ClearAll,
    /// A `cache_create`; `previous` is the committed declaration it replaces. Boxed:
    /// a configuration is a few hundred bytes, and every operation is moved around.
    Declare { cache: String, config: Box<CacheConfig>, previous: Option<Box<CacheConfig>> },
}

/// What the transaction's own operations say about a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Pending<'a> {
    Value(&'a [u8], ValueKind),
    Deleted,
    /// The cache was cleared by this transaction and the key not written since:
    /// a miss, whatever the shared cache holds.
    Cleared,
    /// Nothing: ask the shared cache.
    Unknown,
}

/// A transaction's own set of a key, as [`WriteSet::last_set`] finds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastSet<'a> {
    pub value: &'a [u8],
    pub kind: ValueKind,
    pub mode: SetMode,
    pub expiry: Expiry,
    pub tags: &'a [u64],
}

#[derive(Debug, PartialEq)]
pub struct Write<'a> {
    /// Its operation's index, for [`WriteSet::take_op`] at commit.
    pub op: usize,
    pub cache: &'a str,
    pub key: &'a [u8],
    pub change: Change<'a>,
    /// A set that a later tag or prefix invalidation of the same transaction covers:
    /// committed as a delete of its key (what the transaction sees of it).
    pub covered: bool,
}

/// What a [`Write`] does to its key.
#[derive(Debug, PartialEq)]
pub enum Change<'a> {
    Set { value: &'a [u8], expiry: Expiry },
    Delete,
    Touch { expiry: Expiry },
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan<'a> {
    pub declares: Vec<(&'a str, CacheConfig)>,
    pub clear_all: bool,
    pub clears: Vec<&'a str>,
    /// Tag invalidations made after their cache's last clear: hashes and names.
    pub tags: Vec<(&'a str, &'a [u64], &'a [String])>,
    /// Prefix invalidations made after their cache's last clear.
    pub prefixes: Vec<(&'a str, &'a [u8])>,
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
    /// Set/Delete/Touch (the key's writes): the hash of (cache, key). Unused for
    /// other operations.
    key_hash: u64,
    /// What this operation's index map held before it (`NONE`: nothing), so that
    /// undoing it puts the map back: for a Set or Delete the previous write with the
    /// same hash, for a Clear, Declare, InvalidateTags or DeletePrefix the cache's
    /// previous one, for a ClearAll the previous ClearAll.
    prev: usize,
    /// Set/Delete: the earlier write of the same key this one replaced (`NONE`: none).
    replaced: usize,
    /// Whether a later write of the same key replaced this one.
    superseded: bool,
}

/// The write set could not grow: the backend is out of memory. The caller raises
/// 53200 (out_of_memory) and the write set is as it was before the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

impl From<TryReserveError> for OutOfMemory {
    fn from(_: TryReserveError) -> Self {
        OutOfMemory
    }
}

/// A copy of `bytes` that reports a failed allocation instead of aborting the process.
pub fn try_copy(bytes: &[u8]) -> Result<Vec<u8>, OutOfMemory> {
    let mut v = Vec::new();
    v.try_reserve_exact(bytes.len())?;
    v.extend_from_slice(bytes);
    Ok(v)
}

/// As [`try_copy`], for a string.
pub fn try_string(s: &str) -> Result<String, OutOfMemory> {
    let mut v = String::new();
    v.try_reserve_exact(s.len())?;
    v.push_str(s);
    Ok(v)
}

/// Sets and deletes are indexed by a hash of (cache, key) rather than by copies of
/// both, so that a write costs no allocation beyond its own operation.
///
/// The log's levels never decrease from one operation to the next (a subtransaction's
/// operations come after its parent's and are relabelled or removed when it ends), so
/// a rolled-back subtransaction is a suffix of the log. Every operation remembers what
/// it changed in the indexes, so that undoing it costs what it undoes: a PL/pgSQL loop
/// with an EXCEPTION block per iteration stays linear.
#[derive(Default)]
pub struct WriteSet {
    ops: Vec<Logged>,
    /// Hash of (cache, key) → index of the last Set/Delete with that hash; earlier
    /// ones with the same hash chain through `prev`.
    keys: HashMap<u64, usize, BuildHasherDefault<AlreadyHashed>>,
    hasher: RandomState,
    /// cache → index of its last Clear.
    clears: HashMap<String, usize>,
    clear_all: Option<usize>,
    /// cache → index of its last Declare.
    declares: HashMap<String, usize>,
    /// cache → index of its last InvalidateTags or DeletePrefix; earlier ones chain
    /// through `prev`.
    predicates: HashMap<String, usize>,
}

/// What the transaction's own operations say of a key (see `WriteSet::live_write`).
enum Live<'a> {
    /// Its last write since its cache's last clear, not covered since.
    Write(&'a Op),
    /// Deleted by a later tag or prefix invalidation of the transaction's own.
    Covered,
    /// No write; `true` when the cache was cleared.
    Nothing(bool),
}

/// Points `map[key]` at `i`; returns what it held (`NONE`: nothing). Reserves first,
/// so that a failed allocation leaves the map as it was.
fn index_name(map: &mut HashMap<String, usize>, key: &str, i: usize) -> Result<usize, OutOfMemory> {
    if let Some(slot) = map.get_mut(key) {
        return Ok(std::mem::replace(slot, i));
    }
    map.try_reserve(1)?;
    map.insert(try_string(key)?, i);
    Ok(NONE)
}

/// Puts `map[key]` back to `prev` (`NONE`: removes it). The entry exists, so this
/// allocates nothing: it runs in the subtransaction abort callback.
fn restore_name(map: &mut HashMap<String, usize>, key: &str, prev: usize) {
    if prev == NONE {
        map.remove(key);
    } else if let Some(slot) = map.get_mut(key) {
        *slot = prev;
    }
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether every operation logged is a fill and no key was written twice: such a
    /// write set changes nothing but derived data, and none of its fills can have
    /// been computed from another write of its own (a put, or an increment or touch
    /// of its own fill, which log a fill again over the first).
    pub fn only_fills(&self) -> bool {
        self.ops.iter().all(|l| matches!(l.op, Op::Set { mode: SetMode::Fill, .. }) && !l.superseded)
    }

    pub fn reset(&mut self) {
        *self = WriteSet::default();
    }

    /// Logs `op` at subtransaction `level`. On `Err` nothing changed.
    pub fn push(&mut self, level: u32, op: Op) -> Result<(), OutOfMemory> {
        debug_assert!(self.ops.last().is_none_or(|l| l.level <= level), "levels never decrease along the log");
        self.ops.try_reserve(1)?;
        let i = self.ops.len();
        let (mut key_hash, mut replaced) = (0, NONE);
        let prev = match &op {
            Op::Set { cache, key, .. } | Op::Delete { cache, key, .. } | Op::Touch { cache, key, .. } => {
                key_hash = self.hasher.hash_one((cache.as_str(), key.as_slice()));
                self.keys.try_reserve(1)?;
                let prev = self.keys.insert(key_hash, i).unwrap_or(NONE);
                if let Some(last) = self.last_write_from(prev, cache, key) {
                    self.ops[last].superseded = true;
                    replaced = last;
                }
                prev
            }
            Op::Clear { cache } => index_name(&mut self.clears, cache, i)?,
            Op::ClearAll => self.clear_all.replace(i).unwrap_or(NONE),
            Op::Declare { cache, .. } => index_name(&mut self.declares, cache, i)?,
            Op::InvalidateTags { cache, .. } | Op::DeletePrefix { cache, .. } => index_name(&mut self.predicates, cache, i)?,
        };
        self.ops.push(Logged { level, op, key_hash, prev, replaced, superseded: false });
        Ok(())
    }

    /// Removes the last operation and puts the indexes back as they were before it.
    fn pop(&mut self) {
        let Some(l) = self.ops.pop() else { return };
        match &l.op {
            Op::Set { .. } | Op::Delete { .. } | Op::Touch { .. } => {
                if l.prev == NONE {
                    self.keys.remove(&l.key_hash);
                } else {
                    self.keys.insert(l.key_hash, l.prev);
                }
                if l.replaced != NONE {
                    self.ops[l.replaced].superseded = false;
                }
            }
            Op::Clear { cache } => restore_name(&mut self.clears, cache, l.prev),
            Op::ClearAll => self.clear_all = (l.prev != NONE).then_some(l.prev),
            Op::Declare { cache, .. } => restore_name(&mut self.declares, cache, l.prev),
            Op::InvalidateTags { cache, .. } | Op::DeletePrefix { cache, .. } => restore_name(&mut self.predicates, cache, l.prev),
        }
    }

    /// The index of the last write (Set, Delete, Touch) of (cache, key).
    fn last_write(&self, key_hash: u64, cache: &str, key: &[u8]) -> Option<usize> {
        self.last_write_from(self.keys.get(&key_hash).copied().unwrap_or(NONE), cache, key)
    }

    /// The last write of (cache, key) at or before `i` on its hash chain.
    fn last_write_from(&self, mut i: usize, cache: &str, key: &[u8]) -> Option<usize> {
        while i != NONE {
            match &self.ops[i].op {
                Op::Set { cache: c, key: k, .. } | Op::Delete { cache: c, key: k, .. } | Op::Touch { cache: c, key: k, .. }
                    if c == cache && k == key =>
                {
                    return Some(i);
                }
                _ => i = self.ops[i].prev,
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

    /// `now` is asked only of a write given a time (`expires_at`).
    pub fn lookup(&self, cache: &str, key: &[u8], now: impl Fn() -> i64) -> Pending<'_> {
        match self.live_write(cache, key) {
            // A time given to the write (`expires_at`) that has passed: the key holds
            // nothing, for this transaction as for everyone after its commit. A
            // `ttl` counts from the commit, so it has not begun yet.
            Live::Write(Op::Set { expiry: Expiry::At(at), .. }) if *at <= now() => Pending::Deleted,
            // A touch that gave the shared value a time that has passed: expired.
            Live::Write(Op::Touch { expiry: Expiry::At(at), .. }) if *at <= now() => Pending::Deleted,
            Live::Write(Op::Set { value, kind, .. }) => Pending::Value(value, *kind),
            Live::Write(Op::Delete { .. }) | Live::Covered => Pending::Deleted,
            // A touch is logged only when the transaction has no value of its own:
            // the shared cache's value it is.
            Live::Write(_) => Pending::Unknown,
            Live::Nothing(true) => Pending::Cleared,
            Live::Nothing(false) => Pending::Unknown,
        }
    }

    /// The tags this transaction invalidated in `cache` since its last clear of it
    /// (hashes): entries of the shared cache carrying one are misses for it.
    pub fn hidden_tags(&self, cache: &str) -> Result<Vec<u64>, OutOfMemory> {
        let mut out = Vec::new();
        let mut i = self.predicates.get(cache).copied().unwrap_or(NONE);
        while i != NONE && self.after_clear(cache, i) {
            if let Op::InvalidateTags { tags, .. } = &self.ops[i].op {
                out.try_reserve(tags.len())?;
                out.extend_from_slice(tags);
            }
            i = self.ops[i].prev;
        }
        Ok(out)
    }

    /// Whether a tag or prefix invalidation of `cache` logged after operation
    /// `after` covers `key` (or, for tags, one of `tags`).
    fn covered_since(&self, cache: &str, key: &[u8], tags: &[u64], after: usize) -> bool {
        let mut i = self.predicates.get(cache).copied().unwrap_or(NONE);
        while i != NONE && (after == NONE || i > after) {
            match &self.ops[i].op {
                Op::DeletePrefix { prefix, .. } if key.starts_with(prefix) => return true,
                Op::InvalidateTags { tags: invalidated, .. } if tags.iter().any(|t| invalidated.contains(t)) => return true,
                _ => {}
            }
            i = self.ops[i].prev;
        }
        false
    }

    /// What the transaction's last write of the key is guarded by: the read it was
    /// computed from, if it was (see [`SetMode::IfUnchanged`]). A write computed from
    /// that write carries the same guard.
    pub fn seen(&self, cache: &str, key: &[u8]) -> Option<Seen> {
        match self.live_write(cache, key) {
            Live::Write(Op::Set { mode: SetMode::IfUnchanged(seen), .. } | Op::Delete { seen: Some(seen), .. }) => Some(*seen),
            _ => None,
        }
    }

    /// The transaction's last write of the key, if that write is a set (what a touch
    /// or an increment of the key starts from).
    /// `now`: a set whose `expires_at` time has passed is none (see [`WriteSet::lookup`]).
    pub fn last_set(&self, cache: &str, key: &[u8], now: impl Fn() -> i64) -> Option<LastSet<'_>> {
        match self.live_write(cache, key) {
            Live::Write(Op::Set { expiry: Expiry::At(at), .. }) if *at <= now() => None,
            Live::Write(Op::Set { value, kind, mode, expiry, tags, .. }) => {
                Some(LastSet { value, kind: *kind, mode: *mode, expiry: *expiry, tags })
            }
            _ => None,
        }
    }

    /// The expiry of the transaction's touch of the shared value, if its last write of
    /// the key is one.
    pub fn touched(&self, cache: &str, key: &[u8]) -> Option<Expiry> {
        match self.live_write(cache, key) {
            Live::Write(Op::Touch { expiry, .. }) => Some(*expiry),
            _ => None,
        }
    }

    /// The last write of the key since the cache's last clear, unless a tag or
    /// prefix invalidation made after it covers it.
    fn live_write(&self, cache: &str, key: &[u8]) -> Live<'_> {
        let last_write = self.last_write(self.hasher.hash_one((cache, key)), cache, key);
        let last_clear = self.last_clear(cache);
        let since = match (last_write, last_clear) {
            (Some(w), c) if c.is_none_or(|c| w > c) => w,
            (_, c) => c.unwrap_or(NONE),
        };
        if !self.predicates.is_empty() {
            let tags = match last_write.map(|w| &self.ops[w].op) {
                Some(Op::Set { tags, .. }) if since == last_write.unwrap_or(NONE) => tags.as_slice(),
                _ => &[],
            };
            if self.covered_since(cache, key, tags, since) {
                return Live::Covered;
            }
        }
        match (last_write, last_clear) {
            (Some(w), c) if c.is_none_or(|c| w > c) => Live::Write(&self.ops[w].op),
            (_, c) => Live::Nothing(c.is_some()),
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
        self.declares.get(cache)?;
        self.ops.iter().find_map(|l| match &l.op {
            Op::Declare { cache: c, previous, .. } if c == cache => Some(previous.as_deref().copied()),
            _ => None,
        })
    }

    /// A subtransaction at `level` rolled back: forget what it and its children did.
    /// Costs what it undoes, and allocates nothing (it runs in an abort callback).
    pub fn rollback_to(&mut self, level: u32) {
        while self.ops.last().is_some_and(|l| l.level >= level) {
            self.pop();
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
    /// of each key made after its cache's last clear. `Err` when its lists cannot be
    /// allocated (reserved up front, so that a large write set fails cleanly).
    pub fn plan(&self) -> Result<Plan<'_>, OutOfMemory> {
        let mut plan = Plan { clear_all: self.clear_all.is_some(), ..Default::default() };
        let live = |i: usize, l: &Logged| match &l.op {
            Op::Set { cache, .. } | Op::Delete { cache, .. } | Op::Touch { cache, .. } => {
                !l.superseded && self.after_clear(cache, i)
            }
            _ => false,
        };
        let writes = self.ops.iter().enumerate().filter(|&(i, l)| live(i, l)).count();
        plan.writes.try_reserve_exact(writes)?;
        plan.clears.try_reserve_exact(self.clears.len())?;
        plan.declares.try_reserve_exact(self.declares.len())?;
        let predicates = self.ops.iter().filter(|l| matches!(l.op, Op::InvalidateTags { .. } | Op::DeletePrefix { .. })).count();
        plan.tags.try_reserve_exact(predicates)?;
        plan.prefixes.try_reserve_exact(predicates)?;
        for (i, l) in self.ops.iter().enumerate() {
            match &l.op {
                Op::Set { cache, key, value, expiry, tags, .. } if live(i, l) => {
                    let covered = !self.predicates.is_empty() && self.covered_since(cache, key, tags, i);
                    let change = if covered { Change::Delete } else { Change::Set { value, expiry: *expiry } };
                    plan.writes.push(Write { op: i, cache, key, change, covered });
                }
                Op::Delete { cache, key, .. } if live(i, l) => {
                    plan.writes.push(Write { op: i, cache, key, change: Change::Delete, covered: false });
                }
                Op::Touch { cache, key, expiry } if live(i, l) => {
                    plan.writes.push(Write { op: i, cache, key, change: Change::Touch { expiry: *expiry }, covered: false });
                }
                Op::InvalidateTags { cache, tags, names } if self.after_clear(cache, i) => plan.tags.push((cache, tags, names)),
                Op::DeletePrefix { cache, prefix } if self.after_clear(cache, i) => plan.prefixes.push((cache, prefix)),
                Op::Clear { cache } if self.clears.get(cache) == Some(&i) => plan.clears.push(cache),
                Op::Declare { cache, config, .. } if self.declares.get(cache) == Some(&i) => {
                    plan.declares.push((cache, **config));
                }
                _ => {}
            }
        }
        Ok(plan)
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
mod tests;
