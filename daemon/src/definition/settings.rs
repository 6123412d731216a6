//! The `settings:` section (kernel parameters) and the `strackt:` section (the daemon's own
//! settings and its updates policy): types, defaults and value normalisation only; the
//! checks are in `validate/`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{patterns, schedule};

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
