//! Component tests: plans applied to the in-memory host.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::switch::switch;
use super::*;
use crate::definition::parse;
use crate::generation::{render, Generation, Store};
use crate::host::fake::FakeHost;
use crate::host::Systemd;
use crate::plan::plan;

fn machine(h: &FakeHost) -> &FakeHost {
    h
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    host: FakeHost,
    owned: Ownership,
    next: u64,
    apps: Apps,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let host = FakeHost::default();
        host.state().vendor_units.insert("cron.service".into());
        host.state().pg_running = true;
        host.state().files.insert(
            Path::new(crate::definition::SECRETS_DIR).join("dbpw"),
            (b"pw-1\n".to_vec(), 0o600, 0, 0),
        );
        World {
            _dir: dir,
            store,
            host,
            owned: Ownership::default(),
            next: 1,
            apps: Apps::default(),
        }
    }
    fn build(&mut self, src: &str) -> Generation {
        let def = parse(src, Path::new("t.yaml")).expect("valid definition");
        self.store
            .build(self.next, &render(&def), "now")
            .expect("build");
        self.next += 1;
        self.store.load(self.next - 1).expect("load")
    }
    async fn switch(
        &mut self,
        to: Option<&Generation>,
        from: Option<&Generation>,
    ) -> super::switch::SwitchReport {
        switch(
            machine(&self.host),
            &self.store,
            &mut self.owned,
            to,
            from,
            Duration::ZERO,
            true,
            &self.apps,
        )
        .await
    }
    async fn plan_for(&self, g: &Generation) -> crate::plan::Plan {
        let snap = observe(
            machine(&self.host),
            g,
            &self.owned,
            self.store.root(),
            &self.apps,
        )
        .await
        .expect("observe");
        plan(g, Some(g), &snap)
    }
}

const V1: &str = "version: 1\nfiles:\n  /etc/motd: { content: \"one\\n\" }\n  /etc/app.conf: { content: \"a=1\\n\", mode: \"0640\", group: adm }\nservices:\n  hello: { exec: /bin/sleep infinity, restart_on: [/etc/app.conf] }\n  other: { exec: /bin/sleep 100 }\n  cron: { unit: cron.service }\n";

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

const DATABASES: &str = "version: 1\ndatabases:\n  shop: { password: { secret: dbpw } }\n  shop_log: { owner: shop, password: { secret: dbpw } }\n";

#[tokio::test]
async fn databases_are_created_completed_and_never_dropped() {
    let mut w = World::new();
    let g1 = w.build(DATABASES);
    let r = w.switch(Some(&g1), None).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    let verifier = {
        let s = w.host.state();
        assert_eq!(s.pg.databases["shop"], "shop");
        assert_eq!(s.pg.databases["shop_log"], "shop");
        s.pg.roles["shop"].verifier.clone().expect("a password")
    };
    assert!(
        crate::host::databases::scram_matches(&verifier, "pw-1").expect("ascii"),
        "the role's password is the secret's"
    );
    assert!(w.plan_for(&g1).await.is_empty());
    // Drift: a database dropped and the password changed by hand come back, as drift.
    w.host.state().pg.databases.remove("shop_log");
    w.host.state().files.insert(
        Path::new(crate::definition::SECRETS_DIR).join("dbpw"),
        (b"pw-2\n".to_vec(), 0o600, 0, 0),
    );
    let r = w.switch(Some(&g1), Some(&g1)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert_eq!(
        r.drift,
        vec![
            "set-role-password shop: password differs from its secret".to_string(),
            "create-database shop_log: missing (owner shop)".to_string()
        ]
    );
    assert!(w.plan_for(&g1).await.is_empty());
    // Removed from the definition: left as it is, said so.
    let g2 = w.build("version: 1\ndatabases:\n  shop: { password: { secret: dbpw } }\n");
    let snap = observe(machine(&w.host), &g2, &w.owned, w.store.root(), &w.apps)
        .await
        .expect("observe");
    let p = plan(&g2, Some(&g1), &snap);
    assert!(p.is_empty(), "{p}");
    assert!(
        p.to_string()
            .contains("leave database shop_log  (no longer in the definition"),
        "{p}"
    );
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert_eq!(r.failure, None);
    assert!(w.host.state().pg.databases.contains_key("shop_log"));
}

#[tokio::test]
async fn databases_without_postgresql_fail_naming_the_entry_and_roll_back() {
    let mut w = World::new();
    let g0 = w.build(V1);
    let _ = w.switch(Some(&g0), None).await;
    w.host.state().pg_running = false;
    let g1 = w.build(&format!("{V1}databases:\n  shop: {{}}\n"));
    let snap = observe(machine(&w.host), &g1, &w.owned, w.store.root(), &w.apps)
        .await
        .expect("an unreachable cluster is no observe error");
    assert!(plan(&g1, Some(&g0), &snap)
        .to_string()
        .contains("would create-role shop  (PostgreSQL could not be read"));
    let r = w.switch(Some(&g1), Some(&g0)).await;
    let failure = r.failure.unwrap_or_default();
    assert!(
        failure.contains("create-role shop: postgresql: databases.shop: PostgreSQL is not installed or not running"),
        "{failure}"
    );
    assert!(r.rolled_back);
}

const SYSCTL: &str = "version: 1\nsettings:\n  sysctl:\n    net.ipv4.ip_forward: 1\n    net.ipv4.tcp_rmem: \"4096\t87380  6291456\"\n";

fn with_kernel(w: &World) {
    let mut s = w.host.state();
    s.sysctl.insert("net.ipv4.ip_forward".into(), "0".into());
    s.sysctl
        .insert("net.ipv4.tcp_rmem".into(), "4096 131072 6291456".into());
    s.sysctl.insert("net.zz.read_only".into(), "(none)".into());
    s.sysctl_read_only.insert("net.zz.read_only".into());
}

#[tokio::test]
async fn sysctl_is_written_set_live_and_repaired() {
    let mut w = World::new();
    with_kernel(&w);
    let g1 = w.build(SYSCTL);
    let r = w.switch(Some(&g1), None).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert_eq!(w.host.state().sysctl["net.ipv4.ip_forward"], "1");
    assert_eq!(
        w.host.state().sysctl["net.ipv4.tcp_rmem"],
        "4096 87380 6291456"
    );
    let file = w
        .host
        .state()
        .files
        .get(Path::new(crate::definition::SYSCTL_FILE))
        .map(|f| f.0.clone())
        .expect("sysctl.d file");
    assert!(String::from_utf8_lossy(&file).contains("net.ipv4.ip_forward = 1\n"));
    assert!(w.plan_for(&g1).await.is_empty());
    w.host
        .state()
        .sysctl
        .insert("net.ipv4.ip_forward".into(), "0".into());
    let r = w.switch(Some(&g1), Some(&g1)).await;
    assert_eq!(
        r.drift,
        vec!["set-sysctl net.ipv4.ip_forward: live value 0, want 1".to_string()]
    );
    assert_eq!(w.host.state().sysctl["net.ipv4.ip_forward"], "1");
}

#[tokio::test]
async fn an_unknown_sysctl_key_fails_before_the_host_is_touched_and_a_read_only_one_rolls_back() {
    let mut w = World::new();
    with_kernel(&w);
    let g1 = w.build(SYSCTL);
    let _ = w.switch(Some(&g1), None).await;
    let g2 = w.build(&format!("{SYSCTL}    net.ipv4.no_such_key: 1\n"));
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert!(
        r.failure
            .as_deref()
            .is_some_and(|f| f.contains("sysctl key \"net.ipv4.no_such_key\" does not exist")),
        "{r:?}"
    );
    assert!(!r.rolled_back);
    let g3 = w.build(
        &format!("{SYSCTL}    net.zz.read_only: example\n")
            .replace("ip_forward: 1", "ip_forward: 0"),
    );
    let r = w.switch(Some(&g3), Some(&g1)).await;
    assert!(
        r.failure
            .as_deref()
            .is_some_and(|f| f.contains("set-sysctl net.zz.read_only")),
        "{r:?}"
    );
    assert!(r.rolled_back);
    assert_eq!(r.rollback_failure, None);
    assert_eq!(
        w.host.state().sysctl["net.ipv4.ip_forward"],
        "1",
        "rolled back live"
    );
    assert_eq!(w.store.current().expect("current"), Some(1));
}

const FIREWALL: &str = "version: 1\nfirewall:\n  allow:\n    - { port: 22 }\nservices:\n  other: { exec: /bin/sleep 100 }\n";

#[tokio::test]
async fn the_firewall_is_applied_repaired_rolled_back_and_removed() {
    let mut w = World::new();
    let g1 = w.build(FIREWALL);
    let r = w.switch(Some(&g1), None).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    let applied = w.host.state().nft_table.clone().expect("table applied");
    assert!(w.plan_for(&g1).await.is_empty());
    // Drift: flushed by hand.
    w.host.state().nft_table = Some("flushed".into());
    let r = w.switch(Some(&g1), Some(&g1)).await;
    assert_eq!(
        r.drift,
        vec!["apply-firewall inet strackt: rules changed by hand".to_string()]
    );
    assert_eq!(w.host.state().nft_table.as_ref(), Some(&applied));
    // A new ruleset whose switch fails elsewhere: the old ruleset comes back.
    let g2 = w.build(
        &FIREWALL
            .replace("port: 22", "port: 2222")
            .replace("/bin/sleep 100", "/bin/false"),
    );
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert!(r.rolled_back && r.rollback_failure.is_none(), "{r:?}");
    assert_eq!(w.host.state().nft_table.as_ref(), Some(&applied));
    // Dropped from the definition: strackt's table goes.
    let g3 = w.build("version: 1\n");
    let r = w.switch(Some(&g3), Some(&g1)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert_eq!(w.host.state().nft_table, None);
    assert_eq!(w.owned.firewall, None);
}

const ACCOUNTS: &str = "version: 1\ngroups:\n  deploy: { gid: 3000 }\nusers:\n  alice:\n    uid: 3001\n    group: deploy\n    groups: [adm]\n    ssh_keys: [\"ssh-ed25519 AAAA alice@laptop\"]\n    password: { secret: alice_pw }\nfiles:\n  /etc/alice.conf: { content: \"x\\n\", owner: alice, group: deploy, mode: \"0600\" }\n";

#[tokio::test]
async fn users_groups_keys_and_passwords_converge_and_are_removed() {
    let mut w = World::new();
    w.host.state().files.insert(
        "/etc/strackt/secrets/alice_pw".into(),
        (b"$6$salt$hash\n".to_vec(), 0o600, 0, 0),
    );
    let bob = crate::host::accounts::UserState {
        uid: 1500,
        group: "root".into(),
        groups: vec![],
        shell: "/bin/sh".into(),
        home: "/home/bob".into(),
        comment: String::new(),
    };
    w.host.state().users.insert("bob".into(), bob.clone());
    let g1 = w.build(ACCOUNTS);
    let r = w.switch(Some(&g1), None).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    {
        let s = w.host.state();
        let alice = &s.users["alice"];
        assert_eq!(
            (
                alice.uid,
                alice.group.as_str(),
                alice.groups.clone(),
                alice.shell.as_str()
            ),
            (3001, "deploy", vec!["adm".to_string()], "/bin/bash")
        );
        assert_eq!(s.shadow["alice"], "$6$salt$hash");
        let keys = &s.files[Path::new("/home/alice/.ssh/authorized_keys")];
        assert_eq!(
            (keys.0.as_slice(), keys.1, keys.2, keys.3),
            (&b"ssh-ed25519 AAAA alice@laptop\n"[..], 0o600, 3001, 3000)
        );
        assert_eq!(
            s.files[Path::new("/etc/alice.conf")].2,
            3001,
            "a file owned by a user created in the same switch"
        );
        assert_eq!(
            s.users["bob"], bob,
            "a user strackt did not create and the definition does not name"
        );
    }
    assert!(w.plan_for(&g1).await.is_empty());
    // Drift: shell changed, password changed by hand.
    w.host.state().users.get_mut("alice").expect("alice").shell = "/bin/sh".into();
    w.host
        .state()
        .shadow
        .insert("alice".into(), "$6$other".into());
    let r = w.switch(Some(&g1), Some(&g1)).await;
    assert_eq!(r.drift.len(), 2, "{:?}", r.drift);
    assert_eq!(w.host.state().users["alice"].shell, "/bin/bash");
    // Gone from the definition: removed, with its group; bob untouched.
    let g2 = w.build("version: 1\n");
    let r = w.switch(Some(&g2), Some(&g1)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    let s = w.host.state();
    assert!(!s.users.contains_key("alice") && !s.groups.contains_key("deploy"));
    assert_eq!(s.users["bob"], bob);
}

#[tokio::test]
async fn a_missing_secret_fails_before_the_host_is_touched() {
    let mut w = World::new();
    let g1 = w.build(ACCOUNTS);
    let r = w.switch(Some(&g1), None).await;
    assert!(
        r.failure.as_deref().is_some_and(
            |f| f.contains("secret \"alice_pw\": /etc/strackt/secrets/alice_pw is missing")
        ),
        "{r:?}"
    );
    assert!(!r.rolled_back);
    assert!(w.host.state().users.is_empty());
    assert_eq!(w.store.current().expect("current"), None);
}

/// Lock a definition's packages the way the daemon's build does (resolve + fetch).
fn build_locked(w: &mut World, src: &str) -> Result<Generation, crate::host::HostError> {
    use crate::host::packages::Packages;
    let def = parse(src, Path::new("t.yaml")).expect("valid definition");
    let mut r = render(&def);
    let versions =
        crate::host::packages::all_resolved(w.host.resolve(&def.definition().packages)?)?;
    let mut debs = w.host.fetch(&versions)?;
    for (name, version) in versions {
        let deb = debs.remove(&name).unwrap_or_default();
        r.manifest
            .packages
            .insert(name, crate::generation::PackageLock { version, deb });
    }
    w.store.build(w.next, &r, "now").expect("build");
    w.next += 1;
    Ok(w.store.load(w.next - 1).expect("load"))
}

#[tokio::test]
async fn packages_install_upgrade_roll_back_offline_and_hand_installed_ones_go() {
    let mut w = World::new();
    {
        let mut s = w.host.state();
        s.repository
            .insert("demo".into(), vec!["1.0".into(), "1.1".into()]);
        s.repository.insert("extra".into(), vec!["3".into()]);
        let base = crate::host::packages::Installed {
            version: "5".into(),
            held: false,
            auto: false,
            essential: false,
        };
        s.installed.insert("vim-tiny".into(), base.clone());
        s.installed.insert(
            "bash".into(),
            crate::host::packages::Installed {
                essential: true,
                ..base
            },
        );
    }
    w.owned.base_packages = Some(
        ["vim-tiny".to_string(), "bash".to_string()]
            .into_iter()
            .collect(),
    );
    let g1 = build_locked(&mut w, "version: 1\npackages:\n  demo: \"1.0\"\n").expect("lock 1.0");
    assert_eq!(w.switch(Some(&g1), None).await.failure, None);
    assert_eq!(w.host.state().installed["demo"].version, "1.0");
    assert!(w.host.state().installed["demo"].held, "pinned");
    let g2 = build_locked(&mut w, "version: 1\npackages:\n  demo: latest\n").expect("lock latest");
    assert_eq!(
        g2.manifest.packages["demo"].version, "1.1",
        "latest resolved at build"
    );
    assert_eq!(w.switch(Some(&g2), Some(&g1)).await.failure, None);
    assert_eq!(w.host.state().installed["demo"].version, "1.1");
    // An unavailable version fails the build: no generation, nothing touched.
    let err = build_locked(&mut w, "version: 1\npackages:\n  demo: \"9.9\"\n")
        .expect_err("9.9 does not exist");
    assert!(err.to_string().contains("available: 1.0, 1.1"), "{err}");
    // Hand-installed: removed by the next pass; base and essential packages stay.
    w.host.state().installed.insert(
        "extra".into(),
        crate::host::packages::Installed {
            version: "3".into(),
            held: false,
            auto: false,
            essential: false,
        },
    );
    let r = w.switch(Some(&g2), Some(&g2)).await;
    assert_eq!(
        r.drift,
        vec!["remove-package extra: installed by hand".to_string()]
    );
    assert!(!w.host.state().installed.contains_key("extra"));
    assert!(
        w.host.state().installed.contains_key("vim-tiny")
            && w.host.state().installed.contains_key("bash")
    );
    // Rollback with the mirror gone: the cached 1.0 .deb is reinstalled.
    w.host.state().offline = true;
    let r = w.switch(Some(&g1), Some(&g2)).await;
    assert_eq!(r.failure, None, "{:#?}", r.steps);
    assert_eq!(w.host.state().installed["demo"].version, "1.0");
    // Dropped from the definition: removed.
    let g3 = build_locked(&mut w, "version: 1\n").expect("empty");
    assert_eq!(w.switch(Some(&g3), Some(&g1)).await.failure, None);
    assert!(!w.host.state().installed.contains_key("demo"));
}

/// A world with an app `shop` (python, using `demo-lib`'s module) deployed and running, a
/// managed `hello` service (sleep) and `demo-lib` 1.0, 1.1, 2.0 in the repository.
async fn app_world() -> World {
    use crate::host::usage::ProcessInfo;
    let mut w = World::new();
    w.apps = Apps {
        checks: vec![apps::AppCheck {
            app: "shop".into(),
            service: "strackt-app-shop.service".into(),
            socket: "strackt-app-shop.socket".into(),
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
        .any(|s| s.action == "health" && s.target == "app shop" && s.outcome == "ok"));
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
    assert!(r
        .steps
        .iter()
        .any(|s| s.action == "health" && s.target == "app shop" && s.outcome == "skipped"));
    assert_eq!(w.host.running("strackt-app-shop.service"), None);
}
