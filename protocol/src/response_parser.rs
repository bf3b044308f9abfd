//! Server responses: `response` of RFC 3501 / RFC 9051 section 9 and the extensions a
//! migration client meets (CONDSTORE/QRESYNC, UIDPLUS, ESEARCH, LIST-EXTENDED,
//! SPECIAL-USE, NAMESPACE, ID, OBJECTID, BINARY, Gmail's X-GM-*).
//!
//! Entry points take one frame from [`crate::ResponseDecoder`] and return borrowed values.

use nom::bytes::complete::tag;

use crate::error::{Error, Result};
use crate::syntax::{self, PResult, crlf, fail, nz_number, sp0, sp1};
use crate::types::*;

pub(crate) mod grammar;

use grammar::{fetch_items_until_streamed, keyword, response};

/// Parses one complete response frame (a [`crate::Frame::Whole`]).
///
/// Returns [`Error::Incomplete`] when the frame lacks its line end, and
/// [`Error::Malformed`] naming the offending byte otherwise.
pub fn parse_response(frame: &[u8]) -> Result<Response<'_>> {
    finish(frame, response(frame), || describe(frame))
}

/// Parses the greeting: `greeting = "*" SP (resp-cond-auth / resp-cond-bye) CRLF`.
pub fn parse_greeting(frame: &[u8]) -> Result<StatusResponse<'_>> {
    match parse_response(frame)? {
        Response::Status(s)
            if s.tag.is_none()
                && matches!(
                    s.kind,
                    StatusKind::Ok | StatusKind::PreAuth | StatusKind::Bye
                ) =>
        {
            Ok(s)
        }
        _ => Err(Error::malformed(
            "greeting (expected * OK, * PREAUTH or * BYE)",
            frame,
            frame,
        )),
    }
}

/// Parses the head of a FETCH response whose literal is streamed (a
/// [`crate::Frame::Head`]): `* n FETCH (` attributes, then the streamed attribute's name
/// and `{N}` CRLF.
pub fn parse_fetch_head(frame: &[u8]) -> Result<FetchHead<'_>> {
    let r = (|| -> PResult<'_, FetchHead<'_>> {
        let (i, _) = tag(&b"*"[..])(frame)?;
        let (i, _) = sp1(i)?;
        let (i, seq) = nz_number(i)?;
        let (i, _) = sp1(i)?;
        let (i, _) = keyword(b"FETCH")(i)?;
        let (i, _) = sp1(i)?;
        let (i, _) = tag(&b"("[..])(i)?;
        let (i, (span, streamed)) = fetch_items_until_streamed(i, true)?;
        match streamed {
            Some(streamed) if i.is_empty() => Ok((
                i,
                FetchHead {
                    seq,
                    attrs: FetchAttrs::from_validated(span),
                    streamed,
                },
            )),
            _ => fail(i),
        }
    })();
    finish(
        frame,
        r,
        || "FETCH response head (before a streamed literal)",
    )
}

/// Parses what follows a streamed literal (a [`crate::Frame::Tail`]): more attributes and
/// either `)` CRLF or another streamed attribute.
pub fn parse_fetch_tail(frame: &[u8]) -> Result<FetchTail<'_>> {
    let r = (|| -> PResult<'_, FetchTail<'_>> {
        let (i, (span, streamed)) = fetch_items_until_streamed(frame, false)?;
        let i = match streamed {
            Some(_) => i,
            None => {
                let (i, _) = crlf(sp0(i))?;
                i
            }
        };
        if !i.is_empty() {
            return fail(i);
        }
        Ok((
            i,
            FetchTail {
                attrs: FetchAttrs::from_validated(span),
                streamed,
            },
        ))
    })();
    finish(
        frame,
        r,
        || "FETCH response tail (after a streamed literal)",
    )
}

/// Turns a parse result into the public result; `what` is only computed on error.
fn finish<'a, T>(
    frame: &'a [u8],
    r: PResult<'a, T>,
    what: impl FnOnce() -> &'static str,
) -> Result<T> {
    match r {
        Ok(([], v)) => Ok(v),
        Ok((rest, _)) => Err(Error::malformed(what(), frame, rest)),
        Err(_) if !frame.ends_with(b"\n") => Err(Error::Incomplete { what: what() }),
        Err(e) => Err(Error::malformed(
            what(),
            frame,
            syntax::err_input(&e, frame),
        )),
    }
}

/// Names the kind of response in a frame, for error messages.
fn describe(frame: &[u8]) -> &'static str {
    let mut words = frame
        .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .filter(|w| !w.is_empty());
    match words.next() {
        Some(b"+") => "continuation request",
        Some(b"*") => {
            let mut w = words.next().unwrap_or_default();
            if w.first().is_some_and(u8::is_ascii_digit) {
                w = words.next().unwrap_or_default();
            }
            const NAMES: [(&[u8], &str); 21] = [
                (b"OK", "untagged OK response"),
                (b"NO", "untagged NO response"),
                (b"BAD", "untagged BAD response"),
                (b"BYE", "BYE response"),
                (b"PREAUTH", "PREAUTH greeting"),
                (b"CAPABILITY", "CAPABILITY response"),
                (b"ENABLED", "ENABLED response"),
                (b"LIST", "LIST response"),
                (b"LSUB", "LSUB response"),
                (b"STATUS", "STATUS response"),
                (b"FLAGS", "FLAGS response"),
                (b"EXISTS", "EXISTS response"),
                (b"RECENT", "RECENT response"),
                (b"EXPUNGE", "EXPUNGE response"),
                (b"VANISHED", "VANISHED response"),
                (b"FETCH", "FETCH response"),
                (b"SEARCH", "SEARCH response"),
                (b"ESEARCH", "ESEARCH response"),
                (b"NAMESPACE", "NAMESPACE response"),
                (b"ID", "ID response"),
                (b"", "untagged response"),
            ];
            NAMES
                .iter()
                .find(|(n, _)| !n.is_empty() && w.eq_ignore_ascii_case(n))
                .map_or("untagged response", |(_, d)| d)
        }
        _ => "tagged status response",
    }
}

// The public validators of the lazily read lists: the checking is in `lazy_values.rs`
// (below the error type), the error naming what failed here.
macro_rules! list_parse {
    ($($name:ident),*) => {$(
        impl<'a> $name<'a> {
            /// Validates `span` (the list's elements without the parentheses, as they
            /// would appear on the wire) so that it can be encoded.
            pub fn parse(span: &'a [u8]) -> Result<Self> {
                Self::validate(span).map_err(|at| Error::malformed(stringify!($name), span, at))
            }
        }
    )*};
}

list_parse!(
    FlagList,
    ListAttrs,
    Capabilities,
    GmLabels,
    NumberList,
    FetchAttrs,
    StatusItems,
    EsearchItems,
    NamespaceList,
    IdParams,
    ListExtended
);

#[cfg(test)]
mod tests;
