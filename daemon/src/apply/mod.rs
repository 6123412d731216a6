//! apply/ — observe the host, run a [`Plan`](crate::plan::Plan) through `host/`, verify, and
//! switch generations.
//!
//! Nothing here decides *what* to change (that is `plan::plan`); this layer sequences I/O and
//! always returns a report of what it did, even when a step fails halfway, so the operations
//! log records what actually happened.
//!
//! `observe.rs` reads the host, `run.rs` carries a plan's steps out, `verify.rs` checks what
//! they started; `switch.rs` puts the three together into a switch between generations.

pub mod apps;
mod observe;
mod ownership;
mod run;
pub mod switch;
mod verify;

use std::path::Path;

pub use apps::Apps;
pub use observe::observe;
pub use ownership::Ownership;
pub use run::run;
pub use verify::verify;

use crate::definition::SECRETS_DIR;
pub use crate::host::Machine;
use crate::host::{Files, HostError};

/// A secret's value (trimmed), read only when needed and never stored or logged.
fn read_secret<F: Files>(files: &F, name: &str) -> Result<String, HostError> {
    let path = Path::new(SECRETS_DIR).join(name);
    match files.read(&path) {
        Ok(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).trim().to_string()),
        _ => Err(HostError::Secret {
            name: name.into(),
            path: path.display().to_string(),
        }),
    }
}

/// Where a pre-strackt original of `path` is kept. The directory is still named `backups/`
/// on disk (operators and tests know it there); it has nothing to do with restic backups.
pub fn original_path(root: &Path, path: &str) -> std::path::PathBuf {
    root.join("backups").join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests;
