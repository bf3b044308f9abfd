//! Borrowed IMAP values: every field is a slice of the frame it was parsed from.
//!
//! Lists (flags, capabilities, FETCH attributes, ...) are kept as the validated span of
//! the frame and iterated lazily, so parsing a response allocates nothing. The spans
//! are only ever built by the parsers in this crate after the same item parser accepted
//! every element, so iteration cannot fail.

use std::borrow::Cow;
use std::fmt;

use crate::syntax::{self, PResult};

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

/// Lazily parsed elements of a validated span; see the module documentation.
#[derive(Clone)]
pub struct Items<'a, T> {
    rest: &'a [u8],
    item: fn(&'a [u8]) -> PResult<'a, T>,
    adjacent: u8,
}

impl<'a, T> Items<'a, T> {
    pub(crate) fn new(span: &'a [u8], item: fn(&'a [u8]) -> PResult<'a, T>, adjacent: u8) -> Self {
        Items {
            rest: span,
            item,
            adjacent,
        }
    }
}

impl<'a, T> Iterator for Items<'a, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match syntax::next_list_item(&mut self.rest, self.item, self.adjacent)? {
            Ok(v) => Some(v),
            Err(_) => {
                // Unreachable for spans built by this crate's parsers (validated with the
                // same item parser); stop rather than yield garbage.
                debug_assert!(false, "a validated span failed to parse again");
                self.rest = &[];
                None
            }
        }
    }
}

impl<T> fmt::Debug for Items<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Items({:?})", String::from_utf8_lossy(self.rest))
    }
}

macro_rules! span_list {
    ($(#[$m:meta])* $name:ident, $item:ty, $parser:path, $adjacent:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $name<'a> {
            span: &'a [u8],
        }

        impl<'a> $name<'a> {
            pub(crate) fn from_validated(span: &'a [u8]) -> Self {
                $name { span }
            }

            /// Validates `span` (the list's elements without the parentheses, as they
            /// would appear on the wire) so that it can be encoded.
            pub fn parse(span: &'a [u8]) -> crate::Result<Self> {
                let mut rest = span;
                while let Some(item) = syntax::next_list_item(&mut rest, $parser, $adjacent) {
                    if let Err(at) = item {
                        return Err(crate::Error::malformed(stringify!($name), span, at));
                    }
                }
                Ok($name { span })
            }

            /// The elements, parsed on demand.
            pub fn iter(&self) -> Items<'a, $item> {
                Items::new(self.span, $parser, $adjacent)
            }

            /// The validated bytes of the list, without the parentheses.
            pub fn raw(&self) -> &'a [u8] {
                self.span
            }

            /// True when the list has no elements.
            pub fn is_empty(&self) -> bool {
                self.iter().next().is_none()
            }
        }

        impl<'a> IntoIterator for $name<'a> {
            type Item = $item;
            type IntoIter = Items<'a, $item>;
            fn into_iter(self) -> Items<'a, $item> {
                self.iter()
            }
        }

        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.iter()).finish()
            }
        }
    };
}

span_list!(
    /// A parenthesised flag list (FLAGS, PERMANENTFLAGS, FETCH FLAGS).
    FlagList, Flag<'a>, syntax::flag, b'\\'
);
span_list!(
    /// LIST mailbox attributes.
    ListAttrs, Flag<'a>, syntax::flag, b'\\'
);
span_list!(
    /// Space-separated atoms: CAPABILITY, ENABLED.
    Capabilities, &'a [u8], syntax::atom, 0
);
span_list!(
    /// X-GM-LABELS: astrings (`\Inbox`-style labels arrive as atoms with a backslash).
    GmLabels, IString<'a>, crate::response_parser::gm_label, 0
);
span_list!(
    /// SEARCH result numbers (message numbers or UIDs).
    NumberList, u32, syntax::nz_number, 0
);
span_list!(
    /// FETCH attributes (`msg-att`), see [`FetchItem`].
    FetchAttrs, FetchItem<'a>, crate::response_parser::fetch_item, 0
);
span_list!(
    /// STATUS attributes and their values.
    StatusItems, StatusItem<'a>, crate::response_parser::status_item, 0
);
span_list!(
    /// ESEARCH result items.
    EsearchItems, EsearchItem<'a>, crate::response_parser::esearch_item, 0
);
span_list!(
    /// Namespace descriptions of one class (personal, other users', shared).
    NamespaceList, NamespaceDescr<'a>, crate::response_parser::namespace_descr, b'('
);
span_list!(
    /// ID parameters: field/value pairs (RFC 2971).
    IdParams, (IString<'a>, Option<IString<'a>>), crate::response_parser::id_pair, 0
);
span_list!(
    /// LIST-EXTENDED extended data items (RFC 5258), e.g. CHILDINFO.
    ListExtended, (IString<'a>, &'a [u8]), crate::response_parser::list_extended_item, 0
);

impl<'a> ListAttrs<'a> {
    /// The attributes as [`MailboxAttr`]s.
    pub fn attrs(&self) -> impl Iterator<Item = MailboxAttr<'a>> + 'a {
        self.iter().map(|f| f.as_mailbox_attr())
    }

    /// True when `attr` is present.
    pub fn contains(&self, attr: MailboxAttr<'_>) -> bool {
        self.attrs().any(|a| a == attr)
    }
}

impl Capabilities<'_> {
    /// True when the capability `name` is present (ASCII case-insensitive).
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|c| c.eq_ignore_ascii_case(name.as_bytes()))
    }
}

impl FlagList<'_> {
    /// True when `flag` is present (keywords compare ASCII case-insensitively).
    pub fn contains(&self, flag: &Flag<'_>) -> bool {
        self.iter().any(|f| match (f, flag) {
            (Flag::Keyword(a), Flag::Keyword(b)) | (Flag::Extension(a), Flag::Extension(b)) => {
                a.eq_ignore_ascii_case(b)
            }
            (a, b) => a == *b,
        })
    }
}

impl<'a> ListExtended<'a> {
    /// The CHILDINFO selection options (`SUBSCRIBED`), RFC 5258 section 3.5.
    pub fn childinfo(&self) -> Option<impl Iterator<Item = IString<'a>> + 'a> {
        let (_, value) = self
            .iter()
            .find(|(tag, _)| tag.eq_ignore_ascii_case(b"CHILDINFO"))?;
        let (_, span) = syntax::paren_list(value, syntax::astring, 0).ok()?;
        Some(Items::new(span, syntax::astring, 0))
    }
}

/// A `uid-set` / `sequence-set` without `*` (APPENDUID, COPYUID, VANISHED, ESEARCH ALL).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UidSet<'a> {
    span: &'a [u8],
}

impl<'a> UidSet<'a> {
    pub(crate) fn from_validated(span: &'a [u8]) -> Self {
        UidSet { span }
    }

    /// Inclusive ranges `(low, high)` in the order sent.
    pub fn ranges(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        let mut rest = self.span;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            match syntax::uid_range(rest) {
                Ok((r, v)) => {
                    rest = r;
                    Some(v)
                }
                Err(_) => {
                    debug_assert!(false, "a validated uid-set failed to parse again");
                    rest = &[];
                    None
                }
            }
        })
    }

    /// Every number in the set, in the order sent (COPYUID pairs source and destination
    /// UIDs by this order).
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.ranges().flat_map(|(a, b)| a..=b)
    }

    /// How many numbers the set holds.
    pub fn count(&self) -> u64 {
        self.ranges().map(|(a, b)| u64::from(b - a) + 1).sum()
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

    /// The name as Unicode: UTF-8 when `utf8_enabled` (UTF8=ACCEPT is on), modified
    /// UTF-7 otherwise (RFC 3501 section 5.1.3).
    ///
    /// # Quirks
    /// Without UTF8=ACCEPT, a name that is not valid modified UTF-7 but is valid UTF-8 is
    /// returned as UTF-8 (servers that send raw 8-bit names). Otherwise it is an error.
    pub fn decode(&self, utf8_enabled: bool) -> crate::Result<String> {
        let wire = self.wire();
        if utf8_enabled {
            return String::from_utf8(wire.into_owned()).map_err(|e| crate::Error::Malformed {
                what: "UTF-8 mailbox name",
                offset: e.utf8_error().valid_up_to(),
                excerpt: crate::Excerpt::new(e.as_bytes()),
            });
        }
        match crate::mutf7::decode(&wire) {
            Ok(s) => Ok(s),
            Err(e) => match std::str::from_utf8(&wire) {
                Ok(s) if !wire.is_ascii() => Ok(s.to_owned()),
                _ => Err(e),
            },
        }
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

impl StatusResponse<'_> {
    /// A back-off the server asks for: Office 365 says "Request is throttled. Suggested
    /// Backoff Time: N milliseconds" in the text of a NO/BAD/OK.
    pub fn backoff_hint(&self) -> Option<std::time::Duration> {
        const NEEDLE: &[u8] = b"suggested backoff time:";
        let t = self.text;
        let at = t
            .windows(NEEDLE.len())
            .position(|w| w.eq_ignore_ascii_case(NEEDLE))?;
        let after = syntax::sp0(&t[at + NEEDLE.len()..]);
        let (rest, ms) = syntax::number64(after).ok()?;
        let unit = syntax::sp0(rest);
        let seconds = unit.len() >= 3 && unit[..3].eq_ignore_ascii_case(b"sec");
        Some(if seconds {
            std::time::Duration::from_secs(ms)
        } else {
            std::time::Duration::from_millis(ms)
        })
    }

    /// True when the server is throttling this connection (`[THROTTLED]` or a back-off
    /// hint in the text).
    pub fn is_throttled(&self) -> bool {
        matches!(self.code, Some(Code::Throttled)) || self.backoff_hint().is_some()
    }
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

impl StatusData<'_> {
    /// The value of `attr`, if the server sent it with a number.
    pub fn get(&self, attr: StatusAttr<'_>) -> Option<u64> {
        self.items
            .iter()
            .find(|i| i.attr == attr)
            .and_then(|i| i.value)
    }
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

impl<'a> Fetch<'a> {
    /// The UID attribute, if present.
    pub fn uid(&self) -> Option<u32> {
        self.attrs.iter().find_map(|a| match a {
            FetchItem::Uid(u) => Some(u),
            _ => None,
        })
    }

    /// The FLAGS attribute, if present.
    pub fn flags(&self) -> Option<FlagList<'a>> {
        self.attrs.iter().find_map(|a| match a {
            FetchItem::Flags(f) => Some(f),
            _ => None,
        })
    }
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

impl<'a> Esearch<'a> {
    fn number(&self, name: &[u8]) -> Option<u64> {
        let item = self
            .items
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))?;
        syntax::number64(item.value).ok().map(|(_, v)| v)
    }

    /// `MIN`
    pub fn min(&self) -> Option<u32> {
        self.number(b"MIN").and_then(|v| u32::try_from(v).ok())
    }
    /// `MAX`
    pub fn max(&self) -> Option<u32> {
        self.number(b"MAX").and_then(|v| u32::try_from(v).ok())
    }
    /// `COUNT`
    pub fn count(&self) -> Option<u32> {
        self.number(b"COUNT").and_then(|v| u32::try_from(v).ok())
    }
    /// `MODSEQ`
    pub fn modseq(&self) -> Option<u64> {
        self.number(b"MODSEQ")
    }
    /// `ALL`
    pub fn all(&self) -> Option<UidSet<'a>> {
        let item = self
            .items
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(b"ALL"))?;
        let (rest, span) = syntax::uid_set_span(item.value).ok()?;
        rest.is_empty().then(|| UidSet::from_validated(span))
    }
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
