//! Command completions: the tagged end of a command with the data routed to it, owned, and
//! how a NO or BAD becomes the crate's error.

use std::time::Duration;

use crate::types::{StatusKind, StatusResponse};

use super::command_tag::CommandTag;
use super::mailbox_info::{ListEntry, MailboxStatus, Namespaces};
use super::response_code::ResponseCode;

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

/// Exchange Online's answer to a command on a connection whose back end it lost
/// (`BAD User is authenticated but not connected.`, then `* BYE Connection closed. 14`):
/// the command was not carried out and the session is over.
pub(crate) fn says_session_lost(text: &str) -> bool {
    text.to_ascii_lowercase()
        .starts_with("user is authenticated but not connected")
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
            text: String::from_utf8_lossy(s.text).into_owned(),
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
        // Exchange Online ends a connection whose back end it lost with this tagged BAD
        // and then `* BYE Connection closed. 14`: the command was not refused, the
        // connection is gone (a new one may succeed).
        if says_session_lost(&self.text) {
            return Err(crate::Error::Bye {
                server: server.to_owned(),
                text: self.text,
            });
        }
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
    fn exchange_lost_connection_is_a_bye_not_a_refusal() {
        let s = status(b"A9 BAD User is authenticated but not connected.\r\n");
        let c = Completion::from_status(CommandTag(9), "EXAMINE".into(), &s, CommandData::None);
        let e = c
            .into_result("m365", Duration::from_secs(1))
            .expect_err("not OK");
        assert!(matches!(e, crate::Error::Bye { .. }), "{e}");
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
