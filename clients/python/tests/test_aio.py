"""The asyncio client: the same operations on an AsyncConnection."""

import asyncio

import psycopg
import pytest

from conftest import dsn
from pg_cache_client import InvalidArgument
from pg_cache_client.aio import AsyncCache, clear_all


def run(coro):
    return asyncio.run(coro)


def test_the_operations_on_an_async_connection(database, name):
    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(database), autocommit=True) as conn:
            c = AsyncCache(conn, name)
            assert await c.get("k") is None
            await c.set("k", (1, 2))
            assert await c.get("k") == (1, 2)
            assert await c.has("k") is True
            assert await c.add("k", 1) is False
            assert await c.incr("n", 2) == 2
            assert await c.decr("n") == 1
            await c.put_many({"a": 1, ("b", 2): 2})
            assert await c.get_many(["a", ("b", 2), "z"]) == {"a": 1, ("b", 2): 2}
            assert await c.delete_many(["a", "z"]) == 1
            assert await c.delete("k") is True
            assert await c.delete("k") is False
            assert await c.pull("n") == 1
            assert await c.remember("r", _compute) == {"computed": True}
            assert await c.remember("r", _compute) == {"computed": True}
            assert (await c.stats())["entries"] >= 1
            await clear_all(conn)
            assert await c.get("r") is None
            with pytest.raises(InvalidArgument):
                await AsyncCache(conn, "").get("k")

    run(main())


async def _compute():
    return {"computed": True}


def test_writes_commit_with_the_async_transaction(database, name):
    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(database)) as a, \
                await psycopg.AsyncConnection.connect(dsn(database), autocommit=True) as b:
            await AsyncCache(a, name).put("k", 1)
            assert await AsyncCache(b, name).get("k") is None
            await a.commit()
            assert await AsyncCache(b, name).get("k") == 1

    run(main())
