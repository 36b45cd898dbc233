//! Everything SQL-facing: the functions, argument checks, errors, the jsonb and bytea bridges.

pub mod args;
mod bind;
mod functions;
pub mod jsonb;
mod keyops;
mod many;
mod predicates;
pub mod raw;
mod stats;
