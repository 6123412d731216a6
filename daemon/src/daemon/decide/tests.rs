//! The driver's rules: hold, confirm-or-revert, startup recovery, failed switches, retention.

use std::time::Duration;

use super::*;

fn at(t: &str) -> Time {
    parse_time(t).expect("a test time")
}

const NOON: &str = "2026-01-01T12:00:00Z";

fn hold_until(t: &str) -> Hold {
    Hold {
        until: t.into(),
        reason: Some("experiment".into()),
    }
}

fn pending(generation: u64, previous: u64, deadline: &str) -> PendingConfirm {
    PendingConfirm {
        generation,
        previous,
        deadline: deadline.into(),
    }
}

fn row(id: u64, state: GenerationState) -> GenerationRow {
    GenerationRow {
        id,
        created: NOON.into(),
        state,
        trigger: "cli".into(),
        summary: String::new(),
        reason: None,
        definition_sha256: format!("sha{id}"),
        pruned: false,
    }
}

#[test]
fn a_hold_blocks_drift_repair_until_it_ends() {
    let hold = hold_until("2026-01-01T13:00:00Z");
    assert!(held(Some(&hold), at(NOON)));
    assert!(!hold_over(Some(&hold), at(NOON)));
    let drift = vec!["write-file /etc/motd: content differs".to_string()];
    assert_eq!(
        drift_summary(&drift, Some(&hold), at(NOON)),
        "on hold until 2026-01-01T13:00:00Z: drift left in place: write-file /etc/motd: content differs"
    );
    // At its end the hold is over: the pass clears it and repairs.
    let later = at("2026-01-01T13:00:00Z");
    assert!(!held(Some(&hold), later));
    assert!(hold_over(Some(&hold), later));
    assert_eq!(
        drift_summary(&drift, Some(&hold), later),
        "drift repaired: write-file /etc/motd: content differs"
    );
}

#[test]
fn no_hold_or_an_unreadable_one_pauses_nothing() {
    assert!(!held(None, at(NOON)));
    assert!(!hold_over(None, at(NOON)));
    let broken = hold_until("tomorrow");
    assert!(!held(Some(&broken), at(NOON)));
    assert!(hold_over(Some(&broken), at(NOON)));
    assert_eq!(drift_summary(&[], Some(&broken), at(NOON)), "no drift");
}

#[test]
fn the_next_pass_comes_when_a_hold_ends_or_a_deadline_passes() {
    let interval = Duration::from_secs(300);
    assert_eq!(next_wait(interval, None, None, at(NOON)), interval);
    let hold = hold_until("2026-01-01T12:01:00Z");
    assert_eq!(
        next_wait(interval, Some(&hold), None, at(NOON)),
        Duration::from_millis(60_050)
    );
    let due = pending(2, 1, "2026-01-01T12:00:10Z");
    assert_eq!(
        next_wait(interval, Some(&hold), Some(&due), at(NOON)),
        Duration::from_millis(10_050)
    );
    // A deadline already passed: at once.
    let passed = pending(2, 1, "2026-01-01T11:00:00Z");
    assert_eq!(
        next_wait(interval, None, Some(&passed), at(NOON)),
        Duration::from_millis(50)
    );
    // An ended hold does not shorten the wait.
    let ended = hold_until("2026-01-01T11:00:00Z");
    assert_eq!(next_wait(interval, Some(&ended), None, at(NOON)), interval);
}

#[test]
fn an_unconfirmed_apply_is_reverted_when_its_deadline_passes() {
    let p = pending(7, 6, "2026-01-01T12:05:00Z");
    assert_eq!(unconfirmed(None, Some(7), at(NOON)), None);
    assert_eq!(
        unconfirmed(Some(&p), Some(7), at(NOON)),
        Some(Unconfirmed::Wait)
    );
    let after = at("2026-01-01T12:05:00Z");
    assert_eq!(
        unconfirmed(Some(&p), Some(7), after),
        Some(Unconfirmed::Revert { to: 6 })
    );
}

#[test]
fn an_unconfirmed_apply_the_host_moved_on_from_is_forgotten() {
    let p = pending(7, 6, "2026-01-01T11:00:00Z");
    assert_eq!(
        unconfirmed(Some(&p), Some(8), at(NOON)),
        Some(Unconfirmed::Forget)
    );
    assert_eq!(
        unconfirmed(Some(&p), None, at(NOON)),
        Some(Unconfirmed::Forget)
    );
}

#[test]
fn an_unreadable_deadline_counts_as_passed() {
    let p = pending(7, 6, "soon");
    assert_eq!(
        unconfirmed(Some(&p), Some(7), at(NOON)),
        Some(Unconfirmed::Revert { to: 6 })
    );
}

#[test]
fn the_deadline_is_armed_only_for_a_switch_that_happened() {
    assert_eq!(to_confirm(Some(1), Some(2), None, true), Some((2, 1)));
    assert_eq!(to_confirm(Some(1), Some(2), None, false), None);
    assert_eq!(to_confirm(Some(2), Some(2), None, true), None);
    assert_eq!(to_confirm(None, Some(1), None, true), None);
    // A save the watcher just applied is the change the user means to confirm.
    assert_eq!(
        to_confirm(Some(2), Some(2), Some((2, 1)), true),
        Some((2, 1))
    );
    // A saved switch the host is no longer on is not.
    assert_eq!(to_confirm(Some(3), Some(3), Some((2, 1)), true), None);
}

#[test]
fn deadlines_are_bounded() {
    let now = at(NOON);
    assert_eq!(
        deadline_after(now, 60, 3600, "--for"),
        Ok(at("2026-01-01T12:01:00Z"))
    );
    assert!(deadline_after(now, 0, 3600, "--for").is_err());
    assert!(deadline_after(now, 3601, 3600, "--for").is_err());
    assert!(deadline_after(now, u64::MAX, u64::MAX, "--for").is_err());
}

#[test]
fn a_pass_builds_only_from_a_new_unpinned_definition() {
    assert_eq!(course("a", Some("a"), None, false, false), Course::Drift);
    assert_eq!(
        course("a", Some("a"), Some("a"), true, false),
        Course::Drift
    );
    assert_eq!(
        course("b", Some("a"), None, false, false),
        Course::NewGeneration
    );
    assert_eq!(course("b", None, None, false, false), Course::NewGeneration);
    // A pinned text waits for an edit or `strackt apply`.
    assert_eq!(
        course("b", Some("a"), Some("b"), false, false),
        Course::Pinned
    );
    assert_eq!(
        course("b", Some("a"), Some("b"), true, false),
        Course::NewGeneration
    );
    // An upgrade builds anew from the same text.
    assert_eq!(
        course("a", Some("a"), None, false, true),
        Course::NewGeneration
    );
}

#[test]
fn startup_finishes_the_switch_current_points_at_and_fails_the_others() {
    let rows = [
        row(1, GenerationState::Superseded),
        row(2, GenerationState::Active),
        row(3, GenerationState::Switching),
        row(4, GenerationState::Building),
    ];
    let r = recover(&rows, Some(3));
    assert_eq!(
        r,
        Recovery {
            fail: vec![4],
            finish: Some(3),
            back_to: Some(2),
            mark_active: None,
        }
    );
    // Cut off before the flip: current still names the active one.
    let r = recover(&rows, Some(2));
    assert_eq!(r.fail, vec![3, 4]);
    assert_eq!(r.finish, None);
    assert_eq!(r.mark_active, None);
}

#[test]
fn startup_marks_current_active_when_its_row_lags() {
    let rows = [
        row(1, GenerationState::Superseded),
        row(2, GenerationState::RolledBack),
    ];
    assert_eq!(
        recover(&rows, Some(2)),
        Recovery {
            mark_active: Some(2),
            ..Recovery::default()
        }
    );
    assert_eq!(recover(&[], None), Recovery::default());
}

#[test]
fn startup_after_an_interrupted_switch_and_a_changed_definition_converges_on_the_new_one() {
    // Killed while switching to 3 (built from text "b"); the file was saved as "c" meanwhile.
    let rows = [
        row(2, GenerationState::Active),
        row(3, GenerationState::Switching),
    ];
    let r = recover(&rows, Some(3));
    assert_eq!(r.finish, Some(3));
    // Whether the recovery finished on 3 or undid it to 2, the pass that follows builds "c":
    // a recovery never pins, so the saved text is applied.
    let recovered = after_failed_switch("unit failed", true, None, r.back_to, None, false);
    assert_eq!(recovered.pin, None);
    for running in ["sha3", "sha2"] {
        assert_eq!(
            course("c", Some(running), recovered.pin.as_deref(), false, false),
            Course::NewGeneration
        );
    }
    // And nothing else is left mid-switch.
    assert!(r.fail.is_empty());
}

#[test]
fn a_failed_apply_is_rolled_back_recorded_and_pinned() {
    let a = after_failed_switch("nginx failed", true, None, Some(4), Some("s".into()), false);
    assert_eq!(a.outcome, Outcome::RolledBack);
    assert_eq!(a.state, GenerationState::RolledBack);
    assert_eq!(a.reason, "nginx failed");
    assert_eq!(a.summary, "rolled back to generation 4");
    assert_eq!(a.pin.as_deref(), Some("s"));
    assert_eq!(a.reactivate, Some(4));
    assert!(a.drop_directory);
    assert!(a
        .definition_problem
        .is_some_and(|p| p.contains("nginx failed")));
}

#[test]
fn a_failed_switch_back_is_a_failure_that_says_both() {
    let a = after_failed_switch("x", true, Some("y"), Some(4), None, true);
    assert_eq!(a.outcome, Outcome::Failed);
    assert_eq!(a.state, GenerationState::RolledBack);
    assert_eq!(a.reason, "x; switching back also failed: y");
    assert!(!a.drop_directory);
    // A rollback or recovery is not the file's fault: nothing pinned, nothing said of it.
    assert_eq!(a.pin, None);
    assert_eq!(a.definition_problem, None);
}

#[test]
fn a_switch_refused_before_any_change_is_failed() {
    let a = after_failed_switch("unreadable", false, None, None, Some("s".into()), false);
    assert_eq!(a.outcome, Outcome::Failed);
    assert_eq!(a.state, GenerationState::Failed);
    assert_eq!(a.summary, "switch failed before changing the host");
    assert_eq!(a.reactivate, None);
}

#[test]
fn retention_keeps_current_previous_and_the_newest_successful() {
    let rows: Vec<GenerationRow> = (1..=6)
        .map(|id| {
            row(
                id,
                if id == 3 {
                    GenerationState::Failed
                } else {
                    GenerationState::Superseded
                },
            )
        })
        .collect();
    let dirs: Vec<u64> = (1..=6).collect();
    // keep 3: current 6 and previous 5 count, then the newest other (4); 3 failed.
    assert_eq!(to_prune(&rows, &dirs, Some(6), Some(5), 3), vec![1, 2, 3]);
    // A directory without a row counts as unsuccessful.
    assert_eq!(to_prune(&rows, &[1, 7], Some(1), None, 3), vec![7]);
}

#[test]
fn quiet_drift_passes_are_not_logged() {
    assert!(!record_drift(false, true, Trigger::Timer));
    assert!(record_drift(true, true, Trigger::Timer));
    assert!(record_drift(false, false, Trigger::Timer));
    assert!(record_drift(false, true, Trigger::Cli));
    assert!(record_drift(false, true, Trigger::Startup));
}

#[test]
fn summaries_name_what_changed() {
    let step =
        |action: &str, outcome: StepOutcome| StepRecord::new(action, "t", outcome, "", false);
    assert_eq!(summarize(&[step("verify", StepOutcome::Ok)]), "no changes");
    assert_eq!(
        summarize(&[
            step("write-file", StepOutcome::Ok),
            step("restart", StepOutcome::Failed)
        ]),
        "write-file t"
    );
    let many: Vec<StepRecord> = (0..5).map(|_| step("start", StepOutcome::Ok)).collect();
    assert_eq!(summarize(&many), "start t, start t, start t, … (5 steps)");
}
