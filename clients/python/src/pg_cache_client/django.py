"""A Django cache backend whose entries live in pg_cache.

::

    CACHES = {
        "default": {
            "BACKEND": "pg_cache_client.django.PgCache",
            "LOCATION": "django",          # the pg_cache cache name
            "OPTIONS": {
                "DATABASE": "default",     # the Django database alias to run on
                "size_limit": 100_000,     # cache_declare settings, optional
            },
        }
    }

Every call runs on the Django connection of ``DATABASE``, through Django's own
cursor: inside ``transaction.atomic()`` a ``set`` or ``delete`` commits and rolls
back with the block, and ``assertNumQueries`` counts it. Outside one
(autocommit) each call is its own transaction, as with Redis.

* ``set``/``set_many`` are *puts* (data, last committer wins), ``add`` is
  ``cache_add`` (of concurrent adders one gets ``True``), ``incr``/``decr`` are
  ``cache_incr`` (exact under concurrency; a missing key raises ValueError),
  ``touch``, ``get_many``, ``delete_many`` and ``has_key`` are single calls.
* Values are stored with ``TaggedJSONCodec(pickle=True)``: JSON data as JSON
  (integers stay integers, so ``incr`` works), anything else pickled inside it,
  as Django's other backends pickle. Unpickling runs code chosen by the writer,
  so the cache must be one only Django's role writes: on first use the backend
  declares it (on a connection of its own) owned by that role with ``readers``
  and ``writers`` empty (the owner alone), and refuses a cache another role
  owns or may write.
* A timeout counts from the commit; 0 or less stores nothing (and deletes the
  key), ``None`` never expires (whatever the cache's duration).
* ``MAX_ENTRIES`` and ``CULL_FREQUENCY`` are not used (as for Redis): pg_cache
  evicts by its own LRU or LFU under ``size_limit``/``max_bytes``, given in
  OPTIONS and declared once per process with ``cache_declare``.
* Calls run with ``pg_cache.on_limit = warning``: a value over
  ``pg_cache.max_value_size`` is not cached (and its key is invalidated)
  instead of failing the request's transaction.
* The extension is created in the database on first use if it is missing (a
  database owner may: it is trusted); ``"CREATE_EXTENSION": False`` turns that off.
* ``"NEAR": True`` keeps a copy of what each process reads
  (:mod:`pg_cache_client.near`): the cache is declared with ``notify => 'keys'``
  and a listener thread with a connection of its own per process drops copies
  as other processes' commits are announced. ``get`` outside
  ``transaction.atomic()`` is then a dictionary look-up; inside one it reads
  the server. The process's own writes drop its copies at once (at the block's
  commit, for writes inside one). Another process's commit is seen when its
  notification arrives, a fraction of a millisecond after that commit: a read
  in that window returns the value from before it, as with any client-side
  cache; leave NEAR off where that matters.
"""

from __future__ import annotations

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.db import connections

from . import _sql
from .cache import Cache
from .codecs import TaggedJSONCodec
from .errors import NotInstalled, NotReady

__all__ = ["PgCache", "stop_listeners"]

_DECLARE = ("size_limit", "duration", "max_bytes", "policy", "notify")
# Listeners of this process, per database alias, and near copies per (alias,
# cache name): Django makes a backend per thread, and a process's copies must
# be one, so that a write by one thread drops what the others would serve.
_listeners: dict = {}
_nears: dict = {}
# (alias, cache name) prepared by this process.
_prepared: set = set()
_prepare_lock = __import__("threading").Lock()
_listeners_lock = __import__("threading").Lock()
CODEC = TaggedJSONCodec(pickle=True)


class PgCache(BaseCache):
    def __init__(self, location, params):
        super().__init__(params)
        options = dict(params.get("OPTIONS") or {})
        self._alias = options.pop("DATABASE", "default")
        self._create_extension = options.pop("CREATE_EXTENSION", True)
        self._near_wanted = bool(options.pop("NEAR", False))
        self._declare = {k: options.pop(k) for k in _DECLARE if k in options}
        if self._near_wanted:
            self._declare["notify"] = "keys"
        self._near = None
        options.pop("MAX_ENTRIES", None)
        options.pop("CULL_FREQUENCY", None)
        if options:
            raise ValueError(f"unknown OPTIONS of pg_cache_client.django.PgCache: {sorted(options)}")
        self._name = location or "django"
        self._cache = Cache(self._connection, self._name, codec=CODEC, settings={"on_limit": "warning"})
        self._ready = False

    def _connection(self):
        return connections[self._alias]

    def _pg(self) -> Cache:
        if not self._ready:
            key = (self._alias, self._name)
            if key not in _prepared:
                with _prepare_lock:
                    if key not in _prepared:
                        self._prepare()
                        _prepared.add(key)
            if self._near_wanted:
                self._near = _near_cache(self._alias, self._cache)
            self._ready = True
        return self._cache

    def _prepare(self):
        """Once per process and cache (Django makes a backend per thread): installs the extension if missing and declares the
        cache, on a connection of Django's own in autocommit (not in the caller's
        transaction, which may roll back). Values may be pickles, so the cache
        must be one that only trusted roles write: a cache nobody declared is
        declared with ``writers`` empty (its declarer, Django's role, alone); a
        declared one whose writers are open is refused."""
        side = connections.create_connection(self._alias)
        try:
            side.ensure_connection()
            side.set_autocommit(True)
            conn = side.connection
            schema = _sql.run(conn, _sql.SCHEMA_QUERY)
            if not schema:
                if not self._create_extension:
                    raise NotInstalled("the database has no pg_cache extension: CREATE EXTENSION pg_cache")
                _sql.run(conn, "CREATE EXTENSION IF NOT EXISTS pg_cache")
                schema = _sql.run(conn, _sql.SCHEMA_QUERY)
            s = schema[0][0]
            # Only this role may write it: it owns the cache and writers name no other.
            row = _sql.run(conn, f"""
                SELECT d.owner::pg_catalog.oid OPERATOR(pg_catalog.=) r.oid AND d.writers IS NOT NULL
                   AND NOT EXISTS (SELECT FROM pg_catalog.unnest(d.writers) w
                                   WHERE w::pg_catalog.oid OPERATOR(pg_catalog.<>) r.oid)
                  FROM {s}.pg_cache_declarations d, pg_catalog.pg_roles r
                 WHERE d.cache OPERATOR(pg_catalog.=) %s::pg_catalog.text
                   AND r.rolname OPERATOR(pg_catalog.=) CURRENT_USER""", (self._name,))
            setup = Cache(conn, self._name)
            if not row:
                args, params = setup._declare_sql({"context": False, **self._declare})
                _sql.run(conn, f"SELECT {s}.cache_create({args}, readers => '{{}}'::pg_catalog.text[], "
                               "writers => '{}'::pg_catalog.text[])", params)
            elif not row[0][0]:
                raise NotReady(
                    f"cache {self._name!r} is declared by another role, or with writers other than this one, and "
                    "this backend stores pickles: only the role Django connects as may own and write it "
                    "(cache_create(name, writers => '{}') as that role)"
                )
            elif self._declare:
                setup.declare(context=False, **self._declare)
        finally:
            side.close()

    def _read_through(self):
        """The near copy, when on and the connection is not inside atomic()."""
        self._pg()
        near = self._near
        if near is None or self._connection().in_atomic_block:
            return self._cache
        return near

    def _wrote(self, keys=None):
        """A write by this process: its copies of ``keys`` (all when None) go now,
        and again when the atomic block it is in commits."""
        near = self._near
        if near is None:
            return
        near.forget(keys)
        conn = self._connection()
        if conn.in_atomic_block:
            from django.db import transaction

            keys = list(keys) if keys is not None else None
            transaction.on_commit(lambda: near.forget(keys), using=self._alias)

    def get_backend_timeout(self, timeout=DEFAULT_TIMEOUT):
        """Seconds from the commit, ``None`` for never, 0 for "do not store"."""
        if timeout == DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return None if timeout is None else max(0.0, float(timeout))

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        # Stored and expired at once, as Django's other backends do for 0.
        if ttl is None:
            added = self._pg().add(key, value, expires_at="infinity")
        else:
            added = self._pg().add(key, value, ttl=1e-6 if ttl == 0 else ttl)
        self._wrote([key])
        return added

    def get(self, key, default=None, version=None):
        key = self.make_and_validate_key(key, version=version)
        return self._read_through().get(key, default)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        if ttl == 0:
            self._pg().delete(key)
        elif ttl is None:
            self._pg().put(key, value, expires_at="infinity")  # never, whatever the cache's duration
        else:
            self._pg().put(key, value, ttl=ttl)
        self._wrote([key])

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        self._wrote([key])  # a copy's expiry is the old one
        if ttl == 0:
            return self._pg().delete(key)
        if ttl is None:
            return self._pg().touch(key, expires_at="infinity")
        return self._pg().touch(key, ttl=ttl)

    def delete(self, key, version=None):
        key = self.make_and_validate_key(key, version=version)
        deleted = self._pg().delete(key)
        self._wrote([key])
        return deleted

    def get_many(self, keys, version=None):
        key_map = {self.make_and_validate_key(k, version=version): k for k in keys}
        found = self._pg().get_many(key_map)
        return {key_map[k]: v for k, v in found.items()}

    def has_key(self, key, version=None):
        key = self.make_and_validate_key(key, version=version)
        return self._pg().has(key)

    def incr(self, key, delta=1, version=None):
        key = self.make_and_validate_key(key, version=version)
        value = self._pg().incr(key, delta, initial=None)
        self._wrote([key])
        if value is None:
            raise ValueError("Key '%s' not found" % key)
        return value

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        if not data:
            return []
        safe = {self.make_and_validate_key(k, version=version): v for k, v in data.items()}
        ttl = self.get_backend_timeout(timeout)
        if ttl == 0:
            self._pg().delete_many(safe)
        elif ttl is None:
            self._pg().put_many(safe, expires_at="infinity")
        else:
            self._pg().put_many(safe, ttl=ttl)
        self._wrote(safe)
        return []

    def delete_many(self, keys, version=None):
        safe = [self.make_and_validate_key(k, version=version) for k in keys]
        if safe:
            self._pg().delete_many(safe)
            self._wrote(safe)

    def clear(self):
        self._pg().clear()
        self._wrote(None)

    def close(self, **kwargs):
        pass  # the connection is Django's: it closes it


def _near_cache(alias, cache):
    from .near import NearCache

    with _listeners_lock:
        near = _nears.get((alias, cache.name))
    if near is None:
        listener = _listener(alias)
        with _listeners_lock:
            near = _nears.get((alias, cache.name))
            if near is None:
                near = _nears[(alias, cache.name)] = NearCache(cache, listener, check_declaration=False)
    return near


def _listener(alias):
    """This process's listener for the database of ``alias`` (NEAR)."""
    with _listeners_lock:
        listener = _listeners.get(alias)
        if listener is None:
            import psycopg

            from .near import Listener

            s = connections[alias].settings_dict
            params = {"dbname": s["NAME"], "user": s.get("USER") or None, "password": s.get("PASSWORD") or None,
                      "host": s.get("HOST") or None, "port": s.get("PORT") or None}
            params = {k: v for k, v in params.items() if v}
            listener = _listeners[alias] = Listener(lambda: psycopg.connect(autocommit=True, **params))
    return listener


def stop_listeners():
    """Stops this process's listeners (NEAR), closing their connections: before
    dropping a database (as Django's test runner does at the end), or at exit."""
    with _listeners_lock:
        listeners = list(_listeners.values())
        _listeners.clear()
        _nears.clear()
        _prepared.clear()
    for listener in listeners:
        listener.stop()
