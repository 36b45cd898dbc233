"""Odoo-style decorators: the behaviours Odoo's ormcache has, shared and exact."""

import psycopg
import pytest

from conftest import dsn
from pg_cache_client.odoo import Registry


class Env:
    def __init__(self, context):
        self.context = context


class Model:
    calls = []

    def __init__(self, registry_, id_, context=None):
        self.id = id_
        self.env = Env(context or {})
        self.registry = registry_


def make_model(registry):
    class Partner(Model):
        @registry.ormcache("self.id", "upper")
        def name(self, upper=False):
            Model.calls.append(("name", self.id, upper))
            n = f"partner {self.id}"
            return n.upper() if upper else n

        @registry.ormcache_context("self.id", keys=("lang",))
        def label(self):
            Model.calls.append(("label", self.id, self.env.context.get("lang")))
            return (self.id, self.env.context.get("lang"))

        @registry.ormcache_multi("self.id", multi="ids", cache="names")
        def names(self, ids):
            Model.calls.append(("names", tuple(ids)))
            return {i: f"n{i}" for i in ids}

    return Partner


@pytest.fixture
def registry(conn, name):
    Model.calls = []
    return Registry(conn, prefix=name + ".")


def test_ormcache_computes_once_per_key(registry):
    Partner = make_model(registry)
    p = Partner(registry, 7)
    assert p.name() == "partner 7" and p.name() == "partner 7"
    assert p.name(upper=True) == "PARTNER 7"
    assert Model.calls == [("name", 7, False), ("name", 7, True)]


def test_context_keys_are_part_of_the_key(registry):
    Partner = make_model(registry)
    assert Partner(registry, 1, {"lang": "fr"}).label() == (1, "fr")
    assert Partner(registry, 1, {"lang": "en", "tz": "UTC"}).label() == (1, "en")
    assert Partner(registry, 1, {"lang": "fr", "other": 1}).label() == (1, "fr")
    assert len(Model.calls) == 2


def test_multi_computes_only_the_missing_ids_in_one_round_trip(registry, monkeypatch):
    from pg_cache_client import _sql

    Partner = make_model(registry)
    p = Partner(registry, 0)
    assert p.names([1, 2]) == {1: "n1", 2: "n2"}
    sent = []
    run = _sql.run
    monkeypatch.setattr(_sql, "run", lambda conn, sql, params=(): sent.append(sql) or run(conn, sql, params))
    assert p.names([1, 2, 3]) == {1: "n1", 2: "n2", 3: "n3"}
    assert Model.calls == [("names", (1, 2)), ("names", (3,))]
    assert len(sent) == 2 and "cache_get_many(" in sent[0] and "cache_set_many(" in sent[1], sent


def test_a_clear_is_seen_by_another_process_at_its_commit_and_not_before(connect, name):
    writer, reader = connect(), connect(autocommit=True)
    w, r = Registry(writer, prefix=name + "."), Registry(reader, prefix=name + ".")
    r.cache().put("k", 1)
    w.clear_cache()
    assert r.cache().get("k") == 1, "not before the writer commits"
    writer.commit()
    assert r.cache().get("k") is None


def test_entries_are_per_database(database, name):
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS py_odoo_other WITH (FORCE)")
        admin.execute("CREATE DATABASE py_odoo_other")
    try:
        with psycopg.connect(dsn(database), autocommit=True) as a, psycopg.connect(dsn("py_odoo_other"), autocommit=True) as b:
            b.execute("CREATE EXTENSION pg_cache")
            Registry(a, prefix=name + ".").cache().put("k", "a")
            assert Registry(b, prefix=name + ".").cache().get("k") is None
    finally:
        with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS py_odoo_other WITH (FORCE)")


def test_a_value_computed_before_a_committed_clear_is_not_kept(connect, name):
    slow, other = connect(), connect(autocommit=True)
    rs, ro = Registry(slow, prefix=name + "."), Registry(other, prefix=name + ".")
    Model.calls = []
    Partner = make_model(rs)
    rs.cache().get("warm-up")  # the slow transaction begins
    ro.clear_cache()  # committed while it computes
    Partner(rs, 5).name()
    slow.commit()
    assert ro.cache().get((Partner.name.__qualname__, 5, False)) is None
