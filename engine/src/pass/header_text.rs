//! Header text for people: the Subject, From and Date of a message that was not copied,
//! as the mail client shows them (`Größe`, not `=?UTF-8?Q?Gr=C3=B6=C3=9Fe?=`), so that a
//! skipped-item report lets the owner find the message.
//!
//! For reports only — never for anything copied: messages move byte for byte. Parsing is
//! mail-parser's (RFC 5322 fields, RFC 2047 words in any charset encoding_rs knows, RFC
//! 2231), which is lenient the way mail clients are: a malformed word stays as it was
//! sent, a field it cannot read is left out, and nothing here fails or panics.

use imapmirror_storage::Timestamp;
use mail_parser::{Address, MessageParser};

/// The most header bytes read: the fields a report wants come first in practice, and a
/// message of megabytes of header is not read whole for a report.
const MAX_HEAD: usize = 64 * 1024;

/// What a report says about a message besides its folder, UID, size and INTERNALDATE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportHeaders {
    /// The Subject, decoded and unfolded.
    pub subject: Option<String>,
    /// The first From address: `Name <address>`, or whichever of the two is there.
    pub from: Option<String>,
    /// The Date field as an instant, when it names a valid one after 1970.
    pub date: Option<Timestamp>,
}

impl ReportHeaders {
    /// The fields of a whole message or of a header block (a `HEADER.FIELDS` answer);
    /// the header ends at the first empty line.
    pub fn of_message(message: &[u8]) -> ReportHeaders {
        let head = &message[..message.len().min(MAX_HEAD)];
        let Some(parsed) = MessageParser::new().parse_headers(head) else {
            return ReportHeaders::default();
        };
        ReportHeaders {
            subject: parsed
                .subject()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            from: parsed.from().and_then(first_address),
            date: parsed
                .date()
                .filter(|d| d.is_valid())
                .and_then(|d| u64::try_from(d.to_timestamp()).ok())
                .and_then(|secs| secs.checked_mul(1000))
                .map(Timestamp::from_unix_millis),
        }
    }
}

/// `Name <address>` of the first address (or of the first member of a group).
fn first_address(from: &Address<'_>) -> Option<String> {
    let addr = from.first()?;
    let name = addr.name().map(str::trim).filter(|n| !n.is_empty());
    let address = addr.address().map(str::trim).filter(|a| !a.is_empty());
    match (name, address) {
        (Some(name), Some(address)) => Some(format!("{name} <{address}>")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(raw: &str) -> Option<String> {
        ReportHeaders::of_message(format!("Subject: {raw}\r\n\r\nbody").as_bytes()).subject
    }

    #[test]
    fn rfc2047_examples() {
        // RFC 2047 section 8, in unstructured text (a Subject), where words stand
        // between spaces: the space between two encoded-words goes, others stay.
        assert_eq!(subject("=?ISO-8859-1?Q?a?=").as_deref(), Some("a"));
        assert_eq!(subject("=?ISO-8859-1?Q?a?= b").as_deref(), Some("a b"));
        assert_eq!(
            subject("=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=").as_deref(),
            Some("ab")
        );
        assert_eq!(
            subject("=?ISO-8859-1?Q?a?=  \t =?ISO-8859-1?Q?b?=").as_deref(),
            Some("ab")
        );
        assert_eq!(subject("=?ISO-8859-1?Q?a_b?=").as_deref(), Some("a b"));
    }

    #[test]
    fn common_forms() {
        assert_eq!(
            subject("=?UTF-8?Q?Gr=C3=B6=C3=9Fe?= attachment").as_deref(),
            Some("Größe attachment")
        );
        assert_eq!(subject("=?utf-8?B?w6TDtsO8?=").as_deref(), Some("äöü"));
        assert_eq!(
            subject("=?windows-1252?Q?=80_price?=").as_deref(),
            Some("€ price")
        );
        assert_eq!(subject("=?UTF-8*en?Q?hi?=").as_deref(), Some("hi"));
        // A charset only encoding_rs knows.
        assert_eq!(
            subject("=?Shift_JIS?B?k/qWe4zq?=").as_deref(),
            Some("日本語")
        );
    }

    #[test]
    fn malformed_words_stay_as_sent() {
        for raw in ["plain subject", "=?UTF-8?Q?unterminated", "a =? b ?= c"] {
            assert_eq!(subject(raw).as_deref(), Some(raw), "{raw:?}");
        }
    }

    #[test]
    fn subject_is_found_and_unfolded() {
        let m = b"From: a\r\nSubject: hello\r\n  world\r\nX: y\r\n\r\nSubject: not this\r\n";
        assert_eq!(
            ReportHeaders::of_message(m).subject.as_deref(),
            Some("hello world")
        );
        assert_eq!(
            ReportHeaders::of_message(b"From: a\r\n\r\nbody").subject,
            None
        );
        assert_eq!(
            ReportHeaders::of_message("Subject\u{e9}: x\r\n\r\n".as_bytes()).subject,
            None
        );
    }

    #[test]
    fn a_header_fields_answer_gives_subject_from_and_date() {
        // What Dovecot answers to BODY.PEEK[HEADER.FIELDS (SUBJECT FROM DATE)].
        let head = b"Subject: =?UTF-8?Q?caf=C3=A9?=\r\n number 1\r\nFrom: =?UTF-8?Q?J=C3=BCrgen?= <j@example.org>\r\nDate: Sun, 14 Mar 2021 09:26:53 +0100\r\n\r\n";
        let h = ReportHeaders::of_message(head);
        assert_eq!(h.subject.as_deref(), Some("café number 1"));
        assert_eq!(h.from.as_deref(), Some("Jürgen <j@example.org>"));
        assert_eq!(h.date.map(Timestamp::unix_millis), Some(1_615_710_413_000));
    }

    #[test]
    fn odd_headers_give_what_can_be_read() {
        let h =
            ReportHeaders::of_message(b"From: undisclosed-recipients:;\r\nDate: yesterday\r\n\r\n");
        assert_eq!(h.date, None);
        assert_eq!(h.subject, None);
        let h = ReportHeaders::of_message(b"From: bare@example.org\r\n\r\n");
        assert_eq!(h.from.as_deref(), Some("bare@example.org"));
        assert_eq!(ReportHeaders::of_message(b""), ReportHeaders::default());
        assert_eq!(ReportHeaders::of_message(b"\xff\xfe\r\n\r\n").date, None);
    }
}
