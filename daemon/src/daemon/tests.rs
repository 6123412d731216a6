//! Component tests of the driver: the daemon on the in-memory host with tokio's clock paused,
//! its state database and generation store in a temporary directory. Each test drives it as a
//! user does — the definition file, requests of the control socket, the reconcile loop's timer,
//! a restart — and checks what a user sees: `/status`, the operations log, the generation
//! records and the host. Waiting on a paused clock costs no time: hours of timer pass in
//! milliseconds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::error::{ControlError, Unrebuildable};
use super::{run_loop, Daemon, HoldChange, Paths, Request, Status, Trigger, Wake};
use crate::api::control::{refusal, response, AnswerError};
use crate::api::ControlResponse;
use crate::generation::Store;
use crate::host::clock::Clock;
use crate::host::fake::FakeHost;
use crate::host::files::sha256_hex;
use crate::host::Machine;
use crate::metrics::Metrics;
use crate::ops::{Operation, Outcome};
use crate::state::{GenerationState, State, StateHandle};
use crate::status::Reply;

/// The host and the daemon's files, which outlive a daemon (a restart builds a new one).
struct World {
    dir: tempfile::TempDir,
    host: Arc<FakeHost>,
}

/// A definition whose `/etc/motd` says `motd`, with a running service.
fn definition(motd: &str) -> String {
    format!(
        "version: 1\nfiles:\n  /etc/motd: {{ content: \"{motd}\\n\" }}\nservices:\n  hello: {{ exec: /bin/sleep infinity }}\n"
    )
}

impl World {
    fn new() -> World {
        World {
            dir: tempfile::tempdir().expect("tempdir"),
            host: Arc::new(FakeHost::default()),
        }
    }

    fn paths(&self) -> Paths {
        let at = |name: &str| self.dir.path().join(name);
        Paths {
            definition: at("server.yaml"),
            root: at("root"),
            socket: at("control.sock"),
            cache: at("cache"),
        }
    }

    /// A new world whose definition file says `text`, and its daemon, started.
    async fn started(text: &str) -> (World, Daemon<FakeHost>) {
        let w = World::new();
        w.write(text);
        let mut d = w.daemon();
        d.startup().await;
        (w, d)
    }

    /// Save the definition file.
    fn write(&self, text: &str) {
        std::fs::write(self.paths().definition, text).expect("write the definition");
    }

    /// A daemon as `run` assembles one at a start, on this world's host and files.
    fn daemon(&self) -> Daemon<FakeHost> {
        let paths = self.paths();
        let store = Store::open(&paths.root).expect("store");
        let state = State::open(&paths.root.join("state.db")).expect("state database");
        let (status, seen) = watch::channel(Status {
            health: "unknown".into(),
            ..Status::default()
        });
        let metrics = Arc::new(Metrics::new(seen));
        Daemon::on(
            self.host.clone(),
            paths,
            store,
            StateHandle::new(state),
            status,
            metrics,
        )
    }

    /// What `/etc/motd` on the host says.
    fn motd(&self) -> String {
        let file = self.host.state().files.get(Path::new("/etc/motd")).cloned();
        String::from_utf8(file.expect("/etc/motd").0)
            .expect("text")
            .trim_end()
            .to_string()
    }
}

/// The generation records, as `strackt generations` shows them: id → state.
async fn generations(d: &Daemon<FakeHost>) -> Vec<(u64, GenerationState)> {
    let rows = d
        .state
        .call(|s| s.generations())
        .await
        .expect("generations");
    rows.into_iter().map(|g| (g.id, g.state)).collect()
}

/// The operations log, newest first, as `strackt history` shows it.
async fn history(state: &StateHandle) -> Vec<Operation> {
    state
        .call(|s| s.operations(100, None))
        .await
        .expect("operations")
}

/// The control socket's side of the loop: requests, wake-ups, and `/status`.
struct Control {
    requests: mpsc::Sender<Request>,
    wake: Arc<Wake>,
    status: watch::Receiver<Status>,
}

impl Control {
    /// Send a request and wait for its answer.
    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> Request) -> T {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(request(reply))
            .await
            .expect("the loop takes requests");
        answer.await.expect("the loop answers")
    }

    /// Wait until `/status` shows `what`, at most `within` on the paused clock (kept short:
    /// a driver that never gets there may pass every 50 ms, each pass taking real time).
    async fn until(&mut self, what: &str, within: u64, f: impl FnMut(&Status) -> bool) {
        let within = Duration::from_secs(within);
        let seen = tokio::time::timeout(within, self.status.wait_for(f))
            .await
            .map(|shown| shown.is_ok());
        if seen != Ok(true) {
            panic!("/status never showed {what}: {:#?}", *self.status.borrow());
        }
    }
}

/// Run the reconcile loop on `d` while `script` runs with its control side, then stop it as
/// `systemctl stop` does; what the script returns.
async fn with_loop<T, F: std::future::Future<Output = T>>(
    d: &mut Daemon<FakeHost>,
    script: impl FnOnce(Control) -> F,
) -> T {
    let (requests, received) = mpsc::channel(4);
    let wake = Arc::new(Wake::default());
    let shutdown = Arc::new(Notify::new());
    let control = Control {
        requests,
        wake: wake.clone(),
        status: d.status.subscribe(),
    };
    let stop = shutdown.clone();
    let script = script(control);
    let ((), out) = tokio::join!(run_loop(d, wake, received, shutdown), async move {
        let out = script.await;
        stop.notify_one();
        out
    });
    out
}

#[tokio::test(start_paused = true)]
async fn an_unconfirmed_apply_is_reverted_to_the_previous_generation_when_its_deadline_passes() {
    let (w, mut d) = World::started(&definition("one")).await;
    w.write(&definition("two"));
    let state = d.state.clone();
    let w = &w;
    let deadline = with_loop(&mut d, |mut c| async move {
        let op = c.ask(|r| Request::Apply(Some(60), r)).await;
        assert_eq!(op.outcome, Outcome::Success, "{op:#?}");
        let pending = c.status.borrow().pending_confirm.clone().expect("pending");
        assert_eq!((pending.generation, pending.previous), (2, 1));
        // A pass before the deadline (SIGHUP) leaves the switch in place.
        tokio::time::sleep(Duration::from_secs(55)).await;
        c.wake.wake(Trigger::Signal);
        c.until("the signal's pass", 1, |s| {
            s.last_pass.as_ref().is_some_and(|p| p.trigger == "signal")
        })
        .await;
        assert_eq!(w.motd(), "two", "not reverted before its deadline");
        assert!(c.status.borrow().pending_confirm.is_some());
        c.until("the revert", 30, |s| s.current_generation == Some(1))
            .await;
        assert_eq!(c.status.borrow().pending_confirm, None);
        pending.deadline
    })
    .await;
    assert_eq!(w.motd(), "one");
    let last = history(&state).await.remove(0);
    assert_eq!(
        (last.kind.as_str(), last.outcome),
        ("rollback", Outcome::Success)
    );
    let why = format!("generation 2 not confirmed by {deadline}");
    assert!(last.summary.starts_with(&why), "{last:#?}");
    // Forgotten in the state database too: a restart does not revert again.
    let kept = state.call(|s| s.meta("pending_confirm")).await;
    assert_eq!(kept.expect("meta"), None);
}

#[tokio::test(start_paused = true)]
async fn a_confirmed_apply_is_not_reverted() {
    let (w, mut d) = World::started(&definition("one")).await;
    w.write(&definition("two"));
    let state = d.state.clone();
    with_loop(&mut d, |c| async move {
        let op = c.ask(|r| Request::Apply(Some(60), r)).await;
        assert_eq!(op.outcome, Outcome::Success, "{op:#?}");
        let confirmed = c.ask(Request::Confirm).await.expect("confirmed");
        assert_eq!(confirmed, 2);
        // Well past the deadline, and a few timer passes.
        tokio::time::sleep(Duration::from_secs(900)).await;
        assert_eq!(c.status.borrow().current_generation, Some(2));
        assert_eq!(c.status.borrow().pending_confirm, None);
    })
    .await;
    assert_eq!(w.motd(), "two");
    let ops = history(&state).await;
    assert!(ops.iter().all(|op| op.kind != "rollback"), "{ops:#?}");
}

/// The driver's records are timed on the machine's clock (here the fake, which follows the
/// paused tokio clock), the clock its deadlines and schedules run on: a record made an hour
/// into a test says so, whatever the wall clock says.
#[tokio::test(start_paused = true)]
async fn operations_and_generations_are_timed_on_the_machines_clock() {
    let (w, mut d) = World::started(&definition("one")).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    w.write(&definition("two"));
    let before = d.machine().clock().now();
    let op = d.pass(Trigger::FileChange, false).await;
    let after = d.machine().clock().now();
    assert_eq!(op.outcome, Outcome::Success, "{op:#?}");
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("RFC 3339");
    let within = |what: &str, t: &str| {
        assert!(
            before <= at(t) && at(t) <= after,
            "{what} at {t}, not within {before}..{after}"
        );
    };
    let recorded = history(&d.state).await.remove(0);
    assert_eq!(recorded.id, op.id);
    within("the operation's start", &recorded.started);
    within("its end", recorded.finished.as_deref().expect("finished"));
    let rows = d
        .state
        .call(|s| s.generations())
        .await
        .expect("generations");
    let two = rows.iter().find(|g| g.id == 2).expect("generation 2");
    within("generation 2's creation", &two.created);
}

#[tokio::test(start_paused = true)]
async fn a_hold_blocks_drift_repair_until_it_ends_then_the_next_pass_repairs() {
    let (w, mut d) = World::started(&definition("one")).await;
    let state = d.state.clone();
    let (w, host) = (&w, w.host.clone());
    with_loop(&mut d, |mut c| async move {
        let change = HoldChange::For {
            seconds: 600,
            reason: Some("trying a setting".into()),
        };
        c.ask(|r| Request::Hold(change, r)).await.expect("held");
        let by_hand = (b"by hand\n".to_vec(), 0o644, 0, 0);
        host.state().files.insert("/etc/motd".into(), by_hand);
        // A pass asked for (SIGHUP) and the timer's, both within the hold: the change stays.
        c.wake.wake(Trigger::Signal);
        c.until("the signal's pass", 5, |s| {
            s.last_pass.as_ref().is_some_and(|p| p.trigger == "signal")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(500)).await;
        assert_eq!(w.motd(), "by hand", "drift repaired during the hold");
        let last = c.status.borrow().last_pass.clone().expect("a pass");
        assert_eq!(last.trigger, "timer", "the timer ran during the hold");
        assert!(last.summary.contains("drift left in place"), "{last:#?}");
        c.until("the hold's end and the repair", 300, |s| {
            s.hold.is_none()
                && s.last_pass
                    .as_ref()
                    .is_some_and(|p| p.summary.starts_with("drift repaired"))
        })
        .await;
    })
    .await;
    assert_eq!(w.motd(), "one");
    let repair = history(&state).await.remove(0);
    assert_eq!(
        (repair.kind.as_str(), repair.trigger.as_str()),
        ("drift", "timer")
    );
    assert!(repair.summary.contains("/etc/motd"), "{repair:#?}");
}

#[tokio::test(start_paused = true)]
async fn startup_after_an_interrupted_switch_and_a_changed_definition_converges_on_the_new_one() {
    let (w, mut d) = World::started(&definition("one")).await;
    // The daemon is killed in the middle of the switch to "two": `current` flipped, the
    // restarted service's settle wait not over (the pass's future dropped there, as a kill -9
    // leaves it).
    let two = definition("two")
        .replace("infinity", "1000")
        .replace("version: 1\n", "version: 1\nstrackt: { settle: 30s }\n");
    w.write(&two);
    let cut = tokio::time::timeout(Duration::from_secs(10), d.pass(Trigger::FileChange, false));
    assert!(cut.await.is_err(), "the switch was cut off");
    assert_eq!(d.store.current().expect("current"), Some(2));
    assert!(generations(&d)
        .await
        .contains(&(2, GenerationState::Switching)));
    drop(d);
    // Saved while the daemon was down: the watcher that would see it is not running yet.
    w.write(&definition("three"));
    let mut d = w.daemon();
    d.startup().await;
    assert_eq!(w.motd(), "three");
    let status = d.status.borrow().clone();
    assert_eq!(status.current_generation, Some(3));
    assert_eq!(status.definition_problem, None);
    let current = d.current().expect("current").expect("a generation");
    assert_eq!(
        current.manifest.definition_sha256,
        sha256_hex(definition("three").as_bytes())
    );
    let rows = generations(&d).await;
    assert!(
        rows.iter().all(|(_, state)| !state.in_progress()),
        "{rows:?}"
    );
    assert!(rows.contains(&(3, GenerationState::Active)), "{rows:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_switch_goes_back_to_the_previous_generation_and_is_not_retried() {
    let (w, mut d) = World::started(&definition("one")).await;
    w.write(&definition("two").replace("/bin/sleep infinity", "/bin/false"));
    let op = d.pass(Trigger::FileChange, false).await;
    assert_eq!(op.outcome, Outcome::RolledBack, "{op:#?}");
    assert_eq!(w.motd(), "one");
    assert!(w.host.running("hello.service").is_some());
    let status = d.status.borrow().clone();
    assert_eq!(status.current_generation, Some(1));
    assert_eq!(status.health, "failed");
    assert!(status.definition_problem.is_some(), "{status:#?}");
    let rows = generations(&d).await;
    assert!(rows.contains(&(1, GenerationState::Active)), "{rows:?}");
    assert!(rows.contains(&(2, GenerationState::RolledBack)), "{rows:?}");
    // The timer does not try the same definition again.
    d.pass(Trigger::Timer, false).await;
    assert_eq!(generations(&d).await.len(), 2);
    assert_eq!(d.store.current().expect("current"), Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_security_policy_upgrades_at_its_time_and_not_before() {
    let w = World::new();
    {
        let mut host = w.host.state();
        host.repository
            .insert("demo-lib".into(), vec!["1.0".into(), "1.1".into()]);
        host.security.insert(("demo-lib".into(), "1.1".into()));
    }
    // `daily` is 03:00 UTC; the fake clock starts at midnight.
    let pinned = |version: &str| {
        format!(
            "version: 1\nstrackt:\n  updates: {{ check: daily, apply: security }}\npackages:\n  demo-lib: \"{version}\"\n"
        )
    };
    w.write(&pinned("1.0"));
    let mut d = w.daemon();
    d.startup().await;
    let state = d.state.clone();
    let w = &w;
    with_loop(&mut d, |mut c| async move {
        tokio::time::sleep(Duration::from_secs(2 * 3600 + 55 * 60)).await;
        assert_eq!(c.status.borrow().current_generation, Some(1), "too early");
        c.until("the scheduled upgrade", 10 * 60, |s| {
            s.current_generation == Some(2)
        })
        .await;
    })
    .await;
    let installed = w.host.state().installed.get("demo-lib").cloned();
    assert_eq!(installed.expect("installed").version, "1.1");
    let file = std::fs::read_to_string(w.paths().definition).expect("definition");
    assert_eq!(file, pinned("1.1"), "the definition the policy rewrote");
    let ops = history(&state).await;
    let upgrade = ops
        .iter()
        .find(|o| o.trigger == "security")
        .expect("logged");
    assert_eq!(upgrade.outcome, Outcome::Success, "{upgrade:#?}");
    assert!(
        upgrade
            .summary
            .starts_with("scheduled (strackt.updates: check"),
        "{upgrade:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn apply_confirm_takes_a_save_the_watcher_just_applied_and_only_a_recent_one() {
    for (after_save, armed) in [(30, Some((2, 1))), (90, None)] {
        let (w, mut d) = World::started(&definition("one")).await;
        // Saved, and applied by the watcher's pass before the user runs the command.
        w.write(&definition("two"));
        d.pass(Trigger::FileChange, false).await;
        let pending = with_loop(&mut d, |c| async move {
            tokio::time::sleep(Duration::from_secs(after_save)).await;
            let op = c.ask(|r| Request::Apply(Some(60), r)).await;
            assert_eq!(op.outcome, Outcome::Success);
            let pending = c.status.borrow().pending_confirm.clone();
            pending.map(|p| (p.generation, p.previous))
        })
        .await;
        assert_eq!(pending, armed, "{after_save}s after the save");
    }
}

/// What the control socket answers the request `make` builds, asked of the loop behind `c`
/// as `api::control` asks it: the reply (the loop's error as the answer carries it), and the
/// answer line it becomes.
async fn answered<T: serde::Serialize>(
    c: &Control,
    make: impl FnOnce(Reply<T>) -> Request,
) -> (Result<T, AnswerError>, ControlResponse) {
    let reply = crate::api::control::ask(&c.requests, make)
        .await
        .and_then(|r| r.map_err(AnswerError::Loop));
    let line = match &reply {
        Ok(data) => response(serde_json::to_value(data).map_err(AnswerError::from)),
        Err(e) => refusal(e),
    };
    (reply, line)
}

/// The driver's error an answer carries.
fn control_error(answer: &AnswerError) -> &ControlError {
    match answer {
        AnswerError::Loop(failed) => failed
            .error()
            .downcast_ref::<ControlError>()
            .expect("a ControlError"),
        other => panic!("not the loop's error: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn refused_requests_reach_the_control_answer_as_their_error_and_class() {
    let (_w, mut d) = World::started(&definition("one")).await;
    with_loop(&mut d, |c| async move {
        let (reply, line) = answered(&c, Request::Confirm).await;
        let failed = reply.expect_err("nothing to confirm");
        assert!(
            matches!(control_error(&failed), ControlError::NothingToConfirm),
            "{failed:?}"
        );
        assert!(!failed.is_transient());
        assert!(!line.ok);
        assert_eq!(
            line.error.as_deref(),
            Some("nothing is waiting for confirmation")
        );

        let (reply, line) = answered(&c, |r| Request::Rollback(Some(9), r)).await;
        let failed = reply.expect_err("no generation 9");
        assert!(
            matches!(control_error(&failed), ControlError::NoGeneration(9)),
            "{failed:?}"
        );
        assert_eq!(
            line.error.as_deref(),
            Some("there is no generation 9 (see `strackt generations`)")
        );

        let change = HoldChange::For {
            seconds: 0,
            reason: None,
        };
        let (reply, line) = answered(&c, |r| Request::Hold(change, r)).await;
        let failed = reply.expect_err("0s");
        assert!(
            matches!(control_error(&failed), ControlError::OutOfRange(_)),
            "{failed:?}"
        );
        assert!(!failed.is_transient());
        assert_eq!(
            line.error.as_deref(),
            Some("--for must be between 1s and 30days")
        );
        assert_eq!(c.status.borrow().hold, None, "nothing was held");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_rollback_to_a_pruned_generation_while_the_mirror_is_offline_fails_transiently() {
    let w = World::new();
    w.host
        .state()
        .repository
        .insert("demo-lib".into(), vec!["1.0".into(), "1.1".into()]);
    let pinned = |version: &str, motd: &str| {
        format!(
            "{}strackt: {{ keep_generations: 2 }}\npackages:\n  demo-lib: \"{version}\"\n",
            definition(motd)
        )
    };
    w.write(&pinned("1.0", "one"));
    let mut d = w.daemon();
    d.startup().await;
    for (version, motd) in [("1.1", "two"), ("1.1", "three"), ("1.1", "four")] {
        w.write(&pinned(version, motd));
        let op = d.pass(Trigger::FileChange, false).await;
        assert_eq!(op.outcome, Outcome::Success, "{op:#?}");
    }
    let on_disk = d.store.list().expect("store");
    assert!(!on_disk.contains(&1), "generation 1 pruned: {on_disk:?}");
    w.host.state().offline = true;
    let host = w.host.clone();
    with_loop(&mut d, |c| async move {
        let (reply, line) = answered(&c, |r| Request::Rollback(Some(1), r)).await;
        let failed = reply.expect_err("cannot fetch demo-lib 1.0");
        assert!(
            matches!(
                control_error(&failed),
                ControlError::NotRebuilt {
                    id: 1,
                    why: Unrebuildable::Fetch { .. }
                }
            ),
            "{failed:?}"
        );
        assert!(failed.is_transient(), "the mirror may answer later");
        assert_eq!(
            line.error.as_deref(),
            Some("generation 1 cannot be rebuilt from its record: package demo-lib 1.0: apt-get: could not connect to the mirror")
        );
        // Once the mirror answers, the same request succeeds.
        host.state().offline = false;
        let (reply, line) = answered(&c, |r| Request::Rollback(Some(1), r)).await;
        let op = reply.expect("rolled back");
        assert_eq!(op.outcome, Outcome::Success, "{op:#?}");
        assert!(line.ok);
    })
    .await;
    assert_eq!(w.motd(), "one");
}
