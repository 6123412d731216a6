//! Tests of the `/metrics` families: names, labels, types, and what the log fills in at start.

use super::*;
use crate::ops::{Outcome, StepOutcome};
use crate::status::{Hold, PendingConfirm};

fn op(id: i64, kind: &str, outcome: Outcome, finished: &str) -> Operation {
    Operation {
        id,
        kind: kind.into(),
        trigger: "cli".into(),
        generation: None,
        outcome,
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
    let mut pass = op(7, "apply", Outcome::RolledBack, "2026-12-01T10:00:00.000Z");
    pass.steps = vec![
        StepRecord::new("write-file", "/etc/motd", StepOutcome::Ok, "", true),
        StepRecord::new("verify", "web.service", StepOutcome::Ok, "", false),
        StepRecord::new("health", "web.service", StepOutcome::Failed, "", false),
        StepRecord::new("verify", "db.service", StepOutcome::Ok, "", false),
        StepRecord::new("health", "app shop", StepOutcome::Ok, "", false),
    ];
    m.pass_finished(&pass);
    m.rolled_back();
    m.services_checked(&pass.steps, |u| u.ends_with(".service"));
    m.app_finished(
        "shop",
        &op(8, "deploy", Outcome::Success, "2026-12-01T10:01:00.000Z"),
    );
    m.app_finished(
        "shop",
        &op(9, "deploy", Outcome::Failed, "2026-12-01T10:02:00.000Z"),
    );
    m.app_finished(
        "shop",
        &op(10, "backup", Outcome::Success, "2026-12-01T10:03:00Z"),
    );
    m.app_finished(
        "shop",
        &op(11, "restore", Outcome::Success, "2026-12-01T10:04:00Z"),
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
    m.app_finished(
        "shop",
        &op(20, "backup", Outcome::Failed, "2026-12-01T12:00:00Z"),
    );
    m.services_checked(
        &[StepRecord::new(
            "verify",
            "web.service",
            StepOutcome::Ok,
            "",
            false,
        )],
        |_| true,
    );
    let log = [
        AppOutcome {
            app: "shop".into(),
            kind: "deploy".into(),
            id: 5,
            outcome: Outcome::Interrupted,
            finished: Some("2026-12-01T09:00:00Z".into()),
            last_success: Some((3, "2026-12-01T08:00:00Z".into())),
        },
        AppOutcome {
            app: "shop".into(),
            kind: "backup".into(),
            id: 6,
            outcome: Outcome::Success,
            finished: Some("2026-12-01T09:30:00Z".into()),
            last_success: Some((6, "2026-12-01T09:30:00Z".into())),
        },
        AppOutcome {
            app: "gone".into(),
            kind: "deploy".into(),
            id: 4,
            outcome: Outcome::Success,
            finished: Some("2026-12-01T07:00:00Z".into()),
            last_success: Some((4, "2026-12-01T07:00:00Z".into())),
        },
    ];
    let checks = [
        StepRecord::new("verify", "web.service", StepOutcome::Failed, "", false),
        StepRecord::new("verify", "db.service", StepOutcome::Ok, "", false),
        StepRecord::new("health", "db.service", StepOutcome::Failed, "", false),
        StepRecord::new("verify", "old.service", StepOutcome::Ok, "", false),
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
