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

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Manifest, Rendered, Store};
use crate::state::GenerationRecord;

/// Lines of one file's unified diff shown before the rest is cut (a generated config file can
/// be long; the hashes still tell that it changed).
const MAX_DIFF_LINES: usize = 400;

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
    let mut d = GenerationDiff::default();

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
        d.files.push(content_change(
            path,
            fa.is_some(),
            fb.is_some(),
            details,
            text,
        ));
    }

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
        d.units.push(content_change(
            unit,
            ua.is_some(),
            ub.is_some(),
            details,
            text,
        ));
    }

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

/// One side of a content comparison: the bytes when they are kept, and their hash.
struct Side<'a> {
    bytes: Option<&'a [u8]>,
    sha256: &'a str,
}

fn file_side<'a>(
    r: &'a Rendered,
    path: &str,
    file: Option<&'a super::ManagedFile>,
) -> Option<Side<'a>> {
    file.map(|f| Side {
        bytes: r.files.get(path).map(Vec::as_slice),
        sha256: &f.sha256,
    })
}

/// A unit a package provides has no text of strackt's: an empty side.
fn unit_side<'a>(
    r: &'a Rendered,
    unit: &str,
    spec: Option<&'a super::ManagedUnit>,
) -> Option<Side<'a>> {
    spec.and_then(|u| u.sha256.as_deref()).map(|sha256| Side {
        bytes: r.units.get(unit).map(String::as_bytes),
        sha256,
    })
}

fn firewall_side(r: &Rendered) -> Option<Side<'_>> {
    r.manifest.firewall.as_deref().map(|sha256| Side {
        bytes: r.firewall.as_deref().map(str::as_bytes),
        sha256,
    })
}

/// A unified diff of `name` between two sides (`None`: absent there), or a line saying why
/// the contents cannot be shown as text.
fn unified(name: &str, old: Option<Side<'_>>, new: Option<Side<'_>>, sides: Sides<'_>) -> String {
    let text = |s: &Option<Side<'_>>| -> Result<String, String> {
        match s {
            None => Ok(String::new()),
            Some(Side {
                bytes: Some(b),
                sha256,
            }) => std::str::from_utf8(b)
                .map(str::to_string)
                .map_err(|_| format!("binary content (sha256 {})", short(sha256))),
            Some(Side {
                bytes: None,
                sha256,
            }) => Err(format!("content not kept (sha256 {})", short(sha256))),
        }
    };
    let (a, b) = match (text(&old), text(&new)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            let say = |r: Result<String, String>, present: bool| match r {
                Err(e) => e,
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

/// What `strackt diff A B` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffView {
    /// The old generation.
    pub from: u64,
    /// The new generation.
    pub to: u64,
    /// What differs.
    pub changes: GenerationDiff,
    /// The same as text.
    pub text: String,
}

/// Compare generations `from` and `to` (default: the one active before the current, and the
/// current), each from its directory or its record.
///
/// # Errors
/// A generation that does not exist or cannot be read; no current or previous generation to
/// default to.
pub fn between(
    store: &Store,
    state: &crate::state::State,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<DiffView, String> {
    let db = |e: crate::state::StateError| e.to_string();
    let to = match to {
        Some(id) => id,
        None => store
            .current()
            .map_err(|e| e.to_string())?
            .ok_or("no generation runs yet: nothing to compare")?,
    };
    let from = match from {
        Some(id) => id,
        None => state.previous_generation(Some(to)).map_err(db)?.ok_or(
            "there is no previous generation to compare with; name two: `strackt diff A B` (`strackt generations` lists them)",
        )?,
    };
    let known: BTreeSet<u64> = state
        .generations()
        .map_err(db)?
        .into_iter()
        .map(|g| g.id)
        .collect();
    let mut notes = Vec::new();
    let mut side = |id: u64| {
        if !known.contains(&id) && !store.dir(id).exists() {
            return Err(format!(
                "there is no generation {id}; `strackt generations --all` lists them"
            ));
        }
        let record = state.record(id).map_err(db)?;
        stored(store, id, record, &mut notes)
    };
    let (a, b) = (side(from)?, side(to)?);
    let (old, new) = (format!("generation {from}"), format!("generation {to}"));
    let mut changes = diff(
        Some(&a),
        &b,
        Sides {
            old: &old,
            new: &new,
        },
    );
    changes.notes.extend(notes);
    let text = if changes.is_empty() {
        format!("generation {from} and generation {to} have the same content\n")
    } else {
        format!(
            "from generation {from} to generation {to}:\n{}",
            changes.render()
        )
    };
    Ok(DiffView {
        from,
        to,
        changes,
        text,
    })
}

/// Generation `id`'s content as strackt keeps it: from its directory when it is on disk, else
/// from its record, rendered again (a record renders to the same content; one that no longer
/// renders identically is still compared, by its definition and manifest, with a note).
///
/// # Errors
/// When the generation has neither a readable directory nor a record.
pub fn stored(
    store: &Store,
    id: u64,
    record: Option<GenerationRecord>,
    notes: &mut Vec<String>,
) -> Result<Rendered, String> {
    if store.dir(id).join("manifest.json").exists() {
        return from_directory(store, id).map_err(|e| format!("generation {id}: {e}"));
    }
    let record = record.ok_or_else(|| {
        format!("generation {id} has neither a directory nor a record (it was pruned by a strackt from before records were kept)")
    })?;
    let manifest: Manifest = serde_json::from_str(&record.manifest)
        .map_err(|e| format!("generation {id}: its recorded manifest does not parse: {e}"))?;
    match super::record::rebuild(&record.definition, &manifest) {
        Ok(r) => Ok(r),
        Err(why) => {
            notes.push(format!(
                "generation {id}'s directory was pruned and its record cannot be rendered again ({why}): contents are compared by hash only"
            ));
            Ok(Rendered {
                manifest,
                definition: record.definition,
                files: BTreeMap::new(),
                units: BTreeMap::new(),
                firewall: None,
            })
        }
    }
}

fn from_directory(store: &Store, id: u64) -> Result<Rendered, crate::host::HostError> {
    let generation = store.load(id)?;
    let mut files = BTreeMap::new();
    for path in generation.manifest.files.keys() {
        files.insert(path.clone(), store.file_content(id, path)?);
    }
    let definition = store.read_record(id)?.definition;
    Ok(Rendered {
        manifest: generation.manifest,
        definition,
        files,
        units: generation.unit_texts,
        firewall: generation.firewall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::parse;
    use crate::generation::{render, PackageLock};

    fn rendered(text: &str) -> Rendered {
        render(&parse(text, Path::new("t")).expect("valid"))
    }

    const SIDES: Sides<'static> = Sides {
        old: "generation 1",
        new: "generation 2",
    };

    const OLD: &str = "version: 1\nstrackt:\n  interval: 5m\nfiles:\n  /etc/motd: { content: \"one\\ntwo\\nthree\\n\" }\n  /etc/gone.conf: { content: \"bye\\n\" }\nservices:\n  hello: { exec: /usr/bin/sleep 1 }\n  cron: { unit: cron.service }\nusers:\n  alice: { uid: 3001, shell: /bin/sh }\nsettings:\n  sysctl:\n    net.ipv4.ip_forward: 0\n";
    const NEW: &str = "version: 1\nstrackt:\n  interval: 1h\nfiles:\n  /etc/motd: { content: \"one\\n2\\nthree\\n\", mode: \"0640\" }\n  /etc/new.conf: { content: \"hi\\n\" }\nservices:\n  hello: { exec: /usr/bin/sleep 2, enabled: false }\nusers:\n  alice: { uid: 3001, shell: /bin/bash }\nsettings:\n  sysctl:\n    net.ipv4.ip_forward: 1\nfirewall:\n  allow: [{ port: 22 }]\n";

    #[test]
    fn files_and_units_differ_as_unified_diffs_with_their_details() {
        let d = diff(Some(&rendered(OLD)), &rendered(NEW), SIDES);
        let names: Vec<(&str, &str)> = d
            .files
            .iter()
            .map(|c| (c.name.as_str(), c.change.as_str()))
            .collect();
        assert!(names.contains(&("/etc/motd", "changed")), "{names:?}");
        assert!(names.contains(&("/etc/gone.conf", "removed")), "{names:?}");
        assert!(names.contains(&("/etc/new.conf", "added")), "{names:?}");
        let motd = d
            .files
            .iter()
            .find(|c| c.name == "/etc/motd")
            .expect("motd");
        assert_eq!(motd.details, ["mode 0644 → 0640"]);
        assert_eq!(
            motd.diff,
            "--- /etc/motd\t(generation 1)\n+++ /etc/motd\t(generation 2)\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n"
        );
        let gone = d
            .files
            .iter()
            .find(|c| c.name == "/etc/gone.conf")
            .expect("gone");
        assert!(
            gone.diff.contains("+++ /dev/null\n") && gone.diff.contains("-bye\n"),
            "{}",
            gone.diff
        );

        let hello = d
            .units
            .iter()
            .find(|c| c.name == "hello.service")
            .expect("hello");
        assert_eq!(hello.details, ["enabled true → false"]);
        assert!(
            hello
                .diff
                .contains("-ExecStart=/usr/bin/sleep 1\n+ExecStart=/usr/bin/sleep 2\n"),
            "{}",
            hello.diff
        );
        let cron = d
            .units
            .iter()
            .find(|c| c.name == "cron.service")
            .expect("cron");
        assert_eq!((cron.change.as_str(), cron.diff.as_str()), ("removed", ""));

        assert_eq!(d.users.len(), 1);
        assert!(d.users[0]
            .from
            .as_deref()
            .is_some_and(|f| f.contains("shell /bin/sh,")));
        assert!(d.users[0]
            .to
            .as_deref()
            .is_some_and(|t| t.contains("shell /bin/bash,")));
        let fw = d.firewall.as_deref().expect("firewall diff");
        assert!(
            fw.starts_with("--- /dev/null\n+++ firewall.nft\t(generation 2)\n"),
            "{fw}"
        );
        let settings: Vec<String> = d
            .settings
            .iter()
            .map(|c| format!("{} {:?} {:?}", c.name, c.from, c.to))
            .collect();
        assert_eq!(
            settings,
            [
                "sysctl net.ipv4.ip_forward Some(\"0\") Some(\"1\")",
                "strackt.interval Some(\"5m\") Some(\"1h\")"
            ]
        );
    }

    #[test]
    fn packages_show_exact_versions_and_apps_are_named() {
        let mut a = rendered("version: 1\npackages:\n  curl: latest\n  hello: latest\n");
        let mut b = rendered("version: 1\npackages:\n  curl: latest\n  jq: latest\napps:\n  shop: { repo: /srv/git/shop.git, path: /srv/shop, user: shop, service: { exec: /usr/bin/python3 app.py, listen: \"127.0.0.1:8000\" } }\nusers:\n  shop: {}\n");
        let lock = |v: &str| PackageLock {
            version: v.into(),
            deb: format!("x_{v}.deb"),
        };
        a.manifest.packages.insert("curl".into(), lock("7.88.1-10"));
        a.manifest.packages.insert("hello".into(), lock("2.10-3"));
        b.manifest
            .packages
            .insert("curl".into(), lock("7.88.1-10+deb12u8"));
        b.manifest.packages.insert("jq".into(), lock("1.6-2.1"));
        let mut unfetched = a.clone();
        for lock in unfetched.manifest.packages.values_mut() {
            lock.deb.clear();
        }
        assert!(diff(Some(&a), &unfetched, SIDES).packages.is_empty());
        let d = diff(Some(&a), &b, SIDES);
        let text = d.render();
        assert!(text.contains("packages:\n  ~ curl 7.88.1-10 → 7.88.1-10+deb12u8\n  - hello 2.10-3\n  + jq 1.6-2.1\n"), "{text}");
        assert!(
            text.contains(
                "also changed in the definition (no generation content):\n  apps.shop added\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_same_content_has_no_diff_and_a_first_generation_is_all_added() {
        let a = rendered(OLD);
        let d = diff(Some(&a), &a.clone(), SIDES);
        assert!(d.is_empty(), "{d:#?}");
        assert_eq!(d.render(), "");
        let first = diff(None, &a, SIDES);
        assert!(first.files.iter().all(|c| c.change == "added"));
        let text = first.render();
        assert!(text.contains("  added /etc/motd: mode 0644, root:root\n--- /dev/null\n+++ /etc/motd\t(generation 2)\n"), "{text}");
        assert!(
            !text.contains("  + strackt."),
            "defaults are not changes: {text}"
        );
    }

    #[test]
    fn binary_and_unkept_contents_say_so_instead_of_a_diff() {
        let a = rendered(OLD);
        let mut b = a.clone();
        let motd = b.manifest.files.get_mut("/etc/motd").expect("motd");
        motd.sha256 = "ab".repeat(32);
        b.files.insert("/etc/motd".into(), vec![0xff, 0xfe]);
        let d = diff(Some(&a), &b, SIDES);
        assert_eq!(
            d.files[0].diff,
            format!("    text → binary content (sha256 {})\n", "ab".repeat(6))
        );
        b.files.clear();
        let d = diff(Some(&a), &b, SIDES);
        assert!(
            d.files[0].diff.contains("content not kept"),
            "{:?}",
            d.files[0]
        );
    }

    #[test]
    fn a_pruned_generation_is_compared_from_its_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let r = rendered(OLD);
        let built = store.build(1, &r, "t").expect("build");
        let record = store.read_record(1).expect("record");
        let mut notes = vec![];
        let on_disk = stored(&store, 1, None, &mut notes).expect("from the directory");
        assert_eq!(on_disk.files, r.files);
        store.remove(1).expect("prune");
        assert!(stored(&store, 1, None, &mut notes).is_err());
        let again = stored(&store, 1, Some(record.clone()), &mut notes).expect("from the record");
        assert_eq!(
            (again.manifest, again.files),
            (built.clone(), r.files.clone())
        );
        assert!(notes.is_empty());
        let broken = GenerationRecord {
            definition: "version: 1\nfiles: 3\n".into(),
            manifest: record.manifest,
        };
        let hashed = stored(&store, 1, Some(broken), &mut notes).expect("by hash");
        assert_eq!(hashed.manifest, built);
        assert_eq!(notes.len(), 1, "{notes:?}");
    }
}
