//! restic's REST backend protocol (v1 and v2 listings) over one plain restic repository per
//! client under the storage directory, append-only.
//!
//! Owns request routing, authentication, the append-only rules and the on-disk layout (the
//! same as restic's local backend, so `restic -r STORAGE/CLIENT` works on this server). It must
//! not delete anything but lock files: forgetting and pruning are retention's job (mod.rs).

use std::collections::{BTreeMap, HashMap};
use std::io::SeekFrom;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use super::tls::Peer;
use crate::backup::restic::bytes;

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
    /// Bytes in each client's repository (and on their way in).
    usage: std::sync::Mutex<BTreeMap<String, Arc<Usage>>>,
    /// Failed logins by peer address, to slow guessing down.
    failures: std::sync::Mutex<HashMap<IpAddr, Failures>>,
}

/// How much space the clients may take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes a client's repository may hold, by client (absent: no quota).
    pub quotas: BTreeMap<String, u64>,
    /// What is always left free on the storage's filesystem.
    pub reserve: Reserve,
}

/// Free space the receiver never fills (`receiver.reserve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// A number of bytes.
    Bytes(u64),
    /// A percentage of the filesystem's size.
    Percent(u8),
}

impl Default for Reserve {
    fn default() -> Reserve {
        Reserve::Percent(5)
    }
}

impl Reserve {
    /// The bytes kept free on a filesystem of `total` bytes.
    pub fn of(self, total: u64) -> u64 {
        match self {
            Reserve::Bytes(b) => b,
            Reserve::Percent(p) => total / 100 * u64::from(p),
        }
    }
}

/// A client's repository size: what is stored, and what uploads in flight have taken so far.
#[derive(Debug, Default)]
pub struct Usage {
    stored: AtomicU64,
    incoming: AtomicU64,
}

impl Usage {
    fn total(&self) -> u64 {
        self.stored
            .load(Ordering::Relaxed)
            .saturating_add(self.incoming.load(Ordering::Relaxed))
    }
}

/// Lock files may exceed a client's quota by this much: a client over its quota can still
/// lock its repository to read and restore it.
const LOCK_SLACK: u64 = 16 << 20;
/// The storage's free space is checked again after this much of an upload.
const SPACE_CHECK_EVERY: u64 = 8 << 20;

/// Failed logins from one address.
#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
    /// Held while a failed attempt waits out its delay: attempts of one peer wait in line, so
    /// parallel connections do not multiply its guesses.
    gate: Arc<Mutex<()>>,
}

/// A peer's failures are forgotten this long after its last one.
const FAILURES_FORGOTTEN: Duration = Duration::from_secs(15 * 60);
/// The longest a failed login is held before its answer.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(30);

/// How long the `count`th failure in a row (from 1) waits: 0.5 s, doubling, at most 30 s.
pub fn failure_delay(count: u32) -> Duration {
    Duration::from_millis(250)
        .saturating_mul(2u32.saturating_pow(count.min(16)))
        .min(MAX_FAILURE_DELAY)
}

#[derive(Debug, Default)]
struct Clients {
    /// `Authorization` header value → client name.
    logins: Vec<(String, String)>,
    limits: Limits,
    /// Held by retention while it runs on a client's repository; new locks wait for it, so a
    /// backup that starts meanwhile is delayed instead of failing on a locked repository.
    pruning: BTreeMap<String, Arc<Mutex<()>>>,
}

impl Store {
    /// Repositories under `root`; `passwords` by client name.
    pub fn new(
        root: PathBuf,
        passwords: &BTreeMap<String, String>,
        limits: Limits,
        stored: mpsc::UnboundedSender<String>,
    ) -> Store {
        let store = Store {
            root,
            clients: RwLock::default(),
            stored,
            temp: AtomicU64::new(0),
            usage: std::sync::Mutex::default(),
            failures: std::sync::Mutex::default(),
        };
        store.set_clients(passwords, limits);
        store
    }

    /// How much `client`'s repository holds (its counter, shared by its uploads).
    pub fn usage(&self, client: &str) -> Arc<Usage> {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(client.to_string())
            .or_default()
            .clone()
    }

    /// Count the bytes in `client`'s repository again (at start, and after retention pruned
    /// it); returns them. Blocking: walks the repository.
    pub fn measure(&self, client: &str) -> u64 {
        let stored = size_of_tree(&self.repo(client));
        self.usage(client).stored.store(stored, Ordering::Relaxed);
        stored
    }

    /// From now on, exactly these clients (by name, with their passwords) may send, within
    /// `limits`. A client that stays keeps its retention lock, which a running retention pass
    /// may hold.
    pub fn set_clients(&self, passwords: &BTreeMap<String, String>, limits: Limits) {
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
            limits,
            pruning,
        };
    }

    fn limits(&self) -> Limits {
        self.clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .limits
            .clone()
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

    /// A failed login from `peer`: counted, and the gate and delay its answer waits for.
    fn failed_login(&self, peer: IpAddr) -> (u32, Arc<Mutex<()>>, Duration) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded memory: peers quiet for a while are forgotten.
        if failures.len() > 10_000 {
            failures.retain(|_, f| now.duration_since(f.last) < FAILURES_FORGOTTEN);
        }
        let f = failures.entry(peer).or_insert_with(|| Failures {
            count: 0,
            last: now,
            gate: Arc::default(),
        });
        if now.duration_since(f.last) >= FAILURES_FORGOTTEN {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        (f.count, f.gate.clone(), failure_delay(f.count))
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
    let path = store.path_of(&client, &target);
    let reply = match action {
        Action::Create => create_repo(&path).await,
        Action::Read => read(&path, &parts.method, &parts.headers).await,
        Action::List => list(&path, &target, &parts.headers).await,
        Action::Save => save(&store, &client, &target, &path, &parts.headers, body).await,
        Action::Unlock => unlock(&store, &client, &path).await,
    };
    reply.unwrap_or_else(|(code, msg)| (code, format!("{msg}\n")).into_response())
}

async fn unlock(store: &Store, client: &str, path: &Path) -> Reply {
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| io_error(path, &e))?
        .len();
    tokio::fs::remove_file(path)
        .await
        .map_err(|e| io_error(path, &e))?;
    let usage = store.usage(client);
    let _ = usage
        .stored
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
            Some(s.saturating_sub(size))
        });
    Ok(StatusCode::OK.into_response())
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
        // Streamed from the file in chunks: a whole pack (or a thousand concurrent range
        // requests) never sits in memory.
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| io_error(path, &e))?;
        Body::from_stream(stream_file(file.take(len), path.to_path_buf()))
    };
    builder
        .body(body)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// What a chunked GET reads at a time.
const READ_CHUNK: usize = 64 << 10;

/// The bytes of `file` as a stream of chunks; a read error ends the body early (the client
/// sees a short response, which restic retries).
fn stream_file(
    file: tokio::io::Take<tokio::fs::File>,
    path: PathBuf,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> {
    futures_util::stream::unfold(Some(file), move |file| {
        let path = path.clone();
        async move {
            let mut file = file?;
            let mut buf = vec![0u8; READ_CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(axum::body::Bytes::from(buf)), Some(file)))
                }
                Err(e) => {
                    tracing::error!("reading {}: {e}", path.display());
                    Some((Err(e), None))
                }
            }
        }
    })
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

/// What an upload may still take: the client's quota and the storage's reserve, checked up
/// front with the declared length and again while the bytes arrive.
struct Budget {
    usage: Arc<Usage>,
    client: String,
    /// Most bytes the repository may hold, with this upload.
    limit: Option<u64>,
    /// The storage directory and its reserve, unless this upload is exempt (locks).
    space: Option<(PathBuf, Reserve)>,
    /// Bytes of this upload counted in `usage.incoming`.
    taken: u64,
    unchecked: u64,
}

impl Budget {
    /// Count `n` more bytes of the upload.
    fn take(&mut self, n: u64) -> Result<(), Saved> {
        self.usage.incoming.fetch_add(n, Ordering::Relaxed);
        self.taken += n;
        self.unchecked += n;
        if let Some(limit) = self.limit {
            if self.usage.total() > limit {
                return Err(Saved::OverQuota(self.over_quota(limit)));
            }
        }
        if self.unchecked >= SPACE_CHECK_EVERY {
            self.unchecked = 0;
            self.check_space(0)?;
        }
        Ok(())
    }

    fn over_quota(&self, limit: u64) -> String {
        format!(
            "client {} is over its quota: {} stored and arriving, {} allowed (receiver quota)",
            self.client,
            bytes(self.usage.total()),
            bytes(limit)
        )
    }

    /// Whether `more` bytes still fit above the reserve.
    fn check_space(&self, more: u64) -> Result<(), Saved> {
        let Some((dir, reserve)) = &self.space else {
            return Ok(());
        };
        let Ok(fs) = nix::sys::statvfs::statvfs(dir.as_path()) else {
            // Not knowing is no reason to refuse; a full disk still fails the write itself.
            return Ok(());
        };
        let block = fs.fragment_size();
        let free = fs.blocks_available().saturating_mul(block);
        let keep = reserve.of(fs.blocks().saturating_mul(block));
        if free < keep.saturating_add(more) {
            return Err(Saved::NoSpace(format!(
                "the receiver's storage is full: {} free, {} kept free (receiver.reserve)",
                bytes(free),
                bytes(keep)
            )));
        }
        Ok(())
    }

    /// The upload is stored: its bytes move from arriving to stored.
    fn commit(mut self) {
        self.usage.stored.fetch_add(self.taken, Ordering::Relaxed);
        self.usage.incoming.fetch_sub(self.taken, Ordering::Relaxed);
        self.taken = 0;
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        // An upload that failed gives its bytes back.
        self.usage.incoming.fetch_sub(self.taken, Ordering::Relaxed);
    }
}

async fn save(
    store: &Store,
    client: &str,
    target: &Target,
    path: &Path,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
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
    let is_lock = matches!(target, Target::Object(Kind::Locks, _));
    let limits = store.limits();
    let quota = limits.quotas.get(client).copied();
    let mut budget = Budget {
        usage: store.usage(client),
        client: client.to_string(),
        limit: quota.map(|q| {
            if is_lock {
                q.saturating_add(LOCK_SLACK)
            } else {
                q
            }
        }),
        space: (!is_lock).then(|| (store.root.clone(), limits.reserve)),
        taken: 0,
        unchecked: 0,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refused before a byte is read when the declared length does not fit.
    let early =
        budget
            .check_space(declared.unwrap_or(0))
            .and_then(|()| match (budget.limit, declared) {
                (Some(limit), Some(n)) if budget.usage.total().saturating_add(n) > limit => {
                    Err(Saved::OverQuota(budget.over_quota(limit)))
                }
                _ => Ok(()),
            });
    if let Err(e) = early {
        return Err(saved_error(client, path, e));
    }
    if is_lock {
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
    let result = write_new(
        &temp,
        path,
        body,
        matches!(target, Target::Object(..)),
        &mut budget,
    )
    .await;
    let _ = tokio::fs::remove_file(&temp).await;
    match result {
        Ok(()) => budget.commit(),
        Err(Saved::Exists) => return Err(refused()),
        Err(e) => return Err(saved_error(client, path, e)),
    }
    if matches!(target, Target::Object(Kind::Snapshots, _)) {
        let _ = store.stored.send(client.to_string());
    }
    Ok(StatusCode::OK.into_response())
}

/// The answer to an upload that was not stored.
fn saved_error(client: &str, path: &Path, e: Saved) -> (StatusCode, String) {
    match e {
        Saved::Exists => (
            StatusCode::FORBIDDEN,
            "append-only: this file exists and is never overwritten".to_string(),
        ),
        Saved::Mismatch => (
            StatusCode::BAD_REQUEST,
            "the content does not match its name (SHA-256)".into(),
        ),
        Saved::OverQuota(why) => {
            tracing::warn!("refused {} for {client}: {why}", path.display());
            (StatusCode::PAYLOAD_TOO_LARGE, why)
        }
        Saved::NoSpace(why) => {
            tracing::error!("refused {} for {client}: {why}", path.display());
            (StatusCode::INSUFFICIENT_STORAGE, why)
        }
        Saved::Io(e) => io_error(path, &e),
        Saved::Body(e) => (StatusCode::BAD_REQUEST, format!("upload: {e}")),
    }
}

enum Saved {
    Exists,
    Mismatch,
    OverQuota(String),
    NoSpace(String),
    Io(std::io::Error),
    Body(axum::Error),
}

impl From<std::io::Error> for Saved {
    fn from(e: std::io::Error) -> Saved {
        Saved::Io(e)
    }
}

/// Stream `body` into `temp` within `budget`, check its hash (when `verify`), make it durable
/// and link it to `path` — a link fails if `path` exists, so nothing is ever replaced, even by
/// a race.
async fn write_new(
    temp: &Path,
    path: &Path,
    body: Body,
    verify: bool,
    budget: &mut Budget,
) -> Result<(), Saved> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .await?;
    let mut hash = Sha256::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Saved::Body)?;
        budget.take(chunk.len() as u64)?;
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

/// The bytes of the files under `dir` (not following links); 0 when it does not exist.
fn size_of_tree(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => {
                    total = total.saturating_add(e.metadata().map_or(0, |m| m.len()));
                }
                _ => {}
            }
        }
    }
    total
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
        let store = Store::new(
            "/nowhere".into(),
            &pw(&[("web1", "a"), ("web2", "b")]),
            Limits::default(),
            tx,
        );
        let held = store.pruning("web1").expect("web1's lock");
        store.set_clients(&pw(&[("web1", "new"), ("web3", "c")]), Limits::default());
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
    fn failed_logins_wait_longer_each_time_up_to_a_limit() {
        assert_eq!(failure_delay(1), Duration::from_millis(500));
        assert_eq!(failure_delay(2), Duration::from_secs(1));
        assert_eq!(failure_delay(3), Duration::from_secs(2));
        assert_eq!(failure_delay(100), MAX_FAILURE_DELAY);
        let (tx, _rx) = mpsc::unbounded_channel();
        let store = Store::new("/nowhere".into(), &BTreeMap::new(), Limits::default(), tx);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(store.failed_login(a).0, 1);
        assert_eq!(store.failed_login(a).0, 2);
        assert_eq!(store.failed_login(b).0, 1, "counted per peer");
        assert!(Arc::ptr_eq(
            &store.failed_login(a).1,
            &store.failed_login(a).1
        ));
    }

    #[test]
    fn reserve_and_sizes() {
        assert_eq!(Reserve::Percent(5).of(1000), 50);
        assert_eq!(Reserve::Bytes(7).of(1000), 7);
        assert_eq!(Reserve::default(), Reserve::Percent(5));
    }

    #[tokio::test]
    async fn uploads_within_the_quota_are_counted_and_beyond_it_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, _rx) = mpsc::unbounded_channel();
        let limits = Limits {
            quotas: BTreeMap::from([("web1".to_string(), 100)]),
            reserve: Reserve::Bytes(0),
        };
        let store = Store::new(
            dir.path().to_path_buf(),
            &BTreeMap::from([("web1".to_string(), "pw".to_string())]),
            limits,
            tx,
        );
        create_repo(&store.repo("web1")).await.expect("repo");
        let upload = |content: &'static [u8]| {
            let name = hex::encode(Sha256::digest(content));
            let target = Target::Object(Kind::Data, name);
            let path = store.path_of("web1", &target);
            (target, path, Body::from(content))
        };
        let (target, path, body) = upload(&[1u8; 60]);
        let reply = save(&store, "web1", &target, &path, &HeaderMap::new(), body).await;
        assert!(reply.is_ok(), "{:?}", reply.err());
        assert_eq!(store.usage("web1").total(), 60);
        // No declared length: refused while streaming, and nothing is left behind.
        let (target, path, body) = upload(&[2u8; 60]);
        let reply = save(&store, "web1", &target, &path, &HeaderMap::new(), body).await;
        assert_eq!(
            reply.err().map(|e| e.0),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        assert!(!path.exists());
        assert_eq!(store.usage("web1").total(), 60);
        // A declared length that does not fit: refused up front.
        let (target, path, body) = upload(&[3u8; 50]);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("50"));
        let reply = save(&store, "web1", &target, &path, &headers, body).await;
        assert_eq!(
            reply.err().map(|e| e.0),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        // A lock still fits (a client over its quota can still restore).
        let (_, _, body) = upload(&[4u8; 50]);
        let lock = Target::Object(Kind::Locks, hex::encode(Sha256::digest([4u8; 50])));
        let lock_path = store.path_of("web1", &lock);
        let reply = save(&store, "web1", &lock, &lock_path, &HeaderMap::new(), body).await;
        assert!(reply.is_ok(), "{:?}", reply.err());
        assert_eq!(store.measure("web1"), 110);
        // The reserve: a filesystem never has u64::MAX bytes free.
        store.set_clients(
            &BTreeMap::from([("web1".to_string(), "pw".to_string())]),
            Limits {
                quotas: BTreeMap::new(),
                reserve: Reserve::Bytes(u64::MAX / 2),
            },
        );
        let (target, path, body) = upload(&[5u8; 10]);
        let reply = save(&store, "web1", &target, &path, &HeaderMap::new(), body).await;
        assert_eq!(
            reply.err().map(|e| e.0),
            Some(StatusCode::INSUFFICIENT_STORAGE)
        );
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn reads_are_streamed_in_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pack");
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).expect("write");
        let mut file = tokio::fs::File::open(&path).await.expect("open");
        file.seek(SeekFrom::Start(10)).await.expect("seek");
        let chunks: Vec<axum::body::Bytes> = stream_file(file.take(150_000), path)
            .map(|c| c.expect("chunk"))
            .collect()
            .await;
        assert!(chunks.len() >= 3, "{} chunk(s)", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= READ_CHUNK));
        let joined: Vec<u8> = chunks.concat();
        assert_eq!(joined, content[10..150_010]);
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
