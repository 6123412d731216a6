//! The `backups:` section: encrypted snapshots of an app's database and shared paths, on a
//! schedule, to the customer's S3-compatible bucket or a receiver on a server they own.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::parse::Problems;
use super::rules;
use super::schedule::Schedule;
use super::validate::{DAY, SECOND};
use super::{AppSpec, SecretRef, Seg};

/// Backups of one app (the key is the app's name in `apps:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSpec {
    /// Dump the app's database (`pg_dump`, streamed into the snapshot).
    #[serde(default)]
    pub database: bool,
    /// Shared paths of the app (entries of its `shared:`) to include, e.g. `storage/uploads`.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Where snapshots go: exactly one of `s3` and `receiver`.
    pub to: Destination,
    /// A preset (`15min`, `30min`, `hourly`, `daily`, `weekly`) or a 5-field cron expression;
    /// at most every 15 minutes (default `daily`: 03:00).
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// IANA timezone the schedule is read in (default `UTC`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Snapshots kept (restic's `forget` policy); nothing set keeps everything.
    #[serde(default)]
    pub keep: KeepPolicy,
    /// When to run `strackt backup verify` on its own (same forms as `schedule`); default never.
    #[serde(default)]
    pub verify: Option<String>,
    /// A run that makes no progress for this long (an unreachable destination) is stopped and
    /// reported failed, with no snapshot written (default `2m`). restic opening the repository
    /// counts too: raise it for a very large repository on a slow link.
    #[serde(default)]
    #[schemars(regex(pattern = super::patterns::DURATION))]
    pub stalled_after: Option<String>,
}

impl BackupSpec {
    /// The stall limit.
    pub fn stall_limit(&self) -> std::time::Duration {
        self.stalled_after
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(std::time::Duration::from_secs(120))
    }
}

fn default_schedule() -> String {
    "daily".into()
}

fn default_timezone() -> String {
    "UTC".into()
}

/// A backup destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// An S3-compatible bucket (AWS, Hetzner, Backblaze B2, MinIO-style servers).
    #[serde(default)]
    pub s3: Option<S3Destination>,
    /// A `strackt receiver` on another server (restic's REST protocol over HTTPS).
    #[serde(default)]
    pub receiver: Option<ReceiverDestination>,
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Destination {
    /// `https://…` (or `http://…` for a server on a private network).
    pub endpoint: String,
    /// Region (default `us-east-1`).
    #[serde(default = "default_region")]
    #[schemars(regex(pattern = super::patterns::ARGUMENT))]
    pub region: String,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket, e.g. `web1/shop`.
    #[serde(default)]
    pub prefix: String,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-host style (default true,
    /// what most non-AWS servers need).
    #[serde(default = "yes")]
    pub path_style: bool,
    /// Secret file with `AWS_ACCESS_KEY_ID=…` and `AWS_SECRET_ACCESS_KEY=…` lines.
    pub credentials: SecretRef,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn yes() -> bool {
    true
}

/// A receiver on a server the customer owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiverDestination {
    /// `https://host:port/`.
    pub url: String,
    /// Secret file with `USER:PASSWORD` for this server.
    pub credentials: SecretRef,
    /// CA certificate (PEM) the receiver's certificate is checked against, when it is not
    /// signed by a public CA.
    #[serde(default)]
    #[schemars(regex(pattern = super::patterns::ABSOLUTE_PATH))]
    pub ca: Option<String>,
}

/// How many snapshots to keep, restic style.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeepPolicy {
    /// The newest N.
    #[serde(default)]
    pub last: Option<u32>,
    /// The newest per hour, for N hours.
    #[serde(default)]
    pub hourly: Option<u32>,
    /// The newest per day, for N days.
    #[serde(default)]
    pub daily: Option<u32>,
    /// The newest per week, for N weeks.
    #[serde(default)]
    pub weekly: Option<u32>,
    /// The newest per month, for N months.
    #[serde(default)]
    pub monthly: Option<u32>,
}

impl KeepPolicy {
    /// Each count at most 1,000,000, and not all of them 0 (which would forget every snapshot).
    pub(crate) fn check(&self) -> Result<(), String> {
        let set: Vec<u32> = [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
        ]
        .into_iter()
        .flatten()
        .collect();
        if set.iter().any(|n| *n > 1_000_000) {
            return Err("a count above 1,000,000; leave it out to keep everything".into());
        }
        if !set.is_empty() && set.iter().all(|n| *n == 0) {
            return Err(
                "every count is 0, which keeps no snapshot at all; leave `keep:` out to keep everything"
                    .into(),
            );
        }
        Ok(())
    }

    /// restic `forget` flags; empty when nothing is set (keep everything).
    pub fn restic_flags(&self) -> Vec<String> {
        [
            ("--keep-last", self.last),
            ("--keep-hourly", self.hourly),
            ("--keep-daily", self.daily),
            ("--keep-weekly", self.weekly),
            ("--keep-monthly", self.monthly),
        ]
        .iter()
        .filter_map(|(flag, n)| n.map(|n| format!("{flag}={n}")))
        .collect()
    }
}

pub(crate) fn check_backups(
    backups: &BTreeMap<String, BackupSpec>,
    apps: &BTreeMap<String, AppSpec>,
    problems: &mut Problems<'_>,
) {
    for (name, b) in backups {
        let at = |fields: &[&str]| {
            let mut p = vec![Seg::Key("backups".into()), Seg::Key(name.clone())];
            p.extend(fields.iter().map(|f| Seg::Key((*f).to_string())));
            p
        };
        let Some(app) = apps.get(name) else {
            problems.at_key(
                &at(&[]),
                format!("no app `{name}` under `apps:`; backups are of an app's database and shared paths"),
            );
            continue;
        };
        if b.database && app.database.is_none() {
            problems.at(
                &at(&["database"]),
                format!("app `{name}` has no `database:`"),
            );
        }
        for (i, path) in b.paths.iter().enumerate() {
            let mut p = at(&["paths"]);
            p.push(Seg::Index(i));
            if b.paths[..i].contains(path) {
                problems.at(&p, format!("{path:?} is named twice"));
            } else if !app.shared.contains(path) {
                problems.at(
                    &p,
                    format!(
                        "{path:?} is not one of app `{name}`'s shared paths ({:?})",
                        app.shared
                    ),
                );
            }
        }
        if !b.database && b.paths.is_empty() {
            problems.at(
                &at(&[]),
                "nothing to back up: set `database: true` and/or `paths:`",
            );
        }
        match (&b.to.s3, &b.to.receiver) {
            (Some(s3), None) => {
                if let Err(e) = rules::url(&s3.endpoint, &["https", "http"]) {
                    problems.at(
                        &at(&["to", "s3", "endpoint"]),
                        format!("{e}, e.g. https://fsn1.your-objectstorage.com"),
                    );
                }
                if !is_bucket_name(&s3.bucket) {
                    problems.at(
                        &at(&["to", "s3", "bucket"]),
                        format!("{:?} is not a bucket name (3-63 letters, digits, `.-_`, starting and ending with a letter or digit; use `prefix:` for a path)", s3.bucket),
                    );
                }
                if let Err(e) = rules::argument(&s3.region) {
                    problems.at(&at(&["to", "s3", "region"]), e);
                }
                let prefix_ok = rules::one_line(&s3.prefix).is_ok()
                    && (s3.prefix.is_empty()
                        || (!s3.prefix.starts_with(['-', '/'])
                            && !s3.prefix.contains(char::is_whitespace)
                            && s3
                                .prefix
                                .split('/')
                                .all(|c| !c.is_empty() && c != "." && c != "..")));
                if !prefix_ok {
                    problems.at(
                        &at(&["to", "s3", "prefix"]),
                        format!("{:?} is not a key prefix (e.g. web1/shop: no spaces, no `.`/`..` or empty parts, not starting with `-` or `/`)", s3.prefix),
                    );
                }
                if let Err(e) = rules::secret_name(&s3.credentials.secret) {
                    problems.at(&at(&["to", "s3", "credentials", "secret"]), e);
                }
            }
            (None, Some(r)) => {
                if let Err(e) = rules::url(&r.url, &["https"]) {
                    problems.at(
                        &at(&["to", "receiver", "url"]),
                        format!("{e} (receivers always use TLS)"),
                    );
                }
                if let Err(e) = rules::secret_name(&r.credentials.secret) {
                    problems.at(&at(&["to", "receiver", "credentials", "secret"]), e);
                }
                if let Some(ca) = &r.ca {
                    if let Err(e) = rules::absolute_path(ca) {
                        problems.at(&at(&["to", "receiver", "ca"]), e);
                    }
                }
            }
            _ => problems.at(&at(&["to"]), "exactly one of `s3:` and `receiver:`"),
        }
        if let Err(e) = b.keep.check() {
            problems.at(&at(&["keep"]), e);
        }
        if let Some(Err(e)) = b
            .stalled_after
            .as_deref()
            .map(|t| rules::duration(t, 5 * SECOND, DAY))
        {
            problems.at(&at(&["stalled_after"]), e);
        }
        // Both the timezone and the schedules are checked, each on its own.
        let tz = if b.timezone.parse::<chrono_tz::Tz>().is_ok() {
            b.timezone.as_str()
        } else {
            problems.at(
                &at(&["timezone"]),
                format!(
                    "unknown timezone {:?}; use an IANA name such as Europe/Berlin or UTC",
                    b.timezone
                ),
            );
            "UTC"
        };
        for (field, text) in [
            ("schedule", Some(&b.schedule)),
            ("verify", b.verify.as_ref()),
        ] {
            if let Some(Err(e)) = text.map(|t| Schedule::parse(t, tz)) {
                problems.at(&at(&[field]), e.to_string());
            }
        }
    }
}

/// S3 bucket naming (AWS's rules, with `_` that some compatible servers allow).
fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        && !name.contains("..")
}
