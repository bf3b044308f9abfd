//! The one error type of the storage crate.
//!
//! Storage has no network peer, so its faults fall into four families with different
//! remedies, reported by [`StoreError::kind`]: the user asked for something wrong (exit
//! code 2 in the CLI), the environment failed (disk, permissions, another process), the
//! stored data cannot be read (corruption, a schema from another version), or the caller
//! broke the journal protocol (a bug in the engine, never the user's fault).

use std::path::PathBuf;

/// What kind of fault an error is, so callers can choose a remedy or an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad user input: an invalid or duplicate name, an unknown endpoint or batch.
    UserInput,
    /// The machine failed us: I/O, permissions, a state directory owned by another process.
    Environment,
    /// What is on disk cannot be used: corrupt records, another schema version, a lost key.
    StoredData,
    /// The caller broke the store's protocol (a bug in imapmirror, not in the input).
    Misuse,
}

/// Every error the store returns. Each Display is one sentence naming the state
/// directory, record or folder concerned and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A name that cannot be used as an endpoint or batch name.
    #[error("the {kind} name {name:?} is invalid: use 1 to 64 letters, digits, '-' or '_' only")]
    InvalidName { kind: &'static str, name: String },

    /// A record with that name exists already.
    #[error("{kind} {name:?} already exists in {dir}; pick another name or remove it first")]
    AlreadyExists {
        kind: &'static str,
        name: String,
        dir: PathBuf,
    },

    /// No record with that name or id.
    #[error("{kind} {name:?} does not exist in {dir}; check the name (list them to see)")]
    NotFound {
        kind: &'static str,
        name: String,
        dir: PathBuf,
    },

    /// An endpoint cannot be removed while a batch uses it.
    #[error("endpoint {endpoint:?} is used by batch {batch:?} in {dir}; remove that batch first")]
    EndpointInUse {
        endpoint: String,
        batch: String,
        dir: PathBuf,
    },

    /// Another process owns the state directory.
    #[error(
        "state directory {dir} is in use by process {pid}; stop that process or use another --state-dir"
    )]
    Locked { dir: PathBuf, pid: String },

    /// A file-system operation failed.
    #[error(
        "could not {action} {path}: {source}; check that the path exists, is writable by this user and the disk is not full"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The embedded database reported an error (its type is not exposed on purpose).
    #[error(
        "the state database in {dir} failed while trying to {action}: {detail}; check the disk, then retry"
    )]
    Database {
        dir: PathBuf,
        action: &'static str,
        detail: String,
    },

    /// A flush that a durable write waited for failed; the write may not be on disk.
    #[error(
        "the state database in {dir} could not be written to disk ({detail}); check the disk, then retry (what waited for it was not sent)"
    )]
    FlushFailed { dir: PathBuf, detail: String },

    /// The storage thread ended while the store was in use (it only ends when the last
    /// handle is dropped, so this is a bug).
    #[error(
        "the storage thread of {dir} has stopped; this is a bug in imapmirror: restart it (resuming is exact) and report it"
    )]
    StorageThreadGone { dir: PathBuf },

    /// The state directory was written by an imapmirror with a newer schema.
    #[error(
        "state directory {dir} uses schema version {found}, newer than the {supported} this imapmirror understands; run a newer imapmirror"
    )]
    SchemaTooNew {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The state directory has a schema this build can neither read nor upgrade.
    #[error(
        "state directory {dir} uses schema version {found}, which this imapmirror cannot upgrade (it reads {supported}); migrate it with the imapmirror release that wrote it, or start a new state directory"
    )]
    SchemaUnsupported {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },

    /// A stored record does not decode.
    #[error(
        "the {what} record in {dir} is unreadable ({detail}); the state directory is damaged: restore it from a backup or remove the batch and migrate it again (fingerprints prevent duplicates)"
    )]
    Corrupt {
        dir: PathBuf,
        what: String,
        detail: String,
    },

    /// An encrypted credential can no longer be decrypted (its key file is gone or altered).
    #[error(
        "the stored credential of {owner} in {dir} cannot be decrypted because its key file is missing or damaged; enter the credential again"
    )]
    SecretUnavailable { dir: PathBuf, owner: String },

    /// A journal id that is not pending (already committed or aborted, or never begun).
    #[error(
        "journal entry {id} is not pending in {dir}; it was already committed or aborted (this is a bug in imapmirror)"
    )]
    JournalNotPending { dir: PathBuf, id: String },

    /// A commit names a message that its journal entry does not cover.
    #[error(
        "journal entry {id} does not cover source UID {uid} of folder {folder}; refusing to record it (this is a bug in imapmirror)"
    )]
    JournalMismatch {
        id: String,
        folder: String,
        uid: u32,
    },

    /// A source UID already has a target; recording another would claim a second copy.
    #[error(
        "source UID {uid} of folder {folder} is already mapped to target UID {existing}; refusing to record a second copy (this is a bug in imapmirror)"
    )]
    AlreadyMapped {
        folder: String,
        uid: u32,
        existing: u32,
    },

    /// The folder has groups of APPENDs whose outcome is not yet reconciled.
    #[error(
        "folder {folder} has {count} pending journal entries; reconcile and commit or abort them before resetting it (this is a bug in imapmirror)"
    )]
    PendingJournal { folder: String, count: usize },

    /// Something the caller passed is out of range (e.g. a zero UID, an oversized group).
    #[error("invalid request for folder {folder}: {detail} (this is a bug in imapmirror)")]
    InvalidRequest { folder: String, detail: String },

    /// The folder id does not exist (it was reset or its mailbox removed).
    #[error(
        "folder id {folder} does not exist in {dir}; it was reset after a UIDVALIDITY change or its mailbox was removed: look it up again by name"
    )]
    UnknownFolder { dir: PathBuf, folder: u64 },

    /// A record could not be encoded.
    #[error("could not encode the {what} record: {detail} (this is a bug in imapmirror)")]
    Encode { what: String, detail: String },

    /// The random number generator of the operating system failed.
    #[error(
        "the operating system's random number generator failed while creating a key in {dir}; retry"
    )]
    Random { dir: PathBuf },
}

impl StoreError {
    /// Which family the error belongs to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::InvalidName { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::NotFound { .. }
            | StoreError::EndpointInUse { .. } => ErrorKind::UserInput,
            StoreError::Locked { .. }
            | StoreError::Io { .. }
            | StoreError::Database { .. }
            | StoreError::FlushFailed { .. }
            | StoreError::Random { .. } => ErrorKind::Environment,
            StoreError::SchemaTooNew { .. }
            | StoreError::SchemaUnsupported { .. }
            | StoreError::Corrupt { .. }
            | StoreError::SecretUnavailable { .. }
            | StoreError::UnknownFolder { .. } => ErrorKind::StoredData,
            StoreError::JournalNotPending { .. }
            | StoreError::JournalMismatch { .. }
            | StoreError::AlreadyMapped { .. }
            | StoreError::PendingJournal { .. }
            | StoreError::InvalidRequest { .. }
            | StoreError::StorageThreadGone { .. }
            | StoreError::Encode { .. } => ErrorKind::Misuse,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_error_is_one_sentence_naming_pid_and_dir() {
        let err = StoreError::Locked {
            dir: PathBuf::from("/var/lib/imapmirror"),
            pid: "4242".into(),
        };
        let text = err.to_string();
        assert!(text.contains("4242"), "{text}");
        assert!(text.contains("/var/lib/imapmirror"), "{text}");
        assert_eq!(text.matches(". ").count(), 0, "one sentence: {text}");
        assert_eq!(err.kind(), ErrorKind::Environment);
    }

    #[test]
    fn kinds_separate_user_input_from_misuse() {
        let user = StoreError::InvalidName {
            kind: "batch",
            name: "a b".into(),
        };
        assert_eq!(user.kind(), ErrorKind::UserInput);
        let bug = StoreError::AlreadyMapped {
            folder: "INBOX".into(),
            uid: 1,
            existing: 2,
        };
        assert_eq!(bug.kind(), ErrorKind::Misuse);
    }
}
