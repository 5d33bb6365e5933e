//! Navigating OpenAPI / JSON Schemas: follow local `$ref`s, merge `allOf`, and read an object's fields.
//!
//! The validator asks three questions of a request schema: which fields exist, which are required, and
//! what type a field has. Composition (`allOf`/`anyOf`/`oneOf`) is merged leniently: a field allowed by any
//! branch is allowed, one required by all `allOf` branches is required.

use indexmap::IndexMap;
use serde_json::Value;

/// Follow `$ref: '#/...'` (bounded, so a cycle cannot hang) to the schema it names.
pub fn deref<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let target =
            schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')).and_then(|p| doc.pointer(p));
        match target {
            Some(t) => schema = t,
            None => return schema,
        }
    }
    schema
}

/// What an object schema says about its fields.
#[derive(Clone, Debug, Default)]
pub struct Shape<'a> {
    pub properties: IndexMap<String, &'a Value>,
    pub required: Vec<String>,
    /// True when unknown fields cannot be checked: no properties listed, or additional ones allowed.
    pub open: bool,
    /// The JSON types the schema allows (`string`, `object`, …); empty when it says nothing.
    pub types: Vec<String>,
}

impl<'a> Shape<'a> {
    pub fn of(doc: &'a Value, schema: &'a Value) -> Shape<'a> {
        let mut shape = Shape::default();
        collect(doc, schema, &mut shape, 0, true);
        if shape.properties.is_empty() {
            shape.open = true;
        }
        shape.types.sort();
        shape.types.dedup();
        shape
    }

    /// The schema of a field, dereferenced.
    pub fn field(&self, doc: &'a Value, name: &str) -> Option<&'a Value> {
        self.properties.get(name).map(|s| deref(doc, s))
    }
}

fn collect<'a>(doc: &'a Value, schema: &'a Value, shape: &mut Shape<'a>, depth: usize, required_applies: bool) {
    if depth > 16 {
        shape.open = true;
        return;
    }
    let schema = deref(doc, schema);
    match schema.get("type") {
        Some(Value::String(t)) => shape.types.push(t.clone()),
        Some(Value::Array(ts)) => shape.types.extend(ts.iter().filter_map(Value::as_str).map(String::from)),
        _ => {}
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            shape.properties.entry(name.clone()).or_insert(prop);
        }
    }
    if required_applies {
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            shape.required.extend(req.iter().filter_map(Value::as_str).map(String::from));
        }
    }
    match schema.get("additionalProperties") {
        Some(Value::Bool(true)) | Some(Value::Object(_)) => shape.open = true,
        _ => {}
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            collect(doc, s, shape, depth + 1, required_applies);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(any) = schema.get(key).and_then(Value::as_array) {
            for s in any {
                collect(doc, s, shape, depth + 1, false);
            }
        }
    }
}

/// Whether a JSON literal fits a schema's declared type(s) and enum. `None` = fits; `Some(expected)` = not.
pub fn literal_mismatch(doc: &Value, schema: &Value, literal: &Value) -> Option<String> {
    let schema = deref(doc, schema);
    let shape = Shape::of(doc, schema);
    if !shape.types.is_empty() && !shape.types.iter().any(|t| type_matches(t, literal)) {
        return Some(shape.types.join(" or "));
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.is_empty() && !literal.is_null() && !options.contains(literal) {
            let shown: Vec<String> = options.iter().map(|o| o.to_string()).collect();
            return Some(format!("one of {}", shown.join(", ")));
        }
    }
    None
}

/// A value of `schema`'s shape standing in for a response that was never received (a dry run's unsent write,
/// a scaffolded test case's answer), so that the steps after it can still be shown with the requests they
/// would send. Each string is `name(where it is in the response)` (`contact.id`; the whole response is
/// `response`), so a later request shows which value it would carry; numbers are 0, booleans false, an enum
/// its first value, and lists empty: no made-up items for a `for_each` to loop over or a filter to find.
/// Nesting is cut at a depth a real response never reaches (recursive schemas).
pub fn stand_in(doc: &Value, schema: &Value, name: &dyn Fn(&str) -> String) -> Value {
    stand_in_at(doc, schema, "", 0, name)
}

fn stand_in_at(doc: &Value, schema: &Value, at: &str, depth: usize, name: &dyn Fn(&str) -> String) -> Value {
    const MAX_DEPTH: usize = 8;
    let schema = deref(doc, schema);
    let shape = Shape::of(doc, schema);
    if !shape.properties.is_empty() {
        if depth >= MAX_DEPTH {
            return Value::Object(serde_json::Map::new());
        }
        let fields = shape.properties.iter().map(|(field_name, field)| {
            let inner = if at.is_empty() { field_name.clone() } else { format!("{at}.{field_name}") };
            (field_name.clone(), stand_in_at(doc, field, &inner, depth + 1, name))
        });
        return Value::Object(fields.collect());
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|options| options.first()) {
        return first.clone();
    }
    let has = |t: &str| shape.types.iter().any(|x| x == t);
    if has("object") {
        Value::Object(serde_json::Map::new())
    } else if has("array") {
        Value::Array(Vec::new())
    } else if has("string") {
        Value::String(name(if at.is_empty() { "response" } else { at }))
    } else if has("integer") || has("number") {
        Value::from(0)
    } else if has("boolean") {
        Value::Bool(false)
    } else {
        Value::Null
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn follows_refs_and_merges_all_of() {
        let doc = json!({"components": {"schemas": {
            "Base": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
            "Ext": {"allOf": [{"$ref": "#/components/schemas/Base"}, {"properties": {"n": {"type": "integer"}}}]}
        }}});
        let s = json!({"$ref": "#/components/schemas/Ext"});
        let shape = Shape::of(&doc, &s);
        assert_eq!(shape.properties.keys().collect::<Vec<_>>(), ["id", "n"]);
        assert_eq!(shape.required, ["id"]);
        assert!(!shape.open);
        assert_eq!(literal_mismatch(&doc, shape.properties["n"], &json!("x")).as_deref(), Some("integer"));
        assert_eq!(literal_mismatch(&doc, shape.properties["n"], &json!(3)), None);
    }

    #[test]
    fn a_stand_in_has_the_response_shape_and_names_each_string() {
        let doc = json!({"components": {"schemas": {
            "Contact": {"type": "object", "properties": {
                "id": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                "score": {"type": "integer"}, "dnd": {"type": "boolean"}, "kind": {"type": "string", "enum": ["lead", "customer"]},
                "parent": {"$ref": "#/components/schemas/Contact"}
            }},
            "Upsert": {"type": "object", "properties": {"new": {"type": "boolean"}, "contact": {"$ref": "#/components/schemas/Contact"}}}
        }}});
        let angled = |at: &str| format!("<{at}>");
        let made = stand_in(&doc, &json!({"$ref": "#/components/schemas/Upsert"}), &angled);
        assert_eq!(made["new"], json!(false));
        assert_eq!(made["contact"]["id"], json!("<contact.id>"));
        assert_eq!(made["contact"]["tags"], json!([]));
        assert_eq!((made["contact"]["score"].clone(), made["contact"]["kind"].clone()), (json!(0), json!("lead")));
        assert_eq!(made["contact"]["parent"]["parent"]["id"], json!("<contact.parent.parent.id>"));
        // A schema that refers to itself ends: a real response is never this deep.
        let mut deepest = &made;
        let mut levels = 0;
        while let Some(next) = deepest.get("contact").or_else(|| deepest.get("parent")) {
            deepest = next;
            levels += 1;
        }
        assert_eq!((levels, deepest), (8, &json!({})));
        assert_eq!(stand_in(&doc, &json!({"type": "string"}), &angled), json!("<response>"));
    }

    #[test]
    fn ref_cycles_terminate() {
        let doc = json!({"a": {"$ref": "#/b"}, "b": {"$ref": "#/a"}});
        let s = json!({"$ref": "#/a"});
        let shape = Shape::of(&doc, &s);
        assert!(shape.open);
    }
}
