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
