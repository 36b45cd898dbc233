//! The part of pg_cache that needs no PostgreSQL: key encoding, the shared-memory
//! store (allocator, index, LRU, TTL) over a plain byte region, and the
//! per-transaction write set. Tested with plain `cargo test`.

pub mod key;
pub mod store;
pub mod writeset;
