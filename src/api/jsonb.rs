//! `jsonb` as its on-disk bytes. pgrx's `JsonB` goes through serde_json and text;
//! a cache only stores and returns the bytes, so it needs neither.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// A detoasted `jsonb` datum.
pub struct RawJsonb(*mut pg_sys::varlena);

impl RawJsonb {
    /// The jsonb binary without its varlena header.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: self.0 is a detoasted varlena that lives in the current memory context.
        unsafe {
            std::slice::from_raw_parts(
                pgrx::vardata_any(self.0) as *const u8,
                pgrx::varsize_any_exhdr(self.0),
            )
        }
    }

    /// A new jsonb datum of `len` payload bytes written by `fill`.
    pub fn build(len: usize, fill: impl FnOnce(&mut [u8])) -> RawJsonb {
        // SAFETY: palloc'd space for a 4-byte header and `len` bytes, all written below.
        unsafe {
            let total = len + pg_sys::VARHDRSZ;
            let p = pg_sys::palloc(total) as *mut pg_sys::varlena;
            pgrx::set_varsize_4b(p, total as i32);
            let data = std::slice::from_raw_parts_mut((p as *mut u8).add(pg_sys::VARHDRSZ), len);
            fill(data);
            RawJsonb(p)
        }
    }
}

impl FromDatum for RawJsonb {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        // SAFETY: PostgreSQL passes a jsonb varlena datum for our jsonb arguments.
        (!is_null).then(|| RawJsonb(unsafe { pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr()) }))
    }
}

impl IntoDatum for RawJsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.0))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

impl_sql_translatable!(RawJsonb, "jsonb");

// SAFETY: the argument is a jsonb datum (our SQL signatures say so); NULL is handled
// by `Option<RawJsonb>`, and a NULL for a non-Option argument panics into an ERROR.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for RawJsonb {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: as above.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(arg: pgrx::callconv::Arg<'_, 'fcx>) -> pgrx::nullable::Nullable<Self> {
        // SAFETY: as above.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

// SAFETY: the datum is a palloc'd jsonb varlena, returned as the function's result.
unsafe impl pgrx::callconv::BoxRet for RawJsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut pgrx::callconv::FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        match self.into_datum() {
            // SAFETY: as above.
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}
