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

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::HostError;

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

/// The real processes (tokio::process).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealProcesses;

/// What a command printed so far, each kept to its end.
#[derive(Default)]
struct Kept {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    tail: Vec<u8>,
}

fn keep_end(buf: &mut Vec<u8>, add: &[u8], keep: usize) {
    buf.extend_from_slice(add);
    if buf.len() > keep {
        let cut = buf.len() - keep;
        buf.drain(..cut);
    }
}

/// A started command: its child, group and output pumps.
struct Running {
    child: tokio::process::Child,
    group: Option<Pid>,
    kept: Arc<Mutex<Kept>>,
    pumps: Vec<tokio::task::JoinHandle<()>>,
}

fn spawn_error(program: &str) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |source| HostError::Spawn {
        program: program.to_string(),
        source,
    }
}

impl Running {
    /// Start `cmd`; its stdin is piped when `piped_stdin` (the caller writes it), its stdout
    /// is left to the caller when `take_stdout`.
    fn start(cmd: &mut Cmd, piped_stdin: bool, take_stdout: bool) -> Result<Running, HostError> {
        let mut c = tokio::process::Command::from(cmd.command());
        let stdout = match cmd.stdout_file.take() {
            Some(f) => Stdio::from(f),
            None => Stdio::piped(),
        };
        c.stdin(if piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = c.spawn().map_err(spawn_error(&cmd.program))?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let kept = Arc::new(Mutex::new(Kept::default()));
        let stdout = match take_stdout {
            true => None,
            false => child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn AsyncRead + Send + Unpin>),
        };
        let stderr = child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn AsyncRead + Send + Unpin>);
        let pumps = [(Stream::Stdout, stdout), (Stream::Stderr, stderr)]
            .into_iter()
            .filter_map(|(stream, from)| {
                let (kept, live) = (kept.clone(), cmd.live.clone());
                Some(tokio::spawn(pump(from?, stream, kept, cmd.keep, live)))
            })
            .collect();
        Ok(Running {
            child,
            group,
            kept,
            pumps,
        })
    }

    fn signal(&self, signal: Signal) {
        if let Some(g) = self.group {
            let _ = killpg(g, signal);
        }
    }

    /// Wait for the end (or the limit, or the stop), kill what is left of the group, and
    /// collect the output.
    async fn finish(mut self, limit: Duration, stop: Option<watch::Receiver<bool>>) -> Output {
        let end = {
            let group = self.group;
            let wait = self.child.wait();
            tokio::pin!(wait);
            let stopped = async {
                let stopped = match stop {
                    Some(mut rx) => rx.wait_for(|s| *s).await.is_ok(),
                    None => false,
                };
                if !stopped {
                    // No stop asked for, ever: only the end or the limit count.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                s = &mut wait => s.map_or(End::Exited(-1), End::of),
                () = tokio::time::sleep(limit) => End::TimedOut(limit),
                () = stopped => {
                    if let Some(g) = group {
                        let _ = killpg(g, Signal::SIGINT);
                    }
                    let _ = tokio::time::timeout(STOP_GRACE, &mut wait).await;
                    End::Stopped
                }
            }
        };
        // It is over: nothing it started may keep running (or keep our pipes open).
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait().await;
        for p in self.pumps {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Output {
            end,
            stdout: text(&kept.stdout),
            stderr: text(&kept.stderr),
            tail: text(&kept.tail),
        }
    }
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    stream: Stream,
    kept: Arc<Mutex<Kept>>,
    keep: usize,
    live: Option<mpsc::UnboundedSender<Chunk>>,
) {
    let mut chunk = vec![0u8; 8192];
    while let Ok(n) = from.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        {
            let mut k = kept.lock().unwrap_or_else(PoisonError::into_inner);
            let own = match stream {
                Stream::Stdout => &mut k.stdout,
                Stream::Stderr => &mut k.stderr,
            };
            keep_end(own, &chunk[..n], keep);
            keep_end(&mut k.tail, &chunk[..n], keep);
        }
        if let Some(l) = &live {
            let _ = l.send(Chunk {
                stream,
                bytes: chunk[..n].to_vec(),
            });
        }
    }
}

/// A pipe's sink's stdin: dropped without [`Feed::close`] (a failed source, a cancelled
/// pipe), it kills the sink's group *before* the sink can see the end of its input.
struct Feed {
    into: Option<tokio::process::ChildStdin>,
    sink: Option<Pid>,
}

impl Feed {
    /// The source succeeded: the end of the input.
    fn close(mut self) {
        self.into.take();
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if self.into.is_some() {
            if let Some(g) = self.sink {
                let _ = killpg(g, Signal::SIGKILL);
            }
        }
    }
}

impl Processes for RealProcesses {
    fn installed(&self, program: &str) -> bool {
        PATH.split(':')
            .any(|d| std::path::Path::new(d).join(program).is_file())
    }

    async fn run(&self, mut cmd: Cmd) -> Result<Output, HostError> {
        let input = std::mem::take(&mut cmd.stdin);
        let mut running = Running::start(&mut cmd, !input.is_empty(), false)?;
        if let Some(mut stdin) = running.child.stdin.take() {
            // Written beside the wait: a command that reads little and exits must not hang us.
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
        Ok(running.finish(cmd.limit, cmd.stop.take()).await)
    }

    async fn pipe(&self, mut source: Cmd, mut sink: Cmd) -> Result<Piped, HostError> {
        let input = std::mem::take(&mut source.stdin);
        let mut src = Running::start(&mut source, !input.is_empty(), true)?;
        let mut snk = Running::start(&mut sink, true, false)?;
        if let Some(mut stdin) = src.child.stdin.take() {
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
        let mut feed = Feed {
            into: snk.child.stdin.take(),
            sink: snk.group,
        };
        let from = src.child.stdout.take();
        let prefix = std::mem::take(&mut sink.stdin);
        let source_group = src.group;
        let sink_limit = sink.limit;
        let sink_stop = sink.stop.take();
        let sink_name = sink.program.clone();
        let source_side = async move {
            let copied = async {
                let copied: std::io::Result<()> = async {
                    let into = feed.into.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
                    into.write_all(&prefix).await?;
                    let mut from = from.ok_or(std::io::ErrorKind::BrokenPipe)?;
                    tokio::io::copy_buf(&mut BufReader::with_capacity(1 << 20, &mut from), into)
                        .await
                        .map(|_| ())
                }
                .await;
                if copied.is_err() {
                    // The sink stopped reading: the source would block on a full pipe.
                    if let Some(g) = source_group {
                        let _ = killpg(g, Signal::SIGKILL);
                    }
                }
                copied
            };
            // Side by side: a source past its limit is killed, which ends the copy.
            let (copied, mut out) =
                tokio::join!(copied, src.finish(source.limit, source.stop.take()));
            match copied {
                Ok(()) if out.success() => feed.close(),
                Ok(()) => drop(feed),
                Err(e) => {
                    drop(feed);
                    out.end = End::Cut;
                    out.stderr
                        .push_str(&format!("\nstreaming into {sink_name}: {e}"));
                }
            }
            out
        };
        let (source_out, mut sink_out) =
            tokio::join!(source_side, snk.finish(sink_limit, sink_stop));
        // The source failed on its own (not cut off by the sink): the sink was killed for it.
        if !source_out.success() && source_out.end != End::Cut {
            sink_out.end = End::Cut;
        }
        Ok(Piped {
            source: source_out,
            sink: sink_out,
        })
    }
}

/// Run `cmd` to its end (or its limit) on this thread: the synchronous host tools. Its output
/// is collected in unnamed files, each kept to its last `cmd.keep` bytes, so nothing the
/// command prints can block it and work that may outlive strackt (dpkg run through
/// `systemd-run`) never dies of SIGPIPE. Live output and stop are not used here.
///
/// # Errors
/// [`HostError::Spawn`] when it cannot be started, [`HostError::Command`] when its output
/// cannot be collected. How it ended is the caller's to judge ([`Output::checked`]).
pub fn run_blocking(op: &'static str, cmd: Cmd) -> Result<Output, HostError> {
    let io = |e: std::io::Error| HostError::Command {
        op,
        message: format!("collecting the output of {}: {e}", cmd.program),
    };
    let (out, err) = (
        tempfile::tempfile().map_err(io)?,
        tempfile::tempfile().map_err(io)?,
    );
    let mut c = cmd.command();
    c.stdin(if cmd.stdin.is_empty() {
        Stdio::null()
    } else {
        Stdio::piped()
    })
    .stdout(out.try_clone().map_err(io)?)
    .stderr(err.try_clone().map_err(io)?);
    let mut child = c.spawn().map_err(spawn_error(&cmd.program))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A tool that exits without reading all of it is judged by its status, not by EPIPE.
        let _ = stdin.write_all(&cmd.stdin);
    }
    let end = wait_blocking(&mut child, cmd.limit).map_err(io)?;
    let read_end = |mut f: std::fs::File| -> std::io::Result<String> {
        let len = f.seek(SeekFrom::End(0))?;
        f.seek(SeekFrom::Start(len.saturating_sub(cmd.keep as u64)))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let (stdout, stderr) = (read_end(out).map_err(io)?, read_end(err).map_err(io)?);
    Ok(Output {
        end,
        tail: format!("{stdout}{stderr}"),
        stdout,
        stderr,
    })
}

/// Wait for `child` until `limit`, then kill its group; what it left in its group goes too.
fn wait_blocking(child: &mut std::process::Child, limit: Duration) -> std::io::Result<End> {
    let group = i32::try_from(child.id()).ok().map(Pid::from_raw);
    let deadline = std::time::Instant::now() + limit;
    // Most tools end within milliseconds: look often at first, then every 50 ms.
    let mut pause = Duration::from_millis(1);
    let end = loop {
        if let Some(status) = child.try_wait()? {
            break End::of(status);
        }
        if std::time::Instant::now() >= deadline {
            break End::TimedOut(limit);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    if let Some(g) = group {
        let _ = killpg(g, Signal::SIGKILL);
    }
    child.wait()?;
    Ok(end)
}

#[cfg(test)]
#[path = "processes_tests.rs"]
mod tests;
