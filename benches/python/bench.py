"""Per-call costs of pg_cache from Python, in one process over Unix sockets.

    bench.py PG_SOCKET_DIR PG_PORT REDIS_SOCKET OUT_CSV

Each figure is the median of RUNS runs of N calls (microseconds per call, or
calls per second); runs of the things compared are interleaved, so that a noisy
moment hits one run of each. Never asserts: it reports, with the ratio of each
target beside it.
"""

import csv
import datetime as dt
import os
import statistics
import sys
import time

RUNS = int(os.environ.get("BENCH_PY_RUNS", "5"))
N = int(os.environ.get("BENCH_PY_CALLS", "20000"))
PG_DIR, PG_PORT, REDIS_SOCKET, OUT = sys.argv[1:5]
DB = "bench_python"
VALUE = {"id": 42, "name": "Acme SA", "lang": "fr", "active": True, "amount": 19.9}

results = []  # (section, what, median, unit)


def measure(label_fns, n=N, unit="us/call"):
    """Interleaved runs of each (label, fn(n)); fn runs n calls. Medians."""
    times = {label: [] for label, _ in label_fns}
    for _, fn in label_fns:  # warm up: connections, prepared statements, caches
        fn(max(n // 10, 10))
    for _ in range(RUNS):
        for label, fn in label_fns:
            start = time.perf_counter()
            fn(n)
            times[label].append(time.perf_counter() - start)
    out = {}
    for label, ts in times.items():
        per = statistics.median(ts) / n
        out[label] = per * 1e6 if unit == "us/call" else 1 / per
    return out


def record(section, values, unit):
    for what, v in values.items():
        results.append((section, what, v, unit))
        print(f"  {what:<48} {v:>12.1f} {unit}")


def dsn(dbname=DB):
    return f"host={PG_DIR} port={PG_PORT} user=postgres dbname={dbname}"


def setup_database():
    import psycopg

    with psycopg.connect(dsn("postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("CREATE EXTENSION pg_cache")


def bench_client():
    import psycopg

    from pg_cache_client import Cache

    print("client hit against a bare SELECT cache_get(...) with psycopg (target: at most 1.2x)")
    conn = psycopg.connect(dsn(), autocommit=True)
    cache = Cache(conn, "bench.client")
    cache.put("k", VALUE)

    def bare(n):
        for _ in range(n):
            conn.execute("SELECT cache_get(%s, %s)", ("bench.client", "k")).fetchone()

    def client(n):
        for _ in range(n):
            cache.get("k")

    def select1(n):
        for _ in range(n):
            conn.execute("SELECT 1").fetchone()

    r = measure([("SELECT 1", select1), ("bare SELECT cache_get", bare), ("Cache.get", client)])
    r["ratio Cache.get / bare (target <= 1.2)"] = r["Cache.get"] / r["bare SELECT cache_get"]
    record("client", r, "us/call")


def bench_django():
    import django
    from django.conf import settings

    print("Django backends, calls per second (targets: pg_cache >= 3x DatabaseCache for get and set, >= 0.8x Redis for get)")
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "HOST": PG_DIR, "PORT": PG_PORT,
                               "USER": "postgres", "NAME": DB}},
        CACHES={
            "pg_cache": {"BACKEND": "pg_cache_client.django.PgCache", "LOCATION": "bench.django"},
            "pg_cache_near": {"BACKEND": "pg_cache_client.django.PgCache", "LOCATION": "bench.django_near",
                              "OPTIONS": {"NEAR": True}},
            "database": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "bench_cache_table",
                         "OPTIONS": {"MAX_ENTRIES": 10 * N}},
            "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": f"unix://{REDIS_SOCKET}"},
        },
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()
    from django.core.cache import caches
    from django.core.management import call_command

    call_command("createcachetable", verbosity=0)
    backends = {name: caches[name] for name in ("pg_cache", "pg_cache_near", "database", "redis")}
    for c in backends.values():
        c.clear()
        c.set("hit", VALUE, None)
    time.sleep(0.2)
    backends["pg_cache_near"].get("hit")  # read and kept: later gets are near hits

    def getter(c):
        return lambda n: [c.get("hit") for _ in range(n)]

    def setter(c):
        def run(n):
            for i in range(n):
                c.set(f"k{i % 1000}", VALUE, 300)
        return run

    r = measure([(f"get {k}", getter(c)) for k, c in backends.items()], unit="calls/s")
    r["ratio get pg_cache / DatabaseCache (target >= 3)"] = r["get pg_cache"] / r["get database"]
    r["ratio get pg_cache / Redis (target >= 0.8)"] = r["get pg_cache"] / r["get redis"]
    r["ratio get pg_cache NEAR / DatabaseCache"] = r["get pg_cache_near"] / r["get database"]
    r["ratio get pg_cache NEAR / Redis"] = r["get pg_cache_near"] / r["get redis"]
    record("django", r, "calls/s")
    assert backends["pg_cache_near"]._near.hits > 0, "NEAR served hits"
    del backends["pg_cache_near"]
    r = measure([(f"set {k}", setter(c)) for k, c in backends.items()], n=N // 4, unit="calls/s")
    r["ratio set pg_cache / DatabaseCache (target >= 3)"] = r["set pg_cache"] / r["set database"]
    r["ratio set pg_cache / Redis (reported)"] = r["set pg_cache"] / r["set redis"]
    record("django", r, "calls/s")


def bench_tryton():
    os.environ["TRYTOND_DATABASE__URI"] = f"postgresql://postgres@:{PG_PORT}/?host={PG_DIR}"
    from trytond import config
    from trytond.cache import MemoryCache
    from trytond.transaction import Transaction

    from pg_cache_client.tryton import PgCache

    print("Tryton cache classes (target: a near hit within 3x a MemoryCache hit)")
    memory = MemoryCache("bench.memory")
    pg = PgCache("bench.pg")
    key = ("product", 42, frozenset({("lang", "fr")}))

    def hits(cache):
        def run(n):
            with Transaction().start(DB, 0, readonly=True):
                for _ in range(n):
                    cache.get(key)
        return run

    def sets(cache):
        def run(n):
            for i in range(n):
                with Transaction().start(DB, 0) as t:
                    cache.set((key, i % 100), VALUE)
                    t.commit()
        return run

    for c in (memory, pg):
        with Transaction().start(DB, 0) as t:
            c.set(key, VALUE)
            t.commit()
    r = measure([("get hit MemoryCache", hits(memory)), ("get hit PgCache", hits(pg))])
    r["ratio PgCache / MemoryCache (reported)"] = r["get hit PgCache"] / r["get hit MemoryCache"]
    record("tryton", r, "us/call")
    r = measure([("set + commit MemoryCache", sets(memory)), ("set + commit PgCache", sets(pg))], n=N // 10)
    r["ratio PgCache / MemoryCache (reported)"] = r["set + commit PgCache"] / r["set + commit MemoryCache"]
    record("tryton", r, "us/call")

    config.set("cache", "pg_cache_near", "True")
    near = PgCache("bench.near")
    with Transaction().start(DB, 0) as t:
        near.set(key, VALUE)
        t.commit()
    with Transaction().start(DB, 0, readonly=True):
        near.get(key)
        PgCache._listeners[DB].wait_listening()
    time.sleep(0.2)
    with Transaction().start(DB, 0, readonly=True):
        near.get(key)  # read and kept
    r = measure([("get hit MemoryCache", hits(memory)), ("get hit PgCache near copy", hits(near))])
    r["ratio near / MemoryCache (target <= 3)"] = r["get hit PgCache near copy"] / r["get hit MemoryCache"]
    record("tryton", r, "us/call")
    assert near._near_by_db[DB].hits > 0, "the near copy served the hits"
    PgCache.drop(DB)


def main():
    setup_database()
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {RUNS} runs of {N} calls, medians")
    bench_client()
    bench_django()
    bench_tryton()
    with open(OUT, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "what", "median", "unit"])
        w.writerows(results)


if __name__ == "__main__":
    main()
