//! Requests against the operation's schemas: path parameters bound, query parameters and body fields known,
//! required ones present, literal types right, nested objects and lists followed.

use serde_json::Value;

use super::{article, escape, list, Checker};
use crate::catalog::schema::{deref, literal_mismatch, Shape};
use crate::catalog::{Operation, ParamIn};
use crate::diag::{codes, suggest};
use crate::dsl::flow::Step;
use crate::dsl::value::{classify, is_optional, ValueKind};
use crate::dsl::yaml::{Kind, Node};
use crate::source::Span;

impl<'a> Checker<'a> {
    pub(super) fn request(&mut self, step: &Step, op: &'a Operation, base: &str, call_span: Span) {
        if step.paginate.is_some() {
            let paginated = self.ctx.catalog.connector(&op.connector).and_then(|c| c.pagination_for(op)).is_some();
            if !paginated {
                let span = self.key_span(&format!("{base}/paginate"));
                self.sink
                    .error(
                        codes::FLOW_CALL_NOT_PAGINATED,
                        span,
                        format!("`{}` has no pagination rule", op.display_name()),
                        "nothing to page",
                    )
                    .help = Some(format!(
                    "`{} {}` does not take the connector's page parameters; remove `paginate`",
                    op.method, op.path
                ));
            }
        }
        let bound: Vec<String> = step.path.as_ref().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        self.check_path_params(op, bound, &format!("{base}/path"), call_span);
        if let Some(q) = &step.query {
            self.params(op, ParamIn::Query, q.keys(), &format!("{base}/query"), "query parameter");
        }
        let missing_query: Vec<&str> = op
            .params
            .iter()
            .filter(|p| p.location == ParamIn::Query && p.required)
            .filter(|p| !step.query.as_ref().is_some_and(|q| q.contains_key(&p.name)))
            .map(|p| p.name.as_str())
            .collect();
        for name in missing_query {
            let span = if step.query.is_some() { self.key_span(&format!("{base}/query")) } else { call_span };
            self.sink
                .error(
                    codes::FLOW_REQUEST_MISSING_FIELD,
                    span,
                    format!("`{}` requires the query parameter `{name}`", op.display_name()),
                    format!("`{name}` missing"),
                )
                .help = Some(format!("add `query: {{ {name}: ... }}`"));
        }
        match (&op.body, &step.body) {
            (None, Some(_)) => {
                let span = self.key_span(&format!("{base}/body"));
                self.sink
                    .error(
                        codes::FLOW_REQUEST_NO_BODY,
                        span,
                        format!("`{} {}` takes no request body", op.method, op.path),
                        "body not accepted",
                    )
                    .help =
                    Some("remove `body:`; send the data as `query:` parameters if the operation lists them".into());
            }
            (Some(_), None) if op.body_required => {
                self.sink
                    .error(
                        codes::FLOW_REQUEST_MISSING_FIELD,
                        call_span,
                        format!("`{}` requires a request body", op.display_name()),
                        "body missing",
                    )
                    .help = Some(missing_body_help(op));
            }
            (Some(schema), Some(_)) => {
                let node = self.node(&format!("{base}/body"));
                let key = self.key_span(&format!("{base}/body"));
                self.body(op, schema, node, Some(key), "body", 0);
            }
            _ => {}
        }
    }

    pub(super) fn check_path_params(&mut self, op: &Operation, bound: Vec<String>, pointer: &str, call_span: Span) {
        let wanted: Vec<&str> = op.path_params().collect();
        for name in &bound {
            if !wanted.contains(&name.as_str()) {
                let span = self.key_span(&format!("{pointer}/{}", escape(name)));
                let help = if wanted.is_empty() {
                    format!("`{}` has no path parameters; remove `path:`", op.path)
                } else {
                    format!("{} (the path is `{}`)", suggest(name, wanted.iter().copied()), op.path)
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
                    .help = Some(format!("add `path: {{ {name}: $.trigger... }}` to the step"));
            }
        }
    }

    /// Query (or header) keys against the operation's declared parameters, plus literal types.
    pub(super) fn params<'k>(
        &mut self,
        op: &Operation,
        location: ParamIn,
        keys: impl Iterator<Item = &'k String>,
        pointer: &str,
        what: &str,
    ) {
        let known: Vec<&str> = op.params.iter().filter(|p| p.location == location).map(|p| p.name.as_str()).collect();
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
                            format!("`{}` has no {what} `{key}`", op.display_name()),
                            "unknown",
                        )
                        .help = Some(help);
                }
                Some(param) => {
                    let node = self.node(&p);
                    if param.required {
                        let schema = (!param.schema.is_null()).then_some(&param.schema);
                        self.required_not_optional(op, node, key, &format!("the {what}"), schema);
                    }
                    self.literal_type(&op.doc, &param.schema, node, key, true);
                }
            }
        }
    }

    /// A body mapping against its schema: unknown keys, missing required keys, literal types, nested.
    /// `key_span` is the span of the key holding this value (`body:`, `fields:`), where "missing" is reported.
    pub(super) fn body(
        &mut self,
        op: &Operation,
        schema: &Value,
        node: &Node,
        key_span: Option<Span>,
        label: &str,
        depth: usize,
    ) {
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
                        format!("`{label}` must be {}, found a mapping", article(&shape.types.join(" or "))),
                        "wrong type",
                    );
                    return;
                }
                if !shape.open {
                    for e in entries {
                        if !shape.properties.contains_key(&e.key) {
                            let known: Vec<&str> = shape.properties.keys().map(String::as_str).collect();
                            self.sink
                                .error(
                                    codes::FLOW_REQUEST_UNKNOWN_FIELD,
                                    e.key_span,
                                    format!("`{}` does not accept the field `{label}.{}`", op.display_name(), e.key),
                                    "unknown field",
                                )
                                .help = Some(match crate::diag::did_you_mean(&e.key, known.iter().copied()).first() {
                                Some(close) => format!("did you mean `{close}`? `{label}` has {}", list(&known)),
                                None => format!("`{label}` has the fields {}", list(&known)),
                            });
                        }
                    }
                }
                // A misspelt field is reported once, as unknown with a did-you-mean, not also as missing.
                let misspelt = |req: &str| {
                    entries.iter().any(|e| {
                        !shape.properties.contains_key(&e.key)
                            && crate::diag::did_you_mean(&e.key, [req]).first() == Some(&req)
                    })
                };
                let missing: Vec<&String> = shape
                    .required
                    .iter()
                    .filter(|req| !entries.iter().any(|e| &e.key == *req) && !misspelt(req))
                    .collect();
                if !missing.is_empty() {
                    // One diagnostic for all of them, on the key that holds the mapping.
                    let names: Vec<String> = missing.iter().map(|r| format!("`{r}`")).collect();
                    // One field: its type and description; several: just their types, to stay readable.
                    let details: Vec<String> = missing
                        .iter()
                        .map(|r| {
                            let field = shape.properties.get(r.as_str()).copied();
                            if missing.len() == 1 {
                                format!("`{r}` ({})", describe_field(doc, field))
                            } else {
                                let ty = field.map(|f| Shape::of(doc, f).types.join(" or ")).unwrap_or_default();
                                if ty.is_empty() {
                                    format!("`{r}`")
                                } else {
                                    format!("`{r}` ({ty})")
                                }
                            }
                        })
                        .collect();
                    let (noun, verb) = if missing.len() == 1 { ("field", "is") } else { ("fields", "are") };
                    self.sink
                        .error(
                            codes::FLOW_REQUEST_MISSING_FIELD,
                            key_span.unwrap_or(Span::at(node.span.start)),
                            format!("`{label}` is missing the required {noun} {}", names.join(", ")),
                            format!("{} {verb} required", names.join(", ")),
                        )
                        .help = Some(format!("add {}", details.join("; ")));
                }
                for e in entries {
                    if shape.required.contains(&e.key) {
                        let field = shape.properties.get(&e.key).copied();
                        self.required_not_optional(op, &e.value, &e.key, &format!("`{label}.{}`", e.key), field);
                    }
                    if let Some(field) = shape.properties.get(&e.key) {
                        self.body(op, field, &e.value, Some(e.key_span), &format!("{label}.{}", e.key), depth + 1);
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
                        format!("`{label}` must be {}, found a list", article(&shape.types.join(" or "))),
                        "wrong type",
                    );
                    return;
                }
                if let (Some(items), Kind::Seq(elems)) = (schema.get("items"), &node.kind) {
                    for (i, el) in elems.iter().enumerate() {
                        self.body(op, items, el, Some(el.span), &format!("{label}[{i}]"), depth + 1);
                    }
                }
            }
            ValueKind::Literal(lit) => self.literal_type(doc, schema, lit, label, false),
            _ => {}
        }
    }

    /// A field the operation requires may not be `{ from, optional: true }`: leaving it out makes a request
    /// the API rejects. `schema` is the field's own schema, whose words the help quotes.
    fn required_not_optional(&mut self, op: &Operation, node: &Node, name: &str, what: &str, schema: Option<&Value>) {
        let ValueKind::From { path, default: None, optional } = classify(node) else { return };
        if !is_optional(optional) {
            return;
        }
        let from = path.as_str().unwrap_or("$.path");
        let at = node.entry("optional").map_or(node.span, |e| e.key_span.join(e.value.span));
        self.sink
            .error(
                codes::FLOW_REQUEST_REQUIRED_OPTIONAL,
                at,
                format!("`{name}` is required by {}; it cannot be left out", op.display_name()),
                format!("{what} is required"),
            )
            .help = Some(format!(
            "give a `default:` (`{{ from: {from}, default: ... }}`), or guard the step with `when: {from}` so it runs \
             only when the value exists; the schema says: `{name}` ({})",
            describe_field(&op.doc, schema)
        ));
    }

    /// `in_url`: path and query values travel as text, so `"100"` is as good as `100` there.
    pub(super) fn literal_type(&mut self, doc: &Value, schema: &Value, node: &Node, label: &str, in_url: bool) {
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
        if in_url {
            if let Value::String(text) = &lit {
                let as_number = serde_json::from_str::<Value>(text).ok().filter(|v| v.is_number() || v.is_boolean());
                if as_number.is_some_and(|v| literal_mismatch(doc, schema, &v).is_none()) {
                    return;
                }
            }
        }
        if let Some(expected) = literal_mismatch(doc, schema, &lit) {
            let found = node.type_name();
            let help = match (&lit, expected.as_str()) {
                (Value::Number(n), "string") => format!("quote it: `\"{n}\"`"),
                (Value::String(s), "number" | "integer") if s.parse::<f64>().is_ok() => {
                    format!("remove the quotes: `{s}`")
                }
                (Value::String(s), "boolean") if s == "true" || s == "false" => format!("remove the quotes: `{s}`"),
                (_, e) if e.starts_with("one of") => format!("use {e}"),
                _ => format!("`{label}` is {}", article(&expected)),
            };
            let want = if expected.starts_with("one of") { expected.clone() } else { article(&expected) };
            self.sink
                .error(
                    codes::FLOW_REQUEST_TYPE,
                    node.span,
                    format!("`{label}` must be {want}, found {found} {lit}"),
                    format!("expected {expected}"),
                )
                .help = Some(help);
        }
    }
}

fn describe_field(doc: &Value, schema: Option<&Value>) -> String {
    let Some(schema) = schema.map(|s| deref(doc, s)) else {
        return "see `weft catalog`".into();
    };
    let ty = Shape::of(doc, schema).types.join(" or ");
    let desc = schema.get("description").and_then(Value::as_str).unwrap_or_default();
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
            required.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
        )
    }
}
