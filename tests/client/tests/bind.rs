//! Caches bound to tables (`cache_bind`): row changes invalidate the keys of the old
//! and the new row at commit, TRUNCATE clears, bindings survive pg_dump, and a
//! read-through cache of a bound table never serves a row version older than its
//! reader could see, under concurrent writers, at READ COMMITTED and REPEATABLE READ.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use postgres::Client;

mod common;
use common::{connect, ensure_roles, fresh_database, get, sqlstate};

fn setup(db: &str) -> Client {
    fresh_database(db);
    let mut c = connect(db);
    c.batch_execute(
        "CREATE TABLE product (id int PRIMARY KEY, lang text NOT NULL, price int);
         INSERT INTO product VALUES (1, 'en', 10), (2, 'en', 20), (3, 'fr', 30);
         SELECT cache_create('price', context => false);
         SELECT cache_bind('price', 'product', key_columns => ARRAY['id']);
         CREATE FUNCTION product_key(p product) RETURNS text LANGUAGE sql AS $$ SELECT 'n' || p.id * 100 $$;",
    )
    .unwrap();
    c
}

fn fill(c: &mut Client, cache: &str, keys: &[&str]) {
    for k in keys {
        c.execute("SELECT cache_put($1, $2, '0')", &[&cache, k]).unwrap();
    }
}

fn cached(c: &mut Client, cache: &str, keys: &[&str]) -> Vec<bool> {
    keys.iter().map(|k| get(c, cache, k).is_some()).collect()
}

#[test]
fn row_changes_invalidate_the_keys_of_the_old_and_the_new_row() {
    let mut c = setup("pg_cache_bind_rows");
    let keys = ["1", "2", "3", "4", "10"];
    fill(&mut c, "price", &keys);
    c.batch_execute("UPDATE product SET price = 11 WHERE id = 1").unwrap();
    assert_eq!(cached(&mut c, "price", &keys), [false, true, true, true, true], "the updated row's key");
    c.batch_execute("INSERT INTO product VALUES (4, 'en', 40)").unwrap();
    assert_eq!(cached(&mut c, "price", &keys), [false, true, true, false, true], "the inserted row's key");
    fill(&mut c, "price", &keys);
    c.batch_execute("UPDATE product SET id = 10 WHERE id = 1").unwrap();
    assert_eq!(cached(&mut c, "price", &keys), [false, true, true, true, false], "the old and the new key");
    c.batch_execute("DELETE FROM product WHERE id = 2").unwrap();
    assert_eq!(cached(&mut c, "price", &keys), [false, false, true, true, false], "the deleted row's key");
    // Rolled back with the change, seen by the changing transaction at once.
    c.batch_execute("BEGIN; UPDATE product SET price = 31 WHERE id = 3").unwrap();
    assert_eq!(get(&mut c, "price", "3"), None, "the transaction sees its own invalidation");
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(get(&mut c, "price", "3").as_deref(), Some("0"), "a rolled-back change invalidates nothing");
    // A statement that changes no row invalidates nothing.
    c.batch_execute("UPDATE product SET price = 0 WHERE id = 99").unwrap();
    assert_eq!(get(&mut c, "price", "3").as_deref(), Some("0"));
    // TRUNCATE clears the cache.
    c.batch_execute("TRUNCATE product").unwrap();
    assert_eq!(cached(&mut c, "price", &keys), [false; 5]);
    assert!(c.query_one("SELECT cache_last_clear('price') IS NOT NULL", &[]).unwrap().get::<_, bool>(0));
    // Unbound: the triggers (renamed or not) and the row are gone, and changes
    // invalidate nothing.
    let row_trigger: String = c
        .query_one("SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'product'::regclass AND tgtype & 1 = 1", &[])
        .unwrap()
        .get(0);
    c.batch_execute(&format!("ALTER TRIGGER {row_trigger} ON product RENAME TO renamed_by_hand")).unwrap();
    assert!(c.query_one("SELECT cache_unbind('price', 'product')", &[]).unwrap().get::<_, bool>(0));
    assert!(!c.query_one("SELECT cache_unbind('price', 'product')", &[]).unwrap().get::<_, bool>(0));
    fill(&mut c, "price", &["5"]);
    c.batch_execute("INSERT INTO product VALUES (5, 'en', 50)").unwrap();
    assert_eq!(get(&mut c, "price", "5").as_deref(), Some("0"));
    let left: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'product'::regclass) + (SELECT count(*) FROM pg_cache_bindings)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[test]
fn keys_can_be_several_columns_with_a_prefix_or_a_function_of_the_row() {
    let mut c = setup("pg_cache_bind_keys");
    c.batch_execute(
        "SELECT cache_create('label', context => false), cache_create('tagged', context => false);
         SELECT cache_bind('label', 'product', key_columns => ARRAY['id', 'lang'], key_prefix => 'p:');
         SELECT cache_bind('tagged', 'product', key_function => 'product_key(product)'::regprocedure);",
    )
    .unwrap();
    fill(&mut c, "label", &["p:1:en", "p:1:fr", "p:3:fr"]);
    fill(&mut c, "tagged", &["n100", "n300"]);
    c.batch_execute("UPDATE product SET lang = 'fr' WHERE id = 1").unwrap();
    assert_eq!(cached(&mut c, "label", &["p:1:en", "p:1:fr", "p:3:fr"]), [false, false, true]);
    assert_eq!(cached(&mut c, "tagged", &["n100", "n300"]), [false, true]);
    // The first binding still works beside the others.
    fill(&mut c, "price", &["1"]);
    c.batch_execute("UPDATE product SET price = 1 WHERE id = 1").unwrap();
    assert_eq!(get(&mut c, "price", "1"), None);
}

#[test]
fn bad_bindings_are_refused_with_their_sqlstate() {
    let mut c = setup("pg_cache_bind_errors");
    ensure_roles(&mut c, &["cache_bind_stranger"]);
    c.batch_execute(
        "CREATE VIEW product_view AS SELECT * FROM product;
         CREATE TABLE parted (id int) PARTITION BY RANGE (id);
         CREATE TABLE parent (id int); CREATE TABLE child () INHERITS (parent);
         CREATE FUNCTION many_keys(p product) RETURNS SETOF text LANGUAGE sql AS $$ SELECT p.id::text $$;
         CREATE FUNCTION wrong_key(p int) RETURNS text LANGUAGE sql AS $$ SELECT p::text $$;
         SELECT cache_create('other', context => false);
         GRANT SELECT, INSERT, UPDATE ON product TO cache_bind_stranger;",
    )
    .unwrap();
    let cases = [
        ("SELECT cache_bind('ctx', 'product', ARRAY['id'])", "55000"),
        ("SELECT cache_bind('other', 'product')", "22023"),
        ("SELECT cache_bind('other', 'product', ARRAY['id'], 'wrong_key(int)'::regprocedure)", "22023"),
        ("SELECT cache_bind('other', 'product', ARRAY['nope'])", "42703"),
        ("SELECT cache_bind('other', 'product', ARRAY['id', NULL])", "22004"),
        ("SELECT cache_bind('other', 'product', ARRAY[]::text[])", "22023"),
        ("SELECT cache_bind('other', 'product', key_function => 'wrong_key(int)'::regprocedure)", "42804"),
        ("SELECT cache_bind('other', 'product_view', ARRAY['id'])", "42809"),
        ("SELECT cache_bind('other', 'parted', ARRAY['id'])", "42809"),
        ("SELECT cache_bind('other', 'parent', ARRAY['id'])", "42809"),
        ("SELECT cache_bind('other', 'product', key_function => 'many_keys(product)'::regprocedure)", "42804"),
        ("SELECT cache_bind('other', NULL, ARRAY['id'])", "22004"),
        ("SELECT cache_bind('price', 'product', ARRAY['id'])", "42710"),
        // PostgreSQL's own check: no TRIGGER privilege on the table.
        ("SET ROLE cache_bind_stranger; SELECT cache_bind('other', 'product', ARRAY['id'])", "42501"),
        // A trigger made by hand to invalidate a cache that is not bound to its table.
        (
            "CREATE TABLE mine (id int); CREATE TRIGGER t AFTER INSERT ON mine FOR EACH ROW
               EXECUTE FUNCTION cache_bound_row_changed('other', '', 'columns', 'id'); INSERT INTO mine VALUES (1)",
            "42501",
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(sqlstate(&mut c, sql), want, "{sql}");
        c.batch_execute("RESET ROLE").unwrap();
    }
    // A trigger made by hand on a bound table, naming a function to call: the
    // binding's row says how rows are keyed, the trigger's arguments are not read.
    let pid_fn: i64 = c.query_one("SELECT 'pg_backend_pid()'::regprocedure::oid::int8", &[]).unwrap().get(0);
    c.batch_execute(&format!(
        "CREATE TRIGGER forged AFTER INSERT ON product FOR EACH ROW
           EXECUTE FUNCTION cache_bound_row_changed('price', '', 'function', '{pid_fn}');"
    ))
    .unwrap();
    fill(&mut c, "price", &["8"]);
    c.batch_execute("INSERT INTO product VALUES (8, 'en', 80); DROP TRIGGER forged ON product").unwrap();
    assert_eq!(get(&mut c, "price", "8"), None, "keyed by the binding's columns");
    // Nothing was left behind by the refusals.
    let bindings: i64 = c.query_one("SELECT count(*) FROM pg_cache_bindings", &[]).unwrap().get(0);
    assert_eq!(bindings, 1);
    // A writer of the table without privileges on the cache's declaration still
    // invalidates through the binding: the trigger acts for the binder.
    c.batch_execute("SELECT cache_create('price', context => false, writers => ARRAY['postgres'])").unwrap();
    fill(&mut c, "price", &["2"]);
    c.batch_execute("SET ROLE cache_bind_stranger; UPDATE product SET price = 21 WHERE id = 2; RESET ROLE").unwrap();
    assert_eq!(get(&mut c, "price", "2"), None);
}

#[test]
fn a_binding_survives_pg_dump_and_restore() {
    let mut c = setup("pg_cache_bind_dump");
    // A key function too: the restored trigger must find it by name, not by OID.
    c.batch_execute(
        "SELECT cache_create('tagged', context => false);
         SELECT cache_bind('tagged', 'product', key_function => 'product_key(product)'::regprocedure);",
    )
    .unwrap();
    let mut admin = connect("postgres");
    admin.batch_execute("DROP DATABASE IF EXISTS pg_cache_bind_restored WITH (FORCE)").unwrap();
    admin.batch_execute("CREATE DATABASE pg_cache_bind_restored").unwrap();
    let bindir: String = c.query_one("SELECT setting FROM pg_config WHERE name = 'BINDIR'", &[]).unwrap().get(0);
    let port = common::port("PG_CACHE_TEST_PORT").to_string();
    let dump = std::process::Command::new(format!("{bindir}/pg_dump"))
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-Fc", "-d", "pg_cache_bind_dump"])
        .output()
        .expect("pg_dump runs");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let mut restore = std::process::Command::new(format!("{bindir}/pg_restore"))
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "--exit-on-error", "-d", "pg_cache_bind_restored"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pg_restore runs");
    std::io::Write::write_all(&mut restore.stdin.take().unwrap(), &dump.stdout).unwrap();
    let restored_out = restore.wait_with_output().unwrap();
    assert!(restored_out.status.success(), "{}", String::from_utf8_lossy(&restored_out.stderr));
    let mut restored = connect("pg_cache_bind_restored");
    let row: (String, Vec<String>) = restored
        .query_one("SELECT relid::text, key_columns FROM pg_cache_bindings WHERE cache = 'price'", &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(row, ("product".to_string(), vec!["id".to_string()]));
    restored.batch_execute("SELECT cache_create('price', context => false), cache_create('tagged', context => false)").unwrap();
    fill(&mut restored, "price", &["1"]);
    fill(&mut restored, "tagged", &["n100"]);
    restored.batch_execute("UPDATE product SET price = 12 WHERE id = 1").unwrap();
    assert_eq!(get(&mut restored, "price", "1"), None, "the restored trigger still invalidates");
    assert_eq!(get(&mut restored, "tagged", "n100"), None, "and finds the key function by name");
    drop(c);
}

/// Writers update rows and read them back through the cache; readers fill through
/// the cache at `isolation`. No hit returns a version older than one whose COMMIT
/// had returned before the read began (rule 5), and at the end every cached value
/// equals its row.
fn read_through_stays_exact(db: &str, isolation: &str) {
    const ITEMS: i32 = 5;
    const ROUNDS: usize = 200;
    fresh_database(db);
    let mut setup = connect(db);
    setup
        .batch_execute(&format!(
            "CREATE TABLE item (id int PRIMARY KEY, version int NOT NULL);
             INSERT INTO item SELECT g, 0 FROM generate_series(1, {ITEMS}) g;
             SELECT cache_create('item', context => false);
             SELECT cache_bind('item', 'item', ARRAY['id']);"
        ))
        .unwrap();
    fn read_through(c: &mut Client, id: i32) -> (i64, bool) {
        let row = c.query_one("SELECT (cache_get('item', $1::int::text) #>> '{}')::int8", &[&id]).unwrap();
        if let Some(v) = row.get::<_, Option<i64>>(0) {
            return (v, true);
        }
        let v: i32 = c.query_one("SELECT version FROM item WHERE id = $1", &[&id]).unwrap().get(0);
        c.execute("SELECT cache_set('item', $1::int::text, to_jsonb($2::int))", &[&id, &v]).unwrap();
        (v as i64, false)
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The highest version of each item whose COMMIT has returned.
    let committed: Arc<Vec<AtomicI64>> = Arc::new((0..=ITEMS).map(|_| AtomicI64::new(0)).collect());
    let mut threads = Vec::new();
    for w in 0..2 {
        let (db, committed) = (db.to_string(), committed.clone());
        threads.push(std::thread::spawn(move || {
            let mut c = connect(&db);
            for round in 0..ROUNDS {
                let id = ((w * 3 + round * 7) % ITEMS as usize) as i32 + 1;
                c.batch_execute("BEGIN").unwrap();
                let v: i32 =
                    c.query_one("UPDATE item SET version = version + 1 WHERE id = $1 RETURNING version", &[&id]).unwrap().get(0);
                let (seen, _) = read_through(&mut c, id);
                assert_eq!(seen, v as i64, "a writer reads its own row back");
                c.batch_execute("COMMIT").unwrap();
                committed[id as usize].fetch_max(v as i64, Ordering::SeqCst);
            }
        }));
    }
    let mut readers = Vec::new();
    for r in 0..3 {
        let (db, stop, isolation, committed) = (db.to_string(), stop.clone(), isolation.to_string(), committed.clone());
        readers.push(std::thread::spawn(move || {
            let mut c = connect(&db);
            let mut i = r;
            let (mut hits, mut misses) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let id = (i % ITEMS) + 1;
                i += 1;
                let low = committed[id as usize].load(Ordering::SeqCst);
                c.batch_execute(&format!("BEGIN ISOLATION LEVEL {isolation}")).unwrap();
                let (got, hit) = read_through(&mut c, id);
                assert!(got >= low, "{isolation}: read version {got} of item {id} (hit: {hit}), older than committed {low}");
                if hit { hits += 1 } else { misses += 1 }
                c.batch_execute("COMMIT").unwrap();
            }
            (hits, misses)
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (mut hits, mut misses) = (0, 0);
    for r in readers {
        let (h, m) = r.join().unwrap();
        hits += h;
        misses += m;
    }
    assert!(hits > 0 && misses > 0, "the race was exercised: {hits} hits, {misses} misses");
    for id in 1..=ITEMS {
        let row: i32 = setup.query_one("SELECT version FROM item WHERE id = $1", &[&id]).unwrap().get(0);
        let cached = get(&mut setup, "item", &id.to_string());
        assert!(cached.is_none() || cached == Some(row.to_string()), "item {id}: cached {cached:?}, row {row}");
    }
}

#[test]
fn a_read_through_cache_of_a_bound_table_stays_exact_at_read_committed() {
    read_through_stays_exact("pg_cache_bind_rc", "READ COMMITTED");
}

#[test]
fn a_read_through_cache_of_a_bound_table_stays_exact_at_repeatable_read() {
    read_through_stays_exact("pg_cache_bind_rr", "REPEATABLE READ");
}

/// A transaction whose snapshot predates a rebinding keys rows as the binding now
/// says: which triggers fire follows the table's current definition, and so does
/// the binding the trigger reads.
#[test]
fn a_change_keys_rows_by_the_current_binding_whatever_its_snapshot() {
    let mut c = setup("pg_cache_bind_snapshot");
    let mut old = connect("pg_cache_bind_snapshot");
    old.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class").unwrap();
    c.batch_execute("SELECT cache_unbind('price', 'product')").unwrap();
    c.batch_execute("SELECT cache_bind('price', 'product', ARRAY['id'], key_prefix => 'p:')").unwrap();
    fill(&mut c, "price", &["1", "p:1"]);
    old.batch_execute("UPDATE product SET price = 5 WHERE id = 1; COMMIT").unwrap();
    assert_eq!(get(&mut c, "price", "p:1"), None, "keyed by the binding committed after the snapshot");
    assert_eq!(get(&mut c, "price", "1").as_deref(), Some("0"));
}
