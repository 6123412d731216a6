//! Putting an app's PostgreSQL database back from a dump (a release rollback, a restore):
//! all or nothing, in one transaction.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::preflight::last_line;

/// Drops every table the app's role owns, so tables that only a later migration created go
/// too; the dump then recreates what it holds.
const DROP_OWNED_TABLES: &str = "DO $$ DECLARE r record; BEGIN \
    FOR r IN SELECT schemaname, tablename FROM pg_tables WHERE tableowner = current_user \
    AND schemaname NOT IN ('pg_catalog', 'information_schema') LOOP \
    EXECUTE format('DROP TABLE IF EXISTS %I.%I CASCADE', r.schemaname, r.tablename); \
    END LOOP; END $$;\n";

/// How long a restore may take.
const LIMIT: Duration = Duration::from_secs(12 * 3600);

/// Where a custom-format dump (`pg_dump -Fc`) comes from.
#[derive(Debug)]
pub enum DumpSource {
    /// A file on this server.
    File(String),
    /// A command writing it to stdout (`restic dump`).
    Stream(Command),
}

fn client(program: &str, db: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(db)
        .kill_on_drop(true);
    cmd
}

/// Restore the database `db` (libpq variables) from `source`: `pg_restore` turns the dump into
/// SQL, which `psql --single-transaction` runs after the drop. If the source or `pg_restore`
/// fails, `psql` is killed before it sees the end of its input, so nothing is committed.
///
/// # Errors
/// The one-line reason and the output of the tools.
pub async fn restore(
    source: DumpSource,
    db: &BTreeMap<String, String>,
) -> Result<((), String), (String, String)> {
    let work = async {
        let mut feeder = None;
        let mut pg_restore = client("pg_restore", db);
        pg_restore.args([
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--file",
            "-",
        ]);
        match source {
            DumpSource::File(path) => {
                pg_restore.arg(path).stdin(Stdio::null());
            }
            DumpSource::Stream(mut cmd) => {
                let mut child = cmd
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("reading the dump: {e}"))?;
                let out: Stdio = child
                    .stdout
                    .take()
                    .ok_or("no dump stream")?
                    .try_into()
                    .map_err(|e| format!("dump stream: {e}"))?;
                pg_restore.stdin(out);
                feeder = Some(child);
            }
        }
        // Killed if this is dropped half-way: psql would otherwise see end of input and
        // COMMIT whatever part of the dump it had.
        let mut restore = pg_restore
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("pg_restore: {e}"))?;
        let mut psql = client("psql", db)
            .args([
                "-X",
                "-q",
                "-w",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("psql: {e}"))?;
        let mut into = psql.stdin.take().ok_or("psql has no stdin")?;
        let mut sql = restore.stdout.take().ok_or("pg_restore has no stdout")?;
        let copied: Result<(), String> = async {
            into.write_all(DROP_OWNED_TABLES.as_bytes())
                .await
                .map_err(|e| format!("psql: {e}"))?;
            tokio::io::copy_buf(&mut BufReader::with_capacity(1 << 20, &mut sql), &mut into)
                .await
                .map(|_| ())
                .map_err(|e| format!("streaming pg_restore's output into psql: {e}"))
        }
        .await;
        let mut restore_err = String::new();
        if let Some(mut e) = restore.stderr.take() {
            let _ = e.read_to_string(&mut restore_err).await;
        }
        let restore_ok = restore.wait().await.is_ok_and(|s| s.success());
        let mut feed_err = String::new();
        let feed_ok = match feeder.as_mut() {
            Some(child) => {
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut feed_err).await;
                }
                child.wait().await.is_ok_and(|s| s.success())
            }
            None => true,
        };
        let failure = match (&copied, restore_ok, feed_ok) {
            (Err(e), _, _) => Some(e.clone()),
            (_, _, false) => Some(format!("reading the dump failed: {}", last_line(&feed_err))),
            (_, false, _) => Some(format!("pg_restore failed: {}", last_line(&restore_err))),
            _ => None,
        };
        if let Some(f) = failure {
            // Before psql sees end of input: its transaction is rolled back.
            let _ = psql.start_kill();
            let _ = psql.wait().await;
            return Err(format!("{f}\n{feed_err}{restore_err}"));
        }
        drop(into);
        let out = psql
            .wait_with_output()
            .await
            .map_err(|e| format!("psql: {e}"))?;
        let text = format!(
            "{}{}{}",
            restore_err,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!(
                "psql failed, nothing restored: {}\n{text}",
                last_line(&text)
            ))
        }
    };
    match tokio::time::timeout(LIMIT, work).await {
        Ok(Ok(text)) => Ok(((), text)),
        Ok(Err(e)) => {
            let (first, rest) = e.split_once('\n').unwrap_or((&e, ""));
            Err((first.to_string(), rest.to_string()))
        }
        Err(_) => Err((
            "the restore did not finish within 12 h".into(),
            String::new(),
        )),
    }
}
