//! daemon/updates/assess — the rules of `updates` and `upgrade`, pure: what apt offers
//! beyond the pins, the report, which updates an upgrade picks, and what its operation says.
//! Must not: ask apt, read the clock, or touch the definition file.

use std::collections::BTreeMap;

use super::super::error::UpdateError;
use crate::host::packages::{compare_versions, Offer};
use crate::ops::{Operation, Outcome, StepOutcome, StepRecord};
pub use crate::status::{Candidate, PackageUpdate, UpdatesReport, Upgrade, UpgradeOutcome};

/// Compare what apt offers with the pins. `locked` holds the running generation's exact
/// versions, which `latest` stands for.
pub fn assess(
    pins: &BTreeMap<String, String>,
    locked: &BTreeMap<String, String>,
    offers: &BTreeMap<String, Offer>,
) -> Vec<PackageUpdate> {
    pins.iter()
        .map(|(name, pinned)| {
            let version = if pinned == "latest" {
                locked.get(name).cloned()
            } else {
                Some(pinned.clone())
            };
            let offer = offers.get(name);
            let newer = |v: &str| {
                version
                    .as_deref()
                    .is_some_and(|cur| compare_versions(v, cur).is_gt())
            };
            let candidate = |v: &str, offer: &Offer| {
                let suites = offer.suites_of(v);
                Candidate {
                    version: v.to_string(),
                    security: suites.iter().any(|s| s.ends_with("-security")),
                    suites,
                }
            };
            let newest = offer.and_then(|o| {
                o.candidate
                    .as_deref()
                    .filter(|c| newer(c))
                    .map(|c| candidate(c, o))
            });
            let security = offer.and_then(|o| {
                o.versions
                    .iter()
                    .filter(|v| v.security() && newer(&v.version))
                    .max_by(|a, b| compare_versions(&a.version, &b.version))
                    .map(|v| candidate(&v.version, o))
            });
            PackageUpdate {
                name: name.clone(),
                pinned: pinned.clone(),
                version,
                newest,
                security,
            }
        })
        .collect()
}

/// The report of a check made at `checked`.
pub fn report(
    checked: &str,
    packages: Vec<PackageUpdate>,
    refreshed: bool,
    refresh_problem: Option<String>,
) -> UpdatesReport {
    UpdatesReport {
        checked: checked.to_string(),
        refreshed,
        refresh_problem,
        error: None,
        pending: packages
            .iter()
            .filter(|p| p.newest.is_some() || p.security.is_some())
            .count(),
        security: packages.iter().filter(|p| p.security.is_some()).count(),
        packages,
    }
}

/// What an upgrade moves: the named packages (all pinned ones when none are named) to their
/// newest version, or with `security_only` to their newest security version.
///
/// # Errors
/// Names that the definition does not pin, all of them.
pub fn select(
    packages: &[PackageUpdate],
    security_only: bool,
    names: &[String],
) -> Result<Vec<Upgrade>, UpdateError> {
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| !packages.iter().any(|p| &p.name == *n))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(UpdateError::NotChecked(unknown));
    }
    Ok(packages
        .iter()
        .filter(|p| names.is_empty() || names.contains(&p.name))
        .filter_map(|p| {
            let to = if security_only {
                p.security.as_ref()
            } else {
                p.newest.as_ref().or(p.security.as_ref())
            }?;
            Some(Upgrade {
                name: p.name.clone(),
                from: p.version.clone().unwrap_or_default(),
                to: to.version.clone(),
                security: to.security,
                latest: p.pinned == "latest",
                suites: to.suites.clone(),
            })
        })
        .collect())
}

/// `a 1.0 → 1.1, b 2 → 3`.
pub(super) fn listed(picks: &[Upgrade]) -> String {
    picks
        .iter()
        .map(|u| format!("{} {} → {}", u.name, u.from, u.to))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Write the upgrade into the pass's operation: one `upgrade` step per package (old → new,
/// security or not, from which suite) before the pass's steps, a `restore-definition` step
/// when the file was put back, the versions (and why, for a scheduled one) in the summary.
/// A pass that succeeded without landing on the upgrade's generation is a failed upgrade.
pub(super) fn record(
    op: &mut Operation,
    picks: &[Upgrade],
    landed: bool,
    restored: Option<&std::path::Path>,
    why: Option<&str>,
) {
    let mut steps: Vec<StepRecord> = picks
        .iter()
        .map(|u| {
            let kind = if u.security {
                "security update"
            } else {
                "update"
            };
            let from = if u.suites.is_empty() {
                String::new()
            } else {
                format!(" from {}", u.suites.join(", "))
            };
            StepRecord::new(
                "upgrade",
                &u.name,
                if landed {
                    StepOutcome::Ok
                } else {
                    StepOutcome::Failed
                },
                format!("{} → {} ({kind}{from})", u.from, u.to),
                false,
            )
        })
        .collect();
    steps.append(&mut op.steps);
    if let Some(path) = restored {
        steps.push(StepRecord::new(
            "restore-definition",
            &path.display().to_string(),
            StepOutcome::Ok,
            "put back to its previous bytes: the file says what runs",
            false,
        ));
    }
    op.steps = steps;
    op.summary = format!(
        "{}{}: {}{}",
        why.map(|w| format!("{w}: ")).unwrap_or_default(),
        listed(picks),
        op.summary,
        if restored.is_some() {
            "; definition file put back"
        } else {
            ""
        }
    );
    if !landed && op.outcome == Outcome::Success {
        // The pass ran but did not end on the upgrade's generation.
        op.outcome = Outcome::Failed;
        op.reason
            .get_or_insert_with(|| "the upgrade's generation is not the one running".into());
    }
}

/// `at` as the updates report writes times (RFC 3339, seconds, UTC).
pub(super) fn stamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;
    use crate::host::packages::Packages;

    fn pins(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
            .collect()
    }

    /// `strackt-demo` 1.0 (pinned), 1.1 in the security suite, 2.0 in the normal one;
    /// `tool` written `latest`, locked at 3, with 4 out; `calm` has nothing newer.
    fn host() -> FakeHost {
        let host = FakeHost::default();
        {
            let mut s = host.state();
            for (name, versions) in [
                ("strackt-demo", vec!["1.0", "1.1", "2.0"]),
                ("tool", vec!["3", "4"]),
                ("calm", vec!["1"]),
            ] {
                s.repository.insert(
                    name.into(),
                    versions.into_iter().map(String::from).collect(),
                );
            }
            s.security.insert(("strackt-demo".into(), "1.1".into()));
        }
        host
    }

    #[test]
    fn security_and_newest_candidates_are_told_apart() {
        let host = host();
        let names: Vec<String> = ["strackt-demo", "tool", "calm", "gone"]
            .map(String::from)
            .to_vec();
        let offers = host.candidates(&names).expect("offers");
        let got = assess(
            &pins(&[
                ("strackt-demo", "1.0"),
                ("tool", "latest"),
                ("calm", "1"),
                ("gone", "5"),
            ]),
            &pins(&[("tool", "3")]),
            &offers,
        );
        let demo = &got[2];
        assert_eq!(demo.name, "strackt-demo");
        assert_eq!(
            demo.newest,
            Some(Candidate {
                version: "2.0".into(),
                suites: vec!["bookworm".into()],
                security: false
            })
        );
        assert_eq!(
            demo.security,
            Some(Candidate {
                version: "1.1".into(),
                suites: vec!["bookworm-security".into()],
                security: true
            })
        );
        let tool = &got[3];
        assert_eq!(
            (tool.pinned.as_str(), tool.version.as_deref()),
            ("latest", Some("3"))
        );
        assert_eq!(tool.newest.as_ref().map(|c| c.version.as_str()), Some("4"));
        assert!(got[0].newest.is_none() && got[0].security.is_none(), "calm");
        assert!(got[1].newest.is_none(), "a package apt does not know");
        let r = report("2026-01-01T00:00:00Z", got.clone(), true, None);
        assert_eq!((r.pending, r.security), (2, 1));

        // Pinned at the security version: only the non-security 2.0 is left.
        let after = assess(&pins(&[("strackt-demo", "1.1")]), &BTreeMap::new(), &offers);
        assert!(after[0].security.is_none());
        assert_eq!(
            after[0].newest.as_ref().map(|c| c.version.as_str()),
            Some("2.0")
        );
        let r = report("t", after, true, None);
        assert_eq!((r.pending, r.security), (1, 0));
    }

    #[test]
    fn selection_follows_security_names_and_refuses_unknown_ones() {
        let host = host();
        let names: Vec<String> = ["strackt-demo", "tool", "calm"].map(String::from).to_vec();
        let offers = host.candidates(&names).expect("offers");
        let got = assess(
            &pins(&[("strackt-demo", "1.0"), ("tool", "latest"), ("calm", "1")]),
            &pins(&[("tool", "3")]),
            &offers,
        );
        let security = select(&got, true, &[]).expect("select");
        assert_eq!(security.len(), 1);
        assert_eq!(
            security[0].describe(),
            "strackt-demo 1.0 → 1.1 (bookworm-security)"
        );
        assert!(security[0].security && !security[0].latest);
        let all = select(&got, false, &[]).expect("select");
        let described: Vec<String> = all.iter().map(Upgrade::describe).collect();
        assert_eq!(
            described,
            [
                "strackt-demo 1.0 → 2.0 (bookworm)",
                "tool 3 → 4 (bookworm) [latest]"
            ]
        );
        let named = select(&got, false, &["tool".into()]).expect("select");
        assert_eq!(named.len(), 1);
        assert!(select(&got, false, &["calm".into()])
            .expect("select")
            .is_empty());
        let e =
            select(&got, false, &["nginx".into(), "tool".into(), "x".into()]).expect_err("unknown");
        assert!(!e.is_transient());
        let e = e.to_string();
        assert!(
            e.contains("nginx, x") && e.contains("nothing was changed"),
            "{e}"
        );
    }

    #[test]
    fn the_operation_tells_old_and_new_and_the_file_put_back() {
        let pick = Upgrade {
            name: "strackt-demo".into(),
            from: "1.1".into(),
            to: "3.0".into(),
            security: true,
            latest: false,
            suites: vec!["bookworm-security".into()],
        };
        let pass = Operation {
            id: 7,
            kind: "apply".into(),
            trigger: "security".into(),
            generation: Some(4),
            outcome: Outcome::RolledBack,
            reason: Some("installing packages: unmet dependencies".into()),
            summary: "rolled back to generation 3".into(),
            started: String::new(),
            finished: None,
            duration_ms: None,
            steps: vec![StepRecord::new(
                "flip",
                "generation 4",
                StepOutcome::Ok,
                "",
                false,
            )],
        };
        let mut op = pass.clone();
        let file = std::path::Path::new("/etc/strackt/server.yaml");
        record(
            &mut op,
            std::slice::from_ref(&pick),
            false,
            Some(file),
            Some("scheduled"),
        );
        let steps: Vec<(&str, &str, &str)> = op
            .steps
            .iter()
            .map(|s| (s.action.as_str(), s.outcome.as_str(), s.detail.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                (
                    "upgrade",
                    "failed",
                    "1.1 → 3.0 (security update from bookworm-security)"
                ),
                ("flip", "ok", ""),
                (
                    "restore-definition",
                    "ok",
                    "put back to its previous bytes: the file says what runs"
                ),
            ]
        );
        assert_eq!(
            op.summary,
            "scheduled: strackt-demo 1.1 → 3.0: rolled back to generation 3; definition file put back"
        );
        assert_eq!(op.outcome, Outcome::RolledBack);

        // A pass that succeeded elsewhere than on the upgrade's generation is no upgrade.
        let mut op = Operation {
            outcome: Outcome::Success,
            reason: None,
            ..pass
        };
        record(&mut op, &[pick], false, None, None);
        assert_eq!(op.outcome, Outcome::Failed);
        assert!(op.reason.is_some());
    }
}
