//! Every ERROR pg_cache raises: an SQLSTATE, a message naming the problem, a hint.

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgLogLevel;
use std::cell::RefCell;

use pg_cache_core::value::ValueKind;

/// Keeps Rust backtraces out of error reports in release builds. pgrx attaches
/// `Backtrace::capture()` to the DETAIL of an ERROR raised inside SPI whenever the
/// server's environment sets `RUST_BACKTRACE`: some 25 lines of frames sent to the
/// client and the log. `RUST_LIB_BACKTRACE` governs `capture()` alone (a panic's own
/// message still follows `RUST_BACKTRACE`). Called from `_PG_init` in the postmaster,
/// before any other thread or process exists; backends inherit the environment.
pub fn no_backtraces_in_reports() {
    #[cfg(not(debug_assertions))]
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
}

pub fn raise(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    report(PgLogLevel::ERROR, code, message, hint);
    unreachable!("ERROR does not return")
}

/// A WARNING with an SQLSTATE and a hint: what a call that skips instead of raising
/// tells its caller.
pub fn warn(code: PgSqlErrorCode, message: String, hint: &str) {
    report(PgLogLevel::WARNING, code, message, hint);
}

fn report(level: PgLogLevel, code: PgSqlErrorCode, message: String, hint: &str) {
    let mut report = ErrorReport::new(code, message, "pg_cache");
    if !hint.is_empty() {
        report = report.set_hint(hint);
    }
    report.report(level);
}

pub fn not_preloaded() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "pg_cache must be loaded via shared_preload_libraries".into(),
        "Add pg_cache to shared_preload_libraries in postgresql.conf and restart the server.",
    )
}

pub fn null_argument(name: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        format!("{name} must not be NULL"),
        "",
    )
}

pub fn invalid(message: String, hint: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message, hint)
}

/// 42804: the key holds a value of another kind than the function reads (`found`:
/// its kind's name).
/// A read of `wanted` found a value of another kind (`None`: one this build does not
/// know).
pub fn other_kind(cache: &str, key: &str, found: Option<ValueKind>, wanted: ValueKind) -> ! {
    let hint = match found {
        Some(ValueKind::Jsonb) => "Read it with cache_get or cache_get_many, or replace it with a value of the kind you read.",
        Some(ValueKind::Bytea) => "Read it with cache_get_bytes or cache_get_many_bytes, or replace it with a value of the kind you read.",
        None => "The entry was written by a newer pg_cache: read it with that version's function for its kind.",
    };
    raise(
        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
        format!(
            "cache \"{cache}\" holds a {} value under key \"{key}\", not {}",
            found.map_or("unknown", ValueKind::name),
            wanted.name()
        ),
        hint,
    )
}

pub fn too_large(message: String, hint: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, message, hint)
}

thread_local! {
    /// Memory set aside for the error path. When the heap is exhausted (a process
    /// limit, `vm.overcommit_memory = 2`), raising an ERROR still needs a few small
    /// allocations (the message, the panic that carries it to pgrx's guard), and an
    /// allocation that fails there aborts the process. Freed just before raising
    /// 53200, armed again on the next write. (PostgreSQL keeps 8 kB in ErrorContext
    /// for the same reason.)
    static PARACHUTE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

const PARACHUTE_BYTES: usize = 64 << 10;

/// Sets memory aside for [`out_of_memory`], if it is not already; never fails.
pub fn arm_parachute() {
    PARACHUTE.with_borrow_mut(|p| {
        if p.capacity() == 0 {
            let _ = p.try_reserve_exact(PARACHUTE_BYTES);
        }
    });
}

/// A backend allocation failed: an ERROR like PostgreSQL's own, never an abort.
pub fn out_of_memory(what: &str) -> ! {
    PARACHUTE.with_borrow_mut(|p| *p = Vec::new());
    raise(
        PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY,
        format!("out of memory while {what}"),
        "The transaction holds too many pending pg_cache writes: commit in smaller batches.",
    )
}
