//! `weft serve`: webhooks in, verified, persisted before answering, then run by workers.
//!
//! `POST /hooks/{connection}` checks the connector's signature scheme on the raw body, reads the event's
//! type and id, and makes it durable *before* answering 2xx, so an accepted event survives a crash: appended
//! to the ingest journal ([`Service::with_journal`], what `weft serve` uses), from which the importer moves it
//! into the queue (deduplicated on connection + event id) every [`IMPORT_EVERY`]; or, for a connection that
//! answers a replayed id with 409 (GHL) and for a service without a journal, committed to the queue through
//! the group-commit writer. A JSON body is stored as received; a form body
//! (`webhooks.content_type: form`, payhere.lk) as the JSON object of its fields. Workers claim queued events,
//! run every flow whose webhook trigger matches, and mark the event done, or failed with a retry time, or dead
//! after the last attempt. `GET /healthz` and `GET /metrics` (Prometheus) report on it.

mod lookup;
pub mod metrics;
mod poll;
mod refusals;
mod schedule;
pub mod signature;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::diag::{render, Diagnostic};
use crate::engine::call::Caller;
use crate::engine::connection::from_project;
use crate::engine::plan::{compile_flow, TriggerPlan};
use crate::engine::retry::RetryPolicy;
use crate::engine::run::{EventInput, RunStatus, Runner};
use crate::store::journal::{Imported, Journal};
use crate::store::{AfterFailure, Enqueued, NewEvent, Payload, RetryPolicy as QueueRetry, Store, StoreError};
use crate::transport::live::Live;
use crate::validate::ProjectContext;
use lookup::Lookup;
use metrics::Metrics;
use schedule::Schedule;
use signature::{Delivery, Verifier};

/// The largest webhook body accepted (larger: 413). The apps' events are a few KB; GHL's largest examples ~20 KB.
pub const MAX_BODY: usize = 1024 * 1024;

/// How long a worker owns a claimed event before another may take it over, unless it renews the lease: what
/// an event whose worker died (a killed server) waits before it runs again. A worker renews every third of it,
/// well inside, so that a slow store call or a busy machine does not let it lapse.
pub const LEASE: Duration = Duration::from_secs(60);

/// What the server needs: the store and the current [`Flows`], which a reload replaces as a whole.
pub struct Service {
    store: Arc<dyn Store>,
    flows: std::sync::RwLock<Arc<Flows>>,
    /// Where the flows came from, for reloads: the project file and the flow paths.
    project: Option<PathBuf>,
    paths: Vec<PathBuf>,
    queue_retry: QueueRetry,
    pub metrics: Metrics,
    /// Keeps a flood of refused deliveries from flooding the log.
    refusals: refusals::RefusalLog,
    wake: tokio::sync::Notify,
    /// Wakes the scheduler and the poller after a reload, so new times and intervals apply at once.
    reloaded: tokio::sync::Notify,
    /// The group-commit writer, started by the first delivery it must store (or why it could not start).
    writer: std::sync::OnceLock<Result<std::sync::mpsc::Sender<Waiting>, String>>,
    /// Where deliveries are made durable before their answer, when set ([`Service::with_journal`]); the
    /// importer ([`Service::start_importer`]) queues them. Without it each delivery is committed to the queue
    /// through the writer before its answer.
    journal: Option<Arc<Journal>>,
    /// How long a claim holds an event without renewal ([`LEASE`]).
    lease: Duration,
}

/// A delivery and where to send the outcome of its commit. The event goes back with the outcome, so that its
/// strings are freed by the server thread that allocated them (freeing another thread's memory costs the
/// allocator more, on both threads).
type Waiting = (NewEvent, tokio::sync::oneshot::Sender<(NewEvent, Result<Enqueued, String>)>);

/// How often the importer moves the journal's deliveries into the queue: how long an accepted event may wait
/// before a worker can claim it.
pub const IMPORT_EVERY: Duration = Duration::from_millis(5);
/// How often the importer looks for journals that processes now gone left behind.
const ADOPT_EVERY: Duration = Duration::from_secs(10);
/// How long the importer waits before trying again after the store failed.
const IMPORT_RETRY: Duration = Duration::from_secs(1);

/// The running importer ([`Service::start_importer`]); dropping it stops the thread after a last import.
pub struct Importer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Importer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Most deliveries one transaction takes: bounds how long the first of them waits for its answer.
const MAX_GROUP: usize = 1024;

/// Group commit. Each webhook must be in the database before its 2xx, but one transaction per webhook caps
/// ingest at one commit's cost per event; instead one thread of its own takes every delivery that arrived while
/// it was committing the last group, writes them in one transaction, answers each, and blocks again when none
/// wait. A thread rather than a task per group: no hand-off through the async workers and the blocking pool
/// between one group and the next. It ends when the [`Service`] (the only sender) is dropped.
fn start_writer(store: Arc<dyn Store>) -> std::io::Result<std::sync::mpsc::Sender<Waiting>> {
    let (tx, rx) = std::sync::mpsc::channel::<Waiting>();
    std::thread::Builder::new().name("weft-ingest".into()).spawn(move || {
        while let Ok(first) = rx.recv() {
            let group: Vec<Waiting> = std::iter::once(first).chain(rx.try_iter().take(MAX_GROUP - 1)).collect();
            let (events, replies): (Vec<NewEvent>, Vec<_>) = group.into_iter().unzip();
            // A panic in the store fails this group's deliveries (503: their senders retry), not every later one.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.enqueue_events(&events)));
            let outcomes: Vec<Result<Enqueued, String>> = match outcome {
                Ok(Ok(enqueued)) => enqueued.into_iter().map(Ok).collect(),
                Ok(Err(e)) => vec![Err(e.to_string()); events.len()],
                Err(_) => vec![Err("the store panicked".to_string()); events.len()],
            };
            for ((reply, event), outcome) in replies.into_iter().zip(events).zip(outcomes) {
                let _ = reply.send((event, outcome));
            }
        }
    })?;
    Ok(tx)
}

/// The 2xx answer to a delivery: `accepted` (in the journal, queued by the next import, which drops a
/// re-delivery), or, where it was committed to the queue before the answer, `queued` (stored now) or `duplicate`
/// (stored before, as `id`).
#[derive(Debug, serde::Serialize)]
pub struct Accepted {
    pub status: &'static str,
    /// The queue's id for the event (not known yet when `accepted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub event_id: String,
}

/// The compiled flows and how deliveries reach them. Built whole and swapped whole: a reload that fails to
/// validate leaves the running set untouched.
pub struct Flows {
    /// Connection → how its deliveries are checked and read.
    inbound: HashMap<String, Inbound>,
    /// (connection, event) → the flows it triggers.
    routes: HashMap<(String, String), Vec<Arc<Runner>>>,
    /// Scheduled flows: each fires into the queue as connection `schedule`, kind = the flow's name.
    schedules: Vec<Schedule>,
    /// Poll-triggered flows: each new item fires into the queue as connection `poll`, kind = the flow's name.
    pollers: Vec<Arc<Runner>>,
}

struct Inbound {
    verifier: Verifier,
    /// `webhooks.content_type: form`: the body is `application/x-www-form-urlencoded` (payhere.lk's notify).
    form: bool,
    event_type_path: Option<Lookup>,
    /// `webhooks.event_type` as the connector writes it, for the warning about a delivery without one.
    event_type: Option<String>,
    /// Whether such a delivery was reported yet: once per connection (and reload), not once per delivery.
    untyped_reported: std::sync::atomic::AtomicBool,
    event_id_header: Option<String>,
    event_id_path: Option<Lookup>,
    /// A repeated id is a replay (GHL): 409 instead of 200 `duplicate`.
    reject_duplicates: bool,
    /// The request headers the checks read (lower case): only these are copied out of a request.
    headers: Vec<String>,
}

impl Service {
    /// Compile every webhook flow under `flows` and prepare each connection's verifier. Invalid flows stop
    /// start-up with their diagnostics: a server never runs a flow that does not validate.
    pub fn build(ctx: &ProjectContext, flows: &[PathBuf], store: Arc<dyn Store>) -> Result<Service, Vec<Diagnostic>> {
        let metrics = Metrics::default();
        let compiled = Flows::build(ctx, flows, store.clone(), metrics.calls.clone())?;
        Ok(Service {
            store,
            flows: std::sync::RwLock::new(Arc::new(compiled)),
            project: ctx.file.as_ref().map(|f| f.path().to_path_buf()),
            paths: flows.to_vec(),
            queue_retry: QueueRetry::default(),
            metrics,
            refusals: refusals::RefusalLog::new(Instant::now()),
            wake: tokio::sync::Notify::new(),
            reloaded: tokio::sync::Notify::new(),
            writer: std::sync::OnceLock::new(),
            journal: None,
            lease: LEASE,
        })
    }

    /// Claims hold an event for `lease` between renewals instead of [`LEASE`] (tests shorten it).
    pub fn with_lease(mut self, lease: Duration) -> Service {
        self.lease = lease;
        self
    }

    /// Make deliveries durable in `journal` before answering them, instead of committing each to the queue
    /// first: what `weft serve` does. Their events reach the queue through [`Service::start_importer`] (or
    /// [`Service::import_journal`]). A connection that refuses a replayed event id (GHL's `webhookId`: 409) still
    /// commits before answering, since only the queue can tell a replay at once.
    pub fn with_journal(mut self, journal: Journal) -> Service {
        self.journal = Some(Arc::new(journal));
        self
    }

    /// The flows in force now.
    pub fn current(&self) -> Arc<Flows> {
        self.flows.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-read weft.yaml and the flows, validate and compile them, and swap them in. On any error the running
    /// flows stay, and the diagnostics say why. Returns how many flows are now served.
    pub fn reload(&self) -> Result<usize, Vec<Diagnostic>> {
        let ctx = ProjectContext::load(self.project.as_deref());
        let errors: Vec<Diagnostic> = ctx.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let fresh = Flows::build(&ctx, &self.paths, self.store.clone(), self.metrics.calls.clone())?;
        let count = fresh.flow_count();
        *self.flows.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        self.reloaded.notify_waiters();
        Ok(count)
    }
}

impl Flows {
    /// How many flows are served (a flow routed under an event's aliases too counts once).
    pub fn flow_count(&self) -> usize {
        let names: std::collections::HashSet<&str> =
            self.routes.values().flatten().map(|r| r.plan.name.as_str()).collect();
        names.len()
    }

    fn build(
        ctx: &ProjectContext,
        flows: &[PathBuf],
        store: Arc<dyn Store>,
        stats: Arc<crate::engine::call::CallStats>,
    ) -> Result<Flows, Vec<Diagnostic>> {
        let connections = from_project(ctx);
        let live =
            Live::new().map_err(|e| vec![Diagnostic::error(crate::diag::codes::RUN_HTTP_TRANSPORT, e.to_string())])?;
        let caller = Caller::new(Arc::new(live), connections.clone(), Some(store.clone()), RetryPolicy::default());
        let caller = Arc::new(caller.with_stats(stats));
        let mut routes: HashMap<(String, String), Vec<Arc<Runner>>> = HashMap::new();
        let mut schedules = Vec::new();
        let mut pollers = Vec::new();
        let mut problems = Vec::new();
        for path in crate::validate::flow_files(flows) {
            let file = match crate::dsl::load::read(&path) {
                Ok(f) => f,
                Err(d) => {
                    problems.push(d);
                    continue;
                }
            };
            match compile_flow(&file, ctx) {
                Ok(plan) => {
                    let key = match plan.trigger.clone() {
                        TriggerPlan::Webhook { connection, event } => Some((connection, event)),
                        TriggerPlan::Schedule { cron, timezone } => {
                            // Validation already parsed both; a failure here is reported, not unwrapped.
                            let zone = crate::dsl::zone::Zone::parse(timezone.as_deref());
                            match (cron.parse::<croner::Cron>(), zone) {
                                (Ok(cron), Some(zone)) => {
                                    schedules.push(Schedule { flow: plan.name.clone(), cron, zone });
                                    Some(("schedule".to_string(), plan.name.clone()))
                                }
                                _ => None,
                            }
                        }
                        TriggerPlan::Poll { .. } => Some(("poll".to_string(), plan.name.clone())),
                        TriggerPlan::Manual => None,
                    };
                    if let Some(key) = key {
                        let runner =
                            Arc::new(Runner::new(Arc::new(plan), caller.clone(), Some(store.clone()), &connections));
                        if key.0 == "poll" {
                            pollers.push(runner.clone());
                        }
                        // The other names the app sends the same event under (GHL's `INSTALL` for AppInstall).
                        for alias in event_aliases(ctx, &key.0, &key.1) {
                            routes.entry((key.0.clone(), alias)).or_default().push(runner.clone());
                        }
                        routes.entry(key).or_default().push(runner);
                    }
                }
                Err(d) => problems.extend(d.into_iter().filter(Diagnostic::is_error)),
            }
        }
        let mut inbound = HashMap::new();
        // Only connections that some flow is triggered by receive webhooks (and need a webhook secret).
        let used: std::collections::HashSet<&str> =
            routes.keys().filter(|(c, _)| c != "schedule" && c != "poll").map(|(c, _)| c.as_str()).collect();
        for (name, info) in ctx.connections.iter().filter(|(n, _)| used.contains(n.as_str())) {
            let Some(connector) = ctx.catalog.connector(&info.connector) else { continue };
            let Some(hooks) = &connector.manifest.webhooks else { continue };
            // A reference in weft.yaml (`{ env }` / `{ file }`, relative to weft.yaml) read now.
            let read = |slot: &str, reference: Option<&crate::dsl::project::SecretRef>| match reference {
                Some(r) => {
                    let base =
                        ctx.file.as_ref().and_then(|f| f.path().parent().map(Path::to_path_buf)).unwrap_or_default();
                    crate::engine::secrets::resolve(name, slot, r, &base)
                        .map(Some)
                        .map_err(|e| Diagnostic::error(crate::diag::codes::RUN_SECRET_MISSING, e.to_string()))
                }
                None => Ok(None),
            };
            let config = info.config.as_ref();
            // The project's own public key (a rotated one, a sandbox's pair) before the connector's published one.
            let (secret, own_key) = match (
                read("webhook_secret", config.and_then(|c| c.webhook_secret.as_ref())),
                read("webhook_public_key", config.and_then(|c| c.webhook_public_key.as_ref())),
            ) {
                (Ok(secret), Ok(own_key)) => (secret, own_key),
                (secret, own_key) => {
                    problems.extend(secret.err().into_iter().chain(own_key.err()));
                    continue;
                }
            };
            let public_key = own_key.as_deref().or(connector.webhook_public_key.as_deref());
            let verifier = match Verifier::new(&hooks.signature, secret, public_key) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(Diagnostic::error(
                        crate::diag::codes::RUN_SECRET_MISSING,
                        format!("connection `{name}`: {e}"),
                    ));
                    continue;
                }
            };
            let path = |p: &Option<String>| p.as_deref().and_then(Lookup::parse);
            inbound.insert(
                name.clone(),
                Inbound {
                    verifier,
                    form: hooks.content_type == crate::catalog::manifest::ContentType::Form,
                    event_type_path: path(&hooks.event_type),
                    event_type: hooks.event_type.clone(),
                    untyped_reported: std::sync::atomic::AtomicBool::new(false),
                    event_id_header: hooks.event_id.as_ref().and_then(|e| e.header.clone()),
                    event_id_path: path(&hooks.event_id.as_ref().and_then(|e| e.path.clone())),
                    reject_duplicates: hooks
                        .event_id
                        .as_ref()
                        .is_some_and(|e| e.on_duplicate == crate::catalog::manifest::OnDuplicate::Reject),
                    headers: [hooks.signature.header.as_ref(), hooks.event_id.as_ref().and_then(|e| e.header.as_ref())]
                        .into_iter()
                        .flatten()
                        .map(|h| h.to_ascii_lowercase())
                        .collect(),
                },
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Flows { inbound, routes, schedules, pollers })
    }
}

impl Service {
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/hooks/{connection}", post(receive).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)))
            .route("/healthz", get(|| async { "ok" }))
            .route("/metrics", get(metrics_text))
            .with_state(self.clone())
    }

    /// Persist one delivery. Answers before any flow runs; a duplicate is acknowledged, not queued again.
    pub async fn ingest(
        &self,
        connection: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Accepted, (StatusCode, String)> {
        self.ingest_with(self.current(), connection, headers, body).await
    }

    /// [`Service::ingest`] with the flows in force already in hand (the handler read them to pick headers).
    async fn ingest_with(
        &self,
        flows: Arc<Flows>,
        connection: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Accepted, (StatusCode, String)> {
        // Logged with why, never with the body (it may hold a customer's details).
        let reject = |status: StatusCode, msg: String| {
            self.metrics.rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match self.refusals.admit(Instant::now()) {
                refusals::Admit::Log { unlogged } => {
                    if unlogged > 0 {
                        tracing::warn!(
                            "{unlogged} more deliveries were refused in the {} s before and not logged",
                            refusals::WINDOW.as_secs()
                        );
                    }
                    tracing::warn!("{} for a delivery to /hooks/{connection}: {msg}", status.as_u16());
                }
                refusals::Admit::Quiet { first: true } => tracing::warn!(
                    "more than {} deliveries refused within {} s: the rest of this time are counted in \
                     weft_events_rejected_total, not logged one by one",
                    refusals::LINES,
                    refusals::WINDOW.as_secs()
                ),
                refusals::Admit::Quiet { first: false } => {}
            }
            Err((status, msg))
        };
        let Some(inbound) = flows.inbound.get(connection) else {
            return reject(StatusCode::NOT_FOUND, format!("no webhook connection `{connection}`"));
        };
        let now = chrono::Utc::now();
        if let Err(e) = inbound.verifier.verify(&Delivery { headers, body }, now) {
            return reject(StatusCode::UNAUTHORIZED, format!("signature check failed: {e}"));
        }
        let paths = [inbound.event_type_path.as_ref(), inbound.event_id_path.as_ref()];
        let (payload, [kind, body_id]) = if inbound.form {
            let payload = form_payload(body);
            let read = lookup::read(payload.as_str().as_bytes(), &paths).map(|(_, found)| found);
            (payload, read.ok().and_then(|found| found.try_into().ok()).unwrap_or_default())
        } else {
            // Stored as received: checked to be JSON in the same pass that reads the type and id, parsed whole
            // only by the worker that runs it.
            match lookup::read(body, &paths) {
                Ok((text, found)) => (Payload::checked(text), found.try_into().unwrap_or_default()),
                Err(e) => return reject(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")),
            }
        };
        let kind = kind.unwrap_or_else(|| {
            // Still queued (the sender gets its 2xx and stops retrying; the body is kept for inspection), but no
            // flow is routed by `unknown`: say so once, and count every one.
            if let Some(path) = &inbound.event_type {
                self.metrics.untyped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !inbound.untyped_reported.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(
                        "a delivery to /hooks/{connection} has no event type at `{path}`: it is queued as `unknown` \
                         and no flow runs it (said once per connection; weft_events_untyped_total counts them, \
                         `weft events` lists them with their bodies)"
                    );
                }
            }
            "unknown".into()
        });
        let header_id = inbound
            .event_id_header
            .as_ref()
            .and_then(|h| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(h)).map(|(_, v)| v.clone()));
        // A delivery whose sender gives no id: the same bytes are the same event.
        let event_id = header_id.or(body_id).unwrap_or_else(|| crate::engine::run::content_id("body", body));
        let event = NewEvent {
            connection: connection.to_string(),
            event_id,
            kind,
            payload,
            received_at_ms: now.timestamp_millis(),
        };
        if let Some(journal) = self.journal.as_ref().filter(|_| !inbound.reject_duplicates) {
            return match journal.append(&event) {
                Ok(()) => Ok(Accepted { status: "accepted", id: None, event_id: event.event_id }),
                // Not persisted: the sender must retry, so answer 503 rather than 2xx.
                Err(e) => Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "could not persist the event: cannot write the ingest journal in {}: {e}",
                        journal.dir().display()
                    ),
                )),
            };
        }
        let event_id = event.event_id.clone();
        match self.persist(event).await {
            Ok(Enqueued::New(id)) => {
                self.metrics.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.wake.notify_one();
                Ok(Accepted { status: "queued", id: Some(id.0), event_id })
            }
            Ok(Enqueued::Duplicate(_)) if inbound.reject_duplicates => {
                self.metrics.duplicates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                reject(StatusCode::CONFLICT, format!("event `{event_id}` was delivered before: a replay"))
            }
            Ok(Enqueued::Duplicate(id)) => {
                self.metrics.duplicates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(Accepted { status: "duplicate", id: Some(id.0), event_id })
            }
            // Not persisted: the sender must retry, so answer 503 rather than 2xx.
            Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("could not persist the event: {e}"))),
        }
    }

    /// Queue what the journal holds (see [`Journal::import`]; `adopt`: also what processes that are gone left),
    /// count it and wake the workers. `None` without a journal. Damage found is logged here.
    pub fn import_journal(&self, adopt: bool) -> Option<Result<Imported, StoreError>> {
        let journal = self.journal.as_ref()?;
        let mut imported = Imported::default();
        let outcome = journal.import(self.store.as_ref(), adopt, &mut imported);
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        // What was queued before a failure counts as queued.
        let waiting = match &outcome {
            Ok(()) => 0,
            Err(_) => {
                self.metrics.journal_failures.fetch_add(1, relaxed);
                Journal::waiting(journal.root()).map_or(0, |(bytes, _)| bytes)
            }
        };
        self.metrics.journal_waiting.store(waiting, relaxed);
        self.metrics.received.fetch_add(imported.new as u64, relaxed);
        self.metrics.duplicates.fetch_add(imported.duplicates as u64, relaxed);
        // Each wakes one waiting worker (or leaves a permit): more than there are workers would do nothing.
        for _ in 0..imported.new.min(64) {
            self.wake.notify_one();
        }
        for damage in &imported.damaged {
            self.metrics.journal_damaged.fetch_add(damage.bytes, relaxed);
            tracing::error!(
                "the ingest journal segment {} had {} unreadable bytes from offset {} (a write cut short, or a damaged \
                 disk): the events around them were queued, the bytes are kept in {} for inspection",
                damage.segment.display(),
                damage.bytes,
                damage.offset,
                damage.kept.display()
            );
        }
        Some(outcome.map(|()| imported))
    }

    /// Start the thread that moves the journal's deliveries into the queue every [`IMPORT_EVERY`] (and at once,
    /// what a previous process left); `None` without a journal. Dropping the [`Importer`] stops it after a last
    /// import.
    pub fn start_importer(self: &Arc<Self>) -> std::io::Result<Option<Importer>> {
        let Some(journal) = self.journal.clone() else { return Ok(None) };
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let svc = self.clone();
        let thread = std::thread::Builder::new().name("weft-import".into()).spawn(move || {
            let mut last_adopt: Option<Instant> = None;
            // While the store fails: since when, and when to try again.
            let mut failing: Option<(Instant, Instant)> = None;
            loop {
                let stopping =
                    !matches!(stopped.recv_timeout(IMPORT_EVERY), Err(std::sync::mpsc::RecvTimeoutError::Timeout));
                let now = Instant::now();
                let adopt = last_adopt.is_none_or(|at| now.duration_since(at) >= ADOPT_EVERY);
                let due = match failing {
                    Some((_, retry)) => now >= retry,
                    None => adopt || journal.has_appended(),
                };
                if stopping || due {
                    // A panic in the store fails this import (tried again, like any failure), not every later one.
                    let import = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        svc.import_journal(adopt && !stopping)
                    }));
                    let import = import.unwrap_or_else(|_| {
                        Some(Err(StoreError::Journal {
                            path: journal.dir().to_owned(),
                            cause: std::io::Error::other("the import panicked"),
                        }))
                    });
                    match import {
                        Some(Ok(_)) => {
                            if let Some((since, _)) = failing.take() {
                                tracing::info!(
                                    "the ingest journal's events reach the queue again (after {:.1} s)",
                                    since.elapsed().as_secs_f64()
                                );
                            }
                            if adopt {
                                last_adopt = Some(now);
                            }
                        }
                        Some(Err(e)) => {
                            if failing.is_none() || stopping {
                                tracing::warn!(
                                    "cannot move the ingest journal's events into the queue: {e}; they stay in {} \
                                     (answered deliveries are safe there) and are tried again every {} s{}",
                                    journal.dir().display(),
                                    IMPORT_RETRY.as_secs(),
                                    if stopping { ", and when weft serve next starts" } else { "" }
                                );
                            }
                            let since = failing.map_or(now, |(since, _)| since);
                            failing = Some((since, now + IMPORT_RETRY));
                        }
                        None => {}
                    }
                }
                if stopping {
                    return;
                }
            }
        })?;
        Ok(Some(Importer { stop: Some(stop), thread: Some(thread) }))
    }

    /// Store one delivery through the group commit; returns once it is in the database.
    async fn persist(&self, event: NewEvent) -> Result<Enqueued, String> {
        let writer = self
            .writer
            .get_or_init(|| start_writer(self.store.clone()).map_err(|e| format!("cannot start the writer: {e}")))
            .as_ref()
            .map_err(Clone::clone)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        writer.send((event, tx)).map_err(|_| "the writer has stopped".to_string())?;
        let (event, outcome) = rx.await.map_err(|_| "the commit was abandoned".to_string())?;
        drop(event);
        outcome
    }

    /// One worker: claim, run the event's flows, settle; sleep until woken when the queue is empty.
    pub async fn work(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            // The store is synchronous SQLite: its calls run on the blocking pool, so that a busy worker never
            // holds up the threads that answer webhooks and page through polls.
            let now = chrono::Utc::now().timestamp_millis();
            let store = self.store.clone();
            let lease = self.lease.as_millis() as i64;
            let claimed = off_thread(move || store.claim_event(now, lease)).await;
            match claimed {
                Ok(Some(claim)) => {
                    let started = Instant::now();
                    let runners = self
                        .current()
                        .routes
                        .get(&(claim.connection.clone(), claim.kind.clone()))
                        .cloned()
                        .unwrap_or_default();
                    let input = EventInput {
                        id: format!("{}:{}", claim.connection, claim.event_id),
                        body: claim.payload.clone(),
                        kind: claim.kind.clone(),
                        received_at: chrono::DateTime::from_timestamp_millis(claim.received_at_ms)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default(),
                    };
                    let run_all = async {
                        let (mut failure, mut finished) = (None, Vec::with_capacity(runners.len()));
                        for runner in &runners {
                            let started_ms = chrono::Utc::now().timestamp_millis();
                            let report = runner.run(&input).await;
                            if report.status == RunStatus::Failed {
                                failure = Some(
                                    report.error.as_ref().map(render::one_line).unwrap_or_else(|| "failed".into()),
                                );
                            }
                            let trigger = runner.plan.trigger.describe();
                            finished.push(crate::engine::run::finished_run(&trigger, started_ms, &report));
                        }
                        (failure, finished)
                    };
                    let (failure, finished) = self.renewing(&claim, run_all).await;
                    self.metrics.observe_run(started.elapsed());
                    // Flows that already succeeded reuse their stored effects on a retry: failing the event
                    // re-runs only what did not happen.
                    let next = failure
                        .as_ref()
                        .map(|_| self.queue_retry.after_failure(claim.attempt, chrono::Utc::now().timestamp_millis()));
                    match &next {
                        None => self.metrics.processed.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        Some(next) => {
                            if matches!(next, AfterFailure::DeadLetter) {
                                self.metrics.dead.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            self.metrics.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        }
                    };
                    // The runs and the event's new status in one commit.
                    let store = self.store.clone();
                    let event_id = claim.event_id.clone();
                    let settled =
                        off_thread(move || store.settle_event(&claim, &finished, failure.as_deref().zip(next))).await;
                    if let Err(e) = settled {
                        tracing::error!("could not settle event {event_id}: {e}");
                    }
                }
                Ok(None) => {
                    let mut shutdown = shutdown.clone();
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!("the queue is unavailable: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Run `work` while renewing `claim`'s lease every third of it. A renewal that finds the claim gone (this
    /// worker was stalled past its lease, and another took the event) is logged; the work goes on, and settling
    /// it reports the lost claim as before.
    async fn renewing<T>(&self, claim: &crate::store::ClaimedEvent, work: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(work);
        let every = self.lease / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = renew.tick() => {
                    let (store, held) = (self.store.clone(), claim.clone());
                    let until = chrono::Utc::now().timestamp_millis() + self.lease.as_millis() as i64;
                    match off_thread(move || store.extend_lease(&held, until)).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(
                            "event {} ({}) is no longer held by this worker: its lease ran out while it ran",
                            claim.id,
                            claim.event_id
                        ),
                        Err(e) => tracing::warn!("could not renew the lease on event {}: {e}", claim.id),
                    }
                }
            }
        }
    }

    /// Reload on SIGHUP, and when a flow file or weft.yaml changes (checked every 2 s: no file-watching
    /// dependency for what a 2-second poll of a few dozen files does).
    pub async fn watch(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = self.fingerprint();
        loop {
            #[cfg(unix)]
            let sighup = async {
                match hangup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let sighup = std::future::pending::<()>();
            let why = tokio::select! {
                _ = sighup => "SIGHUP",
                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                    let now = self.fingerprint();
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "a changed file"
                }
                _ = shutdown.changed() => return,
            };
            match self.reload() {
                Ok(n) => tracing::info!("reloaded after {why}: {n} flow(s) served"),
                Err(diags) => {
                    let diags: Vec<String> = diags.iter().map(render::one_line).collect();
                    tracing::error!("reload after {why} rejected; the running flows stay:\n  {}", diags.join("\n  "));
                }
            }
        }
    }

    /// Names, sizes and modification times of weft.yaml and every flow file.
    fn fingerprint(&self) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
        let mut files = crate::validate::flow_files(&self.paths);
        files.extend(self.project.clone());
        files
            .into_iter()
            .map(|p| {
                let meta = std::fs::metadata(&p).ok();
                let len = meta.as_ref().map_or(0, |m| m.len());
                let modified = meta.and_then(|m| m.modified().ok());
                (p, len, modified)
            })
            .collect()
    }

    /// The flows each (connection, event) runs, for the start-up banner.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .current()
            .routes
            .iter()
            .map(|((c, e), rs)| {
                format!("{c} {e} → {}", rs.iter().map(|r| r.plan.name.as_str()).collect::<Vec<_>>().join(", "))
            })
            .collect();
        out.sort();
        out
    }
}

/// A form body as the JSON object its flows read (`$.trigger.order_id`): each field a string, decoded, in the
/// order sent; a field sent twice keeps its last value, as a JSON object would. (The signature was checked on
/// the raw bytes, and refuses a signed field sent twice.)
fn form_payload(body: &[u8]) -> Payload {
    let fields: serde_json::Map<String, serde_json::Value> =
        signature::form_fields(body).into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
    Payload::from(serde_json::Value::Object(fields))
}

async fn receive(
    State(svc): State<Arc<Service>>,
    UrlPath(connection): UrlPath<String>,
    mut request: axum::extract::Request,
) -> axum::response::Response {
    // The headers are taken out of the request rather than extracted as a `HeaderMap`, which would clone every
    // one of them; then the body is read as the `Bytes` extractor reads it (the body limit's 413 included).
    let headers: HeaderMap = std::mem::take(request.headers_mut());
    let body = match <Bytes as axum::extract::FromRequest<()>>::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    // Only the headers the connection's checks read are copied (a request carries a dozen others).
    let flows = svc.current();
    let wanted = flows.inbound.get(&connection).map_or(&[][..], |i| i.headers.as_slice());
    let headers: Vec<(String, String)> = wanted
        .iter()
        .flat_map(|name| {
            let values = headers.get_all(name.as_str()).iter().filter_map(|v| v.to_str().ok());
            values.map(|v| (name.clone(), v.to_string())).collect::<Vec<_>>()
        })
        .collect();
    match svc.ingest_with(flows, &connection, &headers, &body).await {
        Ok(accepted) => (StatusCode::OK, Json(accepted)).into_response(),
        Err((status, message)) => (status, Json(json!({"error": message}))).into_response(),
    }
}

async fn metrics_text(State(svc): State<Arc<Service>>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], svc.metrics.render())
}

/// Start the server and `workers` workers; return when `shutdown` resolves (in-flight events finish first).
pub async fn run(
    svc: Arc<Service>,
    addr: SocketAddr,
    workers: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let importer = svc.start_importer()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    for _ in 0..workers.max(1) {
        handles.push(tokio::spawn(svc.clone().work(stop_rx.clone())));
    }
    handles.push(tokio::spawn(svc.clone().schedule(stop_rx.clone())));
    handles.push(tokio::spawn(svc.clone().poll(stop_rx.clone())));
    handles.push(tokio::spawn(svc.clone().watch(stop_rx.clone())));
    let app = svc.router();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    // No delivery arrives any more: the last import queues what was accepted, so nothing waits in the journal
    // for the next start (or, should the store fail now, it does, and the next start imports it).
    let _ = tokio::task::spawn_blocking(move || drop(importer)).await;
    let _ = stop_tx.send(true);
    svc.wake.notify_waiters();
    for h in handles {
        let _ = h.await;
    }
    Ok(())
}

/// The event-type values that name `event` of `connection`'s connector by another name.
fn event_aliases(ctx: &ProjectContext, connection: &str, event: &str) -> Vec<String> {
    let Some(info) = ctx.connections.get(connection) else { return Vec::new() };
    let Some(hooks) = ctx.catalog.connector(&info.connector).and_then(|c| c.manifest.webhooks.as_ref()) else {
        return Vec::new();
    };
    hooks.aliases.iter().filter(|(_, target)| target.as_str() == event).map(|(alias, _)| alias.clone()).collect()
}

/// A store call on tokio's blocking pool (the store is synchronous SQLite).
async fn off_thread<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the store call did not finish: {e}")),
    }
}
