//! pg_cache: a transactional cache in PostgreSQL shared memory.
//!
//! The store, write set and key encoding live in the `pg_cache_core` crate, which
//! needs no PostgreSQL. Here, from the bottom up: `errors` and `pg` (backend facts);
//! `gucs`, `shmem`, `privileges`, `pending` (the transaction's write set), `keylock`
//! (locks on keys);
//! `registry` (cache names to slots); `restart` (the dump at a clean shutdown, loaded
//! at the next start); `wal` (invalidations carried to hot standbys),
//! `xact` and `worker`, which bind the store to the server; `api`, what SQL sees. A module uses only those before it in this list.

use pgrx::prelude::*;

mod api;
mod errors;
mod pending;
mod pg;
mod privileges;
mod registry;
mod restart;
mod gucs;
mod keylock;
mod shmem;
mod wal;
mod worker;
mod xact;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/bootstrap.sql", bootstrap);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a flag PostgreSQL sets while it loads shared_preload_libraries.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        errors::not_preloaded();
    }
    errors::no_backtraces_in_reports();
    gucs::init();
    shmem::install_hooks();
    restart::install_hooks();
    wal::register();
    xact::register();
    worker::register();
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_cache'", "pg_cache.memory = '16MB'"]
    }
}
