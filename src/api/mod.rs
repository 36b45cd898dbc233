//! Everything SQL-facing: the functions, argument checks, errors, the jsonb bridge.

pub mod caches;
pub mod declarations;
pub mod errors;
mod functions;
pub mod jsonb;
mod stats;
