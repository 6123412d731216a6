//! definition/ — the server definition: YAML text → a typed, validated [`ValidatedDefinition`].
//!
//! Owns the published format (`definitions/schema.json` is generated from these types by
//! `strackt schema`), parsing with every problem reported at once as `FILE:LINE:COL: path:
//! message`, and the rules of what strackt may manage. It is the only place that names the YAML
//! crate (in `parse.rs`), and it never touches the filesystem or the host: callers hand it text.

mod accounts;
mod apps;
mod backups;
mod databases;
mod error;
mod firewall;
#[cfg(test)]
mod fuzz;
mod locate;
mod parse;
mod patterns;
mod prescan;
mod problem;
mod receiver;
#[cfg(test)]
mod refusals;
mod rules;
pub mod schedule;
#[cfg(test)]
mod schema_agreement;
mod services;
mod settings;
mod validate;
mod yaml_edit;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use apps::{
    AppService, AppSpec, AppSteps, DatabaseSpec, DbEngine, MigrateSpec, MigrateStep, ServeMode,
    SettingValue,
};
pub use backups::{BackupSpec, Destination, KeepPolicy, ReceiverDestination, S3Destination};
pub use databases::{is_pg_name, DatabaseEntry};
pub use error::{EditError, ScheduleError};
pub use parse::{parse, to_yaml};
pub use receiver::{
    is_client_name, parse_reserve, parse_size, ReceiverClient, ReceiverSpec, TlsFiles,
};
pub use yaml_edit::set_package_versions;

pub use accounts::{GroupSpec, SecretRef, UserSpec, SECRETS_DIR};
pub use firewall::{parse_cidr, AllowRule, FirewallSpec, Policy, PortSpec, Proto};
pub use problem::{problem_at, DefinitionError, Problem};
pub(crate) use problem::{render_path, Seg};
pub use services::{unit_name, HealthSpec, RestartPolicy, ServiceSpec};
pub use settings::{
    normalize_sysctl, DaemonSettings, SettingsSpec, SysctlValue, UpdatesApply, UpdatesPolicy,
    SYSCTL_FILE,
};
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
