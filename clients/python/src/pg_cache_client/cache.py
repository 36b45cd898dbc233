"""A named cache over a connection the caller already has."""

from __future__ import annotations

import datetime as _dt
import json as _json
from typing import Any, Callable, Iterable, Mapping

from . import _sql
from .codecs import TAGGED, Codec
from .errors import NotReady
from .keys import encode_key

__all__ = ["Cache", "clear_all", "NEVER", "MISSING"]

#: What :meth:`Cache.expires_at` returns for a value that never expires.
NEVER = _dt.datetime.max.replace(tzinfo=_dt.timezone.utc)


class _Missing:
    def __repr__(self):
        return "MISSING"


#: A default that tells a miss from a stored ``None``.
MISSING: Any = _Missing()

_dumps = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _seconds(ttl) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, _dt.timedelta):
        return ttl.total_seconds()
    return float(ttl)


def _tags(tags) -> list | None:
    if tags is None:
        return None
    if isinstance(tags, str):
        return [tags]
    return list(tags)


class _Ops:
    """Each operation as a generator: it yields ``(statement, params)`` and is sent
    the rows, and returns the result. :class:`Cache` runs them on a connection and
    :class:`~pg_cache_client.aio.AsyncCache` on an async one. A statement is the
    name of one of ``_sql.statements``, or a function of them returning its text."""

    def __init__(self, conn, name: str, *, codec: Codec = TAGGED, settings: dict | None = None, schema=None):
        self._conn = conn
        self._schema = schema
        self.name = name
        self.codec = codec
        self.settings = _sql.check_settings(settings)

    @property
    def connection(self):
        c = self._conn
        return c() if callable(c) and not hasattr(c, "cursor") else c

    def _known_schema(self):
        return self._schema() if callable(self._schema) else self._schema

    @staticmethod
    def _text(stmts: dict, op) -> str:
        return op(stmts) if callable(op) else stmts[op]

    def _bytes(self) -> bool:
        return self.codec.kind == "bytea"

    def _jsonb_only(self, what: str):
        if self._bytes():
            raise TypeError(f"{what} takes jsonb values: a cache with a {type(self.codec).__name__} stores bytea")

    def _get(self, key, default):
        rows = yield ("get_bytes" if self._bytes() else "get", (self.name, encode_key(key)))
        stored = rows[0][0]
        return default if stored is None else self.codec.decode(stored)

    def _get_ttl(self, key):
        """(value or MISSING, seconds it has left or None for never, whether the
        expiry is known: the entry may go between the two reads)."""
        k = encode_key(key)
        rows = yield ("get_bytes_ttl" if self._bytes() else "get_ttl", (self.name, k, self.name, k))
        stored, left, known = rows[0]
        return (MISSING, None, False) if stored is None else (self.codec.decode(stored), left, known)

    def _write(self, op, key, value, ttl, expires_at, tags):
        kind = op + "_bytes" if self._bytes() else op
        yield (kind, (self.name, encode_key(key), self.codec.encode(value), _seconds(ttl), expires_at, _tags(tags)))

    def _add(self, key, value, ttl, expires_at):
        self._jsonb_only("add")
        rows = yield ("add", (self.name, encode_key(key), self.codec.encode(value), _seconds(ttl), expires_at))
        return bool(rows[0][0])

    def _incr(self, key, delta, initial, ttl, expires_at):
        rows = yield ("incr", (self.name, encode_key(key), delta, initial, _seconds(ttl), expires_at))
        return rows[0][0]

    def _touch(self, key, ttl, expires_at):
        rows = yield ("touch", (self.name, encode_key(key), _seconds(ttl), expires_at))
        return bool(rows[0][0])

    def _pull(self, key, default):
        self._jsonb_only("pull")
        rows = yield ("pull", (self.name, encode_key(key)))
        stored = rows[0][0]
        return default if stored is None else self.codec.decode(stored)

    def _one(self, op, key):
        rows = yield (op, (self.name, encode_key(key)))
        return rows[0][0]

    def _expires_at(self, key):
        rows = yield ("expires_at", (self.name, encode_key(key)))
        finite, epoch = rows[0]
        if finite is None:
            return None
        if not finite:
            return NEVER
        return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc)

    def _get_many(self, keys):
        by_text = {}
        for k in keys:
            by_text[encode_key(k)] = k
        if not by_text:
            return {}
        rows = yield ("get_many_bytes" if self._bytes() else "get_many", (self.name, list(by_text)))
        decode = self.codec.decode
        return {by_text[t]: decode(v) for t, v in rows}

    def _write_many(self, op, mapping, ttl, expires_at, tags):
        items = mapping.items() if isinstance(mapping, Mapping) else mapping
        encode = self.codec.encode
        pairs = [(encode_key(k), encode(v)) for k, v in items]
        if not pairs:
            return
        if self._bytes():
            yield (op + "_many_bytes", (self.name, _seconds(ttl), expires_at, _tags(tags), [k for k, _ in pairs], [v for _, v in pairs]))
        else:
            entries = "{" + ",".join(_dumps(k) + ":" + v for k, v in pairs) + "}"
            yield (op + "_many", (self.name, entries, _seconds(ttl), expires_at, _tags(tags)))

    def _delete_many(self, keys):
        texts = list(dict.fromkeys(encode_key(k) for k in keys))
        if not texts:
            return 0
        rows = yield ("delete_many", (self.name, texts))
        return rows[0][0]

    def _call(self, op, *params):
        yield (op, (self.name, *params))

    def _stats(self):
        rows = yield ("stats", (self.name,))
        if not rows:
            return None
        return dict(zip(_sql.STATS_COLUMNS, rows[0]))

    def _sync_since(self, since):
        rows = yield ("sync_since", (self.name, since))
        return bool(rows[0][0])

    def _last_clear(self):
        rows = yield ("last_clear", (self.name,))
        return rows[0][0]

    def _declare_sql(self, settings: dict):
        names = {
            "size_limit": "%s::pg_catalog.int4",
            "duration": "pg_catalog.make_interval(secs => %s::pg_catalog.float8)",
            "context": "%s::pg_catalog.bool",
            "context_ignored_keys": "%s::pg_catalog.text[]",
            "max_bytes": "%s::pg_catalog.int8",
            "notify": "%s::pg_catalog.text",
            "policy": "%s::pg_catalog.text",
        }
        args, params = ["%s"], [self.name]
        for k, v in settings.items():
            if k not in names:
                raise TypeError(f"declare() got an unexpected setting {k!r}")
            args.append(f"{k} => {names[k]}")
            if k == "context_ignored_keys":
                v = [v] if isinstance(v, str) else list(v)
            params.append(_seconds(v) if k == "duration" else v)
        return ", ".join(args), params

    def _declare(self, settings):
        args, params = self._declare_sql(settings)
        rows = yield (lambda stmts: f"SELECT {stmts['schema']}.cache_declare({args})", params)
        return bool(rows[0][0])

    def _declaration(self):
        """(notify, context) of the cache's declaration row, (None, None) without one."""
        rows = yield ("declaration", (self.name,))
        return (rows[0][0], rows[0][1]) if rows else (None, None)


class Cache(_Ops):
    """The cache ``name`` of the database of ``conn``.

    ``conn`` is the caller's own connection (psycopg 3, or any DB-API driver
    using ``%s`` placeholders such as psycopg2), or a function returning the
    connection to use now. Every call runs on it, inside whatever transaction
    it is in: writes commit and roll back with that transaction, and reads see
    its own pending writes. No connection of the client's own is ever opened.

    ``codec`` decides how values are stored (:mod:`pg_cache_client.codecs`).
    Keys are encoded by :func:`~pg_cache_client.keys.encode_key`.

    ``settings`` applies pg_cache settings to this cache's calls, for the rest of
    the transaction each runs in, without a round trip or a change to the
    session: ``{"on_limit": "warning"}`` (a key or value over a limit is skipped
    with a WARNING instead of aborting the caller's transaction),
    ``{"keep_fills_on_rollback": "on"}`` (fills of a transaction that wrote no
    data survive its ROLLBACK), ``{"snapshot_reads": "on"}``.

    ``schema`` (the extension's schema, quoted as an identifier, or a function
    returning it) spares the look-up made once per connection; a caller whose
    transaction began before the extension was created needs it, as its
    snapshot does not show the extension.

    A *fill* (``set``) is derived data: dropped at commit if the key was
    invalidated after the transaction began. A *put* is data the cache holds:
    never dropped, last committer wins. See the extension's README, "Transaction
    semantics".
    """

    def _drive(self, gen):
        conn = self.connection
        stmts = _sql.statements_for(conn, self.settings, self._known_schema())
        try:
            op, params = next(gen)
            while True:
                op, params = gen.send(_sql.run(conn, self._text(stmts, op), params))
        except StopIteration as stop:
            return stop.value

    # Reads

    def get(self, key, default=None):
        """The value of ``key``, or ``default`` when it holds none."""
        return self._drive(self._get(key, default))

    def get_many(self, keys: Iterable) -> dict:
        """``{key: value}`` for each of ``keys`` that holds a value: one round trip,
        all read as of one moment."""
        return self._drive(self._get_many(keys))

    def has(self, key) -> bool:
        """Whether ``key`` holds a value; counts no hit or miss, moves nothing."""
        return bool(self._drive(self._one("has", key)))

    def expires_at(self, key):
        """When the value of ``key`` expires (:data:`NEVER` for never), or ``None``."""
        return self._drive(self._expires_at(key))

    # Writes: each takes effect when the caller's transaction commits.

    def set(self, key, value, ttl=None, expires_at=None, tags=None) -> None:
        """Fill ``key`` (derived data; dropped as stale if invalidated meanwhile).
        ``ttl`` in seconds or a timedelta, or ``expires_at`` a datetime; ``tags``
        (at most 8) for :meth:`invalidate_tags`."""
        self._drive(self._write("set", key, value, ttl, expires_at, tags))

    def put(self, key, value, ttl=None, expires_at=None, tags=None) -> None:
        """Store ``key`` as data: never dropped as stale, last committer wins."""
        self._drive(self._write("put", key, value, ttl, expires_at, tags))

    def add(self, key, value, ttl=None, expires_at=None) -> bool:
        """Store ``value`` only if ``key`` holds nothing; whether it will. A
        concurrent adder of the key waits for this transaction to end."""
        return self._drive(self._add(key, value, ttl, expires_at))

    def incr(self, key, delta: int = 1, initial: int | None = 0, ttl=None, expires_at=None) -> int | None:
        """Add ``delta`` to the integer under ``key`` (missing: ``initial``; with
        ``initial=None`` a missing key stays missing and this returns ``None``)."""
        return self._drive(self._incr(key, delta, initial, ttl, expires_at))

    def decr(self, key, delta: int = 1, initial: int | None = 0, ttl=None, expires_at=None) -> int | None:
        """:meth:`incr` by ``-delta``."""
        return self._drive(self._incr(key, -delta, initial, ttl, expires_at))

    def touch(self, key, ttl=None, expires_at=None) -> bool:
        """Give ``key`` a new expiry without rewriting it; whether it holds a value."""
        return self._drive(self._touch(key, ttl, expires_at))

    def pull(self, key, default=None):
        """The value of ``key`` (or ``default``), deleted at commit; of concurrent
        pullers only one receives it."""
        return self._drive(self._pull(key, default))

    def delete(self, key) -> bool:
        """Delete ``key``; whether it held a value."""
        return bool(self._drive(self._one("delete", key)))

    def set_many(self, mapping, ttl=None, expires_at=None, tags=None) -> None:
        """:meth:`set` of each ``(key, value)`` of ``mapping`` in one round trip."""
        self._drive(self._write_many("set", mapping, ttl, expires_at, tags))

    def put_many(self, mapping, ttl=None, expires_at=None, tags=None) -> None:
        """:meth:`put` of each ``(key, value)`` of ``mapping`` in one round trip."""
        self._drive(self._write_many("put", mapping, ttl, expires_at, tags))

    def delete_many(self, keys: Iterable) -> int:
        """Delete each of ``keys``; how many held a value."""
        return self._drive(self._delete_many(keys))

    def clear(self) -> None:
        """Empty the cache."""
        self._drive(self._call("clear"))

    def invalidate_tags(self, tags) -> None:
        """Every entry carrying one of ``tags`` becomes a miss."""
        self._drive(self._call("invalidate_tags", _tags(tags)))

    def delete_prefix(self, prefix: str) -> None:
        """Delete every ``str`` key starting with ``prefix`` (keys of other types are
        encoded, see :mod:`pg_cache_client.keys`, and never match a prefix)."""
        self._drive(self._call("delete_prefix", prefix))

    # Single flight

    def remember(self, key, compute: Callable[[], Any], ttl=None, expires_at=None, tags=None, *, put: bool = False):
        """The value of ``key``; on a miss, ``compute()``'s, stored with
        :meth:`set` (or :meth:`put`). Only one transaction computes a key at a
        time: a miss takes the key's lock (``cache_get_or_lock``), held until the
        transaction ends, and other callers wait for it (bounded by
        ``lock_timeout``), then read the committed value. On a connection in
        autocommit, the call runs in a transaction of its own."""
        self._jsonb_only("remember")
        conn = self.connection
        if getattr(conn, "autocommit", False):
            if not hasattr(conn, "transaction"):
                raise NotReady("remember() needs a transaction: the key's lock ends with the statement in autocommit")
            with conn.transaction():
                return self._remember(key, compute, ttl, expires_at, tags, put)
        return self._remember(key, compute, ttl, expires_at, tags, put)

    def _remember(self, key, compute, ttl, expires_at, tags, put):
        found = self._drive(self._one("get_or_lock", key))
        if found is not None:
            return self.codec.decode(found)
        value = compute()
        (self.put if put else self.set)(key, value, ttl=ttl, expires_at=expires_at, tags=tags)
        return value

    # Declarations and statistics

    def declare(self, **settings) -> bool:
        """``cache_declare`` with ``settings`` (size_limit, duration (seconds or a
        timedelta), context, context_ignored_keys, max_bytes, notify, policy);
        whether it changed anything."""
        return self._drive(self._declare(settings))

    def stats(self) -> dict | None:
        """This cache's row of ``cache_stats()`` as a dict, ``None`` if it has no slot."""
        return self._drive(self._stats())

    def sync_since(self, since: _dt.datetime) -> bool:
        """Whether the cache was cleared by a commit after ``since``."""
        return self._drive(self._sync_since(since))

    def last_clear(self):
        """When a committed transaction last cleared the cache, or ``None``."""
        return self._drive(self._last_clear())

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} codec={type(self.codec).__name__}>"


def clear_all(conn) -> None:
    """Empty every cache of ``conn``'s database when its transaction commits."""
    _sql.run(conn, _sql.statements_for(conn)["clear_all"])
