//! What a value in a flow means: a JSONPath, a `${{ }}` template, or a literal.
//!
//! The rule is textual and small on purpose, so that a reader of the YAML can tell without running
//! anything: a string that is `$` or starts with `$.` / `$[` is a JSONPath over the run context; a string
//! holding `${{` is a template; `{ literal: ... }` is always a literal; `{ from: PATH, default: VALUE }` is a
//! path with a fallback and `{ from: PATH, optional: true }` a path whose value is left out of its mapping or
//! list when it matches nothing or only `null` (it sends only a real value); every other scalar is a literal;
//! mappings and lists map element by element.
//! A string with only `${% %}` blocks is a template too.

use super::yaml::{Kind, Node};

/// The roots of the run context a path or template may read.
pub const ROOTS: &[&str] = &["trigger", "steps", "vars", "connections", "event", "item", "index"];

/// Template delimiters. `${{ }}` cannot clash with YAML flow mappings or with text that merely has braces.
pub const TEMPLATE_START: &str = "${{";

/// The keys of a `{ from: ... }` value.
pub const FROM_KEYS: &[&str] = &["from", "default", "optional"];

/// How a single value node is to be read.
#[derive(Debug, PartialEq)]
pub enum ValueKind<'a> {
    /// A JSONPath (the string, whole).
    Path(&'a str),
    /// A `{ from: $.x }` value: a path with a fallback (`default: 0`), or one that is left out of its mapping
    /// or list when it matches nothing or only `null` (`optional: true`). The nodes are as written: the validator checks
    /// that `optional` is a boolean and does not come with `default`.
    From { path: &'a Node, default: Option<&'a Node>, optional: Option<&'a Node> },
    /// A `${{ }}` template.
    Template(&'a str),
    /// A literal scalar, or `{ literal: ... }` (the inner node).
    Literal(&'a Node),
    /// A mapping whose values map one by one.
    Map,
    /// A list whose elements map one by one.
    List,
}

/// `optional: true` as written: only the YAML boolean `true` leaves a value out.
pub fn is_optional(optional: Option<&Node>) -> bool {
    optional.is_some_and(|n| n.kind == Kind::Bool(true))
}

pub fn is_path(s: &str) -> bool {
    s == "$" || s.starts_with("$.") || s.starts_with("$[")
}

pub fn is_template(s: &str) -> bool {
    s.contains(TEMPLATE_START) || s.contains("${%")
}

pub fn classify(node: &Node) -> ValueKind<'_> {
    match &node.kind {
        Kind::Str { value, .. } if is_path(value) => ValueKind::Path(value),
        Kind::Str { value, .. } if is_template(value) => ValueKind::Template(value),
        Kind::Map(entries) => {
            if entries.len() == 1 && entries[0].key == "literal" {
                return ValueKind::Literal(&entries[0].value);
            }
            let from = entries.iter().find(|e| e.key == "from");
            let only_known = entries.iter().all(|e| FROM_KEYS.contains(&e.key.as_str()));
            let get = |key: &str| entries.iter().find(|e| e.key == key).map(|e| &e.value);
            match from {
                Some(f) if only_known => {
                    ValueKind::From { path: &f.value, default: get("default"), optional: get("optional") }
                }
                _ => ValueKind::Map,
            }
        }
        Kind::Seq(_) => ValueKind::List,
        _ => ValueKind::Literal(node),
    }
}

/// One step of a path's static prefix: `.name` / `['name']` or `[3]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Name(String),
    Index(i64),
}

/// The leading run of plain name and index segments of a JSONPath that already parsed, e.g.
/// `$.steps.find['contact'].tags[0][?@ == 1]` → `steps, find, contact, tags, 0`. Analysis stops at the
/// first wildcard, slice, filter or descendant segment: what follows depends on data.
pub fn static_segments(path: &str) -> Vec<Segment> {
    static_prefix(path).into_iter().map(|(s, _)| s).collect()
}

/// [`static_segments`] with the byte offset where each segment ends, so a caller can split a path into a
/// static head and the rest (`$.steps.find` + `.contact.id`). The prefix covers the whole path when the
/// last offset equals `path.len()`: the path is then singular (names and indexes only, one value at most).
pub fn static_prefix(path: &str) -> Vec<(Segment, usize)> {
    let mut out = Vec::new();
    let bytes = path.as_bytes();
    let mut i = 1; // skip `$`
    while i < bytes.len() {
        match bytes[i] {
            b'.' => {
                if bytes.get(i + 1) == Some(&b'.') {
                    break;
                }
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end] != b'.' && bytes[end] != b'[' {
                    end += 1;
                }
                let name = &path[start..end];
                if name.is_empty() || name == "*" {
                    break;
                }
                out.push((Segment::Name(name.to_string()), end));
                i = end;
            }
            b'[' => {
                let Some(close) = find_close(path, i) else { break };
                let inner = path[i + 1..close].trim();
                if let Some(name) = quoted(inner) {
                    out.push((Segment::Name(name), close + 1));
                } else if let Ok(n) = inner.parse::<i64>() {
                    out.push((Segment::Index(n), close + 1));
                } else {
                    break;
                }
                i = close + 1;
            }
            _ => break,
        }
    }
    out
}

fn find_close(path: &str, open: usize) -> Option<usize> {
    let mut quote = None;
    for (i, c) in path[open + 1..].char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ']') => return Some(open + 1 + i),
            _ => {}
        }
    }
    None
}

fn quoted(s: &str) -> Option<String> {
    let q = s.chars().next()?;
    if (q == '\'' || q == '"') && s.len() >= 2 && s.ends_with(q) {
        let inner = &s[1..s.len() - 1];
        if inner.contains(q) || inner.contains(',') {
            return None;
        }
        return Some(inner.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_static_prefix() {
        use Segment::*;
        assert_eq!(
            static_segments("$.steps.find['contact'].tags[0][?@ == 1].x"),
            vec![Name("steps".into()), Name("find".into()), Name("contact".into()), Name("tags".into()), Index(0)]
        );
        assert_eq!(static_segments("$..x"), vec![]);
        assert_eq!(static_segments("$.trigger.*"), vec![Name("trigger".into())]);
        assert_eq!(static_segments("$[\"a.b\"]"), vec![Name("a.b".into())]);
    }

    #[test]
    fn classifies() {
        let f = crate::source::SourceFile::new(
            "t",
            "a: $.x\nb: 'hi ${{ x }}'\nc: {literal: $.y}\nd: {from: $.z, default: 1}\ne: 3\nf: {from: $.z, optional: true}\ng: {from: $.z, optinal: true}\n",
        );
        let root = crate::dsl::yaml::parse(&f).unwrap().unwrap();
        assert_eq!(classify(root.get("a").unwrap()), ValueKind::Path("$.x"));
        assert!(matches!(classify(root.get("b").unwrap()), ValueKind::Template(_)));
        assert!(matches!(classify(root.get("c").unwrap()), ValueKind::Literal(n) if n.as_str() == Some("$.y")));
        assert!(matches!(classify(root.get("d").unwrap()), ValueKind::From { default: Some(_), optional: None, .. }));
        assert!(matches!(classify(root.get("e").unwrap()), ValueKind::Literal(_)));
        assert!(
            matches!(classify(root.get("f").unwrap()), ValueKind::From { default: None, optional, .. } if is_optional(optional))
        );
        // A misspelt key makes a plain mapping; the validator says which key was meant.
        assert_eq!(classify(root.get("g").unwrap()), ValueKind::Map);
    }
}
