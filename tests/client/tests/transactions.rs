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
