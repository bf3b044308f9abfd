//! Mailboxes of a batch (one per migration-file row), their sealed credentials, and the
//! login index the proxy routes by.
//!
//! `mailboxes` tree: `batch:8 mailbox:8 -> record`. `logins` tree:
//! `len:2 lowercase-login batch:8 mailbox:8 -> ()` for the EmailAddress and the source
//! UserName of each row, so a login resolves with one prefix scan. A record's status
//! fields are overridden by its value in `mailbox_status` (see `mailbox_status.rs`). `secrets` tree:
//! `B batch:8 mailbox:8 kind:1 -> sealed password` (kind 1 the password, 2 the target
//! password, 3 the OAuth refresh token).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::atomic_write::WriteSet;
use crate::batch_status::BatchStatus;
use crate::database::Database;
use crate::error::{Result, StoreError};
use crate::key_layout::{
    self, BatchId, MailboxId, login_key, login_prefix, mailbox_id_from_key, mailbox_key,
};
use crate::mailbox_status::{MailboxStatus, PendingRepeats, StatusValue};
use crate::record_codec::{decode_json, encode_json};
use crate::secret::Secret;
use crate::secret_vault::KeyOwner;
use crate::timestamp::Timestamp;

/// Writes are grouped so that a 50,000-row file neither needs one giant batch in memory
/// nor 150,000 separate writes.
const WRITE_CHUNK: usize = 1000;
/// Error text kept per mailbox; the log has the rest.
const MAX_ERROR_LEN: usize = 2048;

/// The non-secret columns of a migration-file row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRow {
    pub email_address: String,
    pub user_name: String,
    pub user_root: Option<String>,
    pub target_user_name: Option<String>,
}

/// A row to add with its credentials (`Password`, `TargetPassword`).
#[derive(Debug, Clone)]
pub struct NewMailbox {
    pub row: MigrationRow,
    pub password: Secret,
    pub target_password: Option<Secret>,
    /// The source mailbox's OAuth refresh token (`RefreshToken`).
    pub refresh_token: Option<Secret>,
}

/// A stored mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxRecord {
    pub id: MailboxId,
    pub row: MigrationRow,
    pub status: MailboxStatus,
    pub status_changed: Timestamp,
    /// The last failure, one sentence; cleared when a pass succeeds.
    pub last_error: Option<String>,
    pub last_pass_started: Option<Timestamp>,
    pub last_pass_finished: Option<Timestamp>,
}

impl MailboxRecord {
    /// Sets the status (and when it changed, if it did) and the last error (`None`
    /// clears it).
    pub(crate) fn set_status(&mut self, status: MailboxStatus, error: Option<&str>) {
        if self.status != status {
            self.status = status;
            self.status_changed = Timestamp::now();
        }
        self.last_error = error.map(str::to_string);
    }
}

/// A mailbox's credentials, decrypted.
#[derive(Debug, Clone)]
pub struct MailboxCredentials {
    pub password: Secret,
    pub target_password: Option<Secret>,
    pub refresh_token: Option<Secret>,
}

/// Totals over a mailbox's folders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxCounters {
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    pub skipped: u64,
}

/// Where the proxy should send a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRoute {
    pub batch: BatchId,
    pub batch_name: String,
    pub batch_status: BatchStatus,
    pub mailbox: MailboxId,
    pub mailbox_status: MailboxStatus,
    pub email_address: String,
    pub source_endpoint: String,
    pub target_endpoint: String,
    /// When the batch was created; routes are listed newest first.
    pub batch_created: Timestamp,
}

const PASSWORD: u8 = 1;
const TARGET_PASSWORD: u8 = 2;
const REFRESH_TOKEN: u8 = 3;

fn secret_key(id: MailboxId, kind: u8) -> Vec<u8> {
    key_layout::key(b'B', &[&mailbox_key(id), &[kind]])
}

fn login_names(row: &MigrationRow) -> Vec<&str> {
    let mut names = vec![row.email_address.as_str()];
    if !row
        .user_name
        .trim()
        .eq_ignore_ascii_case(row.email_address.trim())
        && !row.user_name.trim().is_empty()
    {
        names.push(row.user_name.as_str());
    }
    names
}

impl Database {
    /// The mailboxes of a batch, in migration-file order.
    pub fn mailboxes(&self, batch: BatchId) -> Result<Vec<MailboxRecord>> {
        let prefix = batch.0.to_be_bytes();
        // Both trees share the key order: one pass over each, merged.
        let mut statuses = self.inner.mailbox_status.scan_prefix(prefix).peekable();
        let mut out = Vec::new();
        for item in self.inner.mailboxes.scan_prefix(prefix) {
            let (k, v) = item.map_err(self.db_err("list mailboxes"))?;
            let mut record: MailboxRecord =
                decode_json(&v).map_err(|e| self.corrupt(format!("mailbox of {batch}"), e))?;
            while let Some(status) = statuses.peek() {
                let (sk, sv) = match status {
                    Ok(kv) => kv,
                    Err(_) => {
                        let Some(Err(e)) = statuses.next() else {
                            unreachable!("peeked an error")
                        };
                        return Err(self.db_err("list mailbox statuses")(e));
                    }
                };
                match sk.as_ref().cmp(k.as_ref()) {
                    std::cmp::Ordering::Less => {
                        statuses.next();
                    }
                    std::cmp::Ordering::Equal => {
                        self.decode_status(record.id, sv)?.apply_to(&mut record);
                        statuses.next();
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            out.push(record);
        }
        Ok(out)
    }

    /// A mailbox by id.
    pub fn mailbox(&self, id: MailboxId) -> Result<MailboxRecord> {
        let mut record = self.mailbox_row_record(id)?;
        if let Some(status) = self.status_value(id)? {
            status.apply_to(&mut record);
        }
        Ok(record)
    }

    /// The record as `batch add` wrote it, without its status value.
    fn mailbox_row_record(&self, id: MailboxId) -> Result<MailboxRecord> {
        let v = self
            .inner
            .mailboxes
            .get(mailbox_key(id))
            .map_err(self.db_err("read a mailbox"))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "mailbox",
                name: id.to_string(),
                dir: self.path().to_path_buf(),
            })?;
        decode_json(&v).map_err(|e| self.corrupt(format!("{id}"), e))
    }

    /// A batch's mailbox by EmailAddress (case-insensitive).
    pub fn find_mailbox(&self, batch: BatchId, email: &str) -> Result<Option<MailboxRecord>> {
        for item in self.inner.logins.scan_prefix(login_prefix(email)).keys() {
            let k = item.map_err(self.db_err("look up a login"))?;
            let Some(id) = k
                .len()
                .checked_sub(16)
                .and_then(|at| mailbox_id_from_key(&k[at..]))
            else {
                continue;
            };
            if id.batch == batch {
                let m = self.mailbox(id)?;
                // The index also holds UserNames; only an EmailAddress match counts here.
                if m.row.email_address.trim().to_lowercase() == email.trim().to_lowercase() {
                    return Ok(Some(m));
                }
            }
        }
        Ok(None)
    }

    /// Changes a mailbox record (status, error, pass times); its id and row stay. Only
    /// the mailbox's status value is written (see `mailbox_status.rs`), and nothing if
    /// the change changed nothing.
    pub fn update_mailbox(
        &self,
        id: MailboxId,
        change: impl Fn(&mut MailboxRecord),
    ) -> Result<MailboxRecord> {
        self.update_mailbox_status(id, |record, _| change(record))
    }

    /// [`Database::update_mailbox`] that may also set the pending repeats of its status
    /// value; they are kept as they were unless `change` sets them.
    pub(crate) fn update_mailbox_status(
        &self,
        id: MailboxId,
        change: impl FnOnce(&mut MailboxRecord, &mut Option<PendingRepeats>),
    ) -> Result<MailboxRecord> {
        let mut record = self.mailbox_row_record(id)?;
        let old = self.status_value(id)?;
        if let Some(status) = &old {
            status.apply_to(&mut record);
        }
        let mut repeats = old.as_ref().and_then(|s| s.repeats);
        // What readers see now, whether or not a status value was written before.
        let before = StatusValue {
            repeats,
            ..StatusValue::of_record(&record)
        };
        let row = record.row.clone();
        change(&mut record, &mut repeats);
        record.id = id;
        record.row = row;
        if let Some(e) = record.last_error.as_mut()
            && e.len() > MAX_ERROR_LEN
        {
            let mut end = MAX_ERROR_LEN;
            while !e.is_char_boundary(end) {
                end -= 1;
            }
            e.truncate(end);
        }
        let new = StatusValue {
            repeats,
            ..StatusValue::of_record(&record)
        };
        self.write_status(id, &before, &new)?;
        Ok(record)
    }

    /// Sets a mailbox's status and last error (`None` clears it).
    pub fn set_mailbox_status(
        &self,
        id: MailboxId,
        status: MailboxStatus,
        error: Option<&str>,
    ) -> Result<MailboxRecord> {
        self.update_mailbox(id, |m| m.set_status(status, error))
    }

    /// A mailbox's credentials, decrypted with its batch's key.
    pub fn mailbox_credentials(&self, id: MailboxId) -> Result<MailboxCredentials> {
        let owner = KeyOwner::Batch(id.batch.0);
        let read = |kind| -> Result<Option<Secret>> {
            let key = secret_key(id, kind);
            let v = self
                .inner
                .secrets
                .get(&key)
                .map_err(self.db_err("read a mailbox credential"))?;
            v.map(|v| self.inner.vault.open(&owner, &key, &v))
                .transpose()
        };
        let password = read(PASSWORD)?.ok_or_else(|| StoreError::SecretUnavailable {
            dir: self.path().to_path_buf(),
            owner: id.to_string(),
        })?;
        Ok(MailboxCredentials {
            password,
            target_password: read(TARGET_PASSWORD)?,
            refresh_token: read(REFRESH_TOKEN)?,
        })
    }

    /// Adds rows to an existing batch (a migration file added again with new rows). The
    /// caller has checked that none of them is in the batch already; this refuses a
    /// duplicate anyway, before anything is written, since two records for one address
    /// would migrate it twice.
    pub fn add_mailboxes(&self, batch: BatchId, rows: &[NewMailbox]) -> Result<()> {
        let mut emails = HashSet::with_capacity(rows.len());
        for m in rows {
            let email = m.row.email_address.trim().to_lowercase();
            if !emails.insert(email) || self.find_mailbox(batch, &m.row.email_address)?.is_some() {
                return Err(StoreError::AlreadyExists {
                    kind: "mailbox",
                    name: m.row.email_address.clone(),
                    dir: self.path().to_path_buf(),
                });
            }
        }
        self.write_new_mailboxes(batch, rows, Timestamp::now())
    }

    /// Replaces a mailbox's sealed credentials (a password changed in the migration file):
    /// each kind is sealed anew, or removed when the new row has none.
    pub fn replace_mailbox_credentials(
        &self,
        id: MailboxId,
        credentials: &MailboxCredentials,
    ) -> Result<()> {
        let owner = KeyOwner::Batch(id.batch.0);
        let mut secrets = WriteSet::default();
        for (kind, secret) in [
            (PASSWORD, Some(&credentials.password)),
            (TARGET_PASSWORD, credentials.target_password.as_ref()),
            (REFRESH_TOKEN, credentials.refresh_token.as_ref()),
        ] {
            let key = secret_key(id, kind);
            match secret {
                Some(s) => {
                    let sealed = self.inner.vault.seal(&owner, &key, s)?;
                    secrets.insert(key, sealed);
                }
                None => secrets.remove(key),
            }
        }
        self.write_atomically(&self.inner.secrets, secrets, "replace mailbox credentials")
    }

    /// Totals over a mailbox's folders; they agree with the uid maps by construction.
    pub fn mailbox_counters(&self, id: MailboxId) -> Result<MailboxCounters> {
        let mut c = MailboxCounters::default();
        for (_, f) in self.folders(id)? {
            c.folders += 1;
            c.messages += f.counters.messages;
            c.bytes += f.counters.bytes;
            c.skipped += f.counters.skipped;
        }
        Ok(c)
    }

    /// The batches a login (EmailAddress or source UserName, any case) belongs to,
    /// newest batch first. One prefix scan of the login index, no full scan.
    pub fn login_routes(&self, login: &str) -> Result<Vec<LoginRoute>> {
        let mut routes = Vec::new();
        for item in self.inner.logins.scan_prefix(login_prefix(login)).keys() {
            let k = item.map_err(self.db_err("look up a login"))?;
            let Some(id) = k
                .len()
                .checked_sub(16)
                .and_then(|at| mailbox_id_from_key(&k[at..]))
            else {
                continue;
            };
            // A batch being created or removed is not routed.
            let Some(batch) = self.batch_by_id(id.batch)? else {
                continue;
            };
            let mailbox = match self.mailbox(id) {
                Ok(m) => m,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            routes.push(LoginRoute {
                batch: batch.id,
                batch_name: batch.settings.name,
                batch_status: batch.status,
                mailbox: id,
                mailbox_status: mailbox.status,
                email_address: mailbox.row.email_address,
                source_endpoint: batch.settings.source_endpoint,
                target_endpoint: batch.settings.target_endpoint,
                batch_created: batch.created,
            });
        }
        routes.sort_by(|a, b| {
            b.batch_created
                .cmp(&a.batch_created)
                .then(b.batch.cmp(&a.batch))
        });
        Ok(routes)
    }

    /// Writes the mailboxes of a batch being created, with their logins and sealed
    /// credentials.
    pub(crate) fn write_new_mailboxes(
        &self,
        batch: BatchId,
        rows: &[NewMailbox],
        now: Timestamp,
    ) -> Result<()> {
        let owner = KeyOwner::Batch(batch.0);
        for chunk in rows.chunks(WRITE_CHUNK) {
            let mut records = WriteSet::default();
            let mut logins = WriteSet::default();
            let mut secrets = WriteSet::default();
            for new in chunk {
                let id = MailboxId {
                    batch,
                    id: self.new_id()?,
                };
                let record = MailboxRecord {
                    id,
                    row: new.row.clone(),
                    status: MailboxStatus::Queued,
                    status_changed: now,
                    last_error: None,
                    last_pass_started: None,
                    last_pass_finished: None,
                };
                records.insert(&mailbox_key(id), encode_json(&record, "mailbox")?);
                for name in login_names(&new.row) {
                    logins.insert(
                        login_key(name, id),
                        vec![crate::record_codec::VALUE_VERSION],
                    );
                }
                let key = secret_key(id, PASSWORD);
                secrets.insert(
                    key.clone(),
                    self.inner.vault.seal(&owner, &key, &new.password)?,
                );
                if let Some(tp) = &new.target_password {
                    let key = secret_key(id, TARGET_PASSWORD);
                    secrets.insert(key.clone(), self.inner.vault.seal(&owner, &key, tp)?);
                }
                if let Some(rt) = &new.refresh_token {
                    let key = secret_key(id, REFRESH_TOKEN);
                    secrets.insert(key.clone(), self.inner.vault.seal(&owner, &key, rt)?);
                }
            }
            // Secrets and logins before records: a record never exists without them.
            self.write_atomically(&self.inner.secrets, secrets, "store mailbox credentials")?;
            self.write_atomically(&self.inner.logins, logins, "index mailbox logins")?;
            self.write_atomically(&self.inner.mailboxes, records, "store mailboxes")?;
        }
        Ok(())
    }

    /// Erases every mailbox of a batch with everything recorded about it.
    pub(crate) fn erase_batch_mailboxes(&self, batch: BatchId) -> Result<()> {
        let prefix = batch.0.to_be_bytes();
        // Keys only, a bounded chunk at a time: a batch may hold 50,000 mailboxes.
        loop {
            let mut ids = Vec::new();
            for item in self.inner.mailboxes.scan_prefix(prefix).take(WRITE_CHUNK) {
                let (k, v) = item.map_err(self.db_err("list mailboxes"))?;
                let Some(id) = mailbox_id_from_key(&k) else {
                    continue;
                };
                // An unreadable record still gets erased; its logins are found by id.
                let row = decode_json::<MailboxRecord>(&v).ok().map(|m| m.row);
                ids.push((id, row, k));
            }
            if ids.is_empty() {
                break;
            }
            for (id, row, key) in ids {
                self.erase_mailbox_folders(id)?;
                self.delete_prefix(&self.inner.pass_history, &id.id.to_be_bytes())?;
                self.remove_status(id)?;
                self.delete_prefix(
                    &self.inner.secrets,
                    &key_layout::key(b'B', &[&mailbox_key(id)]),
                )?;
                if let Some(row) = row {
                    for name in login_names(&row) {
                        self.inner
                            .logins
                            .remove(login_key(name, id))
                            .map_err(self.db_err("remove a login"))?;
                    }
                } else {
                    self.erase_logins_of(id)?;
                }
                self.inner
                    .mailboxes
                    .remove(key)
                    .map_err(self.db_err("remove a mailbox"))?;
            }
        }
        Ok(())
    }

    /// Slow path for a record that cannot be decoded: scan the whole login index.
    fn erase_logins_of(&self, id: MailboxId) -> Result<()> {
        let suffix = mailbox_key(id);
        let mut doomed = Vec::new();
        for item in self.inner.logins.iter().keys() {
            let k = item.map_err(self.db_err("scan logins"))?;
            if k.ends_with(&suffix) {
                doomed.push(k);
            }
        }
        for k in doomed {
            self.inner
                .logins
                .remove(k)
                .map_err(self.db_err("remove a login"))?;
        }
        Ok(())
    }

    /// Erases mailboxes whose batch does not exist (a creation that did not finish, a
    /// removal that did not finish).
    pub(crate) fn erase_orphan_mailboxes(&self) -> Result<()> {
        let mut orphans = Vec::new();
        let mut from = [0u8; 8];
        // One key per batch: after each, skip to the next batch's prefix.
        loop {
            let Some(item) = self.inner.mailboxes.range(from..).keys().next() else {
                break;
            };
            let k = item.map_err(self.db_err("list mailboxes"))?;
            let Some(id) = mailbox_id_from_key(&k) else {
                break;
            };
            if !self.batch_exists_by_id(id.batch.0)? {
                orphans.push(id.batch);
            }
            match id.batch.0.checked_add(1) {
                Some(next) => from = next.to_be_bytes(),
                None => break,
            }
        }
        for batch in orphans {
            tracing::info!(
                batch = batch.0,
                "erasing the mailboxes of a batch whose creation or removal was interrupted"
            );
            self.inner.vault.remove_key(&KeyOwner::Batch(batch.0))?;
            self.erase_batch_mailboxes(batch)?;
        }
        Ok(())
    }
}

/// The status value of a mailbox record, and the record with its value applied.
impl StatusValue {
    /// The value of a record as it stands, with no pending repeats.
    pub(crate) fn of_record(record: &MailboxRecord) -> StatusValue {
        StatusValue {
            status: record.status,
            status_changed: record.status_changed,
            last_error: record.last_error.clone(),
            last_pass_started: record.last_pass_started,
            last_pass_finished: record.last_pass_finished,
            repeats: None,
        }
    }

    /// Puts this value's fields into the record read from `mailboxes`.
    pub(crate) fn apply_to(&self, record: &mut MailboxRecord) {
        record.status = self.status;
        record.status_changed = self.status_changed;
        record.last_error.clone_from(&self.last_error);
        record.last_pass_started = self.last_pass_started;
        record.last_pass_finished = self.last_pass_finished;
    }
}
