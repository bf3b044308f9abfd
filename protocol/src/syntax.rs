//! IMAP syntax primitives over `&[u8]` (RFC 3501 section 9, RFC 9051 section 9).
//!
//! Each parser names the ABNF rule it implements. Parsers here expect complete input
//! (a whole frame from a decoder), so running out of bytes is an ordinary parse error;
//! the public entry points map it to [`crate::Error::Incomplete`] when the frame itself
//! lacks its line ending.

use nom::bytes::complete::{tag, tag_no_case, take, take_while, take_while1};
use nom::error::{Error as NomError, ErrorKind};

use crate::types::{Flag, IString};

pub(crate) type PErr<'a> = NomError<&'a [u8]>;
pub(crate) type PResult<'a, T> = nom::IResult<&'a [u8], T, PErr<'a>>;

/// A recoverable parse error at `i`.
pub(crate) fn fail<T>(i: &[u8]) -> PResult<'_, T> {
    Err(nom::Err::Error(NomError::new(i, ErrorKind::Verify)))
}

/// Where a nom error happened, as the remaining input.
pub(crate) fn err_input<'a>(e: &nom::Err<PErr<'a>>, whole: &'a [u8]) -> &'a [u8] {
    match e {
        nom::Err::Error(e) | nom::Err::Failure(e) => e.input,
        nom::Err::Incomplete(_) => &whole[whole.len()..],
    }
}

/// One or more `SP`.
///
/// # Quirks
/// Outlook and surgemail put two spaces, or a space before a closing parenthesis, where
/// the grammar has one; every list separator in this crate accepts a run of spaces.
pub(crate) fn sp1(i: &[u8]) -> PResult<'_, ()> {
    let n = i.iter().take_while(|&&b| b == b' ').count();
    if n == 0 { fail(i) } else { Ok((&i[n..], ())) }
}

/// Zero or more `SP` (see [`sp1`] for why).
pub(crate) fn sp0(i: &[u8]) -> &[u8] {
    let n = i.iter().take_while(|&&b| b == b' ').count();
    &i[n..]
}

/// `CRLF = CR LF`
///
/// # Quirks
/// A bare `LF` is accepted as a line end, as the frame decoders do.
pub(crate) fn crlf(i: &[u8]) -> PResult<'_, ()> {
    match i {
        [b'\r', b'\n', rest @ ..] => Ok((rest, ())),
        [b'\n', rest @ ..] => Ok((rest, ())),
        _ => fail(i),
    }
}

/// `ATOM-CHAR = <any CHAR except atom-specials>`;
/// `atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials`
///
/// # Quirks
/// Bytes 0x80–0xFF are accepted: servers send raw 8-bit (usually UTF-8) mailbox names and
/// keywords unquoted, and they cannot be confused with any delimiter.
pub(crate) fn is_atom_char(b: u8) -> bool {
    ATOM_CHARS[usize::from(b)]
}

/// [`is_atom_char`] as a table: it runs for every byte of every atom.
static ATOM_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c > 0x20
            && c != 0x7f
            && !matches!(c, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']');
        b += 1;
    }
    table
};

/// `ASTRING-CHAR = ATOM-CHAR / resp-specials`
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// `atom = 1*ATOM-CHAR`
pub(crate) fn atom(i: &[u8]) -> PResult<'_, &[u8]> {
    take_while1(is_atom_char)(i)
}

/// `tag = 1*<any ASTRING-CHAR except "+">`
pub(crate) fn imap_tag(i: &[u8]) -> PResult<'_, &[u8]> {
    take_while1(|b| is_astring_char(b) && b != b'+')(i)
}

fn digits(i: &[u8]) -> PResult<'_, u64> {
    let n = i.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 20 {
        return fail(i);
    }
    let mut v: u64 = 0;
    for &d in &i[..n] {
        v = match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
        {
            Some(v) => v,
            None => return fail(i),
        };
    }
    Ok((&i[n..], v))
}

/// `number = 1*DIGIT` ; unsigned 32-bit integer
pub(crate) fn number(i: &[u8]) -> PResult<'_, u32> {
    let (rest, v) = digits(i)?;
    match u32::try_from(v) {
        Ok(v) => Ok((rest, v)),
        Err(_) => fail(i),
    }
}

/// `nz-number = digit-nz *DIGIT` ; non-zero unsigned 32-bit integer
pub(crate) fn nz_number(i: &[u8]) -> PResult<'_, u32> {
    let (rest, v) = number(i)?;
    if v == 0 { fail(i) } else { Ok((rest, v)) }
}

/// `number64 = 1*DIGIT` ; unsigned 63-bit integer (RFC 9051); mod-sequence values
pub(crate) fn number64(i: &[u8]) -> PResult<'_, u64> {
    let (rest, v) = digits(i)?;
    if v > i64::MAX as u64 {
        fail(i)
    } else {
        Ok((rest, v))
    }
}

/// `nil = "NIL"`
pub(crate) fn nil(i: &[u8]) -> PResult<'_, ()> {
    let (rest, _) = tag_no_case(&b"NIL"[..])(i)?;
    // NIL followed by an atom char is an atom such as "NILS", not NIL.
    if rest.first().copied().is_some_and(is_astring_char) {
        return fail(i);
    }
    Ok((rest, ()))
}

/// `quoted = DQUOTE *QUOTED-CHAR DQUOTE`;
/// `QUOTED-CHAR = <any TEXT-CHAR except quoted-specials> / "\" quoted-specials`.
/// Returns the bytes between the quotes with escapes still in place.
///
/// # Quirks
/// 8-bit bytes (servers send raw UTF-8 or Latin-1 names) and NUL are accepted, and a
/// backslash may escape any byte, not only `"` and `\`; only CR and LF end the string
/// with an error.
pub(crate) fn quoted(i: &[u8]) -> PResult<'_, &[u8]> {
    let Some((&b'"', body)) = i.split_first() else {
        return fail(i);
    };
    let mut k = 0;
    loop {
        // Skip ordinary bytes quickly; only quotes, backslashes and line ends matter.
        let Some(p) = body[k..]
            .iter()
            .position(|&b| matches!(b, b'"' | b'\\' | b'\r' | b'\n'))
        else {
            return fail(&body[body.len()..]);
        };
        k += p;
        match body[k] {
            b'"' => return Ok((&body[k + 1..], &body[..k])),
            b'\\' => match body.get(k + 1) {
                Some(b'\r' | b'\n') | None => return fail(&body[k..]),
                Some(_) => k += 2,
            },
            _ => return fail(&body[k..]),
        }
    }
}

/// `literal = "{" number64 ["+"] "}" CRLF *CHAR8`; with `binary`, also
/// `literal8 = "~{" number64 "}" CRLF *OCTET` (RFC 3516).
/// Returns the literal's body.
pub(crate) fn literal_any(i: &[u8], binary: bool) -> PResult<'_, &[u8]> {
    let start = match i {
        [b'~', b'{', ..] if binary => &i[2..],
        [b'{', ..] => &i[1..],
        _ => return fail(i),
    };
    let (rest, len) = digits(start)?;
    let rest = rest.strip_prefix(b"+").unwrap_or(rest);
    let (rest, _) = tag(&b"}"[..])(rest)?;
    let (rest, _) = crlf(rest)?;
    let Ok(len) = usize::try_from(len) else {
        return fail(i);
    };
    take(len)(rest)
}

/// `literal` (see [`literal_any`]).
pub(crate) fn literal(i: &[u8]) -> PResult<'_, &[u8]> {
    literal_any(i, false)
}

/// `string = quoted / literal`
pub(crate) fn string(i: &[u8]) -> PResult<'_, IString<'_>> {
    match i.first() {
        Some(b'"') => quoted(i).map(|(r, s)| (r, IString::Quoted(s))),
        Some(b'{') => literal(i).map(|(r, s)| (r, IString::Literal(s))),
        _ => fail(i),
    }
}

/// `astring = 1*ASTRING-CHAR / string`
pub(crate) fn astring(i: &[u8]) -> PResult<'_, IString<'_>> {
    match i.first() {
        Some(b'"' | b'{') => string(i),
        _ => take_while1(is_astring_char)(i).map(|(r, s)| (r, IString::Atom(s))),
    }
}

/// `nstring = string / nil`
pub(crate) fn nstring(i: &[u8]) -> PResult<'_, Option<IString<'_>>> {
    match i.first() {
        Some(b'"' | b'{') => string(i).map(|(r, s)| (r, Some(s))),
        _ => nil(i).map(|(r, ())| (r, None)),
    }
}

/// `nstring` that may also be a `literal8` (BINARY[] data, RFC 3516).
pub(crate) fn nstring_or_literal8(i: &[u8]) -> PResult<'_, Option<IString<'_>>> {
    match i.first() {
        Some(b'~') => literal_any(i, true).map(|(r, s)| (r, Some(IString::Literal(s)))),
        _ => nstring(i),
    }
}

/// `mailbox = "INBOX" / astring`
///
/// # Quirks
/// Unquoted names that RFC 3501 allows as atoms but that look like other tokens, such as
/// `2024:Q1`, are read as atoms up to the next space.
pub(crate) fn mailbox(i: &[u8]) -> PResult<'_, IString<'_>> {
    astring(i)
}

/// `flag = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" / flag-keyword /
/// flag-extension`; `flag-perm = flag / "\*"`; `flag-fetch = flag / "\Recent"`;
/// also `mbx-list-flag` / `mbx-list-oflag` (the same shape).
pub(crate) fn flag(i: &[u8]) -> PResult<'_, Flag<'_>> {
    match i {
        [b'\\', b'*', rest @ ..] => Ok((rest, Flag::MayCreate)),
        [b'\\', rest @ ..] => {
            let (rest, name) = atom(rest)?;
            Ok((rest, Flag::system_or_extension(name)))
        }
        _ => {
            let (rest, name) = atom(i)?;
            Ok((rest, Flag::Keyword(name)))
        }
    }
}

/// The shape of a [`flag`] without classifying it: validation passes only need to know
/// where each flag ends, and iteration classifies it later.
pub(crate) fn flag_token(i: &[u8]) -> PResult<'_, ()> {
    let rest = match i {
        [b'\\', b'*', rest @ ..] => return Ok((rest, ())),
        [b'\\', rest @ ..] => rest,
        _ => i,
    };
    let (rest, _) = atom(rest)?;
    Ok((rest, ()))
}

/// Walks `item *(SP item)` inside a parenthesised list, with the separator quirks.
///
/// # Quirks
/// Runs of spaces, leading and trailing spaces inside the parentheses (Outlook,
/// surgemail, Cyrus). A non-zero `adjacent` byte may also start an item with no
/// separator: `\\` for flags written as `\Sent\HasNoChildren` (seen from some Exchange
/// versions in LIST), `(` for namespace descriptions, which RFC 2342 writes unseparated.
pub(crate) fn next_list_item<'a, T>(
    rest: &mut &'a [u8],
    item: fn(&'a [u8]) -> PResult<'a, T>,
    adjacent: u8,
) -> Option<Result<T, &'a [u8]>> {
    let r = sp0(rest);
    if r.is_empty() {
        *rest = r;
        return None;
    }
    match item(r) {
        Ok((after, v)) => match after.first() {
            None | Some(b' ') => {
                *rest = after;
                Some(Ok(v))
            }
            Some(&b) if adjacent != 0 && b == adjacent => {
                *rest = after;
                Some(Ok(v))
            }
            Some(_) => Some(Err(after)),
        },
        Err(e) => Some(Err(err_input(&e, r))),
    }
}

/// `"(" [item *(SP item)] ")"`, validated with `item`; returns the span inside the
/// parentheses so that it can be iterated again later without allocating.
pub(crate) fn paren_list<'a, T>(
    i: &'a [u8],
    item: fn(&'a [u8]) -> PResult<'a, T>,
    adjacent: u8,
) -> PResult<'a, &'a [u8]> {
    let (body, _) = tag(&b"("[..])(i)?;
    let mut rest = body;
    let mut first = true;
    loop {
        let r = sp0(rest);
        if let Some(after) = r.strip_prefix(b")") {
            let span_len = body.len() - r.len();
            return Ok((after, &body[..span_len]));
        }
        let separated =
            first || r.len() < rest.len() || (adjacent != 0 && r.first() == Some(&adjacent));
        if !separated {
            return fail(r);
        }
        let (after, _) = item(r)?;
        rest = after;
        first = false;
    }
}

/// Skips one balanced parenthesised value (ENVELOPE, BODYSTRUCTURE, an extension's
/// data) and returns its span including the parentheses.
///
/// # Quirks
/// Anything but CR/LF outside strings is accepted, because servers put 8-bit bytes and
/// Dovecot puts `-1` octet counts into BODYSTRUCTURE; the span is kept raw for the caller.
pub(crate) fn paren_value(i: &[u8]) -> PResult<'_, &[u8]> {
    if i.first() != Some(&b'(') {
        return fail(i);
    }
    let mut depth = 0usize;
    let mut k = 0;
    while k < i.len() {
        match i[k] {
            b'(' => {
                depth += 1;
                k += 1;
            }
            b')' => {
                depth -= 1;
                k += 1;
                if depth == 0 {
                    return Ok((&i[k..], &i[..k]));
                }
            }
            b'"' => {
                let (rest, _) = quoted(&i[k..])?;
                k = i.len() - rest.len();
            }
            b'{' | b'~' if literal_any(&i[k..], true).is_ok() => {
                let (rest, _) = literal_any(&i[k..], true)?;
                k = i.len() - rest.len();
            }
            b'\r' | b'\n' => return fail(&i[k..]),
            _ => k += 1,
        }
    }
    fail(&i[i.len()..])
}

/// Any single value: a parenthesised list, a string, or a run of non-space bytes
/// (`number`, `atom`, `sequence-set`, `NIL`). Used to skip unknown extension data.
pub(crate) fn any_value(i: &[u8]) -> PResult<'_, &[u8]> {
    match i.first() {
        Some(b'(') => paren_value(i),
        Some(b'"' | b'{') => {
            let (rest, _) = string(i)?;
            Ok((rest, &i[..i.len() - rest.len()]))
        }
        Some(b'~') => {
            let (rest, _) = literal_any(i, true)?;
            Ok((rest, &i[..i.len() - rest.len()]))
        }
        _ => take_while1(|b: u8| b > b' ' && b != 0x7f && b != b'(' && b != b')')(i),
    }
}

/// `text = 1*TEXT-CHAR` up to the line end, which is consumed.
///
/// # Quirks
/// Empty text is accepted (many servers send `A1 OK` with nothing after it).
pub(crate) fn text_to_eol(i: &[u8]) -> PResult<'_, &[u8]> {
    let (rest, t) = take_while(|b| b != b'\r' && b != b'\n')(i)?;
    let (rest, _) = crlf(rest)?;
    Ok((rest, t))
}

/// A sequence of `nz-number`s separated by `,` and `:` (`sequence-set` without `*`, as in
/// `uid-set` of RFC 4315 and the sets in ESEARCH and VANISHED); returns the span.
pub(crate) fn uid_set_span(i: &[u8]) -> PResult<'_, &[u8]> {
    let mut rest = i;
    loop {
        let (r, _) = nz_number(rest)?;
        rest = r;
        if let Some(r) = rest.strip_prefix(b":") {
            let (r, _) = nz_number(r)?;
            rest = r;
        }
        match rest.strip_prefix(b",") {
            Some(r) => rest = r,
            None => return Ok((rest, &i[..i.len() - rest.len()])),
        }
    }
}

/// One `uid-range` or `uniqueid` of a validated uid-set span, in ascending order.
pub(crate) fn uid_range(i: &[u8]) -> PResult<'_, (u32, u32)> {
    let (rest, a) = nz_number(i)?;
    let (rest, b) = match rest.strip_prefix(b":") {
        Some(r) => nz_number(r)?,
        None => (rest, a),
    };
    let rest = rest.strip_prefix(b",").unwrap_or(rest);
    Ok((rest, (a.min(b), a.max(b))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_reject_overflow() {
        assert_eq!(number(b"4294967295 ").unwrap().1, u32::MAX);
        assert!(number(b"4294967296").is_err());
        assert!(nz_number(b"0").is_err());
        assert_eq!(
            number64(b"9223372036854775807)").unwrap().1,
            i64::MAX as u64
        );
        assert!(number64(b"9223372036854775808").is_err());
        assert!(number(b"99999999999999999999999").is_err());
    }

    #[test]
    fn quoted_keeps_escapes_and_accepts_8bit() {
        assert_eq!(
            quoted(b"\"a\\\"b\" x").unwrap(),
            (&b" x"[..], &b"a\\\"b"[..])
        );
        assert_eq!(
            quoted("\"Entwürfe\"".as_bytes()).unwrap().1,
            "Entwürfe".as_bytes()
        );
        assert!(quoted(b"\"abc\r\n").is_err());
        assert!(quoted(b"\"abc").is_err());
    }

    #[test]
    fn literal_and_literal8() {
        assert_eq!(literal(b"{3}\r\nabcd").unwrap(), (&b"d"[..], &b"abc"[..]));
        assert_eq!(
            literal_any(b"~{2}\r\n\x00\x01", true).unwrap().1,
            b"\x00\x01"
        );
        assert!(literal(b"~{2}\r\nab").is_err());
        assert!(literal(b"{5}\r\nab").is_err());
    }

    #[test]
    fn nil_is_not_a_prefix_of_an_atom() {
        assert!(nil(b"NIL)").is_ok());
        assert!(nil(b"NILS").is_err());
        assert_eq!(nstring(b"nil ").unwrap().1, None);
    }

    #[test]
    fn paren_list_quirks() {
        let (rest, span) = paren_list(b"( \\Seen  \\Flagged ) x", flag, 0).unwrap();
        assert_eq!(rest, b" x");
        assert_eq!(span, b" \\Seen  \\Flagged ");
        assert!(paren_list(b"(\\Sent\\HasNoChildren)", flag, 0).is_err());
        assert!(paren_list(b"(\\Sent\\HasNoChildren)", flag, b'\\').is_ok());
        assert!(paren_list(b"(\\Seen(", flag, 0).is_err());
        assert_eq!(paren_list(b"()", flag, 0).unwrap().1, b"");
    }

    #[test]
    fn paren_value_skips_strings_literals_and_8bit() {
        let v = b"(\"a)\" {2}\r\n)) (\xc3\xa4 -1) NIL) tail";
        let (rest, span) = paren_value(v).unwrap();
        assert_eq!(rest, b" tail");
        assert_eq!(span.len(), v.len() - 5);
        assert!(paren_value(b"((a)").is_err());
    }

    #[test]
    fn uid_sets() {
        assert_eq!(
            uid_set_span(b"1:3,5 x").unwrap(),
            (&b" x"[..], &b"1:3,5"[..])
        );
        assert!(uid_set_span(b"0").is_err());
        assert_eq!(uid_range(b"9:7,1").unwrap(), (&b"1"[..], (7, 9)));
    }
}
