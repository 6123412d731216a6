//! A deploy that failed: the database put back from the pre-migrate dump when the migration
//! had started (the decision is [`super::outcome`]'s), then the failed release removed; a
//! deploy cut off after its dump keeps the dump for the operator.

use crate::host::Machine;
use std::path::PathBuf;

use super::layout::{AppData, AppDirs};
use super::preflight::Prepared;
use super::{database, outcome, DeployError, Deployer, Progress};
use crate::definition::AppSpec;
use crate::state::ReleaseState;

impl<M: Machine> Deployer<M> {
    /// After a failed deploy of release `id`: the database put back from the pre-migrate dump
    /// (`migrating`) when the migration had started (see [`outcome::after_failure`]), then the
    /// release deleted — unless it is still live (switching back failed), and keeping its
    /// private files when the dump is the only way back. Returns the operation's reason: `why`
    /// itself when the database was untouched, else [`DeployError::Migrated`] saying what
    /// became of it.
    pub(super) async fn after_failure(
        &self,
        p: &mut Progress,
        (app, spec, prepared): (&str, &AppSpec, &Prepared),
        (dirs, data): (&AppDirs, &AppData),
        id: u64,
        migrating: Option<PathBuf>,
        why: DeployError,
    ) -> DeployError {
        let live = dirs.live() == Some(id);
        let decision = outcome::after_failure(outcome::AtFailure {
            migrated: migrating.is_some(),
            restore_on_failure: spec
                .steps
                .migrate
                .as_ref()
                .is_none_or(|m| m.restore_on_failure()),
            failed_release_live: live,
        });
        let dump = migrating.unwrap_or_else(|| data.dump(id));
        let restored = if decision == outcome::Database::Restore {
            let name = spec.database.as_ref().map_or("", |d| d.name.as_str());
            let put_back = p
                .step(
                    "restore-database",
                    &format!("{name} from the pre-migrate dump {}", dump.display()),
                    database::restore(self.machine.processes(), &dump, &prepared.db_env),
                )
                .await;
            Some(match put_back {
                Ok(()) => outcome::Restored::Yes,
                Err(e) => outcome::Restored::Failed(e),
            })
        } else {
            None
        };
        let by_hand = spec
            .database
            .as_ref()
            .map_or_else(String::new, |db| outcome::by_hand(&dump, db, &self.secrets));
        let reason = outcome::reason(
            &why.to_string(),
            decision,
            restored.as_ref(),
            &dump,
            &by_hand,
        );
        // A failed release never counts: it is deleted, unless (switch-back failed) it is what
        // `current` still points at. Its private files go with it unless they hold the only
        // way back to the database as it was.
        if !live {
            if let Err(e) = dirs.remove_release(id) {
                tracing::warn!("removing failed release {id} of {app}: {e}");
            }
            if outcome::keep_dump(decision, restored.as_ref()) {
                tracing::error!("{app}: {reason}");
            } else if let Err(e) = data.remove_release(id) {
                tracing::warn!("removing the private files of failed release {id} of {app}: {e}");
            }
        }
        if decision == outcome::Database::Untouched {
            // The reason is `why` itself: the failure keeps its kind.
            why
        } else {
            DeployError::Migrated(reason)
        }
    }

    /// Release `id`'s deploy was cut off (strackt stopped) after its pre-migrate dump: the
    /// migration may have run, and putting the database back is the operator's call (at
    /// startup a restore would hold up strackt itself). The dump is kept, and the release's
    /// reason says so with the command; `Some(reason)` then, `None` when there is no dump.
    pub(super) async fn interrupted_migration(
        &self,
        app: &str,
        spec: &AppSpec,
        data: &AppData,
        id: u64,
    ) -> Option<String> {
        let db = spec.database.as_ref()?;
        let a = app.to_string();
        let rows = self.state.call(move |s| s.releases(&a)).await.ok()?;
        let dump = data.dump(id);
        if !rows.iter().any(|r| r.id == id && r.dump.is_some()) || !dump.is_file() {
            return None;
        }
        let reason = outcome::interrupted(&dump, &outcome::by_hand(&dump, db, &self.secrets));
        let (a, r) = (app.to_string(), reason.clone());
        self.state
            .write_or_log(
                format!("recording release {id} of {app} failed"),
                move |s| s.set_release(&a, id, ReleaseState::Failed, Some(&r)),
            )
            .await;
        Some(reason)
    }
}
