//! Preflight: everything a deploy needs from this server, checked before any work, and every
//! missing piece reported at once with the definition field (and secret file) that fixes it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::runner::{self, RunAs};
use super::DeployError;
use crate::definition::{
    problem_at, AppSpec, DatabaseSpec, DefinitionError, Problem, SettingValue, ValidatedDefinition,
};
use crate::host::processes::Processes;
use crate::host::{Files, Machine, Systemd};
use crate::state::redact::url_encode;

/// What a deploy runs with, once preflight passed.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The app's environment: settings (secrets resolved) and the database connection.
    pub env: BTreeMap<String, String>,
    /// The database connection alone (`PG*`), for dumps and restores strackt runs itself.
    pub db_env: BTreeMap<String, String>,
    /// Who steps and the service run as.
    pub user: RunAs,
    /// The environment git runs with (see [`git_env`]).
    pub git_env: BTreeMap<String, String>,
    /// A dump of the database as it is now, already on disk (a restore's): the release keeps
    /// it as its pre-migrate dump instead of taking one.
    pub current_dump: Option<std::path::PathBuf>,
}

/// git refuses to read a repository owned by another user ("dubious ownership"), which a
/// local-path `repo:` usually is. strackt trusts exactly the repository the definition names:
/// a global git config of its own (including the user's `~/.gitconfig`, so credentials and
/// URL rewrites still apply) with that path as `safe.directory`.
pub fn git_env(
    app: &str,
    spec: &AppSpec,
    user: &RunAs,
    files: &impl Files,
) -> Result<BTreeMap<String, String>, DeployError> {
    // Not under /run/strackt, which is root-only: the app user must read it.
    let path = Path::new("/run/strackt-git").join(format!("{app}.gitconfig"));
    let repo = spec.repo.trim_end_matches('/');
    let text = format!(
        "[include]\n\tpath = {}/.gitconfig\n[safe]\n\tdirectory = {repo}\n\tdirectory = {repo}/.git\n",
        user.home
    );
    files.write(&path, text.as_bytes(), 0o644, 0, 0)?;
    Ok(BTreeMap::from([
        ("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()),
        ("GIT_CONFIG_GLOBAL".to_string(), path.display().to_string()),
    ]))
}

/// Time limit of each look-up preflight makes (git, the database).
const LOOKUP_LIMIT: Duration = Duration::from_secs(20);

/// Read secret `name`; a trailing newline (as `echo` writes) is not part of it.
pub fn read_secret(dir: &Path, name: &str) -> Result<String, DeployError> {
    let path = dir.join(name);
    // Through `host::tree`: a link is followed only where root alone could have put it.
    let mut text = String::new();
    match crate::host::tree::open_file(&path).and_then(|f| match f {
        Some(mut f) => std::io::Read::read_to_string(&mut f, &mut text).map(|_| true),
        None => Ok(false),
    }) {
        Ok(true) => {
            let value = text.strip_suffix('\n').unwrap_or(&text).to_string();
            if value.is_empty() {
                Err(DeployError::SecretEmpty(path))
            } else {
                Ok(value)
            }
        }
        Ok(false) => Err(DeployError::SecretMissing {
            name: name.to_string(),
            path,
        }),
        Err(source) => Err(DeployError::SecretUnreadable { path, source }),
    }
}

/// libpq's variables and `DATABASE_URL` for `db` with `password`.
pub fn database_env(db: &DatabaseSpec, password: &str) -> BTreeMap<String, String> {
    let host = if db.host.contains(':') {
        format!("[{}]", db.host)
    } else {
        db.host.clone()
    };
    BTreeMap::from([
        ("PGHOST".into(), db.host.clone()),
        ("PGPORT".into(), db.port.to_string()),
        ("PGDATABASE".into(), db.name.clone()),
        ("PGUSER".into(), db.user.clone()),
        ("PGPASSWORD".into(), password.to_string()),
        (
            "DATABASE_URL".into(),
            format!(
                "postgresql://{}:{}@{host}:{}/{}",
                url_encode(&db.user),
                url_encode(password),
                db.port,
                url_encode(&db.name)
            ),
        ),
    ])
}

/// The database connection of `app` with its password read, or why not.
pub fn resolve_database(
    app: &AppSpec,
    secrets: &Path,
) -> Result<Option<BTreeMap<String, String>>, DeployError> {
    match &app.database {
        None => Ok(None),
        Some(db) => Ok(Some(database_env(
            db,
            &read_secret(secrets, &db.password.secret)?,
        ))),
    }
}

/// The line of a command's output that says what went wrong: the first `fatal:`/`ERROR:`
/// line (psql reading a script prefixes it with where: `psql:<stdin>:12: ERROR:`), else the
/// last non-empty one. Not simply the last: PostgreSQL follows an error with `CONTEXT:`,
/// `LINE 1:` and `HINT:` lines, and which of them ends the output varies.
pub fn last_line(text: &str) -> &str {
    let lines = || text.lines().map(str::trim).filter(|l| !l.is_empty());
    let error = lines().find_map(|l| {
        if l.starts_with("fatal:") || l.starts_with("psql: error:") {
            return Some(l);
        }
        let at = l.find("ERROR:")?;
        // psql reading a script says where (`psql:<stdin>:12: ERROR:`); anything else before
        // it is another program's unfinished line, glued on.
        Some(if l.starts_with("psql:") { l } else { &l[at..] })
    });
    error.or_else(|| lines().next_back()).unwrap_or("no output")
}

/// Check everything app `name` needs on this server.
///
/// # Errors
/// Every missing piece, each located at the field of `def` to fix.
// Whole on purpose (~130 lines): a flat checklist, each check adding to the one `problems`
// list through the `at` closure so the user sees every missing piece at once; split, each part
// would need that list and the resolved settings passed in and out.
pub async fn check(
    name: &str,
    branch: &str,
    def: &ValidatedDefinition,
    file: &Path,
    secrets: &Path,
    machine: &impl Machine,
) -> Result<Prepared, DefinitionError> {
    let processes = machine.processes();
    let mut problems: Vec<Problem> = Vec::new();
    let source = def.source();
    let mut at = |path: &[&str], message: String| {
        let mut full = vec!["apps", name];
        full.extend_from_slice(path);
        problems.push(problem_at(source, &full, message));
    };
    let Some(app) = def.definition().apps.get(name) else {
        at(&[], format!("no app `{name}` in the definition"));
        return Err(DefinitionError {
            file: file.to_path_buf(),
            problems,
        });
    };

    let mut env = BTreeMap::new();
    for (key, value) in &app.settings {
        match value {
            SettingValue::Plain(v) => {
                env.insert(key.clone(), v.clone());
            }
            SettingValue::Secret(s) => match read_secret(secrets, &s.secret) {
                Ok(v) => {
                    env.insert(key.clone(), v);
                }
                Err(e) => at(&["settings", key], e.to_string()),
            },
        }
    }
    let db_env = match &app.database {
        Some(db) => match read_secret(secrets, &db.password.secret) {
            Ok(pw) => Some(database_env(db, &pw)),
            Err(e) => {
                at(&["database", "password"], e.to_string());
                None
            }
        },
        None => None,
    };

    let user = match &app.user {
        Some(u) => RunAs::lookup(u).unwrap_or_else(|| {
            at(
                &["user"],
                format!("user `{u}` does not exist on this server: add it under `users:`"),
            );
            RunAs::root()
        }),
        None => RunAs::root(),
    };

    for unit in &app.requires {
        match machine.systemd().unit_state(unit).await {
            Ok(s) if s.is_active() => {}
            Ok(s) if s.load_state == "not-found" => at(
                &["requires"],
                format!(
                    "{unit} does not exist on this server (install the package that provides it)"
                ),
            ),
            Ok(s) => at(
                &["requires"],
                format!(
                    "{unit} is {} : start it (or add it under `services:`)",
                    s.active_state
                ),
            ),
            Err(e) => at(&["requires"], format!("{unit}: {e}")),
        }
    }

    let mut tools = vec![("git", "repo", "git")];
    if app.database.is_some() {
        tools.push(("psql", "database", "postgresql-client"));
        if app.steps.migrate.is_some() {
            tools.push(("pg_dump", "steps", "postgresql-client"));
        }
    }
    if app.service.mode == crate::definition::ServeMode::Proxy {
        tools.push(("nginx", "service", "nginx"));
    }
    for (tool, field, package) in &tools {
        if !processes.installed(tool) {
            at(
                &[field],
                format!("`{tool}` is not installed: add `{package}: latest` under `packages:`"),
            );
        }
    }

    let git = match git_env(name, app, &user, machine.files()) {
        Ok(env) => env,
        Err(e) => {
            at(&["repo"], e.to_string());
            BTreeMap::new()
        }
    };
    // The two look-ups that wait on something else run side by side.
    let (git_problem, db_problem) = tokio::join!(
        check_branch(processes, app, branch, &git, &user),
        check_database(processes, app, db_env.as_ref())
    );
    for (field, message) in git_problem.into_iter().chain(db_problem) {
        at(field, message);
    }

    if !problems.is_empty() {
        return Err(DefinitionError {
            file: file.to_path_buf(),
            problems,
        });
    }
    let db_env = db_env.unwrap_or_default();
    env.extend(db_env.clone());
    Ok(Prepared {
        env,
        db_env,
        user,
        git_env: git,
        current_dump: None,
    })
}

type Found = Option<(&'static [&'static str], String)>;

/// The branch exists in the repository (and the repository can be read).
async fn check_branch(
    p: &impl Processes,
    app: &AppSpec,
    branch: &str,
    git: &BTreeMap<String, String>,
    user: &RunAs,
) -> Found {
    if !p.installed("git") {
        return None;
    }
    let argv: Vec<String> = [
        "git",
        "ls-remote",
        "--exit-code",
        "--heads",
        "--",
        &app.repo,
        branch,
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    let ran = runner::run(p, &argv, Path::new("/"), git, user, LOOKUP_LIMIT).await;
    if ran.ok {
        None
    } else if ran.tail.trim().is_empty() {
        Some((
            &["branch"],
            format!("branch `{branch}` does not exist in {}", app.repo),
        ))
    } else {
        Some((
            &["repo"],
            format!("cannot read {}: {}", app.repo, last_line(&ran.tail)),
        ))
    }
}

/// The database host resolves and accepts the credentials.
async fn check_database(
    p: &impl Processes,
    app: &AppSpec,
    db_env: Option<&BTreeMap<String, String>>,
) -> Found {
    let (Some(db), Some(db_env)) = (&app.database, db_env) else {
        return None;
    };
    if let Err(e) = tokio::net::lookup_host((db.host.as_str(), db.port)).await {
        return Some((
            &["database", "host"],
            format!("`{}` does not resolve: {e}", db.host),
        ));
    }
    if !p.installed("psql") {
        return None;
    }
    let mut env = db_env.clone();
    env.insert("PGCONNECT_TIMEOUT".into(), "5".into());
    let argv: Vec<String> = ["psql", "-X", "-w", "-A", "-t", "-c", "SELECT 1"]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    let ran = runner::run(p, &argv, Path::new("/"), &env, &RunAs::root(), LOOKUP_LIMIT).await;
    (!ran.ok).then(|| {
        (
            &["database"][..],
            format!(
                "PostgreSQL at {}:{} does not accept user `{}` on database `{}`: {}",
                db.host,
                db.port,
                db.user,
                db.name,
                last_line(&ran.tail)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{last_line, read_secret};
    use crate::deploy::DeployError;

    #[test]
    fn a_secret_is_read_through_a_link_only_where_root_alone_could_put_it() {
        use std::os::unix::fs::{chown, symlink};
        let dir = tempfile::tempdir().expect("tempdir");
        let root_only = dir.path().join("secrets");
        std::fs::create_dir(&root_only).expect("mkdir");
        std::fs::write(dir.path().join("real"), "pw\n").expect("write");
        std::fs::write(root_only.join("db"), "s3cret\n").expect("write");
        symlink(dir.path().join("real"), root_only.join("linked")).expect("link");
        assert_eq!(read_secret(&root_only, "db").expect("db"), "s3cret");
        assert_eq!(read_secret(&root_only, "linked").expect("linked"), "pw");
        assert!(matches!(
            read_secret(&root_only, "none"),
            Err(DeployError::SecretMissing { .. })
        ));
        // A directory another user owns: a link planted there is not followed.
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        symlink(dir.path().join("real"), theirs.join("db")).expect("link");
        chown(&theirs, Some(4242), Some(4242)).expect("chown");
        let e = read_secret(&theirs, "db").expect_err("a planted link");
        assert!(
            matches!(
                &e,
                DeployError::SecretUnreadable { .. } | DeployError::SecretMissing { .. }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn the_error_line_is_told_not_the_context_after_it() {
        let psql =
            "psql:<stdin>:14: ERROR:  cannot execute DROP TABLE in a read-only transaction\n\
                    CONTEXT:  SQL statement \"DROP TABLE public.items\"\n";
        assert_eq!(
            last_line(psql),
            "psql:<stdin>:14: ERROR:  cannot execute DROP TABLE in a read-only transaction"
        );
        assert_eq!(
            last_line("ERROR:  relation \"x\" does not exist\nLINE 1: SELECT * FROM x\n"),
            "ERROR:  relation \"x\" does not exist"
        );
        assert_eq!(
            last_line("Cloning...\nfatal: repository not found\nmore\n"),
            "fatal: repository not found"
        );
        // Another program's last line, left without its newline, glued before the error.
        assert_eq!(
            last_line("pg_restore: warning: cutERROR:  cannot execute DROP SCHEMA\nCONTEXT:  x\n"),
            "ERROR:  cannot execute DROP SCHEMA"
        );
        assert_eq!(last_line("one\ntwo\n\n"), "two");
        assert_eq!(last_line(""), "no output");
    }
}
