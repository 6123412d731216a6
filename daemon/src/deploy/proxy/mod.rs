//! Proxy mode (`service.mode: proxy`): deploys with zero failed requests for an app that binds
//! its own port (a plain Node `http.createServer`, anything that cannot take a socket from
//! systemd), fronted by Debian's nginx.
//!
//! Owns one nginx site per app, `/etc/nginx/conf.d/strackt-<app>.conf` (nginx listens on the
//! app's `listen` and forwards to the live release's port), the template unit
//! `strackt-app-<app>@.service` (instance = release id) and each release's `listen` file in
//! strackt's state (`HOST`, `PORT`). A switch starts the new release on the port of `ports` the
//! live one does not use and checks its health there — no traffic reaches it before that — then
//! rewrites the site (`nginx -t` first, the old text put back on any failure), reloads nginx over
//! D-Bus and waits until nginx's new workers run, checks health through nginx, and only then
//! lets the old release drain: nginx's old workers finish what they hold, then the old release
//! gets SIGTERM. A failure before the reload leaves the site untouched and stops the new release.
//!
//! It must not touch nginx beyond its own site files and reloads (never a restart: that would
//! drop every connection nginx holds), nor decide anything about the database (`failed.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::layout::{AppData, AppDirs};
use super::{health_url, take_over_env, units, DeployError, Deployer, UNIT_DIR};
use crate::definition::{AppSpec, HealthSpec};
use crate::host::health::Health;
use crate::host::{Files, JobKind, Machine, Systemd};
use crate::ops::{Progress, StepResult};

mod nginx;

use nginx::{live_port, site, site_path};

/// File name of a release's `HOST`/`PORT` environment file, beside its `env`.
const LISTEN_FILE: &str = "listen";
/// How long nginx's old workers may take to finish the requests they hold before the old
/// release is stopped anyway (it then has its own 30 s, `TimeoutStopSec`).
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// The template unit of `app` (`strackt-app-<app>@.service`).
fn template(app: &str) -> String {
    format!("{}{app}@.service", units::LIVE_PREFIX)
}

/// The unit running release `id` of `app` (also how a host switch finds a proxy-mode app's
/// live unit, `apply::apps`).
pub(crate) fn instance(app: &str, id: u64) -> String {
    format!("{}{app}@{id}.service", units::LIVE_PREFIX)
}

/// The port the next release starts on: the one of `ports` the live release does not use.
pub fn next_port(ports: [u16; 2], live: Option<u16>) -> u16 {
    if live == Some(ports[0]) {
        ports[1]
    } else {
        ports[0]
    }
}

/// The environment a release gets beyond its own: where to listen.
fn listen_vars(port: u16) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("HOST".to_string(), "127.0.0.1".to_string()),
        ("PORT".to_string(), port.to_string()),
    ])
}

/// What a failed step says: the reason, and the output to keep.
type Failure = (String, String);

fn fail(e: impl std::fmt::Display) -> Failure {
    (e.to_string(), String::new())
}

/// A site put in place: what was there before, to put back.
struct SiteChange {
    path: PathBuf,
    before: Option<String>,
}

impl<M: Machine> Deployer<M> {
    /// The port release `id` is to start on, and the site as it is now.
    fn proxy_port(&self, app: &str, spec: &AppSpec) -> Result<(u16, Option<String>), DeployError> {
        let ports = spec.service.ports.ok_or(DeployError::NoPorts)?;
        let now = self
            .machine
            .files()
            .read(&site_path(app))?
            .map(|t| String::from_utf8_lossy(&t).into_owned());
        Ok((next_port(ports, now.as_deref().and_then(live_port)), now))
    }

    /// Remove a file strackt wrote (root's, in a root-owned directory); whether it was there.
    fn remove_if_there(&self, path: &Path) -> Result<bool, Failure> {
        let files = self.machine.files();
        let there = files.stat(path).map_err(fail)?.is_some();
        if there {
            files.remove(path).map_err(fail)?;
        }
        Ok(there)
    }

    /// Write the template unit when it changed.
    async fn install_template(
        &self,
        app: &str,
        spec: &AppSpec,
        dirs: &AppDirs,
        data: &AppData,
    ) -> Result<(), Failure> {
        let releases = data.dir().join("releases");
        let text = units::render_template(app, spec, &dirs.releases(), &releases, LISTEN_FILE);
        let path = Path::new(UNIT_DIR).join(template(app));
        let files = self.machine.files();
        if files.read(&path).ok().flatten().as_deref() != Some(text.as_bytes()) {
            files
                .write(&path, text.as_bytes(), 0o644, 0, 0)
                .map_err(fail)?;
            self.machine.systemd().daemon_reload().await.map_err(fail)?;
        }
        Ok(())
    }

    /// Start release `id` on loopback `port` and wait for its health path there. On failure
    /// it is stopped again, and the output is the end of its journal.
    async fn start_release(
        &self,
        app: &str,
        spec: &AppSpec,
        data: &AppData,
        id: u64,
        port: u16,
    ) -> Result<(), Failure> {
        let unit = instance(app, id);
        let listen_file = data.release(id).join(LISTEN_FILE);
        let text = units::env_file(&listen_vars(port));
        self.machine
            .files()
            .write(&listen_file, text.as_bytes(), 0o600, 0, 0)
            .map_err(fail)?;
        self.machine.systemd().reset_failed(&unit).await;
        // Restart, not start: an instance left running (a killed deploy) must take the port
        // it is given now.
        if let Err(e) = self
            .machine
            .systemd()
            .run_job(JobKind::Restart, &unit)
            .await
        {
            return Err(self.stop_failed(&unit, e.to_string()).await);
        }
        self.check_running(app, spec, id, port).await
    }

    /// A release that failed to start or to answer: the end of its journal kept, then stopped.
    async fn stop_failed(&self, unit: &str, why: String) -> Failure {
        let journal = super::journal_tail(self.machine.processes(), unit).await;
        // Left running, it would hold the port the next release starts on: logged, as
        // `stop_release` does.
        if let Err(e) = self.machine.systemd().run_job(JobKind::Stop, unit).await {
            tracing::warn!("stopping {unit}: {e}");
        }
        self.machine.systemd().reset_failed(unit).await;
        (why, journal)
    }

    /// validate-boot in proxy mode: release `id` started on the port it will take and its
    /// health checked there. No traffic reaches it. With a `migrate` or `cache` step it is
    /// stopped again and started for good at the switch, so its code sees what those steps
    /// changed; without, nothing runs between this boot and the switch, so it keeps running
    /// into `start` (a second boot would prove nothing more and take as long as this one).
    pub(super) async fn proxy_boot_check(
        &self,
        app: &str,
        spec: &AppSpec,
        (dirs, data): (&AppDirs, &AppData),
        id: u64,
    ) -> StepResult<()> {
        let (port, _) = self.proxy_port(app, spec).map_err(fail)?;
        self.install_template(app, spec, dirs, data).await?;
        self.start_release(app, spec, data, id, port).await?;
        if spec.steps.migrate.is_none() && spec.steps.cache.is_none() {
            return Ok((
                (),
                format!("release {id} answered on 127.0.0.1:{port}; it keeps running for the switch (no migrate or cache step)\n"),
            ));
        }
        let unit = instance(app, id);
        self.machine
            .systemd()
            .run_job(JobKind::Stop, &unit)
            .await
            .map_err(fail)?;
        Ok(((), format!("release {id} answered on 127.0.0.1:{port}\n")))
    }

    /// Whether release `id` still runs from its validation boot on `port`: its unit is active
    /// and its `listen` file (strackt's, root-only) names that port.
    async fn still_running(&self, app: &str, data: &AppData, id: u64, port: u16) -> bool {
        let want = units::env_file(&listen_vars(port));
        let file = self
            .machine
            .files()
            .read(&data.release(id).join(LISTEN_FILE));
        if file.ok().flatten().as_deref() != Some(want.as_bytes()) {
            return false;
        }
        self.machine
            .systemd()
            .unit_state(&instance(app, id))
            .await
            .is_ok_and(|s| s.is_active())
    }

    /// Check the health of release `id`, already running on `port`; on failure it is stopped,
    /// and the output is the end of its journal.
    async fn check_running(
        &self,
        app: &str,
        spec: &AppSpec,
        id: u64,
        port: u16,
    ) -> Result<(), Failure> {
        let probe = HealthSpec {
            http: Some(health_url(
                &format!("127.0.0.1:{port}"),
                &spec.service.health,
            )),
            ..HealthSpec::default()
        };
        match self
            .machine
            .health()
            .check(&probe, spec.service.health_within())
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => Err(self
                .stop_failed(
                    &instance(app, id),
                    format!("health check of release {id} on 127.0.0.1:{port} failed: {e}"),
                )
                .await),
        }
    }

    /// A socket-mode app turning proxy: its socket would hold `listen`, which nginx takes now.
    async fn retire_socket_units(&self, app: &str) -> Result<String, Failure> {
        let base = format!("{}{app}", units::LIVE_PREFIX);
        let (socket, service) = (format!("{base}.socket"), format!("{base}.service"));
        let socket_path = Path::new(UNIT_DIR).join(&socket);
        if self
            .machine
            .files()
            .stat(&socket_path)
            .map_err(fail)?
            .is_none()
        {
            return Ok(String::new());
        }
        for unit in [&socket, &service] {
            self.machine
                .systemd()
                .run_job(JobKind::Stop, unit)
                .await
                .map_err(fail)?;
        }
        self.machine
            .systemd()
            .disable(std::slice::from_ref(&socket))
            .await
            .map_err(fail)?;
        for unit in [&socket, &service] {
            self.remove_if_there(&Path::new(UNIT_DIR).join(unit))?;
        }
        self.machine.systemd().daemon_reload().await.map_err(fail)?;
        Ok(format!(
            "socket mode retired: {socket} and {service} stopped and removed\n"
        ))
    }

    /// An app leaving proxy mode: its site goes (nginx reloaded, which lets go of `listen` for
    /// the socket to take) and release `live`, which ran behind it, is stopped once nginx's old
    /// workers are done with it. Nothing to do when the app has no site.
    pub(super) async fn retire_proxy(
        &self,
        app: &str,
        live: Option<u64>,
    ) -> Result<String, Failure> {
        let path = site_path(app);
        if !self.remove_if_there(&path)? {
            return Ok(String::new());
        }
        let old = self.reload_nginx().await?;
        self.wait_children(old.master, DRAIN_LIMIT, |now| now.is_disjoint(&old.workers))
            .await;
        if let Some(id) = live {
            self.stop_release(app, id).await;
        }
        self.remove_if_there(&Path::new(UNIT_DIR).join(template(app)))?;
        Ok(format!(
            "proxy mode retired: {} removed, nginx reloaded\n",
            path.display()
        ))
    }

    /// The switch in proxy mode (see the module doc): steps `start`, `switch`, `health`
    /// (through nginx) and `drain`; `switch-back` when the health check through nginx fails.
    pub(super) async fn proxy_switch(
        &self,
        p: &mut Progress,
        app: &str,
        spec: &AppSpec,
        (dirs, data): (&AppDirs, &AppData),
        to: u64,
        back: Option<u64>,
    ) -> Result<(), DeployError> {
        let new_unit = instance(app, to);
        let (port, before) = match self.proxy_port(app, spec) {
            Ok(found) => found,
            Err(e) => {
                // A release its validation boot left running serves no one.
                self.stop_release(app, to).await;
                return Err(e);
            }
        };
        let started = p
            .step(
                "start",
                &format!("release {to} on 127.0.0.1:{port}"),
                async {
                    let mut log = take_over_env(dirs, data, to)
                        .await
                        .map_err(fail)?
                        .unwrap_or_default();
                    if let Some(id) = back {
                        match take_over_env(dirs, data, id).await {
                            Ok(note) => log.push_str(&note.unwrap_or_default()),
                            Err(e) => log.push_str(&format!("switching back would fail: {e}\n")),
                        }
                    }
                    self.install_template(app, spec, dirs, data).await?;
                    if self.still_running(app, data, to, port).await {
                        self.check_running(app, spec, to, port).await?;
                        log.push_str(&format!("release {to} runs on from its validation boot\n"));
                    } else {
                        self.start_release(app, spec, data, to, port).await?;
                    }
                    Ok(((), log))
                },
            )
            .await;
        if let Err(why) = started {
            // It may still run from its validation boot; it serves no one.
            self.stop_release(app, to).await;
            return Err(DeployError::Step(why));
        }

        let path = site_path(app);
        let change = SiteChange {
            path: path.clone(),
            before,
        };
        let switched = p
            .step("switch", &path.display().to_string(), async {
                let mut log = self.retire_socket_units(app).await?;
                // Everything that can fail comes before the reload, which is the moment traffic
                // moves: a failure up to it leaves nginx serving the old release.
                // No daemon-reload: the instance is loaded and running, and the boot reads the
                // symlink from disk.
                self.machine
                    .systemd()
                    .enable_for_boot(std::slice::from_ref(&new_unit))
                    .await
                    .map_err(fail)?;
                data.flip(Some(to)).map_err(fail)?;
                dirs.flip(Some(to)).map_err(fail)?;
                let text = site(app, &spec.service.listen, port, to);
                let old = self
                    .put_site(&path, &text, change.before.as_deref())
                    .await?;
                log.push_str(&format!(
                    "nginx sends {} to release {to} on 127.0.0.1:{port}\n",
                    spec.service.listen
                ));
                Ok((old, log))
            })
            .await;
        let old = match switched {
            Ok(old) => old,
            Err(why) => {
                self.stop_release(app, to).await;
                // `current` names the release nginx serves, which is still the old one; when
                // it cannot be pointed back, it names the stopped one: the user must know.
                if let Err(e) = data.flip(back).and_then(|()| dirs.flip(back)) {
                    return Err(DeployError::SwitchBackFailed {
                        why,
                        error: e.to_string(),
                    });
                }
                return Err(DeployError::Step(why));
            }
        };

        if let Err(why) = self.live_health(p, spec).await {
            return Err(self
                .proxy_switch_back(p, app, (dirs, data), &change, to, back, why.to_string())
                .await);
        }

        let old_label = back.map_or("no release".to_string(), |b| format!("release {b}"));
        p.step("drain", &old_label, async {
            let mut log = String::new();
            let drained = self.wait_children(old.master, DRAIN_LIMIT, |now| {
                now.is_disjoint(&old.workers)
            })
            .await;
            if !drained {
                log.push_str(&format!(
                    "nginx's old workers still held requests after {}s; stopping the old release anyway\n",
                    DRAIN_LIMIT.as_secs()
                ));
            }
            if let Some(id) = back {
                self.stop_release(app, id).await;
                log.push_str(&format!("release {id} stopped\n"));
            }
            Ok(((), log))
        })
        .await
        .map_err(DeployError::Step)
    }

    /// The health check through nginx failed: the old site back, nginx reloaded, `current`
    /// back, the new release stopped. Returns the operation's reason.
    #[allow(clippy::too_many_arguments)]
    async fn proxy_switch_back(
        &self,
        p: &mut Progress,
        app: &str,
        (dirs, data): (&AppDirs, &AppData),
        change: &SiteChange,
        to: u64,
        back: Option<u64>,
        why: String,
    ) -> DeployError {
        let back_label = back.map_or("no release".to_string(), |b| format!("release {b}"));
        let went_back = p
            .step("switch-back", &back_label, async {
                match &change.before {
                    Some(old) => {
                        // Its text is known good: nginx served it until the switch.
                        self.machine
                            .files()
                            .write(&change.path, old.as_bytes(), 0o644, 0, 0)
                            .map_err(fail)?;
                        self.reload_nginx().await?;
                    }
                    None => {
                        self.machine.files().remove(&change.path).map_err(fail)?;
                        self.reload_nginx().await?;
                    }
                }
                data.flip(back).map_err(fail)?;
                dirs.flip(back).map_err(fail)?;
                self.stop_release(app, to).await;
                Ok(((), String::new()))
            })
            .await;
        match went_back {
            Ok(()) => DeployError::SwitchedBack {
                why,
                back: back_label,
            },
            Err(error) => DeployError::SwitchBackFailed { why, error },
        }
    }

    /// Stop release `id` and keep it from starting at boot (best effort: it is logged).
    pub(super) async fn stop_release(&self, app: &str, id: u64) {
        let unit = instance(app, id);
        if let Err(e) = self.machine.systemd().run_job(JobKind::Stop, &unit).await {
            tracing::warn!("stopping {unit}: {e}");
        }
        // No daemon-reload: the boot reads the (removed) symlink from disk.
        if let Err(e) = self
            .machine
            .systemd()
            .disable_for_boot(std::slice::from_ref(&unit))
            .await
        {
            tracing::warn!("disabling {unit}: {e}");
        }
        self.machine.systemd().reset_failed(&unit).await;
    }
}

/// The units serving `app`, for an operation that must take the app down (a restore): its
/// socket and service (socket mode, or left from it before a switch to proxy mode), and in
/// proxy mode the instance of its live release (`current`'s target), the one nginx sends the
/// traffic to. Whether each is loaded is for the caller to ask.
pub(crate) fn serving_units(app: &str, spec: &AppSpec) -> Vec<String> {
    let base = format!("{}{app}", units::LIVE_PREFIX);
    let mut all = vec![format!("{base}.socket"), format!("{base}.service")];
    if spec.service.mode == crate::definition::ServeMode::Proxy {
        if let Some(id) = AppDirs::new(&spec.path).live() {
            all.push(instance(app, id));
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_sends_listen_to_the_live_port_and_names_it() {
        let text = site("hello", "0.0.0.0:80", 8002, 7);
        assert!(text.contains("upstream strackt_app_hello {\n    server 127.0.0.1:8002;\n}\n"));
        assert!(text.contains("    listen 0.0.0.0:80;\n"));
        assert!(text.contains("    keepalive_timeout 0;\n"));
        assert!(text.contains("        proxy_pass http://strackt_app_hello;\n"));
        assert_eq!(live_port(&text), Some(8002));
        assert_eq!(live_port("# not strackt's\n"), None);
    }

    #[test]
    fn releases_take_turns_on_the_two_ports() {
        let ports = [8001, 8002];
        assert_eq!(next_port(ports, None), 8001);
        assert_eq!(next_port(ports, Some(8001)), 8002);
        assert_eq!(next_port(ports, Some(8002)), 8001);
        // A site naming a port no longer in `ports` (they were changed): the first one.
        assert_eq!(next_port(ports, Some(9000)), 8001);
    }
}
