-- Declared caches of this database (cache_create). Kept in a table so that
-- declarations survive restarts and pg_dump; shared memory is rebuilt from it.
CREATE TABLE pg_cache_declarations (
    cache text PRIMARY KEY CHECK (octet_length(cache) BETWEEN 1 AND 63),
    size_limit integer CHECK (size_limit >= 1),
    duration interval CHECK (duration > interval '0'),
    context boolean NOT NULL DEFAULT true,
    context_ignored_keys text[] NOT NULL DEFAULT '{}',
    declared_at timestamptz NOT NULL DEFAULT now(),
    -- The first declarer; only its members, superusers and pgcache_admin may redeclare.
    owner regrole NOT NULL,
    -- Who may read (cache_get) and write (set, delete, clear): members of these roles
    -- and of the owner. NULL: anyone.
    readers regrole[],
    writers regrole[],
    -- Most bytes of pg_cache.memory the cache may hold; NULL: no limit of its own.
    max_bytes bigint CHECK (max_bytes >= 1),
    -- 'keys': committed changes are announced on the pg_cache_feed channel.
    notify text CHECK (notify = 'keys'),
    -- How the cache chooses what to evict: 'lru' or 'lfu'.
    policy text NOT NULL DEFAULT 'lru' CHECK (policy IN ('lru', 'lfu'))
);
SELECT pg_catalog.pg_extension_config_dump('pg_cache_declarations', '');
-- Everyone may read the declarations; only cache_create writes them (as the table's
-- owner, after its own privilege checks).
GRANT SELECT ON pg_cache_declarations TO PUBLIC;

-- Members may call cache_drop() for any database. (PostgreSQL reserves role names
-- starting with pg_, so the role is pgcache_admin.)
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgcache_admin') THEN
        CREATE ROLE pgcache_admin NOLOGIN;
    END IF;
END
$$;

-- Caches derived from tables (cache_bind): the triggers that keep them exact go
-- with these rows. Kept in a table so that bindings survive pg_dump.
CREATE TABLE pg_cache_bindings (
    cache text NOT NULL CHECK (octet_length(cache) BETWEEN 1 AND 63),
    relid regclass NOT NULL,
    -- The key: the text of these columns joined by ':', or what this function of
    -- the row returns; after key_prefix.
    key_columns text[],
    key_function regprocedure,
    key_prefix text NOT NULL DEFAULT '',
    bound_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cache, relid),
    CHECK ((key_columns IS NULL) <> (key_function IS NULL))
);
SELECT pg_catalog.pg_extension_config_dump('pg_cache_bindings', '');
GRANT SELECT ON pg_cache_bindings TO PUBLIC;

-- The extension is trusted: a database owner may install it, and then owns it
-- but not these tables (a trusted script runs as the bootstrap superuser). A
-- dump of the database restores their rows as that owner: it may add rows, as
-- cache_create and cache_bind do after their own checks (it could drop and
-- recreate the extension anyway). Nobody else may.
-- (The extension's owner, read from pg_extension: the script's substitution for
-- the owner names whoever runs the script, a superuser updating it for one.)
DO $$
BEGIN
    EXECUTE pg_catalog.format('GRANT INSERT ON pg_cache_declarations, pg_cache_bindings TO %I',
        (SELECT pg_catalog.pg_get_userbyid(e.extowner) FROM pg_catalog.pg_extension e
         WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cache'));
END
$$;
