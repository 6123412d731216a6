//! Putting an app's PostgreSQL database back from a dump (a release rollback, a failed
//! deploy, a restore): all or nothing, in one transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::preflight::last_line;

/// Drops what the app's role owns in its database — schemas other than `public`, tables,
/// views, sequences, routines, types — so what only a later migration created goes too (and
/// that migration can run again); the dump then recreates what it holds. Objects of an
/// extension stay: they are the extension's, and dropping one alone fails.
pub(crate) const DROP_OWNED_OBJECTS: &str = "DO $$ DECLARE r record; \
    me oid := current_user::regrole::oid; BEGIN \
    FOR r IN SELECT n.nspname FROM pg_namespace n WHERE n.nspowner = me \
    AND n.nspname NOT IN ('public', 'information_schema') AND left(n.nspname, 3) <> 'pg_' \
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass \
    AND d.objid = n.oid AND d.deptype = 'e') LOOP \
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', r.nspname); END LOOP; \
    FOR r IN SELECT n.nspname, c.relname, c.relkind FROM pg_class c \
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relowner = me \
    AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
    AND d.objid = c.oid AND d.deptype = 'e') LOOP \
    EXECUTE format('DROP %s IF EXISTS %I.%I CASCADE', CASE r.relkind WHEN 'v' THEN 'VIEW' \
    WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' \
    ELSE 'TABLE' END, r.nspname, r.relname); END LOOP; \
    FOR r IN SELECT p.oid::regprocedure::text AS routine FROM pg_proc p \
    JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proowner = me \
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass \
    AND d.objid = p.oid AND d.deptype = 'e') LOOP \
    EXECUTE 'DROP ROUTINE IF EXISTS ' || r.routine || ' CASCADE'; END LOOP; \
    FOR r IN SELECT n.nspname, t.typname, t.typtype FROM pg_type t \
    JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typowner = me \
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
    AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' \
    AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')) \
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass \
    AND d.objid = t.oid AND d.deptype = 'e') LOOP \
    EXECUTE format('DROP %s IF EXISTS %I.%I CASCADE', \
    CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, r.nspname, r.typname); END LOOP; \
    END $$;\n";

/// How long a restore may take.
const LIMIT: Duration = Duration::from_secs(12 * 3600);

fn client(program: &str, db: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(db)
        .kill_on_drop(true);
    cmd
}

/// Restore the database `db` (libpq variables) from the custom-format dump (`pg_dump -Fc`)
/// in the file `dump`: `pg_restore` turns it into SQL, which `psql --single-transaction` runs
/// after the drop. If `pg_restore` fails, `psql` is killed before it sees the end of its
/// input, so nothing is committed.
///
/// # Errors
/// The one-line reason and the output of the tools.
pub async fn restore(
    dump: &Path,
    db: &BTreeMap<String, String>,
) -> Result<((), String), (String, String)> {
    let work = async {
        let mut pg_restore = client("pg_restore", db);
        pg_restore
            .args([
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--file",
                "-",
            ])
            .arg(dump)
            .stdin(Stdio::null());
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
            into.write_all(DROP_OWNED_OBJECTS.as_bytes())
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
        let failure = match (&copied, restore_ok) {
            (Err(e), _) => Some(e.clone()),
            (_, false) => Some(format!("pg_restore failed: {}", last_line(&restore_err))),
            _ => None,
        };
        if let Some(f) = failure {
            // Before psql sees end of input: its transaction is rolled back.
            let _ = psql.start_kill();
            let _ = psql.wait().await;
            return Err(format!("{f}\n{restore_err}"));
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
