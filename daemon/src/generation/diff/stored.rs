//! `strackt diff A B`: two stored generations, each read from its directory or, when it was
//! pruned, rendered again from its record. The only part of `diff/` that reads (the store and
//! the state database); it writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::super::{GenerationError, Manifest, Rendered, Store};
use super::{diff, GenerationDiff, Sides};
use crate::state::GenerationRecord;

/// What `strackt diff A B` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffView {
    /// The old generation.
    pub from: u64,
    /// The new generation.
    pub to: u64,
    /// What differs.
    pub changes: GenerationDiff,
    /// The same as text.
    pub text: String,
}

/// Compare generations `from` and `to` (default: the one active before the current, and the
/// current), each from its directory or its record.
///
/// # Errors
/// A generation that does not exist or cannot be read; no current or previous generation to
/// default to.
pub fn compare(
    store: &Store,
    state: &crate::state::State,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<DiffView, GenerationError> {
    let to = match to {
        Some(id) => id,
        None => store
            .current()
            .map_err(GenerationError::Store)?
            .ok_or(GenerationError::NothingRuns)?,
    };
    let from = match from {
        Some(id) => id,
        None => state
            .previous_generation(Some(to))?
            .ok_or(GenerationError::NoPrevious)?,
    };
    let known: BTreeSet<u64> = state.generations()?.into_iter().map(|g| g.id).collect();
    let mut notes = Vec::new();
    let mut side = |id: u64| {
        if !known.contains(&id) && !store.has(id).map_err(GenerationError::Store)? {
            return Err(GenerationError::Unknown(id));
        }
        let record = state.record(id)?;
        read_stored(store, id, record, &mut notes)
    };
    let (a, b) = (side(from)?, side(to)?);
    let (old, new) = (format!("generation {from}"), format!("generation {to}"));
    let mut changes = diff(
        Some(&a),
        &b,
        Sides {
            old: &old,
            new: &new,
        },
    );
    changes.notes.extend(notes);
    let text = if changes.is_empty() {
        format!("generation {from} and generation {to} have the same content\n")
    } else {
        format!(
            "from generation {from} to generation {to}:\n{}",
            changes.render()
        )
    };
    Ok(DiffView {
        from,
        to,
        changes,
        text,
    })
}

/// Generation `id`'s content as strackt keeps it: from its directory when it is on disk, else
/// from its record, rendered again (a record renders to the same content; one that no longer
/// renders identically is still compared, by its definition and manifest, with a note).
///
/// # Errors
/// When the generation has neither a readable directory nor a record.
pub fn read_stored(
    store: &Store,
    id: u64,
    record: Option<GenerationRecord>,
    notes: &mut Vec<String>,
) -> Result<Rendered, GenerationError> {
    if store
        .has_manifest(id)
        .map_err(|source| GenerationError::Directory { id, source })?
    {
        return from_directory(store, id)
            .map_err(|source| GenerationError::Directory { id, source });
    }
    let record = record.ok_or(GenerationError::NoRecord(id))?;
    let manifest: Manifest = serde_json::from_str(&record.manifest)
        .map_err(|source| GenerationError::Manifest { id, source })?;
    match super::super::record::render_again(&record.definition, &manifest) {
        Ok(r) => Ok(r),
        Err(why) => {
            notes.push(format!(
                "generation {id}'s directory was pruned and its record cannot be rendered again ({why}): contents are compared by hash only"
            ));
            Ok(Rendered {
                manifest,
                definition: record.definition,
                files: BTreeMap::new(),
                units: BTreeMap::new(),
                firewall: None,
            })
        }
    }
}

fn from_directory(store: &Store, id: u64) -> Result<Rendered, crate::host::HostError> {
    let generation = store.load(id)?;
    let mut files = BTreeMap::new();
    for path in generation.manifest.files.keys() {
        files.insert(path.clone(), store.file_content(id, path)?);
    }
    let definition = store.read_record(id)?.definition;
    Ok(Rendered {
        manifest: generation.manifest,
        definition,
        files,
        units: generation.unit_texts,
        firewall: generation.firewall,
    })
}
