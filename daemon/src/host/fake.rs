//! In-memory host: a stateful model of files, accounts, systemd and health probes, for the
//! component tests of the apply layer and the driver (its clock follows tokio's, so they run
//! with time paused). It follows the real semantics that matter to strackt: a unit
//! file is only seen by systemd after daemon-reload, starting a unit whose `ExecStart` is
//! `/bin/false` (or that is listed in `failing`) fails, enabling needs a loaded unit, an
//! instance `a@i.service` is known once its template `a@.service` is, and restarting gives a
//! new MainPID.

mod clock;
mod processes;

pub use clock::FakeClock;
pub use processes::{FakeProcesses, FakeSnapshot, GitModel, ProcessState, ResticModel};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::accounts::{Accounts, ManagedUser, UserState};
use super::databases::{Databases, PgState, RoleState};
use super::files::sha256_hex;
use super::firewall::{Firewall, SshSession};
use super::health::Health;
use super::packages::{compare_versions, Installed, Offer, Offered, Packages, Resolved};
use super::sysctl::Sysctl;
use super::systemd::UNIT_DIR;
use super::usage::{ProcessInfo, Usage};
use super::{FileState, Files, HostError, JobKind, Systemd, UnitState};
use crate::definition::HealthSpec;

#[derive(Debug, Clone, Default)]
struct Unit {
    loaded: Option<String>,
    active: bool,
    enabled: bool,
    pid: u32,
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

impl FakeState {
    fn unit_file(&self, unit: &str) -> Option<String> {
        self.files
            .get(&Path::new(UNIT_DIR).join(unit))
            .map(|f| String::from_utf8_lossy(&f.0).into_owned())
    }

    /// What systemd loads `unit` from: its own unit, or for an instance `a@i.service` its
    /// template `a@.service`.
    fn source(&self, unit: &str) -> String {
        match unit.split_once('@') {
            Some((base, rest)) => match rest.rsplit_once('.') {
                Some((_, kind)) => format!("{base}@.{kind}"),
                None => unit.to_string(),
            },
            None => unit.to_string(),
        }
    }

    /// Whether systemd can load `unit` (a unit file after daemon-reload, or a vendor unit).
    fn knows(&self, unit: &str) -> bool {
        let source = self.source(unit);
        self.units.get(&source).is_some_and(|u| u.loaded.is_some())
            || self.vendor_units.contains(&source)
    }
}

impl Systemd for FakeHost {
    async fn unit_state(&self, unit: &str) -> Result<UnitState, HostError> {
        let s = self.state();
        let u = s.units.get(unit).cloned().unwrap_or_default();
        let known = s.knows(unit);
        Ok(UnitState {
            load_state: if known { "loaded" } else { "not-found" }.into(),
            active_state: if u.active { "active" } else { "inactive" }.into(),
            sub_state: if u.active { "running" } else { "dead" }.into(),
            unit_file_state: if !known {
                String::new()
            } else if u.enabled {
                "enabled".into()
            } else {
                "disabled".into()
            },
            fragment_path: String::new(),
            main_pid: if u.active { u.pid } else { 0 },
            n_restarts: 0,
        })
    }

    async fn unit_states(&self, units: &[String]) -> Result<Vec<UnitState>, HostError> {
        let mut states = Vec::with_capacity(units.len());
        for unit in units {
            states.push(self.unit_state(unit).await?);
        }
        Ok(states)
    }

    async fn daemon_reload(&self) -> Result<(), HostError> {
        let mut s = self.state();
        s.journal.push("daemon-reload".into());
        let names: BTreeSet<String> = s.units.keys().cloned().collect();
        let on_disk: BTreeSet<String> = s
            .files
            .keys()
            .filter(|p| p.parent() == Some(Path::new(UNIT_DIR)))
            .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
            .collect();
        for name in names.union(&on_disk) {
            let text = s.unit_file(name);
            s.units.entry(name.clone()).or_default().loaded = text;
        }
        Ok(())
    }

    async fn run_job(&self, kind: JobKind, unit: &str) -> Result<(), HostError> {
        let mut s = self.state();
        s.journal.push(format!("{} {unit}", kind.verb()));
        let known = s.knows(unit);
        let fails = s.failing.contains(unit)
            || s.units
                .get(&s.source(unit))
                .and_then(|u| u.loaded.as_deref())
                .is_some_and(|t| t.contains("ExecStart=/bin/false"));
        s.next_pid += 1;
        let pid = 100 + s.next_pid;
        let u = s.units.entry(unit.to_string()).or_default();
        let err = |message: &str| {
            Err(HostError::Systemd {
                op: kind.verb(),
                unit: unit.to_string(),
                message: message.into(),
            })
        };
        match kind {
            JobKind::Stop => {
                u.active = false;
                Ok(())
            }
            _ if !known => err("Unit not found."),
            JobKind::Reload if !u.active => err("job result: failed"),
            JobKind::Reload => Ok(()),
            JobKind::Start if u.active => Ok(()),
            JobKind::Start | JobKind::Restart => {
                if fails {
                    u.active = false;
                    return err("job result: failed");
                }
                u.active = true;
                u.pid = pid;
                Ok(())
            }
        }
    }

    async fn enable(&self, units: &[String]) -> Result<(), HostError> {
        let mut s = self.state();
        for unit in units {
            s.journal.push(format!("enable {unit}"));
            s.units.entry(unit.clone()).or_default().enabled = true;
        }
        Ok(())
    }

    async fn disable(&self, units: &[String]) -> Result<(), HostError> {
        let mut s = self.state();
        for unit in units {
            s.journal.push(format!("disable {unit}"));
            s.units.entry(unit.clone()).or_default().enabled = false;
        }
        Ok(())
    }

    async fn reset_failed(&self, unit: &str) {
        self.state().journal.push(format!("reset-failed {unit}"));
    }

    /// The unit and its `aux` units are loaded from their properties (kept as text) and
    /// `unit` is started: it fails when it is listed in `failing`.
    async fn start_transient(
        &self,
        unit: &str,
        properties: &[(String, super::systemd::Value<'static>)],
        aux: &[(String, super::systemd::Properties)],
    ) -> Result<(), HostError> {
        {
            let mut s = self.state();
            s.journal.push(format!("start-transient {unit}"));
            let text = |props: &[(String, super::systemd::Value<'static>)]| {
                props.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
            };
            for (name, props) in aux {
                s.units.entry(name.clone()).or_default().loaded = Some(text(props));
            }
            s.units.entry(unit.to_string()).or_default().loaded = Some(text(properties));
        }
        self.run_job(JobKind::Start, unit).await
    }

    async fn units_matching(&self, pattern: &str) -> Result<Vec<String>, HostError> {
        let s = self.state();
        Ok(s.units
            .iter()
            .filter(|(name, _)| s.knows(name) && glob(pattern, name))
            .map(|(name, _)| name.clone())
            .collect())
    }
}

/// Whether `name` matches the glob `pattern` (`*` for any run of characters; systemd's other
/// wildcards are not used by strackt).
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob(rest, &tail[i..]))
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

impl Accounts for FakeHost {
    fn users(&self) -> Result<BTreeMap<String, UserState>, HostError> {
        Ok(self.state().users.clone())
    }
    fn groups(&self) -> Result<BTreeMap<String, u32>, HostError> {
        let mut g = self.state().groups.clone();
        g.extend([("root".to_string(), 0), ("adm".to_string(), 4)]);
        Ok(g)
    }
    fn password_hash(&self, user: &str) -> Result<Option<String>, HostError> {
        let s = self.state();
        Ok(s.users
            .contains_key(user)
            .then(|| s.shadow.get(user).cloned().unwrap_or_else(|| "!".into())))
    }
    fn create_group(&self, name: &str, gid: Option<u32>, _system: bool) -> Result<(), HostError> {
        let mut s = self.state();
        let gid = gid.unwrap_or(1000 + s.groups.len() as u32);
        s.groups.insert(name.into(), gid);
        Ok(())
    }
    fn set_gid(&self, name: &str, gid: u32) -> Result<(), HostError> {
        self.state().groups.insert(name.into(), gid);
        Ok(())
    }
    fn delete_group(&self, name: &str) -> Result<(), HostError> {
        self.state().groups.remove(name);
        Ok(())
    }
    fn create_user(&self, name: &str, spec: &ManagedUser) -> Result<(), HostError> {
        if spec.group == name && !self.groups()?.contains_key(name) {
            self.create_group(name, None, spec.system)?;
        }
        if !self.groups()?.contains_key(&spec.group) {
            return Err(HostError::Command {
                op: "useradd",
                message: format!("group '{}' does not exist", spec.group),
            });
        }
        let mut s = self.state();
        let uid = spec.uid.unwrap_or(2000 + s.users.len() as u32);
        s.users.insert(
            name.into(),
            UserState {
                uid,
                group: spec.group.clone(),
                groups: spec.groups.clone(),
                shell: spec.shell.clone(),
                home: spec.home.clone(),
                comment: spec.comment.clone(),
            },
        );
        Ok(())
    }
    fn modify_user(&self, name: &str, spec: &ManagedUser) -> Result<(), HostError> {
        let mut s = self.state();
        let u = s.users.get_mut(name).ok_or_else(|| HostError::Command {
            op: "usermod",
            message: format!("user '{name}' does not exist"),
        })?;
        *u = UserState {
            uid: spec.uid.unwrap_or(u.uid),
            group: spec.group.clone(),
            groups: spec.groups.clone(),
            shell: spec.shell.clone(),
            home: spec.home.clone(),
            comment: spec.comment.clone(),
        };
        Ok(())
    }
    fn set_password(&self, name: &str, hash: &str) -> Result<(), HostError> {
        self.state().shadow.insert(name.into(), hash.into());
        Ok(())
    }
    fn delete_user(&self, name: &str, _remove_home: bool) -> Result<(), HostError> {
        let mut s = self.state();
        s.users.remove(name);
        s.shadow.remove(name);
        if s.groups.contains_key(name) {
            s.groups.remove(name);
        }
        Ok(())
    }
}

impl Packages for FakeHost {
    fn installed(&self) -> Result<BTreeMap<String, Installed>, HostError> {
        Ok(self.state().installed.clone())
    }
    fn resolve(&self, wants: &BTreeMap<String, String>) -> Result<Resolved, HostError> {
        let s = self.state();
        let failed = |message: String| HostError::Command {
            op: "apt-cache",
            message,
        };
        let one = |name: &String, want: &String| {
            let versions = s
                .repository
                .get(name)
                .ok_or_else(|| failed(format!("package {name:?} is not available")))?;
            match want.as_str() {
                "latest" => versions
                    .last()
                    .cloned()
                    .ok_or_else(|| failed("no candidate".into())),
                v if versions.iter().any(|x| x == v) => Ok(v.to_string()),
                v => Err(failed(format!(
                    "version {v:?} of {name:?} is not available (available: {})",
                    versions.join(", ")
                ))),
            }
        };
        Ok(wants
            .iter()
            .map(|(name, want)| (name.clone(), one(name, want)))
            .collect())
    }
    fn fetch(
        &self,
        locks: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, HostError> {
        let mut s = self.state();
        let mut out = BTreeMap::new();
        for (name, version) in locks {
            let deb = format!("{name}_{version}_all.deb");
            if !s.debs.contains(&deb) {
                if s.offline {
                    return Err(HostError::Command {
                        op: "apt-get",
                        message: "could not connect to the mirror".into(),
                    });
                }
                s.debs.insert(deb.clone());
            }
            out.insert(name.clone(), deb);
        }
        Ok(out)
    }
    fn install(&self, debs: &[String]) -> Result<(), HostError> {
        let mut s = self.state();
        for deb in debs {
            if !s.debs.contains(deb) {
                return Err(HostError::Command {
                    op: "apt-get",
                    message: format!("{deb} is not in the cache"),
                });
            }
            let mut parts = deb.split('_');
            let (name, version) = (
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
            );
            s.installed.insert(
                name,
                Installed {
                    version,
                    held: false,
                    auto: false,
                    essential: false,
                },
            );
        }
        Ok(())
    }
    fn remove(&self, names: &[String]) -> Result<(), HostError> {
        let mut s = self.state();
        for n in names {
            s.installed.remove(n);
        }
        Ok(())
    }
    fn mark_held(&self, names: &[String], held: bool) -> Result<(), HostError> {
        let mut s = self.state();
        for n in names {
            if let Some(p) = s.installed.get_mut(n) {
                p.held = held;
            }
        }
        Ok(())
    }
    fn is_cached(&self, deb: &str) -> bool {
        self.state().debs.contains(deb)
    }
    fn prune_cache(&self, keep: &BTreeSet<String>) -> Result<(), HostError> {
        self.state().debs.retain(|d| keep.contains(d));
        Ok(())
    }
    fn refresh(&self) -> Result<(), HostError> {
        let mut s = self.state();
        s.refreshes += 1;
        let message = if s.sources_broken {
            "E: Malformed entry 1 in list file /etc/apt/sources.list (Component)"
        } else if s.offline {
            "could not connect to the mirror"
        } else {
            return Ok(());
        };
        Err(HostError::Command {
            op: "apt-get",
            message: message.into(),
        })
    }
    fn candidates(&self, names: &[String]) -> Result<BTreeMap<String, Offer>, HostError> {
        let s = self.state();
        Ok(names
            .iter()
            .filter_map(|name| {
                let mut versions = s.repository.get(name)?.clone();
                versions.sort_by(|a, b| compare_versions(b, a));
                let offered = versions
                    .iter()
                    .map(|v| Offered {
                        version: v.clone(),
                        suites: vec![if s.security.contains(&(name.clone(), v.clone())) {
                            "bookworm-security".into()
                        } else {
                            "bookworm".into()
                        }],
                    })
                    .collect();
                Some((
                    name.clone(),
                    Offer {
                        installed: s.installed.get(name).map(|i| i.version.clone()),
                        candidate: versions.first().cloned(),
                        versions: offered,
                    },
                ))
            })
            .collect())
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
    async fn check(&self, spec: &HealthSpec, _within: Duration) -> Result<(), String> {
        match &spec.command {
            Some(c) if c.starts_with("/bin/false") || self.state().unhealthy.contains(c) => {
                Err(format!("health command {c:?} exited with exit status: 1"))
            }
            _ => {
                let s = self.state();
                let broken = spec
                    .http
                    .as_ref()
                    .and_then(|url| s.broken_by.get(url))
                    .is_some_and(|(pkg, v)| s.installed.get(pkg).is_some_and(|i| &i.version == v));
                if broken {
                    Err("GET: connection refused".into())
                } else {
                    Ok(())
                }
            }
        }
    }
}
