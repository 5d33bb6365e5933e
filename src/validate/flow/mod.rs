//! Meaning checks of one flow against its project and the catalog (DESIGN.md "Validation", layer 2).
//!
//! The shape is already valid when this runs, so the typed [`Flow`] drives the walk and the YAML tree
//! supplies spans. Every check pushes diagnostics and goes on: one run reports every problem in the file.
//! Requests against operation schemas are checked in [`request`]; paths, templates and what they read in
//! [`refs`].

mod refs;
mod request;

use std::str::FromStr;

use minijinja::Environment;

use super::project::{ConnectionInfo, ProjectContext};
use crate::catalog::{Connector, EventDef, Lookup, Operation, ParamIn};
use crate::diag::{codes, suggest, Sink};
use crate::dsl::flow::{Flow, Step};
use crate::dsl::yaml::Node;
use crate::source::Span;

pub fn check(root: &Node, flow: &Flow, ctx: &ProjectContext, sink: &mut Sink) {
    let env = template_env();
    let mut checker = Checker { root, flow, ctx, sink, env, event: None };
    checker.trigger();
    checker.vars();
    checker.steps();
}

/// The template environment validation compiles with: the engine's own.
pub fn template_env() -> Environment<'static> {
    crate::mapping::environment()
}

/// Where a value sits, which decides what it may read.
#[derive(Clone, Copy)]
struct Scope<'s> {
    /// Index of the current step, or `None` in `vars` and the trigger.
    step: Option<usize>,
    /// Inside a `for_each` step: `item` and `index` exist.
    in_loop: bool,
    /// In `vars`: other vars and steps are not available yet.
    in_vars: bool,
    _p: std::marker::PhantomData<&'s ()>,
}

/// Where a value sits, which decides whether `{ from, optional: true }` may leave it out.
#[derive(Clone, Copy)]
enum Slot<'s> {
    /// A key of a mapping (body fields, query parameters, headers, `set:` keys) or an item of a list.
    Field,
    /// Leaving these out has no meaning: each names itself in the error.
    PathParam(&'s str),
    When,
    Var(&'s str),
    Body,
    Set,
}

struct Checker<'a> {
    root: &'a Node,
    flow: &'a Flow,
    ctx: &'a ProjectContext,
    sink: &'a mut Sink,
    env: Environment<'static>,
    /// The webhook event when the trigger is one, for checking `$.trigger…` paths.
    event: Option<&'a EventDef>,
}

impl<'a> Checker<'a> {
    fn node(&self, pointer: &str) -> &'a Node {
        self.root.at_pointer(pointer).0
    }

    fn key_span(&self, pointer: &str) -> Span {
        match self.root.at_pointer(pointer) {
            (_, Some(entry)) => entry.key_span,
            (node, None) => node.span,
        }
    }

    fn connection(&mut self, name: &str, span: Span) -> Option<(&'a ConnectionInfo, &'a Connector)> {
        let ctx = self.ctx;
        let Some(info) = ctx.connections.get(name) else {
            let known: Vec<&str> = ctx.connections.keys().map(String::as_str).collect();
            let where_ = if ctx.file.is_some() { "weft.yaml" } else { "the built-in connectors (no weft.yaml found)" };
            self.sink
                .error(
                    codes::FLOW_CALL_UNKNOWN_CONNECTION,
                    span,
                    format!("connection `{name}` is not declared in {where_}"),
                    "unknown connection",
                )
                .help = Some(format!("{}; declare it under `connections:` in weft.yaml", suggest(name, known)));
            return None;
        };
        // An unknown connector is reported on weft.yaml itself.
        let connector = ctx.catalog.connector(&info.connector)?;
        Some((info, connector))
    }

    // ---- trigger ----------------------------------------------------------------------------------

    fn trigger(&mut self) {
        let t = &self.flow.trigger;
        // Count the kinds written, not the ones that hold a value: `manual:` with nothing after it is a kind.
        let written = self.node("/trigger").as_map().map_or(0, |entries| {
            entries.iter().filter(|e| matches!(e.key.as_str(), "webhook" | "schedule" | "poll" | "manual")).count()
        });
        let count = written;
        if count != 1 {
            let span = self.key_span("/trigger");
            let msg = if count == 0 { "the trigger has no kind" } else { "the trigger has more than one kind" };
            self.sink.error(codes::FLOW_TRIGGER_KIND, span, msg, "trigger here").help =
                Some("give exactly one of `webhook: { connection, event }`, `schedule: { cron }`, `poll: { call, every, items, id }` or `manual: {}`".into());
        }
        if let Some(w) = &t.webhook {
            let span = self.node("/trigger/webhook/connection").span;
            if let Some((info, connector)) = self.connection(&w.connection, span) {
                let event_span = self.node("/trigger/webhook/event").span;
                if connector.events.is_empty() {
                    self.sink
                        .error(
                            codes::FLOW_TRIGGER_NO_WEBHOOKS,
                            span,
                            format!("connector `{}` sends no webhooks", connector.name),
                            "no webhooks",
                        )
                        .help = Some("use a `poll` trigger on one of its list operations, or a `schedule`".into());
                } else if let Some(event) = connector.events.get(&w.event) {
                    self.event = Some(event);
                    self.scope_check(
                        info,
                        connector,
                        &w.connection,
                        &event.scopes,
                        event_span,
                        &format!("event `{}`", w.event),
                    );
                } else {
                    let known: Vec<&str> = connector.events.keys().map(String::as_str).collect();
                    self.sink
                        .error(
                            codes::FLOW_TRIGGER_UNKNOWN_EVENT,
                            event_span,
                            format!("`{}` sends no event `{}`", connector.name, w.event),
                            "unknown event",
                        )
                        .help = Some(format!(
                        "{}; `weft catalog {}` lists its events",
                        suggest(&w.event, known),
                        connector.name
                    ));
                }
            }
        }
        if let Some(s) = &t.schedule {
            let span = self.node("/trigger/schedule/cron").span;
            if let Err(e) = croner::Cron::from_str(&s.cron) {
                self.sink
                    .error(
                        codes::FLOW_TRIGGER_BAD_CRON,
                        span,
                        format!("`{}` is not a valid cron expression: {e}", s.cron),
                        "invalid cron",
                    )
                    .help = Some(cron_help(&s.cron));
            }
            if let Some(tz) = &s.timezone {
                if crate::dsl::zone::Zone::parse(Some(tz)).is_none() {
                    let span = self.node("/trigger/schedule/timezone").span;
                    let names = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name());
                    let close = crate::diag::did_you_mean(tz, names);
                    let help = match close.as_slice() {
                        [] => "use an IANA time zone such as `Asia/Kolkata` or `America/New_York`, `UTC`, or a fixed \
                               offset such as `+05:30`"
                            .to_string(),
                        _ => crate::diag::suggest(tz, close.iter().copied()),
                    };
                    self.sink
                        .error(
                            codes::SCHEMA_VALUE,
                            span,
                            format!("`{tz}` is not a time zone weft knows"),
                            "unknown zone",
                        )
                        .help = Some(help);
                }
            }
        }
        if let Some(p) = &t.poll {
            let call_span = self.node("/trigger/poll/call").span;
            let op = self.resolve_call(&p.call, call_span);
            let scope = Scope { step: None, in_loop: false, in_vars: true, _p: Default::default() };
            if let Some(op) = op {
                if let Some(q) = &p.query {
                    self.params(op, ParamIn::Query, q.keys(), "/trigger/poll/query", "query parameter");
                }
                self.check_path_params(
                    op,
                    p.path.as_ref().map(|m| m.keys().cloned().collect()).unwrap_or_default(),
                    "/trigger/poll/path",
                    call_span,
                );
            }
            for key in ["query", "path"] {
                let node = self.node(&format!("/trigger/poll/{key}"));
                if node.span != self.node("/trigger/poll").span {
                    self.request_map(node, scope, key == "path");
                }
            }
            for key in ["items", "id"] {
                let node = self.node(&format!("/trigger/poll/{key}"));
                // `items` reads the list response and `id` one item: not the run context.
                self.path_only(node, None, &format!("`poll.{key}`"));
            }
        }
    }

    // ---- vars -------------------------------------------------------------------------------------

    fn vars(&mut self) {
        let scope = Scope { step: None, in_loop: false, in_vars: true, _p: Default::default() };
        for name in self.flow.vars.keys() {
            let node = self.node(&format!("/vars/{}", escape(name)));
            self.value(node, scope, Slot::Var(name));
        }
    }

    // ---- steps ------------------------------------------------------------------------------------

    fn steps(&mut self) {
        let mut seen: Vec<(&str, Span)> = Vec::new();
        for (i, step) in self.flow.steps.iter().enumerate() {
            let base = format!("/steps/{i}");
            let id_span = self.node(&format!("{base}/id")).span;
            if let Some((_, first)) = seen.iter().find(|(id, _)| *id == step.id) {
                let first = *first;
                self.sink
                    .error(
                        codes::FLOW_STEP_DUPLICATE_ID,
                        id_span,
                        format!("step id `{}` is used twice", step.id),
                        "used again here",
                    )
                    .labels
                    .push(crate::diag::Label { span: first, text: "first used here".into() });
            } else {
                seen.push((&step.id, id_span));
            }
            self.step(i, step, &base);
        }
    }

    fn step(&mut self, i: usize, step: &'a Step, base: &str) {
        let id_span = self.node(&format!("{base}/id")).span;
        match (&step.call, &step.set) {
            (Some(_), Some(_)) => {
                let span = self.key_span(&format!("{base}/set"));
                self.sink
                    .error(
                        codes::FLOW_STEP_KIND,
                        span,
                        format!("step `{}` has both `call` and `set`", step.id),
                        "second kind",
                    )
                    .help = Some("split it into two steps: one that calls, one that maps".into());
            }
            (None, None) => {
                self.sink
                    .error(
                        codes::FLOW_STEP_KIND,
                        id_span,
                        format!("step `{}` neither calls an operation nor sets a value", step.id),
                        "does nothing",
                    )
                    .help = Some("add `call: connection.api.operation` or `set: {...}`".into());
            }
            (None, Some(_)) => {
                for key in ["path", "query", "headers", "body"] {
                    if self.root.at_pointer(&format!("{base}/{key}")).1.is_some_and(|e| e.key == key) {
                        let span = self.key_span(&format!("{base}/{key}"));
                        self.sink
                            .error(
                                codes::FLOW_STEP_MISPLACED_KEY,
                                span,
                                format!("`{key}` on a step without `call`"),
                                "no request to put it in",
                            )
                            .help =
                            Some(format!("`{key}` shapes a request; remove it or add `call:` to step `{}`", step.id));
                    }
                }
            }
            (Some(call), None) => {
                let call_span = self.node(&format!("{base}/call")).span;
                if let Some(op) = self.resolve_call(call, call_span) {
                    self.request(step, op, base, call_span);
                }
            }
        }
        if step.concurrency.is_some() && step.for_each.is_none() {
            let span = self.key_span(&format!("{base}/concurrency"));
            self.sink
                .error(
                    codes::FLOW_STEP_MISPLACED_KEY,
                    span,
                    "`concurrency` without `for_each`",
                    "nothing to run concurrently",
                )
                .help = Some("add `for_each: $.path.to.list` or remove `concurrency`".into());
        }

        let outer = Scope { step: Some(i), in_loop: false, in_vars: false, _p: Default::default() };
        let inner = Scope { in_loop: step.for_each.is_some(), ..outer };
        if step.for_each.is_some() {
            let node = self.node(&format!("{base}/for_each"));
            self.path_only(node, Some(outer), "`for_each`");
        }
        for key in ["path", "query", "headers", "body", "when", "set"] {
            if let (node, Some(entry)) = self.root.at_pointer(&format!("{base}/{key}")) {
                if entry.key == key {
                    match key {
                        "path" | "query" | "headers" => self.request_map(node, inner, key == "path"),
                        "body" => self.value(node, inner, Slot::Body),
                        "when" => self.value(node, inner, Slot::When),
                        _ => self.value(node, inner, Slot::Set),
                    }
                }
            }
        }
    }

    /// `path:`, `query:` or `headers:`: a mapping of names to values. A query parameter or header can be
    /// left out of the request; a path parameter cannot be left out of the URL.
    fn request_map(&mut self, node: &Node, scope: Scope, path_params: bool) {
        let Some(entries) = node.as_map() else {
            // Not a mapping: the shape check has reported it.
            return;
        };
        for e in entries {
            let slot = if path_params { Slot::PathParam(&e.key) } else { Slot::Field };
            self.value(&e.value, scope, slot);
        }
    }

    /// `connection.api.op` → the operation, or a diagnostic.
    fn resolve_call(&mut self, call: &str, span: Span) -> Option<&'a Operation> {
        let mut parts = call.splitn(3, '.');
        let (Some(conn), Some(api), Some(op)) = (parts.next(), parts.next(), parts.next()) else {
            self.sink
                .error(
                    codes::FLOW_CALL_SYNTAX,
                    span,
                    format!("`{call}` is not `connection.api.operation`"),
                    "expected three dotted parts",
                )
                .help = Some("e.g. `ghl.contacts.get-contact`; `weft catalog` lists operations".into());
            return None;
        };
        let (info, connector) = self.connection(conn, span)?;
        let catalog = &self.ctx.catalog;
        match catalog.lookup(connector, api, op) {
            Lookup::Found(found) => {
                let scopes = found.scopes.clone();
                self.scope_check(info, connector, conn, &scopes, span, &format!("`{} {}`", found.method, found.path));
                Some(found)
            }
            Lookup::UnknownApi { known } => {
                self.sink
                    .error(
                        codes::FLOW_CALL_UNKNOWN_API,
                        span,
                        format!("connector `{}` has no API `{api}`", connector.name),
                        "unknown API",
                    )
                    .help = Some(suggest(api, known));
                None
            }
            Lookup::UnknownOperation { known } => {
                // Also look across the connector's other APIs: the operation may just be filed elsewhere.
                let elsewhere: Vec<String> = connector
                    .operations()
                    .filter(|o| o.id == op)
                    .map(|o| format!("`{conn}.{}.{}`", o.api, o.id))
                    .collect();
                let api_ops = connector.apis.get(api).map(Vec::as_slice).unwrap_or_default();
                let help = if !elsewhere.is_empty() {
                    format!("it exists as {}", elsewhere.join(", "))
                } else if let Some((method, path)) = op.split_once(':') {
                    // A route: suggest the routes with the closest path.
                    let routes: Vec<String> = api_ops.iter().map(|o| o.route()).collect();
                    let same_path: Vec<String> =
                        api_ops.iter().filter(|o| o.path == path).map(|o| format!("`{}`", o.route())).collect();
                    if !same_path.is_empty() {
                        format!("`{path}` has {}, not {method}", same_path.join(", "))
                    } else {
                        suggest(op, routes.iter().map(String::as_str))
                    }
                } else {
                    // Offer a search only when it finds something.
                    let word = op.split('-').rfind(|w| w.len() > 3).unwrap_or(op).to_lowercase();
                    let hits = connector
                        .operations()
                        .filter(|o| o.id.to_lowercase().contains(&word) || o.summary.to_lowercase().contains(&word))
                        .count();
                    let search = if hits > 0 {
                        format!("; `weft catalog {} --search {word}` lists {hits} related", connector.name)
                    } else {
                        format!("; `weft catalog {}` lists them all", connector.name)
                    };
                    format!("{}{search}", suggest(op, known))
                };
                self.sink
                    .error(
                        codes::FLOW_CALL_UNKNOWN_OPERATION,
                        span,
                        format!("`{}.{api}` has no operation `{op}`", connector.name),
                        "unknown operation",
                    )
                    .help = Some(help);
                None
            }
            Lookup::Ambiguous(ops) => {
                let routes: Vec<String> = ops.iter().map(|o| format!("`{conn}.{api}.{}`", o.route())).collect();
                self.sink
                    .error(
                        codes::FLOW_CALL_AMBIGUOUS,
                        span,
                        format!("`{op}` names {} operations in `{}.{api}`", ops.len(), connector.name),
                        "ambiguous",
                    )
                    .help = Some(format!("address one by method and path: {}", routes.join(", ")));
                None
            }
        }
    }

    fn scope_check(
        &mut self,
        info: &ConnectionInfo,
        connector: &Connector,
        conn: &str,
        needed: &[String],
        span: Span,
        what: &str,
    ) {
        let Some(declared) = &info.scopes else { return };
        if needed.is_empty() && !connector.known_scopes.is_empty() {
            self.sink
                .warning(
                    codes::FLOW_SCOPE_UNKNOWN,
                    span,
                    format!("weft cannot tell which scope {what} needs"),
                    "scope unknown",
                )
                .help = Some(format!(
                "{}'s scope table does not list it; check the API docs and that `connections.{conn}.scopes` has it",
                connector.name
            ));
            return;
        }
        if needed.is_empty() || needed.iter().any(|s| declared.contains(s)) {
            return;
        }
        let list: Vec<String> = needed.iter().map(|s| format!("`{s}`")).collect();
        self.sink
            .error(
                codes::FLOW_SCOPE_MISSING,
                span,
                format!("connection `{conn}` lacks a scope for {what}"),
                format!("needs {}", list.join(" or ")),
            )
            .help =
            Some(format!("add {} to `connections.{conn}.scopes` in weft.yaml (and grant it to the app)", list[0]));
    }
}

fn article(what: &str) -> String {
    match what.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {what}"),
        _ => format!("a {what}"),
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let shown: Vec<String> = items.iter().take(15).map(|i| format!("`{i}`")).collect();
    let more = if items.len() > 15 { format!(" and {} more", items.len() - 15) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// Which cron field is out of range, and what the fields are.
fn cron_help(expr: &str) -> String {
    const FIELDS: [(&str, u32, u32); 5] =
        [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6)];
    let parts: Vec<&str> = expr.split_whitespace().collect();
    let general = "five fields `minute hour day-of-month month day-of-week` (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6 or SUN-SAT), e.g. `0 2 * * *` for 02:00 daily";
    if parts.len() != 5 && parts.len() != 6 && !expr.trim_start().starts_with('@') {
        return format!("it has {} fields; write {general}", parts.len());
    }
    let offset = parts.len() - 5;
    for (i, (name, lo, hi)) in FIELDS.iter().enumerate() {
        let Some(field) = parts.get(i + offset) else { break };
        let numbers = field.split([',', '-', '/']).filter_map(|n| n.parse::<u32>().ok());
        if let Some(bad) = numbers.into_iter().find(|n| n < lo || n > hi) {
            return format!("the {name} field is `{field}`: {bad} is outside {lo}-{hi}; write {general}");
        }
    }
    format!("write {general}")
}
