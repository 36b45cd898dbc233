//! A primary, a hot standby and a cascaded standby of their own (started by
//! scripts/test, with `synchronous_standby_names` naming no standby, so that a
//! session can hold its commit open): a standby restart while an invalidating
//! transaction is in flight, a cascade, and a promotion.

use std::thread;
use std::time::{Duration, Instant};

use postgres::Client;

mod common;
use common::{connect_to, connect_when_up, env, get};

const PRIMARY: &str = "PG_CACHE_TEST_REPLICA_PRIMARY_PORT";
const STANDBY: &str = "PG_CACHE_TEST_REPLICA_STANDBY_PORT";
const CASCADE: &str = "PG_CACHE_TEST_REPLICA_CASCADE_PORT";

/// `pg_ctl` on the standby's data directory.
fn pg_ctl(args: &[&str]) {
    common::pg_ctl(&env("PG_CACHE_TEST_REPLICA_STANDBY_DIR"), args);
}

/// Waits until `standby` has replayed what `primary` has flushed so far.
fn wait_replay(primary: &mut Client, standby: &mut Client) {
    let lsn: String = primary.query_one("SELECT pg_current_wal_flush_lsn()::text", &[]).unwrap().get(0);
    let start = Instant::now();
    while !standby.query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&lsn]).unwrap().get::<_, bool>(0) {
        assert!(start.elapsed() < Duration::from_secs(30), "no replay up to {lsn}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Fills `key` from the row on `c` in a transaction of its own: what it read.
fn fill_from_row(c: &mut Client, key: &str) -> String {
    c.query_one("SELECT v FROM t CROSS JOIN LATERAL (SELECT cache_set('c', $1, to_jsonb(t.v))) s WHERE id = 1", &[&key])
        .unwrap()
        .get(0)
}

/// Fills until a fill is kept (pending invalidations resolve within milliseconds);
/// the value kept.
fn fill_until_kept(c: &mut Client, key: &str) -> String {
    let start = Instant::now();
    loop {
        let v = fill_from_row(c, key);
        if get(c, "c", key) == Some(format!("\"{v}\"")) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no fill of {key} was ever kept");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until session `pid` on `c` waits on `event` (a wait_event).
fn wait_for_wait(c: &mut Client, pid: i32, event: &str) {
    let start = Instant::now();
    while c
        .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = $2", &[&pid, &event])
        .unwrap()
        .is_none()
    {
        assert!(start.elapsed() < Duration::from_secs(30), "session {pid} never waited on {event}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_standby_restart_with_an_invalidation_in_flight_a_cascade_and_a_promotion_lose_nothing() {
    let mut primary = connect_when_up(PRIMARY);
    let mut standby = connect_when_up(STANDBY);
    let mut cascade = connect_when_up(CASCADE);
    primary
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'old');
             CREATE TABLE side (i int);",
        )
        .unwrap();
    wait_replay(&mut primary, &mut standby);
    assert_eq!(fill_until_kept(&mut standby, "k"), "old");

    // In flight: session A holds the lock NOTIFY takes at commit while its own
    // commit waits for a synchronous standby that never comes; session B's commit,
    // which deletes k with the row it derives from, writes its record at
    // PRE_COMMIT and then waits for that lock, its transaction still running.
    let mut a = connect_to(PRIMARY, "postgres");
    let a_pid: i32 = a.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let a_done = thread::spawn(move || {
        a.batch_execute("SET synchronous_commit = on; BEGIN; INSERT INTO side VALUES (1); NOTIFY a; COMMIT").unwrap();
    });
    wait_for_wait(&mut primary, a_pid, "SyncRep");
    let mut b = connect_to(PRIMARY, "postgres");
    let b_pid: i32 = b.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let b_done = thread::spawn(move || {
        b.batch_execute("BEGIN; UPDATE t SET v = 'new'; SELECT cache_delete('c', 'k'); NOTIFY b; COMMIT").unwrap();
    });
    wait_for_wait(&mut primary, b_pid, "object");
    // Another commit flushes WAL, B's record with it.
    primary.batch_execute("INSERT INTO side VALUES (2)").unwrap();
    let after_b: String = primary.query_one("SELECT pg_current_wal_insert_lsn()::text", &[]).unwrap().get(0);
    wait_replay(&mut primary, &mut standby);
    assert_eq!(get(&mut standby, "c", "k"), None, "redo took the entry away");
    assert_eq!(fill_from_row(&mut standby, "k"), "old", "the standby still reads the old row");
    assert_eq!(get(&mut standby, "c", "k"), None, "a fill while B may still commit is dropped");

    // Restart the standby past B's record: a restartpoint after it, so that replay
    // resumes after it and the standby's new memory never sees it.
    primary.batch_execute("CHECKPOINT").unwrap();
    wait_replay(&mut primary, &mut standby);
    standby.batch_execute("CHECKPOINT").unwrap();
    pg_ctl(&["-m", "fast", "restart"]);
    let mut standby = connect_when_up(STANDBY);
    let past: bool = standby
        .query_one("SELECT redo_lsn >= $1::text::pg_lsn FROM pg_control_checkpoint()", &[&after_b])
        .unwrap()
        .get(0);
    assert!(past, "the standby must resume replay after B's record for this test to mean anything");
    assert_eq!(fill_from_row(&mut standby, "k"), "old");
    assert_eq!(get(&mut standby, "c", "k"), None, "after the restart, fills wait for B to end");
    standby.batch_execute("SELECT cache_set('c', 'unrelated', '1')").unwrap();
    assert_eq!(get(&mut standby, "c", "unrelated"), None, "every fill waits: the restart lost which keys B covers");

    // A's wait is cancelled (its commit stands locally); B commits.
    primary.query_one("SELECT pg_cancel_backend($1)", &[&a_pid]).unwrap();
    a_done.join().unwrap();
    b_done.join().unwrap();
    wait_replay(&mut primary, &mut standby);
    assert_eq!(fill_until_kept(&mut standby, "k"), "new", "once B ended, fills come back, with the new row");

    // The cascade (a standby of the standby) replays the same records.
    wait_replay(&mut primary, &mut cascade);
    assert_eq!(fill_until_kept(&mut cascade, "k2"), "new");
    primary.batch_execute("SELECT cache_delete('c', 'k2')").unwrap();
    wait_replay(&mut primary, &mut cascade);
    assert_eq!(get(&mut cascade, "c", "k2"), None, "the cascade drops it too");

    // Promotion: the standby becomes a primary with its cache, and writes.
    fill_until_kept(&mut standby, "k3");
    fill_until_kept(&mut cascade, "k3");
    pg_ctl(&["promote"]);
    let start = Instant::now();
    while standby.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get::<_, bool>(0) {
        assert!(start.elapsed() < Duration::from_secs(30), "the standby was not promoted");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(&mut standby, "c", "k3").as_deref(), Some("\"new\""), "its cache carries over");
    standby.batch_execute("SELECT cache_put('c', 'p', '1'); SELECT cache_incr('c', 'n')").unwrap();
    assert_eq!(get(&mut standby, "c", "p").as_deref(), Some("1"));
    assert_eq!(get(&mut standby, "c", "n").as_deref(), Some("1"));
    // Its invalidations reach the cascade, which follows it to its new timeline.
    standby.batch_execute("SELECT cache_delete('c', 'k3')").unwrap();
    assert_eq!(get(&mut standby, "c", "k3"), None);
    wait_replay(&mut standby, &mut cascade);
    assert_eq!(get(&mut cascade, "c", "k3"), None, "the new primary's delete reached the cascade");

    // A primary that stops writing invalidations says so: its standbys forget their
    // entries and keep no fill until it writes them again.
    fill_until_kept(&mut cascade, "k4");
    standby.batch_execute("ALTER SYSTEM SET pg_cache.standby_invalidation = off").unwrap();
    pg_ctl(&["-m", "fast", "restart"]);
    let mut standby = connect_when_up(STANDBY);
    standby.batch_execute("INSERT INTO side VALUES (3)").unwrap();
    wait_replay(&mut standby, &mut cascade);
    assert_eq!(get(&mut cascade, "c", "k4"), None, "entries go when the primary stops writing invalidations");
    assert_eq!(fill_from_row(&mut cascade, "k4"), "new");
    assert_eq!(get(&mut cascade, "c", "k4"), None, "and no fill is kept meanwhile");
    standby.batch_execute("ALTER SYSTEM RESET pg_cache.standby_invalidation").unwrap();
    pg_ctl(&["-m", "fast", "restart"]);
    let mut standby = connect_when_up(STANDBY);
    standby.batch_execute("INSERT INTO side VALUES (4)").unwrap();
    wait_replay(&mut standby, &mut cascade);
    assert_eq!(fill_until_kept(&mut cascade, "k4"), "new", "fills come back once it writes them again");
}
