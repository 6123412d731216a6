//! TLS for the receiver: the certificate and key from PEM files, and a listener that does
//! handshakes concurrently (one slow or silent client must not hold up the others) and hands
//! only finished TLS connections to the HTTP server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::ReceiverError;

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(15);

/// The server's TLS settings from the PEM certificate chain and key files, each read through
/// [`crate::host::tree::open_file`] (a link followed only where root alone could have put it).
///
/// # Errors
/// Unreadable files, no certificate or key in them, a key that does not match.
pub fn server_config(certificate: &Path, key: &Path) -> Result<Arc<ServerConfig>, ReceiverError> {
    let certs =
        read_pem("TLS certificate", certificate).and_then(|pem| certificates(certificate, &pem))?;
    let key = read_pem("TLS key", key).and_then(|pem| private_key(key, &pem))?;
    build(certificate, certs, key)
}

/// [`server_config`] from the files' contents (read by the caller), named by their paths.
///
/// # Errors
/// No certificate or key in them, a key that does not match.
pub fn server_config_from_pem(
    certificate: &Path,
    certificate_pem: &[u8],
    key: &Path,
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, ReceiverError> {
    let certs = certificates(certificate, certificate_pem)?;
    let key = private_key(key, key_pem)?;
    build(certificate, certs, key)
}

/// The content of `path`, as the PEM reader's own I/O errors word it ("I/O error: No such file
/// or directory (os error 2)").
fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>, ReceiverError> {
    super::read_file(path).map_err(|e| {
        ReceiverError::Tls(format!(
            "{what} {}: {}",
            path.display(),
            rustls_pki_types::pem::Error::Io(e)
        ))
    })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ReceiverError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ReceiverError::Tls(format!("TLS certificate {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ReceiverError::Tls(format!(
            "TLS certificate {}: no certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, ReceiverError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| ReceiverError::Tls(format!("TLS key {}: {e}", path.display())))
}

fn build(
    certificate: &Path,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, ReceiverError> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ReceiverError::Tls(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                ReceiverError::Tls(format!("TLS certificate {}: {e}", certificate.display()))
            })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The address a connection comes from (what handlers see as `ConnectInfo<Peer>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// The TLS settings new connections get; replaced on reload (a renewed certificate).
pub type Current = Arc<RwLock<Arc<ServerConfig>>>;

/// Accepted, handshaken TLS connections.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accept on `tcp` and shake hands in the background, with the settings `current` holds
    /// when each connection arrives.
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn new(tcp: TcpListener, current: Current) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let acceptor = TlsAcceptor::from(
                    current
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone(),
                );
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            // Fails only when the listener is gone (the receiver is stopping):
                            // the connection is dropped with it.
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer}: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task only ends with the process.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    #[test]
    fn the_files_are_read_without_following_a_link_another_user_could_have_planted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("tls.crt");
        let e = server_config(&missing, &missing).expect_err("missing");
        assert_eq!(
            e.to_string(),
            format!(
                "TLS certificate {}: I/O error: No such file or directory (os error 2)",
                missing.display()
            )
        );
        // A directory anyone can write, and a link in it to root's key.
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let secret = tmp.path().join("root.key");
        std::fs::write(&secret, "-----BEGIN CERTIFICATE-----\n").expect("write");
        symlink(&secret, open.join("tls.crt")).expect("symlink");
        let e = server_config(&open.join("tls.crt"), &missing).expect_err("refused");
        assert!(e.to_string().ends_with("not followed"), "{e}");
        // The same file by its own name is read (and is no certificate).
        let e = server_config(&secret, &missing).expect_err("no certificate");
        assert!(
            e.to_string()
                .starts_with(&format!("TLS certificate {}: ", secret.display()))
                && !e.to_string().contains("I/O error"),
            "{e}"
        );
    }
}
