"""PgCache in Tryton transactions, beyond trytond's own cache tests: entries are
shared through the server, a rolled-back write is gone (MemoryCache keeps it),
and with [cache] pg_cache_near a hit is served from the process."""

import os
import time
import unittest

import psycopg
from trytond import config
from trytond.cache import Cache
from trytond.tests.test_tryton import DB_NAME, USER, DBTestCase, with_transaction
from trytond.transaction import Transaction

from pg_cache_client import _sql
from pg_cache_client.tryton import PgCache

shared = Cache("pg_cache_test.shared") if Cache is PgCache else None
timed = Cache("pg_cache_test.timed", duration=60) if Cache is PgCache else None


def sql(query, params=()):
    port = os.environ["PG_CACHE_TEST_PORT"]
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname={DB_NAME}", autocommit=True) as c:
        return c.execute(query, params).fetchall()


@unittest.skipUnless(Cache is PgCache, "[cache] class is not PgCache")
class PgCacheTestCase(DBTestCase):
    module = "tests"

    def tearDown(self):
        # As trytond's own cache tests do: stops the near copies' listener, whose
        # connection would keep the test database from being dropped.
        Cache.drop(DB_NAME)

    def test_a_committed_set_is_seen_by_other_transactions_and_by_sql(self):
        with Transaction().start(DB_NAME, USER) as t:
            shared.set("k", {"ids": [1, 2]})
            t.commit()
        with Transaction().start(DB_NAME, USER, readonly=True):
            value = shared.get("k")
        self.assertEqual(dict(value), {"ids": (1, 2)}, "immutable, as MemoryCache returns it")
        # Keys hold Tryton's context: the row is there under the encoded key.
        entries = sql("SELECT entries FROM cache_stats() WHERE cache = 'pg_cache_test.shared'")
        self.assertEqual(entries, [(1,)])

    def test_a_set_of_a_transaction_that_rolls_back_its_writes_is_gone(self):
        # MemoryCache keeps it: its sets reach the shared LRU at once.
        with Transaction().start(DB_NAME, USER) as t:
            Pool = __import__("trytond.pool", fromlist=["Pool"]).Pool
            Pool().get("res.user").write([Pool().get("res.user")(USER)], {"name": "changed"})
            shared.set("rolled", 1)
            self.assertEqual(shared.get("rolled"), 1, "seen by its own transaction")
            t.rollback()
        with Transaction().start(DB_NAME, USER, readonly=True):
            self.assertIsNone(shared.get("rolled"))

    def test_a_read_only_transactions_fills_are_kept(self):
        # Tryton ends read-only transactions with ROLLBACK.
        with Transaction().start(DB_NAME, USER, readonly=True):
            shared.set("read", 1)
        with Transaction().start(DB_NAME, USER, readonly=True):
            self.assertEqual(shared.get("read"), 1)

    def test_an_older_transaction_does_not_read_a_newer_entry(self):
        # As MemoryCache keeps transactions older than a clear off the shared
        # cache: an entry computed after a transaction began may derive from rows
        # its snapshot does not see.
        transaction1 = Transaction().start(DB_NAME, USER)
        self.addCleanup(transaction1.stop)
        self.assertIsNone(shared.get("newer"))  # the transaction's snapshot is taken
        transaction2 = transaction1.new_transaction()
        self.addCleanup(transaction2.stop)
        shared.set("newer", 1)
        transaction2.commit()
        self.assertEqual(shared.get("newer"), 1, "the committing transaction's next one sees it")
        with Transaction().set_current_transaction(transaction1):
            self.assertIsNone(shared.get("newer"))

    def test_duration_expires_entries(self):
        with Transaction().start(DB_NAME, USER) as t:
            timed.set("k", 1)
            t.commit()
        rows = sql("SELECT duration FROM cache_stats() WHERE cache = 'pg_cache_test.timed'")
        self.assertEqual(rows[0][0].total_seconds(), 60)

    @unittest.skipUnless(config.getboolean("cache", "pg_cache_near", default=False), "near copies are off")
    def test_a_near_hit_sends_nothing_and_a_commit_elsewhere_drops_it(self):
        with Transaction().start(DB_NAME, USER) as t:
            shared.set("near", 1)
            t.commit()
        listener = None
        with Transaction().start(DB_NAME, USER, readonly=True):
            self.assertEqual(shared.get("near"), 1)
            listener = PgCache._listeners[DB_NAME]
            self.assertTrue(listener.wait_listening())
        time.sleep(0.15)  # past the listener's quiet time after its start
        with Transaction().start(DB_NAME, USER, readonly=True):
            self.assertEqual(shared.get("near"), 1)  # read and kept
        # A transaction is served copies read before it began (snapshot reads).
        with Transaction().start(DB_NAME, USER, readonly=True):
            sent = []
            run = _sql.run
            _sql.run = lambda conn, q, p=(): sent.append(q) or run(conn, q, p)
            try:
                self.assertEqual(shared.get("near"), 1)
            finally:
                _sql.run = run
            self.assertEqual(sent, [], "a near hit sends nothing")
        near = shared._near_by_db[DB_NAME]
        self.assertEqual((near.hits, len(near)), (1, 1))
        # This process's own commit drops its copies at once.
        with Transaction().start(DB_NAME, USER) as t:
            shared.clear()
            shared.set("near", 2)
            t.commit()
        self.assertEqual(len(near), 0)
        with Transaction().start(DB_NAME, USER, readonly=True):
            self.assertEqual(shared.get("near"), 2)
        # Another session's commit drops them when its notification arrives.
        time.sleep(0.15)
        with Transaction().start(DB_NAME, USER, readonly=True):
            shared.get("near")
        with Transaction().start(DB_NAME, USER, readonly=True):
            self.assertEqual(shared.get("near"), 2)
        self.assertEqual(len(near), 1)
        seen = near.changes
        sql("SELECT cache_clear('pg_cache_test.shared')")
        end = time.monotonic() + 5
        while near.changes == seen and time.monotonic() < end:
            time.sleep(0.01)
        self.assertEqual(len(near), 0)
