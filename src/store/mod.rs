//! State that outlives one run: OAuth tokens, step effect keys, run history, and the durable event queue with
//! its poll cursors and dead letters.
//!
//! The engine and `weft serve` only see the [`Store`] trait, so the embedded SQLite file ([`sqlite::SqliteStore`],
//! the default at `.weft/state.db`) can later be joined by a Postgres store that lets several workers share one
//! queue. Calls are synchronous and short: the async engine holds no lock across an `.await`.

mod error;
pub mod journal;
mod queue;
pub mod sqlite;

pub use error::StoreError;
pub use queue::{
    AfterFailure, ClaimedEvent, Enqueued, EventFilter, EventStatus, NewEvent, Payload, QueueId, QueuedEvent,
    RetryPolicy,
};

use serde::Serialize;
use std::fmt;

/// Create `dir` (and what is missing above it) readable by its owner only: the state file and the ingest journal
/// hold OAuth tokens and customers' details.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// `options` creating files readable by their owner only, for the same reason.
pub(crate) fn owner_only(options: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}

/// Everything weft persists between runs. Implementations are shared between threads (`Arc<dyn Store>`).
pub trait Store: Send + Sync {
    /// The OAuth 2 token pair last saved for `connection`, if any.
    fn load_token(&self, connection: &str) -> Result<Option<TokenPair>, StoreError>;
    /// Replace the token pair of `connection` with exactly `token`. A refresh response without a new refresh
    /// token means "keep the old one": the caller carries it over, the store does not merge.
    fn save_token(&self, connection: &str, token: &TokenPair) -> Result<(), StoreError>;

    /// The output a write step produced the first time it succeeded for this event, if it did.
    fn effect(&self, key: &EffectKey) -> Result<Option<serde_json::Value>, StoreError>;
    /// Remember that the write behind `key` succeeded with `output`, so a re-delivered event reuses it instead of
    /// writing again. An existing key keeps its first output: two workers racing on a duplicate delivery both
    /// wrote upstream, and the first record is the one the engine may already have handed to later steps.
    fn record_effect(&self, key: &EffectKey, output: &serde_json::Value) -> Result<(), StoreError>;

    /// Open a run in status [`RunStatus::Running`].
    fn start_run(&self, run: &NewRun) -> Result<RunId, StoreError>;
    /// Append one step (or one `for_each` element) to a run, in the order the engine finished them.
    fn record_step(&self, run: RunId, step: &StepRecord) -> Result<(), StoreError>;
    /// Close a run; its finish time is the store's clock.
    fn finish_run(&self, run: RunId, status: RunStatus, error: Option<&str>) -> Result<(), StoreError>;
    /// Runs matching `filter`, newest first, each with its steps in recorded order.
    fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError>;
    /// Record a run that has finished, with its steps. The default makes the three calls above; a store with
    /// transactions does it in one.
    fn record_run(&self, run: &FinishedRun) -> Result<RunId, StoreError> {
        let id = self.start_run(&run.run)?;
        for step in &run.steps {
            self.record_step(id, step)?;
        }
        self.finish_run(id, run.status, run.error.as_deref())?;
        Ok(id)
    }

    /// Persist a received event before it is acknowledged. A second delivery of the same (connection, event id)
    /// is not queued again: the answer says which event already holds it.
    fn enqueue_event(&self, event: &NewEvent) -> Result<Enqueued, StoreError>;
    /// [`Store::enqueue_event`] for many deliveries in one transaction (group commit): what a busy server does
    /// so that one disk sync covers every webhook that arrived meanwhile. All are stored, or none.
    fn enqueue_events(&self, events: &[NewEvent]) -> Result<Vec<Enqueued>, StoreError>;
    /// Enqueue what one poll found and move that poll's cursor, in one transaction: a crash either keeps both or
    /// neither, so the next poll neither skips events nor queues them twice.
    fn enqueue_polled(&self, poll: &str, events: &[NewEvent], cursor: &str) -> Result<Vec<Enqueued>, StoreError>;
    /// The cursor a poll saved last (an opaque string the connector understands), if any.
    fn poll_cursor(&self, poll: &str) -> Result<Option<String>, StoreError>;
    /// Move a poll's cursor without enqueueing anything (e.g. the first poll starts from "now").
    fn save_poll_cursor(&self, poll: &str, cursor: &str) -> Result<(), StoreError>;
    /// Take the oldest event that is due at `now_ms` for `lease_ms`. Each claim counts as an attempt. An event
    /// whose lease ran out (its worker died) is due again. No two callers ever hold the same claim.
    fn claim_event(&self, now_ms: i64, lease_ms: i64) -> Result<Option<ClaimedEvent>, StoreError>;
    /// Keep holding a claimed event until `until_ms`: a worker renews the lease while it runs the event, so that
    /// a short lease (what a dead worker's events wait for) still covers a long run. False if the claim no longer
    /// holds the event (its lease ran out and another worker took it, or it was settled).
    fn extend_lease(&self, claim: &ClaimedEvent, until_ms: i64) -> Result<bool, StoreError>;
    /// The claimed event ran to the end. Fails with [`StoreError::ClaimLost`] if the lease had already passed
    /// to another worker.
    fn complete_event(&self, claim: &ClaimedEvent) -> Result<(), StoreError>;
    /// The claimed event failed with `error`: queue it again later or move it to the dead letters.
    fn fail_event(&self, claim: &ClaimedEvent, error: &str, next: AfterFailure) -> Result<(), StoreError>;
    /// Record the runs a claimed event caused and settle it — done when `failure` is `None`, else failed with
    /// the error and what comes next — in one transaction where the store has them: what a worker does after
    /// each event, so one commit covers it. The runs are kept even when the claim was lost.
    fn settle_event(
        &self,
        claim: &ClaimedEvent,
        runs: &[FinishedRun],
        failure: Option<(&str, AfterFailure)>,
    ) -> Result<(), StoreError> {
        for run in runs {
            self.record_run(run)?;
        }
        match failure {
            None => self.complete_event(claim),
            Some((error, next)) => self.fail_event(claim, error, next),
        }
    }
    /// Queue a finished or dead event again from scratch (attempts reset), due at `now_ms`, as `weft replay`
    /// does. Effect keys keep its successful writes from repeating. Returns false if the event is unknown or
    /// still queued or claimed.
    fn requeue_event(&self, id: QueueId, now_ms: i64) -> Result<bool, StoreError>;
    /// Events matching `filter`, newest first; `EventStatus::Dead` lists the dead letters.
    fn events(&self, filter: &EventFilter) -> Result<Vec<QueuedEvent>, StoreError>;
}

/// An OAuth 2 access token with what is needed to refresh it. `Debug` never shows the token values.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const REDACTED: &str = "[redacted]";
        f.debug_struct("TokenPair")
            .field("access_token", &REDACTED)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| REDACTED))
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Identifies one write: flow + trigger event id + step id + `for_each` element.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EffectKey {
    pub flow: String,
    pub event_id: String,
    pub step: String,
    /// The element index inside a `for_each` step; `None` for a step without `for_each`.
    pub item: Option<u64>,
}

/// A run as the engine starts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRun {
    pub flow: String,
    pub event_id: String,
    /// What started the run, for people: e.g. `webhook razorpay payment.captured`.
    pub trigger: String,
    pub started_at_ms: i64,
}

/// A run that has finished: how it started, its steps in order, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedRun {
    pub run: NewRun,
    pub steps: Vec<StepRecord>,
    pub status: RunStatus,
    pub error: Option<String>,
}

/// One step (or one `for_each` element) of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepRecord {
    pub step: String,
    pub item: Option<u64>,
    pub status: StepStatus,
    pub duration_ms: u64,
    /// The last HTTP status the step saw, if it made a call.
    pub http_status: Option<u16>,
    pub error: Option<String>,
    /// HTTP attempts including retries; 0 when nothing was sent.
    pub attempts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Skipped,
    Failed,
    /// The write had already succeeded for this event; its stored output was used.
    Reused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Skipped,
}

/// Which runs [`Store::runs`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub flow: Option<String>,
    pub event_id: Option<String>,
    /// At most this many runs; 0 means no limit.
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub id: RunId,
    pub flow: String,
    pub event_id: String,
    pub trigger: String,
    pub status: RunStatus,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
    pub steps: Vec<StepRecord>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The stored spelling of each status: stable, because old databases hold these words.
macro_rules! stored_words {
    ($ty:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $word),+ }
            }
            pub fn parse(word: &str) -> Option<$ty> {
                match word { $($word => Some($ty::$variant),)+ _ => None }
            }
        }
    };
}
pub(crate) use stored_words;

stored_words!(StepStatus { Ok => "ok", Skipped => "skipped", Failed => "failed", Reused => "reused" });
stored_words!(RunStatus { Running => "running", Succeeded => "succeeded", Failed => "failed", Skipped => "skipped" });
