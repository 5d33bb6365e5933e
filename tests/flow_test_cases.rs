//! Golden cases for `weft test` itself: `tests/cases/test/` is a project whose test cases pass and fail on
//! purpose (`absent:` honoured, a field sent that must be absent, a misspelt or malformed `absent:` entry, a case
//! the schema rejects, each problem at its line).
//! The whole output must equal `tests/cases/test/weft-test.out`; `WEFT_BLESS=1` rewrites it for review.

use std::path::Path;
use std::process::Command;

#[test]
fn weft_test_reports_match_the_reviewed_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/test");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["test", "tests"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run weft");
    let actual = format!(
        "{}{}exit: {}\n",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code().unwrap_or(-1)
    );
    let golden = dir.join("weft-test.out");
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::write(&golden, &actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert_eq!(expected, actual, "`weft test` output changed (WEFT_BLESS=1 rewrites {})", golden.display());
    // The failures are the ones the cases are written for, and nothing passes that should not.
    assert!(actual.contains("test cases: 2 passed, 4 failed"), "{actual}");
}
