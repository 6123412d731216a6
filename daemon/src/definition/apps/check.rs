//! The rules of `apps:`: names, repositories, paths, accounts, steps, listeners and the proxy
//! mode, each reported at its field. Pure: what can only be known on the server is the deploy
//! preflight's.

use std::collections::BTreeMap;

use super::super::parse::Problems;
use super::super::rules;
use super::super::validate::{DAY, HOUR, SECOND};
use super::super::Seg;
use super::{AppSpec, DatabaseSpec, MigrateStep, ServeMode, SettingValue};

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
        check_settings(&app.settings, &at, problems);
        if let Some(db) = &app.database {
            check_database(db, &at, problems);
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

/// `settings:`: environment names, plain values and secret names.
fn check_settings(
    settings: &BTreeMap<String, SettingValue>,
    at: &impl Fn(&[&str]) -> Vec<Seg>,
    problems: &mut Problems<'_>,
) {
    for (key, value) in settings {
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
}

/// `database:`: where it is, its name and user as PostgreSQL takes them, its password secret.
fn check_database(
    db: &DatabaseSpec,
    at: &impl Fn(&[&str]) -> Vec<Seg>,
    problems: &mut Problems<'_>,
) {
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
