//! Cache slots on the small cluster (`pg_cache.max_caches = 16`): reads of many
//! names take none, unused slots are reclaimed, one database holds at
//! most `pg_cache.max_caches_per_database`, and 53400 comes only when every slot
//! holds entries. Its own test binary: it fills the cluster's directory.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

mod common;
use common::{connect_to, fresh_database_on, reload_setting, sqlstate};

const PORT: &str = "PG_CACHE_TEST_SMALL_PORT";

#[test]
fn slots_are_reclaimed_capped_per_database_and_refused_only_when_all_hold_entries() {
    let mut admin = connect_to(PORT, "postgres");
    admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cache; SELECT cache_drop('postgres')").unwrap();
    // Reads of 2,000 names nobody wrote or declared: misses that take no slot.
    let n: i64 = admin
        .query_one("SELECT count(cache_get('probe' || g, 'k', '0')) FROM generate_series(1, 2000) g", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2000);
    for db in ["pg_cache_slots_a", "pg_cache_slots_b"] {
        fresh_database_on(PORT, db);
    }
    reload_setting(PORT, "pg_cache.max_caches_per_database", Some("10"), "10");
    let mut a = connect_to(PORT, "pg_cache_slots_a");
    for i in 1..=10 {
        assert_eq!(sqlstate(&mut a, &format!("SELECT cache_set('a{i}', 'k', '1')")), "ok");
    }
    let e = a.batch_execute("SELECT cache_set('a11', 'k', '1')").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53400", "{db:?}");
    assert!(db.message().contains("this database already uses 10 cache slots"), "{}", db.message());
    // Under pg_cache.on_limit = warning an increment (a write only if what it reads
    // allows) is skipped with a WARNING and counted, as if not made; a read misses;
    // a set, put or delete still raises: each invalidates its key, and that cannot
    // be recorded without a slot.
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let seen = warnings.clone();
    let mut w = postgres::Config::from_str(&format!("host=127.0.0.1 port={} user=postgres dbname=pg_cache_slots_a", common::port(PORT)))
        .unwrap()
        .notice_callback(move |n| seen.lock().unwrap().push((n.code().code().to_string(), n.message().to_string())))
        .connect(postgres::NoTls)
        .unwrap();
    let skipped = |c: &mut postgres::Client| -> i64 { c.query_one("SELECT skipped_without_slot FROM cache_memory()", &[]).unwrap().get(0) };
    let before = skipped(&mut w);
    w.batch_execute("SET pg_cache.on_limit = warning").unwrap();
    let n: Option<i64> = w.query_one("SELECT cache_incr('a11', 'k')", &[]).unwrap().get(0);
    assert_eq!(n, None, "skipped");
    assert_eq!(
        warnings.lock().unwrap().as_slice(),
        [(
            "53400".to_string(),
            "cannot create cache \"a11\": this database already uses 10 cache slots: skipped (pg_cache.on_limit = warning)".to_string()
        )]
    );
    assert_eq!(skipped(&mut w), before + 1);
    let got: Option<String> = w.query_one("SELECT cache_get('a11', 'k')::text", &[]).unwrap().get(0);
    assert_eq!(got, None);
    assert_eq!(sqlstate(&mut w, "SELECT cache_delete('a11', 'k')"), "53400", "an invalidation is never skipped");
    assert_eq!(sqlstate(&mut w, "SELECT cache_set('a11', 'k', '1')"), "53400", "nor is a set");
    drop(w);
    // The other database still gets slots: the 6 left of 16 (the probes held none).
    let mut b = connect_to(PORT, "pg_cache_slots_b");
    for i in 1..=6 {
        assert_eq!(sqlstate(&mut b, &format!("SELECT cache_set('b{i}', 'k', '1')")), "ok", "b{i}");
    }
    let e = b.batch_execute("SELECT cache_set('b7', 'k', '1')").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53400", "{db:?}");
    assert!(db.message().contains("all 16 cache slots are in use"), "{}", db.message());
    // A failed slot creation is an ordinary ERROR: the transaction's other work
    // rolls back with it, the session goes on.
    assert_eq!(sqlstate(&mut b, "SELECT 1"), "ok");
    // Emptied caches give their slots back.
    b.batch_execute("SELECT cache_delete('b1', 'k')").unwrap();
    assert_eq!(sqlstate(&mut b, "SELECT cache_set('b7', 'k', '1')"), "ok");
    drop((a, b));
    reload_setting(PORT, "pg_cache.max_caches_per_database", None, "768");
    for db in ["pg_cache_slots_a", "pg_cache_slots_b"] {
        admin.batch_execute(&format!("SELECT cache_drop('{db}')")).unwrap();
        admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    }
}
