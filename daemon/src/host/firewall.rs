//! nftables through the `nft` command: the real [`Firewall`]. strackt only ever touches its
//! own table (`inet strackt`); other tables (Docker's, the distribution's) are left alone.
//! Listing the table costs an `nft` process; it is skipped while the kernel's ruleset
//! generation (asked over netlink, as nft's own cache does) is the one it was listed at.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Duration;

use super::processes::{run_blocking, Cmd};
use super::HostError;

/// The nftables table strackt owns; nothing outside it is ever touched.
pub const FIREWALL_TABLE: &str = "inet strackt";

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
#[derive(Debug, Default)]
pub struct Nft {
    /// strackt's table as last listed (`None`: there was none), with the kernel's ruleset
    /// generation read just before listing it. Every committed nftables change, by anyone,
    /// bumps the generation, so while it is unchanged the listing is still what the kernel has.
    listed: Mutex<Option<(u32, Option<String>)>>,
}

/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN` (linux/netfilter/nf_tables.h).
const NFT_GETGEN: u16 = (10 << 8) | 16;
/// `NFTA_GEN_ID`: the generation attribute of the answer (a big-endian u32).
const NFTA_GEN_ID: u16 = 1;

/// The kernel's nftables ruleset generation, from one netlink request (no process); `None`
/// when the answer carries none.
fn ruleset_generation() -> Result<Option<u32>, HostError> {
    // `op: message`, as these read when they were text.
    let failed = |op: &'static str| {
        move |e: nix::Error| HostError::Command {
            op,
            message: e.to_string(),
        }
    };
    use nix::sys::socket::{
        recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
        SockProtocol, SockType,
    };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(failed("netlink socket"))?;
    // A kernel that does not answer must not hold the pass up: list with nft instead.
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(1, 0),
    )
    .map_err(failed("netlink timeout"))?;
    // nlmsghdr (length, type, flags = NLM_F_REQUEST, sequence, port) + nfgenmsg (AF_UNSPEC,
    // NFNETLINK_V0, resource id 0).
    let mut request = Vec::with_capacity(20);
    request.extend_from_slice(&20u32.to_ne_bytes());
    request.extend_from_slice(&NFT_GETGEN.to_ne_bytes());
    request.extend_from_slice(&1u16.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&[0, 0, 0, 0]);
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(failed("netlink request"))?;
    let mut answer = [0u8; 512];
    let n =
        recv(fd.as_raw_fd(), &mut answer, MsgFlags::empty()).map_err(failed("netlink answer"))?;
    Ok(parse_generation(answer.get(..n).unwrap_or_default()))
}

/// The generation in a `NFT_MSG_NEWGEN` answer (`None` for an error or anything else).
fn parse_generation(msg: &[u8]) -> Option<u32> {
    let u16_at = |b: &[u8], i: usize| Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?));
    let len = u32::from_ne_bytes(msg.get(0..4)?.try_into().ok()?) as usize;
    // The answer to GETGEN is NEWGEN (`… | 15`); NLMSG_ERROR (2) and the rest carry none.
    if u16_at(msg, 4)? != (10 << 8) | 15 {
        return None;
    }
    let mut attrs = msg.get(20..len.min(msg.len()))?;
    while attrs.len() >= 4 {
        let size = usize::from(u16_at(attrs, 0)?);
        if size < 4 {
            return None;
        }
        // The top bits of the type are flags (nested, byte order).
        if u16_at(attrs, 2)? & 0x3fff == NFTA_GEN_ID {
            return Some(u32::from_be_bytes(attrs.get(4..8)?.try_into().ok()?));
        }
        attrs = attrs.get(size.next_multiple_of(4)..)?;
    }
    None
}

/// How long one nft call may take.
const NFT_LIMIT: Duration = Duration::from_secs(60);

fn nft(
    op: &'static str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<(bool, String, String), HostError> {
    let cmd = Cmd::new("nft", NFT_LIMIT)
        .args(args)
        .stdin(stdin.unwrap_or_default())
        // A listing is compared whole with the ruleset it should be.
        .keep(16 << 20);
    let out = run_blocking(op, cmd).map_err(|e| match e {
        HostError::Spawn { .. } => HostError::Command {
            op,
            message: format!("running {e} (is the nftables package installed?)"),
        },
        e => e,
    })?;
    Ok((out.success(), out.stdout, out.stderr))
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
        // Read before listing: a change between the two makes the next pass list again.
        let generation = match ruleset_generation() {
            Ok(Some(g)) => Some(g),
            Ok(None) => {
                tracing::debug!("nftables generation unknown, listing: netlink answer without a ruleset generation");
                None
            }
            Err(e) => {
                tracing::debug!("nftables generation unknown, listing: {e}");
                None
            }
        };
        let mut listed = self.listed.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(now), Some((then, text))) = (generation, listed.as_ref()) {
            if now == *then {
                return Ok(text.clone());
            }
        }
        let (family, name) = FIREWALL_TABLE
            .split_once(' ')
            .unwrap_or(("inet", "strackt"));
        let text = match nft("nft list", &["list", "table", family, name], None)? {
            (true, out, _) => Some(out),
            (false, _, err) if err.contains("No such file or directory") => None,
            (false, _, err) => {
                return Err(HostError::Command {
                    op: "nft list",
                    message: tail(&err),
                })
            }
        };
        *listed = generation.map(|g| (g, text.clone()));
        Ok(text)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A `NFT_MSG_NEWGEN` answer as the kernel sends it: header, nfgenmsg, then the generation,
    /// the pid and the name of the process that made the last change.
    fn newgen(kind: u16, generation: u32) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&NFTA_GEN_ID.to_ne_bytes());
        attrs.extend_from_slice(&generation.to_be_bytes());
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&2u16.to_ne_bytes());
        attrs.extend_from_slice(&4242u32.to_be_bytes());
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&3u16.to_ne_bytes());
        attrs.extend_from_slice(b"nft\0");
        let mut msg = Vec::new();
        msg.extend_from_slice(&(20 + attrs.len() as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&[0; 4]);
        msg.extend(attrs);
        msg
    }

    #[test]
    fn the_generation_is_read_from_newgen_and_nothing_else() {
        assert_eq!(parse_generation(&newgen((10 << 8) | 15, 77)), Some(77));
        // NLMSG_ERROR, a truncated answer and an empty one carry no generation.
        assert_eq!(parse_generation(&newgen(2, 77)), None);
        assert_eq!(parse_generation(&newgen((10 << 8) | 15, 77)[..22]), None);
        assert_eq!(parse_generation(&[]), None);
    }
}
