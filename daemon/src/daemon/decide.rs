//! daemon/decide — the driver's rules, as pure functions of what the driver has read.
//!
//! Owns: what a pass does with the definition it read (build a new generation, repair drift,
//! or leave a pinned definition alone); whether a hold pauses drift repair; when an unconfirmed
//! switch is reverted and when its deadline is armed; what a failed switch leaves in the
//! records; what the startup recovery does with generations a crash left mid-switch; which
//! generation directories retention prunes; which passes are worth a row in the log.
//!
//! Must not: do I/O, read the clock (the caller passes `now`), touch the state database or the
//! host. The doing — the state database, the store, the switch through `apply` — is the rest
//! of `daemon/`, which asks these functions and carries out their answers.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::control::{Hold, PendingConfirm};
use super::error::OutOfRange;
use super::Trigger;
use crate::generation::retention;
use crate::ops::{Outcome, StepOutcome, StepRecord};
use crate::state::{GenerationRow, GenerationState};

/// A point in time.
pub type Time = DateTime<Utc>;

/// A stored RFC 3339 time; `None` when it does not parse.
pub fn parse_time(t: &str) -> Option<Time> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The instant `seconds` after `now`, refused when it is 0 or above `max` (which also keeps the
/// chrono arithmetic far from overflow: a request from the control socket is not trusted to be
/// sane).
pub fn deadline_after(now: Time, seconds: u64, max: u64, what: &str) -> Result<Time, OutOfRange> {
    let too_long = || OutOfRange {
        what: what.to_string(),
        max,
    };
    if seconds == 0 || seconds > max {
        return Err(too_long());
    }
    i64::try_from(seconds)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(too_long)
}

/// Whether a hold pauses drift repair at `now`. A hold whose end does not parse pauses
/// nothing: drift repair is the safe default.
pub fn held(hold: Option<&Hold>, now: Time) -> bool {
    hold.and_then(|h| parse_time(&h.until))
        .is_some_and(|until| until > now)
}

/// Whether a hold is recorded but over: the pass that sees it clears it and puts back what was
/// changed during the experiment.
pub fn hold_over(hold: Option<&Hold>, now: Time) -> bool {
    hold.is_some() && !held(hold, now)
}

/// The summary of a drift pass: drift repaired, or left in place while held.
pub fn drift_summary(drift: &[String], hold: Option<&Hold>, now: Time) -> String {
    match hold {
        _ if drift.is_empty() => "no drift".into(),
        Some(h) if held(hold, now) => format!(
            "on hold until {}: drift left in place: {}",
            h.until,
            drift.join("; ")
        ),
        _ => format!("drift repaired: {}", drift.join("; ")),
    }
}

/// Time until the next pass: the reconcile interval, or sooner when a hold ends or a
/// confirmation deadline passes, so each is acted on at once.
pub fn next_wait(
    interval: Duration,
    hold: Option<&Hold>,
    pending: Option<&PendingConfirm>,
    now: Time,
) -> Duration {
    let hold_left = hold
        .and_then(|h| parse_time(&h.until))
        .and_then(|until| (until - now).to_std().ok());
    let confirm_left = pending
        .and_then(|p| parse_time(&p.deadline))
        .map(|d| (d - now).to_std().unwrap_or_default());
    [hold_left, confirm_left]
        .into_iter()
        .flatten()
        .map(|left| left + Duration::from_millis(50))
        .fold(interval, Duration::min)
}

/// What to do about a switch waiting for `strackt confirm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unconfirmed {
    /// Its deadline has not passed.
    Wait,
    /// The deadline passed and the host still runs the unconfirmed generation: switch back.
    Revert {
        /// The generation it replaced.
        to: u64,
    },
    /// The deadline passed but the host already moved on (a rollback or another change):
    /// forget it.
    Forget,
}

/// The rule for an unconfirmed switch (`None`: none is pending). A deadline that does not
/// parse counts as passed: the revert is the safety net, and it errs on its side.
pub fn unconfirmed(
    pending: Option<&PendingConfirm>,
    current: Option<u64>,
    now: Time,
) -> Option<Unconfirmed> {
    let p = pending?;
    Some(if parse_time(&p.deadline).is_some_and(|d| d > now) {
        Unconfirmed::Wait
    } else if current == Some(p.generation) {
        Unconfirmed::Revert { to: p.previous }
    } else {
        Unconfirmed::Forget
    })
}

/// The switch `apply --confirm-within` must arm a deadline for: `(generation, previous)`, or
/// `None` when the apply did not move the host (or failed). `saved_switch` is the last switch
/// the watcher made from a save, `(generation, previous)`, when it is recent: a user who
/// saved and then ran the command finds the change already live, and that is the one they mean
/// to confirm — reverting to what ran before the save.
pub fn to_confirm(
    before: Option<u64>,
    after: Option<u64>,
    saved_switch: Option<(u64, u64)>,
    succeeded: bool,
) -> Option<(u64, u64)> {
    let previous = match saved_switch {
        Some((generation, previous)) if before == Some(generation) => Some(previous),
        _ => before,
    }?;
    let generation = after?;
    (succeeded && previous != generation).then_some((generation, previous))
}

/// What a pass does with the definition file it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Course {
    /// The current generation was built from this text: repair drift only.
    Drift,
    /// The text failed or was rolled back from (pinned): repair drift on the current
    /// generation and say the file is not applied.
    Pinned,
    /// Build a new generation from it and switch.
    NewGeneration,
}

/// The course of a pass. `current_sha` is the definition hash of the running generation,
/// `pinned` the hash of a definition not to re-apply on its own; `retry` (`strackt apply`,
/// an edit) re-applies a pinned one; `force_rebuild` builds anew from an unchanged text (an
/// upgrade of packages written `latest`).
pub fn course(
    file_sha: &str,
    current_sha: Option<&str>,
    pinned: Option<&str>,
    retry: bool,
    force_rebuild: bool,
) -> Course {
    if !force_rebuild && current_sha == Some(file_sha) {
        Course::Drift
    } else if !retry && pinned == Some(file_sha) {
        Course::Pinned
    } else {
        Course::NewGeneration
    }
}

/// What a failed switch leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterFailure {
    /// The operation's outcome: `rolled-back` when the host is back where it was, else `failed`.
    pub outcome: Outcome,
    /// The failed generation's state.
    pub state: GenerationState,
    /// Why, including a failed switch back.
    pub reason: String,
    /// The operation's summary.
    pub summary: String,
    /// Pin this definition hash: it came from the file and is not retried on its own.
    pub pin: Option<String>,
    /// The generation that is active again.
    pub reactivate: Option<u64>,
    /// Drop the failed generation's directory (its record stays): the host is not on it, so
    /// it is never a rollback target.
    pub drop_directory: bool,
    /// What `/status` says of the definition file, when the failed generation came from it.
    pub definition_problem: Option<String>,
}

/// The rule after a failed switch to a generation from `from`. `sha` is the definition hash
/// when the generation was built from the file (an apply), `None` for a rollback or a startup
/// recovery; `host_on_target` whether `current` still names the failed generation.
pub fn after_failed_switch(
    failure: &str,
    rolled_back: bool,
    rollback_failure: Option<&str>,
    from: Option<u64>,
    sha: Option<String>,
    host_on_target: bool,
) -> AfterFailure {
    let reason = match rollback_failure {
        Some(back) => format!("{failure}; switching back also failed: {back}"),
        None => failure.to_string(),
    };
    let summary = if rolled_back {
        format!(
            "rolled back to {}",
            from.map_or("no generation".into(), |f| format!("generation {f}"))
        )
    } else {
        "switch failed before changing the host".into()
    };
    AfterFailure {
        outcome: if rolled_back && rollback_failure.is_none() {
            Outcome::RolledBack
        } else {
            Outcome::Failed
        },
        state: if rolled_back {
            GenerationState::RolledBack
        } else {
            GenerationState::Failed
        },
        // The file says something the host does not run: monitoring must see it now, not
        // after the next pass.
        definition_problem: sha.as_ref().map(|_| {
            format!("the definition on disk failed ({reason}); edit it or run `strackt apply` to try it again")
        }),
        reason,
        summary,
        pin: sha,
        reactivate: from,
        drop_directory: !host_on_target,
    }
}

/// What the startup recovery does with the generations a crash may have left mid-switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Generations left building or switching that `current` never reached: failed, the host
    /// stayed on the previous one.
    pub fail: Vec<u64>,
    /// `current` was flipped to this generation but its switch never verified: finish the
    /// switch (or undo it) from `back_to`.
    pub finish: Option<u64>,
    /// The last active generation, which the finishing switch comes from.
    pub back_to: Option<u64>,
    /// `current`'s generation, when its row says anything but active.
    pub mark_active: Option<u64>,
}

/// The startup recovery for the rows of the generations and the generation `current` names.
/// Whatever it does, a pass on the definition file as it is now follows (see
/// [`super::Daemon::startup`]): a definition saved while the daemon was down is applied then.
pub fn recover(rows: &[GenerationRow], current: Option<u64>) -> Recovery {
    let mut recovery = Recovery::default();
    for g in rows.iter().filter(|g| g.state.in_progress()) {
        if Some(g.id) == current {
            recovery.finish = Some(g.id);
        } else {
            recovery.fail.push(g.id);
        }
    }
    if recovery.finish.is_some() {
        recovery.back_to = rows
            .iter()
            .find(|g| g.state == GenerationState::Active)
            .map(|g| g.id);
    } else if let Some(id) = current {
        recovery.mark_active = rows
            .iter()
            .any(|g| g.id == id && g.state != GenerationState::Active)
            .then_some(id);
    }
    recovery
}

/// Retention: the generation directories on disk (`dirs`, oldest first) to prune, given
/// their rows, the current and previous generations and how many successful ones to keep.
pub fn to_prune(
    rows: &[GenerationRow],
    dirs: &[u64],
    current: Option<u64>,
    previous: Option<u64>,
    keep: usize,
) -> Vec<u64> {
    let on_disk: Vec<retention::OnDisk> = dirs
        .iter()
        .map(|&id| retention::OnDisk {
            id,
            successful: rows.iter().any(|g| g.id == id && g.state.ran()),
        })
        .collect();
    retention::to_prune(&on_disk, current, previous, keep)
}

/// Whether a drift pass is worth a row in the operations log: passes that found nothing are
/// not, unless a user asked or the daemon started.
pub fn record_drift(changed: bool, succeeded: bool, trigger: Trigger) -> bool {
    changed || !succeeded || matches!(trigger, Trigger::Cli | Trigger::Startup)
}

/// One line describing what a switch changed.
pub fn summarize(steps: &[StepRecord]) -> String {
    let changed: Vec<String> = steps
        .iter()
        .filter(|s| {
            s.outcome == StepOutcome::Ok
                && !matches!(
                    s.action.as_str(),
                    "verify" | "health" | "flip" | "daemon-reload"
                )
        })
        .map(|s| format!("{} {}", s.action, s.target))
        .collect();
    match changed.len() {
        0 => "no changes".into(),
        n if n <= 4 => changed.join(", "),
        n => format!("{}, … ({n} steps)", changed[..3].join(", ")),
    }
}

#[cfg(test)]
mod tests;
