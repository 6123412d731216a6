//! A cheap look at the text before any YAML parser sees it: a definition is at most
//! [`MAX_BYTES`] long, has at most [`MAX_ENTRIES`] entries and nests at most [`MAX_DEPTH`]
//! levels. The YAML crates take quadratic
//! time (or deep recursion) on deeply nested input — 64 KB of `[` took 28 s — so the depth is
//! measured here, in one linear pass, by a scanner that knows just enough YAML: flow
//! collections (`[`, `{`), quoted scalars, comments, block indentation, `- ` entries and block
//! scalars (`|`, `>`), whose content is text, not structure. It may overestimate the depth of
//! unusual text (never by more than the number of `- ` on a line), never underestimate it.

/// Largest definition accepted, in bytes.
pub(crate) const MAX_BYTES: usize = 1024 * 1024;

/// Deepest nesting accepted (a real definition nests fewer than 10 levels).
pub(crate) const MAX_DEPTH: usize = 64;

/// Most entries (block lines and flow items) accepted: a definition describes one server, and
/// parsing (twice: values and positions) stays well under a second below this.
pub(crate) const MAX_ENTRIES: usize = 50_000;

/// Why the text was not handed to the parser: (1-based line, 1-based column, message).
pub(crate) type Refusal = (usize, usize, String);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Check size and nesting depth.
///
/// # Errors
/// Where the limit was passed, and which.
pub(crate) fn prescan(text: &str) -> Result<(), Refusal> {
    if text.len() > MAX_BYTES {
        return Err((
            1,
            1,
            format!(
                "the definition is {} bytes; at most {} are read (1 MiB)",
                text.len(),
                MAX_BYTES
            ),
        ));
    }
    let mut quote = Quote::None;
    let mut flow = 0usize;
    // Indentation of the open block levels.
    let mut indents: Vec<usize> = Vec::new();
    // Inside a block scalar whose parent line had this indentation.
    let mut block_scalar: Option<usize> = None;
    let mut entries = 0usize;
    for (n, line) in text.split('\n').enumerate() {
        let line_no = n + 1;
        let indent = line.chars().take_while(|c| *c == ' ').count();
        let rest = &line[indent..];
        if quote == Quote::None && flow == 0 {
            if let Some(parent) = block_scalar {
                if rest.trim().is_empty() || indent > parent {
                    continue;
                }
                block_scalar = None;
            }
            let blank = rest.trim().is_empty() || rest.starts_with('#');
            if !blank {
                entries += 1;
                while indents.last().is_some_and(|top| *top > indent) {
                    indents.pop();
                }
                if indents.last() != Some(&indent) {
                    indents.push(indent);
                }
            }
        }
        let mut dashes = 0usize;
        // At the start of a token: a quote or a bracket here opens a scalar or a collection.
        let mut token_start = quote == Quote::None;
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            let spaced = |x: Option<char>| x.is_none_or(|x| x == ' ' || x == '\t' || x == '\r');
            match quote {
                Quote::Double => {
                    if c == '\\' {
                        i += 1;
                    } else if c == '"' {
                        quote = Quote::None;
                    }
                    i += 1;
                    continue;
                }
                Quote::Single => {
                    if c == '\'' {
                        quote = Quote::None;
                    }
                    i += 1;
                    continue;
                }
                Quote::None => {}
            }
            match c {
                ' ' | '\t' | '\r' => {}
                '#' if i == 0 || chars[i - 1] == ' ' || chars[i - 1] == '\t' => break,
                '[' | '{' if flow > 0 || token_start => {
                    flow += 1;
                    token_start = true;
                }
                ']' | '}' if flow > 0 => {
                    flow -= 1;
                    token_start = false;
                }
                ',' if flow > 0 => {
                    entries += 1;
                    token_start = true;
                }
                '"' if token_start => quote = Quote::Double,
                '\'' if token_start => quote = Quote::Single,
                ':' if spaced(next) || flow > 0 => token_start = true,
                '-' | '?' if token_start && spaced(next) => {
                    if flow == 0 {
                        dashes += 1;
                    }
                }
                '&' | '!' if token_start => {
                    while i + 1 < chars.len() && !matches!(chars[i + 1], ' ' | '\t') {
                        i += 1;
                    }
                }
                '|' | '>' if token_start && flow == 0 => {
                    block_scalar = Some(indent);
                    break;
                }
                _ => token_start = false,
            }
            let depth = indents.len() + dashes + flow;
            if depth > MAX_DEPTH {
                return Err((
                    line_no,
                    i + 1,
                    format!("nested more than {MAX_DEPTH} levels deep; a definition is a few levels of mappings and lists"),
                ));
            }
            i += 1;
        }
        if entries > MAX_ENTRIES {
            return Err((
                line_no,
                1,
                format!("more than {MAX_ENTRIES} entries; a definition describes one server (put large data in files it references)"),
            ));
        }
        if indents.len() + dashes > MAX_DEPTH {
            return Err((
                line_no,
                indent + 1,
                format!("nested more than {MAX_DEPTH} levels deep; a definition is a few levels of mappings and lists"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_and_block_nesting_is_refused_and_real_text_is_not() {
        assert!(prescan(&"[".repeat(65_536)).is_err());
        assert!(prescan(&"{a: ".repeat(100)).is_err());
        let block: String = (0..100)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(prescan(&block).is_err());
        assert!(prescan(&"- ".repeat(100)).is_err());
        assert!(prescan(&"a".repeat(MAX_BYTES + 1)).is_err());
        let keys: String = (0..MAX_ENTRIES + 1).map(|i| format!("k{i}: 1\n")).collect();
        assert!(prescan(&keys).is_err());
        assert!(prescan(&format!("x: [{}]", "a,".repeat(MAX_ENTRIES + 1))).is_err());
        // Brackets inside quotes, comments, plain scalars and block scalars are text.
        let ok = format!(
            "version: 1\n# {open}\nfiles:\n  /etc/a: {{ content: \"{open}\" }}\n  /etc/b: {{ content: '{open}' }}\n  /etc/c:\n    content: |\n{deep}\n    mode: \"0644\"\n  /etc/d:\n    content: a{open}\n",
            open = "[".repeat(200),
            deep = (0..100).map(|i| format!("      {}x", " ".repeat(i))).collect::<Vec<_>>().join("\n"),
        );
        assert_eq!(prescan(&ok), Ok(()));
        // A quote inside a plain scalar does not hide the brackets after it.
        assert!(prescan(&format!("a: it's\nb: {}\n", "[".repeat(100))).is_err());
    }
}
