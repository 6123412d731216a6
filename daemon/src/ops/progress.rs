//! The engine that runs an operation's steps and writes them to the log as they advance.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::{
    failed, finish, live, stamp, Operation, OpsError, Outcome, StepOutcome, StepRecord, Watch,
};
use crate::host::clock::Clock;
use crate::state::StateHandle;

/// What a step's work gives: a value and the output to keep, or the one-line reason and the
/// output.
pub(crate) type StepResult<T> = Result<(T, String), (String, String)>;

/// How often running steps are recorded with their duration and live line.
const LOOK: Duration = Duration::from_secs(1);

/// One step to run with [`Progress::steps`].
pub(crate) struct Step<'a, T> {
    pub(crate) action: String,
    pub(crate) target: String,
    /// Where the work writes its progress line.
    pub(crate) live: Arc<Mutex<String>>,
    pub(crate) work: Pin<Box<dyn Future<Output = StepResult<T>> + Send + 'a>>,
}

/// The record of a running operation, written step by step so watchers see it advance.
pub(crate) struct Progress {
    state: StateHandle,
    /// The app the operation is about.
    app: String,
    /// Told when it finishes.
    watch: Arc<dyn Watch>,
    op: Operation,
    /// The machine's clock: the operation's start and finish are its wall times, and its
    /// duration its monotonic time, so a test with time paused sees them move with tokio's.
    clock: Arc<dyn Clock>,
    started: tokio::time::Instant,
    /// What the running step says about itself (e.g. bytes read), shown while it runs.
    live: Arc<Mutex<String>>,
    /// Where steps run with [`Progress::step_live`] write what they print.
    outputs: Arc<live::Outputs>,
}

impl Progress {
    /// Start operation `kind` about `app` in the log, and its record.
    ///
    /// # Errors
    /// The log could not be written (logged here too).
    pub(crate) async fn start(
        state: &StateHandle,
        kind: &'static str,
        trigger: &'static str,
        app: &str,
        watch: Arc<dyn Watch>,
        outputs: Arc<live::Outputs>,
        clock: Arc<dyn Clock>,
    ) -> Result<Progress, OpsError> {
        let (a, at) = (app.to_string(), stamp(clock.now()));
        let started = clock.instant();
        let id = state
            .call(move |s| s.start_app_operation(kind, trigger, &a, &at))
            .await
            .map_err(|e| failed(OpsError::Start(kind, app.to_string(), e)))?;
        let mut op = state
            .call(move |s| s.operations(1, Some(id)))
            .await
            .map_err(|e| failed(OpsError::Write(id, e)))?
            .pop()
            .ok_or_else(|| failed(OpsError::Vanished(id)))?;
        op.summary = String::new();
        Ok(Progress {
            state: state.clone(),
            app: app.to_string(),
            watch,
            op,
            clock,
            started,
            live: Arc::new(Mutex::new(String::new())),
            outputs,
        })
    }

    /// Record step `seq` as it is now. A failure is logged and the run goes on: the steps are
    /// written again, all of them, when the operation finishes.
    async fn put(&self, seq: usize) {
        let (state, id, step) = (self.state.clone(), self.op.id, self.op.steps[seq].clone());
        if let Err(e) = state.call(move |s| s.put_step(id, seq, &step)).await {
            failed(OpsError::Write(id, e));
        }
    }

    /// The operation's id.
    pub(crate) fn id(&self) -> i64 {
        self.op.id
    }

    /// The steps recorded so far.
    pub(crate) fn records(&self) -> &[StepRecord] {
        &self.op.steps
    }

    /// Run `work` as step `action` on `target`: recorded as running, then with its outcome,
    /// duration and output. `Err` is the one-line reason.
    pub(crate) async fn step<T>(
        &mut self,
        action: &str,
        target: &str,
        work: impl Future<Output = StepResult<T>> + Send,
    ) -> Result<T, String> {
        let live = self.live.clone();
        let mut results = self
            .steps(vec![Step {
                action: action.to_string(),
                target: target.to_string(),
                live,
                work: Box::pin(work),
            }])
            .await;
        results
            .pop()
            .unwrap_or_else(|| Err(format!("{action} did not run")))
    }

    /// [`Progress::step`] for work that runs commands: `work` gets the step's output, where
    /// the commands' lines go as they are printed (for the CLI following the operation), and
    /// the step's `detail` counts them while it runs.
    pub(crate) async fn step_live<T, F, Fut>(
        &mut self,
        action: &str,
        target: &str,
        work: F,
    ) -> Result<T, String>
    where
        F: FnOnce(Arc<live::StepOutput>) -> Fut,
        Fut: Future<Output = StepResult<T>> + Send,
    {
        let out = self
            .outputs
            .step(self.op.id, self.op.steps.len(), self.live.clone());
        self.step(action, target, work(Arc::new(out))).await
    }

    /// Run several steps at the same time (each recorded as its own step, with its own live
    /// line). The first failure stops the others: their work is dropped (child processes are
    /// killed) and they are recorded as failed because of it. Results in the given order.
    pub(crate) async fn steps<'a, T>(&mut self, work: Vec<Step<'a, T>>) -> Vec<Result<T, String>> {
        let first = self.op.steps.len();
        let mut lives = Vec::new();
        let mut pending = FuturesUnordered::new();
        for (i, w) in work.into_iter().enumerate() {
            self.op.steps.push(StepRecord::new(
                &w.action,
                &w.target,
                StepOutcome::Running,
                "",
                false,
            ));
            self.put(first + i).await;
            w.live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
            lives.push(w.live);
            let fut = w.work;
            pending.push(async move { (i, fut.await) });
        }
        let t0 = self.clock.instant();
        let clock = self.clock.clone();
        let took = move || clock.instant().duration_since(t0).as_millis() as i64;
        let mut results: Vec<Option<Result<T, String>>> = (0..lives.len()).map(|_| None).collect();
        let mut failed: Option<String> = None;
        // An interval, not a sleep per turn: a sleep would start again every time a step
        // finishes, so while parallel steps keep finishing the running ones are never recorded.
        let mut look = tokio::time::interval_at(tokio::time::Instant::now() + LOOK, LOOK);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !pending.is_empty() {
            tokio::select! {
                Some((i, r)) = pending.next() => {
                    let seq = first + i;
                    let action = self.op.steps[seq].action.clone();
                    let step = &mut self.op.steps[seq];
                    step.duration_ms = Some(took());
                    let out = match r {
                        Ok((v, tail)) => {
                            step.outcome = StepOutcome::Ok;
                            step.detail = lives[i].lock().map(|l| l.clone()).unwrap_or_default();
                            results[i] = Some(Ok(v));
                            tail
                        }
                        Err((why, tail)) => {
                            step.outcome = StepOutcome::Failed;
                            step.detail = why.clone();
                            results[i] = Some(Err(format!("{action} failed: {why}")));
                            failed = Some(action);
                            tail
                        }
                    };
                    step.output = (!out.trim().is_empty()).then_some(out);
                    self.put(seq).await;
                    if failed.is_some() {
                        break;
                    }
                }
                // Once a second a running step is recorded with how long it has run and its live
                // line, so `/operations/{id}` and the dashboard show it advance.
                _ = look.tick() => {
                    for (i, live) in lives.iter().enumerate() {
                        let seq = first + i;
                        if results[i].is_some() {
                            continue;
                        }
                        let now = live.lock().map(|l| l.clone()).unwrap_or_default();
                        let step = &mut self.op.steps[seq];
                        if !now.is_empty() {
                            step.detail = now;
                        }
                        step.duration_ms = Some(took());
                        self.put(seq).await;
                    }
                }
            }
        }
        drop(pending);
        let mut out = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            let r = match r {
                Some(r) => r,
                None => {
                    let why = format!("stopped: {} failed", failed.as_deref().unwrap_or("a step"));
                    let step = &mut self.op.steps[first + i];
                    step.outcome = StepOutcome::Failed;
                    step.detail = why.clone();
                    step.duration_ms = Some(took());
                    let action = step.action.clone();
                    self.put(first + i).await;
                    Err(format!("{action} failed: {why}"))
                }
            };
            out.push(r);
        }
        out
    }

    pub(crate) async fn finish(mut self, result: &Result<String, String>) -> Operation {
        self.op.finished = Some(stamp(self.clock.now()));
        let took = self.clock.instant().duration_since(self.started);
        self.op.duration_ms = Some(took.as_millis() as i64);
        match result {
            Ok(summary) => {
                self.op.outcome = Outcome::Success;
                self.op.summary = summary.clone();
            }
            Err(reason) => {
                self.op.outcome = Outcome::Failed;
                self.op.reason = Some(reason.clone());
                self.op.summary = reason.lines().next().unwrap_or_default().to_string();
            }
        }
        // Already logged; the operation's outcome is what the caller acts on.
        let _logged = finish(&self.state, &self.op).await;
        self.outputs.finish(self.op.id);
        self.op.journal(Some(&self.app));
        self.watch.app_finished(&self.app, &self.op);
        self.op
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::state::State;

    #[derive(Debug)]
    struct Unwatched;

    impl Watch for Unwatched {
        fn app_finished(&self, _: &str, _: &Operation) {}
    }

    /// Sets its flag when dropped: tells whether the work holding it was stopped.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A `Progress` on a new operation of `kind` in `state`'s log.
    async fn progress(state: &StateHandle, kind: &'static str) -> Progress {
        let id = state
            .call(move |s| s.start_operation(kind, "cli", None, &stamp(chrono::Utc::now())))
            .await
            .expect("operation");
        Progress {
            state: state.clone(),
            app: "shop".into(),
            watch: Arc::new(Unwatched),
            op: recorded(state, id).await,
            clock: Arc::new(crate::host::clock::SystemClock),
            started: tokio::time::Instant::now(),
            live: Arc::new(Mutex::new(String::new())),
            outputs: live::Outputs::new(crate::state::Redactor::default()),
        }
    }

    /// Operation `id` as the log has it now.
    async fn recorded(state: &StateHandle, id: i64) -> Operation {
        state
            .call(move |s| s.operations(1, Some(id)))
            .await
            .expect("operations")
            .pop()
            .expect("the operation")
    }

    fn step<'a>(
        action: &str,
        work: impl Future<Output = StepResult<u32>> + Send + 'a,
    ) -> Step<'a, u32> {
        Step {
            action: action.into(),
            target: "t".into(),
            live: Arc::new(Mutex::new(String::new())),
            work: Box::pin(work),
        }
    }

    #[tokio::test]
    async fn the_first_failing_step_stops_the_others_and_every_step_is_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateHandle::new(State::open(&dir.path().join("state.db")).expect("state"));
        let mut p = progress(&state, "backup").await;
        let id = p.op.id;
        let recorded = || recorded(&state, id);
        let stopped = Arc::new(AtomicBool::new(false));
        let guard = Dropped(stopped.clone());
        // A bound, so a regression fails instead of hanging on the step that never ends.
        let results = tokio::time::timeout(
            Duration::from_secs(5),
            p.steps(vec![
                step("quick", async { Ok((1, "out".to_string())) }),
                step("fails", async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(("boom".to_string(), String::new()))
                }),
                step("forever", async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                    Ok((3, String::new()))
                }),
            ]),
        )
        .await
        .expect("the failure stopped the step that never ends");
        assert_eq!(
            results,
            [
                Ok(1),
                Err("fails failed: boom".to_string()),
                Err("forever failed: stopped: fails failed".to_string())
            ]
        );
        assert!(
            stopped.load(Ordering::SeqCst),
            "the unfinished work was dropped"
        );
        let recorded = recorded().await;
        let outcomes: Vec<(&str, &str)> = recorded
            .steps
            .iter()
            .map(|s| (s.action.as_str(), s.outcome.as_str()))
            .collect();
        assert_eq!(
            outcomes,
            [("quick", "ok"), ("fails", "failed"), ("forever", "failed")]
        );
        assert_eq!(recorded.steps[0].output.as_deref(), Some("out"));
    }

    /// A step still running is recorded once a second, however often other steps finish
    /// meanwhile (a sleep restarted on every finish never fired while they kept finishing).
    #[tokio::test(start_paused = true)]
    async fn a_running_step_is_recorded_while_other_steps_keep_finishing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateHandle::new(State::open(&dir.path().join("state.db")).expect("state"));
        let mut p = progress(&state, "deploy").await;
        let id = p.op.id;
        let recorded = || recorded(&state, id);
        let long = step("long", async { Ok((0, String::new())) });
        let line = long.live.clone();
        let long = Step {
            work: Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                *line.lock().expect("live") = "halfway".into();
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok((0, String::new()))
            }),
            ..long
        };
        // Finishing every 0.6 s: each finish would have started a 1 s sleep again.
        let mut work = vec![long];
        for i in 1..=4u32 {
            work.push(step("quick", async move {
                tokio::time::sleep(Duration::from_millis(600) * i).await;
                Ok((i, String::new()))
            }));
        }
        let (results, seen) = tokio::join!(p.steps(work), async {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            recorded().await.steps[0].clone()
        });
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(
            (seen.outcome.as_str(), seen.detail.as_str()),
            ("running", "halfway"),
            "the running step was recorded with its live line"
        );
        assert!(seen.duration_ms.is_some(), "and how long it had run");
    }
}
