use std::time::Instant;

use super::*;
use crate::host::fake::FakeProcesses;

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn sh(script: &str) -> Cmd {
    Cmd::new("/bin/sh", Duration::from_secs(20)).args(["-c", script])
}

#[test]
fn a_command_gets_only_its_environment_and_its_stdin() {
    let out = block_on(
        RealProcesses.run(
            sh("echo \"$GREETING ${HOME:-nohome}\"; cat; echo oops >&2; exit 3")
                .env("GREETING", "hi")
                .stdin("typed\n"),
        ),
    )
    .expect("starts");
    assert_eq!(out.end, End::Exited(3));
    assert_eq!(out.stdout, "hi nohome\ntyped\n");
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.failure().as_deref(), Some("exited with status 3"));
    let e = out.checked("sh").expect_err("failed");
    assert_eq!(e.to_string(), "sh: exited with status 3: oops");
    assert!(!e.is_transient());
    let missing = block_on(RealProcesses.run(Cmd::new("/no/such/program", Duration::from_secs(5))))
        .expect_err("not there");
    assert!(matches!(missing, HostError::Spawn { .. }) && !missing.is_transient());
}

#[test]
fn a_command_over_its_limit_is_killed_with_what_it_started() {
    let started = Instant::now();
    let out =
        block_on(RealProcesses.run(
            Cmd::new("/bin/sh", Duration::from_millis(300)).args(["-c", "sleep 30 & sleep 30"]),
        ))
        .expect("starts");
    assert_eq!(out.end, End::TimedOut(Duration::from_millis(300)));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the background sleep holds no pipe"
    );
    assert!(out.checked("sh").expect_err("timed out").is_transient());
}

#[test]
fn each_output_keeps_its_end_within_the_cap() {
    let out = block_on(
        RealProcesses.run(sh("head -c 100000 /dev/zero | tr '\\0' x; echo END").keep(1000)),
    )
    .expect("starts");
    assert!(out.success());
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout.ends_with("xEND\n"));
    assert_eq!(out.tail.len(), 1000);
}

#[test]
fn live_output_arrives_in_order_while_the_command_runs() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ended = std::sync::atomic::AtomicBool::new(false);
    let (out, still_running, all) = block_on(async {
        let run = async {
            let out = RealProcesses
                .run(sh("echo one; echo two; sleep 2; echo three").live(tx))
                .await;
            ended.store(true, std::sync::atomic::Ordering::SeqCst);
            out
        };
        let look = async {
            // Read until the first two lines are in, however long a loaded machine takes to
            // start the shell; the command sleeps two seconds before its last line.
            let mut all = Vec::new();
            while !all.ends_with(b"two\n") {
                let Some(c) = rx.recv().await else { break };
                assert_eq!(c.stream, Stream::Stdout);
                all.extend(c.bytes);
            }
            let still_running = !ended.load(std::sync::atomic::Ordering::SeqCst);
            while let Some(c) = rx.recv().await {
                all.extend(c.bytes);
            }
            (still_running, all)
        };
        let (out, (still_running, all)) = tokio::join!(run, look);
        (out, still_running, all)
    });
    assert!(out.expect("starts").success());
    assert!(
        still_running,
        "the first lines arrived before the command ended"
    );
    assert_eq!(String::from_utf8_lossy(&all), "one\ntwo\nthree\n");
}

#[test]
fn a_stopped_command_gets_sigint_first() {
    let (stop, on) = watch::channel(false);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let out = block_on(async {
        let run = RealProcesses.run(
            sh("trap 'echo interrupted; exit 130' INT; echo ready; sleep 30 & wait")
                .stop_on(on)
                .live(tx),
        );
        // Stop only once the trap is set: a loaded machine may take longer than any fixed
        // pause to start the shell, and a shell without its trap dies of SIGINT silently.
        let later = async {
            let mut seen = Vec::new();
            while !seen.ends_with(b"ready\n") {
                let Some(c) = rx.recv().await else { break };
                seen.extend(c.bytes);
            }
            let _ = stop.send(true);
        };
        tokio::join!(run, later).0
    })
    .expect("starts");
    assert_eq!(out.end, End::Stopped);
    assert_eq!(out.stdout, "ready\ninterrupted\n");
}

/// A sink that records whether it saw a clean end of its input.
fn recording_sink(dir: &std::path::Path) -> Cmd {
    let script = format!("cat > {0}/got; echo eof > {0}/eof", dir.display());
    sh(&script)
}

#[test]
fn a_source_that_fails_after_writing_gets_its_sink_killed_before_the_end_of_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let piped = block_on(RealProcesses.pipe(
        sh("echo partial; sleep 0.3; echo dump broke >&2; exit 1"),
        recording_sink(dir.path()),
    ))
    .expect("starts");
    assert_eq!(piped.source.end, End::Exited(1));
    assert_eq!(piped.source.stderr, "dump broke\n");
    assert_eq!(piped.sink.end, End::Cut);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("got")).expect("started"),
        "partial\n"
    );
    assert!(
        !dir.path().join("eof").exists(),
        "the sink saw a clean end of input"
    );
}

#[test]
fn a_source_that_succeeds_ends_its_sinks_input_after_the_sinks_own_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let piped = block_on(RealProcesses.pipe(
        sh("echo body"),
        recording_sink(dir.path()).stdin("prefix\n"),
    ))
    .expect("starts");
    assert!(piped.source.success() && piped.sink.success());
    let got = std::fs::read_to_string(dir.path().join("got")).expect("written");
    assert_eq!(got, "prefix\nbody\n");
    assert!(dir.path().join("eof").exists());
}

#[test]
fn a_sink_that_fails_cuts_its_source_off() {
    let started = Instant::now();
    let piped = block_on(RealProcesses.pipe(
        sh("yes"),
        sh("head -c 10 >/dev/null; echo refused >&2; exit 2"),
    ))
    .expect("starts");
    assert_eq!(piped.sink.end, End::Exited(2));
    assert_eq!(piped.sink.stderr, "refused\n");
    assert_eq!(piped.source.end, End::Cut);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_source_over_its_limit_fails_the_pipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let piped = block_on(RealProcesses.pipe(
        Cmd::new("/bin/sh", Duration::from_millis(300)).args(["-c", "echo a; sleep 30"]),
        recording_sink(dir.path()),
    ))
    .expect("starts");
    assert!(matches!(piped.source.end, End::TimedOut(_)));
    assert_eq!(piped.sink.end, End::Cut);
    assert!(!dir.path().join("eof").exists());
}

#[test]
fn the_blocking_helper_collects_both_outputs_and_names_the_failure() {
    let out = run_blocking("sh", sh("cat; echo err >&2").stdin("in\n")).expect("runs");
    assert!(out.success());
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("in\n", "err\n")
    );
    let e = run_blocking(
        "apt-get",
        sh("echo 'E: Could not get lock /var/lib/dpkg/lock-frontend' >&2; exit 100"),
    )
    .expect("runs")
    .checked("apt-get")
    .expect_err("failed");
    assert!(e.to_string().contains("Could not get lock"), "{e}");
    assert!(e.is_transient());
}

#[test]
fn the_fake_records_calls_and_keeps_a_restic_repository() {
    let fake = FakeProcesses::default();
    let restic = |args: &[&str]| Cmd::new("restic", Duration::from_secs(5)).args(args);
    let run = |cmd: Cmd| block_on(fake.run(cmd)).expect("runs");
    assert!(
        !run(restic(&["cat", "config"])).success(),
        "no repository yet"
    );
    assert!(run(restic(&["init"])).success());
    let backup = |kind: &str, what: &[&str]| {
        let tag = format!("kind={kind}");
        let head = [
            "backup", "--json", "--host", "web1", "--tag", "app=shop", "--tag", &tag,
        ];
        restic(&head).args(what)
    };
    let piped = block_on(fake.pipe(
        Cmd::new("pg_dump", Duration::from_secs(5)).env("PGDATABASE", "shop"),
        backup("database", &["--stdin", "--stdin-filename", "shop.pgdump"]),
    ))
    .expect("runs");
    assert!(piped.sink.success());
    assert!(piped.sink.stdout.contains("\"message_type\":\"summary\""));
    run(backup("files", &["--", "/srv/shop/shared/up"]));
    let listed = run(restic(&[
        "snapshots",
        "--json",
        "--tag",
        "app=shop,kind=files",
    ]));
    let list: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["paths"][0], "/srv/shop/shared/up");
    let tagged = run(restic(&[
        "tag",
        "--host",
        "web1",
        "--tag",
        "kind=files",
        "--add",
        "run=2",
    ]));
    assert_eq!(tagged.stdout, "modified tags on 1 snapshots\n");

    // A dump that fails writes no snapshot.
    fake.script(
        "pg_dump",
        Output::with(End::Exited(1), "half a dump", "pg_dump: error"),
    );
    let failed = block_on(fake.pipe(
        Cmd::new("pg_dump", Duration::from_secs(5)),
        restic(&["backup", "--tag", "app=shop", "--stdin"]),
    ))
    .expect("runs");
    assert_eq!(failed.sink.end, End::Cut);
    assert_eq!(fake.state().restic.snapshots.len(), 2);

    let first = fake.state().restic.snapshots[0].id.clone();
    run(restic(&["forget", &first]));
    let s = fake.state();
    assert_eq!(s.restic.snapshots.len(), 1);
    assert!(s.restic.snapshots[0].tags.contains(&"run=2".to_string()));
    let dump = &s.calls[2];
    assert_eq!(
        (dump.program.as_str(), dump.env["PGDATABASE"].as_str()),
        ("pg_dump", "shop")
    );
    assert_eq!(s.calls.len(), 10, "both ends of both pipes");
}

#[test]
fn errors_are_told_transient_or_permanent() {
    let cmd = |m: &str| HostError::Command {
        op: "apt-get",
        message: m.into(),
    };
    assert!(
        cmd("E: Could not get lock /var/lib/apt/lists/lock. It is held by process 7")
            .is_transient()
    );
    assert!(cmd("Temporary failure resolving 'deb.debian.org'").is_transient());
    assert!(!cmd("E: Unable to locate package nosuch").is_transient());
    let sd = |m: &str| HostError::Systemd {
        op: "start",
        unit: "a.service".into(),
        message: m.into(),
    };
    assert!(sd("org.freedesktop.DBus.Error.Disconnected: Connection is closed").is_transient());
    assert!(!sd("job result: failed").is_transient());
    assert!(!HostError::UnknownName {
        kind: "user",
        name: "x".into()
    }
    .is_transient());
}

/// An app tree (writable by others, as the app's user's is to root) and root's files beside it.
fn pinned_scene() -> (tempfile::TempDir, PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = tmp.path().join("app");
    let uploads = app.join("shared/storage/uploads");
    std::fs::create_dir_all(&uploads).expect("mkdir");
    std::fs::write(uploads.join("photo"), "mine\n").expect("write");
    std::fs::write(app.join("shared/storage/notes"), "notes\n").expect("write");
    std::os::unix::fs::symlink("uploads/photo", app.join("shared/storage/latest")).expect("ln");
    for dir in [&app, &app.join("shared"), &app.join("shared/storage")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let victim = tmp.path().join("root-only/uploads");
    std::fs::create_dir_all(&victim).expect("mkdir");
    std::fs::write(victim.join("photo"), "root's secret\n").expect("write");
    (tmp, app, victim)
}

#[test]
fn a_program_in_a_pinned_view_reads_what_was_pinned_whatever_is_linked_on_the_way() {
    let (tmp, app, _) = pinned_scene();
    let storage = app.join("shared/storage");
    let (uploads, notes, latest) = (
        storage.join("uploads"),
        storage.join("notes"),
        storage.join("latest"),
    );
    let view = View::pin(&[
        uploads.clone(),
        notes.clone(),
        latest.clone(),
        uploads.join("photo"),
    ])
    .expect("pinned");
    // A path inside another is read through the outer one, never given on its own.
    assert_eq!(
        view.paths(),
        [latest.clone(), notes.clone(), uploads.clone()]
    );
    // The app's user swaps the way there for a link to root's directory.
    std::fs::rename(&storage, app.join("shared/moved")).expect("mv");
    std::os::unix::fs::symlink(tmp.path().join("root-only"), &storage).expect("ln");
    let read = format!(
        "cat {0}/photo {1}; readlink {2}; stat -c '%a' {3} {4}",
        uploads.display(),
        notes.display(),
        latest.display(),
        app.display(),
        storage.display()
    );
    let out = block_on(RealProcesses.run(sh(&read).view(view))).expect("starts");
    assert_eq!(
        out.stdout, "mine\nnotes\nuploads/photo\n777\n777\n",
        "{}",
        out.stderr
    );
    // The same command without the view: what the view stops.
    let out = block_on(RealProcesses.run(sh(&format!("cat {}/photo", uploads.display()))))
        .expect("starts");
    assert_eq!(out.stdout, "root's secret\n");
    // Nothing of the view is left in strackt's own mount table.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&tmp.path().display().to_string()),
        "{mounts}"
    );
}

#[test]
fn pinning_refuses_a_planted_link_and_names_a_missing_path() {
    let (tmp, app, _) = pinned_scene();
    let storage = app.join("shared/storage");
    let e = View::pin(&[storage.join("nothing")]).expect_err("missing");
    assert_eq!(
        crate::host::tree::missing(&e),
        Some(storage.join("nothing").as_path())
    );
    std::fs::rename(&storage, app.join("shared/moved")).expect("mv");
    std::os::unix::fs::symlink(tmp.path().join("root-only"), &storage).expect("ln");
    let e = View::pin(&[storage.join("uploads")]).expect_err("refused");
    assert!(crate::host::tree::is_refused(&e), "{e}");
}
