//! Recovery at start: what a killed deploy left behind (half-built releases, validation units,
//! unit files of an older strackt) is removed or stopped.
//!
//! Owns only that clean-up after a restart. It must not build, switch or roll back a release,
//! nor touch the live release or its units: a deploy that was interrupted is recorded as such
//! and left for the user to run again.

use crate::definition::ServeMode;
use crate::host::{JobKind, Machine, Systemd};
use layout::AppDirs;

use super::{layout, units, Deployer};

impl<M: Machine> Deployer<M> {
    /// After a restart: releases a killed deploy left half-built are removed, and validation
    /// units are stopped.
    pub async fn recover(&self) {
        let left = match self.state.call(|s| s.interrupt_building()).await {
            Ok(l) => l,
            Err(e) => return tracing::error!("recovering deploys: {e}"),
        };
        let def = self.load().ok();
        for (app, id) in left {
            if let Some(spec) = def.as_ref().and_then(|d| d.definition().apps.get(&app)) {
                let dirs = AppDirs::new(&spec.path);
                if dirs.live() != Some(id) {
                    if spec.service.mode == ServeMode::Proxy {
                        // Cut off during its validation boot or start: it runs on, serving no one.
                        self.stop_release(&app, id).await;
                    }
                    match dirs.remove_release(id) {
                        Ok(()) => tracing::info!(
                            "removed release {id} of {app}, left half-built by a restart"
                        ),
                        Err(e) => tracing::warn!("removing release {id} of {app}: {e}"),
                    }
                    let data = self.app_data(&app);
                    if let Some(reason) = self.interrupted_migration(&app, spec, &data, id).await {
                        tracing::error!("release {id} of {app}: {reason}");
                    } else if let Err(e) = data.remove_release(id) {
                        tracing::warn!("removing the private files of release {id} of {app}: {e}");
                    }
                    // Killed between the two flips of a switch: the environment follows the
                    // release `current` points at.
                    if let Err(e) = data.flip(dirs.live()) {
                        tracing::warn!("pointing {app}'s environment at its live release: {e}");
                    }
                }
            }
        }
        // Validation units left running by a strackt that was killed during a validation
        // boot (transient: stopping them is all it takes, systemd collects them).
        let pattern = format!("{}*", units::VALIDATE_PREFIX);
        match self.machine.systemd().units_matching(&pattern).await {
            Ok(left) => {
                for unit in left {
                    // One that cannot be stopped runs on, serving no one: said, as every other
                    // clean-up here that fails is.
                    if let Err(e) = self.machine.systemd().run_job(JobKind::Stop, &unit).await {
                        tracing::warn!("stopping {unit}, left by a validation boot: {e}");
                    }
                    self.machine.systemd().reset_failed(&unit).await;
                }
            }
            Err(e) => tracing::warn!("looking for validation units left running: {e}"),
        }
        // Files an older strackt wrote for its validation units.
        let stale = self
            .machine
            .systemd()
            .runtime_unit_files(units::VALIDATE_PREFIX);
        for unit in &stale {
            if let Err(e) = self.machine.systemd().run_job(JobKind::Stop, unit).await {
                tracing::warn!("stopping {unit}, left by a validation boot: {e}");
            }
            // Safe to ignore: nothing starts a unit from a file left there (none is enabled),
            // the directory is emptied at boot, and the next start of strackt tries again.
            let _ = self.machine.systemd().remove_runtime_unit_file(unit);
            self.machine.systemd().reset_failed(unit).await;
        }
        if !stale.is_empty() {
            // Safe to ignore: it only makes systemd forget the units whose files went; the
            // next daemon-reload (any deploy or switch) does the same.
            let _ = self.machine.systemd().daemon_reload().await;
        }
    }
}
