"""Django's shared cache backend tests (``BaseCacheTests``), run against
pg_cache_client.django.PgCache under ``TransactionTestCase``, as Django runs them
for its database backend; the cull tests are left out, as Django leaves them out
for Redis and memcached (pg_cache evicts by its own policy, not MAX_ENTRIES)."""

import os

import pytest

if not os.environ.get("DJANGO_TESTS_DIR"):
    pytest.skip("DJANGO_TESTS_DIR is not set", allow_module_level=True)

from cache.tests import BaseCacheTests, caches_setting_for_tests  # noqa: E402
from django.test import TransactionTestCase, override_settings  # noqa: E402

from pg_cache_client.errors import WrongValueKind  # noqa: E402


@override_settings(
    CACHES=caches_setting_for_tests(
        BACKEND="pg_cache_client.django.PgCache", LOCATION="django_tests", exclude={"cull", "zero_cull"}
    )
)
class PgCacheTests(BaseCacheTests, TransactionTestCase):
    available_apps = ["cache"]
    # incr of a value that is not an integer: 42804, a TypeError.
    incr_decr_type_error = WrongValueKind


@override_settings(
    CACHES=caches_setting_for_tests(
        BACKEND="pg_cache_client.django.PgCache", LOCATION="django_tests_near", OPTIONS={"NEAR": True},
        exclude={"cull", "zero_cull"},
    )
)
class PgCacheNearTests(BaseCacheTests, TransactionTestCase):
    """The same tests with each process keeping near copies: its own writes drop
    them at once, so every test reads what it wrote."""

    available_apps = ["cache"]
    incr_decr_type_error = WrongValueKind
