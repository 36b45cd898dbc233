"""The statements the client sends, and running them on a caller's connection.

Every function is called schema-qualified (the extension's schema is looked up
once per connection), so the caller's ``search_path`` never decides what runs.
jsonb results are cast to text and parsed by the codec, so that psycopg 3 and
psycopg2 (Tryton's driver) give the same values.
"""

from __future__ import annotations

import weakref

from .errors import NotInstalled, from_driver_error

SCHEMA_QUERY = (
    "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e "
    "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
    "WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cache'"
)

_TTL = "pg_catalog.make_interval(secs => %s::pg_catalog.float8), %s::pg_catalog.timestamptz"
_WRITE_OPTS = _TTL + ", %s::pg_catalog.text[]"
_LEFT = "CASE WHEN pg_catalog.isfinite(e) THEN extract(epoch FROM e OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())::pg_catalog.float8 END"

#: The settings a cache may apply to its own calls (``Cache(settings=...)``).
SETTINGS = {
    "on_limit": ("error", "warning"),
    "keep_fills_on_rollback": ("on", "off"),
    "snapshot_reads": ("on", "off"),
}


def check_settings(settings: dict | None) -> tuple:
    """``settings`` as a sorted tuple of pairs, each checked against :data:`SETTINGS`."""
    out = []
    for k, v in sorted((settings or {}).items()):
        v = {True: "on", False: "off"}.get(v, v)
        if k not in SETTINGS or v not in SETTINGS[k]:
            raise ValueError(f"unknown pg_cache setting {k!r} = {v!r}: one of {SETTINGS}")
        out.append((k, v))
    return tuple(out)


def statements(s: str, settings: tuple = ()) -> dict:
    """The statement texts for the extension in schema ``s`` (already quoted).

    With ``settings``, each statement first applies them for the rest of the
    transaction (``set_config(..., true)`` in its FROM clause, evaluated before the
    target list), so that a cache's calls behave as it asks without a round trip
    of their own or a change to the session.
    """
    f = ", ".join(f"pg_catalog.set_config('pg_cache.{k}', '{v}', true) AS s{i}" for i, (k, v) in enumerate(settings))
    g = f" FROM {f}" if f else ""
    join = f", {f}" if f else ""
    return {
        "schema": s,
        "get": f"SELECT {s}.cache_get(%s, %s)::pg_catalog.text{g}",
        "get_bytes": f"SELECT {s}.cache_get_bytes(%s, %s){g}",
        # For copies kept in the process: the value and the seconds it has left.
        "get_ttl": f"SELECT v::pg_catalog.text, {_LEFT}, e IS NOT NULL FROM (SELECT {s}.cache_get(%s, %s) AS v, {s}.cache_expires_at(%s, %s) AS e{g}) q",
        "get_bytes_ttl": f"SELECT v, {_LEFT}, e IS NOT NULL FROM (SELECT {s}.cache_get_bytes(%s, %s) AS v, {s}.cache_expires_at(%s, %s) AS e{g}) q",
        "set": f"SELECT {s}.cache_set(%s, %s, %s::pg_catalog.jsonb, {_WRITE_OPTS}){g}",
        "set_bytes": f"SELECT {s}.cache_set_bytes(%s, %s, %s::pg_catalog.bytea, {_WRITE_OPTS}){g}",
        "put": f"SELECT {s}.cache_put(%s, %s, %s::pg_catalog.jsonb, {_WRITE_OPTS}){g}",
        "put_bytes": f"SELECT {s}.cache_put_bytes(%s, %s, %s::pg_catalog.bytea, {_WRITE_OPTS}){g}",
        "add": f"SELECT {s}.cache_add(%s, %s, %s::pg_catalog.jsonb, {_TTL}){g}",
        "incr": f"SELECT {s}.cache_incr(%s, %s, %s::pg_catalog.int8, %s::pg_catalog.int8, {_TTL}){g}",
        "touch": f"SELECT {s}.cache_touch(%s, %s, {_TTL}){g}",
        "pull": f"SELECT {s}.cache_pull(%s, %s)::pg_catalog.text{g}",
        "has": f"SELECT {s}.cache_has(%s, %s){g}",
        "delete": f"SELECT {s}.cache_delete(%s, %s){g}",
        "expires_at": f"SELECT pg_catalog.isfinite(e), extract(epoch FROM e)::pg_catalog.float8 FROM (SELECT {s}.cache_expires_at(%s, %s) AS e{g}) q",
        "get_or_lock": f"SELECT {s}.cache_get_or_lock(%s, %s)::pg_catalog.text{g}",
        # A set-returning function in the target list runs after the FROM clause.
        "get_many": f"SELECT (r).key, (r).value::pg_catalog.text FROM (SELECT {s}.cache_get_many(%s, %s::pg_catalog.text[]) AS r{g}) q",
        "get_many_bytes": f"SELECT (r).key, (r).value FROM (SELECT {s}.cache_get_many_bytes(%s, %s::pg_catalog.text[]) AS r{g}) q",
        "set_many": f"SELECT {s}.cache_set_many(%s, %s::pg_catalog.jsonb, {_WRITE_OPTS}){g}",
        "put_many": f"SELECT {s}.cache_put_many(%s, %s::pg_catalog.jsonb, {_WRITE_OPTS}){g}",
        "set_many_bytes": f"SELECT {s}.cache_set_bytes(%s, k, v, {_WRITE_OPTS}) FROM ROWS FROM (pg_catalog.unnest(%s::pg_catalog.text[]), pg_catalog.unnest(%s::pg_catalog.bytea[])) AS u(k, v){join}",
        "put_many_bytes": f"SELECT {s}.cache_put_bytes(%s, k, v, {_WRITE_OPTS}) FROM ROWS FROM (pg_catalog.unnest(%s::pg_catalog.text[]), pg_catalog.unnest(%s::pg_catalog.bytea[])) AS u(k, v){join}",
        "delete_many": f"SELECT {s}.cache_delete_many(%s, %s::pg_catalog.text[]){g}",
        "clear": f"SELECT {s}.cache_clear(%s){g}",
        "clear_all": f"SELECT {s}.cache_clear_all(){g}",
        "invalidate_tags": f"SELECT {s}.cache_invalidate_tags(%s, %s::pg_catalog.text[]){g}",
        "delete_prefix": f"SELECT {s}.cache_delete_prefix(%s, %s){g}",
        "sync_since": f"SELECT {s}.cache_sync_since(%s, %s::pg_catalog.timestamptz)",
        "declaration": f"SELECT notify, context FROM {s}.pg_cache_declarations "
        "WHERE cache OPERATOR(pg_catalog.=) %s::pg_catalog.text",
        "last_clear": f"SELECT {s}.cache_last_clear(%s)",
        "stats": f"SELECT entries, bytes, hits, misses, sets, deletes, evictions, expirations, stale_sets, "
        f"size_limit, extract(epoch FROM duration)::pg_catalog.float8, last_clear, hit_ratio::pg_catalog.float8, skipped "
        f"FROM {s}.cache_stats() WHERE cache OPERATOR(pg_catalog.=) %s::pg_catalog.text",
    }


STATS_COLUMNS = (
    "entries", "bytes", "hits", "misses", "sets", "deletes", "evictions", "expirations",
    "stale_sets", "size_limit", "duration", "last_clear", "hit_ratio", "skipped",
)

# Statement texts per connection: the schema is looked up once.
_by_connection: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_by_schema: dict = {}


def _cursor_rows(conn, sql, params):
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []
    finally:
        cur.close()


def run(conn, sql: str, params=()) -> list:
    """Rows of ``sql`` run on ``conn`` (psycopg 3 or any DB-API driver using
    ``%s``), pg_cache's errors raised as :class:`~pg_cache_client.errors.CacheError`."""
    try:
        return _cursor_rows(conn, sql, params)
    except Exception as e:  # the driver's error class is the driver's
        converted = from_driver_error(e)
        if converted is e:
            raise
        raise converted from e


def _remember(conn, schema: str, settings: tuple) -> dict:
    found = _by_schema.get((schema, settings))
    if found is None:
        found = _by_schema[(schema, settings)] = statements(schema, settings)
    try:
        _by_connection.setdefault(conn, {})[settings] = found
    except TypeError:  # a connection that takes no weak reference: looked up each time
        pass
    return found


def _schema(rows) -> str:
    if not rows:
        raise NotInstalled("the database has no pg_cache extension: CREATE EXTENSION pg_cache")
    return rows[0][0]


def statements_for(conn, settings: tuple = (), schema: str | None = None) -> dict:
    """The statements for the pg_cache of ``conn``'s database (in ``schema``, an
    identifier already quoted, when the caller knows it)."""
    if schema is not None:
        found = _by_schema.get((schema, settings))
        return found if found is not None else _remember(conn, schema, settings)
    try:
        return _by_connection[conn][settings]
    except (KeyError, TypeError):
        pass
    known = _by_connection.get(conn) if _weakable(conn) else None
    schema = next(iter(known.values()))["schema"] if known else _schema(run(conn, SCHEMA_QUERY))
    return _remember(conn, schema, settings)


def _weakable(conn) -> bool:
    try:
        weakref.ref(conn)
        return True
    except TypeError:
        return False


async def arun(conn, sql: str, params=()) -> list:
    """:func:`run` for a psycopg 3 ``AsyncConnection``."""
    try:
        cur = conn.cursor()
        try:
            await cur.execute(sql, params)
            return await cur.fetchall() if cur.description is not None else []
        finally:
            await cur.close()
    except Exception as e:
        converted = from_driver_error(e)
        if converted is e:
            raise
        raise converted from e


async def astatements_for(conn, settings: tuple = ()) -> dict:
    try:
        return _by_connection[conn][settings]
    except (KeyError, TypeError):
        pass
    known = _by_connection.get(conn) if _weakable(conn) else None
    schema = next(iter(known.values()))["schema"] if known else _schema(await arun(conn, SCHEMA_QUERY))
    return _remember(conn, schema, settings)
