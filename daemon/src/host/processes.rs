//! Processes: the one way strackt runs a program on the host, and the seam deploy and backup
//! reach it through (git, pg_dump, psql, restic, the deploy steps), with a fake in
//! [`super::fake`] that records every call.
//!
//! Every command gets a clean environment (only `PATH` and what the caller names), runs in a
//! process group of its own with `/dev/null` or the caller's bytes on stdin, and everything it
//! left running in its group is killed when it ends, times out or is dropped. A command run as
//! another user gets that user's uid and gid and nothing of root's environment; where it runs
//! (`cwd`) is the caller's choice.
//!
//! [`Processes::pipe`] streams one command into another *through strackt*, so the source's
//! failure is seen before the sink is told its input ended: the sink is killed instead, and a
//! failed `pg_dump` never becomes a restic snapshot, a failed `pg_restore` never a committed
//! transaction (BACKUP-NOTES.md: a stream that silently lost data).
//!
//! The synchronous host tools (nft, the shadow tools, apt, dpkg) use [`run_blocking`]: the
//! same command, environment, group and limit, with the output collected in unnamed files.
//!
//! This file is the seam and the values it speaks in ([`Cmd`], [`Output`]); `real.rs` starts
//! the programs.

mod real;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::tree::View;
use super::HostError;
pub use real::{run_blocking, RealProcesses};

/// The `PATH` every command gets.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How much of each output a command keeps unless told otherwise (the end of it).
pub const KEEP: usize = 16 * 1024;
/// How long a command asked to stop (SIGINT) has before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Which output a live chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Output as the command printed it, sent while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Where it came from.
    pub stream: Stream,
    /// The bytes, as read (not split into lines).
    pub bytes: Vec<u8>,
}

/// A command to run. Secrets go in `env` or `stdin`, never in `args`.
pub struct Cmd {
    program: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    user: Option<(u32, u32)>,
    stdin: Vec<u8>,
    stdout_file: Option<std::fs::File>,
    view: Option<Arc<View>>,
    limit: Duration,
    keep: usize,
    live: Option<mpsc::UnboundedSender<Chunk>>,
    stop: Option<watch::Receiver<bool>>,
}

// Hand-written: the environment holds passwords and keys.
impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cmd")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("user", &self.user)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// What a fake host records of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment (besides `PATH`).
    pub env: BTreeMap<String, String>,
    /// What it was given on stdin (for a pipe's sink: its own bytes, then the source's output).
    pub stdin: Vec<u8>,
    /// Where it ran.
    pub cwd: Option<PathBuf>,
    /// As whom: (uid, gid); `None`: as strackt.
    pub user: Option<(u32, u32)>,
    /// The paths it was given a pinned view of ([`Cmd::view`]).
    pub pinned: Vec<PathBuf>,
}

impl Cmd {
    /// `program` with no arguments, stopped after `limit`.
    pub fn new(program: impl Into<String>, limit: Duration) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            stdin: Vec::new(),
            stdout_file: None,
            view: None,
            limit,
            keep: KEEP,
            live: None,
            stop: None,
        }
    }

    /// `argv[0]` with the rest as arguments (`None` when `argv` is empty).
    pub fn argv(argv: &[String], limit: Duration) -> Option<Cmd> {
        let (program, args) = argv.split_first()?;
        Some(Cmd::new(program.clone(), limit).args(args))
    }

    /// Add arguments.
    #[must_use]
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Cmd {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Add environment variables (the environment is otherwise empty but for `PATH`).
    #[must_use]
    pub fn envs<'a>(mut self, env: impl IntoIterator<Item = (&'a String, &'a String)>) -> Cmd {
        self.env
            .extend(env.into_iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// Set one environment variable.
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Cmd {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Run in `dir` (default: strackt's own working directory, `/` under systemd).
    #[must_use]
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Cmd {
        self.cwd = Some(dir.into());
        self
    }

    /// Run as `uid`:`gid` (supplementary groups dropped).
    #[must_use]
    pub fn user(mut self, uid: u32, gid: u32) -> Cmd {
        self.user = Some((uid, gid));
        self
    }

    /// Give it `bytes` on stdin (default: nothing, `/dev/null`).
    #[must_use]
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = bytes.into();
        self
    }

    /// Send its stdout into `file` (opened by strackt, so the command opens no path).
    #[must_use]
    pub fn stdout_to(mut self, file: std::fs::File) -> Cmd {
        self.stdout_file = Some(file);
        self
    }

    /// Start it in `view` ([`View::enter`]): the paths it reads in trees other users can
    /// change are the ones pinned, whatever those users rename or link meanwhile.
    #[must_use]
    pub fn view(mut self, view: View) -> Cmd {
        self.view = Some(Arc::new(view));
        self
    }

    /// Keep the last `bytes` of each output (default [`KEEP`]).
    #[must_use]
    pub fn keep(mut self, bytes: usize) -> Cmd {
        self.keep = bytes;
        self
    }

    /// Send its output to `live` as it is printed.
    #[must_use]
    pub fn live(mut self, live: mpsc::UnboundedSender<Chunk>) -> Cmd {
        self.live = Some(live);
        self
    }

    /// Stop it when `stop` turns true: SIGINT to its group (it may clean up), SIGKILL
    /// [`STOP_GRACE`] later.
    #[must_use]
    pub fn stop_on(mut self, stop: watch::Receiver<bool>) -> Cmd {
        self.stop = Some(stop);
        self
    }

    /// What a fake records of it.
    pub fn call(&self) -> Call {
        Call {
            program: self.program.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            stdin: self.stdin.clone(),
            cwd: self.cwd.clone(),
            user: self.user,
            pinned: self
                .view
                .as_ref()
                .map(|v| v.paths().to_vec())
                .unwrap_or_default(),
        }
    }

    /// Feed `bytes` to the live channel and to a stdout file, as a real run would (the fake).
    pub(crate) fn deliver(&mut self, stream: Stream, bytes: &[u8]) -> std::io::Result<bool> {
        if let Some(live) = &self.live {
            let _ = live.send(Chunk {
                stream,
                bytes: bytes.to_vec(),
            });
        }
        match (&mut self.stdout_file, stream) {
            (Some(f), Stream::Stdout) => f.write_all(bytes).map(|()| true),
            _ => Ok(false),
        }
    }

    /// The std command: program, arguments, clean environment, cwd, user, own process group.
    fn command(&self) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", PATH)
            .envs(&self.env)
            .process_group(0);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        if let Some(view) = self.view.clone() {
            // SAFETY: `View::enter` only makes system calls on what `View::pin` prepared (no
            // allocation, no lock), as a closure run between `fork` and `exec` must.
            #[allow(unsafe_code)]
            unsafe {
                cmd.pre_exec(move || view.enter());
            }
        }
        cmd
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it.
    Signalled(i32),
    /// It ran past its limit and was killed.
    TimedOut(Duration),
    /// It was asked to stop ([`Cmd::stop_on`]).
    Stopped,
    /// One end of a pipe, killed because the other failed: a sink before the end of its
    /// input (the source failed), a source whose output the sink stopped reading.
    Cut,
}

impl End {
    fn of(status: std::process::ExitStatus) -> End {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => End::Exited(code),
            (None, Some(sig)) => End::Signalled(sig),
            (None, None) => End::Exited(-1),
        }
    }
}

/// What a command did: how it ended and the end of its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub end: End,
    /// The end of its stdout (empty when stdout went to a file or into a pipe).
    pub stdout: String,
    /// The end of its stderr.
    pub stderr: String,
    /// The end of both, interleaved as printed.
    pub tail: String,
}

impl Output {
    /// A finished command with this output (the fake's results).
    pub fn with(end: End, stdout: &str, stderr: &str) -> Output {
        Output {
            end,
            stdout: stdout.into(),
            stderr: stderr.into(),
            tail: format!("{stdout}{stderr}"),
        }
    }

    /// Exit 0 within the limit.
    pub fn success(&self) -> bool {
        self.end == End::Exited(0)
    }

    /// Why it failed, in one line (`None` when it succeeded).
    pub fn failure(&self) -> Option<String> {
        Some(match &self.end {
            End::Exited(0) => return None,
            End::Exited(code) => format!("exited with status {code}"),
            End::Signalled(sig) => format!("killed by signal {sig}"),
            End::TimedOut(limit) => format!(
                "did not finish within {}",
                humantime::format_duration(*limit)
            ),
            End::Stopped => "stopped".into(),
            End::Cut => "cut off: the other end of its pipe failed".into(),
        })
    }

    /// `Ok(self)` when it succeeded; else the error naming `op` and the end of its stderr
    /// ([`HostError::Timeout`] for a command that ran out of time).
    ///
    /// # Errors
    /// The command failed.
    pub fn checked(self, op: &'static str) -> Result<Output, HostError> {
        match (&self.end, self.failure()) {
            (_, None) => Ok(self),
            (End::TimedOut(limit), _) => Err(HostError::Timeout {
                what: op.into(),
                secs: limit.as_secs(),
            }),
            (_, Some(why)) => Err(HostError::Command {
                op,
                message: format!("{why}: {}", self.stderr.trim()),
            }),
        }
    }
}

/// A pipe's two ends. At most one of them is [`End::Cut`]: the other one's failure is the
/// pipe's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piped {
    /// The source (its stdout went into the sink: `stdout` is empty).
    pub source: Output,
    /// The sink.
    pub sink: Output,
}

/// Running programs on the host. Real implementation: [`RealProcesses`].
///
/// # Errors
/// [`HostError::Spawn`] when the program cannot be started; everything after that (exit
/// status, time limit, output) is in the [`Output`].
///
/// # Cancellation
/// Dropping a future kills the command (and a pipe's sink before its input ends).
pub trait Processes: Send + Sync {
    /// Run `cmd` to its end, its limit, or its stop.
    fn run(&self, cmd: Cmd) -> impl Future<Output = Result<Output, HostError>> + Send;
    /// Run `source` with its stdout going to `sink`'s stdin (after `sink`'s own stdin bytes).
    /// The sink sees the end of its input only after the source exited 0; a source that fails
    /// (or runs out of time) gets its sink killed first ([`End::Cut`]).
    fn pipe(&self, source: Cmd, sink: Cmd)
        -> impl Future<Output = Result<Piped, HostError>> + Send;
    /// Whether `program` is installed: a file of that name in a directory of [`PATH`].
    fn installed(&self, program: &str) -> bool;
}

#[cfg(test)]
mod tests;
