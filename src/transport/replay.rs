//! `Replay`: answers requests from a cassette, with no network.
//!
//! Matching is tolerant on purpose, so that a re-recorded cassette does not break tests over noise: method and
//! path must match; query parameters and body fields only rank the candidates; each interaction answers once
//! before any is reused (a flow that calls the same endpoint twice gets the recorded answers in order). A
//! request nothing matches fails with the nearest recorded request, side by side.

use std::sync::Mutex;

use serde_json::Value;

use super::cassette::{Cassette, Interaction, RecordedRequest};
use super::{BoxFuture, RequestSpec, Response, Transport, TransportError};

pub struct Replay {
    interactions: Vec<Interaction>,
    used: Mutex<Vec<bool>>,
}

impl Replay {
    pub fn new(cassette: Cassette) -> Replay {
        let used = Mutex::new(vec![false; cassette.interactions.len()]);
        Replay { interactions: cassette.interactions, used }
    }

    /// The best recorded answer for `req`, marking it used.
    pub fn answer(&self, req: &RequestSpec) -> Result<Response, TransportError> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let best = self
            .interactions
            .iter()
            .enumerate()
            .filter(|(_, i)| same_route(&i.request, req))
            .max_by_key(|(n, i)| (!used[*n], score(&i.request, req), std::cmp::Reverse(*n)));
        match best {
            Some((n, interaction)) => {
                used[n] = true;
                Ok(interaction.response.to_response())
            }
            None => Err(TransportError::Unmatched { request: describe(req), nearest: self.nearest(req) }),
        }
    }

    fn nearest(&self, req: &RequestSpec) -> String {
        let wanted = describe(req);
        let best = self
            .interactions
            .iter()
            .map(|i| i.request.describe())
            .max_by(|a, b| strsim::jaro_winkler(a, &wanted).total_cmp(&strsim::jaro_winkler(b, &wanted)));
        match best {
            Some(recorded) => format!("\n  - recorded: {recorded}\n  + sent:     {wanted}"),
            None => " (the cassette is empty)".to_string(),
        }
    }
}

impl Transport for Replay {
    fn send<'a>(&'a self, req: &'a RequestSpec) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(async move { self.answer(req) })
    }
}

fn same_route(rec: &RecordedRequest, req: &RequestSpec) -> bool {
    rec.method.eq_ignore_ascii_case(&req.method)
        && rec.path == req.path
        && rec.connection.as_ref().is_none_or(|c| *c == req.connection)
}

/// Agreement on query parameters and top-level body fields: +1 per equal value, -1 per different one.
fn score(rec: &RecordedRequest, req: &RequestSpec) -> i64 {
    let mut s = 0;
    for (k, v) in &rec.query {
        match req.query.iter().find(|(qk, _)| qk == k) {
            Some((_, qv)) if qv == v => s += 1,
            _ => s -= 1,
        }
    }
    if let (Some(Value::Object(a)), Some(Value::Object(b))) = (&rec.body, &req.body) {
        for (k, v) in a {
            if b.get(k) == Some(v) {
                s += 1
            } else {
                s -= 1
            }
        }
    }
    s
}

fn describe(req: &RequestSpec) -> String {
    RecordedRequest::from_spec(req).describe()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::cassette::RecordedResponse;

    fn req(method: &str, path: &str, email: &str) -> RequestSpec {
        RequestSpec {
            connection: "ghl".into(),
            operation: "op".into(),
            method: method.into(),
            base_url: String::new(),
            path: path.into(),
            query: vec![("email".into(), email.into())],
            headers: vec![],
            body: None,
        }
    }

    fn interaction(path: &str, email: &str, body: Value) -> Interaction {
        Interaction {
            request: RecordedRequest {
                connection: None,
                method: "GET".into(),
                path: path.into(),
                query: [("email".to_string(), email.to_string())].into_iter().collect(),
                body: None,
            },
            response: RecordedResponse { status: 200, headers: Default::default(), body },
        }
    }

    #[test]
    fn prefers_matching_query_then_unused_and_explains_misses() {
        let r = Replay::new(Cassette {
            interactions: vec![
                interaction("/contacts/search/duplicate", "a@x.com", serde_json::json!({"n": 1})),
                interaction("/contacts/search/duplicate", "b@x.com", serde_json::json!({"n": 2})),
            ],
        });
        assert_eq!(r.answer(&req("GET", "/contacts/search/duplicate", "b@x.com")).unwrap().body["n"], 2);
        // Tolerant: a changed query value still gets an answer (the unused one first).
        assert_eq!(r.answer(&req("GET", "/contacts/search/duplicate", "c@x.com")).unwrap().body["n"], 1);
        let err = r.answer(&req("GET", "/contacts/search/duplicat", "a@x.com")).unwrap_err().to_string();
        assert!(err.contains("recorded: GET /contacts/search/duplicate?email=a@x.com"), "{err}");
    }
}
