//! `strackt receiver`: keeps other servers' backups (its own unit, `strackt-receiver.service`).
//!
//! Serves restic's REST protocol over TLS (`rest.rs`, `tls.rs`) from the definition's
//! `receiver:` section, one repository per client, append-only; and applies the retention
//! policy itself, with the team key from this server's vault, a while after a client's last
//! snapshot arrived. It reads the definition once at start (`systemctl restart
//! strackt-receiver` after changing `receiver:`) and never touches the rest of the server.

pub mod rest;
pub mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backup::restic::Repo;
use crate::backup::vault::Vault;
use crate::daemon::Paths;
use crate::definition::{ReceiverSpec, SECRETS_DIR};
use crate::deploy::preflight::read_secret;

/// Run the receiver until SIGTERM.
///
/// # Errors
/// No or a broken `receiver:` section, missing secrets or TLS files, a port in use, retention
/// configured without the team key — all before anything is served.
pub fn run(paths: &Paths) -> anyhow::Result<i32> {
    let file = &paths.definition;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let def = match crate::definition::parse(&text, file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    let spec = def
        .definition()
        .receiver
        .clone()
        .ok_or_else(|| anyhow!("{} has no `receiver:` section", file.display()))?;
    let passwords = passwords(&spec, Path::new(SECRETS_DIR)).map_err(|e| anyhow!(e))?;
    let config = tls::server_config(Path::new(&spec.tls.certificate), Path::new(&spec.tls.key))
        .map_err(|e| anyhow!(e))?;
    let vault = Vault::new(&paths.root);
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
        return Err(anyhow!("retention (`receiver.keep`) needs the team's backup key on this server: run `strackt backup key import`"));
    }
    let settle = humantime::parse_duration(&spec.retention_after)
        .with_context(|| format!("receiver.retention_after {:?}", spec.retention_after))?;
    // Hashing uploads is CPU work; two workers keep one client's upload from stalling another's.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
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
        let listener = tls::TlsListener::new(tcp, config)?;
        let retention = Retention {
            store: store.clone(),
            keeps,
            settle,
            vault,
            cache: paths.cache.join("receiver"),
        };
        for client in passwords.keys() {
            let swept = rest::sweep(&store.repo(client));
            if swept > 0 {
                tracing::info!("removed {swept} cut-off upload(s) of {client}");
            }
        }
        // Repositories that got snapshots before a restart get their retention pass too.
        for client in retention.keeps.keys() {
            if store.repo(client).join("config").exists() {
                let _ = stored_tx.send(client.clone());
            }
        }
        tokio::spawn(retention.run(stored_rx));
        let app = axum::Router::new()
            .fallback(rest::handle)
            .with_state(store)
            // restic packs are tens of MiB at most; axum's 2 MiB default would refuse them.
            .layer(axum::extract::DefaultBodyLimit::max(512 << 20));
        tracing::info!(
            "receiving backups on https://{} for {} client(s) into {}",
            spec.listen,
            passwords.len(),
            spec.storage
        );
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

/// Forget and prune on the receiver, where clients cannot.
struct Retention {
    store: Arc<rest::Store>,
    /// restic keep flags by client (clients without a policy keep everything).
    keeps: BTreeMap<String, Vec<String>>,
    settle: Duration,
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
                    Some(c) if self.keeps.contains_key(&c) => {
                        due.insert(c, Instant::now() + self.settle);
                    }
                    Some(_) => {}
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
                            tracing::warn!("retention for {client} failed, trying again in {}: {e}", humantime::format_duration(self.settle));
                            due.insert(client, Instant::now() + self.settle);
                        }
                    }
                }
            }
        }
    }

    async fn pass(&self, client: &str) -> Result<(), String> {
        let Some(keep) = self.keeps.get(client) else {
            return Ok(());
        };
        let pruning = self.store.pruning(client).ok_or("unknown client")?;
        let _held = pruning.lock().await;
        let repo = Repo::local(&self.store.repo(client), &self.vault, &self.cache);
        let out = repo.forget(None, None, keep).await?;
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
