"""pytest plugin: runs trytond's own tests/test_cache.py against PgCache.

trytond's cache tests name ``MemoryCache`` directly, so this swaps it for
``PgCache`` before they are imported; ``[cache] class`` (set by the caller as
``TRYTOND_CACHE__CLASS``) makes it every model's cache too. With
``PG_CACHE_TRYTON_BASELINE`` set it changes nothing: Tryton's MemoryCache, the
baseline. After a PgCache run it checks that the entries went through pg_cache.
"""

import os

import pytest


def _baseline() -> bool:
    return bool(os.environ.get("PG_CACHE_TRYTON_BASELINE"))


# Calls that reached pg_cache through PgCache, by statement.
SENT = {}


def pytest_configure(config):
    if _baseline():
        return
    import trytond.cache

    from pg_cache_client import _sql
    from pg_cache_client.tryton import PgCache

    trytond.cache.MemoryCache = PgCache
    run = _sql.run

    def counting_run(conn, sql, params=()):
        rows = run(conn, sql, params)
        for op in ("cache_get(", "cache_set(", "cache_clear("):
            if op in sql:
                SENT[op] = SENT.get(op, 0) + 1
        return rows

    _sql.run = counting_run


def pytest_sessionfinish(session, exitstatus):
    if _baseline() or exitstatus != 0:
        return
    if not all(SENT.get(op) for op in ("cache_get(", "cache_set(", "cache_clear(")):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\ntryton_plugin: PgCache was not used: statements sent {SENT}")
    else:
        print(f"\ntryton_plugin: statements PgCache sent to pg_cache: {SENT}")
