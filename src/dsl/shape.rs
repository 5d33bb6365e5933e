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
use crate::diag::{codes, suggest, Sink};
use crate::source::Span;

/// The three file formats weft reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Flow,
    Project,
    Connector,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Flow => "flow",
            Format::Project => "project",
            Format::Connector => "connector",
        }
    }

    /// The JSON Schema (draft 2020-12) derived from the model type.
    pub fn schema(self) -> &'static Value {
        static FLOW: OnceLock<Value> = OnceLock::new();
        static PROJECT: OnceLock<Value> = OnceLock::new();
        static CONNECTOR: OnceLock<Value> = OnceLock::new();
        match self {
            Format::Flow => FLOW.get_or_init(|| to_value(schemars::schema_for!(super::flow::Flow))),
            Format::Project => PROJECT.get_or_init(|| to_value(schemars::schema_for!(super::project::Project))),
            Format::Connector => {
                CONNECTOR.get_or_init(|| to_value(schemars::schema_for!(crate::catalog::manifest::Manifest)))
            }
        }
    }

    fn validator(self) -> &'static Validator {
        static FLOW: OnceLock<Validator> = OnceLock::new();
        static PROJECT: OnceLock<Validator> = OnceLock::new();
        static CONNECTOR: OnceLock<Validator> = OnceLock::new();
        let cell = match self {
            Format::Flow => &FLOW,
            Format::Project => &PROJECT,
            Format::Connector => &CONNECTOR,
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
    let mut unknown: Vec<(String, String)> = Vec::new();
    for error in format.validator().iter_errors(&json) {
        let pointer = error.instance_path().to_string();
        let (node, entry) = root.at_pointer(&pointer);
        // The span of the key when the problem is the value under a key: it reads best in the report.
        let value_span = node.span;
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = allowed_keys(format.schema(), &pointer);
                for key in unexpected {
                    unknown.push((pointer.clone(), key.clone()));
                    let span = node.entry(key).map_or(value_span, |e| e.key_span);
                    let help = format!(
                        "{}; `weft schema {}` prints the format",
                        suggest(key, allowed.iter().map(String::as_str)),
                        format.name()
                    );
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
                let span = entry.map_or(Span::at(value_span.start), |e| e.key_span);
                let what =
                    if pointer.is_empty() { "the file".to_string() } else { format!("`{}`", pointer_label(&pointer)) };
                sink.error(
                    codes::SCHEMA_MISSING_FIELD,
                    span,
                    format!("missing required key `{name}` in {what}"),
                    format!("`{name}` is missing here"),
                )
                .help = Some(format!("add `{name}:`; {}", field_doc(format.schema(), &pointer, name)));
            }
            ValidationErrorKind::Type { kind } => {
                if format == Format::Project && is_secret_slot(&pointer) && matches!(node.kind, Kind::Str { .. }) {
                    sink.error(codes::PROJECT_AUTH, value_span, "a secret written into weft.yaml", "secret value here")
                        .help = Some("give secrets by reference only: `{ env: VARIABLE }` or `{ file: path/to/secret }`, and rotate the one written here".into());
                    continue;
                }
                let expected =
                    format!("{kind:?}").to_lowercase().replace("single(", "").replace("multiple(", "").replace(')', "");
                sink.error(
                    codes::SCHEMA_TYPE,
                    value_span,
                    format!("`{}` must be {}, found {}", pointer_label(&pointer), article(&expected), node.type_name()),
                    format!("expected {expected}"),
                )
                .help = Some(field_doc(format.schema(), parent(&pointer), last(&pointer)));
            }
            ValidationErrorKind::Enum { options } => {
                let names: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                let found = node.as_str().unwrap_or_default();
                sink.error(
                    codes::SCHEMA_VALUE,
                    value_span,
                    format!("`{}` is not a valid value for `{}`", found, pointer_label(&pointer)),
                    "not allowed here",
                )
                .help = Some(suggest(found, names.iter().map(String::as_str)));
            }
            ValidationErrorKind::Constant { .. }
            | ValidationErrorKind::Pattern { .. }
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
                .help = Some(field_doc(format.schema(), parent(&pointer), last(&pointer)));
            }
            _ => {
                sink.error(
                    codes::SCHEMA_INVALID,
                    value_span,
                    format!("`{}`: {error}", pointer_label(&pointer)),
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

fn article(word: &str) -> String {
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
    matches!(parts.as_slice(), ["", "connections", _, "auth", _] | ["", "connections", _, "webhook_secret"])
}

/// The schema object that describes the value at `pointer`, following `$ref`s into `$defs`.
fn schema_at<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut schema = deref(root, root);
    for token in pointer.split('/').skip(1) {
        let next = if token.parse::<usize>().is_ok() && schema.get("items").is_some() {
            schema.get("items")
        } else if let Some(p) = schema.get("properties").and_then(|p| p.get(token)) {
            Some(p)
        } else {
            schema.get("additionalProperties").filter(|a| a.is_object())
        };
        schema = deref(root, next?);
    }
    Some(schema)
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
    // `Option<T>` fields are `anyOf: [T, null]`-free in schemars 1 (type arrays), but be lenient anyway.
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
