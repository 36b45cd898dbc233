//! An upgrade from the previous release: a database created at 0.2.0 (its install
//! script is kept in sql/), updated with ALTER EXTENSION, must match a fresh install
//! of the current version: every function with its signature, defaults, volatility
//! and C symbol, and the declarations table. A Rust change to a SQL signature
//! without an upgrade script fails here.

use postgres::Client;

mod common;
use common::connect;

fn recreate(admin: &mut Client, db: &str) -> Client {
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    connect(db)
}

/// What a database's pg_cache consists of, one line per object.
fn shape(c: &mut Client) -> Vec<String> {
    let mut lines: Vec<String> = c
        .query(
            "WITH t AS (SELECT c.oid, c.relname FROM pg_class c
                          JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
                          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_cache'
                         WHERE c.relkind = 'r')
             SELECT pg_get_functiondef(p.oid) FROM pg_proc p
               JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
               JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_cache'
             UNION ALL
             SELECT format('column %s.%s %s not null %s default %s', t.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                           a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid))
               FROM t JOIN pg_attribute a ON a.attrelid = t.oid
               LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
              WHERE a.attnum > 0 AND NOT a.attisdropped
             UNION ALL
             SELECT format('constraint %s %s', t.relname, pg_get_constraintdef(c.oid)) FROM t JOIN pg_constraint c ON c.conrelid = t.oid
             UNION ALL
             SELECT format('acl %s %s', relname, relacl) FROM pg_class WHERE oid IN (SELECT oid FROM t)
             UNION ALL
             SELECT format('version %s, config %s', extversion, extconfig::regclass[]) FROM pg_extension
              WHERE extname = 'pg_cache'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    lines.sort();
    lines
}

#[test]
fn an_upgraded_database_matches_a_fresh_install() {
    let mut admin = connect("postgres");
    let mut fresh = recreate(&mut admin, "pg_cache_upgrade_fresh");
    fresh.batch_execute("CREATE EXTENSION pg_cache").unwrap();
    let mut old = recreate(&mut admin, "pg_cache_upgrade_old");
    old.batch_execute("CREATE EXTENSION pg_cache VERSION '0.2.0'").unwrap();
    old.batch_execute("INSERT INTO pg_cache_declarations (cache, size_limit) VALUES ('declared_in_020', 5)").unwrap();
    // Until the update, 0.2.0's cache_create reaches this library's stand-in for
    // its C symbol, which says what to do.
    let e = old.batch_execute("SELECT cache_create('x')").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "55000", "{db:?}");
    assert!(db.hint().is_some_and(|h| h.contains("ALTER EXTENSION pg_cache UPDATE")), "{db:?}");
    for outdated in ["SELECT * FROM cache_stats()", "SELECT * FROM cache_memory()"] {
        let e = old.batch_execute(outdated).unwrap_err();
        assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("55000"), "{outdated}: {e:?}");
    }
    // 0.2.0's cache_set keeps working through its own C symbol until the update.
    old.batch_execute("SELECT cache_set('before_update', 'k', '\"old sql\"', '1 hour')").unwrap();
    let got: Option<String> = old.query_one("SELECT cache_get('before_update', 'k')::text", &[]).unwrap().get(0);
    assert_eq!(got.as_deref(), Some("\"old sql\""));
    old.batch_execute("ALTER EXTENSION pg_cache UPDATE").unwrap();
    let (fresh_shape, old_shape) = (shape(&mut fresh), shape(&mut old));
    let only_fresh: Vec<_> = fresh_shape.iter().filter(|l| !old_shape.contains(l)).collect();
    let only_old: Vec<_> = old_shape.iter().filter(|l| !fresh_shape.contains(l)).collect();
    assert!(only_fresh.is_empty() && only_old.is_empty(), "fresh only: {only_fresh:#?}\nupgraded only: {only_old:#?}");
    // The declaration made at 0.2.0 belongs to the extension's owner and still works.
    let owner: String =
        old.query_one("SELECT owner::text FROM pg_cache_declarations WHERE cache = 'declared_in_020'", &[]).unwrap().get(0);
    assert_eq!(owner, "postgres");
    old.batch_execute("SELECT cache_create('declared_in_020', size_limit => 6)").unwrap();
    let limit: i64 = old.query_one("SELECT size_limit FROM cache_stats() WHERE cache = 'declared_in_020'", &[]).unwrap().get(0);
    assert_eq!(limit, 6);
    // Frees the entry written before the update now, not when the worker gets to
    // the dropped database: other tests compare the server's memory over time.
    old.batch_execute("SELECT cache_drop(current_database())").unwrap();
    drop((fresh, old));
    for db in ["pg_cache_upgrade_fresh", "pg_cache_upgrade_old"] {
        admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    }
}
