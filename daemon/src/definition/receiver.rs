//! The `receiver:` section: this server keeps other servers' backups (`strackt receiver`,
//! its own unit). Only the definition's shape and rules live here; the server that reads them
//! is the top-level `receiver/` module, which this one never names.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::parse::Problems;
use super::{KeepPolicy, SecretRef, Seg};

/// A receiver of other servers' backups: restic's REST protocol over TLS, append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSpec {
    /// Address and port to serve HTTPS on (default `0.0.0.0:8443`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the repositories live, one per client: `STORAGE/<client>/` (a plain restic
    /// repository; default `/var/lib/strackt-receiver`).
    #[serde(default = "default_storage")]
    #[schemars(regex(pattern = super::patterns::ABSOLUTE_PATH))]
    pub storage: String,
    /// The certificate chain and private key (PEM files) it serves.
    pub tls: TlsFiles,
    /// The servers that may send backups, by name. Each uses its own secret `NAME:PASSWORD`
    /// (the same file as the sender's `to.receiver.credentials`) and reaches only its own
    /// repository.
    #[schemars(extend("propertyNames" = { "pattern": super::patterns::CLIENT }))]
    pub clients: BTreeMap<String, ReceiverClient>,
    /// Retention, applied here because senders cannot delete (default: keep everything).
    #[serde(default)]
    pub keep: KeepPolicy,
    /// Retention runs this long after a client's last snapshot arrived (default `5m`), so it
    /// does not start between the parts of one run.
    #[serde(default = "default_settle")]
    #[schemars(regex(pattern = super::patterns::DURATION))]
    pub retention_after: String,
    /// Most a client's repository may hold, e.g. `200GiB` (default: no quota; a client's own
    /// `quota:` overrides it). An upload beyond it is refused with 413.
    #[serde(default)]
    pub quota: Option<String>,
    /// Free space always left on the storage's filesystem: a size (`10GiB`) or a percentage
    /// of the filesystem (`5%`, the default). An upload that would take it is refused with
    /// 507, whichever client sends it.
    #[serde(default = "default_reserve")]
    pub reserve: String,
}

/// The certificate and key the receiver serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    #[schemars(regex(pattern = super::patterns::ABSOLUTE_PATH))]
    pub certificate: String,
    /// PEM private key (root-only).
    #[schemars(regex(pattern = super::patterns::ABSOLUTE_PATH))]
    pub key: String,
}

/// One sending server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiverClient {
    /// Secret file holding `NAME:PASSWORD`.
    pub credentials: SecretRef,
    /// Retention for this client instead of the receiver's `keep:`.
    #[serde(default)]
    pub keep: Option<KeepPolicy>,
    /// This client's quota instead of the receiver's `quota:`.
    #[serde(default)]
    pub quota: Option<String>,
}

fn default_listen() -> String {
    "0.0.0.0:8443".into()
}

fn default_storage() -> String {
    "/var/lib/strackt-receiver".into()
}

fn default_settle() -> String {
    "5m".into()
}

fn default_reserve() -> String {
    "5%".into()
}

/// A size such as `500MB`, `200GiB` or `1048576` (bytes); `None` when it is not one.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// `receiver.reserve`: `Ok(Err(percent))` for `N%` (0–90), `Ok(Ok(bytes))` for a size.
pub fn parse_reserve(text: &str) -> Option<Result<u64, u8>> {
    match text.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= 90).map(Err),
        None => parse_size(text).map(Ok),
    }
}

/// Whether `name` can be a client: it is a URL path segment and a directory name.
pub fn is_client_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.contains("..")
}

pub(crate) fn check_receiver(r: &ReceiverSpec, problems: &mut Problems<'_>) {
    let at = |fields: &[&str]| {
        let mut p = vec![Seg::Key("receiver".into())];
        p.extend(fields.iter().map(|f| Seg::Key((*f).to_string())));
        p
    };
    if let Err(e) = super::rules::socket_addr(&r.listen, "0.0.0.0:8443") {
        problems.at(&at(&["listen"]), e);
    }
    if let Err(e) = super::rules::own_tree(
        &r.storage,
        "the receiver's storage",
        &[super::rules::RECEIVER_TREE],
    ) {
        problems.at(&at(&["storage"]), e);
    }
    for (field, path) in [
        (&["tls", "certificate"][..], &r.tls.certificate),
        (&["tls", "key"][..], &r.tls.key),
    ] {
        if let Err(e) = super::rules::absolute_path(path) {
            problems.at(&at(field), e);
        }
    }
    if r.clients.is_empty() {
        problems.at(
            &at(&["clients"]),
            "no clients: name the servers that send backups here",
        );
    }
    for (name, client) in &r.clients {
        if !is_client_name(name) {
            problems.at_key(
                &at(&["clients", name]),
                format!("{name:?} is not a client name (letters, digits, `-_.`, no `..`)"),
            );
        }
        if let Err(e) = super::rules::secret_name(&client.credentials.secret) {
            problems.at(&at(&["clients", name, "credentials", "secret"]), e);
        }
        if let Some(Err(e)) = client.keep.as_ref().map(KeepPolicy::check) {
            problems.at(&at(&["clients", name, "keep"]), e);
        }
    }
    if let Err(e) = r.keep.check() {
        problems.at(&at(&["keep"]), e);
    }
    if let Err(e) = super::rules::duration(
        &r.retention_after,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(7 * 86_400),
    ) {
        problems.at(&at(&["retention_after"]), e);
    }
    let size = |fields: &[&str], text: &str, problems: &mut Problems<'_>| {
        if parse_size(text).is_none() {
            problems.at(
                &at(fields),
                format!("{text:?} is not a size such as 200GiB or 500MB"),
            );
        }
    };
    if let Some(q) = &r.quota {
        size(&["quota"], q, problems);
    }
    for (name, c) in &r.clients {
        if let Some(q) = &c.quota {
            size(&["clients", name, "quota"], q, problems);
        }
    }
    if parse_reserve(&r.reserve).is_none() {
        problems.at(
            &at(&["reserve"]),
            format!(
                "{:?} is not a size such as 10GiB or a percentage of the disk (0–90%) such as 5%",
                r.reserve
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_reserves() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("200 GiB"), Some(200 << 30));
        for bad in ["", "MiB", "2 potatoes", "-1GiB", "1.5GiB", "99999999999TiB"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(parse_reserve("5%"), Some(Err(5)));
        assert_eq!(parse_reserve("10GiB"), Some(Ok(10 << 30)));
        assert_eq!(parse_reserve("95%"), None, "nothing left to store");
        assert_eq!(parse_reserve("lots"), None);
    }

    #[test]
    fn quota_and_reserve_are_checked_where_they_are_written() {
        let yaml = "version: 1\nreceiver:\n  tls: { certificate: /etc/r.crt, key: /etc/r.key }\n  clients:\n    web1: { credentials: { secret: r_web1 }, quota: lots }\n  quota: 2 potatoes\n  reserve: 99%\n";
        let err = crate::definition::parse(yaml, std::path::Path::new("server.yaml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        for want in [
            "server.yaml:5:53: receiver.clients.web1.quota: \"lots\" is not a size",
            "server.yaml:6:10: receiver.quota: \"2 potatoes\" is not a size",
            "server.yaml:7:12: receiver.reserve: \"99%\" is not a size",
        ] {
            assert!(err.contains(want), "missing {want:?} in {err}");
        }
        let ok = "version: 1\nreceiver:\n  tls: { certificate: /etc/r.crt, key: /etc/r.key }\n  clients:\n    web1: { credentials: { secret: r_web1 }, quota: 50GiB }\n  quota: 200GiB\n  reserve: 10GiB\n";
        assert!(crate::definition::parse(ok, std::path::Path::new("server.yaml")).is_ok());
    }
}
