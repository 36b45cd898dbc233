//! Values as their stored bytes: a `jsonb` or `bytea` argument is taken as the
//! varlena PostgreSQL passes (detoasted, never parsed or printed), and a value is
//! returned as a varlena built from the cache's bytes. One definition for every kind
//! (see `raw_value!`), so that a read or write is written once for all of them.

use pg_cache_core::value::ValueKind;

/// A value of one kind as a varlena datum.
pub trait RawValue: Sized {
    /// The kind its entries record.
    const KIND: ValueKind;
    /// The value's bytes without the varlena header.
    fn bytes(&self) -> &[u8];
    /// A new datum of `len` payload bytes written by `fill`.
    fn build(len: usize, fill: impl FnOnce(&mut [u8])) -> Self;
}

/// Defines `$name`, a detoasted varlena of SQL type `$sql` (type OID `$oid`) holding
/// a [`RawValue`] of kind `$kind`, with the pgrx glue to take it as an argument
/// (NULL as `None`) and return it.
macro_rules! raw_value {
    ($(#[$doc:meta])* $name:ident, $sql:literal, $oid:expr, $kind:expr) => {
        $(#[$doc])*
        pub struct $name(*mut ::pgrx::pg_sys::varlena);

        impl $crate::api::raw::RawValue for $name {
            const KIND: ::pg_cache_core::value::ValueKind = $kind;

            fn bytes(&self) -> &[u8] {
                // SAFETY: self.0 is a detoasted varlena that lives in the current memory context.
                unsafe {
                    ::std::slice::from_raw_parts(
                        ::pgrx::vardata_any(self.0) as *const u8,
                        ::pgrx::varsize_any_exhdr(self.0),
                    )
                }
            }

            fn build(len: usize, fill: impl FnOnce(&mut [u8])) -> $name {
                // SAFETY: palloc'd space for a 4-byte header and `len` bytes, all written below.
                unsafe {
                    let total = len + ::pgrx::pg_sys::VARHDRSZ;
                    let p = ::pgrx::pg_sys::palloc(total) as *mut ::pgrx::pg_sys::varlena;
                    ::pgrx::set_varsize_4b(p, total as i32);
                    let data = ::std::slice::from_raw_parts_mut((p as *mut u8).add(::pgrx::pg_sys::VARHDRSZ), len);
                    fill(data);
                    $name(p)
                }
            }
        }

        impl ::pgrx::datum::FromDatum for $name {
            unsafe fn from_polymorphic_datum(
                datum: ::pgrx::pg_sys::Datum,
                is_null: bool,
                _: ::pgrx::pg_sys::Oid,
            ) -> Option<Self> {
                // SAFETY: PostgreSQL passes a varlena datum of this type for our arguments of it.
                (!is_null).then(|| $name(unsafe { ::pgrx::pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr()) }))
            }
        }

        impl ::pgrx::datum::IntoDatum for $name {
            fn into_datum(self) -> Option<::pgrx::pg_sys::Datum> {
                Some(::pgrx::pg_sys::Datum::from(self.0))
            }

            fn type_oid() -> ::pgrx::pg_sys::Oid {
                $oid
            }
        }

        ::pgrx::prelude::impl_sql_translatable!($name, $sql);

        // SAFETY: the argument is a datum of this type (our SQL signatures say so);
        // NULL is handled by `Option<$name>`, and a NULL for a non-Option argument
        // panics into an ERROR.
        unsafe impl<'fcx> ::pgrx::callconv::ArgAbi<'fcx> for $name {
            unsafe fn unbox_arg_unchecked(arg: ::pgrx::callconv::Arg<'_, 'fcx>) -> Self {
                let index = arg.index();
                // SAFETY: as above.
                unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
            }

            unsafe fn unbox_nullable_arg(arg: ::pgrx::callconv::Arg<'_, 'fcx>) -> ::pgrx::nullable::Nullable<Self> {
                // SAFETY: as above.
                unsafe { arg.unbox_arg_using_from_datum() }.into()
            }
        }

        // SAFETY: the datum is a palloc'd varlena of this type, returned as the function's result.
        unsafe impl ::pgrx::callconv::BoxRet for $name {
            unsafe fn box_into<'fcx>(self, fcinfo: &mut ::pgrx::callconv::FcInfo<'fcx>) -> ::pgrx::datum::Datum<'fcx> {
                match ::pgrx::datum::IntoDatum::into_datum(self) {
                    // SAFETY: as above.
                    Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
                    None => fcinfo.return_null(),
                }
            }
        }
    };
}

pub(crate) use raw_value;

raw_value!(
    /// A detoasted `bytea` datum.
    RawBytea, "bytea", ::pgrx::pg_sys::BYTEAOID, ValueKind::Bytea
);
