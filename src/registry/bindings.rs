//! The bindings table (`pg_cache_bindings` in the extension's schema): which caches
//! are derived from which tables (`cache_bind`). Rows of an extension table, so
//! they survive restarts, `pg_dump` and `pg_restore`, as the triggers they go with
//! do. Written as the table's owner after the caller's privileges were checked;
//! every name in the SQL is qualified, so no search_path can substitute anything.

use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::declarations::{as_user, equal_key, extension_schema, read_row};

const TABLE: &CStr = c"pg_cache_bindings";

/// The table's qualified name and owner; `None` when the extension is not installed.
fn table() -> Option<(String, pg_sys::Oid)> {
    let schema = extension_schema()?;
    // SAFETY: syscache lookups by name and OID inside a transaction; the names
    // returned are palloc'd NUL-terminated strings.
    unsafe {
        let relid = pg_sys::get_relname_relid(TABLE.as_ptr(), schema);
        if relid == pg_sys::InvalidOid {
            return None;
        }
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
        let owner = (*(*rel).rd_rel).relowner;
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        let q = pg_sys::quote_qualified_identifier(pg_sys::get_namespace_name(schema), TABLE.as_ptr());
        Some((CStr::from_ptr(q).to_string_lossy().into_owned(), owner))
    }
}

/// The schema-qualified, quoted name of the extension's function `name`.
pub fn qualified_function(name: &CStr) -> String {
    let schema = extension_schema().unwrap_or_else(|| error!("pg_cache is not installed in this database"));
    // SAFETY: a syscache lookup by OID and a quoting function over NUL-terminated strings.
    unsafe {
        let q = pg_sys::quote_qualified_identifier(pg_sys::get_namespace_name(schema), name.as_ptr());
        CStr::from_ptr(q).to_string_lossy().into_owned()
    }
}

/// A binding as `cache_bind` records it.
pub struct Binding<'a> {
    pub cache: &'a str,
    pub relid: pg_sys::Oid,
    pub key_columns: Option<Vec<String>>,
    pub key_function: Option<pg_sys::Oid>,
    pub key_prefix: &'a str,
}

/// Records a binding; `false` when (cache, table) is bound already.
pub fn insert(b: &Binding) -> bool {
    let (table, owner) = table().unwrap_or_else(|| error!("pg_cache_bindings is missing: run ALTER EXTENSION pg_cache UPDATE"));
    let query = format!(
        "INSERT INTO {table} (cache, relid, key_columns, key_function, key_prefix) \
         VALUES ($1, $2::pg_catalog.oid::pg_catalog.regclass, $3, $4::pg_catalog.oid::pg_catalog.regprocedure, $5) \
         ON CONFLICT (cache, relid) DO NOTHING RETURNING cache"
    );
    let args = [
        b.cache.into(),
        b.relid.into(),
        b.key_columns.clone().into(),
        b.key_function.into(),
        b.key_prefix.into(),
    ];
    as_user(owner, || {
        Spi::connect_mut(|c| c.update(query.as_str(), None, &args).map(|rows| rows.len()))
            .unwrap_or_else(|e| error!("pg_cache: writing pg_cache_bindings failed: {e}"))
    }) > 0
}

/// Removes the binding of `cache` to `relid`; whether there was one.
pub fn delete(cache: &str, relid: pg_sys::Oid) -> bool {
    let Some((table, owner)) = table() else { return false };
    let query = format!(
        "DELETE FROM {table} WHERE cache OPERATOR(pg_catalog.=) $1 \
         AND relid::pg_catalog.oid OPERATOR(pg_catalog.=) $2 RETURNING cache"
    );
    let args = [cache.into(), relid.into()];
    as_user(owner, || {
        Spi::connect_mut(|c| c.update(query.as_str(), None, &args).map(|rows| rows.len()))
            .unwrap_or_else(|e| error!("pg_cache: writing pg_cache_bindings failed: {e}"))
    }) > 0
}

/// How a binding keys its cache, as its row says.
pub struct Spec {
    pub key_columns: Option<Vec<String>>,
    /// The key function's OID as it is now (the row names it: a restore keeps it).
    pub key_function: Option<pg_sys::Oid>,
    pub key_prefix: String,
}

/// The binding of `cache` to `relid`, if `cache_bind` made one: the trigger keys
/// rows only by it, never by its own arguments, which anyone who may create a
/// trigger could write. Read by an index scan with the latest snapshot, not the
/// transaction's: which triggers fire follows the table's current definition, so
/// a REPEATABLE READ transaction that took its snapshot before a rebinding must
/// still key rows as the binding now says.
pub fn spec(cache: &str, relid: pg_sys::Oid) -> Option<Spec> {
    let schema = extension_schema()?;
    let cname = CString::new(cache).ok()?;
    // SAFETY: catalog lookups by name; the scan keys compare text and OID columns
    // with text and OID datums (see read_row).
    unsafe {
        let table = pg_sys::get_relname_relid(TABLE.as_ptr(), schema);
        let index = pg_sys::get_relname_relid(c"pg_cache_bindings_pkey".as_ptr(), schema);
        if table == pg_sys::InvalidOid || index == pg_sys::InvalidOid {
            return None;
        }
        let attnum = |column: &CStr| pg_sys::get_attnum(table, column.as_ptr());
        let (a_cache, a_relid) = (attnum(c"cache"), attnum(c"relid"));
        let (a_columns, a_function, a_prefix) = (attnum(c"key_columns"), attnum(c"key_function"), attnum(c"key_prefix"));
        let mut keys = [
            equal_key(a_cache, pg_sys::F_TEXTEQ, pg_sys::Datum::from(pg_sys::cstring_to_text(cname.as_ptr()))),
            equal_key(a_relid, pg_sys::F_OIDEQ, pg_sys::Datum::from(relid)),
        ];
        read_row(table, index, &mut keys, |column| Spec {
            key_columns: column(a_columns)
                .and_then(|(d, null)| Vec::<Option<String>>::from_datum(d, null))
                .map(|v| v.into_iter().flatten().collect()),
            key_function: column(a_function).and_then(|(d, null)| pg_sys::Oid::from_datum(d, null)),
            key_prefix: column(a_prefix).and_then(|(d, null)| String::from_datum(d, null)).unwrap_or_default(),
        })
    }
}
