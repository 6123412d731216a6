//! `strackt backup …`: runs, restores, the team key.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;

use super::control::{follow, request};
use crate::api::ControlRequest;
use crate::daemon::Paths;
#[derive(Debug, Subcommand)]
pub(super) enum BackupCommand {
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
pub(super) enum KeyCommand {
    /// Generate the team's key (first server of the team); printed once.
    Init,
    /// Put the team's key on this server, read from standard input.
    Import,
}

pub(super) fn backup(paths: &Paths, command: BackupCommand, json: bool) -> anyhow::Result<i32> {
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
            let text = super::read_definition(&file)?;
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
