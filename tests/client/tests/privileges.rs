//! Who may do what to a declared cache, over real connections and committed
//! transactions: the owner, its members, listed readers and writers, superusers and
//! pgcache_admin; undeclared caches stay open to everyone.

use postgres::Client;

mod common;
use common::{connect, ensure_roles, fresh_database, sqlstate};

fn as_role(db: &str, role: &str) -> Client {
    let mut c = connect(db);
    c.batch_execute(&format!("SET ROLE {role}")).unwrap();
    c
}

fn value(c: &mut Client, cache: &str, key: &str) -> Option<String> {
    c.query_one("SELECT cache_get($1, $2)::text", &[&cache, &key]).unwrap().get(0)
}

#[test]
fn declared_caches_have_owners_readers_and_writers() {
    fresh_database("pg_cache_privileges");
    let mut admin = connect("pg_cache_privileges");
    ensure_roles(&mut admin, &["cache_alice", "cache_bob", "cache_carol", "cache_auditor", "cache_operator"]);
    admin.batch_execute("GRANT cache_alice TO cache_carol; GRANT pgcache_admin TO cache_operator;").unwrap();
    let db = "pg_cache_privileges";
    let mut alice = as_role(db, "cache_alice");
    alice
        .batch_execute(
            "SELECT cache_create('private', context => false, readers => '{cache_auditor}', writers => '{}');
             SELECT cache_create('shared_open', context => false);
             SELECT cache_set('private', 'k', '\"alice\"'), cache_set('shared_open', 'k', '\"alice\"');",
        )
        .unwrap();
    let mut bob = as_role(db, "cache_bob");
    // A stranger can neither read, write, clear nor redeclare the private cache.
    assert_eq!(sqlstate(&mut bob, "SELECT cache_get('private', 'k')"), "42501");
    assert_eq!(sqlstate(&mut bob, "SELECT cache_last_clear('private')"), "42501");
    assert_eq!(sqlstate(&mut bob, "SELECT cache_set('private', 'k', '\"bob\"')"), "42501");
    assert_eq!(sqlstate(&mut bob, "SELECT cache_put('private', 'k', '\"bob\"')"), "42501");
    assert_eq!(sqlstate(&mut bob, "SELECT cache_delete('private', 'k')"), "42501");
    assert_eq!(sqlstate(&mut bob, "SELECT cache_clear('private')"), "42501");
    assert_eq!(sqlstate(&mut bob, "SELECT cache_create('private', context => false)"), "42501");
    assert_eq!(sqlstate(&mut bob, "SELECT cache_create('private', size_limit => 1)"), "42501");
    // A declared but open cache can be used by anyone, and redeclared by no stranger.
    assert_eq!(value(&mut bob, "shared_open", "k").as_deref(), Some("\"alice\""));
    assert_eq!(sqlstate(&mut bob, "SELECT cache_set('shared_open', 'k', '\"bob\"')"), "ok");
    assert_eq!(sqlstate(&mut bob, "SELECT cache_create('shared_open', size_limit => 1)"), "42501");
    // cache_clear_all clears what its caller may clear, and leaves the rest.
    assert_eq!(sqlstate(&mut bob, "SELECT cache_clear_all()"), "ok");
    assert_eq!(value(&mut alice, "private", "k").as_deref(), Some("\"alice\""), "not bob's to clear");
    assert_eq!(value(&mut alice, "shared_open", "k"), None, "open caches are cleared");
    // Undeclared caches stay open to everyone.
    // (Undeclared caches have context => true: each role sees its own entries.)
    assert_eq!(sqlstate(&mut bob, "SELECT cache_set('undeclared', 'k', '\"bob\"')"), "ok");
    assert_eq!(sqlstate(&mut alice, "SELECT cache_set('undeclared', 'k', '\"alice\"')"), "ok");
    assert_eq!(value(&mut bob, "undeclared", "k").as_deref(), Some("\"bob\""));
    // A listed reader reads but does not write; a member of the owner does both.
    let mut auditor = as_role(db, "cache_auditor");
    assert_eq!(value(&mut auditor, "private", "k").as_deref(), Some("\"alice\""));
    assert_eq!(sqlstate(&mut auditor, "SELECT cache_set('private', 'k', '1')"), "42501");
    let mut carol = as_role(db, "cache_carol");
    assert_eq!(sqlstate(&mut carol, "SELECT cache_set('private', 'k', '\"carol\"')"), "ok");
    assert_eq!(value(&mut alice, "private", "k").as_deref(), Some("\"carol\""));
    // pgcache_admin may redeclare (and opens it up here); the owner stays alice.
    let mut operator = as_role(db, "cache_operator");
    assert_eq!(sqlstate(&mut operator, "SELECT cache_create('private', context => false)"), "ok");
    assert_eq!(value(&mut bob, "private", "k").as_deref(), Some("\"carol\""));
    let owner: String =
        admin.query_one("SELECT owner::text FROM pg_cache_declarations WHERE cache = 'private'", &[]).unwrap().get(0);
    assert_eq!(owner, "cache_alice");
    // The table itself is read-only to everyone but its owner.
    assert_eq!(sqlstate(&mut bob, "UPDATE pg_cache_declarations SET readers = NULL"), "42501");
}

/// Two roles declare a new cache at once: the one whose row commits first owns it,
/// and the other's declaration, which saw no row, is refused rather than taking the
/// cache over.
#[test]
fn a_first_declaration_racing_another_roles_does_not_take_it_over() {
    let db = "pg_cache_declare_race";
    fresh_database(db);
    ensure_roles(&mut connect(db), &["cache_alice", "cache_bob"]);
    let mut alice = as_role(db, "cache_alice");
    alice.batch_execute("BEGIN; SELECT cache_create('race', size_limit => 5, writers => '{}')").unwrap();
    let bob = std::thread::spawn(move || {
        let mut bob = as_role(db, "cache_bob");
        // Waits on alice's uncommitted row, then finds it is hers.
        sqlstate(&mut bob, "SELECT cache_create('race', size_limit => 1)")
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    alice.batch_execute("COMMIT").unwrap();
    assert_eq!(bob.join().unwrap(), "42501");
    let row = connect(db).query_one("SELECT owner::text, size_limit FROM pg_cache_declarations WHERE cache = 'race'", &[]).unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, i32>(1)), ("cache_alice".to_string(), 5));
}
