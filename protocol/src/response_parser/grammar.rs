//! The grammar of server responses as nom parsers, borrowing from the frame: no error type
//! here (nom's stays inside the crate; `response_parser.rs` turns it into ours), so that
//! the lazily read values of `lazy_values.rs` can use these item parsers from below the
//! error type.

use nom::bytes::complete::{tag, take_while, take_while1};

use crate::syntax::{
    self, PResult, any_value, astring, atom, crlf, fail, imap_tag, mailbox, nil, nstring,
    nstring_or_literal8, number, number64, nz_number, paren_list, paren_value, quoted, sp0, sp1,
    string, text_to_eol, uid_set_span,
};
use crate::types::*;

/// Matches a keyword case-insensitively, not as the prefix of a longer atom.
pub(super) fn keyword(kw: &'static [u8]) -> impl Fn(&[u8]) -> PResult<'_, ()> {
    move |i: &[u8]| {
        if i.len() >= kw.len()
            && i[..kw.len()].eq_ignore_ascii_case(kw)
            && !i
                .get(kw.len())
                .copied()
                .is_some_and(syntax::is_astring_char)
        {
            Ok((&i[kw.len()..], ()))
        } else {
            fail(i)
        }
    }
}

/// `response = *(continue-req / response-data) response-done`, one line (with literals)
/// at a time.
///
/// # Quirks
/// A line that starts with `[` is read as an untagged OK carrying that code: Exchange
/// 2013 answers `UID MOVE` with a bare `[COPYUID 124 10 233]` line.
pub(super) fn response(i: &[u8]) -> PResult<'_, Response<'_>> {
    match i.first() {
        Some(b'+') => continue_req(i),
        Some(b'*') => {
            let (i, _) = tag(&b"*"[..])(i)?;
            let (i, _) = sp1(i)?;
            untagged(i)
        }
        Some(b'[') => {
            let (rest, (code, text)) = resp_text_body(i)?;
            Ok((
                rest,
                Response::Status(StatusResponse {
                    tag: None,
                    kind: StatusKind::Ok,
                    code,
                    text,
                }),
            ))
        }
        _ => {
            let (i, t) = imap_tag(i)?;
            let (i, _) = sp1(i)?;
            let (i, kind) = status_kind(i)?;
            if matches!(kind, StatusKind::Bye | StatusKind::PreAuth) {
                return fail(i);
            }
            let (i, (code, text)) = resp_text(i)?;
            Ok((
                i,
                Response::Status(StatusResponse {
                    tag: Some(t),
                    kind,
                    code,
                    text,
                }),
            ))
        }
    }
}

/// `continue-req = "+" SP (resp-text / base64) CRLF`
///
/// # Quirks
/// `+` CRLF without the space and text (imap-codec's `quirk_empty_continue_req`).
fn continue_req(i: &[u8]) -> PResult<'_, Response<'_>> {
    let (i, _) = tag(&b"+"[..])(i)?;
    let i = i.strip_prefix(b" ").unwrap_or(i);
    let (i, text) = text_to_eol(i)?;
    Ok((i, Response::Continuation(Continuation { text })))
}

/// An ASCII-uppercased copy of a short keyword on the stack (keywords are matched
/// case-insensitively without allocating); `None` for words too long to be a keyword.
fn upper(word: &[u8]) -> Option<([u8; 16], usize)> {
    if word.len() > 16 {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..word.len()].copy_from_slice(word);
    buf[..word.len()].make_ascii_uppercase();
    Some((buf, word.len()))
}

fn status_kind(i: &[u8]) -> PResult<'_, StatusKind> {
    let (rest, word) = atom(i)?;
    let Some((buf, len)) = upper(word) else {
        return fail(i);
    };
    let kind = match &buf[..len] {
        b"OK" => StatusKind::Ok,
        b"NO" => StatusKind::No,
        b"BAD" => StatusKind::Bad,
        b"BYE" => StatusKind::Bye,
        b"PREAUTH" => StatusKind::PreAuth,
        _ => return fail(i),
    };
    Ok((rest, kind))
}

/// `SP resp-text CRLF` after a status keyword.
///
/// # Quirks
/// The space and text may be missing altogether (`A1 OK` CRLF).
fn resp_text(i: &[u8]) -> PResult<'_, (Option<Code<'_>>, &[u8])> {
    match sp1(i) {
        Ok((i, ())) => resp_text_body(i),
        Err(_) => {
            let (i, _) = crlf(i)?;
            Ok((i, (None, &i[..0])))
        }
    }
}

/// `resp-text = ["[" resp-text-code "]" SP] text`, through the line end.
///
/// # Quirks
/// Gmail sends `[HIGHESTMODSEQ n]` with neither the space nor the text; text that starts
/// with `[` but is not a well-formed code is kept as text.
fn resp_text_body(i: &[u8]) -> PResult<'_, (Option<Code<'_>>, &[u8])> {
    if i.first() == Some(&b'[')
        && let Ok((rest, code)) = resp_text_code(&i[1..])
    {
        let rest = sp0(rest);
        let (rest, text) = text_to_eol(rest)?;
        return Ok((rest, (Some(code), text)));
    }
    let (rest, text) = text_to_eol(i)?;
    Ok((rest, (None, text)))
}

/// `resp-text-code` followed by `]`.
///
/// # Quirks
/// Arguments of unknown codes may hold quoted strings containing `]` (Office 365 puts
/// quoted text into its codes); a known code whose arguments do not parse is returned as
/// [`Code::Other`] rather than rejected, so that the caller can still see it.
fn resp_text_code(i: &[u8]) -> PResult<'_, Code<'_>> {
    let (after_name, name) = take_while1(|b| syntax::is_atom_char(b) && b != b'[')(i)?;
    let known = known_code(name, after_name);
    if let Some(Ok((rest, code))) = known
        && let Ok((rest, _)) = tag::<_, _, syntax::PErr<'_>>(&b"]"[..])(sp0(rest))
    {
        return Ok((rest, code));
    }
    let (rest, arg) = match after_name.first() {
        Some(b']') => (after_name, None),
        Some(b' ') => {
            let (rest, raw) = code_arg_raw(&after_name[1..])?;
            (rest, Some(raw))
        }
        _ => return fail(after_name),
    };
    let (rest, _) = tag(&b"]"[..])(rest)?;
    Ok((rest, Code::Other { name, arg }))
}

fn code_arg_raw(i: &[u8]) -> PResult<'_, &[u8]> {
    let mut k = 0;
    while k < i.len() {
        match i[k] {
            b']' => return Ok((&i[k..], &i[..k])),
            b'"' => {
                let (rest, _) = quoted(&i[k..])?;
                k = i.len() - rest.len();
            }
            b'\r' | b'\n' => return fail(&i[k..]),
            _ => k += 1,
        }
    }
    fail(&i[i.len()..])
}

fn known_code<'a>(name: &'a [u8], i: &'a [u8]) -> Option<PResult<'a, Code<'a>>> {
    let no_arg = |c: Code<'a>| Some(Ok((i, c)));
    let (buf, len) = upper(name)?;
    match &buf[..len] {
        b"ALERT" => no_arg(Code::Alert),
        b"READ-ONLY" => no_arg(Code::ReadOnly),
        b"READ-WRITE" => no_arg(Code::ReadWrite),
        b"TRYCREATE" => no_arg(Code::TryCreate),
        b"NOMODSEQ" => no_arg(Code::NoModSeq),
        b"UIDNOTSTICKY" => no_arg(Code::UidNotSticky),
        b"CLOSED" => no_arg(Code::Closed),
        b"TOOBIG" => no_arg(Code::TooBig),
        b"OVERQUOTA" => no_arg(Code::OverQuota),
        b"LIMIT" => no_arg(Code::Limit),
        b"UNAVAILABLE" => no_arg(Code::Unavailable),
        b"THROTTLED" => no_arg(Code::Throttled),
        b"CAPABILITY" => Some((|| {
            let (i, _) = sp1(i)?;
            let (rest, span) = atoms_span(i)?;
            Ok((rest, Code::Capability(Capabilities::from_validated(span))))
        })()),
        b"PERMANENTFLAGS" => Some((|| {
            let (i, _) = sp1(i)?;
            let (rest, span) = paren_list(i, syntax::flag_token, b'\\')?;
            Ok((rest, Code::PermanentFlags(FlagList::from_validated(span))))
        })()),
        b"UIDNEXT" => Some(sp_then(i, number).map(|(r, n)| (r, Code::UidNext(n)))),
        b"UIDVALIDITY" => Some(sp_then(i, number).map(|(r, n)| (r, Code::UidValidity(n)))),
        b"UNSEEN" => Some(sp_then(i, number).map(|(r, n)| (r, Code::Unseen(n)))),
        b"HIGHESTMODSEQ" => Some(sp_then(i, number64).map(|(r, n)| (r, Code::HighestModSeq(n)))),
        b"APPENDUID" => Some((|| {
            let (i, uid_validity) = sp_then(i, nz_number)?;
            let (i, set) = sp_then(i, uid_set_span)?;
            Ok((
                i,
                Code::AppendUid {
                    uid_validity,
                    uids: UidSet::from_validated(set),
                },
            ))
        })()),
        b"COPYUID" => Some((|| {
            let (i, uid_validity) = sp_then(i, nz_number)?;
            let (i, source) = sp_then(i, uid_set_span)?;
            let (i, dest) = sp_then(i, uid_set_span)?;
            Ok((
                i,
                Code::CopyUid {
                    uid_validity,
                    source: UidSet::from_validated(source),
                    dest: UidSet::from_validated(dest),
                },
            ))
        })()),
        _ => None,
    }
}

fn sp_then<'a, T>(i: &'a [u8], p: fn(&'a [u8]) -> PResult<'a, T>) -> PResult<'a, T> {
    let (i, _) = sp1(i)?;
    p(i)
}

/// `atom *(SP atom)` up to `]` or the line end; the span excludes trailing spaces.
///
/// # Quirks
/// Trailing spaces (imap-codec's `quirk_trailing_space_capability`).
fn atoms_span(i: &[u8]) -> PResult<'_, &[u8]> {
    let (mut rest, _) = atom(i)?;
    loop {
        let r = sp0(rest);
        match atom(r) {
            Ok((after, _)) if r.len() < rest.len() => rest = after,
            _ => return Ok((rest, &i[..i.len() - rest.len()])),
        }
    }
}

/// `response-data = "*" SP (resp-cond-state / resp-cond-bye / mailbox-data /
/// message-data / capability-data / enable-data / id-response / namespace-response /
/// esearch-response) CRLF`
fn untagged(i: &[u8]) -> PResult<'_, Response<'_>> {
    if i.first().is_some_and(u8::is_ascii_digit) {
        return numbered(i).map(|(r, d)| (r, Response::Data(d)));
    }
    let (after, word) = atom(i)?;
    let (buf, len) = upper(word).unwrap_or(([0; 16], 0));
    let upper = &buf[..len];
    let data = match upper {
        b"OK" | b"NO" | b"BAD" | b"BYE" | b"PREAUTH" => {
            let (rest, kind) = status_kind(i)?;
            let (rest, (code, text)) = resp_text(rest)?;
            return Ok((
                rest,
                Response::Status(StatusResponse {
                    tag: None,
                    kind,
                    code,
                    text,
                }),
            ));
        }
        b"CAPABILITY" | b"ENABLED" => {
            let (r, span) = match sp1(after) {
                Ok((r, _)) if atom(r).is_ok() => atoms_span(r)?,
                _ => (after, &after[..0]),
            };
            let (r, _) = crlf(sp0(r))?;
            let caps = Capabilities::from_validated(span);
            let d = if upper == b"ENABLED" {
                Data::Enabled(caps)
            } else {
                Data::Capability(caps)
            };
            return Ok((r, Response::Data(d)));
        }
        b"LIST" => list_data(after).map(|(r, l)| (r, Data::List(l))),
        b"LSUB" => list_data(after).map(|(r, l)| (r, Data::Lsub(l))),
        b"STATUS" => status_data(after),
        b"FLAGS" => {
            let (r, span) = sp_then(after, |i| paren_list(i, syntax::flag_token, b'\\'))?;
            Ok((r, Data::Flags(FlagList::from_validated(span))))
        }
        b"SEARCH" => search_data(after),
        b"ESEARCH" => esearch_data(after),
        b"NAMESPACE" => namespace_data(after),
        b"ID" => id_data(after),
        b"VANISHED" => vanished_data(after),
        _ => {
            let (r, rest) = text_to_eol(after)?;
            return Ok((r, Response::Data(Data::Other { name: word, rest })));
        }
    };
    let (r, d) = data?;
    // Quirk: trailing spaces before the line end (Outlook, surgemail).
    let (r, _) = crlf(sp0(r))?;
    Ok((r, Response::Data(d)))
}

/// `message-data = nz-number SP ("EXPUNGE" / ("FETCH" SP msg-att))`;
/// `mailbox-data =/ number SP "EXISTS" / number SP "RECENT"`
fn numbered(i: &[u8]) -> PResult<'_, Data<'_>> {
    let (after_n, n) = number(i)?;
    let (after_sp, _) = sp1(after_n)?;
    let (after, word) = atom(after_sp)?;
    let d = if word.eq_ignore_ascii_case(b"FETCH") {
        let (r, _) = sp1(after)?;
        let (r, span) = paren_list(r, fetch_item, 0)?;
        if n == 0 {
            return fail(i);
        }
        (
            r,
            Data::Fetch(Fetch {
                seq: n,
                attrs: FetchAttrs::from_validated(span),
            }),
        )
    } else if word.eq_ignore_ascii_case(b"EXISTS") {
        (after, Data::Exists(n))
    } else if word.eq_ignore_ascii_case(b"RECENT") {
        (after, Data::Recent(n))
    } else if word.eq_ignore_ascii_case(b"EXPUNGE") {
        (after, Data::Expunge(n))
    } else {
        let (r, rest) = text_to_eol(after)?;
        let name = &i[..i.len() - after.len()];
        return Ok((r, Data::Other { name, rest }));
    };
    let (r, _) = crlf(sp0(d.0))?;
    Ok((r, d.1))
}

/// `mailbox-list = "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox
/// [SP mbox-list-extended]` (RFC 3501, RFC 5258)
///
/// # Quirks
/// Attributes without a separating space (`\Sent\HasNoChildren`), and unquoted names that
/// look like other tokens (`2024:Q1`).
fn list_data(i: &[u8]) -> PResult<'_, ListData<'_>> {
    let (i, _) = sp1(i)?;
    let (i, attrs) = paren_list(i, syntax::flag_token, b'\\')?;
    let (i, _) = sp1(i)?;
    let (i, delimiter) = delimiter(i)?;
    let (i, _) = sp1(i)?;
    let (i, name) = mailbox(i)?;
    let (i, extended) = match sp1(i) {
        Ok((r, _)) if r.first() == Some(&b'(') => paren_list(r, list_extended_item, 0)?,
        _ => (i, &i[..0]),
    };
    Ok((
        i,
        ListData {
            attributes: ListAttrs::from_validated(attrs),
            delimiter,
            mailbox: Mailbox(name),
            extended: ListExtended::from_validated(extended),
        },
    ))
}

/// `DQUOTE QUOTED-CHAR DQUOTE / nil`: a hierarchy delimiter.
fn delimiter(i: &[u8]) -> PResult<'_, Option<u8>> {
    if let Ok((r, ())) = nil(i) {
        return Ok((r, None));
    }
    let (r, q) = quoted(i)?;
    match q {
        [c] if *c != b'\\' => Ok((r, Some(*c))),
        [b'\\', c] => Ok((r, Some(*c))),
        _ => fail(i),
    }
}

/// `mbox-list-extended-item = mbox-list-extended-item-tag SP tagged-ext-val` (RFC 5258)
pub(crate) fn list_extended_item(i: &[u8]) -> PResult<'_, (IString<'_>, &[u8])> {
    let (i, t) = astring(i)?;
    let (i, _) = sp1(i)?;
    let (i, v) = any_value(i)?;
    Ok((i, (t, v)))
}

/// `mailbox-data =/ "STATUS" SP mailbox SP "(" [status-att-list] ")"`
///
/// # Quirks
/// Trailing spaces inside and after the list (`quirk_trailing_space_status`).
fn status_data(i: &[u8]) -> PResult<'_, Data<'_>> {
    let (i, _) = sp1(i)?;
    let (i, name) = mailbox(i)?;
    let (i, _) = sp1(i)?;
    let (i, span) = paren_list(i, status_item, 0)?;
    Ok((
        i,
        Data::Status(StatusData {
            mailbox: Mailbox(name),
            items: StatusItems::from_validated(span),
        }),
    ))
}

/// `status-att-val = status-att SP number` (number64 for HIGHESTMODSEQ and SIZE;
/// `APPENDLIMIT NIL` per RFC 7889)
pub(crate) fn status_item(i: &[u8]) -> PResult<'_, StatusItem<'_>> {
    let (r, name) = atom(i)?;
    let (r, _) = sp1(r)?;
    let (r, value) = match nil(r) {
        Ok((r, ())) => (r, None),
        Err(_) => {
            let (r, v) = number64(r)?;
            (r, Some(v))
        }
    };
    const ATTRS: [(&[u8], StatusAttr<'static>); 9] = [
        (b"MESSAGES", StatusAttr::Messages),
        (b"RECENT", StatusAttr::Recent),
        (b"UIDNEXT", StatusAttr::UidNext),
        (b"UIDVALIDITY", StatusAttr::UidValidity),
        (b"UNSEEN", StatusAttr::Unseen),
        (b"HIGHESTMODSEQ", StatusAttr::HighestModSeq),
        (b"SIZE", StatusAttr::Size),
        (b"APPENDLIMIT", StatusAttr::AppendLimit),
        (b"DELETED", StatusAttr::Deleted),
    ];
    let attr = ATTRS
        .iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n))
        .map_or(StatusAttr::Other(name), |(_, a)| *a);
    Ok((r, StatusItem { attr, value }))
}

/// `mailbox-data =/ "SEARCH" *(SP nz-number) [SP "(" "MODSEQ" SP mod-sequence-value ")"]`
///
/// # Quirks
/// Trailing spaces (`quirk_trailing_space_search`).
fn search_data(i: &[u8]) -> PResult<'_, Data<'_>> {
    let start = i;
    let mut rest = i;
    loop {
        let r = sp0(rest);
        if r.len() < rest.len() && r.first().is_some_and(u8::is_ascii_digit) {
            let (after, _) = nz_number(r)?;
            rest = after;
        } else {
            break;
        }
    }
    let span = &start[..start.len() - rest.len()];
    let r = sp0(rest);
    let (rest, modseq) = if r.first() == Some(&b'(') && r.len() < rest.len() {
        let (r, _) = tag(&b"("[..])(r)?;
        let (r, _) = keyword(b"MODSEQ")(r)?;
        let (r, v) = sp_then(r, number64)?;
        let (r, _) = tag(&b")"[..])(r)?;
        (r, Some(v))
    } else {
        (rest, None)
    };
    Ok((
        rest,
        Data::Search(Search {
            nums: NumberList::from_validated(span),
            modseq,
        }),
    ))
}

/// `esearch-response = "ESEARCH" [search-correlator] [SP "UID"] *(SP search-return-data)`
/// (RFC 4731)
fn esearch_data(i: &[u8]) -> PResult<'_, Data<'_>> {
    let mut rest = i;
    let mut corr = None;
    if let Ok((r, _)) = sp1(rest)
        && r.first() == Some(&b'(')
    {
        let (r, _) = tag(&b"("[..])(r)?;
        let (r, _) = keyword(b"TAG")(r)?;
        let (r, t) = sp_then(r, string)?;
        let (r, _) = tag(&b")"[..])(sp0(r))?;
        corr = Some(t);
        rest = r;
    }
    let mut uid = false;
    if let Ok((r, _)) = sp1(rest)
        && let Ok((r, ())) = keyword(b"UID")(r)
    {
        uid = true;
        rest = r;
    }
    let start = rest;
    loop {
        let r = sp0(rest);
        if r.len() == rest.len() || r.is_empty() || r[0] == b'\r' || r[0] == b'\n' {
            break;
        }
        let (after, _) = esearch_item(r)?;
        rest = after;
    }
    let span = &start[..start.len() - rest.len()];
    Ok((
        rest,
        Data::Esearch(Esearch {
            tag: corr,
            uid,
            items: EsearchItems::from_validated(span),
        }),
    ))
}

/// `search-return-data = search-modifier-name SP search-return-value`
pub(crate) fn esearch_item(i: &[u8]) -> PResult<'_, EsearchItem<'_>> {
    let (r, name) = atom(i)?;
    let (r, _) = sp1(r)?;
    let (r, value) = any_value(r)?;
    Ok((r, EsearchItem { name, value }))
}

/// `Namespace-Response = "NAMESPACE" SP Namespace SP Namespace SP Namespace` (RFC 2342)
fn namespace_data(i: &[u8]) -> PResult<'_, Data<'_>> {
    let (i, personal) = sp_then(i, namespace_class)?;
    let (i, other_users) = sp_then(i, namespace_class)?;
    let (i, shared) = sp_then(i, namespace_class)?;
    Ok((
        i,
        Data::Namespace(Namespace {
            personal,
            other_users,
            shared,
        }),
    ))
}

fn namespace_class(i: &[u8]) -> PResult<'_, Option<NamespaceList<'_>>> {
    if let Ok((r, ())) = nil(i) {
        return Ok((r, None));
    }
    let (r, span) = paren_list(i, namespace_descr, b'(')?;
    Ok((r, Some(NamespaceList::from_validated(span))))
}

/// `"(" string SP (DQUOTE QUOTED-CHAR DQUOTE / nil) *(Namespace-Response-Extension) ")"`
pub(crate) fn namespace_descr(i: &[u8]) -> PResult<'_, NamespaceDescr<'_>> {
    let (r, _) = tag(&b"("[..])(i)?;
    let (r, prefix) = string(r)?;
    let (mut r, delimiter) = sp_then(r, delimiter)?;
    loop {
        let s = sp0(r);
        if let Some(after) = s.strip_prefix(b")") {
            return Ok((after, NamespaceDescr { prefix, delimiter }));
        }
        let (after, _) = any_value(s)?;
        r = after;
    }
}

/// `id-response = "ID" SP id-params-list`; `id-params-list = "(" *(string SP nstring) ")" / nil`
///
/// # Quirks
/// `* ID NIL` (servers that share nothing) and trailing spaces (`quirk_trailing_space_id`).
fn id_data(i: &[u8]) -> PResult<'_, Data<'_>> {
    let (i, _) = sp1(i)?;
    if let Ok((r, ())) = nil(i) {
        return Ok((r, Data::Id(None)));
    }
    let (r, span) = paren_list(i, id_pair, 0)?;
    Ok((r, Data::Id(Some(IdParams::from_validated(span)))))
}

/// `string SP nstring`, one ID field and its value.
pub(crate) fn id_pair(i: &[u8]) -> PResult<'_, (IString<'_>, Option<IString<'_>>)> {
    let (r, k) = string(i)?;
    let (r, v) = sp_then(r, nstring)?;
    Ok((r, (k, v)))
}

/// `expunged-resp = "VANISHED" [SP "(EARLIER)"] SP known-uids` (RFC 7162)
fn vanished_data(i: &[u8]) -> PResult<'_, Data<'_>> {
    let (mut i, _) = sp1(i)?;
    let mut earlier = false;
    if i.first() == Some(&b'(') {
        let (r, _) = tag(&b"("[..])(i)?;
        let (r, _) = keyword(b"EARLIER")(r)?;
        let (r, _) = tag(&b")"[..])(r)?;
        let (r, _) = sp1(r)?;
        earlier = true;
        i = r;
    }
    let (r, set) = uid_set_span(i)?;
    Ok((
        r,
        Data::Vanished {
            earlier,
            uids: UidSet::from_validated(set),
        },
    ))
}

/// One X-GM-LABELS element: `astring`, or a system label such as `\Inbox`.
pub(crate) fn gm_label(i: &[u8]) -> PResult<'_, IString<'_>> {
    if i.first() == Some(&b'\\') {
        let (r, _) = atom(&i[1..])?;
        return Ok((r, IString::Atom(&i[..i.len() - r.len()])));
    }
    astring(i)
}

/// `section` and `partial` of `BODY[section]<origin>`: the bytes between the brackets,
/// then an optional `<number>`.
fn section(i: &[u8]) -> PResult<'_, Section<'_>> {
    let (r, _) = tag(&b"["[..])(i)?;
    let (r, spec) = take_while(|b| b != b']' && b != b'\r' && b != b'\n')(r)?;
    let (r, _) = tag(&b"]"[..])(r)?;
    let (r, origin) = match r.strip_prefix(b"<") {
        Some(r) => {
            let (r, n) = number(r)?;
            let (r, _) = tag(&b">"[..])(r)?;
            (r, Some(n))
        }
        None => (r, None),
    };
    Ok((r, Section { spec, origin }))
}

/// `objectid = 1*255(ALPHA / DIGIT / "_" / "-")` in parentheses (RFC 8474).
fn objectid_paren(i: &[u8]) -> PResult<'_, &[u8]> {
    let (r, _) = tag(&b"("[..])(i)?;
    let (r, id) = take_while1(|b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')(r)?;
    let (r, _) = tag(&b")"[..])(r)?;
    Ok((r, id))
}

fn fetch_name(i: &[u8]) -> PResult<'_, &[u8]> {
    take_while1(|b| syntax::is_atom_char(b) && b != b'[' && b != b'<')(i)
}

/// `msg-att-dynamic / msg-att-static` (RFC 3501, RFC 9051) and the extensions listed on
/// [`FetchItem`].
pub(crate) fn fetch_item(i: &[u8]) -> PResult<'_, FetchItem<'_>> {
    let (r, name) = fetch_name(i)?;
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        3 if is(b"UID") => sp_then(r, nz_number).map(|(r, u)| (r, FetchItem::Uid(u))),
        5 if is(b"FLAGS") => {
            let (r, span) = sp_then(r, |i| paren_list(i, syntax::flag_token, b'\\'))?;
            Ok((r, FetchItem::Flags(FlagList::from_validated(span))))
        }
        12 if is(b"INTERNALDATE") => {
            sp_then(r, quoted).map(|(r, d)| (r, FetchItem::InternalDate(d)))
        }
        11 if is(b"RFC822.SIZE") => {
            sp_then(r, number64).map(|(r, n)| (r, FetchItem::Rfc822Size(n)))
        }
        4 if is(b"BODY") => {
            if r.first() == Some(&b'[') {
                let (r, section) = section(r)?;
                let (r, data) = sp_then(r, nstring)?;
                Ok((r, FetchItem::Body { section, data }))
            } else {
                let (r, v) = sp_then(r, paren_value)?;
                Ok((r, FetchItem::BodyStructure(v)))
            }
        }
        6 if is(b"BINARY") => {
            let (r, section) = section(r)?;
            let (r, data) = sp_then(r, nstring_or_literal8)?;
            Ok((r, FetchItem::Binary { section, data }))
        }
        11 if is(b"BINARY.SIZE") => {
            let (r, s) = section(r)?;
            let (r, size) = sp_then(r, number64)?;
            Ok((
                r,
                FetchItem::BinarySize {
                    section: s.spec,
                    size,
                },
            ))
        }
        6 | 11 | 13 if is(b"RFC822") || is(b"RFC822.TEXT") || is(b"RFC822.HEADER") => {
            let (r, data) = sp_then(r, nstring)?;
            Ok((r, FetchItem::Rfc822 { name, data }))
        }
        6 if is(b"MODSEQ") => {
            let (r, _) = sp1(r)?;
            let (r, _) = tag(&b"("[..])(r)?;
            let (r, v) = number64(r)?;
            let (r, _) = tag(&b")"[..])(r)?;
            Ok((r, FetchItem::ModSeq(v)))
        }
        7 if is(b"EMAILID") => sp_then(r, objectid_paren).map(|(r, v)| (r, FetchItem::EmailId(v))),
        8 if is(b"THREADID") => {
            let (r, _) = sp1(r)?;
            match nil(r) {
                Ok((r, ())) => Ok((r, FetchItem::ThreadId(None))),
                Err(_) => objectid_paren(r).map(|(r, v)| (r, FetchItem::ThreadId(Some(v)))),
            }
        }
        10 if is(b"X-GM-MSGID") => sp_then(r, number64).map(|(r, v)| (r, FetchItem::GmMsgId(v))),
        10 if is(b"X-GM-THRID") => sp_then(r, number64).map(|(r, v)| (r, FetchItem::GmThrId(v))),
        11 if is(b"X-GM-LABELS") => {
            let (r, span) = sp_then(r, |i| paren_list(i, gm_label, 0))?;
            Ok((r, FetchItem::GmLabels(GmLabels::from_validated(span))))
        }
        8 if is(b"ENVELOPE") => sp_then(r, paren_value).map(|(r, v)| (r, FetchItem::Envelope(v))),
        13 if is(b"BODYSTRUCTURE") => {
            sp_then(r, paren_value).map(|(r, v)| (r, FetchItem::BodyStructure(v)))
        }
        _ => {
            // Unknown attribute: keep `name[section]<origin>` and its value raw.
            let (r, full) = match r.first() {
                Some(b'[') => {
                    let (r2, _) = section(r)?;
                    (r2, &i[..i.len() - r2.len()])
                }
                _ => (r, name),
            };
            let (r, value) = sp_then(r, any_value)?;
            Ok((r, FetchItem::Other { name: full, value }))
        }
    }
}

/// The streamed attribute at the end of a head or tail: its name, section and `{N}` CRLF
/// with nothing after it.
fn streamed_item(i: &[u8]) -> PResult<'_, StreamedItem<'_>> {
    let (r, name) = fetch_name(i)?;
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    let (r, kind, binary) = if is(b"BODY") {
        let (r, s) = section(r)?;
        (r, StreamedKind::Body(s), false)
    } else if is(b"BINARY") {
        let (r, s) = section(r)?;
        (r, StreamedKind::Binary(s), true)
    } else if is(b"RFC822") || is(b"RFC822.TEXT") || is(b"RFC822.HEADER") {
        (r, StreamedKind::Rfc822(name), false)
    } else {
        return fail(i);
    };
    let (r, _) = sp1(r)?;
    let r = match r {
        [b'~', rest @ ..] if binary => rest,
        _ => r,
    };
    let (r, _) = tag(&b"{"[..])(r)?;
    let (r, len) = number64(r)?;
    let (r, _) = tag(&b"}"[..])(r)?;
    let (r, _) = crlf(r)?;
    if !r.is_empty() {
        return fail(r);
    }
    Ok((r, StreamedItem { kind, len }))
}

/// FETCH attributes up to `)` or up to a streamed attribute that ends the frame.
/// Returns the span of the complete attributes.
pub(super) fn fetch_items_until_streamed(
    i: &[u8],
    first_needs_no_space: bool,
) -> PResult<'_, (&[u8], Option<StreamedItem<'_>>)> {
    let mut rest = i;
    let mut first = first_needs_no_space;
    loop {
        let r = sp0(rest);
        let span = &i[..i.len() - r.len()];
        if let Some(after) = r.strip_prefix(b")") {
            return Ok((after, (span, None)));
        }
        if !first && r.len() == rest.len() {
            return fail(r);
        }
        if let Ok((after, item)) = streamed_item(r) {
            return Ok((after, (span, Some(item))));
        }
        let (after, _) = fetch_item(r)?;
        rest = after;
        first = false;
    }
}
