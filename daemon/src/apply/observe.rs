//! apply/observe — read everything the planner needs about the host into a [`HostSnapshot`].
//! Must not: change anything on the host (a failure here leaves it as it was), or decide what
//! to change.

use std::collections::BTreeSet;
use std::path::Path;

use super::{apps, original_path, read_secret, Apps, Ownership};
use crate::generation::Generation;
use crate::host::accounts::Accounts;
use crate::host::databases::{scram_matches, Databases};
use crate::host::files::sha256_hex;
use crate::host::firewall::Firewall;
use crate::host::packages::Packages;
use crate::host::sysctl::Sysctl;
use crate::host::Machine;
use crate::host::{Files, HostError, Systemd};
use crate::plan::{by_hand, HostSnapshot, RoleObserved, UNIT_DIR};
use crate::timing;

/// Read everything the planner needs about the host, without changing anything; `apps` says
/// what the definition's apps need kept.
///
/// # Errors
/// When the host cannot be read or an owner/group does not exist (nothing has changed yet).
// Whole on purpose (~140 lines): one read of the host, in the order the snapshot is filled,
// where every early return is an error before anything changed. Split per subsystem, that
// guarantee would be spread over a dozen functions; PostgreSQL, which is not an error when it
// does not answer, is apart in `observe_databases`.
pub async fn observe<M: Machine>(
    m: &M,
    desired: &Generation,
    owned: &Ownership,
    root: &Path,
    apps: &Apps,
) -> Result<HostSnapshot, HostError> {
    let mut snap = HostSnapshot {
        owned_files: owned.files.clone(),
        owned_units: owned.units.clone(),
        ..HostSnapshot::default()
    };
    let paths: BTreeSet<&String> = desired
        .manifest
        .files
        .keys()
        .chain(owned.files.iter())
        .collect();
    timing::time("observe.files", || -> Result<(), HostError> {
        for path in paths {
            snap.files
                .insert(path.clone(), m.files().stat(Path::new(path))?);
            if m.files().stat(&original_path(root, path))?.is_some() {
                snap.originals_kept.insert(path.clone());
            }
        }
        Ok(())
    })?;
    snap.packages = timing::time("observe.packages", || m.packages().installed())?;
    snap.base_packages = owned.base_packages.clone();
    // Asking dpkg what the apps need costs a scan of its database: only when something would
    // be removed as hand-installed.
    if snap
        .packages
        .keys()
        .any(|name| by_hand(&desired.manifest, &snap, name))
    {
        snap.needed = timing::time_async("observe.usage", apps::needed(m, apps)).await?;
    }
    let (users, groups) = timing::time("observe.accounts", || {
        Ok::<_, HostError>((m.accounts().users()?, m.accounts().groups()?))
    })?;
    for name in desired.manifest.users.keys().chain(owned.users.iter()) {
        snap.users.insert(name.clone(), users.get(name).cloned());
    }
    for name in desired.manifest.groups.keys().chain(owned.groups.iter()) {
        snap.groups.insert(name.clone(), groups.get(name).copied());
    }
    snap.owned_users = owned.users.clone();
    snap.owned_groups = owned.groups.clone();
    for (name, u) in &desired.manifest.users {
        if let Some(secret) = &u.password_secret {
            // A missing secret fails here, before anything changes; the hash stays in memory.
            let want = read_secret(m.files(), secret)?;
            let have = timing::time("observe.accounts", || m.accounts().password_hash(name))?;
            snap.password_ok
                .insert(name.clone(), have.as_deref() == Some(want.as_str()));
        }
    }
    // Owners the definition creates may not exist yet; any other unknown owner is an error.
    let to_create = |kind: &str, name: &str| match kind {
        "user" => desired.manifest.users.contains_key(name),
        _ => {
            desired.manifest.groups.contains_key(name)
                || desired
                    .manifest
                    .users
                    .iter()
                    .any(|(u, s)| s.group == name && u == name)
        }
    };
    for spec in desired.manifest.files.values() {
        for (kind, name) in [("user", &spec.owner), ("group", &spec.group)] {
            // Most files share a few owners (root, root): each is looked up once per pass.
            if snap.ids.contains_key(&format!("{kind}:{name}")) {
                continue;
            }
            let id = timing::time("observe.owners", || {
                if kind == "user" {
                    m.files().uid(name)
                } else {
                    m.files().gid(name)
                }
            });
            match id {
                Ok(id) => {
                    snap.ids.insert(format!("{kind}:{name}"), id);
                }
                Err(_) if to_create(kind, name) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if let Some(ruleset) = &desired.firewall {
        // nft -c before anything changes: a ruleset the kernel would refuse fails here. A
        // ruleset already applied once passed this check then; no need to pay for it per pass.
        let applied = owned.firewall.as_ref().is_some_and(|r| {
            Some(&r.ruleset) == desired.manifest.firewall.as_ref() && !r.listing.is_empty()
        });
        if !applied {
            timing::time("observe.firewall", || m.firewall().check(ruleset))?;
        }
    }
    snap.firewall_applied = owned.firewall.clone();
    if desired.firewall.is_some() || owned.firewall.is_some() {
        snap.firewall_live = timing::time("observe.firewall", || m.firewall().listing())?
            .map(|l| sha256_hex(l.as_bytes()));
    }
    for key in desired.manifest.sysctl.keys() {
        let value = timing::time("observe.sysctl", || m.sysctl().get(key))?.ok_or_else(|| {
            HostError::UnknownName {
                kind: "sysctl key",
                name: key.clone(),
            }
        })?;
        snap.sysctl.insert(key.clone(), value);
    }
    observe_databases(m, desired, &mut snap).await?;
    let units: BTreeSet<&String> = desired
        .manifest
        .units
        .keys()
        .chain(owned.units.iter())
        .collect();
    // All unit states at once: D-Bus calls on one connection are pipelined, so the pass pays
    // one round trip's latency instead of one per unit.
    let names: Vec<String> = units.iter().map(|u| (*u).clone()).collect();
    let states = timing::time_async("observe.units", m.systemd().unit_states(&names)).await?;
    for (&unit, state) in units.iter().zip(states) {
        snap.units.insert(unit.clone(), state);
        if desired.unit_texts.contains_key(unit) || owned.units.contains(unit) {
            let text = timing::time("observe.unit-files", || {
                m.files().read(&Path::new(UNIT_DIR).join(unit))
            })?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
            snap.unit_files.insert(unit.clone(), text);
        }
    }
    Ok(snap)
}

/// What PostgreSQL holds of `databases:`. A cluster that does not answer is not an error
/// here (the switch may install or start it); a missing password secret is, before anything
/// changes. Passwords are compared in memory with the stored verifiers, never kept.
async fn observe_databases<M: Machine>(
    m: &M,
    desired: &Generation,
    snap: &mut HostSnapshot,
) -> Result<(), HostError> {
    let want = &desired.manifest.databases;
    if want.is_empty() {
        return Ok(());
    }
    let pg = match timing::time_async("observe.databases", m.databases().observe()).await {
        Ok(pg) => pg,
        Err(e) => {
            snap.postgres_unreadable = Some(e.to_string());
            return Ok(());
        }
    };
    for db in want.values() {
        let Some(role) = pg.roles.get(&db.owner) else {
            continue;
        };
        let password_ok = match (&db.password_secret, &role.verifier) {
            (Some(secret), Some(verifier)) => {
                scram_matches(verifier, &read_secret(m.files(), secret)?)?
            }
            (Some(secret), None) => {
                read_secret(m.files(), secret)?;
                false
            }
            (None, _) => false,
        };
        snap.db_roles.insert(
            db.owner.clone(),
            RoleObserved {
                login: role.login,
                password_ok,
            },
        );
    }
    for name in want.keys() {
        if let Some(owner) = pg.databases.get(name) {
            snap.databases.insert(name.clone(), owner.clone());
        }
    }
    Ok(())
}
