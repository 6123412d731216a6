//! plan/ — desired (a generation) against observed (a [`HostSnapshot`]) → an ordered [`Plan`].
//!
//! Pure: no I/O, no clock, no async. `strackt plan` prints exactly what `apply` would run,
//! because both call [`plan`]. Step order follows the switch phases: stop and remove what left
//! the definition, write files, write unit files, daemon-reload, firewall, settings, enable, reload,
//! restart, start. Verification (units active, health) is the apply layer's job after the plan ran.

mod accounts;
mod databases;
mod digest;
mod files;
mod firewall;
mod guard;
pub mod keep;
mod packages;
mod services;
mod sysctl;
pub mod units;
pub mod users;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

pub use digest::state_digest;
pub use guard::lockout;
pub use packages::by_hand;
pub use units::{classify, UnitChange};

use crate::generation::Generation;
use crate::host::accounts::UserState;
use crate::host::packages::Installed;
use crate::host::{FileState, UnitState};

pub use crate::host::systemd::UNIT_DIR;

/// Everything observed on the host that the plan depends on (read-only, gathered by `observe`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostSnapshot {
    /// State of every desired or owned file (`None`: absent).
    pub files: BTreeMap<String, Option<FileState>>,
    /// Text of every desired-or-owned unit file strackt writes (`None`: absent).
    pub unit_files: BTreeMap<String, Option<String>>,
    /// systemd's view of every desired or owned unit.
    pub units: BTreeMap<String, UnitState>,
    /// Files strackt manages or managed (its ownership record).
    pub owned_files: BTreeSet<String>,
    /// Unit files strackt wrote (its ownership record).
    pub owned_units: BTreeSet<String>,
    /// Files whose pre-strackt original is already kept (see `apply::original_path`). The
    /// serialized name stays `backed_up`, so no JSON changes with the rename.
    #[serde(rename = "backed_up")]
    pub originals_kept: BTreeSet<String>,
    /// Resolved ids: `user:NAME` / `group:NAME` → id.
    pub ids: BTreeMap<String, u32>,
    /// Live values of the desired kernel parameters (normalized).
    pub sysctl: BTreeMap<String, String>,
    /// SHA-256 of the live listing of strackt's nftables table (`None`: no table).
    pub firewall_live: Option<String>,
    /// What strackt last applied to its table, if anything.
    pub firewall_applied: Option<FirewallRecord>,
    /// Every desired or owned user as the host has it (`None`: absent).
    pub users: BTreeMap<String, Option<UserState>>,
    /// Every desired or owned group's gid (`None`: absent).
    pub groups: BTreeMap<String, Option<u32>>,
    /// Users with a password secret: whether the host's hash equals the secret.
    pub password_ok: BTreeMap<String, bool>,
    /// Users strackt created (its ownership record).
    pub owned_users: BTreeSet<String>,
    /// Groups strackt created (its ownership record).
    pub owned_groups: BTreeSet<String>,
    /// Every installed package.
    pub packages: BTreeMap<String, Installed>,
    /// Packages installed when strackt took the host over (never removed as hand-made);
    /// `None` until recorded, and then nothing is removed as hand-installed.
    pub base_packages: Option<BTreeSet<String>>,
    /// Packages apps or strackt need (see [`keep`]) → why; never removed as hand-installed.
    pub needed: BTreeMap<String, String>,
    /// Roles of `databases:` that PostgreSQL has (absent: missing).
    pub db_roles: BTreeMap<String, RoleObserved>,
    /// Databases of `databases:` that PostgreSQL has → their owner (absent: missing).
    pub databases: BTreeMap<String, String>,
    /// Why PostgreSQL could not be read, when `databases:` needed it (it may be installed or
    /// started later in the same switch).
    pub postgres_unreadable: Option<String>,
}

/// A role of `databases:` as observed (its password compared, never kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleObserved {
    /// It may log in.
    pub login: bool,
    /// Its stored password verifier accepts the password secret (false without one).
    pub password_ok: bool,
}

/// The firewall strackt applied: which ruleset, and what the kernel listed right after, so a
/// later listing that differs is drift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FirewallRecord {
    /// SHA-256 of the applied `firewall.nft`.
    pub ruleset: String,
    /// SHA-256 of `nft list table inet strackt` right after applying it.
    pub listing: String,
}

/// One action on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Stop a unit.
    Stop {
        /// Unit name.
        unit: String,
    },
    /// Disable a unit.
    Disable {
        /// Unit name.
        unit: String,
    },
    /// Delete a unit file strackt wrote.
    RemoveUnit {
        /// Unit name.
        unit: String,
    },
    /// Delete a file that left the definition, putting back the pre-strackt original if any.
    RemoveFile {
        /// Absolute path.
        path: String,
        /// Whether a kept original exists to put back (`restore_backup` in plan JSON, as
        /// before the originals/backups rename).
        #[serde(rename = "restore_backup")]
        restore_original: bool,
    },
    /// Keep the pre-strackt original of a file before first overwriting it. Its step is named
    /// `backup-file` in history and plan JSON; that user-visible name stays.
    #[serde(rename = "backup-file")]
    KeepOriginal {
        /// Absolute path.
        path: String,
    },
    /// Write a managed file from the generation.
    WriteFile {
        /// Absolute path.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Owner user (resolved when written: it may be created in the same switch).
        owner: String,
        /// Owner group.
        group: String,
    },
    /// Install (or up/downgrade) a package to its locked version.
    InstallPackage {
        /// Package name.
        name: String,
    },
    /// Remove a package.
    RemovePackage {
        /// Package name.
        name: String,
    },
    /// Mark a package held at its version (`apt-mark hold`; not `strackt hold`). Its step
    /// keeps the user-visible name `hold-package`.
    #[serde(rename = "hold-package")]
    MarkHeld {
        /// Package name.
        name: String,
    },
    /// Create a group.
    CreateGroup {
        /// Name.
        name: String,
    },
    /// Change a group's gid.
    SetGid {
        /// Name.
        name: String,
        /// The gid.
        gid: u32,
    },
    /// Delete a group strackt created.
    RemoveGroup {
        /// Name.
        name: String,
    },
    /// Create a user.
    CreateUser {
        /// Name.
        name: String,
    },
    /// Bring a user to its specification (uid, groups, shell, home, comment).
    ModifyUser {
        /// Name.
        name: String,
    },
    /// Set a user's password from its secret.
    SetPassword {
        /// Name.
        name: String,
    },
    /// Delete a user strackt created.
    RemoveUser {
        /// Name.
        name: String,
        /// Its home too.
        remove_home: bool,
    },
    /// Write a unit file from the generation.
    WriteUnit {
        /// Unit name.
        unit: String,
    },
    /// `systemctl daemon-reload`.
    DaemonReload,
    /// Replace strackt's nftables table with the generation's ruleset (one transaction).
    ApplyFirewall,
    /// Delete strackt's nftables table.
    RemoveFirewall,
    /// Set a kernel parameter live.
    SetSysctl {
        /// Dotted key.
        key: String,
        /// Value (normalized).
        value: String,
    },
    /// Enable a unit.
    Enable {
        /// Unit name.
        unit: String,
    },
    /// Reload a unit.
    Reload {
        /// Unit name.
        unit: String,
    },
    /// Restart a unit.
    Restart {
        /// Unit name.
        unit: String,
    },
    /// Start a unit.
    Start {
        /// Unit name.
        unit: String,
    },
    /// Create a PostgreSQL login role if missing (with its password).
    CreateRole {
        /// Role name.
        name: String,
    },
    /// Let a role log in with its password secret.
    SetRolePassword {
        /// Role name.
        name: String,
    },
    /// Create a PostgreSQL database owned by its role if missing.
    CreateDatabase {
        /// Database name.
        name: String,
    },
    /// Give a database back to its declared owner.
    SetDatabaseOwner {
        /// Database name.
        name: String,
    },
}

impl Action {
    /// The step's verb, as history shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Stop { .. } => "stop",
            Action::Disable { .. } => "disable",
            Action::RemoveUnit { .. } => "remove-unit",
            Action::RemoveFile { .. } => "remove-file",
            Action::KeepOriginal { .. } => "backup-file",
            Action::WriteFile { .. } => "write-file",
            Action::InstallPackage { .. } => "install-package",
            Action::RemovePackage { .. } => "remove-package",
            Action::MarkHeld { .. } => "hold-package",
            Action::CreateGroup { .. } => "create-group",
            Action::SetGid { .. } => "set-gid",
            Action::RemoveGroup { .. } => "remove-group",
            Action::CreateUser { .. } => "create-user",
            Action::ModifyUser { .. } => "modify-user",
            Action::SetPassword { .. } => "set-password",
            Action::RemoveUser { .. } => "remove-user",
            Action::WriteUnit { .. } => "write-unit",
            Action::DaemonReload => "daemon-reload",
            Action::SetSysctl { .. } => "set-sysctl",
            Action::ApplyFirewall => "apply-firewall",
            Action::RemoveFirewall => "remove-firewall",
            Action::Enable { .. } => "enable",
            Action::Reload { .. } => "reload",
            Action::Restart { .. } => "restart",
            Action::Start { .. } => "start",
            Action::CreateRole { .. } => "create-role",
            Action::SetRolePassword { .. } => "set-role-password",
            Action::CreateDatabase { .. } => "create-database",
            Action::SetDatabaseOwner { .. } => "set-database-owner",
        }
    }

    /// What the step acts on.
    pub fn target(&self) -> String {
        match self {
            Action::Stop { unit }
            | Action::Disable { unit }
            | Action::RemoveUnit { unit }
            | Action::WriteUnit { unit } => unit.clone(),
            Action::Enable { unit }
            | Action::Reload { unit }
            | Action::Restart { unit }
            | Action::Start { unit } => unit.clone(),
            Action::RemoveFile { path, .. }
            | Action::KeepOriginal { path }
            | Action::WriteFile { path, .. } => path.clone(),
            Action::SetSysctl { key, .. } => key.clone(),
            Action::DaemonReload => String::new(),
            Action::InstallPackage { name }
            | Action::RemovePackage { name }
            | Action::MarkHeld { name }
            | Action::CreateGroup { name }
            | Action::SetGid { name, .. }
            | Action::RemoveGroup { name }
            | Action::CreateUser { name }
            | Action::ModifyUser { name }
            | Action::SetPassword { name }
            | Action::RemoveUser { name, .. }
            | Action::CreateRole { name }
            | Action::SetRolePassword { name }
            | Action::CreateDatabase { name }
            | Action::SetDatabaseOwner { name } => name.clone(),
            Action::ApplyFirewall | Action::RemoveFirewall => {
                crate::host::firewall::FIREWALL_TABLE.to_string()
            }
        }
    }
}

/// An action with why it is needed: a step of a [`Plan`], before it runs. Named apart from
/// `ops::Step` (work an operation runs with live progress) and `ops::StepRecord` (what the
/// operations log keeps of a step that ran).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStep {
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// Why, in words.
    pub why: String,
    /// True when this repairs drift: the host differs from what the running generation
    /// already wanted (rather than the definition having changed).
    pub drift: bool,
}

/// The ordered steps that take the host to a generation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Steps in execution order.
    pub steps: Vec<PlannedStep>,
    /// Hand-installed packages left in place because something needs them: name → why.
    pub kept: BTreeMap<String, String>,
    /// Databases that left the definition, left as they are: name → why.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub released: BTreeMap<String, String>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
    /// The drift-repairing steps, described.
    pub fn drift(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|s| s.drift && s.action != Action::DaemonReload)
            .map(|s| format!("{} {}: {}", s.action.name(), s.action.target(), s.why))
            .collect()
    }
    /// Units the plan starts or restarts (they must prove they stay up).
    pub fn started_units(&self) -> BTreeSet<String> {
        self.steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Start { unit } | Action::Restart { unit } | Action::Reload { unit } => {
                    Some(unit.clone())
                }
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            writeln!(f, "nothing to do: the host matches the definition")?;
        }
        for s in &self.steps {
            let target = s.action.target();
            let sep = if target.is_empty() { "" } else { " " };
            writeln!(
                f,
                "would {}{sep}{target}  ({}{})",
                s.action.name(),
                s.why,
                if s.drift { ", drift" } else { "" }
            )?;
        }
        for (name, why) in &self.kept {
            writeln!(f, "keep {name}  (installed by hand, but {why})")?;
        }
        for (name, why) in &self.released {
            writeln!(f, "leave database {name}  ({why})")?;
        }
        Ok(())
    }
}

/// A step.
pub(super) fn step(action: Action, why: impl Into<String>, drift: bool) -> PlannedStep {
    PlannedStep {
        action,
        why: why.into(),
        drift,
    }
}

/// Compute the steps that take the host from `observed` to `desired`.
///
/// `previous` is the generation the host is supposed to be on now (`None` before the first
/// switch); a difference that `previous` already did not want is marked as drift. Each kind
/// has its planner; this composes them in the switch's phase order (see the module doc).
pub fn plan(desired: &Generation, previous: Option<&Generation>, observed: &HostSnapshot) -> Plan {
    let want = &desired.manifest;
    let mut steps: Vec<PlannedStep> = Vec::new();
    // Phase 1 and 2: units, then files, that left the definition.
    services::plan_removed_units(desired, observed, &mut steps);
    files::plan_removed_files(want, observed, &mut steps);
    // Phase 2a: packages (before accounts and files: they may provide users, shells, paths).
    let kept = packages::plan_packages(want, previous, observed, &mut steps);
    // Phase 2b: accounts, before files (a file may belong to a user created here).
    accounts::plan_accounts(want, previous, observed, &mut steps);
    // Phase 3: managed files.
    let changed_files = files::plan_files(want, previous, observed, &mut steps);
    // Phase 4: unit files, and what their change means for running units.
    let bounces = services::plan_unit_files(desired, previous, observed, &mut steps);
    // Phase 5 and 6: the firewall as one transaction; settings, live.
    firewall::plan_firewall(want, observed, &mut steps);
    sysctl::plan_sysctl(want, previous, observed, &mut steps);
    // Phase 7 and 8: enablement; then reload, restart, start.
    services::plan_enablement(desired, previous, observed, &mut steps);
    services::plan_activation(
        desired,
        previous,
        observed,
        bounces,
        &changed_files,
        &mut steps,
    );
    // Phase 9: databases, once PostgreSQL may have been installed and started above.
    let released = databases::plan_databases(want, previous, observed, &mut steps);
    Plan {
        steps,
        kept,
        released,
    }
}

#[cfg(test)]
mod tests;
