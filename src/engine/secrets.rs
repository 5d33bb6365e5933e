//! Secrets at run time: resolving a connection's `{ env: NAME }` / `{ file: path }` references into values, and
//! the [`Redactor`] that remembers every value so that no text leaving the process carries one.
//!
//! Values are resolved only here, only when a request needs them, and never appear in an error: a missing
//! secret names the connection, the key (`auth.token`) and where it was looked for.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine as _;

use crate::dsl::project::SecretRef;
use crate::transport::redact::REDACTED;

/// Secrets shorter than this are not scrubbed from text: replacing every `a1` in a log would make it
/// unreadable, and a credential that short protects nothing (same rule as cassette scrubbing).
const MIN_REDACTED_LEN: usize = 4;

/// Where a secret was looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    /// The file as written in weft.yaml, and the path it resolved to.
    File {
        written: String,
        resolved: PathBuf,
    },
    /// The reference names neither `env` nor `file` (validation reports it; kept so the runtime never panics).
    Nowhere,
    /// weft.yaml does not set this key at all, and the connector's auth scheme needs it.
    Unconfigured,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable `{name}`"),
            SecretSource::File { written, resolved } if Path::new(written) == resolved => {
                write!(f, "file `{written}`")
            }
            SecretSource::File { written, resolved } => write!(f, "file `{written}` ({})", resolved.display()),
            SecretSource::Nowhere => f.write_str("the reference names no `env` or `file`"),
            SecretSource::Unconfigured => f.write_str("weft.yaml does not set it"),
        }
    }
}

/// A secret that could not be resolved. Its text never holds a secret value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SecretError {
    pub connection: String,
    /// The key in weft.yaml, e.g. `auth.token`.
    pub key: String,
    /// Where it was looked for.
    pub origin: SecretSource,
    /// What is wrong, e.g. `is not set`; empty when `origin` says it all.
    pub problem: String,
}

impl SecretError {
    /// The connector's auth scheme needs `key` and the connection does not set it.
    pub fn unconfigured(connection: &str, key: &str) -> Self {
        Self {
            connection: connection.to_string(),
            key: key.to_string(),
            origin: SecretSource::Unconfigured,
            problem: String::new(),
        }
    }
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection `{}`: secret `{}` is unavailable: {}", self.connection, self.key, self.origin)?;
        match self.origin {
            SecretSource::Unconfigured if self.key == "auth.header" => {
                f.write_str(" (name the header that carries the key, e.g. `auth.header: X-Api-Key`)")
            }
            SecretSource::Unconfigured => write!(f, " (add `{}: {{ env: NAME }}` to the connection)", self.key),
            _ if self.problem.is_empty() => Ok(()),
            _ => write!(f, " {}", self.problem),
        }
    }
}

/// Read one secret. `base_dir` is the directory of weft.yaml; a file's trailing newline (`\n` or `\r\n`) is
/// dropped, because editors and `echo` add one. An empty value is an error: it is always a mistake, and sending
/// `Authorization: Bearer ` only produces a confusing 401.
pub fn resolve(connection: &str, key: &str, secret: &SecretRef, base_dir: &Path) -> Result<String, SecretError> {
    let fail = |origin: SecretSource, problem: String| SecretError {
        connection: connection.to_string(),
        key: key.to_string(),
        origin,
        problem,
    };
    let (value, source) = if let Some(name) = &secret.env {
        let source = SecretSource::Env(name.clone());
        match std::env::var(name) {
            Ok(v) => (v, source),
            Err(std::env::VarError::NotPresent) => return Err(fail(source, "is not set".into())),
            Err(std::env::VarError::NotUnicode(_)) => return Err(fail(source, "is not valid UTF-8".into())),
        }
    } else if let Some(file) = &secret.file {
        let resolved = base_dir.join(file);
        let source = SecretSource::File { written: file.clone(), resolved: resolved.clone() };
        match std::fs::read_to_string(&resolved) {
            Ok(text) => {
                let trimmed = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                (trimmed.to_string(), source)
            }
            // The io error says what happened (not found, permission denied) and never echoes content.
            Err(e) => return Err(fail(source, format!("cannot be read: {e}"))),
        }
    } else {
        return Err(fail(SecretSource::Nowhere, String::new()));
    };
    if value.is_empty() {
        return Err(fail(source, "is empty".into()));
    }
    Ok(value)
}

/// Every secret value this process has seen (resolved secrets, OAuth tokens it obtained), and the forms in
/// which they travel, so that any text can be scrubbed before it is printed, logged or written.
#[derive(Debug, Default)]
pub struct Redactor {
    /// Longest first, so that a secret containing another is replaced whole.
    values: RwLock<Vec<String>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remember a secret value, plus its percent-encoded form (tokens travel in query strings and form bodies).
    pub fn add(&self, value: &str) {
        let encoded = crate::transport::encode(value);
        let mut values = self.values.write().unwrap_or_else(|e| e.into_inner());
        for v in [value.to_string(), encoded] {
            if v.len() >= MIN_REDACTED_LEN && !values.contains(&v) {
                values.push(v);
            }
        }
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// Remember Basic credentials: each part, and `base64(user:pass)` as sent in `Authorization: Basic …`.
    pub fn add_basic(&self, username: &str, password: &str) {
        self.add(username);
        self.add(password);
        self.add(&basic_token(username, password));
    }

    /// Replace every known secret in `text` with `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        out
    }

    /// Scrub every string inside a JSON value.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => *s = self.redact(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| self.redact_json(i)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.redact_json(v)),
            _ => {}
        }
    }

    /// The known values, e.g. for [`crate::transport::redact::scrub`] when a cassette is written.
    pub fn secrets(&self) -> Vec<String> {
        self.values.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// `base64(username:password)`, the credential of `Authorization: Basic`.
pub fn basic_token(username: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_secret_loses_one_trailing_newline_only() {
        let dir = std::env::temp_dir().join(format!("weft-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tok"), "abc def \r\n").unwrap();
        let r = SecretRef { env: None, file: Some("tok".into()) };
        assert_eq!(resolve("c", "auth.token", &r, &dir).unwrap(), "abc def ");
        let missing = SecretRef { env: None, file: Some("nope".into()) };
        let err = resolve("c", "auth.token", &missing, &dir).unwrap_err().to_string();
        assert!(err.starts_with("connection `c`: secret `auth.token` is unavailable: file `nope` ("), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn longest_secret_wins() {
        let r = Redactor::new();
        r.add("abcd");
        r.add("abcdefgh");
        r.add("xy");
        assert_eq!(r.redact("abcdefgh abcd xy"), "[redacted] [redacted] xy");
    }
}
