//! `weft run` end to end against a real HTTP server on 127.0.0.1 standing in for GHL: the exact requests the
//! server receives (order, auth, headers, bodies), a retried 500, idempotent re-runs through the SQLite
//! store, and a recorded cassette that holds no secret.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use weft::engine::call::Caller;
use weft::engine::plan::compile_flow;
use weft::engine::retry::RetryPolicy;
use weft::engine::run::{EventInput, RunStatus, Runner, StepStatus};
use weft::source::SourceFile;
use weft::store::sqlite::SqliteStore;
use weft::store::Store;
use weft::transport::live::Live;
use weft::transport::record::Record;
use weft::transport::Transport;
use weft::validate::ProjectContext;

const TOKEN: &str = "pit-test-7f3a9c1e5b2d4f60a8e1c3b5d7f9a0b2";

/// One request as the server saw it: method, path, Authorization, Version, body.
type SeenRequest = (String, String, Option<String>, Option<String>, Value);

#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<SeenRequest>>,
    note_failures_left: Mutex<u32>,
}

async fn upsert(State(s): State<Arc<Seen>>, headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    record(&s, "POST", "/contacts/upsert", &headers, body);
    (StatusCode::OK, Json(json!({"new": false, "contact": {"id": "nmFmQEsNgz6AVpgLVUJ0", "token_echo": TOKEN}})))
}

async fn tags(
    State(s): State<Arc<Seen>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    record(&s, "POST", &format!("/contacts/{id}/tags"), &headers, body.clone());
    (StatusCode::CREATED, Json(json!({"tags": body["tags"]})))
}

/// Answers the first note with GHL's 429 (the server did not process it, so a write may be retried).
async fn notes(
    State(s): State<Arc<Seen>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, HeaderMap, Json<Value>) {
    record(&s, "POST", &format!("/contacts/{id}/notes"), &headers, body);
    let mut left = s.note_failures_left.lock().unwrap();
    let mut out = HeaderMap::new();
    if *left > 0 {
        *left -= 1;
        out.insert("retry-after", "1".parse().unwrap());
        return (StatusCode::TOO_MANY_REQUESTS, out, Json(json!({"message": "Too many requests"})));
    }
    (StatusCode::CREATED, out, Json(json!({"note": {"id": "NOTE4XgbBBhjUWbsTUx5"}})))
}

fn record(s: &Seen, method: &str, path: &str, headers: &HeaderMap, body: Value) {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(String::from);
    s.requests.lock().unwrap().push((method.into(), path.into(), h("authorization"), h("version"), body));
}

async fn start(seen: Arc<Seen>) -> String {
    let app = Router::new()
        .route("/contacts/upsert", post(upsert))
        .route("/contacts/{id}/tags", post(tags))
        .route("/contacts/{id}/notes", post(notes))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn project(base_url: &str) -> ProjectContext {
    let text = format!(
        "connections:\n  ghl:\n    connector: ghl\n    base_url: {base_url}\n    auth: {{ token: {{ env: WEFT_TEST_RUN_LIVE_GHL_TOKEN }} }}\n    location_id: ve9EPM428h8vShlRW1KT\n  razorpay:\n    connector: razorpay\n    auth: {{ username: {{ env: X_ID }}, password: {{ env: X_SECRET }} }}\n"
    );
    let ctx = ProjectContext::from_source(&SourceFile::new("weft.yaml", text));
    assert!(ctx.diagnostics.is_empty(), "{:?}", ctx.diagnostics);
    ctx
}

fn connections(ctx: &ProjectContext) -> indexmap::IndexMap<String, weft::engine::connection::ConnectionRuntime> {
    weft::engine::connection::from_project(ctx)
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-run-live-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("state.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_against_a_real_server_retries_and_never_repeats_a_write() {
    // SAFETY of the test: no other test in this binary reads this variable.
    std::env::set_var("WEFT_TEST_RUN_LIVE_GHL_TOKEN", TOKEN);
    let seen = Arc::new(Seen { note_failures_left: Mutex::new(1), ..Seen::default() });
    let base = start(seen.clone()).await;
    let ctx = project(&base);
    let flow =
        SourceFile::new("payment-captured.yaml", include_str!("fixtures/payment-captured.flow.yaml").to_string());
    let plan = Arc::new(compile_flow(&flow, &ctx).expect("the shipped flow compiles"));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&temp_db("idem")).unwrap());
    let live: Arc<dyn Transport> = Arc::new(Live::new().unwrap());
    let recorder = Arc::new(Record::new(live));
    let policy = RetryPolicy { base: std::time::Duration::from_millis(5), ..RetryPolicy::default() };
    let caller = Arc::new(Caller::new(recorder.clone(), connections(&ctx), Some(store.clone()), policy));
    let runner = Runner::new(plan, caller.clone(), Some(store.clone()), &connections(&ctx));
    let body: Value = serde_json::from_str(include_str!("fixtures/payment.captured.json")).unwrap();
    let event = EventInput {
        id: "evt_2Xw3J5n3Xh7E0o".into(),
        body,
        kind: "payment.captured".into(),
        received_at: "2026-01-01T00:00:00Z".into(),
    };

    let first = runner.run(&event).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    let requests = seen.requests.lock().unwrap().clone();
    let routes: Vec<(&str, &str)> = requests.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    // The note got a 429 once and was retried after Retry-After: four requests, in order.
    assert_eq!(
        routes,
        [
            ("POST", "/contacts/upsert"),
            ("POST", "/contacts/nmFmQEsNgz6AVpgLVUJ0/tags"),
            ("POST", "/contacts/nmFmQEsNgz6AVpgLVUJ0/notes"),
            ("POST", "/contacts/nmFmQEsNgz6AVpgLVUJ0/notes")
        ]
    );
    for r in &requests {
        assert_eq!(r.2.as_deref(), Some(format!("Bearer {TOKEN}").as_str()), "auth header");
        assert_eq!(r.3.as_deref(), Some("2021-07-28"), "GHL Version header");
    }
    assert_eq!(
        requests[0].4,
        json!({"locationId": "ve9EPM428h8vShlRW1KT", "email": "gaurav.kumar@example.com", "phone": "+919876543210", "source": "razorpay"})
    );
    assert_eq!(requests[1].4, json!({"tags": ["razorpay-paid"]}));
    assert_eq!(requests[2].4["body"], "Razorpay payment pay_DESlfW9H8K9uqM: 1.00 INR captured via netbanking.");
    assert_eq!(first.steps[2].attempts, 2);

    // The same event again (a webhook re-delivery): every write is reused, nothing is sent.
    let second = runner.run(&event).await;
    assert_eq!(second.status, RunStatus::Succeeded);
    assert!(
        second.steps.iter().all(|s| s.status == StepStatus::Reused),
        "{:?}",
        second.steps.iter().map(|s| s.status).collect::<Vec<_>>()
    );
    assert_eq!(seen.requests.lock().unwrap().len(), 4, "a re-delivered event sent requests again");

    // The recorded cassette is scrubbed: the token never reaches the file, even where the server echoed it.
    let path = temp_db("cassette").with_file_name("cassette.yaml");
    recorder.save(&path, &caller.redactor().secrets()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(TOKEN), "the cassette leaks the token:\n{text}");
    assert!(text.contains("[redacted]") && text.contains("/contacts/upsert"), "{text}");
    // And it replays: the same flow run from the cassette sends the same requests.
    let cassette = weft::transport::cassette::Cassette::load(&path).unwrap();
    assert_eq!(cassette.interactions.len(), 4);
}

#[tokio::test]
async fn a_missing_secret_names_the_connection_and_variable_at_the_step() {
    let seen = Arc::new(Seen::default());
    let base = start(seen.clone()).await;
    let text = format!("connections:\n  ghl:\n    connector: ghl\n    base_url: {base}\n    auth: {{ token: {{ env: WEFT_TEST_SURELY_UNSET_TOKEN }} }}\n    location_id: ve9EPM428h8vShlRW1KT\n  razorpay:\n    connector: razorpay\n    auth: {{ username: {{ env: X_ID }}, password: {{ env: X_SECRET }} }}\n");
    let ctx = ProjectContext::from_source(&SourceFile::new("weft.yaml", text));
    let flow =
        SourceFile::new("payment-captured.yaml", include_str!("fixtures/payment-captured.flow.yaml").to_string());
    let plan = Arc::new(compile_flow(&flow, &ctx).unwrap());
    let caller = Arc::new(Caller::new(Arc::new(Live::new().unwrap()), connections(&ctx), None, RetryPolicy::default()));
    let runner = Runner::new(plan, caller, None, &connections(&ctx));
    let body: Value = serde_json::from_str(include_str!("fixtures/payment.captured.json")).unwrap();
    let report = runner
        .run(&EventInput { id: "e1".into(), body, kind: "payment.captured".into(), received_at: String::new() })
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    let d = report.error.expect("an error");
    assert_eq!(d.code.id, "run::secret::missing");
    assert!(d.message.contains("ghl") && d.message.contains("WEFT_TEST_SURELY_UNSET_TOKEN"), "{}", d.message);
    let (line, _) = d.location().expect("points at the flow");
    assert_eq!(line, 11, "the label is on the first step's `call:`");
    assert!(seen.requests.lock().unwrap().is_empty(), "nothing may be sent without credentials");
}
