-- pg_cache 0.3.0 -> 0.4.0: cache_put, a write that is never dropped as a stale fill
-- (last committer wins); cache_add, cache_incr, cache_decr and cache_pull, which read
-- a key under its lock and write what they read; cache_has, cache_touch; and
-- cache_get_or_lock, a single-flight read.

CREATE FUNCTION "cache_put"(
	"cache" TEXT,
	"key" TEXT,
	"value" jsonb,
	"ttl" interval DEFAULT NULL
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_put_wrapper';

CREATE FUNCTION "cache_add"(
	"cache" TEXT,
	"key" TEXT,
	"value" jsonb,
	"ttl" interval DEFAULT NULL
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_add_wrapper';

CREATE FUNCTION "cache_incr"(
	"cache" TEXT,
	"key" TEXT,
	"delta" bigint DEFAULT 1,
	"initial" bigint DEFAULT 0,
	"ttl" interval DEFAULT NULL
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_incr_wrapper';

CREATE FUNCTION "cache_decr"(
	"cache" TEXT,
	"key" TEXT,
	"delta" bigint DEFAULT 1,
	"initial" bigint DEFAULT 0,
	"ttl" interval DEFAULT NULL
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
	"ttl" interval
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
