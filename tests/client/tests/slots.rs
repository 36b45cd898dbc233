//! Cache slots on the small cluster (`pg_cache.max_caches = 16`): reads of many
//! names cannot use them up (unused slots are reclaimed), one database holds at
//! most `pg_cache.max_caches_per_database`, and 53400 comes only when every slot
//! holds entries. Its own test binary: it fills the cluster's directory.

use std::time::{Duration, Instant};

use postgres::Client;

mod common;
use common::connect_to;

const PORT: &str = "PG_CACHE_TEST_SMALL_PORT";

fn code(c: &mut Client, sql: &str) -> String {
    match c.batch_execute(sql) {
        Ok(()) => "ok".into(),
        Err(e) => e.as_db_error().map(|d| d.code().code().to_owned()).unwrap_or_else(|| e.to_string()),
    }
}

fn set_cap(admin: &mut Client, cap: Option<u32>) {
    let sql = match cap {
        Some(n) => format!("ALTER SYSTEM SET pg_cache.max_caches_per_database = {n}"),
        None => "ALTER SYSTEM RESET pg_cache.max_caches_per_database".into(),
    };
    admin.batch_execute(&sql).unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let want = cap.map_or("768".to_string(), |n| n.to_string());
    let start = Instant::now();
    loop {
        let mut probe = connect_to(PORT, "postgres");
        let now: String = probe.query_one("SHOW pg_cache.max_caches_per_database", &[]).unwrap().get(0);
        if now == want {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the reload did not apply");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn slots_are_reclaimed_capped_per_database_and_refused_only_when_all_hold_entries() {
    let mut admin = connect_to(PORT, "postgres");
    admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cache; SELECT cache_drop('postgres')").unwrap();
    // Reads of 2,000 names: each creates a slot for its misses; unused ones are reused.
    let n: i64 = admin
        .query_one("SELECT count(cache_get('probe' || g, 'k', '0')) FROM generate_series(1, 2000) g", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2000);
    for db in ["pg_cache_slots_a", "pg_cache_slots_b"] {
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
        connect_to(PORT, db).batch_execute("CREATE EXTENSION pg_cache").unwrap();
    }
    set_cap(&mut admin, Some(10));
    let mut a = connect_to(PORT, "pg_cache_slots_a");
    for i in 1..=10 {
        assert_eq!(code(&mut a, &format!("SELECT cache_set('a{i}', 'k', '1')")), "ok");
    }
    let e = a.batch_execute("SELECT cache_set('a11', 'k', '1')").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53400", "{db:?}");
    assert!(db.message().contains("this database already uses 10 cache slots"), "{}", db.message());
    // The other database still gets slots: the 6 left of 16 (the probes held none).
    let mut b = connect_to(PORT, "pg_cache_slots_b");
    for i in 1..=6 {
        assert_eq!(code(&mut b, &format!("SELECT cache_set('b{i}', 'k', '1')")), "ok", "b{i}");
    }
    let e = b.batch_execute("SELECT cache_set('b7', 'k', '1')").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53400", "{db:?}");
    assert!(db.message().contains("all 16 cache slots are in use"), "{}", db.message());
    // A failed slot creation is an ordinary ERROR: the transaction's other work
    // rolls back with it, the session goes on.
    assert_eq!(code(&mut b, "SELECT 1"), "ok");
    // Emptied caches give their slots back.
    b.batch_execute("SELECT cache_delete('b1', 'k')").unwrap();
    assert_eq!(code(&mut b, "SELECT cache_set('b7', 'k', '1')"), "ok");
    drop((a, b));
    set_cap(&mut admin, None);
    for db in ["pg_cache_slots_a", "pg_cache_slots_b"] {
        admin.batch_execute(&format!("SELECT cache_drop('{db}')")).unwrap();
        admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    }
}
