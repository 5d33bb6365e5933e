//! Mappings: the values of a flow compiled once — JSONPaths parsed, templates compiled — and evaluated per
//! event into a `serde_json::Value` tree, built directly.
//!
//! Rules (the user-facing ones are in the README): a *singular* path (names and indexes only) yields one
//! value, and matching nothing is an error at the value's span unless `{from:, default:}` gives a fallback; a
//! path with wildcards, filters, slices or `..` yields the list of its matches. `{from:, optional: true}`
//! sends only a real value: it yields the first match that is not `null`, or nothing at all — the key is left
//! out of its object, the item out of its array. Leaving a field out is not the same as sending `null`: an API
//! that upserts (GHL contacts) clears a field it receives as `null`, so a `null` in the data is left out too
//! (a bare path or `{from:, default:}` sends it: that is how a flow sends an explicit `null`). A template that
//! is exactly one `${{ expression }}` keeps the expression's type (number, list, object, `null`); any other
//! template renders text.

pub mod context;

use std::sync::Arc;

use minijinja::Environment;
use serde_json::Value;
use serde_json_path::JsonPath;

pub use context::Context;

use crate::diag::{codes, Code, Diagnostic};
use crate::dsl::value::{classify, is_optional, static_prefix, Segment, ValueKind};
use crate::dsl::yaml::{Kind, Node};
use crate::source::{SourceFile, Span};

/// The template environment of flows: `${{ }}` expressions, `${% %}` blocks, strict undefined, and weft's own
/// filters. Validation compiles with exactly this environment, so what validates also renders.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .variable_delimiters("${{", "}}")
        .block_delimiters("${%", "%}")
        .comment_delimiters("${#", "#}")
        .build()
        .expect("static delimiters are valid");
    env.set_syntax(syntax);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("iso8601", iso8601);
    env.add_filter("unix", unix);
    env.add_function("now", || chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    env
}

/// `${{ created_at | iso8601 }}`: unix seconds (Razorpay, Payhere) → `2024-06-01T00:00:35Z` (UTC).
fn iso8601(value: minijinja::Value) -> Result<String, minijinja::Error> {
    let secs = i64::try_from(value.clone())
        .ok()
        .or_else(|| f64::try_from(value.clone()).ok().map(|f| f as i64))
        .ok_or_else(|| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("iso8601 needs unix seconds, got {value}"),
            )
        })?;
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .ok_or_else(|| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("{secs} is out of range")))
}

/// `${{ event.received_at | unix }}`: an RFC 3339 / ISO-8601 time → unix seconds (Razorpay's `from`/`to`).
fn unix(value: String) -> Result<i64, minijinja::Error> {
    chrono::DateTime::parse_from_rfc3339(value.trim()).map(|t| t.timestamp()).map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("unix needs an RFC 3339 time like 2024-06-01T00:00:35Z, got {value:?}: {e}"),
        )
    })
}

/// Fuel for one template render: bounds loops so a template cannot hang a run.
const TEMPLATE_FUEL: u64 = 100_000;

/// A compiled value.
#[derive(Debug, Clone)]
pub enum Mapping {
    Literal(Value),
    Path(PathRef),
    Template { name: String, typed: bool, span: Span },
    Object(Vec<(String, Mapping)>),
    Array(Vec<Mapping>),
}

/// A compiled JSONPath, split into the root it reads and the query over that root.
#[derive(Debug, Clone)]
pub struct PathRef {
    pub source: String,
    pub span: Span,
    root: Root,
    query: JsonPath,
    singular: bool,
    fallback: Fallback,
}

/// What a path yields when it matches nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Fallback {
    /// A bare path: a singular one must match exactly one value, any other yields the list of its matches.
    None,
    /// `{ from, default }` (a `{ from }` alone falls back to `null`): the first match, else this value.
    Value(Value),
    /// `{ from, optional: true }`: the first match that is not `null`, else nothing — left out of the
    /// enclosing object or array. Only a real value is sent.
    Omit,
}

#[derive(Debug, Clone)]
enum Root {
    Named(&'static str),
    Step(String),
    Index,
    /// Reads across roots (`$..id`, `$.steps`): evaluated over the materialized context.
    Whole,
}

/// Templates of one plan: compiled into one environment, addressed by name.
pub struct Templates {
    env: Environment<'static>,
    count: usize,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Templates({})", self.count)
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = environment();
        env.set_fuel(Some(TEMPLATE_FUEL));
        Templates { env, count: 0 }
    }

    fn add(&mut self, source: &str) -> Result<(String, bool), minijinja::Error> {
        let name = format!("t{}", self.count);
        self.count += 1;
        if let Some(expr) = whole_expression(source) {
            // Typed: render the expression as JSON and parse it back, keeping numbers numbers.
            let wrapped = format!("${{{{ ({expr}) | tojson }}}}");
            if self.env.add_template_owned(name.clone(), wrapped).is_ok() {
                return Ok((name, true));
            }
        }
        self.env.add_template_owned(name.clone(), source.to_string())?;
        Ok((name, false))
    }
}

/// `${{ expr }}` with nothing around it → `expr`.
fn whole_expression(source: &str) -> Option<&str> {
    let inner = source.trim().strip_prefix("${{")?.strip_suffix("}}")?;
    (!inner.contains("${{") && !inner.contains("}}")).then_some(inner.trim())
}

/// A failure to evaluate a mapping, at the value's span.
#[derive(Debug, Clone)]
pub struct MapError {
    pub code: &'static Code,
    pub span: Span,
    pub message: String,
    pub help: String,
}

impl MapError {
    pub fn into_diagnostic(self, file: &SourceFile) -> Diagnostic {
        Diagnostic::error(self.code, self.message).label(self.span, "here").help(self.help).in_file(file)
    }
}

/// Compile a value node. The flow has already been validated, so problems here are unexpected; they are still
/// returned as diagnostics, never panics.
pub fn compile(node: &Node, templates: &mut Templates) -> Result<Mapping, Diagnostic> {
    Ok(match classify(node) {
        ValueKind::Path(p) => Mapping::Path(compile_path(p, node.span, Fallback::None)?),
        ValueKind::From { path, default, optional } => {
            let source = path.as_str().unwrap_or_default();
            let fallback = match (default, optional) {
                (Some(d), Some(o)) if is_optional(Some(o)) => {
                    return Err(Diagnostic::error(
                        codes::FLOW_VALUE_FROM,
                        "`default:` and `optional: true` together: the value cannot be both sent and left out",
                    )
                    .label(o.span, "conflicts with `default:`")
                    .label(d.span, "default here")
                    .help(format!(
                        "keep one: `{{ from: {source}, optional: true }}` leaves the field out when the path matches \
                         nothing or only null, `{{ from: {source}, default: ... }}` sends the default"
                    )))
                }
                (_, Some(o)) if !matches!(o.kind, Kind::Bool(_)) => {
                    return Err(Diagnostic::error(
                        codes::FLOW_VALUE_FROM,
                        format!("`optional` must be `true` or `false`, found {} {}", o.type_name(), o.to_json()),
                    )
                    .label(o.span, "not a boolean")
                    .help("write `optional: true` to leave the field out when the path matches nothing or only null"))
                }
                (_, o) if is_optional(o) => Fallback::Omit,
                (d, _) => Fallback::Value(d.map_or(Value::Null, Node::to_json)),
            };
            Mapping::Path(compile_path(source, path.span, fallback)?)
        }
        ValueKind::Template(t) => {
            let (name, typed) = templates.add(t).map_err(|e| {
                Diagnostic::error(codes::FLOW_TEMPLATE_SYNTAX, format!("template does not compile: {e}"))
                    .label(node.span, "here")
            })?;
            Mapping::Template { name, typed, span: node.span }
        }
        ValueKind::Literal(lit) => Mapping::Literal(lit.to_json()),
        ValueKind::Map => match &node.kind {
            Kind::Map(entries) => {
                let mut fields = Vec::with_capacity(entries.len());
                for e in entries {
                    fields.push((e.key.clone(), compile(&e.value, templates)?));
                }
                Mapping::Object(fields)
            }
            _ => Mapping::Literal(node.to_json()),
        },
        ValueKind::List => match &node.kind {
            Kind::Seq(items) => Mapping::Array(items.iter().map(|i| compile(i, templates)).collect::<Result<_, _>>()?),
            _ => Mapping::Literal(node.to_json()),
        },
    })
}

pub fn compile_path(source: &str, span: Span, fallback: Fallback) -> Result<PathRef, Diagnostic> {
    let syntax = |e: serde_json_path::ParseError| {
        Diagnostic::error(codes::FLOW_PATH_SYNTAX, format!("invalid JSONPath `{source}`: {}", e.message()))
            .label(span, "here")
    };
    let whole = JsonPath::parse(source).map_err(syntax)?;
    let prefix = static_prefix(source);
    let singular = prefix.last().map_or(source == "$", |(_, end)| *end == source.len());
    // A filter that compares with another part of the context (`[?@.email == $.trigger.email]`) needs the
    // whole context as its root: re-rooting the query would make that inner `$` mean the sub-document.
    let reads_root_inside = source[1..].contains('$');
    let (root, consumed) = match prefix.first().filter(|_| !reads_root_inside) {
        Some((Segment::Name(n), end)) => match n.as_str() {
            "trigger" => (Root::Named("trigger"), *end),
            "event" => (Root::Named("event"), *end),
            "vars" => (Root::Named("vars"), *end),
            "connections" => (Root::Named("connections"), *end),
            "item" => (Root::Named("item"), *end),
            "index" => (Root::Index, *end),
            "steps" => match prefix.get(1) {
                Some((Segment::Name(id), end2)) => (Root::Step(id.clone()), *end2),
                _ => (Root::Whole, 0),
            },
            _ => (Root::Whole, 0),
        },
        _ => (Root::Whole, 0),
    };
    let query = match root {
        Root::Whole => whole,
        _ => JsonPath::parse(&format!("${}", &source[consumed..])).map_err(syntax)?,
    };
    Ok(PathRef { source: source.to_string(), span, root, query, singular, fallback })
}

impl PathRef {
    /// The matches of this path, or `None` when its root does not exist (a skipped step, no `item`).
    fn matches(&self, ctx: &Context) -> Vec<Value> {
        let materialized;
        let root: &Value = match &self.root {
            Root::Named(n) => match ctx.root(n) {
                Some(v) => v,
                None => return Vec::new(),
            },
            Root::Step(id) => match ctx.step(id) {
                Some(v) => v,
                None => return Vec::new(),
            },
            Root::Index => return ctx.item.as_ref().map(|(_, i)| vec![Value::from(*i)]).unwrap_or_default(),
            Root::Whole => {
                materialized = ctx.materialize();
                &materialized
            }
        };
        self.query.query(root).all().into_iter().cloned().collect()
    }

    /// The path's value where it must have one: a path with `optional: true` that matches nothing (or only
    /// `null`) is an error here (the validator only allows `optional` inside a mapping or list, where
    /// [`PathRef::eval_field`] runs).
    pub fn eval(&self, ctx: &Context) -> Result<Value, MapError> {
        self.eval_field(ctx)?.ok_or_else(|| MapError {
            code: codes::RUN_PATH_NO_MATCH,
            span: self.span,
            message: format!(
                "`{}` matched nothing (or only `null`), and this value has no mapping or list to be left out of",
                self.source
            ),
            help: format!(
                "give a fallback with `{{ from: {}, default: ... }}` or guard the step with `when:`",
                self.source
            ),
        })
    }

    /// The path's value as a key of a mapping or an item of a list: `None` means "leave it out".
    pub fn eval_field(&self, ctx: &Context) -> Result<Option<Value>, MapError> {
        let mut found = self.matches(ctx);
        match &self.fallback {
            // `{from, default}` always yields one value: the first match, else the default.
            Fallback::Value(default) => {
                return Ok(Some(if found.is_empty() { default.clone() } else { found.swap_remove(0) }))
            }
            // `{from, optional}`: the first real value, else nothing. A `null` in the data is skipped like a
            // missing key: sent to an upserting API it would clear the field, which is what `optional` prevents.
            Fallback::Omit => return Ok(found.into_iter().find(|v| !v.is_null())),
            Fallback::None => {}
        }
        self.eval_bare(found).map(Some)
    }

    fn eval_bare(&self, mut found: Vec<Value>) -> Result<Value, MapError> {
        if !self.singular {
            return Ok(Value::Array(found));
        }
        match found.len() {
            1 => Ok(found.pop().expect("one")),
            0 => Err(MapError {
                code: codes::RUN_PATH_NO_MATCH,
                span: self.span,
                message: format!("`{}` matched nothing", self.source),
                help: format!("the field is missing from this event or step output; give a fallback with `{{ from: {0}, default: ... }}`, leave the field out with `{{ from: {0}, optional: true }}`, or guard the step with `when:`", self.source),
            }),
            n => Err(MapError {
                code: codes::RUN_PATH_NO_MATCH,
                span: self.span,
                message: format!("`{}` matched {n} values where one was expected", self.source),
                help: "select one element, e.g. with an index `[0]`".into(),
            }),
        }
    }

    /// Truthiness for `when`: matched a value that is not `false`, `null`, `""` or `0`.
    pub fn truthy(&self, ctx: &Context) -> bool {
        let found = self.matches(ctx);
        if self.singular {
            found.first().is_some_and(truthy)
        } else {
            !found.is_empty()
        }
    }
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

/// Evaluates mappings against one context; holds the context's template root so that every template of a
/// step shares one.
pub struct Evaluator<'a> {
    pub templates: &'a Templates,
    pub ctx: Arc<Context>,
    root: minijinja::Value,
}

impl<'a> Evaluator<'a> {
    pub fn new(templates: &'a Templates, ctx: Arc<Context>) -> Evaluator<'a> {
        let root = ctx.template_root();
        Evaluator { templates, ctx, root }
    }

    pub fn eval(&self, m: &Mapping) -> Result<Value, MapError> {
        match m {
            Mapping::Literal(v) => Ok(v.clone()),
            Mapping::Path(p) => p.eval(&self.ctx),
            Mapping::Template { name, typed, span } => {
                let text = self.render(name, *span)?;
                if *typed {
                    serde_json::from_str(&text).map_err(|e| MapError {
                        code: codes::RUN_TEMPLATE,
                        span: *span,
                        message: format!("the expression's value is not JSON: {e}"),
                        help: "return a number, string, list or mapping".into(),
                    })
                } else {
                    Ok(Value::String(text))
                }
            }
            Mapping::Object(fields) => {
                let mut map = serde_json::Map::with_capacity(fields.len());
                for (k, v) in fields {
                    if let Some(value) = self.eval_field(v)? {
                        map.insert(k.clone(), value);
                    }
                }
                Ok(Value::Object(map))
            }
            Mapping::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.extend(self.eval_field(item)?);
                }
                Ok(Value::Array(out))
            }
        }
    }

    /// A value as a key of a mapping or an item of a list (request query and headers too): `None` when a
    /// `{ from, optional: true }` path matched nothing or only `null`, and the key or item is to be left out.
    pub fn eval_field(&self, m: &Mapping) -> Result<Option<Value>, MapError> {
        match m {
            Mapping::Path(p) => p.eval_field(&self.ctx),
            other => self.eval(other).map(Some),
        }
    }

    /// `when`: a path's truthiness, or a template's value's.
    pub fn truthy(&self, m: &Mapping) -> Result<bool, MapError> {
        match m {
            Mapping::Path(p) => Ok(p.truthy(&self.ctx)),
            Mapping::Template { name, typed: false, span } => {
                let text = self.render(name, *span)?;
                Ok(!matches!(text.trim(), "" | "false" | "False" | "0" | "none" | "None" | "null"))
            }
            other => self.eval(other).map(|v| truthy(&v)),
        }
    }

    fn render(&self, name: &str, span: Span) -> Result<String, MapError> {
        let template = self.templates.env.get_template(name).map_err(|e| MapError {
            code: codes::RUN_TEMPLATE,
            span,
            message: format!("template missing from the plan: {e}"),
            help: "this is a bug in weft; please report it".into(),
        })?;
        template.render(&self.root).map_err(|e| MapError {
            code: codes::RUN_TEMPLATE,
            span,
            message: format!("template failed: {}", e.detail().map(str::to_string).unwrap_or_else(|| e.to_string())),
            help: "a variable or field the template reads is missing from this event; guard it with `| default(...)` or `is defined`".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(yaml: &str, ctx: Context) -> Result<Value, MapError> {
        let file = SourceFile::new("t.yaml", yaml);
        let node = crate::dsl::yaml::parse(&file).unwrap().unwrap();
        let mut t = Templates::new();
        let m = compile(node.get("v").unwrap(), &mut t).unwrap();
        Evaluator::new(&t, Arc::new(ctx)).eval(&m)
    }

    fn ctx() -> Context {
        let mut c = Context {
            trigger: Arc::new(
                serde_json::json!({"amount": 12345, "email": "a@example.com", "tags": ["x", "y"], "items": [{"id": 1}, {"id": 2}]}),
            ),
            ..Context::default()
        };
        c.steps.insert("find".into(), Arc::new(serde_json::json!({"contact": {"id": "c1"}})));
        c
    }

    #[test]
    fn builds_objects_from_paths_templates_and_literals() {
        let v = eval(
            "v: { id: $.steps.find.contact.id, major: '${{ trigger.amount / 100 }}', note: 'Paid ${{ trigger.amount / 100 }}', tags: '$.trigger.tags[*]', fixed: { literal: $.x }, n: 3 }",
            ctx(),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "c1", "major": 123.45, "note": "Paid 123.45", "tags": ["x", "y"], "fixed": "$.x", "n": 3})
        );
    }

    #[test]
    fn singular_path_without_match_is_an_error_unless_defaulted() {
        let err = eval("v: $.trigger.phone", ctx()).unwrap_err();
        assert_eq!(err.code, codes::RUN_PATH_NO_MATCH);
        assert_eq!(err.span, Span::new(3, 18));
        assert_eq!(eval("v: { from: $.trigger.phone, default: none }", ctx()).unwrap(), Value::String("none".into()));
        assert_eq!(eval("v: \"$.trigger.items[?@.id > 1].id\"", ctx()).unwrap(), serde_json::json!([2]));
    }

    #[test]
    fn filters_may_compare_with_other_parts_of_the_context() {
        let v = eval("v: \"$.trigger.items[?@.id == $.steps.find.n].id\"", {
            let mut c = ctx();
            c.steps.insert("find".into(), Arc::new(serde_json::json!({"n": 2})));
            c
        })
        .unwrap();
        assert_eq!(v, serde_json::json!([2]));
        assert_eq!(eval("v: '${{ \"2024-06-01T00:00:35Z\" | unix }}'", ctx()).unwrap(), serde_json::json!(1717200035));
    }

    #[test]
    fn optional_path_leaves_its_key_out_of_an_object() {
        let v = eval("v: { email: $.trigger.email, phone: { from: $.trigger.phone, optional: true }, n: 1 }", ctx());
        assert_eq!(v.unwrap(), serde_json::json!({"email": "a@example.com", "n": 1}));
        // Nested objects too; the enclosing object stays, even when it ends up empty.
        let v = eval("v: { contact: { phone: { from: $.trigger.phone, optional: true } } }", ctx()).unwrap();
        assert_eq!(v, serde_json::json!({"contact": {}}));
        // A matched value is sent.
        let v = eval("v: { email: { from: $.trigger.email, optional: true } }", ctx()).unwrap();
        assert_eq!(v, serde_json::json!({"email": "a@example.com"}));
    }

    #[test]
    fn optional_path_leaves_its_item_out_of_an_array() {
        let v = eval(
            "v: [a, { from: $.trigger.phone, optional: true }, { from: '$.trigger.tags[1]', optional: true }]",
            ctx(),
        );
        assert_eq!(v.unwrap(), serde_json::json!(["a", "y"]));
        // A non-singular path yields its first match, like `{ from, default }`.
        let v = eval(
            "v: [{ from: '$.trigger.items[*].id', optional: true }, { from: '$.trigger.none[*]', optional: true }]",
            ctx(),
        );
        assert_eq!(v.unwrap(), serde_json::json!([1]));
    }

    #[test]
    fn optional_path_leaves_out_a_null_that_is_in_the_data() {
        let null_phone = || {
            let mut c = ctx();
            c.trigger = Arc::new(serde_json::json!({"phone": null, "nested": {"x": null}, "tags": ["a"]}));
            c
        };
        let v = eval(
            "v: { phone: { from: $.trigger.phone, optional: true }, x: { from: $.trigger.nested.x, optional: true }, n: 1 }",
            null_phone(),
        );
        assert_eq!(v.unwrap(), serde_json::json!({"n": 1}));
        // In a list too.
        let v = eval(
            "v: [{ from: $.trigger.phone, optional: true }, { from: '$.trigger.tags[0]', optional: true }]",
            null_phone(),
        );
        assert_eq!(v.unwrap(), serde_json::json!(["a"]));
        // A bare path and `{ from, default }` send the null: that is how a flow sends an explicit null.
        let v = eval(
            "v: { a: $.trigger.phone, b: { from: $.trigger.phone, default: x }, c: { from: $.trigger.phone } }",
            null_phone(),
        );
        assert_eq!(v.unwrap(), serde_json::json!({"a": null, "b": null, "c": null}));
    }

    #[test]
    fn optional_path_over_several_matches_sends_the_first_real_value() {
        let mut c = ctx();
        c.trigger = Arc::new(serde_json::json!({"phones": [null, "+1555", null], "none": [null, null]}));
        let v = eval(
            "v: { a: { from: '$.trigger.phones[*]', optional: true }, b: { from: '$.trigger.none[*]', optional: true } }",
            c,
        );
        assert_eq!(v.unwrap(), serde_json::json!({"a": "+1555"}));
    }

    #[test]
    fn optional_path_over_a_computed_null_leaves_it_out() {
        // A template computes a value that may be `null` (a name with no last part); mapping it from where it
        // was computed with `optional: true` leaves the null out: no syntax beyond `{ from }` is needed.
        let mut c = ctx();
        c.vars = Arc::new(serde_json::json!({"first": "Geoff", "last": null}));
        let v = eval(
            "v: { firstName: { from: $.vars.first, optional: true }, lastName: { from: $.vars.last, optional: true } }",
            c,
        );
        assert_eq!(v.unwrap(), serde_json::json!({"firstName": "Geoff"}));
        assert_eq!(eval("v: '${{ none }}'", ctx()).unwrap(), Value::Null);
    }

    #[test]
    fn optional_false_is_a_plain_from() {
        let v = eval("v: { phone: { from: $.trigger.phone, optional: false } }", ctx()).unwrap();
        assert_eq!(v, serde_json::json!({"phone": null}));
    }

    #[test]
    fn optional_with_nothing_to_leave_it_out_of_is_an_error_not_a_panic() {
        // The validator rejects this; a mapping file given to `weft map` is not validated, so evaluation says it.
        let err = eval("v: { from: $.trigger.phone, optional: true }", ctx()).unwrap_err();
        assert_eq!(err.code, codes::RUN_PATH_NO_MATCH);
        assert!(err.message.contains("no mapping or list to be left out of"), "{}", err.message);
        let null_phone = Context { trigger: Arc::new(serde_json::json!({"phone": null})), ..Context::default() };
        let err = eval("v: { from: $.trigger.phone, optional: true }", null_phone).unwrap_err();
        assert!(err.message.contains("or only `null`"), "{}", err.message);
        assert_eq!(eval("v: { from: $.trigger.email, optional: true }", ctx()).unwrap(), "a@example.com");
    }

    #[test]
    fn default_and_optional_together_do_not_compile() {
        let file = SourceFile::new("t.yaml", "v: { phone: { from: $.trigger.phone, default: null, optional: true } }");
        let node = crate::dsl::yaml::parse(&file).unwrap().unwrap();
        let err = compile(node.get("v").unwrap(), &mut Templates::new()).unwrap_err();
        assert_eq!(err.code, codes::FLOW_VALUE_FROM);
        assert!(err.help_text().contains("keep one"), "{}", err.help_text());
        // `optional` takes a boolean only: `"true"` and `yes` are strings, not a quiet `false`.
        for text in ["v: { from: $.x, optional: 'true' }", "v: { from: $.x, optional: yes }"] {
            let file = SourceFile::new("t.yaml", text);
            let node = crate::dsl::yaml::parse(&file).unwrap().unwrap();
            let err = compile(node.get("v").unwrap(), &mut Templates::new()).unwrap_err();
            assert_eq!(err.code, codes::FLOW_VALUE_FROM, "{text}");
        }
    }

    #[test]
    fn strict_templates_fail_on_missing_fields() {
        let err = eval("v: 'x ${{ trigger.nope }}'", ctx()).unwrap_err();
        assert_eq!(err.code, codes::RUN_TEMPLATE);
    }
}
