//! Invalidation by tag and by key prefix: transactional like `cache_delete` (applied
//! at commit, dropped with a rollback or a rolled-back savepoint, seen by the
//! transaction at once, a fence for older fills), and O(1) in the cache's size at
//! commit (see the store's predicates.rs).

use pgrx::prelude::*;

use super::args::{self, check_name, check_writable, MAX_TAGS_PER_CALL};
use super::functions::owned;
use crate::{errors, pending, registry};
use pg_cache_core::writeset::Op;

/// Makes every entry of `cache` carrying any of `tags` a miss when the transaction
/// commits (entries written with `tags => …`); fills carrying one of them by
/// transactions that started before that commit are dropped.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_invalidate_tags(cache: Option<&str>, tags: Option<Vec<Option<String>>>) {
    check_writable("cache_invalidate_tags");
    let name = check_name(cache);
    let tags = tags.unwrap_or_else(|| errors::null_argument("tags"));
    if tags.len() > MAX_TAGS_PER_CALL {
        errors::too_large(
            format!("tags has {} elements, more than {MAX_TAGS_PER_CALL}", tags.len()),
            "Split the call: one call invalidates at most 10000 tags.",
        );
    }
    // An invalidation is never skipped: without a slot for the cache it raises.
    let (_, config) = registry::resolve(name);
    args::check_write(name, &config);
    let names: Vec<String> = tags.iter().flatten().cloned().collect();
    let hashes = args::tag_hashes(tags, "an element of tags");
    if !hashes.is_empty() {
        pending::push(Op::InvalidateTags { cache: owned(name), tags: hashes, names });
    }
}

/// Deletes every key of `cache` that starts with `prefix` when the transaction
/// commits (in the caller's context, as `cache_delete` does); fills of such keys by
/// transactions that started before that commit are dropped.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_delete_prefix(cache: Option<&str>, prefix: Option<&str>) {
    check_writable("cache_delete_prefix");
    let name = check_name(cache);
    let prefix = prefix.unwrap_or_else(|| errors::null_argument("prefix"));
    let (_, config) = registry::resolve(name);
    args::check_write(name, &config);
    let stored = registry::stored_key(&config, prefix);
    pending::push(Op::DeletePrefix { cache: owned(name), prefix: stored });
}
