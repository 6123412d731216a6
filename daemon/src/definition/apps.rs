//! The `apps:` section: applications strackt deploys (code fetched from git into releases beside
//! the live one). Types and their rules; nothing here touches the host — what can only be known
//! on the server (secrets present, services up, database reachable) is the deploy preflight's.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::parse::Problems;
use super::{SecretRef, Seg};

/// One application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// Any git URL the server can reach; a local path works.
    pub repo: String,
    /// Branch deployed when `strackt deploy` names none (default `main`).
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Absolute directory holding `releases/<id>/`, `shared/` and `current -> releases/<id>`.
    pub path: String,
    /// User the steps and the service run as (default root). Releases and shared paths are
    /// owned by this user.
    #[serde(default)]
    pub user: Option<String>,
    /// Paths (relative to the release) kept across releases in `shared/` and linked into each,
    /// e.g. `storage/uploads` or `.env`.
    #[serde(default)]
    pub shared: Vec<String>,
    /// The app's environment; secrets by reference (`{ secret: NAME }`), never inline.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingValue>,
    /// The app's database; its connection is given to steps and service as `PG*` variables
    /// and `DATABASE_URL`.
    #[serde(default)]
    pub database: Option<DatabaseSpec>,
    /// Units that must be active before a deploy starts, e.g. `postgresql.service`.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Shell commands run in the new release directory, in this order; each optional.
    #[serde(default)]
    pub steps: AppSteps,
    /// How the app serves: strackt writes a socket-activated unit pair for it.
    pub service: AppService,
    /// Successful releases kept on disk for `rollback-release` (default 5, at least 1).
    #[serde(default = "default_keep_releases")]
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
    Plain(String),
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
    /// Database migrations (a dump is taken first and kept with the release).
    #[serde(default)]
    pub migrate: Option<String>,
    /// Rebuild caches.
    #[serde(default)]
    pub cache: Option<String>,
    /// Time limit of each step (default `15m`).
    #[serde(default)]
    pub timeout: Option<String>,
}

impl AppSteps {
    /// The user's steps in order, with their names.
    pub fn ordered(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("install", self.install.as_deref()),
            ("build", self.build.as_deref()),
            ("validate", self.validate.as_deref()),
            ("migrate", self.migrate.as_deref()),
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
    /// Command line, run in the live release (`current`). The app accepts connections on the
    /// socket systemd passes it (`LISTEN_FDS`, fd 3): that is what lets a restart lose no request.
    pub exec: String,
    /// `ADDRESS:PORT` the socket listens on.
    pub listen: String,
    /// HTTP path that answers 2xx when the app works (and reaches its database); checked on a
    /// spare port before the switch and on `listen` after it.
    #[serde(default = "default_health_path")]
    pub health: String,
    /// How long the health path may take to answer 2xx (default `30s`).
    #[serde(default)]
    pub within: Option<String>,
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

fn is_app_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Directories an app may not live in: strackt's own, and system trees.
const REFUSED_APP_ROOTS: &[&str] = &[
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/boot",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/lib/strackt",
];

pub(crate) fn check_apps(apps: &BTreeMap<String, AppSpec>, problems: &mut Problems<'_>) {
    let mut listens: BTreeMap<String, &str> = BTreeMap::new();
    for (name, app) in apps {
        let at = |fields: &[&str]| {
            let mut p = vec![Seg::Key("apps".into()), Seg::Key(name.clone())];
            p.extend(fields.iter().map(|f| Seg::Key((*f).to_string())));
            p
        };
        if !is_app_name(name) {
            problems.at_key(
                &at(&[]),
                format!("{name:?} is not an app name (lowercase letters, digits, - and _, starting with a letter)"),
            );
        }
        if app.repo.trim().is_empty() {
            problems.at(&at(&["repo"]), "a git URL or path is needed");
        }
        if app.branch.trim().is_empty() || app.branch.starts_with('-') {
            problems.at(&at(&["branch"]), "not a branch name");
        }
        let path = app.path.trim_end_matches('/');
        if !app.path.starts_with('/') || path.is_empty() || app.path.contains("/../") {
            problems.at(
                &at(&["path"]),
                "must be an absolute directory, e.g. /srv/shop",
            );
        } else if let Some(root) = REFUSED_APP_ROOTS
            .iter()
            .find(|r| path == **r || path.starts_with(&format!("{r}/")))
        {
            problems.at(
                &at(&["path"]),
                format!("apps may not live under {root}; use e.g. /srv/{name}"),
            );
        }
        for (i, shared) in app.shared.iter().enumerate() {
            let bad = shared.is_empty()
                || shared.starts_with('/')
                || shared.split('/').any(|part| part == ".." || part == ".")
                || matches!(shared.as_str(), ".git" | ".strackt");
            if bad {
                let mut p = at(&["shared"]);
                p.push(Seg::Index(i));
                problems.at(
                    &p,
                    format!("{shared:?} must be a path inside the release, e.g. storage/uploads"),
                );
            }
        }
        for key in app.settings.keys() {
            if !is_env_name(key) {
                problems.at_key(
                    &at(&["settings", key]),
                    format!("{key:?} is not an environment variable name (letters, digits and _)"),
                );
            }
        }
        if let Some(db) = &app.database {
            if db.host.trim().is_empty() {
                problems.at(
                    &at(&["database", "host"]),
                    "a host name or address is needed",
                );
            }
            for (field, value) in [("name", &db.name), ("user", &db.user)] {
                if value.trim().is_empty() {
                    problems.at(&at(&["database", field]), "must not be empty");
                }
            }
        }
        for (i, unit) in app.requires.iter().enumerate() {
            if !unit.contains('.') || unit.contains('/') {
                let mut p = at(&["requires"]);
                p.push(Seg::Index(i));
                problems.at(
                    &p,
                    format!("{unit:?} is not a unit name, e.g. postgresql.service"),
                );
            }
        }
        for (field, value) in [
            ("timeout", &app.steps.timeout),
            ("within", &app.service.within),
        ] {
            if let Some(text) = value {
                if humantime::parse_duration(text).is_err() {
                    let p = if field == "timeout" {
                        at(&["steps", field])
                    } else {
                        at(&["service", field])
                    };
                    problems.at(
                        &p,
                        format!("{text:?} is not a duration; write e.g. 30s, 10m"),
                    );
                }
            }
        }
        if app.service.exec.trim().is_empty() {
            problems.at(&at(&["service", "exec"]), "a command line is needed");
        }
        match app.service.listen.parse::<SocketAddr>() {
            Ok(addr) => {
                let key = addr.to_string();
                if let Some(other) = listens.insert(key.clone(), name) {
                    problems.at(
                        &at(&["service", "listen"]),
                        format!("{key} is already the address of app {other}"),
                    );
                }
            }
            Err(_) => problems.at(
                &at(&["service", "listen"]),
                format!(
                    "{:?} is not ADDRESS:PORT, e.g. 127.0.0.1:8000",
                    app.service.listen
                ),
            ),
        }
        if !app.service.health.starts_with('/') {
            problems.at(
                &at(&["service", "health"]),
                "an HTTP path starting with /, e.g. /health",
            );
        }
        if app.keep_releases == 0 {
            problems.at(
                &at(&["keep_releases"]),
                "at least 1 (the live release is always kept)",
            );
        }
    }
}
