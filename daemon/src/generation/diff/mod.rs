//! What differs between two generations' content: files and units as unified diffs, packages
//! with their exact versions, users and groups, the firewall ruleset, kernel parameters and the
//! daemon's settings, and which other sections of the definition changed.
//!
//! `strackt diff A B` compares two stored generations, `strackt plan` and `strackt edit` the
//! running generation with the one a definition would build. The comparison and its text are
//! pure ([`diff`], [`GenerationDiff::render`]); [`stored`] is the one function here that reads:
//! a generation's directory when it is on disk, its record (rendered again) when it was pruned.
//! Nothing here writes, and nothing here reads the host's managed files: what is compared is
//! what strackt keeps of each generation.

mod stored;
mod unified;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Manifest, Rendered};
pub use stored::{compare, read_stored, DiffView};
use unified::{file_side, firewall_side, unified, unit_side};

/// Everything that differs between two generations' content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationDiff {
    /// Managed files added, removed or changed.
    pub files: Vec<ContentChange>,
    /// Units strackt writes or keeps running, added, removed or changed.
    pub units: Vec<ContentChange>,
    /// Packages: name, exact version before and after.
    pub packages: Vec<Change>,
    /// Groups, each as one line of its settings.
    pub groups: Vec<Change>,
    /// Users, each as one line of its settings.
    pub users: Vec<Change>,
    /// The nftables ruleset as a unified diff, when it changed.
    pub firewall: Option<String>,
    /// Kernel parameters (`sysctl.KEY`) and the daemon's own settings (`strackt.KEY`).
    pub settings: Vec<Change>,
    /// Other parts of the definition that changed (`apps.shop`, `backups.shop`, `receiver`):
    /// they are no generation content, and `strackt deploy` or the backup schedule acts on them.
    pub definition: Vec<String>,
    /// What could not be compared exactly (a pruned generation whose record no longer renders).
    pub notes: Vec<String>,
}

/// A file or unit that was added, removed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentChange {
    /// The path or unit name.
    pub name: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// Changes besides the content, e.g. `mode 0644 → 0640`, `enabled true → false`.
    pub details: Vec<String>,
    /// The content's unified diff (empty when only the details changed).
    pub diff: String,
}

/// A named value before and after (`None`: absent on that side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What changed.
    pub name: String,
    /// Before.
    pub from: Option<String>,
    /// After.
    pub to: Option<String>,
}

impl GenerationDiff {
    /// Whether the two sides are the same in everything compared.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.units.is_empty()
            && self.packages.is_empty()
            && self.groups.is_empty()
            && self.users.is_empty()
            && self.firewall.is_none()
            && self.settings.is_empty()
            && self.definition.is_empty()
    }

    /// The diff as text: unified diffs for files, units and the firewall, one line per changed
    /// package, user, group or setting. Empty when nothing differs.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut section = |title: &str, body: String| {
            if !body.is_empty() {
                out.push_str(title);
                out.push_str(":\n");
                out.push_str(&body);
            }
        };
        section("files", contents(&self.files));
        section("units", contents(&self.units));
        section("packages", changes(&self.packages));
        section("groups", changes(&self.groups));
        section("users", changes(&self.users));
        section("firewall", self.firewall.clone().unwrap_or_default());
        section("settings", changes(&self.settings));
        section(
            "also changed in the definition (no generation content)",
            self.definition.iter().map(|d| format!("  {d}\n")).collect(),
        );
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

fn contents(list: &[ContentChange]) -> String {
    let mut out = String::new();
    for c in list {
        let details = if c.details.is_empty() {
            String::new()
        } else {
            format!(": {}", c.details.join(", "))
        };
        out.push_str(&format!("  {} {}{details}\n", c.change, c.name));
        out.push_str(&c.diff);
    }
    out
}

fn changes(list: &[Change]) -> String {
    let mut out = String::new();
    for c in list {
        match (&c.from, &c.to) {
            (None, Some(to)) => out.push_str(&format!("  + {} {to}\n", c.name)),
            (Some(from), None) => out.push_str(&format!("  - {} {from}\n", c.name)),
            (Some(from), Some(to)) => out.push_str(&format!("  ~ {} {from} → {to}\n", c.name)),
            (None, None) => {}
        }
    }
    out
}

/// Labels of the two sides in unified diff headers, e.g. `generation 3` and `generation 4`.
#[derive(Debug, Clone, Copy)]
pub struct Sides<'a> {
    /// The old side.
    pub old: &'a str,
    /// The new side.
    pub new: &'a str,
}

/// Compare two generations' content; `old` is `None` before the first generation.
pub fn diff(old: Option<&Rendered>, new: &Rendered, sides: Sides<'_>) -> GenerationDiff {
    let empty = Rendered {
        manifest: Manifest::default(),
        definition: String::new(),
        files: BTreeMap::new(),
        units: BTreeMap::new(),
        firewall: None,
    };
    let old = old.unwrap_or(&empty);
    let (a, b) = (&old.manifest, &new.manifest);
    let mut d = GenerationDiff {
        files: file_changes(old, new, sides),
        units: unit_changes(old, new, sides),
        ..GenerationDiff::default()
    };

    // By version only: a plan resolves versions without fetching, so its lock names no `.deb`.
    let versions = |m: &Manifest| -> BTreeMap<String, String> {
        m.packages
            .iter()
            .map(|(name, lock)| (name.clone(), lock.version.clone()))
            .collect()
    };
    d.packages = changed(&versions(a), &versions(b), Clone::clone);
    d.groups = changed(&a.groups, &b.groups, |g| {
        let gid = g
            .gid
            .map_or("gid chosen by groupadd".into(), |g| format!("gid {g}"));
        format!("{gid}{}", if g.system { ", system" } else { "" })
    });
    d.users = changed(&a.users, &b.users, |u| {
        let uid = u
            .uid
            .map_or("uid chosen by useradd".into(), |u| format!("uid {u}"));
        let mut s = format!(
            "({uid}, group {}, groups [{}], shell {}, home {}",
            u.group,
            u.groups.join(", "),
            u.shell,
            u.home
        );
        if !u.comment.is_empty() {
            s.push_str(&format!(", comment {:?}", u.comment));
        }
        if u.system {
            s.push_str(", system");
        }
        if let Some(secret) = &u.password_secret {
            s.push_str(&format!(", password from secret {secret}"));
        }
        if u.remove_home {
            s.push_str(", remove_home");
        }
        s + ")"
    });
    if a.firewall != b.firewall {
        d.firewall = Some(unified(
            "firewall.nft",
            firewall_side(old),
            firewall_side(new),
            sides,
        ));
    }
    d.settings = changed(&a.sysctl, &b.sysctl, Clone::clone)
        .into_iter()
        .map(|c| Change {
            name: format!("sysctl {}", c.name),
            ..c
        })
        .collect();
    definition_changes(&old.definition, &new.definition, &mut d);
    d
}

/// Files added, removed or changed in content, mode or owner.
fn file_changes(old: &Rendered, new: &Rendered, sides: Sides<'_>) -> Vec<ContentChange> {
    let (a, b) = (&old.manifest, &new.manifest);
    let mut out = Vec::new();
    for path in keys(&a.files, &b.files) {
        let (fa, fb) = (a.files.get(path), b.files.get(path));
        let mut details = Vec::new();
        if let (Some(x), Some(y)) = (fa, fb) {
            if x.mode != y.mode {
                details.push(format!("mode {:04o} → {:04o}", x.mode, y.mode));
            }
            if (&x.owner, &x.group) != (&y.owner, &y.group) {
                details.push(format!(
                    "owner {}:{} → {}:{}",
                    x.owner, x.group, y.owner, y.group
                ));
            }
        }
        let same_content = fa.map(|f| &f.sha256) == fb.map(|f| &f.sha256);
        if same_content && details.is_empty() {
            continue;
        }
        let text = if same_content {
            String::new()
        } else {
            unified(
                path,
                file_side(old, path, fa),
                file_side(new, path, fb),
                sides,
            )
        };
        if fa.is_none() {
            if let Some(f) = fb {
                details.push(format!("mode {:04o}, {}:{}", f.mode, f.owner, f.group));
            }
        }
        out.push(content_change(
            path,
            fa.is_some(),
            fb.is_some(),
            details,
            text,
        ));
    }
    out
}

/// Units added, removed or changed in text or in how strackt treats them.
fn unit_changes(old: &Rendered, new: &Rendered, sides: Sides<'_>) -> Vec<ContentChange> {
    let (a, b) = (&old.manifest, &new.manifest);
    let mut out = Vec::new();
    for unit in keys(&a.units, &b.units) {
        let (ua, ub) = (a.units.get(unit), b.units.get(unit));
        let mut details = Vec::new();
        if let (Some(x), Some(y)) = (ua, ub) {
            let flag = |what: &str, p: bool, q: bool| (p != q).then(|| format!("{what} {p} → {q}"));
            details.extend(flag("enabled", x.enabled, y.enabled));
            details.extend(flag(
                "restart_on_change",
                x.restart_on_change,
                y.restart_on_change,
            ));
            if x.restart_on != y.restart_on {
                details.push(format!(
                    "restart_on [{}] → [{}]",
                    x.restart_on.join(", "),
                    y.restart_on.join(", ")
                ));
            }
            if x.health != y.health {
                details.push(format!(
                    "health {} → {}",
                    health(x.health.as_ref()),
                    health(y.health.as_ref())
                ));
            }
        }
        let same_text = ua.map(|u| &u.sha256) == ub.map(|u| &u.sha256);
        if same_text && details.is_empty() {
            continue;
        }
        let text = if same_text {
            String::new()
        } else {
            unified(
                unit,
                unit_side(old, unit, ua),
                unit_side(new, unit, ub),
                sides,
            )
        };
        if ua.is_none() && ub.is_some_and(|u| u.sha256.is_none()) {
            details.push("a package's unit, kept enabled and running".into());
        }
        out.push(content_change(
            unit,
            ua.is_some(),
            ub.is_some(),
            details,
            text,
        ));
    }
    out
}

/// The daemon's settings and the sections that are no generation content, from the two
/// definition texts.
fn definition_changes(old: &str, new: &str, d: &mut GenerationDiff) {
    if old == new {
        return;
    }
    let read = |text: &str| -> Option<serde_json::Value> {
        if text.is_empty() {
            return Some(serde_json::json!({}));
        }
        let def = crate::definition::parse(text, Path::new("definition")).ok()?;
        serde_json::to_value(def.definition()).ok()
    };
    let (Some(a), Some(b)) = (read(old), read(new)) else {
        d.notes.push(
            "a definition no longer validates: its settings and apps could not be compared".into(),
        );
        return;
    };
    let section = |v: &serde_json::Value, key: &str| -> BTreeMap<String, serde_json::Value> {
        v.get(key)
            .and_then(|s| s.as_object())
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    // `strackt:` from an empty side is the defaults, so a first generation lists none of them.
    let defaults =
        serde_json::to_value(crate::definition::DaemonSettings::default()).unwrap_or_default();
    let strackt = |v: &serde_json::Value| {
        let mut s: BTreeMap<String, serde_json::Value> = defaults
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        s.extend(section(v, "strackt"));
        s
    };
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    d.settings.extend(
        changed(&strackt(&a), &strackt(&b), show)
            .into_iter()
            .map(|c| Change {
                name: format!("strackt.{}", c.name),
                ..c
            }),
    );
    for key in ["apps", "backups"] {
        let (x, y) = (section(&a, key), section(&b, key));
        for name in keys(&x, &y) {
            let what = match (x.get(name), y.get(name)) {
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                (p, q) if p != q => "changed",
                _ => continue,
            };
            d.definition.push(format!("{key}.{name} {what}"));
        }
    }
    if a.get("receiver") != b.get("receiver") {
        d.definition.push("receiver changed".into());
    }
}

/// The union of two maps' keys, in order.
fn keys<'a, V, W>(a: &'a BTreeMap<String, V>, b: &'a BTreeMap<String, W>) -> BTreeSet<&'a String> {
    a.keys().chain(b.keys()).collect()
}

/// Entries of two maps that differ, each shown through `show`.
fn changed<V: PartialEq>(
    a: &BTreeMap<String, V>,
    b: &BTreeMap<String, V>,
    show: impl Fn(&V) -> String,
) -> Vec<Change> {
    keys(a, b)
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| Change {
            name: k.clone(),
            from: a.get(k).map(&show),
            to: b.get(k).map(&show),
        })
        .collect()
}

fn content_change(
    name: &str,
    before: bool,
    after: bool,
    details: Vec<String>,
    diff: String,
) -> ContentChange {
    let change = match (before, after) {
        (false, _) => "added",
        (_, false) => "removed",
        _ => "changed",
    };
    ContentChange {
        name: name.to_string(),
        change: change.into(),
        details,
        diff,
    }
}

fn health(h: Option<&crate::definition::HealthSpec>) -> String {
    let Some(h) = h else {
        return "none".into();
    };
    let probe = match (&h.command, &h.http, &h.tcp) {
        (Some(c), _, _) => format!("command {c}"),
        (_, Some(u), _) => format!("http {u}"),
        (_, _, Some(t)) => format!("tcp {t}"),
        _ => "none".into(),
    };
    match &h.within {
        Some(w) => format!("{probe} within {w}"),
        None => probe,
    }
}

#[cfg(test)]
mod tests;
