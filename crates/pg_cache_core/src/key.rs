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

/// The user's key inside a stored key: what follows its context prefix (`None`
/// when the bytes are not a stored key).
pub fn user_part(stored: &[u8]) -> Option<&[u8]> {
    let n = u16::from_le_bytes(stored.get(4..6)?.try_into().ok()?) as usize;
    let mut at = 6;
    for _ in 0..n {
        let len = u32::from_le_bytes(stored.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if len != u32::MAX {
            at += len as usize;
        }
    }
    stored.get(at..)
}

/// SQL `LIKE` with its default escape: `%` any run of characters, `_` one, `\`
/// makes the next one literal. Greedy with one backtrack point: O(len × pattern).
pub fn like(s: &str, pattern: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Any,
        One,
        Lit(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    let s: Vec<char> = s.chars().collect();
    let (mut i, mut j) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while i < s.len() {
        match toks.get(j) {
            Some(Tok::One) => (i, j) = (i + 1, j + 1),
            Some(Tok::Lit(c)) if *c == s[i] => (i, j) = (i + 1, j + 1),
            Some(Tok::Any) => {
                back = Some((j, i));
                j += 1;
            }
            _ => match back {
                Some((star, at)) => {
                    back = Some((star, at + 1));
                    (i, j) = (at + 1, star + 1);
                }
                None => return false,
            },
        }
    }
    toks[j..].iter().all(|t| *t == Tok::Any)
}

/// 64-bit hash of a stored key within one cache slot: [`raw_hash`] of the key mixed
/// with the slot (a murmur3 finalizer, so that the low bits used for bucket
/// selection are well mixed).
#[inline]
pub fn hash(slot: u32, stored_key: &[u8]) -> u64 {
    slot_hash(slot, raw_hash(stored_key))
}

/// FNV-1a of a stored key, the same on every server: what a WAL record carries to
/// name a key, since slot indexes differ from node to node ([`slot_hash`] turns it
/// into the key's hash in a slot there).
#[inline]
pub fn raw_hash(stored_key: &[u8]) -> u64 {
    fnv_continue(0xcbf2_9ce4_8422_2325, stored_key)
}

/// FNV-1a of `bytes` from state `h`: a plain loop (a `flat_map` over parts cost a
/// `cache_get` hit 91 instructions in callgrind).
#[inline]
fn fnv_continue(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// [`raw_hash`] of the concatenation of `parts` (without allocating it).
pub fn raw_hash_of(parts: &[&[u8]]) -> u64 {
    parts.iter().fold(0xcbf2_9ce4_8422_2325, |h, p| fnv_continue(h, p))
}

/// The hash in cache slot `slot` of the key whose [`raw_hash`] is `raw`.
#[inline]
pub fn slot_hash(slot: u32, raw: u64) -> u64 {
    let mut h = raw ^ (slot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A cache name's hash, the same on every server (WAL records name caches by it).
pub fn name_hash(name: &[u8]) -> u64 {
    slot_hash(u32::MAX, raw_hash(name))
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
    fn the_user_part_is_what_follows_the_context() {
        let ctx = Context { role: Some(10), settings: vec![Some(b"fr"), None, Some(b"")] };
        assert_eq!(user_part(&encode(&ctx, b"user:7")), Some(&b"user:7"[..]));
        assert_eq!(user_part(&encode(&Context::shared(), b"")), Some(&b""[..]));
        assert_eq!(user_part(b"\x01"), None);
    }

    #[test]
    fn like_matches_as_sql_does() {
        assert!(like("user:7:name", "user:%") && like("user:7:name", "%name") && like("user:7:name", "user:_:%"));
        assert!(!like("user:17:name", "user:_:%") && !like("user", "user:%"));
        assert!(like("50%", "50\\%") && !like("500", "50\\%"));
        assert!(like("", "%") && !like("", "_") && like("abc", "a%c") && like("abcbc", "%bc") && !like("abcb", "%bc"));
        assert!(like("été", "_t_"));
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
