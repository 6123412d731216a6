//! `strackt receiver`: keeps other servers' backups (its own unit, `strackt-receiver.service`).
//!
//! Serves restic's REST protocol over TLS (`rest.rs`, `tls.rs`) from the definition's
//! `receiver:` section, one repository per client, append-only; and applies the retention
//! policy itself, with the team key from this server's vault, a while after a client's last
//! snapshot arrived. It re-reads `receiver:` when the definition changes and on SIGHUP (clients,
//! passwords, certificate, retention; `listen` and `storage` need a restart), all or nothing,
//! and never touches the rest of the server.

pub mod rest;
pub mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::rustls::ServerConfig;

use crate::backup::restic::Repo;
use crate::backup::vault::Vault;
use crate::daemon::Paths;
use crate::definition::{ReceiverSpec, SECRETS_DIR};
use crate::deploy::preflight::read_secret;

/// Run the receiver until SIGTERM; reload on SIGHUP and when the definition changes.
///
/// # Errors
/// No or a broken `receiver:` section, missing secrets or TLS files, a port in use, retention
/// configured without the team key — all before anything is served.
pub fn run(paths: &Paths) -> anyhow::Result<i32> {
    let vault = Vault::new(&paths.root);
    let settings = match Settings::load(&paths.definition, &vault) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    // Hashing uploads is CPU work; two workers keep one client's upload from stalling another's.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let Settings {
            spec,
            passwords,
            tls,
            policy,
        } = settings;
        let (stored_tx, stored_rx) = mpsc::unbounded_channel();
        let store = Arc::new(rest::Store::new(
            PathBuf::from(&spec.storage),
            &passwords,
            stored_tx.clone(),
        ));
        std::fs::create_dir_all(&spec.storage)
            .with_context(|| format!("creating {}", spec.storage))?;
        let tcp = tokio::net::TcpListener::bind(&spec.listen)
            .await
            .with_context(|| format!("listening on {}", spec.listen))?;
        let tls = Arc::new(RwLock::new(tls));
        let listener = tls::TlsListener::new(tcp, tls.clone())?;
        for client in passwords.keys() {
            let swept = rest::sweep(&store.repo(client));
            if swept > 0 {
                tracing::info!("removed {swept} cut-off upload(s) of {client}");
            }
        }
        // Repositories that got snapshots before a restart get their retention pass too.
        for client in policy.keeps.keys() {
            if store.repo(client).join("config").exists() {
                let _ = stored_tx.send(client.clone());
            }
        }
        let (policy_tx, policy_rx) = watch::channel(policy);
        let retention = Retention {
            store: store.clone(),
            policy: policy_rx,
            vault: vault.clone(),
            cache: paths.cache.join("receiver"),
        };
        tokio::spawn(retention.run(stored_rx));
        let running = Running {
            file: paths.definition.clone(),
            vault,
            spec,
            store: store.clone(),
            tls,
            policy: policy_tx,
        };
        tracing::info!(
            "receiving backups on https://{} for {} client(s) into {}",
            running.spec.listen,
            running.spec.clients.len(),
            running.spec.storage
        );
        let _watcher = running.spawn_reloads()?;
        let app = axum::Router::new()
            .fallback(rest::handle)
            .with_state(store)
            // restic packs are tens of MiB at most; axum's 2 MiB default would refuse them.
            .layer(axum::extract::DefaultBodyLimit::max(512 << 20));
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")?;
        Ok::<_, anyhow::Error>(0)
    })
}

/// The `receiver:` section, read and checked with its secrets and TLS files.
struct Settings {
    spec: ReceiverSpec,
    passwords: BTreeMap<String, String>,
    tls: Arc<ServerConfig>,
    policy: Policy,
}

impl Settings {
    /// # Errors
    /// The first problem, as the user should read it (file, line and field for the definition).
    fn load(file: &Path, vault: &Vault) -> Result<Settings, String> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        let def = crate::definition::parse(&text, file).map_err(|e| e.to_string())?;
        let spec = def
            .definition()
            .receiver
            .clone()
            .ok_or_else(|| format!("{} has no `receiver:` section", file.display()))?;
        let passwords = passwords(&spec, Path::new(SECRETS_DIR))?;
        let tls = tls::server_config(Path::new(&spec.tls.certificate), Path::new(&spec.tls.key))?;
        let keeps: BTreeMap<String, Vec<String>> = spec
            .clients
            .iter()
            .map(|(c, cl)| {
                (
                    c.clone(),
                    cl.keep.as_ref().unwrap_or(&spec.keep).restic_flags(),
                )
            })
            .filter(|(_, flags)| !flags.is_empty())
            .collect();
        if !keeps.is_empty() && !vault.has_key() {
            return Err("retention (`receiver.keep`) needs the team's backup key on this server: run `strackt backup key import`".into());
        }
        let settle = humantime::parse_duration(&spec.retention_after)
            .map_err(|e| format!("receiver.retention_after {:?}: {e}", spec.retention_after))?;
        Ok(Settings {
            spec,
            passwords,
            tls,
            policy: Policy { keeps, settle },
        })
    }
}

/// What a reload may change in the running receiver.
struct Running {
    file: PathBuf,
    vault: Vault,
    /// As served: `listen` and `storage` only change with a restart.
    spec: ReceiverSpec,
    store: Arc<rest::Store>,
    tls: tls::Current,
    policy: watch::Sender<Policy>,
}

impl Running {
    /// Reload on SIGHUP (`systemctl reload strackt-receiver`) and when the definition changes.
    fn spawn_reloads(self) -> anyhow::Result<notify::RecommendedWatcher> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let on_change = tx.clone();
        let watcher = crate::daemon::spawn_watcher(&self.file, move || {
            let _ = on_change.send(());
        })
        .context("watching the definition")?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = tx.send(());
            }
        });
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                self.reload();
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        });
        Ok(watcher)
    }

    /// All or nothing: a definition, secret or certificate that does not load leaves the
    /// receiver serving exactly as before, and says why.
    fn reload(&self) {
        let new = match Settings::load(&self.file, &self.vault) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("reload refused, still serving as before: {e}");
                return;
            }
        };
        if (&new.spec.listen, &new.spec.storage) != (&self.spec.listen, &self.spec.storage) {
            tracing::warn!(
                "receiver.listen and receiver.storage take effect at the next start (systemctl restart strackt-receiver); still on {} into {}",
                self.spec.listen,
                self.spec.storage
            );
        }
        self.store.set_clients(&new.passwords);
        *self.tls.write().unwrap_or_else(PoisonError::into_inner) = new.tls;
        self.policy.send_replace(new.policy);
        tracing::info!(
            "reloaded: {} client(s): {}",
            new.passwords.len(),
            new.passwords.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
}

/// Each client's password, from its secret `NAME:PASSWORD`.
fn passwords(spec: &ReceiverSpec, secrets: &Path) -> Result<BTreeMap<String, String>, String> {
    spec.clients
        .iter()
        .map(|(name, c)| {
            let text = read_secret(secrets, &c.credentials.secret)?;
            match text.trim().split_once(':') {
                Some((user, password)) if user == name && !password.is_empty() => {
                    Ok((name.clone(), password.to_string()))
                }
                Some((user, _)) if user != name => Err(format!(
                    "secret `{}` is for {user:?}, but it is listed as receiver.clients.{name}",
                    c.credentials.secret
                )),
                _ => Err(format!(
                    "secret `{}` must be {name}:PASSWORD",
                    c.credentials.secret
                )),
            }
        })
        .collect()
}

/// When and how much retention forgets.
#[derive(Debug, Clone)]
struct Policy {
    /// restic keep flags by client (clients without a policy keep everything).
    keeps: BTreeMap<String, Vec<String>>,
    /// How long after a client's last snapshot.
    settle: Duration,
}

/// Forget and prune on the receiver, where clients cannot.
struct Retention {
    store: Arc<rest::Store>,
    policy: watch::Receiver<Policy>,
    vault: Vault,
    cache: PathBuf,
}

impl Retention {
    async fn run(self, mut stored: mpsc::UnboundedReceiver<String>) {
        let mut due: BTreeMap<String, Instant> = BTreeMap::new();
        loop {
            let next = due.values().min().copied();
            tokio::select! {
                client = stored.recv() => match client {
                    Some(c) => {
                        let policy = self.policy.borrow();
                        if policy.keeps.contains_key(&c) {
                            due.insert(c, Instant::now() + policy.settle);
                        }
                    }
                    None => return,
                },
                () = async {
                    match next {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = Instant::now();
                    let ready: Vec<String> =
                        due.iter().filter(|(_, at)| **at <= now).map(|(c, _)| c.clone()).collect();
                    for client in ready {
                        due.remove(&client);
                        if let Err(e) = self.pass(&client).await {
                            let settle = self.policy.borrow().settle;
                            tracing::warn!("retention for {client} failed, trying again in {}: {e}", humantime::format_duration(settle));
                            due.insert(client, Instant::now() + settle);
                        }
                    }
                }
            }
        }
    }

    async fn pass(&self, client: &str) -> Result<(), String> {
        // A reload may have dropped the client or its policy since the pass was due.
        let Some(keep) = self.policy.borrow().keeps.get(client).cloned() else {
            return Ok(());
        };
        let pruning = self.store.pruning(client).ok_or("unknown client")?;
        let _held = pruning.lock().await;
        let repo = Repo::local(&self.store.repo(client), &self.vault, &self.cache);
        let out = repo.forget(None, None, &keep).await?;
        // restic says "remove N snapshots:" per group.
        let removed: u64 = out
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("remove ")?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        tracing::info!("retention for {client}: {removed} snapshot(s) forgotten and pruned");
        Ok(())
    }
}
