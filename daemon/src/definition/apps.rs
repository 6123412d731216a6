//! The `apps:` section: applications strackt deploys (code fetched from git into releases beside
//! the live one). Types and their rules; nothing here touches the host — what can only be known
//! on the server (secrets present, services up, database reachable) is the deploy preflight's.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::parse::Problems;
use super::rules;
use super::validate::{DAY, HOUR, SECOND};
use super::{SecretRef, Seg};

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

fn is_app_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub(crate) fn check_apps(apps: &BTreeMap<String, AppSpec>, problems: &mut Problems<'_>) {
    let mut listens: BTreeMap<String, &str> = BTreeMap::new();
    for (name, app) in apps {
        let at = |fields: &[&str]| {
            let mut p = vec![Seg::Key("apps".into()), Seg::Key(name.clone())];
            p.extend(fields.iter().map(|f| Seg::Key((*f).to_string())));
            p
        };
        let at_index = |fields: &[&str], i: usize| {
            let mut p = at(fields);
            p.push(Seg::Index(i));
            p
        };
        if !is_app_name(name) {
            problems.at_key(
                &at(&[]),
                format!("{name:?} is not an app name (lowercase letters, digits, - and _, starting with a letter)"),
            );
        }
        if let Err(e) = rules::argument(&app.repo) {
            problems.at(&at(&["repo"]), format!("not a git URL or path: {e}"));
        }
        if let Err(e) = rules::branch(&app.branch) {
            problems.at(&at(&["branch"]), e);
        }
        if let Err(e) = rules::own_tree(&app.path, "an app", &[]) {
            problems.at(&at(&["path"]), format!("{e} (e.g. /srv/{name})"));
        }
        match app.user.as_deref() {
            None => problems.at_key(
                &at(&[]),
                format!("needs `user:`: the app's steps and service run as this user, and running code from a git repository as root would give it every right on the server; add a user of its own (`users: {{ {name}: {{ system: true, home: /srv/{name} }} }}`) and write `user: {name}`, or `user: root` if it really must"),
            ),
            Some(user) if !is_account_name(user) => problems.at(
                &at(&["user"]),
                format!("{user:?} is not a user name"),
            ),
            Some("root") => problems.warn(
                &at(&["user"]),
                "runs as root: the app's code, its dependencies and every deploy step get every right on the server; prefer a user of its own",
            ),
            Some(_) => {}
        }
        for (i, shared) in app.shared.iter().enumerate() {
            if let Err(e) = rules::release_relative(shared) {
                problems.at(&at_index(&["shared"], i), e);
            } else if let Some(other) = app.shared[..i]
                .iter()
                .find(|o| rules::overlaps(&format!("/{o}"), &format!("/{shared}")))
            {
                problems.at(
                    &at_index(&["shared"], i),
                    format!("{shared:?} overlaps {other:?}: each shared path is one directory or file of its own"),
                );
            }
        }
        for (key, value) in &app.settings {
            let p = at(&["settings", key]);
            if let Err(e) = rules::env_name(key) {
                problems.at_key(&p, e);
            }
            match value {
                SettingValue::Plain(text) => {
                    if let Err(e) = rules::env_value(text) {
                        problems.at(&p, e);
                    }
                }
                SettingValue::Secret(secret) => {
                    if let Err(e) = rules::secret_name(&secret.secret) {
                        problems.at(&at(&["settings", key, "secret"]), e);
                    }
                }
            }
        }
        if let Some(db) = &app.database {
            let host_ok = if db.host.starts_with('/') {
                rules::absolute_path(&db.host)
            } else {
                rules::argument(&db.host).and_then(|()| rules::host(&db.host))
            };
            if let Err(e) = host_ok {
                problems.at(
                    &at(&["database", "host"]),
                    format!("a host name, an address or a socket directory: {e}"),
                );
            }
            if let Err(e) = rules::port(db.port) {
                problems.at(&at(&["database", "port"]), e);
            }
            for (field, value) in [("name", &db.name), ("user", &db.user)] {
                let ok = rules::argument(value).and_then(|()| {
                    if value.len() > 63 {
                        Err("longer than PostgreSQL's 63 bytes".to_string())
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = ok {
                    problems.at(&at(&["database", field]), e);
                }
            }
            if let Err(e) = rules::secret_name(&db.password.secret) {
                problems.at(&at(&["database", "password", "secret"]), e);
            }
        }
        for (i, unit) in app.requires.iter().enumerate() {
            if let Err(e) = rules::unit_name(unit, &[]) {
                problems.at(
                    &at_index(&["requires"], i),
                    format!("{e}; e.g. postgresql.service"),
                );
            }
        }
        for (step, command) in app.steps.ordered() {
            if let Some(Err(e)) = command.map(rules::no_nul) {
                problems.at(&at(&["steps", step]), e);
            }
        }
        if let Some(MigrateStep::Spec(migrate)) = &app.steps.migrate {
            if migrate.run.trim().is_empty() {
                problems.at(&at(&["steps", "migrate", "run"]), "a command is needed");
            }
            if migrate.restore_on_failure.is_some() && app.database.is_none() {
                problems.at(
                    &at(&["steps", "migrate", "restore_on_failure"]),
                    "needs `database:`: strackt dumps only a database it knows, so without one there is nothing to put back; add `database:` or leave restore_on_failure out",
                );
            }
        }
        for (fields, value, min, max) in [
            (&["steps", "timeout"], &app.steps.timeout, SECOND, DAY),
            (&["service", "within"], &app.service.within, SECOND, HOUR),
        ] {
            if let Some(Err(e)) = value.as_deref().map(|t| rules::duration(t, min, max)) {
                problems.at(&at(fields), e);
            }
        }
        if app.service.exec.trim().is_empty() {
            problems.at(&at(&["service", "exec"]), "a command line is needed");
        } else if let Err(e) = rules::one_line(&app.service.exec) {
            problems.at(&at(&["service", "exec"]), e);
        }
        match rules::socket_addr(&app.service.listen, "127.0.0.1:8000") {
            Ok(addr) => {
                let key = addr.to_string();
                if let Some(other) = listens.insert(key.clone(), name) {
                    problems.at(
                        &at(&["service", "listen"]),
                        format!("{key} is already the address of app {other}"),
                    );
                }
            }
            Err(e) => problems.at(&at(&["service", "listen"]), e),
        }
        check_proxy(name, app, &mut listens, problems, &at(&["service"]));
        let health = &app.service.health;
        if !health.starts_with('/')
            || health.contains(|c: char| c.is_whitespace() || c.is_control())
        {
            problems.at(
                &at(&["service", "health"]),
                "an HTTP path starting with /, without spaces, e.g. /health",
            );
        }
        if !(1..=1000).contains(&app.keep_releases) {
            problems.at(
                &at(&["keep_releases"]),
                "1 to 1000 (the live release is always kept)",
            );
        }
    }
}

/// `mode: proxy` needs its two ports (loopback, not another app's, not its own `listen`), and
/// leaves `PORT`/`HOST` to strackt; `ports` means nothing in socket mode.
fn check_proxy<'a>(
    name: &'a str,
    app: &AppSpec,
    listens: &mut BTreeMap<String, &'a str>,
    problems: &mut Problems<'_>,
    service: &[Seg],
) {
    let at = |field: &str| {
        let mut p = service.to_vec();
        p.push(Seg::Key(field.to_string()));
        p
    };
    match (app.service.mode, app.service.ports) {
        (ServeMode::Socket, None) => {}
        (ServeMode::Socket, Some(_)) => problems.at(
            &at("ports"),
            "only with `mode: proxy` (a socket-mode app is handed its socket; it binds no port)",
        ),
        (ServeMode::Proxy, None) => problems.at_key(
            &at("mode"),
            "`mode: proxy` needs `ports: [A, B]`: two free loopback ports the releases take turns on, e.g. `ports: [8001, 8002]`",
        ),
        (ServeMode::Proxy, Some([a, b])) => {
            let ports = at("ports");
            if a == b {
                problems.at(&ports, format!("two different ports are needed, not {a} twice: the new release starts beside the live one"));
            }
            for (i, port) in [a, b].into_iter().enumerate() {
                let mut p = ports.clone();
                p.push(Seg::Index(i));
                if let Err(e) = rules::port(port) {
                    problems.at(&p, e);
                    continue;
                }
                let key = format!("127.0.0.1:{port}");
                let clash = listens
                    .get(&key)
                    .or_else(|| listens.get(&format!("0.0.0.0:{port}")))
                    .copied();
                if let Some(other) = clash {
                    problems.at(&p, format!("{key} is already an address of app {other}"));
                } else {
                    listens.insert(key, name);
                }
            }
        }
    }
    if app.service.mode == ServeMode::Proxy {
        for key in ["PORT", "HOST"] {
            if app.settings.contains_key(key) {
                problems.at_key(
                    &[
                        Seg::Key("apps".into()),
                        Seg::Key(name.to_string()),
                        Seg::Key("settings".into()),
                        Seg::Key(key.into()),
                    ],
                    format!("with `mode: proxy` strackt sets {key} (the address the release listens on); remove it from settings"),
                );
            }
        }
    }
}

/// `useradd`'s default NAME_REGEX.
fn is_account_name(name: &str) -> bool {
    name.len() <= 32
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::parse;
    use super::*;

    /// An app whose `steps:` are `steps`, with or without a database.
    fn app(steps: &str, database: bool) -> String {
        let db = if database {
            "    database: { engine: postgresql, name: shop, user: shop, password: { secret: db } }\n"
        } else {
            ""
        };
        format!(
            "version: 1\napps:\n  shop:\n    repo: /srv/src/shop\n    path: /srv/shop\n    user: shop\n{db}    steps:\n{steps}    service: {{ exec: /usr/bin/app, listen: \"127.0.0.1:8000\" }}\n"
        )
    }

    fn migrate_of(src: &str) -> Result<Option<MigrateStep>, Vec<String>> {
        parse(src, Path::new("server.yaml"))
            .map(|d| d.definition().apps["shop"].steps.migrate.clone())
            .map_err(|e| e.to_string().lines().map(str::to_string).collect())
    }

    #[test]
    fn migrate_is_a_command_or_a_mapping_with_its_restore_choice() {
        let plain = migrate_of(&app("      migrate: sh scripts/migrate\n", true))
            .expect("valid")
            .expect("migrate");
        assert_eq!(
            (plain.command(), plain.restore_on_failure()),
            ("sh scripts/migrate", true)
        );
        let mapping = migrate_of(&app(
            "      migrate: { run: sh scripts/migrate, restore_on_failure: false }\n",
            true,
        ))
        .expect("valid")
        .expect("migrate");
        assert_eq!(
            (mapping.command(), mapping.restore_on_failure()),
            ("sh scripts/migrate", false)
        );
        let default = migrate_of(&app("      migrate: { run: sh m }\n", false))
            .expect("valid without database when restore_on_failure is not written")
            .expect("migrate");
        assert!(default.restore_on_failure());
    }

    #[test]
    fn mistakes_in_the_migrate_mapping_are_named_at_their_field() {
        let cases = [
            (
                "      migrate: { run: sh m, restore_on_falure: false }\n",
                true,
                "server.yaml:9:29: apps.shop.steps.migrate.restore_on_falure: unknown field `restore_on_falure`",
            ),
            (
                "      migrate: { run: sh m, restore_on_failure: sometimes }\n",
                true,
                "server.yaml:9:49: apps.shop.steps.migrate.restore_on_failure: invalid type: string \"sometimes\", expected a boolean",
            ),
            (
                "      migrate: { restore_on_failure: false }\n",
                true,
                "server.yaml:9:16: apps.shop.steps.migrate: missing field `run`",
            ),
            (
                "      migrate: [sh, m]\n",
                true,
                "server.yaml:9:16: apps.shop.steps.migrate: invalid type: sequence, expected a command, or a mapping `{ run: COMMAND, restore_on_failure: BOOL }`",
            ),
            (
                "      migrate: { run: \" \" }\n",
                true,
                "server.yaml:9:23: apps.shop.steps.migrate.run: a command is needed",
            ),
            (
                "      migrate: { run: sh m, restore_on_failure: true }\n",
                false,
                "server.yaml:8:49: apps.shop.steps.migrate.restore_on_failure: needs `database:`",
            ),
        ];
        for (steps, database, want) in cases {
            let got = migrate_of(&app(steps, database)).expect_err(steps);
            assert!(
                got.iter().any(|l| l.starts_with(want)),
                "{steps}: want {want:?}, got {got:?}"
            );
        }
    }

    /// The `hello` app in proxy mode with `service:` fields `service` and `settings:` `settings`.
    fn proxy_app(service: &str, settings: &str) -> String {
        format!(
            "version: 1\napps:\n  hello:\n    repo: /srv/src/hello\n    path: /srv/hello\n    user: hello\n    settings: {{ {settings} }}\n    service: {{ exec: node server.js, listen: \"127.0.0.1:8000\"{service} }}\n  other:\n    repo: /srv/src/other\n    path: /srv/other\n    user: other\n    service: {{ exec: /usr/bin/other, listen: \"127.0.0.1:9000\" }}\n"
        )
    }

    fn problems_of(src: &str) -> Vec<String> {
        match parse(src, Path::new("server.yaml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    #[test]
    fn proxy_mode_takes_two_ports_and_socket_mode_none() {
        let ok = parse(
            &proxy_app(", mode: proxy, ports: [8001, 8002]", ""),
            Path::new("server.yaml"),
        )
        .expect("valid");
        let service = &ok.definition().apps["hello"].service;
        assert_eq!(
            (service.mode, service.ports),
            (ServeMode::Proxy, Some([8001, 8002]))
        );
        let socket = parse(&proxy_app("", ""), Path::new("server.yaml")).expect("valid");
        assert_eq!(
            socket.definition().apps["hello"].service.mode,
            ServeMode::Socket,
            "socket mode is the default"
        );
        let cases = [
            (
                proxy_app(", mode: proxy", ""),
                "server.yaml:8:64: apps.hello.service.mode: `mode: proxy` needs `ports: [A, B]`",
            ),
            (
                proxy_app(", ports: [8001, 8002]", ""),
                "server.yaml:8:71: apps.hello.service.ports: only with `mode: proxy`",
            ),
            (
                proxy_app(", mode: proxy, ports: [8001, 8001]", ""),
                "server.yaml:8:84: apps.hello.service.ports: two different ports are needed, not 8001 twice",
            ),
            (
                proxy_app(", mode: proxy, ports: [8000, 8002]", ""),
                "server.yaml:8:85: apps.hello.service.ports[0]: 127.0.0.1:8000 is already an address of app hello",
            ),
            (
                proxy_app(", mode: proxy, ports: [9000, 8002]", ""),
                // Apps are checked in name order: the later one is told.
                "server.yaml:13:46: apps.other.service.listen: 127.0.0.1:9000 is already the address of app hello",
            ),
            (
                proxy_app(", mode: proxy, ports: [0, 8002]", ""),
                "server.yaml:8:85: apps.hello.service.ports[0]: port 0 is not a port",
            ),
            (
                proxy_app(", mode: proxy, ports: [8001, 8002]", "PORT: \"3000\""),
                "server.yaml:7:17: apps.hello.settings.PORT: with `mode: proxy` strackt sets PORT",
            ),
            (
                proxy_app(", mode: sideways, ports: [8001, 8002]", ""),
                "apps.hello.service.mode: unknown variant `sideways`, expected `socket` or `proxy`",
            ),
        ];
        for (src, want) in cases {
            let got = problems_of(&src);
            assert!(
                got.iter().any(|l| l.contains(want)),
                "want {want:?}, got {got:?}\n{src}"
            );
        }
    }
}
