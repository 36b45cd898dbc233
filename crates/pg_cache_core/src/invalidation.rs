//! One invalidation as a value, as `inval.c` has one message type: what a committed
//! transaction makes stale. The commit turns its plan into these and applies each
//! through [`Store::invalidate`](crate::store::Store::invalidate) (or, inside a cache's
//! commit, the commit's own methods, which apply them the same way); a standby's redo
//! will apply the same values read from WAL.

use crate::store::SlotRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation<'a> {
    /// One stored key of one cache (`cache_delete`, an overwrite, a dropped fill): its
    /// entries go and its fence is raised.
    Key { cache: SlotRef, key: &'a [u8], hash: u64 },
    /// Every entry of one cache (`cache_clear`, a declaration that changes how keys
    /// are stored): a generation bump, which is also the cache's fence.
    Cache { cache: SlotRef },
    /// Every entry of one cache carrying any of `tags` (hashes, see
    /// [`crate::store::tag_hash`]): `cache_invalidate_tags`. O(tags): a time per tag,
    /// compared on read with the entry's install time.
    Tags { cache: SlotRef, tags: &'a [u64] },
    /// Every entry of one cache whose stored key starts with `prefix`:
    /// `cache_delete_prefix`. O(1): a time for the prefix, compared on read.
    Prefix { cache: SlotRef, prefix: &'a [u8] },
    /// Every cache of a database but `except` (`cache_clear_all`: the caches its
    /// transaction wrote itself, which their own commit handles, and those the caller
    /// may not write). The database's fence is raised first, so that a cache created
    /// meanwhile is covered too.
    Database { db: u32, except: &'a [SlotRef] },
    /// Every cache of a database goes, entries and declarations (`cache_drop`, `DROP
    /// EXTENSION`, `DROP DATABASE`). `fence`: raise the database's fence first, for
    /// sessions that may still be filling; not after `DROP DATABASE`, which nobody is
    /// connected to, so that a database created later with the same OID does not
    /// report this as a clear of its own.
    DropCaches { db: u32, fence: bool },
}
