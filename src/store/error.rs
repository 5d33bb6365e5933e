//! Store failures. Every message names the database file, so "which state?" never needs a debugger; none
//! carries a stored value, so a token can never reach a log through an error.

use super::{QueueId, RunId};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Creating the directory or the file, or tightening its permissions.
    #[error("cannot prepare the state database {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    /// The ingest journal (`<state.db>-ingest`, src/store/journal.rs) could not be read or written at `path`.
    #[error("ingest journal {path}: {cause}")]
    Journal { path: PathBuf, cause: std::io::Error },
    /// SQLite refused `action`.
    #[error("state database {path}: cannot {action}: {cause}")]
    Sqlite { path: PathBuf, action: &'static str, cause: rusqlite::Error },
    /// Another connection held the lock for longer than the busy timeout (or SQLite could not wait for it).
    #[error("state database {path}: cannot {action}: another process keeps it locked (waited up to {timeout_ms} ms)")]
    Busy { path: PathBuf, action: &'static str, timeout_ms: u64 },
    #[error(
        "state database {path} has schema version {found}, newer than this weft understands ({supported}); \
         upgrade weft or point it at another file"
    )]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    /// A stored value that this version cannot read back (a hand-edited or damaged file).
    #[error("state database {path}: cannot {action}: a stored value is unreadable ({detail})")]
    Corrupt { path: PathBuf, action: &'static str, detail: String },
    /// WAL is what lets a server and a CLI use the file at once; SQLite refuses it on some network filesystems.
    #[error("state database {path}: SQLite cannot use WAL journaling here (it reports `{mode}`); keep the file on a local disk")]
    NoWal { path: PathBuf, mode: String },
    #[error("state database {path}: {what} {value} does not fit in a stored integer")]
    OutOfRange { path: PathBuf, what: &'static str, value: u64 },
    #[error("state database {path}: there is no run {run}")]
    UnknownRun { path: PathBuf, run: RunId },
    /// The lease ran out and another worker claimed the event, or it was already completed or failed.
    #[error("state database {path}: event {event} is no longer held by this claim (attempt {attempt})")]
    ClaimLost { path: PathBuf, event: QueueId, attempt: u32 },
}
