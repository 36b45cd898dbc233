//! A hot standby's replica fences: invalidations replayed from the primary's WAL,
//! pending while their transaction may run, fences once it committed.

use super::*;
use crate::key::{name_hash, raw_hash};

/// A fill of `key` by a transaction that started at `start`, committed at `now`:
/// whether it was installed.
fn fill(s: &Store<NoLocks>, r: SlotRef, key: &str, start: i64, now: i64) -> bool {
    let h = hash(r.index, key.as_bytes());
    let p = s.prepare(None, r, &entry(key.as_bytes(), b"v", h, NO_EXPIRY), now).unwrap().expect("room");
    s.commit_one(r, now).install_if_fresh(None, p, key.as_bytes(), 100, start)
}

/// Whether a fill of `key` by a transaction that started at `start` would be dropped
/// (asked without filling: a dropped fill raises the key's own fence).
fn stale(s: &Store<NoLocks>, r: SlotRef, key: &str, start: i64) -> bool {
    s.fill_would_be_stale(r, key.as_bytes(), hash(r.index, key.as_bytes()), start)
}

fn key_of(name: &str, key: &str) -> Covered {
    Covered::Key { name: name_hash(name.as_bytes()), raw: raw_hash(key.as_bytes()) }
}

/// Resolves with `running` still running and everything else committed.
fn resolve(s: &Store<NoLocks>, running: &[u32], oldest_running: u32, now: i64) -> bool {
    s.replica_resolve(|x| if running.contains(&x) { XidState::Running } else { XidState::Committed }, oldest_running, || now, |_, _| {})
}

#[test]
fn a_primary_never_consults_the_table() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    let r = new_cache(s, 1, "c");
    assert!(!s.replica_active());
    assert!(fill(s, r, "k", 10, 20));
}

#[test]
fn a_pending_invalidation_drops_fills_until_it_resolves_then_fences_older_ones() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    s.replica_start(100);
    s.replica_primary_logs(true, 0);
    assert!(resolve(s, &[], 0, 5), "the restart floor waits for a known oldest running id");
    assert!(!resolve(s, &[], 100, 5), "every transaction before replay started has ended");
    let r = new_cache(s, 1, "c");
    set(s, r, "k", b"old", 100);
    // Redo at 10 of an invalidation of k by transaction 500, still running.
    s.replica_note(1, key_of("c", "k"), 500, 0, 10);
    s.invalidate_replicated(s.slot_named(1, name_hash(b"c")).unwrap(), Replicated::Key(raw_hash(b"k")), 10);
    assert_eq!(get(s, r, "k"), None, "redo removes the entry at once");
    assert!(stale(s, r, "k", 20), "a fill while the transaction may run is dropped, whenever it started");
    assert!(fill(s, r, "other", 6, 30), "other keys are not covered");
    assert!(resolve(s, &[500], 400, 40));
    assert!(stale(s, r, "k", 45), "still running");
    assert!(!resolve(s, &[], 400, 60), "committed: nothing left pending");
    assert!(stale(s, r, "k", 60), "a fill that started before the resolution is dropped");
    assert!(!fill(s, r, "k", 55, 70));
    assert!(fill(s, r, "k", 71, 80), "one that started after it saw the new rows");
    assert_eq!(get(s, r, "k"), Some(b"v".to_vec()));
}

#[test]
fn an_aborted_invalidation_fences_nothing_once_resolved() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    s.replica_start(0);
    s.replica_primary_logs(true, 0);
    let r = new_cache(s, 1, "c");
    s.replica_note(1, key_of("c", "k"), 77, 0, 10);
    assert!(stale(s, r, "k", 5));
    assert!(!s.replica_resolve(|_| XidState::Aborted, 0, || 30, |_, _| {}));
    assert!(fill(s, r, "k", 5, 40), "its rows never changed: a fill from before is as good as any");
}

#[test]
fn an_invalidation_without_a_transaction_id_is_a_fence_at_redo() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    s.replica_start(0);
    s.replica_primary_logs(true, 0);
    let r = new_cache(s, 1, "c");
    s.replica_note(1, key_of("c", "k"), 0, 0, 100);
    assert!(!s.replica_pending());
    assert!(stale(s, r, "k", 100));
    assert!(fill(s, r, "k", 101, 110));
}

#[test]
fn cache_and_database_wide_invalidations_cover_caches_this_server_has_no_slot_for_yet() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    s.replica_start(0);
    s.replica_primary_logs(true, 0);
    s.replica_note(1, Covered::Cache { name: name_hash(b"later") }, 9, 0, 10);
    s.replica_note(2, Covered::Database, 9, 0, 10);
    assert_eq!(s.slot_named(1, name_hash(b"later")), None);
    let later = new_cache(s, 1, "later");
    let elsewhere = new_cache(s, 1, "elsewhere");
    let other_db = new_cache(s, 2, "x");
    assert!(stale(s, later, "k", 20), "a slot made after the redo is covered by name");
    assert!(fill(s, elsewhere, "k", 20, 30));
    assert!(stale(s, other_db, "k", 20), "the database-wide one covers every cache");
    assert!(!resolve(s, &[], 0, 40));
    assert!(fill(s, later, "k", 41, 50) && fill(s, other_db, "k", 41, 50));
}

#[test]
fn replayed_invalidations_find_the_cache_by_name_and_never_make_a_slot() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    let a = new_cache(s, 1, "a");
    let b = new_cache(s, 1, "b");
    let a2 = new_cache(s, 2, "a");
    for r in [a, b, a2] {
        set(s, r, "k", b"1", 100);
        set(s, r, "j", b"1", 100);
    }
    assert_eq!(s.slot_named(1, name_hash(b"a")), Some(a));
    s.invalidate_replicated(a, Replicated::Key(raw_hash(b"k")), 10);
    assert_eq!((get(s, a, "k"), get(s, a, "j")), (None, Some(b"1".to_vec())));
    assert!(get(s, b, "k").is_some() && get(s, a2, "k").is_some(), "other caches and databases keep theirs");
    s.invalidate_replicated(b, Replicated::Clear, 20);
    assert_eq!((get(s, b, "k"), get(s, b, "j")), (None, None));
    assert_eq!(s.slot_named(1, name_hash(b"none")), None);
    assert_eq!(s.find_slot(1, "none"), None, "no slot is made for a cache this server never used");
}

#[test]
fn a_full_bucket_folds_pending_invalidations_into_a_floor_that_waits_for_the_oldest_running_id() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    s.replica_start(0);
    s.replica_primary_logs(true, 0);
    let r = new_cache(s, 1, "c");
    // More pending invalidations than the table remembers exactly.
    for i in 0..3000u32 {
        s.replica_note(1, key_of("c", &format!("k{i}")), 1000 + i, 0, 10);
    }
    assert!(stale(s, r, "k0", 20), "the first, folded away, still drops fills");
    // All but the last have ended; the floors wait until the oldest running id
    // passes what was folded.
    assert!(resolve(s, &[3999], 3999, 40));
    assert!(stale(s, r, "k2999", 41), "the last is still running");
    assert!(!resolve(s, &[], 4000, 60));
    let stale_now = (0..3000).filter(|i| stale(s, r, &format!("k{i}"), 61)).count();
    assert_eq!(stale_now, 0, "every fill that started after the resolution would be kept");
    assert!(stale(s, r, "k2999", 60), "and one that started before it dropped");
}

#[test]
fn a_committed_declaration_change_forgets_the_cache_s_slot() {
    let reg = region(1 << 20, 8);
    let s = &reg.store;
    s.replica_start(0);
    s.replica_primary_logs(true, 0);
    let r = new_cache(s, 7, "c");
    set(s, r, "k", b"1", 100);
    s.replica_note(7, Covered::Cache { name: name_hash(b"c") }, 42, REDECLARE, 10);
    let mut told = Vec::new();
    let other = new_cache(s, 7, "d");
    assert!(s.replica_resolve(|_| XidState::Running, 0, || 20, |db, name| told.push((db, name))));
    assert!(told.is_empty(), "not while it may still roll back");
    assert!(!s.replica_resolve(|_| XidState::Committed, 0, || 30, |db, name| told.push((db, name))));
    assert_eq!(told, [(7, name_hash(b"c"))]);
    s.forget_declarations(7, name_hash(b"c"), 30);
    assert_eq!(s.find_slot(7, "c"), None, "the slot goes: its next use reads the declaration again");
    assert_eq!(s.find_slot(7, "d"), Some(other), "the database's other caches stay");
}

#[test]
fn no_fill_is_kept_until_the_primary_says_it_writes_invalidations() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    s.replica_start(0);
    let r = new_cache(s, 1, "c");
    assert!(stale(s, r, "k", 10), "an older primary, or one with records off, would never invalidate it");
    s.replica_primary_logs(true, 20);
    assert!(stale(s, r, "k", 20), "a fill that began before the primary logged may miss what it committed meanwhile");
    assert!(!stale(s, r, "k", 21));
    s.replica_primary_logs(false, 30);
    assert!(stale(s, r, "k", 40));
}

#[test]
fn an_older_transaction_s_declaration_change_is_not_lost_when_a_newer_one_pends_on_the_cache() {
    let reg = region(1 << 20, 4);
    let s = &reg.store;
    s.replica_start(0);
    s.replica_primary_logs(true, 0);
    let cache = Covered::Cache { name: name_hash(b"c") };
    s.replica_note(7, cache, 20, 0, 10);
    s.replica_note(7, cache, 10, REDECLARE, 10);
    let mut told = Vec::new();
    // 20 rolled back; 10 committed and, with every id up to 11 ended, its floor resolves.
    assert!(!s.replica_resolve(|x| if x == 20 { XidState::Aborted } else { XidState::Committed }, 21, || 30, |db, name| told.push((db, name))));
    assert_eq!(told, [(7, 0)], "the older one's declaration change forgets the database's slots");
}
