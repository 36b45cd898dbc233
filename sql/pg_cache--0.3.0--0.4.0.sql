-- pg_cache 0.3.0 -> 0.4.0: cache_put, a write that is never dropped as a stale fill
-- (last committer wins); cache_add, cache_incr, cache_decr and cache_pull, which read
-- a key under its lock and write what they read; cache_has, cache_touch,
-- cache_expires_at; cache_get_or_lock, a single-flight read; the _many forms of
-- get, set, put and delete; expires_at beside ttl on every write (cache_set's C
-- symbol gets a new version: 0.3.0's keeps working until this update); bytea values;
-- cache_declare; cache_stats() gains hit_ratio and skipped, cache_memory()
-- skipped_without_slot; tags on writes, cache_invalidate_tags and
-- cache_delete_prefix; cache_keys; cache_bind and cache_unbind with
-- pg_cache_bindings; cache_create and cache_declare gain notify (the change feed;
-- cache_create's C symbol gets a new version: 0.3.0's keeps working until this
-- update); policy => 'lru' | 'lfu'.

DROP FUNCTION cache_set(text, text, jsonb, interval);

CREATE FUNCTION "cache_set"(
	"cache" TEXT,
	"key" TEXT,
	"value" jsonb,
	"ttl" interval DEFAULT NULL,
	"expires_at" timestamp with time zone DEFAULT NULL,
	"tags" TEXT[] DEFAULT NULL
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_set_v2_wrapper';

CREATE FUNCTION "cache_put"(
	"cache" TEXT,
	"key" TEXT,
	"value" jsonb,
	"ttl" interval DEFAULT NULL,
	"expires_at" timestamp with time zone DEFAULT NULL,
	"tags" TEXT[] DEFAULT NULL
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_put_wrapper';

CREATE FUNCTION "cache_add"(
	"cache" TEXT,
	"key" TEXT,
	"value" jsonb,
	"ttl" interval DEFAULT NULL,
	"expires_at" timestamp with time zone DEFAULT NULL
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_add_wrapper';

CREATE FUNCTION "cache_incr"(
	"cache" TEXT,
	"key" TEXT,
	"delta" bigint DEFAULT 1,
	"initial" bigint DEFAULT 0,
	"ttl" interval DEFAULT NULL,
	"expires_at" timestamp with time zone DEFAULT NULL
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_incr_wrapper';

CREATE FUNCTION "cache_decr"(
	"cache" TEXT,
	"key" TEXT,
	"delta" bigint DEFAULT 1,
	"initial" bigint DEFAULT 0,
	"ttl" interval DEFAULT NULL,
	"expires_at" timestamp with time zone DEFAULT NULL
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_decr_wrapper';

CREATE FUNCTION "cache_pull"(
	"cache" TEXT,
	"key" TEXT,
	"default" jsonb DEFAULT NULL
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_pull_wrapper';

CREATE FUNCTION "cache_has"(
	"cache" TEXT,
	"key" TEXT
) RETURNS bool
VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_has_wrapper';

CREATE FUNCTION "cache_touch"(
	"cache" TEXT,
	"key" TEXT,
	"ttl" interval DEFAULT NULL,
	"expires_at" timestamp with time zone DEFAULT NULL
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_touch_wrapper';

CREATE FUNCTION "cache_get_or_lock"(
	"cache" TEXT,
	"key" TEXT
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_get_or_lock_wrapper';

CREATE FUNCTION "cache_expires_at"(
	"cache" TEXT,
	"key" TEXT
) RETURNS timestamp with time zone
VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_expires_at_wrapper';

-- Many keys in one call.
CREATE FUNCTION "cache_get_many"(
	"cache" TEXT,
	"keys" TEXT[]
) RETURNS TABLE (
	"key" TEXT,
	"value" jsonb
)
VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_get_many_wrapper';

CREATE FUNCTION "cache_set_many"(
	"cache" TEXT,
	"entries" jsonb,
	"ttl" interval DEFAULT NULL,
	"expires_at" timestamp with time zone DEFAULT NULL,
	"tags" TEXT[] DEFAULT NULL
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_set_many_wrapper';

CREATE FUNCTION "cache_put_many"(
	"cache" TEXT,
	"entries" jsonb,
	"ttl" interval DEFAULT NULL,
	"expires_at" timestamp with time zone DEFAULT NULL,
	"tags" TEXT[] DEFAULT NULL
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_put_many_wrapper';

CREATE FUNCTION "cache_delete_many"(
	"cache" TEXT,
	"keys" TEXT[]
) RETURNS INT
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_delete_many_wrapper';

-- cache_stats() gains hit_ratio and skipped (its C symbol's version follows the row shape).
DROP FUNCTION cache_stats();
CREATE FUNCTION "cache_stats"() RETURNS TABLE (
	"cache" TEXT,
	"entries" bigint,
	"bytes" bigint,
	"hits" bigint,
	"misses" bigint,
	"sets" bigint,
	"deletes" bigint,
	"evictions" bigint,
	"expirations" bigint,
	"stale_sets" bigint,
	"size_limit" bigint,
	"duration" interval,
	"last_clear" timestamp with time zone,
	"hit_ratio" double precision,
	"skipped" bigint
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_stats_v3_wrapper';

-- cache_memory() gains skipped_without_slot (calls skipped under
-- pg_cache.on_limit = warning for want of a slot), with a new C symbol.
DROP FUNCTION cache_memory();
CREATE FUNCTION "cache_memory"() RETURNS TABLE (
	"total_bytes" bigint,
	"used_bytes" bigint,
	"entries" bigint,
	"databases" bigint,
	"skipped_without_slot" bigint
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_memory_v2_wrapper';

-- Binary values: entries record their kind; a read of the other kind is an error.
CREATE FUNCTION "cache_set_bytes"(
	"cache" TEXT,
	"key" TEXT,
	"value" bytea,
	"ttl" interval DEFAULT NULL,
	"expires_at" timestamp with time zone DEFAULT NULL,
	"tags" TEXT[] DEFAULT NULL
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_set_bytes_wrapper';

CREATE FUNCTION "cache_put_bytes"(
	"cache" TEXT,
	"key" TEXT,
	"value" bytea,
	"ttl" interval DEFAULT NULL,
	"expires_at" timestamp with time zone DEFAULT NULL,
	"tags" TEXT[] DEFAULT NULL
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_put_bytes_wrapper';

CREATE FUNCTION "cache_get_bytes"(
	"cache" TEXT,
	"key" TEXT,
	"default" bytea DEFAULT NULL
) RETURNS bytea
VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_get_bytes_wrapper';

CREATE FUNCTION "cache_get_many_bytes"(
	"cache" TEXT,
	"keys" TEXT[]
) RETURNS TABLE (
	"key" TEXT,
	"value" bytea
)
VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_get_many_bytes_wrapper';

-- An idempotent declaration that also works in a READ ONLY transaction.
CREATE FUNCTION "cache_declare"(
	"cache" TEXT,
	"size_limit" INT DEFAULT NULL,
	"duration" interval DEFAULT NULL,
	"context" bool DEFAULT true,
	"context_ignored_keys" TEXT[] DEFAULT '{}',
	"max_bytes" bigint DEFAULT NULL,
	"notify" TEXT DEFAULT NULL,
	"policy" TEXT DEFAULT 'lru'
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_declare_wrapper';

-- Invalidation by tag and by key prefix, O(1) in the cache's size at commit.
CREATE FUNCTION "cache_invalidate_tags"(
	"cache" TEXT,
	"tags" TEXT[]
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_invalidate_tags_wrapper';

CREATE FUNCTION "cache_delete_prefix"(
	"cache" TEXT,
	"prefix" TEXT
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_delete_prefix_wrapper';

-- The live keys of a cache, for administrators.
CREATE FUNCTION "cache_keys"(
	"cache" TEXT,
	"pattern" TEXT DEFAULT NULL,
	"limit" INT DEFAULT 1000
) RETURNS SETOF TEXT
VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_keys_wrapper';

-- Caches bound to tables: bindings are rows, kept in step with their triggers.
CREATE TABLE pg_cache_bindings (
    cache text NOT NULL CHECK (octet_length(cache) BETWEEN 1 AND 63),
    relid regclass NOT NULL,
    key_columns text[],
    key_function regprocedure,
    key_prefix text NOT NULL DEFAULT '',
    bound_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cache, relid),
    CHECK ((key_columns IS NULL) <> (key_function IS NULL))
);
SELECT pg_catalog.pg_extension_config_dump('pg_cache_bindings', '');
GRANT SELECT ON pg_cache_bindings TO PUBLIC;
-- As in a fresh install: the extension's owner may restore their rows.
-- (The extension's owner, read from pg_extension: the script's substitution for
-- the owner names whoever runs the script, a superuser updating it for one.)
DO $$
BEGIN
    EXECUTE pg_catalog.format('GRANT INSERT ON pg_cache_declarations, pg_cache_bindings TO %I',
        (SELECT pg_catalog.pg_get_userbyid(e.extowner) FROM pg_catalog.pg_extension e
         WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cache'));
END
$$;

CREATE FUNCTION "cache_bind"(
	"cache" TEXT,
	"table" regclass,
	"key_columns" TEXT[] DEFAULT NULL,
	"key_function" regprocedure DEFAULT NULL,
	"key_prefix" TEXT DEFAULT ''
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_bind_wrapper';

CREATE FUNCTION "cache_unbind"(
	"cache" TEXT,
	"table" regclass
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_unbind_wrapper';

CREATE FUNCTION "cache_bound_row_changed"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'cache_bound_row_changed_wrapper';

-- The change feed: caches declared with notify => 'keys' announce their commits.
ALTER TABLE pg_cache_declarations ADD COLUMN notify text CHECK (notify = 'keys');
-- LFU beside LRU.
ALTER TABLE pg_cache_declarations ADD COLUMN policy text NOT NULL DEFAULT 'lru' CHECK (policy IN ('lru', 'lfu'));

DROP FUNCTION cache_create(text, integer, interval, boolean, text[], text[], text[], bigint);
CREATE FUNCTION "cache_create"(
	"cache" TEXT,
	"size_limit" INT DEFAULT NULL,
	"duration" interval DEFAULT NULL,
	"context" bool DEFAULT true,
	"context_ignored_keys" TEXT[] DEFAULT '{}',
	"readers" TEXT[] DEFAULT NULL,
	"writers" TEXT[] DEFAULT NULL,
	"max_bytes" bigint DEFAULT NULL,
	"notify" TEXT DEFAULT NULL,
	"policy" TEXT DEFAULT 'lru'
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_create_v4_wrapper';
