//! Rules for `services:`: unit names, the keys that only apply to units strackt writes,
//! command lines, accounts, `restart_on` and health probes. Pure: reports problems, touches
//! nothing.

use super::super::parse::Problems;
use super::super::rules;
use super::super::{Definition, HealthSpec, Seg, ServiceSpec};
use super::{is_account_name, key, HOUR, SECOND};

/// Unit types a `unit:` service may name.
const UNIT_TYPES: &[&str] = &["service", "socket", "timer", "path", "target", "mount"];

pub(super) fn check_service(
    def: &Definition,
    name: &str,
    spec: &ServiceSpec,
    problems: &mut Problems<'_>,
) {
    let at = |field: &str| {
        let mut p = key(&["services", name]);
        if !field.is_empty() {
            p.push(Seg::Key(field.into()));
        }
        p
    };
    if let Err(e) = rules::service_key(name) {
        problems.at_key(&at(""), e);
    }
    if name == "strackt" || spec.unit.as_deref() == Some("strackt.service") {
        problems.at_key(
            &at(""),
            "strackt never manages its own unit (it must not restart itself mid-switch)",
        );
    }
    match (&spec.unit, &spec.exec) {
        (Some(_), Some(_)) => problems.at(
            &at("exec"),
            "`exec` writes a unit; `unit` names an existing one: use one of them",
        ),
        (None, None) => problems.at_key(
            &at(""),
            "needs `exec:` (a unit strackt writes) or `unit:` (an existing unit)",
        ),
        (Some(unit), None) => {
            if let Err(e) = rules::unit_name(unit, UNIT_TYPES) {
                problems.at(&at("unit"), format!("{e}; e.g. cron.service"));
            }
            let writes_unit = [
                ("description", spec.description.is_some()),
                ("user", spec.user.is_some()),
                ("group", spec.group.is_some()),
                ("working_directory", spec.working_directory.is_some()),
                ("environment", !spec.environment.is_empty()),
                ("exec_reload", spec.exec_reload.is_some()),
                ("restart", spec.restart.is_some()),
                ("after", !spec.after.is_empty()),
            ];
            for (field, set) in writes_unit {
                if set {
                    problems.at_key(&at(field), format!("`{field}` only applies to units strackt writes (`exec:`), not to `unit: {unit}`"));
                }
            }
        }
        (None, Some(_)) => {}
    }
    for (field, command) in [("exec", &spec.exec), ("exec_reload", &spec.exec_reload)] {
        if let Some(command) = command {
            if let Err(e) = command_line(command) {
                problems.at(&at(field), e);
            }
        }
    }
    if let Some(text) = &spec.description {
        if let Err(e) = rules::one_line(text) {
            problems.at(&at("description"), e);
        }
    }
    if let Some(dir) = &spec.working_directory {
        if let Err(e) = rules::absolute_path(dir) {
            problems.at(&at("working_directory"), e);
        }
    }
    for (field, value) in [("user", &spec.user), ("group", &spec.group)] {
        if let Some(v) = value {
            if !is_account_name(v) {
                problems.at(&at(field), format!("{v:?} is not a valid {field} name"));
            }
        }
    }
    for (var, value) in &spec.environment {
        let mut p = at("environment");
        p.push(Seg::Key(var.clone()));
        if let Err(e) = rules::env_name(var) {
            problems.at_key(&p, e);
        }
        if let Err(e) = rules::env_value(value) {
            problems.at(&p, e);
        }
    }
    for (i, unit) in spec.after.iter().enumerate() {
        if let Err(e) = rules::unit_name(unit, &[]) {
            let mut p = at("after");
            p.push(Seg::Index(i));
            problems.at(&p, format!("{e}; e.g. network-online.target"));
        }
    }
    for (i, file) in spec.restart_on.iter().enumerate() {
        let mut p = at("restart_on");
        p.push(Seg::Index(i));
        if !def.files.contains_key(file) {
            problems.at(&p, format!("{file:?} is not a file in `files:`"));
        } else if spec.restart_on[..i].contains(file) {
            problems.at(&p, format!("{file:?} is named twice"));
        }
    }
    if let Some(health) = &spec.health {
        check_health(health, &at("health"), problems);
    }
}

/// A command line written into a unit file: one line, starting with an absolute program path.
fn command_line(text: &str) -> Result<(), String> {
    rules::one_line(text)?;
    if text.trim_start().starts_with('/') {
        Ok(())
    } else {
        Err("must start with an absolute path to the program".into())
    }
}

fn check_health(h: &HealthSpec, at: &[Seg], problems: &mut Problems<'_>) {
    let field = |f: &str| {
        let mut p = at.to_vec();
        p.push(Seg::Key(f.into()));
        p
    };
    let set = [h.command.is_some(), h.http.is_some(), h.tcp.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if set != 1 {
        problems.at(at, "needs exactly one of `command`, `http`, `tcp`");
    }
    if let Some(cmd) = &h.command {
        if let Err(e) = command_line(cmd) {
            problems.at(&field("command"), e);
        }
    }
    if let Some(url) = &h.http {
        if let Err(e) = rules::url(url, &["http", "https"]) {
            problems.at(&field("http"), e);
        }
    }
    if let Some(tcp) = &h.tcp {
        let ok = tcp.rsplit_once(':').is_some_and(|(host, port)| {
            rules::host(host).is_ok() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            problems.at(
                &field("tcp"),
                format!("{tcp:?} is not HOST:PORT (a host name or address, a port 1-65535)"),
            );
        }
    }
    if let Some(within) = &h.within {
        if let Err(e) = rules::duration(within, SECOND, HOUR) {
            problems.at(&field("within"), e);
        }
    }
}
