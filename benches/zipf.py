#!/usr/bin/env python3
"""Hit ratios of one Zipf-distributed trace replayed against pg_cache LRU, pg_cache LFU
and Redis allkeys-lfu at the same entry capacity (standard library only).

    benches/zipf.py PSQL_PORT REDIS_SERVER CSV [REQUESTS]

Every request reads its key and, on a miss, writes it (a read-through cache). The
trace (s = 0.99 over 1,000,000 keys, fixed seed) is replayed inside the server for
pg_cache (a procedure that commits after each request, so each fill is committed
before the next read) and from this process for Redis (GET, then SET on a miss, one
round trip each). Hit ratios are counted after a warm-up of a fifth of the trace.
Appends `zipf,<workload>,0,<value>,<unit>` rows to CSV.
"""

import bisect
import random
import socket
import subprocess
import sys
import tempfile
import time

KEYS = 1_000_000
CAPACITY = 100_000
S = 0.99


def trace(requests):
    weights = [1.0 / (k ** S) for k in range(1, KEYS + 1)]
    cdf, acc = [], 0.0
    for w in weights:
        acc += w
        cdf.append(acc)
    rng = random.Random(20261202)
    return [min(bisect.bisect_left(cdf, rng.random() * acc), KEYS - 1) for _ in range(requests)]


def psql(port, sql, stdin=None):
    out = subprocess.run(
        ["psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
         "-v", "ON_ERROR_STOP=1", "-c", sql],
        input=stdin, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def pg_cache_ratio(port, policy, n, warm):
    cache = f"zipf_{policy}"
    psql(port, f"SELECT cache_create('{cache}', size_limit => {CAPACITY}, context => false, policy => '{policy}')")
    started = time.time()
    hits = psql(port, f"CALL zipf_replay('{cache}', {n}, {warm}, 0)")
    entries = psql(port, f"SELECT entries FROM cache_stats() WHERE cache = '{cache}'")
    return int(hits) / (n - warm), int(entries), time.time() - started


class Redis:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def call(self, *args):
        msg = f"*{len(args)}\r\n".encode() + b"".join(f"${len(str(a))}\r\n{a}\r\n".encode() for a in args)
        self.s.sendall(msg)
        line = self.f.readline()
        if line[:1] == b"$":
            size = int(line[1:])
            if size < 0:
                return None
            return self.f.read(size + 2)[:-2].decode()
        if line[:1] == b"-":
            raise RuntimeError(line.decode())
        return line[1:].strip().decode()


def redis_ratio(server, keys, warm):
    port = free_port()
    proc = subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                r = Redis(port)
                break
            except OSError:
                time.sleep(0.05)
        # The same entry capacity: CAPACITY entries of the trace's shape (keys the
        # trace never asks for) are loaded under the policy and a large maxmemory,
        # then maxmemory is set to what Redis uses, so its tables are at the size
        # they keep; the trace's keys push the fillers out during the warm-up. (Set
        # without maxmemory, values are shared integers, and a server filled that
        # way held 79,540 of the trace's entries, each with an object of its own.)
        r.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu")
        r.call("CONFIG", "SET", "maxmemory", str(1 << 30))
        for k in range(CAPACITY):
            r.call("SET", f"k{KEYS + k}", "1")
        r.call("CONFIG", "SET", "maxmemory", str(used_memory(r)))
        hits = 0
        started = time.time()
        for i, k in enumerate(keys):
            key = f"k{k}"
            if r.call("GET", key) is not None:
                if i >= warm:
                    hits += 1
            else:
                r.call("SET", key, "1")
        return hits / (len(keys) - warm), int(r.call("DBSIZE")), time.time() - started
    finally:
        proc.terminate()
        proc.wait()


def used_memory(r):
    for line in (r.call("INFO", "memory") or "").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("no used_memory in INFO")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    port, redis_server, csv = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1_500_000
    warm = n // 5
    keys = trace(n)
    with tempfile.NamedTemporaryFile("w", suffix=".csv") as f:
        f.write("".join(f"{i + 1},{k}\n" for i, k in enumerate(keys)))
        f.flush()
        psql(port, "DROP TABLE IF EXISTS zipf_trace; CREATE UNLOGGED TABLE zipf_trace (i int PRIMARY KEY, k int NOT NULL)")
        with open(f.name) as data:
            psql(port, "COPY zipf_trace FROM STDIN WITH (FORMAT csv)", stdin=data.read())
    psql(port, """
        CREATE OR REPLACE PROCEDURE zipf_replay(cache text, n int, warm int, INOUT hits bigint)
        LANGUAGE plpgsql AS $$
        DECLARE key text;
        BEGIN
            FOR r IN 1..n LOOP
                SELECT t.k::text INTO key FROM zipf_trace t WHERE t.i = r;
                IF cache_get(cache, key) IS NOT NULL THEN
                    IF r > warm THEN hits := hits + 1; END IF;
                ELSE
                    PERFORM cache_put(cache, key, '1');
                END IF;
                COMMIT;
            END LOOP;
        END $$""")
    rows = []
    for policy in ("lru", "lfu"):
        ratio, entries, secs = pg_cache_ratio(port, policy, n, warm)
        print(f"  pg_cache {policy}: hit ratio {ratio:.4f}, {entries} entries at the end, {secs:.0f} s")
        rows += [f"zipf,pg_cache_{policy},0,{ratio:.4f},hit_ratio", f"zipf,pg_cache_{policy}_entries,0,{entries},entries"]
    ratio, entries, secs = redis_ratio(redis_server, keys, warm)
    print(f"  Redis allkeys-lfu: hit ratio {ratio:.4f}, {entries} keys at the end, {secs:.0f} s")
    rows += [f"zipf,redis_lfu,0,{ratio:.4f},hit_ratio", f"zipf,redis_lfu_entries,0,{entries},entries"]
    psql(port, "DROP TABLE zipf_trace; DROP PROCEDURE zipf_replay")
    with open(csv, "a") as out:
        out.write("".join(r + "\n" for r in rows))


if __name__ == "__main__":
    main()
