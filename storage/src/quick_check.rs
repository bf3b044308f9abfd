//! A mailbox's quick check: what lets a pass over a mailbox whose source has not changed
//! end after the source's listing, without logging in to the target.
//!
//! Key (`folder_sync` tree): `Q mailbox:8` → `digest:8 verified:8` (big-endian): a digest
//! of what the last full pass planned from (the source's folder list with attributes and
//! subscriptions, and the batch's options for the mailbox), and when that pass last saw
//! the target. A pass whose source listing gives the same digest and whose folders'
//! STATUS values show nothing new, changed or deleted since the stored state would plan
//! and decide exactly what that pass did — nothing — unless the target changed behind
//! its back (a folder deleted there, a UIDVALIDITY reset); so the engine logs in to the
//! target anyway once `verified` is older than its recheck interval. Written by a full
//! pass that ended without error; erased with the mailbox's folders.

use crate::database::Database;
use crate::error::Result;
use crate::key_layout::{self, MailboxId};
use crate::timestamp::Timestamp;

pub(crate) const QUICK_CHECK: u8 = b'Q';

/// What the last full pass of a mailbox planned from, and when it saw the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuickCheck {
    /// The engine's digest of the source listing and the options (opaque here).
    pub source_digest: u64,
    /// When a pass last logged in to the target and found the plan as stored.
    pub target_verified: Timestamp,
}

fn key(mailbox: MailboxId) -> Vec<u8> {
    key_layout::key(QUICK_CHECK, &[&mailbox.id.to_be_bytes()])
}

impl Database {
    /// The mailbox's quick check, if a full pass left one (a value of another length,
    /// from a later version, reads as none: the next pass is then a full one).
    pub fn quick_check(&self, mailbox: MailboxId) -> Result<Option<QuickCheck>> {
        let Some(v) = self
            .inner
            .folder_sync
            .get(key(mailbox))
            .map_err(self.db_err("read the quick check of a mailbox"))?
        else {
            return Ok(None);
        };
        let (Ok(digest), Ok(verified)) = (
            <[u8; 8]>::try_from(v.get(..8).unwrap_or_default()),
            <[u8; 8]>::try_from(v.get(8..).unwrap_or_default()),
        ) else {
            return Ok(None);
        };
        Ok(Some(QuickCheck {
            source_digest: u64::from_be_bytes(digest),
            target_verified: Timestamp::from_unix_millis(u64::from_be_bytes(verified)),
        }))
    }

    /// Stores the mailbox's quick check, or removes it (`None`: the next pass is a full
    /// one).
    pub fn set_quick_check(&self, mailbox: MailboxId, check: Option<QuickCheck>) -> Result<()> {
        let tree = &self.inner.folder_sync;
        match check {
            Some(c) => {
                let mut v = Vec::with_capacity(16);
                v.extend_from_slice(&c.source_digest.to_be_bytes());
                v.extend_from_slice(&c.target_verified.unix_millis().to_be_bytes());
                tree.insert(key(mailbox), v)
                    .map_err(self.db_err("write the quick check of a mailbox"))?;
            }
            None => {
                tree.remove(key(mailbox))
                    .map_err(self.db_err("remove the quick check of a mailbox"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quick_check_is_kept_replaced_and_erased_with_the_mailbox() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db =
            Database::open(dir.path(), &crate::database::StoreOptions::default()).expect("open");
        let mailbox = MailboxId {
            batch: key_layout::BatchId(1),
            id: 7,
        };
        let other = MailboxId {
            batch: key_layout::BatchId(1),
            id: 8,
        };
        assert_eq!(db.quick_check(mailbox).expect("read"), None);
        let first = QuickCheck {
            source_digest: 0xfeed_beef,
            target_verified: Timestamp::from_unix_millis(1_700_000_000_000),
        };
        db.set_quick_check(mailbox, Some(first)).expect("write");
        db.set_quick_check(other, Some(first)).expect("write");
        assert_eq!(db.quick_check(mailbox).expect("read"), Some(first));
        let second = QuickCheck {
            source_digest: 1,
            ..first
        };
        db.set_quick_check(mailbox, Some(second)).expect("replace");
        assert_eq!(db.quick_check(mailbox).expect("read"), Some(second));
        db.erase_mailbox_folders(mailbox).expect("erase");
        assert_eq!(db.quick_check(mailbox).expect("read"), None);
        assert_eq!(db.quick_check(other).expect("read"), Some(first));
        db.set_quick_check(other, None).expect("remove");
        assert_eq!(db.quick_check(other).expect("read"), None);
    }
}
