//! restic's REST backend protocol (v1 and v2 listings) over one plain restic repository per
//! client under the storage directory, append-only.
//!
//! Owns request routing, authentication, the append-only rules and the on-disk layout (the
//! same as restic's local backend, so `restic -r STORAGE/CLIENT` works on this server). It must
//! not delete anything but lock files: forgetting and pruning are retention's job (mod.rs).

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

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

/// The receiver's shared state.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Who may send; replaced as a whole when the definition is reloaded.
    clients: RwLock<Clients>,
    /// Clients that just stored a snapshot (retention is due).
    stored: mpsc::UnboundedSender<String>,
    temp: AtomicU64,
}

#[derive(Debug, Default)]
struct Clients {
    /// `Authorization` header value → client name.
    logins: Vec<(String, String)>,
    /// Held by retention while it runs on a client's repository; new locks wait for it, so a
    /// backup that starts meanwhile is delayed instead of failing on a locked repository.
    pruning: BTreeMap<String, Arc<Mutex<()>>>,
}

impl Store {
    /// Repositories under `root`; `passwords` by client name.
    pub fn new(
        root: PathBuf,
        passwords: &BTreeMap<String, String>,
        stored: mpsc::UnboundedSender<String>,
    ) -> Store {
        let store = Store {
            root,
            clients: RwLock::default(),
            stored,
            temp: AtomicU64::new(0),
        };
        store.set_clients(passwords);
        store
    }

    /// From now on, exactly these clients (by name, with their passwords) may send. A client
    /// that stays keeps its retention lock, which a running retention pass may hold.
    pub fn set_clients(&self, passwords: &BTreeMap<String, String>) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        let pruning = passwords
            .keys()
            .map(|c| {
                let lock = clients.pruning.get(c).cloned().unwrap_or_default();
                (c.clone(), lock)
            })
            .collect();
        *clients = Clients {
            logins: passwords
                .iter()
                .map(|(c, p)| {
                    (
                        format!("Basic {}", b64.encode(format!("{c}:{p}"))),
                        c.clone(),
                    )
                })
                .collect(),
            pruning,
        };
    }

    /// The lock retention holds on `client`'s repository.
    pub fn pruning(&self, client: &str) -> Option<Arc<Mutex<()>>> {
        self.clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .pruning
            .get(client)
            .cloned()
    }

    /// The repository directory of `client`.
    pub fn repo(&self, client: &str) -> PathBuf {
        self.root.join(client)
    }

    fn client_of(&self, headers: &HeaderMap) -> Option<String> {
        let given = headers.get(header::AUTHORIZATION)?.as_bytes();
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        // Every login is compared, so timing does not tell which client name exists.
        let mut found = None;
        for (want, client) in &clients.logins {
            if same(want.as_bytes(), given) {
                found = Some(client.clone());
            }
        }
        found
    }

    fn path_of(&self, client: &str, target: &Target) -> PathBuf {
        let repo = self.repo(client);
        match target {
            Target::Repo => repo,
            Target::Config => repo.join("config"),
            Target::List(k) => repo.join(k.dir()),
            Target::Object(Kind::Data, name) => repo.join("data").join(&name[..2]).join(name),
            Target::Object(k, name) => repo.join(k.dir()).join(name),
        }
    }
}

/// Remove what uploads cut off by a crash or restart left behind (dot-files, never listed) in
/// the repository `repo`; returns how many.
pub fn sweep(repo: &Path) -> usize {
    let mut dirs: Vec<PathBuf> = ["keys", "locks", "snapshots", "index"]
        .iter()
        .map(|d| repo.join(d))
        .collect();
    dirs.extend((0..=255u8).map(|b| repo.join("data").join(format!("{b:02x}"))));
    let mut removed = 0;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.')
                && std::fs::remove_file(e.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
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

/// Every request: authenticate, route, apply the append-only rules, act.
pub async fn handle(State(store): State<Arc<Store>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(client) = store.client_of(&parts.headers) else {
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
    let path = store.path_of(&client, &target);
    let reply = match action {
        Action::Create => create_repo(&path).await,
        Action::Read => read(&path, &parts.method, &parts.headers).await,
        Action::List => list(&path, &target, &parts.headers).await,
        Action::Save => save(&store, &client, &target, &path, body).await,
        Action::Unlock => tokio::fs::remove_file(&path)
            .await
            .map(|()| StatusCode::OK.into_response())
            .map_err(|e| io_error(&path, &e)),
    };
    reply.unwrap_or_else(|(code, msg)| (code, format!("{msg}\n")).into_response())
}

async fn create_repo(repo: &Path) -> Reply {
    let mut dirs = vec![repo.to_path_buf()];
    dirs.extend(["keys", "locks", "snapshots", "index", "data"].map(|d| repo.join(d)));
    dirs.extend((0..=255u8).map(|b| repo.join("data").join(format!("{b:02x}"))));
    for d in dirs {
        tokio::fs::create_dir_all(&d)
            .await
            .map_err(|e| io_error(&d, &e))?;
    }
    Ok(StatusCode::OK.into_response())
}

/// `bytes=START-END` / `bytes=START-` of a file of `size` bytes → (offset, length).
pub fn byte_range(spec: &str, size: u64) -> Option<(u64, u64)> {
    let (start, end) = spec.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = match end.trim() {
        "" => size.checked_sub(1)?,
        e => e.parse::<u64>().ok()?.min(size.checked_sub(1)?),
    };
    (start <= end).then(|| (start, end - start + 1))
}

async fn read(path: &Path, method: &Method, headers: &HeaderMap) -> Reply {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_error(path, &e))?;
    let size = file.metadata().await.map_err(|e| io_error(path, &e))?.len();
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(spec) => Some(byte_range(spec, size).ok_or((
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("range {spec:?} of a {size}-byte file"),
        ))?),
    };
    let (offset, len) = range.unwrap_or((0, size));
    let mut builder = Response::builder().header(header::CONTENT_LENGTH, len);
    if range.is_some() {
        builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {offset}-{}/{size}", offset + len - 1),
        );
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        // Packs are at most tens of MiB and restic mostly asks for ranges: read into memory.
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| io_error(path, &e))?;
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.take(len)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| io_error(path, &e))?;
        Body::from(buf)
    };
    builder
        .body(body)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn list(dir: &Path, target: &Target, headers: &HeaderMap) -> Reply {
    let dirs = if *target == Target::List(Kind::Data) {
        let mut subs = Vec::new();
        let mut rd = tokio::fs::read_dir(dir)
            .await
            .map_err(|e| io_error(dir, &e))?;
        while let Some(e) = rd.next_entry().await.map_err(|e| io_error(dir, &e))? {
            subs.push(e.path());
        }
        subs
    } else {
        vec![dir.to_path_buf()]
    };
    let mut files: Vec<(String, u64)> = Vec::new();
    for d in dirs {
        let mut rd = tokio::fs::read_dir(&d)
            .await
            .map_err(|e| io_error(&d, &e))?;
        while let Some(e) = rd.next_entry().await.map_err(|e| io_error(&d, &e))? {
            let name = e.file_name().to_string_lossy().into_owned();
            // Uploads in progress are dot-files.
            if name.starts_with('.') {
                continue;
            }
            let meta = e
                .metadata()
                .await
                .map_err(|err| io_error(&e.path(), &err))?;
            if meta.is_file() {
                files.push((name, meta.len()));
            }
        }
    }
    files.sort();
    let v2 = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/vnd.x.restic.rest.v2"));
    let (kind, json) = if v2 {
        let items: Vec<_> = files
            .iter()
            .map(|(n, s)| serde_json::json!({ "name": n, "size": s }))
            .collect();
        ("application/vnd.x.restic.rest.v2", serde_json::json!(items))
    } else {
        let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
        ("application/vnd.x.restic.rest.v1", serde_json::json!(names))
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(kind))],
        json.to_string(),
    )
        .into_response())
}

async fn save(store: &Store, client: &str, target: &Target, path: &Path, body: Body) -> Reply {
    let refused = || {
        tracing::warn!(
            "refused overwriting {} for {client} (append-only)",
            path.display()
        );
        (
            StatusCode::FORBIDDEN,
            "append-only: this file exists and is never overwritten".to_string(),
        )
    };
    if tokio::fs::try_exists(path).await.unwrap_or(false) {
        return Err(refused());
    }
    if matches!(target, Target::Object(Kind::Locks, _)) {
        // A backup starting while retention runs waits here instead of failing.
        if let Some(p) = store.pruning(client) {
            drop(p.lock().await);
        }
    }
    let dir = path.parent().ok_or((
        StatusCode::INTERNAL_SERVER_ERROR,
        "no directory".to_string(),
    ))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.{}.{}",
        std::process::id(),
        store.temp.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_new(&temp, path, body, matches!(target, Target::Object(..))).await;
    let _ = tokio::fs::remove_file(&temp).await;
    match result {
        Ok(()) => {}
        Err(Saved::Exists) => return Err(refused()),
        Err(Saved::Mismatch) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "the content does not match its name (SHA-256)".into(),
            ))
        }
        Err(Saved::Io(e)) => return Err(io_error(path, &e)),
        Err(Saved::Body(e)) => return Err((StatusCode::BAD_REQUEST, format!("upload: {e}"))),
    }
    if matches!(target, Target::Object(Kind::Snapshots, _)) {
        let _ = store.stored.send(client.to_string());
    }
    Ok(StatusCode::OK.into_response())
}

enum Saved {
    Exists,
    Mismatch,
    Io(std::io::Error),
    Body(axum::Error),
}

impl From<std::io::Error> for Saved {
    fn from(e: std::io::Error) -> Saved {
        Saved::Io(e)
    }
}

/// Stream `body` into `temp`, check its hash (when `verify`), make it durable and link it to
/// `path` — a link fails if `path` exists, so nothing is ever replaced, even by a race.
async fn write_new(temp: &Path, path: &Path, body: Body, verify: bool) -> Result<(), Saved> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .await?;
    let mut hash = Sha256::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Saved::Body)?;
        hash.update(&chunk);
        file.write_all(&chunk).await?;
    }
    if verify
        && path.file_name().map(|n| n.to_string_lossy().into_owned())
            != Some(hex::encode(hash.finalize()))
    {
        return Err(Saved::Mismatch);
    }
    file.sync_all().await?;
    drop(file);
    match tokio::fs::hard_link(temp, path).await {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Saved::Exists),
        r => r?,
    }
    if let Some(dir) = path.parent() {
        tokio::fs::File::open(dir).await?.sync_all().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn paths_are_routed_inside_one_client() {
        assert_eq!(route("/web1/"), Some(("web1", Target::Repo)));
        assert_eq!(route("/web1/config"), Some(("web1", Target::Config)));
        assert_eq!(
            route("/web1/data/"),
            Some(("web1", Target::List(Kind::Data)))
        );
        assert_eq!(
            route("/web1/keys"),
            Some(("web1", Target::List(Kind::Keys)))
        );
        assert_eq!(
            route(&format!("/web1/snapshots/{ID}")),
            Some(("web1", Target::Object(Kind::Snapshots, ID.into())))
        );
        for bad in [
            "/",
            "/../x/config",
            "/web1/data/../../etc",
            "/web1/data/abc",
            "/web1/other/",
            "//config",
        ] {
            assert_eq!(route(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_locks_can_be_deleted() {
        let obj = |k| Target::Object(k, ID.into());
        for k in [Kind::Data, Kind::Keys, Kind::Snapshots, Kind::Index] {
            assert_eq!(
                decide(&Method::DELETE, &obj(k), false).map_err(|e| e.0),
                Err(StatusCode::FORBIDDEN)
            );
        }
        assert_eq!(
            decide(&Method::DELETE, &Target::Config, false).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            decide(&Method::DELETE, &Target::Repo, false).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            decide(&Method::DELETE, &obj(Kind::Locks), false),
            Ok(Action::Unlock)
        );
        assert_eq!(
            decide(&Method::POST, &obj(Kind::Data), false),
            Ok(Action::Save)
        );
        assert_eq!(
            decide(&Method::POST, &Target::Repo, true),
            Ok(Action::Create)
        );
        assert!(decide(&Method::PUT, &obj(Kind::Data), false).is_err());
    }

    #[test]
    fn a_reload_replaces_the_clients_and_keeps_the_locks_of_those_that_stay() {
        let login = |c: &str, p: &str| {
            let mut h = HeaderMap::new();
            let v = base64::engine::general_purpose::STANDARD.encode(format!("{c}:{p}"));
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Basic {v}")).expect("header"),
            );
            h
        };
        let pw = |list: &[(&str, &str)]| -> BTreeMap<String, String> {
            list.iter()
                .map(|(c, p)| (c.to_string(), p.to_string()))
                .collect()
        };
        let (tx, _rx) = mpsc::unbounded_channel();
        let store = Store::new("/nowhere".into(), &pw(&[("web1", "a"), ("web2", "b")]), tx);
        let held = store.pruning("web1").expect("web1's lock");
        store.set_clients(&pw(&[("web1", "new"), ("web3", "c")]));
        assert_eq!(store.client_of(&login("web1", "a")), None, "old password");
        assert_eq!(
            store.client_of(&login("web1", "new")).as_deref(),
            Some("web1")
        );
        assert_eq!(store.client_of(&login("web2", "b")), None, "removed client");
        assert_eq!(
            store.client_of(&login("web3", "c")).as_deref(),
            Some("web3")
        );
        assert!(store.pruning("web2").is_none());
        assert!(Arc::ptr_eq(&held, &store.pruning("web1").expect("kept")));
    }

    #[test]
    fn cut_off_uploads_are_swept_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path();
        std::fs::create_dir_all(repo.join("data/ab")).expect("mkdir");
        std::fs::create_dir_all(repo.join("snapshots")).expect("mkdir");
        std::fs::write(repo.join(format!("data/ab/{ID}")), b"pack").expect("write");
        std::fs::write(repo.join(format!("data/ab/.{ID}.7.0")), b"pa").expect("write");
        std::fs::write(repo.join(format!("snapshots/.{ID}.7.1")), b"s").expect("write");
        std::fs::write(repo.join("config"), b"c").expect("write");
        assert_eq!(sweep(repo), 2);
        assert!(repo.join(format!("data/ab/{ID}")).exists());
        assert!(repo.join("config").exists());
        assert_eq!(sweep(repo), 0);
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 10)));
        assert_eq!(byte_range("bytes=90-200", 100), Some((90, 10)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=5-4", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }
}
