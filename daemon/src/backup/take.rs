//! Taking one backup run: the commit live at the time, the run's parts (the database dump
//! streamed from `pg_dump`, the shared paths) as restic snapshots tagged with one `run=…`, the
//! server bundle after them, then the app's retention (`forget` by the definition's `keep`).
//!
//! Owns what one run writes to the repository: all of it or nothing (a failed run's snapshots
//! are forgotten again). It must not change the app (no unit stopped, no file written under
//! it) nor forget anything but this app's snapshots on this server; when it runs is
//! `schedule.rs`'s business, and the operation around it is `mod.rs`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::definition::BackupSpec;
use crate::deploy::preflight::resolve_database;
use crate::host::processes::Cmd;
use crate::host::{tree, Machine};
use crate::ops::{Progress, Step};
use restic::{bytes, Repo, Source, Summary};
use unchanged::Seen;

use super::error::BackupError;
use super::runs::RunTags;
use super::{is_commit, off_thread, restic, step, unchanged, Backups};

impl<M: Machine> Backups<M> {
    pub(super) async fn take(
        &self,
        p: &mut Progress,
        app: &str,
        spec: &BackupSpec,
        app_spec: &crate::definition::AppSpec,
        trigger: &str,
    ) -> Result<String, BackupError> {
        let repo = self.repo(spec)?;
        let run = self.run_name();
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(app)
            .filter(|s| s.location == repo.location && !repo.append_only);
        // The repository was written to by the last run: no need to look for it again.
        if seen.is_none() {
            step(p, "repository", &repo.location, async {
                let created = repo.ensure().await?;
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
            step(p, "retention", &keep.join(" "), async {
                repo.forget(Some(app), Some(&self.server), &keep)
                    .await
                    .map(|out| ((), out))
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
    pub(super) async fn live_commit(
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
        repo: &Repo<M::Processes>,
    ) -> Result<Vec<Part>, BackupError> {
        let db = if spec.database {
            Some(
                resolve_database(app_spec, &self.secrets)
                    .map_err(BackupError::Deploy)?
                    .ok_or_else(|| BackupError::NoDatabase(app.to_string()))?,
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
        // Pinned before anything is read: restic reads what this found, whatever the app's user
        // renames or links in `shared/` meanwhile.
        let view = if paths.is_empty() {
            None
        } else {
            let pin: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
            Some(off_thread(move || pinned(&pin)).await?)
        };
        // Both taken before anything is read: a change after this makes the next run read
        // again. A receiver cannot re-tag snapshots, so there every part is always read.
        let look = !repo.append_only;
        let walk = paths.clone();
        let (db_print, files_print) = tokio::join!(
            async {
                match &db {
                    Some(env) if look => unchanged::database(self.machine().processes(), env).await,
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
                source: Source::Stream(dump, format!("{app}.pgdump")),
                fingerprint: db_print,
            });
        }
        if let Some(view) = view {
            parts.push(Part {
                kind: "files",
                target: paths.join(" "),
                source: Source::Files(view),
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
        repo: &Repo<M::Processes>,
        seen: Option<&Seen>,
        tags: &RunTags<'_>,
        said: &mut Vec<String>,
        written: &mut Vec<String>,
    ) -> Result<BTreeMap<&'static str, String>, BackupError> {
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
            let tagged = step(
                p,
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
        // Each step's own failure, kept for its class (the log gets its words).
        let causes: Vec<Mutex<Option<BackupError>>> =
            read.iter().map(|_| Mutex::new(None)).collect();
        let steps: Vec<Step<'_, Summary>> = read
            .into_iter()
            .zip(&causes)
            .map(|(part, cause)| {
                let live = Arc::new(Mutex::new(String::new()));
                let tags = tags.of(part.kind);
                let work_live = live.clone();
                Step {
                    action: part.kind.to_string(),
                    target: part.target,
                    live,
                    work: Box::pin(async move {
                        repo.backup(
                            part.source,
                            &tags,
                            &self.server,
                            &work_live,
                            spec.stall_limit(),
                        )
                        .await
                        .map(|s| (s, String::new()))
                        .map_err(|e| {
                            let text = e.to_string();
                            *cause
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                            (text, String::new())
                        })
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
        if let Some(text) = failure {
            // The failure said is the first in order; the others were stopped because of the
            // one that failed, whose cause (and class) this is.
            let cause = causes
                .into_iter()
                .find_map(|c| {
                    c.into_inner()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                })
                .map(Box::new);
            return Err(BackupError::Step { text, cause });
        }
        Ok(fingerprints)
    }
}

/// `paths` pinned for restic ([`tree::View`]): each reached as [`unchanged::files`] reaches it
/// (the app's user can change these trees, so a link on the way is refused, never followed),
/// and restic started where every name on the way is root's, down to what was found here.
///
/// # Errors
/// A path with nothing there; a link on the way; I/O failures.
fn pinned(paths: &[PathBuf]) -> Result<tree::View, BackupError> {
    tree::View::pin(paths).map_err(|e| match tree::missing(&e) {
        Some(p) => BackupError::PathMissing(p.display().to_string()),
        None => BackupError::Tree(e),
    })
}

/// One snapshot of a run: its step name (and `kind=` tag), what it reads, and what restic
/// reads it from.
struct Part {
    kind: &'static str,
    target: String,
    source: Source,
    /// What it looks like now, to tell whether it changed since the last run.
    fingerprint: Option<String>,
}
