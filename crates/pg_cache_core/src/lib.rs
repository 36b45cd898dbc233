//! The part of pg_cache that needs no PostgreSQL: key encoding, the shared-memory
//! store (allocator, index, eviction, TTL, fences) over a plain byte region, and the
//! per-transaction write set. A crate of its own with no dependencies, so that the
//! boundary is enforced by the compiler and tier 1 is a plain `cargo test`.

pub mod feed;
pub mod invalidation;
pub mod key;
pub mod store;
pub mod value;
pub mod walrecord;
pub mod writeset;
