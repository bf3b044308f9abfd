//! The state store of imapmirror. It is the only crate that imports sled and the source of
//! truth for what has been migrated: endpoints, batches, mailboxes, folder state, the uid
//! map and the exactly-once journal.
//!
//! One process owns a state directory at a time ([`Store::open`] takes a lock and names
//! the owner's pid otherwise). Inside it, one storage thread owns the [`Database`]; a
//! [`Store`] is a cheap-to-clone handle that sends it jobs — closures that get a
//! `&Database` — and awaits ([`Store::run`]) or blocks for ([`Store::call`]) their
//! results. Every sled call therefore runs on that one thread, one job at a time, and
//! never on a tokio worker: the shape that keeps sled 0.34's flush deadlock out by
//! construction (the argument is in `store.rs`). No sled type appears in this API, so
//! the store could move to another embedded database without touching the engine.
//!
//! How the engine copies a group of messages exactly once:
//!
//! 1. [`Store::begin`] records the group ([`CopyGroup`]) and answers once it is on disk;
//! 2. the APPENDs go out, APPENDUIDs come back;
//! 3. [`Database::commit`] (in a job) writes the uid-map entries, skipped items, the
//!    folder's watermark and counters, and removes the journal entry, in one atomic write set;
//! 4. after a crash, [`Database::pending`] lists the groups to reconcile by fingerprint,
//!    then [`Database::commit`] or [`Database::abort`] each.
//!
//! # Flush policy and its cost
//!
//! - [`Store::begin`] answers after a flush that covers the entry; every entry staged
//!   before that flush shares it (group commit: one fsync for all folders in flight).
//! - [`Database::commit`] is one atomic write set, not flushed by itself; the storage
//!   thread flushes within [`StoreOptions::flush_every_ms`] (500 ms). A crash in that
//!   window undoes the whole commit, never part of it, leaving the entry pending for
//!   reconciliation; and since sled recovers its log as a prefix, the next `begin`'s
//!   flush makes it durable too.
//! - Other writes are durable at [`Store::flush`] or within `flush_every_ms`.
//! - [`Database::flush_counters`] counts the flushes (fsyncs) and the bytes they wrote.
//!
//! The module docs of `store.rs` state why one thread and how group commit works, those
//! of `uid_map.rs` the on-disk layout of the map, and those of `secret_vault.rs` how
//! credentials are kept and shredded.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod all_mail_fingerprints;
mod atomic_write;
mod batch_status;
mod batches;
mod database;
mod endpoints;
mod error;
mod folder_state;
mod gmail_ids;
mod journal;
mod key_layout;
mod mailbox_status;
mod mailboxes;
mod oauth_tokens;
mod pass_history;
mod quick_check;
mod record_codec;
mod routing_snapshot;
mod secret;
mod secret_vault;
mod skipped_items;
mod state_dir;
mod store;
#[cfg(any(test, feature = "test-fixtures"))]
pub mod test_fixtures;
mod timestamp;
mod uid_map;

pub use all_mail_fingerprints::{AllMailIndex, BLOCK_UIDS};
pub use batch_status::BatchStatus;
pub use batches::{
    BatchRecord, BatchSettings, BatchShard, BatchTotals, DEFAULT_SYNC_INTERVAL_SECS,
    ReportDelivery, ReportMailbox,
};
pub use database::{Database, FlushCounters, SCHEMA_VERSION, StoreOptions};
pub use endpoints::{
    AdminFormat, AuthMechanism, DEFAULT_MAX_CONCURRENT_MIGRATIONS, DEFAULT_MAX_CONCURRENT_SYNCS,
    EndpointRecord, EndpointSettings, MaxRate, OAuthProvider, OAuthSettings, Provider, RatePeriod,
    RateUnit, Security, is_valid_name,
};
pub use error::{ErrorKind, Result, StoreError};
pub use folder_state::{FolderCounters, FolderMarks, FolderState};
pub use gmail_ids::GmailCopy;
pub use journal::{
    CopiedMessage, CopyGroup, GroupOutcome, JournalEntry, MAX_GROUP_LEN, PendingMessage,
};
pub use key_layout::{BatchId, FolderId, JournalId, MailboxId};
pub use mailbox_status::MailboxStatus;
pub use mailboxes::{
    LoginRoute, MailboxCounters, MailboxCredentials, MailboxRecord, MigrationRow, NewMailbox,
};
pub use oauth_tokens::StoredToken;
pub use pass_history::{FolderRename, FolderSkip, PASS_HISTORY_LIMIT, PassOutcome, PassRecord};
pub use quick_check::QuickCheck;
pub use routing_snapshot::{RoutedBatch, RoutedEndpoint, RoutedLogin, RoutingSnapshot};
pub use secret::Secret;
pub use skipped_items::{SkipReason, SkippedItem, SkippedRecord};
pub use store::{JOBS_PER_FLUSH, Store};
pub use timestamp::Timestamp;
pub use uid_map::{Fingerprint, MessageFlags, RUN_CAPACITY, SystemFlag, UidMapEntry, UidMapIter};
