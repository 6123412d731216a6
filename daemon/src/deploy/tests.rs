//! Component tests of deploys on the fake host ([`FakeHost`]): systemd, health probes, git,
//! pg_dump and psql are the fake's; strackt's state root, the state database and the app's
//! directories are tempdirs, so what a user sees — the operations log, the releases, `current`
//! and the app's units — is asserted as it is on a server. The harness is shared with the
//! backup and restore tests.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::host::fake::FakeHost;
use crate::host::processes::{End, Output};
use crate::ops::{Operation, Outcome};
use crate::state::State;
use crate::status::Status;

/// The app's repository, as its definition names it.
pub(crate) const REPO: &str = "/srv/git/shop.git";
/// The commits of its branch `main`, oldest first.
pub(crate) const COMMITS: [&str; 2] = [
    "1111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222",
];
/// The app's live service (socket mode).
pub(crate) const SERVICE: &str = "strackt-app-shop.service";

/// A deployer of the app `shop` (a database, a build and a migration step) on a fake host.
pub(crate) struct Harness {
    /// Holds the state root, the definition, the secrets and the app's directory.
    pub(crate) dir: tempfile::TempDir,
    pub(crate) host: Arc<FakeHost>,
    pub(crate) state: StateHandle,
    pub(crate) deployer: Arc<Deployer<FakeHost>>,
}

impl Harness {
    /// The app, with `more` appended to its definition (a `backups:` section).
    pub(crate) fn new(more: &str) -> Harness {
        // An app may not live in /tmp (`check` refuses it): the whole test lives in a
        // directory of its own under /srv instead, removed at the end like any tempdir.
        std::fs::create_dir_all("/srv").expect("/srv");
        let dir = tempfile::Builder::new()
            .prefix("strackt-test-")
            .tempdir_in("/srv")
            .expect("tempdir");
        let root = dir.path().join("state");
        let secrets = dir.path().join("secrets");
        std::fs::create_dir_all(&root).expect("state root");
        std::fs::create_dir_all(&secrets).expect("secrets");
        std::fs::write(secrets.join("shop_db"), "pw\n").expect("secret");
        std::fs::write(
            secrets.join("s3"),
            "AWS_ACCESS_KEY_ID=k\nAWS_SECRET_ACCESS_KEY=s\n",
        )
        .expect("secret");
        let definition = dir.path().join("server.yaml");
        let text = format!(
            "version: 1\n\
             apps:\n  shop:\n    repo: {REPO}\n    path: {}\n    user: root\n    shared: [storage]\n\
             \x20   database: {{ engine: postgresql, host: 127.0.0.1, port: 5432, name: shop, user: shop, password: {{ secret: shop_db }} }}\n\
             \x20   steps: {{ build: make build, migrate: make migrate }}\n\
             \x20   service: {{ exec: /usr/bin/shop, listen: \"127.0.0.1:8000\", health: /health }}\n{more}",
            dir.path().join("srv/shop").display()
        );
        std::fs::write(&definition, text).expect("definition");
        let state = StateHandle::new(State::open(&root.join("state.db")).expect("state"));
        let host = Arc::new(FakeHost::default());
        host.processes.state().git.branches.insert(
            (REPO.into(), "main".into()),
            COMMITS.iter().map(|c| (*c).to_string()).collect(),
        );
        let (_, status) = tokio::sync::watch::channel(Status::default());
        let deployer = Deployer::with_secrets(
            state.clone(),
            host.clone(),
            (definition, secrets, root),
            Arc::new(Metrics::new(status)),
        );
        Harness {
            dir,
            host,
            state,
            deployer,
        }
    }

    /// The app's directories.
    pub(crate) fn dirs(&self) -> AppDirs {
        AppDirs::new(&self.dir.path().join("srv/shop").display().to_string())
    }

    /// Operation `id` once it is over and the app is free again.
    pub(crate) async fn finished(&self, id: i64) -> Operation {
        for _ in 0..2000 {
            let op = self
                .state
                .call(move |s| s.operations(1, Some(id)))
                .await
                .expect("operations")
                .pop()
                .expect("the operation");
            let busy = !self
                .deployer
                .busy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_empty();
            if op.outcome != Outcome::Running && !busy {
                return op;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("operation {id} did not finish");
    }

    /// A deploy of the app, finished.
    pub(crate) async fn deploy(&self) -> Operation {
        let id = self
            .deployer
            .deploy("shop".into(), None)
            .await
            .expect("the deploy starts");
        self.finished(id).await
    }

    /// The app deployed once: release 1 live, its service running.
    pub(crate) async fn deployed(more: &str) -> Harness {
        let h = Harness::new(more);
        let op = h.deploy().await;
        assert_eq!(op.outcome, Outcome::Success, "{op:?}");
        assert_eq!(h.dirs().live(), Some(1));
        assert!(h.host.running(SERVICE).is_some());
        h
    }

    /// The releases of the app, oldest first, as (id, state).
    pub(crate) async fn releases(&self) -> Vec<(u64, String)> {
        let view = self
            .deployer
            .releases("shop".into())
            .await
            .expect("releases");
        let mut rows: Vec<(u64, String)> = view
            .releases
            .into_iter()
            .map(|r| (r.id, r.state.to_string()))
            .collect();
        rows.reverse();
        rows
    }
}

/// The steps of `op` as (action, outcome).
pub(crate) fn steps(op: &Operation) -> Vec<(&str, &str)> {
    op.steps
        .iter()
        .map(|s| (s.action.as_str(), s.outcome.as_str()))
        .collect()
}

#[tokio::test]
async fn a_deploy_whose_migration_fails_leaves_the_live_release_live() {
    let h = Harness::deployed("").await;
    let pid = h.host.running(SERVICE);
    // The second deploy's build passes, its migration fails.
    let sh = "/bin/sh";
    h.host
        .processes
        .script(sh, Output::with(End::Exited(0), "built\n", ""));
    h.host.processes.script(
        sh,
        Output::with(
            End::Exited(3),
            "",
            "ERROR: relation \"orders\" already exists\n",
        ),
    );

    let op = h.deploy().await;

    assert_eq!(op.outcome, Outcome::Failed, "{op:?}");
    let reason = op.reason.clone().unwrap_or_default();
    assert!(reason.contains("migrate"), "{reason}");
    let steps = steps(&op);
    assert!(steps.contains(&("migrate", "failed")), "{steps:?}");
    // The database is put back from the dump taken before the migration.
    assert!(steps.contains(&("restore-database", "ok")), "{steps:?}");
    assert!(!steps.iter().any(|(a, _)| *a == "switch"), "{steps:?}");
    // The live release is untouched: `current`, its process, its files.
    assert_eq!(h.dirs().live(), Some(1));
    assert_eq!(h.host.running(SERVICE), pid);
    assert!(h.dirs().release(1).is_dir());
    // The new release is gone and listed as failed.
    assert!(!h.dirs().release(2).exists());
    assert_eq!(
        h.releases().await,
        [(1, "live".to_string()), (2, "failed".to_string())]
    );
}

#[tokio::test]
async fn a_deploy_is_refused_when_its_pre_migrate_dump_cannot_be_recorded() {
    let h = Harness::deployed("").await;
    let pid = h.host.running(SERVICE);
    // The state database refuses exactly the write that records a release's dump.
    let db = rusqlite::Connection::open(h.dir.path().join("state/state.db")).expect("db");
    db.execute_batch(
        "CREATE TRIGGER no_dump BEFORE UPDATE OF dump ON releases WHEN NEW.dump IS NOT NULL
         BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;",
    )
    .expect("trigger");
    h.host.processes.state().calls.clear();

    let op = h.deploy().await;

    assert_eq!(op.outcome, Outcome::Failed, "{op:?}");
    let reason = op.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("recording the dump of release 2 before its migration")
            && reason.contains("the migration was not started"),
        "{reason}"
    );
    // The migration never ran, so there was nothing to put back.
    let steps = steps(&op);
    assert!(steps.contains(&("dump", "ok")), "{steps:?}");
    assert!(
        !steps
            .iter()
            .any(|(a, _)| *a == "migrate" || *a == "restore-database"),
        "{steps:?}"
    );
    let ran: Vec<String> = h
        .host
        .processes
        .state()
        .calls
        .iter()
        .map(|c| c.args.join(" "))
        .collect();
    assert!(!ran.iter().any(|a| a.contains("make migrate")), "{ran:?}");
    assert_eq!(h.dirs().live(), Some(1));
    assert_eq!(h.host.running(SERVICE), pid);
    assert!(!h.dirs().release(2).exists());
}

#[tokio::test]
async fn a_release_rollback_with_its_database_puts_back_the_dump_taken_before_the_later_migration()
{
    let h = Harness::deployed("").await;
    let op = h.deploy().await;
    assert_eq!(op.outcome, Outcome::Success, "{op:?}");
    assert_eq!(h.dirs().live(), Some(2));
    let pid = h.host.running(SERVICE);
    h.host.processes.state().calls.clear();

    let op = h
        .deployer
        .rollback_release("shop".into(), None, true)
        .await
        .expect("the rollback starts");

    assert_eq!(op.outcome, Outcome::Success, "{op:?}");
    let steps = steps(&op);
    assert_eq!(
        steps,
        [
            ("restore-database", "ok"),
            ("switch", "ok"),
            ("health", "ok")
        ]
    );
    assert_eq!(h.dirs().live(), Some(1));
    assert_ne!(
        h.host.running(SERVICE),
        pid,
        "the service runs release 1 now"
    );
    // The dump release 2 took before its migration is the one restored.
    let dump = h.deployer.app_data("shop").dump(2).display().to_string();
    let restored = h
        .host
        .processes
        .state()
        .calls
        .iter()
        .find(|c| c.program == "pg_restore")
        .map(|c| c.args.clone())
        .expect("pg_restore ran");
    assert_eq!(restored.last(), Some(&dump));
    let releases = h.releases().await;
    assert!(releases.contains(&(1, "live".to_string())), "{releases:?}");
}

#[tokio::test]
async fn a_release_that_fails_its_validation_boot_is_stopped_and_never_goes_live() {
    let h = Harness::deployed("").await;
    let pid = h.host.running(SERVICE);
    let socket = "strackt-validate-shop-2.socket";
    h.host.state().failing.insert(socket.into());

    let op = h.deploy().await;

    assert_eq!(op.outcome, Outcome::Failed, "{op:?}");
    let steps = steps(&op);
    assert!(steps.contains(&("validate-boot", "failed")), "{steps:?}");
    assert!(
        !steps.iter().any(|(a, _)| *a == "migrate" || *a == "switch"),
        "{steps:?}"
    );
    // Its units were started on their own, then stopped again.
    let journal = h.host.state().journal.clone();
    for event in [
        format!("start-transient {socket}"),
        format!("stop {socket}"),
        "stop strackt-validate-shop-2.service".to_string(),
    ] {
        assert!(journal.contains(&event), "{event} not in {journal:?}");
    }
    assert_eq!(h.dirs().live(), Some(1));
    assert_eq!(h.host.running(SERVICE), pid);
    assert!(!h.dirs().release(2).exists());
}

#[tokio::test]
async fn refusals_surface_as_their_kind_and_change_nothing() {
    let h = Harness::deployed("").await;
    let pid = h.host.running(SERVICE);

    // Another operation on the app: it ends by itself, so asking again later may succeed.
    let claim = h.deployer.claim("restore", "shop").expect("claimed");
    let busy = h
        .deployer
        .deploy("shop".into(), None)
        .await
        .expect_err("the app is busy");
    assert!(
        matches!(&busy, DeployError::Busy { kind: "restore", app, .. } if app == "shop"),
        "{busy:?}"
    );
    assert!(busy.is_transient());
    drop(claim);

    // Releases to go back to that are not there.
    let rollback = |to| h.deployer.rollback_release("shop".into(), to, false);
    let e = rollback(Some(9)).await.expect_err("no release 9");
    assert!(
        matches!(e, DeployError::ReleaseNotFound { id: 9, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "release 9 of shop is not on this server (see strackt releases shop)"
    );
    let e = rollback(Some(1)).await.expect_err("release 1 is live");
    assert!(matches!(e, DeployError::AlreadyLive { id: 1, .. }), "{e:?}");
    let e = rollback(None).await.expect_err("nothing before release 1");
    assert!(matches!(e, DeployError::NoEarlierRelease(_)), "{e:?}");
    assert!(!e.is_transient());
    let e = h
        .deployer
        .releases("blog".into())
        .await
        .expect_err("no such app");
    assert!(matches!(e, DeployError::UnknownApp { .. }), "{e:?}");

    // A secret gone: preflight names it, and the deploy does not start.
    std::fs::remove_file(h.dir.path().join("secrets/shop_db")).expect("rm secret");
    let e = h
        .deployer
        .deploy("shop".into(), None)
        .await
        .expect_err("preflight fails");
    let DeployError::NotStarted { source, .. } = &e else {
        panic!("{e:?}");
    };
    assert!(
        matches!(**source, DeployError::Preflight { .. }),
        "{source:?}"
    );
    assert!(e
        .to_string()
        .starts_with("deploy of shop did not start: preflight failed: "));
    assert!(e.to_string().contains("secret `shop_db` is missing"), "{e}");
    assert!(!e.is_transient());

    assert_eq!(h.dirs().live(), Some(1));
    assert_eq!(h.host.running(SERVICE), pid);
    assert_eq!(h.releases().await, [(1, "live".to_string())]);
}

#[tokio::test]
async fn recovery_stops_and_removes_the_validation_unit_files_an_older_strackt_left() {
    use crate::host::systemd::RUNTIME_UNIT_DIR;
    use crate::host::{JobKind, Systemd};
    let h = Harness::new("");
    let stale = format!("{}shop-7.service", units::VALIDATE_PREFIX);
    let runtime = std::path::Path::new(RUNTIME_UNIT_DIR);
    {
        let mut s = h.host.state();
        let unit = b"[Service]\nExecStart=/usr/bin/shop\n".to_vec();
        s.files
            .insert(runtime.join(&stale), (unit.clone(), 0o644, 0, 0));
        // Someone else's runtime unit is none of strackt's business.
        s.files
            .insert(runtime.join("other.service"), (unit, 0o644, 0, 0));
    }
    h.host.daemon_reload().await.expect("reload");
    h.host
        .run_job(JobKind::Start, &stale)
        .await
        .expect("an older strackt's validation boot");
    assert!(h.host.running(&stale).is_some());

    h.deployer.recover().await;

    assert_eq!(h.host.running(&stale), None);
    assert_eq!(
        h.host.runtime_unit_files(units::VALIDATE_PREFIX),
        Vec::<String>::new()
    );
    assert!(h
        .host
        .state()
        .files
        .contains_key(&runtime.join("other.service")));
    // systemd was told: the unit is gone with its file.
    let state = h.host.unit_state(&stale).await.expect("state");
    assert_eq!(state.load_state, "not-found");
    let journal = h.host.state().journal.clone();
    let removed = format!("remove {RUNTIME_UNIT_DIR}/{stale}");
    let at = journal.iter().position(|j| *j == removed);
    assert!(at.is_some(), "{journal:?}");
    assert!(
        journal[at.unwrap_or_default()..].contains(&"daemon-reload".to_string()),
        "{journal:?}"
    );
}
