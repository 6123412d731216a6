//! definition/ — the server definition: YAML text → a typed, validated [`ValidatedDefinition`].
//!
//! Owns the published format (`definitions/schema.json` is generated from these types by
//! `strackt schema`), parsing with every problem reported at once as `FILE:LINE:COL: path:
//! message`, and the rules of what strackt may manage. It is the only place that names the YAML
//! crate (in `parse.rs`), and it never touches the filesystem or the host: callers hand it text.

mod apps;
mod backups;
mod databases;
#[cfg(test)]
mod fuzz;
mod locate;
mod parse;
mod patterns;
mod prescan;
mod receiver;
#[cfg(test)]
mod refusals;
mod rules;
pub mod schedule;
#[cfg(test)]
mod schema_agreement;
mod validate;
mod yaml_edit;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use apps::{
    AppService, AppSpec, AppSteps, DatabaseSpec, DbEngine, MigrateSpec, MigrateStep, SettingValue,
};
pub use backups::{BackupSpec, Destination, KeepPolicy, ReceiverDestination, S3Destination};
pub use databases::{is_pg_name, DatabaseEntry};
pub use parse::{parse, to_yaml};
pub use receiver::{
    is_client_name, parse_reserve, parse_size, ReceiverClient, ReceiverSpec, TlsFiles,
};
pub use yaml_edit::set_package_versions;

/// A problem found outside the parser (e.g. a package apt does not know), located at the
/// field `path` (keys) of `source`.
pub fn problem_at(source: &str, path: &[&str], message: String) -> Problem {
    let segs: Vec<Seg> = path.iter().map(|k| Seg::Key((*k).to_string())).collect();
    let (line, column) = locate::Locator::new(source).value(&segs);
    Problem {
        line,
        column,
        path: render_path(&segs),
        message,
    }
}
pub use validate::parse_mode;

/// The whole server, as the user wrote it. Every section is optional except `version`; new
/// resource kinds are new sections (packages, users, firewall, … slot in beside `files`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "strackt server definition")]
pub struct Definition {
    /// Format version; must be `1`.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Settings of the strackt daemon itself.
    #[serde(default)]
    pub strackt: DaemonSettings,
    /// Managed files, keyed by absolute path.
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": patterns::MANAGED_FILE }))]
    pub files: BTreeMap<String, FileSpec>,
    /// Managed systemd services, keyed by name (`hello` → `hello.service`).
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": patterns::SERVICE_KEY }))]
    pub services: BTreeMap<String, ServiceSpec>,
    /// Settings that keep the server running (kernel parameters).
    #[serde(default)]
    pub settings: SettingsSpec,
    /// Incoming traffic rules, kept in strackt's own nftables table (`inet strackt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallSpec>,
    /// Local groups, keyed by name.
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": patterns::ACCOUNT_KEY }))]
    pub groups: BTreeMap<String, GroupSpec>,
    /// Local users, keyed by name.
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": patterns::ACCOUNT_KEY }))]
    pub users: BTreeMap<String, UserSpec>,
    /// Debian packages: name → an exact version or `latest` (resolved to an exact version
    /// when the generation is built, and kept there).
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": patterns::PACKAGE }, "additionalProperties" = { "type": "string", "pattern": patterns::PACKAGE_VERSION }))]
    pub packages: BTreeMap<String, String>,
    /// Applications deployed with `strackt deploy`, keyed by name.
    #[serde(default)]
    pub apps: BTreeMap<String, AppSpec>,
    /// PostgreSQL databases and their owning roles, keyed by database name: created when
    /// missing, never dropped or emptied (an entry removed is only no longer managed).
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": patterns::PG_NAME }))]
    pub databases: BTreeMap<String, DatabaseEntry>,
    /// Scheduled, encrypted backups of apps, keyed by app name.
    #[serde(default)]
    pub backups: BTreeMap<String, BackupSpec>,
    /// This server keeps other servers' backups (`strackt receiver`, its own unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<ReceiverSpec>,
}

/// A local group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Fixed gid (default: chosen by groupadd).
    #[serde(default)]
    #[schemars(extend("not" = { "enum": [65535, 4_294_967_295_u32] }))]
    pub gid: Option<u32>,
    /// A system group (gid from the system range).
    #[serde(default)]
    pub system: bool,
}

/// A local user. strackt creates it if missing and keeps these fields; a user strackt created
/// is removed when it leaves the definition (its home is kept unless `remove_home`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Fixed uid (default: chosen by useradd).
    #[serde(default)]
    #[schemars(extend("not" = { "enum": [65535, 4_294_967_295_u32] }))]
    pub uid: Option<u32>,
    /// Primary group (default: a group named like the user).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ACCOUNT_KEY))]
    pub group: Option<String>,
    /// Supplementary groups, exactly.
    #[serde(default)]
    #[schemars(inner(regex(pattern = patterns::ACCOUNT_KEY)))]
    pub groups: Vec<String>,
    /// Login shell (default `/bin/bash`, `/usr/sbin/nologin` for system users).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ABSOLUTE_PATH))]
    pub shell: Option<String>,
    /// Home directory (default `/home/NAME`).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ABSOLUTE_PATH))]
    pub home: Option<String>,
    /// The GECOS comment.
    #[serde(default)]
    #[schemars(regex(pattern = patterns::COMMENT))]
    pub comment: Option<String>,
    /// A system user (uid from the system range, no home created).
    #[serde(default)]
    pub system: bool,
    /// SSH public keys, written to `HOME/.ssh/authorized_keys` (a file strackt owns).
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// The password hash, by reference to `/etc/strackt/secrets/NAME` (never inline).
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// When the user leaves the definition, delete its home too (default: keep it).
    #[serde(default)]
    pub remove_home: bool,
}

impl UserSpec {
    /// The home directory.
    pub fn home_of(&self, name: &str) -> String {
        self.home.clone().unwrap_or_else(|| {
            if self.system {
                "/nonexistent".into()
            } else {
                format!("/home/{name}")
            }
        })
    }
    /// The primary group.
    pub fn group_of(&self, name: &str) -> String {
        self.group.clone().unwrap_or_else(|| name.to_string())
    }
    /// The login shell.
    pub fn shell_of(&self) -> String {
        self.shell.clone().unwrap_or_else(|| {
            if self.system {
                "/usr/sbin/nologin".into()
            } else {
                "/bin/bash".into()
            }
        })
    }
}

/// A value kept in `/etc/strackt/secrets/NAME` (root-only), never in the definition, a
/// generation or a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The secret's file name.
    #[schemars(regex(pattern = patterns::SECRET))]
    pub secret: String,
}

/// Where secrets live.
pub const SECRETS_DIR: &str = "/etc/strackt/secrets";

/// The `firewall:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallSpec {
    /// What happens to incoming traffic no rule allows: `drop` (default) or `accept`.
    /// Loopback, established connections and ICMP are always accepted.
    #[serde(default = "default_policy")]
    pub input: Policy,
    /// Allowed incoming traffic.
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    /// Apply even if the rules would keep a connected SSH client from connecting again
    /// (otherwise such a definition is refused).
    #[serde(default)]
    pub allow_lockout: bool,
}

impl FirewallSpec {
    /// Whether a new TCP connection from `remote` to local `port` would be let in.
    pub fn admits_tcp(&self, remote: std::net::IpAddr, port: u16) -> bool {
        if self.input == Policy::Accept || remote.is_loopback() {
            return true;
        }
        self.allow.iter().any(|rule| {
            rule.proto == Proto::Tcp
                && rule
                    .port
                    .range()
                    .is_some_and(|(lo, hi)| (lo..=hi).contains(&port))
                && (rule.from.is_empty()
                    || rule
                        .from
                        .iter()
                        .filter_map(|c| parse_cidr(c))
                        .any(|(net, len)| in_network(remote, net, len)))
        })
    }
}

fn in_network(addr: std::net::IpAddr, net: std::net::IpAddr, len: u8) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (addr, net) {
        (V4(a), V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (V6(a), V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn default_policy() -> Policy {
    Policy::Drop
}

/// A chain policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Accept.
    Accept,
    /// Drop.
    Drop,
}

/// One allow rule: a port or range, a protocol, optional sources (IPv4 and IPv6 CIDRs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// A port (`22`) or a range (`"8000-8100"`).
    pub port: PortSpec,
    /// `tcp` (default) or `udp`.
    #[serde(default = "default_proto")]
    pub proto: Proto,
    /// Source networks; empty means from anywhere.
    #[serde(default)]
    pub from: Vec<String>,
}

fn default_proto() -> Proto {
    Proto::Tcp
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// As nft writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A port number or a `"LOW-HIGH"` range as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    Number(#[schemars(range(min = 1, max = 65535))] i64),
    /// A range `"8000-8100"` (or one port as a string).
    Text(#[schemars(regex(pattern = patterns::PORT_RANGE))] String),
}

impl PortSpec {
    /// The inclusive range, if valid (1–65535, low ≤ high).
    pub fn range(&self) -> Option<(u16, u16)> {
        let ok = |n: i64| u16::try_from(n).ok().filter(|p| *p > 0);
        match self {
            PortSpec::Number(n) => ok(*n).map(|p| (p, p)),
            PortSpec::Text(t) => {
                let (a, b) = t.split_once('-').unwrap_or((t, t));
                let (a, b) = (ok(a.trim().parse().ok()?)?, ok(b.trim().parse().ok()?)?);
                (a <= b).then_some((a, b))
            }
        }
    }
}

/// Parse a CIDR (`10.0.0.0/8`, `2001:db8::/32`, or a bare address); `None` when invalid or
/// when bits are set beyond the prefix (a likely typo).
pub fn parse_cidr(text: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a.parse::<std::net::IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = text.parse::<std::net::IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let bits = match addr {
        std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        std::net::IpAddr::V6(v6) => u128::from(v6),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return None;
    }
    let host_bits = if len == 0 {
        u128::MAX
    } else {
        u128::MAX >> len
    };
    let host_bits = if addr.is_ipv4() {
        host_bits & (u128::MAX << 96)
    } else {
        host_bits
    };
    (bits & host_bits == 0).then_some((addr, len))
}

/// The `settings:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsSpec {
    /// Kernel parameters, e.g. `net.ipv4.ip_forward: 1`: written to
    /// `/etc/sysctl.d/90-strackt.conf` (applied at boot) and set live.
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": patterns::SYSCTL_KEY }))]
    pub sysctl: BTreeMap<String, SysctlValue>,
}

/// A sysctl value as written in YAML: a number or a string (`"4096 87380 6291456"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SysctlValue {
    /// A number.
    Number(i64),
    /// Any other value.
    Text(#[schemars(regex(pattern = patterns::SYSCTL_VALUE))] String),
}

impl SysctlValue {
    /// The value as the kernel reads and prints it (runs of whitespace become one space).
    pub fn normalized(&self) -> String {
        match self {
            SysctlValue::Number(n) => n.to_string(),
            SysctlValue::Text(t) => normalize_sysctl(t),
        }
    }
}

/// Runs of whitespace (the kernel prints tabs between fields) become one space.
pub fn normalize_sysctl(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The file strackt writes from `settings.sysctl`, so the values also hold after a reboot.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-strackt.conf";

/// How the daemon runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Period of the reconcile timer that repairs drift, e.g. `30s`, `5m`, `1h`.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = patterns::DURATION))]
    pub interval: String,
    /// Address of the read-only HTTP status endpoint (read when the daemon starts). Only a
    /// loopback address unless `listen_non_loopback` is set.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Allow `listen` on an address other machines can reach: the endpoint then shows the
    /// server's state, generations and operations to anyone who can connect (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub listen_non_loopback: bool,
    /// How many successful generations keep their directories on disk (the current and the
    /// previous one always do); every generation's record is kept for good.
    #[serde(default = "default_keep")]
    #[schemars(range(min = 2, max = 1000))]
    pub keep_generations: u32,
    /// How long a started or restarted unit must stay active before it counts as healthy.
    #[serde(default = "default_settle")]
    #[schemars(regex(pattern = patterns::DURATION))]
    pub settle: String,
    /// Package updates: when strackt looks for newer versions of the pinned packages, and
    /// which it applies on its own (default: check daily, apply none — report only).
    #[serde(default, skip_serializing_if = "UpdatesPolicy::is_default")]
    pub updates: UpdatesPolicy,
}

/// `strackt.updates`: when to look for package updates and which to apply unasked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatesPolicy {
    /// When to refresh apt's lists and look: a preset (`15min`, `30min`, `hourly`, `daily`
    /// (03:00), `weekly`) or a 5-field cron expression, at most every 15 minutes (default
    /// `daily`).
    #[serde(default = "default_check")]
    pub check: String,
    /// What a check applies on its own, through `strackt upgrade`'s path (the definition's
    /// version strings rewritten, a new generation, rolled back on failure): `none` (default:
    /// report only), `security` (versions from a `-security` suite) or `all`.
    #[serde(default)]
    pub apply: UpdatesApply,
    /// IANA timezone `check` is read in (default `UTC`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

/// Which updates a scheduled check applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpdatesApply {
    /// Report only.
    #[default]
    None,
    /// Versions published in a security suite.
    Security,
    /// Every newer candidate.
    All,
}

impl UpdatesApply {
    /// As written in the definition.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdatesApply::None => "none",
            UpdatesApply::Security => "security",
            UpdatesApply::All => "all",
        }
    }
}

fn default_check() -> String {
    "daily".into()
}
fn default_timezone() -> String {
    "UTC".into()
}

impl Default for UpdatesPolicy {
    fn default() -> Self {
        UpdatesPolicy {
            check: default_check(),
            apply: UpdatesApply::None,
            timezone: default_timezone(),
        }
    }
}

impl UpdatesPolicy {
    fn is_default(&self) -> bool {
        *self == UpdatesPolicy::default()
    }
    /// The check schedule (validation accepted it; `None` only for an unvalidated policy).
    pub fn schedule(&self) -> Option<schedule::Schedule> {
        schedule::Schedule::parse(&self.check, &self.timezone).ok()
    }
}

fn default_interval() -> String {
    "5m".into()
}
fn default_listen() -> String {
    "127.0.0.1:7477".into()
}
fn default_keep() -> u32 {
    10
}
fn default_settle() -> String {
    "1s".into()
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            interval: default_interval(),
            listen: default_listen(),
            listen_non_loopback: false,
            keep_generations: default_keep(),
            settle: default_settle(),
            updates: UpdatesPolicy::default(),
        }
    }
}

/// A file strackt writes and keeps as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// The exact content.
    #[schemars(regex(pattern = patterns::NO_NUL))]
    pub content: String,
    /// Permission bits as a quoted octal string, e.g. `"0640"` (default `"0644"`).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::MODE))]
    pub mode: Option<String>,
    /// Owner user name (default `root`).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ACCOUNT))]
    pub owner: Option<String>,
    /// Owner group name (default `root`).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ACCOUNT))]
    pub group: Option<String>,
}

/// A systemd service: either one strackt writes (`exec:`) or one a package provides (`unit:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// An existing unit (from a package) that strackt keeps enabled and running,
    /// e.g. `cron.service`. Excludes `exec` and the other unit-writing keys.
    #[serde(default)]
    #[schemars(regex(pattern = patterns::PROVIDED_UNIT))]
    pub unit: Option<String>,
    /// Command line of the service (absolute path first); strackt writes `<name>.service`.
    #[serde(default)]
    #[schemars(regex(pattern = patterns::COMMAND))]
    pub exec: Option<String>,
    /// `Description=` of the unit.
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ONE_LINE))]
    pub description: Option<String>,
    /// User to run as.
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ACCOUNT))]
    pub user: Option<String>,
    /// Group to run as.
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ACCOUNT))]
    pub group: Option<String>,
    /// Working directory (absolute).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::ABSOLUTE_PATH))]
    pub working_directory: Option<String>,
    /// Environment variables.
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": patterns::ENV_NAME }, "additionalProperties" = { "type": "string", "pattern": patterns::ENV_VALUE }))]
    pub environment: BTreeMap<String, String>,
    /// Command that reloads the service (`ExecReload=`); a change to only this reloads
    /// instead of restarting.
    #[serde(default)]
    #[schemars(regex(pattern = patterns::COMMAND))]
    pub exec_reload: Option<String>,
    /// systemd `Restart=` policy (default `on-failure`).
    #[serde(default)]
    pub restart: Option<RestartPolicy>,
    /// Units this one starts after (`After=` and `Wants=`).
    #[serde(default)]
    #[schemars(inner(regex(pattern = patterns::UNIT)))]
    pub after: Vec<String>,
    /// Enabled at boot (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Restart when the unit changes (default true); false leaves the running process alone.
    #[serde(default = "yes")]
    pub restart_on_change: bool,
    /// Managed files whose change restarts this service, e.g. its config file.
    #[serde(default)]
    #[schemars(inner(regex(pattern = patterns::MANAGED_FILE)))]
    pub restart_on: Vec<String>,
    /// How to tell the service works, checked after every switch that touched it.
    #[serde(default)]
    pub health: Option<HealthSpec>,
}

fn yes() -> bool {
    true
}

/// systemd's `Restart=` values strackt accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// `Restart=no`.
    No,
    /// `Restart=on-failure`.
    OnFailure,
    /// `Restart=always`.
    Always,
}

impl RestartPolicy {
    /// The value written into the unit.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }
}

/// One health probe; exactly one of `command`, `http`, `tcp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// A command that exits 0 when healthy (run as root, no shell).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::COMMAND))]
    pub command: Option<String>,
    /// A URL that answers 2xx when healthy.
    #[serde(default)]
    pub http: Option<String>,
    /// `HOST:PORT` that accepts a TCP connection when healthy.
    #[serde(default)]
    pub tcp: Option<String>,
    /// How long to keep trying before the check fails (default `10s`).
    #[serde(default)]
    #[schemars(regex(pattern = patterns::DURATION))]
    pub within: Option<String>,
}

/// A definition that passed every check. Only `parse` constructs one, so code downstream never
/// sees an unchecked definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedDefinition {
    definition: Definition,
    source: String,
    warnings: Vec<Problem>,
}

impl ValidatedDefinition {
    /// The typed definition.
    pub fn definition(&self) -> &Definition {
        &self.definition
    }
    /// The exact text it was parsed from (kept in each generation).
    pub fn source(&self) -> &str {
        &self.source
    }
    /// What is valid but discouraged (e.g. an app that runs as root), each located like a
    /// problem; `strackt check` prints them.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }
    /// The reconcile interval.
    pub fn interval(&self) -> std::time::Duration {
        duration_or(&self.definition.strackt.interval, 300)
    }
    /// How long started units must stay active.
    pub fn settle(&self) -> std::time::Duration {
        duration_or(&self.definition.strackt.settle, 1)
    }
}

/// Parse a duration that validation already accepted.
pub fn duration_or(text: &str, default_secs: u64) -> std::time::Duration {
    humantime::parse_duration(text).unwrap_or(std::time::Duration::from_secs(default_secs))
}

/// One problem in a definition, located in the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted field path, e.g. `services.hello.exec` (keys with `/` or `.` quoted).
    pub path: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

/// Every problem found in a definition file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefinitionError {
    /// The file the text came from.
    pub file: PathBuf,
    /// All problems, in source order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let path = if p.path.is_empty() {
                "(document)"
            } else {
                &p.path
            };
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file.display(),
                p.line,
                p.column,
                path,
                p.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionError {}

/// A segment of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Render a field path the way messages show it.
pub(crate) fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if k.contains(['.', '/', ' ', '"']) || k.is_empty() {
                    out.push_str(&format!("{k:?}"));
                } else {
                    out.push_str(k);
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The unit file name strackt writes for a managed service, or the unit a provided one names.
pub fn unit_name(name: &str, spec: &ServiceSpec) -> String {
    match &spec.unit {
        Some(unit) => unit.clone(),
        None => format!("{name}.service"),
    }
}

/// The path where a file's content lives inside a generation (`files/etc/motd`).
pub fn generation_relative(path: &str) -> PathBuf {
    Path::new("files").join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod published {
    use std::path::Path;

    /// The published schema is generated from these types; regenerate with
    /// `strackt schema > definitions/schema.json`.
    #[test]
    fn schema_json_is_up_to_date() {
        let want = serde_json::to_string_pretty(&schemars::schema_for!(super::Definition))
            .expect("schema")
            + "\n";
        let have = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../definitions/schema.json"),
        )
        .expect("definitions/schema.json");
        assert!(
            have == want,
            "definitions/schema.json is stale: run `strackt schema > definitions/schema.json`"
        );
    }

    /// Every example in definitions/ is a valid definition.
    #[test]
    fn every_example_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../definitions");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("definitions/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).expect("read");
                if let Err(e) = super::parse(&text, &path) {
                    panic!("{e}");
                }
                seen += 1;
            }
        }
        assert!(seen > 0, "no examples found in {}", dir.display());
    }
}

#[cfg(test)]
mod cidr {
    use super::parse_cidr;

    #[test]
    fn cidrs_with_bits_past_the_prefix_are_refused() {
        assert!(parse_cidr("10.0.0.0/8").is_some());
        assert!(parse_cidr("0.0.0.0/0").is_some());
        assert!(parse_cidr("192.0.2.7").is_some());
        assert!(parse_cidr("2001:db8::/32").is_some());
        assert!(parse_cidr("::/0").is_some());
        assert!(parse_cidr("10.0.0.1/8").is_none());
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("2001:db8::1/32").is_none());
        assert!(parse_cidr("nonsense").is_none());
    }

    #[test]
    fn admits_tcp_follows_policy_ports_and_sources() {
        use super::{parse, Definition};
        let def = |yaml: &str| -> Definition {
            parse(yaml, std::path::Path::new("t"))
                .expect("valid")
                .definition()
                .clone()
        };
        let fw = def("version: 1\nfirewall:\n  allow:\n    - { port: 22, from: [192.0.2.0/24, \"2001:db8::/32\"] }\n    - { port: \"8000-8100\" }\n    - { port: 53, proto: udp }\n").firewall.expect("firewall");
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        assert!(fw.admits_tcp(ip("192.0.2.9"), 22));
        assert!(!fw.admits_tcp(ip("198.51.100.1"), 22));
        assert!(fw.admits_tcp(ip("2001:db8::5"), 22));
        assert!(!fw.admits_tcp(ip("2001:db9::5"), 22));
        assert!(fw.admits_tcp(ip("198.51.100.1"), 8050));
        assert!(!fw.admits_tcp(ip("198.51.100.1"), 53), "udp rule");
        assert!(fw.admits_tcp(ip("127.0.0.1"), 22), "loopback always");
        let open = def("version: 1\nfirewall:\n  input: accept\n")
            .firewall
            .expect("firewall");
        assert!(open.admits_tcp(ip("198.51.100.1"), 22));
    }
}

#[cfg(test)]
mod round_trip {
    use std::path::Path;

    #[test]
    fn to_yaml_parses_back_to_the_same_definition() {
        let src = "version: 1\nfiles:\n  /etc/motd: { content: \"hi\\n\", mode: \"0640\" }\nservices:\n  a: { exec: /bin/sleep 1, environment: { A: \"x y\" }, health: { tcp: \"127.0.0.1:80\" } }\n  cron: { unit: cron.service }\npackages:\n  curl: \"7.88.1-10+deb12u8\"\nusers:\n  alice: { uid: 3001, groups: [adm], password: { secret: pw } }\ngroups:\n  deploy: { gid: 3000 }\nfirewall:\n  allow:\n    - { port: \"8000-8100\", from: [10.0.0.0/8] }\nsettings:\n  sysctl:\n    net.ipv4.ip_forward: 1\n";
        let def = super::parse(src, Path::new("a")).expect("valid");
        let text = super::to_yaml(def.definition()).expect("yaml");
        let again = super::parse(&text, Path::new("b")).expect("the written YAML is valid");
        assert_eq!(again.definition(), def.definition());
    }
}
