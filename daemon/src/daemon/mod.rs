//! daemon/ — the single reconcile loop and the pass it runs.
//!
//! One task owns the host: it selects on shutdown, the timer, wake-ups (definition file
//! changed, SIGHUP) and requests from the control socket, and runs one pass at a time. Bursts
//! of wake-ups coalesce into one extra pass (`Notify` keeps one permit). A pass takes no
//! input beyond its trigger: it re-reads the definition and the host every time, and it never
//! retries inside itself; the next activation does. Shutdown is checked between passes only,
//! so a switch is never cut in half by `systemctl stop strackt`. Once the loop has been idle
//! for two seconds, it hands back the memory the last pass left resident (see `memory`).

mod build;
mod conclude;
mod control;
mod decide;
mod error;
mod generations;
mod memory;
mod pass;
mod preview;
mod record;
mod run;
mod save;
mod startup;
#[cfg(test)]
mod tests;
mod updates;
mod watch;

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, Notify};

pub use control::{
    deadline_in, Held, Hold, HoldChange, PendingConfirm, MAX_CONFIRM_SECS, MAX_HOLD_SECS,
};
pub use error::{ControlError, OutOfRange, UpdateError};
pub use pass::Daemon;
pub use preview::PlanView;

pub use memory::limit_arenas;
pub use updates::{Candidate, PackageUpdate, UpdatesReport, Upgrade, UpgradeOutcome};

pub use crate::paths::Paths;
pub use crate::status::{Request, Status};

/// What started a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The daemon started.
    Startup,
    /// The reconcile timer.
    Timer,
    /// The definition file changed.
    FileChange,
    /// SIGHUP / `systemctl reload strackt`.
    Signal,
    /// `strackt apply` / `strackt rollback`.
    Cli,
    /// `strackt upgrade`, or the `strackt.updates` policy with `apply: all`.
    Upgrade,
    /// `strackt upgrade --security`, or the policy with `apply: security`.
    Security,
    /// `strackt edit` saved the definition.
    Edit,
}

impl Trigger {
    /// As stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Timer => "timer",
            Trigger::FileChange => "file-change",
            Trigger::Signal => "signal",
            Trigger::Cli => "cli",
            Trigger::Upgrade => "upgrade",
            Trigger::Security => "security",
            Trigger::Edit => "edit",
        }
    }
}

impl crate::backup::StatusBoard for tokio::sync::watch::Sender<Status> {
    fn digest(&self) -> Option<String> {
        self.borrow().digest.clone()
    }

    fn set_backup(&self, app: &str, f: &mut dyn FnMut(&mut crate::backup::BackupState)) {
        self.send_modify(|s| f(s.backups.entry(app.to_string()).or_default()));
    }

    fn live_generations(&self) -> futures_util::stream::BoxStream<'static, Option<u64>> {
        use futures_util::StreamExt;
        // The first item is the generation now; each next one waits for a change (a change
        // made while the previous item was handled is not lost: it is not marked seen yet).
        futures_util::stream::unfold((self.subscribe(), true), |(mut rx, first)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let now = rx.borrow_and_update().current_generation;
            Some((now, (rx, false)))
        })
        .boxed()
    }
}

/// Wake-ups from the watcher and signals, coalesced.
#[derive(Debug, Default)]
pub struct Wake {
    notify: Notify,
    reason: std::sync::Mutex<Option<Trigger>>,
}

impl Wake {
    /// Ask for a pass.
    pub fn wake(&self, why: Trigger) {
        *self
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
        self.notify.notify_one();
    }
    async fn wait(&self) -> Trigger {
        self.notify.notified().await;
        self.reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or(Trigger::Signal)
    }
}

/// Run the loop until `shutdown` fires.
pub async fn run_loop<M: crate::host::Machine>(
    daemon: &mut Daemon<M>,
    wake: Arc<Wake>,
    mut requests: mpsc::Receiver<Request>,
    shutdown: Arc<Notify>,
) {
    let mut next = tokio::time::Instant::now() + daemon.next_wait();
    daemon.set_next_pass(daemon.next_wait());
    // When to release memory: after every pass or request, once nothing followed it for a while.
    let mut release_at = memory::idle_deadline();
    loop {
        let updates_due = daemon.updates_wait();
        let trigger = tokio::select! {
            biased;
            _ = shutdown.notified() => break,
            _ = tokio::time::sleep_until(release_at.unwrap_or(next)), if release_at.is_some() => {
                release_at = None;
                let bytes = memory::release();
                tracing::debug!("idle: released {} kB of mapped files and free heap", bytes / 1024);
                continue;
            }
            Some(req) = requests.recv() => {
                // Each reply is best-effort: a caller that hung up (a CLI killed mid-wait) no
                // longer wants it, and what was done is in the log and `/status` anyway.
                match req {
                    Request::Apply(confirm, reply) => { let _ = reply.send(daemon.apply(confirm).await); }
                    Request::Confirm(reply) => { let _ = reply.send(daemon.confirm().await.map_err(Into::into)); }
                    Request::Rollback(id, reply) => { let _ = reply.send(daemon.rollback(id).await.map_err(Into::into)); }
                    Request::Plan(input, reply) => { let _ = reply.send(daemon.plan(input).await.map_err(Into::into)); }
                    Request::Save { definition, base_sha256, reply } => { let _ = reply.send(daemon.save(definition, base_sha256).await.map_err(Into::into)); }
                    Request::Hold(change, reply) => { let _ = reply.send(daemon.set_hold(change).await.map_err(Into::into)); }
                    Request::Updates(reply) => { let _ = reply.send(daemon.check_updates(true).await.map_err(Into::into)); }
                    Request::Upgrade { security, packages, reply } => { let _ = reply.send(daemon.upgrade(security, packages).await.map_err(Into::into)); }
                }
                // A hold moves the moment its end must be acted on.
                next = tokio::time::Instant::now() + daemon.next_wait();
                daemon.set_next_pass(daemon.next_wait());
                release_at = memory::idle_deadline();
                continue;
            }
            why = wake.wait() => why,
            _ = tokio::time::sleep_until(next) => Trigger::Timer,
            _ = tokio::time::sleep(updates_due) => {
                daemon.scheduled_updates().await;
                release_at = memory::idle_deadline();
                continue;
            }
        };
        daemon.pass(trigger, false).await;
        next = tokio::time::Instant::now() + daemon.next_wait();
        daemon.set_next_pass(daemon.next_wait());
        release_at = memory::idle_deadline();
    }
}

/// Ping the systemd watchdog at half its period, for as long as the runtime lives.
pub fn spawn_watchdog() {
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        let period = timeout / 2;
        tokio::spawn(async move {
            loop {
                // Best-effort: a ping that does not arrive shows as systemd's own watchdog
                // timeout in the journal, and logging each miss would flood it.
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                tokio::time::sleep(period).await;
            }
        });
    }
}

pub use run::run;
pub use watch::spawn_watcher;
