//! Poll triggers page through their list one page at a time, against a loopback stand-in: every item is queued
//! once however many scans see it, a scan cut short resumes at the page after the last one queued, and a
//! cursor-paged list (GHL contacts) is followed from its tail on the next scan.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use weft::serve::Service;
use weft::store::sqlite::SqliteStore;
use weft::store::{EventFilter, Store};
use weft::validate::ProjectContext;

/// What the stand-in holds and saw: its list, the query of every list request, and a page number to fail.
#[derive(Default)]
struct Upstream {
    items: Vec<Value>,
    queries: Vec<Vec<(String, String)>>,
    fail_from_skip: Option<usize>,
}

type Shared = Arc<Mutex<Upstream>>;

/// Razorpay's `GET /payments` (count/skip, newest first) and GHL's `GET /contacts/` (limit + startAfterId).
async fn stand_in(shared: Shared) -> String {
    async fn payments(
        State(s): State<Shared>,
        Query(q): Query<Vec<(String, String)>>,
    ) -> Result<Json<Value>, StatusCode> {
        let mut up = s.lock().unwrap();
        up.queries.push(q.clone());
        let num = |k: &str| q.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.parse::<usize>().ok());
        let (count, skip) = (num("count").unwrap_or(10), num("skip").unwrap_or(0));
        if up.fail_from_skip.is_some_and(|f| skip >= f) {
            return Err(StatusCode::NOT_FOUND);
        }
        let page: Vec<Value> = up.items.iter().skip(skip).take(count).cloned().collect();
        Ok(Json(json!({"entity": "collection", "count": page.len(), "items": page})))
    }
    async fn contacts(State(s): State<Shared>, Query(q): Query<Vec<(String, String)>>) -> Json<Value> {
        let mut up = s.lock().unwrap();
        up.queries.push(q.clone());
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let limit = get("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
        let start = match get("startAfterId") {
            Some(id) => up.items.iter().position(|c| c["id"] == id.as_str()).map_or(0, |i| i + 1),
            None => 0,
        };
        let page: Vec<Value> = up.items.iter().skip(start).take(limit).cloned().collect();
        let last = page.last().cloned();
        let more = start + page.len() < up.items.len();
        Json(json!({
            "contacts": page,
            "meta": {
                "total": up.items.len(),
                "nextPageUrl": more.then_some("http://127.0.0.1/ghl/contacts/?page=next"),
                "startAfterId": last.as_ref().map(|c| c["id"].clone()),
                "startAfter": last.as_ref().map(|c| c["dateAddedMs"].clone()),
            }
        }))
    }
    let app = Router::new()
        .route("/razorpay/payments", get(payments))
        .route("/ghl/contacts/", get(contacts))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn project(name: &str, upstream: &str, flow: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-poll-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("token"), "pit-poll-test-token").unwrap();
    std::fs::write(
        dir.join("weft.yaml"),
        format!(
            "connections:\n  razorpay:\n    connector: razorpay\n    base_url: {upstream}/razorpay\n    auth: {{ username: {{ file: token }}, password: {{ file: token }} }}\n  ghl:\n    connector: ghl\n    base_url: {upstream}/ghl\n    auth: {{ token: {{ file: token }} }}\n    location_id: ve9EPM428h8vShlRW1KT\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("flows/poll.yaml"), flow).unwrap();
    dir
}

fn service(dir: &std::path::Path) -> (Arc<Service>, Arc<SqliteStore>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ctx = ProjectContext::load(Some(&dir.join("weft.yaml")));
    assert!(ctx.diagnostics.iter().all(|d| !d.is_error()), "{:?}", ctx.diagnostics);
    let store = Arc::new(SqliteStore::open(&dir.join(".weft/state.db")).unwrap());
    let svc = Service::build(&ctx, &[dir.join("flows")], store.clone()).unwrap_or_else(|d| panic!("{d:#?}"));
    (Arc::new(svc), store)
}

fn event_ids(store: &SqliteStore) -> Vec<String> {
    let filter = EventFilter { limit: 10_000, ..EventFilter::default() };
    let mut ids: Vec<String> = store.events(&filter).unwrap().into_iter().map(|e| e.event_id).collect();
    ids.sort();
    ids
}

fn param(query: &[(String, String)], name: &str) -> Option<String> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

const PAYMENTS_FLOW: &str = "flow: new-payments\ndescription: Every new Razorpay payment.\ntrigger:\n  poll: { call: razorpay.payments.list-payments, every: 1h, query: { count: 100 }, items: $.items, id: $.id }\nsteps:\n  - id: seen\n    set: { id: $.trigger.id }\n";

/// A GHL contact as the stand-in lists it: ids and times in creation order.
fn contact(i: usize) -> Value {
    json!({"id": format!("c{i:05}"), "dateAddedMs": 1_700_000_000_000u64 + i as u64})
}

fn payments(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"id": format!("pay_{i:05}"), "amount": 100 + i})).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_pages_through_the_whole_list_and_queues_each_item_once() {
    let up = Arc::new(Mutex::new(Upstream { items: payments(250), ..Upstream::default() }));
    let dir = project("pages", &stand_in(up.clone()).await, PAYMENTS_FLOW);
    let (svc, store) = service(&dir);

    assert_eq!(svc.poll_now("new-payments").await.unwrap(), 250);
    let skips: Vec<Option<String>> = up.lock().unwrap().queries.iter().map(|q| param(q, "skip")).collect();
    assert_eq!(skips, [Some("0".into()), Some("100".into()), Some("200".into())]);
    let ids = event_ids(&store);
    assert_eq!(ids.len(), 250);
    assert_eq!(ids.first().map(String::as_str), Some("new-payments:pay_00000"));
    assert_eq!(ids.last().map(String::as_str), Some("new-payments:pay_00249"));

    // An offset-paged list changes under its offsets, so the next scan reads it from the start again; the items
    // it already queued are not queued twice, the new one is.
    up.lock().unwrap().items.insert(0, json!({"id": "pay_new", "amount": 7}));
    up.lock().unwrap().queries.clear();
    assert_eq!(svc.poll_now("new-payments").await.unwrap(), 1);
    assert_eq!(param(&up.lock().unwrap().queries[0], "skip").as_deref(), Some("0"));
    assert_eq!(event_ids(&store).len(), 251);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_cut_short_resumes_after_the_last_page_it_queued() {
    let up = Arc::new(Mutex::new(Upstream { items: payments(250), fail_from_skip: Some(200), ..Upstream::default() }));
    let dir = project("resume", &stand_in(up.clone()).await, PAYMENTS_FLOW);
    let (svc, store) = service(&dir);

    let err = svc.poll_now("new-payments").await.unwrap_err();
    assert!(err.contains("404"), "{err}");
    assert_eq!(event_ids(&store).len(), 200, "the two pages before the failure are queued");
    let saved: Value = serde_json::from_str(&store.poll_cursor("new-payments").unwrap().unwrap()).unwrap();
    assert_eq!(saved["at"], json!({"skip": "200"}));

    // The upstream recovers: the next scan starts at the page that failed, not at the first.
    up.lock().unwrap().fail_from_skip = None;
    up.lock().unwrap().queries.clear();
    assert_eq!(svc.poll_now("new-payments").await.unwrap(), 50);
    let skips: Vec<Option<String>> = up.lock().unwrap().queries.iter().map(|q| param(q, "skip")).collect();
    assert_eq!(skips, [Some("200".into())]);
    assert_eq!(event_ids(&store).len(), 250);
    assert_eq!(store.poll_cursor("new-payments").unwrap().as_deref(), Some(""), "done: the next scan starts over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_paged_list_is_followed_from_its_tail() {
    let up = Arc::new(Mutex::new(Upstream { items: (0..230).map(contact).collect(), ..Upstream::default() }));
    let flow = "flow: new-contacts\ndescription: Every new GHL contact.\ntrigger:\n  poll:\n    call: ghl.contacts.get-contacts\n    every: 1h\n    query: { locationId: \"${{ connections.ghl.location_id }}\", limit: 100 }\n    items: $.contacts\n    id: $.id\nsteps:\n  - id: seen\n    set: { id: $.trigger.id }\n";
    let dir = project("cursor", &stand_in(up.clone()).await, flow);
    let (svc, store) = service(&dir);

    assert_eq!(svc.poll_now("new-contacts").await.unwrap(), 230);
    let after: Vec<Option<String>> = up.lock().unwrap().queries.iter().map(|q| param(q, "startAfterId")).collect();
    assert_eq!(after, [None, Some("c00099".into()), Some("c00199".into())]);

    // The next scan asks only for what came after the last contact it saw.
    up.lock().unwrap().items.extend([contact(230), contact(231)]);
    up.lock().unwrap().queries.clear();
    assert_eq!(svc.poll_now("new-contacts").await.unwrap(), 2);
    let queries = up.lock().unwrap().queries.clone();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert_eq!(param(&queries[0], "startAfterId").as_deref(), Some("c00229"));
    assert_eq!(param(&queries[0], "locationId").as_deref(), Some("ve9EPM428h8vShlRW1KT"));
    assert_eq!(event_ids(&store).len(), 232);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_list_query_starts_from_the_first_page() {
    let up = Arc::new(Mutex::new(Upstream { items: (0..150).map(contact).collect(), ..Upstream::default() }));
    let flow = |query: &str| {
        format!("flow: tagged-contacts\ndescription: New GHL contacts.\ntrigger:\n  poll: {{ call: ghl.contacts.get-contacts, every: 1h, query: {{ {query} }}, items: $.contacts, id: $.id }}\nsteps:\n  - id: seen\n    set: {{ id: $.trigger.id }}\n")
    };
    let dir = project("changed", &stand_in(up.clone()).await, &flow("locationId: abc, limit: 100"));
    let (svc, store) = service(&dir);
    assert_eq!(svc.poll_now("tagged-contacts").await.unwrap(), 150);

    // Same list, `every` aside: the next scan continues after the last contact.
    up.lock().unwrap().queries.clear();
    assert_eq!(svc.poll_now("tagged-contacts").await.unwrap(), 0);
    assert_eq!(param(&up.lock().unwrap().queries[0], "startAfterId").as_deref(), Some("c00149"));

    // Another query is another list: its first scan reads it from the first page, not from the old tail.
    std::fs::write(dir.join("flows/poll.yaml"), flow("locationId: abc, limit: 100, query: vip")).unwrap();
    svc.reload().unwrap();
    up.lock().unwrap().queries.clear();
    assert_eq!(svc.poll_now("tagged-contacts").await.unwrap(), 0, "the same contacts: none queued twice");
    let queries = up.lock().unwrap().queries.clone();
    assert_eq!(param(&queries[0], "startAfterId"), None, "{queries:?}");
    assert_eq!(param(&queries[0], "query").as_deref(), Some("vip"));
    assert_eq!(queries.len(), 2, "both pages of the new list");
    assert_eq!(event_ids(&store).len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_last_page_is_not_followed_by_an_empty_one() {
    let up = Arc::new(Mutex::new(Upstream { items: (0..200).map(contact).collect(), ..Upstream::default() }));
    let flow = "flow: all-contacts\ndescription: Every GHL contact.\ntrigger:\n  poll: { call: ghl.contacts.get-contacts, every: 1h, query: { locationId: abc, limit: 100 }, items: $.contacts, id: $.id }\nsteps:\n  - id: seen\n    set: { id: $.trigger.id }\n";
    let dir = project("full-last", &stand_in(up.clone()).await, flow);
    let (svc, _store) = service(&dir);
    assert_eq!(svc.poll_now("all-contacts").await.unwrap(), 200);
    // GHL's meta.nextPageUrl is null on the second page: no third request for nothing.
    assert_eq!(up.lock().unwrap().queries.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_waits_for_its_rate_limit_and_the_metrics_show_it() {
    let up = Arc::new(Mutex::new(Upstream { items: payments(250), ..Upstream::default() }));
    let dir = project("limited", &stand_in(up.clone()).await, PAYMENTS_FLOW);
    // Two requests per second: the third page waits for the first token to come back.
    let yaml = std::fs::read_to_string(dir.join("weft.yaml")).unwrap().replace(
        "    connector: razorpay\n",
        "    connector: razorpay\n    rate_limit: { requests: 2, per_seconds: 1 }\n",
    );
    std::fs::write(dir.join("weft.yaml"), yaml).unwrap();
    let (svc, _store) = service(&dir);
    let started = std::time::Instant::now();
    assert_eq!(svc.poll_now("new-payments").await.unwrap(), 250);
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "{:?}", started.elapsed());
    let metrics = svc.metrics.render();
    assert!(metrics.contains("weft_upstream_calls_total{connection=\"razorpay\",status=\"200\"} 3"), "{metrics}");
    assert!(metrics.contains("weft_rate_limit_waits_total{connection=\"razorpay\"} 1"), "{metrics}");
}
