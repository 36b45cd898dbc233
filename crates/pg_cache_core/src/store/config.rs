//! What `cache_create` declares for a cache, as the store keeps it in its slot.

use super::MAX_IGNORED;

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

/// How a cache orders its entries for eviction. Per cache, so that a cache of
/// things read once in a while and a cache of hot rows can each keep what they
/// should; least recently used is the first.
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Evict the entry used longest ago (approximately: see `policy/lru.rs`).
    #[default]
    Lru = 0,
    /// Evict an entry read seldom: a small use count per entry, aged by the
    /// eviction hand (see `policy/lfu.rs`); a scan passes through without pushing
    /// out what is read again and again.
    Lfu = 1,
}

impl Policy {
    /// The policy a slot's byte records (an unknown byte reads as `Lru`).
    pub fn from_byte(byte: u8) -> Policy {
        match byte {
            1 => Policy::Lfu,
            _ => Policy::Lru,
        }
    }

    /// The policy named `name` (`lru`, `lfu`), as `cache_create` takes it.
    pub fn from_name(name: &str) -> Option<Policy> {
        match name {
            "lru" => Some(Policy::Lru),
            "lfu" => Some(Policy::Lfu),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Lru => "lru",
            Policy::Lfu => "lfu",
        }
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
    pub policy: Policy,
    /// Whether committed changes are announced on the change feed (`notify =>
    /// 'keys'`).
    pub notify: bool,
    pub(super) ignored_len: u16,
    pub(super) ignored: [u8; MAX_IGNORED],
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
            policy: Policy::Lru,
            notify: false,
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
