//! The deploy's first phase: the preflight step, and the check that a commit asked for is on
//! the app's branch.
//!
//! Owns deciding, before anything is built, whether a deploy can run. It must not create a
//! release, write to the app's directories or touch its units or database.

use crate::host::Machine;
use std::path::Path;
use std::time::Duration;

use crate::definition::{AppSpec, ValidatedDefinition};
use crate::ops::Progress;
use preflight::Prepared;
use runner::RunAs;

use super::{argv, preflight, ran_step, runner, DeployError, Deployer};

impl<M: Machine> Deployer<M> {
    /// The preflight step: `Err` is [`DeployError::Preflight`], the reason with every
    /// problem, one per line.
    pub(super) async fn preflight(
        &self,
        p: &mut Progress,
        app: &str,
        branch: &str,
        def: &ValidatedDefinition,
    ) -> Result<Prepared, DeployError> {
        let seq = p.records().len();
        let checked = p
            .step("preflight", app, async {
                preflight::check(
                    app,
                    branch,
                    def,
                    &self.definition,
                    &self.secrets,
                    self.machine.as_ref(),
                )
                .await
                .map(|p| (p, String::new()))
                .map_err(|e| {
                    let n = e.problems.len();
                    (
                        format!("{n} thing(s) missing, nothing was started"),
                        e.to_string(),
                    )
                })
            })
            .await;
        checked.map_err(|reason| DeployError::Preflight {
            reason,
            details: p.records()[seq].output.clone().unwrap_or_default(),
        })
    }

    /// Whether commit `at` is on `app`'s branch, asked before a restore stops anything: the
    /// branch's history (no file contents where the server allows it) cloned into a scratch
    /// directory of the app's user, who reaches the repository with its own credentials.
    ///
    /// # Errors
    /// Not on the branch, or the repository cannot be read: the reason.
    pub(crate) async fn check_commit(
        &self,
        app: &str,
        spec: &AppSpec,
        at: &str,
    ) -> Result<(), DeployError> {
        let user = match &spec.user {
            Some(u) => RunAs::lookup(u).ok_or_else(|| DeployError::NoUser(u.clone()))?,
            None => RunAs::root(),
        };
        let git = preflight::git_env(app, spec, &user, self.machine.files())?;
        let limit = Duration::from_secs(10 * 60);
        let made = runner::run(
            self.machine.processes(),
            &argv(&["mktemp", "-d"]),
            Path::new("/"),
            &git,
            &user,
            limit,
        )
        .await;
        let scratch = made.stdout.trim().to_string();
        ran_step(made).map_err(|(e, _)| DeployError::GitScratch(e))?;
        let scratch_dir = Path::new(&scratch);
        let clone = argv(&["git", "clone", "--quiet", "--bare", "--filter=blob:none"])
            .into_iter()
            .chain(argv(&[
                "--single-branch",
                "--branch",
                &spec.branch,
                "--",
                &spec.repo,
            ]))
            .chain([format!("{scratch}/repo")])
            .collect::<Vec<_>>();
        let cloned = runner::run(
            self.machine.processes(),
            &clone,
            scratch_dir,
            &git,
            &user,
            limit,
        )
        .await;
        let result = if cloned.ok {
            let repo = scratch_dir.join("repo");
            let on = runner::run(
                self.machine.processes(),
                &argv(&["git", "merge-base", "--is-ancestor", at, "HEAD"]),
                &repo,
                &git,
                &user,
                limit,
            )
            .await;
            if on.ok {
                Ok(())
            } else {
                Err(DeployError::NotOnBranch {
                    commit: at.to_string(),
                    branch: spec.branch.clone(),
                    repo: spec.repo.clone(),
                })
            }
        } else {
            Err(DeployError::GitRead {
                branch: spec.branch.clone(),
                repo: spec.repo.clone(),
                why: cloned.failure.unwrap_or_default(),
            })
        };
        // Safe to ignore: the answer above stands either way, and what is left is the app
        // user's own scratch directory under the system's temporary directory (a clone of
        // what that user can read anyway), which nothing reads again.
        let _ = runner::run(
            self.machine.processes(),
            &argv(&["rm", "-rf", "--", &scratch]),
            Path::new("/"),
            &git,
            &user,
            limit,
        )
        .await;
        result
    }
}
