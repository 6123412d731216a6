//! Text → [`ValidatedDefinition`]. The only module that names the YAML crate (serde_yaml is
//! deprecated upstream; swapping it means changing this file alone).
//!
//! Each entry of each section is deserialized on its own, so one bad service does not hide the
//! problems of the next: the user sees every problem at once.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::locate::Locator;
use super::validate::validate;
use super::{render_path, Definition, DefinitionError, Problem, Seg, ValidatedDefinition};

/// The top-level keys, in the order the schema documents them.
const SECTIONS: &[&str] = &[
    "version",
    "strackt",
    "files",
    "services",
    "settings",
    "firewall",
    "groups",
    "users",
    "packages",
    "apps",
    "databases",
    "backups",
    "receiver",
];

/// Collects problems with their positions.
pub(crate) struct Problems<'a> {
    locator: &'a Locator,
    list: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Problems<'_> {
    /// A problem with the value at `path`.
    pub(crate) fn at(&mut self, path: &[Seg], message: impl Into<String>) {
        let (line, column) = self.locator.value(path);
        self.push(line, column, path, message.into());
    }
    /// A problem with the key at `path` itself (unknown or misplaced keys).
    pub(crate) fn at_key(&mut self, path: &[Seg], message: impl Into<String>) {
        let (line, column) = self.locator.key(path);
        self.push(line, column, path, message.into());
    }
    /// Not a problem, but something `strackt check` points out (e.g. an app run as root).
    pub(crate) fn warn(&mut self, path: &[Seg], message: impl Into<String>) {
        let (line, column) = self.locator.value(path);
        self.warnings.push(Problem {
            line,
            column,
            path: render_path(path),
            message: message.into(),
        });
    }
    fn push(&mut self, line: usize, column: usize, path: &[Seg], message: String) {
        self.list.push(Problem {
            line,
            column,
            path: render_path(path),
            message,
        });
    }
}

/// Parse and validate definition text. `file` is only used in messages.
///
/// # Errors
/// Every problem found (syntax, unknown keys, wrong types, invalid values), each located.
pub fn parse(source: &str, file: &Path) -> Result<ValidatedDefinition, DefinitionError> {
    let fail = |problems| DefinitionError {
        file: file.to_path_buf(),
        problems,
    };
    if let Err((line, column, message)) = super::prescan::prescan(source) {
        return Err(fail(vec![Problem {
            line,
            column,
            path: String::new(),
            message,
        }]));
    }
    let value: Value = match serde_yaml::from_str(source) {
        Ok(v) => v,
        Err(e) => {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            // serde_yaml appends " at line X column Y" itself; the prefix already says it.
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            return Err(fail(vec![Problem {
                line,
                column,
                path: String::new(),
                message: msg,
            }]));
        }
    };
    let locator = Locator::new(source);
    let mut problems = Problems {
        locator: &locator,
        list: Vec::new(),
        warnings: Vec::new(),
    };
    let definition = build(value, &mut problems);
    if problems.list.is_empty() {
        validate(&definition, &mut problems);
    }
    if problems.list.is_empty() {
        let mut warnings = problems.warnings;
        warnings.sort_by_key(|p| (p.line, p.column));
        return Ok(ValidatedDefinition {
            definition,
            source: source.to_string(),
            warnings,
        });
    }
    let mut list = problems.list;
    list.sort_by_key(|p| (p.line, p.column));
    list.dedup();
    Err(fail(list))
}

/// Write a definition back as YAML (comments are not kept).
///
/// # Errors
/// When it cannot be serialized (it always can: the types are plain data).
pub fn to_yaml(def: &Definition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(def)
}

/// Structural pass: every section and entry deserialized on its own, problems collected.
fn build(value: Value, problems: &mut Problems<'_>) -> Definition {
    let mut def = Definition::default();
    let top = match value {
        Value::Mapping(m) => m,
        Value::Null => {
            problems.at(
                &[],
                "the definition is empty; it needs at least `version: 1`",
            );
            return def;
        }
        _ => {
            problems.at(
                &[],
                "the definition must be a mapping of sections (version, files, services, …)",
            );
            return def;
        }
    };
    let mut saw_version = false;
    for (key, v) in top {
        let Some(name) = key.as_str().map(str::to_string) else {
            problems.at(
                &[],
                format!("top-level keys must be strings, found {key:?}"),
            );
            continue;
        };
        let path = [Seg::Key(name.clone())];
        match name.as_str() {
            "version" => {
                saw_version = true;
                if let Some(version) = entry::<u32>(v, &path, problems) {
                    def.version = version;
                }
            }
            "strackt" => {
                if let Some(s) = entry(v, &path, problems) {
                    def.strackt = s;
                }
            }
            "files" => def.files = section(v, &path, problems),
            "services" => def.services = section(v, &path, problems),
            "firewall" => def.firewall = entry(v, &path, problems),
            "groups" => def.groups = section(v, &path, problems),
            "users" => def.users = section(v, &path, problems),
            "packages" => def.packages = section(v, &path, problems),
            "databases" => def.databases = section(v, &path, problems),
            "apps" => def.apps = section(v, &path, problems),
            "backups" => def.backups = section(v, &path, problems),
            "receiver" => def.receiver = entry(v, &path, problems),
            "settings" => {
                if let Some(s) = entry(v, &path, problems) {
                    def.settings = s;
                }
            }
            _ => problems.at_key(
                &path,
                format!(
                    "unknown section `{name}`, expected one of: {}",
                    SECTIONS.join(", ")
                ),
            ),
        }
    }
    if !saw_version {
        problems.at(&[], "missing `version: 1` at the top of the definition");
    }
    def
}

/// A mapping section (`files:`, `services:`): each entry deserialized independently.
fn section<T: DeserializeOwned>(
    value: Value,
    path: &[Seg],
    problems: &mut Problems<'_>,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    match value {
        Value::Null => {}
        Value::Mapping(m) => {
            for (key, v) in m {
                let Some(name) = key.as_str().map(str::to_string) else {
                    problems.at(path, format!("keys must be strings, found {key:?}"));
                    continue;
                };
                let mut p = path.to_vec();
                p.push(Seg::Key(name.clone()));
                if let Some(item) = entry(v, &p, problems) {
                    out.insert(name, item);
                }
            }
        }
        _ => problems.at(path, "expected a mapping of name: settings"),
    }
    out
}

/// Deserialize one value, turning a serde error into a located problem at the exact field.
fn entry<T: DeserializeOwned>(
    value: Value,
    path: &[Seg],
    problems: &mut Problems<'_>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(err) => {
            let mut full = path.to_vec();
            for seg in err.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Map { key } => full.push(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Seq { index } => full.push(Seg::Index(*index)),
                    _ => {}
                }
            }
            let message = err.into_inner().to_string();
            if message.starts_with("unknown field") {
                problems.at_key(&full, message);
            } else {
                problems.at(&full, message);
            }
            None
        }
    }
}
