//! End to end on loopback: `weft sandbox` stands in for GHL (and Payhere), `weft serve` receives signed webhooks
//! for the shipped flows, and the sandbox's final state and request log show every effect exactly once — a
//! re-delivered webhook adds no second note, tag, score update, custom-field write, fulfillment or relay post.
//! The GHL-triggered flows are fed by the sandbox itself (`--webhook-url`): the sandbox's API changes become
//! GHL events signed with a test key whose public half `weft serve` holds.

use std::sync::Arc;
use std::time::Duration;

use ring::hmac;
use serde_json::Value;
use weft::sandbox::{try_router, SandboxConfig};
use weft::serve::Service;
use weft::store::journal::Journal;
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
    let scopes = shipped_scopes();
    std::fs::write(
        dir.join("weft.yaml"),
        format!(
            "connections:\n  ghl:\n    connector: ghl\n    base_url: {sandbox}/ghl\n    auth: {{ token: {{ file: ghl-token }} }}\n    location_id: ve9EPM428h8vShlRW1KT\n    scopes:\n{scopes}  razorpay:\n    connector: razorpay\n    auth: {{ username: {{ env: X_ID }}, password: {{ env: X_SECRET }} }}\n    webhook_secret: {{ file: whsec }}\n"
        ),
    )
    .unwrap();
    dir
}

/// The GHL scopes the shipped `flows/weft.yaml` grants, as YAML list lines.
fn shipped_scopes() -> String {
    let shipped = std::fs::read_to_string("flows/weft.yaml").unwrap();
    shipped
        .lines()
        .skip_while(|l| !l.contains("scopes:"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The project's service as `weft serve` runs it: its state under `.weft/`, deliveries answered from the ingest
/// journal and queued by the importer (running until the `Importer` is dropped).
fn service(ctx: &ProjectContext, dir: &std::path::Path) -> (Arc<SqliteStore>, Arc<Service>, weft::serve::Importer) {
    let db = dir.join(".weft/state.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let svc = Service::build(ctx, &[dir.join("flows")], store.clone()).unwrap_or_else(|d| panic!("{d:#?}"));
    let svc = Arc::new(svc.with_journal(Journal::open(&Journal::beside(&db)).unwrap()));
    let importer = svc.start_importer().unwrap().expect("a journal");
    (store, svc, importer)
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
    let (_store, svc, _importer) = service(&ctx, &dir);
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
    let mut invoice: Value =
        serde_json::from_str(&std::fs::read_to_string("flows/ghl/tests/events/InvoicePaid.json").unwrap()).unwrap();
    invoice["type"] = serde_json::json!("InvoicePaid");
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

const LOCATION: &str = "ve9EPM428h8vShlRW1KT";
const PAYHERE_SECRET: &str = "payhere-e2e-whsec-5a1c";
const RELAY_KEY: &str = "relay-e2e-key-93be";

type Received = Arc<std::sync::Mutex<Vec<Value>>>;

/// The user's relay endpoint (the `http` connection): records every body it is sent with the right key.
async fn relay(received: Received) -> String {
    use axum::extract::State;
    async fn take(State(r): State<Received>, headers: axum::http::HeaderMap, body: axum::body::Bytes) -> Json<Value> {
        assert_eq!(headers.get("x-weft-relay-key").and_then(|v| v.to_str().ok()), Some(RELAY_KEY));
        r.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
        Json(serde_json::json!({"status": "success"}))
    }
    listen(axum::Router::new().route("/", axum::routing::post(take)).with_state(received)).await
}
use axum::Json;

/// The shipped GHL-triggered Payhere flows, the Payhere payment flow and the GHL order flow, in a project whose
/// connections point at the sandbox and the relay recorder.
fn ghl_project(sandbox: &str, relay: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-e2e-ghl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    for flow in [
        "payhere/contact-create-payhere-customer",
        "payhere/contact-update-payhere-customer",
        "payhere/note-create-to-relay",
        "payhere/task-create-to-relay",
        "payhere/task-complete-to-relay",
        "payhere/payment-success",
        "ghl/order-create-fulfillment",
        "ghl/invoice-paid-to-relay",
    ] {
        let name = flow.split('/').nth(1).unwrap();
        std::fs::copy(format!("flows/{flow}.yaml"), dir.join("flows").join(format!("{name}.yaml"))).unwrap();
    }
    for (file, text) in [
        ("ghl-token", "pit-e2e-token-7f3a9c1e"),
        ("payhere-key", "payhere-e2e-api-key"),
        ("payhere-whsec", PAYHERE_SECRET),
        ("relay-key", RELAY_KEY),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let scopes = shipped_scopes();
    std::fs::write(
        dir.join("weft.yaml"),
        format!(
            "connections:\n  ghl:\n    connector: ghl\n    base_url: {sandbox}/ghl\n    auth: {{ token: {{ file: ghl-token }} }}\n    webhook_public_key: {{ file: ghl-webhook.pub.pem }}\n    location_id: {LOCATION}\n    scopes:\n{scopes}  payhere:\n    connector: payhere\n    base_url: {sandbox}/payhere\n    auth: {{ token: {{ file: payhere-key }} }}\n    webhook_secret: {{ file: payhere-whsec }}\n  relay:\n    connector: http\n    base_url: {relay}\n    auth: {{ header: X-Weft-Relay-Key, api_key: {{ file: relay-key }} }}\n"
        ),
    )
    .unwrap();
    dir
}

/// A GHL delivery the way GHL sends one: `timestamp` and `webhookId` in the body, RSA-SHA256 of the raw body.
fn ghl_delivery(event: &Value, webhook_id: &str, key: &ring::signature::RsaKeyPair) -> (Vec<u8>, String) {
    let mut event = event.clone();
    event["timestamp"] = serde_json::json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    event["webhookId"] = serde_json::json!(webhook_id);
    let body = serde_json::to_vec(&event).unwrap();
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), &body, &mut signature).unwrap();
    (body, base64::Engine::encode(&base64::engine::general_purpose::STANDARD, signature))
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    serde_json::from_slice(&client.get(url).send().await.unwrap().bytes().await.unwrap()).unwrap()
}

/// Wait until serve has nothing queued or running, the sandbox has nothing left to deliver, and both stayed so
/// for a moment (a run may still raise a sandbox event that becomes a new delivery).
async fn settle(client: &reqwest::Client, sandbox: &str, store: &SqliteStore) {
    use weft::store::{EventFilter, EventStatus, Store};
    let mut quiet = 0;
    for _ in 0..400 {
        let events = Store::events(store, &EventFilter::default()).unwrap();
        let busy = events.iter().any(|e| matches!(e.status, EventStatus::Queued | EventStatus::Claimed));
        let hooks: Value = get_json(client, format!("{sandbox}/_sandbox/webhooks")).await;
        let pending = hooks.as_array().unwrap().iter().any(|d| d["delivered"] != true);
        quiet = if busy || pending { 0 } else { quiet + 1 };
        if quiet == 4 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("serve and the sandbox did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_ghl_and_payhere_flows_fed_by_the_sandboxs_webhooks_write_each_effect_once() {
    use weft::sandbox::webhooks::rsa_key_from_pem;
    use weft::sandbox::WebhookConfig;
    use weft::store::{EventFilter, EventStatus, Store};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let catalog = weft::catalog::Catalog::builtin().unwrap();
    let key = Arc::new(rsa_key_from_pem(include_str!("fixtures/sandbox-webhook.key")).unwrap());
    let order: Value =
        serde_json::from_str(&std::fs::read_to_string("flows/ghl/tests/events/OrderCreate.json").unwrap()).unwrap();
    let mut invoice: Value =
        serde_json::from_str(&std::fs::read_to_string("flows/ghl/tests/events/InvoicePaid.json").unwrap()).unwrap();
    invoice["type"] = serde_json::json!("InvoicePaid");
    let seed = serde_json::json!({
        "ghl": {
            "location_id": LOCATION,
            "custom_fields": [{"name": "Payhere Customer Id", "dataType": "TEXT"}],
            "orders": [{"_id": order["_id"], "altId": LOCATION, "items": order["items"], "amount": order["amount"],
                "currency": order["currency"], "contactId": order["contactId"], "fulfillmentStatus": "unfulfilled"}],
            "transactions": [
                {"entityId": invoice["_id"], "entitySourceType": "invoice", "status": "succeeded", "amount": 60, "currency": "USD"},
                {"entityId": invoice["_id"], "entitySourceType": "invoice", "status": "succeeded", "amount": 40, "currency": "USD"},
                {"entityId": "someOtherInvoice0001", "status": "succeeded", "amount": 5, "currency": "USD"},
            ],
        },
        "payhere": {"customers": [{"id": 989899294, "name": "Geoff Williams", "email": "g.williams01@example.org"}]},
    });

    // serve's address must be known before the sandbox starts: bind its listener first.
    let serve_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let serve = format!("http://{}", serve_listener.local_addr().unwrap());
    let webhooks = WebhookConfig {
        urls: vec![("ghl".into(), format!("{serve}/hooks/ghl"))],
        ghl_key: Some(key.clone()),
        backoff: Duration::from_millis(50),
        ..WebhookConfig::default()
    };
    let sandbox_config = SandboxConfig { seed: Some(seed), webhooks, ..SandboxConfig::default() };
    let sandbox = listen(try_router(sandbox_config, &catalog).unwrap()).await;
    let received: Received = Arc::default();
    let relay_url = relay(received.clone()).await;

    let dir = ghl_project(&sandbox, &relay_url);
    // GHL's private key is not ours: weft.yaml gives serve the test key's public half instead of GHL's.
    std::fs::write(dir.join("ghl-webhook.pub.pem"), include_str!("fixtures/sandbox-webhook.pub.pem")).unwrap();
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    assert!(ctx.diagnostics.iter().all(|d| !d.is_error()), "{:?}", ctx.diagnostics);
    let (store, svc, _importer) = service(&ctx, &dir);
    let app = svc.router();
    tokio::spawn(async move { axum::serve(serve_listener, app).await.unwrap() });
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(svc.clone().work(stop_rx));

    let client = reqwest::Client::new();
    let ghl = |method: reqwest::Method, path: String, body: Value| {
        client
            .request(method, format!("{sandbox}/ghl{path}"))
            .header("Authorization", "Bearer pit-e2e-token-7f3a9c1e")
            .header("Version", "2021-07-28")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };

    // Someone adds a contact in GHL: ContactCreate → its Payhere customer id is stored (one PUT), and the
    // ContactUpdate that PUT raises finds the id already there and writes nothing.
    let made: Value = ghl(
        reqwest::Method::POST,
        "/contacts/".into(),
        serde_json::json!({"locationId": LOCATION, "email": "G.Williams01@example.org", "firstName": "Geoff", "lastName": "Williams"}),
    )
    .await
    .unwrap()
    .bytes()
    .await
    .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
    .unwrap();
    let id = made["contact"]["id"].as_str().expect("the sandbox created the contact").to_string();
    settle(&client, &sandbox, &store).await;
    // A note and a task, then the task is completed: each is relayed once.
    let note =
        ghl(reqwest::Method::POST, format!("/contacts/{id}/notes"), serde_json::json!({"body": "Asked for a refund"}));
    assert_eq!(note.await.unwrap().status(), 201);
    let task: Value = ghl(
        reqwest::Method::POST,
        format!("/contacts/{id}/tasks"),
        serde_json::json!({"title": "Call back", "dueDate": "2026-01-01T10:00:00Z", "completed": false}),
    )
    .await
    .unwrap()
    .bytes()
    .await
    .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
    .unwrap();
    let task_id = task["task"]["id"].as_str().unwrap().to_string();
    settle(&client, &sandbox, &store).await;
    let done = ghl(
        reqwest::Method::PUT,
        format!("/contacts/{id}/tasks/{task_id}/completed"),
        serde_json::json!({"completed": true}),
    );
    assert_eq!(done.await.unwrap().status(), 200);

    // Payhere reports the payment (twice: at-least-once); GHL reports the order (twice).
    let payment = std::fs::read("flows/payhere/tests/events/payment.success.json").unwrap();
    let payhere_signature = hex::encode(
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, PAYHERE_SECRET.as_bytes()), &payment).as_ref(),
    );
    let (order_body, order_signature) = ghl_delivery(&order, "e2e-order-create-1", &key);
    let (invoice_body, invoice_signature) = ghl_delivery(&invoice, "e2e-invoice-paid-1", &key);
    let deliver = |hook: &str, header: &'static str, signature: &str, body: &[u8]| {
        client
            .post(format!("{serve}/hooks/{hook}"))
            .header("content-type", "application/json")
            .header(header, signature.to_string())
            .body(body.to_vec())
            .send()
    };
    for round in 0..2 {
        // GHL's docs call a repeated webhookId a replay: serve refuses it (409) and runs nothing again; Payhere's
        // re-delivery is acknowledged (200 duplicate).
        let ghl_status = if round == 0 { 200 } else { 409 };
        for (hook, header, signature, body, expected) in [
            ("ghl", "x-wh-signature", &invoice_signature, &invoice_body, ghl_status),
            ("payhere", "X-Signature", &payhere_signature, &payment, 200),
            ("ghl", "x-wh-signature", &order_signature, &order_body, ghl_status),
        ] {
            let sent = deliver(hook, header, signature, body).await.unwrap();
            assert_eq!(sent.status(), expected, "{hook}: {}", sent.text().await.unwrap());
        }
    }
    settle(&client, &sandbox, &store).await;

    // GHL re-sends every event it sent (the same signed bytes): nothing happens twice.
    let hooks: Value = get_json(&client, format!("{sandbox}/_sandbox/webhooks")).await;
    let sent: Vec<u64> = hooks.as_array().unwrap().iter().map(|d| d["id"].as_u64().unwrap()).collect();
    let kinds: Vec<&str> = hooks.as_array().unwrap().iter().map(|d| d["event"].as_str().unwrap()).collect();
    for kind in ["ContactCreate", "ContactUpdate", "NoteCreate", "TaskCreate", "TaskComplete", "ContactTagUpdate"] {
        assert!(kinds.contains(&kind), "the sandbox sent no {kind}: {kinds:?}");
    }
    for n in &sent {
        let r = client.post(format!("{sandbox}/_sandbox/webhooks/{n}/redeliver")).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    settle(&client, &sandbox, &store).await;
    let hooks: Value = get_json(&client, format!("{sandbox}/_sandbox/webhooks")).await;
    assert_eq!(hooks.as_array().unwrap().len(), sent.len(), "a re-delivery raised a new event");
    // Each re-sent GHL event was refused as a replay, once (a refusal is final, not retried).
    for delivery in hooks.as_array().unwrap() {
        let statuses: Vec<u64> =
            delivery["attempts"].as_array().unwrap().iter().filter_map(|a| a["status"].as_u64()).collect();
        assert_eq!(statuses.last(), Some(&409), "{delivery:#}");
        assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 1, "{delivery:#}");
    }
    assert!(
        svc.metrics.render().contains(&format!("weft_events_duplicate_total {}", sent.len() + 3)),
        "{}",
        svc.metrics.render()
    );

    let events = Store::events(store.as_ref(), &EventFilter::default()).unwrap();
    let dead: Vec<_> =
        events.iter().filter(|e| e.status == EventStatus::Dead).map(|e| (&e.kind, &e.last_error)).collect();
    assert!(dead.is_empty(), "{dead:#?}");

    // The sandbox's state: one contact with its Payhere id, tag and two notes; the task completed; the order
    // fulfilled once.
    let state: Value = get_json(&client, format!("{sandbox}/_sandbox/state")).await;
    let contacts = state["ghl"]["contacts"].as_object().unwrap();
    assert_eq!(contacts.len(), 1, "{state:#}");
    let contact = &contacts[&id];
    let field = state["ghl"]["custom_fields"]
        .as_object()
        .unwrap()
        .values()
        .find(|f| f["fieldKey"] == "contact.payhere_customer_id")
        .unwrap();
    let stored: Vec<&Value> =
        contact["customFields"].as_array().unwrap().iter().filter(|v| v["id"] == field["id"]).collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["value"].to_string().trim_matches('"'), "989899294");
    assert!(contact["tags"].as_array().unwrap().contains(&serde_json::json!("payhere-paid")), "{contact:#}");
    assert_eq!(state["ghl"]["notes"].as_object().unwrap().len(), 2, "the user's note and the payment's");
    assert_eq!(state["ghl"]["tasks"][&task_id]["completed"], true);
    assert_eq!(state["ghl"]["fulfillments"].as_object().unwrap().len(), 1);
    assert_eq!(state["ghl"]["orders"][order["_id"].as_str().unwrap()]["fulfillmentStatus"], "fulfilled");

    // The request log agrees: one custom-field write, one fulfillment, one payment note.
    let log: Value = get_json(&client, format!("{sandbox}/_sandbox/log")).await;
    let count = |method: &str, suffix: &str| {
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["method"] == method
                    && e["path"].as_str().unwrap().ends_with(suffix)
                    && e["status"].as_u64().is_some_and(|s| s < 300)
            })
            .count()
    };
    assert_eq!(count("PUT", &format!("/contacts/{id}")), 1, "{log:#}");
    assert_eq!(count("POST", "/fulfillments"), 1);
    assert_eq!(count("POST", "/notes"), 2);
    assert_eq!(count("POST", "/contacts/upsert"), 1);

    // And the relay got each record once: two notes, the task when created and when completed, the fulfillment,
    // the paid invoice's two transactions.
    let received = received.lock().unwrap().clone();
    let mut records: Vec<String> = received
        .iter()
        .map(|r| format!("{} {}", r["record"].as_str().unwrap(), r["event"].as_str().unwrap()))
        .collect();
    records.sort();
    assert_eq!(
        records,
        [
            "ghl.note NoteCreate",
            "ghl.note NoteCreate",
            "ghl.order_fulfillment OrderCreate",
            "ghl.task TaskComplete",
            "ghl.task TaskCreate",
            "ghl.transaction InvoicePaid",
            "ghl.transaction InvoicePaid"
        ],
        "{received:#?}"
    );
    let mut amounts: Vec<i64> =
        received.iter().filter(|r| r["record"] == "ghl.transaction").map(|r| r["amount"].as_i64().unwrap()).collect();
    amounts.sort();
    assert_eq!(amounts, [40, 60], "the invoice's own transactions, each once");
}
