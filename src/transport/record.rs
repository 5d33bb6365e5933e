//! `Record`: a live transport that also keeps every exchange, to be saved as a scrubbed cassette.
//!
//! Requests are kept without headers (auth is added just before sending; nothing else identifies a call),
//! response headers only when they matter to replays (content type, rate limits), and bodies are scrubbed of
//! secret fields and of every secret value the run resolved before the file is written.

use std::path::Path;
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;

use super::cassette::{Cassette, Interaction, RecordedRequest, RecordedResponse};
use super::redact::{keep_header, scrub};
use super::{BoxFuture, RequestSpec, Response, Transport, TransportError};

pub struct Record {
    inner: Arc<dyn Transport>,
    kept: Mutex<Vec<Interaction>>,
}

impl Record {
    pub fn new(inner: Arc<dyn Transport>) -> Record {
        Record { inner, kept: Mutex::new(Vec::new()) }
    }

    /// The recorded cassette, scrubbed of secret fields and of the given secret values.
    pub fn cassette(&self, secrets: &[String]) -> Cassette {
        let mut interactions = self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for i in &mut interactions {
            if let Some(body) = &mut i.request.body {
                scrub(body, secrets);
            }
            for v in i.request.query.values_mut() {
                *v = super::redact::scrub_text(v, secrets);
            }
            scrub(&mut i.response.body, secrets);
            for v in i.response.headers.values_mut() {
                *v = super::redact::scrub_text(v, secrets);
            }
        }
        Cassette { interactions }
    }

    pub fn save(&self, path: &Path, secrets: &[String]) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.cassette(secrets).to_yaml())
    }
}

impl Transport for Record {
    fn send<'a>(&'a self, req: &'a RequestSpec) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(async move {
            let result = self.inner.send(req).await;
            if let Ok(resp) = &result {
                let headers: IndexMap<String, String> = resp
                    .headers
                    .iter()
                    .filter(|(k, _)| keep_header(k))
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect();
                let interaction = Interaction {
                    request: RecordedRequest::from_spec(req),
                    response: RecordedResponse { status: resp.status, headers, body: resp.body.clone() },
                };
                self.kept.lock().unwrap_or_else(|p| p.into_inner()).push(interaction);
            }
            result
        })
    }
}
