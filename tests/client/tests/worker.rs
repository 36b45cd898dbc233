//! The background worker and what hangs on it: it shows in pg_stat_activity, comes
//! back when terminated, survives a crash restart, reclaims expired entries nobody
//! reads, returns a dropped database's memory, rereads its settings on SIGHUP; and
//! the sync interface for application processes (LISTEN pg_cache, last clear).
//!
//! These tests change server-wide state (settings, crashes), so they take turns.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

mod common;
use common::{connect, connect_to, fresh_database, port, stat};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls `probe` until it returns `Some`, for at most `limit`.
fn within<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<(T, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return Some((v, start.elapsed()));
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn worker_pid(c: &mut Client) -> Option<i32> {
    c.query_opt("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_cache worker'", &[])
        .unwrap()
        .map(|r| r.get(0))
}

fn memory(c: &mut Client) -> (i64, i64, i64) {
    let r = c.query_one("SELECT used_bytes, entries, databases FROM cache_memory()", &[]).unwrap();
    (r.get(0), r.get(1), r.get(2))
}

#[test]
fn the_worker_is_listed_and_comes_back_after_pg_terminate_backend() {
    let _turn = serial();
    let mut c = connect("postgres");
    let row = c
        .query_one("SELECT pid, datname FROM pg_stat_activity WHERE backend_type = 'pg_cache worker'", &[])
        .unwrap();
    let (pid, datname): (i32, Option<String>) = (row.get(0), row.get(1));
    assert_eq!(datname, None, "the worker connects to no database");
    assert!(c.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get::<_, bool>(0));
    let (new_pid, after) = within(Duration::from_secs(15), || worker_pid(&mut c).filter(|&p| p != pid))
        .expect("the worker came back within 15 s");
    eprintln!("worker {pid} terminated, {new_pid} started {after:?} later");
}

#[test]
fn unread_entries_past_their_ttl_are_reclaimed_by_the_worker() {
    let _turn = serial();
    fresh_database("pg_cache_expiry");
    let mut c = connect("pg_cache_expiry");
    c.batch_execute(
        "SELECT cache_create('expiring', size_limit => 10000);
         SELECT count(cache_set('expiring', 'k' || g, to_jsonb(g), '1 second')) FROM generate_series(1, 500) g;
         SELECT cache_set('expiring', 'forever', '1');",
    )
    .unwrap();
    assert_eq!(stat(&mut c, "expiring", "entries"), 501);
    // Nobody reads them: only the worker can bring the counts down.
    let ((), after) = within(Duration::from_secs(6), || {
        (stat(&mut c, "expiring", "entries") == 1).then_some(())
    })
    .expect("expired entries reclaimed within a few seconds");
    assert_eq!(stat(&mut c, "expiring", "expirations"), 500);
    assert_eq!(stat(&mut c, "expiring", "bytes"), 128);
    eprintln!("500 entries with a 1 s TTL reclaimed {after:?} after the check began");
}

#[test]
fn the_worker_rereads_expiry_interval_on_sighup() {
    let _turn = serial();
    fresh_database("pg_cache_sighup");
    let mut admin = connect("postgres");
    let mut c = connect("pg_cache_sighup");
    let set_interval = |admin: &mut Client, value: &str| {
        // ALTER SYSTEM cannot share a (multi-statement) transaction with the reload.
        admin.batch_execute(&format!("ALTER SYSTEM {value}")).unwrap();
        admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    };
    set_interval(&mut admin, "SET pg_cache.expiry_interval = '1h'");
    std::thread::sleep(Duration::from_millis(500));
    c.batch_execute("SELECT count(cache_set('slow', 'k' || g, '1', '200 milliseconds')) FROM generate_series(1, 10) g")
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    let unswept = stat(&mut c, "slow", "entries");
    set_interval(&mut admin, "SET pg_cache.expiry_interval = '100ms'");
    let swept = within(Duration::from_secs(5), || (stat(&mut c, "slow", "entries") == 0).then_some(()));
    set_interval(&mut admin, "RESET pg_cache.expiry_interval");
    assert_eq!(unswept, 10, "with a 1 h interval nothing was swept");
    assert!(swept.is_some(), "after the reload the worker swept");
}

#[test]
fn a_dropped_database_vanishes_and_its_memory_returns() {
    let _turn = serial();
    let mut admin = connect("postgres");
    admin.batch_execute("DROP DATABASE IF EXISTS pg_cache_dropped").unwrap();
    let (used_before, entries_before, dbs_before) = memory(&mut admin);
    admin.batch_execute("CREATE DATABASE pg_cache_dropped").unwrap();
    let mut c = connect("pg_cache_dropped");
    c.batch_execute(
        "CREATE EXTENSION pg_cache;
         SELECT cache_create('big', size_limit => 10000);
         SELECT count(cache_set('big', 'k' || g, to_jsonb(repeat('x', 500)))) FROM generate_series(1, 1000) g;",
    )
    .unwrap();
    let (used, entries, dbs) = memory(&mut admin);
    assert_eq!((entries - entries_before, dbs - dbs_before), (1000, 1));
    assert!(used - used_before >= 1000 * 5 * 128, "1000 entries of 5 blocks: {used} vs {used_before}");
    drop(c);
    admin.batch_execute("DROP DATABASE pg_cache_dropped").unwrap();
    let (_, entries, dbs) = memory(&mut admin);
    assert_eq!((entries, dbs), (entries_before, dbs_before), "gone at the drop's commit");
    let ((), after) = within(Duration::from_secs(5), || (memory(&mut admin).0 <= used_before).then_some(()))
        .expect("the worker freed the dropped database's memory");
    eprintln!("memory of a dropped database returned {after:?} after DROP DATABASE");
    // A new database of the same name (a new OID, as PostgreSQL gives) starts empty.
    admin.batch_execute("CREATE DATABASE pg_cache_dropped").unwrap();
    let mut again = connect("pg_cache_dropped");
    again.batch_execute("CREATE EXTENSION pg_cache").unwrap();
    assert_eq!(common::get(&mut again, "big", "k1"), None);
    drop(again);
    admin.batch_execute("DROP DATABASE pg_cache_dropped").unwrap();
}

#[test]
fn listen_receives_exactly_the_committed_clears() {
    let _turn = serial();
    fresh_database("pg_cache_listen");
    let mut listener = connect("pg_cache_listen");
    listener.batch_execute("LISTEN pg_cache").unwrap();
    let mut c = connect("pg_cache_listen");
    c.batch_execute("SELECT cache_clear('committed')").unwrap();
    c.batch_execute("BEGIN; SELECT cache_clear('rolled_back'); ROLLBACK").unwrap();
    c.batch_execute(
        "BEGIN; SAVEPOINT s; SELECT cache_clear('undone'); ROLLBACK TO SAVEPOINT s;
         SELECT cache_clear('kept'); SELECT cache_clear('kept'); COMMIT",
    )
    .unwrap();
    c.batch_execute("BEGIN; SELECT cache_clear_all(); COMMIT").unwrap();
    c.batch_execute("BEGIN; SELECT cache_clear_all(); SELECT 1 / 0").unwrap_err();
    c.batch_execute("ROLLBACK").unwrap();
    // Another database's clears are not ours.
    connect("postgres").batch_execute("SELECT cache_clear('elsewhere')").unwrap();
    c.batch_execute("SELECT cache_clear('last')").unwrap();
    let mut got = Vec::new();
    let mut notes = listener.notifications();
    let mut it = notes.timeout_iter(Duration::from_secs(3));
    while let Some(n) = it.next().unwrap() {
        assert_eq!(n.channel(), "pg_cache");
        got.push(n.payload().to_owned());
        if n.payload() == "last" {
            break;
        }
    }
    assert_eq!(got, ["committed", "kept", "*", "last"]);
}

#[test]
fn last_clear_and_sync_since_follow_committed_clears() {
    let _turn = serial();
    fresh_database("pg_cache_sync");
    let mut c = connect("pg_cache_sync");
    let last = |c: &mut Client, cache: &str| -> Option<std::time::SystemTime> {
        c.query_one("SELECT cache_last_clear($1)", &[&cache]).unwrap().get(0)
    };
    let sync = |c: &mut Client, cache: &str, since: std::time::SystemTime| -> bool {
        c.query_one("SELECT cache_sync_since($1, $2)", &[&cache, &since]).unwrap().get(0)
    };
    assert_eq!(last(&mut c, "a"), None);
    let before: std::time::SystemTime = c.query_one("SELECT now()", &[]).unwrap().get(0);
    c.batch_execute("BEGIN; SELECT cache_clear('a'); ROLLBACK").unwrap();
    assert_eq!(last(&mut c, "a"), None, "a rolled-back clear is no clear");
    c.batch_execute("SELECT cache_clear('a')").unwrap();
    let cleared = last(&mut c, "a").expect("a committed clear");
    assert!(cleared > before);
    assert!(sync(&mut c, "a", before));
    assert!(!sync(&mut c, "a", cleared));
    assert!(!sync(&mut c, "b", before));
    // cache_clear_all clears every cache of the database, b included.
    c.batch_execute("SELECT cache_clear_all()").unwrap();
    assert!(sync(&mut c, "b", cleared));
    assert!(sync(&mut c, "a", cleared));
}

#[test]
fn a_backend_killed_with_sigkill_leaves_a_healthy_server_with_empty_caches() {
    let _turn = serial();
    let var = "PG_CACHE_TEST_SMALL_PORT";
    let mut c = connect_to(var, "postgres");
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cache; SELECT cache_set('crash', 'k', '\"before\"')").unwrap();
    let mut victim = connect_to(var, "postgres");
    let pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    // The postmaster resets every backend and shared memory, then accepts again.
    let (mut fresh, after) = within(Duration::from_secs(30), || {
        Client::connect(&format!("host=127.0.0.1 port={} user=postgres dbname=postgres", port(var)), NoTls)
            .ok()
            .and_then(|mut f| f.query_one("SELECT 1", &[]).ok().map(|_| f))
    })
    .expect("the server accepts connections again");
    eprintln!("server back {after:?} after SIGKILL of backend {pid}");
    assert_eq!(common::get(&mut fresh, "crash", "k"), None, "caches start empty");
    fresh.batch_execute("SELECT cache_set('crash', 'k', '\"after\"')").unwrap();
    assert_eq!(common::get(&mut fresh, "crash", "k").as_deref(), Some("\"after\""));
    within(Duration::from_secs(15), || worker_pid(&mut fresh)).expect("the worker runs again");
}

/// The worker frees what a prefix invalidation covers and forgets it, so a cache
/// that deletes prefixes again and again is never cleared for it (four live ones
/// fold into a clear); a fill that began before a forgotten invalidation is still
/// dropped.
#[test]
fn the_worker_retires_prefix_invalidations_without_clearing_or_losing_a_fence() {
    let _turn = serial();
    fresh_database("pg_cache_prefix_worker");
    let mut c = connect("pg_cache_prefix_worker");
    let mut filler = connect("pg_cache_prefix_worker");
    c.batch_execute("SELECT cache_create('p', context => false); SELECT cache_put('p', 'keep', '1')").unwrap();
    let entries = |c: &mut Client| stat(c, "p", "entries");
    // (The first declaration with context => false cleared the empty cache.)
    let last_clear = |c: &mut Client| c.query_one("SELECT cache_last_clear('p')::text", &[]).unwrap().get::<_, Option<String>>(0);
    let cleared_at = last_clear(&mut c);
    for i in 0..8 {
        // Committed before the delete (in one transaction it would cover them).
        c.batch_execute(&format!("SELECT cache_put('p', 'x{i}:a', '1'), cache_put('p', 'x{i}:b', '1')")).unwrap();
        assert_eq!(entries(&mut c), 3);
        c.batch_execute(&format!("SELECT cache_delete_prefix('p', 'x{i}:')")).unwrap();
        let retired = within(Duration::from_secs(10), || (entries(&mut c) == 1).then_some(()));
        assert!(retired.is_some(), "prefix {i}: the covered entries were not freed");
    }
    assert_eq!(last_clear(&mut c), cleared_at, "eight prefix deletes did not fold into a clear");
    assert_eq!(common::get(&mut c, "p", "keep").as_deref(), Some("1"));
    // A fill that began before a prefix delete the worker has since forgotten.
    filler.batch_execute("BEGIN; SELECT 1").unwrap();
    c.batch_execute("SELECT cache_put('p', 'u:0', '1')").unwrap();
    c.batch_execute("SELECT cache_delete_prefix('p', 'u:')").unwrap();
    assert!(within(Duration::from_secs(10), || (entries(&mut c) == 1).then_some(())).is_some());
    let stale = stat(&mut c, "p", "stale_sets");
    filler.batch_execute("SELECT cache_set('p', 'u:1', '\"old\"'); COMMIT").unwrap();
    assert_eq!(common::get(&mut c, "p", "u:1"), None, "the fill was dropped");
    assert_eq!(stat(&mut c, "p", "stale_sets"), stale + 1);
}
