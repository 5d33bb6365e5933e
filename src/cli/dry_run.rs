//! `weft dry-run`: run a flow for one event with nothing sent — reads answered from a cassette when it has
//! them, writes printed instead of sent — and print each request (secrets never appear: auth is added only
//! when a request is really sent) and each step's mapped output.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::test::{connections, event_kind, flow_and_event};
use super::{Format, EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::diag::render;
use crate::engine::plan::{Action, Plan};
use crate::engine::run::{call_budget, Direct, EventInput, RunReport, RunStatus, Runner, StepReport, StepStatus};
use crate::transport::cassette::Cassette;
use crate::transport::dry_run::DryRun;

pub fn run(flow: &Path, event: &Path, cassette: Option<&Path>, format: Format) -> i32 {
    let (ctx, plan, body) = match flow_and_event(flow, event) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let cassette = match cassette.map(Cassette::load).transpose() {
        Ok(c) => c,
        Err(diags) => {
            super::eprint_diagnostics(&diags);
            return EXIT_USAGE;
        }
    };
    let conns = connections(&ctx);
    let stand_ins = stand_ins(&plan, &|at| format!("<{at}>"));
    let transport = DryRun::new(cassette, stand_ins.clone());
    let runner = Runner::new(plan.clone(), Arc::new(Direct(Arc::new(transport))), None, &conns);
    let input = EventInput {
        id: "dry-run".into(),
        kind: event_kind(&plan),
        body,
        received_at: chrono::Utc::now().to_rfc3339(),
    };
    let report = match super::runtime(1) {
        Ok(rt) => rt.block_on(runner.run(&input)),
        Err(code) => return code,
    };
    let budget = call_budget(std::slice::from_ref(&report), &conns);
    match format {
        Format::Json => {
            let mut doc = json_report(&report);
            // The steps whose `output` is a stand-in of the response schema, not an answer.
            doc["not_received"] =
                report.steps.iter().filter(|step| stood_in(step, &stand_ins)).map(|step| step.id.clone()).collect();
            doc["call_budget"] = budget
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "connection": b.connection,
                        "calls": b.calls,
                        "min_seconds": b.budget.as_ref().map(|x| x.duration.as_secs_f64()),
                        "first_throttled_call": b.budget.as_ref().and_then(|x| x.first_throttled_call),
                    })
                })
                .collect();
            outln!("{}", super::pretty(&doc))
        }
        _ => {
            out!("{}", human_report(&report, &conns, &stand_ins));
            outln!("call budget:");
            for b in &budget {
                outln!("  {b}");
            }
        }
    }
    if let Some(d) = &report.error {
        eprintln!("{}", render::human(d, render::Human::plain()));
    }
    if report.status == RunStatus::Failed {
        EXIT_INVALID
    } else {
        EXIT_OK
    }
}

/// The answer each operation of the flow gets when no cassette has one: a stand-in of its response schema,
/// each string `name(field)`.
pub(super) fn stand_ins(plan: &Plan, name: &dyn Fn(&str) -> String) -> HashMap<String, serde_json::Value> {
    plan.steps
        .iter()
        .filter_map(|step| match &step.action {
            Action::Call(call) => {
                let schema = call.op.response.as_ref()?;
                Some((call.op.display_name(), crate::catalog::schema::stand_in(&call.op.doc, schema, name)))
            }
            _ => None,
        })
        .collect()
}

/// Whether the step's output is the stand-in its request got, not an answer (recorded or real).
fn stood_in(step: &StepReport, stand_ins: &HashMap<String, serde_json::Value>) -> bool {
    step.requests
        .iter()
        .any(|r| stand_ins.get(&r.operation).is_some_and(|s| step.output.as_ref().is_some_and(|o| o == s)))
}

pub fn json_report(report: &RunReport) -> serde_json::Value {
    serde_json::json!({
        "flow": report.flow,
        "event_id": report.event_id,
        "status": report.status,
        "steps": report.steps,
        "error": report.error.as_ref().map(render::json),
    })
}

/// The headers the runtime would add to a request on this connection, with credentials shown redacted.
fn runtime_headers(conn: Option<&crate::engine::connection::ConnectionRuntime>) -> Vec<(String, String)> {
    use crate::catalog::manifest::AuthScheme;
    let Some(c) = conn else { return Vec::new() };
    let mut headers = c.headers.clone();
    let auth = match c.auth_scheme {
        AuthScheme::Bearer | AuthScheme::Oauth2 => Some(("Authorization".to_string(), "Bearer [redacted]".to_string())),
        AuthScheme::Basic => Some(("Authorization".to_string(), "Basic [redacted]".to_string())),
        AuthScheme::Header => {
            c.auth_header.clone().filter(|_| c.auth.api_key.is_some()).map(|h| (h, "[redacted]".to_string()))
        }
        AuthScheme::Url | AuthScheme::None => None,
    };
    headers.extend(auth);
    headers
}

fn human_report(
    report: &RunReport,
    conns: &indexmap::IndexMap<String, crate::engine::connection::ConnectionRuntime>,
    stand_ins: &HashMap<String, serde_json::Value>,
) -> String {
    let mut out = format!("dry run of {} (nothing is sent)\n", report.flow);
    for step in &report.steps {
        let status = match step.status {
            StepStatus::Skipped => "skipped (when: false)",
            StepStatus::Failed => "FAILED",
            other => other.as_str(),
        };
        out.push_str(&format!("\n── step {} — {status}\n", step.id));
        for r in &step.requests {
            let note = if r.is_write() { "   (write: not sent)" } else { "" };
            // A stand-in value in the path is shown as written, not percent-encoded (`/contacts/<contact.id>/tags`).
            let url = r.url().replace("%3C", "<").replace("%3E", ">");
            out.push_str(&format!("   {} {url}{note}\n", r.method));
            for (k, v) in runtime_headers(conns.get(&r.connection)).iter().chain(&r.headers) {
                out.push_str(&format!("   {k}: {v}\n"));
            }
            if let Some(body) = &r.body {
                for line in serde_json::to_string_pretty(body).unwrap_or_default().lines() {
                    out.push_str(&format!("   {line}\n"));
                }
            }
        }
        // A made-up answer is not printed as if it were data: the later steps show what it stands for.
        if stood_in(step, stand_ins) {
            out.push_str(
                "   → output: not received; later steps see a stand-in of the response (`<contact.id>`: that field)\n",
            );
        } else if let Some(output) = &step.output {
            out.push_str("   → output: ");
            out.push_str(&serde_json::to_string(output).unwrap_or_default());
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n{}\n",
        match report.status {
            RunStatus::Succeeded => "run would succeed",
            RunStatus::Failed => "run would FAIL",
        }
    ));
    out
}
