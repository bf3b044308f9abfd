//! `batch start --dry-run`: what a pass over a batch would do, mailbox by mailbox, found
//! through the pass's own planning ([`MailboxJob::plan_only`]) without writing anything,
//! neither to the target nor to the batch's state.
//!
//! [`MailboxJob::plan_only`]: crate::pass::mailbox_job::MailboxJob

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::batch::runner::{BatchRuntime, PlanningJob, PlanningJobs};
use crate::error::Error;
use crate::pass::mailbox_job::PassKind;
use crate::pass::mailbox_plan::MailboxPlan;

/// A mailbox that could not be planned, and why (one sentence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanFailure {
    pub email: String,
    pub error: String,
}

/// What a pass over a batch would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPlan {
    pub batch: String,
    /// The batch's status (unchanged by the dry run).
    pub status: String,
    pub source: String,
    pub target: String,
    /// Totals over the mailboxes.
    pub messages: u64,
    pub bytes: u64,
    pub too_large: u64,
    pub already_migrated: u64,
    pub folders_to_create: u64,
    pub mailboxes: Vec<MailboxPlan>,
    pub failed: Vec<PlanFailure>,
}

/// Plans every mailbox of `jobs`, as many at once as the endpoints let a pass migrate;
/// in the batch's order.
pub(crate) async fn plan_mailboxes(
    runtime: &BatchRuntime,
    jobs: &PlanningJobs,
    cancel: &CancellationToken,
) -> Vec<Result<MailboxPlan, PlanFailure>> {
    let store = runtime.store();
    let at_once = jobs.migrations.max(1);
    // Collected first: a stream over a borrowing closure is not `Send` enough for the
    // control socket's tasks.
    let plans: Vec<_> = jobs
        .jobs
        .iter()
        .map(|planned| plan_one(store, planned, cancel))
        .collect();
    futures::stream::iter(plans)
        .buffered(at_once)
        .collect()
        .await
}

async fn plan_one(
    store: &imapmirror_storage::Store,
    planned: &PlanningJob,
    cancel: &CancellationToken,
) -> Result<MailboxPlan, PlanFailure> {
    let failure = |e: &Error| PlanFailure {
        email: planned.email.clone(),
        error: e.to_string(),
    };
    match &planned.job {
        Ok((_, job)) => job
            .plan_only(store, planned.status.as_str(), cancel)
            .await
            .map_err(|e| failure(&e)),
        Err(e) => Err(failure(e)),
    }
}

/// Whether any mailbox of `jobs` would get its initial pass.
pub(crate) fn any_initial(jobs: &PlanningJobs) -> bool {
    jobs.jobs
        .iter()
        .any(|j| matches!(j.job, Ok((PassKind::Initial, _))))
}

/// The dry run of batch `name`.
pub async fn dry_run(
    runtime: &BatchRuntime,
    name: &str,
    cancel: &CancellationToken,
) -> Result<BatchPlan, Error> {
    let jobs = runtime.planning_jobs(name).await?;
    let s = &jobs.batch.settings;
    let mut plan = BatchPlan {
        batch: s.name.clone(),
        status: jobs.batch.status.as_str().to_owned(),
        source: s.source_endpoint.clone(),
        target: s.target_endpoint.clone(),
        messages: 0,
        bytes: 0,
        too_large: 0,
        already_migrated: 0,
        folders_to_create: 0,
        mailboxes: Vec::new(),
        failed: Vec::new(),
    };
    for result in plan_mailboxes(runtime, &jobs, cancel).await {
        match result {
            Ok(m) => {
                plan.messages += m.messages;
                plan.bytes += m.bytes;
                plan.too_large += m.too_large;
                plan.already_migrated += m.already_migrated;
                plan.folders_to_create += m.folders_to_create;
                plan.mailboxes.push(m);
            }
            Err(f) => plan.failed.push(f),
        }
    }
    if cancel.is_cancelled() {
        return Err(Error::Stopped {
            mailbox: format!("the dry run of batch {name}"),
        });
    }
    Ok(plan)
}
