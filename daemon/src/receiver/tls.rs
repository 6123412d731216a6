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

/// The server's TLS settings from a PEM certificate chain and key.
///
/// # Errors
/// Unreadable files, no certificate or key in them, a key that does not match.
pub fn server_config(certificate: &Path, key: &Path) -> Result<Arc<ServerConfig>, ReceiverError> {
    let certs = CertificateDer::pem_file_iter(certificate)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| {
            ReceiverError::Tls(format!("TLS certificate {}: {e}", certificate.display()))
        })?;
    if certs.is_empty() {
        return Err(ReceiverError::Tls(format!(
            "TLS certificate {}: no certificate in it",
            certificate.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ReceiverError::Tls(format!("TLS key {}: {e}", key.display())))?;
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
