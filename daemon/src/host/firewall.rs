//! nftables through the `nft` command: the real [`Firewall`]. strackt only ever touches its
//! own table (`inet strackt`); other tables (Docker's, the distribution's) are left alone.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
    /// Established inbound SSH connections (to sshd's ports), for the lock-out guard.
    fn ssh_sessions(&self) -> Result<Vec<SshSession>, HostError>;
}

/// One connected SSH client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshSession {
    /// The client's address.
    pub remote: IpAddr,
    /// The local port it is connected to.
    pub port: u16,
}

/// sshd's listening ports from its configuration (`Port` lines), 22 when none is set.
pub fn sshd_ports(configs: &[String]) -> Vec<u16> {
    let mut ports: Vec<u16> = configs
        .iter()
        .flat_map(|c| c.lines())
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let key = words.next()?;
            key.eq_ignore_ascii_case("port")
                .then(|| words.next()?.parse().ok())
                .flatten()
        })
        .collect();
    if ports.is_empty() {
        ports.push(22);
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Established connections to local `ports` from a `/proc/net/tcp` or `tcp6` table.
pub fn established_to(table: &str, ports: &[u16]) -> Vec<SshSession> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(3) != Some(&"01") {
                return None; // not ESTABLISHED
            }
            let (_, lport) = parse_endpoint(f.get(1)?)?;
            let (remote, _) = parse_endpoint(f.get(2)?)?;
            ports.contains(&lport).then_some(SshSession {
                remote,
                port: lport,
            })
        })
        .collect()
}

/// `0100007F:0016` (IPv4, each 32-bit word in host byte order) or 32 hex digits for IPv6.
fn parse_endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok())
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(w.swap_bytes())),
        [a, b, c, d] => {
            let bytes: Vec<u8> = [a, b, c, d]
                .iter()
                .flat_map(|w| w.swap_bytes().to_be_bytes())
                .collect();
            let arr: [u8; 16] = bytes.try_into().ok()?;
            let v6 = Ipv6Addr::from(arr);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some((ip, port))
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

    fn ssh_sessions(&self) -> Result<Vec<SshSession>, HostError> {
        let mut configs: Vec<String> = std::fs::read_to_string("/etc/ssh/sshd_config")
            .into_iter()
            .collect();
        if let Ok(dir) = std::fs::read_dir("/etc/ssh/sshd_config.d") {
            configs.extend(
                dir.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok()),
            );
        }
        let ports = sshd_ports(&configs);
        let mut sessions = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = std::fs::read_to_string(table) {
                sessions.extend(established_to(&text, &ports));
            }
        }
        Ok(sessions)
    }
}
