//! A generation's record → its content again (pure).
//!
//! Every generation's record (its definition text and its manifest, which holds the package
//! lock) is kept in the state database for good; retention only prunes directories. Rebuilding
//! a pruned directory does not need the rendered files stored twice: rendering is a pure
//! function of the definition text (no `source:` files, no host look-ups), and the only input
//! resolved at build time, the package lock, is in the manifest. So the text is rendered again
//! and the result must equal the recorded manifest hash for hash: a strackt whose rendering has
//! changed since refuses instead of building a different generation under the old id.

use std::path::Path;

use super::{render, GenerationError, Manifest, Rendered};
use crate::definition::parse;

/// The content of the generation recorded as `definition` and `manifest`, with the recorded
/// package lock (the `.deb` files may still have to be fetched).
///
/// # Errors
/// Why the record cannot be rebuilt identically ([`GenerationError::NoLongerValid`],
/// [`GenerationError::RendersDifferently`]).
pub fn render_again(definition: &str, manifest: &Manifest) -> Result<Rendered, GenerationError> {
    let def = parse(definition, Path::new("the recorded definition"))
        .map_err(GenerationError::NoLongerValid)?;
    let mut rendered = render(&def);
    rendered.manifest.id = manifest.id;
    rendered.manifest.created = manifest.created.clone();
    rendered.manifest.packages = manifest.packages.clone();
    let differ = differences(manifest, &rendered.manifest);
    if !differ.is_empty() {
        return Err(GenerationError::RendersDifferently(differ));
    }
    Ok(rendered)
}

/// The parts of two manifests that differ.
fn differences(want: &Manifest, got: &Manifest) -> Vec<&'static str> {
    let parts = [
        (
            "definition",
            want.definition_sha256 == got.definition_sha256,
        ),
        ("files", want.files == got.files),
        ("units", want.units == got.units),
        ("kernel parameters", want.sysctl == got.sysctl),
        ("firewall", want.firewall == got.firewall),
        ("groups", want.groups == got.groups),
        ("users", want.users == got.users),
    ];
    parts
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(part, _)| part)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::PackageLock;

    const DEF: &str = "version: 1\nfiles:\n  /etc/motd: { content: \"one\\n\" }\nservices:\n  a: { exec: /bin/sleep 1 }\npackages:\n  hello: latest\n";

    fn recorded(def: &str) -> Manifest {
        let mut m = render(&parse(def, Path::new("t")).expect("valid")).manifest;
        m.id = 4;
        m.created = "2026-01-01T00:00:00Z".into();
        m.packages.insert(
            "hello".into(),
            PackageLock {
                version: "2.10-3".into(),
                deb: "hello_2.10-3_amd64.deb".into(),
            },
        );
        m
    }

    #[test]
    fn a_record_rebuilds_to_the_same_generation_at_the_locked_versions() {
        let m = recorded(DEF);
        let r = render_again(DEF, &m).expect("rebuilds");
        assert_eq!(r.manifest, m);
        assert_eq!(r.files["/etc/motd"], b"one\n");
        assert_eq!(r.definition, DEF);
        assert_eq!(r.manifest.packages["hello"].version, "2.10-3");
    }

    #[test]
    fn a_record_that_renders_differently_is_refused_with_what_differs() {
        let mut m = recorded(DEF);
        m.files
            .get_mut("/etc/motd")
            .expect("motd")
            .sha256
            .replace_range(0..4, "0000");
        let e = render_again(DEF, &m).expect_err("refused");
        assert!(
            matches!(&e, GenerationError::RendersDifferently(p) if p == &["files"]),
            "{e}"
        );
        assert!(e.to_string().contains("different files"), "{e}");
        let e = render_again("version: 1\nfiles: 3\n", &m).expect_err("refused");
        assert!(matches!(e, GenerationError::NoLongerValid(_)), "{e}");
        assert!(e.to_string().contains("no longer validates"), "{e}");
    }
}
