//! The SQLite schema and its migrations. `PRAGMA user_version` says how many migrations a file has had; each
//! migration is also recorded in `schema_migrations` with its time, for whoever inspects the file by hand.
//!
//! Never edit a released migration: append a new one. Every statement is `IF NOT EXISTS`, so two processes
//! opening a fresh file at once (the second waits for the first's transaction) cannot trip over each other.

use super::{now_ms, sql_error};
use crate::store::StoreError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

const MIGRATIONS: &[&str] = &[
    // 1: tokens, effects, run history, the event queue and poll cursors.
    "
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY,
        applied_at_ms INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE IF NOT EXISTS oauth_tokens (
        connection TEXT PRIMARY KEY,
        access_token TEXT NOT NULL,
        refresh_token TEXT,
        expires_at INTEGER,
        scope TEXT,
        updated_at_ms INTEGER NOT NULL
    ) STRICT;

    -- item is -1 for a step without for_each: a NULL would make every such key distinct and defeat the
    -- primary key.
    CREATE TABLE IF NOT EXISTS effects (
        flow TEXT NOT NULL,
        event_id TEXT NOT NULL,
        step TEXT NOT NULL,
        item INTEGER NOT NULL,
        output TEXT NOT NULL,
        recorded_at_ms INTEGER NOT NULL,
        PRIMARY KEY (flow, event_id, step, item)
    ) STRICT, WITHOUT ROWID;

    -- AUTOINCREMENT: run ids are shown to people and must not come back after old runs are pruned.
    CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        flow TEXT NOT NULL,
        event_id TEXT NOT NULL,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        error TEXT
    ) STRICT;
    CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at_ms, id);
    CREATE INDEX IF NOT EXISTS runs_by_flow ON runs (flow, started_at_ms, id);
    CREATE INDEX IF NOT EXISTS runs_by_event ON runs (event_id, started_at_ms, id);

    CREATE TABLE IF NOT EXISTS run_steps (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step TEXT NOT NULL,
        item INTEGER,
        status TEXT NOT NULL CHECK (status IN ('ok', 'skipped', 'failed', 'reused')),
        duration_ms INTEGER NOT NULL,
        http_status INTEGER,
        error TEXT,
        attempts INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX IF NOT EXISTS run_steps_by_run ON run_steps (run_id, id);

    -- claim_seq counts every claim and is never reset (attempts is, by a replay): it tells a live claim from
    -- a stale one.
    CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        connection TEXT NOT NULL,
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'claimed', 'done', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        claim_seq INTEGER NOT NULL DEFAULT 0,
        received_at_ms INTEGER NOT NULL,
        available_at_ms INTEGER NOT NULL,
        lease_until_ms INTEGER,
        finished_at_ms INTEGER,
        last_error TEXT,
        UNIQUE (connection, event_id)
    ) STRICT;
    CREATE INDEX IF NOT EXISTS events_due ON events (status, available_at_ms, id);
    CREATE INDEX IF NOT EXISTS events_by_lease ON events (status, lease_until_ms);
    CREATE INDEX IF NOT EXISTS events_by_received ON events (received_at_ms, id);

    CREATE TABLE IF NOT EXISTS poll_cursors (
        poll TEXT PRIMARY KEY,
        cursor TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL
    ) STRICT;
    ",
    // 2: two fewer indexes for every webhook insert to update. Expired claims are found through `events_due`
    // (`status` leads it, and claimed rows are as few as the workers); `weft events` lists newest first by id.
    "
    DROP INDEX IF EXISTS events_by_lease;
    DROP INDEX IF EXISTS events_by_received;
    ",
    // Fresh events leave `events_due`: claims find them in id order instead (src/store/sqlite/queue.rs), so
    // queuing one writes a b-tree page less. Earlier claims went by due time, which could take a newer event a
    // millisecond ahead of an older one: an event left fresh below a claimed one is moved into the index
    // (`claim_seq` 1 while still queued: it tells claims apart, it does not count them exactly). One scan of the
    // table, once.
    "
    UPDATE events SET claim_seq = 1
    WHERE claim_seq = 0 AND id < (SELECT coalesce(max(id), 0) FROM events WHERE claim_seq > 0);
    DROP INDEX IF EXISTS events_due;
    CREATE INDEX events_due ON events (status, available_at_ms, id) WHERE claim_seq > 0;
    ",
];

/// Bring the file up to the newest schema, or refuse a file written by a newer weft.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let supported = MIGRATIONS.len() as i64;
    let version = |conn: &Connection| conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0));
    let found = version(conn).map_err(|e| sql_error(path, "read the schema version", e))?;
    if found > supported {
        return Err(StoreError::NewerSchema { path: path.to_owned(), found, supported });
    }
    if found == supported {
        return Ok(());
    }
    // Returns the version found under the write lock: another process may have migrated in the meantime.
    let apply = |conn: &mut Connection| -> rusqlite::Result<i64> {
        // IMMEDIATE takes the write lock before reading the version, so a second process waits and then sees
        // the migrations already done.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = version(&tx)?;
        if found >= supported {
            return Ok(found);
        }
        for (done, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT OR REPLACE INTO schema_migrations (version, applied_at_ms) VALUES (?1, ?2)",
                (done as i64 + 1, now_ms()),
            )?;
        }
        tx.pragma_update(None, "user_version", supported)?;
        tx.commit()?;
        Ok(found)
    };
    let found = apply(conn).map_err(|e| sql_error(path, "migrate the schema", e))?;
    if found > supported {
        return Err(StoreError::NewerSchema { path: path.to_owned(), found, supported });
    }
    Ok(())
}
