//! Writing JSON values as block-style YAML (cassettes). Strings are written as JSON strings, which YAML reads
//! back unchanged, so no value can be mistaken for another type.

use serde_json::Value;

/// Append `value` as a YAML document to `out`.
pub fn yaml(value: &Value, out: &mut String) {
    node(value, 0, out);
    if !out.ends_with('\n') {
        out.push('\n');
    }
}

fn node(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 || !out.ends_with("- ") {
                    pad(indent, out);
                }
                out.push_str(&key(k));
                out.push(':');
                child(v, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                pad(indent, out);
                out.push_str("- ");
                match item {
                    Value::Object(m) if !m.is_empty() => node(item, indent + 2, out),
                    _ => {
                        out.push_str(&scalar(item));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn child(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            node(value, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            node(value, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn pad(indent: usize, out: &mut String) {
    if out.ends_with("- ") {
        return;
    }
    for _ in 0..indent {
        out.push(' ');
    }
}

fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !k.starts_with(['-', '.']);
    if plain {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    #[test]
    fn round_trips_through_the_loader() {
        let v = serde_json::json!({
            "interactions": [{"request": {"method": "GET", "path": "/a b", "query": {"x": "1"}},
                              "response": {"status": 200, "body": {"n": 1.5, "s": "true", "e": [], "o": {}, "l": [1, {"k": null}], "weird key": "#x"}}}]
        });
        let mut text = String::new();
        yaml(&v, &mut text);
        let back = crate::dsl::yaml::parse(&SourceFile::new("c.yaml", text.clone())).unwrap().unwrap().to_json();
        assert_eq!(back, v, "{text}");
    }
}
