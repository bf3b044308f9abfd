//! Gmail's All Mail when the source does not offer X-GM-EXT-1: no X-GM-LABELS says which
//! of its messages are in no label (archived mail), so a message's exact bytes say it. A
//! message of All Mail goes to the archive only when no label folder of the mailbox
//! (INBOX, user labels, Sent, Drafts; Starred and Important are views, not labels) holds
//! a message with its fingerprint; otherwise it is recorded as accounted for and never
//! copied while it keeps a label. The label folders were synced earlier in the same
//! pass (`mailbox_job.rs` holds All Mail back until they are), so their fingerprints
//! (`imapmirror_storage::AllMailIndex`) are those of what they hold now.
//!
//! # The fingerprint
//! The one the copy path records ([`crate::pass::fingerprint`]): SHA-256 over the exact
//! size (RFC822.SIZE, checked against the bytes where they fit in the answer) and the
//! first 64 KiB, read with `BODY.PEEK[]<0.65536>` ([`fetch_fingerprints`]). It does not
//! cover bytes beyond 64 KiB: two messages that agree in size and first 64 KiB (all their
//! headers, Message-ID and Received chain included) count as the same bytes.
//!
//! # Duplicates
//! Byte-identical messages are counted, not merged: for each fingerprint, as many All
//! Mail messages are accounted for as the label folder holding most of them has (one
//! message in two labels is one; two identical messages in INBOX are two), the others go
//! to the archive. Two identical messages in two different labels therefore give one
//! archive copy too many; never one too few, so no message is lost.
//!
//! # Archived later
//! A label folder whose MESSAGES differs from its recorded fingerprints is examined
//! (`UID SEARCH ALL`) and its fingerprints recomputed from the uid map entries whose
//! message is still there. An accounted-for message with more accounted copies than its
//! fingerprint now has labelled ones lost its last label: it is copied to the archive
//! (the commit drops it from the accounted-for ones), and then the earlier copies of its
//! bytes in label folders whose source message is gone are taken off the target
//! ([`take_off_target`]), as the X-GM-LABELS path does.
//!
//! # Crash safety
//! Judged messages are accounted for before any archive copy goes out, and the copies go
//! through the journal like any other (`message_copy.rs`), raising the watermark only
//! over what is judged. Nothing else is written without being recomputed from the store
//! and the source on the next pass: a crash before a copy's commit leaves its journal
//! group to reconcile; one after it leaves the earlier copies, found again as copies
//! whose source message is gone and whose bytes the archive holds.

use std::collections::{HashMap, HashSet};

use imapmirror_protocol::{Error as ImapError, MailboxName};
use imapmirror_storage::{Database, Fingerprint, FolderId, MailboxId, StoreError};

use super::fingerprint_fetch::fetch_fingerprints;
use super::gmail_archive::{Leaving, take_off_target};
use super::message_copy::Copier;
use super::sync_context::{FolderTask, LabelFolder, SyncContext};
use crate::endpoint::pool::{CommandCounters, Connection};
use crate::error::Error;
use crate::pass::copy_plan::uid_set;

/// All Mail messages fingerprinted per FETCH: at most 64 KiB each is held at once.
const FINGERPRINT_CHUNK: usize = 200;

/// A label folder as the store knows it.
struct StoredLabel {
    listed: LabelFolder,
    folder: FolderId,
    recorded: u64,
}

/// What the store says before judging.
struct Known {
    /// Per fingerprint, the most label folder messages any one label folder has.
    labelled: HashMap<Fingerprint, u32>,
    /// All Mail's accounted-for messages, by fingerprint, in UID order.
    accounted: HashMap<Fingerprint, Vec<u32>>,
    /// All Mail UIDs already judged: copied, accounted for.
    judged: HashSet<u32>,
    watermark: u32,
}

/// Judges All Mail's messages below `bound` (its UIDNEXT when the pass listed the
/// folders, before any label folder was synced) and those archived since, copies the
/// archived ones to the archive with `copier` and takes their earlier copies off the
/// target. Returns the UID below which every message is judged. `src` is left with All
/// Mail examined, `tgt` with the archive selected.
#[allow(clippy::too_many_arguments)]
pub(super) async fn sync_all_mail(
    ctx: &SyncContext<'_>,
    src: &mut Connection,
    tgt: &mut Connection,
    copier: &mut Copier<'_, '_>,
    all_mail: FolderId,
    task: &FolderTask,
    labels: &[LabelFolder],
    bound: u32,
) -> Result<u32, Error> {
    let mailbox = ctx.mailbox;
    let listed = labels.to_vec();
    let stored = ctx
        .store
        .run(move |db| stored_labels(db, mailbox, listed))
        .await
        .map_err(ctx.store_err("reading the label folders of the Gmail source"))?;

    // Label folders that lost messages since they were copied: which are still there.
    let mut examined = false;
    for label in &stored {
        if label.listed.messages.map(u64::from) == Some(label.recorded) {
            continue;
        }
        examined = true;
        let Some(present) = present_uids(ctx, src, &label.listed).await? else {
            continue;
        };
        let folder = label.folder;
        ctx.store
            .run(move |db| db.keep_label_fingerprints(folder, &present))
            .await
            .map_err(ctx.store_err(format!(
                "recording which messages the label folder `{}` still holds",
                label.listed.source_name
            )))?;
    }
    if examined {
        CommandCounters::bump(&src.counters.selects);
        src.session
            .examine(MailboxName::Wire(&task.source_wire), src.has("CONDSTORE"))
            .await
            .map_err(ctx.imap_err(format!(
                "opening the source folder `{}` again",
                task.source_name
            )))?;
    }

    let label_ids: Vec<FolderId> = stored.iter().map(|l| l.folder).collect();
    let known = ctx
        .store
        .run(move |db| known(db, &label_ids, all_mail))
        .await
        .map_err(ctx.store_err("reading the fingerprints of the label folders"))?;

    // New messages of All Mail, fingerprinted.
    let mut fresh: Vec<(u32, Fingerprint)> = Vec::new();
    // Listed but not fingerprinted (no body in the answer): copied rather than judged,
    // since a message the watermark passes unjudged would never reach the target.
    let mut unread: Vec<u32> = Vec::new();
    let lo = known.watermark.saturating_add(1);
    let hi = bound.saturating_sub(1);
    if lo <= hi {
        let action = format!(
            "listing new messages of the source folder `{}`",
            task.source_name
        );
        CommandCounters::bump(&src.counters.other);
        let found = src
            .session
            .uid_search(&[], &format!("UID {lo}:{hi}"))
            .await
            .map_err(ctx.imap_err(action))?;
        let mut uids: Vec<u32> = found
            .uids
            .into_iter()
            .filter(|u| (lo..=hi).contains(u) && !known.judged.contains(u))
            .collect();
        uids.sort_unstable();
        let what = format!("the source folder `{}`", task.source_name);
        for chunk in uids.chunks(FINGERPRINT_CHUNK) {
            let set = uid_set(chunk.iter().copied());
            for (c, _) in fetch_fingerprints(ctx, src, &set, lo, &what).await? {
                if c.uid <= hi && !known.judged.contains(&c.uid) {
                    fresh.push((c.uid, c.fingerprint));
                }
            }
        }
        fresh.sort_unstable_by_key(|(u, _)| *u);
        fresh.dedup_by_key(|(u, _)| *u);
        let read: HashSet<u32> = fresh.iter().map(|(u, _)| *u).collect();
        unread = uids.into_iter().filter(|u| !read.contains(u)).collect();
    }
    let mut verdict = judge(&known.labelled, &known.accounted, &fresh);
    if !unread.is_empty() {
        tracing::info!(
            messages = unread.len(),
            "messages of All Mail could not be fingerprinted: they go to the archive, so that none is lost"
        );
        verdict.archived.extend(unread);
    }

    if !verdict.accounted.is_empty() {
        let accounted = verdict.accounted.clone();
        ctx.store
            .run(move |db| db.add_all_mail_fingerprints(all_mail, &accounted))
            .await
            .map_err(ctx.store_err("recording All Mail messages that have a label"))?;
    }
    let mut to_copy = verdict.archived.clone();
    to_copy.extend(&verdict.moved);
    if !to_copy.is_empty() {
        tracing::info!(
            archived = verdict.archived.len(),
            archived_since = verdict.moved.len(),
            "Gmail's All Mail without X-GM-EXT-1: messages whose bytes no label folder holds go to the archive"
        );
    }
    let still_there = copier.copy_uids(src, tgt, &to_copy).await?;
    // Accounted for, then gone from All Mail (deleted for good): nothing to move.
    let gone: Vec<u32> = verdict
        .moved
        .iter()
        .copied()
        .filter(|u| !still_there.contains(u))
        .collect();
    if !gone.is_empty() {
        ctx.store
            .run(move |db| db.remove_all_mail_fingerprints(all_mail, &gone))
            .await
            .map_err(ctx.store_err("forgetting All Mail messages deleted on the source"))?;
    }

    let label_ids: Vec<FolderId> = stored.iter().map(|l| l.folder).collect();
    let leaving = ctx
        .store
        .run(move |db| leaving(db, &label_ids, all_mail))
        .await
        .map_err(ctx.store_err("looking up earlier copies of archived Gmail messages"))?;
    take_off_target(ctx, tgt, task, leaving).await?;
    Ok(bound.max(1))
}

/// The label folders the store has, with how many fingerprints each has recorded.
fn stored_labels(
    db: &Database,
    mailbox: MailboxId,
    listed: Vec<LabelFolder>,
) -> Result<Vec<StoredLabel>, StoreError> {
    let mut out = Vec::new();
    for l in listed {
        let Some(folder) = db.find_folder(mailbox, &l.source_name)? else {
            continue;
        };
        let recorded = db.all_mail_fingerprints(folder)?.len() as u64;
        out.push(StoredLabel {
            listed: l,
            folder,
            recorded,
        });
    }
    Ok(out)
}

/// The source UIDs of a label folder (`None`: it cannot be opened now, and is left as
/// recorded: its messages keep counting as labelled).
async fn present_uids(
    ctx: &SyncContext<'_>,
    src: &mut Connection,
    label: &LabelFolder,
) -> Result<Option<HashSet<u32>>, Error> {
    CommandCounters::bump(&src.counters.selects);
    match src
        .session
        .examine(MailboxName::Wire(&label.source_wire), false)
        .await
    {
        Ok(_) => {}
        Err(e @ ImapError::Refused { .. }) => {
            tracing::info!(folder = %label.source_name, error = %e, "a label folder cannot be opened: its messages count as labelled this pass");
            return Ok(None);
        }
        Err(e) => {
            return Err(ctx.imap_err(format!(
                "opening the source folder `{}`",
                label.source_name
            ))(e));
        }
    }
    CommandCounters::bump(&src.counters.other);
    let found = src
        .session
        .uid_search(&[], "ALL")
        .await
        .map_err(ctx.imap_err(format!(
            "listing the messages of the source folder `{}`",
            label.source_name
        )))?;
    Ok(Some(found.uids.into_iter().collect()))
}

fn known(db: &Database, labels: &[FolderId], all_mail: FolderId) -> Result<Known, StoreError> {
    let mut labelled: HashMap<Fingerprint, u32> = HashMap::new();
    for &folder in labels {
        let mut here: HashMap<Fingerprint, u32> = HashMap::new();
        for (_, fp) in db.all_mail_fingerprints(folder)? {
            *here.entry(fp).or_default() += 1;
        }
        for (fp, n) in here {
            let most = labelled.entry(fp).or_default();
            *most = (*most).max(n);
        }
    }
    let mut accounted: HashMap<Fingerprint, Vec<u32>> = HashMap::new();
    let mut judged = HashSet::new();
    for (uid, fp) in db.all_mail_fingerprints(all_mail)? {
        accounted.entry(fp).or_default().push(uid);
        judged.insert(uid);
    }
    for item in db.uid_map_range(all_mail, ..)? {
        let (uid, _) = item?;
        judged.insert(uid);
    }
    let watermark = db.folder_state(all_mail)?.marks.highest_copied_uid;
    Ok(Known {
        labelled,
        accounted,
        judged,
        watermark,
    })
}

/// What becomes of All Mail's messages.
#[derive(Debug, Default, PartialEq, Eq)]
struct Verdict {
    /// New messages with a label: accounted for.
    accounted: Vec<(u32, Fingerprint)>,
    /// New messages in no label: to the archive.
    archived: Vec<u32>,
    /// Accounted-for messages that lost their last label: to the archive.
    moved: Vec<u32>,
}

/// Judges `fresh` messages (UID order) and the accounted-for ones against the labelled
/// counts (see the module docs on duplicates).
fn judge(
    labelled: &HashMap<Fingerprint, u32>,
    accounted: &HashMap<Fingerprint, Vec<u32>>,
    fresh: &[(u32, Fingerprint)],
) -> Verdict {
    let mut verdict = Verdict::default();
    let mut used: HashMap<Fingerprint, u32> = HashMap::new();
    for (fp, uids) in accounted {
        let budget = labelled.get(fp).copied().unwrap_or(0);
        let keep = uids.len().min(budget as usize);
        used.insert(*fp, keep as u32);
        verdict.moved.extend(&uids[keep..]);
    }
    for &(uid, fp) in fresh {
        let budget = labelled.get(&fp).copied().unwrap_or(0);
        let n = used.entry(fp).or_default();
        if *n < budget {
            *n += 1;
            verdict.accounted.push((uid, fp));
        } else {
            verdict.archived.push(uid);
        }
    }
    verdict.moved.sort_unstable();
    verdict
}

/// Earlier copies to take off the target: label folder copies whose source message left
/// the folder (in its uid map, not in its fingerprints), whose bytes the archive holds
/// and no label folder holds any more.
fn leaving(
    db: &Database,
    labels: &[FolderId],
    all_mail: FolderId,
) -> Result<Vec<Leaving>, StoreError> {
    let mut still_labelled: HashSet<Fingerprint> = HashSet::new();
    let mut candidates = Vec::new();
    for &folder in labels {
        let present = db.all_mail_fingerprints(folder)?;
        still_labelled.extend(present.iter().map(|(_, fp)| *fp));
        let state = db.folder_state(folder)?;
        if state.counters.messages <= present.len() as u64 {
            continue;
        }
        let Some(target_name) = state.marks.target_name else {
            continue;
        };
        let present: HashSet<u32> = present.into_iter().map(|(u, _)| u).collect();
        for item in db.uid_map_range(folder, ..)? {
            let (uid, e) = item?;
            if !present.contains(&uid) {
                candidates.push((folder, uid, e, target_name.clone()));
            }
        }
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut archived: HashSet<Fingerprint> = HashSet::new();
    for item in db.uid_map_range(all_mail, ..)? {
        let (_, e) = item?;
        archived.insert(e.fingerprint);
    }
    Ok(candidates
        .into_iter()
        .filter(|(_, _, e, _)| {
            archived.contains(&e.fingerprint) && !still_labelled.contains(&e.fingerprint)
        })
        .map(|(folder, source_uid, e, target_name)| Leaving {
            folder,
            source_uid,
            target_name,
            target_uid: e.target_uid,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 16])
    }

    #[test]
    fn duplicates_are_counted_per_label_folder_never_merged() {
        // fp 1: one message in two labels (each folder holds it once).
        // fp 2: two identical messages in INBOX. fp 3: in no label. fp 4: archived twin
        // of a labelled message.
        let labelled: HashMap<Fingerprint, u32> =
            [(fp(1), 1), (fp(2), 2), (fp(4), 1)].into_iter().collect();
        let fresh = [
            (10, fp(1)),
            (11, fp(2)),
            (12, fp(2)),
            (13, fp(3)),
            (14, fp(4)),
            (15, fp(4)),
        ];
        let v = judge(&labelled, &HashMap::new(), &fresh);
        assert_eq!(
            v.accounted,
            [(10, fp(1)), (11, fp(2)), (12, fp(2)), (14, fp(4))]
        );
        assert_eq!(v.archived, [13, 15]);
        assert!(v.moved.is_empty());
    }

    mod store {
        use std::path::Path;

        use imapmirror_storage::test_fixtures::one_mailbox;
        use imapmirror_storage::{
            AllMailIndex, CopiedMessage, CopyGroup, Database, FolderMarks, GroupOutcome,
            MessageFlags, PendingMessage, Store,
        };

        use super::*;

        /// One run of a process over the state directory: it knows only what the store
        /// holds, and ends (closing the store) when `f` returns.
        fn run<T: Send + 'static>(
            dir: &Path,
            f: impl FnOnce(&Database) -> T + Send + 'static,
        ) -> T {
            let store = Store::open(dir).expect("open the store");
            store.call(move |db| Ok(f(db))).expect("a storage job")
        }

        /// Begins a journal group of `(source UID, fingerprint)` in `folder`.
        fn begin(db: &Database, folder: FolderId, msgs: &[(u32, Fingerprint)]) {
            let group = CopyGroup {
                target_folder: "T".into(),
                target_uidvalidity: 1,
                target_uidnext: 100,
                messages: msgs
                    .iter()
                    .map(|&(u, f)| PendingMessage {
                        source_uid: u,
                        fingerprint: f,
                        size: 100,
                    })
                    .collect(),
            };
            db.begin(folder, &group).expect("begin");
        }

        /// Commits the folder's pending group, each message at target UID 100 + its UID.
        fn commit(db: &Database, mailbox: MailboxId, folder: FolderId, index: AllMailIndex) {
            let pending = db.pending_in_folder(mailbox, folder).expect("pending");
            for entry in pending {
                let outcome = GroupOutcome {
                    copied: entry
                        .group
                        .messages
                        .iter()
                        .map(|m| CopiedMessage {
                            source_uid: m.source_uid,
                            target_uid: 100 + m.source_uid,
                            flags: MessageFlags::new(),
                        })
                        .collect(),
                    highest_copied_uid: entry.group.messages.iter().map(|m| m.source_uid).max(),
                    all_mail_index: index,
                    ..GroupOutcome::default()
                };
                db.commit(entry.id, &outcome).expect("commit");
            }
        }

        fn verdict(
            db: &Database,
            inbox: FolderId,
            all: FolderId,
            fresh: &[(u32, Fingerprint)],
        ) -> Verdict {
            let k = known(db, &[inbox], all).expect("known");
            let fresh: Vec<_> = fresh
                .iter()
                .copied()
                .filter(|(u, _)| !k.judged.contains(u) && *u > k.watermark)
                .collect();
            judge(&k.labelled, &k.accounted, &fresh)
        }

        #[test]
        fn judged_by_bytes_and_a_move_survives_a_crash() {
            let dir = tempfile::tempdir().expect("tempdir");
            let (a, b, c) = (fp(1), fp(2), fp(3));
            // All Mail: 10 (bytes a, in INBOX), 11 (b, in INBOX), 12 (c, archived).
            let all_mail = [(10, a), (11, b), (12, c)];
            let (mailbox, inbox, all) = run(dir.path(), move |db| {
                let mailbox = one_mailbox(db);
                let inbox = db.folder(mailbox, "INBOX").expect("INBOX");
                let all = db.folder(mailbox, "[Gmail]/All Mail").expect("All Mail");
                db.update_folder_marks(inbox, |m| m.target_name = Some("INBOX".into()))
                    .expect("marks");
                begin(db, inbox, &[(1, a), (2, b)]);
                commit(db, mailbox, inbox, AllMailIndex::AddCopied);
                let v = verdict(db, inbox, all, &all_mail);
                assert_eq!(v.accounted, [(10, a), (11, b)]);
                assert_eq!(v.archived, [12]);
                db.add_all_mail_fingerprints(all, &v.accounted)
                    .expect("account");
                // The archive copy of 12 is begun; the process dies before its commit.
                begin(db, all, &[(12, c)]);
                (mailbox, inbox, all)
            });
            run(dir.path(), move |db| {
                // Next run: the pending group is reconciled (found on the target) and
                // committed; 12 is judged, nothing is judged twice.
                commit(db, mailbox, all, AllMailIndex::RemoveCopied);
                db.update_folder_marks(all, |m| m.highest_copied_uid = 12)
                    .expect("watermark");
                assert_eq!(verdict(db, inbox, all, &all_mail), Verdict::default());
                // Message a is archived in Gmail: INBOX's source UID 1 is gone. The
                // process dies right after recording that.
                let present = [2].into_iter().collect();
                assert_eq!(
                    db.keep_label_fingerprints(inbox, &present).expect("keep"),
                    1
                );
            });
            run(dir.path(), move |db| {
                // The move is found from what the store holds, not from the search that
                // is not repeated (INBOX's MESSAGES now equals its fingerprints).
                let v = verdict(db, inbox, all, &all_mail);
                assert_eq!(v.moved, [10]);
                assert!(v.archived.is_empty() && v.accounted.is_empty());
                // Its old copy stays until the archive holds the message.
                assert!(leaving(db, &[inbox], all).expect("leaving").is_empty());
                // The archive copy is begun; the process dies before its commit.
                begin(db, all, &[(10, a)]);
            });
            run(dir.path(), move |db| {
                commit(db, mailbox, all, AllMailIndex::RemoveCopied);
                // Copied once: no longer accounted for, nothing left to copy.
                assert_eq!(verdict(db, inbox, all, &all_mail), Verdict::default());
                // The process dies before the INBOX copy is taken off the target.
            });
            run(dir.path(), move |db| {
                let left = leaving(db, &[inbox], all).expect("leaving");
                let left: Vec<_> = left
                    .iter()
                    .map(|l| (l.folder, l.source_uid, l.target_name.as_str(), l.target_uid))
                    .collect();
                assert_eq!(left, [(inbox, 1, "INBOX", 101)]);
                // Taken off: the map forgets it, and nothing more is to be done.
                db.uid_map_remove(inbox, &[1]).expect("forget");
                assert!(leaving(db, &[inbox], all).expect("leaving").is_empty());
                assert_eq!(verdict(db, inbox, all, &all_mail), Verdict::default());
                assert_eq!(db.pending(mailbox).expect("pending"), []);
                // A reset of All Mail (UIDVALIDITY) forgets what it had accounted for.
                db.add_all_mail_fingerprints(all, &[(11, b)])
                    .expect("account");
                let fresh = db.reset_folder(all, FolderMarks::default()).expect("reset");
                assert!(db.all_mail_fingerprints(fresh).expect("read").is_empty());
            });
        }
    }

    #[test]
    fn an_accounted_message_whose_last_label_went_is_moved() {
        let labelled: HashMap<Fingerprint, u32> = [(fp(2), 1)].into_iter().collect();
        let accounted: HashMap<Fingerprint, Vec<u32>> = [(fp(1), vec![4]), (fp(2), vec![5, 9])]
            .into_iter()
            .collect();
        // A new message with fp 2 finds no label left for it either.
        let v = judge(&labelled, &accounted, &[(20, fp(2))]);
        assert_eq!(v.moved, [4, 9]);
        assert_eq!(v.archived, [20]);
        assert!(v.accounted.is_empty());
    }
}
