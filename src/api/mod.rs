//! Everything SQL-facing: the functions, argument checks, errors, the jsonb bridge.

pub mod args;
mod functions;
pub mod jsonb;
mod keyops;
mod many;
mod stats;
