-- pg_cache 0.2.0 -> 0.3.0: declared caches have an owner and may restrict who reads
-- and who writes them, and may limit their bytes; cache_create gains readers,
-- writers and max_bytes and runs as its caller
-- (it writes the declarations table as the table's owner after its own checks).

ALTER TABLE pg_cache_declarations ADD COLUMN owner regrole;
-- Caches declared before 0.3.0 belong to the extension's owner.
UPDATE pg_cache_declarations SET owner = (
    SELECT e.extowner::pg_catalog.regrole FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_cache');
ALTER TABLE pg_cache_declarations ALTER COLUMN owner SET NOT NULL;
ALTER TABLE pg_cache_declarations ADD COLUMN readers regrole[];
ALTER TABLE pg_cache_declarations ADD COLUMN writers regrole[];
ALTER TABLE pg_cache_declarations ADD COLUMN max_bytes bigint CHECK (max_bytes >= 1);

DROP FUNCTION cache_create(text, integer, interval, boolean, text[]);
CREATE FUNCTION cache_create(
	"cache" TEXT,
	"size_limit" INT DEFAULT NULL,
	"duration" interval DEFAULT NULL,
	"context" bool DEFAULT true,
	"context_ignored_keys" TEXT[] DEFAULT '{}',
	"readers" TEXT[] DEFAULT NULL,
	"writers" TEXT[] DEFAULT NULL,
	"max_bytes" bigint DEFAULT NULL
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_create_v3_wrapper';
