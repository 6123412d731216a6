//! Component tests of backups and restores on the fake host: restic is the fake's model of one
//! repository, pg_dump, psql and git the fake's programs, and the app is deployed by the
//! deployer's own harness ([`crate::deploy::tests::Harness`]).

use std::time::Duration;

use super::*;
use crate::deploy::tests::{steps, Harness, COMMITS, SERVICE};
use crate::host::fake::{FakeHost, FakeSnapshot};
use crate::host::processes::{End, Output};
use crate::ops::Outcome;

/// The app's backups: its database, to an S3 bucket.
const BACKUPS: &str = "backups:\n  shop:\n    database: true\n    paths: [storage]\n    to:\n      s3: { endpoint: \"http://127.0.0.1:9\", region: us-east-1, bucket: backups, credentials: { secret: s3 } }\n";

/// What `/status` would show of the backups.
#[derive(Debug, Default)]
struct Board(Mutex<BTreeMap<String, BackupState>>);

impl StatusBoard for Board {
    fn digest(&self) -> Option<String> {
        None
    }
    fn set_backup(&self, app: &str, f: &mut dyn FnMut(&mut BackupState)) {
        let mut all = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(all.entry(app.to_string()).or_default());
    }
    fn live_generations(&self) -> futures_util::stream::BoxStream<'static, Option<u64>> {
        Box::pin(futures_util::stream::empty())
    }
}

/// The backup service beside `h`'s deployer, with the team key in its vault.
fn backups(h: &Harness) -> (Arc<Backups<FakeHost>>, Arc<Board>) {
    let root = h.dir.path().join("state");
    Vault::new(&root).init().expect("the team key");
    let board = Arc::new(Board::default());
    let b = Backups::new(
        h.state.clone(),
        h.deployer.clone(),
        &root,
        &h.dir.path().join("cache"),
        board.clone(),
    );
    (b, board)
}

/// Operation `id` once it is over and no backup runs.
async fn finished(h: &Harness, b: &Backups<FakeHost>, id: i64) -> Operation {
    for _ in 0..2000 {
        let op = h.finished(id).await;
        let running = !b
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty();
        if !running {
            return op;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the backup of operation {id} did not end");
}

#[tokio::test]
async fn a_backup_whose_dump_fails_writes_no_snapshot_and_is_recorded_failed() {
    let h = Harness::deployed(BACKUPS).await;
    let (b, board) = backups(&h);
    h.host.processes.script(
        "pg_dump",
        Output::with(
            End::Exited(1),
            "half a dump",
            "pg_dump: error: connection to server lost\n",
        ),
    );

    let id = b.start("shop", "cli").await.expect("the backup starts");
    let op = finished(&h, &b, id).await;

    assert_eq!(op.outcome, Outcome::Failed, "{op:?}");
    let reason = op.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("pg_dump: error: connection to server lost"),
        "{reason}"
    );
    let steps = steps(&op);
    assert!(steps.contains(&("repository", "ok")), "{steps:?}");
    assert!(steps.contains(&("database", "failed")), "{steps:?}");
    // Nothing of the run stays: not the dump, not the files read beside it.
    let processes = h.host.processes.state();
    assert!(processes.restic.initialized);
    assert_eq!(processes.restic.snapshots, []);
    drop(processes);
    let shown = board
        .0
        .lock()
        .expect("board")
        .get("shop")
        .cloned()
        .unwrap_or_default();
    assert_eq!(shown.last_outcome, Some(Outcome::Failed));
    assert_eq!(shown.last_operation, Some(id));
    assert!(shown
        .last_error
        .is_some_and(|e| e.contains("pg_dump: error")));
}

#[tokio::test]
async fn a_restore_refused_at_its_check_leaves_the_app_untouched() {
    let h = Harness::deployed(BACKUPS).await;
    let (b, _) = backups(&h);
    let upload = h.dirs().shared().join("storage/photo.jpg");
    std::fs::write(&upload, "the photo as it is now").expect("upload");
    let pid = h.host.running(SERVICE);
    let socket = h.host.running("strackt-app-shop.socket");
    assert!(socket.is_some());
    // A run taken at a commit the branch no longer has (its history was rewritten).
    let run = "web1-20261201T030000Z";
    let gone = "3333333333333333333333333333333333333333";
    {
        let mut processes = h.host.processes.state();
        processes.restic.initialized = true;
        for (n, kind) in ["database", "files"].iter().enumerate() {
            processes.restic.snapshots.push(FakeSnapshot {
                id: format!("{:064x}", n + 1),
                time: "2026-12-01T03:00:00Z".into(),
                hostname: "web1".into(),
                paths: vec![format!("/srv/shop/shared/storage/{kind}")],
                tags: [
                    "strackt".to_string(),
                    "app=shop".into(),
                    format!("run={run}"),
                    "trigger=schedule".into(),
                    format!("kind={kind}"),
                    format!("commit={gone}"),
                ]
                .into(),
                content: Vec::new(),
            });
        }
        processes.calls.clear();
    }
    let scratch = h.dir.path().join("scratch");
    h.host.processes.script(
        "mktemp",
        Output::with(End::Exited(0), &format!("{}\n", scratch.display()), ""),
    );
    let journal = h.host.state().journal.len();

    let id = b
        .start_restore("shop", run, false)
        .await
        .expect("the restore starts");
    let op = h.finished(id).await;

    assert_eq!(op.outcome, Outcome::Failed, "{op:?}");
    let reason = op.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!("commit {gone} is not on branch main")),
        "{reason}"
    );
    assert_eq!(steps(&op), [("check", "failed")]);
    // Nothing of the app was touched: its units ran on, its files and release are as they were.
    assert_eq!(h.host.state().journal[journal..], [] as [String; 0]);
    assert_eq!(h.host.running(SERVICE), pid);
    assert_eq!(h.host.running("strackt-app-shop.socket"), socket);
    assert_eq!(
        std::fs::read_to_string(&upload).expect("upload"),
        "the photo as it is now"
    );
    assert_eq!(h.dirs().live(), Some(1));
    assert_eq!(
        h.releases().await,
        [(1, "live".to_string())],
        "deployed at {}",
        COMMITS[1]
    );
    let restic: Vec<String> = h
        .host
        .processes
        .state()
        .calls
        .iter()
        .filter(|c| c.program == "restic")
        .map(|c| c.args.join(" "))
        .collect();
    assert!(!restic.iter().any(|a| a.contains("restore")), "{restic:?}");
}

/// Generation 1 of the harness's definition, live: a run stores its bundle beside the app's
/// snapshots.
fn live_generation(h: &Harness) {
    let definition = h.dir.path().join("server.yaml");
    let text = std::fs::read_to_string(&definition).expect("the definition");
    let store = crate::generation::Store::open(&h.dir.path().join("state")).expect("store");
    let parsed = crate::definition::parse(&text, &definition).expect("valid");
    let rendered = crate::generation::render(&parsed);
    store.build(1, &rendered, "t").expect("generation 1");
    store.flip(Some(1)).expect("live");
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_backup_runs_at_its_time_on_the_machines_clock_and_is_named_by_it() {
    // The fake clock starts at 2026-01-01T00:00:00Z; the backup is due at 00:20.
    let backups_at = BACKUPS.replace("database: true", "database: true\n    schedule: 20 0 * * *");
    let h = Harness::deployed(&backups_at).await;
    live_generation(&h);
    let (b, _) = backups(&h);
    b.spawn_scheduler();
    let backups_so_far = || async {
        h.state
            .call(|s| s.operations(50, None))
            .await
            .expect("operations")
            .into_iter()
            .filter(|o| o.kind == "backup")
            .collect::<Vec<_>>()
    };

    tokio::time::sleep(Duration::from_secs(19 * 60)).await;
    assert_eq!(backups_so_far().await, [], "a backup ran before 00:20");
    assert_eq!(h.host.processes.state().restic.snapshots, []);

    tokio::time::sleep(Duration::from_secs(2 * 60)).await;
    let ran = backups_so_far().await;
    assert_eq!(ran.len(), 1, "{ran:#?}");
    let op = finished(&h, &b, ran[0].id).await;
    assert_eq!(op.outcome, Outcome::Success, "{op:#?}");
    assert_eq!(op.trigger, "schedule");
    assert!(
        op.started.starts_with("2026-01-01T00:20:"),
        "{}",
        op.started
    );
    let finished_at = op.finished.as_deref().unwrap_or_default();
    assert!(
        finished_at.starts_with("2026-01-01T00:20:"),
        "{finished_at}"
    );
    let snapshots = h.host.processes.state().restic.snapshots.clone();
    assert!(!snapshots.is_empty());
    let run = format!("run={}-20260101T0020", server_name());
    for s in &snapshots {
        assert!(s.tags.iter().any(|t| t.starts_with(&run)), "{:?}", s.tags);
    }
}

/// restic gets the app's files as a pinned view ([`crate::host::tree::View`]), never as bare
/// paths it would resolve itself through the app's tree.
#[tokio::test]
async fn a_backup_reads_the_apps_files_through_a_pinned_view() {
    let h = Harness::deployed(BACKUPS).await;
    live_generation(&h);
    let (b, _) = backups(&h);
    let id = b.start("shop", "cli").await.expect("the backup starts");
    let op = finished(&h, &b, id).await;
    assert_eq!(op.outcome, Outcome::Success, "{op:#?}");
    let storage = h.dir.path().join("srv/shop/shared/storage");
    let calls = h.host.processes.state().calls.clone();
    let files: Vec<_> = calls
        .iter()
        .filter(|c| c.program == "restic" && c.args.iter().any(|a| a == "backup"))
        .filter(|c| !c.args.iter().any(|a| a == "--stdin"))
        .collect();
    assert_eq!(files.len(), 1, "{calls:#?}");
    assert_eq!(files[0].pinned, std::slice::from_ref(&storage));
    assert_eq!(files[0].args.last(), Some(&storage.display().to_string()));
}

/// A run of the app under way refuses a second one, as a failure that passes by itself.
#[tokio::test]
async fn a_second_run_of_an_app_is_refused_as_already_running() {
    let h = Harness::deployed(BACKUPS).await;
    let (b, _) = backups(&h);
    let going = b.mark_running("shop").expect("the first run");

    let e = b.start("shop", "cli").await.expect_err("refused");
    assert!(
        matches!(&e, BackupError::AlreadyRunning(app) if app == "shop"),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "a backup of shop is already running");
    assert!(e.is_transient());
    drop(going);
    let e = b.list("nope", None).await.expect_err("not backed up");
    assert!(
        matches!(&e, BackupError::NotBackedUp(app) if app == "nope"),
        "{e:?}"
    );
    assert!(!e.is_transient());
}

/// The words and the cause of a step's failure (the test fails on any other error).
fn step_failure(e: &BackupError) -> (&String, &BackupError) {
    match e {
        BackupError::Step {
            text,
            cause: Some(cause),
        } => (text, cause),
        _ => panic!("not a step's failure: {e:?}"),
    }
}

/// One run of the app's backup, taken as a scheduled run is, which fails: its error and its
/// operation's record.
async fn a_failed_run(b: &Backups<FakeHost>) -> (BackupError, Progress) {
    let def = b.load().expect("the definition");
    let (spec, app_spec) = spec_of(&def, "shop").expect("backed up");
    let mut p = b
        .deployer
        .progress("backup", "cli", "shop")
        .await
        .expect("an operation");
    let e = b
        .take(&mut p, "shop", &spec, &app_spec, "cli")
        .await
        .expect_err("the run fails");
    (e, p)
}

/// A destination that does not answer fails the run's first step; the error keeps restic's
/// failure as its cause, so the run reads as worth trying again.
#[tokio::test]
async fn an_unreachable_destination_fails_the_run_as_a_transient_step() {
    let h = Harness::deployed(BACKUPS).await;
    let (b, _) = backups(&h);
    h.host.processes.script(
        "restic",
        Output::with(
            End::Exited(1),
            "",
            "Fatal: unable to open config file: Stat: Get \"http://127.0.0.1:9/backups/config\": dial tcp 127.0.0.1:9: connect: connection refused\nIs there a repository at the following location?\n",
        ),
    );
    let (e, p) = a_failed_run(&b).await;
    let (text, cause) = step_failure(&e);
    assert!(
        matches!(cause, BackupError::Unreachable { .. }),
        "{cause:?}"
    );
    assert!(
        text.starts_with(
            "repository failed: the backup destination s3:http://127.0.0.1:9/backups is unreachable: "
        ),
        "{text}"
    );
    assert!(e.is_transient());
    assert_eq!(
        steps(&p.finish(&Err(e.to_string())).await),
        [("repository", "failed")]
    );
}

/// A dump that fails beside the files being read: the run's error is the database step's,
/// with the dump's failure (permanent) as its cause.
#[tokio::test]
async fn a_failed_dump_surfaces_as_the_database_steps_dump_failure() {
    let h = Harness::deployed(BACKUPS).await;
    let (b, _) = backups(&h);
    h.host.processes.script(
        "pg_dump",
        Output::with(
            End::Exited(1),
            "half a dump",
            "pg_dump: error: connection to server lost\n",
        ),
    );
    let (e, _) = a_failed_run(&b).await;
    let (text, cause) = step_failure(&e);
    assert!(matches!(cause, BackupError::Dump { .. }), "{cause:?}");
    assert!(
        text.starts_with("database failed: the dump failed"),
        "{text}"
    );
    assert!(!e.is_transient());
}

/// A restore of a run the repository does not have stops at its check, as that refusal.
#[tokio::test]
async fn a_restore_of_an_unknown_run_is_refused_as_no_run() {
    let h = Harness::deployed(BACKUPS).await;
    let (b, _) = backups(&h);
    h.host.processes.state().restic.initialized = true;
    let def = b.load().expect("the definition");
    let (spec, app_spec) = spec_of(&def, "shop").expect("backed up");
    let mut p = h
        .deployer
        .progress("restore", "cli", "shop")
        .await
        .expect("an operation");

    let e = b
        .put_back(
            &mut p,
            ("shop", "web1-20261201T030000Z", false),
            &spec,
            &app_spec,
            &def,
        )
        .await
        .expect_err("no such run");
    let (text, cause) = step_failure(&e);
    assert!(
        matches!(cause, BackupError::NoRun { run, app, .. } if run == "web1-20261201T030000Z" && app == "shop"),
        "{cause:?}"
    );
    assert_eq!(
        text,
        "check failed: no backup `web1-20261201T030000Z` of shop at s3:http://127.0.0.1:9/backups (see `strackt backup list shop`)"
    );
    assert!(!e.is_transient());
}
