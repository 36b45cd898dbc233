//! The declarations table (`pg_cache_declarations` in the extension's schema).
//!
//! Read by catalog-style scans, not SPI: a read needs no transaction id (so it works
//! on a hot standby, inside a parallel operation and in a READ ONLY transaction),
//! and no SQL text is parsed, so nothing in it depends on the caller's search_path.
//! Written with one INSERT whose every name is qualified.

use std::ffi::{CStr, CString};

use pgrx::datum::Interval;
use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::errors;
use pg_cache_core::store::{CacheConfig, Policy, RoleList, MAX_ROLES};

/// An interval in microseconds, counted as `extract(epoch FROM interval)` does (a
/// year is 365.25 days, a month of a partial year 30 days): the one conversion used
/// for `ttl`, for `duration` when declared and when read back from the table.
pub fn interval_micros(i: &Interval) -> i128 {
    const DAY: i128 = 86_400_000_000;
    let months = i.months() as i128;
    i.micros() as i128 + i.days() as i128 * DAY + months / 12 * (DAY * 1461 / 4) + months % 12 * 30 * DAY
}

const TABLE: &CStr = c"pg_cache_declarations";
const PRIMARY_KEY: &CStr = c"pg_cache_declarations_pkey";

/// The schema pg_cache is installed in, in the current database.
pub(crate) fn extension_schema() -> Option<pg_sys::Oid> {
    // SAFETY: a scan of pg_extension by its name index inside a transaction, as
    // get_extension_oid does; the tuple is read before the scan ends.
    unsafe {
        let rel = pg_sys::table_open(pg_sys::ExtensionRelationId, pg_sys::AccessShareLock as i32);
        let mut key = std::mem::zeroed::<pg_sys::ScanKeyData>();
        pg_sys::ScanKeyInit(
            &mut key,
            pg_sys::Anum_pg_extension_extname as i16,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::Oid::from(pg_sys::F_NAMEEQ),
            pg_sys::Datum::from(c"pg_cache".as_ptr()),
        );
        let scan =
            pg_sys::systable_beginscan(rel, pg_sys::Oid::from(pg_sys::ExtensionNameIndexId), true, std::ptr::null_mut(), 1, &mut key);
        let tuple = pg_sys::systable_getnext(scan);
        let schema = (!tuple.is_null()).then(|| {
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_extension>(tuple);
            (*form).extnamespace
        });
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        schema
    }
}

/// The declarations table and its schema, or `None` when the extension is not
/// installed in this database.
fn table() -> Option<(pg_sys::Oid, pg_sys::Oid)> {
    let schema = extension_schema()?;
    // SAFETY: a syscache lookup by name in a given schema.
    let relid = unsafe { pg_sys::get_relname_relid(TABLE.as_ptr(), schema) };
    (relid != pg_sys::InvalidOid).then_some((relid, schema))
}

/// The snapshot a read of the table uses: the latest committed state (plus this
/// transaction's own writes), since a shared slot built from it serves everyone.
/// Inside a parallel operation PostgreSQL takes no new snapshot; the statement's is
/// used there.
unsafe fn read_snapshot() -> pg_sys::Snapshot {
    // SAFETY: the caller is inside a transaction; in parallel mode a statement is
    // running, so an active snapshot is set.
    unsafe {
        if pg_sys::IsInParallelMode() && pg_sys::ActiveSnapshotSet() {
            pg_sys::GetActiveSnapshot()
        } else {
            pg_sys::GetLatestSnapshot()
        }
    }
}

/// The committed declaration of `name` (as the latest snapshot sees it, with this
/// transaction's own changes), or `None`.
pub fn read(name: &str) -> Option<CacheConfig> {
    let (relid, schema) = table()?;
    let cname = CString::new(name).ok()?;
    // SAFETY: catalog lookups by name; the scan key compares a text column with a
    // text datum (see read_row).
    unsafe {
        let index = pg_sys::get_relname_relid(PRIMARY_KEY.as_ptr(), schema);
        let attnum = |column: &CStr| pg_sys::get_attnum(relid, column.as_ptr());
        let (a_cache, a_size, a_duration, a_context, a_ignored) = (
            attnum(c"cache"),
            attnum(c"size_limit"),
            attnum(c"duration"),
            attnum(c"context"),
            attnum(c"context_ignored_keys"),
        );
        let (a_owner, a_readers, a_writers) = (attnum(c"owner"), attnum(c"readers"), attnum(c"writers"));
        let a_max_bytes = attnum(c"max_bytes");
        let a_notify = attnum(c"notify");
        let a_policy = attnum(c"policy");
        let mut key = [equal_key(a_cache, pg_sys::F_TEXTEQ, pg_sys::Datum::from(pg_sys::cstring_to_text(cname.as_ptr())))];
        read_row(relid, index, &mut key, |column| {
            let size_limit = column(a_size).and_then(|(d, null)| i32::from_datum(d, null)).unwrap_or(0);
            let duration_us = column(a_duration)
                .and_then(|(d, null)| Interval::from_datum(d, null))
                .map_or(0, |i| interval_micros(&i).clamp(0, i64::MAX as i128) as i64);
            let context = column(a_context).and_then(|(d, null)| bool::from_datum(d, null)).unwrap_or(true);
            let ignored: Vec<String> = column(a_ignored)
                .and_then(|(d, null)| Vec::<Option<String>>::from_datum(d, null))
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .collect();
            let mut config = CacheConfig::new(size_limit, duration_us, context, &ignored.join(",")).unwrap_or_default();
            config.owner = column(a_owner).and_then(|(d, null)| pg_sys::Oid::from_datum(d, null)).map_or(0, |o| o.to_u32());
            // More roles than fit (an edited table) keep the first ones: fewer allowed.
            let roles = |a: i16| match column(a).and_then(|(d, null)| Vec::<Option<pg_sys::Oid>>::from_datum(d, null)) {
                None => RoleList::ANYONE,
                Some(oids) => {
                    let oids: Vec<u32> = oids.into_iter().flatten().map(|o| o.to_u32()).take(MAX_ROLES).collect();
                    RoleList::only(&oids).unwrap_or(RoleList::ANYONE)
                }
            };
            config.readers = roles(a_readers);
            config.writers = roles(a_writers);
            config.max_bytes = column(a_max_bytes).and_then(|(d, null)| i64::from_datum(d, null)).map_or(0, |b| b.max(1) as u64);
            config.policy = column(a_policy)
                .and_then(|(d, null)| String::from_datum(d, null))
                .and_then(|p| Policy::from_name(&p))
                .unwrap_or_default();
            config.notify = column(a_notify).and_then(|(d, null)| String::from_datum(d, null)).is_some_and(|n| n == "keys");
            config
        })
    }
}

/// A scan key for `column = value` with the equality function `eq`.
///
/// # Safety
/// `value` is a datum of the type `eq` compares.
pub(crate) unsafe fn equal_key(column: i16, eq: u32, value: pg_sys::Datum) -> pg_sys::ScanKeyData {
    // SAFETY: ScanKeyInit fills a zeroed key; the caller vouches for the datum.
    unsafe {
        let mut key = std::mem::zeroed::<pg_sys::ScanKeyData>();
        pg_sys::ScanKeyInit(&mut key, column, pg_sys::BTEqualStrategyNumber as u16, pg_sys::Oid::from(eq), value);
        key
    }
}

/// The row of table `relid` that `keys` find (through its index `index`; a
/// sequential scan when there is none), as the latest snapshot sees it with this
/// transaction's own changes (see [`read_snapshot`]): `f` reads its columns by
/// attribute number (`None` for one the table lacks) before the scan ends.
/// Catalog-style: no SQL text, so no search_path is involved, and no transaction
/// id is needed. The one way both extension tables are read.
///
/// # Safety
/// Inside a transaction; `relid` is a table and `keys` compare its columns.
pub(crate) unsafe fn read_row<T>(
    relid: pg_sys::Oid,
    index: pg_sys::Oid,
    keys: &mut [pg_sys::ScanKeyData],
    f: impl FnOnce(&dyn Fn(i16) -> Option<(pg_sys::Datum, bool)>) -> T,
) -> Option<T> {
    // SAFETY: the table is opened with AccessShareLock and closed below; the
    // snapshot is registered for the scan; every datum is read (text datums are
    // detoasted copies in the current memory context) before the scan ends.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
        let snapshot = pg_sys::RegisterSnapshot(read_snapshot());
        let use_index = index != pg_sys::InvalidOid;
        let scan = pg_sys::systable_beginscan(rel, index, use_index, snapshot, keys.len() as i32, keys.as_mut_ptr());
        let tuple = pg_sys::systable_getnext(scan);
        let out = (!tuple.is_null()).then(|| {
            let desc = (*rel).rd_att;
            let natts = (*desc).natts as usize;
            let mut values = vec![pg_sys::Datum::from(0); natts];
            let mut nulls = vec![true; natts];
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            f(&|a: i16| (a > 0).then(|| (values[a as usize - 1], nulls[a as usize - 1])))
        });
        pg_sys::systable_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        out
    }
}

/// What `cache_create` writes: the settings as given, and who owns and may use it.
pub struct Declaration {
    pub size_limit: Option<i32>,
    pub duration: Option<Interval>,
    pub context: bool,
    pub ignored: Vec<String>,
    pub owner: pg_sys::Oid,
    pub readers: Option<Vec<pg_sys::Oid>>,
    pub writers: Option<Vec<pg_sys::Oid>>,
    pub max_bytes: Option<i64>,
    /// `notify => 'keys'`: announce committed changes.
    pub notify: bool,
    pub policy: Policy,
}

/// Writes the declaration row; the shared slot follows at commit. The row is
/// written as the table's owner (as PostgreSQL runs its own internal queries), so
/// that callers need no privilege on the table and cannot write it directly.
/// `false` when a row of another owner than `d.owner` is there (another role's first
/// declaration committed after the caller looked): nothing was written.
pub fn write(name: &str, d: &Declaration) -> bool {
    let Some((relid, _)) = table() else {
        errors::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "extension pg_cache is not installed in this database".into(),
            "Run CREATE EXTENSION pg_cache.",
        )
    };
    // SAFETY: the relation exists (just looked up) and is opened and closed here;
    // the returned names are palloc'd NUL-terminated strings.
    let (qualified, table_owner) = unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
        let owner = (*(*rel).rd_rel).relowner;
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        let q = pg_sys::quote_qualified_identifier(schema, TABLE.as_ptr());
        (CStr::from_ptr(q).to_string_lossy().into_owned(), owner)
    };
    // Every name is qualified and every operator is pg_catalog's, so the caller's
    // search_path cannot substitute a function of its own. The owner column keeps
    // the first declarer: a redeclaration does not take the cache over, and one that
    // raced with another role's first declaration (both saw no row) updates nothing.
    let query = format!(
        "INSERT INTO {qualified} AS d (cache, size_limit, duration, context, context_ignored_keys, owner, readers, \
         writers, max_bytes, notify, policy) VALUES ($1, $2, $3, $4, $5, $6::pg_catalog.oid::pg_catalog.regrole, \
         $7::pg_catalog.oid[]::pg_catalog.regrole[], $8::pg_catalog.oid[]::pg_catalog.regrole[], $9, $10, $11) \
         ON CONFLICT (cache) DO UPDATE SET size_limit = EXCLUDED.size_limit, \
         duration = EXCLUDED.duration, context = EXCLUDED.context, \
         context_ignored_keys = EXCLUDED.context_ignored_keys, readers = EXCLUDED.readers, \
         writers = EXCLUDED.writers, max_bytes = EXCLUDED.max_bytes, notify = EXCLUDED.notify, policy = EXCLUDED.policy, \
         declared_at = pg_catalog.now() \
         WHERE d.owner::pg_catalog.oid OPERATOR(pg_catalog.=) EXCLUDED.owner::pg_catalog.oid \
         RETURNING d.cache"
    );
    let args = [
        name.into(),
        d.size_limit.into(),
        d.duration.into(),
        d.context.into(),
        d.ignored.clone().into(),
        d.owner.into(),
        d.readers.clone().into(),
        d.writers.clone().into(),
        d.max_bytes.into(),
        d.notify.then_some("keys").into(),
        d.policy.name().into(),
    ];
    let written = as_user(table_owner, || {
        Spi::connect_mut(|c| c.update(query.as_str(), None, &args).map(|rows| rows.len()))
            .unwrap_or_else(|e| error!("pg_cache: writing pg_cache_declarations failed: {e}"))
    });
    written > 0
}

/// Runs `f` as `user` in a restricted security context, as PostgreSQL's own
/// internal queries do: the extension's tables are written as their owner, after
/// the caller's privileges were checked. An ERROR in between is undone by
/// (sub)transaction abort, which restores the user.
pub(super) fn as_user<R>(user: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let (mut caller, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: saves and switches the current user and security context.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut caller, &mut context);
        pg_sys::SetUserIdAndSecContext(
            user,
            context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
        );
    }
    let out = f();
    // SAFETY: restores what was saved above.
    unsafe { pg_sys::SetUserIdAndSecContext(caller, context) };
    out
}
