//! The shared-memory store: every database's caches in one region of fixed size.
//!
//! ```text
//! | Header | CacheSlot × max_caches | bucket heads (u32) × 2^k | 128-byte blocks ... |
//! ```
//!
//! * **Blocks.** An entry is a chain of 128-byte blocks: the first holds a 64-byte
//!   header and 64 payload bytes, each further block a 4-byte link and 124 payload
//!   bytes; the payload is the stored key followed by the jsonb value. Any free block
//!   serves any entry, so the pool never fragments: when memory is full, evicting
//!   enough entries always makes room.
//! * **Index.** A chained hash table over all entries. Bucket `b` is guarded by
//!   partition lock `b % PARTITIONS` (shared to read, exclusive to change a chain).
//! * **Caches.** A directory of slots (one per database and cache name) under the
//!   directory lock; each slot has its LRU list, counters and settings under a
//!   per-slot list lock (an LWLock: waiters sleep rather than spin while a holder is
//!   descheduled). A hit holds one partition lock (shared) and, only when the
//!   entry has drifted into the older half of its list, that list lock for a few
//!   pointer updates; hits and misses are counted in per-backend stripes.
//! * **Clear** bumps the slot's generation: entries of an older generation are misses
//!   and sit at the LRU tail, where eviction reclaims them first.
//!
//! * **Commits** to a cache hold that cache's commit lock exclusively while they link
//!   their entries in, raise their fences and bump the generation, and bump its
//!   commit sequence before and after; a lookup that overlapped such a commit starts
//!   over. A transaction's writes to one cache therefore appear together.
//! * **Fences** (see `fences.rs`) remember when each key, cache and database was last
//!   invalidated, so that a fill computed before a committed invalidation is dropped.
//!
//! Lock order: directory → cache commit lock → partition → slot list lock → allocator.
//! Memory is allocated *before* a partition lock is taken, so eviction (which locks
//! the victim's partition) never runs while another partition lock is held.

use std::cell::{Cell, UnsafeCell};
use std::mem::size_of;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

mod directory;
mod fences;
mod maintenance;
use fences::{DbFences, FenceBucket};
pub use maintenance::Sweep;

pub const BLOCK_SIZE: usize = 128;
const HEAD_SIZE: usize = 64;
const FIRST_PAYLOAD: usize = BLOCK_SIZE - HEAD_SIZE;
const LINK_SIZE: usize = 4;
const NEXT_PAYLOAD: usize = BLOCK_SIZE - LINK_SIZE;
/// Number of partition locks over the bucket array.
pub const PARTITIONS: usize = 128;
pub const NIL: u32 = u32::MAX;
/// Longest cache name in bytes (a PostgreSQL identifier).
pub const MAX_NAME: usize = 63;
/// Room for the comma-separated `context_ignored_keys` of a cache.
pub const MAX_IGNORED: usize = 256;
pub const NO_EXPIRY: i64 = i64::MAX;
pub const NEVER: i64 = i64::MIN;
/// Lookups that race a commit of several writes before waiting on its commit lock.
const OPTIMISTIC_LOOKUPS: usize = 2;
const MAGIC: u64 = 0x7067_5f63_6163_6865; // "pg_cache"

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// The locks the store needs; PostgreSQL LWLocks in a server, no-ops in unit tests.
pub trait Locks {
    fn lock_partition(&self, partition: usize, mode: Mode);
    fn unlock_partition(&self, partition: usize);
    fn lock_allocator(&self);
    fn unlock_allocator(&self);
    fn lock_directory(&self, mode: Mode);
    fn unlock_directory(&self);
    /// The commit lock of cache slot `slot`.
    fn lock_cache(&self, slot: u16, mode: Mode);
    fn unlock_cache(&self, slot: u16);
    /// The list lock of cache slot `slot`: its LRU list, counters and settings.
    fn lock_list(&self, slot: u16);
    /// Takes the list lock only if nobody holds it; whether it did.
    fn try_lock_list(&self, slot: u16) -> bool;
    fn unlock_list(&self, slot: u16);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Every cache slot is in use (by caches that hold entries or are declared).
    DirectoryFull,
    /// The database already uses its share of the slots (`per_database`).
    DatabaseFull { per_database: u32 },
    /// The entry needs more than half of all blocks.
    TooLarge,
}

/// Most roles a declaration may name as readers, and as writers.
pub const MAX_ROLES: usize = 8;

/// Who may do something to a cache: anyone, or members of up to [`MAX_ROLES`] roles
/// (role OIDs; the cache's owner and superusers always may).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleList {
    /// `OPEN` for anyone, else the number of roles.
    len: u8,
    roles: [u32; MAX_ROLES],
}

const OPEN: u8 = u8::MAX;

impl RoleList {
    pub const ANYONE: RoleList = RoleList { len: OPEN, roles: [0; MAX_ROLES] };

    /// Members of `roles` only; `None` when there are more than [`MAX_ROLES`].
    pub fn only(roles: &[u32]) -> Option<RoleList> {
        let mut list = RoleList { len: roles.len() as u8, roles: [0; MAX_ROLES] };
        list.roles.get_mut(..roles.len())?.copy_from_slice(roles);
        Some(list)
    }

    pub fn is_open(&self) -> bool {
        self.len == OPEN
    }

    /// The roles, when restricted (empty for anyone).
    pub fn roles(&self) -> &[u32] {
        if self.is_open() { &[] } else { &self.roles[..self.len as usize] }
    }
}

/// Settings of one cache as declared by `cache_create`; zero means "the server default".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    pub size_limit: i32,
    pub context: bool,
    pub duration_us: i64,
    /// The role that declared the cache first (0: undeclared, anyone may declare it).
    pub owner: u32,
    pub readers: RoleList,
    pub writers: RoleList,
    /// Most bytes of `pg_cache.memory` the cache may hold (0: no limit of its own).
    pub max_bytes: u64,
    ignored_len: u16,
    ignored: [u8; MAX_IGNORED],
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            size_limit: 0,
            context: true,
            duration_us: 0,
            owner: 0,
            readers: RoleList::ANYONE,
            writers: RoleList::ANYONE,
            max_bytes: 0,
            ignored_len: 0,
            ignored: [0; MAX_IGNORED],
        }
    }
}

impl CacheConfig {
    /// `ignored` is the comma-separated list of context keys this cache ignores.
    pub fn new(size_limit: i32, duration_us: i64, context: bool, ignored: &str) -> Option<Self> {
        if ignored.len() > MAX_IGNORED {
            return None;
        }
        let mut c = CacheConfig { size_limit, context, duration_us, ignored_len: ignored.len() as u16, ..Default::default() };
        c.ignored[..ignored.len()].copy_from_slice(ignored.as_bytes());
        Some(c)
    }

    pub fn ignored(&self) -> &str {
        std::str::from_utf8(&self.ignored[..self.ignored_len as usize]).unwrap_or("")
    }
}

/// Keeps `T` on cache lines of its own, so that writers of it do not slow down the
/// readers of its neighbours (false sharing).
#[repr(C, align(64))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Allocator state, under the allocator lock.
#[repr(C)]
struct AllocState {
    free_head: UnsafeCell<u32>,
    free_blocks: UnsafeCell<u32>,
    bump: UnsafeCell<u32>,
}

#[repr(C)]
struct Header {
    magic: u64,
    /// Slots `0..used_slots` have ever been used; scans stop there.
    used_slots: AtomicU32,
    /// Last database-wide invalidation of each database; written under the
    /// directory lock.
    db_fences: DbFences,
    // Each written often by different writers, so each on its own line.
    alloc: Line<AllocState>,
    serial: Line<AtomicU32>,
    /// Bumped by whatever may leave entries for the worker to reclaim (a clear, an
    /// install with a TTL, a drop), so that its sweep can skip an idle region.
    changes: Line<AtomicU64>,
    /// A coarse shared clock in milliseconds (see [`ms`]) for stamping entries that
    /// a read uses: advanced by installs (at most every 100 ms, so that commits do
    /// not all write this line) and by the worker on each pass. A hit reads it
    /// instead of asking the system clock.
    clock: Line<AtomicU32>,
    /// Blocks held in backends' [`Reserve`]s, by stripe: free, but off the free list.
    reserved: [Line<AtomicU32>; STRIPES],
}

const SLOT_FREE: u32 = 0;
const SLOT_ACTIVE: u32 = 1;
const SLOT_DROPPING: u32 = 2;

#[repr(C)]
pub struct CacheSlot {
    // Read by every lookup; written only when the cache is created, dropped, cleared
    // or declared, and by commits of several writes.
    state: AtomicU32,
    incarnation: AtomicU32,
    db: AtomicU32,
    name_len: AtomicU32,
    gen: AtomicU32,
    config_version: AtomicU32,
    /// Odd while a commit holding the commit lock exclusively applies its writes:
    /// lookups that overlap one start over, so none sees half of it (a seqlock).
    commit_seq: AtomicU32,
    /// Commit time of the last committed clear: also this cache's fence.
    last_clear: AtomicI64,
    name: UnsafeCell<[u8; MAX_NAME + 1]>,
    config: UnsafeCell<CacheConfig>,
    /// Written by installs, evictions and LRU moves: kept off the lines above.
    list: Line<SlotList>,
}

/// A cache's LRU list (head = most recent) and the counters that change with it,
/// under the slot's list lock; atomics so that eviction can peek and statistics can
/// read.
#[repr(C)]
struct SlotList {
    lru_head: AtomicU32,
    lru_tail: AtomicU32,
    /// A logical clock of this list's pushes (installs and moves): how far an entry
    /// has drifted from the head is at most `tick` minus its stamp. Per list, on the
    /// line an install writes anyway, so writes to other caches do not age it.
    tick: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    sets: AtomicU64,
    deletes: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    stale_sets: AtomicU64,
    /// The cache's byte limit (its declaration's `max_bytes`; 0: none), kept here so
    /// that an install reads it from the line it writes anyway.
    max_bytes: AtomicU64,
    /// Bytes of entries prepared for this cache and not yet installed or freed,
    /// counted only while a database share is set: a transaction prepares all its
    /// entries before installing any, so without them a database could fill memory
    /// while its installed bytes still look under its share.
    pending_bytes: AtomicU64,
}

/// Hits and misses of one cache, counted per stripe of backends so that readers on
/// different cores do not write one cache line; statistics add the stripes up.
/// Also the stripe's pins of the slot (commits between PRE_COMMIT and the end of
/// COMMIT or ABORT holding entries prepared for it; a pinned slot is never
/// reclaimed): striped so that writers of one cache do not all write one line
/// twice per commit, and kept off the slot's first line, which every read reads.
#[repr(C)]
struct ReadCounts {
    hits: AtomicU64,
    misses: AtomicU64,
    pins: AtomicU32,
    _pad: u32,
}

/// Stripes of [`ReadCounts`]; a backend counts in stripe `backend % STRIPES`.
pub const STRIPES: usize = 8;

const ENTRY_LIVE: u8 = 1;
const ENTRY_DEAD: u8 = 2;

/// The first 64 bytes of an entry's first block.
#[repr(C)]
struct EntryHead {
    next_block: u32,
    chain_next: u32,
    lru_prev: u32,
    lru_next: u32,
    hash: u32,
    serial: u32,
    slot: u16,
    state: AtomicU8,
    /// 1 while the entry is prepared and counted in its slot's `pending_bytes`.
    pending: u8,
    gen: u32,
    key_len: u32,
    value_len: u32,
    last_block: u32,
    n_blocks: u32,
    expires_at: i64,
    /// The list's push clock when this entry was last pushed to its head (truncated:
    /// only distances up to the list's length matter), for the "older half" rule.
    pushed_at: AtomicU32,
    /// When the entry was last pushed to its list's head, in milliseconds (wrapping,
    /// see [`ms`]): the commit time when installed, the shared clock when a hit
    /// moves it. Comparable across caches, so that eviction under memory pressure
    /// takes the tail used longest ago anywhere.
    used_at: AtomicU32,
}

const _: () = assert!(size_of::<EntryHead>() == HEAD_SIZE);

/// A reference to a cache slot, valid while the slot keeps its incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRef {
    pub index: u16,
    pub incarnation: u32,
}

/// Where each part of the region starts and how many of each there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub slots: u32,
    pub buckets: u32,
    pub fence_buckets: u32,
    pub blocks: u32,
    slots_off: usize,
    counters_off: usize,
    buckets_off: usize,
    fences_off: usize,
    blocks_off: usize,
    pub total: usize,
}

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
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint and cannot fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

fn align64(n: usize) -> usize {
    (n + 63) & !63
}

impl Geometry {
    /// Lay out `memory` bytes for `max_caches` slots; `None` when it is too small.
    pub fn new(memory: usize, max_caches: u32) -> Option<Geometry> {
        let slots_off = align64(size_of::<Header>());
        let counters_off = align64(slots_off + max_caches as usize * size_of::<CacheSlot>());
        let buckets_off = align64(counters_off + STRIPES * max_caches as usize * size_of::<ReadCounts>());
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
        let blocks_off = align64(fences_off + fence_buckets * size_of::<FenceBucket>());
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
            buckets_off,
            fences_off,
            blocks_off,
            total: memory,
        })
    }
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    Hit(T),
    Miss,
    /// Present but past its TTL: a miss; the caller may reclaim it with `remove_expired`.
    Expired,
}

/// An allocated, filled entry not yet linked into the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    block: u32,
    hash: u64,
}

/// The blocks of the last entry one backend's commit replaced, kept for its next
/// write of the same size: an overwrite then takes no allocator lock, neither to
/// free nor to allocate, and fills lines it has just read. Backend-local (never in
/// shared memory); counted as free in `Header.reserved`. At most one entry of
/// `RESERVE_MAX_BLOCKS`, handed back with [`Store::release_reserve`] when the
/// backend exits.
#[derive(Debug)]
pub struct Reserve {
    stripe: usize,
    /// The kept entry (NIL for none); its head still says how many blocks it links.
    entry: Cell<u32>,
}

/// A larger replaced entry goes back to the free list at once.
const RESERVE_MAX_BLOCKS: u32 = 4;

impl Reserve {
    /// An empty reserve counted in stripe `stripe % STRIPES`.
    pub fn new(stripe: usize) -> Reserve {
        Reserve { stripe: stripe % STRIPES, entry: Cell::new(NIL) }
    }

    pub fn is_empty(&self) -> bool {
        self.entry.get() == NIL
    }
}

/// An entry taken off an LRU list, to be unlinked from its bucket and freed.
#[derive(Clone, Copy)]
struct Victim {
    block: u32,
    serial: u32,
    hash: u32,
}

#[derive(Clone, Copy)]
enum PopReason {
    /// Memory pressure or size limit: counted as eviction (or expiration if expired).
    Evict,
    /// The cache is being dropped: counted nowhere.
    Drop,
}

/// Counters of one cache, read without locks (each is exact, the set is not a snapshot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotStats {
    pub name: String,
    pub slot: Option<SlotRef>,
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub deletes: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub stale_sets: u64,
    pub last_clear: Option<i64>,
    pub config: CacheConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub entries: u64,
    pub databases: u64,
}

pub struct Store<'a, L: Locks> {
    base: *mut u8,
    geo: Geometry,
    locks: &'a L,
    /// Bytes one database may hold when memory is full (`u64::MAX`: no share):
    /// eviction then takes from a database over its share first.
    database_share: u64,
}

/// Holds a partition lock until dropped (also on unwind, when an ERROR passes through).
struct PartitionGuard<'a, L: Locks> {
    locks: &'a L,
    partition: usize,
}

impl<L: Locks> Drop for PartitionGuard<'_, L> {
    fn drop(&mut self) {
        self.locks.unlock_partition(self.partition);
    }
}

struct DirectoryGuard<'a, L: Locks>(&'a L);

/// Holds a cache's commit lock shared (a lookup) until dropped.
struct CacheReadGuard<'a, L: Locks> {
    locks: &'a L,
    slot: u16,
}

/// Holds a cache's list lock until dropped.
struct ListGuard<'a, L: Locks> {
    locks: &'a L,
    slot: u16,
}

impl<L: Locks> Drop for ListGuard<'_, L> {
    fn drop(&mut self) {
        self.locks.unlock_list(self.slot);
    }
}

impl<L: Locks> Drop for CacheReadGuard<'_, L> {
    fn drop(&mut self) {
        self.locks.unlock_cache(self.slot);
    }
}

/// What a committing transaction does to one cache, under that cache's commit lock:
/// lookups see all of it or none of it. `now` is the commit time, taken after the
/// transaction became visible to new snapshots; fences raised here carry it.
///
/// A commit of several writes, a clear or a declaration holds the lock exclusively
/// ([`Store::commit`]). A commit of one key's set or delete holds it shared
/// ([`Store::commit_one`]): one key is visible atomically under its partition lock
/// anyway, so such commits run side by side and only wait for the exclusive ones.
pub struct CacheCommit<'s, 'a, L: Locks> {
    store: &'s Store<'a, L>,
    r: SlotRef,
    now: i64,
    shared: bool,
}

impl<L: Locks> Drop for CacheCommit<'_, '_, L> {
    fn drop(&mut self) {
        if !self.shared {
            self.store.slot(self.r.index).commit_seq.fetch_add(1, Ordering::Release);
        }
        self.store.locks.unlock_cache(self.r.index);
    }
}


impl<L: Locks> CacheCommit<'_, '_, L> {
    /// Whether a fill of the key with `hash` by a transaction that started at `start`
    /// is stale: its key, its cache or its database was invalidated by a commit at or
    /// after `start`. Ask before this commit raises fences of its own.
    pub fn is_stale(&self, hash: u64, start: i64) -> bool {
        debug_assert!(!self.shared, "a shared commit judges and installs in one step");
        let st = self.store;
        let _p = st.lock_bucket(st.bucket_of(hash), Mode::Shared);
        st.fenced_locked(st.slot(self.r.index), hash, start)
    }

    /// Empties the cache (a generation bump) and fences every fill older than now.
    pub fn clear(&self) {
        debug_assert!(!self.shared);
        self.store.clear_locked(self.r, self.now);
    }

    /// Links a prepared entry for `key` in place of any entry with the same key,
    /// fences older fills of that key, then evicts while the cache holds more than
    /// `size_limit`.
    /// The entry it replaces goes to `reserve` if that can take it.
    pub fn install(&self, reserve: Option<&Reserve>, p: Prepared, key: &[u8], size_limit: u64) {
        debug_assert!(!self.shared);
        self.store.install_locked(reserve, self.r, p, key, size_limit, self.now, None);
    }

    /// As [`CacheCommit::install`], unless the fill is stale for a transaction that
    /// started at `start`: then it is freed and counted, and its key invalidated
    /// instead (see [`CacheCommit::drop_stale`]). Judged under the same
    /// partition lock hold as the install, so that concurrent shared commits of the
    /// same key cannot both pass. Whether it was installed.
    pub fn install_if_fresh(&self, reserve: Option<&Reserve>, p: Prepared, key: &[u8], size_limit: u64, start: i64) -> bool {
        self.store.install_locked(reserve, self.r, p, key, size_limit, self.now, Some(start))
    }

    /// Frees a prepared entry found stale by [`CacheCommit::is_stale`] and counts it;
    /// its key is invalidated all the same (entries removed, fence raised), as the
    /// write meant to replace whatever value was there: a dropped fill never leaves
    /// an older value behind.
    pub fn drop_stale(&self, p: Prepared, key: &[u8]) {
        self.store.slot(self.r.index).list.stale_sets.fetch_add(1, Ordering::Relaxed);
        self.store.settle(p);
        self.store.free_entry(p.block);
        self.store.invalidate_locked(self.r, key, p.hash, self.now);
    }

    /// Deletes the key and fences older fills of it; whether a visible entry was there.
    pub fn delete(&self, key: &[u8], hash: u64) -> bool {
        self.store.delete_locked(self.r, key, hash, self.now)
    }

    /// Publishes a declaration. One that changes how keys are stored (`context`, its
    /// ignored keys) also clears the cache: entries stored under the old encoding
    /// would otherwise come back, deletes made meanwhile notwithstanding, when the
    /// cache is switched back.
    pub fn set_config(&self, config: &CacheConfig, size_limit: u64) {
        debug_assert!(!self.shared);
        let old = self.store.config(self.r);
        self.store.set_config(self.r, config);
        if old.context != config.context || old.ignored() != config.ignored() {
            self.store.clear_locked(self.r, self.now);
        }
        self.store.enforce_size_limit(self.r, size_limit, self.now);
    }
}

impl<L: Locks> Drop for DirectoryGuard<'_, L> {
    fn drop(&mut self) {
        self.0.unlock_directory();
    }
}

impl<'a, L: Locks> Store<'a, L> {
    /// # Safety
    /// `base` points to `geo.total` bytes, 64-byte aligned, shared by every user of the
    /// store and initialised once with [`Store::init`].
    pub unsafe fn attach(base: *mut u8, geo: Geometry, locks: &'a L) -> Self {
        Store { base, geo, locks, database_share: u64::MAX }
    }

    /// Gives each database `percent` of the block pool when memory is full (see
    /// [`Store::evict_one`]); 100 gives no share.
    pub fn with_database_share(mut self, percent: u32) -> Self {
        if percent < 100 {
            self.database_share = self.geo.blocks as u64 * BLOCK_SIZE as u64 * percent as u64 / 100;
        }
        self
    }

    /// # Safety
    /// As for `attach`; called once, before any other process uses the region.
    pub unsafe fn init(&self) {
        // SAFETY: the region is ours alone during initialisation.
        unsafe {
            std::ptr::write_bytes(self.base, 0, self.geo.blocks_off);
            let h = self.header();
            (*h).magic = MAGIC;
            *(*h).alloc.0.free_head.get() = NIL;
            let buckets = self.base.add(self.geo.buckets_off) as *mut u32;
            for b in 0..self.geo.buckets as usize {
                *buckets.add(b) = NIL;
            }
            for i in 0..self.geo.slots {
                let s = self.slot(i as u16);
                s.list.lru_head.store(NIL, Ordering::Relaxed);
                s.list.lru_tail.store(NIL, Ordering::Relaxed);
            }
            for f in 0..self.geo.fence_buckets {
                (*self.fence_bucket(f)).init();
            }
            (*h).db_fences.init();
        }
    }

    #[cfg(test)]
    fn base_for_tests(&self) -> *mut u8 {
        self.base
    }

    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    pub fn is_initialised(&self) -> bool {
        // SAFETY: the header lies inside the region.
        unsafe { (*self.header()).magic == MAGIC }
    }

    fn header(&self) -> *mut Header {
        self.base as *mut Header
    }

    fn hdr(&self) -> &Header {
        // SAFETY: the header lies inside the region and is only mutated through atomics
        // or UnsafeCells under the allocator lock.
        unsafe { &*self.header() }
    }

    fn slot(&self, index: u16) -> &CacheSlot {
        debug_assert!((index as u32) < self.geo.slots);
        // SAFETY: index < slots, inside the directory array.
        unsafe { &*(self.base.add(self.geo.slots_off) as *const CacheSlot).add(index as usize) }
    }

    fn fence_bucket(&self, f: u32) -> *mut FenceBucket {
        debug_assert!(f < self.geo.fence_buckets);
        // SAFETY: f < fence_buckets, inside the fence table.
        unsafe { (self.base.add(self.geo.fences_off) as *mut FenceBucket).add(f as usize) }
    }

    /// The fence bucket of `hash`; guarded by the same partition lock as its hash bucket.
    fn fence_of(&self, hash: u64) -> *mut FenceBucket {
        self.fence_bucket((hash as u32) & (self.geo.fence_buckets - 1))
    }

    /// The first entry of a bucket's chain. Atomic (plain moves on x86) because a
    /// prefetch hint reads it without the partition lock; changed only under it.
    fn bucket_head(&self, bucket: u32) -> &AtomicU32 {
        // SAFETY: callers pass bucket < geo.buckets; the array is 4-byte aligned.
        unsafe { &*(self.base.add(self.geo.buckets_off) as *const AtomicU32).add(bucket as usize) }
    }

    fn block(&self, b: u32) -> *mut u8 {
        debug_assert!(b < self.geo.blocks);
        // SAFETY: b < blocks, inside the block pool.
        unsafe { self.base.add(self.geo.blocks_off + b as usize * BLOCK_SIZE) }
    }

    fn head(&self, b: u32) -> *mut EntryHead {
        self.block(b) as *mut EntryHead
    }

    fn next_of(&self, b: u32) -> u32 {
        // SAFETY: every block starts with its 4-byte link.
        unsafe { *(self.block(b) as *const u32) }
    }

    fn set_next(&self, b: u32, next: u32) {
        // SAFETY: as in `next_of`; the caller owns block b.
        unsafe { *(self.block(b) as *mut u32) = next }
    }

    fn bucket_of(&self, hash: u64) -> u32 {
        (hash as u32) & (self.geo.buckets - 1)
    }

    fn lock_bucket(&self, bucket: u32, mode: Mode) -> PartitionGuard<'a, L> {
        let partition = bucket as usize % PARTITIONS;
        self.locks.lock_partition(partition, mode);
        PartitionGuard { locks: self.locks, partition }
    }

    /// Takes the list lock of slot `s` (a reference into the directory).
    fn lock_list(&self, s: &CacheSlot) -> ListGuard<'a, L> {
        let slot = self.index_of(s);
        self.locks.lock_list(slot);
        ListGuard { locks: self.locks, slot }
    }

    /// The list lock of slot `s` if nobody holds it.
    fn try_lock_list(&self, s: &CacheSlot) -> Option<ListGuard<'a, L>> {
        let slot = self.index_of(s);
        self.locks.try_lock_list(slot).then(|| ListGuard { locks: self.locks, slot })
    }

    fn index_of(&self, s: &CacheSlot) -> u16 {
        let first = self.slot(0) as *const CacheSlot;
        // SAFETY: `s` is an element of the directory array that starts at `first`.
        unsafe { (s as *const CacheSlot).offset_from(first) as u16 }
    }

    fn lock_directory(&self, mode: Mode) -> DirectoryGuard<'a, L> {
        self.locks.lock_directory(mode);
        DirectoryGuard(self.locks)
    }

    /// The most payload bytes (stored key + value) one entry can hold: an entry may
    /// take at most half of the blocks, so that eviction can always make room for it.
    pub fn max_payload(&self) -> usize {
        let blocks = self.geo.blocks as usize / 2;
        if blocks == 0 { 0 } else { FIRST_PAYLOAD + (blocks - 1) * NEXT_PAYLOAD }
    }

    /// Calls `f` on each piece of an entry's payload, in order.
    fn for_each_payload_chunk(&self, first: u32, mut f: impl FnMut(&[u8]) -> bool) {
        // SAFETY: `first` is an allocated entry the caller keeps alive.
        let total = unsafe { ((*self.head(first)).key_len + (*self.head(first)).value_len) as usize };
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

    fn key_equals(&self, first: u32, key: &[u8]) -> bool {
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
    fn copy_value(&self, first: u32, out: &mut [u8]) {
        // SAFETY: `first` is an allocated entry the caller keeps alive.
        let key_len = unsafe { (*self.head(first)).key_len } as usize;
        let mut pos = 0usize; // position in the payload stream
        let mut written = 0usize;
        self.for_each_payload_chunk(first, |chunk| {
            let end = pos + chunk.len();
            if end > key_len {
                let from = key_len.saturating_sub(pos);
                let n = chunk.len() - from;
                out[written..written + n].copy_from_slice(&chunk[from..]);
                written += n;
            }
            pos = end;
            true
        });
    }

    // ---- directory -------------------------------------------------------------

    fn slot_name(&self, s: &CacheSlot) -> &[u8] {
        let len = s.name_len.load(Ordering::Acquire) as usize;
        // SAFETY: the name is written only while the slot is free, under the
        // directory lock held exclusively; readers hold it shared.
        unsafe { &(&*s.name.get())[..len] }
    }

    fn find_locked(&self, db: u32, name: &str) -> Option<SlotRef> {
        let used = self.hdr().used_slots.load(Ordering::Acquire);
        (0..used as u16).find_map(|i| {
            let s = self.slot(i);
            (s.state.load(Ordering::Acquire) == SLOT_ACTIVE
                && s.db.load(Ordering::Relaxed) == db
                && self.slot_name(s) == name.as_bytes())
            .then(|| SlotRef { index: i, incarnation: s.incarnation.load(Ordering::Acquire) })
        })
    }

    pub fn find_slot(&self, db: u32, name: &str) -> Option<SlotRef> {
        let _dir = self.lock_directory(Mode::Shared);
        self.find_locked(db, name)
    }

    /// Whether `r` still names a live slot (no drop happened since it was resolved).
    pub fn is_valid(&self, r: SlotRef) -> bool {
        let s = self.slot(r.index);
        s.state.load(Ordering::Acquire) == SLOT_ACTIVE && s.incarnation.load(Ordering::Acquire) == r.incarnation
    }

    /// The slot's settings version: changes whenever `set_config` runs.
    pub fn config_version(&self, r: SlotRef) -> u32 {
        self.slot(r.index).config_version.load(Ordering::Acquire)
    }

    pub fn config(&self, r: SlotRef) -> CacheConfig {
        let s = self.slot(r.index);
        let _g = self.lock_list(s);
        // SAFETY: config is written only under the slot's list lock.
        unsafe { *s.config.get() }
    }

    pub fn set_config(&self, r: SlotRef, config: &CacheConfig) {
        let s = self.slot(r.index);
        let _g = self.lock_list(s);
        if s.incarnation.load(Ordering::Acquire) != r.incarnation {
            return; // dropped meanwhile: the slot may belong to another cache now
        }
        // SAFETY: config is written only under the slot's list lock.
        unsafe { *s.config.get() = *config };
        s.list.max_bytes.store(config.max_bytes, Ordering::Relaxed);
        s.config_version.fetch_add(1, Ordering::Release);
    }

    /// The live slots of database `db`; the caller holds the directory lock.
    fn active_slots_of(&self, db: u32) -> impl Iterator<Item = (SlotRef, &CacheSlot)> + '_ {
        let used = self.hdr().used_slots.load(Ordering::Acquire);
        (0..used as u16).filter_map(move |i| {
            let s = self.slot(i);
            (s.state.load(Ordering::Acquire) == SLOT_ACTIVE && s.db.load(Ordering::Relaxed) == db)
                .then(|| (SlotRef { index: i, incarnation: s.incarnation.load(Ordering::Acquire) }, s))
        })
    }

    /// The slots of database `db` with their cache names.
    pub fn slots_of(&self, db: u32) -> Vec<(SlotRef, String)> {
        let _dir = self.lock_directory(Mode::Shared);
        self.active_slots_of(db).map(|(r, s)| (r, String::from_utf8_lossy(self.slot_name(s)).into_owned())).collect()
    }

    pub fn stats(&self, r: SlotRef, name: String) -> SlotStats {
        let s = self.slot(r.index);
        let last = s.last_clear.load(Ordering::Relaxed);
        let (hits, misses) = self.read_totals(r.index);
        SlotStats {
            name,
            slot: Some(r),
            entries: s.list.entries.load(Ordering::Relaxed),
            bytes: s.list.bytes.load(Ordering::Relaxed),
            hits,
            misses,
            sets: s.list.sets.load(Ordering::Relaxed),
            deletes: s.list.deletes.load(Ordering::Relaxed),
            evictions: s.list.evictions.load(Ordering::Relaxed),
            expirations: s.list.expirations.load(Ordering::Relaxed),
            stale_sets: s.list.stale_sets.load(Ordering::Relaxed),
            last_clear: (last != NEVER).then_some(last),
            config: self.config(r),
        }
    }

    /// When the cache was last cleared by a committed transaction.
    pub fn last_clear(&self, r: SlotRef) -> Option<i64> {
        let t = self.slot(r.index).last_clear.load(Ordering::Acquire);
        (t != NEVER).then_some(t)
    }

    /// The read counters of slot `index` in `stripe`.
    fn read_counts(&self, index: u16, stripe: usize) -> &ReadCounts {
        debug_assert!((index as u32) < self.geo.slots);
        let at = (stripe % STRIPES) * self.geo.slots as usize + index as usize;
        // SAFETY: at < STRIPES * slots, inside the counter array.
        unsafe { &*(self.base.add(self.geo.counters_off) as *const ReadCounts).add(at) }
    }

    /// Counts a hit in the stripe of the calling backend.
    pub fn count_hit(&self, r: SlotRef, stripe: usize) {
        self.read_counts(r.index, stripe).hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_miss(&self, r: SlotRef, stripe: usize) {
        self.read_counts(r.index, stripe).misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Hits and misses of slot `index`, all stripes added up.
    fn read_totals(&self, index: u16) -> (u64, u64) {
        (0..STRIPES).map(|st| self.read_counts(index, st)).fold((0, 0), |(h, m), c| {
            (h + c.hits.load(Ordering::Relaxed), m + c.misses.load(Ordering::Relaxed))
        })
    }

    /// Every stripe's pins of slot `index` added up.
    fn pins_of(&self, index: u16) -> u32 {
        (0..STRIPES).map(|st| self.read_counts(index, st).pins.load(Ordering::SeqCst)).sum()
    }

    fn reset_read_counts(&self, index: u16) {
        for st in 0..STRIPES {
            let c = self.read_counts(index, st);
            c.hits.store(0, Ordering::Relaxed);
            c.misses.store(0, Ordering::Relaxed);
        }
    }

    // ---- allocator -------------------------------------------------------------

    /// Takes `n` blocks linked into one chain; `None` when fewer are free.
    fn alloc(&self, n: u32) -> Option<(u32, u32)> {
        self.locks.lock_allocator();
        let h = self.hdr();
        // SAFETY: allocator fields are only touched under the allocator lock.
        let got = unsafe {
            let free_head = &mut *h.alloc.free_head.get();
            let free_blocks = &mut *h.alloc.free_blocks.get();
            let bump = &mut *h.alloc.bump.get();
            if *free_blocks as u64 + (self.geo.blocks - *bump) as u64 >= n as u64 {
                let (mut first, mut last) = (NIL, NIL);
                for _ in 0..n {
                    let b = if *free_head != NIL {
                        let b = *free_head;
                        *free_head = self.next_of(b);
                        *free_blocks -= 1;
                        b
                    } else {
                        *bump += 1;
                        *bump - 1
                    };
                    if first == NIL {
                        first = b;
                    } else {
                        self.set_next(last, b);
                    }
                    last = b;
                }
                self.set_next(last, NIL);
                Some((first, last))
            } else {
                None
            }
        };
        self.locks.unlock_allocator();
        got
    }

    /// Returns an entry's blocks to the free list in O(1).
    fn free_entry(&self, first: u32) {
        // SAFETY: `first` is an entry nobody else can reach any more.
        let (last, n) = unsafe { ((*self.head(first)).last_block, (*self.head(first)).n_blocks) };
        self.locks.lock_allocator();
        // SAFETY: allocator fields are only touched under the allocator lock.
        unsafe {
            let h = self.hdr();
            self.set_next(last, *h.alloc.free_head.get());
            *h.alloc.free_head.get() = first;
            *h.alloc.free_blocks.get() += n;
        }
        self.locks.unlock_allocator();
    }

    /// Keeps a replaced entry's blocks in an empty `reserve` if it is small enough,
    /// else frees them.
    fn keep_or_free(&self, reserve: Option<&Reserve>, first: u32) {
        // SAFETY: `first` is an entry nobody else can reach any more.
        let n = unsafe { (*self.head(first)).n_blocks };
        match reserve {
            Some(res) if res.is_empty() && n <= RESERVE_MAX_BLOCKS => {
                self.hdr().reserved[res.stripe].fetch_add(n, Ordering::Relaxed);
                res.entry.set(first);
            }
            _ => self.free_entry(first),
        }
    }

    /// The reserve's blocks as an allocation of `n` blocks (first, last), if it holds
    /// exactly that many; a reserve of another size goes back to the free list.
    fn take_reserve(&self, reserve: Option<&Reserve>, n: u32) -> Option<(u32, u32)> {
        let (first, blocks, last) = self.empty_reserve(reserve?)?;
        if blocks != n {
            self.free_entry(first);
            return None;
        }
        Some((first, last))
    }

    /// Returns a reserve's blocks to the free list (a backend does so when it exits).
    pub fn release_reserve(&self, reserve: &Reserve) {
        if let Some((first, _, _)) = self.empty_reserve(reserve) {
            self.free_entry(first);
        }
    }

    /// Takes the kept entry out of `reserve` (first block, blocks, last block), no
    /// longer counted as reserved; the caller reuses or frees it.
    fn empty_reserve(&self, reserve: &Reserve) -> Option<(u32, u32, u32)> {
        let first = reserve.entry.replace(NIL);
        if first == NIL {
            return None;
        }
        // SAFETY: the kept entry is ours alone; its head still links its blocks.
        let (blocks, last) = unsafe { ((*self.head(first)).n_blocks, (*self.head(first)).last_block) };
        self.hdr().reserved[reserve.stripe].fetch_sub(blocks, Ordering::Relaxed);
        Some((first, blocks, last))
    }

    // ---- LRU (slot list lock held) ----------------------------------------------

    fn lru_unlink(&self, s: &CacheSlot, e: u32) {
        // SAFETY: e is on s's list; links change only under the list lock, which we hold.
        unsafe {
            let h = self.head(e);
            let (prev, next) = ((*h).lru_prev, (*h).lru_next);
            if prev != NIL {
                (*self.head(prev)).lru_next = next;
            } else {
                s.list.lru_head.store(next, Ordering::Relaxed);
            }
            if next != NIL {
                (*self.head(next)).lru_prev = prev;
            } else {
                s.list.lru_tail.store(prev, Ordering::Relaxed);
            }
            (*h).lru_prev = NIL;
            (*h).lru_next = NIL;
        }
    }

    fn lru_push_head(&self, s: &CacheSlot, e: u32) {
        // SAFETY: as in `lru_unlink`.
        unsafe {
            let old = s.list.lru_head.load(Ordering::Relaxed);
            (*self.head(e)).lru_prev = NIL;
            (*self.head(e)).lru_next = old;
            if old != NIL {
                (*self.head(old)).lru_prev = e;
            } else {
                s.list.lru_tail.store(e, Ordering::Relaxed);
            }
            s.list.lru_head.store(e, Ordering::Relaxed);
        }
    }

    /// Takes an entry off its slot's list and its counts; the caller then frees it.
    fn retire(&self, s: &CacheSlot, e: u32) {
        // SAFETY: e is a live entry of s; we hold the list lock.
        unsafe {
            self.lru_unlink(s, e);
            let h = self.head(e);
            (*h).state.store(ENTRY_DEAD, Ordering::Release);
            if (*h).gen == s.gen.load(Ordering::Relaxed) {
                s.list.entries.fetch_sub(1, Ordering::Relaxed);
                s.list.bytes.fetch_sub((*h).n_blocks as u64 * BLOCK_SIZE as u64, Ordering::Relaxed);
            }
        }
    }

    fn is_expired(&self, e: u32, now: i64) -> bool {
        // SAFETY: e is allocated while the caller holds a lock that keeps it so.
        let exp = unsafe { (*self.head(e)).expires_at };
        exp != NO_EXPIRY && now >= exp
    }

    /// Takes the least recently used entry off slot `index`'s list.
    fn pop_tail(&self, index: u16, reason: PopReason, now: i64) -> Option<Victim> {
        let s = self.slot(index);
        let _g = self.lock_list(s);
        let t = s.list.lru_tail.load(Ordering::Relaxed);
        if t == NIL {
            return None;
        }
        // SAFETY: t is on the list, hence allocated, and we hold the list lock.
        let (stale, hash, serial) = unsafe {
            let h = self.head(t);
            ((*h).gen != s.gen.load(Ordering::Relaxed), (*h).hash, (*h).serial)
        };
        if let PopReason::Evict = reason {
            if !stale {
                if self.is_expired(t, now) {
                    s.list.expirations.fetch_add(1, Ordering::Relaxed);
                } else {
                    s.list.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.retire(s, t);
        Some(Victim { block: t, serial, hash })
    }

    /// Unlinks a popped entry from its bucket and frees it, unless someone holding the
    /// partition lock already did (the serial tells a reused block apart).
    fn reap(&self, v: Victim) {
        let bucket = self.bucket_of(v.hash as u64);
        let _p = self.lock_bucket(bucket, Mode::Exclusive);
        let mut prev = NIL;
        // The chain is stable under the exclusive partition lock.
        let mut e = self.bucket_head(bucket).load(Ordering::Relaxed);
        while e != NIL {
            // SAFETY: entries on a chain are allocated.
            let (next, serial) = unsafe { ((*self.head(e)).chain_next, (*self.head(e)).serial) };
            if e == v.block && serial == v.serial {
                self.chain_unlink(bucket, prev, e);
                self.free_entry(e);
                return;
            }
            prev = e;
            e = next;
        }
    }

    /// Links `e` into `bucket`'s chain after `prev` (NIL: at the head); exclusive
    /// partition lock held. New keys go to the end of their chain, so a chain is
    /// ordered by when each key first came: entries that have stayed long, which a
    /// cache keeps because they are read, are found before the ones churning behind
    /// them, and a lookup passes fewer entries of other keys (a cache miss each).
    fn chain_insert_after(&self, bucket: u32, prev: u32, e: u32) {
        // SAFETY: exclusive partition lock held by the caller; e is ours, prev on the chain.
        unsafe {
            if prev == NIL {
                (*self.head(e)).chain_next = self.bucket_head(bucket).load(Ordering::Relaxed);
                self.bucket_head(bucket).store(e, Ordering::Relaxed);
            } else {
                (*self.head(e)).chain_next = (*self.head(prev)).chain_next;
                (*self.head(prev)).chain_next = e;
            }
        }
    }

    fn chain_unlink(&self, bucket: u32, prev: u32, e: u32) {
        // SAFETY: exclusive partition lock held by the caller.
        unsafe {
            let next = (*self.head(e)).chain_next;
            if prev == NIL {
                self.bucket_head(bucket).store(next, Ordering::Relaxed);
            } else {
                (*self.head(prev)).chain_next = next;
            }
        }
    }

    /// Frees memory by evicting one entry: stale or expired tails first, else the
    /// tail used longest ago among all caches (ages are comparable across caches:
    /// see [`EntryHead::used_at`]), taken from the database furthest over its share
    /// when one is. `false` when nothing can be evicted.
    fn evict_one(&self, now: i64, for_db: u32) -> bool {
        // A database over its share gives way first. When it has nothing installed
        // left to evict (its own transactions hold more than its share), a write into
        // it finds no room (it is lost like an entry evicted at once) and a write into
        // another database evicts by age alone.
        let mut over = self.database_over_share(self.hdr().used_slots.load(Ordering::Acquire));
        for _attempt in 0..8 {
            let used = self.hdr().used_slots.load(Ordering::Acquire);
            // Ranked by age (older first); dead tails (dropped, cleared, expired) first of all.
            let mut best: Option<(u16, u64)> = None;
            for i in 0..used as u16 {
                let s = self.slot(i);
                let state = s.state.load(Ordering::Acquire);
                if state == SLOT_FREE {
                    continue;
                }
                let t = s.list.lru_tail.load(Ordering::Relaxed);
                if t == NIL || t >= self.geo.blocks {
                    continue;
                }
                // A racy peek used only to rank candidates; pop_tail re-reads under the lock.
                // SAFETY: t < blocks, so the read stays inside the region.
                let (gen, used_at) =
                    unsafe { ((*self.head(t)).gen, (*self.head(t)).used_at.load(Ordering::Relaxed)) };
                let dead = state == SLOT_DROPPING || gen != s.gen.load(Ordering::Relaxed) || self.is_expired(t, now);
                if !dead && over.is_some_and(|db| s.db.load(Ordering::Relaxed) != db) {
                    continue;
                }
                let age = if dead { u64::MAX } else { ms(now).wrapping_sub(used_at) as u64 };
                if best.is_none_or(|(_, b)| age > b) {
                    best = Some((i, age));
                }
                if dead {
                    break;
                }
            }
            let Some((index, _)) = best else {
                match over {
                    Some(db) if db != for_db => {
                        over = None;
                        continue;
                    }
                    _ => return false,
                }
            };
            if let Some(v) = self.pop_tail(index, PopReason::Evict, now) {
                self.reap(v);
                return true;
            }
        }
        false
    }

    /// The database holding the most bytes beyond its share, if any does. Racy sums
    /// of the caches' counters, good enough to choose where to evict.
    fn database_over_share(&self, used: u32) -> Option<u32> {
        if self.database_share == u64::MAX {
            return None;
        }
        // Databases with caches are few; past 16 the rest are not judged.
        let mut per_db = [(0u32, 0u64); 16];
        for i in 0..used as u16 {
            let s = self.slot(i);
            if s.state.load(Ordering::Acquire) != SLOT_ACTIVE {
                continue;
            }
            let bytes = s.list.bytes.load(Ordering::Relaxed) + s.list.pending_bytes.load(Ordering::Relaxed);
            let db = s.db.load(Ordering::Relaxed);
            if let Some(e) = per_db.iter_mut().find(|e| e.0 == db || e.0 == 0) {
                *e = (db, e.1 + bytes);
            }
        }
        per_db.iter().filter(|e| e.0 != 0 && e.1 > self.database_share).max_by_key(|e| e.1).map(|e| e.0)
    }

    // ---- entries ---------------------------------------------------------------

    /// Allocates and fills an entry for (slot, key) → value, evicting as needed.
    /// Takes no partition lock while it allocates. `Ok(None)`: no room could be made
    /// (every block is held by entries other transactions are about to install).
    pub fn prepare(
        &self,
        reserve: Option<&Reserve>,
        r: SlotRef,
        key: &[u8],
        value: &[u8],
        hash: u64,
        expires_at: i64,
        now: i64,
    ) -> Result<Option<Prepared>, StoreError> {
        if key.len() + value.len() > self.max_payload() {
            return Err(StoreError::TooLarge);
        }
        let n = blocks_for(key.len() + value.len());
        self.prefetch_install(hash);
        let reserved = self.take_reserve(reserve, n as u32);
        let (first, last) = match reserved {
            Some(got) => got,
            None => loop {
                if let Some(got) = self.alloc(n as u32) {
                    break got;
                }
                if !self.evict_one(now, self.slot(r.index).db.load(Ordering::Relaxed)) {
                    // The write is lost like an entry evicted at once: count it so.
                    self.slot(r.index).list.evictions.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                }
            },
        };
        let counted = self.database_share != u64::MAX;
        if counted {
            self.slot(r.index).list.pending_bytes.fetch_add((n * BLOCK_SIZE) as u64, Ordering::Relaxed);
        }
        // SAFETY: the blocks are ours until installed or discarded.
        unsafe {
            let h = self.head(first);
            let next = (*h).next_block;
            std::ptr::write(
                h,
                EntryHead {
                    next_block: next,
                    chain_next: NIL,
                    lru_prev: NIL,
                    lru_next: NIL,
                    hash: hash as u32,
                    serial: self.hdr().serial.fetch_add(1, Ordering::Relaxed),
                    slot: r.index,
                    state: AtomicU8::new(ENTRY_LIVE),
                    pending: counted as u8,
                    gen: 0,
                    key_len: key.len() as u32,
                    value_len: value.len() as u32,
                    last_block: last,
                    n_blocks: n as u32,
                    expires_at,
                    pushed_at: AtomicU32::new(0),
                    used_at: AtomicU32::new(ms(now)),
                },
            );
        }
        // Key then value, block by block, with whole-slice copies.
        let mut b = first;
        let mut start = HEAD_SIZE;
        for mut src in [key, value] {
            while !src.is_empty() {
                if start == BLOCK_SIZE {
                    b = self.next_of(b);
                    start = LINK_SIZE;
                }
                let n = (BLOCK_SIZE - start).min(src.len());
                // SAFETY: [start, start + n) lies inside block b, which we own.
                let dst = unsafe { std::slice::from_raw_parts_mut(self.block(b).add(start), n) };
                dst.copy_from_slice(&src[..n]);
                src = &src[n..];
                start += n;
            }
        }
        Ok(Some(Prepared { block: first, hash }))
    }

    /// Starts loading the bucket head of `hash`: a write calls this when it is made,
    /// so that at PRE_COMMIT, microseconds later, `prefetch_install` finds it in cache.
    pub fn prefetch_bucket(&self, hash: u64) {
        prefetch(self.bucket_head(self.bucket_of(hash)) as *const AtomicU32 as *const u8);
    }

    /// Starts loading the lines the install of `hash` reads first (its fence bucket
    /// and the first entry of its chain, random in a large region), so that at
    /// COMMIT, under the partition lock, they are in cache.
    fn prefetch_install(&self, hash: u64) {
        prefetch(self.fence_of(hash) as *const u8);
        // Unlocked, so possibly stale: only a hint, and checked to lie in the pool.
        let first = self.bucket_head(self.bucket_of(hash)).load(Ordering::Relaxed);
        if first < self.geo.blocks {
            prefetch(self.head(first) as *const u8);
        }
    }

    /// Frees an entry that will not be installed (its transaction aborted).
    pub fn discard(&self, p: Prepared) {
        self.settle(p);
        self.free_entry(p.block);
    }

    /// Moves the shared clock to `now` if it is 100 ms or more behind.
    pub fn advance_clock(&self, now: i64) {
        let clock = &self.hdr().clock;
        if ms(now).wrapping_sub(clock.load(Ordering::Relaxed)) as i32 >= 100 {
            clock.store(ms(now), Ordering::Relaxed);
        }
    }

    /// Takes a prepared entry out of its slot's `pending_bytes`, once.
    fn settle(&self, p: Prepared) {
        // SAFETY: the entry is ours until installed or freed; nobody else reads `pending`.
        unsafe {
            let h = self.head(p.block);
            if (*h).pending != 0 {
                (*h).pending = 0;
                let bytes = blocks_for(((*h).key_len + (*h).value_len) as usize) * BLOCK_SIZE;
                self.slot((*h).slot).list.pending_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
            }
        }
    }

    /// Opens a commit to cache `r` at commit time `now`: takes its commit lock.
    pub fn commit(&self, r: SlotRef, now: i64) -> CacheCommit<'_, 'a, L> {
        self.locks.lock_cache(r.index, Mode::Exclusive);
        self.slot(r.index).commit_seq.fetch_add(1, Ordering::AcqRel);
        CacheCommit { store: self, r, now, shared: false }
    }

    /// Opens a commit of a single set or delete to cache `r`: takes its commit lock
    /// shared. Use only `install_if_fresh` and `delete` on it.
    pub fn commit_one(&self, r: SlotRef, now: i64) -> CacheCommit<'_, 'a, L> {
        self.locks.lock_cache(r.index, Mode::Shared);
        CacheCommit { store: self, r, now, shared: true }
    }

    /// Whether the key with `hash` in cache `s`, its cache or its database was
    /// invalidated at or after `start`. The key's partition lock is held.
    fn fenced_locked(&self, s: &CacheSlot, hash: u64, start: i64) -> bool {
        s.last_clear.load(Ordering::Acquire) >= start
            || self.db_fence(s.db.load(Ordering::Relaxed)) >= start
            // SAFETY: the fence bucket is guarded by the partition lock the caller holds.
            || unsafe { (*self.fence_of(hash)).fences(hash, start) }
    }

    fn db_fence(&self, db: u32) -> i64 {
        self.hdr().db_fences.get(db)
    }

    /// Fences every fill into database `db` by transactions that started at or before
    /// `now` (for `cache_clear_all` and `cache_drop`). Raise it before clearing the
    /// database's caches, so that a cache created meanwhile is covered too.
    pub fn raise_db_fence(&self, db: u32, now: i64) {
        let _dir = self.lock_directory(Mode::Exclusive);
        self.hdr().db_fences.raise_locked(db, now);
    }

    /// Empties every cache of database `db` but those `skip` names, after raising the
    /// database fence (so a cache created meanwhile is fenced even if the scan misses
    /// it). Allocates nothing: this runs at COMMIT.
    pub fn clear_database(&self, db: u32, now: i64, skip: impl Fn(SlotRef) -> bool) {
        self.raise_db_fence(db, now);
        let _dir = self.lock_directory(Mode::Shared);
        for (r, _) in self.active_slots_of(db) {
            if !skip(r) {
                self.commit(r, now).clear();
            }
        }
    }

    /// Cannot fail and allocates nothing: this is what runs at COMMIT. Commit lock held.
    /// With `fresh_since`, a fill stale for a transaction that started then is freed
    /// instead (see [`CacheCommit::is_stale`]); whether the entry was installed.
    ///
    /// The entry it replaces leaves the LRU list in the same slot lock hold that adds
    /// the new one, and both partition and slot lock are released before any block
    /// goes back to the allocator.
    #[allow(clippy::too_many_arguments)]
    fn install_locked(
        &self,
        reserve: Option<&Reserve>,
        r: SlotRef,
        p: Prepared,
        key: &[u8],
        size_limit: u64,
        now: i64,
        fresh_since: Option<i64>,
    ) -> bool {
        let s = self.slot(r.index);
        self.settle(p);
        self.advance_clock(now);
        let bucket = self.bucket_of(p.hash);
        let replaced;
        let installed = {
            let _p = self.lock_bucket(bucket, Mode::Exclusive);
            // Clears take the commit lock exclusively, so last_clear cannot move while
            // we hold it shared; same-key commits wait for this partition lock.
            let stale = fresh_since.is_some_and(|start| self.fenced_locked(s, p.hash, start));
            let insert_after;
            // A stale fill still invalidates its key: whatever the transaction meant
            // to replace must not outlive it.
            (replaced, insert_after) = self.unlink_key_locked(r, bucket, p.hash, key);
            // SAFETY: the fence bucket is guarded by the partition lock we hold.
            unsafe { (*self.fence_of(p.hash)).raise(p.hash, now) };
            let _g = self.lock_list(s);
            self.retire_unlinked(s, replaced, now);
            let live = s.state.load(Ordering::Acquire) == SLOT_ACTIVE
                && s.incarnation.load(Ordering::Acquire) == r.incarnation;
            if stale {
                s.list.stale_sets.fetch_add(1, Ordering::Relaxed);
                false
            } else if live {
                let tick = s.list.tick.fetch_add(1, Ordering::Relaxed);
                // SAFETY: we own the entry and hold the partition lock and the list lock.
                unsafe {
                    let h = self.head(p.block);
                    if (*h).expires_at != NO_EXPIRY {
                        self.hdr().changes.fetch_add(1, Ordering::Relaxed);
                    }
                    (*h).gen = s.gen.load(Ordering::Relaxed);
                    (*h).pushed_at.store(tick as u32, Ordering::Relaxed);
                    (*h).used_at.store(ms(now), Ordering::Relaxed);
                    self.lru_push_head(s, p.block);
                    s.list.entries.fetch_add(1, Ordering::Relaxed);
                    s.list.bytes.fetch_add((*h).n_blocks as u64 * BLOCK_SIZE as u64, Ordering::Relaxed);
                    s.list.sets.fetch_add(1, Ordering::Relaxed);
                    self.chain_insert_after(bucket, insert_after, p.block);
                }
                true
            } else {
                false
            }
        };
        self.free_unlinked(reserve, replaced);
        if !installed {
            self.keep_or_free(reserve, p.block);
            return false;
        }
        self.enforce_size_limit(r, size_limit, now);
        true
    }

    /// Evicts from the tail while slot `r` holds more than `size_limit` entries or
    /// more bytes than its `max_bytes`.
    pub fn enforce_size_limit(&self, r: SlotRef, size_limit: u64, now: i64) {
        let s = self.slot(r.index);
        let over = || {
            let max_bytes = s.list.max_bytes.load(Ordering::Relaxed);
            s.list.entries.load(Ordering::Relaxed) > size_limit
                || (max_bytes > 0 && s.list.bytes.load(Ordering::Relaxed) > max_bytes)
        };
        while over() {
            match self.pop_tail(r.index, PopReason::Evict, now) {
                Some(v) => self.reap(v),
                None => break,
            }
        }
    }

    /// Unlinks every entry of (slot, key) from its bucket; exclusive partition lock
    /// held. Returns them chained through `chain_next` (NIL for none): the caller
    /// takes them off the LRU list with `retire_unlinked` and, with no lock held,
    /// frees them with `free_unlinked`. Also returns where a new entry of the key
    /// goes (see `chain_insert_after`): in the place of the first one unlinked, else
    /// after the chain's last entry.
    fn unlink_key_locked(&self, r: SlotRef, bucket: u32, hash: u64, key: &[u8]) -> (u32, u32) {
        let mut unlinked = NIL;
        let mut prev = NIL;
        let mut insert_after = None;
        // The chain is stable under the exclusive partition lock.
        let mut e = self.bucket_head(bucket).load(Ordering::Relaxed);
        while e != NIL {
            // SAFETY: entries on a chain are allocated; we hold the partition lock
            // exclusively, so nobody else reads or writes chain links.
            unsafe {
                let h = self.head(e);
                let next = (*h).chain_next;
                if (*h).hash == hash as u32
                    && (*h).slot == r.index
                    && (*h).key_len as usize == key.len()
                    && self.key_equals(e, key)
                {
                    self.chain_unlink(bucket, prev, e);
                    (*h).chain_next = unlinked;
                    unlinked = e;
                    insert_after.get_or_insert(prev);
                } else {
                    prev = e;
                }
                e = next;
            }
        }
        (unlinked, insert_after.unwrap_or(prev))
    }

    /// Takes the entries of an `unlink_key_locked` list that are still on slot `s`'s
    /// LRU list off it (eviction may have taken some first); its list lock held.
    /// Whether one of them was visible (current generation, unexpired).
    fn retire_unlinked(&self, s: &CacheSlot, mut e: u32, now: i64) -> bool {
        let mut visible = false;
        while e != NIL {
            // SAFETY: unlinked entries stay allocated until `free_unlinked`.
            let h = unsafe { &*self.head(e) };
            if h.state.load(Ordering::Acquire) == ENTRY_LIVE {
                visible |= h.gen == s.gen.load(Ordering::Relaxed) && !self.is_expired(e, now);
                self.retire(s, e);
            }
            e = h.chain_next;
        }
        visible
    }

    /// Frees the entries of an `unlink_key_locked` list, or keeps one in `reserve`.
    fn free_unlinked(&self, reserve: Option<&Reserve>, mut e: u32) {
        while e != NIL {
            // SAFETY: nobody else can reach an unlinked, retired entry.
            let next = unsafe { (*self.head(e)).chain_next };
            self.keep_or_free(reserve, e);
            e = next;
        }
    }

    /// Deletes (slot, key); whether a visible entry was there. Commit lock held.
    fn delete_locked(&self, r: SlotRef, key: &[u8], hash: u64, now: i64) -> bool {
        let visible = self.invalidate_locked(r, key, hash, now);
        if visible {
            self.slot(r.index).list.deletes.fetch_add(1, Ordering::Relaxed);
        }
        visible
    }

    /// Removes every entry of (slot, key) and raises the key's fence, so that fills
    /// older than `now` are dropped; whether a visible entry was there. Counts
    /// nothing: the caller says why. Commit lock held.
    fn invalidate_locked(&self, r: SlotRef, key: &[u8], hash: u64, now: i64) -> bool {
        let s = self.slot(r.index);
        let bucket = self.bucket_of(hash);
        let (unlinked, visible) = {
            let _p = self.lock_bucket(bucket, Mode::Exclusive);
            // SAFETY: the fence bucket is guarded by the partition lock we hold.
            unsafe { (*self.fence_of(hash)).raise(hash, now) };
            let (unlinked, _) = self.unlink_key_locked(r, bucket, hash, key);
            let visible = unlinked != NIL && {
                let _g = self.lock_list(s);
                self.retire_unlinked(s, unlinked, now)
            };
            (unlinked, visible)
        };
        self.free_unlinked(None, unlinked);
        visible
    }

    /// Reclaims (slot, key) if it is past its TTL; counts an expiration.
    pub fn remove_expired(&self, r: SlotRef, key: &[u8], hash: u64, now: i64) {
        let bucket = self.bucket_of(hash);
        let _p = self.lock_bucket(bucket, Mode::Exclusive);
        let s = self.slot(r.index);
        let mut prev = NIL;
        // The chain is stable under the exclusive partition lock.
        let mut e = self.bucket_head(bucket).load(Ordering::Relaxed);
        while e != NIL {
            // SAFETY: entries on a chain are allocated.
            let h = unsafe { &*self.head(e) };
            let next = h.chain_next;
            if h.hash == hash as u32 && h.slot == r.index && self.key_equals(e, key) && self.is_expired(e, now) {
                let _g = self.lock_list(s);
                if h.state.load(Ordering::Acquire) == ENTRY_LIVE {
                    if h.gen == s.gen.load(Ordering::Relaxed) {
                        s.list.expirations.fetch_add(1, Ordering::Relaxed);
                    }
                    self.retire(s, e);
                }
                drop(_g);
                self.chain_unlink(bucket, prev, e);
                self.free_entry(e);
                return;
            }
            prev = e;
            e = next;
        }
    }

    /// Looks (slot, key) up under a shared partition lock; on a hit marks the entry
    /// used and returns `read(value_len, copy)` where `copy` fills a buffer of
    /// `value_len` bytes. `now` is called only for entries with a TTL.
    ///
    /// A lookup never sees half of a commit: it takes no commit lock but checks the
    /// cache's commit sequence before and after, and starts over (at last under the
    /// commit lock, shared) when an exclusive commit overlapped it. So readers write
    /// no shared cache line but their partition lock's.
    pub fn lookup<T>(
        &self,
        r: SlotRef,
        key: &[u8],
        hash: u64,
        now: impl Fn() -> i64,
        mut read: impl FnMut(usize, &dyn Fn(&mut [u8])) -> T,
    ) -> Lookup<T> {
        let s = self.slot(r.index);
        for _ in 0..OPTIMISTIC_LOOKUPS {
            let seq = s.commit_seq.load(Ordering::Acquire);
            if seq % 2 == 0 {
                let found = self.lookup_once(r, key, hash, &now, &mut read);
                // If this lookup saw a write of a commit, it took the partition lock
                // after that commit released it, so it sees the commit's first bump.
                if s.commit_seq.load(Ordering::Acquire) == seq {
                    return found;
                }
            }
            std::hint::spin_loop();
        }
        self.locks.lock_cache(r.index, Mode::Shared);
        let _c = CacheReadGuard { locks: self.locks, slot: r.index };
        self.lookup_once(r, key, hash, &now, &mut read)
    }

    fn lookup_once<T>(
        &self,
        r: SlotRef,
        key: &[u8],
        hash: u64,
        now: &impl Fn() -> i64,
        read: &mut impl FnMut(usize, &dyn Fn(&mut [u8])) -> T,
    ) -> Lookup<T> {
        let s = self.slot(r.index);
        let bucket = self.bucket_of(hash);
        let _p = self.lock_bucket(bucket, Mode::Shared);
        // Chains do not change while we hold the partition lock shared.
        let mut e = self.bucket_head(bucket).load(Ordering::Relaxed);
        while e != NIL {
            // SAFETY: entries on a chain are allocated.
            let h = unsafe { &*self.head(e) };
            if h.hash == hash as u32
                && h.slot == r.index
                && h.key_len as usize == key.len()
                && h.state.load(Ordering::Acquire) == ENTRY_LIVE
                && self.key_equals(e, key)
            {
                if h.gen != s.gen.load(Ordering::Acquire) || !self.is_valid(r) {
                    return Lookup::Miss;
                }
                if h.expires_at != NO_EXPIRY && now() >= h.expires_at {
                    return Lookup::Expired;
                }
                self.touch(s, e);
                let copy = |out: &mut [u8]| self.copy_value(e, out);
                return Lookup::Hit(read(h.value_len as usize, &copy));
            }
            e = h.chain_next;
        }
        Lookup::Miss
    }

    /// Marks a live entry used: moves it to the head of its LRU list, unless it is
    /// still in the newer half of the list (fewer pushes than half the cache's
    /// entries happened since it was last pushed). Hits on recently used entries thus
    /// write nothing shared, at the price of an LRU order that is exact only over
    /// the older half, where eviction happens. When another backend holds the list
    /// lock, the move is skipped rather than waited for (as memcached does) and the
    /// entry stamped as if moved.
    fn touch(&self, s: &CacheSlot, e: u32) {
        // SAFETY: e is on a chain we hold shared, hence allocated.
        let h = unsafe { &*self.head(e) };
        let pushes_since = (s.list.tick.load(Ordering::Relaxed) as u32).wrapping_sub(h.pushed_at.load(Ordering::Relaxed));
        if pushes_since as u64 <= s.list.entries.load(Ordering::Relaxed) / 2 {
            // Not moved and not stamped: a hit in the newer half writes nothing. An
            // entry read again and again crosses into the older half as others are
            // pushed, and is moved and stamped then, so a tail's stamp is at most
            // two passes of reading old. (Stamping here, even once a second, would
            // dirty the line of a hit that otherwise writes nothing.)
            return;
        }
        h.used_at.store(self.hdr().clock.load(Ordering::Relaxed), Ordering::Relaxed);
        let Some(_g) = self.try_lock_list(s) else {
            // Busy: count this hit as a move, so that the next hits do not retry it.
            h.pushed_at.store(s.list.tick.load(Ordering::Relaxed) as u32, Ordering::Relaxed);
            return;
        };
        if h.state.load(Ordering::Acquire) == ENTRY_LIVE {
            self.lru_unlink(s, e);
            self.lru_push_head(s, e);
            h.pushed_at.store(s.list.tick.fetch_add(1, Ordering::Relaxed) as u32, Ordering::Relaxed);
        }
    }

    /// Clears a cache in O(1): later lookups miss every entry installed before.
    /// Commit lock held.
    fn clear_locked(&self, r: SlotRef, now: i64) {
        let s = self.slot(r.index);
        let _g = self.lock_list(s);
        if s.incarnation.load(Ordering::Acquire) != r.incarnation {
            return;
        }
        s.gen.fetch_add(1, Ordering::Release);
        s.list.entries.store(0, Ordering::Relaxed);
        s.list.bytes.store(0, Ordering::Relaxed);
        s.last_clear.fetch_max(now, Ordering::Release);
        self.hdr().changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a cache and frees all its entries, one entry per lock hold.
    pub fn drop_slot(&self, r: SlotRef) {
        {
            let _dir = self.lock_directory(Mode::Exclusive);
            if !self.is_valid(r) {
                return;
            }
            self.begin_drop_locked(r.index);
        }
        self.finish_drop(r.index);
    }

    /// Makes slot `index` invisible at once (lookups, installs and new slots of the
    /// same name no longer see it); its entries stay until `finish_drop`. Directory
    /// lock held exclusively.
    fn begin_drop_locked(&self, index: u16) {
        let s = self.slot(index);
        let _g = self.lock_list(s);
        s.state.store(SLOT_DROPPING, Ordering::Release);
        self.hdr().changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Frees the entries of dropping slot `index`, one per lock hold, then the slot.
    fn finish_drop(&self, index: u16) -> u64 {
        let s = self.slot(index);
        let mut freed = 0;
        while let Some(v) = self.pop_tail(index, PopReason::Drop, 0) {
            self.reap(v);
            freed += 1;
        }
        let _dir = self.lock_directory(Mode::Exclusive);
        // A slot a commit still pins (its prepared entries are counted there) is freed
        // by a later pass of the worker.
        if s.state.load(Ordering::Acquire) == SLOT_DROPPING
            && s.list.lru_tail.load(Ordering::Acquire) == NIL
            && self.pins_of(index) == 0
        {
            s.incarnation.fetch_add(1, Ordering::Release);
            s.name_len.store(0, Ordering::Release);
            s.state.store(SLOT_FREE, Ordering::Release);
        }
        freed
    }

    /// Counts, for tests: (free-list blocks + never used blocks) must equal the blocks
    /// no entry holds.
    pub fn free_blocks(&self) -> u32 {
        self.locks.lock_allocator();
        // SAFETY: allocator fields are read under the allocator lock.
        let n = unsafe { *self.hdr().alloc.free_blocks.get() + (self.geo.blocks - *self.hdr().alloc.bump.get()) };
        self.locks.unlock_allocator();
        // Blocks held in backends' reserves are free too, though not on the free list.
        n + self.hdr().reserved.iter().map(|r| r.load(Ordering::Relaxed)).sum::<u32>()
    }
}

#[cfg(test)]
mod tests;
