//! The SQLite state store on real files: tokens, effect keys, run history, the event queue, reopening, file
//! permissions, and two stores writing one file from many threads.

use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft::store::sqlite::SqliteStore;
use weft::store::{
    AfterFailure, EffectKey, Enqueued, EventFilter, EventStatus, FinishedRun, NewEvent, NewRun, RetryPolicy, RunFilter,
    RunId, RunStatus, StepRecord, StepStatus, Store, StoreError, TokenPair,
};

/// A fresh directory under the system temp dir, removed when the test ends (pass or fail).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let unique =
            format!("weft-store-{name}-{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Where weft keeps its state beside weft.yaml; `.weft/` does not exist yet.
    fn db(&self) -> PathBuf {
        self.0.join(".weft").join("state.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap_or_else(|e| panic!("{e}"))
}

fn token(access: &str, refresh: Option<&str>) -> TokenPair {
    TokenPair {
        access_token: access.into(),
        refresh_token: refresh.map(Into::into),
        expires_at: Some(1_900_000_000),
        scope: Some("contacts.write".into()),
    }
}

fn key(event: &str, step: &str, item: Option<u64>) -> EffectKey {
    EffectKey { flow: "razorpay_to_ghl".into(), event_id: event.into(), step: step.into(), item }
}

fn new_run(flow: &str, event: &str, started_at_ms: i64) -> NewRun {
    NewRun {
        flow: flow.into(),
        event_id: event.into(),
        trigger: "webhook razorpay payment.captured".into(),
        started_at_ms,
    }
}

fn step(name: &str, item: Option<u64>, status: StepStatus) -> StepRecord {
    StepRecord {
        step: name.into(),
        item,
        status,
        duration_ms: 42,
        http_status: Some(201),
        error: (status == StepStatus::Failed).then(|| "GHL answered 422".into()),
        attempts: 2,
    }
}

fn event(connection: &str, id: &str, received_at_ms: i64) -> NewEvent {
    NewEvent {
        connection: connection.into(),
        event_id: id.into(),
        kind: "payment.captured".into(),
        payload: json!({ "id": id, "amount": 5000 }).into(),
        received_at_ms,
    }
}

#[test]
fn tokens_round_trip_overwrite_and_never_show_in_debug() {
    let dir = TempDir::new("tokens");
    let store = open(&dir.db());
    assert_eq!(store.load_token("ghl").unwrap(), None);

    let first = token("at-SECRET-1", Some("rt-SECRET-1"));
    store.save_token("ghl", &first).unwrap();
    assert_eq!(store.load_token("ghl").unwrap(), Some(first));

    let second = TokenPair { access_token: "at-SECRET-2".into(), refresh_token: None, expires_at: None, scope: None };
    store.save_token("ghl", &second).unwrap();
    assert_eq!(store.load_token("ghl").unwrap(), Some(second));
    assert_eq!(store.load_token("razorpay").unwrap(), None, "tokens are per connection");

    let shown = format!("{:?} {:#?}", token("at-SECRET-3", Some("rt-SECRET-3")), store.load_token("ghl").unwrap());
    assert!(!shown.contains("SECRET"), "a token value leaked into Debug: {shown}");
    assert!(shown.contains("[redacted]") && shown.contains("contacts.write") && shown.contains("1900000000"));
}

#[test]
fn an_effect_is_recorded_once_and_the_first_output_wins() {
    let dir = TempDir::new("effects");
    let store = open(&dir.db());
    let whole = key("pay_1", "create_contact", None);
    assert_eq!(store.effect(&whole).unwrap(), None);

    store.record_effect(&whole, &json!({ "contact": { "id": "c1" } })).unwrap();
    store.record_effect(&whole, &json!({ "contact": { "id": "c2" } })).unwrap();
    assert_eq!(store.effect(&whole).unwrap(), Some(json!({ "contact": { "id": "c1" } })));

    // Items of a for_each step are separate effects, and distinct from the step without an item.
    store.record_effect(&key("pay_1", "add_tag", Some(0)), &json!("tag 0")).unwrap();
    store.record_effect(&key("pay_1", "add_tag", Some(1)), &json!("tag 1")).unwrap();
    assert_eq!(store.effect(&key("pay_1", "add_tag", Some(0))).unwrap(), Some(json!("tag 0")));
    assert_eq!(store.effect(&key("pay_1", "add_tag", Some(1))).unwrap(), Some(json!("tag 1")));
    assert_eq!(store.effect(&key("pay_1", "add_tag", Some(2))).unwrap(), None);
    assert_eq!(store.effect(&key("pay_1", "add_tag", None)).unwrap(), None);
    assert_eq!(store.effect(&key("pay_1", "create_contact", Some(0))).unwrap(), None);
    // Another event or flow never sees this event's writes.
    assert_eq!(store.effect(&key("pay_2", "create_contact", None)).unwrap(), None);
    let other_flow = EffectKey { flow: "other".into(), ..whole.clone() };
    assert_eq!(store.effect(&other_flow).unwrap(), None);

    let huge = key("pay_1", "add_tag", Some(u64::MAX));
    let err = store.record_effect(&huge, &json!(null)).unwrap_err();
    assert!(matches!(err, StoreError::OutOfRange { .. }), "{err}");
}

#[test]
fn runs_keep_their_steps_and_come_back_newest_first() {
    let dir = TempDir::new("runs");
    let store = open(&dir.db());
    let first = store.start_run(&new_run("razorpay_to_ghl", "pay_1", 1_000)).unwrap();
    store.record_step(first, &step("create_contact", None, StepStatus::Ok)).unwrap();
    store.record_step(first, &step("add_tag", Some(0), StepStatus::Reused)).unwrap();
    store.record_step(first, &step("add_tag", Some(1), StepStatus::Failed)).unwrap();
    store.finish_run(first, RunStatus::Failed, Some("step `add_tag` failed")).unwrap();
    let second = store.start_run(&new_run("razorpay_to_ghl", "pay_2", 2_000)).unwrap();
    store.record_step(second, &step("create_contact", None, StepStatus::Skipped)).unwrap();
    let third = store.start_run(&new_run("ghl_to_sheet", "pay_1", 3_000)).unwrap();
    store.finish_run(third, RunStatus::Succeeded, None).unwrap();

    let all = store.runs(&RunFilter::default()).unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [third, second, first]);

    let run = &all[2];
    assert_eq!((run.flow.as_str(), run.event_id.as_str()), ("razorpay_to_ghl", "pay_1"));
    assert_eq!(run.trigger, "webhook razorpay payment.captured");
    assert_eq!((run.status, run.started_at_ms), (RunStatus::Failed, 1_000));
    assert!(run.finished_at_ms.is_some());
    assert_eq!(run.error.as_deref(), Some("step `add_tag` failed"));
    assert_eq!(
        run.steps,
        [
            step("create_contact", None, StepStatus::Ok),
            step("add_tag", Some(0), StepStatus::Reused),
            step("add_tag", Some(1), StepStatus::Failed)
        ]
    );
    assert_eq!((all[1].status, all[1].finished_at_ms, all[1].steps.len()), (RunStatus::Running, None, 1));
    assert_eq!((all[0].status, all[0].error.as_deref(), all[0].steps.len()), (RunStatus::Succeeded, None, 0));

    let by_flow = store.runs(&RunFilter { flow: Some("razorpay_to_ghl".into()), ..RunFilter::default() }).unwrap();
    assert_eq!(by_flow.iter().map(|r| r.id).collect::<Vec<_>>(), [second, first]);
    let by_event = store.runs(&RunFilter { event_id: Some("pay_1".into()), ..RunFilter::default() }).unwrap();
    assert_eq!(by_event.iter().map(|r| r.id).collect::<Vec<_>>(), [third, first]);
    let both = RunFilter { flow: Some("razorpay_to_ghl".into()), event_id: Some("pay_1".into()), limit: 0 };
    assert_eq!(store.runs(&both).unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [first]);
    let newest = store.runs(&RunFilter { limit: 2, ..RunFilter::default() }).unwrap();
    assert_eq!(newest.iter().map(|r| r.id).collect::<Vec<_>>(), [third, second]);
    assert!(store.runs(&RunFilter { flow: Some("nope".into()), ..RunFilter::default() }).unwrap().is_empty());

    let missing = RunId(9_999);
    let err = store.record_step(missing, &step("x", None, StepStatus::Ok)).unwrap_err();
    assert!(matches!(err, StoreError::UnknownRun { run, .. } if run == missing), "{err}");
    let err = store.finish_run(missing, RunStatus::Succeeded, None).unwrap_err();
    assert!(matches!(err, StoreError::UnknownRun { .. }), "{err}");
    assert!(err.to_string().contains("state.db") && err.to_string().contains("9999"), "{err}");
}

#[test]
fn reopening_keeps_everything_and_migrating_twice_changes_nothing() {
    let dir = TempDir::new("reopen");
    let path = dir.db();
    let run = {
        let store = open(&path);
        store.save_token("ghl", &token("at", Some("rt"))).unwrap();
        store.record_effect(&key("pay_1", "create_contact", None), &json!({ "id": "c1" })).unwrap();
        let run = store.start_run(&new_run("f", "pay_1", 5)).unwrap();
        store.record_step(run, &step("create_contact", None, StepStatus::Ok)).unwrap();
        store.finish_run(run, RunStatus::Succeeded, None).unwrap();
        store.save_poll_cursor("sheet_poll", "row:41").unwrap();
        run
    };
    for _ in 0..2 {
        let store = open(&path);
        assert_eq!(store.load_token("ghl").unwrap(), Some(token("at", Some("rt"))));
        assert_eq!(store.effect(&key("pay_1", "create_contact", None)).unwrap(), Some(json!({ "id": "c1" })));
        let runs = store.runs(&RunFilter::default()).unwrap();
        assert_eq!((runs.len(), runs[0].id, runs[0].steps.len()), (1, run, 1));
        assert_eq!(store.poll_cursor("sheet_poll").unwrap().as_deref(), Some("row:41"));
    }

    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    let recorded: i64 = raw.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
    assert_eq!((version, recorded), (3, 3));
    let journal: String = raw.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(journal, "wal");
}

#[test]
fn a_file_from_the_first_schema_is_migrated_and_claims_by_the_due_index() {
    let dir = TempDir::new("migrate-v1");
    let path = dir.db();
    {
        // A file as the first release left it: migration 1 only, with an event queued and one claimed.
        let store = open(&path);
        store.enqueue_event(&event("razorpay", "evt_1", 0)).unwrap();
        store.enqueue_event(&event("razorpay", "evt_2", 1)).unwrap();
        store.claim_event(0, 1_000).unwrap().unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "CREATE INDEX events_by_lease ON events (status, lease_until_ms);
         CREATE INDEX events_by_received ON events (received_at_ms, id);
         DELETE FROM schema_migrations WHERE version = 2; PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(raw);
    let store = open(&path);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let indexes: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, ["events_due"]);
    // The expired claim comes back first (its original due time), then the queued one; newest listed first.
    assert_eq!(store.claim_event(5_000, 1_000).unwrap().unwrap().event_id, "evt_1");
    assert_eq!(store.claim_event(5_000, 1_000).unwrap().unwrap().event_id, "evt_2");
    let listed = store.events(&EventFilter { limit: 10, ..EventFilter::default() }).unwrap();
    assert_eq!(listed.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["evt_2", "evt_1"]);
}

#[test]
fn the_checkpointer_thread_copies_the_wal_into_the_database_while_writes_go_on() {
    let dir = TempDir::new("checkpoint");
    let path = dir.db();
    let store = open(&path);
    let before = std::fs::metadata(&path).unwrap().len();
    // 2,000 events of ~1 KB, each its own commit: ~2 MB that only a checkpoint moves from the WAL to the file
    // (commits never checkpoint themselves).
    for i in 0..2_000 {
        let mut e = event("razorpay", &format!("evt_{i}"), i);
        e.payload = weft::store::Payload::from(json!({ "id": i, "notes": "x".repeat(1_000) }));
        store.enqueue_event(&e).unwrap();
    }
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let grown = loop {
        let now = std::fs::metadata(&path).unwrap().len();
        if now > before + 1_500_000 || std::time::Instant::now() > until {
            break now;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(grown > before + 1_500_000, "the database file stayed at {grown} bytes (was {before})");
    assert_eq!(store.events(&EventFilter { limit: 5000, ..EventFilter::default() }).unwrap().len(), 2_000);
}

#[test]
fn an_event_an_older_weft_left_behind_a_claimed_one_is_still_claimed_after_the_upgrade() {
    let dir = TempDir::new("migrate-v2");
    let path = dir.db();
    {
        let store = open(&path);
        store.enqueue_event(&event("razorpay", "evt_1", 0)).unwrap();
        store.enqueue_event(&event("razorpay", "evt_2", 0)).unwrap();
    }
    // Schema 2 claimed by due time, so a newer event could go first: evt_2 done while evt_1 still waits.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "UPDATE events SET status = 'done', attempts = 1, claim_seq = 1 WHERE event_id = 'evt_2';
         DROP INDEX events_due; CREATE INDEX events_due ON events (status, available_at_ms, id);
         DELETE FROM schema_migrations WHERE version = 3; PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(raw);
    let store = open(&path);
    let claim = store.claim_event(1_000, 1_000).unwrap().expect("the event left behind is claimed");
    assert_eq!((claim.event_id.as_str(), claim.attempt), ("evt_1", 1));
    assert_eq!(store.claim_event(1_000, 1_000).unwrap(), None);
}

#[test]
fn a_database_from_a_newer_weft_is_refused_with_its_path() {
    let dir = TempDir::new("newer");
    let path = dir.db();
    drop(open(&path));
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { found: 99, supported: 3, .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[test]
fn a_path_that_cannot_be_created_is_reported_with_its_path() {
    let dir = TempDir::new("badpath");
    let blocker = dir.0.join("not_a_dir");
    std::fs::write(&blocker, "a file where the directory should be").unwrap();
    let path = blocker.join("state.db");
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[cfg(unix)]
#[test]
fn the_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    let dir = TempDir::new("mode");
    let path = dir.db();
    let store = open(&path);
    store.save_token("ghl", &token("at", None)).unwrap();
    assert_eq!(mode(&path), 0o600);
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert_eq!(mode(&wal), 0o600, "the WAL holds tokens too");
    assert_eq!(mode(path.parent().unwrap()) & 0o077, 0, ".weft/ is private");

    // A file someone made world-readable is tightened on open.
    let loose = dir.0.join("loose.db");
    std::fs::write(&loose, "").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(open(&loose));
    assert_eq!(mode(&loose), 0o600);
}

#[test]
fn two_stores_on_one_file_write_from_many_threads_without_lock_errors() {
    const THREADS: usize = 8;
    const WRITES: usize = 200;
    let dir = TempDir::new("concurrent");
    let stores = [Arc::new(open(&dir.db())), Arc::new(open(&dir.db()))];
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&stores[t % 2]);
            thread::spawn(move || {
                for i in 0..WRITES {
                    let k = key(&format!("evt_{i}"), &format!("step_{t}"), Some(i as u64 % 3));
                    store.record_effect(&k, &json!({ "thread": t, "i": i })).unwrap();
                    // Every key is also written by the other store: the duplicate must keep the first output.
                    let other = &key(&format!("evt_{i}"), &format!("step_{}", (t + 1) % THREADS), Some(i as u64 % 3));
                    store.record_effect(other, &json!({ "thread": t, "duplicate": true })).unwrap();
                    assert!(store.effect(&k).unwrap().is_some());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }

    for t in 0..THREADS {
        for i in 0..WRITES {
            let k = key(&format!("evt_{i}"), &format!("step_{t}"), Some(i as u64 % 3));
            assert!(stores[(t + 1) % 2].effect(&k).unwrap().is_some(), "{k:?} missing");
        }
    }
    let raw = rusqlite::Connection::open(dir.db()).unwrap();
    let rows: usize = raw.query_row("SELECT count(*) FROM effects", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, THREADS * WRITES, "every key exactly once");
}

/// Set by [`two_processes_open_and_write_one_fresh_file`] in the children it starts.
const CHILD_DB: &str = "WEFT_STORE_TEST_CHILD_DB";

#[test]
fn two_processes_open_and_write_one_fresh_file() {
    const CHILDREN: usize = 3;
    let dir = TempDir::new("processes");
    let exe = std::env::current_exe().unwrap();
    // Both children create, migrate and write the same file at once: this test binary, running only the child
    // test below.
    let children: Vec<_> = (0..CHILDREN)
        .map(|n| {
            std::process::Command::new(&exe)
                .args(["--exact", "child_process_writes_effects", "--test-threads=1"])
                .env(CHILD_DB, dir.db())
                .env("WEFT_STORE_TEST_CHILD", n.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("1 passed"), "the child test did not run: {stdout}");
    }
    let raw = rusqlite::Connection::open(dir.db()).unwrap();
    let rows: usize = raw.query_row("SELECT count(*) FROM effects", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, CHILDREN * 300);
}

#[test]
fn child_process_writes_effects() {
    let Ok(path) = std::env::var(CHILD_DB) else { return };
    let child = std::env::var("WEFT_STORE_TEST_CHILD").unwrap();
    let store = open(Path::new(&path));
    for i in 0..300 {
        store.record_effect(&key(&format!("evt_{i}"), &format!("child_{child}"), None), &json!(i)).unwrap();
    }
}

#[test]
fn a_write_waits_for_another_connections_transaction_instead_of_failing() {
    let dir = TempDir::new("busy");
    let store = open(&dir.db());
    let mut raw = rusqlite::Connection::open(dir.db()).unwrap();
    let tx = raw.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
    tx.execute("INSERT INTO poll_cursors (poll, cursor, updated_at_ms) VALUES ('held', 'x', 0)", []).unwrap();
    let writer = thread::spawn(move || {
        store.save_token("ghl", &token("at", None)).unwrap();
        store
    });
    thread::sleep(Duration::from_millis(300));
    tx.commit().unwrap();
    let store = writer.join().unwrap();
    assert!(store.load_token("ghl").unwrap().is_some());
    assert_eq!(store.poll_cursor("held").unwrap().as_deref(), Some("x"));
}

#[test]
fn a_redelivered_event_is_acknowledged_but_not_queued_twice() {
    let dir = TempDir::new("dedup");
    let store = open(&dir.db());
    let first = store.enqueue_event(&event("razorpay", "evt_1", 100)).unwrap();
    let again = store.enqueue_event(&event("razorpay", "evt_1", 200)).unwrap();
    assert!(matches!(first, Enqueued::New(_)));
    assert_eq!(again, Enqueued::Duplicate(first.id()));
    // The same sender id on another connection is another event.
    let elsewhere = store.enqueue_event(&event("ghl", "evt_1", 300)).unwrap();
    assert!(matches!(elsewhere, Enqueued::New(id) if id != first.id()));

    // Still a duplicate after it ran: a late re-delivery must not run the flow again.
    let claim = store.claim_event(1_000, 60_000).unwrap().unwrap();
    assert_eq!(
        (claim.id, claim.attempt, claim.payload.clone()),
        (first.id(), 1, json!({ "id": "evt_1", "amount": 5000 }))
    );
    store.complete_event(&claim).unwrap();
    assert_eq!(store.enqueue_event(&event("razorpay", "evt_1", 400)).unwrap(), Enqueued::Duplicate(first.id()));

    let queued = store.events(&EventFilter::default()).unwrap();
    assert_eq!(queued.len(), 2);
    assert_eq!((queued[1].status, queued[1].received_at_ms), (EventStatus::Done, 100));
}

#[test]
fn each_event_is_claimed_by_exactly_one_worker() {
    const EVENTS: usize = 200;
    let dir = TempDir::new("claims");
    let stores = [Arc::new(open(&dir.db())), Arc::new(open(&dir.db()))];
    for i in 0..EVENTS {
        stores[0].enqueue_event(&event("razorpay", &format!("evt_{i}"), i as i64)).unwrap();
    }
    let claimed = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&stores[t % 2]);
            let claimed = Arc::clone(&claimed);
            thread::spawn(move || {
                while let Some(claim) = store.claim_event(10_000, 60_000).unwrap() {
                    store.complete_event(&claim).unwrap();
                    claimed.lock().unwrap().push(claim.event_id);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let claimed = claimed.lock().unwrap();
    let distinct: HashSet<_> = claimed.iter().collect();
    assert_eq!((claimed.len(), distinct.len()), (EVENTS, EVENTS));
    let done = EventFilter { status: Some(EventStatus::Done), ..EventFilter::default() };
    assert_eq!(stores[1].events(&done).unwrap().len(), EVENTS);
}

#[test]
fn a_failing_event_is_retried_later_then_dead_lettered_then_replayed() {
    let dir = TempDir::new("retry");
    let store = open(&dir.db());
    let policy = RetryPolicy { max_attempts: 3, first_delay_ms: 1_000, max_delay_ms: 10_000 };
    let id = store.enqueue_event(&event("razorpay", "evt_1", 0)).unwrap().id();

    let first = store.claim_event(0, 60_000).unwrap().unwrap();
    assert_eq!(first.attempt, 1);
    assert_eq!(store.claim_event(0, 60_000).unwrap(), None, "claimed events are not handed out twice");
    store.fail_event(&first, "GHL answered 500", policy.after_failure(first.attempt, 0)).unwrap();
    assert_eq!(store.claim_event(999, 60_000).unwrap(), None, "not due before its backoff");

    let second = store.claim_event(1_000, 60_000).unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    assert_eq!(policy.after_failure(2, 1_000), AfterFailure::RetryAt(3_000));
    store.fail_event(&second, "GHL answered 500", policy.after_failure(2, 1_000)).unwrap();

    let third = store.claim_event(3_000, 60_000).unwrap().unwrap();
    assert_eq!(third.attempt, 3);
    assert_eq!(policy.after_failure(3, 3_000), AfterFailure::DeadLetter);
    store.fail_event(&third, "GHL answered 422: bad email", AfterFailure::DeadLetter).unwrap();
    assert_eq!(store.claim_event(i64::MAX / 2, 60_000).unwrap(), None, "dead letters are never claimed");

    // A finished claim cannot be finished again.
    let err = store.complete_event(&third).unwrap_err();
    assert!(matches!(err, StoreError::ClaimLost { .. }), "{err}");

    let dead = store.events(&EventFilter { status: Some(EventStatus::Dead), ..EventFilter::default() }).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].attempts), (id, 3));
    assert_eq!(dead[0].last_error.as_deref(), Some("GHL answered 422: bad email"));
    assert!(dead[0].finished_at_ms.is_some());

    // `weft replay`: back in the queue with a fresh attempt count; an old claim still cannot touch it.
    assert!(store.requeue_event(id, 5_000).unwrap());
    assert!(!store.requeue_event(id, 5_000).unwrap(), "already queued");
    let replayed = store.claim_event(5_000, 60_000).unwrap().unwrap();
    assert_eq!(replayed.attempt, 1);
    assert!(matches!(store.complete_event(&first), Err(StoreError::ClaimLost { .. })));
    store.complete_event(&replayed).unwrap();
    assert!(store
        .events(&EventFilter { status: Some(EventStatus::Dead), ..EventFilter::default() })
        .unwrap()
        .is_empty());
}

#[test]
fn a_dead_workers_event_is_claimed_again_when_its_lease_runs_out() {
    let dir = TempDir::new("lease");
    let store = open(&dir.db());
    store.enqueue_event(&event("razorpay", "evt_1", 0)).unwrap();
    let lost = store.claim_event(0, 1_000).unwrap().unwrap();
    assert_eq!(store.claim_event(999, 1_000).unwrap(), None);
    let taken = store.claim_event(1_000, 1_000).unwrap().unwrap();
    assert_eq!((taken.id, taken.attempt), (lost.id, 2));
    // The slow worker comes back: its claim is refused, the new one's is not.
    let err = store.fail_event(&lost, "timeout", AfterFailure::RetryAt(0)).unwrap_err();
    assert!(matches!(err, StoreError::ClaimLost { attempt: 1, .. }), "{err}");
    store.complete_event(&taken).unwrap();
}

#[test]
fn a_worker_that_renews_its_lease_keeps_the_event_and_a_stale_claim_cannot_renew() {
    let dir = TempDir::new("renew");
    let store = open(&dir.db());
    store.enqueue_event(&event("razorpay", "evt_1", 0)).unwrap();
    let held = store.claim_event(0, 1_000).unwrap().unwrap();
    // Renewed before it ran out: at the old expiry nobody else may take it.
    assert!(store.extend_lease(&held, 5_000).unwrap());
    assert_eq!(store.claim_event(1_000, 1_000).unwrap(), None);
    assert_eq!(store.claim_event(4_999, 1_000).unwrap(), None);
    // Past the renewed lease it is due again; the old claim can neither renew nor settle it any more.
    let taken = store.claim_event(5_000, 1_000).unwrap().unwrap();
    assert_eq!((taken.id, taken.attempt), (held.id, 2));
    assert!(!store.extend_lease(&held, 9_000).unwrap());
    assert!(matches!(store.complete_event(&held).unwrap_err(), StoreError::ClaimLost { .. }));
    store.complete_event(&taken).unwrap();
    // Settled: nothing is held any more, so nothing renews.
    assert!(!store.extend_lease(&taken, 9_000).unwrap());
}

#[test]
fn settling_an_event_records_its_runs_in_the_same_commit() {
    let dir = TempDir::new("settle");
    let store = open(&dir.db());
    store.enqueue_event(&event("razorpay", "evt_1", 0)).unwrap();
    let claim = store.claim_event(0, 1_000).unwrap().unwrap();
    let run = FinishedRun {
        run: new_run("tag-payer", "razorpay:evt_1", 5),
        steps: vec![step("find", None, StepStatus::Ok), step("tag", None, StepStatus::Failed)],
        status: RunStatus::Failed,
        error: Some("GHL answered 422".into()),
    };
    store
        .settle_event(&claim, std::slice::from_ref(&run), Some(("GHL answered 422", AfterFailure::RetryAt(50))))
        .unwrap();
    let runs = store.runs(&RunFilter { limit: 10, ..RunFilter::default() }).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].status, runs[0].error.as_deref()), (RunStatus::Failed, Some("GHL answered 422")));
    assert_eq!(runs[0].steps, run.steps);
    assert!(runs[0].finished_at_ms.is_some());
    // Queued again for later, with the error.
    let queued = store.events(&EventFilter { limit: 10, ..EventFilter::default() }).unwrap();
    assert_eq!((queued[0].status, queued[0].last_error.as_deref()), (EventStatus::Queued, Some("GHL answered 422")));

    // The retry succeeds; a stale claim is refused but the run it made is kept.
    let retry = store.claim_event(50, 1_000).unwrap().unwrap();
    let ok = FinishedRun { status: RunStatus::Succeeded, error: None, ..run.clone() };
    let err = store.settle_event(&claim, std::slice::from_ref(&ok), None).unwrap_err();
    assert!(matches!(err, StoreError::ClaimLost { .. }), "{err}");
    store.settle_event(&retry, std::slice::from_ref(&ok), None).unwrap();
    assert_eq!(store.runs(&RunFilter { limit: 10, ..RunFilter::default() }).unwrap().len(), 3);
    let done = store.events(&EventFilter { limit: 10, ..EventFilter::default() }).unwrap();
    assert_eq!(done[0].status, EventStatus::Done);
}

#[test]
fn the_queue_and_poll_cursors_survive_a_restart() {
    let dir = TempDir::new("queue-reopen");
    let path = dir.db();
    {
        let store = open(&path);
        assert_eq!(store.poll_cursor("sheet_poll").unwrap(), None);
        let found = [event("sheets", "row_1", 10), event("sheets", "row_2", 20), event("sheets", "row_1", 30)];
        let queued = store.enqueue_polled("sheet_poll", &found, "row:2").unwrap();
        assert!(matches!(queued[..], [Enqueued::New(a), Enqueued::New(b), Enqueued::Duplicate(c)] if a != b && a == c));
        store.enqueue_event(&event("razorpay", "evt_1", 40)).unwrap();
        let claim = store.claim_event(100, 60_000).unwrap().unwrap();
        assert_eq!(claim.event_id, "row_1");
    }
    let store = open(&path);
    assert_eq!(store.poll_cursor("sheet_poll").unwrap().as_deref(), Some("row:2"));
    let sheets = store.events(&EventFilter { connection: Some("sheets".into()), ..EventFilter::default() }).unwrap();
    assert_eq!(
        sheets.iter().map(|e| (e.event_id.as_str(), e.status)).collect::<Vec<_>>(),
        [("row_2", EventStatus::Queued), ("row_1", EventStatus::Claimed)]
    );
    let next = store.claim_event(100, 60_000).unwrap().unwrap();
    assert_eq!(next.event_id, "row_2");
    assert_eq!(store.events(&EventFilter { limit: 1, ..EventFilter::default() }).unwrap()[0].event_id, "evt_1");
}

#[test]
fn retry_delays_double_up_to_the_cap() {
    let policy = RetryPolicy { max_attempts: 6, first_delay_ms: 1_000, max_delay_ms: 5_000 };
    let delays: Vec<_> = (1..=6)
        .map(|attempt| match policy.after_failure(attempt, 100) {
            AfterFailure::RetryAt(at) => Some(at - 100),
            AfterFailure::DeadLetter => None,
        })
        .collect();
    assert_eq!(delays, [Some(1_000), Some(2_000), Some(4_000), Some(5_000), Some(5_000), None]);
    let default = RetryPolicy::default();
    assert_eq!(default.after_failure(u32::MAX - 1, i64::MAX), AfterFailure::DeadLetter);
    assert!(matches!(default.after_failure(7, i64::MAX), AfterFailure::RetryAt(i64::MAX)));
}

#[test]
fn an_in_memory_store_works_for_tests() {
    let store = SqliteStore::in_memory().unwrap();
    let run = store.start_run(&new_run("f", "e", 1)).unwrap();
    store.record_effect(&key("e", "s", None), &json!(1)).unwrap();
    assert_eq!(store.effect(&key("e", "s", None)).unwrap(), Some(json!(1)));
    assert_eq!(store.runs(&RunFilter::default()).unwrap()[0].id, run);
    assert_eq!(store.path(), Path::new(":memory:"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Queuing a group at once (the webhook group commit, a poll's page: multi-row inserts cut into chunks of
    /// 64, 32 … 1 rows) answers exactly as queuing its events one at a time does: same new ids, same duplicates
    /// (of earlier groups and within the group), same rows stored.
    #[test]
    fn a_group_queues_as_its_events_one_by_one(
        groups in proptest::collection::vec(
            proptest::collection::vec((0..2usize, 0..120u32), 0..150), 1..4),
    ) {
        let together = SqliteStore::in_memory().unwrap();
        let one_by_one = SqliteStore::in_memory().unwrap();
        for group in &groups {
            let events: Vec<NewEvent> =
                group.iter().map(|&(c, id)| event(["razorpay", "ghl"][c], &format!("evt_{id}"), 10)).collect();
            let grouped = together.enqueue_events(&events).unwrap();
            let single: Vec<Enqueued> = events.iter().map(|e| one_by_one.enqueue_event(e).unwrap()).collect();
            proptest::prop_assert_eq!(grouped, single);
        }
        let all = EventFilter { limit: 1_000, ..EventFilter::default() };
        let rows = |store: &SqliteStore| -> Vec<(i64, String, String)> {
            store.events(&all).unwrap().into_iter().map(|e| (e.id.0, e.connection, e.event_id)).collect()
        };
        proptest::prop_assert_eq!(rows(&together), rows(&one_by_one));
    }
}

/// One step of [`claims_never_lose_or_double_an_event`].
#[derive(Clone, Debug)]
enum QueueOp {
    Enqueue(usize),
    Claim,
    Complete(usize),
    Retry(usize, i64),
    DeadLetter(usize),
    Replay(usize),
    Reopen,
}

fn queue_op() -> impl proptest::strategy::Strategy<Value = QueueOp> {
    use proptest::prelude::*;
    prop_oneof![
        2 => (1..4usize).prop_map(QueueOp::Enqueue),
        4 => Just(QueueOp::Claim),
        2 => (0..8usize).prop_map(QueueOp::Complete),
        1 => (0..8usize, 0..300i64).prop_map(|(i, after)| QueueOp::Retry(i, after)),
        1 => (0..8usize).prop_map(QueueOp::DeadLetter),
        1 => (0..8usize).prop_map(QueueOp::Replay),
        1 => Just(QueueOp::Reopen),
    ]
}

/// What the queue should hold for one event.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Held {
    Queued { due: i64 },
    Claimed { lease_until: i64, claim: i64 },
    Finished,
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever happens between them (retries, dead letters, replays, the store reopened as after a restart),
    /// a claim hands out an event exactly when one is due or its lease has run out, never one that another
    /// worker holds, and never finds nothing while one waits: fresh events are found from a floor that moves
    /// up with every first claim, so a floor too high would lose events here.
    #[test]
    fn claims_never_lose_or_double_an_event(ops in proptest::collection::vec(queue_op(), 1..60)) {
        const LEASE: i64 = 100;
        let dir = TempDir::new("claims");
        let path = dir.db();
        let mut store = open(&path);
        let mut model: Vec<Held> = Vec::new();
        let mut claims: Vec<weft::store::ClaimedEvent> = Vec::new();
        let mut now = 0i64;
        for op in ops {
            now += 37;
            let claimed_at = |model: &[Held], i: usize| {
                let held: Vec<usize> =
                    (0..model.len()).filter(|&n| matches!(model[n], Held::Claimed { .. })).collect();
                (!held.is_empty()).then(|| held[i % held.len()])
            };
            match op {
                QueueOp::Enqueue(n) => {
                    let events: Vec<NewEvent> =
                        (0..n).map(|k| event("razorpay", &format!("evt_{}", model.len() + k), now)).collect();
                    for queued in store.enqueue_events(&events).unwrap() {
                        proptest::prop_assert_eq!(queued.id().0 as usize, model.len() + 1);
                        model.push(Held::Queued { due: now });
                    }
                }
                QueueOp::Claim => {
                    let claimable = |h: &Held| match *h {
                        Held::Queued { due } => due <= now,
                        Held::Claimed { lease_until, .. } => lease_until <= now,
                        Held::Finished => false,
                    };
                    match store.claim_event(now, LEASE).unwrap() {
                        Some(claim) => {
                            let at = claim.id.0 as usize - 1;
                            proptest::prop_assert!(claimable(&model[at]), "claimed {:?} while {:?}", claim.id, model[at]);
                            model[at] = Held::Claimed { lease_until: now + LEASE, claim: claim.claim };
                            claims.retain(|c| c.id != claim.id);
                            claims.push(claim);
                        }
                        None => {
                            let waiting: Vec<_> = model.iter().enumerate().filter(|(_, h)| claimable(h)).collect();
                            proptest::prop_assert!(waiting.is_empty(), "nothing claimed while {:?} wait", waiting);
                        }
                    }
                }
                QueueOp::Complete(i) | QueueOp::Retry(i, _) | QueueOp::DeadLetter(i) => {
                    let Some(at) = claimed_at(&model, i) else { continue };
                    let claim = claims.iter().find(|c| c.id.0 as usize == at + 1).unwrap().clone();
                    let Held::Claimed { claim: token, .. } = model[at] else { unreachable!() };
                    proptest::prop_assert_eq!(claim.claim, token);
                    match op {
                        QueueOp::Complete(_) => {
                            store.complete_event(&claim).unwrap();
                            model[at] = Held::Finished;
                        }
                        QueueOp::Retry(_, after) => {
                            store.fail_event(&claim, "boom", AfterFailure::RetryAt(now + after)).unwrap();
                            model[at] = Held::Queued { due: now + after };
                        }
                        _ => {
                            store.fail_event(&claim, "boom", AfterFailure::DeadLetter).unwrap();
                            model[at] = Held::Finished;
                        }
                    }
                }
                QueueOp::Replay(i) => {
                    let done: Vec<usize> = (0..model.len()).filter(|&n| model[n] == Held::Finished).collect();
                    let Some(&at) = (!done.is_empty()).then(|| &done[i % done.len()]) else { continue };
                    proptest::prop_assert!(store.requeue_event(weft::store::QueueId(at as i64 + 1), now).unwrap());
                    model[at] = Held::Queued { due: now };
                }
                QueueOp::Reopen => {
                    drop(store);
                    store = open(&path);
                }
            }
        }
        // In the end every event not finished is handed out, each once.
        now += 1_000;
        let mut left: Vec<i64> = std::iter::from_fn(|| store.claim_event(now, 1_000_000).unwrap())
            .map(|c| c.id.0)
            .collect();
        left.sort_unstable();
        let expected: Vec<i64> =
            (0..model.len()).filter(|&n| model[n] != Held::Finished).map(|n| n as i64 + 1).collect();
        proptest::prop_assert_eq!(left, expected);
    }
}
