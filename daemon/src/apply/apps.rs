//! The deployed apps as part of a host switch: what the definition's apps and strackt's own
//! deploys and backups need on the host (kept when hand-installed), restarting the units that
//! use a package the switch changed, and the apps' health checks after a package change.
//!
//! Deciding is `plan::users` and `plan::keep`; this module gathers their inputs through
//! `host/` and runs the restarts and checks.
//!
//! The unit an app runs in depends on its mode: `strackt-app-<app>.service` behind its socket,
//! or in proxy mode the instance of its live release, `strackt-app-<app>@<id>.service`, found
//! at the switch (a deploy may have moved it since the definition was read).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Machine;
use crate::definition::{Definition, HealthSpec, ServeMode};
use crate::deploy::instance;
use crate::deploy::layout::AppDirs;
use crate::deploy::units::LIVE_PREFIX;
use crate::generation::Generation;
use crate::host::health::Health;
use crate::host::usage::{ProcessInfo, Usage};
use crate::host::{HostError, JobKind, Systemd};
use crate::ops::{StepOutcome, StepRecord};
use crate::plan::keep::{kept, Need};
use crate::plan::users::{package_changes, restarts, PackageChange};
use crate::plan::{Action, HostSnapshot, Plan, PlannedStep};

/// How an app is served: which unit runs its live release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serving {
    /// Socket mode: the service its socket activates; the socket holds the listening address
    /// while the service restarts.
    Socket {
        /// `strackt-app-<app>.service`.
        service: String,
        /// `strackt-app-<app>.socket`.
        socket: String,
    },
    /// Proxy mode: nginx holds the listening address and forwards to the live release's
    /// instance, the release `current` names in the app's directory.
    Proxy {
        /// The app's directory (`path`).
        dir: String,
    },
}

/// One app a switch must keep serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCheck {
    /// The app's name.
    pub app: String,
    /// The unit its live release runs in.
    pub serving: Serving,
    /// Its health path on its live address (in proxy mode nginx's, which reaches the instance).
    pub probe: HealthSpec,
    /// How long the health path may take.
    pub within: Duration,
}

/// What a switch needs to know about the definition's apps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Apps {
    /// The apps, each checked after a package change (those deployed).
    pub checks: Vec<AppCheck>,
    /// What the apps and strackt's deploys and backups need on the host.
    pub needs: Vec<Need>,
}

impl Apps {
    /// The apps of `def` and what they need.
    pub fn of(def: &Definition) -> Apps {
        let mut apps = Apps::default();
        let tool = |name: &str, why: String| Need::Package {
            name: name.into(),
            why,
        };
        for (name, spec) in &def.apps {
            // A wildcard listen address is probed on loopback, as deploys do.
            let addr = spec
                .service
                .listen
                .replace("0.0.0.0:", "127.0.0.1:")
                .replace("[::]:", "[::1]:");
            let serving = match spec.service.mode {
                ServeMode::Socket => Serving::Socket {
                    service: format!("{LIVE_PREFIX}{name}.service"),
                    socket: format!("{LIVE_PREFIX}{name}.socket"),
                },
                ServeMode::Proxy => Serving::Proxy {
                    dir: spec.path.clone(),
                },
            };
            apps.checks.push(AppCheck {
                app: name.clone(),
                serving,
                probe: HealthSpec {
                    http: Some(format!("http://{addr}{}", spec.service.health)),
                    ..HealthSpec::default()
                },
                within: spec.service.health_within(),
            });
            for unit in &spec.requires {
                apps.needs.push(Need::Unit {
                    unit: unit.clone(),
                    by: format!("app {name}"),
                });
            }
            apps.needs.push(tool(
                "git",
                format!("strackt deploys app {name} from git with it"),
            ));
            if spec.database.is_some() {
                apps.needs.push(tool(
                    "postgresql-client",
                    format!("strackt dumps app {name}'s database with it before migrations"),
                ));
            }
            if spec.service.mode == ServeMode::Proxy {
                apps.needs.push(tool(
                    "nginx",
                    format!("app {name} is reached through it (mode: proxy)"),
                ));
            }
        }
        // The cluster holding `databases:` is never removed as hand-installed.
        if let Some(name) = def.databases.keys().next() {
            apps.needs.push(Need::Unit {
                unit: "postgresql.service".into(),
                by: format!("databases.{name}"),
            });
        }
        for (name, backup) in &def.backups {
            apps.needs.push(tool(
                "restic",
                format!("strackt backs up app {name} with it"),
            ));
            if backup.database {
                apps.needs.push(tool(
                    "postgresql-client",
                    format!("strackt dumps app {name}'s database with it for backups"),
                ));
            }
        }
        apps
    }
}

/// Where a unit file may live when systemd does not say (the fake) or names one path of a
/// merged `/usr` where dpkg knows the other.
fn unit_file_candidates(unit: &str, fragment: &str) -> Vec<String> {
    let mut paths: Vec<String> = ["/lib/systemd/system", "/usr/lib/systemd/system"]
        .iter()
        .map(|d| format!("{d}/{unit}"))
        .collect();
    if !fragment.is_empty() && !paths.iter().any(|p| p == fragment) {
        paths.push(fragment.to_string());
    }
    paths
}

/// Installed packages `apps` need (see [`kept`]), observed through dpkg.
///
/// # Errors
/// When systemd or dpkg cannot be asked.
pub async fn needed<M: Machine>(m: &M, apps: &Apps) -> Result<BTreeMap<String, String>, HostError> {
    if apps.needs.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut providers = BTreeMap::new();
    for need in &apps.needs {
        let Need::Unit { unit, .. } = need else {
            continue;
        };
        let fragment = m.systemd().unit_state(unit).await?.fragment_path;
        let owners = m.usage().owners(&unit_file_candidates(unit, &fragment))?;
        if let Some(pkg) = owners.into_values().next() {
            providers.insert(unit.clone(), pkg);
        }
    }
    Ok(kept(&apps.needs, &providers, &m.usage().dependencies()?))
}

/// File lists of the changed packages that are installed now (`dpkg -L`).
///
/// # Errors
/// When dpkg cannot be run.
pub fn changed_files<M: Machine>(
    m: &M,
    changes: &[PackageChange],
) -> Result<BTreeMap<String, BTreeSet<String>>, HostError> {
    let names: Vec<String> = changes.iter().map(|c| c.name.clone()).collect();
    m.usage().package_files(&names)
}

/// The managed services and deployed apps to restart after packages changed, each with why:
/// those whose processes use a changed package (`files`: each package's files before and
/// after), an app found crashed (the change may be what broke it, or what repairs it), and a
/// unit whose processes cannot be read (restarting is the safe guess). Units in `started`
/// were (re)started by the plan after the packages changed and are left alone.
pub async fn to_restart<M: Machine>(
    m: &M,
    desired: &Generation,
    apps: &Apps,
    (changes, files): (&[PackageChange], &BTreeMap<String, BTreeSet<String>>),
    started: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut units: BTreeMap<String, Vec<ProcessInfo>> = BTreeMap::new();
    let mut unattributed: Vec<(String, String)> = Vec::new();
    // Each unit with, for an app's live unit, whether it was stopped by hand.
    let services = desired
        .manifest
        .units
        .keys()
        // strackt never restarts itself in the middle of a switch.
        .filter(|u| u.ends_with(".service") && u.as_str() != "strackt.service")
        .map(|u| (u.clone(), None));
    let app_units: Vec<(String, Option<bool>)> = deployed(m, apps)
        .await
        .into_iter()
        .map(|live| (live.unit, Some(live.stopped)))
        .collect();
    for (unit, app_stopped) in services.chain(app_units) {
        match m.usage().unit_processes(&unit) {
            Ok(p) if p.is_empty() && app_stopped == Some(false) => {
                unattributed.push((unit, "crashed; restarted on the changed packages".into()))
            }
            Ok(p) => {
                units.insert(unit, p);
            }
            Err(e) => unattributed.push((unit, format!("cannot tell what it uses: {e}"))),
        }
    }
    let mut todo = restarts(changes, files, &units);
    todo.extend(unattributed);
    todo.retain(|(unit, _)| !started.contains(unit));
    todo
}

/// Restart `todo` (see [`to_restart`]). A socket-mode app goes through its socket, which keeps
/// listening, so no request is refused; a proxy-mode release is restarted in place, nginx
/// answering 502 until it listens again (its health check through nginx waits for that).
/// Returns the records and the first failure.
pub async fn restart_users<M: Machine>(
    m: &M,
    apps: &Apps,
    todo: Vec<(String, String)>,
) -> (Vec<StepRecord>, Option<String>) {
    let mut records = Vec::new();
    let mut failure = None;
    for (unit, why) in todo {
        let socket = apps.checks.iter().find_map(|a| match &a.serving {
            Serving::Socket { service, socket } if *service == unit => Some(socket.as_str()),
            _ => None,
        });
        match restart(m, &unit, socket).await {
            Ok(()) => records.push(StepRecord::new(
                "restart",
                &unit,
                StepOutcome::Ok,
                why,
                false,
            )),
            Err(e) => {
                let msg = format!("restart {unit} ({why}): {e}");
                records.push(StepRecord::new(
                    "restart",
                    &unit,
                    StepOutcome::Failed,
                    &msg,
                    false,
                ));
                failure.get_or_insert(msg);
            }
        }
    }
    (records, failure)
}

/// What `strackt plan` can tell before anything changes: the restarts `plan`'s package
/// changes would cause, judged by the files the packages have now (a package not installed
/// yet is judged once it is, during the switch).
pub async fn predicted_restarts<M: Machine>(
    m: &M,
    desired: &Generation,
    apps: &Apps,
    plan: &Plan,
    observed: &HostSnapshot,
) -> Vec<PlannedStep> {
    let changes = package_changes(plan, observed, &desired.manifest);
    if changes.is_empty() {
        return Vec::new();
    }
    let files = changed_files(m, &changes).unwrap_or_default();
    to_restart(m, desired, apps, (&changes, &files), &plan.started_units())
        .await
        .into_iter()
        .map(|(unit, why)| PlannedStep {
            action: Action::Restart { unit },
            why,
            drift: false,
        })
        .collect()
}

/// Restart `unit`; an app's socket is started first (a crashing service can take its socket
/// down with it), and failed states are reset so a unit that hit its start limit starts again.
async fn restart<M: Machine>(m: &M, unit: &str, socket: Option<&str>) -> Result<(), HostError> {
    m.systemd().reset_failed(unit).await;
    if let Some(socket) = socket {
        m.systemd().reset_failed(socket).await;
        m.systemd().run_job(JobKind::Start, socket).await?;
    }
    m.systemd().run_job(JobKind::Restart, unit).await
}

/// A deployed app as the switch finds it.
struct Live<'a> {
    app: &'a AppCheck,
    /// The unit its live release runs in.
    unit: String,
    /// Stopped by hand: the unit (and its socket) cleanly inactive, which only an admin's
    /// `systemctl stop` does (a crash leaves them failed or restarting).
    stopped: bool,
}

/// The deployed apps (their live unit is installed), each with its live unit and whether it
/// is stopped. A proxy-mode app is deployed once `current` names a release; another release
/// running beside that one (a deploy under way) serves no one yet and is the deploy's.
async fn deployed<'a, M: Machine>(m: &M, apps: &'a Apps) -> Vec<Live<'a>> {
    let mut out = Vec::new();
    for app in &apps.checks {
        let (unit, socket) = match &app.serving {
            Serving::Socket { service, socket } => (service.clone(), Some(socket)),
            // `current` is read without following a link the app's user could plant
            // (`AppDirs`), and only the instance of the release it names is asked about: one
            // readlink, too small to leave the runtime's thread for.
            Serving::Proxy { dir } => match AppDirs::new(dir).live() {
                Some(id) => (instance(&app.app, id), None),
                None => continue,
            },
        };
        let Ok(state) = m.systemd().unit_state(&unit).await else {
            continue;
        };
        if state.load_state != "loaded" {
            continue;
        }
        let socket_inactive = match socket {
            Some(s) => m
                .systemd()
                .unit_state(s)
                .await
                .is_ok_and(|s| s.active_state == "inactive"),
            None => true,
        };
        let stopped = state.active_state == "inactive" && socket_inactive;
        out.push(Live { app, unit, stopped });
    }
    out
}

/// Every deployed app's health check; the failure names the app.
pub async fn check_apps<M: Machine>(m: &M, apps: &Apps) -> (Vec<StepRecord>, Option<String>) {
    let mut records = Vec::new();
    let mut failure = None;
    for Live { app, stopped, .. } in deployed(m, apps).await {
        let target = format!("app {}", app.app);
        if stopped {
            records.push(StepRecord::new(
                "health",
                &target,
                StepOutcome::Skipped,
                "stopped by hand",
                false,
            ));
            continue;
        }
        match m.health().check(&app.probe, app.within).await {
            Ok(()) => records.push(StepRecord::new(
                "health",
                &target,
                StepOutcome::Ok,
                "healthy",
                false,
            )),
            Err(e) => {
                let msg = format!(
                    "app {} failed its health check after the package change: {e}",
                    app.app
                );
                records.push(StepRecord::new(
                    "health",
                    &target,
                    StepOutcome::Failed,
                    &msg,
                    false,
                ));
                failure.get_or_insert(msg);
            }
        }
    }
    (records, failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: &str = r#"version: 1
users:
  shop: { system: true, home: /srv/shop }
apps:
  shop:
    repo: /srv/git/shop.git
    path: /srv/shop
    user: shop
    database: { engine: postgresql, name: shop, user: shop, password: { secret: shop_db } }
    requires: [postgresql.service]
    service: { exec: python3 app.py, listen: "0.0.0.0:8000", health: /health, within: 5s }
backups:
  shop:
    paths: []
    database: true
    to: { s3: { endpoint: "https://s3.example.com", bucket: backups, prefix: web1/shop, credentials: { secret: s3_creds } } }
    keep: { last: 10 }
databases:
  shop: {}
"#;

    #[test]
    fn apps_are_probed_on_their_live_address_and_need_their_units_and_tools() {
        let def = crate::definition::parse(DEF, std::path::Path::new("t.yaml")).expect("valid");
        let apps = Apps::of(def.definition());
        assert_eq!(
            apps.checks,
            [AppCheck {
                app: "shop".into(),
                serving: Serving::Socket {
                    service: "strackt-app-shop.service".into(),
                    socket: "strackt-app-shop.socket".into(),
                },
                probe: HealthSpec {
                    http: Some("http://127.0.0.1:8000/health".into()),
                    ..HealthSpec::default()
                },
                within: Duration::from_secs(5),
            }]
        );
        let needed: Vec<String> = apps
            .needs
            .iter()
            .map(|n| match n {
                Need::Unit { unit, by } => format!("{unit} by {by}"),
                Need::Package { name, .. } => name.clone(),
            })
            .collect();
        assert_eq!(
            needed,
            [
                "postgresql.service by app shop",
                "git",
                "postgresql-client",
                "postgresql.service by databases.shop",
                "restic",
                "postgresql-client"
            ]
        );
    }

    #[test]
    fn a_proxy_mode_app_is_found_through_its_directory_and_needs_nginx() {
        let src = "version: 1\nusers:\n  hello: { system: true, home: /srv/hello }\napps:\n  hello:\n    repo: /srv/git/hello.git\n    path: /srv/hello\n    user: hello\n    service: { exec: node server.js, listen: \"127.0.0.1:8000\", health: /health, mode: proxy, ports: [8001, 8002] }\n";
        let def = crate::definition::parse(src, std::path::Path::new("t.yaml")).expect("valid");
        let apps = Apps::of(def.definition());
        assert_eq!(
            apps.checks.first().map(|c| &c.serving),
            Some(&Serving::Proxy {
                dir: "/srv/hello".into()
            })
        );
        assert!(apps
            .needs
            .iter()
            .any(|n| matches!(n, Need::Package { name, .. } if name == "nginx")));
        assert_eq!(instance("hello", 7), "strackt-app-hello@7.service");
    }
}
