//! metrics — what `GET /metrics` serves: the Prometheus text format (0.0.4), encoded by the
//! `prometheus-client` crate.
//!
//! Owns the counters of what happened since the daemon started, the per-app deploy and backup
//! records and the per-service health, and how all of it is named, labelled and typed. Three
//! sources, none costing a pass more than an atomic add or a short lock:
//! - counters and the pass-duration histogram, counted where things happen;
//! - per-app records (last outcome, last success) and per-service health, kept here and filled
//!   at start from the operations log ([`Metrics::restore`]), so a restart loses none of them;
//! - what `/status` already shows (current generation, last pass, hold, pending confirmation,
//!   pending updates, definition problem), read from the status channel at scrape time.
//!
//! It never touches the host or the database itself: callers hand it operations and rows.

mod scrape;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::DateTime;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::ops::{AppOutcome, Operation, Outcome, StepOutcome, StepRecord, Watch};
use crate::status::Status;

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Outcomes of a pass: each has a series of `strackt_last_pass_outcome`, 1 for the last one.
const PASS_OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::Failed, Outcome::RolledBack];
/// Outcomes of a deploy or backup run (`interrupted`: the daemon was stopped during it).
const APP_OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::Failed, Outcome::Interrupted];
/// Pass durations (seconds): a no-op pass takes tens of milliseconds, a first apply minutes.
const PASS_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0,
];

/// The kinds of app operation with records here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppKind {
    Deploy,
    Backup,
}

impl AppKind {
    fn of(kind: &str) -> Option<AppKind> {
        match kind {
            "deploy" => Some(AppKind::Deploy),
            "backup" => Some(AppKind::Backup),
            _ => None,
        }
    }
}

/// One app's deploys or backups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Record {
    /// Finished since the daemon started.
    runs: u64,
    /// Of those, not successful.
    failures: u64,
    /// The newest finished operation: id, outcome, when it finished (unix seconds).
    last: Option<(i64, Outcome, i64)>,
    /// The newest successful one: id, when it finished.
    last_success: Option<(i64, i64)>,
}

impl Record {
    /// Take in a finished operation, unless a newer one is known already.
    fn finished(&mut self, id: i64, outcome: Outcome, at: i64) {
        if self.last.as_ref().is_none_or(|(last, ..)| id > *last) {
            self.last = Some((id, outcome, at));
        }
        if outcome == Outcome::Success && self.last_success.is_none_or(|(last, _)| id > last) {
            self.last_success = Some((id, at));
        }
    }

    fn is_empty(&self) -> bool {
        self.runs == 0 && self.last.is_none()
    }
}

/// Deploys and backups of one app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AppRecords {
    deploy: Record,
    backup: Record,
}

impl AppRecords {
    fn of(&mut self, kind: AppKind) -> &mut Record {
        match kind {
            AppKind::Deploy => &mut self.deploy,
            AppKind::Backup => &mut self.backup,
        }
    }
}

/// What is kept between scrapes besides the counters.
#[derive(Debug, Default)]
struct Records {
    apps: BTreeMap<String, AppRecords>,
    /// Unit → whether its last verification found it active and its health probe passing.
    services: BTreeMap<String, bool>,
}

/// Everything `/metrics` shows; shared by the loop, the deployer, the backups and the HTTP
/// endpoint.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    passes: Counter,
    pass_failures: Counter,
    rollbacks: Counter,
    drift_repairs: Counter,
    pass_duration: Histogram,
    records: Arc<Mutex<Records>>,
}

/// Unix seconds of an RFC 3339 time (0 when it does not parse).
fn unix(t: Option<&str>) -> i64 {
    t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp())
}

impl Metrics {
    /// The metrics of a daemon whose status is published on `status`.
    pub fn new(status: watch::Receiver<Status>) -> Metrics {
        // The registry ends every help text of what is registered with a period.
        let mut registry = Registry::default();
        let info = Info::new([("version", env!("CARGO_PKG_VERSION"))]);
        registry.register("strackt_build", "The running strackt's version", info);
        let passes = Counter::default();
        let pass_failures = Counter::default();
        let rollbacks = Counter::default();
        let drift_repairs = Counter::default();
        let pass_duration = Histogram::new(PASS_BUCKETS);
        for (name, help, counter) in [
            ("strackt_passes", "Reconcile passes run", &passes),
            ("strackt_pass_failures", "Passes that failed", &pass_failures),
            (
                "strackt_rollbacks",
                "Switches back to an earlier generation (a failed switch, an unconfirmed change, or strackt rollback)",
                &rollbacks,
            ),
            ("strackt_drift_repairs", "Drifted resources put back", &drift_repairs),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "strackt_pass_duration_seconds",
            "Time spent in passes",
            pass_duration.clone(),
        );
        let records = Arc::new(Mutex::new(Records::default()));
        registry.register_collector(Box::new(Scrape {
            status,
            records: records.clone(),
        }));
        Metrics {
            registry,
            passes,
            pass_failures,
            rollbacks,
            drift_repairs,
            pass_duration,
            records,
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String fails only if an encoder reports an error, which ours never do.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::error!("encoding /metrics: {e}");
        }
        text
    }

    /// A pass (or rollback) finished.
    pub fn pass_finished(&self, op: &Operation) {
        self.passes.inc();
        if op.outcome != Outcome::Success {
            self.pass_failures.inc();
        }
        self.pass_duration
            .observe(op.duration_ms.unwrap_or(0).max(0) as f64 / 1000.0);
        let drifted = op
            .steps
            .iter()
            .filter(|s| s.drift && s.outcome == StepOutcome::Ok)
            .count() as u64;
        if drifted > 0 {
            self.drift_repairs.inc_by(drifted);
        }
    }

    /// The host was switched back to an earlier generation.
    pub fn rolled_back(&self) {
        self.rollbacks.inc();
    }

    /// What a pass verified (`verify` and `health` steps: the last one of a unit wins), with
    /// `is_unit` telling the units of the generation the host is on now: units it no longer has
    /// are forgotten.
    pub fn services_checked(&self, steps: &[StepRecord], is_unit: impl Fn(&str) -> bool) {
        let mut r = self.records();
        r.services.retain(|unit, _| is_unit(unit));
        for s in steps {
            if matches!(s.action.as_str(), "verify" | "health") && is_unit(&s.target) {
                r.services
                    .insert(s.target.clone(), s.outcome == StepOutcome::Ok);
            }
        }
    }

    /// Forget the records of apps the definition no longer has (`has_app`), and the backup
    /// records of apps without backups (`has_backups`).
    pub fn keep_apps(&self, has_app: impl Fn(&str) -> bool, has_backups: impl Fn(&str) -> bool) {
        let mut r = self.records();
        r.apps.retain(|app, records| {
            if !has_backups(app) {
                records.backup = Record::default();
            }
            has_app(app) && !(records.deploy.is_empty() && records.backup.is_empty())
        });
    }

    /// At start: the last outcomes from the operations log (`outcomes`), and the last
    /// `verify`/`health` steps of reconcile operations, oldest first (`checks`). What was
    /// recorded since the daemon started wins over older rows.
    pub fn restore(
        &self,
        outcomes: &[AppOutcome],
        checks: &[StepRecord],
        is_unit: impl Fn(&str) -> bool,
    ) {
        let mut r = self.records();
        for o in outcomes {
            let Some(kind) = AppKind::of(&o.kind) else {
                continue;
            };
            let record = r.apps.entry(o.app.clone()).or_default().of(kind);
            record.finished(o.id, o.outcome, unix(o.finished.as_deref()));
            if let Some((id, at)) = &o.last_success {
                record.finished(*id, Outcome::Success, unix(Some(at)));
            }
        }
        // A unit verified since the start is newer than anything in the log.
        let fresh: Vec<String> = r.services.keys().cloned().collect();
        for s in checks {
            if matches!(s.action.as_str(), "verify" | "health")
                && is_unit(&s.target)
                && !fresh.contains(&s.target)
            {
                r.services
                    .insert(s.target.clone(), s.outcome == StepOutcome::Ok);
            }
        }
    }
}

impl Watch for Metrics {
    /// An operation of `app` finished (deploys and backups are counted; others are ignored).
    fn app_finished(&self, app: &str, op: &Operation) {
        let Some(kind) = AppKind::of(&op.kind) else {
            return;
        };
        let mut r = self.records();
        let record = r.apps.entry(app.to_string()).or_default().of(kind);
        record.runs += 1;
        if op.outcome != Outcome::Success {
            record.failures += 1;
        }
        record.finished(op.id, op.outcome, unix(op.finished.as_deref()));
    }
}

/// Builds the scrape-time series: from the status channel and the kept records.
#[derive(Debug)]
struct Scrape {
    status: watch::Receiver<Status>,
    records: Arc<Mutex<Records>>,
}

#[cfg(test)]
mod tests;
