//! In-memory host: a stateful model of files, accounts, systemd and health probes, for the
//! component tests of the apply layer and the driver (its clock follows tokio's, so they run
//! with time paused). It follows the real semantics that matter to strackt: a unit
//! file is only seen by systemd after daemon-reload, starting a unit whose `ExecStart` is
//! `/bin/false` (or that is listed in `failing`) fails, enabling needs a loaded unit, an
//! instance `a@i.service` is known once its template `a@.service` is, restarting gives a
//! new MainPID, and a unit's main process has children (nginx's workers) replaced with new
//! ones at each start and reload.

mod accounts;
mod clock;
mod packages;
mod processes;
mod systemd;

pub use clock::FakeClock;
pub use processes::{FakeProcesses, FakeSnapshot, GitModel, ProcessState, ResticModel};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::accounts::UserState;
use super::databases::{Databases, PgState, RoleState};
use super::files::sha256_hex;
use super::firewall::{Firewall, SshSession};
use super::health::{Health, HealthError};
use super::packages::Installed;
use super::sysctl::Sysctl;
use super::usage::{ProcessInfo, Usage};
use super::{FileState, Files, HostError};
use crate::definition::HealthSpec;

#[derive(Debug, Clone, Default)]
struct Unit {
    loaded: Option<String>,
    active: bool,
    enabled: bool,
    pid: u32,
    /// The children of its main process.
    children: BTreeSet<u32>,
}

/// Everything the fake host holds; public so tests can arrange and inspect it.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Files: path → (content, mode, uid, gid).
    pub files: BTreeMap<PathBuf, (Vec<u8>, u32, u32, u32)>,
    /// Units provided by packages (loaded without a file under /etc/systemd/system).
    pub vendor_units: BTreeSet<String>,
    /// Units whose start always fails.
    pub failing: BTreeSet<String>,
    /// Health commands that fail.
    pub unhealthy: BTreeSet<String>,
    /// HTTP health URLs that fail while a package is at a version: url → (package, version).
    pub broken_by: BTreeMap<String, (String, String)>,
    /// Kernel parameters that exist, with their live values.
    pub sysctl: BTreeMap<String, String>,
    /// Kernel parameters that refuse writes (read-only outside `net.*` in a container).
    pub sysctl_read_only: BTreeSet<String>,
    /// strackt's nftables table as the fake kernel lists it (`None`: no table).
    pub nft_table: Option<String>,
    /// Users beyond the built-in root/nobody.
    pub users: BTreeMap<String, UserState>,
    /// Groups beyond the built-in root/adm/nogroup.
    pub groups: BTreeMap<String, u32>,
    /// Password hashes.
    pub shadow: BTreeMap<String, String>,
    /// The apt repository: package → available versions.
    pub repository: BTreeMap<String, Vec<String>>,
    /// Versions of the repository published in a security suite: (package, version).
    pub security: BTreeSet<(String, String)>,
    /// `apt-get update` runs (failed ones too).
    pub refreshes: usize,
    /// apt's sources list does not parse: every refresh fails until someone fixes it.
    pub sources_broken: bool,
    /// Installed packages.
    pub installed: BTreeMap<String, Installed>,
    /// `.deb` files in strackt's cache.
    pub debs: BTreeSet<String>,
    /// The mirror is unreachable: only cached `.deb` files install.
    pub offline: bool,
    /// Connected SSH clients.
    pub ssh_sessions: Vec<SshSession>,
    /// Processes of each unit while it runs (see [`Usage`]).
    pub processes: BTreeMap<String, Vec<ProcessInfo>>,
    /// How many children a unit's main process runs (nginx's workers): each start and reload
    /// of the unit gives it that many new ones, the old ones gone at once (they drain in no
    /// time here).
    pub workers: BTreeMap<String, usize>,
    /// Files each package ships (what `dpkg -L` lists once it is installed).
    pub package_files: BTreeMap<String, BTreeSet<String>>,
    /// What each package depends on.
    pub depends: BTreeMap<String, Vec<String>>,
    /// PostgreSQL answers (installed and running).
    pub pg_running: bool,
    /// PostgreSQL's roles and databases.
    pub pg: PgState,
    /// Every job run, in order (`start a.service`, `daemon-reload`, …).
    pub journal: Vec<String>,
    units: BTreeMap<String, Unit>,
    next_pid: u32,
}

/// The fake host.
#[derive(Debug, Default)]
pub struct FakeHost {
    state: Mutex<FakeState>,
    /// Running programs.
    pub processes: FakeProcesses,
    /// Time, moved by tokio's (paused) clock.
    pub clock: FakeClock,
}

impl FakeHost {
    /// Lock the state for arranging or asserting.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `unit` is running, and its MainPID.
    pub fn running(&self, unit: &str) -> Option<u32> {
        self.state()
            .units
            .get(unit)
            .filter(|u| u.active)
            .map(|u| u.pid)
    }

    /// Simulate an operator's `systemctl stop`.
    pub fn stop_by_hand(&self, unit: &str) {
        if let Some(u) = self.state().units.get_mut(unit) {
            u.active = false;
        }
    }

    /// Simulate an operator's `systemctl disable`.
    pub fn disable_by_hand(&self, unit: &str) {
        if let Some(u) = self.state().units.get_mut(unit) {
            u.enabled = false;
        }
    }
}

impl Usage for FakeHost {
    fn unit_processes(&self, unit: &str) -> Result<Vec<ProcessInfo>, HostError> {
        let s = self.state();
        let running = s.units.get(unit).is_some_and(|u| u.active);
        Ok(if running {
            s.processes.get(unit).cloned().unwrap_or_default()
        } else {
            Vec::new()
        })
    }

    fn children(&self, pid: u32) -> BTreeSet<u32> {
        self.state()
            .units
            .values()
            .find(|u| u.active && u.pid == pid)
            .map(|u| u.children.clone())
            .unwrap_or_default()
    }

    fn package_files(
        &self,
        names: &[String],
    ) -> Result<BTreeMap<String, BTreeSet<String>>, HostError> {
        let s = self.state();
        Ok(names
            .iter()
            .filter(|n| s.installed.contains_key(*n))
            .map(|n| {
                (
                    n.clone(),
                    s.package_files.get(n).cloned().unwrap_or_default(),
                )
            })
            .collect())
    }

    fn owners(&self, paths: &[String]) -> Result<BTreeMap<String, String>, HostError> {
        let s = self.state();
        Ok(paths
            .iter()
            .filter_map(|p| {
                s.package_files
                    .iter()
                    .find(|(pkg, files)| files.contains(p) && s.installed.contains_key(*pkg))
                    .map(|(pkg, _)| (p.clone(), pkg.clone()))
            })
            .collect())
    }

    fn dependencies(&self) -> Result<BTreeMap<String, Vec<String>>, HostError> {
        let s = self.state();
        Ok(s.installed
            .keys()
            .map(|n| (n.clone(), s.depends.get(n).cloned().unwrap_or_default()))
            .collect())
    }
}

impl Files for FakeHost {
    fn stat(&self, path: &Path) -> Result<Option<FileState>, HostError> {
        Ok(self
            .state()
            .files
            .get(path)
            .map(|(c, mode, uid, gid)| FileState {
                sha256: sha256_hex(c),
                mode: *mode,
                uid: *uid,
                gid: *gid,
            }))
    }
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.state().files.get(path).map(|f| f.0.clone()))
    }
    fn write(
        &self,
        path: &Path,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), HostError> {
        self.state()
            .files
            .insert(path.to_path_buf(), (content.to_vec(), mode, uid, gid));
        Ok(())
    }
    fn remove(&self, path: &Path) -> Result<(), HostError> {
        self.state().files.remove(path);
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<(), HostError> {
        let mut s = self.state();
        if let Some(f) = s.files.remove(from) {
            s.files.insert(to.to_path_buf(), f);
        }
        Ok(())
    }
    fn uid(&self, user: &str) -> Result<u32, HostError> {
        match user {
            "root" => Ok(0),
            "nobody" => Ok(65534),
            n => self
                .state()
                .users
                .get(n)
                .map(|u| u.uid)
                .or_else(|| n.parse().ok())
                .ok_or_else(|| HostError::UnknownName {
                    kind: "user",
                    name: n.into(),
                }),
        }
    }
    fn gid(&self, group: &str) -> Result<u32, HostError> {
        match group {
            "root" => Ok(0),
            "adm" => Ok(4),
            "nogroup" => Ok(65534),
            n => self
                .state()
                .groups
                .get(n)
                .copied()
                .or_else(|| n.parse().ok())
                .ok_or_else(|| HostError::UnknownName {
                    kind: "group",
                    name: n.into(),
                }),
        }
    }
}

impl Sysctl for FakeHost {
    fn get(&self, key: &str) -> Result<Option<String>, HostError> {
        Ok(self.state().sysctl.get(key).cloned())
    }
    fn set(&self, key: &str, value: &str) -> Result<(), HostError> {
        let mut s = self.state();
        if s.sysctl_read_only.contains(key) || !s.sysctl.contains_key(key) {
            return Err(HostError::Io {
                op: "write",
                path: format!("/proc/sys/{}", key.replace('.', "/")).into(),
                source: std::io::ErrorKind::PermissionDenied.into(),
            });
        }
        s.sysctl.insert(key.to_string(), value.to_string());
        Ok(())
    }
}

impl Firewall for FakeHost {
    fn check(&self, ruleset: &str) -> Result<(), HostError> {
        if ruleset.contains("table inet strackt {") {
            Ok(())
        } else {
            Err(HostError::Command {
                op: "nft -c",
                message: "syntax error".into(),
            })
        }
    }
    fn apply(&self, ruleset: &str) -> Result<(), HostError> {
        Firewall::check(self, ruleset)?;
        // The kernel lists a table in its own words; model that as a transformation.
        self.state().nft_table = Some(format!("listed: {}", sha256_hex(ruleset.as_bytes())));
        Ok(())
    }
    fn listing(&self) -> Result<Option<String>, HostError> {
        Ok(self.state().nft_table.clone())
    }
    fn remove(&self) -> Result<(), HostError> {
        self.state().nft_table = None;
        Ok(())
    }
    fn ssh_sessions(&self) -> Result<Vec<SshSession>, HostError> {
        Ok(self.state().ssh_sessions.clone())
    }
}

impl super::Machine for FakeHost {
    type Systemd = FakeHost;
    type Files = FakeHost;
    type Health = FakeHost;
    type Sysctl = FakeHost;
    type Firewall = FakeHost;
    type Accounts = FakeHost;
    type Packages = FakeHost;
    type Usage = FakeHost;
    type Databases = FakeHost;
    type Processes = FakeProcesses;
    type Clock = FakeClock;
    fn systemd(&self) -> &FakeHost {
        self
    }
    fn files(&self) -> &FakeHost {
        self
    }
    fn health(&self) -> &FakeHost {
        self
    }
    fn sysctl(&self) -> &FakeHost {
        self
    }
    fn firewall(&self) -> &FakeHost {
        self
    }
    fn accounts(&self) -> &FakeHost {
        self
    }
    fn packages(&self) -> &FakeHost {
        self
    }
    fn usage(&self) -> &FakeHost {
        self
    }
    fn databases(&self) -> &FakeHost {
        self
    }
    fn processes(&self) -> &FakeProcesses {
        &self.processes
    }
    fn clock(&self) -> &FakeClock {
        &self.clock
    }
}

impl FakeState {
    fn postgres(&mut self) -> Result<&mut PgState, HostError> {
        if self.pg_running {
            Ok(&mut self.pg)
        } else {
            Err(HostError::Command {
                op: "postgresql",
                message: "PostgreSQL is not installed or not running".into(),
            })
        }
    }
}

impl Databases for FakeHost {
    async fn observe(&self) -> Result<PgState, HostError> {
        self.state().postgres().cloned()
    }
    async fn ensure_role(&self, name: &str, verifier: Option<&str>) -> Result<(), HostError> {
        let mut s = self.state();
        let role = s.postgres()?.roles.entry(name.into()).or_insert(RoleState {
            login: true,
            verifier: None,
        });
        role.login = true;
        if let Some(v) = verifier {
            role.verifier = Some(v.into());
        }
        Ok(())
    }
    async fn ensure_database(&self, name: &str, owner: &str) -> Result<(), HostError> {
        let mut s = self.state();
        let pg = s.postgres()?;
        if !pg.roles.contains_key(owner) {
            return Err(HostError::Command {
                op: "postgresql",
                message: format!("role {owner:?} does not exist"),
            });
        }
        pg.databases.insert(name.into(), owner.into());
        Ok(())
    }
}

impl Health for FakeHost {
    async fn check(&self, spec: &HealthSpec, _within: Duration) -> Result<(), HealthError> {
        match &spec.command {
            Some(c) if c.starts_with("/bin/false") || self.state().unhealthy.contains(c) => {
                Err(HealthError::CommandFailed {
                    cmd: c.clone(),
                    failure: "exited with exit status: 1".into(),
                    tail: String::new(),
                })
            }
            _ => {
                let s = self.state();
                let broken = spec
                    .http
                    .as_ref()
                    .and_then(|url| s.broken_by.get(url))
                    .is_some_and(|(pkg, v)| s.installed.get(pkg).is_some_and(|i| &i.version == v));
                if broken {
                    Err(HealthError::Get {
                        url: String::new(),
                        message: "connection refused".into(),
                    })
                } else {
                    Ok(())
                }
            }
        }
    }
}
