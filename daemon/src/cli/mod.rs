//! The `strackt` command line: a thin client of the control socket, plus `check`, `schema` and
//! `daemon` which run locally.
//!
//! `daemon` itself is composed in `daemon::run`; each family of subcommands has its file here.
//!
//! File work: the server's definition is read through `host::definition` (as is a definition
//! the operator names, `--definition FILE`), strackt's state through `host/` (the generation
//! store, `host::private`); other paths the operator names on the command line (`rebuild`'s
//! `--key`, `--credentials`, `--cacert`, `man DIR`) are theirs, handled by path with std::fs
//! and the operator's own rights.

mod backup;
mod check;
mod control;
mod edit;
mod status;
mod updates;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{CommandFactory, Parser, Subcommand};

use crate::api::ControlRequest;
use crate::daemon::{self, HoldChange, Paths};
use crate::ops::Operation;
use crate::state::GenerationRow;

use backup::{backup, BackupCommand};
use check::{check, export};
use control::{data, follow, operation_command, print_operation, request, watch};
use status::status_problems;
use updates::{updates, upgrade};

/// The text of the definition `file` (the server's, or one the operator names), read as
/// [`crate::host::definition::DefinitionFile`] reads the server's.
///
/// # Errors
/// It cannot be read, or is not UTF-8 text ("reading FILE: …").
fn read_definition(file: &std::path::Path) -> anyhow::Result<String> {
    crate::host::definition::DefinitionFile::new(file)
        .read_text()
        .with_context(|| format!("reading {}", file.display()))
}

/// How many generations `strackt generations` lists without `--all`: the ones a rollback
/// usually reaches, while a long-lived server's hundreds of records stay one flag away.
const GENERATIONS_SHOWN: usize = 20;

/// strackt keeps this server defined: one definition, generations, rollback.
#[derive(Debug, Parser)]
#[command(name = "strackt", version)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (what strackt.service starts).
    Daemon,
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (strackt(8), strackt-COMMAND(8)) into DIR (for packaging).
    #[command(hide = true)]
    Man {
        /// Where the pages go.
        dir: PathBuf,
    },
    /// Keep other servers' backups: restic's REST protocol over TLS, append-only, from the
    /// definition's `receiver:` section (what strackt-receiver.service starts).
    Receiver {
        /// As root (the unit's ExecStartPre=+ and ExecReload=+): copy the secrets, TLS files and
        /// team key the receiver needs where its own user can read them, then exit.
        #[arg(long)]
        stage: bool,
    },
    /// Validate a definition; every problem at once as FILE:LINE:COL: path: message.
    /// Packages are also looked up in this host's apt sources unless --offline.
    Check {
        /// The definition (default: /etc/strackt/server.yaml).
        file: Option<PathBuf>,
        /// Only the definition itself: no look-ups on this host.
        #[arg(long)]
        offline: bool,
    },
    /// Show what the next pass would change (exit 0: nothing, 2: changes, 1: error).
    ///
    /// Unified diffs of the files and units that differ from the running generation, the
    /// packages (exact versions), users, groups, firewall and settings, then the steps. With
    /// --definition FILE, what applying FILE would change; nothing is saved.
    Plan {
        /// Plan this definition file instead of the saved one; nothing is saved or applied
        /// (for scripts and reviews).
        #[arg(long, value_name = "FILE")]
        definition: Option<PathBuf>,
    },
    /// Edit the definition safely, like visudo: check, show the plan, ask, save, apply.
    ///
    /// Opens a private copy of the definition in $VISUAL or $EDITOR (else `editor`, else
    /// `vi`) and checks it like `strackt check`. A refused edit is shown as FILE:LINE:COL:
    /// field: message and can be edited again (e) or dropped (x); the file is untouched until
    /// saved. A valid one shows the plan with unified diffs of files and units and asks before
    /// it is saved (y: save, e: edit again, anything else: quit). The save keeps the file's
    /// mode and owner, is refused if the file changed meanwhile, and is followed by the pass
    /// like `strackt apply` (exit 0: live on the new generation, or nothing changed; 1: not
    /// saved, or saved but rolled back). Without a terminal on standard input, --yes is needed.
    Edit {
        /// Save a valid edit without asking (needed when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Show what differs between two generations (default: the previous and the current).
    ///
    /// Unified diffs of files, units and the firewall ruleset; packages with their exact
    /// versions, users, groups, kernel parameters and the daemon's settings; apps, backups and
    /// the receiver when their sections changed. A generation whose directory was pruned is
    /// compared from its record.
    Diff {
        /// The old generation (default: the one active before the current).
        from: Option<u64>,
        /// The new generation (default: the current).
        to: Option<u64>,
    },
    /// Run a pass now and wait (exit 0: on the new or unchanged generation).
    Apply {
        /// For risky changes on a remote server: switch back automatically unless
        /// `strackt confirm` arrives within this long (e.g. 2m).
        #[arg(long, value_name = "DURATION")]
        confirm_within: Option<String>,
    },
    /// Keep the generation an `apply --confirm-within` switched to.
    Confirm,
    /// Refresh apt's package lists and show, for every package the definition pins, the
    /// pinned version and the newest candidate, security ones marked (exit 0: nothing pending,
    /// 2: updates pending, 1: error).
    Updates,
    /// Upgrade pinned packages: strackt rewrites their version strings in the definition
    /// (nothing else in the file changes) and applies it like `apply` (exit 0: on the new
    /// generation; non-zero with the reason when it rolled back, the file then put back).
    Upgrade {
        /// Only versions from a security suite (`…-security`).
        #[arg(long)]
        security: bool,
        /// Only these packages (default: every pinned package with an update).
        #[arg(value_name = "PKG")]
        packages: Vec<String>,
    },
    /// List the newest generations (every record is kept: `--all` lists them all).
    Generations {
        /// List every generation ever built, not only the newest.
        #[arg(long)]
        all: bool,
    },
    /// Switch to an earlier generation (default: the previous); one whose directory was pruned
    /// is rebuilt from its record first.
    Rollback {
        /// Generation id.
        id: Option<u64>,
    },
    /// The operations log.
    History {
        /// Show one operation.
        #[arg(long)]
        operation: Option<i64>,
        /// Follow the operation until it ends, printing each step and what it prints as it
        /// prints it.
        #[arg(long, requires = "operation")]
        follow: bool,
    },
    /// Current generation, last and next pass, health, drift.
    Status {
        /// For monitoring: exit 1, naming each problem, when the last verification failed, the
        /// definition on disk is not applied, security updates are pending, the update check
        /// failed, or a backup's last run failed or is overdue.
        #[arg(long)]
        check: bool,
    },
    /// Experiment mode: pause drift repair for a while (definition changes still apply).
    Hold {
        /// How long, e.g. 30m, 2h.
        #[arg(
            long = "for",
            value_name = "DURATION",
            required_unless_present = "release"
        )]
        duration: Option<String>,
        /// Why (shown in status).
        #[arg(long, conflicts_with = "release")]
        reason: Option<String>,
        /// End the hold now and put everything back.
        #[arg(long, conflicts_with = "duration")]
        release: bool,
    },
    /// Print the definition of the current generation: given to a fresh server, it rebuilds
    /// the same managed state (compare `strackt status --json` digests).
    Export {
        /// Write it here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Deploy an app: preflight, build a release beside the live one, validate, migrate, and
    /// switch only when every step passed. Shows each step live (exit 0: live on the new release).
    Deploy {
        /// The app (a key of `apps:`).
        app: String,
        /// Branch to deploy (default: the app's `branch`).
        #[arg(long)]
        branch: Option<String>,
    },
    /// An app's releases: id, commit, created, state, which is live.
    Releases {
        /// The app.
        app: String,
    },
    /// Switch an app back to an earlier release (default: the one live before).
    RollbackRelease {
        /// The app.
        app: String,
        /// Release id.
        id: Option<u64>,
        /// Also restore the database as it was before the later release's migration.
        #[arg(long)]
        with_database: bool,
    },
    /// Backups: the team key, runs, listing, verification, schedules.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Restore a backup run onto this server: stop the app, put its database and files back,
    /// redeploy the commit that was live when the run was taken (works on another server of
    /// the team with the key and the destination).
    Restore {
        /// The app.
        app: String,
        /// The run, as `strackt backup list APP` shows it.
        run: String,
        /// Redeploy the branch's tip instead of the commit recorded with the run.
        #[arg(long)]
        latest: bool,
    },
    /// Build a lost server again on this fresh one from its backups: the definition, its lock
    /// and secrets, the generation, each app at its commit with its data; one operation,
    /// followed live. Nothing changes when the key, the server, the run or the destination is
    /// wrong. Start strackt first (`systemctl start strackt`; it waits for a definition).
    Rebuild {
        /// The lost server's name (`strackt backup list APP` shows it).
        #[arg(long)]
        server: String,
        /// The backup run (default: the newest).
        #[arg(long)]
        run: Option<String>,
        /// The repository: s3:https://ENDPOINT/BUCKET/PREFIX, or rest:https://HOST:PORT/NAME/
        /// for a receiver.
        #[arg(long)]
        repository: String,
        /// A file (root-only) with the team key.
        #[arg(long)]
        key: PathBuf,
        /// A file with the destination's credentials: AWS_ACCESS_KEY_ID=… and
        /// AWS_SECRET_ACCESS_KEY=… lines, or USER:PASSWORD for a receiver.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// The S3 server is addressed by path (path_style: true in the definition).
        #[arg(long)]
        path_style: bool,
        /// The CA certificate of a receiver not signed by a public CA.
        #[arg(long)]
        cacert: Option<PathBuf>,
        /// Replace the definition (and secrets, apps' data) this server already has.
        #[arg(long)]
        force: bool,
    },
    /// Print the JSON Schema of the definition format.
    Schema,
}

/// Run the command line; returns the process exit code.
///
/// One arm per subcommand, so the whole command table reads in one place; that is why this
/// function is long. An arm that grows past a few lines moves
/// into the subcommand's own module (`backup.rs`, `check.rs`, `edit.rs`, `updates.rs`, …).
///
/// # Errors
/// Failures the user should see (printed by `main` with their context chain).
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let paths = Paths::from_env();
    match cli.command {
        Command::Daemon => daemon::run(paths),
        Command::Completions { shell } => {
            crate::docs::completions(shell, Cli::command());
            Ok(0)
        }
        Command::Man { dir } => {
            for page in crate::docs::man_pages(&dir, Cli::command())? {
                println!("{}", dir.join(format!("{page}.8")).display());
            }
            Ok(0)
        }
        Command::Receiver { stage: false } => crate::receiver::run(&paths),
        Command::Receiver { stage: true } => crate::receiver::stage(&paths),
        Command::Check { file, offline } => {
            check(file.unwrap_or(paths.definition), offline, cli.json)
        }
        Command::Export { output } => {
            let text = export(&paths)?;
            match output {
                Some(out) => crate::host::files::atomic_write(&out, text.as_bytes(), 0o600, 0, 0)
                    .with_context(|| format!("writing {}", out.display()))?,
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
            Ok(0)
        }
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&schemars::schema_for!(
                    crate::definition::Definition
                ))?
            );
            Ok(0)
        }
        Command::Plan { definition } => edit::plan(&paths, definition.as_deref(), cli.json),
        Command::Edit { yes } => edit::edit(&paths, yes, cli.json),
        Command::Diff { from, to } => edit::diff(&paths, from, to, cli.json),
        Command::Apply { confirm_within } => {
            let confirm_within = match confirm_within
                .as_deref()
                .map(|t| bounded_secs(t, daemon::MAX_CONFIRM_SECS, "--confirm-within"))
                .transpose()
            {
                Ok(secs) => secs,
                Err(e) => {
                    bail!("{e}");
                }
            };
            operation_command(&paths, &ControlRequest::Apply { confirm_within }, cli.json)
        }
        Command::Updates => updates(&paths, cli.json),
        Command::Upgrade { security, packages } => upgrade(&paths, security, packages, cli.json),
        Command::Confirm => {
            let v: serde_json::Value = data(request(&paths, &ControlRequest::Confirm)?)?;
            if cli.json {
                println!("{v}");
            } else {
                println!("generation {} confirmed", v["confirmed"]);
            }
            Ok(0)
        }
        Command::Hold {
            duration,
            reason,
            release,
        } => {
            if release {
                return operation_command(
                    &paths,
                    &ControlRequest::Hold {
                        change: HoldChange::Release,
                    },
                    cli.json,
                );
            }
            let text = duration.unwrap_or_default();
            let seconds = match bounded_secs(&text, daemon::MAX_HOLD_SECS, "--for") {
                Ok(secs) => secs,
                Err(e) => {
                    bail!("{e}");
                }
            };
            let hold: daemon::Hold = data(request(
                &paths,
                &ControlRequest::Hold {
                    change: HoldChange::For { seconds, reason },
                },
            )?)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&hold)?);
            } else {
                println!("drift repair paused until {}; definition changes still apply. `strackt hold --release` ends it early.", hold.until);
            }
            Ok(0)
        }
        Command::Deploy { app, branch } => {
            follow(&paths, &ControlRequest::Deploy { app, branch }, cli.json)
        }
        Command::Restore { app, run, latest } => follow(
            &paths,
            &ControlRequest::Restore { app, run, latest },
            cli.json,
        ),
        Command::Rebuild {
            server,
            run,
            repository,
            key,
            credentials,
            path_style,
            cacert,
            force,
        } => {
            // The daemon runs in `/`: it is given absolute paths, checked here first.
            let absolute = |p: PathBuf, what: &str| {
                std::fs::canonicalize(&p).with_context(|| format!("{what} {}", p.display()))
            };
            let req = crate::rebuild::RebuildRequest {
                server,
                run,
                repository,
                key_file: absolute(key, "--key")?,
                credentials: credentials
                    .map(|c| absolute(c, "--credentials"))
                    .transpose()?,
                path_style,
                cacert: cacert.map(|c| absolute(c, "--cacert")).transpose()?,
                force,
            };
            follow(&paths, &ControlRequest::Rebuild(req), cli.json)
        }
        Command::Backup { command } => backup(&paths, command, cli.json),
        Command::Releases { app } => {
            let view: crate::deploy::ReleasesView =
                data(request(&paths, &ControlRequest::Releases { app })?)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!(
                    "{:>4}  {:<12}  {:<24}  {:<9}  {:<4}  branch",
                    "id", "commit", "created", "state", "live"
                );
                for r in &view.releases {
                    let commit: String = r
                        .commit
                        .as_deref()
                        .unwrap_or("-")
                        .chars()
                        .take(12)
                        .collect();
                    let live = if view.live == Some(r.id) { "*" } else { "" };
                    let why = r
                        .reason
                        .as_deref()
                        .map(|w| format!(" — {}", w.lines().next().unwrap_or("")))
                        .unwrap_or_default();
                    println!(
                        "{:>4}  {commit:<12}  {:<24}  {:<9}  {live:<4}  {}{why}",
                        r.id, r.created, r.state, r.branch
                    );
                }
            }
            Ok(0)
        }
        Command::RollbackRelease {
            app,
            id,
            with_database,
        } => operation_command(
            &paths,
            &ControlRequest::RollbackRelease {
                app,
                id,
                with_database,
            },
            cli.json,
        ),
        Command::Rollback { id } => {
            operation_command(&paths, &ControlRequest::Rollback { id }, cli.json)
        }
        Command::Generations { all } => {
            let mut rows: Vec<GenerationRow> =
                data(request(&paths, &ControlRequest::Generations)?)?;
            let older = rows.len().saturating_sub(GENERATIONS_SHOWN);
            if !all && older > 0 {
                rows.truncate(GENERATIONS_SHOWN);
                // On stderr: stdout keeps the table (or JSON) a script reads.
                eprintln!(
                    "{older} older generations not shown; `strackt generations --all` lists them"
                );
            }
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:>4}  {:<24}  {:<11}  {:<11}  summary",
                    "id", "created", "state", "trigger"
                );
                for g in rows {
                    let mut extra = g.reason.map(|r| format!(" — {r}")).unwrap_or_default();
                    if g.pruned {
                        extra.push_str(" (directory pruned)");
                    }
                    println!(
                        "{:>4}  {:<24}  {:<11}  {:<11}  {}{extra}",
                        g.id, g.created, g.state, g.trigger, g.summary
                    );
                }
            }
            Ok(0)
        }
        Command::History {
            operation: Some(id),
            follow: true,
        } => watch(&paths, id, "operation", cli.json),
        Command::History { operation, .. } => {
            let ops: Vec<Operation> =
                data(request(&paths, &ControlRequest::History { operation })?)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&ops)?);
            } else {
                for op in &ops {
                    print_operation(op, operation.is_some());
                }
            }
            Ok(0)
        }
        Command::Status { check } => {
            let mut status: serde_json::Value = data(request(&paths, &ControlRequest::Status)?)?;
            let problems = status_problems(&status, chrono::Utc::now());
            if check {
                status["problems"] = serde_json::json!(problems);
            }
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                let s = |k: &str| {
                    status
                        .get(k)
                        .map(|v| v.to_string().trim_matches('"').to_string())
                        .unwrap_or_default()
                };
                println!("current generation: {}", s("current_generation"));
                if let Some(last) = status.get("last_pass").filter(|v| !v.is_null()) {
                    let f = |k: &str| {
                        last.get(k)
                            .map(|v| v.to_string().trim_matches('"').to_string())
                            .unwrap_or_default()
                    };
                    println!(
                        "last pass:          {} {} ({}, {} ms): {}",
                        f("kind"),
                        f("outcome"),
                        f("trigger"),
                        f("duration_ms"),
                        f("summary")
                    );
                }
                println!("next pass:          {}", s("next_pass"));
                println!("health:             {}", s("health"));
                println!(
                    "drift:              {}",
                    status
                        .get("drift")
                        .map(|d| d.to_string())
                        .unwrap_or_default()
                );
                if let Some(h) = status.get("hold").filter(|v| !v.is_null()) {
                    let reason = h
                        .get("reason")
                        .and_then(|r| r.as_str())
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    println!(
                        "hold:               drift repair paused until {}{reason}",
                        h.get("until").and_then(|u| u.as_str()).unwrap_or("?")
                    );
                }
                if let Some(p) = status.get("pending_confirm").filter(|v| !v.is_null()) {
                    println!("confirm:            generation {} reverts to {} at {} unless `strackt confirm`", p["generation"], p["previous"], p["deadline"].as_str().unwrap_or("?"));
                }
                if let Some(u) = status.get("updates").filter(|v| !v.is_null()) {
                    let line = match u.get("error").and_then(|e| e.as_str()) {
                        Some(e) => format!("check failed: {e}"),
                        None => format!("{} pending ({} security)", u["pending"], u["security"]),
                    };
                    println!(
                        "updates:            {line}, checked {} (`strackt updates`)",
                        u["checked"].as_str().unwrap_or("?")
                    );
                }
                if let Some(p) = status.get("definition_problem").and_then(|v| v.as_str()) {
                    println!("definition:         NOT APPLIED: {p}");
                }
                if let Some(p) = status.get("record_problem").and_then(|v| v.as_str()) {
                    println!("state database:     {p}");
                }
                println!("digest:             {}", s("digest"));
                if check {
                    for p in &problems {
                        println!("PROBLEM:            {p}");
                    }
                }
            }
            Ok(if check && !problems.is_empty() { 1 } else { 0 })
        }
    }
}

/// A duration flag in whole seconds, between 1s and `max` (the daemon checks the same bound).
fn bounded_secs(text: &str, max: u64, flag: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(text)
        .map_err(|_| format!("{flag} {text:?} is not a duration; write e.g. 90s, 30m or 2h"))?;
    daemon::deadline_in(d.as_secs(), max, flag)
        .map(|_| d.as_secs())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
