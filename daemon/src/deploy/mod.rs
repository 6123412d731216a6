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
//!
//! Everything it does to the host goes through the `host/` seam of one [`Machine`] (systemd,
//! health probes, programs, strackt's own files such as unit files and nginx sites), so the
//! deploy, its failures and release rollback have component tests on the fake (`tests.rs`);
//! the app's own directories are reached only through `host::tree` (`layout.rs`).

mod build;
pub mod database;
mod error;
mod failed;
pub mod layout;
mod outcome;
pub mod preflight;
mod prepare;
mod proxy;
pub(crate) use proxy::{instance, serving_units};
mod recover;
mod rollback;
pub mod runner;
mod switch;
#[cfg(test)]
pub(crate) mod tests;
mod transient;
pub mod units;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::definition::{parse, AppSpec, ValidatedDefinition, SECRETS_DIR};
use crate::host::definition::DefinitionFile;
use crate::host::processes::Processes;
use crate::host::systemd::UNIT_DIR;
use crate::host::{private, Machine, RealMachine};
use crate::metrics::Metrics;
use crate::ops::{live, Progress};
use crate::state::{ReleaseRow, StateHandle};
pub use error::DeployError;
use layout::{AppData, AppDirs};
use runner::{Ran, RunAs};

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

/// Runs deploys and release rollbacks on the machine `M` (the fake in component tests).
#[derive(Debug)]
pub struct Deployer<M: Machine = RealMachine> {
    state: StateHandle,
    /// The host: systemd, health probes and the programs deploys run (git, the app's steps,
    /// pg_dump, psql).
    machine: Arc<M>,
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
}

/// An app claimed for one operation; released on drop.
pub(crate) struct Claim<M: Machine = RealMachine> {
    deployer: Arc<Deployer<M>>,
    app: String,
}

impl<M: Machine> Drop for Claim<M> {
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

/// A failed file operation as a step's reason.
fn fs_err(e: std::io::Error) -> (String, String) {
    (e.to_string(), String::new())
}

/// Have release `id`'s environment file in strackt's state: there already, or taken over from
/// where a release made before kept it (`Some(note)` then).
///
/// # Errors
/// The old file cannot be taken over safely.
async fn take_over_env(
    dirs: &AppDirs,
    data: &AppData,
    id: u64,
) -> Result<Option<String>, DeployError> {
    let to = data.env_file(id);
    if to.is_file() {
        return Ok(None);
    }
    let (dirs, data) = (dirs.clone(), data.clone());
    tokio::task::spawn_blocking(move || {
        private::private_dir(&data.release(id)).map_err(DeployError::Host)?;
        let from = dirs.legacy_file(id, "env");
        match layout::adopt_legacy(&dirs, id, "env", &to) {
            Ok(_) => Ok(Some(format!(
                "release {id}: environment file taken over from {} into {}\n",
                from.display(),
                to.display()
            ))),
            Err(e) => Err(DeployError::OldEnvFile {
                id,
                dir: data.dir().to_path_buf(),
                source: Box::new(e),
            }),
        }
    })
    .await?
}

impl<M: Machine> Deployer<M> {
    /// A deployer for the definition at `definition` working on `machine`, keeping the apps'
    /// private files under the state root `root`.
    pub fn new(
        state: StateHandle,
        machine: Arc<M>,
        definition: PathBuf,
        root: PathBuf,
        metrics: Arc<Metrics>,
    ) -> Arc<Deployer<M>> {
        let places = (definition, PathBuf::from(SECRETS_DIR), root);
        Deployer::with_secrets(state, machine, places, metrics)
    }

    /// [`Deployer::new`] with the secrets in `secrets` instead of strackt's own directory (a
    /// component test's).
    pub(crate) fn with_secrets(
        state: StateHandle,
        machine: Arc<M>,
        (definition, secrets, root): (PathBuf, PathBuf, PathBuf),
        metrics: Arc<Metrics>,
    ) -> Arc<Deployer<M>> {
        // The operations log's sources: live output is masked as the stored output is.
        let redact = crate::state::Redactor::from_sources(
            &secrets,
            &[crate::vault::Vault::new(&root).key_path()],
        );
        Arc::new(Deployer {
            state,
            machine,
            definition,
            secrets,
            root,
            busy: Mutex::new(HashMap::new()),
            metrics,
            outputs: live::Outputs::new(redact),
        })
    }

    /// The host deploys (and the backups beside them) work on.
    pub(crate) fn machine(&self) -> &Arc<M> {
        &self.machine
    }

    /// Where the secrets the definition refers to are.
    pub(crate) fn secrets(&self) -> &Path {
        &self.secrets
    }

    /// The output lines of operation `op` after line `after` (root only: the control socket).
    pub fn output(&self, op: i64, after: u64) -> live::OutputView {
        self.outputs.after(op, after)
    }

    /// Where `app`'s root-private files are.
    pub(crate) fn app_data(&self, app: &str) -> AppData {
        AppData::new(&self.root, app)
    }

    pub(crate) fn load(&self) -> Result<ValidatedDefinition, DeployError> {
        let text = DefinitionFile::new(&self.definition)
            .read_text()
            .map_err(|source| DeployError::ReadDefinition {
                path: self.definition.clone(),
                source,
            })?;
        Ok(parse(&text, &self.definition)?)
    }

    fn app(def: &ValidatedDefinition, name: &str) -> Result<AppSpec, DeployError> {
        def.definition()
            .apps
            .get(name)
            .cloned()
            .ok_or_else(|| DeployError::UnknownApp {
                app: name.to_string(),
                known: def.definition().apps.keys().cloned().collect(),
            })
    }

    pub(crate) fn claim(
        self: &Arc<Self>,
        kind: &'static str,
        app: &str,
    ) -> Result<Claim<M>, DeployError> {
        let mut busy = self
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((running, op)) = busy.get(app) {
            return Err(DeployError::Busy {
                kind: running,
                operation: *op,
                app: app.to_string(),
            });
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
    ) -> Result<Progress, DeployError> {
        Ok(Progress::start(
            &self.state,
            kind,
            trigger,
            app,
            self.metrics.clone(),
            self.outputs.clone(),
            Arc::new(self.machine.clock().clone()),
        )
        .await?)
    }

    async fn start(&self, kind: &'static str, app: &str) -> Result<Progress, DeployError> {
        let p = self.progress(kind, "cli", app).await?;
        self.mark_busy(kind, app, p.id());
        Ok(p)
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
    ) -> Result<i64, DeployError> {
        let def = self.load()?;
        let spec = Self::app(&def, &app)?;
        let (claim, mut progress) = self.begin("deploy", &app).await?;
        let branch = branch.unwrap_or_else(|| spec.branch.clone());
        let op_id = progress.id();
        let prepared = match self.preflight(&mut progress, &app, &branch, &def).await {
            Ok(p) => p,
            Err(e) => {
                progress
                    .finish(&Err(format!("deploy of {app} did not start: {e}")))
                    .await;
                return Err(DeployError::NotStarted {
                    app,
                    operation: op_id,
                    source: Box::new(e),
                });
            }
        };
        let me = self.clone();
        tokio::spawn(async move {
            let _claim = claim;
            let result = me
                .build_and_switch(&mut progress, &app, &spec, &prepared, (&branch, None))
                .await;
            progress.finish(&result.map_err(String::from)).await;
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
    ) -> Result<(Claim<M>, Progress), DeployError> {
        let claim = self.claim(kind, app)?;
        let progress = self.start(kind, app).await?;
        Ok((claim, progress))
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
    ) -> Result<String, DeployError> {
        let spec = Self::app(def, app)?;
        let mut prepared = self.preflight(p, app, &spec.branch, def).await?;
        prepared.current_dump = current_dump;
        self.build_and_switch(p, app, &spec, &prepared, (&spec.branch, at))
            .await
    }

    /// The releases of `app`.
    ///
    /// # Errors
    /// Unknown app, or the state database.
    pub async fn releases(&self, app: String) -> Result<ReleasesView, DeployError> {
        let def = self.load()?;
        let spec = Self::app(&def, &app)?;
        let releases = self.state.call(move |s| s.releases(&app)).await?;
        Ok(ReleasesView {
            live: AppDirs::new(&spec.path).live(),
            releases,
        })
    }
}
