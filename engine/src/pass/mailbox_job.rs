//! One user's mailbox: a pass over all its folders, the public entry point that batches
//! and schedules call.
//!
//! A pass: log in to both sides at once (through the endpoints' shared
//! [`EndpointPool`]s), list both at once with LIST-STATUS (one command per side gives
//! every folder's UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ), plan the folders, create
//! missing target folders and mirror subscriptions, then hand the folders that changed to
//! up to `connections` workers, each with its own source and target connection — one more
//! pair per [`MESSAGES_PER_CONNECTION_PAIR`] new messages, so a small mailbox is synced on
//! the pair it logged in with. A folder that has not changed costs nothing beyond its
//! line in the LIST-STATUS answer, and an unchanged mailbox opens no connection beyond
//! the first pair. A folder whose connection
//! fails is retried with back-off on fresh connections, starting with the reconciliation
//! of whatever the failure left pending. A source folder that is gone by the time it is
//! opened (deleted or renamed after the LIST) is skipped for the pass with a warning and
//! listed in [`PassSummary::folders_skipped`]; the pass goes on and its state is kept.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use imapmirror_protocol::client::{
    CommandData, CommandKind, ListEntry, MailboxStatus as WireStatus,
};
use imapmirror_protocol::{
    Command, Error as ImapError, ListCommand, MailboxAttr, MailboxName, StatusAttr, StatusKind,
};
use imapmirror_storage::Provider as ProviderChoice;
use imapmirror_storage::{
    Database, FolderId, FolderMarks, FolderRename, FolderSkip, FolderState, JournalEntry,
    MailboxId, MailboxStatus, PassOutcome, PassRecord, Store, StoreError, Timestamp,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::endpoint::credentials::LoginMethod;
use crate::endpoint::pool::{
    CommandCounters, Connection, EndpointPool, JobLabel, is_transient, server_hint,
};
use crate::endpoint::provider_profile::{FolderRole, Provider};
use crate::endpoint::reconnect_policy::{Jitter, ReconnectPolicy, RetryBudget};
use crate::error::Error;
use crate::migration_metrics;
use crate::pass::copy_plan::GroupLimits;
use crate::pass::folder_check::{
    CheckOptions, FolderWork, StatusValues, decide, never_used_folder,
};
use crate::pass::folder_plan::{
    Exclusion, ExclusionReason, FolderAttributes, FolderCopy, FolderListing, FolderPlan,
    ListedFolder, PlanOptions, SpecialUse, plan,
};
use crate::pass::folder_rename::{ListedSource, follow_source_renames};
use crate::pass::folder_sync::{
    FolderResult, FolderTask, LabelFolder, SyncContext, SyncSettings, skip_vanished_folder,
    source_folder_vanished, sync_folder,
};
use crate::pass::report::{FolderSkipReason, PassSummary, PassTotals, Progress, SkippedFolder};
use crate::pass::target_folders::create_and_subscribe;

mod quick_check_steps;

/// How far one attempt at a pass got ([`MailboxJob::run_inner`]): logging in, planning
/// the folders on the connections it got, or copying (the folders in the workers' hands).
const STAGE_CONNECTING: u8 = 0;
const STAGE_PLANNING: u8 = 1;
const STAGE_COPYING: u8 = 2;

/// How long a target connection whose write failed is read for what the server said
/// before it closed: it is already in the socket's buffer, or nothing more comes.
const LAST_WORDS_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Which pass this is; they differ in what the mailbox's status becomes afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// The first full copy (or its resumption).
    Initial,
    /// A scheduled catch-up pass.
    Incremental,
    /// The last pass before cut-over: the mailbox becomes `Completed`.
    Final,
}

/// What the batch asks of a mailbox's passes.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Source folders not to migrate.
    pub exclusions: Vec<Exclusion>,
    /// Source folders outside the personal namespace to migrate anyway (by full name).
    pub inclusions: Vec<Exclusion>,
    /// The row's `UserRoot`.
    pub user_root: Option<String>,
    /// Messages larger than this are skipped as too large.
    pub max_message_size: Option<u64>,
    /// A mailbox fails once the target has refused more messages than this, over all
    /// its passes (Exchange's BadItemLimit). By default there is no limit: a refused
    /// message costs that message and a line in the report, never the mailbox.
    pub bad_item_limit: u64,
    /// Mark deleted on the target what was deleted on the source (off: Exchange keeps it).
    pub mirror_deletions: bool,
    /// Folders synced in parallel, each over its own source and target connection.
    pub connections: usize,
    /// Group sizes (MULTIAPPEND and journal).
    pub groups: GroupLimits,
    /// How a folder whose connection failed is retried.
    pub folder_retry: ReconnectPolicy,
    /// How long after it was begun a pending journal group is reconciled at the
    /// earliest: a crashed process's last APPEND can still be committing in the target's
    /// session, invisible until it is done. Must exceed the target's worst commit time.
    pub crash_settle: std::time::Duration,
    /// The providers the source and target endpoints were added with (`endpoint add
    /// --provider`); `None`: told from the server (its greeting, capabilities and ID).
    pub source_provider: Option<ProviderChoice>,
    pub target_provider: Option<ProviderChoice>,
    /// Where a Gmail source's archived mail (All Mail's messages in no label) goes: this
    /// target folder (`batch add --gmail-archive-folder`), else the target's `\Archive`
    /// folder, else a folder named `Archive`.
    pub gmail_archive_folder: Option<String>,
    /// How long a pass may trust the target as the last full pass found it: within this
    /// time of it, a pass whose source shows nothing to do ends without logging in to
    /// the target (the quick check, `storage/src/quick_check.rs`); zero turns it off.
    pub target_recheck: std::time::Duration,
}

/// Folders of a mailbox synced at once when the endpoints do not say. Four overlap the
/// target's commits well (the 10,000-message bench: 8.7 s with 4, 10.9 s with 2) and stay
/// well inside common per-account limits (Dovecot 10 per user and IP, Gmail 15).
pub const DEFAULT_CONNECTIONS_PER_MAILBOX: usize = 4;

/// New messages a mailbox's pass must expect per connection pair it opens beyond the
/// first. Another pair costs a TLS handshake, a login and the session setup on both
/// servers; on a batch of small mailboxes those were most of the work (1,000 mailboxes
/// × 5 messages: four pairs a mailbox where one does), while a large mailbox still gets
/// its folders copied side by side.
pub const MESSAGES_PER_CONNECTION_PAIR: u64 = 250;

/// How many connection pairs (source and target) a mailbox's pass uses for `folders`
/// queued folders holding about `expected_new` new messages: the one it has, one more per
/// [`MESSAGES_PER_CONNECTION_PAIR`], at most `connections` and no more than folders.
pub fn connection_pairs(expected_new: u64, folders: usize, connections: usize) -> usize {
    let by_volume =
        1 + usize::try_from(expected_new / MESSAGES_PER_CONNECTION_PAIR).unwrap_or(usize::MAX);
    by_volume.min(connections.max(1)).min(folders).max(1)
}

/// How long a pass runs before its mailbox shows `Syncing` (see `MailboxJob::run_pass`).
pub const SHOW_SYNCING_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            exclusions: Vec::new(),
            inclusions: Vec::new(),
            user_root: None,
            max_message_size: None,
            bad_item_limit: u64::MAX,
            mirror_deletions: false,
            connections: DEFAULT_CONNECTIONS_PER_MAILBOX,
            groups: GroupLimits::default(),
            folder_retry: ReconnectPolicy::default(),
            crash_settle: std::time::Duration::from_secs(10),
            source_provider: None,
            target_provider: None,
            gmail_archive_folder: None,
            target_recheck: TARGET_RECHECK,
        }
    }
}

/// [`JobOptions::target_recheck`] by default. Passes a day apart (Exchange's incremental
/// sync) always look at the target; passes run more often than that (to shorten the
/// cut-over, or a resume after a stop) look at it at least twice a day, and cost a
/// mailbox nobody wrote to one login and one LIST instead of two each.
pub const TARGET_RECHECK: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// One mailbox to mirror.
#[derive(Debug, Clone)]
pub struct MailboxJob {
    /// Its record in the store.
    pub mailbox: MailboxId,
    /// Its EmailAddress, for logs and messages.
    pub email: String,
    /// Its batch's name, for logs.
    pub batch: String,
    pub source: Arc<EndpointPool>,
    pub target: Arc<EndpointPool>,
    pub source_login: LoginMethod,
    pub target_login: LoginMethod,
    pub options: JobOptions,
}

/// A folder of a listing: its decoded name, wire name, status.
pub(crate) struct Listed {
    pub(crate) wire: Vec<u8>,
    pub(crate) status: Option<WireStatus>,
}

/// STATUS of every `(key, wire name)` at once: all commands sent, then all answers read.
/// A folder the server refuses the STATUS of (gone meanwhile) is left out; the caller
/// asks it alone, where a vanished folder is told apart.
pub(crate) async fn pipelined_status(
    conn: &mut Connection,
    folders: &[(&str, &[u8])],
    attrs: &[StatusAttr<'_>],
) -> Result<HashMap<String, WireStatus>, ImapError> {
    let mut tags = Vec::with_capacity(folders.len());
    for (key, wire) in folders {
        CommandCounters::bump(&conn.counters.statuses);
        let tag = conn
            .session
            .send(
                CommandKind::Status,
                format!("STATUS {key:?}"),
                &Command::Status {
                    mailbox: MailboxName::Wire(wire),
                    attrs,
                },
            )
            .await?;
        tags.push((*key, *wire, tag));
    }
    let mut out = HashMap::with_capacity(tags.len());
    for (key, wire, tag) in tags {
        let completion = conn.session.wait(tag).await?;
        if !completion.is_ok() {
            continue;
        }
        // The answer names its folder: take it only for the folder asked.
        if let CommandData::Status(answers) = completion.data
            && let Some((_, status)) = answers.into_iter().find(|(name, _)| name[..] == wire[..])
        {
            out.insert(key.to_owned(), status);
        }
    }
    Ok(out)
}

pub(crate) fn status_values(s: &WireStatus) -> StatusValues {
    StatusValues {
        uid_validity: s.uid_validity,
        uid_next: s.uid_next,
        highest_modseq: s.highest_modseq,
        messages: s.messages,
    }
}

/// A mailbox's folder plan for one pass ([`MailboxJob::plan_folders`]).
pub(crate) struct PlannedFolders {
    pub(crate) plan: FolderPlan,
    /// Source folders left out that hold mail, reported.
    pub(crate) skipped: Vec<SkippedFolder>,
    /// The folders earlier passes copied, with their state.
    pub(crate) stored: Vec<(FolderId, FolderState)>,
    /// A Gmail source's All Mail, planned into the target's archive.
    pub(crate) gmail_all_mail: Option<String>,
}

impl MailboxJob {
    /// Runs one pass. The mailbox's status is `Syncing` while it runs, then `Synced`
    /// (`Completed` after a [`PassKind::Final`] pass), `Failed` or `Stopped`; the pass is
    /// recorded in the mailbox's history either way.
    pub async fn run_pass(
        &self,
        store: &Store,
        kind: PassKind,
        cancel: &CancellationToken,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<PassSummary, Error> {
        let span =
            tracing::info_span!("pass", batch = %self.batch, mailbox = %self.email, kind = ?kind);
        async {
            let store_err = |action: &str| {
                let action = action.to_owned();
                let mailbox = self.email.clone();
                move |source: imapmirror_storage::StoreError| Error::Store {
                    mailbox,
                    action,
                    source: Box::new(source),
                }
            };
            let mailbox = self.mailbox;
            let started = Timestamp::now();
            let totals = PassTotals::default();
            let src_counters = Arc::new(CommandCounters::default());
            let tgt_counters = Arc::new(CommandCounters::default());
            let inner = self.run_inner(
                store,
                kind,
                cancel,
                progress,
                &totals,
                &src_counters,
                &tgt_counters,
            );
            tokio::pin!(inner);
            // A pass that ends within SHOW_SYNCING_AFTER (a daily pass over a mailbox
            // nobody wrote to) never writes `Syncing`: the mailbox stays `Queued` until
            // its outcome is written, in one write of its record. One that runs longer
            // shows `Syncing` from then on. Either way a crash leaves it queued, and the
            // next run resumes it.
            let result = tokio::select! {
                result = &mut inner => result,
                () = tokio::time::sleep(SHOW_SYNCING_AFTER) => {
                    store
                        .run(move |db| db.set_mailbox_status(mailbox, MailboxStatus::Syncing, None))
                        .await
                        .map_err(store_err("marking the mailbox as syncing"))?;
                    inner.await
                }
            };
            // Back-offs the sessions waited out themselves (a command refused with a
            // suggested wait, sent again), added up as each connection ended: all of
            // the pass's connections have ended once `inner` is done.
            let (session_waits, session_waited) = [&src_counters, &tgt_counters]
                .iter()
                .map(|c| {
                    (
                        c.session_throttle_waits.load(Ordering::Relaxed),
                        Duration::from_nanos(c.session_throttle_wait_ns.load(Ordering::Relaxed)),
                    )
                })
                .fold((0, Duration::ZERO), |(n, d), (m, e)| {
                    (n + m, d.saturating_add(e))
                });
            if session_waits > 0 {
                migration_metrics::throttle_waits(&self.batch, session_waits, session_waited);
            }
            let summary = PassSummary {
                folders: result.as_ref().map(|n| *n).unwrap_or(0),
                folders_unchanged: PassTotals::get(&totals.unchanged) as usize,
                folders_created: PassTotals::get(&totals.created) as usize,
                copied: PassTotals::get(&totals.copied),
                bytes: PassTotals::get(&totals.bytes),
                skipped: PassTotals::get(&totals.skipped),
                keywords_dropped: PassTotals::get(&totals.keywords_dropped),
                flags_updated: PassTotals::get(&totals.flags_updated),
                deleted: PassTotals::get(&totals.deleted),
                reconciled: PassTotals::get(&totals.reconciled),
                retries: PassTotals::get(&totals.retries),
                rate_limit_wait: PassTotals::get_wait(&totals.rate_limit_wait_ns),
                throttle_wait: PassTotals::get_wait(&totals.throttle_wait_ns)
                    .saturating_add(session_waited),
                folders_skipped: totals.skipped_folders(),
                folders_renamed: totals.renamed_folders(),
                source_commands: src_counters.snapshot(),
                target_commands: tgt_counters.snapshot(),
            };
            let (s, t) = (&summary.source_commands, &summary.target_commands);
            tracing::debug!(
                folders = summary.folders,
                unchanged = summary.folders_unchanged,
                copied = summary.copied,
                bytes = summary.bytes,
                rate_limit_wait_ms = summary.rate_limit_wait.as_millis() as u64,
                throttle_wait_ms = summary.throttle_wait.as_millis() as u64,
                source_logins = s.logins,
                source_selects = s.selects,
                source_fetches = s.fetches,
                target_logins = t.logins,
                target_selects = t.selects,
                target_creates = t.creates,
                target_appends = t.appends,
                "mailbox pass ended"
            );
            let took = std::time::Duration::from_millis(
                Timestamp::now()
                    .unix_millis()
                    .saturating_sub(started.unix_millis()),
            );
            match &result {
                Err(Error::Stopped { .. }) => {}
                Err(e) => migration_metrics::error(&self.batch, e),
                Ok(_) => {
                    let label = match kind {
                        PassKind::Initial => "initial",
                        PassKind::Incremental => "incremental",
                        PassKind::Final => "final",
                    };
                    migration_metrics::pass_finished(&self.batch, label, took);
                }
            }
            let (outcome, status, error) = match &result {
                Ok(_) if kind == PassKind::Final => {
                    (PassOutcome::Succeeded, MailboxStatus::Completed, None)
                }
                Ok(_) => (PassOutcome::Succeeded, MailboxStatus::Synced, None),
                Err(Error::Stopped { .. }) => (PassOutcome::Stopped, MailboxStatus::Stopped, None),
                Err(e) => (
                    PassOutcome::Failed,
                    MailboxStatus::Failed,
                    Some(e.to_string()),
                ),
            };
            let record = PassRecord {
                started,
                finished: Timestamp::now(),
                items_copied: summary.copied,
                bytes_copied: summary.bytes,
                items_skipped: summary.skipped,
                flags_updated: summary.flags_updated,
                items_deleted: summary.deleted,
                outcome,
                error: error.clone(),
                folders_skipped: summary
                    .folders_skipped
                    .iter()
                    .map(|f| FolderSkip {
                        folder: f.folder.clone(),
                        reason: match &f.detail {
                            Some(words) => {
                                format!("{} (the server said: {words})", f.reason.phrase())
                            }
                            None => f.reason.phrase().to_owned(),
                        },
                    })
                    .chain(
                        totals
                            .repeated_folder_skips
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .drain(..),
                    )
                    .collect(),
                folders_renamed: summary
                    .folders_renamed
                    .iter()
                    .map(|f| FolderRename {
                        from: f.from.clone(),
                        to: f.to.clone(),
                    })
                    .collect(),
                unchanged_repeats: 0,
                rate_limit_wait_ms: millis(summary.rate_limit_wait),
                throttle_wait_ms: millis(summary.throttle_wait),
            };
            store
                .run(move |db| db.finish_pass(mailbox, &record, Some((status, error.as_deref()))))
                .await
                .map_err(store_err("recording the pass"))?;
            result.map(|_| summary)
        }
        .instrument(span)
        .await
    }

    /// One pass, its folder planning retried: a connection lost while the folders are
    /// listed, renamed, created or subscribed (Exchange Online drops connections every
    /// few dozen commands, and a new mailbox's plan takes dozens) is retried on new
    /// connections under the folder retry budget, as a drop while copying is. Every step
    /// of the planning can run again: the listings are read afresh, a rename already done
    /// is found done, a folder already created "exists", subscribing is idempotent and
    /// registering folders keeps their ids. Once the folders are handed to the workers,
    /// each retries its own; a pair that cannot be connected at all fails the pass as
    /// before (the pool has its own retries for that).
    #[allow(clippy::too_many_arguments)]
    async fn run_inner(
        &self,
        store: &Store,
        kind: PassKind,
        cancel: &CancellationToken,
        progress: &(dyn Fn(Progress) + Send + Sync),
        totals: &PassTotals,
        src_counters: &Arc<CommandCounters>,
        tgt_counters: &Arc<CommandCounters>,
    ) -> Result<usize, Error> {
        let mut budget = RetryBudget::default();
        let mut jitter = Jitter::seeded(u64::MAX);
        loop {
            let stage = std::sync::atomic::AtomicU8::new(STAGE_CONNECTING);
            let e = match self
                .run_attempt(
                    store,
                    kind,
                    cancel,
                    progress,
                    totals,
                    src_counters,
                    tgt_counters,
                    &stage,
                )
                .await
            {
                Ok(folders) => return Ok(folders),
                Err(e) => e,
            };
            // Connecting has its own retries in the pool (a server that cannot be
            // reached fails the pass as before); copying retries per folder.
            let retryable = stage.load(std::sync::atomic::Ordering::Acquire) == STAGE_PLANNING
                && !cancel.is_cancelled()
                && matches!(&e, Error::Imap { source, .. } if is_transient(source));
            let attempt = match budget.failed(&self.options.folder_retry, false) {
                Some(attempt) if retryable => attempt,
                _ => return Err(e),
            };
            let hint = match &e {
                Error::Imap { source, .. } => server_hint(source),
                _ => None,
            };
            let delay = self
                .options
                .folder_retry
                .delay(attempt, hint, jitter.next_u64());
            tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, error = %e, "planning the folders failed; retrying on new connections");
            PassTotals::add(&totals.retries, 1);
            migration_metrics::error(&self.batch, &e);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => {
                    return Err(Error::Stopped { mailbox: self.email.clone() });
                }
            }
        }
    }

    /// One attempt at the pass; `stage` says how far it got.
    #[allow(clippy::too_many_arguments)]
    async fn run_attempt(
        &self,
        store: &Store,
        kind: PassKind,
        cancel: &CancellationToken,
        progress: &(dyn Fn(Progress) + Send + Sync),
        totals: &PassTotals,
        src_counters: &Arc<CommandCounters>,
        tgt_counters: &Arc<CommandCounters>,
        stage: &std::sync::atomic::AtomicU8,
    ) -> Result<usize, Error> {
        let mailbox = self.email.as_str();
        let mailbox_id = self.mailbox;
        let quick = self.fresh_quick_check(store, kind).await?;
        let (mut src, mut tgt, src_listing, src_names, tgt_listing, tgt_names, digest);
        if let Some(check) = quick {
            // The source first, alone: if it shows nothing to do, the target is not needed.
            let src_slot = self.source.reserve(mailbox, cancel).await?;
            let who = JobLabel {
                batch: &self.batch,
                mailbox,
            };
            src = self
                .source
                .connect_in(src_slot, &self.source_login, src_counters, &who, cancel)
                .await?;
            stage.store(STAGE_PLANNING, std::sync::atomic::Ordering::Release);
            (src_listing, src_names) = self.listing(&mut src, true).await?;
            digest = self.plan_digest(&src_listing);
            if let Some(folders) = self
                .unchanged_by_source(store, &src, &src_names, digest, check, totals, progress)
                .await?
            {
                src.close().await;
                return Ok(folders);
            }
            let tgt_slot = self.target.reserve(mailbox, cancel).await?;
            tgt = self
                .target
                .connect_in(tgt_slot, &self.target_login, tgt_counters, &who, cancel)
                .await?;
            (tgt_listing, tgt_names) = self.listing(&mut tgt, false).await?;
        } else {
            (src, tgt) = self
                .connect_pair(src_counters, tgt_counters, cancel)
                .await?;
            stage.store(STAGE_PLANNING, std::sync::atomic::Ordering::Release);
            // The two sides do not depend on each other until the plan: list them at once.
            ((src_listing, src_names), (tgt_listing, tgt_names)) =
                tokio::try_join!(self.listing(&mut src, true), self.listing(&mut tgt, false))?;
            digest = self.plan_digest(&src_listing);
        }

        let source_provider = Provider::resolve(self.options.source_provider, src.family);
        let target_provider = Provider::resolve(self.options.target_provider, tgt.family);
        let PlannedFolders {
            plan: folder_plan,
            skipped: skipped_folders,
            stored: stored_folders,
            gmail_all_mail: all_mail,
        } = self
            .plan_folders(
                store,
                &src_listing,
                &tgt_listing,
                source_provider,
                target_provider,
            )
            .await?;
        // Without X-GM-EXT-1 the labels cannot be asked: All Mail's archived mail is told
        // by its bytes instead, after the label folders are synced (`all_mail_by_bytes`).
        let gmail_labels = src.has("X-GM-EXT-1");
        let by_bytes = all_mail.is_some() && !gmail_labels;
        for skipped in skipped_folders {
            tracing::info!(folder = %skipped.folder, reason = skipped.reason.phrase(), "not copied");
            totals.skip_folder(skipped);
        }
        progress(Progress::Planned {
            folders: folder_plan.copies.len(),
        });
        let settings = SyncSettings {
            limits: self.options.groups,
            max_message_size: self.options.max_message_size,
            bad_item_limit: self.options.bad_item_limit,
            mirror_deletions: self.options.mirror_deletions,
            crash_settle: self.options.crash_settle,
        };
        let ctx = SyncContext {
            store,
            mailbox: self.mailbox,
            mailbox_label: mailbox,
            batch: &self.batch,
            settings,
            totals,
            progress,
            cancel,
        };

        // Source folders renamed since the last pass: renamed on the target too, with
        // their state, before anything is created under the new names.
        let listed_sources: HashMap<String, ListedSource<'_>> = src_names
            .iter()
            .map(|(name, l)| {
                let source = ListedSource {
                    wire: &l.wire,
                    uid_validity: l.status.as_ref().and_then(|s| s.uid_validity),
                };
                (name.clone(), source)
            })
            .collect();
        let renamed = follow_source_renames(
            &ctx,
            &mut src,
            &mut tgt,
            &folder_plan,
            &listed_sources,
            &tgt_listing,
            &stored_folders,
        )
        .await?;

        // Every folder the plan copies gets its id now, in one write: a first pass would
        // otherwise make one store write per folder, and each costs the disk a few page
        // writebacks however small it is (measured: 1,000 mailboxes × 21 folders wrote
        // 4 GB). Renamed folders kept their ids above; existing ones are only looked up.
        let names: Vec<String> = folder_plan
            .copies
            .iter()
            .filter(|c| src_names.contains_key(&c.source))
            .map(|c| c.source.clone())
            .collect();
        if !names.is_empty() {
            store
                .run(move |db| db.register_folders(mailbox_id, &names).map(drop))
                .await
                .map_err(|e| Error::Store {
                    mailbox: mailbox.to_owned(),
                    action: "registering the folders of the plan".into(),
                    source: Box::new(e),
                })?;
        }

        // Create missing target folders, parents first, and mirror subscriptions.
        let refused_names =
            create_and_subscribe(&mut tgt, &folder_plan, &renamed, totals, mailbox).await?;
        let refused = |copy: &&FolderCopy| refused_names.contains(&copy.target.name);

        let source_condstore = src.has("CONDSTORE");
        let check = CheckOptions {
            mirror_deletions: self.options.mirror_deletions,
            source_condstore,
        };
        // Without LIST-STATUS (Courier) every folder's STATUS is asked here, all at once
        // on each side: one round trip instead of one per folder, and a target folder
        // whose status is known need not be opened when nothing changed.
        let mut source_attrs = vec![
            StatusAttr::Messages,
            StatusAttr::UidNext,
            StatusAttr::UidValidity,
        ];
        if source_condstore {
            source_attrs.push(StatusAttr::HighestModSeq);
        }
        let target_attrs = [
            StatusAttr::Messages,
            StatusAttr::UidNext,
            StatusAttr::UidValidity,
        ];
        let copies: Vec<&FolderCopy> = folder_plan.copies.iter().filter(|c| !refused(c)).collect();
        let source_wanted: Vec<(&str, &[u8])> = copies
            .iter()
            .filter_map(|c| src_names.get(&c.source).map(|l| (c, l)))
            .filter(|(_, l)| l.status.is_none())
            .map(|(c, l)| (c.source.as_str(), l.wire.as_slice()))
            .collect();
        let target_wanted: Vec<(&str, &[u8])> = copies
            .iter()
            .filter(|c| !c.create)
            .filter_map(|c| tgt_names.get(&c.target.name).map(|l| (c, l)))
            .filter(|(_, l)| l.status.is_none())
            .map(|(c, l)| (c.target.name.as_str(), l.wire.as_slice()))
            .collect();
        let status_err = |side: &str| {
            let action = format!("reading the {side} folders' status");
            move |e| Error::Imap {
                mailbox: mailbox.to_owned(),
                action,
                source: Box::new(e),
            }
        };
        let (source_statuses, target_statuses) = tokio::try_join!(
            async {
                pipelined_status(&mut src, &source_wanted, &source_attrs)
                    .await
                    .map_err(status_err("source"))
            },
            async {
                pipelined_status(&mut tgt, &target_wanted, &target_attrs)
                    .await
                    .map_err(status_err("target"))
            },
        )?;
        // Every folder's stored state in one job on the storage thread, not one each: the
        // thread serves every mailbox in flight, and an unchanged mailbox's pass is little
        // more than these lookups.
        let names: Vec<String> = copies
            .iter()
            .filter(|c| src_names.contains_key(&c.source))
            .map(|c| c.source.clone())
            .collect();
        let mut stored_states: HashMap<String, Option<StoredFolder>> = store
            .run_value(move |db| {
                names
                    .into_iter()
                    .map(|name| match stored_folder(db, mailbox_id, &name) {
                        Ok(stored) => Ok((name, stored)),
                        Err((what, e)) => Err((format!("{what} `{name}`"), e)),
                    })
                    .collect::<Result<HashMap<_, _>, _>>()
            })
            .await
            .map_err(|e| ("looking up the folders of the plan".to_owned(), e))
            .flatten()
            .map_err(|(action, e)| Error::Store {
                mailbox: mailbox.to_owned(),
                action,
                source: Box::new(e),
            })?;
        // A Gmail source's label folders, as All Mail judged by bytes compares against.
        let label_folders: Vec<LabelFolder> = copies
            .iter()
            .filter(|_| by_bytes)
            .filter(|c| all_mail.as_deref() != Some(c.source.as_str()) && is_label(c))
            .filter_map(|c| {
                let listed = src_names.get(&c.source)?;
                let status = listed
                    .status
                    .as_ref()
                    .or_else(|| source_statuses.get(&c.source));
                Some(LabelFolder {
                    source_name: c.source.clone(),
                    source_wire: listed.wire.clone(),
                    messages: status.and_then(|s| s.messages),
                })
            })
            .collect();
        let mut queue = VecDeque::new();
        // Gmail's All Mail judged by bytes: synced once the other folders are.
        let mut held_back: Option<FolderTask> = None;
        // New messages the queued folders hold (about: what the source has beyond what
        // the uid map and the skipped items account for), to size the connections.
        let mut expected_new: u64 = 0;
        // Folders the source never held a message in: their marks, written at once below.
        let mut never_used: Vec<(String, FolderMarks)> = Vec::new();
        for copy in copies {
            let Some(listed) = src_names.get(&copy.source) else {
                continue;
            };
            let listed_status = listed
                .status
                .as_ref()
                .or_else(|| source_statuses.get(&copy.source));
            let mut source_status = listed_status.map(status_values).unwrap_or_default();
            if listed_status.is_none() {
                // No LIST-STATUS: one STATUS per folder is still one round trip.
                let mut attrs = vec![
                    StatusAttr::Messages,
                    StatusAttr::UidNext,
                    StatusAttr::UidValidity,
                ];
                if source_condstore {
                    attrs.push(StatusAttr::HighestModSeq);
                }
                CommandCounters::bump(&src.counters.statuses);
                let imap_err = |action: String| {
                    move |e| Error::Imap {
                        mailbox: mailbox.to_owned(),
                        action,
                        source: Box::new(e),
                    }
                };
                match src
                    .session
                    .status(MailboxName::Wire(&listed.wire), &attrs)
                    .await
                {
                    Ok(s) => source_status = status_values(&s),
                    Err(e) => {
                        if source_folder_vanished(&mut src, &listed.wire, &e)
                            .await
                            .map_err(imap_err(format!(
                                "checking whether the source folder `{}` still exists",
                                copy.source
                            )))?
                        {
                            skip_vanished_folder(totals, &copy.source, &e);
                            progress(Progress::FolderFinished {
                                folder: copy.source.clone(),
                                copied: 0,
                                skipped: 0,
                                unchanged: false,
                            });
                            continue;
                        }
                        return Err(imap_err(format!(
                            "reading the status of the source folder `{}`",
                            copy.source
                        ))(e));
                    }
                }
            }
            let target = if copy.create {
                None
            } else {
                tgt_names.get(&copy.target.name)
            };
            let target_status = target
                .and_then(|t| t.status.as_ref())
                .or_else(|| target.and_then(|_| target_statuses.get(&copy.target.name)))
                .map(status_values);
            let task = FolderTask {
                source_name: copy.source.clone(),
                source_wire: listed.wire.clone(),
                target_name: copy.target.name.clone(),
                source_status,
                target_status,
                append_limit: target
                    .and_then(|t| t.status.as_ref())
                    .and_then(|s| s.append_limit),
                gmail_all_mail: false,
                gmail_ids: false,
                label_fingerprints: false,
                all_mail_by_bytes: None,
                retry_attempt: 0,
            };
            // Decided here already, so that an unchanged mailbox opens no more connections.
            let stored = stored_states.remove(&copy.source).flatten();
            let is_all_mail = all_mail.as_deref() == Some(copy.source.as_str());
            let all_mail_task = is_all_mail && gmail_labels;
            let task = FolderTask {
                gmail_all_mail: all_mail_task,
                gmail_ids: source_provider == Provider::Gmail && gmail_labels,
                label_fingerprints: by_bytes && !is_all_mail && is_label(copy),
                // The label folders are filled in below, once all are known.
                all_mail_by_bytes: (by_bytes && is_all_mail).then(|| Arc::from(Vec::new())),
                ..task
            };
            // All Mail is looked at every pass: a message archived since (its last label
            // removed) changes nothing All Mail's status shows.
            let stored = stored.filter(|_| !is_all_mail);
            if let Some((state, pending)) = &stored {
                let work = decide(
                    &state.marks,
                    &state.counters,
                    &task.source_status,
                    task.target_status.as_ref(),
                    &check,
                );
                if work == FolderWork::Unchanged && pending.is_empty() {
                    PassTotals::add(&totals.unchanged, 1);
                    progress(Progress::FolderFinished {
                        folder: copy.source.clone(),
                        copied: 0,
                        skipped: 0,
                        unchanged: true,
                    });
                    continue;
                }
            }
            if let Some((state, pending)) = &stored
                && pending.is_empty()
                && let Some(marks) = never_used_folder(
                    &state.marks,
                    &state.counters,
                    &task.source_status,
                    task.target_status.as_ref(),
                )
            {
                let target_name = Some(task.target_name.clone());
                never_used.push((
                    task.source_name.clone(),
                    FolderMarks {
                        target_name,
                        ..marks
                    },
                ));
                continue;
            }
            if task.all_mail_by_bytes.is_some() {
                // Alone on one pair after the others; most of it is judged, not copied.
                held_back = Some(task);
                continue;
            }
            expected_new += match (task.source_status.messages, &stored) {
                // Unknown (no MESSAGES in STATUS): as much as a connection pair is worth.
                (None, _) => MESSAGES_PER_CONNECTION_PAIR,
                (Some(n), Some((state, _))) => {
                    u64::from(n).saturating_sub(state.counters.messages + state.counters.skipped)
                }
                (Some(n), None) => u64::from(n),
            };
            queue.push_back(task);
        }
        if !never_used.is_empty() {
            let names: Vec<String> = never_used.iter().map(|(name, _)| name.clone()).collect();
            store
                .run(move |db| {
                    for (name, marks) in never_used {
                        let folder = db.folder(mailbox_id, &name)?;
                        db.update_folder_marks(folder, |m| *m = marks)?;
                    }
                    Ok(())
                })
                .await
                .map_err(|e| Error::Store {
                    mailbox: mailbox.to_owned(),
                    action: "recording the folders the source never used".into(),
                    source: Box::new(e),
                })?;
            for folder in names {
                progress(Progress::FolderFinished {
                    folder,
                    copied: 0,
                    skipped: 0,
                    unchanged: false,
                });
            }
        }
        let folders = folder_plan.copies.len();
        stage.store(STAGE_COPYING, std::sync::atomic::Ordering::Release);
        let held_back = held_back.map(|task| FolderTask {
            all_mail_by_bytes: Some(Arc::from(label_folders)),
            ..task
        });
        if queue.is_empty() && held_back.is_none() {
            close_pair(src, tgt).await;
            self.remember_quick_check(store, digest, totals).await?;
            return Ok(folders);
        }

        // Largest folders first: the pass ends when its longest folder does, so starting
        // that one early keeps the other connections busy with the small ones meanwhile.
        queue
            .make_contiguous()
            .sort_by_key(|t| std::cmp::Reverse(t.source_status.messages.unwrap_or(u32::MAX)));
        let workers = connection_pairs(expected_new, queue.len(), self.options.connections);
        let mut pair = Some((src, tgt));
        if !queue.is_empty()
            && let Some(p) = pair.take()
        {
            self.run_queue(&ctx, p, queue, workers, src_counters, tgt_counters)
                .await?;
        }
        if let Some(task) = held_back {
            // The first round's pairs are closed as their workers end (a worker that
            // held its pair for later could keep another's reconnect waiting under a
            // learnt connection cap): All Mail gets a pair of its own.
            let p = match pair.take() {
                Some(p) => p,
                None => {
                    self.connect_pair(src_counters, tgt_counters, cancel)
                        .await?
                }
            };
            self.run_queue(
                &ctx,
                p,
                VecDeque::from([task]),
                1,
                src_counters,
                tgt_counters,
            )
            .await?;
        }
        self.remember_quick_check(store, digest, totals).await?;
        Ok(folders)
    }

    /// Syncs the folders of `queue` on up to `workers` connection pairs, the first being
    /// `pair`; the others are opened as needed, and each is closed when its worker ends.
    /// The first error of any folder fails the run.
    async fn run_queue(
        &self,
        ctx: &SyncContext<'_>,
        pair: (Connection, Connection),
        queue: VecDeque<FolderTask>,
        workers: usize,
        src_counters: &Arc<CommandCounters>,
        tgt_counters: &Arc<CommandCounters>,
    ) -> Result<(), Error> {
        let cancel = ctx.cancel;
        let queue = Mutex::new(queue);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let abort = cancel.child_token();
        let mut pairs = vec![Some(pair)];
        pairs.resize_with(workers.max(1), || None);
        let runs = pairs.into_iter().enumerate().map(|(n, pair)| {
            self.worker(
                n,
                pair,
                ctx,
                &queue,
                &first_error,
                &abort,
                src_counters,
                tgt_counters,
            )
        });
        join_all(runs).await;
        let failed = first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match failed {
            Some(e) => Err(e),
            None if cancel.is_cancelled() => Err(Error::Stopped {
                mailbox: ctx.mailbox_label.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Takes folders off the queue until it is empty or the pass fails.
    #[allow(clippy::too_many_arguments)]
    async fn worker(
        &self,
        n: usize,
        mut pair: Option<(Connection, Connection)>,
        ctx: &SyncContext<'_>,
        queue: &Mutex<VecDeque<FolderTask>>,
        first_error: &Mutex<Option<Error>>,
        abort: &CancellationToken,
        src_counters: &Arc<CommandCounters>,
        tgt_counters: &Arc<CommandCounters>,
    ) {
        let mut jitter = Jitter::seeded(n as u64);
        let fail = |e: Error| {
            let mut slot = first_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(e);
            }
        };
        loop {
            if abort.is_cancelled() {
                break;
            }
            let task = queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front();
            let Some(mut task) = task else { break };
            let span = tracing::info_span!("folder", folder = %task.source_name);
            let mut budget = RetryBudget::default();
            loop {
                let done_before = work_done(ctx);
                if pair.is_none() {
                    match self.connect_pair(src_counters, tgt_counters, abort).await {
                        Ok(p) => pair = Some(p),
                        Err(e) => {
                            fail(e);
                            abort.cancel();
                            return;
                        }
                    }
                }
                let Some((src, tgt)) = pair.as_mut() else {
                    return;
                };
                let result = sync_folder(ctx, src, tgt, &task)
                    .instrument(span.clone())
                    .await;
                let e = match result {
                    Ok(FolderResult::Unchanged) => {
                        PassTotals::add(&ctx.totals.unchanged, 1);
                        break;
                    }
                    // A vanished folder was recorded as skipped; the others go on.
                    Ok(FolderResult::Synced | FolderResult::Vanished) => break,
                    Err(e) => e,
                };
                let retryable = match &e {
                    Error::Imap { source, .. } => is_transient(source),
                    _ => false,
                };
                // Messages copied (or flags updated) before the failure are progress:
                // the count and the back-off start afresh (`RetryBudget`).
                let progressed = work_done(ctx) > done_before;
                let attempt = match budget.failed(&self.options.folder_retry, progressed) {
                    Some(attempt) if retryable && !abort.is_cancelled() => attempt,
                    _ => {
                        fail(e);
                        abort.cancel();
                        break;
                    }
                };
                let hint = match &e {
                    Error::Imap { source, .. } => server_hint(source),
                    _ => None,
                };
                let delay = self
                    .options
                    .folder_retry
                    .delay(attempt, hint, jitter.next_u64());
                tracing::warn!(parent: &span, attempt, delay_ms = delay.as_millis() as u64, error = %e, "folder sync failed; retrying on new connections");
                task.retry_attempt = attempt;
                PassTotals::add(&ctx.totals.retries, 1);
                migration_metrics::error(&self.batch, &e);
                // A write to the target failed because it had closed the connection:
                // what it said before closing (its BYE, its last answers) tells whether
                // an APPEND can still be stored, and how long a reconcile must let the
                // target settle (`folder_sync::settle_wait`).
                if let (Some((_, tgt)), Error::Imap { source, .. }) = (pair.as_mut(), &e)
                    && matches!(**source, ImapError::Network { ref server, .. } if server == tgt.server())
                {
                    tgt.session.read_last_words(LAST_WORDS_WAIT).await;
                }
                // The old connections may be mid-command: drop them, never reuse.
                pair = None;
                let waiting = std::time::Instant::now();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = abort.cancelled() => {
                        fail(Error::Stopped { mailbox: ctx.mailbox_label.to_owned() });
                        return;
                    }
                }
                if hint.is_some() {
                    let waited = waiting.elapsed();
                    migration_metrics::throttle_wait(&self.batch, waited);
                    PassTotals::add_wait(&ctx.totals.throttle_wait_ns, waited);
                }
            }
        }
        if let Some((s, t)) = pair {
            close_pair(s, t).await;
        }
    }

    /// The folder plan of a pass from both listings and the folders earlier passes
    /// copied (pinned to their targets), with the source folders it leaves out that hold
    /// mail and are reported: Gmail's system folders and folders outside the personal
    /// namespace. A Gmail source's All Mail is planned into the target's archive (kept
    /// from an earlier pass when there was one). The real pass and the dry run
    /// ([`crate::pass::mailbox_plan`]) both plan here. Reads the store, writes nothing.
    pub(crate) async fn plan_folders(
        &self,
        store: &Store,
        src_listing: &FolderListing,
        tgt_listing: &FolderListing,
        source_provider: Provider,
        target_provider: Provider,
    ) -> Result<PlannedFolders, Error> {
        let mailbox_id = self.mailbox;
        let stored = store
            .run(move |db| db.folders(mailbox_id))
            .await
            .map_err(|e| Error::Store {
                mailbox: self.email.clone(),
                action: "reading the folders of earlier passes".into(),
                source: Box::new(e),
            })?;
        let mut pinned = pins(&stored, tgt_listing);
        // Gmail's All Mail gives only its archived mail, into the target's archive: its
        // target is chosen here (kept from an earlier pass when there was one).
        let all_mail = gmail_all_mail(src_listing, source_provider);
        if let Some(all_mail) = &all_mail
            && !pinned.contains_key(all_mail)
        {
            let path = archive_path(tgt_listing, self.options.gmail_archive_folder.as_deref());
            pinned.insert(all_mail.clone(), path);
        }
        let mut reserved = Vec::new();
        if tgt_listing.separator == Some('.') {
            // Dovecot's Maildir++ layout cannot store `/` in a name.
            reserved.push('/');
        }
        let options = PlanOptions {
            exclusions: self.options.exclusions.clone(),
            inclusions: self.options.inclusions.clone(),
            user_root: self.options.user_root.clone(),
            target_needs_explicit_parents: false,
            target_case_insensitive: true,
            target_reserved_chars: reserved,
            pinned,
        };
        let mut folder_plan = plan(src_listing, tgt_listing, &options)?;
        if let Some(all_mail) = &all_mail {
            for copy in folder_plan
                .copies
                .iter_mut()
                .filter(|c| c.source == *all_mail)
            {
                // Created as an archive where the target takes a use (not as `\All`).
                copy.special_use = Some(SpecialUse::Archive);
            }
        }
        let mut skipped = gmail_system_folders(
            &mut folder_plan,
            src_listing,
            source_provider,
            target_provider,
        );
        // Folders of other namespaces hold mail (unlike their `\Noselect` hierarchy), so
        // leaving them out is reported, with how to bring them in.
        for excluded in &folder_plan.excluded {
            let selectable = src_listing
                .folders
                .iter()
                .any(|f| f.name == excluded.source && !f.attributes.no_select);
            if excluded.reason == ExclusionReason::OutsidePersonalNamespace && selectable {
                skipped.push(SkippedFolder {
                    folder: excluded.source.clone(),
                    reason: FolderSkipReason::OutsidePersonalNamespace,
                    detail: None,
                });
            }
        }
        Ok(PlannedFolders {
            plan: folder_plan,
            skipped,
            stored,
            gmail_all_mail: all_mail,
        })
    }

    /// A logged-in source and target connection. The slots are taken in a fixed order
    /// (source, then target) as every job takes them; the two logins, a handful of round
    /// trips each and most of an unchanged pass's time, then run at once.
    pub(crate) async fn connect_pair(
        &self,
        src_counters: &Arc<CommandCounters>,
        tgt_counters: &Arc<CommandCounters>,
        cancel: &CancellationToken,
    ) -> Result<(Connection, Connection), Error> {
        let mailbox = self.email.as_str();
        let who = JobLabel {
            batch: &self.batch,
            mailbox,
        };
        let src_slot = self.source.reserve(mailbox, cancel).await?;
        let tgt_slot = self.target.reserve(mailbox, cancel).await?;
        tokio::try_join!(
            self.source
                .connect_in(src_slot, &self.source_login, src_counters, &who, cancel),
            self.target
                .connect_in(tgt_slot, &self.target_login, tgt_counters, &who, cancel),
        )
    }

    /// LIST (with LIST-STATUS where offered) and NAMESPACE of one side.
    ///
    /// With a `UserRoot` the source lists the root and what lies under it, by name: a
    /// server's `LIST "" "*"` may leave those trees out (Courier shows its virtual shared
    /// folders only to a pattern under `#shared.`), and where it does not, an admin's
    /// `*` would list every user's folders. The root's separator must be known first, so
    /// that takes a round trip more: NAMESPACE and `LIST "" ""` (RFC 3501: the
    /// delimiter), then `LIST "" root` and `LIST "" root<sep>*` together.
    pub(crate) async fn listing(
        &self,
        conn: &mut Connection,
        source: bool,
    ) -> Result<(FolderListing, HashMap<String, Listed>), Error> {
        let asked_limit = !source && conn.asks_append_limit_status();
        match self.listing_once(conn, source).await {
            // An optional item the server announced and then refused (Cyrus's quirk, on
            // a server not recognised as Cyrus): once more without it, and never again
            // for this endpoint.
            Err(Error::Imap { source: e, .. })
                if asked_limit
                    && matches!(
                        *e,
                        ImapError::Refused {
                            status: StatusKind::Bad,
                            ..
                        }
                    ) =>
            {
                if conn.learnt.append_limit_status_refused() {
                    tracing::info!(server = %conn.server(), error = %e, "the target announces APPENDLIMIT but refuses it as a STATUS item; listing without it from now on");
                }
                self.listing_once(conn, source).await
            }
            other => other,
        }
    }

    async fn listing_once(
        &self,
        conn: &mut Connection,
        source: bool,
    ) -> Result<(FolderListing, HashMap<String, Listed>), Error> {
        let mailbox = self.email.as_str();
        let side = if source { "source" } else { "target" };
        let user_root = self.options.user_root.as_deref().filter(|_| source);
        let err = |action: &str| {
            let action = action.to_owned();
            move |e| Error::Imap {
                mailbox: mailbox.to_owned(),
                action,
                source: Box::new(e),
            }
        };
        let extended = conn.has("LIST-EXTENDED");
        let list_status = conn.has("LIST-STATUS");
        let mut attrs = vec![
            StatusAttr::Messages,
            StatusAttr::UidNext,
            StatusAttr::UidValidity,
        ];
        if conn.has("CONDSTORE") {
            attrs.push(StatusAttr::HighestModSeq);
        }
        if !source && conn.asks_append_limit_status() {
            attrs.push(StatusAttr::AppendLimit);
        }
        let return_special_use = extended && conn.has("SPECIAL-USE");
        let return_status: &[StatusAttr<'_>] = if list_status { &attrs } else { &[] };
        fn list_of<'a>(
            pattern: &'a str,
            return_special_use: bool,
            return_subscribed: bool,
            return_status: &'a [StatusAttr<'a>],
        ) -> ListCommand<'a> {
            ListCommand {
                reference: MailboxName::Unicode(""),
                pattern: MailboxName::Unicode(pattern),
                select_special_use: false,
                return_special_use,
                return_subscribed,
                return_status,
            }
        }
        // NAMESPACE and the first LIST do not depend on each other: both go out before
        // either answer is read, which saves a round trip on every pass.
        let namespace_tag = if conn.has("NAMESPACE") {
            CommandCounters::bump(&conn.counters.other);
            let tag = conn
                .session
                .send(
                    CommandKind::Namespace,
                    "NAMESPACE".into(),
                    &Command::Namespace,
                )
                .await
                .map_err(err(&format!("reading the {side} namespaces")))?;
            Some(tag)
        } else {
            None
        };
        let first_list = match user_root {
            // Only the delimiter: no status, no attributes wanted.
            Some(_) => list_of("", false, false, &[]),
            None => list_of("*", return_special_use, extended, return_status),
        };
        CommandCounters::bump(&conn.counters.lists);
        let list_tag = conn
            .session
            .send(CommandKind::List, "LIST".into(), &Command::List(first_list))
            .await
            .map_err(err(&format!("listing the {side} folders")))?;
        let server = conn.server().to_owned();
        let backoff = conn.session.config().default_backoff;
        let (mut prefix, mut separator) = (String::new(), None);
        let mut foreign: Vec<(String, Option<char>)> = Vec::new();
        if let Some(tag) = namespace_tag {
            let completion = conn
                .session
                .wait(tag)
                .await
                .and_then(|c| c.into_result(&server, backoff))
                .map_err(err(&format!("reading the {side} namespaces")))?;
            // A server that completes NAMESPACE without its answer has no usable personal
            // namespace: the LIST delimiter stands in, as without NAMESPACE.
            if let CommandData::Namespace(Some(ns)) = completion.data {
                let decode = |prefix: &[u8]| {
                    imapmirror_protocol::mutf7::decode(prefix)
                        .unwrap_or_else(|_| String::from_utf8_lossy(prefix).into_owned())
                };
                if let Some(personal) = ns.personal.first() {
                    prefix = decode(&personal.prefix);
                    separator = personal.delimiter.map(char::from);
                }
                foreign = ns
                    .other_users
                    .iter()
                    .chain(&ns.shared)
                    .map(|n| (decode(&n.prefix), n.delimiter.map(char::from)))
                    .collect();
            }
        }
        let first_entries = match conn
            .session
            .wait(list_tag)
            .await
            .and_then(|c| c.into_result(&server, backoff))
            .map_err(err(&format!("listing the {side} folders")))?
            .data
        {
            CommandData::List(v) => v,
            _ => Vec::new(),
        };
        let (entries, patterns) = match user_root {
            None => (first_entries, vec!["*".to_owned()]),
            Some(root) => {
                // The root's delimiter: the namespace it lies in, else the server's.
                let in_namespace = foreign
                    .iter()
                    .chain([&(prefix.clone(), separator)])
                    .filter(|(p, d)| d.is_some() && root.starts_with(p.as_str()))
                    .max_by_key(|(p, _)| p.len())
                    .and_then(|(_, d)| *d);
                let root_separator = in_namespace
                    .or_else(|| {
                        first_entries
                            .iter()
                            .find_map(|e| e.delimiter.map(char::from))
                    })
                    .or(separator);
                separator = root_separator;
                let root = match root_separator {
                    Some(sep) => root.strip_suffix(sep).unwrap_or(root),
                    None => root,
                };
                let mut patterns = vec![root.to_owned()];
                if let Some(sep) = root_separator {
                    patterns.push(format!("{root}{sep}*"));
                }
                let mut tags = Vec::with_capacity(patterns.len());
                for pattern in &patterns {
                    CommandCounters::bump(&conn.counters.lists);
                    let tag = conn
                        .session
                        .send(
                            CommandKind::List,
                            format!("LIST {pattern:?}"),
                            &Command::List(list_of(
                                pattern,
                                return_special_use,
                                extended,
                                return_status,
                            )),
                        )
                        .await
                        .map_err(err(&format!("listing the {side} folders under {root:?}")))?;
                    tags.push(tag);
                }
                let mut entries = Vec::new();
                for tag in tags {
                    let completion = conn
                        .session
                        .wait(tag)
                        .await
                        .and_then(|c| c.into_result(&server, backoff))
                        .map_err(err(&format!("listing the {side} folders under {root:?}")))?;
                    if let CommandData::List(v) = completion.data {
                        entries.extend(v);
                    }
                }
                (entries, patterns)
            }
        };
        let subscribed_by_lsub: Option<Vec<Vec<u8>>> = if extended {
            None
        } else {
            let lsub_err = |e| err(&format!("listing the {side} subscriptions"))(e);
            let mut tags = Vec::with_capacity(patterns.len());
            for pattern in &patterns {
                CommandCounters::bump(&conn.counters.lists);
                let command = Command::Lsub {
                    reference: MailboxName::Unicode(""),
                    pattern: MailboxName::Unicode(pattern),
                };
                let tag = conn
                    .session
                    .send(CommandKind::List, "LSUB".into(), &command)
                    .await
                    .map_err(lsub_err)?;
                tags.push(tag);
            }
            let mut subscribed = Vec::new();
            for tag in tags {
                let completion = conn
                    .session
                    .wait(tag)
                    .await
                    .and_then(|c| c.into_result(&server, backoff))
                    .map_err(lsub_err)?;
                if let CommandData::List(v) = completion.data {
                    subscribed.extend(v.into_iter().map(|e| e.wire_name));
                }
            }
            Some(subscribed)
        };
        let mut folders = Vec::with_capacity(entries.len());
        let mut names = HashMap::with_capacity(entries.len());
        for e in entries {
            let name = listed_name(&e).map_err(err(&format!("reading the {side} folder list")))?;
            if separator.is_none() {
                separator = e.delimiter.map(char::from);
            }
            let atoms: Vec<String> = e
                .attributes()
                .iter()
                .map(|f| String::from_utf8_lossy(&f.to_wire()).into_owned())
                .collect();
            let subscribed = match &subscribed_by_lsub {
                Some(list) => list.contains(&e.wire_name),
                None => e.attributes().contains(MailboxAttr::Subscribed),
            };
            folders.push(ListedFolder {
                name: name.clone(),
                attributes: FolderAttributes::from_atoms(atoms.iter().map(String::as_str)),
                subscribed,
            });
            names.insert(
                name,
                Listed {
                    wire: e.wire_name.clone(),
                    status: e.status,
                },
            );
        }
        let listing = FolderListing {
            server: conn.server().to_owned(),
            prefix,
            separator,
            foreign_prefixes: foreign.into_iter().map(|(p, _)| p).collect(),
            listed_with: patterns
                .iter()
                .map(|p| format!("LIST \"\" {p:?}"))
                .collect::<Vec<_>>()
                .join(" and "),
            folders,
        };
        Ok((listing, names))
    }
}

/// A folder's stored state and pending journal groups.
pub(crate) type StoredFolder = (FolderState, Vec<JournalEntry>);

/// A folder's [`StoredFolder`], if earlier passes saw it; on a failure, what was being
/// read (`looking up the folder`, `reading the folder`, `reading the journal of`) with the
/// error. Runs inside a storage job.
pub(crate) fn stored_folder(
    db: &Database,
    mailbox: MailboxId,
    source_name: &str,
) -> Result<Option<StoredFolder>, (&'static str, StoreError)> {
    let Some(folder) = db
        .find_folder(mailbox, source_name)
        .map_err(|e| ("looking up the folder", e))?
    else {
        return Ok(None);
    };
    let state = db
        .folder_state(folder)
        .map_err(|e| ("reading the folder", e))?;
    let pending = db
        .pending_in_folder(mailbox, folder)
        .map_err(|e| ("reading the journal of", e))?;
    Ok(Some((state, pending)))
}

/// Source name → target path of folders copied in earlier passes, so that a folder keeps
/// its target whatever appears later.
fn pins(
    folders: &[(FolderId, FolderState)],
    target: &FolderListing,
) -> BTreeMap<String, Vec<String>> {
    let mut pins = BTreeMap::new();
    for (_, state) in folders {
        let Some(name) = &state.marks.target_name else {
            continue;
        };
        let relative = name.strip_prefix(target.prefix.as_str()).unwrap_or(name);
        let path: Vec<String> = match target.separator {
            _ if name.eq_ignore_ascii_case("INBOX") => vec!["INBOX".to_owned()],
            Some(sep) => relative.split(sep).map(str::to_owned).collect(),
            None => vec![relative.to_owned()],
        };
        pins.insert(state.source_name.clone(), path);
    }
    pins
}

/// Logs out of both sides at once: nothing waits on either answer.
/// Whole milliseconds of `d`, as the pass history stores waits.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) async fn close_pair(src: Connection, tgt: Connection) {
    tokio::join!(src.close(), tgt.close());
}

/// A LIST entry's name, decoded from modified UTF-7.
fn listed_name(e: &ListEntry) -> Result<String, ImapError> {
    e.name(false)
}

/// Messages copied, skipped or found by a reconcile, and flags updated so far in this
/// pass: when it grows during a failed attempt, the attempt made progress. A reconcile's
/// finds count: behind a server that drops connections every few dozen commands
/// (Exchange Online), a group of pipelined APPENDs is often cut before its answers are
/// read, and its stored messages are recorded only by the next attempt's reconcile.
fn work_done(ctx: &SyncContext<'_>) -> u64 {
    let t = &ctx.totals;
    PassTotals::get(&t.copied)
        + PassTotals::get(&t.skipped)
        + PassTotals::get(&t.flags_updated)
        + PassTotals::get(&t.reconciled)
}

/// Takes Gmail's system folders that are not folders of their own out of the plan
/// ([`Quirk::GmailAllMailHoldsEveryMessage`]): on a Gmail source, Starred (its messages
/// are copied from their folders, `\Flagged` kept) and Important (a ranking); on a Gmail
/// target, whatever maps onto All Mail, Starred or Important, which Gmail fills by
/// itself. Returns the skips to report.
///
/// [`Quirk::GmailAllMailHoldsEveryMessage`]: crate::endpoint::server_quirks::Quirk::GmailAllMailHoldsEveryMessage
fn gmail_system_folders(
    folder_plan: &mut FolderPlan,
    source: &FolderListing,
    source_provider: Provider,
    target_provider: Provider,
) -> Vec<SkippedFolder> {
    let source_profile = source_provider.profile();
    let target_profile = target_provider.profile();
    let mut skipped = Vec::new();
    folder_plan.copies.retain(|copy| {
        let attributes: Vec<&str> = source
            .folders
            .iter()
            .find(|f| f.name == copy.source)
            .map(|f| {
                f.attributes
                    .special_use
                    .iter()
                    .map(|u| u.attribute())
                    .collect()
            })
            .unwrap_or_default();
        let path: Vec<&str> = match source.separator {
            Some(sep) => copy.source.split(sep).collect(),
            None => vec![copy.source.as_str()],
        };
        let target_path: Vec<&str> = copy.target.path.iter().map(String::as_str).collect();
        let reason = match source_profile.folder_role(&attributes, &path) {
            FolderRole::GmailStarred => Some(FolderSkipReason::GmailStarredIsAFlag),
            FolderRole::GmailImportant => Some(FolderSkipReason::GmailImportantIsARanking),
            FolderRole::GmailAllMail | FolderRole::Folder => {
                let onto_use = copy.special_use.map(|u| u.attribute());
                match target_profile.folder_role(onto_use.as_slice(), &target_path) {
                    FolderRole::Folder => None,
                    _ => Some(FolderSkipReason::GmailTargetSystemFolder),
                }
            }
        };
        match reason {
            Some(reason) => {
                skipped.push(SkippedFolder {
                    folder: copy.source.clone(),
                    reason,
                    detail: None,
                });
                false
            }
            None => true,
        }
    });
    skipped
}

/// Whether a planned copy of a Gmail source is a label folder (INBOX, a user label, Sent,
/// Drafts): one whose messages are also in All Mail. Spam and Trash are not in All Mail;
/// Starred and Important are views, already out of the plan.
fn is_label(copy: &FolderCopy) -> bool {
    !matches!(copy.special_use, Some(SpecialUse::Junk | SpecialUse::Trash))
}

/// Gmail's All Mail among the source's folders, when the source is Gmail.
fn gmail_all_mail(source: &FolderListing, provider: Provider) -> Option<String> {
    let profile = provider.profile();
    source
        .folders
        .iter()
        .filter(|f| !f.attributes.no_select)
        .find(|f| {
            let attributes: Vec<&str> = f
                .attributes
                .special_use
                .iter()
                .map(|u| u.attribute())
                .collect();
            let relative = f
                .name
                .strip_prefix(source.prefix.as_str())
                .unwrap_or(&f.name);
            let path: Vec<&str> = match source.separator {
                Some(sep) => relative.split(sep).collect(),
                None => vec![relative],
            };
            profile.folder_role(&attributes, &path) == FolderRole::GmailAllMail
        })
        .map(|f| f.name.clone())
}

/// The target path (relative to its personal namespace) of a Gmail source's archived
/// mail: the folder the administrator named, else the target's `\Archive` folder, else
/// `Archive`.
fn archive_path(target: &FolderListing, named: Option<&str>) -> Vec<String> {
    let split = |name: &str| -> Vec<String> {
        let relative = name.strip_prefix(target.prefix.as_str()).unwrap_or(name);
        match target.separator {
            Some(sep) => relative.split(sep).map(str::to_owned).collect(),
            None => vec![relative.to_owned()],
        }
    };
    if let Some(name) = named.filter(|n| !n.is_empty()) {
        return split(name);
    }
    target
        .folders
        .iter()
        .find(|f| {
            !f.attributes.no_select && f.attributes.special_use.contains(&SpecialUse::Archive)
        })
        .map_or_else(|| vec!["Archive".to_owned()], |f| split(&f.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, atoms: &[&str]) -> ListedFolder {
        ListedFolder {
            name: name.to_owned(),
            attributes: FolderAttributes::from_atoms(atoms.iter().copied()),
            subscribed: true,
        }
    }

    fn listing(server: &str, folders: Vec<ListedFolder>) -> FolderListing {
        FolderListing {
            server: server.to_owned(),
            prefix: String::new(),
            separator: Some('/'),
            foreign_prefixes: Vec::new(),
            listed_with: "LIST \"\" \"*\"".to_owned(),
            folders,
        }
    }

    /// Gmail's LIST as imap.gmail.com answers it (`\Important` is not an RFC 6154 use).
    fn gmail() -> FolderListing {
        listing(
            "gmail",
            vec![
                folder("INBOX", &["\\HasNoChildren"]),
                folder("Work", &["\\HasChildren"]),
                folder("Work/2024", &["\\HasNoChildren"]),
                folder("[Gmail]", &["\\HasChildren", "\\Noselect"]),
                folder("[Gmail]/All Mail", &["\\HasNoChildren", "\\All"]),
                folder("[Gmail]/Drafts", &["\\HasNoChildren", "\\Drafts"]),
                folder("[Gmail]/Important", &["\\HasNoChildren", "\\Important"]),
                folder("[Gmail]/Sent Mail", &["\\HasNoChildren", "\\Sent"]),
                folder("[Gmail]/Spam", &["\\HasNoChildren", "\\Junk"]),
                folder("[Gmail]/Starred", &["\\HasNoChildren", "\\Flagged"]),
                folder("[Gmail]/Trash", &["\\HasNoChildren", "\\Trash"]),
            ],
        )
    }

    fn dovecot() -> FolderListing {
        listing(
            "dovecot",
            vec![
                folder("INBOX", &[]),
                folder("Sent", &["\\Sent"]),
                folder("Drafts", &["\\Drafts"]),
                folder("Junk", &["\\Junk"]),
                folder("Trash", &["\\Trash"]),
                folder("Archive", &["\\Archive"]),
            ],
        )
    }

    fn sources(plan: &FolderPlan) -> Vec<&str> {
        plan.copies.iter().map(|c| c.source.as_str()).collect()
    }

    #[test]
    fn a_gmail_source_leaves_out_starred_and_important_and_says_why() {
        let (src, tgt) = (gmail(), dovecot());
        let mut folder_plan = plan(&src, &tgt, &PlanOptions::default()).unwrap();
        let skipped =
            gmail_system_folders(&mut folder_plan, &src, Provider::Gmail, Provider::Generic);
        let reasons: Vec<(&str, FolderSkipReason)> = skipped
            .iter()
            .map(|s| (s.folder.as_str(), s.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "[Gmail]/Important",
                    FolderSkipReason::GmailImportantIsARanking
                ),
                ("[Gmail]/Starred", FolderSkipReason::GmailStarredIsAFlag),
            ]
        );
        assert!(!sources(&folder_plan).contains(&"[Gmail]/Starred"));
        // System folders land on the target's special-use folders, labels keep their tree.
        let target_of = |s: &str| {
            folder_plan
                .copies
                .iter()
                .find(|c| c.source == s)
                .map(|c| c.target.name.clone())
        };
        assert_eq!(target_of("[Gmail]/Sent Mail").as_deref(), Some("Sent"));
        assert_eq!(target_of("[Gmail]/Spam").as_deref(), Some("Junk"));
        assert_eq!(target_of("Work/2024").as_deref(), Some("Work/2024"));
        // Another source keeps every folder.
        let mut other = plan(&src, &tgt, &PlanOptions::default()).unwrap();
        assert!(
            gmail_system_folders(&mut other, &src, Provider::Generic, Provider::Generic).is_empty()
        );
    }

    #[test]
    fn a_gmail_sources_all_mail_goes_to_the_archive_the_admin_or_the_target_names() {
        let src = gmail();
        assert_eq!(
            gmail_all_mail(&src, Provider::Gmail).as_deref(),
            Some("[Gmail]/All Mail")
        );
        // Another provider's \All folder is a folder like the others.
        assert_eq!(gmail_all_mail(&src, Provider::Generic), None);
        // Localised: the attribute tells.
        let german = listing(
            "gmail",
            vec![
                folder("INBOX", &[]),
                folder("[Google Mail]", &["\\Noselect"]),
                folder("[Google Mail]/Alle Nachrichten", &["\\All"]),
            ],
        );
        assert_eq!(
            gmail_all_mail(&german, Provider::Gmail).as_deref(),
            Some("[Google Mail]/Alle Nachrichten")
        );
        // The target's \Archive folder, else `Archive`, unless the admin named one.
        assert_eq!(archive_path(&dovecot(), None), ["Archive"]);
        let mut archives = dovecot();
        archives.folders.retain(|f| f.name != "Archive");
        archives
            .folders
            .push(folder("Old/Archives", &["\\Archive"]));
        assert_eq!(archive_path(&archives, None), ["Old", "Archives"]);
        archives.folders.pop();
        assert_eq!(archive_path(&archives, None), ["Archive"]);
        assert_eq!(
            archive_path(&dovecot(), Some("Mail/From Gmail")),
            ["Mail", "From Gmail"]
        );
        // Planned there, created as an archive, never onto a Gmail target's system folder.
        let mut pinned = BTreeMap::new();
        pinned.insert("[Gmail]/All Mail".to_owned(), archive_path(&archives, None));
        let options = PlanOptions {
            pinned,
            ..PlanOptions::default()
        };
        let folder_plan = plan(&src, &archives, &options).unwrap();
        let all = folder_plan
            .copies
            .iter()
            .find(|c| c.source == "[Gmail]/All Mail")
            .unwrap();
        assert_eq!(all.target.name, "Archive");
        assert!(all.create);
    }

    #[test]
    fn nothing_is_appended_to_a_gmail_targets_all_mail_or_starred() {
        // A Dovecot source with virtual \All and \Flagged folders, into Gmail.
        let src = listing(
            "dovecot",
            vec![
                folder("INBOX", &[]),
                folder("Projects", &[]),
                folder("Virtual/All", &["\\All"]),
                folder("Virtual/Flagged", &["\\Flagged"]),
                folder("Sent", &["\\Sent"]),
            ],
        );
        let tgt = gmail();
        let mut folder_plan = plan(&src, &tgt, &PlanOptions::default()).unwrap();
        let skipped =
            gmail_system_folders(&mut folder_plan, &src, Provider::Generic, Provider::Gmail);
        let skipped: Vec<&str> = skipped.iter().map(|s| s.folder.as_str()).collect();
        assert_eq!(skipped, ["Virtual/All", "Virtual/Flagged"]);
        assert!(
            folder_plan
                .copies
                .iter()
                .all(|c| !c.target.name.starts_with("[Gmail]/All")
                    && !c.target.name.starts_with("[Gmail]/Starred"))
        );
        let sent = folder_plan
            .copies
            .iter()
            .find(|c| c.source == "Sent")
            .unwrap();
        assert_eq!(sent.target.name, "[Gmail]/Sent Mail");
        assert!(sources(&folder_plan).contains(&"Projects"));
    }

    #[test]
    fn small_mailboxes_use_the_open_connection_pair_alone() {
        // 5 new messages over 3 folders: the pair the pass opened does it all.
        assert_eq!(connection_pairs(5, 3, 4), 1);
        assert_eq!(connection_pairs(249, 21, 4), 1);
        assert_eq!(connection_pairs(250, 21, 4), 2);
        // A large mailbox gets every connection it may have, never more than folders.
        assert_eq!(connection_pairs(100_000, 21, 4), 4);
        assert_eq!(connection_pairs(100_000, 2, 4), 2);
        assert_eq!(connection_pairs(100_000, 21, 1), 1);
        // Nothing queued or no connection allowed still means the one pair.
        assert_eq!(connection_pairs(0, 0, 4), 1);
        assert_eq!(connection_pairs(10_000, 5, 0), 1);
        assert_eq!(connection_pairs(u64::MAX, 21, 4), 4);
    }
}
