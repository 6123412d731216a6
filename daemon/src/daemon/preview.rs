//! daemon/preview — `strackt plan`: what the next pass would do, computed by the same code as
//! a pass (load, lock, observe, plan) without building or switching.
//!
//! Owns: what goes into a [`PlanView`] (the type is `status`'s) and the lock-out guard's
//! question to the host. Must not: change the host, the store or the state database.

use super::error::ControlError;
use super::pass::{Daemon, PINNED};
use crate::apply::apps::predicted_restarts;
use crate::apply::{observe, Apps, Ownership};
use crate::definition::{parse, ValidatedDefinition};
use crate::generation::diff::{diff, read_stored, GenerationDiff, Sides};
use crate::generation::render;
use crate::host::files::sha256_hex;
use crate::host::firewall::Firewall;
use crate::host::Machine;
use crate::ops::{StepOutcome, StepRecord};
use crate::plan::{lockout, plan, Plan};
pub use crate::status::PlanView;

impl<M: Machine> Daemon<M> {
    /// The lock-out guard for a new definition's firewall (see `plan::lockout`).
    pub(super) fn lockout_problem(&self, def: &ValidatedDefinition) -> Option<String> {
        let fw = def.definition().firewall.as_ref()?;
        match self.machine().firewall().ssh_sessions() {
            Ok(sessions) => lockout(fw, &sessions),
            Err(e) => Some(format!(
                "cannot tell which SSH clients are connected ({e}); refusing a firewall change"
            )),
        }
    }

    /// What the next pass would do, computed by the same code as a pass (without building);
    /// with `input`, what applying that definition text would do instead of the file's (the
    /// daemon's settings and the file stay as they are). The content diff compares the running
    /// generation with the one the definition builds.
    ///
    /// # Errors
    /// An invalid definition or an unreadable host.
    pub async fn plan(
        &mut self,
        input: Option<crate::api::DefinitionText>,
    ) -> Result<PlanView, ControlError> {
        let def = match &input {
            None => self.load_definition()?,
            Some(d) => {
                parse(&d.text, std::path::Path::new(&d.file)).map_err(ControlError::Invalid)?
            }
        };
        let apps = Apps::of(def.definition());
        let current = self.current()?;
        let sha = sha256_hex(def.source().as_bytes());
        // A pinned definition is one the daemon will not apply on its own; a text given to
        // plan is planned as if applied (`strackt apply` clears the pin too).
        let pinned = match input {
            None => {
                self.db("reading the pinned definition", |s| s.meta(PINNED))
                    .await?
            }
            Some(_) => None,
        };
        let same = current
            .as_ref()
            .is_some_and(|c| c.manifest.definition_sha256 == sha)
            || pinned.as_deref() == Some(sha.as_str());
        let (target, label, changes) = match (&current, same) {
            (Some(c), true) => (c.clone(), "current", GenerationDiff::default()),
            _ => {
                if let Some(problem) = self.lockout_problem(&def) {
                    return Err(ControlError::Lockout(problem));
                }
                let mut r = render(&def);
                self.lock_packages(&def, &mut r, false)
                    .map_err(ControlError::Packages)?;
                let mut notes = Vec::new();
                let running = current
                    .as_ref()
                    .map(|c| {
                        let id = c.manifest.id;
                        read_stored(&self.store, id, None, &mut notes).map(|g| (id, g))
                    })
                    .transpose()
                    .map_err(ControlError::Running)?;
                let old_side = running
                    .as_ref()
                    .map_or("no generation".to_string(), |(id, _)| {
                        format!("generation {id}")
                    });
                let mut changes = diff(
                    running.as_ref().map(|(_, g)| g),
                    &r,
                    Sides {
                        old: &old_side,
                        new: "new generation",
                    },
                );
                changes.notes.extend(notes);
                (r.generation(), "new", changes)
            }
        };
        let owned = Ownership::load(Some(self.store.root())).map_err(ControlError::Ownership)?;
        let snapshot = observe(self.machine(), &target, &owned, self.store.root(), &apps)
            .await
            .map_err(ControlError::Observe)?;
        let mut p: Plan = plan(&target, current.as_ref(), &snapshot);
        let restarts = predicted_restarts(self.machine(), &target, &apps, &p, &snapshot);
        p.steps.extend(restarts.await);
        let steps = p
            .steps
            .iter()
            .map(|s| {
                StepRecord::new(
                    s.action.name(),
                    &s.action.target(),
                    StepOutcome::Planned,
                    &s.why,
                    s.drift,
                )
            })
            .collect();
        let text = match (&current, changes.is_empty()) {
            (_, true) => p.to_string(),
            (Some(c), false) => format!(
                "changes from generation {} (running) to the new generation:\n{}\nsteps:\n{p}",
                c.manifest.id,
                changes.render()
            ),
            (None, false) => format!("the first generation:\n{}\nsteps:\n{p}", changes.render()),
        };
        Ok(PlanView {
            target: label.into(),
            steps,
            text,
            kept: p.kept,
            changes,
        })
    }
}
