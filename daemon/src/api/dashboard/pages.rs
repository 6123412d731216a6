//! api/dashboard/pages — the dashboard's markup: the frame and style every page shares, the
//! overview's sections and one operation's page, and how times and durations read. Gets every
//! value already read ([`super::Overview`], an [`Operation`]); must not read the state
//! database or the status channel itself, or render a step's output.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::{BackupSchedule, Overview, REFRESH_IDLE, REFRESH_RUNNING};
use crate::definition::schedule::Schedule;
use crate::ops::{Operation, Outcome, StepOutcome};
use crate::state::{GenerationRow, ReleaseRow};
use crate::status::{PackageUpdate, Status};

/// Upcoming backup runs shown per app.
const NEXT_RUNS: usize = 3;

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

/// The frame of every page; `refresh` reloads it after that many seconds.
pub(super) fn layout(server: &str, title: &str, refresh: Option<u32>, body: Markup) -> Markup {
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
        .filter(|o| o.outcome == Outcome::Running)
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
    let running = op.outcome == Outcome::Running;
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
                        tr.current[s.outcome == StepOutcome::Running] {
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
pub(super) fn next_runs(
    sched: Option<&BackupSchedule>,
    set: Option<&str>,
    now: DateTime<Utc>,
) -> Markup {
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
pub(super) fn when(t: &str) -> String {
    DateTime::parse_from_rfc3339(t)
        .map(|d| {
            d.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| t.to_string())
}

/// `(in 4 min)` or `(2 h ago)`.
pub(super) fn relative(t: &str, now: DateTime<Utc>) -> String {
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
pub(super) fn duration(ms: i64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}
