//! The switch: `current` pointed at a release, its environment file, the live units and the
//! health check after it, going back to the previous release when that fails; and pruning old
//! releases.
//!
//! Owns `current`, the live app units and which releases are kept. It must not build or
//! migrate (that is `build.rs`), and never deletes the live release or the last good one.

use std::path::Path;

use crate::definition::{AppSpec, HealthSpec, ServeMode};
use crate::host::health::Health;
use crate::host::systemd::UNIT_DIR;
use crate::host::{Files, JobKind, Machine, Systemd};
use crate::ops::Progress;
use crate::state::ReleaseState;
use layout::{AppData, AppDirs};

use super::{health_url, layout, take_over_env, units, DeployError, Deployer};

impl<M: Machine> Deployer<M> {
    /// The `health` step after a switch: the app's health path answers through `listen`,
    /// whichever mode serves it.
    pub(super) async fn live_health(
        &self,
        p: &mut Progress,
        spec: &AppSpec,
    ) -> Result<(), DeployError> {
        let url = health_url(&spec.service.listen, &spec.service.health);
        let probe = HealthSpec {
            http: Some(url.clone()),
            ..HealthSpec::default()
        };
        p.step("health", &url, async {
            self.machine
                .health()
                .check(&probe, spec.service.health_within())
                .await
                .map(|()| ((), String::new()))
                .map_err(|e| (e.to_string(), String::new()))
        })
        .await
        .map_err(DeployError::Step)
    }

    /// Point `current` at `to` and hand traffic to it; when that fails once `current` was
    /// touched, or its health check fails, go back to `back` the same way. Both must have
    /// their environment file in strackt's state (one made before it moved there is taken
    /// over first, see [`layout::adopt_legacy`]), else nothing changes.
    pub(super) async fn switch(
        &self,
        p: &mut Progress,
        app: &str,
        spec: &AppSpec,
        (dirs, data): (&AppDirs, &AppData),
        to: u64,
        back: Option<u64>,
    ) -> Result<(), DeployError> {
        if spec.service.mode == ServeMode::Proxy {
            return self
                .proxy_switch(p, app, spec, (dirs, data), to, back)
                .await;
        }
        let pair = units::render(
            app,
            spec,
            &format!("{}{app}", units::LIVE_PREFIX),
            &spec.service.listen,
            &dirs.current(),
            &data.live_env_file(),
        );
        let label = format!("release {to}");
        let flip = |id: Option<u64>| -> Result<(), (String, String)> {
            let fail = |e: crate::host::HostError| (e.to_string(), String::new());
            data.flip(id).map_err(fail)?;
            dirs.flip(id).map_err(fail)
        };
        // Whether `current` may point at `to`: a failure from then on switches back.
        let mut flipped = false;
        let switched = p
            .step("switch", &label, async {
                let note = take_over_env(dirs, data, to).await;
                let mut log = note
                    .map_err(|e| (e.to_string(), String::new()))?
                    .unwrap_or_default();
                // The release to go back to is the live one: a problem with it is no reason to
                // keep the new one from going live, only worth telling.
                if let Some(id) = back {
                    match take_over_env(dirs, data, id).await {
                        Ok(note) => log.push_str(&note.unwrap_or_default()),
                        Err(e) => log.push_str(&format!("switching back would fail: {e}\n")),
                    }
                }
                log.push_str(&self.retire_proxy(app, back).await?);
                self.install_units(&pair).await?;
                flipped = true;
                flip(Some(to))?;
                self.machine
                    .systemd()
                    .run_job(JobKind::Restart, &pair.service)
                    .await
                    .map_err(|e| (e.to_string(), String::new()))?;
                Ok(((), log))
            })
            .await;
        let why = match switched {
            Err(why) if !flipped => return Err(DeployError::Step(why)),
            Err(why) => why,
            Ok(()) => {
                let Err(why) = self.live_health(p, spec).await else {
                    return Ok(());
                };
                why.to_string()
            }
        };
        let back_label = back.map_or("no release".to_string(), |b| format!("release {b}"));
        let went_back = p
            .step("switch-back", &back_label, async {
                flip(back)?;
                let job = if back.is_some() {
                    JobKind::Restart
                } else {
                    JobKind::Stop
                };
                self.machine
                    .systemd()
                    .run_job(job, &pair.service)
                    .await
                    .map_err(|e| (e.to_string(), String::new()))?;
                Ok(((), String::new()))
            })
            .await;
        Err(match went_back {
            Ok(()) => DeployError::SwitchedBack {
                why,
                back: back_label,
            },
            Err(error) => DeployError::SwitchBackFailed { why, error },
        })
    }

    /// Write the live units when they changed, and have the socket enabled and listening.
    async fn install_units(&self, pair: &units::UnitPair) -> Result<(), (String, String)> {
        let sd = |e: crate::host::HostError| (e.to_string(), String::new());
        let mut changed = false;
        let mut socket_changed = false;
        for (name, text) in [
            (&pair.socket, &pair.socket_text),
            (&pair.service, &pair.service_text),
        ] {
            let path = Path::new(UNIT_DIR).join(name);
            let files = self.machine.files();
            if files.read(&path).ok().flatten().as_deref() != Some(text.as_bytes()) {
                files
                    .write(&path, text.as_bytes(), 0o644, 0, 0)
                    .map_err(sd)?;
                changed = true;
                socket_changed |= name == &pair.socket;
            }
        }
        if changed {
            self.machine.systemd().daemon_reload().await.map_err(sd)?;
        }
        let socket = self
            .machine
            .systemd()
            .unit_state(&pair.socket)
            .await
            .map_err(sd)?;
        if !socket.is_enabled() {
            self.machine
                .systemd()
                .enable(std::slice::from_ref(&pair.socket))
                .await
                .map_err(sd)?;
        }
        // A new listening address needs the socket re-bound; otherwise it stays open (and
        // keeps its queue) across the service restart, and a listening one needs no job.
        let job = match (socket.is_active(), socket_changed) {
            (true, false) => return Ok(()),
            (true, true) => JobKind::Restart,
            (false, _) => JobKind::Start,
        };
        self.machine
            .systemd()
            .run_job(job, &pair.socket)
            .await
            .map_err(sd)
    }

    pub(super) async fn prune(&self, app: &str, spec: &AppSpec, dirs: &AppDirs, data: &AppData) {
        let a = app.to_string();
        let Ok(rows) = self.state.call(move |s| s.releases(&a)).await else {
            return;
        };
        for id in layout::prunable(&rows, dirs.live(), spec.keep_releases) {
            // A release with its build output can be many thousand files: off the daemon's
            // single thread, which also answers the status endpoint and pings the watchdog.
            let d = dirs.clone();
            let removed = tokio::task::spawn_blocking(move || d.remove_release(id))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            if let Err(e) = removed {
                tracing::warn!("pruning release {id} of {app}: {e}");
                continue;
            }
            // Its environment file and dump go with it (a dump is kept for going back to the
            // release before it, which is then gone too).
            let d = data.clone();
            let removed = tokio::task::spawn_blocking(move || d.remove_release(id))
                .await
                .unwrap_or_else(|e| Err(e.into()));
            if let Err(e) = removed {
                tracing::warn!("pruning release {id} of {app}: {e}");
            }
            let a = app.to_string();
            self.state
                .write_or_log(
                    format!("recording release {id} of {app} removed"),
                    move |s| s.set_release(&a, id, ReleaseState::Removed, None),
                )
                .await;
        }
    }
}
