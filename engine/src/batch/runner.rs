//! Batches in motion: which mailboxes a pass covers, the per-endpoint concurrency slots
//! that hold across all batches, and a batch's status as its passes end.
//!
//! The store is the whole state machine, so a process that dies loses nothing:
//! - starting, syncing or completing a batch ([`mark_for_pass`]) sets the batch `Syncing`
//!   (`Completing`) and its mailboxes `Queued`;
//! - [`BatchRuntime::run_batch`] runs every `Queued` mailbox, and every `Syncing` one
//!   (a pass interrupted by a crash, resumed from its journal), until none is left, then
//!   sets the batch `Synced`, `Failed` or `Completed`;
//! - a mailbox waits in `Queued` until both its endpoints have a free slot:
//!   `max_concurrent_migrations` for initial passes, `max_concurrent_syncs` for
//!   incremental and final ones, per endpoint, shared by every batch of the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use imapmirror_storage::{
    BatchRecord, BatchStatus, Database, EndpointRecord, MailboxCredentials, MailboxId,
    MailboxRecord, MailboxStatus, Secret as StoredSecret, Store, StoreError, Timestamp,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch::notification::{Notification, Notifier, PassEvent};
use crate::batch::report::{BatchSummary, batch_summary};
use crate::batch::report_delivery;
use crate::endpoint::connection::{endpoint_access, pool_config};
use crate::endpoint::credentials::{EndpointAccess, Secret, source_login, target_login};
use crate::endpoint::pool::{EndpointPool, Role};
use crate::endpoint::rate_budget::{RateBudget, RateShare};
use crate::endpoint::reconnect_policy::ReconnectPolicy;
use crate::error::Error;
use crate::migration_file::MailboxRow;
use crate::pass::folder_plan::Exclusion;
use crate::pass::mailbox_job::{JobOptions, MailboxJob, PassKind};
use crate::pass::report::{PassSummary, Progress};

/// What a pass over a batch reports as it goes, for a progress display or a log.
#[derive(Debug, Clone)]
pub enum BatchEvent {
    /// The mailboxes this round covers (some may wait for a slot).
    Planned { batch: String, mailboxes: usize },
    /// A mailbox got its slots and its pass begins.
    MailboxStarted {
        batch: String,
        email: String,
        kind: PassKind,
    },
    /// Progress inside a mailbox's pass.
    Progress {
        batch: String,
        email: String,
        progress: Progress,
    },
    /// A mailbox's pass ended.
    MailboxFinished {
        batch: String,
        email: String,
        status: MailboxStatus,
        copied: u64,
        bytes: u64,
        skipped: u64,
        /// Source folder renames the pass followed on the target.
        folders_renamed: usize,
        error: Option<String>,
    },
}

/// Where [`BatchEvent`]s go.
pub type EventSink = Arc<dyn Fn(&BatchEvent) + Send + Sync>;

/// An event sink that drops everything.
pub fn no_events() -> EventSink {
    Arc::new(|_: &BatchEvent| {})
}

/// How a [`BatchRuntime::run_batch`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The batch's status afterwards.
    pub status: BatchStatus,
    /// Mailboxes whose last pass failed.
    pub mailboxes_failed: u64,
    /// True when the run was cut short (a stop, a removal or the process shutting down).
    pub interrupted: bool,
}

/// Settings of the runtime that are not per batch.
#[derive(Debug, Clone, Default)]
pub struct RunnerOptions {
    /// The job options every mailbox starts from (exclusions and limits come from the batch).
    pub job: JobOptions,
    /// How connecting and logging in to an endpoint is retried.
    pub connect_retry: ReconnectPolicy,
}

/// What a request asks of a batch's next pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassIntent {
    /// `batch start`: the initial pass, or the rest of it.
    Start,
    /// `batch sync`: an incremental pass over every mailbox now.
    Sync,
    /// `batch complete`: a final pass, then the batch is Completed.
    Complete,
}

fn state_err(action: String) -> impl FnOnce(StoreError) -> Error {
    move |source| Error::State { action, source }
}

/// Marks a batch for a pass (see the module docs). Returns the batch afterwards and how
/// many mailboxes were queued. Runs inside a storage job:
/// `store.run_value(move |db| mark_for_pass(db, &name, intent))`.
pub fn mark_for_pass(
    db: &Database,
    name: &str,
    intent: PassIntent,
) -> Result<(BatchRecord, usize), Error> {
    let batch = db
        .batch(name)
        .map_err(state_err(format!("looking up batch {name}")))?;
    let refuse = |action: &'static str, remedy: &'static str| Error::BatchState {
        batch: name.to_owned(),
        status: batch.status.as_str(),
        action,
        remedy,
    };
    let action = match intent {
        PassIntent::Start => "started",
        PassIntent::Sync => "synced",
        PassIntent::Complete => "completed",
    };
    match batch.status {
        BatchStatus::Completed => {
            return Err(refuse(
                action,
                "its users already use the target; add a new batch to migrate more",
            ));
        }
        BatchStatus::Completing => {
            return Err(refuse(
                action,
                "its final pass is under way; wait for it (batch status)",
            ));
        }
        BatchStatus::Syncing if intent != PassIntent::Start => {
            return Err(refuse(
                action,
                "a pass is under way; wait for it to finish (batch status) or stop it first",
            ));
        }
        _ => {}
    }
    let mailboxes = db
        .mailboxes(batch.id)
        .map_err(state_err(format!("reading the mailboxes of batch {name}")))?;
    let wanted = |m: &MailboxRecord| match intent {
        PassIntent::Start => !matches!(
            m.status,
            MailboxStatus::Synced
                | MailboxStatus::Completed
                | MailboxStatus::Queued
                | MailboxStatus::Syncing
        ),
        PassIntent::Sync | PassIntent::Complete => m.status != MailboxStatus::Completed,
    };
    let mut queued = 0;
    for m in mailboxes.iter().filter(|m| wanted(m)) {
        db.set_mailbox_status(m.id, MailboxStatus::Queued, None)
            .map_err(state_err(format!("queueing {}", m.row.email_address)))?;
        queued += 1;
    }
    // Waiting after the marking: the ones just queued and those already waiting.
    let pending = mailboxes
        .iter()
        .filter(|m| wanted(m) || matches!(m.status, MailboxStatus::Queued | MailboxStatus::Syncing))
        .count();
    let status = match intent {
        PassIntent::Complete => BatchStatus::Completing,
        _ if pending > 0 => BatchStatus::Syncing,
        // `start` on a batch whose mailboxes are all synced: nothing to do.
        _ => batch.status,
    };
    let now = Timestamp::now();
    let batch = db
        .update_batch(name, |b| {
            if b.status != status {
                b.status = status;
                b.status_changed = now;
                b.last_sync_started = Some(now);
            } else if queued > 0 {
                b.last_sync_started = Some(now);
            }
        })
        .map_err(state_err(format!("marking batch {name}")))?;
    Ok((batch, pending))
}

/// Stops a batch in the store: status `Stopped`, its waiting and running mailboxes
/// `Stopped`. The runtime's [`BatchRuntime::cancel_batch`] stops the work itself. Runs
/// inside a storage job.
pub fn mark_stopped(db: &Database, name: &str) -> Result<BatchRecord, Error> {
    let batch = db
        .batch(name)
        .map_err(state_err(format!("looking up batch {name}")))?;
    if matches!(batch.status, BatchStatus::Completed) {
        return Err(Error::BatchState {
            batch: name.to_owned(),
            status: batch.status.as_str(),
            action: "stopped",
            remedy: "it is finished; remove it when you no longer need its report",
        });
    }
    for m in db
        .mailboxes(batch.id)
        .map_err(state_err(format!("reading the mailboxes of batch {name}")))?
    {
        if matches!(m.status, MailboxStatus::Queued | MailboxStatus::Syncing) {
            db.set_mailbox_status(m.id, MailboxStatus::Stopped, None)
                .map_err(state_err(format!("stopping {}", m.row.email_address)))?;
        }
    }
    db.set_batch_status(name, BatchStatus::Stopped)
        .map_err(state_err(format!("stopping batch {name}")))
}

/// A stored endpoint a batch uses; an error that says how to add it back if it is gone.
fn endpoint_record(db: &Database, name: &str) -> Result<EndpointRecord, Error> {
    db.endpoint(name)
        .map_err(state_err(format!("reading endpoint {name}")))?
        .ok_or_else(|| Error::InvalidSetting {
            problem: format!("endpoint {name} no longer exists; add it again with `imapmirror endpoint add {name}`"),
        })
}

/// How a run of `batch` ends as the store has it now.
fn outcome(db: &Database, batch: &BatchRecord, interrupted: bool) -> Result<BatchOutcome, Error> {
    let failed = db
        .mailboxes(batch.id)
        .map_err(state_err(format!(
            "reading the mailboxes of batch {}",
            batch.settings.name
        )))?
        .iter()
        .filter(|m| m.status == MailboxStatus::Failed)
        .count() as u64;
    Ok(BatchOutcome {
        status: batch.status,
        mailboxes_failed: failed,
        interrupted,
    })
}

/// A batch's webhook notification as read in a storage job ([`notice`]), sent (or
/// logged) outside it by [`BatchRuntime::send_notice`].
#[allow(clippy::large_enum_variant)] // one per pass over a batch, moved once
enum Notice {
    /// The batch has no webhook URL.
    Nothing,
    Ready {
        url: StoredSecret,
        summary: BatchSummary,
    },
    NoUrl(StoreError),
    NoSummary(Error),
}

/// Reads what a notification about `batch` needs; runs inside a storage job.
fn notice(db: &Database, batch: &BatchRecord) -> Notice {
    let url = match db.batch_notify_url(&batch.settings.name) {
        Ok(Some(url)) => url,
        Ok(None) => return Notice::Nothing,
        Err(e) => return Notice::NoUrl(e),
    };
    match batch_summary(db, batch) {
        Ok(summary) => Notice::Ready { url, summary },
        Err(e) => Notice::NoSummary(e),
    }
}

/// What a round of a batch's run starts from.
#[allow(clippy::large_enum_variant)] // one per round, moved once
enum RoundStart {
    /// The batch is not (or no longer) `Syncing` or `Completing`.
    Done(BatchOutcome),
    /// The batch and its mailboxes.
    Run(BatchRecord, Vec<MailboxRecord>),
}

/// A batch's mailboxes as a pass would run them; see [`BatchRuntime::planning_jobs`].
pub struct PlanningJobs {
    pub batch: BatchRecord,
    /// In the batch's order.
    pub jobs: Vec<PlanningJob>,
    /// Mailboxes in an initial pass at once: the lower of both endpoints'
    /// `max_concurrent_migrations`.
    pub migrations: usize,
    /// The same for incremental passes (`max_concurrent_syncs`).
    pub syncs: usize,
    /// Folders of one mailbox synced at once.
    pub connections: usize,
}

/// One mailbox of [`PlanningJobs`].
pub struct PlanningJob {
    pub id: MailboxId,
    pub email: String,
    pub status: MailboxStatus,
    /// The kind of pass and the job, or why the mailbox cannot be planned (its stored
    /// credentials are unreadable, its login cannot be made).
    pub job: Result<(PassKind, MailboxJob), Error>,
}

/// The slots of one endpoint.
#[derive(Debug)]
struct EndpointSlots {
    migrations: Arc<Semaphore>,
    syncs: Arc<Semaphore>,
}

/// Runs batches; one per process, shared by the scheduler, the control socket and
/// `--wait`. Cheap to share in an `Arc`.
pub struct BatchRuntime {
    store: Store,
    options: RunnerOptions,
    notifier: Option<Notifier>,
    slots: Mutex<HashMap<String, Arc<EndpointSlots>>>,
    pools: Mutex<HashMap<(String, &'static str), Arc<EndpointPool>>>,
    /// Each endpoint's rate budget, shared by its pools on both sides. Kept when an
    /// endpoint is updated or forgotten: passes still running on the old pools and the
    /// new ones must draw from the one budget.
    budgets: Mutex<HashMap<String, Arc<RateBudget>>>,
    active: Mutex<HashMap<String, CancellationToken>>,
    /// Batches being stopped or removed: no run may start until the request is done.
    held: Mutex<HashMap<String, usize>>,
    shutdown: CancellationToken,
}

/// Keeps a batch from starting while a stop or removal changes it; see
/// [`BatchRuntime::hold`].
pub struct Hold<'a> {
    runtime: &'a BatchRuntime,
    name: String,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut held = lock(&self.runtime.held);
        if let Some(n) = held.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.name);
            }
        }
    }
}

impl std::fmt::Debug for BatchRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchRuntime")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves it consistent (single inserts and
    // removals), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes a batch from the active map when its run ends, however it ends.
struct ActiveGuard<'a> {
    runtime: &'a BatchRuntime,
    name: String,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        lock(&self.runtime.active).remove(&self.name);
    }
}

impl BatchRuntime {
    /// A runtime over `store`; `notifier` delivers the batches' webhooks.
    pub fn new(store: Store, options: RunnerOptions, notifier: Option<Notifier>) -> Self {
        BatchRuntime {
            store,
            options,
            notifier,
            slots: Mutex::new(HashMap::new()),
            pools: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Cancelled when the process stops taking work.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Stops taking new work and interrupts passes in flight; each journals what it had
    /// begun and its mailbox goes back to `Queued` for the next process.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// Whether a run of `batch` is in progress in this process.
    pub fn is_active(&self, batch: &str) -> bool {
        lock(&self.active).contains_key(batch)
    }

    /// The batches running now.
    pub fn active_batches(&self) -> Vec<String> {
        lock(&self.active).keys().cloned().collect()
    }

    /// Keeps `batch` from starting (the scheduler skips it, [`Self::run_batch`] refuses)
    /// until the returned guard is dropped: a stop or removal holds it, so that no run
    /// starts between interrupting the batch and changing its records.
    pub fn hold(&self, batch: &str) -> Hold<'_> {
        *lock(&self.held).entry(batch.to_owned()).or_insert(0) += 1;
        Hold {
            runtime: self,
            name: batch.to_owned(),
        }
    }

    /// Whether a stop or removal holds `batch` now.
    pub fn is_held(&self, batch: &str) -> bool {
        lock(&self.held).contains_key(batch)
    }

    /// Interrupts a running batch (stop, remove) and waits until its run has ended.
    pub async fn cancel_batch(&self, batch: &str) {
        let token = lock(&self.active).get(batch).cloned();
        if let Some(token) = token {
            token.cancel();
            while self.is_active(batch) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Forgets cached pools and slots of a removed endpoint.
    pub fn forget_endpoint(&self, name: &str) {
        lock(&self.slots).remove(name);
        lock(&self.pools).retain(|(n, _), _| n != name);
    }

    /// The rate budget of endpoint `name` in this process.
    pub fn rate_budget(&self, name: &str) -> Arc<RateBudget> {
        lock(&self.budgets)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(RateBudget::unlimited(name)))
            .clone()
    }

    fn slots_of(&self, record: &EndpointRecord) -> Arc<EndpointSlots> {
        let s = &record.settings;
        lock(&self.slots)
            .entry(s.name.clone())
            .or_insert_with(|| {
                Arc::new(EndpointSlots {
                    migrations: Arc::new(Semaphore::new(
                        s.max_concurrent_migrations.max(1) as usize
                    )),
                    syncs: Arc::new(Semaphore::new(s.max_concurrent_syncs.max(1) as usize)),
                })
            })
            .clone()
    }

    /// Connections one mailbox may hold on an endpoint: never more than its provider
    /// allows per account (Gmail: 15), when the endpoint names its provider.
    fn connections_of(&self, s: &imapmirror_storage::EndpointSettings) -> usize {
        let configured = s
            .connections_per_mailbox
            .map_or(self.options.job.connections, |n| n as usize)
            .max(1);
        let profile = crate::endpoint::provider_profile::Provider::resolve(
            s.provider,
            crate::endpoint::server_family::ServerFamily::Unknown,
        )
        .profile();
        profile.connections(u32::try_from(configured).unwrap_or(u32::MAX)) as usize
    }

    fn pool_of(&self, record: &EndpointRecord, role: Role) -> Result<Arc<EndpointPool>, Error> {
        let s = &record.settings;
        let key = (s.name.clone(), role.as_str());
        if let Some(p) = lock(&self.pools).get(&key) {
            return Ok(p.clone());
        }
        // Each mailbox holds up to `connections` sessions; the slots bound the mailboxes.
        let per_mailbox = self.connections_of(s);
        let mailboxes = s
            .max_concurrent_migrations
            .max(s.max_concurrent_syncs)
            .max(1) as usize;
        let config = pool_config(record, per_mailbox * mailboxes, self.options.connect_retry)?;
        if let Some(grant) = &config.oauth_grant {
            // Tokens outlive this process: the next run reuses a fresh one.
            grant.keep_in(self.store.clone());
        }
        let pool =
            Arc::new(EndpointPool::new(config, role)?.with_rate_budget(self.rate_budget(&s.name)));
        Ok(lock(&self.pools).entry(key).or_insert(pool).clone())
    }

    /// Runs every waiting mailbox of `name` until none is left (see the module docs),
    /// then sets the batch's status and sends its notification. Returns at once with the
    /// batch's status when it is not `Syncing` or `Completing`.
    pub async fn run_batch(&self, name: &str, events: EventSink) -> Result<BatchOutcome, Error> {
        let token = {
            let mut active = lock(&self.active);
            if self.is_held(name) {
                return Err(Error::BatchState {
                    batch: name.to_owned(),
                    status: "Stopped",
                    action: "run while it is being stopped or removed",
                    remedy: "start it again once the stop or removal is done",
                });
            }
            if active.contains_key(name) {
                return Err(Error::BatchState {
                    batch: name.to_owned(),
                    status: "Syncing",
                    action: "run twice at once",
                    remedy: "its pass is already running in this process",
                });
            }
            let token = self.shutdown.child_token();
            active.insert(name.to_owned(), token.clone());
            token
        };
        let _guard = ActiveGuard {
            runtime: self,
            name: name.to_owned(),
        };
        let result = self.run_rounds(name, &token, &events).await;
        match result {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                self.fail_waiting(name, e.to_string()).await;
                Err(e)
            }
        }
    }

    async fn run_rounds(
        &self,
        name: &str,
        token: &CancellationToken,
        events: &EventSink,
    ) -> Result<BatchOutcome, Error> {
        loop {
            let owned = name.to_owned();
            let start = self
                .store
                .run_value(move |db| {
                    let name = owned;
                    let batch = db
                        .batch(&name)
                        .map_err(state_err(format!("reading batch {name}")))?;
                    if !matches!(batch.status, BatchStatus::Syncing | BatchStatus::Completing) {
                        return Ok(RoundStart::Done(outcome(db, &batch, false)?));
                    }
                    let mailboxes = db
                        .mailboxes(batch.id)
                        .map_err(state_err(format!("reading the mailboxes of batch {name}")))?;
                    Ok::<_, Error>(RoundStart::Run(batch, mailboxes))
                })
                .await
                .map_err(state_err(format!("reading batch {name}")))??;
            let (batch, mailboxes) = match start {
                RoundStart::Done(outcome) => return Ok(outcome),
                RoundStart::Run(batch, mailboxes) => (batch, mailboxes),
            };
            let waiting: Vec<(usize, MailboxRecord)> = mailboxes
                .into_iter()
                .enumerate()
                .filter(|(_, m)| matches!(m.status, MailboxStatus::Queued | MailboxStatus::Syncing))
                .collect();
            if token.is_cancelled() {
                return self.interrupted(name, token).await;
            }
            if waiting.is_empty() {
                return self.finish(&batch).await;
            }
            self.run_round(&batch, waiting, token, events).await?;
            if token.is_cancelled() {
                return self.interrupted(name, token).await;
            }
        }
    }

    async fn run_round(
        &self,
        batch: &BatchRecord,
        waiting: Vec<(usize, MailboxRecord)>,
        token: &CancellationToken,
        events: &EventSink,
    ) -> Result<(), Error> {
        let s = &batch.settings;
        let shared = Arc::new(self.round_context(batch, token, events).await?);
        events(&BatchEvent::Planned {
            batch: s.name.clone(),
            mailboxes: waiting.len(),
        });
        let mut tasks = JoinSet::new();
        for (index, mailbox) in waiting {
            let ctx = shared.clone();
            tasks.spawn(async move { ctx.run_mailbox(index, mailbox).await });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                // A panicked pass is a bug; its mailbox keeps its status and is retried.
                tracing::error!(batch = %s.name, error = %e, "a mailbox task ended abnormally");
            }
        }
        Ok(())
    }

    /// What every mailbox of a round of `batch` shares: endpoints, pools, slots, options.
    async fn round_context(
        &self,
        batch: &BatchRecord,
        token: &CancellationToken,
        events: &EventSink,
    ) -> Result<RoundContext, Error> {
        let s = &batch.settings;
        let (source_name, target_name) = (s.source_endpoint.clone(), s.target_endpoint.clone());
        let (source, target, source_access, target_access, shard_counts) = self
            .store
            .run_value(move |db| {
                let source = endpoint_record(db, &source_name)?;
                let target = endpoint_record(db, &target_name)?;
                let source_access = endpoint_access(db, &source)?;
                let target_access = endpoint_access(db, &target)?;
                let shard_counts = (
                    db.endpoint_shard_count(&source_name)
                        .map_err(state_err(format!("reading the batches of {source_name}")))?,
                    db.endpoint_shard_count(&target_name)
                        .map_err(state_err(format!("reading the batches of {target_name}")))?,
                );
                Ok::<_, Error>((source, target, source_access, target_access, shard_counts))
            })
            .await
            .map_err(state_err(format!(
                "reading the endpoints of batch {}",
                s.name
            )))??;
        let exclusions = s
            .excluded_folders
            .iter()
            .map(|p| p.parse::<Exclusion>())
            .collect::<Result<Vec<_>, _>>()?;
        let inclusions = s
            .included_folders
            .iter()
            .map(|p| Exclusion::parse_inclusion(p))
            .collect::<Result<Vec<_>, _>>()?;
        // This process's share of each endpoint's `--max-rate`, as stored now (`endpoint
        // add` also applies a changed rate at once, `batch add` a new shard count here).
        for (record, shards) in [(&source, shard_counts.0), (&target, shard_counts.1)] {
            let share = RateShare::of(&record.settings.max_rate, shards);
            self.rate_budget(&record.settings.name)
                .set_share(share.as_ref());
        }
        Ok(RoundContext {
            store: self.store.clone(),
            batch: s.name.clone(),
            final_pass: batch.status == BatchStatus::Completing,
            source_pool: self.pool_of(&source, Role::Source)?,
            target_pool: self.pool_of(&target, Role::Target)?,
            slots: slot_order(
                (&s.source_endpoint, self.slots_of(&source)),
                (&s.target_endpoint, self.slots_of(&target)),
            ),
            source_access,
            target_access,
            options: JobOptions {
                connections: self
                    .connections_of(&source.settings)
                    .min(self.connections_of(&target.settings)),
                exclusions,
                inclusions,
                max_message_size: s.max_message_size,
                bad_item_limit: s.bad_item_limit.unwrap_or(self.options.job.bad_item_limit),
                source_provider: source.settings.provider,
                target_provider: target.settings.provider,
                gmail_archive_folder: s.gmail_archive_folder.clone(),
                target_recheck: s.target_recheck_secs.map_or(
                    self.options.job.target_recheck,
                    std::time::Duration::from_secs,
                ),
                ..self.options.job.clone()
            },
            events: events.clone(),
            token: token.clone(),
        })
    }

    /// Every mailbox of batch `name` as the job a pass would run, with its status and the
    /// kind of pass it would get, for planning a pass without making it (the dry run, the
    /// estimate): the same pools, logins and options as a round. Writes nothing.
    pub async fn planning_jobs(&self, name: &str) -> Result<PlanningJobs, Error> {
        let owned = name.to_owned();
        let (batch, mailboxes, source, target) = self
            .store
            .run_value(move |db| {
                let batch = db
                    .batch(&owned)
                    .map_err(state_err(format!("reading batch {owned}")))?;
                let mailboxes = db
                    .mailboxes(batch.id)
                    .map_err(state_err(format!("reading the mailboxes of batch {owned}")))?;
                let source = endpoint_record(db, &batch.settings.source_endpoint)?;
                let target = endpoint_record(db, &batch.settings.target_endpoint)?;
                Ok::<_, Error>((batch, mailboxes, source, target))
            })
            .await
            .map_err(state_err(format!("reading batch {name}")))??;
        let context = self
            .round_context(&batch, &self.shutdown, &no_events())
            .await?;
        let mut jobs = Vec::with_capacity(mailboxes.len());
        for (index, mailbox) in mailboxes.into_iter().enumerate() {
            let (id, who) = (mailbox.id, mailbox.row.email_address.clone());
            let prepared = self
                .store
                .run_value(move |db| prepare(db, false, id, &who))
                .await
                .map_err(state_err(format!(
                    "reading the stored credentials of {}",
                    mailbox.row.email_address
                )))
                .flatten()
                .and_then(|(kind, credentials)| {
                    Ok((kind, context.job(index, &mailbox, &credentials)?))
                });
            jobs.push(PlanningJob {
                id,
                email: mailbox.row.email_address.clone(),
                status: mailbox.status,
                job: prepared,
            });
        }
        let lower = |f: fn(&imapmirror_storage::EndpointSettings) -> u32| {
            f(&source.settings).min(f(&target.settings)).max(1) as usize
        };
        Ok(PlanningJobs {
            migrations: lower(|s| s.max_concurrent_migrations),
            syncs: lower(|s| s.max_concurrent_syncs),
            connections: context.options.connections.max(1),
            batch,
            jobs,
        })
    }

    /// After a cancelled run: when the process is shutting down, mailboxes stopped by the
    /// shutdown (or left `Syncing` by an earlier crash) go back to `Queued`, so that the
    /// next process resumes them and `Syncing` means a pass really is running.
    async fn interrupted(
        &self,
        name: &str,
        token: &CancellationToken,
    ) -> Result<BatchOutcome, Error> {
        let (owned, shutdown, token) = (name.to_owned(), self.shutdown.clone(), token.clone());
        self.store
            .run_value(move |db| {
                let name = owned;
                let batch = db
                    .batch(&name)
                    .map_err(state_err(format!("reading batch {name}")))?;
                if shutdown.is_cancelled()
                    && token.is_cancelled()
                    && matches!(batch.status, BatchStatus::Syncing | BatchStatus::Completing)
                {
                    for m in db
                        .mailboxes(batch.id)
                        .map_err(state_err(format!("reading the mailboxes of batch {name}")))?
                    {
                        // Nothing of this batch runs any more: `Stopped` was this shutdown,
                        // `Syncing` a crashed process's pass that never got a slot here.
                        if matches!(m.status, MailboxStatus::Stopped | MailboxStatus::Syncing) {
                            db.set_mailbox_status(m.id, MailboxStatus::Queued, None)
                                .map_err(state_err(format!(
                                    "re-queueing {}",
                                    m.row.email_address
                                )))?;
                        }
                    }
                }
                outcome(db, &batch, true)
            })
            .await
            .map_err(state_err(format!("reading batch {name}")))?
    }

    /// Every mailbox is done: the batch's new status, its finish time, its notification.
    async fn finish(&self, batch: &BatchRecord) -> Result<BatchOutcome, Error> {
        let name = &batch.settings.name;
        let with_notice = self.notifier.is_some();
        let owned = batch.clone();
        let (updated, failed, notice, report) = self
            .store
            .run_value(move |db| {
                let batch = owned;
                let name = &batch.settings.name;
                let mailboxes = db
                    .mailboxes(batch.id)
                    .map_err(state_err(format!("reading the mailboxes of batch {name}")))?;
                let failed = mailboxes
                    .iter()
                    .filter(|m| m.status == MailboxStatus::Failed)
                    .count() as u64;
                let status = match batch.status {
                    BatchStatus::Completing
                        if mailboxes
                            .iter()
                            .all(|m| m.status == MailboxStatus::Completed) =>
                    {
                        BatchStatus::Completed
                    }
                    _ if failed > 0 => BatchStatus::Failed,
                    BatchStatus::Completing => BatchStatus::Failed,
                    _ => BatchStatus::Synced,
                };
                let now = Timestamp::now();
                let before = batch.status;
                let mut ended = false;
                let updated = db
                    .update_batch(name, |b| {
                        // A stop that raced with the last mailbox wins.
                        if b.status == before {
                            b.status = status;
                            b.status_changed = now;
                            b.last_sync_finished = Some(now);
                            b.passes_finished += 1;
                            ended = true;
                        }
                    })
                    .map_err(state_err(format!(
                        "recording the end of a pass over batch {name}"
                    )))?;
                let notice = with_notice.then(|| notice(db, &updated));
                let report = if ended {
                    report_delivery::prepare(db, &updated)
                } else {
                    Vec::new()
                };
                Ok::<_, Error>((updated, failed, notice, report))
            })
            .await
            .map_err(state_err(format!(
                "recording the end of a pass over batch {name}"
            )))??;
        tracing::info!(batch = %name, status = updated.status.as_str(), failed, "pass over the batch finished");
        self.send_notice(&updated, notice);
        self.deliver_report(name, report).await;
        Ok(BatchOutcome {
            status: updated.status,
            mailboxes_failed: failed,
            interrupted: false,
        })
    }

    /// Sends the notification [`notice`] read for `batch` (`None`: it was not read,
    /// there being no notifier), or logs why there is none.
    fn send_notice(&self, batch: &BatchRecord, notice: Option<Notice>) {
        let (Some(notifier), Some(notice)) = (&self.notifier, notice) else {
            return;
        };
        let (url, summary) = match notice {
            Notice::Nothing => return,
            Notice::NoUrl(e) => {
                tracing::warn!(batch = %batch.settings.name, error = %e, "no notification: the webhook URL could not be read");
                return;
            }
            Notice::NoSummary(e) => {
                tracing::warn!(batch = %batch.settings.name, error = %e, "no notification: the summary could not be read");
                return;
            }
            Notice::Ready { url, summary } => (url, summary),
        };
        let event = match batch.status {
            BatchStatus::Completed => PassEvent::BatchCompleted,
            BatchStatus::Failed => PassEvent::PassFailed,
            _ => PassEvent::PassFinished,
        };
        notifier.send(
            url.expose(),
            &Notification {
                event,
                batch: summary,
            },
        );
    }

    /// Delivers the report of the pass that just ended into each of the batch's report
    /// mailboxes (see [`report_delivery`]), all at once so that one slow or refusing
    /// address does not hold up the others, and records how each went. Never fails the
    /// pass.
    async fn deliver_report(
        &self,
        name: &str,
        jobs: Vec<Result<report_delivery::ReportJob, report_delivery::Unprepared>>,
    ) {
        let deliveries = jobs.into_iter().map(|job| async move {
            match job {
                Err(u) => {
                    tracing::warn!(batch = %name, pass = u.pass, mailbox = %u.address, error = %u.error, "the batch report could not be prepared; the pass is not affected");
                    (u.address, u.pass, Err(u.error))
                }
                Ok(job) => {
                    let outcome = match self.pool_of(&job.target, Role::Target) {
                        Ok(pool) => job.deliver(&pool, &self.shutdown).await,
                        Err(e) => Err(e.to_string()),
                    };
                    match &outcome {
                        Ok(()) => {
                            tracing::info!(batch = %name, pass = job.pass, mailbox = %job.address, "batch report delivered")
                        }
                        Err(e) => {
                            tracing::warn!(batch = %name, pass = job.pass, mailbox = %job.address, error = %e, "the batch report could not be delivered; the pass is not affected")
                        }
                    }
                    (job.address, job.pass, outcome)
                }
            }
        });
        let outcomes = futures::future::join_all(deliveries).await;
        if outcomes.is_empty() {
            return;
        }
        let owned = name.to_owned();
        let recorded = self
            .store
            .run_value(move |db| {
                outcomes
                    .into_iter()
                    .try_for_each(|(address, pass, outcome)| {
                        report_delivery::record(db, &owned, &address, pass, outcome.err())
                    })
            })
            .await;
        match recorded {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(batch = %name, error = %e, "the report delivery could not be recorded")
            }
            Err(e) => {
                tracing::warn!(batch = %name, error = %e, "the report delivery could not be recorded")
            }
        }
    }

    /// A run that could not even begin (an endpoint gone, a bad exclusion): its waiting
    /// mailboxes fail with the reason (`text`) and the batch is `Failed`, so the
    /// scheduler does not retry it before the next interval.
    async fn fail_waiting(&self, name: &str, text: String) {
        let owned = name.to_owned();
        let with_notice = self.notifier.is_some();
        let result = self
            .store
            .run(move |db| {
                let name = owned;
                let batch = db.batch(&name)?;
                if !matches!(batch.status, BatchStatus::Syncing | BatchStatus::Completing) {
                    return Ok(None);
                }
                for m in db.mailboxes(batch.id)? {
                    if matches!(m.status, MailboxStatus::Queued | MailboxStatus::Syncing) {
                        db.set_mailbox_status(m.id, MailboxStatus::Failed, Some(&text))?;
                    }
                }
                let now = Timestamp::now();
                let updated = db.update_batch(&name, |b| {
                    b.status = BatchStatus::Failed;
                    b.status_changed = now;
                    b.last_sync_finished = Some(now);
                    b.passes_finished += 1;
                })?;
                let notice = with_notice.then(|| notice(db, &updated));
                let report = report_delivery::prepare(db, &updated);
                Ok(Some((updated, notice, report)))
            })
            .await;
        match result {
            Ok(Some((updated, notice, report))) => {
                self.send_notice(&updated, notice);
                self.deliver_report(name, report).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(batch = %name, error = %e, "could not record the failure of the batch");
            }
        }
    }
}

/// The endpoints' slots to take, in one global order (by endpoint name) so that two
/// mailboxes never wait on each other's half-taken slots; one entry when source and
/// target are the same endpoint.
fn slot_order(
    a: (&String, Arc<EndpointSlots>),
    b: (&String, Arc<EndpointSlots>),
) -> Vec<Arc<EndpointSlots>> {
    if a.0 == b.0 {
        vec![a.1]
    } else if a.0 < b.0 {
        vec![a.1, b.1]
    } else {
        vec![b.1, a.1]
    }
}

/// What every mailbox task of one round shares.
struct RoundContext {
    store: Store,
    batch: String,
    final_pass: bool,
    source_pool: Arc<EndpointPool>,
    target_pool: Arc<EndpointPool>,
    slots: Vec<Arc<EndpointSlots>>,
    source_access: EndpointAccess,
    target_access: EndpointAccess,
    options: JobOptions,
    events: EventSink,
    token: CancellationToken,
}

/// What a mailbox's pass needs from the store, read in one storage job: the kind of pass
/// (final when completing, incremental once a pass has succeeded, initial before) and
/// the mailbox's stored credentials.
fn prepare(
    db: &Database,
    final_pass: bool,
    mailbox: MailboxId,
    email: &str,
) -> Result<(PassKind, MailboxCredentials), Error> {
    let kind = if final_pass {
        PassKind::Final
    } else if db
        .has_succeeded_pass(mailbox)
        .map_err(state_err(format!("reading the pass history of {email}")))?
    {
        PassKind::Incremental
    } else {
        PassKind::Initial
    };
    let credentials = db.mailbox_credentials(mailbox).map_err(state_err(format!(
        "reading the stored credentials of {email}"
    )))?;
    Ok((kind, credentials))
}

impl RoundContext {
    async fn take_slots(&self, kind: PassKind) -> Option<Vec<OwnedSemaphorePermit>> {
        let mut permits = Vec::with_capacity(self.slots.len());
        for slots in &self.slots {
            let semaphore = match kind {
                PassKind::Initial => slots.migrations.clone(),
                PassKind::Incremental | PassKind::Final => slots.syncs.clone(),
            };
            tokio::select! {
                p = semaphore.acquire_owned() => permits.push(p.ok()?),
                () = self.token.cancelled() => return None,
            }
        }
        Some(permits)
    }

    /// The job of a mailbox whose `credentials` [`prepare`] read.
    fn job(
        &self,
        index: usize,
        mailbox: &MailboxRecord,
        credentials: &MailboxCredentials,
    ) -> Result<MailboxJob, Error> {
        let email = &mailbox.row.email_address;
        let row = MailboxRow {
            // Rows are stored in file order below a one-line header.
            line: index as u64 + 2,
            email: email.clone(),
            user_name: mailbox.row.user_name.clone(),
            password: Secret::new(credentials.password.expose()),
            user_root: mailbox.row.user_root.clone(),
            target_user_name: mailbox.row.target_user_name.clone(),
            target_password: credentials
                .target_password
                .as_ref()
                .map(|p| Secret::new(p.expose())),
            refresh_token: credentials
                .refresh_token
                .as_ref()
                .map(|p| Secret::new(p.expose())),
        };
        Ok(MailboxJob {
            mailbox: mailbox.id,
            email: email.clone(),
            batch: self.batch.clone(),
            source: self.source_pool.clone(),
            target: self.target_pool.clone(),
            source_login: source_login(&row, &self.source_access)?,
            target_login: target_login(&row, &self.target_access)?,
            options: JobOptions {
                user_root: mailbox.row.user_root.clone(),
                ..self.options.clone()
            },
        })
    }

    async fn run_mailbox(&self, index: usize, mailbox: MailboxRecord) {
        let email = mailbox.row.email_address.clone();
        let finished = |status: MailboxStatus, summary: &PassSummary, error: Option<String>| {
            (self.events)(&BatchEvent::MailboxFinished {
                batch: self.batch.clone(),
                email: email.clone(),
                status,
                copied: summary.copied,
                bytes: summary.bytes,
                skipped: summary.skipped,
                folders_renamed: summary.folders_renamed.len(),
                error,
            });
        };
        let (final_pass, id, who) = (self.final_pass, mailbox.id, email.clone());
        let prepared = self
            .store
            .run_value(move |db| prepare(db, final_pass, id, &who))
            .await
            .map_err(state_err(format!(
                "reading the stored credentials of {email}"
            )))
            .flatten()
            .and_then(|(kind, credentials)| Ok((kind, self.job(index, &mailbox, &credentials)?)));
        let (kind, job) = match prepared {
            Ok(p) => p,
            Err(e) => {
                crate::migration_metrics::error(&self.batch, &e);
                let text = e.to_string();
                let stored = text.clone();
                let failed = self
                    .store
                    .run(move |db| db.set_mailbox_status(id, MailboxStatus::Failed, Some(&stored)))
                    .await;
                if let Err(store_error) = failed {
                    tracing::error!(batch = %self.batch, mailbox = %email, error = %store_error, "could not record a mailbox failure");
                }
                finished(MailboxStatus::Failed, &PassSummary::default(), Some(text));
                return;
            }
        };
        let Some(_permits) = self.take_slots(kind).await else {
            return;
        };
        if self.token.is_cancelled() {
            return;
        }
        (self.events)(&BatchEvent::MailboxStarted {
            batch: self.batch.clone(),
            email: email.clone(),
            kind,
        });
        let events = self.events.clone();
        let (batch, who) = (self.batch.clone(), email.clone());
        let progress = move |p: Progress| {
            events(&BatchEvent::Progress {
                batch: batch.clone(),
                email: who.clone(),
                progress: p,
            });
        };
        let result = job
            .run_pass(&self.store, kind, &self.token, &progress)
            .await;
        let status = self
            .store
            .run(move |db| db.mailbox(id).map(|m| m.status))
            .await
            .unwrap_or(MailboxStatus::Failed);
        match result {
            Ok(summary) => finished(status, &summary, None),
            Err(e) => {
                if !matches!(e, Error::Stopped { .. }) {
                    tracing::warn!(batch = %self.batch, mailbox = %email, error = %e, "mailbox pass failed");
                }
                finished(status, &PassSummary::default(), Some(e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imapmirror_storage::{BatchSettings, EndpointSettings, MigrationRow, NewMailbox};

    /// Adds the endpoints `src` and `tgt` and batch `b` of `users` mailboxes; runs in a job.
    fn add_batch(db: &Database, users: usize) -> imapmirror_storage::Result<()> {
        for name in ["src", "tgt"] {
            db.add_endpoint(
                &EndpointSettings {
                    max_concurrent_migrations: 2,
                    max_concurrent_syncs: 1,
                    ..EndpointSettings::new(
                        name,
                        "127.0.0.1",
                        9,
                        imapmirror_storage::Security::None,
                    )
                },
                None,
            )?;
        }
        let rows: Vec<NewMailbox> = (0..users)
            .map(|i| NewMailbox {
                row: MigrationRow {
                    email_address: format!("u{i}@example.test"),
                    user_name: format!("u{i}@example.test"),
                    user_root: None,
                    target_user_name: None,
                },
                password: imapmirror_storage::Secret::new("pw"),
                target_password: Some(imapmirror_storage::Secret::new("pw")),
                refresh_token: None,
            })
            .collect();
        db.create_batch(
            &BatchSettings {
                sync_interval_secs: 60,
                ..BatchSettings::new("b", "src", "tgt")
            },
            &rows,
        )?;
        Ok(())
    }

    /// A store with [`add_batch`]'s batch, for plain (not async) tests.
    fn store_with_batch(dir: &std::path::Path, users: usize) -> Store {
        let store = Store::open(dir).expect("store");
        store.call(move |db| add_batch(db, users)).expect("batch");
        store
    }

    /// [`store_with_batch`] for async tests, which must not block on the store.
    async fn store_with_batch_async(dir: &std::path::Path, users: usize) -> Store {
        let store = Store::open(dir).expect("store");
        store
            .run(move |db| add_batch(db, users))
            .await
            .expect("batch");
        store
    }

    /// [`mark_for_pass`] from a plain thread.
    fn mark(store: &Store, intent: PassIntent) -> Result<(BatchRecord, usize), Error> {
        store
            .call(move |db| Ok(mark_for_pass(db, "b", intent)))
            .expect("store")
    }

    #[test]
    fn start_queues_every_mailbox_and_complete_is_refused_while_syncing() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store_with_batch(dir.path(), 3);
        let (batch, queued) = mark(&store, PassIntent::Start).expect("start");
        assert_eq!(batch.status, BatchStatus::Syncing);
        assert_eq!(queued, 3);
        assert!(batch.last_sync_started.is_some());
        let err = mark(&store, PassIntent::Complete).expect_err("refused");
        assert_eq!(err.fault(), crate::Fault::UserInput);
        assert!(err.to_string().contains("Batch b is Syncing"), "{err}");
        // Starting again while marked is harmless.
        let (_, again) = mark(&store, PassIntent::Start).expect("start again");
        assert_eq!(again, 3);
    }

    #[test]
    fn stop_stops_waiting_mailboxes() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store_with_batch(dir.path(), 2);
        mark(&store, PassIntent::Start).expect("start");
        let batch = store
            .call(|db| Ok(mark_stopped(db, "b")))
            .expect("store")
            .expect("stop");
        assert_eq!(batch.status, BatchStatus::Stopped);
        let id = batch.id;
        let statuses: Vec<_> = store
            .call(move |db| db.mailboxes(id))
            .expect("mailboxes")
            .iter()
            .map(|m| m.status)
            .collect();
        assert_eq!(statuses, vec![MailboxStatus::Stopped; 2]);
        // A stopped batch starts again: its mailboxes are queued anew.
        let (_, queued) = mark(&store, PassIntent::Start).expect("restart");
        assert_eq!(queued, 2);
    }

    #[test]
    fn slots_are_taken_in_name_order() {
        let s = |n| {
            Arc::new(EndpointSlots {
                migrations: Arc::new(Semaphore::new(n)),
                syncs: Arc::new(Semaphore::new(n)),
            })
        };
        let (a, b) = ("a".to_owned(), "b".to_owned());
        let order = slot_order((&b, s(2)), (&a, s(1)));
        assert_eq!(order[0].migrations.available_permits(), 1, "a first");
        assert_eq!(slot_order((&a, s(1)), (&a, s(1))).len(), 1);
    }

    #[tokio::test]
    async fn a_held_batch_does_not_start() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store_with_batch_async(dir.path(), 1).await;
        store
            .run_value(|db| mark_for_pass(db, "b", PassIntent::Start))
            .await
            .expect("store")
            .expect("start");
        let runtime = BatchRuntime::new(store, RunnerOptions::default(), None);
        {
            let _first = runtime.hold("b");
            let _second = runtime.hold("b");
            assert!(runtime.is_held("b"));
            let err = runtime
                .run_batch("b", no_events())
                .await
                .expect_err("refused while held");
            assert!(
                err.to_string().contains("being stopped or removed"),
                "{err}"
            );
        }
        assert!(!runtime.is_held("b"), "released with the last guard");
    }

    #[tokio::test]
    async fn an_unreachable_source_fails_the_mailboxes_not_the_process() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store_with_batch_async(dir.path(), 2).await;
        store
            .run_value(|db| mark_for_pass(db, "b", PassIntent::Start))
            .await
            .expect("store")
            .expect("start");
        let mut options = RunnerOptions::default();
        options.job.folder_retry.max_retries = 0;
        options.connect_retry = ReconnectPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
            max_retries: 1,
        };
        let runtime = BatchRuntime::new(store.clone(), options, None);
        // Port 9 (discard) on loopback refuses connections; the pool retries then fails.
        let outcome = tokio::time::timeout(
            Duration::from_secs(120),
            runtime.run_batch("b", no_events()),
        )
        .await
        .expect("ends")
        .expect("runs");
        assert_eq!(outcome.status, BatchStatus::Failed);
        assert_eq!(outcome.mailboxes_failed, 2);
        assert!(!runtime.is_active("b"));
    }
}
