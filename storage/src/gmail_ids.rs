//! Gmail message ids: which copied message of which folder a Gmail `X-GM-MSGID` is, so
//! that a message archived after it was copied (its last label removed, so that it now
//! shows in All Mail only) can leave the target folders it was copied to when it goes to
//! the archive — a move, as Gmail means it, never a second copy.
//!
//! Key (`folder_sync` tree): `X mailbox:8 msgid:8 folder:8 uid:4` → the message's
//! fingerprint (16 bytes), checked against the folder's uid map before the target copy
//! is touched, so an entry outlived by a UIDVALIDITY change can never name another
//! message. Written after the copy group's commit: a crash in between leaves a message
//! without its entry, which can then only stay in its old folder besides the archive,
//! never be lost. Erased with the mailbox.

use crate::atomic_write::WriteSet;
use crate::database::Database;
use crate::error::Result;
use crate::key_layout::{self, FolderId, MailboxId};
use crate::uid_map::Fingerprint;

pub(crate) const GMAIL_ID: u8 = b'X';

fn prefix(mailbox: MailboxId, msgid: u64) -> Vec<u8> {
    key_layout::key(GMAIL_ID, &[&mailbox.id.to_be_bytes(), &msgid.to_be_bytes()])
}

/// A copied message of a Gmail source, by its X-GM-MSGID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GmailCopy {
    pub folder: FolderId,
    pub source_uid: u32,
    pub fingerprint: Fingerprint,
}

impl Database {
    /// Records copied messages of a Gmail source: `(X-GM-MSGID, copy)`.
    pub fn record_gmail_ids(&self, mailbox: MailboxId, ids: &[(u64, GmailCopy)]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut batch = WriteSet::default();
        for (msgid, copy) in ids {
            let mut k = prefix(mailbox, *msgid);
            k.extend_from_slice(&copy.folder.0.to_be_bytes());
            k.extend_from_slice(&copy.source_uid.to_be_bytes());
            batch.insert(k, copy.fingerprint.0.to_vec());
        }
        self.write_atomically(&self.inner.folder_sync, batch, "record Gmail message ids")
    }

    /// The copies recorded for a Gmail X-GM-MSGID.
    pub fn gmail_copies(&self, mailbox: MailboxId, msgid: u64) -> Result<Vec<GmailCopy>> {
        let p = prefix(mailbox, msgid);
        let mut out = Vec::new();
        for item in self.inner.folder_sync.scan_prefix(&p) {
            let (k, v) = item.map_err(self.db_err("read Gmail message ids"))?;
            let rest = &k[p.len()..];
            let (Ok(folder), Ok(uid), Ok(fp)) = (
                <[u8; 8]>::try_from(rest.get(..8).unwrap_or_default()),
                <[u8; 4]>::try_from(rest.get(8..12).unwrap_or_default()),
                <[u8; 16]>::try_from(&v[..]),
            ) else {
                continue;
            };
            out.push(GmailCopy {
                folder: FolderId(u64::from_be_bytes(folder)),
                source_uid: u32::from_be_bytes(uid),
                fingerprint: Fingerprint(fp),
            });
        }
        Ok(out)
    }

    /// Forgets the copies of a Gmail X-GM-MSGID (once they left the target).
    pub fn forget_gmail_id(&self, mailbox: MailboxId, msgid: u64) -> Result<()> {
        self.delete_prefix(&self.inner.folder_sync, &prefix(mailbox, msgid))
            .map(drop)
    }

    /// Erases every Gmail message id of a mailbox (its removal).
    pub(crate) fn erase_gmail_ids(&self, mailbox: MailboxId) -> Result<()> {
        let p = key_layout::key(GMAIL_ID, &[&mailbox.id.to_be_bytes()]);
        self.delete_prefix(&self.inner.folder_sync, &p).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_found_by_message_id_and_forgotten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db =
            Database::open(dir.path(), &crate::database::StoreOptions::default()).expect("open");
        let mailbox = MailboxId {
            batch: key_layout::BatchId(1),
            id: 7,
        };
        let copy = |folder, uid| GmailCopy {
            folder: FolderId(folder),
            source_uid: uid,
            fingerprint: Fingerprint([uid as u8; 16]),
        };
        db.record_gmail_ids(
            mailbox,
            &[(42, copy(3, 10)), (42, copy(4, 2)), (43, copy(3, 11))],
        )
        .expect("record");
        assert_eq!(
            db.gmail_copies(mailbox, 42).expect("read"),
            [copy(3, 10), copy(4, 2)]
        );
        db.forget_gmail_id(mailbox, 42).expect("forget");
        assert!(db.gmail_copies(mailbox, 42).expect("read").is_empty());
        assert_eq!(db.gmail_copies(mailbox, 43).expect("read").len(), 1);
        db.erase_gmail_ids(mailbox).expect("erase");
        assert!(db.gmail_copies(mailbox, 43).expect("read").is_empty());
    }
}
