//! Owned mailbox facts: LIST entries, STATUS values, the selected mailbox, namespaces.

use bytes::Bytes;

use crate::command::MailboxName;
use crate::types::{
    IString, ListAttrs, ListData, Mailbox, MailboxAttr, Namespace, NamespaceList, StatusAttr,
    StatusData,
};

/// One mailbox from LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The name's bytes as the server sent them (unquoted, still mUTF-7 unless UTF8=ACCEPT).
    pub wire_name: Vec<u8>,
    /// The hierarchy delimiter; `None` for a flat namespace.
    pub delimiter: Option<u8>,
    /// The LIST attributes, validated by the parser (see [`ListEntry::attributes`]).
    attrs_raw: Bytes,
    /// STATUS values returned with the entry (LIST-STATUS, RFC 5819).
    pub status: Option<MailboxStatus>,
}

impl ListEntry {
    pub(crate) fn from_list(data: &ListData<'_>) -> Self {
        ListEntry {
            wire_name: data.mailbox.wire().into_owned(),
            delimiter: data.delimiter,
            attrs_raw: Bytes::copy_from_slice(data.attributes.raw()),
            status: None,
        }
    }

    /// The attributes (flags such as `\HasChildren`, SPECIAL-USE such as `\Sent`).
    pub fn attributes(&self) -> ListAttrs<'_> {
        ListAttrs::from_validated(&self.attrs_raw)
    }

    /// The SPECIAL-USE attribute, if any (RFC 6154).
    pub fn special_use(&self) -> Option<MailboxAttr<'_>> {
        self.attributes().attrs().find(MailboxAttr::is_special_use)
    }

    /// False for `\Noselect` and `\NonExistent` entries (hierarchy placeholders).
    pub fn is_selectable(&self) -> bool {
        !self.attributes().contains(MailboxAttr::NoSelect)
            && !self.attributes().contains(MailboxAttr::NonExistent)
    }

    /// The name as Unicode (see [`Mailbox::decode`]).
    pub fn name(&self, utf8_enabled: bool) -> crate::Result<String> {
        Mailbox(IString::Atom(&self.wire_name)).decode(utf8_enabled)
    }

    /// The name to address this mailbox again on the same server.
    pub fn mailbox_name(&self) -> MailboxName<'_> {
        MailboxName::Wire(&self.wire_name)
    }
}

/// STATUS values; each `None` when the server did not send it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct MailboxStatus {
    pub messages: Option<u32>,
    pub recent: Option<u32>,
    pub uid_next: Option<u32>,
    pub uid_validity: Option<u32>,
    pub unseen: Option<u32>,
    pub highest_modseq: Option<u64>,
    pub size: Option<u64>,
    /// APPENDLIMIT (RFC 7889); `None` also for `NIL` (no limit).
    pub append_limit: Option<u64>,
    pub deleted: Option<u32>,
}

impl MailboxStatus {
    pub(crate) fn from_data(data: &StatusData<'_>) -> Self {
        let small = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
        MailboxStatus {
            messages: small(data.get(StatusAttr::Messages)),
            recent: small(data.get(StatusAttr::Recent)),
            uid_next: small(data.get(StatusAttr::UidNext)),
            uid_validity: small(data.get(StatusAttr::UidValidity)),
            unseen: small(data.get(StatusAttr::Unseen)),
            highest_modseq: data.get(StatusAttr::HighestModSeq),
            size: data.get(StatusAttr::Size),
            append_limit: data.get(StatusAttr::AppendLimit),
            deleted: small(data.get(StatusAttr::Deleted)),
        }
    }
}

/// What SELECT or EXAMINE reported, kept up to date by later EXISTS/EXPUNGE responses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectedMailbox {
    /// The name as sent in SELECT (wire bytes).
    pub wire_name: Vec<u8>,
    /// EXAMINE, or the server answered `[READ-ONLY]`.
    pub read_only: bool,
    /// Messages in the mailbox.
    pub exists: u32,
    /// `\Recent` messages.
    pub recent: u32,
    /// `[UIDVALIDITY n]`
    pub uid_validity: Option<u32>,
    /// `[UIDNEXT n]`
    pub uid_next: Option<u32>,
    /// `[UNSEEN n]`: the first unseen message's sequence number.
    pub unseen: Option<u32>,
    /// `[HIGHESTMODSEQ n]` (CONDSTORE).
    pub highest_modseq: Option<u64>,
    /// `[NOMODSEQ]`: the mailbox keeps no mod-sequences.
    pub no_modseq: bool,
    /// `* FLAGS (...)`, raw.
    pub flags: String,
    /// `[PERMANENTFLAGS (...)]`, raw; `None` when not sent (all flags permanent).
    pub permanent_flags: Option<String>,
}

/// One namespace (`"prefix" "delimiter"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceEntry {
    /// The prefix bytes, e.g. `INBOX.` or empty.
    pub prefix: Vec<u8>,
    /// The delimiter.
    pub delimiter: Option<u8>,
}

/// The NAMESPACE response (RFC 2342).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// The user's own.
    pub personal: Vec<NamespaceEntry>,
    /// Other users'.
    pub other_users: Vec<NamespaceEntry>,
    /// Shared.
    pub shared: Vec<NamespaceEntry>,
}

impl Namespaces {
    pub(crate) fn from_data(ns: &Namespace<'_>) -> Self {
        let list = |l: &Option<NamespaceList<'_>>| -> Vec<NamespaceEntry> {
            l.map(|l| {
                l.iter()
                    .map(|d| NamespaceEntry {
                        prefix: d.prefix.to_bytes().into_owned(),
                        delimiter: d.delimiter,
                    })
                    .collect()
            })
            .unwrap_or_default()
        };
        Namespaces {
            personal: list(&ns.personal),
            other_users: list(&ns.other_users),
            shared: list(&ns.shared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Data, Response, parse_response};

    #[test]
    fn list_entry_keeps_attributes_and_special_use() {
        let frame = b"* LIST (\\HasNoChildren \\Sent) \".\" \"Sent &AMk-l&AOk-ments\"\r\n";
        let Ok(Response::Data(Data::List(l))) = parse_response(frame) else {
            panic!("not LIST")
        };
        let e = ListEntry::from_list(&l);
        assert_eq!(e.special_use(), Some(MailboxAttr::Sent));
        assert!(e.is_selectable());
        assert_eq!(e.delimiter, Some(b'.'));
        assert_eq!(
            e.name(false).ok().as_deref(),
            Some("Sent \u{c9}l\u{e9}ments")
        );
        assert_eq!(
            e.mailbox_name(),
            MailboxName::Wire(b"Sent &AMk-l&AOk-ments")
        );
    }

    #[test]
    fn noselect_entry_is_not_selectable() {
        let frame = b"* LIST (\\Noselect \\HasChildren) \"/\" Archive\r\n";
        let Ok(Response::Data(Data::List(l))) = parse_response(frame) else {
            panic!("not LIST")
        };
        assert!(!ListEntry::from_list(&l).is_selectable());
    }

    #[test]
    fn status_values_are_read() {
        let frame = b"* STATUS INBOX (MESSAGES 231 UIDNEXT 44292 UIDVALIDITY 1 HIGHESTMODSEQ 7011231777)\r\n";
        let Ok(Response::Data(Data::Status(s))) = parse_response(frame) else {
            panic!("not STATUS")
        };
        let st = MailboxStatus::from_data(&s);
        assert_eq!(st.messages, Some(231));
        assert_eq!(st.uid_next, Some(44292));
        assert_eq!(st.highest_modseq, Some(7_011_231_777));
        assert_eq!(st.unseen, None);
    }

    #[test]
    fn namespaces_are_owned() {
        let frame = b"* NAMESPACE ((\"\" \".\")) NIL ((\"shared.\" \".\"))\r\n";
        let Ok(Response::Data(Data::Namespace(n))) = parse_response(frame) else {
            panic!("not NAMESPACE")
        };
        let ns = Namespaces::from_data(&n);
        assert_eq!(
            ns.personal,
            vec![NamespaceEntry {
                prefix: vec![],
                delimiter: Some(b'.')
            }]
        );
        assert!(ns.other_users.is_empty());
        assert_eq!(ns.shared[0].prefix, b"shared.".to_vec());
    }
}
