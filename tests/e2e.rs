//! End to end on loopback: `weft sandbox` stands in for GHL, `weft serve` receives signed Razorpay webhooks for
//! the shipped Razorpay flows, and the sandbox's final state and request log show every effect exactly once —
//! a re-delivered webhook adds no second note, tag or score update.

use std::sync::Arc;
use std::time::Duration;

use ring::hmac;
use serde_json::Value;
use weft::sandbox::{try_router, SandboxConfig};
use weft::serve::Service;
use weft::store::sqlite::SqliteStore;
use weft::validate::ProjectContext;

const SECRET: &str = "whsec-e2e-4b8d1f0a2c6e";

async fn listen(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// The shipped Razorpay flows in a project whose GHL connection points at the sandbox.
fn project(sandbox: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    for entry in std::fs::read_dir("flows/razorpay").unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(entry.path(), dir.join("flows").join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(dir.join("whsec"), SECRET).unwrap();
    std::fs::write(dir.join("ghl-token"), "pit-e2e-token-7f3a9c1e").unwrap();
    let shipped = std::fs::read_to_string("flows/weft.yaml").unwrap();
    let scopes: String = shipped
        .lines()
        .skip_while(|l| !l.contains("scopes:"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        dir.join("weft.yaml"),
        format!(
            "connections:\n  ghl:\n    connector: ghl\n    base_url: {sandbox}/ghl\n    auth: {{ token: {{ file: ghl-token }} }}\n    location_id: ve9EPM428h8vShlRW1KT\n    scopes:\n{scopes}  razorpay:\n    connector: razorpay\n    auth: {{ username: {{ env: X_ID }}, password: {{ env: X_SECRET }} }}\n    webhook_secret: {{ file: whsec }}\n"
        ),
    )
    .unwrap();
    dir
}

fn sign(body: &[u8]) -> String {
    hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes()), body).as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_razorpay_flows_against_the_sandbox_write_each_effect_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let catalog = weft::catalog::Catalog::builtin().unwrap();
    let sandbox = listen(try_router(SandboxConfig::default(), &catalog).unwrap()).await;
    let dir = project(&sandbox);
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    assert!(ctx.diagnostics.iter().all(|d| !d.is_error()), "{:?}", ctx.diagnostics);
    let store = Arc::new(SqliteStore::open(&dir.join(".weft/state.db")).unwrap());
    let svc = Arc::new(Service::build(&ctx, &[dir.join("flows")], store).unwrap_or_else(|d| panic!("{d:#?}")));
    let serve = listen(svc.router()).await;
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(svc.clone().work(stop_rx));

    let client = reqwest::Client::new();
    let deliver = |file: &'static str, id: &'static str| {
        let body = std::fs::read(format!("connectors/razorpay/webhooks/{file}")).unwrap();
        client
            .post(format!("{serve}/hooks/razorpay"))
            .header("content-type", "application/json")
            .header("X-Razorpay-Signature", sign(&body))
            .header("x-razorpay-event-id", id)
            .body(body)
            .send()
    };
    // payment.captured, delivered twice (Razorpay is at-least-once), then payment.failed.
    for (file, id) in [
        ("payment.captured.json", "evt_E2E0000000001"),
        ("payment.captured.json", "evt_E2E0000000001"),
        ("payment.failed.json", "evt_E2E0000000002"),
    ] {
        assert_eq!(deliver(file, id).await.unwrap().status(), 200);
    }
    let metrics = || svc.metrics.render();
    for _ in 0..200 {
        if metrics().contains("weft_events_processed_total 2") || metrics().contains("weft_events_failed_total 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics().contains("weft_events_processed_total 2"), "{}", metrics());
    assert!(metrics().contains("weft_events_duplicate_total 1"), "{}", metrics());

    let state: Value = serde_json::from_str(
        &client.get(format!("{sandbox}/_sandbox/state")).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    let contacts = state["ghl"]["contacts"].as_object().expect("contacts by id");
    assert_eq!(contacts.len(), 1, "one contact for one payer: {state:#}");
    let contact = contacts.values().next().unwrap();
    let tags: Vec<&str> = contact["tags"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(tags.contains(&"razorpay-paid") && tags.contains(&"razorpay-payment-failed"), "{tags:?}");

    assert_eq!(state["ghl"]["notes"].as_object().map_or(0, |n| n.len()), 2, "one note per event");
    // The request log agrees: one note request per event, never two for the re-delivered one.
    let log: Value = serde_json::from_str(
        &client.get(format!("{sandbox}/_sandbox/log")).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    let entries = log.as_array().expect("the log is a list of requests");
    let notes = entries
        .iter()
        .filter(|e| e["method"] == "POST" && e["path"].as_str().is_some_and(|p| p.ends_with("/notes")))
        .count();
    assert_eq!(notes, 2, "expected one note per event: {log:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_flow_runs_once_per_new_item() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let catalog = weft::catalog::Catalog::builtin().unwrap();
    let seed = serde_json::json!({"razorpay": {"payments": [
        {"amount": 49900, "created_at": 1717200035, "email": "karan.nair70@example.com"},
        {"amount": 124369, "created_at": 1717200275, "email": "siddharth.gupta46@example.com"}
    ]}});
    let sandbox =
        listen(try_router(SandboxConfig { seed: Some(seed), ..SandboxConfig::default() }, &catalog).unwrap()).await;
    let dir = std::env::temp_dir().join(format!("weft-e2e-poll-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(
        dir.join("weft.yaml"),
        format!("connections:\n  razorpay:\n    connector: razorpay\n    base_url: {sandbox}/razorpay\n    auth: {{ username: {{ env: HOME }}, password: {{ env: HOME }} }}\n"),
    )
    .unwrap();
    // Each new payment becomes one run that maps it; polling twice must not run a payment twice.
    std::fs::write(
        dir.join("flows/new-payments.yaml"),
        "flow: razorpay-new-payments\ndescription: Every new Razorpay payment, by polling.\ntrigger:\n  poll: { call: razorpay.payments.list-payments, every: 1s, query: { count: 10 }, items: $.items, id: $.id }\nsteps:\n  - id: seen\n    set: { id: $.trigger.id, major: \"${{ trigger.amount / 100 }}\" }\n",
    )
    .unwrap();
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    assert!(ctx.diagnostics.iter().all(|d| !d.is_error()), "{:?}", ctx.diagnostics);
    let store = Arc::new(SqliteStore::open(&dir.join(".weft/state.db")).unwrap());
    let svc = Arc::new(Service::build(&ctx, &[dir.join("flows")], store.clone()).unwrap_or_else(|d| panic!("{d:#?}")));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(svc.clone().poll(stop_rx.clone()));
    tokio::spawn(svc.clone().work(stop_rx));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let _ = stop.send(true);
    let events = weft::store::Store::events(store.as_ref(), &weft::store::EventFilter::default()).unwrap();
    assert_eq!(events.len(), 2, "one event per payment, however often it was polled: {events:?}");
    assert!(events.iter().all(|e| e.connection == "poll" && e.kind == "razorpay-new-payments"));
    assert!(svc.metrics.render().contains("weft_events_processed_total 2"), "{}", svc.metrics.render());
}
