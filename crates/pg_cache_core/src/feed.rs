//! The change feed's payloads: what a commit announces of a cache declared with
//! `notify => 'keys'`, as JSON objects small enough for `NOTIFY`.
//!
//! ```text
//! {"cache":"c","keys":["k1","k2"],"tags":["t"],"prefixes":["user:7:"]}
//! {"cache":"c","cleared":true}
//! ```
//! A commit's changes are split over several payloads when they do not fit in one;
//! past [`MAX_PAYLOADS`] (or a single name too long for a payload) they are
//! announced as `cleared`: a listener drops everything it holds of the cache.

/// The longest payload `NOTIFY` accepts with 8 kB pages (it refuses 8,000 bytes
/// and more: BLCKSZ − NAMEDATALEN − 128); the server passes its own.
pub const MAX_PAYLOAD: usize = 7_999;
/// Payloads one commit sends for one cache before it says `cleared` instead.
pub const MAX_PAYLOADS: usize = 8;

/// What one commit changed in one cache, by name: user keys written or deleted,
/// tags and key prefixes invalidated, and whether it cleared the cache.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    pub keys: Vec<&'a [u8]>,
    pub tags: Vec<&'a str>,
    pub prefixes: Vec<&'a [u8]>,
    pub cleared: bool,
}

/// A JSON string literal of `s` (lossy for bytes that are not UTF-8, which SQL text
/// keys never hold).
fn quoted(s: &[u8]) -> String {
    let s = String::from_utf8_lossy(s);
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The payloads announcing `changes` of `cache`, each at most `max_payload` bytes;
/// empty when nothing changed.
pub fn payloads(cache: &str, changes: &Changes, max_payload: usize) -> Vec<String> {
    let head = format!("{{\"cache\":{}", quoted(cache.as_bytes()));
    let cleared = || vec![format!("{head},\"cleared\":true}}")];
    if changes.cleared {
        return cleared();
    }
    let items = changes
        .keys
        .iter()
        .map(|k| ("keys", quoted(k)))
        .chain(changes.tags.iter().map(|t| ("tags", quoted(t.as_bytes()))))
        .chain(changes.prefixes.iter().map(|p| ("prefixes", quoted(p))));
    let mut out: Vec<String> = Vec::new();
    // The payload being built: its text so far, and the array it is in.
    let mut current = String::new();
    let mut array = "";
    for (kind, item) in items {
        loop {
            let opening = if current.is_empty() { head.len() } else { current.len() };
            let extra = if kind == array { 1 + item.len() } else { 2 + kind.len() + 4 + item.len() };
            // Room for this item and the closing "]}".
            if opening + extra + 2 <= max_payload {
                if current.is_empty() {
                    current.push_str(&head);
                }
                if kind == array {
                    current.push(',');
                } else {
                    if !array.is_empty() {
                        current.push(']');
                    }
                    current.push_str(&format!(",\"{kind}\":["));
                    array = kind;
                }
                current.push_str(&item);
                break;
            }
            if current.is_empty() {
                // Alone it does not fit: no payload can name it.
                return cleared();
            }
            current.push_str("]}");
            out.push(std::mem::take(&mut current));
            array = "";
            if out.len() == MAX_PAYLOADS {
                return cleared();
            }
        }
    }
    if !current.is_empty() {
        current.push_str("]}");
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_announced_in_one_payload_when_it_fits() {
        let changes = Changes { keys: vec![b"a", b"q\"uote"], tags: vec!["t"], prefixes: vec![b"user:7:"], cleared: false };
        assert_eq!(
            payloads("c", &changes, MAX_PAYLOAD),
            [r#"{"cache":"c","keys":["a","q\"uote"],"tags":["t"],"prefixes":["user:7:"]}"#]
        );
        assert!(payloads("c", &Changes::default(), MAX_PAYLOAD).is_empty());
        let cleared = Changes { keys: vec![b"a"], cleared: true, ..Default::default() };
        assert_eq!(payloads("c", &cleared, MAX_PAYLOAD), [r#"{"cache":"c","cleared":true}"#]);
    }

    #[test]
    fn many_changes_are_split_under_the_limit_then_fall_back_to_cleared() {
        let keys: Vec<String> = (0..1000).map(|i| format!("key:{i:06}")).collect();
        let changes = Changes { keys: keys.iter().map(|k| k.as_bytes()).collect(), ..Default::default() };
        let out = payloads("c", &changes, MAX_PAYLOAD);
        assert!(out.len() > 1 && out.len() <= MAX_PAYLOADS, "{} payloads", out.len());
        let mut seen = Vec::new();
        for p in &out {
            assert!(p.len() <= MAX_PAYLOAD && p.starts_with(r#"{"cache":"c","keys":["#) && p.ends_with("]}"), "{p}");
            seen.extend(p[r#"{"cache":"c","keys":["#.len()..p.len() - 2].split(',').map(|k| k.trim_matches('"').to_string()));
        }
        assert_eq!(seen, keys, "every key once, in order");
        let many: Vec<String> = (0..10_000).map(|i| format!("key:{i:06}")).collect();
        let changes = Changes { keys: many.iter().map(|k| k.as_bytes()).collect(), ..Default::default() };
        assert_eq!(payloads("c", &changes, MAX_PAYLOAD), [r#"{"cache":"c","cleared":true}"#]);
        let long = vec![b'x'; MAX_PAYLOAD];
        let changes = Changes { keys: vec![b"a", &long], ..Default::default() };
        assert_eq!(payloads("c", &changes, MAX_PAYLOAD), [r#"{"cache":"c","cleared":true}"#], "a key no payload can hold");
    }

    #[test]
    fn control_characters_are_escaped() {
        let changes = Changes { keys: vec![b"a\nb\\c"], ..Default::default() };
        assert_eq!(payloads("c", &changes, MAX_PAYLOAD), [r#"{"cache":"c","keys":["a\u000ab\\c"]}"#]);
    }
}
