//! A connector folder next to weft.yaml is loaded like a built-in one, with no recompile: its operations
//! validate flows, and a broken connector.yaml is reported with its location.

use std::path::{Path, PathBuf};

use weft::validate::validate_paths;

fn project(name: &str, manifest: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-user-connector-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("connectors/acme/openapi")).unwrap();
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("connectors/acme/connector.yaml"), manifest).unwrap();
    std::fs::write(
        dir.join("connectors/acme/openapi/things.json"),
        r##"{"openapi": "3.0.3", "info": {"title": "Acme", "version": "1"}, "paths": {"/things": {"post": {
            "operationId": "create-thing", "summary": "Create a thing",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}}},
          "components": {"schemas": {"Thing": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "size": {"type": "integer"}}}}}}"##,
    )
    .unwrap();
    std::fs::write(
        dir.join("weft.yaml"),
        "connections:\n  acme:\n    connector: acme\n    auth: { api_key: { env: ACME_KEY } }\n",
    )
    .unwrap();
    dir
}

const MANIFEST: &str = "connector: acme\ntitle: Acme\ndescription: The user's own app.\nbase_url: https://acme.example\napis:\n  things: openapi/things.json\nauth:\n  scheme: header\n  header: X-Api-Key\n";

fn flow(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("flows/thing.yaml");
    std::fs::write(&path, format!("flow: acme-thing\ndescription: Make a thing.\ntrigger:\n  manual: {{}}\nsteps:\n  - id: make\n    call: acme.things.create-thing\n    body: {body}\n")).unwrap();
    path
}

#[test]
fn a_project_connector_validates_flows_without_a_recompile() {
    let dir = project("ok", MANIFEST);
    let ok = flow(&dir, "{ name: widget, size: 3 }");
    let report = validate_paths(std::slice::from_ref(&ok));
    assert_eq!(
        report.diagnostics.len(),
        0,
        "{:#?}",
        report.diagnostics.iter().map(weft::diag::render::one_line).collect::<Vec<_>>()
    );
    flow(&dir, "{ nmae: widget }");
    let report = validate_paths(&[ok]);
    let codes: Vec<&str> = report.diagnostics.iter().map(|d| d.code.id).collect();
    // The typo is one problem: an unknown field with a did-you-mean, not also a missing `name`.
    assert_eq!(codes, ["flow::request::unknown_field"], "{codes:?}");
    assert!(report.diagnostics[0].help_text().contains("did you mean `name`?"));
}

#[test]
fn a_broken_project_connector_is_reported_at_its_line() {
    let dir = project("broken", &MANIFEST.replace("scheme: header", "scheme: headr"));
    let path = flow(&dir, "{ name: widget }");
    let report = validate_paths(&[path]);
    let d = report.diagnostics.iter().find(|d| d.code.id == "schema::value").expect("the bad scheme is reported");
    assert!(d.file.as_ref().unwrap().name().ends_with("connectors/acme/connector.yaml"));
    assert_eq!(d.location().unwrap().0, 8);
}
