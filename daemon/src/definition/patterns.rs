//! The JSON Schema's side of the rules in `rules.rs` and `validate.rs`: each pattern here is
//! the part of one rule that a single field can show on its own, put into the published schema
//! by a `#[schemars(...)]` attribute on that field, so an editor with the schema refuses what
//! `strackt check` refuses. `schema_agreement.rs` runs one table of definitions through both.
//!
//! What the schema cannot say, and `strackt check` alone enforces (these stay out of the
//! agreement table):
//! - cross-field rules: `restart_on` names a file of `files:`, unique uids/gids/homes/listen
//!   addresses, an app's `user:` in `users:`, a uid/gid of 0 only for the account `root`,
//!   `listen` off loopback only with `listen_non_loopback`, `exec` xor `unit`, the unit-writing
//!   keys only with `exec`, exactly one health probe, exactly one backup destination, apps,
//!   homes, files and receiver storage not overlapping each other or strackt's and the system's
//!   trees, `backups:` naming apps and their `shared:` paths;
//! - bounds of durations (interval 1 s–1 day, settle ≤ 10 min, …): the schema checks the
//!   duration's syntax only;
//! - numeric values written as text: a port range `"LOW-HIGH"` with LOW ≤ HIGH ≤ 65535, a
//!   numeric owner/group within a uid's range, octets of an address ≤ 255, CIDR prefixes;
//! - what needs a parser: URLs, cron schedules and timezones, sizes, SSH key lines;
//! - byte lengths (an environment value ≤ 32 KiB is counted in bytes, a schema counts
//!   characters).

/// Characters that cannot reach a unit file or a command line (`rules::one_line`: Unicode
/// control characters, `char::is_control`).
macro_rules! control {
    () => {
        r"\x00-\x1f\x7f-\x9f"
    };
}

/// One normalised path component: not empty, not `.` or `..`, no `/`, no control character.
macro_rules! component {
    () => {
        concat!(
            r"(?:[^/.",
            control!(),
            r"][^/",
            control!(),
            r"]*|\.[^/.",
            control!(),
            r"][^/",
            control!(),
            r"]*|\.\.[^/",
            control!(),
            r"]+)"
        )
    };
}

/// A unit type suffix systemd knows (`rules::UNIT_TYPES`).
macro_rules! unit_types {
    () => {
        "service|socket|target|timer|path|mount|automount|swap|device|slice|scope"
    };
}

/// One line: no control character (`rules::one_line`).
pub(crate) const ONE_LINE: &str = concat!("^[^", control!(), "]*$");

/// An environment value: one line, tabs allowed (`rules::env_value`).
pub(crate) const ENV_VALUE: &str = r"^[^\x00-\x08\x0a-\x1f\x7f-\x9f]*$";

/// An absolute, normalised path (`rules::absolute_path`).
pub(crate) const ABSOLUTE_PATH: &str = concat!("^(?:/|(?:/", component!(), ")+)$");

/// A managed file: a normalised path under the allowed roots, outside the refused ones
/// (`validate::check_managed_path`).
pub(crate) const MANAGED_FILE: &str = concat!(
    r"^(?!/etc/(?:strackt|systemd/system)(?:/|$)|/etc/(?:passwd|shadow|group|gshadow|sysctl\.d/90-strackt\.conf)$)",
    "/(?:etc|usr/local/etc|usr/local/bin|usr/local/sbin|opt)(?:/",
    component!(),
    ")+$"
);

/// A path inside a release (`rules::release_relative`), not in `.strackt/` or `.git/`.
pub(crate) const RELEASE_RELATIVE: &str = concat!(
    r"^(?!(?:\.strackt|\.git)(?:/|$))",
    component!(),
    "(?:/",
    component!(),
    ")*$"
);

/// A command line written into a unit: one line, an absolute program path first.
pub(crate) const COMMAND: &str = concat!(r"^\s*/[^", control!(), "]*$");

/// A duration as humantime reads it (`30s`, `5m`, `1h 30m`, `1.5h`); its bounds are
/// `strackt check`'s.
pub(crate) const DURATION: &str = concat!(
    r"^\s*(?:[0-9][0-9\s]*(?:\.\s*[0-9][0-9\s]*)?\s*",
    "(?:nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)",
    r"\s*)+$"
);

/// A quoted octal mode, neither setuid/setgid nor world-writable (`validate::parse_mode`,
/// `rules::safe_mode`).
pub(crate) const MODE: &str = "^(?:0o)?(?:[0-7]{0,2}|[01][0-7]{2})[0145]$";

/// A user or group name as useradd takes it, or a numeric id (`validate::is_account_name`).
pub(crate) const ACCOUNT: &str = r"^(?:[0-9]+|(?=.{1,32}$)[a-z_][a-z0-9_-]*\$*)$";

/// A `users:`/`groups:` key: an account name, not all digits.
pub(crate) const ACCOUNT_KEY: &str = r"^(?=.{1,32}$)[a-z_][a-z0-9_-]*\$*$";

/// A `services:` key: a unit name's prefix without a type or `@` (`rules::service_key`).
pub(crate) const SERVICE_KEY: &str = concat!(
    r"^(?!.*\.(?:",
    unit_types!(),
    r")$)[A-Za-z0-9:_][A-Za-z0-9:_.-]{0,246}$"
);

/// A full unit name (`rules::unit_name`), any type.
pub(crate) const UNIT: &str = concat!(
    r"^(?=.{1,255}$)[A-Za-z0-9:_\\][A-Za-z0-9:_.\\-]*(?:@[A-Za-z0-9:_.\\-]+)?\.(?:",
    unit_types!(),
    ")$"
);

/// A unit a `unit:` service may name (`validate::UNIT_TYPES`).
pub(crate) const PROVIDED_UNIT: &str = concat!(
    r"^(?=.{1,255}$)[A-Za-z0-9:_\\][A-Za-z0-9:_.\\-]*(?:@[A-Za-z0-9:_.\\-]+)?",
    r"\.(?:service|socket|timer|path|target|mount)$"
);

/// An environment variable name (`rules::env_name`).
pub(crate) const ENV_NAME: &str = "^[A-Za-z_][A-Za-z0-9_]{0,127}$";

/// A secret's file name in /etc/strackt/secrets (`rules::secret_name`).
pub(crate) const SECRET: &str = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";

/// A PostgreSQL database or role name strackt manages (`databases::is_pg_name`).
pub(crate) const PG_NAME: &str = "^[a-z_][a-z0-9_]{0,62}$";

/// A Debian package name (policy 5.6.1).
pub(crate) const PACKAGE: &str = "^[a-z0-9][a-z0-9+.-]+$";

/// An exact Debian version (policy 5.6.12) or `latest`.
pub(crate) const PACKAGE_VERSION: &str = r"^(?:latest|(?!.*\.\.)[0-9][A-Za-z0-9.+~:-]*)$";

/// A sysctl key: dotted, at least two parts.
pub(crate) const SYSCTL_KEY: &str = "^[A-Za-z0-9_-]+(?:\\.[A-Za-z0-9_-]+)+$";

/// A value passed to a program as one argument (`rules::argument`): one line, not blank, not
/// starting with `-`.
pub(crate) const ARGUMENT: &str = concat!(r"^(?!-)(?=.*\S)[^", control!(), "]*$");

/// A GECOS comment: one line without `:`.
pub(crate) const COMMENT: &str = concat!("^[^:", control!(), "]*$");

/// A sysctl value written as text: one non-blank line, tabs allowed.
pub(crate) const SYSCTL_VALUE: &str = r"^(?=.*\S)[^\x00-\x08\x0a-\x1f\x7f-\x9f]*$";

/// A port range as text, `"8000-8100"` or `"22"` (that LOW ≤ HIGH ≤ 65535 is `check`'s).
pub(crate) const PORT_RANGE: &str = r"^\s*[0-9]+\s*(?:-\s*[0-9]+\s*)?$";

/// Text without a NUL (`rules::no_nul`).
pub(crate) const NO_NUL: &str = r"^[^\x00]*$";

/// An app's health path: starts with `/`, no whitespace or control character.
pub(crate) const HTTP_PATH: &str = concat!(r"^/[^\s", control!(), "]*$");

/// A receiver client's name (`receiver::is_client_name`).
pub(crate) const CLIENT: &str = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$";

/// A command run through a shell: one line that is not blank.
pub(crate) const NOT_BLANK_LINE: &str = concat!(r"^(?=.*\S)[^", control!(), "]*$");
