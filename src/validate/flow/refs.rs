//! Values: JSONPaths, `${{ }}` templates and literals, and what they read: roots of the run context,
//! earlier steps, declared vars and connections, and fields of the trigger event's payload schema.

use super::{list, Checker, Scope, Slot};
use crate::catalog::schema::{deref, Shape};
use crate::catalog::EventDef;
use crate::diag::{codes, suggest, Label};
use crate::dsl::value::{classify, is_optional, is_path, static_segments, Segment, ValueKind, FROM_KEYS, ROOTS};
use crate::dsl::yaml::{Entry, Kind, Node};
use crate::source::Span;
use crate::validate::secrets::looks_like_secret;

/// Names minijinja resolves as functions, not context variables.
const TEMPLATE_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug", "now"];

/// Fields of a connection a flow may read (never credentials).
const CONNECTION_FIELDS: &[&str] = &["name", "connector", "location_id", "base_url"];

impl<'a> Checker<'a> {
    /// A value and everything it reads. `slot` says where it sits: only a key of a mapping or an item of a
    /// list can be left out by `{ from, optional: true }`.
    pub(super) fn value(&mut self, node: &Node, scope: Scope, slot: Slot) {
        match classify(node) {
            ValueKind::Path(p) => self.path(p, node.span, scope),
            ValueKind::From { path, default, optional } => {
                self.path_only(path, Some(scope), "`from`");
                self.check_from_keys(node, path, default, optional, slot);
                if let Some(d) = default {
                    self.default_as_written(d);
                }
            }
            ValueKind::Template(t) => self.template(t, node.span, scope),
            ValueKind::Literal(lit) => self.literal(lit),
            ValueKind::Map => {
                if let Kind::Map(entries) = &node.kind {
                    self.misspelt_from(entries);
                    for e in entries {
                        self.value(&e.value, scope, Slot::Field);
                    }
                }
            }
            ValueKind::List => {
                if let Kind::Seq(items) = &node.kind {
                    for item in items {
                        self.value(item, scope, Slot::Field);
                    }
                }
            }
        }
    }

    /// `{ from, default, optional }`: `optional` is a boolean, not given with `default`, and only where
    /// there is a mapping or list to leave the value out of.
    fn check_from_keys(
        &mut self,
        node: &Node,
        path: &Node,
        default: Option<&Node>,
        optional: Option<&Node>,
        slot: Slot,
    ) {
        let Some(optional) = optional else { return };
        let from = path.as_str().unwrap_or("$.path");
        // Point at `optional: true` as a whole: that is what has to change.
        let at = node.entry("optional").map_or(optional.span, |e| e.key_span.join(e.value.span));
        if !matches!(optional.kind, Kind::Bool(_)) {
            self.sink
                .error(
                    codes::FLOW_VALUE_FROM,
                    optional.span,
                    format!(
                        "`optional` must be `true` or `false`, found {} {}",
                        optional.type_name(),
                        optional.to_json()
                    ),
                    "not a boolean",
                )
                .help = Some(format!(
                "write `{{ from: {from}, optional: true }}` to leave the field out when the path matches nothing or only `null`"
            ));
            return;
        }
        if !is_optional(Some(optional)) {
            return;
        }
        if let Some(d) = default {
            let diag = self.sink.error(
                codes::FLOW_VALUE_FROM,
                at,
                "`default:` and `optional: true` together: the value cannot be both sent and left out",
                "conflicts with `default:`",
            );
            diag.labels.push(Label { span: d.span, text: "default here".into() });
            diag.help = Some(format!(
                "keep one: `{{ from: {from}, optional: true }}` leaves the field out when the path matches nothing or \
                 only `null`; `{{ from: {from}, default: {} }}` sends the default instead",
                d.to_json()
            ));
            return;
        }
        let (message, help) = match slot {
            Slot::Field => return,
            Slot::PathParam(name) => (
                format!("path parameter `{name}` cannot be left out: the URL needs a value for it"),
                format!("give a fallback with `{{ from: {from}, default: ... }}`, or guard the step with `when: {from}` so it runs only when the value exists"),
            ),
            Slot::When => (
                "`when:` cannot be `optional`: there is nothing to leave it out of".to_string(),
                format!("a `when:` path that matches nothing is already false: write `when: {from}`"),
            ),
            Slot::Var(name) => (
                format!("var `{name}` cannot be left out: a var always has a value"),
                format!("give it a `default:`, or use `{{ from: {from}, optional: true }}` directly in the `body:`, `query:` or `set:` mapping that sends it"),
            ),
            Slot::Body => (
                "the whole `body:` cannot be left out".to_string(),
                format!("mark the fields inside it instead, e.g. `body: {{ field: {{ from: {from}.field, optional: true }} }}`, or guard the step with `when: {from}`"),
            ),
            Slot::Set => (
                "the whole `set:` value cannot be left out: a step's output always has a value".to_string(),
                format!("mark the keys inside it instead, e.g. `set: {{ field: {{ from: {from}.field, optional: true }} }}`, or guard the step with `when: {from}`"),
            ),
        };
        self.sink.error(codes::FLOW_VALUE_CANNOT_OMIT, at, message, "cannot be left out").help = Some(help);
    }

    /// A `default:` is sent exactly as written (the mapping compiles it to its JSON): nothing in it is read as
    /// a path, a template or another `{ from }` / `{ literal }`. Anything that looks like one would reach the API
    /// as text or as an object with a `from` key, which is never what the flow meant.
    fn default_as_written(&mut self, d: &Node) {
        let what = match classify(d) {
            ValueKind::Path(_) => Some("a JSONPath"),
            ValueKind::Template(_) => Some("a template"),
            ValueKind::From { .. } => Some("a `{ from }` value"),
            // `classify` hands back a plain scalar itself, and the inner node of a `{ literal: ... }` wrapper.
            ValueKind::Literal(inner) if !std::ptr::eq(inner, d) => Some("a `{ literal }` value"),
            ValueKind::Map | ValueKind::List | ValueKind::Literal(_) => None,
        };
        if let Some(what) = what {
            self.sink
                .error(
                    codes::FLOW_VALUE_DEFAULT,
                    d.span,
                    format!("this `default:` is {what}, but a default is sent exactly as written: {}", d.to_json()),
                    "sent as written",
                )
                .help = Some(
                "write the fallback value itself (`default: 0`, `default: unknown`); to fall back on another field, \
                 use a template, e.g. `\"${{ trigger.phone | default(trigger.mobile) }}\"`"
                    .to_string(),
            );
            return;
        }
        match &d.kind {
            Kind::Map(entries) => entries.iter().for_each(|e| self.default_as_written(&e.value)),
            Kind::Seq(items) => items.iter().for_each(|i| self.default_as_written(i)),
            _ => self.literal(d),
        }
    }

    /// A mapping with a JSONPath under `from:` and a near miss of `default` or `optional` is a `{ from }`
    /// value with a typo. As written it would be sent as an object with a `from` key: say which key was meant.
    fn misspelt_from(&mut self, entries: &[Entry]) {
        let from_path = entries.iter().any(|e| e.key == "from" && e.value.as_str().is_some_and(is_path));
        if !from_path {
            return;
        }
        for e in entries.iter().filter(|e| !FROM_KEYS.contains(&e.key.as_str())) {
            let Some(meant) = crate::diag::did_you_mean(&e.key, ["default", "optional"]).first().copied() else {
                continue;
            };
            self.sink
                .error(
                    codes::FLOW_VALUE_FROM,
                    e.key_span,
                    format!("unknown key `{}` in a `{{ from: ... }}` value", e.key),
                    "unknown key",
                )
                .help = Some(format!(
                "did you mean `{meant}`? A `{{ from }}` value takes `default:` or `optional: true`; as written, this \
                 mapping is sent as an object with the keys {}",
                entries.iter().map(|e| format!("`{}`", e.key)).collect::<Vec<_>>().join(", ")
            ));
        }
    }

    pub(super) fn literal(&mut self, node: &Node) {
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

    /// A value that must be a JSONPath (for_each, poll items, `from`). With `scope: None` the path is over
    /// something other than the run context (a poll response, one item): only its syntax is checked.
    pub(super) fn path_only(&mut self, node: &Node, scope: Option<Scope>, what: &str) {
        match node.as_str() {
            Some(s) if is_path(s) => match scope {
                Some(scope) => self.path(s, node.span, scope),
                None => {
                    self.path_syntax(s, node.span);
                }
            },
            _ => {
                self.sink
                    .error(codes::FLOW_PATH_SYNTAX, node.span, format!("{what} must be a JSONPath"), "not a JSONPath")
                    .help = Some("start it with `$.`, e.g. `$.steps.list.items`".into());
            }
        }
    }

    /// Parse a JSONPath; on failure report it at the offending character. Returns whether it parsed.
    pub(super) fn path_syntax(&mut self, path: &str, span: Span) -> bool {
        let Err(e) = serde_json_path::JsonPath::parse(path) else { return true };
        // Narrow the label to the character the parser stopped at: find the path's text inside the value
        // (quoted values start one character later).
        let at = self
            .text_offset(span, path)
            .map(|start| {
                let pos = (start + e.position()).min(start + path.len().saturating_sub(1));
                Span::new(pos, pos + path[pos - start..].chars().next().map_or(1, char::len_utf8))
            })
            .unwrap_or(span);
        let dashed = path.split('.').skip(1).any(|seg| seg.contains('-') && !seg.contains('['));
        let help = if dashed {
            let fixed: Vec<String> = path
                .split('.')
                .enumerate()
                .map(|(i, seg)| {
                    if i > 0 && seg.contains('-') && !seg.contains('[') {
                        format!("['{seg}']")
                    } else if i > 0 {
                        format!(".{seg}")
                    } else {
                        seg.to_string()
                    }
                })
                .collect();
            format!("names with `-` or spaces need brackets: `{}`", fixed.concat())
        } else {
            "write an RFC 9535 JSONPath, e.g. `$.trigger.payload.payment.entity.email` or `$.steps.find.contact.id`; quote odd names: `$['my key']`".into()
        };
        let reason = match e.message() {
            "parser error" => "it does not parse here".to_string(),
            m => m.to_string(),
        };
        self.sink
            .error(codes::FLOW_PATH_SYNTAX, at, format!("invalid JSONPath `{path}`: {reason}"), "does not parse")
            .help = Some(help);
        false
    }

    /// Where `text` starts inside the value at `span` (the span may include quotes).
    pub(super) fn text_offset(&self, span: Span, text: &str) -> Option<usize> {
        let src = self.sink.file.text().get(span.start..span.end)?;
        src.find(text).map(|i| span.start + i)
    }

    pub(super) fn path(&mut self, path: &str, span: Span, scope: Scope) {
        if !self.path_syntax(path, span) {
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

    pub(super) fn template(&mut self, source: &str, span: Span, scope: Scope) {
        let template = match self.env.template_from_str(source) {
            Ok(t) => t,
            Err(e) => {
                self.sink
                    .error(
                        codes::FLOW_TEMPLATE_SYNTAX,
                        span,
                        format!("template does not compile: {}", e.detail().unwrap_or("syntax error")),
                        "invalid template",
                    )
                    .help = Some(
                    "expressions go between `${{` and `}}`, e.g. `${{ trigger.payload.payment.entity.amount / 100 }}`"
                        .into(),
                );
                return;
            }
        };
        // The text around the expressions is literal: a token pasted there leaks like any other literal.
        let literal_text: String = source
            .split("${{")
            .enumerate()
            .map(|(i, part)| if i == 0 { part } else { part.split_once("}}").map_or("", |(_, rest)| rest) })
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
            // Point at the variable inside the template when its text can be found there.
            let at = self
                .text_offset(span, &var)
                .or_else(|| self.text_offset(span, &root))
                .map(|start| {
                    Span::new(
                        start,
                        start + if self.text_offset(span, &var).is_some() { var.len() } else { root.len() },
                    )
                })
                .unwrap_or(span);
            self.reference(&root, &rest, at, scope, "template");
        }
    }

    /// Check what a path or template reads: its root, and for steps/vars/connections/trigger the name after.
    pub(super) fn reference(&mut self, root: &str, rest: &[String], span: Span, scope: Scope, kind: &str) {
        let loop_only = matches!(root, "item" | "index");
        if !ROOTS.contains(&root) || (loop_only && !scope.in_loop) {
            let available: Vec<&str> =
                ROOTS.iter().copied().filter(|r| scope.in_loop || !matches!(*r, "item" | "index")).collect();
            let (code, msg) = if kind == "template" {
                (
                    codes::FLOW_TEMPLATE_UNKNOWN_VARIABLE,
                    format!("the template uses `{root}`, which does not exist here"),
                )
            } else {
                (codes::FLOW_PATH_UNKNOWN_ROOT, format!("the path starts from `{root}`, which does not exist here"))
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
                        .help = Some("vars may use `trigger`, `event` and `connections`, not each other".into());
                } else if !self.flow.vars.contains_key(name) {
                    let known: Vec<&str> = self.flow.vars.keys().map(String::as_str).collect();
                    self.sink
                        .error(
                            codes::FLOW_REF_UNKNOWN_VAR,
                            span,
                            format!("the flow declares no var `{name}`"),
                            "unknown var",
                        )
                        .help = Some(format!("{}; declare it under `vars:`", suggest(name, known)));
                }
            }
            ("connections", Some(name)) => {
                if !self.ctx.connections.contains_key(name) {
                    let known: Vec<&str> = self.ctx.connections.keys().map(String::as_str).collect();
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

    pub(super) fn step_ref(&mut self, id: &str, span: Span, scope: Scope) {
        let position = self.flow.steps.iter().position(|s| s.id == id);
        let current = scope.step.unwrap_or(0);
        let earlier: Vec<&str> = self.flow.steps[..scope.step.unwrap_or(0)].iter().map(|s| s.id.as_str()).collect();
        match position {
            None => {
                let all: Vec<&str> = self.flow.steps.iter().map(|s| s.id.as_str()).collect();
                self.sink
                    .error(codes::FLOW_REF_UNKNOWN_STEP, span, format!("there is no step `{id}`"), "unknown step")
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
                    .help = Some(if scope.step.is_none() {
                    format!("{why}; read `steps.{id}` in a step instead, or compute the value in a `set` step")
                } else if p == current {
                    format!("{why}; its output exists only after it finishes: read the trigger or an earlier step here")
                } else {
                    format!("{why}; move this step after `{id}`, or read an earlier step")
                });
            }
            _ => {}
        }
    }

    /// `$.trigger.a.b` against the webhook event's payload schema.
    pub(super) fn trigger_ref(&mut self, rest: &[String], span: Span) {
        let Some(event) = self.event else { return };
        let Some(schema) = &event.schema else { return };
        let mut current = schema;
        let mut walked = String::from("trigger");
        for name in rest {
            let node = deref(schema, current);
            let shape = Shape::of(schema, node);
            let scalar = !shape.types.is_empty()
                && shape
                    .types
                    .iter()
                    .all(|t| matches!(t.as_str(), "string" | "number" | "integer" | "boolean" | "null"));
            if scalar {
                self.sink
                    .error(
                        codes::FLOW_TRIGGER_UNKNOWN_FIELD,
                        span,
                        format!(
                            "`{walked}` is a {} in `{}` events; it has no `{name}`",
                            shape.types.join(" or "),
                            event.name
                        ),
                        "not an object",
                    )
                    .help = Some(format!("read `$.{walked}` itself"));
                return;
            }
            if let Ok(_index) = name.parse::<i64>() {
                match node.get("items") {
                    Some(items) => {
                        current = items;
                        walked.push_str(&format!("[{name}]"));
                        continue;
                    }
                    None => return self.open_field(&format!("the elements of `{walked}`"), span, event),
                }
            }
            if let Some(next) = shape.properties.get(name.as_str()) {
                current = next;
                walked.push('.');
                walked.push_str(name);
                continue;
            }
            if shape.open || node.get("additionalProperties").is_some_and(|a| a.is_object()) {
                return self.open_field(&format!("{walked}.{name}"), span, event);
            }
            let known: Vec<&str> = shape.properties.keys().map(String::as_str).collect();
            self.sink
                .error(
                    codes::FLOW_TRIGGER_UNKNOWN_FIELD,
                    span,
                    format!("`{walked}` has no field `{name}` in `{}` events", event.name),
                    "unknown field",
                )
                .help = Some(match crate::diag::did_you_mean(name, known.iter().copied()).first() {
                Some(close) => format!("did you mean `{close}`? `{walked}` has {}", list(&known)),
                None => format!("`{walked}` has {}", list(&known)),
            });
            return;
        }
    }

    pub(super) fn open_field(&mut self, walked: &str, span: Span, event: &EventDef) {
        self.sink.warning(
            codes::FLOW_TRIGGER_OPEN_FIELD,
            span,
            format!(
                "{} not described by the `{}` payload schema",
                if walked.starts_with("the ") { format!("{walked} are") } else { format!("`{walked}` is") },
                event.name
            ),
            "unchecked",
        );
    }
}

fn segment_name(s: &Segment) -> String {
    match s {
        Segment::Name(n) => n.clone(),
        Segment::Index(i) => i.to_string(),
    }
}
