//! Restoring a backup run onto this server: checked first, then the app stopped, its database
//! and shared files put back from the run's snapshots (through strackt's own scratch, never
//! the app's tree), and the recorded commit redeployed.

use super::*;

impl<M: Machine> Backups<M> {
    /// Start restoring run `run` of `app` onto this server: one tracked operation that checks
    /// everything first, stops the app, puts the database and files back, and redeploys the
    /// commit recorded with the run (the branch tip with `latest`, or when none was recorded).
    ///
    /// # Errors
    /// Unknown app, an operation on the app already running. Everything else is recorded in
    /// the operation — before the app is stopped whenever it can be known before.
    pub async fn start_restore(
        self: &Arc<Self>,
        app: &str,
        run: &str,
        latest: bool,
    ) -> Result<i64, BackupError> {
        let def = self.load()?;
        let (spec, app_spec) = spec_of(&def, app)?;
        let (claim, mut p) = self
            .deployer
            .begin("restore", app)
            .await
            .map_err(BackupError::Deploy)?;
        let id = p.id();
        let (me, app, run) = (self.clone(), app.to_string(), run.to_string());
        tokio::spawn(async move {
            let _claim = claim;
            // The operations log records text.
            let result = me
                .put_back(&mut p, (&app, &run, latest), &spec, &app_spec, &def)
                .await
                .map_err(|e| e.to_string());
            p.finish(&result).await;
        });
        Ok(id)
    }

    // Whole on purpose (~150 lines): check → stop → restore → redeploy (or restart on what
    // the app had) is one sequence whose order is the safety argument (nothing touched before
    // every check passed, the app back up however the restore ends); the steps share the
    // repository, the snapshots and the scratch paths it opens.
    pub(super) async fn put_back(
        &self,
        p: &mut Progress,
        (app, run, latest): (&str, &str, bool),
        spec: &BackupSpec,
        app_spec: &crate::definition::AppSpec,
        def: &ValidatedDefinition,
    ) -> Result<String, BackupError> {
        // Everything that can fail without touching the server, first.
        let (repo, db, snaps, at, code) = step(p, "check", run, async {
            let repo = self.repo(spec)?;
            repo.probe().await?;
            let snaps = repo
                .snapshots(
                    &["strackt".into(), format!("app={app}"), format!("run={run}")],
                    None,
                )
                .await?;
            if snaps.is_empty() {
                return Err(BackupError::NoRun {
                    run: run.to_string(),
                    app: app.to_string(),
                    location: repo.location.clone(),
                });
            }
            let db = resolve_database(app_spec, &self.secrets).map_err(BackupError::Deploy)?;
            let recorded = group_runs(&snaps)
                .into_iter()
                .find(|r| r.run == run)
                .and_then(|r| r.commit);
            let (at, said) = code_to_deploy(recorded, latest, &app_spec.branch);
            // The code must be there before the app is stopped and its data replaced.
            if let Some(c) = &at {
                self.deployer
                    .check_commit(app, app_spec, c)
                    .await
                    .map_err(BackupError::Deploy)?;
            }
            Ok(((repo, db, snaps, at, said.clone()), said))
        })
        .await?;
        let by_kind = |kind: &str| snaps.iter().find(|s| s.tag("kind") == Some(kind)).cloned();

        let units = crate::deploy::serving_units(app, app_spec);
        let stopped = step(p, "stop", &units.join(" "), async {
            let mut stopped = Vec::new();
            for unit in &units {
                let state = self.machine().systemd().unit_state(unit).await?;
                if state.load_state == "loaded" {
                    self.machine()
                        .systemd()
                        .run_job(JobKind::Stop, unit)
                        .await
                        .map_err(|source| BackupError::Stop {
                            unit: unit.clone(),
                            source,
                        })?;
                    stopped.push(unit.clone());
                }
            }
            let log = stopped.iter().map(|u| format!("{u} stopped\n")).collect();
            Ok((stopped, log))
        })
        .await?;

        // One after the other: restic restore already keeps every core busy (database and
        // files side by side measured slower than in turn: 31 s against 28 s for 1.3 GB, with
        // the database then streamed by `restic dump`).
        // The dump comes back as a file, kept until the redeploy has made it the new
        // release's pre-migrate dump (it is the database as restored): in strackt's own state,
        // on the filesystem the release's private files are on, never in the app's tree.
        let restore_dir = self.deployer.app_data(app).restore();
        let scratch = restore_dir.join(format!("db-{}", p.id()));
        let files_scratch = restore_dir.join(format!("files-{}", p.id()));
        let mut dump = None;
        let restored = async {
            // Another operation on this app cannot run meanwhile (the claim): what is in
            // restore/ is a killed restore's leftovers.
            let r = restore_dir.clone();
            off_thread(move || {
                crate::host::private::emptied_private_dir(&r).map_err(BackupError::Host)
            })
            .await?;
            if let (Some(snap), Some(db)) = (by_kind("database"), &db) {
                let file = snap
                    .paths
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("/{app}.pgdump"));
                dump = Some(
                    p.step(
                        "restore-database",
                        &format!("{} {file}", snap.short_id),
                        restore_database(
                            self.machine().processes(),
                            &repo,
                            &snap,
                            &file,
                            &scratch,
                            db,
                        ),
                    )
                    .await
                    .map_err(BackupError::recorded)?,
                );
            }
            if let Some(snap) = by_kind("files") {
                let shared = Path::new(&app_spec.path).join("shared");
                step(
                    p,
                    "restore-files",
                    &format!("{} → {}", snap.short_id, shared.display()),
                    async {
                        restore_files(
                            &repo,
                            &snap,
                            &files_scratch,
                            &shared,
                            &spec.paths,
                            app_spec.user.as_deref(),
                        )
                        .await
                        .map(|out| ((), out))
                    },
                )
                .await?;
            }
            Ok::<(), BackupError>(())
        }
        .await;
        let deployed = match restored {
            Ok(()) => self
                .deployer
                .redeploy(p, app, def, dump, at.as_deref())
                .await
                .map_err(BackupError::Deploy),
            Err(e) => {
                // Put the app back up on what it had (the database restore is one transaction).
                for unit in stopped.iter().rev() {
                    if let Err(e) = self.machine().systemd().run_job(JobKind::Start, unit).await {
                        tracing::error!("restore of {app} failed; starting {unit} again: {e}");
                    }
                }
                Err(e)
            }
        };
        // Scratch of strackt's own, root-only: a leftover is emptied by the next restore
        // (`emptied_private_dir` above), and the restore's outcome does not depend on it.
        let _ = off_thread(move || {
            crate::host::private::remove_private(&scratch).map_err(BackupError::Host)
        })
        .await;
        Ok(format!(
            "restored {app} from backup {run} ({code}); {}",
            deployed?
        ))
    }
}

/// Which code a restore deploys: the commit `recorded` with the run, or the tip of `branch`
/// with `latest` or when the run recorded none; and how to say so.
pub(super) fn code_to_deploy(
    recorded: Option<String>,
    latest: bool,
    branch: &str,
) -> (Option<String>, String) {
    match (recorded, latest) {
        (Some(c), false) => {
            let said = format!("redeploys commit {c}, live when the run was taken");
            (Some(c), said)
        }
        (Some(c), true) => (
            None,
            format!("--latest: redeploys the tip of {branch} (the run was taken at {c})"),
        ),
        (None, true) => (None, format!("--latest: redeploys the tip of {branch}")),
        (None, false) => (
            None,
            format!("no commit was recorded with this run (an older strackt, or no release was live): redeploys the tip of {branch}"),
        ),
    }
}

/// Restore the database from the dump `file` of `snap`: first the file, with `restic restore`
/// into `scratch`, a new root-only directory in strackt's state (the caller removes it), then
/// `pg_restore` from it.
/// Returns the dump's path. `restic dump | pg_restore` needs no disk, but `restic dump`
/// fetches the file's chunks one request at a time: 12.6 s for a 330 MB dump from a local S3
/// server, where `restic restore` (whole packs, in parallel) takes 3.0 s.
async fn restore_database(
    p: &impl crate::host::processes::Processes,
    repo: &Repo<impl crate::host::processes::Processes>,
    snap: &Snapshot,
    file: &str,
    scratch: &Path,
    db: &BTreeMap<String, String>,
) -> Result<(PathBuf, String), (String, String)> {
    let fail = |e: BackupError| (e.to_string(), String::new());
    let s = scratch.to_path_buf();
    off_thread(move || crate::host::private::fresh_private_dir(&s).map_err(BackupError::Host))
        .await
        .map_err(fail)?;
    let out = repo
        .restore(&snap.id, scratch, Some(file))
        .await
        .map_err(fail)?;
    let dump = scratch.join(file.trim_start_matches('/'));
    // A link restored from the snapshot would have pg_restore, as root, read what it names: only
    // a regular file is taken. restic gives it the snapshot's mode; it becomes a release's
    // pre-migrate dump (0600).
    let regular = crate::host::private::set_private_file_mode(&dump, 0o600)
        .map_err(|e| fail(BackupError::Host(e)))?;
    if !regular {
        return Err(fail(BackupError::NotAFile {
            file: file.to_string(),
            snapshot: snap.short_id.clone(),
        }));
    }
    let ((), text) = crate::deploy::database::restore(p, &dump, db).await?;
    Ok((dump, format!("{out}{text}")))
}

/// Restore the files snapshot into `scratch`, a new root-only directory in strackt's state
/// (never in the app's tree: its user could swap a scratch there for a link, and restic, as
/// root, would write through it), then swap each backed-up path in (old content removed),
/// owned by the app's user; `scratch` is removed afterwards, whatever happened. The file-tree
/// work (an uploads directory can be millions of files) runs off the daemon's single thread,
/// which also answers the status endpoint and pings the watchdog.
async fn restore_files(
    repo: &Repo<impl crate::host::processes::Processes>,
    snap: &Snapshot,
    scratch: &Path,
    shared: &Path,
    paths: &[String],
    user: Option<&str>,
) -> Result<String, BackupError> {
    let s = scratch.to_path_buf();
    off_thread(move || crate::host::private::fresh_private_dir(&s).map_err(BackupError::Host))
        .await?;
    let restored = repo.restore(&snap.id, scratch, None).await;
    let owner = user.and_then(crate::deploy::runner::RunAs::lookup);
    let (s, shared, paths, taken) = (
        scratch.to_path_buf(),
        shared.to_path_buf(),
        paths.to_vec(),
        snap.paths.clone(),
    );
    let swapped = off_thread(move || {
        let swapped = restored.and_then(|out| {
            swap_in(&s, &shared, &paths, &taken, owner.as_ref()).map(|log| format!("{out}{log}"))
        });
        let removed = crate::host::private::remove_private(&s).map_err(BackupError::Host);
        let swapped = swapped?;
        removed?;
        Ok(swapped)
    })
    .await?;
    Ok(swapped)
}

/// Move each of `paths` (relative to `shared`) from the restored tree in `scratch` into place;
/// `taken` are the snapshot's paths as they were on the server that took it. The app's user
/// can change `shared/` (and what was restored with its ids), so all of it goes through
/// [`crate::host::tree`]: no link there is followed, and the tree handed to `owner` is walked
/// through descriptors.
fn swap_in(
    scratch: &Path,
    shared: &Path,
    paths: &[String],
    taken: &[String],
    owner: Option<&crate::deploy::runner::RunAs>,
) -> Result<String, BackupError> {
    let owner = owner.map(|o| Owner {
        uid: o.uid,
        gid: o.gid,
    });
    let fail = BackupError::Tree;
    let scratch = Dir::open(scratch).map_err(fail)?;
    // On a fresh server the app's directory comes with this restore: root's, as the deploy
    // makes it; `shared/` the app's user's.
    let (Some(app), Some(name)) = (shared.parent(), shared.file_name()) else {
        return Err(BackupError::NoParent(shared.to_path_buf()));
    };
    let shared = Dir::create_all(app, 0o755, Owner::process())
        .and_then(|d| d.create_dirs(name, 0o755, owner.unwrap_or_else(Owner::process)))
        .map_err(fail)?;
    let mut log = String::new();
    for rel in paths {
        // The app's shared directory may live elsewhere here than where the snapshot was taken.
        let Some(orig) = taken
            .iter()
            .find(|p| p.ends_with(&format!("/shared/{rel}")))
        else {
            log.push_str(&format!("{rel}: not in this backup, left as it is\n"));
            continue;
        };
        let from = Path::new(orig.trim_start_matches('/'));
        let to = Path::new(rel);
        let (Some(from_dir), Some(from_name), Some(to_dir), Some(to_name)) =
            (from.parent(), from.file_name(), to.parent(), to.file_name())
        else {
            return Err(BackupError::NotInShared(rel.clone()));
        };
        let from_dir = scratch.open_dir(from_dir).map_err(fail)?;
        let to_dir = shared
            .create_dirs(to_dir, 0o755, owner.unwrap_or_else(Owner::process))
            .map_err(fail)?;
        let mut old = std::ffi::OsString::from(".");
        old.push(to_name);
        old.push(".pre-restore");
        // A killed restore's leftover: when it cannot be removed, moving aside below fails and
        // says why, so this failure is not lost.
        let _ = to_dir.remove(&old);
        if to_dir.kind(to_name).map_err(fail)?.is_some() {
            to_dir
                .rename(to_name, &to_dir, &old)
                .map_err(|source| BackupError::MoveAside {
                    rel: rel.clone(),
                    source,
                })?;
        }
        // Renamed when strackt's state and `shared/` are on one filesystem, copied otherwise.
        let notes = from_dir
            .move_to(from_name, &to_dir, to_name)
            .map_err(|source| BackupError::MoveIn {
                rel: rel.clone(),
                source,
            })?;
        // The restore is done; the old content left behind takes space in `shared/` until
        // the next restore of the path removes it, so the log says so.
        if let Err(e) = to_dir.remove(&old) {
            // `e` names the path (`remove …/.NAME.pre-restore: …`).
            log.push_str(&format!("{rel}: the old content is left behind: {e}\n"));
        }
        if let Some(owner) = owner {
            // The snapshot may come from a server where the app's user has other ids.
            to_dir.chown_tree(to_name, owner).map_err(fail)?;
        }
        log.push_str(&format!("{rel}: restored from {orig}\n"));
        for note in notes {
            log.push_str(&format!("{rel}: {note}\n"));
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_in_moves_the_restored_tree_in_and_follows_no_link() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let d = tempfile::tempdir().expect("tempdir");
        let app = d.path().join("app");
        let victim = d.path().join("victim");
        std::fs::create_dir_all(victim.join("sub")).expect("mkdir");
        std::fs::write(victim.join("sub/keep"), "k").expect("write");
        let orig = "/srv/shop/shared/storage/uploads".to_string();
        let scratch = app.join(".scratch");
        let restored = scratch.join("srv/shop/shared/storage/uploads");
        std::fs::create_dir_all(restored.join("2026")).expect("mkdir");
        std::fs::write(restored.join("2026/photo.jpg"), "p").expect("write");
        let shared = app.join("shared");
        std::fs::create_dir_all(shared.join("storage/uploads")).expect("mkdir");
        std::fs::write(shared.join("storage/uploads/old.txt"), "o").expect("write");
        // The app's user's: writable by others, so even root's test run sees it as such.
        std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let me = crate::deploy::runner::RunAs {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            home: "/".into(),
            name: "me".into(),
        };
        let paths = ["storage/uploads".to_string()];
        let log = swap_in(
            &scratch,
            &shared,
            &paths,
            std::slice::from_ref(&orig),
            Some(&me),
        )
        .expect("swap in");
        assert!(log.contains("storage/uploads: restored from"), "{log}");
        let names = |p: &Path| {
            let mut n: Vec<String> = std::fs::read_dir(p)
                .expect("ls")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&shared.join("storage/uploads")), ["2026"]);
        assert_eq!(names(&shared.join("storage")), ["uploads"]);
        // shared/storage replaced by a link to a directory of root's: refused, nothing moved.
        std::fs::create_dir_all(restored.join("2027")).expect("mkdir");
        std::fs::rename(shared.join("storage"), app.join("storage.real")).expect("mv");
        symlink(&victim, shared.join("storage")).expect("symlink");
        let e = swap_in(
            &scratch,
            &shared,
            &paths,
            std::slice::from_ref(&orig),
            Some(&me),
        )
        .expect_err("refused");
        assert!(matches!(e, BackupError::Tree(_)), "{e:?}");
        assert!(e.to_string().contains("not followed"), "{e}");
        assert_eq!(names(&victim), ["sub"]);
        assert_eq!(names(&victim.join("sub")), ["keep"]);
        assert_eq!(names(&restored), ["2027"]);
    }
}
