"""Fixtures: connections to a database of the cluster scripts/test starts.

PG_CACHE_TEST_PORT names the cluster (host 127.0.0.1, user postgres); the tests
are skipped without it, except those that need no server.
"""

import os
import uuid

import pytest

PORT = os.environ.get("PG_CACHE_TEST_PORT")
HOST = os.environ.get("PG_CACHE_TEST_HOST", "127.0.0.1")
DBNAME = "pg_cache_python"


def dsn(dbname=DBNAME, **extra):
    extra.setdefault("user", "postgres")
    parts = [f"host={HOST}", f"port={PORT}", f"dbname={dbname}"]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return " ".join(parts)


@pytest.fixture(scope="session")
def database():
    if not PORT:
        pytest.skip("PG_CACHE_TEST_PORT is not set")
    import psycopg

    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DBNAME} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DBNAME}")
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("CREATE EXTENSION pg_cache")
    yield DBNAME


@pytest.fixture
def connect(database):
    """Opens connections that are closed after the test."""
    import psycopg

    opened = []

    def make(**kw):
        c = psycopg.connect(dsn(database), **kw)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()


@pytest.fixture
def conn(connect):
    return connect(autocommit=True)


@pytest.fixture
def name():
    """A cache name of the test's own."""
    return "py." + uuid.uuid4().hex[:12]
