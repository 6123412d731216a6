//! The state digest: one hash over everything strackt manages, as observed on the host.
//!
//! Two hosts in the same managed state have the same digest, whatever their history; a host
//! changed by hand has a different one until the change is repaired. It covers what the
//! generation manages (files: content, mode, owner; unit files; units active and enabled;
//! users and groups; the packages it pins: exact installed version and hold; strackt's firewall
//! table; sysctl values), and nothing else, so application data never changes it.

use std::fmt::Write;

use super::HostSnapshot;
use crate::generation::Generation;
use crate::host::files::sha256_hex;

/// Digest of the managed part of `observed`, for the items `desired` manages.
pub fn state_digest(desired: &Generation, observed: &HostSnapshot) -> String {
    let mut canon = String::new();
    for path in desired.manifest.files.keys() {
        match observed.files.get(path).cloned().flatten() {
            Some(f) => writeln!(
                canon,
                "file {path} {} {:o} {} {}",
                f.sha256, f.mode, f.uid, f.gid
            ),
            None => writeln!(canon, "file {path} absent"),
        }
        .unwrap_or_default();
    }
    for (unit, spec) in &desired.manifest.units {
        let text = observed
            .unit_files
            .get(unit)
            .cloned()
            .flatten()
            .map(|t| sha256_hex(t.as_bytes()));
        let state = observed.units.get(unit);
        let active = state.is_some_and(|s| s.is_active());
        // Enablement only counts where the definition asks for it.
        let enabled = spec.enabled && state.is_some_and(|s| s.is_enabled());
        writeln!(
            canon,
            "unit {unit} {} active={active} enabled={enabled}",
            text.as_deref().unwrap_or("-")
        )
        .unwrap_or_default();
    }
    for name in desired.manifest.packages.keys() {
        let line = observed
            .packages
            .get(name)
            .map_or("absent".to_string(), |p| {
                format!("{} held={}", p.version, p.held)
            });
        writeln!(canon, "package {name} {line}").unwrap_or_default();
    }
    for name in desired.manifest.groups.keys() {
        writeln!(
            canon,
            "group {name} {:?}",
            observed.groups.get(name).copied().flatten()
        )
        .unwrap_or_default();
    }
    for name in desired.manifest.users.keys() {
        let u = observed.users.get(name).cloned().flatten();
        let line = u.map_or("absent".to_string(), |u| {
            format!(
                "{} {} {:?} {} {} {:?}",
                u.uid, u.group, u.groups, u.shell, u.home, u.comment
            )
        });
        writeln!(
            canon,
            "user {name} {line} password={:?}",
            observed.password_ok.get(name)
        )
        .unwrap_or_default();
    }
    if let Some(listing) = &observed.firewall_live {
        writeln!(canon, "firewall {listing}").unwrap_or_default();
    }
    for (key, value) in &observed.sysctl {
        writeln!(canon, "sysctl {key} {value}").unwrap_or_default();
    }
    sha256_hex(canon.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::definition::parse;
    use crate::generation::render;
    use crate::host::{FileState, UnitState};

    fn generation() -> Generation {
        let r = render(&parse("version: 1\nfiles:\n  /etc/motd: { content: hi }\nservices:\n  a: { exec: /bin/true }\n", Path::new("t")).expect("valid"));
        r.generation()
    }

    fn converged(g: &Generation) -> HostSnapshot {
        let mut s = HostSnapshot::default();
        let f = &g.manifest.files["/etc/motd"];
        s.files.insert(
            "/etc/motd".into(),
            Some(FileState {
                sha256: f.sha256.clone(),
                mode: f.mode,
                uid: 0,
                gid: 0,
            }),
        );
        s.unit_files
            .insert("a.service".into(), g.unit_texts.get("a.service").cloned());
        s.units.insert(
            "a.service".into(),
            UnitState {
                active_state: "active".into(),
                unit_file_state: "enabled".into(),
                main_pid: 7,
                ..UnitState::default()
            },
        );
        s
    }

    #[test]
    fn same_state_same_digest_and_any_managed_change_shows() {
        let g = generation();
        let base = state_digest(&g, &converged(&g));
        // History that is not managed state (a new MainPID after a restart) does not count.
        let mut restarted = converged(&g);
        restarted.units.get_mut("a.service").expect("unit").main_pid = 99;
        assert_eq!(state_digest(&g, &restarted), base);
        let mut edited = converged(&g);
        edited.files.insert("/etc/motd".into(), None);
        assert_ne!(state_digest(&g, &edited), base);
        let mut stopped = converged(&g);
        stopped
            .units
            .get_mut("a.service")
            .expect("unit")
            .active_state = "inactive".into();
        assert_ne!(state_digest(&g, &stopped), base);
    }

    #[test]
    fn a_definition_of_only_packages_digests_their_versions() {
        let r = render(
            &parse(
                "version: 1\npackages:\n  curl: \"7.88.1-10+deb12u8\"\n",
                Path::new("t"),
            )
            .expect("valid"),
        );
        // Versions are resolved against apt after rendering; as the lock has it:
        let mut g = r.generation();
        g.manifest.packages.insert(
            "curl".into(),
            crate::generation::PackageLock {
                version: "7.88.1-10+deb12u8".into(),
                deb: "curl_7.88.1-10+deb12u8_amd64.deb".into(),
            },
        );
        let installed = |version: &str, held: bool| {
            let mut s = HostSnapshot::default();
            s.packages.insert(
                "curl".into(),
                crate::host::packages::Installed {
                    version: version.into(),
                    held,
                    auto: false,
                    essential: false,
                },
            );
            s
        };
        let base = state_digest(&g, &installed("7.88.1-10+deb12u8", true));
        assert_ne!(base, state_digest(&g, &HostSnapshot::default()), "absent");
        assert_ne!(
            base,
            state_digest(&g, &installed("7.88.1-10+deb12u9", true)),
            "other version"
        );
        assert_ne!(
            base,
            state_digest(&g, &installed("7.88.1-10+deb12u8", false)),
            "not held"
        );
    }
}
