//! daemon/updates/upgrade — `strackt upgrade`: the pins rewritten in the definition's own
//! text, applied by an ordinary pass, and the file put back when the switch does not stay.
//! Must not: write anything but the version strings, or write over a save made meanwhile.

use std::path::Path;

use super::super::error::UpdateError;
use super::super::pass::Daemon;
use super::super::Trigger;
use super::assess::{listed, record, select, Upgrade, UpgradeOutcome};
use crate::definition::{parse, set_package_versions, ValidatedDefinition};
use crate::host::definition::DefinitionFile;
use crate::host::files::sha256_hex;
use crate::host::packages::Packages;
use crate::host::Machine;
use crate::ops::Outcome;

impl<M: Machine> Daemon<M> {
    /// `strackt upgrade [--security] [PKG…]`.
    ///
    /// # Errors
    /// Refusals before anything changed: a definition that does not parse or is not what
    /// runs, a package the definition does not pin, apt that cannot be asked.
    pub async fn upgrade(
        &mut self,
        security_only: bool,
        names: Vec<String>,
    ) -> Result<UpgradeOutcome, UpdateError> {
        let trigger = if security_only {
            Trigger::Security
        } else {
            Trigger::Upgrade
        };
        self.upgrade_with(security_only, names, trigger, None, true)
            .await
    }

    /// One upgrade, in order: refusals (nothing changed), the file rewritten, the pass, the
    /// file put back when the switch did not stay, the operation completed. Over 120 lines and
    /// kept whole: the later steps need the exact bytes read first (`before`) and the check
    /// that no save came in between, and a split would pass those around in pieces.
    pub(super) async fn upgrade_with(
        &mut self,
        security_only: bool,
        names: Vec<String>,
        trigger: Trigger,
        why: Option<&str>,
        refresh: bool,
    ) -> Result<UpgradeOutcome, UpdateError> {
        let path = self.paths.definition.clone();
        let unreadable = |source| UpdateError::Unreadable {
            path: path.clone(),
            source,
        };
        let file = DefinitionFile::new(&path);
        let before = file.read().map_err(unreadable)?;
        let text =
            String::from_utf8(before.clone()).map_err(|_| UpdateError::NotText(path.clone()))?;
        let def = parse(&text, &path).map_err(UpdateError::DoesNotParse)?;
        // Cheap refusals before apt is asked.
        let unknown: Vec<String> = names
            .iter()
            .filter(|n| !def.definition().packages.contains_key(*n))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(UpdateError::NotPinned {
                path,
                names: unknown,
            });
        }
        let current = self.current()?;
        let Some(current) = current else {
            return Err(UpdateError::NothingRuns);
        };
        let sha = sha256_hex(text.as_bytes());
        if current.manifest.definition_sha256 != sha {
            return Err(UpdateError::NotRunning {
                path,
                id: current.manifest.id,
            });
        }
        let report = self
            .check_updates(refresh)
            .await
            .map_err(|e| UpdateError::Check(Box::new(e)))?;
        let picks = select(&report.packages, security_only, &names)?;
        let what = if security_only {
            "security updates"
        } else {
            "updates"
        };
        if picks.is_empty() {
            let scope = if names.is_empty() {
                "the pinned packages".to_string()
            } else {
                names.join(", ")
            };
            return Ok(UpgradeOutcome {
                upgrades: picks,
                operation: None,
                definition_restored: false,
                message: format!(
                    "no {what} pending for {scope}; {} untouched",
                    path.display()
                ),
            });
        }
        let edits: Vec<(&str, &str)> = picks
            .iter()
            .filter(|u| !u.latest)
            .map(|u| (u.name.as_str(), u.to.as_str()))
            .collect();
        let new_text = self.edited_text(&def, &text, &edits, &path).await?;

        let kept = file.mode_and_owner().map_err(unreadable)?;
        let write = |bytes: &[u8]| {
            file.write(bytes, kept)
                .map_err(|source| UpdateError::Write {
                    path: path.clone(),
                    source,
                })
        };
        // apt took a while: a save made meanwhile is the user's, and wins.
        let unchanged_since = |bytes: &[u8]| file.holds(bytes);
        if !edits.is_empty() {
            if !unchanged_since(&before) {
                return Err(UpdateError::ChangedMeanwhile(path));
            }
            write(new_text.as_bytes())?;
            tracing::info!(
                "upgrade: {} rewritten: {}",
                path.display(),
                picks
                    .iter()
                    .map(Upgrade::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // Only `latest` packages: the text stays, the generation is rebuilt to move them.
        self.force_rebuild = edits.is_empty();
        let mut op = self.pass(trigger, true).await;
        self.force_rebuild = false;
        let new_sha = sha256_hex(new_text.as_bytes());
        let running = self
            .current()
            .ok()
            .flatten()
            .map(|g| (g.manifest.id, g.manifest.definition_sha256));
        let landed = op.outcome == Outcome::Success
            && running
                .as_ref()
                .is_some_and(|(id, s)| *s == new_sha && *id != current.manifest.id);
        let mut restored = false;
        if !landed && !edits.is_empty() && unchanged_since(new_text.as_bytes()) {
            // The file says what runs: back to the exact bytes it had.
            match write(&before) {
                Ok(()) => restored = true,
                Err(e) => tracing::error!("putting the definition back: {e}"),
            }
        }
        record(
            &mut op,
            &picks,
            landed,
            restored.then_some(path.as_path()),
            why,
        );
        self.write_op(&mut op).await;
        self.status.send_modify(|s| {
            if s.last_pass.as_ref().is_some_and(|p| p.id == op.id) {
                s.last_pass = Some(op.clone());
            }
        });
        let list = listed(&picks);
        let message = if landed {
            format!("upgraded {list}")
        } else {
            format!(
                "upgrade of {list} did not stay: {}{}",
                op.reason.as_deref().unwrap_or("?"),
                if restored {
                    format!("; {} is back to its previous text", path.display())
                } else {
                    String::new()
                }
            )
        };
        Ok(UpgradeOutcome {
            upgrades: picks,
            operation: Some(op),
            definition_restored: restored,
            message,
        })
    }

    /// The definition's text with `edits` (package → exact version) made, checked: the same
    /// definition but for these versions, and apt has each of them — `upgrade` never writes a
    /// file `strackt check` would refuse. Without edits (only `latest` packages), the text.
    async fn edited_text(
        &self,
        def: &ValidatedDefinition,
        text: &str,
        edits: &[(&str, &str)],
        path: &Path,
    ) -> Result<String, UpdateError> {
        let new_text = if edits.is_empty() {
            text.to_string()
        } else {
            set_package_versions(text, edits).map_err(|source| UpdateError::Edit {
                path: path.to_path_buf(),
                source,
            })?
        };
        let edited = parse(&new_text, path).map_err(UpdateError::EditInvalid)?;
        let mut expected = def.definition().clone();
        for (name, version) in edits {
            expected
                .packages
                .insert((*name).to_string(), (*version).to_string());
        }
        if edited.definition() != &expected {
            return Err(UpdateError::EditTooWide);
        }
        let machine = self.machine.clone();
        let wanted: std::collections::BTreeMap<String, String> = edits
            .iter()
            .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
            .collect();
        let checked: Vec<(String, String)> =
            tokio::task::spawn_blocking(move || machine.packages().resolve(&wanted))
                .await
                .map_err(UpdateError::AptTask)?
                .map_err(UpdateError::AptRefused)?
                .into_iter()
                .filter_map(|(n, v)| v.err().map(|e| (n, e.to_string())))
                .collect();
        if !checked.is_empty() {
            let problems = checked
                .into_iter()
                .map(|(n, e)| crate::definition::problem_at(&new_text, &["packages", &n], e))
                .collect();
            let err = crate::definition::DefinitionError {
                file: path.to_path_buf(),
                problems,
            };
            return Err(UpdateError::Unavailable(err));
        }
        Ok(new_text)
    }
}
