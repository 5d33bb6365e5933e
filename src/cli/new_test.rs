//! `weft new-test`: write a flow test case to start from, with no network and no recorded cassette.
//!
//! The flow runs for the given event with every request answered by a stand-in of its operation's response
//! schema (`catalog::schema::stand_in`: each string names its field, `stand-in-contact-id`), exactly as
//! `weft dry-run` does without a cassette. The case file holds the event, those answers as its cassette, and
//! what the run did as its expectations (every request, every step's status, the outcome), so it passes as
//! written. It pins today's behaviour against made-up answers: the header says to replace the answers with
//! what the API really returns (or `weft record` them) and to review every expectation, as with any snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::dry_run::stand_ins;
use super::test::{connections, event_kind, flow_and_event};
use super::{EXIT_OK, EXIT_USAGE};
use crate::engine::run::{Direct, EventInput, RunStatus, Runner};
use crate::transport::dry_run::DryRun;
use crate::transport::record::Record;

const HEADER: &str = "\
# Written by `weft new-test`: every answer in `cassette:` is a stand-in made from the operation's response
# schema (strings name their field), and `expect:` is what the flow did with them. Replace the answers with
# what the API really returns (or `weft record` them), review every expectation, then keep what matters.
";

pub fn run(flow: &Path, event: &Path, name: &str) -> i32 {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        eprintln!("error: --name `{name}`: use letters, digits, `-` and `_` (it becomes part of the file name)");
        return EXIT_USAGE;
    }
    let target = case_path(flow, name);
    if target.exists() {
        eprintln!("error: {} already exists: pick another --name, or delete it first", target.display());
        return EXIT_USAGE;
    }
    let (ctx, plan, body) = match flow_and_event(flow, event) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    // Path-safe stand-ins: they travel into later request paths (`/contacts/stand-in-contact-id/tags`).
    let answers = stand_ins(&plan, &|at| format!("stand-in-{}", at.replace('.', "-")));
    let record = Arc::new(Record::new(Arc::new(DryRun::new(None, answers))));
    let conns = connections(&ctx);
    let runner = Runner::new(plan.clone(), Arc::new(Direct(record.clone())), None, &conns);
    let input = EventInput {
        id: "new-test".into(),
        kind: event_kind(&plan),
        body: body.clone(),
        received_at: chrono::Utc::now().to_rfc3339(),
    };
    let report = match super::runtime(1) {
        Ok(rt) => rt.block_on(runner.run(&input)),
        Err(code) => return code,
    };

    let cassette = record.cassette(&[]);
    let mut expect = Map::new();
    let status = if report.status == RunStatus::Succeeded { "succeeded" } else { "failed" };
    expect.insert("status".into(), json!(status));
    if let Some(d) = &report.error {
        expect.insert("error".into(), json!(d.code.id));
    }
    let requests: Vec<Value> =
        cassette.interactions.iter().map(|i| serde_json::to_value(&i.request).unwrap_or(Value::Null)).collect();
    expect.insert("requests".into(), Value::Array(requests));
    let steps: Map<String, Value> = report.steps.iter().map(|s| (s.id.clone(), json!(s.status.as_str()))).collect();
    expect.insert("steps".into(), Value::Object(steps));
    let case = json!({
        "name": format!("{} ({name}): written by weft new-test, to be reviewed", plan.name),
        "event": body,
        "cassette": serde_json::to_value(&cassette.interactions).unwrap_or(Value::Null),
        "expect": expect,
    });
    let mut text = schema_line(&target).unwrap_or_default();
    text.push_str(HEADER);
    crate::dsl::emit::yaml(&case, &mut text);
    let written = target.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&target, text));
    if let Err(e) = written {
        eprintln!("error: cannot write {}: {e}", target.display());
        return EXIT_USAGE;
    }
    outln!(
        "wrote {} ({} request(s), run {status}); `weft test {}` runs it",
        target.display(),
        cassette.interactions.len(),
        target.display()
    );
    EXIT_OK
}

/// The line that points an editor (yaml-language-server) at the test case schema, relative to the case file,
/// when a `schemas/test.schema.json` is found beside a folder above it (this repository's, or a project's own
/// `weft schema test` output).
fn schema_line(case: &Path) -> Option<String> {
    let dir = case.parent()?;
    dir.ancestors().enumerate().find_map(|(up, folder)| {
        folder
            .join("schemas/test.schema.json")
            .is_file()
            .then(|| format!("# yaml-language-server: $schema={}schemas/test.schema.json\n", "../".repeat(up)))
    })
}

/// `flows/app/NAME.yaml` → `flows/app/tests/NAME.<name>.yaml`, where `weft test` finds it for that flow.
fn case_path(flow: &Path, name: &str) -> PathBuf {
    let stem = flow.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    flow.parent().unwrap_or(Path::new("")).join("tests").join(format!("{stem}.{name}.yaml"))
}
