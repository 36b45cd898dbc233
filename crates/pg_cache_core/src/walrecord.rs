//! The WAL record that carries a commit's invalidations to hot standbys: its bytes,
//! written on the primary at PRE_COMMIT and read by the standby's redo. Caches and
//! keys are named by hashes ([`crate::key::name_hash`], [`crate::key::raw_hash`]),
//! never by slot: slots differ from node to node. A cache's `encoding` names how its
//! keys were stored (context or not, ignored keys, context settings): a standby that
//! stores them otherwise cannot match the key hashes and invalidates the whole cache.
//!
//! ```text
//! version u8 = 2 | flags u8 (DB_CLEAR, DB_DROP, IMMEDIATE) | db u32 | caches u16
//! per cache: name u64 | encoding u64 | flags u8 (CLEAR, DECLARE) | tags u16 | prefixes u16 | keys u32
//!            | tags × u64 | prefixes × (len u16 | bytes) | keys × u64
//! ```
//! Little-endian. Every format ever written must stay readable: a standby may replay
//! an older primary's WAL (standbys are upgraded first). A commit with more than
//! fits in [`MAX_RECORD`] bytes is split over several records, each whole.

/// The format this version writes (1 was never released).
pub const VERSION: u8 = 2;
/// Record flag: every cache of the database is cleared (`cache_clear_all`).
pub const DB_CLEAR: u8 = 1;
/// Record flag: every cache of the database is dropped (`cache_drop`, `DROP
/// EXTENSION`, `DROP DATABASE`).
pub const DB_DROP: u8 = 2;
/// Record flag: not transactional (`cache_drop`): a standby applies it at redo, as
/// committed, whatever its transaction does.
pub const IMMEDIATE: u8 = 4;
/// Cache flag: the cache is cleared.
pub const CLEAR: u8 = 1;
/// Cache flag: the cache's declaration changed.
pub const DECLARE: u8 = 2;
/// Largest record written: big commits are split, so that a record stays far from
/// PostgreSQL's limit and a standby's redo holds no lock for long.
pub const MAX_RECORD: usize = 64 * 1024;

const HEAD: usize = 8;
const CACHE_HEAD: usize = 25;

/// What a commit did to one cache, as a record carries it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CacheChanges<'a> {
    pub name: u64,
    pub encoding: u64,
    pub flags: u8,
    pub tags: &'a [u64],
    pub prefixes: &'a [Vec<u8>],
    pub keys: Vec<u64>,
}

/// The records for a commit's changes in database `db`: none when it changed nothing.
/// `Err` when memory runs out (the caller raises 53200 at PRE_COMMIT).
pub fn encode(db: u32, flags: u8, caches: &[CacheChanges<'_>]) -> Result<Vec<Vec<u8>>, std::collections::TryReserveError> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    if flags == 0 && caches.iter().all(|c| c.flags == 0 && c.tags.is_empty() && c.prefixes.is_empty() && c.keys.is_empty()) {
        return Ok(out);
    }
    let mut rec = Writer::new(db, flags)?;
    for c in caches {
        // Tags and prefixes go whole in the cache's first part: when they would not
        // fit in half a record (or their counts in 16 bits), the cache is cleared
        // instead, which covers them.
        let predicate_bytes = c.tags.len() * 8 + c.prefixes.iter().map(|p| 2 + p.len()).sum::<usize>();
        let clear = predicate_bytes > MAX_RECORD / 2 || c.tags.len() > u16::MAX as usize || c.prefixes.len() > u16::MAX as usize;
        let flags = c.flags | if clear { CLEAR } else { 0 };
        let prefixes: &[Vec<u8>] = if clear { &[] } else { c.prefixes };
        let tags: &[u64] = if clear { &[] } else { c.tags };
        let head_bytes = CACHE_HEAD + tags.len() * 8 + prefixes.iter().map(|p| 2 + p.len()).sum::<usize>();
        if rec.len() + head_bytes > MAX_RECORD && rec.caches > 0 {
            out.try_reserve(1)?;
            out.push(rec.finish());
            rec = Writer::new(db, 0)?;
        }
        let mut keys = &c.keys[..];
        let mut first = true;
        loop {
            let mut room = MAX_RECORD.saturating_sub(rec.len() + if first { head_bytes } else { CACHE_HEAD }) / 8;
            if room == 0 && !keys.is_empty() && rec.caches > 0 {
                out.try_reserve(1)?;
                out.push(rec.finish());
                rec = Writer::new(db, 0)?;
                room = MAX_RECORD.saturating_sub(rec.len() + if first { head_bytes } else { CACHE_HEAD }) / 8;
            }
            let n = keys.len().min(room.max(1)).min(u32::MAX as usize);
            if first {
                rec.cache(c.name, c.encoding, flags, tags, prefixes, &keys[..n])?;
                first = false;
            } else {
                rec.cache(c.name, c.encoding, 0, &[], &[], &keys[..n])?;
            }
            keys = &keys[n..];
            if keys.is_empty() {
                break;
            }
            out.try_reserve(1)?;
            out.push(rec.finish());
            rec = Writer::new(db, 0)?;
        }
    }
    out.try_reserve(1)?;
    out.push(rec.finish());
    Ok(out)
}

struct Writer {
    buf: Vec<u8>,
    caches: u16,
}

impl Writer {
    fn new(db: u32, flags: u8) -> Result<Writer, std::collections::TryReserveError> {
        let mut buf = Vec::new();
        buf.try_reserve(256)?;
        buf.push(VERSION);
        buf.push(flags);
        buf.extend_from_slice(&db.to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes());
        Ok(Writer { buf, caches: 0 })
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    #[allow(clippy::too_many_arguments)]
    fn cache(&mut self, name: u64, encoding: u64, flags: u8, tags: &[u64], prefixes: &[Vec<u8>], keys: &[u64]) -> Result<(), std::collections::TryReserveError> {
        let bytes = CACHE_HEAD + tags.len() * 8 + prefixes.iter().map(|p| 2 + p.len()).sum::<usize>() + keys.len() * 8;
        self.buf.try_reserve(bytes)?;
        self.buf.extend_from_slice(&name.to_le_bytes());
        self.buf.extend_from_slice(&encoding.to_le_bytes());
        self.buf.push(flags);
        self.buf.extend_from_slice(&(tags.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(&(prefixes.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(&(keys.len() as u32).to_le_bytes());
        for t in tags {
            self.buf.extend_from_slice(&t.to_le_bytes());
        }
        for p in prefixes {
            self.buf.extend_from_slice(&(p.len() as u16).to_le_bytes());
            self.buf.extend_from_slice(p);
        }
        for k in keys {
            self.buf.extend_from_slice(&k.to_le_bytes());
        }
        self.caches += 1;
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf[6..8].copy_from_slice(&self.caches.to_le_bytes());
        self.buf
    }
}

/// A record as redo reads it, without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Record<'r> {
    pub db: u32,
    pub flags: u8,
    caches: u16,
    body: &'r [u8],
}

/// One cache's part of a record.
#[derive(Debug, Clone, Copy)]
pub struct CacheRecord<'r> {
    pub name: u64,
    pub encoding: u64,
    pub flags: u8,
    tags: &'r [u8],
    prefixes: (u16, &'r [u8]),
    keys: &'r [u8],
}

fn u64s(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
}

impl<'r> CacheRecord<'r> {
    pub fn tags(&self) -> impl Iterator<Item = u64> + 'r {
        u64s(self.tags)
    }

    pub fn keys(&self) -> impl Iterator<Item = u64> + 'r {
        u64s(self.keys)
    }

    pub fn prefixes(&self) -> impl Iterator<Item = &'r [u8]> + 'r {
        let (n, mut rest) = self.prefixes;
        (0..n).map_while(move |_| {
            let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
            let p = rest.get(2..2 + len)?;
            rest = &rest[2 + len..];
            Some(p)
        })
    }

    pub fn has_tags(&self) -> bool {
        !self.tags.is_empty()
    }

    pub fn has_prefixes(&self) -> bool {
        self.prefixes.0 > 0
    }
}

/// Reads a record; `None` when it is not one this version understands (a newer
/// format, or damaged): redo then drops everything, which is always safe.
pub fn decode(data: &[u8]) -> Option<Record<'_>> {
    if data.len() < HEAD || data[0] != VERSION {
        return None;
    }
    let rec = Record {
        flags: data[1],
        db: u32::from_le_bytes(data[2..6].try_into().ok()?),
        caches: u16::from_le_bytes(data[6..8].try_into().ok()?),
        body: &data[HEAD..],
    };
    // Walk it once, so that the iterator below can trust the lengths.
    let mut n = 0;
    let mut rest = rec.body;
    for _ in 0..rec.caches {
        rest = next_cache(rest)?.1;
        n += 1;
    }
    (n == rec.caches && rest.is_empty()).then_some(rec)
}

fn next_cache(b: &[u8]) -> Option<(CacheRecord<'_>, &[u8])> {
    let name = u64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
    let encoding = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
    let flags = *b.get(16)?;
    let ntags = u16::from_le_bytes(b.get(17..19)?.try_into().ok()?) as usize;
    let nprefixes = u16::from_le_bytes(b.get(19..21)?.try_into().ok()?);
    let nkeys = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?) as usize;
    let mut at = CACHE_HEAD;
    let tags = b.get(at..at + ntags * 8)?;
    at += ntags * 8;
    let prefixes_at = at;
    for _ in 0..nprefixes {
        let len = u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize;
        b.get(at + 2..at + 2 + len)?;
        at += 2 + len;
    }
    let prefixes = (nprefixes, &b[prefixes_at..at]);
    let keys = b.get(at..at.checked_add(nkeys.checked_mul(8)?)?)?;
    at += nkeys * 8;
    Some((CacheRecord { name, encoding, flags, tags, prefixes, keys }, &b[at..]))
}

impl<'r> Record<'r> {
    pub fn caches(&self) -> impl Iterator<Item = CacheRecord<'r>> + 'r {
        let mut rest = self.body;
        (0..self.caches).map_while(move |_| {
            let (c, r) = next_cache(rest)?;
            rest = r;
            Some(c)
        })
    }

    /// How many caches and keys it names (for `rm_desc`).
    pub fn counts(&self) -> (usize, usize) {
        self.caches().fold((0, 0), |(c, k), r| (c + 1, k + r.keys.len() / 8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a record says of each cache: (name, flags, tags, prefixes, keys).
    type Read = (u64, u8, Vec<u64>, Vec<Vec<u8>>, Vec<u64>);

    fn read(rec: &[u8]) -> (u32, u8, Vec<Read>) {
        let r = decode(rec).expect("a record of this version");
        let caches = r
            .caches()
            .map(|c| {
                assert_eq!(c.encoding, if c.name == 7 { 99 } else { 0 });
                (c.name, c.flags, c.tags().collect(), c.prefixes().map(|p| p.to_vec()).collect(), c.keys().collect())
            })
            .collect();
        (r.db, r.flags, caches)
    }

    fn as_read(c: &CacheChanges) -> Read {
        (c.name, c.flags, c.tags.to_vec(), c.prefixes.to_vec(), c.keys.clone())
    }

    #[test]
    fn a_commit_reads_back_as_written() {
        let prefixes = [b"user:".to_vec(), vec![]];
        let caches = vec![
            CacheChanges { name: 7, encoding: 99, flags: CLEAR | DECLARE, tags: &[1, 2], prefixes: &prefixes, keys: vec![9, 10] },
            CacheChanges { name: 8, keys: vec![u64::MAX], ..Default::default() },
        ];
        let recs = encode(42, DB_CLEAR, &caches).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(read(&recs[0]), (42, DB_CLEAR, caches.iter().map(as_read).collect()));
        assert!(encode(42, 0, &[CacheChanges { name: 1, ..Default::default() }]).unwrap().is_empty(), "nothing to say, no record");
        let one_key = encode(1, 0, &[CacheChanges { name: 1, keys: vec![5], ..Default::default() }]).unwrap();
        assert_eq!(one_key[0].len(), 8 + 25 + 8, "a one-key commit is 41 bytes of data");
    }

    #[test]
    fn a_big_commit_is_split_into_whole_records() {
        let keys: Vec<u64> = (0..20_000).collect();
        let caches = vec![
            CacheChanges { name: 1, flags: CLEAR, keys: keys.clone(), ..Default::default() },
            CacheChanges { name: 2, keys: vec![3], ..Default::default() },
        ];
        let recs = encode(5, DB_DROP, &caches).unwrap();
        assert!(recs.len() >= 3, "{} records", recs.len());
        let mut seen: Vec<(u64, u64)> = Vec::new();
        let mut clears = 0;
        for (i, r) in recs.iter().enumerate() {
            assert!(r.len() <= MAX_RECORD);
            let (db, flags, cs) = read(r);
            assert_eq!((db, flags), (5, if i == 0 { DB_DROP } else { 0 }), "database flags once");
            for (name, flags, _, _, keys) in cs {
                clears += usize::from(flags & CLEAR != 0);
                seen.extend(keys.iter().map(|&k| (name, k)));
            }
        }
        assert_eq!(clears, 1);
        let expected: Vec<(u64, u64)> = keys.iter().map(|&k| (1, k)).chain([(2, 3)]).collect();
        assert_eq!(seen, expected, "every key once, in order");
    }

    #[test]
    fn tags_or_prefixes_too_many_for_a_record_clear_the_cache_instead() {
        let tags: Vec<u64> = (0..70_000).collect();
        let recs = encode(1, 0, &[CacheChanges { name: 3, tags: &tags, keys: vec![1], ..Default::default() }]).unwrap();
        assert_eq!(recs.len(), 1);
        let (_, _, caches) = read(&recs[0]);
        assert_eq!(caches, [(3, CLEAR, vec![], vec![], vec![1])]);
        let long = [vec![b'p'; MAX_RECORD]];
        let recs = encode(1, 0, &[CacheChanges { name: 3, prefixes: &long, ..Default::default() }]).unwrap();
        assert_eq!(read(&recs[0]).2, [(3, CLEAR, vec![], vec![], vec![])]);
    }

    #[test]
    fn anything_else_is_not_read() {
        let prefixes = [b"p".to_vec()];
        let rec = encode(1, 0, &[CacheChanges { name: 1, keys: vec![5], prefixes: &prefixes, ..Default::default() }]).unwrap().remove(0);
        for cut in 0..rec.len() {
            assert!(decode(&rec[..cut]).is_none(), "cut at {cut}");
        }
        let mut newer = rec.clone();
        newer[0] = VERSION + 1;
        assert!(decode(&newer).is_none(), "a newer format");
        let mut longer = rec.clone();
        longer.push(0);
        assert!(decode(&longer).is_none(), "trailing bytes");
    }
}
