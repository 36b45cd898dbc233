//! Eviction policies end to end: `cache_create(policy => 'lfu')` keeps a hot set
//! through a one-time scan that pushes it out of an LRU cache of the same size.

mod common;
use common::{connect, fresh_database};

#[test]
fn an_lfu_cache_keeps_its_hot_set_through_a_scan_and_an_lru_cache_does_not() {
    fresh_database("pg_cache_policy");
    let mut c = connect("pg_cache_policy");
    let mut hot_left = |policy: &str| -> i64 {
        let cache = format!("hot_{policy}");
        c.execute("SELECT cache_create($1, size_limit => 100, context => false, policy => $2)", &[&cache, &policy]).unwrap();
        c.execute("SELECT count(cache_put($1, 'hot' || g, '1')) FROM generate_series(1, 50) g", &[&cache]).unwrap();
        for _ in 0..5 {
            let hits: i64 = c
                .query_one("SELECT count(cache_get($1, 'hot' || g)) FROM generate_series(1, 50) g", &[&cache])
                .unwrap()
                .get(0);
            assert_eq!(hits, 50);
        }
        // A one-time scan of 2,000 keys, a commit each.
        for g in 0..2000 {
            c.execute("SELECT cache_put($1, 'scan' || $2::int, '1')", &[&cache, &g]).unwrap();
        }
        c.query_one("SELECT count(*) FROM generate_series(1, 50) g WHERE cache_has($1, 'hot' || g)", &[&cache]).unwrap().get(0)
    };
    assert_eq!(hot_left("lfu"), 50, "LFU keeps every entry of the hot set");
    assert_eq!(hot_left("lru"), 0, "LRU lets the scan push it out");
    let policy: String = c.query_one("SELECT policy FROM pg_cache_declarations WHERE cache = 'hot_lfu'", &[]).unwrap().get(0);
    assert_eq!(policy, "lfu");
}
