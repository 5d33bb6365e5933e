//! `weft test`: every flow test case under the given paths, with no network: the case's cassette answers
//! the flow's requests, and the requests, outputs and statuses are compared with the case's expectations.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::diag::{render, Diagnostic};
use crate::dsl::load;
use crate::engine::connection::ConnectionRuntime;
use crate::engine::plan::{compile_flow, Plan};
use crate::engine::run::{Direct, EventInput, RunReport, Runner};
use crate::testcase::{check, flow_path, shape_problems, TestCase};
use crate::transport::cassette::Cassette;
use crate::transport::replay::Replay;
use crate::validate::{find_project, ProjectContext};

/// The outcome of one case.
pub struct CaseResult {
    pub path: PathBuf,
    pub name: String,
    pub problems: Vec<String>,
    pub requests: usize,
    /// Calls per connection against its rate limit (`weft test` prints a warning when one would be throttled).
    pub budget: Vec<crate::engine::run::ConnectionBudget>,
}

pub fn run(paths: &[PathBuf]) -> i32 {
    let mut cases = Vec::new();
    for p in paths {
        if p.is_file() {
            cases.push(p.clone());
        } else if p.is_dir() {
            // A `tests/` folder given directly holds cases too (`weft test flows/wizehire/tests`).
            let is_tests = p.file_name().is_some_and(|n| n == "tests");
            collect(p, is_tests, &mut cases);
        } else {
            eprintln!("error: `{}` does not exist", p.display());
            return EXIT_USAGE;
        }
    }
    cases.sort();
    let runtime = match super::runtime(1) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let bar = progress(cases.len());
    let mut plans = Plans::default();
    let mut results = Vec::new();
    for case in &cases {
        if let Some(b) = &bar {
            b.set_message(case.display().to_string());
        }
        results.push(runtime.block_on(run_case(case, &mut plans)));
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let failed = results.iter().filter(|r| !r.problems.is_empty()).count();
    for r in &results {
        if r.problems.is_empty() {
            outln!(
                "PASS {}  {} ({} request{})",
                r.path.display(),
                r.name,
                r.requests,
                if r.requests == 1 { "" } else { "s" }
            );
        } else {
            outln!("FAIL {}  {}", r.path.display(), r.name);
            for p in &r.problems {
                outln!("  {}", p.replace('\n', "\n  "));
            }
        }
    }
    outln!("test cases: {} passed, {} failed", results.len() - failed, failed);
    if failed > 0 {
        EXIT_INVALID
    } else {
        EXIT_OK
    }
}

fn progress(len: usize) -> Option<indicatif::ProgressBar> {
    if len < 2 || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}") {
        bar.set_style(style);
    }
    Some(bar)
}

/// Test cases are the YAML files inside `tests/` folders.
fn collect(dir: &Path, in_tests: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "cassettes" && name != "events" {
                collect(&path, in_tests || name == "tests", out);
            }
        } else if in_tests && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            out.push(path);
        }
    }
}

/// A compiled flow with its project, or the rendered reasons it does not compile.
type Compiled = Result<(Arc<Plan>, Arc<ProjectContext>), String>;

/// Compiled flows and their projects, shared by the cases that test them.
#[derive(Default)]
struct Plans {
    plans: HashMap<PathBuf, Compiled>,
    projects: HashMap<Option<PathBuf>, Arc<ProjectContext>>,
}

impl Plans {
    fn get(&mut self, flow: &Path) -> Compiled {
        if let Some(p) = self.plans.get(flow) {
            return p.clone();
        }
        let project = find_project(flow);
        let ctx = self
            .projects
            .entry(project.clone())
            .or_insert_with(|| Arc::new(ProjectContext::load(project.as_deref())))
            .clone();
        let result = load::read(flow)
            .map_err(|d| vec![d])
            .and_then(|file| compile_flow(&file, &ctx))
            .map(|plan| (Arc::new(plan), ctx.clone()))
            .map_err(|diags| render_all(&diags));
        self.plans.insert(flow.to_path_buf(), result.clone());
        result
    }
}

fn render_all(diags: &[Diagnostic]) -> String {
    diags.iter().filter(|d| d.is_error()).map(render::one_line).collect::<Vec<_>>().join("\n")
}

async fn run_case(path: &Path, plans: &mut Plans) -> CaseResult {
    let mut result = CaseResult {
        path: path.to_path_buf(),
        name: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        problems: Vec::new(),
        requests: 0,
        budget: Vec::new(),
    };
    let case = match read_case(path) {
        Ok(c) => c,
        Err(e) => {
            result.problems.push(e);
            return result;
        }
    };
    if let Some(name) = &case.name {
        result.name = name.clone();
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let (plan, ctx) = match plans.get(&flow_path(path, &case)) {
        Ok(p) => p,
        Err(e) => {
            result.problems.push(format!("the flow does not compile:\n{e}"));
            return result;
        }
    };
    let event = match (&case.event, &case.event_file) {
        (Some(e), None) => e.clone(),
        (None, Some(f)) => match read_value(&dir.join(f)) {
            Ok(v) => v,
            Err(e) => {
                result.problems.push(e);
                return result;
            }
        },
        _ => {
            result.problems.push("give exactly one of `event` or `event_file`".into());
            return result;
        }
    };
    let cassette = match (&case.cassette, &case.cassette_file) {
        (Some(v), None) => Cassette::from_value(v.clone()).map_err(|e| format!("cassette: {e}")),
        (None, Some(f)) => Cassette::load(&dir.join(f)).map_err(|d| render_all(&d)),
        (None, None) => Ok(Cassette::default()),
        _ => Err("give at most one of `cassette` or `cassette_file`".into()),
    };
    let cassette = match cassette {
        Ok(c) => c,
        Err(e) => {
            result.problems.push(e);
            return result;
        }
    };
    let store: Arc<dyn crate::store::Store> = match crate::store::sqlite::SqliteStore::in_memory() {
        Ok(s) => Arc::new(s),
        Err(e) => {
            result.problems.push(format!("state store: {e}"));
            return result;
        }
    };
    let conns = connections(&ctx);
    let runner = Runner::new(plan.clone(), Arc::new(Direct(Arc::new(Replay::new(cassette)))), Some(store), &conns);
    let input = EventInput {
        id: case.event_id.clone().unwrap_or_else(|| "evt_test_0001".into()),
        kind: event_kind(&plan),
        body: event,
        received_at: "2026-01-01T00:00:00Z".into(),
    };
    let mut reports: Vec<RunReport> = Vec::new();
    for _ in 0..case.deliveries.unwrap_or(1).max(1) {
        reports.push(runner.run(&input).await);
    }
    result.requests = reports.iter().flat_map(|r| &r.steps).map(|s| s.requests.len()).sum();
    result.budget = crate::engine::run::call_budget(&reports, &conns);
    result.problems = check(&case.expect, &reports, &plan);
    if !result.problems.is_empty() {
        if let Some(d) = reports.last().and_then(|r| r.error.as_ref()) {
            result.problems.push(format!("the run failed with:\n{}", render::human(d, render::Human::plain())));
        }
    }
    result
}

/// The runtime view of every connection of a project.
pub fn connections(ctx: &ProjectContext) -> indexmap::IndexMap<String, ConnectionRuntime> {
    crate::engine::connection::from_project(ctx)
}

pub fn event_kind(plan: &Plan) -> String {
    match &plan.trigger {
        crate::engine::plan::TriggerPlan::Webhook { event, .. } => event.clone(),
        crate::engine::plan::TriggerPlan::Schedule { .. } => "schedule".into(),
        crate::engine::plan::TriggerPlan::Poll { .. } => "poll".into(),
        crate::engine::plan::TriggerPlan::Manual => "manual".into(),
    }
}

fn read_case(path: &Path) -> Result<TestCase, String> {
    let file = load::read(path).map_err(|d| render::one_line(&d))?;
    let root = load::parse(&file).map_err(|d| render_all(&d))?;
    // Located, with the fix: a case that cannot be read right must not run and pass. The schema check first
    // (a misspelt key, a missing `expect:`, a list where a mapping goes), so that serde below only ever sees a
    // well-shaped case; its own error is a fallback without a position.
    let located = |problems: &[Diagnostic]| {
        problems
            .iter()
            .map(|d| format!("{}\n  help: {}", render::one_line(d), d.help_text()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut sink = crate::diag::Sink::new(&file);
    let json = crate::dsl::shape::check(crate::dsl::shape::Format::TestCase, &root, &mut sink);
    if sink.diagnostics.iter().any(Diagnostic::is_error) {
        return Err(located(&sink.diagnostics));
    }
    let case: TestCase = serde_json::from_value(json).map_err(|e| format!("not a test case: {e}"))?;
    let problems = shape_problems(&case, &root, &file);
    if !problems.is_empty() {
        return Err(located(&problems));
    }
    Ok(case)
}

/// The compiled plan of the flow a one-event command runs (`run`, `record`, `dry-run`, `new-test`), or the exit
/// code after printing why it does not compile.
pub fn plan_for(flow: &Path, ctx: &ProjectContext) -> Result<Arc<Plan>, i32> {
    load::read(flow).map_err(|d| vec![d]).and_then(|f| compile_flow(&f, ctx)).map(Arc::new).map_err(|diags| {
        super::eprint_diagnostics(&diags);
        EXIT_INVALID
    })
}

/// The event file of a one-event command, or the exit code after saying why it cannot be read.
pub fn event_for(path: &Path) -> Result<serde_json::Value, i32> {
    read_value(path).map_err(|e| {
        eprintln!("error: event: {e}");
        EXIT_USAGE
    })
}

/// The project, the flow's plan and the event of a command that runs one event file (`dry-run`, `new-test`).
pub fn flow_and_event(flow: &Path, event: &Path) -> Result<(ProjectContext, Arc<Plan>, serde_json::Value), i32> {
    let ctx = ProjectContext::load(find_project(flow).as_deref());
    let plan = plan_for(flow, &ctx)?;
    Ok((ctx, plan, event_for(event)?))
}

/// An event file: JSON, or YAML.
pub fn read_value(path: &Path) -> Result<serde_json::Value, String> {
    let file = load::read(path).map_err(|d| render::one_line(&d))?;
    if let Ok(v) = serde_json::from_str(file.text()) {
        return Ok(v);
    }
    load::parse(&file).map(|n| n.to_json()).map_err(|d| render_all(&d))
}
