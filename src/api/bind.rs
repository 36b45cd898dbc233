//! Caches bound to tables: `cache_bind` declares that a cache's entries are derived
//! from a table's rows, keyed as the application keys them, and installs the
//! triggers that keep it exact: the keys of the old and the new row are invalidated
//! on INSERT, UPDATE and DELETE (at commit, like `cache_delete`, so the stale-fill
//! rule drops fills of rows older than the change), and TRUNCATE clears the cache.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use super::args::{self, check_name, check_writable};
use super::functions::{notify, owned};
use crate::registry::bindings::{self, Binding, Spec};
use crate::{errors, pending, registry};
use pg_cache_core::writeset::Op;

/// Separates the values of several key columns in a key.
const COLUMN_SEPARATOR: &str = ":";

/// The trigger names of a binding of `cache`: a hash of the name (trigger names are
/// identifiers of at most 63 bytes, as cache names are), one for rows and one for
/// TRUNCATE.
fn trigger_names(cache: &str) -> (String, String) {
    let h = pg_cache_core::key::hash(0, cache.as_bytes());
    (format!("pg_cache_{h:016x}"), format!("pg_cache_{h:016x}_truncate"))
}

fn quote_ident(s: &str) -> String {
    let c = CString::new(s).unwrap_or_else(|_| errors::invalid("a name must not contain NUL".into(), ""));
    // SAFETY: quote_identifier takes a NUL-terminated string and returns one (the
    // input itself or a palloc'd copy).
    unsafe { CStr::from_ptr(pg_sys::quote_identifier(c.as_ptr())).to_string_lossy().into_owned() }
}

fn quote_literal(s: &str) -> String {
    let c = CString::new(s).unwrap_or_else(|_| errors::invalid("a name must not contain NUL".into(), ""));
    // SAFETY: quote_literal_cstr takes a NUL-terminated string and returns a palloc'd one.
    unsafe { CStr::from_ptr(pg_sys::quote_literal_cstr(c.as_ptr())).to_string_lossy().into_owned() }
}

/// The table's qualified, quoted name, after checking it is one rows can be bound
/// from (42809 otherwise).
fn bound_table(relid: pg_sys::Oid) -> String {
    // SAFETY: syscache lookups by OID, and the relation opened and closed with
    // AccessShareLock to read its flags; the names are palloc'd NUL-terminated strings
    // (NULL when the relation does not exist, which regclass input already excludes).
    unsafe {
        let kind = pg_sys::get_rel_relkind(relid) as u8;
        // Not a partitioned table: its row triggers fire on each partition, with
        // the partition's row type and OID, which the binding does not name. Nor a
        // table with inheritance children: rows of a child changed through the
        // parent do not fire the parent's row triggers.
        let has_children = kind == pg_sys::RELKIND_RELATION && {
            let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
            let children = (*(*rel).rd_rel).relhassubclass;
            pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
            children
        };
        if kind != pg_sys::RELKIND_RELATION || has_children {
            errors::raise(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("relation with OID {} is not a plain table without children", u32::from(relid)),
                "A cache can be bound to a table without partitions or inheritance children (bind each of them).",
            );
        }
        let name = pg_sys::get_rel_name(relid);
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        CStr::from_ptr(pg_sys::quote_qualified_identifier(schema, name)).to_string_lossy().into_owned()
    }
}

/// Binds `cache` to the rows of `table`: entries of the cache are keyed by
/// `key_prefix` followed by the text of `key_columns` joined by ':', or by what
/// `key_function` (a function of the table's row returning text) returns. Creates
/// the triggers that invalidate those keys on every INSERT, UPDATE and DELETE and
/// clear the cache on TRUNCATE. Needs the privilege to create a trigger on the table
/// (checked by PostgreSQL as the caller creates them) and to write the cache; the
/// cache must be declared with `context => false` (rows are the same for every role).
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION "cache_bind"(
	"cache" TEXT,
	"table" regclass,
	"key_columns" TEXT[] DEFAULT NULL,
	"key_function" regprocedure DEFAULT NULL,
	"key_prefix" TEXT DEFAULT ''
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_bind_wrapper';
"#
)]
fn cache_bind(
    cache: Option<&str>,
    table: Option<pg_sys::Oid>,
    key_columns: Option<Vec<Option<String>>>,
    key_function: Option<pg_sys::Oid>,
    key_prefix: Option<&str>,
) {
    check_writable("cache_bind");
    let name = check_name(cache);
    let relid = table.unwrap_or_else(|| errors::null_argument("table"));
    let key_prefix = key_prefix.unwrap_or_else(|| errors::null_argument("key_prefix"));
    let (_, config) = registry::resolve(name);
    args::check_write(name, &config);
    if config.context {
        errors::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("cache \"{name}\" keeps entries per role (context => true): it cannot be bound to a table"),
            &format!("Rows are the same for every role: declare it first with SELECT cache_create('{name}', context => false)."),
        );
    }
    let qualified = bound_table(relid);
    let (columns, function) = match (key_columns, key_function) {
        (Some(cols), None) => (Some(key_columns_of(relid, cols)), None),
        (None, Some(f)) => {
            check_key_function(relid, f);
            (None, Some(f))
        }
        _ => errors::invalid(
            "cache_bind takes key_columns or key_function, one of them".into(),
            "For example key_columns => ARRAY['id'], or key_function => 'product_key(product)'::regprocedure.",
        ),
    };
    let binding = Binding { cache: name, relid, key_columns: columns.clone(), key_function: function, key_prefix };
    if !bindings::insert(&binding) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("cache \"{name}\" is already bound to {qualified}"),
            "Unbind it first with cache_unbind.",
        );
    }
    // The trigger's one argument names the cache, a quoted literal; how it keys
    // rows is read from the binding's row (which pg_dump restores by name), never
    // from arguments that whoever may create a trigger could write. Every name in
    // the statement is quoted or qualified by PostgreSQL's own functions.
    let targs = quote_literal(name);
    let (row, truncate) = trigger_names(name);
    let function_name = bindings::qualified_function(c"cache_bound_row_changed");
    // As the caller: PostgreSQL checks its TRIGGER privilege on the table.
    Spi::run(&format!(
        "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {qualified} FOR EACH ROW EXECUTE FUNCTION {function_name}({targs})",
        quote_ident(&row)
    ))
    .unwrap_or_else(|e| error!("pg_cache: creating the trigger failed: {e}"));
    Spi::run(&format!(
        "CREATE TRIGGER {} AFTER TRUNCATE ON {qualified} FOR EACH STATEMENT EXECUTE FUNCTION {function_name}({targs})",
        quote_ident(&truncate)
    ))
    .unwrap_or_else(|e| error!("pg_cache: creating the trigger failed: {e}"));
}

/// The key columns, checked: at least one, none NULL, each a column of the table.
fn key_columns_of(relid: pg_sys::Oid, cols: Vec<Option<String>>) -> Vec<String> {
    if cols.is_empty() {
        errors::invalid("key_columns must name at least one column".into(), "");
    }
    cols.into_iter()
        .map(|c| {
            let c = c.unwrap_or_else(|| errors::null_argument("an element of key_columns"));
            let cname = CString::new(c.as_str()).unwrap_or_else(|_| errors::invalid("a column name must not contain NUL".into(), ""));
            // SAFETY: a syscache lookup of a column by name.
            let attnum = unsafe { pg_sys::get_attnum(relid, cname.as_ptr()) };
            if attnum <= 0 {
                errors::raise(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!("column \"{c}\" of the bound table does not exist"),
                    "key_columns names columns of the table, as written in it.",
                );
            }
            c
        })
        .collect()
}

/// A key function must take the table's row and return text, and the caller must
/// be allowed to execute it.
fn check_key_function(relid: pg_sys::Oid, f: pg_sys::Oid) {
    check_key_function_signature(relid, f);
    // SAFETY: a catalog lookup by OID.
    let allowed = unsafe { pg_sys::pg_proc_aclcheck(f, pg_sys::GetUserId(), pg_sys::ACL_EXECUTE as pg_sys::AclMode) }
        == pg_sys::AclResult::ACLCHECK_OK;
    if !allowed {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied for key_function".into(),
            "The binder must be allowed to execute the key function.",
        );
    }
}

/// 42804 unless `f` takes one argument of `relid`'s row type and returns text (a
/// function called with a row it does not take would misread it).
fn check_key_function_signature(relid: pg_sys::Oid, f: pg_sys::Oid) {
    // SAFETY: syscache lookups by OID (get_func_signature errors on a missing one).
    let (rettype, nargs, argtype, rowtype) = unsafe {
        let mut nargs = 0;
        let mut argtypes: *mut pg_sys::Oid = std::ptr::null_mut();
        let rettype = pg_sys::get_func_signature(f, &mut argtypes, &mut nargs);
        let argtype = if nargs == 1 { *argtypes } else { pg_sys::InvalidOid };
        let rettype = if pg_sys::get_func_retset(f) { pg_sys::InvalidOid } else { rettype };
        (rettype, nargs, argtype, pg_sys::get_rel_type_id(relid))
    };
    if rettype != pg_sys::TEXTOID || nargs != 1 || argtype != rowtype {
        errors::raise(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            "key_function must take one argument, a row of the bound table, and return text".into(),
            "For example CREATE FUNCTION product_key(p product) RETURNS text AS $$ SELECT p.id || ':' || p.lang $$ LANGUAGE sql.",
        );
    }
}

/// Removes the binding of `cache` to `table` and its triggers; whether there was
/// one. Dropping the triggers needs what PostgreSQL asks for it: ownership of the
/// table.
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = r#"
CREATE FUNCTION "cache_unbind"(
	"cache" TEXT,
	"table" regclass
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_unbind_wrapper';
"#
)]
fn cache_unbind(cache: Option<&str>, table: Option<pg_sys::Oid>) -> bool {
    check_writable("cache_unbind");
    let name = check_name(cache);
    let relid = table.unwrap_or_else(|| errors::null_argument("table"));
    let (_, config) = registry::resolve(name);
    args::check_write(name, &config);
    let qualified = bound_table(relid);
    // Found by what they run and the cache they name, not by name: a renamed one
    // left behind would fail every change of the table once the row is gone.
    for trigger in triggers_of(relid, name) {
        Spi::run(&format!("DROP TRIGGER {} ON {qualified}", quote_ident(&trigger)))
            .unwrap_or_else(|e| error!("pg_cache: dropping the trigger failed: {e}"));
    }
    bindings::delete(name, relid)
}

/// The names of the triggers on `relid` that run `cache_bound_row_changed` for
/// `cache`.
fn triggers_of(relid: pg_sys::Oid, cache: &str) -> Vec<String> {
    // The function's name is a parameter: a schema name quoted as an identifier is
    // not quoted as a literal.
    let function = format!("{}()", bindings::qualified_function(c"cache_bound_row_changed"));
    let query = "SELECT tgname::pg_catalog.text, tgargs FROM pg_catalog.pg_trigger \
         WHERE tgrelid OPERATOR(pg_catalog.=) $1 \
         AND tgfoid OPERATOR(pg_catalog.=) $2::pg_catalog.text::pg_catalog.regprocedure::pg_catalog.oid";
    let args = [relid.into(), function.into()];
    let rows: Vec<(String, Vec<u8>)> = Spi::connect(|c| {
        let mut out = Vec::new();
        for row in c.select(query, None, &args)? {
            if let (Some(name), Some(targs)) = (row.get::<String>(1)?, row.get::<Vec<u8>>(2)?) {
                out.push((name, targs));
            }
        }
        Ok::<_, pgrx::spi::SpiError>(out)
    })
    .unwrap_or_else(|e| error!("pg_cache: reading pg_trigger failed: {e}"));
    rows.into_iter()
        .filter(|(_, targs)| targs.split(|&b| b == 0).next() == Some(cache.as_bytes()))
        .map(|(name, _)| name)
        .collect()
}

thread_local! {
    /// How each trigger (by OID) keys rows, read from its binding's row once per
    /// backend, and forgotten at any relcache invalidation of a table: creating or
    /// dropping a trigger sends one, so a trigger OID reused after a wraparound
    /// never meets the settings of the one that had it.
    static SPECS: RefCell<HashMap<pg_sys::Oid, Rc<Spec>>> = RefCell::new(HashMap::new());
    static CALLBACK_REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Relcache invalidation callback: forgets every binding read (they are few and
/// cheap to read again). Allocates nothing and cannot fail.
unsafe extern "C-unwind" fn forget_specs(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    SPECS.with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            m.clear();
        }
    });
}

/// The binding a trigger acts for: `cache_bind`'s row for its cache and table, its
/// key function checked again (a restore may have changed what the name means).
/// 42501 for a trigger made by hand for a cache that is not bound to its table.
fn spec_of(tgoid: pg_sys::Oid, trigger_name: &str, cache: &str, relid: pg_sys::Oid) -> Rc<Spec> {
    if let Some(spec) = SPECS.with_borrow(|m| m.get(&tgoid).cloned()) {
        return spec;
    }
    if !CALLBACK_REGISTERED.get() {
        // SAFETY: registers a callback that lives as long as the backend (a
        // function of this library, which stays loaded), once per backend.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_specs), pg_sys::Datum::from(0)) };
        CALLBACK_REGISTERED.set(true);
    }
    let spec = bindings::spec(cache, relid).unwrap_or_else(|| {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("trigger \"{trigger_name}\" invalidates cache \"{cache}\", which is not bound to this table"),
            "Only cache_bind installs cache_bound_row_changed triggers.",
        )
    });
    if let Some(f) = spec.key_function {
        check_key_function_signature(relid, f);
    }
    let spec = Rc::new(spec);
    SPECS.with_borrow_mut(|m| m.insert(tgoid, spec.clone()));
    spec
}

/// The trigger `cache_bind` installs: invalidates the keys of the old and the new
/// row (INSERT: the new; DELETE: the old), or clears the cache on TRUNCATE.
#[pg_trigger]
fn cache_bound_row_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let targs = trigger.extra_args()?;
    let Some(cache) = targs.first() else {
        errors::invalid("cache_bound_row_changed is installed by cache_bind, with its arguments".into(), "Use cache_bind.");
    };
    let data = trigger.trigger_data();
    let spec = spec_of(trigger.trigger().tgoid, trigger.name()?, cache, trigger.relid()?);
    let (_, config) = registry::resolve(cache);
    let event = data.tg_event;
    if event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_TRUNCATE || config.context {
        // TRUNCATE; or the cache was redeclared to keep entries per role, so a
        // key in this role's context would not cover the others: all of it goes.
        pending::push(Op::Clear { cache: owned(cache) });
        notify(cache);
        return Ok(None);
    }
    // SAFETY: a row trigger's relation is open while it fires.
    let tupdesc = unsafe { (*data.tg_relation).rd_att };
    let mut tuples = vec![data.tg_trigtuple];
    if event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_UPDATE {
        tuples.push(data.tg_newtuple);
    }
    let mut keys: Vec<String> = Vec::with_capacity(2);
    for tuple in tuples.into_iter().filter(|t| !t.is_null()) {
        let key = match (&spec.key_columns, spec.key_function) {
            (Some(columns), _) => key_from_columns(tuple, tupdesc, columns),
            (None, Some(f)) => key_from_function(tuple, tupdesc, f),
            // The table's CHECK forbids it; never invalidate nothing in silence.
            (None, None) => errors::invalid(
                format!("the binding of cache \"{cache}\" has neither key columns nor a key function"),
                "Bind the cache again with cache_unbind and cache_bind.",
            ),
        };
        if let Some(key) = key {
            let key = format!("{}{key}", spec.key_prefix);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    // An invalidation is never skipped, whatever pg_cache.max_key_size says: a
    // longer key cannot be cached, and the row change must not fail for it.
    for key in keys {
        let stored = registry::stored_key(&config, &key);
        pending::push(Op::Delete { cache: owned(cache), key: stored, seen: None });
    }
    Ok(None)
}

/// The key of a row from its columns: their text joined by ':'; `None` when one is
/// NULL (no key is made of it).
fn key_from_columns(tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc, columns: &[String]) -> Option<String> {
    let mut parts = Vec::with_capacity(columns.len());
    for c in columns {
        let cname = CString::new(c.as_str()).ok()?;
        // SAFETY: SPI_fnumber and SPI_getvalue read a tuple of this descriptor and
        // need no SPI connection; the value is a palloc'd NUL-terminated string.
        let value = unsafe {
            let n = pg_sys::SPI_fnumber(tupdesc, cname.as_ptr());
            if n <= 0 {
                errors::raise(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!("column \"{c}\" of a bound table no longer exists"),
                    "Rebind the cache (cache_unbind, cache_bind) after renaming or dropping a key column.",
                );
            }
            let v = pg_sys::SPI_getvalue(tuple, tupdesc, n);
            if v.is_null() {
                return None;
            }
            CStr::from_ptr(v).to_string_lossy().into_owned()
        };
        parts.push(value);
    }
    Some(parts.join(COLUMN_SEPARATOR))
}

/// The key of a row from the binding's key function; `None` when it returns NULL.
fn key_from_function(tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc, f: pg_sys::Oid) -> Option<String> {
    // SAFETY: calls the function (checked at cache_bind to take this table's row
    // and return text) with the row as a composite datum, through a FunctionCallInfo
    // of one argument, as fmgr's own callers do; a NULL result is read from isnull.
    unsafe {
        let row = pg_sys::heap_copy_tuple_as_datum(tuple, tupdesc);
        let mut flinfo = pg_sys::FmgrInfo::default();
        pg_sys::fmgr_info(f, &mut flinfo);
        let fcinfo = pg_sys::palloc0(
            std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>() + std::mem::size_of::<pg_sys::NullableDatum>(),
        ) as *mut pg_sys::FunctionCallInfoBaseData;
        (*fcinfo).flinfo = &mut flinfo;
        (*fcinfo).fncollation = pg_sys::DEFAULT_COLLATION_OID;
        (*fcinfo).nargs = 1;
        let arg = &mut (*fcinfo).args.as_mut_slice(1)[0];
        arg.value = row;
        arg.isnull = false;
        let func = flinfo.fn_addr.expect("fmgr_info sets fn_addr");
        let result = pgrx::pg_sys::ffi::pg_guard_ffi_boundary(|| func(fcinfo));
        let out = (!(*fcinfo).isnull).then(|| String::from_datum(result, false)).flatten();
        pg_sys::pfree(fcinfo.cast());
        out
    }
}
