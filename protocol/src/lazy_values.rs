//! What the borrowed values of `types.rs` read from their validated spans on demand: the
//! elements of a list, a UID set's ranges, ESEARCH numbers, a back-off hint in a status
//! text. Kept apart from the types so that the types sit below the grammar that builds
//! them; nothing here can fail (the spans were validated by the same item parsers), so
//! nothing here needs the error type either, and the owned values the error holds
//! (`client::ResponseCode`) may be built from these.

use std::fmt;

use crate::response_parser::grammar;
use crate::syntax::{self, PResult};
use crate::types::*;

/// Lazily parsed elements of a validated span; see the documentation of `types.rs`.
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

macro_rules! list_items {
    ($name:ident, $item:ty, $parser:path, $adjacent:expr) => {
        impl<'a> $name<'a> {
            /// Checks every element of `span` with the item parser; the offending input on
            /// failure (the public `parse`, in `response_parser.rs`, names it in an error).
            pub(crate) fn validate(span: &'a [u8]) -> Result<Self, &'a [u8]> {
                let mut rest = span;
                while let Some(item) = syntax::next_list_item(&mut rest, $parser, $adjacent) {
                    item?;
                }
                Ok($name::from_validated(span))
            }

            /// The elements, parsed on demand.
            pub fn iter(&self) -> Items<'a, $item> {
                Items::new(self.span, $parser, $adjacent)
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

list_items!(FlagList, Flag<'a>, syntax::flag, b'\\');
list_items!(ListAttrs, Flag<'a>, syntax::flag, b'\\');
list_items!(Capabilities, &'a [u8], syntax::atom, 0);
list_items!(GmLabels, IString<'a>, grammar::gm_label, 0);
list_items!(NumberList, u32, syntax::nz_number, 0);
list_items!(FetchAttrs, FetchItem<'a>, grammar::fetch_item, 0);
list_items!(StatusItems, StatusItem<'a>, grammar::status_item, 0);
list_items!(EsearchItems, EsearchItem<'a>, grammar::esearch_item, 0);
list_items!(
    NamespaceList,
    NamespaceDescr<'a>,
    grammar::namespace_descr,
    b'('
);
list_items!(
    IdParams,
    (IString<'a>, Option<IString<'a>>),
    grammar::id_pair,
    0
);
list_items!(
    ListExtended,
    (IString<'a>, &'a [u8]),
    grammar::list_extended_item,
    0
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

impl<'a> UidSet<'a> {
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

impl StatusData<'_> {
    /// The value of `attr`, if the server sent it with a number.
    pub fn get(&self, attr: StatusAttr<'_>) -> Option<u64> {
        self.items
            .iter()
            .find(|i| i.attr == attr)
            .and_then(|i| i.value)
    }
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
