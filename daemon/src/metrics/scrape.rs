//! metrics/scrape — the series built at scrape time: what `/status` already shows, read from
//! the status channel, and the kept per-app and per-service records, encoded family by family.
//! Must not: change the records or count anything (that is [`super::Metrics`]'s).

use std::sync::PoisonError;

use chrono::Utc;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::{unix, AppKind, Record, Scrape, APP_OUTCOMES, PASS_OUTCOMES};
use crate::ops::Outcome;

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
fn outcomes(
    labels: &[(&'static str, String)],
    known: &[Outcome],
    actual: Outcome,
) -> Vec<Sample<i64>> {
    let mut all: Vec<Outcome> = known.to_vec();
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
                outcomes(&[], &PASS_OUTCOMES, op.outcome),
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
                    .filter_map(|(l, rec)| Some(outcomes(l, &APP_OUTCOMES, rec.last.as_ref()?.1)))
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
