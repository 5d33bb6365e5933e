//! Rendering diagnostics for people (miette), for programs (JSON) and for GitHub Actions annotations.
//!
//! This is the only place diagnostics become text. Human output is colourless when asked (`NO_COLOR`, not a
//! TTY, snapshots) and wrapped at a fixed width so that golden files are stable.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

use super::{Diagnostic, Severity};

/// Options for human output.
#[derive(Clone, Copy, Debug)]
pub struct Human {
    pub color: bool,
    pub width: usize,
}

impl Human {
    /// Colourless, 80 columns: what snapshots and pipes get.
    pub fn plain() -> Self {
        Human { color: false, width: 80 }
    }
}

/// One diagnostic as a miette report.
pub fn human(d: &Diagnostic, opts: Human) -> String {
    let theme = if opts.color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(opts.width)
        .with_links(false)
        // Never split a word: a suggested `ghl.payments.POST:/path` must stay copyable.
        .with_break_words(false)
        .without_syntax_highlighting();
    let report = Report::new(d);
    let mut out = String::new();
    if handler.render_report(&mut out, &report).is_err() {
        // The formatter only fails on a broken Write; fall back to the one-line form rather than lose it.
        out = one_line(d);
    }
    out
}

/// `file:line:col: severity[code]: message` — for logs and terse listings.
pub fn one_line(d: &Diagnostic) -> String {
    let place = match (&d.file, d.location()) {
        (Some(f), Some((l, c))) => format!("{}:{l}:{c}: ", f.name()),
        (Some(f), None) => format!("{}: ", f.name()),
        _ => String::new(),
    };
    let sev = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    format!("{place}{sev}[{}]: {}", d.code.id, d.message)
}

/// The JSON form of one diagnostic (`--format json`): stable field names, 1-based positions, byte offsets.
#[derive(Serialize)]
pub struct JsonDiagnostic<'a> {
    pub code: &'a str,
    pub severity: Severity,
    pub message: &'a str,
    pub file: Option<&'a str>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub end_line: Option<usize>,
    pub end_column: Option<usize>,
    pub labels: Vec<JsonLabel<'a>>,
    pub help: &'a str,
}

#[derive(Serialize)]
pub struct JsonLabel<'a> {
    pub text: &'a str,
    pub line: usize,
    pub column: usize,
    pub start: usize,
    pub end: usize,
}

pub fn json(d: &Diagnostic) -> JsonDiagnostic<'_> {
    let labels = match &d.file {
        Some(f) => d
            .labels
            .iter()
            .map(|l| {
                let (line, column) = f.line_col(l.span.start);
                JsonLabel { text: &l.text, line, column, start: l.span.start, end: l.span.end }
            })
            .collect(),
        None => Vec::new(),
    };
    let end = match (&d.file, d.primary_span()) {
        (Some(f), Some(s)) => Some(f.line_col(s.end)),
        _ => None,
    };
    JsonDiagnostic {
        code: d.code.id,
        severity: d.severity,
        message: &d.message,
        file: d.file.as_ref().map(|f| f.name()),
        line: d.location().map(|l| l.0),
        column: d.location().map(|l| l.1),
        end_line: end.map(|e| e.0),
        end_column: end.map(|e| e.1),
        labels,
        help: d.help_text(),
    }
}

/// A GitHub Actions workflow command, which the runner shows as an annotation on the line.
pub fn github(d: &Diagnostic) -> String {
    let level = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut props = Vec::new();
    if let Some(f) = &d.file {
        props.push(format!("file={}", escape_property(f.name())));
        if let (Some((line, col)), Some(span)) = (d.location(), d.primary_span()) {
            let (end_line, end_col) = f.line_col(span.end);
            props.push(format!("line={line}"));
            props.push(format!("col={col}"));
            props.push(format!("endLine={end_line}"));
            if end_line == line {
                props.push(format!("endColumn={end_col}"));
            }
        }
    }
    props.push(format!("title={}", escape_property(d.code.id)));
    let message = format!("{}\nhelp: {}", d.message, d.help_text());
    format!("::{level} {}::{}", props.join(","), escape_data(&message))
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Adapts a [`Diagnostic`] to miette's trait, attaching the source text once at the edge.
struct Report<'a> {
    d: &'a Diagnostic,
    source: Option<NamedSource<String>>,
}

impl<'a> Report<'a> {
    fn new(d: &'a Diagnostic) -> Self {
        let source = d.file.as_ref().map(|f| NamedSource::new(f.name(), f.text().to_string()));
        Report { d, source }
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.d.message)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.d.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.d.code.id))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.d.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.d.help_text()))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        if self.d.labels.is_empty() {
            return None;
        }
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.d.labels.is_empty() || self.source.is_none() {
            return None;
        }
        let len = self.d.file.as_ref().map_or(0, |f| f.text().len());
        Some(Box::new(self.d.labels.iter().enumerate().map(move |(i, l)| {
            let start = l.span.start.min(len);
            let span = SourceSpan::new(start.into(), l.span.end.min(len) - start);
            let text = (!l.text.is_empty()).then(|| l.text.clone());
            if i == 0 {
                LabeledSpan::new_primary_with_span(text, span)
            } else {
                LabeledSpan::new_with_span(text, span)
            }
        })))
    }
}
