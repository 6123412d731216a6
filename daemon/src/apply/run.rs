//! apply/run — carry a [`Plan`]'s steps out through `host/`, in order: systemd jobs of one kind
//! side by side, enables and package work batched, everything else one step at a time, with
//! ownership recorded before each write. Must not: reorder or skip steps of its own accord
//! (the plan decides), or stop without a record of every step.

use std::path::Path;

use super::{original_path, read_secret, Ownership};
use crate::generation::ManagedGroup;
use crate::generation::{Generation, Store};
use crate::host::accounts::{Accounts, ManagedUser};
use crate::host::databases::{scram_verifier, Databases};
use crate::host::files::sha256_hex;
use crate::host::firewall::Firewall;
use crate::host::packages::Packages;
use crate::host::sysctl::Sysctl;
use crate::host::Machine;
use crate::host::{Files, HostError, JobKind, Systemd};
use crate::ops::{StepOutcome, StepRecord};
use crate::plan::{Action, FirewallRecord, Plan, UNIT_DIR};
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
                StepOutcome::Skipped,
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
            StepOutcome::Ok,
            &step.why,
            step.drift,
        ),
        Err(e) => StepRecord::new(
            step.action.name(),
            &step.action.target(),
            StepOutcome::Failed,
            e.to_string(),
            step.drift,
        ),
    }
}

// Whole on purpose (~135 lines): one arm per action, and the match is exhaustive, so a new
// action cannot be left without a way to run; the arms are short and share the unit path,
// the source generation and the ownership records (written before the host changes).
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
