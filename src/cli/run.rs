//! `weft run` and `weft record`: one event through a flow against the real APIs (auth, rate limits,
//! retries, idempotency in the state store), optionally recording a scrubbed cassette.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dry_run::json_report;
use super::test::{connections, event_for, event_kind, plan_for};
use super::{Format, EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::diag::render;
use crate::engine::call::Caller;
use crate::engine::retry::RetryPolicy;
use crate::engine::run::{EventInput, RunStatus, Runner, StepStatus};
use crate::store::sqlite::SqliteStore;
use crate::store::Store;
use crate::transport::live::Live;
use crate::transport::record::Record;
use crate::transport::Transport;
use crate::validate::{find_project, ProjectContext};

pub struct RunArgs<'a> {
    pub flow: &'a Path,
    pub event: &'a Path,
    pub event_id: Option<&'a str>,
    pub state: Option<&'a Path>,
    pub record: Option<&'a Path>,
    pub format: Format,
}

pub fn run(args: RunArgs<'_>) -> i32 {
    let project = find_project(args.flow);
    let ctx = ProjectContext::load(project.as_deref());
    let plan = match plan_for(args.flow, &ctx) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let body = if args.event == Path::new("-") {
        let mut text = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
            eprintln!("error: reading the event from stdin: {e}");
            return EXIT_USAGE;
        }
        match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: the event on stdin is not JSON: {e}");
                return EXIT_USAGE;
            }
        }
    } else {
        match event_for(args.event) {
            Ok(body) => body,
            Err(code) => return code,
        }
    };
    // The state database lives beside weft.yaml unless the project or the command says otherwise.
    let base = project.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let state = args
        .state
        .map(Path::to_path_buf)
        .unwrap_or_else(|| base.join(ctx.project.state.as_deref().unwrap_or(".weft/state.db")));
    let store: Arc<dyn Store> = match SqliteStore::open(&state) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let live: Arc<dyn Transport> = match Live::new() {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("error: cannot start the HTTP client: {e}");
            return EXIT_USAGE;
        }
    };
    let recorder = args.record.map(|_| Arc::new(Record::new(live.clone())));
    let transport: Arc<dyn Transport> = match &recorder {
        Some(r) => r.clone(),
        None => live,
    };
    let caller = Arc::new(Caller::new(transport, connections(&ctx), Some(store.clone()), RetryPolicy::default()));
    let runner = Runner::new(plan.clone(), caller.clone(), Some(store.clone()), &connections(&ctx));
    let input = EventInput {
        id: args.event_id.map(str::to_string).unwrap_or_else(|| {
            // The same body is the same event, so a re-run of it is idempotent.
            crate::engine::run::content_id("manual", body.to_string().as_bytes())
        }),
        kind: event_kind(&plan),
        body,
        received_at: chrono::Utc::now().to_rfc3339(),
    };
    let started = chrono::Utc::now().timestamp_millis();
    let report = match super::runtime(2) {
        Ok(rt) => rt.block_on(runner.run(&input)),
        Err(code) => return code,
    };
    // Best effort: a full disk must not hide the run's own result.
    let _ = store.record_run(&crate::engine::run::finished_run(&plan.trigger.describe(), started, &report));
    if let (Some(path), Some(rec)) = (args.record, &recorder) {
        match rec.save(path, &caller.redactor().secrets()) {
            Ok(()) => eprintln!("recorded {} to {}", rec.cassette(&[]).interactions.len(), path.display()),
            Err(e) => eprintln!("error: cannot write the cassette `{}`: {e}", path.display()),
        }
    }
    let redactor = caller.redactor();
    match args.format {
        Format::Json => outln!("{}", redactor.redact(&super::pretty(&json_report(&report)))),
        _ => {
            for step in &report.steps {
                let status = match step.status {
                    StepStatus::Reused => "reused (already done for this event)",
                    StepStatus::Failed => "FAILED",
                    other => other.as_str(),
                };
                outln!(
                    "step {:<16} {status:<10} {} request(s), {} attempt(s), {} ms",
                    step.id,
                    step.requests.len(),
                    step.attempts,
                    step.duration_ms
                );
            }
        }
    }
    if let Some(d) = &report.error {
        eprintln!("{}", redactor.redact(&render::human(d, render::Human::plain())));
    }
    match report.status {
        RunStatus::Succeeded => EXIT_OK,
        RunStatus::Failed => EXIT_INVALID,
    }
}
