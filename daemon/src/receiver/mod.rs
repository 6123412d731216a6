//! `strackt receiver`: keeps other servers' backups (its own unit, `strackt-receiver.service`).
//!
//! Serves restic's REST protocol over TLS (`rest.rs`, `tls.rs`) from the definition's
//! `receiver:` section, one repository per client, append-only; and applies the retention
//! policy itself, with the team key from this server's vault, a while after a client's last
//! snapshot arrived. It re-reads `receiver:` when the definition changes and on SIGHUP (clients,
//! passwords, certificate, retention; `listen` and `storage` need a restart), all or nothing,
//! and never touches the rest of the server.
//!
//! It runs as its own system user (`strackt-receiver`), which cannot read the definition's
//! secrets, the TLS key or the vault: `strackt receiver --stage`, run as root by the unit
//! before the start and at each reload (`ExecStartPre=+`, `ExecReload=+`), copies exactly what
//! the receiver needs into a root-owned directory only that user's group can read
//! ([`STAGE_DIR`]), and the receiver reads them there. Run as root by hand, it reads them in
//! place, as before.

mod error;
pub mod rest;
pub mod retention;
pub mod stage;
#[cfg(test)]
mod tests;
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
use crate::daemon::Paths;
use crate::definition::{parse_reserve, parse_size, KeepPolicy, ReceiverSpec, SECRETS_DIR};
use crate::deploy::preflight::read_secret;
use crate::host::definition::DefinitionFile;
use crate::host::io_err;
use crate::host::processes::Processes;
use crate::vault::Vault;
pub use error::ReceiverError;
pub use stage::{stage, STAGE_DIR};

/// Where the receiver reads its definition, secrets, TLS files and the team key.
#[derive(Debug, Clone)]
struct Sources {
    definition: PathBuf,
    secrets: PathBuf,
    /// The staged certificate and key; `None`: the files the definition names.
    tls: Option<(PathBuf, PathBuf)>,
    vault: Vault,
    /// Whether these are the staged copies (then the unit's reload re-stages them).
    staged: bool,
}

impl Sources {
    fn for_user(paths: &Paths) -> Sources {
        if nix::unistd::geteuid().is_root() {
            Sources {
                definition: paths.definition.clone(),
                secrets: PathBuf::from(SECRETS_DIR),
                tls: None,
                vault: Vault::new(&paths.root),
                staged: false,
            }
        } else {
            let dir = Path::new(STAGE_DIR);
            Sources {
                definition: dir.join(stage::DEFINITION),
                secrets: dir.join(stage::SECRETS),
                tls: Some((dir.join(stage::CERTIFICATE), dir.join(stage::KEY))),
                vault: Vault::new(dir),
                staged: true,
            }
        }
    }
}

/// Run the receiver until SIGTERM; reload on SIGHUP and when the definition changes.
///
/// # Errors
/// No or a broken `receiver:` section, missing secrets or TLS files, a port in use, retention
/// configured without the team key — all before anything is served.
pub fn run(paths: &Paths) -> anyhow::Result<i32> {
    let sources = Sources::for_user(paths);
    if sources.staged && !stage::is_staged() {
        eprintln!(
            "{} has nothing staged: start the receiver with `systemctl start strackt-receiver` (its unit stages the secrets it may read), or run `strackt receiver` as root",
            STAGE_DIR
        );
        return Ok(1);
    }
    let settings = match Settings::load(&sources) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    // The unit's own cache directory (CacheDirectory=strackt-receiver), else strackt's.
    let cache = std::env::var_os("CACHE_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths.cache.join("receiver"));
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
            limits,
        } = settings;
        let (stored_tx, stored_rx) = mpsc::unbounded_channel();
        let store = Arc::new(rest::Store::new(
            PathBuf::from(&spec.storage),
            &passwords,
            limits,
            stored_tx.clone(),
        ));
        store
            .repository()
            .prepare()
            .with_context(|| {
                format!(
                    "storage {} (the receiver's user must be able to write it: keep the default /var/lib/strackt-receiver, or add ReadWritePaths= with `systemctl edit strackt-receiver` and chown it to strackt-receiver)",
                    spec.storage
                )
            })?;
        let tcp = tokio::net::TcpListener::bind(&spec.listen)
            .await
            .with_context(|| format!("listening on {}", spec.listen))?;
        let tls = Arc::new(RwLock::new(tls));
        let listener = tls::TlsListener::new(tcp, tls.clone())?;
        for client in passwords.keys() {
            let swept = store.sweep(client);
            if swept > 0 {
                tracing::info!("removed {swept} cut-off upload(s) of {client}");
            }
            store.measure(client);
        }
        // Repositories that got snapshots before a restart get their retention pass too.
        for client in policy.keeps.keys() {
            if store.has_config(client).await {
                // `stored_rx` is alive right here (the retention task gets it below).
                let _ = stored_tx.send(client.clone());
            }
        }
        let (policy_tx, policy_rx) = watch::channel(policy);
        let retention = Retention {
            store: store.clone(),
            policy: policy_rx,
            vault: sources.vault.clone(),
            cache,
            processes: crate::host::processes::RealProcesses,
        };
        tokio::spawn(retention.run(stored_rx));
        let running = Running {
            sources,
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
            .layer(axum::extract::DefaultBodyLimit::max(512 << 20))
            .into_make_service_with_connect_info::<tls::Peer>();
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            // systemd then stops the unit at its start timeout: say why here.
            tracing::error!("telling systemd the receiver is ready: {e}");
        }
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                // Without the handler, serve on (SIGTERM still stops the process) rather than
                // stop at once.
                if let Err(e) = tokio::signal::ctrl_c().await {
                    tracing::error!("installing the Ctrl-C handler: {e}");
                    std::future::pending::<()>().await;
                }
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
    limits: rest::Limits,
}

/// The `receiver:` section of the definition in `file`.
fn receiver_spec(file: &Path) -> Result<ReceiverSpec, ReceiverError> {
    let text = DefinitionFile::new(file)
        .read_text()
        .map_err(io_err("reading", file))?;
    let def = crate::definition::parse(&text, file)?;
    def.definition()
        .receiver
        .clone()
        .ok_or_else(|| ReceiverError::NoSection(file.to_path_buf()))
}

/// The content of the regular file `path`, opened through [`crate::host::tree::open_file`]: a
/// link is followed only where root alone could have put it.
///
/// # Errors
/// A refused link, I/O failures; nothing, or no regular file, there reads as a missing file
/// always did ("No such file or directory (os error 2)").
fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = crate::host::tree::open_file(path)?
        .ok_or_else(|| std::io::Error::from(rustix::io::Errno::NOENT))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

/// Quotas and reserve of `spec` (checked by the definition's validation already).
fn limits(spec: &ReceiverSpec) -> Result<rest::Limits, ReceiverError> {
    let mut quotas = BTreeMap::new();
    for (name, client) in &spec.clients {
        if let Some(q) = client.quota.as_ref().or(spec.quota.as_ref()) {
            let bytes = parse_size(q).ok_or_else(|| ReceiverError::Quota(q.clone()))?;
            quotas.insert(name.clone(), bytes);
        }
    }
    let reserve = match parse_reserve(&spec.reserve) {
        Some(Ok(bytes)) => rest::Reserve::Bytes(bytes),
        Some(Err(percent)) => rest::Reserve::Percent(percent),
        None => return Err(ReceiverError::Reserve(spec.reserve.clone())),
    };
    Ok(rest::Limits { quotas, reserve })
}

impl Settings {
    /// # Errors
    /// The first problem, as the user should read it (file, line and field for the definition).
    fn load(sources: &Sources) -> Result<Settings, ReceiverError> {
        let spec = receiver_spec(&sources.definition)?;
        let passwords = passwords(&spec, &sources.secrets)?;
        let (certificate, key) = match &sources.tls {
            Some((c, k)) => (c.clone(), k.clone()),
            None => (
                PathBuf::from(&spec.tls.certificate),
                PathBuf::from(&spec.tls.key),
            ),
        };
        let tls = tls::server_config(&certificate, &key)?;
        let keeps: BTreeMap<String, KeepPolicy> = spec
            .clients
            .iter()
            .map(|(c, cl)| (c.clone(), cl.keep.as_ref().unwrap_or(&spec.keep).clone()))
            .filter(|(_, keep)| !keep.restic_flags().is_empty())
            .collect();
        let limits = limits(&spec)?;
        if !keeps.is_empty() && !sources.vault.has_key() {
            return Err(ReceiverError::NoTeamKey);
        }
        let settle = humantime::parse_duration(&spec.retention_after).map_err(|source| {
            ReceiverError::RetentionAfter {
                text: spec.retention_after.clone(),
                source,
            }
        })?;
        Ok(Settings {
            spec,
            passwords,
            tls,
            policy: Policy { keeps, settle },
            limits,
        })
    }
}

/// What a reload may change in the running receiver.
struct Running {
    sources: Sources,
    /// As served: `listen` and `storage` only change with a restart.
    spec: ReceiverSpec,
    store: Arc<rest::Store>,
    tls: tls::Current,
    policy: watch::Sender<Policy>,
}

impl Running {
    /// Reload on SIGHUP (`systemctl reload strackt-receiver`) and when the definition changes.
    /// Staged, the unit does the watching: `strackt-receiver-reload.path` reloads the unit,
    /// which stages again and then signals.
    fn spawn_reloads(self) -> anyhow::Result<Option<notify::RecommendedWatcher>> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let on_change = tx.clone();
        let watcher = if self.sources.staged {
            None
        } else {
            Some(
                crate::daemon::spawn_watcher(&self.sources.definition, move || {
                    // Fails only when the reload task below ended: the receiver is stopping.
                    let _ = on_change.send(());
                })
                .context("watching the definition")?,
            )
        };
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // Fails only when the reload task below ended: the receiver is stopping.
                let _ = tx.send(());
            }
        });
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // A lost notice leaves systemd's view of the reload wrong, never the receiver's
                // work: said, and the reload done anyway.
                if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Reloading]) {
                    tracing::warn!("telling systemd the receiver reloads: {e}");
                }
                self.reload();
                if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
                    tracing::warn!("telling systemd the receiver is ready: {e}");
                }
            }
        });
        Ok(watcher)
    }

    /// All or nothing: a definition, secret or certificate that does not load leaves the
    /// receiver serving exactly as before, and says why.
    fn reload(&self) {
        let new = match Settings::load(&self.sources) {
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
        self.store.set_clients(&new.passwords, new.limits);
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
fn passwords(
    spec: &ReceiverSpec,
    secrets: &Path,
) -> Result<BTreeMap<String, String>, ReceiverError> {
    spec.clients
        .iter()
        .map(|(name, c)| {
            let text = read_secret(secrets, &c.credentials.secret)
                .map_err(|e| ReceiverError::Secret(e.to_string()))?;
            match text.trim().split_once(':') {
                Some((user, password)) if user == name && !password.is_empty() => {
                    Ok((name.clone(), password.to_string()))
                }
                Some((user, _)) if user != name => Err(ReceiverError::SecretOfOther {
                    secret: c.credentials.secret.clone(),
                    user: user.to_string(),
                    client: name.clone(),
                }),
                _ => Err(ReceiverError::SecretForm {
                    secret: c.credentials.secret.clone(),
                    client: name.clone(),
                }),
            }
        })
        .collect()
}

/// When and how much retention forgets.
#[derive(Debug, Clone)]
struct Policy {
    /// The keep policy by client (clients without a policy keep everything).
    keeps: BTreeMap<String, KeepPolicy>,
    /// How long after a client's last snapshot.
    settle: Duration,
}

/// Forget and prune on the receiver, where clients cannot, running restic through `P` (the
/// fake in component tests).
struct Retention<P> {
    store: Arc<rest::Store>,
    policy: watch::Receiver<Policy>,
    vault: Vault,
    cache: PathBuf,
    processes: P,
}

impl<P: Processes + Clone> Retention<P> {
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

    /// One retention pass over `client`'s repository: list its snapshots with the times the
    /// receiver stored them, decide (`retention::select`), forget exactly those ids and prune.
    async fn pass(&self, client: &str) -> Result<(), ReceiverError> {
        // A reload may have dropped the client or its policy since the pass was due.
        let Some(keep) = self.policy.borrow().keeps.get(client).cloned() else {
            return Ok(());
        };
        let pruning = self
            .store
            .pruning(client)
            .ok_or(ReceiverError::UnknownClient)?;
        let _held = pruning.lock().await;
        let dir = self.store.repo(client);
        let repo = Repo::local(&dir, &self.vault, &self.cache, self.processes.clone());
        let stored_dir = Path::new(client).join("snapshots");
        let listed = repo
            .snapshots(&["strackt".to_string()], None)
            .await
            .map_err(ReceiverError::Restic)?;
        let mut snapshots = Vec::with_capacity(listed.len());
        for s in listed {
            // Gone meanwhile, or not ours to judge: left alone.
            let Ok(modified) = self
                .store
                .repository()
                .modified(&stored_dir.join(&s.id))
                .await
            else {
                continue;
            };
            let mut paths = s.paths.clone();
            paths.sort();
            snapshots.push(retention::Stored {
                id: s.id.clone(),
                group: (s.hostname.clone(), paths),
                stored: chrono::DateTime::<chrono::Utc>::from(modified),
                written: chrono::DateTime::parse_from_rfc3339(&s.time).ok(),
            });
        }
        let decision = retention::select(&snapshots, &keep, &chrono::Local);
        if !decision.doubtful.is_empty() {
            tracing::warn!(
                "retention for {client}: {} snapshot(s) dated after the receiver stored them (more than {} min) are kept and not counted: {} (a sender's clock far ahead, or a forged date; remove them by hand with restic forget if they are not real backups)",
                decision.doubtful.len(),
                retention::FUTURE_SKEW.num_minutes(),
                decision.doubtful.join(", ")
            );
        }
        if !decision.forget.is_empty() {
            let ids: Vec<&str> = decision.forget.iter().map(String::as_str).collect();
            repo.forget_ids_and_prune(&ids)
                .await
                .map_err(ReceiverError::Restic)?;
        }
        let size = tokio::task::spawn_blocking({
            let store = self.store.clone();
            let client = client.to_string();
            move || store.measure(&client)
        })
        .await
        .unwrap_or(0);
        tracing::info!(
            "retention for {client}: {} snapshot(s) forgotten and pruned, by the time the receiver stored them; repository now {}",
            decision.forget.len(),
            crate::backup::restic::bytes(size)
        );
        Ok(())
    }
}
