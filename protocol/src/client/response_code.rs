//! Owned response codes and command completions: what outlives the frame they came in.

use std::fmt;
use std::time::Duration;

use crate::types::{Code, StatusKind, StatusResponse};

use super::capability_set::CapabilitySet;
use super::command_tag::CommandTag;
use super::mailbox_info::{ListEntry, MailboxStatus, Namespaces};
use super::uid_ranges::UidRanges;

/// A response code (`resp-text-code`) kept after its frame is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseCode {
    /// `ALERT`
    Alert,
    /// `CAPABILITY ...` (already applied to the session's capabilities).
    Capability(CapabilitySet),
    /// `PERMANENTFLAGS (...)`, the raw list.
    PermanentFlags(String),
    /// `READ-ONLY`
    ReadOnly,
    /// `READ-WRITE`
    ReadWrite,
    /// `TRYCREATE`
    TryCreate,
    /// `UIDNEXT n`
    UidNext(u32),
    /// `UIDVALIDITY n`
    UidValidity(u32),
    /// `UNSEEN n`
    Unseen(u32),
    /// `HIGHESTMODSEQ n`
    HighestModSeq(u64),
    /// `NOMODSEQ`
    NoModSeq,
    /// `APPENDUID uidvalidity uid-set`
    AppendUid {
        /// UIDVALIDITY of the target mailbox.
        uid_validity: u32,
        /// The UIDs assigned, in append order.
        uids: UidRanges,
    },
    /// `COPYUID uidvalidity source dest`
    CopyUid {
        /// UIDVALIDITY of the destination.
        uid_validity: u32,
        /// Source UIDs.
        source: UidRanges,
        /// Destination UIDs, paired with `source` by order.
        dest: UidRanges,
    },
    /// `MODIFIED uid-set` (RFC 7162): a conditional STORE skipped these.
    Modified(UidRanges),
    /// `UIDNOTSTICKY`
    UidNotSticky,
    /// `CLOSED`
    Closed,
    /// `TOOBIG`
    TooBig,
    /// `OVERQUOTA`
    OverQuota,
    /// `LIMIT`
    Limit,
    /// `UNAVAILABLE`
    Unavailable,
    /// `THROTTLED`
    Throttled,
    /// Any other code: its name and argument as sent (lossy UTF-8).
    Other {
        /// The name.
        name: String,
        /// The argument.
        arg: Option<String>,
    },
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl ResponseCode {
    /// The owned form of a parsed code.
    pub fn from_code(code: &Code<'_>) -> Self {
        match *code {
            Code::Alert => ResponseCode::Alert,
            Code::Capability(c) => ResponseCode::Capability(CapabilitySet::from_list(c)),
            Code::PermanentFlags(f) => ResponseCode::PermanentFlags(lossy(f.raw())),
            Code::ReadOnly => ResponseCode::ReadOnly,
            Code::ReadWrite => ResponseCode::ReadWrite,
            Code::TryCreate => ResponseCode::TryCreate,
            Code::UidNext(n) => ResponseCode::UidNext(n),
            Code::UidValidity(n) => ResponseCode::UidValidity(n),
            Code::Unseen(n) => ResponseCode::Unseen(n),
            Code::HighestModSeq(n) => ResponseCode::HighestModSeq(n),
            Code::NoModSeq => ResponseCode::NoModSeq,
            Code::AppendUid { uid_validity, uids } => ResponseCode::AppendUid {
                uid_validity,
                uids: UidRanges::from_set(&uids),
            },
            Code::CopyUid {
                uid_validity,
                source,
                dest,
            } => ResponseCode::CopyUid {
                uid_validity,
                source: UidRanges::from_set(&source),
                dest: UidRanges::from_set(&dest),
            },
            Code::UidNotSticky => ResponseCode::UidNotSticky,
            Code::Closed => ResponseCode::Closed,
            Code::TooBig => ResponseCode::TooBig,
            Code::OverQuota => ResponseCode::OverQuota,
            Code::Limit => ResponseCode::Limit,
            Code::Unavailable => ResponseCode::Unavailable,
            Code::Throttled => ResponseCode::Throttled,
            Code::Other { name, arg } => {
                if name.eq_ignore_ascii_case(b"MODIFIED")
                    && let Some(set) = arg.and_then(UidRanges::parse)
                {
                    return ResponseCode::Modified(set);
                }
                ResponseCode::Other {
                    name: lossy(name),
                    arg: arg.map(lossy),
                }
            }
            // `Code` is non-exhaustive: a code added to the parser later stays visible.
            #[allow(unreachable_patterns)]
            _ => ResponseCode::Other {
                name: format!("{code:?}"),
                arg: None,
            },
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseCode::Alert => f.write_str("ALERT"),
            ResponseCode::Capability(_) => f.write_str("CAPABILITY"),
            ResponseCode::PermanentFlags(p) => write!(f, "PERMANENTFLAGS ({p})"),
            ResponseCode::ReadOnly => f.write_str("READ-ONLY"),
            ResponseCode::ReadWrite => f.write_str("READ-WRITE"),
            ResponseCode::TryCreate => f.write_str("TRYCREATE"),
            ResponseCode::UidNext(n) => write!(f, "UIDNEXT {n}"),
            ResponseCode::UidValidity(n) => write!(f, "UIDVALIDITY {n}"),
            ResponseCode::Unseen(n) => write!(f, "UNSEEN {n}"),
            ResponseCode::HighestModSeq(n) => write!(f, "HIGHESTMODSEQ {n}"),
            ResponseCode::NoModSeq => f.write_str("NOMODSEQ"),
            ResponseCode::AppendUid { uid_validity, uids } => {
                write!(f, "APPENDUID {uid_validity} {uids}")
            }
            ResponseCode::CopyUid {
                uid_validity,
                source,
                dest,
            } => {
                write!(f, "COPYUID {uid_validity} {source} {dest}")
            }
            ResponseCode::Modified(s) => write!(f, "MODIFIED {s}"),
            ResponseCode::UidNotSticky => f.write_str("UIDNOTSTICKY"),
            ResponseCode::Closed => f.write_str("CLOSED"),
            ResponseCode::TooBig => f.write_str("TOOBIG"),
            ResponseCode::OverQuota => f.write_str("OVERQUOTA"),
            ResponseCode::Limit => f.write_str("LIMIT"),
            ResponseCode::Unavailable => f.write_str("UNAVAILABLE"),
            ResponseCode::Throttled => f.write_str("THROTTLED"),
            ResponseCode::Other { name, arg: Some(a) } => write!(f, "{name} {a}"),
            ResponseCode::Other { name, arg: None } => f.write_str(name),
        }
    }
}

/// Data a command gathered from the untagged responses routed to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandData {
    /// Nothing beyond the completion itself.
    #[default]
    None,
    /// `* ENABLED ...`
    Enabled(Vec<String>),
    /// `* LIST ...` (with `* STATUS` merged in for LIST-STATUS).
    List(Vec<ListEntry>),
    /// `* STATUS ...`
    Status(Vec<(Vec<u8>, MailboxStatus)>),
    /// `* SEARCH` / `* ESEARCH`
    Search(super::SearchResult),
    /// `* NAMESPACE`
    Namespace(Option<Namespaces>),
    /// `* ID`: `None` for `ID NIL`.
    Id(Option<Vec<(String, Option<String>)>>),
    /// Untagged FETCH flag updates seen during a STORE.
    FlagUpdates(Vec<super::FlagUpdate>),
    /// `* n EXPUNGE` / `* VANISHED` seen during EXPUNGE or UID EXPUNGE.
    Expunged(super::ExpungeOutcome),
}

/// The tagged end of a command, with what it gathered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The command's tag.
    pub tag: CommandTag,
    /// The command's name and main argument (for messages; never a secret).
    pub command: String,
    /// OK, NO or BAD.
    pub kind: StatusKind,
    /// The response code.
    pub code: Option<ResponseCode>,
    /// The text.
    pub text: String,
    /// A back-off the server suggested in the text ("Suggested Backoff Time").
    pub backoff_hint: Option<Duration>,
    /// Untagged data routed to this command.
    pub data: CommandData,
}

impl Completion {
    pub(crate) fn from_status(
        tag: CommandTag,
        command: String,
        s: &StatusResponse<'_>,
        data: CommandData,
    ) -> Self {
        Completion {
            tag,
            command,
            kind: s.kind,
            code: s.code.as_ref().map(ResponseCode::from_code),
            text: lossy(s.text),
            backoff_hint: s.backoff_hint(),
            data,
        }
    }

    /// True for OK.
    pub fn is_ok(&self) -> bool {
        self.kind == StatusKind::Ok
    }

    /// The APPENDUID of an APPEND's completion: the target's UIDVALIDITY and the UIDs
    /// assigned, in the order the messages were sent.
    pub fn append_uid(&self) -> Option<(u32, Vec<u32>)> {
        match &self.code {
            Some(ResponseCode::AppendUid { uid_validity, uids }) => {
                Some((*uid_validity, uids.iter().collect()))
            }
            _ => None,
        }
    }

    /// OK stays a completion; NO/BAD become [`crate::Error::Backoff`] when the server asks
    /// for a pause, else [`crate::Error::Refused`].
    pub fn into_result(self, server: &str, default_backoff: Duration) -> crate::Result<Completion> {
        if self.is_ok() {
            return Ok(self);
        }
        let throttled = matches!(
            self.code,
            Some(ResponseCode::Throttled | ResponseCode::Unavailable)
        );
        if throttled || self.backoff_hint.is_some() {
            return Err(crate::Error::Backoff {
                server: server.to_owned(),
                command: self.command,
                delay: self.backoff_hint.unwrap_or(default_backoff),
                text: self.text,
            });
        }
        Err(crate::Error::Refused {
            server: server.to_owned(),
            command: self.command,
            status: self.kind,
            code: self.code.map(Box::new),
            text: self.text,
        })
    }
}

impl crate::Error {
    /// The response code of a refusal (`TRYCREATE`, `OVERQUOTA`, `TOOBIG`, ...).
    pub fn refusal_code(&self) -> Option<&ResponseCode> {
        match self {
            crate::Error::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// How long to wait before retrying, when the server asked for a pause.
    pub fn backoff_delay(&self) -> Option<Duration> {
        match self {
            crate::Error::Backoff { delay, .. } => Some(*delay),
            _ => None,
        }
    }

    /// True for failures that a new connection, later, may not meet again: time-outs,
    /// dropped connections, BYE, network errors and back-off requests.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            crate::Error::Timeout { .. }
                | crate::Error::ConnectionClosed { .. }
                | crate::Error::Bye { .. }
                | crate::Error::Network { .. }
                | crate::Error::Backoff { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Response, parse_response};

    fn status(line: &[u8]) -> StatusResponse<'_> {
        match parse_response(line) {
            Ok(Response::Status(s)) => s,
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn append_uid_is_owned_and_expanded() {
        let s = status(b"A1 OK [APPENDUID 38505 3955:3957,4000] APPEND completed\r\n");
        let c = Completion::from_status(CommandTag(1), "APPEND".into(), &s, CommandData::None);
        assert_eq!(c.append_uid(), Some((38505, vec![3955, 3956, 3957, 4000])));
        assert_eq!(
            c.code.as_ref().map(ToString::to_string).as_deref(),
            Some("APPENDUID 38505 3955:3957,4000")
        );
    }

    #[test]
    fn modified_code_is_typed() {
        let s = status(b"A2 OK [MODIFIED 7,9] Conditional STORE failed\r\n");
        let c = Completion::from_status(CommandTag(2), "UID STORE".into(), &s, CommandData::None);
        match c.code {
            Some(ResponseCode::Modified(r)) => assert_eq!(r.iter().collect::<Vec<_>>(), vec![7, 9]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusal_and_backoff_are_separate_errors() {
        let no = status(b"A3 NO [TRYCREATE] Mailbox doesn't exist: Foo\r\n");
        let c = Completion::from_status(
            CommandTag(3),
            "APPEND \"Foo\"".into(),
            &no,
            CommandData::None,
        );
        let err = c
            .into_result("127.0.0.1:143", Duration::from_secs(30))
            .unwrap_err();
        match &err {
            crate::Error::Refused {
                status: StatusKind::No,
                ..
            } => {
                assert_eq!(err.refusal_code(), Some(&ResponseCode::TryCreate));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("127.0.0.1:143"), "{err}");

        let slow =
            status(b"A4 NO Request is throttled. Suggested Backoff Time: 1500 milliseconds\r\n");
        let c = Completion::from_status(CommandTag(4), "SELECT".into(), &slow, CommandData::None);
        match c.into_result("s", Duration::from_secs(30)) {
            Err(crate::Error::Backoff { delay, .. }) => {
                assert_eq!(delay, Duration::from_millis(1500))
            }
            other => panic!("{other:?}"),
        }

        let unavailable = status(b"A5 NO [UNAVAILABLE] Try later\r\n");
        let c = Completion::from_status(
            CommandTag(5),
            "LOGIN".into(),
            &unavailable,
            CommandData::None,
        );
        match c.into_result("s", Duration::from_secs(30)) {
            Err(crate::Error::Backoff { delay, .. }) => assert_eq!(delay, Duration::from_secs(30)),
            other => panic!("{other:?}"),
        }
    }
}
