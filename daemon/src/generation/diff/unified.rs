//! One file's or unit's contents as a unified diff, cut after a bound, or a line saying why it
//! cannot be shown as text (binary, or content strackt does not keep). Pure.

use super::super::{ManagedFile, ManagedUnit, Rendered};
use super::Sides;

/// Lines of one file's unified diff shown before the rest is cut (a generated config file can
/// be long; the hashes still tell that it changed).
const MAX_DIFF_LINES: usize = 400;

/// One side of a content comparison: the bytes when they are kept, and their hash.
pub(super) struct Side<'a> {
    bytes: Option<&'a [u8]>,
    sha256: &'a str,
}

pub(super) fn file_side<'a>(
    r: &'a Rendered,
    path: &str,
    file: Option<&'a ManagedFile>,
) -> Option<Side<'a>> {
    file.map(|f| Side {
        bytes: r.files.get(path).map(Vec::as_slice),
        sha256: &f.sha256,
    })
}

/// A unit a package provides has no text of strackt's: an empty side.
pub(super) fn unit_side<'a>(
    r: &'a Rendered,
    unit: &str,
    spec: Option<&'a ManagedUnit>,
) -> Option<Side<'a>> {
    spec.and_then(|u| u.sha256.as_deref()).map(|sha256| Side {
        bytes: r.units.get(unit).map(String::as_bytes),
        sha256,
    })
}

pub(super) fn firewall_side(r: &Rendered) -> Option<Side<'_>> {
    r.manifest.firewall.as_deref().map(|sha256| Side {
        bytes: r.firewall.as_deref().map(str::as_bytes),
        sha256,
    })
}

/// Why a side's content is shown by its hash only (the short hash it is named by).
#[derive(Debug, thiserror::Error)]
enum NotText {
    /// Not UTF-8.
    #[error("binary content (sha256 {0})")]
    Binary(String),
    /// A pruned generation rebuilt from a record that renders differently keeps no content.
    #[error("content not kept (sha256 {0})")]
    NotKept(String),
}

/// A unified diff of `name` between two sides (`None`: absent there), or a line saying why
/// the contents cannot be shown as text.
pub(super) fn unified(
    name: &str,
    old: Option<Side<'_>>,
    new: Option<Side<'_>>,
    sides: Sides<'_>,
) -> String {
    let text = |s: &Option<Side<'_>>| -> Result<String, NotText> {
        match s {
            None => Ok(String::new()),
            Some(Side {
                bytes: Some(b),
                sha256,
            }) => std::str::from_utf8(b)
                .map(str::to_string)
                .map_err(|_| NotText::Binary(short(sha256).to_string())),
            Some(Side {
                bytes: None,
                sha256,
            }) => Err(NotText::NotKept(short(sha256).to_string())),
        }
    };
    let (a, b) = match (text(&old), text(&new)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            let say = |r: Result<String, NotText>, present: bool| match r {
                Err(e) => e.to_string(),
                Ok(_) if present => "text".into(),
                Ok(_) => "absent".into(),
            };
            return format!(
                "    {} → {}\n",
                say(a, old.is_some()),
                say(b, new.is_some())
            );
        }
    };
    let label = |side: &str, present: bool| {
        if present {
            format!("{name}\t({side})")
        } else {
            "/dev/null".to_string()
        }
    };
    let body = similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(
            &label(sides.old, old.is_some()),
            &label(sides.new, new.is_some()),
        )
        .to_string();
    let lines: Vec<&str> = body.lines().collect();
    let mut out = String::new();
    for line in lines.iter().take(MAX_DIFF_LINES) {
        out.push_str(line);
        out.push('\n');
    }
    if lines.len() > MAX_DIFF_LINES {
        out.push_str(&format!(
            "… {} more lines of this diff not shown\n",
            lines.len() - MAX_DIFF_LINES
        ));
    }
    out
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
