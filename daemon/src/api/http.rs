//! Read-only HTTP: `/status`, `/generations`, `/operations`, `/operations/{id}`, `/metrics`,
//! `/healthz`, and the dashboard (`/`, `/ui/operations/{id}`: see `api::dashboard`). Only GET routes exist; changing the server goes through the definition or the
//! root-only control socket.
//!
//! Any local user can reach the port, so the endpoint is built not to be starved or to starve
//! the daemon:
//! - it runs on its own thread with its own small runtime (and its own read-only SQLite
//!   connection), so a flood of connections or requests never delays a pass, a deploy or the
//!   watchdog ping on the daemon's runtime;
//! - at most [`MAX_CONNECTIONS`] connections are open; at the cap a new connection closes the
//!   oldest idle one, or is closed at once itself when every connection has a request running
//!   (nothing waits in a queue);
//! - a connection with no request running for [`IDLE_TIMEOUT`] is closed (that covers one that
//!   never sends, or sends its request head slowly), and a request head must arrive within
//!   [`HEADER_TIMEOUT`]; a request is answered within [`HANDLER_TIMEOUT`] or gets 503;
//! - step output is not served: `/operations` lists steps without their `output` (it may hold
//!   what a build printed); `strackt history --operation ID` shows it to root, and `strackt
//!   deploy` / `strackt history --operation ID --follow` show it line by line as it is printed.
//!   A running step shows how long it has run (`duration_ms`) and how much it printed
//!   (`detail`: `output: N lines, M bytes`), never what.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify};

use crate::metrics::{Metrics, CONTENT_TYPE};
use crate::ops::Operation;
use crate::state::{StateError, StateHandle};
use crate::status::Status;

/// Connections open at once, at most.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection without a request running for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request head must be read within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A request's answer must be ready within this.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often idle connections are looked for.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// The kernel's queue of connections not yet accepted.
const BACKLOG: u32 = 1024;

#[derive(Clone)]
struct Ctx {
    status: watch::Receiver<Status>,
    state: StateHandle,
    metrics: Arc<Metrics>,
}

/// Errors map to HTTP statuses exhaustively.
enum ApiError {
    NotFound(String),
    State(StateError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, msg) = match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::State(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        (code, Json(serde_json::json!({ "error": msg }))).into_response()
    }
}

/// Start the endpoint on `addr` on a thread of its own; returns once the address is bound.
/// `state` should be a handle of its own ([`crate::state::State::open_reader`]).
///
/// # Errors
/// When the address cannot be bound or the thread not started.
pub async fn serve(
    addr: SocketAddr,
    status: watch::Receiver<Status>,
    state: StateHandle,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let ctx = Ctx {
        status,
        state,
        metrics,
    };
    let (bound_tx, bound_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("strackt-http".into())
        .spawn(move || {
            // Its blocking pool only runs this endpoint's SQLite reads: two threads are plenty.
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(2)
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match bind(addr) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                let _ = bound_tx.send(Ok(()));
                run(listener, router(ctx)).await;
            });
        })?;
    bound_rx
        .await
        .map_err(|_| std::io::Error::other("the HTTP thread ended before binding"))?
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

fn router(ctx: Ctx) -> Router {
    Router::new()
        .route(
            "/status",
            get(|State(c): State<Ctx>| async move { Json(c.status.borrow().clone()) }),
        )
        .route("/generations", get(generations))
        .route("/operations", get(operations))
        .route("/operations/{id}", get(operation))
        .route(
            "/metrics",
            get(|State(c): State<Ctx>| async move {
                ([("content-type", CONTENT_TYPE)], c.metrics.render())
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        // The dashboard: the same data as HTML (no step output either).
        .route(
            "/",
            get(|State(c): State<Ctx>| async move {
                let status = c.status.borrow().clone();
                super::dashboard::index(status, &c.state).await
            }),
        )
        .route(
            "/ui/operations/{id}",
            get(|State(c): State<Ctx>, Path(id): Path<i64>| async move {
                super::dashboard::operation(&c.state, id).await
            }),
        )
        .with_state(ctx)
}

/// One open connection.
struct Slot {
    /// A request is running.
    busy: bool,
    /// Since when it has had no request running.
    idle_since: Instant,
    /// Told to close.
    close: Arc<Notify>,
}

/// The open connections, by the order they were accepted.
#[derive(Default)]
struct Slots {
    next: u64,
    open: BTreeMap<u64, Slot>,
}

impl Slots {
    /// Make room for a new connection: its id and close signal, or `None` when it must be
    /// closed at once. At the cap the oldest idle connection is closed instead.
    fn admit(&mut self, now: Instant, cap: usize) -> Option<(u64, Arc<Notify>)> {
        if self.open.len() >= cap {
            let oldest_idle = self.open.iter().find(|(_, s)| !s.busy).map(|(id, _)| *id)?;
            if let Some(s) = self.open.remove(&oldest_idle) {
                s.close.notify_one();
            }
        }
        let id = self.next;
        self.next += 1;
        let close = Arc::new(Notify::new());
        self.open.insert(
            id,
            Slot {
                busy: false,
                idle_since: now,
                close: close.clone(),
            },
        );
        Some((id, close))
    }

    /// Close every connection idle for longer than `limit`; how many.
    fn reap(&mut self, now: Instant, limit: Duration) -> usize {
        let stale: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, s)| !s.busy && now.duration_since(s.idle_since) > limit)
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            if let Some(s) = self.open.remove(id) {
                s.close.notify_one();
            }
        }
        stale.len()
    }

    fn set_busy(&mut self, id: u64, busy: bool, now: Instant) {
        if let Some(s) = self.open.get_mut(&id) {
            s.busy = busy;
            s.idle_since = now;
        }
    }
}

type Shared = Arc<Mutex<Slots>>;

fn lock(slots: &Shared) -> std::sync::MutexGuard<'_, Slots> {
    slots.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accept forever.
async fn run(listener: TcpListener, app: Router) {
    let slots: Shared = Arc::default();
    let live = Arc::new(AtomicUsize::new(0));
    let reaper = slots.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(REAP_EVERY).await;
            lock(&reaper).reap(Instant::now(), IDLE_TIMEOUT);
        }
    });
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("HTTP endpoint: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admitted = lock(&slots).admit(Instant::now(), MAX_CONNECTIONS);
        let Some((id, close)) = admitted else {
            // Every connection has a request running: this one is closed at once.
            drop(stream);
            continue;
        };
        live.fetch_add(1, Ordering::SeqCst);
        let guard = Live(live.clone());
        tokio::spawn(connection(
            stream,
            id,
            close,
            slots.clone(),
            app.clone(),
            guard,
        ));
        // A connection told to close is gone at its task's next turn: let it go before
        // accepting more, so the descriptors in use never exceed the cap by more than one.
        for _ in 0..1000 {
            if live.load(Ordering::SeqCst) <= MAX_CONNECTIONS {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Counts a connection's task until it ends.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Marks its connection idle again when the request ends (or is dropped).
struct Busy {
    slots: Shared,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        lock(&self.slots).set_busy(self.id, false, Instant::now());
    }
}

async fn connection(
    stream: TcpStream,
    id: u64,
    close: Arc<Notify>,
    slots: Shared,
    app: Router,
    _live: Live,
) {
    let _ = stream.set_nodelay(true);
    let tracked = slots.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (slots, mut app) = (tracked.clone(), app.clone());
        async move {
            lock(&slots).set_busy(id, true, Instant::now());
            let _busy = Busy { slots, id };
            let call = tower_service::Service::call(&mut app, req.map(Body::new));
            let response = match tokio::time::timeout(HANDLER_TIMEOUT, call).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "timed out\n").into_response(),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        r = conn => if let Err(e) = r { tracing::debug!("HTTP connection: {e}") },
        () = close.notified() => {}
    }
    lock(&slots).open.remove(&id);
}

/// An operation as HTTP shows it: without step output (the dashboard too).
pub(super) fn without_output(mut op: Operation) -> Operation {
    for s in &mut op.steps {
        s.output = None;
    }
    op
}

async fn generations(State(c): State<Ctx>) -> Result<impl IntoResponse, ApiError> {
    let rows = c
        .state
        .call(|s| s.generations())
        .await
        .map_err(ApiError::State)?;
    Ok(Json(rows))
}

async fn operations(State(c): State<Ctx>) -> Result<impl IntoResponse, ApiError> {
    let ops = c
        .state
        .call(|s| s.operations(100, None))
        .await
        .map_err(ApiError::State)?;
    Ok(Json(
        ops.into_iter().map(without_output).collect::<Vec<_>>(),
    ))
}

async fn operation(
    State(c): State<Ctx>,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let mut ops = c
        .state
        .call(move |s| s.operations(1, Some(id)))
        .await
        .map_err(ApiError::State)?;
    ops.pop()
        .map(|op| Json(without_output(op)))
        .ok_or_else(|| ApiError::NotFound(format!("no operation {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let t0 = Instant::now();
        let mut s = Slots::default();
        let (a, close_a) = s.admit(t0, 2).expect("a");
        let (b, _) = s.admit(t0, 2).expect("b");
        s.set_busy(a, true, t0);
        let (c, _) = s.admit(t0, 2).expect("c replaces b, the oldest idle");
        assert_eq!(s.open.keys().copied().collect::<Vec<_>>(), [a, c]);
        assert!(!s.open.contains_key(&b));
        s.set_busy(c, true, t0);
        assert!(
            s.admit(t0, 2).is_none(),
            "every connection busy: the new one is refused"
        );
        s.set_busy(a, false, t0);
        assert!(s.admit(t0, 2).is_some(), "a is idle again");
        drop(close_a);
    }

    #[test]
    fn idle_connections_are_reaped_busy_ones_kept() {
        let t0 = Instant::now();
        let mut s = Slots::default();
        let (a, _) = s.admit(t0, 10).expect("a");
        let (b, close_b) = s.admit(t0, 10).expect("b");
        s.set_busy(a, true, t0);
        let later = t0 + IDLE_TIMEOUT + Duration::from_secs(1);
        assert_eq!(s.reap(later, IDLE_TIMEOUT), 1);
        assert!(s.open.contains_key(&a) && !s.open.contains_key(&b));
        // The connection's task sees the signal even though it was sent before it waited.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), close_b.notified())
                .await
                .expect("close signal kept");
        });
    }

    /// A real listener: an idle connection is closed after the idle limit, and a flood beyond
    /// the cap still lets a new client be answered.
    #[test]
    fn a_flood_of_idle_connections_does_not_keep_a_client_out() {
        use std::io::{Read, Write};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(async { bind("127.0.0.1:0".parse().expect("addr")) })
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route("/healthz", get(|| async { "ok\n" }));
        std::thread::spawn(move || rt.block_on(run(listener, app)));
        let flood: Vec<std::net::TcpStream> = (0..MAX_CONNECTIONS + 50)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        let started = Instant::now();
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut answer = String::new();
        c.read_to_string(&mut answer).expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(flood);
    }
}
