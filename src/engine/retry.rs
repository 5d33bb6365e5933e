//! When a failed call is sent again, and after how long.
//!
//! Delays are exponential with full jitter (a uniformly random wait between zero and `base * 2^retry`, capped):
//! many workers that failed together then come back spread out instead of in lock-step. What the server says
//! wins over the computed delay: `Retry-After` (seconds or an HTTP date) and, when the window is used up
//! (`X-RateLimit-Remaining: 0`), GHL's `X-RateLimit-Interval-Milliseconds` or `X-RateLimit-Reset`.
//!
//! Whether a call may be sent again at all depends on what the first attempt may have done upstream:
//!
//! * Reads and the idempotent writes of HTTP (PUT, DELETE) are resent on any retryable failure.
//! * A `POST`/`PATCH` is resent only when the server cannot have acted on it: the connection was never made
//!   (`TransportError::Connect`), or the server answered 429 (rejected before processing), or a 5xx that carries
//!   `Retry-After` (the server telling us it did not do it and when to come back).
//! * After a timeout, a reset connection, or a bare 500/502/503/504, the server may have created the record
//!   before failing; sending again could charge a customer or add a note twice. Such a write is resent only when
//!   the connector declares an idempotency header and the caller gave a key: the same key goes with every
//!   attempt, so the app applies the write once.
//!
//! The attempt loop is hand-written (in `call.rs`) rather than `backon`: backon's jitter adds up to one delay on
//! top of the delay (not full jitter), and each decision here needs the attempt's outcome (a 401 that triggers
//! one token refresh, a 429 that holds the whole rate-limit bucket, the write rule above), which fits a loop
//! better than backon's `when`/`adjust` hooks.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::transport::{RequestSpec, Response, TransportError};

/// How persistent to be. Attempts count every request sent, the first one included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry waits up to `base`, the second up to `2 * base`, …
    pub base: Duration,
    /// No computed delay exceeds this.
    pub cap: Duration,
    pub max_attempts: u32,
    /// A server asking for a longer wait than this is not waited for: the call fails and says so (a queue
    /// worker should reschedule the run rather than sit on the event).
    pub max_server_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_attempts: 5,
            max_server_wait: Duration::from_secs(120),
        }
    }
}

/// A failed attempt.
#[derive(Clone, Copy, Debug)]
pub enum Failure<'a> {
    Status(&'a Response),
    Transport(&'a TransportError),
}

/// Whether to try again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Retry {
        wait: Duration,
        /// The wait came from the server's headers rather than the backoff.
        from_server: bool,
    },
    /// Not retried, and why (ends the error message).
    GiveUp(String),
}

impl RetryPolicy {
    /// The computed delay before retry number `retry` (1 for the first retry): full jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.base.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1))).min(self.cap);
        ceiling.mul_f64(random_unit())
    }

    /// Decide after attempt number `attempt` (1-based) failed.
    ///
    /// `retry_statuses` are the connection's; `keyed` says whether the request carries an idempotency key.
    pub fn decide(
        &self,
        req: &RequestSpec,
        retry_statuses: &[u16],
        keyed: bool,
        failure: Failure<'_>,
        attempt: u32,
    ) -> Verdict {
        let safe_to_resend = keyed || is_idempotent(&req.method);
        let server_wait = match failure {
            Failure::Status(resp) => {
                if !retry_statuses.contains(&resp.status) {
                    return Verdict::GiveUp(format!("HTTP {} is not retried", resp.status));
                }
                if resp.status == 429 && resp.header("x-ratelimit-daily-remaining").map(str::trim) == Some("0") {
                    return Verdict::GiveUp("the daily rate limit is used up".into());
                }
                let server_wait = server_wait(resp, Utc::now());
                let server_refused =
                    resp.status == 429 || (resp.status >= 500 && retry_after(resp, Utc::now()).is_some());
                if !safe_to_resend && !server_refused {
                    return Verdict::GiveUp(format!(
                        "a {} that got HTTP {} may have been applied, and the connector declares no idempotency \
                         header to resend it safely",
                        req.method, resp.status
                    ));
                }
                server_wait
            }
            Failure::Transport(err) => {
                if !err.is_transient() {
                    return Verdict::GiveUp("the error is not transient".into());
                }
                let never_sent = matches!(err, TransportError::Connect(_));
                if !safe_to_resend && !never_sent {
                    return Verdict::GiveUp(format!(
                        "a {} that got no answer may have been applied, and the connector declares no idempotency \
                         header to resend it safely",
                        req.method
                    ));
                }
                None
            }
        };
        if attempt >= self.max_attempts {
            return Verdict::GiveUp("no attempts left".into());
        }
        match server_wait {
            Some(wait) if wait > self.max_server_wait => Verdict::GiveUp(format!(
                "the server asked to wait {} s, longer than the {} s weft waits",
                wait.as_secs(),
                self.max_server_wait.as_secs()
            )),
            Some(wait) => Verdict::Retry { wait, from_server: true },
            None => Verdict::Retry { wait: self.backoff(attempt), from_server: false },
        }
    }
}

/// Methods that RFC 9110 §9.2.2 defines as idempotent: sending one twice has the effect of sending it once.
pub fn is_idempotent(method: &str) -> bool {
    matches!(method.to_ascii_uppercase().as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
}

/// How long the server asked us to wait: the longer of `Retry-After` and an exhausted `X-RateLimit-*` window.
pub fn server_wait(resp: &Response, now: DateTime<Utc>) -> Option<Duration> {
    match (retry_after(resp, now), window_exhausted(resp, now)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (a date in the past means "now").
pub fn retry_after(resp: &Response, now: DateTime<Utc>) -> Option<Duration> {
    let value = resp.header("retry-after")?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

/// When `X-RateLimit-Remaining` is 0: the wait until the window resets. `X-RateLimit-Reset` is read as seconds
/// to wait, or as a Unix time when it is that large; else GHL's `X-RateLimit-Interval-Milliseconds` (the whole
/// window, since GHL does not say where in it we are).
pub fn window_exhausted(resp: &Response, now: DateTime<Utc>) -> Option<Duration> {
    let remaining: u64 = resp.header("x-ratelimit-remaining")?.trim().parse().ok()?;
    if remaining > 0 {
        return None;
    }
    if let Some(reset) = resp.header("x-ratelimit-reset").and_then(|v| v.trim().parse::<f64>().ok()) {
        if reset.is_finite() && reset >= 0.0 {
            const UNIX_TIME_FLOOR: f64 = 1_000_000_000.0;
            let secs = if reset >= UNIX_TIME_FLOOR { reset - now.timestamp() as f64 } else { reset };
            return Some(Duration::from_secs_f64(secs.max(0.0)));
        }
    }
    let interval: u64 = resp.header("x-ratelimit-interval-milliseconds")?.trim().parse().ok()?;
    Some(Duration::from_millis(interval))
}

/// A uniformly distributed number in [0, 1). Jitter needs no cryptographic randomness; std's `RandomState`
/// draws fresh keys for every instance, which is enough and avoids a dependency.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)]) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: serde_json::Value::Null,
        }
    }

    fn req(method: &str) -> RequestSpec {
        RequestSpec {
            connection: "c".into(),
            operation: "op".into(),
            method: method.into(),
            base_url: "http://x".into(),
            path: "/".into(),
            query: vec![],
            headers: vec![],
            body: None,
        }
    }

    #[test]
    fn retry_after_in_seconds_or_http_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(retry_after(&resp(429, &[("Retry-After", "2")]), now), Some(Duration::from_secs(2)));
        let date = resp(503, &[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")]);
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(&resp(503, &[("retry-after", "soon")]), now), None);
    }

    #[test]
    fn ghl_window_headers() {
        let now = Utc::now();
        let r = resp(429, &[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Interval-Milliseconds", "10000")]);
        assert_eq!(window_exhausted(&r, now), Some(Duration::from_secs(10)));
        let r = resp(200, &[("X-RateLimit-Remaining", "3"), ("X-RateLimit-Interval-Milliseconds", "10000")]);
        assert_eq!(window_exhausted(&r, now), None);
        let reset = (now.timestamp() + 5).to_string();
        let r = resp(429, &[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", &reset)]);
        let wait = window_exhausted(&r, now).unwrap();
        assert!(wait <= Duration::from_secs(5) && wait >= Duration::from_secs(4), "{wait:?}");
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling() {
        let p = RetryPolicy { base: Duration::from_millis(100), cap: Duration::from_millis(250), ..Default::default() };
        for retry in 1..10 {
            let d = p.backoff(retry);
            assert!(d <= Duration::from_millis(100 * 2u64.pow(retry - 1)).min(p.cap));
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(spread.len() > 1);
    }

    #[test]
    fn writes_are_resent_only_when_the_server_did_not_act() {
        let p = RetryPolicy::default();
        let s = [429, 500, 502, 503, 504];
        let retried = |v: Verdict| matches!(v, Verdict::Retry { .. });
        let reset = TransportError::Reset("closed".into());
        let refused = TransportError::Connect("refused".into());
        assert!(!retried(p.decide(&req("POST"), &s, false, Failure::Transport(&reset), 1)));
        assert!(retried(p.decide(&req("POST"), &s, true, Failure::Transport(&reset), 1)));
        assert!(retried(p.decide(&req("GET"), &s, false, Failure::Transport(&reset), 1)));
        assert!(retried(p.decide(&req("PUT"), &s, false, Failure::Transport(&reset), 1)));
        assert!(retried(p.decide(&req("POST"), &s, false, Failure::Transport(&refused), 1)));
        assert!(retried(p.decide(&req("POST"), &s, false, Failure::Status(&resp(429, &[])), 1)));
        assert!(!retried(p.decide(&req("POST"), &s, false, Failure::Status(&resp(500, &[])), 1)));
        assert!(retried(p.decide(&req("POST"), &s, false, Failure::Status(&resp(503, &[("Retry-After", "1")])), 1)));
        assert!(!retried(p.decide(&req("GET"), &s, false, Failure::Status(&resp(422, &[])), 1)));
        assert!(!retried(p.decide(&req("GET"), &s, false, Failure::Status(&resp(500, &[])), 5)));
        let long = resp(429, &[("Retry-After", "3600")]);
        assert!(!retried(p.decide(&req("GET"), &s, false, Failure::Status(&long), 1)));
    }
}
