-- pg_cache 0.1.0 -> 0.2.0: cache_stats() gains stale_sets (fills dropped at commit
-- because an invalidation committed after their transaction began).
DROP FUNCTION cache_stats();
CREATE FUNCTION cache_stats() RETURNS TABLE (
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
	"last_clear" timestamp with time zone
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_stats_v2_wrapper';

-- The background worker's companions: memory view, statistics reset, sync.
CREATE FUNCTION cache_stats_reset() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_stats_reset_wrapper';

CREATE FUNCTION cache_memory() RETURNS TABLE (
	"total_bytes" bigint,
	"used_bytes" bigint,
	"entries" bigint,
	"databases" bigint
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_memory_wrapper';

CREATE FUNCTION cache_last_clear("cache" TEXT) RETURNS timestamp with time zone
VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_last_clear_wrapper';

CREATE FUNCTION cache_sync_since("cache" TEXT, "since" timestamp with time zone) RETURNS bool
VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_sync_since_wrapper';
