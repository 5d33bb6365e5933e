//! YAML text → a tree of [`Node`]s that each keep their byte [`Span`].
//!
//! Built on saphyr-parser's event stream rather than a ready-made tree so that the loader owns the rules a
//! validator needs: every duplicate key is reported (not only the first), nesting and alias expansion are
//! bounded (a hostile file cannot blow the stack or memory), tags and multi-document files get a
//! diagnostic, and spans are byte offsets that miette can point with.

use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan, SpannedEventReceiver, Tag};

use crate::diag::{codes, Diagnostic};
use crate::source::{SourceFile, Span};

/// Deepest nesting of mappings and sequences a file may have.
pub const MAX_DEPTH: usize = 64;
/// Most nodes that alias expansion may create in one file (billion-laughs defence).
pub const MAX_ALIAS_NODES: usize = 10_000;

/// A YAML node and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string; `plain` is false when it was quoted or a block scalar.
    Str {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping; the key keeps its own span.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str { value, .. } => Some(value),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The entry for `key` when this is a mapping.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// The node at a JSON pointer (`/steps/0/call`), with the span of the deepest node found on the way:
    /// a pointer into generated data still lands on the nearest thing the user wrote.
    pub fn at_pointer(&self, pointer: &str) -> (&Node, Option<&Entry>) {
        let mut node = self;
        let mut entry = None;
        for raw in pointer.split('/').skip(1) {
            let token = raw.replace("~1", "/").replace("~0", "~");
            let next = match &node.kind {
                Kind::Map(entries) => entries.iter().find(|e| e.key == token).map(|e| {
                    entry = Some(e);
                    &e.value
                }),
                Kind::Seq(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        (node, entry)
    }

    /// A short name of the node's type for messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "boolean",
            Kind::Int(_) => "integer",
            Kind::Float(_) => "number",
            Kind::Str { .. } => "string",
            Kind::Seq(_) => "list",
            Kind::Map(_) => "mapping",
        }
    }

    /// The JSON value this node stands for (what the shape schema checks and serde deserialises).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Kind::Str { value, .. } => Value::String(value.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(entries.iter().map(|e| (e.key.clone(), e.value.to_json())).collect()),
        }
    }
}

/// Parse one YAML document. An empty document is `Ok(None)`; problems come back as diagnostics, all of them
/// when the parser could go on (duplicate keys), the first otherwise (a syntax error stops the parser).
pub fn parse(file: &SourceFile) -> Result<Option<Node>, Vec<Diagnostic>> {
    let text = file.text();
    let mut loader = Loader::new(text);
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut loader, true) {
        let at = loader.offsets.byte(e.marker().index());
        // The parser has its own nesting bound (hit before ours on flow collections); same problem, same code.
        let d = if e.info().contains("recursion limit") {
            Diagnostic::error(codes::YAML_TOO_DEEP, format!("nesting deeper than the parser allows ({})", e.info()))
                .label(Span::at(at), "too deep here")
        } else {
            let d = Diagnostic::error(codes::YAML_SYNTAX, format!("invalid YAML: {}", e.info()))
                .label(Span::at(at), e.info().to_string());
            syntax_help(d, file.text(), at, e.info())
        }
        .in_file(file);
        loader.diagnostics.push(d);
    }
    if !loader.diagnostics.is_empty() {
        return Err(loader.diagnostics.into_iter().map(|d| d.in_file(file)).collect());
    }
    Ok(loader.document)
}

/// The usual causes of a parser error, said in words: tabs, and unquoted JSONPaths inside `{ }`.
fn syntax_help(d: Diagnostic, text: &str, at: usize, info: &str) -> Diagnostic {
    let line_start = text[..at.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let next_line_end = text[at.min(text.len())..].find('\n').map_or(text.len(), |i| {
        let after = at + i + 1;
        text[after.min(text.len())..].find('\n').map_or(text.len(), |j| after + j)
    });
    let nearby = &text[line_start..next_line_end.max(line_start)];
    if let Some(tab) = nearby.find('\t') {
        let tab_at = line_start + tab;
        return d
            .label(Span::new(tab_at, tab_at + 1), "a tab")
            .help("YAML does not allow tabs for indentation: indent with spaces");
    }
    if info.contains("flow") {
        return d.help("inside `{ }` and `[ ]`, quote values that contain `[`, `]`, `{`, `}` or `,`, e.g. `tags: '$.trigger.tags[*]'`");
    }
    d
}

/// Character index → byte offset. saphyr's markers count characters; miette wants bytes.
struct Offsets {
    /// Byte offset of each character; empty when the text is ASCII (then index == offset).
    table: Vec<usize>,
    len: usize,
}

impl Offsets {
    fn new(text: &str) -> Self {
        let table = if text.is_ascii() { Vec::new() } else { text.char_indices().map(|(i, _)| i).collect() };
        Offsets { table, len: text.len() }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.table.is_empty() {
            char_index.min(self.len)
        } else {
            self.table.get(char_index).copied().unwrap_or(self.len)
        }
    }

    fn span(&self, s: YSpan) -> Span {
        Span::new(self.byte(s.start.index()), self.byte(s.end.index()))
    }
}

/// A mapping or sequence being built.
enum Open {
    Seq { start: usize, items: Vec<Node>, anchor: usize },
    Map { start: usize, entries: Vec<Entry>, pending_key: Option<(String, Span)>, anchor: usize },
}

struct Loader {
    offsets: Offsets,
    stack: Vec<Open>,
    document: Option<Node>,
    documents: usize,
    anchors: Vec<(usize, Node)>,
    alias_nodes: usize,
    /// Containers opened past MAX_DEPTH that we are skipping; their content is ignored.
    skipped_depth: usize,
    diagnostics: Vec<Diagnostic>,
    stopped: bool,
}

impl Loader {
    fn new(text: &str) -> Self {
        Loader {
            offsets: Offsets::new(text),
            stack: Vec::new(),
            document: None,
            documents: 0,
            anchors: Vec::new(),
            alias_nodes: 0,
            skipped_depth: 0,
            diagnostics: Vec::new(),
            stopped: false,
        }
    }

    fn stop(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
        self.stopped = true;
    }

    fn reject_tag(&mut self, tag: &Option<Cow<'_, Tag>>, span: Span) -> bool {
        match tag {
            Some(t) => {
                self.stop(
                    Diagnostic::error(codes::YAML_UNSUPPORTED, format!("YAML tags are not supported (`{t}`)"))
                        .label(span, "tag here")
                        .help("remove the tag; weft reads plain YAML values"),
                );
                true
            }
            None => false,
        }
    }

    /// Attach a finished node to its parent (or make it the document).
    fn insert(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.document = Some(node),
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { entries, pending_key, .. }) => match pending_key.take() {
                None => match &node.kind {
                    Kind::Str { value, .. } => *pending_key = Some((value.clone(), node.span)),
                    Kind::Null | Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) => {
                        *pending_key = Some((scalar_key(&node), node.span))
                    }
                    Kind::Seq(_) | Kind::Map(_) => {
                        let d = Diagnostic::error(codes::YAML_UNSUPPORTED, "mapping keys must be plain strings")
                            .label(node.span, "complex key")
                            .help("use a string key");
                        self.stop(d);
                    }
                },
                Some((key, key_span)) => {
                    if let Some(first) = entries.iter().find(|e| e.key == key) {
                        let d = Diagnostic::error(codes::YAML_DUPLICATE_KEY, format!("duplicate key `{key}`"))
                            .label(key_span, "defined again here")
                            .label(first.key_span, "first defined here");
                        self.diagnostics.push(d);
                    } else {
                        entries.push(Entry { key, key_span, value: node });
                    }
                }
            },
        }
    }

    fn open(&mut self, span: Span, anchor: usize, seq: bool) {
        if self.skipped_depth > 0 || self.stack.len() >= MAX_DEPTH {
            if self.skipped_depth == 0 {
                self.stop(
                    Diagnostic::error(codes::YAML_TOO_DEEP, format!("nesting deeper than {MAX_DEPTH} levels"))
                        .label(span, "too deep from here"),
                );
            }
            self.skipped_depth += 1;
            return;
        }
        self.stack.push(if seq {
            Open::Seq { start: span.start, items: Vec::new(), anchor }
        } else {
            Open::Map { start: span.start, entries: Vec::new(), pending_key: None, anchor }
        });
    }

    fn close(&mut self, end: usize) {
        if self.skipped_depth > 0 {
            self.skipped_depth -= 1;
            return;
        }
        let Some(open) = self.stack.pop() else { return };
        let (node, anchor) = match open {
            Open::Seq { start, items, anchor } => {
                (Node { span: Span::new(start, end), kind: Kind::Seq(items) }, anchor)
            }
            Open::Map { start, entries, anchor, .. } => {
                (Node { span: Span::new(start, end), kind: Kind::Map(entries) }, anchor)
            }
        };
        self.insert(node, anchor);
    }

    fn alias(&mut self, id: usize, span: Span) {
        let Some(target) = self.anchors.iter().rev().find(|(a, _)| *a == id).map(|(_, n)| n.clone()) else {
            self.stop(
                Diagnostic::error(codes::YAML_SYNTAX, "alias to an unknown anchor").label(span, "unknown anchor"),
            );
            return;
        };
        self.alias_nodes += count_nodes(&target);
        if self.alias_nodes > MAX_ALIAS_NODES {
            self.stop(
                Diagnostic::error(
                    codes::YAML_UNSUPPORTED,
                    format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                )
                .label(span, "expansion limit reached here")
                .help("write the repeated part out, or use fewer aliases"),
            );
            return;
        }
        let mut node = target;
        node.span = span;
        self.insert(node, 0);
    }
}

impl<'input> SpannedEventReceiver<'input> for Loader {
    fn on_event(&mut self, ev: Event<'input>, ys: YSpan) {
        if self.stopped {
            return;
        }
        let span = self.offsets.span(ys);
        match ev {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    self.stop(
                        Diagnostic::error(codes::YAML_UNSUPPORTED, "a file holds one YAML document")
                            .label(span, "second document starts here")
                            .help("put each flow in its own file"),
                    );
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                if self.skipped_depth > 0 || self.reject_tag(&tag, span) {
                    return;
                }
                let node = Node { span, kind: resolve_scalar(value.into_owned(), style) };
                self.insert(node, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                if !self.reject_tag(&tag, span) {
                    self.open(span, anchor, true);
                }
            }
            Event::MappingStart(anchor, tag) => {
                if !self.reject_tag(&tag, span) {
                    self.open(span, anchor, false);
                }
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(span.end),
            Event::Alias(id) => {
                if self.skipped_depth == 0 {
                    self.alias(id, span)
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.kind {
        Kind::Seq(items) => items.iter().map(count_nodes).sum(),
        Kind::Map(entries) => entries.iter().map(|e| count_nodes(&e.value)).sum(),
        _ => 0,
    }
}

fn scalar_key(node: &Node) -> String {
    match &node.kind {
        Kind::Null => "null".into(),
        Kind::Bool(b) => b.to_string(),
        Kind::Int(i) => i.to_string(),
        Kind::Float(f) => f.to_string(),
        _ => String::new(),
    }
}

/// YAML 1.2 core schema resolution of a scalar. Quoted and block scalars are always strings.
fn resolve_scalar(value: String, style: ScalarStyle) -> Kind {
    if style != ScalarStyle::Plain {
        return Kind::Str { value, plain: false };
    }
    match value.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Kind::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        _ => {}
    }
    if let Some(i) = parse_int(&value) {
        return Kind::Int(i);
    }
    let looks_numeric =
        value.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) && value.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric {
        if let Ok(f) = value.parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str { value, plain: true }
}

fn parse_int(s: &str) -> Option<i64> {
    if let Some(hex) = s.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = s.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Option<Node>, Vec<Diagnostic>> {
        parse(&SourceFile::new("t.yaml", text))
    }

    #[test]
    fn keeps_byte_spans_of_keys_and_values() {
        let text = "a: 1\nb:\n  - x\n  - \"çy\"\nc: z\n";
        let root = load(text).unwrap().unwrap();
        let b = root.entry("b").unwrap();
        assert_eq!(&text[b.key_span.start..b.key_span.end], "b");
        let items = b.value.as_seq().unwrap();
        assert_eq!(&text[items[0].span.start..items[0].span.end], "x");
        let c = root.get("c").unwrap();
        assert_eq!(&text[c.span.start..c.span.end], "z");
        assert_eq!(root.get("a").unwrap().kind, Kind::Int(1));
    }

    #[test]
    fn resolves_core_schema_scalars() {
        let root = load("a: true\nb: '1'\nc: 1.5\nd: ~\ne: 0x1f\nf: 1.2.3\n").unwrap().unwrap();
        assert_eq!(root.get("a").unwrap().kind, Kind::Bool(true));
        assert_eq!(root.get("b").unwrap().as_str(), Some("1"));
        assert_eq!(root.get("c").unwrap().kind, Kind::Float(1.5));
        assert_eq!(root.get("d").unwrap().kind, Kind::Null);
        assert_eq!(root.get("e").unwrap().kind, Kind::Int(31));
        assert_eq!(root.get("f").unwrap().as_str(), Some("1.2.3"));
    }

    #[test]
    fn reports_every_duplicate_key() {
        let errs = load("a: 1\na: 2\nb: {c: 1, c: 2}\n").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs.iter().all(|d| d.code == codes::YAML_DUPLICATE_KEY));
    }

    #[test]
    fn bounds_depth_and_aliases() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(load(&deep).unwrap_err()[0].code, codes::YAML_TOO_DEEP);
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 { "a".to_string() } else { format!("l{}", i - 1) };
            bomb.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert_eq!(load(&bomb).unwrap_err()[0].code, codes::YAML_UNSUPPORTED);
    }

    #[test]
    fn rejects_second_document_and_tags() {
        assert_eq!(load("a: 1\n---\nb: 2\n").unwrap_err()[0].code, codes::YAML_UNSUPPORTED);
        assert_eq!(load("a: !foo 1\n").unwrap_err()[0].code, codes::YAML_UNSUPPORTED);
    }

    #[test]
    fn syntax_error_points_into_the_file() {
        let errs = load("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(errs[0].code, codes::YAML_SYNTAX);
        assert!(errs[0].primary_span().is_some());
    }

    #[test]
    fn empty_is_none() {
        assert_eq!(load("").unwrap(), None);
        assert_eq!(load("# only a comment\n").unwrap(), None);
    }
}
