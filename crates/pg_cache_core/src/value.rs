//! Kinds of stored values. Each entry's head records its value's kind and a read
//! asks for one, so that values other than jsonb (bytea) can live
//! beside it: a read of another kind than stored is told so, never handed bytes it
//! would misread.

/// The kind of a stored value, as one byte of the entry head (0 is never used, so
/// that a zeroed head is no valid entry).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// PostgreSQL's on-disk `jsonb` varlena body, as `cache_get` returns it.
    Jsonb = 1,
    /// A `bytea`'s bytes, as `cache_get_bytes` returns them.
    Bytea = 2,
}

impl ValueKind {
    pub fn from_byte(b: u8) -> Option<ValueKind> {
        match b {
            1 => Some(ValueKind::Jsonb),
            2 => Some(ValueKind::Bytea),
            _ => None,
        }
    }

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Jsonb => "jsonb",
            ValueKind::Bytea => "bytea",
        }
    }
}
