//! How an operation and a step ended, as values: [`Outcome`] for operations ("success") and
//! [`StepOutcome`] for steps ("ok"). The two spellings of success stay on disk and on the wire
//! exactly as they always were (the state database, `/status`, `--json`, `/metrics` and the
//! dashboard read them), but inside the daemon they are two types that cannot be mixed up.
//!
//! Owns the strings and their parsing; must not know what an outcome means to any caller.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
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

impl Outcome {
    /// Every outcome.
    const ALL: [Outcome; 5] = [
        Outcome::Running,
        Outcome::Success,
        Outcome::Failed,
        Outcome::RolledBack,
        Outcome::Interrupted,
    ];

    /// The stored and shown spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled-back",
            Outcome::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl StepOutcome {
    /// Every outcome.
    const ALL: [StepOutcome; 5] = [
        StepOutcome::Running,
        StepOutcome::Ok,
        StepOutcome::Failed,
        StepOutcome::Skipped,
        StepOutcome::Planned,
    ];

    /// The stored and shown spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Running => "running",
            StepOutcome::Ok => "ok",
            StepOutcome::Failed => "failed",
            StepOutcome::Skipped => "skipped",
            StepOutcome::Planned => "planned",
        }
    }

    fn parse(s: &str) -> Option<StepOutcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Display, SQLite text and maud markup, all through `as_str`: one spelling per outcome.
macro_rules! spelled {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        // A spelling this strackt does not know is a database it cannot read, said so with
        // the value, rather than a record shown with an outcome it does not have.
        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = value.as_str()?;
                <$t>::parse(s).ok_or_else(|| {
                    FromSqlError::Other(
                        format!("unknown outcome {s:?} in the operations log").into(),
                    )
                })
            }
        }

        impl maud::Render for $t {
            fn render_to(&self, buffer: &mut String) {
                buffer.push_str(self.as_str());
            }
        }
    };
}

spelled!(Outcome);
spelled!(StepOutcome);

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
        for (o, want) in Outcome::ALL.into_iter().zip(ops) {
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
        for (o, want) in StepOutcome::ALL.into_iter().zip(steps) {
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
