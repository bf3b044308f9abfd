//! Gmail's archive as a move: a message of a Gmail source that lost its last label after
//! it was copied (the user pressed Archive: `\Inbox` removed) is copied from All Mail to
//! the target's archive folder, and its earlier copies leave the target folders of the
//! labels it no longer has. The target then shows it where Gmail does, once.
//!
//! The earlier copies are found by X-GM-MSGID ([`imapmirror_storage::GmailCopy`], recorded
//! when they were copied) and confirmed by the fingerprint in their folder's uid map. They
//! are removed only once the archive holds the message (All Mail's uid map has it): a
//! crash in between leaves the old copy and its record, and the next pass removes it.

use std::collections::BTreeMap;

use imapmirror_protocol::{Flag, MailboxName, StoreMode};
use imapmirror_storage::{Database, FolderId, MailboxId, StoreError};

use super::sync_context::{FolderTask, SyncContext};
use crate::endpoint::pool::{CommandCounters, Connection};
use crate::error::Error;
use crate::pass::copy_plan::uid_set;
use crate::pass::report::PassTotals;

/// An earlier copy to take off the target: its folder, source UID, target folder and UID.
pub(super) struct Leaving {
    pub(super) folder: FolderId,
    pub(super) source_uid: u32,
    pub(super) target_name: String,
    pub(super) target_uid: u32,
}

/// For `archived` (All Mail UID, X-GM-MSGID) of messages in no label: the earlier copies
/// of those already in the archive, and the ids whose records can go. Runs in a storage job.
fn leaving(
    db: &Database,
    mailbox: MailboxId,
    all_mail: FolderId,
    archived: &[(u32, u64)],
) -> Result<(Vec<Leaving>, Vec<u64>), StoreError> {
    let mut out = Vec::new();
    let mut done = Vec::new();
    for &(uid, msgid) in archived {
        let copies = db.gmail_copies(mailbox, msgid)?;
        if copies.iter().all(|c| c.folder == all_mail) {
            continue;
        }
        // Not in the archive yet (refused, too large): the old copies stay.
        if db.uid_map_get(all_mail, uid)?.is_none() {
            continue;
        }
        for c in copies.iter().filter(|c| c.folder != all_mail) {
            let Some(entry) = db.uid_map_get(c.folder, c.source_uid)? else {
                continue;
            };
            if entry.fingerprint != c.fingerprint {
                continue;
            }
            let Some(target_name) = db.folder_state(c.folder)?.marks.target_name else {
                continue;
            };
            out.push(Leaving {
                folder: c.folder,
                source_uid: c.source_uid,
                target_name,
                target_uid: entry.target_uid,
            });
        }
        done.push(msgid);
    }
    Ok((out, done))
}

/// Takes the earlier copies of newly archived messages off the target (see the module
/// docs). `archived`: All Mail UID and X-GM-MSGID of every message in no label. Leaves
/// `tgt` with the archive folder selected again.
pub(super) async fn move_archived(
    ctx: &SyncContext<'_>,
    tgt: &mut Connection,
    all_mail: FolderId,
    task: &FolderTask,
    archived: Vec<(u32, u64)>,
) -> Result<(), Error> {
    if archived.is_empty() {
        return Ok(());
    }
    let mailbox = ctx.mailbox;
    let (leaving, done) = ctx
        .store
        .run(move |db| leaving(db, mailbox, all_mail, &archived))
        .await
        .map_err(ctx.store_err("looking up earlier copies of archived Gmail messages"))?;
    take_off_target(ctx, tgt, task, leaving).await?;
    if !done.is_empty() {
        ctx.store
            .run(move |db| {
                for msgid in &done {
                    db.forget_gmail_id(mailbox, *msgid)?;
                }
                Ok(())
            })
            .await
            .map_err(ctx.store_err("forgetting the ids of archived Gmail messages"))?;
    }
    Ok(())
}

/// Takes earlier copies of messages now in the archive off the target folders they were
/// copied to (flagged `\Deleted`, expunged by UID where the target has UIDPLUS), then
/// forgets them in their folders' uid maps. Called only once the archive holds the
/// message: a crash before the map changes leaves the entries, and the next pass sends
/// the same STORE and UID EXPUNGE again, harmless for UIDs already gone. Shared by both
/// ways a Gmail source's archived mail is told (X-GM-LABELS, exact bytes). Leaves `tgt`
/// with the archive folder (`task`'s target) selected again.
pub(super) async fn take_off_target(
    ctx: &SyncContext<'_>,
    tgt: &mut Connection,
    task: &FolderTask,
    leaving: Vec<Leaving>,
) -> Result<(), Error> {
    let mut by_folder: BTreeMap<(FolderId, String), Vec<(u32, u32)>> = BTreeMap::new();
    for l in leaving {
        by_folder
            .entry((l.folder, l.target_name))
            .or_default()
            .push((l.source_uid, l.target_uid));
    }
    let moved = !by_folder.is_empty();
    let uidplus = tgt.has("UIDPLUS");
    for ((folder, name), uids) in by_folder {
        let err = |what: &str| ctx.imap_err(format!("{what} the target folder `{name}`"));
        CommandCounters::bump(&tgt.counters.selects);
        tgt.session
            .select(MailboxName::Unicode(&name), false)
            .await
            .map_err(err("opening"))?;
        let set = uid_set(uids.iter().map(|(_, t)| *t));
        CommandCounters::bump(&tgt.counters.stores);
        tgt.session
            .uid_store(&set, StoreMode::Add, true, &[Flag::Deleted], None)
            .await
            .map_err(err("marking archived messages deleted in"))?;
        if uidplus {
            CommandCounters::bump(&tgt.counters.other);
            tgt.session
                .uid_expunge(&set)
                .await
                .map_err(err("expunging archived messages from"))?;
        }
        let source_uids: Vec<u32> = uids.iter().map(|(s, _)| *s).collect();
        let n = source_uids.len() as u64;
        ctx.store
            .run(move |db| db.uid_map_remove(folder, &source_uids))
            .await
            .map_err(ctx.store_err("forgetting the old copies of archived messages"))?;
        tracing::info!(folder = %name, messages = n, "archived in Gmail since the last pass: moved to the archive");
        PassTotals::add(&ctx.totals.deleted, n);
    }
    if moved {
        CommandCounters::bump(&tgt.counters.selects);
        tgt.session
            .select(MailboxName::Unicode(&task.target_name), false)
            .await
            .map_err(ctx.imap_err(format!(
                "opening the target folder `{}` again",
                task.target_name
            )))?;
    }
    Ok(())
}
