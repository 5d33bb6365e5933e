//! Files generated from the code are committed (editors and reviewers read them) and must stay fresh:
//! the JSON Schemas in `schemas/` and the code registry in `docs/errors.md`. `WEFT_BLESS=1` rewrites them.

use std::path::Path;

use weft::dsl::shape::Format;

fn check_fresh(rel: &str, generated: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(&path, generated).expect("write");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{rel} is stale: run `WEFT_BLESS=1 cargo test --test generated_files` and commit it"
    );
}

#[test]
fn schemas_are_fresh() {
    for (format, file) in [
        (Format::Flow, "flow"),
        (Format::Project, "project"),
        (Format::Connector, "connector"),
        (Format::TestCase, "test"),
    ] {
        let text = weft::cli::pretty(format.schema()) + "\n";
        check_fresh(&format!("schemas/{file}.schema.json"), &text);
    }
}

#[test]
fn schemas_are_draft_2020_12_and_describe_every_property() {
    for format in [Format::Flow, Format::Project, Format::Connector, Format::TestCase] {
        let schema = format.schema();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        jsonschema::draft202012::meta::validate(schema).expect("valid against the 2020-12 meta-schema");
        let mut undocumented = Vec::new();
        walk(schema, "", &mut undocumented);
        assert!(undocumented.is_empty(), "{}: properties without a description: {undocumented:?}", format.name());
    }
}

/// Every property needs a description (for editor hover help): on the property or on the type it refers to.
fn walk(schema: &serde_json::Value, at: &str, missing: &mut Vec<String>) {
    let root = schema;
    let mut stack = vec![(schema, at.to_string())];
    while let Some((node, path)) = stack.pop() {
        if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let target = prop
                    .get("$ref")
                    .and_then(|r| r.as_str())
                    .and_then(|r| r.strip_prefix('#'))
                    .and_then(|p| root.pointer(p));
                let described =
                    prop.get("description").is_some() || target.is_some_and(|t| t.get("description").is_some());
                if !described {
                    missing.push(format!("{path}/{name}"));
                }
                stack.push((prop, format!("{path}/{name}")));
            }
        }
        if let Some(defs) = node.get("$defs").and_then(|d| d.as_object()) {
            for (name, def) in defs {
                stack.push((def, format!("$defs/{name}")));
            }
        }
    }
}

#[test]
fn error_codes_doc_is_fresh() {
    check_fresh("docs/errors.md", &weft::diag::codes::markdown());
}
