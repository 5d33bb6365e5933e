//! Flow test cases: an input event, recorded upstream responses, and what the flow must do — run by
//! `weft test` with no network.
//!
//! A case lives beside its flow, in `tests/` (`flows/razorpay/tests/payment-captured.yaml` tests
//! `flows/razorpay/payment-captured.yaml`; `flow:` overrides). Several cases for one flow are named
//! `payment-captured.<what>.yaml`. Expectations are subsets: a case lists the fields that matter, so a
//! richer response or request does not break it.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::run::{RunReport, RunStatus};
use crate::transport::RequestSpec;

/// One test case of a flow.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What the case shows; the file name when omitted.
    #[serde(default)]
    pub name: Option<String>,
    /// The flow under test, relative to this file (default: `../NAME.yaml` for `tests/NAME[.what].yaml`).
    #[serde(default)]
    pub flow: Option<String>,
    /// The event's id (the idempotency scope); a fixed test id when omitted.
    #[serde(default)]
    pub event_id: Option<String>,
    /// The input event, inline.
    #[serde(default)]
    pub event: Option<Value>,
    /// The input event, from a JSON or YAML file relative to this file.
    #[serde(default)]
    pub event_file: Option<String>,
    /// Recorded responses, inline: a list of `{request: {method, path, query, body}, response: {status, body}}`.
    #[serde(default)]
    pub cassette: Option<Value>,
    /// Recorded responses, from a cassette file relative to this file.
    #[serde(default)]
    pub cassette_file: Option<String>,
    /// Deliver the same event this many times (default 1), as a webhook re-delivery would: later runs must
    /// not repeat writes.
    #[serde(default)]
    pub deliveries: Option<u32>,
    /// What must happen.
    pub expect: Expect,
}

/// Expectations; every one given must hold.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `succeeded` or `failed` (of the last delivery).
    #[serde(default)]
    pub status: Option<String>,
    /// The diagnostic code of the failure, e.g. `run::http::status`.
    #[serde(default)]
    pub error: Option<String>,
    /// Every request sent over all deliveries, in order; each listed field must match (subset).
    #[serde(default)]
    pub requests: Option<Vec<ExpectedRequest>>,
    /// Step id → expected status (`ok`, `skipped`, `reused`, `failed`) in the last delivery.
    #[serde(default)]
    pub steps: IndexMap<String, String>,
    /// Step id → expected output (subset) in the last delivery.
    #[serde(default)]
    pub outputs: IndexMap<String, Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub connection: Option<String>,
    #[serde(default)]
    pub query: Option<IndexMap<String, String>>,
    #[serde(default)]
    pub body: Option<Value>,
}

/// The flow a case file tests.
pub fn flow_path(case_path: &Path, case: &TestCase) -> PathBuf {
    let dir = case_path.parent().unwrap_or(Path::new("."));
    if let Some(flow) = &case.flow {
        return dir.join(flow);
    }
    let stem = case_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let base = stem.split('.').next().unwrap_or(&stem).to_string();
    let parent = if dir.file_name().is_some_and(|n| n == "tests") { dir.parent().unwrap_or(dir) } else { dir };
    parent.join(format!("{base}.yaml"))
}

/// Check the reports of all deliveries against the expectations; every mismatch is one line of a diff.
pub fn check(expect: &Expect, reports: &[RunReport]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(last) = reports.last() else { return vec!["the flow did not run".into()] };
    if let Some(status) = &expect.status {
        let actual = match last.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        };
        if status != actual {
            let why = last.error.as_ref().map(|d| format!(" ({}: {})", d.code.id, d.message)).unwrap_or_default();
            problems.push(format!("status: expected {status}, got {actual}{why}"));
        }
    }
    if let Some(code) = &expect.error {
        let actual = last.error.as_ref().map(|d| d.code.id).unwrap_or("none");
        if actual != code {
            problems.push(format!("error: expected {code}, got {actual}"));
        }
    }
    if let Some(expected) = &expect.requests {
        let sent: Vec<&RequestSpec> =
            reports.iter().flat_map(|r| r.steps.iter()).flat_map(|s| s.requests.iter()).collect();
        if sent.len() != expected.len() {
            problems.push(format!("requests: expected {}, sent {}", expected.len(), sent.len()));
            for r in &sent {
                problems.push(format!("  sent {} {}", r.method, r.path));
            }
        }
        for (i, (want, got)) in expected.iter().zip(&sent).enumerate() {
            problems.extend(request_mismatch(i, want, got));
        }
    }
    for (id, want) in &expect.steps {
        match last.steps.iter().find(|s| &s.id == id) {
            None => problems.push(format!("step `{id}`: expected {want}, but it did not run")),
            Some(s) => {
                let actual = s.status.as_str();
                if actual != want {
                    problems.push(format!("step `{id}`: expected {want}, got {actual}"));
                }
            }
        }
    }
    for (id, want) in &expect.outputs {
        let actual = last.steps.iter().find(|s| &s.id == id).and_then(|s| s.output.clone()).unwrap_or(Value::Null);
        for d in subset_diff(want, &actual, &format!("outputs.{id}")) {
            problems.push(d);
        }
    }
    problems
}

fn request_mismatch(i: usize, want: &ExpectedRequest, got: &RequestSpec) -> Vec<String> {
    let mut out = Vec::new();
    let at = format!("requests[{i}]");
    if !want.method.eq_ignore_ascii_case(&got.method) || want.path != got.path {
        out.push(format!("{at}: expected {} {}, sent {} {}", want.method, want.path, got.method, got.path));
    }
    if let Some(c) = &want.connection {
        if c != &got.connection {
            out.push(format!("{at}.connection: expected {c}, got {}", got.connection));
        }
    }
    if let Some(q) = &want.query {
        for (k, v) in q {
            let actual = got.query.iter().find(|(gk, _)| gk == k).map(|(_, gv)| gv.as_str());
            if actual != Some(v.as_str()) {
                out.push(format!(
                    "{at}.query.{k}: expected {v:?}, got {}",
                    actual.map_or("nothing".into(), |a| format!("{a:?}"))
                ));
            }
        }
    }
    if let Some(b) = &want.body {
        out.extend(subset_diff(b, got.body.as_ref().unwrap_or(&Value::Null), &format!("{at}.body")));
    }
    out
}

/// Where `actual` fails to contain `expected`: objects need every expected key, lists the same length.
pub fn subset_diff(expected: &Value, actual: &Value, at: &str) -> Vec<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .flat_map(|(k, ev)| match a.get(k) {
                Some(av) => subset_diff(ev, av, &format!("{at}.{k}")),
                None => vec![format!("{at}.{k}: expected {ev}, missing")],
            })
            .collect(),
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            e.iter().zip(a).enumerate().flat_map(|(i, (ev, av))| subset_diff(ev, av, &format!("{at}[{i}]"))).collect()
        }
        (e, a) if e == a => Vec::new(),
        (e, a) => vec![format!("{at}:\n    - expected {e}\n    + actual   {a}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_reports_each_difference() {
        let d = subset_diff(
            &serde_json::json!({"a": 1, "b": {"c": [1, 2]}}),
            &serde_json::json!({"a": 2, "b": {"c": [1, 3]}, "x": 0}),
            "o",
        );
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(subset_diff(&serde_json::json!({"a": 1}), &serde_json::json!({"a": 1, "b": 2}), "o").is_empty());
    }

    #[test]
    fn default_flow_is_beside_the_tests_folder() {
        let case: TestCase = serde_json::from_value(serde_json::json!({"expect": {}})).unwrap();
        assert_eq!(
            flow_path(Path::new("flows/razorpay/tests/payment-captured.duplicate.yaml"), &case),
            Path::new("flows/razorpay/payment-captured.yaml")
        );
    }
}
