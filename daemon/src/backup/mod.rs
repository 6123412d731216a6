//! backup/ — scheduled, encrypted, deduplicated snapshots of an app's database and shared paths
//! (the `restic` binary, in the restic repository format), and restores onto this server.
//!
//! Owns the schedule loop and the backup, verify and restore
//! operations. A backup run writes two restic snapshots tagged with the same `run=…`: the
//! database dump streamed from `pg_dump` (never a temporary file), and the shared paths; then
//! the server bundle (`server.rs`: what `crate::rebuild` needs to build the server again). It
//! never changes the app; a restore does, through the deployer (it stops the app's units, puts
//! the data back, and redeploys), holding the app's claim so no deploy runs meanwhile.
//!
//! It works on the [`Machine`] of its deployer (restic, pg_dump and psql as programs, systemd
//! to stop and start the app), so runs and restores have component tests on the fake's model
//! of a restic repository (`tests.rs`).

pub mod error;
pub mod restic;
mod restore;
mod runs;
mod schedule;
pub mod server;
mod take;
#[cfg(test)]
mod tests;
pub mod unchanged;
/// The vault moved below deploy (which redacts the key); its old path stays.
pub use crate::vault;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::definition::{BackupSpec, ValidatedDefinition};
use crate::deploy::preflight::resolve_database;
use crate::deploy::Deployer;
use crate::host::clock::Clock;
use crate::host::tree::{Dir, Owner};
use crate::host::{JobKind, Machine, RealMachine, Systemd};
use crate::ops::{Operation, Progress};
use crate::state::StateHandle;
pub use crate::status::BackupState;
use crate::vault::Vault;
use error::BackupError;
use restic::{Repo, Snapshot};
pub(crate) use runs::run_time;
use runs::{complete_runs, group_runs, RunTags};
use unchanged::Seen;

/// Share of the data `backup verify` reads back.
const VERIFY_SUBSET: &str = "5%";

/// The daemon's published status as backups see it: they read the state digest and the live
/// generation, and publish their own state per app. Implemented by the daemon's status channel;
/// backups must not know the rest of the daemon.
pub trait StatusBoard: Send + Sync + std::fmt::Debug {
    /// The state digest (`strackt status`) the last pass observed.
    fn digest(&self) -> Option<String>;
    /// Change what status shows of `app`'s backups.
    fn set_backup(&self, app: &str, f: &mut dyn FnMut(&mut BackupState));
    /// The live generation now, then each time it may have changed; ends with the daemon.
    fn live_generations(&self) -> futures_util::stream::BoxStream<'static, Option<u64>>;
}

/// One backup run as `strackt backup list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    /// The run id (`restic snapshots --tag run=ID` finds its snapshots).
    pub run: String,
    /// When it was taken.
    pub time: String,
    /// The server it was taken on.
    pub server: String,
    /// schedule or cli.
    pub trigger: String,
    /// The restic snapshots: kind (database, files) → short id.
    pub snapshots: BTreeMap<String, String>,
    /// The app's commit live when the run was taken (`None`: not recorded, an older strackt
    /// or no release live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Whether `text` is a full git commit id (SHA-1 or SHA-256, lowercase hex). Tags come from
/// the repository, which every server of the team can write: nothing else reaches git.
pub fn is_commit(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Runs backups, verifies and restores on the machine `M` (the fake in component tests), the
/// one its deployer works on.
#[derive(Debug)]
pub struct Backups<M: Machine = RealMachine> {
    state: StateHandle,
    deployer: Arc<Deployer<M>>,
    vault: Vault,
    /// strackt's state root (the live generation, the server bundle's scratch).
    root: PathBuf,
    cache: PathBuf,
    secrets: PathBuf,
    server: String,
    status: Arc<dyn StatusBoard>,
    /// Apps with a backup or verify running (runs never overlap).
    running: Mutex<BTreeMap<String, ()>>,
    /// What each app's last successful run saw (in memory: after a restart the first run
    /// reads everything).
    seen: Mutex<BTreeMap<String, Seen>>,
}

/// This server's name, as snapshots are tagged with it.
pub fn server_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// An app's backup spec and the app itself (validation made sure every `backups:` key is an
/// app).
fn spec_of(
    def: &ValidatedDefinition,
    app: &str,
) -> Result<(BackupSpec, crate::definition::AppSpec), BackupError> {
    let d = def.definition();
    match (d.backups.get(app), d.apps.get(app)) {
        (Some(b), Some(a)) => Ok((b.clone(), a.clone())),
        _ => Err(BackupError::NotBackedUp(app.to_string())),
    }
}

/// Marks an app's backup as running; cleared on drop.
struct Running<M: Machine>(Arc<Backups<M>>, String);

impl<M: Machine> Drop for Running<M> {
    fn drop(&mut self) {
        if let Ok(mut r) = self.0.running.lock() {
            r.remove(&self.1);
        }
    }
}

impl<M: Machine> Backups<M> {
    /// The backup service, on the machine `deployer` works on.
    pub fn new(
        state: StateHandle,
        deployer: Arc<Deployer<M>>,
        root: &Path,
        cache: &Path,
        status: Arc<dyn StatusBoard>,
    ) -> Arc<Backups<M>> {
        let secrets = deployer.secrets().to_path_buf();
        Arc::new(Backups {
            state,
            deployer,
            vault: Vault::new(root),
            root: root.to_path_buf(),
            cache: cache.join("restic"),
            secrets,
            server: server_name(),
            status,
            running: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(BTreeMap::new()),
        })
    }

    /// The host: systemd and the programs backups run (restic, pg_dump, psql).
    fn machine(&self) -> &M {
        self.deployer.machine()
    }

    /// The name of a run starting now on the machine's clock: this server and the time, which
    /// is what the `run=` tag of its snapshots says.
    fn run_name(&self) -> String {
        let at = self.machine().clock().now();
        format!("{}-{}", self.server, at.format("%Y%m%dT%H%M%SZ"))
    }

    /// The definition, as the deployer reads it (its words on failure).
    fn load(&self) -> Result<ValidatedDefinition, BackupError> {
        self.deployer.load().map_err(BackupError::Deploy)
    }

    fn repo(&self, spec: &BackupSpec) -> Result<Repo<M::Processes>, BackupError> {
        Repo::open(
            spec,
            &self.vault,
            &self.secrets,
            &self.cache,
            self.machine().processes().clone(),
        )
    }

    fn mark_running(self: &Arc<Self>, app: &str) -> Result<Running<M>, BackupError> {
        let mut r = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if r.contains_key(app) {
            return Err(BackupError::AlreadyRunning(app.to_string()));
        }
        r.insert(app.to_string(), ());
        Ok(Running(self.clone(), app.to_string()))
    }

    fn set_state(&self, app: &str, f: impl FnOnce(&mut BackupState)) {
        let mut f = Some(f);
        self.status.set_backup(app, &mut |b| {
            if let Some(f) = f.take() {
                f(b);
            }
        });
    }

    /// Start a backup of `app` now: one tracked operation (its id is returned at once).
    ///
    /// # Errors
    /// Unknown app, or a run of it already going. A run that fails is recorded as a failed
    /// operation, in status and in `/metrics`.
    pub async fn start(
        self: &Arc<Self>,
        app: &str,
        trigger: &'static str,
    ) -> Result<i64, BackupError> {
        let def = self.load()?;
        let (spec, app_spec) = spec_of(&def, app)?;
        let running = self.mark_running(app)?;
        let mut p = self
            .deployer
            .progress("backup", trigger, app)
            .await
            .map_err(BackupError::Deploy)?;
        let id = p.id();
        let (me, app) = (self.clone(), app.to_string());
        tokio::spawn(async move {
            let _running = running;
            // The operations log records text.
            let result = me
                .take(&mut p, &app, &spec, &app_spec, trigger)
                .await
                .map_err(|e| e.to_string());
            let op = p.finish(&result).await;
            me.record(&app, &op, &result);
        });
        Ok(id)
    }

    fn record(&self, app: &str, op: &Operation, result: &Result<String, String>) {
        match result {
            Ok(_) => {
                self.set_state(app, |s| {
                    s.last_outcome = Some(crate::ops::Outcome::Success);
                    s.last_error = None;
                    s.last_success = op.finished.clone();
                    s.last_operation = Some(op.id);
                });
            }
            Err(e) => {
                tracing::error!("backup of {app} failed: {e}");
                self.set_state(app, |s| {
                    s.last_outcome = Some(crate::ops::Outcome::Failed);
                    s.last_error = Some(e.clone());
                    s.last_operation = Some(op.id);
                });
            }
        }
    }

    /// The runs of `app` at its destination (of `server`, or of every server).
    ///
    /// # Errors
    /// Unknown app, a wrong key, an unreachable destination.
    pub async fn list(
        &self,
        app: &str,
        server: Option<String>,
    ) -> Result<Vec<RunView>, BackupError> {
        let def = self.load()?;
        let (spec, _) = spec_of(&def, app)?;
        let repo = self.repo(&spec)?;
        repo.probe().await?;
        let snaps = repo
            .snapshots(&["strackt".into(), format!("app={app}")], server.as_deref())
            .await?;
        Ok(complete_runs(&snaps, &spec))
    }

    /// Start a check of the repository's structure that reads back a sample of the data.
    ///
    /// # Errors
    /// Unknown app, or a run of it going; a failed check is a failed operation.
    pub async fn start_verify(
        self: &Arc<Self>,
        app: &str,
        trigger: &'static str,
    ) -> Result<i64, BackupError> {
        let def = self.load()?;
        let (spec, _) = spec_of(&def, app)?;
        let running = self.mark_running(app)?;
        let mut p = self
            .deployer
            .progress("backup-verify", trigger, app)
            .await
            .map_err(BackupError::Deploy)?;
        let id = p.id();
        let (me, app) = (self.clone(), app.to_string());
        tokio::spawn(async move {
            let _running = running;
            let result = async {
                let repo = me.repo(&spec)?;
                step(
                    &mut p,
                    "check",
                    &format!("{} (reading {VERIFY_SUBSET} of the data)", repo.location),
                    async { repo.check(VERIFY_SUBSET).await.map(|out| ((), out)) },
                )
                .await?;
                Ok::<_, BackupError>(format!("backups of {app} verified at {}", repo.location))
            }
            .await
            .map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::error!("verifying backups of {app}: {e}");
            }
            p.finish(&result).await;
        });
        Ok(id)
    }
}

/// Run blocking file work on tokio's blocking pool, off the daemon's single thread.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(work).await?
}

/// Run `work` as step `action` on `target` of `p`. The operations log records a failure as its
/// words; it comes back as [`BackupError::Step`] with the failure itself as the cause, so its
/// class is not lost on the way.
async fn step<T>(
    p: &mut Progress,
    action: &str,
    target: &str,
    work: impl std::future::Future<Output = Result<(T, String), BackupError>> + Send,
) -> Result<T, BackupError> {
    let mut cause = None;
    let result = p
        .step(action, target, async {
            work.await.map_err(|e| {
                let text = e.to_string();
                cause = Some(Box::new(e));
                (text, String::new())
            })
        })
        .await;
    result.map_err(|text| BackupError::Step { text, cause })
}
