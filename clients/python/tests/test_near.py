"""The in-process near cache: served without a round trip, dropped by the change
feed when another session commits a change."""

import time

import psycopg
import pytest

from conftest import dsn
from pg_cache_client import Cache, NotReady, _sql
from pg_cache_client.near import Listener, NearCache


def wait_for(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def listener(database):
    listener = Listener(lambda: psycopg.connect(dsn(database, application_name="near_test_listener"), autocommit=True),
                        quiet=0.1)
    assert listener.wait_listening()
    yield listener
    listener.stop()


@pytest.fixture
def announced(conn, name):
    Cache(conn, name).declare(context=False, notify="keys")
    return name


def test_a_copy_is_served_without_a_round_trip(conn, announced, listener, monkeypatch):
    Cache(conn, announced).put("k", {"v": 1})
    near = NearCache(Cache(conn, announced), listener)
    assert near.get("k") == {"v": 1}
    sent = []
    run = _sql.run
    monkeypatch.setattr(_sql, "run", lambda c, sql, params=(): sent.append(sql) or run(c, sql, params))
    assert near.get("k") == {"v": 1}
    assert sent == [] and near.hits == 1


def test_changes_committed_elsewhere_drop_the_copy(connect, announced, listener):
    reader, writer = connect(autocommit=True), connect(autocommit=True)
    w = Cache(writer, announced)
    w.put("k", 1)
    w.put("user:7:a", 1)
    w.put("t", 1, tags=["x"])
    w.put("other", 1)
    near = NearCache(Cache(reader, announced), listener)
    for k in ("k", "user:7:a", "t", "other"):
        assert near.get(k) == 1
    assert len(near) == 4

    def change(f):
        seen = near.changes
        f()
        assert wait_for(lambda: near.changes > seen), "the change was heard"

    change(lambda: w.put("k", 2))
    assert near.get("k") == 2
    change(lambda: w.delete_prefix("user:7:"))
    assert near.get("user:7:a") is None
    change(lambda: w.invalidate_tags(["x"]))
    assert near.get("t") is None
    time.sleep(0.15)  # past quiet: "other" is kept again
    assert near.get("other") == 1 and near.get("other") == 1
    change(lambda: w.clear())
    assert near.get("other") is None
    assert len(near) == 0


def test_a_rolled_back_change_is_not_heard(connect, announced, listener):
    reader, writer = connect(autocommit=True), connect()
    Cache(reader, announced).put("k", 1)
    near = NearCache(Cache(reader, announced), listener)
    assert near.get("k") == 1
    seen = near.changes
    Cache(writer, announced).put("k", 2)
    writer.rollback()
    time.sleep(0.2)
    assert near.changes == seen and near.get("k") == 1


def test_a_value_read_across_a_change_is_not_kept(connect, announced, listener):
    reader, writer = connect(autocommit=True), connect(autocommit=True)
    Cache(writer, announced).put("k", 1)
    cache = Cache(reader, announced)
    near = NearCache(cache, listener)
    time.sleep(0.15)
    drive = cache._drive

    def racing_drive(plan):
        value = drive(plan)  # read 1, then a change commits before it is kept
        seen = near.changes
        Cache(writer, announced).put("k", 2)
        assert wait_for(lambda: near.changes > seen)
        return value

    cache._drive = racing_drive
    assert near.get("k") == 1
    cache._drive = drive
    assert len(near) == 0
    time.sleep(0.15)
    assert near.get("k") == 2


def test_a_value_read_just_after_a_change_is_heard_is_not_kept(connect, announced, listener):
    reader, writer = connect(autocommit=True), connect(autocommit=True)
    near = NearCache(Cache(reader, announced), listener)
    seen = near.changes
    Cache(writer, announced).put("k", 1)
    assert wait_for(lambda: near.changes > seen)
    assert near.get("k") == 1
    assert len(near) == 0, "within quiet of the change: it could be the value from before it"
    time.sleep(0.15)
    near.get("k")
    assert len(near) == 1


def test_a_lost_listener_connection_drops_everything_and_listens_again(connect, announced, listener):
    reader, admin = connect(autocommit=True), connect(autocommit=True)
    Cache(reader, announced).put("k", 1)
    near = NearCache(Cache(reader, announced), listener)
    near.get("k")
    assert len(near) == 1
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'near_test_listener'")
    assert wait_for(lambda: not listener.listening or len(near) == 0)
    assert len(near) == 0
    assert listener.wait_listening()
    time.sleep(0.15)
    assert near.get("k") == 1 and len(near) == 1


def test_a_cache_that_announces_nothing_is_refused(conn, name, listener):
    Cache(conn, name).put("k", 1)
    with pytest.raises(NotReady, match="notify"):
        NearCache(Cache(conn, name), listener)


def test_a_copy_is_not_served_past_its_entrys_expiry(conn, announced, listener):
    c = Cache(conn, announced)
    c.put("short", 1, ttl=0.5)
    near = NearCache(c, listener)
    time.sleep(0.15)
    assert near.get("short") == 1
    assert near.get("short") == 1 and near.hits == 1, "kept"
    time.sleep(0.5)
    assert near.get("short") is None, "expired on the server: not served from the copy"


def test_forget_drops_a_copy_at_once(conn, announced, listener):
    c = Cache(conn, announced)
    c.put("k", 1)
    near = NearCache(c, listener)
    time.sleep(0.15)
    near.get("k")
    assert len(near) == 1
    near.forget(["k"])
    assert len(near) == 0
