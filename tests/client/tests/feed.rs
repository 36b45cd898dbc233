//! The change feed: a cache declared with `notify => 'keys'` announces each commit's
//! changes on `pg_cache_feed`, as a real `LISTEN` receives them; nothing for
//! rolled-back work or other caches; large commits split, then `cleared`.

use std::time::Duration;

use postgres::Client;

mod common;
use common::{connect, fresh_database, sqlstate};

/// The payloads `listener` receives within a short wait.
fn received(listener: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    let mut n = listener.notifications();
    let mut it = n.timeout_iter(Duration::from_millis(300));
    while let Some(note) = postgres::fallible_iterator::FallibleIterator::next(&mut it).unwrap() {
        assert_eq!(note.channel(), "pg_cache_feed");
        out.push(note.payload().to_string());
    }
    out
}

#[test]
fn committed_changes_are_announced_and_rolled_back_ones_are_not() {
    fresh_database("pg_cache_feed");
    let mut c = connect("pg_cache_feed");
    let mut listener = connect("pg_cache_feed");
    listener.batch_execute("LISTEN pg_cache_feed").unwrap();
    c.batch_execute(
        "SELECT cache_create('f', context => false, notify => 'keys');
         SELECT cache_create('quiet', context => false);
         SELECT cache_create('ctx', notify => 'keys');",
    )
    .unwrap();
    assert!(received(&mut listener).is_empty(), "declarations announce nothing");
    c.batch_execute(
        "BEGIN;
         SELECT cache_put('f', 'a', '1'), cache_set('f', 'b', '2', tags => ARRAY['t0']), cache_delete('f', 'c');
         SELECT cache_invalidate_tags('f', ARRAY['t1', 't\"2']);
         SELECT cache_delete_prefix('f', 'user:');
         SELECT cache_put('quiet', 'a', '1');
         COMMIT;",
    )
    .unwrap();
    assert_eq!(
        received(&mut listener),
        [r#"{"cache":"f","keys":["a","b","c"],"tags":["t1","t\"2"],"prefixes":["user:"]}"#]
    );
    // Rolled back, or with a savepoint: not announced.
    c.batch_execute("BEGIN; SELECT cache_put('f', 'x', '1'); ROLLBACK;").unwrap();
    c.batch_execute("BEGIN; SELECT cache_put('f', 'y', '1'); SAVEPOINT s; SELECT cache_put('f', 'z', '1'); ROLLBACK TO s; COMMIT;")
        .unwrap();
    assert_eq!(received(&mut listener), [r#"{"cache":"f","keys":["y"]}"#]);
    // Another cache's changes, and reads, are not announced.
    c.batch_execute("SELECT cache_put('quiet', 'b', '1'), cache_get('f', 'a')").unwrap();
    assert!(received(&mut listener).is_empty());
    // A clear says so, whatever else the commit did; so does clear_all.
    c.batch_execute("BEGIN; SELECT cache_put('f', 'a', '3'); SELECT cache_clear('f'); COMMIT;").unwrap();
    assert_eq!(received(&mut listener), [r#"{"cache":"f","cleared":true}"#]);
    c.batch_execute("SELECT cache_clear_all()").unwrap();
    assert_eq!(received(&mut listener), [r#"{"cache":"*","cleared":true}"#]);
    // A context cache announces the keys as the application wrote them.
    c.batch_execute("SELECT cache_set('ctx', 'mine', '1')").unwrap();
    assert_eq!(received(&mut listener), [r#"{"cache":"ctx","keys":["mine"]}"#]);
    // A bound table's changes are announced as the keys its trigger invalidates.
    c.batch_execute(
        "CREATE TABLE item (id int PRIMARY KEY); SELECT cache_bind('f', 'item', ARRAY['id']);
         INSERT INTO item VALUES (7);",
    )
    .unwrap();
    assert_eq!(received(&mut listener), [r#"{"cache":"f","keys":["7"]}"#]);
    assert_eq!(sqlstate(&mut c, "SELECT cache_create('f', notify => 'values')"), "22023");
}

#[test]
fn large_commits_are_split_under_the_payload_limit_then_announced_as_cleared() {
    fresh_database("pg_cache_feed_large");
    let mut c = connect("pg_cache_feed_large");
    let mut listener = connect("pg_cache_feed_large");
    listener.batch_execute("LISTEN pg_cache_feed").unwrap();
    c.batch_execute("SELECT cache_create('f', context => false, notify => 'keys')").unwrap();
    c.batch_execute("SELECT cache_put_many('f', (SELECT jsonb_object_agg('key:' || g, g) FROM generate_series(1, 1000) g))")
        .unwrap();
    let got = received(&mut listener);
    assert!(got.len() >= 2, "{} payloads", got.len());
    let mut keys = Vec::new();
    for p in &got {
        assert!(p.len() < 8000, "a payload of {} bytes", p.len());
        let v: serde_like::Keys = serde_like::parse(p);
        assert_eq!(v.cache, "f");
        keys.extend(v.keys);
    }
    keys.sort();
    let mut want: Vec<String> = (1..=1000).map(|g| format!("key:{g}")).collect();
    want.sort();
    assert_eq!(keys, want, "every key announced once");
    c.batch_execute(
        "SELECT cache_put_many('f', (SELECT jsonb_object_agg('key:' || g, g) FROM generate_series(1, 10000) g))",
    )
    .unwrap();
    assert_eq!(received(&mut listener), [r#"{"cache":"f","cleared":true}"#]);
}

/// Just enough of a reader for `{"cache":"…","keys":["…",…]}` payloads of plain
/// keys (the test's), to keep the tier free of a JSON dependency.
mod serde_like {
    pub struct Keys {
        pub cache: String,
        pub keys: Vec<String>,
    }

    pub fn parse(p: &str) -> Keys {
        let rest = p.strip_prefix(r#"{"cache":""#).expect("a cache first");
        let (cache, rest) = rest.split_once('"').unwrap();
        let list = rest.strip_prefix(r#","keys":["#).and_then(|r| r.strip_suffix("]}")).expect("keys only");
        Keys { cache: cache.to_string(), keys: list.split(',').map(|k| k.trim_matches('"').to_string()).collect() }
    }
}
