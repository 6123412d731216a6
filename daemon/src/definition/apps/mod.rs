//! The `apps:` section: applications strackt deploys (code fetched from git into releases beside
//! the live one). Types and their rules; nothing here touches the host — what can only be known
//! on the server (secrets present, services up, database reachable) is the deploy preflight's.

mod check;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretRef;

pub(crate) use check::check_apps;

/// One application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// Any git URL the server can reach; a local path works.
    #[schemars(regex(pattern = super::patterns::ARGUMENT))]
    pub repo: String,
    /// Branch deployed when `strackt deploy` names none (default `main`).
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Absolute directory holding `releases/<id>/`, `shared/` and `current -> releases/<id>`.
    #[schemars(regex(pattern = super::patterns::ABSOLUTE_PATH))]
    pub path: String,
    /// User the steps and the service run as; required. Releases and shared paths are owned
    /// by this user. Give each app a user of its own (under `users:`); `root` must be written
    /// out and is discouraged: the app's code would run with every right on the server.
    #[serde(default)]
    #[schemars(regex(pattern = super::patterns::ACCOUNT_KEY))]
    pub user: Option<String>,
    /// Paths (relative to the release) kept across releases in `shared/` and linked into each,
    /// e.g. `storage/uploads` or `.env`.
    #[serde(default)]
    #[schemars(inner(regex(pattern = super::patterns::RELEASE_RELATIVE)))]
    pub shared: Vec<String>,
    /// The app's environment; secrets by reference (`{ secret: NAME }`), never inline.
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": super::patterns::ENV_NAME }))]
    pub settings: BTreeMap<String, SettingValue>,
    /// The app's database; its connection is given to steps and service as `PG*` variables
    /// and `DATABASE_URL`.
    #[serde(default)]
    pub database: Option<DatabaseSpec>,
    /// Units that must be active before a deploy starts, e.g. `postgresql.service`.
    #[serde(default)]
    #[schemars(inner(regex(pattern = super::patterns::UNIT)))]
    pub requires: Vec<String>,
    /// Shell commands run in the new release directory, in this order; each optional.
    #[serde(default)]
    pub steps: AppSteps,
    /// How the app serves: strackt writes its units (and, with `mode: proxy`, its nginx site).
    pub service: AppService,
    /// Successful releases kept on disk for `rollback-release` (default 5, at least 1).
    #[serde(default = "default_keep_releases")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep_releases: usize,
}

fn default_branch() -> String {
    "main".into()
}

fn default_keep_releases() -> usize {
    5
}

/// A setting: a plain value or a secret kept in `/etc/strackt/secrets/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SettingValue {
    /// Written as is.
    Plain(#[schemars(regex(pattern = super::patterns::ENV_VALUE))] String),
    /// Read from the secret file at deploy time.
    Secret(SecretRef),
}

/// A database the app uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSpec {
    /// Only `postgresql` for now.
    pub engine: DbEngine,
    /// Host name or address (default 127.0.0.1).
    #[serde(default = "default_db_host")]
    pub host: String,
    /// Port (default 5432).
    #[serde(default = "default_db_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Database name.
    pub name: String,
    /// Role to connect as.
    pub user: String,
    /// The role's password.
    pub password: SecretRef,
}

fn default_db_host() -> String {
    "127.0.0.1".into()
}

fn default_db_port() -> u16 {
    5432
}

/// Database engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DbEngine {
    /// PostgreSQL (clients `psql`, `pg_dump`, `pg_restore` from postgresql-client).
    Postgresql,
}

/// The deploy steps, run in the order of the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppSteps {
    /// Install dependencies.
    #[serde(default)]
    pub install: Option<String>,
    /// Build front-end assets.
    #[serde(default)]
    pub build: Option<String>,
    /// Check the release can run and reach its database (strackt then boots it on a spare
    /// port and checks its health path).
    #[serde(default)]
    pub validate: Option<String>,
    /// Database migrations: a command, or `{ run: COMMAND, restore_on_failure: false }`. With
    /// `database:`, a dump is taken first and kept with the release; if anything fails after
    /// the migration started, the database is put back from it before the deploy reports
    /// failure (unless `restore_on_failure: false`).
    #[serde(default)]
    pub migrate: Option<MigrateStep>,
    /// Rebuild caches.
    #[serde(default)]
    pub cache: Option<String>,
    /// Time limit of each step (default `15m`).
    #[serde(default)]
    #[schemars(regex(pattern = super::patterns::DURATION))]
    pub timeout: Option<String>,
}

/// The `migrate` step as written: a plain command, or a mapping with its options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum MigrateStep {
    /// The command; the database is put back when the deploy fails after it started.
    Command(String),
    /// The command and what happens to the database when the deploy fails.
    Spec(MigrateSpec),
}

/// `migrate: { run: …, restore_on_failure: … }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateSpec {
    /// The command, as for the plain form.
    pub run: String,
    /// Whether a deploy that fails after the migration started puts the database back from
    /// the pre-migrate dump (default true; needs `database:`). `false` for databases too large
    /// to restore within a deploy: a failed deploy then leaves the database as the migration
    /// left it, with the previous release serving on it.
    #[serde(default)]
    pub restore_on_failure: Option<bool>,
}

impl MigrateStep {
    /// The command line.
    pub fn command(&self) -> &str {
        match self {
            MigrateStep::Command(c) => c,
            MigrateStep::Spec(s) => &s.run,
        }
    }

    /// Whether a failure after the migration started puts the database back.
    pub fn restore_on_failure(&self) -> bool {
        match self {
            MigrateStep::Command(_) => true,
            MigrateStep::Spec(s) => s.restore_on_failure.unwrap_or(true),
        }
    }
}

// By hand rather than `untagged`: serde's untagged enums answer any mistake in the mapping
// with "did not match any variant"; this way the mapping's own errors (an unknown field, a
// wrong type) reach the user at their field.
impl<'de> Deserialize<'de> for MigrateStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = MigrateStep;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a command, or a mapping `{ run: COMMAND, restore_on_failure: BOOL }`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MigrateStep, E> {
                Ok(MigrateStep::Command(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<MigrateStep, A::Error> {
                MigrateSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(MigrateStep::Spec)
            }
        }
        d.deserialize_any(Either)
    }
}

impl AppSteps {
    /// The user's steps in order, with their names.
    pub fn ordered(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("install", self.install.as_deref()),
            ("build", self.build.as_deref()),
            ("validate", self.validate.as_deref()),
            ("migrate", self.migrate.as_ref().map(MigrateStep::command)),
            ("cache", self.cache.as_deref()),
        ]
    }

    /// The time limit of one step.
    pub fn time_limit(&self) -> std::time::Duration {
        self.timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(std::time::Duration::from_secs(15 * 60))
    }
}

/// The app's long-running process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppService {
    /// Command line, run in the live release. In socket mode the app accepts connections on the
    /// socket systemd passes it (`LISTEN_FDS`, fd 3): that is what lets a restart lose no request;
    /// with `mode: proxy` it listens on `HOST:PORT` from its environment.
    #[schemars(regex(pattern = super::patterns::NOT_BLANK_LINE))]
    pub exec: String,
    /// `ADDRESS:PORT` the app is reached on: its socket, or (`mode: proxy`) nginx's.
    pub listen: String,
    /// HTTP path that answers 2xx when the app works (and reaches its database); checked on a
    /// spare port before the switch and on `listen` after it.
    #[serde(default = "default_health_path")]
    #[schemars(regex(pattern = super::patterns::HTTP_PATH))]
    pub health: String,
    /// How long the health path may take to answer 2xx (default `30s`).
    #[serde(default)]
    #[schemars(regex(pattern = super::patterns::DURATION))]
    pub within: Option<String>,
    /// How traffic reaches the app: `socket` (default) or `proxy`.
    #[serde(default)]
    pub mode: ServeMode,
    /// With `mode: proxy`: the two loopback ports releases take turns on (the new release
    /// starts on the one the live release does not use), e.g. `[8001, 8002]`.
    #[serde(default)]
    pub ports: Option<[u16; 2]>,
}

/// How traffic reaches an app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServeMode {
    /// strackt owns `listen` as a systemd socket and passes it to the app (`LISTEN_FDS`): a
    /// restart queues connections instead of refusing them.
    #[default]
    Socket,
    /// The app binds its own port (`HOST`, `PORT` in its environment, one of `ports`), and
    /// Debian's nginx listens on `listen` and forwards to the live release; a deploy starts
    /// the new release beside the old one and moves the traffic with a graceful nginx reload.
    Proxy,
}

fn default_health_path() -> String {
    "/".into()
}

impl AppService {
    /// The health deadline.
    pub fn health_within(&self) -> std::time::Duration {
        self.within
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(std::time::Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests;
