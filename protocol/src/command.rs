//! Client commands the engine sends, as values to hand to [`crate::CommandEncoder`].
//!
//! Arguments borrow from the caller; the encoder validates them (a keyword with a space
//! or a mailbox name with a NUL byte is [`crate::Error::InvalidInput`]).

use bytes::Bytes;

use crate::internal_date::InternalDate;
use crate::types::{Flag, MailboxAttr, StatusAttr};

/// A mailbox name to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxName<'a> {
    /// A Unicode name: sent as UTF-8 when UTF8=ACCEPT is enabled, as modified UTF-7
    /// otherwise (the encoder's [`EncoderOptions::utf8_accept`](crate::EncoderOptions)).
    Unicode(&'a str),
    /// The name's bytes exactly as the server sent them in LIST ([`crate::Mailbox::wire`]);
    /// use this to address a source folder whose name may not round-trip through Unicode.
    Wire(&'a [u8]),
}

/// A message body for APPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiteralBody {
    /// The whole body, written as one segment without copying.
    Bytes(Bytes),
    /// Only the length: the caller writes exactly `len` bytes itself at the
    /// [`crate::Segment::StreamedBody`] point (e.g. chunks straight from a source FETCH).
    Streamed {
        /// The body's exact length.
        len: u64,
    },
}

impl LiteralBody {
    /// The body's length.
    pub fn len(&self) -> u64 {
        match self {
            LiteralBody::Bytes(b) => b.len() as u64,
            LiteralBody::Streamed { len } => *len,
        }
    }

    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One message of an APPEND (one) or MULTIAPPEND (several, RFC 3502).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage<'a> {
    /// Flags to set; `\Recent` is refused.
    pub flags: &'a [Flag<'a>],
    /// The internal date to keep.
    pub internal_date: Option<InternalDate>,
    /// The message bytes.
    pub body: LiteralBody,
}

/// An attribute to FETCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum FetchAttr<'a> {
    Uid,
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    BodyStructure,
    ModSeq,
    EmailId,
    ThreadId,
    GmMsgId,
    GmThrId,
    GmLabels,
    /// `BODY.PEEK[section]` (does not set `\Seen`); `""` for the whole message,
    /// `"HEADER.FIELDS (DATE SUBJECT)"` for some header fields.
    BodyPeek(&'a str),
    /// `BODY.PEEK[section]<offset.len>`: at most `len` bytes from `offset` of the section
    /// (RFC 3501 `partial`), e.g. the first 64 KiB of a message to fingerprint it without
    /// reading it whole. The server answers `BODY[section]<offset>` with fewer bytes when
    /// the section is shorter; `len` must not be 0.
    BodyPeekPartial {
        /// The section, as for [`FetchAttr::BodyPeek`].
        section: &'a str,
        /// The first byte wanted.
        offset: u32,
        /// The most bytes wanted (`nz-number`).
        len: u32,
    },
    /// `BODY[section]` (sets `\Seen`).
    Body(&'a str),
    /// `BINARY.PEEK[section]` (RFC 3516).
    BinaryPeek(&'a str),
}

/// How UID STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

/// A SASL mechanism for AUTHENTICATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslAuth<'a> {
    /// PLAIN (RFC 4616); `authzid` empty to log in as `authcid`.
    Plain {
        /// The user to act as (master-user logins), or empty.
        authzid: &'a str,
        /// The user whose password this is.
        authcid: &'a str,
        /// The password.
        password: &'a str,
    },
    /// LOGIN (two continuation steps: user name, then password).
    Login {
        /// The user name.
        username: &'a str,
        /// The password.
        password: &'a str,
    },
    /// XOAUTH2 (Google, Microsoft 365).
    XOAuth2 {
        /// The mailbox address.
        user: &'a str,
        /// An OAuth 2.0 access token.
        access_token: &'a str,
    },
    /// OAUTHBEARER (RFC 7628).
    OAuthBearer {
        /// The mailbox address.
        user: &'a str,
        /// The server's host name.
        host: &'a str,
        /// The server's port.
        port: u16,
        /// An OAuth 2.0 access token.
        access_token: &'a str,
    },
}

/// The LIST command (RFC 3501, with RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE and
/// RFC 5819 LIST-STATUS options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCommand<'a> {
    /// The reference name (usually `""`).
    pub reference: MailboxName<'a>,
    /// The pattern (`*`, `%`, `INBOX.*`).
    pub pattern: MailboxName<'a>,
    /// `(SPECIAL-USE)` selection option: only special-use mailboxes.
    pub select_special_use: bool,
    /// `RETURN (SPECIAL-USE)`.
    pub return_special_use: bool,
    /// `RETURN (SUBSCRIBED)`.
    pub return_subscribed: bool,
    /// `RETURN (STATUS (...))` when non-empty (LIST-STATUS).
    pub return_status: &'a [StatusAttr<'a>],
}

/// A command the engine sends. [`crate::CommandEncoder`] turns it into segments.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `CAPABILITY`
    Capability,
    /// `NOOP`
    Noop,
    /// `LOGOUT`
    Logout,
    /// `STARTTLS`
    StartTls,
    /// `LOGIN user password`
    Login {
        /// The user name.
        username: &'a str,
        /// The password.
        password: &'a str,
    },
    /// `AUTHENTICATE mechanism [initial-response]`
    Authenticate {
        /// The mechanism and credentials.
        auth: SaslAuth<'a>,
        /// Send the first response with the command (SASL-IR, RFC 4959) instead of
        /// waiting for a continuation request.
        sasl_ir: bool,
    },
    /// `ENABLE cap...` (RFC 5161)
    Enable(&'a [&'a str]),
    /// `ID (...)` / `ID NIL` (RFC 2971)
    Id(Option<&'a [(&'a str, Option<&'a str>)]>),
    /// `NAMESPACE`
    Namespace,
    /// `LIST ...`
    List(ListCommand<'a>),
    /// `LSUB reference pattern`
    Lsub {
        /// The reference name.
        reference: MailboxName<'a>,
        /// The pattern.
        pattern: MailboxName<'a>,
    },
    /// `STATUS mailbox (attrs)`
    Status {
        /// The mailbox.
        mailbox: MailboxName<'a>,
        /// The attributes wanted.
        attrs: &'a [StatusAttr<'a>],
    },
    /// `SELECT mailbox [(CONDSTORE)]`
    Select {
        /// The mailbox.
        mailbox: MailboxName<'a>,
        /// Ask for CONDSTORE (RFC 7162) in the same step.
        condstore: bool,
    },
    /// `EXAMINE mailbox [(CONDSTORE)]` (read-only SELECT)
    Examine {
        /// The mailbox.
        mailbox: MailboxName<'a>,
        /// Ask for CONDSTORE.
        condstore: bool,
    },
    /// `UID FETCH set (attrs) [(CHANGEDSINCE n [VANISHED])]`
    UidFetch {
        /// A sequence set of UIDs, e.g. `1:*` or `4,7:9`.
        uids: &'a str,
        /// The attributes wanted.
        attrs: &'a [FetchAttr<'a>],
        /// Only messages whose mod-sequence is above this (CONDSTORE).
        changed_since: Option<u64>,
        /// With `changed_since`, also report expunged UIDs (QRESYNC `VANISHED`).
        vanished: bool,
    },
    /// `UID SEARCH [RETURN (...)] criteria`
    UidSearch {
        /// ESEARCH return options (`ALL`, `COUNT`, `MIN`, `MAX`); empty for plain SEARCH.
        return_options: &'a [&'a str],
        /// Search criteria in IMAP syntax, e.g. `UID 1:* NOT DELETED` or `MODSEQ 5`
        /// (printable ASCII, no literals).
        criteria: &'a str,
    },
    /// `UID STORE set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] (flags)`
    UidStore {
        /// The UIDs.
        uids: &'a str,
        /// Replace, add or remove.
        mode: StoreMode,
        /// `.SILENT`: no untagged FETCH replies.
        silent: bool,
        /// The flags.
        flags: &'a [Flag<'a>],
        /// Conditional store (CONDSTORE).
        unchanged_since: Option<u64>,
    },
    /// `CREATE mailbox [(USE (attr...))]` (RFC 6154 CREATE-SPECIAL-USE)
    Create {
        /// The mailbox.
        mailbox: MailboxName<'a>,
        /// Special-use attributes to give it (needs CREATE-SPECIAL-USE).
        special_use: &'a [MailboxAttr<'a>],
    },
    /// `RENAME from to`: the folder and everything under it get the new name.
    Rename {
        /// The existing mailbox.
        from: MailboxName<'a>,
        /// Its new name.
        to: MailboxName<'a>,
    },
    /// `DELETE mailbox`
    Delete {
        /// The mailbox.
        mailbox: MailboxName<'a>,
    },
    /// `SUBSCRIBE mailbox`
    Subscribe {
        /// The mailbox.
        mailbox: MailboxName<'a>,
    },
    /// `APPEND mailbox ...`: one message, or MULTIAPPEND (RFC 3502) with several.
    Append {
        /// The target mailbox.
        mailbox: MailboxName<'a>,
        /// The messages, at least one.
        messages: &'a [AppendMessage<'a>],
    },
    /// `IDLE` (RFC 2177); end it with [`crate::CommandEncoder::done`].
    Idle,
    /// `EXPUNGE`: removes every message of the selected mailbox flagged `\Deleted`,
    /// including ones another client flagged. Prefer [`Command::UidExpunge`] when the
    /// server has UIDPLUS.
    Expunge,
    /// `UID EXPUNGE set` (RFC 4315 UIDPLUS): removes only those of the given UIDs that are
    /// flagged `\Deleted`; other `\Deleted` messages stay.
    UidExpunge(&'a str),
}
