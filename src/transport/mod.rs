//! Transports: what sends a rendered, template-free [`RequestSpec`] and returns a [`Response`].
//!
//! The engine never talks HTTP itself. `Live` sends for real (reqwest + rustls), `Replay` answers from a
//! cassette with no network, `Record` is Live that also writes a scrubbed cassette, and `DryRun` answers reads
//! from a cassette and prints writes instead of sending them. All of them see only `RequestSpec`s.

pub mod cassette;
pub mod dry_run;
pub mod live;
pub mod record;
pub mod redact;
pub mod replay;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A boxed future, so that transports can be used as `dyn Transport`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One HTTP request, fully rendered: no templates, no paths, no secrets resolved by the flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestSpec {
    /// The connection it goes through (decides auth, rate limit, base URL).
    pub connection: String,
    /// The operation, as messages name it (`ghl.contacts.get-contact`).
    pub operation: String,
    pub method: String,
    /// The base URL of the connection (no trailing slash).
    pub base_url: String,
    /// The path with parameters substituted and percent-encoded.
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<(String, String)>,
    /// Headers from the flow and the connector's fixed headers; auth is added by the runtime just before
    /// sending and is never part of what is printed or recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl RequestSpec {
    /// The full URL with the query string.
    pub fn url(&self) -> String {
        let mut url = format!("{}{}", self.base_url.trim_end_matches('/'), self.path);
        if !self.query.is_empty() {
            url.push('?');
            let pairs: Vec<String> = self.query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
            url.push_str(&pairs.join("&"));
        }
        url
    }

    /// Whether the request changes something upstream (idempotency and dry-run care).
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An HTTP response with its body parsed as JSON when it is JSON (otherwise a JSON string of the text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: Value,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request got no HTTP response.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TransportError {
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("connection reset: {0}")]
    Reset(String),
    /// Replay: no recorded interaction matches; `nearest` explains the closest one.
    #[error("no recorded response matches {request}{nearest}")]
    Unmatched { request: String, nearest: String },
    #[error("{0}")]
    Other(String),
}

impl TransportError {
    /// Worth retrying: the request may not have reached the server, or the server dropped it.
    pub fn is_transient(&self) -> bool {
        matches!(self, TransportError::Timeout(_) | TransportError::Connect(_) | TransportError::Reset(_))
    }
}

/// Sends requests. Implementations must be cheap to share across concurrent steps.
pub trait Transport: Send + Sync {
    fn send<'a>(&'a self, req: &'a RequestSpec) -> BoxFuture<'a, Result<Response, TransportError>>;
}

/// Percent-encoding for a query component or a path segment (RFC 3986 unreserved characters kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encodes_query_and_keeps_order() {
        let r = RequestSpec {
            connection: "ghl".into(),
            operation: "op".into(),
            method: "GET".into(),
            base_url: "https://h.example/".into(),
            path: "/contacts/a%20b".into(),
            query: vec![("email".into(), "a+b@x.com".into()), ("q".into(), "é".into())],
            headers: vec![],
            body: None,
        };
        assert_eq!(r.url(), "https://h.example/contacts/a%20b?email=a%2Bb%40x.com&q=%C3%A9");
        assert!(!r.is_write());
    }
}
