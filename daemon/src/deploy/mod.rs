//! deploy/ — apps: preflight, a release built beside the live one, validated, migrated, and
//! switched only when every step passed; release rollback; pruning.
//!
//! Owns the app directories (`releases/`, `shared/`, `current`), the apps' root-private files
//! under strackt's state (`apps/<app>/`: environment files, pre-migrate dumps), the app units
//! (`strackt-app-<app>.{socket,service}`, written at switch time; `mode: proxy` apps have a
//! template unit and an nginx site instead, see `proxy.rs`) and the `releases` table. It
//! runs beside the reconcile loop, not inside it: a deploy takes minutes and must not hold up
//! drift repair, and the reconcile pipeline never touches what this module owns. One deploy
//! or release rollback per app at a time. It never changes the live release before the switch,
//! never deletes the live release or the last good one, and a deploy that fails after its
//! migration started puts the database back from the pre-migrate dump (`failed.rs`).

pub mod database;
mod failed;
pub mod layout;
mod outcome;
pub mod preflight;
mod proxy;
pub mod runner;
mod transient;
pub mod units;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::definition::{parse, AppSpec, HealthSpec, ServeMode, ValidatedDefinition, SECRETS_DIR};
use crate::host::files::atomic_write;
use crate::host::health::{Health, RealHealth};
use crate::host::processes::{Processes, RealProcesses};
use crate::host::systemd::{DbusSystemd, UNIT_DIR};
use crate::host::tree::{Dir, Owner};
use crate::host::{JobKind, Systemd};
use crate::metrics::Metrics;
use crate::ops::{live, now, Operation, Progress, Step, StepResult};
use crate::state::{ReleaseRow, StateHandle};
use layout::{AppData, AppDirs};
use preflight::Prepared;
use runner::{Ran, RunAs};

/// Where an older strackt wrote its validation units as files (they are transient units now,
/// with no file): what it left there is removed at startup.
const RUNTIME_UNIT_DIR: &str = "/run/systemd/system";
/// Time limit of strackt's own commands (git clone, pg_dump, pg_restore).
const OWN_LIMIT: Duration = Duration::from_secs(30 * 60);

/// The last lines `unit` logged, for a failed step's output.
async fn journal_tail(p: &impl Processes, unit: &str) -> String {
    let cmd = argv(&[
        "journalctl",
        "--no-pager",
        "-o",
        "cat",
        "-n",
        "30",
        "-u",
        unit,
    ]);
    runner::run(
        p,
        &cmd,
        Path::new("/"),
        &BTreeMap::new(),
        &RunAs::root(),
        Duration::from_secs(10),
    )
    .await
    .stdout
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

/// What `strackt releases APP` shows.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ReleasesView {
    /// The release `current` points at.
    pub live: Option<u64>,
    /// Newest first.
    pub releases: Vec<ReleaseRow>,
}

/// Runs deploys and release rollbacks.
#[derive(Debug)]
pub struct Deployer {
    state: StateHandle,
    systemd: DbusSystemd,
    health: RealHealth,
    definition: PathBuf,
    secrets: PathBuf,
    /// strackt's state root: the apps' private files are under `apps/`.
    root: PathBuf,
    /// Apps with a deploy or rollback running: its kind and operation (0 until recorded).
    busy: Mutex<HashMap<String, (&'static str, i64)>>,
    /// Told every finished operation, with its app.
    metrics: Arc<Metrics>,
    /// What the running steps print, for the CLI following them.
    outputs: Arc<live::Outputs>,
    /// The programs deploys run (git, the app's steps, pg_dump, psql).
    processes: RealProcesses,
}

/// An app claimed for one operation; released on drop.
pub(crate) struct Claim {
    deployer: Arc<Deployer>,
    app: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.deployer
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.app);
    }
}

/// A command's result as a step outcome.
fn ran_step(ran: Ran) -> Result<((), String), (String, String)> {
    if ran.ok {
        Ok(((), ran.tail))
    } else {
        Err((ran.failure.unwrap_or_default(), ran.tail))
    }
}

/// The URL of `path` on `listen` (a wildcard address is probed on loopback).
fn health_url(listen: &str, path: &str) -> String {
    let addr = listen
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:");
    format!("http://{addr}{path}")
}

/// A free loopback port for a validation boot.
fn spare_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Who owns what strackt creates for an app.
fn owner_of(user: &RunAs) -> Owner {
    Owner {
        uid: user.uid,
        gid: user.gid,
    }
}

/// A failed file operation as a step's reason.
fn fs_err(e: std::io::Error) -> (String, String) {
    (e.to_string(), String::new())
}

/// Have release `id`'s environment file in strackt's state: there already, or taken over from
/// where a release made before kept it (`Some(note)` then).
///
/// # Errors
/// The old file cannot be taken over safely.
async fn take_over_env(dirs: &AppDirs, data: &AppData, id: u64) -> Result<Option<String>, String> {
    let to = data.env_file(id);
    if to.is_file() {
        return Ok(None);
    }
    let (dirs, data) = (dirs.clone(), data.clone());
    tokio::task::spawn_blocking(move || {
        layout::private_dir(&data.release(id))?;
        let from = dirs.legacy_file(id, "env");
        match layout::adopt_legacy(&dirs, id, "env", &to) {
            Ok(_) => Ok(Some(format!(
                "release {id}: environment file taken over from {} into {}\n",
                from.display(),
                to.display()
            ))),
            Err(e) => Err(format!(
                "release {id} was made before strackt kept environment files in {}, and its old one cannot be taken over safely: {e}; deploy the app instead",
                data.dir().display()
            )),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Link the shared paths into `release` (relative to its directory: the app's user can change
/// everything in both trees, so no link in them is followed): a path not yet in `shared/` is
/// seeded from the first release that has it (or created as an empty directory).
fn link_shared(
    dirs: &AppDirs,
    shared: &Dir,
    release: &Dir,
    app: &AppSpec,
    owner: Owner,
) -> Result<((), String), (String, String)> {
    let mut log = String::new();
    for rel in &app.shared {
        let kept = dirs.shared().join(rel);
        let (Some(parent), Some(name)) = (Path::new(rel).parent(), Path::new(rel).file_name())
        else {
            return Err((format!("shared path {rel:?} names no file"), String::new()));
        };
        let kept_parent = shared.create_dirs(parent, 0o755, owner).map_err(fs_err)?;
        if kept_parent.kind(name).map_err(fs_err)?.is_none() {
            let seed = match release.open_dir(parent) {
                Ok(d) if d.kind(name).map_err(fs_err)?.is_some() => Some(d),
                Ok(_) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(fs_err(e)),
            };
            if let Some(d) = seed {
                d.rename(name, &kept_parent, name).map_err(fs_err)?;
                log.push_str(&format!("{rel}: seeded shared/ from this release\n"));
            } else {
                kept_parent.create_dir(name, 0o755, owner).map_err(fs_err)?;
                log.push_str(&format!("{rel}: created empty in shared/\n"));
            }
        }
        let inside = release.create_dirs(parent, 0o755, owner).map_err(fs_err)?;
        inside.remove(name).map_err(fs_err)?;
        inside.symlink(name, &kept, owner).map_err(fs_err)?;
        log.push_str(&format!("{rel} -> {}\n", kept.display()));
    }
    Ok(((), log))
}

/// The units of a validation boot, stopped when it ends however it ends: awaited at its end,
/// or in the background when its work is dropped (a step running beside it failed). Being
/// transient, stopped units are gone: systemd collects them.
struct StopOnDrop {
    systemd: DbusSystemd,
    units: Vec<String>,
}

impl StopOnDrop {
    async fn stop(mut self) {
        let units = std::mem::take(&mut self.units);
        stop_all(&self.systemd, &units).await;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if self.units.is_empty() {
            return;
        }
        let (systemd, units) = (self.systemd.clone(), std::mem::take(&mut self.units));
        tokio::spawn(async move { stop_all(&systemd, &units).await });
    }
}

/// Stop `units` at the same time; a unit already gone is fine.
async fn stop_all(systemd: &DbusSystemd, units: &[String]) {
    futures_util::future::join_all(
        units
            .iter()
            .map(|u| async move { systemd.run_job(JobKind::Stop, u).await }),
    )
    .await;
}

/// Dump the app's database into `dump` (strackt's own root-only file) before the migration;
/// a restore's dump of the database as it is now is kept instead when there is one.
async fn take_dump(p: &impl Processes, dump: &Path, prepared: &Prepared) -> StepResult<()> {
    if let Some(current) = &prepared.current_dump {
        if std::fs::rename(current, dump).is_ok() {
            return Ok((
                (),
                format!("kept {} (the database as restored)\n", current.display()),
            ));
        }
    }
    // pg_dump writes to a file strackt opened in its own directory: it opens no path itself,
    // and runs from `/`, not from the app's tree.
    let file = layout::create_private(dump).map_err(|e| (e, String::new()))?;
    // gzip level 1: the same size as pg_dump's default level 6 on table data, in a third of
    // the time (300 MB of rows: 5.4 s against 14.6 s).
    let cmd = argv(&[
        "pg_dump",
        "--format=custom",
        "--compress=1",
        "--no-password",
    ]);
    let ran = runner::run_into(
        p,
        &cmd,
        Path::new("/"),
        &prepared.db_env,
        &RunAs::root(),
        OWN_LIMIT,
        Some(file),
        None,
    )
    .await;
    if !ran.ok {
        let _ = std::fs::remove_file(dump);
    }
    ran_step(ran)
}

impl Deployer {
    /// The `health` step after a switch: the app's health path answers through `listen`,
    /// whichever mode serves it.
    async fn live_health(&self, p: &mut Progress, spec: &AppSpec) -> Result<(), String> {
        let url = health_url(&spec.service.listen, &spec.service.health);
        let probe = HealthSpec {
            http: Some(url.clone()),
            ..HealthSpec::default()
        };
        p.step("health", &url, async {
            self.health
                .check(&probe, spec.service.health_within())
                .await
                .map(|()| ((), String::new()))
                .map_err(|e| (e, String::new()))
        })
        .await
    }

    /// A deployer for the definition at `definition`, keeping the apps' private files under
    /// the state root `root`.
    pub fn new(
        state: StateHandle,
        systemd: DbusSystemd,
        definition: PathBuf,
        root: PathBuf,
        metrics: Arc<Metrics>,
    ) -> Arc<Deployer> {
        let secrets = PathBuf::from(SECRETS_DIR);
        // The operations log's sources: live output is masked as the stored output is.
        let redact = crate::state::Redactor::from_sources(
            &secrets,
            &[crate::backup::vault::Vault::new(&root).key_path()],
        );
        Arc::new(Deployer {
            state,
            systemd,
            health: RealHealth::default(),
            definition,
            secrets,
            root,
            busy: Mutex::new(HashMap::new()),
            metrics,
            outputs: live::Outputs::new(redact),
            processes: RealProcesses,
        })
    }

    /// The output lines of operation `op` after line `after` (root only: the control socket).
    pub fn output(&self, op: i64, after: u64) -> live::OutputView {
        self.outputs.after(op, after)
    }

    /// Where `app`'s root-private files are.
    pub(crate) fn app_data(&self, app: &str) -> AppData {
        AppData::new(&self.root, app)
    }

    pub(crate) fn load(&self) -> Result<ValidatedDefinition, String> {
        let text = std::fs::read_to_string(&self.definition)
            .map_err(|e| format!("reading {}: {e}", self.definition.display()))?;
        parse(&text, &self.definition).map_err(|e| e.to_string())
    }

    fn app(def: &ValidatedDefinition, name: &str) -> Result<AppSpec, String> {
        def.definition().apps.get(name).cloned().ok_or_else(|| {
            let known: Vec<&String> = def.definition().apps.keys().collect();
            format!("no app `{name}` in the definition (apps: {known:?})")
        })
    }

    pub(crate) fn claim(self: &Arc<Self>, kind: &'static str, app: &str) -> Result<Claim, String> {
        let mut busy = self
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((running, op)) = busy.get(app) {
            return Err(format!(
                "{running} {op} of app {app} is in progress; wait for it (strackt history --operation {op})"
            ));
        }
        busy.insert(app.to_string(), (kind, 0));
        Ok(Claim {
            deployer: self.clone(),
            app: app.to_string(),
        })
    }

    fn mark_busy(&self, kind: &'static str, app: &str, op: i64) {
        self.busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(app.to_string(), (kind, op));
    }

    /// Start a tracked operation of `kind` about `app` that does not claim it (backups,
    /// verifies).
    ///
    /// # Errors
    /// The state database failed.
    pub(crate) async fn progress(
        &self,
        kind: &'static str,
        trigger: &'static str,
        app: &str,
    ) -> Result<Progress, String> {
        Progress::start(
            &self.state,
            kind,
            trigger,
            app,
            self.metrics.clone(),
            self.outputs.clone(),
        )
        .await
        .map_err(|e| e.to_string())
    }

    async fn start(&self, kind: &'static str, app: &str) -> Result<Progress, String> {
        let p = self.progress(kind, "cli", app).await?;
        self.mark_busy(kind, app, p.id());
        Ok(p)
    }

    /// After a restart: releases a killed deploy left half-built are removed, and validation
    /// units are stopped.
    pub async fn recover(&self) {
        let left = match self.state.call(|s| s.interrupt_building()).await {
            Ok(l) => l,
            Err(e) => return tracing::error!("recovering deploys: {e}"),
        };
        let def = self.load().ok();
        for (app, id) in left {
            if let Some(spec) = def.as_ref().and_then(|d| d.definition().apps.get(&app)) {
                let dirs = AppDirs::new(&spec.path);
                if dirs.live() != Some(id) {
                    if spec.service.mode == ServeMode::Proxy {
                        // Cut off during its validation boot or start: it runs on, serving no one.
                        self.stop_release(&app, id).await;
                    }
                    match dirs.remove_release(id) {
                        Ok(()) => tracing::info!(
                            "removed release {id} of {app}, left half-built by a restart"
                        ),
                        Err(e) => tracing::warn!("removing release {id} of {app}: {e}"),
                    }
                    let data = self.app_data(&app);
                    if let Some(reason) = self.interrupted_migration(&app, spec, &data, id).await {
                        tracing::error!("release {id} of {app}: {reason}");
                    } else if let Err(e) = data.remove_release(id) {
                        tracing::warn!("removing the private files of release {id} of {app}: {e}");
                    }
                    // Killed between the two flips of a switch: the environment follows the
                    // release `current` points at.
                    if let Err(e) = data.flip(dirs.live()) {
                        tracing::warn!("pointing {app}'s environment at its live release: {e}");
                    }
                }
            }
        }
        // Validation units left running by a strackt that was killed during a validation
        // boot (transient: stopping them is all it takes, systemd collects them).
        let pattern = format!("{}*", units::VALIDATE_PREFIX);
        match self.systemd.units_matching(&pattern).await {
            Ok(left) => {
                for unit in left {
                    let _ = self.systemd.run_job(JobKind::Stop, &unit).await;
                    self.systemd.reset_failed(&unit).await;
                }
            }
            Err(e) => tracing::warn!("looking for validation units left running: {e}"),
        }
        // Files an older strackt wrote for its validation units.
        if let Ok(entries) = std::fs::read_dir(RUNTIME_UNIT_DIR) {
            let stale: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(units::VALIDATE_PREFIX))
                })
                .collect();
            for path in &stale {
                if let Some(unit) = path.file_name().map(|n| n.to_string_lossy().into_owned()) {
                    let _ = self.systemd.run_job(JobKind::Stop, &unit).await;
                    let _ = std::fs::remove_file(path);
                    self.systemd.reset_failed(&unit).await;
                }
            }
            if !stale.is_empty() {
                let _ = self.systemd.daemon_reload().await;
            }
        }
    }

    /// Start a deploy of `app`: preflight now (an error lists everything missing and nothing
    /// is started), then the rest in the background. Returns the operation id.
    ///
    /// # Errors
    /// Unknown app, a deploy already running, or what preflight found missing.
    pub async fn deploy(
        self: &Arc<Self>,
        app: String,
        branch: Option<String>,
    ) -> Result<i64, String> {
        let def = self.load()?;
        let spec = Self::app(&def, &app)?;
        let (claim, mut progress) = self.begin("deploy", &app).await?;
        let branch = branch.unwrap_or_else(|| spec.branch.clone());
        let op_id = progress.id();
        let prepared = match self.preflight(&mut progress, &app, &branch, &def).await {
            Ok(p) => p,
            Err(reason) => {
                let reason = format!("deploy of {app} did not start: {reason}");
                progress.finish(&Err(reason.clone())).await;
                return Err(format!("{reason}\n(operation {op_id})"));
            }
        };
        let me = self.clone();
        tokio::spawn(async move {
            let _claim = claim;
            let result = me
                .build_and_switch(&mut progress, &app, &spec, &prepared, (&branch, None))
                .await;
            progress.finish(&result).await;
        });
        Ok(op_id)
    }

    /// Claim `app` and start a tracked operation of `kind` on it.
    ///
    /// # Errors
    /// Another operation on the app is running, or the state database failed.
    pub(crate) async fn begin(
        self: &Arc<Self>,
        kind: &'static str,
        app: &str,
    ) -> Result<(Claim, Progress), String> {
        let claim = self.claim(kind, app)?;
        let progress = self.start(kind, app).await?;
        Ok((claim, progress))
    }

    /// The preflight step: `Err` is the reason with every problem, one per line.
    async fn preflight(
        &self,
        p: &mut Progress,
        app: &str,
        branch: &str,
        def: &ValidatedDefinition,
    ) -> Result<Prepared, String> {
        let seq = p.records().len();
        let checked = p
            .step("preflight", app, async {
                preflight::check(
                    app,
                    branch,
                    def,
                    &self.definition,
                    &self.secrets,
                    &self.systemd,
                    &self.processes,
                )
                .await
                .map(|p| (p, String::new()))
                .map_err(|e| {
                    let n = e.problems.len();
                    (
                        format!("{n} thing(s) missing, nothing was started"),
                        e.to_string(),
                    )
                })
            })
            .await;
        checked.map_err(|reason| {
            let details = p.records()[seq].output.clone().unwrap_or_default();
            format!("{reason}\n{details}")
        })
    }

    /// Deploy `app` inside another operation (a restore): preflight, then build and switch. A
    /// `current_dump` of the database as it is now becomes the release's pre-migrate dump
    /// (moved, when it is on the same filesystem) instead of a new `pg_dump`. With `at`, that
    /// commit of the branch is deployed instead of its tip.
    ///
    /// # Errors
    /// The failed step, as for a deploy; a commit `at` that is not on the branch.
    pub(crate) async fn redeploy(
        &self,
        p: &mut Progress,
        app: &str,
        def: &ValidatedDefinition,
        current_dump: Option<PathBuf>,
        at: Option<&str>,
    ) -> Result<String, String> {
        let spec = Self::app(def, app)?;
        let mut prepared = self.preflight(p, app, &spec.branch, def).await?;
        prepared.current_dump = current_dump;
        self.build_and_switch(p, app, &spec, &prepared, (&spec.branch, at))
            .await
    }

    /// Whether commit `at` is on `app`'s branch, asked before a restore stops anything: the
    /// branch's history (no file contents where the server allows it) cloned into a scratch
    /// directory of the app's user, who reaches the repository with its own credentials.
    ///
    /// # Errors
    /// Not on the branch, or the repository cannot be read: the reason.
    pub(crate) async fn check_commit(
        &self,
        app: &str,
        spec: &AppSpec,
        at: &str,
    ) -> Result<(), String> {
        let user = match &spec.user {
            Some(u) => RunAs::lookup(u)
                .ok_or_else(|| format!("user `{u}` does not exist on this server"))?,
            None => RunAs::root(),
        };
        let git = preflight::git_env(app, spec, &user)?;
        let limit = Duration::from_secs(10 * 60);
        let made = runner::run(
            &self.processes,
            &argv(&["mktemp", "-d"]),
            Path::new("/"),
            &git,
            &user,
            limit,
        )
        .await;
        let scratch = made.stdout.trim().to_string();
        ran_step(made).map_err(|(e, _)| format!("a scratch directory for git: {e}"))?;
        let scratch_dir = Path::new(&scratch);
        let clone = argv(&["git", "clone", "--quiet", "--bare", "--filter=blob:none"])
            .into_iter()
            .chain(argv(&[
                "--single-branch",
                "--branch",
                &spec.branch,
                "--",
                &spec.repo,
            ]))
            .chain([format!("{scratch}/repo")])
            .collect::<Vec<_>>();
        let cloned = runner::run(&self.processes, &clone, scratch_dir, &git, &user, limit).await;
        let result = if cloned.ok {
            let repo = scratch_dir.join("repo");
            let on = runner::run(
                &self.processes,
                &argv(&["git", "merge-base", "--is-ancestor", at, "HEAD"]),
                &repo,
                &git,
                &user,
                limit,
            )
            .await;
            if on.ok {
                Ok(())
            } else {
                Err(format!(
                    "commit {at} is not on branch {} of {} (rewritten history?); `strackt restore --latest` deploys the branch tip",
                    spec.branch, spec.repo
                ))
            }
        } else {
            Err(format!(
                "reading branch {} of {}: {}",
                spec.branch,
                spec.repo,
                cloned.failure.unwrap_or_default()
            ))
        };
        let _ = runner::run(
            &self.processes,
            &argv(&["rm", "-rf", "--", &scratch]),
            Path::new("/"),
            &git,
            &user,
            limit,
        )
        .await;
        result
    }

    async fn build_and_switch(
        &self,
        p: &mut Progress,
        app: &str,
        spec: &AppSpec,
        prepared: &Prepared,
        (branch, at): (&str, Option<&str>),
    ) -> Result<String, String> {
        let dirs = AppDirs::new(&spec.path);
        let data = self.app_data(app);
        let (a, b, op) = (app.to_string(), branch.to_string(), p.id());
        let id = self
            .state
            .call(move |s| s.insert_release(&a, &b, op, &now()))
            .await
            .map_err(|e| e.to_string())?;
        // The pre-migrate dump, once the migration has started.
        let mut migrating = None;
        let result = self
            .build_release(
                p,
                (app, spec, prepared, branch, at),
                (&dirs, &data),
                id,
                &mut migrating,
            )
            .await;
        let result = match result {
            Ok(summary) => Ok(summary),
            Err(why) => Err(self
                .after_failure(p, (app, spec, prepared), (&dirs, &data), id, migrating, why)
                .await),
        };
        let (app_s, reason) = (app.to_string(), result.as_ref().err().cloned());
        match &result {
            Ok(_) => {
                // The release is live on disk whatever the row says: the deploy stands.
                self.state
                    .write_or_log(format!("recording release {id} of {app} live"), move |s| {
                        s.set_release(&app_s, id, "live", None)
                    })
                    .await;
                self.prune(app, spec, &dirs, &data).await;
            }
            Err(_) => {
                let a = app.to_string();
                self.state
                    .write_or_log(
                        format!("recording release {id} of {app} failed"),
                        move |s| s.set_release(&a, id, "failed", reason.as_deref()),
                    )
                    .await;
            }
        }
        result
    }

    /// Fetch, build, validate, migrate and switch release `id`. `migrating` is set to the
    /// pre-migrate dump just before the migration starts.
    async fn build_release(
        &self,
        p: &mut Progress,
        (app, spec, prepared, branch, at): (&str, &AppSpec, &Prepared, &str, Option<&str>),
        (dirs, data): (&AppDirs, &AppData),
        id: u64,
        migrating: &mut Option<PathBuf>,
    ) -> Result<String, String> {
        let user = &prepared.user;
        let release = dirs.release(id);
        let quiet = &prepared.git_env;

        let commit = p
            .step("fetch", &format!("{} {branch}", spec.repo), async {
                dirs.create(owner_of(user))
                    .and_then(|d| d.create_dirs("releases", 0o755, owner_of(user)))
                    .map_err(fs_err)?;
                // Only the commit deployed is needed; a local repository is hard-linked instead
                // (git ignores --depth there).
                let depth: &[&str] = if spec.repo.starts_with('/') || at.is_some() {
                    &[]
                } else {
                    &["--depth", "1"]
                };
                let clone = argv(&[
                    "git",
                    "clone",
                    "--quiet",
                    "--single-branch",
                    "--branch",
                    branch,
                ])
                .into_iter()
                .chain(argv(depth))
                .chain(argv(&["--", &spec.repo]))
                .chain([release.display().to_string()])
                .collect::<Vec<_>>();
                let ran = runner::run(
                    &self.processes,
                    &clone,
                    &dirs.releases(),
                    quiet,
                    user,
                    OWN_LIMIT,
                )
                .await;
                let mut tail = ran.tail.clone();
                ran_step(ran)?;
                // A given commit (a restore) must be one of the branch's: never an arbitrary
                // object the repository happens to hold.
                if let Some(at) = at {
                    let on_branch = runner::run(
                        &self.processes,
                        &argv(&["git", "merge-base", "--is-ancestor", at, "HEAD"]),
                        &release,
                        quiet,
                        user,
                        OWN_LIMIT,
                    )
                    .await;
                    if !on_branch.ok {
                        return Err((
                            format!("commit {at} is not on branch {branch} of {} (rewritten history?); `strackt restore --latest` deploys the branch tip", spec.repo),
                            tail,
                        ));
                    }
                    let checkout = runner::run(
                        &self.processes,
                        &argv(&["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", at]),
                        &release,
                        quiet,
                        user,
                        OWN_LIMIT,
                    )
                    .await;
                    tail.push_str(&checkout.tail);
                    ran_step(checkout)?;
                }
                let rev = runner::run(
                    &self.processes,
                    &argv(&["git", "rev-parse", "HEAD"]),
                    &release,
                    quiet,
                    user,
                    OWN_LIMIT,
                )
                .await;
                let commit = rev.stdout.trim().to_string();
                tail.push_str(&format!("commit {commit}\n"));
                ran_step(rev)?;
                Ok((commit, tail))
            })
            .await?;
        let (a, c) = (app.to_string(), commit.clone());
        // Only shown in the release list: the deploy goes on without it.
        self.state
            .write_or_log(
                format!("recording the commit of release {id} of {app}"),
                move |s| s.set_release_facts(&a, id, Some(&c), None),
            )
            .await;

        p.step("link-shared", &dirs.shared().display().to_string(), async {
            let owner = owner_of(user);
            let root = dirs.create(owner).map_err(fs_err)?;
            let shared = root.create_dirs("shared", 0o755, owner).map_err(fs_err)?;
            let release_dir = root
                .open_dir(Path::new("releases").join(id.to_string()))
                .map_err(fs_err)?;
            let out = link_shared(dirs, &shared, &release_dir, spec, owner)?;
            // The environment file lives in strackt's own state, never in the release, where
            // the app's code (run as its user) could put a link in its place.
            let fail = |e: String| (e, String::new());
            data.fresh_release(id).map_err(fail)?;
            let env_path = data.env_file(id);
            let mut file = layout::create_private(&env_path).map_err(fail)?;
            std::io::Write::write_all(&mut file, units::env_file(&prepared.env).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| (format!("write {}: {e}", env_path.display()), String::new()))?;
            Ok(out)
        })
        .await?;

        let mut env = prepared.env.clone();
        env.insert("STRACKT_APP".into(), app.into());
        env.insert("STRACKT_RELEASE".into(), id.to_string());
        env.insert("STRACKT_RELEASE_DIR".into(), release.display().to_string());
        let limit = spec.steps.time_limit();
        // The pre-migrate dump, when there is a migration against a database.
        let dump = (spec.database.is_some() && spec.steps.migrate.is_some()).then(|| data.dump(id));
        for (name, command) in spec.steps.ordered() {
            if name == "migrate" {
                if let Some(dump) = &dump {
                    // Recorded only now, as the migration starts: a deploy cut off before it
                    // never touched the database (see `interrupted_migration`).
                    let (a, d) = (app.to_string(), dump.display().to_string());
                    self.state
                        .write_or_log(
                            format!("recording the dump of release {id} of {app}"),
                            move |s| s.set_release_facts(&a, id, None, Some(&d)),
                        )
                        .await;
                    *migrating = Some(dump.clone());
                }
            }
            if let Some(command) = command {
                let (release, env) = (&release, &env);
                p.step_live(name, command, |out| async move {
                    let cmd = argv(&["/bin/sh", "-c", command]);
                    ran_step(
                        runner::run_live(&self.processes, &cmd, release, env, user, limit, &out)
                            .await,
                    )
                })
                .await?;
            }
            if name == "validate" {
                // The dump only reads the database and writes strackt's own file, so it runs
                // while the release boots: both are done before the migration starts, and a
                // failure of either stops the other and fails the deploy before anything live
                // changed.
                let env_file = data.env_file(id);
                let boot: Step<()> = if spec.service.mode == ServeMode::Proxy {
                    Step {
                        action: "validate-boot".into(),
                        target: format!("{app} release {id} on its own port"),
                        live: Arc::new(Mutex::new(String::new())),
                        work: Box::pin(self.proxy_boot_check(app, spec, (dirs, data), id)),
                    }
                } else {
                    Step {
                        action: "validate-boot".into(),
                        target: format!("{app} release {id} on a spare port"),
                        live: Arc::new(Mutex::new(String::new())),
                        work: Box::pin(self.boot_check(app, spec, id, &release, &env_file)),
                    }
                };
                let mut work = vec![boot];
                if let Some(dump) = &dump {
                    work.push(Step {
                        action: "dump".into(),
                        target: dump.display().to_string(),
                        live: Arc::new(Mutex::new(String::new())),
                        work: Box::pin(take_dump(&self.processes, dump, prepared)),
                    });
                }
                for done in p.steps(work).await {
                    done?;
                }
            }
        }

        let previous = dirs.live();
        self.switch(p, app, spec, (dirs, data), Some(id), previous)
            .await?;
        Ok(format!(
            "deployed {app} release {id} ({}) from {branch}",
            commit.chars().take(12).collect::<String>()
        ))
    }

    /// Boot release `id` (at `release`) on its own and check its health path, then stop it
    /// again: the same socket + service pair as the live units, on a spare loopback port, as
    /// transient units (one D-Bus call, no unit file and no daemon-reload) named after the
    /// release, so no two boots ever share a name.
    async fn boot_check(
        &self,
        app: &str,
        spec: &AppSpec,
        id: u64,
        release: &Path,
        env_file: &Path,
    ) -> StepResult<()> {
        let port = spare_port().map_err(|e| (format!("no spare port: {e}"), String::new()))?;
        let listen = format!("127.0.0.1:{port}");
        let base = format!("{}{app}-{id}", units::VALIDATE_PREFIX);
        let pair = units::render(app, spec, &base, &listen, release, env_file);
        let socket = transient::properties(&pair.socket, &pair.socket_text)
            .map_err(|e| (e, String::new()))?;
        let service = transient::properties(&pair.service, &pair.service_text)
            .map_err(|e| (e, String::new()))?;
        let units = StopOnDrop {
            systemd: self.systemd.clone(),
            units: vec![pair.service.clone(), pair.socket.clone()],
        };
        let result = async {
            self.systemd
                .start_transient(&pair.socket, &socket, &[(pair.service.clone(), service)])
                .await
                .map_err(|e| e.to_string())?;
            let probe = HealthSpec {
                http: Some(health_url(&listen, &spec.service.health)),
                ..HealthSpec::default()
            };
            self.health
                .check(&probe, spec.service.health_within())
                .await
                .map_err(|e| format!("health check of the new release failed: {e}"))
        }
        .await;
        let journal = if result.is_err() {
            journal_tail(&self.processes, &pair.service).await
        } else {
            String::new()
        };
        units.stop().await;
        result
            .map(|()| ((), String::new()))
            .map_err(|e| (e, journal))
    }

    /// Point `current` at `to` and hand traffic to it; when that fails once `current` was
    /// touched, or its health check fails, go back to `back` the same way. Both must have their environment file in strackt's state (one
    /// made before it moved there is taken over first, see [`layout::adopt_legacy`]), else
    /// nothing changes.
    async fn switch(
        &self,
        p: &mut Progress,
        app: &str,
        spec: &AppSpec,
        (dirs, data): (&AppDirs, &AppData),
        to: Option<u64>,
        back: Option<u64>,
    ) -> Result<(), String> {
        if spec.service.mode == ServeMode::Proxy {
            return self
                .proxy_switch(p, app, spec, (dirs, data), to, back)
                .await;
        }
        let pair = units::render(
            app,
            spec,
            &format!("{}{app}", units::LIVE_PREFIX),
            &spec.service.listen,
            &dirs.current(),
            &data.live_env_file(),
        );
        let label = to.map_or("none".to_string(), |t| format!("release {t}"));
        let flip = |id: Option<u64>| -> Result<(), (String, String)> {
            let fail = |e: crate::host::HostError| (e.to_string(), String::new());
            data.flip(id).map_err(fail)?;
            dirs.flip(id).map_err(fail)
        };
        // Whether `current` may point at `to`: a failure from then on switches back.
        let mut flipped = false;
        let switched = p
            .step("switch", &label, async {
                let mut log = String::new();
                if let Some(id) = to {
                    let note = take_over_env(dirs, data, id).await;
                    log.push_str(&note.map_err(|e| (e, String::new()))?.unwrap_or_default());
                }
                // The release to go back to is the live one: a problem with it is no reason to
                // keep the new one from going live, only worth telling.
                if let Some(id) = back {
                    match take_over_env(dirs, data, id).await {
                        Ok(note) => log.push_str(&note.unwrap_or_default()),
                        Err(e) => log.push_str(&format!("switching back would fail: {e}\n")),
                    }
                }
                log.push_str(&self.retire_proxy(app, back).await?);
                self.install_units(&pair).await?;
                flipped = true;
                flip(to)?;
                self.systemd
                    .run_job(JobKind::Restart, &pair.service)
                    .await
                    .map_err(|e| (e.to_string(), String::new()))?;
                Ok(((), log))
            })
            .await;
        let why = match switched {
            Err(why) if !flipped => return Err(why),
            Err(why) => why,
            Ok(()) => {
                let Err(why) = self.live_health(p, spec).await else {
                    return Ok(());
                };
                why
            }
        };
        let back_label = back.map_or("no release".to_string(), |b| format!("release {b}"));
        let went_back = p
            .step("switch-back", &back_label, async {
                flip(back)?;
                let job = if back.is_some() {
                    JobKind::Restart
                } else {
                    JobKind::Stop
                };
                self.systemd
                    .run_job(job, &pair.service)
                    .await
                    .map_err(|e| (e.to_string(), String::new()))?;
                Ok(((), String::new()))
            })
            .await;
        Err(match went_back {
            Ok(()) => format!("{why}; switched back to {back_label}"),
            Err(e) => format!("{why}; and switching back failed: {e}"),
        })
    }

    /// Write the live units when they changed, and have the socket enabled and listening.
    async fn install_units(&self, pair: &units::UnitPair) -> Result<(), (String, String)> {
        let sd = |e: crate::host::HostError| (e.to_string(), String::new());
        let mut changed = false;
        let mut socket_changed = false;
        for (name, text) in [
            (&pair.socket, &pair.socket_text),
            (&pair.service, &pair.service_text),
        ] {
            let path = Path::new(UNIT_DIR).join(name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                atomic_write(&path, text.as_bytes(), 0o644, 0, 0).map_err(sd)?;
                changed = true;
                socket_changed |= name == &pair.socket;
            }
        }
        if changed {
            self.systemd.daemon_reload().await.map_err(sd)?;
        }
        let socket = self.systemd.unit_state(&pair.socket).await.map_err(sd)?;
        if !socket.is_enabled() {
            self.systemd
                .enable(std::slice::from_ref(&pair.socket))
                .await
                .map_err(sd)?;
        }
        // A new listening address needs the socket re-bound; otherwise it stays open (and
        // keeps its queue) across the service restart, and a listening one needs no job.
        let job = match (socket.is_active(), socket_changed) {
            (true, false) => return Ok(()),
            (true, true) => JobKind::Restart,
            (false, _) => JobKind::Start,
        };
        self.systemd.run_job(job, &pair.socket).await.map_err(sd)
    }

    async fn prune(&self, app: &str, spec: &AppSpec, dirs: &AppDirs, data: &AppData) {
        let a = app.to_string();
        let Ok(rows) = self.state.call(move |s| s.releases(&a)).await else {
            return;
        };
        for id in layout::prunable(&rows, dirs.live(), spec.keep_releases) {
            // A release with its build output can be many thousand files: off the daemon's
            // single thread, which also answers the status endpoint and pings the watchdog.
            let d = dirs.clone();
            let removed = tokio::task::spawn_blocking(move || d.remove_release(id))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            if let Err(e) = removed {
                tracing::warn!("pruning release {id} of {app}: {e}");
                continue;
            }
            // Its environment file and dump go with it (a dump is kept for going back to the
            // release before it, which is then gone too).
            let d = data.clone();
            let removed = tokio::task::spawn_blocking(move || d.remove_release(id))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            if let Err(e) = removed {
                tracing::warn!("pruning release {id} of {app}: {e}");
            }
            let a = app.to_string();
            self.state
                .write_or_log(
                    format!("recording release {id} of {app} removed"),
                    move |s| s.set_release(&a, id, "removed", None),
                )
                .await;
        }
    }

    /// The pre-migrate dump of release `id` in strackt's state: there already, or taken over
    /// (and recorded) from where a release made before kept it; `None` when it has none.
    ///
    /// # Errors
    /// An old dump that cannot be taken over safely.
    async fn dump_of(
        &self,
        app: &str,
        dirs: &AppDirs,
        data: &AppData,
        id: u64,
    ) -> Result<Option<PathBuf>, String> {
        let dump = data.dump(id);
        if dump.is_file() {
            return Ok(Some(dump));
        }
        let old = dirs.legacy_file(id, layout::DUMP);
        if std::fs::symlink_metadata(&old).is_err() {
            return Ok(None);
        }
        let (d, to, data) = (dirs.clone(), dump.clone(), data.clone());
        tokio::task::spawn_blocking(move || {
            layout::private_dir(&data.release(id))?;
            layout::adopt_legacy(&d, id, layout::DUMP, &to)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "the dump of release {id} was taken before strackt kept dumps in its own state, and cannot be taken over safely: {e}"
            )
        })?;
        let (a, path) = (app.to_string(), dump.display().to_string());
        self.state
            .write_or_log(
                format!("recording the dump of release {id} of {app}"),
                move |s| s.set_release_facts(&a, id, None, Some(&path)),
            )
            .await;
        Ok(Some(dump))
    }

    /// The releases of `app`.
    ///
    /// # Errors
    /// Unknown app, or the state database.
    pub async fn releases(&self, app: String) -> Result<ReleasesView, String> {
        let def = self.load()?;
        let spec = Self::app(&def, &app)?;
        let releases = self
            .state
            .call(move |s| s.releases(&app))
            .await
            .map_err(|e| e.to_string())?;
        Ok(ReleasesView {
            live: AppDirs::new(&spec.path).live(),
            releases,
        })
    }

    /// Switch `app` back to release `to` (default: the one live before), restoring the database
    /// dump taken before the later migration when `with_database`.
    ///
    /// # Errors
    /// Nothing to roll back to, a missing dump, a deploy in progress — all before any change.
    pub async fn rollback_release(
        self: &Arc<Self>,
        app: String,
        to: Option<u64>,
        with_database: bool,
    ) -> Result<Operation, String> {
        let def = self.load()?;
        let spec = Self::app(&def, &app)?;
        let _claim = self.claim("rollback-release", &app)?;
        let dirs = AppDirs::new(&spec.path);
        let live = dirs
            .live()
            .ok_or_else(|| format!("{app} has no live release"))?;
        let a = app.clone();
        let rows = self
            .state
            .call(move |s| s.releases(&a))
            .await
            .map_err(|e| e.to_string())?;
        let good = |r: &&ReleaseRow| {
            matches!(r.state.as_str(), "live" | "previous") && dirs.release(r.id).is_dir()
        };
        let target = match to {
            Some(id) => rows
                .iter()
                .filter(good)
                .find(|r| r.id == id)
                .ok_or_else(|| {
                    format!(
                        "release {id} of {app} is not on this server (see strackt releases {app})"
                    )
                })?,
            None => rows
                .iter()
                .filter(good)
                .find(|r| r.id != live)
                .ok_or_else(|| format!("{app} has no earlier release to go back to"))?,
        }
        .id;
        if target == live {
            return Err(format!("release {target} of {app} is already live"));
        }
        let data = self.app_data(&app);
        let restore = if with_database {
            // The dump taken before the first migration after `target` holds the database
            // as `target` left it.
            let none = || {
                format!("no database dump is kept for going back to release {target} (releases after it ran no migration, or were pruned)")
            };
            let after = rows
                .iter()
                .filter(|r| r.id > target && r.id <= live.max(target) && r.dump.is_some())
                .filter(good)
                .min_by_key(|r| r.id)
                .ok_or_else(none)?
                .id;
            let dump = self
                .dump_of(&app, &dirs, &data, after)
                .await?
                .ok_or_else(none)?
                .display()
                .to_string();
            let db = preflight::resolve_database(&spec, &self.secrets)?
                .ok_or_else(|| format!("app {app} has no `database:`"))?;
            Some((dump, db))
        } else {
            None
        };
        let mut p = self.start("rollback-release", &app).await?;
        let result = async {
            // A release made before environment files moved to strackt's state: its file is
            // taken over first, so a refusal comes before the database is touched.
            if !data.env_file(target).is_file() {
                let old = dirs.legacy_file(target, "env").display().to_string();
                p.step("take-over", &old, async {
                    let note = take_over_env(&dirs, &data, target).await;
                    note.map(|n| ((), n.unwrap_or_default()))
                        .map_err(|e| (e, String::new()))
                })
                .await?;
            }
            if let Some((dump, db)) = &restore {
                p.step(
                    "restore-database",
                    dump,
                    database::restore(&self.processes, Path::new(dump), db),
                )
                .await?;
            }
            self.switch(
                &mut p,
                &app,
                &spec,
                (&dirs, &data),
                Some(target),
                Some(live),
            )
            .await?;
            let db_note = if restore.is_some() {
                " with its database"
            } else {
                ""
            };
            Ok(format!(
                "rolled {app} back from release {live} to {target}{db_note}"
            ))
        }
        .await;
        if result.is_ok() {
            let a = app.clone();
            self.state
                .write_or_log(
                    format!("recording release {target} of {app} live"),
                    move |s| s.set_release(&a, target, "live", None),
                )
                .await;
        }
        Ok(p.finish(&result).await)
    }
}
