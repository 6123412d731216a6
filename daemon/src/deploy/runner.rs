//! Runs one deploy command through the host's [`Processes`]: its own process group, a clean
//! environment, the app's user, a time limit, and both output streams interleaved into one
//! bounded tail (and, for a step followed live, line by line into its [`StepOutput`] as they
//! are printed). Whatever the command leaves running in its group is killed when it ends, so a
//! step never outlives its record.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::host::processes::{Chunk, Cmd, Processes, Stream};
use crate::ops::live::StepOutput;

/// How much output a step keeps (the end of it).
const TAIL_BYTES: usize = 16 * 1024;

/// Who a command runs as.
#[derive(Debug, Clone)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Home directory (`HOME`).
    pub home: String,
    /// Name (`USER`).
    pub name: String,
}

impl RunAs {
    /// Look a user up in the host's account database.
    pub fn lookup(name: &str) -> Option<RunAs> {
        let user = nix::unistd::User::from_name(name).ok()??;
        Some(RunAs {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir.display().to_string(),
            name: user.name,
        })
    }

    /// root.
    pub fn root() -> RunAs {
        RunAs {
            uid: 0,
            gid: 0,
            home: "/root".into(),
            name: "root".into(),
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone)]
pub struct Ran {
    /// Exit 0 within the limit.
    pub ok: bool,
    /// Why not, in one line.
    pub failure: Option<String>,
    /// The end of its output.
    pub tail: String,
    /// Its stdout alone (for commands whose answer is read, e.g. `git rev-parse`).
    pub stdout: String,
}

/// Run `argv` in `cwd` as `user` with exactly `env` (plus PATH, HOME, USER), for at most
/// `limit`.
pub async fn run(
    p: &impl Processes,
    argv: &[String],
    cwd: &Path,
    env: &BTreeMap<String, String>,
    user: &RunAs,
    limit: Duration,
) -> Ran {
    run_into(p, argv, cwd, env, user, limit, None, None).await
}

/// [`run`], each line the command prints also going to `live` as it is printed.
pub async fn run_live(
    p: &impl Processes,
    argv: &[String],
    cwd: &Path,
    env: &BTreeMap<String, String>,
    user: &RunAs,
    limit: Duration,
    live: &Arc<StepOutput>,
) -> Ran {
    run_into(p, argv, cwd, env, user, limit, None, Some(live)).await
}

/// [`run`], with the command's stdout going into `stdout` (a file strackt opened itself, so
/// the command never opens a path) instead of the kept output, and what it prints to `live`.
#[allow(clippy::too_many_arguments)]
pub async fn run_into(
    p: &impl Processes,
    argv: &[String],
    cwd: &Path,
    env: &BTreeMap<String, String>,
    user: &RunAs,
    limit: Duration,
    stdout: Option<std::fs::File>,
    live: Option<&Arc<StepOutput>>,
) -> Ran {
    let Some(cmd) = Cmd::argv(argv, limit) else {
        return failed("empty command".into(), String::new());
    };
    // The user's own identity and nothing of root's environment; `env` may override these.
    let mut cmd = cmd
        .cwd(cwd)
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LANG", "C.UTF-8")
        .envs(env)
        .user(user.uid, user.gid)
        .keep(TAIL_BYTES);
    if let Some(file) = stdout {
        cmd = cmd.stdout_to(file);
    }
    let ran = match live {
        None => p.run(cmd).await,
        Some(live) => {
            let (tx, mut rx) = mpsc::unbounded_channel::<Chunk>();
            let follow = async {
                let (mut out, mut err) = (live.stream(), live.stream());
                while let Some(c) = rx.recv().await {
                    match c.stream {
                        Stream::Stdout => out.feed(&c.bytes),
                        Stream::Stderr => err.feed(&c.bytes),
                    }
                }
                out.end();
                err.end();
            };
            tokio::join!(p.run(cmd.live(tx)), follow).0
        }
    };
    match ran {
        Ok(out) => match out.failure() {
            None => Ran {
                ok: true,
                failure: None,
                tail: out.tail,
                stdout: out.stdout,
            },
            Some(why) => failed(why, out.tail),
        },
        Err(e) => failed(e.to_string(), String::new()),
    }
}

fn failed(why: String, tail: String) -> Ran {
    Ran {
        ok: false,
        failure: Some(why),
        tail,
        stdout: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::processes::RealProcesses;
    use std::sync::Mutex;

    fn sh(script: &str, limit: Duration) -> Ran {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let me = RunAs {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            home: "/tmp".into(),
            name: "me".into(),
        };
        rt.block_on(run(
            &RealProcesses,
            &["/bin/sh".into(), "-c".into(), script.into()],
            Path::new("/"),
            &BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
            &me,
            limit,
        ))
    }

    #[test]
    fn output_is_kept_and_failures_are_named() {
        let ok = sh("echo $GREETING; echo oops >&2", Duration::from_secs(10));
        assert!(ok.ok);
        assert_eq!(ok.stdout, "hi\n");
        assert!(ok.tail.contains("hi") && ok.tail.contains("oops"));
        let bad = sh("echo broken; exit 3", Duration::from_secs(10));
        assert!(!bad.ok);
        assert_eq!(bad.failure.as_deref(), Some("exited with status 3"));
        assert!(bad.tail.contains("broken"));
    }

    #[test]
    fn a_step_over_its_limit_is_killed_with_what_it_started() {
        let started = std::time::Instant::now();
        let slow = sh("sleep 30 & sleep 30", Duration::from_millis(300));
        assert!(!slow.ok);
        assert!(slow.failure.unwrap_or_default().contains("did not finish"));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_followed_command_gives_each_line_as_it_prints_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let outputs = crate::ops::live::Outputs::new(crate::state::Redactor::default());
        let out = Arc::new(outputs.step(1, 0, Arc::new(Mutex::new(String::new()))));
        let me = RunAs {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            home: "/tmp".into(),
            name: "me".into(),
        };
        let script = "echo first; echo oops >&2; sleep 2; echo last";
        let argv = ["/bin/sh".to_string(), "-c".into(), script.into()];
        let texts = |v: crate::ops::live::OutputView| {
            v.lines.into_iter().map(|l| l.text).collect::<Vec<_>>()
        };
        let env = BTreeMap::new();
        let (ran, early) = rt.block_on(async {
            let run = run_live(
                &RealProcesses,
                &argv,
                Path::new("/"),
                &env,
                &me,
                Duration::from_secs(10),
                &out,
            );
            // The first view holding two lines: printed live, it lacks the line that comes
            // two seconds later; printed at the end, it would hold all three. Polled, so a
            // loaded machine that starts the shell late does not fail it.
            let look = async {
                for _ in 0..500 {
                    let seen = outputs.after(1, 0);
                    if seen.lines.len() >= 2 {
                        return seen;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                outputs.after(1, 0)
            };
            tokio::join!(run, look)
        });
        assert!(ran.ok);
        let mut early = texts(early);
        early.sort();
        assert_eq!(
            early,
            ["first", "oops"],
            "the lines printed before the sleep"
        );
        assert_eq!(texts(outputs.after(1, 2)), ["last"]);
        assert!(ran.tail.contains("first") && ran.tail.contains("last"));
    }

    #[test]
    fn the_tail_is_bounded() {
        let loud = sh(
            "head -c 100000 /dev/zero | tr '\\0' x",
            Duration::from_secs(10),
        );
        assert!(loud.ok);
        assert_eq!(loud.tail.len(), TAIL_BYTES);
    }
}
