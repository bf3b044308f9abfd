//! Skipped items: messages that were not copied, with why, for the batch report — and
//! messages copied without some of their keywords, which the report lists beside them.

use crate::atomic_write::WriteSet;
use crate::database::Database;
use crate::error::Result;
use crate::folder_state::FolderState;
use crate::key_layout::{self, FolderId, MailboxId, skipped_key};
use crate::record_codec::{DecodeError, Reader, Writer};
use crate::timestamp::Timestamp;

/// Text fields are cut to this many bytes: a report needs the gist, and a hostile
/// subject must not bloat the store.
const MAX_TEXT: usize = 1024;

/// Why a message was not copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Larger than the batch's `--max-message-size` or the target's limit.
    TooLarge,
    /// The target refused the APPEND.
    RejectedByTarget,
    /// The source could not deliver it.
    Unreadable,
    /// Copied, but without its keywords: the target refused the message with them and
    /// accepted it without (Cyrus's cap on keywords per folder, Dovecot's keyword
    /// length). Not a bad item and not counted as skipped: the message is on the target.
    KeywordsDropped,
}

impl SkipReason {
    fn code(self) -> u8 {
        match self {
            SkipReason::TooLarge => 1,
            SkipReason::RejectedByTarget => 2,
            SkipReason::Unreadable => 3,
            SkipReason::KeywordsDropped => 4,
        }
    }

    fn from_code(c: u8) -> Result<Self, DecodeError> {
        match c {
            1 => Ok(SkipReason::TooLarge),
            2 => Ok(SkipReason::RejectedByTarget),
            3 => Ok(SkipReason::Unreadable),
            4 => Ok(SkipReason::KeywordsDropped),
            _ => Err(DecodeError(format!("unknown skip reason {c}"))),
        }
    }

    /// The reason as the report prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TooLarge => "too large",
            SkipReason::RejectedByTarget => "rejected by target",
            SkipReason::Unreadable => "unreadable",
            SkipReason::KeywordsDropped => "copied without keywords",
        }
    }

    /// Whether the message stayed behind on the source (counted as skipped); a message
    /// copied without its keywords did not.
    pub fn left_behind(self) -> bool {
        self != SkipReason::KeywordsDropped
    }
}

/// A message (or, with no UID, a whole folder) that was not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedItem {
    /// Its source UID; `None` when the whole folder could not be read.
    pub source_uid: Option<u32>,
    /// Its INTERNALDATE, if known.
    pub internal_date: Option<Timestamp>,
    /// Its subject, if known (cut to 1 KiB).
    pub subject: Option<String>,
    /// Its size, if known.
    pub size: Option<u64>,
    /// Its first From address, `Name <address>`, if known (cut to 1 KiB).
    pub from: Option<String>,
    /// The instant its Date field names, if known and valid.
    pub sent: Option<Timestamp>,
    /// Why it was skipped.
    pub reason: SkipReason,
    /// The server's words or our detail (cut to 1 KiB).
    pub detail: Option<String>,
}

/// A skipped item as listed for a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRecord {
    /// The folder it is in.
    pub folder: FolderId,
    /// That folder's source name.
    pub folder_name: String,
    /// The item.
    pub item: SkippedItem,
    /// When it was recorded.
    pub recorded: Timestamp,
}

fn cut(text: &Option<String>) -> Option<&str> {
    text.as_deref().map(|t| {
        if t.len() <= MAX_TEXT {
            return t;
        }
        let mut end = MAX_TEXT;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        &t[..end]
    })
}

fn encode_skipped(item: &SkippedItem, recorded: Timestamp) -> Vec<u8> {
    let mut w = Writer::versioned(64);
    w.u8(item.reason.code());
    w.opt_varint(item.internal_date.map(Timestamp::unix_millis));
    w.opt_str(cut(&item.subject));
    w.opt_varint(item.size);
    w.opt_str(cut(&item.detail));
    w.varint(recorded.unix_millis());
    // Added after the first release: at the end, so older values still read.
    w.opt_str(cut(&item.from));
    w.opt_varint(item.sent.map(Timestamp::unix_millis));
    w.finish()
}

fn decode_skipped(uid: u32, value: &[u8]) -> Result<(SkippedItem, Timestamp), DecodeError> {
    let mut r = Reader::versioned(value)?;
    let reason = SkipReason::from_code(r.u8()?)?;
    let item = SkippedItem {
        source_uid: (uid != 0).then_some(uid),
        reason,
        internal_date: r.opt_varint()?.map(Timestamp::from_unix_millis),
        subject: r.opt_string()?,
        size: r.opt_varint()?,
        detail: r.opt_string()?,
        from: None,
        sent: None,
    };
    let recorded = Timestamp::from_unix_millis(r.varint()?);
    let mut item = item;
    if !r.at_end() {
        item.from = r.opt_string()?;
        item.sent = r.opt_varint()?.map(Timestamp::from_unix_millis);
    }
    r.finish()?;
    Ok((item, recorded))
}

impl Database {
    /// Records items skipped outside a copy group (e.g. too large to try). Recording the
    /// same source UID again replaces its record without counting it twice.
    pub fn record_skipped(&self, folder: FolderId, items: &[SkippedItem]) -> Result<()> {
        let mut state = self.load_folder_state(folder)?;
        let mut batch = WriteSet::default();
        self.stage_skipped(&mut batch, folder, &mut state, items)?;
        self.stage_folder_state(&mut batch, folder, &state);
        self.write_atomically(&self.inner.folder_sync, batch, "record skipped items")
    }

    /// Every skipped item of a mailbox, by folder and UID.
    pub fn skipped_items(&self, mailbox: MailboxId) -> Result<Vec<SkippedRecord>> {
        let prefix = key_layout::key(key_layout::SKIPPED, &[&mailbox.id.to_be_bytes()]);
        let mut out = Vec::new();
        let mut names: Vec<(FolderId, String)> = Vec::new();
        for item in self.inner.folder_sync.scan_prefix(&prefix) {
            let (k, v) = item.map_err(self.db_err("list skipped items"))?;
            if k.len() != 21 {
                continue;
            }
            let mut f = [0u8; 8];
            f.copy_from_slice(&k[9..17]);
            let mut u = [0u8; 4];
            u.copy_from_slice(&k[17..21]);
            let folder = FolderId(u64::from_be_bytes(f));
            let (item, recorded) = decode_skipped(u32::from_be_bytes(u), &v)
                .map_err(|e| self.corrupt(format!("skipped item of {mailbox}"), e))?;
            let folder_name = match names.iter().find(|(id, _)| *id == folder) {
                Some((_, n)) => n.clone(),
                None => {
                    // A folder being erased has no state; its items go with it.
                    let Ok(state) = self.load_folder_state(folder) else {
                        continue;
                    };
                    names.push((folder, state.source_name.clone()));
                    state.source_name
                }
            };
            out.push(SkippedRecord {
                folder,
                folder_name,
                item,
                recorded,
            });
        }
        Ok(out)
    }

    /// Stages skipped items and counts the new ones that left a message behind; caller
    /// holds the folder lock.
    pub(crate) fn stage_skipped(
        &self,
        batch: &mut WriteSet,
        folder: FolderId,
        state: &mut FolderState,
        items: &[SkippedItem],
    ) -> Result<()> {
        let now = Timestamp::now();
        // Whether each UID's record, as staged so far, is counted in `counters.skipped`.
        let mut staged: Vec<(u32, bool)> = Vec::with_capacity(items.len());
        for item in items {
            let uid = item.source_uid.unwrap_or(0);
            let key = skipped_key(state.mailbox.id, folder, uid);
            let counted_before = match staged.iter().find(|(u, _)| *u == uid) {
                Some((_, counted)) => *counted,
                None => self.counted_record(&key)?,
            };
            let counted_now = item.reason.left_behind();
            match (counted_before, counted_now) {
                (false, true) => state.counters.skipped += 1,
                (true, false) => state.counters.skipped = state.counters.skipped.saturating_sub(1),
                _ => {}
            }
            staged.retain(|(u, _)| *u != uid);
            staged.push((uid, counted_now));
            batch.insert(key, encode_skipped(item, now));
        }
        Ok(())
    }

    /// Whether a record is stored under `key` and counted in the folder's skipped counter.
    fn counted_record(&self, key: &[u8]) -> Result<bool> {
        let Some(value) = self
            .inner
            .folder_sync
            .get(key)
            .map_err(self.db_err("read skipped items"))?
        else {
            return Ok(false);
        };
        // The reason is the first byte after the record's version.
        let mut r =
            Reader::versioned(&value).map_err(|e| self.corrupt("a skipped item".to_owned(), e))?;
        let reason = SkipReason::from_code(
            r.u8()
                .map_err(|e| self.corrupt("a skipped item".to_owned(), e))?,
        )
        .map_err(|e| self.corrupt("a skipped item".to_owned(), e))?;
        Ok(reason.left_behind())
    }

    pub(crate) fn stage_unskip(
        &self,
        batch: &mut WriteSet,
        folder: FolderId,
        state: &mut FolderState,
        uids: impl Iterator<Item = u32>,
    ) -> Result<()> {
        // Only a folder with skipped messages is looked up: this runs for every copy group.
        // (A copied message's `KeywordsDropped` record is not counted, so it may outlive
        // a re-copy of the same UID; that needs the same folder id, which a UIDVALIDITY
        // reset — the only re-copy — never keeps.)
        if state.counters.skipped == 0 {
            return Ok(());
        }
        for uid in uids {
            let key = skipped_key(state.mailbox.id, folder, uid);
            if self.counted_record(&key)? {
                batch.remove(key);
                state.counters.skipped = state.counters.skipped.saturating_sub(1);
            }
        }
        Ok(())
    }

    pub(crate) fn erase_skipped_of_folder(&self, mailbox: u64, folder: FolderId) -> Result<usize> {
        let prefix = key_layout::key(
            key_layout::SKIPPED,
            &[&mailbox.to_be_bytes(), &folder.0.to_be_bytes()],
        );
        self.delete_prefix(&self.inner.folder_sync, &prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_items_round_trip_and_long_text_is_cut() {
        let item = SkippedItem {
            source_uid: Some(42),
            internal_date: Some(Timestamp::from_unix_millis(1_600_000_000_000)),
            subject: Some("é".repeat(2000)),
            size: Some(60 << 20),
            from: Some("Jürgen <j@example.org>".into()),
            sent: Some(Timestamp::from_unix_millis(1_599_000_000_000)),
            reason: SkipReason::TooLarge,
            detail: None,
        };
        let bytes = encode_skipped(&item, Timestamp::from_unix_millis(5));
        let (back, recorded) = decode_skipped(42, &bytes).expect("decodes");
        assert_eq!(recorded, Timestamp::from_unix_millis(5));
        let subject = back.subject.clone().expect("subject");
        assert!(subject.len() <= MAX_TEXT && subject.chars().all(|c| c == 'é'));
        assert_eq!(back.size, item.size);
        assert_eq!((&back.from, back.sent), (&item.from, item.sent));
        assert_eq!(back.reason.as_str(), "too large");
        assert_eq!(
            decode_skipped(0, &bytes).expect("decodes").0.source_uid,
            None
        );
        assert!(decode_skipped(1, &[1, 9]).is_err());
    }

    #[test]
    fn values_written_before_from_and_date_still_read() {
        // A value as the first release wrote it: reason, INTERNALDATE, subject, size,
        // detail, recorded — nothing after.
        let mut w = Writer::versioned(16);
        w.u8(SkipReason::RejectedByTarget.code());
        w.opt_varint(None);
        w.opt_str(Some("old"));
        w.opt_varint(Some(10));
        w.opt_str(Some("NO too big"));
        w.varint(7);
        let (item, recorded) = decode_skipped(3, &w.finish()).expect("an old value reads");
        assert_eq!(recorded, Timestamp::from_unix_millis(7));
        assert_eq!(item.subject.as_deref(), Some("old"));
        assert_eq!((item.from, item.sent), (None, None));
    }
}
