//! The exactly-once journal: a group of APPENDs is written down and fsynced before it
//! goes out, and resolved afterwards in one atomic write set ([`crate::atomic_write`]).
//!
//! ```text
//! begin(folder, group)  -> JournalId        fsync: the group is on disk
//!   ... APPEND / MULTIAPPEND, APPENDUIDs come back ...
//! commit(id, outcome)                       one atomic write set: uid-map runs + skipped items
//!                                               + folder watermark and counters
//!                                               + All Mail fingerprints (Gmail, by bytes)
//!                                               + removal of the journal entry
//! abort(id)                                 nothing was appended: remove the entry
//! ```
//!
//! After a crash, [`Database::pending`] lists the groups whose outcome is unknown. Each was
//! on disk before its APPENDs went out, and a commit is all-or-nothing, so every message
//! of such a group is either not on the target or on it at or above the recorded
//! UIDNEXT, recognisable by fingerprint; the engine finds which, then commits or aborts.

use crate::all_mail_fingerprints::AllMailIndex;
use crate::atomic_write::WriteSet;
use crate::database::Database;
use crate::error::{Result, StoreError};
use crate::key_layout::{self, FolderId, JournalId, MailboxId, journal_id_from_key, journal_key};
use crate::record_codec::{DecodeError, Reader, Writer};
use crate::skipped_items::SkippedItem;
use crate::timestamp::Timestamp;
use crate::uid_map::{Fingerprint, MessageFlags, UidMapEntry};

/// Most messages one journal entry may cover; larger groups would make one fsynced
/// record and one commit batch needlessly large.
pub const MAX_GROUP_LEN: usize = 10_000;

/// A source message about to be appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    /// Its source UID.
    pub source_uid: u32,
    /// Its content fingerprint, to find it on the target after a crash.
    pub fingerprint: Fingerprint,
    /// Its size in bytes.
    pub size: u64,
}

/// A group of APPENDs into one target folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyGroup {
    /// The target folder's name.
    pub target_folder: String,
    /// The target folder's UIDVALIDITY when the group was sent.
    pub target_uidvalidity: u32,
    /// The target folder's UIDNEXT before the group: its messages can only be at or
    /// above it.
    pub target_uidnext: u32,
    /// The messages, by source UID.
    pub messages: Vec<PendingMessage>,
}

/// A pending journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Its id, for [`Database::commit`] or [`Database::abort`].
    pub id: JournalId,
    /// The group.
    pub group: CopyGroup,
    /// When it was begun.
    pub begun: Timestamp,
}

/// A message of the group that is now on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedMessage {
    /// Its source UID (one of the group's).
    pub source_uid: u32,
    /// Its target UID (from APPENDUID, or found by fingerprint).
    pub target_uid: u32,
    /// The flags it was appended with.
    pub flags: MessageFlags,
}

/// How a group ended. Messages of the group that appear in neither list were not
/// appended and will be tried again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupOutcome {
    /// Messages now on the target.
    pub copied: Vec<CopiedMessage>,
    /// Messages that will not be copied, with why.
    pub skipped: Vec<SkippedItem>,
    /// The new watermark (every source UID at or below it is done); the stored one is
    /// only ever raised.
    pub highest_copied_uid: Option<u32>,
    /// The target's UIDNEXT after the group, if known.
    pub target_uidnext: Option<u32>,
    /// What the copied messages do to the folder's All Mail fingerprints (a Gmail
    /// source without X-GM-EXT-1), in the same write set as the rest of the commit.
    pub all_mail_index: AllMailIndex,
}

fn encode_group(group: &CopyGroup, begun: Timestamp) -> Vec<u8> {
    let mut w = Writer::versioned(32 + group.target_folder.len() + group.messages.len() * 24);
    w.str(&group.target_folder);
    w.varint(u64::from(group.target_uidvalidity));
    w.varint(u64::from(group.target_uidnext));
    w.varint(begun.unix_millis());
    w.varint(group.messages.len() as u64);
    for m in &group.messages {
        w.varint(u64::from(m.source_uid));
        w.varint(m.size);
        w.raw(&m.fingerprint.0);
    }
    w.finish()
}

fn decode_group(value: &[u8]) -> Result<(CopyGroup, Timestamp), DecodeError> {
    let mut r = Reader::versioned(value)?;
    let target_folder = r.string()?;
    let target_uidvalidity = r.varint_u32()?;
    let target_uidnext = r.varint_u32()?;
    let begun = Timestamp::from_unix_millis(r.varint()?);
    let n = r.varint()?;
    if n > MAX_GROUP_LEN as u64 {
        return Err(DecodeError(format!("{n} messages in one journal entry")));
    }
    let mut messages = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for _ in 0..n {
        let source_uid = r.varint_u32()?;
        let size = r.varint()?;
        let mut fp = [0u8; 16];
        fp.copy_from_slice(r.raw(16)?);
        messages.push(PendingMessage {
            source_uid,
            fingerprint: Fingerprint(fp),
            size,
        });
    }
    r.finish()?;
    let group = CopyGroup {
        target_folder,
        target_uidvalidity,
        target_uidnext,
        messages,
    };
    Ok((group, begun))
}

impl Database {
    /// Records a group of APPENDs about to go out and flushes it to disk before
    /// returning. Send nothing of the group until this returns `Ok`. From async code use
    /// [`Store::begin`](crate::Store::begin), which shares one flush among every group
    /// staged before it.
    pub fn begin(&self, folder: FolderId, group: &CopyGroup) -> Result<JournalId> {
        let id = self.stage_begin(folder, group)?;
        self.flush_log("flush a journal entry")?;
        Ok(id)
    }

    /// The write half of [`Database::begin`]: the entry is in the database but not yet
    /// on disk. Nothing of the group may go out until a flush has followed.
    pub(crate) fn stage_begin(&self, folder: FolderId, group: &CopyGroup) -> Result<JournalId> {
        let state = self.load_folder_state(folder)?;
        let invalid = |detail: String| StoreError::InvalidRequest {
            folder: state.source_name.clone(),
            detail,
        };
        if group.messages.is_empty() || group.messages.len() > MAX_GROUP_LEN {
            return Err(invalid(format!(
                "a copy group must hold 1 to {MAX_GROUP_LEN} messages, not {}",
                group.messages.len()
            )));
        }
        let mut uids: Vec<u32> = group.messages.iter().map(|m| m.source_uid).collect();
        uids.sort_unstable();
        if uids[0] == 0 {
            return Err(invalid("source UID 0 does not exist in IMAP".into()));
        }
        if let Some(w) = uids.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!(
                "source UID {} appears twice in one group",
                w[0]
            )));
        }
        let id = JournalId {
            mailbox: state.mailbox.id,
            folder,
            seq: self.new_id()?,
        };
        self.inner
            .folder_sync
            .insert(journal_key(id), encode_group(group, Timestamp::now()))
            .map_err(self.db_err("write a journal entry"))?;
        Ok(id)
    }

    /// Resolves a pending group in one atomic write set: its copied messages enter the uid
    /// map, its skipped items are recorded, the folder's watermark and counters move, and
    /// the journal entry disappears — all or nothing. Not fsynced (see the flush policy
    /// in the crate docs): a crash may undo the whole commit, leaving the entry pending.
    pub fn commit(&self, id: JournalId, outcome: &GroupOutcome) -> Result<()> {
        let key = journal_key(id);
        let (group, _) = self.load_journal(id, &key)?;
        let mut state = self.load_folder_state(id.folder)?;
        let mut by_uid: Vec<&PendingMessage> = group.messages.iter().collect();
        by_uid.sort_unstable_by_key(|m| m.source_uid);
        let find = |uid: u32| {
            by_uid
                .binary_search_by_key(&uid, |m| m.source_uid)
                .ok()
                .and_then(|i| by_uid.get(i).copied())
        };
        let mismatch = |uid: u32| StoreError::JournalMismatch {
            id: id.to_string(),
            folder: state.source_name.clone(),
            uid,
        };
        let mut entries = Vec::with_capacity(outcome.copied.len());
        for c in &outcome.copied {
            let m = find(c.source_uid).ok_or_else(|| mismatch(c.source_uid))?;
            entries.push((
                c.source_uid,
                UidMapEntry {
                    target_uid: c.target_uid,
                    flags: c.flags.clone(),
                    fingerprint: m.fingerprint,
                    size: m.size,
                },
            ));
        }
        for s in &outcome.skipped {
            let uid = s.source_uid.unwrap_or(0);
            if find(uid).is_none() {
                return Err(mismatch(uid));
            }
            // A message copied without its keywords has both a copy and a record; one
            // left behind cannot also be copied.
            if s.reason.left_behind() && outcome.copied.iter().any(|c| c.source_uid == uid) {
                return Err(StoreError::InvalidRequest {
                    folder: state.source_name.clone(),
                    detail: format!("source UID {uid} is reported both copied and skipped"),
                });
            }
        }
        let mut batch = WriteSet::default();
        let copied_uids: Vec<u32> = entries.iter().map(|(u, _)| *u).collect();
        match outcome.all_mail_index {
            AllMailIndex::Untouched => {}
            AllMailIndex::AddCopied => {
                let added: Vec<_> = entries.iter().map(|(u, e)| (*u, e.fingerprint)).collect();
                self.stage_all_mail_changes(&mut batch, id.folder, &added, &[])?;
            }
            AllMailIndex::RemoveCopied => {
                self.stage_all_mail_changes(&mut batch, id.folder, &[], &copied_uids)?;
            }
        }
        let delta = self.stage_map_inserts(id.folder, &state.source_name, entries, &mut batch)?;
        self.stage_unskip(&mut batch, id.folder, &mut state, copied_uids.into_iter())?;
        self.stage_skipped(&mut batch, id.folder, &mut state, &outcome.skipped)?;
        state.counters.messages += delta.messages;
        state.counters.bytes += delta.bytes;
        if let Some(w) = outcome.highest_copied_uid {
            state.marks.highest_copied_uid = state.marks.highest_copied_uid.max(w);
        }
        if let Some(n) = outcome.target_uidnext {
            state.marks.target_uidnext_seen = Some(n);
        }
        self.stage_folder_state(&mut batch, id.folder, &state);
        batch.remove(key);
        self.write_atomically(&self.inner.folder_sync, batch, "commit a copy group")
    }

    /// Drops a pending group none of whose messages reached the target.
    pub fn abort(&self, id: JournalId) -> Result<()> {
        let key = journal_key(id);
        self.load_journal(id, &key)?;
        self.inner
            .folder_sync
            .remove(key)
            .map_err(self.db_err("abort a copy group"))?;
        Ok(())
    }

    /// Pending groups of a mailbox, oldest first within each folder.
    pub fn pending(&self, mailbox: MailboxId) -> Result<Vec<JournalEntry>> {
        let prefix = key_layout::key(key_layout::JOURNAL, &[&mailbox.id.to_be_bytes()]);
        self.scan_journal(&prefix)
    }

    /// Pending groups of one folder, oldest first.
    pub fn pending_in_folder(
        &self,
        mailbox: MailboxId,
        folder: FolderId,
    ) -> Result<Vec<JournalEntry>> {
        let prefix = key_layout::key(
            key_layout::JOURNAL,
            &[&mailbox.id.to_be_bytes(), &folder.0.to_be_bytes()],
        );
        self.scan_journal(&prefix)
    }

    fn scan_journal(&self, prefix: &[u8]) -> Result<Vec<JournalEntry>> {
        let mut out = Vec::new();
        for item in self.inner.folder_sync.scan_prefix(prefix) {
            let (k, v) = item.map_err(self.db_err("list journal entries"))?;
            let id = journal_id_from_key(&k).ok_or_else(|| {
                self.corrupt(
                    "journal",
                    DecodeError("journal key of the wrong shape".into()),
                )
            })?;
            let (group, begun) =
                decode_group(&v).map_err(|e| self.corrupt(format!("journal entry {id}"), e))?;
            out.push(JournalEntry { id, group, begun });
        }
        Ok(out)
    }

    fn load_journal(&self, id: JournalId, key: &[u8]) -> Result<(CopyGroup, Timestamp)> {
        let v = self
            .inner
            .folder_sync
            .get(key)
            .map_err(self.db_err("read a journal entry"))?
            .ok_or_else(|| StoreError::JournalNotPending {
                dir: self.path().to_path_buf(),
                id: id.to_string(),
            })?;
        decode_group(&v).map_err(|e| self.corrupt(format!("journal entry {id}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries_round_trip() {
        let group = CopyGroup {
            target_folder: "Archive/2024".into(),
            target_uidvalidity: 1_700_000_000,
            target_uidnext: 4321,
            messages: (1..=3)
                .map(|u| PendingMessage {
                    source_uid: u * 1000,
                    fingerprint: Fingerprint([u as u8; 16]),
                    size: u64::from(u) << 20,
                })
                .collect(),
        };
        let t = Timestamp::from_unix_millis(99);
        let bytes = encode_group(&group, t);
        assert_eq!(decode_group(&bytes), Ok((group, t)));
        assert!(decode_group(&bytes[..bytes.len() - 3]).is_err());
    }
}
