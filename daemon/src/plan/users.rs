//! Which running units use a package a switch changed, and so must be restarted to run on
//! the new files (pure). The rules follow Debian's `needrestart`:
//!
//! - a process maps or holds open a file of a changed package (a file dpkg replaced still
//!   shows under its old path, marked deleted, and counts);
//! - or the process runs an interpreter (python, perl, ruby, node, php) and the changed
//!   package ships files under that interpreter's module directories: interpreted modules are
//!   read and closed at import, so no trace of them is left to see.
//!
//! What this cannot see (a file read and closed that is not an interpreter module, a process
//! outside the unit's cgroup) is not restarted; the health checks after the switch are what
//! catch a unit broken by a change it was not restarted for.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, HostSnapshot, Plan};
use crate::generation::Manifest;
use crate::host::usage::ProcessInfo;

/// One package a plan installs, upgrades, downgrades or removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageChange {
    /// The package.
    pub name: String,
    /// The version installed before (`None`: not installed).
    pub from: Option<String>,
    /// The version installed after (`None`: removed).
    pub to: Option<String>,
}

impl PackageChange {
    /// `libfoo (upgraded 1.0 → 1.1)`, `libfoo (installed 1.1)`, `libfoo (removed, was 1.0)`.
    pub fn describe(&self) -> String {
        let what = match (&self.from, &self.to) {
            (Some(a), Some(b)) if version_lt(b, a) => format!("downgraded {a} → {b}"),
            (Some(a), Some(b)) => format!("upgraded {a} → {b}"),
            (None, Some(b)) => format!("installed {b}"),
            (Some(a), None) => format!("removed, was {a}"),
            (None, None) => "unchanged".into(),
        };
        format!("{} ({what})", self.name)
    }
}

/// A rough Debian version order for wording only ("upgraded" or "downgraded"): numeric runs
/// compare as numbers, everything else as text.
fn version_lt(a: &str, b: &str) -> bool {
    fn parts(v: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut rest = v;
        while !rest.is_empty() {
            let text_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (text, tail) = rest.split_at(text_len);
            let num_len = tail
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(tail.len());
            let (num, tail) = tail.split_at(num_len);
            out.push((num.parse().unwrap_or(0), text.to_string()));
            rest = tail;
        }
        out
    }
    let key = |v: &str| {
        parts(v)
            .into_iter()
            .map(|(n, t)| (t, n))
            .collect::<Vec<_>>()
    };
    key(a) < key(b)
}

/// The package changes `plan` makes, with versions from the host (`observed`) and the
/// generation it switches to (`want`).
pub fn package_changes(
    plan: &Plan,
    observed: &HostSnapshot,
    want: &Manifest,
) -> Vec<PackageChange> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::InstallPackage { name } => Some((name, true)),
            Action::RemovePackage { name } => Some((name, false)),
            _ => None,
        })
        .map(|(name, installs)| PackageChange {
            name: name.clone(),
            from: observed.packages.get(name).map(|p| p.version.clone()),
            to: if installs {
                want.packages.get(name).map(|l| l.version.clone())
            } else {
                None
            },
        })
        .collect()
}

/// Where each interpreter finds its modules (prefixes of the paths a package ships).
const INTERPRETERS: &[(&str, &[&str])] = &[
    (
        "python",
        &[
            "/usr/lib/python3",
            "/usr/local/lib/python3",
            "/usr/share/python3",
        ],
    ),
    (
        "perl",
        &[
            "/usr/share/perl",
            "/usr/lib/x86_64-linux-gnu/perl",
            "/usr/lib/aarch64-linux-gnu/perl",
            "/usr/local/share/perl",
        ],
    ),
    (
        "ruby",
        &[
            "/usr/lib/ruby",
            "/usr/share/rubygems-integration",
            "/var/lib/gems",
        ],
    ),
    (
        "node",
        &[
            "/usr/lib/nodejs",
            "/usr/share/nodejs",
            "/usr/lib/node_modules",
        ],
    ),
    ("php", &["/usr/share/php", "/usr/lib/php"]),
];

/// The module directories of the interpreter `exe` runs, if it is one.
fn module_dirs(exe: &str) -> &'static [&'static str] {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    INTERPRETERS
        .iter()
        .find(|(name, _)| {
            base.strip_prefix(name)
                .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
        })
        .map_or(&[], |(_, dirs)| dirs)
}

/// Whether a process uses any of `files`.
fn uses(p: &ProcessInfo, files: &BTreeSet<String>) -> bool {
    p.files.iter().any(|f| files.contains(f))
        || files.contains(&p.exe)
        || module_dirs(&p.exe)
            .iter()
            .any(|dir| files.iter().any(|f| f.starts_with(&format!("{dir}/"))))
}

/// Units to restart, each with why: `uses libfoo (upgraded 1.0 → 1.1)`. `files` holds each
/// changed package's files (from before and after the change); `units` the processes of every
/// running unit that may be restarted.
pub fn restarts(
    changes: &[PackageChange],
    files: &BTreeMap<String, BTreeSet<String>>,
    units: &BTreeMap<String, Vec<ProcessInfo>>,
) -> Vec<(String, String)> {
    let empty = BTreeSet::new();
    units
        .iter()
        .filter_map(|(unit, procs)| {
            let used: Vec<String> = changes
                .iter()
                .filter(|c| {
                    let shipped = files.get(&c.name).unwrap_or(&empty);
                    procs.iter().any(|p| uses(p, shipped))
                })
                .map(PackageChange::describe)
                .collect();
            (!used.is_empty()).then(|| (unit.clone(), format!("uses {}", used.join(", "))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str, from: Option<&str>, to: Option<&str>) -> PackageChange {
        PackageChange {
            name: name.into(),
            from: from.map(Into::into),
            to: to.map(Into::into),
        }
    }

    fn proc(exe: &str, files: &[&str]) -> ProcessInfo {
        ProcessInfo {
            pid: 1,
            exe: exe.into(),
            files: files.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn set(files: &[&str]) -> BTreeSet<String> {
        files.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn changes_are_described_by_direction() {
        assert_eq!(
            change("libfoo", Some("1.0"), Some("1.1")).describe(),
            "libfoo (upgraded 1.0 → 1.1)"
        );
        assert_eq!(
            change("libfoo", Some("1.10"), Some("1.9")).describe(),
            "libfoo (downgraded 1.10 → 1.9)"
        );
        assert_eq!(
            change("libfoo", None, Some("2")).describe(),
            "libfoo (installed 2)"
        );
        assert_eq!(
            change("libfoo", Some("2"), None).describe(),
            "libfoo (removed, was 2)"
        );
    }

    #[test]
    fn attribution_table() {
        let lib = change("libfoo", Some("1.0"), Some("1.1"));
        let pylib = change("python3-foo", Some("1"), None);
        let files = BTreeMap::from([
            (
                "libfoo".to_string(),
                set(&["/usr/lib/libfoo.so.1", "/usr/share/doc/libfoo"]),
            ),
            (
                "python3-foo".to_string(),
                set(&["/usr/lib/python3/dist-packages/foo.py"]),
            ),
        ]);
        let cases: &[(&str, ProcessInfo, &[&PackageChange], Option<&str>)] = &[
            // Maps the old library (replaced by dpkg: the path is kept without "(deleted)").
            (
                "maps",
                proc("/usr/sbin/d", &["/usr/lib/libfoo.so.1"]),
                &[&lib],
                Some("uses libfoo (upgraded 1.0 → 1.1)"),
            ),
            // Holds no file of a changed package.
            (
                "unrelated",
                proc("/usr/bin/sleep", &["/usr/lib/libc.so.6"]),
                &[&lib],
                None,
            ),
            // An interpreter: the package ships modules for it, nothing is mapped.
            (
                "python",
                proc("/usr/bin/python3.11", &[]),
                &[&pylib],
                Some("uses python3-foo (removed, was 1)"),
            ),
            // An interpreter, but the package ships no modules for it.
            ("perl", proc("/usr/bin/perl", &[]), &[&pylib], None),
            // A name that only starts like an interpreter is not one.
            (
                "pythonic",
                proc("/usr/bin/pythonic-daemon", &[]),
                &[&pylib],
                None,
            ),
            // The executable itself is the package's.
            (
                "exe",
                proc("/usr/lib/libfoo.so.1", &[]),
                &[&lib],
                Some("uses libfoo (upgraded 1.0 → 1.1)"),
            ),
            // Both.
            (
                "both",
                proc("/usr/bin/python3", &["/usr/lib/libfoo.so.1"]),
                &[&lib, &pylib],
                Some("uses libfoo (upgraded 1.0 → 1.1), python3-foo (removed, was 1)"),
            ),
        ];
        for (name, p, changed, want) in cases {
            let changed: Vec<PackageChange> = changed.iter().map(|c| (*c).clone()).collect();
            let units = BTreeMap::from([("u.service".to_string(), vec![p.clone()])]);
            let got = restarts(&changed, &files, &units);
            assert_eq!(
                got.first().map(|(_, why)| why.as_str()),
                *want,
                "case {name}"
            );
        }
    }

    #[test]
    fn a_unit_without_processes_is_not_restarted() {
        let units = BTreeMap::from([("stopped.service".to_string(), Vec::new())]);
        let files = BTreeMap::from([("libfoo".to_string(), set(&["/usr/lib/libfoo.so.1"]))]);
        assert!(restarts(&[change("libfoo", None, Some("1"))], &files, &units).is_empty());
    }
}
