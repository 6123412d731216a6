//! nftables through the `nft` command: the real [`Firewall`]. strackt only ever touches its
//! own table (`inet strackt`); other tables (Docker's, the distribution's) are left alone.

use std::io::Write;
use std::process::{Command, Stdio};

use super::HostError;
use crate::generation::FIREWALL_TABLE;

/// The packet filter. Real implementation: [`Nft`].
pub trait Firewall: Send + Sync {
    /// Check a ruleset without applying it (`nft -c -f`).
    fn check(&self, ruleset: &str) -> Result<(), HostError>;
    /// Apply a ruleset as one transaction (`nft -f`): all of it or none.
    fn apply(&self, ruleset: &str) -> Result<(), HostError>;
    /// The live listing of strackt's table, `None` when it does not exist.
    fn listing(&self) -> Result<Option<String>, HostError>;
    /// Delete strackt's table (absent is fine).
    fn remove(&self) -> Result<(), HostError>;
}

/// The `nft` command.
#[derive(Debug, Default, Clone, Copy)]
pub struct Nft;

fn nft(
    op: &'static str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<(bool, String, String), HostError> {
    let fail = |message: String| HostError::Command { op, message };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "running nft: {e} (is the nftables package installed?)"
            ))
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| fail(format!("writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for nft: {e}")))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The end of a command's stderr: enough to explain, short enough for a log line.
fn tail(text: &str) -> String {
    let text = text.trim();
    let start = text.char_indices().rev().nth(1023).map_or(0, |(i, _)| i);
    text[start..].to_string()
}

impl Firewall for Nft {
    fn check(&self, ruleset: &str) -> Result<(), HostError> {
        match nft("nft -c", &["-c", "-f", "-"], Some(ruleset))? {
            (true, ..) => Ok(()),
            (false, _, err) => Err(HostError::Command {
                op: "nft -c",
                message: format!("the ruleset does not load: {}", tail(&err)),
            }),
        }
    }

    fn apply(&self, ruleset: &str) -> Result<(), HostError> {
        match nft("nft -f", &["-f", "-"], Some(ruleset))? {
            (true, ..) => Ok(()),
            (false, _, err) => Err(HostError::Command {
                op: "nft -f",
                message: tail(&err),
            }),
        }
    }

    fn listing(&self) -> Result<Option<String>, HostError> {
        let (family, name) = FIREWALL_TABLE
            .split_once(' ')
            .unwrap_or(("inet", "strackt"));
        match nft("nft list", &["list", "table", family, name], None)? {
            (true, out, _) => Ok(Some(out)),
            (false, _, err) if err.contains("No such file or directory") => Ok(None),
            (false, _, err) => Err(HostError::Command {
                op: "nft list",
                message: tail(&err),
            }),
        }
    }

    fn remove(&self) -> Result<(), HostError> {
        let (family, name) = FIREWALL_TABLE
            .split_once(' ')
            .unwrap_or(("inet", "strackt"));
        match nft("nft delete", &["delete", "table", family, name], None)? {
            (true, ..) => Ok(()),
            (false, _, err) if err.contains("No such file or directory") => Ok(()),
            (false, _, err) => Err(HostError::Command {
                op: "nft delete",
                message: tail(&err),
            }),
        }
    }
}
