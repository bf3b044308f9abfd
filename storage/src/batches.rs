//! Batches: a migration file's mailboxes moved from one endpoint to another, with their
//! settings and status.
//!
//! `batches` tree: `N name -> id` and `B id:8 -> record`. Creating a batch writes its
//! mailboxes first and the two batch keys last, in one atomic write set: until then the batch
//! does not exist, and a crash leaves mailboxes of an unknown batch id that the next open
//! erases. Removal shreds the batch key first, erases the mailboxes, and drops the batch
//! keys last, so an interrupted removal can simply be repeated.
//!
//! A batch's notification URL lives in the `secrets` tree (`H id:8`), sealed with the
//! batch's key like its passwords: webhook URLs usually carry their access token, and
//! shredding the key at removal makes it unreadable with the rest.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::atomic_write::WriteSet;
use crate::batch_status::BatchStatus;
use crate::database::Database;
use crate::endpoints::validate_name;
use crate::error::{Result, StoreError};
use crate::key_layout::{self, BatchId};
use crate::mailbox_status::MailboxStatus;
use crate::mailboxes::NewMailbox;
use crate::record_codec::{DecodeError, Reader, Writer, decode_json, encode_json};
use crate::secret::Secret;
use crate::secret_vault::KeyOwner;
use crate::timestamp::Timestamp;

/// What the user chose for a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSettings {
    /// Its name: letters, digits, `-` and `_`.
    pub name: String,
    pub source_endpoint: String,
    pub target_endpoint: String,
    /// Source folders not to migrate.
    pub excluded_folders: Vec<String>,
    /// Source folders outside the personal namespace (shared, other users') to migrate
    /// anyway, by full name (absent in records written before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_folders: Vec<String>,
    /// Messages larger than this are skipped as too large.
    pub max_message_size: Option<u64>,
    /// A mailbox fails once more items than this are skipped.
    pub bad_item_limit: Option<u64>,
    /// Seconds between incremental passes.
    pub sync_interval_secs: u64,
    /// Where a Gmail source's archived mail goes on the target (`batch add
    /// --gmail-archive-folder`); absent: the target's `\Archive` folder, else `Archive`
    /// (absent in records written before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmail_archive_folder: Option<String>,
    /// Seconds a pass may trust the target as the last full pass found it (`batch add
    /// --target-recheck`; 0: always look); absent: the engine's default (12 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_recheck_secs: Option<u64>,
}

/// The interval between incremental passes when none is chosen: 24 hours, as Exchange's
/// migration batches do.
pub const DEFAULT_SYNC_INTERVAL_SECS: u64 = 86_400;

impl BatchSettings {
    /// A batch from `source_endpoint` to `target_endpoint` with every optional setting at
    /// its default: no folder excluded or included, no size or bad-item limit, a pass every
    /// 24 hours ([`DEFAULT_SYNC_INTERVAL_SECS`], Exchange's default), Gmail's archive folder
    /// and the target recheck interval left to the engine.
    pub fn new(
        name: impl Into<String>,
        source_endpoint: impl Into<String>,
        target_endpoint: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            source_endpoint: source_endpoint.into(),
            target_endpoint: target_endpoint.into(),
            excluded_folders: Vec::new(),
            included_folders: Vec::new(),
            max_message_size: None,
            bad_item_limit: None,
            sync_interval_secs: DEFAULT_SYNC_INTERVAL_SECS,
            gmail_archive_folder: None,
            target_recheck_secs: None,
        }
    }
}

/// A stored batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub id: BatchId,
    pub settings: BatchSettings,
    pub status: BatchStatus,
    pub created: Timestamp,
    pub status_changed: Timestamp,
    pub last_sync_started: Option<Timestamp>,
    pub last_sync_finished: Option<Timestamp>,
    /// The shard of the migration file this state directory holds (`batch add --shard`),
    /// absent for a whole file and in records written before shards were stored. Kept so
    /// that adding the file again with another shard count is refused: the mailboxes
    /// would move to shards with no record of what was copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<BatchShard>,
    /// Passes over the batch that have ended (0 in records written before it was kept).
    #[serde(default)]
    pub passes_finished: u64,
    /// Where the report goes after every pass (`batch add --report-mailbox`); absent in
    /// records written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_mailbox: Option<ReportMailbox>,
    /// Further addresses that get a copy of every report (`--report-mailbox` given more
    /// than once: Exchange sends copies of its migration reports to other users); absent
    /// in records written before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub report_copies: Vec<ReportMailbox>,
}

impl BatchRecord {
    /// Every mailbox that gets the report: the report mailbox, then its copies.
    pub fn report_mailboxes(&self) -> impl Iterator<Item = &ReportMailbox> {
        self.report_mailbox.iter().chain(&self.report_copies)
    }

    /// The report mailbox or copy of `address`.
    pub fn report_mailbox_mut(&mut self, address: &str) -> Option<&mut ReportMailbox> {
        self.report_mailbox
            .iter_mut()
            .chain(&mut self.report_copies)
            .find(|r| r.address == address)
    }
}

/// One shard of a migration file: `index` counted from 0, of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchShard {
    pub index: u32,
    pub count: u32,
}

/// A mailbox on the target that receives the batch report after every pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportMailbox {
    /// The address whose INBOX gets the report.
    pub address: String,
    /// How the last delivery went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<ReportDelivery>,
}

/// One delivery of a batch report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDelivery {
    /// The pass it reported ([`BatchRecord::passes_finished`] after that pass).
    pub pass: u64,
    pub at: Timestamp,
    /// Why it failed; `None` when the report is in the mailbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Totals over a batch's mailboxes (for `batch status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchTotals {
    pub mailboxes_total: u64,
    pub mailboxes_synced: u64,
    pub mailboxes_failed: u64,
    pub items_synced: u64,
    pub items_skipped: u64,
    pub bytes_synced: u64,
}

fn name_key(name: &str) -> Vec<u8> {
    key_layout::key(b'N', &[name.as_bytes()])
}

fn notify_key(id: BatchId) -> Vec<u8> {
    key_layout::key(b'H', &[&id.0.to_be_bytes()])
}

fn record_key(id: BatchId) -> Vec<u8> {
    key_layout::key(b'B', &[&id.0.to_be_bytes()])
}

fn encode_id(id: BatchId) -> Vec<u8> {
    let mut w = Writer::versioned(8);
    w.varint(id.0);
    w.finish()
}

fn decode_id(v: &[u8]) -> Result<BatchId, DecodeError> {
    let mut r = Reader::versioned(v)?;
    let id = r.varint()?;
    r.finish()?;
    Ok(BatchId(id))
}

impl Database {
    /// Creates a batch with its mailboxes (the migration file's rows) and their sealed
    /// credentials. Fails, creating nothing, if the name is taken, an endpoint is unknown
    /// or two rows share an EmailAddress.
    pub fn create_batch(
        &self,
        settings: &BatchSettings,
        mailboxes: &[NewMailbox],
    ) -> Result<BatchRecord> {
        validate_name("batch", &settings.name)?;
        for ep in [&settings.source_endpoint, &settings.target_endpoint] {
            if self.endpoint(ep)?.is_none() {
                return Err(StoreError::NotFound {
                    kind: "endpoint",
                    name: ep.clone(),
                    dir: self.path().to_path_buf(),
                });
            }
        }
        if self.batch_id(&settings.name)?.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "batch",
                name: settings.name.clone(),
                dir: self.path().to_path_buf(),
            });
        }
        let mut emails = HashSet::with_capacity(mailboxes.len());
        for m in mailboxes {
            if !emails.insert(m.row.email_address.trim().to_lowercase()) {
                return Err(StoreError::AlreadyExists {
                    kind: "mailbox",
                    name: m.row.email_address.clone(),
                    dir: self.path().to_path_buf(),
                });
            }
        }
        let id = BatchId(self.new_id()?);
        self.inner.vault.create_key(&KeyOwner::Batch(id.0))?;
        let now = Timestamp::now();
        let record = BatchRecord {
            id,
            settings: settings.clone(),
            status: BatchStatus::Created,
            created: now,
            status_changed: now,
            last_sync_started: None,
            last_sync_finished: None,
            shard: None,
            passes_finished: 0,
            report_mailbox: None,
            report_copies: Vec::new(),
        };
        let written = self.write_new_mailboxes(id, mailboxes, now).and_then(|()| {
            let mut batch = WriteSet::default();
            batch.insert(name_key(&settings.name), encode_id(id));
            batch.insert(record_key(id), encode_json(&record, "batch")?);
            self.write_atomically(&self.inner.batches, batch, "create a batch")
        });
        if let Err(e) = written {
            // Best effort: whatever remains is erased at the next open.
            let _ = self.inner.vault.remove_key(&KeyOwner::Batch(id.0));
            let _ = self.erase_batch_mailboxes(id);
            return Err(e);
        }
        Ok(record)
    }

    /// A batch by name.
    pub fn batch(&self, name: &str) -> Result<BatchRecord> {
        let id = self.batch_id(name)?.ok_or_else(|| StoreError::NotFound {
            kind: "batch",
            name: name.to_string(),
            dir: self.path().to_path_buf(),
        })?;
        self.batch_by_id(id)?.ok_or_else(|| StoreError::NotFound {
            kind: "batch",
            name: name.to_string(),
            dir: self.path().to_path_buf(),
        })
    }

    /// Every batch, oldest first.
    pub fn batches(&self) -> Result<Vec<BatchRecord>> {
        let mut out = Vec::new();
        for item in self.inner.batches.scan_prefix(b"B") {
            let (_, v) = item.map_err(self.db_err("list batches"))?;
            out.push(decode_json::<BatchRecord>(&v).map_err(|e| self.corrupt("batch", e))?);
        }
        Ok(out)
    }

    /// Sets a batch's status.
    pub fn set_batch_status(&self, name: &str, status: BatchStatus) -> Result<BatchRecord> {
        self.update_batch(name, |b| {
            if b.status != status {
                b.status = status;
                b.status_changed = Timestamp::now();
            }
        })
    }

    /// Changes a batch record (settings such as exclusions and interval, sync times).
    /// Its id and name cannot change.
    pub fn update_batch(
        &self,
        name: &str,
        change: impl FnOnce(&mut BatchRecord),
    ) -> Result<BatchRecord> {
        let mut record = self.batch(name)?;
        let (id, old_name) = (record.id, record.settings.name.clone());
        change(&mut record);
        if record.id != id || record.settings.name != old_name {
            return Err(StoreError::InvalidRequest {
                folder: format!("batch {old_name}"),
                detail: "a batch's id and name cannot change".into(),
            });
        }
        self.inner
            .batches
            .insert(record_key(id), encode_json(&record, "batch")?)
            .map_err(self.db_err("update a batch"))?;
        Ok(record)
    }

    /// Totals over a batch's mailboxes and folders.
    pub fn batch_totals(&self, id: BatchId) -> Result<BatchTotals> {
        let mut t = BatchTotals::default();
        for m in self.mailboxes(id)? {
            t.mailboxes_total += 1;
            match m.status {
                MailboxStatus::Synced | MailboxStatus::Completed => t.mailboxes_synced += 1,
                MailboxStatus::Failed => t.mailboxes_failed += 1,
                _ => {}
            }
            let c = self.mailbox_counters(m.id)?;
            t.items_synced += c.messages;
            t.items_skipped += c.skipped;
            t.bytes_synced += c.bytes;
        }
        Ok(t)
    }

    /// Removes a batch: shreds its credentials (its key file goes first), then erases its
    /// mailboxes, their folders, uid maps, journal, skipped items and history. Safe to
    /// repeat if interrupted.
    pub fn remove_batch(&self, name: &str) -> Result<()> {
        let id = self.batch_id(name)?.ok_or_else(|| StoreError::NotFound {
            kind: "batch",
            name: name.to_string(),
            dir: self.path().to_path_buf(),
        })?;
        self.inner.vault.remove_key(&KeyOwner::Batch(id.0))?;
        self.inner
            .secrets
            .remove(notify_key(id))
            .map_err(self.db_err("remove a notification URL"))?;
        self.erase_batch_mailboxes(id)?;
        let mut batch = WriteSet::default();
        batch.remove(name_key(name));
        batch.remove(record_key(id));
        self.write_atomically(&self.inner.batches, batch, "remove a batch")
    }

    /// Sets (or with `None` clears) the webhook a batch's pass results are posted to.
    pub fn set_batch_notify_url(&self, name: &str, url: Option<&Secret>) -> Result<()> {
        let id = self.existing_batch_id(name)?;
        let key = notify_key(id);
        match url {
            Some(url) => {
                let sealed = self.inner.vault.seal(&KeyOwner::Batch(id.0), &key, url)?;
                self.inner
                    .secrets
                    .insert(key, sealed)
                    .map_err(self.db_err("store a notification URL"))?;
            }
            None => {
                self.inner
                    .secrets
                    .remove(key)
                    .map_err(self.db_err("remove a notification URL"))?;
            }
        }
        Ok(())
    }

    /// The webhook of a batch, if it has one.
    pub fn batch_notify_url(&self, name: &str) -> Result<Option<Secret>> {
        let id = self.existing_batch_id(name)?;
        let key = notify_key(id);
        let v = self
            .inner
            .secrets
            .get(&key)
            .map_err(self.db_err("read a notification URL"))?;
        v.map(|v| self.inner.vault.open(&KeyOwner::Batch(id.0), &key, &v))
            .transpose()
    }

    fn existing_batch_id(&self, name: &str) -> Result<BatchId> {
        self.batch_id(name)?.ok_or_else(|| StoreError::NotFound {
            kind: "batch",
            name: name.to_string(),
            dir: self.path().to_path_buf(),
        })
    }

    pub(crate) fn batch_id(&self, name: &str) -> Result<Option<BatchId>> {
        let v = self
            .inner
            .batches
            .get(name_key(name))
            .map_err(self.db_err("look up a batch"))?;
        v.map(|v| decode_id(&v).map_err(|e| self.corrupt(format!("batch {name:?}"), e)))
            .transpose()
    }

    pub(crate) fn batch_by_id(&self, id: BatchId) -> Result<Option<BatchRecord>> {
        let v = self
            .inner
            .batches
            .get(record_key(id))
            .map_err(self.db_err("read a batch"))?;
        v.map(|v| decode_json(&v).map_err(|e| self.corrupt(format!("{id}"), e)))
            .transpose()
    }

    pub(crate) fn batch_exists_by_id(&self, id: u64) -> Result<bool> {
        self.inner
            .batches
            .contains_key(record_key(BatchId(id)))
            .map_err(self.db_err("read a batch"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> BatchRecord {
        BatchRecord {
            id: BatchId(7),
            settings: BatchSettings {
                excluded_folders: vec!["Junk".into()],
                ..BatchSettings::new("wave-1", "src", "tgt")
            },
            status: BatchStatus::Synced,
            created: Timestamp::from_unix_millis(1_700_000_000_000),
            status_changed: Timestamp::from_unix_millis(1_700_000_100_000),
            last_sync_started: None,
            last_sync_finished: Some(Timestamp::from_unix_millis(1_700_000_100_000)),
            shard: Some(BatchShard { index: 1, count: 4 }),
            passes_finished: 3,
            report_mailbox: Some(ReportMailbox {
                address: "admin@example.test".into(),
                last_delivery: Some(ReportDelivery {
                    pass: 3,
                    at: Timestamp::from_unix_millis(1_700_000_101_000),
                    error: Some("login refused".into()),
                }),
            }),
            report_copies: vec![ReportMailbox {
                address: "team@example.test".into(),
                last_delivery: None,
            }],
        }
    }

    #[test]
    fn new_gives_the_documented_defaults() {
        let expected = BatchSettings {
            name: "b".into(),
            source_endpoint: "src".into(),
            target_endpoint: "dst".into(),
            excluded_folders: vec![],
            included_folders: vec![],
            max_message_size: None,
            bad_item_limit: None,
            sync_interval_secs: 24 * 60 * 60,
            gmail_archive_folder: None,
            target_recheck_secs: None,
        };
        assert_eq!(BatchSettings::new("b", "src", "dst"), expected);
    }

    #[test]
    fn records_written_before_the_report_fields_still_read() {
        let mut json = serde_json::to_value(record()).expect("json");
        let fields = json.as_object_mut().expect("object");
        fields.remove("passes_finished");
        fields.remove("report_mailbox");
        fields.remove("report_copies");
        let old = encode_json(&json, "batch").expect("encodes");
        let read: BatchRecord = decode_json(&old).expect("an old record reads");
        assert_eq!(read.passes_finished, 0);
        assert_eq!(read.report_mailbox, None);
        assert!(read.report_copies.is_empty());
        assert_eq!(read.settings, record().settings);
    }

    #[test]
    fn the_report_fields_round_trip() {
        let bytes = encode_json(&record(), "batch").expect("encodes");
        assert_eq!(decode_json::<BatchRecord>(&bytes), Ok(record()));
        // Without a report mailbox the record has no trace of one.
        let mut plain = record();
        plain.report_mailbox = None;
        plain.report_copies.clear();
        let text =
            String::from_utf8_lossy(&encode_json(&plain, "batch").expect("encodes")).into_owned();
        assert!(!text.contains("report_"), "{text}");
    }

    #[test]
    fn the_report_goes_to_the_mailbox_then_its_copies() {
        let mut r = record();
        let all: Vec<&str> = r.report_mailboxes().map(|m| m.address.as_str()).collect();
        assert_eq!(all, ["admin@example.test", "team@example.test"]);
        r.report_mailbox_mut("team@example.test")
            .expect("a copy")
            .last_delivery = Some(ReportDelivery {
            pass: 3,
            at: Timestamp::from_unix_millis(1),
            error: None,
        });
        assert!(r.report_copies[0].last_delivery.is_some());
        assert!(r.report_mailbox_mut("other@example.test").is_none());
    }
}
