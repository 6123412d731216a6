//! Switches on the fake host: converge, restart what a change touches, roll back a failure,
//! hold, drift repair, and the idempotence property.

use super::*;

#[tokio::test]
async fn first_switch_converges_and_replanning_is_empty() {
    let mut w = World::new();
    let g1 = w.build(V1);
    let r = w.switch(Some(&g1), None).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert_eq!(w.store.current().expect("current"), Some(1));
    assert!(w.host.running("hello.service").is_some());
    assert!(w.host.running("cron.service").is_some());
    let motd = w
        .host
        .state()
        .files
        .get(Path::new("/etc/motd"))
        .cloned()
        .expect("motd written");
    assert_eq!(motd.0, b"one\n");
    let conf = w
        .host
        .state()
        .files
        .get(Path::new("/etc/app.conf"))
        .cloned()
        .expect("conf written");
    assert_eq!((conf.1, conf.3), (0o640, 4));
    assert!(w.plan_for(&g1).await.is_empty());
}

#[tokio::test]
async fn a_changed_file_restarts_only_its_dependent_service() {
    let mut w = World::new();
    let g1 = w.build(V1);
    let _ = w.switch(Some(&g1), None).await;
    let (hello, other) = (
        w.host.running("hello.service"),
        w.host.running("other.service"),
    );
    let g2 = w.build(&V1.replace("a=1", "a=2"));
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert_eq!(r.failure, None);
    assert_ne!(w.host.running("hello.service"), hello, "hello restarted");
    assert_eq!(w.host.running("other.service"), other, "other untouched");
}

#[tokio::test]
async fn a_failing_service_rolls_back_to_the_previous_generation() {
    let mut w = World::new();
    let g1 = w.build(V1);
    let _ = w.switch(Some(&g1), None).await;
    let g2 = w.build(
        &V1.replace("/bin/sleep 100", "/bin/false")
            .replace("one", "two"),
    );
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert!(
        r.failure
            .as_deref()
            .is_some_and(|f| f.contains("other.service")),
        "{r:?}"
    );
    assert!(r.rolled_back);
    assert_eq!(r.rollback_failure, None, "{:#?}", r.steps);
    assert_eq!(w.store.current().expect("current"), Some(1));
    assert!(w.host.running("other.service").is_some());
    assert_eq!(
        w.host
            .state()
            .files
            .get(Path::new("/etc/motd"))
            .map(|f| f.0.clone()),
        Some(b"one\n".to_vec())
    );
}

#[tokio::test]
async fn a_failing_health_check_rolls_back() {
    let mut w = World::new();
    let g1 = w.build(V1);
    let _ = w.switch(Some(&g1), None).await;
    let g2 = w.build(&V1.replace(
        "other: { exec: /bin/sleep 100 }",
        "other: { exec: /bin/sleep 100, health: { command: /bin/false } }",
    ));
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert!(
        r.failure
            .as_deref()
            .is_some_and(|f| f.contains("health check of other.service")),
        "{r:?}"
    );
    assert!(r.rolled_back);
    assert_eq!(w.store.current().expect("current"), Some(1));
}

#[tokio::test]
async fn an_unknown_owner_fails_before_the_host_is_touched() {
    let mut w = World::new();
    let g1 = w.build(V1);
    let _ = w.switch(Some(&g1), None).await;
    let before = w.host.state().files.clone();
    let g2 = w.build(
        &V1.replace("group: adm", "owner: nosuchuser")
            .replace("one", "two"),
    );
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert!(
        r.failure
            .as_deref()
            .is_some_and(|f| f.contains("user \"nosuchuser\" does not exist")),
        "{r:?}"
    );
    assert!(
        !r.rolled_back,
        "nothing was changed, so nothing is rolled back"
    );
    assert_eq!(w.store.current().expect("current"), Some(1));
    assert_eq!(w.host.state().files, before);
}

#[tokio::test]
async fn dropped_units_and_files_are_removed_and_originals_restored() {
    let mut w = World::new();
    w.host
        .state()
        .files
        .insert("/etc/motd".into(), (b"debian\n".to_vec(), 0o644, 0, 0));
    let g1 = w.build(V1);
    let _ = w.switch(Some(&g1), None).await;
    let g2 = w.build("version: 1\n");
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert!(w.host.running("hello.service").is_none());
    let s = w.host.state();
    assert!(!s
        .files
        .contains_key(Path::new("/etc/systemd/system/hello.service")));
    assert!(!s.files.contains_key(Path::new("/etc/app.conf")));
    assert_eq!(
        s.files.get(Path::new("/etc/motd")).map(|f| f.0.clone()),
        Some(b"debian\n".to_vec()),
        "original restored"
    );
    drop(s);
    assert!(w.owned.files.is_empty() && w.owned.units.is_empty());
}

#[tokio::test]
async fn on_hold_definition_changes_land_and_drift_stays() {
    let mut w = World::new();
    let g1 = w.build(V1);
    let _ = w.switch(Some(&g1), None).await;
    w.host
        .state()
        .files
        .insert("/etc/motd".into(), (b"experiment\n".to_vec(), 0o644, 0, 0));
    w.host.stop_by_hand("other.service");
    let g2 = w.build(&V1.replace("a=1", "a=2"));
    let r = switch(
        machine(&w.host),
        &w.store,
        &mut w.owned,
        Some(&g2),
        Some(&g1),
        Duration::ZERO,
        false,
        &Apps::default(),
    )
    .await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert_eq!(r.drift.len(), 2, "drift is still reported: {:?}", r.drift);
    let content = |p: &str| w.host.state().files.get(Path::new(p)).map(|f| f.0.clone());
    assert_eq!(content("/etc/motd"), Some(b"experiment\n".to_vec()));
    assert_eq!(content("/etc/app.conf"), Some(b"a=2\n".to_vec()));
    assert!(
        w.host.running("other.service").is_none(),
        "stopped by hand, left stopped"
    );
    let r = w.switch(Some(&g2), Some(&g2)).await;
    assert_eq!(r.failure, None);
    assert!(
        w.host.running("other.service").is_some(),
        "restored once the hold is over"
    );
}

#[tokio::test]
async fn drift_is_repaired_and_marked_as_drift() {
    let mut w = World::new();
    let g1 = w.build(V1);
    let _ = w.switch(Some(&g1), None).await;
    w.host
        .state()
        .files
        .insert("/etc/motd".into(), (b"hacked\n".to_vec(), 0o644, 0, 0));
    w.host
        .state()
        .files
        .remove(Path::new("/etc/systemd/system/other.service"));
    w.host.stop_by_hand("hello.service");
    w.host.disable_by_hand("other.service");
    let r = w.switch(Some(&g1), Some(&g1)).await;
    assert_eq!(r.failure, None);
    assert_eq!(r.drift.len(), 4, "{:#?}", r.drift);
    assert!(w.plan_for(&g1).await.is_empty());
}

fn definition_strategy() -> impl Strategy<Value = String> {
    let files = prop::collection::btree_map(
        "[a-d]",
        (
            "[a-z]{0,8}",
            prop::sample::select(vec!["0644", "0600", "0640"]),
        ),
        0..4,
    );
    let services = prop::collection::btree_map("[e-h]", (1u32..4, any::<bool>()), 0..3);
    let databases =
        prop::collection::btree_map("[p-s]", prop::sample::select(vec!["", "owner: own"]), 0..3);
    (files, services, databases, any::<bool>()).prop_map(|(files, services, databases, pw)| {
        let mut s = String::from("version: 1\nfiles:\n");
        for (name, (content, mode)) in &files {
            s.push_str(&format!(
                "  /etc/{name}: {{ content: {content:?}, mode: \"{mode}\" }}\n"
            ));
        }
        s.push_str("services:\n");
        for (name, (n, enabled)) in &services {
            s.push_str(&format!(
                "  {name}: {{ exec: /bin/sleep {n}, enabled: {enabled} }}\n"
            ));
        }
        s.push_str("databases:\n");
        let password = if pw { "password: { secret: dbpw }" } else { "" };
        for (name, owner) in &databases {
            let sep = if owner.is_empty() || password.is_empty() {
                ""
            } else {
                ", "
            };
            s.push_str(&format!("  {name}: {{ {owner}{sep}{password} }}\n"));
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// Idempotence: after applying the plan from any prior state, planning again yields nothing.
    #[test]
    fn planning_after_applying_yields_nothing(a in definition_strategy(), b in definition_strategy(), stop in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        rt.block_on(async {
            let mut w = World::new();
            let ga = w.build(&a);
            let r = w.switch(Some(&ga), None).await;
            prop_assert_eq!(r.failure, None);
            if stop {
                for unit in ga.manifest.units.keys() { w.host.stop_by_hand(unit); }
            }
            let gb = w.build(&b);
            let r = w.switch(Some(&gb), Some(&ga)).await;
            prop_assert_eq!(r.failure, None);
            let again = w.plan_for(&gb).await;
            prop_assert!(again.is_empty(), "{}", again);
            Ok(())
        })?;
    }
}
