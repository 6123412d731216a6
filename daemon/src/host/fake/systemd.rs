//! The fake host's service manager: units loaded from the unit files under `UNIT_DIR` (and
//! systemd's runtime directory, where an older strackt left files) at daemon-reload (or from
//! the vendor units a package would ship), instances of a loaded template, jobs that start,
//! stop and restart them with a new MainPID each time (and reload them with new children of
//! it), and the journal of every job run. Only the model; arranging and inspecting it is
//! `FakeHost`'s.

use std::collections::BTreeSet;
use std::path::Path;

use super::{FakeHost, FakeState};
use crate::host::systemd::{Properties, Value, RUNTIME_UNIT_DIR, UNIT_DIR};
use crate::host::{HostError, JobKind, Systemd, UnitState};

impl FakeState {
    /// `unit`'s file: under `UNIT_DIR`, else in the runtime directory (as systemd, where
    /// `/etc` comes first).
    fn unit_file(&self, unit: &str) -> Option<String> {
        [UNIT_DIR, RUNTIME_UNIT_DIR]
            .iter()
            .find_map(|dir| self.files.get(&Path::new(dir).join(unit)))
            .map(|f| String::from_utf8_lossy(&f.0).into_owned())
    }

    /// The names of the files directly in `dir`.
    fn unit_files_in(&self, dir: &str) -> BTreeSet<String> {
        self.files
            .keys()
            .filter(|p| p.parent() == Some(Path::new(dir)))
            .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
            .collect()
    }

    /// What systemd loads `unit` from: its own unit, or for an instance `a@i.service` its
    /// template `a@.service`.
    fn source(&self, unit: &str) -> String {
        match unit.split_once('@') {
            Some((base, rest)) => match rest.rsplit_once('.') {
                Some((_, kind)) => format!("{base}@.{kind}"),
                None => unit.to_string(),
            },
            None => unit.to_string(),
        }
    }

    /// Fresh pids for the children `unit`'s main process runs after a start or reload (as many
    /// as [`FakeState::workers`] says).
    fn new_workers(&mut self, unit: &str) -> BTreeSet<u32> {
        let n = self.workers.get(unit).copied().unwrap_or(0);
        (0..n)
            .map(|_| {
                self.next_pid += 1;
                100 + self.next_pid
            })
            .collect()
    }

    /// Whether systemd can load `unit` (a unit file after daemon-reload, or a vendor unit).
    fn knows(&self, unit: &str) -> bool {
        let source = self.source(unit);
        self.units.get(&source).is_some_and(|u| u.loaded.is_some())
            || self.vendor_units.contains(&source)
    }
}

impl Systemd for FakeHost {
    async fn unit_state(&self, unit: &str) -> Result<UnitState, HostError> {
        let s = self.state();
        let u = s.units.get(unit).cloned().unwrap_or_default();
        let known = s.knows(unit);
        Ok(UnitState {
            load_state: if known { "loaded" } else { "not-found" }.into(),
            active_state: if u.active { "active" } else { "inactive" }.into(),
            sub_state: if u.active { "running" } else { "dead" }.into(),
            unit_file_state: if !known {
                String::new()
            } else if u.enabled {
                "enabled".into()
            } else {
                "disabled".into()
            },
            fragment_path: String::new(),
            main_pid: if u.active { u.pid } else { 0 },
            n_restarts: 0,
        })
    }

    async fn unit_states(&self, units: &[String]) -> Result<Vec<UnitState>, HostError> {
        let mut states = Vec::with_capacity(units.len());
        for unit in units {
            states.push(self.unit_state(unit).await?);
        }
        Ok(states)
    }

    async fn daemon_reload(&self) -> Result<(), HostError> {
        let mut s = self.state();
        s.journal.push("daemon-reload".into());
        let names: BTreeSet<String> = s.units.keys().cloned().collect();
        let mut on_disk = s.unit_files_in(UNIT_DIR);
        on_disk.extend(s.unit_files_in(RUNTIME_UNIT_DIR));
        for name in names.union(&on_disk) {
            let text = s.unit_file(name);
            s.units.entry(name.clone()).or_default().loaded = text;
        }
        Ok(())
    }

    async fn run_job(&self, kind: JobKind, unit: &str) -> Result<(), HostError> {
        let mut s = self.state();
        s.journal.push(format!("{} {unit}", kind.verb()));
        let known = s.knows(unit);
        let fails = s.failing.contains(unit)
            || s.units
                .get(&s.source(unit))
                .and_then(|u| u.loaded.as_deref())
                .is_some_and(|t| t.contains("ExecStart=/bin/false"));
        s.next_pid += 1;
        let pid = 100 + s.next_pid;
        let workers = s.new_workers(unit);
        let u = s.units.entry(unit.to_string()).or_default();
        let err = |message: &str| {
            Err(HostError::Systemd {
                op: kind.verb(),
                unit: unit.to_string(),
                message: message.into(),
            })
        };
        match kind {
            JobKind::Stop => {
                u.active = false;
                Ok(())
            }
            _ if !known => err("Unit not found."),
            JobKind::Reload if !u.active => err("job result: failed"),
            JobKind::Reload => {
                u.children = workers;
                Ok(())
            }
            JobKind::Start if u.active => Ok(()),
            JobKind::Start | JobKind::Restart => {
                if fails {
                    u.active = false;
                    return err("job result: failed");
                }
                u.active = true;
                u.pid = pid;
                u.children = workers;
                Ok(())
            }
        }
    }

    async fn enable(&self, units: &[String]) -> Result<(), HostError> {
        let mut s = self.state();
        for unit in units {
            s.journal.push(format!("enable {unit}"));
            s.units.entry(unit.clone()).or_default().enabled = true;
        }
        Ok(())
    }

    async fn disable(&self, units: &[String]) -> Result<(), HostError> {
        let mut s = self.state();
        for unit in units {
            s.journal.push(format!("disable {unit}"));
            s.units.entry(unit.clone()).or_default().enabled = false;
        }
        Ok(())
    }

    async fn reset_failed(&self, unit: &str) {
        self.state().journal.push(format!("reset-failed {unit}"));
    }

    /// The unit and its `aux` units are loaded from their properties (kept as text) and
    /// `unit` is started: it fails when it is listed in `failing`.
    async fn start_transient(
        &self,
        unit: &str,
        properties: &[(String, Value<'static>)],
        aux: &[(String, Properties)],
    ) -> Result<(), HostError> {
        {
            let mut s = self.state();
            s.journal.push(format!("start-transient {unit}"));
            let text = |props: &[(String, Value<'static>)]| {
                props.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
            };
            for (name, props) in aux {
                s.units.entry(name.clone()).or_default().loaded = Some(text(props));
            }
            s.units.entry(unit.to_string()).or_default().loaded = Some(text(properties));
        }
        self.run_job(JobKind::Start, unit).await
    }

    async fn units_matching(&self, pattern: &str) -> Result<Vec<String>, HostError> {
        let s = self.state();
        Ok(s.units
            .iter()
            .filter(|(name, _)| s.knows(name) && glob(pattern, name))
            .map(|(name, _)| name.clone())
            .collect())
    }
    fn runtime_unit_files(&self, prefix: &str) -> Vec<String> {
        let s = self.state();
        s.unit_files_in(RUNTIME_UNIT_DIR)
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    fn remove_runtime_unit_file(&self, unit: &str) -> Result<(), HostError> {
        let mut s = self.state();
        s.journal.push(format!("remove {RUNTIME_UNIT_DIR}/{unit}"));
        s.files.remove(&Path::new(RUNTIME_UNIT_DIR).join(unit));
        Ok(())
    }
}

/// Whether `name` matches the glob `pattern` (`*` for any run of characters; systemd's other
/// wildcards are not used by strackt).
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}
