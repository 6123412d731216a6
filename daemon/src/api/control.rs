//! The control socket: one JSON request line in, one JSON response line out.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::{ControlRequest, ControlResponse};
use crate::backup::Backups;
use crate::daemon::{Request, Status};
use crate::deploy::Deployer;
use crate::state::StateHandle;

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
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (requests, status, state, deployer, backups) = (
                requests.clone(),
                status.clone(),
                state.clone(),
                deployer.clone(),
                backups.clone(),
            );
            tokio::spawn(async move {
                let apps = Apps { deployer, backups };
                if let Err(e) = handle(stream, requests, status, state, apps).await {
                    tracing::debug!("control connection: {e}");
                }
            });
        }
    });
    Ok(())
}

async fn handle(
    stream: UnixStream,
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<Status>,
    state: StateHandle,
    apps: Apps,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let response = match serde_json::from_str::<ControlRequest>(&line) {
        Ok(req) => answer(req, &requests, &status, &state, &apps).await,
        Err(e) => Err(format!("bad request: {e}")),
    };
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

/// The services that run apart from the reconcile loop.
struct Apps {
    deployer: std::sync::Arc<Deployer>,
    backups: std::sync::Arc<Backups>,
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
        ControlRequest::Restore { app, run } => operation(backups.start_restore(&app, &run).await?),
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
        ControlRequest::Plan => json(ask(requests, Request::Plan).await?),
        ControlRequest::Hold { change } => ask(requests, |tx| Request::Hold(change, tx)).await,
        ControlRequest::Status => json(status.borrow().clone()),
        ControlRequest::Generations => json(
            state
                .call(|s| s.generations())
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|g| g.state != "deleted")
                .collect::<Vec<_>>(),
        ),
        ControlRequest::History { operation } => json(
            state
                .call(move |s| s.operations(100, operation))
                .await
                .map_err(|e| e.to_string())?,
        ),
    }
}
