//! apply/ — observe the host, run a [`Plan`] through `host/`, verify, and switch generations.
//!
//! Nothing here decides *what* to change (that is `plan::plan`); this layer sequences I/O and
//! always returns a report of what it did, even when a step fails halfway, so the operations
//! log records what actually happened.

pub mod apps;
mod ownership;
pub mod switch;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

pub use apps::Apps;
pub use ownership::Ownership;

use crate::definition::SECRETS_DIR;
use crate::generation::ManagedGroup;
use crate::generation::{Generation, Store};
use crate::host::accounts::{Accounts, ManagedUser};
use crate::host::databases::{scram_matches, scram_verifier, Databases};
use crate::host::files::sha256_hex;
use crate::host::firewall::Firewall;
use crate::host::health::Health;
use crate::host::packages::Packages;
use crate::host::sysctl::Sysctl;
pub use crate::host::Machine;
use crate::host::{Files, HostError, JobKind, Systemd, UnitState};
use crate::ops::StepRecord;
use crate::plan::{by_hand, Action, FirewallRecord, HostSnapshot, Plan, RoleObserved, UNIT_DIR};
use crate::timing;

/// Batched actions never reach `run_one`; if one did, fail loudly rather than skip it.
fn unreachable_batched(action: &Action) -> Result<(), HostError> {
    Err(HostError::Command {
        op: "strackt",
        message: format!("internal: {} must run batched", action.name()),
    })
}

fn user_spec<'g>(source: Option<&'g Generation>, name: &str) -> Result<&'g ManagedUser, HostError> {
    source
        .and_then(|g| g.manifest.users.get(name))
        .ok_or_else(|| HostError::UnknownName {
            kind: "user in the generation",
            name: name.into(),
        })
}

/// A secret's value (trimmed), read only when needed and never stored or logged.
fn read_secret<F: Files>(files: &F, name: &str) -> Result<String, HostError> {
    let path = Path::new(SECRETS_DIR).join(name);
    match files.read(&path) {
        Ok(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).trim().to_string()),
        _ => Err(HostError::Secret {
            name: name.into(),
            path: path.display().to_string(),
        }),
    }
}

/// Where a pre-strackt original of `path` is kept. The directory is still named `backups/`
/// on disk (operators and tests know it there); it has nothing to do with restic backups.
pub fn original_path(root: &Path, path: &str) -> std::path::PathBuf {
    root.join("backups").join(path.trim_start_matches('/'))
}

/// Read everything the planner needs about the host, without changing anything; `apps` says
/// what the definition's apps need kept.
///
/// # Errors
/// When the host cannot be read or an owner/group does not exist (nothing has changed yet).
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

/// Create or complete a role or database of `databases:` (the generation says its owner and
/// password secret); failures name the entry.
async fn ensure_database<M: Machine>(
    m: &M,
    action: &Action,
    source: Option<&Generation>,
) -> Result<(), HostError> {
    let dbs = source.map(|g| &g.manifest.databases);
    let entry = |pick: &dyn Fn(&String, &crate::generation::ManagedDatabase) -> bool| {
        dbs.and_then(|d| d.iter().find(|(n, db)| pick(n, db)))
            .ok_or_else(|| HostError::UnknownName {
                kind: "database entry in the generation",
                name: action.target(),
            })
    };
    let target = action.target();
    let (entry_name, result) = match action {
        Action::CreateRole { name } | Action::SetRolePassword { name } => {
            let (db, spec) = entry(&|_, d| &d.owner == name)?;
            let verifier = match &spec.password_secret {
                Some(secret) => Some(scram_verifier(&read_secret(m.files(), secret)?)?),
                None => None,
            };
            (
                db,
                m.databases().ensure_role(name, verifier.as_deref()).await,
            )
        }
        _ => {
            let (db, spec) = entry(&|n, _| *n == target)?;
            (db, m.databases().ensure_database(db, &spec.owner).await)
        }
    };
    result.map_err(|e| {
        let why = match e {
            HostError::Command { message, .. } => message,
            other => other.to_string(),
        };
        HostError::Command {
            op: "postgresql",
            message: format!("databases.{entry_name}: {why}"),
        }
    })
}

/// Run `plan` (whose files come from generation `source` in `store`). Stops at the first
/// failing step; the rest are recorded as skipped. Returns the records and the failure.
pub async fn run<M: Machine>(
    m: &M,
    plan: &Plan,
    store: &Store,
    source: Option<&Generation>,
    owned: &mut Ownership,
) -> (Vec<StepRecord>, Option<String>) {
    let mut records = Vec::new();
    let mut failure: Option<String> = None;
    let mut i = 0;
    while i < plan.steps.len() {
        let step = &plan.steps[i];
        if failure.is_some() {
            records.push(StepRecord::new(
                step.action.name(),
                &step.action.target(),
                "skipped",
                "an earlier step failed",
                step.drift,
            ));
            i += 1;
            continue;
        }
        // Consecutive jobs of one kind (a switch's restarts, its starts) are queued together
        // and awaited together: systemd orders queued jobs by their units' dependencies as it
        // would one by one, and the switch waits for the slowest job instead of their sum.
        if let Some(kind) = job_kind(&step.action) {
            let batch: Vec<&crate::plan::PlannedStep> = plan.steps[i..]
                .iter()
                .take_while(|s| job_kind(&s.action) == Some(kind))
                .collect();
            let results = timing::time_async(
                kind.verb(),
                futures_util::future::join_all(batch.iter().map(|s| {
                    let unit = s.action.target();
                    async move { m.systemd().run_job(kind, &unit).await }
                })),
            )
            .await;
            for (s, result) in batch.iter().zip(&results) {
                records.push(record(s, result));
                if let Err(e) = result {
                    failure.get_or_insert_with(|| {
                        format!("{} {}: {e}", s.action.name(), s.action.target())
                    });
                }
            }
            i += batch.len();
            continue;
        }
        // Consecutive enables, installs, removals and apt-mark holds go out as one call each: one
        // daemon-reload, one apt transaction, instead of one per unit or package.
        if BATCHED.contains(&step.action.name()) {
            let kind = step.action.name();
            let len = plan.steps[i..]
                .iter()
                .take_while(|s| s.action.name() == kind)
                .count();
            let targets: Vec<String> = plan.steps[i..i + len]
                .iter()
                .map(|s| s.action.target())
                .collect();
            let result = timing::time_async(kind, run_batch(m, kind, &targets, source)).await;
            for s in &plan.steps[i..i + len] {
                records.push(record(s, &result));
            }
            if let Err(e) = result {
                failure = Some(format!("{kind} {}: {e}", targets.join(" ")));
            }
            i += len;
            continue;
        }
        let result = timing::time_async(
            step.action.name(),
            run_one(m, &step.action, store, source, owned),
        )
        .await;
        records.push(record(step, &result));
        if let Err(e) = result {
            failure = Some(format!(
                "{} {}: {e}",
                step.action.name(),
                step.action.target()
            ));
        }
        i += 1;
    }
    (records, failure)
}

/// The systemd job an action is, if it is one (they run concurrently, see [`run`]).
fn job_kind(action: &Action) -> Option<JobKind> {
    match action {
        Action::Stop { .. } => Some(JobKind::Stop),
        Action::Start { .. } => Some(JobKind::Start),
        Action::Restart { .. } => Some(JobKind::Restart),
        Action::Reload { .. } => Some(JobKind::Reload),
        _ => None,
    }
}

/// Actions run in batches by [`run_batch`].
const BATCHED: &[&str] = &[
    "enable",
    "install-package",
    "remove-package",
    "hold-package",
];

async fn run_batch<M: Machine>(
    m: &M,
    kind: &str,
    targets: &[String],
    source: Option<&Generation>,
) -> Result<(), HostError> {
    match kind {
        "enable" => m.systemd().enable(targets).await,
        "install-package" => {
            let locks = source.map(|g| &g.manifest.packages);
            let debs: Vec<String> = targets
                .iter()
                .filter_map(|n| locks.and_then(|l| l.get(n)).map(|l| l.deb.clone()))
                .collect();
            m.packages().install(&debs)?;
            // Held right away: unattended-upgrades must not move a version the definition set.
            m.packages().mark_held(targets, true)
        }
        "remove-package" => {
            m.packages().mark_held(targets, false)?;
            m.packages().remove(targets)
        }
        _ => m.packages().mark_held(targets, true),
    }
}

fn record(step: &crate::plan::PlannedStep, result: &Result<(), HostError>) -> StepRecord {
    match result {
        Ok(()) => StepRecord::new(
            step.action.name(),
            &step.action.target(),
            "ok",
            &step.why,
            step.drift,
        ),
        Err(e) => StepRecord::new(
            step.action.name(),
            &step.action.target(),
            "failed",
            e.to_string(),
            step.drift,
        ),
    }
}

async fn run_one<M: Machine>(
    m: &M,
    action: &Action,
    store: &Store,
    source: Option<&Generation>,
    owned: &mut Ownership,
) -> Result<(), HostError> {
    let unit_path = |unit: &str| Path::new(UNIT_DIR).join(unit);
    let gen_id = source.map_or(0, |g| g.manifest.id);
    match action {
        Action::Disable { unit } => m.systemd().disable(std::slice::from_ref(unit)).await,
        Action::DaemonReload => m.systemd().daemon_reload().await,
        Action::SetSysctl { key, value } => m.sysctl().set(key, value),
        Action::ApplyFirewall => {
            let ruleset = source
                .and_then(|g| g.firewall.as_deref())
                .unwrap_or_default();
            // Owned before it is applied, like files: a crash between the two must not leave a
            // table strackt does not know it has to put back or remove.
            let pending = FirewallRecord {
                ruleset: sha256_hex(ruleset.as_bytes()),
                listing: String::new(),
            };
            owned.record_firewall(Some(pending.clone()))?;
            m.firewall().apply(ruleset)?;
            let listing = m.firewall().listing()?.unwrap_or_default();
            owned.record_firewall(Some(FirewallRecord {
                listing: sha256_hex(listing.as_bytes()),
                ..pending
            }))
        }
        Action::RemoveFirewall => {
            m.firewall().remove()?;
            owned.record_firewall(None)
        }
        Action::RemoveUnit { unit } => {
            m.files().remove(&unit_path(unit))?;
            owned.forget_unit(unit)
        }
        Action::RemoveFile {
            path,
            restore_original,
        } => {
            m.files().remove(Path::new(path))?;
            if *restore_original {
                m.files()
                    .rename(&original_path(store.root(), path), Path::new(path))?;
            }
            owned.forget_file(path)
        }
        Action::KeepOriginal { path } => {
            let (Some(content), Some(st)) = (
                m.files().read(Path::new(path))?,
                m.files().stat(Path::new(path))?,
            ) else {
                return Ok(());
            };
            m.files().write(
                &original_path(store.root(), path),
                &content,
                st.mode,
                st.uid,
                st.gid,
            )
        }
        Action::WriteFile {
            path,
            mode,
            owner,
            group,
        } => {
            // Record ownership before writing: a crash in between must not leave a file
            // strackt wrote but does not know it owns.
            owned.own_file(path)?;
            let content = store.file_content(gen_id, path)?;
            let (uid, gid) = (m.files().uid(owner)?, m.files().gid(group)?);
            m.files().write(Path::new(path), &content, *mode, uid, gid)
        }
        Action::InstallPackage { .. }
        | Action::RemovePackage { .. }
        | Action::MarkHeld { .. }
        | Action::Enable { .. }
        | Action::Stop { .. }
        | Action::Start { .. }
        | Action::Restart { .. }
        | Action::Reload { .. } => unreachable_batched(action),
        Action::CreateGroup { name } => {
            let spec = source
                .and_then(|g| g.manifest.groups.get(name))
                .cloned()
                .unwrap_or(ManagedGroup {
                    gid: None,
                    system: false,
                });
            owned.own_account("group", name)?;
            m.accounts().create_group(name, spec.gid, spec.system)
        }
        Action::SetGid { name, gid } => m.accounts().set_gid(name, *gid),
        Action::RemoveGroup { name } => {
            m.accounts().delete_group(name)?;
            owned.forget_account("group", name)
        }
        Action::CreateUser { name } => {
            let spec = user_spec(source, name)?;
            owned.own_account("user", name)?;
            m.accounts().create_user(name, spec)
        }
        Action::ModifyUser { name } => m.accounts().modify_user(name, user_spec(source, name)?),
        Action::SetPassword { name } => {
            let secret = user_spec(source, name)?
                .password_secret
                .clone()
                .unwrap_or_default();
            let hash = read_secret(m.files(), &secret)?;
            m.accounts().set_password(name, &hash)
        }
        Action::RemoveUser { name, remove_home } => {
            m.accounts().delete_user(name, *remove_home)?;
            owned.forget_account("user", name)
        }
        Action::CreateRole { .. }
        | Action::SetRolePassword { .. }
        | Action::CreateDatabase { .. }
        | Action::SetDatabaseOwner { .. } => ensure_database(m, action, source).await,
        Action::WriteUnit { unit } => {
            owned.own_unit(unit)?;
            let text = source
                .and_then(|g| g.unit_texts.get(unit))
                .cloned()
                .unwrap_or_default();
            m.files()
                .write(&unit_path(unit), text.as_bytes(), 0o644, 0, 0)
        }
    }
}

/// Check that every unit of `desired` (or, with `all_units` false, every unit the plan
/// started) is active and its health probe passes. Waits
/// `settle` first when the plan started anything, so a unit that dies right after starting is
/// caught (a zero `settle` waits for nothing and looks once). Returns the records and the first failure.
pub async fn verify<M: Machine>(
    m: &M,
    desired: &Generation,
    plan: &Plan,
    settle: Duration,
    all_units: bool,
) -> (Vec<StepRecord>, Option<String>) {
    let mut records = Vec::new();
    let mut failure = None;
    // Normally every unit of the generation must be up; on hold, a unit stopped by hand is the
    // operator's experiment, so only what this plan started has to prove itself.
    let started = plan.started_units();
    let units: Vec<&String> = desired
        .manifest
        .units
        .keys()
        .filter(|u| all_units || started.contains(*u))
        .collect();
    // A unit that dies at once may already be back up by systemd's Restart= when we look;
    // its restart counter, read before and after settling, gives it away. All units are read
    // in one request each time (not one round trip per unit).
    let names: Vec<String> = units.iter().map(|u| (*u).clone()).collect();
    let mut restarts_before = std::collections::BTreeMap::new();
    if !started.is_empty() && !settle.is_zero() {
        if let Ok(states) = m.systemd().unit_states(&names).await {
            for (unit, s) in names.iter().zip(states) {
                restarts_before.insert(unit.clone(), s.n_restarts);
            }
        }
        timing::time_async("settle", tokio::time::sleep(settle)).await;
    }
    let states: Vec<Result<UnitState, String>> =
        match timing::time_async("verify", m.systemd().unit_states(&names)).await {
            Ok(states) => states.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e.to_string()); names.len()],
        };
    for (unit, state) in names.iter().zip(states) {
        let before = restarts_before.get(unit).copied();
        match state {
            Ok(s) if s.is_active() && before.is_none_or(|b| s.n_restarts <= b) => {
                records.push(StepRecord::new(
                    "verify",
                    unit,
                    "ok",
                    format!("{} ({})", s.active_state, s.sub_state),
                    false,
                ))
            }
            Ok(s) => {
                let msg = if s.is_active() {
                    format!(
                        "{unit} crashed and was restarted by systemd {} time(s) after the switch",
                        s.n_restarts - before.unwrap_or(0)
                    )
                } else {
                    format!(
                        "{unit} is {} ({}) after the switch",
                        s.active_state, s.sub_state
                    )
                };
                records.push(StepRecord::new("verify", unit, "failed", &msg, false));
                failure.get_or_insert(msg);
            }
            Err(e) => {
                records.push(StepRecord::new("verify", unit, "failed", &e, false));
                failure.get_or_insert(e);
            }
        }
    }
    if failure.is_some() {
        return (records, failure);
    }
    // Health probes run side by side: the switch waits for the slowest, not for their sum.
    let probes = desired
        .manifest
        .units
        .iter()
        .filter(|(u, _)| units.contains(u))
        .filter_map(|(unit, spec)| Some((unit, spec.health.as_ref()?)))
        .map(|(unit, health)| async move {
            let within =
                crate::definition::duration_or(health.within.as_deref().unwrap_or("10s"), 10);
            (unit, m.health().check(health, within).await)
        });
    let checked = timing::time_async("health", futures_util::future::join_all(probes)).await;
    for (unit, result) in checked {
        match result {
            Ok(()) => records.push(StepRecord::new("health", unit, "ok", "healthy", false)),
            Err(e) => {
                let msg = format!("health check of {unit} failed: {e}");
                records.push(StepRecord::new("health", unit, "failed", &msg, false));
                failure.get_or_insert(msg);
            }
        }
    }
    (records, failure)
}

#[cfg(test)]
mod tests;
