//! Reading a delivery's event type and id out of its body without building the whole document.
//!
//! Ingest needs one or two strings from a body it stores as received (`webhooks.event_type`, `event_id.path`
//! in connector.yaml). Building a `Value` of a 1 KB body to read `$.event` costs more than the rest of the
//! parse, so a path that only names object members (`$.event`, `$.payload['id']`) walks the text: each level
//! skips what it does not need and borrows the member it does. Any other JSONPath (wildcards, indexes, filters)
//! is evaluated on a parsed `Value`, as before; both give the same answer.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use serde_json_path::JsonPath;

/// A compiled `event_type` / `event_id.path`.
pub struct Lookup {
    /// The member names of a members-only path, outermost first; `None` for any other path.
    members: Option<Vec<String>>,
    path: JsonPath,
}

impl Lookup {
    /// `None` if `text` is not a JSONPath (validation reports that; ingest then reads nothing there).
    pub fn parse(text: &str) -> Option<Lookup> {
        let path = JsonPath::parse(text).ok()?;
        Some(Lookup { members: members(text), path })
    }

    /// The string at the path in `json` (one valid JSON document): the first match, if it is a string.
    pub fn string(&self, json: &str) -> Option<String> {
        match &self.members {
            Some(names) => {
                let mut node: &RawValue = serde_json::from_str(json).ok()?;
                for name in names {
                    node = member(node, name)?;
                }
                serde_json::from_str(node.get()).ok()
            }
            None => {
                let value: Value = serde_json::from_str(json).ok()?;
                self.path.query(&value).first().and_then(Value::as_str).map(str::to_string)
            }
        }
    }
}

/// `$.a.b` / `$['a']["b"]` → `["a", "b"]`: only dot-member shorthands and quoted names without escapes (anything
/// else takes the general way, which is always right, just slower).
fn members(text: &str) -> Option<Vec<String>> {
    let mut rest = text.strip_prefix('$')?;
    let mut names = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            // RFC 9535 member-name-shorthand: a name-first character, then name characters.
            let end =
                after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii())).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            names.push(name.to_string());
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("['").or_else(|| rest.strip_prefix("[\"")) {
            let quote = if rest.starts_with("['") { "']" } else { "\"]" };
            let end = after.find(quote)?;
            let name = &after[..end];
            if name.contains(['\\', '\'', '"']) {
                return None;
            }
            names.push(name.to_string());
            rest = &after[end + 2..];
        } else {
            return None;
        }
    }
    Some(names)
}

/// The member `name` of `node` if it is an object that has one (the last one when a name repeats, as a parsed
/// `Value` would keep).
fn member<'a>(node: &'a RawValue, name: &str) -> Option<&'a RawValue> {
    let mut de = serde_json::Deserializer::from_str(node.get());
    de.deserialize_any(Member { name }).ok().flatten()
}

struct Member<'n> {
    name: &'n str,
}

impl<'de> Visitor<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(Key(key)) = map.next_key()? {
            if key == self.name {
                found = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// An object key, borrowed from the text unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"event": "payment.captured", "n": 1, "payload": {"payment": {"entity": {"id": "pay_1",
        "amount": 5000}}, "list": [{"id": "a"}]}, "esc\u0061ped": "yes", "dup": "first", "dup": "last",
        "odd key": "spaced"}"#;

    /// Every path answers as serde_json_path on the parsed document does.
    #[test]
    fn member_paths_read_what_the_general_path_reads() {
        let cases = [
            ("$.event", Some("payment.captured")),
            ("$.payload.payment.entity.id", Some("pay_1")),
            ("$['payload'][\"payment\"].entity['id']", Some("pay_1")),
            ("$.payload.payment.entity.amount", None),
            ("$.n", None),
            ("$.missing", None),
            ("$.event.deeper", None),
            ("$.escaped", Some("yes")),
            ("$.dup", Some("last")),
            ("$['odd key']", Some("spaced")),
            ("$.payload.list[0].id", Some("a")),
            ("$..id", Some("pay_1")),
            ("$", None),
        ];
        let value: Value = serde_json::from_str(BODY).unwrap();
        for (path, want) in cases {
            let lookup = Lookup::parse(path).unwrap();
            let general =
                JsonPath::parse(path).unwrap().query(&value).first().and_then(Value::as_str).map(String::from);
            assert_eq!(lookup.string(BODY).as_deref(), want, "{path}");
            assert_eq!(general.as_deref(), want, "{path} (serde_json_path)");
        }
    }

    #[test]
    fn only_member_chains_take_the_walk() {
        assert_eq!(members("$.event"), Some(vec!["event".to_string()]));
        assert_eq!(members("$['a b'].c"), Some(vec!["a b".to_string(), "c".to_string()]));
        assert_eq!(members("$"), Some(vec![]));
        for general in ["$.list[0]", "$..id", "$.*", "$['a\\'b']", "$.a[?@.b]", "$.1a"] {
            assert_eq!(members(general), None, "{general}");
        }
    }
}
