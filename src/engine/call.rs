//! [`Caller`]: everything one upstream call needs between a rendered [`RequestSpec`] and its [`Response`].
//!
//! Per attempt: take a rate-limit token → add credentials → send → classify the outcome → maybe wait and try
//! again. The request the engine renders stays credential-free; only the copy handed to the transport carries
//! them, and every message and body in a [`CallError`] is redacted.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use super::auth::{AuthError, Authenticator};
use super::connection::ConnectionRuntime;
use super::ratelimit::{BucketKey, Clock, RateLimiter, TokioClock};
use super::retry::{self, Failure, RetryPolicy, Verdict};
use super::secrets::Redactor;
use crate::store::Store;
use crate::transport::{RequestSpec, Response, Transport, TransportError};

/// A call that got a 2xx.
#[derive(Clone, Debug, PartialEq)]
pub struct CallOutcome {
    pub response: Response,
    /// Requests sent, the successful one included.
    pub attempts: u32,
    /// Time spent waiting for the rate limit and between attempts (not sending).
    pub waited: Duration,
}

/// What kind of failure a [`CallError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallErrorKind {
    /// The app answered with a non-2xx status that was not retried, or still failed after the retries.
    Http,
    /// No answer: timeout, reset, connection refused, or another transport failure.
    Transport,
    /// Credentials could not be obtained: the OAuth token endpoint refused, or the token store failed.
    Auth,
    /// A secret could not be read (unset variable, missing file).
    Secret,
    /// The request names a connection the caller does not know.
    Config,
}

/// A failed call. Nothing in it holds a secret value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub kind: CallErrorKind,
    /// The upstream status, when the app answered.
    pub status: Option<u16>,
    /// The app's error body (connector error shape), redacted.
    pub body: Option<Value>,
    pub attempts: u32,
    /// The whole story on one line: operation, method, URL, what happened, why it was not retried.
    pub message: String,
}

struct Route {
    conn: ConnectionRuntime,
    auth: Authenticator,
    bucket: BucketKey,
}

/// What a caller's requests met, per connection: answers by status and waits for the rate limit. `weft serve`
/// shares one with its metrics.
#[derive(Debug, Default)]
pub struct CallStats {
    /// (connection, status or `error` when no answer came) → requests.
    answers: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>,
    /// connection → (calls that waited, total wait).
    waits: std::sync::Mutex<std::collections::BTreeMap<String, (u64, Duration)>>,
}

impl CallStats {
    fn answered(&self, connection: &str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        *answers.entry((connection.to_string(), status)).or_default() += 1;
    }

    fn waited(&self, connection: &str, wait: Duration) {
        let mut waits = self.waits.lock().unwrap_or_else(|p| p.into_inner());
        let entry = waits.entry(connection.to_string()).or_default();
        entry.0 += 1;
        entry.1 += wait;
    }

    /// Requests by (connection, status), in order.
    pub fn answers(&self) -> Vec<((String, String), u64)> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Rate-limit waits by connection: (how many, how long in all).
    pub fn waits(&self) -> Vec<(String, u64, Duration)> {
        self.waits.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, (n, d))| (k.clone(), *n, *d)).collect()
    }
}

/// Sends requests through their connection's rate limit, credentials and retry policy.
pub struct Caller {
    transport: Arc<dyn Transport>,
    routes: IndexMap<String, Route>,
    limiter: RateLimiter,
    policy: RetryPolicy,
    redactor: Arc<Redactor>,
    stats: Arc<CallStats>,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("connections", &self.routes.keys().collect::<Vec<_>>())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// Resolve every connection's secrets (a missing one fails only the calls that need it) on the real clock.
    pub fn new(
        transport: Arc<dyn Transport>,
        connections: IndexMap<String, ConnectionRuntime>,
        store: Option<Arc<dyn Store>>,
        policy: RetryPolicy,
    ) -> Self {
        Self::with_clock(transport, connections, store, policy, Arc::new(TokioClock::new()))
    }

    /// As [`Caller::new`], with rate limits and retry waits on `clock` (a simulated clock never sleeps).
    pub fn with_clock(
        transport: Arc<dyn Transport>,
        connections: IndexMap<String, ConnectionRuntime>,
        store: Option<Arc<dyn Store>>,
        policy: RetryPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let redactor = Arc::new(Redactor::new());
        let limiter = RateLimiter::new(clock);
        let routes = connections
            .into_iter()
            .map(|(name, conn)| {
                let auth = Authenticator::new(&conn, store.clone(), transport.clone(), redactor.clone());
                let bucket = BucketKey::new(&conn.name, conn.location_id.as_deref());
                limiter.configure(bucket.clone(), conn.rate_limit.clone());
                (name, Route { conn, auth, bucket })
            })
            .collect();
        Self { transport, routes, limiter, policy, redactor, stats: Arc::default() }
    }

    /// Count this caller's answers and rate-limit waits into `stats` (shared with a server's metrics).
    pub fn with_stats(mut self, stats: Arc<CallStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Every secret this caller has seen; scrub text with it before it leaves the process.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The same redactor, to hand to a component that outlives a borrow (a recording transport, a logger).
    pub fn shared_redactor(&self) -> Arc<Redactor> {
        self.redactor.clone()
    }

    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    pub fn connection(&self, name: &str) -> Option<&ConnectionRuntime> {
        self.routes.get(name).map(|r| &r.conn)
    }

    /// The request as it will be sent, minus credentials: the connector's fixed headers (GHL `Version`) added
    /// where the request lacks them, and the idempotency header when the connector declares one and a key is
    /// given. This is what dry-run prints and a cassette records.
    pub fn prepare(&self, req: &RequestSpec, idempotency_key: Option<&str>) -> RequestSpec {
        let mut out = req.clone();
        let Some(route) = self.routes.get(&req.connection) else { return out };
        for (name, value) in &route.conn.headers {
            if out.header(name).is_none() {
                out.headers.push((name.clone(), value.clone()));
            }
        }
        if let (Some(name), Some(key)) = (&route.conn.idempotency_header, idempotency_key) {
            if out.header(name).is_none() {
                out.headers.push((name.clone(), key.to_string()));
            }
        }
        out
    }

    /// Send `req`, retrying per the policy. `idempotency_key` (the step's effect key) is sent in the connector's
    /// idempotency header, identical on every attempt, and makes a write safe to resend after a timeout.
    pub async fn call(&self, req: &RequestSpec, idempotency_key: Option<&str>) -> Result<CallOutcome, CallError> {
        let Some(route) = self.routes.get(&req.connection) else {
            let known: Vec<&str> = self.routes.keys().map(String::as_str).collect();
            return Err(CallError {
                kind: CallErrorKind::Config,
                status: None,
                body: None,
                attempts: 0,
                message: format!(
                    "`{}`: connection `{}` is not configured (known: {})",
                    req.operation,
                    req.connection,
                    known.join(", ")
                ),
            });
        };
        let prepared = self.prepare(req, idempotency_key);
        let keyed = idempotency_key.is_some() && route.conn.idempotency_header.is_some();
        let clock = self.limiter.clock();
        let mut attempts = 0u32;
        // Attempts that count against the policy: the one resend after a token refresh does not.
        let mut counted = 0u32;
        let mut refreshed = false;
        let mut waited = Duration::ZERO;
        loop {
            attempts += 1;
            counted += 1;
            let wait = self.limiter.acquire(&route.bucket).await;
            if !wait.is_zero() {
                self.stats.waited(&req.connection, wait);
            }
            waited += wait;
            let authorization =
                route.auth.authorize().await.map_err(|e| self.auth_error(&prepared, e, attempts - 1, "not sent"))?;
            let mut sent = prepared.clone();
            authorization.apply(&mut sent);

            let answer = self.transport.send(&sent).await;
            self.stats.answered(&req.connection, answer.as_ref().ok().map(|r| r.status));
            let verdict = match answer {
                Ok(resp) => {
                    // GHL says when its window is spent, even on a success: hold the bucket so the next calls
                    // wait for the reset instead of collecting 429s.
                    let exhausted = retry::window_exhausted(&resp, chrono::Utc::now());
                    if resp.is_success() {
                        if let Some(wait) = exhausted {
                            self.limiter.hold(&route.bucket, wait);
                        }
                        return Ok(CallOutcome { response: resp, attempts, waited });
                    }
                    if resp.status == 401 && !refreshed {
                        refreshed = route
                            .auth
                            .unauthorized(&authorization)
                            .await
                            .map_err(|e| self.auth_error(&prepared, e, attempts, "HTTP 401, and no new token"))?;
                        if refreshed {
                            counted -= 1;
                            continue;
                        }
                    }
                    let verdict =
                        self.policy.decide(&sent, &route.conn.retry_statuses, keyed, Failure::Status(&resp), counted);
                    // A 429 holds the whole bucket, so that concurrent calls on this connection back off too
                    // (and a call that gives up still leaves the next ones waiting).
                    // The hold is capped like any server wait: a `Retry-After: 86400` fails this call, it does not
                    // silently park every other call for a day.
                    let hold = match (&verdict, resp.status) {
                        (Verdict::Retry { wait, .. }, 429) => Some(*wait),
                        (_, 429) => retry::server_wait(&resp, chrono::Utc::now()),
                        _ => exhausted,
                    }
                    .map(|h| h.min(self.policy.max_server_wait));
                    if let Some(wait) = hold {
                        self.limiter.hold(&route.bucket, wait);
                    }
                    match verdict {
                        Verdict::GiveUp(why) => return Err(self.http_error(&prepared, resp, attempts, &why)),
                        // The bucket hold covers the wait: the next `acquire` sleeps until it ends.
                        Verdict::Retry { wait, .. } if hold.is_some_and(|h| h >= wait) => continue,
                        retry => retry,
                    }
                }
                Err(err) => {
                    let verdict =
                        self.policy.decide(&sent, &route.conn.retry_statuses, keyed, Failure::Transport(&err), counted);
                    if let Verdict::GiveUp(why) = verdict {
                        return Err(self.transport_error(&prepared, &err, attempts, &why));
                    }
                    verdict
                }
            };
            if let Verdict::Retry { wait, .. } = verdict {
                let before = clock.now();
                clock.sleep(wait).await;
                waited += clock.now().saturating_sub(before);
            }
        }
    }

    /// `ghl.contacts.create-note POST https://…/contacts/abc/notes`, redacted (Slack's URL is a secret).
    fn describe(&self, req: &RequestSpec) -> String {
        self.redactor.redact(&format!("`{}` {} {}", req.operation, req.method, req.url()))
    }

    fn http_error(&self, req: &RequestSpec, resp: Response, attempts: u32, why: &str) -> CallError {
        let mut body = resp.body;
        self.redactor.redact_json(&mut body);
        let mut message = format!("{}: HTTP {}", self.describe(req), resp.status);
        if (300..400).contains(&resp.status) {
            if let Some(location) = resp.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("location")) {
                message.push_str(&format!(
                    " (a redirect to {} is not followed: it leaves the connection's host, and credentials would go \
                     with it)",
                    location.1
                ));
            }
        }
        message.push_str(&format!(" after {} ({why})", plural(attempts)));
        if !body.is_null() {
            message.push_str(": ");
            message.push_str(&excerpt(&body));
        }
        CallError {
            kind: CallErrorKind::Http,
            status: Some(resp.status),
            body: Some(body),
            attempts,
            message: self.redactor.redact(&message),
        }
    }

    fn transport_error(&self, req: &RequestSpec, err: &TransportError, attempts: u32, why: &str) -> CallError {
        CallError {
            kind: CallErrorKind::Transport,
            status: None,
            body: None,
            attempts,
            message: self.redactor.redact(&format!("{}: {err} after {} ({why})", self.describe(req), plural(attempts))),
        }
    }

    /// `sent`: requests that went out before the credentials failed; `context`: where in the call it happened.
    fn auth_error(&self, req: &RequestSpec, err: AuthError, sent: u32, context: &str) -> CallError {
        let (kind, status, body) = match &err {
            AuthError::Secret(_) => (CallErrorKind::Secret, None, None),
            AuthError::Token { status, body, .. } => (CallErrorKind::Auth, *status, body.clone()),
            AuthError::Store { .. } => (CallErrorKind::Auth, None, None),
        };
        CallError {
            kind,
            status,
            body,
            attempts: sent,
            message: self.redactor.redact(&format!("{}: {context}: {err}", self.describe(req))),
        }
    }
}

fn plural(attempts: u32) -> String {
    if attempts == 1 {
        "1 attempt".into()
    } else {
        format!("{attempts} attempts")
    }
}

/// A response body on one line, cut at 300 characters (a 50 KB HTML error page helps nobody in a message).
pub fn excerpt(body: &Value) -> String {
    const MAX: usize = 300;
    let text = match body {
        Value::String(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    };
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
