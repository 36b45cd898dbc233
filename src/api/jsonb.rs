//! `jsonb` as its on-disk bytes. pgrx's `JsonB` goes through serde_json and text;
//! a cache only stores and returns the bytes, so it needs neither.

use pgrx::pg_sys;
use pg_cache_core::value::ValueKind;

use super::raw::RawValue;

super::raw::raw_value!(
    /// A detoasted `jsonb` datum.
    RawJsonb, "jsonb", pg_sys::JSONBOID, ValueKind::Jsonb
);

/// Why a jsonb value is not a counter.
#[derive(Debug, PartialEq, Eq)]
pub enum NotInteger {
    /// Another JSON type (its `jsonb_typeof` name), or a number with a fraction.
    Kind(&'static str),
    /// An integer outside bigint's range.
    OutOfRange,
}

impl RawJsonb {
    /// The bigint this value holds: a JSON number with no fraction, in range.
    pub fn as_integer(&self) -> Result<i64, NotInteger> {
        // SAFETY: a jsonb datum built by `build` (or detoasted with a 4-byte header):
        // its container is int-aligned as JsonbToCString reads it; the result is a
        // palloc'd NUL-terminated string.
        let text = unsafe {
            let len = self.bytes().len() as std::ffi::c_int;
            let container = pgrx::vardata_any(self.0) as *mut pg_sys::JsonbContainer;
            std::ffi::CStr::from_ptr(pg_sys::JsonbToCString(std::ptr::null_mut(), container, len))
        };
        let text = text.to_bytes();
        match text.first() {
            Some(b'"') => return Err(NotInteger::Kind("string")),
            Some(b'{') => return Err(NotInteger::Kind("object")),
            Some(b'[') => return Err(NotInteger::Kind("array")),
            Some(b't' | b'f') => return Err(NotInteger::Kind("boolean")),
            Some(b'n') => return Err(NotInteger::Kind("null")),
            _ => {}
        }
        // numeric_out writes digits with an optional sign and fraction, no exponent.
        let text = std::str::from_utf8(text).map_err(|_| NotInteger::Kind("number"))?;
        text.parse::<i64>().map_err(|e| match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => NotInteger::OutOfRange,
            _ => NotInteger::Kind("number with a fraction"),
        })
    }

    /// This datum with a 4-byte header (a copy if it had a short one), so that its
    /// container is int-aligned for the functions that walk it.
    pub fn aligned(self) -> RawJsonb {
        // SAFETY: a detoasted varlena; pg_detoast_datum returns it as is when it has
        // a 4-byte header, else a palloc'd copy that has one.
        RawJsonb(unsafe { pg_sys::pg_detoast_datum(self.0) })
    }

    /// The members of a JSON object, in jsonb's key order, each value as a jsonb
    /// datum of its own; `None` when this is not an object. Call on an
    /// [`RawJsonb::aligned`] datum.
    pub fn object_members(&self) -> Option<Vec<(String, RawJsonb)>> {
        // SAFETY: an aligned jsonb datum (see `aligned`), walked with PostgreSQL's
        // own iterator, which palloc's; the strings it yields point into the datum,
        // which outlives the walk, and are copied out.
        unsafe {
            let container = pgrx::vardata_any(self.0) as *mut pg_sys::JsonbContainer;
            if (*container).header & pg_sys::JB_FOBJECT == 0 {
                return None;
            }
            let mut members = Vec::new();
            let mut it = pg_sys::JsonbIteratorInit(container);
            let mut v: pg_sys::JsonbValue = std::mem::zeroed();
            let mut key = String::new();
            loop {
                match pg_sys::JsonbIteratorNext(&mut it, &mut v, true) {
                    pg_sys::JsonbIteratorToken::WJB_KEY => {
                        let s = v.val.string;
                        let bytes = std::slice::from_raw_parts(s.val as *const u8, s.len as usize);
                        key = String::from_utf8(bytes.to_vec())
                            .unwrap_or_else(|_| crate::errors::invalid("a key of entries is not valid UTF-8".into(), ""));
                    }
                    pg_sys::JsonbIteratorToken::WJB_VALUE => {
                        let value = RawJsonb(pg_sys::JsonbValueToJsonb(&mut v) as *mut pg_sys::varlena);
                        members.push((std::mem::take(&mut key), value));
                    }
                    pg_sys::JsonbIteratorToken::WJB_DONE => break,
                    _ => {}
                }
            }
            Some(members)
        }
    }

    /// The JSON number `n`.
    pub fn from_integer(n: i64) -> RawJsonb {
        // SAFETY: a numeric scalar JsonbValue, converted to a palloc'd jsonb datum
        // with a 4-byte header.
        unsafe {
            let mut v = pg_sys::JsonbValue {
                type_: pg_sys::jbvType::jbvNumeric,
                val: pg_sys::JsonbValue__bindgen_ty_1 { numeric: pg_sys::int64_to_numeric(n) },
            };
            RawJsonb(pg_sys::JsonbValueToJsonb(&mut v) as *mut pg_sys::varlena)
        }
    }
}
