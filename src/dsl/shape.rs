//! Shape checks: a YAML tree against one of the generated JSON Schemas, every error mapped back to the span
//! of the node (or key) it is about.
//!
//! The schemas come from the Rust model types (schemars), so the editor's schema, the validator and serde
//! all agree. Messages are rewritten for people: "unknown key `stpes`, did you mean `steps`?" rather than
//! the validator's raw text.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::Validator;
use serde_json::Value;

use super::yaml::{Kind, Node};
use crate::diag::{codes, Sink};
use crate::source::Span;

/// The file formats weft reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Flow,
    Project,
    Connector,
    /// A flow's offline test case (`flows/<app>/tests/*.yaml`).
    TestCase,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Flow => "flow",
            Format::Project => "project",
            Format::Connector => "connector",
            Format::TestCase => "test case",
        }
    }

    /// The JSON Schema (draft 2020-12) derived from the model type.
    pub fn schema(self) -> &'static Value {
        static FLOW: OnceLock<Value> = OnceLock::new();
        static PROJECT: OnceLock<Value> = OnceLock::new();
        static CONNECTOR: OnceLock<Value> = OnceLock::new();
        static TEST_CASE: OnceLock<Value> = OnceLock::new();
        match self {
            Format::Flow => FLOW.get_or_init(|| to_value(schemars::schema_for!(super::flow::Flow))),
            Format::Project => PROJECT.get_or_init(|| to_value(schemars::schema_for!(super::project::Project))),
            Format::Connector => {
                CONNECTOR.get_or_init(|| to_value(schemars::schema_for!(crate::catalog::manifest::Manifest)))
            }
            Format::TestCase => TEST_CASE.get_or_init(|| to_value(schemars::schema_for!(crate::testcase::TestCase))),
        }
    }

    fn validator(self) -> &'static Validator {
        static FLOW: OnceLock<Validator> = OnceLock::new();
        static PROJECT: OnceLock<Validator> = OnceLock::new();
        static CONNECTOR: OnceLock<Validator> = OnceLock::new();
        static TEST_CASE: OnceLock<Validator> = OnceLock::new();
        let cell = match self {
            Format::Flow => &FLOW,
            Format::Project => &PROJECT,
            Format::Connector => &CONNECTOR,
            Format::TestCase => &TEST_CASE,
        };
        cell.get_or_init(|| {
            jsonschema::draft202012::new(self.schema()).expect("the generated schemas are valid (tested)")
        })
    }
}

fn to_value(schema: schemars::Schema) -> Value {
    schema.to_value()
}

/// Check `root` against the format's schema; push a diagnostic per problem. Returns the JSON value with
/// unknown keys removed (each already reported), so that meaning checks can still run on a file with a typo
/// in a key: the user sees every problem at once, not one per round trip.
pub fn check(format: Format, root: &Node, sink: &mut Sink) -> Value {
    let mut json = root.to_json();
    let schema = format.schema();
    let raw: Vec<_> = format.validator().iter_errors(&json).collect();
    let mut errors = Vec::new();
    for e in &raw {
        flatten(e, &mut errors);
    }
    // Unknown keys first: a misspelt key also makes its correct name "missing", and one report says both.
    let mut unknown: Vec<(String, String)> = Vec::new();
    for &error in &errors {
        if let ValidationErrorKind::AdditionalProperties { unexpected } = error.kind() {
            let pointer = error.instance_path().to_string();
            unknown.extend(unexpected.iter().map(|k| (pointer.clone(), k.clone())));
        }
    }
    for &error in &errors {
        let pointer = error.instance_path().to_string();
        let (node, entry) = root.at_pointer(&pointer);
        let value_span = node.span;
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = allowed_keys(schema, &pointer);
                for key in unexpected {
                    let span = node.entry(key).map_or(value_span, |e| e.key_span);
                    if key == "<<" {
                        sink.error(
                            codes::SCHEMA_UNKNOWN_FIELD,
                            span,
                            "YAML merge keys (`<<`) are not supported",
                            "merge key",
                        )
                        .help = Some("write the keys out, or reuse a whole value with an alias (`*name`)".into());
                        continue;
                    }
                    let help = match crate::diag::did_you_mean(key, allowed.iter().map(String::as_str)).first() {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("the keys here are {}", list(&allowed)),
                    };
                    sink.error(
                        codes::SCHEMA_UNKNOWN_FIELD,
                        span,
                        format!("unknown key `{key}`{}", context(&pointer)),
                        "not a known key",
                    )
                    .help = Some(help);
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let misspelt = unknown
                    .iter()
                    .any(|(p, k)| p == &pointer && crate::diag::did_you_mean(k, [name]).first() == Some(&name));
                if misspelt {
                    continue;
                }
                let span = entry.map_or(Span::at(value_span.start), |e| e.key_span);
                let what =
                    if pointer.is_empty() { "the file".to_string() } else { format!("`{}`", pointer_label(&pointer)) };
                sink.error(
                    codes::SCHEMA_MISSING_FIELD,
                    span,
                    format!("missing required key `{name}` in {what}"),
                    format!("`{name}` is missing here"),
                )
                .help = Some(format!("add `{name}:`; {}", field_doc(schema, &pointer, name)));
            }
            ValidationErrorKind::Type { .. }
            | ValidationErrorKind::AnyOf { .. }
            | ValidationErrorKind::OneOfNotValid { .. }
            | ValidationErrorKind::Enum { .. }
            | ValidationErrorKind::Constant { .. } => {
                if format == Format::Project && is_secret_slot(&pointer) && matches!(node.kind, Kind::Str { .. }) {
                    // Never echo the value: it is a secret.
                    sink.error(codes::PROJECT_AUTH, value_span, "a secret written into weft.yaml", "secret value here")
                        .help = Some("give secrets by reference only: `{ env: VARIABLE }` or `{ file: path/to/secret }`, and rotate the one written here".into());
                    continue;
                }
                let expected = schema_at(schema, &pointer).map(|s| Expected::of(schema, s)).unwrap_or_default();
                let label = pointer_label(&pointer);
                if !expected.options.is_empty() {
                    let found = node.as_str().map(str::to_string).unwrap_or_else(|| node.type_name().to_string());
                    let help = match crate::diag::did_you_mean(&found, expected.options.iter().map(String::as_str))
                        .first()
                    {
                        Some(close) => format!("did you mean `{close}`? The values are {}", list(&expected.options)),
                        None => format!("the values are {}", list(&expected.options)),
                    };
                    sink.error(
                        codes::SCHEMA_VALUE,
                        value_span,
                        format!("`{found}` is not a valid value for `{label}`"),
                        "not allowed here",
                    )
                    .help = Some(help);
                } else {
                    let want = if expected.kinds.is_empty() {
                        "something else".to_string()
                    } else {
                        expected.kinds.join(" or ")
                    };
                    let subject = if pointer.is_empty() { "the file".to_string() } else { format!("`{label}`") };
                    sink.error(
                        codes::SCHEMA_TYPE,
                        value_span,
                        format!("{subject} must be {want}, not {}", article(node.type_name())),
                        format!("expected {want}"),
                    )
                    .help = Some(field_doc(schema, parent(&pointer), last(&pointer)));
                }
            }
            ValidationErrorKind::Pattern { .. }
            | ValidationErrorKind::MinLength { .. }
            | ValidationErrorKind::MaxLength { .. }
            | ValidationErrorKind::Minimum { .. }
            | ValidationErrorKind::Maximum { .. }
            | ValidationErrorKind::MinItems { .. }
            | ValidationErrorKind::MaxItems { .. } => {
                sink.error(
                    codes::SCHEMA_VALUE,
                    value_span,
                    format!("`{}`: {}", pointer_label(&pointer), error.masked()),
                    "invalid value",
                )
                .help = Some(field_doc(schema, parent(&pointer), last(&pointer)));
            }
            _ => {
                sink.error(
                    codes::SCHEMA_INVALID,
                    value_span,
                    format!("`{}` does not match the format: {}", pointer_label(&pointer), error.masked()),
                    "does not match the format",
                );
            }
        }
    }
    for (pointer, key) in unknown {
        if let Some(Value::Object(map)) = json.pointer_mut(&pointer) {
            map.shift_remove(&key);
        }
    }
    json
}

/// An optional field is `anyOf: [T, null]`; when the value is not null, the useful errors are `T`'s, one level
/// down, not "matches none of the alternatives". Descend into the one branch that failed for a real reason.
fn flatten<'e, 'v>(error: &'e jsonschema::ValidationError<'v>, out: &mut Vec<&'e jsonschema::ValidationError<'v>>) {
    let branches = match error.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => context,
        _ => {
            out.push(error);
            return;
        }
    };
    let here = error.instance_path().to_string();
    let is_null_mismatch = |errs: &Vec<jsonschema::ValidationError<'static>>| {
        errs.len() == 1
            && errs[0].instance_path().to_string() == here
            && matches!(errs[0].kind(), ValidationErrorKind::Type { .. })
    };
    let real: Vec<&Vec<jsonschema::ValidationError<'static>>> =
        branches.iter().filter(|b| !is_null_mismatch(b)).collect();
    // Only a branch whose errors are deeper than this value says something specific.
    let deeper = |b: &&Vec<jsonschema::ValidationError<'static>>| {
        b.iter().all(|e| e.instance_path().to_string().len() > here.len())
    };
    match real.as_slice() {
        [one] if deeper(one) => one.iter().for_each(|e| flatten(e, out)),
        _ => out.push(error),
    }
}

/// What a schema accepts, in YAML words: kinds ("a mapping", "a string") or a list of allowed values.
#[derive(Default)]
struct Expected {
    kinds: Vec<String>,
    options: Vec<String>,
}

impl Expected {
    fn of(root: &Value, schema: &Value) -> Expected {
        let mut e = Expected::default();
        e.collect(root, schema, 0);
        e.kinds.dedup();
        e
    }

    fn collect(&mut self, root: &Value, schema: &Value, depth: usize) {
        if depth > 8 {
            return;
        }
        let schema = deref(root, schema);
        if let Some(c) = schema.get("const").and_then(Value::as_str) {
            self.options.push(c.to_string());
            return;
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            self.options.extend(values.iter().filter_map(Value::as_str).map(String::from));
            return;
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = schema.get(key).and_then(Value::as_array) {
                for b in branches {
                    self.collect(root, b, depth + 1);
                }
                return;
            }
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for t in types {
            let word = match t {
                "object" => "a mapping",
                "array" => "a list",
                "string" => "a string",
                "integer" => "a whole number",
                "number" => "a number",
                "boolean" => "`true` or `false`",
                // `null` is how an optional key may be left empty; not worth suggesting.
                _ => continue,
            };
            self.kinds.push(word.to_string());
        }
    }
}

fn list(items: &[String]) -> String {
    let shown: Vec<String> = items.iter().take(20).map(|i| format!("`{i}`")).collect();
    if shown.is_empty() {
        "none".into()
    } else {
        shown.join(", ")
    }
}

fn article(word: &str) -> String {
    let word = match word {
        "mapping" | "list" | "string" | "integer" | "number" | "boolean" => word,
        "null" => return "empty".into(),
        other => other,
    };
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {word}"),
        _ => format!("a {word}"),
    }
}

fn context(pointer: &str) -> String {
    if pointer.is_empty() {
        String::new()
    } else {
        format!(" in `{}`", pointer_label(pointer))
    }
}

/// `/steps/0/body` → `steps[0].body`, how people read a position.
pub fn pointer_label(pointer: &str) -> String {
    let mut out = String::new();
    for token in pointer.split('/').skip(1) {
        if token.parse::<usize>().is_ok() {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token.replace("~1", "/").replace("~0", "~"));
        }
    }
    if out.is_empty() {
        "(top level)".into()
    } else {
        out
    }
}

fn parent(pointer: &str) -> &str {
    pointer.rfind('/').map_or("", |i| &pointer[..i])
}

fn last(pointer: &str) -> &str {
    pointer.rfind('/').map_or(pointer, |i| &pointer[i + 1..])
}

fn is_secret_slot(pointer: &str) -> bool {
    let parts: Vec<&str> = pointer.split('/').collect();
    matches!(
        parts.as_slice(),
        ["", "connections", _, "auth", _] | ["", "connections", _, "webhook_secret" | "webhook_public_key"]
    )
}

/// The schema object that describes the value at `pointer`, following `$ref`s into `$defs`.
fn schema_at<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut schema = concrete(root, root);
    for token in pointer.split('/').skip(1) {
        let next = if token.parse::<usize>().is_ok() && schema.get("items").is_some() {
            schema.get("items")
        } else if let Some(p) = schema.get("properties").and_then(|p| p.get(token)) {
            Some(p)
        } else {
            schema.get("additionalProperties").filter(|a| a.is_object())
        };
        schema = concrete(root, next?);
    }
    Some(schema)
}

/// Through `$ref`s and the `anyOf: [T, null]` that optional fields get, to `T`.
fn concrete<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let schema = deref(root, schema);
    let branches = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array);
    match branches {
        Some(bs) => bs
            .iter()
            .map(|b| deref(root, b))
            .find(|b| b.get("properties").is_some() || b.get("items").is_some())
            .unwrap_or(schema),
        None => schema,
    }
}

fn deref<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let target =
            schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')).and_then(|p| root.pointer(p));
        match target {
            Some(t) => schema = t,
            None => break,
        }
    }
    schema
}

fn allowed_keys(root: &Value, pointer: &str) -> Vec<String> {
    schema_at(root, pointer)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The description of `field` under the object at `pointer`, to show as help.
fn field_doc(root: &Value, pointer: &str, field: &str) -> String {
    schema_at(root, pointer)
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.get(field))
        .map(|f| deref(root, f))
        .and_then(|f| f.get("description"))
        .and_then(Value::as_str)
        .map(|d| format!("`{field}`: {}", d.replace('\n', " ")))
        .unwrap_or_else(|| "`weft schema` prints the format".to_string())
}
