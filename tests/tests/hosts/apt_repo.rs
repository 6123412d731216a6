//! A local apt archive inside a test host with a normal suite (`bookworm`) and a security suite
//! (`bookworm-security`), laid out and labelled like Debian's (`Origin`, `Label`, `Suite`,
//! `Codename` in signed-off `Release` files), so package versions stay under the test's
//! control and "comes from a security suite" is decided the way it is on a real server.
//!
//! Packages are built with `dpkg-deb` from a few files each; publishing again adds to what is
//! there and re-indexes both suites, then refreshes apt's lists.

use strackt_integration::{Host, Res};

/// The archive's root inside the host.
pub const ROOT: &str = "/srv/apt";
/// The `Origin:` of both suites (what an unattended-upgrades `Origins-Pattern` matches).
pub const ORIGIN: &str = "strackt-test";

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
    let mut script = String::from("set -e\n");
    for deb in debs {
        let dir = format!("/tmp/deb-{}-{}", deb.name, deb.version);
        script += &format!(
            "rm -rf {dir} && mkdir -p {dir}/DEBIAN {ROOT}/pool/{suite}\n",
            suite = deb.suite.codename()
        );
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: strackt tests <t@example.org>\nSection: misc\nPriority: optional\n",
            deb.name, deb.version
        );
        if !deb.depends.is_empty() {
            control += &format!("Depends: {}\n", deb.depends);
        }
        control += &format!("Description: strackt test package {}\n", deb.name);
        script += &format!("printf '%s' {} > {dir}/DEBIAN/control\n", quote(&control));
        for (path, content) in deb.files {
            script += &format!(
                "mkdir -p \"$(dirname {dir}{path})\" && printf '%s' {} > {dir}{path}\n",
                quote(content)
            );
        }
        script += &format!(
            "dpkg-deb --build -Zgzip {dir} {ROOT}/pool/{suite}/{name}_{version}_all.deb >/dev/null && rm -rf {dir}\n",
            suite = deb.suite.codename(),
            name = deb.name,
            version = deb.version
        );
    }
    script += &format!(
        r#"index() {{ # codename suite label
  d={ROOT}/dists/$1; mkdir -p $d/main/binary-amd64 {ROOT}/pool/$1
  p=$d/main/binary-amd64/Packages; : > $p
  for deb in {ROOT}/pool/$1/*.deb; do
    [ -e "$deb" ] || continue
    dpkg-deb -f $deb >> $p
    printf 'Filename: pool/%s/%s\nSize: %s\nSHA256: %s\n\n' $1 $(basename $deb) $(stat -c %s $deb) $(sha256sum $deb | cut -d' ' -f1) >> $p
  done
  gzip -9nkf $p
  {{ printf 'Origin: {ORIGIN}\nLabel: %s\nSuite: %s\nCodename: %s\nDate: %s\nArchitectures: amd64\nComponents: main\nSHA256:\n' $3 $2 $1 "$(date -Ru)"
    for f in main/binary-amd64/Packages main/binary-amd64/Packages.gz; do
      printf ' %s %s %s\n' $(sha256sum $d/$f | cut -d' ' -f1) $(stat -c %s $d/$f) $f; done; }} > $d/Release
}}
index bookworm stable {ORIGIN}
index bookworm-security stable-security {ORIGIN}-Security
printf 'deb [trusted=yes] file:{ROOT} bookworm main\ndeb [trusted=yes] file:{ROOT} bookworm-security main\n' > /etc/apt/sources.list.d/strackt-test.list
apt-get update -qq -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/strackt-test.list -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
"#
    );
    h.sh_ok(&script)?;
    Ok(())
}
