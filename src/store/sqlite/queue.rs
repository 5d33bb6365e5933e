//! The event queue in SQLite. A claim is one `UPDATE … RETURNING` statement: it takes the write lock before it
//! picks the row, so two connections can never pick the same event, and it waits on the busy timeout rather than
//! failing.
//!
//! `claim_seq` (never reset) identifies a claim: finishing with an old claim after the lease passed to another
//! worker changes nothing and is reported as lost.
//!
//! A fresh event (never claimed: `claim_seq` 0) has no entry in the `events_due` index: queuing a webhook then
//! writes the table and the dedup index only, one b-tree page less per commit. Claims find fresh events in id
//! order, from a floor below which none is left (see [`fresh_floor`]); retried, replayed and leased events
//! (`claim_seq` > 0) through the index.

use super::{json_column, limit_arg, now_ms, where_clause, word_column};
use crate::store::{AfterFailure, ClaimedEvent, Enqueued, EventFilter, EventStatus, NewEvent, QueueId, QueuedEvent};
use rusqlite::{Connection, OptionalExtension, ToSql};

/// Callers run this inside a transaction: the insert and the duplicate's lookup must see the same table.
pub(super) fn enqueue(conn: &Connection, event: &NewEvent) -> rusqlite::Result<Enqueued> {
    // No `RETURNING id`: SQLite runs a RETURNING insert as a coroutine with a result table, which made the insert
    // a quarter slower; the new row's id is the connection's last insert rowid.
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (connection, event_id, kind, payload, status, received_at_ms, available_at_ms)
             VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5)
             ON CONFLICT (connection, event_id) DO NOTHING",
        )?
        .execute((&event.connection, &event.event_id, &event.kind, event.payload.as_str(), event.received_at_ms))?;
    if inserted == 1 {
        return Ok(Enqueued::New(QueueId(conn.last_insert_rowid())));
    }
    existing(conn, event).map(Enqueued::Duplicate)
}

/// Rows one multi-row INSERT takes, largest first: a group is cut into these sizes (13 = 8 + 4 + 1), so only
/// this many statements are ever prepared, and each stays in the connection's statement cache.
const CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// Queue many events in one go (the group commit's transaction, a poll's page), answering for each in order as
/// [`enqueue`] does. One INSERT per chunk of rows instead of one per event: SQLite's per-statement work (and
/// `AUTOINCREMENT`'s read and write of its counter) is paid once per chunk (in groups of 8, 8.2 → 7.25 µs per
/// event through the store, a fifth off the SQL alone). Callers run this inside an IMMEDIATE transaction: no
/// other connection can add rows until it ends, so the rows above the largest id before the inserts are exactly
/// the ones they added.
pub(super) fn enqueue_all(conn: &Connection, events: &[NewEvent]) -> rusqlite::Result<Vec<Enqueued>> {
    match events {
        [] => return Ok(Vec::new()),
        [event] => return Ok(vec![enqueue(conn, event)?]),
        _ => {}
    }
    let before: i64 =
        conn.prepare_cached("SELECT coalesce(max(id), 0) FROM events")?.query_row([], |row| row.get(0))?;
    let mut rest = events;
    let mut inserted = 0;
    while !rest.is_empty() {
        let rows = CHUNKS.into_iter().find(|&rows| rows <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(rows);
        let mut insert = conn.prepare_cached(insert_sql(rows))?;
        for (row, event) in chunk.iter().enumerate() {
            let at = row * 5;
            insert.raw_bind_parameter(at + 1, &event.connection)?;
            insert.raw_bind_parameter(at + 2, &event.event_id)?;
            insert.raw_bind_parameter(at + 3, &event.kind)?;
            insert.raw_bind_parameter(at + 4, event.payload.as_str())?;
            insert.raw_bind_parameter(at + 5, event.received_at_ms)?;
        }
        inserted += insert.raw_execute()?;
        rest = tail;
    }
    // Every event new and the new ids one run above the old largest: the rows were added in the order given
    // (a multi-row VALUES inserts its rows in order), so they are the events' ids in that order. No read-back.
    let last = conn.last_insert_rowid();
    if inserted == events.len() && usize::try_from(last - before).is_ok_and(|n| n == inserted) {
        return Ok((before + 1..=last).map(|id| Enqueued::New(QueueId(id))).collect());
    }
    // AUTOINCREMENT: a new row's id is larger than any id the table ever had. In id order, which is the order
    // the events were given in, so each event's row is normally the first one left.
    let mut added: std::collections::VecDeque<(i64, String, String)> = conn
        .prepare_cached("SELECT id, connection, event_id FROM events WHERE id > ?1 ORDER BY id")?
        .query_map([before], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    events
        .iter()
        .map(|event| {
            // Taken out once matched: a second delivery of the same id in this group is that row's duplicate.
            let row = added.iter().position(|(_, c, e)| *c == event.connection && *e == event.event_id);
            match row.and_then(|at| added.remove(at)) {
                Some((id, _, _)) => Ok(Enqueued::New(QueueId(id))),
                None => existing(conn, event).map(Enqueued::Duplicate),
            }
        })
        .collect()
}

/// `INSERT OR IGNORE … VALUES (…), (…)` for `rows` (one of [`CHUNKS`]) events, five parameters each.
///
/// `OR IGNORE` rather than `ON CONFLICT (connection, event_id) DO NOTHING`: with the latter a `NOT NULL` or
/// `CHECK` failure would still abort the statement, so SQLite keeps a statement journal for a statement that
/// writes many rows, copying every page it touches before changing it (~6% of the insert's instructions). Every
/// value bound here is a non-null string or integer and the status is a literal the `CHECK` allows, so the one
/// constraint a row can fail is the dedup key; were a row ever skipped for another reason, the read-back in
/// [`enqueue_all`] finds no row for its key and the whole group fails (503: the senders retry), nothing is lost.
fn insert_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        CHUNKS
            .iter()
            .map(|&rows| {
                let values: Vec<String> = (0..rows)
                    .map(|row| {
                        let p = row * 5;
                        format!("(?{}, ?{}, ?{}, ?{}, 'queued', ?{}, ?{})", p + 1, p + 2, p + 3, p + 4, p + 5, p + 5)
                    })
                    .collect();
                format!(
                    "INSERT OR IGNORE INTO events
                         (connection, event_id, kind, payload, status, received_at_ms, available_at_ms)
                     VALUES {}",
                    values.join(", ")
                )
            })
            .collect()
    });
    let at = CHUNKS.iter().position(|&r| r == rows).expect("a chunk size");
    &all[at]
}

fn existing(conn: &Connection, event: &NewEvent) -> rusqlite::Result<QueueId> {
    conn.prepare_cached("SELECT id FROM events WHERE connection = ?1 AND event_id = ?2")?
        .query_row((&event.connection, &event.event_id), |row| row.get(0).map(QueueId))
}

pub(super) fn save_cursor(conn: &Connection, poll: &str, cursor: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO poll_cursors (poll, cursor, updated_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (poll) DO UPDATE SET cursor = excluded.cursor, updated_at_ms = excluded.updated_at_ms",
    )?
    .execute((poll, cursor, now_ms()))
    .map(drop)
}

/// The largest id of an event that was ever claimed, 0 if none: no fresh event has a smaller id. Claims take
/// fresh events in id order, and a new row's id is larger than any the table ever had (`AUTOINCREMENT`), so every
/// row below a claimed one was claimed before it. Read backwards from the newest row: as many rows as are still
/// waiting for their first claim.
pub(super) fn fresh_floor(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT coalesce((SELECT id FROM events NOT INDEXED WHERE claim_seq > 0 ORDER BY id DESC LIMIT 1), 0)",
    )?
    .query_row([], |row| row.get(0))
}

/// Claim the next event: the fresh one with the lowest id above `floor` (a fresh event is due when it is queued),
/// the oldest due retry, or the oldest expired lease, whichever has the earliest due time. A claimed event whose
/// `claim` is 1 was fresh: the caller's floor may move up to its id.
pub(super) fn claim(
    conn: &Connection,
    now_ms: i64,
    lease_ms: i64,
    floor: i64,
) -> rusqlite::Result<Option<ClaimedEvent>> {
    // Oldest due first; an expired lease sorts by its original due time, so a crashed worker's event goes next.
    // Each side is its own walk that stops at the first row (the fresh side along the table from `floor`, the
    // others along `events_due`): one `WHERE … OR …` made SQLite collect and sort every due row on each claim,
    // which slowed a backlog of 50,000 events to a crawl. `claim_seq > 0` is spelled out: it lets SQLite use the
    // partial index.
    conn.prepare_cached(
        "UPDATE events SET status = 'claimed', attempts = attempts + 1, claim_seq = claim_seq + 1,
             lease_until_ms = ?2
         WHERE id = (
             SELECT id FROM (
                 SELECT * FROM (
                     SELECT id, available_at_ms FROM events NOT INDEXED
                     WHERE id > ?3 AND claim_seq = 0
                     ORDER BY id LIMIT 1)
                 UNION ALL
                 SELECT * FROM (
                     SELECT id, available_at_ms FROM events
                     WHERE claim_seq > 0 AND status = 'queued' AND available_at_ms <= ?1
                     ORDER BY available_at_ms, id LIMIT 1)
                 UNION ALL
                 SELECT * FROM (
                     SELECT id, available_at_ms FROM events
                     WHERE claim_seq > 0 AND status = 'claimed' AND lease_until_ms <= ?1
                     ORDER BY available_at_ms, id LIMIT 1))
             ORDER BY available_at_ms, id LIMIT 1)
         RETURNING id, connection, event_id, kind, payload, received_at_ms, attempts, lease_until_ms, claim_seq",
    )?
    .query_row((now_ms, now_ms.saturating_add(lease_ms), floor), |row| {
        Ok(ClaimedEvent {
            id: QueueId(row.get(0)?),
            connection: row.get(1)?,
            event_id: row.get(2)?,
            kind: row.get(3)?,
            payload: json_column(row, 4)?,
            received_at_ms: row.get(5)?,
            attempt: row.get(6)?,
            lease_until_ms: row.get(7)?,
            claim: row.get(8)?,
        })
    })
    .optional()
}

/// Move the lease of a claim still held to `until_ms`; false if `claim` no longer holds the event.
pub(super) fn extend(conn: &Connection, claim: &ClaimedEvent, until_ms: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "UPDATE events SET lease_until_ms = ?3 WHERE id = ?1 AND status = 'claimed' AND claim_seq = ?2",
    )?
    .execute((claim.id.0, claim.claim, until_ms))
    .map(|changed| changed == 1)
}

/// False if `claim` no longer holds the event.
pub(super) fn complete(conn: &Connection, claim: &ClaimedEvent) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "UPDATE events SET status = 'done', finished_at_ms = ?3, lease_until_ms = NULL, last_error = NULL
         WHERE id = ?1 AND status = 'claimed' AND claim_seq = ?2",
    )?
    .execute((claim.id.0, claim.claim, now_ms()))
    .map(|changed| changed == 1)
}

/// False if `claim` no longer holds the event.
pub(super) fn fail(conn: &Connection, claim: &ClaimedEvent, error: &str, next: AfterFailure) -> rusqlite::Result<bool> {
    let changed = match next {
        AfterFailure::RetryAt(due_ms) => conn
            .prepare_cached(
                "UPDATE events SET status = 'queued', available_at_ms = ?3, lease_until_ms = NULL, last_error = ?4
                 WHERE id = ?1 AND status = 'claimed' AND claim_seq = ?2",
            )?
            .execute((claim.id.0, claim.claim, due_ms, error))?,
        AfterFailure::DeadLetter => conn
            .prepare_cached(
                "UPDATE events SET status = 'dead', finished_at_ms = ?3, lease_until_ms = NULL, last_error = ?4
                 WHERE id = ?1 AND status = 'claimed' AND claim_seq = ?2",
            )?
            .execute((claim.id.0, claim.claim, now_ms(), error))?,
    };
    Ok(changed == 1)
}

pub(super) fn requeue(conn: &Connection, id: QueueId, now_ms: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "UPDATE events SET status = 'queued', attempts = 0, available_at_ms = ?2, finished_at_ms = NULL,
             last_error = NULL
         WHERE id = ?1 AND status IN ('done', 'dead')",
    )?
    .execute((id.0, now_ms))
    .map(|changed| changed == 1)
}

pub(super) fn list(conn: &Connection, filter: &EventFilter) -> rusqlite::Result<Vec<QueuedEvent>> {
    let mut conditions = Vec::new();
    let mut args: Vec<&dyn ToSql> = Vec::new();
    if let Some(connection) = &filter.connection {
        conditions.push("connection = ?");
        args.push(connection);
    }
    let status = filter.status.map(EventStatus::as_str);
    if let Some(status) = &status {
        conditions.push("status = ?");
        args.push(status);
    }
    let limit = limit_arg(filter.limit);
    args.push(&limit);
    let sql = format!(
        "SELECT id, connection, event_id, kind, payload, status, attempts, received_at_ms, available_at_ms,
             finished_at_ms, last_error
         FROM events{} ORDER BY id DESC LIMIT ?",
        where_clause(&conditions)
    );
    conn.prepare_cached(&sql)?
        .query_map(args.as_slice(), |row| {
            Ok(QueuedEvent {
                id: QueueId(row.get(0)?),
                connection: row.get(1)?,
                event_id: row.get(2)?,
                kind: row.get(3)?,
                payload: json_column(row, 4)?,
                status: word_column(row, 5, EventStatus::parse)?,
                attempts: row.get(6)?,
                received_at_ms: row.get(7)?,
                available_at_ms: row.get(8)?,
                finished_at_ms: row.get(9)?,
                last_error: row.get(10)?,
            })
        })?
        .collect()
}
