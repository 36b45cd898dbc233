//! Memory quotas on the small cluster (`pg_cache.memory = 1MB`): a cache's
//! `max_bytes` and the per-database share keep one writer from evicting everyone
//! else's entries. Its own test binary: it fills the cluster's memory.

use postgres::Client;

mod common;
use common::{connect_to, fresh_database_on, reload_setting, stat};

const PORT: &str = "PG_CACHE_TEST_SMALL_PORT";

fn write_many(c: &mut Client, cache: &str, n: i32) {
    for batch in 0..n / 2000 {
        c.execute(
            "SELECT count(cache_set($1, 'k' || g, '1')) FROM generate_series($2::int * 2000, $2::int * 2000 + 1999) g",
            &[&cache, &batch],
        )
        .unwrap();
    }
}

#[test]
fn a_byte_limit_and_a_database_share_keep_one_writer_from_evicting_the_rest() {
    let mut admin = connect_to(PORT, "postgres");
    admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cache; SELECT cache_drop('postgres')").unwrap();

    // max_bytes: the writer's cache evicts its own entries, not the victim's.
    admin
        .batch_execute(
            "SELECT cache_create('victim', size_limit => 100000, context => false);
             SELECT cache_create('writer', size_limit => 100000, context => false, max_bytes => 65536);
             SELECT count(cache_set('victim', 'v' || g, '1')) FROM generate_series(1, 3000) g;",
        )
        .unwrap();
    write_many(&mut admin, "writer", 20000);
    assert_eq!(stat(&mut admin, "victim", "entries"), 3000, "the victim kept every entry");
    assert!(stat(&mut admin, "writer", "bytes") <= 65536);
    assert!(stat(&mut admin, "writer", "evictions") > 0);
    admin.batch_execute("SELECT cache_drop('postgres')").unwrap();

    // The database share: a database over it gives way first when memory is full.
    for db in ["pg_cache_quota_quiet", "pg_cache_quota_noisy"] {
        fresh_database_on(PORT, db);
    }
    reload_setting(PORT, "pg_cache.database_share", Some("50"), "50");
    let mut quiet = connect_to(PORT, "pg_cache_quota_quiet");
    quiet
        .batch_execute(
            "SELECT cache_create('kept', size_limit => 100000, context => false);
             SELECT count(cache_set('kept', 'q' || g, '1')) FROM generate_series(1, 2500) g;",
        )
        .unwrap();
    let mut noisy = connect_to(PORT, "pg_cache_quota_noisy");
    noisy.batch_execute("SELECT cache_create('flood', size_limit => 100000, context => false)").unwrap();
    write_many(&mut noisy, "flood", 20000);
    assert_eq!(stat(&mut quiet, "kept", "entries"), 2500, "the quiet database kept every entry");
    assert!(stat(&mut noisy, "flood", "evictions") > 0, "memory was full");
    drop((quiet, noisy));
    reload_setting(PORT, "pg_cache.database_share", None, "100");
    for db in ["pg_cache_quota_quiet", "pg_cache_quota_noisy"] {
        admin.batch_execute(&format!("SELECT cache_drop('{db}')")).unwrap();
        admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    }
}
