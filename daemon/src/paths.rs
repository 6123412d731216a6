//! paths — where strackt's files are: the definition, the state root, the control socket and
//! the cache.
//!
//! Sits at the bottom with `status`, below `daemon/`, `api/`, `rebuild/` and the CLI, which all
//! need the same places; it must not import any of them (it used to live in `daemon/`, which
//! made `rebuild/` — called from `api/` — import the driver: a cycle). Must not create or
//! read any of the files it names.

use std::path::PathBuf;

/// Where strackt's files are; overridable by environment for tests and benchmarks.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The definition (`/etc/strackt/server.yaml`, `STRACKT_DEFINITION`).
    pub definition: PathBuf,
    /// State root (`/var/lib/strackt`, `STRACKT_ROOT`).
    pub root: PathBuf,
    /// Control socket (`/run/strackt/control.sock`, `STRACKT_SOCKET`).
    pub socket: PathBuf,
    /// Cache: `.deb` files, restic's cache (`/var/cache/strackt`, `STRACKT_CACHE`).
    pub cache: PathBuf,
}

impl Paths {
    /// Defaults, with environment overrides.
    pub fn from_env() -> Paths {
        let var = |k: &str, d: &str| PathBuf::from(std::env::var_os(k).unwrap_or_else(|| d.into()));
        Paths {
            definition: var("STRACKT_DEFINITION", "/etc/strackt/server.yaml"),
            root: var("STRACKT_ROOT", "/var/lib/strackt"),
            socket: var("STRACKT_SOCKET", "/run/strackt/control.sock"),
            cache: var("STRACKT_CACHE", "/var/cache/strackt"),
        }
    }
}
