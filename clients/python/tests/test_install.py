"""The extension is trusted: a database's owner installs it without superuser, as
Tryton does in the databases it creates (from template0, so without it)."""

import psycopg
import pytest

from conftest import dsn
from pg_cache_client import Cache


@pytest.fixture
def owned_database(database):
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        for role in ("py_db_owner", "py_db_other"):
            admin.execute(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
                f"THEN CREATE ROLE {role} LOGIN NOSUPERUSER; END IF; END $$"
            )
        admin.execute("DROP DATABASE IF EXISTS py_owned WITH (FORCE)")
        admin.execute("CREATE DATABASE py_owned OWNER py_db_owner TEMPLATE template0")
    yield "py_owned"
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS py_owned WITH (FORCE)")


def test_a_database_owner_creates_the_extension_and_another_role_cannot(owned_database):
    with psycopg.connect(dsn(owned_database, user="py_db_other"), autocommit=True) as other:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            other.execute("CREATE EXTENSION pg_cache")
    with psycopg.connect(dsn(owned_database, user="py_db_owner"), autocommit=True) as owner:
        owner.execute("CREATE EXTENSION pg_cache")
        c = Cache(owner, "owned")
        c.put("k", (1, 2))
        assert c.get("k") == (1, 2)
        assert c.declare(size_limit=5) is True
        # Still an administrator's function: cache_drop is not the owner's to call.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            owner.execute("SELECT cache_drop('postgres')")
