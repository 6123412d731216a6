//! Health probes: a command, an HTTP GET, or a TCP connect, retried until a deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::{sleep, timeout, Instant};

use super::processes::{Cmd, Processes, RealProcesses};
use crate::definition::HealthSpec;

/// Runs one health probe to completion. Real implementation: [`RealHealth`].
pub trait Health: Send + Sync {
    /// Probe until it succeeds or `within` elapses. `Err` carries the last failure.
    fn check(
        &self,
        spec: &HealthSpec,
        within: Duration,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Probes against the real machine.
#[derive(Debug, Clone)]
pub struct RealHealth {
    /// `Err` says why no HTTP client could be made; only `http:` probes fail with it.
    http: Result<reqwest::Client, String>,
}

impl Default for RealHealth {
    fn default() -> Self {
        // `https://` probes verify against the system's roots (rustls-platform-verifier reads
        // /etc/ssl/certs when the client is built, i.e. when strackt starts); the crypto is
        // ring's, as for the receiver. Installing it twice in one process is refused, harmlessly.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let builder = || reqwest::Client::builder().timeout(Duration::from_secs(5));
        let http = builder().build().or_else(|e| {
            // A server without the ca-certificates package: plain http:// probes must still
            // work, and https:// ones fail verification (no root is trusted) rather than pass.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| tracing::warn!("no CA certificates on this server ({e}): https:// health probes cannot pass until ca-certificates is installed and strackt restarted"));
            builder()
                .tls_certs_only([])
                .build()
                .map_err(|e| format!("no HTTP client: {e}"))
        });
        RealHealth { http }
    }
}

/// Delay between attempts: short enough that a healthy service is seen quickly.
const RETRY_EVERY: Duration = Duration::from_millis(250);

impl RealHealth {
    async fn once(&self, spec: &HealthSpec) -> Result<(), String> {
        if let Some(cmd) = &spec.command {
            let mut words = cmd.split_whitespace();
            let program = words.next().ok_or("empty health command")?;
            // The caller bounds the whole probe (`check`'s `within`); dropping the run kills it.
            let out = RealProcesses
                .run(Cmd::new(program, Duration::from_secs(3600)).args(words))
                .await
                .map_err(|e| format!("health command {cmd:?}: {e}"))?;
            if out.success() {
                return Ok(());
            }
            let tail: String = out
                .stderr
                .trim()
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(format!(
                "health command {cmd:?} {}{}",
                out.failure().unwrap_or_default(),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            ));
        }
        if let Some(url) = &spec.http {
            let resp = self
                .http
                .as_ref()?
                .get(url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            return if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("GET {url}: HTTP {}", resp.status()))
            };
        }
        if let Some(addr) = &spec.tcp {
            return match timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect(addr.as_str()),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
                Err(_) => Err(format!("connect {addr}: timed out")),
            };
        }
        Err("health check names no probe".into())
    }
}

impl Health for RealHealth {
    async fn check(&self, spec: &HealthSpec, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let err = match timeout(within, self.once(spec)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => format!("probe did not finish within {}s", within.as_secs()),
            };
            if Instant::now() + RETRY_EVERY >= deadline {
                return Err(format!("{err} (kept failing for {}s)", within.as_secs()));
            }
            sleep(RETRY_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(c: &str) -> HealthSpec {
        HealthSpec {
            command: Some(c.into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn command_probe_passes_and_fails() {
        let h = RealHealth::default();
        assert!(h
            .check(&cmd("/bin/true"), Duration::from_millis(500))
            .await
            .is_ok());
        let err = h
            .check(&cmd("/bin/false"), Duration::from_millis(600))
            .await
            .expect_err("false fails");
        assert!(err.contains("exited with"), "{err}");
    }

    #[tokio::test]
    async fn tcp_probe_sees_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let h = RealHealth::default();
        let spec = HealthSpec {
            tcp: Some(addr.clone()),
            ..Default::default()
        };
        assert!(h.check(&spec, Duration::from_secs(1)).await.is_ok());
        // A port bound but not listening refuses connections, and stays ours for the test (a
        // dropped listener's port can be taken at once by another test of this process).
        let closed = tokio::net::TcpSocket::new_v4().expect("socket");
        closed
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let spec = HealthSpec {
            tcp: Some(closed.local_addr().expect("addr").to_string()),
            ..Default::default()
        };
        assert!(h.check(&spec, Duration::from_millis(300)).await.is_err());
        drop(listener);
    }
}
