//! Messages as UID FETCH delivers them: attributes plus bodies that are slices of the
//! received frames (`Bytes`), or chunk streams for bodies over the stream threshold.

use bytes::Bytes;

use crate::internal_date::InternalDate;
use crate::types::{FetchAttrs, FetchItem, Flag, FlagList, IString, Section};

/// A message's flags: the validated bytes of its FLAGS list, shared with the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFlags(Bytes);

impl MessageFlags {
    /// The flags, parsed on demand.
    pub fn list(&self) -> FlagList<'_> {
        FlagList::from_validated(&self.0)
    }

    /// The flags to give APPEND or STORE: all but `\Recent`, which only servers set.
    pub fn storable(&self) -> Vec<Flag<'_>> {
        self.list()
            .iter()
            .filter(|f| !matches!(f, Flag::Recent | Flag::MayCreate))
            .collect()
    }

    /// The list as sent, without parentheses.
    pub fn raw(&self) -> &[u8] {
        &self.0
    }
}

/// The non-body attributes of one FETCH response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageMeta {
    /// The message sequence number.
    pub seq: u32,
    /// `UID`
    pub uid: Option<u32>,
    /// `FLAGS`
    pub flags: Option<MessageFlags>,
    /// `INTERNALDATE`
    pub internal_date: Option<InternalDate>,
    /// `RFC822.SIZE`
    pub size: Option<u64>,
    /// `MODSEQ`
    pub modseq: Option<u64>,
    /// Gmail's `X-GM-MSGID`: one id per message in every folder it shows in.
    pub gm_msgid: Option<u64>,
    /// Gmail's `X-GM-LABELS`, decoded (`\Inbox`, `\Starred`, user labels).
    pub gm_labels: Option<Vec<String>>,
}

/// One body item (`BODY[section]<origin>`, `BINARY[...]`, `RFC822`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPart {
    /// The section as sent: empty for the whole message, `HEADER`, `1.2`, or for RFC822
    /// items their name (`RFC822`, `RFC822.HEADER`).
    pub section: String,
    /// The partial-fetch origin.
    pub origin: Option<u32>,
    /// The bytes; `None` for NIL.
    pub data: Option<Bytes>,
}

impl BodyPart {
    /// True for the whole message: `BODY[]`, `BINARY[]` or `RFC822`, not partial.
    pub fn is_whole_message(&self) -> bool {
        self.origin.is_none()
            && (self.section.is_empty() || self.section.eq_ignore_ascii_case("RFC822"))
    }
}

/// A message whose attributes and body arrived in one frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchedMessage {
    /// The attributes.
    pub meta: MessageMeta,
    /// Body items other than streamed ones.
    pub parts: Vec<BodyPart>,
}

impl FetchedMessage {
    /// The whole message's bytes (`BODY[]`), when fetched and not streamed.
    pub fn body(&self) -> Option<&Bytes> {
        self.parts
            .iter()
            .find(|p| p.is_whole_message())
            .and_then(|p| p.data.as_ref())
    }

    /// The bytes of `BODY[section]<origin>` (section compared ignoring ASCII case), e.g.
    /// `section("", Some(0))` for the answer to `BODY.PEEK[]<0.N>`; `None` when the item
    /// is absent or NIL.
    pub fn section(&self, section: &str, origin: Option<u32>) -> Option<&Bytes> {
        self.parts
            .iter()
            .find(|p| p.origin == origin && p.section.eq_ignore_ascii_case(section))
            .and_then(|p| p.data.as_ref())
    }

    /// The first `BODY[HEADER.FIELDS (...)]` item, whatever field list the server echoed:
    /// RFC 3501 has it echo the list, but servers differ in the case and quoting of the
    /// names, so matching the list we sent byte for byte would miss some.
    pub fn header_fields(&self) -> Option<&Bytes> {
        self.parts
            .iter()
            .find(|p| {
                let s = p.section.as_bytes();
                p.origin.is_none()
                    && s.len() > 14
                    && s[..14].eq_ignore_ascii_case(b"HEADER.FIELDS ")
            })
            .and_then(|p| p.data.as_ref())
    }
}

/// One step of a UID FETCH's output, see [`crate::client::FetchStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// A message that arrived whole.
    Message(FetchedMessage),
    /// A body over the stream threshold begins: `meta` holds the attributes the server
    /// sent before it (servers may send more after it, see `StreamEnd`).
    StreamStart {
        /// Attributes so far.
        meta: MessageMeta,
        /// The streamed item (as [`BodyPart::section`]).
        section: String,
        /// Its partial-fetch origin (as [`BodyPart::origin`]): `Some(0)` for the answer
        /// to `BODY.PEEK[]<0.N>`.
        origin: Option<u32>,
        /// Its length in bytes: the sum of the chunks that follow.
        len: u64,
    },
    /// The next piece of the streamed body, byte-exact.
    Chunk {
        /// The bytes (a slice of the read buffer, no copy).
        bytes: Bytes,
        /// Bytes still to come for this item.
        remaining: u64,
    },
    /// The streamed message is complete: all its attributes, and any small items.
    StreamEnd(FetchedMessage),
}

/// An untagged FETCH that reports flags (during STORE, or unsolicited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUpdate {
    /// Sequence number.
    pub seq: u32,
    /// UID when sent.
    pub uid: Option<u32>,
    /// The flags now.
    pub flags: Option<MessageFlags>,
    /// The mod-sequence now.
    pub modseq: Option<u64>,
}

fn section_name(section: &Section<'_>) -> String {
    String::from_utf8_lossy(section.spec).into_owned()
}

pub(crate) fn body_bytes(frame: &Bytes, s: &IString<'_>) -> Bytes {
    match s {
        // The parser's slices point into `frame`, so they can be shared without a copy.
        IString::Literal(b) => frame.slice_ref(b),
        other => Bytes::from(other.to_bytes().into_owned()),
    }
}

impl MessageMeta {
    /// Takes the attributes of `attrs` (parsed from `frame`): plain ones into `self`,
    /// body items into `parts`.
    pub(crate) fn absorb(
        &mut self,
        attrs: FetchAttrs<'_>,
        frame: &Bytes,
        parts: &mut Vec<BodyPart>,
    ) -> crate::Result<()> {
        for item in attrs.iter() {
            match item {
                FetchItem::Uid(u) => self.uid = Some(u),
                FetchItem::Flags(f) => self.flags = Some(MessageFlags(frame.slice_ref(f.raw()))),
                FetchItem::InternalDate(raw) => {
                    self.internal_date = Some(InternalDate::parse(raw)?)
                }
                FetchItem::Rfc822Size(n) => self.size = Some(n),
                FetchItem::ModSeq(m) => self.modseq = Some(m),
                FetchItem::GmMsgId(id) => self.gm_msgid = Some(id),
                FetchItem::GmLabels(labels) => {
                    self.gm_labels = Some(
                        labels
                            .iter()
                            .map(|l| String::from_utf8_lossy(&l.to_bytes()).into_owned())
                            .collect(),
                    )
                }
                FetchItem::Body { section, data } | FetchItem::Binary { section, data } => parts
                    .push(BodyPart {
                        section: section_name(&section),
                        origin: section.origin,
                        data: data.map(|d| body_bytes(frame, &d)),
                    }),
                FetchItem::Rfc822 { name, data } => parts.push(BodyPart {
                    section: String::from_utf8_lossy(name).into_owned(),
                    origin: None,
                    data: data.map(|d| body_bytes(frame, &d)),
                }),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The section name and partial origin of a streamed item.
pub(crate) fn streamed_section(kind: &crate::types::StreamedKind<'_>) -> (String, Option<u32>) {
    match kind {
        crate::types::StreamedKind::Body(s) | crate::types::StreamedKind::Binary(s) => {
            (section_name(s), s.origin)
        }
        crate::types::StreamedKind::Rfc822(name) => {
            (String::from_utf8_lossy(name).into_owned(), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Data, Response, parse_response};

    #[test]
    fn body_is_a_slice_of_the_frame() {
        let frame = Bytes::from_static(
            b"* 3 FETCH (UID 17 FLAGS (\\Seen $Forwarded \\Recent) INTERNALDATE \"01-Feb-2024 10:00:00 +0100\" RFC822.SIZE 5 BODY[] {5}\r\nHello)\r\n",
        );
        let Ok(Response::Data(Data::Fetch(f))) = parse_response(&frame) else {
            panic!("not FETCH")
        };
        let mut meta = MessageMeta {
            seq: f.seq,
            ..MessageMeta::default()
        };
        let mut parts = Vec::new();
        meta.absorb(f.attrs, &frame, &mut parts)
            .expect("valid attributes");
        let msg = FetchedMessage { meta, parts };
        assert_eq!(msg.meta.uid, Some(17));
        assert_eq!(msg.meta.size, Some(5));
        let body = msg.body().expect("body");
        assert_eq!(&body[..], b"Hello");
        // Zero-copy: the body points into the frame's allocation.
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        assert!(frame_range.contains(&(body.as_ptr() as usize)));
        let flags = msg.meta.flags.as_ref().expect("flags");
        assert_eq!(
            flags.storable(),
            vec![Flag::Seen, Flag::Keyword(b"$Forwarded")]
        );
        assert_eq!(
            msg.meta.internal_date.map(|d| d.to_string()).as_deref(),
            Some("01-Feb-2024 10:00:00 +0100")
        );
    }

    #[test]
    fn bad_internal_date_is_a_peer_error() {
        let frame = Bytes::from_static(
            b"* 1 FETCH (UID 1 INTERNALDATE \"31-Foo-2024 10:00:00 +0100\")\r\n",
        );
        let Ok(Response::Data(Data::Fetch(f))) = parse_response(&frame) else {
            panic!("not FETCH")
        };
        let err = MessageMeta::default()
            .absorb(f.attrs, &frame, &mut Vec::new())
            .unwrap_err();
        assert!(err.is_peer_fault(), "{err}");
    }
}
