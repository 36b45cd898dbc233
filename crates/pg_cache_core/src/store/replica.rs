//! Replica fences: what a hot standby knows of the primary's invalidations, so that
//! no fill made on the standby outlives the data it was computed from.
//!
//! The primary writes each committing transaction's invalidations to WAL before its
//! commit record; the standby's redo removes the entries they cover at once and
//! records each here as *pending*, tagged with the primary's transaction id, until
//! that transaction is no longer running (committed, aborted, or ended by a crash or
//! promotion: never wait for a commit record, one may never come). While pending, a
//! fill of what it covers is dropped: the standby transaction may have read the rows
//! as they were before the invalidating transaction. Once resolved as committed it
//! is a fence at the time it was resolved, read after the check: a fill by a
//! transaction that started later saw the new rows. Aborted, it fences nothing.
//!
//! Entries are named by hashes of (database, cache name[, stored key]), never by
//! slot: slots differ per node, and a standby transaction may read old rows, create
//! the cache's slot, and fill after the commit. Collisions only drop more fills.
//!
//! A bucket remembers [`WAYS`] invalidations; one that must make room folds its
//! oldest into the bucket's floors (a time, and the latest pending transaction id,
//! resolved once every transaction up to it has ended): forgetting only ever drops
//! more. The restart floor covers what a standby restart lost: transactions that
//! wrote invalidations before the point replay resumed from, still running then.
//!
//! Under the replica lock, taken after a partition lock (a fill judged at commit)
//! or alone (redo, the resolver); the resolver asks PostgreSQL about transaction
//! ids with the lock released.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::invalidation::Invalidation;

/// Buckets of the table: with [`WAYS`] each, 2,048 invalidations are remembered
/// exactly (pending ones resolve within milliseconds, see the worker).
pub const BUCKETS: usize = 512;
const WAYS: usize = 4;

/// A pending invalidation that changes a declaration: once it resolves as committed,
/// the standby forgets the cache's slot, whose settings it read before.
pub const REDECLARE: u32 = 1;
/// The `db` of a folded [`REDECLARE`] whose database was forgotten: every database.
pub const EVERY_DATABASE: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy)]
struct Way {
    /// [`replica_tag`] of what was invalidated (0: a free way).
    tag: u64,
    /// When it was last resolved as committed, or applied at once ([`NEVER`]: not yet).
    at: i64,
    /// With [`REDECLARE`]: the cache whose declaration it changes (a name hash).
    name: u64,
    /// The invalidating transaction while it may still be running (0: resolved).
    xid: u32,
    /// With [`REDECLARE`]: the cache's database.
    db: u32,
    flags: u32,
    _pad: u32,
}

#[repr(C)]
struct Bucket {
    ways: [Way; WAYS],
    /// The latest time a way folded here was resolved or applied: fences every key
    /// of the bucket.
    floor_at: i64,
    /// The latest pending transaction folded here (0: none): every key of the bucket
    /// is pending until every transaction up to it has ended.
    floor_xid: u32,
    /// A [`REDECLARE`] folded into `floor_xid`: its database, or [`EVERY_DATABASE`]
    /// when two were (0: none).
    floor_redeclare: u32,
}

#[repr(C)]
struct Table {
    /// Transactions older than this (0: none) may have written invalidations this
    /// server never replayed (see `Store::replica_start`).
    restart_xid: u32,
    restart_at: i64,
    buckets: [Bucket; BUCKETS],
}

#[repr(C)]
pub struct ReplicaFences {
    /// Set when this server replays WAL as a hot standby: until then fills skip the
    /// table (a primary never reads it).
    active: AtomicU32,
    /// Whether anything may be pending: the resolver's cue.
    pending: AtomicU32,
    /// Whether the primary says it writes its invalidations (its worker's marker
    /// records, see `Store::replica_primary_logs`): until a standby has replayed one
    /// that says so, and after one that says not, no fill is kept.
    primary_logs: AtomicU32,
    /// Bumped each time the standby forgets slots for a declaration change: a slot
    /// made from a declaration read before the bump may hold old settings.
    forgets: std::sync::atomic::AtomicU64,
    table: UnsafeCell<Table>,
}

impl ReplicaFences {
    pub(super) fn init(&self) {
        self.active.store(0, Ordering::Relaxed);
        self.pending.store(0, Ordering::Relaxed);
        self.primary_logs.store(0, Ordering::Relaxed);
        self.forgets.store(0, Ordering::Relaxed);
        // SAFETY: called while the region is ours alone.
        let t = unsafe { &mut *self.table.get() };
        t.restart_xid = 0;
        t.restart_at = NEVER;
        for b in t.buckets.iter_mut() {
            b.ways = [Way { tag: 0, at: NEVER, name: 0, xid: 0, db: 0, flags: 0, _pad: 0 }; WAYS];
            b.floor_at = NEVER;
            b.floor_xid = 0;
            b.floor_redeclare = 0;
        }
    }
}

/// What an invalidation read from WAL covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Covered {
    /// One stored key (its [`crate::key::raw_hash`]) of the cache named by `name`
    /// ([`crate::key::name_hash`]).
    Key { name: u64, raw: u64 },
    /// A whole cache: a clear, a declaration, tags or prefixes.
    Cache { name: u64 },
    /// Every cache of the database: `cache_clear_all`, drops.
    Database,
}

/// The table's tag for what `covered` names in database `db` (never 0).
pub fn replica_tag(db: u32, covered: Covered) -> u64 {
    let (name, what) = match covered {
        Covered::Key { name, raw } => (name, raw),
        Covered::Cache { name } => (name, u64::MAX),
        Covered::Database => (0, 0),
    };
    let h = crate::key::slot_hash(db, name ^ what.rotate_left(29).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    h | 1
}

/// The bucket of a tag (its low bit is always set: see [`replica_tag`]).
fn bucket_of(tag: u64) -> usize {
    (tag >> 1) as usize % BUCKETS
}

/// Whether transaction id `a` is older than `b` (modulo 2^32, as PostgreSQL compares
/// normal ids).
pub fn xid_precedes(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The newer of two pending transaction ids (0: none).
fn later_xid(a: u32, b: u32) -> u32 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) if xid_precedes(a, b) => b,
        (a, _) => a,
    }
}

/// What became of a transaction, as the resolver found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XidState {
    Running,
    Committed,
    Aborted,
}

/// Pending transaction ids the resolver asks about per pass (each distinct id once):
/// as many as the table has ways.
const RESOLVE_BATCH: usize = BUCKETS * WAYS;

impl<'a, L: Locks> Store<'a, L> {
    fn replica(&self) -> &ReplicaFences {
        &self.hdr().replica
    }

    fn with_replica<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        self.locks.lock_replica(Mode::Exclusive);
        // SAFETY: the table is only changed under the replica lock held exclusively,
        // as here until `f` returns.
        let out = f(unsafe { &mut *self.replica().table.get() });
        self.locks.unlock_replica();
        out
    }

    /// Reads the table under the replica lock held shared (fills judged side by side).
    fn reading_replica<T>(&self, f: impl FnOnce(&Table) -> T) -> T {
        self.locks.lock_replica(Mode::Shared);
        // SAFETY: nobody changes the table while the lock is held shared.
        let out = f(unsafe { &*self.replica().table.get() });
        self.locks.unlock_replica();
        out
    }

    /// Redo starts on a hot standby: from now on fills are judged against the table.
    /// `next_xid` is the next transaction id as replay starts: any transaction older
    /// than it may have written an invalidation before the point replay resumes
    /// from, which this server's memory (new after a restart) never saw, so every
    /// fill is dropped until all of them have ended.
    pub fn replica_start(&self, next_xid: u32) {
        self.with_replica(|t| {
            t.restart_xid = next_xid;
            if next_xid != 0 {
                self.replica().pending.store(1, Ordering::Release);
            }
        });
        self.replica().primary_logs.store(0, Ordering::Release);
        self.replica().active.store(1, Ordering::Release);
    }

    /// A marker replayed from the primary: whether it writes its invalidations (an
    /// older release, or one with `pg_cache.standby_invalidation = off`, does not).
    /// At the end of recovery (a promotion) this server writes its own: `true`.
    pub fn replica_primary_logs(&self, logs: bool, now: i64) {
        self.with_replica(|t| {
            // From not logging to logging: a transaction that read rows before may
            // fill after, while commits in between wrote no record: fence them all.
            if logs && self.replica().primary_logs.load(Ordering::Acquire) == 0 {
                t.restart_at = t.restart_at.max(now);
            }
            self.replica().primary_logs.store(logs as u32, Ordering::Release);
        });
    }

    /// Whether this server judges fills against the table (it replays, or replayed,
    /// WAL as a hot standby).
    pub fn replica_active(&self) -> bool {
        self.replica().active.load(Ordering::Acquire) != 0
    }

    /// Forgets the slot of the cache named by `name` in `db`, if there is one (its
    /// next use makes it again from the declaration).
    pub fn forget_slot(&self, db: u32, name: u64) {
        if let Some(r) = self.slot_named(db, name) {
            let _dir = self.lock_directory(Mode::Exclusive);
            if self.is_valid(r) {
                self.begin_drop_locked(r.index);
            }
        }
    }

    /// How many times slots were forgotten for declaration changes (see
    /// [`Store::forget_declarations`]).
    pub fn declarations_forgotten(&self) -> u64 {
        self.replica().forgets.load(Ordering::Acquire)
    }

    /// Whether an invalidation may be pending (the resolver has work).
    pub fn replica_pending(&self) -> bool {
        self.replica().pending.load(Ordering::Acquire) != 0
    }

    /// Records an invalidation of `covered` in `db` replayed at `now`: pending while
    /// transaction `xid` may run, or a fence at `now` when it has no id (a
    /// transaction without one changed no rows a standby could read). Call before
    /// removing the entries it covers, so that a fill judged in between is dropped.
    /// Allocates nothing and cannot fail: redo calls it.
    pub fn replica_note(&self, db: u32, covered: Covered, xid: u32, flags: u32, now: i64) {
        let tag = replica_tag(db, covered);
        self.with_replica(|t| {
            let b = &mut t.buckets[bucket_of(tag)];
            let i = match b.ways.iter().position(|w| w.tag == tag) {
                Some(i) => i,
                None => {
                    let i = b.ways.iter().position(|w| w.tag == 0).unwrap_or_else(|| {
                        // Make room: the oldest resolved way, else a pending one
                        // that changes no declaration, else the first.
                        let resolved = (0..WAYS).filter(|&i| b.ways[i].xid == 0).min_by_key(|&i| b.ways[i].at);
                        let i = resolved
                            .or_else(|| (0..WAYS).find(|&i| b.ways[i].flags & REDECLARE == 0))
                            .unwrap_or(0);
                        Self::fold(b, i);
                        i
                    });
                    b.ways[i] = Way { tag, at: NEVER, name: 0, xid: 0, db: 0, flags: 0, _pad: 0 };
                    i
                }
            };
            let w = &mut b.ways[i];
            if xid == 0 {
                w.at = w.at.max(now);
                return;
            }
            if w.xid != 0 && w.xid != xid {
                // Two transactions pending on one name: the newer stays here, the
                // older goes to the floor, with what it changes of declarations.
                if xid_precedes(xid, w.xid) {
                    b.floor_xid = later_xid(b.floor_xid, xid);
                    if flags & REDECLARE != 0 {
                        b.floor_redeclare = Self::merge_db(b.floor_redeclare, db);
                    }
                    self.replica().pending.store(1, Ordering::Release);
                    return;
                }
                b.floor_xid = later_xid(b.floor_xid, w.xid);
                if w.flags & REDECLARE != 0 {
                    b.floor_redeclare = Self::merge_db(b.floor_redeclare, w.db);
                }
                w.flags = 0;
            }
            w.xid = xid;
            let w = &mut b.ways[i];
            w.flags |= flags;
            if flags & REDECLARE != 0 {
                w.db = db;
                w.name = match covered {
                    Covered::Cache { name } | Covered::Key { name, .. } => name,
                    Covered::Database => 0,
                };
            }
            // Under the lock, so that a resolver finishing a pass cannot clear it
            // after this invalidation came.
            self.replica().pending.store(1, Ordering::Release);
        });
    }

    fn merge_db(current: u32, db: u32) -> u32 {
        match current {
            0 => db,
            d if d == db => d,
            _ => EVERY_DATABASE,
        }
    }

    /// Folds way `i` into its bucket's floors and frees it.
    fn fold(b: &mut Bucket, i: usize) {
        let w = b.ways[i];
        b.floor_at = b.floor_at.max(w.at);
        if w.xid != 0 {
            b.floor_xid = later_xid(b.floor_xid, w.xid);
            if w.flags & REDECLARE != 0 {
                b.floor_redeclare = Self::merge_db(b.floor_redeclare, w.db);
            }
        }
        b.ways[i].tag = 0;
    }

    /// Whether a fill of stored `key` into cache `s` by a transaction that started at
    /// `start` must be dropped for an invalidation replayed from the primary: pending,
    /// or resolved at or after `start`. False at once on a primary.
    pub(super) fn replica_fenced(&self, s: &CacheSlot, key: &[u8], start: i64) -> bool {
        if !self.replica_active() {
            return false;
        }
        if self.replica().primary_logs.load(Ordering::Acquire) == 0 {
            return true;
        }
        let db = s.db.load(Ordering::Relaxed);
        let name = crate::key::name_hash(self.slot_name(s));
        let raw = crate::key::raw_hash(key);
        let tags = [
            replica_tag(db, Covered::Key { name, raw }),
            replica_tag(db, Covered::Cache { name }),
            replica_tag(db, Covered::Database),
        ];
        self.reading_replica(|t| {
            if t.restart_xid != 0 || t.restart_at >= start {
                return true;
            }
            tags.iter().any(|&tag| {
                let b = &t.buckets[bucket_of(tag)];
                b.floor_xid != 0
                    || b.floor_at >= start
                    || b.ways.iter().any(|w| w.tag == tag && (w.xid != 0 || w.at >= start))
            })
        })
    }

    /// Resolves what is pending: `state` says what became of a transaction id (asked
    /// with the lock released), `oldest_running` is the oldest id that may still run
    /// (for the floors; 0 when unknown), and `now` is read after both. Committed
    /// invalidations become fences at `now`; aborted ones are forgotten.
    /// `redeclared` is told each cache (database and name hash; name 0: every cache of
    /// the database, database [`EVERY_DATABASE`]: of all) whose declaration a
    /// committed one changed. Whether anything is still pending.
    pub fn replica_resolve(
        &self,
        mut state: impl FnMut(u32) -> XidState,
        oldest_running: u32,
        now: impl Fn() -> i64,
        mut redeclared: impl FnMut(u32, u64),
    ) -> bool {
        let mut xids = [0u32; RESOLVE_BATCH];
        let mut n = 0;
        let restart_xid = self.reading_replica(|t| {
            for w in t.buckets.iter().flat_map(|b| b.ways.iter()).filter(|w| w.xid != 0) {
                xids[n] = w.xid;
                n += 1;
            }
            t.restart_xid
        });
        xids[..n].sort_unstable();
        let mut distinct = 0;
        for i in 0..n {
            if distinct == 0 || xids[distinct - 1] != xids[i] {
                xids[distinct] = xids[i];
                distinct += 1;
            }
        }
        let n = distinct;
        let mut states = [XidState::Running; RESOLVE_BATCH];
        for i in 0..n {
            states[i] = state(xids[i]);
        }
        let ended = |xid: u32| oldest_running != 0 && xid_precedes(xid, oldest_running);
        let state_of = |xid: u32| xids[..n].binary_search(&xid).ok().map(|i| states[i]);
        // Declarations first, while their invalidations are still pending (fills
        // dropped): a slot made before they resolve read the old declaration. Told
        // with the lock released (forgetting takes the directory lock, which comes
        // before this one).
        let mut dbs = [(0u32, 0u64); 8];
        let mut ndbs = 0;
        let mut note_db = |db: u32, name: u64| {
            if !dbs[..ndbs].contains(&(db, name)) {
                if ndbs < dbs.len() {
                    dbs[ndbs] = (db, name);
                    ndbs += 1;
                } else {
                    dbs[0] = (EVERY_DATABASE, 0);
                }
            }
        };
        self.reading_replica(|t| {
            for b in t.buckets.iter() {
                for w in b.ways.iter().filter(|w| w.xid != 0 && w.flags & REDECLARE != 0) {
                    if state_of(w.xid) == Some(XidState::Committed) {
                        note_db(w.db, w.name);
                    }
                }
                if b.floor_xid != 0 && b.floor_redeclare != 0 && ended(b.floor_xid) {
                    note_db(b.floor_redeclare, 0);
                }
            }
        });
        for &(db, name) in &dbs[..ndbs] {
            redeclared(db, name);
        }
        let now = now();
        let still = self.with_replica(|t| {
            let mut still = false;
            if t.restart_xid != 0 && t.restart_xid == restart_xid && oldest_running != 0 && !xid_precedes(oldest_running, restart_xid) {
                t.restart_xid = 0;
                t.restart_at = now;
            }
            still |= t.restart_xid != 0;
            for b in t.buckets.iter_mut() {
                for w in b.ways.iter_mut().filter(|w| w.xid != 0) {
                    match state_of(w.xid) {
                        Some(XidState::Committed) => {
                            w.at = w.at.max(now);
                            w.xid = 0;
                            w.flags = 0;
                        }
                        Some(XidState::Aborted) => {
                            w.xid = 0;
                            w.flags = 0;
                        }
                        // Running, or noted since the ids were read.
                        _ => still = true,
                    }
                }
                if b.floor_xid != 0 {
                    if ended(b.floor_xid) {
                        b.floor_at = b.floor_at.max(now);
                        b.floor_xid = 0;
                        b.floor_redeclare = 0;
                    } else {
                        still = true;
                    }
                }
            }
            if !still {
                self.replica().pending.store(0, Ordering::Release);
            }
            still
        });
        still
    }
}

/// What a replayed invalidation does to one cache (see [`Store::invalidate_replicated`]).
#[derive(Clone, Copy, Debug)]
pub enum Replicated<'r> {
    /// One stored key, by its [`crate::key::raw_hash`].
    Key(u64),
    Clear,
    Tags(&'r [u64]),
    Prefix(&'r [u8]),
}

impl<'a, L: Locks> Store<'a, L> {
    /// The slot of the cache named by `name` ([`crate::key::name_hash`]) in `db`, if
    /// this server has one (redo never makes one).
    pub fn slot_named(&self, db: u32, name: u64) -> Option<SlotRef> {
        let _dir = self.lock_directory(Mode::Shared);
        self.active_slots_of(db).find(|(_, s)| crate::key::name_hash(self.slot_name(s)) == name).map(|(r, _)| r)
    }

    /// Applies an invalidation replayed from the primary at `now` to the cache in slot
    /// `r` (see [`Store::slot_named`]): its entries go, but no fence is raised here,
    /// the replica fences judging fills ([`Store::replica_note`] first). Allocates
    /// nothing and cannot fail: redo calls it.
    pub fn invalidate_replicated(&self, r: SlotRef, what: Replicated, now: i64) {
        match what {
            Replicated::Key(raw) => {
                self.locks.lock_cache(r.index, Mode::Shared);
                self.invalidate_hashed_locked(r, crate::key::slot_hash(r.index, raw), now);
                self.locks.unlock_cache(r.index);
            }
            Replicated::Clear => {
                let _commit = self.commit(r, now);
                self.hide_entries_locked(r, None);
            }
            Replicated::Tags(tags) => {
                self.commit(r, now).apply(&Invalidation::Tags { cache: r, tags });
            }
            Replicated::Prefix(prefix) => {
                self.commit(r, now).apply(&Invalidation::Prefix { cache: r, prefix });
            }
        }
    }

    /// Holds every fill back until transaction `xid` has ended: for a record redo
    /// cannot read (a newer format), whose invalidations it cannot name.
    pub fn replica_hold_until_ended(&self, xid: u32) {
        self.with_replica(|t| {
            let after = xid.wrapping_add(1).max(3);
            t.restart_xid = later_xid(t.restart_xid, after);
            self.replica().pending.store(1, Ordering::Release);
        });
    }

    /// Removes every entry of slot `r` whose key hashes to `hash` (a replayed
    /// invalidation names keys by hash only: a collision removes one more entry) and
    /// raises the key's fence. Commit lock held.
    fn invalidate_hashed_locked(&self, r: SlotRef, hash: u64, now: i64) {
        let s = self.slot(r.index);
        let bucket = self.bucket_of(hash);
        // No fence here: the replica fences judge fills (an invalidation rolled back
        // must not drop fills once it is resolved).
        let unlinked = {
            let _p = self.lock_bucket(bucket, Mode::Exclusive);
            let unlinked = self
                .walk_chain(bucket, |_, h| if h.hash == hash as u32 && h.slot == r.index { chain::Step::Unlink } else { chain::Step::Next })
                .first;
            if unlinked != NIL {
                let _g = self.lock_list(s);
                self.retire_unlinked(s, unlinked, now);
            }
            unlinked
        };
        self.free_unlinked(None, unlinked);
    }

    /// Applies a replayed database-wide invalidation of `db`: every cache's entries
    /// become misses, or (`drop`) every cache is dropped. Fences nothing (see
    /// [`Store::invalidate_replicated`]). Cannot fail.
    pub fn invalidate_replicated_database(&self, db: u32, drop: bool, now: i64) {
        if drop {
            self.invalidate(&Invalidation::DropCaches { db, fence: false }, now);
            return;
        }
        let _dir = self.lock_directory(Mode::Shared);
        for (r, _) in self.active_slots_of(db) {
            let _commit = self.commit(r, now);
            self.hide_entries_locked(r, None);
        }
    }

    /// Forgets the slot of the cache named by `name` in database `db` (name 0: every
    /// cache of `db`; `db` [`EVERY_DATABASE`]: of all databases): a standby read its
    /// settings from a declaration the primary has since changed, and reads it
    /// again on next use.
    pub fn forget_declarations(&self, db: u32, name: u64, now: i64) {
        self.replica().forgets.fetch_add(1, Ordering::AcqRel);
        if db != EVERY_DATABASE && name != 0 {
            self.forget_slot(db, name);
            return;
        }
        if db != EVERY_DATABASE {
            self.invalidate(&Invalidation::DropCaches { db, fence: true }, now);
            return;
        }
        loop {
            let next = {
                let _dir = self.lock_directory(Mode::Shared);
                let used = self.hdr().used_slots.load(Ordering::Acquire);
                (0..used).map(|i| self.slot(i)).find(|s| s.state.load(Ordering::Acquire) == SLOT_ACTIVE).map(|s| s.db.load(Ordering::Relaxed))
            };
            match next {
                Some(db) => {
                    self.invalidate(&Invalidation::DropCaches { db, fence: true }, now);
                }
                None => return,
            }
        }
    }
}
