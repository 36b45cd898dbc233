-- pg_cache 0.3.0 -> 0.4.0: cache_put, a write that is never dropped as a stale fill
-- (last committer wins).

CREATE FUNCTION "cache_put"(
	"cache" TEXT,
	"key" TEXT,
	"value" jsonb,
	"ttl" interval DEFAULT NULL
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_put_wrapper';
