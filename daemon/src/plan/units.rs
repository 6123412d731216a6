//! Unit change classification (pure): what a changed unit file means for the running unit.

use std::collections::BTreeMap;

/// What to do with a running unit whose file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitChange {
    /// Same settings: nothing to do beyond daemon-reload.
    Equal,
    /// Only settings that do not affect the running process changed (`Description=`,
    /// `Documentation=`, the `[Install]` section): daemon-reload suffices.
    Cosmetic,
    /// Only `ExecReload=` changed: reload the unit.
    Reload,
    /// Anything else: restart.
    Restart,
}

/// Section → key → values, comments and blank lines dropped, order of repeated keys kept.
fn parse(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    out
}

/// Keys whose change never needs the process restarted (after switch-to-configuration-ng).
fn is_cosmetic(section: &str, key: &str) -> bool {
    section == "Install" || (section == "Unit" && matches!(key, "Description" | "Documentation"))
}

/// Classify the change from `old` to `new` unit text.
pub fn classify(old: &str, new: &str) -> UnitChange {
    let (a, b) = (parse(old), parse(new));
    if a == b {
        return UnitChange::Equal;
    }
    let mut change = UnitChange::Cosmetic;
    let sections: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for section in sections {
        let empty = BTreeMap::new();
        let (sa, sb) = (
            a.get(section).unwrap_or(&empty),
            b.get(section).unwrap_or(&empty),
        );
        let keys: std::collections::BTreeSet<&String> = sa.keys().chain(sb.keys()).collect();
        for key in keys {
            if sa.get(key) == sb.get(key) || is_cosmetic(section, key) {
                continue;
            }
            if section == "Service" && key == "ExecReload" {
                change = UnitChange::Reload;
            } else {
                return UnitChange::Restart;
            }
        }
    }
    change
}

/// After a switch from `from` to `target` was cut off (strackt killed mid-switch), the units
/// whose new file was already on disk (`on_disk`) look converged to the planner while their
/// process may still run the old file: what each must get now, as the switch would have given
/// it — a restart, or a reload for an `ExecReload=`-only change. Units whose file is not yet
/// the new one are left to the switch, which writes and restarts them as usual.
pub fn interrupted_changes(
    from: &crate::generation::Generation,
    target: &crate::generation::Generation,
    on_disk: &BTreeMap<String, Option<String>>,
) -> Vec<(String, UnitChange)> {
    target
        .manifest
        .units
        .iter()
        .filter(|(_, spec)| spec.restart_on_change)
        .filter_map(|(unit, _)| {
            let new = target.unit_texts.get(unit)?;
            let old = from.unit_texts.get(unit)?;
            if on_disk.get(unit)?.as_deref() != Some(new.as_str()) {
                return None;
            }
            match classify(old, new) {
                change @ (UnitChange::Restart | UnitChange::Reload) => Some((unit.clone(), change)),
                UnitChange::Equal | UnitChange::Cosmetic => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{classify, UnitChange::*};

    #[test]
    fn a_cut_off_switch_restarts_what_it_had_already_written() {
        use std::collections::BTreeMap;
        use std::path::Path;
        let generation = |env: &str, reload: &str| {
            let text = format!("version: 1\nservices:\n  a: {{ exec: /bin/sleep 9, environment: {{ T: {env} }}, exec_reload: /bin/kill -HUP {reload} }}\n  b: {{ exec: /bin/sleep 9 }}\n");
            crate::generation::render(
                &crate::definition::parse(&text, Path::new("t")).expect("valid"),
            )
            .generation()
        };
        let from = generation("x", "1");
        let restart = generation("y", "1");
        let reload = generation("x", "2");
        let disk = |g: &crate::generation::Generation| -> BTreeMap<String, Option<String>> {
            g.unit_texts
                .iter()
                .map(|(u, t)| (u.clone(), Some(t.clone())))
                .collect()
        };
        // Written before the kill: restarted; b never changed: left alone.
        assert_eq!(
            super::interrupted_changes(&from, &restart, &disk(&restart)),
            vec![("a.service".to_string(), Restart)]
        );
        assert_eq!(
            super::interrupted_changes(&from, &reload, &disk(&reload)),
            vec![("a.service".to_string(), Reload)]
        );
        // Not written yet: the switch writes and restarts it itself.
        assert_eq!(
            super::interrupted_changes(&from, &restart, &disk(&from)),
            vec![]
        );
    }

    const BASE: &str = "[Unit]\nDescription=a\n\n[Service]\nExecStart=/bin/sleep 1\nExecReload=/bin/kill -HUP $MAINPID\nEnvironment=\"A=1\"\n\n[Install]\nWantedBy=multi-user.target\n";

    #[test]
    fn classification_table() {
        let cases = [
            (BASE.to_string(), Equal),
            (
                BASE.replace("# x\n", "")
                    .replace("[Unit]\n", "# a comment\n[Unit]\n"),
                Equal,
            ),
            (BASE.replace("Description=a", "Description=b"), Cosmetic),
            (
                BASE.replace("WantedBy=multi-user.target", "WantedBy=default.target"),
                Cosmetic,
            ),
            (BASE.replace("-HUP", "-USR1"), Reload),
            (BASE.replace("/bin/sleep 1", "/bin/sleep 2"), Restart),
            (BASE.replace("A=1", "A=2"), Restart),
            (BASE.replace("-HUP", "-USR1").replace("A=1", "A=2"), Restart),
            (
                BASE.replace("Description=a\n", "Description=a\nAfter=x.target\n"),
                Restart,
            ),
        ];
        for (new, want) in cases {
            assert_eq!(classify(BASE, &new), want, "{new}");
        }
    }
}
