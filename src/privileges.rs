//! Who the current user is to a cache: its owner's member, a listed role's member,
//! an administrator. Raises nothing: `api` turns a "no" into 42501, and `xact` uses
//! the same answer at PRE_COMMIT for `cache_clear_all`.

use std::ffi::CStr;

use pgrx::pg_sys;

use crate::pg;
use pg_cache_core::store::{CacheConfig, RoleList};

/// Whether the current user has the privileges of `role` (superusers have all).
pub fn acts_as(role: u32) -> bool {
    // SAFETY: a catalog lookup inside a transaction; an unknown role is no member.
    role != 0 && unsafe { pg_sys::has_privs_of_role(pg_sys::Oid::from(pg::current_role()), pg_sys::Oid::from(role)) }
}

/// Whether the current user is a superuser or has the privileges of `pgcache_admin`.
pub fn is_admin() -> bool {
    // SAFETY: catalog lookups inside a transaction.
    unsafe {
        let admin = pg_sys::get_role_oid(c"pgcache_admin".as_ptr(), true);
        pg_sys::superuser() || (admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(pg_sys::Oid::from(pg::current_role()), admin))
    }
}

/// Whether the current user may do what `allowed` restricts on a cache owned by
/// `owner`: anyone when it is open, else its owner's members, the listed roles'
/// members and superusers. Open caches cost one byte compare.
pub fn may(config: &CacheConfig, allowed: &RoleList) -> bool {
    allowed.is_open() || acts_as(config.owner) || allowed.roles().iter().any(|&r| acts_as(r))
}

pub fn role_names(roles: &RoleList) -> String {
    roles
        .roles()
        .iter()
        .map(|&r| {
            // SAFETY: a syscache lookup; NULL for a dropped role.
            let name = unsafe { pg_sys::GetUserNameFromId(pg_sys::Oid::from(r), true) };
            if name.is_null() {
                format!("(dropped role {r})")
            } else {
                // SAFETY: a palloc'd NUL-terminated name.
                unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
