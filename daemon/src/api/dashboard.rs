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

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::http::without_output;
use crate::daemon::{PackageUpdate, Status};
use crate::definition::schedule::Schedule;
use crate::ops::Operation;
use crate::state::{GenerationRow, ReleaseRow, StateHandle};

/// Operations listed on the overview (newest first).
const OPERATIONS: usize = 50;
/// Generations listed on the overview (newest first); `/generations` has them all.
const GENERATIONS: usize = 30;
/// Releases listed per app.
const RELEASES: usize = 10;
/// Upcoming backup runs shown per app.
const NEXT_RUNS: usize = 3;
/// Seconds between reloads while an operation runs, and otherwise.
pub const REFRESH_RUNNING: u32 = 2;
const REFRESH_IDLE: u32 = 30;

/// No script, no frame, no request anywhere but this page's own links.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const CSS: &str = "
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 76em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; } .muted { color: #666; } a { color: #0645ad; }
table { border-collapse: collapse; width: 100%; margin: 0.4em 0; } caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
th, td { text-align: left; padding: 0.25em 0.6em; border-bottom: 1px solid #e4e4e4; vertical-align: top; }
th { background: #f4f4f4; font-weight: 600; } td.num { text-align: right; white-space: nowrap; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.3em 1.2em; } dt { font-weight: 600; } dd { margin: 0; }
.why { white-space: pre-wrap; } code { font-size: 0.95em; }
.ok, .success, .active, .live { color: #11752f; } .failed, .rolled-back, .interrupted { color: #b3261e; font-weight: 600; }
.running, .building, .switching { color: #0b57d0; font-weight: 600; } .unknown, .skipped, .removed, .superseded, .previous { color: #666; }
tr.current td { font-weight: 600; background: #eef3fd; }
.box { border: 2px solid #0b57d0; border-radius: 6px; padding: 0.3em 1em; margin: 0.8em 0; }
";

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

/// The frame of every page; `refresh` reloads it after that many seconds.
fn layout(server: &str, title: &str, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = refresh { meta http-equiv="refresh" content=(s); }
                title { (title) " · strackt on " (server) }
                style { (PreEscaped(CSS)) }
            }
            body { (body) }
        }
    }
}

/// The overview page.
pub fn overview(v: &Overview) -> Markup {
    let running: Vec<&Operation> = v
        .operations
        .iter()
        .filter(|o| o.outcome == "running")
        .collect();
    let refresh = if running.is_empty() {
        REFRESH_IDLE
    } else {
        REFRESH_RUNNING
    };
    let st = &v.status;
    let body = html! {
        header {
            h1 { "strackt on " (v.server) }
            p.muted {
                "As of " (when(&v.now.to_rfc3339())) "; reloads every " (refresh) " s. "
                "Read-only; the same data as "
                a href="/status" { "/status" } ", " a href="/generations" { "/generations" } " and "
                a href="/operations" { "/operations" } "."
            }
        }
        section #server {
            h2 { "Server" }
            dl {
                dt { "Current generation" }
                dd #generation { @match st.current_generation { Some(g) => (g), None => "none yet" } }
                dt { "Health" }
                dd #health class=(st.health) { (st.health) }
                @if let Some(p) = &st.definition_problem {
                    dt { "Definition" }
                    dd.failed.why { "not applied: " (p) }
                }
                @if let Some(op) = &st.last_pass {
                    dt { "Last pass" }
                    dd {
                        a href=(op_link(op.id)) { "#" (op.id) } " "
                        span class=(op.outcome) { (op.outcome) } " " (op.summary) " "
                        span.muted { (when(&op.started)) }
                    }
                }
                @if !st.drift.is_empty() {
                    dt { "Drift put back by the last pass" }
                    dd { (st.drift.join(", ")) }
                }
                @if let Some(next) = &st.next_pass {
                    dt { "Next pass" }
                    dd { (when(next)) " " span.muted { (relative(next, v.now)) } }
                }
                @if let Some(h) = &st.hold {
                    dt { "Drift repair on hold" }
                    dd.running { "until " (when(&h.until)) @if let Some(r) = &h.reason { ": " (r) } }
                }
                @if let Some(c) = &st.pending_confirm {
                    dt { "Waiting for confirmation" }
                    dd.running {
                        "generation " (c.generation) " goes back to " (c.previous) " at "
                        (when(&c.deadline)) " unless " code { "strackt confirm" } " runs"
                    }
                }
            }
        }
        section #running {
            h2 { "Running now" }
            @if running.is_empty() {
                p.muted { "No operation is running." }
            }
            @for op in &running {
                div.box { (operation_head(op)) (steps(op)) }
            }
        }
        section #operations {
            h2 { "Operations" }
            (operations_table(&v.operations))
        }
        section #releases {
            h2 { "Releases" }
            @if v.releases.is_empty() { p.muted { "No apps." } }
            @for (app, rows) in &v.releases {
                (releases_table(app, rows))
            }
        }
        section #backups {
            h2 { "Backups" }
            (backups(v))
        }
        section #updates {
            h2 { "Pending updates" }
            (updates(st))
        }
        section #generations {
            h2 { "Generations" }
            (generations_table(&v.generations))
            @if v.generations_total > v.generations.len() {
                p.muted {
                    "The newest " (v.generations.len()) " of " (v.generations_total) "; "
                    a href="/generations" { "/generations" } " lists them all."
                }
            }
        }
    };
    layout(&v.server, "Dashboard", Some(refresh), body)
}

/// One operation's page.
pub fn operation_page(server: &str, op: &Operation, now: DateTime<Utc>) -> Markup {
    let running = op.outcome == "running";
    let body = html! {
        p { a href="/" { "← Dashboard" } }
        h1 { "Operation " (op.id) ": " (op.kind) }
        p.muted {
            "As of " (when(&now.to_rfc3339())) "."
            @if running { " Reloads every " (REFRESH_RUNNING) " s while it runs." }
        }
        (operation_head(op))
        @if let Some(r) = &op.reason {
            h2 { "Why" }
            p.why.failed { (r) }
        }
        h2 { "Steps" }
        (steps(op))
        p.muted {
            "What each step printed is not shown here; root reads it with "
            code { "strackt history --operation " (op.id) } "."
        }
    };
    let title = format!("Operation {}", op.id);
    layout(server, &title, running.then_some(REFRESH_RUNNING), body)
}

fn op_link(id: i64) -> String {
    format!("/ui/operations/{id}")
}

fn operation_head(op: &Operation) -> Markup {
    html! {
        p.op {
            a href=(op_link(op.id)) { "#" (op.id) } " "
            strong { (op.kind) } " "
            span class=(op.outcome) { (op.outcome) }
            " · trigger " (op.trigger)
            @if let Some(g) = op.generation { " · generation " (g) }
            " · started " (when(&op.started))
            @if let Some(ms) = op.duration_ms { " · took " (duration(ms)) }
            @if !op.summary.is_empty() { br; (op.summary) }
        }
    }
}

fn steps(op: &Operation) -> Markup {
    html! {
        @if op.steps.is_empty() {
            p.muted { "No steps yet." }
        } @else {
            table.steps {
                thead { tr { th { "#" } th { "Step" } th { "On" } th { "Outcome" } th { "Detail" } th { "Took" } } }
                tbody {
                    @for (i, s) in op.steps.iter().enumerate() {
                        tr.current[s.outcome == "running"] {
                            td.num { (i + 1) }
                            td { (s.action) }
                            td { code { (s.target) } }
                            td class=(s.outcome) { (s.outcome) @if s.drift { " (drift)" } }
                            td.why { (s.detail) }
                            td.num { @if let Some(ms) = s.duration_ms { (duration(ms)) } }
                        }
                    }
                }
            }
        }
    }
}

fn operations_table(ops: &[Operation]) -> Markup {
    html! {
        @if ops.is_empty() { p.muted { "None yet." } } @else {
            table {
                thead { tr { th { "#" } th { "Kind" } th { "Trigger" } th { "Generation" } th { "Outcome" } th { "Started" } th { "Took" } th { "Summary" } } }
                tbody {
                    @for op in ops {
                        tr {
                            td.num { a href=(op_link(op.id)) { (op.id) } }
                            td { (op.kind) }
                            td { (op.trigger) }
                            td.num { @if let Some(g) = op.generation { (g) } }
                            td class=(op.outcome) { (op.outcome) }
                            td { (when(&op.started)) }
                            td.num { @if let Some(ms) = op.duration_ms { (duration(ms)) } }
                            td.why { (op.summary) }
                        }
                    }
                }
            }
        }
    }
}

fn releases_table(app: &str, rows: &[ReleaseRow]) -> Markup {
    html! {
        table.releases {
            caption { (app) }
            @if rows.is_empty() {
                tbody { tr { td.muted { "No release yet." } } }
            } @else {
                thead { tr { th { "Release" } th { "State" } th { "Branch" } th { "Commit" } th { "Created" } th { "Deploy" } th { "Why it failed" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td.num { (r.id) }
                            td class=(r.state) { (r.state) }
                            td { code { (r.branch) } }
                            td { @if let Some(c) = &r.commit { code title=(c) { (c.get(..12).unwrap_or(c)) } } }
                            td { (when(&r.created)) }
                            td.num { a href=(op_link(r.operation)) { "#" (r.operation) } }
                            td.why { @if let Some(why) = &r.reason { (why) } }
                        }
                    }
                }
            }
        }
    }
}

fn backups(v: &Overview) -> Markup {
    let apps: BTreeSet<&String> = v.schedules.keys().chain(v.status.backups.keys()).collect();
    let recent: Vec<&Operation> = v
        .operations
        .iter()
        .filter(|o| matches!(o.kind.as_str(), "backup" | "verify" | "restore"))
        .collect();
    html! {
        @if apps.is_empty() { p.muted { "No backups are defined." } } @else {
            table {
                thead { tr { th { "App" } th { "Schedule" } th { "Next runs" } th { "Last run" } th { "Last success" } } }
                tbody {
                    @for app in apps {
                        @let sched = v.schedules.get(app);
                        @let state = v.status.backups.get(app);
                        tr {
                            td { (app) }
                            td {
                                @if let Some(s) = sched {
                                    code { (s.schedule) } " (" (s.timezone) ")"
                                    @if let Some(verify) = &s.verify { br; "verify: " code { (verify) } }
                                }
                            }
                            td { (next_runs(sched, state.and_then(|s| s.next_run.as_deref()), v.now)) }
                            td {
                                @if let Some(s) = state {
                                    @if let Some(o) = &s.last_outcome { span class=(o) { (o) } " " }
                                    @if let Some(id) = s.last_operation { a href=(op_link(id)) { "#" (id) } }
                                }
                            }
                            td { @if let Some(t) = state.and_then(|s| s.last_success.as_deref()) { (when(t)) } }
                        }
                    }
                }
            }
        }
        @if !recent.is_empty() {
            h3 { "Recent backup, verify and restore runs" }
            (operations_table(&recent.into_iter().cloned().collect::<Vec<_>>()))
        }
    }
}

/// The next runs of a schedule, in its timezone: the one the scheduler has set, then the ones
/// after it (or from now, before the scheduler has looked).
fn next_runs(sched: Option<&BackupSchedule>, set: Option<&str>, now: DateTime<Utc>) -> Markup {
    let parsed = sched.and_then(|s| Schedule::parse(&s.schedule, &s.timezone).ok());
    let first = set
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let times: Vec<DateTime<Utc>> = match (&parsed, first) {
        (Some(s), Some(f)) => std::iter::once(f)
            .chain(s.upcoming(f).take(NEXT_RUNS - 1))
            .collect(),
        (Some(s), None) => s.upcoming(now).take(NEXT_RUNS).collect(),
        (None, Some(f)) => vec![f],
        (None, None) => Vec::new(),
    };
    html! {
        @for (i, t) in times.iter().enumerate() {
            @if i > 0 { br; }
            @match &parsed {
                Some(s) => (t.with_timezone(&s.tz()).format("%Y-%m-%d %H:%M %Z").to_string()),
                None => (when(&t.to_rfc3339())),
            }
            @if i == 0 { " " span.muted { (relative(&t.to_rfc3339(), now)) } }
        }
    }
}

fn updates(st: &Status) -> Markup {
    html! {
        @match &st.updates {
            None => p.muted { "Not checked yet (" code { "strackt updates" } ")." },
            Some(u) => {
                p {
                    "Checked " (when(&u.checked)) ": "
                    strong { (u.pending) " pinned package(s) with a newer version" }
                    ", " (u.security) " of them from a security suite."
                }
                @if let Some(e) = &u.error { p.failed.why { (e) } }
                @if let Some(p) = &u.refresh_problem { p.muted.why { "apt lists not refreshed: " (p) } }
                @let pending: Vec<&PackageUpdate> = u.packages.iter().filter(|p| p.newest.is_some() || p.security.is_some()).collect();
                @if !pending.is_empty() {
                    table {
                        thead { tr { th { "Package" } th { "Pinned" } th { "Newest" } th { "Security" } } }
                        tbody {
                            @for p in pending {
                                tr {
                                    td { (p.name) }
                                    td { code { (p.pinned) } }
                                    td { @if let Some(c) = &p.newest { code { (c.version) } " " span.muted { (c.suites.join(", ")) } } }
                                    td { @if let Some(c) = &p.security { code.failed { (c.version) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn generations_table(rows: &[GenerationRow]) -> Markup {
    html! {
        @if rows.is_empty() { p.muted { "None yet." } } @else {
            table {
                thead { tr { th { "#" } th { "State" } th { "Trigger" } th { "Created" } th { "Summary" } th { "Why" } } }
                tbody {
                    @for g in rows {
                        tr {
                            td.num { (g.id) }
                            td class=(g.state) { (g.state) @if g.pruned { span.muted { " (pruned)" } } }
                            td { (g.trigger) }
                            td { (when(&g.created)) }
                            td.why { (g.summary) }
                            td.why { @if let Some(r) = &g.reason { (r) } }
                        }
                    }
                }
            }
        }
    }
}

/// An RFC 3339 time as `2026-12-02 14:03:07 UTC` (as stored when it does not parse).
fn when(t: &str) -> String {
    DateTime::parse_from_rfc3339(t)
        .map(|d| {
            d.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| t.to_string())
}

/// `(in 4 min)` or `(2 h ago)`.
fn relative(t: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(t) else {
        return String::new();
    };
    let secs = (t.with_timezone(&Utc) - now).num_seconds();
    let span = |s: i64| match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86400),
    };
    if secs >= 0 {
        format!("(in {})", span(secs))
    } else {
        format!("({} ago)", span(-secs))
    }
}

/// Milliseconds as `850 ms`, `4.2 s` or `3 min 5 s`.
fn duration(ms: i64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::StepRecord;

    const EVIL: &str = "x\"><script>document.title='pwned'</script><img src=x onerror=alert(1)>";

    fn op(id: i64, outcome: &str, evil: &str) -> Operation {
        let mut step =
            StepRecord::new("fetch", &format!("/srv/src/shop {evil}"), "ok", evil, false);
        step.output = Some("OUTPUT-NEVER-SHOWN".into());
        step.duration_ms = Some(1500);
        Operation {
            id,
            kind: "deploy".into(),
            trigger: "cli".into(),
            generation: None,
            outcome: outcome.into(),
            reason: Some(format!("build failed: {evil}")),
            summary: format!("deployed shop from {evil}"),
            started: "2026-12-02T10:00:00.000Z".into(),
            finished: None,
            duration_ms: None,
            steps: vec![
                step,
                StepRecord::new("install", "shop release 2", "running", "", false),
            ],
        }
    }

    fn overview_of(ops: Vec<Operation>) -> Overview {
        let mut status = Status {
            current_generation: Some(7),
            health: "ok".into(),
            ..Status::default()
        };
        status.hold = Some(crate::daemon::Hold {
            until: "2026-12-02T11:00:00Z".into(),
            reason: Some(EVIL.into()),
        });
        let release = ReleaseRow {
            app: "shop".into(),
            id: 2,
            branch: EVIL.into(),
            commit: Some("0123456789abcdef0123".into()),
            created: "2026-12-02T10:00:00Z".into(),
            state: "building".into(),
            operation: 5,
            dump: Some("/var/lib/strackt/apps/shop/releases/1/pre-migrate.dump".into()),
            reason: None,
        };
        Overview {
            server: "web<1>".into(),
            now: DateTime::parse_from_rfc3339("2026-12-02T10:00:30Z")
                .expect("time")
                .with_timezone(&Utc),
            status,
            generations: Vec::new(),
            generations_total: 0,
            operations: ops.into_iter().map(without_output).collect(),
            releases: BTreeMap::from([("shop".to_string(), vec![release])]),
            schedules: BTreeMap::from([(
                "shop".to_string(),
                BackupSchedule {
                    schedule: "daily".into(),
                    timezone: "Europe/Berlin".into(),
                    verify: None,
                },
            )]),
        }
    }

    /// Every value from the definition, the host and git is text, never markup.
    #[test]
    fn values_are_escaped_everywhere() {
        let v = overview_of(vec![op(5, "running", EVIL)]);
        let pages = [
            overview(&v).into_string(),
            operation_page("web<1>", &v.operations[0], v.now).into_string(),
        ];
        for html in pages {
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(!html.contains("web<1>"), "{html}");
            assert!(
                html.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
                "{html}"
            );
            assert!(html.contains("x&quot;&gt;"), "{html}");
        }
    }

    #[test]
    fn step_output_is_never_rendered() {
        let mut with_output = op(5, "running", "plain");
        with_output.steps[0].output = Some("OUTPUT-NEVER-SHOWN".into());
        let html = operation_page("web1", &with_output, Utc::now()).into_string();
        assert!(!html.contains("OUTPUT-NEVER-SHOWN"));
        let v = overview_of(vec![with_output]);
        assert!(!overview(&v).into_string().contains("OUTPUT-NEVER-SHOWN"));
    }

    #[test]
    fn a_running_operation_is_shown_with_its_steps_and_the_page_reloads_quickly() {
        let v = overview_of(vec![op(5, "running", "plain"), op(4, "success", "plain")]);
        let html = overview(&v).into_string();
        let running = &html[html.find("id=\"running\"").expect("section")..][..html
            [html.find("id=\"running\"").expect("section")..]
            .find("id=\"operations\"")
            .expect("next section")];
        assert!(running.contains("#5"), "{running}");
        assert!(!running.contains("#4"), "{running}");
        assert!(running.contains("<td>install</td>"), "{running}");
        assert!(html.contains("content=\"2\""), "reloads every 2 s: {html}");
        assert!(html.contains("<dd id=\"generation\">7</dd>"), "{html}");
        assert!(
            html.contains("<dd id=\"health\" class=\"ok\">ok</dd>"),
            "{html}"
        );
        // Nothing running: the slow reload.
        let idle = overview(&overview_of(vec![op(4, "success", "plain")])).into_string();
        assert!(idle.contains("content=\"30\""), "{idle}");
        assert!(idle.contains("No operation is running."));
    }

    #[test]
    fn next_backup_runs_follow_the_schedule_in_its_timezone() {
        let v = overview_of(Vec::new());
        let html = overview(&v).into_string();
        // `daily` is 03:00 in Europe/Berlin: the next three after 10:00 UTC on Dec 2.
        for day in [
            "2026-12-03 03:00 CET",
            "2026-12-04 03:00 CET",
            "2026-12-05 03:00 CET",
        ] {
            assert!(html.contains(day), "{day} in {html}");
        }
        let sched = v.schedules.get("shop");
        let set = next_runs(sched, Some("2026-12-10T02:00:00Z"), v.now).into_string();
        assert!(set.starts_with("2026-12-10 03:00 CET"), "{set}");
        assert!(set.contains("2026-12-11 03:00 CET"), "{set}");
    }

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(when("2026-12-02T10:00:00.123Z"), "2026-12-02 10:00:00 UTC");
        assert_eq!(when("garbage"), "garbage");
        let now = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .expect("t")
            .with_timezone(&Utc);
        assert_eq!(relative("2026-12-02T10:05:00Z", now), "(in 5 min)");
        assert_eq!(relative("2026-12-02T08:00:00Z", now), "(2 h ago)");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(4200), "4.2 s");
        assert_eq!(duration(185_000), "3 min 5 s");
    }

    #[test]
    fn apps_and_schedules_come_from_the_definition() {
        let text = "version: 1\nusers:\n  shop: {}\napps:\n  shop:\n    repo: /srv/src/shop\n    path: /srv/shop\n    user: shop\n    service: { exec: python3 app.py, listen: \"127.0.0.1:8000\" }\n";
        let (apps, schedules) = of_definition(text);
        assert_eq!(apps.into_iter().collect::<Vec<_>>(), ["shop"]);
        assert!(schedules.is_empty());
        assert_eq!(of_definition("not: [valid"), Default::default());
    }
}
