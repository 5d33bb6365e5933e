//! The durable event queue's types. Webhooks, schedules and polls all feed one queue; workers claim events
//! with a lease, so an event whose worker died becomes due again instead of being lost.
//!
//! Lifecycle: `queued` → (claim) `claimed` → `done`, or back to `queued` with a later due time, or `dead` once
//! the retry policy gives up. Dead letters stay in the queue table so `weft replay` can queue them again.

use super::stored_words;
use serde::Serialize;
use std::fmt;

/// A received event, before it is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// The connection it arrived on (`/hooks/{connection}`), or the polling/scheduling flow's connection.
    pub connection: String,
    /// The sender's id for this event (GHL `webhookId`, Razorpay event id…): the deduplication key together
    /// with `connection`.
    pub event_id: String,
    /// The event type, e.g. `payment.captured`.
    pub kind: String,
    pub payload: Payload,
    /// Unix ms; also when the event first becomes due to be claimed.
    pub received_at_ms: i64,
}

/// An event's JSON document as text, stored as it is. A webhook's is its body exactly as received and verified:
/// ingest checks that it is JSON but never builds a `Value` of it nor re-serialises it (workers parse it when they
/// claim the event). Scheduled and polled events serialise their `Value` once. Always one JSON document that
/// parses as a `Value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload(String);

impl Payload {
    /// `body` as it is, if it is one JSON document (surrounding whitespace allowed) that parses as a `Value`.
    pub fn from_json(body: &[u8]) -> Result<Payload, serde_json::Error> {
        let _: serde_json::Value = serde_json::from_slice(body)?;
        // A parsed body is UTF-8.
        let text = std::str::from_utf8(body).map_err(<serde_json::Error as serde::de::Error>::custom)?;
        Ok(Payload(text.to_owned()))
    }

    /// Text the caller has already checked as [`Payload::from_json`] does (ingest checks it in the same pass
    /// that reads the event type and id).
    pub(crate) fn checked(text: &str) -> Payload {
        Payload(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The document as a `Value`, for whoever reads it whole (a worker running the event's flows).
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl From<&serde_json::Value> for Payload {
    fn from(value: &serde_json::Value) -> Payload {
        Payload(value.to_string())
    }
}

impl From<serde_json::Value> for Payload {
    fn from(value: serde_json::Value) -> Payload {
        Payload::from(&value)
    }
}

/// The answer to an enqueue: a re-delivered event id is acknowledged but not queued twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    New(QueueId),
    /// The same (connection, event id) was already stored as this event, in whatever state it is now.
    Duplicate(QueueId),
}

impl Enqueued {
    pub fn id(self) -> QueueId {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// The store's own id for a queued event (the sender's id is only unique per connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct QueueId(pub i64);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event a worker holds until `lease_until_ms`. Completing or failing it needs this exact claim: after the
/// lease passed to another worker, the old claim is refused.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedEvent {
    pub id: QueueId,
    pub connection: String,
    pub event_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub received_at_ms: i64,
    /// Claims so far, this one included (1 on the first run).
    pub attempt: u32,
    pub lease_until_ms: i64,
    /// The store's token for this claim (it never repeats for an event, even after a replay resets `attempt`).
    pub claim: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Queued,
    Claimed,
    Done,
    /// Gave up after its retries: a dead letter.
    Dead,
}

stored_words!(EventStatus { Queued => "queued", Claimed => "claimed", Done => "done", Dead => "dead" });

/// A stored event as `weft events` and `weft dead-letters` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueuedEvent {
    pub id: QueueId,
    pub connection: String,
    pub event_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub status: EventStatus,
    pub attempts: u32,
    pub received_at_ms: i64,
    /// When it is (or was) next due to be claimed.
    pub available_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// Which events [`super::Store::events`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub connection: Option<String>,
    pub status: Option<EventStatus>,
    /// At most this many events; 0 means no limit.
    pub limit: usize,
}

/// What happens to an event whose run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Queue it again, due at this time (unix ms).
    RetryAt(i64),
    DeadLetter,
}

/// Exponential backoff between attempts, then the dead letters. The store applies whatever the worker decides;
/// this is the worker's default rule, kept here so every worker (and every store) agrees on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Claims before an event is given up; 1 means no retry.
    pub max_attempts: u32,
    pub first_delay_ms: i64,
    pub max_delay_ms: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Eight attempts over about an hour: long enough to ride out a partner's deploy or outage.
        RetryPolicy { max_attempts: 8, first_delay_ms: 30_000, max_delay_ms: 30 * 60_000 }
    }
}

impl RetryPolicy {
    /// The decision after `attempt` (1-based) failed at `now_ms`: delays double from `first_delay_ms`.
    pub fn after_failure(&self, attempt: u32, now_ms: i64) -> AfterFailure {
        if attempt >= self.max_attempts {
            return AfterFailure::DeadLetter;
        }
        let doublings = attempt.saturating_sub(1).min(30);
        let delay = self.first_delay_ms.saturating_mul(1 << doublings).min(self.max_delay_ms);
        AfterFailure::RetryAt(now_ms.saturating_add(delay))
    }
}
