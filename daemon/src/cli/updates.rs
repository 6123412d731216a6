//! `strackt updates` and `strackt upgrade`.

use super::control::{print_operation, request};
use crate::api::ControlRequest;
use crate::daemon::{self, Paths};
use crate::ops::Outcome;

/// `strackt updates`: exit 0 nothing pending, 2 pending, 1 error.
pub(super) fn updates(paths: &Paths, json: bool) -> anyhow::Result<i32> {
    let report: daemon::UpdatesReport = match request(paths, &ControlRequest::Updates)? {
        Ok(v) => serde_json::from_value(v)?,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    if let Some(p) = &report.refresh_problem {
        eprintln!(
            "warning: apt's package lists could not be refreshed; showing them as they were: {p}"
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", updates_table(&report));
    }
    Ok(if report.pending > 0 { 2 } else { 0 })
}

/// The report as a table, one row per pinned package, and a closing line.
fn updates_table(report: &daemon::UpdatesReport) -> String {
    let shown = |c: &Option<daemon::Candidate>| match c {
        None => "-".to_string(),
        Some(c) if c.suites.is_empty() => c.version.clone(),
        Some(c) => format!("{} ({})", c.version, c.suites.join(", ")),
    };
    let mut rows = vec![[
        "PACKAGE".to_string(),
        "PINNED".into(),
        "NEWEST".into(),
        "SECURITY UPDATE".into(),
    ]];
    for p in &report.packages {
        let pinned = match (&p.version, p.pinned.as_str()) {
            (Some(v), "latest") => format!("latest ({v})"),
            _ => p.pinned.clone(),
        };
        let mut newest = shown(&p.newest);
        if p.newest.as_ref().is_some_and(|c| c.security) {
            newest.push_str(" [security]");
        }
        rows.push([p.name.clone(), pinned, newest, shown(&p.security)]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    let mut out = String::new();
    for r in &rows {
        out += &format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    out += &match (report.pending, report.security) {
        (0, _) => format!(
            "no updates pending for the {} pinned packages (checked {})\n",
            report.packages.len(),
            report.checked
        ),
        (n, 0) => format!("{n} pending, none from a security suite: `strackt upgrade` applies them\n"),
        (n, s) => format!("{n} pending, {s} from a security suite: `strackt upgrade --security` applies those, `strackt upgrade` all\n"),
    };
    out
}

/// `strackt upgrade`: follows the pass like `apply`.
pub(super) fn upgrade(
    paths: &Paths,
    security: bool,
    packages: Vec<String>,
    json: bool,
) -> anyhow::Result<i32> {
    let outcome: daemon::UpgradeOutcome =
        match request(paths, &ControlRequest::Upgrade { security, packages })? {
            Ok(v) => serde_json::from_value(v)?,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(1);
            }
        };
    let ok = outcome
        .operation
        .as_ref()
        .is_none_or(|op| op.outcome == Outcome::Success);
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!("{}", outcome.message);
        if let Some(op) = &outcome.operation {
            print_operation(op, true);
        }
    }
    Ok(if ok { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_updates_table_marks_security_versions() {
        use daemon::{Candidate, PackageUpdate, UpdatesReport};
        let c = |v: &str, suite: &str| {
            Some(Candidate {
                version: v.into(),
                suites: vec![suite.into()],
                security: suite.ends_with("-security"),
            })
        };
        let report = UpdatesReport {
            checked: "2026-01-01T00:00:00Z".into(),
            refreshed: true,
            pending: 2,
            security: 1,
            packages: vec![
                PackageUpdate {
                    name: "strackt-demo".into(),
                    pinned: "1.0".into(),
                    version: Some("1.0".into()),
                    newest: c("2.0", "bookworm"),
                    security: c("1.1", "bookworm-security"),
                },
                PackageUpdate {
                    name: "tool".into(),
                    pinned: "latest".into(),
                    version: Some("3".into()),
                    newest: c("3.1", "bookworm-security"),
                    security: c("3.1", "bookworm-security"),
                },
                PackageUpdate {
                    name: "calm".into(),
                    pinned: "1".into(),
                    version: Some("1".into()),
                    newest: None,
                    security: None,
                },
            ],
            ..UpdatesReport::default()
        };
        assert_eq!(
            updates_table(&report),
            "PACKAGE       PINNED      NEWEST                              SECURITY UPDATE\n\
             strackt-demo  1.0         2.0 (bookworm)                      1.1 (bookworm-security)\n\
             tool          latest (3)  3.1 (bookworm-security) [security]  3.1 (bookworm-security)\n\
             calm          1           -                                   -\n\
             2 pending, 1 from a security suite: `strackt upgrade --security` applies those, `strackt upgrade` all\n"
        );
    }
}
