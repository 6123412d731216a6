//! backup/ — scheduled, encrypted, deduplicated snapshots of an app's database and shared paths
//! (the `restic` binary, in the restic repository format), and restores onto this server.
//!
//! Owns the vault (the team key), the schedule loop and the backup, verify and restore
//! operations. A backup run writes two restic snapshots tagged with the same `run=…`: the
//! database dump streamed from `pg_dump` (never a temporary file), and the shared paths; then
//! the server bundle (`server.rs`: what `crate::rebuild` needs to build the server again). It
//! never changes the app; a restore does, through the deployer (it stops the app's units, puts
//! the data back, and redeploys), holding the app's claim so no deploy runs meanwhile.

pub mod restic;
mod restore;
pub mod server;
pub mod unchanged;
pub mod vault;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::definition::schedule::Schedule;
use crate::definition::{BackupSpec, ValidatedDefinition, SECRETS_DIR};
use crate::deploy::preflight::resolve_database;
use crate::deploy::Deployer;
use crate::host::processes::{Cmd, RealProcesses};
use crate::host::systemd::DbusSystemd;
use crate::host::tree::{Dir, Owner};
use crate::host::{JobKind, Systemd};
use crate::ops::{Operation, Progress, Step};
use crate::state::StateHandle;
use restic::{bytes, Repo, Snapshot, Summary};
use unchanged::Seen;
use vault::Vault;

/// How often the schedule loop re-reads the definition when nothing is due sooner.
const RECHECK: Duration = Duration::from_secs(15);
/// Share of the data `backup verify` reads back.
const VERIFY_SUBSET: &str = "5%";

/// What `/status` shows per app with backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupState {
    /// The next scheduled run (RFC 3339, UTC).
    pub next_run: Option<String>,
    /// The last run's operation.
    pub last_operation: Option<i64>,
    /// success or failed.
    pub last_outcome: Option<String>,
    /// Why the last run failed.
    pub last_error: Option<String>,
    /// When the last successful run finished.
    pub last_success: Option<String>,
}

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

/// Runs backups, verifies and restores.
#[derive(Debug)]
pub struct Backups {
    state: StateHandle,
    systemd: DbusSystemd,
    deployer: Arc<Deployer>,
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
    /// The programs backups run (restic, pg_dump, psql).
    processes: RealProcesses,
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
) -> Result<(BackupSpec, crate::definition::AppSpec), String> {
    let d = def.definition();
    match (d.backups.get(app), d.apps.get(app)) {
        (Some(b), Some(a)) => Ok((b.clone(), a.clone())),
        _ => Err(format!(
            "no `backups:` entry for app `{app}` in the definition"
        )),
    }
}

/// Marks an app's backup as running; cleared on drop.
struct Running(Arc<Backups>, String);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut r) = self.0.running.lock() {
            r.remove(&self.1);
        }
    }
}

impl Backups {
    /// The backup service.
    pub fn new(
        state: StateHandle,
        systemd: DbusSystemd,
        deployer: Arc<Deployer>,
        root: &Path,
        cache: &Path,
        status: Arc<dyn StatusBoard>,
    ) -> Arc<Backups> {
        Arc::new(Backups {
            state,
            systemd,
            deployer,
            vault: Vault::new(root),
            root: root.to_path_buf(),
            cache: cache.join("restic"),
            secrets: PathBuf::from(SECRETS_DIR),
            server: server_name(),
            status,
            running: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(BTreeMap::new()),
            processes: RealProcesses,
        })
    }

    fn repo(&self, spec: &BackupSpec) -> Result<Repo, String> {
        Repo::open(
            spec,
            &self.vault,
            &self.secrets,
            &self.cache,
            self.processes,
        )
    }

    fn mark_running(self: &Arc<Self>, app: &str) -> Result<Running, String> {
        let mut r = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if r.contains_key(app) {
            return Err(format!("a backup of {app} is already running"));
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
    pub async fn start(self: &Arc<Self>, app: &str, trigger: &'static str) -> Result<i64, String> {
        let def = self.deployer.load()?;
        let (spec, app_spec) = spec_of(&def, app)?;
        let running = self.mark_running(app)?;
        let mut p = self.deployer.progress("backup", trigger, app).await?;
        let id = p.id();
        let (me, app) = (self.clone(), app.to_string());
        tokio::spawn(async move {
            let _running = running;
            let result = me.take(&mut p, &app, &spec, &app_spec, trigger).await;
            let op = p.finish(&result).await;
            me.record(&app, &op, &result);
        });
        Ok(id)
    }

    fn record(&self, app: &str, op: &Operation, result: &Result<String, String>) {
        match result {
            Ok(_) => {
                self.set_state(app, |s| {
                    s.last_outcome = Some("success".into());
                    s.last_error = None;
                    s.last_success = op.finished.clone();
                    s.last_operation = Some(op.id);
                });
            }
            Err(e) => {
                tracing::error!("backup of {app} failed: {e}");
                self.set_state(app, |s| {
                    s.last_outcome = Some("failed".into());
                    s.last_error = Some(e.clone());
                    s.last_operation = Some(op.id);
                });
            }
        }
    }

    async fn take(
        &self,
        p: &mut Progress,
        app: &str,
        spec: &BackupSpec,
        app_spec: &crate::definition::AppSpec,
        trigger: &str,
    ) -> Result<String, String> {
        let repo = self.repo(spec)?;
        let run = format!("{}-{}", self.server, Utc::now().format("%Y%m%dT%H%M%SZ"));
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(app)
            .filter(|s| s.location == repo.location && !repo.append_only);
        // The repository was written to by the last run: no need to look for it again.
        if seen.is_none() {
            p.step("repository", &repo.location, async {
                let created = repo.ensure().await.map_err(|e| (e, String::new()))?;
                Ok((
                    (),
                    if created {
                        "created".into()
                    } else {
                        String::new()
                    },
                ))
            })
            .await?;
        }
        let commit = self.live_commit(app, app_spec).await;
        let tags = RunTags {
            app,
            run: &run,
            trigger,
            commit: commit.as_deref(),
        };
        let mut said = Vec::new();
        let mut written = Vec::new();
        let parts = self.parts(app, spec, app_spec, &repo).await?;
        let result = self
            .take_parts(
                p,
                parts,
                spec,
                &repo,
                seen.as_ref(),
                &tags,
                &mut said,
                &mut written,
            )
            .await;
        // The server goes with its data: a run without its bundle is not complete.
        let result = match result {
            Ok(f) => self.store_server(p, &repo, &tags).await.map(|()| f),
            Err(e) => Err(e),
        };
        let fingerprints = match result {
            Ok(f) => f,
            Err(e) => {
                // A run is both snapshots or nothing: what a failed run wrote is removed (a
                // receiver refuses that; `backup list` hides incomplete runs either way).
                if !written.is_empty() && !repo.append_only {
                    let ids: Vec<&str> = written.iter().map(String::as_str).collect();
                    if let Err(f) = repo.forget_ids(&ids).await {
                        tracing::warn!("removing the incomplete backup {run}: {f}");
                    }
                }
                return Err(e);
            }
        };
        let keep = spec.keep.restic_flags();
        // Nothing new written, nothing new to forget: retention waits for the next real run.
        if !keep.is_empty() && !repo.append_only && !written.is_empty() {
            p.step("retention", &keep.join(" "), async {
                repo.forget(Some(app), Some(&self.server), &keep)
                    .await
                    .map(|out| ((), out))
                    .map_err(|e| (e, String::new()))
            })
            .await?;
        }
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                app.to_string(),
                Seen {
                    location: repo.location.clone(),
                    run: run.clone(),
                    parts: fingerprints,
                },
            );
        Ok(format!("backup {run} of {app}: {}", said.join("; ")))
    }

    /// The commit of `app`'s live release, recorded with each run so a restore can redeploy
    /// the code that ran with the data.
    async fn live_commit(
        &self,
        app: &str,
        app_spec: &crate::definition::AppSpec,
    ) -> Option<String> {
        let live = crate::deploy::layout::AppDirs::new(&app_spec.path).live()?;
        let a = app.to_string();
        let releases = self.state.call(move |s| s.releases(&a)).await.ok()?;
        releases
            .into_iter()
            .find(|r| r.id == live)?
            .commit
            .filter(|c| is_commit(c))
    }

    /// The parts of a run of `app`: the database dump and the shared paths, each with the
    /// fingerprint it has now (when it can be told).
    async fn parts(
        &self,
        app: &str,
        spec: &BackupSpec,
        app_spec: &crate::definition::AppSpec,
        repo: &Repo,
    ) -> Result<Vec<Part>, String> {
        let db = if spec.database {
            Some(
                resolve_database(app_spec, &self.secrets)?
                    .ok_or_else(|| format!("app `{app}` has no database"))?,
            )
        } else {
            None
        };
        let shared = Path::new(&app_spec.path).join("shared");
        let paths: Vec<String> = spec
            .paths
            .iter()
            .map(|p| shared.join(p).display().to_string())
            .collect();
        if let Some(missing) = paths.iter().find(|p| !Path::new(p).exists()) {
            return Err(format!("{missing} does not exist (deploy the app first)"));
        }
        // Both taken before anything is read: a change after this makes the next run read
        // again. A receiver cannot re-tag snapshots, so there every part is always read.
        let look = !repo.append_only;
        let walk = paths.clone();
        let (db_print, files_print) = tokio::join!(
            async {
                match &db {
                    Some(env) if look => unchanged::database(&self.processes, env).await,
                    _ => None,
                }
            },
            async {
                if look && !walk.is_empty() {
                    tokio::task::spawn_blocking(move || unchanged::files(&walk))
                        .await
                        .ok()
                        .and_then(Result::ok)
                } else {
                    None
                }
            }
        );
        let mut parts: Vec<Part> = Vec::new();
        if let Some(db) = db {
            // Uncompressed: restic compresses (zstd) after content-defined chunking, so the
            // table data that did not change since the last run is found again and not stored
            // twice; a compressed dump would differ from its first changed byte on.
            let dump = Cmd::new("pg_dump", restic::BACKUP_LIMIT)
                .args(["--format=custom", "--compress=0", "--no-password"])
                .envs(&db);
            parts.push(Part {
                kind: "database",
                target: format!("pg_dump → {}", repo.location),
                paths: Vec::new(),
                stream: Some((dump, format!("{app}.pgdump"))),
                fingerprint: db_print,
            });
        }
        if !paths.is_empty() {
            parts.push(Part {
                kind: "files",
                target: paths.join(" "),
                paths,
                stream: None,
                fingerprint: files_print,
            });
        }
        Ok(parts)
    }

    /// Take `parts`: those unchanged since `seen` are recorded on its snapshots (one `restic
    /// tag`), the others read. Returns the fingerprints of the parts.
    #[allow(clippy::too_many_arguments)]
    async fn take_parts(
        &self,
        p: &mut Progress,
        parts: Vec<Part>,
        spec: &BackupSpec,
        repo: &Repo,
        seen: Option<&Seen>,
        tags: &RunTags<'_>,
        said: &mut Vec<String>,
        written: &mut Vec<String>,
    ) -> Result<BTreeMap<&'static str, String>, String> {
        let fingerprints: BTreeMap<&'static str, String> = parts
            .iter()
            .filter_map(|part| Some((part.kind, part.fingerprint.clone()?)))
            .collect();
        let (same, mut read): (Vec<Part>, Vec<Part>) = parts.into_iter().partition(|part| {
            seen.is_some_and(|s| s.unchanged(&repo.location, part.kind, part.fingerprint.as_ref()))
        });
        if let (Some(prev), false) = (seen, same.is_empty()) {
            let kinds: Vec<&str> = same.iter().map(|part| part.kind).collect();
            let filters: Vec<String> = kinds
                .iter()
                .map(|k| format!("run={},kind={k}", prev.run))
                .collect();
            let add = tags.shared();
            let expected = same.len();
            // restic tag needs an exclusive lock: when another run holds the repository, or the
            // previous run's snapshots are gone, the parts are simply read.
            let tagged = p
                .step(
                    "unchanged",
                    &format!("{} as in {}", kinds.join(" and "), prev.run),
                    async {
                        Ok(match repo.add_tags(&self.server, &filters, &add).await {
                            Ok(n) if n == expected => (n, String::new()),
                            Ok(n) => (
                                n,
                                format!(
                                    "{n} of {expected} snapshots of {} found; reading them instead",
                                    prev.run
                                ),
                            ),
                            Err(e) => (0, format!("{e}; reading instead")),
                        })
                    },
                )
                .await?;
            if tagged == expected {
                said.extend(kinds.iter().map(|k| format!("{k} unchanged")));
            } else {
                read.extend(same);
            }
        } else {
            read.extend(same);
        }
        read.sort_by_key(|part| part.kind != "database");
        // The dump and the files go up at the same time: restic reads a stream on one thread,
        // so alone it leaves a core idle.
        let kinds: Vec<&str> = read.iter().map(|part| part.kind).collect();
        let steps: Vec<Step<'_, Summary>> = read
            .into_iter()
            .map(|part| {
                let live = Arc::new(Mutex::new(String::new()));
                let tags = tags.of(part.kind);
                let work_live = live.clone();
                Step {
                    action: part.kind.to_string(),
                    target: part.target,
                    live,
                    work: Box::pin(async move {
                        repo.backup(
                            &part.paths,
                            part.stream,
                            &tags,
                            &self.server,
                            &work_live,
                            spec.stall_limit(),
                        )
                        .await
                        .map(|s| (s, String::new()))
                        .map_err(|e| (e, String::new()))
                    }),
                }
            })
            .collect();
        let mut failure = None;
        for (kind, result) in kinds.into_iter().zip(p.steps(steps).await) {
            match result {
                Ok(summary) => {
                    written.push(summary.snapshot_id.clone());
                    said.push(format!(
                        "{kind} {} read, {} added",
                        bytes(summary.total_bytes_processed),
                        bytes(summary.data_added)
                    ));
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(fingerprints)
    }

    /// The runs of `app` at its destination (of `server`, or of every server).
    ///
    /// # Errors
    /// Unknown app, a wrong key, an unreachable destination.
    pub async fn list(&self, app: &str, server: Option<String>) -> Result<Vec<RunView>, String> {
        let def = self.deployer.load()?;
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
    ) -> Result<i64, String> {
        let def = self.deployer.load()?;
        let (spec, _) = spec_of(&def, app)?;
        let running = self.mark_running(app)?;
        let mut p = self
            .deployer
            .progress("backup-verify", trigger, app)
            .await?;
        let id = p.id();
        let (me, app) = (self.clone(), app.to_string());
        tokio::spawn(async move {
            let _running = running;
            let result = async {
                let repo = me.repo(&spec)?;
                p.step(
                    "check",
                    &format!("{} (reading {VERIFY_SUBSET} of the data)", repo.location),
                    async {
                        repo.check(VERIFY_SUBSET)
                            .await
                            .map(|out| ((), out))
                            .map_err(|e| (e, String::new()))
                    },
                )
                .await?;
                Ok(format!("backups of {app} verified at {}", repo.location))
            }
            .await;
            if let Err(e) = &result {
                tracing::error!("verifying backups of {app}: {e}");
            }
            p.finish(&result).await;
        });
        Ok(id)
    }

    /// Start the schedule loop: each app's backups (and verifies) run at their times; a run
    /// missed while the daemon was down runs once at start; runs of one app never overlap.
    pub fn spawn_scheduler(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let wait = me.tick().await;
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// Start what is due; return how long to sleep. The definition is re-read every time, so
    /// a schedule edit takes effect within `RECHECK`.
    async fn tick(self: &Arc<Self>) -> Duration {
        let Ok(def) = self.deployer.load() else {
            return RECHECK;
        };
        let now = Utc::now();
        let mut wait = RECHECK;
        for (app, spec) in &def.definition().backups {
            for (kind, text) in [
                ("backup", Some(&spec.schedule)),
                ("verify", spec.verify.as_ref()),
            ] {
                let Some(text) = text else { continue };
                let Ok(schedule) = Schedule::parse(text, &spec.timezone) else {
                    continue;
                };
                let key = format!("schedule:{kind}:{app}");
                let k = key.clone();
                let last = self
                    .state
                    .call(move |s| s.meta(&k))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| t.with_timezone(&Utc));
                let Some(last) = last else {
                    // First sight of this schedule: start counting from now.
                    let v = now.to_rfc3339();
                    self.state
                        .write_or_log(format!("recording {key}"), move |s| {
                            s.set_meta(&key, Some(&v))
                        })
                        .await;
                    continue;
                };
                let Some(due) = schedule.next_after(last) else {
                    continue;
                };
                if due <= now {
                    // Due (or missed while down): run once, and count every slot up to now as
                    // handled.
                    let v = now.to_rfc3339();
                    self.state
                        .write_or_log(format!("recording {key}"), move |s| {
                            s.set_meta(&key, Some(&v))
                        })
                        .await;
                    let (me, app) = (self.clone(), app.clone());
                    tokio::spawn(async move {
                        let result = if kind == "backup" {
                            me.start(&app, "schedule").await
                        } else {
                            me.start_verify(&app, "schedule").await
                        };
                        if let Err(e) = result {
                            tracing::warn!("scheduled {kind} of {app} not run: {e}");
                        }
                    });
                    continue;
                }
                if kind == "backup" {
                    let next = due.to_rfc3339();
                    self.set_state(app, |s| s.next_run = Some(next));
                }
                let until = (due - now).to_std().unwrap_or_default();
                wait = wait.min(until + Duration::from_millis(200));
            }
        }
        wait
    }
}

/// One snapshot of a run: its step name (and `kind=` tag), what it reads, and either paths or
/// a stream (a command and the file name it gets in the snapshot).
struct Part {
    kind: &'static str,
    target: String,
    paths: Vec<String>,
    stream: Option<(Cmd, String)>,
    /// What it looks like now, to tell whether it changed since the last run.
    fingerprint: Option<String>,
}

/// How a run's snapshots are tagged.
struct RunTags<'a> {
    app: &'a str,
    run: &'a str,
    trigger: &'a str,
    /// The app's live commit.
    commit: Option<&'a str>,
}

impl RunTags<'_> {
    /// The tags of the run's own snapshot of `kind`.
    fn of(&self, kind: &str) -> Vec<String> {
        vec![
            "strackt".to_string(),
            format!("app={}", self.app),
            format!("run={}", self.run),
            format!("trigger={}", self.trigger),
            format!("kind={kind}"),
        ]
        .into_iter()
        .chain(self.commit.map(|c| format!("commit={c}")))
        .collect()
    }

    /// The tags added to an earlier run's snapshot that this run shares. The trigger goes
    /// under a tag of its own: the snapshot's plain `trigger=` stays the first run's, and
    /// restic adds no tag twice, so two `trigger=` tags could not be paired with their runs.
    fn shared(&self) -> Vec<String> {
        vec![
            format!("run={}", self.run),
            format!("trigger:{}={}", self.run, self.trigger),
        ]
        .into_iter()
        .chain(self.commit.map(|c| format!("commit:{}={c}", self.run)))
        .collect()
    }
}

/// The snapshots a complete run of `spec` has.
fn expected_kinds(spec: &BackupSpec) -> impl Iterator<Item = &'static str> {
    let db = spec.database.then_some("database");
    let files = (!spec.paths.is_empty()).then_some("files");
    db.into_iter().chain(files)
}

/// The runs of `spec` that have every snapshot they should, newest first.
fn complete_runs(snaps: &[Snapshot], spec: &BackupSpec) -> Vec<RunView> {
    group_runs(snaps)
        .into_iter()
        .filter(|r| expected_kinds(spec).all(|k| r.snapshots.contains_key(k)))
        .collect()
}

/// Group snapshots by their run tag, newest first. A part that did not change is one snapshot
/// shared by consecutive runs (several `run=` tags); a run's time is the one in its id.
fn group_runs(snaps: &[Snapshot]) -> Vec<RunView> {
    let mut runs: BTreeMap<String, RunView> = BTreeMap::new();
    for s in snaps {
        for run in s.tags_of("run") {
            let view = runs.entry(run.to_string()).or_insert_with(|| RunView {
                run: run.to_string(),
                time: run_time(run).unwrap_or_else(|| s.time.clone()),
                server: s.hostname.clone(),
                trigger: "?".into(),
                snapshots: BTreeMap::new(),
                commit: None,
            });
            // Like the trigger: a shared snapshot's plain `commit=` is its first run's.
            let first = s.tags_of("run").next() == Some(run);
            let commit = s
                .tag(&format!("commit:{run}"))
                .or_else(|| s.tag("commit").filter(|_| first))
                .filter(|c| is_commit(c));
            if let Some(c) = commit {
                view.commit = Some(c.to_string());
            }
            // A run that reused a snapshot recorded its trigger as `trigger:RUN=…`.
            let trigger = s
                .tag(&format!("trigger:{run}"))
                .or_else(|| s.tag("trigger"));
            if let Some(t) = trigger {
                view.trigger = t.to_string();
            }
            view.snapshots.insert(
                s.tag("kind").unwrap_or("files").to_string(),
                s.short_id.clone(),
            );
        }
    }
    let mut list: Vec<RunView> = runs.into_values().collect();
    list.sort_by(|a, b| b.time.cmp(&a.time));
    list
}

/// The time in a run id `<server>-YYYYMMDDTHHMMSSZ`, as RFC 3339.
pub(crate) fn run_time(run: &str) -> Option<String> {
    let (_, stamp) = run.rsplit_once('-')?;
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").ok()?;
    Some(
        t.and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// Run blocking file work on tokio's blocking pool, off the daemon's single thread.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("file work: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::restore::code_to_deploy;
    use super::*;

    fn snap(id: &str, time: &str, kind: &str, run: &str) -> Snapshot {
        Snapshot {
            id: id.into(),
            short_id: id.into(),
            time: time.into(),
            hostname: "web1".into(),
            paths: Vec::new(),
            tags: vec![
                "strackt".into(),
                format!("run={run}"),
                "trigger=cli".into(),
                format!("kind={kind}"),
            ],
        }
    }

    #[test]
    fn snapshots_group_into_runs_and_incomplete_runs_are_told() {
        let snaps = [
            snap("a", "2026-11-22T10:00:01Z", "database", "r1"),
            snap("b", "2026-11-22T10:00:05Z", "files", "r1"),
            snap("c", "2026-11-22T11:00:01Z", "database", "r2"),
        ];
        let runs = group_runs(&snaps);
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].run.as_str(), runs[1].run.as_str()), ("r2", "r1"));
        assert_eq!(runs[1].time, "2026-11-22T10:00:01Z");
        assert_eq!(
            runs[1].snapshots.get("files").map(String::as_str),
            Some("b")
        );
        let spec: BackupSpec = serde_json::from_value(serde_json::json!({
            "database": true, "paths": ["storage/uploads"],
            "to": { "s3": { "endpoint": "http://x", "bucket": "b",
                            "credentials": { "secret": "s" } } }
        }))
        .expect("spec");
        let complete: Vec<String> = complete_runs(&snaps, &spec)
            .into_iter()
            .map(|r| r.run)
            .collect();
        assert_eq!(complete, ["r1"], "r2 has no files snapshot");
    }

    #[test]
    fn an_unchanged_part_is_shared_by_consecutive_runs() {
        let (r1, r2) = ("web1-20261122T100000Z", "web1-20261122T101500Z");
        let mut db = snap("a", "2026-11-22T10:00:01Z", "database", r1);
        // What the second run adds to the first run's database snapshot it shares.
        db.tags.extend(
            RunTags {
                app: "shop",
                run: r2,
                trigger: "schedule",
                commit: None,
            }
            .shared(),
        );
        let mut files2 = snap("c", "2026-11-22T10:15:02Z", "files", r2);
        files2.tags[2] = "trigger=schedule".into();
        let snaps = [db, snap("b", "2026-11-22T10:00:05Z", "files", r1), files2];
        let runs = group_runs(&snaps);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].run, r2);
        assert_eq!(runs[0].time, "2026-11-22T10:15:00Z", "the run's own time");
        assert_eq!(
            runs[0].snapshots.get("database").map(String::as_str),
            Some("a")
        );
        assert_eq!(
            runs[0].snapshots.get("files").map(String::as_str),
            Some("c")
        );
        assert_eq!(runs[0].trigger, "schedule");
        assert_eq!(
            runs[1].snapshots.get("database").map(String::as_str),
            Some("a")
        );
        assert_eq!(runs[1].trigger, "cli");
    }

    #[test]
    fn each_run_tells_the_commit_live_when_it_was_taken() {
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        let (r1, r2, r3) = (
            "web1-20261122T100000Z",
            "web1-20261122T101500Z",
            "old-20261122T090000Z",
        );
        let tags = |run, commit| RunTags {
            app: "shop",
            run,
            trigger: "cli",
            commit,
        };
        let mut db = snap("a", "2026-11-22T10:00:01Z", "database", r1);
        db.tags = tags(r1, Some(a.as_str())).of("database");
        // r2 shares r1's snapshot, at another commit; r3 (an older strackt) recorded none,
        // and a tag that is not a commit id is never taken for one.
        db.tags.extend(tags(r2, Some(b.as_str())).shared());
        let mut old = snap("o", "2026-11-22T09:00:01Z", "database", r3);
        old.tags.push("commit=--upload-pack=evil".into());
        let runs = group_runs(&[db, old]);
        let commit_of = |run: &str| {
            runs.iter()
                .find(|r| r.run == run)
                .and_then(|r| r.commit.clone())
        };
        assert_eq!(commit_of(r1), Some(a.clone()));
        assert_eq!(commit_of(r2), Some(b.clone()));
        assert_eq!(commit_of(r3), None);
        assert_eq!(
            code_to_deploy(Some(a.clone()), false, "main").0,
            Some(a.clone())
        );
        assert_eq!(code_to_deploy(Some(a), true, "main").0, None);
        let (at, said) = code_to_deploy(None, false, "main");
        assert!(
            at.is_none() && said.contains("no commit was recorded"),
            "{said}"
        );
    }
}
