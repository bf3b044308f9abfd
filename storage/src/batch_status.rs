//! A batch's status: plain data below both the batches that set it and the mailboxes whose
//! login routes carry it.

use serde::{Deserialize, Serialize};

/// A batch's status (CLI.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BatchStatus {
    Created,
    Syncing,
    Synced,
    Stopped,
    Failed,
    Completing,
    Completed,
}

impl BatchStatus {
    /// The status as the CLI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Created => "Created",
            BatchStatus::Syncing => "Syncing",
            BatchStatus::Synced => "Synced",
            BatchStatus::Stopped => "Stopped",
            BatchStatus::Failed => "Failed",
            BatchStatus::Completing => "Completing",
            BatchStatus::Completed => "Completed",
        }
    }
}
