//! `weft sandbox`: a local, stateful, in-memory stand-in for GHL and the partner APIs, to try flows on.
//!
//! One server mounts every catalog connector that has operations under its own prefix — `/ghl/...`,
//! `/razorpay/...`, `/payhere/...` (and `/http/...`, `/payhere-lk/...`, a project's own connectors) — so a
//! `weft.yaml` connection points at it with `base_url: http://127.0.0.1:PORT/ghl`. Wizehire publishes no API,
//! so it has no routes. Routes ([`routes`]) and request checks ([`validate`]) come from the catalog: a request
//! that fails its operation's schema gets the answer the upstream would give (GHL: 422 with class-validator
//! messages; Razorpay: 400 `BAD_REQUEST_ERROR`), an unknown route a 404 in the connector's shape.
//!
//! Every request goes through the same stages, in this order: the configured latency; the rate limit per
//! (connector, `Authorization`) ([`faults`]: 429 with `Retry-After` and GHL's `X-RateLimit-*` headers, which
//! successes carry too); fault injection at `fail_rate` (500, 502, a 35 s hold answered 504, or a dropped
//! connection); route matching and validation; then the connector's handler. [`ghl`], [`ghl_contact_list`]
//! (`GET /contacts/` in keyset pages, an index lookup per page so 20,000 contacts page as fast as 20),
//! [`ghl_payments`] (orders, fulfillments, transactions, subscriptions, invoices), [`razorpay`] and [`payhere`]
//! keep state; every other
//! catalog route answers the smallest body its response schema accepts.
//!
//! A handler that changes state raises the app's webhook events; with [`SandboxConfig::webhooks`] set they are
//! signed as the app signs them and posted after the answer ([`webhooks`]: GHL RSA-SHA256, Razorpay
//! HMAC-SHA256; queued, retried with backoff).
//!
//! A dropped connection is a response whose body stream fails before its first byte: hyper then closes the
//! connection without flushing the buffered head, so a client (reqwest) sees the connection end before a
//! response — the same error as a reset. `GET /_sandbox/state` returns the state (also the seed format; a
//! JSON seed skips the flow loader's size cap, see [`load_seed`]), `GET /_sandbox/log` every request seen
//! (method, path, query, body, status, fault; never headers, so no credentials), `GET /_sandbox/webhooks`
//! every webhook delivery with its attempts (never a signature, key or secret),
//! `POST /_sandbox/webhooks/{id}/redeliver` sends one again byte for byte, and `POST /_sandbox/reset` restores
//! the seed and clears the logs and rate-limit windows.
//!
//! Not in this slice: credential checks (any `Authorization` is accepted); state for routes other than those
//! listed above (so no events for them either: GHL orders and transactions only come from the seed, and
//! Payhere, whose API cannot create anything, sends no events); GHL events for opportunities, appointments
//! and the like.

pub mod faults;
pub mod ghl;
pub mod ghl_contact_list;
pub mod ghl_payments;
pub mod payhere;
pub mod razorpay;
pub mod routes;
pub mod state;
pub mod validate;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State as Shared};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use indexmap::IndexMap;
use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::diag::{codes, Diagnostic};
pub use faults::parse_rate_limit;
use faults::{Fault, RateLimiter, Xorshift, TIMEOUT_DELAY};
use routes::Routes;
use state::State;
use webhooks::Outbox;
pub use webhooks::WebhookConfig;

/// How the sandbox behaves. The default: no faults, no latency, GHL's 100 requests per 10 s, empty state.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The share of requests (0.0–1.0) that fail on purpose.
    pub fail_rate: f64,
    /// Added before every answer.
    pub latency: Duration,
    /// Requests per window, per connector and `Authorization` header; `None` = unlimited.
    pub rate_limit: Option<(u32, Duration)>,
    /// The initial state (see [`load_seed`] and [`state`]).
    pub seed: Option<Value>,
    /// Where to send the apps' signed events when state changes ([`webhooks`]); by default nowhere.
    pub webhooks: WebhookConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            fail_rate: 0.0,
            latency: Duration::ZERO,
            rate_limit: Some((100, Duration::from_secs(10))),
            seed: None,
            webhooks: WebhookConfig::default(),
        }
    }
}

/// Read a seed file (YAML or JSON) and check it describes a state.
///
/// JSON goes straight to serde_json, without the flow loader's size cap and spans: a 20,000-contact dump is
/// megabytes and loads in a blink. Anything else is YAML, read by the loader so a mistake points at its line.
pub fn load_seed(path: &std::path::Path) -> Result<Value, Vec<Diagnostic>> {
    let bytes = std::fs::read(path)
        .map_err(|e| vec![Diagnostic::error(codes::FILE_IO, format!("cannot read `{}`: {e}", path.display()))])?;
    let (seed, file) = match serde_json::from_slice::<Value>(&bytes) {
        Ok(seed) => (seed, crate::source::SourceFile::new(path, "")),
        Err(_) => {
            let file = crate::dsl::load::from_bytes(path, bytes).map_err(|d| vec![d])?;
            (crate::dsl::yaml::parse(&file)?.map_or(Value::Null, |node| node.to_json()), file)
        }
    };
    State::from_seed(Some(&seed)).map_err(|e| {
        vec![Diagnostic::error(codes::SCHEMA_INVALID, format!("invalid sandbox seed: {e}")).in_file(&file)]
    })?;
    Ok(seed)
}

/// Add `n` synthetic GHL contacts ([`state::generated_contacts`]) after the seed's own.
pub fn with_generated_contacts(seed: Option<Value>, n: usize) -> Result<Option<Value>, String> {
    if n == 0 {
        return Ok(seed);
    }
    let mut seed = seed.unwrap_or_else(|| json!({}));
    let ghl = seed.as_object_mut().ok_or("the seed must be a mapping")?.entry("ghl").or_insert_with(|| json!({}));
    let contacts = ghl.as_object_mut().ok_or("seed `ghl` must be a mapping")?.entry("contacts").or_insert(json!([]));
    let generated = state::generated_contacts(n);
    match contacts {
        Value::Array(list) => list.extend(generated),
        Value::Object(by_id) => {
            for contact in generated {
                by_id.insert(contact["id"].as_str().unwrap_or_default().to_string(), contact);
            }
        }
        _ => return Err("seed `ghl.contacts` must be a list or a mapping keyed by id".into()),
    }
    Ok(Some(seed))
}

/// The sandbox's app. Panics when `config.seed` does not describe a state: check it first with
/// [`load_seed`], or use [`try_router`].
pub fn router(config: SandboxConfig, catalog: &Catalog) -> Router {
    try_router(config, catalog).unwrap_or_else(|e| panic!("invalid sandbox seed: {e}"))
}

/// The sandbox's app, or why the seed does not describe a state.
pub fn try_router(config: SandboxConfig, catalog: &Catalog) -> Result<Router, String> {
    let state = State::from_seed(config.seed.as_ref())?;
    let sandbox = Arc::new(Sandbox {
        routes: Routes::from_catalog(catalog),
        state: Mutex::new(state),
        log: Mutex::new(Vec::new()),
        limiter: Mutex::new(config.rate_limit.map(|(max, window)| RateLimiter::new(max, window))),
        dice: Mutex::new(Xorshift::from_clock()),
        outbox: Outbox::new(config.webhooks.clone()),
        config,
    });
    Ok(Router::new()
        .route("/_sandbox/state", get(show_state))
        .route("/_sandbox/log", get(show_log))
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/webhooks", get(show_webhooks))
        .route("/_sandbox/webhooks/{id}/redeliver", post(redeliver))
        .fallback(dispatch)
        .with_state(sandbox))
}

/// Bind `addr` and serve until the process ends.
pub async fn serve(addr: SocketAddr, config: SandboxConfig, catalog: &Catalog) -> std::io::Result<()> {
    let app = try_router(config, catalog).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

struct Sandbox {
    config: SandboxConfig,
    routes: Routes,
    state: Mutex<State>,
    log: Mutex<Vec<Value>>,
    limiter: Mutex<Option<RateLimiter>>,
    dice: Mutex<Xorshift>,
    outbox: Arc<Outbox>,
}

/// A poisoned lock only means a handler panicked mid-update; the sandbox keeps serving what is there.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One matched request, as the connector handlers see it.
pub struct Call<'a> {
    pub connector: &'a str,
    /// `http://HOST/CONNECTOR` as the client reached it, for the links an answer carries (`nextPageUrl`).
    pub base: String,
    /// `METHOD:/path` of the operation, e.g. `POST:/contacts/upsert`.
    pub route: String,
    pub params: &'a IndexMap<String, String>,
    pub query: &'a IndexMap<String, String>,
    /// `Null` when the request had no body.
    pub body: &'a Value,
    /// The operation's documented success status.
    pub success: StatusCode,
}

/// A handler's answer.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Call<'_> {
    pub fn ok(&self, body: Value) -> Reply {
        Reply { status: self.success, body }
    }

    pub fn fail(&self, status: StatusCode, message: &str) -> Reply {
        Reply { status, body: error_body(self.connector, status, message) }
    }

    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map_or("", String::as_str)
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A non-negative integer query parameter, or its default.
    pub fn query_usize(&self, name: &str, default: usize) -> usize {
        self.query(name).and_then(|v| v.parse::<f64>().ok()).map_or(default, |n| n.max(0.0) as usize)
    }
}

/// An error body in the connector's shape (validation failures have their own: [`validate::rejection`]).
pub fn error_body(connector: &str, status: StatusCode, message: &str) -> Value {
    let reason = status.canonical_reason().unwrap_or("Error");
    match connector {
        "ghl" => json!({"statusCode": status.as_u16(), "message": message, "error": reason}),
        "razorpay" => {
            let code = if status.is_server_error() { "SERVER_ERROR" } else { "BAD_REQUEST_ERROR" };
            json!({"error": {"code": code, "description": message, "source": "NA", "step": "NA", "reason": "NA",
                "metadata": {}}})
        }
        _ => json!({"message": message}),
    }
}

async fn show_state(Shared(sb): Shared<Arc<Sandbox>>) -> Json<Value> {
    Json(serde_json::to_value(&*lock(&sb.state)).unwrap_or(Value::Null))
}

async fn show_log(Shared(sb): Shared<Arc<Sandbox>>) -> Json<Value> {
    Json(Value::Array(lock(&sb.log).clone()))
}

async fn reset(Shared(sb): Shared<Arc<Sandbox>>) -> Json<Value> {
    // The seed was checked when the router was built, so this cannot fail.
    if let Ok(fresh) = State::from_seed(sb.config.seed.as_ref()) {
        *lock(&sb.state) = fresh;
    }
    lock(&sb.log).clear();
    sb.outbox.clear();
    *lock(&sb.limiter) = sb.config.rate_limit.map(|(max, window)| RateLimiter::new(max, window));
    Json(json!({"reset": true}))
}

async fn show_webhooks(Shared(sb): Shared<Arc<Sandbox>>) -> Json<Value> {
    Json(sb.outbox.list())
}

/// Send a delivery again, byte for byte, as an at-least-once sender does.
async fn redeliver(Shared(sb): Shared<Arc<Sandbox>>, Path(id): Path<usize>) -> Response {
    if sb.outbox.redeliver(id) {
        (StatusCode::ACCEPTED, Json(json!({"redelivering": id}))).into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({"message": format!("no webhook delivery {id}")}))).into_response()
    }
}

async fn dispatch(
    Shared(sb): Shared<Arc<Sandbox>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full_path = uri.path().to_string();
    let (connector, path) = match full_path.trim_start_matches('/').split_once('/') {
        Some((c, rest)) => (c.to_string(), format!("/{rest}")),
        None => (full_path.trim_start_matches('/').to_string(), "/".to_string()),
    };
    let query: IndexMap<String, String> =
        Query::<Vec<(String, String)>>::try_from_uri(&uri).map(|q| q.0.into_iter().collect()).unwrap_or_default();
    let parsed: Option<Result<Value, String>> =
        (!body.is_empty()).then(|| serde_json::from_slice(&body).map_err(|e| e.to_string()));
    let mut entry = json!({
        "at": state::now_iso(),
        "connector": connector,
        "method": method.as_str(),
        "path": full_path,
        "operation": null,
        "query": query,
        "body": match &parsed {
            None => Value::Null,
            Some(Ok(v)) => v.clone(),
            Some(Err(_)) => Value::String(String::from_utf8_lossy(&body).into_owned()),
        },
        "status": null,
        "fault": null,
    });

    if !sb.config.latency.is_zero() {
        tokio::time::sleep(sb.config.latency).await;
    }
    if !sb.routes.by_connector.contains_key(&connector) {
        let mounted: Vec<String> = sb.routes.by_connector.keys().map(|c| format!("/{c}")).collect();
        let message = format!("no connector at `/{connector}`; the sandbox serves {}", mounted.join(", "));
        return sb.answer(entry, StatusCode::NOT_FOUND, HeaderMap::new(), json!({"message": message}));
    }
    let matched = sb.routes.find(&connector, method.as_str(), &path);
    if let Some((route, _)) = &matched {
        entry["operation"] = json!(route.op.display_name());
    }

    let mut extra = HeaderMap::new();
    if let Some(limiter) = lock(&sb.limiter).as_mut() {
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let admission = limiter.admit(&connector, authorization, Instant::now());
        extra = admission.headers();
        if !admission.allowed {
            let body = error_body(&connector, StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            return sb.answer(entry, StatusCode::TOO_MANY_REQUESTS, extra, body);
        }
    }

    let fault = Fault::roll(&mut lock(&sb.dice), sb.config.fail_rate);
    if let Some(fault) = fault {
        entry["fault"] = json!(fault.name());
        match fault {
            Fault::Internal => {
                let body = error_body(&connector, StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
                return sb.answer(entry, StatusCode::INTERNAL_SERVER_ERROR, extra, body);
            }
            Fault::BadGateway => {
                let body = error_body(&connector, StatusCode::BAD_GATEWAY, "Bad gateway");
                return sb.answer(entry, StatusCode::BAD_GATEWAY, extra, body);
            }
            Fault::Timeout => {
                // Logged now, answered after the client has long given up.
                let body = error_body(&connector, StatusCode::GATEWAY_TIMEOUT, "Gateway timeout");
                let response = sb.answer(entry, StatusCode::GATEWAY_TIMEOUT, extra, body);
                tokio::time::sleep(TIMEOUT_DELAY).await;
                return response;
            }
            Fault::Reset => {
                lock(&sb.log).push(entry);
                return dropped_connection();
            }
        }
    }

    let Some((route, params)) = matched else {
        let message = format!("Cannot {method} {path}");
        return sb.answer(entry, StatusCode::NOT_FOUND, extra, error_body(&connector, StatusCode::NOT_FOUND, &message));
    };
    let body_value = match parsed {
        Some(Err(e)) if route.op.body.is_some() => {
            let body = error_body(&connector, StatusCode::BAD_REQUEST, &format!("the body is not JSON: {e}"));
            return sb.answer(entry, StatusCode::BAD_REQUEST, extra, body);
        }
        Some(Ok(v)) => v,
        _ => Value::Null,
    };
    let problems = validate::check(&route.op, &query, (!body_value.is_null()).then_some(&body_value));
    if !problems.is_empty() {
        let (status, body) = validate::rejection(&connector, &problems);
        return sb.answer(entry, status, extra, body);
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let call = Call {
        connector: &connector,
        base: format!("http://{host}/{connector}"),
        route: route.op.route(),
        params: &params,
        query: &query,
        body: &body_value,
        success: route.success,
    };
    let (handled, events) = {
        let mut state = lock(&sb.state);
        let handled = match connector.as_str() {
            "ghl" => ghl::handle(&mut state, &call).or_else(|| ghl_payments::handle(&mut state, &call)),
            "razorpay" => razorpay::handle(&mut state, &call),
            "payhere" => payhere::handle(&mut state, &call),
            _ => None,
        };
        (handled, std::mem::take(&mut state.events))
    };
    if !events.is_empty() {
        sb.outbox.emit(events);
    }
    let reply = handled.unwrap_or_else(|| call.ok(validate::minimal(&route.op.doc, route.op.response.as_ref())));
    sb.answer(entry, reply.status, extra, reply.body)
}

impl Sandbox {
    /// Record the request with its answer, then build the response.
    fn answer(&self, mut entry: Value, status: StatusCode, headers: HeaderMap, body: Value) -> Response {
        entry["status"] = json!(status.as_u16());
        lock(&self.log).push(entry);
        (status, headers, Json(body)).into_response()
    }
}

/// A response whose body fails before its first byte: hyper drops the connection without sending the head.
fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "weft sandbox: injected connection reset",
        ))
    });
    Response::new(Body::from_stream(failing))
}
