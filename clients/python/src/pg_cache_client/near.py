"""A copy of hot caches in the process, kept exact by the change feed.

A :class:`Listener` (one per process and database) holds a connection of its own
that ``LISTEN``\\ s on ``pg_cache`` (clears) and ``pg_cache_feed`` (the keys,
tags and prefixes each commit changed, for caches declared with
``notify => 'keys'``) and applies what it hears to the :class:`NearCache`\\ s
registered with it, from a thread of its own. A near hit is then a dictionary
look-up under a lock, with no round trip and no system call.

How it keeps to the committed state (the extension's README, "Change feed"):

* a value read from the server is kept only if no change of its cache reached
  the listener while it was being read (each near cache counts the changes it
  hears), so a change committed after the read drops it when it arrives;
* PostgreSQL may deliver a notification a moment before pg_cache's COMMIT
  callback has applied the change it announces: a value read within ``quiet``
  seconds (0.1) of a change of its key, or of a clear of its cache, is not
  kept, since it may be the value from before the change. This is a bound on
  time, not a proof: a COMMIT callback slower than ``quiet`` (a commit of
  hundreds of thousands of keys, a descheduled writer) can leave such a value
  kept until the key changes again;
* copies are served only while the listening connection answered within the
  last 15 seconds;
* while the listener is not listening (starting, or reconnecting after its
  connection failed), nothing is served or kept, and every copy is dropped when
  it listens again: notifications sent meanwhile were missed;
* a copy is served until its entry expires (a miss reads the value and the time
  it has left in one statement), and at most ``max_age`` seconds when given.

Copies are of committed values. A transaction that wrote to a cache must read
its own writes from the server (:meth:`NearCache.get` takes a connection for the
reads it makes; pass the transaction's and bypass the near cache once it wrote).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Callable

from .cache import MISSING, Cache
from .errors import NotReady
from .keys import encode_key

__all__ = ["Listener", "NearCache"]

logger = logging.getLogger(__name__)

CHANNELS = ("pg_cache", "pg_cache_feed")


class NearCache:
    """The in-process copy of ``cache`` (a :class:`~pg_cache_client.Cache`, whose
    connection is used for the reads a miss makes), kept by ``listener``."""

    def __init__(self, cache: Cache, listener: "Listener", *, max_entries: int = 10_000,
                 max_age: float | None = None, check_declaration: bool = True):
        if check_declaration:
            notify, context = cache._drive(cache._declaration())
            if notify != "keys":
                raise NotReady(
                    f"cache {cache.name!r} does not announce its changes: declare it with notify => 'keys' "
                    "(cache_create or cache_declare) before keeping a copy of it"
                )
            if context is not False:
                raise NotReady(
                    f"cache {cache.name!r} keeps entries per role and context: a copy in the process would give "
                    "one role's entries to another; declare it with context => false"
                )
        self.cache = cache
        self.listener = listener
        self.max_entries = max_entries
        self.max_age = max_age
        self._entries: OrderedDict = OrderedDict()  # stored key -> (value, read at, good until)
        self._changed: dict = {}  # stored key -> when a change of it was heard
        self._cleared_at = -math.inf  # when a clear, tag or prefix change was heard
        self.changes = 0  # changes heard: a read spanning one is not kept
        self.hits = self.misses = 0
        listener._register(self)

    def get(self, key, default=None, conn=None, read_before=None):
        """The value of ``key``: the copy when there is one, else read from the
        server (on ``conn`` if given, else on the cache's connection) and kept
        if nothing changed meanwhile. With ``read_before`` (a ``time.monotonic()``
        time), only a copy read from the server before then is served: for a
        transaction that must not see entries newer than its start
        (``pg_cache.snapshot_reads``)."""
        stored = encode_key(key)
        lock = self.listener._lock
        with lock:
            if self.listener.listening and self.listener.heard_lately():
                found = self._entries.get(stored)
                if (found is not None and time.monotonic() < found[2]
                        and (read_before is None or found[1] < read_before)):
                    self._entries.move_to_end(stored)
                    self.hits += 1
                    return found[0]
            changes = self.changes
        self.misses += 1
        cache = self.cache if conn is None else Cache(conn, self.cache.name, codec=self.cache.codec,
                                                      settings=dict(self.cache.settings), schema=self.cache._schema)
        value, left, known = cache._drive(cache._get_ttl(key))
        if value is MISSING:
            return default
        if not known:
            return value  # the entry went between the two reads: its expiry is not known
        with lock:
            now = time.monotonic()
            until = math.inf if left is None else now + left
            if self.max_age is not None:
                until = min(until, now + self.max_age)
            quiet = self.listener.quiet
            if (self.listener.listening and self.listener.heard_lately() and self.changes == changes
                    and now - self._cleared_at > quiet and now - self._changed.get(stored, -math.inf) > quiet):
                self._entries[stored] = (value, now, until)
                if len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return value

    def __len__(self):
        return len(self._entries)

    def forget(self, keys=None):
        """Drops the copies of ``keys`` (all when None) as if a change of them had
        been heard: for a process's own writes, whose notifications arrive later."""
        now = time.monotonic()
        with self.listener._lock:
            if keys is None:
                self._drop_all(now)
            else:
                self._apply({"keys": [encode_key(k) for k in keys]}, now)

    # Called by the listener, its lock held.

    def _drop_all(self, now):
        self.changes += 1
        self._entries.clear()
        self._changed.clear()
        self._cleared_at = now

    def _apply(self, change: dict, now):
        self.changes += 1
        if change.get("cleared") or change.get("tags"):
            self._drop_all(now)  # tags: the copy does not know them
            return
        for k in change.get("keys", ()):
            self._entries.pop(k, None)
            self._changed[k] = now
        for prefix in change.get("prefixes", ()):
            for k in [k for k in self._entries if k.startswith(prefix)]:
                del self._entries[k]
            self._cleared_at = now  # keys under it not seen yet: not kept for a while
        if len(self._changed) > 4 * self.max_entries:
            horizon = now - self.listener.quiet
            self._changed = {k: t for k, t in self._changed.items() if t > horizon}


class Listener:
    """Listens for one database on a connection ``connect()`` opens (an autocommit
    psycopg 3 connection), in a daemon thread, and keeps the near caches
    registered with it. ``stop()`` ends it."""

    #: Seconds without a successful round trip on the listening connection after
    #: which copies are not served: a connection dead without a reset (a cable
    #: pulled, a host gone) can block for minutes before it fails.
    HEARTBEAT = 5.0
    SILENCE = 15.0

    def __init__(self, connect: Callable[[], object], *, quiet: float = 0.1, retry: float = 1.0):
        self._connect = connect
        self.quiet = quiet
        self.retry = retry
        self._alive_at = -math.inf
        self._lock = threading.Lock()
        self._caches: dict = {}  # cache name -> [NearCache]
        self.listening = False
        self._listening_event = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg_cache listener", daemon=True)
        self._thread.start()

    def heard_lately(self) -> bool:
        """Whether the listening connection answered within :attr:`SILENCE` seconds."""
        return time.monotonic() - self._alive_at < self.SILENCE

    def wait_listening(self, timeout: float = 10.0) -> bool:
        """Whether the listener listens, waiting up to ``timeout`` seconds."""
        return self._listening_event.wait(timeout)

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def _register(self, near: NearCache):
        with self._lock:
            self._caches.setdefault(near.cache.name, []).append(near)

    def _drop_everything(self):
        with self._lock:
            self._drop_everything_locked(time.monotonic())

    def _run(self):
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                for channel in CHANNELS:
                    conn.execute(f"LISTEN {channel}")
                # Whatever was kept before was kept without hearing changes.
                self._drop_everything()
                self._alive_at = time.monotonic()
                with self._lock:
                    self.listening = True
                self._listening_event.set()
                while not self._stop.is_set():
                    # Short waits, so that stop() returns at once.
                    for note in conn.notifies(timeout=0.1):
                        self._handle(note.channel, note.payload)
                    if time.monotonic() - self._alive_at > self.HEARTBEAT:
                        conn.execute("SELECT 1")  # notices a dead connection
                        self._alive_at = time.monotonic()
            except Exception:
                logger.warning("pg_cache listener: connection lost, dropping near caches", exc_info=True)
            finally:
                with self._lock:
                    self.listening = False
                self._listening_event.clear()
                self._drop_everything()
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
            self._stop.wait(self.retry)

    def _handle(self, channel: str, payload: str):
        now = time.monotonic()
        with self._lock:
            if channel == "pg_cache":  # cache_clear: the name; cache_clear_all: '*'
                targets = self._caches.values() if payload == "*" else [self._caches.get(payload, ())]
                for nears in targets:
                    for n in nears:
                        n._drop_all(now)
                return
            try:
                change = json.loads(payload)
            except ValueError:
                logger.warning("pg_cache listener: unreadable feed payload %r", payload)
                self._drop_everything_locked(now)
                return
            name = change.get("cache")
            targets = self._caches.values() if name == "*" else [self._caches.get(name, ())]
            for nears in targets:
                for n in nears:
                    n._apply(change, now)

    def _drop_everything_locked(self, now):
        for nears in self._caches.values():
            for n in nears:
                n._drop_all(now)
