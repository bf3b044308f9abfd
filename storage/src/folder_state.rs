//! Folder state: what the store knows about one source folder of a mailbox, and the
//! stable numeric id each (mailbox, source folder name) gets.

use crate::atomic_write::WriteSet;
use crate::database::Database;
use crate::error::{Result, StoreError};
use crate::key_layout::{
    self, BatchId, FolderId, MailboxId, dropped_folder_key, folder_name_key, folder_state_key,
};
use crate::record_codec::{DecodeError, Reader, Writer};

/// What the engine records about a folder between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderMarks {
    /// The folder's name on the target, once mapped.
    pub target_name: Option<String>,
    /// UIDVALIDITY of the source folder the map refers to.
    pub source_uidvalidity: Option<u32>,
    /// UIDVALIDITY of the target folder the map refers to.
    pub target_uidvalidity: Option<u32>,
    /// Every source UID at or below this was copied or skipped (0: none yet). Commits
    /// raise it, never lower it.
    pub highest_copied_uid: u32,
    /// HIGHESTMODSEQ of the source at the last flag sync (CONDSTORE servers).
    pub highest_modseq_seen: Option<u64>,
    /// UIDNEXT of the target when last seen.
    pub target_uidnext_seen: Option<u32>,
}

/// Counters kept by the store in the same atomic write set as the map, so they always agree
/// with it. The engine reads them; it cannot set them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderCounters {
    /// Entries in the uid map (messages copied and still present).
    pub messages: u64,
    /// Sum of the sizes of those messages.
    pub bytes: u64,
    /// Skipped items recorded for this folder.
    pub skipped: u64,
}

/// The state of one source folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderState {
    /// The mailbox it belongs to.
    pub mailbox: MailboxId,
    /// Its name on the source, as the server lists it.
    pub source_name: String,
    /// What the engine recorded.
    pub marks: FolderMarks,
    /// What the store counted.
    pub counters: FolderCounters,
}

fn opt_u32(v: Option<u64>) -> Result<Option<u32>, DecodeError> {
    v.map(|x| u32::try_from(x).map_err(|_| DecodeError(format!("{x} does not fit 32 bits"))))
        .transpose()
}

pub(crate) fn encode_folder_state(s: &FolderState) -> Vec<u8> {
    let mut w = Writer::versioned(64 + s.source_name.len());
    w.varint(s.mailbox.batch.0);
    w.varint(s.mailbox.id);
    w.str(&s.source_name);
    let m = &s.marks;
    w.opt_str(m.target_name.as_deref());
    w.opt_varint(m.source_uidvalidity.map(u64::from));
    w.opt_varint(m.target_uidvalidity.map(u64::from));
    w.varint(u64::from(m.highest_copied_uid));
    w.opt_varint(m.highest_modseq_seen);
    w.opt_varint(m.target_uidnext_seen.map(u64::from));
    w.varint(s.counters.messages);
    w.varint(s.counters.bytes);
    w.varint(s.counters.skipped);
    w.finish()
}

pub(crate) fn decode_folder_state(value: &[u8]) -> Result<FolderState, DecodeError> {
    let mut r = Reader::versioned(value)?;
    let batch = BatchId(r.varint()?);
    let id = r.varint()?;
    let source_name = r.string()?;
    let marks = FolderMarks {
        target_name: r.opt_string()?,
        source_uidvalidity: opt_u32(r.opt_varint()?)?,
        target_uidvalidity: opt_u32(r.opt_varint()?)?,
        highest_copied_uid: r.varint_u32()?,
        highest_modseq_seen: r.opt_varint()?,
        target_uidnext_seen: opt_u32(r.opt_varint()?)?,
    };
    let counters = FolderCounters {
        messages: r.varint()?,
        bytes: r.varint()?,
        skipped: r.varint()?,
    };
    r.finish()?;
    Ok(FolderState {
        mailbox: MailboxId { batch, id },
        source_name,
        marks,
        counters,
    })
}

fn encode_folder_id(folder: FolderId) -> Vec<u8> {
    let mut w = Writer::versioned(8);
    w.varint(folder.0);
    w.finish()
}

fn decode_folder_id(value: &[u8]) -> Result<FolderId, DecodeError> {
    let mut r = Reader::versioned(value)?;
    let id = r.varint()?;
    r.finish()?;
    Ok(FolderId(id))
}

impl Database {
    /// The id of a source folder of `mailbox`, allocated on first use. It stays the same
    /// across passes and restarts until [`Database::reset_folder`] or [`Database::remove_folder`].
    pub fn folder(&self, mailbox: MailboxId, source_name: &str) -> Result<FolderId> {
        if let Some(id) = self.find_folder(mailbox, source_name)? {
            return Ok(id);
        }
        if let Some(id) = self.find_folder(mailbox, source_name)? {
            return Ok(id);
        }
        // A folder of a removed mailbox would never be cleaned up.
        self.mailbox(mailbox)?;
        let folder = FolderId(self.new_id()?);
        let state = FolderState {
            mailbox,
            source_name: source_name.to_string(),
            marks: FolderMarks::default(),
            counters: FolderCounters::default(),
        };
        let mut batch = WriteSet::default();
        batch.insert(
            folder_name_key(mailbox.id, source_name),
            encode_folder_id(folder),
        );
        self.stage_folder_state(&mut batch, folder, &state);
        self.write_atomically(&self.inner.folder_sync, batch, "register a folder")?;
        Ok(folder)
    }

    /// [`Database::folder`] for every name of a mailbox's folder plan at once: the
    /// names without an id get one in a single atomic write. A mailbox's first pass
    /// registers all its folders with one write instead of one per folder; each sled
    /// batch costs a few page writebacks of the log whatever its size, so this is what
    /// keeps the first pass over many small mailboxes from writing gigabytes.
    pub fn register_folders(
        &self,
        mailbox: MailboxId,
        source_names: &[String],
    ) -> Result<Vec<FolderId>> {
        let mut ids = Vec::with_capacity(source_names.len());
        let mut batch = WriteSet::default();
        // Names given an id by this call (a name given twice gets one id).
        let mut new: std::collections::HashMap<&str, FolderId> = Default::default();
        let mut checked_mailbox = false;
        for name in source_names {
            if let Some(&id) = new.get(name.as_str()) {
                ids.push(id);
                continue;
            }
            if let Some(id) = self.find_folder(mailbox, name)? {
                ids.push(id);
                continue;
            }
            if !checked_mailbox {
                // A folder of a removed mailbox would never be cleaned up.
                self.mailbox(mailbox)?;
                checked_mailbox = true;
            }
            let folder = FolderId(self.new_id()?);
            let state = FolderState {
                mailbox,
                source_name: name.clone(),
                marks: FolderMarks::default(),
                counters: FolderCounters::default(),
            };
            batch.insert(folder_name_key(mailbox.id, name), encode_folder_id(folder));
            self.stage_folder_state(&mut batch, folder, &state);
            ids.push(folder);
            new.insert(name, folder);
        }
        if !new.is_empty() {
            self.write_atomically(&self.inner.folder_sync, batch, "register folders")?;
        }
        Ok(ids)
    }

    /// The id of a source folder, if it has one.
    pub fn find_folder(&self, mailbox: MailboxId, source_name: &str) -> Result<Option<FolderId>> {
        let found = self
            .inner
            .folder_sync
            .get(folder_name_key(mailbox.id, source_name))
            .map_err(self.db_err("look up a folder"))?;
        found
            .map(|v| {
                decode_folder_id(&v)
                    .map_err(|e| self.corrupt(format!("folder id of {source_name:?}"), e))
            })
            .transpose()
    }

    /// The state of a folder.
    pub fn folder_state(&self, folder: FolderId) -> Result<FolderState> {
        self.load_folder_state(folder)
    }

    /// Every folder of a mailbox with its state, ordered by source name.
    pub fn folders(&self, mailbox: MailboxId) -> Result<Vec<(FolderId, FolderState)>> {
        let prefix = key_layout::key(key_layout::FOLDER_NAME, &[&mailbox.id.to_be_bytes()]);
        let mut out = Vec::new();
        for item in self.inner.folder_sync.scan_prefix(&prefix) {
            let (_, v) = item.map_err(self.db_err("list folders"))?;
            let folder = decode_folder_id(&v)
                .map_err(|e| self.corrupt(format!("folder list of {mailbox}"), e))?;
            out.push((folder, self.load_folder_state(folder)?));
        }
        Ok(out)
    }

    /// Changes what the engine records about a folder; returns the new state.
    pub fn update_folder_marks(
        &self,
        folder: FolderId,
        change: impl FnOnce(&mut FolderMarks),
    ) -> Result<FolderState> {
        let mut state = self.load_folder_state(folder)?;
        let before = state.marks.clone();
        change(&mut state.marks);
        // A pass that finds a folder as it left it writes nothing: every write, however
        // small, grows sled's log until its segments are cleaned.
        if state.marks != before {
            self.inner
                .folder_sync
                .insert(folder_state_key(folder), encode_folder_state(&state))
                .map_err(self.db_err("update a folder"))?;
        }
        Ok(state)
    }

    /// Starts a folder afresh after a UIDVALIDITY change: the name gets a new id with
    /// `marks` and empty map and counters, and the old id's map and skipped items are
    /// erased (resumed at the next open if interrupted). Refused while journal entries of
    /// the folder are pending: reconcile or abort them first.
    pub fn reset_folder(&self, folder: FolderId, marks: FolderMarks) -> Result<FolderId> {
        let new = {
            let old = self.load_folder_state(folder)?;
            self.refuse_if_pending(folder, &old)?;
            let new = FolderId(self.new_id()?);
            let state = FolderState {
                mailbox: old.mailbox,
                source_name: old.source_name.clone(),
                marks,
                counters: FolderCounters::default(),
            };
            let mut batch = WriteSet::default();
            batch.insert(
                folder_name_key(old.mailbox.id, &old.source_name),
                encode_folder_id(new),
            );
            self.stage_folder_state(&mut batch, new, &state);
            self.stage_folder_drop(&mut batch, folder, old.mailbox.id);
            self.write_atomically(&self.inner.folder_sync, batch, "reset a folder")?;
            (new, old.mailbox.id)
        };
        self.erase_dropped_folder(folder, new.1)?;
        let new = new.0;
        Ok(new)
    }

    /// Moves a folder's state to a new source name, after the source folder was renamed:
    /// the id, map, counters and skipped items stay; the target name becomes
    /// `target_name`. Refused while journal entries of the folder are pending (they name
    /// the old target folder), and when the new name already has a folder.
    pub fn rename_folder(
        &self,
        folder: FolderId,
        new_source_name: &str,
        target_name: &str,
    ) -> Result<()> {
        let mut state = self.load_folder_state(folder)?;
        self.refuse_if_pending(folder, &state)?;
        if self.find_folder(state.mailbox, new_source_name)?.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "folder",
                name: new_source_name.to_string(),
                dir: self.path().to_path_buf(),
            });
        }
        let mut batch = WriteSet::default();
        batch.remove(folder_name_key(state.mailbox.id, &state.source_name));
        batch.insert(
            folder_name_key(state.mailbox.id, new_source_name),
            encode_folder_id(folder),
        );
        state.source_name = new_source_name.to_string();
        state.marks.target_name = Some(target_name.to_string());
        self.stage_folder_state(&mut batch, folder, &state);
        self.write_atomically(&self.inner.folder_sync, batch, "rename a folder")
    }

    /// Forgets a folder (it was deleted on the source): its name, map, counters and
    /// skipped items. Refused while journal entries of the folder are pending.
    pub fn remove_folder(&self, folder: FolderId) -> Result<()> {
        let mailbox = {
            let old = self.load_folder_state(folder)?;
            self.refuse_if_pending(folder, &old)?;
            let mut batch = WriteSet::default();
            batch.remove(folder_name_key(old.mailbox.id, &old.source_name));
            self.stage_folder_drop(&mut batch, folder, old.mailbox.id);
            self.write_atomically(&self.inner.folder_sync, batch, "remove a folder")?;
            old.mailbox.id
        };
        self.erase_dropped_folder(folder, mailbox)
    }

    fn refuse_if_pending(&self, folder: FolderId, state: &FolderState) -> Result<()> {
        let count = self.pending_in_folder(state.mailbox, folder)?.len();
        if count > 0 {
            return Err(StoreError::PendingJournal {
                folder: state.source_name.clone(),
                count,
            });
        }
        Ok(())
    }

    /// Marks a folder as dropped: its state disappears at once (so no commit can touch
    /// it), its runs and skipped items are erased afterwards in bounded batches.
    fn stage_folder_drop(&self, batch: &mut WriteSet, folder: FolderId, mailbox: u64) {
        batch.remove(folder_state_key(folder));
        // The mailbox is kept because the folder's skipped items are keyed under it.
        let mut w = Writer::versioned(8);
        w.varint(mailbox);
        batch.insert(dropped_folder_key(folder), w.finish());
    }

    fn erase_dropped_folder(&self, folder: FolderId, mailbox: u64) -> Result<()> {
        self.erase_uid_map(folder)?;
        self.erase_all_mail_fingerprints(folder)?;
        self.erase_skipped_of_folder(mailbox, folder)?;
        self.inner
            .folder_sync
            .remove(dropped_folder_key(folder))
            .map_err(self.db_err("finish erasing a folder"))?;
        Ok(())
    }

    /// Resumes erasing folders whose erasure a crash interrupted.
    pub(crate) fn erase_dropped_folders(&self) -> Result<()> {
        let prefix = [key_layout::DROPPED_FOLDER];
        let mut dropped = Vec::new();
        for item in self.inner.folder_sync.scan_prefix(prefix) {
            let (k, v) = item.map_err(self.db_err("list dropped folders"))?;
            let decoded = Reader::versioned(&v).and_then(|mut r| {
                let mailbox = r.varint()?;
                r.finish()?;
                Ok(mailbox)
            });
            let mailbox = decoded.map_err(|e| self.corrupt("dropped-folder marker", e))?;
            if k.len() == 9 {
                let mut a = [0u8; 8];
                a.copy_from_slice(&k[1..9]);
                dropped.push((FolderId(u64::from_be_bytes(a)), mailbox));
            }
        }
        for (folder, mailbox) in dropped {
            tracing::debug!(folder = folder.0, mailbox, "erasing a dropped folder");
            self.erase_dropped_folder(folder, mailbox)?;
        }
        Ok(())
    }

    /// Erases every folder of a mailbox (its removal), with their journal entries.
    pub(crate) fn erase_mailbox_folders(&self, mailbox: MailboxId) -> Result<()> {
        for (folder, _) in self.folders(mailbox)? {
            let mut batch = WriteSet::default();
            let state = self.load_folder_state(folder)?;
            batch.remove(folder_name_key(mailbox.id, &state.source_name));
            self.stage_folder_drop(&mut batch, folder, mailbox.id);
            self.write_atomically(&self.inner.folder_sync, batch, "remove a folder")?;
        }
        self.erase_dropped_folders()?;
        let sync = &self.inner.folder_sync;
        let mb = mailbox.id.to_be_bytes();
        self.delete_prefix(sync, &key_layout::key(key_layout::JOURNAL, &[&mb]))?;
        self.delete_prefix(sync, &key_layout::key(key_layout::SKIPPED, &[&mb]))?;
        self.delete_prefix(sync, &key_layout::key(key_layout::FOLDER_NAME, &[&mb]))?;
        self.erase_gmail_ids(mailbox)?;
        self.set_quick_check(mailbox, None)?;
        Ok(())
    }

    pub(crate) fn load_folder_state(&self, folder: FolderId) -> Result<FolderState> {
        let v = self
            .inner
            .folder_sync
            .get(folder_state_key(folder))
            .map_err(self.db_err("read a folder"))?
            .ok_or_else(|| StoreError::UnknownFolder {
                dir: self.path().to_path_buf(),
                folder: folder.0,
            })?;
        decode_folder_state(&v).map_err(|e| self.corrupt(format!("state of {folder}"), e))
    }

    pub(crate) fn stage_folder_state(
        &self,
        batch: &mut WriteSet,
        folder: FolderId,
        state: &FolderState,
    ) {
        batch.insert(folder_state_key(folder), encode_folder_state(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;
    use crate::test_fixtures::one_mailbox;

    #[test]
    fn folder_state_round_trips() {
        let s = FolderState {
            mailbox: MailboxId {
                batch: BatchId(3),
                id: 9,
            },
            source_name: "INBOX.Été".into(),
            marks: FolderMarks {
                target_name: Some("INBOX/Été".into()),
                source_uidvalidity: Some(u32::MAX),
                target_uidvalidity: None,
                highest_copied_uid: 77,
                highest_modseq_seen: Some(1 << 40),
                target_uidnext_seen: Some(78),
            },
            counters: FolderCounters {
                messages: 70,
                bytes: 1 << 33,
                skipped: 7,
            },
        };
        let bytes = encode_folder_state(&s);
        assert_eq!(decode_folder_state(&bytes), Ok(s));
        assert!(decode_folder_state(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_plan_registers_its_new_folders_at_once_and_keeps_known_ids() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Database::open(tmp.path(), &StoreOptions::default()).expect("open");
        let m = one_mailbox(&db);
        let inbox = db.folder(m, "INBOX").expect("INBOX");
        let names: Vec<String> = ["INBOX", "Sent", "Archive/2024", "Sent"]
            .into_iter()
            .map(String::from)
            .collect();
        let ids = db.register_folders(m, &names).expect("register");
        assert_eq!(ids[0], inbox, "a known folder keeps its id");
        assert_eq!(ids[1], ids[3], "a name given twice gets one id");
        assert_ne!(ids[1], ids[2]);
        for (id, name) in ids.iter().zip(&names) {
            assert_eq!(db.find_folder(m, name).expect("find"), Some(*id));
            assert_eq!(&db.folder_state(*id).expect("state").source_name, name);
        }
        assert_eq!(db.folders(m).expect("folders").len(), 3);
        assert_eq!(db.register_folders(m, &names).expect("again"), ids);
    }
}
