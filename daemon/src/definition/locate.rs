//! Where each field of a YAML document is, so problems can name `LINE:COL`.
//!
//! serde_yaml only reports the position of syntax errors; validation happens on values that no
//! longer know where they came from. A second, position-aware pass over the same text with
//! yaml-rust2's event parser maps every field path to the position of its key and its value.
//! It only reads positions; it never produces the values strackt uses.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use super::Seg;

/// Positions of fields: path → (key position, value position), 1-based (line, column).
#[derive(Debug, Default)]
pub(crate) struct Locator {
    keys: HashMap<Vec<Seg>, (usize, usize)>,
    values: HashMap<Vec<Seg>, (usize, usize)>,
    /// Scalar values with how they are written (only with [`Locator::with_scalars`]).
    scalars: HashMap<Vec<Seg>, ScalarAt>,
}

/// How a scalar value is written: where it starts and its style, for editing it in place
/// (`yaml_edit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScalarAt {
    /// 1-based line of its first character (the opening quote of a quoted scalar).
    pub line: usize,
    /// 0-based column of that character, in characters.
    pub column: usize,
    /// Plain, single- or double-quoted, literal or folded.
    pub style: TScalarStyle,
    /// Its value.
    pub value: String,
}

enum Frame {
    Map { key: Option<String> },
    Seq { next: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    path: Vec<Seg>,
    out: Locator,
    scalars: bool,
}

impl Walker {
    /// Called for every node that is a value (scalar, alias, start of a collection): records its
    /// position and returns the path it lives at.
    fn value_at(&mut self, mark: Marker) -> Option<Vec<Seg>> {
        let seg = match self.stack.last_mut() {
            None => None,
            Some(Frame::Map { key }) => Some(Seg::Key(key.take()?)),
            Some(Frame::Seq { next }) => {
                *next += 1;
                Some(Seg::Index(*next - 1))
            }
        };
        let mut path = self.path.clone();
        path.extend(seg);
        self.out
            .values
            .insert(path.clone(), (mark.line(), mark.col() + 1));
        Some(path)
    }

    fn is_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None }))
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) if self.is_key_position() => {
                let mut key_path = self.path.clone();
                key_path.push(Seg::Key(text.clone()));
                self.out
                    .keys
                    .insert(key_path, (mark.line(), mark.col() + 1));
                if let Some(Frame::Map { key }) = self.stack.last_mut() {
                    *key = Some(text);
                }
            }
            Event::Scalar(text, style, ..) => {
                if let Some(path) = self.value_at(mark) {
                    if self.scalars {
                        self.out.scalars.insert(
                            path,
                            ScalarAt {
                                line: mark.line(),
                                column: mark.col(),
                                style,
                                value: text,
                            },
                        );
                    }
                }
            }
            Event::Alias(..) => {
                self.value_at(mark);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                if self.is_key_position() {
                    // A complex (non-scalar) key: strackt has none; record nothing below it.
                    self.stack.push(Frame::Seq { next: 0 });
                    return;
                }
                if let Some(path) = self.value_at(mark) {
                    self.path = path;
                }
                self.stack.push(if is_map {
                    Frame::Map { key: None }
                } else {
                    Frame::Seq { next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                if !self.stack.is_empty() {
                    self.path.pop();
                }
            }
            _ => {}
        }
    }
}

impl Locator {
    /// Index `source`. Text that does not parse yields an empty locator (the syntax error is
    /// reported from serde_yaml, with its own position).
    pub(crate) fn new(source: &str) -> Locator {
        Self::index(source, false).unwrap_or_default()
    }

    /// Index `source` and also keep every scalar value with how it is written.
    ///
    /// # Errors
    /// The YAML syntax error, located.
    pub(crate) fn with_scalars(source: &str) -> Result<Locator, ScanError> {
        Self::index(source, true)
    }

    fn index(source: &str, scalars: bool) -> Result<Locator, ScanError> {
        let mut walker = Walker {
            scalars,
            ..Walker::default()
        };
        let mut parser = Parser::new_from_str(source);
        parser.load(&mut walker, false)?;
        Ok(walker.out)
    }

    /// The scalar value at `path`, if it is one (indexed with [`Locator::with_scalars`]).
    pub(crate) fn scalar(&self, path: &[Seg]) -> Option<&ScalarAt> {
        self.scalars.get(path)
    }

    /// Best position for a problem at `path`: the value if known, else the key, else the
    /// nearest ancestor, else the top of the document.
    pub(crate) fn value(&self, path: &[Seg]) -> (usize, usize) {
        let mut p = path.to_vec();
        loop {
            if let Some(pos) = self.values.get(&p).or_else(|| self.keys.get(&p)) {
                return *pos;
            }
            if p.pop().is_none() {
                return (1, 1);
            }
        }
    }

    /// Position of the key at `path` (for "unknown field" problems), falling back to `value`.
    pub(crate) fn key(&self, path: &[Seg]) -> (usize, usize) {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn locates_nested_keys_and_values() {
        let src = "version: 1\nfiles:\n  /etc/motd:\n    content: hi\n    mode: \"0644\"\nlist:\n  - a\n  - b\n";
        let loc = Locator::new(src);
        assert_eq!(loc.key(&[k("version")]), (1, 1));
        assert_eq!(loc.value(&[k("version")]), (1, 10));
        assert_eq!(loc.key(&[k("files"), k("/etc/motd")]), (3, 3));
        assert_eq!(loc.value(&[k("files"), k("/etc/motd"), k("mode")]), (5, 11));
        assert_eq!(loc.value(&[k("list"), Seg::Index(1)]), (8, 5));
        // Unknown paths fall back to the nearest known ancestor.
        assert_eq!(
            loc.value(&[k("files"), k("/etc/motd"), k("nope")]),
            loc.value(&[k("files"), k("/etc/motd")])
        );
    }

    #[test]
    fn flow_mappings_are_located() {
        let src = "services:\n  hello: { exec: /bin/true, user: nobody }\n";
        let loc = Locator::new(src);
        assert_eq!(loc.key(&[k("services"), k("hello"), k("user")]), (2, 29));
    }
}
