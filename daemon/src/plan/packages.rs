//! Package planning (pure): locked versions installed and held, dropped and hand-installed
//! packages removed — but never what keeps the machine (or strackt) running, nor what the
//! definition's apps and strackt's deploys and backups need (`HostSnapshot::needed`).

use std::collections::BTreeMap;

use super::{step, Action, HostSnapshot, PlannedStep};
use crate::generation::{Generation, Manifest};

/// Packages strackt never removes as hand-installed, whatever their priority: the kernel, the
/// boot and package machinery, and what strackt itself runs on.
fn protected(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "strackt",
        "systemd",
        "systemd-sysv",
        "dbus",
        "apt",
        "dpkg",
        "nftables",
        "passwd",
        "login",
        "libc6",
        "openssh-server",
        "ca-certificates",
        "init",
        "sudo",
    ];
    const PREFIXES: &[&str] = &[
        "linux-image",
        "linux-headers",
        "linux-modules",
        "grub",
        "firmware-",
        "shim",
    ];
    NAMES.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether `name`, installed and not wanted, counts as installed by hand after strackt took
/// the host over — removed unless something needs it. Only a definition that manages
/// packages removes hand-installed ones.
pub fn by_hand(want: &Manifest, observed: &HostSnapshot, name: &str) -> bool {
    let Some(have) = observed.packages.get(name) else {
        return false;
    };
    !want.packages.is_empty()
        && !want.packages.contains_key(name)
        && !have.essential
        && !have.auto
        && !protected(name)
        && observed
            .base_packages
            .as_ref()
            .is_some_and(|base| !base.contains(name))
}

/// Push the package steps; returns the hand-installed packages kept because they are needed
/// (name → why), for `strackt plan` to say so.
pub(super) fn plan_packages(
    want: &Manifest,
    previous: Option<&Generation>,
    observed: &HostSnapshot,
    steps: &mut Vec<PlannedStep>,
) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    for (name, lock) in &want.packages {
        let drift = previous.is_some_and(|p| p.manifest.packages.get(name) == Some(lock));
        match observed.packages.get(name) {
            Some(have) if have.version == lock.version => {
                if !have.held {
                    steps.push(step(
                        Action::MarkHeld { name: name.clone() },
                        "not held at its version",
                        drift,
                    ));
                }
            }
            Some(have) => steps.push(step(
                Action::InstallPackage { name: name.clone() },
                format!("version {}, want {}", have.version, lock.version),
                drift,
            )),
            None => steps.push(step(
                Action::InstallPackage { name: name.clone() },
                format!("missing, want {}", lock.version),
                drift,
            )),
        }
    }
    let was_defined = |name: &str| previous.is_some_and(|p| p.manifest.packages.contains_key(name));
    for (name, have) in &observed.packages {
        if want.packages.contains_key(name) || have.essential || protected(name) {
            continue;
        }
        if was_defined(name) {
            steps.push(step(
                Action::RemovePackage { name: name.clone() },
                "no longer in the definition",
                false,
            ));
        } else if by_hand(want, observed, name) {
            if let Some(why) = observed.needed.get(name) {
                kept.insert(name.clone(), why.clone());
                continue;
            }
            steps.push(step(
                Action::RemovePackage { name: name.clone() },
                "installed by hand",
                true,
            ));
        }
    }
    kept
}
