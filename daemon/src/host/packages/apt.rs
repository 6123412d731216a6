//! host/packages/apt — the real [`Packages`]: dpkg and apt on this machine.
//!
//! Reads the dpkg status and apt's extended states directly (fast enough for every pass);
//! changes go through apt-get and apt-mark, in a transient unit of their own so that no restart
//! of strackt ever kills a running dpkg. Packages are installed from `.deb` files kept in
//! strackt's cache, so going back to an earlier generation needs no network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::parse::{deb_prefix, parse_installed, parse_policy_offers, pick};
use super::{Installed, Offer, Packages, Resolved};
use crate::host::processes::{run_blocking, Cmd};
use crate::host::HostError;

/// dpkg + apt on this machine, with the `.deb` cache at `cache`.
#[derive(Debug, Clone)]
pub struct Apt {
    cache: PathBuf,
}

impl Apt {
    /// The default cache is `/var/cache/strackt/debs`.
    pub fn new(cache: &Path) -> Apt {
        Apt {
            cache: cache.to_path_buf(),
        }
    }

    /// Where `.deb` files are cached.
    pub fn cache(&self) -> &Path {
        &self.cache
    }
}

/// How an apt tool runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// As strackt's child: reads, downloads and list refreshes, which are harmless to cut off.
    Child,
    /// Work that changes the dpkg database (install, remove, hold): in a transient unit of its
    /// own, outside strackt's cgroup, so that a restart, crash or watchdog kill of strackt (which
    /// kills everything in strackt's cgroup) never kills dpkg halfway through a package and
    /// leaves it half-configured. Its output goes to unnamed files, not pipes, so that a dpkg
    /// outliving strackt never dies of SIGPIPE either. A strackt started meanwhile waits for
    /// the dpkg lock instead of failing on it.
    OwnUnit,
}

/// How long dpkg-changing work waits for the dpkg lock (held by a run that outlived a strackt
/// restart, or by an administrator's apt) before it fails.
const LOCK_WAIT_SECS: u32 = 900;

/// How long one apt run may take (an install waits up to [`LOCK_WAIT_SECS`] for the lock
/// first). Past it the run counts as failed; dpkg in its own unit is not cut off.
const APT_LIMIT: Duration = Duration::from_secs(2 * 3600);

fn apt(
    tool: &'static str,
    args: &[&str],
    cwd: Option<&Path>,
    how: Run,
) -> Result<String, HostError> {
    let failed = |message: String| HostError::Command { op: tool, message };
    // Without systemd as PID 1 (a container or chroot without it) there is no unit to run in.
    let own_unit = how == Run::OwnUnit && Path::new("/run/systemd/system").is_dir();
    let mut cmd = if own_unit {
        Cmd::new("systemd-run", APT_LIMIT).args([
            "--quiet",
            "--wait",
            "--pipe",
            "--collect",
            "--service-type=exec",
            &format!(
                "--unit=strackt-{tool}-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
            ),
            &format!(
                "--description=strackt: {tool} {}",
                args.first().unwrap_or(&"")
            ),
            "--setenv=DEBIAN_FRONTEND=noninteractive",
            "--setenv=LC_ALL=C",
            "--",
            tool,
        ])
    } else {
        Cmd::new(tool, APT_LIMIT)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
    };
    if how == Run::OwnUnit {
        cmd = cmd.args(["-o", &format!("DPkg::Lock::Timeout={LOCK_WAIT_SECS}")]);
    }
    cmd = cmd.args(args).keep(256 << 20);
    if let Some(dir) = cwd {
        cmd = cmd.cwd(dir);
    }
    // Unnamed files, not pipes: a dpkg that outlives strackt never dies of SIGPIPE.
    let out = run_blocking(tool, cmd)?;
    if out.success() {
        return Ok(out.stdout);
    }
    let tail: Vec<&str> = out.stderr.trim().lines().rev().take(6).collect();
    let mut tail: Vec<&str> = tail.into_iter().rev().collect();
    let why = out.failure().unwrap_or_default();
    if tail.is_empty() {
        tail.push(&why);
    }
    Err(failed(format!(
        "{} {} failed: {}",
        tool,
        args.join(" "),
        tail.join("\n")
    )))
}

impl Packages for Apt {
    fn installed(&self) -> Result<BTreeMap<String, Installed>, HostError> {
        let status =
            std::fs::read_to_string("/var/lib/dpkg/status").map_err(|source| HostError::Io {
                op: "read",
                path: "/var/lib/dpkg/status".into(),
                source,
            })?;
        let extended = std::fs::read_to_string("/var/lib/apt/extended_states").unwrap_or_default();
        Ok(parse_installed(&status, &extended))
    }

    fn resolve(&self, wants: &BTreeMap<String, String>) -> Result<Resolved, HostError> {
        if wants.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut args = vec!["policy"];
        args.extend(wants.keys().map(String::as_str));
        let offers = parse_policy_offers(&apt("apt-cache", &args, None, Run::Child)?);
        Ok(wants
            .iter()
            .map(|(name, want)| (name.clone(), pick(name, want, offers.get(name))))
            .collect())
    }

    fn fetch(
        &self,
        locks: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, HostError> {
        let cached = || -> Vec<String> {
            std::fs::read_dir(&self.cache)
                .map(|dir| {
                    dir.flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|f| f.ends_with(".deb"))
                        .collect()
                })
                .unwrap_or_default()
        };
        let find = |files: &[String], name: &str, version: &str| {
            let prefix = deb_prefix(name, version);
            files.iter().find(|f| f.starts_with(&prefix)).cloned()
        };
        let files = cached();
        let missing: Vec<String> = locks
            .iter()
            .filter(|(name, version)| find(&files, name, version).is_none())
            .map(|(name, version)| format!("{name}={version}"))
            .collect();
        let files = if missing.is_empty() {
            files
        } else {
            std::fs::create_dir_all(&self.cache).map_err(|source| HostError::Io {
                op: "create directory",
                path: self.cache.clone(),
                source,
            })?;
            let mut args = vec!["download", "-q"];
            args.extend(missing.iter().map(String::as_str));
            apt("apt-get", &args, Some(&self.cache), Run::Child)?;
            cached()
        };
        locks
            .iter()
            .map(|(name, version)| {
                let deb = find(&files, name, version).ok_or_else(|| HostError::Command {
                    op: "apt-get",
                    message: format!(
                        "apt-get download {name}={version} left no {}*.deb",
                        deb_prefix(name, version)
                    ),
                })?;
                Ok((name.clone(), deb))
            })
            .collect()
    }

    fn install(&self, debs: &[String]) -> Result<(), HostError> {
        let paths: Vec<String> = debs
            .iter()
            .map(|d| self.cache.join(d).display().to_string())
            .collect();
        let mut args = vec![
            "install",
            "-y",
            "-q",
            "--allow-downgrades",
            "--allow-change-held-packages",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ];
        args.extend(paths.iter().map(String::as_str));
        apt("apt-get", &args, None, Run::OwnUnit).map(|_| ())
    }

    fn remove(&self, names: &[String]) -> Result<(), HostError> {
        let mut args = vec!["remove", "-y", "-q", "--allow-change-held-packages"];
        args.extend(names.iter().map(String::as_str));
        apt("apt-get", &args, None, Run::OwnUnit).map(|_| ())
    }

    fn mark_held(&self, names: &[String], held: bool) -> Result<(), HostError> {
        let mut args = vec![if held { "hold" } else { "unhold" }];
        args.extend(names.iter().map(String::as_str));
        apt("apt-mark", &args, None, Run::OwnUnit).map(|_| ())
    }

    fn refresh(&self) -> Result<(), HostError> {
        apt("apt-get", &["update", "-q"], None, Run::Child).map(|_| ())
    }

    fn candidates(&self, names: &[String]) -> Result<BTreeMap<String, Offer>, HostError> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut args = vec!["policy"];
        args.extend(names.iter().map(String::as_str));
        Ok(parse_policy_offers(&apt(
            "apt-cache",
            &args,
            None,
            Run::Child,
        )?))
    }

    fn is_cached(&self, deb: &str) -> bool {
        !deb.is_empty() && self.cache.join(deb).is_file()
    }

    fn prune_cache(&self, keep: &std::collections::BTreeSet<String>) -> Result<(), HostError> {
        let Ok(dir) = std::fs::read_dir(&self.cache) else {
            return Ok(());
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".deb") && !keep.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}
