//! What a pass reports while it runs ([`Progress`]) and when it ends ([`PassSummary`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::endpoint::pool::CommandCounts;

/// One step of progress, for a progress display or a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The folder plan is known: this many folders will be looked at.
    Planned { folders: usize },
    /// A folder's work starts (it changed or was never copied).
    FolderStarted { folder: String },
    /// A group of messages reached the target.
    Copied {
        folder: String,
        messages: u64,
        bytes: u64,
    },
    /// A folder is done.
    FolderFinished {
        folder: String,
        copied: u64,
        skipped: u64,
        unchanged: bool,
    },
}

/// The result of a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Folders copied (planned, not excluded).
    pub folders: usize,
    /// Of those, folders that needed no SELECT.
    pub folders_unchanged: usize,
    /// Target folders created.
    pub folders_created: usize,
    /// Messages appended this pass.
    pub copied: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Messages recorded as skipped this pass.
    pub skipped: u64,
    /// Messages copied without the keywords the target refused (listed in the report).
    pub keywords_dropped: u64,
    /// Messages whose flags were updated on the target.
    pub flags_updated: u64,
    /// Messages marked deleted on the target (deletion mirroring).
    pub deleted: u64,
    /// Messages found on the target by fingerprint (after a crash, without UIDPLUS, or
    /// after a UIDVALIDITY change) instead of being copied again.
    pub reconciled: u64,
    /// Folder attempts retried after a connection failure or a back-off request.
    pub retries: u64,
    /// Time copy steps waited for the endpoints' rate budgets (`--max-rate`), summed
    /// over the pass's connections (what `imapmirror_rate_limit_wait_seconds_total`
    /// counts, for this mailbox).
    pub rate_limit_wait: Duration,
    /// Time waited out because a server asked us to slow down (a throttled APPEND's
    /// suggested back-off, or a back-off before reconnecting), summed over the pass's
    /// connections (what `imapmirror_throttle_wait_seconds_total` counts).
    pub throttle_wait: Duration,
    /// Folders this pass left alone (their stored state kept for the next pass).
    pub folders_skipped: Vec<SkippedFolder>,
    /// Source folders renamed since the last pass whose renames this pass followed on
    /// the target, in the order followed.
    pub folders_renamed: Vec<RenamedFolder>,
    /// Commands sent to the source.
    pub source_commands: CommandCounts,
    /// Commands sent to the target.
    pub target_commands: CommandCounts,
}

/// A source folder's rename, followed on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenamedFolder {
    /// The source name before.
    pub from: String,
    /// The source name now.
    pub to: String,
}

/// A folder a pass left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFolder {
    /// The source folder's name.
    pub folder: String,
    pub reason: FolderSkipReason,
    /// The server's words, where a server refused something.
    pub detail: Option<String>,
}

/// Why a pass left a folder alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FolderSkipReason {
    /// The source listed the folder but it was gone when the pass opened it: deleted,
    /// or renamed meanwhile. What was copied before stays on the target and in the
    /// store, so the folder resumes where it was if it comes back.
    VanishedFromSource,
    /// Another user's or a shared folder (outside the personal namespace): copying it
    /// would put it into every mailbox of the batch, so it is copied only when the batch
    /// includes it by name.
    OutsidePersonalNamespace,
    /// The target refused to create the folder (a name it cannot hold: Courier refuses
    /// characters outside the BMP, Cyrus `"`, `\\` and `%`). Its mail stays on the source
    /// and every pass tries again, so renaming it on the source (or creating it on the
    /// target under that name) brings it over.
    TargetRefusedCreate,
    /// Gmail's Starred: the starred messages of the other folders, which carry
    /// `\Flagged` there; not a folder of its own on the target.
    GmailStarredIsAFlag,
    /// Gmail's Important: a ranking Gmail computes, not a folder the user made.
    GmailImportantIsARanking,
    /// The target is Gmail and this folder maps onto its All Mail, Starred or Important,
    /// which Gmail fills by itself: nothing is appended there.
    GmailTargetSystemFolder,
}

impl FolderSkipReason {
    /// As reports say it.
    pub fn phrase(self) -> &'static str {
        match self {
            FolderSkipReason::VanishedFromSource => "vanished from the source during the pass",
            FolderSkipReason::OutsidePersonalNamespace => {
                "a shared or another user's folder, copied only when included by name (--include)"
            }
            FolderSkipReason::TargetRefusedCreate => {
                "the target refused to create it; rename it on the source and the next pass copies it"
            }
            FolderSkipReason::GmailStarredIsAFlag => {
                "Gmail's Starred: its messages are copied from their own folders, with \\Flagged"
            }
            FolderSkipReason::GmailImportantIsARanking => {
                "Gmail's Important is a ranking Gmail computes, not a folder: not copied"
            }
            FolderSkipReason::GmailTargetSystemFolder => {
                "it maps onto Gmail's All Mail, Starred or Important, which Gmail fills by itself: nothing is appended there"
            }
        }
    }
}

/// Counters shared by the folder workers of one pass.
#[derive(Debug, Default)]
pub(crate) struct PassTotals {
    pub copied: AtomicU64,
    pub bytes: AtomicU64,
    pub skipped: AtomicU64,
    pub flags_updated: AtomicU64,
    pub deleted: AtomicU64,
    pub reconciled: AtomicU64,
    pub retries: AtomicU64,
    pub unchanged: AtomicU64,
    pub created: AtomicU64,
    /// Target refusals this pass, for the bad-item limit.
    pub bad_items: AtomicU64,
    /// Messages copied without the keywords the target refused.
    pub keywords_dropped: AtomicU64,
    /// Nanoseconds waited for the rate budgets ([`PassSummary::rate_limit_wait`]).
    pub rate_limit_wait_ns: AtomicU64,
    /// Nanoseconds waited out for servers ([`PassSummary::throttle_wait`]).
    pub throttle_wait_ns: AtomicU64,
    pub skipped_folders: Mutex<Vec<SkippedFolder>>,
    pub renamed_folders: Mutex<Vec<RenamedFolder>>,
    /// A pass ended by the quick check repeats the folders its full pass left out, as
    /// that pass recorded them (the plan that left them out was not made again).
    pub repeated_folder_skips: Mutex<Vec<imapmirror_storage::FolderSkip>>,
}

impl PassTotals {
    pub fn add(counter: &AtomicU64, n: u64) -> u64 {
        counter.fetch_add(n, Ordering::Relaxed) + n
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds `waited` to a nanosecond counter.
    pub fn add_wait(counter: &AtomicU64, waited: Duration) {
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        // Saturating: a pass cannot wait 584 years, but a wrapped sum would lie.
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
            Some(t.saturating_add(ns))
        });
    }

    pub fn get_wait(counter: &AtomicU64) -> Duration {
        Duration::from_nanos(counter.load(Ordering::Relaxed))
    }

    /// Records a folder left out of the pass; once, even when a retried planning
    /// leaves it out again.
    pub fn skip_folder(&self, folder: SkippedFolder) {
        let mut skipped = self
            .skipped_folders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !skipped.contains(&folder) {
            skipped.push(folder);
        }
    }

    pub fn rename_folder(&self, folder: RenamedFolder) {
        self.renamed_folders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(folder);
    }

    pub fn renamed_folders(&self) -> Vec<RenamedFolder> {
        self.renamed_folders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn skipped_folders(&self) -> Vec<SkippedFolder> {
        self.skipped_folders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
