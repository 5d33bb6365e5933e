//! `weft sandbox` on loopback: GHL contacts keep state across calls, requests are checked against the catalog
//! and refused the way GHL and Razorpay refuse them, pages page, the rate limit answers 429 with its headers,
//! injected faults fail every call, and `/_sandbox/state` and `/_sandbox/log` show what happened.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use weft::catalog::Catalog;
use weft::sandbox::{router, SandboxConfig};

const LOCATION: &str = "ve9EPM428h8vShlRW1KT";

async fn start(config: SandboxConfig) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = router(config, &Catalog::builtin().expect("built-in catalog"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(2)).build().unwrap()
}

async fn call(c: &Client, method: reqwest::Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut req =
        c.request(method, url).header("Authorization", "Bearer pit-sandbox-test").header("Version", "2021-07-28");
    if let Some(body) = body {
        req = req.header("Content-Type", "application/json").body(body.to_string());
    }
    let resp = req.send().await.expect("sandbox answers");
    let status = resp.status();
    (status, serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null))
}

async fn get(c: &Client, url: String) -> (StatusCode, Value) {
    call(c, reqwest::Method::GET, url, None).await
}

async fn post(c: &Client, url: String, body: Value) -> (StatusCode, Value) {
    call(c, reqwest::Method::POST, url, Some(body)).await
}

#[tokio::test]
async fn contacts_upsert_by_email_and_keep_tags_notes_and_tasks() {
    let base = start(SandboxConfig::default()).await;
    let c = client();
    let ann = json!({"locationId": LOCATION, "email": "Ann@Example.com", "firstName": "Ann", "phone": "+1 555 0100"});
    let (status, first) = post(&c, format!("{base}/ghl/contacts/upsert"), ann).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["new"], true);
    let id = first["contact"]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 20);
    assert!(id.chars().all(|ch| ch.is_ascii_alphanumeric()));

    let again = json!({"locationId": LOCATION, "email": "ann@example.com", "lastName": "Lee"});
    let (_, second) = post(&c, format!("{base}/ghl/contacts/upsert"), again).await;
    assert_eq!(second["new"], false);
    assert_eq!(second["contact"]["id"], id.as_str());
    assert_eq!(second["contact"]["firstName"], "Ann", "an upsert keeps fields it does not send");
    assert_eq!(second["contact"]["lastName"], "Lee");

    // The same person found by phone (digits only), and not found in another location.
    let dup = format!("{base}/ghl/contacts/search/duplicate?locationId={LOCATION}&number=%2B15550100");
    assert_eq!(get(&c, dup).await.1["contact"]["id"], id.as_str());
    let elsewhere =
        format!("{base}/ghl/contacts/search/duplicate?locationId=otherLocation0000001&email=ann@example.com");
    assert_eq!(get(&c, elsewhere).await.1["contact"], Value::Null);

    let (status, tags) =
        post(&c, format!("{base}/ghl/contacts/{id}/tags"), json!({"tags": ["razorpay-paid", "vip"]})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(tags["tags"], json!(["razorpay-paid", "vip"]));
    let (_, tags) =
        call(&c, reqwest::Method::DELETE, format!("{base}/ghl/contacts/{id}/tags"), Some(json!({"tags": ["vip"]})))
            .await;
    assert_eq!(tags["tags"], json!(["razorpay-paid"]));
    let (status, note) = post(&c, format!("{base}/ghl/contacts/{id}/notes"), json!({"body": "Paid 500 INR"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(note["note"]["contactId"], id.as_str());
    let task = json!({"title": "Invoice due", "dueDate": "2024-06-01T00:00:00Z", "completed": false});
    let (_, task) = post(&c, format!("{base}/ghl/contacts/{id}/tasks"), task).await;
    let task_id = task["task"]["id"].as_str().unwrap();
    let done = json!({"completed": true});
    let (_, done) =
        call(&c, reqwest::Method::PUT, format!("{base}/ghl/contacts/{id}/tasks/{task_id}/completed"), Some(done)).await;
    assert_eq!(done["task"]["completed"], true);
    assert_eq!(get(&c, format!("{base}/ghl/contacts/{id}/notes")).await.1["notes"][0]["body"], "Paid 500 INR");

    // The lead-score field every location starts with, written by key.
    let (_, fields) = get(&c, format!("{base}/ghl/locations/{LOCATION}/customFields")).await;
    let lead =
        fields["customFields"].as_array().unwrap().iter().find(|f| f["fieldKey"] == "contact.lead_score").unwrap();
    let score = json!({"customFields": [{"key": "lead_score", "field_value": "80"}]});
    let (_, updated) = call(&c, reqwest::Method::PUT, format!("{base}/ghl/contacts/{id}"), Some(score)).await;
    assert_eq!(updated["contact"]["customFields"], json!([{"id": lead["id"], "value": "80"}]));

    let (_, state) = get(&c, format!("{base}/_sandbox/state")).await;
    let contacts = state["ghl"]["contacts"].as_object().unwrap();
    assert_eq!(contacts.len(), 1, "one contact after two upserts: {state}");
    assert_eq!(contacts[&id]["tags"], json!(["razorpay-paid"]));
    let notes: Vec<&Value> = state["ghl"]["notes"].as_object().unwrap().values().collect();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["body"], "Paid 500 INR");
    assert_eq!(notes[0]["contactId"], id.as_str());
    assert_eq!(state["ghl"]["tasks"][task_id]["completed"], true);

    let (status, missing) = get(&c, format!("{base}/ghl/contacts/nosuchcontact000000")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["statusCode"], 404);
}

#[tokio::test]
async fn invalid_requests_get_the_upstreams_own_errors() {
    let base = start(SandboxConfig::default()).await;
    let c = client();
    let (status, answer) = post(&c, format!("{base}/ghl/contacts/upsert"), json!({"email": "a@example.com"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer,
        json!({"statusCode": 422, "message": ["locationId should not be empty"], "error": "Unprocessable Entity"})
    );

    let body = json!({"locationId": LOCATION, "email": "a@example.com", "refundAmount": 5, "dnd": "yes"});
    let (status, answer) = post(&c, format!("{base}/ghl/contacts/upsert"), body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["message"], json!(["property refundAmount should not exist", "dnd must be a boolean value"]));

    // A required query parameter.
    let (status, answer) = get(&c, format!("{base}/ghl/contacts/search/duplicate?email=a@example.com")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["message"], json!(["locationId should not be empty"]));

    // Razorpay: 400 BAD_REQUEST_ERROR naming the field.
    let (status, answer) = get(&c, format!("{base}/razorpay/payments?count=500")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "BAD_REQUEST_ERROR");
    assert_eq!(answer["error"]["field"], "count");
    let (status, answer) = get(&c, format!("{base}/razorpay/payments/pay_00000000000000")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["description"], "The id provided does not exist");

    // Unknown routes: 404 in the connector's shape; an unknown connector names the mounted ones.
    let (status, answer) = get(&c, format!("{base}/ghl/contacts/x/y/z/w")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"], "Not Found");
    let (status, answer) = get(&c, format!("{base}/razorpay/nothing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"]["description"].is_string());
    let (status, answer) = get(&c, format!("{base}/wizehire/applicants")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["message"].as_str().unwrap().contains("/ghl"), "{answer}");

    // A valid request to a route without state: the smallest body its response schema accepts.
    let (status, answer) =
        get(&c, format!("{base}/ghl/payments/subscriptions?altId={LOCATION}&altType=location")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.is_object());
}

#[tokio::test]
async fn lists_page_like_the_upstreams() {
    let payments: Vec<Value> =
        (0..25).map(|i| json!({"amount": 100 * (i + 1), "created_at": 1_700_000_000 + i})).collect();
    let transactions: Vec<Value> = (0..12)
        .map(
            |i| json!({"amount": i, "status": "succeeded", "createdAt": format!("2024-05-{:02}T10:00:00.000Z", i + 1)}),
        )
        .collect();
    let customers: Vec<Value> = (0..5).map(|i| json!({"email": format!("c{i}@example.org")})).collect();
    let seed = json!({
        "ghl": {"location_id": LOCATION, "transactions": transactions},
        "razorpay": {"payments": payments},
        "payhere": {"customers": customers},
    });
    let base = start(SandboxConfig { seed: Some(seed), ..SandboxConfig::default() }).await;
    let c = client();

    let mut seen = Vec::new();
    for skip in [0, 10, 20] {
        let (_, page) = get(&c, format!("{base}/razorpay/payments?count=10&skip={skip}")).await;
        assert_eq!(page["entity"], "collection");
        seen.extend(page["items"].as_array().unwrap().iter().map(|p| p["amount"].as_i64().unwrap()));
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen[0], 2500, "newest first");
    let (_, window) = get(&c, format!("{base}/razorpay/payments?from=1700000010&to=1700000014")).await;
    assert_eq!(window["count"], 5);
    let id = window["items"][0]["id"].as_str().unwrap();
    assert!(id.starts_with("pay_") && id.len() == 18);
    assert_eq!(get(&c, format!("{base}/razorpay/payments/{id}")).await.1["id"], id);

    let q = format!("altId={LOCATION}&altType=location");
    let (_, first) = get(&c, format!("{base}/ghl/payments/transactions?{q}&limit=5&offset=0")).await;
    assert_eq!(first["totalCount"], 12);
    assert_eq!(first["data"].as_array().unwrap().len(), 5);
    let (_, last) = get(&c, format!("{base}/ghl/payments/transactions?{q}&limit=5&offset=10")).await;
    assert_eq!(last["data"].as_array().unwrap().len(), 2);
    let (_, day) = get(&c, format!("{base}/ghl/payments/transactions?{q}&startAt=2024-05-03&endAt=2024-05-04")).await;
    assert_eq!(day["totalCount"], 2);
    let txn = first["data"][0]["_id"].as_str().unwrap();
    assert_eq!(txn.len(), 24);
    assert_eq!(get(&c, format!("{base}/ghl/payments/transactions/{txn}?{q}")).await.1["_id"], txn);

    let (_, page1) = get(&c, format!("{base}/payhere/customers?page=1&per_page=2")).await;
    assert_eq!(page1["meta"]["next_page"], 2);
    let (_, page3) = get(&c, format!("{base}/payhere/customers?page=3&per_page=2")).await;
    assert_eq!(page3["data"].as_array().unwrap().len(), 1);
    assert_eq!(page3["meta"]["next_page"], Value::Null);
    assert_eq!(page3["meta"]["total_count"], 5);
}

#[tokio::test]
async fn orders_take_fulfillments() {
    let order = json!({"_id": "65f1c0ffee0000000000a001", "status": "completed", "sourceType": "funnel", "items": [
        {"_id": "line1", "name": "T-shirt", "product": {"_id": "p1"}, "price": {"_id": "price1"}, "qty": 2}
    ]});
    let seed = json!({"ghl": {"location_id": LOCATION, "orders": [order]}});
    let base = start(SandboxConfig { seed: Some(seed), ..SandboxConfig::default() }).await;
    let c = client();
    let url = format!("{base}/ghl/payments/orders/65f1c0ffee0000000000a001/fulfillments");
    let body = |qty: i64| {
        json!({"altId": LOCATION, "altType": "location", "notifyCustomer": false,
            "trackings": [{"trackingNumber": "TRK1", "shippingCarrier": "UPS"}],
            "items": [{"priceId": "price1", "qty": qty}]})
    };
    let (status, made) = post(&c, url.clone(), body(1)).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    assert_eq!(made["data"]["items"][0]["name"], "T-shirt");
    let q = format!("altId={LOCATION}&altType=location");
    let order_url = format!("{base}/ghl/payments/orders/65f1c0ffee0000000000a001?{q}");
    assert_eq!(get(&c, order_url.clone()).await.1["fulfillmentStatus"], "partially_fulfilled");
    post(&c, url.clone(), body(1)).await;
    assert_eq!(get(&c, order_url).await.1["fulfillmentStatus"], "fulfilled");
    assert_eq!(get(&c, format!("{url}?{q}")).await.1["data"].as_array().unwrap().len(), 2);

    let (status, answer) =
        post(&c, url, json!({"altId": LOCATION, "altType": "agency", "trackings": [], "items": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["message"],
        json!(["notifyCustomer should not be empty", "altType must be one of the following values: location"])
    );
}

#[tokio::test]
async fn invoices_go_from_draft_to_paid_and_subscriptions_come_from_the_seed() {
    let seed = json!({"ghl": {"location_id": LOCATION, "subscriptions": [
        {"_id": "sub_1", "contactId": "c1", "entityId": "prod_1", "liveMode": true, "status": "active"}
    ]}});
    let base = start(SandboxConfig { seed: Some(seed), ..SandboxConfig::default() }).await;
    let c = client();
    let (status, list) = get(&c, format!("{base}/ghl/payments/subscriptions?altId={LOCATION}&altType=location")).await;
    assert_eq!((status, list["totalCount"].clone()), (StatusCode::OK, json!(1)), "{list}");
    let one = format!("{base}/ghl/payments/subscriptions/sub_1?altId={LOCATION}&altType=location");
    assert_eq!(get(&c, one).await.1["status"], "active");
    let missing = format!("{base}/ghl/payments/subscriptions/sub_9?altId={LOCATION}&altType=location");
    assert_eq!(get(&c, missing).await.0, StatusCode::NOT_FOUND);

    let invoice = json!({
        "altId": LOCATION, "altType": "location", "name": "Website build", "currency": "USD", "liveMode": true,
        "businessDetails": {"name": "Acme Agency"}, "issueDate": "2026-11-27", "sentTo": {"email": ["ann@example.com"]},
        "contactDetails": {"id": "c1", "name": "Ann Lee", "email": "ann@example.com"},
        "discount": {"type": "percentage", "value": 10},
        "items": [{"name": "Design", "amount": 500, "qty": 2, "currency": "USD"}]
    });
    let (status, created) = post(&c, format!("{base}/ghl/invoices/"), invoice).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!((created["status"].clone(), created["total"].clone()), (json!("draft"), json!(900.0)));
    let id = created["_id"].as_str().unwrap().to_string();
    let at = |action: &str| format!("{base}/ghl/invoices/{id}/{action}");
    // GHL's schema requires `card`, `cheque` and `notes` whatever the mode.
    let payment = |amount: f64| {
        json!({"altId": LOCATION, "altType": "location", "mode": "cash", "amount": amount, "notes": "paid at the desk",
            "card": {"brand": "none", "last4": "0000"}, "cheque": {"number": "none"}})
    };
    // A draft takes no payment; a sent invoice does, in parts.
    let (status, refused) = post(&c, at("record-payment"), payment(400.0)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, sent) = post(
        &c,
        at("send"),
        json!({"altId": LOCATION, "altType": "location", "userId": "u1", "action": "email", "liveMode": true}),
    )
    .await;
    assert_eq!((status, sent["status"].clone()), (StatusCode::OK, json!("sent")), "{sent}");
    let (_, part) = post(&c, at("record-payment"), payment(400.0)).await;
    assert_eq!(
        (part["invoice"]["status"].clone(), part["invoice"]["amountDue"].clone()),
        (json!("partially_paid"), json!(500.0))
    );
    let (_, full) = post(&c, at("record-payment"), payment(500.0)).await;
    assert_eq!(full["invoice"]["status"], "paid", "{full}");
    assert_eq!(
        post(&c, at("void"), json!({"altId": LOCATION, "altType": "location"})).await.0,
        StatusCode::BAD_REQUEST
    );

    // Each payment is a transaction of the invoice, where the shipped InvoicePaid flow looks for them.
    let txns = format!("{base}/ghl/payments/transactions?altId={LOCATION}&altType=location&entityId={id}");
    let (_, txns) = get(&c, txns).await;
    assert_eq!(txns["totalCount"], 2, "{txns}");
    let (_, listed) =
        get(&c, format!("{base}/ghl/invoices/?altId={LOCATION}&altType=location&limit=10&offset=0&status=paid")).await;
    assert_eq!(listed["total"], 1, "{listed}");
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_its_headers() {
    let base = start(SandboxConfig { rate_limit: Some((5, Duration::from_secs(1))), ..SandboxConfig::default() }).await;
    let c = client();
    let url = format!("{base}/ghl/locations/{LOCATION}/customFields");
    for i in 0..5 {
        let resp = c.get(&url).header("Authorization", "Bearer a").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-ratelimit-remaining"], (4 - i).to_string().as_str());
        assert_eq!(resp.headers()["x-ratelimit-max"], "5");
    }
    let refused = c.get(&url).header("Authorization", "Bearer a").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = refused.headers();
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(h["x-ratelimit-max"], "5");
    assert_eq!(h["x-ratelimit-interval-milliseconds"], "1000");
    assert_eq!(h["x-ratelimit-limit-daily"], "200000");
    let body: Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(body["statusCode"], 429);

    // Another token has its own window; the first one's frees up after the window.
    assert_eq!(c.get(&url).header("Authorization", "Bearer b").send().await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(c.get(&url).header("Authorization", "Bearer a").send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_fail_rate_of_one_fails_every_call() {
    let base = start(SandboxConfig { fail_rate: 1.0, rate_limit: None, ..SandboxConfig::default() }).await;
    let c = Client::builder().timeout(Duration::from_millis(1500)).build().unwrap();
    let url = format!("{base}/ghl/contacts/upsert");
    let calls = (0..24).map(|_| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let body = json!({"locationId": LOCATION, "email": "x@example.com"}).to_string();
            match c.post(&url).header("Content-Type", "application/json").body(body).send().await {
                Ok(resp) => format!("status {}", resp.status().as_u16()),
                Err(e) if e.is_timeout() => "timeout".to_string(),
                Err(_) => "connection error".to_string(),
            }
        }
    });
    let outcomes = futures_util::future::join_all(calls).await;
    for outcome in &outcomes {
        assert!(
            ["status 500", "status 502", "timeout", "connection error"].contains(&outcome.as_str()),
            "not a fault: {outcome}"
        );
    }
    assert!(outcomes.iter().any(|o| o == "connection error"), "no reset among {outcomes:?}");

    let (_, log) = get(&client(), format!("{base}/_sandbox/log")).await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 24);
    assert!(log.iter().all(|e| ["500", "502", "timeout", "reset"].contains(&e["fault"].as_str().unwrap())));
    let (_, state) = get(&client(), format!("{base}/_sandbox/state")).await;
    assert!(state["ghl"]["contacts"].as_object().unwrap().is_empty(), "a failed call changes nothing");
}

#[tokio::test]
async fn the_log_records_every_request_and_reset_restores_the_seed() {
    let seed = json!({"ghl": {"contacts": [{"email": "seeded@example.com", "locationId": LOCATION}]}});
    let base = start(SandboxConfig { seed: Some(seed), ..SandboxConfig::default() }).await;
    let c = client();
    post(&c, format!("{base}/ghl/contacts/upsert"), json!({"locationId": LOCATION, "email": "new@example.com"})).await;
    post(&c, format!("{base}/ghl/contacts/upsert"), json!({"email": "new@example.com"})).await;
    get(&c, format!("{base}/razorpay/payments?count=2")).await;
    get(&c, format!("{base}/payhere/nope")).await;

    let (_, log) = get(&c, format!("{base}/_sandbox/log")).await;
    let log = log.as_array().unwrap();
    let summary: Vec<(String, String, u64)> = log
        .iter()
        .map(|e| {
            (e["method"].as_str().unwrap().into(), e["path"].as_str().unwrap().into(), e["status"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("POST".into(), "/ghl/contacts/upsert".into(), 200),
            ("POST".into(), "/ghl/contacts/upsert".into(), 422),
            ("GET".into(), "/razorpay/payments".into(), 200),
            ("GET".into(), "/payhere/nope".into(), 404),
        ]
    );
    assert_eq!(log[0]["operation"], "ghl.contacts.upsert-contact");
    assert_eq!(log[0]["body"]["email"], "new@example.com");
    assert_eq!(log[2]["query"], json!({"count": "2"}));
    assert_eq!(log[0]["fault"], Value::Null);
    assert!(log.iter().all(|e| e.get("headers").is_none()), "no credentials in the log");

    let (_, state) = get(&c, format!("{base}/_sandbox/state")).await;
    assert_eq!(state["ghl"]["contacts"].as_object().unwrap().len(), 2);
    let (status, _) = post(&c, format!("{base}/_sandbox/reset"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, state) = get(&c, format!("{base}/_sandbox/state")).await;
    let contacts: Vec<&Value> = state["ghl"]["contacts"].as_object().unwrap().values().collect();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["email"], "seeded@example.com");
    assert_eq!(get(&c, format!("{base}/_sandbox/log")).await.1, json!([]));
}

#[test]
fn seed_files_load_as_yaml_and_bad_ones_are_diagnosed() {
    let dir = std::env::temp_dir().join(format!("weft-sandbox-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("seed.yaml");
    std::fs::write(&good, "ghl:\n  location_id: ve9EPM428h8vShlRW1KT\n  contacts:\n    - email: ann@example.com\n")
        .unwrap();
    let seed = weft::sandbox::load_seed(&good).unwrap();
    assert_eq!(seed["ghl"]["contacts"][0]["email"], "ann@example.com");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"ghl": {"contcts": []}}"#).unwrap();
    let problems = weft::sandbox::load_seed(&bad).unwrap_err();
    assert!(problems[0].message.contains("ghl.contcts"), "{}", problems[0].message);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `weft.yaml` connection pointed at the sandbox runs a real flow: the engine's requests pass the sandbox's
/// checks, the engine reads the sandbox's `X-RateLimit-*` headers and waits out the window instead of being
/// refused, and the state shows the flow's effects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_runs_against_the_sandbox_through_a_connection_base_url() {
    use std::sync::Arc;
    use weft::engine::call::Caller;
    use weft::engine::plan::compile_flow;
    use weft::engine::retry::RetryPolicy;
    use weft::engine::run::{EventInput, RunStatus, Runner};
    use weft::source::SourceFile;
    use weft::transport::live::Live;
    use weft::validate::ProjectContext;

    // Two requests a second: after the second, `X-RateLimit-Remaining: 0` makes the engine wait for the window.
    let base = start(SandboxConfig { rate_limit: Some((2, Duration::from_secs(1))), ..SandboxConfig::default() }).await;
    // No other test in this binary reads this variable.
    std::env::set_var("WEFT_TEST_SANDBOX_GHL_TOKEN", "pit-sandbox-flow-test");
    let text = format!(
        "connections:\n  ghl:\n    connector: ghl\n    base_url: {base}/ghl\n    auth: {{ token: {{ env: WEFT_TEST_SANDBOX_GHL_TOKEN }} }}\n    location_id: {LOCATION}\n  razorpay:\n    connector: razorpay\n    base_url: {base}/razorpay\n    auth: {{ username: {{ env: X_ID }}, password: {{ env: X_SECRET }} }}\n"
    );
    let ctx = ProjectContext::from_source(&SourceFile::new("weft.yaml", text));
    assert!(ctx.diagnostics.is_empty(), "{:?}", ctx.diagnostics);
    let flow = SourceFile::new("payment-captured.yaml", include_str!("fixtures/payment-captured.flow.yaml"));
    let plan = Arc::new(compile_flow(&flow, &ctx).expect("the fixture flow compiles"));
    let connections = weft::engine::connection::from_project(&ctx);
    let policy = RetryPolicy { base: Duration::from_millis(5), ..RetryPolicy::default() };
    let caller = Arc::new(Caller::new(Arc::new(Live::new().unwrap()), connections.clone(), None, policy));
    let runner = Runner::new(plan, caller, None, &connections);
    let body: Value = serde_json::from_str(include_str!("fixtures/payment.captured.json")).unwrap();
    let event =
        EventInput { id: "evt_sandbox_1".into(), body, kind: "payment.captured".into(), received_at: String::new() };
    let started = std::time::Instant::now();
    let report = runner.run(&event).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    assert!(started.elapsed() >= Duration::from_millis(900), "the engine did not wait for the window");

    let c = client();
    let (_, state) = get(&c, format!("{base}/_sandbox/state")).await;
    let contact = state["ghl"]["contacts"].as_object().unwrap().values().next().expect("the flow upserted a contact");
    assert_eq!(contact["email"], "gaurav.kumar@example.com");
    assert_eq!(contact["tags"], json!(["razorpay-paid"]));
    let notes: Vec<&Value> = state["ghl"]["notes"].as_object().unwrap().values().collect();
    assert_eq!(notes.len(), 1);
    assert!(notes[0]["body"].as_str().unwrap().contains("1.00 INR"), "{}", notes[0]["body"]);

    let (_, log) = get(&c, format!("{base}/_sandbox/log")).await;
    let statuses: Vec<u64> = log.as_array().unwrap().iter().map(|e| e["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [200, 201, 201], "upsert, tags, note: none refused");
}

/// `GET /contacts/` pages by keyset the way GHL does: each page's `meta` names the last contact, the next
/// request sends it back as `startAfter`/`startAfterId`, and every contact comes exactly once, in order.
#[tokio::test]
async fn contacts_list_pages_by_keyset() {
    let mut seed = json!({"ghl": {"location_id": LOCATION, "contacts": [
        {"id": "otherLocation0000001", "locationId": "elsewhere00000000001", "email": "x@example.org"}
    ]}});
    seed = weft::sandbox::with_generated_contacts(Some(seed), 250).unwrap().unwrap();
    let base = start(SandboxConfig { seed: Some(seed), rate_limit: None, ..SandboxConfig::default() }).await;
    let c = client();

    let mut ids: Vec<String> = Vec::new();
    let mut url = format!("{base}/ghl/contacts/?locationId={LOCATION}&limit=100");
    let mut pages = Vec::new();
    loop {
        let (status, page) = get(&c, url.clone()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let contacts = page["contacts"].as_array().unwrap();
        ids.extend(contacts.iter().map(|c| c["id"].as_str().unwrap().to_string()));
        let meta = page["meta"].clone();
        assert_eq!(meta["total"], 250);
        assert_eq!(page["count"], 250);
        if contacts.is_empty() {
            break;
        }
        assert_eq!(meta["startAfterId"], contacts.last().unwrap()["id"]);
        pages.push(meta.clone());
        if contacts.len() < 100 {
            break;
        }
        url = format!(
            "{base}/ghl/contacts/?locationId={LOCATION}&limit=100&startAfter={}&startAfterId={}",
            meta["startAfter"],
            meta["startAfterId"].as_str().unwrap()
        );
    }
    let expected: Vec<String> = (0..250).map(|i| format!("sbxContact{i:010}")).collect();
    assert_eq!(ids, expected, "each contact once, in order, none from the other location");
    assert_eq!(pages.len(), 3);
    assert_eq!((pages[0]["currentPage"].clone(), pages[0]["nextPage"].clone()), (json!(1), json!(2)));
    assert_eq!(pages[0]["prevPage"], Value::Null);
    assert_eq!(pages[0]["startAfter"], 1_704_067_200_000i64 + 99_000, "dateAdded of the 100th, in ms");
    let next = pages[0]["nextPageUrl"].as_str().unwrap();
    assert!(next.starts_with(&format!("{base}/ghl/contacts/?locationId={LOCATION}")), "{next}");
    assert!(next.ends_with("&startAfterId=sbxContact0000000099"), "{next}");
    assert_eq!((pages[2]["currentPage"].clone(), pages[2]["prevPage"].clone()), (json!(3), json!(2)));
    assert_eq!((pages[2]["nextPage"].clone(), pages[2]["nextPageUrl"].clone()), (Value::Null, Value::Null));

    // Default page size 20; `query` filters (name, email, phone, company); more than 100 is refused.
    let (_, first) = get(&c, format!("{base}/ghl/contacts/?locationId={LOCATION}")).await;
    assert_eq!(first["contacts"].as_array().unwrap().len(), 20);
    let (_, found) = get(&c, format!("{base}/ghl/contacts/?locationId={LOCATION}&query=asha.perera&limit=100")).await;
    assert_eq!(found["meta"]["total"], 4, "{found}");
    assert!(found["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["email"].as_str().unwrap().starts_with("asha.perera")));
    let (status, refused) = get(&c, format!("{base}/ghl/contacts/?locationId={LOCATION}&limit=101")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");

    // The cursor's contact deleted between pages: the page starts after its `startAfter` time instead.
    let gone = "sbxContact0000000099";
    let (status, _) = call(&c, reqwest::Method::DELETE, format!("{base}/ghl/contacts/{gone}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = get(
        &c,
        format!(
            "{base}/ghl/contacts/?locationId={LOCATION}&limit=5&startAfter={}&startAfterId={gone}",
            pages[0]["startAfter"]
        ),
    )
    .await;
    assert_eq!(after["contacts"][0]["id"], "sbxContact0000000100");
    assert_eq!(after["meta"]["total"], 249);
}

/// The engine's GHL pagination rule (connectors/ghl `pagination:`) pages through 20,000 seeded contacts
/// at 100 a page, every contact once (the connection lifts GHL's 100 requests / 10 s, which the engine keeps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_pages_through_twenty_thousand_contacts() {
    use std::sync::Arc;
    use weft::engine::call::Caller;
    use weft::engine::plan::compile_flow;
    use weft::engine::retry::RetryPolicy;
    use weft::engine::run::{EventInput, RunStatus, Runner};
    use weft::source::SourceFile;
    use weft::transport::live::Live;
    use weft::validate::ProjectContext;

    let seed = weft::sandbox::with_generated_contacts(Some(json!({"ghl": {"location_id": LOCATION}})), 20_000).unwrap();
    let base = start(SandboxConfig { seed, rate_limit: None, ..SandboxConfig::default() }).await;
    let text = format!(
        "connections:\n  ghl:\n    connector: ghl\n    base_url: {base}/ghl\n    auth: {{ token: {{ env: HOME }} }}\n    location_id: {LOCATION}\n    rate_limit: {{ requests: 100000, per_seconds: 1 }}\n"
    );
    let ctx = ProjectContext::from_source(&SourceFile::new("weft.yaml", text));
    assert!(ctx.diagnostics.is_empty(), "{:?}", ctx.diagnostics);
    let flow = format!(
        "flow: every-contact\ndescription: Page through every contact.\ntrigger:\n  manual: {{}}\nsteps:\n  - id: contacts\n    call: ghl.contacts.get-contacts\n    query: {{ locationId: {LOCATION}, limit: 100 }}\n    paginate: {{ max_pages: 300 }}\n  - id: summary\n    set:\n      count: \"${{{{ steps.contacts.items | length }}}}\"\n      pages: $.steps.contacts.pages\n"
    );
    let plan = Arc::new(compile_flow(&SourceFile::new("every.yaml", flow), &ctx).unwrap_or_else(|d| panic!("{d:#?}")));
    let connections = weft::engine::connection::from_project(&ctx);
    let caller =
        Arc::new(Caller::new(Arc::new(Live::new().unwrap()), connections.clone(), None, RetryPolicy::default()));
    let runner = Runner::new(plan, caller, None, &connections);
    let started = std::time::Instant::now();
    let report = runner
        .run(&EventInput { id: "e".into(), body: json!({}), kind: "manual".into(), received_at: String::new() })
        .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    let items = report.steps[0].output.as_ref().unwrap()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 20_000);
    let distinct: std::collections::HashSet<&str> = items.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 20_000, "no contact twice");
    assert_eq!(items[19_999]["id"], "sbxContact0000019999");
    // 200 full pages; the last one's `meta.nextPageUrl` is null, so no empty page is asked for after it.
    assert_eq!(report.steps[0].output.as_ref().unwrap()["pages"], 200);
    eprintln!("20,000 contacts in 200 pages: {:?}", started.elapsed());
}

/// What a webhook receiver got: (headers we care about, body), and how many more requests to refuse with a 500.
#[derive(Default)]
struct Inbox {
    accepted: Vec<(axum::http::HeaderMap, Vec<u8>)>,
    refuse: usize,
}

async fn receiver(inbox: std::sync::Arc<std::sync::Mutex<Inbox>>) -> String {
    use axum::extract::State;
    async fn take(
        State(inbox): State<std::sync::Arc<std::sync::Mutex<Inbox>>>,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        let mut inbox = inbox.lock().unwrap();
        if inbox.refuse > 0 {
            inbox.refuse -= 1;
            return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
        }
        inbox.accepted.push((headers, body.to_vec()));
        axum::http::StatusCode::OK
    }
    let app = axum::Router::new().route("/hooks", axum::routing::post(take)).with_state(inbox);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hooks")
}

/// Poll `GET /_sandbox/webhooks` until `n` deliveries are delivered.
async fn delivered(c: &Client, base: &str, n: usize) -> Value {
    for _ in 0..200 {
        let (_, list) = get(c, format!("{base}/_sandbox/webhooks")).await;
        if list.as_array().unwrap().iter().filter(|d| d["delivered"] == true).count() >= n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} deliveries: {}", get(c, format!("{base}/_sandbox/webhooks")).await.1);
}

/// `--webhook-url`: each state change through the API is posted as the app's event, signed so serve's own
/// verifiers accept it (GHL RSA-SHA256 with the configured key, Razorpay HMAC-SHA256), off the request path,
/// retried after a 500, every attempt listed without secrets; a re-delivery is the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_are_sent_as_signed_webhooks() {
    use weft::sandbox::webhooks::rsa_key_from_pem;
    use weft::sandbox::WebhookConfig;
    use weft::serve::signature::{Delivery, Verifier};

    let inbox = std::sync::Arc::new(std::sync::Mutex::new(Inbox { refuse: 2, ..Inbox::default() }));
    let hooks = receiver(inbox.clone()).await;
    let key = rsa_key_from_pem(include_str!("fixtures/sandbox-webhook.key")).unwrap();
    let webhooks = WebhookConfig {
        urls: vec![("*".into(), hooks)],
        ghl_key: Some(std::sync::Arc::new(key)),
        razorpay_secret: Some("rzp-webhook-secret-1".into()),
        backoff: Duration::from_millis(10),
        ..WebhookConfig::default()
    };
    let seed =
        json!({"razorpay": {"payments": [{"id": "pay_Sandbox0000001", "amount": 5000, "status": "authorized"}]}});
    let base = start(SandboxConfig { seed: Some(seed), webhooks, ..SandboxConfig::default() }).await;
    let c = client();

    let (_, made) =
        post(&c, format!("{base}/ghl/contacts/upsert"), json!({"locationId": LOCATION, "email": "hook@example.com"}))
            .await;
    let id = made["contact"]["id"].as_str().unwrap().to_string();
    post(&c, format!("{base}/ghl/contacts/{id}/tags"), json!({"tags": ["vip"]})).await;
    post(&c, format!("{base}/ghl/contacts/{id}/tags"), json!({"tags": ["vip"]})).await; // no change, no event
    post(&c, format!("{base}/ghl/contacts/{id}/notes"), json!({"body": "hello"})).await;
    post(
        &c,
        format!("{base}/ghl/contacts/{id}/tasks"),
        json!({"title": "call", "dueDate": "2025-01-01T00:00:00Z", "completed": false}),
    )
    .await;
    let (status, _) = call(&c, reqwest::Method::DELETE, format!("{base}/ghl/contacts/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, captured) = post(
        &c,
        format!("{base}/razorpay/payments/pay_Sandbox0000001/capture"),
        json!({"amount": 5000, "currency": "INR"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{captured}");

    let list = delivered(&c, &base, 6).await;
    let kinds: Vec<&str> = list.as_array().unwrap().iter().map(|d| d["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ContactCreate", "ContactTagUpdate", "NoteCreate", "TaskCreate", "ContactDelete", "payment.captured"]
    );
    let statuses: Vec<u64> =
        list[0]["attempts"].as_array().unwrap().iter().map(|a| a["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [500, 500, 200], "retried after each 500");

    let catalog = Catalog::builtin().unwrap();
    let declared = |app: &str| catalog.connector(app).unwrap().manifest.webhooks.as_ref().unwrap().signature.clone();
    let ghl = Verifier::new(&declared("ghl"), None, Some(include_str!("fixtures/sandbox-webhook.pub.pem"))).unwrap();
    let razorpay = Verifier::new(&declared("razorpay"), Some("rzp-webhook-secret-1".into()), None).unwrap();
    let accepted = inbox.lock().unwrap().accepted.clone();
    assert_eq!(accepted.len(), 6);
    let text = list.to_string();
    for (headers, body) in &accepted {
        let pairs: Vec<(String, String)> =
            headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())).collect();
        let event: Value = serde_json::from_slice(body).unwrap();
        let verifier = if event["type"].is_string() { &ghl } else { &razorpay };
        verifier
            .verify(&Delivery { headers: &pairs, body }, chrono::Utc::now())
            .unwrap_or_else(|e| panic!("{e}: {event}"));
        for (name, value) in &pairs {
            if name.contains("signature") {
                assert!(!text.contains(value.as_str()), "the list shows a signature");
            }
        }
    }
    let create: Value = serde_json::from_slice(&accepted[0].1).unwrap();
    assert_eq!((create["type"].as_str(), create["id"].as_str()), (Some("ContactCreate"), Some(id.as_str())));
    assert_eq!(create["locationId"], LOCATION);
    assert!(create["webhookId"].is_string() && create["timestamp"].is_string(), "{create}");
    let note: Value = serde_json::from_slice(&accepted[2].1).unwrap();
    assert_eq!((note["contactId"].as_str(), note["locationId"].as_str()), (Some(id.as_str()), Some(LOCATION)));
    let payment: Value = serde_json::from_slice(&accepted[5].1).unwrap();
    assert_eq!(payment["payload"]["payment"]["entity"]["status"], "captured");
    assert!(accepted[5].0["x-razorpay-event-id"].to_str().unwrap().starts_with("evt_"));
    assert!(!text.contains("rzp-webhook-secret-1"));

    // A re-delivery is byte for byte the first one, signature included.
    let (status, _) = post(&c, format!("{base}/_sandbox/webhooks/3/redeliver"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    delivered(&c, &base, 6).await;
    for _ in 0..100 {
        if inbox.lock().unwrap().accepted.len() == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = inbox.lock().unwrap().accepted[6].clone();
    assert_eq!(again.1, accepted[2].1);
    assert_eq!(again.0["x-wh-signature"], accepted[2].0["x-wh-signature"]);
    assert_eq!(post(&c, format!("{base}/_sandbox/webhooks/99/redeliver"), json!({})).await.0, StatusCode::NOT_FOUND);
}
