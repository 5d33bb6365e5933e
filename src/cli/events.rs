//! `weft events`, `weft dead-letters` and `weft replay`: look into the durable queue `weft serve` fills, and
//! send a finished or dead event through its flows again.

use std::path::{Path, PathBuf};

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::store::journal::Journal;
use crate::store::sqlite::SqliteStore;
use crate::store::{EventFilter, EventStatus, QueueId, Store};
use crate::validate::{find_project, ProjectContext};

/// The state database of the project in the current directory (or `--state`).
fn open(state: Option<&Path>) -> Result<SqliteStore, i32> {
    let path = match state {
        Some(p) => p.to_path_buf(),
        None => {
            let project = find_project(Path::new("./flows/x")).or_else(|| find_project(Path::new("./x")));
            let ctx = ProjectContext::load(project.as_deref());
            let base =
                project.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
            base.join(ctx.project.state.as_deref().unwrap_or(".weft/state.db"))
        }
    };
    if !path.exists() {
        eprintln!("error: no state database at `{}` (has `weft serve` or `weft run` run here?)", path.display());
        return Err(EXIT_USAGE);
    }
    SqliteStore::open(&path).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })
}

/// List queued, done or dead events, newest first.
pub fn list(state: Option<&Path>, status: Option<&str>, limit: usize) -> i32 {
    let store = match open(state) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let status = match status {
        None => None,
        Some("queued") => Some(EventStatus::Queued),
        Some("claimed") => Some(EventStatus::Claimed),
        Some("done") => Some(EventStatus::Done),
        Some("dead") => Some(EventStatus::Dead),
        Some(other) => {
            eprintln!(
                "error: unknown status `{other}`: {}",
                crate::diag::suggest(other, ["queued", "claimed", "done", "dead"])
            );
            return EXIT_USAGE;
        }
    };
    let events = match store.events(&EventFilter { connection: None, status, limit }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    outln!(
        "{:<8} {:<10} {:<12} {:<28} {:<24} {:>8}  last error",
        "id",
        "status",
        "connection",
        "event id",
        "kind",
        "attempts"
    );
    for e in &events {
        let status = serde_json::to_value(e.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        outln!(
            "{:<8} {:<10} {:<12} {:<28} {:<24} {:>8}  {}",
            e.id.0,
            status,
            e.connection,
            e.event_id,
            e.kind,
            e.attempts,
            e.last_error.as_deref().unwrap_or("").lines().next().unwrap_or("")
        );
    }
    outln!("{} event(s)", events.len());
    // Deliveries `weft serve` answered but has not queued yet (a few milliseconds' worth while it runs; after a
    // crash, until it starts again) are in none of these lists: say they exist.
    let journal = Journal::beside(store.path());
    if let Ok((bytes, segments @ 1..)) = Journal::waiting(&journal) {
        outln!(
            "and {bytes} bytes of accepted deliveries in {segments} ingest journal segment(s) under {}: `weft serve` \
             queues them within milliseconds while it runs, or when it next starts",
            journal.display()
        );
    }
    EXIT_OK
}

/// Put a done or dead event back in the queue (attempts reset); a running `weft serve` picks it up.
pub fn replay(state: Option<&Path>, id: i64) -> i32 {
    let store = match open(state) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match store.requeue_event(QueueId(id), chrono::Utc::now().timestamp_millis()) {
        Ok(true) => {
            outln!("event {id} queued again; `weft serve` will run it (writes that already succeeded are reused)");
            EXIT_OK
        }
        Ok(false) => {
            eprintln!("error: event {id} is not done or dead (or does not exist); `weft events` lists them");
            EXIT_INVALID
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}
