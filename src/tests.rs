//! Tier 2: each SQL function and each bad input, inside one server. These run in a
//! transaction that is rolled back, so they see only the transaction's own view;
//! commit behaviour is tested over real connections in tests/client.

/// Counts every Rust allocation of the test build (rule 9's test reads it). The
/// backend is single-threaded, so a plain counter is exact.
pub struct CountingAllocator;

pub static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as the caller's contract for GlobalAlloc::alloc.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as the caller's contract for GlobalAlloc::dealloc.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as the caller's contract for GlobalAlloc::realloc.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn get(sql: &str) -> Option<String> {
        Spi::get_one::<String>(sql).expect("query runs")
    }

    /// Runs `sql` as a new role that is neither superuser nor in pgcache_admin.
    fn run_unprivileged(sql: &str) {
        Spi::run("CREATE ROLE cache_test_nobody").unwrap();
        Spi::run("SET ROLE cache_test_nobody").unwrap();
        Spi::run(sql).unwrap();
    }

    #[pg_test]
    fn set_then_get_reads_own_write() {
        Spi::run("SELECT cache_set('t', 'k', '{\"a\": 1}')").unwrap();
        assert_eq!(get("SELECT cache_get('t', 'k')::text").as_deref(), Some("{\"a\": 1}"));
    }

    #[pg_test]
    fn put_is_read_back_by_its_transaction_and_undone_with_its_savepoint() {
        Spi::run("SELECT cache_put('t', 'k', '\"put\"')").unwrap();
        assert_eq!(get("SELECT cache_get('t', 'k')::text").as_deref(), Some("\"put\""));
        Spi::run(
            "DO $$ BEGIN PERFORM cache_put('t', 'k', '\"inner\"'); RAISE EXCEPTION 'x'; \
             EXCEPTION WHEN OTHERS THEN NULL; END $$",
        )
        .unwrap();
        assert_eq!(get("SELECT cache_get('t', 'k')::text").as_deref(), Some("\"put\""));
        // The transaction's last write of a key is the one that counts.
        Spi::run("SELECT cache_set('t', 'k', '\"fill\"')").unwrap();
        assert_eq!(get("SELECT cache_get('t', 'k')::text").as_deref(), Some("\"fill\""));
        assert_eq!(Spi::get_one::<bool>("SELECT cache_delete('t', 'k')").unwrap(), Some(true));
    }

    fn int(sql: &str) -> Option<i64> {
        Spi::get_one::<i64>(sql).expect("query runs")
    }

    fn yes(sql: &str) -> bool {
        Spi::get_one::<bool>(sql).expect("query runs").expect("not null")
    }

    #[pg_test]
    fn add_stores_only_into_an_absent_key() {
        assert!(yes("SELECT cache_add('t', 'a', '1')"));
        assert!(!yes("SELECT cache_add('t', 'a', '2')"), "present now");
        assert_eq!(get("SELECT cache_get('t', 'a')::text").as_deref(), Some("1"));
        Spi::run("SELECT cache_delete('t', 'a')").unwrap();
        assert!(yes("SELECT cache_add('t', 'a', '3', ttl => '1 hour')"), "absent again after the delete");
        assert_eq!(get("SELECT cache_get('t', 'a')::text").as_deref(), Some("3"));
        Spi::run("SELECT cache_clear('t')").unwrap();
        assert!(yes("SELECT cache_add('t', 'a', '4')"), "absent after the clear");
    }

    #[pg_test]
    fn incr_and_decr_count_from_initial_and_return_what_commits() {
        assert_eq!(int("SELECT cache_incr('t', 'n')"), Some(1), "a missing key starts at 0");
        assert_eq!(int("SELECT cache_incr('t', 'n', 5)"), Some(6));
        assert_eq!(int("SELECT cache_decr('t', 'n', 2)"), Some(4));
        assert_eq!(int("SELECT cache_incr('t', 'n', delta => -10)"), Some(-6));
        assert_eq!(get("SELECT cache_get('t', 'n')::text").as_deref(), Some("-6"), "stored as a JSON number");
        assert_eq!(int("SELECT cache_incr('t', 'm', initial => 100)"), Some(101));
        assert_eq!(int("SELECT cache_incr('t', 'none', initial => NULL)"), None, "missing stays missing");
        assert!(!yes("SELECT cache_has('t', 'none')"));
        Spi::run("SELECT cache_put('t', 'p', '41')").unwrap();
        assert_eq!(int("SELECT cache_incr('t', 'p')"), Some(42), "counts on a put value");
        // A rolled-back savepoint takes its increment back.
        Spi::run("DO $$ BEGIN PERFORM cache_incr('t', 'p'); RAISE EXCEPTION 'x'; EXCEPTION WHEN OTHERS THEN NULL; END $$").unwrap();
        assert_eq!(int("SELECT cache_incr('t', 'p', 0)"), Some(42));
    }

    #[pg_test(error = "cache_incr: cache \"t\" holds a string under key \"s\", not an integer")]
    fn incr_of_a_string() {
        Spi::run("SELECT cache_put('t', 's', '\"x\"')").unwrap();
        Spi::run("SELECT cache_incr('t', 's')").unwrap();
    }

    #[pg_test(error = "cache_incr: cache \"t\" holds a number with a fraction under key \"f\", not an integer")]
    fn incr_of_a_fraction() {
        Spi::run("SELECT cache_put('t', 'f', '1.5')").unwrap();
        Spi::run("SELECT cache_incr('t', 'f')").unwrap();
    }

    #[pg_test(error = "cache_incr: 9223372036854775807 + 1 is out of range for bigint")]
    fn incr_past_bigint() {
        Spi::run("SELECT cache_put('t', 'big', '9223372036854775807')").unwrap();
        Spi::run("SELECT cache_incr('t', 'big')").unwrap();
    }

    #[pg_test(error = "cache_decr: the value under key \"huge\" is out of range for bigint")]
    fn decr_of_a_number_past_bigint() {
        Spi::run("SELECT cache_put('t', 'huge', '1e30')").unwrap();
        Spi::run("SELECT cache_decr('t', 'huge')").unwrap();
    }

    #[pg_test]
    fn a_failed_incr_leaves_the_value_as_it_was() {
        Spi::run("SELECT cache_put('t', 'big', '9223372036854775800')").unwrap();
        assert_eq!(error_of("SELECT cache_incr('t', 'big', 100)").0, "22003");
        assert_eq!(error_of("SELECT cache_decr('t', 'big', '-9223372036854775808'::bigint)").0, "22003");
        assert_eq!(error_of("SELECT cache_incr('t', 'big', NULL)").0, "22004");
        assert_eq!(get("SELECT cache_get('t', 'big')::text").as_deref(), Some("9223372036854775800"));
    }

    #[pg_test]
    fn pull_returns_the_value_once() {
        Spi::run("SELECT cache_put('t', 'job', '{\"id\": 7}')").unwrap();
        assert_eq!(get("SELECT cache_pull('t', 'job')::text").as_deref(), Some("{\"id\": 7}"));
        assert_eq!(get("SELECT cache_pull('t', 'job')::text"), None, "gone for this transaction");
        assert_eq!(get("SELECT cache_pull('t', 'job', '\"none\"')::text").as_deref(), Some("\"none\""));
        assert_eq!(get("SELECT cache_get('t', 'job')::text"), None);
    }

    #[pg_test]
    fn has_sees_own_writes_deletes_and_clears() {
        assert!(!yes("SELECT cache_has('t', 'k')"));
        Spi::run("SELECT cache_set('t', 'k', 'null')").unwrap();
        assert!(yes("SELECT cache_has('t', 'k')"), "a JSON null is a value");
        Spi::run("SELECT cache_delete('t', 'k')").unwrap();
        assert!(!yes("SELECT cache_has('t', 'k')"));
        Spi::run("SELECT cache_set('t', 'k', '1'), cache_clear('t')").unwrap();
        assert!(!yes("SELECT cache_has('t', 'k')"));
        assert!(!yes("SELECT cache_has('never_declared', 'k')"));
    }

    #[pg_test]
    fn touch_keeps_the_value_and_reports_whether_there_was_one() {
        assert!(!yes("SELECT cache_touch('t', 'k', '1 hour')"), "nothing to touch");
        Spi::run("SELECT cache_set('t', 'k', '[1, 2]')").unwrap();
        assert!(yes("SELECT cache_touch('t', 'k', '1 hour')"));
        assert_eq!(get("SELECT cache_get('t', 'k')::text").as_deref(), Some("[1, 2]"));
        Spi::run("SELECT cache_delete('t', 'k')").unwrap();
        assert!(!yes("SELECT cache_touch('t', 'k', '1 hour')"));
        assert_eq!(error_of("SELECT cache_touch('t', 'k', NULL)").0, "22004");
        assert_eq!(error_of("SELECT cache_touch('t', 'k', NULL, NULL)").0, "22004");
        assert_eq!(error_of("SELECT cache_touch('t', 'k', '-1 hour')").0, "22023");
    }

    #[pg_test]
    fn get_or_lock_takes_the_keys_lock_on_a_miss_only() {
        let locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 28771 AND pid = pg_backend_pid()";
        assert_eq!(get("SELECT cache_get_or_lock('t', 'k')::text"), None);
        assert_eq!(int(locks), Some(1), "the key's lock, shown in pg_locks");
        Spi::run("SELECT cache_set('t', 'k', '\"computed\"')").unwrap();
        assert_eq!(get("SELECT cache_get_or_lock('t', 'k')::text").as_deref(), Some("\"computed\""));
        assert_eq!(get("SELECT cache_get_or_lock('t', 'other')::text"), None);
        assert_eq!(int(locks), Some(2));
        assert_eq!(int("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (1, 2)"), Some(0), "not an advisory lock of the user's");
    }

    #[pg_test]
    fn expires_at_sets_an_absolute_expiry_and_infinity_never_expires() {
        Spi::run("SELECT cache_create('timed', duration => '1 minute')").unwrap();
        assert_eq!(get("SELECT cache_expires_at('timed', 'k')::text"), None, "missing");
        Spi::run("SELECT cache_set('timed', 'k', '1', expires_at => 'infinity')").unwrap();
        assert_eq!(get("SELECT cache_expires_at('timed', 'k')::text").as_deref(), Some("infinity"), "never, despite the duration");
        Spi::run("SELECT cache_put('timed', 'k', '2')").unwrap();
        assert!(yes("SELECT cache_expires_at('timed', 'k') BETWEEN now() + '59 seconds' AND clock_timestamp() + '1 minute'"), "the cache's duration");
        Spi::run("SELECT cache_put('timed', 'k', '3', expires_at => '2999-01-01 00:00:00+00')").unwrap();
        assert!(yes("SELECT cache_expires_at('timed', 'k') = '2999-01-01 00:00:00+00'"));
        assert!(yes("SELECT cache_touch('timed', 'k', expires_at => 'infinity')"));
        assert_eq!(get("SELECT cache_expires_at('timed', 'k')::text").as_deref(), Some("infinity"));
        assert_eq!(get("SELECT cache_get('timed', 'k')::text").as_deref(), Some("3"), "a touch keeps the value");
        assert!(yes("SELECT cache_add('timed', 'a', '1', ttl => '1 hour')"));
        assert!(yes("SELECT cache_expires_at('timed', 'a') > now() + '59 minutes'"));
        assert_eq!(int("SELECT cache_incr('timed', 'k', expires_at => '2999-01-02 00:00:00+00')"), Some(4));
        assert!(yes("SELECT cache_expires_at('timed', 'k') = '2999-01-02 00:00:00+00'"));
    }

    /// The transaction's own write given a time that then passes holds nothing for
    /// it either (Tryton's MemoryCache test sets and reads after its duration in
    /// one transaction); one given a ttl counts from the commit.
    #[pg_test]
    fn an_own_write_past_its_expiry_time_is_a_miss() {
        Spi::run("SELECT cache_set('own_t', 'at', '1', expires_at => clock_timestamp() + interval '200 milliseconds')").unwrap();
        Spi::run("SELECT cache_set('own_t', 'ttl', '1', ttl => '200 milliseconds')").unwrap();
        assert_eq!(get("SELECT cache_get('own_t', 'at')::text").as_deref(), Some("1"));
        Spi::run("SELECT pg_sleep(0.3)").unwrap();
        assert_eq!(get("SELECT cache_get('own_t', 'at')::text"), None);
        assert!(!yes("SELECT cache_has('own_t', 'at')"));
        assert_eq!(get("SELECT cache_expires_at('own_t', 'at')::text"), None);
        assert_eq!(get("SELECT value::text FROM cache_get_many('own_t', ARRAY['at', 'ttl'])").as_deref(), Some("1"), "only the ttl one");
        assert_eq!(get("SELECT cache_get('own_t', 'ttl')::text").as_deref(), Some("1"));
        // What builds on the key's value finds nothing there either.
        assert!(yes("SELECT cache_add('own_t', 'at', '7')"), "add: the key holds nothing");
        Spi::run("SELECT cache_put('own_t', 'n', '5', expires_at => clock_timestamp() + interval '100 milliseconds')").unwrap();
        Spi::run("SELECT pg_sleep(0.2)").unwrap();
        assert_eq!(int("SELECT cache_incr('own_t', 'n')"), Some(1), "incr starts from the initial value");
        Spi::run("SELECT cache_put('own_t', 'p', '5', expires_at => clock_timestamp() + interval '100 milliseconds')").unwrap();
        Spi::run("SELECT pg_sleep(0.2)").unwrap();
        assert!(!yes("SELECT cache_touch('own_t', 'p', ttl => '1 hour')"), "touch: nothing to touch");
        assert_eq!(get("SELECT cache_pull('own_t', 'p')::text"), None, "pull: nothing to pull");
    }

    #[pg_test]
    fn bad_expiries_are_refused() {
        assert_eq!(error_of("SELECT cache_set('t', 'k', '1', ttl => '1 hour', expires_at => 'infinity')").0, "22023");
        assert_eq!(error_of("SELECT cache_put('t', 'k', '1', expires_at => now() - interval '1 second')").0, "22023");
        assert_eq!(error_of("SELECT cache_add('t', 'k', '1', expires_at => '-infinity')").0, "22023");
        assert_eq!(error_of("SELECT cache_touch('t', 'k')").0, "22004");
        assert_eq!(get("SELECT cache_get('t', 'k')::text"), None, "nothing written");
    }

    #[pg_test]
    fn many_keys_in_one_call_see_own_writes() {
        Spi::run("SELECT cache_set_many('m', '{\"a\": 1, \"b\": [2], \"c\": {\"x\": null}}')").unwrap();
        Spi::run("SELECT cache_put_many('m', '{\"d\": \"four\"}', ttl => '1 hour')").unwrap();
        let rows = get(
            "SELECT string_agg(key || '=' || value::text, ' ' ORDER BY ord) FROM \
             cache_get_many('m', ARRAY['c', 'missing', 'a', 'b', 'a', 'd']) WITH ORDINALITY AS t(key, value, ord)",
        );
        assert_eq!(rows.as_deref(), Some("c={\"x\": null} a=1 b=[2] d=\"four\""), "found keys, in the order asked, once each");
        assert_eq!(int("SELECT cache_delete_many('m', ARRAY['a', 'missing', 'd', 'a'])::bigint"), Some(2));
        assert_eq!(get("SELECT string_agg(key, ',') FROM cache_get_many('m', ARRAY['a', 'b', 'd'])").as_deref(), Some("b"));
        assert_eq!(int("SELECT count(*) FROM cache_get_many('m', '{}')"), Some(0));
        assert_eq!(int("SELECT count(*) FROM cache_get_many('never_declared', ARRAY['a'])"), Some(0));
        Spi::run("SELECT cache_set_many('m', '{}')").unwrap();
    }

    #[pg_test]
    fn bad_input_to_the_many_forms_leaves_the_write_set_alone() {
        Spi::run("SELECT cache_set('m', 'keep', '1')").unwrap();
        let cases = [
            ("SELECT cache_get_many('m', NULL)", "22004"),
            ("SELECT cache_get_many('m', ARRAY['a', NULL])", "22004"),
            ("SELECT cache_delete_many('m', ARRAY[NULL::text])", "22004"),
            ("SELECT cache_get_many('m', ARRAY(SELECT g::text FROM generate_series(1, 10001) g))", "54000"),
            ("SELECT cache_set_many('m', NULL)", "22004"),
            ("SELECT cache_set_many('m', '[1, 2]')", "22023"),
            ("SELECT cache_put_many('m', '\"x\"')", "22023"),
            ("SELECT cache_set_many('m', jsonb_build_object('ok', 1, repeat('k', 1025), 2))", "54000"),
            ("SELECT cache_set_many('m', '{\"keep\": 2}', ttl => '1 hour', expires_at => 'infinity')", "22023"),
        ];
        for (sql, want) in cases {
            assert_eq!(error_of(sql).0, want, "{sql}");
        }
        assert_eq!(get("SELECT string_agg(key || '=' || value::text, ',') FROM cache_get_many('m', ARRAY['keep', 'ok'])").as_deref(), Some("keep=1"));
    }

    #[pg_test]
    fn tag_and_prefix_invalidations_are_seen_by_the_transaction_at_once() {
        Spi::run("SELECT cache_set('p', 'a', '1', tags => ARRAY['partner', 'lang'])").unwrap();
        Spi::run("SELECT cache_put('p', 'b', '2', tags => ARRAY['lang'])").unwrap();
        Spi::run("SELECT cache_set_many('p', '{\"user:1:name\": 3, \"user:10:name\": 4, \"users\": 5}', tags => ARRAY['u'])").unwrap();
        Spi::run("SELECT cache_invalidate_tags('p', ARRAY['partner'])").unwrap();
        assert_eq!(get("SELECT cache_get('p', 'a')::text"), None, "a carries partner");
        assert_eq!(get("SELECT cache_get('p', 'b')::text").as_deref(), Some("2"));
        let keys = "SELECT string_agg(key, ',' ORDER BY key COLLATE \"C\") FROM cache_get_many('p', ARRAY['user:1:name', 'user:10:name', 'users'])";
        assert_eq!(get(keys).as_deref(), Some("user:10:name,user:1:name,users"));
        // (Savepoints are the isolation specs' tags and prefixes: SPI cannot make one.)
        Spi::run("SELECT cache_delete_prefix('p', 'user:1:')").unwrap();
        assert_eq!(get(keys).as_deref(), Some("user:10:name,users"));
        assert!(!Spi::get_one::<bool>("SELECT cache_has('p', 'user:1:name')").unwrap().unwrap());
        // Written after the invalidation: seen.
        Spi::run("SELECT cache_set('p', 'user:1:name', '6', tags => ARRAY['partner'])").unwrap();
        assert_eq!(get("SELECT cache_get('p', 'user:1:name')::text").as_deref(), Some("6"));
        Spi::run("SELECT cache_invalidate_tags('p', ARRAY['u', 'nobody'])").unwrap();
        assert_eq!(get(keys).as_deref(), Some("user:1:name"), "written again without u");
        // An increment keeps the tags of what it increments.
        Spi::run("SELECT cache_set('p', 'n', '1', tags => ARRAY['counter'])").unwrap();
        assert_eq!(int("SELECT cache_incr('p', 'n')"), Some(2));
        Spi::run("SELECT cache_invalidate_tags('p', ARRAY['counter'])").unwrap();
        assert_eq!(get("SELECT cache_get('p', 'n')::text"), None);
        Spi::run("SELECT cache_invalidate_tags('p', '{}')").unwrap();
    }

    #[pg_test]
    fn bad_tags_and_prefixes_leave_the_write_set_alone() {
        Spi::run("SELECT cache_set('p', 'keep', '1', tags => ARRAY['t'])").unwrap();
        let cases = [
            ("SELECT cache_set('p', 'keep', '2', tags => ARRAY['a', NULL])", "22004"),
            ("SELECT cache_put_bytes('p', 'keep', '\\x00', tags => ARRAY[NULL::text])", "22004"),
            ("SELECT cache_set('p', 'keep', '2', tags => ARRAY(SELECT g::text FROM generate_series(1, 9) g))", "54000"),
            ("SELECT cache_set('p', 'keep', '2', tags => ARRAY(SELECT g::text FROM generate_series(1, 9) g) || NULL::text)", "22004"),
            ("SELECT cache_set_many('p', '{\"keep\": 2}', tags => ARRAY(SELECT g::text FROM generate_series(1, 9) g))", "54000"),
            ("SELECT cache_invalidate_tags('p', NULL)", "22004"),
            ("SELECT cache_invalidate_tags('p', ARRAY['t', NULL])", "22004"),
            ("SELECT cache_invalidate_tags('p', ARRAY(SELECT g::text FROM generate_series(1, 10001) g))", "54000"),
            ("SELECT cache_invalidate_tags(NULL, ARRAY['t'])", "22004"),
            ("SELECT cache_delete_prefix('p', NULL)", "22004"),
            ("SELECT cache_delete_prefix('', 'k')", "22023"),
        ];
        for (sql, want) in cases {
            assert_eq!(error_of(sql).0, want, "{sql}");
        }
        // Eight distinct tags are allowed, duplicates counted once.
        Spi::run("SELECT cache_set('p', 'eight', '1', tags => ARRAY['1','2','3','4','5','6','7','8','8'])").unwrap();
        assert_eq!(get("SELECT cache_get('p', 'keep')::text").as_deref(), Some("1"));
    }

    #[pg_test]
    fn a_bound_table_invalidates_its_rows_keys_in_the_transaction() {
        Spi::run("CREATE TABLE bound_t (id int PRIMARY KEY, v int)").unwrap();
        Spi::run("INSERT INTO bound_t VALUES (1, 1), (2, 2)").unwrap();
        Spi::run("SELECT cache_create('bound', context => false)").unwrap();
        Spi::run("SELECT cache_bind('bound', 'bound_t', ARRAY['id'], key_prefix => 'row:')").unwrap();
        Spi::run("SELECT cache_set('bound', 'row:1', '1'), cache_set('bound', 'row:2', '2')").unwrap();
        Spi::run("UPDATE bound_t SET v = 10 WHERE id = 1").unwrap();
        assert_eq!(get("SELECT cache_get('bound', 'row:1')::text"), None);
        assert_eq!(get("SELECT cache_get('bound', 'row:2')::text").as_deref(), Some("2"));
        assert_eq!(error_of("SELECT cache_bind('bound', 'bound_t', ARRAY['id'])").0, "42710");
        assert_eq!(error_of("SELECT cache_bind('other', 'bound_t', ARRAY['id'], key_prefix => NULL)").0, "22004");
        assert_eq!(error_of("SELECT cache_unbind('bound', NULL)").0, "22004");
        assert!(Spi::get_one::<bool>("SELECT cache_unbind('bound', 'bound_t')").unwrap().unwrap());
        Spi::run("UPDATE bound_t SET v = 20 WHERE id = 2").unwrap();
        assert_eq!(get("SELECT cache_get('bound', 'row:2')::text").as_deref(), Some("2"), "unbound");
    }

    #[pg_test(error = "value must not be NULL")]
    fn put_of_a_null_value() {
        Spi::run("SELECT cache_put('t', 'k', NULL)").unwrap();
    }

    #[pg_test(error = "ttl must be a positive interval, not -00:00:01")]
    fn put_with_a_negative_ttl() {
        Spi::run("SELECT cache_put('t', 'k', '1', '-1 second')").unwrap();
    }

    #[pg_test]
    fn get_returns_default_when_missing() {
        assert_eq!(get("SELECT cache_get('t', 'nope', '\"dflt\"')::text").as_deref(), Some("\"dflt\""));
        assert_eq!(get("SELECT cache_get('t', 'nope')::text"), None);
    }

    #[pg_test]
    fn delete_reports_presence_and_hides_the_key() {
        Spi::run("SELECT cache_set('t', 'k', '1')").unwrap();
        assert_eq!(Spi::get_one::<bool>("SELECT cache_delete('t', 'k')").unwrap(), Some(true));
        assert_eq!(Spi::get_one::<bool>("SELECT cache_delete('t', 'k')").unwrap(), Some(false));
        assert_eq!(get("SELECT cache_get('t', 'k')::text"), None);
    }

    #[pg_test]
    fn clear_gives_a_private_empty_view() {
        Spi::run("SELECT cache_set('t', 'a', '1'), cache_set('u', 'a', '2')").unwrap();
        Spi::run("SELECT cache_clear('t')").unwrap();
        assert_eq!(get("SELECT cache_get('t', 'a')::text"), None);
        assert_eq!(get("SELECT cache_get('u', 'a')::text").as_deref(), Some("2"));
        Spi::run("SELECT cache_set('t', 'b', '3')").unwrap();
        assert_eq!(get("SELECT cache_get('t', 'b')::text").as_deref(), Some("3"));
        Spi::run("SELECT cache_clear_all()").unwrap();
        assert_eq!(get("SELECT cache_get('u', 'a')::text"), None);
        assert_eq!(get("SELECT cache_get('t', 'b')::text"), None);
    }

    #[pg_test]
    fn savepoint_rollback_drops_later_writes() {
        Spi::run("SELECT cache_set('t', 'k', '\"outer\"')").unwrap();
        Spi::run(
            "DO $$ BEGIN PERFORM cache_set('t', 'k', '\"inner\"'); RAISE EXCEPTION 'x'; \
             EXCEPTION WHEN OTHERS THEN NULL; END $$",
        )
        .unwrap();
        assert_eq!(get("SELECT cache_get('t', 'k')::text").as_deref(), Some("\"outer\""));
    }

    #[pg_test]
    fn create_records_the_declaration() {
        Spi::run("SELECT cache_create('decl', size_limit => 5, duration => '1 hour', context => false, context_ignored_keys => '{app.lang}')").unwrap();
        let row = Spi::get_three::<i32, bool, String>(
            "SELECT size_limit, context, array_to_string(context_ignored_keys, ',') FROM pg_cache_declarations WHERE cache = 'decl'",
        )
        .unwrap();
        assert_eq!(row, (Some(5), Some(false), Some("app.lang".into())));
        // Declaring again updates the row.
        Spi::run("SELECT cache_create('decl', size_limit => 7)").unwrap();
        assert_eq!(Spi::get_one::<i32>("SELECT size_limit FROM pg_cache_declarations WHERE cache = 'decl'").unwrap(), Some(7));
    }

    #[pg_test]
    fn stats_lists_caches_of_this_database() {
        Spi::run("SELECT cache_set('stats_probe', 'other', '1')").unwrap();
        Spi::run("SELECT cache_get('stats_probe', 'k')").unwrap();
        let misses = Spi::get_one::<i64>("SELECT misses FROM cache_stats() WHERE cache = 'stats_probe'").unwrap();
        assert!(misses >= Some(1));
        assert_eq!(Spi::get_one::<i64>("SELECT size_limit FROM cache_stats() WHERE cache = 'stats_probe'").unwrap(), Some(1024));
    }

    #[pg_test]
    fn a_read_of_a_name_nobody_wrote_or_declared_takes_no_slot() {
        // A flood of reads of new names must not fill the directory.
        let defaults = Spi::get_one::<i64>("SELECT count(*) FROM generate_series(1, 200) g WHERE cache_get('nobody_' || g, 'k', '7') = '7'").unwrap();
        assert_eq!(defaults, Some(200), "each read is a miss with its default");
        let slots = "SELECT count(*) FROM cache_stats() WHERE cache LIKE 'nobody_%'";
        assert_eq!(Spi::get_one::<i64>(slots).unwrap(), Some(0));
        // A declared cache gets its slot on a read (its misses are counted there),
        // and this transaction's own writes are read back even before any slot.
        Spi::run("SELECT cache_create('nobody_declared')").unwrap();
        Spi::run("SELECT cache_get('nobody_declared', 'k')").unwrap();
        assert_eq!(Spi::get_one::<i64>(slots).unwrap(), Some(1));
        Spi::run("SELECT cache_set('nobody_1', 'k', '3')").unwrap();
        assert_eq!(Spi::get_one::<i64>("SELECT (cache_get('nobody_1', 'k'))::text::int8").unwrap(), Some(3));
    }

    #[pg_test]
    fn drop_of_current_database_is_allowed_for_superusers() {
        Spi::run("SELECT cache_drop(current_database())").unwrap();
    }

    #[pg_test]
    fn context_separates_settings_values() {
        Spi::run("SET pg_cache.context_settings = 'app.lang'").unwrap();
        Spi::run("SET app.lang = 'en'").unwrap();
        Spi::run("SELECT cache_set('ctx', 'k', '\"en\"')").unwrap();
        Spi::run("SET app.lang = 'fr'").unwrap();
        assert_eq!(get("SELECT cache_get('ctx', 'k')::text"), None);
        Spi::run("SET app.lang = 'en'").unwrap();
        assert_eq!(get("SELECT cache_get('ctx', 'k')::text").as_deref(), Some("\"en\""));
    }

    // ---- bad input -------------------------------------------------------------------

    #[pg_test(error = "cache name must not be NULL")]
    fn null_cache_name() {
        Spi::run("SELECT cache_get(NULL, 'k')").unwrap();
    }

    #[pg_test(error = "key must not be NULL")]
    fn null_key() {
        Spi::run("SELECT cache_set('t', NULL, '1')").unwrap();
    }

    #[pg_test(error = "value must not be NULL")]
    fn null_value() {
        Spi::run("SELECT cache_set('t', 'k', NULL)").unwrap();
    }

    #[pg_test(error = "cache name must not be empty")]
    fn empty_cache_name() {
        Spi::run("SELECT cache_set('', 'k', '1')").unwrap();
    }

    #[pg_test(error = "cache name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is 64 bytes long, more than 63")]
    fn long_cache_name() {
        Spi::run("SELECT cache_clear(repeat('a', 64))").unwrap();
    }

    #[pg_test(error = "key is 1025 bytes long, more than pg_cache.max_key_size (1024 bytes)")]
    fn long_key() {
        Spi::run("SELECT cache_set('t', repeat('k', 1025), '1')").unwrap();
    }

    #[pg_test(error = "value is 2000008 bytes, more than pg_cache.max_value_size (1048576 bytes)")]
    fn large_value() {
        Spi::run("SELECT cache_set('t', 'k', to_jsonb(repeat('v', 2000000)))").unwrap();
    }

    #[pg_test(error = "ttl must be a positive interval, not 00:00:00")]
    fn zero_ttl() {
        Spi::run("SELECT cache_set('t', 'k', '1', '0 seconds')").unwrap();
    }

    #[pg_test(error = "ttl must be a positive interval, not -00:00:01")]
    fn negative_ttl() {
        Spi::run("SELECT cache_set('t', 'k', '1', '-1 second')").unwrap();
    }

    #[pg_test(error = "duration must be a positive interval, not 00:00:00")]
    fn zero_duration() {
        Spi::run("SELECT cache_create('t', duration => '0')").unwrap();
    }

    #[pg_test(error = "size_limit must be at least 1, not 0")]
    fn zero_size_limit() {
        Spi::run("SELECT cache_create('t', size_limit => 0)").unwrap();
    }

    #[pg_test(error = "context must not be NULL")]
    fn null_context() {
        Spi::run("SELECT cache_create('t', context => NULL)").unwrap();
    }

    #[pg_test(error = "dbname must not be NULL")]
    fn null_dbname() {
        Spi::run("SELECT cache_drop(NULL)").unwrap();
    }

    #[pg_test(error = "database \"no_such_db\" does not exist")]
    fn unknown_dbname() {
        Spi::run("SELECT cache_drop('no_such_db')").unwrap();
    }

    #[pg_test(error = "permission denied to drop the caches of a database")]
    fn drop_needs_privilege() {
        run_unprivileged("SELECT cache_drop(current_database())");
    }

    #[pg_test]
    fn bad_input_leaves_pending_writes_alone() {
        Spi::run("SELECT cache_set('t', 'k', '\"kept\"')").unwrap();
        let failed = std::panic::catch_unwind(|| {
            pgrx::PgTryBuilder::new(|| Spi::run("SELECT cache_set('t', 'k', '1', '-1 day')").is_ok())
                .catch_others(|_| false)
                .execute()
        });
        assert!(matches!(failed, Ok(false)));
        assert_eq!(get("SELECT cache_get('t', 'k')::text").as_deref(), Some("\"kept\""));
    }

    #[pg_test]
    fn memory_reports_the_region_and_the_caches() {
        Spi::run("SELECT cache_memory()").unwrap();
        let total = Spi::get_one::<i64>("SELECT total_bytes FROM cache_memory()").unwrap();
        assert_eq!(total, Some(16 << 20), "pg_cache.memory of the test server");
        let rows = Spi::get_one::<i64>("SELECT count(*) FROM cache_memory() WHERE used_bytes <= total_bytes AND entries >= 0 AND databases >= 0").unwrap();
        assert_eq!(rows, Some(1));
    }

    #[pg_test(error = "permission denied to read pg_cache memory use")]
    fn memory_needs_privilege() {
        run_unprivileged("SELECT cache_memory()");
    }

    #[pg_test]
    fn stats_reset_zeroes_the_counters() {
        Spi::run("SELECT cache_set('reset_probe', 'other', '1')").unwrap();
        Spi::run("SELECT cache_get('reset_probe', 'k')").unwrap();
        let misses = "SELECT misses FROM cache_stats() WHERE cache = 'reset_probe'";
        assert_eq!(Spi::get_one::<i64>(misses).unwrap(), Some(1));
        Spi::run("SELECT cache_stats_reset()").unwrap();
        assert_eq!(Spi::get_one::<i64>(misses).unwrap(), Some(0));
    }

    #[pg_test(error = "permission denied to reset pg_cache statistics")]
    fn stats_reset_needs_privilege() {
        run_unprivileged("SELECT cache_stats_reset()");
    }

    #[pg_test]
    fn last_clear_counts_committed_clears_only() {
        // Other tests may have dropped this database's caches (a drop counts as a
        // clear), but not since this transaction began; its own clear is pending.
        let before = get("SELECT cache_last_clear('pending_clear')::text");
        Spi::run("SELECT cache_clear('pending_clear')").unwrap();
        assert_eq!(get("SELECT cache_last_clear('pending_clear')::text"), before);
        assert_eq!(Spi::get_one::<bool>("SELECT cache_sync_since('pending_clear', now())").unwrap(), Some(false));
    }

    #[pg_test(error = "cache name must not be NULL")]
    fn last_clear_null_name() {
        Spi::run("SELECT cache_last_clear(NULL)").unwrap();
    }

    #[pg_test(error = "since must not be NULL")]
    fn sync_since_null_since() {
        Spi::run("SELECT cache_sync_since('c', NULL)").unwrap();
    }

    /// The five characters of an error code, as clients see it (MAKE_SQLSTATE packs
    /// each in six bits, from '0').
    fn sqlstate(code: pg_sys::errcodes::PgSqlErrorCode) -> String {
        (0..5).map(|i| ((((code as i32) >> (6 * i)) & 0x3F) as u8 + b'0') as char).collect()
    }

    /// The SQLSTATE and message of the ERROR `sql` raises (the transaction goes on:
    /// PgTryBuilder rolls back to a subtransaction).
    fn error_of(sql: &str) -> (String, String) {
        use pgrx::pg_sys::panic::CaughtError;
        pgrx::PgTryBuilder::new(|| {
            Spi::run(sql).unwrap();
            panic!("{sql} succeeded")
        })
        .catch_others(|e| match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => {
                (sqlstate(r.sql_error_code()), r.message().to_string())
            }
        })
        .execute()
    }

    #[pg_test]
    fn a_misspelt_pg_cache_setting_is_an_error_not_a_placeholder() {
        let (code, message) = error_of("SET pg_cache.memroy = '1GB'");
        assert_eq!(code, "42602", "{message}");
        assert_eq!(message, "invalid configuration parameter name \"pg_cache.memroy\"");
        let (code, _) = error_of("SELECT set_config('pg_cache.no_such_setting', 'x', false)");
        assert_eq!(code, "42602");
        // Real settings still work.
        Spi::run("SET pg_cache.context_settings = 'app.lang'").unwrap();
    }

    #[pg_test(error = "duration must be at most 10000 years, not 300000 years")]
    fn unrepresentable_duration() {
        Spi::run("SELECT cache_create('t', duration => '300000 years')").unwrap();
    }

    #[pg_test(error = "ttl must be at most 10000 years, not 10001 years")]
    fn unrepresentable_ttl() {
        Spi::run("SELECT cache_set('t', 'k', '1', '10001 years')").unwrap();
    }

    #[pg_test]
    fn a_year_is_the_same_length_when_declared_and_when_read_back() {
        Spi::run("SELECT cache_create('yearly', duration => '1 year 1 month')").unwrap();
        let read_back = crate::registry::declarations::read("yearly").expect("declared").duration_us;
        let epoch = Spi::get_one::<f64>("SELECT extract(epoch FROM interval '1 year 1 month')::float8").unwrap().unwrap();
        assert_eq!(read_back, (epoch * 1e6) as i64, "as extract(epoch FROM interval) counts it");
        // The transaction's own declaration (what cache_create checked) says the same.
        let declared = crate::pending::declared("yearly").expect("pending").duration_us;
        assert_eq!(declared, read_back);
    }

    #[pg_test]
    fn a_value_over_what_one_entry_can_hold_is_refused_at_the_call() {
        // max_value_size allows it; the store (16 MB here: an entry may take half the
        // blocks) does not, and says its real limit.
        Spi::run("SET pg_cache.max_value_size = '64MB'").unwrap();
        Spi::run("SELECT cache_set('t', 'k', '\"kept\"')").unwrap();
        let (code, message) = error_of("SELECT cache_set('t', 'k', to_jsonb(repeat('v', 9000000)))");
        assert_eq!(code, "54000");
        let limit = crate::shmem::store().max_payload();
        // Half of what 16 MB leaves for blocks once 4,096 cache slots took theirs.
        assert!(limit < 8 << 20 && limit > 5 << 20, "about half of 16 MB: {limit}");
        assert!(message.ends_with(&format!("more than the {limit} bytes one entry can hold")), "{message}");
        assert_eq!(get("SELECT cache_get('t', 'k')::text").as_deref(), Some("\"kept\""), "the cache is as it was");
    }

    #[pg_test(error = "cache name \"*\" is reserved")]
    fn the_name_of_clear_all_notifications_is_reserved() {
        Spi::run("SELECT cache_set('*', 'k', '1')").unwrap();
    }

    #[pg_test(error = "readers names 9 roles, more than 8")]
    fn too_many_readers() {
        Spi::run("DO $$ BEGIN FOR i IN 1..9 LOOP EXECUTE format('CREATE ROLE cache_reader_%s', i); END LOOP; END $$").unwrap();
        Spi::run("SELECT cache_create('t', readers => ARRAY(SELECT 'cache_reader_' || g FROM generate_series(1, 9) g))").unwrap();
    }

    #[pg_test(error = "role \"no_such_role_here\" does not exist")]
    fn unknown_reader() {
        Spi::run("SELECT cache_create('t', readers => '{no_such_role_here}')").unwrap();
    }

    #[pg_test(error = "permission denied to redeclare cache \"owned\"")]
    fn redeclaring_needs_the_owners_privileges() {
        Spi::run("SELECT cache_create('owned')").unwrap();
        run_unprivileged("SELECT cache_create('owned', size_limit => 1)");
    }

    #[pg_test(error = "permission denied to read cache \"secret\"")]
    fn a_restricted_read_is_refused() {
        Spi::run("SELECT cache_create('secret', readers => '{}')").unwrap();
        run_unprivileged("SELECT cache_get('secret', 'k')");
    }

    #[pg_test(error = "permission denied to write cache \"guarded\"")]
    fn a_restricted_write_is_refused() {
        Spi::run("SELECT cache_create('guarded', writers => '{}')").unwrap();
        run_unprivileged("SELECT cache_set('guarded', 'k', '1')");
    }

    #[pg_test]
    fn a_declaration_records_its_owner_and_roles() {
        Spi::run("CREATE ROLE cache_test_reader").unwrap();
        Spi::run("SELECT cache_create('roles', readers => '{cache_test_reader}', writers => '{}')").unwrap();
        let row = Spi::get_three::<String, String, String>(
            "SELECT owner::text, readers::text, writers::text FROM pg_cache_declarations WHERE cache = 'roles'",
        )
        .unwrap();
        let me = get("SELECT current_user::text");
        assert_eq!(row, (me, Some("{cache_test_reader}".into()), Some("{}".into())));
        // Open caches stay open to everyone, and undeclared ones too.
        run_unprivileged("SELECT cache_set('open_one', 'k', '1'), cache_get('open_one', 'k')");
    }

    #[pg_test(error = "max_bytes must be at least 1, not 0")]
    fn zero_max_bytes() {
        Spi::run("SELECT cache_create('t', max_bytes => 0)").unwrap();
    }

    #[pg_test(error = "an entry of this value takes 256 bytes, more than the cache's max_bytes (200)")]
    fn a_value_over_the_caches_byte_limit() {
        Spi::run("SELECT cache_create('small_cache', max_bytes => 200, context => false)").unwrap();
        Spi::run("SELECT cache_set('small_cache', 'k', to_jsonb(repeat('v', 100)))").unwrap();
    }

    /// Rule 9: a transaction that never called pg_cache costs one thread-local check
    /// per callback: no allocation, no shared memory. The positive control shows the
    /// counters see the work a transaction with writes does.
    #[pg_test]
    fn rule_9_callbacks_of_a_transaction_without_pg_cache_do_nothing() {
        use crate::shmem::STORE_USES;
        use pg_sys::SubXactEvent::*;
        use pg_sys::XactEvent::*;
        use std::sync::atomic::Ordering;
        let counts = || (super::ALLOCATIONS.load(Ordering::Relaxed), STORE_USES.with(|n| n.get()));
        let run_all = || {
            // SAFETY: the callbacks as PostgreSQL calls them; with nothing pending
            // each returns after its check.
            unsafe {
                for e in [XACT_EVENT_PRE_COMMIT, XACT_EVENT_COMMIT, XACT_EVENT_ABORT, XACT_EVENT_PRE_PREPARE, XACT_EVENT_PREPARE] {
                    crate::xact::xact_callback(e, std::ptr::null_mut());
                }
                for e in [SUBXACT_EVENT_START_SUB, SUBXACT_EVENT_COMMIT_SUB, SUBXACT_EVENT_ABORT_SUB] {
                    crate::xact::subxact_callback(e, 2, 1, std::ptr::null_mut());
                }
            }
        };
        let before = counts();
        run_all();
        assert_eq!(counts(), before, "(allocations, store uses) in the callbacks");
        // Positive control: with a write pending, PRE_COMMIT plans and prepares.
        Spi::run("SELECT cache_set('rule9', 'k', '1')").unwrap();
        let before = counts();
        // SAFETY: PRE_COMMIT prepares the entry; ABORT frees it and empties the write set.
        unsafe {
            crate::xact::xact_callback(XACT_EVENT_PRE_COMMIT, std::ptr::null_mut());
            crate::xact::xact_callback(XACT_EVENT_ABORT, std::ptr::null_mut());
        }
        let after = counts();
        assert!(after.0 > before.0 && after.1 > before.1, "the counters see real work: {before:?} -> {after:?}");
        let before = counts();
        run_all();
        assert_eq!(counts(), before, "after an abort nothing is left pending");
    }

    /// Every SQLSTATE of the README's error table that one session can trigger, with
    /// the input that triggers it. (53400, 0A000, 25000, 25006, 53200 and 55000 need
    /// other sessions or clusters: see tests/client.)
    #[pg_test]
    fn under_on_limit_warning_a_call_over_a_limit_skips_and_is_counted() {
        Spi::run("SELECT cache_create('lim_t', max_bytes => 300)").unwrap();
        Spi::run("SELECT cache_put('lim_t', 'k', '\"small\"'), cache_set('lim_t', 'n', '1')").unwrap();
        Spi::run("SET LOCAL pg_cache.on_limit = warning").unwrap();
        let long = "repeat('x', 2000)";
        let big = "to_jsonb(repeat('v', 400))";
        let skipped = || Spi::get_one::<i64>("SELECT skipped FROM cache_stats() WHERE cache = 'lim_t'").unwrap().unwrap();
        let before = skipped();
        // A value too large: skipped, and the key it meant to replace is invalidated.
        Spi::run(&format!("SELECT cache_put('lim_t', 'k', {big})")).unwrap();
        assert_eq!(get("SELECT cache_get('lim_t', 'k')::text"), None);
        // A key too long: writes skip (and invalidate it), reads miss, invalidations
        // go ahead (a value may be there from when the limit was higher).
        for sql in [
            format!("SELECT cache_set('lim_t', {long}, '1')"),
            format!("SELECT cache_put_bytes('lim_t', {long}, '\\x00')"),
        ] {
            Spi::run(&sql).unwrap();
        }
        for (sql, want) in [
            (format!("SELECT cache_get('lim_t', {long}, '\"dflt\"')::text"), Some("\"dflt\"")),
            (format!("SELECT cache_has('lim_t', {long})::text"), Some("false")),
            (format!("SELECT cache_delete('lim_t', {long})::text"), Some("false")),
            (format!("SELECT cache_touch('lim_t', {long}, '1 hour')::text"), Some("false")),
            (format!("SELECT cache_expires_at('lim_t', {long})::text"), None),
            (format!("SELECT cache_incr('lim_t', {long})::text"), None),
            (format!("SELECT cache_add('lim_t', {long}, '1')::text"), None),
            (format!("SELECT cache_add('lim_t', 'a', {big})::text"), None),
            (format!("SELECT cache_pull('lim_t', {long}, '0')::text"), Some("0")),
            (format!("SELECT cache_get_or_lock('lim_t', {long})::text"), None),
            (format!("SELECT count(*)::text FROM cache_get_many('lim_t', ARRAY['n', {long}])"), Some("1")),
            (format!("SELECT cache_delete_many('lim_t', ARRAY['n', {long}])::text"), Some("1")),
        ] {
            assert_eq!(get(&sql).as_deref(), want, "{sql}");
        }
        assert_eq!(get("SELECT cache_has('lim_t', 'a')::text").as_deref(), Some("false"), "a skipped add adds nothing");
        // Of many entries, those over a limit are skipped and the others written.
        Spi::run(&format!("SELECT cache_set_many('lim_t', jsonb_build_object('m1', 1, 'm2', {big}, {long}, 3))")).unwrap();
        assert_eq!(get("SELECT cache_get('lim_t', 'm1')::text").as_deref(), Some("1"));
        assert_eq!(get("SELECT cache_get('lim_t', 'm2')::text"), None);
        assert_eq!(skipped() - before, 14, "each skipped call (or entry) counted once; deletes and pulls are not skipped");
        // A value written while the key limit was higher is deleted after it is lowered.
        Spi::run("SELECT cache_put('lim_t', repeat('y', 120), '1')").unwrap();
        Spi::run("SET LOCAL pg_cache.max_key_size = 100").unwrap();
        assert_eq!(get("SELECT cache_delete('lim_t', repeat('y', 120))::text").as_deref(), Some("true"));
        Spi::run("SET LOCAL pg_cache.max_key_size = 1024").unwrap();
        assert_eq!(get("SELECT cache_get('lim_t', repeat('y', 120))::text"), None);
        // Bad input is still an error.
        assert_eq!(error_of("SELECT cache_set('lim_t', NULL, '1')").0, "22004");
        assert_eq!(error_of(&format!("SELECT cache_add('lim_t', {long}, NULL)")).0, "22004");
    }

    #[pg_test]
    fn fills_are_dropped_at_rollback_unless_asked() {
        assert_eq!(get("SHOW pg_cache.keep_fills_on_rollback").as_deref(), Some("off"));
        Spi::run("SET LOCAL pg_cache.keep_fills_on_rollback = on").unwrap();
        assert_eq!(get("SHOW pg_cache.keep_fills_on_rollback").as_deref(), Some("on"));
    }

    #[pg_test]
    fn a_declaration_already_in_effect_is_not_made_again() {
        let declare = |sql: &str| Spi::get_one::<bool>(sql).expect("query runs");
        assert_eq!(declare("SELECT cache_declare('lazy_t', size_limit => 5)"), Some(true));
        assert_eq!(declare("SELECT cache_declare('lazy_t', size_limit => 5)"), Some(false));
        assert_eq!(declare("SELECT cache_declare('lazy_t', size_limit => 6)"), Some(true));
        assert_eq!(declare("SELECT cache_declare('lazy_t', size_limit => 6, context => false)"), Some(true));
        // Roles declared by cache_create stay: cache_declare does not open the cache.
        Spi::run("SELECT cache_create('lazy_r', readers => '{}')").unwrap();
        assert_eq!(declare("SELECT cache_declare('lazy_r', size_limit => 9)"), Some(true));
        Spi::run("CREATE ROLE cache_test_lazy_reader").unwrap();
        Spi::run("SET ROLE cache_test_lazy_reader").unwrap();
        assert_eq!(error_of("SELECT cache_get('lazy_r', 'k')").0, "42501");
    }

    #[pg_test]
    fn bytea_values_are_read_back_as_written_and_only_as_bytea() {
        Spi::run("SELECT cache_set_bytes('t', 'b', '\\x00ff10'), cache_put_bytes('t', 'p', ''::bytea)").unwrap();
        assert_eq!(get("SELECT encode(cache_get_bytes('t', 'b'), 'hex')").as_deref(), Some("00ff10"));
        assert_eq!(get("SELECT encode(cache_get_bytes('t', 'p'), 'hex')").as_deref(), Some(""));
        assert_eq!(get("SELECT encode(cache_get_bytes('t', 'none', '\\x01'), 'hex')").as_deref(), Some("01"));
        assert_eq!(
            get("SELECT string_agg(key || '=' || encode(value, 'hex'), ',') FROM cache_get_many_bytes('t', '{p,none,b}')")
                .as_deref(),
            Some("p=,b=00ff10")
        );
        // A read of the other kind, or an operation on jsonb values, is refused.
        let (state, message) = error_of("SELECT cache_get('t', 'b')");
        assert_eq!((state.as_str(), message.as_str()), ("42804", "cache \"t\" holds a bytea value under key \"b\", not jsonb"));
        for sql in [
            "SELECT cache_get_many('t', '{b}')",
            "SELECT cache_incr('t', 'b')",
            "SELECT cache_pull('t', 'b')",
            "SELECT cache_get_or_lock('t', 'b')",
        ] {
            assert_eq!(error_of(sql).0, "42804", "{sql}");
        }
        Spi::run("SELECT cache_set('t', 'j', '1')").unwrap();
        let (_, message) = error_of("SELECT cache_get_bytes('t', 'j')");
        assert_eq!(message, "cache \"t\" holds a jsonb value under key \"j\", not bytea");
        // A bytea value makes its key present, and a touch keeps its kind.
        assert_eq!(get("SELECT cache_add('t', 'b', '1')::text").as_deref(), Some("false"));
        assert_eq!(get("SELECT cache_has('t', 'b')::text").as_deref(), Some("true"));
        assert_eq!(get("SELECT cache_touch('t', 'b', '1 hour')::text").as_deref(), Some("true"));
        assert_eq!(get("SELECT encode(cache_get_bytes('t', 'b'), 'hex')").as_deref(), Some("00ff10"));
        // An untyped literal is still jsonb: the bytea functions have names of their own.
        Spi::run("SELECT cache_set('t', 'price', '19.90')").unwrap();
        assert_eq!(get("SELECT cache_get('t', 'price')::text").as_deref(), Some("19.90"));
    }

    #[pg_test(error = "value must not be NULL")]
    fn a_null_bytea_value() {
        Spi::run("SELECT cache_set_bytes('t', 'b', NULL)").unwrap();
    }

    #[pg_test]
    fn every_sqlstate_of_the_error_table() {
        Spi::run("CREATE ROLE cache_test_stranger").unwrap();
        Spi::run("SELECT cache_create('guarded_t', readers => '{}', writers => '{}')").unwrap();
        Spi::run("SELECT cache_create('write_only_t', readers => '{}')").unwrap();
        let cases = [
            ("SELECT cache_get(NULL, 'k')", "22004"),
            ("SELECT cache_set('t', NULL, '1')", "22004"),
            ("SELECT cache_create('t', context_ignored_keys => NULL)", "22004"),
            ("SELECT cache_drop(NULL)", "22004"),
            ("SELECT cache_get('', 'k')", "22023"),
            ("SELECT cache_set('t', 'k', '1', '0 seconds')", "22023"),
            ("SELECT cache_create('t', duration => '-1 day')", "22023"),
            ("SELECT cache_create('t', duration => '10001 years')", "22023"),
            ("SELECT cache_create('t', size_limit => 0)", "22023"),
            ("SELECT cache_create('t', max_bytes => 0)", "22023"),
            ("SELECT cache_create('t', notify => 'values')", "22023"),
            ("SELECT cache_create('t', policy => 'fifo')", "22023"),
            ("SELECT cache_create('t', policy => NULL)", "22004"),
            ("SELECT cache_declare('t', notify => '')", "22023"),
            ("SELECT cache_get('*', 'k')", "22023"),
            ("SELECT cache_get(repeat('n', 64), 'k')", "42622"),
            ("SELECT cache_get('t', repeat('k', 1025))", "54000"),
            ("SELECT cache_set('t', 'k', to_jsonb(repeat('v', 2000000)))", "54000"),
            ("SELECT cache_create('t', readers => ARRAY(SELECT 'r' || g FROM generate_series(1, 9) g))", "42704"),
            ("SELECT cache_drop('no_such_database')", "3D000"),
            ("SELECT cache_incr('t', 'k', NULL)", "22004"),
            ("SELECT cache_add('t', 'k', NULL)", "22004"),
            ("SELECT cache_touch('t', 'k', NULL)", "22004"),
            ("SELECT cache_put('t', 's', '\"x\"'), cache_incr('t', 's')", "42804"),
            ("SELECT cache_put_bytes('t', 'y', '\\x00'), cache_get('t', 'y')", "42804"),
            ("SELECT cache_put_bytes('t', 'z', NULL)", "22004"),
            ("SELECT cache_declare('t', size_limit => 0)", "22023"),
            ("SELECT cache_declare('t', context => NULL)", "22004"),
            ("SELECT cache_put('t', 'b', '9223372036854775807'), cache_incr('t', 'b')", "22003"),
        ];
        for (sql, want) in cases {
            assert_eq!(error_of(sql).0, want, "{sql}");
        }
        Spi::run("SET ROLE cache_test_stranger").unwrap();
        for sql in [
            "SELECT cache_drop(current_database())",
            "SELECT * FROM cache_memory()",
            "SELECT cache_stats_reset()",
            "SELECT cache_keys('guarded_t')",
            "SELECT cache_get('guarded_t', 'k')",
            "SELECT cache_set('guarded_t', 'k', '1')",
            "SELECT cache_create('guarded_t')",
            "SELECT cache_has('guarded_t', 'k')",
            "SELECT cache_add('guarded_t', 'k', '1')",
            "SELECT cache_incr('guarded_t', 'k')",
            "SELECT cache_pull('guarded_t', 'k')",
            "SELECT cache_touch('guarded_t', 'k', '1 hour')",
            "SELECT cache_get_or_lock('guarded_t', 'k')",
            "SELECT cache_get_bytes('guarded_t', 'k')",
            "SELECT cache_set_bytes('guarded_t', 'k', '\\x00')",
            "SELECT cache_invalidate_tags('guarded_t', ARRAY['x'])",
            "SELECT cache_delete_prefix('guarded_t', 'k')",
            // Writers who may not read may not learn a value or whether there is one.
            "SELECT cache_pull('write_only_t', 'k')",
            "SELECT cache_incr('write_only_t', 'k')",
            "SELECT cache_add('write_only_t', 'k', '1')",
            "SELECT cache_touch('write_only_t', 'k', '1 hour')",
        ] {
            assert_eq!(error_of(sql).0, "42501", "{sql}");
        }
        // ... though they may write it: the refusals above are the read check's.
        Spi::run("SELECT cache_set('write_only_t', 'k', '1'), cache_put('write_only_t', 'j', '1')").unwrap();
    }
}
