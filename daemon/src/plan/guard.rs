//! The SSH lock-out guard (pure): a firewall that would keep a connected SSH client from
//! connecting again is refused unless the definition says `allow_lockout: true`.
//!
//! Established connections survive any strackt ruleset (replies are always accepted), so the
//! harm is the *next* login: the guard asks whether each connected client could open a new
//! connection to the port it is on now.

use crate::definition::FirewallSpec;
use crate::host::firewall::SshSession;

/// Why `fw` is refused given the connected `sessions`, or `None` when it is safe.
pub fn lockout(fw: &FirewallSpec, sessions: &[SshSession]) -> Option<String> {
    if fw.allow_lockout {
        return None;
    }
    let mut cut: Vec<String> = sessions
        .iter()
        .filter(|s| !fw.admits_tcp(s.remote, s.port))
        .map(|s| format!("{} (port {})", s.remote, s.port))
        .collect();
    cut.dedup();
    let first = sessions.iter().find(|s| !fw.admits_tcp(s.remote, s.port))?;
    Some(format!(
        "refused: firewall.allow would lock out the connected SSH client {}: it could not connect again. \
         Allow it, e.g. `- {{ port: {}, from: [{}] }}`, or set `firewall.allow_lockout: true` if that is intended",
        cut.join(", "),
        first.port,
        first.remote
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::definition::parse;

    fn fw(yaml: &str) -> FirewallSpec {
        parse(&format!("version: 1\nfirewall:\n{yaml}"), Path::new("t"))
            .expect("valid")
            .definition()
            .firewall
            .clone()
            .expect("firewall")
    }

    #[test]
    fn a_connected_client_must_still_get_in() {
        let me = SshSession {
            remote: "192.0.2.2".parse().expect("ip"),
            port: 22,
        };
        let refused = lockout(&fw("  allow:\n    - { port: 8080 }\n"), &[me]).expect("refused");
        assert!(
            refused.contains("192.0.2.2 (port 22)") && refused.contains("allow_lockout"),
            "{refused}"
        );
        assert_eq!(
            lockout(
                &fw("  allow:\n    - { port: 22, from: [192.0.2.0/24] }\n"),
                &[me]
            ),
            None
        );
        assert_eq!(
            lockout(&fw("  allow_lockout: true\n  allow: []\n"), &[me]),
            None
        );
        assert_eq!(lockout(&fw("  input: accept\n"), &[me]), None);
        assert_eq!(lockout(&fw("  allow: []\n"), &[]), None, "nobody connected");
    }
}
