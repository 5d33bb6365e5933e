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

#[test]
fn events_and_replay_read_the_durable_queue() {
    use weft::store::{NewEvent, Store};
    let dir = std::env::temp_dir().join(format!("weft-events-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("state.db");
    let store = weft::store::sqlite::SqliteStore::open(&db).unwrap();
    let event = NewEvent {
        connection: "razorpay".into(),
        event_id: "evt_Cli000000001".into(),
        kind: "payment.captured".into(),
        payload: serde_json::json!({}).into(),
        received_at_ms: 0,
    };
    store.enqueue_event(&event).unwrap();
    let claim = store.claim_event(1, 60_000).unwrap().expect("claimable");
    store.complete_event(&claim).unwrap();
    let db = db.to_str().unwrap();
    let (code, out) = weft(&["events", "--state", db]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("evt_Cli000000001") && out.contains("done"), "{out}");
    assert_eq!(weft(&["replay", "1", "--state", db]).0, 0);
    let (_, out) = weft(&["events", "--state", db, "--status", "queued"]);
    assert!(out.contains("evt_Cli000000001"), "replayed event is queued again: {out}");
    assert_eq!(weft(&["replay", "1", "--state", db]).0, weft::cli::EXIT_INVALID, "a queued event cannot be replayed");
    assert_eq!(weft(&["events", "--state", "/nonexistent/state.db"]).0, weft::cli::EXIT_USAGE);
    assert!(!out.contains("ingest journal"), "{out}");

    // A delivery a server answered and did not queue before it died is not in the queue yet: the list says so.
    let journal =
        weft::store::journal::Journal::open(&weft::store::journal::Journal::beside(std::path::Path::new(db))).unwrap();
    journal.append(&NewEvent { event_id: "evt_Cli000000002".into(), ..event }).unwrap();
    drop(journal);
    let (_, out) = weft(&["events", "--state", db]);
    assert!(out.contains("1 event(s)\nand "), "{out}");
    assert!(out.contains("bytes of accepted deliveries in 1 ingest journal segment(s) under"), "{out}");
}

#[test]
fn dry_run_prints_requests_with_credentials_redacted() {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "dry-run",
            "flows/razorpay/refund-processed.yaml",
            "--event",
            "connectors/razorpay/webhooks/refund.processed.json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GHL_TOKEN", "pit-dry-run-secret-0042")
        .output()
        .expect("run weft");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("GET https://services.leadconnectorhq.com/contacts/search/duplicate?"), "{text}");
    assert!(text.contains("Authorization: Bearer [redacted]") && text.contains("Version: 2021-07-28"), "{text}");
    assert!(!text.contains("pit-dry-run-secret-0042"), "the token leaked:\n{text}");
    assert!(text.contains("call budget:"), "{text}");
}

#[test]
fn dry_run_without_a_cassette_shows_every_later_request_with_stand_ins() {
    let dry_run = |extra: &[&str]| {
        let mut args = vec![
            "dry-run",
            "flows/razorpay/payment-captured.yaml",
            "--event",
            "flows/razorpay/tests/events/payment.captured.json",
        ];
        args.extend(extra);
        weft(&args)
    };
    // Nothing answers: the upsert's stand-in carries `<contact.id>` into the tag and note paths, the custom
    // fields read gets one too (no fields: the score update is skipped), and the run would succeed.
    let (code, text) = dry_run(&[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("POST https://services.leadconnectorhq.com/contacts/<contact.id>/tags   (write: not sent)"),
        "{text}"
    );
    assert!(text.contains("POST https://services.leadconnectorhq.com/contacts/<contact.id>/notes"), "{text}");
    assert!(
        text.contains("GET https://services.leadconnectorhq.com/locations/ve9EPM428h8vShlRW1KT/customFields"),
        "{text}"
    );
    assert_eq!(text.matches("→ output: not received").count(), 4, "{text}");
    assert!(text.contains("── step lead_score — skipped") && text.contains("run would succeed"), "{text}");
    // The JSON report names the steps whose output is a stand-in, not an answer.
    let (code, text) = dry_run(&["--format", "json"]);
    assert_eq!(code, 0, "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text[..text.rfind('}').map_or(0, |i| i + 1)]).expect("JSON");
    assert_eq!(doc["not_received"], serde_json::json!(["contact", "tag", "note", "fields"]), "{text}");
    // With a cassette, a read it does not have fails the step, as in `weft test`.
    let empty = std::env::temp_dir().join(format!("weft-empty-cassette-{}.yaml", std::process::id()));
    std::fs::write(&empty, "interactions: []\n").unwrap();
    let (code, text) = dry_run(&["--cassette", empty.to_str().unwrap()]);
    assert_eq!(code, weft::cli::EXIT_INVALID, "{text}");
    assert!(text.contains("run::replay::unmatched") && text.contains("── step fields — FAILED"), "{text}");
}

#[test]
fn new_test_writes_a_case_that_passes_and_never_overwrites_one() {
    // A copy of the project, so that the case is written outside the repository.
    let dir = std::env::temp_dir().join(format!("weft-new-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows/razorpay/tests/events")).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in
        ["flows/weft.yaml", "flows/razorpay/payment-captured.yaml", "flows/razorpay/tests/events/payment.captured.json"]
    {
        std::fs::copy(root.join(file), dir.join(file)).unwrap();
    }
    // The project keeps the test case schema (`weft schema test`): the case points an editor at it.
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    std::fs::copy(root.join("schemas/test.schema.json"), dir.join("schemas/test.schema.json")).unwrap();
    let flow = dir.join("flows/razorpay/payment-captured.yaml");
    let event = dir.join("flows/razorpay/tests/events/payment.captured.json");
    let new_test =
        || weft(&["new-test", flow.to_str().unwrap(), "--event", event.to_str().unwrap(), "--name", "first-try"]);
    let (code, out) = new_test();
    assert_eq!(code, 0, "{out}");
    let case = dir.join("flows/razorpay/tests/payment-captured.first-try.yaml");
    let text = std::fs::read_to_string(&case).unwrap();
    // The upsert's stand-in id travels into the later paths, and the expectations pin every request.
    let header = "# yaml-language-server: $schema=../../../schemas/test.schema.json\n# Written by `weft new-test`";
    assert!(text.starts_with(header), "{text}");
    assert!(text.contains("id: \"stand-in-contact-id\""), "{text}");
    assert!(text.contains("path: \"/contacts/stand-in-contact-id/tags\""), "{text}");
    assert_eq!(
        text.matches("      method: \"POST\"").count(),
        6,
        "3 writes, each in the cassette and in expect:\n{text}"
    );
    let (code, out) = weft(&["test", case.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("test cases: 1 passed, 0 failed"), "{out}");
    // Written once: a second run leaves the reviewed file alone.
    std::fs::write(&case, "# reviewed by hand\n").unwrap();
    let (code, out) = new_test();
    assert_eq!(code, weft::cli::EXIT_USAGE, "{out}");
    assert!(out.contains("already exists"), "{out}");
    assert_eq!(std::fs::read_to_string(&case).unwrap(), "# reviewed by hand\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_shipped_flow_and_test_case_points_an_editor_at_its_schema() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for app in std::fs::read_dir(root.join("flows")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()) {
        let tests = std::fs::read_dir(app.join("tests")).into_iter().flatten().map(|e| e.unwrap().path());
        let files = std::fs::read_dir(&app).unwrap().map(|e| e.unwrap().path()).chain(tests);
        for file in files.filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
            let text = std::fs::read_to_string(&file).unwrap();
            let first = text.lines().next().unwrap_or_default();
            let schema = first.strip_prefix("# yaml-language-server: $schema=");
            let schema =
                schema.unwrap_or_else(|| panic!("{}: first line is not the schema line: {first}", file.display()));
            let wanted = if file.parent().is_some_and(|d| d.ends_with("tests")) { "test" } else { "flow" };
            assert!(schema.ends_with(&format!("schemas/{wanted}.schema.json")), "{}: {schema}", file.display());
            assert!(file.parent().unwrap().join(schema).is_file(), "{}: no file at {schema}", file.display());
            checked += 1;
        }
    }
    assert!(checked > 80, "only {checked} files found");
}
