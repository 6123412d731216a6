//! plan/ — desired (a generation) against observed (a [`HostSnapshot`]) → an ordered [`Plan`].
//!
//! Pure: no I/O, no clock, no async. `strackt plan` prints exactly what `apply` would run,
//! because both call [`plan`]. Step order follows the switch phases: stop and remove what left
//! the definition, write files, write unit files, daemon-reload, firewall, settings, enable, reload,
//! restart, start. Verification (units active, health) is the apply layer's job after the plan ran.

mod databases;
mod digest;
mod guard;
pub mod keep;
mod packages;
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
    /// Files whose pre-strackt original is already backed up.
    pub backed_up: BTreeSet<String>,
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
        /// Whether a backup of the original exists to restore.
        restore_backup: bool,
    },
    /// Keep the pre-strackt original of a file before first overwriting it.
    BackupFile {
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
    /// Hold a package at its version.
    HoldPackage {
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
            Action::BackupFile { .. } => "backup-file",
            Action::WriteFile { .. } => "write-file",
            Action::InstallPackage { .. } => "install-package",
            Action::RemovePackage { .. } => "remove-package",
            Action::HoldPackage { .. } => "hold-package",
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
            | Action::BackupFile { path }
            | Action::WriteFile { path, .. } => path.clone(),
            Action::SetSysctl { key, .. } => key.clone(),
            Action::DaemonReload => String::new(),
            Action::InstallPackage { name }
            | Action::RemovePackage { name }
            | Action::HoldPackage { name }
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

/// An action with why it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
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
    pub steps: Vec<Step>,
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

/// Compute the steps that take the host from `observed` to `desired`.
///
/// `previous` is the generation the host is supposed to be on now (`None` before the first
/// switch); a difference that `previous` already did not want is marked as drift.
pub fn plan(desired: &Generation, previous: Option<&Generation>, observed: &HostSnapshot) -> Plan {
    let want = &desired.manifest;
    let mut steps: Vec<Step> = Vec::new();
    macro_rules! push {
        ($action:expr, $why:expr, $drift:expr) => {
            steps.push(Step {
                action: $action,
                why: $why,
                drift: $drift,
            })
        };
    }
    let was = |f: &dyn Fn(&Generation) -> bool| previous.is_some_and(f);

    // Phase 1: units that left the definition (only those strackt wrote are stopped/removed).
    for unit in &observed.owned_units {
        if want.units.get(unit).is_some_and(|u| u.sha256.is_some()) {
            continue;
        }
        let state = observed.units.get(unit);
        if state.is_some_and(UnitState::is_active) {
            push!(
                Action::Stop { unit: unit.clone() },
                "no longer in the definition".into(),
                false
            );
        }
        if state.is_some_and(|s| s.unit_file_state == "enabled") {
            push!(
                Action::Disable { unit: unit.clone() },
                "no longer in the definition".into(),
                false
            );
        }
        push!(
            Action::RemoveUnit { unit: unit.clone() },
            "no longer in the definition".into(),
            false
        );
    }
    // Phase 2: files that left the definition.
    for path in &observed.owned_files {
        if !want.files.contains_key(path) {
            let restore = observed.backed_up.contains(path);
            let why = if restore {
                "no longer in the definition; original restored"
            } else {
                "no longer in the definition"
            };
            push!(
                Action::RemoveFile {
                    path: path.clone(),
                    restore_backup: restore
                },
                why.into(),
                false
            );
        }
    }
    // Phase 2a: packages (before accounts and files: they may provide users, shells, paths).
    let kept = packages::plan_packages(want, previous, observed, &mut steps);
    // Phase 2b: accounts, before files (a file may belong to a user created here).
    for (name, g) in &want.groups {
        let drift = was(&|p| p.manifest.groups.get(name) == Some(g));
        match observed.groups.get(name).copied().flatten() {
            None => push!(
                Action::CreateGroup { name: name.clone() },
                "missing".into(),
                drift
            ),
            Some(have) => {
                if let Some(gid) = g.gid.filter(|gid| *gid != have) {
                    push!(
                        Action::SetGid {
                            name: name.clone(),
                            gid
                        },
                        format!("gid {have}, want {gid}"),
                        drift
                    );
                }
            }
        }
    }
    for name in &observed.owned_users {
        if !want.users.contains_key(name) && observed.users.get(name).is_some_and(Option::is_some) {
            let remove_home = previous
                .and_then(|p| p.manifest.users.get(name))
                .is_some_and(|u| u.remove_home);
            let why = if remove_home {
                "no longer in the definition; home removed"
            } else {
                "no longer in the definition; home kept"
            };
            push!(
                Action::RemoveUser {
                    name: name.clone(),
                    remove_home
                },
                why.into(),
                false
            );
        }
    }
    for (name, u) in &want.users {
        let drift = was(&|p| p.manifest.users.get(name) == Some(u));
        match observed.users.get(name).cloned().flatten() {
            None => push!(
                Action::CreateUser { name: name.clone() },
                "missing".into(),
                drift
            ),
            Some(have) => {
                let mut differs = Vec::new();
                if u.uid.is_some_and(|uid| uid != have.uid) {
                    differs.push(format!("uid {}", have.uid));
                }
                for (what, has, wants) in [
                    ("group", &have.group, &u.group),
                    ("shell", &have.shell, &u.shell),
                    ("home", &have.home, &u.home),
                    ("comment", &have.comment, &u.comment),
                ] {
                    if has != wants {
                        differs.push(format!("{what} {has:?}"));
                    }
                }
                if have.groups != u.groups {
                    differs.push(format!("groups {:?}", have.groups));
                }
                if !differs.is_empty() {
                    push!(
                        Action::ModifyUser { name: name.clone() },
                        format!("{} differ", differs.join(", ")),
                        drift
                    );
                }
            }
        }
        if u.password_secret.is_some() && observed.password_ok.get(name) != Some(&true) {
            push!(
                Action::SetPassword { name: name.clone() },
                "password differs from its secret".into(),
                drift
            );
        }
    }
    for name in &observed.owned_groups {
        if !want.groups.contains_key(name) && observed.groups.get(name).is_some_and(Option::is_some)
        {
            push!(
                Action::RemoveGroup { name: name.clone() },
                "no longer in the definition".into(),
                false
            );
        }
    }
    // Phase 3: managed files.
    let mut changed_files = BTreeSet::new();
    for (path, spec) in &want.files {
        // An owner that does not exist yet (created in this switch) has no id: write.
        let uid = observed.ids.get(&format!("user:{}", spec.owner)).copied();
        let gid = observed.ids.get(&format!("group:{}", spec.group)).copied();
        let have = observed.files.get(path).cloned().flatten();
        let why = match &have {
            None => "missing".to_string(),
            Some(h) if h.sha256 != spec.sha256 => "content differs".into(),
            Some(h) if h.mode != spec.mode => {
                format!("mode {:04o}, want {:04o}", h.mode, spec.mode)
            }
            Some(h) if Some(h.uid) != uid || Some(h.gid) != gid => {
                format!(
                    "owner {}:{}, want {}:{}",
                    h.uid, h.gid, spec.owner, spec.group
                )
            }
            Some(_) => continue,
        };
        let drift = was(&|g| g.manifest.files.get(path) == Some(spec));
        if have.is_some()
            && !observed.owned_files.contains(path)
            && !observed.backed_up.contains(path)
        {
            push!(
                Action::BackupFile { path: path.clone() },
                "existed before strackt managed it".into(),
                false
            );
        }
        if have.as_ref().is_none_or(|h| h.sha256 != spec.sha256) {
            changed_files.insert(path.clone());
        }
        push!(
            Action::WriteFile {
                path: path.clone(),
                mode: spec.mode,
                owner: spec.owner.clone(),
                group: spec.group.clone(),
            },
            why,
            drift
        );
    }
    // Phase 4: unit files strackt writes, and what their change means.
    let mut reload_units = BTreeSet::new();
    let mut restart_units = BTreeSet::new();
    let mut unit_files_changed = steps
        .iter()
        .any(|s| matches!(s.action, Action::RemoveUnit { .. }));
    for (unit, spec) in &want.units {
        let Some(text) = desired.unit_texts.get(unit) else {
            continue;
        };
        let have = observed.unit_files.get(unit).cloned().flatten();
        if have.as_deref() == Some(text.as_str()) {
            continue;
        }
        let drift = was(&|g| g.unit_texts.get(unit) == Some(text));
        let active = observed.units.get(unit).is_some_and(UnitState::is_active);
        let (why, change) = match &have {
            None => ("unit file missing".to_string(), UnitChange::Equal),
            Some(old) => ("unit file differs".to_string(), classify(old, text)),
        };
        push!(Action::WriteUnit { unit: unit.clone() }, why, drift);
        unit_files_changed = true;
        if active && spec.restart_on_change {
            match change {
                UnitChange::Restart => {
                    restart_units.insert(unit.clone());
                }
                UnitChange::Reload => {
                    reload_units.insert(unit.clone());
                }
                UnitChange::Equal | UnitChange::Cosmetic => {}
            }
        }
    }
    if unit_files_changed {
        push!(Action::DaemonReload, "unit files changed".into(), false);
    }
    // Phase 5: the firewall, as one transaction.
    match (&want.firewall, &observed.firewall_applied) {
        (Some(ruleset), Some(applied)) if &applied.ruleset == ruleset => {
            if observed.firewall_live.as_ref() != Some(&applied.listing) {
                let why = if observed.firewall_live.is_none() {
                    "table deleted"
                } else {
                    "rules changed by hand"
                };
                push!(Action::ApplyFirewall, why.into(), true);
            }
        }
        (Some(_), _) => push!(Action::ApplyFirewall, "ruleset changed".into(), false),
        (None, Some(_)) => push!(
            Action::RemoveFirewall,
            "no longer in the definition".into(),
            false
        ),
        (None, None) => {}
    }
    // Phase 6: settings, live (the file was written with the other files).
    for (key, value) in &want.sysctl {
        let have = observed.sysctl.get(key);
        if have != Some(value) {
            let drift = was(&|g| g.manifest.sysctl.get(key) == Some(value));
            let why = format!(
                "live value {}, want {value}",
                have.map_or("unknown", String::as_str)
            );
            push!(
                Action::SetSysctl {
                    key: key.clone(),
                    value: value.clone()
                },
                why,
                drift
            );
        }
    }
    // Phase 7: enablement.
    for (unit, spec) in &want.units {
        let state = observed.units.get(unit);
        if spec.enabled && !state.is_some_and(UnitState::is_enabled) {
            let drift = was(&|g| g.manifest.units.get(unit).is_some_and(|u| u.enabled));
            push!(
                Action::Enable { unit: unit.clone() },
                "not enabled".into(),
                drift
            );
        }
        if !spec.enabled && state.is_some_and(|s| s.unit_file_state == "enabled") {
            push!(
                Action::Disable { unit: unit.clone() },
                "enabled, want disabled".into(),
                false
            );
        }
    }
    // Phase 8: reload, restart, start.
    for (unit, spec) in &want.units {
        if spec.restart_on_change
            && spec.restart_on.iter().any(|f| changed_files.contains(f))
            && observed.units.get(unit).is_some_and(UnitState::is_active)
        {
            restart_units.insert(unit.clone());
        }
    }
    for unit in reload_units.difference(&restart_units) {
        push!(
            Action::Reload { unit: unit.clone() },
            "only ExecReload changed".into(),
            false
        );
    }
    for unit in &restart_units {
        push!(
            Action::Restart { unit: unit.clone() },
            "its unit or a file it depends on changed".into(),
            false
        );
    }
    for unit in want.units.keys() {
        let active = observed.units.get(unit).is_some_and(UnitState::is_active);
        if !active && !restart_units.contains(unit) {
            let drift = was(&|g| g.manifest.units.contains_key(unit));
            let state = observed
                .units
                .get(unit)
                .map_or("absent", |s| s.active_state.as_str());
            push!(
                Action::Start { unit: unit.clone() },
                format!("{state}, want active"),
                drift
            );
        }
    }
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
