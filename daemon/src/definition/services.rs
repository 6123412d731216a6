//! The `services:` section: units strackt writes (`exec:`) or keeps running (`unit:`), their
//! restart policy and health probes, as written. Rendering units is `generation/`'s and the
//! rules are in `validate/services.rs`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::patterns;

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

/// The unit file name strackt writes for a managed service, or the unit a provided one names.
pub fn unit_name(name: &str, spec: &ServiceSpec) -> String {
    match &spec.unit {
        Some(unit) => unit.clone(),
        None => format!("{name}.service"),
    }
}
