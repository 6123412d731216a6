//! Health probes: a command, an HTTP GET, or a TCP connect, retried until a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep, timeout, Instant};

use super::processes::{Cmd, Processes, RealProcesses};
use super::HostError;
use crate::definition::HealthSpec;

/// Why a health probe did not pass: the service's verdict (a command that failed, an HTTP
/// status, a refused connection) or the host failing to run the probe at all. Each reads as
/// the text it always was; the callers word it into their step's message.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// A `command:` probe of no words.
    #[error("empty health command")]
    EmptyCommand,
    /// The probe command could not be run.
    #[error("health command {cmd:?}: {source}")]
    CommandNotRun {
        /// The command as the definition has it.
        cmd: String,
        /// Why.
        #[source]
        source: HostError,
    },
    /// The probe command ran and failed (`exited with status 1`, …), with its stderr's tail.
    #[error("health command {cmd:?} {failure}{}", tail_part(.tail))]
    CommandFailed {
        /// The command as the definition has it.
        cmd: String,
        /// How it ended.
        failure: String,
        /// The last 300 characters of its stderr (may be empty).
        tail: String,
    },
    /// No HTTP client could be made, so `http:` probes cannot run.
    #[error("no HTTP client: {0}")]
    NoHttpClient(#[source] Arc<reqwest::Error>),
    /// The GET did not get an answer (`url` empty where the fake does not say).
    #[error("GET{}: {message}", url_part(.url))]
    Get {
        /// The URL probed.
        url: String,
        /// Why.
        message: String,
    },
    /// The GET was answered with a status other than 2xx.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL probed.
        url: String,
        /// The status line's code and reason.
        status: String,
    },
    /// The TCP connect failed.
    #[error("connect {addr}: {source}")]
    Connect {
        /// The address probed.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TCP connect got no answer within 5 seconds.
    #[error("connect {addr}: timed out")]
    ConnectTimeout {
        /// The address probed.
        addr: String,
    },
    /// The health check names no probe.
    #[error("health check names no probe")]
    NoProbe,
    /// One attempt did not finish within the whole time allowed.
    #[error("probe did not finish within {0}s")]
    Unfinished(u64),
    /// The last failure, when the time allowed ran out.
    #[error("{last} (kept failing for {secs}s)")]
    KeptFailing {
        /// The last attempt's failure.
        last: Box<HealthError>,
        /// The time allowed.
        secs: u64,
    },
}

/// `: tail` after a failed command, nothing when its stderr was empty.
fn tail_part(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

/// ` url` after `GET`, nothing when no URL is known.
fn url_part(url: &str) -> String {
    if url.is_empty() {
        String::new()
    } else {
        format!(" {url}")
    }
}

/// Runs one health probe to completion. Real implementation: [`RealHealth`].
pub trait Health: Send + Sync {
    /// Probe until it succeeds or `within` elapses. `Err` carries the last failure.
    fn check(
        &self,
        spec: &HealthSpec,
        within: Duration,
    ) -> impl Future<Output = Result<(), HealthError>> + Send;
}

/// Probes against the real machine.
#[derive(Debug, Clone)]
pub struct RealHealth {
    /// `Err` says why no HTTP client could be made; only `http:` probes fail with it.
    http: Result<reqwest::Client, Arc<reqwest::Error>>,
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
                .map_err(Arc::new)
        });
        RealHealth { http }
    }
}

/// Delay between attempts: short enough that a healthy service is seen quickly.
const RETRY_EVERY: Duration = Duration::from_millis(250);

impl RealHealth {
    async fn once(&self, spec: &HealthSpec) -> Result<(), HealthError> {
        if let Some(cmd) = &spec.command {
            let mut words = cmd.split_whitespace();
            let program = words.next().ok_or(HealthError::EmptyCommand)?;
            // The caller bounds the whole probe (`check`'s `within`); dropping the run kills it.
            let out = RealProcesses
                .run(Cmd::new(program, Duration::from_secs(3600)).args(words))
                .await
                .map_err(|source| HealthError::CommandNotRun {
                    cmd: cmd.clone(),
                    source,
                })?;
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
            return Err(HealthError::CommandFailed {
                cmd: cmd.clone(),
                failure: out.failure().unwrap_or_default(),
                tail,
            });
        }
        if let Some(url) = &spec.http {
            let client = match &self.http {
                Ok(client) => client,
                Err(e) => return Err(HealthError::NoHttpClient(Arc::clone(e))),
            };
            let resp = client.get(url).send().await.map_err(|e| HealthError::Get {
                url: url.clone(),
                message: e.to_string(),
            })?;
            return if resp.status().is_success() {
                Ok(())
            } else {
                Err(HealthError::Status {
                    url: url.clone(),
                    status: resp.status().to_string(),
                })
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
                Ok(Err(source)) => Err(HealthError::Connect {
                    addr: addr.clone(),
                    source,
                }),
                Err(_) => Err(HealthError::ConnectTimeout { addr: addr.clone() }),
            };
        }
        Err(HealthError::NoProbe)
    }
}

impl Health for RealHealth {
    async fn check(&self, spec: &HealthSpec, within: Duration) -> Result<(), HealthError> {
        let deadline = Instant::now() + within;
        loop {
            let err = match timeout(within, self.once(spec)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => HealthError::Unfinished(within.as_secs()),
            };
            if Instant::now() + RETRY_EVERY >= deadline {
                return Err(HealthError::KeptFailing {
                    last: Box::new(err),
                    secs: within.as_secs(),
                });
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
        assert!(
            matches!(&err, HealthError::KeptFailing { last, .. }
            if matches!(**last, HealthError::CommandFailed { .. })),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("health command \"/bin/false\" exited with"),
            "{err}"
        );
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
