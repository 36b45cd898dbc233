//! The change feed's payloads for a commit (caches declared `notify => 'keys'`),
//! built at PRE_COMMIT from the write set's plan.

use std::collections::HashMap;

use pgrx::pg_sys;

use pg_cache_core::feed;
use pg_cache_core::key;
use pg_cache_core::writeset::Plan;

/// The channel of the change feed (caches declared with `notify => 'keys'`).
pub(super) const FEED_CHANNEL: &str = "pg_cache_feed";

/// What this commit announces on the change feed: for each cache of the plan
/// declared with `notify => 'keys'`, the user keys it writes or deletes, the tags
/// and prefixes it invalidates, or that it clears the cache (see `feed`). A fill
/// dropped as stale at COMMIT is announced all the same: a listener that drops a
/// key it need not have loses nothing but a hit. `index` numbers the plan's caches
/// and `cache(i)` says whether cache `i` announces and whether the commit clears it.
pub(super) fn announcements(plan: &Plan, index: &HashMap<&str, usize>, cache: impl Fn(usize) -> (bool, bool)) -> Vec<String> {
    let mut out = Vec::new();
    let mut named: Vec<(&str, usize)> = index.iter().map(|(&n, &i)| (n, i)).collect();
    named.sort_by_key(|&(_, i)| i);
    for (name, i) in named {
        let (notify, clears) = cache(i);
        if !notify {
            continue;
        }
        let mut changes = feed::Changes::default();
        // Bounded by what the payloads can hold, with fallible allocations: past
        // that the commit is announced as a clear, never the backend aborted.
        let mut budget = feed::MAX_PAYLOADS * max_payload();
        let listed = !(clears || plan.clear_all)
            && plan.writes.iter().filter(|w| w.cache == name).filter_map(|w| key::user_part(w.key)).all(|k| take(&mut changes.keys, k, &mut budget))
            && plan.tags.iter().filter(|t| t.0 == name).flat_map(|t| t.2.iter()).all(|t| take(&mut changes.tags, t.as_str(), &mut budget))
            && plan.prefixes.iter().filter(|p| p.0 == name).filter_map(|p| key::user_part(p.1)).all(|p| take(&mut changes.prefixes, p, &mut budget));
        changes.cleared = !listed;
        out.extend(feed::payloads(name, &changes, max_payload()));
    }
    out
}

/// Adds `item` to `list` if `budget` bytes of payload still hold it (with the
/// quotes and comma it takes) and the list can grow; whether it did.
fn take<'a, T: ?Sized + AsRef<[u8]>>(list: &mut Vec<&'a T>, item: &'a T, budget: &mut usize) -> bool {
    let n = item.as_ref().len() + 3;
    if n > *budget || list.try_reserve(1).is_err() {
        return false;
    }
    *budget -= n;
    list.push(item);
    true
}

/// The longest payload this server's `NOTIFY` takes (BLCKSZ − NAMEDATALEN − 128,
/// less one: it refuses that length).
pub(super) fn max_payload() -> usize {
    pg_sys::BLCKSZ as usize - pg_sys::NAMEDATALEN as usize - 128 - 1
}
