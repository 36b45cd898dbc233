"""pytest plugin: runs trytond's own tests/test_cache.py against PgCache.

trytond's cache tests name ``MemoryCache`` directly, so this swaps it for
``PgCache`` before they are imported; ``[cache] class`` (set by the caller as
``TRYTOND_CACHE__CLASS``) makes it every model's cache too. Without
``PG_CACHE_TRYTON_BASELINE`` unset... see scripts/python_tier.
"""

import os


def pytest_configure(config):
    if os.environ.get("PG_CACHE_TRYTON_BASELINE"):
        return  # Tryton's own MemoryCache: the baseline run
    import trytond.cache

    from pg_cache_client.tryton import PgCache

    trytond.cache.MemoryCache = PgCache
