//! Key encoding: the bytes an entry is stored under.
//!
//! A stored key is `context prefix ++ user key`. The prefix makes entries of one role
//! (and of one set of context setting values) invisible to another. Its layout is
//! self-delimiting, so two different (context, key) pairs never encode alike:
//!
//! ```text
//! u32 role (u32::MAX when the role is ignored) | u16 n | n × (u32 len | bytes) | key
//! ```
//! An unset setting is encoded with len = u32::MAX and no bytes.

/// The context of a read or write: who asks and the values of the context settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context<'a> {
    pub role: Option<u32>,
    pub settings: Vec<Option<&'a [u8]>>,
}

impl Context<'_> {
    /// The shared context of a cache declared with `context => false`.
    pub fn shared() -> Context<'static> {
        Context { role: None, settings: Vec::new() }
    }
}

/// The stored key; `Err` when the buffer cannot be allocated (the caller raises
/// 53200 rather than let the process abort).
pub fn encode(ctx: &Context<'_>, key: &[u8]) -> Result<Vec<u8>, std::collections::TryReserveError> {
    let settings_len: usize = ctx.settings.iter().map(|s| 4 + s.map_or(0, |v| v.len())).sum();
    let mut out = Vec::new();
    out.try_reserve_exact(6 + settings_len + key.len())?;
    out.extend_from_slice(&ctx.role.unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&(ctx.settings.len() as u16).to_le_bytes());
    for s in &ctx.settings {
        match s {
            Some(v) => {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
    out.extend_from_slice(key);
    Ok(out)
}

/// 64-bit hash of a stored key within one cache slot (FNV-1a, then a murmur3
/// finalizer so that the low bits used for bucket selection are well mixed).
pub fn hash(slot: u32, stored_key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (slot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for &b in stored_key {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(ctx: &Context<'_>, key: &[u8]) -> Vec<u8> {
        super::encode(ctx, key).expect("memory")
    }

    #[test]
    fn different_contexts_never_encode_alike() {
        let a = Context { role: Some(10), settings: vec![Some(b"en"), None] };
        let b = Context { role: Some(11), settings: vec![Some(b"en"), None] };
        let c = Context { role: Some(10), settings: vec![Some(b"fr"), None] };
        let d = Context { role: Some(10), settings: vec![None, Some(b"en")] };
        let keys: Vec<_> = [&a, &b, &c, &d].iter().map(|c| encode(c, b"k")).collect();
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j], "contexts {i} and {j} collide");
            }
        }
    }

    #[test]
    fn setting_boundaries_are_unambiguous() {
        // "ab" + key "c" must differ from "a" + key "bc".
        let x = encode(&Context { role: None, settings: vec![Some(b"ab")] }, b"c");
        let y = encode(&Context { role: None, settings: vec![Some(b"a")] }, b"bc");
        assert_ne!(x, y);
        // An empty setting differs from an unset one.
        let e = encode(&Context { role: None, settings: vec![Some(b"")] }, b"k");
        let u = encode(&Context { role: None, settings: vec![None] }, b"k");
        assert_ne!(e, u);
    }

    #[test]
    fn shared_context_ignores_role() {
        assert_eq!(encode(&Context::shared(), b"k"), encode(&Context::shared(), b"k"));
        assert_ne!(encode(&Context::shared(), b"k"), encode(&Context::shared(), b"j"));
    }

    #[test]
    fn hash_depends_on_slot_and_key() {
        assert_ne!(hash(1, b"abc"), hash(2, b"abc"));
        assert_ne!(hash(1, b"abc"), hash(1, b"abd"));
        assert_eq!(hash(7, b"abc"), hash(7, b"abc"));
    }
}
