//! Writing: new files only, within the client's quota and the disk reserve.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backup::restic::bytes;
use crate::host::repository::{Repository, Upload};
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::*;

/// Lock files may exceed a client's quota by this much: a client over its quota can still
/// lock its repository to read and restore it.
const LOCK_SLACK: u64 = 16 << 20;

/// The storage's free space is checked again after this much of an upload.
const SPACE_CHECK_EVERY: u64 = 8 << 20;

/// What an upload may still take: the client's quota and the storage's reserve, checked up
/// front with the declared length and again while the bytes arrive.
struct Budget<'a> {
    usage: Arc<Usage>,
    client: String,
    /// Most bytes the repository may hold, with this upload.
    limit: Option<u64>,
    /// The storage and its reserve, unless this upload is exempt (locks).
    space: Option<(&'a Repository, Reserve)>,
    /// Bytes of this upload counted in `usage.incoming`.
    taken: u64,
    unchecked: u64,
}

impl Budget<'_> {
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
        let Some((repository, reserve)) = &self.space else {
            return Ok(());
        };
        let Ok((free, total)) = repository.space() else {
            // Not knowing is no reason to refuse; a full disk still fails the write itself.
            return Ok(());
        };
        let keep = reserve.of(total);
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

impl Drop for Budget<'_> {
    fn drop(&mut self) {
        // An upload that failed gives its bytes back.
        self.usage.incoming.fetch_sub(self.taken, Ordering::Relaxed);
    }
}

pub(super) async fn save(
    store: &Store,
    client: &str,
    target: &Target,
    rel: &Path,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    let path = &store.repository.path(rel);
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
    if store.repository.exists(rel).await {
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
        space: (!is_lock).then_some((&store.repository, limits.reserve)),
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
    let result = match store.repository.upload(rel).await {
        Ok(mut upload) => {
            let verify = matches!(target, Target::Object(..));
            match write_new(&mut upload, path, body, verify, &mut budget).await {
                // Renamed into place, or `AlreadyExists`: nothing is ever replaced, even by a
                // race.
                Ok(()) => upload.store().await.map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => Saved::Exists,
                    _ => Saved::Io(e),
                }),
                Err(e) => {
                    upload.discard().await;
                    Err(e)
                }
            }
        }
        Err(e) => Err(Saved::Io(e)),
    };
    match result {
        Ok(()) => budget.commit(),
        Err(Saved::Exists) => return Err(refused()),
        Err(e) => return Err(saved_error(client, path, e)),
    }
    if matches!(target, Target::Object(Kind::Snapshots, _)) {
        // Fails only when the retention task ended (the receiver is stopping).
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

/// Stream `body` into `upload` within `budget`, and check its hash against the name in
/// `path` (when `verify`).
async fn write_new(
    upload: &mut Upload,
    path: &Path,
    body: Body,
    verify: bool,
    budget: &mut Budget<'_>,
) -> Result<(), Saved> {
    let mut hash = Sha256::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Saved::Body)?;
        budget.take(chunk.len() as u64)?;
        hash.update(&chunk);
        upload.write(&chunk).await?;
    }
    if verify
        && path.file_name().map(|n| n.to_string_lossy().into_owned())
            != Some(hex::encode(hash.finalize()))
    {
        return Err(Saved::Mismatch);
    }
    Ok(())
}
