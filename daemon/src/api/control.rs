//! The control socket: one JSON request line in, one JSON response line out.
//!
//! It gives full control of the server, so it answers root only: besides its 0700 directory
//! and 0600 mode, the peer's uid is checked on every connection (`SO_PEERCRED`) and any other
//! user is refused with a clear answer. A request is one line of at most [`MAX_REQUEST`] bytes
//! that must arrive within [`READ_TIMEOUT`].
//!
//! The answer is one line too: the data, or why there is none ([`AnswerError`], its message
//! being the line's `error`). The reconcile loop's errors arrive typed and classed
//! ([`RequestFailed`]); their words are the driver's, and this module must not change them.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::{ControlRequest, ControlResponse};
use crate::backup::Backups;
use crate::deploy::Deployer;
use crate::state::{StateError, StateHandle};
use crate::status::{Request, RequestFailed, Status};

/// Bind the socket (root-only, mode 0600, see [`crate::host::private::bind_private_socket`])
/// and serve it forever.
///
/// # Errors
/// When the socket cannot be bound, or its directory is another user's or writable by others.
pub fn serve(
    path: &Path,
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<Status>,
    state: StateHandle,
    deployer: std::sync::Arc<Deployer>,
    backups: std::sync::Arc<Backups>,
    root: std::path::PathBuf,
) -> std::io::Result<()> {
    let listener = crate::host::private::bind_private_socket(path)?;
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (requests, status, state, deployer, backups, root) = (
                requests.clone(),
                status.clone(),
                state.clone(),
                deployer.clone(),
                backups.clone(),
                root.clone(),
            );
            tokio::spawn(async move {
                let apps = Apps {
                    deployer,
                    backups,
                    root,
                };
                if let Err(e) = handle(stream, requests, status, state, apps).await {
                    tracing::debug!("control connection: {e}");
                }
            });
        }
    });
    Ok(())
}

/// The longest request line: a definition (at most 1 MiB, see `definition::prescan`) sent by
/// `strackt edit` or `plan --definition`, JSON-escaped; every other request is a few hundred
/// bytes.
pub const MAX_REQUEST: u64 = 8 * 1024 * 1024;
/// The request line must arrive within this.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a peer with uid `peer` may use the socket of a daemon running as `own`: root, or
/// the daemon's own user (a daemon run by hand by someone else, e.g. in tests).
fn allowed(peer: u32, own: u32) -> bool {
    peer == 0 || peer == own
}

/// A request the control socket could not take.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The peer's credentials could not be read.
    #[error("cannot tell who is connecting (SO_PEERCRED): {0}")]
    PeerCred(std::io::Error),
    /// The peer is not root (nor the daemon's own user).
    #[error("permission denied: the strackt control socket answers root only (you are uid {0}); run the command with sudo")]
    Refused(u32),
    /// No complete line within the limit.
    #[error("bad request: no complete request line within {}", humantime::format_duration(*.0))]
    Slow(Duration),
    /// The line could not be read.
    #[error("bad request: {0}")]
    Read(std::io::Error),
    /// The line is longer than [`MAX_REQUEST`].
    #[error("bad request: longer than {MAX_REQUEST} bytes")]
    TooLong,
    /// The line is not a request.
    #[error("bad request: {0}")]
    Parse(serde_json::Error),
}

impl RequestError {
    /// Whether the same request may be taken on another try: a connection that broke or
    /// stalled may, a refusal or a malformed request never will.
    pub fn is_transient(&self) -> bool {
        match self {
            RequestError::PeerCred(_) | RequestError::Slow(_) | RequestError::Read(_) => true,
            RequestError::Refused(_) | RequestError::TooLong | RequestError::Parse(_) => false,
        }
    }
}

/// Why a request got no data: the `error` of its answer, which is this error's message.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The request itself could not be taken.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The reconcile loop did not do what was asked (its error, as the driver classed it).
    #[error(transparent)]
    Loop(#[from] RequestFailed),
    /// The loop is gone: the daemon is stopping.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// Reading the state database beside the loop.
    #[error(transparent)]
    State(#[from] StateError),
    /// What the services beside the loop (deploys, backups, rebuilds, generation diffs)
    /// answer: their own errors, carried as they are.
    #[error(transparent)]
    Service(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The data could not be put in JSON.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
}

impl AnswerError {
    /// A service's error (its own type, or the words it still answers in).
    fn service(e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        AnswerError::Service(e.into())
    }

    /// Whether the same request may succeed later without anyone acting: as the request, the
    /// loop or the state database class it; a stopping daemon is back after its restart. The
    /// services' errors are taken as permanent: not all of them tell yet.
    pub fn is_transient(&self) -> bool {
        match self {
            AnswerError::Request(e) => e.is_transient(),
            AnswerError::Loop(e) => e.is_transient(),
            AnswerError::ShuttingDown => true,
            AnswerError::State(e) => crate::ops::state_is_transient(e),
            AnswerError::Service(_) | AnswerError::Encode(_) => false,
        }
    }
}

/// The answer line for a request's outcome: its data, or its error's message.
pub(crate) fn response(outcome: Result<serde_json::Value, AnswerError>) -> ControlResponse {
    match outcome {
        Ok(data) => ControlResponse {
            ok: true,
            data,
            error: None,
        },
        Err(e) => refusal(&e),
    }
}

/// The answer line of a request that failed: its error's message, no data.
pub(crate) fn refusal(e: &AnswerError) -> ControlResponse {
    ControlResponse {
        ok: false,
        data: serde_json::Value::Null,
        error: Some(e.to_string()),
    }
}

/// Read the request and check the peer's uid with `may`. A refused peer's request is read
/// (and ignored) too, so its client is not cut off while sending and sees the refusal.
async fn read_request(
    stream: &mut UnixStream,
    may: impl Fn(u32) -> bool,
) -> Result<ControlRequest, RequestError> {
    let cred = stream.peer_cred().map_err(RequestError::PeerCred)?;
    let request = read_line(&mut *stream, READ_TIMEOUT).await;
    if !may(cred.uid()) {
        tracing::warn!(
            "control socket: refused uid {} (pid {:?}): root only",
            cred.uid(),
            cred.pid()
        );
        return Err(RequestError::Refused(cred.uid()));
    }
    request
}

/// One request line: at most [`MAX_REQUEST`] bytes within `limit`.
async fn read_line(
    stream: impl AsyncRead + Unpin,
    limit: Duration,
) -> Result<ControlRequest, RequestError> {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.take(MAX_REQUEST + 1));
    match tokio::time::timeout(limit, reader.read_line(&mut line)).await {
        Err(_) => return Err(RequestError::Slow(limit)),
        Ok(Err(e)) => return Err(RequestError::Read(e)),
        Ok(Ok(_)) => {}
    }
    if line.len() as u64 > MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    serde_json::from_str::<ControlRequest>(&line).map_err(RequestError::Parse)
}

async fn handle(
    mut stream: UnixStream,
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<Status>,
    state: StateHandle,
    apps: Apps,
) -> std::io::Result<()> {
    let own = nix::unistd::geteuid().as_raw();
    let outcome = match read_request(&mut stream, |uid| allowed(uid, own)).await {
        Ok(req) => answer(req, &requests, &status, &state, &apps).await,
        Err(e) => Err(e.into()),
    };
    let (_, mut write) = stream.into_split();
    let response = response(outcome);
    let mut bytes = serde_json::to_vec(&response).unwrap_or_default();
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

/// The services that run apart from the reconcile loop, and the state root the generations'
/// directories are read from.
struct Apps {
    deployer: std::sync::Arc<Deployer>,
    backups: std::sync::Arc<Backups>,
    root: std::path::PathBuf,
}

impl Apps {
    /// `strackt diff`: read beside the reconcile loop (records and directories only), so a
    /// long pass does not hold it up.
    async fn diff(
        &self,
        state: &StateHandle,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<crate::generation::diff::DiffView, AnswerError> {
        let store = crate::generation::Store::open(&self.root).map_err(AnswerError::service)?;
        state
            .call(move |s| Ok(crate::generation::diff::compare(&store, s, from, to)))
            .await?
            .map_err(AnswerError::service)
    }
}

/// Hand a request to the reconcile loop and wait for its reply (the loop gone: the daemon is
/// stopping).
pub(crate) async fn ask<T>(
    requests: &mpsc::Sender<Request>,
    make: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Result<T, AnswerError> {
    let (tx, rx) = oneshot::channel();
    requests
        .send(make(tx))
        .await
        .map_err(|_| AnswerError::ShuttingDown)?;
    rx.await.map_err(|_| AnswerError::ShuttingDown)
}

fn json<T: serde::Serialize>(v: T) -> Result<serde_json::Value, AnswerError> {
    Ok(serde_json::to_value(v)?)
}

async fn answer(
    req: ControlRequest,
    requests: &mpsc::Sender<Request>,
    status: &watch::Receiver<Status>,
    state: &StateHandle,
    apps: &Apps,
) -> Result<serde_json::Value, AnswerError> {
    let operation = |id: i64| json(serde_json::json!({ "operation": id }));
    let (deployer, backups) = (&apps.deployer, &apps.backups);
    match req {
        // The services' errors are theirs, carried as they are.
        ControlRequest::BackupRun { app } => {
            let id = backups.start(&app, "cli").await;
            operation(id.map_err(AnswerError::service)?)
        }
        ControlRequest::BackupVerify { app } => {
            let id = backups.start_verify(&app, "cli").await;
            operation(id.map_err(AnswerError::service)?)
        }
        ControlRequest::BackupList { app, server } => json(
            backups
                .list(&app, server)
                .await
                .map_err(AnswerError::service)?,
        ),
        ControlRequest::Restore { app, run, latest } => {
            let id = backups.start_restore(&app, &run, latest).await;
            operation(id.map_err(AnswerError::service)?)
        }
        ControlRequest::Rebuild(r) => {
            let id = crate::rebuild::start(backups, requests, r).await;
            operation(id.map_err(AnswerError::service)?)
        }
        ControlRequest::Deploy { app, branch } => operation(
            deployer
                .deploy(app, branch)
                .await
                .map_err(AnswerError::service)?,
        ),
        ControlRequest::Releases { app } => {
            json(deployer.releases(app).await.map_err(AnswerError::service)?)
        }
        ControlRequest::RollbackRelease {
            app,
            id,
            with_database,
        } => {
            let done = deployer.rollback_release(app, id, with_database).await;
            json(done.map_err(AnswerError::service)?)
        }
        ControlRequest::Confirm => {
            let generation = ask(requests, Request::Confirm).await??;
            Ok(serde_json::json!({ "confirmed": generation }))
        }
        ControlRequest::Apply { confirm_within } => {
            json(ask(requests, |tx| Request::Apply(confirm_within, tx)).await?)
        }
        ControlRequest::Rollback { id } => {
            json(ask(requests, |tx| Request::Rollback(id, tx)).await??)
        }
        ControlRequest::Plan { definition } => {
            json(ask(requests, |tx| Request::Plan(definition, tx)).await??)
        }
        ControlRequest::Save {
            definition,
            base_sha256,
        } => json(
            ask(requests, |reply| Request::Save {
                definition,
                base_sha256,
                reply,
            })
            .await??,
        ),
        ControlRequest::Diff { from, to } => json(apps.diff(state, from, to).await?),
        ControlRequest::Updates => json(ask(requests, Request::Updates).await??),
        ControlRequest::Upgrade { security, packages } => json(
            ask(requests, |reply| Request::Upgrade {
                security,
                packages,
                reply,
            })
            .await??,
        ),
        ControlRequest::Hold { change } => {
            json(ask(requests, |tx| Request::Hold(change, tx)).await??)
        }
        ControlRequest::Status => json(status.borrow().clone()),
        ControlRequest::Generations => json(state.call(|s| s.generations()).await?),
        ControlRequest::Output { operation, after } => json(deployer.output(operation, after)),
        ControlRequest::History { operation } => {
            json(state.call(move |s| s.operations(100, operation)).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn an_answer_says_what_failed_and_its_class_follows_the_failure() {
        let busy = AnswerError::Loop(RequestFailed::new(
            std::io::Error::other("database is locked"),
            true,
        ));
        assert!(busy.is_transient());
        assert_eq!(refusal(&busy).error.as_deref(), Some("database is locked"));
        let refused = AnswerError::Loop(RequestFailed::new(
            std::io::Error::other("nothing is waiting for confirmation"),
            false,
        ));
        assert!(!refused.is_transient());
        assert!(AnswerError::ShuttingDown.is_transient());
        let line = response(Err(AnswerError::ShuttingDown));
        assert!(!line.ok && line.data.is_null());
        assert_eq!(line.error.as_deref(), Some("the daemon is shutting down"));
        let service = AnswerError::service("no app \"x\" in the definition".to_string());
        assert!(!service.is_transient());
        assert_eq!(service.to_string(), "no app \"x\" in the definition");
        assert!(!AnswerError::Request(RequestError::TooLong).is_transient());
        let ok = response(Ok(serde_json::json!({ "confirmed": 2 })));
        assert!(ok.ok && ok.error.is_none());
        assert_eq!(ok.data["confirmed"], 2);
    }

    #[test]
    fn only_root_and_the_daemons_own_user_are_allowed() {
        assert!(allowed(0, 0));
        assert!(!allowed(1000, 0));
        assert!(allowed(1000, 1000) && allowed(0, 1000));
        assert!(!allowed(1001, 1000));
    }

    #[test]
    fn another_user_is_refused_whatever_it_asks() {
        rt().block_on(async {
            let (mut server, mut client) = UnixStream::pair().expect("pair");
            client
                .write_all(b"{\"cmd\":\"status\"}\n")
                .await
                .expect("send");
            let me = nix::unistd::geteuid().as_raw();
            let ok = read_request(&mut server, |uid| allowed(uid, me)).await;
            assert!(matches!(ok, Ok(ControlRequest::Status)), "{ok:?}");
            // The peer (this process) as if it were another user than root.
            let (mut server, mut client) = UnixStream::pair().expect("pair");
            client
                .write_all(b"{\"cmd\":\"apply\"}\n")
                .await
                .expect("send");
            let err = read_request(&mut server, |uid| uid != me).await;
            let err = err.expect_err("refused");
            assert!(matches!(err, RequestError::Refused(uid) if uid == me), "{err}");
            assert!(!err.is_transient());
            assert_eq!(
                err.to_string(),
                format!("permission denied: the strackt control socket answers root only (you are uid {me}); run the command with sudo")
            );
        });
    }

    #[test]
    fn long_or_slow_requests_are_cut_off() {
        rt().block_on(async {
            let long = vec![b' '; MAX_REQUEST as usize + 10];
            let err = read_line(&long[..], READ_TIMEOUT)
                .await
                .expect_err("too long");
            assert_eq!(
                err.to_string(),
                format!("bad request: longer than {MAX_REQUEST} bytes")
            );
            assert!(!err.is_transient());

            let (server, _client) = UnixStream::pair().expect("pair");
            let err = read_line(server, Duration::from_millis(50))
                .await
                .expect_err("timed out");
            assert_eq!(
                err.to_string(),
                "bad request: no complete request line within 50ms"
            );
            assert!(err.is_transient());
        });
    }
}
