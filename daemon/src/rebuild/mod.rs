//! rebuild — `strackt rebuild`: a fresh server becomes a lost one again, from the server
//! bundle stored with its backups (see `backup::server`), the team key and the destination's
//! credentials.
//!
//! One tracked operation in the daemon, so it has live steps, a record in the history and the
//! same claims as deploys and restores: `check` (the key opens the repository, the server and
//! run exist, the bundle reads and its definition parses — a failure here changes nothing),
//! `put-back` (the key into the vault, the secrets, the definition with `latest` pinned to the
//! locked versions), `switch` (a pass of the reconcile loop builds and switches the
//! generation), then each app restored from its backup run through the restore path (or
//! deployed, without backups) and checked against the commit that was live, and `verify`
//! (the state digest equals the lost server's at that run). It owns that order and its
//! refusals; it must not write the host itself beyond strackt's own files (the pass and the
//! restores do the rest).

mod error;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::backup::restic::{Repo, Snapshot};
use crate::backup::server::{self, Bundle};
use crate::backup::Backups;
use crate::host::files::atomic_write;
use crate::host::{io_err, private, tree, HostError};
use crate::ops::{Outcome, Progress};
use crate::paths::Paths;
use crate::status::Request;
pub use error::RebuildError;

/// What `strackt rebuild` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildRequest {
    /// The lost server's name (its backups' restic host).
    pub server: String,
    /// The backup run (default: the newest with a bundle).
    #[serde(default)]
    pub run: Option<String>,
    /// The repository as restic names it: `s3:https://ENDPOINT/BUCKET/PREFIX` or
    /// `rest:https://HOST:PORT/NAME/`.
    pub repository: String,
    /// A root-only file with the team key.
    pub key_file: PathBuf,
    /// A file with the destination's credentials (`AWS_…=…` lines, or `USER:PASSWORD`).
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// An S3 server addressed by path, not by bucket host name.
    #[serde(default)]
    pub path_style: bool,
    /// The CA of a receiver's certificate not signed by a public CA.
    #[serde(default)]
    pub cacert: Option<PathBuf>,
    /// Replace the definition this server already has.
    #[serde(default)]
    pub force: bool,
}

/// What the check step found: the repository, the bundle and the key to import.
struct Found {
    bundle: Bundle,
    definition: String,
    key: String,
}

/// Start a rebuild: refused at once when the server already has a definition (unless
/// `force`); everything else is recorded in the operation, whose id is returned.
///
/// # Errors
/// A definition is there, or the state database failed.
pub async fn start(
    backups: &Arc<Backups>,
    requests: &mpsc::Sender<Request>,
    req: RebuildRequest,
) -> Result<i64, RebuildError> {
    let paths = Paths::from_env();
    if paths.definition.exists() && !req.force {
        return Err(RebuildError::DefinitionExists(paths.definition));
    }
    let mut p = backups
        .deployer()
        .progress("rebuild", "cli", &req.server)
        .await?;
    let id = p.id();
    let (me, requests) = (backups.clone(), requests.clone());
    tokio::spawn(async move {
        let result = run(&me, &requests, &mut p, &req, &paths.definition).await;
        if let Err(e) = &result {
            tracing::error!("rebuild of {}: {e}", req.server);
        }
        p.finish(&result).await;
    });
    Ok(id)
}

/// The operation's steps in order. Its result is text because the operations log records it
/// as such (`Progress::finish`); the steps' own failures are [`RebuildError`]s, worded there.
async fn run(
    backups: &Arc<Backups>,
    requests: &mpsc::Sender<Request>,
    p: &mut Progress,
    req: &RebuildRequest,
    definition: &Path,
) -> Result<String, String> {
    let which = req.run.as_deref().unwrap_or("the newest run");
    let found = p
        .step(
            "check",
            &format!("server {}, {which}, at {}", req.server, req.repository),
            async {
                let found = check(backups, req)
                    .await
                    .map_err(|e| (e.to_string(), String::new()))?;
                let b = &found.bundle;
                let said = format!(
                    "run {}, generation {}, {} secret(s), apps: {}",
                    b.run,
                    b.generation,
                    b.secrets.len(),
                    apps_said(b)
                );
                Ok((found, said))
            },
        )
        .await?;
    let bundle = &found.bundle;

    p.step("put-back", &definition.display().to_string(), async {
        put_back(backups, &found, definition)
            .await
            .map(|()| ((), String::new()))
            .map_err(|e| (e.to_string(), String::new()))
    })
    .await?;

    let generation = p
        .step("switch", "the definition's generation", async {
            let op = apply(requests)
                .await
                .map_err(|e| (e.to_string(), String::new()))?;
            Ok((op.clone(), format!("{} (operation {})", op.summary, op.id)))
        })
        .await?
        .generation;

    let def = backups.deployer().load()?;
    let mut apps = Vec::new();
    for (app, at) in &bundle.apps {
        if !def.definition().apps.contains_key(app) {
            continue;
        }
        let deployed = if def.definition().backups.contains_key(app) {
            let run = app_run(backups, app, bundle)
                .await
                .map_err(|e| e.to_string())?;
            backups.restore_in(p, app, &run, &def).await?
        } else {
            backups
                .deploy_in(p, app, &def, at.commit.as_deref())
                .await?
        };
        let live = backups.commit_of(app, &def).await?;
        if at.commit.is_some() && live != at.commit {
            return Err(format!(
                "{app} is live at commit {}, the lost server had {} ({deployed})",
                live.as_deref().unwrap_or("none"),
                at.commit.as_deref().unwrap_or("none")
            ));
        }
        apps.push(format!("{app} at {}", short(live.as_deref())));
    }

    let digest = p
        .step("verify", "the state digest", async {
            // A pass observes the host as it is now, apps included.
            apply(requests)
                .await
                .map_err(|e| (e.to_string(), String::new()))?;
            let now = backups.digest();
            match (&bundle.digest, &now) {
                (Some(was), Some(is)) if was == is => Ok((is.clone(), format!("{is} (equal)"))),
                (Some(was), is) => Err((
                    format!(
                        "the digest is {}, the lost server's was {was} at run {}",
                        is.as_deref().unwrap_or("unknown"),
                        bundle.run
                    ),
                    String::new(),
                )),
                (None, is) => Ok((
                    is.clone().unwrap_or_default(),
                    "the bundle has no digest to compare".into(),
                )),
            }
        })
        .await?;
    Ok(format!(
        "rebuilt server {} from run {}: generation {}, digest {}{}",
        bundle.server,
        bundle.run,
        generation.map_or_else(|| "?".into(), |g| g.to_string()),
        short(Some(&digest)),
        if apps.is_empty() {
            String::new()
        } else {
            format!(", {}", apps.join(", "))
        }
    ))
}

/// Everything that can fail without changing the server: the key, the repository, the
/// server and run, the bundle, its definition and secret names.
async fn check(backups: &Backups, req: &RebuildRequest) -> Result<Found, RebuildError> {
    let key = read_named("reading the key file", &req.key_file)?
        .trim()
        .to_string();
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return Err(RebuildError::KeyForm(req.key_file.clone()));
    }
    if let Some(have) = backups.vault_key() {
        if have != key {
            return Err(RebuildError::DifferentKey);
        }
    }
    let credentials = req
        .credentials
        .as_ref()
        .map(|c| read_named("reading the credentials file", c))
        .transpose()?;
    let mut options = Vec::new();
    if req.path_style {
        options.extend(["-o".to_string(), "s3.bucket-lookup=path".to_string()]);
    }
    if let Some(ca) = &req.cacert {
        options.extend(["--cacert".to_string(), ca.display().to_string()]);
    }
    let repo = Repo::at(
        &req.repository,
        &req.key_file,
        credentials.as_deref(),
        options,
        &backups.cache_dir(),
        backups.processes(),
    )?;
    repo.probe().await?;
    let mut tags = vec![
        "strackt".to_string(),
        format!("kind={}", server::KIND),
        format!("server={}", req.server),
    ];
    if let Some(run) = &req.run {
        tags.push(format!("run={run}"));
    }
    let snaps = repo.snapshots(&tags, None).await?;
    let Some(snap) = snaps.last() else {
        return Err(RebuildError::NotFound(unknown(&repo, req).await));
    };
    let text = repo.dump(&snap.id, &format!("/{}", server::FILE)).await?;
    let bundle = Bundle::from_json(&text)?;
    if bundle.server != req.server {
        return Err(RebuildError::OtherServer {
            snapshot: snap.short_id.clone(),
            found: bundle.server.clone(),
            wanted: req.server.clone(),
        });
    }
    if let Some(bad) = bundle.secrets.keys().find(|n| !plain_name(n)) {
        return Err(RebuildError::SecretName(bad.clone()));
    }
    let definition = bundle.pinned_definition()?;
    Ok(Found {
        bundle,
        definition,
        key,
    })
}

/// The text of the file `path` the operator named, read as root through `host::tree`: a link
/// is followed only where root alone could have put it (an operator's own regular file, in
/// their home too, reads as it always did). Nothing there, or no regular file, reads as the
/// kernel's "No such file or directory"; `op` says which file it was.
fn read_named(op: &'static str, path: &Path) -> Result<String, HostError> {
    let mut text = String::new();
    match tree::open_file(path).map_err(io_err(op, path))? {
        Some(mut f) => f.read_to_string(&mut text).map_err(io_err(op, path))?,
        None => return Err(io_err(op, path)(rustix::io::Errno::NOENT.into())),
    };
    Ok(text)
}

/// Why no bundle was found: the servers (or the server's runs) the repository has.
async fn unknown(
    repo: &Repo<impl crate::host::processes::Processes>,
    req: &RebuildRequest,
) -> String {
    let all = ["strackt".to_string(), format!("kind={}", server::KIND)];
    let snaps: Vec<Snapshot> = repo.snapshots(&all, None).await.unwrap_or_default();
    let of_server: Vec<&Snapshot> = snaps
        .iter()
        .filter(|s| s.tag("server") == Some(req.server.as_str()))
        .collect();
    match (&req.run, of_server.is_empty()) {
        (Some(run), false) => {
            let runs: Vec<&str> = of_server
                .iter()
                .rev()
                .filter_map(|s| s.tag("run"))
                .collect();
            format!(
                "server {} has no run {run} at {} (its runs, newest first: {})",
                req.server,
                repo.location,
                runs.join(", ")
            )
        }
        _ => {
            let mut servers: Vec<&str> = snaps.iter().filter_map(|s| s.tag("server")).collect();
            servers.sort_unstable();
            servers.dedup();
            format!(
                "no server {} at {} (servers there: {})",
                req.server,
                repo.location,
                if servers.is_empty() {
                    "none".to_string()
                } else {
                    servers.join(", ")
                }
            )
        }
    }
}

/// A secret's name is a plain file name in the secrets directory, never a path.
fn plain_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    ) && !name.contains('/')
}

/// The key into the vault, the secrets (root-only), the definition.
async fn put_back(backups: &Backups, found: &Found, definition: &Path) -> Result<(), RebuildError> {
    backups.import_key(&found.key)?;
    let dir = backups.secrets_dir();
    let (secrets, text, def) = (
        found.bundle.secrets.clone(),
        found.definition.clone(),
        definition.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || write_back(&dir, &secrets, &def, &text)).await?
}

/// The secrets into `dir` (root-only, 0600 each) and `text` as the definition `def` (0644),
/// its missing directories created root's, 0755: all through `host`, so no link another user
/// could have planted is followed.
fn write_back(
    dir: &Path,
    secrets: &BTreeMap<String, String>,
    def: &Path,
    text: &str,
) -> Result<(), RebuildError> {
    private::private_dir(dir)?;
    for (name, value) in secrets {
        atomic_write(
            &dir.join(name),
            format!("{value}\n").as_bytes(),
            0o600,
            0,
            0,
        )?;
    }
    Ok(atomic_write(def, text.as_bytes(), 0o644, 0, 0)?)
}

/// A pass of the reconcile loop; `Err` unless it ended on the definition's generation.
async fn apply(requests: &mpsc::Sender<Request>) -> Result<crate::ops::Operation, RebuildError> {
    let (tx, rx) = oneshot::channel();
    requests
        .send(Request::Apply(None, tx))
        .await
        .map_err(|_| RebuildError::ShuttingDown)?;
    let op = rx.await.map_err(|_| RebuildError::ShuttingDown)?;
    if op.outcome == Outcome::Success {
        Ok(op)
    } else {
        Err(RebuildError::PassEnded {
            reason: op.reason.as_deref().unwrap_or(&op.summary).to_string(),
            outcome: op.outcome.to_string(),
            id: op.id,
        })
    }
}

/// The backup run to restore `app` from: the bundle's own run for its app, else the app's
/// newest complete run taken no later than the bundle's.
async fn app_run(backups: &Backups, app: &str, bundle: &Bundle) -> Result<String, RebuildError> {
    let runs = backups.list(app, Some(bundle.server.clone())).await?;
    if let Some(r) = runs.iter().find(|r| r.run == bundle.run) {
        return Ok(r.run.clone());
    }
    let at = crate::backup::run_time(&bundle.run).unwrap_or_default();
    runs.into_iter()
        .find(|r| r.time <= at)
        .map(|r| r.run)
        .ok_or_else(|| RebuildError::NoRun {
            app: app.to_string(),
            server: bundle.server.clone(),
            run: bundle.run.clone(),
        })
}

fn apps_said(b: &Bundle) -> String {
    if b.apps.is_empty() {
        return "none".into();
    }
    b.apps
        .iter()
        .map(|(app, at)| format!("{app} at {}", short(at.commit.as_deref())))
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(s: Option<&str>) -> String {
    s.map_or_else(|| "-".into(), |s| s.chars().take(12).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_name_is_one_plain_file_name() {
        assert!(plain_name("s3_backup"));
        for bad in ["", ".", "..", "../x", "/etc/shadow", "a/b"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }

    #[test]
    fn refusals_read_as_before_and_only_a_stopping_daemon_passes() {
        let e = RebuildError::KeyForm(PathBuf::from("/root/key"));
        assert_eq!(
            e.to_string(),
            "/root/key must hold the team key on one line, as `strackt backup key init` printed it"
        );
        assert!(!e.is_transient());
        let e = RebuildError::PassEnded {
            outcome: "failed".into(),
            reason: "unit a.service failed".into(),
            id: 7,
        };
        assert_eq!(
            e.to_string(),
            "the pass ended failed: unit a.service failed (strackt history --operation 7)"
        );
        assert!(RebuildError::ShuttingDown.is_transient());
        // A layer's failure keeps its class: another operation on the app passes.
        let busy = crate::deploy::DeployError::Busy {
            kind: "deploy",
            operation: 3,
            app: "shop".into(),
        };
        assert!(RebuildError::from(busy).is_transient());
    }

    #[test]
    fn the_operators_files_are_read_through_a_link_only_where_root_alone_could_put_it() {
        use std::os::unix::fs::{chown, symlink, PermissionsExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::write(&real, "k3y\n").expect("write");
        // An operator's home: their own regular file reads as it always did; a link they
        // (or anyone who can write there) put in it is not followed.
        let home = dir.path().join("home-op");
        std::fs::create_dir(&home).expect("mkdir");
        std::fs::write(home.join("key"), "team\n").expect("write");
        symlink(&real, home.join("linked")).expect("link");
        chown(&home, Some(4242), Some(4242)).expect("chown");
        let op = "reading the key file";
        assert_eq!(
            read_named(op, &home.join("key")).expect("own file"),
            "team\n"
        );
        let e = read_named(op, &home.join("linked")).expect_err("a planted link");
        assert!(e.to_string().contains("not followed"), "{e}");
        // In a directory root alone can change, a link is followed.
        let root_only = dir.path().join("root-only");
        std::fs::create_dir(&root_only).expect("mkdir");
        std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        symlink(&real, root_only.join("key")).expect("link");
        assert_eq!(
            read_named(op, &root_only.join("key")).expect("root's"),
            "k3y\n"
        );
        // A missing file reads as it did.
        let none = dir.path().join("none");
        assert_eq!(
            read_named(op, &none).expect_err("missing").to_string(),
            format!(
                "reading the key file {}: No such file or directory (os error 2)",
                none.display()
            )
        );
    }

    #[test]
    fn the_definition_is_written_through_no_planted_link() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::create_dir(&victim).expect("mkdir");
        // A directory anyone can write, with a link in it where the definition's goes.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        symlink(&victim, open.join("etc")).expect("link");
        let secrets = dir.path().join("secrets");
        let values = BTreeMap::from([("db".to_string(), "pw".to_string())]);
        let def = open.join("etc/strackt/server.yaml");
        let e = write_back(&secrets, &values, &def, "version: 1\n").expect_err("refused");
        assert!(e.to_string().contains("not followed"), "{e}");
        assert_eq!(
            std::fs::read_dir(&victim).expect("ls").count(),
            0,
            "nothing created through the link"
        );
        // Without the link: secrets 0600, the definition and its directory made.
        let def = dir.path().join("etc/strackt/server.yaml");
        write_back(&secrets, &values, &def, "version: 1\n").expect("written");
        assert_eq!(std::fs::read_to_string(&def).expect("read"), "version: 1\n");
        assert_eq!(
            std::fs::read_to_string(secrets.join("db")).expect("read"),
            "pw\n"
        );
        let mode = std::fs::metadata(secrets.join("db"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600);
    }

    #[test]
    fn the_request_reads_from_the_control_socket_line() {
        let line = r#"{"cmd":"rebuild","server":"web1","repository":"s3:http://x/b","key_file":"/root/key"}"#;
        let req: crate::api::ControlRequest = serde_json::from_str(line).expect("parses");
        let crate::api::ControlRequest::Rebuild(r) = req else {
            panic!("not a rebuild: {req:?}");
        };
        assert_eq!((r.server.as_str(), r.run, r.force), ("web1", None, false));
    }
}
