//! The semantic rules, each refusal at the field it names.

use std::path::Path;

use super::super::parse;

fn problems(src: &str) -> Vec<String> {
    match parse(src, Path::new("server.yaml")) {
        Ok(_) => vec![],
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

#[test]
fn update_policies_are_checked_at_their_fields() {
    assert_eq!(
            problems("version: 1\nstrackt:\n  updates: { check: daily, apply: security, timezone: Europe/Berlin }\n"),
            Vec::<String>::new()
        );
    assert_eq!(
        problems("version: 1\nstrackt:\n  updates:\n    check: \"0 */6 * * *\"\n    apply: all\n"),
        Vec::<String>::new()
    );
    let got = problems("version: 1\nstrackt:\n  updates: { check: daily, apply: sometimes }\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
            got[0].starts_with("server.yaml:3:35: strackt.updates.apply: unknown variant `sometimes`, expected one of `none`, `security`, `all`"),
            "{got:?}"
        );
    let got = problems("version: 1\nstrackt:\n  updates:\n    check: \"*/5 * * * *\"\n    timezone: Europe/Berln\n");
    assert_eq!(
            got,
            [
                "server.yaml:4:12: strackt.updates.check: \"*/5 * * * *\" runs 5 minutes apart (at 2026-01-01 00:05 UTC and 00:10 UTC); scheduled work runs at most every 15 minutes",
                "server.yaml:5:15: strackt.updates.timezone: unknown timezone \"Europe/Berln\"; use an IANA name such as Europe/Berlin or UTC",
            ]
        );
    let got = problems("version: 1\nstrackt:\n  updates: { check: sometimes, when: now }\n");
    assert!(
        got[0].contains("strackt.updates.when: unknown field `when`"),
        "{got:?}"
    );
}

#[test]
fn the_issue_example_is_valid() {
    let src = r#"version: 1
files:
  /etc/motd: { content: "welcome\n" }
  /etc/app/app.conf: { content: "...", mode: "0640", owner: root, group: adm }
services:
  hello:
    exec: /usr/bin/sleep infinity
    user: nobody
    environment: { GREETING: hi }
    health: { command: "/usr/bin/true" }
  cron:
    unit: cron.service
"#;
    assert_eq!(problems(src), Vec::<String>::new());
}

#[test]
fn every_problem_is_reported_at_once_with_its_position() {
    let src = r#"version: 1
files:
  etc/motd: { content: "x" }
  /proc/sys/x: { content: "x" }
  /etc/strackt/server.yaml: { content: "x" }
  /etc/ok: { content: "x", mode: "999" }
  /etc/typo: { content: "x", mdoe: "0644" }
services:
  "bad name": { exec: /bin/true }
  a: { unit: "cron" }
  b: { exec: "sleep 1" }
  c: { exec: /bin/true, health: { http: "ftp://x" } }
bogus: 1
"#;
    let got = problems(src);
    let expect = [
        "server.yaml:3:3: files.\"etc/motd\": \"etc/motd\" is a relative path",
        "server.yaml:4:3: files.\"/proc/sys/x\": strackt may not manage \"/proc/sys/x\"",
        "server.yaml:5:3: files.\"/etc/strackt/server.yaml\": strackt may not manage",
        "server.yaml:6:34: files.\"/etc/ok\".mode: \"999\" is not an octal mode",
        "server.yaml:7:30: files.\"/etc/typo\".mdoe: unknown field `mdoe`",
        "server.yaml:9:3: services.\"bad name\": \"bad name\" is not a service name",
        "server.yaml:10:14: services.a.unit: \"cron\" is not a unit name",
        "server.yaml:11:14: services.b.exec: must start with an absolute path",
        "server.yaml:12:41: services.c.health.http: \"ftp://x\" is not an http",
        "server.yaml:13:1: bogus: unknown section `bogus`",
    ];
    // Semantic checks need a sound structure, so structural problems (unknown keys, wrong
    // types) come first, all of them; once fixed, every semantic problem comes at once.
    let structural: Vec<&str> = expect
        .iter()
        .copied()
        .filter(|e| e.contains("unknown"))
        .collect();
    for e in &structural {
        assert!(
            got.iter().any(|g| g.starts_with(e)),
            "missing {e:?} in {got:#?}"
        );
    }
    let fixed = src.replace("mdoe", "mode").replace("bogus: 1\n", "");
    let got = problems(&fixed);
    for e in expect.iter().filter(|e| !e.contains("unknown")) {
        assert!(
            got.iter().any(|g| g.starts_with(e)),
            "missing {e:?} in {got:#?}"
        );
    }
}

#[test]
fn syntax_errors_have_a_position() {
    let got = problems("version: 1\nfiles:\n  /etc/x: { content: \"a\"\n");
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("server.yaml:4:1: (document): "),
        "{got:?}"
    );
}

#[test]
fn version_is_required_and_must_be_1() {
    assert!(problems("files: {}\n")[0].contains("missing `version: 1`"));
    assert!(
        problems("version: 2\n")[0].starts_with("server.yaml:1:10: version: unsupported version 2")
    );
}

#[test]
fn modes_are_octal_strings() {
    assert_eq!(super::parse_mode("0640"), Some(0o640));
    assert_eq!(super::parse_mode("755"), Some(0o755));
    assert_eq!(super::parse_mode("0999"), None);
    assert_eq!(super::parse_mode("17777"), None);
    let got = problems("version: 1\nfiles:\n  /etc/x: { content: a, mode: 640 }\n");
    assert!(
        got[0].contains("files.\"/etc/x\".mode: invalid type: integer"),
        "{got:?}"
    );
}

#[test]
fn sysctl_keys_and_values_are_checked() {
    let ok = "version: 1\nsettings:\n  sysctl:\n    net.ipv4.ip_forward: 1\n    net.ipv4.tcp_rmem: \"4096  87380\t6291456\"\n";
    assert_eq!(problems(ok), Vec::<String>::new());
    let got = problems("version: 1\nsettings:\n  sysctl:\n    ip_forward: 1\n    net..x: 1\n    net.ipv4.a: \"\"\n");
    assert!(
        got[0].starts_with(
            "server.yaml:4:5: settings.sysctl.ip_forward: \"ip_forward\" is not a sysctl key"
        ),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("server.yaml:5:5: settings.sysctl.\"net..x\":"),
        "{got:?}"
    );
    assert!(got[2].contains("one non-empty line"), "{got:?}");
    let got = problems("version: 1\nfiles:\n  /etc/sysctl.d/90-strackt.conf: { content: x }\n  /etc/groups.conf: { content: x }\n");
    assert_eq!(
        got.len(),
        1,
        "only the sysctl file is refused, /etc/groups.conf is not /etc/group: {got:?}"
    );
    assert!(got[0].contains("settings.sysctl"), "{got:?}");
}

#[test]
fn firewall_ports_and_networks_are_checked() {
    let ok = "version: 1\nfirewall:\n  input: drop\n  allow:\n    - { port: 22 }\n    - { port: \"8000-8100\", proto: udp, from: [10.0.0.0/8, \"2001:db8::/32\", 192.0.2.7] }\n";
    assert_eq!(problems(ok), Vec::<String>::new());
    let got = problems("version: 1\nfirewall:\n  allow:\n    - { port: 0 }\n    - { port: \"9-1\" }\n    - { port: 1, from: [10.0.0.1/8, 300.0.0.0/8] }\n    - { port: 1, proto: icmp }\n");
    assert!(
        got.iter()
            .any(|g| g
                .starts_with("server.yaml:7:25: firewall.allow[3].proto: unknown variant `icmp`")),
        "{got:#?}"
    );
    let fixed = problems("version: 1\nfirewall:\n  allow:\n    - { port: 0 }\n    - { port: \"9-1\" }\n    - { port: 1, from: [10.0.0.1/8, 300.0.0.0/8] }\n");
    assert_eq!(fixed.len(), 4, "{fixed:#?}");
    assert!(
        fixed[0].starts_with("server.yaml:4:15: firewall.allow[0].port: not a port"),
        "{fixed:#?}"
    );
    assert!(
        fixed[2].starts_with(
            "server.yaml:6:25: firewall.allow[2].from[0]: \"10.0.0.1/8\" is not a network"
        ),
        "{fixed:#?}"
    );
}

#[test]
fn receiver_section_is_checked() {
    let ok = "version: 1\nreceiver:\n  tls: { certificate: /etc/r.crt, key: /etc/r.key }\n  clients:\n    web1: { credentials: { secret: r_web1 } }\n  keep: { last: 4 }\n";
    assert_eq!(problems(ok), Vec::<String>::new());
    let got = problems("version: 1\nreceiver:\n  listen: \"8443\"\n  storage: srv/r\n  tls: { certificate: /etc/r.crt, key: r.key }\n  clients:\n    \"web 1\": { credentials: { secret: r_web1 } }\n  retention_after: soon\n");
    let expect = [
        "server.yaml:3:11: receiver.listen: \"8443\" is not ADDRESS:PORT",
        "server.yaml:4:12: receiver.storage: \"srv/r\" is not an absolute path",
        "server.yaml:5:40: receiver.tls.key: \"r.key\" is not an absolute path",
        "server.yaml:7:5: receiver.clients.\"web 1\": \"web 1\" is not a client name",
        "server.yaml:8:20: receiver.retention_after: \"soon\" is not a duration",
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for (g, e) in got.iter().zip(expect) {
        assert!(g.starts_with(e), "{g:?} does not start with {e:?}");
    }
}

#[test]
fn accounts_are_checked() {
    let ok = "version: 1\ngroups:\n  deploy: { gid: 2000 }\nusers:\n  alice:\n    uid: 2001\n    group: deploy\n    groups: [adm]\n    shell: /bin/bash\n    ssh_keys: [\"ssh-ed25519 AAAAC3Nza alice@laptop\"]\n    password: { secret: alice_password }\n";
    assert_eq!(problems(ok), Vec::<String>::new());
    let bad = "version: 1\ngroups:\n  a: { gid: 5 }\n  b: { gid: 5 }\nusers:\n  Alice: { uid: 7 }\n  bob: { uid: 7, shell: bash, ssh_keys: [\"not a key\"], password: { secret: \"../x\" } }\n";
    let got = problems(bad);
    for want in [
        "server.yaml:4:13: groups.b.gid: gid 5 is also the gid of group \"a\"",
        "server.yaml:6:3: users.Alice: \"Alice\" is not a user name",
        "server.yaml:7:15: users.bob.uid: uid 7 is also the uid of user \"Alice\"",
        "server.yaml:7:25: users.bob.shell: \"bash\" is not an absolute path",
        "server.yaml:7:42: users.bob.ssh_keys[0]: not an SSH public key line",
        "server.yaml:7:76: users.bob.password.secret: \"../x\" is not a secret name",
    ] {
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "missing {want:?} in {got:#?}"
        );
    }
}

#[test]
fn packages_are_checked() {
    assert_eq!(problems("version: 1\npackages:\n  hello: \"2.10-3\"\n  curl: latest\n  libfoo2: \"1:2.3~rc1+dfsg-1\"\n"), Vec::<String>::new());
    let got = problems("version: 1\npackages:\n  Hello: \"1\"\n  curl: \"newest\"\n");
    assert!(
        got[0]
            .starts_with("server.yaml:3:3: packages.Hello: \"Hello\" is not a Debian package name"),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("server.yaml:4:9: packages.curl: \"newest\" is not a Debian version"),
        "{got:?}"
    );
    let got = problems("version: 1\npackages:\n  curl: 7\n");
    assert!(
        got[0].contains("packages.curl: invalid type: integer"),
        "{got:?}"
    );
}

#[test]
fn strackt_never_manages_itself() {
    let got = problems("version: 1\nservices:\n  strackt: { exec: /bin/true }\n");
    assert!(got[0].contains("never manages its own unit"), "{got:?}");
}

#[test]
fn restart_on_must_name_a_managed_file() {
    let got =
        problems("version: 1\nservices:\n  a: { exec: /bin/true, restart_on: [/etc/nope] }\n");
    assert!(
        got[0].starts_with("server.yaml:3:38: services.a.restart_on[0]:"),
        "{got:?}"
    );
}
