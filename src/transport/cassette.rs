//! Cassettes: recorded request/response pairs, as human-readable YAML in a stable order.
//!
//! A cassette never holds a secret: requests are stored without auth headers (the runtime adds those after
//! the `RequestSpec` is built), and [`super::redact`] scrubs every known secret value and secret-looking field
//! before anything is written.

use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{RequestSpec, Response};
use crate::diag::{codes, Diagnostic};
use crate::dsl::load;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cassette {
    #[serde(default)]
    pub interactions: Vec<Interaction>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    pub request: RecordedRequest,
    pub response: RecordedResponse,
}

/// What identifies a request: no base URL (so a cassette replays against any host) and no headers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub query: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub headers: IndexMap<String, String>,
    #[serde(default)]
    pub body: Value,
}

fn ok() -> u16 {
    200
}

impl RecordedRequest {
    pub fn from_spec(req: &RequestSpec) -> Self {
        RecordedRequest {
            connection: Some(req.connection.clone()),
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.iter().cloned().collect(),
            body: req.body.clone(),
        }
    }

    pub fn describe(&self) -> String {
        let query = if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
        };
        format!("{} {}{query}", self.method, self.path)
    }
}

impl RecordedResponse {
    pub fn to_response(&self) -> Response {
        Response {
            status: self.status,
            headers: self.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            body: self.body.clone(),
        }
    }
}

impl Cassette {
    pub fn load(path: &Path) -> Result<Cassette, Vec<Diagnostic>> {
        let file = load::read(path).map_err(|d| vec![d])?;
        let root = load::parse(&file)?;
        Cassette::from_value(root.to_json()).map_err(|e| {
            vec![Diagnostic::error(codes::SCHEMA_INVALID, format!("not a cassette: {e}"))
                .label(root.span, "here")
                .help(
                    "a cassette is `interactions: [{request: {method, path, query, body}, response: {status, body}}]`",
                )
                .in_file(&file)]
        })
    }

    pub fn from_value(value: Value) -> Result<Cassette, serde_json::Error> {
        // A bare list of interactions is accepted too (the inline form in test cases).
        match value {
            Value::Array(_) => Ok(Cassette { interactions: serde_json::from_value(value)? }),
            other => serde_json::from_value(other),
        }
    }

    /// The YAML text of the cassette (block style, keys in a stable order).
    pub fn to_yaml(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut out = String::from(
            "# weft cassette: recorded responses, secrets scrubbed. Replayed by `weft test` and `weft dry-run`.\n",
        );
        crate::dsl::emit::yaml(&value, &mut out);
        out
    }
}
