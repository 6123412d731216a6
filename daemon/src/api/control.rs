//! The control socket: one JSON request line in, one JSON response line out.
//!
//! It gives full control of the server, so it answers root only: besides its 0700 directory
//! and 0600 mode, the peer's uid is checked on every connection (`SO_PEERCRED`) and any other
//! user is refused with a clear answer. A request is one line of at most [`MAX_REQUEST`] bytes
//! that must arrive within [`READ_TIMEOUT`].

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::{ControlRequest, ControlResponse};
use crate::backup::Backups;
use crate::deploy::Deployer;
use crate::state::StateHandle;
use crate::status::{Request, Status};

/// Bind the socket (root-only, mode 0600) and serve it forever.
///
/// # Errors
/// When the socket cannot be bound.
pub fn serve(
    path: &Path,
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<Status>,
    state: StateHandle,
    deployer: std::sync::Arc<Deployer>,
    backups: std::sync::Arc<Backups>,
    root: std::path::PathBuf,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
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
    let response = match read_request(&mut stream, |uid| allowed(uid, own)).await {
        Ok(req) => answer(req, &requests, &status, &state, &apps).await,
        Err(e) => Err(e.to_string()),
    };
    let (_, mut write) = stream.into_split();
    let response = match response {
        Ok(data) => ControlResponse {
            ok: true,
            data,
            error: None,
        },
        Err(e) => ControlResponse {
            ok: false,
            data: serde_json::Value::Null,
            error: Some(e),
        },
    };
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
    ) -> Result<crate::generation::diff::DiffView, String> {
        let store = crate::generation::Store::open(&self.root).map_err(|e| e.to_string())?;
        state
            .call(move |s| {
                Ok(
                    crate::generation::diff::compare(&store, s, from, to)
                        .map_err(|e| e.to_string()),
                )
            })
            .await
            .map_err(|e| e.to_string())?
    }
}

/// Hand a request to the reconcile loop and wait for its answer.
async fn ask<T>(
    requests: &mpsc::Sender<Request>,
    make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Request,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    requests
        .send(make(tx))
        .await
        .map_err(|_| "the daemon is shutting down")?;
    rx.await
        .map_err(|_| "the daemon is shutting down".to_string())?
}

fn json<T: serde::Serialize>(v: T) -> Result<serde_json::Value, String> {
    serde_json::to_value(v).map_err(|e| e.to_string())
}

async fn answer(
    req: ControlRequest,
    requests: &mpsc::Sender<Request>,
    status: &watch::Receiver<Status>,
    state: &StateHandle,
    apps: &Apps,
) -> Result<serde_json::Value, String> {
    let operation = |id: i64| json(serde_json::json!({ "operation": id }));
    let (deployer, backups) = (&apps.deployer, &apps.backups);
    match req {
        ControlRequest::BackupRun { app } => operation(backups.start(&app, "cli").await?),
        ControlRequest::BackupVerify { app } => operation(backups.start_verify(&app, "cli").await?),
        ControlRequest::BackupList { app, server } => json(backups.list(&app, server).await?),
        ControlRequest::Restore { app, run, latest } => {
            operation(backups.start_restore(&app, &run, latest).await?)
        }
        ControlRequest::Rebuild(r) => operation(crate::rebuild::start(backups, requests, r).await?),
        ControlRequest::Deploy { app, branch } => operation(deployer.deploy(app, branch).await?),
        ControlRequest::Releases { app } => json(deployer.releases(app).await?),
        ControlRequest::RollbackRelease {
            app,
            id,
            with_database,
        } => json(deployer.rollback_release(app, id, with_database).await?),
        ControlRequest::Confirm => ask(requests, Request::Confirm).await,
        ControlRequest::Apply { confirm_within } => {
            json(ask(requests, |tx| Request::Apply(confirm_within, tx)).await?)
        }
        ControlRequest::Rollback { id } => {
            json(ask(requests, |tx| Request::Rollback(id, tx)).await?)
        }
        ControlRequest::Plan { definition } => {
            json(ask(requests, |tx| Request::Plan(definition, tx)).await?)
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
            .await?,
        ),
        ControlRequest::Diff { from, to } => json(apps.diff(state, from, to).await?),
        ControlRequest::Updates => json(ask(requests, Request::Updates).await?),
        ControlRequest::Upgrade { security, packages } => json(
            ask(requests, |reply| Request::Upgrade {
                security,
                packages,
                reply,
            })
            .await?,
        ),
        ControlRequest::Hold { change } => ask(requests, |tx| Request::Hold(change, tx)).await,
        ControlRequest::Status => json(status.borrow().clone()),
        ControlRequest::Generations => json(
            state
                .call(|s| s.generations())
                .await
                .map_err(|e| e.to_string())?,
        ),
        ControlRequest::Output { operation, after } => json(deployer.output(operation, after)),
        ControlRequest::History { operation } => json(
            state
                .call(move |s| s.operations(100, operation))
                .await
                .map_err(|e| e.to_string())?,
        ),
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
