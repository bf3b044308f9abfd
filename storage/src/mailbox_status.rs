//! The changing part of a mailbox's record — its status, when that changed, the last
//! error, the last pass's times — and the passes that changed nothing and are not yet
//! folded into its pass history.
//!
//! `mailbox_status` tree: `batch:8 mailbox:8 -> compact value` (the key of the mailbox's
//! record in `mailboxes`). Why apart from the record: a daily pass over a mailbox nobody
//! wrote to changes these fields and nothing else, and sled 0.34 pays for a write with the
//! value plus, every tenth write to a leaf, the whole leaf and its neighbours' values
//! (page consolidation), and keeps the dead bytes in its log until half a segment is dead.
//! The row (addresses, user names, UserRoot) never changes after `batch add`, so it stays
//! JSON in `mailboxes`; the value here is about 30 bytes, and a pass over an unchanged
//! mailbox writes it alone (issue 17: the state directory must not grow for nothing).
//!
//! A value, where there is one, overrides the status fields of the JSON record (which
//! keeps those it had at `batch add`, and, in a directory written before this tree
//! existed, those of its last update).
//!
//! Pending repeats: a pass that only repeats the last history entry (see
//! `pass_history.rs`) is counted here instead of rewriting that entry: `repeats` passes
//! since entry `of` (its sequence number), the newest of them with this value's pass
//! times. Readers see the entry with the repeats added and those times. A pass that
//! appends an entry first writes the repeats into the old entry, in the same atomic write
//! as the new entry, and then clears them here; a crash between the two leaves `of`
//! naming an entry that is no longer the last one, and such repeats are ignored.

use serde::{Deserialize, Serialize};

use crate::database::Database;
use crate::error::Result;
use crate::key_layout::{MailboxId, mailbox_key};
use crate::record_codec::{DecodeError, Reader, Writer};
use crate::timestamp::Timestamp;

/// A mailbox's status (CLI.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MailboxStatus {
    Queued,
    Syncing,
    Synced,
    Failed,
    Stopped,
    Completed,
}

impl MailboxStatus {
    /// The status as the CLI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            MailboxStatus::Queued => "Queued",
            MailboxStatus::Syncing => "Syncing",
            MailboxStatus::Synced => "Synced",
            MailboxStatus::Failed => "Failed",
            MailboxStatus::Stopped => "Stopped",
            MailboxStatus::Completed => "Completed",
        }
    }
}

/// Passes that changed nothing, counted against the history entry they repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingRepeats {
    /// The sequence number of the history entry they repeat.
    pub(crate) of: u64,
    /// How many passes, the last of them at the value's pass times.
    pub(crate) count: u64,
}

/// The stored value: the record's changing fields and the pending repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusValue {
    pub(crate) status: MailboxStatus,
    pub(crate) status_changed: Timestamp,
    pub(crate) last_error: Option<String>,
    pub(crate) last_pass_started: Option<Timestamp>,
    pub(crate) last_pass_finished: Option<Timestamp>,
    pub(crate) repeats: Option<PendingRepeats>,
}

impl StatusValue {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let error = self.last_error.as_deref();
        let mut w = Writer::versioned(24 + error.map_or(0, str::len));
        w.u8(status_code(self.status));
        w.varint(self.status_changed.unix_millis());
        w.opt_str(error);
        w.opt_varint(self.last_pass_started.map(Timestamp::unix_millis));
        w.opt_varint(self.last_pass_finished.map(Timestamp::unix_millis));
        match self.repeats {
            Some(r) if r.count > 0 => {
                w.varint(r.count);
                w.varint(r.of);
            }
            _ => w.varint(0),
        }
        w.finish()
    }

    pub(crate) fn decode(value: &[u8]) -> std::result::Result<StatusValue, DecodeError> {
        let mut r = Reader::versioned(value)?;
        let status = status_from_code(r.u8()?)?;
        let status_changed = Timestamp::from_unix_millis(r.varint()?);
        let last_error = r.opt_string()?;
        let last_pass_started = r.opt_varint()?.map(Timestamp::from_unix_millis);
        let last_pass_finished = r.opt_varint()?.map(Timestamp::from_unix_millis);
        let repeats = match r.varint()? {
            0 => None,
            count => Some(PendingRepeats {
                of: r.varint()?,
                count,
            }),
        };
        r.finish()?;
        Ok(StatusValue {
            status,
            status_changed,
            last_error,
            last_pass_started,
            last_pass_finished,
            repeats,
        })
    }
}

fn status_code(status: MailboxStatus) -> u8 {
    match status {
        MailboxStatus::Queued => 1,
        MailboxStatus::Syncing => 2,
        MailboxStatus::Synced => 3,
        MailboxStatus::Failed => 4,
        MailboxStatus::Stopped => 5,
        MailboxStatus::Completed => 6,
    }
}

fn status_from_code(code: u8) -> std::result::Result<MailboxStatus, DecodeError> {
    Ok(match code {
        1 => MailboxStatus::Queued,
        2 => MailboxStatus::Syncing,
        3 => MailboxStatus::Synced,
        4 => MailboxStatus::Failed,
        5 => MailboxStatus::Stopped,
        6 => MailboxStatus::Completed,
        other => return Err(DecodeError(format!("mailbox status code {other}"))),
    })
}

impl Database {
    /// The mailbox's status value, if one was written.
    pub(crate) fn status_value(&self, id: MailboxId) -> Result<Option<StatusValue>> {
        self.inner
            .mailbox_status
            .get(mailbox_key(id))
            .map_err(self.db_err("read a mailbox's status"))?
            .map(|v| self.decode_status(id, &v))
            .transpose()
    }

    pub(crate) fn decode_status(&self, id: MailboxId, value: &[u8]) -> Result<StatusValue> {
        StatusValue::decode(value).map_err(|e| self.corrupt(format!("status of {id}"), e))
    }

    /// Writes the value unless it is what readers see already (`before`): a status set
    /// to what it was writes nothing.
    pub(crate) fn write_status(
        &self,
        id: MailboxId,
        before: &StatusValue,
        new: &StatusValue,
    ) -> Result<()> {
        if before == new {
            return Ok(());
        }
        self.inner
            .mailbox_status
            .insert(mailbox_key(id), new.encode())
            .map_err(self.db_err("write a mailbox's status"))?;
        Ok(())
    }

    /// Removes the mailbox's status value (the mailbox is being erased).
    pub(crate) fn remove_status(&self, id: MailboxId) -> Result<()> {
        self.inner
            .mailbox_status
            .remove(mailbox_key(id))
            .map_err(self.db_err("remove a mailbox's status"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(repeats: Option<PendingRepeats>, error: Option<&str>) -> StatusValue {
        StatusValue {
            status: MailboxStatus::Synced,
            status_changed: Timestamp::from_unix_millis(1_764_000_000_000),
            last_error: error.map(str::to_owned),
            last_pass_started: Some(Timestamp::from_unix_millis(1_764_900_000_000)),
            last_pass_finished: Some(Timestamp::from_unix_millis(1_764_900_000_120)),
            repeats,
        }
    }

    #[test]
    fn values_round_trip_and_stay_small() {
        let quiet = value(Some(PendingRepeats { of: 4711, count: 9 }), None);
        let bytes = quiet.encode();
        assert!(bytes.len() <= 32, "{} bytes", bytes.len());
        assert_eq!(StatusValue::decode(&bytes), Ok(quiet));
        let failed = value(None, Some("the source refused LOGIN"));
        assert_eq!(StatusValue::decode(&failed.encode()), Ok(failed));
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let mut bytes = value(None, None).encode();
        bytes[1] = 99;
        assert!(StatusValue::decode(&bytes).is_err());
        let mut bytes = value(None, None).encode();
        bytes.push(0);
        assert!(StatusValue::decode(&bytes).is_err(), "trailing bytes");
        assert!(StatusValue::decode(&[]).is_err());
    }
}
