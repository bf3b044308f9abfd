//! Record ids and the byte layout of keys.
//!
//! Numbers in keys are fixed-width big-endian so that byte order is numeric order and a
//! folder's uid map, a mailbox's journal or a batch's mailboxes are one range scan.
//!
//! The `folder_sync` tree holds everything a copy group touches, under one-byte prefixes,
//! because a write set ([`crate::atomic_write`]) is atomic within one tree:
//!
//! ```text
//! N mailbox:8 source-name  -> folder id          (folder registry)
//! F folder:8               -> folder state       (UIDVALIDITYs, watermark, counters)
//! U folder:8 first-uid:4   -> uid-map run        (up to RUN_CAPACITY entries)
//! J mailbox:8 folder:8 seq:8 -> journal entry    (a group of APPENDs in flight)
//! S mailbox:8 folder:8 uid:4 -> skipped item
//! G folder:8               -> ()                 (a dropped folder still being erased)
//! X mailbox:8 msgid:8 folder:8 uid:4 -> fingerprint (Gmail message ids, gmail_ids.rs)
//! Q mailbox:8              -> digest:8 verified:8 (the quick check, quick_check.rs)
//! A folder:8 block:4       -> fingerprints       (uid / 128: Gmail's All Mail judged
//!                                                  by bytes, `all_mail_fingerprints.rs`)
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// A batch, as numbered by the store. Names can be reused after removal; ids cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchId(pub(crate) u64);

/// A mailbox (one row of a migration file) of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MailboxId {
    pub(crate) batch: BatchId,
    pub(crate) id: u64,
}

/// A source folder of a mailbox. A folder gets a new id when its map is reset after a
/// UIDVALIDITY change, so a stale id can never write into the rebuilt map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FolderId(pub(crate) u64);

/// A pending group of APPENDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JournalId {
    pub(crate) mailbox: u64,
    pub(crate) folder: FolderId,
    pub(crate) seq: u64,
}

impl BatchId {
    /// The number, for logs and reports.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl MailboxId {
    /// The batch this mailbox belongs to.
    pub fn batch(self) -> BatchId {
        self.batch
    }

    /// The number, for logs and reports.
    pub fn get(self) -> u64 {
        self.id
    }
}

impl FolderId {
    /// The number, for logs and reports.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl JournalId {
    /// The folder whose copy group this is.
    pub fn folder(self) -> FolderId {
        self.folder
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch#{}", self.0)
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mailbox#{}", self.id)
    }
}

impl fmt::Display for FolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "folder#{}", self.0)
    }
}

impl fmt::Display for JournalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "journal#{}.{}", self.folder.0, self.seq)
    }
}

pub(crate) const FOLDER_NAME: u8 = b'N';
pub(crate) const FOLDER_STATE: u8 = b'F';
pub(crate) const UID_RUN: u8 = b'U';
pub(crate) const JOURNAL: u8 = b'J';
pub(crate) const SKIPPED: u8 = b'S';
pub(crate) const DROPPED_FOLDER: u8 = b'G';

/// Concatenates a prefix byte and big-endian parts into a key.
pub(crate) fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub(crate) fn folder_name_key(mailbox: u64, name: &str) -> Vec<u8> {
    key(FOLDER_NAME, &[&mailbox.to_be_bytes(), name.as_bytes()])
}

pub(crate) fn folder_state_key(folder: FolderId) -> Vec<u8> {
    key(FOLDER_STATE, &[&folder.0.to_be_bytes()])
}

pub(crate) fn uid_run_key(folder: FolderId, first_uid: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = UID_RUN;
    k[1..9].copy_from_slice(&folder.0.to_be_bytes());
    k[9..13].copy_from_slice(&first_uid.to_be_bytes());
    k
}

pub(crate) fn uid_run_prefix(folder: FolderId) -> Vec<u8> {
    key(UID_RUN, &[&folder.0.to_be_bytes()])
}

/// The first UID of a run from its key, checking the key belongs to `folder`.
pub(crate) fn uid_run_first(folder: FolderId, key: &[u8]) -> Option<u32> {
    if key.len() != 13 || key[0] != UID_RUN || key[1..9] != folder.0.to_be_bytes() {
        return None;
    }
    let mut a = [0u8; 4];
    a.copy_from_slice(&key[9..13]);
    Some(u32::from_be_bytes(a))
}

pub(crate) fn journal_key(id: JournalId) -> Vec<u8> {
    key(
        JOURNAL,
        &[
            &id.mailbox.to_be_bytes(),
            &id.folder.0.to_be_bytes(),
            &id.seq.to_be_bytes(),
        ],
    )
}

pub(crate) fn journal_id_from_key(key: &[u8]) -> Option<JournalId> {
    if key.len() != 25 || key[0] != JOURNAL {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&key[r]);
        u64::from_be_bytes(a)
    };
    Some(JournalId {
        mailbox: num(1..9),
        folder: FolderId(num(9..17)),
        seq: num(17..25),
    })
}

pub(crate) fn skipped_key(mailbox: u64, folder: FolderId, uid: u32) -> Vec<u8> {
    key(
        SKIPPED,
        &[
            &mailbox.to_be_bytes(),
            &folder.0.to_be_bytes(),
            &uid.to_be_bytes(),
        ],
    )
}

pub(crate) fn dropped_folder_key(folder: FolderId) -> Vec<u8> {
    key(DROPPED_FOLDER, &[&folder.0.to_be_bytes()])
}

/// `mailboxes` tree: batch:8 mailbox:8.
pub(crate) fn mailbox_key(id: MailboxId) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.batch.0.to_be_bytes());
    k[8..].copy_from_slice(&id.id.to_be_bytes());
    k
}

pub(crate) fn mailbox_id_from_key(key: &[u8]) -> Option<MailboxId> {
    if key.len() != 16 {
        return None;
    }
    let mut b = [0u8; 8];
    let mut m = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    m.copy_from_slice(&key[8..]);
    Some(MailboxId {
        batch: BatchId(u64::from_be_bytes(b)),
        id: u64::from_be_bytes(m),
    })
}

/// `logins` tree: len:2 lowercase-login batch:8 mailbox:8. The length prefix makes a
/// prefix scan match the whole login, never a longer one that starts the same.
pub(crate) fn login_prefix(login: &str) -> Vec<u8> {
    let lower = login.trim().to_lowercase();
    let bytes = lower.as_bytes();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let bytes = &bytes[..usize::from(len)];
    let mut k = Vec::with_capacity(2 + bytes.len() + 16);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(bytes);
    k
}

pub(crate) fn login_key(login: &str, mailbox: MailboxId) -> Vec<u8> {
    let mut k = login_prefix(login);
    k.extend_from_slice(&mailbox_key(mailbox));
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_run_keys_sort_numerically() {
        let f = FolderId(3);
        assert!(uid_run_key(f, 255) < uid_run_key(f, 256));
        assert!(uid_run_key(f, u32::MAX) < uid_run_key(FolderId(4), 0));
        assert_eq!(uid_run_first(f, &uid_run_key(f, 77)), Some(77));
        assert_eq!(uid_run_first(FolderId(4), &uid_run_key(f, 77)), None);
        assert!(uid_run_key(f, 9).starts_with(&uid_run_prefix(f)));
    }

    #[test]
    fn journal_keys_round_trip() {
        let id = JournalId {
            mailbox: 5,
            folder: FolderId(6),
            seq: 7,
        };
        assert_eq!(journal_id_from_key(&journal_key(id)), Some(id));
        assert_eq!(journal_id_from_key(b"J"), None);
    }

    #[test]
    fn login_prefix_is_case_insensitive_and_exact() {
        assert_eq!(
            login_prefix("Anna@Example.COM"),
            login_prefix("anna@example.com")
        );
        let m = MailboxId {
            batch: BatchId(1),
            id: 2,
        };
        assert!(login_key("ann", m).starts_with(&login_prefix("ann")));
        assert!(!login_key("anna", m).starts_with(&login_prefix("ann")));
        assert_eq!(mailbox_id_from_key(&mailbox_key(m)), Some(m));
    }
}
