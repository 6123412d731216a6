//! Release rollback: `app` switched back to an earlier release, its database put back from the
//! pre-migrate dump when asked.
//!
//! Owns the rollback operation only: it checks everything before any change, and goes through
//! [`switch`](super::switch) like a deploy. It must not build a release or run a migration.

use crate::host::Machine;
use std::path::Path;
use std::sync::Arc;

use crate::ops::Operation;
use crate::state::{ReleaseRow, ReleaseState};
use layout::AppDirs;

use super::{database, layout, preflight, take_over_env, DeployError, Deployer};

impl<M: Machine> Deployer<M> {
    /// Switch `app` back to release `to` (default: the one live before), restoring the database
    /// dump taken before the later migration when `with_database`.
    ///
    /// # Errors
    /// Nothing to roll back to, a missing dump, a deploy in progress — all before any change.
    pub async fn rollback_release(
        self: &Arc<Self>,
        app: String,
        to: Option<u64>,
        with_database: bool,
    ) -> Result<Operation, DeployError> {
        let def = self.load()?;
        let spec = Self::app(&def, &app)?;
        let _claim = self.claim("rollback-release", &app)?;
        let dirs = AppDirs::new(&spec.path);
        let live = dirs
            .live()
            .ok_or_else(|| DeployError::NoLiveRelease(app.clone()))?;
        let a = app.clone();
        let rows = self.state.call(move |s| s.releases(&a)).await?;
        let good = |r: &&ReleaseRow| r.state.kept() && dirs.has_release(r.id);
        let target = match to {
            Some(id) => rows
                .iter()
                .filter(good)
                .find(|r| r.id == id)
                .ok_or_else(|| DeployError::ReleaseNotFound {
                    app: app.clone(),
                    id,
                })?,
            None => rows
                .iter()
                .filter(good)
                .find(|r| r.id != live)
                .ok_or_else(|| DeployError::NoEarlierRelease(app.clone()))?,
        }
        .id;
        if target == live {
            return Err(DeployError::AlreadyLive { app, id: target });
        }
        let data = self.app_data(&app);
        let restore = if with_database {
            // The dump taken before the first migration after `target` holds the database
            // as `target` left it.
            let none = || DeployError::NoDump(target);
            let after = rows
                .iter()
                .filter(|r| r.id > target && r.id <= live.max(target) && r.dump.is_some())
                .filter(good)
                .min_by_key(|r| r.id)
                .ok_or_else(none)?
                .id;
            let dump = self
                .dump_of(&app, &dirs, &data, after)
                .await?
                .ok_or_else(none)?
                .display()
                .to_string();
            let db = preflight::resolve_database(&spec, &self.secrets)?
                .ok_or_else(|| DeployError::NoDatabase(app.clone()))?;
            Some((dump, db))
        } else {
            None
        };
        let mut p = self.start("rollback-release", &app).await?;
        let result = async {
            // A release made before environment files moved to strackt's state: its file is
            // taken over first, so a refusal comes before the database is touched.
            if !data.env_file(target).is_file() {
                let old = dirs.legacy_file(target, "env").display().to_string();
                p.step("take-over", &old, async {
                    let note = take_over_env(&dirs, &data, target).await;
                    note.map(|n| ((), n.unwrap_or_default()))
                        .map_err(|e| (e.to_string(), String::new()))
                })
                .await
                .map_err(DeployError::Step)?;
            }
            if let Some((dump, db)) = &restore {
                p.step(
                    "restore-database",
                    dump,
                    database::restore(self.machine.processes(), Path::new(dump), db),
                )
                .await
                .map_err(DeployError::Step)?;
            }
            self.switch(&mut p, &app, &spec, (&dirs, &data), target, Some(live))
                .await?;
            let db_note = if restore.is_some() {
                " with its database"
            } else {
                ""
            };
            Ok::<_, DeployError>(format!(
                "rolled {app} back from release {live} to {target}{db_note}"
            ))
        }
        .await;
        if result.is_ok() {
            let a = app.clone();
            self.state
                .write_or_log(
                    format!("recording release {target} of {app} live"),
                    move |s| s.set_release(&a, target, ReleaseState::Live, None),
                )
                .await;
        }
        Ok(p.finish(&result.map_err(String::from)).await)
    }
}
