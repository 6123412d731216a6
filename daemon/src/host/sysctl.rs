//! Kernel parameters through `/proc/sys`: the real [`Sysctl`].

use std::io::ErrorKind;
use std::path::PathBuf;

use super::{io_err, HostError};
use crate::definition::normalize_sysctl;

/// Live kernel parameters. Real implementation: [`ProcSysctl`].
pub trait Sysctl: Send + Sync {
    /// The live value of `key` (whitespace normalized); `Ok(None)` when the kernel has no such
    /// parameter.
    fn get(&self, key: &str) -> Result<Option<String>, HostError>;
    /// Set `key` live.
    fn set(&self, key: &str, value: &str) -> Result<(), HostError>;
}

/// `/proc/sys` on this machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcSysctl;

fn proc_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

impl Sysctl for ProcSysctl {
    fn get(&self, key: &str) -> Result<Option<String>, HostError> {
        let path = proc_path(key);
        match std::fs::read_to_string(&path) {
            Ok(v) => Ok(Some(normalize_sysctl(&v))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    fn set(&self, key: &str, value: &str) -> Result<(), HostError> {
        let path = proc_path(key);
        // /proc/sys files take one write of the whole value; no temp file is possible here.
        std::fs::write(&path, format!("{value}\n")).map_err(io_err("write", &path))
    }
}
