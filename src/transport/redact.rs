//! Scrubbing what leaves the process in files: a cassette about to be written loses every value of a
//! secret-named field (tokens, passwords, API keys, webhook secrets, cookies) and every occurrence of a known
//! secret value, wherever it appears.

use serde_json::Value;

/// Field names whose values are always secrets, compared case-insensitively, ignoring `-` and `_`.
const SECRET_FIELDS: &[&str] = &[
    "authorization",
    "cookie",
    "setcookie",
    "token",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "apikey",
    "secret",
    "clientsecret",
    "webhooksecret",
    "password",
    "privatekey",
    "keysecret",
    "xapikey",
];

pub const REDACTED: &str = "[redacted]";

fn is_secret_field(name: &str) -> bool {
    let norm: String = name.chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_ascii_lowercase();
    SECRET_FIELDS.contains(&norm.as_str())
}

/// Replace secret fields and known secret values inside a JSON value.
pub fn scrub(value: &mut Value, secrets: &[String]) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_field(k) && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else {
                    scrub(v, secrets);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| scrub(i, secrets)),
        Value::String(s) => *s = scrub_text(s, secrets),
        _ => {}
    }
}

/// Replace every known secret value in a text.
pub fn scrub_text(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

/// Header names a cassette keeps: everything else (auth, cookies, request ids, dates) is noise or a secret.
pub fn keep_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(n.as_str(), "content-type" | "retry-after" | "location") || n.starts_with("x-ratelimit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_fields_and_values_anywhere() {
        let mut v = serde_json::json!({"access_token": "abc", "nested": [{"note": "key is s3cr3t-value"}], "Api-Key": "k", "ok": "fine"});
        scrub(&mut v, &["s3cr3t-value".into()]);
        assert_eq!(
            v,
            serde_json::json!({"access_token": "[redacted]", "nested": [{"note": "key is [redacted]"}], "Api-Key": "[redacted]", "ok": "fine"})
        );
    }
}
