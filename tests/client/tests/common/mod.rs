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
