//! Package changes and apps: what uses a changed package is restarted and checked, a breaking
//! change rolls the host back, and what an app needs is kept.

use super::*;
use crate::ops::StepOutcome;

/// A world with an app `shop` (python, using `demo-lib`'s module) deployed and running, a
/// managed `hello` service (sleep) and `demo-lib` 1.0, 1.1, 2.0 in the repository.
async fn app_world() -> World {
    use crate::host::usage::ProcessInfo;
    let mut w = World::new();
    w.apps = Apps {
        checks: vec![apps::AppCheck {
            app: "shop".into(),
            serving: apps::Serving::Socket {
                service: "strackt-app-shop.service".into(),
                socket: "strackt-app-shop.socket".into(),
            },
            probe: crate::definition::HealthSpec {
                http: Some("http://127.0.0.1:8000/health".into()),
                ..Default::default()
            },
            within: Duration::from_secs(1),
        }],
        needs: Vec::new(),
    };
    {
        let mut s = w.host.state();
        s.repository.insert(
            "demo-lib".into(),
            vec!["1.0".into(), "1.1".into(), "2.0".into()],
        );
        s.package_files.insert(
            "demo-lib".into(),
            ["/usr/lib/python3/dist-packages/demo_lib.py".to_string()].into(),
        );
        for unit in ["strackt-app-shop.service", "strackt-app-shop.socket"] {
            s.vendor_units.insert(unit.into());
        }
        let proc = |exe: &str| ProcessInfo {
            pid: 1,
            exe: exe.into(),
            files: ["/usr/lib/x86_64-linux-gnu/libc.so.6".to_string()].into(),
        };
        s.processes.insert(
            "strackt-app-shop.service".into(),
            vec![proc("/usr/bin/python3.11")],
        );
        s.processes
            .insert("hello.service".into(), vec![proc("/usr/bin/sleep")]);
        // 2.0's module raises on import: the app stops answering.
        s.broken_by.insert(
            "http://127.0.0.1:8000/health".into(),
            ("demo-lib".into(), "2.0".into()),
        );
    }
    for unit in ["strackt-app-shop.socket", "strackt-app-shop.service"] {
        w.host
            .run_job(crate::host::JobKind::Start, unit)
            .await
            .expect("app starts");
    }
    w
}

const LIB: &str = "version: 1\nservices:\n  hello: { exec: /bin/sleep infinity }\npackages:\n  demo-lib: \"VERSION\"\n";

#[tokio::test]
async fn an_upgrade_restarts_the_app_using_the_package_and_checks_its_health() {
    let mut w = app_world().await;
    let g1 = build_locked(&mut w, &LIB.replace("VERSION", "1.0")).expect("lock 1.0");
    let r = w.switch(Some(&g1), None).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    let hello = w.host.running("hello.service");
    let app = w.host.running("strackt-app-shop.service");
    let g2 = build_locked(&mut w, &LIB.replace("VERSION", "1.1")).expect("lock 1.1");
    // `strackt plan` tells beforehand, from the files the package has now.
    let snap = observe(machine(&w.host), &g2, &w.owned, w.store.root(), &w.apps)
        .await
        .expect("observe");
    let p = plan(&g2, Some(&g1), &snap);
    let predicted = apps::predicted_restarts(machine(&w.host), &g2, &w.apps, &p, &snap).await;
    assert_eq!(
        predicted
            .iter()
            .map(|s| (s.action.target(), s.why.as_str()))
            .collect::<Vec<_>>(),
        [(
            "strackt-app-shop.service".to_string(),
            "uses demo-lib (upgraded 1.0 → 1.1)"
        )]
    );
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    let restart = r
        .steps
        .iter()
        .find(|s| s.action == "restart")
        .expect("a restart step");
    assert_eq!(
        (restart.target.as_str(), restart.detail.as_str()),
        (
            "strackt-app-shop.service",
            "uses demo-lib (upgraded 1.0 → 1.1)"
        )
    );
    assert!(r
        .steps
        .iter()
        .any(|s| s.action == "health" && s.target == "app shop" && s.outcome == StepOutcome::Ok));
    assert_ne!(w.host.running("strackt-app-shop.service"), app, "new PID");
    assert_eq!(
        w.host.running("hello.service"),
        hello,
        "hello uses no changed file"
    );
    // Nothing changed: no restart, no app check.
    let r = w.switch(Some(&g2), Some(&g2)).await;
    assert!(r
        .steps
        .iter()
        .all(|s| s.action != "restart" && s.action != "health"));
}

#[tokio::test]
async fn an_upgrade_breaking_an_app_rolls_the_host_back_and_restarts_it_on_the_old_package() {
    let mut w = app_world().await;
    let g1 = build_locked(&mut w, &LIB.replace("VERSION", "1.1")).expect("lock 1.1");
    assert_eq!(w.switch(Some(&g1), None).await.failure, None);
    let g2 = build_locked(&mut w, &LIB.replace("VERSION", "2.0")).expect("lock 2.0");
    w.host.state().offline = true;
    let r = w.switch(Some(&g2), Some(&g1)).await;
    let failure = r.failure.clone().expect("the switch fails");
    assert!(
        failure.starts_with("app shop failed its health check"),
        "{failure}"
    );
    assert!(
        r.rolled_back && r.rollback_failure.is_none(),
        "{:#?}",
        r.steps
    );
    assert_eq!(w.host.state().installed["demo-lib"].version, "1.1");
    let restarts: Vec<&str> = r
        .steps
        .iter()
        .filter(|s| s.action == "restart")
        .map(|s| s.detail.as_str())
        .collect();
    assert_eq!(
        restarts,
        [
            "uses demo-lib (upgraded 1.1 → 2.0)",
            "uses demo-lib (downgraded 2.0 → 1.1)"
        ]
    );
    // Removing the library the app needs: also rolled back, by the same checks.
    w.host.state().offline = false;
    w.host.state().broken_by.insert(
        "http://127.0.0.1:8000/health".into(),
        ("demo-lib".into(), "gone".into()),
    );
    let g3 = build_locked(
        &mut w,
        "version: 1\nservices:\n  hello: { exec: /bin/sleep infinity }\n",
    )
    .expect("no packages");
    let r = w.switch(Some(&g3), Some(&g1)).await;
    assert!(
        r.failure.is_none(),
        "the fake's app does not need the module: {:#?}",
        r.steps
    );
    assert!(r
        .steps
        .iter()
        .any(|s| s.action == "restart" && s.detail == "uses demo-lib (removed, was 1.1)"));
}

#[tokio::test]
async fn a_hand_installed_package_an_app_needs_is_kept_and_plan_says_why() {
    let mut w = World::new();
    w.apps.needs = vec![crate::plan::keep::Need::Unit {
        unit: "postgresql.service".into(),
        by: "app shop".into(),
    }];
    {
        let mut s = w.host.state();
        s.repository.insert("demo".into(), vec!["1.0".into()]);
        let hand = crate::host::packages::Installed {
            version: "15".into(),
            held: false,
            auto: false,
            essential: false,
        };
        for name in ["postgresql", "postgresql-common", "cowsay"] {
            s.installed.insert(name.into(), hand.clone());
        }
        s.depends
            .insert("postgresql".into(), vec!["postgresql-common".into()]);
        s.package_files.insert(
            "postgresql-common".into(),
            ["/lib/systemd/system/postgresql.service".to_string()].into(),
        );
    }
    w.owned.base_packages = Some(BTreeSet::new());
    let g1 = build_locked(&mut w, "version: 1\npackages:\n  demo: \"1.0\"\n").expect("lock");
    let p = w.plan_for(&g1).await;
    assert_eq!(
        p.kept.get("postgresql").map(String::as_str),
        Some(
            "depends on postgresql-common, which provides postgresql.service required by app shop"
        )
    );
    assert!(p.to_string().contains(
        "keep postgresql  (installed by hand, but depends on postgresql-common, which provides postgresql.service required by app shop)"
    ), "{p}");
    assert_eq!(w.switch(Some(&g1), None).await.failure, None);
    let s = w.host.state();
    assert!(
        s.installed.contains_key("postgresql") && s.installed.contains_key("postgresql-common")
    );
    assert!(!s.installed.contains_key("cowsay"), "nothing needs it");
}

#[tokio::test]
async fn an_app_stopped_by_hand_is_neither_restarted_nor_checked() {
    let mut w = app_world().await;
    let g1 = build_locked(&mut w, &LIB.replace("VERSION", "1.0")).expect("lock 1.0");
    assert_eq!(w.switch(Some(&g1), None).await.failure, None);
    w.host.stop_by_hand("strackt-app-shop.service");
    w.host.stop_by_hand("strackt-app-shop.socket");
    let g2 = build_locked(&mut w, &LIB.replace("VERSION", "1.1")).expect("lock 1.1");
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert!(
        r.steps.iter().all(|s| s.action != "restart"),
        "{:#?}",
        r.steps
    );
    assert!(r.steps.iter().any(|s| s.action == "health"
        && s.target == "app shop"
        && s.outcome == StepOutcome::Skipped));
    assert_eq!(w.host.running("strackt-app-shop.service"), None);
}

#[tokio::test]
async fn an_upgrade_restarts_a_proxy_mode_apps_live_instance_and_checks_it_through_nginx() {
    use crate::host::usage::ProcessInfo;
    let mut w = app_world().await;
    // `hello` in proxy mode: release 3 is live (`current`), release 2 still runs beside it
    // (a deploy draining it), both node processes of the kind `demo-lib` ships modules for.
    let dir = tempfile::tempdir().expect("app dir");
    let dirs = crate::deploy::layout::AppDirs::new(&dir.path().display().to_string());
    dirs.flip(Some(3)).expect("current -> releases/3");
    w.apps.checks.push(apps::AppCheck {
        app: "hello".into(),
        serving: apps::Serving::Proxy {
            dir: dir.path().display().to_string(),
        },
        probe: crate::definition::HealthSpec {
            http: Some("http://127.0.0.1:8080/health".into()),
            ..Default::default()
        },
        within: Duration::from_secs(1),
    });
    let (live, draining) = ("strackt-app-hello@3.service", "strackt-app-hello@2.service");
    {
        let mut s = w.host.state();
        s.vendor_units.insert("strackt-app-hello@.service".into());
        s.package_files
            .get_mut("demo-lib")
            .expect("demo-lib's files")
            .insert("/usr/share/nodejs/demo-lib/index.js".into());
        let node = ProcessInfo {
            pid: 1,
            exe: "/usr/bin/node".into(),
            files: BTreeSet::new(),
        };
        for unit in [live, draining] {
            s.processes.insert(unit.into(), vec![node.clone()]);
        }
    }
    for unit in [draining, live] {
        w.host
            .run_job(crate::host::JobKind::Start, unit)
            .await
            .expect("release starts");
    }
    let g1 = build_locked(&mut w, &LIB.replace("VERSION", "1.0")).expect("lock 1.0");
    assert_eq!(w.switch(Some(&g1), None).await.failure, None);
    let (before_live, before_draining) = (w.host.running(live), w.host.running(draining));
    let before_shop = w.host.running("strackt-app-shop.service");
    w.host.state().journal.clear();

    let g2 = build_locked(&mut w, &LIB.replace("VERSION", "1.1")).expect("lock 1.1");
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    let restarts: Vec<(&str, &str)> = r
        .steps
        .iter()
        .filter(|s| s.action == "restart")
        .map(|s| (s.target.as_str(), s.detail.as_str()))
        .collect();
    assert_eq!(
        restarts,
        [
            (
                "strackt-app-hello@3.service",
                "uses demo-lib (upgraded 1.0 → 1.1)"
            ),
            (
                "strackt-app-shop.service",
                "uses demo-lib (upgraded 1.0 → 1.1)"
            ),
        ]
    );
    assert_ne!(
        w.host.running(live),
        before_live,
        "the live release restarted"
    );
    assert_eq!(
        w.host.running(draining),
        before_draining,
        "a release `current` does not name is the deploy's"
    );
    assert_ne!(w.host.running("strackt-app-shop.service"), before_shop);
    for app in ["app hello", "app shop"] {
        assert!(
            r.steps
                .iter()
                .any(|s| s.action == "health" && s.target == app && s.outcome == StepOutcome::Ok),
            "{app}: {:#?}",
            r.steps
        );
    }
    // Socket mode as before: its socket first, then the service; the instance has no socket.
    let journal = w.host.state().journal.clone();
    let jobs: Vec<&str> = journal
        .iter()
        .map(String::as_str)
        .filter(|j| j.contains("strackt-app-") && !j.starts_with("reset-failed"))
        .collect();
    assert_eq!(
        jobs,
        [
            "restart strackt-app-hello@3.service",
            "start strackt-app-shop.socket",
            "restart strackt-app-shop.service",
        ]
    );

    // Stopped by hand: neither restarted nor checked.
    w.host.stop_by_hand(live);
    let g3 = build_locked(&mut w, &LIB.replace("VERSION", "1.0")).expect("lock 1.0");
    let r = w.switch(Some(&g3), Some(&g2)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert!(r
        .steps
        .iter()
        .all(|s| !(s.action == "restart" && s.target == live)));
    assert!(r.steps.iter().any(|s| s.action == "health"
        && s.target == "app hello"
        && s.outcome == StepOutcome::Skipped));
    assert_eq!(w.host.running(live), None);
}
