//! `weft validate`: render the report in the chosen format and pick the exit code.

use std::path::PathBuf;

use super::{Format, EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::diag::{codes, render};
use crate::validate::{validate_paths, Report};

pub fn run(paths: &[PathBuf], format: Format, deny_warnings: bool, color: bool) -> i32 {
    let report = validate_paths(paths);
    out!("{}", render_report(&report, format, color));
    exit_code(&report, deny_warnings)
}

/// Everything `weft validate` prints to stdout for a report.
pub fn render_report(report: &Report, format: Format, color: bool) -> String {
    let mut out = String::new();
    match format {
        Format::Human => {
            for d in &report.diagnostics {
                out.push_str(&render::human(d, render::Human { color, width: 100 }));
                out.push('\n');
            }
            out.push_str(&summary(report));
            out.push('\n');
        }
        Format::Json => {
            let doc = serde_json::json!({
                "flows": report.flows,
                "projects": report.projects,
                "errors": report.errors(),
                "warnings": report.warnings(),
                "diagnostics": report.diagnostics.iter().map(render::json).collect::<Vec<_>>(),
            });
            out.push_str(&super::pretty(&doc));
            out.push('\n');
        }
        Format::Github => {
            for d in &report.diagnostics {
                out.push_str(&render::github(d));
                out.push('\n');
            }
            out.push_str(&summary(report));
            out.push('\n');
        }
    }
    out
}

fn summary(report: &Report) -> String {
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!(
        "{} checked: {}, {}",
        plural(report.flows, "flow"),
        plural(report.errors(), "error"),
        plural(report.warnings(), "warning")
    )
}

pub fn exit_code(report: &Report, deny_warnings: bool) -> i32 {
    // A path that does not exist is a usage error, not an invalid flow.
    let only_io = !report.diagnostics.is_empty()
        && report.diagnostics.iter().filter(|d| d.is_error()).all(|d| d.code == codes::FILE_IO && d.file.is_none());
    if report.errors() > 0 && only_io {
        EXIT_USAGE
    } else if report.errors() > 0 || (deny_warnings && report.warnings() > 0) {
        EXIT_INVALID
    } else {
        EXIT_OK
    }
}
