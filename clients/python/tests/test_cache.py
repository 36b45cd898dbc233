"""The client against a real server: every call on the caller's connection and
transaction, values and keys as they were, errors typed."""

import datetime as dt
import threading
from decimal import Decimal
from types import MappingProxyType

import psycopg
import pytest

from pg_cache_client import (
    BYTES, JSON, MISSING, NEVER, Cache, InvalidArgument, LimitExceeded, NotInstalled, PermissionDenied,
    PickleCodec, WrongValueKind, clear_all,
)


def test_get_set_delete_and_the_default(conn, name):
    c = Cache(conn, name)
    assert c.get("k") is None
    assert c.get("k", MISSING) is MISSING
    c.set("k", {"a": 1})
    assert c.get("k") == {"a": 1}
    c.set("none", None)
    assert c.get("none", MISSING) is None, "a stored None is not a miss"
    assert c.delete("k") is True
    assert c.delete("k") is False
    assert c.get("k") is None


VALUES = [
    (1, 2), frozenset({1, 2}), {"ids": (1, 2)}, {1: "a", (2, 3): None}, Decimal("19.90"), Decimal("1E+3"),
    dt.datetime(2024, 2, 29, 12, 0, tzinfo=dt.timezone.utc), dt.date(2024, 2, 29), b"\x00\x01",
    1e16, 1e-7, -0.0, float("inf"), 10**30, "nul\x00", {"$t": "not a tag"},
    MappingProxyType({"lang": "fr", "ids": (1,)}), [1.0, 2.5, "x"], {"b": 1, "a": 2},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_value_comes_back_equal_and_of_its_type_through_jsonb(conn, name, value):
    c = Cache(conn, name)
    c.set("v", value)
    got = c.get("v")
    assert type(got) is type(value)
    if isinstance(value, float) and value == 0:
        assert str(got) == str(value)
    else:
        assert got == value


@pytest.mark.parametrize("codec", [PickleCodec(), BYTES, JSON], ids=lambda c: type(c).__name__)
def test_other_codecs(conn, name, codec):
    c = Cache(conn, name, codec=codec)
    value = {"a": [1, 2]} if codec is not BYTES else b"\x00raw"
    c.set("v", value)
    assert c.get("v") == value
    c.set_many({"m1": value, "m2": value})
    assert c.get_many(["m1", "m2", "m3"]) == {"m1": value, "m2": value}
    if codec.kind == "bytea":
        with pytest.raises(TypeError):
            c.add("x", value)


@pytest.mark.parametrize("key", ["user:7", 7, (1, "a"), frozenset({("lang", "fr")}), None, Decimal("2.5"), b"k"], ids=repr)
def test_keys_of_every_kind(conn, name, key):
    c = Cache(conn, name)
    c.set(key, "v")
    assert c.get(key) == "v"
    assert c.has(key)
    assert c.get_many([key]) == {key: "v"}


def test_a_str_key_is_the_key_sql_sees(conn, name):
    Cache(conn, name).set("user:7", 1)
    assert conn.execute("SELECT cache_get(%s, 'user:7')", (name,)).fetchone()[0] == 1


def test_writes_commit_and_roll_back_with_the_callers_transaction(connect, name):
    a, b = connect(), connect(autocommit=True)
    ca, cb = Cache(a, name), Cache(b, name)
    ca.put("k", 1)
    assert ca.get("k") == 1, "the transaction sees its own write"
    assert cb.get("k") is None, "others do not, before the commit"
    a.rollback()
    assert cb.get("k") is None
    ca.put("k", 2)
    a.commit()
    assert cb.get("k") == 2


def test_a_fill_is_dropped_as_stale_and_a_put_is_not(connect, name):
    a, b = connect(), connect(autocommit=True)
    ca, cb = Cache(a, name), Cache(b, name)
    ca.get("warm")  # a's transaction starts
    cb.delete("k")  # committed after a began
    ca.set("k", "fill")
    a.commit()
    assert cb.get("k") is None
    ca.get("warm")
    cb.delete("k")
    ca.put("k", "put")
    a.commit()
    assert cb.get("k") == "put"


def test_store_operations(conn, name):
    c = Cache(conn, name)
    assert c.add("a", 1) is True
    assert c.add("a", 2) is False
    assert c.get("a") == 1
    assert c.incr("n") == 1
    assert c.incr("n", 5) == 6
    assert c.decr("n", 2) == 4
    assert c.incr("missing", initial=None) is None
    assert not c.has("missing")
    assert c.touch("a", ttl=60) is True
    assert c.touch("nothing", ttl=60) is False
    left = c.expires_at("a") - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(seconds=50) < left <= dt.timedelta(seconds=61)
    c.put("forever", 1)
    assert c.expires_at("forever") == NEVER
    assert c.expires_at("nothing") is None
    assert c.pull("a") == 1
    assert c.get("a") is None
    c.put_many({"x": 1, "y": 2, (1, 2): 3})
    assert c.get_many(["x", "y", (1, 2), "z"]) == {"x": 1, "y": 2, (1, 2): 3}
    assert c.delete_many(["x", "y", "z"]) == 2
    c.set("t1", 1, tags=["group:1"])
    c.set("t2", 2, tags="group:2")
    c.invalidate_tags(["group:1"])
    assert c.get("t1") is None and c.get("t2") == 2
    c.set("user:7:a", 1)
    c.set("user:8:a", 1)
    c.delete_prefix("user:7:")
    assert c.get("user:7:a") is None and c.get("user:8:a") == 1
    c.clear()
    assert c.get("user:8:a") is None
    c.set("ttl", 1, ttl=dt.timedelta(seconds=30))
    assert c.expires_at("ttl") != NEVER


def test_declare_stats_and_clear_all(conn, name):
    c = Cache(conn, name)
    assert c.declare(size_limit=10, duration=60, context=False) is True
    assert c.declare(size_limit=10, duration=60, context=False) is False
    c.get("miss")
    c.set("k", 1)
    c.get("k")
    s = c.stats()
    assert (s["size_limit"], s["duration"], s["entries"], s["hits"], s["misses"]) == (10, 60.0, 1, 1, 1)
    since = dt.datetime.now(dt.timezone.utc)
    clear_all(conn)
    assert c.get("k") is None
    assert c.sync_since(since) is True
    assert c.last_clear() >= since


def test_errors_are_typed_and_carry_sqlstate_and_hint(connect, name):
    conn = connect(autocommit=True)
    c = Cache(conn, name)
    with pytest.raises(InvalidArgument) as e:
        Cache(conn, "").get("k")
    assert e.value.sqlstate == "22023"
    with pytest.raises(LimitExceeded) as e:
        c.set("k" * 5000, 1)
    assert e.value.sqlstate == "54000" and e.value.hint
    c.put("n", "text")
    with pytest.raises(WrongValueKind):
        c.incr("n")
    with pytest.raises(InvalidArgument):
        c.set("k", 1, ttl=-1)
    with pytest.raises(PermissionDenied):
        conn.execute("SELECT cache_create(%s, writers => ARRAY['postgres'])", (name + "w",))
        conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'py_cache_nobody') "
                     "THEN CREATE ROLE py_cache_nobody; END IF; END $$")
        conn.execute("GRANT USAGE ON SCHEMA public TO py_cache_nobody")
        conn.execute("SET ROLE py_cache_nobody")
        Cache(conn, name + "w").put("k", 1)
    conn.execute("RESET ROLE")


def test_a_database_without_the_extension_says_so(database):
    from conftest import dsn
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS py_no_extension WITH (FORCE)")
        admin.execute("CREATE DATABASE py_no_extension TEMPLATE template0")
    try:
        with psycopg.connect(dsn("py_no_extension"), autocommit=True) as other:
            with pytest.raises(NotInstalled):
                Cache(other, "x").get("k")
    finally:
        with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS py_no_extension WITH (FORCE)")


def test_the_callers_search_path_decides_nothing(conn, name):
    conn.execute("CREATE SCHEMA IF NOT EXISTS py_hostile")
    conn.execute(
        "CREATE OR REPLACE FUNCTION py_hostile.cache_get(text, text) RETURNS jsonb LANGUAGE sql AS $$ SELECT '\"hijacked\"'::jsonb $$"
    )
    conn.execute("SET search_path = py_hostile, public")
    c = Cache(conn, name)
    c.put("k", "real")
    assert c.get("k") == "real"
    conn.execute("RESET search_path")


def test_a_connection_function_is_asked_each_call(connect, name):
    conns = [connect(autocommit=True), connect(autocommit=True)]
    current = [conns[0]]
    c = Cache(lambda: current[0], name)
    c.put("k", 1)
    current[0] = conns[1]
    assert c.get("k") == 1


def test_remember_computes_once_across_sessions(connect, name):
    calls = []
    started = threading.Event()

    def compute():
        calls.append(1)
        started.set()
        threading.Event().wait(0.5)
        return {"v": len(calls)}

    results = []

    def worker():
        conn = connect(autocommit=True)
        results.append(Cache(conn, name).remember("report", compute))

    first = threading.Thread(target=worker)
    first.start()
    started.wait(5)
    others = [threading.Thread(target=worker) for _ in range(3)]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(10)
    assert len(calls) == 1
    assert results == [{"v": 1}] * 4


def test_settings_apply_to_the_caches_own_calls_only(connect, name):
    conn = connect()
    c = Cache(conn, name, settings={"on_limit": "warning", "keep_fills_on_rollback": True})
    c.set("k" * 5000, 1)  # over max_key_size: skipped with a WARNING, the transaction goes on
    assert c.get_many(["a", "k" * 5000]) == {}
    conn.rollback()
    c.set(("many", "keys"), 1)
    conn.rollback()  # wrote no data: the fills stay (keep_fills_on_rollback)
    other = Cache(connect(autocommit=True), name)
    assert other.get(("many", "keys")) == 1
    assert conn.execute("SHOW pg_cache.on_limit").fetchone()[0].lower() == "error", "the session is as it was"
    with pytest.raises(ValueError):
        Cache(conn, name, settings={"memory": "1GB"})
