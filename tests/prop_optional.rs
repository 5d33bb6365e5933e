//! Property tests of `{ from: PATH, optional: true }`: whatever fields an event has, is missing or has as
//! `null`, and whichever of them a mapping marks optional, the mapped object has exactly the keys it should
//! — an optional field that is missing or `null` is left out (in objects and in lists), a real value is sent
//! as is, a plain `{ from }` sends a `null` it finds and falls back to `null` — over several matches the first
//! real value is sent, and neither compiling nor evaluating panics.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use weft::mapping::{compile, Context, Evaluator, Templates};
use weft::source::SourceFile;

const FIELDS: [&str; 4] = ["phone", "email", "city", "zip"];

/// What the event holds for one field.
#[derive(Clone, Debug)]
enum Source {
    Missing,
    Null,
    Text(String),
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![Just(Source::Missing), Just(Source::Null), "[a-z+0-9 ]{0,8}".prop_map(Source::Text)]
}

fn map(yaml: &str, trigger: Value) -> Result<Value, String> {
    let file = SourceFile::new("prop.yaml", yaml);
    let root = weft::dsl::yaml::parse(&file).map_err(|d| format!("{d:?}"))?.ok_or("empty")?;
    let mut templates = Templates::new();
    let mapping = compile(root.get("v").ok_or("no v")?, &mut templates).map_err(|d| d.message)?;
    let ctx = Context { trigger: Arc::new(trigger), ..Context::default() };
    Evaluator::new(&templates, Arc::new(ctx)).eval(&mapping).map_err(|e| e.message)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn optional_fields_are_left_out_exactly_when_missing_or_null(
        sources in prop::collection::vec(source(), FIELDS.len()),
        optional in prop::collection::vec(any::<bool>(), FIELDS.len()),
        nested in any::<bool>(),
    ) {
        let mut event = Map::new();
        for (name, s) in FIELDS.iter().zip(&sources) {
            match s {
                Source::Missing => {}
                Source::Null => { event.insert(name.to_string(), Value::Null); }
                Source::Text(t) => { event.insert(name.to_string(), Value::String(t.clone())); }
            }
        }
        let fields: Vec<String> = FIELDS.iter().zip(&optional).map(|(name, opt)| {
            let fallback = if *opt { "optional: true" } else { "default: null" };
            format!("{name}: {{ from: $.trigger.{name}, {fallback} }}")
        }).collect();
        let items: Vec<String> = FIELDS.iter().zip(&optional)
            .map(|(name, opt)| format!("{{ from: $.trigger.{name}, optional: {opt} }}"))
            .collect();
        let object = format!("{{ {} }}", fields.join(", "));
        let yaml = if nested {
            format!("v: {{ contact: {object}, list: [{}] }}", items.join(", "))
        } else {
            format!("v: {object}")
        };
        let out = map(&yaml, Value::Object(event.clone())).map_err(TestCaseError::fail)?;

        let mut expected = Map::new();
        let mut list = Vec::new();
        for ((name, s), opt) in FIELDS.iter().zip(&sources).zip(&optional) {
            let value = match s {
                Source::Missing | Source::Null if *opt => None,
                Source::Missing | Source::Null => Some(Value::Null),
                Source::Text(t) => Some(Value::String(t.clone())),
            };
            if let Some(v) = value {
                expected.insert(name.to_string(), v.clone());
                list.push(v);
            }
        }
        let expected = if nested {
            json!({"contact": Value::Object(expected), "list": list})
        } else {
            Value::Object(expected)
        };
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn optional_over_several_matches_sends_the_first_real_value(
        phones in prop::collection::vec(prop::option::of("[+0-9]{1,6}"), 0..5),
    ) {
        let list: Vec<Value> = phones.iter().map(|p| p.clone().map_or(Value::Null, Value::String)).collect();
        let out = map(
            "v: { phone: { from: '$.trigger.phones[*]', optional: true }, all: '$.trigger.phones[*]' }",
            json!({ "phones": list }),
        )
        .map_err(TestCaseError::fail)?;
        let mut expected = Map::new();
        if let Some(first) = phones.iter().flatten().next() {
            expected.insert("phone".into(), Value::String(first.clone()));
        }
        // A bare path with a wildcard still yields every match, nulls included.
        expected.insert("all".into(), Value::Array(list));
        prop_assert_eq!(out, Value::Object(expected));
    }

    #[test]
    fn any_from_mapping_compiles_or_is_refused_without_panicking(
        default in prop::option::of("(null|0|''|x|\\{\\}|\\[\\])"),
        optional in prop::option::of("(true|false|'true'|yes|1|null|\\{\\})"),
        extra in prop::option::of("(optinal|defualt|from2|literal)"),
    ) {
        let mut keys = vec!["from: $.trigger.phone".to_string()];
        if let Some(d) = &default { keys.push(format!("default: {d}")); }
        if let Some(o) = &optional { keys.push(format!("optional: {o}")); }
        if let Some(e) = &extra { keys.push(format!("{e}: 1")); }
        let yaml = format!("v: {{ a: {{ {} }}, b: [{{ {} }}] }}", keys.join(", "), keys.join(", "));
        // Compiling may refuse (`default` with `optional: true`, a non-boolean `optional`); evaluating an
        // event with and without the field must give a value or an error, never a panic.
        let _ = map(&yaml, json!({}));
        let _ = map(&yaml, json!({"phone": null}));
        let _ = map(&yaml, json!({"phone": "+1"}));
    }
}
