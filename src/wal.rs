//! Invalidations for hot standbys, carried in WAL by a custom resource manager.
//!
//! On the primary a commit that invalidates anything writes its invalidations at the
//! end of PRE_COMMIT, after everything that can fail ([`log_commit`]); the record
//! precedes the commit record, so the commit's flush covers it. On a hot standby the
//! startup process's redo removes the entries it covers at once and records each as
//! pending until its transaction has ended (the store's `replica.rs`); the worker
//! resolves them. Redo never raises an ERROR (that would be a FATAL of the startup
//! process, and the standby would stop) and allocates nothing.
//!
//! The record's bytes are the core's `walrecord`; see `../shared/design/
//! standby-invalidation.md` for the prototype this follows.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::{gucs, pg, registry, shmem};
use pg_cache_core::store::{Covered, Replicated, XidState, EVERY_DATABASE, MAX_TAGS, REDECLARE};
use pg_cache_core::walrecord::{self, CacheChanges, CLEAR, DB_CLEAR, DB_DROP, DECLARE, IMMEDIATE};

/// Our resource manager id. Not `RM_EXPERIMENTAL_ID` (128), which any module under
/// development may take, nor 129–139 and 241, listed as taken on
/// <https://wiki.postgresql.org/wiki/CustomWALResourceManagers>. It is written into
/// WAL, archives and backups for good: never change it (see the README).
pub const RMGR_ID: u8 = 187;
const RMGR_NAME: &std::ffi::CStr = c"pg_cache";
/// A commit's invalidations.
const INFO_INVALIDATE: u8 = 0x10;
/// The primary's marker: whether it writes invalidations (one byte, 1 or 0), from its
/// worker (see [`mark`]).
const INFO_STATE: u8 = 0x20;

static mut RMGR: pg_sys::RmgrData = pg_sys::RmgrData {
    rm_name: RMGR_NAME.as_ptr(),
    rm_redo: Some(redo),
    rm_desc: Some(desc),
    rm_identify: Some(identify),
    rm_startup: Some(startup),
    rm_cleanup: Some(cleanup),
    rm_mask: None,
    // Logical decoding skips our records: they change no table.
    rm_decode: None,
};

/// Registers the resource manager; from `_PG_init` while preloading.
pub fn register() {
    // SAFETY: in the postmaster while shared_preload_libraries load; PostgreSQL copies
    // the struct and keeps the name, a static string.
    unsafe { pg_sys::RegisterCustomRmgr(RMGR_ID, &raw mut RMGR) };
}

/// Whether this server's commits write invalidation records: not on a standby (its
/// caches are its own; it cannot write WAL), not below `wal_level = replica` (no
/// standby can exist), not with `pg_cache.standby_invalidation = off`.
pub fn logging() -> bool {
    // SAFETY: a global setting, read in a backend.
    let wal_level = unsafe { pg_sys::wal_level };
    gucs::standby_invalidation() && wal_level >= pg_sys::WalLevel::WAL_LEVEL_REPLICA as i32 && !pg::in_recovery()
}

/// Writes a commit's invalidations in database `db`: `flags` for the database,
/// `caches` for each cache. `durable`: they include more than overwrites (deletes,
/// clears, drops), which must reach standbys even if the primary crashes right after
/// the commit. At PRE_COMMIT, after everything else that can fail; raises 53200
/// when memory runs out.
pub fn log_commit(db: u32, flags: u8, caches: &[CacheChanges], durable: bool) {
    let records = walrecord::encode(db, flags, caches)
        .unwrap_or_else(|_| crate::errors::out_of_memory("writing pg_cache invalidations to WAL"));
    if records.is_empty() {
        return;
    }
    for rec in &records {
        insert(INFO_INVALIDATE, rec, false);
    }
    // A transaction with an id flushes its commit record, and ours before it. One
    // without writes no commit record and flushes nothing: a crash right after it
    // would lose the record although the client saw COMMIT, and a standby would keep
    // the entries forever, even under synchronous_commit = off: the rows the
    // invalidation is for were often committed durably by another transaction.
    // Overwrites alone (sets, puts) are not flushed: a fill says nothing changed,
    // and a put made in its own transaction after the rows' commit is a narrow case
    // that costs a flush per put (README, limits).
    // SAFETY: no preconditions; reads and sets this backend's transaction state.
    unsafe {
        if durable && pg_sys::GetTopTransactionIdIfAny() == pg_sys::InvalidTransactionId {
            pg_sys::ForceSyncCommit();
        }
    }
}

/// Writes and flushes at once a record of database-wide `flags` for `db`: for an
/// invalidation that is not transactional (`cache_drop`), which a standby must get
/// whatever the transaction does.
pub fn log_now(db: u32, flags: u8) {
    let records = walrecord::encode(db, flags, &[]).unwrap_or_else(|_| crate::errors::out_of_memory("writing pg_cache invalidations to WAL"));
    for rec in &records {
        let end = insert(INFO_INVALIDATE, rec, false);
        // SAFETY: flushes WAL up to a position this backend just inserted.
        unsafe { pg_sys::XLogFlush(end) };
    }
}

/// Inserts one record of our resource manager with `data` as its main data (which
/// XLogInsert copies before returning; at most MAX_RECORD bytes); `unimportant`
/// marks it so (it then makes no idle server checkpoint). Its end position.
fn insert(info: u8, data: &[u8], unimportant: bool) -> pg_sys::XLogRecPtr {
    // SAFETY: the begin / register / insert sequence of one record, in one process.
    unsafe {
        pg_sys::XLogBeginInsert();
        if unimportant {
            pg_sys::XLogSetRecordFlags(pg_sys::XLOG_MARK_UNIMPORTANT as u8);
        }
        pg_sys::XLogRegisterData(data.as_ptr() as *mut std::ffi::c_char, data.len() as i32);
        pg_sys::XLogInsert(RMGR_ID, info)
    }
}

/// A record being replayed or described: its type (info without PostgreSQL's bits),
/// its transaction id and its main data (XLogRecGetInfo, XLogRecGetXid and
/// XLogRecGetData, macros pgrx does not bind).
fn parts<'r>(record: *mut pg_sys::XLogReaderState) -> (u8, u32, &'r [u8]) {
    // SAFETY: PostgreSQL passes the decoded record it replays or describes, alive
    // for the callback; its main data is `main_data_len` bytes.
    unsafe {
        let rec = (*record).record;
        let data: &[u8] = if (*rec).main_data.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts((*rec).main_data as *const u8, (*rec).main_data_len as usize)
        };
        ((*rec).header.xl_info & !(pg_sys::XLR_INFO_MASK as u8), (*rec).header.xl_xid.into_inner(), data)
    }
}

/// Whether redo keeps a standby's caches: only while this server replays WAL as a
/// hot standby (not in crash recovery, where shared memory is new and nobody reads
/// it, nor with `hot_standby = off`).
fn standby_redo() -> bool {
    // SAFETY: a startup-process global, read in the startup process.
    unsafe { pg_sys::standbyState != pg_sys::HotStandbyState::STANDBY_DISABLED }
}

#[pg_guard]
unsafe extern "C-unwind" fn startup() {
    if !standby_redo() {
        return;
    }
    // Any transaction older than this may have written a record before the point
    // replay resumes from, which this server's (new) memory never saw: fills wait
    // until they have all ended.
    // SAFETY: reads the shared next transaction id under its lock.
    let next = unsafe { pg_sys::ReadNextFullTransactionId() };
    shmem::store().replica_start(next.value as u32);
}

/// Recovery ends (a promotion, or the end of crash recovery): from now on this
/// server writes its own invalidations, and its fills need no marker.
#[pg_guard]
unsafe extern "C-unwind" fn cleanup() {
    shmem::store().replica_primary_logs(true, pg::now());
}

#[pg_guard]
unsafe extern "C-unwind" fn redo(record: *mut pg_sys::XLogReaderState) {
    if !standby_redo() {
        return;
    }
    let (info, xid, data) = parts(record);
    if info == INFO_STATE {
        redo_state(data.first() == Some(&1));
        return;
    }
    let store = shmem::store();
    let now = pg::now();
    let Some(rec) = walrecord::decode(data) else {
        // A format this version cannot read: drop everything, and hold fills back
        // until its transaction has ended.
        if xid != 0 {
            store.replica_hold_until_ended(xid);
        }
        store.forget_declarations(EVERY_DATABASE, 0, now);
        return;
    };
    let db = rec.db;
    // Not transactional: as if committed without a transaction id.
    let xid = if rec.flags & IMMEDIATE != 0 { 0 } else { xid };
    // Each invalidation is noted as pending before the entries it covers go, so
    // that a standby fill judged in between is dropped.
    if rec.flags & (DB_CLEAR | DB_DROP) != 0 {
        store.replica_note(db, Covered::Database, xid, 0, now);
        store.invalidate_replicated_database(db, rec.flags & DB_DROP != 0, now);
    }
    for c in rec.caches() {
        if c.flags != 0 || c.has_tags() || c.has_prefixes() {
            let redeclare = c.flags & DECLARE != 0;
            store.replica_note(db, Covered::Cache { name: c.name }, xid, if redeclare { REDECLARE } else { 0 }, now);
            if redeclare && xid == 0 {
                store.forget_declarations(db, c.name, now);
            }
            if let Some(r) = store.slot_named(db, c.name) {
                if c.flags & (CLEAR | DECLARE) != 0 {
                    store.invalidate_replicated(r, Replicated::Clear, now);
                }
                let mut tags = [0u64; MAX_TAGS];
                let mut n = 0;
                for t in c.tags() {
                    tags[n] = t;
                    n += 1;
                    if n == tags.len() {
                        store.invalidate_replicated(r, Replicated::Tags(&tags[..n]), now);
                        n = 0;
                    }
                }
                if n > 0 {
                    store.invalidate_replicated(r, Replicated::Tags(&tags[..n]), now);
                }
                for p in c.prefixes() {
                    store.invalidate_replicated(r, Replicated::Prefix(p), now);
                }
            }
        }
        if c.keys().next().is_none() {
            continue;
        }
        // Key hashes name stored keys: they match only where keys are stored alike
        // (a declaration in a READ ONLY transaction changes the primary's settings
        // only, context settings may differ). Otherwise, or when this server has no
        // slot for the cache (one made before the record resolves would read the
        // settings from the table), the whole cache is covered.
        let slot = store.slot_named(db, c.name);
        let alike = slot.is_some_and(|r| registry::key_encoding(&store.config(r)) == c.encoding);
        if !alike {
            store.replica_note(db, Covered::Cache { name: c.name }, xid, 0, now);
            if let Some(r) = slot {
                store.invalidate_replicated(r, Replicated::Clear, now);
            }
            continue;
        }
        for raw in c.keys() {
            store.replica_note(db, Covered::Key { name: c.name, raw }, xid, 0, now);
            if let Some(r) = slot {
                store.invalidate_replicated(r, Replicated::Key(raw), now);
            }
        }
    }
}

/// The primary's marker: fills are kept only while it says it writes invalidations.
/// When it stops, entries filled here might miss its later invalidations: they go.
fn redo_state(logs: bool) {
    let store = shmem::store();
    store.replica_primary_logs(logs, pg::now());
    if !logs {
        store.forget_declarations(EVERY_DATABASE, 0, pg::now());
    }
}

/// The worker's marker on a primary: writes whether this server logs invalidations
/// when the worker starts, and again each `MARK_EVERY` while important WAL is being
/// written (a standby made from a base backup replays from its start, after earlier
/// markers; a checkpoint record is important, so one follows every checkpoint).
/// The marker itself is unimportant: an idle server stays idle (no checkpoint, no
/// archived segment, no standby snapshot on its account). `last`: what the worker
/// wrote last, and the last important WAL position then.
pub fn mark(last: &mut Option<(bool, u64, std::time::Instant)>) {
    // SAFETY: no preconditions.
    let (in_recovery, wal_level) = unsafe { (pg_sys::RecoveryInProgress(), pg_sys::wal_level) };
    if in_recovery || wal_level < pg_sys::WalLevel::WAL_LEVEL_REPLICA as i32 {
        return;
    }
    let logs = gucs::standby_invalidation();
    // SAFETY: no preconditions.
    let important = unsafe { pg_sys::GetLastImportantRecPtr() };
    let due = match *last {
        None => true,
        Some((was, at, when)) => was != logs || (logs && important != at && when.elapsed() >= MARK_EVERY),
    };
    if !due {
        return;
    }
    // Outside a transaction, as the background writer logs standby snapshots; then
    // flushed, so that standbys learn it promptly.
    let end = insert(INFO_STATE, &[logs as u8], true);
    // SAFETY: flushes WAL up to a position this process just inserted.
    unsafe { pg_sys::XLogFlush(end) };
    *last = Some((logs, important, std::time::Instant::now()));
}

/// How often the primary's worker repeats its marker while WAL is written.
const MARK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[pg_guard]
unsafe extern "C-unwind" fn desc(buf: pg_sys::StringInfo, record: *mut pg_sys::XLogReaderState) {
    let (info, _, data) = parts(record);
    let text = match walrecord::decode(data) {
        _ if info == INFO_STATE => format!("primary writes invalidations: {}", data.first() == Some(&1)),
        Some(r) => {
            let (caches, keys) = r.counts();
            format!(
                "db {} caches {} keys {}{}{}",
                r.db,
                caches,
                keys,
                if r.flags & DB_CLEAR != 0 { " clear_all" } else { "" },
                if r.flags & DB_DROP != 0 { " drop" } else { "" }
            )
        }
        None => format!("unreadable ({} bytes, version {})", data.len(), data.first().copied().unwrap_or(0)),
    };
    let text = std::ffi::CString::new(text).unwrap_or_default();
    // SAFETY: appends a NUL-terminated string to the buffer PostgreSQL passed.
    unsafe { pg_sys::appendStringInfoString(buf, text.as_ptr()) };
}

#[pg_guard]
unsafe extern "C-unwind" fn identify(info: u8) -> *const std::ffi::c_char {
    match info & !(pg_sys::XLR_INFO_MASK as u8) {
        INFO_INVALIDATE => c"INVALIDATE".as_ptr(),
        INFO_STATE => c"STATE".as_ptr(),
        _ => std::ptr::null(),
    }
}

/// Resolves the invalidations a standby's redo left pending: called by the worker
/// while any are, once the standby accepts connections (before that the list of
/// running primary transactions is incomplete) or after promotion.
pub fn resolve_pending() {
    let store = shmem::store();
    if !store.replica_pending() {
        return;
    }
    // SAFETY: no preconditions; procarray lookups under PostgreSQL's own locks.
    unsafe {
        if pg_sys::RecoveryInProgress() && !pg_sys::HotStandbyActive() {
            return;
        }
        // In progress first: during a commit's replay pg_xact is marked before the
        // transaction leaves the list of running ones, and a snapshot taken in
        // between still sees the old rows.
        let state = |xid: u32| {
            let x = pg_sys::TransactionId::from(xid);
            if pg_sys::TransactionIdIsInProgress(x) {
                XidState::Running
            } else if pg_sys::TransactionIdDidCommit(x) {
                XidState::Committed
            } else {
                XidState::Aborted
            }
        };
        let oldest = pg_sys::GetOldestTransactionIdConsideredRunning().into_inner();
        store.replica_resolve(state, oldest, pg::now, |db, name| store.forget_declarations(db, name, pg::now()));
    }
}
