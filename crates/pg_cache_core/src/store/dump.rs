//! A warm restart's dump: every live entry of every cache, written at a clean
//! shutdown and loaded at the next start (the extension decides when either is
//! safe; see `src/restart.rs`).
//!
//! ```text
//! "PGCDUMP1" | caches u32 | per cache: slot u32 | db u32 | name (u8 len) | config (u16 len)
//! entries:   slot u32 | kind u8 | tags u8 | expires_at i64 | key u32 | value u32 | key, value, tags × u64
//! end:       u32::MAX | entries u64 | FNV-1a of everything before, u64
//! ```
//! Little-endian. Entries come in bucket order (the LRU order is not kept: loaded
//! entries start as equally recent). A file that is cut short or altered fails the
//! check at its end and loads nothing.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;

use super::*;
use crate::value::ValueKind;

const MAGIC: &[u8; 8] = b"PGCDUMP1";
const END: u32 = u32::MAX;

/// What a dump wrote or a load installed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DumpCounts {
    pub caches: u64,
    pub entries: u64,
    pub bytes: u64,
}

/// FNV-1a over everything written or read, so that the end can be checked.
struct Summed<T> {
    inner: T,
    sum: u64,
}

impl<T> Summed<T> {
    fn new(inner: T) -> Self {
        Summed { inner, sum: 0xcbf2_9ce4_8422_2325 }
    }

    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.sum ^= b as u64;
            self.sum = self.sum.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

impl<W: Write> Summed<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.add(bytes);
        self.inner.write_all(bytes)
    }
}

impl<R: Read> Summed<R> {
    fn take(&mut self, out: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(out)?;
        self.add(out);
        Ok(())
    }

    fn u8(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.take(&mut b)?;
        Ok(b[0])
    }

    fn u16(&mut self) -> io::Result<u16> {
        let mut b = [0u8; 2];
        self.take(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.take(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "dump entry too large"))?;
        v.resize(n, 0);
        self.take(&mut v)?;
        Ok(v)
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl CacheConfig {
    /// The settings as bytes, field by field (see [`CacheConfig::decode`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.size_limit.to_le_bytes());
        out.push(self.context as u8);
        out.extend_from_slice(&self.duration_us.to_le_bytes());
        out.extend_from_slice(&self.owner.to_le_bytes());
        for list in [&self.readers, &self.writers] {
            match list.is_open() {
                true => out.push(u8::MAX),
                false => {
                    out.push(list.roles().len() as u8);
                    for r in list.roles() {
                        out.extend_from_slice(&r.to_le_bytes());
                    }
                }
            }
        }
        out.extend_from_slice(&self.max_bytes.to_le_bytes());
        out.push(self.policy as u8);
        out.push(self.notify as u8);
        out.extend_from_slice(&self.ignored_len.to_le_bytes());
        out.extend_from_slice(&self.ignored[..self.ignored_len as usize]);
        out
    }

    /// The settings [`CacheConfig::encode`] wrote; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<CacheConfig> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let s = b.get(at..at + n)?;
            at += n;
            Some(s)
        };
        let size_limit = i32::from_le_bytes(take(4)?.try_into().ok()?);
        let context = take(1)?[0] != 0;
        let duration_us = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let owner = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let mut lists = [RoleList::ANYONE; 2];
        for list in lists.iter_mut() {
            let n = take(1)?[0];
            if n != u8::MAX {
                let mut roles = [0u32; MAX_ROLES];
                for r in roles.iter_mut().take(n as usize) {
                    *r = u32::from_le_bytes(take(4)?.try_into().ok()?);
                }
                *list = RoleList::only(roles.get(..n as usize)?)?;
            }
        }
        let max_bytes = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let policy = Policy::from_byte(take(1)?[0]);
        let notify = take(1)?[0] != 0;
        let ignored_len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
        let ignored = std::str::from_utf8(take(ignored_len)?).ok()?;
        if at != b.len() {
            return None;
        }
        let mut c = CacheConfig::new(size_limit, duration_us, context, ignored)?;
        c.owner = owner;
        [c.readers, c.writers] = lists;
        c.max_bytes = max_bytes;
        c.policy = policy;
        c.notify = notify;
        Some(c)
    }
}

impl<'a, L: Locks> Store<'a, L> {
    /// Writes every live entry (unexpired at `now`, visible, not invalidated) of
    /// every cache to `out`. Only while no other process uses the region (at
    /// shutdown): it takes no lock.
    pub fn dump(&self, out: impl Write, now: i64) -> io::Result<DumpCounts> {
        let mut out = Summed::new(out);
        let mut counts = DumpCounts::default();
        out.put(MAGIC)?;
        let used = self.hdr().used_slots.load(Ordering::Acquire);
        let active = |i: u32| self.slot(i).state.load(Ordering::Acquire) == SLOT_ACTIVE;
        out.put(&((0..used).filter(|&i| active(i)).count() as u32).to_le_bytes())?;
        for i in (0..used).filter(|&i| active(i)) {
            let s = self.slot(i);
            let name = self.slot_name(s);
            let config = self.config(SlotRef { index: i, incarnation: s.incarnation.load(Ordering::Acquire) }).encode();
            out.put(&i.to_le_bytes())?;
            out.put(&s.db.load(Ordering::Relaxed).to_le_bytes())?;
            out.put(&[name.len() as u8])?;
            out.put(name)?;
            out.put(&(config.len() as u16).to_le_bytes())?;
            out.put(&config)?;
            counts.caches += 1;
        }
        let mut payload = Vec::new();
        for bucket in 0..self.geo.buckets {
            let mut e = self.bucket_head(bucket).load(Ordering::Relaxed);
            while e != NIL {
                // SAFETY: nobody else uses the region; entries on a chain are allocated.
                let h = unsafe { &*self.head(e) };
                let next = h.chain_next;
                let s = self.slot(h.slot);
                let live = h.state.load(Ordering::Acquire) == ENTRY_LIVE
                    && h.slot < used
                    && active(h.slot)
                    && self.is_visible(s, h)
                    && !self.is_expired(e, now);
                if live {
                    payload.clear();
                    payload.resize(h.payload_len(), 0);
                    self.copy_payload(e, 0, &mut payload);
                    let key = &payload[..h.key_len as usize];
                    if !self.is_invalidated(s, e, h, key, &[]) {
                        out.put(&h.slot.to_le_bytes())?;
                        out.put(&[h.kind().map_or(0, |k| k as u8), h.tags])?;
                        out.put(&h.expires_at.load(Ordering::Relaxed).to_le_bytes())?;
                        out.put(&h.key_len.to_le_bytes())?;
                        out.put(&h.value_len.to_le_bytes())?;
                        out.put(&payload)?;
                        counts.entries += 1;
                        counts.bytes += payload.len() as u64;
                    }
                }
                e = next;
            }
        }
        out.put(&END.to_le_bytes())?;
        out.put(&counts.entries.to_le_bytes())?;
        let sum = out.sum;
        out.inner.write_all(&sum.to_le_bytes())?;
        out.inner.flush()?;
        Ok(counts)
    }

    /// Loads a dump into a region just initialised, before any other process uses
    /// it. Entries expired by `now` are skipped; each cache keeps at most
    /// `size_limit(config)` entries. `open` gives the dump from its start: it is
    /// read once to check it whole, then again to install it, so that a damaged
    /// dump loads nothing and a large one is never held in memory.
    pub fn load<R: Read>(&self, open: impl Fn() -> io::Result<R>, now: i64, size_limit: impl Fn(&CacheConfig) -> u64) -> io::Result<DumpCounts> {
        read_dump(open()?, &mut |_, _, _, _| {}, &mut |_| {})?;
        let counts = std::cell::Cell::new(DumpCounts::default());
        // The dump's slot indexes, to this region's slots.
        let slots: std::cell::RefCell<std::collections::HashMap<u32, (SlotRef, u64)>> = Default::default();
        read_dump(
            open()?,
            &mut |index, db, name, config| {
                if let Ok(r) = self.find_or_create_slot(db, name, config, u32::MAX) {
                    slots.borrow_mut().insert(index, (r, size_limit(config)));
                    let mut c = counts.get();
                    c.caches += 1;
                    counts.set(c);
                }
            },
            &mut |e| {
                let Some(&(r, limit)) = slots.borrow().get(&e.slot) else { return };
                if e.expires_at <= now {
                    return;
                }
                let (key, rest) = e.payload.split_at(e.key_len);
                let (value, tag_bytes) = rest.split_at(e.value_len);
                let mut tags = [0u64; MAX_TAGS];
                for (t, b) in tags.iter_mut().zip(tag_bytes.chunks_exact(8)) {
                    *t = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                }
                let hash = crate::key::hash(r.index, key);
                let n = (e.tags as usize).min(MAX_TAGS);
                let entry = NewEntry { key, value, kind: e.kind, hash, expires_at: e.expires_at, tags: &tags[..n] };
                if let Ok(Some(p)) = self.prepare(None, r, &entry, now) {
                    self.commit_one(r, now).install(None, p, key, limit);
                    let mut c = counts.get();
                    c.entries += 1;
                    c.bytes += e.payload.len() as u64;
                    counts.set(c);
                }
            },
        )?;
        Ok(counts.get())
    }
}

/// One entry as a dump holds it.
struct DumpedEntry<'p> {
    slot: u32,
    kind: ValueKind,
    tags: u8,
    expires_at: i64,
    key_len: usize,
    value_len: usize,
    payload: &'p [u8],
}

/// Reads a dump, telling `cache` each cache (dump slot index, database, name,
/// settings) and `entry` each entry; an error for anything but a whole dump of this
/// format (checked at its end: callers that act on what they are told read it twice).
fn read_dump(
    input: impl Read,
    cache: &mut dyn FnMut(u32, u32, &str, &CacheConfig),
    entry: &mut dyn FnMut(&DumpedEntry),
) -> io::Result<()> {
    let mut input = Summed::new(io::BufReader::with_capacity(1 << 20, input));
    let mut magic = [0u8; 8];
    input.take(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("not a pg_cache dump of this format"));
    }
    for _ in 0..input.u32()? {
        let slot = input.u32()?;
        let db = input.u32()?;
        let n = input.u8()? as usize;
        let name = String::from_utf8(input.bytes(n)?).map_err(|_| bad("cache name"))?;
        let n = input.u16()? as usize;
        let config = CacheConfig::decode(&input.bytes(n)?).ok_or_else(|| bad("cache settings"))?;
        cache(slot, db, &name, &config);
    }
    let mut entries = 0u64;
    let mut payload = Vec::new();
    loop {
        let slot = input.u32()?;
        if slot == END {
            break;
        }
        let kind = ValueKind::from_byte(input.u8()?).ok_or_else(|| bad("value kind"))?;
        let tags = input.u8()?;
        let expires_at = input.u64()? as i64;
        let key_len = input.u32()? as usize;
        let value_len = input.u32()? as usize;
        let n = key_len + value_len + tags as usize * 8;
        if n > MAX_DUMPED_ENTRY {
            return Err(bad("entry size"));
        }
        payload.resize(n, 0);
        input.take(&mut payload)?;
        entry(&DumpedEntry { slot, kind, tags, expires_at, key_len, value_len, payload: &payload });
        entries += 1;
    }
    let count = input.u64()?;
    let sum = input.sum;
    let mut stored = [0u8; 8];
    input.inner.read_exact(&mut stored)?;
    if u64::from_le_bytes(stored) != sum || count != entries {
        return Err(bad("checksum"));
    }
    Ok(())
}

/// No entry is larger than the region's largest payload, which is far below this.
const MAX_DUMPED_ENTRY: usize = 1 << 30;
