"""Runs Django's own cache tests (tests/cache/tests.py of Django's source
distribution, found at DJANGO_TESTS_DIR) under pytest: Django is set up with
settings.py and its test databases are created for the session, as Django's
runner would."""

import os
import sys

import django
import pytest

HERE = os.path.dirname(__file__)
TESTS = os.environ.get("DJANGO_TESTS_DIR")


def pytest_configure(config):
    if not TESTS:
        return
    sys.path.insert(0, HERE)
    sys.path.insert(0, TESTS)  # Django's tests/: its "cache" test app
    os.environ["DJANGO_SETTINGS_MODULE"] = "settings"
    django.setup()


@pytest.fixture(scope="session", autouse=True)
def django_test_databases():
    if not TESTS:
        pytest.skip("DJANGO_TESTS_DIR (tests/ of Django's source distribution) is not set")
    from django.test.runner import DiscoverRunner
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    runner = DiscoverRunner(verbosity=0, interactive=False)
    old = runner.setup_databases()
    yield
    from pg_cache_client.django import stop_listeners

    stop_listeners()  # their connections would keep the test database from being dropped
    runner.teardown_databases(old)
    teardown_test_environment()
