//! host/processes/real — [`RealProcesses`] and [`run_blocking`]: programs started on this
//! machine, each in a process group of its own that is killed when the command ends, times out
//! or is dropped, with its output kept to its end and, if asked, streamed live. Must not:
//! decide what a command's end means (callers judge the [`Output`]) or pass on strackt's own
//! environment.

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::{Chunk, Cmd, End, Output, Piped, Processes, Stream, PATH, STOP_GRACE};
use crate::host::HostError;

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
