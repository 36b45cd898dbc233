"""pytest plugin: runs cachy's own store tests (tests/stores/test_dict_store.py
and tests/test_tagged_cache.py of cachy's source distribution) against PgStore.

Those tests build ``DictStore()`` and expect an empty store: each construction
here is a PgStore over a cache name of its own, on an autocommit connection to
the cluster's postgres database.
"""

import os
import uuid


def pytest_configure(config):
    # cachy's tests import flexmock_teardown, which flexmock now keeps in
    # flexmock._api (its pytest plugin verifies expectations after each test).
    import flexmock
    import flexmock._api

    flexmock.flexmock_teardown = flexmock._api.flexmock_teardown

    import cachy.stores
    import psycopg

    from pg_cache_client.cachy import PgStore

    port = os.environ["PG_CACHE_TEST_PORT"]
    conn = psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cache")

    class FreshPgStore(PgStore):
        def __init__(self):
            super().__init__(conn, "cachy." + uuid.uuid4().hex[:12])

    cachy.stores.DictStore = FreshPgStore
