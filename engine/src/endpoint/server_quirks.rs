//! Server quirks: what a particular server does unlike what it announces or what the RFCs
//! lead a client to expect, each named after its server, in one place, with a test each.
//!
//! A quirk is known in advance from the server family ([`crate::endpoint::server_family::detect`]:
//! ID, greeting, capabilities), or learnt at run time from an answer — a BAD to an
//! optional item the server announced — and then remembered for the endpoint
//! ([`LearntQuirks`]), so every later mailbox of the batch asks the right way at once.
//! Refusals of single messages for their keywords are not listed per server to be
//! acted on: any refusal of a message that carries keywords is retried without them
//! (`folder_sync::message_copy`); the two known causes are named here for the report.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::endpoint::server_family::ServerFamily;

/// A known behaviour of one server family that the migration works around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    /// Cyrus 3.6 announces `APPENDLIMIT=4294967295` but answers `BAD Invalid Status
    /// attributes appendlimit` to `STATUS … (APPENDLIMIT)` and to `LIST … RETURN (STATUS
    /// (… APPENDLIMIT))`, and cannot be told otherwise: the per-folder limit is not asked
    /// of it (the announced one still applies).
    CyrusRefusesAppendLimitStatus,
    /// Cyrus refuses a message that would bring a folder over 100 distinct keywords (`NO
    /// Too many user flags in mailbox`): the message is copied without its keywords.
    CyrusCapsKeywordsPerFolder,
    /// Cyrus adds `LOGINDISABLED` to its capabilities after login: login methods are
    /// judged from the list before login (`endpoint test`).
    CyrusAddsLoginDisabledAfterLogin,
    /// Dovecot refuses keywords longer than `mail_max_keyword_length` (50 bytes by
    /// default) with `NO Keyword length too long`: the message is copied without them.
    DovecotRefusesLongKeywords,
    /// Courier allows 20 connections per client address by default (`* BYE ... Maximum
    /// connection limit reached`, `MAXPERIP`): connections beyond it are retried later.
    CourierLimitsConnectionsPerAddress,
    /// Courier's shared folders (`#shared.`) are not returned by `LIST "" "*"`: a
    /// `UserRoot` there is listed by name.
    CourierHidesSharedFoldersFromListAll,
    /// Courier (no LITERAL+) slows down about fivefold when the next APPEND is already
    /// in its input while it stores a message: APPENDs to a target without LITERAL+ are
    /// sent one at a time (`folder_sync::message_copy`).
    CourierStallsOnPipelinedAppend,
    /// Gmail shows labels as folders: a message with two labels is listed in two folders
    /// (and in INBOX if it is there), one message each time; the target holds it once per
    /// label, which is Gmail's meaning ([`crate::endpoint::provider_profile`]).
    GmailLabelsAreFolders,
    /// Gmail's `[Gmail]/All Mail` (`\All`) holds every message of the account, Starred
    /// (`\Flagged`) every starred one and Important (`\Important`) those Gmail ranks so:
    /// copied as folders they would double the mailbox. Only All Mail's messages in no
    /// other folder (archived mail) are copied, Starred becomes `\Flagged`, Important is
    /// skipped; as a target nothing is appended to them. Archived mail is told by
    /// X-GM-LABELS, or, where X-GM-EXT-1 is not announced, by exact bytes against the
    /// label folders (`pass/folder_sync/all_mail_by_bytes.rs`, `tests/gmail.rs`).
    GmailAllMailHoldsEveryMessage,
    /// Gmail refuses a command with `[THROTTLED]` when an account exceeds its bandwidth
    /// (no suggested wait: the default back-off applies, then the folder goes on over new
    /// connections under the pass's retry budget), and with `[OVERQUOTA]` when the account
    /// is full or over its daily bandwidth: the mailbox's pass ends with Gmail's words and
    /// the next pass resumes (`tests/gmail.rs`).
    GmailThrottlesAndQuotas,
    // -- Microsoft Exchange (Exchange Online / Microsoft 365) --
    /// Exchange Online refuses messages over 35 MB (its default maximum message size)
    /// without announcing APPENDLIMIT: larger messages are skipped before upload and
    /// reported ([`EXCHANGE_MESSAGE_SIZE_LIMIT`]).
    ExchangeLimitsMessageSize,
    /// Exchange Online throttles busy mailboxes per command: `NO Request is throttled.
    /// Suggested Backoff Time: N milliseconds`, the command not executed. Other commands
    /// are sent again by the session after that wait (`Session::run`); a throttled
    /// APPEND is sent again on the same connection after it, up to
    /// [`APPEND_THROTTLE_RETRIES`] times per message ([`resend_after_throttling`]),
    /// instead of ending the attempt and reconnecting (`tests/exchange_online.rs`).
    ExchangeThrottlesWithBackoff,
}

/// How often one message's throttled APPEND is sent again on the same connection;
/// throttling that goes on past this ends the attempt, and the folder continues on new
/// connections as for any transient error.
pub const APPEND_THROTTLE_RETRIES: u8 = 5;

/// The longest suggested back-off waited out on the connection; a longer one ends the
/// attempt, whose retry then waits at least that long.
pub const MAX_APPEND_THROTTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The back-off after which a refused APPEND goes out again on the same connection
/// ([`Quirk::ExchangeThrottlesWithBackoff`]): the answer is a NO or BAD suggesting a wait
/// of at most [`MAX_APPEND_THROTTLE_WAIT`]. Such a command was not executed, so nothing
/// was stored and sending it again cannot double the message; Gmail's `[THROTTLED]`
/// names no wait and still ends the attempt ([`Quirk::GmailThrottlesAndQuotas`]).
pub fn resend_after_throttling(
    c: &imapmirror_protocol::client::Completion,
) -> Option<std::time::Duration> {
    if c.is_ok() {
        return None;
    }
    c.backoff_hint.filter(|w| *w <= MAX_APPEND_THROTTLE_WAIT)
}

/// The size over which Exchange Online refuses a message (35 MB, the default maximum
/// message size of a Microsoft 365 mailbox), applied when it announces no APPENDLIMIT.
pub const EXCHANGE_MESSAGE_SIZE_LIMIT: u64 = 35 * 1024 * 1024;

/// The APPENDLIMIT a server of `family` applies without announcing it.
pub fn unannounced_append_limit(family: ServerFamily) -> Option<u64> {
    match family {
        ServerFamily::Exchange => Some(EXCHANGE_MESSAGE_SIZE_LIMIT),
        _ => None,
    }
}

impl Quirk {
    /// Every quirk, for `endpoint test` and the tests.
    pub const ALL: [Quirk; 12] = [
        Quirk::CyrusRefusesAppendLimitStatus,
        Quirk::CyrusCapsKeywordsPerFolder,
        Quirk::CyrusAddsLoginDisabledAfterLogin,
        Quirk::DovecotRefusesLongKeywords,
        Quirk::CourierLimitsConnectionsPerAddress,
        Quirk::CourierHidesSharedFoldersFromListAll,
        Quirk::CourierStallsOnPipelinedAppend,
        Quirk::ExchangeLimitsMessageSize,
        Quirk::ExchangeThrottlesWithBackoff,
        Quirk::GmailLabelsAreFolders,
        Quirk::GmailAllMailHoldsEveryMessage,
        Quirk::GmailThrottlesAndQuotas,
    ];

    /// The family whose quirk this is.
    pub fn family(self) -> ServerFamily {
        match self {
            Quirk::CyrusRefusesAppendLimitStatus
            | Quirk::CyrusCapsKeywordsPerFolder
            | Quirk::CyrusAddsLoginDisabledAfterLogin => ServerFamily::Cyrus,
            Quirk::DovecotRefusesLongKeywords => ServerFamily::Dovecot,
            Quirk::CourierLimitsConnectionsPerAddress
            | Quirk::CourierHidesSharedFoldersFromListAll
            | Quirk::CourierStallsOnPipelinedAppend => ServerFamily::Courier,
            Quirk::ExchangeLimitsMessageSize | Quirk::ExchangeThrottlesWithBackoff => {
                ServerFamily::Exchange
            }
            Quirk::GmailLabelsAreFolders
            | Quirk::GmailAllMailHoldsEveryMessage
            | Quirk::GmailThrottlesAndQuotas => ServerFamily::Gmail,
        }
    }

    /// The quirks of `family`.
    pub fn of(family: ServerFamily) -> impl Iterator<Item = Quirk> {
        Quirk::ALL.into_iter().filter(move |q| q.family() == family)
    }

    /// The keyword quirk a refusal's text shows, if any.
    pub fn keyword_refusal(text: &str) -> Option<Quirk> {
        let lower = text.to_ascii_lowercase();
        if lower.contains("too many user flags") {
            Some(Quirk::CyrusCapsKeywordsPerFolder)
        } else if lower.contains("keyword length too long") {
            Some(Quirk::DovecotRefusesLongKeywords)
        } else {
            None
        }
    }
}

impl fmt::Display for Quirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quirk::CyrusRefusesAppendLimitStatus => {
                "announces APPENDLIMIT but refuses it as a STATUS item: the per-folder limit is not asked"
            }
            Quirk::CyrusCapsKeywordsPerFolder => {
                "refuses a folder's 101st distinct keyword: such messages are copied without their keywords and reported"
            }
            Quirk::CyrusAddsLoginDisabledAfterLogin => {
                "adds LOGINDISABLED after login: login methods are judged before login"
            }
            Quirk::DovecotRefusesLongKeywords => {
                "refuses keywords over mail_max_keyword_length (50 bytes by default): such messages are copied without their keywords and reported"
            }
            Quirk::CourierLimitsConnectionsPerAddress => {
                "allows 20 connections per client address by default (MAXPERIP): keep the endpoint's connections below it"
            }
            Quirk::CourierHidesSharedFoldersFromListAll => {
                "does not list #shared. folders under LIST \"*\": a UserRoot there is listed by name"
            }
            Quirk::CourierStallsOnPipelinedAppend => {
                "slows down on pipelined APPENDs (it has no LITERAL+): messages are sent one at a time"
            }
            Quirk::GmailLabelsAreFolders => {
                "shows labels as folders: a message with two labels is copied into both folders, as Gmail means it"
            }
            Quirk::GmailAllMailHoldsEveryMessage => {
                "All Mail holds every message, Starred the starred ones, Important a ranking: only archived mail is copied from All Mail, Starred becomes \\Flagged, Important is skipped"
            }
            Quirk::GmailThrottlesAndQuotas => {
                "answers [THROTTLED] over its bandwidth (waited out, then the folder goes on) and [OVERQUOTA] when full or over its daily bandwidth (the mailbox resumes on the next pass, with Gmail's words in the report)"
            }
            Quirk::ExchangeLimitsMessageSize => {
                "refuses messages over 35 MB without announcing APPENDLIMIT: larger messages are skipped before upload and reported"
            }
            Quirk::ExchangeThrottlesWithBackoff => {
                "throttles commands with a suggested back-off: the command, APPEND included, is sent again on the same connection after that wait"
            }
        })
    }
}

/// The quirks that change how the engine talks to one endpoint, known from the family
/// or learnt from an answer; shared by every connection of the endpoint's pool.
#[derive(Debug, Default)]
pub struct LearntQuirks {
    /// The server answered BAD to APPENDLIMIT as a STATUS item although it announced
    /// APPENDLIMIT (Cyrus's quirk, on a server not recognised as Cyrus).
    append_limit_status_refused: AtomicBool,
}

impl LearntQuirks {
    /// Whether to ask APPENDLIMIT as a STATUS item of a server of `family` that
    /// announces `APPENDLIMIT`.
    pub fn asks_append_limit_status(&self, family: ServerFamily) -> bool {
        family != ServerFamily::Cyrus && !self.append_limit_status_refused.load(Ordering::Relaxed)
    }

    /// Remembers that the server refused APPENDLIMIT as a STATUS item; true the first
    /// time (the caller logs it once).
    pub fn append_limit_status_refused(&self) -> bool {
        !self
            .append_limit_status_refused
            .swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyrus_refuses_append_limit_status() {
        let learnt = LearntQuirks::default();
        assert!(!learnt.asks_append_limit_status(ServerFamily::Cyrus));
        assert!(learnt.asks_append_limit_status(ServerFamily::Dovecot));
        assert!(learnt.asks_append_limit_status(ServerFamily::Unknown));
        // An unknown server that refuses it is not asked again, and said so once.
        assert!(learnt.append_limit_status_refused());
        assert!(!learnt.append_limit_status_refused());
        assert!(!learnt.asks_append_limit_status(ServerFamily::Unknown));
    }

    #[test]
    fn cyrus_caps_keywords_per_folder() {
        assert_eq!(
            Quirk::keyword_refusal("Too many user flags in mailbox"),
            Some(Quirk::CyrusCapsKeywordsPerFolder)
        );
    }

    #[test]
    fn dovecot_refuses_long_keywords() {
        assert_eq!(
            Quirk::keyword_refusal("Keyword length too long"),
            Some(Quirk::DovecotRefusesLongKeywords)
        );
        assert_eq!(
            Quirk::keyword_refusal("Message contains NUL characters"),
            None
        );
    }

    #[test]
    fn cyrus_adds_login_disabled_after_login() {
        assert!(
            Quirk::of(ServerFamily::Cyrus).any(|q| q == Quirk::CyrusAddsLoginDisabledAfterLogin)
        );
    }

    #[test]
    fn courier_limits_connections_and_hides_shared_folders() {
        let courier: Vec<Quirk> = Quirk::of(ServerFamily::Courier).collect();
        assert_eq!(
            courier,
            [
                Quirk::CourierLimitsConnectionsPerAddress,
                Quirk::CourierHidesSharedFoldersFromListAll,
                Quirk::CourierStallsOnPipelinedAppend
            ]
        );
        assert_eq!(Quirk::of(ServerFamily::Unknown).count(), 0);
        for q in Quirk::ALL {
            assert!(!q.to_string().is_empty());
        }
    }

    #[test]
    fn exchange_limits_message_size() {
        assert_eq!(
            Quirk::of(ServerFamily::Exchange).collect::<Vec<_>>(),
            [
                Quirk::ExchangeLimitsMessageSize,
                Quirk::ExchangeThrottlesWithBackoff
            ]
        );
        assert_eq!(
            unannounced_append_limit(ServerFamily::Exchange),
            Some(35 * 1024 * 1024)
        );
        assert_eq!(unannounced_append_limit(ServerFamily::Dovecot), None);
    }

    #[test]
    fn exchange_throttles_with_backoff() {
        use imapmirror_protocol::StatusKind;
        use imapmirror_protocol::client::{CommandData, CommandTag, Completion, ResponseCode};
        use std::time::Duration;
        let answer = |kind, code, text: &str, hint: Option<u64>| Completion {
            tag: CommandTag::from_wire(b"A7").expect("a tag of ours"),
            command: "APPEND \"INBOX\"".into(),
            kind,
            code,
            text: text.into(),
            backoff_hint: hint.map(Duration::from_millis),
            data: CommandData::None,
        };
        let throttled = answer(
            StatusKind::No,
            None,
            "Request is throttled. Suggested Backoff Time: 1500 milliseconds",
            Some(1500),
        );
        assert_eq!(
            resend_after_throttling(&throttled),
            Some(Duration::from_millis(1500))
        );
        // Longer than is worth holding the connection for: the attempt ends instead.
        let long = answer(StatusKind::No, None, "throttled", Some(3_600_000));
        assert_eq!(resend_after_throttling(&long), None);
        // Gmail's [THROTTLED] names no wait; a refusal or a lost back end is no throttle.
        let gmail = answer(
            StatusKind::No,
            Some(ResponseCode::Throttled),
            "slow down",
            None,
        );
        assert_eq!(resend_after_throttling(&gmail), None);
        let gone = answer(
            StatusKind::Bad,
            None,
            "User is authenticated but not connected.",
            None,
        );
        assert_eq!(resend_after_throttling(&gone), None);
        let ok = answer(StatusKind::Ok, None, "APPEND completed", Some(10));
        assert_eq!(resend_after_throttling(&ok), None);
    }

    #[test]
    fn gmail_labels_are_folders() {
        use crate::endpoint::provider_profile::{FolderRole, Provider};
        assert!(Quirk::of(ServerFamily::Gmail).any(|q| q == Quirk::GmailLabelsAreFolders));
        // A label (nested with `/`) is an ordinary folder to copy.
        let gmail = Provider::Gmail.profile();
        assert_eq!(
            gmail.folder_role(&[], &["Work", "2024"]),
            FolderRole::Folder
        );
    }

    #[test]
    fn gmail_all_mail_holds_every_message() {
        use crate::endpoint::provider_profile::{FolderRole, Provider};
        assert!(Quirk::of(ServerFamily::Gmail).any(|q| q == Quirk::GmailAllMailHoldsEveryMessage));
        let gmail = Provider::Gmail.profile();
        assert_eq!(
            gmail.folder_role(&["\\All"], &["[Gmail]", "All Mail"]),
            FolderRole::GmailAllMail
        );
        assert_eq!(
            gmail.folder_role(&["\\Flagged"], &["[Gmail]", "Starred"]),
            FolderRole::GmailStarred
        );
        assert_eq!(
            gmail.folder_role(&["\\Important"], &["[Gmail]", "Important"]),
            FolderRole::GmailImportant
        );
    }

    #[test]
    fn gmail_throttles_and_quotas() {
        assert!(Quirk::of(ServerFamily::Gmail).any(|q| q == Quirk::GmailThrottlesAndQuotas));
        assert!(
            Quirk::GmailThrottlesAndQuotas
                .to_string()
                .contains("[OVERQUOTA]")
        );
    }
}
