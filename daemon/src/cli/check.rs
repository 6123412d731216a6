//! `strackt check` and `strackt export`: run locally, without the daemon.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::daemon::Paths;
pub(super) fn check(file: PathBuf, offline: bool, json: bool) -> anyhow::Result<i32> {
    let text = super::read_definition(&file)?;
    let (problems, warnings) = match crate::definition::parse(&text, &file) {
        Ok(def) if offline => (Vec::new(), def.warnings().to_vec()),
        Ok(def) => (host_problems(&def, &text), def.warnings().to_vec()),
        Err(e) => (e.problems, Vec::new()),
    };
    if problems.is_empty() {
        if json {
            println!(
                "{}",
                serde_json::json!({ "valid": true, "problems": [], "warnings": warnings })
            );
        } else {
            for w in &warnings {
                let path = if w.path.is_empty() {
                    "(document)"
                } else {
                    &w.path
                };
                eprintln!(
                    "{}:{}:{}: {}: warning: {}",
                    file.display(),
                    w.line,
                    w.column,
                    path,
                    w.message
                );
            }
            println!("{}: ok", file.display());
        }
        return Ok(0);
    }
    let mut problems = problems;
    problems.sort_by_key(|p| (p.line, p.column));
    let err = crate::definition::DefinitionError { file, problems };
    if json {
        println!(
            "{}",
            serde_json::json!({ "valid": false, "problems": err.problems })
        );
    } else {
        eprintln!("{err}");
    }
    Ok(1)
}

/// What only this host can tell: packages (and versions) its apt sources do not have.
fn host_problems(
    def: &crate::definition::ValidatedDefinition,
    text: &str,
) -> Vec<crate::definition::Problem> {
    use crate::host::packages::{Apt, Packages};
    let apt = Apt::new(Path::new("/var/cache/strackt/debs"));
    let resolved = match apt.resolve(&def.definition().packages) {
        Ok(resolved) => resolved,
        Err(e) => {
            return vec![crate::definition::problem_at(
                text,
                &["packages"],
                format!("apt cannot be asked: {e}"),
            )]
        }
    };
    resolved
        .into_iter()
        .filter_map(|(name, version)| {
            let message = match version.err()? {
                crate::host::HostError::Command { message, .. } => message,
                other => other.to_string(),
            };
            Some(crate::definition::problem_at(
                text,
                &["packages", &name],
                message,
            ))
        })
        .collect()
}

/// The current generation's definition with its lock folded in: every `latest` package becomes
/// the exact version the generation installed, so a fresh server given it gets the same
/// versions. Without `latest` packages the text is returned unchanged, comments and all.
pub(super) fn export(paths: &Paths) -> anyhow::Result<String> {
    let path = paths.root.join("current/definition.yaml");
    let not_yet = || {
        format!(
            "reading {} (has strackt applied a generation yet?)",
            path.display()
        )
    };
    // Through the generation store: `current` must lead to `generations/<N>` of root's.
    let Some((text, manifest)) = crate::generation::Store::at(&paths.root)
        .read_current()
        .with_context(not_yet)?
    else {
        anyhow::bail!("{}: no generation is current", not_yet());
    };
    crate::backup::server::pinned(&text, &path, &manifest.packages, manifest.id)
        .map_err(|e| anyhow::anyhow!("{e}"))
}
