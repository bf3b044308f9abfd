//! [`Database`]: the sled database of one state directory, and the only type that
//! touches it.
//!
//! A `Database` lives on the storage thread ([`crate::Store`] owns that thread) and is
//! handed out only as `&Database` to jobs running there, so every sled call of the process
//! runs on that one thread, one at a time: no sled write can queue behind a flush that is
//! waiting for the log (the sled 0.34 deadlock the store's docs describe), and no tokio
//! worker ever blocks inside sled. Its methods are plain blocking calls for that reason;
//! none of them locks anything.
//!
//! # Flush policy and its cost
//!
//! - A journal entry must be on disk before any APPEND of its group goes out. The engine
//!   gets that from [`Store::begin`](crate::Store::begin): the entry is staged here and
//!   the storage thread answers once a flush after it has finished, one flush for every
//!   entry staged before it (group commit). [`Database::begin`] stages and flushes at
//!   once, for code that is already on the storage thread (tests, tools).
//! - [`Database::commit`] is one atomic write set ([`crate::atomic_write`]) and is *not* flushed: the storage
//!   thread flushes within `flush_every_ms` (500 ms by default). A crash in that window
//!   loses the commit as a whole — never part of it — so the journal entry is still
//!   pending on restart and is reconciled against the target by fingerprint. Because
//!   sled's log is recovered as a prefix, a later flushed `begin` also makes every
//!   earlier commit durable.
//! - Everything else (endpoints, batches, statuses) is durable when [`Database::flush`]
//!   or [`Store::flush`](crate::Store::flush) returns, or within `flush_every_ms`; the
//!   CLI flushes before it exits.

use std::cell::Cell;
use std::path::Path;

use crate::error::{Result, StoreError};
use crate::record_codec::{DecodeError, Reader, Writer};
use crate::secret_vault::{KeyOwner, SecretVault};
use crate::state_dir::StateDir;
use crate::timestamp::Timestamp;

/// The schema this build writes. Raise it with every incompatible change and add the
/// upgrade step from the previous version to `upgrade_schema` below.
pub const SCHEMA_VERSION: u32 = 1;

const SCHEMA_KEY: &[u8] = b"schema_version";

/// How long an open waits for sled's file lock to be let go by a database of this
/// process that was just closed.
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Tuning of an open store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The database page cache. The uid map is never cached beyond this bounded cache.
    pub cache_capacity_bytes: u64,
    /// How often unflushed writes (commits, status changes) reach the disk; `None` only
    /// at explicit flushes and journal `begin`s. The storage thread does these flushes
    /// itself: sled's own background flusher stays off, since it is one of the two
    /// parties of sled's flush deadlock.
    pub flush_every_ms: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity_bytes: 128 * 1024 * 1024,
            flush_every_ms: Some(500),
        }
    }
}

/// What the database has done since it was opened, for reports and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushCounters {
    /// Flushes that wrote something (each ends in an fsync of sled's log).
    pub fsyncs: u64,
    /// Bytes those flushes wrote to the log.
    pub bytes_flushed: u64,
}

/// The open database of a state directory; see the module docs for who may hold one.
pub struct Database {
    pub(crate) inner: Inner,
    flushes: Cell<FlushCounters>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("dir", &self.inner.dir.root())
            .finish_non_exhaustive()
    }
}

// Field order is drop order: sled handles go before the state-directory lock.
pub(crate) struct Inner {
    pub(crate) db: sled::Db,
    pub(crate) meta: sled::Tree,
    pub(crate) endpoints: sled::Tree,
    pub(crate) batches: sled::Tree,
    pub(crate) mailboxes: sled::Tree,
    pub(crate) logins: sled::Tree,
    pub(crate) folder_sync: sled::Tree,
    pub(crate) pass_history: sled::Tree,
    pub(crate) mailbox_status: sled::Tree,
    pub(crate) secrets: sled::Tree,
    pub(crate) vault: SecretVault,
    /// When this process took the directory's lock.
    opened_at: Timestamp,
    pub(crate) dir: StateDir,
}

impl Database {
    /// Opens (creating if needed) the state directory. Fails with
    /// [`StoreError::Locked`] if another process has it open, and with a schema error if
    /// it was written by an incompatible imapmirror. Only the storage thread (and unit
    /// tests) open one.
    pub(crate) fn open(dir: &Path, options: &StoreOptions) -> Result<Database> {
        let state_dir = StateDir::open(dir)?;
        let opened_at = Timestamp::now();
        let root = state_dir.root().to_path_buf();
        let db_err = |action: &'static str| {
            let root = root.clone();
            move |e: sled::Error| StoreError::Database {
                dir: root,
                action,
                detail: e.to_string(),
            }
        };
        let config = sled::Config::new()
            .path(state_dir.db_path())
            .cache_capacity(options.cache_capacity_bytes)
            // The storage thread flushes on its own schedule (see StoreOptions).
            .flush_every_ms(None);
        // The state directory's own lock (taken above) keeps other processes out, so a
        // busy sled file lock can only belong to a database of this process that was just
        // closed: sled's I/O threads let go of the file a moment after the drop.
        let started = std::time::Instant::now();
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && started.elapsed() < SLED_LOCK_WAIT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(db_err("open the database")(e)),
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(db_err("open a tree"));
        let inner = Inner {
            meta: tree("meta")?,
            endpoints: tree("endpoints")?,
            batches: tree("batches")?,
            mailboxes: tree("mailboxes")?,
            logins: tree("logins")?,
            folder_sync: tree("folder_sync")?,
            pass_history: tree("pass_history")?,
            mailbox_status: tree("mailbox_status")?,
            secrets: tree("secrets")?,
            vault: SecretVault::new(&root, state_dir.keys_path()),
            opened_at,
            db,
            dir: state_dir,
        };
        let database = Database {
            inner,
            flushes: Cell::new(FlushCounters::default()),
        };
        database.check_schema()?;
        database.finish_interrupted_write()?;
        database.finish_interrupted_work()?;
        database.inner.dir.tighten_permissions()?;
        Ok(database)
    }

    /// The state directory.
    pub fn path(&self) -> &Path {
        self.inner.dir.root()
    }

    /// When this process took the directory's lock. The lock is held until a process
    /// exits or drops its store, so every earlier owner had exited, and its server
    /// connections were closed, by then: the bound a journal reconcile needs on when a
    /// killed process last sent anything.
    pub fn opened_at(&self) -> Timestamp {
        self.inner.opened_at
    }

    /// Writes a scratch value and removes it again, leaving the store as it was.
    /// `batch estimate` runs it through [`crate::Store::run_durable`] before each group
    /// of its sample copy, so the sample waits for a durable write as the pass waits for
    /// each group's journal entry (sled has one log: the same flush, shared the same
    /// way), without recording anything. In `meta`, which nothing scans, so a crash
    /// between the two writes leaves a key no reader looks at.
    pub fn write_timing_probe(&self) -> Result<()> {
        const KEY: &[u8] = b"estimate-timing-probe";
        let tree = &self.inner.meta;
        tree.insert(KEY, &[0u8; 64][..])
            .map_err(self.db_err("write the estimate's timing probe"))?;
        tree.remove(KEY)
            .map_err(self.db_err("remove the estimate's timing probe"))?;
        Ok(())
    }

    /// Writes everything to disk (fsync) and makes every file in the state directory
    /// 0600. Returns the number of bytes flushed.
    pub fn flush(&self) -> Result<usize> {
        let n = self.flush_log("flush to disk")?;
        self.inner.dir.tighten_permissions()?;
        Ok(n)
    }

    /// Flushes sled's log and counts it; every flush of the crate goes through here.
    pub(crate) fn flush_log(&self, action: &'static str) -> Result<usize> {
        let n = self.inner.db.flush().map_err(self.db_err(action))?;
        if n > 0 {
            let mut c = self.flushes.get();
            c.fsyncs += 1;
            c.bytes_flushed += n as u64;
            self.flushes.set(c);
        }
        Ok(n)
    }

    /// Flushes done since the database was opened.
    pub fn flush_counters(&self) -> FlushCounters {
        self.flushes.get()
    }

    /// Bytes the database occupies on disk (its log and snapshots).
    pub fn size_on_disk(&self) -> Result<u64> {
        self.inner
            .db
            .size_on_disk()
            .map_err(self.db_err("measure its size"))
    }

    pub(crate) fn db_err(&self, action: &'static str) -> impl Fn(sled::Error) -> StoreError + '_ {
        move |e| StoreError::Database {
            dir: self.path().to_path_buf(),
            action,
            detail: e.to_string(),
        }
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>, e: DecodeError) -> StoreError {
        StoreError::Corrupt {
            dir: self.path().to_path_buf(),
            what: what.into(),
            detail: e.0,
        }
    }

    /// A fresh id, unique for the life of the database (sled may skip ranges after a
    /// crash, never repeat).
    pub(crate) fn new_id(&self) -> Result<u64> {
        self.inner
            .db
            .generate_id()
            .map_err(self.db_err("allocate an id"))
    }

    fn check_schema(&self) -> Result<()> {
        let meta = &self.inner.meta;
        let stored = meta
            .get(SCHEMA_KEY)
            .map_err(self.db_err("read the schema version"))?;
        let found = match stored {
            None => {
                let mut w = Writer::versioned(4);
                w.u32_fixed(SCHEMA_VERSION);
                meta.insert(SCHEMA_KEY, w.finish())
                    .map_err(self.db_err("record the schema version"))?;
                self.flush_log("record the schema version")?;
                return Ok(());
            }
            Some(v) => {
                let mut r = Reader::versioned(&v).map_err(|e| self.corrupt("schema version", e))?;
                let n = r
                    .u32_fixed()
                    .map_err(|e| self.corrupt("schema version", e))?;
                r.finish().map_err(|e| self.corrupt("schema version", e))?;
                n
            }
        };
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                dir: self.path().to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        upgrade_schema(self, found)
    }

    /// Completes work a crash may have interrupted: erasing folders dropped after a
    /// UIDVALIDITY change, mailboxes of a batch whose creation or removal did not finish,
    /// and key files whose owner is gone.
    fn finish_interrupted_work(&self) -> Result<()> {
        self.erase_dropped_folders()?;
        self.erase_orphan_mailboxes()?;
        for owner in self.inner.vault.owners()? {
            let alive = match &owner {
                KeyOwner::Batch(id) => self.batch_exists_by_id(*id)?,
                KeyOwner::Endpoint(name) => self
                    .inner
                    .endpoints
                    .contains_key(name.as_bytes())
                    .map_err(self.db_err("read an endpoint"))?,
            };
            if !alive {
                self.inner.vault.remove_key(&owner)?;
            }
        }
        Ok(())
    }
}

/// Upgrades a state directory written with an older schema, one version at a time.
/// Version 1 is the first schema, so every older number is unknown and refused.
fn upgrade_schema(store: &Database, found: u32) -> Result<()> {
    Err(StoreError::SchemaUnsupported {
        dir: store.path().to_path_buf(),
        found,
        supported: SCHEMA_VERSION,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Result<Database> {
        Database::open(dir, &StoreOptions::default())
    }

    #[test]
    fn reopen_after_drop_and_refuse_while_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open(tmp.path()).expect("open");
        let err = open(tmp.path()).expect_err("locked");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        drop(store);
        let again = open(tmp.path()).expect("reopen");
        again.flush().expect("flush");
    }

    #[test]
    fn newer_schema_is_refused_with_a_clear_message() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let store = open(tmp.path()).expect("open");
            let mut w = Writer::versioned(4);
            w.u32_fixed(SCHEMA_VERSION + 1);
            store
                .inner
                .meta
                .insert(SCHEMA_KEY, w.finish())
                .expect("write");
            store.flush().expect("flush");
        }
        let err = open(tmp.path()).expect_err("newer schema");
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 2, .. }),
            "{text}"
        );
        assert!(text.contains("newer imapmirror"), "{text}");
    }

    #[test]
    fn older_unknown_schema_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let store = open(tmp.path()).expect("open");
            let mut w = Writer::versioned(4);
            w.u32_fixed(0);
            store
                .inner
                .meta
                .insert(SCHEMA_KEY, w.finish())
                .expect("write");
            store.flush().expect("flush");
        }
        let err = open(tmp.path()).expect_err("older schema");
        assert!(
            matches!(err, StoreError::SchemaUnsupported { found: 0, .. }),
            "{err}"
        );
    }
}
