//! What every step of a folder's sync shares: the folder's task, the pass's settings and
//! context, and the wire-to-store flag conversion. Below the steps (`message_copy.rs`,
//! `flag_sync.rs`, `fingerprint_fetch.rs`) and the folder sync that runs them.

use imapmirror_protocol::Error as ImapError;
use imapmirror_protocol::client::MessageFlags as WireFlags;
use std::sync::Arc;

use imapmirror_storage::{AllMailIndex, MailboxId, MessageFlags, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::pass::copy_plan::GroupLimits;
use crate::pass::folder_check::StatusValues;
use crate::pass::report::{PassTotals, Progress};

/// A folder to sync, as the plan and the listings describe it.
#[derive(Debug, Clone)]
pub(crate) struct FolderTask {
    /// The source name, decoded (the store's key).
    pub source_name: String,
    /// The source name's bytes as listed (to SELECT it again).
    pub source_wire: Vec<u8>,
    /// The target name, decoded (the protocol crate encodes it).
    pub target_name: String,
    pub source_status: StatusValues,
    pub target_status: Option<StatusValues>,
    /// APPENDLIMIT of the target folder, if announced.
    pub append_limit: Option<u64>,
    /// Gmail's All Mail, read for its archived mail only: every pass asks the
    /// `X-GM-LABELS` of the messages not copied yet and copies those in no label
    /// ([`crate::endpoint::provider_profile::gmail_archived_only`]).
    pub gmail_all_mail: bool,
    /// A Gmail source with X-GM-EXT-1: each copied message's X-GM-MSGID is recorded, so
    /// that a message archived later moves to the archive ([`super::gmail_archive`]).
    pub gmail_ids: bool,
    /// A label folder (INBOX, a user label, Sent, Drafts) of a Gmail source without
    /// X-GM-EXT-1: the fingerprints of its copies are kept for judging All Mail
    /// ([`super::all_mail_by_bytes`]).
    pub label_fingerprints: bool,
    /// Gmail's All Mail of a source without X-GM-EXT-1: its archived mail is told by
    /// bytes against these label folders ([`super::all_mail_by_bytes`]), after they were
    /// synced in this pass.
    pub all_mail_by_bytes: Option<Arc<[LabelFolder]>>,
    /// Which retry of this folder this attempt is, counted since the last attempt that
    /// made progress (0: the first attempt, or the first after progress); a short settle
    /// time after a dropped connection doubles with it (`folder_sync::settle_after_bye`).
    pub retry_attempt: u32,
}

/// A label folder of a Gmail source, as All Mail judged by bytes sees it.
#[derive(Debug, Clone)]
pub(crate) struct LabelFolder {
    /// The source name, decoded (the store's key).
    pub source_name: String,
    /// The source name's bytes as listed (to EXAMINE it).
    pub source_wire: Vec<u8>,
    /// MESSAGES of the source folder when the pass listed it (`None`: unknown).
    pub messages: Option<u32>,
}

impl FolderTask {
    /// What this folder's commits do to the All Mail fingerprints.
    pub(crate) fn all_mail_index(&self) -> AllMailIndex {
        if self.label_fingerprints {
            AllMailIndex::AddCopied
        } else if self.all_mail_by_bytes.is_some() {
            AllMailIndex::RemoveCopied
        } else {
            AllMailIndex::Untouched
        }
    }
}

/// The settings a folder sync needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncSettings {
    pub limits: GroupLimits,
    pub max_message_size: Option<u64>,
    pub bad_item_limit: u64,
    pub mirror_deletions: bool,
    pub crash_settle: std::time::Duration,
}

/// Everything shared by the folders of one pass.
pub(crate) struct SyncContext<'a> {
    pub store: &'a Store,
    pub mailbox: MailboxId,
    pub mailbox_label: &'a str,
    /// The batch's name, for the metrics.
    pub batch: &'a str,
    pub settings: SyncSettings,
    pub totals: &'a PassTotals,
    pub progress: &'a (dyn Fn(Progress) + Send + Sync),
    pub cancel: &'a CancellationToken,
}

/// Storage flags from the wire flags (`\Recent` dropped).
pub(super) fn store_flags(flags: Option<&WireFlags>) -> MessageFlags {
    let Some(flags) = flags else {
        return MessageFlags::new();
    };
    let names: Vec<String> = flags
        .storable()
        .iter()
        .map(|f| String::from_utf8_lossy(&f.to_wire()).into_owned())
        .collect();
    MessageFlags::from_imap(names.iter().map(String::as_str))
}

impl SyncContext<'_> {
    pub(crate) fn store_err(
        &self,
        action: impl Into<String>,
    ) -> impl FnOnce(StoreError) -> Error + '_ {
        let action = action.into();
        move |source| Error::Store {
            mailbox: self.mailbox_label.to_owned(),
            action,
            source: Box::new(source),
        }
    }

    pub(crate) fn imap_err(
        &self,
        action: impl Into<String>,
    ) -> impl FnOnce(ImapError) -> Error + '_ {
        let action = action.into();
        move |source| Error::Imap {
            mailbox: self.mailbox_label.to_owned(),
            action,
            source: Box::new(source),
        }
    }

    pub(super) fn check_cancel(&self) -> Result<(), Error> {
        if self.cancel.is_cancelled() {
            return Err(Error::Stopped {
                mailbox: self.mailbox_label.to_owned(),
            });
        }
        Ok(())
    }
}
