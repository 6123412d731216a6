//! The daemon's composition root: opens the state, builds the deployer, backups, control
//! socket, HTTP endpoints and signals, and runs the reconcile loop until told to stop.

use std::sync::Arc;

use anyhow::Context;

use super::{Daemon, Paths, Status, Trigger, Wake};
use crate::generation::Store;
use crate::host::definition::DefinitionFile;
use crate::host::RealMachine;
use crate::metrics::Metrics;
use crate::state::{State, StateHandle};

/// Run the daemon until SIGTERM/SIGINT; returns the process exit code.
///
/// # Errors
/// What stops it from starting (state database, sockets, signal handlers).
pub fn run(paths: Paths) -> anyhow::Result<i32> {
    // The reconcile loop runs on this thread (`block_on`) and may block in host calls (apt,
    // dpkg, shadow tools, nft) for minutes; everything spawned — the watchdog ping, the control
    // socket, signals, D-Bus — runs on one worker thread beside it, so a 45 s dpkg hook neither
    // gets strackt killed by its own watchdog nor freezes `strackt status`.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let store = Store::open(&paths.root).context("opening the state directory")?;
        let db = paths.root.join("state.db");
        let mut writer = State::open(&db).context("opening the state database")?;
        // Nothing a step printed keeps a secret in the operations log.
        writer.set_redactor(crate::state::Redactor::from_sources(
            std::path::Path::new(crate::definition::SECRETS_DIR),
            &[crate::backup::vault::Vault::new(&paths.root).key_path()],
        ));
        let state = StateHandle::new(writer);
        // The HTTP endpoint reads through a connection of its own (see api::http).
        let reader = StateHandle::new(
            State::open_reader(&db).context("opening the state database for reading")?,
        );
        let machine = RealMachine::connect(&paths.cache.join("debs"))
            .await
            .context("connecting to systemd over D-Bus")?;
        let (status_tx, status_rx) = tokio::sync::watch::channel(Status {
            health: "unknown".into(),
            ..Status::default()
        });
        let metrics = Arc::new(Metrics::new(status_rx.clone()));
        let listen = DefinitionFile::new(&paths.definition)
            .read_text()
            .ok()
            .and_then(|t| crate::definition::parse(&t, &paths.definition).ok())
            .map(|d| d.definition().strackt.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:7477".into());
        let (req_tx, req_rx) = tokio::sync::mpsc::channel(16);
        let deployer = crate::deploy::Deployer::new(
            state.clone(),
            Arc::new(machine.another()),
            paths.definition.clone(),
            paths.root.clone(),
            metrics.clone(),
        );
        deployer.recover().await;
        let backups = crate::backup::Backups::new(
            state.clone(),
            deployer.clone(),
            &paths.root,
            &paths.cache,
            Arc::new(status_tx.clone()),
        );
        backups.spawn_scheduler();
        backups.spawn_generation_bundles();
        crate::api::control::serve(
            &paths.socket,
            req_tx,
            status_rx.clone(),
            state.clone(),
            deployer,
            backups,
            paths.root.clone(),
        )
        .context("binding the control socket")?;
        match listen.parse() {
            Ok(addr) => {
                if let Err(e) =
                    crate::api::http::serve(addr, status_rx.clone(), reader, metrics.clone()).await
                {
                    tracing::error!("HTTP endpoint on {listen} not available: {e}");
                }
            }
            Err(e) => tracing::error!("HTTP endpoint: bad address {listen}: {e}"),
        }
        let wake = Arc::new(Wake::default());
        let woken = wake.clone();
        let _watcher =
            super::spawn_watcher(&paths.definition, move || woken.wake(Trigger::FileChange))
                .context("watching the definition directory")?;
        let shutdown = Arc::new(tokio::sync::Notify::new());
        spawn_signals(wake.clone(), shutdown.clone())?;
        super::spawn_watchdog();
        let mut d = Daemon::new(paths, store, state, machine, status_tx, metrics);
        d.startup().await;
        // Unheard, systemd times the start out and stops strackt: the journal must say why.
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::error!("telling systemd that strackt is ready: {e}");
        }
        tracing::info!("strackt ready");
        super::run_loop(&mut d, wake, req_rx, shutdown).await;
        // Best-effort: the process exits next, which systemd sees anyway.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        Ok(0)
    })
}

fn spawn_signals(wake: Arc<Wake>, shutdown: Arc<tokio::sync::Notify>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            wake.wake(Trigger::Signal);
        }
    });
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        // notify_one keeps a permit: the loop sees it after the pass in progress finishes.
        shutdown.notify_one();
    });
    Ok(())
}
