//! api/ — how users reach the daemon: a root-only Unix socket with full control (the CLI), and
//! read-only HTTP (JSON, and an HTML dashboard) on loopback. Nothing mutates over TCP.

pub mod control;
pub mod dashboard;
pub mod http;

use serde::{Deserialize, Serialize};

pub use crate::status::DefinitionText;

/// A request on the control socket (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum ControlRequest {
    /// Run a pass now and wait for it.
    Apply {
        /// Switch back unless `confirm` arrives within this many seconds.
        #[serde(default)]
        confirm_within: Option<u64>,
    },
    /// Keep the generation an `apply --confirm-within` switched to.
    Confirm,
    /// Show what the next pass would do; with `definition`, what applying that text would do
    /// (nothing is saved).
    Plan {
        /// The definition to plan instead of the file's.
        #[serde(default)]
        definition: Option<DefinitionText>,
    },
    /// `strackt edit`: save this definition text over the file, unless the file changed since
    /// the edit began, and run a pass on it; waits for the pass.
    Save {
        /// The new text (the file name in it is only for messages).
        definition: DefinitionText,
        /// SHA-256 of the file's bytes when the edit began (`None`: there was no file).
        base_sha256: Option<String>,
    },
    /// What differs between two generations (default: the previous and the current).
    Diff {
        /// The old side.
        #[serde(default)]
        from: Option<u64>,
        /// The new side.
        #[serde(default)]
        to: Option<u64>,
    },
    /// Switch to an earlier generation.
    Rollback {
        /// Target generation (default: the previous).
        id: Option<u64>,
    },
    /// Start or end experiment mode.
    Hold {
        /// What to do.
        change: crate::status::HoldChange,
    },
    /// Start a deploy; answers with its operation id once preflight passed.
    Deploy {
        /// The app.
        app: String,
        /// Branch (default: the app's `branch`).
        #[serde(default)]
        branch: Option<String>,
    },
    /// An app's releases.
    Releases {
        /// The app.
        app: String,
    },
    /// Switch an app back to an earlier release and wait.
    RollbackRelease {
        /// The app.
        app: String,
        /// Target release (default: the one live before).
        #[serde(default)]
        id: Option<u64>,
        /// Also restore the database dump taken before the later migration.
        #[serde(default)]
        with_database: bool,
    },
    /// Start a backup run; answers with its operation id.
    BackupRun {
        /// The app.
        app: String,
    },
    /// Start a verification of the app's backups; answers with its operation id.
    BackupVerify {
        /// The app.
        app: String,
    },
    /// The backup runs of an app at its destination.
    BackupList {
        /// The app.
        app: String,
        /// Only runs taken on this server.
        #[serde(default)]
        server: Option<String>,
    },
    /// Start restoring a backup run onto this server; answers with its operation id.
    Restore {
        /// The app.
        app: String,
        /// The run (`strackt backup list`).
        run: String,
        /// Deploy the branch tip rather than the commit recorded with the run.
        #[serde(default)]
        latest: bool,
    },
    /// Start rebuilding a lost server onto this one from its backups; answers with the
    /// operation id.
    Rebuild(crate::rebuild::RebuildRequest),
    /// Refresh apt's lists and show what is newer than the pinned packages.
    Updates,
    /// Rewrite pinned versions in the definition to newer ones and apply it; waits for the pass.
    Upgrade {
        /// Only versions from a security suite.
        #[serde(default)]
        security: bool,
        /// Only these packages (default: every pinned one with an update).
        #[serde(default)]
        packages: Vec<String>,
    },
    /// The daemon's status.
    Status,
    /// The generations.
    Generations,
    /// The operations log.
    History {
        /// Only this operation.
        operation: Option<i64>,
    },
    /// What the steps of an operation printed, masked, after line `after` (the CLI following
    /// it; never served over HTTP).
    Output {
        /// The operation.
        operation: i64,
        /// The last line the follower has.
        #[serde(default)]
        after: u64,
    },
}

/// The answer (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
}
