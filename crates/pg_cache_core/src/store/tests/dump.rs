//! Warm restart: a dump of every live entry, loaded into a new region.

use super::*;

fn dumped(s: &Store<NoLocks>, now: i64) -> Vec<u8> {
    let mut out = Vec::new();
    s.dump(&mut out, now).unwrap();
    out
}

fn load(s: &Store<NoLocks>, bytes: &[u8], now: i64) -> std::io::Result<DumpCounts> {
    s.load(|| Ok(bytes), now, |c| if c.size_limit > 0 { c.size_limit as u64 } else { 1000 })
}

#[test]
fn a_dump_brings_back_live_entries_their_expiry_tags_and_cache_settings() {
    let a = region(1 << 20, 8);
    let s = &a.store;
    let mut declared = CacheConfig::new(50, 0, false, "app.lang").unwrap();
    declared.owner = 10;
    declared.readers = RoleList::only(&[11, 12]).unwrap();
    declared.policy = Policy::Lfu;
    let c = s.find_or_create_slot(1, "c", &declared, u32::MAX).unwrap();
    let d = new_cache(s, 2, "d");
    set(s, c, "forever", b"1", 100);
    set_at(s, c, "soon", b"2", 5_000, 100, 0);
    set_at(s, c, "gone", b"3", 50, 100, 0);
    let h = hash(d.index, b"tagged");
    let p = s.prepare(None, d, &NewEntry { key: b"tagged", value: &[7; 300], kind: ValueKind::Bytea, hash: h, expires_at: NO_EXPIRY, tags: &[42] }, 0).unwrap().unwrap();
    s.commit(d, 0).install(None, p, b"tagged", 100);
    set(s, d, "cleared", b"x", 100);
    s.commit(d, 10).delete(b"cleared", hash(d.index, b"cleared"));
    let bytes = dumped(s, 100);

    let b = region(1 << 20, 8);
    let t = &b.store;
    let counts = load(t, &bytes, 200).unwrap();
    assert_eq!((counts.caches, counts.entries), (2, 3), "expired and deleted entries are not brought back");
    let c2 = t.find_slot(1, "c").unwrap();
    let d2 = t.find_slot(2, "d").unwrap();
    assert_eq!(t.config(c2), declared, "the settings come back as they were");
    assert_eq!(get(t, c2, "forever"), Some(b"1".to_vec()));
    assert!(matches!(get_at(t, c2, "soon", 4_999), Lookup::Hit(_)));
    assert!(!matches!(get_at(t, c2, "soon", 5_000), Lookup::Hit(_)), "its expiry time is kept");
    assert_eq!(get(t, c2, "gone"), None);
    let got = t.lookup(d2, b"tagged", hash(d2.index, b"tagged"), ValueKind::Bytea, || 300, |len, copy| {
        let mut v = vec![0u8; len];
        copy(&mut v);
        v
    });
    assert!(matches!(got, Lookup::Hit(ref v) if v == &[7; 300]), "a bytea value of several blocks");
    t.commit(d2, 400).invalidate_tags(&[42]);
    assert_eq!(get(t, d2, "tagged"), None, "its tags come back with it");
    assert_eq!(get(t, d2, "cleared"), None);
}

#[test]
fn a_damaged_or_cut_dump_loads_nothing() {
    let a = region(1 << 20, 4);
    let s = &a.store;
    let r = new_cache(s, 1, "c");
    for i in 0..20 {
        set(s, r, &format!("k{i}"), b"v", 100);
    }
    let bytes = dumped(s, 0);
    for cut in [0, 8, bytes.len() / 2, bytes.len() - 1] {
        let b = region(1 << 20, 4);
        assert!(load(&b.store, &bytes[..cut], 0).is_err(), "cut at {cut}");
        assert_eq!(b.store.find_slot(1, "c"), None, "nothing made of a cut dump");
    }
    let mut flipped = bytes.clone();
    let at = bytes.len() / 2;
    flipped[at] ^= 1;
    let b = region(1 << 20, 4);
    assert!(load(&b.store, &flipped, 0).is_err());
    assert_eq!(b.store.find_slot(1, "c"), None);
    let b = region(1 << 20, 4);
    assert_eq!(load(&b.store, &bytes, 0).unwrap().entries, 20);
}

#[test]
fn settings_encode_and_decode_field_by_field() {
    let mut c = CacheConfig::new(7, 1_000_000, true, "a,b").unwrap();
    c.writers = RoleList::only(&[]).unwrap();
    c.max_bytes = 1 << 20;
    c.notify = true;
    assert_eq!(CacheConfig::decode(&c.encode()), Some(c));
    assert_eq!(CacheConfig::decode(&CacheConfig::default().encode()), Some(CacheConfig::default()));
    let mut longer = c.encode();
    longer.push(0);
    assert_eq!(CacheConfig::decode(&longer), None);
}
