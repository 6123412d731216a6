//! A local apt archive inside a test host with a normal suite (`bookworm`) and a security suite
//! (`bookworm-security`), laid out and labelled like Debian's (`Origin`, `Label`, `Suite`,
//! `Codename` in signed-off `Release` files), so package versions stay under the test's
//! control and "comes from a security suite" is decided the way it is on a real server.
//!
//! The archive is `tests/tools/apt-archive` (the benchmarks use it too), copied into the host:
//! packages are built with `dpkg-deb` from a few files each; publishing again adds to what is
//! there and re-indexes both suites, then refreshes apt's lists.

use strackt_integration::{repo_root, Host, Res};

/// The archive's root inside the host.
pub const ROOT: &str = "/srv/apt";

/// Which suite a package is published in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// `bookworm` (`a=stable`, label `strackt-test`).
    Main,
    /// `bookworm-security` (`a=stable-security`, label `strackt-test-Security`).
    Security,
}

impl Suite {
    fn codename(self) -> &'static str {
        match self {
            Suite::Main => "bookworm",
            Suite::Security => "bookworm-security",
        }
    }
}

/// One package to build.
#[derive(Debug, Clone)]
pub struct Deb<'a> {
    /// Package name.
    pub name: &'a str,
    /// Version.
    pub version: &'a str,
    /// Where it is published.
    pub suite: Suite,
    /// `Depends:` (empty for none).
    pub depends: &'a str,
    /// Files it ships: absolute path → content.
    pub files: &'a [(&'a str, &'a str)],
}

/// Single-quote `s` for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Build `debs` into the archive, (re)index both suites, add them to apt's sources and refresh
/// apt's lists for them.
pub fn publish(h: &Host, debs: &[Deb]) -> Res {
    h.copy_in(
        &repo_root().join("tests/tools/apt-archive"),
        "/usr/local/bin/apt-archive",
    )?;
    let mut script = String::from("set -e\n");
    for deb in debs {
        let tree = format!("/tmp/deb-{}-{}", deb.name, deb.version);
        script += &format!("rm -rf {tree} && mkdir -p {tree}\n");
        for (path, content) in deb.files {
            script += &format!(
                "mkdir -p \"$(dirname {tree}{path})\" && printf '%s' {} > {tree}{path}\n",
                quote(content)
            );
        }
        script += &format!(
            "apt-archive build {} {} {} {} {tree} && rm -rf {tree}\n",
            quote(deb.name),
            quote(deb.version),
            deb.suite.codename(),
            quote(deb.depends)
        );
    }
    script += &format!("ROOT={ROOT} apt-archive index\n");
    h.sh_ok(&script)?;
    Ok(())
}
