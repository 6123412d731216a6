//! The definition layer's typed errors besides [`DefinitionError`](super::DefinitionError):
//! a schedule that is refused and a version edit that cannot be made in place. Each message is
//! the one `strackt check`, `strackt backup schedule` and `strackt upgrade` print. Nothing in a
//! definition passes by itself, so every error here is permanent: `is_transient` is false and
//! exists so callers treat every layer's errors alike.

use super::schedule::MIN_GAP_MINUTES;

/// Why a schedule (`backups.APP.schedule`, `strackt.updates.check`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not an IANA timezone.
    #[error("unknown timezone {0:?}; use an IANA name such as Europe/Berlin or UTC")]
    Timezone(String),
    /// Neither a preset nor five fields.
    #[error("{text:?} is neither a preset ({presets}) nor a 5-field cron expression (minute hour day-of-month month day-of-week)")]
    Form {
        /// As written.
        text: String,
        /// The presets, comma-separated.
        presets: String,
    },
    /// Five fields, but not a cron expression.
    #[error("{text:?} is not a valid cron expression: {message}")]
    Cron {
        /// As written.
        text: String,
        /// What the cron parser said.
        message: String,
    },
    /// Two runs closer than [`MIN_GAP_MINUTES`].
    #[error("{text:?} runs {gap} minutes apart (at {first} and {second}); scheduled work runs at most every {MIN_GAP_MINUTES} minutes")]
    TooClose {
        /// As written.
        text: String,
        /// The smallest gap, in minutes.
        gap: i64,
        /// The first of the two runs (date, time, zone).
        first: String,
        /// The second (time, zone).
        second: String,
    },
    /// No run at all (e.g. February 30th).
    #[error("{text:?} never runs")]
    Never {
        /// As written.
        text: String,
    },
}

impl ScheduleError {
    /// Always false: a schedule is refused until the definition changes.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// Why `strackt upgrade` cannot rewrite a version in the definition's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The text is not YAML (the position parser's message, located).
    #[error("{0}")]
    Syntax(String),
    /// The package has no version string under `packages:`.
    #[error("packages.{0}: not a version string in the definition")]
    NotAVersion(String),
    /// Written `latest`, which moves by itself when the generation is built.
    #[error("packages.{0}: written as `latest`, which is not rewritten")]
    Latest(String),
    /// Written in a form the edit does not rewrite (a block scalar, over several lines, …).
    #[error("packages.{package}: {why}")]
    Form {
        /// The package.
        package: String,
        /// What is wrong with how it is written.
        why: &'static str,
    },
    /// One package in the edits twice.
    #[error("a package is named twice")]
    Twice,
    /// The edited text is no longer YAML (a bug of the edit).
    #[error("the edit broke the YAML: {0}")]
    Broke(String),
    /// The edited text does not read back as the new version (a bug of the edit).
    #[error("packages.{package}: the edited text reads as {got}, not {new:?}")]
    ReadsBack {
        /// The package.
        package: String,
        /// What it reads as (debug-formatted, as shown).
        got: String,
        /// The version written.
        new: String,
    },
}

impl EditError {
    /// Always false: the same text fails the same way.
    pub fn is_transient(&self) -> bool {
        false
    }
}
