//! `strackt edit`'s save: the edited text replaces the definition file and a pass runs on it,
//! both inside the reconcile loop, so no pass of the watcher runs between the two and the
//! answer is the pass that applied this text.
//!
//! The file is replaced the way `strackt upgrade` replaces it (one rename, its mode and owner
//! kept), and only when it still has the bytes the edit started from: a save made by someone
//! else meanwhile wins. A text that does not validate is never written.

use super::error::{ControlError, LoadError};
use super::{Daemon, Trigger};
use crate::api::DefinitionText;
use crate::definition::parse;
use crate::host::definition::{DefinitionFile, ModeAndOwner};
use crate::host::files::sha256_hex;
use crate::host::Machine;
use crate::ops::Operation;

impl<M: Machine> Daemon<M> {
    /// Save `input` over the definition file and run a pass on it (a definition that failed
    /// before is tried again, as by `strackt apply`).
    ///
    /// # Errors
    /// Refusals before anything was written: the file changed since `base_sha256`, the text
    /// does not validate, the file cannot be written.
    pub async fn save(
        &mut self,
        input: DefinitionText,
        base_sha256: Option<String>,
    ) -> Result<Operation, ControlError> {
        let path = self.paths.definition.clone();
        let file = DefinitionFile::new(&path);
        let on_disk = match file.read_if_present() {
            Ok(bytes) => bytes,
            Err(source) => return Err(LoadError::Unreadable { path, source }.into()),
        };
        if on_disk.as_deref().map(sha256_hex) != base_sha256 {
            return Err(ControlError::EditedMeanwhile(path));
        }
        parse(&input.text, &path).map_err(ControlError::NotSaved)?;
        // A new file is root's and private, like the packaged one.
        let kept = file.mode_and_owner().unwrap_or(ModeAndOwner::NEW);
        file.write(input.text.as_bytes(), kept)
            .map_err(|source| ControlError::Write {
                path: path.clone(),
                source,
            })?;
        tracing::info!("strackt edit saved {}", path.display());
        Ok(self.pass(Trigger::Edit, true).await)
    }
}
