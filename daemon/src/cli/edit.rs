//! `strackt edit`, `strackt plan` and `strackt diff`: a definition change shown before it is
//! saved, and what changed between generations.
//!
//! `edit` works like `visudo`: the definition is copied into a private temporary directory,
//! `$VISUAL`/`$EDITOR` edits the copy, and the copy is checked (the same parse as `strackt
//! check`) and planned by the daemon (packages resolved, the SSH lock-out guard) before
//! anything is written. A refused edit is shown with its `FILE:LINE:COL` and can be edited
//! again; a valid one shows the plan with unified diffs and is saved only after a yes. The save
//! itself is the daemon's (`ControlRequest::Save`), which replaces the file only if nobody else
//! saved it meanwhile and runs the pass the answer reports. This module reads the definition and
//! the terminal and starts the editor; it never writes the definition file itself.
//!
//! The editor is the one program strackt starts outside `host::processes`, on purpose: it is
//! the operator's own tool, run by the CLI in the operator's terminal (inherited stdin, stdout
//! and environment, no time limit, no output kept), not host work the daemon does. Routing it
//! through the seam would take exactly what the seam exists to enforce away from it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::api::{ControlRequest, DefinitionText};
use crate::daemon::{Paths, PlanView};
use crate::host::definition::DefinitionFile;
use crate::host::files::sha256_hex;
use crate::ops::{Operation, Outcome};

use super::control::{data, print_operation, request};

/// `strackt plan [--definition FILE]`: exit 0 nothing to change, 2 changes, 1 an error (the
/// definition is refused, or the daemon cannot plan it).
///
/// # Errors
/// When the file cannot be read or the daemon cannot be reached.
pub fn plan(paths: &Paths, definition: Option<&Path>, json: bool) -> anyhow::Result<i32> {
    let input = match definition {
        None => None,
        Some(file) => {
            let text = super::read_definition(file)?;
            // Checked here first, so its problems name FILE the way `strackt check` does.
            if let Err(e) = crate::definition::parse(&text, file) {
                eprintln!("{e}");
                return Ok(1);
            }
            Some(DefinitionText {
                file: file.display().to_string(),
                text,
            })
        }
    };
    let view: PlanView = match request(paths, &ControlRequest::Plan { definition: input })? {
        Ok(v) => serde_json::from_value(v)?,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", view.text);
    }
    Ok(if has_changes(&view) { 2 } else { 0 })
}

/// Whether a plan changes anything: a step to run, or generation content that differs.
fn has_changes(view: &PlanView) -> bool {
    !view.steps.is_empty() || !view.changes.is_empty()
}

/// `strackt diff [A] [B]`.
///
/// # Errors
/// The daemon's refusal (no such generation) or an unreachable daemon.
pub fn diff(paths: &Paths, from: Option<u64>, to: Option<u64>, json: bool) -> anyhow::Result<i32> {
    let view: crate::generation::diff::DiffView =
        data(request(paths, &ControlRequest::Diff { from, to })?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", view.text);
    }
    Ok(0)
}

/// What the user answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Save,
    EditAgain,
    Quit,
}

/// Read an answer from the prompt's line: `valid` says whether a save is on offer.
fn answer(line: &str, valid: bool) -> Answer {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" if valid => Answer::Save,
        "e" | "edit" => Answer::EditAgain,
        _ => Answer::Quit,
    }
}

/// `strackt edit [--yes]`: exit 0 when the edit is live on a new generation or changed
/// nothing, 1 when it was not saved or the pass failed and rolled back.
///
/// # Errors
/// The definition or the temporary copy cannot be read or written, the editor cannot be
/// started, or the daemon cannot be reached.
pub fn edit(paths: &Paths, yes: bool, json: bool) -> anyhow::Result<i32> {
    let interactive = std::io::stdin().is_terminal();
    if !interactive && !yes {
        bail!("strackt edit asks before it saves, and standard input is not a terminal: run it in a terminal, or pass --yes to save a valid edit without asking");
    }
    let file = &paths.definition;
    let original = DefinitionFile::new(file)
        .read_if_present()
        .with_context(|| format!("reading {}", file.display()))?;
    let base_sha256 = original.as_deref().map(sha256_hex);
    let start = match &original {
        Some(bytes) => String::from_utf8(bytes.clone())
            .with_context(|| format!("{} is not UTF-8 text", file.display()))?,
        None => "version: 1\n".to_string(),
    };
    // A private directory (0700), so the copy's name cannot be raced and editors' swap and
    // backup files beside it stay private too.
    let dir = tempfile::Builder::new()
        .prefix("strackt-edit-")
        .tempdir_in(scratch(paths))
        .context("creating a private directory for the copy")?;
    let copy = dir.path().join(
        file.file_name()
            .unwrap_or_else(|| std::ffi::OsStr::new("server.yaml")),
    );
    // New, 0600 and never through a link, as strackt's own private files are.
    crate::host::private::create_private(&copy)
        .map_err(anyhow::Error::from)
        .and_then(|mut f| Ok(f.write_all(start.as_bytes())?))
        .with_context(|| format!("writing the copy {}", copy.display()))?;
    let unchanged = format!("nothing saved: {} is unchanged", file.display());
    let text = loop {
        if !run_editor(&copy)? {
            eprintln!("the editor did not exit successfully; {unchanged}");
            return Ok(1);
        }
        let text = match crate::host::private::read_private(&copy) {
            Ok(Some(bytes)) => {
                String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", file.display()))
            }
            Ok(None) => bail!(
                "reading the copy {}: the editor left no regular file there",
                copy.display()
            ),
            Err(e) => bail!("the copy: {e}"),
        };
        if let Ok(t) = &text {
            if original.as_deref() == Some(t.as_bytes()) || (original.is_none() && *t == start) {
                println!("no changes: {} is as it was", file.display());
                return Ok(0);
            }
        }
        let reviewed = match text {
            Ok(t) => review(paths, file, &t)?.map(|view| (t, view)),
            Err(e) => Err(e),
        };
        let choice = match &reviewed {
            Ok((_, view)) => {
                print!("{}", view.text);
                if view.target == "current" {
                    println!("(the edit gives the text the running generation was built from: no new generation)");
                } else if !has_changes(view) {
                    println!("(the edit changes no generation content: a new generation with the same content)");
                }
                if yes {
                    Answer::Save
                } else {
                    ask(
                        &format!(
                            "Save {} and apply it? [y/N/e] (e: edit again) ",
                            file.display()
                        ),
                        true,
                    )?
                }
            }
            Err(problems) => {
                eprintln!("{problems}");
                if !interactive {
                    eprintln!("{unchanged}");
                    return Ok(1);
                }
                ask(
                    "What now? (e)dit again, e(x)it without saving [e/x] ",
                    false,
                )?
            }
        };
        match (choice, reviewed) {
            (Answer::Save, Ok((text, _))) => break text,
            (Answer::EditAgain, _) => continue,
            _ => {
                println!("{unchanged}");
                return Ok(1);
            }
        }
    };
    let op: Operation = match request(
        paths,
        &ControlRequest::Save {
            definition: DefinitionText {
                file: file.display().to_string(),
                text,
            },
            base_sha256,
        },
    )? {
        Ok(v) => serde_json::from_value(v)?,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&op)?);
    } else {
        println!("saved {}", file.display());
        print_operation(&op, true);
        if op.outcome != Outcome::Success {
            println!("the edit is saved in {} but does not run: fix it with `strackt edit`, or `strackt apply` to try it again", file.display());
        }
    }
    Ok(if op.outcome == Outcome::Success { 0 } else { 1 })
}

/// Check an edited text the way `strackt check --offline` does, then have the daemon plan it.
/// `Ok(Err(problems))`: refused, with every problem located.
fn review(paths: &Paths, file: &Path, text: &str) -> anyhow::Result<Result<PlanView, String>> {
    if let Err(e) = crate::definition::parse(text, file) {
        return Ok(Err(format!(
            "your edit of {} is refused (nothing was saved):\n{e}",
            file.display()
        )));
    }
    let input = DefinitionText {
        file: file.display().to_string(),
        text: text.to_string(),
    };
    Ok(
        match request(
            paths,
            &ControlRequest::Plan {
                definition: Some(input),
            },
        )? {
            Ok(v) => Ok(serde_json::from_value(v)?),
            Err(e) => Err(format!(
                "your edit of {} cannot be applied (nothing was saved):\n{e}",
                file.display()
            )),
        },
    )
}

/// Where the private copy goes: beside the control socket (`/run/strackt`, root's only), else
/// the temporary directory.
fn scratch(paths: &Paths) -> PathBuf {
    paths
        .socket
        .parent()
        .filter(|d| d.is_dir())
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
}

/// Run `$VISUAL`, `$EDITOR`, `editor` or `vi` on `path` (through `sh`, so an editor with
/// arguments such as `code --wait` works); whether it exited 0.
fn run_editor(path: &Path) -> anyhow::Result<bool> {
    let chosen = ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty());
    let script = match &chosen {
        Some(editor) => format!("{editor} \"$1\""),
        None => {
            "if command -v editor >/dev/null 2>&1; then exec editor \"$1\"; else exec vi \"$1\"; fi"
                .to_string()
        }
    };
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .arg("sh")
        .arg(path)
        .status()
        .with_context(|| {
            format!(
                "starting the editor ({})",
                chosen.as_deref().unwrap_or("editor or vi")
            )
        })?;
    Ok(status.success())
}

/// Ask on the terminal (`valid`: a save is on offer); end of input is "no".
fn ask(prompt: &str, valid: bool) -> anyhow::Result<Answer> {
    print!("{prompt}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer")?;
    Ok(answer(&line, valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_yes_saves_and_only_a_valid_edit() {
        for (line, valid, want) in [
            ("y\n", true, Answer::Save),
            ("YES\n", true, Answer::Save),
            ("\n", true, Answer::Quit),
            ("n\n", true, Answer::Quit),
            ("e\n", true, Answer::EditAgain),
            ("y\n", false, Answer::Quit),
            ("e\n", false, Answer::EditAgain),
            ("x\n", false, Answer::Quit),
            ("", false, Answer::Quit),
        ] {
            assert_eq!(answer(line, valid), want, "{line:?} valid={valid}");
        }
    }

    #[test]
    fn the_copy_goes_beside_the_socket_or_into_the_temporary_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut paths = Paths::from_env();
        paths.socket = dir.path().join("control.sock");
        assert_eq!(scratch(&paths), dir.path());
        paths.socket = dir.path().join("missing/control.sock");
        assert_eq!(scratch(&paths), std::env::temp_dir());
    }
}
