//! Who uses what on the host: the processes of a unit and the files they hold, the children of
//! a process (from `/proc`), which files a package ships, which package ships a file, and what the installed packages
//! depend on (from dpkg's database); and strackt's own process: its mappings (`own_smaps`) and
//! what its stderr is (`own_stderr_identity`). Read-only; deciding what to restart or keep from these
//! facts is `plan::users` and `plan::keep`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::processes::{run_blocking, Cmd, Output};
use super::{io_err, HostError};

/// One process of a unit, as far as package attribution needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Its executable (`/proc/PID/exe`, without a ` (deleted)` suffix).
    pub exe: String,
    /// Files it maps (`/proc/PID/maps`) or holds open (`/proc/PID/fd`); a file dpkg replaced
    /// since shows under its old path (the ` (deleted)` suffix is dropped).
    pub files: BTreeSet<String>,
}

/// Read-only questions about processes and dpkg's database. Real implementation: [`ProcUsage`].
///
/// # Errors
/// [`HostError::Command`] when dpkg cannot be run at all; a package or path dpkg does not
/// know is left out of the answer, not an error, and a process that exits while it is read
/// is skipped.
pub trait Usage: Send + Sync {
    /// The processes in `unit`'s cgroup (none when the unit is not running).
    fn unit_processes(&self, unit: &str) -> Result<Vec<ProcessInfo>, HostError>;
    /// The children of process `pid` (nginx's master: its workers); a process that is gone
    /// has none.
    fn children(&self, pid: u32) -> BTreeSet<u32>;
    /// The files each installed package of `names` ships (`dpkg -L`); packages that are not
    /// installed are left out.
    fn package_files(
        &self,
        names: &[String],
    ) -> Result<BTreeMap<String, BTreeSet<String>>, HostError>;
    /// The package shipping each of `paths` (`dpkg -S`); paths no package ships are left out.
    fn owners(&self, paths: &[String]) -> Result<BTreeMap<String, String>, HostError>;
    /// Every installed package → the names in its `Pre-Depends` and `Depends` (alternatives
    /// included, versions and architecture qualifiers dropped).
    fn dependencies(&self) -> Result<BTreeMap<String, Vec<String>>, HostError>;
}

/// The real machine: `/proc`, the unified cgroup hierarchy, and dpkg.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcUsage;

/// Where systemd puts system services in the unified hierarchy. Managed services and apps run
/// in `system.slice` (strackt writes no `Slice=`); a unit elsewhere shows no processes.
const SYSTEM_SLICE: &str = "/sys/fs/cgroup/system.slice";

/// `unit`'s cgroup directory under [`SYSTEM_SLICE`]. An instance `a@i.service` (a proxy-mode
/// release) runs in its template's own slice, `system-<a, escaped>.slice`, as systemd places
/// instances by default.
fn cgroup_dir(unit: &str) -> PathBuf {
    let slice = Path::new(SYSTEM_SLICE);
    match unit.split_once('@') {
        Some((prefix, _)) => slice
            .join(format!("system-{}.slice", escape_unit_name(prefix)))
            .join(unit),
        None => slice.join(unit),
    }
}

/// systemd's unit name escaping (`systemd-escape`): `/` becomes `-`, and every byte other than
/// ASCII letters, digits, `:`, `_` and a `.` that does not lead becomes `\xNN`; so a `-` in
/// the template's name reads `\x2d` in its slice's.
fn escape_unit_name(name: &str) -> String {
    let mut out = String::new();
    for (i, b) in name.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i > 0 => out.push('.'),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' => out.push(char::from(b)),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// A path as the kernel shows it in maps and fd links, without the mark of a replaced file.
fn strip_deleted(path: &str) -> &str {
    path.strip_suffix(" (deleted)").unwrap_or(path)
}

/// The file paths of a `/proc/PID/maps` text (anonymous and special mappings left out).
fn mapped_paths(maps: &str) -> impl Iterator<Item = &str> {
    maps.lines().filter_map(|line| {
        // address perms offset dev inode path: the path starts at the first '/'.
        line.find('/').map(|i| strip_deleted(&line[i..]))
    })
}

fn dpkg(args: &[&str]) -> Result<Output, HostError> {
    let (program, rest) = args.split_first().ok_or(HostError::Command {
        op: "dpkg",
        message: "no command".into(),
    })?;
    // The whole package database can be listed: keep all of it.
    let cmd = Cmd::new(*program, Duration::from_secs(120))
        .args(rest)
        .env("LC_ALL", "C")
        .keep(256 << 20);
    run_blocking("dpkg", cmd)
}

/// Names in a `Depends:` value: `a (>= 1), b:any | c` → a, b, c.
fn dependency_names(field: &str) -> impl Iterator<Item = String> + '_ {
    field
        .split([',', '|'])
        .filter_map(|alt| alt.split_whitespace().next())
        .map(|name| name.split(':').next().unwrap_or(name).to_string())
}

impl ProcUsage {
    fn process(pid: u32) -> Option<ProcessInfo> {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        // Links under /proc are the kernel's, read without following them.
        let exe = std::fs::read_link(dir.join("exe")).ok()?;
        let maps = std::fs::read_to_string(dir.join("maps")).ok()?;
        let mut files: BTreeSet<String> = mapped_paths(&maps).map(str::to_string).collect();
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    let target = target.to_string_lossy();
                    if target.starts_with('/') {
                        files.insert(strip_deleted(&target).to_string());
                    }
                }
            }
        }
        Some(ProcessInfo {
            pid,
            exe: strip_deleted(&exe.to_string_lossy()).to_string(),
            files,
        })
    }
}

impl Usage for ProcUsage {
    fn unit_processes(&self, unit: &str) -> Result<Vec<ProcessInfo>, HostError> {
        let path = cgroup_dir(unit).join("cgroup.procs");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        Ok(text
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            // A process that exited since the cgroup was listed uses nothing any more.
            .filter_map(ProcUsage::process)
            .collect())
    }

    fn children(&self, pid: u32) -> BTreeSet<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn package_files(
        &self,
        names: &[String],
    ) -> Result<BTreeMap<String, BTreeSet<String>>, HostError> {
        let mut out = BTreeMap::new();
        for name in names {
            let o = dpkg(&["dpkg", "-L", name])?;
            if o.success() {
                let files = o
                    .stdout
                    .lines()
                    .filter(|l| l.starts_with('/'))
                    .map(str::to_string)
                    .collect();
                out.insert(name.clone(), files);
            }
        }
        Ok(out)
    }

    fn owners(&self, paths: &[String]) -> Result<BTreeMap<String, String>, HostError> {
        if paths.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut args = vec!["dpkg", "-S"];
        args.extend(paths.iter().map(String::as_str));
        // Exit status 1 only says some path is unowned; the owned ones are still listed.
        let o = dpkg(&args)?;
        Ok(parse_owners(&o.stdout))
    }

    fn dependencies(&self) -> Result<BTreeMap<String, Vec<String>>, HostError> {
        let o = dpkg(&[
            "dpkg-query",
            "-W",
            "-f",
            "${db:Status-Abbrev}\t${Package}\t${Pre-Depends}, ${Depends}\n",
        ])?;
        if !o.success() {
            return Err(HostError::Command {
                op: "dpkg-query",
                message: o.stderr.trim().to_string(),
            });
        }
        Ok(parse_dependencies(&o.stdout))
    }
}

/// `dpkg -S` output → path → package (a path shared by packages goes to the first; diversion
/// notes are skipped).
fn parse_owners(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter(|l| !l.starts_with("diversion by"))
        .filter_map(|l| l.split_once(": "))
        .filter_map(|(pkgs, path)| {
            let first = pkgs.split(", ").next()?;
            Some((
                path.trim().to_string(),
                first.split(':').next().unwrap_or(first).to_string(),
            ))
        })
        .collect()
}

/// `dpkg-query` lines (`status\tpackage\tdeps`) of installed packages → package → names.
fn parse_dependencies(out: &str) -> BTreeMap<String, Vec<String>> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (status, name, deps) = (f.next()?, f.next()?, f.next().unwrap_or(""));
            status
                .starts_with("ii")
                .then(|| (name.to_string(), dependency_names(deps).collect()))
        })
        .collect()
}

/// This process's own mappings with their page counts (`/proc/self/smaps`), for handing back
/// what the idle daemon does not need resident (`daemon/memory`, which parses it).
///
/// # Errors
/// `/proc` cannot be read.
pub fn own_smaps() -> std::io::Result<String> {
    std::fs::read_to_string("/proc/self/smaps")
}

/// Device and inode of what this process's stderr is open on (to compare with systemd's
/// `JOURNAL_STREAM`), from the descriptor itself: no path is looked up.
///
/// # Errors
/// The descriptor cannot be duplicated or stat'ed (stderr closed).
pub fn own_stderr_identity() -> std::io::Result<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let stderr = std::fs::File::from(std::io::stderr().as_fd().try_clone_to_owned()?);
    let meta = stderr.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_its_own_mappings_and_stderr() {
        let smaps = own_smaps().expect("smaps");
        assert!(smaps.contains("Private_Clean:"), "{smaps}");
        let exe = std::env::current_exe().expect("exe");
        assert!(smaps.contains(exe.to_str().expect("utf-8")), "{smaps}");
        // What `/proc/self/fd/2` leads to, taken from the descriptor.
        let by_path = std::fs::metadata("/proc/self/fd/2").expect("fd 2");
        assert_eq!(
            own_stderr_identity().expect("stderr"),
            (
                std::os::unix::fs::MetadataExt::dev(&by_path),
                std::os::unix::fs::MetadataExt::ino(&by_path)
            )
        );
    }

    #[test]
    fn maps_keep_replaced_files_under_their_path() {
        let maps = "55d0-55d1 r--p 0 08:01 12 /usr/bin/python3.11\n\
                    7f00-7f01 r-xp 0 08:01 99 /usr/lib/libfoo.so.1 (deleted)\n\
                    7f02-7f03 rw-p 0 00:00 0 \n\
                    7ffd-7ffe rw-p 0 00:00 0 [stack]\n";
        let got: Vec<&str> = mapped_paths(maps).collect();
        assert_eq!(got, ["/usr/bin/python3.11", "/usr/lib/libfoo.so.1"]);
    }

    #[test]
    fn an_instance_is_found_in_its_templates_slice() {
        assert_eq!(
            cgroup_dir("strackt-app-shop.service"),
            Path::new("/sys/fs/cgroup/system.slice/strackt-app-shop.service")
        );
        assert_eq!(
            cgroup_dir("strackt-app-hello@12.service"),
            Path::new(
                "/sys/fs/cgroup/system.slice/system-strackt\\x2dapp\\x2dhello.slice/strackt-app-hello@12.service"
            )
        );
        assert_eq!(escape_unit_name(".a/b.c d"), "\\x2ea-b.c\\x20d");
    }

    #[test]
    fn owners_and_dependencies_parse_dpkg_output() {
        let owners = parse_owners(
            "diversion by foo from: /bin/x\npostgresql-common: /lib/systemd/system/postgresql.service\nlibc6:amd64, libc6-dev: /usr/lib/x\n",
        );
        assert_eq!(
            owners.get("/lib/systemd/system/postgresql.service"),
            Some(&"postgresql-common".to_string())
        );
        assert_eq!(owners.get("/usr/lib/x"), Some(&"libc6".to_string()));
        let deps = parse_dependencies(
            "ii \tpostgresql\t, postgresql-15\nii \tlibfoo\tlibc6 (>= 2.34), python3:any | python3-minimal, \nrc \tgone\tx\n",
        );
        assert_eq!(deps.get("postgresql"), Some(&vec!["postgresql-15".into()]));
        assert_eq!(
            deps.get("libfoo"),
            Some(&vec![
                "libc6".into(),
                "python3".into(),
                "python3-minimal".into()
            ])
        );
        assert!(!deps.contains_key("gone"));
    }
}
