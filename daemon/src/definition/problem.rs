//! Problems in a definition: where each one is (line, column, field path) and how a set of
//! them reads as one error. Every message the user sees about a definition goes through
//! here; nothing here decides what is a problem.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::locate;

/// A problem found outside the parser (e.g. a package apt does not know), located at the
/// field `path` (keys) of `source`.
pub fn problem_at(source: &str, path: &[&str], message: String) -> Problem {
    let segs: Vec<Seg> = path.iter().map(|k| Seg::Key((*k).to_string())).collect();
    let (line, column) = locate::Locator::new(source).value(&segs);
    Problem {
        line,
        column,
        path: render_path(&segs),
        message,
    }
}

/// One problem in a definition, located in the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted field path, e.g. `services.hello.exec` (keys with `/` or `.` quoted).
    pub path: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

/// Every problem found in a definition file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefinitionError {
    /// The file the text came from.
    pub file: PathBuf,
    /// All problems, in source order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let path = if p.path.is_empty() {
                "(document)"
            } else {
                &p.path
            };
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file.display(),
                p.line,
                p.column,
                path,
                p.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionError {}

impl DefinitionError {
    /// Always false: a definition's problems stay until someone edits the file.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// A segment of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Render a field path the way messages show it.
pub(crate) fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if k.contains(['.', '/', ' ', '"']) || k.is_empty() {
                    out.push_str(&format!("{k:?}"));
                } else {
                    out.push_str(k);
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}
