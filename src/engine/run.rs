//! Running a [`Plan`] for one event: steps in order, each rendered into [`RequestSpec`]s and sent through a
//! [`Sender`], outputs added to the context, failures reported at the step's YAML span.
//!
//! Idempotency lives here: a write step's effect key (flow, event id, step, item) is stored after success, and
//! a re-run of the same event reuses the stored output instead of writing again.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::pager::{scalar_text, Pager, Position};
use super::plan::{Action, CallPlan, Plan, StepPlan};
pub use super::sender::{Direct, SendError, Sender, Sent};
use crate::catalog::manifest::Pagination;
use crate::diag::{codes, Diagnostic};
use crate::dsl::flow::OnError;
use crate::mapping::{Context, Evaluator, MapError, Mapping};
use crate::store::{EffectKey, Store};
use crate::transport::{encode, RequestSpec};

/// The event a run starts from.
#[derive(Debug, Clone)]
pub struct EventInput {
    /// Unique per delivery (webhook id, or a hash of the body for manual runs): the idempotency scope.
    pub id: String,
    pub body: Value,
    /// `payment.captured`, `ContactCreate`, `manual`, …
    pub kind: String,
    pub received_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Ok,
    /// `when` was false.
    Skipped,
    /// The write already happened for this event: its stored output was reused.
    Reused,
    Failed,
}

impl StepStatus {
    /// The word test cases and reports use: `ok`, `skipped`, `reused`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Skipped => "skipped",
            StepStatus::Reused => "reused",
            StepStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Failed,
}

/// One step's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    pub id: String,
    pub status: StepStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Requests sent (or, in a dry run, that would be sent), without auth headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RequestSpec>,
    pub attempts: u32,
    pub duration_ms: u64,
    #[serde(skip)]
    pub error: Option<Diagnostic>,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub flow: String,
    pub event_id: String,
    pub status: RunStatus,
    pub steps: Vec<StepReport>,
    /// The failure that ended the run, at its YAML span.
    pub error: Option<Diagnostic>,
}

/// A finished run as the store's run history keeps it.
pub fn finished_run(trigger: &str, started_ms: i64, report: &RunReport) -> crate::store::FinishedRun {
    use crate::store::{FinishedRun, NewRun, RunStatus as S, StepRecord, StepStatus as T};
    let steps = report
        .steps
        .iter()
        .map(|step| StepRecord {
            step: step.id.clone(),
            item: None,
            status: match step.status {
                StepStatus::Ok => T::Ok,
                StepStatus::Skipped => T::Skipped,
                StepStatus::Reused => T::Reused,
                StepStatus::Failed => T::Failed,
            },
            duration_ms: step.duration_ms,
            http_status: None,
            error: step.error.as_ref().map(|d| d.message.clone()),
            attempts: step.attempts,
        })
        .collect();
    FinishedRun {
        run: NewRun {
            flow: report.flow.clone(),
            event_id: report.event_id.clone(),
            trigger: trigger.to_string(),
            started_at_ms: started_ms,
        },
        steps,
        status: match report.status {
            RunStatus::Succeeded => S::Succeeded,
            RunStatus::Failed => S::Failed,
        },
        error: report.error.as_ref().map(|d| d.message.clone()),
    }
}

/// One page of a poll: the items with their ids, and what comes next.
#[derive(Debug)]
pub struct PollPage {
    pub items: Vec<(String, Value)>,
    pub next: PollNext,
}

/// After a poll's page.
#[derive(Debug, PartialEq)]
pub enum PollNext {
    /// More pages: the next one starts here.
    More(Position),
    /// The list is done. `Some`: the next poll starts here (after the last item: a cursor); `None`: from the
    /// first page.
    Done(Option<Position>),
}

/// Runs one plan; shared by every event of a process.
pub struct Runner {
    pub plan: Arc<Plan>,
    sender: Arc<dyn Sender>,
    store: Option<Arc<dyn Store>>,
    /// `{name: {name, connector, location_id, base_url}}`: what flows may read of connections.
    connections: Arc<Value>,
    /// Connection name → base URL, for rendering requests.
    base_urls: std::collections::HashMap<String, String>,
}

impl Runner {
    pub fn new(
        plan: Arc<Plan>,
        sender: Arc<dyn Sender>,
        store: Option<Arc<dyn Store>>,
        connections: &indexmap::IndexMap<String, super::connection::ConnectionRuntime>,
    ) -> Runner {
        let view: serde_json::Map<String, Value> = connections
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    serde_json::json!({"name": name, "connector": c.connector, "location_id": c.location_id, "base_url": c.base_url}),
                )
            })
            .collect();
        let base_urls = connections.iter().map(|(n, c)| (n.clone(), c.base_url.clone())).collect();
        Runner { plan, sender, store, connections: Arc::new(Value::Object(view)), base_urls }
    }

    pub async fn run(&self, event: &EventInput) -> RunReport {
        let plan = &self.plan;
        let mut ctx = Context {
            trigger: Arc::new(event.body.clone()),
            event: Arc::new(serde_json::json!({"id": event.id, "type": event.kind, "received_at": event.received_at})),
            connections: self.connections.clone(),
            vars: Arc::new(Value::Object(Default::default())),
            ..Context::default()
        };
        let mut report = RunReport {
            flow: plan.name.clone(),
            event_id: event.id.clone(),
            status: RunStatus::Succeeded,
            steps: Vec::new(),
            error: None,
        };
        // vars first: they may read the trigger, the event and connections.
        if !plan.vars.is_empty() {
            let eval = Evaluator::new(&plan.templates, Arc::new(ctx.clone()));
            let mut vars = serde_json::Map::new();
            for (name, m) in &plan.vars {
                match eval.eval(m) {
                    Ok(v) => {
                        vars.insert(name.clone(), v);
                    }
                    Err(e) => {
                        report.status = RunStatus::Failed;
                        report.error = Some(e.into_diagnostic(&plan.file));
                        return report;
                    }
                }
            }
            ctx.vars = Arc::new(Value::Object(vars));
        }
        for step in &plan.steps {
            let started = Instant::now();
            let mut step_report = self.step(step, &ctx, event).await;
            step_report.duration_ms = started.elapsed().as_millis() as u64;
            if let Some(output) = &step_report.output {
                ctx.steps.insert(step.id.clone(), Arc::new(output.clone()));
            }
            let failed = step_report.status == StepStatus::Failed;
            let error = step_report.error.clone();
            report.steps.push(step_report);
            if failed {
                match step.on_error {
                    OnError::Fail => {
                        report.status = RunStatus::Failed;
                        report.error = error;
                        break;
                    }
                    OnError::Skip => break,
                    OnError::Continue => {
                        let detail = error.as_ref().map(|d| d.message.clone()).unwrap_or_default();
                        ctx.steps.insert(step.id.clone(), Arc::new(serde_json::json!({"error": {"message": detail}})));
                    }
                }
            }
        }
        report
    }

    async fn step(&self, step: &StepPlan, ctx: &Context, event: &EventInput) -> StepReport {
        let mut report = StepReport {
            id: step.id.clone(),
            status: StepStatus::Ok,
            output: None,
            requests: Vec::new(),
            attempts: 0,
            duration_ms: 0,
            error: None,
        };
        let file = &self.plan.file;
        let snapshot = Arc::new(ctx.clone());
        let eval = Evaluator::new(&self.plan.templates, snapshot.clone());
        // With `for_each`, `when` filters the elements (it may read `item`); without, it gates the step.
        if let (Some(when), None) = (&step.when, &step.for_each) {
            match eval.truthy(when) {
                Ok(true) => {}
                Ok(false) => {
                    report.status = StepStatus::Skipped;
                    return report;
                }
                Err(e) => return fail(report, e.into_diagnostic(file)),
            }
        }
        let Some(for_each) = &step.for_each else {
            return match self.item(step, &eval, event, None).await {
                Ok(done) => {
                    report.requests = done.requests;
                    report.attempts = done.attempts;
                    report.status = if done.reused { StepStatus::Reused } else { StepStatus::Ok };
                    report.output = Some(done.output);
                    report
                }
                Err(failure) => {
                    report.requests = failure.requests;
                    report.attempts = failure.attempts;
                    fail(report, failure.diagnostic)
                }
            };
        };
        let items = match for_each.eval(&snapshot) {
            Ok(Value::Array(items)) => items,
            Ok(other) => {
                let d = Diagnostic::error(
                    codes::RUN_FOR_EACH,
                    format!("`for_each` selected {} instead of a list", kind_of(&other)),
                )
                .label(for_each.span, "not a list")
                .help(codes::RUN_FOR_EACH.help)
                .in_file(file);
                return fail(report, d);
            }
            Err(e) => return fail(report, e.into_diagnostic(file)),
        };
        // Elements run in chunks of `concurrency`; outputs keep the elements' order.
        let mut outputs = Vec::with_capacity(items.len());
        let mut all_reused = true;
        let mut ran = 0;
        for (chunk_index, chunk) in items.chunks(step.concurrency).enumerate() {
            let futures = chunk.iter().enumerate().map(|(i, item)| {
                let index = chunk_index * step.concurrency + i;
                let mut item_ctx = ctx.clone();
                item_ctx.item = Some((Arc::new(item.clone()), index));
                async move {
                    let eval = Evaluator::new(&self.plan.templates, Arc::new(item_ctx));
                    if let Some(when) = &step.when {
                        match eval.truthy(when) {
                            Ok(true) => {}
                            Ok(false) => return Ok(None),
                            Err(e) => {
                                return Err(ItemFailure {
                                    diagnostic: e.into_diagnostic(&self.plan.file),
                                    requests: Vec::new(),
                                    attempts: 0,
                                })
                            }
                        }
                    }
                    self.item(step, &eval, event, Some(index as u64)).await.map(Some)
                }
            });
            for result in futures_util::future::join_all(futures).await {
                match result {
                    // An element `when` filtered out: no request, no output.
                    Ok(None) => {}
                    Ok(Some(done)) => {
                        ran += 1;
                        report.requests.extend(done.requests);
                        report.attempts += done.attempts;
                        all_reused &= done.reused;
                        outputs.push(done.output);
                    }
                    Err(failure) => {
                        report.requests.extend(failure.requests);
                        report.attempts += failure.attempts;
                        report.output = Some(Value::Array(outputs));
                        return fail(report, failure.diagnostic);
                    }
                }
            }
        }
        report.status = match (ran, all_reused) {
            (0, _) if step.when.is_some() && !items.is_empty() => StepStatus::Skipped,
            (0, _) => StepStatus::Ok,
            (_, true) => StepStatus::Reused,
            _ => StepStatus::Ok,
        };
        report.output = Some(Value::Array(outputs));
        report
    }

    /// One element of a step (or the whole step without `for_each`).
    async fn item(
        &self,
        step: &StepPlan,
        eval: &Evaluator<'_>,
        event: &EventInput,
        item: Option<u64>,
    ) -> Result<ItemDone, ItemFailure> {
        let file = &self.plan.file;
        let map_err =
            |e: MapError| ItemFailure { diagnostic: e.into_diagnostic(file), requests: Vec::new(), attempts: 0 };
        let call = match &step.action {
            Action::Set(m) => {
                return eval
                    .eval(m)
                    .map(|output| ItemDone { output, requests: Vec::new(), attempts: 0, reused: false })
                    .map_err(map_err)
            }
            Action::Call(call) => call,
        };
        let req = self.render(call, eval).map_err(|d| ItemFailure {
            diagnostic: d.in_file(file),
            requests: Vec::new(),
            attempts: 0,
        })?;
        if let Some((rule, max_pages)) = &call.pagination {
            return self.pages(step, call, req, rule, *max_pages).await;
        }
        let key = EffectKey { flow: self.plan.name.clone(), event_id: event.id.clone(), step: step.id.clone(), item };
        if req.is_write() {
            if let Some(store) = &self.store {
                if let Ok(Some(output)) = store.effect(&key) {
                    return Ok(ItemDone { output, requests: Vec::new(), attempts: 0, reused: true });
                }
            }
        }
        let idempotency_key = idempotency_key(&key);
        match self.sender.send(&req, Some(&idempotency_key)).await {
            Ok(sent) => {
                let output = sent.response.body;
                if req.is_write() {
                    if let Some(store) = &self.store {
                        // The write happened; failing to remember it must not turn success into failure, but it
                        // is worth a loud line: a re-delivery could write again.
                        if let Err(e) = store.record_effect(&key, &output) {
                            tracing::warn!("could not record the effect of step `{}`: {e}", step.id);
                        }
                    }
                }
                Ok(ItemDone { output, requests: vec![req], attempts: sent.attempts, reused: false })
            }
            Err(e) => Err(self.send_failure(step, call, e, vec![req])),
        }
    }

    /// A failed call as a diagnostic at the step's `call:`, with the upstream status and error body.
    fn send_failure(&self, step: &StepPlan, call: &CallPlan, e: SendError, requests: Vec<RequestSpec>) -> ItemFailure {
        let mut message = format!("step `{}`: {}", step.id, e.message);
        if let Some(body) = &e.body {
            let text = body.to_string();
            let shown: String = text.chars().take(600).collect();
            message.push_str(&format!("\nupstream said: {shown}"));
        }
        let label = match e.status {
            Some(s) => format!("{} answered {s}", call.op.display_name()),
            None => "no response".to_string(),
        };
        let d = Diagnostic::error(e.code, message).label(call.span, label).help(e.code.help).in_file(&self.plan.file);
        ItemFailure { diagnostic: d, requests, attempts: e.attempts }
    }

    /// `paginate:`: follow the connector's rule, collecting every page's items into `{items, pages}`.
    async fn pages(
        &self,
        step: &StepPlan,
        call: &CallPlan,
        first: RequestSpec,
        rule: &Pagination,
        max_pages: u32,
    ) -> Result<ItemDone, ItemFailure> {
        let mut req = first;
        let mut pager = Pager::start(rule, &mut req, None);
        let (mut items, mut requests, mut attempts) = (Vec::new(), Vec::new(), 0);
        for _ in 0..max_pages {
            let sent = match self.sender.send(&req, None).await {
                Ok(sent) => sent,
                Err(e) => {
                    requests.push(req);
                    return Err(self.send_failure(step, call, e, requests));
                }
            };
            attempts += sent.attempts;
            requests.push(req.clone());
            let page = pager.items(&sent.response.body);
            let count = page.len();
            items.extend(page);
            if !pager.advance(&mut req, &sent.response.body, count) {
                break;
            }
        }
        let pages = requests.len();
        Ok(ItemDone { output: serde_json::json!({"items": items, "pages": pages}), requests, attempts, reused: false })
    }

    /// One page of a poll trigger's list, starting at `resume` (a saved position) or at the first page: each item
    /// with its id, and where the list continues. Without a pagination rule for the operation, every poll is one
    /// request. A poll trigger's values may read `vars` and `connections`.
    pub async fn poll_page(&self, resume: Option<&Position>) -> Result<PollPage, Diagnostic> {
        let file = &self.plan.file;
        let Some(poll) = &self.plan.poll else { return Ok(PollPage { items: Vec::new(), next: PollNext::Done(None) }) };
        let ctx = Context { connections: self.connections.clone(), ..Context::default() };
        let eval = Evaluator::new(&self.plan.templates, Arc::new(ctx));
        let mut req = self.render(&poll.call, &eval).map_err(|d| d.in_file(file))?;
        let mut pager = poll.call.pagination.as_ref().map(|(rule, _)| Pager::start(rule, &mut req, resume));
        let sent = self.sender.send(&req, None).await.map_err(|e| {
            Diagnostic::error(e.code, format!("poll of `{}`: {}", self.plan.name, e.message))
                .label(poll.call.span, "here")
                .in_file(file)
        })?;
        let body = sent.response.body;
        // `items` may select one list (`$.items`) or the elements themselves (`$.items[*]`).
        let found: Vec<Value> = poll
            .items
            .query(&body)
            .all()
            .into_iter()
            .flat_map(|v| v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]))
            .collect();
        let count = found.len();
        let items = found
            .into_iter()
            .filter_map(|item| {
                let id = poll.id.query(&item).first().and_then(scalar_text)?;
                Some((id, item))
            })
            .collect();
        let next = match pager.as_mut() {
            Some(pager) => {
                let at = req.clone();
                match pager.advance(&mut req, &body, count) {
                    true => PollNext::More(pager.position_of(&req)),
                    false => PollNext::Done(pager.tail(&at, &body)),
                }
            }
            None => PollNext::Done(None),
        };
        Ok(PollPage { items, next })
    }

    /// Evaluate a call's mappings into a template-free request.
    fn render(&self, call: &CallPlan, eval: &Evaluator<'_>) -> Result<RequestSpec, Diagnostic> {
        let to_diag = |e: MapError| Diagnostic::error(e.code, e.message).label(e.span, "here").help(e.help);
        let mut path = call.op.path.clone();
        for (name, m) in &call.path {
            let value = eval.eval(m).map_err(to_diag)?;
            let text = scalar_text(&value).ok_or_else(|| {
                Diagnostic::error(codes::RUN_REQUEST, format!("path parameter `{name}` mapped to {}", kind_of(&value)))
                    .label(mapping_span(m).unwrap_or(call.span), "needs a string or number")
                    .help(codes::RUN_REQUEST.help)
            })?;
            path = path.replace(&format!("{{{name}}}"), &encode(&text));
        }
        // Query parameters and headers are keys of a mapping: `{ from, optional: true }` leaves one out.
        let mut query = Vec::new();
        for (name, m) in &call.query {
            match eval.eval_field(m).map_err(to_diag)? {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    query.extend(items.iter().filter_map(scalar_text).map(|t| (name.clone(), t)))
                }
                Some(other) => query.push((name.clone(), scalar_text(&other).unwrap_or_else(|| other.to_string()))),
            }
        }
        let mut headers = Vec::new();
        for (name, m) in &call.headers {
            if let Some(value) = eval.eval_field(m).map_err(to_diag)? {
                headers.push((name.clone(), scalar_text(&value).unwrap_or_else(|| value.to_string())));
            }
        }
        let body = call.body.as_ref().map(|m| eval.eval(m)).transpose().map_err(to_diag)?;
        Ok(RequestSpec {
            connection: call.connection.clone(),
            operation: call.op.display_name(),
            method: call.op.method.clone(),
            base_url: self.base_urls.get(&call.connection).cloned().unwrap_or_default(),
            path,
            query,
            headers,
            body,
        })
    }
}

struct ItemDone {
    output: Value,
    requests: Vec<RequestSpec>,
    attempts: u32,
    reused: bool,
}

struct ItemFailure {
    diagnostic: Diagnostic,
    requests: Vec<RequestSpec>,
    attempts: u32,
}

fn fail(mut report: StepReport, d: Diagnostic) -> StepReport {
    report.status = StepStatus::Failed;
    report.error = Some(d);
    report
}

/// An event id derived from content, for events whose sender gives none: `PREFIX-<FNV-1a of the bytes>`.
/// FNV-1a is stable across runs and Rust versions, unlike `DefaultHasher`.
pub fn content_id(prefix: &str, bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{prefix}-{hash:016x}")
}

/// `weft-<flow>-<event>-<step>[-<item>]`, restricted to what Razorpay accepts (`[A-Za-z0-9_-]`, ≥ 10 chars).
pub fn idempotency_key(key: &EffectKey) -> String {
    let raw = match key.item {
        Some(i) => format!("weft-{}-{}-{}-{i}", key.flow, key.event_id, key.step),
        None => format!("weft-{}-{}-{}", key.flow, key.event_id, key.step),
    };
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn mapping_span(m: &Mapping) -> Option<crate::source::Span> {
    match m {
        Mapping::Path(p) => Some(p.span),
        Mapping::Template { span, .. } => Some(*span),
        _ => None,
    }
}

/// Calls per connection in a run, and what they cost against the connection's rate limit on a simulated
/// clock: how long they take at least, and which call would get a 429 if sent at full speed.
pub fn call_budget(
    reports: &[RunReport],
    connections: &indexmap::IndexMap<String, super::connection::ConnectionRuntime>,
) -> Vec<ConnectionBudget> {
    let mut counts: indexmap::IndexMap<String, usize> = indexmap::IndexMap::new();
    for r in reports.iter().flat_map(|r| &r.steps).flat_map(|s| &s.requests) {
        *counts.entry(r.connection.clone()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(connection, calls)| {
            let limit = connections.get(&connection).and_then(|c| c.rate_limit.clone());
            let budget = limit.as_ref().map(|l| super::ratelimit::simulate(l, calls));
            ConnectionBudget { connection, calls, limit, budget }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    pub connection: String,
    pub calls: usize,
    pub limit: Option<crate::catalog::manifest::RateLimit>,
    pub budget: Option<super::ratelimit::Budget>,
}

impl std::fmt::Display for ConnectionBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.limit, &self.budget) {
            (Some(l), Some(b)) => write!(
                f,
                "{}: {} call(s) against {} per {} s: {b}",
                self.connection, self.calls, l.requests, l.per_seconds
            ),
            _ => write!(f, "{}: {} call(s), no declared rate limit", self.connection, self.calls),
        }
    }
}
