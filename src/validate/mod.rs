//! `weft validate`: find flows and project files, load each project's catalog once, and check every file,
//! collecting every problem of every file.
//!
//! Two layers per file (DESIGN.md "Validation"): the shape against the generated JSON Schema
//! ([`crate::dsl::shape`]), then meaning against the catalog and the project ([`flow`], [`project`]).

mod flow;
mod project;
mod secrets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::catalog::Catalog;
use crate::diag::{codes, Diagnostic, Sink};
use crate::dsl::flow::Flow;
use crate::dsl::{load, shape};
use crate::source::SourceFile;
pub use flow::template_env;
pub use project::{ConnectionInfo, ProjectContext};

/// The project file name, looked up from each flow's directory upwards.
pub const PROJECT_FILE: &str = "weft.yaml";

/// The built-in catalog, loaded once per process.
pub fn builtin_catalog() -> Result<&'static Catalog, &'static [Diagnostic]> {
    static CATALOG: OnceLock<Result<Catalog, Vec<Diagnostic>>> = OnceLock::new();
    CATALOG.get_or_init(Catalog::builtin).as_ref().map_err(Vec::as_slice)
}

/// The outcome of validating a set of paths.
#[derive(Debug, Default)]
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
    /// Flow files checked.
    pub flows: usize,
    /// Project files checked.
    pub projects: usize,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// Validate files and directories (recursively: every `*.yaml`/`*.yml` except test-case folders).
pub fn validate_paths(paths: &[PathBuf]) -> Report {
    let mut report = Report::default();
    let mut flows = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect(path, &mut flows, &mut report.diagnostics);
        } else if path.is_file() {
            flows.push(path.clone());
        } else {
            report.diagnostics.push(Diagnostic::error(codes::FILE_IO, format!("`{}` does not exist", path.display())));
        }
    }
    flows.sort();
    flows.dedup();

    let mut projects: BTreeMap<Option<PathBuf>, ProjectContext> = BTreeMap::new();
    for path in flows {
        let is_project = path.file_name().is_some_and(|n| n == PROJECT_FILE);
        let project_path = if is_project { Some(path.clone()) } else { find_project(&path) };
        let ctx = projects.entry(project_path.clone()).or_insert_with(|| {
            let ctx = ProjectContext::load(project_path.as_deref());
            report.projects += usize::from(project_path.is_some());
            report.diagnostics.extend(ctx.diagnostics.iter().cloned());
            ctx
        });
        if is_project {
            continue;
        }
        report.flows += 1;
        match load::read(&path) {
            Ok(file) => report.diagnostics.extend(validate_flow(&file, ctx)),
            Err(d) => report.diagnostics.push(d),
        }
    }
    report
}

/// Check one flow source against a project. Diagnostics come back ordered by position.
pub fn validate_flow(file: &SourceFile, ctx: &ProjectContext) -> Vec<Diagnostic> {
    let root = match load::parse(file) {
        Ok(root) => root,
        Err(d) => return d,
    };
    let mut sink = Sink::new(file);
    let json = shape::check(shape::Format::Flow, &root, &mut sink);
    // With the shape's problems reported (and unknown keys dropped), check meaning whenever the model can
    // still be read; a type error deep in the tree is reported once by the shape layer, not again here.
    match serde_json::from_value::<Flow>(json) {
        Ok(model) => flow::check(&root, &model, ctx, &mut sink),
        Err(e) if !sink.has_errors() => {
            sink.error(codes::SCHEMA_INVALID, root.span, format!("the flow does not match the format: {e}"), "here");
        }
        Err(_) => {}
    }
    let mut out = sink.diagnostics;
    out.sort_by_key(|d| d.primary_span().map(|s| s.start));
    out
}

/// The flow files among `paths` (files as given, directories searched as `weft validate` searches them),
/// without project files: what `weft serve` compiles. Unreadable directories are skipped here; `validate`
/// reports them.
pub fn flow_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut ignored = Vec::new();
    for p in paths {
        if p.is_file() {
            out.push(p.clone());
        } else {
            collect(p, &mut out, &mut ignored);
        }
    }
    out.retain(|p| p.file_name().is_none_or(|n| n != PROJECT_FILE));
    out.sort();
    out
}

/// The nearest `weft.yaml` in the file's directory or above it.
pub fn find_project(file: &Path) -> Option<PathBuf> {
    let start = file.parent()?;
    let start = if start.as_os_str().is_empty() { Path::new(".") } else { start };
    let absolute = start.canonicalize().ok()?;
    let mut relative = start.to_path_buf();
    for dir in absolute.ancestors() {
        if dir.join(PROJECT_FILE).is_file() {
            // Keep the path relative when the user gave a relative one: diagnostics print it.
            let candidate = relative.join(PROJECT_FILE);
            return Some(if candidate.is_file() { clean(&candidate) } else { dir.join(PROJECT_FILE) });
        }
        relative.push("..");
    }
    None
}

fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if out.file_name().is_some_and(|n| n != "..") => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Directories whose YAML files are not flows: test cases and cassettes beside flows, connector folders
/// (checked when the catalog loads them), dot-folders.
fn is_skipped_dir(name: &str) -> bool {
    name.starts_with('.')
        || matches!(name, "tests" | "cassettes" | "fixtures" | "connectors" | "target" | "node_modules")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>, diagnostics: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diagnostics
                .push(Diagnostic::error(codes::FILE_IO, format!("cannot read directory `{}`: {e}", dir.display())));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.is_dir() {
            if !is_skipped_dir(&name) {
                collect(&path, out, diagnostics);
            }
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(path);
        }
    }
}
