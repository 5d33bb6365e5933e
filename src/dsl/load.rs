//! Reading a file into a [`SourceFile`] and a YAML tree, turning every way that can fail into a diagnostic
//! with a location: unreadable, too large, not UTF-8, empty, not YAML.

use std::path::Path;

use super::yaml::{self, Node};
use crate::diag::{codes, Diagnostic};
use crate::source::{SourceFile, Span};

/// Largest file weft reads as a flow, project or connector manifest. A flow is a page or two of YAML; a
/// multi-megabyte one is a mistake (or an attack), and parsing it would only make the report slow.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// Read a file as UTF-8 text within the size limit.
pub fn read(path: &Path) -> Result<SourceFile, Diagnostic> {
    let bytes = std::fs::read(path)
        .map_err(|e| Diagnostic::error(codes::FILE_IO, format!("cannot read `{}`: {e}", path.display())))?;
    from_bytes(path, bytes)
}

pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<SourceFile, Diagnostic> {
    if bytes.len() > MAX_FILE_BYTES {
        let file = SourceFile::new(path, "");
        return Err(Diagnostic::error(
            codes::FILE_TOO_LARGE,
            format!("the file is {} bytes; weft reads at most {MAX_FILE_BYTES} bytes", bytes.len()),
        )
        .label(Span::at(0), "file starts here")
        .help("a flow is a page or two of YAML: split it into several flows, or keep data in fixtures")
        .in_file(&file));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile::new(path, text)),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            // The lossy text has the same bytes up to the first bad one, so the offset still points right.
            let file = SourceFile::new(path, text);
            Err(Diagnostic::error(codes::FILE_NOT_UTF8, "the file is not valid UTF-8")
                .label(Span::new(valid, valid + 1), "invalid byte here")
                .in_file(&file))
        }
    }
}

/// Parse a file's YAML; an empty document is a diagnostic too.
pub fn parse(file: &SourceFile) -> Result<Node, Vec<Diagnostic>> {
    match yaml::parse(file) {
        Ok(Some(node)) => Ok(node),
        Ok(None) => Err(vec![Diagnostic::error(codes::FILE_EMPTY, "the file has no content")
            .label(Span::at(0), "empty")
            .in_file(file)]),
        Err(d) => Err(d),
    }
}
