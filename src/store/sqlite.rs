//! The embedded store: one SQLite file (default `.weft/state.db` beside weft.yaml) in WAL mode, so `weft serve`
//! and a CLI command can use it at the same time, each waiting up to [`BUSY_TIMEOUT`] for the other's write.
//!
//! One connection per `SqliteStore` behind a mutex: every call is a few statements, and SQLite serialises
//! writers anyway. Writes that must agree share an IMMEDIATE transaction, which takes the write lock before
//! reading so that the busy timeout applies (a deferred transaction that reads and then writes can fail at
//! once with "database is locked" when another writer got in between).

mod queue;
mod schema;
mod walbuf;

use super::{
    AfterFailure, ClaimedEvent, EffectKey, Enqueued, EventFilter, FinishedRun, NewEvent, NewRun, QueueId, QueuedEvent,
    RunFilter, RunId, RunRecord, RunStatus, StepRecord, StepStatus, Store, StoreError, TokenPair,
};
use rusqlite::types::Type;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, ToSql, TransactionBehavior};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a call waits for another connection's write before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// No fresh (never claimed) event has an id at or below this: where claims start looking for one. Read and
    /// moved only while the connection is locked; -1 until the first claim reads it from the file.
    fresh_floor: std::sync::atomic::AtomicI64,
    /// Copies the WAL into the database from its own thread and connection (file-backed stores only).
    _checkpointer: Option<Checkpointer>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (or create) the state file at `path`, creating its directory, and bring its schema up to date. A
    /// new file is readable by its owner only: it holds OAuth tokens.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        configure_sqlite();
        prepare_file(path).map_err(|cause| StoreError::Io { path: path.to_owned(), cause })?;
        let conn = open_file(path).map_err(|e| sql_error(path, "open the file", e))?;
        SqliteStore::configure(conn, path.to_owned(), true)
    }

    /// A private database that disappears with the value, for tests and `weft test`.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        configure_sqlite();
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| sql_error(&path, "open an in-memory database", e))?;
        SqliteStore::configure(conn, path, false)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(mut conn: Connection, path: PathBuf, wal: bool) -> Result<SqliteStore, StoreError> {
        // The timeout first: switching to WAL and migrating may already wait for another process.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| sql_error(&path, "set the busy timeout", e))?;
        if wal {
            switch_to_wal(&conn, &path)?;
            // In WAL, NORMAL survives a crash of the process and never corrupts the file; only a power cut or an
            // OS crash may lose the last commits. FULL would fsync on every commit, i.e. on every webhook.
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| sql_error(&path, "set synchronous", e))?;
            // Checkpoints fsync the database: run on the committing thread (SQLite's default, every 1,000 WAL
            // pages) they stalled a webhook commit for milliseconds every few hundred events. A checkpointer
            // thread does them instead. A WAL left big by a burst is cut back to 256 MiB once copied (at 64 MiB the
            // writer truncated it every few seconds under load, 50-60 ms each time).
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(|e| sql_error(&path, "hand checkpoints to the checkpointer", e))?;
            conn.pragma_update(None, "journal_size_limit", 256 * 1024 * 1024)
                .map_err(|e| sql_error(&path, "limit the WAL size", e))?;
        }
        // The queue's multi-row inserts add a handful of statements to the workers' dozen: keep them all prepared.
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "foreign_keys", true).map_err(|e| sql_error(&path, "enable foreign keys", e))?;
        schema::migrate(&mut conn, &path)?;
        let checkpointer = if wal { Some(Checkpointer::start(&path)?) } else { None };
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path,
            fresh_floor: std::sync::atomic::AtomicI64::new(-1),
            _checkpointer: checkpointer,
        })
    }

    /// Run `work` on the connection and name the file and `action` in any error.
    fn with<T>(
        &self,
        action: &'static str,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        work(&mut self.lock()).map_err(|e| sql_error(&self.path, action, e))
    }

    /// Like [`SqliteStore::with`], inside one IMMEDIATE transaction.
    fn in_transaction<T>(
        &self,
        action: &'static str,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.with(action, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = work(&tx)?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a call rolled its transaction back when the guard dropped: the connection is fine.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stored_int(&self, what: &'static str, value: u64) -> Result<i64, StoreError> {
        i64::try_from(value).map_err(|_| StoreError::OutOfRange { path: self.path.clone(), what, value })
    }

    /// The effects table's item column: -1 stands for "no for_each" (see the schema).
    fn effect_item(&self, item: Option<u64>) -> Result<i64, StoreError> {
        item.map_or(Ok(-1), |i| self.stored_int("for_each item", i))
    }

    /// A finished run's steps with their numbers as stored: (item, duration) checked to fit.
    fn step_rows(&self, run: &FinishedRun) -> Result<Vec<(Option<i64>, i64)>, StoreError> {
        run.steps
            .iter()
            .map(|step| {
                let item = step.item.map(|i| self.stored_int("for_each item", i)).transpose()?;
                Ok((item, self.stored_int("step duration (ms)", step.duration_ms)?))
            })
            .collect()
    }

    fn claim_lost(&self, claim: &ClaimedEvent) -> StoreError {
        StoreError::ClaimLost { path: self.path.clone(), event: claim.id, attempt: claim.attempt }
    }
}

impl Store for SqliteStore {
    fn load_token(&self, connection: &str) -> Result<Option<TokenPair>, StoreError> {
        self.with("read the OAuth token", |conn| {
            conn.prepare_cached(
                "SELECT access_token, refresh_token, expires_at, scope FROM oauth_tokens WHERE connection = ?1",
            )?
            .query_row([connection], |row| {
                Ok(TokenPair {
                    access_token: row.get(0)?,
                    refresh_token: row.get(1)?,
                    expires_at: row.get(2)?,
                    scope: row.get(3)?,
                })
            })
            .optional()
        })
    }

    fn save_token(&self, connection: &str, token: &TokenPair) -> Result<(), StoreError> {
        self.with("save the OAuth token", |conn| {
            conn.prepare_cached(
                "INSERT INTO oauth_tokens (connection, access_token, refresh_token, expires_at, scope, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (connection) DO UPDATE SET access_token = excluded.access_token,
                     refresh_token = excluded.refresh_token, expires_at = excluded.expires_at,
                     scope = excluded.scope, updated_at_ms = excluded.updated_at_ms",
            )?
            .execute((connection, &token.access_token, &token.refresh_token, token.expires_at, &token.scope, now_ms()))
            .map(drop)
        })
    }

    fn effect(&self, key: &EffectKey) -> Result<Option<Value>, StoreError> {
        let item = self.effect_item(key.item)?;
        self.with("read a step's effect", |conn| {
            conn.prepare_cached(
                "SELECT output FROM effects WHERE flow = ?1 AND event_id = ?2 AND step = ?3 AND item = ?4",
            )?
            .query_row((&key.flow, &key.event_id, &key.step, item), |row| json_column(row, 0))
            .optional()
        })
    }

    fn record_effect(&self, key: &EffectKey, output: &Value) -> Result<(), StoreError> {
        let item = self.effect_item(key.item)?;
        // DO NOTHING on the key only (unlike INSERT OR IGNORE, which would also swallow a NOT NULL violation):
        // the first output wins, as the trait promises.
        self.with("record a step's effect", |conn| {
            conn.prepare_cached(
                "INSERT INTO effects (flow, event_id, step, item, output, recorded_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (flow, event_id, step, item) DO NOTHING",
            )?
            .execute((&key.flow, &key.event_id, &key.step, item, output.to_string(), now_ms()))
            .map(drop)
        })
    }

    fn start_run(&self, run: &NewRun) -> Result<RunId, StoreError> {
        self.with("start a run", |conn| {
            conn.prepare_cached(
                "INSERT INTO runs (flow, event_id, trigger, status, started_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 RETURNING id",
            )?
            .query_row(
                (&run.flow, &run.event_id, &run.trigger, RunStatus::Running.as_str(), run.started_at_ms),
                |row| row.get(0).map(RunId),
            )
        })
    }

    fn record_step(&self, run: RunId, step: &StepRecord) -> Result<(), StoreError> {
        let item = step.item.map(|i| self.stored_int("for_each item", i)).transpose()?;
        let duration_ms = self.stored_int("step duration (ms)", step.duration_ms)?;
        let inserted = insert_step(&self.lock(), run, step, (item, duration_ms));
        // The foreign key is what notices a run id that does not exist.
        match inserted {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                Err(StoreError::UnknownRun { path: self.path.clone(), run })
            }
            Err(e) => Err(sql_error(&self.path, "record a step", e)),
        }
    }

    fn finish_run(&self, run: RunId, status: RunStatus, error: Option<&str>) -> Result<(), StoreError> {
        let changed = self.with("finish a run", |conn| {
            conn.prepare_cached("UPDATE runs SET status = ?2, finished_at_ms = ?3, error = ?4 WHERE id = ?1")?
                .execute((run.0, status.as_str(), now_ms(), error))
        })?;
        if changed == 0 {
            return Err(StoreError::UnknownRun { path: self.path.clone(), run });
        }
        Ok(())
    }

    fn record_run(&self, run: &FinishedRun) -> Result<RunId, StoreError> {
        let steps = self.step_rows(run)?;
        self.in_transaction("record a run", |tx| insert_run(tx, run, &steps))
    }

    fn settle_event(
        &self,
        claim: &ClaimedEvent,
        runs: &[FinishedRun],
        failure: Option<(&str, AfterFailure)>,
    ) -> Result<(), StoreError> {
        let rows = runs.iter().map(|run| self.step_rows(run)).collect::<Result<Vec<_>, _>>()?;
        let held = self.in_transaction("settle an event", |tx| {
            for (run, steps) in runs.iter().zip(&rows) {
                insert_run(tx, run, steps)?;
            }
            match failure {
                None => queue::complete(tx, claim),
                Some((error, next)) => queue::fail(tx, claim, error, next),
            }
        })?;
        match held {
            true => Ok(()),
            false => Err(self.claim_lost(claim)),
        }
    }

    fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let mut conditions = Vec::new();
        let mut args: Vec<&dyn ToSql> = Vec::new();
        if let Some(flow) = &filter.flow {
            conditions.push("flow = ?");
            args.push(flow);
        }
        if let Some(event_id) = &filter.event_id {
            conditions.push("event_id = ?");
            args.push(event_id);
        }
        let limit = limit_arg(filter.limit);
        args.push(&limit);
        let sql = format!(
            "SELECT id, flow, event_id, trigger, status, started_at_ms, finished_at_ms, error FROM runs{}
             ORDER BY started_at_ms DESC, id DESC LIMIT ?",
            where_clause(&conditions)
        );
        self.with("read the run history", |conn| {
            // One snapshot for the runs and their steps, so a run never shows steps recorded after it was read.
            let tx = conn.transaction()?;
            let mut runs =
                tx.prepare_cached(&sql)?.query_map(args.as_slice(), run_row)?.collect::<Result<Vec<_>, _>>()?;
            let mut steps = tx.prepare_cached(
                "SELECT step, item, status, duration_ms, http_status, error, attempts FROM run_steps
                 WHERE run_id = ?1 ORDER BY id",
            )?;
            for run in &mut runs {
                run.steps = steps.query_map([run.id.0], step_row)?.collect::<Result<_, _>>()?;
            }
            Ok(runs)
        })
    }

    fn enqueue_event(&self, event: &NewEvent) -> Result<Enqueued, StoreError> {
        self.in_transaction("queue an event", |tx| queue::enqueue(tx, event))
    }

    fn enqueue_events(&self, events: &[NewEvent]) -> Result<Vec<Enqueued>, StoreError> {
        self.in_transaction("queue events", |tx| queue::enqueue_all(tx, events))
    }

    fn enqueue_polled(&self, poll: &str, events: &[NewEvent], cursor: &str) -> Result<Vec<Enqueued>, StoreError> {
        self.in_transaction("queue polled events", |tx| {
            let queued = queue::enqueue_all(tx, events)?;
            queue::save_cursor(tx, poll, cursor)?;
            Ok(queued)
        })
    }

    fn poll_cursor(&self, poll: &str) -> Result<Option<String>, StoreError> {
        self.with("read a poll cursor", |conn| {
            conn.prepare_cached("SELECT cursor FROM poll_cursors WHERE poll = ?1")?
                .query_row([poll], |row| row.get(0))
                .optional()
        })
    }

    fn save_poll_cursor(&self, poll: &str, cursor: &str) -> Result<(), StoreError> {
        self.with("save a poll cursor", |conn| queue::save_cursor(conn, poll, cursor))
    }

    fn claim_event(&self, now_ms: i64, lease_ms: i64) -> Result<Option<ClaimedEvent>, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        self.with("claim an event", |conn| {
            let floor = match self.fresh_floor.load(Relaxed) {
                -1 => queue::fresh_floor(conn)?,
                known => known,
            };
            let claimed = queue::claim(conn, now_ms, lease_ms, floor)?;
            // A first claim took the lowest fresh id above the floor: none is left below it.
            let moved = claimed.as_ref().filter(|c| c.claim == 1).map_or(floor, |c| c.id.0.max(floor));
            self.fresh_floor.store(moved, Relaxed);
            Ok(claimed)
        })
    }

    fn extend_lease(&self, claim: &ClaimedEvent, until_ms: i64) -> Result<bool, StoreError> {
        self.with("extend a claim's lease", |conn| queue::extend(conn, claim, until_ms))
    }

    fn complete_event(&self, claim: &ClaimedEvent) -> Result<(), StoreError> {
        match self.with("complete an event", |conn| queue::complete(conn, claim))? {
            true => Ok(()),
            false => Err(self.claim_lost(claim)),
        }
    }

    fn fail_event(&self, claim: &ClaimedEvent, error: &str, next: AfterFailure) -> Result<(), StoreError> {
        match self.with("record an event's failure", |conn| queue::fail(conn, claim, error, next))? {
            true => Ok(()),
            false => Err(self.claim_lost(claim)),
        }
    }

    fn requeue_event(&self, id: QueueId, now_ms: i64) -> Result<bool, StoreError> {
        self.with("queue an event again", |conn| queue::requeue(conn, id, now_ms))
    }

    fn events(&self, filter: &EventFilter) -> Result<Vec<QueuedEvent>, StoreError> {
        self.with("list events", |conn| queue::list(conn, filter))
    }
}

fn run_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: RunId(row.get(0)?),
        flow: row.get(1)?,
        event_id: row.get(2)?,
        trigger: row.get(3)?,
        status: word_column(row, 4, RunStatus::parse)?,
        started_at_ms: row.get(5)?,
        finished_at_ms: row.get(6)?,
        error: row.get(7)?,
        steps: Vec::new(),
    })
}

fn step_row(row: &Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        step: row.get(0)?,
        item: row.get(1)?,
        status: word_column(row, 2, StepStatus::parse)?,
        duration_ms: row.get(3)?,
        http_status: row.get(4)?,
        error: row.get(5)?,
        attempts: row.get(6)?,
    })
}

/// A JSON document stored as text.
fn json_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Value> {
    let text = row.get_ref(idx)?.as_str()?;
    serde_json::from_str(text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// A status stored as its word (see `stored_words!`).
fn word_column<T>(row: &Row<'_>, idx: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let word = row.get_ref(idx)?.as_str()?;
    parse(word).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, format!("unknown status `{word}`").into())
    })
}

fn where_clause(conditions: &[&str]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// SQLite reads a negative LIMIT as "no limit".
fn limit_arg(limit: usize) -> i64 {
    if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    }
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn sql_error(path: &Path, action: &'static str, cause: rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    match &cause {
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            StoreError::Busy { path, action, timeout_ms: BUSY_TIMEOUT.as_millis() as u64 }
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt { path, action, detail: cause.to_string() },
        _ => StoreError::Sqlite { path, action, cause },
    }
}

/// A connection to the file at `path` through the WAL-buffer VFS (src/store/sqlite/walbuf.rs), or the default
/// VFS should SQLite refuse to register it (the same file either way, only written with more system calls).
fn open_file(path: &Path) -> rusqlite::Result<Connection> {
    if walbuf::register().is_ok() {
        Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), walbuf::VFS)
    } else {
        Connection::open(path)
    }
}

/// WAL is what lets readers and one writer work at once, across processes.
fn switch_to_wal(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => return Err(StoreError::NoWal { path: path.to_owned(), mode }),
            // Changing the journal mode needs the file to itself for a moment. When another process is opening
            // the same new file, SQLite answers BUSY at once instead of calling the busy handler, so wait here.
            Err(e) if is_busy(&e) && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(sql_error(path, "switch to WAL journaling", e)),
        }
    }
}

/// Turn off SQLite's allocation statistics, once per process, before its first connection. weft never reads them
/// (`sqlite3_memory_used`), and keeping them takes a process-wide mutex around every allocation SQLite makes:
/// a webhook's insert makes dozens, so the writer, the checkpointer and the workers all queued on that one lock.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` must not run while another thread uses SQLite. Every connection weft opens
        // comes after this call (both constructors call it first, under the `Once`). Should SQLite already be
        // initialised (a library user opened a connection of its own first) the call returns SQLITE_MISUSE and
        // changes nothing: the statistics stay on, which is only slower. Should another thread be initialising
        // it at this very moment (a test opening a connection of its own), each allocation still reads the flag
        // once, so SQLite's mutex enters and leaves stay paired; only the statistics weft never reads could be
        // counted on one side of the switch and not the other.
        unsafe {
            rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int);
        }
    });
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// Create the directory and the file before SQLite does, so the file is born owner-only.
fn prepare_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        super::create_private_dir(dir)?;
    }
    let file = super::owner_only(std::fs::OpenOptions::new().write(true).create(true)).open(path)?;
    // A file made earlier by hand or by another tool may be wider open; SQLite gives its -wal and -shm files the
    // same mode as the database, so fixing this one covers them too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    #[cfg(not(unix))]
    drop(file);
    Ok(())
}

/// One finished run and its steps (`numbers`: each step's item and duration as stored).
fn insert_run(conn: &Connection, run: &FinishedRun, numbers: &[(Option<i64>, i64)]) -> rusqlite::Result<RunId> {
    let id = conn
        .prepare_cached(
            "INSERT INTO runs (flow, event_id, trigger, status, started_at_ms, finished_at_ms, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        )?
        .query_row(
            (
                &run.run.flow,
                &run.run.event_id,
                &run.run.trigger,
                run.status.as_str(),
                run.run.started_at_ms,
                now_ms(),
                &run.error,
            ),
            |row| row.get(0).map(RunId),
        )?;
    for (step, numbers) in run.steps.iter().zip(numbers) {
        insert_step(conn, id, step, *numbers)?;
    }
    Ok(id)
}

/// One step of a run (`numbers`: its item and duration as stored).
fn insert_step(conn: &Connection, run: RunId, step: &StepRecord, numbers: (Option<i64>, i64)) -> rusqlite::Result<()> {
    let (item, duration_ms) = numbers;
    conn.prepare_cached(
        "INSERT INTO run_steps (run_id, step, item, status, duration_ms, http_status, error, attempts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute((run.0, &step.step, item, step.status.as_str(), duration_ms, step.http_status, &step.error, step.attempts))
    .map(drop)
}

/// How often the checkpointer copies the WAL into the database. A page rewritten by many commits in between is
/// copied once: checkpoints every 20 ms cost ingest ~15% of its throughput against every 500 ms (1 s did
/// no better; benches/INGEST_RESULTS.md).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A thread with its own connection that copies committed WAL frames into the database (`PASSIVE`: it never
/// blocks a writer or a reader) every [`CHECKPOINT_EVERY`]. Dropping it stops the thread; the last connection to
/// close does a final checkpoint, as SQLite always does.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = open_file(path).map_err(|e| sql_error(path, "open the checkpointer's connection", e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| sql_error(path, "set the busy timeout", e))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("weft-checkpoint".into())
            .spawn(move || loop {
                // A failed checkpoint (a reader held it off) is simply tried again next time.
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if !matches!(stopped.recv_timeout(CHECKPOINT_EVERY), Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
                    return;
                }
            })
            .map_err(|cause| StoreError::Io { path: path.to_owned(), cause })?;
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
