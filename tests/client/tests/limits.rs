//! A server started under `ulimit -v` (scripts/test's "limited" cluster): a
//! transaction that queues more pg_cache writes than the backend can hold fails with
//! 53200 out_of_memory, and nothing else is harmed: no crash restart, the cache and
//! the other sessions stay.

mod common;
use common::{connect_to, get};

#[test]
fn a_write_set_larger_than_memory_is_an_error_not_an_abort() {
    let mut c = connect_to("PG_CACHE_TEST_LIMITED_PORT", "postgres");
    let mut other = connect_to("PG_CACHE_TEST_LIMITED_PORT", "postgres");
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cache; SELECT cache_set('oom', 'before', '1')").unwrap();
    let pid: i32 = other.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    c.batch_execute("BEGIN").unwrap();
    let e = c
        .batch_execute(
            "SELECT count(cache_set('oom', 'k' || g, to_jsonb(repeat('x', 200)))) FROM generate_series(1, 6000000) g",
        )
        .unwrap_err();
    let db = e.as_db_error().expect("a server error, not a lost connection");
    assert_eq!(db.code().code(), "53200", "{db:?}");
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(get(&mut c, "oom", "before").as_deref(), Some("1"), "the cache survived: no crash restart");
    assert_eq!(get(&mut c, "oom", "k1"), None, "nothing of the failed transaction");
    let same: i32 = other.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    assert_eq!(same, pid, "the other session was not reset");
}
