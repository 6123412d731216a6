//! What a failed deploy does about the app's database, decided without I/O: whether it is put
//! back from the pre-migrate dump, what the operation's reason then says, and what is kept
//! for an operator when putting it back failed.
//!
//! A deploy is all or nothing through the database: once the migration started, any later
//! failure (the migration itself, `cache`, the switch, the health check after it) means the
//! release that goes on serving is one that has never seen the migrated schema, so the
//! database goes back to the dump taken just before the migration.

use std::path::Path;

use crate::definition::DatabaseSpec;

/// What is known about the database when a deploy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AtFailure {
    /// The migration had started, after strackt dumped the app's database.
    pub(crate) migrated: bool,
    /// `restore_on_failure` of the app's `migrate` step.
    pub(crate) restore_on_failure: bool,
    /// `current` still points at the failed release (switching back failed): it serves on
    /// the migrated schema.
    pub(crate) failed_release_live: bool,
}

/// What to do with the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Database {
    /// No migration ran against a database strackt dumped: nothing to put back.
    Untouched,
    /// Put it back from the pre-migrate dump.
    Restore,
    /// Leave it as the migration left it: the app opted out (`restore_on_failure: false`).
    KeepOptedOut,
    /// Leave it as the migration left it: the failed release is still live and needs it.
    KeepForLiveRelease,
}

/// The decision.
pub(crate) fn after_failure(at: AtFailure) -> Database {
    if !at.migrated {
        Database::Untouched
    } else if at.failed_release_live {
        // Putting the old schema under the release that is serving would break it for sure;
        // the operator decides, with the dump kept.
        Database::KeepForLiveRelease
    } else if !at.restore_on_failure {
        Database::KeepOptedOut
    } else {
        Database::Restore
    }
}

/// How the restore went, when there was one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Restored {
    /// The database is as it was before the migration.
    Yes,
    /// It failed (the one-line reason): the database is as the failed deploy left it.
    Failed(String),
}

/// Whether the failed release's private files (its pre-migrate dump) stay: when they are the
/// only way back to the database as it was.
pub(crate) fn keep_dump(decision: Database, restored: Option<&Restored>) -> bool {
    match decision {
        Database::Restore => matches!(restored, Some(Restored::Failed(_))),
        Database::KeepForLiveRelease => true,
        Database::Untouched | Database::KeepOptedOut => false,
    }
}

/// The operation's reason: `why` the deploy failed, then what became of the database.
/// `by_hand` is the command that puts the database back from the kept dump.
pub(crate) fn reason(
    why: &str,
    decision: Database,
    restored: Option<&Restored>,
    dump: &Path,
    by_hand: &str,
) -> String {
    let dump = dump.display();
    match (decision, restored) {
        (Database::Untouched, _) => why.to_string(),
        (Database::Restore, Some(Restored::Yes)) => format!(
            "{why}; the database was put back as it was before the migration (from the pre-migrate dump)"
        ),
        (Database::Restore, failed) => {
            let because = match failed {
                Some(Restored::Failed(e)) => e.as_str(),
                _ => "it did not run",
            };
            format!(
                "{why}; PUTTING THE DATABASE BACK FAILED ({because}): the database is as the failed deploy left it, under the previous release. The pre-migrate dump is kept at {dump}; put it back by hand with:\n  {by_hand}"
            )
        }
        (Database::KeepOptedOut, _) => format!(
            "{why}; the database was NOT put back (restore_on_failure: false): it stays as the migration left it, and the previous release serves on it"
        ),
        (Database::KeepForLiveRelease, _) => format!(
            "{why}; the database stays migrated because the failed release is still live; the pre-migrate dump is kept at {dump}; once the previous release is back, put the database back by hand with:\n  {by_hand}"
        ),
    }
}

/// The reason of a release whose deploy was cut off (strackt stopped) after its pre-migrate
/// dump was taken.
pub(crate) fn interrupted(dump: &Path, by_hand: &str) -> String {
    format!(
        "strackt stopped during the deploy, after the pre-migrate dump: the migration may have changed the database, which was NOT put back. The dump is kept at {}; if the database needs it, put it back by hand with:\n  {by_hand}",
        dump.display()
    )
}

/// `text` as one shell word.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The shell command that does by hand what [`super::database::restore`] does: the dump
/// turned into SQL first (beside it, in strackt's root-only directory), so `psql` runs only a
/// complete file, in one transaction with the drop of what the app's role owns.
pub(crate) fn by_hand(dump: &Path, db: &DatabaseSpec, secrets: &Path) -> String {
    let sql = dump.with_extension("sql");
    let (dump, sql) = (
        sh_quote(&dump.display().to_string()),
        sh_quote(&sql.display().to_string()),
    );
    let password = sh_quote(&secrets.join(&db.password.secret).display().to_string());
    format!(
        "pg_restore --clean --if-exists --no-owner --no-privileges --file {sql} {dump} && PGPASSWORD=\"$(cat {password})\" psql -X -q -v ON_ERROR_STOP=1 --single-transaction -h {} -p {} -U {} -d {} -c {} -f {sql}",
        sh_quote(&db.host),
        db.port,
        sh_quote(&db.user),
        sh_quote(&db.name),
        sh_quote(super::database::DROP_OWNED_OBJECTS.trim()),
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::definition::{DbEngine, SecretRef};

    #[test]
    fn the_database_goes_back_once_the_migration_started_unless_told_otherwise() {
        use Database::*;
        // (migrated, restore_on_failure, failed release live) → decision
        let table = [
            ((false, true, false), Untouched),
            ((false, false, false), Untouched),
            ((false, true, true), Untouched),
            ((true, true, false), Restore),
            ((true, false, false), KeepOptedOut),
            ((true, true, true), KeepForLiveRelease),
            ((true, false, true), KeepForLiveRelease),
        ];
        for ((migrated, restore_on_failure, failed_release_live), want) in table {
            let at = AtFailure {
                migrated,
                restore_on_failure,
                failed_release_live,
            };
            assert_eq!(after_failure(at), want, "{at:?}");
        }
    }

    #[test]
    fn the_dump_is_kept_only_when_it_is_the_way_back() {
        let failed = Restored::Failed("psql failed".into());
        assert!(!keep_dump(Database::Restore, Some(&Restored::Yes)));
        assert!(keep_dump(Database::Restore, Some(&failed)));
        assert!(keep_dump(Database::KeepForLiveRelease, None));
        assert!(!keep_dump(Database::KeepOptedOut, None));
        assert!(!keep_dump(Database::Untouched, None));
    }

    #[test]
    fn the_reason_says_what_became_of_the_database() {
        let dump = Path::new("/var/lib/strackt/apps/shop/releases/3/pre-migrate.dump");
        let say = |d, r: Option<Restored>| reason("cache failed: x", d, r.as_ref(), dump, "CMD");
        assert_eq!(say(Database::Untouched, None), "cache failed: x");
        assert!(say(Database::Restore, Some(Restored::Yes)).starts_with(
            "cache failed: x; the database was put back as it was before the migration"
        ));
        let failed = say(
            Database::Restore,
            Some(Restored::Failed("psql: boom".into())),
        );
        assert!(failed.contains("PUTTING THE DATABASE BACK FAILED (psql: boom)"));
        assert!(failed.contains("kept at /var/lib/strackt/apps/shop/releases/3/pre-migrate.dump"));
        assert!(failed.ends_with("by hand with:\n  CMD"));
        assert!(say(Database::KeepOptedOut, None).contains(
            "NOT put back (restore_on_failure: false): it stays as the migration left it"
        ));
        assert!(say(Database::KeepForLiveRelease, None).ends_with("by hand with:\n  CMD"));
        let cut = interrupted(dump, "CMD");
        assert!(cut.starts_with("strackt stopped during the deploy"));
        assert!(cut.contains("NOT put back. The dump is kept at /var/lib/strackt/apps/shop/releases/3/pre-migrate.dump"));
        assert!(cut.ends_with("by hand with:\n  CMD"));
    }

    #[test]
    fn the_command_by_hand_quotes_every_word() {
        let db = DatabaseSpec {
            engine: DbEngine::Postgresql,
            host: "127.0.0.1".into(),
            port: 5432,
            name: "shop".into(),
            user: "shop".into(),
            password: SecretRef {
                secret: "shop_db_password".into(),
            },
        };
        let cmd = by_hand(
            &PathBuf::from("/var/lib/strackt/apps/shop/releases/3/pre-migrate.dump"),
            &db,
            Path::new("/etc/strackt/secrets"),
        );
        assert!(cmd.starts_with(
            "pg_restore --clean --if-exists --no-owner --no-privileges --file '/var/lib/strackt/apps/shop/releases/3/pre-migrate.sql' '/var/lib/strackt/apps/shop/releases/3/pre-migrate.dump' && PGPASSWORD=\"$(cat '/etc/strackt/secrets/shop_db_password')\" psql -X -q -v ON_ERROR_STOP=1 --single-transaction -h '127.0.0.1' -p 5432 -U 'shop' -d 'shop' -c 'DO $$"
        ), "{cmd}");
        assert!(cmd.contains(r"'\''pg_catalog'\''"), "{cmd}");
        assert!(cmd.ends_with("-f '/var/lib/strackt/apps/shop/releases/3/pre-migrate.sql'"));
    }
}
