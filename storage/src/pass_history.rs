//! Pass history: one record per pass over a mailbox (initial sync or incremental).
//!
//! `pass_history` tree: `mailbox:8 seq:8 -> record`; ids only grow, so a mailbox's
//! history is one prefix scan in time order, and its last pass the last key of the prefix.
//!
//! A pass that changed nothing after a pass that changed nothing does not add a record:
//! it counts itself in the last one's [`PassRecord::unchanged_repeats`] and times — kept
//! in the mailbox's small status value until the next entry, so such a pass writes that
//! value and nothing else (`mailbox_status.rs`). Daily
//! passes over a mailbox nobody writes to then keep its state the same size, instead of
//! adding a record a day to every mailbox of a batch. Folders skipped the same way as in
//! the pass before (a shared folder left out on every pass) are no change.

use serde::{Deserialize, Serialize};

use crate::atomic_write::WriteSet;
use crate::database::Database;
use crate::error::Result;
use crate::key_layout::MailboxId;
use crate::mailbox_status::{MailboxStatus, PendingRepeats, StatusValue};
use crate::record_codec::{decode_json, encode_json};
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
    /// How many earlier passes, each of which changed nothing either, this record also
    /// stands for (they ran between the record before it and this one). Set by the
    /// store; 0 in a new record.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unchanged_repeats: u64,
    /// Milliseconds the pass's copy steps waited for the endpoints' rate budgets
    /// (`--max-rate`), summed over its connections (absent: none, or written before).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_limit_wait_ms: u64,
    /// Milliseconds the pass waited out because a server asked it to slow down, summed
    /// over its connections (absent: none, or written before).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttle_wait_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PassRecord {
    /// A pass that succeeded and changed, skipped and followed nothing, apart from the
    /// folders it skipped.
    fn changed_nothing_but_skips(&self) -> bool {
        self.outcome == PassOutcome::Succeeded
            && self.error.is_none()
            && self.items_copied == 0
            && self.bytes_copied == 0
            && self.items_skipped == 0
            && self.flags_updated == 0
            && self.items_deleted == 0
            && self.folders_renamed.is_empty()
    }

    /// A pass that succeeded and changed, skipped and followed nothing.
    pub fn changed_nothing(&self) -> bool {
        self.changed_nothing_but_skips() && self.folders_skipped.is_empty()
    }

    /// Whether this pass only repeats `earlier`, itself a pass that changed nothing: it
    /// changed nothing either, skipped the same folders for the same reasons, and
    /// neither waited for anything (a server's throttling of a quiet pass is worth its
    /// own record; counted as a repeat, it would vanish into the earlier one's).
    pub fn repeats(&self, earlier: &PassRecord) -> bool {
        self.changed_nothing_but_skips()
            && earlier.changed_nothing_but_skips()
            && self.folders_skipped == earlier.folders_skipped
            && !self.waited()
            && !earlier.waited()
    }

    /// Whether the pass waited for a rate budget or a server at all.
    pub fn waited(&self) -> bool {
        self.rate_limit_wait_ms > 0 || self.throttle_wait_ms > 0
    }
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

/// The sequence number in a history key (`mailbox:8 seq:8`).
fn entry_seq(key: &[u8]) -> u64 {
    key.get(8..16)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_be_bytes)
}

impl Database {
    /// Appends a pass to the mailbox's history and sets its last pass times. A pass that
    /// changed nothing replaces a last record that changed nothing either (see the
    /// module docs).
    pub fn record_pass(&self, mailbox: MailboxId, pass: &PassRecord) -> Result<()> {
        self.finish_pass(mailbox, pass, None)
    }

    /// [`Database::record_pass`], and the mailbox's status and last error set in the same
    /// write of its record: the end of a pass writes the mailbox record once, not twice
    /// (each write of a record grows sled's log until its segments are cleaned).
    pub fn finish_pass(
        &self,
        mailbox: MailboxId,
        pass: &PassRecord,
        status: Option<(MailboxStatus, Option<&str>)>,
    ) -> Result<()> {
        self.mailbox(mailbox)?;
        let pending = self.status_value(mailbox)?;
        let last = self.last_pass_entry(mailbox, pending.as_ref())?;
        let set_times = |m: &mut crate::MailboxRecord| {
            m.last_pass_started = Some(pass.started);
            m.last_pass_finished = Some(pass.finished);
            if let Some((status, error)) = status {
                m.set_status(status, error);
            }
        };
        if let Some((key, seen)) = &last
            && pass.repeats(seen)
        {
            // Counted in the mailbox's status value; the entry is not rewritten.
            let of = entry_seq(key);
            self.update_mailbox_status(mailbox, |m, repeats| {
                set_times(m);
                let count = repeats.filter(|r| r.of == of).map_or(0, |r| r.count) + 1;
                *repeats = Some(PendingRepeats { of, count });
            })?;
            return Ok(());
        }
        let mut history = WriteSet::default();
        if let Some((key, seen)) = last
            && pending
                .and_then(|p| p.repeats)
                .is_some_and(|r| r.of == entry_seq(&key) && r.count > 0)
        {
            // The repeats counted apart go into the entry they repeat, in the same write
            // as the entry after it.
            history.insert(key, encode_json(&seen, "pass history")?);
        }
        let mut key = mailbox.id.to_be_bytes().to_vec();
        key.extend_from_slice(&self.new_id()?.to_be_bytes());
        let mut record = pass.clone();
        record.unchanged_repeats = 0;
        history.insert(key, encode_json(&record, "pass history")?);
        self.write_atomically(&self.inner.pass_history, history, "record a pass")?;
        self.trim_history(mailbox)?;
        self.update_mailbox_status(mailbox, |m, repeats| {
            set_times(m);
            *repeats = None;
        })?;
        Ok(())
    }

    /// A mailbox's last pass, read without reading the rest of its history.
    pub fn last_pass(&self, mailbox: MailboxId) -> Result<Option<PassRecord>> {
        let status = self.status_value(mailbox)?;
        Ok(self
            .last_pass_entry(mailbox, status.as_ref())?
            .map(|(_, record)| record))
    }

    /// Whether any pass over the mailbox succeeded, newest first (usually one read).
    pub fn has_succeeded_pass(&self, mailbox: MailboxId) -> Result<bool> {
        for item in self
            .inner
            .pass_history
            .scan_prefix(mailbox.id.to_be_bytes())
            .values()
            .rev()
        {
            let v = item.map_err(self.db_err("read pass history"))?;
            let record: PassRecord = decode_json(&v)
                .map_err(|e| self.corrupt(format!("pass history of {mailbox}"), e))?;
            if record.outcome == PassOutcome::Succeeded {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The last entry of the history as readers see it (with the repeats `status` holds
    /// for it), and its key.
    fn last_pass_entry(
        &self,
        mailbox: MailboxId,
        status: Option<&StatusValue>,
    ) -> Result<Option<(sled::IVec, PassRecord)>> {
        let last = self
            .inner
            .pass_history
            .scan_prefix(mailbox.id.to_be_bytes())
            .next_back();
        match last {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(self.db_err("read pass history"))?;
                let mut record = decode_json(&v)
                    .map_err(|e| self.corrupt(format!("pass history of {mailbox}"), e))?;
                if let Some(status) = status {
                    status.apply_repeats(entry_seq(&k), &mut record);
                }
                Ok(Some((k, record)))
            }
        }
    }

    /// A mailbox's passes, oldest first.
    pub fn pass_history(&self, mailbox: MailboxId) -> Result<Vec<PassRecord>> {
        let status = self.status_value(mailbox)?;
        let mut out = Vec::new();
        let mut last_seq = None;
        for item in self
            .inner
            .pass_history
            .scan_prefix(mailbox.id.to_be_bytes())
        {
            let (k, v) = item.map_err(self.db_err("read pass history"))?;
            out.push(
                decode_json(&v)
                    .map_err(|e| self.corrupt(format!("pass history of {mailbox}"), e))?,
            );
            last_seq = Some(entry_seq(&k));
        }
        // Pending repeats count only for the entry that is last.
        if let (Some(status), Some(seq), Some(last)) = (status, last_seq, out.last_mut()) {
            status.apply_repeats(seq, last);
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
        let mut batch = WriteSet::default();
        for k in tree
            .scan_prefix(prefix)
            .keys()
            .take(count - PASS_HISTORY_LIMIT)
        {
            batch.remove(k.map_err(self.db_err("trim pass history"))?);
        }
        self.write_atomically(tree, batch, "trim pass history")
    }
}

/// A history entry as readers see it.
impl StatusValue {
    /// The history entry `seq` as readers see it: with the repeats that name it added.
    pub(crate) fn apply_repeats(&self, seq: u64, entry: &mut PassRecord) {
        let Some(repeats) = self.repeats.filter(|r| r.of == seq && r.count > 0) else {
            return;
        };
        entry.unchanged_repeats += repeats.count;
        if let (Some(started), Some(finished)) = (self.last_pass_started, self.last_pass_finished) {
            entry.started = started;
            entry.finished = finished;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;
    use crate::test_fixtures::one_mailbox;

    fn pass(at: u64, copied: u64) -> PassRecord {
        PassRecord {
            started: Timestamp::from_unix_millis(at),
            finished: Timestamp::from_unix_millis(at + 40),
            items_copied: copied,
            bytes_copied: copied * 1000,
            items_skipped: 0,
            flags_updated: 0,
            items_deleted: 0,
            outcome: PassOutcome::Succeeded,
            error: None,
            folders_skipped: vec![],
            folders_renamed: vec![],
            unchanged_repeats: 0,
            rate_limit_wait_ms: 0,
            throttle_wait_ms: 0,
        }
    }

    #[test]
    fn waits_are_kept_and_a_quiet_pass_that_was_throttled_is_not_a_repeat() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Database::open(tmp.path(), &StoreOptions::default()).expect("open");
        let m = one_mailbox(&db);
        db.record_pass(
            m,
            &PassRecord {
                rate_limit_wait_ms: 2_500,
                ..pass(1_000, 50)
            },
        )
        .expect("initial");
        db.record_pass(m, &pass(2_000, 0)).expect("quiet");
        db.record_pass(
            m,
            &PassRecord {
                throttle_wait_ms: 700,
                ..pass(3_000, 0)
            },
        )
        .expect("quiet, throttled");
        db.record_pass(m, &pass(4_000, 0)).expect("quiet again");
        let history = db.pass_history(m).expect("history");
        let waits: Vec<(u64, u64)> = history
            .iter()
            .map(|p| (p.rate_limit_wait_ms, p.throttle_wait_ms))
            .collect();
        assert_eq!(waits, [(2_500, 0), (0, 0), (0, 700), (0, 0)]);
        // A record written before waits were recorded reads as one that waited for nothing.
        let old = r#"{"started":1,"finished":2,"items_copied":0,"bytes_copied":0,"items_skipped":0,"flags_updated":0,"items_deleted":0,"outcome":"Succeeded","error":null}"#;
        let old: PassRecord = serde_json::from_str(old).expect("an old record");
        assert!(!old.waited());
        // Zero waits are not written.
        let text = serde_json::to_string(&pass(1, 0)).expect("encode");
        assert!(!text.contains("wait"), "{text}");
    }

    #[test]
    fn passes_that_change_nothing_share_one_record() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Database::open(tmp.path(), &StoreOptions::default()).expect("open");
        let m = one_mailbox(&db);
        db.record_pass(m, &pass(1_000, 50)).expect("initial");
        for day in 1..=10 {
            db.record_pass(m, &pass(1_000 + day * 86_400_000, 0))
                .expect("no change");
        }
        let history = db.pass_history(m).expect("history");
        assert_eq!(history.len(), 2, "{history:?}");
        assert_eq!(history[0].items_copied, 50);
        assert_eq!(history[1].unchanged_repeats, 9);
        assert_eq!(
            history[1].started,
            Timestamp::from_unix_millis(1_000 + 10 * 86_400_000)
        );
        assert_eq!(db.last_pass(m).expect("last"), Some(history[1].clone()));
        // A pass that copies something starts a new record, and so does the next quiet one.
        db.record_pass(m, &pass(2_000_000_000, 3))
            .expect("new mail");
        db.record_pass(m, &pass(2_100_000_000, 0))
            .expect("quiet again");
        let history = db.pass_history(m).expect("history");
        assert_eq!(history.len(), 4);
        assert_eq!(history[3].unchanged_repeats, 0);
        // The repeats counted apart went into their entry when the next one came.
        assert_eq!(history[1].unchanged_repeats, 9);
        assert_eq!(
            history[1].finished,
            Timestamp::from_unix_millis(1_000 + 10 * 86_400_000 + 40)
        );
        db.record_pass(m, &pass(2_200_000_000, 0))
            .expect("quiet twice");
        let history = db.pass_history(m).expect("history");
        assert_eq!(history.len(), 4);
        assert_eq!(history[3].unchanged_repeats, 1);
        assert_eq!(
            db.mailbox(m).expect("mailbox").last_pass_started,
            Some(Timestamp::from_unix_millis(2_200_000_000))
        );
        assert!(db.has_succeeded_pass(m).expect("succeeded"));
    }

    #[test]
    fn a_pass_that_changes_nothing_writes_only_the_small_status_value() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Database::open(tmp.path(), &StoreOptions::default()).expect("open");
        let m = one_mailbox(&db);
        db.finish_pass(m, &pass(1_000, 50), Some((MailboxStatus::Synced, None)))
            .expect("initial");
        db.finish_pass(m, &pass(2_000, 0), Some((MailboxStatus::Synced, None)))
            .expect("first quiet pass");
        let record = db.inner.mailboxes.get(crate::key_layout::mailbox_key(m));
        let history: Vec<_> = db.inner.pass_history.iter().collect();
        for day in 1..=30 {
            db.finish_pass(
                m,
                &pass(2_000 + day * 86_400_000, 0),
                Some((MailboxStatus::Synced, None)),
            )
            .expect("quiet pass");
        }
        assert_eq!(
            db.inner.mailboxes.get(crate::key_layout::mailbox_key(m)),
            record,
            "the record is not rewritten"
        );
        let after: Vec<_> = db.inner.pass_history.iter().collect();
        assert_eq!(after, history, "the history is not rewritten");
        let value = db
            .inner
            .mailbox_status
            .get(crate::key_layout::mailbox_key(m))
            .expect("read")
            .expect("a status value");
        assert!(value.len() <= 32, "{} bytes", value.len());
        let last = db.last_pass(m).expect("last").expect("a pass");
        assert_eq!(last.unchanged_repeats, 30);
        assert_eq!(
            last.started,
            Timestamp::from_unix_millis(2_000 + 30 * 86_400_000)
        );
    }

    #[test]
    fn repeats_left_behind_by_a_crash_do_not_count_for_a_newer_entry() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Database::open(tmp.path(), &StoreOptions::default()).expect("open");
        let m = one_mailbox(&db);
        db.record_pass(m, &pass(1_000, 0)).expect("quiet");
        db.record_pass(m, &pass(2_000, 0)).expect("quiet again");
        // A crash after the next entry was written, before the status value was: the
        // value still names the entry before.
        let mut key = m.id.to_be_bytes().to_vec();
        key.extend_from_slice(&db.new_id().expect("id").to_be_bytes());
        db.inner
            .pass_history
            .insert(key, encode_json(&pass(3_000, 7), "pass").expect("json"))
            .expect("insert");
        let history = db.pass_history(m).expect("history");
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].unchanged_repeats, 0, "{history:?}");
        assert_eq!(history[1].unchanged_repeats, 0);
        assert_eq!(history[1].items_copied, 7);
    }

    #[test]
    fn a_record_without_a_status_value_keeps_its_own_fields() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Database::open(tmp.path(), &StoreOptions::default()).expect("open");
        let m = one_mailbox(&db);
        // As a directory written before the status tree holds it.
        let key = crate::key_layout::mailbox_key(m);
        let mut record: crate::MailboxRecord = crate::record_codec::decode_json(
            &db.inner.mailboxes.get(key).expect("read").expect("record"),
        )
        .expect("decode");
        record.status = MailboxStatus::Failed;
        record.last_error = Some("refused".into());
        record.last_pass_finished = Some(Timestamp::from_unix_millis(77));
        db.inner
            .mailboxes
            .insert(key, encode_json(&record, "mailbox").expect("json"))
            .expect("insert");
        assert_eq!(db.mailbox(m).expect("mailbox"), record);
        assert_eq!(
            db.mailboxes(m.batch).expect("mailboxes"),
            vec![record.clone()]
        );
        // Setting what it is writes nothing; a change writes the value.
        db.set_mailbox_status(m, MailboxStatus::Failed, Some("refused"))
            .expect("same");
        assert_eq!(db.inner.mailbox_status.len(), 0);
        db.set_mailbox_status(m, MailboxStatus::Queued, None)
            .expect("queued");
        let now = db.mailbox(m).expect("mailbox");
        assert_eq!(now.status, MailboxStatus::Queued);
        assert_eq!(
            now.last_pass_finished,
            Some(Timestamp::from_unix_millis(77))
        );
        assert_eq!(db.mailboxes(m.batch).expect("mailboxes"), vec![now]);
    }

    #[test]
    fn finishing_a_pass_sets_times_status_and_error_together() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Database::open(tmp.path(), &StoreOptions::default()).expect("open");
        let m = one_mailbox(&db);
        let mut failed = pass(5_000, 0);
        failed.outcome = PassOutcome::Failed;
        db.finish_pass(
            m,
            &failed,
            Some((MailboxStatus::Failed, Some("the source refused LOGIN"))),
        )
        .expect("failed pass");
        let record = db.mailbox(m).expect("mailbox");
        assert_eq!(record.status, MailboxStatus::Failed);
        assert_eq!(
            record.last_error.as_deref(),
            Some("the source refused LOGIN")
        );
        assert_eq!(record.last_pass_started, Some(failed.started));
        assert_eq!(record.last_pass_finished, Some(failed.finished));
        db.finish_pass(m, &pass(9_000, 4), Some((MailboxStatus::Synced, None)))
            .expect("good pass");
        let record = db.mailbox(m).expect("mailbox");
        assert_eq!(record.status, MailboxStatus::Synced);
        assert_eq!(record.last_error, None, "a good pass clears the error");
        assert_eq!(db.pass_history(m).expect("history").len(), 2);
    }

    #[test]
    fn the_same_folders_skipped_again_is_no_change() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Database::open(tmp.path(), &StoreOptions::default()).expect("open");
        let m = one_mailbox(&db);
        let skipping = |at: u64, folders: &[&str]| PassRecord {
            folders_skipped: folders
                .iter()
                .map(|f| FolderSkip {
                    folder: (*f).to_owned(),
                    reason: "a shared folder".to_owned(),
                })
                .collect(),
            ..pass(at, 0)
        };
        db.record_pass(m, &skipping(1_000, &["Shared/News"]))
            .expect("first");
        for day in 1..=5 {
            db.record_pass(m, &skipping(1_000 + day * 86_400_000, &["Shared/News"]))
                .expect("the same skip");
        }
        let history = db.pass_history(m).expect("history");
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0].unchanged_repeats, 5);
        // Another folder skipped is news, and so is none skipped.
        db.record_pass(m, &skipping(900_000_000, &["Shared/News", "Shared/Jobs"]))
            .expect("one more skip");
        db.record_pass(m, &skipping(950_000_000, &[]))
            .expect("none");
        assert_eq!(db.pass_history(m).expect("history").len(), 3);
    }
}
