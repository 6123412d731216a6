//! Read-only HTTP: `/status`, `/generations`, `/operations`, `/operations/{id}`, `/metrics`,
//! `/healthz`. Only GET routes exist; changing the server goes through the definition or the
//! root-only control socket.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;

use crate::daemon::{Metrics, Status};
use crate::state::{StateError, StateHandle};

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

/// Bind `addr` and serve forever.
///
/// # Errors
/// When the address cannot be bound.
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
    let app = Router::new()
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
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    c.metrics.render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(ctx);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("HTTP server stopped: {e}");
        }
    });
    Ok(())
}

async fn generations(State(c): State<Ctx>) -> Result<impl IntoResponse, ApiError> {
    let rows = c
        .state
        .call(|s| s.generations())
        .await
        .map_err(ApiError::State)?;
    Ok(Json(
        rows.into_iter()
            .filter(|g| g.state != "deleted")
            .collect::<Vec<_>>(),
    ))
}

async fn operations(State(c): State<Ctx>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        c.state
            .call(|s| s.operations(100, None))
            .await
            .map_err(ApiError::State)?,
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
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no operation {id}")))
}
