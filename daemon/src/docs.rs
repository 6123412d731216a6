//! The manual pages and shell completions, generated from the clap definition of the command
//! line so they cannot drift from it. The package build writes them (`strackt man DIR`,
//! `strackt completions SHELL`); nothing here runs on a server otherwise.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;

/// Write `strackt.8` and one `strackt-<command>.8` per subcommand into `dir`.
///
/// # Errors
/// When a page cannot be written.
pub fn man_pages(dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let top = Cli::command();
    let mut written = vec![];
    let mut page = |cmd: clap::Command, name: String| -> anyhow::Result<()> {
        let file = dir.join(format!("{name}.8"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.name(name.clone()))
            .section("8")
            .manual("strackt")
            .render(&mut out)
            .with_context(|| format!("rendering {name}(8)"))?;
        std::fs::write(&file, out).with_context(|| format!("writing {}", file.display()))?;
        written.push(name);
        Ok(())
    };
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub.clone(), format!("strackt-{}", sub.get_name()))?;
    }
    page(top, "strackt".into())?;
    Ok(written)
}

/// Print the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "strackt",
        &mut std::io::stdout(),
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_visible_command_gets_a_page_that_names_its_options() {
        let dir = std::env::temp_dir().join(format!("strackt-man-{}", std::process::id()));
        let written = super::man_pages(&dir).expect("pages");
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
}
