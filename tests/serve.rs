//! `weft serve` end to end on loopback: a signed Razorpay webhook is verified, persisted, answered, then run
//! against a GHL stand-in; a re-delivery and a forged signature change nothing upstream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use ring::hmac;
use serde_json::{json, Value};
use weft::serve::Service;
use weft::store::journal::{Imported, Journal};
use weft::store::sqlite::SqliteStore;
use weft::store::{EventFilter, NewEvent, Payload, Store};
use weft::validate::ProjectContext;

const SECRET: &str = "whsec-test-9c2f4a7e1b3d5f60";

type Seen = Arc<Mutex<Vec<String>>>;

/// GHL's contact routes on loopback, recording each request in `seen`; an upsert answers after `slow`.
async fn ghl_stand_in(seen: Seen, slow: Duration) -> String {
    let upsert = move |State(s): State<Seen>| async move {
        s.lock().unwrap().push("POST /contacts/upsert".into());
        tokio::time::sleep(slow).await;
        Json(json!({"contact": {"id": "nmFmQEsNgz6AVpgLVUJ0"}}))
    };
    async fn sub(State(s): State<Seen>, Path((id, what)): Path<(String, String)>) -> Json<Value> {
        s.lock().unwrap().push(format!("POST /contacts/{id}/{what}"));
        Json(json!({"ok": true}))
    }
    let app = Router::new()
        .route("/contacts/upsert", post(upsert))
        .route("/contacts/{id}/{what}", post(sub))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A project in a temp directory of its own (`name` tells the tests of this file apart).
fn project(ghl: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("secret.txt"), format!("{SECRET}\n")).unwrap();
    std::fs::write(dir.join("ghl-token.txt"), "pit-serve-test-token-0001\n").unwrap();
    std::fs::write(
        dir.join("weft.yaml"),
        format!(
            "connections:\n  ghl:\n    connector: ghl\n    base_url: {ghl}\n    auth: {{ token: {{ file: ghl-token.txt }} }}\n    location_id: ve9EPM428h8vShlRW1KT\n  razorpay:\n    connector: razorpay\n    auth: {{ username: {{ env: X_ID }}, password: {{ env: X_SECRET }} }}\n    webhook_secret: {{ file: secret.txt }}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("flows/payment-captured.yaml"), include_str!("fixtures/payment-captured.flow.yaml"))
        .unwrap();
    dir
}

fn sign(body: &[u8]) -> String {
    hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes()), body).as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_is_persisted_then_run_once() {
    let seen: Seen = Arc::default();
    let ghl = ghl_stand_in(seen.clone(), Duration::ZERO).await;
    let dir = project(&ghl, "test");
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    assert!(ctx.diagnostics.is_empty(), "{:?}", ctx.diagnostics);
    let store = Arc::new(SqliteStore::open(&dir.join(".weft/state.db")).unwrap());
    let svc = Arc::new(Service::build(&ctx, &[dir.join("flows")], store.clone()).unwrap_or_else(|d| panic!("{d:#?}")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = svc.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(svc.clone().work(stop_rx));

    let body = include_bytes!("fixtures/payment.captured.json").to_vec();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let post_body = |sig: String, body: Vec<u8>| {
        client
            .post(format!("{base}/hooks/razorpay"))
            .header("content-type", "application/json")
            .header("X-Razorpay-Signature", sig)
            .header("x-razorpay-event-id", "evt_Serve0000000001")
            .body(body)
            .send()
    };
    let post = |sig: String| post_body(sig, body.clone());

    // A forged signature is refused before anything is stored; so is a body past the limit.
    let forged = post("0".repeat(64)).await.unwrap();
    assert_eq!(forged.status(), 401);
    let huge = vec![b' '; weft::serve::MAX_BODY + 1];
    let too_big = client.post(format!("{base}/hooks/razorpay")).body(huge).send().await.unwrap();
    assert_eq!(too_big.status(), 413);
    // So is an authentic body that is not JSON (the payload is stored unparsed, so ingest must check it).
    let not_json = b"{\"event\": \"payment.captured\",".to_vec();
    let refused = post_body(sign(&not_json), not_json).await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("not JSON"));

    let accepted = post(sign(&body)).await.unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(serde_json::from_str::<Value>(&accepted.text().await.unwrap()).unwrap()["status"], "queued");

    // The row holds the body byte for byte, as signed: never re-serialised.
    let db =
        rusqlite::Connection::open_with_flags(dir.join(".weft/state.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let stored: Vec<String> = db
        .prepare("SELECT payload FROM events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored, [String::from_utf8(body.clone()).unwrap()]);

    // The worker runs it: upsert, tag, note reach the GHL stand-in.
    for _ in 0..100 {
        if seen.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "POST /contacts/upsert",
            "POST /contacts/nmFmQEsNgz6AVpgLVUJ0/tags",
            "POST /contacts/nmFmQEsNgz6AVpgLVUJ0/notes"
        ]
    );

    // Razorpay delivers at least once: the same event id is acknowledged and not run again.
    let again = post(sign(&body)).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(serde_json::from_str::<Value>(&again.text().await.unwrap()).unwrap()["status"], "duplicate");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap().len(), 3, "a re-delivery reached GHL again");

    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("weft_events_received_total 1"), "{metrics}");
    assert!(metrics.contains("weft_events_duplicate_total 1"), "{metrics}");
    assert!(metrics.contains("weft_events_rejected_total 2"), "{metrics}");
    assert!(metrics.contains("weft_events_processed_total 1"), "{metrics}");
    assert!(metrics.contains("weft_upstream_calls_total{connection=\"ghl\",status=\"200\"} 3"), "{metrics}");
    assert_eq!(client.get(format!("{base}/healthz")).send().await.unwrap().text().await.unwrap(), "ok");

    // The run is in the history, with its three steps.
    let runs =
        weft::store::Store::runs(store.as_ref(), &weft::store::RunFilter { limit: 10, ..Default::default() }).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].event_id, "razorpay:evt_Serve0000000001");
    assert_eq!(runs[0].trigger, "webhook razorpay payment.captured");
    assert_eq!(runs[0].status, weft::store::RunStatus::Succeeded);
    let steps: Vec<&str> = runs[0].steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps.len(), 3, "{steps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_flows_fire_into_the_queue_once_per_time() {
    let dir = std::env::temp_dir().join(format!("weft-serve-schedule-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("weft.yaml"), "connections: {}\n").unwrap();
    // Every second (a leading seconds field), a pure mapping step: no network needed.
    std::fs::write(
        dir.join("flows/tick.yaml"),
        "flow: tick\ndescription: Every second, note the time.\ntrigger:\n  schedule: { cron: \"* * * * * *\" }\nsteps:\n  - id: at\n    set: { at: $.trigger.scheduled_at }\n",
    )
    .unwrap();
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    let store = Arc::new(SqliteStore::open(&dir.join(".weft/state.db")).unwrap());
    let svc = Arc::new(Service::build(&ctx, &[dir.join("flows")], store.clone()).unwrap_or_else(|d| panic!("{d:#?}")));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(svc.clone().schedule(stop_rx.clone()));
    tokio::spawn(svc.clone().work(stop_rx));
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let _ = stop.send(true);
    let events = weft::store::Store::events(store.as_ref(), &weft::store::EventFilter::default()).unwrap();
    assert!(events.len() >= 2, "expected a tick per second, got {}", events.len());
    assert!(events.iter().all(|e| e.connection == "schedule" && e.kind == "tick"));
    let ids: std::collections::HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "each time fires once");
    assert!(svc.metrics.render().contains("weft_events_processed_total"));
}

#[tokio::test]
async fn a_reload_swaps_in_valid_flows_and_keeps_the_old_ones_on_error() {
    let dir = std::env::temp_dir().join(format!("weft-serve-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("weft.yaml"), "connections: {}\n").unwrap();
    let tick = |name: &str| {
        format!("flow: {name}\ndescription: A tick.\ntrigger:\n  schedule: {{ cron: \"0 2 * * *\" }}\nsteps:\n  - id: at\n    set: {{ at: $.trigger.scheduled_at }}\n")
    };
    std::fs::write(dir.join("flows/a.yaml"), tick("tick-a")).unwrap();
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    let store = Arc::new(SqliteStore::open(&dir.join(".weft/state.db")).unwrap());
    let svc = Service::build(&ctx, &[dir.join("flows")], store).unwrap_or_else(|d| panic!("{d:#?}"));
    assert_eq!(svc.describe(), ["schedule tick-a → tick-a"]);

    // A valid new flow is picked up.
    std::fs::write(dir.join("flows/b.yaml"), tick("tick-b")).unwrap();
    assert_eq!(svc.reload().unwrap(), 2);
    assert_eq!(svc.describe(), ["schedule tick-a → tick-a", "schedule tick-b → tick-b"]);

    // An invalid change is rejected with its diagnostics, and both flows keep running.
    std::fs::write(dir.join("flows/b.yaml"), tick("tick-b").replace("0 2 * * *", "99 2 * * *")).unwrap();
    let diags = svc.reload().unwrap_err();
    assert!(diags.iter().any(|d| d.code.id == "flow::trigger::bad_cron"), "{diags:#?}");
    assert_eq!(svc.describe(), ["schedule tick-a → tick-a", "schedule tick-b → tick-b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ghl_event_sent_under_its_alias_runs_the_events_flows() {
    let dir = std::env::temp_dir().join(format!("weft-serve-alias-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("ghl.pub.pem"), include_str!("fixtures/sandbox-webhook.pub.pem")).unwrap();
    std::fs::write(dir.join("token"), "pit-alias-test").unwrap();
    std::fs::write(
        dir.join("weft.yaml"),
        "connections:\n  ghl:\n    connector: ghl\n    auth: { token: { file: token } }\n    webhook_public_key: { file: ghl.pub.pem }\n    location_id: ve9EPM428h8vShlRW1KT\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("flows/installed.yaml"),
        "flow: app-installed\ndescription: Note each install.\ntrigger:\n  webhook: { connection: ghl, event: AppInstall }\nsteps:\n  - id: seen\n    set: { location: $.trigger.locationId }\n",
    )
    .unwrap();
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    assert!(ctx.diagnostics.iter().all(|d| !d.is_error()), "{:?}", ctx.diagnostics);
    let store = Arc::new(SqliteStore::open(&dir.join(".weft/state.db")).unwrap());
    // With the ingest journal, as `weft serve` runs: a GHL delivery still commits to the queue before its answer,
    // which is what lets a replayed `webhookId` get its 409 at once.
    let journal = Journal::open(&Journal::beside(&dir.join(".weft/state.db"))).unwrap();
    let svc = Service::build(&ctx, &[dir.join("flows")], store.clone()).unwrap_or_else(|d| panic!("{d:#?}"));
    let svc = Arc::new(svc.with_journal(journal));
    assert!(svc.describe().iter().any(|r| r == "ghl INSTALL → app-installed"), "{:?}", svc.describe());
    assert_eq!(svc.current().flow_count(), 1);

    // GHL's own AppInstall example says `type: INSTALL`.
    let mut event: Value =
        serde_json::from_str(include_str!("../connectors/ghl/webhooks/AppInstall.example.json")).unwrap();
    assert_eq!(event["type"], "INSTALL");
    event["timestamp"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    event["webhookId"] = json!("wh-alias-0001");
    let body = serde_json::to_vec(&event).unwrap();
    let key = weft::sandbox::webhooks::rsa_key_from_pem(include_str!("fixtures/sandbox-webhook.key")).unwrap();
    let signed = |body: &[u8]| {
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), body, &mut signature).unwrap();
        vec![(
            "x-wh-signature".to_string(),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, signature),
        )]
    };
    let headers = signed(&body);
    let accepted = svc.ingest("ghl", &headers, &body).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(accepted.status, "queued");
    // GHL's docs: a repeated webhookId is a replay attack, refused with 409 (and never run twice).
    let (status, message) = svc.ingest("ghl", &headers, &body).await.map(|_| ()).unwrap_err();
    assert_eq!(status.as_u16(), 409, "{message}");

    // A delivery without a `type` (21 of GHL's example pages have none) is still stored, but no flow runs it:
    // one warning per connection says so, and a counter counts each.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let writer = {
        let log = log.clone();
        move || Capture(log.clone())
    };
    let subscriber = tracing_subscriber::fmt().with_writer(writer).with_ansi(false).finish();
    let guard = tracing::subscriber::set_default(subscriber);
    for id in ["wh-untyped-0001", "wh-untyped-0002"] {
        let mut untyped = event.clone();
        untyped.as_object_mut().unwrap().remove("type");
        untyped["webhookId"] = json!(id);
        let body = serde_json::to_vec(&untyped).unwrap();
        let accepted = svc.ingest("ghl", &signed(&body), &body).await.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(accepted.status, "queued");
    }
    drop(guard);
    let log = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    assert_eq!(log.matches("has no event type at `$.type`").count(), 1, "{log}");
    assert_eq!(svc.metrics.untyped.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert!(svc.metrics.render().contains("weft_events_untyped_total 2"));
    let kinds: Vec<String> = weft::store::Store::events(store.as_ref(), &weft::store::EventFilter::default())
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "unknown").count(), 2, "{kinds:?}");

    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(svc.clone().work(stop_rx));
    let filter = weft::store::RunFilter { limit: 10, ..Default::default() };
    for _ in 0..100 {
        if !weft::store::Store::runs(store.as_ref(), &filter).unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let runs = weft::store::Store::runs(store.as_ref(), &filter).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].flow.as_str(), runs[0].status), ("app-installed", weft::store::RunStatus::Succeeded));
}

#[test]
fn a_schedule_missed_while_stopped_runs_once_for_the_latest_time() {
    let dir = std::env::temp_dir().join(format!("weft-serve-catch-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("weft.yaml"), "connections: {}\n").unwrap();
    std::fs::write(
        dir.join("flows/nightly.yaml"),
        "flow: nightly\ndescription: 02:00 in Kolkata.\ntrigger:\n  schedule: { cron: \"0 2 * * *\", timezone: Asia/Kolkata }\nsteps:\n  - id: at\n    set: { at: $.trigger.scheduled_at }\n",
    )
    .unwrap();
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    assert!(ctx.diagnostics.iter().all(|d| !d.is_error()), "{:?}", ctx.diagnostics);
    let store = Arc::new(SqliteStore::open(&dir.join(".weft/state.db")).unwrap());
    let svc = Service::build(&ctx, &[dir.join("flows")], store.clone()).unwrap_or_else(|d| panic!("{d:#?}"));
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&chrono::Utc);
    let events = || weft::store::Store::events(store.as_ref(), &weft::store::EventFilter::default()).unwrap();

    // The first start only starts the count.
    svc.catch_up(at("2026-03-01T12:00:00Z"));
    assert!(events().is_empty());
    // Stopped for three nights: one run, for the last night (02:00 IST = 20:30 UTC the day before).
    svc.catch_up(at("2026-03-04T12:00:00Z"));
    let queued = events();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].event_id, "nightly@2026-03-03T20:30:00+00:00");
    // Started again the same day: nothing more.
    svc.catch_up(at("2026-03-04T13:00:00Z"));
    assert_eq!(events().len(), 1);
}

/// payhere.lk notifies with a form post (`webhooks.content_type: form`): checked by its md5sig, stored as a JSON
/// object of its fields, and run with them as `$.trigger`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_encoded_notify_is_verified_and_queued_as_json() {
    const MERCHANT_SECRET: &str = "merchant-secret-serve-test-0001";
    let dir = std::env::temp_dir().join(format!("weft-serve-form-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("merchant-secret.txt"), format!("{MERCHANT_SECRET}\n")).unwrap();
    std::fs::write(
        dir.join("weft.yaml"),
        "connections:\n  payhere:\n    connector: payhere-lk\n    auth: { client_id: { env: X_ID }, client_secret: { env: X_SECRET } }\n    webhook_secret: { file: merchant-secret.txt }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("flows/paid.yaml"),
        "flow: paid\ndescription: A successful notify.\ntrigger:\n  webhook: { connection: payhere, event: \"2\" }\nsteps:\n  - id: order\n    set: { order: $.trigger.order_id, amount: $.trigger.payhere_amount }\n",
    )
    .unwrap();
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    assert!(ctx.diagnostics.iter().all(|d| !d.is_error()), "{:#?}", ctx.diagnostics);
    let store = Arc::new(SqliteStore::open(&dir.join(".weft/state.db")).unwrap());
    let svc = Arc::new(Service::build(&ctx, &[dir.join("flows")], store.clone()).unwrap_or_else(|d| panic!("{d:#?}")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/payhere", listener.local_addr().unwrap());
    let app = svc.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(svc.clone().work(stop_rx));

    let md5sig =
        weft::serve::signature::payhere_lk_hash(&["1213817", "ORD 46", "4500.00", "LKR", "2"], MERCHANT_SECRET);
    let form = |sig: &str| {
        format!(
            "merchant_id=1213817&order_id=ORD+46&payment_id=320025157750&payhere_amount=4500.00&payhere_currency=LKR\
             &status_code=2&md5sig={sig}&status_message=Successfully%20received&custom_1="
        )
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let post =
        |body: String| client.post(&url).header("content-type", "application/x-www-form-urlencoded").body(body).send();

    let forged = post(form(&"0".repeat(32))).await.unwrap();
    assert_eq!(forged.status(), 401);
    let accepted = post(form(&md5sig)).await.unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(serde_json::from_str::<Value>(&accepted.text().await.unwrap()).unwrap()["status"], "queued");
    // No notify id: the same bytes are the same notify.
    let again = post(form(&md5sig)).await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&again.text().await.unwrap()).unwrap()["status"], "duplicate");

    let done = || {
        let filter = weft::store::EventFilter { status: Some(weft::store::EventStatus::Done), ..Default::default() };
        weft::store::Store::events(store.as_ref(), &filter).unwrap()
    };
    for _ in 0..100 {
        if !done().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = done();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].kind, "2");
    assert_eq!(events[0].payload["order_id"], "ORD 46");
    assert_eq!(events[0].payload["status_message"], "Successfully received");
    assert_eq!(events[0].payload["custom_1"], "");
    assert_eq!(events[0].payload.as_object().unwrap().keys().next().map(String::as_str), Some("merchant_id"));
}

/// A `tracing` writer into a shared buffer, to read what was logged.
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A project's service with the ingest journal (no GHL behind it: nothing here runs a flow), its state file and
/// its store.
fn journaled_service(name: &str) -> (std::path::PathBuf, Arc<SqliteStore>, Service) {
    let dir = project("http://127.0.0.1:9", name);
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    let db = dir.join(".weft/state.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let svc = Service::build(&ctx, &[dir.join("flows")], store.clone()).unwrap_or_else(|d| panic!("{d:#?}"));
    let svc = svc.with_journal(Journal::open(&Journal::beside(&db)).unwrap());
    (db, store, svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_journal_a_delivery_is_answered_before_it_is_queued_and_queued_once() {
    let (db, store, svc) = journaled_service("journal");
    let body = include_bytes!("fixtures/payment.captured.json");
    let headers = |id: &str| {
        vec![("x-razorpay-signature".to_string(), sign(body)), ("x-razorpay-event-id".to_string(), id.to_string())]
    };

    // Answered from the journal: no queue id yet, and nothing in the queue until the importer runs.
    let accepted = svc.ingest("razorpay", &headers("evt_Journal000001"), body).await.unwrap();
    assert_eq!((accepted.status, accepted.id), ("accepted", None));
    assert_eq!(
        serde_json::to_value(&accepted).unwrap(),
        json!({"status": "accepted", "event_id": "evt_Journal000001"})
    );
    // A re-delivery is accepted the same way; the import drops it, as the queue's dedup always did.
    svc.ingest("razorpay", &headers("evt_Journal000001"), body).await.unwrap();
    // Refusals never reach the journal.
    let forged = vec![("x-razorpay-signature".to_string(), "0".repeat(64))];
    assert_eq!(svc.ingest("razorpay", &forged, body).await.unwrap_err().0.as_u16(), 401);
    let all = EventFilter::default();
    assert!(store.events(&all).unwrap().is_empty());
    assert_eq!(Journal::waiting(&Journal::beside(&db)).unwrap().1, 1, "one segment waits");

    let imported = svc.import_journal(false).expect("a journal").unwrap();
    assert_eq!(imported, Imported { new: 1, duplicates: 1, damaged: vec![] });
    let events = store.events(&all).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].event_id.as_str(), events[0].kind.as_str()), ("evt_Journal000001", "payment.captured"));
    let raw = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let stored: String = raw.query_row("SELECT payload FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(stored.as_bytes(), body, "the body byte for byte, as signed");
    let metrics = svc.metrics.render();
    assert!(metrics.contains("weft_events_received_total 1\n"), "{metrics}");
    assert!(metrics.contains("weft_events_duplicate_total 1\n"), "{metrics}");
    assert_eq!(Journal::waiting(&Journal::beside(&db)).unwrap(), (0, 0), "imported segments are deleted");
    // Nothing new: the next import queues nothing.
    assert_eq!(svc.import_journal(false).unwrap().unwrap(), Imported::default());
}

fn journaled(i: usize) -> NewEvent {
    NewEvent {
        connection: "razorpay".into(),
        event_id: format!("evt_left_{i}"),
        kind: "payment.captured".into(),
        payload: Payload::from_json(br#"{"event":"payment.captured"}"#).unwrap(),
        received_at_ms: 1_700_000_000_000,
    }
}

#[test]
fn what_a_dead_server_left_in_its_journal_is_queued_by_the_next_and_a_live_ones_is_not() {
    use std::io::Write as _;
    let dir = std::env::temp_dir().join(format!("weft-serve-adopt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("state.db");
    let root = Journal::beside(&db);
    // A server that dies with two deliveries in its journal, and between them the start of a third that its
    // write never finished (a full disk): the bytes are junk to the reader.
    let dead = Journal::open(&root).unwrap();
    dead.append(&journaled(1)).unwrap();
    // The test's thread appends to one shard of the journal; its segment is the one file there.
    let segment = std::fs::read_dir(dead.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let junk = b"wJr1\x40\x00\x00\x00 cut short";
    std::fs::OpenOptions::new().append(true).open(&segment).unwrap().write_all(junk).unwrap();
    dead.append(&journaled(2)).unwrap();
    let dead_dir = dead.dir().to_path_buf();
    // Dropping it releases its lock, as the kernel does when a process is killed; its segment stays `.open`.
    drop(dead);
    // A server still running: its journal is its own until it stops.
    let alive = Journal::open(&root).unwrap();
    alive.append(&journaled(3)).unwrap();

    let store = SqliteStore::open(&db).unwrap();
    let next = Journal::open(&root).unwrap();
    let import = || {
        let mut imported = Imported::default();
        next.import(&store, true, &mut imported).map(|()| imported)
    };
    let imported = import().unwrap();
    assert_eq!((imported.new, imported.duplicates), (2, 0));
    let [damage] = imported.damaged.as_slice() else { panic!("{imported:?}") };
    assert_eq!((damage.segment.as_path(), damage.bytes), (segment.as_path(), junk.len() as u64));
    assert_eq!(std::fs::read(&damage.kept).unwrap(), junk, "the unreadable bytes are kept, not deleted");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&damage.kept).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "owner-only: the bytes may hold a customer's details");
    }
    assert!(!segment.exists() && !dead_dir.join("lock").exists());
    let ids = |store: &SqliteStore| {
        let mut ids: Vec<String> =
            store.events(&EventFilter::default()).unwrap().into_iter().map(|e| e.event_id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&store), ["evt_left_1", "evt_left_2"]);

    // Once the other server is gone, its delivery is queued too, and adopting twice queues nothing twice.
    drop(alive);
    assert_eq!(import().unwrap().new, 1);
    assert_eq!(import().unwrap(), Imported::default());
    assert_eq!(ids(&store), ["evt_left_1", "evt_left_2", "evt_left_3"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_stay_in_the_journal_while_the_queue_is_locked_and_are_queued_once_it_is_free() {
    let (db, store, svc) = journaled_service("locked");
    let body = include_bytes!("fixtures/payment.captured.json");
    let deliver = |i: usize| {
        let headers = vec![
            ("x-razorpay-signature".to_string(), sign(body)),
            ("x-razorpay-event-id".to_string(), format!("evt_{i}")),
        ];
        let svc = &svc;
        async move { svc.ingest("razorpay", &headers, body).await.unwrap().status }
    };
    for i in 0..3 {
        assert_eq!(deliver(i).await, "accepted");
    }
    // Another process holds the write lock past the busy timeout (a long `weft replay`, a backup tool).
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = svc.import_journal(false).unwrap().unwrap_err();
    assert!(err.to_string().contains("another process keeps it locked"), "{err}");
    assert_eq!(Journal::waiting(&Journal::beside(&db)).unwrap().1, 1, "the deliveries wait, sealed");
    let metrics = svc.metrics.render();
    assert!(metrics.contains("weft_journal_import_failures_total 1\n"), "{metrics}");
    let waiting = format!("weft_journal_waiting_bytes {}\n", Journal::waiting(&Journal::beside(&db)).unwrap().0);
    assert!(metrics.contains(&waiting) && !waiting.ends_with(" 0\n"), "{metrics}");
    // Deliveries are still accepted meanwhile, into the next segment.
    assert_eq!(deliver(3).await, "accepted");
    other.execute_batch("ROLLBACK").unwrap();
    let imported = svc.import_journal(false).unwrap().unwrap();
    assert_eq!((imported.new, imported.duplicates), (4, 0));
    assert_eq!(store.events(&EventFilter::default()).unwrap().len(), 4);
    assert_eq!(Journal::waiting(&Journal::beside(&db)).unwrap(), (0, 0));
    assert!(svc.metrics.render().contains("weft_journal_waiting_bytes 0\n"));
}

#[test]
fn a_segment_that_cannot_be_read_does_not_hold_up_the_others() {
    let dir = std::env::temp_dir().join(format!("weft-serve-unreadable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("state.db");
    let store = SqliteStore::open(&db).unwrap();
    let journal = Journal::open(&Journal::beside(&db)).unwrap();
    // A "segment" the reader cannot read (a directory by that name: EISDIR), sorted before the real one.
    let unreadable = journal.dir().join("0-0000000000000000.sealed");
    std::fs::create_dir(&unreadable).unwrap();
    journal.append(&journaled(1)).unwrap();
    let mut imported = Imported::default();
    let err = journal.import(&store, false, &mut imported).unwrap_err();
    assert!(err.to_string().contains("0-0000000000000000.sealed"), "{err}");
    assert_eq!(imported.new, 1, "the readable segment was queued all the same");
    assert_eq!(store.events(&EventFilter::default()).unwrap().len(), 1);
    std::fs::remove_dir(&unreadable).unwrap();
    let mut imported = Imported::default();
    journal.import(&store, false, &mut imported).unwrap();
    assert_eq!(imported, Imported::default());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_longer_than_the_lease_keeps_its_event_by_renewing_it() {
    // GHL takes 2.5 s to answer the upsert; a claim lasts 900 ms unless renewed (every 300 ms: slack for a
    // busy test machine).
    let seen: Seen = Arc::default();
    let ghl = ghl_stand_in(seen.clone(), Duration::from_millis(2_500)).await;
    let dir = project(&ghl, "renew");
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    let store = Arc::new(SqliteStore::open(&dir.join(".weft/state.db")).unwrap());
    let svc = Service::build(&ctx, &[dir.join("flows")], store.clone()).unwrap_or_else(|d| panic!("{d:#?}"));
    let svc = Arc::new(svc.with_lease(Duration::from_millis(900)));
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    // Two workers: were the lease to lapse, the idle one would claim the event and run it a second time.
    for _ in 0..2 {
        tokio::spawn(svc.clone().work(stop_rx.clone()));
    }
    let body = include_bytes!("fixtures/payment.captured.json");
    let headers =
        [("x-razorpay-signature".to_string(), sign(body)), ("x-razorpay-event-id".to_string(), "evt_Renew001".into())];
    assert_eq!(svc.ingest("razorpay", &headers, body).await.unwrap().status, "queued");
    let done = EventFilter { status: Some(weft::store::EventStatus::Done), ..EventFilter::default() };
    for _ in 0..300 {
        if !store.events(&done).unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = store.events(&done).unwrap();
    assert_eq!((events.len(), events[0].attempts), (1, 1), "{events:?}");
    assert_eq!(store.runs(&weft::store::RunFilter::default()).unwrap().len(), 1);
    assert_eq!(seen.lock().unwrap().iter().filter(|r| r.ends_with("/upsert")).count(), 1, "{seen:?}");
}
