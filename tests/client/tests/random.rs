//! A randomized test of the transactional model. Several sessions run random gets,
//! sets, puts, deletes, clears, savepoints, errors, commits and rollbacks, interleaved one
//! statement at a time by one driver, and every read is checked against a model: the
//! committed state plus the session's own pending writes, with stale fills dropped
//! at commit (and their keys invalidated) by the rule the README states.
//!
//! `PG_CACHE_RANDOM_SEED` (default 1) and `PG_CACHE_RANDOM_OPS` (default 20000) set the
//! run; a failure names the seed and the step, so any run can be replayed.

use std::collections::{BTreeMap, HashMap};

use postgres::Client;

mod common;
use common::{connect, fresh_database};

const SESSIONS: usize = 4;
const CACHES: usize = 3;
const KEYS: usize = 8;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

#[derive(Clone, Debug)]
enum Op {
    Set(usize, usize, i64),
    /// A `cache_put`: never dropped as stale (README rule 12).
    Put(usize, usize, i64),
    Delete(usize, usize),
    Clear(usize),
    ClearAll,
}

/// The committed state and the fences: when each key, cache and the database were
/// last invalidated, in driver steps.
#[derive(Default)]
struct Model {
    committed: BTreeMap<(usize, usize), i64>,
    key_fence: HashMap<(usize, usize), u64>,
    cache_fence: [u64; CACHES],
    db_fence: u64,
    stale: u64,
}

impl Model {
    fn is_stale(&self, c: usize, k: usize, start: u64) -> bool {
        self.key_fence.get(&(c, k)).is_some_and(|&f| f >= start) || self.cache_fence[c] >= start || self.db_fence >= start
    }

    /// A transaction that began at step `start` commits `ops` at step `now`.
    fn commit(&mut self, ops: &[(u32, Op)], start: u64, now: u64) {
        let last_clear_all = ops.iter().rposition(|(_, op)| matches!(op, Op::ClearAll));
        for c in 0..CACHES {
            let last_clear = ops.iter().rposition(|(_, op)| matches!(op, Op::Clear(x) if *x == c)).max(last_clear_all);
            // The last write of each key made after the cache's last clear, in op order.
            let mut last: BTreeMap<usize, usize> = BTreeMap::new();
            for (i, (_, op)) in ops.iter().enumerate() {
                match op {
                    Op::Set(x, k, _) | Op::Put(x, k, _) | Op::Delete(x, k) if *x == c && last_clear.is_none_or(|l| i > l) => {
                        last.insert(*k, i);
                    }
                    _ => {}
                }
            }
            let mut writes: Vec<usize> = last.into_values().collect();
            writes.sort_unstable();
            let stale: Vec<bool> = writes
                .iter()
                .map(|&i| matches!(ops[i].1, Op::Set(_, k, _) if self.is_stale(c, k, start)))
                .collect();
            if last_clear.is_some() {
                self.committed.retain(|(x, _), _| *x != c);
                self.cache_fence[c] = now;
            }
            for (i, stale) in writes.into_iter().zip(stale) {
                match ops[i].1 {
                    Op::Set(_, k, v) | Op::Put(_, k, v) if !stale => {
                        self.committed.insert((c, k), v);
                        self.key_fence.insert((c, k), now);
                    }
                    // A dropped fill still invalidates its key (README rule 5).
                    Op::Set(_, k, _) => {
                        self.stale += 1;
                        self.committed.remove(&(c, k));
                        self.key_fence.insert((c, k), now);
                    }
                    Op::Delete(_, k) => {
                        self.committed.remove(&(c, k));
                        self.key_fence.insert((c, k), now);
                    }
                    _ => unreachable!(),
                }
            }
        }
        if last_clear_all.is_some() {
            self.db_fence = now;
        }
    }
}

struct Session {
    client: Client,
    in_txn: bool,
    failed: bool,
    start: u64,
    depth: u32,
    ops: Vec<(u32, Op)>,
}

impl Session {
    fn end(&mut self) {
        self.in_txn = false;
        self.ops.clear();
    }

    /// What the session's own pending writes say about (c, k): `Some(None)` = absent.
    fn pending(&self, c: usize, k: usize) -> Option<Option<i64>> {
        self.ops.iter().rev().find_map(|(_, op)| match *op {
            Op::Set(x, y, v) | Op::Put(x, y, v) if x == c && y == k => Some(Some(v)),
            Op::Delete(x, y) if x == c && y == k => Some(None),
            Op::Clear(x) if x == c => Some(None),
            Op::ClearAll => Some(None),
            _ => None,
        })
    }

    fn run(&mut self, op: &Op) -> Option<bool> {
        trace(&format!("{op:?}"));
        match *op {
            Op::Set(c, k, v) => {
                self.client.execute("SELECT cache_set($1, $2, to_jsonb($3::bigint))", &[&cache(c), &key(k), &v]).unwrap();
                None
            }
            Op::Put(c, k, v) => {
                self.client.execute("SELECT cache_put($1, $2, to_jsonb($3::bigint))", &[&cache(c), &key(k), &v]).unwrap();
                None
            }
            Op::Delete(c, k) => {
                Some(self.client.query_one("SELECT cache_delete($1, $2)", &[&cache(c), &key(k)]).unwrap().get(0))
            }
            Op::Clear(c) => {
                self.client.execute("SELECT cache_clear($1)", &[&cache(c)]).unwrap();
                None
            }
            Op::ClearAll => {
                self.client.batch_execute("SELECT cache_clear_all()").unwrap();
                None
            }
        }
    }

    fn read(&mut self, c: usize, k: usize) -> Option<i64> {
        self.client
            .query_one("SELECT (cache_get($1, $2) #>> '{}')::bigint", &[&cache(c), &key(k)])
            .unwrap()
            .get(0)
    }
}

fn trace(what: &str) {
    if std::env::var_os("PG_CACHE_RANDOM_TRACE").is_some() {
        eprintln!("  {what}");
    }
}

/// A transaction-control statement (or a deliberate error), traced.
fn control(client: &mut Client, sql: &str) -> Result<(), postgres::Error> {
    trace(sql);
    client.batch_execute(sql)
}

fn cache(c: usize) -> String {
    format!("r{c}")
}

fn key(k: usize) -> String {
    format!("k{k}")
}

fn env(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn random_write(rng: &mut Rng, value: &mut i64) -> Op {
    *value += 1;
    match rng.below(40) {
        0..=20 => Op::Set(rng.below(CACHES), rng.below(KEYS), *value),
        21..=27 => Op::Put(rng.below(CACHES), rng.below(KEYS), *value),
        28..=34 => Op::Delete(rng.below(CACHES), rng.below(KEYS)),
        35..=38 => Op::Clear(rng.below(CACHES)),
        _ => Op::ClearAll,
    }
}

#[test]
fn random_sessions_agree_with_the_model() {
    let seed = env("PG_CACHE_RANDOM_SEED", 1);
    let steps = env("PG_CACHE_RANDOM_OPS", 20000);
    fresh_database("pg_cache_random");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut model = Model::default();
    let mut sessions: Vec<Session> = (0..SESSIONS)
        .map(|_| Session { client: connect("pg_cache_random"), in_txn: false, failed: false, start: 0, depth: 0, ops: Vec::new() })
        .collect();
    let mut value = 0i64;
    let (mut reads, mut hits, mut commits, mut rollbacks) = (0u64, 0u64, 0u64, 0u64);
    for step in 1..=steps {
        let who = rng.below(SESSIONS);
        trace(&format!("step {step} session {who}"));
        let s = &mut sessions[who];
        let at = || format!("seed {seed}, step {step}, session {who}");
        let mut check_read = |s: &mut Session, model: &Model, rng: &mut Rng| {
            let (c, k) = (rng.below(CACHES), rng.below(KEYS));
            let expected = s.pending(c, k).unwrap_or_else(|| model.committed.get(&(c, k)).copied());
            trace(&format!("get r{c}/k{k}, expect {expected:?}"));
            assert_eq!(s.read(c, k), expected, "get r{c}/k{k} at {}", at());
            reads += 1;
            hits += expected.is_some() as u64;
        };
        if !s.in_txn {
            match rng.below(10) {
                0..=3 => {
                    control(&mut s.client, "BEGIN").unwrap();
                    (s.in_txn, s.failed, s.start, s.depth) = (true, false, step, 0);
                    s.ops.clear();
                }
                4..=6 => check_read(s, &model, &mut rng),
                _ => {
                    // One statement in its own transaction.
                    let op = random_write(&mut rng, &mut value);
                    if let (Op::Delete(c, k), Some(existed)) = (&op, s.run(&op)) {
                        assert_eq!(existed, model.committed.contains_key(&(*c, *k)), "delete r{c}/k{k} at {}", at());
                    }
                    model.commit(&[(0, op)], step, step);
                    commits += 1;
                }
            }
            continue;
        }
        if s.failed {
            // An error aborted the transaction: undo to a savepoint, or end it (a COMMIT
            // of a failed transaction rolls back).
            if s.depth > 0 && rng.below(2) == 0 {
                control(&mut s.client, &format!("ROLLBACK TO SAVEPOINT s{}", s.depth)).unwrap();
                let d = s.depth;
                s.ops.retain(|(l, _)| *l < d);
                s.failed = false;
            } else {
                control(&mut s.client, if rng.below(2) == 0 { "ROLLBACK" } else { "COMMIT" }).unwrap();
                s.end();
                rollbacks += 1;
            }
            continue;
        }
        match rng.below(100) {
            0..=29 => check_read(s, &model, &mut rng),
            30..=60 => {
                let op = random_write(&mut rng, &mut value);
                if let (Op::Delete(c, k), Some(existed)) = (&op, s.run(&op)) {
                    let expected = s.pending(*c, *k).unwrap_or_else(|| model.committed.get(&(*c, *k)).copied());
                    assert_eq!(existed, expected.is_some(), "delete r{c}/k{k} at {}", at());
                }
                s.ops.push((s.depth, op));
            }
            61..=67 => {
                s.depth += 1;
                control(&mut s.client, &format!("SAVEPOINT s{}", s.depth)).unwrap();
            }
            68..=72 if s.depth > 0 => {
                let to = 1 + rng.below(s.depth as usize) as u32;
                control(&mut s.client, &format!("ROLLBACK TO SAVEPOINT s{to}")).unwrap();
                s.ops.retain(|(l, _)| *l < to);
                s.depth = to;
            }
            73..=76 if s.depth > 0 => {
                let to = 1 + rng.below(s.depth as usize) as u32;
                control(&mut s.client, &format!("RELEASE SAVEPOINT s{to}")).unwrap();
                for (l, _) in s.ops.iter_mut() {
                    if *l >= to {
                        *l = to - 1;
                    }
                }
                s.depth = to - 1;
            }
            77..=78 => {
                assert!(control(&mut s.client, "SELECT 1 / 0").is_err());
                s.failed = true;
            }
            79..=92 => {
                control(&mut s.client, "COMMIT").unwrap();
                model.commit(&s.ops, s.start, step);
                s.end();
                commits += 1;
            }
            _ => {
                control(&mut s.client, "ROLLBACK").unwrap();
                s.end();
                rollbacks += 1;
            }
        }
    }
    // End every transaction, then compare the whole cache with the model.
    for s in &mut sessions {
        if s.in_txn {
            control(&mut s.client, "ROLLBACK").unwrap();
        }
    }
    let mut check = connect("pg_cache_random");
    for c in 0..CACHES {
        for k in 0..KEYS {
            let got: Option<i64> = check
                .query_one("SELECT (cache_get($1, $2) #>> '{}')::bigint", &[&cache(c), &key(k)])
                .unwrap()
                .get(0);
            assert_eq!(got, model.committed.get(&(c, k)).copied(), "final r{c}/k{k}, seed {seed}");
        }
    }
    let stale: i64 = check.query_one("SELECT coalesce(sum(stale_sets), 0)::bigint FROM cache_stats()", &[]).unwrap().get(0);
    assert_eq!(stale as u64, model.stale, "stale fills dropped, seed {seed}");
    eprintln!(
        "random: seed {seed}, {steps} steps: {reads} reads checked ({hits} hits), {commits} commits, {rollbacks} rollbacks, \
         {} stale fills dropped, {} entries at the end",
        model.stale,
        model.committed.len()
    );
}
