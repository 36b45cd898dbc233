//! The edges of the promise (issue 14): exact invalidation in every pattern, reads
//! that need no transaction id, internal SQL that no search_path can hijack, what
//! DROP EXTENSION and redeclarations do, and no backtraces sent to clients.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use postgres::Client;

mod common;
use common::{connect, ensure_roles, fresh_database, get, sqlstate, stat};

/// The README's trigger pattern with writers that read their own row back through
/// the cache (a miss: their own delete) and fill it before COMMIT, while readers
/// fill on miss. No hit may return a version older than one committed before the
/// read began, and at the end every cached row equals the table.
#[test]
fn writers_that_read_back_through_the_cache_leave_no_stale_row() {
    const ITEMS: i32 = 6;
    const WRITERS: usize = 3;
    const READERS: usize = 3;
    const ROUNDS: usize = 300;
    fresh_database("pg_cache_readback");
    let mut setup = connect("pg_cache_readback");
    setup
        .batch_execute(&format!(
            "CREATE TABLE item (id int PRIMARY KEY, version int NOT NULL);
             INSERT INTO item SELECT g, 0 FROM generate_series(1, {ITEMS}) g;
             CREATE FUNCTION item_invalidate() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM cache_delete('item', OLD.id::text); RETURN NULL; END $$;
             CREATE TRIGGER item_invalidate AFTER UPDATE OR DELETE ON item
               FOR EACH ROW EXECUTE FUNCTION item_invalidate();
             SELECT cache_create('item', context => false);"
        ))
        .unwrap();
    // The highest version of each item whose COMMIT has returned.
    let committed: Arc<Vec<AtomicI64>> = Arc::new((0..=ITEMS).map(|_| AtomicI64::new(0)).collect());
    // Read through the cache: a hit, or the row filled into the cache on a miss.
    fn read_through(c: &mut Client, id: i32) -> (i64, bool) {
        let row = c.query_one("SELECT (cache_get('item', $1::int::text) #>> '{}')::int8", &[&id]).unwrap();
        if let Some(v) = row.get::<_, Option<i64>>(0) {
            return (v, true);
        }
        let v: i32 = c.query_one("SELECT version FROM item WHERE id = $1", &[&id]).unwrap().get(0);
        c.execute("SELECT cache_set('item', $1::int::text, to_jsonb($2::int))", &[&id, &v]).unwrap();
        (v as i64, false)
    }
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let committed = committed.clone();
        threads.push(std::thread::spawn(move || {
            let mut c = connect("pg_cache_readback");
            for round in 0..ROUNDS {
                let id = ((w * 7 + round * 5) % ITEMS as usize) as i32 + 1;
                c.batch_execute("BEGIN").unwrap();
                let v: i32 = c
                    .query_one("UPDATE item SET version = version + 1 WHERE id = $1 RETURNING version", &[&id])
                    .unwrap()
                    .get(0);
                let (seen, hit) = read_through(&mut c, id);
                assert!(!hit, "a writer's own delete hides the key");
                assert_eq!(seen, v as i64, "the writer reads its own row");
                c.batch_execute("COMMIT").unwrap();
                committed[id as usize].fetch_max(v as i64, Ordering::SeqCst);
            }
            0
        }));
    }
    for r in 0..READERS {
        let committed = committed.clone();
        threads.push(std::thread::spawn(move || {
            let mut c = connect("pg_cache_readback");
            let mut stale_hits = 0;
            for round in 0..ROUNDS * 2 {
                let id = ((r * 3 + round) % ITEMS as usize) as i32 + 1;
                let floor = committed[id as usize].load(Ordering::SeqCst);
                // The read and the fill in one transaction, as an application does:
                // a fill is judged by when its transaction began.
                c.batch_execute("BEGIN").unwrap();
                let (seen, hit) = read_through(&mut c, id);
                c.batch_execute("COMMIT").unwrap();
                if hit && seen < floor {
                    stale_hits += 1;
                }
            }
            stale_hits
        }));
    }
    let stale_hits: i32 = threads.into_iter().map(|t| t.join().expect("session thread")).sum();
    assert_eq!(stale_hits, 0, "hits older than a version whose COMMIT had returned");
    let rows = setup
        .query("SELECT id, version, (cache_get('item', id::text) #>> '{}')::int FROM item ORDER BY id", &[])
        .unwrap();
    for row in rows {
        let (id, version, cached): (i32, i32, Option<i32>) = (row.get(0), row.get(1), row.get(2));
        assert!(cached.is_none_or(|c| c == version), "item {id}: cached {cached:?}, table {version}");
    }
    assert!(stat(&mut setup, "item", "stale_sets") > 0, "the race was exercised");
}

/// Reads resolve caches, declared ones included, without a transaction id.
#[test]
fn reads_assign_no_transaction_id() {
    fresh_database("pg_cache_readonly");
    let mut admin = connect("pg_cache_readonly");
    admin.batch_execute("SELECT cache_create('declared_ro', size_limit => 7)").unwrap();
    // Forget the slots, so that the next read rebuilds one from the declarations table.
    admin.batch_execute("SELECT cache_drop(current_database())").unwrap();
    let mut c = connect("pg_cache_readonly");
    c.batch_execute("BEGIN READ ONLY").unwrap();
    assert_eq!(get(&mut c, "declared_ro", "k"), None);
    assert_eq!(get(&mut c, "never_declared_ro", "k"), None);
    let xid: Option<String> =
        c.query_one("SELECT pg_current_xact_id_if_assigned()::text", &[]).unwrap().get(0);
    assert_eq!(xid, None, "a read assigned a transaction id");
    c.batch_execute("COMMIT").unwrap();
    assert_eq!(stat(&mut c, "declared_ro", "size_limit"), 7, "the declaration was read");
}

/// An ORM declares its caches lazily, often inside a READ ONLY transaction, where
/// `cache_create` (a row in the declarations table) cannot run: `cache_declare`
/// applies there at once, for every session, and survives the transaction's end; a
/// declaration already in effect writes nothing, in a read-write transaction too.
#[test]
fn a_read_only_transaction_can_declare_a_cache() {
    const DB: &str = "pg_cache_declare_ro";
    fresh_database(DB);
    let (mut a, mut b) = (connect(DB), connect(DB));
    let declare = |c: &mut Client, sql: &str| -> bool { c.query_one(sql, &[]).unwrap().get(0) };
    a.batch_execute("BEGIN READ ONLY").unwrap();
    assert_eq!(
        common::sqlstate(&mut a, "SAVEPOINT s; SELECT cache_create('lazy', size_limit => 5)"),
        "25006",
        "cache_create writes a row"
    );
    a.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    assert!(declare(&mut a, "SELECT cache_declare('lazy', size_limit => 5, duration => '1 hour')"));
    assert_eq!(stat(&mut b, "lazy", "size_limit"), 5, "in effect at once, for everyone");
    assert!(!declare(&mut a, "SELECT cache_declare('lazy', size_limit => 5, duration => '1 hour')"), "already in effect");
    a.batch_execute("ROLLBACK").unwrap();
    assert_eq!(stat(&mut b, "lazy", "size_limit"), 5, "outside the transaction: kept at its rollback");
    b.batch_execute("SELECT cache_set('lazy', 'k', '1')").unwrap();
    let expires: bool = b.query_one("SELECT cache_expires_at('lazy', 'k') < now() + '2 hours'", &[]).unwrap().get(0);
    assert!(expires, "the declared duration applies");

    // Another role may not change what the first declarer declared, read-only or not.
    ensure_roles(&mut b, &["declare_stranger"]);
    a.batch_execute("BEGIN READ ONLY").unwrap();
    a.batch_execute("SET LOCAL ROLE declare_stranger").unwrap();
    assert_eq!(common::sqlstate(&mut a, "SELECT cache_declare('lazy', size_limit => 6)"), "42501");
    a.batch_execute("ROLLBACK").unwrap();

    // In a read-write transaction it is cache_create's transactional declaration; the
    // same declaration again writes no row.
    a.batch_execute("BEGIN").unwrap();
    assert!(declare(&mut a, "SELECT cache_declare('lazy', size_limit => 7)"));
    assert_eq!(stat(&mut b, "lazy", "size_limit"), 5, "not before commit");
    a.batch_execute("COMMIT").unwrap();
    assert_eq!(stat(&mut b, "lazy", "size_limit"), 7);
    let row_version = |c: &mut Client| -> String {
        c.query_one("SELECT xmin::text FROM pg_cache_declarations WHERE cache = 'lazy'", &[]).unwrap().get(0)
    };
    let before = row_version(&mut b);
    assert!(!declare(&mut a, "SELECT cache_declare('lazy', size_limit => 7)"));
    assert_eq!(row_version(&mut b), before, "an unchanged declaration writes nothing");
    // What is in effect counts too: after an at-once change, the row's settings
    // asked for again in a read-write transaction are written and take effect.
    a.batch_execute("BEGIN READ ONLY").unwrap();
    assert!(declare(&mut a, "SELECT cache_declare('lazy', size_limit => 9)"));
    a.batch_execute("COMMIT").unwrap();
    assert_eq!(stat(&mut b, "lazy", "size_limit"), 9);
    assert!(declare(&mut a, "SELECT cache_declare('lazy', size_limit => 7)"));
    assert_eq!(stat(&mut b, "lazy", "size_limit"), 7);
    a.batch_execute("SELECT cache_drop(current_database())").unwrap();
}

/// pg_cache hooks ProcessUtility (to see ROLLBACK): the errors of every other
/// utility statement still reach the client whole, with their position and their
/// constraint name, as ORMs and psql use them.
#[test]
fn utility_errors_keep_their_position_and_constraint() {
    fresh_database("pg_cache_utility_errors");
    let mut c = connect("pg_cache_utility_errors");
    let e = c.batch_execute("CREATE TABLE t (a nosuchtype)").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42704");
    assert!(db.position().is_some(), "{db:?}");
    c.batch_execute("CREATE TABLE u (a int CONSTRAINT u_a_key UNIQUE); INSERT INTO u VALUES (1)").unwrap();
    let e = c.batch_execute("DO $$ BEGIN INSERT INTO u VALUES (1); END $$").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!((db.code().code(), db.constraint()), ("23505", Some("u_a_key")), "{db:?}");
}

/// The first use of cache names (declared or not) inside a parallel plan.
#[test]
fn a_parallel_plan_may_be_the_first_to_use_a_cache_name() {
    fresh_database("pg_cache_parallel_first");
    let mut admin = connect("pg_cache_parallel_first");
    admin
        .batch_execute(
            "CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 5000) g; ANALYZE items;
             SELECT cache_create('par_declared', size_limit => 9);
             SELECT cache_drop(current_database());",
        )
        .unwrap();
    let mut c = connect("pg_cache_parallel_first");
    c.batch_execute(
        "SET force_parallel_mode = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
         SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2;",
    )
    .unwrap();
    let query = "SELECT count(v) FROM (SELECT cache_get(CASE WHEN id % 2 = 0 THEN 'par_declared'
                 ELSE 'par_new_' || (id % 5) END, id::text) AS v FROM items WHERE id > 0) s";
    let plan: Vec<String> =
        c.query(&format!("EXPLAIN (COSTS OFF) {query}"), &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(plan.iter().any(|l| l.contains("Gather")), "a parallel plan: {plan:?}");
    assert_eq!(c.query_one(query, &[]).unwrap().get::<_, i64>(0), 0);
    assert_eq!(stat(&mut c, "par_declared", "size_limit"), 9);
}

/// Internal SQL runs the same whatever the caller's search_path holds: hostile
/// functions and operators placed before pg_catalog are never called.
#[test]
fn no_search_path_can_substitute_internal_functions() {
    fresh_database("pg_cache_hijack");
    let mut admin = connect("pg_cache_hijack");
    ensure_roles(&mut admin, &["cache_attacker"]);
    admin
        .batch_execute(
            "CREATE SCHEMA hostile AUTHORIZATION cache_attacker;
             CREATE TABLE hostile.called (who text, what text);
             ALTER TABLE hostile.called OWNER TO cache_attacker;
             GRANT ALL ON hostile.called TO PUBLIC;
             SET ROLE cache_attacker;
             CREATE FUNCTION hostile.quote_ident(name) RETURNS text LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO hostile.called VALUES (current_user, 'quote_ident'); RETURN 'x'; END $$;
             CREATE FUNCTION hostile.array_to_string(text[], text) RETURNS text LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO hostile.called VALUES (current_user, 'array_to_string'); RETURN ''; END $$;
             CREATE FUNCTION hostile.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO hostile.called VALUES (current_user, 'now'); RETURN pg_catalog.now(); END $$;
             CREATE FUNCTION hostile.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO hostile.called VALUES (current_user, '='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
             CREATE OPERATOR hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.texteq);
             RESET ROLE;",
        )
        .unwrap();
    let mut victim = connect("pg_cache_hijack");
    victim
        .batch_execute(
            "SET search_path = hostile, pg_catalog, public;
             SELECT cache_create('hijack_declared', size_limit => 3, context_ignored_keys => '{app.lang}');
             SELECT cache_get('hijack_new', 'k');
             SELECT cache_set('hijack_declared', 'k', '1');
             SELECT cache_drop(current_database());
             SELECT cache_get('hijack_declared', 'k');
             SELECT cache_set('hijack_declared', 'k', '2'), cache_delete('hijack_new', 'k');
             SELECT cache_clear('hijack_new');
             SELECT * FROM cache_stats();
             RESET search_path;",
        )
        .unwrap();
    let called: i64 = admin.query_one("SELECT count(*) FROM hostile.called", &[]).unwrap().get(0);
    assert_eq!(called, 0, "a hostile function ran inside pg_cache");
    assert_eq!(stat(&mut admin, "hijack_declared", "size_limit"), 3);
}

/// DROP EXTENSION takes the database's caches with it: a new CREATE EXTENSION starts
/// with no entries and no declarations, and a rolled-back DROP changes nothing.
#[test]
fn drop_extension_forgets_the_databases_caches() {
    fresh_database("pg_cache_reinstall");
    let mut c = connect("pg_cache_reinstall");
    c.batch_execute("SELECT cache_create('kept', size_limit => 5); SELECT cache_set('kept', 'k', '1')").unwrap();
    c.batch_execute("BEGIN; DROP EXTENSION pg_cache; ROLLBACK").unwrap();
    assert_eq!(get(&mut c, "kept", "k").as_deref(), Some("1"), "a rolled-back drop changes nothing");
    c.batch_execute("DROP EXTENSION pg_cache; CREATE EXTENSION pg_cache").unwrap();
    assert_eq!(get(&mut c, "kept", "k"), None);
    // (A read of a name with no slot and no declaration takes no slot: write one.)
    c.batch_execute("SELECT cache_set('kept', 'other', '1')").unwrap();
    assert_eq!(stat(&mut c, "kept", "size_limit"), 1024, "the old declaration is gone too");
}

/// Switching a cache's context and back must not bring back an entry deleted meanwhile.
#[test]
fn redeclaring_the_context_does_not_resurrect_deleted_entries() {
    fresh_database("pg_cache_recontext");
    let mut c = connect("pg_cache_recontext");
    c.batch_execute("SELECT cache_create('ctx', context => false); SELECT cache_set('ctx', 'k', '\"shared\"')").unwrap();
    c.batch_execute("SELECT cache_create('ctx', context => true)").unwrap();
    assert_eq!(get(&mut c, "ctx", "k"), None, "a new key encoding starts empty");
    c.batch_execute("SELECT cache_delete('ctx', 'k'); SELECT cache_create('ctx', context => false)").unwrap();
    assert_eq!(get(&mut c, "ctx", "k"), None, "the deleted entry stays deleted");
}

/// An ERROR raised inside pg_cache's SPI call reaches the client without a Rust
/// backtrace, though the server runs with RUST_BACKTRACE=1 (scripts/test sets it).
#[test]
fn errors_carry_no_backtrace() {
    let mut c = connect("postgres");
    c.batch_execute("BEGIN READ ONLY").unwrap();
    let e = c.batch_execute("SELECT cache_create('read_only_declare')").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "25006", "{db:?}");
    assert!(db.detail().is_none_or(|d| !d.contains("pgrx") && d.lines().count() < 3), "{:?}", db.detail());
    c.batch_execute("ROLLBACK").unwrap();
}

/// A backend's private memory (`RssAnon` of its process) in kB. The tests run on
/// the server's machine, as root.
fn private_memory_kb(pid: i32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the backend's /proc status");
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).expect("RssAnon");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A transaction of 300,000 writes (about 60 MB of write set and commit plan)
/// leaves its backend as big as it was: glibc kept such memory (199 MB resident
/// after a 1M-write commit) until the backend gives it back at the transaction's end.
#[test]
fn a_backend_gives_back_the_memory_of_a_big_transaction() {
    let mut c = connect("postgres");
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    c.batch_execute("SELECT count(cache_set('rss_probe', g::text, '1')) FROM generate_series(1, 1000) g").unwrap();
    let before = private_memory_kb(pid);
    for end in ["COMMIT", "ROLLBACK"] {
        c.batch_execute(&format!(
            "BEGIN; SELECT count(cache_set('rss_probe', g::text, to_jsonb(repeat('x', 100)))) FROM generate_series(1, 300000) g; {end}"
        ))
        .unwrap();
        let after = private_memory_kb(pid);
        assert!(after < before + 16 * 1024, "after {end}: {before} kB before, {after} kB after");
    }
}

/// `cache_keys` lists the committed live keys of one cache without their context:
/// not another cache's, not deleted ones or those under a deleted prefix, not a
/// transaction's uncommitted writes; by `LIKE` pattern and limit; admins only.
#[test]
fn cache_keys_lists_the_committed_live_keys_of_a_cache() {
    fresh_database("pg_cache_keys");
    let mut c = connect("pg_cache_keys");
    ensure_roles(&mut c, &["cache_keys_nobody"]);
    c.batch_execute(
        "SELECT cache_create('k', context => false);
         SELECT cache_put('k', 'user:' || g, '1') FROM generate_series(1, 30) g;
         SELECT cache_put('k', 'other', '1'), cache_put('k2', 'user:99', '1');
         SELECT cache_set('ctx', 'mine', '1');
         SELECT cache_delete('k', 'user:1');
         SELECT cache_delete_prefix('k', 'user:2');",
    )
    .unwrap();
    let keys = |c: &mut Client, sql: &str| -> Vec<String> {
        let mut k: Vec<String> = c.query(sql, &[]).unwrap().iter().map(|r| r.get(0)).collect();
        k.sort();
        k
    };
    let mut want: Vec<String> = (1..=30).map(|g| format!("user:{g}")).filter(|k| k != "user:1" && !k.starts_with("user:2")).collect();
    want.push("other".into());
    want.sort();
    let listed = keys(&mut c, "SELECT cache_keys('k')");
    if listed != want {
        // Seen once in a full run (one key listed of 19): say what the cache held.
        let row = c.query_one("SELECT entries, sets, evictions, last_clear::text FROM cache_stats() WHERE cache = 'k'", &[]).unwrap();
        let again = keys(&mut c, "SELECT cache_keys('k')");
        panic!(
            "listed {listed:?}; entries {}, sets {}, evictions {}, last clear {:?}; listed again {again:?}",
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, Option<String>>(3)
        );
    }
    let mut users: Vec<String> = want.iter().filter(|k| k.starts_with("user:")).cloned().collect();
    users.sort();
    assert_eq!(keys(&mut c, "SELECT cache_keys('k', 'user:%')"), users);
    assert_eq!(keys(&mut c, "SELECT cache_keys('k', 'user:_')"), ["user:3", "user:4", "user:5", "user:6", "user:7", "user:8", "user:9"]);
    assert_eq!(keys(&mut c, "SELECT cache_keys('k', \"limit\" => 5)").len(), 5);
    assert!(keys(&mut c, "SELECT cache_keys('k', \"limit\" => 0)").is_empty());
    assert!(keys(&mut c, "SELECT cache_keys('never_used')").is_empty());
    // Without the context it is stored under.
    assert_eq!(keys(&mut c, "SELECT cache_keys('ctx')"), ["mine"]);
    // A transaction's own writes are not committed keys.
    c.batch_execute("BEGIN; SELECT cache_put('k', 'pending', '1')").unwrap();
    assert!(!keys(&mut c, "SELECT cache_keys('k')").contains(&"pending".to_string()));
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(sqlstate(&mut c, "SELECT cache_keys('k', \"limit\" => -1)"), "22023");
    assert_eq!(sqlstate(&mut c, "SELECT cache_keys('k', \"limit\" => NULL)"), "22004");
    assert_eq!(sqlstate(&mut c, "SET ROLE cache_keys_nobody; SELECT cache_keys('k')"), "42501");
}

/// A commit of many more sets than its cache keeps does not take the memory of the
/// other caches first: the sets its cache would evict at once commit as deletes.
/// (A 300,000-key commit to a cache of 1,024 entries evicted every entry of a
/// concurrent test's cache: `cache_keys_lists_the_committed_live_keys_of_a_cache`
/// failed now and then.)
#[test]
fn a_big_commit_to_a_small_cache_leaves_other_caches_alone() {
    fresh_database("pg_cache_big_small");
    let mut c = connect("pg_cache_big_small");
    c.batch_execute(
        "SELECT cache_create('bystander', context => false);
         SELECT cache_create('small', size_limit => 100, context => false);
         SELECT cache_put('bystander', g::text, '1') FROM generate_series(1, 1000) g;
         SELECT cache_put('small', 'old', '1');",
    )
    .unwrap();
    // About 100 MB of entries, three times the region of the test cluster.
    c.batch_execute(
        "SELECT count(cache_set('small', g::text, to_jsonb(repeat('x', 300)))) FROM generate_series(1, 300000) g",
    )
    .unwrap();
    let row = c.query_one("SELECT entries, evictions FROM cache_stats() WHERE cache = 'bystander'", &[]).unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1000, 0), "(entries, evictions) of the other cache");
    // The small cache keeps the commit's last writes, as if it had evicted the others.
    let kept: Vec<Option<String>> = c
        .query("SELECT cache_get('small', k)::text FROM unnest(ARRAY['old', '1', '299900', '299901', '300000']) k", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let x300 = Some(format!("\"{}\"", "x".repeat(300)));
    assert_eq!(kept, [None, None, None, x300.clone(), x300]);
    assert_eq!(c.query_one("SELECT entries FROM cache_stats() WHERE cache = 'small'", &[]).unwrap().get::<_, i64>(0), 100);
}
