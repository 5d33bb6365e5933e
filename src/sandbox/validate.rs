//! Request checks read from the catalog: the same OpenAPI operations that `weft validate` checks flows
//! against decide which requests the sandbox accepts.
//!
//! [`check`] compares the query and JSON body with the operation's schemas — required fields, unknown fields
//! (when the schema is closed), types, enums and numeric bounds, recursively, a `nullable` or absent optional
//! field passing — and [`rejection`] says what went wrong the way each upstream says it: GHL's NestJS
//! `422 {"statusCode","message":[...],"error"}` with class-validator's wording, Razorpay's
//! `400 {"error":{"code":"BAD_REQUEST_ERROR",...}}` naming the first bad field. [`minimal`] builds the smallest
//! response a schema accepts, for routes the sandbox keeps no state for.

use axum::http::StatusCode;
use indexmap::IndexMap;
use serde_json::{json, Map, Value};

use crate::catalog::schema::{deref, literal_mismatch, Shape};
use crate::catalog::{Operation, ParamIn};

/// One thing wrong with a request. `field` is a dotted path (`trackings.0.trackingNumber`).
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub field: String,
    pub kind: ProblemKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProblemKind {
    Missing,
    Unknown,
    /// The schema's type(s), e.g. `string` or `integer or null`.
    Type(String),
    Enum(Vec<String>),
    TooSmall(f64),
    TooLarge(f64),
}

/// Everything wrong with a request's query and body, in order. Path params were matched by the route.
pub fn check(op: &Operation, query: &IndexMap<String, String>, body: Option<&Value>) -> Vec<Problem> {
    let mut problems = Vec::new();
    for param in op.params.iter().filter(|p| p.location == ParamIn::Query) {
        match query.get(&param.name).filter(|v| !v.is_empty()) {
            None if param.required => problems.push(Problem { field: param.name.clone(), kind: ProblemKind::Missing }),
            None => {}
            Some(text) => check_query(&op.doc, &param.schema, &param.name, text, &mut problems),
        }
    }
    if let Some(schema) = &op.body {
        // No body is an empty one: GHL then names every required field.
        let empty = Value::Object(Map::new());
        check_value(&op.doc, schema, body.unwrap_or(&empty), "", &mut problems, 0);
    }
    problems
}

fn check_query(doc: &Value, schema: &Value, name: &str, text: &str, problems: &mut Vec<Problem>) {
    let schema = deref(doc, schema);
    let shape = Shape::of(doc, schema);
    let value = if shape.types.iter().any(|t| t == "string") || shape.types.is_empty() {
        Value::String(text.to_string())
    } else if shape.types.iter().any(|t| t == "integer") {
        match text.parse::<i64>() {
            Ok(i) => Value::from(i),
            Err(_) => return problems.push(Problem { field: name.into(), kind: ProblemKind::Type("integer".into()) }),
        }
    } else if shape.types.iter().any(|t| t == "number") {
        match text.parse::<f64>() {
            Ok(f) => json!(f),
            Err(_) => return problems.push(Problem { field: name.into(), kind: ProblemKind::Type("number".into()) }),
        }
    } else if shape.types.iter().any(|t| t == "boolean") {
        match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return problems.push(Problem { field: name.into(), kind: ProblemKind::Type("boolean".into()) }),
        }
    } else {
        return;
    };
    check_value(doc, schema, &value, name, problems, 0);
}

fn check_value(doc: &Value, schema: &Value, value: &Value, path: &str, problems: &mut Vec<Problem>, depth: usize) {
    let schema = deref(doc, schema);
    if depth > 24 || (value.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true)) {
        return;
    }
    let field = |kind| Problem { field: path.to_string(), kind };
    // A choice of shapes: the value is fine if any branch takes it; otherwise report the closest branch.
    let branches = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array);
    if let (Some(branches), None) = (branches, schema.get("properties")) {
        let mut closest: Option<Vec<Problem>> = None;
        for branch in branches {
            let mut found = Vec::new();
            check_value(doc, branch, value, path, &mut found, depth + 1);
            if found.is_empty() {
                return;
            }
            if closest.as_ref().is_none_or(|c| found.len() < c.len()) {
                closest = Some(found);
            }
        }
        problems.extend(closest.unwrap_or_default());
        return;
    }
    if let Some(expected) = literal_mismatch(doc, schema, value) {
        let options = schema.get("enum").and_then(Value::as_array);
        let kind = match options {
            Some(options) if expected.starts_with("one of") => ProblemKind::Enum(
                options.iter().map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_string)).collect(),
            ),
            _ => ProblemKind::Type(expected),
        };
        return problems.push(field(kind));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64).filter(|min| n < *min) {
            problems.push(field(ProblemKind::TooSmall(min)));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64).filter(|max| n > *max) {
            problems.push(field(ProblemKind::TooLarge(max)));
        }
    }
    let join = |name: &str| if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
    match value {
        Value::Object(fields) => {
            let shape = Shape::of(doc, schema);
            for name in &shape.required {
                let absent = match fields.get(name) {
                    None | Some(Value::Null) => true,
                    Some(Value::String(s)) => s.is_empty(),
                    Some(_) => false,
                };
                if absent {
                    problems.push(Problem { field: join(name), kind: ProblemKind::Missing });
                }
            }
            for (name, v) in fields {
                match shape.properties.get(name) {
                    None if !shape.open => problems.push(Problem { field: join(name), kind: ProblemKind::Unknown }),
                    None => {}
                    // Null is absent to class-validator's @IsOptional; a required null was reported above.
                    Some(_) if v.is_null() => {}
                    Some(s) => check_value(doc, s, v, &join(name), problems, depth + 1),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_value(doc, item_schema, item, &join(&i.to_string()), problems, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// The answer to a request that failed [`check`], in the connector's own error shape.
pub fn rejection(connector: &str, problems: &[Problem]) -> (StatusCode, Value) {
    match connector {
        "ghl" => {
            let messages: Vec<String> = problems.iter().map(ghl_message).collect();
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"statusCode": 422, "message": messages, "error": "Unprocessable Entity"}),
            )
        }
        "razorpay" => {
            // Razorpay stops at the first bad field.
            let first = &problems[0];
            (
                StatusCode::BAD_REQUEST,
                json!({"error": {
                    "code": "BAD_REQUEST_ERROR",
                    "description": razorpay_message(first),
                    "source": "business",
                    "step": "payment_initiation",
                    "reason": "input_validation_failed",
                    "metadata": {},
                    "field": first.field,
                }}),
            )
        }
        _ => {
            let messages: Vec<String> = problems.iter().map(ghl_message).collect();
            (StatusCode::UNPROCESSABLE_ENTITY, json!({"message": "The request is invalid.", "errors": messages}))
        }
    }
}

/// class-validator's wording, as GHL's NestJS ValidationPipe returns it (nested fields keep their path).
fn ghl_message(p: &Problem) -> String {
    let f = if p.field.is_empty() { "body" } else { &p.field };
    match &p.kind {
        ProblemKind::Missing => format!("{f} should not be empty"),
        ProblemKind::Unknown => match f.rsplit_once('.') {
            Some((parent, name)) => format!("{parent}.property {name} should not exist"),
            None => format!("property {f} should not exist"),
        },
        ProblemKind::Type(t) if t.starts_with("string") => format!("{f} must be a string"),
        ProblemKind::Type(t) if t.starts_with("integer") => format!("{f} must be an integer number"),
        ProblemKind::Type(t) if t.starts_with("number") => {
            format!("{f} must be a number conforming to the specified constraints")
        }
        ProblemKind::Type(t) if t.starts_with("boolean") => format!("{f} must be a boolean value"),
        ProblemKind::Type(t) if t.starts_with("array") => format!("{f} must be an array"),
        ProblemKind::Type(t) if t.starts_with("object") => format!("{f} must be an object"),
        ProblemKind::Type(t) => format!("{f} must be {t}"),
        ProblemKind::Enum(options) => format!("{f} must be one of the following values: {}", options.join(", ")),
        ProblemKind::TooSmall(min) => format!("{f} must not be less than {min}"),
        ProblemKind::TooLarge(max) => format!("{f} must not be greater than {max}"),
    }
}

/// Razorpay's (Laravel-style) wording.
fn razorpay_message(p: &Problem) -> String {
    let f = if p.field.is_empty() { "body" } else { &p.field };
    match &p.kind {
        ProblemKind::Missing => format!("The {f} field is required."),
        ProblemKind::Unknown => format!("{f} is/are not required and should not be sent"),
        ProblemKind::Type(t) if t.starts_with("integer") => format!("The {f} must be an integer."),
        ProblemKind::Type(t) if t.starts_with("array") => format!("The {f} must be an array."),
        ProblemKind::Type(t) => format!("The {f} must be a {t}."),
        ProblemKind::Enum(_) => format!("The selected {f} is invalid."),
        ProblemKind::TooSmall(min) => format!("The {f} must be at least {min}."),
        ProblemKind::TooLarge(max) => format!("The {f} may not be greater than {max}."),
    }
}

/// The smallest value a response schema accepts: required fields only, each at its type's zero (an enum's
/// first option). Routes without state answer this, so a flow's later steps still find the fields they need.
pub fn minimal(doc: &Value, schema: Option<&Value>) -> Value {
    schema.map_or_else(|| json!({}), |s| minimal_at(doc, s, 0))
}

fn minimal_at(doc: &Value, schema: &Value, depth: usize) -> Value {
    let schema = deref(doc, schema);
    if depth > 8 {
        return Value::Null;
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|o| o.first()) {
        return first.clone();
    }
    let shape = Shape::of(doc, schema);
    let is_object = shape.types.iter().any(|t| t == "object") || (shape.types.is_empty() && !shape.open);
    if is_object || shape.types.is_empty() {
        let mut out = Map::new();
        if is_object {
            for name in &shape.required {
                if let Some(field) = shape.properties.get(name) {
                    out.insert(name.clone(), minimal_at(doc, field, depth + 1));
                }
            }
        }
        return Value::Object(out);
    }
    match shape.types[0].as_str() {
        "array" => json!([]),
        "string" => json!(""),
        "integer" | "number" => json!(0),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(body: Value, doc: Value) -> Operation {
        Operation {
            connector: "ghl".into(),
            api: "t".into(),
            id: "t".into(),
            method: "POST".into(),
            path: "/t".into(),
            summary: String::new(),
            params: Vec::new(),
            body: Some(body),
            body_required: true,
            response: None,
            scopes: Vec::new(),
            scopes_inferred: false,
            addressable: true,
            doc: std::sync::Arc::new(doc),
        }
    }

    #[test]
    fn names_missing_unknown_and_mistyped_fields_with_their_paths() {
        let doc = json!({"components": {"schemas": {"T": {"type": "object", "properties": {
            "n": {"type": "string"}, "kind": {"type": "string", "enum": ["a", "b"]}
        }}}}});
        let body = json!({"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "note": {"type": "string", "nullable": true},
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/T"}}
        }});
        let op = op(body, doc);
        let found = check(
            &op,
            &IndexMap::new(),
            Some(&json!({"note": null, "extra": 1, "items": [{"n": 3, "kind": "c", "x": 1}]})),
        );
        let (status, answer) = rejection("ghl", &found);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            answer["message"],
            json!([
                "name should not be empty",
                "property extra should not exist",
                "items.0.n must be a string",
                "items.0.kind must be one of the following values: a, b",
                "items.0.property x should not exist"
            ])
        );
        let (status, answer) = rejection("razorpay", &found);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["error"]["field"], "name");
        assert_eq!(answer["error"]["description"], "The name field is required.");
    }

    #[test]
    fn any_of_takes_the_branch_that_fits() {
        let body = json!({"type": "object", "properties": {"v": {"anyOf": [{"type": "string"}, {"type": "array"}]}}});
        let op = op(body, json!({}));
        assert!(check(&op, &IndexMap::new(), Some(&json!({"v": ["x"]}))).is_empty());
        assert_eq!(check(&op, &IndexMap::new(), Some(&json!({"v": 1}))).len(), 1);
    }

    #[test]
    fn minimal_answers_fill_required_fields() {
        let doc = json!({"components": {"schemas": {"R": {"type": "object", "required": ["ok", "data", "kind"],
            "properties": {"ok": {"type": "boolean"}, "data": {"type": "array"}, "kind": {"enum": ["x"]},
                "n": {"type": "number"}}}}}});
        let schema = json!({"$ref": "#/components/schemas/R"});
        assert_eq!(minimal(&doc, Some(&schema)), json!({"ok": false, "data": [], "kind": "x"}));
        assert_eq!(minimal(&doc, None), json!({}));
    }
}
