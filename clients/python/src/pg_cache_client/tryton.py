"""A Tryton cache class whose entries live in pg_cache.

Select it in trytond's configuration::

    [cache]
    class = pg_cache_client.tryton.PgCache

(or ``TRYTOND_CACHE__CLASS=pg_cache_client.tryton.PgCache``). Every call runs on
the Tryton transaction's own connection, so a ``set`` or ``clear`` commits and
rolls back with the transaction and every worker process shares one cache per
database:

* keys are Tryton's (key, frozen context) tuples, encoded canonically
  (:mod:`pg_cache_client.keys`); values are stored with the TAGGED codec, so
  what ``immutable()`` makes (tuples, frozensets, MappingProxyType, Decimal,
  dates, bytes) comes back as it was;
* a cache is declared (``cache_declare``) once per process and database with
  Tryton's ``size_limit`` (``[cache] <name>`` or ``default``) and ``duration``;
  the extension itself is created if missing (a database owner may, the
  extension being trusted), on a connection of its own, as such set-up is not
  part of any transaction's work;
* its calls run with ``pg_cache.on_limit = warning`` (a key or value over a
  limit is skipped, never aborting Tryton's transaction),
  ``pg_cache.keep_fills_on_rollback = on`` (Tryton ends read-only transactions
  with ROLLBACK: what they filled from committed rows is kept) and
  ``pg_cache.snapshot_reads = on`` (a transaction reads only entries installed
  before it began, as it reads only rows committed before its snapshot), for
  the rest of the transaction;
* ``duration`` becomes each entry's ``expires_at``, counted from the set as
  MemoryCache counts it;
* with ``[cache] pg_cache_near = True`` each process also keeps a copy of what
  it read (:mod:`pg_cache_client.near`): caches are declared with
  ``notify => 'keys'``, one listener thread and connection per database keeps
  the copies exact, and a hit costs a dictionary look-up. A transaction is
  served only copies read before it began (snapshot reads); one that wrote to a
  cache (set, clear) reads it from the server for the rest of the transaction,
  as it must see its own writes, and its commit drops this process's copies of
  the caches it wrote at once (the notification would come a moment later).

It subclasses ``MemoryCache`` for what is not the cache: the pool refresh
between processes (``refresh_pool`` and the listener thread) and the
statistics. Unlike MemoryCache, a ``set`` made in a transaction that wrote data
and rolled back is gone with it, and a fill computed before a concurrent
commit cleared the cache is dropped at commit: no stale entry reaches another
transaction.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from weakref import WeakKeyDictionary

from trytond import backend, config
from trytond.cache import MemoryCache
from trytond.transaction import Transaction

from .cache import MISSING, Cache
from ._sql import SCHEMA_QUERY
from .codecs import TAGGED
from .errors import CacheError, NotInstalled

__all__ = ["PgCache"]

logger = logging.getLogger(__name__)

# snapshot_reads: a Tryton transaction runs at REPEATABLE READ and must not read
# entries computed from rows newer than its snapshot (MemoryCache gives the
# transactions older than a clear a cache of their own for the same reason).
SETTINGS = {"on_limit": "warning", "keep_fills_on_rollback": "on", "snapshot_reads": "on"}


def _connection():
    return Transaction().connection


def _schema():
    return PgCache._schemas.get(Transaction().database.name)


class PgCache(MemoryCache):
    """Tryton's cache API over pg_cache (see the module's documentation)."""

    _declared_lock = threading.Lock()
    # (dbname, cache name) declared by this process.
    _declared: set = set()
    # dbname -> the extension's schema, read on a connection of its own: a Tryton
    # transaction that began before the extension was created does not see it in
    # pg_extension, though it can call its functions.
    _schemas: dict = {}

    # dbname -> near.Listener, when [cache] pg_cache_near is on.
    _listeners: dict = {}
    # transaction -> names of the caches it wrote (they bypass the near copy).
    _wrote = WeakKeyDictionary()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Set once a value had to stay in the process (see set()).
        self._in_process = False
        self._near_by_db: dict = {}
        # Databases where this cache was declared with notify => 'keys'.
        self._near_dbs: set = set()
        self._pg = Cache(_connection, self._name, codec=TAGGED, settings=SETTINGS, schema=_schema)

    # Set-up, once per process and database.

    @staticmethod
    def _near_enabled() -> bool:
        return config.getboolean("cache", "pg_cache_near", default=False)

    def _settings(self) -> dict:
        settings = {"size_limit": self.size_limit, "context": False}
        if self._near_enabled():
            settings["notify"] = "keys"
        if self.duration:
            settings["duration"] = self.duration.total_seconds()
        return settings

    @classmethod
    def _declare_all(cls, dbname: str) -> None:
        """Creates the extension if missing and declares every instance not yet
        declared in ``dbname``, in one transaction of a connection of its own."""
        todo = [i for i in cls._instances.values() if isinstance(i, PgCache) and (dbname, i._name) not in cls._declared]
        if not todo:
            return
        with cls._declared_lock:
            database = backend.Database(dbname).connect()
            conn = database.get_connection(autocommit=True)
            try:
                with conn.cursor() as cur:
                    cur.execute(SCHEMA_QUERY)
                    row = cur.fetchone()
                    if row is None:
                        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_cache")
                        cur.execute(SCHEMA_QUERY)
                        row = cur.fetchone()
                    cls._schemas[dbname] = row[0]
                for inst in todo:
                    settings = inst._settings()
                    Cache(conn, inst._name).declare(**settings)
                    cls._declared.add((dbname, inst._name))
                    # Near copies only of a cache declared to announce its changes.
                    if settings.get("notify") == "keys":
                        inst._near_dbs.add(dbname)
                    else:
                        inst._near_dbs.discard(dbname)
            finally:
                database.put_connection(conn)

    def _ready(self) -> None:
        dbname = Transaction().database.name
        if (dbname, self._name) not in self._declared:
            self._declare_all(dbname)

    # The cache.

    def _near(self, transaction):
        """This cache's near copy for the transaction's database, or None when off
        or when the transaction wrote to the cache."""
        dbname = transaction.database.name
        if dbname not in self._near_dbs:
            return None
        wrote = self._wrote.get(transaction)
        if wrote and (self._name in wrote or "*" in wrote):
            return None
        near = self._near_by_db.get(dbname)
        if near is None:
            from .near import NearCache

            near = self._near_by_db[dbname] = NearCache(
                self._pg, self._listener(dbname), max_entries=self.size_limit,
                max_age=self.duration.total_seconds() if self.duration else None, check_declaration=False)
        return near

    @classmethod
    def _listener(cls, dbname):
        listener = cls._listeners.get(dbname)
        if listener is None:
            with cls._declared_lock:
                listener = cls._listeners.get(dbname)
                if listener is None:
                    import psycopg

                    from .near import Listener

                    conninfo = backend.Database._connection_params(dbname)["conninfo"]
                    listener = cls._listeners[dbname] = Listener(lambda: psycopg.connect(conninfo, autocommit=True))
        return listener

    @classmethod
    def _wrote_to(cls, name):
        transaction = Transaction()
        wrote = cls._wrote.get(transaction)
        if wrote is None:
            wrote = cls._wrote[transaction] = set()
            dbname = transaction.database.name
            if any(dbname in i._near_dbs for i in cls._instances.values() if isinstance(i, PgCache)):
                transaction.join(_ForgetAtCommit(wrote))
        wrote.add(name)

    def get(self, key, default=None):
        self._ready()
        if self._in_process:
            result = super().get(key, MISSING)
            if result is not MISSING:
                return result
            self.miss -= 1  # counted below
        transaction = Transaction()
        near = self._near(transaction)
        try:
            if near is None:
                result = self._pg.get(self._key(key), MISSING)
            else:
                result = near.get(self._key(key), MISSING, read_before=transaction.started_at / 1e9)
        except TypeError:  # a key that cannot be encoded: MemoryCache misses too
            result = MISSING
        if result is MISSING:
            self.miss += 1
            return default
        self.hit += 1
        return result

    def set(self, key, value):
        from trytond.cache import immutable

        self._ready()
        try:
            value = immutable(value)
        except TypeError:  # as MemoryCache: not cached
            return value
        expires_at = _dt.datetime.now(_dt.timezone.utc) + self.duration if self.duration else None
        try:
            self._pg.set(self._key(key), value, expires_at=expires_at)
            self._wrote_to(self._name)
        except TypeError:
            # A value no codec can carry out of the process (a compiled lxml
            # validator): kept in this process, as MemoryCache keeps it, and
            # cleared the way MemoryCache is.
            self._in_process = True
            return super().set(key, value)
        return value

    def clear(self):
        self._ready()
        self._pg.clear()
        self._wrote_to(self._name)
        # Tryton's own signalling (other processes' listeners wake up) as before.
        super().clear()

    @classmethod
    def clear_all(cls):
        transaction = Transaction()
        conn = transaction.connection
        if conn is not None:
            cls._declare_all(transaction.database.name)
            _clear_all(conn, transaction.database.name)
            cls._wrote_to("*")
        for inst in cls._instances.values():
            MemoryCache.clear(inst)

    @classmethod
    def commit(cls, transaction):
        super().commit(transaction)
        cls._wrote.pop(transaction, None)

    @classmethod
    def rollback(cls, transaction):
        super().rollback(transaction)
        cls._wrote.pop(transaction, None)

    def sync_since(self, value):
        self._ready()
        if value.tzinfo is None:
            value = value.astimezone()  # naive: local time, as MemoryCache's now()
        try:
            return self._pg.sync_since(value)
        except CacheError:
            return True  # when in doubt, the caller reads afresh

    @classmethod
    def drop(cls, dbname):
        """Forgets the caches of ``dbname``: in the current transaction when it is
        on that database (its own writes included), and for everyone (a
        committed ``cache_clear_all()``) when the database still exists. Tryton
        calls it after dropping a database (the server already freed its
        caches) and after each test's rolled-back transaction."""
        transaction = Transaction()
        database = transaction.database
        if database is not None and database.name == dbname:
            if transaction.connection is not None:
                try:
                    _clear_all(transaction.connection, dbname)
                    cls._wrote_to("*")
                except Exception:  # an aborted transaction: it holds nothing
                    logger.warning("drop: no clear in the current transaction", exc_info=True)
            conn = database.get_connection(autocommit=True)
            try:
                _clear_all(conn)
            except NotInstalled:
                pass  # no extension in that database: no cache to forget
            finally:
                database.put_connection(conn)
        else:
            # Not the current database: Tryton dropped it, and DROP DATABASE freed
            # its caches on the server.
            cls._declared = {d for d in cls._declared if d[0] != dbname}
            cls._schemas.pop(dbname, None)
            for inst in cls._instances.values():
                if isinstance(inst, PgCache):
                    inst._near_dbs.discard(dbname)
        # The near copies' listener holds a connection to the database, which
        # must not keep it from being dropped: stopped, as MemoryCache stops its
        # listener; the next read starts it again.
        listener = cls._listeners.pop(dbname, None)
        if listener is not None:
            listener.stop()
        for inst in cls._instances.values():
            if isinstance(inst, PgCache):
                inst._near_by_db.pop(dbname, None)
        super().drop(dbname)


class _ForgetAtCommit:
    """A Tryton data manager: once the transaction committed, this process's near
    copies of the caches it wrote are dropped (other processes drop theirs when
    the change feed announces the commit)."""

    def __init__(self, wrote: set):
        self.wrote = wrote
        self.names = wrote  # filled as the transaction writes

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)

    def tpc_begin(self, transaction):
        self.names = set(self.wrote)

    def commit(self, transaction):
        pass

    def tpc_vote(self, transaction):
        pass

    def tpc_finish(self, transaction):
        dbname = transaction.database.name if transaction.database else None
        for inst in PgCache._instances.values():
            if isinstance(inst, PgCache) and ("*" in self.names or inst._name in self.names):
                near = inst._near_by_db.get(dbname)
                if near is not None:
                    near.forget()

    def tpc_abort(self, transaction):
        pass


def _clear_all(conn, dbname=None) -> None:
    from . import _sql

    schema = PgCache._schemas.get(dbname) if dbname else None
    _sql.run(conn, _sql.statements_for(conn, (), schema)["clear_all"])
