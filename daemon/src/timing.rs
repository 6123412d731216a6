//! timing — where the time of a pass goes, phase by phase (issue 16).
//!
//! A pass runs inside [`measure`]; code on its path wraps a phase in [`time`] or [`time_async`],
//! and the durations are summed per phase name into the pass's [`Phases`], which the daemon
//! publishes in `/status` (`last_pass_phases_us`) and `tests/bench` prints. The collector is a
//! task-local, so the layers a phase lives in (apply/, daemon/) keep their signatures, and
//! outside a measured pass (`strackt plan`, tests) timing a phase costs one failed lookup.
//! The planner itself is never timed from inside: its caller times the call, so `plan/` stays
//! free of clocks.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

/// Microseconds spent per phase (`load.definition`, `observe.packages`, `plan`, `record`, …).
pub type Phases = BTreeMap<&'static str, u64>;

tokio::task_local! {
    static PHASES: RefCell<Phases>;
}

/// Run `pass` and return its output with the time it spent in each phase.
pub async fn measure<F: Future>(pass: F) -> (F::Output, Phases) {
    PHASES
        .scope(RefCell::new(Phases::new()), async {
            let out = pass.await;
            let phases = PHASES.with(|p| p.take());
            (out, phases)
        })
        .await
}

fn add(phase: &'static str, started: Instant) {
    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    // Outside `measure` there is nobody to tell: the phase simply is not recorded.
    let _ = PHASES.try_with(|p| {
        let mut p = p.borrow_mut();
        let total = p.entry(phase).or_default();
        *total = total.saturating_add(us);
    });
}

/// Run `f`, adding its duration to `phase` of the pass being measured.
pub fn time<T>(phase: &'static str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    add(phase, started);
    out
}

/// Await `fut`, adding its duration to `phase` of the pass being measured.
pub async fn time_async<F: Future>(phase: &'static str, fut: F) -> F::Output {
    let started = Instant::now();
    let out = fut.await;
    add(phase, started);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_add_up_per_name_inside_measure_only() {
        time("outside", || ());
        let ((), phases) = measure(async {
            time("observe.files", || {
                std::thread::sleep(std::time::Duration::from_millis(2))
            });
            time("observe.files", || {
                std::thread::sleep(std::time::Duration::from_millis(2))
            });
            time_async("record", async {}).await;
        })
        .await;
        assert_eq!(
            phases.keys().copied().collect::<Vec<_>>(),
            ["observe.files", "record"]
        );
        assert!(phases["observe.files"] >= 4_000, "{phases:?}");
        // A later pass starts from nothing.
        let ((), again) = measure(async {}).await;
        assert!(again.is_empty());
    }
}
