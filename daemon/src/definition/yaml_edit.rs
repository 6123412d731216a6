//! Rewriting package version strings in the definition's text, every other byte kept.
//!
//! `strackt upgrade` changes `packages.NAME` from one exact version to another in the file the
//! user maintains, so the edit must be invisible beyond those characters: comments, order,
//! layout, block or flow style (`{ … }`) and the quoting of each value stay as written. The
//! position and style of each version come from the same position pass that locates problems
//! ([`Locator::with_scalars`]); the new value is written in the old one's style (plain, 'single'
//! or "double"), quoted with double quotes when a plain scalar would not read back as that
//! string (`2.0` is a number to YAML). A value written as `latest`, a block scalar (`|`, `>`),
//! an alias or a quoted string over several lines is refused, never rewritten: `latest` moves on
//! its own when the generation is rebuilt, and the others are not what a version looks like.
//! The result is checked: parsed again, each edited package must read as its new version.

use serde_yaml::Value;
use yaml_rust2::scanner::TScalarStyle;

use super::locate::{Locator, ScalarAt};
use super::{EditError, Seg};

/// Replace the version of each `(package, new version)` in `source`.
///
/// # Errors
/// Why the text cannot be edited in place: it does not parse, a package is not under
/// `packages:`, is `latest`, or is written in a form this edit does not rewrite.
pub fn set_package_versions(source: &str, edits: &[(&str, &str)]) -> Result<String, EditError> {
    let locator = Locator::with_scalars(source).map_err(|e| EditError::Syntax(e.to_string()))?;
    let mut spans: Vec<(usize, usize, String)> = Vec::new();
    for (name, new) in edits {
        let path = [Seg::Key("packages".into()), Seg::Key((*name).to_string())];
        let at = locator
            .scalar(&path)
            .ok_or_else(|| EditError::NotAVersion((*name).to_string()))?;
        if at.value == "latest" {
            return Err(EditError::Latest((*name).to_string()));
        }
        let (start, end) = span(source, at).map_err(|why| EditError::Form {
            package: (*name).to_string(),
            why,
        })?;
        let flow = in_flow(source, start);
        spans.push((start, end, render(at.style, new, flow)));
    }
    spans.sort_by_key(|(start, _, _)| *start);
    if spans.windows(2).any(|w| w[0].1 > w[1].0) {
        return Err(EditError::Twice);
    }
    let mut out = source.to_string();
    for (start, end, text) in spans.iter().rev() {
        out.replace_range(*start..*end, text);
    }
    // What was written must read back as exactly the new versions.
    let value: Value = serde_yaml::from_str(&out).map_err(|e| EditError::Broke(e.to_string()))?;
    for (name, new) in edits {
        let got = value.get("packages").and_then(|p| p.get(*name));
        if got != Some(&Value::String((*new).to_string())) {
            return Err(EditError::ReadsBack {
                package: (*name).to_string(),
                got: format!("{got:?}"),
                new: (*new).to_string(),
            });
        }
    }
    Ok(out)
}

/// Byte range of the scalar `at` in `source`, quotes included.
fn span(source: &str, at: &ScalarAt) -> Result<(usize, usize), &'static str> {
    let line_start: usize = source
        .split_inclusive('\n')
        .take(at.line.saturating_sub(1))
        .map(str::len)
        .sum();
    let line = source[line_start..].split('\n').next().unwrap_or_default();
    let opening = match at.style {
        TScalarStyle::SingleQuoted => "'",
        TScalarStyle::DoubleQuoted => "\"",
        TScalarStyle::Plain => at.value.as_str(),
        _ => return Err("written as a block scalar (`|` or `>`); write the version on one line"),
    };
    // The column counts characters; take it as bytes too, in case the parser counted those.
    let by_chars = line
        .char_indices()
        .nth(at.column)
        .map_or(line.len(), |(i, _)| i);
    let start = [by_chars, at.column]
        .into_iter()
        .find(|i| line.get(*i..).is_some_and(|rest| rest.starts_with(opening)))
        .ok_or("its text could not be found where the parser saw it")?;
    let rest = &line[start..];
    let len = match at.style {
        TScalarStyle::Plain => {
            if at.value.is_empty() || at.value.contains('\n') {
                return Err("not a one-line version string");
            }
            at.value.len()
        }
        TScalarStyle::SingleQuoted => {
            let b = rest.as_bytes();
            let mut i = 1;
            loop {
                match b.get(i) {
                    None => return Err("a quoted string over several lines"),
                    Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => break i + 1,
                    Some(_) => i += 1,
                }
            }
        }
        _ => {
            let b = rest.as_bytes();
            let mut i = 1;
            loop {
                match b.get(i) {
                    None => return Err("a quoted string over several lines"),
                    Some(b'\\') => i += 2,
                    Some(b'"') => break i + 1,
                    Some(_) => i += 1,
                }
            }
        }
    };
    let start = line_start + start;
    let end = start + len;
    // The range must be the scalar: read alone, it is the same value.
    let alone: Result<Value, _> = serde_yaml::from_str(&source[start..end]);
    match alone {
        Ok(Value::String(s)) if s == at.value => Ok((start, end)),
        Ok(_) if at.style != TScalarStyle::Plain => Err("its quoting could not be read"),
        // A plain version such as `1.0` reads alone as a number: the text is still the value.
        Ok(_) if source[start..end] == at.value => Ok((start, end)),
        _ => Err("its text could not be read back"),
    }
}

/// Whether `at` lies inside a flow collection (`{ … }`, `[ … ]`), where `,` and brackets end a
/// plain scalar: count unquoted brackets from the start of the document.
fn in_flow(source: &str, at: usize) -> bool {
    let mut depth = 0i32;
    let mut quote: Option<u8> = None;
    let mut comment = false;
    let b = source.as_bytes();
    let mut i = 0;
    while i < at {
        let c = b[i];
        if comment {
            comment = c != b'\n';
        } else if let Some(q) = quote {
            if q == b'"' && c == b'\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                b'#' if i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t' || b[i - 1] == b'\n' => {
                    comment = true;
                }
                b'"' | b'\''
                    if i == 0
                        || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b'{' | b'[' | b',' | b':') =>
                {
                    quote = Some(c);
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth -= 1,
                _ => {}
            }
        }
        i += 1;
    }
    depth > 0
}

/// `value` written in `style`: plain when it reads back as that string there, else quoted.
fn render(style: TScalarStyle, value: &str, flow: bool) -> String {
    let double = || format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""));
    match style {
        TScalarStyle::SingleQuoted => format!("'{}'", value.replace('\'', "''")),
        TScalarStyle::Plain if plain_reads_back(value, flow) => value.to_string(),
        _ => double(),
    }
}

/// Whether `value` written plain reads back as the string `value` (not a number, a bool,
/// null, or a broken document), in block and, with `flow`, in flow context.
fn plain_reads_back(value: &str, flow: bool) -> bool {
    let reads = |doc: String| {
        serde_yaml::from_str::<Value>(&doc)
            .ok()
            .and_then(|v| v.get("k").cloned())
            == Some(Value::String(value.to_string()))
    };
    !value.is_empty()
        && value.trim() == value
        && !value.contains(['#', '\n'])
        && reads(format!("k: {value}\n"))
        && (!flow
            || (!value.contains([',', '[', ']', '{', '}']) && reads(format!("{{ k: {value} }}\n"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(src: &str, edits: &[(&str, &str)]) -> String {
        set_package_versions(src, edits).unwrap_or_else(|e| panic!("{e}\n{src}"))
    }

    #[test]
    fn only_the_version_changes_and_comments_survive() {
        let src = "version: 1\n# the web server\npackages:\n  nginx: \"1.22.1-9\"   # pinned for the CVE\n  curl: '7.88.1-10+deb12u8'\n  hello: 2.10-3\n  tzdata: latest\nfiles: {}\n";
        assert_eq!(
            edit(src, &[("nginx", "1.22.1-9+deb12u1")]),
            "version: 1\n# the web server\npackages:\n  nginx: \"1.22.1-9+deb12u1\"   # pinned for the CVE\n  curl: '7.88.1-10+deb12u8'\n  hello: 2.10-3\n  tzdata: latest\nfiles: {}\n"
        );
        // Single quotes stay single, plain stays plain, several at once.
        assert_eq!(
            edit(src, &[("hello", "2.10-3+deb12u1"), ("curl", "7.88.1-10+deb12u12")]),
            "version: 1\n# the web server\npackages:\n  nginx: \"1.22.1-9\"   # pinned for the CVE\n  curl: '7.88.1-10+deb12u12'\n  hello: 2.10-3+deb12u1\n  tzdata: latest\nfiles: {}\n"
        );
    }

    #[test]
    fn a_plain_version_that_would_read_as_a_number_is_quoted() {
        let src = "version: 1\npackages:\n  strackt-demo: 1.0-1\n";
        assert_eq!(
            edit(src, &[("strackt-demo", "2.0")]),
            "version: 1\npackages:\n  strackt-demo: \"2.0\"\n"
        );
        let src = "version: 1\npackages:\n  a: 1:2.0-1\n";
        assert_eq!(
            edit(src, &[("a", "1:2.1-1")]),
            "version: 1\npackages:\n  a: 1:2.1-1\n"
        );
    }

    #[test]
    fn flow_mappings_are_edited_in_place() {
        let src =
            "version: 1\npackages: { strackt-demo: \"1.0\", other: 3.1-2, third: '1' }  # flow\n";
        assert_eq!(
            edit(src, &[("strackt-demo", "1.1"), ("other", "3.1-2+deb12u1"), ("third", "2")]),
            "version: 1\npackages: { strackt-demo: \"1.1\", other: 3.1-2+deb12u1, third: '2' }  # flow\n"
        );
        // A plain value in a flow mapping gets quotes if it would end the mapping early.
        assert!(!plain_reads_back("1,2", true) && plain_reads_back("1-2", true));
    }

    #[test]
    fn odd_layouts_keep_their_bytes() {
        // CRLF line ends, a tab before the comment, a non-ASCII comment before the value, a key
        // quoted, the section last without a final newline.
        let src = "version: 1\r\n# für die Sicherheit\r\npackages:\r\n  \"strackt-demo\":    \"1.0\"\t# é\r\n  b: \"1.0\"";
        assert_eq!(
            edit(src, &[("strackt-demo", "1.0+deb12u1"), ("b", "9")]),
            "version: 1\r\n# für die Sicherheit\r\npackages:\r\n  \"strackt-demo\":    \"1.0+deb12u1\"\t# é\r\n  b: \"9\""
        );
        let src = "version: 1\npackages: {a: 'x', b: \"é-1\", c: \"1.0\"}\n";
        assert_eq!(
            edit(src, &[("c", "1.1")]),
            "version: 1\npackages: {a: 'x', b: \"é-1\", c: \"1.1\"}\n"
        );
    }

    #[test]
    fn what_is_not_a_rewritable_version_is_refused() {
        let error =
            |src: &str, name: &str| set_package_versions(src, &[(name, "2")]).expect_err(src);
        let refused = |src: &str, name: &str| error(src, name).to_string();
        let e = error("version: 1\npackages:\n  a: latest\n", "a");
        assert_eq!(e, EditError::Latest("a".into()));
        assert!(!e.is_transient());
        let e = e.to_string();
        assert!(e.contains("`latest`"), "{e}");
        assert!(matches!(
            error("version: 1\npackages:\n  a: [\n", "a"),
            EditError::Syntax(_)
        ));
        let e = refused("version: 1\npackages:\n  a: \"1\"\n", "b");
        assert!(e.contains("packages.b: not a version"), "{e}");
        let e = refused("version: 1\npackages:\n  a: |\n    1.0\n", "a");
        assert!(e.contains("block scalar"), "{e}");
        let e = refused("version: 1\nx: &v \"1\"\npackages:\n  a: *v\n", "a");
        assert!(e.contains("not a version string"), "{e}");
        let e = refused("version: 1\npackages:\n  a: [\n", "a");
        assert!(!e.is_empty());
        let e = refused("version: 1\nfiles:\n  a: \"1\"\n", "a");
        assert!(e.contains("packages.a"), "{e}");
    }
}
