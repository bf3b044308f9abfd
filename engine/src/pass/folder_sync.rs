//! One folder, one source connection, one target connection: reconcile what a crash left
//! pending, rebuild the map after a UIDVALIDITY change, copy what is new, carry flag
//! changes and (optionally) deletions.
//!
//! # Exactly once
//! Every APPEND belongs to a journal group that is on disk (fsynced) before its first
//! byte goes out, and is committed with the target UIDs once they are known. A group
//! whose outcome is unknown (a crash, a cut connection) is reconciled before anything
//! else happens in the folder: the target's messages at or above the group's recorded
//! UIDNEXT are fingerprinted, matched ones are committed, and only the rest is sent
//! again. See `reconcile.rs` for the matching rules.
//!
//! # Throughput
//! Groups are pipelined: while the target stores group k (one MULTIAPPEND, one commit),
//! the source already delivers group k+1. Bodies are `Bytes` slices of the frames they
//! arrived in; a message over the stream threshold flows from the source socket to the
//! target socket chunk by chunk, so memory does not grow with message size.

use imapmirror_protocol::client::{ResponseCode, SelectedMailbox};
use imapmirror_protocol::{Error as ImapError, ListCommand, MailboxName, StatusKind};
use imapmirror_storage::{
    CopiedMessage, CopyGroup, FolderId, FolderMarks, GroupOutcome, JournalEntry, StoreError,
    UidMapEntry,
};

mod all_mail_by_bytes;
mod fingerprint_fetch;
mod flag_sync;
mod gmail_archive;
mod message_copy;
mod sync_context;

pub(crate) use fingerprint_fetch::fetch_fingerprints;
use fingerprint_fetch::unclaimed_target_messages;
use flag_sync::{mirror_deletions, sync_flags};
use message_copy::Copier;
pub(crate) use sync_context::{FolderTask, LabelFolder, SyncContext, SyncSettings};

use crate::endpoint::pool::{CommandCounters, Connection};
use crate::error::Error;
use crate::pass::folder_check::{
    CheckOptions, FlagSync, FolderWork, StatusValues, decide, emptied_folder, may_be_emptied,
};
use crate::pass::reconcile::{CandidatePool, Found, Wanted};
use crate::pass::report::{FolderSkipReason, PassTotals, Progress, SkippedFolder};

/// Map entries recorded per store call during a rebuild.
const REBUILD_CHUNK: usize = 1000;

/// How a folder's sync ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FolderResult {
    Unchanged,
    Synced,
    /// The source folder was gone when opened; skipped for this pass (recorded in the
    /// pass's totals), its stored state and target folder left as they are.
    Vanished,
}

/// Syncs one folder. Errors leave the journal consistent: a retry (or the next pass)
/// reconciles whatever is pending.
pub(crate) async fn sync_folder(
    ctx: &SyncContext<'_>,
    src: &mut Connection,
    tgt: &mut Connection,
    task: &FolderTask,
) -> Result<FolderResult, Error> {
    let store = ctx.store;
    let folder_label = format!("`{}`", task.source_name);
    // One job: each step's error keeps the action it was reported with.
    let mailbox = ctx.mailbox;
    let source_name = task.source_name.clone();
    let (mut folder, state, pending) = store
        .run_value(move |db| -> Result<_, (&'static str, StoreError)> {
            let folder = db
                .folder(mailbox, &source_name)
                .map_err(|e| ("registering the folder", e))?;
            let state = db
                .folder_state(folder)
                .map_err(|e| ("reading the state of the folder", e))?;
            let pending = db
                .pending_in_folder(mailbox, folder)
                .map_err(|e| ("reading the journal of the folder", e))?;
            Ok((folder, state, pending))
        })
        .await
        .map_err(ctx.store_err(format!("registering the folder {folder_label}")))?
        .map_err(|(action, e)| ctx.store_err(format!("{action} {folder_label}"))(e))?;
    let condstore = src.has("CONDSTORE");
    let check = CheckOptions {
        mirror_deletions: ctx.settings.mirror_deletions,
        source_condstore: condstore,
    };
    let quick = decide(
        &state.marks,
        &state.counters,
        &task.source_status,
        task.target_status.as_ref(),
        &check,
    );
    // Gmail's All Mail is looked at every pass: a message archived since (its last label
    // removed) changes nothing All Mail's status shows.
    let every_pass = task.gmail_all_mail || task.all_mail_by_bytes.is_some();
    if quick == FolderWork::Unchanged && pending.is_empty() && !every_pass {
        return Ok(FolderResult::Unchanged);
    }
    (ctx.progress)(Progress::FolderStarted {
        folder: task.source_name.clone(),
    });

    let (t_sel, s_sel) = if pending.is_empty()
        && !every_pass
        && may_be_emptied(&state.marks, &state.counters, &task.source_status)
    {
        // Listed without a message, and nothing of it recorded: the source's EXAMINE
        // alone may settle it (a Trash or Junk emptied before the first pass, or again
        // since), and the target's SELECT, for which a server builds the folder's
        // index, is left out. Found with mail after all, it goes on as below.
        CommandCounters::bump(&src.counters.selects);
        let s_sel = src
            .session
            .examine(MailboxName::Wire(&task.source_wire), condstore)
            .await;
        if let Ok(examined) = &s_sel
            && let Some(marks) = emptied_folder(
                &state.marks,
                &state.counters,
                &opened_status(examined),
                task.target_status.as_ref(),
            )
        {
            let marks = FolderMarks {
                target_name: Some(task.target_name.clone()),
                ..marks
            };
            store
                .run(move |db| db.update_folder_marks(folder, |m| *m = marks))
                .await
                .map_err(ctx.store_err(format!("updating the folder {folder_label}")))?;
            finished(ctx, task, 0, 0);
            return Ok(FolderResult::Synced);
        }
        CommandCounters::bump(&tgt.counters.selects);
        let t_sel = tgt
            .session
            .select(MailboxName::Unicode(&task.target_name), false)
            .await;
        (t_sel, s_sel)
    } else {
        // Both folders opened at once: one round trip where a folder's fixed cost
        // matters most (many small mailboxes). Pending groups are still reconciled on
        // the target before anything of the source is read; EXAMINE reads nothing but
        // the status.
        CommandCounters::bump(&tgt.counters.selects);
        CommandCounters::bump(&src.counters.selects);
        tokio::join!(
            tgt.session
                .select(MailboxName::Unicode(&task.target_name), false),
            src.session
                .examine(MailboxName::Wire(&task.source_wire), condstore),
        )
    };
    let t_sel =
        t_sel.map_err(ctx.imap_err(format!("opening the target folder `{}`", task.target_name)))?;
    let Some(t_validity) = t_sel.uid_validity else {
        return Err(Error::InconsistentTarget {
            server: tgt.server().to_owned(),
            mailbox: ctx.mailbox_label.to_owned(),
            folder: task.target_name.clone(),
            problem: "SELECT reported no UIDVALIDITY".into(),
        });
    };
    let t_next = t_sel.uid_next.unwrap_or(1);
    let s_sel = match s_sel {
        Ok(selected) => selected,
        Err(e) => {
            let gone = source_folder_vanished(src, &task.source_wire, &e)
                .await
                .map_err(ctx.imap_err(format!(
                    "checking whether the source folder {folder_label} still exists"
                )))?;
            if !gone {
                let action = format!("opening the source folder {folder_label}");
                return Err(ctx.imap_err(action)(e));
            }
            // Nothing of the folder was touched yet: pending groups stay in the journal and
            // are reconciled when the folder is back, like the rest of its state.
            skip_vanished_folder(ctx.totals, &task.source_name, &e);
            finished(ctx, task, 0, 0);
            return Ok(FolderResult::Vanished);
        }
    };
    let s_status = opened_status(&s_sel);
    let t_status = StatusValues {
        uid_validity: Some(t_validity),
        uid_next: Some(t_next),
        highest_modseq: t_sel.highest_modseq,
        messages: Some(t_sel.exists),
    };

    for entry in &pending {
        reconcile_pending(ctx, tgt, folder, entry, t_validity, task).await?;
    }

    let state = store
        .run(move |db| db.folder_state(folder))
        .await
        .map_err(ctx.store_err(format!("reading the state of the folder {folder_label}")))?;
    let work = decide(
        &state.marks,
        &state.counters,
        &s_status,
        Some(&t_status),
        &check,
    );
    let s_validity = s_status.uid_validity.unwrap_or(0);
    if let FolderWork::Rebuild(reason) = work {
        tracing::warn!(folder = %task.source_name, %reason, "rebuilding the folder's map by fingerprint");
        folder = rebuild_map(ctx, src, tgt, folder, task, s_validity, t_validity).await?;
    }
    let target_name = task.target_name.clone();
    store
        .run(move |db| {
            db.update_folder_marks(folder, |m| {
                m.source_uidvalidity = Some(s_validity);
                m.target_uidvalidity = Some(t_validity);
                m.target_name = Some(target_name);
            })
        })
        .await
        .map_err(ctx.store_err(format!("updating the folder {folder_label}")))?;

    let mut copier = Copier::new(ctx, folder, task, t_validity, t_next);
    // Everything below this UID is copied, skipped or (All Mail by bytes) judged now.
    let done_before = match &task.all_mail_by_bytes {
        None => {
            copier.copy_new(src, tgt, s_status.uid_next).await?;
            s_status.uid_next
        }
        Some(labels) => {
            // Only messages All Mail held before the label folders were synced: a later
            // one may be in a label folder whose copy this pass missed.
            let bound = match (task.source_status.uid_next, s_status.uid_next) {
                (Some(listed), Some(now)) => listed.min(now),
                (listed, now) => listed.or(now).unwrap_or(1),
            };
            let judged = all_mail_by_bytes::sync_all_mail(
                ctx,
                src,
                tgt,
                &mut copier,
                folder,
                task,
                labels,
                bound,
            )
            .await?;
            Some(judged)
        }
    };
    let (copied, skipped) = (copier.copied, copier.skipped);

    let state = store
        .run(move |db| db.folder_state(folder))
        .await
        .map_err(ctx.store_err(format!("reading the state of the folder {folder_label}")))?;
    let flags = match work {
        FolderWork::Sync { flags, .. } => flags,
        // After a rebuild the map's flags are the target's: compare all.
        FolderWork::Rebuild(_) => FlagSync::AllFlags,
        FolderWork::Unchanged => FlagSync::Skip,
    };
    let flags = if state.counters.messages == 0 {
        FlagSync::Skip
    } else {
        flags
    };
    sync_flags(ctx, src, tgt, folder, task, flags).await?;
    let deletions = match work {
        FolderWork::Sync { deletions, .. } => deletions,
        FolderWork::Rebuild(_) => ctx.settings.mirror_deletions,
        FolderWork::Unchanged => false,
    };
    if deletions {
        mirror_deletions(ctx, src, tgt, folder, task).await?;
    }

    let done_below = done_before.map(|n| n.saturating_sub(1));
    let highest_modseq = s_status.highest_modseq;
    store
        .run(move |db| {
            db.update_folder_marks(folder, |m| {
                if let Some(d) = done_below {
                    m.highest_copied_uid = m.highest_copied_uid.max(d);
                }
                m.highest_modseq_seen = highest_modseq;
            })
        })
        .await
        .map_err(ctx.store_err(format!("updating the folder {folder_label}")))?;
    finished(ctx, task, copied, skipped);
    Ok(FolderResult::Synced)
}

/// A folder's status values as its SELECT or EXAMINE reported them (EXISTS for MESSAGES).
fn opened_status(opened: &SelectedMailbox) -> StatusValues {
    StatusValues {
        uid_validity: opened.uid_validity,
        uid_next: opened.uid_next,
        highest_modseq: opened.highest_modseq,
        messages: Some(opened.exists),
    }
}

/// Reports the folder of `task` done by this pass (not found unchanged).
fn finished(ctx: &SyncContext<'_>, task: &FolderTask, copied: u64, skipped: u64) {
    (ctx.progress)(Progress::FolderFinished {
        folder: task.source_name.clone(),
        copied,
        skipped,
        unchanged: false,
    });
}

/// True when `error` is a refusal carrying RFC 5530's `[NONEXISTENT]`: the mailbox
/// named in the command does not exist.
pub(crate) fn says_nonexistent(error: &ImapError) -> bool {
    let refused = matches!(
        error,
        ImapError::Refused {
            status: StatusKind::No,
            ..
        }
    );
    refused
        && matches!(
            error.refusal_code(),
            Some(ResponseCode::Other { name, .. }) if name.eq_ignore_ascii_case("NONEXISTENT")
        )
}

/// Whether the source folder `wire`, which the pass listed, is gone, given the error
/// that opening or reading it gave. `[NONEXISTENT]` says so; a server without RFC 5530
/// codes only says NO (with free text), so the folder counts as gone when a LIST of its
/// name then no longer shows it. Any other error is not a vanished folder.
pub(crate) async fn source_folder_vanished(
    conn: &mut Connection,
    wire: &[u8],
    error: &ImapError,
) -> Result<bool, ImapError> {
    if says_nonexistent(error) {
        return Ok(true);
    }
    if !matches!(
        error,
        ImapError::Refused {
            status: StatusKind::No,
            ..
        }
    ) {
        return Ok(false);
    }
    CommandCounters::bump(&conn.counters.lists);
    let entries = conn
        .session
        .list(&ListCommand {
            reference: MailboxName::Unicode(""),
            pattern: MailboxName::Wire(wire),
            select_special_use: false,
            return_special_use: false,
            return_subscribed: false,
            return_status: &[],
        })
        .await?;
    // The name as a pattern may hold `%` or `*` and match others: only its own entry counts.
    Ok(!entries
        .iter()
        .any(|e| e.wire_name == wire && e.is_selectable()))
}

/// Records a source folder found gone as skipped for this pass, with a warning: the
/// pass goes on with the other folders and the mailbox can still end `Synced`. Neither
/// the target folder nor the folder's stored state is touched, so a folder that comes
/// back (a rename in progress, a restore) resumes where it was.
pub(crate) fn skip_vanished_folder(totals: &PassTotals, folder: &str, error: &ImapError) {
    tracing::warn!(
        folder = %folder,
        error = %error,
        "the source folder disappeared after it was listed; skipping it for this pass"
    );
    totals.skip_folder(SkippedFolder {
        folder: folder.to_owned(),
        reason: FolderSkipReason::VanishedFromSource,
        detail: None,
    });
}

/// Resolves one pending group: commits what the target holds, aborts the rest.
async fn reconcile_pending(
    ctx: &SyncContext<'_>,
    tgt: &mut Connection,
    folder: FolderId,
    entry: &JournalEntry,
    t_validity: u32,
    task: &FolderTask,
) -> Result<(), Error> {
    let task_attempt = task.retry_attempt;
    let all_mail_index = task.all_mail_index();
    let group = &entry.group;
    if group.target_uidvalidity != t_validity {
        // The folder those APPENDs went to no longer exists: nothing of it is there.
        let id = entry.id;
        ctx.store
            .run(move |db| db.abort(id))
            .await
            .map_err(ctx.store_err("dropping a journal group of a replaced target folder"))?;
        return Ok(());
    }
    // The session that carried the group may have sent a whole APPEND just before it
    // died, and the server may still be committing it: reconciling before that commit
    // would miss the messages and send them twice. A group found whole is settled; one
    // with messages missing is looked for again once a settle time has passed since the
    // latest moment that session can have sent anything — unless every command of the
    // connections given up since was answered (or refused before the server's BYE), so
    // that nothing of the group can still arrive (`settle_wait`).
    let (mut found, mut missing) = find_group_on_target(ctx, tgt, folder, group).await?;
    if !missing.is_empty() {
        let wait = settle_wait(
            entry.begun,
            ctx.store.opened_at(),
            crate::endpoint::pool::abandoned_target_connections(),
            imapmirror_storage::Timestamp::now(),
            ctx.settings.crash_settle,
            settle_after_bye(ctx.settings.crash_settle, task_attempt),
        );
        if !wait.is_zero() {
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                missing = missing.len(),
                "waiting for an interrupted copy group to settle on the target"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = ctx.cancel.cancelled() => return Err(Error::Stopped { mailbox: ctx.mailbox_label.to_owned() }),
            }
            (found, missing) = find_group_on_target(ctx, tgt, folder, group).await?;
        }
    }
    tracing::info!(
        folder = %group.target_folder,
        found = found.len(),
        missing = missing.len(),
        "reconciled an interrupted copy group"
    );
    if found.is_empty() {
        let id = entry.id;
        ctx.store
            .run(move |db| db.abort(id))
            .await
            .map_err(ctx.store_err("dropping a journal group that never reached the target"))?;
        return Ok(());
    }
    PassTotals::add(&ctx.totals.reconciled, found.len() as u64);
    let outcome = GroupOutcome {
        copied: found
            .into_iter()
            .map(|f| CopiedMessage {
                source_uid: f.source_uid,
                target_uid: f.target_uid,
                flags: f.flags,
            })
            .collect(),
        skipped: Vec::new(),
        highest_copied_uid: None,
        target_uidnext: None,
        all_mail_index,
    };
    let id = entry.id;
    ctx.store
        .run(move |db| db.commit(id, &outcome))
        .await
        .map_err(ctx.store_err("committing a reconciled journal group"))
}

/// Looks for a journal group's messages on the target, at or above the UIDNEXT recorded
/// before it went out: what was found, and the source UIDs not (yet) there.
async fn find_group_on_target(
    ctx: &SyncContext<'_>,
    tgt: &mut Connection,
    folder: FolderId,
    group: &CopyGroup,
) -> Result<(Vec<Found>, Vec<u32>), Error> {
    // The folder may have been selected a while ago, and a server reports messages that
    // arrived since only when the session syncs (Dovecot: at the end of a command, not
    // for a UID FETCH of `n:*`): a NOOP brings a late commit into view.
    tgt.session.noop().await.map_err(ctx.imap_err(format!(
        "refreshing the target folder `{}` after an interrupted copy",
        group.target_folder
    )))?;
    let min = group.target_uidnext.max(1);
    let what = format!(
        "the target folder `{}` after an interrupted copy",
        group.target_folder
    );
    let mut pool = unclaimed_target_messages(ctx, tgt, folder, min, &[], &what).await?;
    let wanted: Vec<Wanted> = group
        .messages
        .iter()
        .map(|m| Wanted {
            source_uid: m.source_uid,
            fingerprint: m.fingerprint,
            min_target_uid: min,
        })
        .collect();
    Ok(pool.match_all(&wanted))
}

/// How long a reconcile of a journal group begun at `begun` waits before reading the
/// target again, its messages not all found. The session that carried the group ended no
/// later than:
/// - `store_opened`, if an earlier process began the group: that process had exited
///   (and its connections were closed) before this one took the state directory's lock,
///   however long its group took to send; the whole `settle` counts from there;
/// - otherwise the last time this process gave up a target connection that may have
///   left an APPEND undecided, after the group began (`abandoned`): the whole `settle`
///   after a link that broke without a word from the server (a test relay shows Dovecot
///   committing an APPEND half a second after such a cut), `after_bye` after a
///   connection the server closed itself. A connection whose every command was answered,
///   or that the server closed after refusing the command in flight (Exchange Online
///   drops connections so, dozens of times in a long migration), is in neither: nothing
///   of the group can still arrive, and there is no wait.
///
/// Never longer than `settle`.
fn settle_wait(
    begun: imapmirror_storage::Timestamp,
    store_opened: imapmirror_storage::Timestamp,
    abandoned: crate::endpoint::pool::AbandonedTargets,
    now: imapmirror_storage::Timestamp,
    settle: std::time::Duration,
    after_bye: std::time::Duration,
) -> std::time::Duration {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let since_begun = |t: Option<imapmirror_storage::Timestamp>| t.filter(|t| *t >= begun);
    let deadlines = [
        (begun < store_opened).then_some((store_opened, settle)),
        since_begun(abandoned.cut).map(|t| (t, settle)),
        since_begun(abandoned.closed).map(|t| (t, after_bye.min(settle))),
    ];
    let deadline = deadlines
        .into_iter()
        .flatten()
        .map(|(t, wait)| t.unix_millis().saturating_add(ms(wait)))
        .max()
        .unwrap_or(0);
    let left = deadline.saturating_sub(now.unix_millis()).min(ms(settle));
    std::time::Duration::from_millis(left)
}

/// The settle time after a connection the server closed with commands unanswered: a
/// tenth of the full one, doubled with each retry in a row that made no progress
/// (`attempt`, 0 for a folder's first attempt), up to the full one. A server that said
/// BYE has ended the session itself and commits what it had taken at once; if drops
/// keep coming without progress, the wait grows back to the full settle time.
fn settle_after_bye(settle: std::time::Duration, attempt: u32) -> std::time::Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    (settle / 10).saturating_mul(1u32 << doublings).min(settle)
}

/// Starts the folder's map afresh after a UIDVALIDITY change and fills it by matching
/// fingerprints of every source message against every target message (a full read of
/// both folders). Returns the folder's new id.
async fn rebuild_map(
    ctx: &SyncContext<'_>,
    src: &mut Connection,
    tgt: &mut Connection,
    folder: FolderId,
    task: &FolderTask,
    s_validity: u32,
    t_validity: u32,
) -> Result<FolderId, Error> {
    let marks = FolderMarks {
        target_name: Some(task.target_name.clone()),
        source_uidvalidity: Some(s_validity),
        target_uidvalidity: Some(t_validity),
        ..FolderMarks::default()
    };
    let new = ctx
        .store
        .run(move |db| db.reset_folder(folder, marks))
        .await
        .map_err(ctx.store_err(format!("resetting the folder `{}`", task.source_name)))?;
    let targets = fetch_fingerprints(
        ctx,
        tgt,
        "1:*",
        1,
        &format!("the target folder `{}`", task.target_name),
    )
    .await?;
    let sources = fetch_fingerprints(
        ctx,
        src,
        "1:*",
        1,
        &format!("the source folder `{}`", task.source_name),
    )
    .await?;
    let mut pool = CandidatePool::new(targets.into_iter().map(|(c, _)| c), &|_| false);
    let mut entries = Vec::new();
    let mut sources = sources;
    sources.sort_by_key(|(c, _)| c.uid);
    for (s, size) in sources {
        let wanted = Wanted {
            source_uid: s.uid,
            fingerprint: s.fingerprint,
            min_target_uid: 1,
        };
        if let Some(found) = pool.take(&wanted) {
            entries.push((
                s.uid,
                UidMapEntry {
                    target_uid: found.target_uid,
                    flags: found.flags,
                    fingerprint: s.fingerprint,
                    size,
                },
            ));
        }
    }
    PassTotals::add(&ctx.totals.reconciled, entries.len() as u64);
    while !entries.is_empty() {
        let rest = entries.split_off(entries.len().min(REBUILD_CHUNK));
        let chunk = std::mem::replace(&mut entries, rest);
        // One job per chunk: a rebuild's batches stay bounded, and so does the time
        // the storage thread spends on any one of them.
        let indexed = task.label_fingerprints;
        ctx.store
            .run(move |db| db.uid_map_record_indexed(new, chunk, indexed))
            .await
            .map_err(ctx.store_err(format!("rebuilding the map of `{}`", task.source_name)))?;
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: StatusKind, code: Option<ResponseCode>) -> ImapError {
        ImapError::Refused {
            server: "127.0.0.1:143".into(),
            command: "EXAMINE \"Gone\"".into(),
            status,
            code: code.map(Box::new),
            text: "Mailbox doesn't exist: Gone".into(),
        }
    }

    fn code(name: &str) -> Option<ResponseCode> {
        Some(ResponseCode::Other {
            name: name.into(),
            arg: None,
        })
    }

    #[test]
    fn only_a_no_with_nonexistent_says_the_folder_is_gone() {
        // Dovecot: `a NO [NONEXISTENT] Mailbox doesn't exist: Gone`.
        assert!(says_nonexistent(&refusal(
            StatusKind::No,
            code("NONEXISTENT")
        )));
        assert!(says_nonexistent(&refusal(
            StatusKind::No,
            code("nonexistent")
        )));
        // A NO for another reason, a bare NO, or a BAD is not a vanished folder: the first
        // two are checked with a LIST, the last fails the folder as before.
        assert!(!says_nonexistent(&refusal(StatusKind::No, code("NOPERM"))));
        assert!(!says_nonexistent(&refusal(StatusKind::No, None)));
        assert!(!says_nonexistent(&refusal(
            StatusKind::Bad,
            code("NONEXISTENT")
        )));
        let closed = ImapError::ConnectionClosed {
            server: "127.0.0.1:143".into(),
            during: "selecting",
        };
        assert!(!says_nonexistent(&closed));
    }

    #[test]
    fn a_vanished_folder_is_recorded_as_skipped() {
        let totals = PassTotals::default();
        skip_vanished_folder(
            &totals,
            "Projects.Old",
            &refusal(StatusKind::No, code("NONEXISTENT")),
        );
        assert_eq!(
            totals.skipped_folders(),
            vec![SkippedFolder {
                folder: "Projects.Old".into(),
                reason: FolderSkipReason::VanishedFromSource,
                detail: None,
            }]
        );
    }

    #[test]
    fn settle_counts_from_the_end_of_the_session_that_carried_the_group() {
        use crate::endpoint::pool::AbandonedTargets;
        use imapmirror_storage::Timestamp;
        let t = |s: u64| Timestamp::from_unix_millis(1_000_000 + s * 1000);
        let secs = std::time::Duration::from_secs;
        let settle = secs(10);
        let short = secs(1);
        let none = AbandonedTargets::default();
        let cut = |s| AbandonedTargets {
            cut: Some(t(s)),
            closed: None,
        };
        let closed = |s| AbandonedTargets {
            cut: None,
            closed: Some(t(s)),
        };
        let wait = |begun, opened, abandoned, now| {
            settle_wait(t(begun), t(opened), abandoned, t(now), settle, short)
        };
        // A killed process took 30 s to send its group (a large message on a slow
        // link); this process started at once. Counting from the group's begin would not
        // wait at all; counting from the lock this process took waits the whole settle.
        assert_eq!(wait(0, 31, none, 31), secs(10));
        assert_eq!(wait(0, 31, none, 35), secs(6));
        // A crash long ago: the group settled long before this process started.
        assert_eq!(wait(0, 500, none, 520), secs(0));
        // A group of this process whose connection was cut 3 s ago, 40 s after begin.
        assert_eq!(wait(100, 0, cut(140), 143), secs(7));
        // The server closed it (BYE) with an APPEND unanswered: the short settle.
        assert_eq!(wait(100, 0, closed(140), 140), secs(1));
        assert_eq!(wait(100, 0, closed(140), 143), secs(0));
        // Both: the later deadline.
        let both = AbandonedTargets {
            cut: Some(t(140)),
            closed: Some(t(145)),
        };
        assert_eq!(wait(100, 0, both, 145), secs(5));
        // Nothing given up since it began left an APPEND undecided: no wait at all.
        assert_eq!(wait(100, 0, cut(50), 104), secs(0));
        assert_eq!(wait(100, 0, none, 100), secs(0));
        // A clock that went backwards never makes the wait longer than the settle time.
        assert_eq!(wait(100, 0, cut(140), 90), secs(10));
    }

    #[test]
    fn the_settle_after_a_bye_doubles_only_while_retries_make_no_progress() {
        let ms = std::time::Duration::from_millis;
        let settle = ms(10_000);
        let waits: Vec<_> = (0..8).map(|a| settle_after_bye(settle, a)).collect();
        assert_eq!(
            waits,
            [
                ms(1000),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(10_000),
                ms(10_000),
                ms(10_000)
            ]
        );
        assert_eq!(settle_after_bye(settle, u32::MAX), settle);
    }
}
