//! Connections and small queries shared by the client test binaries.
#![allow(dead_code)] // each test binary uses its own subset

use postgres::{Client, NoTls};

pub fn port(var: &str) -> u16 {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run these tests with scripts/test"))
        .parse()
        .expect("a port number")
}

pub fn connect_to(var: &str, db: &str) -> Client {
    Client::connect(&format!("host=127.0.0.1 port={} user=postgres dbname={db}", port(var)), NoTls)
        .expect("connect")
}

pub fn connect(db: &str) -> Client {
    connect_to("PG_CACHE_TEST_PORT", db)
}

/// A fresh database with pg_cache installed, for a test that must not share caches.
pub fn fresh_database(name: &str) {
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    connect(name).batch_execute("CREATE EXTENSION pg_cache").unwrap();
}

pub fn get(c: &mut Client, cache: &str, key: &str) -> Option<String> {
    c.query_one("SELECT cache_get($1, $2)::text", &[&cache, &key]).unwrap().get(0)
}

pub fn stat(c: &mut Client, cache: &str, column: &str) -> i64 {
    c.query_one(&format!("SELECT {column} FROM cache_stats() WHERE cache = $1"), &[&cache])
        .unwrap()
        .get(0)
}

/// Creates each role that does not exist yet (roles are cluster-wide; tests run in
/// parallel and again against the same cluster, so another may create it first).
pub fn ensure_roles(c: &mut Client, roles: &[&str]) {
    for role in roles {
        c.batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {role};
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ))
        .unwrap();
    }
}

/// "ok", or the SQLSTATE of the error `sql` raised.
pub fn sqlstate(c: &mut Client, sql: &str) -> String {
    match c.batch_execute(sql) {
        Ok(()) => "ok".into(),
        Err(e) => e.as_db_error().map(|d| d.code().code().to_owned()).unwrap_or_else(|| e.to_string()),
    }
}

/// A fresh database with pg_cache on the cluster of port variable `var`.
pub fn fresh_database_on(var: &str, name: &str) {
    let mut admin = connect_to(var, "postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    connect_to(var, name).batch_execute("CREATE EXTENSION pg_cache").unwrap();
}

/// Sets a reloadable setting with ALTER SYSTEM (`None`: resets it), reloads, and
/// waits until new sessions see `expect`.
pub fn reload_setting(var: &str, name: &str, value: Option<&str>, expect: &str) {
    let mut admin = connect_to(var, "postgres");
    match value {
        Some(v) => admin.batch_execute(&format!("ALTER SYSTEM SET {name} = '{v}'")).unwrap(),
        None => admin.batch_execute(&format!("ALTER SYSTEM RESET {name}")).unwrap(),
    }
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let start = std::time::Instant::now();
    while connect_to(var, "postgres").query_one(&format!("SHOW {name}"), &[]).unwrap().get::<_, String>(0) != expect {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the reload of {name} did not apply");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The value of environment variable `var`, which scripts/test sets.
pub fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run these tests with scripts/test"))
}

/// `pg_ctl` with `args` on the data directory `dir`, as the postgres user (the tests
/// run as root; PostgreSQL refuses it).
pub fn pg_ctl(dir: &str, args: &[&str]) {
    let pg_ctl = format!("{}/pg_ctl", env("PG_CACHE_TEST_PG_BIN"));
    let status = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", &pg_ctl, "-D", dir, "-w", "-l", &format!("{dir}/server.log")])
        .args(args)
        .status()
        .expect("runuser");
    assert!(status.success(), "pg_ctl {args:?}");
}

/// A connection to the cluster on port variable `var`, retried while it starts.
pub fn connect_when_up(var: &str) -> Client {
    let start = std::time::Instant::now();
    loop {
        if let Ok(mut c) = Client::connect(&format!("host=127.0.0.1 port={} user=postgres dbname=postgres", port(var)), NoTls) {
            if c.simple_query("SELECT 1").is_ok() {
                return c;
            }
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "{var}: the server does not answer");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
