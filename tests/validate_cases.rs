//! Golden cases for `weft validate`: every `tests/cases/validate/*.yaml` is a broken flow (and every directory
//! there a project with its own broken `weft.yaml`) whose rendered report (no colour, width 80) must equal the
//! `.out` file beside it; every `tests/cases/valid/*.yaml` must
//! validate with no diagnostics at all. Adding a case is adding a file.
//!
//! Run with `WEFT_BLESS=1` to (re)write the `.out` files, then review them as a diff.

use std::path::{Path, PathBuf};

use weft::diag::render;
use weft::validate::validate_paths;

fn cases(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        // A file is a flow case; a directory is a project case (its own weft.yaml and flows).
        .filter(|p| {
            p.is_dir()
                || (p.extension().is_some_and(|e| e == "yaml") && p.file_name().is_some_and(|n| n != "weft.yaml"))
        })
        .collect();
    out.sort();
    out
}

/// The report exactly as a user sees it, with paths relative to the case directory.
fn render_case(path: &Path) -> String {
    let dir = path.parent().expect("case has a parent");
    let name = PathBuf::from(path.file_name().expect("file name"));
    // Validate with the case directory as working directory so that file names print short and stable.
    let _guard = CwdGuard::enter(dir);
    let report = validate_paths(&[name]);
    let mut out = String::new();
    for d in &report.diagnostics {
        out.push_str(&render::human(d, render::Human::plain()));
        out.push('\n');
    }
    out.push_str(&format!("errors: {}, warnings: {}\n", report.errors(), report.warnings()));
    out
}

/// Tests in this file run one at a time (the working directory is process-wide).
static CWD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct CwdGuard {
    old: PathBuf,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl CwdGuard {
    fn enter(dir: &Path) -> CwdGuard {
        let lock = CWD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let old = std::env::current_dir().expect("cwd");
        std::env::set_current_dir(dir).expect("enter case dir");
        CwdGuard { old, _lock: lock }
    }
}

impl Drop for CwdGuard {
    fn drop(&mut self) {
        let _ = std::env::set_current_dir(&self.old);
    }
}

#[test]
fn bad_flows_match_their_reviewed_reports() {
    let bless = std::env::var_os("WEFT_BLESS").is_some();
    let cases = cases("validate");
    assert!(cases.len() >= 40, "expected at least 40 bad-flow cases, found {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let actual = render_case(case);
        assert!(
            !actual.starts_with("errors: 0, warnings: 0"),
            "{}: a bad-flow case must produce a diagnostic",
            case.display()
        );
        let expected_path = case.with_extension("out");
        if bless {
            std::fs::write(&expected_path, &actual).expect("write snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!("--- {}\n+++ actual\n{}", expected_path.display(), diff(&expected, &actual)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ (WEFT_BLESS=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_code_has_a_case() {
    if std::env::var_os("WEFT_BLESS").is_some() {
        return; // the .out files are being rewritten concurrently
    }
    let mut seen = std::collections::HashSet::new();
    for case in cases("validate") {
        let out = std::fs::read_to_string(case.with_extension("out")).unwrap_or_default();
        for code in weft::diag::codes::ALL {
            if out.contains(&format!("{}\n", code.id)) {
                seen.insert(code.id);
            }
        }
    }
    // Codes that only arise from the file system or the built-in catalog are covered by unit tests.
    // `schema::invalid` is the fallback for schema keywords the formats do not use today; `run::` codes are
    // runtime failures, covered by the engine's tests; `test::` codes are about test case files, covered by
    // the `weft test` golden output (tests/flow_test_cases.rs).
    let exempt =
        ["file::io", "file::not_utf8", "file::too_large", "connector::invalid", "yaml::too_deep", "schema::invalid"];
    let missing: Vec<&str> = weft::diag::codes::ALL
        .iter()
        .map(|c| c.id)
        .filter(|id| {
            !seen.contains(id) && !exempt.contains(id) && !id.starts_with("run::") && !id.starts_with("test::")
        })
        .collect();
    assert!(missing.is_empty(), "codes without a golden case: {missing:?}");
}

#[test]
fn good_flows_validate_clean() {
    let cases = cases("valid");
    assert!(!cases.is_empty());
    for case in cases {
        let out = render_case(&case);
        assert_eq!(out, "errors: 0, warnings: 0\n", "{} should validate clean:\n{out}", case.display());
    }
}

fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!("-{x}\n"));
                }
                if let Some(y) = y {
                    out.push_str(&format!("+{y}\n"));
                }
            }
        }
    }
    out
}
