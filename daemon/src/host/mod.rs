//! host/ — the seams between strackt and the machine it manages.
//!
//! One trait per host subsystem, each with a real implementation (the machine: systemd over
//! D-Bus, the filesystem, health probes) and a stateful in-memory fake (`fake`) that models the
//! subsystem closely enough for the component tests of the apply layer and the driver.
//!
//! This layer *does* things and *reports* what happened; it never decides what should happen.
//! Deciding is `plan/`'s job, sequencing is `apply/`'s.

pub mod accounts;
pub mod clock;
pub mod databases;
pub mod definition;
pub mod fake;
pub mod files;
pub mod firewall;
pub mod health;
pub mod packages;
pub mod private;
pub mod processes;
pub mod repository;
pub mod store;
pub mod sysctl;
pub mod systemd;
pub mod tree;
pub mod usage;

use std::future::Future;
use std::path::PathBuf;

use serde::Serialize;

/// A failure of a host operation, with enough context to tell an operator what broke.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "read", "remove", …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// systemd refused a call or a job ended with a result other than `done`.
    #[error("systemd {op} {unit}: {message}")]
    Systemd {
        /// The D-Bus method or job kind ("start", "daemon-reload", …).
        op: &'static str,
        /// The unit concerned (empty for manager-wide calls).
        unit: String,
        /// What systemd said.
        message: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        secs: u64,
    },
    /// A secret the definition refers to is missing or unreadable.
    #[error("secret {name:?}: {path} is missing or unreadable (create it, mode 0600, root-only)")]
    Secret {
        /// The secret's name.
        name: String,
        /// Its file.
        path: String,
    },
    /// A host command (nft, …) failed.
    #[error("{op}: {message}")]
    Command {
        /// The command.
        op: &'static str,
        /// What it said.
        message: String,
    },
    /// A name could not be resolved (user, group).
    #[error("{kind} {name:?} does not exist on this host")]
    UnknownName {
        /// "user" or "group".
        kind: &'static str,
        /// The name that was looked up.
        name: String,
    },
    /// A program could not be started (not installed, not executable).
    #[error("{program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a command's or systemd's words say about a failure that goes away by itself: another
/// apt holding the dpkg or lists lock, a mirror or bucket that does not answer, a bus that
/// went away.
const TRANSIENT_WORDS: &[&str] = &[
    "could not get lock",
    "unable to acquire the dpkg frontend lock",
    "temporary failure resolving",
    "temporary failure in name resolution",
    "could not resolve",
    "could not connect",
    "connection refused",
    "connection reset",
    "connection timed out",
    "network is unreachable",
    "i/o timeout",
    "disconnected",
    "broken pipe",
];

impl HostError {
    /// Whether trying the same thing again later may succeed without anyone changing anything:
    /// a timeout, a lock held by another apt, an unreachable network, a lost D-Bus
    /// connection. Everything else (a refusal, a missing program, bad input, a missing
    /// secret) is permanent: it fails the same way until someone acts.
    pub fn is_transient(&self) -> bool {
        let says = |text: &str| {
            let low = text.to_lowercase();
            TRANSIENT_WORDS.iter().any(|w| low.contains(w))
        };
        match self {
            HostError::Timeout { .. } => true,
            HostError::Command { message, .. } | HostError::Systemd { message, .. } => {
                says(message)
            }
            HostError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
            ),
            HostError::Secret { .. } | HostError::UnknownName { .. } | HostError::Spawn { .. } => {
                false
            }
        }
    }
}

/// Callers still speaking text (deploys, restores, rebuilds) take a host failure as exactly its
/// message, so `?` works there unchanged.
impl From<HostError> for String {
    fn from(e: HostError) -> String {
        e.to_string()
    }
}

/// Build a closure that wraps an `io::Error` with the operation and path (for `map_err`).
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> HostError + 'a {
    move |source| HostError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What systemd says about one unit (the `org.freedesktop.systemd1.Unit` properties we use).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnitState {
    /// `LoadState`: loaded, not-found, masked, error, …
    pub load_state: String,
    /// `ActiveState`: active, inactive, failed, activating, deactivating, reloading.
    pub active_state: String,
    /// `SubState`: running, dead, exited, …
    pub sub_state: String,
    /// `UnitFileState`: enabled, disabled, static, linked, masked, "" when no unit file.
    pub unit_file_state: String,
    /// `FragmentPath`: the unit file systemd loaded this unit from.
    pub fragment_path: String,
    /// `MainPID` of a service (0 when not running or not a service).
    pub main_pid: u32,
    /// `NRestarts` of a service: automatic restarts since it was last started by hand/job.
    pub n_restarts: u32,
}

impl UnitState {
    /// True when the unit is running (or, for oneshot units with RemainAfterExit, has run).
    pub fn is_active(&self) -> bool {
        self.active_state == "active" || self.active_state == "reloading"
    }
    /// True when the unit is enabled to start at boot.
    pub fn is_enabled(&self) -> bool {
        matches!(
            self.unit_file_state.as_str(),
            "enabled" | "enabled-runtime" | "alias" | "static" | "generated" | "indirect"
        )
    }
}

/// A job strackt asks systemd to run for a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// `StartUnit(name, "replace")`.
    Start,
    /// `StopUnit(name, "replace")`.
    Stop,
    /// `RestartUnit(name, "replace")`.
    Restart,
    /// `ReloadUnit(name, "replace")`.
    Reload,
}

impl JobKind {
    /// The lower-case verb, for messages.
    pub fn verb(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
            JobKind::Reload => "reload",
        }
    }
}

/// The service manager. Real implementation: [`systemd::DbusSystemd`] (zbus, system bus).
///
/// # Errors
/// Every method returns [`HostError::Systemd`] when systemd refuses the call and
/// [`HostError::Timeout`] when a bounded wait runs out.
///
/// # Cancellation
/// Dropping a future abandons the *wait*; a job already queued in systemd keeps running.
pub trait Systemd: Send + Sync {
    /// Load (never start) `unit` and read its state. A unit without a unit file reports
    /// `load_state == "not-found"`; that is not an error.
    fn unit_state(&self, unit: &str) -> impl Future<Output = Result<UnitState, HostError>> + Send;
    /// [`Systemd::unit_state`] of every unit in `units`, in that order, asked together (one
    /// listing for all, not one load per unit: a pass observes every managed unit).
    fn unit_states(
        &self,
        units: &[String],
    ) -> impl Future<Output = Result<Vec<UnitState>, HostError>> + Send;
    /// `Reload()` (daemon-reload) and wait for `Reloading(false)`.
    fn daemon_reload(&self) -> impl Future<Output = Result<(), HostError>> + Send;
    /// Queue a job for `unit` and wait for its `JobRemoved` signal. `Ok` only when the result is
    /// `done`; any other result (`failed`, `timeout`, `dependency`, `canceled`, `skipped`) is an
    /// error naming it.
    fn run_job(
        &self,
        kind: JobKind,
        unit: &str,
    ) -> impl Future<Output = Result<(), HostError>> + Send;
    /// Enable units (`EnableUnitFiles(runtime=false, force=true)`), then daemon-reload.
    fn enable(&self, units: &[String]) -> impl Future<Output = Result<(), HostError>> + Send;
    /// Disable units (`DisableUnitFiles(runtime=false)`), then daemon-reload.
    fn disable(&self, units: &[String]) -> impl Future<Output = Result<(), HostError>> + Send;
    /// Enable units for the next boot only: their `[Install]` symlinks, no daemon-reload. For
    /// a unit already loaded and started (a proxy-mode release): the boot reads the symlinks
    /// from disk, `systemctl is-enabled` too; only the running manager's copy of the
    /// `WantedBy=` dependency and its cached `UnitFileState` wait for the next reload.
    fn enable_for_boot(
        &self,
        units: &[String],
    ) -> impl Future<Output = Result<(), HostError>> + Send {
        self.enable(units)
    }
    /// Undo [`Systemd::enable_for_boot`]: the symlinks go, no daemon-reload.
    fn disable_for_boot(
        &self,
        units: &[String],
    ) -> impl Future<Output = Result<(), HostError>> + Send {
        self.disable(units)
    }
    /// `ResetFailedUnit`: forget a unit's failed state and start-limit count, so it can be
    /// started again. A unit that is not failed (or not loaded) is fine.
    fn reset_failed(&self, unit: &str) -> impl Future<Output = ()> + Send;
    /// Start the transient unit `unit` with `properties`, defining the units of `aux` (not
    /// started: e.g. the service a socket activates) in the same call, and wait for its start
    /// job like [`Systemd::run_job`]. No unit file, no daemon-reload; systemd drops the units
    /// once they are inactive.
    fn start_transient(
        &self,
        unit: &str,
        properties: &[(String, systemd::Value<'static>)],
        aux: &[(String, systemd::Properties)],
    ) -> impl Future<Output = Result<(), HostError>> + Send;
    /// The loaded units whose names match the glob `pattern`.
    fn units_matching(
        &self,
        pattern: &str,
    ) -> impl Future<Output = Result<Vec<String>, HostError>> + Send;
    /// The names of the unit files in systemd's runtime directory (`/run/systemd/system`) that
    /// start with `prefix`: what an older strackt wrote there for its validation units. None
    /// when the directory cannot be read (then there is nothing to clean up).
    fn runtime_unit_files(&self, prefix: &str) -> Vec<String>;
    /// Remove the runtime unit file `unit` (a name [`Systemd::runtime_unit_files`] gave);
    /// nothing there is fine. A link is removed itself, never followed. systemd forgets the
    /// unit at the next daemon-reload.
    ///
    /// # Errors
    /// I/O failures, with the path.
    fn remove_runtime_unit_file(&self, unit: &str) -> Result<(), HostError>;
}

/// The host subsystems a pass works through: one trait per subsystem, bundled so the apply
/// layer, the driver, deploys and backups are written once for the real machine and for the
/// in-memory fake. `Send + 'static`: the driver and the deployer share it (an `Arc`) with
/// the blocking threads apt runs on and with spawned operations.
pub trait Machine: Send + Sync + 'static {
    /// The service manager.
    type Systemd: Systemd;
    /// The filesystem.
    type Files: Files;
    /// Health probes.
    type Health: health::Health;
    /// Kernel parameters.
    type Sysctl: sysctl::Sysctl;
    /// The packet filter.
    type Firewall: firewall::Firewall;
    /// Users and groups.
    type Accounts: accounts::Accounts;
    /// Debian packages.
    type Packages: packages::Packages;
    /// Processes and dpkg's database: who uses what.
    type Usage: usage::Usage;
    /// PostgreSQL roles and databases.
    type Databases: databases::Databases;
    /// Running programs (cloned into each restic repository handle).
    type Processes: processes::Processes + Clone;
    /// Wall and monotonic time (cloned into each operation's record, which outlives a borrow).
    type Clock: clock::Clock + Clone + 'static;
    /// The service manager.
    fn systemd(&self) -> &Self::Systemd;
    /// The filesystem.
    fn files(&self) -> &Self::Files;
    /// Health probes.
    fn health(&self) -> &Self::Health;
    /// Kernel parameters.
    fn sysctl(&self) -> &Self::Sysctl;
    /// The packet filter.
    fn firewall(&self) -> &Self::Firewall;
    /// Users and groups.
    fn accounts(&self) -> &Self::Accounts;
    /// Debian packages.
    fn packages(&self) -> &Self::Packages;
    /// Processes and dpkg's database: who uses what.
    fn usage(&self) -> &Self::Usage;
    /// PostgreSQL roles and databases.
    fn databases(&self) -> &Self::Databases;
    /// Running programs.
    fn processes(&self) -> &Self::Processes;
    /// Wall and monotonic time.
    fn clock(&self) -> &Self::Clock;
}

/// The real machine: systemd over D-Bus, the filesystem, /proc/sys, nft, the shadow tools, apt.
#[derive(Debug)]
pub struct RealMachine {
    systemd: systemd::DbusSystemd,
    health: health::RealHealth,
    packages: packages::Apt,
    firewall: firewall::Nft,
    files: files::RealFiles,
}

impl RealMachine {
    /// Connect to systemd over D-Bus and bundle the real subsystems; `.deb` files are cached
    /// in `deb_cache`. The daemon's composition root (`daemon/run`) is its one caller.
    ///
    /// # Errors
    /// systemd cannot be reached (the system bus, its manager, the job subscription).
    pub async fn connect(deb_cache: &std::path::Path) -> Result<RealMachine, HostError> {
        let systemd = systemd::DbusSystemd::connect().await?;
        Ok(RealMachine::with(systemd, deb_cache))
    }

    /// Another machine on the same systemd connection, with caches of its own (the deployer's
    /// beside the driver's).
    pub fn another(&self) -> RealMachine {
        RealMachine::with(self.systemd.clone(), self.packages.cache())
    }

    fn with(systemd: systemd::DbusSystemd, deb_cache: &std::path::Path) -> RealMachine {
        RealMachine {
            systemd,
            health: health::RealHealth::default(),
            packages: packages::Apt::new(deb_cache),
            firewall: firewall::Nft::default(),
            files: files::RealFiles::default(),
        }
    }
}

impl Machine for RealMachine {
    type Systemd = systemd::DbusSystemd;
    type Files = files::RealFiles;
    type Health = health::RealHealth;
    type Sysctl = sysctl::ProcSysctl;
    type Firewall = firewall::Nft;
    type Accounts = accounts::ShadowTools;
    type Packages = packages::Apt;
    type Usage = usage::ProcUsage;
    type Databases = databases::Postgres;
    type Processes = processes::RealProcesses;
    type Clock = clock::SystemClock;
    fn systemd(&self) -> &Self::Systemd {
        &self.systemd
    }
    fn files(&self) -> &Self::Files {
        &self.files
    }
    fn health(&self) -> &Self::Health {
        &self.health
    }
    fn sysctl(&self) -> &Self::Sysctl {
        &sysctl::ProcSysctl
    }
    fn firewall(&self) -> &Self::Firewall {
        &self.firewall
    }
    fn accounts(&self) -> &Self::Accounts {
        &accounts::ShadowTools
    }
    fn packages(&self) -> &Self::Packages {
        &self.packages
    }
    fn usage(&self) -> &Self::Usage {
        &usage::ProcUsage
    }
    fn databases(&self) -> &Self::Databases {
        &databases::Postgres
    }
    fn processes(&self) -> &Self::Processes {
        &processes::RealProcesses
    }
    fn clock(&self) -> &Self::Clock {
        &clock::SystemClock
    }
}

/// What strackt observes about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileState {
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
}

/// The filesystem, as far as strackt touches it. Real implementation: [`files::RealFiles`].
pub trait Files: Send + Sync {
    /// Observe a regular file; `Ok(None)` when nothing (or something that is not a regular
    /// file, a link included) is there. Its directory is reached following no link another
    /// user could have planted (see [`tree`]); such a link is an error.
    fn stat(&self, path: &std::path::Path) -> Result<Option<FileState>, HostError>;
    /// Read a whole file; `Ok(None)` when it does not exist or is not a regular file. A link
    /// is followed only where only root could have put it (see [`tree`]).
    fn read(&self, path: &std::path::Path) -> Result<Option<Vec<u8>>, HostError>;
    /// Replace `path` atomically (a temp file under a random name, fchown/fchmod, fsync,
    /// rename, fsync dir), creating missing parent directories (mode 0755, root); nothing is
    /// written through a link another user could have planted (see [`tree`]).
    fn write(
        &self,
        path: &std::path::Path,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), HostError>;
    /// Remove a file; absent is fine.
    fn remove(&self, path: &std::path::Path) -> Result<(), HostError>;
    /// Move `from` to `to` (same filesystem or copy+remove), creating `to`'s parents.
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> Result<(), HostError>;
    /// Resolve a user name (or a decimal uid) to a uid.
    fn uid(&self, user: &str) -> Result<u32, HostError>;
    /// Resolve a group name (or a decimal gid) to a gid.
    fn gid(&self, group: &str) -> Result<u32, HostError>;
}
