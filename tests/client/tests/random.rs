//! A randomized test of the transactional model. Several sessions run random gets
//! (of one key, or of several through `cache_get_many`),
//! sets, puts, deletes (some through `cache_set_many`, `cache_put_many`,
//! `cache_delete_many`), clears, increments, adds, pulls, touches, probes,
//! single-flight reads, savepoints, errors, commits and rollbacks, interleaved one
//! statement at a time by one driver, and every read is checked against a model: the
//! committed state plus the session's own pending writes, with stale fills dropped
//! at commit (and their keys invalidated) and writes computed from a read forgone
//! when another write of the key committed after that read, by the rules the README
//! states. The driver never asks for a key lock another session holds (it would
//! wait on itself): it reads instead. A reader on the hot standby fills its own
//! cache there, and every hit it gets is checked against the versions the
//! primary's writes committed (see [`StandbyReader`]).
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

/// Prefixed to every statement that certainly writes its key ($1, $2): the key's
/// version (its rows in table `ver`, appended to: an update would make concurrent
/// writers of a key wait for each other, and the driver for itself) goes up in the
/// same statement, so that a hot standby's
/// reader fills its own cache with versions and can tell a stale hit (see
/// [`StandbyReader`]). Add and pull write only sometimes and bump nothing: a record
/// without a bump only invalidates more, a bump without a record would be a false
/// alarm.
const BUMP_KEY: &str = "WITH b AS (INSERT INTO ver (cache, key) VALUES ($1, $2)) ";

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
    /// Requests: `cache_incr`, `cache_add`, `cache_pull`, `cache_touch`, `cache_has`,
    /// `cache_get_or_lock`. What they log in the session is a `Computed` or a `Touched`.
    Incr(usize, usize),
    Add(usize, usize, i64),
    Pull(usize, usize),
    Touch(usize, usize),
    Has(usize, usize),
    GetOrLock(usize, usize),
    /// A write computed from a read (`None` value: a delete), committed as `Mode`
    /// says (README rule 13).
    Computed(usize, usize, Option<i64>, Mode),
    /// A touch logged for the shared value: changes no value.
    Touched(usize, usize),
}

/// How a computed write commits: as the session's own write it was computed from
/// would (a fill, a put), or only if the key still holds the entry its read saw
/// (`None`: no entry).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Fill,
    Put,
    Seen(Option<u64>),
}

impl Op {
    /// The key whose lock this request takes (get_or_lock only on a miss).
    fn locks(&self) -> Option<(usize, usize)> {
        match *self {
            Op::Incr(c, k) | Op::Add(c, k, _) | Op::Pull(c, k) | Op::GetOrLock(c, k) => Some((c, k)),
            _ => None,
        }
    }
}

/// The committed state and the fences: when each key, cache and the database were
/// last invalidated, in driver steps.
#[derive(Default)]
struct Model {
    /// Each committed value with the id of its entry (a new id per install).
    committed: BTreeMap<(usize, usize), (i64, u64)>,
    next_id: u64,
    key_fence: HashMap<(usize, usize), u64>,
    cache_fence: [u64; CACHES],
    db_fence: u64,
    stale: u64,
    /// Computed writes forgone because another write of their key committed first.
    overtaken: u64,
}

impl Model {
    fn value(&self, c: usize, k: usize) -> Option<i64> {
        self.committed.get(&(c, k)).map(|&(v, _)| v)
    }

    fn seen(&self, c: usize, k: usize) -> Option<u64> {
        self.committed.get(&(c, k)).map(|&(_, id)| id)
    }

    fn install(&mut self, c: usize, k: usize, v: i64, now: u64) {
        self.next_id += 1;
        self.committed.insert((c, k), (v, self.next_id));
        self.key_fence.insert((c, k), now);
    }

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
                    Op::Set(x, k, _) | Op::Put(x, k, _) | Op::Delete(x, k) | Op::Computed(x, k, _, _) | Op::Touched(x, k)
                        if *x == c && last_clear.is_none_or(|l| i > l) =>
                    {
                        last.insert(*k, i);
                    }
                    _ => {}
                }
            }
            let mut writes: Vec<usize> = last.into_values().collect();
            writes.sort_unstable();
            // Fills and computed writes are judged before the commit changes anything.
            let skip: Vec<bool> = writes
                .iter()
                .map(|&i| match ops[i].1 {
                    Op::Set(_, k, _) => self.is_stale(c, k, start),
                    Op::Computed(_, k, _, Mode::Seen(seen)) => self.seen(c, k) != seen,
                    Op::Computed(_, k, Some(_), Mode::Fill) => self.is_stale(c, k, start),
                    _ => false,
                })
                .collect();
            if last_clear.is_some() {
                self.committed.retain(|(x, _), _| *x != c);
                self.cache_fence[c] = now;
            }
            for (i, skip) in writes.into_iter().zip(skip) {
                match ops[i].1 {
                    Op::Set(_, k, v) | Op::Put(_, k, v) | Op::Computed(_, k, Some(v), _) if !skip => {
                        self.install(c, k, v, now);
                    }
                    // Overtaken: the write that committed after its read stands.
                    Op::Computed(_, _, _, Mode::Seen(_)) if skip => self.overtaken += 1,
                    Op::Touched(..) => {}
                    // A dropped fill still invalidates its key (README rule 5).
                    Op::Set(_, k, _) | Op::Computed(_, k, Some(_), Mode::Fill) => {
                        self.stale += 1;
                        self.committed.remove(&(c, k));
                        self.key_fence.insert((c, k), now);
                    }
                    Op::Delete(_, k) | Op::Computed(_, k, None, _) => {
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
    /// Key locks held, with the savepoint depth that took each.
    locks: Vec<(u32, (usize, usize))>,
}

impl Session {
    fn end(&mut self) {
        self.in_txn = false;
        self.ops.clear();
        self.locks.clear();
    }

    /// What the session's own pending writes say about (c, k): `Some(None)` = absent.
    fn pending(&self, c: usize, k: usize) -> Option<Option<i64>> {
        self.own(c, k).map(|(v, _)| v)
    }

    /// The session's last own write of (c, k), or the clear after it (a touch of the
    /// shared value is not one).
    fn own_op(&self, c: usize, k: usize) -> Option<&Op> {
        self.ops.iter().rev().map(|(_, op)| op).find(|op| match **op {
            Op::Set(x, y, _) | Op::Put(x, y, _) | Op::Computed(x, y, _, _) | Op::Delete(x, y) => x == c && y == k,
            Op::Clear(x) => x == c,
            Op::ClearAll => true,
            _ => false,
        })
    }

    /// The value the session's own writes give (c, k) (`None`: absent) and the mode
    /// a write computed from it commits in.
    fn own(&self, c: usize, k: usize) -> Option<(Option<i64>, Mode)> {
        self.own_op(c, k).map(|op| match *op {
            Op::Set(_, _, v) => (Some(v), Mode::Fill),
            Op::Put(_, _, v) => (Some(v), Mode::Put),
            // A pull's delete keeps its read's condition; one made from the
            // session's own fill or put is a plain delete.
            Op::Computed(_, _, None, Mode::Seen(seen)) => (None, Mode::Seen(seen)),
            Op::Computed(_, _, None, _) => (None, Mode::Put),
            Op::Computed(_, _, v, mode) => (v, mode),
            _ => (None, Mode::Put),
        })
    }

    /// What a request sees of (c, k) and the mode of a write computed from it.
    fn basis(&self, model: &Model, c: usize, k: usize) -> (Option<i64>, Mode) {
        self.own(c, k).unwrap_or_else(|| (model.value(c, k), Mode::Seen(model.seen(c, k))))
    }

    /// Runs a request: checks its answer against the model and logs what it writes
    /// (a single statement outside a transaction commits it at once).
    fn request(&mut self, model: &mut Model, op: &Op, step: u64, at: &dyn Fn() -> String) {
        trace(&format!("{op:?}"));
        let (c, k) = match *op {
            Op::Incr(c, k) | Op::Add(c, k, _) | Op::Pull(c, k) | Op::Touch(c, k) | Op::Has(c, k) | Op::GetOrLock(c, k) => (c, k),
            _ => unreachable!(),
        };
        let (visible, guard) = self.basis(model, c, k);
        let (cn, kn) = (cache(c), key(k));
        let logged = match *op {
            Op::Incr(..) => {
                let got: i64 = self.client.query_one(&format!("{BUMP_KEY}SELECT cache_incr($1, $2)"), &[&cn, &kn]).unwrap().get(0);
                let want = visible.unwrap_or(0) + 1;
                assert_eq!(got, want, "incr r{c}/k{k} at {}", at());
                Some(Op::Computed(c, k, Some(want), guard))
            }
            Op::Add(_, _, v) => {
                let got: bool = self.client.query_one("SELECT cache_add($1, $2, to_jsonb($3::bigint))", &[&cn, &kn, &v]).unwrap().get(0);
                assert_eq!(got, visible.is_none(), "add r{c}/k{k} at {}", at());
                visible.is_none().then_some(Op::Computed(c, k, Some(v), guard))
            }
            Op::Pull(..) => {
                let got: Option<i64> =
                    self.client.query_one("SELECT (cache_pull($1, $2) #>> '{}')::bigint", &[&cn, &kn]).unwrap().get(0);
                assert_eq!(got, visible, "pull r{c}/k{k} at {}", at());
                visible.map(|_| Op::Computed(c, k, None, guard))
            }
            Op::Touch(..) => {
                let got: bool = self.client.query_one("SELECT cache_touch($1, $2, '1 hour')", &[&cn, &kn]).unwrap().get(0);
                assert_eq!(got, visible.is_some(), "touch r{c}/k{k} at {}", at());
                // With a value of its own the session logs that write again.
                match self.own_op(c, k) {
                    Some(w @ (Op::Set(..) | Op::Put(..) | Op::Computed(_, _, Some(_), _))) => Some(w.clone()),
                    Some(_) => None,
                    None => visible.map(|_| Op::Touched(c, k)),
                }
            }
            Op::Has(..) => {
                let got: bool = self.client.query_one("SELECT cache_has($1, $2)", &[&cn, &kn]).unwrap().get(0);
                assert_eq!(got, visible.is_some(), "has r{c}/k{k} at {}", at());
                None
            }
            Op::GetOrLock(..) => {
                let got: Option<i64> =
                    self.client.query_one("SELECT (cache_get_or_lock($1, $2) #>> '{}')::bigint", &[&cn, &kn]).unwrap().get(0);
                assert_eq!(got, visible, "get_or_lock r{c}/k{k} at {}", at());
                None
            }
            _ => unreachable!(),
        };
        // The lock stays with the transaction: add, incr and pull always take it,
        // get_or_lock when it finds nothing and the session has no write of its own.
        let locked = match op {
            Op::GetOrLock(..) => visible.is_none() && self.own(c, k).is_none(),
            _ => op.locks().is_some(),
        };
        if !self.in_txn {
            if let Some(w) = logged {
                model.commit(&[(0, w)], step, step);
            }
            return;
        }
        if locked {
            self.locks.push((self.depth, (c, k)));
        }
        if let Some(w) = logged {
            self.ops.push((self.depth, w));
        }
    }

    fn run(&mut self, op: &Op) -> Option<bool> {
        trace(&format!("{op:?}"));
        match *op {
            // A third of the sets and puts and half of the deletes go through the
            // _many forms (one key each): they must mean exactly the same.
            Op::Set(c, k, v) if v % 3 == 0 => {
                self.client
                    .execute(&format!("{BUMP_KEY}SELECT cache_set_many($1, jsonb_build_object($2::text, $3::bigint))"), &[&cache(c), &key(k), &v])
                    .unwrap();
                None
            }
            Op::Set(c, k, v) => {
                self.client.execute(&format!("{BUMP_KEY}SELECT cache_set($1, $2, to_jsonb($3::bigint))"), &[&cache(c), &key(k), &v]).unwrap();
                None
            }
            Op::Put(c, k, v) if v % 3 == 0 => {
                self.client
                    .execute(&format!("{BUMP_KEY}SELECT cache_put_many($1, jsonb_build_object($2::text, $3::bigint))"), &[&cache(c), &key(k), &v])
                    .unwrap();
                None
            }
            Op::Put(c, k, v) => {
                self.client.execute(&format!("{BUMP_KEY}SELECT cache_put($1, $2, to_jsonb($3::bigint))"), &[&cache(c), &key(k), &v]).unwrap();
                None
            }
            Op::Delete(c, k) if k % 2 == 0 => {
                let n: i32 =
                    self.client.query_one(&format!("{BUMP_KEY}SELECT cache_delete_many($1, ARRAY[$2])"), &[&cache(c), &key(k)]).unwrap().get(0);
                Some(n == 1)
            }
            Op::Delete(c, k) => {
                Some(self.client.query_one(&format!("{BUMP_KEY}SELECT cache_delete($1, $2)"), &[&cache(c), &key(k)]).unwrap().get(0))
            }
            Op::Clear(c) => {
                self.client.execute(&format!("WITH b AS (INSERT INTO ver SELECT $1, 'k' || k FROM generate_series(0, {}) k) SELECT cache_clear($1)", KEYS - 1), &[&cache(c)]).unwrap();
                None
            }
            Op::ClearAll => {
                self.client.batch_execute(&format!(
                        "WITH b AS (INSERT INTO ver SELECT 'r' || c, 'k' || k FROM generate_series(0, {}) c, generate_series(0, {}) k) \
                         SELECT cache_clear_all()",
                        CACHES - 1,
                        KEYS - 1
                    )).unwrap();
                None
            }
            _ => unreachable!("requests go through Session::request"),
        }
    }

    /// `keys` of cache `c` through one `cache_get_many` (repeats allowed).
    fn read_many(&mut self, c: usize, keys: &[usize]) -> Vec<Option<i64>> {
        let names: Vec<String> = keys.iter().map(|&k| key(k)).collect();
        let rows = self
            .client
            .query("SELECT key, (value #>> '{}')::bigint FROM cache_get_many($1, $2)", &[&cache(c), &names])
            .unwrap();
        let found: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        names.iter().map(|n| found.get(n).copied()).collect()
    }

    fn read(&mut self, c: usize, k: usize) -> Option<i64> {
        self.client
            .query_one("SELECT (cache_get($1, $2) #>> '{}')::bigint", &[&cache(c), &key(k)])
            .unwrap()
            .get(0)
    }
}

/// A session on the hot standby (scripts/test's standby of the main cluster). It fills
/// its own cache with each key's version from table `ver`, which the primary's
/// writers bump in the statement that writes the key, sometimes in a transaction that
/// read the version many steps before (racing the primary's commits and their
/// replay). Every hit must be at least the version the standby showed just before
/// the read: a fill computed before a replayed invalidation must never survive it.
struct StandbyReader {
    client: Client,
    /// An open REPEATABLE READ transaction and the (cache, key, version) it read.
    open: Option<(usize, usize, i64)>,
    hits: u64,
    reads: u64,
    fills: u64,
}

impl StandbyReader {
    fn version(&mut self, c: usize, k: usize) -> i64 {
        self.client.query_one("SELECT count(*) FROM ver WHERE cache = $1 AND key = $2", &[&cache(c), &key(k)]).unwrap().get(0)
    }

    fn step(&mut self, rng: &mut Rng, at: &dyn Fn() -> String) {
        let (c, k) = (rng.below(CACHES), rng.below(KEYS));
        match (self.open, rng.below(4)) {
            (Some((c, k, v)), 0) => {
                // The fill of a transaction that read its version steps ago.
                trace(&format!("standby: late fill r{c}/k{k} = {v}"));
                self.client.execute("SELECT cache_set($1, $2, to_jsonb($3::bigint))", &[&cache(c), &key(k), &v]).unwrap();
                self.client.batch_execute("COMMIT").unwrap();
                self.open = None;
                self.fills += 1;
            }
            (Some(_), _) => {}
            (None, 0) => {
                self.client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").unwrap();
                let v = self.version(c, k);
                self.open = Some((c, k, v));
            }
            (None, 1) => {
                self.client
                    .execute("SELECT cache_set($1, $2, to_jsonb(count(*))) FROM ver WHERE cache = $1 AND key = $2", &[&cache(c), &key(k)])
                    .unwrap();
                self.fills += 1;
            }
            (None, _) => {
                let before = self.version(c, k);
                let hit: Option<i64> =
                    self.client.query_one("SELECT (cache_get($1, $2) #>> '{}')::bigint", &[&cache(c), &key(k)]).unwrap().get(0);
                trace(&format!("standby: get r{c}/k{k} = {hit:?}, version {before}"));
                self.reads += 1;
                if let Some(hit) = hit {
                    self.hits += 1;
                    assert!(hit >= before, "standby hit r{c}/k{k} = version {hit}, older than the {before} it showed, at {}", at());
                }
            }
        }
    }
}

/// Connects to the standby's copy of `db` once it has replayed it and the primary's
/// writes so far (`primary`).
fn standby_reader(primary: &mut Client, db: &str) -> StandbyReader {
    let start = std::time::Instant::now();
    let mut client = loop {
        match Client::connect(&format!("host=127.0.0.1 port={} user=postgres dbname={db}", common::port("PG_CACHE_TEST_STANDBY_PORT")), postgres::NoTls) {
            Ok(c) => break c,
            Err(e) => assert!(start.elapsed() < std::time::Duration::from_secs(30), "no database {db} on the standby: {e}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    wait_replay(primary, &mut client);
    StandbyReader { client, open: None, hits: 0, reads: 0, fills: 0 }
}

fn wait_replay(primary: &mut Client, standby: &mut Client) {
    let lsn: String = primary.query_one("SELECT pg_current_wal_insert_lsn()::text", &[]).unwrap().get(0);
    let start = std::time::Instant::now();
    while !standby.query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&lsn]).unwrap().get::<_, bool>(0) {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "the standby did not replay up to {lsn}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn is_request(op: &Op) -> bool {
    matches!(op, Op::Incr(..) | Op::Add(..) | Op::Pull(..) | Op::Touch(..) | Op::Has(..) | Op::GetOrLock(..))
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
    let (c, k) = (rng.below(CACHES), rng.below(KEYS));
    match rng.below(60) {
        0..=20 => Op::Set(c, k, *value),
        21..=27 => Op::Put(c, k, *value),
        28..=34 => Op::Delete(c, k),
        35..=38 => Op::Clear(c),
        39 => Op::ClearAll,
        40..=44 => Op::Incr(c, k),
        45..=48 => Op::Add(c, k, *value),
        49..=51 => Op::Pull(c, k),
        52..=54 => Op::Touch(c, k),
        55..=57 => Op::Has(c, k),
        _ => Op::GetOrLock(c, k),
    }
}

/// Whether session `who` would wait for a key lock another session holds.
fn would_wait(sessions: &[Session], who: usize, op: &Op) -> bool {
    op.locks().is_some_and(|key| sessions.iter().enumerate().any(|(i, s)| i != who && s.locks.iter().any(|(_, l)| *l == key)))
}

#[test]
fn random_sessions_agree_with_the_model() {
    let seed = env("PG_CACHE_RANDOM_SEED", 1);
    let steps = env("PG_CACHE_RANDOM_OPS", 20000);
    fresh_database("pg_cache_random");
    let mut primary = connect("pg_cache_random");
    primary
        .batch_execute("CREATE TABLE ver (cache text, key text); CREATE INDEX ON ver (cache, key)")
        .unwrap();
    let mut standby = standby_reader(&mut primary, "pg_cache_random");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut model = Model::default();
    let mut sessions: Vec<Session> = (0..SESSIONS)
        .map(|_| Session {
            client: connect("pg_cache_random"),
            in_txn: false,
            failed: false,
            start: 0,
            depth: 0,
            ops: Vec::new(),
            locks: Vec::new(),
        })
        .collect();
    let mut value = 0i64;
    let (mut reads, mut hits, mut commits, mut rollbacks) = (0u64, 0u64, 0u64, 0u64);
    for step in 1..=steps {
        if rng.below(8) == 0 {
            standby.step(&mut rng, &|| format!("seed {seed}, step {step}"));
        }
        let who = rng.below(SESSIONS);
        trace(&format!("step {step} session {who}"));
        // Drawn before the session is borrowed: a request that would wait on another
        // session's lock becomes a read.
        let mut next_write = random_write(&mut rng, &mut value);
        if would_wait(&sessions, who, &next_write) {
            next_write = Op::Has(next_write.locks().unwrap().0, next_write.locks().unwrap().1);
        }
        let s = &mut sessions[who];
        let at = || format!("seed {seed}, step {step}, session {who}");
        let mut check_read = |s: &mut Session, model: &Model, rng: &mut Rng| {
            let c = rng.below(CACHES);
            if rng.below(4) == 0 {
                // Three keys in one call.
                let keys: Vec<usize> = (0..3).map(|_| rng.below(KEYS)).collect();
                let expected: Vec<Option<i64>> = keys.iter().map(|&k| s.pending(c, k).unwrap_or_else(|| model.value(c, k))).collect();
                trace(&format!("get_many r{c}/{keys:?}, expect {expected:?}"));
                assert_eq!(s.read_many(c, &keys), expected, "get_many r{c}/{keys:?} at {}", at());
                reads += 3;
                hits += expected.iter().filter(|e| e.is_some()).count() as u64;
                return;
            }
            let k = rng.below(KEYS);
            let expected = s.pending(c, k).unwrap_or_else(|| model.value(c, k));
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
                _ if is_request(&next_write) => s.request(&mut model, &next_write, step, &at),
                _ => {
                    // One statement in its own transaction.
                    let op = next_write;
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
                s.locks.retain(|(l, _)| *l < d);
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
            30..=60 if is_request(&next_write) => s.request(&mut model, &next_write, step, &at),
            30..=60 => {
                let op = next_write;
                if let (Op::Delete(c, k), Some(existed)) = (&op, s.run(&op)) {
                    let expected = s.pending(*c, *k).unwrap_or_else(|| model.value(*c, *k));
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
                s.locks.retain(|(l, _)| *l < to);
                s.depth = to;
            }
            73..=76 if s.depth > 0 => {
                let to = 1 + rng.below(s.depth as usize) as u32;
                control(&mut s.client, &format!("RELEASE SAVEPOINT s{to}")).unwrap();
                for l in s.ops.iter_mut().map(|(l, _)| l).chain(s.locks.iter_mut().map(|(l, _)| l)) {
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
            assert_eq!(got, model.value(c, k), "final r{c}/k{k}, seed {seed}");
        }
    }
    // The standby, once it has replayed everything: each hit is the key's version now.
    if standby.open.is_some() {
        standby.client.batch_execute("ROLLBACK").unwrap();
    }
    wait_replay(&mut check, &mut standby.client);
    for c in 0..CACHES {
        for k in 0..KEYS {
            let now = standby.version(c, k);
            let hit: Option<i64> =
                standby.client.query_one("SELECT (cache_get($1, $2) #>> '{}')::bigint", &[&cache(c), &key(k)]).unwrap().get(0);
            assert!(hit.is_none_or(|h| h == now), "final standby r{c}/k{k} = {hit:?}, version {now}, seed {seed}");
        }
    }
    assert!(standby.hits > 0, "the standby reader never had a hit: its check tested nothing, seed {seed}");
    let stale: i64 = check.query_one("SELECT coalesce(sum(stale_sets), 0)::bigint FROM cache_stats()", &[]).unwrap().get(0);
    assert_eq!(stale as u64, model.stale, "stale fills dropped, seed {seed}");
    eprintln!(
        "random: seed {seed}, {steps} steps: {reads} reads checked ({hits} hits), {commits} commits, {rollbacks} rollbacks, \
         {} stale fills dropped, {} computed writes overtaken, {} entries at the end; standby: {} reads checked ({} hits), {} fills",
        model.stale,
        model.overtaken,
        model.committed.len(),
        standby.reads,
        standby.hits,
        standby.fills
    );
}
