//! The deployed apps as part of a host switch: what the definition's apps and strackt's own
//! deploys and backups need on the host (kept when hand-installed), restarting the units that
//! use a package the switch changed, and the apps' health checks after a package change.
//!
//! Deciding is `plan::users` and `plan::keep`; this module gathers their inputs through
//! `host/` and runs the restarts and checks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Machine;
use crate::definition::{Definition, HealthSpec};
use crate::deploy::units::LIVE_PREFIX;
use crate::generation::Generation;
use crate::host::health::Health;
use crate::host::usage::{ProcessInfo, Usage};
use crate::host::{HostError, JobKind, Systemd};
use crate::ops::{StepOutcome, StepRecord};
use crate::plan::keep::{kept, Need};
use crate::plan::users::{package_changes, restarts, PackageChange};
use crate::plan::{Action, HostSnapshot, Plan, PlannedStep};

/// One app a switch must keep serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCheck {
    /// The app's name.
    pub app: String,
    /// Its live service, `strackt-app-<app>.service`.
    pub service: String,
    /// The socket that holds its listening address.
    pub socket: String,
    /// Its health path on its live address.
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
            apps.checks.push(AppCheck {
                app: name.clone(),
                service: format!("{LIVE_PREFIX}{name}.service"),
                socket: format!("{LIVE_PREFIX}{name}.socket"),
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
            if spec.service.mode == crate::definition::ServeMode::Proxy {
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
    let services = desired
        .manifest
        .units
        .keys()
        // strackt never restarts itself in the middle of a switch.
        .filter(|u| u.ends_with(".service") && u.as_str() != "strackt.service")
        .map(|u| (u.clone(), false));
    let app_services: Vec<(String, bool)> = deployed(m, apps)
        .await
        .into_iter()
        .map(|(app, stopped)| (app.service.clone(), stopped))
        .collect();
    for (unit, stopped) in services.chain(app_services) {
        let is_app = apps.checks.iter().any(|a| a.service == unit);
        match m.usage().unit_processes(&unit) {
            Ok(p) if p.is_empty() && is_app && !stopped => {
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

/// Restart `todo` (see [`to_restart`]); apps go through their socket, which keeps listening,
/// so no request is refused. Returns the records and the first failure.
pub async fn restart_users<M: Machine>(
    m: &M,
    apps: &Apps,
    todo: Vec<(String, String)>,
) -> (Vec<StepRecord>, Option<String>) {
    let mut records = Vec::new();
    let mut failure = None;
    for (unit, why) in todo {
        let socket = apps
            .checks
            .iter()
            .find(|a| a.service == unit)
            .map(|a| a.socket.as_str());
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

/// A deployed app (its live service is installed) and whether it is stopped: service and
/// socket both cleanly inactive, which only an admin's `systemctl stop` does (a crash leaves
/// them failed or restarting).
async fn deployed<'a, M: Machine>(m: &M, apps: &'a Apps) -> Vec<(&'a AppCheck, bool)> {
    let mut out = Vec::new();
    for app in &apps.checks {
        let Ok(service) = m.systemd().unit_state(&app.service).await else {
            continue;
        };
        if service.load_state != "loaded" {
            continue;
        }
        let socket = m.systemd().unit_state(&app.socket).await;
        let stopped = service.active_state == "inactive"
            && socket.is_ok_and(|s| s.active_state == "inactive");
        out.push((app, stopped));
    }
    out
}

/// Every deployed app's health check; the failure names the app.
pub async fn check_apps<M: Machine>(m: &M, apps: &Apps) -> (Vec<StepRecord>, Option<String>) {
    let mut records = Vec::new();
    let mut failure = None;
    for (app, stopped) in deployed(m, apps).await {
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
                service: "strackt-app-shop.service".into(),
                socket: "strackt-app-shop.socket".into(),
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
}
