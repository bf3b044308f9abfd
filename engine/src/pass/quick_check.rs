//! The quick check (sans I/O): whether a pass can end after the source's listing, without
//! logging in to the target, because the source shows nothing for it to do.
//!
//! A pass over a mailbox nobody wrote to logs in to both sides, lists both and finds
//! every folder unchanged; on 2 cores with the kit's Dovecots, 1,000 such mailboxes took
//! 13.5–16.5 s, about half of it the target's TLS handshake, login, imap process and
//! LIST-STATUS. What the target contributes to that decision is only whether it changed
//! behind our back (a folder deleted or recreated there, a UIDVALIDITY reset): the plan
//! follows from the source listing and the batch's options, and each folder's work from
//! its source STATUS and the stored state ([`crate::pass::folder_check::decide`]). So a
//! full pass stores a digest of what it planned from and when it saw the target
//! ([`imapmirror_storage::QuickCheck`]); a later pass with the same digest, every planned
//! folder unchanged by its source STATUS and nothing pending in the journal, ends there —
//! unless the target was last seen longer ago than the recheck interval, or the pass is
//! the final one before cut-over, which always look at the target.

use std::fmt::Debug;
use std::time::Duration;

use imapmirror_storage::{FolderState, QuickCheck, Timestamp};

use crate::pass::folder_check::{CheckOptions, FolderWork, StatusValues, decide};

/// A digest of what a pass plans from: the source listing (names, attributes,
/// subscriptions; not the STATUS values) and the batch's options for the mailbox. Any
/// difference — a folder added, renamed, deleted, (un)subscribed, an exclusion changed,
/// even a new version's options — makes the next pass a full one.
pub(crate) fn plan_digest(listing: &impl Debug, options: &impl Debug) -> u64 {
    let text = format!("{listing:?}\n{options:?}");
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(first)
}

/// Whether the target was seen recently enough to be trusted as the last full pass left
/// it. A clock that went backwards counts as "not recently".
pub(crate) fn is_fresh(check: &QuickCheck, now: Timestamp, recheck: Duration) -> bool {
    let (seen, now) = (check.target_verified.unix_millis(), now.unix_millis());
    now >= seen && Duration::from_millis(now - seen) < recheck
}

/// One listed source folder: its STATUS from the listing (`None` without LIST-STATUS)
/// and its stored state with the number of its pending journal groups (`None` when no
/// pass copied it: excluded, `\Noselect`).
pub(crate) struct ListedState<'a> {
    pub(crate) status: Option<StatusValues>,
    pub(crate) stored: Option<(&'a FolderState, usize)>,
}

/// The folders the pass would find unchanged, if it can end here: `Some(n)` when the
/// digest is the stored one and every listed folder a pass copied is unchanged with
/// nothing pending; `None` when the pass must go on to the target.
pub(crate) fn nothing_to_do<'a>(
    digest: u64,
    check: &QuickCheck,
    listed: impl IntoIterator<Item = ListedState<'a>>,
    options: &CheckOptions,
) -> Option<usize> {
    if digest != check.source_digest {
        return None;
    }
    let mut unchanged = 0;
    for folder in listed {
        // A folder no pass copied is left out by the same plan again (the digest is the
        // same), unless it has no state because it is new: then the digest differs.
        let Some((state, pending)) = folder.stored else {
            continue;
        };
        // Without LIST-STATUS the full pass asks STATUS per folder; not worth a quick
        // path of its own.
        let status = folder.status?;
        if pending > 0 {
            return None;
        }
        // The target as the last full pass saw it.
        let target = StatusValues {
            uid_validity: state.marks.target_uidvalidity,
            ..StatusValues::default()
        };
        if decide(
            &state.marks,
            &state.counters,
            &status,
            Some(&target),
            options,
        ) != FolderWork::Unchanged
        {
            return None;
        }
        unchanged += 1;
    }
    Some(unchanged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use imapmirror_storage::{FolderCounters, FolderMarks, MailboxId};

    fn synced(uid_next: u32, modseq: u64) -> FolderState {
        FolderState {
            // Ids are the store's to make; a test makes one the way they travel.
            mailbox: serde_json::from_str::<MailboxId>(r#"{"batch":1,"id":1}"#).expect("id"),
            source_name: "INBOX".into(),
            marks: FolderMarks {
                source_uidvalidity: Some(7),
                target_uidvalidity: Some(9),
                highest_copied_uid: uid_next - 1,
                highest_modseq_seen: Some(modseq),
                ..FolderMarks::default()
            },
            counters: FolderCounters {
                messages: u64::from(uid_next - 1),
                ..FolderCounters::default()
            },
        }
    }

    fn status(uid_next: u32, modseq: u64, messages: u32) -> Option<StatusValues> {
        Some(StatusValues {
            uid_validity: Some(7),
            uid_next: Some(uid_next),
            highest_modseq: Some(modseq),
            messages: Some(messages),
        })
    }

    fn check() -> QuickCheck {
        QuickCheck {
            source_digest: 42,
            target_verified: Timestamp::from_unix_millis(0),
        }
    }
    const CONDSTORE: CheckOptions = CheckOptions {
        mirror_deletions: true,
        source_condstore: true,
    };

    #[test]
    fn an_unchanged_source_ends_the_pass_and_any_change_goes_on() {
        let inbox = synced(11, 100);
        let sent = synced(4, 30);
        let same = || {
            vec![
                ListedState {
                    status: status(11, 100, 10),
                    stored: Some((&inbox, 0)),
                },
                ListedState {
                    status: status(4, 30, 3),
                    stored: Some((&sent, 0)),
                },
                // Excluded (or \Noselect): no state, the same plan leaves it out again.
                ListedState {
                    status: status(5, 1, 4),
                    stored: None,
                },
            ]
        };
        assert_eq!(nothing_to_do(42, &check(), same(), &CONDSTORE), Some(2));
        // Another listing or other options.
        assert_eq!(nothing_to_do(43, &check(), same(), &CONDSTORE), None);
        // New mail, a flag changed, a message deleted, UIDVALIDITY reset.
        for changed in [
            status(12, 101, 11),
            status(11, 101, 10),
            status(11, 102, 9),
            Some(StatusValues {
                uid_validity: Some(8),
                ..status(11, 100, 10).expect("status")
            }),
        ] {
            let mut listed = same();
            listed[0].status = changed;
            assert_eq!(
                nothing_to_do(42, &check(), listed, &CONDSTORE),
                None,
                "{changed:?}"
            );
        }
        // No LIST-STATUS.
        let mut listed = same();
        listed[1].status = None;
        assert_eq!(nothing_to_do(42, &check(), listed, &CONDSTORE), None);
        // Without CONDSTORE flag changes cannot be seen from STATUS: never quick.
        let plain = CheckOptions {
            source_condstore: false,
            ..CONDSTORE
        };
        assert_eq!(nothing_to_do(42, &check(), same(), &plain), None);
    }

    #[test]
    fn a_pending_group_goes_on_to_the_target() {
        let inbox = synced(11, 100);
        let listed = vec![ListedState {
            status: status(11, 100, 10),
            stored: Some((&inbox, 1)),
        }];
        assert_eq!(nothing_to_do(42, &check(), listed, &CONDSTORE), None);
    }

    #[test]
    fn the_target_is_trusted_only_within_the_recheck_interval() {
        let hour = Duration::from_secs(3600);
        let check = QuickCheck {
            source_digest: 1,
            target_verified: Timestamp::from_unix_millis(10 * 3_600_000),
        };
        let at = |h: u64| Timestamp::from_unix_millis(h * 3_600_000);
        assert!(is_fresh(&check, at(10), 12 * hour));
        assert!(is_fresh(&check, at(21), 12 * hour));
        assert!(!is_fresh(&check, at(22), 12 * hour));
        assert!(!is_fresh(&check, at(9), 12 * hour), "a clock gone back");
        assert!(!is_fresh(&check, at(10), Duration::ZERO), "turned off");
    }

    #[test]
    fn the_digest_follows_listing_and_options() {
        let a = plan_digest(&vec!["INBOX", "Sent"], &("exclude", "Junk"));
        assert_eq!(a, plan_digest(&vec!["INBOX", "Sent"], &("exclude", "Junk")));
        assert_ne!(
            a,
            plan_digest(&vec!["INBOX", "Sent", "New"], &("exclude", "Junk"))
        );
        assert_ne!(a, plan_digest(&vec!["INBOX", "Sent"], &("exclude", "Spam")));
    }
}
