//! Transactional guarantees that need real concurrency or parallel plans: a commit's
//! writes to one cache appear together, and parallel query changes no result.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod common;
use common::{connect, fresh_database};

const KEYS: usize = 10;

/// Reads k0..k9 of cache `atomic` left to right in one statement (0 for missing).
fn read_all_query() -> String {
    let columns: Vec<String> = (0..KEYS).map(|k| format!("coalesce((cache_get('atomic', 'k{k}') #>> '{{}}')::bigint, 0)")).collect();
    format!("SELECT {}", columns.join(", "))
}

fn read_all(c: &mut postgres::Client) -> Vec<i64> {
    let row = c.query_one(&read_all_query(), &[]).unwrap();
    (0..KEYS).map(|k| row.get(k)).collect()
}

/// Runs `query` (a row of bigints, read left to right) over and over on its own
/// connection until `done`; returns how many reads it made, the torn ones (a later
/// column older than the first) and how many first values it saw.
fn reader(db: &'static str, query: String, done: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, Vec<Vec<i64>>, usize)> {
    std::thread::spawn(move || {
        let mut c = connect(db);
        let (mut reads, mut torn, mut distinct) = (0u64, Vec::new(), std::collections::BTreeSet::new());
        while !done.load(Ordering::Acquire) {
            let row = c.query_one(&query, &[]).unwrap();
            let v: Vec<i64> = (0..row.len()).map(|i| row.get(i)).collect();
            reads += 1;
            distinct.insert(v[0]);
            if v.iter().any(|&x| x < v[0]) {
                torn.push(v);
            }
        }
        (reads, torn, distinct.len())
    })
}

/// A writer commits k0..k9 = i (sometimes after a clear) in one transaction, over and
/// over; readers read k0..k9 left to right in one statement. If a commit could be
/// seen half-applied, a reader would find k0 = i and a later key still older.
#[test]
fn a_commit_to_one_cache_is_seen_whole_or_not_at_all() {
    fresh_database("pg_cache_atomic");
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2).map(|_| reader("pg_cache_atomic", read_all_query(), done.clone())).collect();
    let mut w = connect("pg_cache_atomic");
    for i in 1..=5000 {
        let clear = if i % 10 == 0 { "SELECT cache_clear('atomic');" } else { "" };
        let sets: Vec<String> = (0..KEYS).map(|k| format!("cache_set('atomic', 'k{k}', '{i}')")).collect();
        w.batch_execute(&format!("BEGIN; {clear} SELECT {}; COMMIT", sets.join(", "))).unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        let (reads, torn, distinct) = r.join().unwrap();
        assert!(torn.is_empty(), "{} of {reads} reads saw a half-applied commit, e.g. {:?}", torn.len(), torn[0]);
        assert!(distinct > 10, "the reader ran alongside the writer ({reads} reads, {distinct} values seen)");
    }
    assert_eq!(read_all(&mut w), vec![5000; KEYS]);
}

/// The same for commits of 2,000 keys, which are shadowed (readers of the cache do
/// not wait for them): readers read keys spread over the commit, left to right, and
/// must never find a later one older than the first.
#[test]
fn a_big_commit_is_seen_whole_or_not_at_all() {
    const BIG: usize = 2000;
    fresh_database("pg_cache_atomic_big");
    let done = Arc::new(AtomicBool::new(false));
    let probes = [0, 1, 999, 1000, 1998, 1999];
    let columns: Vec<String> = probes.iter().map(|k| format!("coalesce((cache_get('big', 'k{k}') #>> '{{}}')::bigint, 0)")).collect();
    let query = format!("SELECT {}", columns.join(", "));
    let readers: Vec<_> = (0..2).map(|_| reader("pg_cache_atomic_big", query.clone(), done.clone())).collect();
    let mut w = connect("pg_cache_atomic_big");
    w.batch_execute("SELECT cache_create('big', size_limit => 100000)").unwrap();
    for i in 1..=60 {
        let clear = if i % 5 == 0 { "SELECT cache_clear('big');" } else { "" };
        w.batch_execute(&format!(
            "BEGIN; {clear} SELECT count(cache_set('big', 'k' || g, '{i}')) FROM generate_series(0, {}) g; COMMIT",
            BIG - 1
        ))
        .unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        let (reads, torn, distinct) = r.join().unwrap();
        assert!(torn.is_empty(), "{} of {reads} reads saw a half-applied commit, e.g. {:?}", torn.len(), torn[0]);
        assert!(distinct > 3, "the reader ran alongside the writer ({reads} reads, {distinct} values seen)");
    }
    let last: i64 = w.query_one("SELECT count(*) FROM generate_series(0, 1999) g WHERE cache_get('big', 'k' || g) = '60'", &[]).unwrap().get(0);
    assert_eq!(last, BIG as i64, "every key holds the last commit's value");
    let entries: i64 = w.query_one("SELECT entries FROM cache_stats() WHERE cache = 'big'", &[]).unwrap().get(0);
    assert_eq!(entries, BIG as i64, "replaced entries were freed, not counted");
}

/// With parallel plans forced, reads still see the transaction's own pending writes
/// (cache_get runs in the leader), and a write reached from a parallel worker through
/// a function wrongly marked PARALLEL SAFE is refused rather than lost.
#[test]
fn parallel_plans_give_the_same_results() {
    fresh_database("pg_cache_parallel");
    let setup = "SET force_parallel_mode = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
                 SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2;";
    let mut a = connect("pg_cache_parallel");
    a.batch_execute(
        "CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 20000) g; ANALYZE items;
         CREATE FUNCTION mislabeled_set(k int) RETURNS void LANGUAGE plpgsql PARALLEL SAFE
           AS $$ BEGIN PERFORM cache_set('par', k::text, to_jsonb(k)); END $$;",
    )
    .unwrap();
    a.batch_execute(setup).unwrap();
    // The scan runs in workers under a Gather; cache_get runs above it, in the leader.
    let count = "SELECT count(v), sum((v #>> '{}')::bigint)::bigint
                 FROM (SELECT cache_get('par', id::text) AS v FROM items WHERE id > 0) s";
    let plan: Vec<String> =
        a.query(&format!("EXPLAIN (COSTS OFF) {count}"), &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(plan.iter().any(|l| l.contains("Gather")), "a parallel plan: {plan:?}");
    a.batch_execute("BEGIN; SELECT cache_set('par', id::text, to_jsonb(id)) FROM items WHERE id % 100 = 0").unwrap();
    let own = a.query_one(count, &[]).unwrap();
    assert_eq!((own.get::<_, i64>(0), own.get::<_, Option<i64>>(1)), (200, Some((1..=200).map(|i| i * 100).sum())));
    let mut b = connect("pg_cache_parallel");
    b.batch_execute(setup).unwrap();
    assert_eq!(b.query_one(count, &[]).unwrap().get::<_, i64>(0), 0, "nothing before commit");
    a.batch_execute("COMMIT").unwrap();
    let seen = b.query_one(count, &[]).unwrap();
    assert_eq!((seen.get::<_, i64>(0), seen.get::<_, Option<i64>>(1)), (200, Some((1..=200).map(|i| i * 100).sum())));

    let err = b.batch_execute("SELECT mislabeled_set(1)").unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "25000", "{db:?}");
    assert!(db.message().contains("during a parallel operation"), "{}", db.message());
    assert_eq!(common::get(&mut b, "par", "1"), None, "the refused write left nothing");
}

/// `cache_get_many` sees a cache as of one moment. A writer sets k0..k1999 to
/// version v = 1, 2, ..., one autocommitted put per key (single-key commits, which
/// run side by side) in the order k0, k1999, k1, k1998, ... (two writes in a row
/// land at both ends of a reader's pass), or every third version in one
/// transaction. At any moment the keys holding v + 1 are a prefix of that order
/// and the others hold v. Readers of all the keys in one call must never see
/// otherwise. (As many separate `cache_get` calls in one statement make no such
/// promise: the test counts how often they tear, and fails if they never do,
/// since then it could not have told.)
#[test]
fn a_read_of_many_keys_sees_one_moment() {
    const DB: &str = "pg_cache_get_many";
    const MANY: usize = 2000;
    fresh_database(DB);
    connect(DB).batch_execute("SELECT cache_create('snap', size_limit => 10000)").unwrap();
    let order: Vec<usize> = (0..MANY / 2).flat_map(|i| [i, MANY - 1 - i]).collect();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (done, order) = (done.clone(), order.clone());
        std::thread::spawn(move || {
            let mut c = connect(DB);
            let mut v = 0i64;
            while !done.load(Ordering::Acquire) {
                v += 1;
                if v % 3 == 0 {
                    let mut tx = c.transaction().unwrap();
                    tx.execute("SELECT cache_put('snap', 'k' || g, to_jsonb($1::bigint)) FROM generate_series(0, 1999) g", &[&v]).unwrap();
                    tx.commit().unwrap();
                } else {
                    for &k in &order {
                        c.execute("SELECT cache_put('snap', $1, to_jsonb($2::bigint))", &[&format!("k{k}"), &v]).unwrap();
                    }
                }
            }
            v
        })
    };
    // Whether `v` (versions of k0..k199) is the state after some prefix of `order`.
    let is_one_moment = move |v: &[i64]| {
        let low = *v.iter().min().unwrap();
        if v.iter().any(|&x| x != low && x != low + 1) {
            return false;
        }
        let newer = order.iter().take_while(|&&k| v[k] == low + 1).count();
        order[newer..].iter().all(|&k| v[k] == low)
    };
    // Reads and torn separate reads so far, so that the test runs until the race was
    // exercised (at most 30 s) rather than for a fixed time, which a loaded machine
    // may not fill.
    let progress = Arc::new((std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (done, is_one_moment, progress) = (done.clone(), is_one_moment.clone(), progress.clone());
            std::thread::spawn(move || {
                let mut c = connect(DB);
                let many = "SELECT array_agg((value #>> '{}')::bigint ORDER BY ord) FROM \
                            cache_get_many('snap', ARRAY(SELECT 'k' || g FROM generate_series(0, 1999) g)) \
                            WITH ORDINALITY AS t(key, value, ord)";
                let separate: Vec<String> = (0..MANY).map(|k| format!("(cache_get('snap', 'k{k}') #>> '{{}}')::bigint")).collect();
                let separate = format!("SELECT ARRAY[{}]", separate.join(", "));
                let (mut reads, mut bad, mut torn_separately) = (0u64, Vec::new(), 0u64);
                while !done.load(Ordering::Acquire) {
                    let v: Option<Vec<i64>> = c.query_one(many, &[]).unwrap().get(0);
                    if let Some(v) = v.filter(|v| v.len() == MANY) {
                        reads += 1;
                        progress.0.fetch_add(1, Ordering::Relaxed);
                        if !is_one_moment(&v) {
                            bad.push(v);
                        }
                    }
                    let v: Vec<Option<i64>> = c.query_one(separate.as_str(), &[]).unwrap().get(0);
                    if let Some(v) = v.into_iter().collect::<Option<Vec<i64>>>() {
                        let torn = !is_one_moment(&v) as u64;
                        torn_separately += torn;
                        progress.1.fetch_add(torn, Ordering::Relaxed);
                    }
                }
                (reads, bad, torn_separately)
            })
        })
        .collect();
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(4)
        || (start.elapsed() < std::time::Duration::from_secs(30)
            && (progress.0.load(Ordering::Relaxed) <= 100 || progress.1.load(Ordering::Relaxed) == 0))
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    done.store(true, Ordering::Release);
    let versions = writer.join().unwrap();
    let (mut reads, mut torn) = (0, 0);
    for r in readers {
        let (n, bad, t) = r.join().unwrap();
        assert!(bad.is_empty(), "cache_get_many saw {} mixed moments, first {:?}", bad.len(), bad[0]);
        reads += n;
        torn += t;
    }
    eprintln!("get_many: {reads} reads of one moment over {versions} versions; separate gets tore {torn} times");
    assert!(reads > 100 && torn > 0, "{reads} reads, {torn} torn separate reads: the race was not exercised");
}
