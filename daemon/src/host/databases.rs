//! PostgreSQL roles and databases (`databases:`), reached as the `postgres` superuser over the
//! local socket (`runuser -u postgres -- psql`), the way Debian's own packaging administers a
//! cluster. SQL goes on psql's stdin, never on its command line.
//!
//! This layer reads what exists and creates or completes what it is told to; it never drops,
//! renames or empties anything, and it never decides what should exist (that is `plan/`).
//!
//! Passwords are set as SCRAM-SHA-256 verifiers computed here (RFC 5802 / RFC 7677, the format
//! PostgreSQL stores in `pg_authid.rolpassword`), so the password itself reaches neither a
//! command line, nor psql's input, nor PostgreSQL's statement log; observing compares the
//! secret against the stored verifier the same way a login would.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use base64::Engine;
use ring::rand::SecureRandom;

use super::processes::{Cmd, End, Processes, RealProcesses};
use super::HostError;
use crate::definition::is_pg_name;

/// A role as PostgreSQL has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleState {
    /// `rolcanlogin`.
    pub login: bool,
    /// `rolpassword`: the stored verifier (`None`: no password). Secret-derived: kept in
    /// memory only, never serialized.
    pub verifier: Option<String>,
}

/// What the cluster holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgState {
    /// Roles by name.
    pub roles: BTreeMap<String, RoleState>,
    /// Databases by name → owning role.
    pub databases: BTreeMap<String, String>,
}

/// The local PostgreSQL cluster. Real implementation: [`Postgres`].
///
/// # Errors
/// [`HostError::Command`] (op `postgresql`) when PostgreSQL is not installed or not running,
/// or refuses a statement; [`HostError::Timeout`] when it does not answer.
///
/// # Cancellation
/// Dropping a future kills the psql child; a statement PostgreSQL already committed stays.
pub trait Databases: Send + Sync {
    /// Every role and database.
    fn observe(&self) -> impl Future<Output = Result<PgState, HostError>> + Send;
    /// Create role `name` (LOGIN) if missing, then make sure it can log in and, with
    /// `verifier`, that its password is that SCRAM verifier.
    fn ensure_role(
        &self,
        name: &str,
        verifier: Option<&str>,
    ) -> impl Future<Output = Result<(), HostError>> + Send;
    /// Create database `name` owned by `owner` if missing, else make `owner` its owner.
    fn ensure_database(
        &self,
        name: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), HostError>> + Send;
}

/// The machine's cluster, through `runuser -u postgres -- psql`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Postgres;

/// How long one psql run may take (a CREATE DATABASE copies template1: seconds, not minutes).
const LIMIT: Duration = Duration::from_secs(120);

fn fail(message: String) -> HostError {
    HostError::Command {
        op: "postgresql",
        message,
    }
}

/// A name checked again here: only names that need no escaping reach SQL.
fn ident(name: &str) -> Result<&str, HostError> {
    if is_pg_name(name) {
        Ok(name)
    } else {
        Err(fail(format!("{name:?} is not a name strackt manages")))
    }
}

/// Run `sql` as the `postgres` superuser; its standard output.
async fn psql(sql: &str) -> Result<String, HostError> {
    let cmd = Cmd::new("runuser", LIMIT)
        .args(["-u", "postgres", "--", "psql"])
        .args(["-X", "-q", "-A", "-t", "-z", "-v", "ON_ERROR_STOP=1"])
        .args(["-d", "postgres"])
        // The postgres user cannot enter root's working directory.
        .cwd("/")
        .stdin(sql)
        .keep(16 << 20);
    let out = RealProcesses
        .run(cmd)
        .await
        .map_err(|e| fail(format!("running runuser -u postgres -- psql: {e}")))?;
    if let End::TimedOut(limit) = out.end {
        return Err(HostError::Timeout {
            what: "psql".into(),
            secs: limit.as_secs(),
        });
    }
    if out.success() {
        return Ok(out.stdout);
    }
    let err = &out.stderr;
    // psql's first error line says what went wrong; later lines only point at it.
    let why = err
        .lines()
        .find(|l| l.contains("ERROR") || l.contains("FATAL") || l.contains("error"))
        .or_else(|| err.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim();
    Err(fail(format!(
        "PostgreSQL is not installed, not running or refused the change ({}): {why}; install the `postgresql` package and keep postgresql.service running",
        out.failure().unwrap_or_default()
    )))
}

/// Parse psql's unaligned output: records by line, fields by NUL (`-A -t -z`).
fn parse_state(text: &str) -> PgState {
    let mut state = PgState::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\0').collect();
        match f.as_slice() {
            ["r", name, login, verifier] => {
                state.roles.insert(
                    (*name).to_string(),
                    RoleState {
                        login: *login == "true",
                        verifier: (!verifier.is_empty()).then(|| (*verifier).to_string()),
                    },
                );
            }
            ["d", name, owner, _] => {
                state
                    .databases
                    .insert((*name).to_string(), (*owner).to_string());
            }
            _ => {}
        }
    }
    state
}

impl Databases for Postgres {
    async fn observe(&self) -> Result<PgState, HostError> {
        let out = psql(
            "SELECT 'r', rolname::text, rolcanlogin::text, coalesce(rolpassword, '') \
             FROM pg_authid UNION ALL \
             SELECT 'd', datname::text, pg_get_userbyid(datdba)::text, '' FROM pg_database;\n",
        )
        .await?;
        Ok(parse_state(&out))
    }

    async fn ensure_role(&self, name: &str, verifier: Option<&str>) -> Result<(), HostError> {
        let name = ident(name)?;
        // `\gexec` runs the CREATE only when the role is missing: idempotent even when the
        // step runs on a cluster the pass could not read.
        let mut sql = format!(
            "SELECT 'CREATE ROLE \"{name}\" LOGIN' WHERE NOT EXISTS \
             (SELECT 1 FROM pg_roles WHERE rolname = '{name}') \\gexec\n\
             ALTER ROLE \"{name}\" LOGIN;\n"
        );
        if let Some(v) = verifier {
            if !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "$:+/=-".contains(c))
            {
                return Err(fail("internal: a malformed password verifier".into()));
            }
            sql.push_str(&format!("ALTER ROLE \"{name}\" PASSWORD '{v}';\n"));
        }
        psql(&sql).await.map(|_| ())
    }

    async fn ensure_database(&self, name: &str, owner: &str) -> Result<(), HostError> {
        let (name, owner) = (ident(name)?, ident(owner)?);
        // CREATE DATABASE cannot run in a transaction block; `\gexec` runs it on its own.
        let sql = format!(
            "SELECT 'CREATE DATABASE \"{name}\" OWNER \"{owner}\"' WHERE NOT EXISTS \
             (SELECT 1 FROM pg_database WHERE datname = '{name}') \\gexec\n\
             ALTER DATABASE \"{name}\" OWNER TO \"{owner}\";\n"
        );
        psql(&sql).await.map(|_| ())
    }
}

/// Iterations of PBKDF2 in a verifier strackt makes (PostgreSQL's default,
/// `scram_iterations`).
const ITERATIONS: u32 = 4096;

fn ascii_password(password: &str) -> Result<&[u8], HostError> {
    // libpq and the server normalize other passwords with SASLprep (NFKC); an ASCII password
    // is its own normal form, so the verifier made here matches what a client proves.
    if password.is_ascii() {
        Ok(password.as_bytes())
    } else {
        Err(fail(
            "a database password secret must be ASCII (PostgreSQL would normalize other characters, and logins would fail)".into(),
        ))
    }
}

/// StoredKey and ServerKey of `password` (RFC 5802 §3).
fn keys(password: &[u8], salt: &[u8], iterations: u32) -> Option<([u8; 32], [u8; 32])> {
    let mut salted = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations)?,
        salt,
        password,
        &mut salted,
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salted);
    let client = ring::hmac::sign(&key, b"Client Key");
    let server = ring::hmac::sign(&key, b"Server Key");
    let stored = ring::digest::digest(&ring::digest::SHA256, client.as_ref());
    Some((
        stored.as_ref().try_into().ok()?,
        server.as_ref().try_into().ok()?,
    ))
}

/// A new SCRAM-SHA-256 verifier of `password` with a random salt, in PostgreSQL's format
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
///
/// # Errors
/// A non-ASCII password; no randomness.
pub fn scram_verifier(password: &str) -> Result<String, HostError> {
    let password = ascii_password(password)?;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| fail("no randomness for a password salt".into()))?;
    let (stored, server) =
        keys(password, &salt, ITERATIONS).ok_or_else(|| fail("internal: PBKDF2".into()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored),
        b64.encode(server)
    ))
}

/// Whether the stored `verifier` accepts `password`. Anything but a SCRAM-SHA-256 verifier
/// (none, an md5 hash) does not: it is replaced by one.
///
/// # Errors
/// A non-ASCII password.
pub fn scram_matches(verifier: &str, password: &str) -> Result<bool, HostError> {
    let password = ascii_password(password)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let parsed = (|| {
        let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys_part) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys_part.split_once(':')?;
        Some((
            iterations.parse::<u32>().ok()?,
            b64.decode(salt).ok()?,
            b64.decode(stored).ok()?,
            b64.decode(server).ok()?,
        ))
    })();
    let Some((iterations, salt, stored, server)) = parsed else {
        return Ok(false);
    };
    Ok(keys(password, &salt, iterations)
        .is_some_and(|(s, k)| s.as_slice() == stored && k.as_slice() == server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_accepts_its_password_only() {
        let v = scram_verifier("s3cret-pw").expect("verifier");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(scram_matches(&v, "s3cret-pw").expect("ascii"));
        assert!(!scram_matches(&v, "other").expect("ascii"));
        assert!(!scram_matches("md5abc", "s3cret-pw").expect("ascii"));
        assert!(scram_verifier("pässword").is_err());
    }

    #[test]
    fn psql_output_is_parsed() {
        let s =
            parse_state("r\0shop\0true\0SCRAM-SHA-256$x\nr\0postgres\0true\0\nd\0shop\0shop\0\n");
        assert_eq!(s.roles["shop"].verifier.as_deref(), Some("SCRAM-SHA-256$x"));
        assert!(s.roles["postgres"].verifier.is_none());
        assert_eq!(s.databases["shop"], "shop");
    }
}
