//! `users:` and `groups:`: converged, repaired and removed; secrets read before anything
//! changes.

use super::*;

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
