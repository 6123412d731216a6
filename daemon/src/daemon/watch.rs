//! Watching the definition: the parent directory is watched, because editors and
//! configuration tools replace files (write a temp file, rename over) rather than modify them.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// Quiet time after the last event before `on_change`, so a save that is several events
/// (truncate, write, rename) is seen once, as the complete file.
const DEBOUNCE: Duration = Duration::from_millis(150);

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
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            // Reads (ours included: every pass opens the file) are access events; only
            // changes count, or each pass would trigger the next.
            let is_change = matches!(
                ev.kind,
                notify::EventKind::Create(_)
                    | notify::EventKind::Modify(_)
                    | notify::EventKind::Remove(_)
            );
            if is_change
                && ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            {
                let _ = tx.send(());
            }
        }
    })?;
    std::fs::create_dir_all(&dir).map_err(notify::Error::io)?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Swallow the rest of the burst.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            on_change();
        }
    });
    Ok(watcher)
}
