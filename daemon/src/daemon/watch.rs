//! Watching the definition: the parent directory is watched, because editors and
//! configuration tools replace files (write a temp file, rename over) rather than modify them.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// Quiet time after the last event before `on_change`, so a save that is several events
/// (truncate, write, rename) is seen once, as the complete file.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// The same after an event that ends a save — the file renamed into place (what editors and
/// configuration tools do) or closed after writing — so a save is live without waiting out
/// [`DEBOUNCE`]; just long enough to see the rest of the burst, if any.
const SAVED: Duration = Duration::from_millis(15);

/// What a filesystem event says about the definition file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Being changed: more may follow.
    Changing,
    /// A save ended: renamed into place, or closed after writing.
    Saved,
}

/// What `kind` means for the watched file (`None`: not a change, e.g. a read, ours included:
/// every pass opens the file, and reads must not trigger the next pass).
fn seen(kind: &notify::EventKind) -> Option<Seen> {
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    use notify::EventKind;
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(Seen::Saved),
        // The pair of a rename, sent after its `From` and `To` (which say it all): its paths
        // name both ends, so it cannot tell a file moved into place from one moved away.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => None,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => Some(Seen::Changing),
        _ => None,
    }
}

/// Start watching `definition`'s directory; a burst of changes to the file calls `on_change`
/// once. The returned watcher must be kept alive.
///
/// # Errors
/// When the directory cannot be watched.
pub fn spawn_watcher(
    definition: &Path,
    on_change: impl Fn() + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    let dir = definition.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = definition.file_name().map(|n| n.to_os_string());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if let Some(what) = seen(&ev.kind) {
                if ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
                {
                    // Fails only once the debounce task is gone (the runtime shutting down).
                    let _ = tx.send(what);
                }
            }
        }
    })?;
    crate::host::definition::DefinitionFile::new(definition)
        .create_dir()
        .map_err(notify::Error::io)?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        let quiet = |what: Seen| match what {
            Seen::Saved => SAVED,
            Seen::Changing => DEBOUNCE,
        };
        while let Some(first) = rx.recv().await {
            // Swallow the rest of the burst; how long to wait depends on its last event.
            let mut wait = quiet(first);
            while let Ok(Some(next)) = tokio::time::timeout(wait, rx.recv()).await {
                wait = quiet(next);
            }
            on_change();
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RenameMode};
    use notify::EventKind;

    #[test]
    fn a_rename_into_place_or_a_close_after_writing_ends_a_save_and_reads_are_nothing() {
        let saved = [
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
        ];
        for kind in saved {
            assert_eq!(seen(&kind), Some(Seen::Saved), "{kind:?}");
        }
        let changing = [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        ];
        for kind in changing {
            assert_eq!(seen(&kind), Some(Seen::Changing), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
        ] {
            assert_eq!(seen(&kind), None, "{kind:?}");
        }
    }
}
