//! The `apps:` types as they parse and the rules `check_apps` enforces.

use std::path::Path;

use super::super::parse;
use super::*;

/// An app whose `steps:` are `steps`, with or without a database.
fn app(steps: &str, database: bool) -> String {
    let db = if database {
        "    database: { engine: postgresql, name: shop, user: shop, password: { secret: db } }\n"
    } else {
        ""
    };
    format!(
            "version: 1\napps:\n  shop:\n    repo: /srv/src/shop\n    path: /srv/shop\n    user: shop\n{db}    steps:\n{steps}    service: {{ exec: /usr/bin/app, listen: \"127.0.0.1:8000\" }}\n"
        )
}

fn migrate_of(src: &str) -> Result<Option<MigrateStep>, Vec<String>> {
    parse(src, Path::new("server.yaml"))
        .map(|d| d.definition().apps["shop"].steps.migrate.clone())
        .map_err(|e| e.to_string().lines().map(str::to_string).collect())
}

#[test]
fn migrate_is_a_command_or_a_mapping_with_its_restore_choice() {
    let plain = migrate_of(&app("      migrate: sh scripts/migrate\n", true))
        .expect("valid")
        .expect("migrate");
    assert_eq!(
        (plain.command(), plain.restore_on_failure()),
        ("sh scripts/migrate", true)
    );
    let mapping = migrate_of(&app(
        "      migrate: { run: sh scripts/migrate, restore_on_failure: false }\n",
        true,
    ))
    .expect("valid")
    .expect("migrate");
    assert_eq!(
        (mapping.command(), mapping.restore_on_failure()),
        ("sh scripts/migrate", false)
    );
    let default = migrate_of(&app("      migrate: { run: sh m }\n", false))
        .expect("valid without database when restore_on_failure is not written")
        .expect("migrate");
    assert!(default.restore_on_failure());
}

#[test]
fn mistakes_in_the_migrate_mapping_are_named_at_their_field() {
    let cases = [
            (
                "      migrate: { run: sh m, restore_on_falure: false }\n",
                true,
                "server.yaml:9:29: apps.shop.steps.migrate.restore_on_falure: unknown field `restore_on_falure`",
            ),
            (
                "      migrate: { run: sh m, restore_on_failure: sometimes }\n",
                true,
                "server.yaml:9:49: apps.shop.steps.migrate.restore_on_failure: invalid type: string \"sometimes\", expected a boolean",
            ),
            (
                "      migrate: { restore_on_failure: false }\n",
                true,
                "server.yaml:9:16: apps.shop.steps.migrate: missing field `run`",
            ),
            (
                "      migrate: [sh, m]\n",
                true,
                "server.yaml:9:16: apps.shop.steps.migrate: invalid type: sequence, expected a command, or a mapping `{ run: COMMAND, restore_on_failure: BOOL }`",
            ),
            (
                "      migrate: { run: \" \" }\n",
                true,
                "server.yaml:9:23: apps.shop.steps.migrate.run: a command is needed",
            ),
            (
                "      migrate: { run: sh m, restore_on_failure: true }\n",
                false,
                "server.yaml:8:49: apps.shop.steps.migrate.restore_on_failure: needs `database:`",
            ),
        ];
    for (steps, database, want) in cases {
        let got = migrate_of(&app(steps, database)).expect_err(steps);
        assert!(
            got.iter().any(|l| l.starts_with(want)),
            "{steps}: want {want:?}, got {got:?}"
        );
    }
}

/// The `hello` app in proxy mode with `service:` fields `service` and `settings:` `settings`.
fn proxy_app(service: &str, settings: &str) -> String {
    format!(
            "version: 1\napps:\n  hello:\n    repo: /srv/src/hello\n    path: /srv/hello\n    user: hello\n    settings: {{ {settings} }}\n    service: {{ exec: node server.js, listen: \"127.0.0.1:8000\"{service} }}\n  other:\n    repo: /srv/src/other\n    path: /srv/other\n    user: other\n    service: {{ exec: /usr/bin/other, listen: \"127.0.0.1:9000\" }}\n"
        )
}

fn problems_of(src: &str) -> Vec<String> {
    match parse(src, Path::new("server.yaml")) {
        Ok(_) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

#[test]
fn proxy_mode_takes_two_ports_and_socket_mode_none() {
    let ok = parse(
        &proxy_app(", mode: proxy, ports: [8001, 8002]", ""),
        Path::new("server.yaml"),
    )
    .expect("valid");
    let service = &ok.definition().apps["hello"].service;
    assert_eq!(
        (service.mode, service.ports),
        (ServeMode::Proxy, Some([8001, 8002]))
    );
    let socket = parse(&proxy_app("", ""), Path::new("server.yaml")).expect("valid");
    assert_eq!(
        socket.definition().apps["hello"].service.mode,
        ServeMode::Socket,
        "socket mode is the default"
    );
    let cases = [
            (
                proxy_app(", mode: proxy", ""),
                "server.yaml:8:64: apps.hello.service.mode: `mode: proxy` needs `ports: [A, B]`",
            ),
            (
                proxy_app(", ports: [8001, 8002]", ""),
                "server.yaml:8:71: apps.hello.service.ports: only with `mode: proxy`",
            ),
            (
                proxy_app(", mode: proxy, ports: [8001, 8001]", ""),
                "server.yaml:8:84: apps.hello.service.ports: two different ports are needed, not 8001 twice",
            ),
            (
                proxy_app(", mode: proxy, ports: [8000, 8002]", ""),
                "server.yaml:8:85: apps.hello.service.ports[0]: 127.0.0.1:8000 is already an address of app hello",
            ),
            (
                proxy_app(", mode: proxy, ports: [9000, 8002]", ""),
                // Apps are checked in name order: the later one is told.
                "server.yaml:13:46: apps.other.service.listen: 127.0.0.1:9000 is already the address of app hello",
            ),
            (
                proxy_app(", mode: proxy, ports: [0, 8002]", ""),
                "server.yaml:8:85: apps.hello.service.ports[0]: port 0 is not a port",
            ),
            (
                proxy_app(", mode: proxy, ports: [8001, 8002]", "PORT: \"3000\""),
                "server.yaml:7:17: apps.hello.settings.PORT: with `mode: proxy` strackt sets PORT",
            ),
            (
                proxy_app(", mode: sideways, ports: [8001, 8002]", ""),
                "apps.hello.service.mode: unknown variant `sideways`, expected `socket` or `proxy`",
            ),
        ];
    for (src, want) in cases {
        let got = problems_of(&src);
        assert!(
            got.iter().any(|l| l.contains(want)),
            "want {want:?}, got {got:?}\n{src}"
        );
    }
}
