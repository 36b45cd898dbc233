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


def test_the_owner_dumps_and_restores_declarations_and_bindings(owned_database, tmp_path):
    import subprocess

    from conftest import HOST, PORT

    with psycopg.connect(dsn(owned_database, user="py_db_owner"), autocommit=True) as owner:
        owner.execute("CREATE EXTENSION pg_cache")
        owner.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
        owner.execute("INSERT INTO t VALUES (1, 'a')")
        owner.execute("SELECT cache_create('bound', context => false, writers => ARRAY['py_db_owner'])")
        owner.execute("SELECT cache_bind('bound', 't', ARRAY['id'])")
    dump = tmp_path / "owned.dump"
    common = ["-h", HOST, "-p", str(PORT), "-U", "py_db_owner"]
    subprocess.run(["pg_dump", *common, "-Fc", "-f", str(dump), owned_database], check=True)
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS py_restored WITH (FORCE)")
        admin.execute("CREATE DATABASE py_restored OWNER py_db_owner TEMPLATE template0")
    try:
        restore = subprocess.run(["pg_restore", *common, "-d", "py_restored", str(dump)], capture_output=True, text=True)
        assert restore.returncode == 0, restore.stderr
        with psycopg.connect(dsn("py_restored", user="py_db_owner"), autocommit=True) as owner:
            writers = owner.execute("SELECT writers::text FROM pg_cache_declarations WHERE cache = 'bound'").fetchone()
            assert writers == ("{py_db_owner}",), "the declaration came back with its writers"
            owner.execute("SELECT cache_put('bound', '1', '\"a\"')")
            owner.execute("UPDATE t SET name = 'b' WHERE id = 1")
            assert owner.execute("SELECT cache_get('bound', '1')").fetchone() == (None,), "the binding came back"
    finally:
        with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS py_restored WITH (FORCE)")
