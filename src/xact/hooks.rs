//! The PostgreSQL hooks that tell the transaction's callbacks what its callbacks
//! alone would not: a `ROLLBACK` about to run, `DROP DATABASE`, `DROP EXTENSION
//! pg_cache`. Plumbing only: what each event means is the caller's ([`Events`]).

use pgrx::pg_sys;
use pgrx::prelude::*;

/// What the hooks report, and to whom.
#[derive(Clone, Copy)]
pub(super) struct Events {
    /// A `ROLLBACK` is about to run. Called from an unguarded frame: it must be a
    /// `#[pg_guard]` function.
    pub rollback: unsafe extern "C-unwind" fn(),
    /// This transaction drops the database of this OID.
    pub dropped_database: fn(u32),
    /// This transaction drops the extension in the current database.
    pub dropped_extension: fn(),
}

static mut EVENTS: Option<Events> = None;
static mut PREV_OBJECT_ACCESS_HOOK: pg_sys::object_access_hook_type = None;
static mut PREV_PROCESS_UTILITY_HOOK: pg_sys::ProcessUtility_hook_type = None;

/// Installs both hooks, chaining to those installed before. From `_PG_init`.
pub(super) fn install(events: Events) {
    // SAFETY: hook registration, once, from _PG_init in the postmaster, before any
    // hook can run.
    unsafe {
        EVENTS = Some(events);
        PREV_OBJECT_ACCESS_HOOK = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(object_access);
        PREV_PROCESS_UTILITY_HOOK = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

/// Sees `ROLLBACK` before it runs, while the transaction can still do what may fail
/// (`Events::rollback`); everything else passes straight on.
///
/// Not `#[pg_guard]`, and the chained call is not pgrx's wrapped
/// `standard_ProcessUtility`: those catch an ERROR of the statement and raise a
/// copy, which keeps only code, message, detail and hint (a failing DDL would lose
/// its cursor position and context, a constraint violation inside `CALL` its
/// constraint name). This frame holds nothing with a destructor when it chains, so
/// an ERROR may longjmp over it as over a C frame; the Rust work happens in the
/// guarded `Events::rollback`, which has returned by then.
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: PostgreSQL passes the planned utility statement it is about to run;
    // a node's tag says which struct it is.
    let rollback = unsafe {
        let stmt = (*pstmt).utilityStmt;
        !stmt.is_null()
            && (*stmt).type_ == pg_sys::NodeTag::T_TransactionStmt
            && (*(stmt as *mut pg_sys::TransactionStmt)).kind == pg_sys::TransactionStmtKind::TRANS_STMT_ROLLBACK
    };
    if rollback {
        // SAFETY: set once before any hook runs; a guarded function of no arguments.
        unsafe {
            if let Some(events) = EVENTS {
                (events.rollback)();
            }
        }
    }
    // SAFETY: chaining to the hook installed before ours (or the standard function)
    // with the arguments we were given, as C hooks do.
    unsafe {
        match PREV_PROCESS_UTILITY_HOOK {
            Some(prev) => prev(pstmt, query, read_only_tree, context, params, env, dest, qc),
            None => standard_process_utility(pstmt, query, read_only_tree, context, params, env, dest, qc),
        }
    }
}

extern "C-unwind" {
    /// PostgreSQL's own, unwrapped (see [`process_utility`]).
    #[link_name = "standard_ProcessUtility"]
    fn standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

/// Reports `DROP DATABASE` (it cannot run inside a transaction block, so its
/// transaction's commit is the drop's) and `DROP EXTENSION pg_cache`.
#[pg_guard]
unsafe extern "C-unwind" fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: std::ffi::c_int,
    arg: *mut std::ffi::c_void,
) {
    // SAFETY: chaining to the hook that was installed before ours, with its arguments.
    unsafe {
        if let Some(prev) = PREV_OBJECT_ACCESS_HOOK {
            prev(access, class_id, object_id, sub_id, arg);
        }
    }
    // SAFETY: set once before any hook runs.
    let Some(events) = (unsafe { EVENTS }) else { return };
    if access == pg_sys::ObjectAccessType::OAT_DROP && class_id == pg_sys::DatabaseRelationId {
        (events.dropped_database)(object_id.to_u32());
    }
    if access == pg_sys::ObjectAccessType::OAT_DROP
        && class_id == pg_sys::ExtensionRelationId
        // SAFETY: a catalog lookup inside the dropping transaction; the row is still there.
        && object_id == unsafe { pg_sys::get_extension_oid(c"pg_cache".as_ptr(), true) }
    {
        (events.dropped_extension)();
    }
}
