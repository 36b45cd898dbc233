//! The region's layout: header, cache slots, striped counters, bucket heads, fence
//! buckets and 128-byte blocks; the entry head. The only file that computes
//! addresses inside the region: everything else reaches it through the accessors
//! here.

use std::cell::UnsafeCell;
use std::mem::size_of;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::fences::{DbFences, FenceBucket};
use super::predicates::{PrefixFence, TagSet, MAX_PREFIXES};
use super::*;
use crate::value::ValueKind;

pub const BLOCK_SIZE: usize = 128;
/// 72: the 64 of the fields a lookup and the LRU use, and the install time, which
/// only a snapshot read looks at (it shares the second cache line with the key).
pub(super) const HEAD_SIZE: usize = 72;
pub(super) const FIRST_PAYLOAD: usize = BLOCK_SIZE - HEAD_SIZE;
pub(super) const LINK_SIZE: usize = 4;
pub(super) const NEXT_PAYLOAD: usize = BLOCK_SIZE - LINK_SIZE;
pub(super) const MAGIC: u64 = 0x7067_5f63_6163_6865; // "pg_cache"

/// Keeps `T` on cache lines of its own, so that writers of it do not slow down the
/// readers of its neighbours (false sharing).
#[repr(C, align(64))]
pub(super) struct Line<T>(pub(super) T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Allocator state, under the allocator lock.
#[repr(C)]
pub(super) struct AllocState {
    pub(super) free_head: UnsafeCell<u32>,
    pub(super) free_blocks: UnsafeCell<u32>,
    pub(super) bump: UnsafeCell<u32>,
}

#[repr(C)]
pub(super) struct Header {
    pub(super) magic: u64,
    /// Slots `0..used_slots` have ever been used; scans stop there.
    pub(super) used_slots: AtomicU32,
    /// Slots created since start (see [`Store::slots_created`]).
    pub(super) slots_created: AtomicU64,
    /// Calls skipped for want of a slot for their cache (`pg_cache.on_limit =
    /// warning`): they have no cache to be counted in.
    pub(super) skipped_without_slot: AtomicU64,
    /// Free slots, a stack linked through [`CacheSlot::next_free`] (index + 1; 0:
    /// empty), and where the next search for a slot to reclaim starts: creating a
    /// cache takes a free slot in O(1) and does not search the same full slots
    /// again and again. Under the directory lock.
    pub(super) free_slots: AtomicU32,
    pub(super) reclaim_hand: AtomicU32,
    /// Last database-wide invalidation of each database; written under the
    /// directory lock.
    pub(super) db_fences: DbFences,
    /// A hot standby's record of the primary's invalidations (see `replica.rs`).
    pub(super) replica: super::replica::ReplicaFences,
    // Each written often by different writers, so each on its own line.
    pub(super) alloc: Line<AllocState>,
    pub(super) serial: Line<AtomicU32>,
    /// Per partition, the earliest due time of its expiry groups (NO_EXPIRY: none
    /// holds an entry with a TTL): the worker looks only into partitions that are due.
    pub(super) due: Line<[AtomicI64; PARTITIONS]>,
    /// The current minute (microseconds / 60,000,000, not wrapping like `clock`), for
    /// the decay of LFU counts; advanced with `clock`.
    pub(super) minute: Line<AtomicU32>,
    /// Bumped when a cache's entries become dead all at once (a clear, a drop), so
    /// that evicting backends rank caches again and take those first.
    pub(super) hidden: Line<AtomicU64>,
    /// A coarse shared clock in milliseconds (see [`ms`]) for stamping entries that
    /// a read uses: advanced by installs (at most every 100 ms, so that commits do
    /// not all write this line) and by the worker on each pass. A hit reads it
    /// instead of asking the system clock.
    pub(super) clock: Line<AtomicU32>,
    /// Blocks held in backends' [`Reserve`]s, by stripe: free, but off the free list.
    pub(super) reserved: [Line<AtomicU32>; STRIPES],
}

/// A database and how many active slots it has (db 0: an empty entry).
#[repr(C)]
pub(super) struct DbSlots {
    pub(super) db: AtomicU32,
    pub(super) slots: AtomicU32,
}

pub(super) const SLOT_FREE: u32 = 0;
pub(super) const SLOT_ACTIVE: u32 = 1;
pub(super) const SLOT_DROPPING: u32 = 2;

#[repr(C)]
pub struct CacheSlot {
    // Read by every lookup; written only when the cache is created, dropped, cleared
    // or declared, and by commits of several writes.
    pub(super) state: AtomicU32,
    pub(super) incarnation: AtomicU32,
    /// The next free slot (index + 1; 0: none) while this one is free.
    pub(super) next_free: AtomicU32,
    pub(super) db: AtomicU32,
    pub(super) name_len: AtomicU32,
    pub(super) gen: AtomicU32,
    pub(super) config_version: AtomicU32,
    /// Odd while a commit holding the commit lock exclusively applies its writes:
    /// lookups that overlap one start over, so none sees half of it (a seqlock).
    pub(super) commit_seq: AtomicU32,
    /// 1 while a shadowed commit of this cache is not yet published: entries it
    /// marked are read as before it (see shadow.rs).
    pub(super) installing: AtomicU32,
    /// Live prefix invalidations in `prefixes` (0: a lookup looks no further).
    pub(super) prefix_count: AtomicU32,
    /// Times a clear retired every prefix invalidation (see `retire_prefixes`).
    pub(super) prefix_resets: AtomicU32,
    /// Commit time of the last committed clear: also this cache's fence.
    pub(super) last_clear: AtomicI64,
    pub(super) name: UnsafeCell<[u8; MAX_NAME + 1]>,
    pub(super) config: UnsafeCell<CacheConfig>,
    /// Committed `cache_delete_prefix` invalidations not yet folded into a clear
    /// (predicates.rs); written under the commit lock held exclusively.
    pub(super) prefixes: [PrefixFence; MAX_PREFIXES],
    /// Written by installs, evictions and LRU moves: kept off the lines above.
    pub(super) list: Line<SlotList>,
}

/// A cache's LRU list (head = most recent) and the counters that change with it,
/// under the slot's list lock; atomics so that eviction can peek and statistics can
/// read.
#[repr(C)]
pub(super) struct SlotList {
    pub(super) lru_head: AtomicU32,
    pub(super) lru_tail: AtomicU32,
    /// A logical clock of this list's pushes (installs and moves): how far an entry
    /// has drifted from the head is at most `tick` minus its stamp. Per list, on the
    /// line an install writes anyway, so writes to other caches do not age it.
    pub(super) tick: AtomicU64,
    pub(super) entries: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) sets: AtomicU64,
    pub(super) deletes: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) expirations: AtomicU64,
    pub(super) stale_sets: AtomicU64,
    /// Calls that met a limit and skipped (`pg_cache.on_limit = warning`).
    pub(super) skipped: AtomicU64,
    /// The cache's byte limit (its declaration's `max_bytes`; 0: none), kept here so
    /// that an install reads it from the line it writes anyway.
    pub(super) max_bytes: AtomicU64,
    /// Bytes of entries prepared for this cache and not yet installed or freed,
    /// counted only while a database share is set: a transaction prepares all its
    /// entries before installing any, so without them a database could fill memory
    /// while its installed bytes still look under its share.
    pub(super) pending_bytes: AtomicU64,
    /// Key fences of this cache forgotten to make room in the fence table: a fill
    /// by a transaction that started at or before it is stale (fences.rs).
    pub(super) key_floor: AtomicI64,
    /// Tag invalidations of this cache forgotten to make room in the tag table: an
    /// entry carrying any tag and installed before it is a miss, and a fill carrying
    /// any tag by a transaction that started at or before it is stale (predicates.rs).
    pub(super) tag_floor: AtomicI64,
    /// The latest install time of an entry of this cache (`predicate_time`).
    /// Written under the list lock by installs, which hold the commit lock too.
    pub(super) latest_installed: AtomicI64,
    /// The latest key invalidation of this cache: when the slot is freed, its
    /// database's fence takes it, so that a cache created again under the name
    /// (in another slot, with other hashes) still fences older fills.
    pub(super) invalidated_at: AtomicI64,
    /// The cache's [`Policy`] as a byte (its declaration's), kept here so that a hit
    /// reads it from the line it reads anyway.
    pub(super) policy: AtomicU8,
    /// Single-key commits begun and ended ([`super::KeyCommit`]), which run side by
    /// side under the commit lock held shared: a read of many keys that saw neither
    /// move, and no commit in flight, saw the cache as of one moment. On the line
    /// an install writes anyway.
    pub(super) key_commits_begun: AtomicU64,
    pub(super) key_commits_ended: AtomicU64,
}

/// Hits and misses of one cache, counted per stripe of backends so that readers on
/// different cores do not write one cache line; statistics add the stripes up.
/// Also the stripe's pins of the slot (commits between PRE_COMMIT and the end of
/// COMMIT or ABORT holding entries prepared for it; a pinned slot is never
/// reclaimed): striped so that writers of one cache do not all write one line
/// twice per commit, and kept off the slot's first line, which every read reads.
#[repr(C)]
pub(super) struct ReadCounts {
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) pins: AtomicU32,
    pub(super) _pad: u32,
}

/// Stripes of [`ReadCounts`]; a backend counts in stripe `backend % STRIPES`.
pub const STRIPES: usize = 8;

pub(super) const ENTRY_LIVE: u8 = 1;
pub(super) const ENTRY_DEAD: u8 = 2;
/// The bit of [`EntryHead::flags`] that marks a prepared entry counted as pending.
pub(super) const PENDING: u8 = 0x80;

impl EntryHead {
    /// The kind of the value stored in this entry.
    pub(super) fn kind(&self) -> Option<ValueKind> {
        ValueKind::from_byte(self.flags & !super::shadow::MARKS)
    }

    /// Blocks the entry takes (what its key, value and tags need; not stored: the
    /// head is full).
    pub(super) fn blocks(&self) -> u32 {
        blocks_for(self.payload_len()) as u32
    }

    /// Bytes of payload: the stored key, the value, then the tags' hashes.
    pub(super) fn payload_len(&self) -> usize {
        self.key_len as usize + self.value_len as usize + self.tags as usize * 8
    }

    /// Hidden by a clear (or a drop's generation): an older generation than its
    /// cache's. An entry of a shadowed commit not yet published carries the next
    /// generation when that commit clears, and is not hidden but pending.
    pub(super) fn is_hidden(&self, s: &CacheSlot) -> bool {
        self.gen != s.gen.load(Ordering::Relaxed) && self.flags & super::shadow::UNPUBLISHED == 0
    }
}

/// The first 64 bytes of an entry's first block.
#[repr(C)]
pub(super) struct EntryHead {
    pub(super) next_block: u32,
    pub(super) chain_next: u32,
    pub(super) lru_prev: u32,
    pub(super) lru_next: u32,
    pub(super) hash: u32,
    pub(super) serial: u32,
    /// The cache slot: 32 bits, so that a server can hold more than 65,535 caches
    /// (500 databases of 200 caches).
    pub(super) slot: u32,
    pub(super) state: AtomicU8,
    /// The value's [`ValueKind`] in the low bits; [`PENDING`] while the entry is
    /// prepared and counted in its slot's `pending_bytes` (cleared before it is
    /// linked in, so readers only ever see the kind).
    pub(super) flags: u8,
    /// How many tags the entry carries (at most [`super::MAX_TAGS`]): their hashes
    /// follow the value in the payload, 8 bytes each. In the head's padding.
    pub(super) tags: u8,
    pub(super) gen: u32,
    pub(super) key_len: u32,
    pub(super) value_len: u32,
    pub(super) last_block: u32,
    /// Atomic because a touch changes it in place (under the partition and list
    /// locks) while eviction peeks at list tails with neither.
    pub(super) expires_at: AtomicI64,
    /// The list's push clock when this entry was last pushed to its head (truncated:
    /// only distances up to the list's length matter), for the "older half" rule.
    pub(super) pushed_at: AtomicU32,
    /// When the entry was last pushed to its list's head, in milliseconds (wrapping,
    /// see [`ms`]): the commit time when installed, the shared clock when a hit
    /// moves it. Comparable across caches, so that eviction under memory pressure
    /// takes the tail used longest ago anywhere.
    pub(super) used_at: AtomicU32,
    /// When the entry was linked in (its commit's time): a snapshot read
    /// ([`Store::lookup_as_of`]) does not see entries installed after its
    /// transaction began. Written before the entry is reachable.
    pub(super) installed_at: i64,
}

const _: () = assert!(size_of::<EntryHead>() == HEAD_SIZE);

/// Where each part of the region starts and how many of each there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub slots: u32,
    pub buckets: u32,
    pub fence_buckets: u32,
    pub blocks: u32,
    pub(super) slots_off: usize,
    pub(super) counters_off: usize,
    /// The name index: `names` entries (a power of two, at least twice the slots).
    pub names: u32,
    pub(super) names_off: usize,
    /// Slots per database: as many entries as the name index (a database with
    /// slots holds at least one).
    pub(super) dbs_off: usize,
    pub(super) buckets_off: usize,
    pub(super) fences_off: usize,
    /// The tag table (predicates.rs): `tag_sets` sets of four tags.
    pub tag_sets: u32,
    pub(super) tags_off: usize,
    /// Expiry groups: [`GROUP_BUCKETS`] buckets of one partition each, with the
    /// earliest expiry installed in them since their last sweep.
    pub groups: u32,
    pub(super) groups_off: usize,
    pub(super) blocks_off: usize,
    pub total: usize,
}

/// Buckets of one partition in an expiry group (buckets `p + k × PARTITIONS` for 32
/// consecutive k). A group due is swept alone, so a pass reads about 32 buckets per
/// entry that expired, not the whole partition: with TTLs expiring all the time every
/// partition is due on every pass, and sweeping whole partitions read every bucket
/// (0.11 µs per live TTL entry, 534 ms of CPU a second with 4M of them on 2 GB). The
/// due times take 8 bytes per 32 buckets: 1/16 of the bucket array.
pub(super) const GROUP_BUCKETS: u32 = 32;

/// The bytes of `pg_cache.memory` an entry with `payload` bytes of stored key and
/// value takes (whole blocks): what `bytes` and `max_bytes` count.
pub fn entry_bytes(payload: usize) -> usize {
    blocks_for(payload) * BLOCK_SIZE
}

/// The blocks an entry with `payload` bytes of stored key and value takes.
pub fn blocks_for(payload: usize) -> usize {
    if payload <= FIRST_PAYLOAD {
        1
    } else {
        1 + (payload - FIRST_PAYLOAD).div_ceil(NEXT_PAYLOAD)
    }
}

/// A time in microseconds as the wrapping milliseconds of [`EntryHead::used_at`]:
/// ages up to 24 days compare correctly, which is all LRU ranking needs.
pub fn ms(us: i64) -> u32 {
    (us / 1000) as u32
}

/// A hint to start loading the cache line at `p`; it never faults.
pub(super) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint and cannot fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

pub(super) fn align64(n: usize) -> usize {
    (n + 63) & !63
}

impl Geometry {
    /// Lay out `memory` bytes for `max_caches` slots; `None` when it is too small.
    pub fn new(memory: usize, max_caches: u32) -> Option<Geometry> {
        let slots_off = align64(size_of::<Header>());
        let counters_off = align64(slots_off + max_caches as usize * size_of::<CacheSlot>());
        let names = (2 * max_caches as usize).next_power_of_two();
        let names_off = align64(counters_off + STRIPES * max_caches as usize * size_of::<ReadCounts>());
        let dbs_off = align64(names_off + names * size_of::<u32>());
        let buckets_off = align64(dbs_off + names * size_of::<DbSlots>());
        let rest = memory.checked_sub(buckets_off)?;
        // Between a half and one bucket per block: with memory full, a chain holds on
        // average at most one entry of two blocks (two of one). Every entry a lookup
        // passes on its chain is a cache miss, often a TLB miss too.
        let mut buckets = (rest / (BLOCK_SIZE + 4)).next_power_of_two();
        while buckets * (BLOCK_SIZE + 4) > rest && buckets > PARTITIONS {
            buckets /= 2;
        }
        let buckets = buckets.max(PARTITIONS);
        // Fence bucket i shares partition i % PARTITIONS with hash bucket i. A fence
        // bucket remembers four keys; one per 32 hash buckets is plenty.
        let fence_buckets = (buckets / 32).max(PARTITIONS);
        let fences_off = align64(buckets_off + buckets * 4);
        let groups = PARTITIONS * (buckets / PARTITIONS).div_ceil(GROUP_BUCKETS as usize);
        // A tag set remembers four tags; one per 128 hash buckets: 0.4% of memory.
        let tag_sets = (buckets / 128).max(PARTITIONS);
        let tags_off = align64(fences_off + fence_buckets * size_of::<FenceBucket>());
        let groups_off = align64(tags_off + tag_sets * size_of::<TagSet>());
        let blocks_off = align64(groups_off + groups * size_of::<AtomicI64>());
        let blocks = memory.checked_sub(blocks_off)? / BLOCK_SIZE;
        if blocks < 64 || blocks >= NIL as usize {
            return None;
        }
        Some(Geometry {
            slots: max_caches,
            buckets: buckets as u32,
            fence_buckets: fence_buckets as u32,
            blocks: blocks as u32,
            slots_off,
            counters_off,
            names: names as u32,
            names_off,
            dbs_off,
            buckets_off,
            fences_off,
            tag_sets: tag_sets as u32,
            tags_off,
            groups: groups as u32,
            groups_off,
            blocks_off,
            total: memory,
        })
    }
}


impl<'a, L: Locks> Store<'a, L> {
    #[cfg(test)]
    pub(super) fn base_for_tests(&self) -> *mut u8 {
        self.base
    }

    pub(super) fn header(&self) -> *mut Header {
        self.base as *mut Header
    }

    pub(super) fn hdr(&self) -> &Header {
        // SAFETY: the header lies inside the region and is only mutated through atomics
        // or UnsafeCells under the allocator lock.
        unsafe { &*self.header() }
    }

    pub(super) fn slot(&self, index: u32) -> &CacheSlot {
        debug_assert!(index < self.geo.slots);
        // SAFETY: index < slots, inside the directory array.
        unsafe { &*(self.base.add(self.geo.slots_off) as *const CacheSlot).add(index as usize) }
    }

    /// Entry `i` of the name index (slot index + 1; 0: empty), under the directory lock.
    pub(super) fn name_entry(&self, i: u32) -> &AtomicU32 {
        debug_assert!(i < self.geo.names);
        // SAFETY: i < names, inside the name index; zeroed bytes are empty entries.
        unsafe { &*(self.base.add(self.geo.names_off) as *const AtomicU32).add(i as usize) }
    }

    /// Entry `i` of the table of slots per database, under the directory lock.
    pub(super) fn db_entry(&self, i: u32) -> &DbSlots {
        debug_assert!(i < self.geo.names);
        // SAFETY: i < names, inside the table; zeroed bytes are empty entries.
        unsafe { &*(self.base.add(self.geo.dbs_off) as *const DbSlots).add(i as usize) }
    }

    pub(super) fn fence_bucket(&self, f: u32) -> *mut FenceBucket {
        debug_assert!(f < self.geo.fence_buckets);
        // SAFETY: f < fence_buckets, inside the fence table.
        unsafe { (self.base.add(self.geo.fences_off) as *mut FenceBucket).add(f as usize) }
    }

    /// Set `i` of the tag table.
    pub(super) fn tag_set(&self, i: u32) -> &TagSet {
        debug_assert!(i < self.geo.tag_sets);
        // SAFETY: i < tag_sets, inside the tag table; zeroed bytes are empty sets.
        unsafe { &*(self.base.add(self.geo.tags_off) as *const TagSet).add(i as usize) }
    }

    /// The fence bucket of `hash`; guarded by the same partition lock as its hash bucket.
    pub(super) fn fence_of(&self, hash: u64) -> *mut FenceBucket {
        self.fence_bucket((hash as u32) & (self.geo.fence_buckets - 1))
    }

    /// Expiry groups of one partition.
    pub(super) fn groups_per_partition(&self) -> u32 {
        self.geo.groups / PARTITIONS as u32
    }

    /// The expiry group of `bucket`: groups of a partition are consecutive.
    pub(super) fn group_of(&self, bucket: u32) -> u32 {
        let partition = bucket % PARTITIONS as u32;
        partition * self.groups_per_partition() + bucket / PARTITIONS as u32 / GROUP_BUCKETS
    }

    /// The due time of expiry group `g`: the earliest expiry installed in its
    /// buckets since its last sweep, NO_EXPIRY if none.
    pub(super) fn group_due(&self, g: u32) -> &AtomicI64 {
        debug_assert!(g < self.geo.groups);
        // SAFETY: g < groups, inside the array of due times; 8-byte aligned.
        unsafe { &*(self.base.add(self.geo.groups_off) as *const AtomicI64).add(g as usize) }
    }

    /// The first entry of a bucket's chain. Atomic (plain moves on x86) because a
    /// prefetch hint reads it without the partition lock; changed only under it.
    pub(super) fn bucket_head(&self, bucket: u32) -> &AtomicU32 {
        // SAFETY: callers pass bucket < geo.buckets; the array is 4-byte aligned.
        unsafe { &*(self.base.add(self.geo.buckets_off) as *const AtomicU32).add(bucket as usize) }
    }

    pub(super) fn block(&self, b: u32) -> *mut u8 {
        debug_assert!(b < self.geo.blocks);
        // SAFETY: b < blocks, inside the block pool.
        unsafe { self.base.add(self.geo.blocks_off + b as usize * BLOCK_SIZE) }
    }

    pub(super) fn head(&self, b: u32) -> *mut EntryHead {
        self.block(b) as *mut EntryHead
    }

    pub(super) fn next_of(&self, b: u32) -> u32 {
        // SAFETY: every block starts with its 4-byte link.
        unsafe { *(self.block(b) as *const u32) }
    }

    pub(super) fn set_next(&self, b: u32, next: u32) {
        // SAFETY: as in `next_of`; the caller owns block b.
        unsafe { *(self.block(b) as *mut u32) = next }
    }

    pub(super) fn bucket_of(&self, hash: u64) -> u32 {
        (hash as u32) & (self.geo.buckets - 1)
    }

    pub(super) fn index_of(&self, s: &CacheSlot) -> u32 {
        let first = self.slot(0) as *const CacheSlot;
        // SAFETY: `s` is an element of the directory array that starts at `first`.
        unsafe { (s as *const CacheSlot).offset_from(first) as u32 }
    }

    /// The read counters of slot `index` in `stripe`.
    pub(super) fn read_counts(&self, index: u32, stripe: usize) -> &ReadCounts {
        debug_assert!(index < self.geo.slots);
        let at = (stripe % STRIPES) * self.geo.slots as usize + index as usize;
        // SAFETY: at < STRIPES * slots, inside the counter array.
        unsafe { &*(self.base.add(self.geo.counters_off) as *const ReadCounts).add(at) }
    }

    /// The most payload bytes (stored key + value) one entry can hold: an entry may
    /// take at most half of the blocks, so that eviction can always make room for it.
    pub fn max_payload(&self) -> usize {
        let blocks = self.geo.blocks as usize / 2;
        if blocks == 0 { 0 } else { FIRST_PAYLOAD + (blocks - 1) * NEXT_PAYLOAD }
    }

    /// Calls `f` on each piece of an entry's payload, in order.
    pub(super) fn for_each_payload_chunk(&self, first: u32, mut f: impl FnMut(&[u8]) -> bool) {
        // SAFETY: `first` is an allocated entry the caller keeps alive.
        let total = unsafe { (*self.head(first)).payload_len() };
        let mut left = total;
        let mut b = first;
        let mut start = HEAD_SIZE;
        while left > 0 && b != NIL {
            let n = left.min(BLOCK_SIZE - start);
            // SAFETY: [start, start + n) lies inside block b.
            let chunk = unsafe { std::slice::from_raw_parts(self.block(b).add(start), n) };
            if !f(chunk) {
                return;
            }
            left -= n;
            b = self.next_of(b);
            start = LINK_SIZE;
        }
    }

    pub(super) fn key_equals(&self, first: u32, key: &[u8]) -> bool {
        // SAFETY: `first` is an allocated entry the caller keeps alive.
        if unsafe { (*self.head(first)).key_len } as usize != key.len() {
            return false;
        }
        let mut pos = 0usize;
        let mut equal = true;
        self.for_each_payload_chunk(first, |chunk| {
            let n = chunk.len().min(key.len() - pos);
            if chunk[..n] != key[pos..pos + n] {
                equal = false;
                return false;
            }
            pos += n;
            pos < key.len()
        });
        equal && pos == key.len()
    }

    /// Copies the value of entry `first` into `out` (which has `value_len` bytes).
    #[inline]
    pub(super) fn copy_value(&self, first: u32, out: &mut [u8]) {
        // SAFETY: `first` is an allocated entry the caller keeps alive.
        let key_len = unsafe { (*self.head(first)).key_len } as usize;
        if key_len + out.len() <= FIRST_PAYLOAD {
            // The common small entry: all in its first block (a hit costs 60
            // instructions less than through the chunk walk).
            // SAFETY: [HEAD_SIZE + key_len, + out.len()) lies inside the first block.
            let at = unsafe { std::slice::from_raw_parts(self.block(first).add(HEAD_SIZE + key_len), out.len()) };
            out.copy_from_slice(at);
            return;
        }
        self.copy_payload(first, key_len, out);
    }

    /// Copies `out.len()` payload bytes of entry `first` from offset `from` on.
    pub(super) fn copy_payload(&self, first: u32, from: usize, out: &mut [u8]) {
        let mut pos = 0usize; // position in the payload stream
        let mut written = 0usize;
        self.for_each_payload_chunk(first, |chunk| {
            let end = pos + chunk.len();
            if end > from {
                let start = from.saturating_sub(pos);
                let n = (chunk.len() - start).min(out.len() - written);
                out[written..written + n].copy_from_slice(&chunk[start..start + n]);
                written += n;
            }
            pos = end;
            written < out.len()
        });
    }

    /// Writes `key`, `value` then `tags` (their bytes) into the blocks of entry
    /// `first`, block by block, with whole-slice copies. The entry is the caller's
    /// alone (not yet linked in).
    pub(super) fn write_payload(&self, first: u32, key: &[u8], value: &[u8], tags: &[u8]) {
        let mut b = first;
        let mut start = HEAD_SIZE;
        for mut src in [key, value, tags] {
            while !src.is_empty() {
                if start == BLOCK_SIZE {
                    b = self.next_of(b);
                    start = LINK_SIZE;
                }
                let n = (BLOCK_SIZE - start).min(src.len());
                // SAFETY: [start, start + n) lies inside block b, which the caller owns.
                let dst = unsafe { std::slice::from_raw_parts_mut(self.block(b).add(start), n) };
                dst.copy_from_slice(&src[..n]);
                src = &src[n..];
                start += n;
            }
        }
    }
}
