//! The README's main command on the shipped flows, as CI sees it: every flow in `flows/` validates with no
//! diagnostic, and every test case beside them passes (`weft check flows/`).

use std::process::Command;

fn weft(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run weft");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn shipped_flows_validate_clean_and_pass_their_tests() {
    let (code, out) = weft(&["check", "flows"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");
    assert!(out.contains(" 0 failed") && !out.contains("FAIL "), "{out}");
}

#[test]
fn exit_codes_are_the_documented_constants() {
    assert_eq!(weft(&["validate", "no/such/dir"]).0, weft::cli::EXIT_USAGE);
    assert_eq!(weft(&["validate", "tests/cases/validate/call-unknown-operation.yaml"]).0, weft::cli::EXIT_INVALID);
    assert_eq!(weft(&["validate", "--format", "json", "flows"]).0, weft::cli::EXIT_OK);
    assert_eq!(weft(&["no-such-command"]).0, weft::cli::EXIT_USAGE);
}

#[test]
fn github_and_json_formats_point_at_the_line() {
    let (_, gh) = weft(&["validate", "--format", "github", "tests/cases/validate/call-unknown-operation.yaml"]);
    assert!(gh.contains("::error file=tests/cases/validate/call-unknown-operation.yaml,line="), "{gh}");
    let (_, json) = weft(&["validate", "--format", "json", "tests/cases/validate/call-unknown-operation.yaml"]);
    let doc: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON document");
    assert_eq!(doc["diagnostics"][0]["code"], "flow::call::unknown_operation");
    assert!(doc["diagnostics"][0]["line"].as_u64().is_some());
}
