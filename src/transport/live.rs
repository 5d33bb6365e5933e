//! `Live`: requests sent for real, with reqwest over rustls (ring provider, no C toolchain needed).
//!
//! The transport sends exactly what it is given and maps failures to [`TransportError`] so that the retry
//! layer can tell "never reached the server" (`Connect`) from "may have been processed" (`Timeout`, `Reset`).
//! It does not retry: reqwest's own retries are switched off, the engine decides.

use std::time::Duration;

use serde_json::Value;

use super::{BoxFuture, RequestSpec, Response, Transport, TransportError};

/// Timeouts of a [`Live`] transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveOptions {
    /// Establishing the TCP + TLS connection.
    pub connect_timeout: Duration,
    /// The whole request, from sending to the last byte of the response body.
    pub timeout: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(10), timeout: Duration::from_secs(30) }
    }
}

/// Sends requests over the network.
#[derive(Clone, Debug)]
pub struct Live {
    client: reqwest::Client,
    options: LiveOptions,
}

impl Live {
    pub fn new() -> Result<Self, TransportError> {
        Self::with_options(LiveOptions::default())
    }

    pub fn with_options(options: LiveOptions) -> Result<Self, TransportError> {
        // reqwest is built without a crypto provider (no aws-lc C build); ring is the process default. A second
        // install (another Live, or the embedding program) fails harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .tls_backend_rustls()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")))
            .redirect(same_origin_redirects())
            .retry(reqwest::retry::never())
            .build()
            .map_err(|e| TransportError::Other(format!("cannot build the HTTP client: {}", chain(&e))))?;
        Ok(Self { client, options })
    }

    async fn send_inner(&self, req: &RequestSpec) -> Result<Response, TransportError> {
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| TransportError::Other(format!("`{}` is not an HTTP method", req.method)))?;
        let url = reqwest::Url::parse(&req.url()).map_err(|e| TransportError::Other(format!("bad URL: {e}")))?;
        let mut builder = self.client.request(method, url);
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &req.body {
            let content_type = req.header("content-type");
            match body {
                // A string body with a non-JSON Content-Type is sent as it is (the OAuth token form).
                Value::String(text) if content_type.is_some_and(|t| !t.to_ascii_lowercase().contains("json")) => {
                    builder = builder.body(text.clone());
                }
                _ => {
                    if content_type.is_none() {
                        builder = builder.header("Content-Type", "application/json");
                    }
                    let bytes = serde_json::to_vec(body).map_err(|e| TransportError::Other(e.to_string()))?;
                    builder = builder.body(bytes);
                }
            }
        }
        let resp = builder.send().await.map_err(|e| self.classify(&e))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let bytes = resp.bytes().await.map_err(|e| self.classify(&e))?;
        Ok(Response { status, headers, body: parse_body(&bytes) })
    }

    fn classify(&self, e: &reqwest::Error) -> TransportError {
        let detail = chain(e);
        // Connect first: a connect timeout also reports `is_timeout`, but nothing was sent, so it is safe to retry.
        if e.is_connect() {
            TransportError::Connect(detail)
        } else if e.is_timeout() {
            TransportError::Timeout(self.options.timeout.as_millis() as u64)
        } else if is_reset(e) || e.is_body() || e.is_decode() {
            TransportError::Reset(detail)
        } else {
            TransportError::Other(detail)
        }
    }
}

impl Transport for Live {
    fn send<'a>(&'a self, req: &'a RequestSpec) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(self.send_inner(req))
    }
}

/// reqwest drops `Authorization` and cookies on a cross-host redirect, but not the other headers a connection
/// may authenticate with (`X-Api-Key`, the relay's shared secret). So weft follows redirects within the same
/// scheme, host and port only; a redirect elsewhere comes back as the 3xx response, and the error names it.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else { return attempt.follow() };
        let next = attempt.url();
        let same = next.scheme() == first.scheme()
            && next.host_str() == first.host_str()
            && next.port_or_known_default() == first.port_or_known_default();
        if !same {
            attempt.stop()
        } else if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    })
}

/// The connection was closed or reset before the whole response arrived: the server may have processed it.
fn is_reset(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof) {
                return true;
            }
        }
        // hyper's IncompleteMessage is not an io::Error; its text is stable across hyper 1.x.
        let text = err.to_string();
        if text.contains("connection closed before message completed") || text.contains("connection reset") {
            return true;
        }
        source = err.source();
    }
    false
}

/// An error and its causes on one line (reqwest's top-level text alone is "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = err.source();
    }
    out
}

/// JSON when the body parses as JSON, else the text as a JSON string; nothing is `null`.
pub fn parse_body(bytes: &[u8]) -> Value {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(parse_body(b""), Value::Null);
        assert_eq!(parse_body(b"{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(parse_body(b"Bad Gateway"), Value::String("Bad Gateway".into()));
    }
}
