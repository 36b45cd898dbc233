//! A hot standby (a `pg_basebackup -R` of the main cluster, started by scripts/test):
//! its sessions read and fill caches of their own; the primary's invalidations reach
//! them through WAL (see src/wal.rs); other writes get a clear error.

use std::time::{Duration, Instant};

use postgres::Client;

mod common;
use common::{connect, connect_to, fresh_database, get, stat};

fn standby(db: &str) -> Client {
    connect_to("PG_CACHE_TEST_STANDBY_PORT", db)
}


/// Waits until the standby has replayed everything the primary has written so far.
fn wait_replay(primary: &mut Client, standby: &mut Client) {
    let lsn: String = primary.query_one("SELECT pg_current_wal_insert_lsn()::text", &[]).unwrap().get(0);
    let start = Instant::now();
    while !standby.query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&lsn]).unwrap().get::<_, bool>(0) {
        assert!(start.elapsed() < Duration::from_secs(30), "the standby did not replay up to {lsn}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A fresh database on the primary, replayed on the standby.
fn fresh_replicated(db: &str) -> (Client, Client) {
    fresh_database(db);
    let mut primary = connect(db);
    let start = Instant::now();
    let mut standby = loop {
        match Client::connect(
            &format!("host=127.0.0.1 port={} user=postgres dbname={db}", common::port("PG_CACHE_TEST_STANDBY_PORT")),
            postgres::NoTls,
        ) {
            Ok(c) => break c,
            Err(_) if start.elapsed() < Duration::from_secs(30) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("the standby never had database {db}: {e}"),
        }
    };
    wait_replay(&mut primary, &mut standby);
    (primary, standby)
}

/// Fills `key` on the standby in a transaction of its own until the fill is kept
/// (an invalidation pending there drops fills until the worker resolves it, within
/// milliseconds of its commit's replay); the attempts it took.
fn fill_until_kept(standby: &mut Client, cache: &str, key: &str, value: &str) -> u32 {
    fill_until_kept_with(standby, cache, key, value, "SELECT cache_set($1, $2, $3::text::jsonb)")
}

/// [`fill_until_kept`] with a fill statement of the caller's (parameters: cache, key,
/// value).
fn fill_until_kept_with(standby: &mut Client, cache: &str, key: &str, value: &str, fill: &str) -> u32 {
    let start = Instant::now();
    for attempt in 1.. {
        standby.execute(fill, &[&cache, &key, &value]).unwrap();
        if get(standby, cache, key).as_deref() == Some(value) {
            return attempt;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no fill of {key} was ever kept");
        std::thread::sleep(Duration::from_millis(5));
    }
    unreachable!()
}

#[test]
fn a_hot_standby_reads_and_fills_caches_and_refuses_other_writes() {
    let mut primary = connect("postgres");
    primary.batch_execute("SELECT cache_create('standby_declared', size_limit => 11)").unwrap();
    let mut standby = standby("postgres");
    assert!(standby.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get::<_, bool>(0));
    wait_replay(&mut primary, &mut standby);
    assert_eq!(get(&mut standby, "standby_declared", "k"), None);
    assert_eq!(get(&mut standby, "standby_undeclared", "k"), None);
    fill_until_kept(&mut standby, "standby_declared", "k", "1");
    assert_eq!(stat(&mut standby, "standby_declared", "size_limit"), 11, "the declaration applies");
    assert_eq!(get(&mut primary, "standby_declared", "k"), None, "a standby's fills are its own");
    for write in [
        "SELECT cache_put('standby_declared', 'k', '1')",
        "SELECT cache_add('standby_declared', 'k2', '1')",
        "SELECT cache_incr('standby_declared', 'n')",
        "SELECT cache_delete('standby_declared', 'k')",
        "SELECT cache_clear('standby_declared')",
        "SELECT cache_clear_all()",
        "SELECT cache_create('standby_new')",
    ] {
        let e = standby.batch_execute(write).unwrap_err();
        let db = e.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "25006", "{write}: {db:?}");
        assert!(db.message().contains("during recovery"), "{}", db.message());
    }
    assert_eq!(get(&mut standby, "standby_declared", "k").as_deref(), Some("1"), "refused writes change nothing");
    assert_eq!(get(&mut standby, "standby_declared", "n"), None);
}

#[test]
fn the_primary_s_committed_invalidations_reach_the_standby_s_caches() {
    let (mut primary, mut standby) = fresh_replicated("standby_inval");
    primary.batch_execute("SELECT cache_create('tagged', context => false)").unwrap();
    wait_replay(&mut primary, &mut standby);
    // Each: what the primary commits, and the standby entries it must take away
    // (others stay).
    let cases: [(&str, &[(&str, &str)], &[(&str, &str)]); 8] = [
        ("SELECT cache_delete('c', 'k')", &[("c", "k")], &[("c", "j")]),
        ("SELECT cache_put('c', 'k', '9')", &[("c", "k")], &[("c", "j")]),
        ("SELECT cache_set('c', 'k', '9')", &[("c", "k")], &[("c", "j")]),
        ("SELECT cache_delete_many('c', ARRAY['k', 'j'])", &[("c", "k"), ("c", "j")], &[("d", "k")]),
        ("SELECT cache_clear('c')", &[("c", "k"), ("c", "j")], &[("d", "k")]),
        ("SELECT cache_delete_prefix('c', 'k')", &[("c", "k")], &[("c", "j")]),
        ("SELECT cache_invalidate_tags('tagged', ARRAY['t'])", &[("tagged", "k")], &[("c", "k")]),
        ("SELECT cache_clear_all()", &[("c", "k"), ("d", "k"), ("tagged", "k")], &[]),
    ];
    for (commit, gone, kept) in cases {
        for (cache, key) in gone.iter().chain(kept.iter()) {
            // Filled with a tag on the standby: cache_set takes tags there too.
            let fill = "SELECT cache_set($1, $2, $3::text::jsonb, tags => ARRAY['t'])";
            fill_until_kept_with(&mut standby, cache, key, "1", fill);
        }
        primary.batch_execute(commit).unwrap();
        wait_replay(&mut primary, &mut standby);
        for (cache, key) in gone {
            assert_eq!(get(&mut standby, cache, key), None, "{commit}: {cache}/{key} must be gone once its commit is replayed");
        }
        for (cache, key) in kept {
            assert_eq!(get(&mut standby, cache, key).as_deref(), Some("1"), "{commit}: {cache}/{key} is not covered");
        }
    }
}

#[test]
fn a_standby_fill_that_raced_an_invalidation_is_dropped_and_a_rolled_back_one_changes_nothing() {
    let (mut primary, mut standby) = fresh_replicated("standby_race");
    primary
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'old');
             CREATE TABLE doctors (name text PRIMARY KEY, oncall bool); INSERT INTO doctors VALUES ('a', true), ('b', true);",
        )
        .unwrap();
    wait_replay(&mut primary, &mut standby);
    let mut reader = connect_to("PG_CACHE_TEST_STANDBY_PORT", "standby_race");
    fill_until_kept(&mut standby, "c", "other", "1");

    // Committed: the reader read 'old' before the primary's commit was replayed and
    // fills after it: its fill is dropped, whatever the timing of the resolution.
    reader.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").unwrap();
    let v: String = reader.query_one("SELECT v FROM t WHERE id = 1", &[]).unwrap().get(0);
    assert_eq!(v, "old");
    primary.batch_execute("BEGIN; UPDATE t SET v = 'new' WHERE id = 1; SELECT cache_delete('c', 'k'); COMMIT").unwrap();
    wait_replay(&mut primary, &mut standby);
    std::thread::sleep(Duration::from_millis(100));
    let stale_before = stat(&mut standby, "c", "stale_sets");
    reader.execute("SELECT cache_set('c', 'k', to_jsonb($1::text))", &[&v]).unwrap();
    reader.batch_execute("COMMIT").unwrap();
    assert_eq!(get(&mut standby, "c", "k"), None, "a value computed from the rows before the commit is dropped");
    assert_eq!(stat(&mut standby, "c", "stale_sets"), stale_before + 1);
    // A transaction that starts now reads the new row, and its fill is kept.
    standby.batch_execute("SELECT cache_set('c', 'k', to_jsonb(v)) FROM t WHERE id = 1").unwrap();
    assert_eq!(get(&mut standby, "c", "k").as_deref(), Some("\"new\""));

    // Rolled back after its record was written: a serializable transaction that
    // fails at COMMIT, after pg_cache's PRE_COMMIT. Once its abort is replayed, a
    // fill by a transaction that began before it is kept: no row changed.
    fill_until_kept(&mut standby, "c", "k2", "1");
    reader.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").unwrap();
    reader.query_one("SELECT count(*) FROM doctors", &[]).unwrap();
    let mut t1 = connect("standby_race");
    let mut t2 = connect("standby_race");
    t1.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT count(*) FROM doctors WHERE oncall").unwrap();
    t2.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT count(*) FROM doctors WHERE oncall").unwrap();
    t1.batch_execute("UPDATE doctors SET oncall = false WHERE name = 'a'").unwrap();
    t2.batch_execute("UPDATE doctors SET oncall = false WHERE name = 'b'; SELECT cache_delete_many('c', ARRAY['k2', 'k3'])").unwrap();
    t1.batch_execute("COMMIT").unwrap();
    let e = t2.batch_execute("COMMIT").unwrap_err();
    assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("40001"), "{e}");
    wait_replay(&mut primary, &mut standby);
    assert_eq!(get(&mut standby, "c", "k2"), None, "redo took the entry away before the transaction ended");
    // Resolved (both keys at once) once a fill of the other key by a transaction
    // that starts now is kept.
    fill_until_kept(&mut standby, "c", "k3", "1");
    reader.batch_execute("SELECT cache_set('c', 'k2', '2'); COMMIT").unwrap();
    assert_eq!(
        get(&mut standby, "c", "k2").as_deref(),
        Some("2"),
        "the fill of a transaction older than the rolled-back one is kept"
    );
}

#[test]
fn declaration_changes_and_drops_on_the_primary_reach_the_standby() {
    let (mut primary, mut standby) = fresh_replicated("standby_decl");
    primary.batch_execute("SELECT cache_create('d', size_limit => 7, context => false)").unwrap();
    wait_replay(&mut primary, &mut standby);
    fill_until_kept(&mut standby, "d", "k", "1");
    assert_eq!(stat(&mut standby, "d", "size_limit"), 7);
    // A new declaration: once it is replayed and resolved, the standby reads it.
    primary.batch_execute("SELECT cache_declare('d', size_limit => 5, context => false)").unwrap();
    wait_replay(&mut primary, &mut standby);
    let start = Instant::now();
    loop {
        fill_until_kept(&mut standby, "d", "k", "2");
        if stat(&mut standby, "d", "size_limit") == 5 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the standby kept the old declaration");
        std::thread::sleep(Duration::from_millis(20));
    }
    // cache_drop (not transactional) and DROP EXTENSION take the standby's entries.
    fill_until_kept(&mut standby, "d", "k", "3");
    primary.batch_execute("SELECT cache_drop('standby_decl')").unwrap();
    wait_replay(&mut primary, &mut standby);
    assert_eq!(get(&mut standby, "d", "k"), None, "cache_drop reached the standby");
    fill_until_kept(&mut standby, "d", "k", "4");
    primary.batch_execute("DROP EXTENSION pg_cache").unwrap();
    wait_replay(&mut primary, &mut standby);
    let mut fresh = connect_to("PG_CACHE_TEST_STANDBY_PORT", "standby_decl");
    let entries: i64 = fresh.query_one("SELECT count(*) FROM pg_extension WHERE extname = 'pg_cache'", &[]).unwrap().get(0);
    assert_eq!(entries, 0);
    primary.batch_execute("CREATE EXTENSION pg_cache").unwrap();
    wait_replay(&mut primary, &mut fresh);
    assert_eq!(get(&mut fresh, "d", "k"), None, "DROP EXTENSION took the standby's entries");
}
