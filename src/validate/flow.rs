//! Meaning checks of one flow against its project and the catalog (DESIGN.md "Validation", layer 2).
//!
//! The shape is already valid when this runs, so the typed [`Flow`] drives the walk and the YAML tree
//! supplies spans. Every check pushes diagnostics and goes on: one run reports every problem in the file.

use std::str::FromStr;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use super::project::{ConnectionInfo, ProjectContext};
use super::secrets::looks_like_secret;
use crate::catalog::schema::{deref, literal_mismatch, Shape};
use crate::catalog::{Connector, EventDef, Lookup, Operation, ParamIn};
use crate::diag::{codes, suggest, Sink};
use crate::dsl::flow::{Flow, Step};
use crate::dsl::value::{classify, static_segments, Segment, ValueKind, ROOTS};
use crate::dsl::yaml::{Kind, Node};
use crate::source::Span;

/// Names minijinja resolves as functions, not context variables.
const TEMPLATE_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug", "now"];

/// Fields of a connection a flow may read (never credentials).
const CONNECTION_FIELDS: &[&str] = &["name", "connector", "location_id", "base_url"];

pub fn check(root: &Node, flow: &Flow, ctx: &ProjectContext, sink: &mut Sink) {
    let env = template_env();
    let mut checker = Checker {
        root,
        flow,
        ctx,
        sink,
        env,
        event: None,
    };
    checker.trigger();
    checker.vars();
    checker.steps();
}

/// The template environment validation compiles with: the same syntax and strictness the engine uses.
pub fn template_env() -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .variable_delimiters("${{", "}}")
        .block_delimiters("${%", "%}")
        .comment_delimiters("${#", "#}")
        .build()
        .expect("static delimiters are valid");
    env.set_syntax(syntax);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
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

    fn connection(
        &mut self,
        name: &str,
        span: Span,
    ) -> Option<(&'a ConnectionInfo, &'a Connector)> {
        let ctx = self.ctx;
        let Some(info) = ctx.connections.get(name) else {
            let known: Vec<&str> = ctx.connections.keys().map(String::as_str).collect();
            let where_ = if ctx.file.is_some() {
                "weft.yaml"
            } else {
                "the built-in connectors (no weft.yaml found)"
            };
            self.sink
                .error(
                    codes::FLOW_CALL_UNKNOWN_CONNECTION,
                    span,
                    format!("connection `{name}` is not declared in {where_}"),
                    "unknown connection",
                )
                .help = Some(format!(
                "{}; declare it under `connections:` in weft.yaml",
                suggest(name, known)
            ));
            return None;
        };
        // An unknown connector is reported on weft.yaml itself.
        let connector = ctx.catalog.connector(&info.connector)?;
        Some((info, connector))
    }

    // ---- trigger ----------------------------------------------------------------------------------

    fn trigger(&mut self) {
        let t = &self.flow.trigger;
        let kinds = [
            t.webhook.is_some(),
            t.schedule.is_some(),
            t.poll.is_some(),
            t.manual.is_some(),
        ];
        let count = kinds.iter().filter(|k| **k).count();
        if count != 1 {
            let span = self.key_span("/trigger");
            let msg = if count == 0 {
                "the trigger has no kind"
            } else {
                "the trigger has more than one kind"
            };
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
                        .help = Some(
                        "use a `poll` trigger on one of its list operations, or a `schedule`"
                            .into(),
                    );
                } else if let Some(event) = connector.events.get(&w.event) {
                    self.event = Some(event);
                    self.scope_check(
                        info,
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
                self.sink.error(codes::FLOW_TRIGGER_BAD_CRON, span, format!("`{}` is not a valid cron expression: {e}", s.cron), "invalid cron").help =
                    Some("write five fields `minute hour day-of-month month day-of-week`, e.g. `0 2 * * *` for 02:00 daily".into());
            }
            if let Some(tz) = &s.timezone {
                if !valid_timezone(tz) {
                    let span = self.node("/trigger/schedule/timezone").span;
                    self.sink
                        .error(
                            codes::SCHEMA_VALUE,
                            span,
                            format!("`{tz}` is not a supported time zone"),
                            "unsupported",
                        )
                        .help = Some("use `UTC` or a fixed offset such as `+05:30`".into());
                }
            }
        }
        if let Some(p) = &t.poll {
            let call_span = self.node("/trigger/poll/call").span;
            let op = self.resolve_call(&p.call, call_span);
            let scope = Scope {
                step: None,
                in_loop: false,
                in_vars: true,
                _p: Default::default(),
            };
            if let Some(op) = op {
                if let Some(q) = &p.query {
                    self.params(
                        op,
                        ParamIn::Query,
                        q.keys(),
                        "/trigger/poll/query",
                        "query parameter",
                    );
                }
                self.check_path_params(
                    op,
                    p.path
                        .as_ref()
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default(),
                    "/trigger/poll/path",
                    call_span,
                );
            }
            for key in ["query", "path"] {
                let node = self.node(&format!("/trigger/poll/{key}"));
                if node.span != self.node("/trigger/poll").span {
                    self.value(node, scope);
                }
            }
            for key in ["items", "id"] {
                let node = self.node(&format!("/trigger/poll/{key}"));
                self.path_only(node, scope, &format!("`poll.{key}`"));
            }
        }
    }

    // ---- vars -------------------------------------------------------------------------------------

    fn vars(&mut self) {
        let scope = Scope {
            step: None,
            in_loop: false,
            in_vars: true,
            _p: Default::default(),
        };
        for name in self.flow.vars.keys() {
            let node = self.node(&format!("/vars/{}", escape(name)));
            self.value(node, scope);
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
                    .push(crate::diag::Label {
                        span: first,
                        text: "first used here".into(),
                    });
            } else {
                seen.push((&step.id, id_span));
            }
            self.step(i, step, &base);
        }
    }

    fn step(&mut self, i: usize, step: &'a Step, base: &str) {
        let id_span = self
            .key_span(base)
            .join(self.node(&format!("{base}/id")).span);
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
                        format!(
                            "step `{}` neither calls an operation nor sets a value",
                            step.id
                        ),
                        "does nothing",
                    )
                    .help = Some("add `call: connection.api.operation` or `set: {...}`".into());
            }
            (None, Some(_)) => {
                for key in ["path", "query", "headers", "body"] {
                    if self
                        .root
                        .at_pointer(&format!("{base}/{key}"))
                        .1
                        .is_some_and(|e| e.key == key)
                    {
                        let span = self.key_span(&format!("{base}/{key}"));
                        self.sink
                            .error(
                                codes::FLOW_STEP_MISPLACED_KEY,
                                span,
                                format!("`{key}` on a step without `call`"),
                                "no request to put it in",
                            )
                            .help = Some(format!(
                            "`{key}` shapes a request; remove it or add `call:` to step `{}`",
                            step.id
                        ));
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

        let outer = Scope {
            step: Some(i),
            in_loop: false,
            in_vars: false,
            _p: Default::default(),
        };
        let inner = Scope {
            in_loop: step.for_each.is_some(),
            ..outer
        };
        if step.for_each.is_some() {
            let node = self.node(&format!("{base}/for_each"));
            self.path_only(node, outer, "`for_each`");
        }
        for key in ["path", "query", "headers", "body", "when", "set"] {
            if let (node, Some(entry)) = self.root.at_pointer(&format!("{base}/{key}")) {
                if entry.key == key {
                    self.value(node, inner);
                }
            }
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
                .help =
                Some("e.g. `ghl.contacts.get-contact`; `weft catalog` lists operations".into());
            return None;
        };
        let (info, connector) = self.connection(conn, span)?;
        let catalog = &self.ctx.catalog;
        match catalog.lookup(connector, api, op) {
            Lookup::Found(found) => {
                let scopes = found.scopes.clone();
                self.scope_check(
                    info,
                    conn,
                    &scopes,
                    span,
                    &format!("`{} {}`", found.method, found.path),
                );
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
                let help = if elsewhere.is_empty() {
                    format!(
                        "{}; `weft catalog {} --search {}` lists operations",
                        suggest(op, known),
                        connector.name,
                        op.split('-').next_back().unwrap_or(op)
                    )
                } else {
                    format!("it exists as {}", elsewhere.join(", "))
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
                let routes: Vec<String> = ops
                    .iter()
                    .map(|o| format!("`{conn}.{api}.{}`", o.route()))
                    .collect();
                self.sink
                    .error(
                        codes::FLOW_CALL_AMBIGUOUS,
                        span,
                        format!(
                            "`{op}` names {} operations in `{}.{api}`",
                            ops.len(),
                            connector.name
                        ),
                        "ambiguous",
                    )
                    .help = Some(format!(
                    "address one by method and path: {}",
                    routes.join(", ")
                ));
                None
            }
        }
    }

    fn scope_check(
        &mut self,
        info: &ConnectionInfo,
        conn: &str,
        needed: &[String],
        span: Span,
        what: &str,
    ) {
        let Some(declared) = &info.scopes else { return };
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
            .help = Some(format!(
            "add {} to `connections.{conn}.scopes` in weft.yaml (and grant it to the app)",
            list[0]
        ));
    }

    // ---- requests ---------------------------------------------------------------------------------

    fn request(&mut self, step: &Step, op: &'a Operation, base: &str, call_span: Span) {
        let bound: Vec<String> = step
            .path
            .as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        self.check_path_params(op, bound, &format!("{base}/path"), call_span);
        if let Some(q) = &step.query {
            self.params(
                op,
                ParamIn::Query,
                q.keys(),
                &format!("{base}/query"),
                "query parameter",
            );
        }
        let missing_query: Vec<&str> = op
            .params
            .iter()
            .filter(|p| p.location == ParamIn::Query && p.required)
            .filter(|p| !step.query.as_ref().is_some_and(|q| q.contains_key(&p.name)))
            .map(|p| p.name.as_str())
            .collect();
        for name in missing_query {
            let span = if step.query.is_some() {
                self.key_span(&format!("{base}/query"))
            } else {
                call_span
            };
            self.sink
                .error(
                    codes::FLOW_REQUEST_MISSING_FIELD,
                    span,
                    format!("`{}` requires the query parameter `{name}`", op.qualified()),
                    format!("`{name}` missing"),
                )
                .help = Some(format!("add `query: {{ {name}: ... }}`"));
        }
        match (&op.body, &step.body) {
            (None, Some(_)) => {
                let span = self.key_span(&format!("{base}/body"));
                self.sink
                    .error(codes::FLOW_REQUEST_NO_BODY, span, format!("`{} {}` takes no request body", op.method, op.path), "body not accepted")
                    .help = Some("remove `body:`; send the data as `query:` parameters if the operation lists them".into());
            }
            (Some(_), None) if op.body_required => {
                self.sink
                    .error(
                        codes::FLOW_REQUEST_MISSING_FIELD,
                        call_span,
                        format!("`{}` requires a request body", op.qualified()),
                        "body missing",
                    )
                    .help = Some(missing_body_help(op));
            }
            (Some(schema), Some(_)) => {
                let node = self.node(&format!("{base}/body"));
                self.body(op, schema, node, "body", 0);
            }
            _ => {}
        }
    }

    fn check_path_params(
        &mut self,
        op: &Operation,
        bound: Vec<String>,
        pointer: &str,
        call_span: Span,
    ) {
        let wanted: Vec<&str> = op.path_params().collect();
        for name in &bound {
            if !wanted.contains(&name.as_str()) {
                let span = self.key_span(&format!("{pointer}/{}", escape(name)));
                let help = if wanted.is_empty() {
                    format!("`{}` has no path parameters; remove `path:`", op.path)
                } else {
                    format!(
                        "{} (the path is `{}`)",
                        suggest(name, wanted.iter().copied()),
                        op.path
                    )
                };
                self.sink
                    .error(
                        codes::FLOW_REQUEST_UNKNOWN_PATH_PARAM,
                        span,
                        format!("`{}` has no path parameter `{name}`", op.path),
                        "not in the path",
                    )
                    .help = Some(help);
            }
        }
        for name in wanted {
            if !bound.iter().any(|b| b == name) {
                self.sink
                    .error(
                        codes::FLOW_REQUEST_MISSING_PATH_PARAM,
                        call_span,
                        format!("path parameter `{name}` of `{}` is not bound", op.path),
                        format!("`{{{name}}}` needs a value"),
                    )
                    .help = Some(format!(
                    "add `path: {{ {name}: $.trigger... }}` to the step"
                ));
            }
        }
    }

    /// Query (or header) keys against the operation's declared parameters, plus literal types.
    fn params<'k>(
        &mut self,
        op: &Operation,
        location: ParamIn,
        keys: impl Iterator<Item = &'k String>,
        pointer: &str,
        what: &str,
    ) {
        let known: Vec<&str> = op
            .params
            .iter()
            .filter(|p| p.location == location)
            .map(|p| p.name.as_str())
            .collect();
        for key in keys {
            let p = format!("{pointer}/{}", escape(key));
            match op.param(location, key) {
                None => {
                    let span = self.key_span(&p);
                    let help = if known.is_empty() {
                        format!("`{} {}` takes no {what}s", op.method, op.path)
                    } else {
                        suggest(key, known.iter().copied())
                    };
                    self.sink
                        .error(
                            codes::FLOW_REQUEST_UNKNOWN_FIELD,
                            span,
                            format!("`{}` has no {what} `{key}`", op.qualified()),
                            "unknown",
                        )
                        .help = Some(help);
                }
                Some(param) => {
                    let node = self.node(&p);
                    self.literal_type(&op.doc, &param.schema, node, key);
                }
            }
        }
    }

    /// A body mapping against its schema: unknown keys, missing required keys, literal types, nested.
    fn body(&mut self, op: &Operation, schema: &Value, node: &Node, label: &str, depth: usize) {
        if depth > 8 {
            return;
        }
        let doc = &op.doc;
        match classify(node) {
            ValueKind::Map => {
                let Kind::Map(entries) = &node.kind else {
                    return;
                };
                let shape = Shape::of(doc, schema);
                if !shape.types.is_empty() && !shape.types.iter().any(|t| t == "object") {
                    self.sink.error(
                        codes::FLOW_REQUEST_TYPE,
                        node.span,
                        format!(
                            "`{label}` must be {}, found a mapping",
                            article(&shape.types.join(" or "))
                        ),
                        "wrong type",
                    );
                    return;
                }
                if !shape.open {
                    for e in entries {
                        if !shape.properties.contains_key(&e.key) {
                            let known: Vec<&str> =
                                shape.properties.keys().map(String::as_str).collect();
                            self.sink
                                .error(
                                    codes::FLOW_REQUEST_UNKNOWN_FIELD,
                                    e.key_span,
                                    format!(
                                        "`{}` does not accept the field `{label}.{}`",
                                        op.qualified(),
                                        e.key
                                    ),
                                    "unknown field",
                                )
                                .help = Some(
                                match crate::diag::did_you_mean(&e.key, known.iter().copied())
                                    .first()
                                {
                                    Some(close) => format!(
                                        "did you mean `{close}`? The operation's fields are {}",
                                        list(&known)
                                    ),
                                    None => format!("the operation's fields are {}", list(&known)),
                                },
                            );
                        }
                    }
                }
                for req in &shape.required {
                    if !entries.iter().any(|e| &e.key == req) {
                        self.sink
                            .error(
                                codes::FLOW_REQUEST_MISSING_FIELD,
                                Span::at(node.span.start),
                                format!("`{label}` is missing the required field `{req}`"),
                                format!("`{req}` missing"),
                            )
                            .help = Some(format!(
                            "add `{req}:` to `{label}` ({})",
                            describe_field(doc, shape.properties.get(req).copied())
                        ));
                    }
                }
                for e in entries {
                    if let Some(field) = shape.properties.get(&e.key) {
                        self.body(
                            op,
                            field,
                            &e.value,
                            &format!("{label}.{}", e.key),
                            depth + 1,
                        );
                    }
                }
            }
            ValueKind::List => {
                let schema = deref(doc, schema);
                let shape = Shape::of(doc, schema);
                if !shape.types.is_empty() && !shape.types.iter().any(|t| t == "array") {
                    self.sink.error(
                        codes::FLOW_REQUEST_TYPE,
                        node.span,
                        format!(
                            "`{label}` must be {}, found a list",
                            article(&shape.types.join(" or "))
                        ),
                        "wrong type",
                    );
                    return;
                }
                if let (Some(items), Kind::Seq(elems)) = (schema.get("items"), &node.kind) {
                    for (i, el) in elems.iter().enumerate() {
                        self.body(op, items, el, &format!("{label}[{i}]"), depth + 1);
                    }
                }
            }
            ValueKind::Literal(lit) => self.literal_type(doc, schema, lit, label),
            _ => {}
        }
    }

    fn literal_type(&mut self, doc: &Value, schema: &Value, node: &Node, label: &str) {
        if !matches!(classify(node), ValueKind::Literal(_)) {
            return;
        }
        let lit = match classify(node) {
            ValueKind::Literal(inner) => inner.to_json(),
            _ => return,
        };
        if lit.is_null() || schema.is_null() {
            return;
        }
        if let Some(expected) = literal_mismatch(doc, schema, &lit) {
            let found = node.type_name();
            let help = match (&lit, expected.as_str()) {
                (Value::Number(n), "string") => format!("quote it: `\"{n}\"`"),
                (Value::String(s), "number" | "integer") if s.parse::<f64>().is_ok() => {
                    format!("remove the quotes: `{s}`")
                }
                _ => format!("`{label}` is {expected}"),
            };
            self.sink
                .error(
                    codes::FLOW_REQUEST_TYPE,
                    node.span,
                    format!(
                        "`{label}` must be {}, found {found} {lit}",
                        article(&expected)
                    ),
                    format!("expected {expected}"),
                )
                .help = Some(help);
        }
    }

    // ---- values: paths, templates, literals --------------------------------------------------------

    fn value(&mut self, node: &Node, scope: Scope) {
        match classify(node) {
            ValueKind::Path(p) => self.path(p, node.span, scope),
            ValueKind::PathWithDefault { path, default } => {
                self.path_only(path, scope, "`from`");
                if let Some(d) = default {
                    self.value(d, scope);
                }
            }
            ValueKind::Template(t) => self.template(t, node.span, scope),
            ValueKind::Literal(lit) => self.literal(lit),
            ValueKind::Map => {
                if let Kind::Map(entries) = &node.kind {
                    for e in entries {
                        self.value(&e.value, scope);
                    }
                }
            }
            ValueKind::List => {
                if let Kind::Seq(items) = &node.kind {
                    for item in items {
                        self.value(item, scope);
                    }
                }
            }
        }
    }

    fn literal(&mut self, node: &Node) {
        match &node.kind {
            Kind::Str { value, .. } => {
                if let Some(what) = looks_like_secret(value) {
                    self.sink
                        .error(codes::FLOW_SECRET_INLINE, node.span, format!("this looks like {what}"), "secret-looking literal")
                        .help = Some("never write secrets into flows: put it in weft.yaml as `auth: { token: { env: NAME } }` (or `file:`), and rotate this one if it is real".into());
                }
            }
            Kind::Map(entries) => entries.iter().for_each(|e| self.literal(&e.value)),
            Kind::Seq(items) => items.iter().for_each(|i| self.literal(i)),
            _ => {}
        }
    }

    /// A value that must be a JSONPath (for_each, poll items, `from`).
    fn path_only(&mut self, node: &Node, scope: Scope, what: &str) {
        match node.as_str() {
            Some(s) if crate::dsl::value::is_path(s) => self.path(s, node.span, scope),
            _ => {
                self.sink
                    .error(
                        codes::FLOW_PATH_SYNTAX,
                        node.span,
                        format!("{what} must be a JSONPath"),
                        "not a JSONPath",
                    )
                    .help = Some("start it with `$.`, e.g. `$.steps.list.items`".into());
            }
        }
    }

    fn path(&mut self, path: &str, span: Span, scope: Scope) {
        if let Err(e) = serde_json_path::JsonPath::parse(path) {
            // Plain scalars span exactly the text; point at the character when we can.
            let at = if span.len() == path.len() {
                Span::new(span.start + e.position(), span.start + e.position() + 1)
            } else {
                span
            };
            self.sink.error(codes::FLOW_PATH_SYNTAX, at, format!("invalid JSONPath `{path}`: {}", e.message()), "does not parse").help =
                Some("write an RFC 9535 JSONPath, e.g. `$.trigger.payload.payment.entity.email` or `$.steps.find.contact.id`; quote odd names: `$['my key']`".into());
            return;
        }
        let segments = static_segments(path);
        let Some(Segment::Name(root)) = segments.first() else {
            if path == "$" || !segments.is_empty() {
                return;
            }
            // `$..x` or `$[*]`: reads the whole context; allowed, nothing to check.
            return;
        };
        let names: Vec<String> = segments[1..].iter().map(segment_name).collect();
        self.reference(root, &names, span, scope, "JSONPath");
    }

    fn template(&mut self, source: &str, span: Span, scope: Scope) {
        let template = match self.env.template_from_str(source) {
            Ok(t) => t,
            Err(e) => {
                self.sink
                    .error(codes::FLOW_TEMPLATE_SYNTAX, span, format!("template does not compile: {}", e.detail().unwrap_or("syntax error")), "invalid template")
                    .help = Some("expressions go between `${{` and `}}`, e.g. `${{ trigger.payload.payment.entity.amount / 100 }}`".into());
                return;
            }
        };
        // The text around the expressions is literal: a token pasted there leaks like any other literal.
        let literal_text: String = source
            .split("${{")
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part
                } else {
                    part.split_once("}}").map_or("", |(_, rest)| rest)
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        for word in literal_text.split_whitespace() {
            if let Some(what) = looks_like_secret(word) {
                self.sink
                    .error(codes::FLOW_SECRET_INLINE, span, format!("this template's text contains what looks like {what}"), "secret-looking text")
                    .help = Some("never write secrets into flows: put it in weft.yaml as `{ env: NAME }` or `{ file: path }`, and rotate this one if it is real".into());
            }
        }
        let mut vars: Vec<String> = template.undeclared_variables(true).into_iter().collect();
        vars.sort();
        for var in vars {
            let mut parts = var.split('.').map(String::from);
            let root = parts.next().unwrap_or_default();
            if TEMPLATE_GLOBALS.contains(&root.as_str()) {
                continue;
            }
            let rest: Vec<String> = parts.collect();
            self.reference(&root, &rest, span, scope, "template");
        }
    }

    /// Check what a path or template reads: its root, and for steps/vars/connections/trigger the name after.
    fn reference(&mut self, root: &str, rest: &[String], span: Span, scope: Scope, kind: &str) {
        let loop_only = matches!(root, "item" | "index");
        if !ROOTS.contains(&root) || (loop_only && !scope.in_loop) {
            let available: Vec<&str> = ROOTS
                .iter()
                .copied()
                .filter(|r| scope.in_loop || !matches!(*r, "item" | "index"))
                .collect();
            let (code, msg) = if kind == "template" {
                (
                    codes::FLOW_TEMPLATE_UNKNOWN_VARIABLE,
                    format!("the template uses `{root}`, which does not exist here"),
                )
            } else {
                (
                    codes::FLOW_PATH_UNKNOWN_ROOT,
                    format!("the path starts from `{root}`, which does not exist here"),
                )
            };
            let help = if loop_only {
                format!("`{root}` exists only inside a step with `for_each`")
            } else {
                format!(
                    "{}; the run context is `{{{}}}`",
                    suggest(root, available.iter().copied()),
                    available.join(", ")
                )
            };
            self.sink.error(code, span, msg, "unknown name").help = Some(help);
            return;
        }
        let first = rest.first().map(String::as_str);
        match (root, first) {
            ("steps", Some(id)) => self.step_ref(id, span, scope),
            ("steps", None) if scope.in_vars => self.step_ref("", span, scope),
            ("vars", Some(name)) => {
                if scope.in_vars {
                    self.sink
                        .error(
                            codes::FLOW_REF_UNKNOWN_VAR,
                            span,
                            format!("`vars.{name}` is read while vars are being defined"),
                            "not yet defined",
                        )
                        .help = Some(
                        "vars may use `trigger`, `event` and `connections`, not each other".into(),
                    );
                } else if !self.flow.vars.contains_key(name) {
                    let known: Vec<&str> = self.flow.vars.keys().map(String::as_str).collect();
                    self.sink
                        .error(
                            codes::FLOW_REF_UNKNOWN_VAR,
                            span,
                            format!("the flow declares no var `{name}`"),
                            "unknown var",
                        )
                        .help = Some(format!(
                        "{}; declare it under `vars:`",
                        suggest(name, known)
                    ));
                }
            }
            ("connections", Some(name)) => {
                if !self.ctx.connections.contains_key(name) {
                    let known: Vec<&str> =
                        self.ctx.connections.keys().map(String::as_str).collect();
                    self.sink
                        .error(
                            codes::FLOW_REF_UNKNOWN_CONNECTION,
                            span,
                            format!("connection `{name}` is not declared"),
                            "unknown connection",
                        )
                        .help = Some(suggest(name, known));
                } else if let Some(field) = rest.get(1) {
                    if !CONNECTION_FIELDS.contains(&field.as_str()) {
                        self.sink
                            .error(
                                codes::FLOW_REF_UNKNOWN_CONNECTION,
                                span,
                                format!("connections expose no field `{field}`"),
                                "unknown field",
                            )
                            .help = Some(format!(
                            "{} (credentials are never readable from flows)",
                            suggest(field, CONNECTION_FIELDS.iter().copied())
                        ));
                    }
                }
            }
            ("trigger", _) => self.trigger_ref(rest, span),
            _ => {}
        }
    }

    fn step_ref(&mut self, id: &str, span: Span, scope: Scope) {
        let position = self.flow.steps.iter().position(|s| s.id == id);
        let current = scope.step.unwrap_or(0);
        let earlier: Vec<&str> = self.flow.steps[..scope.step.unwrap_or(0)]
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        match position {
            None => {
                let all: Vec<&str> = self.flow.steps.iter().map(|s| s.id.as_str()).collect();
                self.sink
                    .error(
                        codes::FLOW_REF_UNKNOWN_STEP,
                        span,
                        format!("there is no step `{id}`"),
                        "unknown step",
                    )
                    .help = Some(if earlier.is_empty() {
                    format!("no step runs before this one; steps are {}", list(&all))
                } else {
                    suggest(id, earlier)
                });
            }
            Some(p) if scope.step.is_none() || p >= current => {
                let why = if scope.step.is_none() {
                    "vars and the trigger are evaluated before any step runs".to_string()
                } else if p == current {
                    format!("a step cannot read its own output (step `{id}`)")
                } else {
                    format!("step `{id}` runs after this one")
                };
                self.sink
                    .error(
                        codes::FLOW_REF_LATER_STEP,
                        span,
                        format!("`steps.{id}` is read before it exists"),
                        "not run yet",
                    )
                    .help = Some(format!(
                    "{why}; move this step after `{id}`, or read an earlier step"
                ));
            }
            _ => {}
        }
    }

    /// `$.trigger.a.b` against the webhook event's payload schema.
    fn trigger_ref(&mut self, rest: &[String], span: Span) {
        let Some(event) = self.event else { return };
        let Some(schema) = &event.schema else { return };
        let mut current = schema;
        let mut walked = String::from("trigger");
        for name in rest {
            let node = deref(schema, current);
            if let Ok(_index) = name.parse::<i64>() {
                match node.get("items") {
                    Some(items) => {
                        current = items;
                        walked.push_str(&format!("[{name}]"));
                        continue;
                    }
                    None => return self.open_field(&walked, span, event),
                }
            }
            let shape = Shape::of(schema, node);
            if let Some(next) = shape.properties.get(name.as_str()) {
                current = next;
                walked.push('.');
                walked.push_str(name);
                continue;
            }
            if shape.open
                || node
                    .get("additionalProperties")
                    .is_some_and(|a| a.is_object())
            {
                return self.open_field(&format!("{walked}.{name}"), span, event);
            }
            let known: Vec<&str> = shape.properties.keys().map(String::as_str).collect();
            self.sink
                .error(
                    codes::FLOW_TRIGGER_UNKNOWN_FIELD,
                    span,
                    format!(
                        "`{walked}` has no field `{name}` in `{}` events",
                        event.name
                    ),
                    "unknown field",
                )
                .help = Some(format!(
                "{}; `{walked}` has {}",
                suggest(name, known.iter().copied()),
                list(&known)
            ));
            return;
        }
    }

    fn open_field(&mut self, walked: &str, span: Span, event: &EventDef) {
        self.sink.warning(
            codes::FLOW_TRIGGER_OPEN_FIELD,
            span,
            format!(
                "`{walked}` is not described by the `{}` payload schema",
                event.name
            ),
            "unchecked",
        );
    }
}

fn article(what: &str) -> String {
    match what.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {what}"),
        _ => format!("a {what}"),
    }
}

fn segment_name(s: &Segment) -> String {
    match s {
        Segment::Name(n) => n.clone(),
        Segment::Index(i) => i.to_string(),
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
    let more = if items.len() > 15 {
        format!(" and {} more", items.len() - 15)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

fn describe_field(doc: &Value, schema: Option<&Value>) -> String {
    let Some(schema) = schema.map(|s| deref(doc, s)) else {
        return "see `weft catalog`".into();
    };
    let ty = Shape::of(doc, schema).types.join(" or ");
    let desc = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match (ty.is_empty(), desc.is_empty()) {
        (false, false) => format!("{ty}: {desc}"),
        (false, true) => ty,
        (true, false) => desc.to_string(),
        _ => "see `weft catalog`".into(),
    }
}

fn missing_body_help(op: &Operation) -> String {
    let required = op.required_body_fields();
    if required.is_empty() {
        "add `body: {...}`; `weft catalog` shows its fields".into()
    } else {
        format!(
            "add `body:` with at least {}",
            required
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn valid_timezone(tz: &str) -> bool {
    if tz == "UTC" || tz == "Z" {
        return true;
    }
    let b = tz.as_bytes();
    b.len() == 6
        && (b[0] == b'+' || b[0] == b'-')
        && b[3] == b':'
        && tz[1..3].parse::<u8>().is_ok_and(|h| h <= 14)
        && tz[4..6].parse::<u8>().is_ok_and(|m| m < 60)
}
