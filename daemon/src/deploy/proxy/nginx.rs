//! The nginx side of proxy mode: the site strackt writes for an app (`conf.d/strackt-<app>.conf`,
//! pure text), putting it in place (`nginx -t` first, the old text back on any failure), and
//! reloading nginx over D-Bus until its new workers run — with the old workers returned, so the
//! switch can wait for them to drain.
//!
//! Owns nginx's site files and reloads; it must not restart nginx (that drops every connection
//! it holds) nor start or stop releases (`mod.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{fail, Failure};
use crate::deploy::runner::{self, RunAs};
use crate::deploy::{argv, Deployer};
use crate::host::clock::Clock;
use crate::host::usage::Usage;
use crate::host::{Files, JobKind, Machine, Systemd};

/// Where nginx reads the sites strackt writes (Debian's nginx.conf includes `conf.d/*.conf`).
pub const NGINX_CONF_DIR: &str = "/etc/nginx/conf.d";
/// nginx's unit.
const NGINX: &str = "nginx.service";
/// How long nginx may take to start its new workers after a reload.
const RELOAD_LIMIT: Duration = Duration::from_secs(10);
/// How often the nginx workers are looked at while waiting: one small read of /proc, and each
/// switch waits on it twice (new workers up, old ones gone), so a short period is cheap and
/// what the deploy waits beyond the workers themselves.
const POLL: Duration = Duration::from_millis(10);

/// The nginx site of `app`.
pub fn site_path(app: &str) -> PathBuf {
    Path::new(NGINX_CONF_DIR).join(format!("strackt-{app}.conf"))
}

/// The nginx site sending `listen` to the release on loopback `port` (pure).
pub fn site(app: &str, listen: &str, port: u16, release: u64) -> String {
    format!(
        "# Written by strackt for app {app} (mode: proxy); changes are overwritten at the next deploy.\n\
         # Live: release {release}.\n\
         upstream strackt_app_{app} {{\n    server 127.0.0.1:{port};\n}}\n\n\
         server {{\n    listen {listen};\n\
         \x20   # No keep-alive with clients: at a reload nginx's old workers close the keep-alive\n\
         \x20   # connections they hold without telling the client, whose next request on one fails.\n\
         \x20   # With every response ending its connection, a switch fails no request.\n\
         \x20   keepalive_timeout 0;\n\
         \x20   location / {{\n\
         \x20       proxy_pass http://strackt_app_{app};\n\
         \x20       proxy_set_header Host $host;\n\
         \x20       proxy_set_header X-Real-IP $remote_addr;\n\
         \x20       proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \x20       proxy_set_header X-Forwarded-Proto $scheme;\n\
         \x20   }}\n}}\n"
    )
}

/// The loopback port a site strackt wrote sends its traffic to (pure).
pub fn live_port(site: &str) -> Option<u16> {
    site.lines()
        .find_map(|l| l.trim().strip_prefix("server 127.0.0.1:"))
        .and_then(|rest| rest.strip_suffix(';'))
        .and_then(|p| p.parse().ok())
}

/// nginx's master and the workers it ran before a reload: they drain after it.
pub(super) struct OldWorkers {
    pub(super) master: u32,
    pub(super) workers: BTreeSet<u32>,
}

impl<M: Machine> Deployer<M> {
    /// Wait (bounded, on the machine's clock) until `done` holds for the children of `pid`,
    /// as the machine tells them ([`Usage::children`]).
    pub(super) async fn wait_children(
        &self,
        pid: u32,
        limit: Duration,
        done: impl Fn(&BTreeSet<u32>) -> bool,
    ) -> bool {
        let clock = self.machine.clock();
        let t0 = clock.instant();
        loop {
            if done(&self.machine.usage().children(pid)) {
                return true;
            }
            if clock.instant().duration_since(t0) >= limit {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Put `text` in place as the site at `path` and have nginx serve it: `nginx -t` first, then
    /// a reload awaited until nginx's new workers run. On failure the site is as before (and
    /// nginx told so).
    pub(super) async fn put_site(
        &self,
        path: &Path,
        text: &str,
        before: Option<&str>,
    ) -> Result<OldWorkers, Failure> {
        let files = self.machine.files();
        files
            .write(path, text.as_bytes(), 0o644, 0, 0)
            .map_err(fail)?;
        let tested = runner::run(
            self.machine.processes(),
            &argv(&["nginx", "-t", "-q"]),
            Path::new("/"),
            &BTreeMap::new(),
            &RunAs::root(),
            Duration::from_secs(30),
        )
        .await;
        let reloaded = if tested.ok {
            self.reload_nginx().await
        } else {
            Err((
                format!(
                    "nginx -t failed with the new site in place: {}",
                    crate::deploy::preflight::last_line(&tested.tail)
                ),
                tested.tail,
            ))
        };
        if reloaded.is_err() {
            let restored = match before {
                Some(old) => files.write(path, old.as_bytes(), 0o644, 0, 0),
                None => files.remove(path),
            };
            if let Err(e) = restored {
                tracing::error!("putting back {}: {e}", path.display());
            } else if tested.ok {
                // The reload may have taken after all: nginx is told the old site again. When
                // that fails too, nginx may serve the new site, whose release the failed switch
                // stops: said at error level, as a site that cannot be put back is.
                if let Err((why, _)) = self.reload_nginx().await {
                    tracing::error!("reloading nginx with {} put back: {why}", path.display());
                }
            }
        }
        reloaded
    }

    /// Reload nginx (or start it when it is not running) and wait until its new workers run:
    /// the reload job ends once nginx was signalled, and a configuration nginx cannot use is
    /// only logged, its old workers serving on. Returns the old workers, which now drain.
    pub(super) async fn reload_nginx(&self) -> Result<OldWorkers, Failure> {
        let state = self
            .machine
            .systemd()
            .unit_state(NGINX)
            .await
            .map_err(fail)?;
        if !state.is_active() || state.main_pid == 0 {
            self.machine
                .systemd()
                .run_job(JobKind::Start, NGINX)
                .await
                .map_err(fail)?;
            return Ok(OldWorkers {
                master: 0,
                workers: BTreeSet::new(),
            });
        }
        let master = state.main_pid;
        let workers = self.machine.usage().children(master);
        self.machine
            .systemd()
            .run_job(JobKind::Reload, NGINX)
            .await
            .map_err(fail)?;
        let took = self
            .wait_children(master, RELOAD_LIMIT, |now| {
                now.iter().any(|pid| !workers.contains(pid))
            })
            .await;
        if !took {
            return Err(fail(format!(
                "nginx did not start workers with the new site within {}s (see journalctl -u nginx and /var/log/nginx/error.log)",
                RELOAD_LIMIT.as_secs()
            )));
        }
        Ok(OldWorkers { master, workers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::tests::Harness;

    #[tokio::test(start_paused = true)]
    async fn a_reload_waits_for_nginxs_new_workers_and_hands_back_the_old_ones() {
        let h = Harness::new("");
        {
            let mut s = h.host.state();
            s.vendor_units.insert(NGINX.into());
            s.workers.insert(NGINX.into(), 2);
        }
        // Not running: started, nothing to drain.
        let Ok(old) = h.deployer.reload_nginx().await else {
            panic!("nginx does not start");
        };
        assert_eq!((old.master, old.workers.len()), (0, 0));
        let master = h.host.running(NGINX).expect("nginx runs");
        let first = h.host.children(master);
        assert_eq!(first.len(), 2);

        let Ok(old) = h.deployer.reload_nginx().await else {
            panic!("nginx does not reload");
        };
        assert_eq!((old.master, &old.workers), (master, &first));
        let now = h.host.children(master);
        assert!(now.len() == 2 && now.is_disjoint(&first), "{now:?}");
        assert!(
            h.deployer
                .wait_children(master, RELOAD_LIMIT, |now| now.is_disjoint(&old.workers))
                .await
        );

        // An nginx whose new workers never come: the reload fails once its limit is over.
        h.host.state().workers.remove(NGINX);
        let Err((why, _)) = h.deployer.reload_nginx().await else {
            panic!("a reload without new workers passed");
        };
        assert_eq!(
            why,
            "nginx did not start workers with the new site within 10s (see journalctl -u nginx and /var/log/nginx/error.log)"
        );
    }
}
