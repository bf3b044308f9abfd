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

/// The marks a pass records, without opening the folder on either side, for a folder the
/// source never held a message in; `None` when the folder must be synced as usual.
///
/// The source's STATUS says UIDNEXT 1: no UID was ever given out there, so there is
/// nothing to copy, no flag to carry and nothing to delete, and a message that arrives
/// later gets a UID above the watermark of 0 and is copied by the pass that sees it. The
/// shortcut also needs nothing of the folder copied or skipped (nothing mapped that a
/// target UIDVALIDITY would have to vouch for) and the source UIDVALIDITY the marks hold,
/// if any. The target's UIDVALIDITY is recorded when its STATUS is known and left unknown
/// otherwise (a folder created by this pass): with an empty map nothing depends on it,
/// and the first pass that copies into the folder selects it and records it before its
/// first APPEND. A first pass over many small mailboxes is mostly such folders: each
/// would cost a SELECT on the target (which makes Dovecot build the folder's index) and
/// an EXAMINE on the source.
pub fn never_used_folder(
    marks: &FolderMarks,
    counters: &FolderCounters,
    source: &StatusValues,
    target: Option<&StatusValues>,
) -> Option<FolderMarks> {
    let validity = source.uid_validity?;
    let never_used = source.uid_next == Some(1) && source.messages == Some(0);
    let nothing_recorded = nothing_mapped(counters)
        && marks.highest_copied_uid == 0
        && marks.source_uidvalidity.is_none_or(|v| v == validity);
    if !(never_used && nothing_recorded) {
        return None;
    }
    Some(FolderMarks {
        source_uidvalidity: Some(validity),
        target_uidvalidity: target.and_then(|t| t.uid_validity),
        highest_modseq_seen: source.highest_modseq,
        ..marks.clone()
    })
}

/// Whether a folder the pass must look at may be one the source emptied: its listing
/// says it holds no message, and nothing of it is recorded (no map, no skipped item, the
/// same or no source UIDVALIDITY). Such a folder is examined on the source first, and
/// the target is opened only if the EXAMINE finds mail after all ([`emptied_folder`]).
pub fn may_be_emptied(
    marks: &FolderMarks,
    counters: &FolderCounters,
    listed: &StatusValues,
) -> bool {
    listed.messages == Some(0)
        && nothing_mapped(counters)
        && !matches!(
            (marks.source_uidvalidity, listed.uid_validity),
            (Some(stored), Some(now)) if stored != now
        )
}

/// The marks a pass records for a folder the source's EXAMINE (`examined`) found empty,
/// without opening the target; `None` when the folder must be synced as usual.
///
/// EXISTS 0 after EXAMINE is the server's word that no message is there: every UID below
/// UIDNEXT was given out and is gone, and a message that comes later gets a UID at or
/// above UIDNEXT (RFC 3501 2.3.1.1: UIDs only grow within a UIDVALIDITY). So the
/// watermark may rise to UIDNEXT − 1 with nothing copied, as a pass that copied the
/// folder would set it. With nothing of the folder recorded there is no flag to carry
/// and no deletion to mirror, so the target has nothing to do: its UIDVALIDITY is
/// recorded from its STATUS when known, and otherwise the pass that first copies into
/// the folder selects it and records it before its first APPEND. Unlike
/// [`never_used_folder`], this trusts the EXAMINE, never a STATUS alone: a server whose
/// STATUS miscounted would otherwise cost messages forever.
pub fn emptied_folder(
    marks: &FolderMarks,
    counters: &FolderCounters,
    examined: &StatusValues,
    target: Option<&StatusValues>,
) -> Option<FolderMarks> {
    let validity = examined.uid_validity?;
    let next = examined.uid_next?;
    if examined.messages != Some(0)
        || !nothing_mapped(counters)
        || marks.source_uidvalidity.is_some_and(|v| v != validity)
    {
        return None;
    }
    Some(FolderMarks {
        source_uidvalidity: Some(validity),
        target_uidvalidity: target
            .and_then(|t| t.uid_validity)
            .or(marks.target_uidvalidity),
        highest_copied_uid: marks.highest_copied_uid.max(next.saturating_sub(1)),
        highest_modseq_seen: examined.highest_modseq,
        ..marks.clone()
    })
}

/// Nothing of the folder is mapped or skipped: no target message depends on the marks.
fn nothing_mapped(counters: &FolderCounters) -> bool {
    counters.messages == 0 && counters.skipped == 0
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

    #[test]
    fn a_folder_the_source_never_used_is_recorded_without_opening_it() {
        let fresh = State {
            marks: FolderMarks::default(),
            counters: FolderCounters::default(),
        };
        let empty = status(7, 1, 1, 0);
        let marks = never_used_folder(&fresh.marks, &fresh.counters, &empty, None)
            .expect("a never-used folder needs no SELECT");
        assert_eq!(marks.source_uidvalidity, Some(7));
        assert_eq!(marks.target_uidvalidity, None, "a folder created this pass");
        assert_eq!(marks.highest_copied_uid, 0);
        assert_eq!(marks.highest_modseq_seen, Some(1));
        let on_target = never_used_folder(
            &fresh.marks,
            &fresh.counters,
            &empty,
            Some(&status(9, 4, 1, 3)),
        )
        .expect("an existing target folder changes nothing");
        assert_eq!(on_target.target_uidvalidity, Some(9));
        // What it records is what the next pass finds unchanged, quick check or not.
        let recorded = State {
            marks,
            counters: FolderCounters::default(),
        };
        let quick_target = StatusValues {
            uid_validity: recorded.marks.target_uidvalidity,
            ..StatusValues::default()
        };
        for target in [quick_target, status(9, 1, 1, 0)] {
            assert_eq!(
                decide(&recorded, &empty, Some(&target), &CONDSTORE),
                FolderWork::Unchanged
            );
        }
        // New mail is new mail.
        assert!(matches!(
            decide(
                &recorded,
                &status(7, 2, 2, 1),
                Some(&quick_target),
                &CONDSTORE
            ),
            FolderWork::Sync { .. }
        ));
    }

    #[test]
    fn a_folder_that_held_mail_or_has_a_map_is_synced_as_usual() {
        let fresh = FolderMarks::default();
        let none = FolderCounters::default();
        // Emptied, not never used: UIDs below UIDNEXT were given out; a FETCH tells.
        assert_eq!(
            never_used_folder(&fresh, &none, &status(7, 5, 1, 0), None),
            None
        );
        // A server that counts messages below UIDNEXT 1 is not believed either way.
        assert_eq!(
            never_used_folder(&fresh, &none, &status(7, 1, 1, 2), None),
            None
        );
        let unknown = StatusValues {
            uid_validity: Some(7),
            ..StatusValues::default()
        };
        assert_eq!(never_used_folder(&fresh, &none, &unknown, None), None);
        // Something of the folder is recorded: a UIDVALIDITY reset or a map to look after.
        let copied = state(10, Some(50), 10);
        assert_eq!(
            never_used_folder(&copied.marks, &copied.counters, &status(8, 1, 1, 0), None),
            None
        );
        let skipped_only = FolderCounters {
            skipped: 1,
            ..FolderCounters::default()
        };
        assert_eq!(
            never_used_folder(&fresh, &skipped_only, &status(7, 1, 1, 0), None),
            None
        );
        let other_validity = FolderMarks {
            source_uidvalidity: Some(6),
            ..FolderMarks::default()
        };
        assert_eq!(
            never_used_folder(&other_validity, &none, &status(7, 1, 1, 0), None),
            None
        );
    }

    #[test]
    fn an_examined_empty_folder_with_nothing_recorded_needs_no_target() {
        let fresh = FolderMarks::default();
        let none = FolderCounters::default();
        // Listed with no message: examined first.
        assert!(may_be_emptied(&fresh, &none, &status(7, 5, 3, 0)));
        assert!(!may_be_emptied(&fresh, &none, &status(7, 5, 3, 1)));
        let unknown = StatusValues {
            uid_validity: Some(7),
            ..StatusValues::default()
        };
        assert!(!may_be_emptied(&fresh, &none, &unknown));

        // EXISTS 0: the watermark rises below UIDNEXT, the target is not needed.
        let marks = emptied_folder(&fresh, &none, &status(7, 5, 3, 0), None).expect("emptied");
        assert_eq!(marks.source_uidvalidity, Some(7));
        assert_eq!(marks.highest_copied_uid, 4);
        assert_eq!(marks.highest_modseq_seen, Some(3));
        assert_eq!(marks.target_uidvalidity, None);
        // The target's UIDVALIDITY is taken from its STATUS when the listing had it.
        let marks = emptied_folder(
            &fresh,
            &none,
            &status(7, 5, 3, 0),
            Some(&status(9, 1, 1, 0)),
        )
        .expect("emptied");
        assert_eq!(marks.target_uidvalidity, Some(9));
        // A watermark never falls.
        let ahead = FolderMarks {
            source_uidvalidity: Some(7),
            highest_copied_uid: 40,
            ..FolderMarks::default()
        };
        assert!(may_be_emptied(&ahead, &none, &status(7, 41, 3, 0)));
        let marks = emptied_folder(&ahead, &none, &status(7, 5, 3, 0), None).expect("emptied");
        assert_eq!(marks.highest_copied_uid, 40);
    }

    #[test]
    fn a_folder_the_examine_finds_mail_in_or_with_a_map_is_synced_as_usual() {
        let fresh = FolderMarks::default();
        let none = FolderCounters::default();
        // Mail arrived between the listing and the EXAMINE (or the STATUS miscounted).
        assert_eq!(
            emptied_folder(&fresh, &none, &status(7, 6, 4, 1), None),
            None
        );
        // Without a UIDNEXT no watermark can be set.
        let no_next = StatusValues {
            uid_validity: Some(7),
            messages: Some(0),
            ..StatusValues::default()
        };
        assert_eq!(emptied_folder(&fresh, &none, &no_next, None), None);
        // A map or skipped items: deletions and flags may concern the target.
        let copied = state(10, Some(50), 10);
        assert!(!may_be_emptied(
            &copied.marks,
            &copied.counters,
            &status(7, 11, 60, 0)
        ));
        assert_eq!(
            emptied_folder(&copied.marks, &copied.counters, &status(7, 11, 60, 0), None),
            None
        );
        let skipped_only = FolderCounters {
            skipped: 1,
            ..FolderCounters::default()
        };
        assert_eq!(
            emptied_folder(&fresh, &skipped_only, &status(7, 5, 3, 0), None),
            None
        );
        // A new source UIDVALIDITY: the old marks say nothing of the new folder.
        let other_validity = FolderMarks {
            source_uidvalidity: Some(6),
            ..FolderMarks::default()
        };
        assert!(!may_be_emptied(&other_validity, &none, &status(7, 5, 3, 0)));
        assert_eq!(
            emptied_folder(&other_validity, &none, &status(7, 5, 3, 0), None),
            None
        );
    }
}
