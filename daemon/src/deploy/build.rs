//! The deploy's build phase: fetch, build, validate (a boot of the new release on transient
//! units), dump and migrate a release beside the live one, then hand it to [`switch`](super::switch).
//!
//! Owns the release being built (its directory, its validation units, its pre-migrate dump).
//! It must not change the live release, `current` or the live units: only `switch.rs` does,
//! and only once every step here passed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::definition::{AppSpec, HealthSpec, ServeMode};
use crate::host::clock::Clock;
use crate::host::health::Health;
use crate::host::processes::Processes;
use crate::host::tree::{Dir, Owner};
use crate::host::{private, JobKind, Machine, Systemd};
use crate::ops::{stamp, Progress, Step, StepResult};
use crate::state::ReleaseState;
use layout::{AppData, AppDirs};
use preflight::Prepared;
use runner::RunAs;

use super::{
    argv, fs_err, health_url, journal_tail, layout, preflight, ran_step, runner, transient, units,
    DeployError, Deployer, OWN_LIMIT,
};

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
struct StopOnDrop<M: Machine> {
    machine: Arc<M>,
    units: Vec<String>,
}

impl<M: Machine> StopOnDrop<M> {
    async fn stop(mut self) {
        let units = std::mem::take(&mut self.units);
        stop_all(self.machine.systemd(), &units).await;
    }
}

impl<M: Machine> Drop for StopOnDrop<M> {
    fn drop(&mut self) {
        if self.units.is_empty() {
            return;
        }
        let (machine, units) = (self.machine.clone(), std::mem::take(&mut self.units));
        tokio::spawn(async move { stop_all(machine.systemd(), &units).await });
    }
}

/// Stop `units` at the same time; a unit already gone is fine.
async fn stop_all(systemd: &impl Systemd, units: &[String]) {
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
    // Both in strackt's root-only state (a restore's scratch, the release's directory there).
    // Anything but a regular file there (a link) is not taken: a fresh dump is.
    if let Some(current) = &prepared.current_dump {
        if private::rename_private(current, dump).is_ok() {
            return Ok((
                (),
                format!("kept {} (the database as restored)\n", current.display()),
            ));
        }
    }
    // pg_dump writes to a file strackt opened in its own directory: it opens no path itself,
    // and runs from `/`, not from the app's tree.
    let file = private::create_private(dump).map_err(|e| (e.to_string(), String::new()))?;
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
        // Safe to ignore: the step fails either way, and a partial dump is never taken for a
        // pre-migrate dump — no release records it (that happens only as the migration starts,
        // after this step passed), and the failed deploy removes the release's private files.
        let _ = private::remove_private(dump);
    }
    ran_step(ran)
}

impl<M: Machine> Deployer<M> {
    pub(super) async fn build_and_switch(
        &self,
        p: &mut Progress,
        app: &str,
        spec: &AppSpec,
        prepared: &Prepared,
        (branch, at): (&str, Option<&str>),
    ) -> Result<String, DeployError> {
        let dirs = AppDirs::new(&spec.path);
        let data = self.app_data(app);
        let (a, b, op) = (app.to_string(), branch.to_string(), p.id());
        let created = stamp(self.machine.clock().now());
        let id = self
            .state
            .call(move |s| s.insert_release(&a, &b, op, &created))
            .await?;
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
        let (app_s, reason) = (
            app.to_string(),
            result.as_ref().err().map(|e| e.to_string()),
        );
        match &result {
            Ok(_) => {
                // The release is live on disk whatever the row says: the deploy stands.
                self.state
                    .write_or_log(format!("recording release {id} of {app} live"), move |s| {
                        s.set_release(&app_s, id, ReleaseState::Live, None)
                    })
                    .await;
                self.prune(app, spec, &dirs, &data).await;
            }
            Err(_) => {
                let a = app.to_string();
                self.state
                    .write_or_log(
                        format!("recording release {id} of {app} failed"),
                        move |s| s.set_release(&a, id, ReleaseState::Failed, reason.as_deref()),
                    )
                    .await;
            }
        }
        result
    }

    /// Fetch, build, validate, migrate and switch release `id`. `migrating` is set to the
    /// pre-migrate dump just before the migration starts.
    // Whole on purpose (~190 lines): it is the deploy's step sequence read top to bottom
    // (fetch, link-shared, the app's steps with the migration's bookkeeping and the
    // validate-boot + dump pair, switch), each step a small future over the same borrowed
    // release, user and environment. The steps that stand alone are their own functions
    // (`boot_check`, `take_dump`, `switch`); cutting the sequence would only pass those borrows
    // around and hide the order, which is what a reader of a deploy needs to see.
    async fn build_release(
        &self,
        p: &mut Progress,
        (app, spec, prepared, branch, at): (&str, &AppSpec, &Prepared, &str, Option<&str>),
        (dirs, data): (&AppDirs, &AppData),
        id: u64,
        migrating: &mut Option<PathBuf>,
    ) -> Result<String, DeployError> {
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
                    self.machine.processes(),
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
                        self.machine.processes(),
                        &argv(&["git", "merge-base", "--is-ancestor", at, "HEAD"]),
                        &release,
                        quiet,
                        user,
                        OWN_LIMIT,
                    )
                    .await;
                    if !on_branch.ok {
                        let refused = DeployError::NotOnBranch {
                            commit: at.to_string(),
                            branch: branch.to_string(),
                            repo: spec.repo.clone(),
                        };
                        return Err((refused.to_string(), tail));
                    }
                    let checkout = runner::run(
                        self.machine.processes(),
                        &argv(&[
                            "git",
                            "-c",
                            "advice.detachedHead=false",
                            "checkout",
                            "--quiet",
                            "--detach",
                            at,
                        ]),
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
                    self.machine.processes(),
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
            .await
            .map_err(DeployError::Step)?;
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
            data.fresh_release(id).map_err(|e| fail(e.to_string()))?;
            let env_path = data.env_file(id);
            let mut file = private::create_private(&env_path).map_err(|e| fail(e.into()))?;
            std::io::Write::write_all(&mut file, units::env_file(&prepared.env).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| (format!("write {}: {e}", env_path.display()), String::new()))?;
            Ok(out)
        })
        .await
        .map_err(DeployError::Step)?;

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
                    // never touched the database (see `interrupted_migration`). Without the
                    // record a migration cut off by a crash could not be put back: no record,
                    // no migration.
                    let (a, d) = (app.to_string(), dump.display().to_string());
                    self.state
                        .call(move |s| s.set_release_facts(&a, id, None, Some(&d)))
                        .await
                        .map_err(|source| DeployError::RecordDump { id, source })?;
                    *migrating = Some(dump.clone());
                }
            }
            if let Some(command) = command {
                let (release, env) = (&release, &env);
                p.step_live(name, command, |out| async move {
                    let cmd = argv(&["/bin/sh", "-c", command]);
                    ran_step(
                        runner::run_live(
                            self.machine.processes(),
                            &cmd,
                            release,
                            env,
                            user,
                            limit,
                            &out,
                        )
                        .await,
                    )
                })
                .await
                .map_err(DeployError::Step)?;
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
                        work: Box::pin(take_dump(self.machine.processes(), dump, prepared)),
                    });
                }
                for done in p.steps(work).await {
                    done.map_err(DeployError::Step)?;
                }
            }
        }

        let previous = dirs.live();
        self.switch(p, app, spec, (dirs, data), id, previous)
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
            .map_err(|e| (e.to_string(), String::new()))?;
        let service = transient::properties(&pair.service, &pair.service_text)
            .map_err(|e| (e.to_string(), String::new()))?;
        let units = StopOnDrop {
            machine: self.machine.clone(),
            units: vec![pair.service.clone(), pair.socket.clone()],
        };
        let result = async {
            self.machine
                .systemd()
                .start_transient(&pair.socket, &socket, &[(pair.service.clone(), service)])
                .await
                .map_err(|e| e.to_string())?;
            let probe = HealthSpec {
                http: Some(health_url(&listen, &spec.service.health)),
                ..HealthSpec::default()
            };
            self.machine
                .health()
                .check(&probe, spec.service.health_within())
                .await
                .map_err(|e| format!("health check of the new release failed: {e}"))
        }
        .await;
        let journal = if result.is_err() {
            journal_tail(self.machine.processes(), &pair.service).await
        } else {
            String::new()
        };
        units.stop().await;
        result
            .map(|()| ((), String::new()))
            .map_err(|e| (e, journal))
    }

    /// The pre-migrate dump of release `id` in strackt's state: there already, or taken over
    /// (and recorded) from where a release made before kept it; `None` when it has none.
    ///
    /// # Errors
    /// An old dump that cannot be taken over safely.
    pub(super) async fn dump_of(
        &self,
        app: &str,
        dirs: &AppDirs,
        data: &AppData,
        id: u64,
    ) -> Result<Option<PathBuf>, DeployError> {
        // In strackt's root-only state: no other user can put a link there, a path will do.
        let dump = data.dump(id);
        if dump.is_file() {
            return Ok(Some(dump));
        }
        if !dirs.has_legacy(id, layout::DUMP) {
            return Ok(None);
        }
        let (d, to, data) = (dirs.clone(), dump.clone(), data.clone());
        tokio::task::spawn_blocking(move || {
            private::private_dir(&data.release(id)).map_err(DeployError::Host)?;
            layout::adopt_legacy(&d, id, layout::DUMP, &to)
        })
        .await?
        .map_err(|e| DeployError::OldDump {
            id,
            source: Box::new(e),
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
}
