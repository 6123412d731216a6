//! The official `restic` binary as strackt's backup engine (see ../shared/BACKUP-NOTES.md for
//! why not rustic_core): one repository per destination, the team key as its password, and
//! `--json` output read for progress and summaries. A run that makes no progress for
//! `stall_limit` is stopped with SIGINT (restic then writes no snapshot) instead of retrying
//! for a quarter of an hour.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::definition::BackupSpec;
use crate::deploy::preflight::{last_line, read_secret};
use crate::host::processes::{Cmd, End, Output, Processes};
use crate::host::tree::View;
use crate::host::HostError;
use crate::vault::Vault;

use super::error::BackupError;

/// Time limit of restic commands that only look (snapshots, cat config).
const LOOK_LIMIT: Duration = Duration::from_secs(60);
/// Time limit of a backup (and of the command it reads): none in practice, a stall stops it.
pub const BACKUP_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How much of restic's output is kept: all of a `snapshots --json` listing.
const KEEP: usize = 256 << 20;

mod output;

use output::Reading;
pub use output::{bytes, explain, Snapshot, Summary};

/// What one `restic backup` reads.
#[derive(Debug)]
pub enum Source {
    /// Files and directories, pinned where the app's user can change the way to them.
    Files(View),
    /// A command's output, stored as the file of this name.
    Stream(Cmd, String),
}

/// A restic repository at one destination, reached through `processes`.
#[derive(Debug, Clone)]
pub struct Repo<P> {
    processes: P,
    env: BTreeMap<String, String>,
    options: Vec<String>,
    /// Where it is, for messages (no credentials).
    pub location: String,
    /// Whether the destination refuses deletes (a receiver): retention is the receiver's job.
    pub append_only: bool,
}

/// Parse `KEY=VALUE` lines of a credentials secret.
fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

impl<P: Processes> Repo<P> {
    /// The repository of `spec`'s destination, opened with the vault's key.
    ///
    /// # Errors
    /// No key in the vault, or missing/malformed credentials — each naming what to fix.
    pub fn open(
        spec: &BackupSpec,
        vault: &Vault,
        secrets: &Path,
        cache: &Path,
        processes: P,
    ) -> Result<Repo<P>, BackupError> {
        if !vault.has_key() {
            return Err(BackupError::NoKey);
        }
        let mut env = BTreeMap::from([
            (
                "RESTIC_PASSWORD_FILE".to_string(),
                vault.key_path().display().to_string(),
            ),
            ("RESTIC_CACHE_DIR".to_string(), cache.display().to_string()),
            ("RESTIC_PROGRESS_FPS".to_string(), "1".to_string()),
        ]);
        let mut options = Vec::new();
        if let Some(s3) = &spec.to.s3 {
            let creds = key_values(
                &read_secret(secrets, &s3.credentials.secret).map_err(BackupError::Deploy)?,
            );
            for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                let v = creds.get(k).ok_or_else(|| BackupError::CredentialsLine {
                    secret: s3.credentials.secret.clone(),
                    key: k,
                })?;
                env.insert(k.to_string(), v.clone());
            }
            env.insert("AWS_DEFAULT_REGION".into(), s3.region.clone());
            let prefix = s3.prefix.trim_matches('/');
            let location = format!(
                "s3:{}/{}{}{prefix}",
                s3.endpoint.trim_end_matches('/'),
                s3.bucket,
                if prefix.is_empty() { "" } else { "/" }
            );
            env.insert("RESTIC_REPOSITORY".into(), location.clone());
            if s3.path_style {
                options.extend(["-o".to_string(), "s3.bucket-lookup=path".to_string()]);
            }
            return Ok(Repo {
                processes,
                env,
                options,
                location,
                append_only: false,
            });
        }
        let Some(r) = &spec.to.receiver else {
            return Err(BackupError::NoDestination);
        };
        let creds = read_secret(secrets, &r.credentials.secret).map_err(BackupError::Deploy)?;
        let (user, password) = creds
            .trim()
            .split_once(':')
            .ok_or_else(|| BackupError::CredentialsForm(r.credentials.secret.clone()))?;
        let url = r.url.trim_end_matches('/');
        let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
        env.insert(
            "RESTIC_REPOSITORY".into(),
            format!("rest:{scheme}://{user}:{password}@{rest}/{user}/"),
        );
        if let Some(ca) = &r.ca {
            options.extend(["--cacert".to_string(), ca.clone()]);
        }
        Ok(Repo {
            processes,
            env,
            options,
            location: format!("{url}/{user}/"),
            append_only: true,
        })
    }

    /// A repository named as restic names it (`s3:…`, `rest:https://…/`), opened with the key
    /// in `key_file` — a fresh server's rebuild, before anything is in the vault or the
    /// definition. `credentials` is the text of a credentials file: `AWS_…=…` lines for S3,
    /// `USER:PASSWORD` for a receiver.
    ///
    /// # Errors
    /// An unknown scheme, or credentials that do not fit it.
    pub fn at(
        location: &str,
        key_file: &Path,
        credentials: Option<&str>,
        options: Vec<String>,
        cache: &Path,
        processes: P,
    ) -> Result<Repo<P>, BackupError> {
        let mut env = BTreeMap::from([
            (
                "RESTIC_PASSWORD_FILE".to_string(),
                key_file.display().to_string(),
            ),
            ("RESTIC_CACHE_DIR".to_string(), cache.display().to_string()),
        ]);
        let repository = if location.starts_with("s3:") {
            let creds = key_values(credentials.unwrap_or_default());
            for k in [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_DEFAULT_REGION",
            ] {
                if let Some(v) = creds.get(k) {
                    env.insert(k.to_string(), v.clone());
                }
            }
            location.to_string()
        } else if let Some(url) = location.strip_prefix("rest:") {
            let (scheme, rest) = url
                .split_once("://")
                .ok_or_else(|| BackupError::RestLocation(location.to_string()))?;
            match credentials.map(str::trim) {
                Some(c) if c.contains(':') => format!("rest:{scheme}://{c}@{rest}"),
                Some(_) => return Err(BackupError::CredentialsFile),
                None => location.to_string(),
            }
        } else {
            return Err(BackupError::Location(location.to_string()));
        };
        env.insert("RESTIC_REPOSITORY".into(), repository);
        Ok(Repo {
            processes,
            env,
            options,
            location: location.to_string(),
            append_only: location.starts_with("rest:"),
        })
    }

    /// A repository in a local directory (the receiver's own storage), opened with the key.
    pub fn local(path: &Path, vault: &Vault, cache: &Path, processes: P) -> Repo<P> {
        let location = path.display().to_string();
        Repo {
            processes,
            env: BTreeMap::from([
                ("RESTIC_REPOSITORY".to_string(), location.clone()),
                (
                    "RESTIC_PASSWORD_FILE".to_string(),
                    vault.key_path().display().to_string(),
                ),
                ("RESTIC_CACHE_DIR".to_string(), cache.display().to_string()),
            ]),
            options: Vec::new(),
            location,
            append_only: false,
        }
    }

    fn command<S: AsRef<str>>(&self, args: &[S], limit: Duration) -> Cmd {
        Cmd::new("restic", limit)
            .env("HOME", "/root")
            .envs(&self.env)
            .args(&self.options)
            .args(args)
            .keep(KEEP)
    }

    /// The explained failure of a restic command that ended as `out`, or its start failing.
    fn failed(&self, what: &str, out: Result<&Output, HostError>) -> BackupError {
        match out {
            Err(e) if matches!(&e, HostError::Spawn { program, .. } if program == "restic") => {
                BackupError::NoRestic(e)
            }
            Err(e) => BackupError::Host(e),
            Ok(out) => match &out.end {
                End::TimedOut(limit) => explain(
                    &self.location,
                    &format!("restic {what} did not finish within {}s", limit.as_secs()),
                ),
                _ => explain(&self.location, &out.tail),
            },
        }
    }

    /// Run a restic command to its end; `Ok(stdout)` or the explained failure.
    async fn run(&self, args: &[&str], limit: Duration) -> Result<String, BackupError> {
        let what = args.first().unwrap_or(&"");
        match self.processes.run(self.command(args, limit)).await {
            Ok(out) if out.success() => Ok(out.stdout),
            Ok(out) => Err(self.failed(what, Ok(&out))),
            Err(e) => Err(self.failed(what, Err(e))),
        }
    }

    /// Whether the repository answers and the key opens it, within 20 s (restic itself retries
    /// an unreachable destination for minutes).
    ///
    /// # Errors
    /// A wrong key, an unreachable destination, no repository.
    pub async fn probe(&self) -> Result<(), BackupError> {
        self.run(&["cat", "config"], Duration::from_secs(20))
            .await
            .map(|_| ())
    }

    /// Create the repository unless it exists; `true` when it was created.
    ///
    /// # Errors
    /// A wrong key, an unreachable destination.
    pub async fn ensure(&self) -> Result<bool, BackupError> {
        match self.run(&["cat", "config"], LOOK_LIMIT).await {
            Ok(_) => Ok(false),
            Err(BackupError::NoRepository { .. }) => {
                self.run(&["init"], LOOK_LIMIT).await.map(|_| true)
            }
            Err(e) => Err(e),
        }
    }

    /// Snapshots with all of `tags` (and of `host`, if given), oldest first.
    ///
    /// # Errors
    /// A wrong key, an unreachable destination, no repository.
    pub async fn snapshots(
        &self,
        tags: &[String],
        host: Option<&str>,
    ) -> Result<Vec<Snapshot>, BackupError> {
        let filter = tags.join(",");
        let mut args = vec!["snapshots", "--json", "--tag", &filter];
        if let Some(h) = host {
            args.extend(["--host", h]);
        }
        let out = self.run(&args, LOOK_LIMIT).await?;
        let mut list: Vec<Snapshot> = serde_json::from_str(out.trim())
            .map_err(|e| BackupError::Output(format!("restic snapshots: {e}")))?;
        list.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(list)
    }

    /// `restic backup` of `source`, tagged. Progress lines go to `live`; no progress for
    /// `stall_limit` stops it.
    ///
    /// # Errors
    /// restic failing, the source failing (its snapshot is then never written: the pipe kills
    /// restic before the end of the stream), a stall.
    pub async fn backup(
        &self,
        source: Source,
        tags: &[String],
        host: &str,
        live: &Arc<Mutex<String>>,
        stall_limit: Duration,
    ) -> Result<Summary, BackupError> {
        let mut args: Vec<String> = vec![
            "backup".into(),
            "--json".into(),
            "--host".into(),
            host.into(),
        ];
        for t in tags {
            args.extend(["--tag".to_string(), t.clone()]);
        }
        let (view, source) = match source {
            Source::Stream(cmd, name) => {
                args.extend(["--stdin".to_string(), "--stdin-filename".to_string(), name]);
                (None, Some(cmd))
            }
            Source::Files(view) => {
                args.push("--".into());
                args.extend(view.paths().iter().map(|p| p.display().to_string()));
                (Some(view), None)
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let mut restic = self.command(&args, BACKUP_LIMIT).live(tx).stop_on(stopped);
        if let Some(view) = view {
            restic = restic.view(view);
        }
        let work = async {
            match source {
                Some(source) => self
                    .processes
                    .pipe(source, restic)
                    .await
                    .map(|p| (Some(p.source), p.sink)),
                None => self.processes.run(restic).await.map(|o| (None, o)),
            }
        };
        tokio::pin!(work);
        let mut seen = Reading::new(live);
        let mut stalled = false;
        // An interval, not a sleep per turn: restic prints about once a second, which would
        // restart a sleep every time and never look at a frozen status.
        let mut look = tokio::time::interval(Duration::from_secs(1));
        let ended = loop {
            tokio::select! {
                done = &mut work => break done,
                Some(chunk) = rx.recv() => seen.feed(&chunk),
                _ = look.tick() => {
                    if seen.last_change.elapsed() > stall_limit && !stalled {
                        stalled = true;
                        // SIGINT: restic stops cleanly and writes no snapshot. The send fails
                        // only when restic already ended (nobody watches): nothing to stop.
                        let _ = stop.send(true);
                    }
                }
            }
        };
        // What it printed last (its summary) may still be on its way.
        while let Ok(chunk) = rx.try_recv() {
            seen.feed(&chunk);
        }
        let (source, restic) = ended.map_err(|e| self.failed("backup", Err(e)))?;
        if let Some(src) = source.filter(|_| restic.end == End::Cut) {
            return Err(BackupError::Dump {
                failure: src.failure().unwrap_or_default(),
                line: last_line(&src.stderr).to_string(),
            });
        }
        if stalled {
            return Err(explain(
                &self.location,
                &format!(
                    "{}\nstopped: no progress for {}s",
                    restic.stderr,
                    stall_limit.as_secs()
                ),
            ));
        }
        match seen.summary {
            Some(s) if restic.success() => Ok(s),
            _ => Err(self.failed("backup", Ok(&restic))),
        }
    }

    /// Apply the retention policy to strackt's snapshots (of `app` and of `host`, if given) and
    /// prune, after removing locks left by runs that died.
    ///
    /// # Errors
    /// restic failing.
    pub async fn forget(
        &self,
        app: Option<&str>,
        host: Option<&str>,
        keep: &[String],
    ) -> Result<String, BackupError> {
        self.run(&["unlock"], LOOK_LIMIT).await?;
        let tags = match app {
            Some(app) => format!("strackt,app={app}"),
            None => "strackt".to_string(),
        };
        let mut args = vec!["forget", "--prune", "--tag", &tags];
        if let Some(h) = host {
            args.extend(["--host", h]);
        }
        args.extend(keep.iter().map(String::as_str));
        self.run(&args, Duration::from_secs(6 * 3600)).await
    }

    /// Add `add` to the snapshots of `host` matching any of the tag lists `filters`; returns
    /// how many were changed. (restic rewrites them: their ids change, their content not.)
    ///
    /// # Errors
    /// restic failing.
    pub async fn add_tags(
        &self,
        host: &str,
        filters: &[String],
        add: &[String],
    ) -> Result<usize, BackupError> {
        let mut args = vec!["tag", "--host", host];
        for f in filters {
            args.extend(["--tag", f]);
        }
        for a in add {
            args.extend(["--add", a]);
        }
        let out = self.run(&args, LOOK_LIMIT).await?;
        Ok(out
            .lines()
            .find_map(|l| {
                l.trim()
                    .to_lowercase()
                    .strip_prefix("modified tags on ")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0))
    }

    /// Remove the snapshots `ids` (their data goes at the next prune).
    ///
    /// # Errors
    /// restic failing.
    pub async fn forget_ids(&self, ids: &[&str]) -> Result<String, BackupError> {
        let mut args = vec!["forget"];
        args.extend_from_slice(ids);
        self.run(&args, LOOK_LIMIT).await
    }

    /// Forget exactly the snapshots `ids` and prune, after removing stale locks (the
    /// receiver's retention, which decides the ids itself).
    ///
    /// # Errors
    /// restic failing.
    pub async fn forget_ids_and_prune(&self, ids: &[&str]) -> Result<String, BackupError> {
        self.run(&["unlock"], LOOK_LIMIT).await?;
        let mut args = vec!["forget", "--prune"];
        args.extend_from_slice(ids);
        self.run(&args, Duration::from_secs(6 * 3600)).await
    }

    /// `restic check` reading `subset` of the data (e.g. `5%`).
    ///
    /// # Errors
    /// restic finding problems, or failing.
    pub async fn check(&self, subset: &str) -> Result<String, BackupError> {
        let arg = format!("--read-data-subset={subset}");
        self.run(&["check", &arg], Duration::from_secs(6 * 3600))
            .await
    }

    /// The content of `file` in snapshot `id` (a small file: it is held in memory).
    ///
    /// # Errors
    /// restic failing, no such file.
    pub async fn dump(&self, id: &str, file: &str) -> Result<String, BackupError> {
        self.run(&["dump", id, file], LOOK_LIMIT).await
    }

    /// Restore snapshot `id` under `target`: all of it, or only the file `include`.
    ///
    /// # Errors
    /// restic failing.
    pub async fn restore(
        &self,
        id: &str,
        target: &Path,
        include: Option<&str>,
    ) -> Result<String, BackupError> {
        let t = target.display().to_string();
        let mut args = vec!["restore", id, "--target", &t];
        if let Some(file) = include {
            args.extend(["--include", file]);
        }
        self.run(&args, Duration::from_secs(12 * 3600)).await
    }
}

#[cfg(test)]
mod tests;
