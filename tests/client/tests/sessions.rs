//! Behaviour across sessions: what one connection commits, another sees; databases
//! and roles stay apart; size limits, TTLs and memory pressure hold under real load.

use std::time::Duration;

use postgres::Client;

mod common;
use common::{connect, connect_to, ensure_roles, get, stat};

#[test]
fn a_committed_set_is_seen_by_another_session_and_nothing_before() {
    let (mut a, mut b) = (connect("postgres"), connect("postgres"));
    a.batch_execute("BEGIN; SELECT cache_set('visibility', 'k', '\"v1\"')").unwrap();
    assert_eq!(get(&mut a, "visibility", "k").as_deref(), Some("\"v1\""), "read your writes");
    assert_eq!(get(&mut b, "visibility", "k"), None, "nothing before commit");
    a.batch_execute("COMMIT").unwrap();
    assert_eq!(get(&mut b, "visibility", "k").as_deref(), Some("\"v1\""));
    a.batch_execute("BEGIN; SELECT cache_set('visibility', 'k', '\"v2\"'); ROLLBACK").unwrap();
    assert_eq!(get(&mut b, "visibility", "k").as_deref(), Some("\"v1\""), "rollback discards");
    a.batch_execute("BEGIN; SELECT cache_delete('visibility', 'k'); COMMIT").unwrap();
    assert_eq!(get(&mut b, "visibility", "k"), None);
}

#[test]
fn a_committed_clear_empties_the_cache_for_everyone() {
    let (mut a, mut b) = (connect("postgres"), connect("postgres"));
    a.batch_execute("SELECT cache_set('clearing', 'k', '1')").unwrap();
    b.batch_execute("BEGIN; SELECT cache_clear('clearing')").unwrap();
    assert_eq!(get(&mut b, "clearing", "k"), None, "private view after clear");
    assert_eq!(get(&mut a, "clearing", "k").as_deref(), Some("1"), "others see shared entries until commit");
    b.batch_execute("COMMIT").unwrap();
    assert_eq!(get(&mut a, "clearing", "k"), None);
    assert_eq!(stat(&mut a, "clearing", "entries"), 0);
}

#[test]
fn databases_are_isolated() {
    let mut admin = connect("postgres");
    admin.batch_execute("DROP DATABASE IF EXISTS pg_cache_other").unwrap();
    admin.batch_execute("CREATE DATABASE pg_cache_other").unwrap();
    let mut other = connect("pg_cache_other");
    other.batch_execute("CREATE EXTENSION pg_cache").unwrap();
    admin.batch_execute("SELECT cache_set('isolated', 'k', '\"postgres\"')").unwrap();
    assert_eq!(get(&mut other, "isolated", "k"), None);
    other.batch_execute("SELECT cache_set('isolated', 'k', '\"other\"')").unwrap();
    assert_eq!(get(&mut admin, "isolated", "k").as_deref(), Some("\"postgres\""));
    assert_eq!(get(&mut other, "isolated", "k").as_deref(), Some("\"other\""));
    // cache_drop empties one database only.
    admin.batch_execute("SELECT cache_drop('pg_cache_other')").unwrap();
    assert_eq!(get(&mut other, "isolated", "k"), None);
    assert_eq!(get(&mut admin, "isolated", "k").as_deref(), Some("\"postgres\""));
    drop(other);
    admin.batch_execute("DROP DATABASE pg_cache_other WITH (FORCE)").unwrap();
}

#[test]
fn roles_are_isolated_with_context_and_share_without() {
    let mut admin = connect("postgres");
    ensure_roles(&mut admin, &["cache_alice", "cache_bob"]);
    admin
        .batch_execute(
            "SELECT cache_create('per_role');
             SELECT cache_create('shared', context => false);",
        )
        .unwrap();
    let (mut alice, mut bob) = (connect("postgres"), connect("postgres"));
    alice.batch_execute("SET ROLE cache_alice; SELECT cache_set('per_role', 'k', '\"alice\"'), cache_set('shared', 'k', '\"alice\"')").unwrap();
    bob.batch_execute("SET ROLE cache_bob").unwrap();
    assert_eq!(get(&mut bob, "per_role", "k"), None);
    assert_eq!(get(&mut bob, "shared", "k").as_deref(), Some("\"alice\""));
    assert_eq!(get(&mut alice, "per_role", "k").as_deref(), Some("\"alice\""));
}

#[test]
fn the_size_limit_holds_and_evicts_the_oldest() {
    let mut a = connect("postgres");
    a.batch_execute("SELECT cache_create('limited', size_limit => 10)").unwrap();
    let mut b = connect("postgres");
    for i in 0..50 {
        b.execute("SELECT cache_set('limited', $1, to_jsonb($2::int))", &[&format!("k{i}"), &i]).unwrap();
    }
    assert_eq!(stat(&mut a, "limited", "entries"), 10);
    assert_eq!(stat(&mut a, "limited", "evictions"), 40);
    assert_eq!(get(&mut a, "limited", "k0"), None);
    assert_eq!(get(&mut a, "limited", "k49").as_deref(), Some("49"));
}

#[test]
fn entries_expire_after_their_ttl() {
    let mut a = connect("postgres");
    a.batch_execute("SELECT cache_set('expiring', 'k', '1', '1 second'); SELECT cache_create('expiring_by_duration', duration => '1 second')").unwrap();
    a.batch_execute("SELECT cache_set('expiring_by_duration', 'k', '2')").unwrap();
    let mut b = connect("postgres");
    assert_eq!(get(&mut b, "expiring", "k").as_deref(), Some("1"));
    assert_eq!(get(&mut b, "expiring_by_duration", "k").as_deref(), Some("2"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get(&mut b, "expiring", "k"), None);
    assert_eq!(get(&mut b, "expiring_by_duration", "k"), None);
    assert_eq!(stat(&mut b, "expiring", "expirations"), 1);
    assert_eq!(stat(&mut b, "expiring", "entries"), 0);
}

#[test]
fn prepare_transaction_with_pending_writes_fails_and_applies_nothing() {
    let mut a = connect("postgres");
    a.batch_execute("BEGIN; SELECT cache_set('twophase', 'k', '1')").unwrap();
    let err = a.batch_execute("PREPARE TRANSACTION 'pg_cache_t1'").unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "0A000", "{db:?}");
    assert!(db.message().contains("pending pg_cache writes"), "{err}");
    let mut b = connect("postgres");
    assert_eq!(get(&mut b, "twophase", "k"), None);
    // Without pending writes, two-phase commit works.
    b.batch_execute("BEGIN; SELECT cache_get('twophase', 'k'); PREPARE TRANSACTION 'pg_cache_t2'").unwrap();
    b.batch_execute("COMMIT PREPARED 'pg_cache_t2'").unwrap();
}

#[test]
fn small_memory_under_heavy_writes_evicts_and_never_errors() {
    let mut clients: Vec<Client> = (0..4).map(|_| connect_to("PG_CACHE_TEST_SMALL_PORT", "postgres")).collect();
    clients[0].batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cache; SELECT cache_create('pressure', size_limit => 1000000)").unwrap();
    let threads: Vec<_> = clients
        .drain(..)
        .enumerate()
        .map(|(t, mut c)| {
            std::thread::spawn(move || {
                for i in 0..1500 {
                    c.execute("SELECT cache_set('pressure', $1, to_jsonb(repeat('x', 1000)))", &[&format!("{t}-{i}")]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no write failed");
    }
    let mut c = connect_to("PG_CACHE_TEST_SMALL_PORT", "postgres");
    let entries = stat(&mut c, "pressure", "entries");
    let evictions = stat(&mut c, "pressure", "evictions");
    // Every set is installed or evicted, or dropped as a stale fill: on a 1 MB
    // server the fence table (512 keys) overflows all the time into the cache's key
    // floor, which may fence a fill another writer has in flight (forgetting drops
    // more, never less). A fresh-clone run saw one such fill in 6,000.
    let stale = stat(&mut c, "pressure", "stale_sets");
    assert!(evictions > 0, "1 MB cannot hold 6000 values of 1 kB");
    assert_eq!(entries + evictions + stale, 6000, "{entries} entries, {evictions} evictions, {stale} stale");
    assert_eq!(stat(&mut c, "pressure", "sets") + stale, 6000);
}

#[test]
fn without_preloading_the_extension_refuses_to_load_and_says_how_to_fix_it() {
    let mut c = connect_to("PG_CACHE_TEST_PLAIN_PORT", "postgres");
    for sql in ["CREATE EXTENSION pg_cache", "LOAD 'pg_cache'"] {
        let err = c.batch_execute(sql).unwrap_err();
        let db = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
        assert_eq!(db.code().code(), "55000", "{sql}: {db:?}");
        assert_eq!(db.message(), "pg_cache must be loaded via shared_preload_libraries");
        assert!(db.hint().is_some_and(|h| h.contains("shared_preload_libraries")), "{db:?}");
    }
}
