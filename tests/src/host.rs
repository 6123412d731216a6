//! One disposable testhost server with strackt installed the way the README tells a user to.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{run, strackt_bin, testhost_for, Base, Generation, Operation, Out, Res, Status};

/// Time limit of one command inside a host.
const EXEC_LIMIT: Duration = Duration::from_secs(120);
/// Time limit of a boot (testhost's own boot timeout is 90 s).
const UP_LIMIT: Duration = Duration::from_secs(200);

/// A running test host. Dropping it takes the host down (unless `STRACKT_KEEP_HOSTS=1` and the
/// test failed).
#[derive(Debug)]
pub struct Host {
    name: String,
    keep: bool,
    base: Base,
}

/// Boot a host for test `tag`, run `body` with it, take it down. On failure (an error or a
/// panic) the daemon's journal and history are printed first, so `cargo test` shows them.
pub fn with_host(tag: &str, body: impl FnOnce(&Host) -> Res) -> Res {
    with_base(Base::Core, tag, &[], body)
}

/// `with_host` on the apps base (PostgreSQL, git, Python, wrk, restic).
pub fn with_app_host(tag: &str, body: impl FnOnce(&Host) -> Res) -> Res {
    with_base(Base::Apps, tag, &[], body)
}

/// `with_app_host` with more bind mounts (`SRC:DST`, read-write).
pub fn with_app_host_binds(tag: &str, binds: &[String], body: impl FnOnce(&Host) -> Res) -> Res {
    with_base(Base::Apps, tag, binds, body)
}

fn with_base(base: Base, tag: &str, binds: &[String], body: impl FnOnce(&Host) -> Res) -> Res {
    let mut host = Host::up_on(base, tag, binds)?;
    let result = catch_unwind(AssertUnwindSafe(|| body(&host)));
    if !matches!(result, Ok(Ok(()))) {
        eprintln!("{}", host.diagnostics());
        host.keep = std::env::var("STRACKT_KEEP_HOSTS").is_ok_and(|v| v == "1");
        if host.keep {
            eprintln!(
                "STRACKT_KEEP_HOSTS=1: host {} left up (testhost shell {0}; testhost down {0})",
                host.name
            );
        }
    }
    drop(host);
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Box::new(Failure(e.to_string()))),
        Err(panic) => resume_unwind(panic),
    }
}

/// A test failure whose `Debug` (what the test harness prints for an `Err`) is the readable
/// multi-line message itself, not an escaped string.
struct Failure(String);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// The binary under test, hard-linked (or copied) into a directory of this test process, so a
/// rebuild of `target/debug/strackt` during the run cannot swap the binary under a running test.
fn staged_binary_dir() -> Res<PathBuf> {
    static STAGED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    STAGED
        .get_or_init(|| stage_binary().map_err(|e| e.to_string()))
        .clone()
        .map_err(Into::into)
}

fn stage_binary() -> Res<PathBuf> {
    let bin = strackt_bin();
    if !bin.is_file() {
        return Err(format!("strackt binary {} not found: run `cargo build --bin strackt` first (or set STRACKT_BIN)", bin.display()).into());
    }
    let parent = crate::repo_root().join("target/strackt-it");
    fs::create_dir_all(&parent)?;
    // Directories of earlier test processes that are gone.
    for entry in fs::read_dir(&parent)?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(&pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let dir = parent.join(std::process::id().to_string());
    fs::create_dir_all(&dir)?;
    let staged = dir.join("strackt");
    let _ = fs::remove_file(&staged);
    if fs::hard_link(&bin, &staged).is_err() {
        fs::copy(&bin, &staged)?;
    }
    Ok(dir)
}

/// A unique, valid host name (`[a-z0-9-]{1,31}`) for test `tag` in this process.
fn host_name(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(20)
        .collect();
    // `STRACKT_HOST_PREFIX` (default `st`) keeps the hosts of runs side by side apart.
    let prefix: String = std::env::var("STRACKT_HOST_PREFIX")
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(3)
        .collect();
    format!(
        "{}-{}-{}",
        if prefix.is_empty() { "st" } else { &prefix },
        tag.trim_end_matches('-'),
        std::process::id() % 100_000
    )
}

/// A scratch file on the machine running the tests, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(content: &[u8], mode: u32) -> Res<Scratch> {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "strackt-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = fs::File::create(&path)?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

impl Host {
    /// Boot a pristine host with the binary under test bind-mounted read-only at /opt/strackt.
    pub fn up(tag: &str) -> Res<Host> {
        Host::up_on(Base::Core, tag, &[])
    }

    /// Boot a pristine host from `base`, with extra read-write bind mounts `SRC:DST`.
    pub fn up_on(base: Base, tag: &str, binds: &[String]) -> Res<Host> {
        let dir = staged_binary_dir()?;
        let name = host_name(tag);
        // A host of the same name left over by a killed run would not be pristine.
        run(testhost_for(base).args(["down", &name]), UP_LIMIT)?;
        let host = Host {
            name,
            keep: false,
            base,
        };
        let bind = format!("{}:/opt/strackt", dir.display());
        let mut up = host.testhost();
        up.args(["up", &host.name, "--bind-ro", &bind]);
        for b in binds {
            up.args(["--bind", b]);
        }
        run(&mut up, UP_LIMIT)?.ok()?;
        Ok(host)
    }

    fn testhost(&self) -> std::process::Command {
        testhost_for(self.base)
    }

    /// The host's name (for `testhost` commands).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run a command inside the host (`testhost exec`), whatever its exit code.
    pub fn exec(&self, args: &[&str]) -> Res<Out> {
        self.exec_limit(EXEC_LIMIT, args)
    }

    /// `exec` with another time limit.
    pub fn exec_limit(&self, limit: Duration, args: &[&str]) -> Res<Out> {
        run(
            self.testhost().args(["exec", &self.name, "--"]).args(args),
            limit,
        )
    }

    /// Run a bash script inside the host, whatever its exit code.
    pub fn sh(&self, script: &str) -> Res<Out> {
        self.exec(&["bash", "-c", script])
    }

    /// Run a bash script inside the host; its stdout, or an error unless it exits 0.
    pub fn sh_ok(&self, script: &str) -> Res<String> {
        self.sh(script)?.ok()
    }

    /// Run `strackt ARGS` inside the host (the CLI talks to the daemon over its socket).
    pub fn strackt(&self, args: &[&str]) -> Res<Out> {
        let mut all = vec!["strackt"];
        all.extend_from_slice(args);
        self.exec_limit(Duration::from_secs(180), &all)
    }

    /// Copy `content` to `path` inside the host (atomically: testhost writes a temporary file and
    /// renames it), with file mode `mode`.
    pub fn write(&self, path: &str, content: &str, mode: u32) -> Res {
        let scratch = Scratch::new(content.as_bytes(), mode)?;
        let src = scratch.0.to_string_lossy().into_owned();
        run(
            self.testhost().args(["cp", &self.name, &src, path]),
            EXEC_LIMIT,
        )?
        .ok()?;
        Ok(())
    }

    /// Copy the local file `local` to `path` inside the host (keeping its mode).
    pub fn copy_in(&self, local: &Path, path: &str) -> Res {
        let src = local.to_string_lossy().into_owned();
        run(
            self.testhost().args(["cp", &self.name, &src, path]),
            EXEC_LIMIT,
        )?
        .ok()?;
        Ok(())
    }

    /// Save `yaml` as /etc/strackt/server.yaml (what an admin's editor or deploy tool does).
    pub fn put_definition(&self, yaml: &str) -> Res {
        self.write("/etc/strackt/server.yaml", yaml, 0o644)
    }

    /// The content of a file inside the host (error if it cannot be read).
    pub fn read(&self, path: &str) -> Res<String> {
        self.exec(&["cat", "--", path])?.ok()
    }

    /// Whether `path` exists inside the host (a dangling symlink counts as existing).
    pub fn exists(&self, path: &str) -> Res<bool> {
        Ok(self.exec(&["test", "-e", path])?.success()
            || self.exec(&["test", "-L", path])?.success())
    }

    /// `MODE OWNER GROUP` of a path, e.g. `640 root adm`.
    pub fn stat(&self, path: &str) -> Res<String> {
        Ok(self
            .exec(&["stat", "-c", "%a %U %G", "--", path])?
            .ok()?
            .trim()
            .to_string())
    }

    /// Install strackt as the README says and start it: symlink the binary to /usr/bin, install
    /// the unit, save `definition` as /etc/strackt/server.yaml, `systemctl enable --now strackt`
    /// (Type=notify: returns once the daemon said it is ready).
    pub fn install(&self, definition: &str) -> Res {
        self.install_unit()?;
        self.put_definition(definition)?;
        self.sh_ok("systemctl daemon-reload && systemctl enable --now strackt.service")
            .map_err(|e| format!("starting strackt failed: {e}\n{}", self.journal(60)))?;
        Ok(())
    }

    /// The binary on PATH and the unit installed, daemon not started (for `strackt check`).
    pub fn install_unit(&self) -> Res {
        self.sh_ok("mkdir -p /etc/strackt && ln -sf /opt/strackt/strackt /usr/bin/strackt")?;
        let unit = fs::read_to_string(crate::repo_root().join("systemd/strackt.service"))?;
        self.write("/etc/systemd/system/strackt.service", &unit, 0o644)
    }

    /// `strackt apply`: a pass now, waiting for it.
    pub fn apply(&self) -> Res<Out> {
        self.strackt(&["apply"])
    }

    /// `strackt apply`, which must exit 0.
    pub fn apply_ok(&self) -> Res {
        let out = self.apply()?;
        if out.success() {
            Ok(())
        } else {
            Err(format!("strackt apply failed: {out}").into())
        }
    }

    /// `strackt generations --json`, newest first.
    pub fn generations(&self) -> Res<Vec<Generation>> {
        self.strackt(&["generations", "--json"])?.json_ok()
    }

    /// `strackt history --json`, newest first.
    pub fn history(&self) -> Res<Vec<Operation>> {
        self.strackt(&["history", "--json"])?.json_ok()
    }

    /// `strackt status --json`.
    pub fn status(&self) -> Res<Status> {
        self.strackt(&["status", "--json"])?.json_ok()
    }

    /// The id of the generation marked `active` (exactly one must be).
    pub fn active_generation(&self) -> Res<u64> {
        let gens = self.generations()?;
        let active: Vec<u64> = gens
            .iter()
            .filter(|g| g.state == "active")
            .map(|g| g.id)
            .collect();
        match active.as_slice() {
            [one] => Ok(*one),
            _ => Err(format!("want exactly one active generation, got {gens:#?}").into()),
        }
    }

    /// `readlink /var/lib/strackt/current`.
    pub fn current_link(&self) -> Res<String> {
        Ok(self
            .exec(&["readlink", "/var/lib/strackt/current"])?
            .ok()?
            .trim()
            .to_string())
    }

    /// `systemctl is-active UNIT` (`active`, `inactive`, `failed`, …).
    pub fn is_active(&self, unit: &str) -> Res<String> {
        Ok(self
            .exec(&["systemctl", "is-active", unit])?
            .stdout
            .trim()
            .to_string())
    }

    /// `systemctl is-enabled UNIT` (`enabled`, `disabled`, `not-found`…).
    pub fn is_enabled(&self, unit: &str) -> Res<String> {
        let out = self.exec(&["systemctl", "is-enabled", unit])?;
        let text = if out.stdout.trim().is_empty() {
            out.stderr
        } else {
            out.stdout
        };
        Ok(text.trim().to_string())
    }

    /// `systemctl show -p MainPID --value UNIT` (0 when not running).
    pub fn main_pid(&self, unit: &str) -> Res<u32> {
        let out = self
            .exec(&["systemctl", "show", "-p", "MainPID", "--value", unit])?
            .ok()?;
        out.trim()
            .parse()
            .map_err(|e| format!("MainPID of {unit}: {out:?}: {e}").into())
    }

    /// GET `path` from the daemon's HTTP API inside the host: (status code, body).
    pub fn http_get(&self, path: &str) -> Res<(u16, String)> {
        let url = format!("http://127.0.0.1:7477{path}");
        let out = self
            .exec(&[
                "curl",
                "-sS",
                "--max-time",
                "20",
                "-w",
                "\n%{http_code}",
                &url,
            ])?
            .ok()?;
        let (body, code) = out
            .rsplit_once('\n')
            .ok_or_else(|| format!("no status line from curl: {out:?}"))?;
        Ok((code.trim().parse()?, body.to_string()))
    }

    /// The last lines of the daemon's journal.
    pub fn journal(&self, lines: u32) -> String {
        let n = lines.to_string();
        self.exec(&[
            "journalctl",
            "-u",
            "strackt.service",
            "--no-pager",
            "-o",
            "short-precise",
            "-n",
            &n,
        ])
        .map(|o| o.text())
        .unwrap_or_else(|e| e.to_string())
    }

    /// What a developer wants to see when a test failed.
    pub fn diagnostics(&self) -> String {
        let history = self
            .sh("strackt history --json 2>&1 | head -c 6000")
            .map(|o| o.text())
            .unwrap_or_else(|e| e.to_string());
        let failed = self
            .exec(&["systemctl", "--failed", "--no-legend", "--no-pager"])
            .map(|o| o.text())
            .unwrap_or_else(|e| e.to_string());
        format!(
            "===== diagnostics of host {} =====\n--- journalctl -u strackt\n{}\n--- strackt history --json\n{}\n--- systemctl --failed\n{}\n=====",
            self.name,
            self.journal(150),
            history,
            failed
        )
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = run(self.testhost().args(["down", &self.name]), UP_LIMIT).and_then(Out::ok)
        {
            eprintln!("could not take host {} down: {e}", self.name);
        }
    }
}

impl Out {
    /// Parse stdout as JSON, requiring exit 0.
    pub fn json_ok<T: serde::de::DeserializeOwned>(&self) -> Res<T> {
        if !self.success() {
            return Err(format!("command failed: {self}").into());
        }
        self.json()
    }
}
