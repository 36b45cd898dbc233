//! The commit plan's invalidations, written to WAL for hot standbys at the end of
//! PRE_COMMIT (see `crate::wal`): what a standby's redo must take away.

use pg_cache_core::key;
use pg_cache_core::walrecord;

use super::{reserve, CommitWrite, TXN};
use crate::pg::database;
use crate::wal;

/// Writes the commit plan's invalidations to WAL for hot standbys (see `wal`): every
/// key set or deleted, clears, declarations, tags, prefixes, and database-wide
/// clears and drops. PRE_COMMIT; may raise 53200.
pub(super) fn log_invalidations() {
    TXN.with_borrow(|t| {
        let mut durable = !t.dropped_databases.is_empty() || t.dropped_extension;
        let mut caches: Vec<walrecord::CacheChanges> = Vec::new();
        let mut db_flags = if t.dropped_extension { walrecord::DB_DROP } else { 0 };
        if let Some(plan) = &t.commit {
            reserve(&mut caches, plan.caches.len());
            if plan.clear_all {
                db_flags |= walrecord::DB_CLEAR;
                durable = true;
            }
            for c in &plan.caches {
                let mut keys = Vec::new();
                reserve(&mut keys, c.writes.len());
                for w in &c.writes {
                    match w {
                        // Overwrites are not flushed on their own (a put without a
                        // transaction id flushed per commit ran at 0.3× and starved
                        // the client test of get_many): see the README's limits.
                        CommitWrite::Set { key, .. } => keys.push(key::raw_hash(key)),
                        CommitWrite::Delete { key, .. } => {
                            durable = true;
                            keys.push(key::raw_hash(key));
                        }
                        // A new expiry changes no value.
                        CommitWrite::Touch { .. } => {}
                    }
                }
                let flags = if c.clear { walrecord::CLEAR } else { 0 } | if c.declare.is_some() { walrecord::DECLARE } else { 0 };
                durable |= flags != 0 || !c.tags.is_empty() || !c.prefixes.is_empty();
                caches.push(walrecord::CacheChanges { name: c.name, encoding: c.encoding, flags, tags: &c.tags, prefixes: &c.prefixes, keys });
            }
        }
        wal::log_commit(database(), db_flags, &caches, durable);
        for &db in &t.dropped_databases {
            wal::log_commit(db, walrecord::DB_DROP, &[], true);
        }
    });
}
