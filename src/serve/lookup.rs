//! Checking that a delivery's body is JSON and reading its event type and id, in one pass, without building
//! the document.
//!
//! Ingest stores the body as received, and needs only one or two strings from it (`webhooks.event_type`,
//! `event_id.path` in connector.yaml). Building a `Value` of a 1 KB body for that, as the worker will later, cost
//! more than all the rest of ingest's parsing; so one pass over the text both checks it (as strictly as a `Value`
//! parse: a body the worker cannot parse must not be queued) and picks up the strings of every path that only
//! names object members (`$.event`, `$.payload['id']`). Any other JSONPath (wildcards, indexes, filters) is
//! evaluated on a parsed `Value`, as before; both ways give the same answer.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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
}

/// `body` as text if it is one JSON document that a `Value` parse accepts, with the string each lookup finds
/// in it (the first match, if it is a string), in the order of `lookups`.
pub fn read<'b>(
    body: &'b [u8],
    lookups: &[Option<&Lookup>],
) -> Result<(&'b str, Vec<Option<String>>), serde_json::Error> {
    let text = std::str::from_utf8(body).map_err(<serde_json::Error as de::Error>::custom)?;
    let mut found = vec![None; lookups.len()];
    let chains: Vec<(usize, &[String])> =
        lookups.iter().enumerate().filter_map(|(i, lookup)| Some((i, lookup.as_ref()?.members.as_deref()?))).collect();
    let mut de = serde_json::Deserializer::from_str(text);
    Node { paths: chains, found: &mut found }.deserialize(&mut de)?;
    de.end()?;
    if lookups.iter().flatten().any(|lookup| lookup.members.is_none()) {
        let value: Value = serde_json::from_str(text)?;
        for (slot, lookup) in found.iter_mut().zip(lookups) {
            if let Some(lookup) = lookup.filter(|l| l.members.is_none()) {
                *slot = lookup.path.query(&value).first().and_then(Value::as_str).map(str::to_string);
            }
        }
    }
    Ok((text, found))
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

/// One value of the document, and the member chains still to follow from it: `(lookup, names left)`; a chain
/// with no names left ends here. Values no chain goes through are read the same way with no chains, which checks
/// them exactly as a `Value` parse would (escapes, surrogates, number range), without keeping anything.
struct Node<'p, 'f> {
    paths: Vec<(usize, &'p [String])>,
    found: &'f mut [Option<String>],
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        for (i, rest) in &self.paths {
            if rest.is_empty() {
                self.found[*i] = Some(v.to_string());
            }
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Node { paths: Vec::new(), found: &mut *self.found })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key()? {
            let deeper: Vec<(usize, &[String])> = self
                .paths
                .iter()
                .filter(|(_, rest)| rest.first().is_some_and(|name| *name == key))
                .map(|(i, rest)| (*i, &rest[1..]))
                .collect();
            // A repeated name: the last one counts, as in a parsed `Value`.
            for (i, _) in &deeper {
                self.found[*i] = None;
            }
            map.next_value_seed(Node { paths: deeper, found: &mut *self.found })?;
        }
        Ok(())
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
        "gone": {"id": "x"}, "gone": 5, "odd key": "spaced", "big": 1e300, "deep": [[{"e": "\n\ud83d\ude00"}]]}"#;

    /// Every path answers as serde_json_path on the parsed document does, alone or together with another.
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
            ("$.gone.id", None),
            ("$['odd key']", Some("spaced")),
            ("$.payload.list[0].id", Some("a")),
            ("$..id", Some("pay_1")),
            ("$", None),
        ];
        let value: Value = serde_json::from_str(BODY).unwrap();
        let event = Lookup::parse("$.event").unwrap();
        for (path, want) in cases {
            let lookup = Lookup::parse(path).unwrap();
            let general =
                JsonPath::parse(path).unwrap().query(&value).first().and_then(Value::as_str).map(String::from);
            assert_eq!(general.as_deref(), want, "{path} (serde_json_path)");
            let (text, found) = read(BODY.as_bytes(), &[Some(&lookup), None, Some(&event)]).unwrap();
            assert_eq!(text, BODY);
            assert_eq!(found, [want.map(String::from), None, Some("payment.captured".into())], "{path}");
        }
    }

    /// What a `Value` parse refuses is refused here too: the worker must be able to parse what ingest queued.
    #[test]
    fn refuses_what_a_value_parse_refuses() {
        let event = Lookup::parse("$.event").unwrap();
        let general = Lookup::parse("$..event").unwrap();
        for body in [
            "",
            "{",
            "{\"event\": \"a\"} x",
            "{\"event\": \"a\",}",
            "{\"x\": \"\\ud800\"}",
            "{\"x\": [\"\\udc00 lone\"]}",
            "{\"x\": 1e400}",
            "{\"x\": \"\\q\"}",
            "{\"x\": \"tab\there\"}",
            "[01]",
        ] {
            assert!(serde_json::from_str::<Value>(body).is_err(), "{body:?} parses as a Value");
            for lookups in [[Some(&event)], [Some(&general)], [None]] {
                assert!(read(body.as_bytes(), &lookups).is_err(), "{body:?} was accepted");
            }
        }
        assert!(read(b"{\"x\": \"\xff\"}", &[Some(&event)]).is_err(), "not UTF-8");
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(serde_json::from_str::<Value>(&deep).is_err());
        assert!(read(deep.as_bytes(), &[None]).is_err(), "nesting past serde_json's limit");
        assert!(read(b" \n{\"event\": \"a\"}\n", &[Some(&event)]).is_ok());
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
