//! The `receiver:` section: this server keeps other servers' backups (`strackt receiver`,
//! its own unit). Only the definition's shape and rules live here; the server is in
//! `crate::receiver`.

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
    pub storage: String,
    /// The certificate chain and private key (PEM files) it serves.
    pub tls: TlsFiles,
    /// The servers that may send backups, by name. Each uses its own secret `NAME:PASSWORD`
    /// (the same file as the sender's `to.receiver.credentials`) and reaches only its own
    /// repository.
    pub clients: BTreeMap<String, ReceiverClient>,
    /// Retention, applied here because senders cannot delete (default: keep everything).
    #[serde(default)]
    pub keep: KeepPolicy,
    /// Retention runs this long after a client's last snapshot arrived (default `5m`), so it
    /// does not start between the parts of one run.
    #[serde(default = "default_settle")]
    pub retention_after: String,
}

/// The certificate and key the receiver serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub certificate: String,
    /// PEM private key (root-only).
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
}
