//! What one folder needs this pass, decided from the stored state and the two servers'
//! STATUS values alone (sans I/O). An unchanged folder is decided here, from one LIST-STATUS
//! line per side, without a SELECT.

use imapmirror_storage::{FolderCounters, FolderMarks};

/// STATUS values of a folder (from LIST-STATUS or STATUS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusValues {
    pub uid_validity: Option<u32>,
    pub uid_next: Option<u32>,
    pub highest_modseq: Option<u64>,
    pub messages: Option<u32>,
}

/// The options that change the decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Remove from the target what was deleted on the source.
    pub mirror_deletions: bool,
    /// The source offers CONDSTORE (flag changes are found by CHANGEDSINCE).
    pub source_condstore: bool,
}

/// Why a folder's map must be rebuilt by fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildReason {
    SourceUidValidity { stored: u32, now: u32 },
    TargetUidValidity { stored: u32, now: u32 },
}

impl std::fmt::Display for RebuildReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RebuildReason::SourceUidValidity { stored, now } => {
                write!(f, "the source UIDVALIDITY changed from {stored} to {now}")
            }
            RebuildReason::TargetUidValidity { stored, now } => {
                write!(f, "the target UIDVALIDITY changed from {stored} to {now}")
            }
        }
    }
}

/// How flag changes of copied messages are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagSync {
    /// Nothing copied yet, or nothing changed.
    Skip,
    /// `UID FETCH 1:* (FLAGS) (CHANGEDSINCE n)`.
    ChangedSince(u64),
    /// `UID FETCH 1:* (FLAGS)`: the source has no CONDSTORE (or no stored mod-sequence).
    AllFlags,
}

/// What to do with a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderWork {
    /// Nothing changed since the last pass: no SELECT.
    Unchanged,
    /// A UIDVALIDITY changed: rebuild the map by fingerprint, then sync.
    Rebuild(RebuildReason),
    /// Copy what is above the watermark, sync flags, maybe look for deletions.
    Sync { flags: FlagSync, deletions: bool },
}

/// Decides the work for a folder. `target` is `None` when the target folder does not
/// exist yet (it is created first).
pub fn decide(
    marks: &FolderMarks,
    counters: &FolderCounters,
    source: &StatusValues,
    target: Option<&StatusValues>,
    options: &CheckOptions,
) -> FolderWork {
    if let (Some(stored), Some(now)) = (marks.source_uidvalidity, source.uid_validity)
        && stored != now
    {
        return FolderWork::Rebuild(RebuildReason::SourceUidValidity { stored, now });
    }
    if let (Some(stored), Some(now)) = (
        marks.target_uidvalidity,
        target.and_then(|t| t.uid_validity),
    ) && stored != now
    {
        return FolderWork::Rebuild(RebuildReason::TargetUidValidity { stored, now });
    }
    let copied_anything = counters.messages > 0;
    let flags = if !copied_anything {
        FlagSync::Skip
    } else {
        match (options.source_condstore, marks.highest_modseq_seen) {
            (true, Some(seen)) if source.highest_modseq == Some(seen) => FlagSync::Skip,
            (true, Some(seen)) => FlagSync::ChangedSince(seen),
            _ => FlagSync::AllFlags,
        }
    };
    // Every UID below UIDNEXT is at or below the watermark: nothing new.
    let nothing_new = match source.uid_next {
        Some(next) => next.saturating_sub(1) <= marks.highest_copied_uid,
        None => false,
    };
    let expected = counters.messages + counters.skipped;
    let deletions = options.mirror_deletions
        && copied_anything
        && source.messages.map(u64::from) != Some(expected);
    let first_pass = marks.source_uidvalidity.is_none() || target.is_none();
    if nothing_new && flags == FlagSync::Skip && !deletions && !first_pass {
        return FolderWork::Unchanged;
    }
    FolderWork::Sync { flags, deletions }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct State {
        marks: FolderMarks,
        counters: FolderCounters,
    }

    fn state(watermark: u32, modseq: Option<u64>, messages: u64) -> State {
        let marks = FolderMarks {
            source_uidvalidity: Some(7),
            target_uidvalidity: Some(9),
            highest_copied_uid: watermark,
            highest_modseq_seen: modseq,
            ..FolderMarks::default()
        };
        let counters = FolderCounters {
            messages,
            ..FolderCounters::default()
        };
        State { marks, counters }
    }

    fn decide(
        s: &State,
        source: &StatusValues,
        target: Option<&StatusValues>,
        options: &CheckOptions,
    ) -> FolderWork {
        super::decide(&s.marks, &s.counters, source, target, options)
    }

    fn status(v: u32, next: u32, modseq: u64, messages: u32) -> StatusValues {
        StatusValues {
            uid_validity: Some(v),
            uid_next: Some(next),
            highest_modseq: Some(modseq),
            messages: Some(messages),
        }
    }

    const CONDSTORE: CheckOptions = CheckOptions {
        mirror_deletions: false,
        source_condstore: true,
    };

    #[test]
    fn unchanged_folder_needs_no_select() {
        let s = state(10, Some(50), 10);
        let t = status(9, 11, 1, 10);
        assert_eq!(
            decide(&s, &status(7, 11, 50, 10), Some(&t), &CONDSTORE),
            FolderWork::Unchanged
        );
    }

    #[test]
    fn new_mail_flag_changes_and_uidvalidity_are_seen() {
        let s = state(10, Some(50), 10);
        let t = status(9, 11, 1, 10);
        assert_eq!(
            decide(&s, &status(7, 12, 51, 11), Some(&t), &CONDSTORE),
            FolderWork::Sync {
                flags: FlagSync::ChangedSince(50),
                deletions: false
            }
        );
        assert_eq!(
            decide(&s, &status(8, 11, 50, 10), Some(&t), &CONDSTORE),
            FolderWork::Rebuild(RebuildReason::SourceUidValidity { stored: 7, now: 8 })
        );
        assert_eq!(
            decide(
                &s,
                &status(7, 11, 50, 10),
                Some(&status(10, 1, 1, 0)),
                &CONDSTORE
            ),
            FolderWork::Rebuild(RebuildReason::TargetUidValidity { stored: 9, now: 10 })
        );
        let plain = CheckOptions::default();
        assert_eq!(
            decide(&s, &status(7, 11, 50, 10), Some(&t), &plain),
            FolderWork::Sync {
                flags: FlagSync::AllFlags,
                deletions: false
            },
            "without CONDSTORE flags must be read every pass"
        );
    }

    #[test]
    fn deletions_are_looked_for_only_when_counts_differ() {
        let s = state(10, Some(50), 10);
        let t = status(9, 11, 1, 10);
        let mirror = CheckOptions {
            mirror_deletions: true,
            source_condstore: true,
        };
        assert_eq!(
            decide(&s, &status(7, 11, 50, 10), Some(&t), &mirror),
            FolderWork::Unchanged
        );
        assert_eq!(
            decide(&s, &status(7, 11, 52, 9), Some(&t), &mirror),
            FolderWork::Sync {
                flags: FlagSync::ChangedSince(50),
                deletions: true
            }
        );
    }

    #[test]
    fn a_missing_target_folder_is_never_unchanged() {
        let s = state(10, Some(50), 10);
        assert!(matches!(
            decide(&s, &status(7, 11, 50, 10), None, &CONDSTORE),
            FolderWork::Sync { .. }
        ));
    }
}
