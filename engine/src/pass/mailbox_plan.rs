//! What a pass would do to one mailbox, found without doing it: the view of a mailbox
//! that `batch start --dry-run` prints and `batch estimate` times.
//!
//! It logs in to both sides, lists them and plans the folders as a pass does
//! ([`MailboxJob::plan_folders`]: exclusions, special uses, renames to avoid clashes,
//! Gmail's system folders, folders pinned by earlier passes), decides each folder from
//! its stored state ([`decide`]) and sizes what is new the way the copier would: the UIDs
//! above the folder's watermark that the uid map does not hold, cut into steps by
//! [`plan_copies`] with the batch's and the target's size limits. A folder nothing was
//! copied from yet is sized from `STATUS (MESSAGES SIZE)` where the source offers
//! `STATUS=SIZE` (RFC 8438) and no size limit applies, without opening it.
//!
//! Nothing is written: the target's folders are listed, never opened (no CREATE, SELECT,
//! APPEND or STORE), the source's are opened with EXAMINE, and the store is only read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use imapmirror_protocol::{FetchAttr, MailboxName, StatusAttr};
use imapmirror_storage::{Database, FolderId, FolderState, MailboxId, StoreError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::endpoint::pool::{CommandCounters, Connection};
use crate::endpoint::provider_profile::Provider;
use crate::error::Error;
use crate::pass::copy_plan::{CopyStep, NewMessage, plan_copies};
use crate::pass::folder_check::{CheckOptions, FolderWork, decide};
use crate::pass::folder_plan::{ExcludedFolder, Exclusion, ExclusionReason};
use crate::pass::mailbox_job::{
    MailboxJob, PlannedFolders, close_pair, pipelined_status, status_values,
};

/// The prefix of the estimate's scratch folders on the target: nothing else is named
/// like it, so a folder left by an interrupted estimate is known as such and removed.
pub const SCRATCH_PREFIX: &str = "imapmirror-estimate-";

/// One folder the pass would copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderPlanRow {
    /// The source folder.
    pub source: String,
    /// The target folder it maps to.
    pub target: String,
    /// The pass would create the target folder.
    pub create: bool,
    /// From the stored state: `new` (never copied), `changed`, `unchanged`, or `rebuild`
    /// (a UIDVALIDITY changed: the map is rebuilt by fingerprint, so what the rows say
    /// would be copied is the most it could be).
    pub state: String,
    /// Messages in the source folder.
    pub source_messages: u64,
    /// Messages the pass would copy, and their bytes.
    pub messages: u64,
    pub bytes: u64,
    /// APPEND groups (and large messages sent alone) those messages would take.
    #[serde(default)]
    pub groups: u64,
    /// Messages copied by earlier passes (the store's counters).
    pub already_migrated: u64,
    /// Messages the pass would skip as too large, their bytes, and why.
    pub too_large: u64,
    pub too_large_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
    /// How the sizes were learnt: `status-size`, `fetch`, or `stored` (nothing new).
    pub sized_by: String,
}

/// A source folder the pass would leave out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFolderRow {
    pub folder: String,
    pub reason: String,
}

/// What a pass would do to one mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxPlan {
    pub email: String,
    /// The mailbox's status in the batch.
    pub status: String,
    pub folders: Vec<FolderPlanRow>,
    pub skipped_folders: Vec<SkippedFolderRow>,
    /// Totals of the folder rows.
    pub messages: u64,
    pub bytes: u64,
    pub too_large: u64,
    pub already_migrated: u64,
    pub source_messages: u64,
    /// Target folders the pass would create.
    pub folders_to_create: u64,
    /// Seconds it took to log in to both sides and list them.
    pub connect_seconds: f64,
    /// The target's personal namespace prefix (where the estimate puts its scratch folder).
    #[serde(skip)]
    pub(crate) target_prefix: String,
    /// Target folders an interrupted estimate left behind.
    #[serde(skip)]
    pub(crate) leftover_scratch: Vec<String>,
}

/// A folder's stored state, its id, and how many journal groups are pending in it.
type StoredFolderState = (FolderId, FolderState, usize);

fn stored_state(
    db: &Database,
    mailbox: MailboxId,
    source_name: &str,
) -> Result<Option<StoredFolderState>, StoreError> {
    let Some(folder) = db.find_folder(mailbox, source_name)? else {
        return Ok(None);
    };
    let state = db.folder_state(folder)?;
    let pending = db.pending_in_folder(mailbox, folder)?.len();
    Ok(Some((folder, state, pending)))
}

/// Why an excluded folder is left out, as the dry run says it; `None` for what is not a
/// folder with mail (the namespace's root, hierarchy without copied children).
fn exclusion_phrase(excluded: &ExcludedFolder) -> Option<String> {
    match &excluded.reason {
        ExclusionReason::Excluded(e) => Some(match e {
            Exclusion::Name(n) => format!("excluded by the batch (--exclude {n})"),
            Exclusion::Glob(g) => format!("excluded by the batch (--exclude {g})"),
            Exclusion::SpecialUse(u) => {
                format!("excluded by the batch (--exclude {})", u.attribute())
            }
        }),
        ExclusionReason::ExcludedSpecialUse(u) => {
            Some(format!("a {} folder, excluded by the batch", u.attribute()))
        }
        ExclusionReason::OutsideUserRoot => Some("not under the row's UserRoot".to_owned()),
        // Reported from the pass's own skips, with how to include it.
        ExclusionReason::OutsidePersonalNamespace
        | ExclusionReason::NamespaceRoot
        | ExclusionReason::NoSelectWithoutCopiedChildren => None,
    }
}

impl MailboxJob {
    /// Plans a pass over this mailbox without making it (see the module docs). `status`
    /// is the mailbox's status in its batch, carried into the plan.
    pub async fn plan_only(
        &self,
        store: &imapmirror_storage::Store,
        status: &str,
        cancel: &CancellationToken,
    ) -> Result<MailboxPlan, Error> {
        let span = tracing::info_span!("plan", batch = %self.batch, mailbox = %self.email);
        self.plan_only_inner(store, status, cancel)
            .instrument(span)
            .await
    }

    async fn plan_only_inner(
        &self,
        store: &imapmirror_storage::Store,
        status: &str,
        cancel: &CancellationToken,
    ) -> Result<MailboxPlan, Error> {
        let src_counters = Arc::new(CommandCounters::default());
        let tgt_counters = Arc::new(CommandCounters::default());
        let started = Instant::now();
        let (mut src, mut tgt) = self
            .connect_pair(&src_counters, &tgt_counters, cancel)
            .await?;
        let listed = tokio::try_join!(self.listing(&mut src, true), self.listing(&mut tgt, false));
        let connect_seconds = started.elapsed().as_secs_f64();
        let result = match listed {
            Ok(((src_listing, src_names), (tgt_listing, tgt_names))) => {
                let mut plan = MailboxPlan {
                    email: self.email.clone(),
                    status: status.to_owned(),
                    folders: Vec::new(),
                    skipped_folders: Vec::new(),
                    messages: 0,
                    bytes: 0,
                    too_large: 0,
                    already_migrated: 0,
                    source_messages: 0,
                    folders_to_create: 0,
                    connect_seconds,
                    target_prefix: tgt_listing.prefix.clone(),
                    leftover_scratch: tgt_listing
                        .folders
                        .iter()
                        .filter(|f| {
                            f.name
                                .strip_prefix(tgt_listing.prefix.as_str())
                                .unwrap_or(&f.name)
                                .starts_with(SCRATCH_PREFIX)
                        })
                        .map(|f| f.name.clone())
                        .collect(),
                };
                let sizes = Sizing {
                    src: &mut src,
                    tgt: &mut tgt,
                    src_names: &src_names,
                    tgt_names: &tgt_names,
                };
                self.fill_plan(store, &mut plan, &src_listing, &tgt_listing, sizes)
                    .await
                    .map(|()| plan)
            }
            Err(e) => Err(e),
        };
        close_pair(src, tgt).await;
        result
    }

    async fn fill_plan(
        &self,
        store: &imapmirror_storage::Store,
        plan: &mut MailboxPlan,
        src_listing: &crate::pass::folder_plan::FolderListing,
        tgt_listing: &crate::pass::folder_plan::FolderListing,
        sizing: Sizing<'_>,
    ) -> Result<(), Error> {
        let Sizing {
            src,
            tgt,
            src_names,
            tgt_names,
        } = sizing;
        let mailbox = self.email.as_str();
        // A Gmail source's All Mail is sized whole here, though the pass copies only its
        // archived mail (asked with X-GM-LABELS while copying, or told by its bytes after
        // the label folders without X-GM-EXT-1): the plan errs high there.
        let PlannedFolders {
            plan: folder_plan,
            skipped,
            ..
        } = self
            .plan_folders(
                store,
                src_listing,
                tgt_listing,
                Provider::resolve(self.options.source_provider, src.family),
                Provider::resolve(self.options.target_provider, tgt.family),
            )
            .await?;
        for excluded in &folder_plan.excluded {
            if let Some(reason) = exclusion_phrase(excluded) {
                plan.skipped_folders.push(SkippedFolderRow {
                    folder: excluded.source.clone(),
                    reason,
                });
            }
        }
        for s in &skipped {
            plan.skipped_folders.push(SkippedFolderRow {
                folder: s.folder.clone(),
                reason: s.reason.phrase().to_owned(),
            });
        }

        let source_condstore = src.has("CONDSTORE");
        let status_size = src.has("STATUS=SIZE");
        let check = CheckOptions {
            mirror_deletions: self.options.mirror_deletions,
            source_condstore,
        };
        // One pipelined STATUS per side for what LIST-STATUS did not say (and, where the
        // source offers it, every folder's size): one round trip each.
        let mut source_attrs = vec![
            StatusAttr::Messages,
            StatusAttr::UidNext,
            StatusAttr::UidValidity,
        ];
        if source_condstore {
            source_attrs.push(StatusAttr::HighestModSeq);
        }
        if status_size {
            source_attrs.push(StatusAttr::Size);
        }
        let source_wanted: Vec<(&str, &[u8])> = folder_plan
            .copies
            .iter()
            .filter_map(|c| src_names.get(&c.source).map(|l| (c, l)))
            .filter(|(_, l)| l.status.is_none() || status_size)
            .map(|(c, l)| (c.source.as_str(), l.wire.as_slice()))
            .collect();
        let target_attrs = [
            StatusAttr::Messages,
            StatusAttr::UidNext,
            StatusAttr::UidValidity,
        ];
        let target_wanted: Vec<(&str, &[u8])> = folder_plan
            .copies
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
        let source_statuses = pipelined_status(src, &source_wanted, &source_attrs)
            .await
            .map_err(status_err("source"))?;
        let target_statuses = pipelined_status(tgt, &target_wanted, &target_attrs)
            .await
            .map_err(status_err("target"))?;

        for copy in &folder_plan.copies {
            let Some(listed) = src_names.get(&copy.source) else {
                continue;
            };
            let asked = source_statuses.get(&copy.source);
            let Some(wire_status) = asked.or(listed.status.as_ref()) else {
                // Listed, but its STATUS refused: gone since the LIST, as a pass finds.
                plan.skipped_folders.push(SkippedFolderRow {
                    folder: copy.source.clone(),
                    reason: "the source refused its STATUS (gone since it was listed?)".to_owned(),
                });
                continue;
            };
            let source_status = status_values(wire_status);
            let source_size = asked.and_then(|s| s.size);
            let target = if copy.create {
                None
            } else {
                tgt_names.get(&copy.target.name)
            };
            let target_status = target
                .and_then(|t| t.status.as_ref())
                .or_else(|| target.and_then(|_| target_statuses.get(&copy.target.name)))
                .map(status_values);
            let append_limit = match (
                target
                    .and_then(|t| t.status.as_ref())
                    .and_then(|s| s.append_limit),
                tgt.append_limit(),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let (id, name) = (self.mailbox, copy.source.clone());
            let stored = store
                .run(move |db| stored_state(db, id, &name))
                .await
                .map_err(|e| Error::Store {
                    mailbox: mailbox.to_owned(),
                    action: format!("reading the stored state of the folder `{}`", copy.source),
                    source: Box::new(e),
                })?;
            let work = stored.as_ref().map(|(_, state, pending)| {
                (
                    decide(
                        &state.marks,
                        &state.counters,
                        &source_status,
                        target_status.as_ref(),
                        &check,
                    ),
                    *pending,
                )
            });
            let state = match work {
                None => "new",
                Some((FolderWork::Rebuild(_), _)) => "rebuild",
                Some((FolderWork::Unchanged, 0)) => "unchanged",
                Some(_) => "changed",
            };
            let already_migrated = stored.as_ref().map_or(0, |(_, s, _)| s.counters.messages);
            let mut row = FolderPlanRow {
                source: copy.source.clone(),
                target: copy.target.name.clone(),
                create: copy.create,
                state: state.to_owned(),
                source_messages: source_status.messages.map_or(0, u64::from),
                messages: 0,
                bytes: 0,
                groups: 0,
                already_migrated,
                too_large: 0,
                too_large_bytes: 0,
                size_limit: None,
                sized_by: "stored".to_owned(),
            };
            let limited = self.options.max_message_size.is_some() || append_limit.is_some();
            let copied_nothing = stored.as_ref().is_none_or(|(_, s, p)| {
                s.counters.messages == 0 && s.counters.skipped == 0 && *p == 0
            });
            if state == "unchanged" {
                // Nothing new, decided from STATUS alone, as the pass decides it.
            } else if let (true, false, Some(size)) = (copied_nothing, limited, source_size) {
                row.messages = row.source_messages;
                row.bytes = size;
                // The copier cuts groups by count and by bytes; with sizes unknown, the
                // larger of the two counts.
                let limits = &self.options.groups;
                row.groups = row
                    .messages
                    .div_ceil(limits.max_messages.max(1) as u64)
                    .max(size.div_ceil(limits.max_bytes.max(1)));
                row.sized_by = "status-size".to_owned();
            } else {
                let (watermark, folder) = match (&stored, work) {
                    (Some(_), Some((FolderWork::Rebuild(_), _))) | (None, _) => (0, None),
                    (Some((id, s, _)), _) => (s.marks.highest_copied_uid, Some(*id)),
                };
                let nothing_new = source_status
                    .uid_next
                    .is_some_and(|n| n <= watermark.saturating_add(1));
                if !nothing_new {
                    let new = self
                        .new_messages(store, src, &listed.wire, &copy.source, watermark, folder)
                        .await?;
                    match new {
                        Some(new) => {
                            row.sized_by = "fetch".to_owned();
                            for step in plan_copies(
                                &new,
                                &self.options.groups,
                                self.options.max_message_size,
                                append_limit,
                            ) {
                                match step {
                                    CopyStep::Group(ms) => {
                                        row.groups += 1;
                                        row.messages += ms.len() as u64;
                                        row.bytes += ms.iter().map(|m| m.size).sum::<u64>();
                                    }
                                    CopyStep::Large(m) => {
                                        row.groups += 1;
                                        row.messages += 1;
                                        row.bytes += m.size;
                                    }
                                    CopyStep::Skip { message, limit } => {
                                        row.too_large += 1;
                                        row.too_large_bytes += message.size;
                                        row.size_limit = Some(limit.to_string());
                                    }
                                }
                            }
                        }
                        None => {
                            plan.skipped_folders.push(SkippedFolderRow {
                                folder: copy.source.clone(),
                                reason: "the source would not open it (gone since it was listed?)"
                                    .to_owned(),
                            });
                            continue;
                        }
                    }
                }
            }
            plan.messages += row.messages;
            plan.bytes += row.bytes;
            plan.too_large += row.too_large;
            plan.already_migrated += row.already_migrated;
            plan.source_messages += row.source_messages;
            plan.folders_to_create += u64::from(row.create);
            plan.folders.push(row);
        }
        Ok(())
    }

    /// The messages of a source folder above `watermark` that the uid map of `folder`
    /// does not hold, with their sizes: what the copier would send. `None` when the
    /// source refuses to open the folder.
    async fn new_messages(
        &self,
        store: &imapmirror_storage::Store,
        src: &mut Connection,
        wire: &[u8],
        name: &str,
        watermark: u32,
        folder: Option<FolderId>,
    ) -> Result<Option<Vec<NewMessage>>, Error> {
        let imap_err = |action: String| {
            let mailbox = self.email.clone();
            move |e| Error::Imap {
                mailbox,
                action,
                source: Box::new(e),
            }
        };
        CommandCounters::bump(&src.counters.selects);
        match src.session.examine(MailboxName::Wire(wire), false).await {
            Ok(_) => {}
            Err(imapmirror_protocol::Error::Refused { .. }) => return Ok(None),
            Err(e) => return Err(imap_err(format!("opening the source folder `{name}`"))(e)),
        }
        let from = watermark.saturating_add(1);
        CommandCounters::bump(&src.counters.fetches);
        let action = format!("listing the new messages of the source folder `{name}`");
        let mut stream = src
            .session
            .uid_fetch(
                &format!("{from}:*"),
                &[FetchAttr::Uid, FetchAttr::Rfc822Size],
                None,
                false,
            )
            .await
            .map_err(imap_err(action.clone()))?;
        let mut sizes: HashMap<u32, u64> = HashMap::new();
        while let Some(m) = stream
            .next_message()
            .await
            .map_err(imap_err(action.clone()))?
        {
            // `N:*` also returns the highest message when it is below N.
            if let (Some(uid), Some(size)) = (m.meta.uid, m.meta.size)
                && uid >= from
            {
                sizes.insert(uid, size);
            }
        }
        drop(stream);
        let mapped: HashSet<u32> = match folder {
            Some(folder) => store
                .run(move |db| {
                    let mut mapped = HashSet::new();
                    for item in db.uid_map_range(folder, from..)? {
                        mapped.insert(item?.0);
                    }
                    Ok(mapped)
                })
                .await
                .map_err(|e| Error::Store {
                    mailbox: self.email.clone(),
                    action: format!("reading the uid map of the folder `{name}`"),
                    source: Box::new(e),
                })?,
            None => HashSet::new(),
        };
        Ok(Some(
            sizes
                .into_iter()
                .filter(|(uid, _)| !mapped.contains(uid))
                .map(|(uid, size)| NewMessage { uid, size })
                .collect(),
        ))
    }
}

/// The connections and listings a plan sizes its folders with.
struct Sizing<'a> {
    src: &'a mut Connection,
    tgt: &'a mut Connection,
    src_names: &'a HashMap<String, crate::pass::mailbox_job::Listed>,
    tgt_names: &'a HashMap<String, crate::pass::mailbox_job::Listed>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::folder_plan::SpecialUse;

    #[test]
    fn exclusions_are_said_the_way_the_batch_was_given_them() {
        let row = |reason| ExcludedFolder {
            source: "Junk".to_owned(),
            reason,
        };
        assert_eq!(
            exclusion_phrase(&row(ExclusionReason::Excluded(Exclusion::Name(
                "Junk".to_owned()
            ))))
            .as_deref(),
            Some("excluded by the batch (--exclude Junk)")
        );
        assert_eq!(
            exclusion_phrase(&row(ExclusionReason::ExcludedSpecialUse(SpecialUse::Junk)))
                .as_deref(),
            Some("a \\Junk folder, excluded by the batch")
        );
        // Hierarchy and namespace roots hold no mail: not listed as skipped.
        assert_eq!(exclusion_phrase(&row(ExclusionReason::NamespaceRoot)), None);
        assert_eq!(
            exclusion_phrase(&row(ExclusionReason::NoSelectWithoutCopiedChildren)),
            None
        );
    }
}
