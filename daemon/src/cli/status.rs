//! `strackt status --check`: what a monitor must see.

/// What `strackt status --check` reports as a problem, from the daemon's status: anything a
/// monitoring script should page someone for.
pub(super) fn status_problems(
    status: &serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let mut problems = vec![];
    if status["health"] == "failed" {
        problems.push("health: the last verification failed".to_string());
    }
    if let Some(p) = status["definition_problem"].as_str() {
        problems.push(format!("definition not applied: {p}"));
    }
    // History or a generation's row went unwritten: what `strackt history` shows is short.
    if let Some(p) = status["record_problem"].as_str() {
        problems.push(format!("state database: {p}"));
    }
    let updates = &status["updates"];
    if let Some(e) = updates["error"].as_str() {
        problems.push(format!("the last update check failed: {e}"));
    }
    if updates["security"].as_u64().is_some_and(|n| n > 0) {
        problems.push(format!(
            "{} security update(s) pending (`strackt updates`)",
            updates["security"]
        ));
    }
    // A run more than an hour behind its schedule: the daemon was down, or runs hang.
    let overdue = |next: &str| {
        chrono::DateTime::parse_from_rfc3339(next)
            .is_ok_and(|t| now - t.with_timezone(&chrono::Utc) > chrono::Duration::hours(1))
    };
    if let Some(backups) = status["backups"].as_object() {
        for (app, b) in backups {
            if b["last_outcome"] == "failed" {
                let why = b["last_error"].as_str().unwrap_or("no reason recorded");
                problems.push(format!("backup {app}: the last run failed: {why}"));
            }
            if b["next_run"].as_str().is_some_and(overdue) {
                problems.push(format!(
                    "backup {app}: overdue since {}",
                    b["next_run"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_check_names_what_a_monitor_must_see_and_nothing_else() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let healthy = serde_json::json!({
            "health": "ok",
            "definition_problem": null,
            "updates": { "pending": 3, "security": 0 },
            "backups": { "shop": { "last_outcome": "success", "next_run": "2026-12-02T11:30:00Z" } },
        });
        assert_eq!(status_problems(&healthy, now), Vec::<String>::new());
        let unwell = serde_json::json!({
            "health": "failed",
            "definition_problem": "the definition on disk failed",
            "record_problem": "recording operation 7 in the operations log: disk full",
            "updates": { "pending": 3, "security": 2 },
            "backups": {
                "shop": { "last_outcome": "failed", "last_error": "bucket unreachable" },
                "blog": { "last_outcome": "success", "next_run": "2026-12-02T10:59:00Z" },
            },
        });
        let problems = status_problems(&unwell, now);
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(
            problems
                .iter()
                .any(|p| p
                    == "state database: recording operation 7 in the operations log: disk full")
        );
        assert!(problems.iter().any(|p| p.contains("2 security update(s)")));
        assert!(problems
            .iter()
            .any(|p| p.contains("shop: the last run failed: bucket unreachable")));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("backup blog: overdue")));
    }
}
