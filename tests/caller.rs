//! The HTTP runtime end to end: `Caller` over the `Live` transport against a local server (never the internet).
//! Each test starts its own server, so request counts and orders are exact.
//!
//! Timing assertions are lower bounds only ("waited at least the Retry-After"), never upper bounds.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::future::join_all;
use indexmap::IndexMap;
use serde_json::json;
use support::upstream::{Dropper, Upstream};
use weft::catalog::manifest::{AuthScheme, RateLimit};
use weft::dsl::project::{ConnectionAuth, SecretRef};
use weft::engine::call::{CallErrorKind, Caller};
use weft::engine::connection::ConnectionRuntime;
use weft::engine::ratelimit::{simulate, SimulatedClock};
use weft::engine::retry::RetryPolicy;
use weft::store::sqlite::SqliteStore;
use weft::store::{Store, TokenPair};
use weft::transport::live::{Live, LiveOptions};
use weft::transport::{RequestSpec, Transport};

// ---------------------------------------------------------------- helpers

/// A directory of secret files for one test.
fn secrets(files: &[(&str, &str)]) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("weft-caller-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, value) in files {
        // A trailing newline, as `echo > file` leaves: it must not become part of the secret.
        std::fs::write(dir.join(name), format!("{value}\n")).unwrap();
    }
    dir
}

fn file(name: &str) -> Option<SecretRef> {
    Some(SecretRef { env: None, file: Some(name.into()) })
}

fn env(name: &str) -> Option<SecretRef> {
    Some(SecretRef { env: Some(name.into()), file: None })
}

fn conn(name: &str, base_url: &str, scheme: AuthScheme, auth: ConnectionAuth, dir: PathBuf) -> ConnectionRuntime {
    ConnectionRuntime {
        name: name.into(),
        connector: name.into(),
        base_url: base_url.into(),
        auth_scheme: scheme,
        auth,
        auth_header: None,
        token_url: None,
        headers: vec![],
        rate_limit: None,
        retry_statuses: vec![429, 500, 502, 503, 504],
        idempotency_header: None,
        location_id: None,
        base_dir: dir,
    }
}

/// A connection with no credentials.
fn open(name: &str, base_url: &str) -> ConnectionRuntime {
    conn(name, base_url, AuthScheme::None, ConnectionAuth::default(), std::env::temp_dir())
}

/// Millisecond backoff so that tests never wait for the computed delay, only for what servers ask.
fn fast(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(2),
        cap: Duration::from_millis(20),
        max_attempts,
        max_server_wait: Duration::from_secs(10),
    }
}

fn live(timeout: Duration) -> Arc<dyn Transport> {
    Arc::new(Live::with_options(LiveOptions { connect_timeout: Duration::from_secs(2), timeout }).unwrap())
}

fn caller(conns: Vec<ConnectionRuntime>, store: Option<Arc<dyn Store>>, policy: RetryPolicy) -> Caller {
    let map: IndexMap<String, ConnectionRuntime> = conns.into_iter().map(|c| (c.name.clone(), c)).collect();
    Caller::new(live(Duration::from_secs(5)), map, store, policy)
}

fn request(connection: &str, method: &str, path: &str, body: Option<serde_json::Value>) -> RequestSpec {
    RequestSpec {
        connection: connection.into(),
        operation: format!("{connection}.test.{}", path.trim_start_matches('/')),
        method: method.into(),
        base_url: String::new(),
        path: path.into(),
        query: vec![],
        headers: vec![],
        body,
    }
}

fn get(c: &ConnectionRuntime, path: &str) -> RequestSpec {
    RequestSpec { base_url: c.base_url.clone(), ..request(&c.name, "GET", path, None) }
}

fn post(c: &ConnectionRuntime, path: &str, body: serde_json::Value) -> RequestSpec {
    RequestSpec { base_url: c.base_url.clone(), ..request(&c.name, "POST", path, Some(body)) }
}

// ---------------------------------------------------------------- retries

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let up = Upstream::start().await;
    let c = open("app", &up.url());
    let caller = caller(vec![c.clone()], None, fast(5));
    let start = Instant::now();
    let out = caller.call(&get(&c, "/flaky-429"), None).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1), "{:?}", start.elapsed());
    assert_eq!(out.attempts, 2);
    assert_eq!(out.response.status, 200);
    assert!(out.waited >= Duration::from_millis(900), "{:?}", out.waited);
    let seen = up.seen_at("/flaky-429");
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(1));
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let up = Upstream::start().await;
    let c = open("app", &up.url());
    let out = caller(vec![c.clone()], None, fast(5)).call(&get(&c, "/flaky-500"), None).await.unwrap();
    assert_eq!(out.attempts, 3);
    assert_eq!(out.response.body, json!({"ok": true}));
    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.method == "GET" && s.path == "/flaky-500"));
}

#[tokio::test]
async fn exhausted_retries_carry_the_status_and_the_apps_error_body() {
    let up = Upstream::start().await;
    let c = open("app", &up.url());
    let err = caller(vec![c.clone()], None, fast(3)).call(&get(&c, "/always-500"), None).await.unwrap_err();
    assert_eq!(err.kind, CallErrorKind::Http);
    assert_eq!(err.status, Some(500));
    assert_eq!(err.body, Some(json!({"message": "still broken"})));
    assert_eq!(err.attempts, 3);
    assert!(err.message.contains("HTTP 500 after 3 attempts (no attempts left)"), "{}", err.message);
    assert!(err.message.contains("still broken"), "{}", err.message);
    assert_eq!(up.seen().len(), 3);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let up = Upstream::start().await;
    let c = open("app", &up.url());
    let err = caller(vec![c.clone()], None, fast(5))
        .call(&post(&c, "/unprocessable", json!({"refundAmount": 100})), None)
        .await
        .unwrap_err();
    assert_eq!((err.status, err.attempts), (Some(422), 1));
    assert_eq!(err.body, Some(json!({"message": "refundAmount is not allowed"})));
    assert!(err.message.contains("HTTP 422 is not retried"), "{}", err.message);
    assert_eq!(up.seen().len(), 1);
    assert_eq!(up.seen()[0].json(), json!({"refundAmount": 100}));
}

#[tokio::test]
async fn a_write_that_got_a_bare_500_is_not_resent() {
    let up = Upstream::start().await;
    let c = open("app", &up.url());
    let err = caller(vec![c.clone()], None, fast(5)).call(&post(&c, "/flaky-500", json!({})), None).await.unwrap_err();
    assert_eq!((err.status, err.attempts), (Some(500), 1));
    assert!(err.message.contains("may have been applied"), "{}", err.message);
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn a_write_that_got_503_with_retry_after_is_resent() {
    let up = Upstream::start().await;
    let c = open("app", &up.url());
    let out =
        caller(vec![c.clone()], None, fast(5)).call(&post(&c, "/write-503", json!({"a": 1})), None).await.unwrap();
    assert_eq!((out.response.status, out.attempts), (201, 2));
    let seen = up.seen_at("/write-503");
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.json() == json!({"a": 1})));
}

#[tokio::test]
async fn timeouts_are_retried_for_reads_but_not_for_writes() {
    let up = Upstream::start().await;
    let c = open("app", &up.url());
    let map: IndexMap<_, _> = [(c.name.clone(), c.clone())].into_iter().collect();
    let caller = Caller::new(live(Duration::from_millis(200)), map, None, fast(2));

    let err = caller.call(&get(&c, "/slow"), None).await.unwrap_err();
    assert_eq!((err.kind, err.attempts, err.status), (CallErrorKind::Transport, 2, None));
    assert!(err.message.contains("timed out after 200 ms"), "{}", err.message);

    let err = caller.call(&post(&c, "/slow", json!({})), None).await.unwrap_err();
    assert_eq!(err.attempts, 1);
    assert!(err.message.contains("a POST that got no answer may have been applied"), "{}", err.message);
    assert_eq!(up.seen_at("/slow").len(), 3);
}

#[tokio::test]
async fn a_reset_write_is_not_resent_without_an_idempotency_header() {
    let server = Dropper::start(1).await;
    let c = open("app", &server.url());
    let err = caller(vec![c.clone()], None, fast(5))
        .call(&post(&c, "/charges", json!({"amount": 100})), None)
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.attempts), (CallErrorKind::Transport, 1));
    assert!(err.message.contains("connection reset"), "{}", err.message);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_reset_write_is_resent_with_the_same_idempotency_key() {
    let server = Dropper::start(1).await;
    let c = ConnectionRuntime { idempotency_header: Some("Idempotency-Key".into()), ..open("app", &server.url()) };
    let caller = caller(vec![c.clone()], None, fast(5));
    let out = caller.call(&post(&c, "/charges", json!({"amount": 100})), Some("flow:evt_1:charge")).await.unwrap();
    assert_eq!((out.response.status, out.attempts), (200, 2));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert!(r.starts_with("POST /charges HTTP/1.1\r\n"), "{r}");
        assert!(r.to_ascii_lowercase().contains("\r\nidempotency-key: flow:evt_1:charge\r\n"), "{r}");
        assert!(r.ends_with(r#"{"amount":100}"#), "{r}");
    }
}

#[tokio::test]
async fn a_reset_read_is_resent() {
    let server = Dropper::start(2).await;
    let c = open("app", &server.url());
    let out = caller(vec![c.clone()], None, fast(5)).call(&get(&c, "/items"), None).await.unwrap();
    assert_eq!(out.attempts, 3);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_refused_connection_is_retried_even_for_writes() {
    // Nothing listens on this port any more: the request cannot have reached a server.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = open("app", &format!("http://127.0.0.1:{port}"));
    let err = caller(vec![c.clone()], None, fast(3)).call(&post(&c, "/charges", json!({})), None).await.unwrap_err();
    assert_eq!((err.kind, err.attempts), (CallErrorKind::Transport, 3));
    assert!(err.message.contains("could not connect"), "{}", err.message);
}

#[tokio::test]
async fn ghl_rate_limit_headers_set_the_wait() {
    let up = Upstream::start().await;
    let c = open("ghl", &up.url());
    let start = Instant::now();
    let out = caller(vec![c.clone()], None, fast(5)).call(&get(&c, "/ghl-window"), None).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(out.attempts, 2);
    let seen = up.seen_at("/ghl-window");
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_429_holds_the_bucket_for_the_next_calls() {
    let up = Upstream::start().await;
    let c = open("ghl", &up.url());
    // One attempt: the 429 is final for this call, but the next call on the connection still waits it out.
    let caller = caller(vec![c.clone()], None, fast(1));
    let err = caller.call(&get(&c, "/flaky-429"), None).await.unwrap_err();
    assert_eq!(err.status, Some(429));
    let out = caller.call(&get(&c, "/echo"), None).await.unwrap();
    assert!(out.waited >= Duration::from_millis(500), "{:?}", out.waited);
}

#[tokio::test]
async fn on_a_simulated_clock_waits_cost_no_time() {
    let up = Upstream::start().await;
    let c = open("app", &up.url());
    let map: IndexMap<_, _> = [(c.name.clone(), c.clone())].into_iter().collect();
    let caller = Caller::with_clock(live(Duration::from_secs(5)), map, None, fast(5), Arc::new(SimulatedClock::new()));
    let out = caller.call(&get(&c, "/flaky-429"), None).await.unwrap();
    assert_eq!(out.waited, Duration::from_secs(1));
    assert_eq!(out.attempts, 2);
}

// ---------------------------------------------------------------- auth and headers

#[tokio::test]
async fn basic_auth_and_connector_headers_go_on_the_wire_exactly() {
    let up = Upstream::start().await;
    let dir = secrets(&[("key_id", "rzp_test_AbCdEf123456"), ("key_secret", "s3cret-Key-Value")]);
    let auth = ConnectionAuth { username: file("key_id"), password: file("key_secret"), ..Default::default() };
    let c = ConnectionRuntime {
        headers: vec![("Version".into(), "2021-07-28".into())],
        ..conn("razorpay", &up.url(), AuthScheme::Basic, auth, dir)
    };
    let caller = caller(vec![c.clone()], None, fast(5));
    let mut req = post(&c, "/echo", json!({"amount": 5000, "currency": "INR"}));
    req.query = vec![("expand[]".into(), "card".into())];

    let printed = caller.prepare(&req, None);
    assert!(printed.header("authorization").is_none(), "credentials never enter the printed request");
    assert_eq!(printed.header("version"), Some("2021-07-28"));

    let out = caller.call(&req, None).await.unwrap();
    assert_eq!(out.attempts, 1);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!((s.method.as_str(), s.path.as_str(), s.query.as_str()), ("POST", "/echo", "expand%5B%5D=card"));
    let expected = base64::engine::general_purpose::STANDARD.encode("rzp_test_AbCdEf123456:s3cret-Key-Value");
    assert_eq!(s.header("authorization"), Some(format!("Basic {expected}").as_str()));
    assert_eq!(s.header("version"), Some("2021-07-28"));
    assert_eq!(s.header("content-type"), Some("application/json"));
    assert_eq!(s.body, r#"{"amount":5000,"currency":"INR"}"#);

    // The flow's own Version wins over the connector's, and is not sent twice.
    let mut req = get(&c, "/echo");
    req.headers.push(("version".into(), "2023-02-21".into()));
    caller.call(&req, None).await.unwrap();
    let s = &up.seen()[1];
    assert_eq!(s.headers.iter().filter(|(k, _)| k == "version").count(), 1);
    assert_eq!(s.header("version"), Some("2023-02-21"));
}

#[tokio::test]
async fn the_redactor_scrubs_secrets_and_their_wire_forms() {
    let dir = secrets(&[
        ("key_id", "rzp_test_AbCdEf123456"),
        ("key_secret", "s3cret-Key-Value"),
        ("tok", "pit-0123456789abcdef"),
    ]);
    let basic = ConnectionAuth { username: file("key_id"), password: file("key_secret"), ..Default::default() };
    let bearer = ConnectionAuth { token: file("tok"), ..Default::default() };
    let caller = caller(
        vec![
            conn("razorpay", "http://x", AuthScheme::Basic, basic, dir.clone()),
            conn("payhere", "http://y", AuthScheme::Bearer, bearer, dir),
        ],
        None,
        fast(1),
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode("rzp_test_AbCdEf123456:s3cret-Key-Value");
    let text = format!(
        "Authorization: Basic {b64}\nkey=rzp_test_AbCdEf123456 secret=s3cret-Key-Value\nAuthorization: Bearer pit-0123456789abcdef"
    );
    assert_eq!(
        caller.redactor().redact(&text),
        "Authorization: Basic [redacted]\nkey=[redacted] secret=[redacted]\nAuthorization: Bearer [redacted]"
    );
}

#[tokio::test]
async fn header_and_env_secrets() {
    let up = Upstream::start().await;
    // The only test that sets a variable; its name is used nowhere else.
    std::env::set_var("WEFT_CALLER_TEST_RELAY_KEY", "relay-key-from-env");
    let auth = ConnectionAuth { api_key: env("WEFT_CALLER_TEST_RELAY_KEY"), ..Default::default() };
    let c = ConnectionRuntime {
        auth_header: Some("X-Relay-Secret".into()),
        ..conn("relay", &up.url(), AuthScheme::Header, auth, std::env::temp_dir())
    };
    caller(vec![c.clone()], None, fast(1)).call(&post(&c, "/echo", json!({"x": 1})), None).await.unwrap();
    let s = &up.seen()[0];
    assert_eq!(s.header("x-relay-secret"), Some("relay-key-from-env"));
    assert!(s.header("authorization").is_none());
}

#[tokio::test]
async fn url_auth_sends_to_the_secret_url() {
    let up = Upstream::start().await;
    let hook = format!("{}/hooks/T000/B000/XXXXsecretXXXX", up.url());
    let dir = secrets(&[("hook", &hook)]);
    let c = conn("slack", "", AuthScheme::Url, ConnectionAuth { url: file("hook"), ..Default::default() }, dir);
    let caller = caller(vec![c.clone()], None, fast(1));
    let out = caller.call(&post(&c, "/", json!({"text": "Order paid"})), None).await.unwrap();
    assert_eq!(out.response.body, json!("ok"));
    let s = &up.seen()[0];
    assert_eq!(s.path, "/hooks/T000/B000/XXXXsecretXXXX");
    assert_eq!(s.json(), json!({"text": "Order paid"}));
    assert_eq!(caller.redactor().redact(&format!("posting to {hook}")), "posting to [redacted]");
}

#[tokio::test]
async fn a_missing_secret_names_connection_key_and_variable_never_a_value() {
    let up = Upstream::start().await;
    let dir = secrets(&[("key_id", "rzp_live_PresentKey0001")]);
    let auth = ConnectionAuth {
        username: file("key_id"),
        password: env("WEFT_CALLER_TEST_SURELY_UNSET_SECRET"),
        ..Default::default()
    };
    let c = conn("razorpay", &up.url(), AuthScheme::Basic, auth, dir);
    let err = caller(vec![c.clone()], None, fast(3)).call(&get(&c, "/echo"), None).await.unwrap_err();
    assert_eq!((err.kind, err.attempts, err.status), (CallErrorKind::Secret, 0, None));
    assert!(
        err.message.contains(
            "connection `razorpay`: secret `auth.password` is unavailable: environment variable \
             `WEFT_CALLER_TEST_SURELY_UNSET_SECRET` is not set"
        ),
        "{}",
        err.message
    );
    assert!(!err.message.contains("rzp_live_PresentKey0001"));
    assert!(up.seen().is_empty(), "nothing is sent without credentials");

    // A key the scheme needs and weft.yaml does not set says how to add it.
    let c = conn("payhere", &up.url(), AuthScheme::Bearer, ConnectionAuth::default(), std::env::temp_dir());
    let err = caller(vec![c.clone()], None, fast(1)).call(&get(&c, "/echo"), None).await.unwrap_err();
    assert!(
        err.message
            .contains("secret `auth.token` is unavailable: weft.yaml does not set it (add `auth.token: { env: NAME }`"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn unknown_connection_is_a_config_error() {
    let err = caller(vec![], None, fast(1)).call(&request("nope", "GET", "/", None), None).await.unwrap_err();
    assert_eq!(err.kind, CallErrorKind::Config);
    assert!(err.message.contains("connection `nope` is not configured"));
}

#[tokio::test]
async fn redirects_are_followed_on_the_same_host_only() {
    let up = Upstream::start().await;
    let dir = secrets(&[("key", "relay-key-0001")]);
    let c = ConnectionRuntime {
        auth_header: Some("X-Api-Key".into()),
        ..conn(
            "relay",
            &up.url(),
            AuthScheme::Header,
            ConnectionAuth { api_key: file("key"), ..Default::default() },
            dir,
        )
    };
    let caller = caller(vec![c.clone()], None, fast(1));
    let out = caller.call(&get(&c, "/redirect-same"), None).await.unwrap();
    assert_eq!(out.response.body, json!({"ok": true}));
    let seen = up.seen();
    assert_eq!(seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(), ["/redirect-same", "/echo"]);
    assert!(seen.iter().all(|s| s.header("x-api-key") == Some("relay-key-0001")));

    let err = caller.call(&get(&c, "/redirect-cross"), None).await.unwrap_err();
    assert_eq!(err.status, Some(302));
    assert!(err.message.contains("is not followed"), "{}", err.message);
    assert_eq!(up.seen().len(), 3, "the other host never saw the key");
}

#[tokio::test]
async fn text_and_empty_bodies() {
    let up = Upstream::start().await;
    let c = open("app", &up.url());
    let caller = caller(vec![c.clone()], None, fast(1));
    assert_eq!(caller.call(&get(&c, "/text"), None).await.unwrap().response.body, json!("plain words"));
    let empty = caller.call(&get(&c, "/empty"), None).await.unwrap().response;
    assert_eq!((empty.status, empty.body), (204, serde_json::Value::Null));
}

// ---------------------------------------------------------------- OAuth 2

fn ghl(up: &Upstream, dir: PathBuf, auth: ConnectionAuth) -> ConnectionRuntime {
    ConnectionRuntime {
        token_url: Some(format!("{}/oauth/token", up.url())),
        headers: vec![("Version".into(), "2021-07-28".into())],
        location_id: Some("loc1".into()),
        ..conn("ghl", &up.url(), AuthScheme::Oauth2, auth, dir)
    }
}

fn client_auth() -> (PathBuf, ConnectionAuth) {
    let dir = secrets(&[("cid", "client-id-0001"), ("csecret", "client-secret-0001"), ("rt", "rt-revoked-0001")]);
    let auth = ConnectionAuth { client_id: file("cid"), client_secret: file("csecret"), ..Default::default() };
    (dir, auth)
}

fn store_with(access: &str, expires_in: Option<i64>) -> Arc<SqliteStore> {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let pair = TokenPair {
        access_token: access.into(),
        refresh_token: Some("refresh-0".into()),
        expires_at: expires_in.map(|s| chrono::Utc::now().timestamp() + s),
        scope: None,
    };
    store.save_token("ghl", &pair).unwrap();
    store
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_first_and_saved() {
    let up = Upstream::start().await;
    let (dir, auth) = client_auth();
    let c = ghl(&up, dir, auth);
    // Expires in 30 s: inside the 60 s margin.
    let store = store_with("old-access", Some(30));
    let caller = caller(vec![c.clone()], Some(store.clone()), fast(3));
    let out = caller.call(&get(&c, "/protected"), None).await.unwrap();
    assert_eq!(out.attempts, 1);

    let seen = up.seen();
    assert_eq!(
        seen.iter().map(|s| (s.method.as_str(), s.path.as_str())).collect::<Vec<_>>(),
        [("POST", "/oauth/token"), ("GET", "/protected")]
    );
    assert_eq!(seen[0].header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(
        seen[0].body,
        "grant_type=refresh_token&refresh_token=refresh-0&client_id=client-id-0001&client_secret=client-secret-0001"
    );
    assert_eq!(seen[1].header("authorization"), Some("Bearer access-1"));
    assert_eq!(seen[1].header("version"), Some("2021-07-28"));

    let saved = store.load_token("ghl").unwrap().unwrap();
    assert_eq!((saved.access_token.as_str(), saved.refresh_token.as_deref()), ("access-1", Some("refresh-1")));
    assert!(saved.expires_at.unwrap() >= chrono::Utc::now().timestamp() + 86_000);
    assert_eq!(saved.scope.as_deref(), Some("contacts.readonly"));
    // Tokens obtained at run time are secrets too.
    assert_eq!(caller.redactor().redact("access-1 refresh-1"), "[redacted] [redacted]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_calls_with_an_expired_token_refresh_once() {
    let up = Upstream::start().await;
    let (dir, auth) = client_auth();
    let c = ghl(&up, dir, auth);
    let caller = Arc::new(caller(vec![c.clone()], Some(store_with("old-access", Some(-10))), fast(3)));
    let calls = (0..10).map(|_| {
        let caller = caller.clone();
        let req = get(&c, "/protected");
        tokio::spawn(async move { caller.call(&req, None).await })
    });
    for result in join_all(calls).await {
        assert_eq!(result.unwrap().unwrap().attempts, 1);
    }
    assert_eq!(up.refreshes(), 1);
    assert!(up.seen_at("/protected").iter().all(|s| s.header("authorization") == Some("Bearer access-1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_401s_refresh_once_and_each_call_is_resent() {
    let up = Upstream::start().await;
    let (dir, auth) = client_auth();
    let c = ghl(&up, dir, auth);
    // No expiry known: the token looks fine until the app says 401.
    let store = store_with("revoked-access", None);
    let caller = Arc::new(caller(vec![c.clone()], Some(store.clone()), fast(3)));
    let calls = (0..10).map(|_| {
        let caller = caller.clone();
        let req = get(&c, "/protected");
        tokio::spawn(async move { caller.call(&req, None).await })
    });
    // A call that went out with the old token got a 401 and was resent once; one that started after the refresh
    // went out with the new token straight away.
    let mut resent = 0;
    for result in join_all(calls).await {
        let out = result.unwrap().unwrap();
        assert!(out.attempts <= 2);
        resent += (out.attempts == 2) as usize;
    }
    assert_eq!(up.refreshes(), 1);
    assert!(resent >= 1);
    let protected = up.seen_at("/protected");
    assert_eq!(protected.len(), 10 + resent);
    assert_eq!(protected.iter().filter(|s| s.header("authorization") == Some("Bearer revoked-access")).count(), resent);
    assert_eq!(store.load_token("ghl").unwrap().unwrap().access_token, "access-1");
}

#[tokio::test]
async fn without_a_store_the_configured_refresh_token_is_used() {
    let up = Upstream::start().await;
    let dir = secrets(&[("cid", "client-id-0001"), ("csecret", "client-secret-0001"), ("rt", "configured-rt-01")]);
    let auth = ConnectionAuth {
        client_id: file("cid"),
        client_secret: file("csecret"),
        refresh_token: file("rt"),
        ..Default::default()
    };
    let c = ghl(&up, dir, auth);
    let out = caller(vec![c.clone()], None, fast(3)).call(&get(&c, "/protected"), None).await.unwrap();
    assert_eq!(out.attempts, 1);
    assert!(up.seen()[0].body.contains("refresh_token=configured-rt-01"));
}

#[tokio::test]
async fn a_refused_refresh_is_an_auth_error_that_leaks_nothing() {
    let up = Upstream::start().await;
    let (dir, mut auth) = client_auth();
    auth.refresh_token = file("rt");
    let c = ghl(&up, dir, auth);
    let err = caller(vec![c.clone()], None, fast(3)).call(&get(&c, "/protected"), None).await.unwrap_err();
    assert_eq!((err.kind, err.status, err.attempts), (CallErrorKind::Auth, Some(400), 0));
    assert_eq!(err.body.as_ref().unwrap()["error"], "invalid_grant");
    assert!(err.message.contains("answered HTTP 400"), "{}", err.message);
    for secret in ["client-secret-0001", "rt-revoked-0001", "client-id-0001"] {
        assert!(!err.message.contains(secret), "{}", err.message);
    }
    assert!(up.seen_at("/protected").is_empty());
}

#[tokio::test]
async fn a_private_integration_token_is_plain_bearer_and_a_401_is_final() {
    let up = Upstream::start().await;
    let dir = secrets(&[("pit", "pit-11111111-2222")]);
    let c = ghl(&up, dir, ConnectionAuth { token: file("pit"), ..Default::default() });
    let err = caller(vec![c.clone()], None, fast(3)).call(&get(&c, "/protected"), None).await.unwrap_err();
    assert_eq!((err.status, err.attempts), (Some(401), 1));
    assert_eq!(up.refreshes(), 0);
    assert_eq!(up.seen()[0].header("authorization"), Some("Bearer pit-11111111-2222"));
    assert!(!err.message.contains("pit-11111111-2222"));
}

// ---------------------------------------------------------------- rate limits

#[test]
fn simulated_budget_for_ghl_limits() {
    let budget = simulate(&RateLimit { requests: 100, per_seconds: 10, per_day: Some(200_000) }, 250);
    assert_eq!(budget.duration, Duration::from_secs(20));
    assert_eq!(budget.first_throttled_call, Some(101));
    assert_eq!(budget.to_string(), "250 calls take at least 20.0 s; without throttling, call 101 would get a 429");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_throttles_concurrent_calls_on_the_real_clock() {
    let up = Upstream::start().await;
    let c = ConnectionRuntime {
        rate_limit: Some(RateLimit { requests: 5, per_seconds: 1, per_day: None }),
        ..open("app", &up.url())
    };
    let caller = Arc::new(caller(vec![c.clone()], None, fast(1)));
    let start = Instant::now();
    let calls = (0..12).map(|_| {
        let caller = caller.clone();
        let req = get(&c, "/echo");
        tokio::spawn(async move { caller.call(&req, None).await })
    });
    for result in join_all(calls).await {
        result.unwrap().unwrap();
    }
    // 5 at once, 5 a second later, 2 a second after that.
    assert!(start.elapsed() >= Duration::from_secs(2), "{:?}", start.elapsed());
    let seen = up.seen();
    assert_eq!(seen.len(), 12);
    // In arrival order: only 5 calls can start in the first second, only 10 in the first two.
    assert!(seen[5].at - start >= Duration::from_secs(1));
    assert!(seen[10].at - start >= Duration::from_secs(2));
}
