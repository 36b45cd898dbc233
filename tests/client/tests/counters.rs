//! The operations beyond get, set and delete, over real connections: those that
//! read a key and write what they read, under concurrency (increments add up
//! exactly, one adder wins a key, one puller receives a value; transactions roll
//! back at random and only what committed may show), hit ratios, expiries.

mod common;
use common::{connect, fresh_database, get, sqlstate};

const CONNECTIONS: usize = 8;

/// A small deterministic generator per connection (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn run_connections<T: Send + 'static>(db: &'static str, work: fn(usize, &mut postgres::Client) -> T) -> Vec<T> {
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = connect(db);
                work(i, &mut c)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

const KEYS: u64 = 10;
const INCREMENTS: usize = 10_000;

/// 8 connections × 10,000 increments by 1 of 10 keys, one to three per transaction
/// (keys in order, so that transactions cannot deadlock), a fifth of the
/// transactions and some savepoints rolled back: each key ends at the number of
/// increments that committed, and every value an increment returned was new.
#[test]
fn concurrent_increments_with_rollbacks_add_up_exactly() {
    const DB: &str = "pg_cache_counters";
    fresh_database(DB);
    let per_connection = run_connections(DB, |i, c| {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1) * 0x1000_0001);
        let mut committed = [0i64; KEYS as usize];
        let mut returned: Vec<(u64, i64)> = Vec::new();
        let mut done = 0;
        while done < INCREMENTS {
            let n = (1 + rng.below(3) as usize).min(INCREMENTS - done);
            let mut keys: Vec<u64> = (0..n).map(|_| rng.below(KEYS)).collect();
            keys.sort_unstable();
            let mut tx = c.transaction().unwrap();
            let mut counted = [0i64; KEYS as usize];
            let mut seen = Vec::new();
            for &k in &keys {
                if rng.below(10) == 0 {
                    // An increment in a savepoint that rolls back counts for nothing.
                    let mut sp = tx.transaction().unwrap();
                    sp.query_one("SELECT cache_incr('counters', $1)", &[&format!("k{k}")]).unwrap();
                    sp.rollback().unwrap();
                }
                let v: i64 = tx.query_one("SELECT cache_incr('counters', $1)", &[&format!("k{k}")]).unwrap().get(0);
                counted[k as usize] += 1;
                seen.push((k, v));
            }
            if rng.below(5) == 0 {
                tx.rollback().unwrap();
            } else {
                tx.commit().unwrap();
                for k in 0..KEYS as usize {
                    committed[k] += counted[k];
                }
                returned.extend(seen);
            }
            done += n;
        }
        (committed, returned)
    });
    let mut c = connect(DB);
    let mut all_returned: Vec<(u64, i64)> = Vec::new();
    for k in 0..KEYS {
        let want: i64 = per_connection.iter().map(|(committed, _)| committed[k as usize]).sum();
        let got: Option<String> = c.query_one("SELECT cache_get('counters', $1)::text", &[&format!("k{k}")]).unwrap().get(0);
        assert_eq!(got, Some(want.to_string()), "key k{k}: the number of committed increments");
    }
    for (_, returned) in &per_connection {
        all_returned.extend(returned);
    }
    // Committed increments of one key returned 1, 2, ... each exactly once (a
    // transaction's last increment of a key is the value it committed).
    for k in 0..KEYS {
        let mut values: Vec<i64> = all_returned.iter().filter(|(key, _)| *key == k).map(|&(_, v)| v).collect();
        values.sort_unstable();
        let expected: Vec<i64> = (1..=values.len() as i64).collect();
        assert_eq!(values, expected, "key k{k}: committed increments returned each value once");
    }
}

/// 8 connections add the same 300 keys, each committing or rolling back at random:
/// at most one committed adder of a key was told true, and a key holds a value
/// exactly when one was, the value of that adder.
#[test]
fn of_concurrent_adders_one_wins_each_key() {
    const DB: &str = "pg_cache_adders";
    const ROUNDS: usize = 300;
    fresh_database(DB);
    let wins = run_connections(DB, |i, c| {
        let mut rng = Rng(0x51_7cc1_b727_220a ^ (i as u64 + 7) * 0x3c6e_f372);
        let mut won = Vec::new();
        for round in 0..ROUNDS {
            let mut tx = c.transaction().unwrap();
            let added: bool = tx
                .query_one("SELECT cache_add('adds', $1, to_jsonb($2::int))", &[&format!("r{round}"), &(i as i32)])
                .unwrap()
                .get(0);
            if rng.below(3) == 0 {
                tx.rollback().unwrap();
            } else {
                tx.commit().unwrap();
                if added {
                    won.push((round, i));
                }
            }
        }
        won
    });
    let mut c = connect(DB);
    for round in 0..ROUNDS {
        let winners: Vec<usize> = wins.iter().flatten().filter(|(r, _)| *r == round).map(|&(_, i)| i).collect();
        assert!(winners.len() <= 1, "round {round}: {winners:?} were all told they added the key");
        let held: Option<String> = c.query_one("SELECT cache_get('adds', $1)::text", &[&format!("r{round}")]).unwrap().get(0);
        assert_eq!(held, winners.first().map(|i| i.to_string()), "round {round}: the winner's value, or none");
    }
}

/// 8 connections pull from 400 jobs, rolling back a third of their pulls: each job
/// reaches exactly one committed puller, and none is left.
#[test]
fn of_concurrent_pullers_one_receives_each_value() {
    const DB: &str = "pg_cache_pullers";
    const JOBS: i32 = 400;
    fresh_database(DB);
    connect(DB)
        .batch_execute(&format!("SELECT cache_put('jobs', 'j' || g, to_jsonb(g)) FROM generate_series(1, {JOBS}) g"))
        .unwrap();
    let received = run_connections(DB, |i, c| {
        let mut rng = Rng(0x2545_f491 ^ (i as u64 + 3) * 0x9e37_79b9);
        let mut got = Vec::new();
        for _ in 0..JOBS * 2 {
            let job = 1 + rng.below(JOBS as u64) as i32;
            let mut tx = c.transaction().unwrap();
            let value: Option<String> =
                tx.query_one("SELECT cache_pull('jobs', $1)::text", &[&format!("j{job}")]).unwrap().get(0);
            if rng.below(3) == 0 {
                tx.rollback().unwrap();
            } else {
                tx.commit().unwrap();
                if let Some(v) = value {
                    assert_eq!(v, job.to_string());
                    got.push(job);
                }
            }
        }
        got
    });
    let mut c = connect(DB);
    let mut all: Vec<i32> = received.into_iter().flatten().collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(all.len(), before, "a job reached two committed pullers");
    for job in 1..=JOBS {
        let left: Option<String> = c.query_one("SELECT cache_get('jobs', $1)::text", &[&format!("j{job}")]).unwrap().get(0);
        assert_eq!(left.is_some(), all.binary_search(&job).is_err(), "job {job}: pulled once or still there");
    }
}

/// `cache_stats().hit_ratio` is hits over reads since the last reset: NULL before any
/// read, and probes (`cache_has`) and writes count for nothing.
#[test]
fn hit_ratio_counts_reads_only() {
    const DB: &str = "pg_cache_hit_ratio";
    fresh_database(DB);
    let mut c = connect(DB);
    let ratio = |c: &mut postgres::Client| -> Option<f64> {
        c.query_one("SELECT hit_ratio FROM cache_stats() WHERE cache = 'h'", &[]).unwrap().get(0)
    };
    c.batch_execute("SELECT cache_put('h', 'a', '1'), cache_has('h', 'a'), cache_has('h', 'b')").unwrap();
    assert_eq!(ratio(&mut c), None, "no read yet");
    c.batch_execute("SELECT cache_get('h', 'a'), cache_get('h', 'a'), cache_get('h', 'a'), cache_get('h', 'b')").unwrap();
    assert_eq!(ratio(&mut c), Some(0.75));
    c.batch_execute("SELECT cache_stats_reset()").unwrap();
    assert_eq!(ratio(&mut c), None, "reset with the counters");
}

/// Expiries as committed: `expires_at` exactly, `infinity` for never, an increment
/// keeps the key's expiry, a touch moves it without being an invalidation.
#[test]
fn committed_expiries_follow_expires_at_touch_and_incr() {
    const DB: &str = "pg_cache_expiries";
    fresh_database(DB);
    let mut c = connect(DB);
    let at = |c: &mut postgres::Client, key: &str| -> Option<String> {
        c.query_one("SELECT cache_expires_at('e', $1)::text", &[&key]).unwrap().get(0)
    };
    c.batch_execute("SET TIME ZONE 'UTC'; SELECT cache_create('e', duration => '1 minute')").unwrap();
    c.batch_execute("SELECT cache_put('e', 'k', '1', expires_at => '2999-01-01 00:00:00+00')").unwrap();
    assert_eq!(at(&mut c, "k").as_deref(), Some("2999-01-01 00:00:00+00"));
    c.batch_execute("SELECT cache_incr('e', 'k')").unwrap();
    assert_eq!(at(&mut c, "k").as_deref(), Some("2999-01-01 00:00:00+00"), "an increment keeps the expiry");
    c.batch_execute("SELECT cache_touch('e', 'k', expires_at => 'infinity')").unwrap();
    assert_eq!(at(&mut c, "k").as_deref(), Some("infinity"));
    assert_eq!(common::get(&mut c, "e", "k").as_deref(), Some("2"));
    assert_eq!(at(&mut c, "missing"), None);

    // A fill by a transaction that started before a touch committed still installs.
    let mut filler = connect(DB);
    let mut tx = filler.transaction().unwrap();
    tx.batch_execute("SELECT cache_get('e', 'k')").unwrap();
    c.batch_execute("SELECT cache_touch('e', 'k', '1 hour')").unwrap();
    tx.batch_execute("SELECT cache_set('e', 'k', '\"filled\"')").unwrap();
    tx.commit().unwrap();
    assert_eq!(common::get(&mut c, "e", "k").as_deref(), Some("\"filled\""), "a touch is not an invalidation");

    // A touch with a short ttl: the value is gone once it passed.
    c.batch_execute("SELECT cache_touch('e', 'k', '200 milliseconds')").unwrap();
    assert_eq!(common::get(&mut c, "e", "k").as_deref(), Some("\"filled\""));
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(common::get(&mut c, "e", "k"), None, "expired at the touched time");
    // Frees the expired entry now rather than when the worker sweeps it: other
    // tests compare the server's memory before and after.
    c.batch_execute("SELECT cache_drop(current_database())").unwrap();
}

/// A commit of 1,000 increments (applied as one shadowed commit) judges each against
/// what committed after its read: a put made meanwhile stands, a touch made
/// meanwhile keeps its expiry, the other keys are incremented and keep theirs.
#[test]
fn a_big_commit_of_increments_forgoes_only_what_was_overtaken() {
    const DB: &str = "pg_cache_big_incr";
    fresh_database(DB);
    let mut c = connect(DB);
    c.batch_execute(
        "SET TIME ZONE 'UTC';
         SELECT count(cache_put('big', 'b' || g, '0', expires_at => '2999-01-01 00:00:00+00')) FROM generate_series(0, 999) g",
    )
    .unwrap();
    let mut other = connect(DB);
    other.batch_execute("SET TIME ZONE 'UTC'").unwrap();
    let mut tx = c.transaction().unwrap();
    let n: i64 = tx.query_one("SELECT count(cache_incr('big', 'b' || g)) FROM generate_series(0, 999) g", &[]).unwrap().get(0);
    assert_eq!(n, 1000);
    other
        .batch_execute("SELECT cache_put('big', 'b5', '100'); SELECT cache_touch('big', 'b7', expires_at => 'infinity')")
        .unwrap();
    tx.commit().unwrap();
    let row = other
        .query_one(
            "SELECT cache_get('big', 'b5')::text, cache_get('big', 'b6')::text, cache_get('big', 'b7')::text,
                    cache_expires_at('big', 'b6')::text, cache_expires_at('big', 'b7')::text,
                    (SELECT count(*) FROM generate_series(0, 999) g WHERE cache_get('big', 'b' || g) = '1')",
            &[],
        )
        .unwrap();
    let got: (String, String, String, String, String, i64) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
    assert_eq!(
        got,
        ("100".into(), "1".into(), "1".into(), "2999-01-01 00:00:00+00".into(), "infinity".into(), 999),
        "b5 put meanwhile stands; b7 incremented with the touched expiry; the others incremented, expiry kept"
    );
}

/// Waits for a key's lock are PostgreSQL's: past `lock_timeout` they fail with
/// 55P03, and two transactions taking two keys' locks in opposite orders are a
/// deadlock that PostgreSQL detects (40P01) and breaks by failing one of them.
#[test]
fn key_lock_waits_time_out_and_deadlocks_are_detected() {
    const DB: &str = "pg_cache_key_lock_waits";
    fresh_database(DB);
    let (mut a, mut b) = (connect(DB), connect(DB));
    let state = |e: postgres::Error| e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_default();

    let mut ta = a.transaction().unwrap();
    ta.batch_execute("SELECT cache_incr('w', 'x')").unwrap();
    let mut tb = b.transaction().unwrap();
    tb.batch_execute("SET LOCAL lock_timeout = '100ms'").unwrap();
    let e = tb.batch_execute("SELECT cache_incr('w', 'x')").unwrap_err();
    assert_eq!(state(e), "55P03", "a wait past lock_timeout");
    tb.rollback().unwrap();
    ta.commit().unwrap();

    // a holds x and waits for y; b holds y and asks for x.
    let mut tb = b.transaction().unwrap();
    tb.batch_execute("SELECT cache_incr('w', 'y')").unwrap();
    let waiter = std::thread::spawn(move || {
        let mut ta = a.transaction().unwrap();
        ta.batch_execute("SET LOCAL deadlock_timeout = '50ms'; SELECT cache_incr('w', 'x')").unwrap();
        let r = ta.batch_execute("SELECT cache_incr('w', 'y')").map_err(state);
        if r.is_ok() {
            ta.commit().unwrap();
        }
        r
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mine = tb.batch_execute("SET LOCAL deadlock_timeout = '50ms'; SELECT cache_incr('w', 'x')").map_err(state);
    if mine.is_ok() {
        tb.commit().unwrap();
    } else {
        tb.rollback().unwrap();
    }
    let theirs = waiter.join().unwrap();
    let failed: Vec<&String> = [&mine, &theirs].into_iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failed, ["40P01"], "exactly one side fails, with deadlock_detected: {mine:?} / {theirs:?}");
}

/// Binary values over real connections: a committed bytea entry reads back byte for
/// byte in another session (NUL bytes, a toasted value), alone and among many keys;
/// reading it as jsonb or counting on it is refused (42804) and leaves it as it was;
/// a jsonb put replaces it and then only jsonb reads work.
#[test]
fn bytea_entries_read_back_exactly_and_only_as_bytea() {
    const DB: &str = "pg_cache_bytea";
    fresh_database(DB);
    let (mut a, mut b) = (connect(DB), connect(DB));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    a.execute("SELECT cache_put_bytes('b', 'k', $1)", &[&&[0u8, 255, 0, 10][..]]).unwrap();
    a.execute("SELECT cache_set_bytes('b', 'big', $1)", &[&big]).unwrap();

    let read = |c: &mut postgres::Client, key: &str| -> Option<Vec<u8>> {
        c.query_one("SELECT cache_get_bytes('b', $1)", &[&key]).unwrap().get(0)
    };
    assert_eq!(read(&mut b, "k"), Some(vec![0, 255, 0, 10]));
    assert_eq!(read(&mut b, "big"), Some(big.clone()));
    let rows: Vec<(String, Vec<u8>)> = b
        .query("SELECT key, value FROM cache_get_many_bytes('b', '{missing,k}')", &[])
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [("k".to_string(), vec![0, 255, 0, 10])]);

    for sql in [
        "SELECT cache_get('b', 'k')",
        "SELECT * FROM cache_get_many('b', '{k}')",
        "SELECT cache_incr('b', 'k')",
        "SELECT cache_pull('b', 'k')",
    ] {
        assert_eq!(sqlstate(&mut b, sql), "42804", "{sql}");
    }
    assert_eq!(read(&mut b, "k"), Some(vec![0, 255, 0, 10]), "a refused call changes nothing");
    let added: bool = b.query_one("SELECT cache_add('b', 'k', '1')", &[]).unwrap().get(0);
    assert!(!added, "a bytea value makes its key present");

    a.batch_execute("SELECT cache_put('b', 'k', '1')").unwrap();
    assert_eq!(get(&mut b, "b", "k").as_deref(), Some("1"));
    assert_eq!(sqlstate(&mut b, "SELECT cache_get_bytes('b', 'k')"), "42804");
    a.batch_execute("SELECT cache_drop(current_database())").unwrap();
}
