//! Borrowed IMAP values: every field is a slice of the frame it was parsed from.
//!
//! Lists (flags, capabilities, FETCH attributes, ...) are kept as the validated span of
//! the frame and iterated lazily, so parsing a response allocates nothing. The spans
//! are only ever built by the parsers in this crate after the same item parser accepted
//! every element, so iteration cannot fail. The iteration itself, and every other reading
//! of a span, is in `lazy_values.rs`: this file is plain data, below the grammar and the
//! error type.

use std::borrow::Cow;
use std::fmt;

/// An IMAP string as it appeared on the wire.
#[derive(Clone, Copy)]
pub enum IString<'a> {
    /// An unquoted atom (`astring` form).
    Atom(&'a [u8]),
    /// The bytes between the quotes, backslash escapes still in place.
    Quoted(&'a [u8]),
    /// A literal's body, exactly as sent.
    Literal(&'a [u8]),
}

impl<'a> IString<'a> {
    /// The value with quoting removed; borrows unless a quoted string holds escapes.
    pub fn to_bytes(&self) -> Cow<'a, [u8]> {
        match *self {
            IString::Atom(b) | IString::Literal(b) => Cow::Borrowed(b),
            IString::Quoted(b) if !b.contains(&b'\\') => Cow::Borrowed(b),
            IString::Quoted(b) => {
                let mut out = Vec::with_capacity(b.len());
                let mut escaped = false;
                for &c in b {
                    if escaped || c != b'\\' {
                        out.push(c);
                        escaped = false;
                    } else {
                        escaped = true;
                    }
                }
                Cow::Owned(out)
            }
        }
    }

    /// The bytes as they appeared inside the quotes or literal (escapes kept).
    pub fn raw(&self) -> &'a [u8] {
        match *self {
            IString::Atom(b) | IString::Quoted(b) | IString::Literal(b) => b,
        }
    }

    /// Case-insensitive ASCII comparison of the unquoted value with `other`.
    pub fn eq_ignore_ascii_case(&self, other: &[u8]) -> bool {
        self.to_bytes().eq_ignore_ascii_case(other)
    }
}

impl PartialEq for IString<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}
impl Eq for IString<'_> {}

impl fmt::Debug for IString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// A message flag, a permanent flag, or a LIST mailbox attribute (same syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag<'a> {
    /// `\Seen`
    Seen,
    /// `\Answered`
    Answered,
    /// `\Flagged`
    Flagged,
    /// `\Deleted`
    Deleted,
    /// `\Draft`
    Draft,
    /// `\Recent` (read-only; never sent in APPEND or STORE)
    Recent,
    /// `\*` in PERMANENTFLAGS: the client may create keywords.
    MayCreate,
    /// A keyword such as `$Forwarded` or `NonJunk`, exactly as sent.
    Keyword(&'a [u8]),
    /// Any other `\Name` (the name without the backslash), e.g. a LIST attribute.
    Extension(&'a [u8]),
}

impl<'a> Flag<'a> {
    pub(crate) fn system_or_extension(name: &'a [u8]) -> Self {
        // Dispatch on the first letter: this runs for every flag of every message.
        let candidate = match name.first().map(u8::to_ascii_lowercase) {
            Some(b's') => (&b"Seen"[..], Flag::Seen),
            Some(b'a') => (&b"Answered"[..], Flag::Answered),
            Some(b'f') => (&b"Flagged"[..], Flag::Flagged),
            Some(b'd') if name.len() == 7 => (&b"Deleted"[..], Flag::Deleted),
            Some(b'd') => (&b"Draft"[..], Flag::Draft),
            Some(b'r') => (&b"Recent"[..], Flag::Recent),
            _ => return Flag::Extension(name),
        };
        if name.eq_ignore_ascii_case(candidate.0) {
            candidate.1
        } else {
            Flag::Extension(name)
        }
    }

    /// The flag as written on the wire (`\Seen`, `$Forwarded`).
    pub fn to_wire(&self) -> Cow<'a, [u8]> {
        match *self {
            Flag::Seen => Cow::Borrowed(b"\\Seen"),
            Flag::Answered => Cow::Borrowed(b"\\Answered"),
            Flag::Flagged => Cow::Borrowed(b"\\Flagged"),
            Flag::Deleted => Cow::Borrowed(b"\\Deleted"),
            Flag::Draft => Cow::Borrowed(b"\\Draft"),
            Flag::Recent => Cow::Borrowed(b"\\Recent"),
            Flag::MayCreate => Cow::Borrowed(b"\\*"),
            Flag::Keyword(k) => Cow::Borrowed(k),
            Flag::Extension(e) => {
                let mut v = Vec::with_capacity(e.len() + 1);
                v.push(b'\\');
                v.extend_from_slice(e);
                Cow::Owned(v)
            }
        }
    }

    /// As a LIST mailbox attribute (RFC 3501, RFC 5258, RFC 6154).
    pub fn as_mailbox_attr(&self) -> MailboxAttr<'a> {
        MailboxAttr::from_flag(*self)
    }
}

/// A LIST/LSUB mailbox attribute, including SPECIAL-USE (RFC 6154).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum MailboxAttr<'a> {
    NoInferiors,
    NoSelect,
    NonExistent,
    Marked,
    Unmarked,
    Subscribed,
    Remote,
    HasChildren,
    HasNoChildren,
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
    Important,
    /// Any other attribute, as sent (for `\Name` without the backslash).
    Other(Flag<'a>),
}

impl<'a> MailboxAttr<'a> {
    fn from_flag(f: Flag<'a>) -> Self {
        let Flag::Extension(name) = f else {
            return match f {
                Flag::Flagged => MailboxAttr::Flagged,
                other => MailboxAttr::Other(other),
            };
        };
        const KNOWN: [(&[u8], MailboxAttr<'static>); 16] = [
            (b"Noinferiors", MailboxAttr::NoInferiors),
            (b"Noselect", MailboxAttr::NoSelect),
            (b"NonExistent", MailboxAttr::NonExistent),
            (b"Marked", MailboxAttr::Marked),
            (b"Unmarked", MailboxAttr::Unmarked),
            (b"Subscribed", MailboxAttr::Subscribed),
            (b"Remote", MailboxAttr::Remote),
            (b"HasChildren", MailboxAttr::HasChildren),
            (b"HasNoChildren", MailboxAttr::HasNoChildren),
            (b"All", MailboxAttr::All),
            (b"Archive", MailboxAttr::Archive),
            (b"Drafts", MailboxAttr::Drafts),
            (b"Junk", MailboxAttr::Junk),
            (b"Sent", MailboxAttr::Sent),
            (b"Trash", MailboxAttr::Trash),
            (b"Important", MailboxAttr::Important),
        ];
        for (n, a) in KNOWN {
            if name.eq_ignore_ascii_case(n) {
                return a;
            }
        }
        MailboxAttr::Other(f)
    }

    /// True for the SPECIAL-USE attributes (RFC 6154 and RFC 8457's `\Important`).
    pub fn is_special_use(&self) -> bool {
        matches!(
            self,
            MailboxAttr::All
                | MailboxAttr::Archive
                | MailboxAttr::Drafts
                | MailboxAttr::Flagged
                | MailboxAttr::Junk
                | MailboxAttr::Sent
                | MailboxAttr::Trash
                | MailboxAttr::Important
        )
    }
}

macro_rules! span_list {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $name<'a> {
            pub(crate) span: &'a [u8],
        }

        impl<'a> $name<'a> {
            pub(crate) fn from_validated(span: &'a [u8]) -> Self {
                $name { span }
            }

            /// The validated bytes of the list, without the parentheses.
            pub fn raw(&self) -> &'a [u8] {
                self.span
            }
        }
    };
}

span_list!(
    /// A parenthesised flag list (FLAGS, PERMANENTFLAGS, FETCH FLAGS).
    FlagList
);
span_list!(
    /// LIST mailbox attributes.
    ListAttrs
);
span_list!(
    /// Space-separated atoms: CAPABILITY, ENABLED.
    Capabilities
);
span_list!(
    /// X-GM-LABELS: astrings (`\Inbox`-style labels arrive as atoms with a backslash).
    GmLabels
);
span_list!(
    /// SEARCH result numbers (message numbers or UIDs).
    NumberList
);
span_list!(
    /// FETCH attributes (`msg-att`), see [`FetchItem`].
    FetchAttrs
);
span_list!(
    /// STATUS attributes and their values.
    StatusItems
);
span_list!(
    /// ESEARCH result items.
    EsearchItems
);
span_list!(
    /// Namespace descriptions of one class (personal, other users', shared).
    NamespaceList
);
span_list!(
    /// ID parameters: field/value pairs (RFC 2971).
    IdParams
);
span_list!(
    /// LIST-EXTENDED extended data items (RFC 5258), e.g. CHILDINFO.
    ListExtended
);

/// A `uid-set` / `sequence-set` without `*` (APPENDUID, COPYUID, VANISHED, ESEARCH ALL).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UidSet<'a> {
    pub(crate) span: &'a [u8],
}

impl<'a> UidSet<'a> {
    pub(crate) fn from_validated(span: &'a [u8]) -> Self {
        UidSet { span }
    }

    /// The set as sent.
    pub fn raw(&self) -> &'a [u8] {
        self.span
    }
}

impl fmt::Debug for UidSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UidSet({})", String::from_utf8_lossy(self.span))
    }
}

/// A mailbox name as sent by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mailbox<'a>(pub IString<'a>);

impl<'a> Mailbox<'a> {
    /// The name's bytes as the server knows it (quoting removed, mUTF-7 still encoded).
    /// Use these to address the mailbox on the same server again.
    pub fn wire(&self) -> Cow<'a, [u8]> {
        self.0.to_bytes()
    }

    /// True for INBOX in any case (RFC 3501 section 5.1).
    pub fn is_inbox(&self) -> bool {
        self.0.eq_ignore_ascii_case(b"INBOX")
    }
}

/// The kind of a status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// `OK`
    Ok,
    /// `NO`: the server refused.
    No,
    /// `BAD`: the server did not understand.
    Bad,
    /// `BYE`: the server is closing the connection.
    Bye,
    /// `PREAUTH` (greeting only): already authenticated.
    PreAuth,
}

impl fmt::Display for StatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StatusKind {
    /// The keyword as written on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            StatusKind::Ok => "OK",
            StatusKind::No => "NO",
            StatusKind::Bad => "BAD",
            StatusKind::Bye => "BYE",
            StatusKind::PreAuth => "PREAUTH",
        }
    }
}

/// A response code (`resp-text-code`) in square brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Code<'a> {
    /// `ALERT`: the text must be shown to the user.
    Alert,
    /// `CAPABILITY ...`
    Capability(Capabilities<'a>),
    /// `PERMANENTFLAGS (...)`
    PermanentFlags(FlagList<'a>),
    /// `READ-ONLY`
    ReadOnly,
    /// `READ-WRITE`
    ReadWrite,
    /// `TRYCREATE`: create the target mailbox and retry.
    TryCreate,
    /// `UIDNEXT n`
    UidNext(u32),
    /// `UIDVALIDITY n`
    UidValidity(u32),
    /// `UNSEEN n`
    Unseen(u32),
    /// `HIGHESTMODSEQ n` (RFC 7162)
    HighestModSeq(u64),
    /// `NOMODSEQ` (RFC 7162)
    NoModSeq,
    /// `APPENDUID uidvalidity uid-set` (RFC 4315; a set after MULTIAPPEND)
    AppendUid {
        /// UIDVALIDITY of the target mailbox.
        uid_validity: u32,
        /// The UIDs assigned, in the order the messages were appended.
        uids: UidSet<'a>,
    },
    /// `COPYUID uidvalidity source-set dest-set` (RFC 4315)
    CopyUid {
        /// UIDVALIDITY of the destination mailbox.
        uid_validity: u32,
        /// Source UIDs.
        source: UidSet<'a>,
        /// Destination UIDs, paired with `source` by order.
        dest: UidSet<'a>,
    },
    /// `UIDNOTSTICKY` (RFC 4315)
    UidNotSticky,
    /// `CLOSED` (RFC 7162)
    Closed,
    /// `TOOBIG` (RFC 4469 / RFC 7889): the message is over the server's limit.
    TooBig,
    /// `OVERQUOTA` (RFC 5530)
    OverQuota,
    /// `LIMIT` (RFC 5530)
    Limit,
    /// `UNAVAILABLE` (RFC 5530): try again later.
    Unavailable,
    /// `THROTTLED` (Office 365 and others): slow down.
    Throttled,
    /// Any other code, kept verbatim: the name and the raw argument bytes.
    Other {
        /// The code's name.
        name: &'a [u8],
        /// The raw bytes after the name's space, up to the closing bracket.
        arg: Option<&'a [u8]>,
    },
}

/// A status response: tagged completion, or untagged OK/NO/BAD/BYE/PREAUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusResponse<'a> {
    /// The command's tag; `None` for untagged (`*`) responses.
    pub tag: Option<&'a [u8]>,
    /// OK / NO / BAD / BYE / PREAUTH.
    pub kind: StatusKind,
    /// The response code, if any.
    pub code: Option<Code<'a>>,
    /// The human-readable text (may be empty, see the quirks on the parser).
    pub text: &'a [u8],
}

/// A continuation request (`+ ...`): send the literal, or the next SASL step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continuation<'a> {
    /// Text or base64 data after `+ ` (may be empty).
    pub text: &'a [u8],
}

/// One LIST or LSUB response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListData<'a> {
    /// Mailbox attributes, including SPECIAL-USE ones.
    pub attributes: ListAttrs<'a>,
    /// The hierarchy delimiter, `None` for a flat namespace (NIL).
    pub delimiter: Option<u8>,
    /// The mailbox name as sent.
    pub mailbox: Mailbox<'a>,
    /// LIST-EXTENDED data, e.g. `("CHILDINFO" ("SUBSCRIBED"))`.
    pub extended: ListExtended<'a>,
}

/// A STATUS attribute name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum StatusAttr<'a> {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    HighestModSeq,
    Size,
    AppendLimit,
    Deleted,
    /// Any other attribute, as sent.
    Other(&'a [u8]),
}

/// One STATUS attribute and its value; `None` for `NIL` (APPENDLIMIT NIL: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusItem<'a> {
    /// Which attribute.
    pub attr: StatusAttr<'a>,
    /// Its value.
    pub value: Option<u64>,
}

/// A STATUS response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusData<'a> {
    /// The mailbox the values are for.
    pub mailbox: Mailbox<'a>,
    /// The values.
    pub items: StatusItems<'a>,
}

/// A `BODY[section]<origin>` or `BINARY[section]` specifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'a> {
    /// The bytes between the brackets, e.g. `` (empty), `HEADER`, `1.2.MIME`.
    pub spec: &'a [u8],
    /// The `<origin>` of a partial fetch.
    pub origin: Option<u32>,
}

/// One FETCH attribute (`msg-att`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchItem<'a> {
    /// `UID n`
    Uid(u32),
    /// `FLAGS (...)`, keywords included.
    Flags(FlagList<'a>),
    /// `INTERNALDATE "..."`, the date-time as sent (see [`crate::InternalDate`]).
    InternalDate(&'a [u8]),
    /// `RFC822.SIZE n`
    Rfc822Size(u64),
    /// `BODY[section]<origin> nstring`
    Body {
        /// Which part.
        section: Section<'a>,
        /// The data, `None` for NIL.
        data: Option<IString<'a>>,
    },
    /// `BINARY[section]<origin> nstring / literal8` (RFC 3516)
    Binary {
        /// Which part.
        section: Section<'a>,
        /// The data, `None` for NIL.
        data: Option<IString<'a>>,
    },
    /// `BINARY.SIZE[section] n`
    BinarySize {
        /// Which part.
        section: &'a [u8],
        /// Its decoded size.
        size: u64,
    },
    /// `RFC822 nstring`, `RFC822.HEADER nstring`, `RFC822.TEXT nstring`
    Rfc822 {
        /// `RFC822`, `RFC822.HEADER` or `RFC822.TEXT` as sent.
        name: &'a [u8],
        /// The data, `None` for NIL.
        data: Option<IString<'a>>,
    },
    /// `MODSEQ (n)` (RFC 7162)
    ModSeq(u64),
    /// `EMAILID (id)` (RFC 8474)
    EmailId(&'a [u8]),
    /// `THREADID (id)` or `THREADID NIL` (RFC 8474)
    ThreadId(Option<&'a [u8]>),
    /// `X-GM-MSGID n` (Gmail)
    GmMsgId(u64),
    /// `X-GM-THRID n` (Gmail)
    GmThrId(u64),
    /// `X-GM-LABELS (...)` (Gmail)
    GmLabels(GmLabels<'a>),
    /// `ENVELOPE (...)`, kept raw.
    Envelope(&'a [u8]),
    /// `BODYSTRUCTURE (...)` or `BODY (...)`, kept raw.
    BodyStructure(&'a [u8]),
    /// Any other attribute: its name and its raw value.
    Other {
        /// The attribute name as sent.
        name: &'a [u8],
        /// The raw value.
        value: &'a [u8],
    },
}

/// A FETCH response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch<'a> {
    /// The message sequence number.
    pub seq: u32,
    /// The attributes, parsed on demand.
    pub attrs: FetchAttrs<'a>,
}

/// A SEARCH response (RFC 3501; with `(MODSEQ n)` from RFC 7162).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Search<'a> {
    /// The matching numbers.
    pub nums: NumberList<'a>,
    /// The highest mod-sequence of the matches, when CONDSTORE asked for it.
    pub modseq: Option<u64>,
}

/// One ESEARCH result item (`search-return-data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsearchItem<'a> {
    /// `MIN`, `MAX`, `ALL`, `COUNT`, `MODSEQ` or an extension's name.
    pub name: &'a [u8],
    /// The raw value.
    pub value: &'a [u8],
}

/// An ESEARCH response (RFC 4731).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Esearch<'a> {
    /// The tag of the command this answers, if the server correlated it.
    pub tag: Option<IString<'a>>,
    /// True when the numbers are UIDs.
    pub uid: bool,
    /// The result items.
    pub items: EsearchItems<'a>,
}

/// One namespace description (`"prefix" "delimiter"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceDescr<'a> {
    /// The prefix, e.g. `""` or `"INBOX."`.
    pub prefix: IString<'a>,
    /// The hierarchy delimiter, `None` for NIL.
    pub delimiter: Option<u8>,
}

/// A NAMESPACE response (RFC 2342); each class is `None` when the server sent NIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace<'a> {
    /// The user's own namespaces.
    pub personal: Option<NamespaceList<'a>>,
    /// Other users' namespaces.
    pub other_users: Option<NamespaceList<'a>>,
    /// Shared namespaces.
    pub shared: Option<NamespaceList<'a>>,
}

/// Untagged server data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Data<'a> {
    /// `* CAPABILITY ...`
    Capability(Capabilities<'a>),
    /// `* ENABLED ...` (RFC 5161)
    Enabled(Capabilities<'a>),
    /// `* LIST ...`
    List(ListData<'a>),
    /// `* LSUB ...`
    Lsub(ListData<'a>),
    /// `* STATUS ...`
    Status(StatusData<'a>),
    /// `* FLAGS (...)`
    Flags(FlagList<'a>),
    /// `* n EXISTS`
    Exists(u32),
    /// `* n RECENT`
    Recent(u32),
    /// `* n EXPUNGE`
    Expunge(u32),
    /// `* VANISHED [(EARLIER)] uid-set` (RFC 7162)
    Vanished {
        /// True for `(EARLIER)`: a reply to a QRESYNC fetch, not a new expunge.
        earlier: bool,
        /// The UIDs that are gone.
        uids: UidSet<'a>,
    },
    /// `* n FETCH (...)`
    Fetch(Fetch<'a>),
    /// `* SEARCH ...`
    Search(Search<'a>),
    /// `* ESEARCH ...` (RFC 4731)
    Esearch(Esearch<'a>),
    /// `* NAMESPACE ...` (RFC 2342)
    Namespace(Namespace<'a>),
    /// `* ID (...)` or `* ID NIL` (`None`) (RFC 2971)
    Id(Option<IdParams<'a>>),
    /// Any other untagged data, kept raw: the keyword (or number and keyword) and the rest
    /// of the line.
    Other {
        /// `n KEYWORD` or `KEYWORD` as sent.
        name: &'a [u8],
        /// The raw bytes after the name, without the line end.
        rest: &'a [u8],
    },
}

/// One server response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response<'a> {
    /// Tagged or untagged OK/NO/BAD/BYE/PREAUTH.
    Status(StatusResponse<'a>),
    /// Untagged data.
    Data(Data<'a>),
    /// `+ ...`
    Continuation(Continuation<'a>),
}

/// The attribute whose value is a literal delivered as a stream of chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamedKind<'a> {
    /// `BODY[section]<origin>`
    Body(Section<'a>),
    /// `BINARY[section]<origin>`
    Binary(Section<'a>),
    /// `RFC822`, `RFC822.HEADER` or `RFC822.TEXT` (as sent).
    Rfc822(&'a [u8]),
}

/// The attribute announced at the end of a frame head, with its literal's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamedItem<'a> {
    /// Which attribute the chunks belong to.
    pub kind: StreamedKind<'a>,
    /// The literal's length in bytes: the sum of the chunks that follow.
    pub len: u64,
}

/// The start of a FETCH response whose big literal is streamed (see [`crate::Frame::Head`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchHead<'a> {
    /// The message sequence number.
    pub seq: u32,
    /// The attributes before the streamed one.
    pub attrs: FetchAttrs<'a>,
    /// The streamed attribute.
    pub streamed: StreamedItem<'a>,
}

/// The rest of a FETCH response after a streamed literal (see [`crate::Frame::Tail`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchTail<'a> {
    /// The attributes after the streamed one.
    pub attrs: FetchAttrs<'a>,
    /// Another streamed attribute that ends this tail, if any.
    pub streamed: Option<StreamedItem<'a>>,
}
