//! Flow test cases: an input event, recorded upstream responses, and what the flow must do — run by
//! `weft test` with no network.
//!
//! A case lives beside its flow, in `tests/` (`flows/razorpay/tests/payment-captured.yaml` tests
//! `flows/razorpay/payment-captured.yaml`; `flow:` overrides). Several cases for one flow are named
//! `payment-captured.<what>.yaml`. Expectations are subsets: a case lists the fields that matter, so a
//! richer response or request does not break it. Because a subset cannot say "this key was not sent", a
//! request expectation also takes `absent: [body.phone, query.email]`: fields the request must not have at
//! all (a `null` is a value, and fails it).

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diag::{codes, Diagnostic};
use crate::dsl::value::{static_prefix, Segment};
use crate::dsl::yaml::Node;
use crate::engine::plan::{Action, CallPlan, Plan};
use crate::engine::run::{RunReport, RunStatus};
use crate::mapping::Mapping;
use crate::source::SourceFile;
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

/// One request the flow must have sent.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRequest {
    /// The HTTP method: `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// The path as sent, parameters filled in and without the query: `/contacts/abc123/tags`.
    pub path: String,
    /// The connection it went to (from weft.yaml), when a flow calls more than one.
    #[serde(default)]
    pub connection: Option<String>,
    /// Query parameters that must be sent with these values.
    #[serde(default)]
    pub query: Option<IndexMap<String, String>>,
    /// The JSON body, as a subset: every field listed must be sent with this value, others may be too.
    #[serde(default)]
    pub body: Option<Value>,
    /// Fields the request must not have at all — not even as `null`: `body.phone`, `body.contact.phone`,
    /// `body.items[0].id`, `query.email`. Each must be a field the step maps (so a typo cannot pass).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<String>,
}

/// A request field named by an `absent:` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldPath {
    /// `body.contact.phone`, `body.items[0].id`: names and list indexes into the JSON body.
    Body(Vec<Segment>),
    /// `query.email`: every value of that query parameter.
    Query(String),
}

impl FieldPath {
    /// Read an `absent:` entry: `body.` or `query.` and a field, in the notation the reports print.
    pub fn parse(text: &str) -> Result<FieldPath, (String, String)> {
        let example = "write `body.FIELD` (nested `body.contact.phone`, in a list `body.items[0].id`) or `query.NAME`";
        let split = text.find(['.', '[']).unwrap_or(text.len());
        let (head, rest) = text.split_at(split);
        if head != "body" && head != "query" {
            let meant = crate::diag::did_you_mean(head, ["body", "query"]);
            let help = match meant.first() {
                Some(part) => format!("did you mean `{part}{rest}`?"),
                None if rest.is_empty() => {
                    format!("say which part of the request it is in: `body.{text}` or `query.{text}`")
                }
                None => example.to_string(),
            };
            return Err((format!("`{text}` does not start with `body` or `query`"), help));
        }
        if rest.is_empty() {
            return Err((
                format!("`{text}` names the whole {head}, not a field in it"),
                format!("name a field: `{head}.phone`; {example}"),
            ));
        }
        let path = format!("${rest}");
        let segments = static_prefix(&path);
        let whole = segments.last().is_some_and(|(_, end)| *end == path.len());
        if !whole || serde_json_path::JsonPath::parse(&path).is_err() {
            return Err((format!("`{text}` is not a field path"), example.to_string()));
        }
        let segments: Vec<Segment> = segments.into_iter().map(|(s, _)| s).collect();
        match (head, segments.as_slice()) {
            ("body", _) => Ok(FieldPath::Body(segments)),
            (_, [Segment::Name(name)]) => Ok(FieldPath::Query(name.clone())),
            _ => Err((
                format!("`{text}` goes inside a query parameter"),
                "a query parameter is text: name it alone, e.g. `query.email`".into(),
            )),
        }
    }

    /// The value the request has at this path, or `None` when the field is not there.
    fn find(&self, req: &RequestSpec) -> Option<Value> {
        match self {
            FieldPath::Query(name) => {
                let values: Vec<Value> =
                    req.query.iter().filter(|(k, _)| k == name).map(|(_, v)| Value::String(v.clone())).collect();
                match values.len() {
                    0 => None,
                    1 => values.into_iter().next(),
                    _ => Some(Value::Array(values)),
                }
            }
            FieldPath::Body(segments) => walk(req.body.as_ref()?, segments).cloned(),
        }
    }
}

/// The value `segments` (names and list indexes) lead to inside `value`, if there is one.
fn walk<'v>(value: &'v Value, segments: &[Segment]) -> Option<&'v Value> {
    segments.iter().try_fold(value, |at, s| match s {
        Segment::Name(n) => at.as_object()?.get(n),
        Segment::Index(i) => at.as_array()?.get(usize::try_from(*i).ok()?),
    })
}

/// Problems in a case file that serde cannot see, each at its node: `absent:` entries that name no field,
/// or a field the same request also expects in its `body:`.
pub fn shape_problems(case: &TestCase, root: &Node, file: &SourceFile) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, want) in case.expect.requests.iter().flatten().enumerate() {
        for (j, entry) in want.absent.iter().enumerate() {
            let span = root.at_pointer(&format!("/expect/requests/{i}/absent/{j}")).0.span;
            let problem = match FieldPath::parse(entry) {
                Err(problem) => Some(problem),
                Ok(FieldPath::Body(segments)) => {
                    let expected = want.body.as_ref().and_then(|b| walk(b, &segments));
                    expected.map(|v| {
                        (
                            format!("`{entry}` is expected both absent and in `body:` (as {v})"),
                            "keep one: remove it from `body:` to assert it is not sent, or from `absent:`".to_string(),
                        )
                    })
                }
                Ok(FieldPath::Query(name)) => want.query.as_ref().filter(|q| q.contains_key(&name)).map(|_| {
                    (
                        format!("`{entry}` is expected both absent and in `query:`"),
                        "keep one: remove it from `query:` to assert it is not sent, or from `absent:`".to_string(),
                    )
                }),
            };
            if let Some((message, help)) = problem {
                out.push(
                    Diagnostic::error(codes::TEST_EXPECT_ABSENT, message).label(span, "here").help(help).in_file(file),
                );
            }
        }
    }
    out
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

/// Check the reports of all deliveries of `plan` against the expectations; every mismatch is one line of a
/// diff.
pub fn check(expect: &Expect, reports: &[RunReport], plan: &Plan) -> Vec<String> {
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
        let sent: Vec<(&str, &RequestSpec)> = reports
            .iter()
            .flat_map(|r| r.steps.iter())
            .flat_map(|s| s.requests.iter().map(|r| (s.id.as_str(), r)))
            .collect();
        if sent.len() != expected.len() {
            problems.push(format!("requests: expected {}, sent {}", expected.len(), sent.len()));
            for (_, r) in &sent {
                problems.push(format!("  sent {} {}", r.method, r.path));
            }
        }
        for (i, (want, (step, got))) in expected.iter().zip(&sent).enumerate() {
            problems.extend(request_mismatch(i, want, got));
            let call = plan.steps.iter().find(|s| s.id == *step).and_then(|s| match &s.action {
                Action::Call(call) => Some(call.as_ref()),
                Action::Set(_) => None,
            });
            if let Some(call) = call {
                problems.extend(absent_unmapped(i, want, step, call));
            }
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
    for entry in &want.absent {
        // Malformed entries were reported when the case was read.
        let Ok(field) = FieldPath::parse(entry) else { continue };
        if let Some(sent) = field.find(got) {
            out.push(format!("{at}.{}: expected absent, sent {sent}", entry));
        }
    }
    out
}

/// An `absent:` entry must name a field the step maps: one it never writes is absent whatever the flow
/// does, and would hide a typo (`body.phnoe`) behind a passing test.
fn absent_unmapped(i: usize, want: &ExpectedRequest, step: &str, call: &CallPlan) -> Vec<String> {
    let mut out = Vec::new();
    for entry in &want.absent {
        let Ok(field) = FieldPath::parse(entry) else { continue };
        let (part, known, walked, missing) = match &field {
            FieldPath::Query(name) => {
                let keys: Vec<&str> = call.query.iter().map(|(k, _)| k.as_str()).collect();
                if keys.contains(&name.as_str()) {
                    continue;
                }
                ("query", keys, "query".to_string(), name.clone())
            }
            FieldPath::Body(segments) => match unmapped_at(call.body.as_ref(), segments) {
                None => continue,
                Some((keys, depth)) => {
                    let walked = std::iter::once("body".to_string())
                        .chain(segments[..depth].iter().map(|s| match s {
                            Segment::Name(n) => format!(".{n}"),
                            Segment::Index(i) => format!("[{i}]"),
                        }))
                        .collect::<String>();
                    let missing = match &segments[depth] {
                        Segment::Name(n) => n.clone(),
                        Segment::Index(i) => i.to_string(),
                    };
                    ("body", keys, walked, missing)
                }
            },
        };
        let hint = match crate::diag::did_you_mean(&missing, known.iter().copied()).first() {
            Some(close) => format!("did you mean `{walked}.{close}`? "),
            None => String::new(),
        };
        let keys = if known.is_empty() {
            format!("step `{step}` maps no {part} fields")
        } else {
            format!("`{walked}` has {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
        };
        out.push(format!(
            "requests[{i}].absent: step `{step}` never sends `{entry}`, so asserting it absent proves nothing; {hint}{keys}"
        ));
    }
    out
}

/// Where `segments` leave the keys a body mapping writes: `None` when the field is mapped (or the mapping is
/// computed, a path or template, and cannot be known), else the keys at the level that lacks it and its depth.
fn unmapped_at<'m>(mapping: Option<&'m Mapping>, segments: &[Segment]) -> Option<(Vec<&'m str>, usize)> {
    let mut at = mapping?;
    for (depth, s) in segments.iter().enumerate() {
        match (at, s) {
            (Mapping::Object(fields), Segment::Name(n)) => match fields.iter().find(|(k, _)| k == n) {
                Some((_, m)) => at = m,
                None => return Some((fields.iter().map(|(k, _)| k.as_str()).collect(), depth)),
            },
            (Mapping::Object(fields), Segment::Index(_)) => {
                return Some((fields.iter().map(|(k, _)| k.as_str()).collect(), depth))
            }
            // Items of a mapped list can be left out, so an index does not name one mapping: stop here.
            _ => return None,
        }
    }
    None
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
    fn absent_entries_parse_in_the_reports_notation() {
        use Segment::*;
        assert_eq!(FieldPath::parse("body.phone"), Ok(FieldPath::Body(vec![Name("phone".into())])));
        assert_eq!(
            FieldPath::parse("body.items[0]['a.b']"),
            Ok(FieldPath::Body(vec![Name("items".into()), Index(0), Name("a.b".into())]))
        );
        assert_eq!(FieldPath::parse("query.email"), Ok(FieldPath::Query("email".into())));
        for bad in ["phone", "body", "bdy.phone", "body.", "body..x", "body[*]", "query.a.b", "query[0]", ""] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(FieldPath::parse("bdy.phone").unwrap_err().1.contains("`body.phone`"));
    }

    #[test]
    fn absent_means_no_key_not_a_null_value() {
        let req = |body: Value, query: Vec<(&str, &str)>| RequestSpec {
            connection: "ghl".into(),
            operation: "op".into(),
            method: "POST".into(),
            base_url: String::new(),
            path: "/".into(),
            query: query.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            headers: Vec::new(),
            body: Some(body),
        };
        let want: ExpectedRequest = serde_json::from_value(
            serde_json::json!({"method": "POST", "path": "/", "absent": ["body.phone", "body.contact.id", "query.email"]}),
        )
        .unwrap();
        assert!(request_mismatch(0, &want, &req(serde_json::json!({"email": "a"}), vec![])).is_empty());
        let sent = request_mismatch(
            0,
            &want,
            &req(serde_json::json!({"phone": null, "contact": {"id": "c1"}}), vec![("email", "a@x")]),
        );
        assert_eq!(
            sent,
            vec![
                "requests[0].body.phone: expected absent, sent null",
                "requests[0].body.contact.id: expected absent, sent \"c1\"",
                "requests[0].query.email: expected absent, sent \"a@x\"",
            ]
        );
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
