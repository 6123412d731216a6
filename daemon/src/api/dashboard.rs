//! The dashboard: what `/status`, `/generations` and `/operations` serve, as HTML pages for a
//! person with a browser.
//!
//! - `/`: the server (current generation, health, next pass, hold, a switch waiting for
//!   confirmation), the operations running now with their steps, recent operations, releases per
//!   app, backups (schedule, next runs, last run), pending package updates, and generations.
//! - `/ui/operations/{id}`: one operation with its steps.
//!
//! The rules are those of the JSON it mirrors: read-only, on the same listener, and never a
//! step's output (it may hold what a build printed; root reads it with `strackt history
//! --operation ID`). Texts from the operations log were redacted before they were stored (see
//! `state::redact`); everything shown comes from the definition, the host and git, so every
//! value goes through maud, which escapes it. Pages work without JavaScript and run none: while
//! an operation runs they reload themselves every [`REFRESH_RUNNING`] seconds (a meta refresh),
//! and the content security policy forbids scripts altogether.
//!
//! This file reads what a page shows and answers with it; `pages.rs` is the markup.

mod pages;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::http::without_output;
use crate::ops::Operation;
use crate::state::{GenerationRow, ReleaseRow, StateHandle};
use crate::status::Status;
use pages::layout;
pub use pages::{operation_page, overview};

/// Operations listed on the overview (newest first).
const OPERATIONS: usize = 50;
/// Generations listed on the overview (newest first); `/generations` has them all.
const GENERATIONS: usize = 30;
/// Releases listed per app.
const RELEASES: usize = 10;
/// Seconds between reloads while an operation runs, and otherwise.
pub const REFRESH_RUNNING: u32 = 2;
const REFRESH_IDLE: u32 = 30;

/// No script, no frame, no request anywhere but this page's own links.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Everything the overview shows, read at once.
#[derive(Debug, Clone)]
pub struct Overview {
    /// This server's name.
    pub server: String,
    /// When the page was made.
    pub now: DateTime<Utc>,
    /// What `/status` serves.
    pub status: Status,
    /// The newest generations.
    pub generations: Vec<GenerationRow>,
    /// How many generations there are.
    pub generations_total: usize,
    /// The newest operations, without step output.
    pub operations: Vec<Operation>,
    /// Each app's newest releases.
    pub releases: BTreeMap<String, Vec<ReleaseRow>>,
    /// Each app's backup schedule, from the current generation's definition.
    pub schedules: BTreeMap<String, BackupSchedule>,
}

/// An app's backup schedule as written in the definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSchedule {
    /// `schedule:` (a preset or cron).
    pub schedule: String,
    /// `timezone:`.
    pub timezone: String,
    /// `verify:`, when verifies are scheduled.
    pub verify: Option<String>,
}

/// `GET /`: the overview.
pub async fn index(status: Status, state: &StateHandle) -> Response {
    let current = status.current_generation;
    let with_backups: Vec<String> = status.backups.keys().cloned().collect();
    let read = state
        .call(move |s| {
            let mut generations = s.generations()?;
            let generations_total = generations.len();
            generations.truncate(GENERATIONS);
            let operations = s.operations(OPERATIONS, None)?;
            // The apps are those of the definition the server runs (and any with backup state).
            let definition = match current {
                Some(id) => s.record(id)?.map(|r| r.definition),
                None => None,
            };
            let (apps, schedules) = definition.as_deref().map(of_definition).unwrap_or_default();
            let mut releases = BTreeMap::new();
            for app in apps.into_iter().chain(with_backups) {
                let mut rows = s.releases(&app)?;
                rows.truncate(RELEASES);
                releases.insert(app, rows);
            }
            Ok((
                generations,
                generations_total,
                operations,
                releases,
                schedules,
            ))
        })
        .await;
    match read {
        Ok((generations, generations_total, operations, releases, schedules)) => {
            let view = Overview {
                server: crate::backup::server_name(),
                now: Utc::now(),
                status,
                generations,
                generations_total,
                operations: operations.into_iter().map(without_output).collect(),
                releases,
                schedules,
            };
            page(StatusCode::OK, overview(&view))
        }
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /ui/operations/{id}`: one operation and its steps.
pub async fn operation(state: &StateHandle, id: i64) -> Response {
    match state.call(move |s| s.operations(1, Some(id))).await {
        Ok(mut ops) => match ops.pop() {
            Some(op) => page(
                StatusCode::OK,
                operation_page(
                    &crate::backup::server_name(),
                    &without_output(op),
                    Utc::now(),
                ),
            ),
            None => error_page(StatusCode::NOT_FOUND, &format!("no operation {id}")),
        },
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The apps of a definition's text, and their backup schedules (none when it does not parse).
fn of_definition(text: &str) -> (BTreeSet<String>, BTreeMap<String, BackupSchedule>) {
    let Ok(def) = crate::definition::parse(text, Path::new("server.yaml")) else {
        return Default::default();
    };
    let def = def.definition();
    let schedules = def
        .backups
        .iter()
        .map(|(app, b)| {
            let s = BackupSchedule {
                schedule: b.schedule.clone(),
                timezone: b.timezone.clone(),
                verify: b.verify.clone(),
            };
            (app.clone(), s)
        })
        .collect();
    (def.apps.keys().cloned().collect(), schedules)
}

fn page(code: StatusCode, body: Markup) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.into_string(),
    )
        .into_response()
}

fn error_page(code: StatusCode, message: &str) -> Response {
    page(
        code,
        layout(
            &crate::backup::server_name(),
            message,
            None,
            html! { p.failed { (message) } p { a href="/" { "Dashboard" } } },
        ),
    )
}

#[cfg(test)]
mod tests;
