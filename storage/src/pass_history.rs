//! Pass history: one record per pass over a mailbox (initial sync or incremental).
//!
//! `pass_history` tree: `mailbox:8 seq:8 -> record`; ids only grow, so a mailbox's
//! history is one prefix scan in time order.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::key_layout::MailboxId;
use crate::record_codec::{decode_json, encode_json};
use crate::store::Store;
use crate::timestamp::Timestamp;

/// Passes kept per mailbox: years of daily passes; older ones are dropped.
pub const PASS_HISTORY_LIMIT: usize = 1000;

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PassOutcome {
    Succeeded,
    Failed,
    Stopped,
}

/// One pass over a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassRecord {
    pub started: Timestamp,
    pub finished: Timestamp,
    pub items_copied: u64,
    pub bytes_copied: u64,
    pub items_skipped: u64,
    pub flags_updated: u64,
    pub items_deleted: u64,
    pub outcome: PassOutcome,
    /// Why it failed, one sentence.
    pub error: Option<String>,
    /// Source folders the pass left alone, and why (absent in records written before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders_skipped: Vec<FolderSkip>,
    /// Source folders renamed since the pass before, whose renames the pass followed on
    /// the target (absent in records written before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders_renamed: Vec<FolderRename>,
}

/// A source folder's rename that a pass followed on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRename {
    /// The source name before.
    pub from: String,
    /// The source name now.
    pub to: String,
}

/// A source folder a pass did not sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderSkip {
    pub folder: String,
    /// Why, as a short phrase ("vanished from the source").
    pub reason: String,
}

impl Store {
    /// Appends a pass to the mailbox's history and sets its last pass times.
    pub fn record_pass(&self, mailbox: MailboxId, pass: &PassRecord) -> Result<()> {
        self.mailbox(mailbox)?;
        let seq = self.new_id()?;
        let mut key = mailbox.id.to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        self.inner
            .pass_history
            .insert(key, encode_json(pass, "pass history")?)
            .map_err(self.db_err("record a pass"))?;
        self.trim_history(mailbox)?;
        self.update_mailbox(mailbox, |m| {
            m.last_pass_started = Some(pass.started);
            m.last_pass_finished = Some(pass.finished);
        })?;
        Ok(())
    }

    /// A mailbox's passes, oldest first.
    pub fn pass_history(&self, mailbox: MailboxId) -> Result<Vec<PassRecord>> {
        let mut out = Vec::new();
        for item in self
            .inner
            .pass_history
            .scan_prefix(mailbox.id.to_be_bytes())
        {
            let (_, v) = item.map_err(self.db_err("read pass history"))?;
            out.push(
                decode_json(&v)
                    .map_err(|e| self.corrupt(format!("pass history of {mailbox}"), e))?,
            );
        }
        Ok(out)
    }

    fn trim_history(&self, mailbox: MailboxId) -> Result<()> {
        let prefix = mailbox.id.to_be_bytes();
        let tree = &self.inner.pass_history;
        let count = tree.scan_prefix(prefix).keys().count();
        if count <= PASS_HISTORY_LIMIT {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for k in tree
            .scan_prefix(prefix)
            .keys()
            .take(count - PASS_HISTORY_LIMIT)
        {
            batch.remove(k.map_err(self.db_err("trim pass history"))?);
        }
        tree.apply_batch(batch)
            .map_err(self.db_err("trim pass history"))
    }
}
