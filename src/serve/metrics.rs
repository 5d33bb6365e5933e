//! Prometheus counters for `weft serve`: plain atomics, rendered as text on `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the run-latency histogram buckets.
const BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
pub struct Metrics {
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    /// Deliveries without an event type where the connector says to read one: queued as `unknown`.
    pub untyped: AtomicU64,
    pub processed: AtomicU64,
    pub failed: AtomicU64,
    pub dead: AtomicU64,
    /// Imports from the ingest journal into the queue that failed (each retried a second later).
    pub journal_failures: AtomicU64,
    /// Bytes of accepted deliveries still in the journal when the last import failed; 0 once one succeeds.
    pub journal_waiting: AtomicU64,
    /// Bytes of journal segments that held no readable record (kept in `.damaged` files).
    pub journal_damaged: AtomicU64,
    latency_buckets: [AtomicU64; 9],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    /// Upstream answers and rate-limit waits, shared with every flow's caller.
    pub calls: std::sync::Arc<crate::engine::call::CallStats>,
}

impl Metrics {
    pub fn observe_run(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            (
                "weft_events_received_total",
                "Events accepted and queued: webhook deliveries and new poll items.",
                &self.received,
            ),
            ("weft_events_duplicate_total", "Re-delivered webhooks answered without queueing again.", &self.duplicates),
            (
                "weft_events_rejected_total",
                "Webhook deliveries rejected (bad signature, unknown connection, bad body).",
                &self.rejected,
            ),
            (
                "weft_events_untyped_total",
                "Deliveries queued as `unknown`: no event type where the connector reads it, so no flow runs them.",
                &self.untyped,
            ),
            ("weft_events_processed_total", "Events whose flows all succeeded.", &self.processed),
            ("weft_events_failed_total", "Event runs that failed (retried later or dead-lettered).", &self.failed),
            ("weft_events_dead_total", "Events moved to the dead letters after their last attempt.", &self.dead),
            (
                "weft_journal_import_failures_total",
                "Failed moves of accepted deliveries from the ingest journal into the queue (retried).",
                &self.journal_failures,
            ),
            (
                "weft_journal_damaged_bytes_total",
                "Bytes of ingest journal segments with no readable record, kept in .damaged files.",
                &self.journal_damaged,
            ),
        ];
        for (name, help, value) in counters {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP weft_journal_waiting_bytes Accepted deliveries not yet queued when the last import from the \
             ingest journal failed (0 after one succeeds).\n# TYPE weft_journal_waiting_bytes gauge\n\
             weft_journal_waiting_bytes {}",
            self.journal_waiting.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP weft_run_duration_seconds Time to run one event's flows.\n# TYPE weft_run_duration_seconds histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "weft_run_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "weft_run_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ =
            writeln!(out, "weft_run_duration_seconds_sum {}", self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "weft_run_duration_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP weft_upstream_calls_total Requests sent to the apps, by connection and answer status (`error`: \
             no answer).\n# TYPE weft_upstream_calls_total counter"
        );
        for ((connection, status), n) in self.calls.answers() {
            let _ = writeln!(out, "weft_upstream_calls_total{{connection=\"{connection}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP weft_rate_limit_waits_total Calls that waited for their connection's rate limit.\n\
             # TYPE weft_rate_limit_waits_total counter"
        );
        let waits = self.calls.waits();
        for (connection, n, _) in &waits {
            let _ = writeln!(out, "weft_rate_limit_waits_total{{connection=\"{connection}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP weft_rate_limit_wait_seconds_total Time calls spent waiting for the rate limit.\n\
             # TYPE weft_rate_limit_wait_seconds_total counter"
        );
        for (connection, _, total) in &waits {
            let _ = writeln!(
                out,
                "weft_rate_limit_wait_seconds_total{{connection=\"{connection}\"}} {}",
                total.as_secs_f64()
            );
        }
        out
    }
}
