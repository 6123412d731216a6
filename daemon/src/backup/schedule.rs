//! The schedule loop: when each app's backup is due, from the definition read again on every
//! turn, and starting the runs that are.
//!
//! Owns deciding when a scheduled run starts and what `/status` shows as the next run. It must
//! not take a run itself (it starts the same operation as `strackt backup`), and a failed
//! start is recorded for the app, never a reason to stop the loop.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::definition::schedule::Schedule;
use crate::host::clock::Clock;
use crate::host::Machine;

use super::Backups;

/// How often the schedule loop re-reads the definition when nothing is due sooner.
const RECHECK: Duration = Duration::from_secs(15);

impl<M: Machine> Backups<M> {
    /// Start the schedule loop: each app's backups (and verifies) run at their times; a run
    /// missed while the daemon was down runs once at start; runs of one app never overlap.
    pub fn spawn_scheduler(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let wait = me.tick().await;
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// Start what is due; return how long to sleep. The definition is re-read every time, so
    /// a schedule edit takes effect within `RECHECK`.
    async fn tick(self: &Arc<Self>) -> Duration {
        let Ok(def) = self.deployer.load() else {
            return RECHECK;
        };
        let now = self.machine().clock().now();
        let mut wait = RECHECK;
        for (app, spec) in &def.definition().backups {
            for (kind, text) in [
                ("backup", Some(&spec.schedule)),
                ("verify", spec.verify.as_ref()),
            ] {
                let Some(text) = text else { continue };
                let Ok(schedule) = Schedule::parse(text, &spec.timezone) else {
                    continue;
                };
                let key = format!("schedule:{kind}:{app}");
                let k = key.clone();
                let last = self
                    .state
                    .call(move |s| s.meta(&k))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| t.with_timezone(&Utc));
                let Some(last) = last else {
                    // First sight of this schedule: start counting from now.
                    let v = now.to_rfc3339();
                    self.state
                        .write_or_log(format!("recording {key}"), move |s| {
                            s.set_meta(&key, Some(&v))
                        })
                        .await;
                    continue;
                };
                let Some(due) = schedule.next_after(last) else {
                    continue;
                };
                if due <= now {
                    // Due (or missed while down): run once, and count every slot up to now as
                    // handled.
                    let v = now.to_rfc3339();
                    self.state
                        .write_or_log(format!("recording {key}"), move |s| {
                            s.set_meta(&key, Some(&v))
                        })
                        .await;
                    let (me, app) = (self.clone(), app.clone());
                    tokio::spawn(async move {
                        let result = if kind == "backup" {
                            me.start(&app, "schedule").await
                        } else {
                            me.start_verify(&app, "schedule").await
                        };
                        if let Err(e) = result {
                            tracing::warn!("scheduled {kind} of {app} not run: {e}");
                        }
                    });
                    continue;
                }
                if kind == "backup" {
                    let next = due.to_rfc3339();
                    self.set_state(app, |s| s.next_run = Some(next));
                }
                let until = (due - now).to_std().unwrap_or_default();
                wait = wait.min(until + Duration::from_millis(200));
            }
        }
        wait
    }
}
