//! The registry: from a cache name to its shared slot and the settings this
//! transaction sees for it, and from a user key to the stored key (context prefix
//! included). Slots are remembered per backend and revalidated with two atomic
//! loads, so the read path takes no directory lock. A new slot starts with the
//! declaration in `pg_cache_declarations` (see `declarations`).
//!
//! Below `api` and `xact`, which both resolve names here; it reads the transaction's
//! own declarations from `pending` and never imports either.

pub mod bindings;
pub mod declarations;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;

use crate::errors;
use crate::pg::{self, database};
use crate::{gucs, pending, shmem};
use pg_cache_core::key::{self, Context};
use pg_cache_core::store::{CacheConfig, SlotRef, StoreError};

#[derive(Clone)]
struct Known {
    slot: SlotRef,
    version: u32,
    /// Shared, not copied: a configuration is a few hundred bytes.
    config: Rc<CacheConfig>,
}

#[derive(Default)]
struct KnownCaches {
    by_name: HashMap<Rc<str>, Known>,
    /// The cache resolved last: most calls name the same cache as the call before,
    /// and comparing the name is cheaper than hashing it.
    last: Option<(Rc<str>, Known)>,
}

thread_local! {
    static KNOWN: RefCell<KnownCaches> = RefCell::new(KnownCaches::default());
}

/// The slot of `name` in the current database (created on first use) and the
/// settings this transaction sees for it (its own pending `cache_create` first).
pub fn resolve(name: &str) -> (SlotRef, Rc<CacheConfig>) {
    try_resolve(name).unwrap_or_else(|e| errors::raise(PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED, e.message, e.hint))
}

/// No slot could be made for a cache (53400): what to say about it, and the
/// settings it would have had (for the read privilege check of a declared cache).
pub struct NoSlot {
    pub message: String,
    pub hint: &'static str,
    pub config: CacheConfig,
}

/// [`resolve`], or why no slot could be made.
pub fn try_resolve(name: &str) -> Result<(SlotRef, Rc<CacheConfig>), Box<NoSlot>> {
    let found = match known(name) {
        Some(found) => found,
        None => {
            let slot = match shmem::store().find_slot(database(), name) {
                Some(slot) => slot,
                None => create(name, || initial_config(name))?,
            };
            remember(name, slot)
        }
    };
    Ok(with_own_declaration(name, found))
}

/// Creates the slot of `name` with the settings `initial`. Boxed: the reads and
/// writes that return this are on the hot paths, and a small result costs them less
/// (callgrind: 25 instructions of a `cache_get` hit).
///
/// Its settings come from `read()`. On a hot standby the declaration read may be one
/// a replayed commit is changing: if the standby forgot slots for a declaration
/// change after the read began (see `Store::forget_declarations`), this slot is
/// forgotten and made again from a new read, so that no slot keeps settings from
/// before a declaration the standby has seen commit.
fn create(name: &str, read: impl Fn() -> CacheConfig) -> Result<SlotRef, Box<NoSlot>> {
    let store = shmem::store();
    let mut forgets = store.declarations_forgotten();
    let mut slot = create_with(name, &read())?;
    for _ in 0..3 {
        if store.declarations_forgotten() == forgets {
            break;
        }
        store.forget_slot(database(), key::name_hash(name.as_bytes()));
        forgets = store.declarations_forgotten();
        slot = create_with(name, &read())?;
    }
    Ok(slot)
}

fn create_with(name: &str, initial: &CacheConfig) -> Result<SlotRef, Box<NoSlot>> {
    let per_database = gucs::max_caches_per_database();
    shmem::store().find_or_create_slot(database(), name, initial, per_database).map_err(|e| match e {
        StoreError::DirectoryFull => Box::new(NoSlot {
            message: format!("cannot create cache \"{name}\": all {} cache slots are in use", gucs::max_caches()),
            hint: "Every slot holds entries or a declaration. Drop unused caches with cache_drop() or raise pg_cache.max_caches (needs a restart).",
            config: *initial,
        }),
        StoreError::DatabaseFull { per_database } => Box::new(NoSlot {
            message: format!("cannot create cache \"{name}\": this database already uses {per_database} cache slots"),
            hint: "Raise pg_cache.max_caches_per_database, or let unused caches empty out.",
            config: *initial,
        }),
        StoreError::TooLarge => unreachable!(),
    })
}

/// Remembers `slot` as the slot of `name` in this backend, with its settings.
fn remember(name: &str, slot: SlotRef) -> (SlotRef, Rc<CacheConfig>) {
    let store = shmem::store();
    let known = Known { slot, version: store.config_version(slot), config: Rc::new(store.config(slot)) };
    let name: Rc<str> = name.into();
    KNOWN.with_borrow_mut(|k| {
        k.by_name.insert(name.clone(), known.clone());
        k.last = Some((name, known.clone()));
    });
    (slot, known.config)
}

/// The slot of `name` as this backend last resolved it, while still valid.
fn known(name: &str) -> Option<(SlotRef, Rc<CacheConfig>)> {
    let store = shmem::store();
    let still_valid = |kn: &Known| store.is_valid(kn.slot) && store.config_version(kn.slot) == kn.version;
    KNOWN.with_borrow_mut(|k| {
        if let Some((_, kn)) = k.last.as_ref().filter(|(n, kn)| &**n == name && still_valid(kn)) {
            return Some((kn.slot, kn.config.clone()));
        }
        let (n, kn) = k.by_name.get_key_value(name).filter(|(_, kn)| still_valid(kn))?;
        let found = (kn.slot, kn.config.clone());
        k.last = Some((n.clone(), kn.clone()));
        Some(found)
    })
}

/// Names this backend found with no slot and no declaration, valid while no slot
/// is created anywhere (`Store::slots_created` stands still); at most
/// `UNKNOWN_NAMES` of them, forgotten together when full.
#[derive(Default)]
struct UnknownNames {
    slots_created: u64,
    names: std::collections::HashSet<Box<str>>,
}

const UNKNOWN_NAMES: usize = 1024;

thread_local! {
    static UNKNOWN: RefCell<UnknownNames> = RefCell::new(UnknownNames::default());
}

/// For a read: `resolve`, except that a name with no slot and no declaration (not
/// even this transaction's) gets none: `None`, and the read is a miss. A flood of
/// reads of new names thus takes no slot and cannot fill the directory. (A
/// declared cache still gets its slot, where its misses are counted.)
#[inline]
pub fn resolve_for_read(name: &str) -> Result<Option<(SlotRef, Rc<CacheConfig>)>, Box<NoSlot>> {
    if let Some(found) = known(name) {
        return Ok(Some(with_own_declaration(name, found)));
    }
    first_resolve_for_read(name)
}

/// [`resolve_for_read`] of a name this backend has no valid slot for.
#[cold]
fn first_resolve_for_read(name: &str) -> Result<Option<(SlotRef, Rc<CacheConfig>)>, Box<NoSlot>> {
    if pending::declared(name).is_some() {
        return try_resolve(name).map(Some);
    }
    let store = shmem::store();
    // Read before looking: a slot created after the look moves it.
    let created = store.slots_created();
    if UNKNOWN.with_borrow(|u| u.slots_created == created && u.names.contains(name)) {
        return Ok(None);
    }
    // (This transaction declared nothing of `name`, so its committed declaration is
    // what a new slot starts with.)
    if let Some(slot) = store.find_slot(database(), name) {
        return Ok(Some(with_own_declaration(name, remember(name, slot))));
    }
    if declarations::read(name).is_some() {
        // Read again inside create, after the standby's forget counter (see there).
        let read = || declarations::read(name).unwrap_or_default();
        return Ok(Some(with_own_declaration(name, remember(name, create(name, read)?))));
    }
    UNKNOWN.with_borrow_mut(|u| {
        if u.slots_created != created || u.names.len() >= UNKNOWN_NAMES {
            u.names.clear();
            u.slots_created = created;
        }
        // Remembering is an optimisation: without memory for it, just forget.
        if u.names.try_reserve(1).is_ok() {
            if let Ok(owned) = pg_cache_core::writeset::try_string(name) {
                u.names.insert(owned.into_boxed_str());
            }
        }
    });
    Ok(None)
}

thread_local! {
    static UNDECLARED: Rc<CacheConfig> = Rc::new(CacheConfig::default());
}

/// The settings of a cache nobody declared.
pub fn undeclared() -> Rc<CacheConfig> {
    UNDECLARED.with(Rc::clone)
}

fn with_own_declaration(name: &str, (slot, config): (SlotRef, Rc<CacheConfig>)) -> (SlotRef, Rc<CacheConfig>) {
    match pending::declared(name) {
        Some(declared) => (slot, Rc::new(declared)),
        None => (slot, config),
    }
}

/// The committed declaration a new slot starts with. A declaration this transaction
/// made is not committed yet, so it must not reach shared memory.
fn initial_config(name: &str) -> CacheConfig {
    match pending::declared_before(name) {
        Some(previous) => previous.unwrap_or_default(),
        None => declarations::read(name).unwrap_or_default(),
    }
}

/// The effective size limit and default time to live of a cache.
pub fn size_limit(config: &CacheConfig) -> u64 {
    if config.size_limit > 0 { config.size_limit as u64 } else { gucs::default_size_limit() }
}

pub fn duration_us(config: &CacheConfig) -> Option<i64> {
    if config.duration_us > 0 { Some(config.duration_us) } else { gucs::default_duration_us() }
}

thread_local! {
    /// `pg_cache.context_settings` as last seen, and its names, split once per change
    /// rather than on every read.
    static CONTEXT_NAMES: RefCell<(Option<CString>, Vec<CString>)> = const { RefCell::new((None, Vec::new())) };
}

/// How a cache with `config` stores keys here (see [`stored_key`]): whether by
/// context, the keys it ignores and the context settings. WAL records carry it, so
/// that a standby storing them otherwise knows it cannot match their key hashes.
/// Allocates nothing (redo calls it).
pub fn key_encoding(config: &CacheConfig) -> u64 {
    if !config.context {
        return key::name_hash(b"shared");
    }
    let settings = gucs::context_settings().map_or(&b""[..], CStr::to_bytes);
    key::slot_hash(0, key::raw_hash_of(&[b"context|", config.ignored().as_bytes(), b"|", settings]))
}

/// The bytes `key` is stored under in a cache with `config`, in the caller's context.
pub fn stored_key(config: &CacheConfig, key: &str) -> Vec<u8> {
    if !config.context {
        return key::encode(&Context::shared(), key.as_bytes()).unwrap_or_else(|_| errors::out_of_memory("encoding a key"));
    }
    let ignored = |name: &str| config.ignored().split(',').map(str::trim).any(|i| i == name);
    let role = (!ignored("role")).then(pg::current_role);
    CONTEXT_NAMES.with_borrow_mut(|(raw, names)| {
        let current = gucs::context_settings();
        if raw.as_deref() != current {
            *raw = current.map(CStr::to_owned);
            *names = current
                .and_then(|s| s.to_str().ok())
                .map(|s| s.split(',').map(str::trim).filter(|n| !n.is_empty()).filter_map(|n| CString::new(n).ok()).collect())
                .unwrap_or_default();
        }
        let values: Vec<Option<&[u8]>> = names
            .iter()
            .filter(|n| !ignored(n.to_str().unwrap_or("")))
            .map(|n| {
                // SAFETY: a NUL-terminated name; missing_ok = true returns NULL for unknown
                // settings; the returned string stays valid while no setting changes.
                let v = unsafe { pg_sys::GetConfigOption(n.as_ptr(), true, false) };
                // SAFETY: a non-NULL result is a NUL-terminated string (see above).
                (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_bytes())
            })
            .collect();
        key::encode(&Context { role, settings: values }, key.as_bytes())
    })
    .unwrap_or_else(|_| errors::out_of_memory("encoding a key"))
}
