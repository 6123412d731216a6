//! Table tests of the pure planner against hand-made snapshots.

use std::path::Path;

use super::*;
use crate::definition::parse;
use crate::generation::render;
use crate::host::files::sha256_hex;

fn generation(src: &str) -> Generation {
    let r = render(&parse(src, Path::new("t")).expect("valid"));
    r.generation()
}

fn names(p: &Plan) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| {
            format!("{} {}", s.action.name(), s.action.target())
                .trim()
                .to_string()
        })
        .collect()
}

fn ids() -> BTreeMap<String, u32> {
    [("user:root".to_string(), 0), ("group:root".to_string(), 0)]
        .into_iter()
        .collect()
}

#[test]
fn empty_host_gets_everything_in_phase_order() {
    let g = generation("version: 1\nfiles:\n  /etc/motd: { content: hi }\nservices:\n  a: { exec: /bin/true }\n  cron: { unit: cron.service }\n");
    let snap = HostSnapshot {
        ids: ids(),
        ..HostSnapshot::default()
    };
    let p = plan(&g, None, &snap);
    assert_eq!(
        names(&p),
        [
            "write-file /etc/motd",
            "write-unit a.service",
            "daemon-reload",
            "enable a.service",
            "enable cron.service",
            "start a.service",
            "start cron.service"
        ]
    );
    assert!(p.steps.iter().all(|s| !s.drift));
}

#[test]
fn a_pre_existing_files_original_is_kept_once_before_it_is_overwritten() {
    let g = generation("version: 1\nfiles:\n  /etc/motd: { content: hi }\n");
    let theirs = FileState {
        sha256: sha256_hex(b"debian"),
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let mut snap = HostSnapshot {
        ids: ids(),
        ..HostSnapshot::default()
    };
    snap.files.insert("/etc/motd".into(), Some(theirs));
    assert_eq!(
        names(&plan(&g, None, &snap)),
        ["backup-file /etc/motd", "write-file /etc/motd"]
    );
    snap.originals_kept.insert("/etc/motd".into());
    assert_eq!(names(&plan(&g, None, &snap)), ["write-file /etc/motd"]);
}

/// The originals and apt-hold renames are internal: plan JSON and history keep the names users
/// know.
#[test]
fn renamed_actions_serialize_under_their_old_names() {
    let keep = Action::KeepOriginal {
        path: "/etc/motd".into(),
    };
    assert_eq!(keep.name(), "backup-file");
    assert_eq!(
        serde_json::to_value(&keep).expect("serializes"),
        serde_json::json!({ "action": "backup-file", "path": "/etc/motd" })
    );
    let remove = Action::RemoveFile {
        path: "/etc/motd".into(),
        restore_original: true,
    };
    assert_eq!(
        serde_json::to_value(&remove).expect("serializes"),
        serde_json::json!({ "action": "remove-file", "path": "/etc/motd", "restore_backup": true })
    );
    let held = Action::MarkHeld {
        name: "demo".into(),
    };
    assert_eq!(held.name(), "hold-package");
    assert_eq!(
        serde_json::to_value(&held).expect("serializes"),
        serde_json::json!({ "action": "hold-package", "name": "demo" })
    );
    let mut snap = HostSnapshot::default();
    snap.originals_kept.insert("/etc/motd".into());
    assert_eq!(
        serde_json::to_value(&snap).expect("serializes")["backed_up"],
        serde_json::json!(["/etc/motd"])
    );
}

#[test]
fn unit_changes_are_classified() {
    let old = generation("version: 1\nservices:\n  a: { exec: /bin/sleep 1, exec_reload: /bin/true }\n  b: { exec: /bin/sleep 1 }\n  c: { exec: /bin/sleep 1, restart_on_change: false }\n");
    let new = generation("version: 1\nservices:\n  a: { exec: /bin/sleep 1, exec_reload: /bin/false }\n  b: { exec: /bin/sleep 2 }\n  c: { exec: /bin/sleep 2, restart_on_change: false }\n");
    let mut snap = HostSnapshot {
        ids: ids(),
        ..HostSnapshot::default()
    };
    for (unit, text) in &old.unit_texts {
        snap.unit_files.insert(unit.clone(), Some(text.clone()));
        snap.owned_units.insert(unit.clone());
        snap.units.insert(
            unit.clone(),
            UnitState {
                active_state: "active".into(),
                unit_file_state: "enabled".into(),
                ..UnitState::default()
            },
        );
    }
    let p = plan(&new, Some(&old), &snap);
    assert_eq!(
        names(&p),
        [
            "write-unit a.service",
            "write-unit b.service",
            "write-unit c.service",
            "daemon-reload",
            "reload a.service",
            "restart b.service"
        ]
    );
}

#[test]
fn the_display_is_the_dry_run() {
    let g = generation("version: 1\nfiles:\n  /etc/motd: { content: hi }\n");
    let snap = HostSnapshot {
        ids: ids(),
        ..HostSnapshot::default()
    };
    assert_eq!(
        plan(&g, None, &snap).to_string(),
        "would write-file /etc/motd  (missing)\n"
    );
    assert_eq!(
        Plan::default().to_string(),
        "nothing to do: the host matches the definition\n"
    );
}

#[test]
fn hand_installed_packages_go_only_when_the_definition_manages_packages() {
    use crate::host::packages::Installed;
    let pkg = |essential| Installed {
        version: "1".into(),
        held: true,
        auto: false,
        essential,
    };
    let mut snap = HostSnapshot {
        ids: ids(),
        base_packages: Some(BTreeSet::new()),
        ..HostSnapshot::default()
    };
    snap.packages.insert("htop".into(), pkg(false));
    snap.packages.insert("bash".into(), pkg(true));
    snap.packages.insert("linux-image-amd64".into(), pkg(false));
    assert!(
        plan(&generation("version: 1\n"), None, &snap).is_empty(),
        "no packages: section, nothing removed"
    );
    let mut managed = generation("version: 1\n");
    managed.manifest.packages.insert(
        "curl".into(),
        crate::generation::PackageLock {
            version: "8".into(),
            deb: "curl_8_amd64.deb".into(),
        },
    );
    snap.packages.insert(
        "curl".into(),
        Installed {
            version: "8".into(),
            held: true,
            auto: false,
            essential: false,
        },
    );
    assert_eq!(
        names(&plan(&managed, None, &snap)),
        ["remove-package htop"],
        "never essential or the kernel"
    );
}
