"""A cachy store whose entries live in pg_cache.

::

    from cachy import CacheManager
    from pg_cache_client.cachy import register

    manager = CacheManager({"default": "pg", "stores": {"pg": {
        "driver": "pg_cache", "connection": conn, "cache": "app"}}})
    register(manager)
    manager.put("greeting", "hello", 10)   # minutes

``connection`` is the application's psycopg connection (or a function returning
the one to use now): writes commit and roll back with its transaction.

What this store decides where cachy's stores disagree:

* ``put(key, value, 0)`` stores forever (as ``forever`` does; cachy's Repository
  never passes 0 itself), minutes may be fractional;
* ``increment`` of a missing key starts from 0, as Redis does, and is exact
  under concurrency (``cache_incr``);
* values are stored with ``TaggedJSONCodec(pickle=True)``: JSON data as JSON,
  integers incrementable, anything else pickled (cachy's stores pickle too);
  cachy's per-store serializer is not used. Unpickling runs code chosen by the
  writer: leave the cache undeclared (its entries are then kept per role, so
  no other role can write what this store reads) or declare it with
  ``writers``.

Tags (``store.tags("a", "b")``) are cachy's own: namespaced keys in this store.
For invalidation by tag at O(1) whatever the cache holds, use
:meth:`pg_cache_client.Cache.invalidate_tags` directly.
"""

from __future__ import annotations

from cachy.contracts.taggable_store import TaggableStore

from .cache import Cache
from .codecs import TaggedJSONCodec

__all__ = ["PgStore", "register"]

CODEC = TaggedJSONCodec(pickle=True)


class PgStore(TaggableStore):
    def __init__(self, connection, cache: str = "cachy", prefix: str = ""):
        self._cache = Cache(connection, cache, codec=CODEC)
        self._prefix = prefix

    def get(self, key):
        return self._cache.get(self._prefix + key)

    def put(self, key, value, minutes):
        if minutes and minutes > 0:
            self._cache.put(self._prefix + key, value, ttl=float(minutes) * 60)
        else:  # forever, whatever the cache's duration
            self._cache.put(self._prefix + key, value, expires_at="infinity")

    def add(self, key, value, minutes):
        if minutes and minutes > 0:
            return self._cache.add(self._prefix + key, value, ttl=float(minutes) * 60)
        return self._cache.add(self._prefix + key, value, expires_at="infinity")

    def increment(self, key, value=1):
        return self._cache.incr(self._prefix + key, value)

    def decrement(self, key, value=1):
        return self._cache.decr(self._prefix + key, value)

    def forever(self, key, value):
        self.put(key, value, 0)

    def forget(self, key):
        return self._cache.delete(self._prefix + key)

    def flush(self):
        self._cache.clear()
        return True

    def get_prefix(self):
        return self._prefix


def register(manager, driver: str = "pg_cache"):
    """Lets ``manager`` (a ``cachy.CacheManager``) create stores of ``driver``
    from store configurations holding ``connection``, ``cache`` and ``prefix``."""
    return manager.extend(
        driver, lambda config: PgStore(config["connection"], config.get("cache", "cachy"), config.get("prefix", ""))
    )
