//! A local stand-in for GHL and the partner apps: a real HTTP server on 127.0.0.1 that misbehaves on purpose
//! (429 with `Retry-After`, 5xx, slowness, expired tokens, GHL's `X-RateLimit-*` headers) and remembers every
//! request it received, so tests assert exactly what went over the wire.
//!
//! [`Upstream`] is an axum server; [`Dropper`] is a raw TCP listener that reads a request and closes the
//! connection without answering (a reset), which axum cannot be made to do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Names lower-cased (as HTTP/1 servers see them), values as sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    hits: Mutex<HashMap<String, u32>>,
    port: Mutex<u16>,
}

impl Shared {
    fn hit(&self, key: &str) -> u32 {
        let mut hits = self.hits.lock().unwrap();
        let n = hits.entry(key.to_string()).or_default();
        *n += 1;
        *n
    }
}

/// The fake app. Routes (each counts its own hits, from 1):
///
/// | path | answer |
/// |---|---|
/// | `/echo` | 200 `{"ok": true}` |
/// | `/text` | 200 `text/plain` "plain words" |
/// | `/empty` | 204 |
/// | `/flaky-429` | first: 429 + `Retry-After: 1`; then 200 |
/// | `/flaky-500` | first two: 500; then 200 |
/// | `/always-500` | 500 `{"message": "still broken"}` |
/// | `/write-503` | first: 503 + `Retry-After: 0`; then 201 |
/// | `/unprocessable` | 422 `{"message": "refundAmount is not allowed"}` |
/// | `/slow` | 200 after 2 s |
/// | `/ghl-window` | first: 429 + `X-RateLimit-Remaining: 0`, `X-RateLimit-Interval-Milliseconds: 300`; then 200 |
/// | `/oauth/token` | form refresh: 200 `access-N`/`refresh-N` (after 50 ms); 400 `invalid_grant` for `rt-revoked-0001` |
/// | `/protected` | 200 with `Authorization: Bearer access-N`, else 401 |
/// | `/redirect-same` | 302 to `/echo` |
/// | `/redirect-cross` | 302 to `http://localhost:PORT/echo` (another host) |
/// | `/hooks/…` | 200 "ok" (a Slack-like secret URL) |
pub struct Upstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Upstream {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        *shared.port.lock().unwrap() = addr.port();
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    /// How many token refreshes the OAuth endpoint answered (successfully or not).
    pub fn refreshes(&self) -> usize {
        self.seen_at("/oauth/token").len()
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: Value) -> Response {
    let mut builder = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    if body.is_null() {
        return builder.body(Body::empty()).unwrap();
    }
    builder.header("content-type", "application/json").body(Body::from(body.to_string())).unwrap()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    shared.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or_default().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    let n = shared.hit(&path);
    let ok = json!({"ok": true});
    match path.as_str() {
        "/echo" => reply(200, &[], ok),
        "/text" => Response::builder().header("content-type", "text/plain").body(Body::from("plain words")).unwrap(),
        "/empty" => reply(204, &[], Value::Null),
        "/flaky-429" if n == 1 => reply(429, &[("Retry-After", "1")], json!({"message": "Too many requests"})),
        "/flaky-429" => reply(200, &[], ok),
        "/flaky-500" if n <= 2 => reply(500, &[], json!({"message": "boom"})),
        "/flaky-500" => reply(200, &[], ok),
        "/always-500" => reply(500, &[], json!({"message": "still broken"})),
        "/write-503" if n == 1 => reply(503, &[("Retry-After", "0")], json!({"message": "try later"})),
        "/write-503" => reply(201, &[], json!({"id": "created-1"})),
        "/unprocessable" => reply(422, &[], json!({"message": "refundAmount is not allowed"})),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            reply(200, &[], ok)
        }
        "/ghl-window" if n == 1 => reply(
            429,
            &[("X-RateLimit-Max", "100"), ("X-RateLimit-Remaining", "0"), ("X-RateLimit-Interval-Milliseconds", "300")],
            json!({"message": "Too many requests"}),
        ),
        "/ghl-window" => reply(200, &[("X-RateLimit-Remaining", "99")], ok),
        "/oauth/token" => {
            // Slow enough that concurrent callers overlap with the refresh.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let form = String::from_utf8_lossy(&body);
            if form.contains("refresh_token=rt-revoked-0001") {
                return reply(
                    400,
                    &[],
                    json!({"error": "invalid_grant", "error_description": "The refresh token is invalid"}),
                );
            }
            reply(
                200,
                &[],
                json!({
                    "access_token": format!("access-{n}"),
                    "token_type": "Bearer",
                    "expires_in": 86399,
                    "refresh_token": format!("refresh-{n}"),
                    "scope": "contacts.readonly",
                    "userType": "Location"
                }),
            )
        }
        "/protected" => {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
            if auth.starts_with("Bearer access-") {
                reply(200, &[], json!({"contact": {"id": "c1"}}))
            } else {
                reply(401, &[], json!({"statusCode": 401, "message": "Invalid JWT"}))
            }
        }
        "/redirect-same" => reply(302, &[("Location", "/echo")], Value::Null),
        "/redirect-cross" => {
            let location = format!("http://localhost:{}/echo", shared.port.lock().unwrap());
            reply(302, &[("Location", &location)], Value::Null)
        }
        p if p.starts_with("/hooks/") => Response::builder().body(Body::from("ok")).unwrap(),
        _ => reply(404, &[], json!({"message": "no such route"})),
    }
}

/// A server that reads each request and then closes the connection without a response for the first
/// `drop_first` connections; later ones get `200 {"ok": true}`.
pub struct Dropper {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Dropper {
    pub async fn start(drop_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let head = read_request(&mut socket).await;
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(head);
                    log.len()
                };
                if n > drop_first {
                    let body = r#"{"ok":true}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                }
                drop(socket);
            }
        });
        Self { addr, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The raw request heads (and bodies) received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Read one HTTP/1 request: the head, then `content-length` bytes of body.
async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
