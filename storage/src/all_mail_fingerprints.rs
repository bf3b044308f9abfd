//! The fingerprints Gmail's All Mail is judged against when the source does not offer
//! X-GM-EXT-1 (so no X-GM-LABELS says which messages are archived): a message of All
//! Mail is archived mail exactly when no label folder of the mailbox holds a message with
//! its bytes. Kept per folder, in one of two roles the engine gives it:
//!
//! - for a label folder (INBOX, a user label, Sent, Drafts): the fingerprints of its
//!   copied messages that are still on the source. Added in the same atomic write set as
//!   the copy's journal commit ([`crate::GroupOutcome::all_mail_index`]) or a rebuilt
//!   map, dropped with their uid-map entries, and recomputed from the uid map when the
//!   source shows that messages left the folder ([`Database::keep_label_fingerprints`]).
//!   It is always a subset of the folder's uid map: a map entry it lacks is a copy whose
//!   source message left the folder (deleted, or its label removed);
//! - for All Mail: the messages judged to have a label ("accounted for"), so that they
//!   are never copied while they keep one, and are moved to the archive if they lose it.
//!   A commit of a copy into the archive drops the copied UIDs from it in the same write.
//!
//! Key (`folder_sync` tree): `A folder:8 block:4` → the block's entries, where block is
//! the source UID divided by [`BLOCK_UIDS`]: a folder is one range scan of a few keys
//! (about 17 bytes per message), and a commit rewrites only the blocks it touches.
//! Erased with the folder's map when the folder or its UIDVALIDITY is reset or the folder
//! removed (`folder_state.rs`).

use std::collections::{BTreeMap, HashSet};

use crate::atomic_write::WriteSet;
use crate::database::Database;
use crate::error::Result;
use crate::key_layout::{self, FolderId};
use crate::record_codec::{DecodeError, Reader, Writer};
use crate::uid_map::Fingerprint;

pub(crate) const ALL_MAIL_FINGERPRINTS: u8 = b'A';

/// Source UIDs per key: 128 keeps a block under 2.5 KB, cheap to rewrite.
pub const BLOCK_UIDS: u32 = 128;

/// What a journal commit does to the folder's All Mail fingerprints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AllMailIndex {
    /// Nothing: the folder plays no part (most folders, any source but Gmail).
    #[default]
    Untouched,
    /// A label folder: the copied messages' fingerprints are added.
    AddCopied,
    /// All Mail: the copied messages (now in the archive) are no longer accounted for.
    RemoveCopied,
}

type Block = BTreeMap<u32, Fingerprint>;

/// A block's staged change: entries to add, source UIDs to remove.
type BlockChange = (Vec<(u32, Fingerprint)>, Vec<u32>);

fn block_key(folder: FolderId, block: u32) -> Vec<u8> {
    key_layout::key(
        ALL_MAIL_FINGERPRINTS,
        &[&folder.0.to_be_bytes(), &block.to_be_bytes()],
    )
}

fn folder_prefix(folder: FolderId) -> Vec<u8> {
    key_layout::key(ALL_MAIL_FINGERPRINTS, &[&folder.0.to_be_bytes()])
}

fn encode_block(block: &Block) -> Vec<u8> {
    let mut w = Writer::versioned(block.len() * 18 + 2);
    w.varint(block.len() as u64);
    for (uid, fp) in block {
        w.varint(u64::from(uid % BLOCK_UIDS));
        w.raw(&fp.0);
    }
    w.finish()
}

fn decode_block(block: u32, value: &[u8]) -> std::result::Result<Block, DecodeError> {
    let mut r = Reader::versioned(value)?;
    let n = r.varint()?;
    if n > u64::from(BLOCK_UIDS) {
        return Err(DecodeError(format!("{n} entries in one block")));
    }
    let base = block
        .checked_mul(BLOCK_UIDS)
        .ok_or_else(|| DecodeError(format!("block {block} out of range")))?;
    let mut out = Block::new();
    for _ in 0..n {
        let offset = r.varint_u32()?;
        if offset >= BLOCK_UIDS {
            return Err(DecodeError(format!("offset {offset} outside its block")));
        }
        let mut fp = [0u8; 16];
        fp.copy_from_slice(r.raw(16)?);
        out.insert(base + offset, Fingerprint(fp));
    }
    r.finish()?;
    Ok(out)
}

impl Database {
    /// Every fingerprint recorded for `folder`, by source UID, in UID order.
    pub fn all_mail_fingerprints(&self, folder: FolderId) -> Result<Vec<(u32, Fingerprint)>> {
        let prefix = folder_prefix(folder);
        let mut out = Vec::new();
        for item in self.inner.folder_sync.scan_prefix(&prefix) {
            let (k, v) = item.map_err(self.db_err("read All Mail fingerprints"))?;
            let block = block_of_key(&prefix, &k).ok_or_else(|| {
                self.corrupt(
                    format!("All Mail fingerprints of {folder}"),
                    DecodeError("key of the wrong shape".into()),
                )
            })?;
            let entries = decode_block(block, &v)
                .map_err(|e| self.corrupt(format!("All Mail fingerprints of {folder}"), e))?;
            out.extend(entries);
        }
        Ok(out)
    }

    /// Records fingerprints of `folder`'s source UIDs (All Mail's messages judged to have
    /// a label). A UID already recorded keeps the new fingerprint.
    pub fn add_all_mail_fingerprints(
        &self,
        folder: FolderId,
        entries: &[(u32, Fingerprint)],
    ) -> Result<()> {
        self.load_folder_state(folder)?;
        let mut batch = WriteSet::default();
        self.stage_all_mail_changes(&mut batch, folder, entries, &[])?;
        self.write_atomically(
            &self.inner.folder_sync,
            batch,
            "record All Mail fingerprints",
        )
    }

    /// Forgets fingerprints of `folder`'s source UIDs (All Mail's messages gone from
    /// the source).
    pub fn remove_all_mail_fingerprints(&self, folder: FolderId, uids: &[u32]) -> Result<()> {
        let mut batch = WriteSet::default();
        self.stage_all_mail_changes(&mut batch, folder, &[], uids)?;
        self.write_atomically(
            &self.inner.folder_sync,
            batch,
            "forget All Mail fingerprints",
        )
    }

    /// Recomputes a label folder's fingerprints after the source showed which of its
    /// messages are there (`present`, source UIDs): the uid-map entries whose message is
    /// still on the source, all in one write. Returns how many remain.
    pub fn keep_label_fingerprints(&self, folder: FolderId, present: &HashSet<u32>) -> Result<u64> {
        self.load_folder_state(folder)?;
        let mut wanted: BTreeMap<u32, Block> = BTreeMap::new();
        for item in self.uid_map_range(folder, ..)? {
            let (uid, e) = item?;
            if present.contains(&uid) {
                wanted
                    .entry(uid / BLOCK_UIDS)
                    .or_default()
                    .insert(uid, e.fingerprint);
            }
        }
        let prefix = folder_prefix(folder);
        let mut batch = WriteSet::default();
        let mut kept = 0u64;
        for item in self.inner.folder_sync.scan_prefix(&prefix) {
            let (k, v) = item.map_err(self.db_err("read All Mail fingerprints"))?;
            let Some(block) = block_of_key(&prefix, &k) else {
                batch.remove(k);
                continue;
            };
            match wanted.remove(&block) {
                Some(entries) => {
                    kept += entries.len() as u64;
                    let value = encode_block(&entries);
                    if v[..] != value[..] {
                        batch.insert(k, value);
                    }
                }
                None => batch.remove(k),
            }
        }
        for (block, entries) in wanted {
            kept += entries.len() as u64;
            batch.insert(block_key(folder, block), encode_block(&entries));
        }
        self.write_atomically(
            &self.inner.folder_sync,
            batch,
            "recompute a label folder's fingerprints",
        )?;
        Ok(kept)
    }

    /// Stages additions and removals of `folder`'s fingerprints into `batch`, each block
    /// read and written once.
    pub(crate) fn stage_all_mail_changes(
        &self,
        batch: &mut WriteSet,
        folder: FolderId,
        add: &[(u32, Fingerprint)],
        remove: &[u32],
    ) -> Result<()> {
        let mut blocks: BTreeMap<u32, BlockChange> = BTreeMap::new();
        for &(uid, fp) in add {
            blocks
                .entry(uid / BLOCK_UIDS)
                .or_default()
                .0
                .push((uid, fp));
        }
        for &uid in remove {
            blocks.entry(uid / BLOCK_UIDS).or_default().1.push(uid);
        }
        for (block, (add, remove)) in blocks {
            let key = block_key(folder, block);
            let current = self
                .inner
                .folder_sync
                .get(&key)
                .map_err(self.db_err("read All Mail fingerprints"))?;
            let mut entries = match &current {
                Some(v) => decode_block(block, v)
                    .map_err(|e| self.corrupt(format!("All Mail fingerprints of {folder}"), e))?,
                None => Block::new(),
            };
            let before = entries.clone();
            for uid in remove {
                entries.remove(&uid);
            }
            entries.extend(add);
            if entries == before {
                continue;
            }
            if entries.is_empty() {
                batch.remove(key);
            } else {
                batch.insert(key, encode_block(&entries));
            }
        }
        Ok(())
    }

    /// Erases a folder's fingerprints (its map is erased: reset, removal).
    pub(crate) fn erase_all_mail_fingerprints(&self, folder: FolderId) -> Result<()> {
        self.delete_prefix(&self.inner.folder_sync, &folder_prefix(folder))
            .map(drop)
    }
}

fn block_of_key(prefix: &[u8], key: &[u8]) -> Option<u32> {
    let rest = key.strip_prefix(prefix)?;
    <[u8; 4]>::try_from(rest).ok().map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;
    use crate::journal::{CopiedMessage, CopyGroup, GroupOutcome, PendingMessage};
    use crate::test_fixtures::one_mailbox;
    use crate::uid_map::MessageFlags;

    fn fp(n: u32) -> Fingerprint {
        Fingerprint([n as u8; 16])
    }

    fn copy(db: &Database, folder: FolderId, uids: &[u32], index: AllMailIndex) {
        let group = CopyGroup {
            target_folder: "T".into(),
            target_uidvalidity: 1,
            target_uidnext: 1,
            messages: uids
                .iter()
                .map(|&u| PendingMessage {
                    source_uid: u,
                    fingerprint: fp(u % 1000),
                    size: 10,
                })
                .collect(),
        };
        let id = db.begin(folder, &group).expect("begin");
        let outcome = GroupOutcome {
            copied: uids
                .iter()
                .map(|&u| CopiedMessage {
                    source_uid: u,
                    target_uid: u + 5000,
                    flags: MessageFlags::new(),
                })
                .collect(),
            all_mail_index: index,
            ..GroupOutcome::default()
        };
        db.commit(id, &outcome).expect("commit");
    }

    #[test]
    fn blocks_round_trip_and_refuse_garbage() {
        let block: Block = [(256, fp(1)), (383, fp(2))].into_iter().collect();
        let bytes = encode_block(&block);
        assert_eq!(decode_block(2, &bytes), Ok(block));
        assert!(decode_block(2, &bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_label_folders_fingerprints_follow_its_commits_map_and_source() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Database::open(tmp.path(), &StoreOptions::default()).expect("open");
        let m = one_mailbox(&db);
        let work = db.folder(m, "Work").expect("Work");
        let all = db.folder(m, "[Gmail]/All Mail").expect("All Mail");
        // Committed copies of a label folder enter its fingerprints, in blocks of 128.
        copy(&db, work, &[1, 2, 200], AllMailIndex::AddCopied);
        assert_eq!(
            db.all_mail_fingerprints(work).expect("read"),
            [(1, fp(1)), (2, fp(2)), (200, fp(200))]
        );
        // A copy of another folder leaves them alone.
        copy(&db, all, &[7], AllMailIndex::Untouched);
        assert!(db.all_mail_fingerprints(all).expect("read").is_empty());
        // All Mail's accounted-for messages leave when copied into the archive.
        db.add_all_mail_fingerprints(all, &[(8, fp(8)), (9, fp(9))])
            .expect("account");
        copy(&db, all, &[9], AllMailIndex::RemoveCopied);
        assert_eq!(db.all_mail_fingerprints(all).expect("read"), [(8, fp(8))]);
        db.remove_all_mail_fingerprints(all, &[8]).expect("forget");
        assert!(db.all_mail_fingerprints(all).expect("read").is_empty());
        // Source UID 2 left the folder: only the map entries still there stay.
        let present: HashSet<u32> = [1, 200, 999].into_iter().collect();
        assert_eq!(db.keep_label_fingerprints(work, &present).expect("keep"), 2);
        assert_eq!(
            db.all_mail_fingerprints(work).expect("read"),
            [(1, fp(1)), (200, fp(200))]
        );
        // Removing map entries removes their fingerprints in the same write.
        db.uid_map_remove(work, &[200]).expect("remove");
        assert_eq!(db.all_mail_fingerprints(work).expect("read"), [(1, fp(1))]);
        // A UIDVALIDITY reset erases them with the map.
        let new = db
            .reset_folder(work, crate::FolderMarks::default())
            .expect("reset");
        assert!(db.all_mail_fingerprints(work).expect("read").is_empty());
        assert!(db.all_mail_fingerprints(new).expect("read").is_empty());
    }
}
