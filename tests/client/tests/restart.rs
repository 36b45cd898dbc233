//! Warm restart on a cluster of its own (started by scripts/test), which these tests
//! stop and start: after a clean shutdown the caches come back, with their expiry
//! times and settings; never after a crash, from a dump older than the shutdown the
//! server starts from, or when the server replays WAL from that point (recovery).

use std::process::Command;
use std::time::{Duration, Instant};

use postgres::Client;

mod common;
use common::{get, sqlstate, stat};

const PORT: &str = "PG_CACHE_TEST_RESTART_PORT";

fn dir() -> String {
    std::env::var("PG_CACHE_TEST_RESTART_DIR").expect("PG_CACHE_TEST_RESTART_DIR: run these tests with scripts/test")
}

/// `pg_ctl` on the cluster's directory.
fn pg_ctl(args: &[&str]) {
    common::pg_ctl(&dir(), args);
}

fn connect_when_up() -> Client {
    common::connect_when_up(PORT)
}

fn dump() -> String {
    format!("{}/pg_stat/pg_cache.dump", dir())
}

/// Copies a file of the cluster's (the tests run as root), keeping its owner.
fn copy(from: &str, to: &str) {
    let status = Command::new("cp").args(["-p", from, to]).status().unwrap();
    assert!(status.success(), "cp {from} {to}");
}

fn expires_at(c: &mut Client, key: &str) -> Option<String> {
    c.query_one("SELECT cache_expires_at('w', $1)::text", &[&key]).unwrap().get(0)
}

// One test: each step stops and starts the same server.
#[test]
fn caches_come_back_after_a_clean_shutdown_and_only_then() {
    let mut c = connect_when_up();
    c.batch_execute(
        "DO $$ BEGIN CREATE ROLE warm_reader; CREATE ROLE warm_other; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         SELECT cache_create('w', size_limit => 77, readers => '{warm_reader}');
         SELECT cache_set('w', 'a', '1'), cache_set('w', 'b', '2', ttl => '1 hour'), cache_set('w', 'gone', '3', ttl => '1 second');
         SELECT cache_put_bytes('w', 'bytes', '\\x0102'::bytea)",
    )
    .unwrap();
    let b_expires = expires_at(&mut c, "b");
    assert!(b_expires.is_some());
    std::thread::sleep(Duration::from_millis(1100));

    // A clean restart brings back what was live, with its expiry time and the
    // cache's settings.
    pg_ctl(&["-m", "fast", "restart"]);
    let mut c = connect_when_up();
    assert_eq!(get(&mut c, "w", "a").as_deref(), Some("1"));
    assert_eq!(get(&mut c, "w", "b").as_deref(), Some("2"));
    assert_eq!(expires_at(&mut c, "b"), b_expires, "the entry keeps its expiry time");
    assert_eq!(get(&mut c, "w", "gone"), None, "expired entries are not brought back");
    let bytes: Option<Vec<u8>> = c.query_one("SELECT cache_get_bytes('w', 'bytes')", &[]).unwrap().get(0);
    assert_eq!(bytes, Some(vec![1, 2]));
    assert_eq!(stat(&mut c, "w", "size_limit"), 77);
    assert_eq!(stat(&mut c, "w", "entries"), 3);
    c.batch_execute("SET ROLE warm_other").unwrap();
    assert_eq!(sqlstate(&mut c, "SELECT cache_get('w', 'a')"), "42501", "the declaration's readers come back with the entries");
    c.batch_execute("RESET ROLE").unwrap();
    assert!(!std::path::Path::new(&dump()).exists(), "the dump is removed once loaded");

    // A crash (immediate stop) loses them.
    pg_ctl(&["-m", "immediate", "restart"]);
    let mut c = connect_when_up();
    assert_eq!(get(&mut c, "w", "a"), None, "nothing comes back after a crash");

    // A dump older than the shutdown the server starts from is never loaded: here a
    // copy of the dump from before a committed delete, put back after a later clean
    // shutdown, and after a crash.
    c.batch_execute("SELECT cache_set('w', 'k', '1')").unwrap();
    pg_ctl(&["-m", "fast", "stop"]);
    let old = format!("{}/old_dump", dir());
    copy(&dump(), &old);
    pg_ctl(&["start"]);
    let mut c = connect_when_up();
    assert_eq!(get(&mut c, "w", "k").as_deref(), Some("1"));
    c.batch_execute("SELECT cache_delete('w', 'k'); SELECT cache_set('w', 'other', '1')").unwrap();
    pg_ctl(&["-m", "fast", "stop"]);
    copy(&old, &dump());
    pg_ctl(&["start"]);
    let mut c = connect_when_up();
    assert_eq!(get(&mut c, "w", "k"), None, "the delete committed after the old dump was written stands");
    assert_eq!(get(&mut c, "w", "other"), None, "the old dump was not loaded at all");
    pg_ctl(&["-m", "immediate", "stop"]);
    copy(&old, &dump());
    pg_ctl(&["start"]);
    let mut c = connect_when_up();
    assert_eq!(get(&mut c, "w", "k"), None, "nor after a crash");

    // Recovery from the clean shutdown's directory (recovery.signal: it replays
    // whatever WAL it finds, then starts a new timeline) loads nothing either.
    c.batch_execute("SELECT cache_set('w', 'r', '1')").unwrap();
    c.batch_execute("ALTER SYSTEM SET restore_command = 'false'").unwrap();
    pg_ctl(&["-m", "fast", "stop"]);
    assert!(std::path::Path::new(&dump()).exists());
    let signal = format!("{}/recovery.signal", dir());
    std::fs::write(&signal, "").unwrap();
    Command::new("chown").args(["postgres:", &signal]).status().unwrap();
    pg_ctl(&["start"]);
    let mut c = connect_when_up();
    let start = Instant::now();
    while c.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get::<_, bool>(0) {
        assert!(start.elapsed() < Duration::from_secs(30), "recovery did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&mut c, "w", "r"), None, "a server that replays WAL loads no dump");
    c.batch_execute("ALTER SYSTEM RESET restore_command").unwrap();

    // pg_cache.warm_restart = off: no dump is written.
    c.batch_execute("SELECT cache_set('w', 'o', '1')").unwrap();
    c.batch_execute("ALTER SYSTEM SET pg_cache.warm_restart = off").unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    pg_ctl(&["-m", "fast", "restart"]);
    let mut c = connect_when_up();
    assert_eq!(get(&mut c, "w", "o"), None, "off: nothing comes back");
    c.batch_execute("ALTER SYSTEM RESET pg_cache.warm_restart").unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
}
