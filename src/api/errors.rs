//! Every ERROR pg_cache raises: an SQLSTATE, a message naming the problem, a hint.

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgLogLevel;

pub fn raise(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    let mut report = ErrorReport::new(code, message, "pg_cache");
    if !hint.is_empty() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
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

pub fn too_large(message: String, hint: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, message, hint)
}
