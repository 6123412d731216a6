//! Tests of the dashboard: escaping, no step output, reloads, schedules and the helpers.

use super::pages::{duration, next_runs, relative, when};
use super::*;
use crate::ops::{Outcome, StepOutcome, StepRecord};

const EVIL: &str = "x\"><script>document.title='pwned'</script><img src=x onerror=alert(1)>";

fn op(id: i64, outcome: Outcome, evil: &str) -> Operation {
    let mut step = StepRecord::new(
        "fetch",
        &format!("/srv/src/shop {evil}"),
        StepOutcome::Ok,
        evil,
        false,
    );
    step.output = Some("OUTPUT-NEVER-SHOWN".into());
    step.duration_ms = Some(1500);
    Operation {
        id,
        kind: "deploy".into(),
        trigger: "cli".into(),
        generation: None,
        outcome,
        reason: Some(format!("build failed: {evil}")),
        summary: format!("deployed shop from {evil}"),
        started: "2026-12-02T10:00:00.000Z".into(),
        finished: None,
        duration_ms: None,
        steps: vec![
            step,
            StepRecord::new("install", "shop release 2", StepOutcome::Running, "", false),
        ],
    }
}

fn overview_of(ops: Vec<Operation>) -> Overview {
    let mut status = Status {
        current_generation: Some(7),
        health: "ok".into(),
        ..Status::default()
    };
    status.hold = Some(crate::status::Hold {
        until: "2026-12-02T11:00:00Z".into(),
        reason: Some(EVIL.into()),
    });
    let release = ReleaseRow {
        app: "shop".into(),
        id: 2,
        branch: EVIL.into(),
        commit: Some("0123456789abcdef0123".into()),
        created: "2026-12-02T10:00:00Z".into(),
        state: crate::state::ReleaseState::Building,
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
    let v = overview_of(vec![op(5, Outcome::Running, EVIL)]);
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
    let mut with_output = op(5, Outcome::Running, "plain");
    with_output.steps[0].output = Some("OUTPUT-NEVER-SHOWN".into());
    let html = operation_page("web1", &with_output, Utc::now()).into_string();
    assert!(!html.contains("OUTPUT-NEVER-SHOWN"));
    let v = overview_of(vec![with_output]);
    assert!(!overview(&v).into_string().contains("OUTPUT-NEVER-SHOWN"));
}

#[test]
fn a_running_operation_is_shown_with_its_steps_and_the_page_reloads_quickly() {
    let v = overview_of(vec![
        op(5, Outcome::Running, "plain"),
        op(4, Outcome::Success, "plain"),
    ]);
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
    let idle = overview(&overview_of(vec![op(4, Outcome::Success, "plain")])).into_string();
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
