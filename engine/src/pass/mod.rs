//! One pass over one mailbox: plan the folders, decide which changed, sync those, and
//! report what moved.
//!
//! Holds the mailbox job (the pass's entry point), the folder plan, the per-folder check
//! from stored state, the following of renames, the sync of one folder (reconcile, copy,
//! flags, deletions) with its sans-I/O helpers (APPEND groups, fingerprints, matching
//! messages of unknown outcome, header text for reports), and the pass's report.
//!
//! Must not touch: the migration file, other mailboxes, batch status or scheduling (the
//! caller in [`crate::batch`] owns those), or the control socket. A pass takes its
//! connections from [`crate::endpoint`] and writes only its own mailbox's state in the store.

pub mod copy_plan;
pub mod fingerprint;
pub mod folder_check;
pub mod folder_plan;
mod folder_rename;
mod folder_sync;
pub mod header_text;
pub mod mailbox_job;
pub mod mailbox_plan;
mod quick_check;
pub mod reconcile;
pub mod report;
pub mod sample_copy;
mod target_folders;
