use std::path::Path;

use super::*;

#[test]
fn parse_opts() {
    let c = Cli::try_parse_from(["strackt", "rollback", "3", "--json"]).expect("parses");
    assert!(c.json);
    assert!(matches!(c.command, Command::Rollback { id: Some(3) }));
    assert!(matches!(
        Cli::try_parse_from(["strackt", "check"])
            .expect("parses")
            .command,
        Command::Check {
            file: None,
            offline: false
        }
    ));
    assert!(matches!(
        Cli::try_parse_from(["strackt", "history", "--operation", "7"])
            .expect("parses")
            .command,
        Command::History {
            operation: Some(7),
            follow: false
        }
    ));
    assert!(Cli::try_parse_from(["strackt", "rollback", "x"]).is_err());
    assert!(matches!(
        Cli::try_parse_from(["strackt", "generations", "--all", "--json"])
            .expect("parses")
            .command,
        Command::Generations { all: true }
    ));
    assert!(matches!(
        Cli::try_parse_from(["strackt", "generations"])
            .expect("parses")
            .command,
        Command::Generations { all: false }
    ));
    assert!(matches!(
        Cli::try_parse_from(["strackt", "hold", "--for", "30m", "--reason", "x"])
            .expect("parses")
            .command,
        Command::Hold { release: false, .. }
    ));
    assert!(
        Cli::try_parse_from(["strackt", "hold"]).is_err(),
        "hold needs --for or --release"
    );
    assert!(Cli::try_parse_from(["strackt", "hold", "--for", "1m", "--release"]).is_err());
    assert!(matches!(
        Cli::try_parse_from(["strackt", "plan"])
            .expect("parses")
            .command,
        Command::Plan { definition: None }
    ));
    match Cli::try_parse_from(["strackt", "plan", "--definition", "/root/next.yaml"])
        .expect("parses")
        .command
    {
        Command::Plan { definition } => {
            assert_eq!(definition.as_deref(), Some(Path::new("/root/next.yaml")));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Cli::try_parse_from(["strackt", "edit", "--yes"])
            .expect("parses")
            .command,
        Command::Edit { yes: true }
    ));
    assert!(matches!(
        Cli::try_parse_from(["strackt", "diff"])
            .expect("parses")
            .command,
        Command::Diff {
            from: None,
            to: None
        }
    ));
    assert!(matches!(
        Cli::try_parse_from(["strackt", "diff", "3"])
            .expect("parses")
            .command,
        Command::Diff {
            from: Some(3),
            to: None
        }
    ));
    assert!(matches!(
        Cli::try_parse_from(["strackt", "diff", "3", "5"])
            .expect("parses")
            .command,
        Command::Diff {
            from: Some(3),
            to: Some(5)
        }
    ));
    assert!(Cli::try_parse_from(["strackt", "diff", "x"]).is_err());
    match Cli::try_parse_from(["strackt", "upgrade", "--security", "a", "b"])
        .expect("parses")
        .command
    {
        Command::Upgrade { security, packages } => {
            assert!(security);
            assert_eq!(packages, ["a", "b"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn duration_flags_are_bounded() {
    assert_eq!(
        bounded_secs("30m", daemon::MAX_HOLD_SECS, "--for"),
        Ok(1800)
    );
    for bad in ["300000y", "0s", "31days", "x", ""] {
        let e = bounded_secs(bad, daemon::MAX_HOLD_SECS, "--for").expect_err(bad);
        assert!(e.contains("--for"), "{bad}: {e}");
    }
    assert!(bounded_secs("2d", daemon::MAX_CONFIRM_SECS, "--confirm-within").is_err());
    // What the daemon gets from a raw control request is checked the same way.
    assert!(daemon::deadline_in(u64::MAX, u64::MAX, "--for").is_err());
    assert!(daemon::deadline_in(i64::MAX as u64, u64::MAX, "--for").is_err());
}

#[test]
fn every_visible_command_gets_a_page_that_names_its_options() {
    let dir = std::env::temp_dir().join(format!("strackt-man-{}", std::process::id()));
    let written = crate::docs::man_pages(&dir, Cli::command()).expect("pages");
    assert!(written.contains(&"strackt".to_string()));
    assert!(written.contains(&"strackt-deploy".to_string()));
    assert!(
        !written.iter().any(|p| p == "strackt-man"),
        "the hidden command has no page"
    );
    let apply = std::fs::read_to_string(dir.join("strackt-apply.8")).expect("apply page");
    assert!(apply.contains(".TH strackt-apply 8"), "{apply}");
    assert!(apply.contains("confirm\\-within"), "{apply}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn export_reads_the_current_generation_and_no_current_link_another_user_made() {
    use std::os::unix::fs::{chown, symlink};
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = Paths {
        definition: dir.path().join("server.yaml"),
        root: dir.path().join("state"),
        socket: dir.path().join("control.sock"),
        cache: dir.path().join("cache"),
    };
    let e = export(&paths).expect_err("no state yet");
    assert!(
        format!("{e:#}").contains("has strackt applied a generation yet?"),
        "{e:#}"
    );
    let store = crate::generation::Store::open(&paths.root).expect("store");
    let e = export(&paths).expect_err("no generation yet");
    assert!(
        format!("{e:#}").contains("no generation is current"),
        "{e:#}"
    );
    let text = "version: 1\nservices:\n  a: { exec: /bin/sleep 1 }\n";
    let def = crate::definition::parse(text, Path::new("t")).expect("valid");
    store
        .build(1, &crate::generation::render(&def), text)
        .expect("build");
    store.flip(Some(1)).expect("flip");
    assert_eq!(export(&paths).expect("export"), text);
    // `current` pointed at a forged generation in a directory another user owns: not read.
    let forged = dir.path().join("forged");
    std::fs::create_dir(&forged).expect("mkdir");
    let planted = "version: 1\nservices:\n  evil: { exec: /bin/sh }\n";
    std::fs::write(forged.join("definition.yaml"), planted).expect("write");
    std::fs::copy(
        store.dir(1).join("manifest.json"),
        forged.join("manifest.json"),
    )
    .expect("copy");
    chown(&forged, Some(4242), Some(4242)).expect("chown");
    std::fs::remove_file(paths.root.join("current")).expect("rm");
    symlink(&forged, paths.root.join("current")).expect("link");
    let e = export(&paths).expect_err("a forged current");
    assert!(!format!("{e:#}").contains("evil"), "{e:#}");
}
