//! Reading: files (with ranges) and listings, streamed.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use super::*;

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

pub(super) async fn read(store: &Store, rel: &Path, method: &Method, headers: &HeaderMap) -> Reply {
    let path = &store.repository.path(rel);
    let (mut file, size) = store
        .repository
        .open_read(rel)
        .await
        .map_err(|e| io_error(path, &e))?;
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
pub(super) const READ_CHUNK: usize = 64 << 10;

/// The bytes of `file` as a stream of chunks; a read error ends the body early (the client
/// sees a short response, which restic retries).
pub(super) fn stream_file<R: AsyncRead + Unpin + Send + 'static>(
    file: R,
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

pub(super) async fn list(store: &Store, rel: &Path, target: &Target, headers: &HeaderMap) -> Reply {
    let files = store
        .repository
        .list(rel, *target == Target::List(Kind::Data))
        .await
        .map_err(|f| io_error(&f.path, &f.error))?;
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
