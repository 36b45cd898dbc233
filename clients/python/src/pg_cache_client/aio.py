"""The asyncio client: :class:`AsyncCache` over a psycopg 3 ``AsyncConnection``
the caller already has, with the methods of :class:`~pg_cache_client.Cache`."""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable

from . import _sql
from .cache import Cache, _Ops

__all__ = ["AsyncCache", "clear_all"]


class AsyncCache(_Ops):
    """:class:`~pg_cache_client.Cache` for asyncio: the same methods, awaited, on
    the caller's ``AsyncConnection`` (or a function returning it)."""

    async def _drive(self, gen):
        conn = self.connection
        schema = self._known_schema()
        if schema is None:
            stmts = await _sql.astatements_for(conn, self.settings)
        else:  # no look-up to make
            stmts = _sql.statements_for(conn, self.settings, schema)
        try:
            op, params = next(gen)
            while True:
                op, params = gen.send(await _sql.arun(conn, self._text(stmts, op), params))
        except StopIteration as stop:
            return stop.value

    async def remember(self, key, compute: Callable[[], Awaitable[Any]], ttl=None, expires_at=None, tags=None, *, put: bool = False):
        """:meth:`Cache.remember <pg_cache_client.Cache.remember>` with an async
        ``compute``."""
        self._jsonb_only("remember")
        conn = self.connection
        if getattr(conn, "autocommit", False):
            async with conn.transaction():
                return await self._remember(key, compute, ttl, expires_at, tags, put)
        return await self._remember(key, compute, ttl, expires_at, tags, put)

    async def _remember(self, key, compute, ttl, expires_at, tags, put):
        found = await self._drive(self._one("get_or_lock", key))
        if found is not None:
            return self.codec.decode(found)
        value = await compute()
        await (self.put if put else self.set)(key, value, ttl=ttl, expires_at=expires_at, tags=tags)
        return value


def _async_of(method):
    """An async method of AsyncCache running ``method``'s plan (a Cache method
    whose body is ``return self._drive(self._plan(...))``)."""

    @functools.wraps(method)
    async def run(self, *args, **kwargs):
        captured = []

        class Capture:
            name, codec, settings = self.name, self.codec, self.settings

            def _drive(_, gen):
                captured.append(gen)

            def __getattr__(_, attr):
                return getattr(self, attr)

        method(Capture(), *args, **kwargs)
        result = await self._drive(captured[0])
        return _POST.get(method.__name__, lambda r: r)(result)

    return run


# Cache methods that post-process their plan's result.
_POST = {"has": bool, "delete": bool}

for _name in ("get", "get_many", "has", "expires_at", "set", "put", "add", "incr", "decr", "touch", "pull",
              "delete", "set_many", "put_many", "delete_many", "clear", "invalidate_tags", "delete_prefix",
              "declare", "stats", "sync_since", "last_clear"):
    setattr(AsyncCache, _name, _async_of(getattr(Cache, _name)))


async def clear_all(conn) -> None:
    """Empty every cache of ``conn``'s database when its transaction commits."""
    await _sql.arun(conn, (await _sql.astatements_for(conn))["clear_all"])
