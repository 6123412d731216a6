//! What apps and strackt itself need, so it is never removed as hand-installed (pure).
//!
//! A definition with `packages:` removes packages installed by hand; but the package providing
//! a unit an app `requires:` (postgresql for `postgresql.service`) and the tools strackt runs
//! deploys and backups with (git, postgresql-client, restic) stay, with their dependencies,
//! and so does every package that depends on one of them (the `postgresql` a user installed
//! to get `postgresql-common`'s unit). Each kept package carries why, for `strackt plan`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Something the definition needs on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// A unit an app requires: the package shipping its unit file is needed.
    Unit {
        /// The unit, e.g. `postgresql.service`.
        unit: String,
        /// Who needs it, e.g. `app shop`.
        by: String,
    },
    /// A package strackt runs, e.g. `git` for deploys.
    Package {
        /// The package.
        name: String,
        /// Why, e.g. `strackt deploys app shop with it`.
        why: String,
    },
}

/// Package → why it is kept. `providers` maps a needed unit to the package shipping its unit
/// file; `depends` maps every installed package to what it depends on.
pub fn kept(
    needs: &[Need],
    providers: &BTreeMap<String, String>,
    depends: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, String> {
    let mut keep: BTreeMap<String, String> = BTreeMap::new();
    for need in needs {
        let (pkg, why) = match need {
            Need::Unit { unit, by } => match providers.get(unit) {
                Some(pkg) => (pkg.clone(), format!("provides {unit} required by {by}")),
                None => continue,
            },
            Need::Package { name, why } => (name.clone(), why.clone()),
        };
        if depends.contains_key(&pkg) {
            keep.entry(pkg).or_insert(why);
        }
    }
    let roots: Vec<(String, String)> = keep.iter().map(|(p, w)| (p.clone(), w.clone())).collect();
    // Dependencies of what is kept: without them it would not run.
    for (root, why) in &roots {
        for dep in closure(root, depends) {
            keep.entry(dep)
                .or_insert_with(|| format!("needed by {root}, which {why}"));
        }
    }
    // What depends on a kept root: the package a user installed to get it.
    for pkg in depends.keys() {
        if keep.contains_key(pkg) {
            continue;
        }
        let reach = closure(pkg, depends);
        if let Some((root, why)) = roots.iter().find(|(r, _)| reach.contains(r)) {
            keep.insert(pkg.clone(), format!("depends on {root}, which {why}"));
        }
    }
    keep
}

/// Every installed package `pkg` depends on, directly or not (without `pkg`).
fn closure(pkg: &str, depends: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<&str> = VecDeque::from([pkg]);
    while let Some(p) = queue.pop_front() {
        for dep in depends.get(p).into_iter().flatten() {
            if depends.contains_key(dep) && dep != pkg && seen.insert(dep.clone()) {
                queue.push_back(dep);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(p, d)| (p.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn providers_tools_their_dependencies_and_what_pulls_them_in_are_kept() {
        let installed = deps(&[
            ("postgresql", &["postgresql-15"]),
            ("postgresql-15", &["postgresql-common", "libc6"]),
            ("postgresql-common", &["adduser"]),
            ("adduser", &[]),
            ("libc6", &[]),
            ("postgresql-client", &["postgresql-client-15"]),
            ("postgresql-client-15", &["postgresql-client-common"]),
            ("postgresql-client-common", &[]),
            ("cowsay", &["perl"]),
            ("perl", &[]),
        ]);
        let needs = vec![
            Need::Unit {
                unit: "postgresql.service".into(),
                by: "app shop".into(),
            },
            Need::Unit {
                unit: "missing.service".into(),
                by: "app shop".into(),
            },
            Need::Package {
                name: "postgresql-client".into(),
                why: "dumps app shop's database".into(),
            },
            Need::Package {
                name: "restic".into(),
                why: "runs backups".into(),
            },
        ];
        let providers = BTreeMap::from([(
            "postgresql.service".to_string(),
            "postgresql-common".to_string(),
        )]);
        let keep = kept(&needs, &providers, &installed);
        let why = |p: &str| keep.get(p).map(String::as_str);
        assert_eq!(
            why("postgresql-common"),
            Some("provides postgresql.service required by app shop")
        );
        assert_eq!(
            why("postgresql"),
            Some("depends on postgresql-common, which provides postgresql.service required by app shop")
        );
        assert_eq!(why("postgresql-client"), Some("dumps app shop's database"));
        assert_eq!(
            why("postgresql-client-15"),
            Some("needed by postgresql-client, which dumps app shop's database")
        );
        assert!(why("adduser").is_some());
        // Not installed: nothing to keep.
        assert_eq!(why("restic"), None);
        // Unrelated to any need.
        assert_eq!(why("cowsay"), None);
        assert_eq!(why("perl"), None);
    }

    #[test]
    fn a_dependency_cycle_ends() {
        let installed = deps(&[("a", &["b"]), ("b", &["a"])]);
        let keep = kept(
            &[Need::Package {
                name: "a".into(),
                why: "x".into(),
            }],
            &BTreeMap::new(),
            &installed,
        );
        assert_eq!(keep.len(), 2);
    }
}
