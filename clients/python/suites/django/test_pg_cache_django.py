"""The Django backend's own guarantees, beyond Django's shared tests."""

import os
import time

import psycopg
import pytest

if not os.environ.get("DJANGO_TESTS_DIR"):
    pytest.skip("DJANGO_TESTS_DIR is not set", allow_module_level=True)

from django.core.cache import caches  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import TransactionTestCase, override_settings  # noqa: E402

from pg_cache_client.errors import NotReady  # noqa: E402

BACKEND = "pg_cache_client.django.PgCache"


def other_role_session():
    s = connection.settings_dict
    return psycopg.connect(host=s["HOST"], port=s["PORT"], user="postgres", dbname=s["NAME"], autocommit=True)


@override_settings(CACHES={
    "default": {"BACKEND": BACKEND, "LOCATION": "dj_guarded"},
    "timed": {"BACKEND": BACKEND, "LOCATION": "dj_timed", "OPTIONS": {"duration": 1}},
    "open": {"BACKEND": BACKEND, "LOCATION": "dj_open"},
})
class PgCacheBackendTests(TransactionTestCase):
    available_apps = ["cache"]

    def test_only_djangos_role_may_write_what_it_unpickles(self):
        caches["default"].set("k", {1, 2})
        with other_role_session() as admin:
            admin.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dj_intruder') "
                          "THEN CREATE ROLE dj_intruder; END IF; END $$")
            writers = admin.execute("SELECT writers::text FROM pg_cache_declarations WHERE cache = 'dj_guarded'").fetchone()
            self.assertEqual(writers, ("{}",), "declared with its declarer alone as writer")
            admin.execute("SET ROLE dj_intruder")
            with self.assertRaises(psycopg.errors.InsufficientPrivilege):
                admin.execute("SELECT cache_put('dj_guarded', ':1:k', '{\"$p\": \"gASVAAAAAAAAAAAu\"}')")

    def test_a_cache_open_to_every_writer_is_refused(self):
        with other_role_session() as admin:
            admin.execute("SELECT cache_create('dj_open', context => false)")
        with self.assertRaises(NotReady):
            caches["open"].get("k")

    def test_no_timeout_outlives_the_caches_duration(self):
        c = caches["timed"]
        c.set("forever", 1, None)
        c.set("default", 1)
        time.sleep(1.5)
        self.assertEqual(c.get("forever"), 1)

    def test_writes_in_an_atomic_block_roll_back_with_it(self):
        c = caches["default"]
        c.set("k", "before")
        try:
            with transaction.atomic():
                c.set("k", "inside")
                self.assertEqual(c.get("k"), "inside")
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        self.assertEqual(c.get("k"), "before")
