//! `--webhook-url`: the events the real apps would send when the sandbox's state changes, signed as they sign
//! them, so `weft serve` (or any receiver) can be tried against the sandbox without the real app.
//!
//! Handlers raise [`Event`]s as they change state (GHL `ContactCreate`, `ContactUpdate`, `ContactTagUpdate`,
//! `ContactDelete`, `NoteCreate`, `TaskCreate`, `TaskComplete`; Razorpay `payment.captured`). The request that
//! raised them is answered first: each event is signed once into a [`Delivery`] (so a re-delivery is the same
//! bytes, as an at-least-once sender's would be) and queued for one background task that posts deliveries in
//! order, retrying a failure (a connection error, 408, 429 or a 5xx; another 4xx is a final refusal) with doubling
//! backoff up to [`WebhookConfig::attempts`] times.
//!
//! Signing follows each app's documentation: GHL adds `timestamp` and `webhookId` to the body and signs the
//! raw body RSA-SHA256 (PKCS#1 v1.5) with its private key, base64 in `x-wh-signature`; Razorpay signs the raw
//! body HMAC-SHA256 with the webhook secret, hex in `X-Razorpay-Signature`, with `x-razorpay-event-id`. An
//! event whose app has no URL or no signing key configured is not sent.
//!
//! `GET /_sandbox/webhooks` lists every delivery with its body and attempts (time, status or error); never
//! the signature, key or secret, and a URL's user-info is hidden.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine as _;
use indexmap::IndexMap;
use ring::signature::RsaKeyPair;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::lock;
use super::state::{now_iso, now_unix};

/// Where events go and how they are signed. The default sends nothing.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `(connector, url)`; the connector `*` takes every app's events that have no URL of their own.
    pub urls: Vec<(String, String)>,
    /// GHL's signing key (`--webhook-key`: the private half of the key `weft serve` verifies with).
    pub ghl_key: Option<Arc<RsaKeyPair>>,
    /// Razorpay's webhook secret (`--webhook-secret`).
    pub razorpay_secret: Option<String>,
    /// Tries per delivery, the first included.
    pub attempts: u32,
    /// The wait after the first failed try; it doubles after each further one.
    pub backoff: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            urls: Vec::new(),
            ghl_key: None,
            razorpay_secret: None,
            attempts: 4,
            backoff: Duration::from_millis(250),
        }
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("urls", &self.urls.iter().map(|(c, u)| (c, redact_url(u))).collect::<Vec<_>>())
            .field("ghl_key", &self.ghl_key.as_ref().map(|_| "<redacted>"))
            .field("razorpay_secret", &self.razorpay_secret.as_ref().map(|_| "<redacted>"))
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl WebhookConfig {
    /// The URL this app's events go to, if any.
    pub fn url_for(&self, connector: &str) -> Option<&str> {
        let own = self.urls.iter().find(|(c, _)| c == connector);
        own.or_else(|| self.urls.iter().find(|(c, _)| c == "*")).map(|(_, u)| u.as_str())
    }

    /// Whether this app's events can be signed.
    pub fn can_sign(&self, connector: &str) -> bool {
        match connector {
            "ghl" => self.ghl_key.is_some(),
            "razorpay" => self.razorpay_secret.is_some(),
            _ => false,
        }
    }
}

/// Parse an RSA private key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl genpkey` writes) or
/// PKCS#1 (`BEGIN RSA PRIVATE KEY`).
pub fn rsa_key_from_pem(pem: &str) -> Result<RsaKeyPair, String> {
    let label = pem
        .lines()
        .find_map(|l| l.trim().strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")))
        .ok_or("not a PEM file (no `-----BEGIN ...-----` line)")?
        .to_string();
    let body: String = pem
        .lines()
        .skip_while(|l| !l.trim().starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|l| !l.trim().starts_with("-----END "))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| format!("bad base64: {e}"))?;
    match label.as_str() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("not a usable RSA PKCS#8 key: {e}")),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der).map_err(|e| format!("not a usable RSA PKCS#1 key: {e}")),
        other => Err(format!("a `{other}`; expected `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY`")),
    }
}

/// An event a handler raised: the app that sends it, its type, and its body before signing fields are added.
#[derive(Debug, Clone)]
pub struct Event {
    pub connector: &'static str,
    pub kind: String,
    pub body: Value,
}

/// One signed event, ready to post (again).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub connector: &'static str,
    pub kind: String,
    /// GHL's `webhookId` or Razorpay's `x-razorpay-event-id`.
    pub event_id: String,
    pub url: String,
    pub body: Bytes,
    pub headers: Vec<(&'static str, String)>,
}

/// A delivery with what happened to it.
struct Record {
    delivery: Delivery,
    attempts: Vec<Value>,
}

/// The queue and the delivery history.
pub struct Outbox {
    config: WebhookConfig,
    client: reqwest::Client,
    queue: OnceLock<mpsc::UnboundedSender<usize>>,
    records: Mutex<IndexMap<usize, Record>>,
    next_id: Mutex<usize>,
}

impl Outbox {
    pub fn new(config: WebhookConfig) -> Arc<Outbox> {
        // reqwest is built without a crypto provider; ring is the process default (as in transport::live).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Arc::new(Outbox {
            config,
            client,
            queue: OnceLock::new(),
            records: Mutex::new(IndexMap::new()),
            next_id: Mutex::new(1),
        })
    }

    /// Sign and queue the events that have somewhere to go. Called from a request, on the runtime.
    pub fn emit(self: &Arc<Self>, events: Vec<Event>) {
        for event in events {
            let Some(url) = self.config.url_for(event.connector) else { continue };
            let Some(delivery) = self.sign(event, url) else { continue };
            let id = {
                let mut next = lock(&self.next_id);
                *next += 1;
                *next - 1
            };
            lock(&self.records).insert(id, Record { delivery, attempts: Vec::new() });
            self.enqueue(id);
        }
    }

    /// Queue delivery `id` once more, the same bytes; `false` when there is no such delivery.
    pub fn redeliver(self: &Arc<Self>, id: usize) -> bool {
        if !lock(&self.records).contains_key(&id) {
            return false;
        }
        self.enqueue(id);
        true
    }

    /// Every delivery, oldest first, as `GET /_sandbox/webhooks` shows it.
    pub fn list(&self) -> Value {
        let records = lock(&self.records);
        let list: Vec<Value> = records
            .iter()
            .map(|(id, r)| {
                let d = &r.delivery;
                let delivered =
                    r.attempts.iter().any(|a| a["status"].as_u64().is_some_and(|s| (200..300).contains(&s)));
                json!({
                    "id": id,
                    "connector": d.connector,
                    "event": d.kind,
                    "eventId": d.event_id,
                    "url": redact_url(&d.url),
                    "signedIn": d.headers.first().map(|(name, _)| *name),
                    "body": serde_json::from_slice::<Value>(&d.body).unwrap_or(Value::Null),
                    "delivered": delivered,
                    "attempts": r.attempts,
                })
            })
            .collect();
        Value::Array(list)
    }

    /// Forget every delivery (`POST /_sandbox/reset`); one being sent finishes unrecorded.
    pub fn clear(&self) {
        lock(&self.records).clear();
    }

    fn enqueue(self: &Arc<Self>, id: usize) {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(deliver_all(Arc::downgrade(self), rx));
            tx
        });
        let _ = queue.send(id);
    }

    fn sign(&self, event: Event, url: &str) -> Option<Delivery> {
        let (body, event_id, headers) = match event.connector {
            "ghl" => {
                let key = self.config.ghl_key.as_ref()?;
                let event_id = uuid_like();
                let mut body = event.body;
                if let Some(fields) = body.as_object_mut() {
                    fields.insert("timestamp".into(), json!(now_iso()));
                    fields.insert("webhookId".into(), json!(event_id));
                }
                let bytes = serde_json::to_vec(&body).ok()?;
                let mut signature = vec![0; key.public().modulus_len()];
                let rng = ring::rand::SystemRandom::new();
                key.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, &bytes, &mut signature).ok()?;
                let b64 = base64::engine::general_purpose::STANDARD.encode(signature);
                (bytes, event_id, vec![("x-wh-signature", b64)])
            }
            "razorpay" => {
                let secret = self.config.razorpay_secret.as_ref()?;
                let event_id = format!("evt_{}", &uuid_like().replace('-', "")[..14]);
                let bytes = serde_json::to_vec(&event.body).ok()?;
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
                let signature = hex::encode(ring::hmac::sign(&key, &bytes).as_ref());
                (bytes, event_id.clone(), vec![("X-Razorpay-Signature", signature), ("x-razorpay-event-id", event_id)])
            }
            _ => return None,
        };
        Some(Delivery {
            connector: event.connector,
            kind: event.kind,
            event_id,
            url: url.to_string(),
            body: Bytes::from(body),
            headers,
        })
    }

    fn record(&self, id: usize, attempt: Value) {
        if let Some(r) = lock(&self.records).get_mut(&id) {
            r.attempts.push(attempt);
        }
    }
}

/// The one delivery task: in queue order, each delivery until a 2xx or its last try. It ends when the sandbox
/// (the last strong reference to the outbox) is gone.
async fn deliver_all(outbox: std::sync::Weak<Outbox>, mut queue: mpsc::UnboundedReceiver<usize>) {
    while let Some(id) = queue.recv().await {
        let Some(outbox) = outbox.upgrade() else { return };
        let Some(delivery) = lock(&outbox.records).get(&id).map(|r| r.delivery.clone()) else { continue };
        let mut wait = outbox.config.backoff;
        for attempt in 1..=outbox.config.attempts.max(1) {
            let mut request = outbox.client.post(&delivery.url).header("content-type", "application/json");
            for (name, value) in &delivery.headers {
                request = request.header(*name, value);
            }
            let at = now_iso();
            let result = request.body(delivery.body.clone()).send().await;
            let ok = match result {
                Ok(response) => {
                    let status = response.status();
                    outbox.record(id, json!({"at": at, "attempt": attempt, "status": status.as_u16()}));
                    // A refusal (4xx, e.g. serve's 409 for a replayed GHL `webhookId`) is final: the same bytes
                    // would be refused again. Timeouts, throttling and server errors are retried.
                    let refused = status.is_client_error()
                        && status != reqwest::StatusCode::REQUEST_TIMEOUT
                        && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
                    status.is_success() || refused
                }
                Err(e) => {
                    // reqwest's error text names the URL; the log keeps the kind of failure only.
                    let why = if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "could not connect"
                    } else {
                        "the connection failed"
                    };
                    outbox.record(id, json!({"at": at, "attempt": attempt, "error": why}));
                    false
                }
            };
            if ok {
                break;
            }
            if attempt < outbox.config.attempts {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

/// A random id in UUID v4's textual form (GHL's `webhookId`s look like UUIDs).
fn uuid_like() -> String {
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// `http://user:pass@host/...` → `http://***@host/...`.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// A GHL event body: `type` (the event name) first, `locationId`, then the record's fields as GHL sends them
/// (without the sandbox's lower-case search copies).
pub fn ghl_event(kind: &str, location: &Value, record: &Value) -> Value {
    let mut body = Map::new();
    body.insert("type".into(), json!(kind));
    body.insert("locationId".into(), location.clone());
    for (k, v) in record.as_object().into_iter().flatten() {
        // The event's `type` is the event name; a contact's own `type` (lead, customer) is not sent.
        if !k.ends_with("LowerCase") && k != "locationId" && k != "type" {
            body.insert(k.clone(), v.clone());
        }
    }
    Value::Object(body)
}

/// A Razorpay event body for one payment (`payment.captured`, ...), in Razorpay's envelope.
pub fn razorpay_payment_event(kind: &str, payment: &Value) -> Value {
    json!({
        "entity": "event",
        "account_id": "acc_SandboxAccount1",
        "event": kind,
        "contains": ["payment"],
        "payload": {"payment": {"entity": payment}},
        "created_at": now_unix(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_apps_own_then_the_catch_all_and_hide_user_info() {
        let config = WebhookConfig {
            urls: vec![("*".into(), "http://a/hooks".into()), ("razorpay".into(), "http://u:p@b/rzp".into())],
            ..WebhookConfig::default()
        };
        assert_eq!(config.url_for("ghl"), Some("http://a/hooks"));
        assert_eq!(config.url_for("razorpay"), Some("http://u:p@b/rzp"));
        assert_eq!(redact_url("http://u:p@b/rzp"), "http://***@b/rzp");
        assert!(!format!("{config:?}").contains("u:p"));
        assert!(!config.can_sign("ghl"), "no key given");
    }

    #[test]
    fn a_pem_that_is_no_private_key_is_refused() {
        assert!(rsa_key_from_pem("hello").unwrap_err().contains("not a PEM"));
        let public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(rsa_key_from_pem(public).unwrap_err().contains("PUBLIC KEY"));
    }
}
