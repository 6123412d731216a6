//! Fuzzing `parse`, the entry point of `strackt check`, inside `cargo test`: mutated real
//! definitions and generated YAML trees, a bounded number of cases (a few seconds), and a
//! regression set of inputs that once took seconds. Every input must come back — no panic —
//! within [`BOUND`]. The same entry point is fuzzed without a bound by `daemon/fuzz/`.

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::parse;

/// The longest any one definition may take to be answered.
const BOUND: Duration = Duration::from_secs(1);

/// CPU time of this thread: what the parser costs, whatever else the machine is doing (wall
/// time on a loaded 2-core CI machine says more about the neighbours than about the parser).
fn cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Parse `text` as `strackt check` does and return how long it took (the larger of CPU time
/// and a tenth of wall time, so a parser stuck waiting would still show). A panic fails the test.
fn answer(text: &str) -> Duration {
    let (start, wall) = (cpu_time(), Instant::now());
    let result = parse(text, Path::new("fuzz.yaml"));
    let took = cpu_time().saturating_sub(start).max(wall.elapsed() / 10);
    if let Err(e) = result {
        // Every refusal names a position.
        assert!(!e.problems.is_empty());
        for p in &e.problems {
            assert!(p.line >= 1 && p.column >= 1, "{p:?}");
        }
    }
    took
}

fn seeds() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../definitions");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .expect("definitions/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .collect();
    out.push(
        "version: 1\nusers:\n  shop: { system: true, home: /srv/shop }\napps:\n  shop:\n    repo: /srv/git/shop.git\n    path: /srv/shop\n    user: shop\n    shared: [storage/uploads, .env]\n    settings: { A: b, K: { secret: k } }\n    database: { engine: postgresql, name: shop, user: shop, password: { secret: db } }\n    requires: [postgresql.service]\n    steps: { install: \"sh x\", timeout: 15m }\n    service: { exec: /usr/bin/app, listen: \"127.0.0.1:8000\", health: /health }\nbackups:\n  shop:\n    database: true\n    paths: [storage/uploads]\n    to: { s3: { endpoint: \"https://s3.example.com\", bucket: b, credentials: { secret: s3 } } }\nreceiver:\n  tls: { certificate: /etc/r.crt, key: /etc/r.key }\n  clients:\n    web1: { credentials: { secret: r } }\n"
            .into(),
    );
    out
}

/// Pieces of YAML and of dangerous values spliced into seeds.
const PIECES: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "#",
    "&a ",
    "*a",
    "!!str ",
    "|\n",
    ">\n",
    "'",
    "\"",
    "\\",
    "\0",
    "..",
    "/../",
    "//",
    "~",
    "? ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "<<: *a",
    "0",
    "-1",
    "4294967295",
    "1e99",
    "100years",
    "@",
    ".service",
    "%h",
    "\u{7f}",
    "é",
    "\t",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, &'static str),
    Delete(usize, usize),
    Repeat(usize, usize, usize),
    Byte(usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), prop::sample::select(PIECES)).prop_map(|(at, p)| Edit::Insert(at, p)),
        (any::<usize>(), 0usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), 1usize..20, 1usize..200).prop_map(|(at, n, k)| Edit::Repeat(at, n, k)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Byte(at, b)),
    ]
}

/// Apply edits on character boundaries (the input of `parse` is text).
fn mutate(seed: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match *e {
            Edit::Insert(at, piece) => {
                let at = at % len;
                chars.splice(at..at, piece.chars());
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            Edit::Repeat(at, n, k) => {
                let at = at % len;
                let end = (at + n).min(chars.len());
                let piece: Vec<char> = chars[at.min(end)..end].to_vec();
                let copies: Vec<char> = piece
                    .iter()
                    .copied()
                    .cycle()
                    .take(piece.len() * k)
                    .collect();
                chars.splice(end..end, copies);
            }
            Edit::Byte(at, b) => {
                let at = at % len;
                if let Some(c) = chars.get_mut(at) {
                    *c = char::from(b);
                }
            }
        }
    }
    chars.into_iter().collect()
}

/// Keys strackt knows, so generated trees reach the validator, not only the structural pass.
const KEYS: &[&str] = &[
    "version", "strackt", "files", "services", "users", "groups", "apps", "backups", "receiver",
    "settings", "packages", "firewall", "path", "home", "user", "exec", "after", "requires",
    "shared", "secret", "listen", "content", "mode", "unit", "repo", "service", "database",
    "health", "within", "interval", "settle", "/etc/x", "/srv/a", "shop", "hello", "uid", "gid",
];

const VALUES: &[&str] = &[
    "1",
    "0",
    "/srv/shop",
    "//etc",
    "/srv/..",
    "../../etc/shadow",
    "a\nb",
    "x\0",
    "-x",
    "127.0.0.1:0",
    "0.0.0.0:80",
    "100years",
    "0s",
    "cron.service",
    "a@.service",
    "/var/lib/strackt",
    ".strackt/env",
    "\"4755\"",
    "4294967295",
    "root",
    "",
];

fn yaml_tree() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(VALUES).prop_map(|v| format!("{v:?}"));
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    })
}

fn run(cases: u32, strategy: impl Strategy<Value = String>) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |text| {
        let took = answer(&text);
        prop_assert!(
            took < BOUND,
            "took {took:?} for a {}-byte input",
            text.len()
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn mutated_definitions_are_answered_quickly_without_panics() {
    let seeds = seeds();
    run(
        1000,
        (
            prop::sample::select(seeds),
            prop::collection::vec(edit(), 1..12),
        )
            .prop_map(|(seed, edits)| mutate(&seed, &edits)),
    );
}

#[test]
fn generated_trees_are_answered_quickly_without_panics() {
    run(
        300,
        (
            yaml_tree(),
            prop::sample::select(&["apps", "services", "users", "files", "receiver"][..]),
        )
            .prop_map(|(tree, section)| {
                format!("version: 1\n{section}: {tree}\nstrackt: {tree}\n")
            }),
    );
}

/// Inputs that once took seconds or could exhaust the stack: each refused (or accepted) well
/// within the bound. The large-but-flat ones are sized for this unoptimised test build (about
/// ten times slower than the release binary, which answers the 1 MiB versions in well under a
/// second).
fn regressions() -> Vec<(&'static str, String)> {
    let block: String = (0..2000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let many_files: String = (0..5_000)
        .map(|i| format!("  /etc/f{i}: {{ content: x }}\n"))
        .collect();
    vec![
        ("64 KB of [", "[".repeat(64 * 1024)),
        (
            "100,000 top-level keys",
            (0..100_000).map(|i| format!("k{i}: 1\n")).collect(),
        ),
        (
            "300,000 flow items",
            format!("version: 1\nx: [{}]\n", "a, ".repeat(300_000)),
        ),
        ("64 KB of {", "{".repeat(64 * 1024)),
        ("nested flow mappings", "{a: ".repeat(20_000)),
        ("deep block nesting", block),
        ("deep sequence nesting", "- ".repeat(30_000)),
        (
            "[ after a quote in a plain scalar",
            format!("a: it's\nb: {}", "[".repeat(60_000)),
        ),
        (
            "over 1 MiB",
            format!("version: 1\n#{}", "x".repeat(1024 * 1024)),
        ),
        (
            "one huge file content",
            format!(
                "version: 1\nfiles:\n  /etc/x: {{ content: \"{}\" }}\n",
                "x".repeat(250_000)
            ),
        ),
        ("5,000 files", format!("version: 1\nfiles:\n{many_files}")),
        (
            "anchors and aliases",
            format!(
                "version: 1\na: &a [x, x, x, x]\n{}",
                (0..2000)
                    .map(|i| format!("b{i}: [*a, *a, *a]\n"))
                    .collect::<String>()
            ),
        ),
    ]
}

#[test]
fn regressions_are_answered_within_the_bound() {
    let mut slow = Vec::new();
    for (what, text) in regressions() {
        let took = answer(&text);
        eprintln!("{what}: {took:?}");
        if took >= BOUND {
            slow.push(format!("{what}: took {took:?}"));
        }
    }
    assert!(slow.is_empty(), "{slow:?}");
}
