//! `weft map`: run a flow's `set` step, or a bare mapping file, over NDJSON events — one output line per
//! input line. The pure mapping path of the engine, and the harness of the mapping benchmark.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::diag::{codes, render, Diagnostic};
use crate::dsl::load;
use crate::engine::plan::{compile_flow, Action};
use crate::mapping::{compile, Context, Evaluator, Mapping, Templates};
use crate::validate::{find_project, ProjectContext};

/// What `weft map` evaluates per event.
struct Job {
    vars: Vec<(String, Mapping)>,
    mapping: Mapping,
    templates: Templates,
    file: crate::source::SourceFile,
}

pub fn run(target: &Path, input: Option<&Path>, step: Option<&str>) -> i32 {
    let job = match load_job(target, step) {
        Ok(j) => j,
        Err(diags) => {
            super::eprint_diagnostics(&diags);
            return EXIT_INVALID;
        }
    };
    let reader: Box<dyn Read> = match input {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p == Path::new("-") => Box::new(std::io::stdin().lock()),
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("error: cannot read `{}`: {e}", p.display());
                return EXIT_USAGE;
            }
        },
    };
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line = String::new();
    let (mut number, mut failed) = (0usize, 0usize);
    let empty = Arc::new(serde_json::Value::Object(Default::default()));
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: reading input: {e}");
                return EXIT_USAGE;
            }
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let event: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                failed += 1;
                eprintln!("input line {number}: not JSON: {e}");
                continue;
            }
        };
        let mut ctx =
            Context { trigger: Arc::new(event), event: empty.clone(), vars: empty.clone(), ..Context::default() };
        match evaluate(&job, &mut ctx) {
            Ok(value) => {
                // A closed stdout (`| head`) ends the run quietly.
                if serde_json::to_writer(&mut out, &value).is_err() || out.write_all(b"\n").is_err() {
                    return EXIT_OK;
                }
            }
            Err(d) => {
                failed += 1;
                eprintln!("input line {number}: {}", render::one_line(&d));
            }
        }
    }
    let _ = out.flush();
    if failed > 0 {
        eprintln!("{failed} of {number} events failed");
        EXIT_INVALID
    } else {
        EXIT_OK
    }
}

fn evaluate(job: &Job, ctx: &mut Context) -> Result<serde_json::Value, Diagnostic> {
    if !job.vars.is_empty() {
        let eval = Evaluator::new(&job.templates, Arc::new(ctx.clone()));
        let mut vars = serde_json::Map::new();
        for (name, m) in &job.vars {
            vars.insert(name.clone(), eval.eval(m).map_err(|e| e.into_diagnostic(&job.file))?);
        }
        ctx.vars = Arc::new(serde_json::Value::Object(vars));
    }
    let eval = Evaluator::new(&job.templates, Arc::new(std::mem::take(ctx)));
    eval.eval(&job.mapping).map_err(|e| e.into_diagnostic(&job.file))
}

/// A flow (its `set` step, the first unless `--step` names one) or a file that is one mapping.
fn load_job(target: &Path, step: Option<&str>) -> Result<Job, Vec<Diagnostic>> {
    let file = load::read(target).map_err(|d| vec![d])?;
    let root = load::parse(&file)?;
    if root.get("flow").is_none() {
        let mut templates = Templates::new();
        let mapping = compile(&root, &mut templates).map_err(|d| vec![d.in_file(&file)])?;
        return Ok(Job { vars: Vec::new(), mapping, templates, file });
    }
    let ctx = ProjectContext::load(find_project(target).as_deref());
    let plan = compile_flow(&file, &ctx)?;
    let wanted = plan.steps.iter().position(|s| matches!(s.action, Action::Set(_)) && step.is_none_or(|id| s.id == id));
    let Some(index) = wanted else {
        let msg = match step {
            Some(id) => format!("flow `{}` has no `set` step `{id}`", plan.name),
            None => format!("flow `{}` has no `set` step to run", plan.name),
        };
        return Err(vec![Diagnostic::error(codes::FLOW_STEP_KIND, msg).in_file(&file)]);
    };
    let mut plan = plan;
    let step = plan.steps.swap_remove(index);
    let Action::Set(mapping) = step.action else { unreachable!("selected a set step") };
    Ok(Job { vars: plan.vars, mapping, templates: plan.templates, file })
}
