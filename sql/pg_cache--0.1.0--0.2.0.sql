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
