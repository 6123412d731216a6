//! What the operations log must never keep: secret values and the userinfo of URLs.
//!
//! Every text written to the `steps`, `operations` and `releases` tables passes through
//! [`Redactor::apply`] first, so neither `state.db` nor any view of it holds a secret. The
//! secret values are read again at each write from strackt's secrets directory (every
//! `{ secret: NAME }` of the definition lives there) and from the backup vault, and every value
//! seen since the daemon started is kept in memory too, so a secret removed from disk while an
//! operation that used it still runs is still redacted.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What replaces a secret value or a URL's userinfo.
pub const MASK: &str = "***";
/// Shorter values are not treated as secrets: masking every `ab` of a build log hides
/// everything and protects nothing.
const MIN_SECRET_LEN: usize = 4;
/// Larger files are not secrets strackt hands out (and are not read whole).
const MAX_SECRET_FILE: u64 = 64 * 1024;
/// Files read from the secrets directory at most.
const MAX_SECRET_FILES: usize = 4096;

/// Masks secret values and URL userinfo in text about to be stored.
#[derive(Debug, Default)]
pub struct Redactor {
    /// The secrets directory, and single files (the vault key), read at each write.
    dir: Option<PathBuf>,
    files: Vec<PathBuf>,
    /// Every value seen so far (never stored anywhere).
    known: RefCell<BTreeSet<String>>,
}

impl Redactor {
    /// Read secret values from every file of `dir` and from `files`.
    pub fn from_sources(dir: &Path, files: &[PathBuf]) -> Redactor {
        Redactor {
            dir: Some(dir.to_path_buf()),
            files: files.to_vec(),
            known: RefCell::default(),
        }
    }

    /// Redact also these values (tests, or values known another way).
    pub fn add_values<'a>(&self, values: impl IntoIterator<Item = &'a str>) {
        let mut known = self.known.borrow_mut();
        for v in values {
            add_value(&mut known, v);
        }
    }

    /// Re-read the sources, keeping what was seen before.
    fn refresh(&self) {
        let mut paths: Vec<PathBuf> = self.files.clone();
        if let Some(dir) = &self.dir {
            // Listed through `host::tree` too: the directory is reached as its files are (a
            // link followed only where root alone could have put it).
            if let Ok(names) = crate::host::tree::Dir::open(dir).and_then(|d| d.entries()) {
                paths.extend(names.iter().take(MAX_SECRET_FILES).map(|n| dir.join(n)));
            }
        }
        let mut known = self.known.borrow_mut();
        for path in paths {
            // Through `host::tree`: only regular files, a link followed only where root alone
            // could have put it.
            let Ok(Some(mut file)) = crate::host::tree::open_file(&path) else {
                continue;
            };
            if file.metadata().map_or(true, |m| m.len() > MAX_SECRET_FILE) {
                continue;
            }
            let mut text = String::new();
            if std::io::Read::read_to_string(&mut file, &mut text).is_ok() {
                add_value(&mut known, &text);
            }
        }
    }

    /// `text` with every secret value and every URL's userinfo replaced by [`MASK`].
    pub fn apply(&self, text: &str) -> String {
        self.refresh();
        self.apply_known(text)
    }

    /// `apply` without re-reading the sources (for several texts written together).
    pub fn apply_known(&self, text: &str) -> String {
        let known = self.known.borrow();
        // Longest first, so a value containing another is masked whole.
        let mut values: Vec<&String> = known.iter().collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let mut out = text.to_string();
        for v in values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        mask_userinfo(&out)
    }

    /// `apply` on an optional text.
    pub fn apply_opt(&self, text: Option<&str>) -> Option<String> {
        text.map(|t| self.apply_known(t))
    }

    /// Re-read the sources once before several `apply_known`.
    pub fn prepare(&self) {
        self.refresh();
    }
}

/// Add a secret file's content: the whole value, each line, the value of `KEY=VALUE` lines and
/// the password of `USER:PASSWORD` lines, each also percent-encoded (as in `DATABASE_URL`).
fn add_value(known: &mut BTreeSet<String>, text: &str) {
    let whole = text.strip_suffix('\n').unwrap_or(text);
    let mut parts = vec![whole.to_string(), whole.trim().to_string()];
    for line in whole.lines() {
        let line = line.trim();
        parts.push(line.to_string());
        if let Some((_, v)) = line.split_once('=') {
            parts.push(v.trim().to_string());
        }
        if let Some((_, v)) = line.split_once(':') {
            parts.push(v.to_string());
        }
    }
    for p in parts {
        if p.chars().count() < MIN_SECRET_LEN {
            continue;
        }
        let encoded = url_encode(&p);
        if encoded != p {
            known.insert(encoded);
        }
        known.insert(p);
    }
}

/// Percent-encode everything but unreserved characters (as `DATABASE_URL` is written).
pub(crate) fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Replace the userinfo of every `scheme://userinfo@host` in `text` by [`MASK`].
pub fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the path, query, fragment, a quote or whitespace.
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(i) if i > 0 => {
                out.push_str(MASK);
                out.push_str(&authority[i..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_of_urls_is_masked() {
        assert_eq!(
            mask_userinfo("fatal: https://deploy:tok-123@git.example.com/shop.git failed"),
            "fatal: https://***@git.example.com/shop.git failed"
        );
        assert_eq!(
            mask_userinfo("'https://tok@h:8443' and postgresql://u:p%40w@db:5432/x?y"),
            "'https://***@h:8443' and postgresql://***@db:5432/x?y"
        );
        let plain = "see https://example.com/a@b and user@host:path, ://@x";
        assert_eq!(mask_userinfo(plain), plain);
        assert_eq!(mask_userinfo("ends with s3://k:s@"), "ends with s3://***@");
    }

    #[test]
    fn every_value_of_every_secret_file_is_masked() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("app_key"), "key-sesame-1\n").expect("write");
        std::fs::write(
            dir.path().join("s3"),
            "AWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=wJalr/XUtn+FEMI\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("receiver"), "web1:hunter2hunter\n").expect("write");
        std::fs::write(dir.path().join("db"), "p@ss word\n").expect("write");
        std::fs::write(dir.path().join("short"), "ab\n").expect("write");
        let vault = dir.path().join("vault-key");
        std::fs::write(&vault, "team-key-0123\n").expect("write");
        let r = Redactor::from_sources(&dir.path().join("."), &[vault]);
        let log = "key=key-sesame-1 id=AKIAEXAMPLE secret=wJalr/XUtn+FEMI pw=hunter2hunter \
                   url=postgresql://shop:p%40ss%20word@db/x raw=p@ss word team=team-key-0123 ab";
        let out = r.apply(log);
        for secret in [
            "key-sesame-1",
            "AKIAEXAMPLE",
            "wJalr/XUtn+FEMI",
            "hunter2hunter",
            "p%40ss%20word",
            "p@ss word",
            "team-key-0123",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.ends_with(" ab"), "short values are left: {out}");
        assert!(out.contains("url=postgresql://***@db/x"), "{out}");

        // A secret removed from disk stays masked for the daemon's lifetime.
        std::fs::remove_file(dir.path().join("app_key")).expect("rm");
        assert_eq!(r.apply("key-sesame-1"), MASK);
    }

    #[test]
    fn the_secrets_directory_is_reached_through_a_link_only_where_root_alone_could_put_it() {
        use std::os::unix::fs::{chown, symlink, PermissionsExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real-secrets");
        std::fs::create_dir(&real).expect("mkdir");
        std::fs::write(real.join("db"), "s3cret-value\n").expect("write");
        // An admin's `/etc/strackt/secrets -> /srv/secrets`: root's directory holds the link.
        let root_only = dir.path().join("etc");
        std::fs::create_dir(&root_only).expect("mkdir");
        std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        symlink(&real, root_only.join("secrets")).expect("link");
        let r = Redactor::from_sources(&root_only.join("secrets"), &[]);
        assert_eq!(r.apply("pw=s3cret-value"), "pw=***");
        // A link another user could have planted is not followed: nothing is read through it.
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        symlink(&real, theirs.join("secrets")).expect("link");
        chown(&theirs, Some(4242), Some(4242)).expect("chown");
        let r = Redactor::from_sources(&theirs.join("secrets"), &[]);
        assert_eq!(r.apply("pw=s3cret-value"), "pw=s3cret-value");
    }
}
