//! The `strackt` command line: a thin client of the control socket, plus `check`, `schema` and
//! `daemon` which run locally.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::api::{ControlRequest, ControlResponse};
use crate::daemon::{self, Daemon, HoldChange, Paths, Status, Trigger, Wake};
use crate::generation::Store;
use crate::host::systemd::DbusSystemd;
use crate::metrics::Metrics;
use crate::ops::Operation;
use crate::state::{GenerationRow, State, StateHandle};

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

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// The team's backup key.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Take a backup now, following it live.
    Run {
        /// The app.
        app: String,
    },
    /// The backup runs of an app at its destination.
    List {
        /// The app.
        app: String,
        /// Only runs taken on this server (default: every server).
        #[arg(long)]
        server: Option<String>,
    },
    /// Check the repository and read back a sample of the data.
    Verify {
        /// The app.
        app: String,
    },
    /// When the app's backups run next, in its timezone and in UTC.
    Schedule {
        /// The app.
        app: String,
        /// How many runs to show.
        #[arg(long, default_value_t = 5)]
        next: usize,
        /// Start from this time instead of now (RFC 3339, e.g. 2026-03-28T12:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// The definition (default: /etc/strackt/server.yaml).
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate the team's key (first server of the team); printed once.
    Init,
    /// Put the team's key on this server, read from standard input.
    Import,
}

/// Run the command line; returns the process exit code.
///
/// # Errors
/// Failures the user should see (printed by `main` with their context chain).
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let paths = Paths::from_env();
    match cli.command {
        Command::Daemon => run_daemon(paths),
        Command::Completions { shell } => {
            crate::docs::completions(shell);
            Ok(0)
        }
        Command::Man { dir } => {
            for page in crate::docs::man_pages(&dir)? {
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
        Command::Plan { definition } => crate::edit::plan(&paths, definition.as_deref(), cli.json),
        Command::Edit { yes } => crate::edit::edit(&paths, yes, cli.json),
        Command::Diff { from, to } => crate::edit::diff(&paths, from, to, cli.json),
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

/// What `strackt status --check` reports as a problem, from the daemon's status: anything a
/// monitoring script should page someone for.
fn status_problems(status: &serde_json::Value, now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let mut problems = vec![];
    if status["health"] == "failed" {
        problems.push("health: the last verification failed".to_string());
    }
    if let Some(p) = status["definition_problem"].as_str() {
        problems.push(format!("definition not applied: {p}"));
    }
    let updates = &status["updates"];
    if let Some(e) = updates["error"].as_str() {
        problems.push(format!("the last update check failed: {e}"));
    }
    if updates["security"].as_u64().is_some_and(|n| n > 0) {
        problems.push(format!(
            "{} security update(s) pending (`strackt updates`)",
            updates["security"]
        ));
    }
    // A run more than an hour behind its schedule: the daemon was down, or runs hang.
    let overdue = |next: &str| {
        chrono::DateTime::parse_from_rfc3339(next)
            .is_ok_and(|t| now - t.with_timezone(&chrono::Utc) > chrono::Duration::hours(1))
    };
    if let Some(backups) = status["backups"].as_object() {
        for (app, b) in backups {
            if b["last_outcome"] == "failed" {
                let why = b["last_error"].as_str().unwrap_or("no reason recorded");
                problems.push(format!("backup {app}: the last run failed: {why}"));
            }
            if b["next_run"].as_str().is_some_and(overdue) {
                problems.push(format!(
                    "backup {app}: overdue since {}",
                    b["next_run"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    problems
}

/// `strackt updates`: exit 0 nothing pending, 2 pending, 1 error.
fn updates(paths: &Paths, json: bool) -> anyhow::Result<i32> {
    let report: daemon::UpdatesReport = match request(paths, &ControlRequest::Updates)? {
        Ok(v) => serde_json::from_value(v)?,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    if let Some(p) = &report.refresh_problem {
        eprintln!(
            "warning: apt's package lists could not be refreshed; showing them as they were: {p}"
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", updates_table(&report));
    }
    Ok(if report.pending > 0 { 2 } else { 0 })
}

/// The report as a table, one row per pinned package, and a closing line.
fn updates_table(report: &daemon::UpdatesReport) -> String {
    let shown = |c: &Option<daemon::Candidate>| match c {
        None => "-".to_string(),
        Some(c) if c.suites.is_empty() => c.version.clone(),
        Some(c) => format!("{} ({})", c.version, c.suites.join(", ")),
    };
    let mut rows = vec![[
        "PACKAGE".to_string(),
        "PINNED".into(),
        "NEWEST".into(),
        "SECURITY UPDATE".into(),
    ]];
    for p in &report.packages {
        let pinned = match (&p.version, p.pinned.as_str()) {
            (Some(v), "latest") => format!("latest ({v})"),
            _ => p.pinned.clone(),
        };
        let mut newest = shown(&p.newest);
        if p.newest.as_ref().is_some_and(|c| c.security) {
            newest.push_str(" [security]");
        }
        rows.push([p.name.clone(), pinned, newest, shown(&p.security)]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    let mut out = String::new();
    for r in &rows {
        out += &format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    out += &match (report.pending, report.security) {
        (0, _) => format!(
            "no updates pending for the {} pinned packages (checked {})\n",
            report.packages.len(),
            report.checked
        ),
        (n, 0) => format!("{n} pending, none from a security suite: `strackt upgrade` applies them\n"),
        (n, s) => format!("{n} pending, {s} from a security suite: `strackt upgrade --security` applies those, `strackt upgrade` all\n"),
    };
    out
}

/// `strackt upgrade`: follows the pass like `apply`.
fn upgrade(
    paths: &Paths,
    security: bool,
    packages: Vec<String>,
    json: bool,
) -> anyhow::Result<i32> {
    let outcome: daemon::UpgradeOutcome =
        match request(paths, &ControlRequest::Upgrade { security, packages })? {
            Ok(v) => serde_json::from_value(v)?,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(1);
            }
        };
    let ok = outcome
        .operation
        .as_ref()
        .is_none_or(|op| op.outcome == "success");
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!("{}", outcome.message);
        if let Some(op) = &outcome.operation {
            print_operation(op, true);
        }
    }
    Ok(if ok { 0 } else { 1 })
}

fn check(file: PathBuf, offline: bool, json: bool) -> anyhow::Result<i32> {
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let (problems, warnings) = match crate::definition::parse(&text, &file) {
        Ok(def) if offline => (Vec::new(), def.warnings().to_vec()),
        Ok(def) => (host_problems(&def, &text), def.warnings().to_vec()),
        Err(e) => (e.problems, Vec::new()),
    };
    if problems.is_empty() {
        if json {
            println!(
                "{}",
                serde_json::json!({ "valid": true, "problems": [], "warnings": warnings })
            );
        } else {
            for w in &warnings {
                let path = if w.path.is_empty() {
                    "(document)"
                } else {
                    &w.path
                };
                eprintln!(
                    "{}:{}:{}: {}: warning: {}",
                    file.display(),
                    w.line,
                    w.column,
                    path,
                    w.message
                );
            }
            println!("{}: ok", file.display());
        }
        return Ok(0);
    }
    let mut problems = problems;
    problems.sort_by_key(|p| (p.line, p.column));
    let err = crate::definition::DefinitionError { file, problems };
    if json {
        println!(
            "{}",
            serde_json::json!({ "valid": false, "problems": err.problems })
        );
    } else {
        eprintln!("{err}");
    }
    Ok(1)
}

/// What only this host can tell: packages (and versions) its apt sources do not have.
fn host_problems(
    def: &crate::definition::ValidatedDefinition,
    text: &str,
) -> Vec<crate::definition::Problem> {
    use crate::host::packages::{Apt, Packages};
    let apt = Apt::new(Path::new("/var/cache/strackt/debs"));
    let resolved = match apt.resolve(&def.definition().packages) {
        Ok(resolved) => resolved,
        Err(e) => {
            return vec![crate::definition::problem_at(
                text,
                &["packages"],
                format!("apt cannot be asked: {e}"),
            )]
        }
    };
    resolved
        .into_iter()
        .filter_map(|(name, version)| {
            let message = match version.err()? {
                crate::host::HostError::Command { message, .. } => message,
                other => other.to_string(),
            };
            Some(crate::definition::problem_at(
                text,
                &["packages", &name],
                message,
            ))
        })
        .collect()
}

/// The current generation's definition with its lock folded in: every `latest` package becomes
/// the exact version the generation installed, so a fresh server given it gets the same
/// versions. Without `latest` packages the text is returned unchanged, comments and all.
fn export(paths: &Paths) -> anyhow::Result<String> {
    let current = paths.root.join("current");
    let path = current.join("definition.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (has strackt applied a generation yet?)",
            path.display()
        )
    })?;
    let manifest: crate::generation::Manifest = serde_json::from_slice(
        &std::fs::read(current.join("manifest.json")).context("reading the current manifest")?,
    )?;
    crate::backup::server::pinned(&text, &path, &manifest.packages, manifest.id)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn operation_command(paths: &Paths, req: &ControlRequest, json: bool) -> anyhow::Result<i32> {
    let op: Operation = match request(paths, req)? {
        Ok(v) => serde_json::from_value(v)?,
        Err(e) => {
            bail!("{e}");
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&op)?);
    } else {
        print_operation(&op, true);
    }
    Ok(if op.outcome == "success" { 0 } else { 1 })
}

/// Start an operation (deploy, backup, verify, restore) and follow it (see [`watch`]).
fn follow(paths: &Paths, start: &ControlRequest, json: bool) -> anyhow::Result<i32> {
    let started: serde_json::Value = match request(paths, start)? {
        Ok(v) => v,
        Err(e) => {
            bail!("{e}");
        }
    };
    let id = started["operation"]
        .as_i64()
        .context("the daemon's answer has no operation id")?;
    let kind = match start {
        ControlRequest::Deploy { .. } => "deploy",
        ControlRequest::Restore { .. } => "restore",
        ControlRequest::Rebuild(_) => "rebuild",
        ControlRequest::BackupVerify { .. } => "verify",
        _ => "backup",
    };
    if !json {
        println!("{kind} #{id} started (also at /operations/{id})");
    }
    watch(paths, id, kind, json)
}

/// Follow operation `id` until it ends: each step is printed when it starts and when it ends,
/// with its duration, and between the two each line its commands print, as they print it
/// (masked like the stored output); a failed step that printed nothing live shows the end of
/// its stored output. Exit 0 when it succeeded.
fn watch(paths: &Paths, id: i64, kind: &str, json: bool) -> anyhow::Result<i32> {
    let mut shown: Vec<(String, String)> = Vec::new();
    // The last output line printed, and the steps that printed live.
    let mut after = 0u64;
    let mut printed: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
    loop {
        let ops: Vec<Operation> = data(request(
            paths,
            &ControlRequest::History {
                operation: Some(id),
            },
        )?)?;
        let op = ops
            .into_iter()
            .next()
            .with_context(|| format!("no operation {id} in the operations log"))?;
        if !json {
            // Asked after the steps: every line of a step recorded as ended is in it.
            let out: crate::ops::live::OutputView = data(request(
                paths,
                &ControlRequest::Output {
                    operation: id,
                    after,
                },
            )?)?;
            if out.skipped > 0 {
                println!(
                    "      | … {} lines not shown (printed too fast)",
                    out.skipped
                );
            }
            let mut lines = out.lines.into_iter().peekable();
            for (i, s) in op.steps.iter().enumerate() {
                let key = (s.action.clone(), s.outcome.clone());
                let seen = shown.get(i);
                let prints = lines.peek().is_some_and(|l| l.step == i);
                if seen.is_none() && (s.outcome == "running" || prints) {
                    println!("  …  {:<14} {}", s.action, s.target);
                }
                while let Some(line) = lines.next_if(|l| l.step == i) {
                    println!("      | {}", line.text);
                    printed.insert(i);
                    after = line.n;
                }
                if s.outcome != "running" && seen != Some(&key) {
                    let secs = s.duration_ms.unwrap_or(0) as f64 / 1000.0;
                    let mark = if s.outcome == "ok" { "ok" } else { "FAILED" };
                    println!("  {mark:<6} {:<14} {secs:.1}s  {}", s.action, s.detail);
                    if s.outcome == "failed" && !printed.contains(&i) {
                        let text = s.output.as_deref().unwrap_or("");
                        let tail: Vec<&str> = text.lines().rev().take(20).collect();
                        for line in tail.into_iter().rev() {
                            println!("      | {line}");
                        }
                    }
                }
                if i < shown.len() {
                    shown[i] = key;
                } else {
                    shown.push(key);
                }
            }
            // Lines of a step not in the record read above wait for the next round.
        }
        if op.outcome != "running" {
            if json {
                println!("{}", serde_json::to_string_pretty(&op)?);
            } else if op.outcome == "success" {
                println!(
                    "{} in {:.1}s",
                    op.summary,
                    op.duration_ms.unwrap_or(0) as f64 / 1000.0
                );
            } else {
                println!(
                    "{kind} #{id} failed: {}",
                    op.reason.as_deref().unwrap_or("?")
                );
                if kind == "deploy" {
                    println!("the live release was not changed");
                }
            }
            return Ok(if op.outcome == "success" { 0 } else { 1 });
        }
        // Two local requests on the control socket: cheap, and the user sees a line or the
        // end at most 50 ms after the daemon has it.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn backup(paths: &Paths, command: BackupCommand, json: bool) -> anyhow::Result<i32> {
    let vault = crate::backup::vault::Vault::new(&paths.root);
    match command {
        BackupCommand::Key {
            command: KeyCommand::Init,
        } => match vault.init() {
            Ok(key) => {
                println!("The team's backup key — shown this once:\n\n    {key}\n");
                println!("Keep it where your team keeps secrets (a password manager). strackt stores it only in");
                println!(
                    "{} (root-only); it is in no generation, log or snapshot.",
                    vault.key_path().display()
                );
                println!("With it and your storage credentials, `restic` alone restores every snapshot (README:");
                println!("\"Restoring without strackt\"). Other servers of the team: `strackt backup key import`.");
                Ok(0)
            }
            Err(e) => Err(anyhow::anyhow!("{e}")),
        },
        BackupCommand::Key {
            command: KeyCommand::Import,
        } => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading the key from standard input")?;
            match vault.import(&text) {
                Ok(()) => {
                    println!("backup key stored in {}", vault.key_path().display());
                    Ok(0)
                }
                Err(e) => Err(anyhow::anyhow!("{e}")),
            }
        }
        BackupCommand::Run { app } => follow(paths, &ControlRequest::BackupRun { app }, json),
        BackupCommand::Verify { app } => follow(paths, &ControlRequest::BackupVerify { app }, json),
        BackupCommand::List { app, server } => {
            let runs: Vec<crate::backup::RunView> =
                match request(paths, &ControlRequest::BackupList { app, server })? {
                    Ok(v) => serde_json::from_value(v)?,
                    Err(e) => {
                        bail!("{e}");
                    }
                };
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                println!(
                    "{:<32}  {:<30}  {:<16}  {:<9}  {:<12}  snapshots",
                    "run", "time", "server", "trigger", "commit"
                );
                for r in &runs {
                    let snaps: Vec<String> = r
                        .snapshots
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect();
                    let commit = r
                        .commit
                        .as_deref()
                        .map_or("-", |c| c.get(..12).unwrap_or(c));
                    println!(
                        "{:<32}  {:<30}  {:<16}  {:<9}  {commit:<12}  {}",
                        r.run,
                        r.time,
                        r.server,
                        r.trigger,
                        snaps.join(", ")
                    );
                }
            }
            Ok(0)
        }
        BackupCommand::Schedule {
            app,
            next,
            from,
            file,
        } => {
            let file = file.unwrap_or_else(|| paths.definition.clone());
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let def = crate::definition::parse(&text, &file)?;
            let Some(spec) = def.definition().backups.get(&app) else {
                bail!("no `backups:` entry for app `{app}` in {}", file.display());
            };
            let schedule =
                crate::definition::schedule::Schedule::parse(&spec.schedule, &spec.timezone)
                    .map_err(|e| anyhow::anyhow!("backups.{app}.schedule: {e}"))?;
            let start = match from {
                Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
                    .with_context(|| format!("--from {t:?} is not an RFC 3339 time"))?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            let runs: Vec<chrono::DateTime<chrono::Utc>> =
                schedule.upcoming(start).take(next).collect();
            if json {
                let list: Vec<serde_json::Value> = runs
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "local": t.with_timezone(&schedule.tz()).to_rfc3339(),
                            "utc": t.to_rfc3339(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("backups of {app}: {:?} in {}", spec.schedule, spec.timezone);
                for t in &runs {
                    println!(
                        "  {}   {}",
                        t.with_timezone(&schedule.tz())
                            .format("%a %Y-%m-%d %H:%M %Z"),
                        t.format("%Y-%m-%d %H:%M UTC")
                    );
                }
            }
            Ok(0)
        }
    }
}

pub(crate) fn print_operation(op: &Operation, steps: bool) {
    let gen = op
        .generation
        .map(|g| format!(" generation {g}"))
        .unwrap_or_default();
    println!(
        "#{} {} ({}){gen}: {} in {} ms — {}",
        op.id,
        op.kind,
        op.trigger,
        op.outcome,
        op.duration_ms.unwrap_or(0),
        op.summary
    );
    if let Some(r) = &op.reason {
        println!("    reason: {r}");
    }
    if steps {
        for s in &op.steps {
            let drift = if s.drift { " [drift]" } else { "" };
            println!(
                "    {:<8} {:<14} {}{drift}  {}",
                s.outcome, s.action, s.target, s.detail
            );
            // Step output (redacted when stored) is shown here, to root only: HTTP omits it.
            for line in s.output.as_deref().unwrap_or("").lines() {
                println!("      | {line}");
            }
        }
    }
}

pub(crate) fn data<T: serde::de::DeserializeOwned>(
    r: Result<serde_json::Value, String>,
) -> anyhow::Result<T> {
    match r {
        Ok(v) => Ok(serde_json::from_value(v)?),
        Err(e) => bail!("{e}"),
    }
}

/// Send one request to the daemon; `Ok(Err(..))` is the daemon's refusal.
pub(crate) fn request(
    paths: &Paths,
    req: &ControlRequest,
) -> anyhow::Result<Result<serde_json::Value, String>> {
    let mut stream = UnixStream::connect(&paths.socket).with_context(|| {
        format!(
            "connecting to the strackt daemon at {} (is strackt.service running? are you root?)",
            paths.socket.display()
        )
    })?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line).context("sending the request")?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("reading the daemon's answer")?;
    if answer.trim().is_empty() {
        bail!("the strackt daemon closed the connection without answering (it stopped or crashed mid-request); see `journalctl -u strackt` and `strackt history`");
    }
    let resp: ControlResponse =
        serde_json::from_str(&answer).context("the daemon's answer is not valid JSON")?;
    Ok(if resp.ok {
        Ok(resp.data)
    } else {
        Err(resp.error.unwrap_or_else(|| "unknown error".into()))
    })
}

fn run_daemon(paths: Paths) -> anyhow::Result<i32> {
    // The reconcile loop runs on this thread (`block_on`) and may block in host calls (apt,
    // dpkg, shadow tools, nft) for minutes; everything spawned — the watchdog ping, the control
    // socket, signals, D-Bus — runs on one worker thread beside it, so a 45 s dpkg hook neither
    // gets strackt killed by its own watchdog nor freezes `strackt status`.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let store = Store::open(&paths.root).context("opening the state directory")?;
        let db = paths.root.join("state.db");
        let mut writer = State::open(&db).context("opening the state database")?;
        // Nothing a step printed keeps a secret in the operations log.
        writer.set_redactor(crate::state::Redactor::from_sources(
            std::path::Path::new(crate::definition::SECRETS_DIR),
            &[crate::backup::vault::Vault::new(&paths.root).key_path()],
        ));
        let state = StateHandle::new(writer);
        // The HTTP endpoint reads through a connection of its own (see api::http).
        let reader = StateHandle::new(
            State::open_reader(&db).context("opening the state database for reading")?,
        );
        let systemd = DbusSystemd::connect()
            .await
            .context("connecting to systemd over D-Bus")?;
        let (status_tx, status_rx) = tokio::sync::watch::channel(Status {
            health: "unknown".into(),
            ..Status::default()
        });
        let metrics = Arc::new(Metrics::new(status_rx.clone()));
        let listen = std::fs::read_to_string(&paths.definition)
            .ok()
            .and_then(|t| crate::definition::parse(&t, &paths.definition).ok())
            .map(|d| d.definition().strackt.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:7477".into());
        let (req_tx, req_rx) = tokio::sync::mpsc::channel(16);
        let deployer = crate::deploy::Deployer::new(
            state.clone(),
            systemd.clone(),
            paths.definition.clone(),
            paths.root.clone(),
            metrics.clone(),
        );
        deployer.recover().await;
        let backups = crate::backup::Backups::new(
            state.clone(),
            systemd.clone(),
            deployer.clone(),
            &paths.root,
            &paths.cache,
            Arc::new(status_tx.clone()),
        );
        backups.spawn_scheduler();
        backups.spawn_generation_bundles();
        crate::api::control::serve(
            &paths.socket,
            req_tx,
            status_rx.clone(),
            state.clone(),
            deployer,
            backups,
            paths.root.clone(),
        )
        .context("binding the control socket")?;
        match listen.parse() {
            Ok(addr) => {
                if let Err(e) =
                    crate::api::http::serve(addr, status_rx.clone(), reader, metrics.clone()).await
                {
                    tracing::error!("HTTP endpoint on {listen} not available: {e}");
                }
            }
            Err(e) => tracing::error!("HTTP endpoint: bad address {listen}: {e}"),
        }
        let wake = Arc::new(Wake::default());
        let woken = wake.clone();
        let _watcher =
            daemon::spawn_watcher(&paths.definition, move || woken.wake(Trigger::FileChange))
                .context("watching the definition directory")?;
        let shutdown = Arc::new(tokio::sync::Notify::new());
        spawn_signals(wake.clone(), shutdown.clone())?;
        daemon::spawn_watchdog();
        let mut d = Daemon::new(paths, store, state, systemd, status_tx, metrics);
        d.startup().await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        tracing::info!("strackt ready");
        daemon::run_loop(&mut d, wake, req_rx, shutdown).await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        Ok(0)
    })
}

/// A duration flag in whole seconds, between 1s and `max` (the daemon checks the same bound).
fn bounded_secs(text: &str, max: u64, flag: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(text)
        .map_err(|_| format!("{flag} {text:?} is not a duration; write e.g. 90s, 30m or 2h"))?;
    daemon::deadline_in(d.as_secs(), max, flag).map(|_| d.as_secs())
}

fn spawn_signals(wake: Arc<Wake>, shutdown: Arc<tokio::sync::Notify>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            wake.wake(Trigger::Signal);
        }
    });
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        // notify_one keeps a permit: the loop sees it after the pass in progress finishes.
        shutdown.notify_one();
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_check_names_what_a_monitor_must_see_and_nothing_else() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let healthy = serde_json::json!({
            "health": "ok",
            "definition_problem": null,
            "updates": { "pending": 3, "security": 0 },
            "backups": { "shop": { "last_outcome": "success", "next_run": "2026-12-02T11:30:00Z" } },
        });
        assert_eq!(status_problems(&healthy, now), Vec::<String>::new());
        let unwell = serde_json::json!({
            "health": "failed",
            "definition_problem": "the definition on disk failed",
            "updates": { "pending": 3, "security": 2 },
            "backups": {
                "shop": { "last_outcome": "failed", "last_error": "bucket unreachable" },
                "blog": { "last_outcome": "success", "next_run": "2026-12-02T10:59:00Z" },
            },
        });
        let problems = status_problems(&unwell, now);
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems.iter().any(|p| p.contains("2 security update(s)")));
        assert!(problems
            .iter()
            .any(|p| p.contains("shop: the last run failed: bucket unreachable")));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("backup blog: overdue")));
    }

    #[test]
    fn parse_opts() {
        let c = Cli::try_parse_from(["strackt", "rollback", "3", "--json"]).expect("parses");
        assert!(c.json);
        assert!(matches!(c.command, Command::Rollback { id: Some(3) }));
        assert!(matches!(
            Cli::try_parse_from(["strackt", "check"])
                .expect("parses")
                .command,
            Command::Check {
                file: None,
                offline: false
            }
        ));
        assert!(matches!(
            Cli::try_parse_from(["strackt", "history", "--operation", "7"])
                .expect("parses")
                .command,
            Command::History {
                operation: Some(7),
                follow: false
            }
        ));
        assert!(Cli::try_parse_from(["strackt", "rollback", "x"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["strackt", "generations", "--all", "--json"])
                .expect("parses")
                .command,
            Command::Generations { all: true }
        ));
        assert!(matches!(
            Cli::try_parse_from(["strackt", "generations"])
                .expect("parses")
                .command,
            Command::Generations { all: false }
        ));
        assert!(matches!(
            Cli::try_parse_from(["strackt", "hold", "--for", "30m", "--reason", "x"])
                .expect("parses")
                .command,
            Command::Hold { release: false, .. }
        ));
        assert!(
            Cli::try_parse_from(["strackt", "hold"]).is_err(),
            "hold needs --for or --release"
        );
        assert!(Cli::try_parse_from(["strackt", "hold", "--for", "1m", "--release"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["strackt", "plan"])
                .expect("parses")
                .command,
            Command::Plan { definition: None }
        ));
        match Cli::try_parse_from(["strackt", "plan", "--definition", "/root/next.yaml"])
            .expect("parses")
            .command
        {
            Command::Plan { definition } => {
                assert_eq!(definition.as_deref(), Some(Path::new("/root/next.yaml")));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Cli::try_parse_from(["strackt", "edit", "--yes"])
                .expect("parses")
                .command,
            Command::Edit { yes: true }
        ));
        assert!(matches!(
            Cli::try_parse_from(["strackt", "diff"])
                .expect("parses")
                .command,
            Command::Diff {
                from: None,
                to: None
            }
        ));
        assert!(matches!(
            Cli::try_parse_from(["strackt", "diff", "3"])
                .expect("parses")
                .command,
            Command::Diff {
                from: Some(3),
                to: None
            }
        ));
        assert!(matches!(
            Cli::try_parse_from(["strackt", "diff", "3", "5"])
                .expect("parses")
                .command,
            Command::Diff {
                from: Some(3),
                to: Some(5)
            }
        ));
        assert!(Cli::try_parse_from(["strackt", "diff", "x"]).is_err());
        match Cli::try_parse_from(["strackt", "upgrade", "--security", "a", "b"])
            .expect("parses")
            .command
        {
            Command::Upgrade { security, packages } => {
                assert!(security);
                assert_eq!(packages, ["a", "b"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_updates_table_marks_security_versions() {
        use daemon::{Candidate, PackageUpdate, UpdatesReport};
        let c = |v: &str, suite: &str| {
            Some(Candidate {
                version: v.into(),
                suites: vec![suite.into()],
                security: suite.ends_with("-security"),
            })
        };
        let report = UpdatesReport {
            checked: "2026-01-01T00:00:00Z".into(),
            refreshed: true,
            pending: 2,
            security: 1,
            packages: vec![
                PackageUpdate {
                    name: "strackt-demo".into(),
                    pinned: "1.0".into(),
                    version: Some("1.0".into()),
                    newest: c("2.0", "bookworm"),
                    security: c("1.1", "bookworm-security"),
                },
                PackageUpdate {
                    name: "tool".into(),
                    pinned: "latest".into(),
                    version: Some("3".into()),
                    newest: c("3.1", "bookworm-security"),
                    security: c("3.1", "bookworm-security"),
                },
                PackageUpdate {
                    name: "calm".into(),
                    pinned: "1".into(),
                    version: Some("1".into()),
                    newest: None,
                    security: None,
                },
            ],
            ..UpdatesReport::default()
        };
        assert_eq!(
            updates_table(&report),
            "PACKAGE       PINNED      NEWEST                              SECURITY UPDATE\n\
             strackt-demo  1.0         2.0 (bookworm)                      1.1 (bookworm-security)\n\
             tool          latest (3)  3.1 (bookworm-security) [security]  3.1 (bookworm-security)\n\
             calm          1           -                                   -\n\
             2 pending, 1 from a security suite: `strackt upgrade --security` applies those, `strackt upgrade` all\n"
        );
    }

    #[test]
    fn duration_flags_are_bounded() {
        assert_eq!(
            bounded_secs("30m", daemon::MAX_HOLD_SECS, "--for"),
            Ok(1800)
        );
        for bad in ["300000y", "0s", "31days", "x", ""] {
            let e = bounded_secs(bad, daemon::MAX_HOLD_SECS, "--for").expect_err(bad);
            assert!(e.contains("--for"), "{bad}: {e}");
        }
        assert!(bounded_secs("2d", daemon::MAX_CONFIRM_SECS, "--confirm-within").is_err());
        // What the daemon gets from a raw control request is checked the same way.
        assert!(daemon::deadline_in(u64::MAX, u64::MAX, "--for").is_err());
        assert!(daemon::deadline_in(i64::MAX as u64, u64::MAX, "--for").is_err());
    }
}
