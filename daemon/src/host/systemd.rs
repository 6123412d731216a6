//! systemd over D-Bus (zbus): the real [`Systemd`]; and the unit files an older strackt left
//! in systemd's runtime directory, listed and removed.
//!
//! Job discipline (after switch-to-configuration-ng): `Subscribe()` once per connection; open
//! the `JobRemoved` stream *before* queueing a job so its end cannot be missed; wait for that
//! job's path and read its result string; after `Reload()` wait for `Reloading(false)`. Every
//! wait is bounded.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::timeout;
pub use zbus::zvariant::Value;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::Connection;

use super::tree::Dir;
use super::{io_err, HostError, JobKind, Systemd, UnitState};

/// Directory where strackt writes the units it owns (the reconcile loop's and the apps').
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// systemd's runtime unit directory, root's alone: an older strackt wrote its validation units
/// there as files (they are transient units now, with no file).
pub const RUNTIME_UNIT_DIR: &str = "/run/systemd/system";

/// [`Systemd::runtime_unit_files`] on the real machine.
fn runtime_unit_files(prefix: &str) -> Vec<String> {
    let names = Dir::open(Path::new(RUNTIME_UNIT_DIR)).and_then(|d| d.entries());
    names
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// [`Systemd::remove_runtime_unit_file`] on the real machine.
fn remove_runtime_unit_file(unit: &str) -> Result<(), HostError> {
    let path = Path::new(RUNTIME_UNIT_DIR).join(unit);
    Dir::open(Path::new(RUNTIME_UNIT_DIR))
        .and_then(|d| d.remove_file(unit))
        .map(|_| ())
        .map_err(io_err("removing", &path))
}

/// Properties of one unit, as `StartTransientUnit` takes them.
pub type Properties = Vec<(String, Value<'static>)>;

/// One unit as `ListUnits*` lists it: name, description, load, active and sub state, the unit
/// it follows, its object path, and its queued job (id, type, path).
type Listed = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    /// Loads the units that are not loaded yet (a missing one reports `not-found`).
    fn list_units_by_names(&self, names: &[&str]) -> zbus::Result<Vec<Listed>>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reload_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    /// Create unit `name` (and the `aux` units it needs, e.g. a socket's service) from
    /// properties alone: no file, no daemon-reload; systemd drops it once it is inactive.
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;
    fn list_units_by_patterns(
        &self,
        states: &[&str],
        patterns: &[&str],
    ) -> zbus::Result<Vec<Listed>>;
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn reloading(&self, active: bool) -> zbus::Result<()>;
}

/// systemd's own default for D-Bus method calls (sd-bus `BUS_DEFAULT_TIMEOUT`, 25 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// Longest wait for one job: above systemd's default `TimeoutStartSec` (90 s) so systemd's
/// own timeout, with its clearer result, fires first.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// The system manager on the system bus.
#[derive(Debug, Clone)]
pub struct DbusSystemd {
    conn: Connection,
    manager: ManagerProxy<'static>,
}

fn sd_err<'a>(op: &'static str, unit: &'a str) -> impl FnOnce(zbus::Error) -> HostError + 'a {
    move |e| HostError::Systemd {
        op,
        unit: unit.to_string(),
        message: e.to_string(),
    }
}

async fn bounded<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, HostError>>,
) -> Result<T, HostError> {
    timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(HostError::Timeout {
            what: what.to_string(),
            secs: limit.as_secs(),
        })
    })
}

impl DbusSystemd {
    /// Connect to the system bus and subscribe to manager signals.
    ///
    /// # Errors
    /// When the bus or systemd cannot be reached.
    pub async fn connect() -> Result<DbusSystemd, HostError> {
        let conn = Connection::system().await.map_err(sd_err("connect", ""))?;
        let manager = ManagerProxy::new(&conn)
            .await
            .map_err(sd_err("connect", ""))?;
        bounded("Subscribe", CALL_TIMEOUT, async {
            manager.subscribe().await.map_err(sd_err("subscribe", ""))
        })
        .await?;
        Ok(DbusSystemd { conn, manager })
    }

    /// Queue a job with `queue` and wait for its end: the `JobRemoved` stream is opened before
    /// the job is queued, so its end cannot be missed.
    async fn job(
        &self,
        op: &'static str,
        unit: &str,
        queue: impl std::future::Future<Output = zbus::Result<OwnedObjectPath>>,
    ) -> Result<(), HostError> {
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .map_err(sd_err(op, unit))?;
        let job = bounded(&format!("{op} {unit}"), CALL_TIMEOUT, async {
            queue.await.map_err(sd_err(op, unit))
        })
        .await?;
        bounded(&format!("{op} job of {unit}"), JOB_TIMEOUT, async {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job != job {
                    continue;
                }
                return match args.result.as_str() {
                    "done" => Ok(()),
                    other => Err(HostError::Systemd {
                        op,
                        unit: unit.to_string(),
                        message: format!("job result: {other}"),
                    }),
                };
            }
            Err(HostError::Systemd {
                op,
                unit: unit.to_string(),
                message: "JobRemoved stream ended".into(),
            })
        })
        .await
    }

    /// The properties `names` of `interface` on the unit at `path`, asked one `Get` each, all
    /// in flight at once on the one connection. Not `GetAll`: on a service that returns some
    /// 250 properties, several read from cgroupfs by systemd's single thread, and it was half of
    /// a no-op pass (issue 16, `observe.units` in `tests/bench`).
    async fn get(
        &self,
        path: &OwnedObjectPath,
        interface: &'static str,
        names: &[&'static str],
        unit: &str,
    ) -> Result<HashMap<&'static str, OwnedValue>, HostError> {
        let props = zbus::fdo::PropertiesProxy::builder(&self.conn)
            .destination("org.freedesktop.systemd1")
            .and_then(|b| b.path(path.as_ref()))
            .map_err(sd_err("properties", unit))?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(sd_err("properties", unit))?;
        let iface = zbus::names::InterfaceName::from_static_str_unchecked(interface);
        let values = futures_util::future::try_join_all(
            names.iter().map(|name| props.get(iface.clone(), name)),
        )
        .await
        .map_err(|e| HostError::Systemd {
            op: "properties",
            unit: unit.into(),
            message: e.to_string(),
        })?;
        Ok(names.iter().copied().zip(values).collect())
    }
}

fn text(map: &HashMap<&'static str, OwnedValue>, key: &str) -> String {
    map.get(key)
        .and_then(|v| String::try_from(v.clone()).ok())
        .unwrap_or_default()
}

impl Systemd for DbusSystemd {
    async fn unit_state(&self, unit: &str) -> Result<UnitState, HostError> {
        self.unit_states(&[unit.to_string()])
            .await?
            .pop()
            .ok_or_else(|| HostError::Systemd {
                op: "list",
                unit: unit.into(),
                message: "systemd did not list it".into(),
            })
    }

    async fn unit_states(&self, units: &[String]) -> Result<Vec<UnitState>, HostError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        bounded("state of the units", CALL_TIMEOUT, async {
            let names: Vec<&str> = units.iter().map(String::as_str).collect();
            // Load, active and sub state of all of them in one call; the rest per unit, all
            // in flight at once on the one connection.
            let listed = self
                .manager
                .list_units_by_names(&names)
                .await
                .map_err(sd_err("list", ""))?;
            // One entry per name, in the order asked (by position, not by the name listed: an
            // alias is listed under the unit's own name).
            if listed.len() != units.len() {
                return Err(HostError::Systemd {
                    op: "list",
                    unit: names.join(" "),
                    message: format!(
                        "systemd listed {} units for {} names",
                        listed.len(),
                        units.len()
                    ),
                });
            }
            futures_util::future::try_join_all(units.iter().zip(&listed).map(
                |(unit, listed)| async move {
                    let (_, _, load, active, sub, _, path, ..) = listed;
                    let service = unit.ends_with(".service") && load == "loaded";
                    let unit_props = self.get(
                        path,
                        "org.freedesktop.systemd1.Unit",
                        &["UnitFileState", "FragmentPath"],
                        unit,
                    );
                    let service_props = async {
                        if service {
                            self.get(
                                path,
                                "org.freedesktop.systemd1.Service",
                                &["MainPID", "NRestarts"],
                                unit,
                            )
                            .await
                        } else {
                            Ok(HashMap::new())
                        }
                    };
                    let (props, svc) =
                        futures_util::future::try_join(unit_props, service_props).await?;
                    let number = |key: &str| {
                        svc.get(key)
                            .and_then(|v| u32::try_from(v.clone()).ok())
                            .unwrap_or(0)
                    };
                    Ok(UnitState {
                        load_state: load.clone(),
                        active_state: active.clone(),
                        sub_state: sub.clone(),
                        unit_file_state: text(&props, "UnitFileState"),
                        fragment_path: text(&props, "FragmentPath"),
                        main_pid: number("MainPID"),
                        n_restarts: number("NRestarts"),
                    })
                },
            ))
            .await
        })
        .await
    }

    async fn daemon_reload(&self) -> Result<(), HostError> {
        let mut reloading = self
            .manager
            .receive_reloading()
            .await
            .map_err(sd_err("daemon-reload", ""))?;
        bounded("daemon-reload", CALL_TIMEOUT, async {
            self.manager
                .reload()
                .await
                .map_err(sd_err("daemon-reload", ""))
        })
        .await?;
        // systemd replies to Reload() once it is done, but the Reloading(false) signal is the
        // documented end; wait for it briefly so a unit loaded next sees the new files.
        let wait = async {
            while let Some(signal) = reloading.next().await {
                if let Ok(args) = signal.args() {
                    if !args.active {
                        return Ok(());
                    }
                }
            }
            Err(HostError::Systemd {
                op: "daemon-reload",
                unit: String::new(),
                message: "signal stream ended".into(),
            })
        };
        match timeout(Duration::from_millis(500), wait).await {
            Ok(r) => r,
            // The reply already arrived after the reload finished; a signal we missed is fine.
            Err(_) => Ok(()),
        }
    }

    async fn run_job(&self, kind: JobKind, unit: &str) -> Result<(), HostError> {
        self.job(kind.verb(), unit, async {
            match kind {
                JobKind::Start => self.manager.start_unit(unit, "replace").await,
                JobKind::Stop => self.manager.stop_unit(unit, "replace").await,
                JobKind::Restart => self.manager.restart_unit(unit, "replace").await,
                JobKind::Reload => self.manager.reload_unit(unit, "replace").await,
            }
        })
        .await
    }

    async fn enable(&self, units: &[String]) -> Result<(), HostError> {
        self.enable_for_boot(units).await?;
        self.daemon_reload().await
    }

    async fn disable(&self, units: &[String]) -> Result<(), HostError> {
        self.disable_for_boot(units).await?;
        self.daemon_reload().await
    }

    async fn enable_for_boot(&self, units: &[String]) -> Result<(), HostError> {
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        let joined = units.join(" ");
        bounded("enable", CALL_TIMEOUT, async {
            self.manager
                .enable_unit_files(&names, false, true)
                .await
                .map_err(sd_err("enable", &joined))
        })
        .await?;
        Ok(())
    }

    async fn disable_for_boot(&self, units: &[String]) -> Result<(), HostError> {
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        let joined = units.join(" ");
        bounded("disable", CALL_TIMEOUT, async {
            self.manager
                .disable_unit_files(&names, false)
                .await
                .map_err(sd_err("disable", &joined))
        })
        .await?;
        Ok(())
    }

    async fn reset_failed(&self, unit: &str) {
        // Best effort by contract: a unit strackt removed that stays "failed" only leaves the
        // host "degraded" in `systemctl status`.
        let _ = bounded("ResetFailedUnit", CALL_TIMEOUT, async {
            self.manager
                .reset_failed_unit(unit)
                .await
                .map_err(sd_err("reset-failed", unit))
        })
        .await;
    }

    async fn start_transient(
        &self,
        unit: &str,
        properties: &[(String, Value<'static>)],
        aux: &[(String, Properties)],
    ) -> Result<(), HostError> {
        let props: Vec<(&str, Value<'_>)> = properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let aux_props: Vec<(&str, Vec<(&str, Value<'_>)>)> = aux
            .iter()
            .map(|(name, p)| {
                let p = p.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                (name.as_str(), p)
            })
            .collect();
        let aux: Vec<(&str, &[(&str, Value<'_>)])> = aux_props
            .iter()
            .map(|(name, p)| (*name, p.as_slice()))
            .collect();
        self.job("start", unit, async {
            self.manager
                .start_transient_unit(unit, "fail", &props, &aux)
                .await
        })
        .await
    }

    async fn units_matching(&self, pattern: &str) -> Result<Vec<String>, HostError> {
        bounded("ListUnitsByPatterns", CALL_TIMEOUT, async {
            let listed = self
                .manager
                .list_units_by_patterns(&[], &[pattern])
                .await
                .map_err(sd_err("list", pattern))?;
            Ok(listed.into_iter().map(|u| u.0).collect())
        })
        .await
    }

    fn runtime_unit_files(&self, prefix: &str) -> Vec<String> {
        runtime_unit_files(prefix)
    }

    fn remove_runtime_unit_file(&self, unit: &str) -> Result<(), HostError> {
        remove_runtime_unit_file(unit)
    }
}
