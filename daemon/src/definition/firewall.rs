//! The `firewall:` section: rules as written, and the pure network arithmetic on them
//! (CIDRs, port ranges, whether a connection would be let in). Rendering to nft is
//! `generation/`'s, loading it the host's; nothing here touches either.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::patterns;

/// The `firewall:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallSpec {
    /// What happens to incoming traffic no rule allows: `drop` (default) or `accept`.
    /// Loopback, established connections and ICMP are always accepted.
    #[serde(default = "default_policy")]
    pub input: Policy,
    /// Allowed incoming traffic.
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    /// Apply even if the rules would keep a connected SSH client from connecting again
    /// (otherwise such a definition is refused).
    #[serde(default)]
    pub allow_lockout: bool,
}

impl FirewallSpec {
    /// Whether a new TCP connection from `remote` to local `port` would be let in.
    pub fn admits_tcp(&self, remote: std::net::IpAddr, port: u16) -> bool {
        if self.input == Policy::Accept || remote.is_loopback() {
            return true;
        }
        self.allow.iter().any(|rule| {
            rule.proto == Proto::Tcp
                && rule
                    .port
                    .range()
                    .is_some_and(|(lo, hi)| (lo..=hi).contains(&port))
                && (rule.from.is_empty()
                    || rule
                        .from
                        .iter()
                        .filter_map(|c| parse_cidr(c))
                        .any(|(net, len)| in_network(remote, net, len)))
        })
    }
}

fn in_network(addr: std::net::IpAddr, net: std::net::IpAddr, len: u8) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (addr, net) {
        (V4(a), V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (V6(a), V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn default_policy() -> Policy {
    Policy::Drop
}

/// A chain policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Accept.
    Accept,
    /// Drop.
    Drop,
}

/// One allow rule: a port or range, a protocol, optional sources (IPv4 and IPv6 CIDRs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// A port (`22`) or a range (`"8000-8100"`).
    pub port: PortSpec,
    /// `tcp` (default) or `udp`.
    #[serde(default = "default_proto")]
    pub proto: Proto,
    /// Source networks; empty means from anywhere.
    #[serde(default)]
    pub from: Vec<String>,
}

fn default_proto() -> Proto {
    Proto::Tcp
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// As nft writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A port number or a `"LOW-HIGH"` range as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    Number(#[schemars(range(min = 1, max = 65535))] i64),
    /// A range `"8000-8100"` (or one port as a string).
    Text(#[schemars(regex(pattern = patterns::PORT_RANGE))] String),
}

impl PortSpec {
    /// The inclusive range, if valid (1–65535, low ≤ high).
    pub fn range(&self) -> Option<(u16, u16)> {
        let ok = |n: i64| u16::try_from(n).ok().filter(|p| *p > 0);
        match self {
            PortSpec::Number(n) => ok(*n).map(|p| (p, p)),
            PortSpec::Text(t) => {
                let (a, b) = t.split_once('-').unwrap_or((t, t));
                let (a, b) = (ok(a.trim().parse().ok()?)?, ok(b.trim().parse().ok()?)?);
                (a <= b).then_some((a, b))
            }
        }
    }
}

/// Parse a CIDR (`10.0.0.0/8`, `2001:db8::/32`, or a bare address); `None` when invalid or
/// when bits are set beyond the prefix (a likely typo).
pub fn parse_cidr(text: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a.parse::<std::net::IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = text.parse::<std::net::IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let bits = match addr {
        std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        std::net::IpAddr::V6(v6) => u128::from(v6),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return None;
    }
    let host_bits = if len == 0 {
        u128::MAX
    } else {
        u128::MAX >> len
    };
    let host_bits = if addr.is_ipv4() {
        host_bits & (u128::MAX << 96)
    } else {
        host_bits
    };
    (bits & host_bits == 0).then_some((addr, len))
}

#[cfg(test)]
mod cidr {
    use super::parse_cidr;

    #[test]
    fn cidrs_with_bits_past_the_prefix_are_refused() {
        assert!(parse_cidr("10.0.0.0/8").is_some());
        assert!(parse_cidr("0.0.0.0/0").is_some());
        assert!(parse_cidr("192.0.2.7").is_some());
        assert!(parse_cidr("2001:db8::/32").is_some());
        assert!(parse_cidr("::/0").is_some());
        assert!(parse_cidr("10.0.0.1/8").is_none());
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("2001:db8::1/32").is_none());
        assert!(parse_cidr("nonsense").is_none());
    }

    #[test]
    fn admits_tcp_follows_policy_ports_and_sources() {
        use crate::definition::{parse, Definition};
        let def = |yaml: &str| -> Definition {
            parse(yaml, std::path::Path::new("t"))
                .expect("valid")
                .definition()
                .clone()
        };
        let fw = def("version: 1\nfirewall:\n  allow:\n    - { port: 22, from: [192.0.2.0/24, \"2001:db8::/32\"] }\n    - { port: \"8000-8100\" }\n    - { port: 53, proto: udp }\n").firewall.expect("firewall");
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        assert!(fw.admits_tcp(ip("192.0.2.9"), 22));
        assert!(!fw.admits_tcp(ip("198.51.100.1"), 22));
        assert!(fw.admits_tcp(ip("2001:db8::5"), 22));
        assert!(!fw.admits_tcp(ip("2001:db9::5"), 22));
        assert!(fw.admits_tcp(ip("198.51.100.1"), 8050));
        assert!(!fw.admits_tcp(ip("198.51.100.1"), 53), "udp rule");
        assert!(fw.admits_tcp(ip("127.0.0.1"), 22), "loopback always");
        let open = def("version: 1\nfirewall:\n  input: accept\n")
            .firewall
            .expect("firewall");
        assert!(open.admits_tcp(ip("198.51.100.1"), 22));
    }
}
