//! In-memory processes: every call is recorded (program, arguments, environment, stdin) and
//! answered from a script, `restic` is a small model of one repository (init, snapshots with
//! tags, backup, tag, forget, dump), so backup and restore run against it, and `git` a small
//! model of the branches apps deploy from (ls-remote, clone, rev-parse, merge-base, checkout).
//!
//! The git model's one effect outside memory: a clone creates its (empty) directory, as the
//! deploy that made it goes on to work in it on disk.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::json;

use crate::host::processes::{Call, Cmd, End, Output, Piped, Processes, Stream};
use crate::host::HostError;

/// A snapshot in the fake repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSnapshot {
    /// Its id.
    pub id: String,
    /// When (RFC 3339; one second after the one before).
    pub time: String,
    /// The `--host` it was taken with.
    pub hostname: String,
    /// Its paths (a stream: its file name).
    pub paths: Vec<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// What a stream backup read.
    pub content: Vec<u8>,
}

/// The fake restic repository.
#[derive(Debug, Default)]
pub struct ResticModel {
    /// `restic init` ran.
    pub initialized: bool,
    /// The destination does not answer: every command fails as restic does then.
    pub unreachable: bool,
    /// The snapshots, oldest first.
    pub snapshots: Vec<FakeSnapshot>,
    made: u64,
}

/// The fake git: the branches of the repositories apps name, and the clones made of them.
#[derive(Debug, Default)]
pub struct GitModel {
    /// Each branch: (repository, branch) → its commits, oldest first.
    pub branches: BTreeMap<(String, String), Vec<String>>,
    /// Each clone: its directory → the branch it was cloned from and the commit checked out.
    clones: BTreeMap<PathBuf, ((String, String), String)>,
}

/// What the fake processes hold; public so tests can arrange and inspect it.
#[derive(Debug, Default)]
pub struct ProcessState {
    /// Every command run, in order (both ends of a pipe: source first).
    pub calls: Vec<Call>,
    /// Answers for the next runs of a program, in order; a program without one exits 0
    /// silently (`restic`: the model answers).
    pub script: BTreeMap<String, VecDeque<Output>>,
    /// Programs that are not installed.
    pub missing: BTreeSet<String>,
    /// The restic repository.
    pub restic: ResticModel,
    /// The git repositories.
    pub git: GitModel,
}

/// The fake processes (cheap to clone: clones share the state).
#[derive(Debug, Default, Clone)]
pub struct FakeProcesses {
    state: Arc<Mutex<ProcessState>>,
}

impl FakeProcesses {
    /// Lock the state for arranging or asserting.
    pub fn state(&self) -> MutexGuard<'_, ProcessState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answer the next run of `program` with `output`.
    pub fn script(&self, program: &str, output: Output) {
        self.state()
            .script
            .entry(program.into())
            .or_default()
            .push_back(output);
    }

    /// Record `call` and answer it.
    fn answer(&self, call: Call) -> Result<Output, HostError> {
        let mut s = self.state();
        if s.missing.contains(&call.program) {
            return Err(HostError::Spawn {
                program: call.program,
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let scripted = s
            .script
            .get_mut(&call.program)
            .and_then(VecDeque::pop_front);
        let out = match scripted {
            Some(out) => out,
            None if call.program == "restic" => s.restic.run(&call),
            None if call.program == "git" => s.git.run(&call),
            None => Output::with(End::Exited(0), "", ""),
        };
        s.calls.push(call);
        Ok(out)
    }
}

/// Hand the output to the command's live channel and stdout file, as a real run would.
fn deliver(cmd: &mut Cmd, out: &mut Output) -> Result<(), HostError> {
    let io = |e: std::io::Error| HostError::Command {
        op: "fake process",
        message: e.to_string(),
    };
    if cmd
        .deliver(Stream::Stdout, out.stdout.as_bytes())
        .map_err(io)?
    {
        out.stdout.clear();
    }
    cmd.deliver(Stream::Stderr, out.stderr.as_bytes())
        .map_err(io)?;
    Ok(())
}

impl Processes for FakeProcesses {
    fn installed(&self, program: &str) -> bool {
        !self.state().missing.contains(program)
    }

    async fn run(&self, mut cmd: Cmd) -> Result<Output, HostError> {
        let mut out = self.answer(cmd.call())?;
        deliver(&mut cmd, &mut out)?;
        Ok(out)
    }

    async fn pipe(&self, mut source: Cmd, mut sink: Cmd) -> Result<Piped, HostError> {
        let mut src = self.answer(source.call())?;
        deliver(&mut source, &mut src)?;
        let mut call = sink.call();
        if !src.success() {
            // The real sink is killed before the end of its input: it writes nothing.
            self.state().calls.push(call);
            return Ok(Piped {
                source: src,
                sink: Output::with(End::Cut, "", ""),
            });
        }
        call.stdin
            .extend(std::mem::take(&mut src.stdout).into_bytes());
        let mut out = self.answer(call)?;
        deliver(&mut sink, &mut out)?;
        Ok(Piped {
            source: src,
            sink: out,
        })
    }
}

/// The value of `--flag VALUE` in `args`, every time it is given.
fn values<'a>(args: &'a [String], flag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    args.windows(2)
        .filter(move |w| w[0] == flag)
        .map(|w| w[1].as_str())
}

impl FakeSnapshot {
    /// Whether it has every tag of the comma list `all`.
    fn has(&self, all: &str) -> bool {
        all.split(',')
            .all(|t| self.tags.iter().any(|have| have == t))
    }

    /// Whether it is of `host` (if given) and has one of the tag lists `filters` (if any).
    fn matches(&self, args: &[String]) -> bool {
        let filters: Vec<&str> = values(args, "--tag").collect();
        values(args, "--host").all(|h| h == self.hostname)
            && (filters.is_empty() || filters.iter().any(|f| self.has(f)))
    }
}

impl GitModel {
    fn run(&mut self, call: &Call) -> Output {
        let ok = |stdout: &str| Output::with(End::Exited(0), stdout, "");
        let fail = |code: i32, stderr: &str| Output::with(End::Exited(code), "", stderr);
        // Options (`-c k=v`) come before the command.
        let mut args = call.args.as_slice();
        while let [opt, _, rest @ ..] = args {
            if opt != "-c" {
                break;
            }
            args = rest;
        }
        let Some((command, args)) = args.split_first() else {
            return fail(1, "usage: git <command>");
        };
        let here = call.cwd.clone().unwrap_or_else(|| PathBuf::from("/"));
        let after_dashes: Vec<&String> = args.iter().skip_while(|a| *a != "--").skip(1).collect();
        match command.as_str() {
            "ls-remote" => match after_dashes.as_slice() {
                [repo, branch] => match self.branches.get(&((*repo).clone(), (*branch).clone())) {
                    Some(commits) => ok(&format!(
                        "{}\trefs/heads/{branch}\n",
                        commits.last().map_or("", String::as_str)
                    )),
                    // `--exit-code`: a branch that is not there is exit 2, silently.
                    None => fail(2, ""),
                },
                _ => fail(129, "usage: git ls-remote"),
            },
            "clone" => {
                let branch = values(args, "--branch")
                    .next()
                    .unwrap_or("main")
                    .to_string();
                let [repo, dest] = after_dashes.as_slice() else {
                    return fail(129, "usage: git clone");
                };
                let key = ((*repo).clone(), branch.clone());
                let Some(tip) = self.branches.get(&key).and_then(|c| c.last()).cloned() else {
                    return fail(
                        128,
                        &format!("fatal: Remote branch {branch} not found in upstream origin"),
                    );
                };
                let dir = here.join(dest);
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    return fail(
                        128,
                        &format!("fatal: could not create {}: {e}", dir.display()),
                    );
                }
                self.clones.insert(dir, (key, tip));
                ok("")
            }
            _ => {
                let Some((key, head)) = self.clones.get_mut(Path::new(&here)) else {
                    return fail(128, "fatal: not a git repository");
                };
                let commits = self.branches.get(key).cloned().unwrap_or_default();
                match (command.as_str(), args) {
                    ("rev-parse", [head_ref]) if head_ref == "HEAD" => ok(&format!("{head}\n")),
                    ("merge-base", [flag, at, head_ref])
                        if flag == "--is-ancestor" && head_ref == "HEAD" =>
                    {
                        let upto = commits.iter().position(|c| c == head);
                        let found = commits.iter().position(|c| c == at);
                        match (found, upto) {
                            (Some(a), Some(h)) if a <= h => ok(""),
                            _ => fail(1, ""),
                        }
                    }
                    ("checkout", rest) => match rest.last() {
                        Some(at) if commits.contains(at) => {
                            *head = at.clone();
                            ok("")
                        }
                        _ => fail(1, "error: pathspec did not match any file(s) known to git"),
                    },
                    _ => fail(1, &format!("unknown command {command:?}")),
                }
            }
        }
    }
}

impl ResticModel {
    fn run(&mut self, call: &Call) -> Output {
        let ok = |stdout: String| Output::with(End::Exited(0), &stdout, "");
        let fail = |stderr: &str| Output::with(End::Exited(1), "", stderr);
        if self.unreachable {
            return fail("Fatal: unable to open config file: Stat: dial tcp 127.0.0.1:9: connect: connection refused\nIs there a repository at the following location?");
        }
        // Options (`-o k=v`, `--cacert f`) come before the command.
        let mut args = call.args.as_slice();
        while let [opt, _, rest @ ..] = args {
            if opt != "-o" && opt != "--cacert" {
                break;
            }
            args = rest;
        }
        let Some((command, args)) = args.split_first() else {
            return fail("no command");
        };
        if command == "init" {
            self.initialized = true;
            return ok("created restic repository\n".into());
        }
        if !self.initialized {
            return fail("Fatal: unable to open config file: Stat: The specified key does not exist.\nIs there a repository at the following location?");
        }
        match command.as_str() {
            "cat" | "unlock" | "check" | "restore" => ok(String::new()),
            "snapshots" => {
                let list: Vec<_> = self
                    .snapshots
                    .iter()
                    .filter(|s| s.matches(args))
                    .map(|s| {
                        json!({"id": s.id, "short_id": &s.id[..8], "time": s.time,
                            "hostname": s.hostname, "paths": s.paths, "tags": s.tags})
                    })
                    .collect();
                ok(json!(list).to_string())
            }
            "backup" => self.backup(call, args),
            "tag" => {
                let add: Vec<String> = values(args, "--add").map(String::from).collect();
                let mut n = 0;
                for s in self.snapshots.iter_mut().filter(|s| s.matches(args)) {
                    for a in &add {
                        if !s.tags.contains(a) {
                            s.tags.push(a.clone());
                        }
                    }
                    n += 1;
                }
                ok(format!("modified tags on {n} snapshots\n"))
            }
            "forget" => {
                self.forget(args);
                ok(String::new())
            }
            "dump" => match self.snapshots.iter().find(|s| Some(&s.id) == args.first()) {
                Some(s) => ok(String::from_utf8_lossy(&s.content).into_owned()),
                None => fail("Fatal: no matching ID found"),
            },
            other => fail(&format!("unknown command {other:?}")),
        }
    }

    fn backup(&mut self, call: &Call, args: &[String]) -> Output {
        self.made += 1;
        let id = format!("{:064x}", self.made);
        let paths = match values(args, "--stdin-filename").next() {
            Some(name) => vec![format!("/{name}")],
            None => args
                .iter()
                .skip_while(|a| *a != "--")
                .skip(1)
                .cloned()
                .collect(),
        };
        self.snapshots.push(FakeSnapshot {
            id: id.clone(),
            time: chrono::DateTime::from_timestamp(1_767_225_600 + self.made as i64, 0)
                .unwrap_or_default()
                .to_rfc3339(),
            hostname: values(args, "--host").next().unwrap_or_default().into(),
            paths,
            tags: values(args, "--tag").map(String::from).collect(),
            content: if args.iter().any(|a| a == "--stdin") {
                call.stdin.clone()
            } else {
                Vec::new()
            },
        });
        let summary = json!({"message_type": "summary", "snapshot_id": id,
            "total_bytes_processed": call.stdin.len(), "data_added": call.stdin.len()});
        Output::with(End::Exited(0), &format!("{summary}\n"), "")
    }

    /// `forget IDS…`, or `forget --tag … [--host …] --keep-last=N`: the rest of a keep policy
    /// keeps everything (the model has no calendar).
    fn forget(&mut self, args: &[String]) {
        let ids: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
        if values(args, "--tag").next().is_none() {
            self.snapshots.retain(|s| !ids.contains(&&s.id));
            return;
        }
        let Some(last) = args
            .iter()
            .find_map(|a| a.strip_prefix("--keep-last=")?.parse::<usize>().ok())
        else {
            return;
        };
        let matching: Vec<String> = self
            .snapshots
            .iter()
            .filter(|s| s.matches(args))
            .map(|s| s.id.clone())
            .collect();
        let gone: Vec<&String> = matching.iter().rev().skip(last).collect();
        self.snapshots.retain(|s| !gone.contains(&&s.id));
    }
}
