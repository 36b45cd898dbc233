//! A server of more caches than a 16-bit slot index can name (the wide cluster:
//! `pg_cache.max_caches = 70000`): 500 databases of 200 caches need 100,000.

mod common;
use common::connect_to;

const PORT: &str = "PG_CACHE_TEST_WIDE_PORT";

#[test]
fn seventy_thousand_caches_each_keep_their_own_entries_and_the_next_is_refused() {
    let mut c = connect_to(PORT, "postgres");
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cache").unwrap();
    let written: i64 = c
        .query_one("SELECT count(cache_set('c' || g, 'k', to_jsonb(g))) FROM generate_series(1, 70000) g", &[])
        .unwrap()
        .get(0);
    assert_eq!(written, 70_000);
    // Caches past slot 65,535 hold their own values, not those of a slot 65,536 lower.
    let own: i64 = c
        .query_one("SELECT count(*) FROM generate_series(1, 70000) g WHERE cache_get('c' || g, 'k') = to_jsonb(g)", &[])
        .unwrap()
        .get(0);
    assert_eq!(own, 70_000);
    let (caches, entries): (i64, i64) = c
        .query_one("SELECT count(*), sum(entries)::bigint FROM cache_stats()", &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((caches, entries), (70_000, 70_000));
    // Every slot holds an entry: the next name is refused, and the message says why.
    let e = c.batch_execute("SELECT cache_set('one_more', 'k', '1')").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53400", "{db:?}");
    assert!(db.message().contains("all 70000 cache slots are in use"), "{}", db.message());
    c.batch_execute("SELECT cache_drop('postgres')").unwrap();
}
