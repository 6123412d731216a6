use super::*;

#[test]
fn restic_failures_are_told_apart() {
    let at = "s3:http://x/b";
    let refused = "Fatal: unable to open config file: Stat: Get \"http://x/b/config\": dial tcp 127.0.0.1:9000: connect: connection refused\nIs there a repository at the following location?\ns3:http://x/b";
    let e = explain(at, refused);
    assert!(
        e.to_string().starts_with(
            "the backup destination s3:http://x/b is unreachable: Fatal: unable to open"
        ),
        "{e}"
    );
    assert!(e.is_transient(), "an unreachable destination passes");
    let missing = "Fatal: unable to open config file: Stat: The specified key does not exist.\nIs there a repository at the following location?";
    let e = explain(at, missing);
    assert_eq!(
        e.to_string(),
        "no backup repository at s3:http://x/b yet (nothing was backed up there)"
    );
    assert!(!e.is_transient());
    let wrong = "Fatal: wrong password or no key found";
    let e = explain(at, wrong);
    assert_eq!(
        e.to_string(),
        "the backup key does not open the repository at s3:http://x/b (wrong key? `strackt backup key import` the team's key)"
    );
    assert!(!e.is_transient(), "a wrong key stays wrong");
    let e = explain(at, "Fatal: repository is damaged\n");
    assert_eq!(
        e.to_string(),
        "restic at s3:http://x/b: Fatal: repository is damaged"
    );
    assert!(!e.is_transient());
    // A lock held by another restic passes, whichever way restic words it; the words
    // shown are those any other failure would show.
    let fatal = "Fatal: unable to create lock in backend: repository is already locked exclusively by PID 7 on web1 by root (UID 0, GID 0)\n";
    let newer = "repo already locked, waiting up to 0s for the lock\nunable to create lock in backend: repository is already locked by PID 7 on web1 by root (UID 0, GID 0)\nlock was created at 2026-12-02 03:00:00 (1m ago)\nstorage ID 06c1fdfa\nthe `unlock` command can be used to remove stale locks\n";
    for (output, line) in [
        (fatal, fatal.trim()),
        (
            newer,
            "the `unlock` command can be used to remove stale locks",
        ),
    ] {
        let e = explain(at, output);
        assert!(matches!(e, BackupError::Locked { .. }), "{e:?}");
        assert_eq!(e.to_string(), format!("restic at s3:http://x/b: {line}"));
        assert!(e.is_transient(), "a lock held by another restic passes");
    }
}

#[test]
fn a_failed_dump_writes_no_snapshot_and_a_whole_one_does() {
    use crate::host::fake::FakeProcesses;
    let fake = FakeProcesses::default();
    fake.state().restic.initialized = true;
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = Vault::new(dir.path());
    let repo = Repo::local(dir.path(), &vault, dir.path(), fake.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let live = Arc::new(Mutex::new(String::new()));
    let tags = ["strackt".to_string(), "app=shop".to_string()];
    let backup = |what: &'static str| {
        let dump = Cmd::new("pg_dump", BACKUP_LIMIT).env("PGDATABASE", what);
        let stream = Source::Stream(dump, "shop.pgdump".to_string());
        rt.block_on(repo.backup(stream, &tags, "web1", &live, LOOK_LIMIT))
    };
    fake.script(
        "pg_dump",
        Output::with(
            End::Exited(1),
            "half a dump",
            "pg_dump: error: connection lost",
        ),
    );
    let err = backup("shop").expect_err("the dump failed").to_string();
    assert_eq!(
        err,
        "the dump failed (exited with status 1): pg_dump: error: connection lost"
    );
    assert!(fake.state().restic.snapshots.is_empty());

    fake.script("pg_dump", Output::with(End::Exited(0), "a whole dump", ""));
    let summary = backup("shop").expect("backed up");
    let listed = rt
        .block_on(repo.snapshots(&["app=shop".to_string()], Some("web1")))
        .expect("listed");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, summary.snapshot_id);
    assert_eq!(listed[0].tag("app"), Some("shop"));
    let s = fake.state();
    assert_eq!(s.restic.snapshots[0].content, b"a whole dump");
    let restic = s.calls.iter().find(|c| c.program == "restic").expect("ran");
    assert!(restic.env.contains_key("RESTIC_PASSWORD_FILE"));
    assert!(!restic.args.iter().any(|a| a.contains("PASSWORD")));
}

#[test]
fn keep_policy_becomes_forget_flags() {
    let keep = crate::definition::KeepPolicy {
        last: Some(4),
        daily: Some(7),
        ..Default::default()
    };
    assert_eq!(keep.restic_flags(), ["--keep-last=4", "--keep-daily=7"]);
}
