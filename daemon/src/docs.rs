//! The manual pages and shell completions, generated from the clap definition of the command
//! line so they cannot drift from it. The package build writes them (`strackt man DIR`,
//! `strackt completions SHELL`); nothing here runs on a server otherwise. The CLI hands in its
//! definition (`Cli::command()`), so this module renders any clap command and knows nothing of
//! `cli/`.
//!
//! Written with std::fs by path on purpose: the package build runs it with the builder's rights
//! into a directory it names (a `cli/` operator path, not host work), where `host/`'s rules —
//! a link followed only where root alone could have made it — would refuse an ordinary build
//! tree reached through the builder's own link.

use std::path::Path;

use anyhow::Context;

/// Write `strackt.8` for the command line `top` and one `strackt-<command>.8` per visible
/// subcommand into `dir`.
///
/// # Errors
/// When a page cannot be written.
pub fn man_pages(dir: &Path, top: clap::Command) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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

/// Print the completion script of the command line `cmd` for `shell`.
pub fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) {
    clap_complete::generate(shell, &mut cmd, "strackt", &mut std::io::stdout());
}
