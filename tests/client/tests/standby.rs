//! A hot standby (a `pg_basebackup -R` of the main cluster, started by scripts/test):
//! reads of declared and undeclared caches work there; writes get a clear error.

use std::time::{Duration, Instant};

mod common;
use common::{connect, connect_to, get, stat};

#[test]
fn a_hot_standby_reads_caches_and_refuses_writes() {
    let mut primary = connect("postgres");
    primary.batch_execute("SELECT cache_create('standby_declared', size_limit => 11)").unwrap();
    let mut standby = connect_to("PG_CACHE_TEST_STANDBY_PORT", "postgres");
    assert!(standby.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get::<_, bool>(0));
    // Wait for the declaration to be replayed.
    let start = Instant::now();
    while standby
        .query_one("SELECT count(*) FROM pg_cache_declarations WHERE cache = 'standby_declared'", &[])
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(start.elapsed() < Duration::from_secs(30), "the standby did not replay the declaration");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&mut standby, "standby_declared", "k"), None);
    assert_eq!(get(&mut standby, "standby_undeclared", "k"), None);
    assert_eq!(stat(&mut standby, "standby_declared", "size_limit"), 11, "the declaration applies");
    for write in [
        "SELECT cache_set('standby_declared', 'k', '1')",
        "SELECT cache_put('standby_declared', 'k', '1')",
        "SELECT cache_delete('standby_declared', 'k')",
        "SELECT cache_clear('standby_declared')",
        "SELECT cache_clear_all()",
    ] {
        let e = standby.batch_execute(write).unwrap_err();
        let db = e.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "25006", "{write}: {db:?}");
        assert!(db.message().contains("during recovery"), "{}", db.message());
    }
    assert_eq!(get(&mut standby, "standby_declared", "k"), None);
}
