//! backup/server.rs — the server bundle: what it takes to build this server again elsewhere,
//! stored beside each backup run, encrypted with the team key in the same repository.
//!
//! One file, `/server.json`, in a restic snapshot tagged `strackt`, `kind=server`,
//! `server=<name>`, `app=<app>` and `run=<run>`: the live generation's definition and lock,
//! the secrets the definition refers to, each app's live commit and the state digest at that
//! moment. JSON so `restic dump … /server.json | jq` is all a restore without strackt needs.
//! This module collects and reads bundles; it does not write the server (`rebuild` does) and
//! it never logs a bundle (it holds secrets).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::BackupError;
use super::restic::{self, Repo};
use super::{off_thread, step, Backups, RunTags};
use crate::definition::ValidatedDefinition;
use crate::deploy::preflight::read_secret;
use crate::generation::render::PackageLock;
use crate::generation::Store;
use crate::host::files::atomic_write;
use crate::host::processes::Cmd;
use crate::host::Machine;
use crate::ops::Progress;

/// The file name of the bundle inside its snapshot.
pub const FILE: &str = "server.json";
/// The `kind=` tag of bundle snapshots.
pub const KIND: &str = "server";
/// The bundle format this strackt writes and reads.
pub(super) const FORMAT: u32 = 1;
/// A bundle is a few kilobytes: a minute without progress is a dead destination.
const STALL: Duration = Duration::from_secs(60);

/// Everything a fresh server needs, besides the team key and the destination's credentials,
/// to become this one again.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// Bundle format version.
    pub format: u32,
    /// The server's name (restic's host).
    pub server: String,
    /// The backup run it was stored with.
    pub run: String,
    /// The live generation.
    pub generation: u64,
    /// That generation's definition text.
    pub definition: String,
    /// Its lock: package → exact version and cached file.
    #[serde(default)]
    pub lock: BTreeMap<String, PackageLock>,
    /// Secret name → value, for every secret the definition refers to.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Each app's live code.
    #[serde(default)]
    pub apps: BTreeMap<String, AppAt>,
    /// The state digest (`strackt status`) when it was taken.
    pub digest: Option<String>,
}

// Hand-written so a bundle can never reach a log with its secrets.
impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("server", &self.server)
            .field("run", &self.run)
            .field("generation", &self.generation)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("apps", &self.apps)
            .finish_non_exhaustive()
    }
}

/// An app as it was live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppAt {
    /// The commit of its live release (`None`: no release was live).
    pub commit: Option<String>,
}

impl Bundle {
    /// Read a bundle from `restic dump` output.
    ///
    /// # Errors
    /// Not a bundle, or one of a newer format.
    pub fn from_json(text: &str) -> Result<Bundle, BackupError> {
        let b: Bundle = serde_json::from_str(text).map_err(BackupError::BundleRead)?;
        if b.format > FORMAT {
            return Err(BackupError::BundleFormat(b.format));
        }
        Ok(b)
    }

    /// The definition to write on the rebuilt server: the bundle's, with `latest` packages
    /// pinned to the locked versions, so the rebuilt generation installs what the lost one
    /// had.
    ///
    /// # Errors
    /// The definition does not parse.
    pub fn pinned_definition(&self) -> Result<String, BackupError> {
        pinned(
            &self.definition,
            Path::new("server.json:definition"),
            &self.lock,
            self.generation,
        )
    }
}

/// `text` with every `latest` package pinned to its version in `lock` (`text` itself when it
/// has none): what `strackt export` prints and a rebuild writes.
///
/// # Errors
/// `text` does not parse.
pub fn pinned(
    text: &str,
    path: &Path,
    lock: &BTreeMap<String, PackageLock>,
    generation: u64,
) -> Result<String, BackupError> {
    let def = crate::definition::parse(text, path)?;
    if !def.definition().packages.values().any(|v| v == "latest") {
        return Ok(text.to_string());
    }
    let mut pinned = def.definition().clone();
    for (name, want) in pinned.packages.iter_mut() {
        if let Some(l) = lock.get(name) {
            want.clone_from(&l.version);
        }
    }
    Ok(format!(
        "# strackt export of generation {generation}: package versions pinned from its lock.json.\n{}",
        crate::definition::to_yaml(&pinned).map_err(BackupError::Yaml)?
    ))
}

/// The names of the secrets `def` refers to (every `{ secret: NAME }`, wherever it is).
pub fn secret_names(def: &ValidatedDefinition) -> BTreeSet<String> {
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let (1, Some(serde_json::Value::String(name))) = (map.len(), map.get("secret")) {
                    out.insert(name.clone());
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    if let Ok(v) = serde_json::to_value(def.definition()) {
        walk(&v, &mut out);
    }
    out
}

/// The bundle of the live generation of the state root `root`, with the secrets in `secrets`
/// its definition refers to; `server`, `run`, the apps' commits and the digest are left for
/// the caller (each app is listed, without a commit).
///
/// # Errors
/// No generation applied yet, unreadable files, a referenced secret missing.
pub fn live(root: &Path, secrets: &Path) -> Result<Bundle, BackupError> {
    // Through the store: strackt's state directory is read without following a link.
    let store = Store::open(root)?;
    let id = store.current()?.ok_or(BackupError::NothingLive)?;
    let record = store.read_record(id)?;
    let manifest: crate::generation::Manifest =
        serde_json::from_str(&record.manifest).map_err(BackupError::LiveManifest)?;
    let definition = record.definition;
    let def = crate::definition::parse(&definition, &store.dir(id).join("definition.yaml"))?;
    let mut values = BTreeMap::new();
    for name in secret_names(&def) {
        let value = read_secret(secrets, &name).map_err(BackupError::Deploy)?;
        values.insert(name.clone(), value);
    }
    let apps = def
        .definition()
        .apps
        .keys()
        .map(|a| (a.clone(), AppAt::default()))
        .collect();
    Ok(Bundle {
        format: FORMAT,
        server: String::new(),
        run: String::new(),
        generation: manifest.id,
        definition,
        lock: manifest.packages,
        secrets: values,
        apps,
        digest: None,
    })
}

/// What a rebuild (`crate::rebuild`) uses of the backup service.
impl<M: Machine> Backups<M> {
    /// The deployer the restores go through.
    pub(crate) fn deployer(&self) -> &Arc<crate::deploy::Deployer<M>> {
        &self.deployer
    }

    /// The programs restic runs through.
    pub(crate) fn processes(&self) -> M::Processes {
        self.machine().processes().clone()
    }

    /// restic's cache directory.
    pub(crate) fn cache_dir(&self) -> std::path::PathBuf {
        self.cache.clone()
    }

    /// The secrets directory.
    pub(crate) fn secrets_dir(&self) -> std::path::PathBuf {
        self.secrets.clone()
    }

    /// The team key in the vault, if there is one.
    pub(crate) fn vault_key(&self) -> Option<String> {
        self.vault.key()
    }

    /// Put the team key in the vault.
    pub(crate) fn import_key(&self, key: &str) -> Result<(), BackupError> {
        self.vault.import(key).map_err(BackupError::Vault)
    }

    /// The state digest as the last pass observed it.
    pub(crate) fn digest(&self) -> Option<String> {
        self.status.digest()
    }

    /// The commit of `app`'s live release (`def`'s app).
    pub(crate) async fn commit_of(
        &self,
        app: &str,
        def: &ValidatedDefinition,
    ) -> Result<Option<String>, BackupError> {
        let app_spec = def
            .definition()
            .apps
            .get(app)
            .ok_or_else(|| BackupError::NoApp(app.to_string()))?;
        Ok(self.live_commit(app, app_spec).await)
    }

    /// Restore run `run` of `app` as steps of the operation `p` (holding the app's claim).
    pub(crate) async fn restore_in(
        &self,
        p: &mut Progress,
        app: &str,
        run: &str,
        def: &ValidatedDefinition,
    ) -> Result<String, BackupError> {
        let (spec, app_spec) = super::spec_of(def, app)?;
        let _claim = self
            .deployer
            .claim("restore", app)
            .map_err(BackupError::Deploy)?;
        self.put_back(p, (app, run, false), &spec, &app_spec, def)
            .await
    }

    /// Deploy `app` at `commit` (default: its branch's tip) as steps of the operation `p`
    /// (holding the app's claim).
    pub(crate) async fn deploy_in(
        &self,
        p: &mut Progress,
        app: &str,
        def: &ValidatedDefinition,
        commit: Option<&str>,
    ) -> Result<String, BackupError> {
        let _claim = self
            .deployer
            .claim("deploy", app)
            .map_err(BackupError::Deploy)?;
        self.deployer
            .redeploy(p, app, def, None, commit)
            .await
            .map_err(BackupError::Deploy)
    }

    /// Store a server bundle whenever a new generation goes live, in each destination of its
    /// `backups:` (once per destination), as an operation `server-backup` triggered by
    /// `generation`, when the server has the team key and the destination has a repository
    /// (the first backup run creates it, with a bundle). The generation
    /// last stored is kept in the state database, so a restart stores nothing new.
    pub fn spawn_generation_bundles(self: &Arc<Self>) {
        let (me, mut live) = (self.clone(), self.status.live_generations());
        tokio::spawn(async move {
            while let Some(now) = live.next().await {
                if let Some(generation) = now {
                    me.bundle_generation(generation).await;
                }
            }
        });
    }

    async fn bundle_generation(&self, generation: u64) {
        const KEY: &str = "server_bundle_generation";
        let stored = self.state.call(|s| s.meta(KEY)).await.ok().flatten();
        if stored == Some(generation.to_string()) {
            return;
        }
        let g = generation.to_string();
        // Unrecorded, the server is stored again on the next run: harmless.
        self.state
            .write_or_log(
                format!("recording generation {generation} as stored"),
                move |s| s.set_meta(KEY, Some(&g)),
            )
            .await;
        // A generation that went live before the key came is not stored later: the next
        // backup run stores the server as it is then.
        if !self.vault.has_key() {
            return;
        }
        let (root, secrets) = (self.root.clone(), self.secrets.clone());
        let read = off_thread(move || {
            live(&root, &secrets).and_then(|b| {
                Ok(crate::definition::parse(
                    &b.definition,
                    Path::new("definition.yaml"),
                )?)
            })
        })
        .await;
        // No operation is started yet to record it in: the journal says why nothing is stored.
        let def = match read {
            Ok(def) => def,
            Err(e) => {
                tracing::warn!("server bundle of generation {generation}: {e}");
                return;
            }
        };
        let mut done = BTreeSet::new();
        for (app, spec) in &def.definition().backups {
            let repo = match self.repo(spec) {
                Ok(r) if done.insert(r.location.clone()) => r,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("server bundle of generation {generation} for {app}: {e}");
                    continue;
                }
            };
            // The first backup run creates the repository (and stores a bundle); creating it
            // here as well could race with that run's `restic init`.
            let probed = repo.probe().await;
            if matches!(&probed, Err(BackupError::NoRepository { .. })) {
                continue;
            }
            let Ok(mut p) = self
                .deployer
                .progress("server-backup", "generation", app)
                .await
            else {
                continue;
            };
            let run = self.run_name();
            let tags = RunTags {
                app,
                run: &run,
                trigger: "generation",
                commit: None,
            };
            let result = async {
                step(&mut p, "repository", &repo.location, async {
                    probed.map(|()| ((), String::new()))
                })
                .await?;
                self.store_server(&mut p, &repo, &tags).await?;
                Ok::<_, BackupError>(format!(
                    "server bundle of generation {generation} → {}",
                    repo.location
                ))
            }
            .await
            .map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::error!("server bundle of generation {generation}: {e}");
            }
            p.finish(&result).await;
        }
    }

    /// Store the server bundle of run `tags` in `repo` (step `server`). The bundle is written
    /// to a root-only file in strackt's state for restic to read, and removed afterwards.
    pub(super) async fn store_server(
        &self,
        p: &mut Progress,
        repo: &Repo<M::Processes>,
        tags: &RunTags<'_>,
    ) -> Result<(), BackupError> {
        let (root, secrets) = (self.root.clone(), self.secrets.clone());
        let mut bundle = off_thread(move || live(&root, &secrets)).await?;
        bundle.server.clone_from(&self.server);
        bundle.run = tags.run.to_string();
        bundle.digest = self.status.digest();
        let def = crate::definition::parse(&bundle.definition, Path::new("definition.yaml"))?;
        for (app, at) in &mut bundle.apps {
            if let Some(spec) = def.definition().apps.get(app) {
                at.commit = self.live_commit(app, spec).await;
            }
        }
        let dir = self.root.join("bundle");
        let file = dir.join(format!("{}-{}.json", tags.run, tags.app));
        let json = serde_json::to_vec(&bundle).map_err(BackupError::BundleWrite)?;
        let f = file.clone();
        off_thread(move || {
            crate::host::private::private_dir(&dir).map_err(BackupError::Host)?;
            Ok(atomic_write(&f, &json, 0o600, 0, 0)?)
        })
        .await?;
        let cat = Cmd::new("cat", restic::BACKUP_LIMIT)
            .args(["--".to_string(), file.display().to_string()]);
        let target = format!(
            "definition, lock, {} secret(s), {} app(s) → {}",
            bundle.secrets.len(),
            bundle.apps.len(),
            repo.location
        );
        let live = Arc::new(Mutex::new(String::new()));
        let stored = step(p, "server", &target, async {
            repo.backup(
                restic::Source::Stream(cat, FILE.to_string()),
                &self::tags(&self.server, tags.app, tags.run, tags.trigger),
                &self.server,
                &live,
                STALL,
            )
            .await
            .map(|s| ((), format!("snapshot {}", s.snapshot_id)))
        })
        .await;
        // The bundle is stored (or not) either way; but a copy of the server's secrets left
        // behind would stay there for good (each run names its own file), so it is said.
        if let Err(e) = crate::host::private::remove_private(&file) {
            tracing::warn!("{e} (it holds the server's secrets: remove it by hand)");
        }
        stored
    }
}

/// The tags of the bundle snapshot of `run` (of `app`'s backup) taken on `server`.
pub fn tags(server: &str, app: &str, run: &str, trigger: &str) -> Vec<String> {
    vec![
        "strackt".to_string(),
        format!("kind={KIND}"),
        format!("server={server}"),
        format!("app={app}"),
        format!("run={run}"),
        format!("trigger={trigger}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: &str = "version: 1\npackages:\n  curl: latest\n  jq: \"1.6-2.1\"\nfiles:\n  /etc/motd: { content: \"x\\n\" }\n";

    fn lock() -> BTreeMap<String, PackageLock> {
        BTreeMap::from([(
            "curl".to_string(),
            PackageLock {
                version: "7.88.1-10+deb12u8".into(),
                deb: "curl.deb".into(),
            },
        )])
    }

    #[test]
    fn latest_is_pinned_to_the_lock_and_a_pinned_definition_is_kept_as_it_is() {
        let text = pinned(DEF, Path::new("d.yaml"), &lock(), 7).expect("pinned");
        assert!(
            text.starts_with("# strackt export of generation 7"),
            "{text}"
        );
        let def = crate::definition::parse(&text, Path::new("d.yaml")).expect("parses");
        let p = &def.definition().packages;
        assert_eq!(p["curl"], "7.88.1-10+deb12u8");
        assert_eq!(p["jq"], "1.6-2.1");
        let exact = DEF.replace("latest", "\"1.0\"");
        assert_eq!(
            pinned(&exact, Path::new("d.yaml"), &lock(), 7).expect("kept"),
            exact
        );
    }

    #[test]
    fn every_secret_reference_is_found_and_nothing_else() {
        let text = "version: 1\nusers:\n  shop: {}\napps:\n  shop:\n    repo: /srv/src/shop\n    path: /srv/shop\n    user: shop\n    settings:\n      APP_KEY: { secret: shop_app_key }\n      PLAIN: secret\n    database: { engine: postgresql, name: shop, user: shop, password: { secret: shop_db } }\n    service: { exec: python3 app.py, listen: \"127.0.0.1:8000\" }\n";
        let def = crate::definition::parse(text, Path::new("d.yaml")).expect("parses");
        let names: Vec<String> = secret_names(&def).into_iter().collect();
        assert_eq!(names, ["shop_app_key", "shop_db"]);
    }

    #[test]
    fn a_bundle_reads_back_and_its_debug_form_shows_no_secret() {
        let b = Bundle {
            format: FORMAT,
            server: "web1".into(),
            run: "web1-20261202T060000Z".into(),
            generation: 3,
            definition: DEF.into(),
            lock: lock(),
            secrets: BTreeMap::from([("s3".to_string(), "AWS_SECRET=hunter2".to_string())]),
            apps: BTreeMap::from([(
                "shop".to_string(),
                AppAt {
                    commit: Some("abc".into()),
                },
            )]),
            digest: Some("d".into()),
        };
        let text = serde_json::to_string(&b).expect("json");
        assert_eq!(Bundle::from_json(&text).expect("reads"), b);
        assert!(!format!("{b:?}").contains("hunter2"));
        let newer = text.replace("\"format\":1", "\"format\":99");
        let e = Bundle::from_json(&newer).expect_err("newer");
        assert!(matches!(e, BackupError::BundleFormat(99)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the server bundle is of format 99 (this strackt reads 1): upgrade strackt"
        );
        assert!(!e.is_transient());
        assert!(Bundle::from_json("{}").is_err());
    }
}
