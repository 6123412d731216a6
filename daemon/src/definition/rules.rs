//! The rules every field of a definition shares: paths, names, unit names, secret names,
//! values that reach a unit file or a command line, ports and durations. One function per kind
//! of value, each `Err(message)` in the words the user sees; the sections call these and never
//! repeat a rule of their own.

use std::time::Duration;

/// strackt's own state: no managed path, app, home or receiver storage may be, contain or lie
/// inside one of these.
pub(crate) const STRACKT_TREES: &[&str] = &[
    "/var/lib/strackt",
    "/etc/strackt",
    "/var/cache/strackt",
    "/run/strackt",
];

/// The receiver's default storage: its own tree, not an app's or a user's.
pub(crate) const RECEIVER_TREE: &str = "/var/lib/strackt-receiver";

/// System trees: an app or a home inside one would have root-owned system files written by
/// (or handed to) an app user.
pub(crate) const SYSTEM_TREES: &[&str] = &[
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/boot",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/root",
    "/tmp",
    "/var/tmp",
    "/var/log",
    "/var/spool",
    "/var/mail",
    "/var/backups",
    "/var/lib/dpkg",
    "/var/lib/apt",
    "/var/lib/systemd",
    "/var/lib/postgresql",
    "/var/lib/mysql",
    "/var/cache/apt",
    "/lost+found",
];

/// Directories that hold many trees: never an app root or a home themselves.
pub(crate) const SHARED_PARENTS: &[&str] = &[
    "/",
    "/home",
    "/srv",
    "/opt",
    "/var",
    "/var/lib",
    "/var/cache",
    "/usr/local",
    "/mnt",
    "/media",
];

/// A value with a control character (newline, carriage return, NUL, escape, …) cannot reach a
/// unit file or a command line: a newline would start a new unit-file line.
pub(crate) fn one_line(text: &str) -> Result<(), String> {
    match text.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(format!(
            "contains the control character {c:?}; this value is written into a unit file or a command line, where it would start a new line or be cut off"
        )),
    }
}

/// Text that may span lines (a shell step, a file's content) but never holds a NUL.
pub(crate) fn no_nul(text: &str) -> Result<(), String> {
    if text.contains('\0') {
        Err("contains a NUL character, which no file, command or environment can hold".into())
    } else {
        Ok(())
    }
}

/// A value of an environment variable: one line (a newline would add a variable to the env
/// file or cut `Environment=`), tab allowed, at most 32 KiB.
pub(crate) fn env_value(text: &str) -> Result<(), String> {
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(format!(
            "contains the control character {c:?}; an environment value is one line"
        ));
    }
    if text.len() > 32 * 1024 {
        return Err(format!(
            "is {} bytes; an environment value is at most 32 KiB (put larger data in a file)",
            text.len()
        ));
    }
    Ok(())
}

/// An environment variable name.
pub(crate) fn env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an environment variable name (letters, digits and _, not starting with a digit)"
        ))
    }
}

/// An absolute, normalised path: starts with `/`, no `.`/`..` components, no `//`, no trailing
/// `/` (except `/` itself), no control characters, at most 4096 bytes.
pub(crate) fn absolute_path(path: &str) -> Result<(), String> {
    one_line(path)?;
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path"));
    }
    if path.len() > 4096 {
        return Err("is longer than 4096 bytes".into());
    }
    if path != "/"
        && (path.ends_with('/')
            || path.contains("//")
            || path.split('/').any(|c| c == "." || c == ".."))
    {
        return Err(format!(
            "{path:?} is not a normalised path (no `.` or `..` components, no `//`, no trailing `/`)"
        ));
    }
    Ok(())
}

/// Whether normalised absolute `path` is `tree` or lies inside it.
pub(crate) fn is_within(path: &str, tree: &str) -> bool {
    path == tree || tree == "/" || path.starts_with(&format!("{tree}/"))
}

/// Whether two normalised absolute paths are the same or one holds the other.
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    is_within(a, b) || is_within(b, a)
}

/// A normalised path that neither lies in nor holds strackt's own state.
pub(crate) fn outside_strackt(path: &str) -> Result<(), String> {
    match STRACKT_TREES.iter().find(|t| overlaps(path, t)) {
        Some(tree) => Err(format!(
            "{path:?} {} strackt's own state ({tree}), which only strackt writes",
            if is_within(path, tree) {
                "lies in"
            } else {
                "holds"
            }
        )),
        None => Ok(()),
    }
}

/// A directory that becomes one owner's tree (an app root, a home, a receiver's storage):
/// normalised, outside strackt's state and the system trees, and not a directory that holds
/// many trees (`/`, `/home`, `/srv`, …). `allowed` names trees this field may use anyway.
pub(crate) fn own_tree(path: &str, what: &str, allowed: &[&str]) -> Result<(), String> {
    absolute_path(path)?;
    outside_strackt(path)?;
    if let Some(parent) = SHARED_PARENTS.iter().find(|p| path == **p) {
        return Err(format!(
            "{what} cannot be {parent} itself: it holds other trees; use a directory of its own, e.g. /srv/NAME"
        ));
    }
    if let Some(tree) = SYSTEM_TREES
        .iter()
        .chain(std::iter::once(&RECEIVER_TREE))
        .filter(|t| !allowed.contains(t))
        .find(|t| overlaps(path, t))
    {
        return Err(format!(
            "{what} cannot be in or hold {tree}: that tree belongs to the system or to another service"
        ));
    }
    Ok(())
}

/// A path relative to a release (`shared:` entries): normalised, not reaching strackt's files
/// in the release (`.strackt`) or git's (`.git`).
pub(crate) fn release_relative(path: &str) -> Result<(), String> {
    one_line(path)?;
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.ends_with('/')
        || path.contains("//")
        || path.split('/').any(|c| c == "." || c == "..");
    if bad {
        return Err(format!(
            "{path:?} must be a normalised path inside the release, e.g. storage/uploads (no leading or trailing `/`, no `.`, `..` or `//`)"
        ));
    }
    let first = path.split('/').next().unwrap_or("");
    if first == ".strackt" || first == ".git" {
        return Err(format!(
            "{path:?} is inside {first}/, which belongs to strackt or git, not to the app's shared data"
        ));
    }
    Ok(())
}

/// The name of a secret file in `/etc/strackt/secrets/`: a plain file name, never a path.
pub(crate) fn secret_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a secret name: a file name in /etc/strackt/secrets (letters, digits, `_.-`, not starting with `.` or `-`; no `/`)"
        ))
    }
}

/// A value strackt passes as one argument to a program (git, psql, pg_dump, restic): one line,
/// not empty, and not starting with `-`, which the program would read as an option.
pub(crate) fn argument(text: &str) -> Result<(), String> {
    one_line(text)?;
    if text.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if text.starts_with('-') {
        return Err(format!(
            "{text:?} starts with `-`: it is passed to a program, which would read it as an option"
        ));
    }
    Ok(())
}

/// Unit types systemd knows.
const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "timer",
    "path",
    "mount",
    "automount",
    "swap",
    "device",
    "slice",
    "scope",
];

/// A full unit name as systemd checks it (`unit_name_is_valid`): at most 255 bytes, a known
/// type suffix, a prefix of `[A-Za-z0-9:_.\-]` not starting with `-` or `.`, and at most one
/// `@`, which (outside a template) must be followed by an instance. `types` limits the suffix.
pub(crate) fn unit_name(name: &str, types: &[&str]) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{name:?} is not a unit name ({why})"));
    one_line(name).or_else(|_| bad("control characters"))?;
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    let Some((stem, suffix)) = name.rsplit_once('.') else {
        return bad("no type suffix, e.g. .service");
    };
    let types: &[&str] = if types.is_empty() { UNIT_TYPES } else { types };
    if !types.contains(&suffix) {
        return bad(&format!("the type must be one of .{}", types.join(", .")));
    }
    let (prefix, instance) = match stem.split_once('@') {
        Some((p, i)) => (p, Some(i)),
        None => (stem, None),
    };
    if prefix.is_empty() {
        return bad("empty name before the type");
    }
    if prefix.starts_with(['-', '.']) {
        return bad("starts with `-` or `.`");
    }
    let charset = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.-\\".contains(c))
    };
    if !charset(prefix) {
        return bad("letters, digits and `:_.-\\` only");
    }
    if let Some(instance) = instance {
        if instance.is_empty() {
            return bad("a template with no instance, e.g. getty@tty1.service");
        }
        if !charset(instance) {
            return bad("letters, digits and `:_.-\\` only in the instance");
        }
    }
    Ok(())
}

/// A `services:` key: strackt writes `NAME.service`, so NAME is a unit prefix without a type
/// suffix and without a template `@`.
pub(crate) fn service_key(name: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "{name:?} is not a service name (letters, digits and `:_.-`, not starting with `-` or `.`, without the .service suffix or an `@`)"
        ))
    };
    if name.is_empty()
        || name.len() > 255 - ".service".len()
        || name.starts_with(['-', '.'])
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.-".contains(c))
    {
        return bad();
    }
    if UNIT_TYPES.iter().any(|t| name.ends_with(&format!(".{t}"))) {
        return bad();
    }
    Ok(())
}

/// A TCP port as written in an address: 1–65535.
pub(crate) fn port(port: u16) -> Result<(), String> {
    if port == 0 {
        Err("port 0 is not a port to listen on or connect to (1-65535)".into())
    } else {
        Ok(())
    }
}

/// `ADDRESS:PORT` with a port of 1–65535.
pub(crate) fn socket_addr(text: &str, example: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not ADDRESS:PORT, e.g. {example}"))?;
    port(addr.port())?;
    Ok(addr)
}

/// A duration between `min` and `max`; humantime's parse is checked arithmetic.
pub(crate) fn duration(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let show = |d: Duration| humantime::format_duration(d).to_string();
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. 30s, 5m, 1h"))?;
    if d < min {
        return Err(format!(
            "{text:?} is shorter than the minimum {}",
            show(min)
        ));
    }
    if d > max {
        return Err(format!("{text:?} is longer than the maximum {}", show(max)));
    }
    Ok(d)
}

/// A uid or gid strackt may set: not `(uid_t)-1` (4294967295), which chown and setuid read as
/// "leave unchanged", nor the 16-bit `-1` (65535), which systemd refuses; 0 only for root.
pub(crate) fn account_id(id: u32, kind: &str, name: &str) -> Result<(), String> {
    if id == u32::MAX || id == 65535 {
        return Err(format!(
            "{kind} {id} is reserved ((uid_t)-1 means \"no change\" to the kernel); choose another"
        ));
    }
    if id == 0 && name != "root" {
        return Err(format!(
            "{kind} 0 is root's: a second account with {kind} 0 would be root under another name"
        ));
    }
    Ok(())
}

/// A host name or an IP address (for a `HOST:PORT` or a database host).
pub(crate) fn host(text: &str) -> Result<(), String> {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if inner.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !text.is_empty() && text.len() <= 253 && text.trim_end_matches('.').split('.').all(label_ok)
    {
        Ok(())
    } else {
        Err(format!("{text:?} is not a host name or an IP address"))
    }
}

/// An `http://` or `https://` URL with a host (and no control characters or spaces).
pub(crate) fn url(text: &str, schemes: &[&str]) -> Result<(), String> {
    one_line(text)?;
    let want = schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ");
    let parsed = reqwest::Url::parse(text)
        .map_err(|e| format!("{text:?} is not a URL ({e}); write {want}…"))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(format!("{text:?} is not an {want} URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) || text.contains(char::is_whitespace) {
        return Err(format!("{text:?} has no host (write {want}HOST…)"));
    }
    Ok(())
}

/// A git branch name (`git check-ref-format --branch`, the parts that matter here).
pub(crate) fn branch(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.starts_with(['-', '/', '.'])
        || name.ends_with(['/', '.'])
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name == "@"
        || name.contains("/.")
        || name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if bad {
        Err(format!("{name:?} is not a git branch name"))
    } else {
        Ok(())
    }
}

/// A file mode strackt sets: no setuid/setgid (a root-owned managed program would hand root to
/// whoever runs it) and not world-writable (anyone could change what strackt keeps).
pub(crate) fn safe_mode(mode: u32) -> Result<(), String> {
    if mode & 0o6000 != 0 {
        return Err(format!(
            "{mode:04o} sets setuid/setgid: strackt refuses to create privileged programs (install them from a package)"
        ));
    }
    if mode & 0o002 != 0 {
        return Err(format!(
            "{mode:04o} is world-writable: any local user could change a file strackt manages"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_follow_systemd() {
        for ok in [
            "cron.service",
            "getty@tty1.service",
            "network-online.target",
            "a:b_c.d.socket",
            "dev-sda1.device",
        ] {
            assert_eq!(unit_name(ok, &[]), Ok(()), "{ok}");
        }
        let long = format!("{}.service", "a".repeat(250));
        for bad in [
            "",
            "a/b.service",
            "../x.service",
            "a b.service",
            ".hidden.service",
            "-x.service",
            "a\nb.service",
            "x\0.service",
            "é.service",
            "a;b.service",
            "a$b.service",
            "getty@.service",
            "cron",
            "cron.sevice",
            long.as_str(),
        ] {
            assert!(unit_name(bad, &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_must_be_normalised() {
        assert!(absolute_path("/srv/shop").is_ok());
        assert!(absolute_path("/").is_ok());
        for bad in [
            "srv",
            "//etc/x",
            "/./etc",
            "/srv/..",
            "/var//lib",
            "/srv/",
            "/a\nb",
            "/a\0b",
        ] {
            assert!(absolute_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_trees_stay_out_of_state_and_system_trees() {
        assert!(own_tree("/srv/shop", "x", &[]).is_ok());
        assert!(own_tree("/home/alice", "x", &[]).is_ok());
        for bad in [
            "/",
            "/var",
            "/var/lib",
            "/var/lib/strackt",
            "/var/lib/strackt/x",
            "/etc",
            "/etc/systemd/system",
            "/root",
            "/home",
            "/usr/local",
            "/var/lib/postgresql/15",
            "/var/lib/strackt-receiver",
        ] {
            assert!(own_tree(bad, "x", &[]).is_err(), "{bad:?}");
        }
        assert!(own_tree("/var/lib/strackt-receiver", "x", &[RECEIVER_TREE]).is_ok());
    }

    #[test]
    fn durations_are_bounded() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(3600));
        assert!(duration("5m", min, max).is_ok());
        assert!(duration("0s", min, max).is_err());
        assert!(duration("100years", min, max).is_err());
        assert!(duration("99999999999999999999y", min, max).is_err());
        assert!(duration("soon", min, max).is_err());
    }
}
