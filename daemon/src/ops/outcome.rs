//! How an operation and a step ended, as values: [`Outcome`] for operations ("success") and
//! [`StepOutcome`] for steps ("ok"). The two spellings of success stay on disk and on the wire
//! exactly as they always were (the state database, `/status`, `--json`, `/metrics` and the
//! dashboard read them), but inside the daemon they are two types that cannot be mixed up.
//!
//! Owns the two types and their spellings (through `state::spelled!`); must not know what an
//! outcome means to any caller.

use serde::{Deserialize, Serialize};

/// How an operation ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Still running (or, in a database a crash left behind, until startup marks it).
    Running,
    /// Done as asked.
    Success,
    /// Stopped on a failure.
    Failed,
    /// Failed and the previous generation (or release) was put back.
    RolledBack,
    /// strackt stopped during it.
    Interrupted,
}

/// How a step ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepOutcome {
    /// Still running.
    Running,
    /// Done.
    Ok,
    /// Failed.
    Failed,
    /// Not run (an earlier step failed, or a hold said not to).
    Skipped,
    /// Would run: a preview's step (`strackt plan`), never in the log.
    Planned,
}

crate::state::spelled!(Outcome, "operation outcome", {
    Running => "running",
    Success => "success",
    Failed => "failed",
    RolledBack => "rolled-back",
    Interrupted => "interrupted",
});

crate::state::spelled!(StepOutcome, "step outcome", {
    Running => "running",
    Ok => "ok",
    Failed => "failed",
    Skipped => "skipped",
    Planned => "planned",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The database, `/status`, `--json`, `/metrics` and the dashboard all carry these exact
    /// strings; changing one breaks every reader of an older record.
    #[test]
    fn outcomes_keep_their_spellings_everywhere() {
        let ops = ["running", "success", "failed", "rolled-back", "interrupted"];
        let steps = ["running", "ok", "failed", "skipped", "planned"];
        let conn = rusqlite::Connection::open_in_memory().expect("sqlite");
        for (&o, want) in Outcome::ALL.iter().zip(ops) {
            assert_eq!(o.to_string(), want);
            assert_eq!(
                serde_json::to_string(&o).expect("json"),
                format!("\"{want}\"")
            );
            assert_eq!(
                serde_json::from_str::<Outcome>(&format!("\"{want}\"")).expect("json"),
                o
            );
            let stored: String = conn.query_row("SELECT ?1", [o], |r| r.get(0)).expect("sql");
            assert_eq!(stored, want);
            let read: Outcome = conn
                .query_row("SELECT ?1", [want], |r| r.get(0))
                .expect("sql");
            assert_eq!(read, o);
            assert_eq!(maud::html! { (o) }.into_string(), want);
        }
        for (&o, want) in StepOutcome::ALL.iter().zip(steps) {
            assert_eq!(o.to_string(), want);
            assert_eq!(
                serde_json::to_string(&o).expect("json"),
                format!("\"{want}\"")
            );
            let read: StepOutcome = conn
                .query_row("SELECT ?1", [want], |r| r.get(0))
                .expect("sql");
            assert_eq!(read, o);
        }
        // The other type's success is not this one's.
        let wrong = conn.query_row("SELECT 'ok'", [], |r| r.get::<_, Outcome>(0));
        assert!(wrong.is_err(), "{wrong:?}");
    }
}
