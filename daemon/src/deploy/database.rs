//! Putting an app's PostgreSQL database back from a dump (a release rollback, a failed
//! deploy, a restore): all or nothing, in one transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::preflight::last_line;
use crate::host::processes::{Cmd, End, Processes};

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

/// Restore the database `db` (libpq variables) from the custom-format dump (`pg_dump -Fc`)
/// in the file `dump`: `pg_restore` turns it into SQL, piped into `psql --single-transaction`
/// after the drop. If `pg_restore` fails, `psql` is killed before it sees the end of its
/// input (the pipe's guarantee), so nothing is committed.
///
/// # Errors
/// The one-line reason and the output of the tools.
pub async fn restore(
    p: &impl Processes,
    dump: &Path,
    db: &BTreeMap<String, String>,
) -> Result<((), String), (String, String)> {
    let pg_restore = Cmd::new("pg_restore", LIMIT)
        .envs(db)
        .args([
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--file",
            "-",
        ])
        .args([dump.display().to_string()]);
    let psql = Cmd::new("psql", LIMIT)
        .envs(db)
        .args([
            "-X",
            "-q",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
        ])
        .stdin(DROP_OWNED_OBJECTS);
    let piped = p
        .pipe(pg_restore, psql)
        .await
        .map_err(|e| (e.to_string(), String::new()))?;
    let restore_err = piped.source.stderr.clone();
    // pg_restore's last line may lack its newline (it was killed mid-line): psql's own lines
    // still start lines of their own.
    let text = match restore_err.is_empty() || restore_err.ends_with('\n') {
        true => format!("{restore_err}{}", piped.sink.tail),
        false => format!("{restore_err}\n{}", piped.sink.tail),
    };
    if piped.sink.end == End::Cut {
        return Err((
            format!("pg_restore failed: {}", last_line(&restore_err)),
            restore_err,
        ));
    }
    if let End::TimedOut(_) = piped.sink.end {
        return Err(("the restore did not finish within 12 h".into(), text));
    }
    if !piped.sink.success() {
        return Err((
            format!("psql failed, nothing restored: {}", last_line(&text)),
            text,
        ));
    }
    // psql ended well without reading all of pg_restore's output: not a whole restore.
    if let Some(why) = piped.source.failure() {
        return Err((format!("pg_restore: {why}"), text));
    }
    Ok(((), text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeProcesses;
    use crate::host::processes::Output;

    #[test]
    fn a_failed_pg_restore_never_lets_psql_see_the_end_of_its_input() {
        let fake = FakeProcesses::default();
        fake.script(
            "pg_restore",
            Output::with(
                End::Exited(1),
                "CREATE TABLE half",
                "pg_restore: error: corrupt",
            ),
        );
        let db = BTreeMap::from([("PGDATABASE".to_string(), "shop".to_string())]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (why, _) = rt
            .block_on(restore(&fake, Path::new("/var/lib/strackt/x.dump"), &db))
            .expect_err("failed");
        assert_eq!(why, "pg_restore failed: pg_restore: error: corrupt");
        let s = fake.state();
        let psql = s
            .calls
            .iter()
            .find(|c| c.program == "psql")
            .expect("started");
        assert_eq!(
            psql.stdin,
            DROP_OWNED_OBJECTS.as_bytes(),
            "none of the dump"
        );
        assert_eq!(psql.env["PGDATABASE"], "shop");
    }
}
