//! daemon/generations — rollback, and keeping generations: their records, retention, and
//! rebuilding a pruned one from its record.
//!
//! Owns: `strackt rollback` (checked, then switched through `apply` like any pass), the
//! records kept in the state database, pruning directories and cached .debs as
//! [`decide::to_prune`] rules, and locking a definition's packages to exact versions. Must
//! not: delete a record, or prune the current or previous generation.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::decide;
use super::error::{ControlError, RecordError, StoreError, Unrebuildable};
use super::pass::{Daemon, PINNED};
use super::record::fail;
use super::Trigger;
use crate::definition::ValidatedDefinition;
use crate::generation::Generation;
use crate::host::definition::DefinitionFile;
use crate::host::files::sha256_hex;
use crate::host::packages::Packages;
use crate::host::Machine;
use crate::ops::{Operation, StepOutcome, StepRecord};
use crate::state::GenerationRecord;
use crate::timing;

impl<M: Machine> Daemon<M> {
    /// Prune generation directories beyond the retention policy, and cached .debs no kept
    /// directory needs. Records are never deleted: a pruned generation is marked so, and a
    /// rollback rebuilds it from its record.
    pub(super) async fn collect_garbage(&self, current: Option<u64>, previous: Option<u64>) {
        let keep = self.keep;
        let rows = self.db("reading the generations for retention", |s| s.generations());
        let (Ok(rows), Ok(dirs)) = (rows.await, self.store.list()) else {
            return;
        };
        for id in decide::to_prune(&rows, &dirs, current, previous, keep) {
            self.drop_directory(id).await;
        }
        // Keep the .deb files of retained generations only: a rollback to one of them needs no
        // network (a pruned one fetches its packages again when it is rebuilt).
        if let Ok(on_disk) = self.store.list() {
            let keep: std::collections::BTreeSet<String> = on_disk
                .iter()
                .filter_map(|id| self.store.load(*id).ok())
                .flat_map(|g| g.manifest.packages.into_values().map(|l| l.deb))
                .collect();
            if let Err(e) = self.machine.packages().prune_cache(&keep) {
                tracing::warn!("pruning the package cache: {e}");
            }
        }
    }

    /// Remove generation `id`'s directory and mark it pruned (its record stays: a rollback
    /// rebuilds it). A mark that cannot be written is reported; the directory is gone either
    /// way, and a rollback looks at the store, not the mark, to know it must rebuild.
    pub(super) async fn drop_directory(&self, id: u64) {
        match self.store.remove(id) {
            Ok(()) => {
                let what = format!("recording that generation {id} was pruned");
                let _reported = self.db(&what, move |s| s.set_pruned(id, true)).await;
            }
            Err(e) => tracing::warn!("pruning generation {id}: {e}"),
        }
    }

    /// Store generation `id`'s record (its definition text and manifest) in the state database.
    pub(super) async fn keep_record(
        &self,
        id: u64,
        definition: &str,
        manifest: &crate::generation::Manifest,
    ) -> Result<(), RecordError> {
        let record = GenerationRecord {
            definition: definition.to_string(),
            manifest: serde_json::to_string(manifest).map_err(RecordError::Encode)?,
        };
        let what = format!("recording generation {id}'s record");
        self.db(&what, move |s| s.put_record(id, &record)).await
    }

    /// Rebuild generation `id`'s pruned directory from its record (same id, through
    /// [`Store::build`]), fetching .debs the cache no longer has. Returns the generation and
    /// the step that says so.
    ///
    /// # Errors
    /// Why it cannot be rebuilt; nothing on the host has changed then.
    pub(super) async fn rebuild_from_record(
        &self,
        id: u64,
    ) -> Result<(Generation, StepRecord), ControlError> {
        let refused = |why: Unrebuildable| ControlError::NotRebuilt { id, why };
        let record = self
            .state
            .call(move |s| s.record(id))
            .await?
            .ok_or_else(|| refused(Unrebuildable::NoRecord))?;
        let manifest: crate::generation::Manifest = serde_json::from_str(&record.manifest)
            .map_err(|e| refused(Unrebuildable::Manifest(e)))?;
        let mut rendered = crate::generation::record::render_again(&record.definition, &manifest)
            .map_err(|e| refused(Unrebuildable::Render(e)))?;
        let started = Instant::now();
        let uncached: BTreeMap<String, String> = rendered
            .manifest
            .packages
            .iter()
            .filter(|(_, lock)| !self.machine.packages().is_cached(&lock.deb))
            .map(|(name, lock)| (name.clone(), lock.version.clone()))
            .collect();
        let fetched: Vec<String> = uncached
            .iter()
            .map(|(name, version)| format!("{name} {version}"))
            .collect();
        let mut debs = self.machine.packages().fetch(&uncached).map_err(|source| {
            refused(Unrebuildable::Fetch {
                packages: fetched.join(", "),
                source,
            })
        })?;
        for (name, lock) in &mut rendered.manifest.packages {
            if let Some(deb) = debs.remove(name) {
                lock.deb = deb;
            }
        }
        let target = self
            .store
            .build(id, &rendered, &manifest.created)
            .and_then(|_| self.store.load(id))
            .map_err(|e| refused(Unrebuildable::Store(e)))?;
        // The directory is back whatever the mark says (a rollback looks at the store).
        let what = format!("recording that generation {id} was rebuilt");
        let _reported = self.db(&what, move |s| s.set_pruned(id, false)).await;
        let detail = if fetched.is_empty() {
            "its packages were still cached".to_string()
        } else {
            format!("fetched again: {}", fetched.join(", "))
        };
        let mut step = StepRecord::new(
            "rebuild",
            &format!("generation {id} from its record"),
            StepOutcome::Ok,
            detail,
            false,
        );
        step.duration_ms = Some(started.elapsed().as_millis() as i64);
        Ok((target, step))
    }

    /// Switch to an earlier generation (default: the previous one). One whose directory was
    /// pruned is rebuilt from its record first (and the operation says so).
    ///
    /// # Errors
    /// When there is no such generation to switch to, or a pruned one cannot be rebuilt from
    /// its record (the host unchanged then); a failed switch is an `Ok` operation with outcome
    /// `failed`/`rolled-back`.
    pub async fn rollback(&mut self, target: Option<u64>) -> Result<Operation, ControlError> {
        // Timed phase by phase like a pass (each step kind, the settle wait), for `tests/bench`.
        let (op, phases) = timing::measure(self.rollback_inner(target)).await;
        self.status
            .send_modify(move |s| s.last_pass_phases_us = phases);
        op
    }

    async fn rollback_inner(&mut self, target: Option<u64>) -> Result<Operation, ControlError> {
        let started = Instant::now();
        self.saved_switch = None;
        // A broken definition does not stop a rollback (it is often why one is run): the
        // settings last loaded stay, and the next pass reports the definition.
        let _ = self.load_definition();
        let current = self.current()?;
        let cur_id = current.as_ref().map(|c| c.manifest.id);
        let id = match target {
            Some(id) => id,
            None => self
                .state
                .call(move |s| s.previous_generation(cur_id))
                .await?
                .ok_or(ControlError::NoPrevious)?,
        };
        if Some(id) == cur_id {
            return Err(ControlError::AlreadyCurrent(id));
        }
        let rows = self.state.call(|s| s.generations()).await?;
        match rows.iter().find(|g| g.id == id) {
            Some(g) if g.state.ran() => {}
            Some(g) => return Err(ControlError::NeverRan { id, state: g.state }),
            None => return Err(ControlError::NoGeneration(id)),
        }
        // A directory retention pruned comes back from the generation's record first.
        let on_disk = self.store.list().map_err(StoreError::Store)?;
        let (target, rebuilt) = if on_disk.contains(&id) {
            let target = self
                .store
                .load(id)
                .map_err(|source| StoreError::Generation { id, source })?;
            (target, None)
        } else {
            let (target, step) = self.rebuild_from_record(id).await?;
            (target, Some(step))
        };
        // A rollback the log cannot show is refused before the host changes.
        let op_id = self.start_op("rollback", Trigger::Cli, Some(id)).await?;
        // No settle wait: `settle` exists to catch a configuration that starts and then dies,
        // and this generation already ran on this host and passed its settle (only
        // `active`/`superseded` ones get here). Its units must still be active and its health
        // probes pass; a unit that dies later is drift, restarted by the next pass.
        let mut report = self
            .switch_to(Some(&target), current.as_ref(), Duration::ZERO)
            .await;
        if let Some(step) = rebuilt {
            report.steps.insert(0, step);
        }
        let ok = report.failure.is_none();
        let mut op = self
            .conclude_switch(
                Ok(op_id),
                "rollback",
                Trigger::Cli,
                id,
                cur_id,
                report,
                started,
                None,
            )
            .await;
        if ok {
            self.metrics.rolled_back();
            // Keep the host here: the definition on disk (which built the generation we left)
            // is not re-applied until it is edited or `strackt apply` is run.
            if let Ok(text) = DefinitionFile::new(&self.paths.definition).read_text() {
                let sha = sha256_hex(text.as_bytes());
                if Some(&sha) != Some(&target.manifest.definition_sha256) {
                    let pinned = self.db("pinning the definition rolled back from", move |s| {
                        s.set_meta(PINNED, Some(&sha))
                    });
                    if let Err(e) = pinned.await {
                        fail(
                            &mut op,
                            format!("{e}: the next pass applies the definition file again"),
                        );
                    }
                }
            }
        }
        Ok(op)
    }

    /// Resolve the definition's packages to exact versions (and, with `fetch`, put their
    /// `.deb` files in the cache).
    pub(super) fn lock_packages(
        &self,
        def: &ValidatedDefinition,
        rendered: &mut crate::generation::Rendered,
        fetch: bool,
    ) -> Result<(), crate::host::HostError> {
        // An exact version the current generation already locked (and whose .deb is cached)
        // needs no apt look-up: saving an unrelated edit must not cost 50 of them.
        let current = self.current().ok().flatten();
        let mut todo = BTreeMap::new();
        for (name, want) in &def.definition().packages {
            if want != "latest" {
                if let Some(lock) = current
                    .as_ref()
                    .and_then(|c| c.manifest.packages.get(name))
                    .filter(|l| &l.version == want)
                {
                    if !fetch || self.machine.packages().is_cached(&lock.deb) {
                        rendered
                            .manifest
                            .packages
                            .insert(name.clone(), lock.clone());
                        continue;
                    }
                }
            }
            todo.insert(name.clone(), want.clone());
        }
        // One apt look-up and one download for all of them, not one of each per package.
        let versions =
            crate::host::packages::all_resolved(self.machine.packages().resolve(&todo)?)?;
        let mut debs = if fetch {
            self.machine.packages().fetch(&versions)?
        } else {
            BTreeMap::new()
        };
        for (name, version) in versions {
            let deb = debs.remove(&name).unwrap_or_default();
            rendered
                .manifest
                .packages
                .insert(name, crate::generation::PackageLock { version, deb });
        }
        Ok(())
    }
}
