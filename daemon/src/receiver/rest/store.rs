//! The storage side: per-client repositories, quotas, the disk reserve, failed logins.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::host::repository::Repository;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use super::*;

/// The receiver's shared state.
#[derive(Debug)]
pub struct Store {
    /// The storage directory's file work.
    pub(super) repository: Repository,
    /// Who may send; replaced as a whole when the definition is reloaded.
    clients: RwLock<Clients>,
    /// Clients that just stored a snapshot (retention is due).
    pub(super) stored: mpsc::UnboundedSender<String>,
    /// Bytes in each client's repository (and on their way in).
    pub(super) usage: std::sync::Mutex<BTreeMap<String, Arc<Usage>>>,
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
    pub(super) stored: AtomicU64,
    pub(super) incoming: AtomicU64,
}

impl Usage {
    pub(super) fn total(&self) -> u64 {
        self.stored
            .load(Ordering::Relaxed)
            .saturating_add(self.incoming.load(Ordering::Relaxed))
    }
}

/// Failed logins from one address.
#[derive(Debug)]
struct Failures {
    pub(super) count: u32,
    pub(super) last: Instant,
    /// Held while a failed attempt waits out its delay: attempts of one peer wait in line, so
    /// parallel connections do not multiply its guesses.
    pub(super) gate: Arc<Mutex<()>>,
}

/// A peer's failures are forgotten this long after its last one.
const FAILURES_FORGOTTEN: Duration = Duration::from_secs(15 * 60);

/// The longest a failed login is held before its answer.
pub(super) const MAX_FAILURE_DELAY: Duration = Duration::from_secs(30);

/// How long the `count`th failure in a row (from 1) waits: 0.5 s, doubling, at most 30 s.
pub fn failure_delay(count: u32) -> Duration {
    Duration::from_millis(250)
        .saturating_mul(2u32.saturating_pow(count.min(16)))
        .min(MAX_FAILURE_DELAY)
}

#[derive(Debug, Default)]
struct Clients {
    /// `Authorization` header value → client name.
    pub(super) logins: Vec<(String, String)>,
    pub(super) limits: Limits,
    /// Held by retention while it runs on a client's repository; new locks wait for it, so a
    /// backup that starts meanwhile is delayed instead of failing on a locked repository.
    pub(super) pruning: BTreeMap<String, Arc<Mutex<()>>>,
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
            repository: Repository::new(root),
            clients: RwLock::default(),
            stored,
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
        let stored = self.repository.size(Path::new(client));
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

    pub(super) fn limits(&self) -> Limits {
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
        self.repository.path(Path::new(client))
    }

    /// The storage directory's file work.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// Whether `client`'s repository has been initialized (has its `config`).
    pub async fn has_config(&self, client: &str) -> bool {
        self.repository
            .exists(&self.path_of(client, &Target::Config))
            .await
    }

    /// Remove what uploads cut off by a crash or restart left behind (dot-files, never listed)
    /// in `client`'s repository; returns how many. Blocking.
    pub fn sweep(&self, client: &str) -> usize {
        let mut dirs = layout(client);
        // The repository itself and `data/` hold no uploads.
        dirs.retain(|d| d.as_path() != Path::new(client) && !d.ends_with("data"));
        self.repository.sweep(&dirs)
    }

    pub(super) fn client_of(&self, headers: &HeaderMap) -> Option<String> {
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
    pub(super) fn failed_login(&self, peer: IpAddr) -> (u32, Arc<Mutex<()>>, Duration) {
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

    /// Where `target` of `client` is, relative to the storage directory.
    pub(super) fn path_of(&self, client: &str, target: &Target) -> PathBuf {
        let repo = PathBuf::from(client);
        match target {
            Target::Repo => repo,
            Target::Config => repo.join("config"),
            Target::List(k) => repo.join(k.dir()),
            Target::Object(Kind::Data, name) => repo.join("data").join(&name[..2]).join(name),
            Target::Object(k, name) => repo.join(k.dir()).join(name),
        }
    }
}

/// The directories of `client`'s repository, relative to the storage directory: the
/// repository itself, one per kind, and `data/00` … `data/ff` (restic's local layout).
pub(super) fn layout(client: &str) -> Vec<PathBuf> {
    let repo = PathBuf::from(client);
    let mut dirs = vec![repo.clone()];
    dirs.extend(["keys", "locks", "snapshots", "index", "data"].map(|d| repo.join(d)));
    dirs.extend((0..=255u8).map(|b| repo.join("data").join(format!("{b:02x}"))));
    dirs
}
