//! Diagnostics as plain data: what is wrong, where, and how to fix it.
//!
//! Everything that checks user input returns [`Diagnostic`]s and never prints; only the CLI renders them
//! ([`render`]) and turns them into an exit code.

pub mod codes;
pub mod render;

use crate::source::{SourceFile, Span};
pub use codes::Code;

/// How bad a problem is. Errors make `weft validate` fail; warnings only with `--deny-warnings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A span in a file with a short text printed under it.
#[derive(Clone, Debug)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

/// One problem in one file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub code: &'static Code,
    pub severity: Severity,
    pub message: String,
    /// The file the labels point into; `None` for problems with no file (e.g. a missing directory).
    pub file: Option<SourceFile>,
    /// The first label is the primary location.
    pub labels: Vec<Label>,
    /// A precise fix for this occurrence; the code's general help is used when absent.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            file: None,
            labels: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static Code, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, message) }
    }

    pub fn in_file(mut self, file: &SourceFile) -> Self {
        self.file = Some(file.clone());
        self
    }

    pub fn label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push(Label { span, text: text.into() });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The help printed with this diagnostic: its own, or the code's general one.
    pub fn help_text(&self) -> &str {
        self.help.as_deref().unwrap_or(self.code.help)
    }

    pub fn primary_span(&self) -> Option<Span> {
        self.labels.first().map(|l| l.span)
    }

    /// 1-based line and column of the primary label.
    pub fn location(&self) -> Option<(usize, usize)> {
        let file = self.file.as_ref()?;
        Some(file.line_col(self.primary_span()?.start))
    }
}

/// Collects diagnostics for one file while a checker walks it.
#[derive(Debug)]
pub struct Sink {
    pub file: SourceFile,
    pub diagnostics: Vec<Diagnostic>,
}

impl Sink {
    pub fn new(file: &SourceFile) -> Self {
        Sink { file: file.clone(), diagnostics: Vec::new() }
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.diagnostics.push(d.in_file(&self.file));
    }

    /// Report an error at `span`; the returned diagnostic can take a `help`.
    pub fn error(
        &mut self,
        code: &'static Code,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> &mut Diagnostic {
        self.add(Diagnostic::error(code, message).label(span, label))
    }

    /// Report a warning at `span`.
    pub fn warning(
        &mut self,
        code: &'static Code,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> &mut Diagnostic {
        self.add(Diagnostic::warning(code, message).label(span, label))
    }

    fn add(&mut self, d: Diagnostic) -> &mut Diagnostic {
        self.push(d);
        self.diagnostics.last_mut().expect("just pushed")
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// The closest candidates to `name`, best first, for did-you-mean help.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&name.to_ascii_lowercase(), &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    // Only names about as close as the best one: a clear winner is shown alone.
    let best = scored.first().map_or(0.0, |s| s.0);
    scored.into_iter().take_while(|(s, _)| *s >= best - 0.05).take(3).map(|(_, c)| c).collect()
}

/// "did you mean `a`?" / "did you mean `a` or `b`?", or a list of valid values when nothing is close.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str> + Clone) -> String {
    let close = did_you_mean(name, candidates.clone());
    if !close.is_empty() {
        let quoted: Vec<String> = close.iter().map(|c| format!("`{c}`")).collect();
        return format!("did you mean {}?", quoted.join(" or "));
    }
    let all: Vec<&str> = candidates.into_iter().collect();
    match all.as_slice() {
        [] => return "there are none to choose from".to_string(),
        [only] => return format!("expected `{only}`"),
        _ => {}
    }
    let shown: Vec<String> = all.iter().take(12).map(|c| format!("`{c}`")).collect();
    let more = if all.len() > 12 { format!(" and {} more", all.len() - 12) } else { String::new() };
    format!("expected one of {}{more}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_first() {
        assert_eq!(did_you_mean("get-contcat", ["get-contact", "delete-contact", "x"]), vec!["get-contact"]);
        assert_eq!(suggest("zzz", ["a", "b"]), "expected one of `a`, `b`");
        assert_eq!(suggest("stpes", ["steps", "vars"]), "did you mean `steps`?");
    }
}
