//! A validated flow compiled into a [`Plan`]: every JSONPath parsed and every template compiled once, each
//! call bound to its catalog operation. The engine accepts nothing else.

use std::sync::Arc;

use crate::catalog::manifest::Pagination;
use crate::catalog::Operation;
use crate::diag::{codes, Diagnostic};
use crate::dsl::flow::{Flow, OnError};
use crate::dsl::load;
use crate::dsl::yaml::Node;
use crate::mapping::{compile, compile_path, Fallback, Mapping, PathRef, Templates};
use crate::source::{SourceFile, Span};
use crate::validate::{validate_flow, ProjectContext};

/// A flow ready to run.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub description: String,
    pub file: SourceFile,
    pub trigger: TriggerPlan,
    /// With a poll trigger: the list call, and where the items and their ids are.
    pub poll: Option<PollPlan>,
    pub vars: Vec<(String, Mapping)>,
    pub steps: Vec<StepPlan>,
    pub templates: Templates,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerPlan {
    Webhook { connection: String, event: String },
    Schedule { cron: String, timezone: Option<String> },
    Poll { call: String, every: String },
    Manual,
}

impl TriggerPlan {
    /// How run history names the trigger: `webhook razorpay payment.captured`.
    pub fn describe(&self) -> String {
        match self {
            TriggerPlan::Webhook { connection, event } => format!("webhook {connection} {event}"),
            TriggerPlan::Schedule { cron, .. } => format!("schedule {cron}"),
            TriggerPlan::Poll { call, every } => format!("poll {call} every {every}"),
            TriggerPlan::Manual => "manual".into(),
        }
    }
}

/// A poll trigger compiled: the call that lists, the path to the items in its response and the path to
/// an item's id (the deduplication key).
#[derive(Debug)]
pub struct PollPlan {
    pub call: CallPlan,
    /// Which list the poll reads: a digest of its `call`, `path` and `query` as written. A saved position
    /// belongs to one list; when the flow's list changes, the next scan starts from the first page.
    pub list: String,
    pub every: std::time::Duration,
    /// Over the list response (not the run context).
    pub items: serde_json_path::JsonPath,
    /// Over one item.
    pub id: serde_json_path::JsonPath,
}

#[derive(Debug)]
pub struct StepPlan {
    pub id: String,
    /// The step's `id:` value, where run-time problems of the step as a whole point.
    pub span: Span,
    pub when: Option<Mapping>,
    pub for_each: Option<PathRef>,
    pub concurrency: usize,
    pub on_error: OnError,
    pub action: Action,
}

#[derive(Debug)]
pub enum Action {
    Set(Mapping),
    Call(Box<CallPlan>),
}

#[derive(Debug)]
pub struct CallPlan {
    pub connection: String,
    pub op: Arc<Operation>,
    pub path: Vec<(String, Mapping)>,
    pub query: Vec<(String, Mapping)>,
    pub headers: Vec<(String, Mapping)>,
    pub body: Option<Mapping>,
    /// With `paginate:`: the connector's rule and the page cap.
    pub pagination: Option<(Pagination, u32)>,
    /// The `call:` value.
    pub span: Span,
}

/// Validate and compile a flow. Any validation error stops compilation: only valid flows run.
pub fn compile_flow(file: &SourceFile, ctx: &ProjectContext) -> Result<Plan, Vec<Diagnostic>> {
    let diagnostics = validate_flow(file, ctx);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(diagnostics);
    }
    let root = load::parse(file)?;
    let flow: Flow = serde_json::from_value(root.to_json()).map_err(|e| {
        vec![Diagnostic::error(codes::SCHEMA_INVALID, format!("the flow does not match the format: {e}")).in_file(file)]
    })?;
    let fail = |d: Diagnostic| vec![d.in_file(file)];
    let mut templates = Templates::new();

    let trigger = match (&flow.trigger.webhook, &flow.trigger.schedule, &flow.trigger.poll) {
        (Some(w), _, _) => TriggerPlan::Webhook { connection: w.connection.clone(), event: w.event.clone() },
        (_, Some(s), _) => TriggerPlan::Schedule { cron: s.cron.clone(), timezone: s.timezone.clone() },
        (_, _, Some(p)) => TriggerPlan::Poll { call: p.call.clone(), every: p.every.clone() },
        _ => TriggerPlan::Manual,
    };

    let poll = match (&flow.trigger.poll, root.get("trigger").and_then(|t| t.get("poll"))) {
        (Some(p), Some(node)) => {
            let call_span = node.get("call").map_or(node.span, |n| n.span);
            let mut call = compile_call(&p.call, call_span, node, ctx, &mut templates).map_err(fail)?;
            // A poll pages through the whole list by the connector's rule, one page at a time.
            call.pagination = ctx
                .catalog
                .connector(&call.op.connector)
                .and_then(|c| c.pagination_for(&call.op))
                .cloned()
                .map(|rule| (rule, u32::MAX));
            let path_of = |key: &str| -> Result<serde_json_path::JsonPath, Diagnostic> {
                let n = node.get(key).unwrap_or(node);
                serde_json_path::JsonPath::parse(n.as_str().unwrap_or("$")).map_err(|e| {
                    Diagnostic::error(codes::FLOW_PATH_SYNTAX, format!("invalid JSONPath: {}", e.message()))
                        .label(n.span, "here")
                })
            };
            let written = serde_json::json!({"call": p.call, "path": p.path, "query": p.query}).to_string();
            let list = hex::encode(&ring::digest::digest(&ring::digest::SHA256, written.as_bytes()).as_ref()[..8]);
            Some(PollPlan {
                call,
                list,
                every: parse_every(&p.every),
                items: path_of("items").map_err(fail)?,
                id: path_of("id").map_err(fail)?,
            })
        }
        _ => None,
    };

    let mut vars = Vec::new();
    if let Some(entries) = root.get("vars").and_then(Node::as_map) {
        for e in entries {
            vars.push((e.key.clone(), compile(&e.value, &mut templates).map_err(fail)?));
        }
    }

    let step_nodes = root.get("steps").and_then(Node::as_seq).unwrap_or_default();
    let mut steps = Vec::with_capacity(flow.steps.len());
    for (step, node) in flow.steps.iter().zip(step_nodes) {
        let span = node.get("id").map_or(node.span, |n| n.span);
        let when = node.get("when").map(|n| compile(n, &mut templates)).transpose().map_err(fail)?;
        let for_each = match node.get("for_each") {
            Some(n) => Some(compile_path(n.as_str().unwrap_or_default(), n.span, Fallback::None).map_err(fail)?),
            None => None,
        };
        let action = match (&step.call, node.get("set")) {
            (_, Some(set)) => Action::Set(compile(set, &mut templates).map_err(fail)?),
            (Some(call), None) => {
                let call_span = node.get("call").map_or(span, |n| n.span);
                let mut plan = compile_call(call, call_span, node, ctx, &mut templates).map_err(fail)?;
                if let Some(p) = &step.paginate {
                    let rule =
                        ctx.catalog.connector(&plan.op.connector).and_then(|c| c.pagination_for(&plan.op)).cloned();
                    plan.pagination = rule.map(|r| (r, p.max_pages.unwrap_or(50)));
                }
                Action::Call(Box::new(plan))
            }
            (None, None) => unreachable_step(&step.id, span).map_err(fail)?,
        };
        steps.push(StepPlan {
            id: step.id.clone(),
            span,
            when,
            for_each,
            concurrency: step.concurrency.unwrap_or(1).clamp(1, 16) as usize,
            on_error: step.on_error.unwrap_or_default(),
            action,
        });
    }
    Ok(Plan {
        name: flow.flow,
        description: flow.description,
        file: file.clone(),
        trigger,
        poll,
        vars,
        steps,
        templates,
    })
}

/// `30s`, `5m`, `1h` (validated by the schema's pattern); anything else polls every minute.
fn parse_every(every: &str) -> std::time::Duration {
    let (number, unit) = every.split_at(every.len().saturating_sub(1));
    let n: u64 = number.parse().unwrap_or(60);
    std::time::Duration::from_secs(match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => 60,
    })
}

/// Validation rejects a step with neither `call` nor `set`; kept as an error, not a panic.
fn unreachable_step(id: &str, span: Span) -> Result<Action, Diagnostic> {
    Err(Diagnostic::error(codes::FLOW_STEP_KIND, format!("step `{id}` neither calls nor sets")).label(span, "here"))
}

fn compile_call(
    call: &str,
    span: Span,
    node: &Node,
    ctx: &ProjectContext,
    templates: &mut Templates,
) -> Result<CallPlan, Diagnostic> {
    let not_found = || {
        Diagnostic::error(codes::FLOW_CALL_UNKNOWN_OPERATION, format!("`{call}` does not resolve")).label(span, "here")
    };
    let mut parts = call.splitn(3, '.');
    let (Some(conn), Some(api), Some(op)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(not_found());
    };
    let info = ctx.connections.get(conn).ok_or_else(not_found)?;
    let connector = ctx.catalog.connector(&info.connector).ok_or_else(not_found)?;
    let operation = match ctx.catalog.lookup(connector, api, op) {
        crate::catalog::Lookup::Found(o) => Arc::new(o.clone()),
        _ => return Err(not_found()),
    };
    let fields = |key: &str, templates: &mut Templates| -> Result<Vec<(String, Mapping)>, Diagnostic> {
        match node.get(key).and_then(Node::as_map) {
            Some(entries) => entries.iter().map(|e| Ok((e.key.clone(), compile(&e.value, templates)?))).collect(),
            None => Ok(Vec::new()),
        }
    };
    Ok(CallPlan {
        connection: conn.to_string(),
        path: fields("path", templates)?,
        query: fields("query", templates)?,
        headers: fields("headers", templates)?,
        body: node.get("body").map(|b| compile(b, templates)).transpose()?,
        pagination: None,
        op: operation,
        span,
    })
}
