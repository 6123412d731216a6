//! Helpers for driving testhost servers: boot a disposable Debian 12 host with a real systemd as
//! PID 1, install the strackt binary and its unit in it as a user would, run the CLI inside and
//! parse its `--json` answers.
//!
//! Environment (all optional):
//! - `TESTHOST`: the testhost script (default `<repo>/../shared/testhost/testhost`)
//! - `STRACKT_BIN`: the binary under test (default `debug/strackt` in `$CARGO_TARGET_DIR`, else
//!   in `<repo>/target`)
//! - `TESTHOST_CACHE` / `TESTHOST_EXTRA_PACKAGES`: the base the hosts boot from (default
//!   `/var/cache/testhost-strackt` with `curl`, the base `tests/run` builds before the tests)
//! - `STRACKT_KEEP_HOSTS=1`: leave the hosts of failed tests up for a look (`testhost shell`)
//! - `STRACKT_HOST_PREFIX`: the first part of the hosts' names (default `st`), to keep runs apart

mod host;
mod model;

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub use host::{with_app_host, with_app_host_binds, with_host, Host};
pub use model::{Generation, Operation, Status, Step};

/// What every helper and test returns: `?` works on io, JSON and string errors.
pub type Res<T = ()> = Result<T, Box<dyn Error + Send + Sync>>;

/// The cache and extra packages of the suite's own testhost base (curl for the HTTP tests).
pub const DEFAULT_CACHE: &str = "/var/cache/testhost-strackt";
/// Extra Debian packages of the suite's base.
pub const DEFAULT_EXTRA_PACKAGES: &str = "curl";

/// Root of the strackt repository (the parent of this crate).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// The testhost script: `$TESTHOST`, else `shared/` beside the repository.
pub fn testhost_path() -> PathBuf {
    std::env::var_os("TESTHOST")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/testhost/testhost"))
}

/// The strackt binary under test: `$STRACKT_BIN`, else `debug/strackt` in cargo's target
/// directory (`$CARGO_TARGET_DIR`, else `<repo>/target`).
pub fn strackt_bin() -> PathBuf {
    std::env::var_os("STRACKT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target"));
            target.join("debug/strackt")
        })
}

/// The base of the app tests: PostgreSQL, git, Python with psycopg2 (the sample app), wrk, and
/// nodejs with nginx (the app that binds its own port, `mode: proxy`).
pub const APPS_CACHE: &str = "/var/cache/testhost-strackt-apps";
/// Extra Debian packages of the apps base.
pub const APPS_EXTRA_PACKAGES: &str =
    "curl,postgresql,git,python3-psycopg2,wrk,jq,restic,nodejs,nginx";

/// Which testhost base a host boots from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// The suite's own (`TESTHOST_CACHE`, `TESTHOST_EXTRA_PACKAGES`).
    Core,
    /// The apps base (`TESTHOST_APPS_CACHE`, `TESTHOST_APPS_EXTRA_PACKAGES`).
    Apps,
}

/// A `testhost` command for the core base.
pub fn testhost() -> Command {
    testhost_for(Base::Core)
}

/// A `testhost` command with `base` selected (the environment may name other values). Every
/// call must name the same base as the host's `up`: `up` rebuilds a base whose recipe (which
/// includes the extra packages) differs.
pub fn testhost_for(base: Base) -> Command {
    let mut cmd = Command::new(testhost_path());
    let (cache, extra) = match base {
        Base::Core => ("TESTHOST_CACHE", "TESTHOST_EXTRA_PACKAGES"),
        Base::Apps => ("TESTHOST_APPS_CACHE", "TESTHOST_APPS_EXTRA_PACKAGES"),
    };
    let (default_cache, default_extra) = match base {
        Base::Core => (DEFAULT_CACHE, DEFAULT_EXTRA_PACKAGES),
        Base::Apps => (APPS_CACHE, APPS_EXTRA_PACKAGES),
    };
    match std::env::var_os(cache) {
        Some(c) => {
            cmd.env("TESTHOST_CACHE", c);
            if let Some(e) = std::env::var_os(extra) {
                cmd.env("TESTHOST_EXTRA_PACKAGES", e);
            }
        }
        None => {
            cmd.env("TESTHOST_CACHE", default_cache);
            cmd.env(
                "TESTHOST_EXTRA_PACKAGES",
                std::env::var_os(extra).unwrap_or_else(|| default_extra.into()),
            );
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// The result of one command: exit code and both outputs.
#[derive(Debug, Clone)]
pub struct Out {
    /// What ran, for messages.
    pub cmd: String,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout and stderr together (what a user sees in a terminal).
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// `Ok(stdout)` on exit 0, else an error that shows everything.
    pub fn ok(self) -> Res<String> {
        if self.success() {
            Ok(self.stdout)
        } else {
            Err(format!("command failed: {self}").into())
        }
    }

    /// Parse stdout as JSON (whatever the exit code: `apply --json` answers JSON on failure too).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Res<T> {
        serde_json::from_str(&self.stdout).map_err(|e| format!("{e} in the JSON of {self}").into())
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self
            .code
            .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"));
        write!(
            f,
            "`{}` ({code})\n--- stdout\n{}\n--- stderr\n{}\n---",
            self.cmd,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Run a command to completion under a time limit (coreutils `timeout`, which kills the whole
/// process group: `testhost exec` execs into the command inside the host, so that one dies).
pub fn run(cmd: &mut Command, limit: Duration) -> Res<Out> {
    let desc = describe(cmd);
    let mut limited = Command::new("timeout");
    limited
        .arg("--kill-after=5")
        .arg(format!("{}", limit.as_secs().max(1)))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => limited.env(k, v),
            None => limited.env_remove(k),
        };
    }
    let out = limited
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run `{desc}`: {e}"))?;
    let out = Out {
        cmd: desc,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if out.code == Some(124) || out.code == Some(137) {
        return Err(format!("timed out after {}s: {out}", limit.as_secs()).into());
    }
    Ok(out)
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Poll `check` every 200 ms until it says yes; an error names `what` and the last answer.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> Res<bool>) -> Res {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(true) => return Ok(()),
            Ok(false) => "not yet".to_string(),
            Err(e) => e.to_string(),
        };
        if start.elapsed() > limit {
            return Err(format!(
                "gave up after {:.0}s waiting for {what}; last check: {last}",
                limit.as_secs_f64()
            )
            .into());
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Fail with `msg` unless `cond` holds (an `assert!` that returns an error instead of panicking,
/// so the host's diagnostics are printed and the host is taken down).
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Res {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

/// Fail unless `got == want`, showing both.
pub fn ensure_eq<T: PartialEq + fmt::Debug>(got: T, want: T, what: &str) -> Res {
    ensure(got == want, || {
        format!("{what}: got {got:?}, want {want:?}")
    })
}

/// A problem line of `strackt check`: `FILE:LINE:COL: field.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as printed.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
    /// `field.path: message`.
    pub rest: String,
}

/// Parse every `FILE:LINE:COL: …` line of `text` (other lines are ignored).
pub fn problems(text: &str) -> Vec<Problem> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ':');
            let file = parts.next()?.to_string();
            let line = parts.next()?.parse().ok()?;
            let col = parts.next()?.parse().ok()?;
            let rest = parts.next()?.trim().to_string();
            (!file.is_empty() && !rest.is_empty()).then_some(Problem {
                file,
                line,
                col,
                rest,
            })
        })
        .collect()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn problem_lines_are_parsed() {
        let got =
            problems("/tmp/x.yaml:3:5: files.\"a\": relative path\nnoise\nsummary: 2 problems\n");
        assert_eq!(
            got,
            vec![Problem {
                file: "/tmp/x.yaml".into(),
                line: 3,
                col: 5,
                rest: "files.\"a\": relative path".into()
            }]
        );
    }

    #[test]
    fn out_reports_everything() {
        let out = Out {
            cmd: "x".into(),
            code: Some(2),
            stdout: "a".into(),
            stderr: "b".into(),
        };
        assert!(!out.success());
        assert_eq!(out.text(), "ab");
        let err = out.ok().expect_err("exit 2 is a failure");
        assert!(err.to_string().contains("exit 2"));
    }

    #[test]
    fn run_enforces_the_limit() {
        let err = run(Command::new("sleep").arg("5"), Duration::from_secs(1))
            .expect_err("sleep 5 outlives 1s");
        assert!(err.to_string().contains("timed out"), "{err}");
        let ok = run(Command::new("echo").arg("hi"), Duration::from_secs(5)).expect("echo runs");
        assert_eq!(ok.stdout, "hi\n");
    }
}
