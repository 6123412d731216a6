//! The official `restic` binary as strackt's backup engine (see ../shared/BACKUP-NOTES.md for
//! why not rustic_core): one repository per destination, the team key as its password, and
//! `--json` output read for progress and summaries. A run that makes no progress for
//! `stall_limit` is stopped with SIGINT (restic then writes no snapshot) instead of retrying
//! for a quarter of an hour.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use super::vault::Vault;
use crate::definition::BackupSpec;
use crate::deploy::preflight::{last_line, read_secret};

/// Time limit of restic commands that only look (snapshots, cat config).
const LOOK_LIMIT: Duration = Duration::from_secs(60);

/// A restic repository at one destination.
#[derive(Debug, Clone)]
pub struct Repo {
    env: BTreeMap<String, String>,
    options: Vec<String>,
    /// Where it is, for messages (no credentials).
    pub location: String,
    /// Whether the destination refuses deletes (a receiver): retention is the receiver's job.
    pub append_only: bool,
}

/// A snapshot as restic lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Full id.
    pub id: String,
    /// Short id.
    #[serde(default)]
    pub short_id: String,
    /// When (RFC 3339).
    pub time: String,
    /// Server.
    #[serde(default)]
    pub hostname: String,
    /// Paths (for a streamed dump: the file name).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Tags (`strackt`, `app=…`, `run=…`, `trigger=…`, `kind=…`).
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Snapshot {
    /// The value of tag `key=…` (the first, if there are several).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags_of(key).next()
    }

    /// Every value of tag `key=…`.
    pub fn tags_of<'a, 'k>(&'a self, key: &'k str) -> impl Iterator<Item = &'a str> + use<'a, 'k> {
        self.tags
            .iter()
            .filter_map(move |t| t.strip_prefix(key)?.strip_prefix('='))
    }
}

/// What one `restic backup` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The snapshot written.
    #[serde(default)]
    pub snapshot_id: String,
    /// Bytes read from the source.
    #[serde(default)]
    pub total_bytes_processed: u64,
    /// Bytes added to the repository (after deduplication and compression).
    #[serde(default)]
    pub data_added: u64,
    /// Files read.
    #[serde(default)]
    pub total_files_processed: u64,
}

/// A human size.
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.2} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n} B"),
    }
}

/// Turn restic's words into what the user should do.
pub fn explain(location: &str, output: &str) -> String {
    const UNREACHABLE: &[&str] = &[
        "connection refused",
        "no such host",
        "dial tcp",
        "i/o timeout",
        "did not finish within",
        "stopped: no progress",
    ];
    let low = output.to_lowercase();
    let line_with = |words: &[&str]| {
        output
            .lines()
            .map(str::trim)
            .find(|l| words.iter().any(|w| l.to_lowercase().contains(w)))
            .unwrap_or_else(|| last_line(output))
            .to_string()
    };
    // Order matters: restic adds "Is there a repository…?" to a connection failure too.
    if low.contains("wrong password") || low.contains("no key found") {
        format!("the backup key does not open the repository at {location} (wrong key? `strackt backup key import` the team's key)")
    } else if UNREACHABLE.iter().any(|w| low.contains(w)) {
        format!(
            "the backup destination {location} is unreachable: {}",
            line_with(UNREACHABLE)
        )
    } else if low.contains("is there a repository at the following location")
        || low.contains("unable to open config file")
    {
        format!("no backup repository at {location} yet (nothing was backed up there)")
    } else {
        format!("restic at {location}: {}", line_with(&["fatal", "error"]))
    }
}

/// Parse `KEY=VALUE` lines of a credentials secret.
fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

impl Repo {
    /// The repository of `spec`'s destination, opened with the vault's key.
    ///
    /// # Errors
    /// No key in the vault, or missing/malformed credentials — each naming what to fix.
    pub fn open(
        spec: &BackupSpec,
        vault: &Vault,
        secrets: &Path,
        cache: &Path,
    ) -> Result<Repo, String> {
        if !vault.has_key() {
            return Err("this server has no backup key: run `strackt backup key init` (first server of the team) or `strackt backup key import`".into());
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
            let creds = key_values(&read_secret(secrets, &s3.credentials.secret)?);
            for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                let v = creds.get(k).ok_or_else(|| {
                    format!("secret `{}` has no {k}=… line", s3.credentials.secret)
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
                env,
                options,
                location,
                append_only: false,
            });
        }
        let Some(r) = &spec.to.receiver else {
            return Err("no destination".into());
        };
        let creds = read_secret(secrets, &r.credentials.secret)?;
        let (user, password) = creds
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("secret `{}` must be USER:PASSWORD", r.credentials.secret))?;
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
    ) -> Result<Repo, String> {
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
                .ok_or_else(|| format!("{location}: expected rest:https://HOST:PORT/NAME/"))?;
            match credentials.map(str::trim) {
                Some(c) if c.contains(':') => format!("rest:{scheme}://{c}@{rest}"),
                Some(_) => return Err("the receiver's credentials file holds USER:PASSWORD".into()),
                None => location.to_string(),
            }
        } else {
            return Err(format!(
                "{location}: the repository is s3:https://ENDPOINT/BUCKET/PREFIX or rest:https://HOST:PORT/NAME/"
            ));
        };
        env.insert("RESTIC_REPOSITORY".into(), repository);
        Ok(Repo {
            env,
            options,
            location: location.to_string(),
            append_only: location.starts_with("rest:"),
        })
    }

    /// A repository in a local directory (the receiver's own storage), opened with the key.
    pub fn local(path: &Path, vault: &Vault, cache: &Path) -> Repo {
        let location = path.display().to_string();
        Repo {
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

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("restic");
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .envs(&self.env)
            .args(&self.options)
            .args(args)
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    /// Run a restic command to its end; `Ok(stdout)` or the explained failure.
    async fn run(&self, args: &[&str], limit: Duration) -> Result<String, String> {
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("restic: {e} (install the `restic` package)"))?;
        match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(Ok(out)) => Err(explain(
                &self.location,
                &format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )),
            Ok(Err(e)) => Err(format!("restic: {e}")),
            Err(_) => Err(explain(
                &self.location,
                &format!(
                    "restic {} did not finish within {}s",
                    args.first().unwrap_or(&""),
                    limit.as_secs()
                ),
            )),
        }
    }

    /// Whether the repository answers and the key opens it, within 20 s (restic itself retries
    /// an unreachable destination for minutes).
    ///
    /// # Errors
    /// A wrong key, an unreachable destination, no repository.
    pub async fn probe(&self) -> Result<(), String> {
        self.run(&["cat", "config"], Duration::from_secs(20))
            .await
            .map(|_| ())
    }

    /// Create the repository unless it exists; `true` when it was created.
    ///
    /// # Errors
    /// A wrong key, an unreachable destination.
    pub async fn ensure(&self) -> Result<bool, String> {
        match self.run(&["cat", "config"], LOOK_LIMIT).await {
            Ok(_) => Ok(false),
            Err(e) if e.starts_with("no backup repository") => {
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
    ) -> Result<Vec<Snapshot>, String> {
        let filter = tags.join(",");
        let mut args = vec!["snapshots", "--json", "--tag", &filter];
        if let Some(h) = host {
            args.extend(["--host", h]);
        }
        let out = self.run(&args, LOOK_LIMIT).await?;
        let mut list: Vec<Snapshot> =
            serde_json::from_str(out.trim()).map_err(|e| format!("restic snapshots: {e}"))?;
        list.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(list)
    }

    /// `restic backup` of `paths` (or, with `stdin`, of a stream named `stdin_name`), tagged.
    /// Progress lines go to `live`; no progress for `stall_limit` stops it.
    ///
    /// # Errors
    /// restic failing, the source failing (its snapshot is then never written), a stall.
    pub async fn backup(
        &self,
        paths: &[String],
        stream: Option<(Command, String)>,
        tags: &[String],
        host: &str,
        live: &Arc<Mutex<String>>,
        stall_limit: Duration,
    ) -> Result<Summary, String> {
        let mut args: Vec<String> = vec![
            "backup".into(),
            "--json".into(),
            "--host".into(),
            host.into(),
        ];
        for t in tags {
            args.extend(["--tag".to_string(), t.clone()]);
        }
        let mut source = None;
        if let Some((cmd, name)) = stream {
            args.extend(["--stdin".to_string(), "--stdin-filename".to_string(), name]);
            source = Some(cmd);
        } else {
            args.push("--".into());
            args.extend(paths.iter().cloned());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut restic = self
            .command(&argv)
            .stdin(if source.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("restic: {e} (install the `restic` package)"))?;
        let restic_pid = restic.id().map(|p| Pid::from_raw(p as i32));

        // The stream: source stdout → restic stdin through this process, so a source that
        // fails is seen *before* restic is told the stream ended — restic is then killed and
        // writes no snapshot of a truncated dump.
        let pump = match (source, restic.stdin.take()) {
            (Some(mut cmd), Some(mut into)) => {
                let mut child = cmd
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("starting the dump: {e}"))?;
                let mut out = child.stdout.take().ok_or("dump has no stdout")?;
                let mut err = child.stderr.take().ok_or("dump has no stderr")?;
                Some(tokio::spawn(async move {
                    let copied = tokio::io::copy_buf(
                        &mut BufReader::with_capacity(1 << 20, &mut out),
                        &mut into,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("streaming the dump into restic: {e}"));
                    let mut errors = String::new();
                    let _ = err.read_to_string(&mut errors).await;
                    let status = child.wait().await.map_err(|e| e.to_string());
                    match (copied, status) {
                        (Ok(()), Ok(s)) if s.success() => {
                            drop(into); // end of stream: restic may now write the snapshot
                            Ok(())
                        }
                        (Ok(()), Ok(s)) => {
                            Err(format!("the dump failed ({s}): {}", last_line(&errors)))
                        }
                        (Err(e), _) | (_, Err(e)) => Err(e),
                    }
                }))
            }
            _ => None,
        };

        let stdout = restic.stdout.take().ok_or("restic has no stdout")?;
        let mut stderr = restic.stderr.take().ok_or("restic has no stderr")?;
        let err_task = tokio::spawn(async move {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s).await;
            s
        });
        let mut lines = BufReader::new(stdout).lines();
        let mut summary = None;
        let mut last_counters = None;
        let mut last_change = Instant::now();
        let mut stalled = false;
        let mut pump = pump;
        let mut pump_error = None;
        loop {
            tokio::select! {
                line = lines.next_line() => {
                    let Ok(Some(line)) = line else { break };
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                    match v["message_type"].as_str() {
                        Some("status") => {
                            // Scanning (totals growing), unchanged files (files_done) and
                            // reading (bytes_done) are all progress; only a frozen status is not.
                            let done = v["bytes_done"].as_u64().unwrap_or(0);
                            let counters = ["bytes_done", "files_done", "total_files", "total_bytes"]
                                .map(|k| v[k].as_u64().unwrap_or(0));
                            if last_counters != Some(counters) {
                                last_counters = Some(counters);
                                last_change = Instant::now();
                            }
                            let pct = v["percent_done"].as_f64().map(|p| format!(", {:.0}%", p * 100.0)).unwrap_or_default();
                            *live.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                                format!("{} read{pct}", bytes(done));
                        }
                        Some("summary") => summary = serde_json::from_value::<Summary>(v).ok(),
                        _ => {}
                    }
                }
                result = async { pump.as_mut().expect("guarded").await }, if pump.is_some() => {
                    pump = None;
                    if let Ok(Err(e)) | Err(e) = result.map_err(|e| e.to_string()) {
                        // Kill restic before it can see end-of-stream and commit a snapshot.
                        if let Some(pid) = restic_pid {
                            let _ = kill(pid, Signal::SIGKILL);
                        }
                        pump_error = Some(e);
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    if last_change.elapsed() > stall_limit && !stalled {
                        stalled = true;
                        // SIGINT: restic stops cleanly and writes no snapshot.
                        if let Some(pid) = restic_pid {
                            let _ = kill(pid, Signal::SIGINT);
                        }
                    }
                    if stalled && last_change.elapsed() > stall_limit + Duration::from_secs(30) {
                        if let Some(pid) = restic_pid {
                            let _ = kill(pid, Signal::SIGKILL);
                        }
                    }
                }
            }
        }
        let status = restic.wait().await.map_err(|e| e.to_string())?;
        let errors = err_task.await.unwrap_or_default();
        if let Some(e) = pump_error {
            return Err(e);
        }
        if stalled {
            return Err(explain(
                &self.location,
                &format!(
                    "{errors}\nstopped: no progress for {}s",
                    stall_limit.as_secs()
                ),
            ));
        }
        match summary {
            Some(s) if status.success() => Ok(s),
            _ => Err(explain(&self.location, &errors)),
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
    ) -> Result<String, String> {
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
    ) -> Result<usize, String> {
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
    pub async fn forget_ids(&self, ids: &[&str]) -> Result<String, String> {
        let mut args = vec!["forget"];
        args.extend_from_slice(ids);
        self.run(&args, LOOK_LIMIT).await
    }

    /// Forget exactly the snapshots `ids` and prune, after removing stale locks (the
    /// receiver's retention, which decides the ids itself).
    ///
    /// # Errors
    /// restic failing.
    pub async fn forget_ids_and_prune(&self, ids: &[&str]) -> Result<String, String> {
        self.run(&["unlock"], LOOK_LIMIT).await?;
        let mut args = vec!["forget", "--prune"];
        args.extend_from_slice(ids);
        self.run(&args, Duration::from_secs(6 * 3600)).await
    }

    /// `restic check` reading `subset` of the data (e.g. `5%`).
    ///
    /// # Errors
    /// restic finding problems, or failing.
    pub async fn check(&self, subset: &str) -> Result<String, String> {
        let arg = format!("--read-data-subset={subset}");
        self.run(&["check", &arg], Duration::from_secs(6 * 3600))
            .await
    }

    /// The content of `file` in snapshot `id` (a small file: it is held in memory).
    ///
    /// # Errors
    /// restic failing, no such file.
    pub async fn dump(&self, id: &str, file: &str) -> Result<String, String> {
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
    ) -> Result<String, String> {
        let t = target.display().to_string();
        let mut args = vec!["restore", id, "--target", &t];
        if let Some(file) = include {
            args.extend(["--include", file]);
        }
        self.run(&args, Duration::from_secs(12 * 3600)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_failures_are_told_apart() {
        let at = "s3:http://x/b";
        let refused = "Fatal: unable to open config file: Stat: Get \"http://x/b/config\": dial tcp 127.0.0.1:9000: connect: connection refused\nIs there a repository at the following location?\ns3:http://x/b";
        let e = explain(at, refused);
        assert!(
            e.starts_with(
                "the backup destination s3:http://x/b is unreachable: Fatal: unable to open"
            ),
            "{e}"
        );
        let missing = "Fatal: unable to open config file: Stat: The specified key does not exist.\nIs there a repository at the following location?";
        assert!(explain(at, missing).starts_with("no backup repository at"));
        let wrong = "Fatal: wrong password or no key found";
        assert!(explain(at, wrong).starts_with("the backup key does not open"));
    }

    #[test]
    fn keep_policy_becomes_forget_flags() {
        let keep = crate::definition::KeepPolicy {
            last: Some(4),
            daily: Some(7),
            ..Default::default()
        };
        assert_eq!(keep.restic_flags(), ["--keep-last=4", "--keep-daily=7"]);
    }
}
