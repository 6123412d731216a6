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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::daemon::Status;
use crate::ops::{AppOutcome, Operation, StepRecord, Watch};

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Outcomes of a pass: each has a series of `strackt_last_pass_outcome`, 1 for the last one.
const PASS_OUTCOMES: [&str; 3] = ["success", "failed", "rolled-back"];
/// Outcomes of a deploy or backup run (`interrupted`: the daemon was stopped during it).
const APP_OUTCOMES: [&str; 3] = ["success", "failed", "interrupted"];
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
    last: Option<(i64, String, i64)>,
    /// The newest successful one: id, when it finished.
    last_success: Option<(i64, i64)>,
}

impl Record {
    /// Take in a finished operation, unless a newer one is known already.
    fn finished(&mut self, id: i64, outcome: &str, at: i64) {
        if self.last.as_ref().is_none_or(|(last, ..)| id > *last) {
            self.last = Some((id, outcome.to_string(), at));
        }
        if outcome == "success" && self.last_success.is_none_or(|(last, _)| id > last) {
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
        if op.outcome != "success" {
            self.pass_failures.inc();
        }
        self.pass_duration
            .observe(op.duration_ms.unwrap_or(0).max(0) as f64 / 1000.0);
        let drifted = op
            .steps
            .iter()
            .filter(|s| s.drift && s.outcome == "ok")
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
                r.services.insert(s.target.clone(), s.outcome == "ok");
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
            record.finished(o.id, &o.outcome, unix(o.finished.as_deref()));
            if let Some((id, at)) = &o.last_success {
                record.finished(*id, "success", unix(Some(at)));
            }
        }
        // A unit verified since the start is newer than anything in the log.
        let fresh: Vec<String> = r.services.keys().cloned().collect();
        for s in checks {
            if matches!(s.action.as_str(), "verify" | "health")
                && is_unit(&s.target)
                && !fresh.contains(&s.target)
            {
                r.services.insert(s.target.clone(), s.outcome == "ok");
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
        if op.outcome != "success" {
            record.failures += 1;
        }
        record.finished(op.id, &op.outcome, unix(op.finished.as_deref()));
    }
}

/// Builds the scrape-time series: from the status channel and the kept records.
#[derive(Debug)]
struct Scrape {
    status: watch::Receiver<Status>,
    records: Arc<Mutex<Records>>,
}

/// One sample: its labels and value.
type Sample<V> = (Vec<(&'static str, String)>, V);

/// Encode a family of samples, each value made a metric by `metric` (nothing at all when it has
/// no sample).
fn family<V, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    samples: Vec<Sample<V>>,
    metric: impl Fn(V) -> M,
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut encoder = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        metric(value).encode(encoder.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges<V: EncodeGaugeValue + std::fmt::Debug>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: Vec<Sample<V>>,
) -> Result<(), std::fmt::Error> {
    family(
        enc,
        (name, help, MetricType::Gauge),
        samples,
        ConstGauge::new,
    )
}

/// One unlabelled gauge.
fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    gauges(enc, name, help, vec![(vec![], v)])
}

/// A state set: one series per known outcome (plus the actual one if it is not known), 1 for
/// the actual one.
fn outcomes(labels: &[(&'static str, String)], known: &[&str], actual: &str) -> Vec<Sample<i64>> {
    let mut all: Vec<&str> = known.to_vec();
    if !all.contains(&actual) {
        all.push(actual);
    }
    all.into_iter()
        .map(|o| {
            let mut l = labels.to_vec();
            l.push(("outcome", o.to_string()));
            (l, i64::from(o == actual))
        })
        .collect()
}

impl Scrape {
    fn status(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.status.borrow().clone();
        if let Some(g) = s.current_generation {
            gauge(
                enc,
                "strackt_current_generation",
                "The generation the host is on.",
                g as i64,
            )?;
        }
        if let Some(op) = &s.last_pass {
            gauge(
                enc,
                "strackt_last_pass_timestamp_seconds",
                "When the last pass finished.",
                unix(op.finished.as_deref().or(Some(&op.started))),
            )?;
            gauges(
                enc,
                "strackt_last_pass_outcome",
                "The last pass's outcome: 1 for it, 0 for the others.",
                outcomes(&[], &PASS_OUTCOMES, &op.outcome),
            )?;
        }
        if let Some(next) = &s.next_pass {
            gauge(
                enc,
                "strackt_next_pass_timestamp_seconds",
                "When the reconcile timer fires next.",
                unix(Some(next)),
            )?;
        }
        gauge(
            enc,
            "strackt_definition_problem",
            "1 when the definition on disk is not what runs (it does not parse, cannot be built, failed or was rolled back from).",
            i64::from(s.definition_problem.is_some()),
        )?;
        let hold_until = s
            .hold
            .as_ref()
            .map(|h| unix(Some(&h.until)))
            .filter(|until| *until > Utc::now().timestamp());
        gauge(
            enc,
            "strackt_hold",
            "1 while drift repair is paused (strackt hold).",
            i64::from(hold_until.is_some()),
        )?;
        if let Some(until) = hold_until {
            gauge(
                enc,
                "strackt_hold_end_timestamp_seconds",
                "When the hold ends.",
                until,
            )?;
        }
        gauge(
            enc,
            "strackt_pending_confirmation",
            "1 while a switch made with strackt apply --confirm-within waits for strackt confirm.",
            i64::from(s.pending_confirm.is_some()),
        )?;
        if let Some(p) = &s.pending_confirm {
            gauge(
                enc,
                "strackt_pending_confirmation_deadline_timestamp_seconds",
                "When an unconfirmed switch is reverted.",
                unix(Some(&p.deadline)),
            )?;
        }
        let (pending, security, checked) = s.updates.as_ref().map_or((0, 0, 0), |u| {
            (u.pending as i64, u.security as i64, unix(Some(&u.checked)))
        });
        gauges(
            enc,
            "strackt_updates_pending",
            "Pinned packages with a newer version at the last check (kind=\"security\": from a security suite).",
            vec![
                (vec![("kind", "all".into())], pending),
                (vec![("kind", "security".into())], security),
            ],
        )?;
        gauge(
            enc,
            "strackt_updates_last_check_timestamp_seconds",
            "When packages were last checked for updates (0: never).",
            checked,
        )
    }

    fn records(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        gauges(
            enc,
            "strackt_service_healthy",
            "1 when the last verification found the service active and its health probe passing.",
            r.services
                .iter()
                .map(|(unit, ok)| (vec![("service", unit.clone())], i64::from(*ok)))
                .collect(),
        )?;
        for (kind, what, runs) in [
            (AppKind::Deploy, "deploy", "Deploys"),
            (AppKind::Backup, "backup", "Backup runs"),
        ] {
            let apps: Vec<(Vec<(&'static str, String)>, Record)> = r
                .apps
                .iter()
                .map(|(app, a)| {
                    let rec = match kind {
                        AppKind::Deploy => a.deploy.clone(),
                        AppKind::Backup => a.backup.clone(),
                    };
                    (vec![("app", app.clone())], rec)
                })
                .filter(|(_, rec)| !rec.is_empty())
                .collect();
            let runs_of: fn(&Record) -> u64 = |rec| rec.runs;
            let failures_of: fn(&Record) -> u64 = |rec| rec.failures;
            for (name, help, count) in [
                (format!("strackt_{what}s"), "finished", runs_of),
                (
                    format!("strackt_{what}_failures"),
                    "that failed",
                    failures_of,
                ),
            ] {
                family(
                    enc,
                    (
                        &name,
                        &format!("{runs} {help} since strackt started, per app."),
                        MetricType::Counter,
                    ),
                    apps.iter()
                        .map(|(l, rec)| (l.clone(), count(rec)))
                        .collect(),
                    ConstCounter::new,
                )?;
            }
            gauges(
                enc,
                &format!("strackt_{what}_last_outcome"),
                &format!("The outcome of the app's last {what}: 1 for it, 0 for the others."),
                apps.iter()
                    .filter_map(|(l, rec)| Some(outcomes(l, &APP_OUTCOMES, &rec.last.as_ref()?.1)))
                    .flatten()
                    .collect(),
            )?;
            gauges(
                enc,
                &format!("strackt_{what}_last_timestamp_seconds"),
                &format!("When the app's last {what} finished."),
                apps.iter()
                    .filter_map(|(l, rec)| Some((l.clone(), rec.last.as_ref()?.2)))
                    .collect(),
            )?;
            gauges(
                enc,
                &format!("strackt_{what}_last_success_timestamp_seconds"),
                &format!("When the app's last successful {what} finished."),
                apps.iter()
                    .filter_map(|(l, rec)| Some((l.clone(), rec.last_success?.1)))
                    .collect(),
            )?;
        }
        Ok(())
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.status(&mut enc)?;
        self.records(&mut enc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::{Hold, PendingConfirm};

    fn op(id: i64, kind: &str, outcome: &str, finished: &str) -> Operation {
        Operation {
            id,
            kind: kind.into(),
            trigger: "cli".into(),
            generation: None,
            outcome: outcome.into(),
            reason: None,
            summary: String::new(),
            started: finished.into(),
            finished: Some(finished.into()),
            duration_ms: Some(1500),
            steps: vec![],
        }
    }

    /// The sample lines (not comments), sorted.
    fn samples(text: &str) -> Vec<&str> {
        let mut s: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        s.sort_unstable();
        s
    }

    /// The `# TYPE` of every family.
    fn types(text: &str) -> BTreeMap<&str, &str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .collect()
    }

    #[test]
    fn every_series_is_named_labelled_and_typed() {
        let (tx, rx) = watch::channel(Status::default());
        let m = Metrics::new(rx);
        let mut pass = op(7, "apply", "rolled-back", "2026-12-01T10:00:00.000Z");
        pass.steps = vec![
            StepRecord::new("write-file", "/etc/motd", "ok", "", true),
            StepRecord::new("verify", "web.service", "ok", "", false),
            StepRecord::new("health", "web.service", "failed", "", false),
            StepRecord::new("verify", "db.service", "ok", "", false),
            StepRecord::new("health", "app shop", "ok", "", false),
        ];
        m.pass_finished(&pass);
        m.rolled_back();
        m.services_checked(&pass.steps, |u| u.ends_with(".service"));
        m.app_finished(
            "shop",
            &op(8, "deploy", "success", "2026-12-01T10:01:00.000Z"),
        );
        m.app_finished(
            "shop",
            &op(9, "deploy", "failed", "2026-12-01T10:02:00.000Z"),
        );
        m.app_finished("shop", &op(10, "backup", "success", "2026-12-01T10:03:00Z"));
        m.app_finished(
            "shop",
            &op(11, "restore", "success", "2026-12-01T10:04:00Z"),
        );
        tx.send_modify(|s| {
            s.current_generation = Some(3);
            s.last_pass = Some(pass.clone());
            s.hold = Some(Hold {
                until: "2999-01-01T00:00:00Z".into(),
                reason: None,
            });
            s.pending_confirm = Some(PendingConfirm {
                generation: 3,
                previous: 2,
                deadline: "2026-12-01T11:00:00Z".into(),
            });
        });
        let text = m.render();
        let version = env!("CARGO_PKG_VERSION");
        let want = [
            format!("strackt_build_info{{version=\"{version}\"}} 1"),
            "strackt_passes_total 1".into(),
            "strackt_pass_failures_total 1".into(),
            "strackt_rollbacks_total 1".into(),
            "strackt_drift_repairs_total 1".into(),
            "strackt_pass_duration_seconds_bucket{le=\"2.5\"} 1".into(),
            "strackt_pass_duration_seconds_bucket{le=\"1\"} 0".into(),
            "strackt_pass_duration_seconds_sum 1.5".into(),
            "strackt_pass_duration_seconds_count 1".into(),
            "strackt_current_generation 3".into(),
            "strackt_last_pass_timestamp_seconds 1796119200".into(),
            "strackt_last_pass_outcome{outcome=\"rolled-back\"} 1".into(),
            "strackt_last_pass_outcome{outcome=\"success\"} 0".into(),
            "strackt_last_pass_outcome{outcome=\"failed\"} 0".into(),
            "strackt_definition_problem 0".into(),
            "strackt_hold 1".into(),
            "strackt_hold_end_timestamp_seconds 32472144000".into(),
            "strackt_pending_confirmation 1".into(),
            "strackt_pending_confirmation_deadline_timestamp_seconds 1796122800".into(),
            "strackt_updates_pending{kind=\"all\"} 0".into(),
            "strackt_updates_pending{kind=\"security\"} 0".into(),
            "strackt_updates_last_check_timestamp_seconds 0".into(),
            // The last check of a unit wins; what is not a unit of the generation is not one.
            "strackt_service_healthy{service=\"web.service\"} 0".into(),
            "strackt_service_healthy{service=\"db.service\"} 1".into(),
            "strackt_deploys_total{app=\"shop\"} 2".into(),
            "strackt_deploy_failures_total{app=\"shop\"} 1".into(),
            "strackt_deploy_last_outcome{app=\"shop\",outcome=\"failed\"} 1".into(),
            "strackt_deploy_last_outcome{app=\"shop\",outcome=\"success\"} 0".into(),
            "strackt_deploy_last_outcome{app=\"shop\",outcome=\"interrupted\"} 0".into(),
            "strackt_deploy_last_timestamp_seconds{app=\"shop\"} 1796119320".into(),
            "strackt_deploy_last_success_timestamp_seconds{app=\"shop\"} 1796119260".into(),
            "strackt_backups_total{app=\"shop\"} 1".into(),
            "strackt_backup_failures_total{app=\"shop\"} 0".into(),
            "strackt_backup_last_outcome{app=\"shop\",outcome=\"success\"} 1".into(),
            "strackt_backup_last_success_timestamp_seconds{app=\"shop\"} 1796119380".into(),
        ];
        let got = samples(&text);
        for line in &want {
            assert!(got.contains(&line.as_str()), "no `{line}` in:\n{text}");
        }
        assert!(!text.contains("app shop"), "{text}");
        assert!(!text.contains("restore"), "{text}");
        let types = types(&text);
        for (name, kind) in [
            ("strackt_build_info", "gauge"),
            ("strackt_passes_total", "counter"),
            ("strackt_pass_duration_seconds", "histogram"),
            ("strackt_last_pass_outcome", "gauge"),
            ("strackt_service_healthy", "gauge"),
            ("strackt_deploys_total", "counter"),
            ("strackt_backup_failures_total", "counter"),
            ("strackt_backup_last_success_timestamp_seconds", "gauge"),
        ] {
            assert_eq!(types.get(name), Some(&kind), "TYPE of {name} in:\n{text}");
        }
        // Every family has its help, and every sample belongs to a typed family.
        for name in types.keys() {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP of {name}"
            );
        }
        for line in got {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(f)))
                .unwrap_or(name);
            assert!(types.contains_key(family), "{line} has no # TYPE");
        }
    }

    #[test]
    fn the_log_fills_in_what_the_daemon_has_not_seen_since_it_started() {
        let (_, rx) = watch::channel(Status::default());
        let m = Metrics::new(rx);
        // Since the start: a backup of shop, and web verified healthy.
        m.app_finished("shop", &op(20, "backup", "failed", "2026-12-01T12:00:00Z"));
        m.services_checked(
            &[StepRecord::new("verify", "web.service", "ok", "", false)],
            |_| true,
        );
        let log = [
            AppOutcome {
                app: "shop".into(),
                kind: "deploy".into(),
                id: 5,
                outcome: "interrupted".into(),
                finished: Some("2026-12-01T09:00:00Z".into()),
                last_success: Some((3, "2026-12-01T08:00:00Z".into())),
            },
            AppOutcome {
                app: "shop".into(),
                kind: "backup".into(),
                id: 6,
                outcome: "success".into(),
                finished: Some("2026-12-01T09:30:00Z".into()),
                last_success: Some((6, "2026-12-01T09:30:00Z".into())),
            },
            AppOutcome {
                app: "gone".into(),
                kind: "deploy".into(),
                id: 4,
                outcome: "success".into(),
                finished: Some("2026-12-01T07:00:00Z".into()),
                last_success: Some((4, "2026-12-01T07:00:00Z".into())),
            },
        ];
        let checks = [
            StepRecord::new("verify", "web.service", "failed", "", false),
            StepRecord::new("verify", "db.service", "ok", "", false),
            StepRecord::new("health", "db.service", "failed", "", false),
            StepRecord::new("verify", "old.service", "ok", "", false),
        ];
        m.restore(&log, &checks, |u| u != "old.service");
        m.keep_apps(|a| a == "shop", |a| a == "shop");
        let text = m.render();
        let got = samples(&text);
        for line in [
            "strackt_deploy_last_outcome{app=\"shop\",outcome=\"interrupted\"} 1",
            "strackt_deploy_last_success_timestamp_seconds{app=\"shop\"} 1796112000",
            "strackt_deploys_total{app=\"shop\"} 0",
            // The run since the start is newer than the log's.
            "strackt_backup_last_outcome{app=\"shop\",outcome=\"failed\"} 1",
            "strackt_backup_last_success_timestamp_seconds{app=\"shop\"} 1796117400",
            "strackt_service_healthy{service=\"web.service\"} 1",
            "strackt_service_healthy{service=\"db.service\"} 0",
        ] {
            assert!(got.contains(&line), "no `{line}` in:\n{text}");
        }
        assert!(
            !text.contains("gone") && !text.contains("old.service"),
            "{text}"
        );
        // An app whose backups were dropped from the definition keeps its deploys only.
        m.keep_apps(|a| a == "shop", |_| false);
        let text = m.render();
        assert!(!text.contains("strackt_backup"), "{text}");
        assert!(
            text.contains("strackt_deploy_last_outcome{app=\"shop\""),
            "{text}"
        );
    }
}
