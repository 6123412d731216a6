//! restic's REST backend protocol (v1 and v2 listings) over one plain restic repository per
//! client under the storage directory, append-only.
//!
//! Owns request routing, authentication, the append-only rules and the on-disk layout (the
//! same as restic's local backend, so `restic -r STORAGE/CLIENT` works on this server). It must
//! not delete anything but lock files: forgetting and pruning are retention's job (mod.rs).
//! The file work itself — reading, listing, storing, removing — is
//! [`crate::host::repository`]'s, given names this module has checked.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::tls::Peer;

mod read;
mod save;
mod store;

pub use read::byte_range;
use read::{list, read};
use save::save;
pub use store::{failure_delay, Limits, Reserve, Store, Usage};

/// The kinds of files in a restic repository, besides `config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Pack files (`data/xx/NAME`).
    Data,
    /// Key files.
    Keys,
    /// Lock files: the only thing a client may delete.
    Locks,
    /// Snapshot files.
    Snapshots,
    /// Index files.
    Index,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "data" => Kind::Data,
            "keys" => Kind::Keys,
            "locks" => Kind::Locks,
            "snapshots" => Kind::Snapshots,
            "index" => Kind::Index,
            _ => return None,
        })
    }

    fn dir(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::Keys => "keys",
            Kind::Locks => "locks",
            Kind::Snapshots => "snapshots",
            Kind::Index => "index",
        }
    }
}

/// What a request path names, inside the client's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The repository itself (`/CLIENT/`).
    Repo,
    /// `/CLIENT/config`.
    Config,
    /// `/CLIENT/KIND/`.
    List(Kind),
    /// `/CLIENT/KIND/NAME` (NAME: 64 hex digits, the SHA-256 of the content).
    Object(Kind, String),
}

/// `/CLIENT/…` → the client and the target; `None` for anything else.
pub fn route(path: &str) -> Option<(&str, Target)> {
    let rest = path.strip_prefix('/')?;
    let (client, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if !crate::definition::is_client_name(client) {
        return None;
    }
    let target = match rest.split_once('/') {
        None if rest.is_empty() => Target::Repo,
        None if rest == "config" => Target::Config,
        None => Target::List(Kind::parse(rest)?),
        Some((kind, "")) => Target::List(Kind::parse(kind)?),
        Some((kind, name)) => {
            let is_id = name.len() == 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !is_id {
                return None;
            }
            Target::Object(Kind::parse(kind)?, name.to_string())
        }
    };
    Some((client, target))
}

/// What a request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the repository's directories (`POST /CLIENT/?create=true`).
    Create,
    /// Send a file (GET) or its size (HEAD).
    Read,
    /// List a kind of files.
    List,
    /// Store a new file; an existing one is never replaced.
    Save,
    /// Remove a lock file.
    Unlock,
}

/// The append-only rules: which method on which target is allowed, or why not.
///
/// # Errors
/// The status and the reason to answer with.
pub fn decide(
    method: &Method,
    target: &Target,
    create: bool,
) -> Result<Action, (StatusCode, &'static str)> {
    const NO_DELETE: &str =
        "append-only: a client cannot delete backups; retention runs on the receiver";
    match (method, target) {
        (&Method::POST, Target::Repo) if create => Ok(Action::Create),
        (&Method::GET | &Method::HEAD, Target::Config | Target::Object(..)) => Ok(Action::Read),
        (&Method::GET, Target::List(_)) => Ok(Action::List),
        (&Method::POST, Target::Config | Target::Object(..)) => Ok(Action::Save),
        (&Method::DELETE, Target::Object(Kind::Locks, _)) => Ok(Action::Unlock),
        (&Method::DELETE, _) => Err((StatusCode::FORBIDDEN, NO_DELETE)),
        _ => Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "not part of restic's REST protocol",
        )),
    }
}

/// Compare without leaking where two secrets differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type Reply = Result<Response, (StatusCode, String)>;

fn io_error(what: &Path, e: &std::io::Error) -> (StatusCode, String) {
    if e.kind() == std::io::ErrorKind::NotFound {
        (
            StatusCode::NOT_FOUND,
            format!("{} not found", what.display()),
        )
    } else {
        tracing::error!("{}: {e}", what.display());
        (StatusCode::INTERNAL_SERVER_ERROR, "storage error".into())
    }
}

/// The user name a basic `Authorization` header gives (for the log; never the password).
fn login_name(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8_lossy(&decoded);
    let user = text.split_once(':').map_or(&*text, |(u, _)| u);
    Some(user.chars().take(64).collect())
}

/// Every request: authenticate, route, apply the append-only rules, act.
pub async fn handle(
    State(store): State<Arc<Store>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let Some(client) = store.client_of(&parts.headers) else {
        let (count, gate, delay) = store.failed_login(peer.ip());
        let who = match login_name(&parts.headers) {
            Some(name) => format!("as {name:?}"),
            None => "without credentials".to_string(),
        };
        tracing::warn!(
            "failed login from {peer} {who} ({} {}; failure {count} from {}, answered in {} ms)",
            parts.method,
            parts.uri.path(),
            peer.ip(),
            delay.as_millis()
        );
        // One failed attempt of a peer at a time, each held longer than the one before.
        let _in_line = gate.lock().await;
        tokio::time::sleep(delay).await;
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"strackt receiver\"")],
            "unknown client or wrong password\n",
        )
            .into_response();
    };
    let Some((repo_of, target)) = route(parts.uri.path()) else {
        return (StatusCode::NOT_FOUND, "no such path\n").into_response();
    };
    if repo_of != client {
        tracing::warn!(
            "refused {} {}: client {client} may only reach /{client}/",
            parts.method,
            parts.uri.path()
        );
        return (
            StatusCode::FORBIDDEN,
            format!("client {client} may only reach /{client}/\n"),
        )
            .into_response();
    }
    let create = parts.uri.query() == Some("create=true");
    let action = match decide(&parts.method, &target, create) {
        Ok(a) => a,
        Err((code, why)) => {
            tracing::warn!(
                "refused {} {} from {client}: {why}",
                parts.method,
                parts.uri.path()
            );
            return (code, format!("{why}\n")).into_response();
        }
    };
    let rel = store.path_of(&client, &target);
    let reply = match action {
        Action::Create => create_repo(&store, &client).await,
        Action::Read => read(&store, &rel, &parts.method, &parts.headers).await,
        Action::List => list(&store, &rel, &target, &parts.headers).await,
        Action::Save => save(&store, &client, &target, &rel, &parts.headers, body).await,
        Action::Unlock => unlock(&store, &client, &rel).await,
    };
    reply.unwrap_or_else(|(code, msg)| (code, format!("{msg}\n")).into_response())
}

async fn unlock(store: &Store, client: &str, rel: &Path) -> Reply {
    let size = store
        .repository
        .remove(rel)
        .await
        .map_err(|e| io_error(&store.repository.path(rel), &e))?;
    let usage = store.usage(client);
    // The update always gives `Some`, so `fetch_update` never fails.
    let _ = usage
        .stored
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
            Some(s.saturating_sub(size))
        });
    Ok(StatusCode::OK.into_response())
}

async fn create_repo(store: &Store, client: &str) -> Reply {
    store
        .repository
        .create_dirs(&store::layout(client))
        .await
        .map_err(|f| io_error(&f.path, &f.error))?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests;
