//! The systemd units strackt writes for an app (pure text).
//!
//! Socket mode: a socket that owns the listening address and a service it activates. Because the
//! socket stays open while the service restarts, connections that arrive during a switch wait in
//! the kernel's backlog instead of being refused, and the old process finishes the requests it
//! holds (SIGTERM, then up to 30 s).
//!
//! Proxy mode (`mode: proxy`, see `proxy.rs`): one template service whose instance is a release
//! id, so the new release runs beside the live one, each on its own port.

use std::collections::BTreeMap;
use std::path::Path;

use crate::definition::AppSpec;

/// Prefix of the live units: `strackt-app-<app>.socket` / `.service`.
pub const LIVE_PREFIX: &str = "strackt-app-";
/// Prefix of the units that boot a release on a spare port to validate it.
pub const VALIDATE_PREFIX: &str = "strackt-validate-";

/// A socket + service pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPair {
    /// `<base>.socket`.
    pub socket: String,
    /// `<base>.service`.
    pub service: String,
    /// Text of the socket unit.
    pub socket_text: String,
    /// Text of the service unit.
    pub service_text: String,
}

/// systemd expands `%` specifiers in unit files; a command line is taken literally.
fn escape_specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// Render the pair named `base` serving `listen` from `workdir` with environment `env_file`.
pub fn render(
    app: &str,
    spec: &AppSpec,
    base: &str,
    listen: &str,
    workdir: &Path,
    env_file: &Path,
) -> UnitPair {
    let socket = format!("{base}.socket");
    let service = format!("{base}.service");
    let socket_text = format!(
        "# Written by strackt for app {app}; changes are overwritten at the next deploy.\n\
         [Unit]\nDescription=strackt app {app} (listening socket)\n\n\
         [Socket]\nListenStream={listen}\nService={service}\n\n\
         [Install]\nWantedBy=sockets.target\n"
    );
    let mut after = vec![socket.clone()];
    after.extend(spec.requires.iter().cloned());
    let user = spec
        .user
        .as_deref()
        .map(|u| format!("User={u}\n"))
        .unwrap_or_default();
    let service_text = format!(
        "# Written by strackt for app {app}; changes are overwritten at the next deploy.\n\
         [Unit]\nDescription=strackt app {app}\nRequires={socket}\nAfter={after}\n\n\
         [Service]\nType=simple\n{user}WorkingDirectory={workdir}\nEnvironmentFile={env}\n\
         ExecStart={exec}\nRestart=on-failure\nKillSignal=SIGTERM\nTimeoutStopSec=30s\n",
        after = after.join(" "),
        workdir = escape_specifiers(&workdir.display().to_string()),
        env = escape_specifiers(&env_file.display().to_string()),
        exec = escape_specifiers(&spec.service.exec),
    );
    UnitPair {
        socket,
        service,
        socket_text,
        service_text,
    }
}

/// The template service of a proxy-mode app: instance `<id>` runs release `<id>` from
/// `releases_dir/<id>` with the environment files `<data_dir>/<id>/env` (settings) and
/// `<data_dir>/<id>/<port_file>` (`HOST`, `PORT`), and starts at boot when enabled.
pub fn render_template(
    app: &str,
    spec: &AppSpec,
    releases_dir: &Path,
    data_dir: &Path,
    port_file: &str,
) -> String {
    let user = spec
        .user
        .as_deref()
        .map(|u| format!("User={u}\n"))
        .unwrap_or_default();
    let mut after = vec!["network.target".to_string()];
    after.extend(spec.requires.iter().cloned());
    let dir = |p: &Path| escape_specifiers(&p.display().to_string());
    format!(
        "# Written by strackt for app {app}; changes are overwritten at the next deploy.\n\
         [Unit]\nDescription=strackt app {app}, release %i\nAfter={after}\n\n\
         [Service]\nType=simple\n{user}WorkingDirectory={releases}/%i\n\
         EnvironmentFile={data}/%i/env\nEnvironmentFile={data}/%i/{port_file}\n\
         ExecStart={exec}\nRestart=on-failure\nKillSignal=SIGTERM\nTimeoutStopSec=30s\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        after = after.join(" "),
        releases = dir(releases_dir),
        data = dir(data_dir),
        exec = escape_specifiers(&spec.service.exec),
    )
}

/// An `EnvironmentFile=`: one `KEY="value"` per line, backslash and quote escaped.
pub fn env_file(vars: &BTreeMap<String, String>) -> String {
    let mut out = String::from("# Written by strackt at deploy time (root-only).\n");
    for (k, v) in vars {
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        out.push_str(&format!("{k}=\"{v}\"\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_activate_the_service_from_the_socket() {
        let spec: AppSpec = serde_json::from_value(serde_json::json!({
            "repo": "/srv/git/shop.git", "path": "/srv/shop", "user": "shop",
            "requires": ["postgresql.service"],
            "service": {"exec": "python3 app.py --width 100%", "listen": "127.0.0.1:8000"}
        }))
        .expect("spec");
        let pair = render(
            "shop",
            &spec,
            "strackt-app-shop",
            "127.0.0.1:8000",
            Path::new("/srv/shop/current"),
            Path::new("/var/lib/strackt/apps/shop/current/env"),
        );
        assert_eq!(pair.service, "strackt-app-shop.service");
        assert!(pair
            .socket_text
            .contains("ListenStream=127.0.0.1:8000\nService=strackt-app-shop.service\n"));
        assert!(pair.service_text.contains(
            "Requires=strackt-app-shop.socket\nAfter=strackt-app-shop.socket postgresql.service\n"
        ));
        assert!(pair.service_text.contains(
            "User=shop\nWorkingDirectory=/srv/shop/current\nEnvironmentFile=/var/lib/strackt/apps/shop/current/env\n"
        ));
        assert!(pair
            .service_text
            .contains("ExecStart=python3 app.py --width 100%%\n"));
        let env = env_file(&BTreeMap::from([(
            "KEY".to_string(),
            "a \"b\" \\c".to_string(),
        )]));
        assert!(env.ends_with("KEY=\"a \\\"b\\\" \\\\c\"\n"), "{env}");
    }

    #[test]
    fn the_proxy_template_runs_the_release_its_instance_names() {
        let spec: AppSpec = serde_json::from_value(serde_json::json!({
            "repo": "/srv/git/hello.git", "path": "/srv/100%", "user": "hello",
            "requires": ["postgresql.service"],
            "service": {"exec": "node server.js", "listen": "127.0.0.1:8000",
                        "mode": "proxy", "ports": [8001, 8002]}
        }))
        .expect("spec");
        let text = render_template(
            "hello",
            &spec,
            Path::new("/srv/100%/releases"),
            Path::new("/var/lib/strackt/apps/hello/releases"),
            "listen",
        );
        assert!(
            text.contains(
                "User=hello\nWorkingDirectory=/srv/100%%/releases/%i\n\
             EnvironmentFile=/var/lib/strackt/apps/hello/releases/%i/env\n\
             EnvironmentFile=/var/lib/strackt/apps/hello/releases/%i/listen\n\
             ExecStart=node server.js\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("After=network.target postgresql.service\n"),
            "{text}"
        );
        assert!(
            text.ends_with("[Install]\nWantedBy=multi-user.target\n"),
            "{text}"
        );
    }
}
