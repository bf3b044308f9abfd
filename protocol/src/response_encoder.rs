//! Writes server responses: the lines the proxy sends to its clients, and a canonical
//! re-encoding of any parsed [`Response`] (used to check that parsing is stable).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::syntax::is_atom_char;
use crate::types::*;

fn put_istring(out: &mut BytesMut, s: &IString<'_>) {
    match s {
        IString::Atom(b) => out.put_slice(b),
        IString::Quoted(b) => {
            out.put_u8(b'"');
            out.put_slice(b);
            out.put_u8(b'"');
        }
        IString::Literal(b) => {
            out.put_slice(format!("{{{}}}\r\n", b.len()).as_bytes());
            out.put_slice(b);
        }
    }
}

fn put_nstring(out: &mut BytesMut, s: &Option<IString<'_>>) {
    match s {
        None => out.put_slice(b"NIL"),
        Some(s) => put_istring(out, s),
    }
}

fn put_joined<T>(
    out: &mut BytesMut,
    items: impl Iterator<Item = T>,
    mut put: impl FnMut(&mut BytesMut, T),
) {
    for (k, item) in items.enumerate() {
        if k > 0 {
            out.put_u8(b' ');
        }
        put(out, item);
    }
}

fn put_flags<'a>(out: &mut BytesMut, flags: impl Iterator<Item = Flag<'a>>) {
    out.put_u8(b'(');
    put_joined(out, flags, |o, f| o.put_slice(&f.to_wire()));
    out.put_u8(b')');
}

fn put_delimiter(out: &mut BytesMut, d: Option<u8>) {
    match d {
        None => out.put_slice(b"NIL"),
        Some(c) => {
            out.put_u8(b'"');
            if c == b'"' || c == b'\\' {
                out.put_u8(b'\\');
            }
            out.put_u8(c);
            out.put_u8(b'"');
        }
    }
}

fn put_section(out: &mut BytesMut, name: &[u8], s: &Section<'_>) {
    out.put_slice(name);
    out.put_u8(b'[');
    out.put_slice(s.spec);
    out.put_u8(b']');
    if let Some(o) = s.origin {
        out.put_slice(format!("<{o}>").as_bytes());
    }
}

/// Writes a response code without the brackets.
pub fn put_code(out: &mut BytesMut, code: &Code<'_>) {
    let simple: &[u8] = match code {
        Code::Alert => b"ALERT",
        Code::ReadOnly => b"READ-ONLY",
        Code::ReadWrite => b"READ-WRITE",
        Code::TryCreate => b"TRYCREATE",
        Code::NoModSeq => b"NOMODSEQ",
        Code::UidNotSticky => b"UIDNOTSTICKY",
        Code::Closed => b"CLOSED",
        Code::TooBig => b"TOOBIG",
        Code::OverQuota => b"OVERQUOTA",
        Code::Limit => b"LIMIT",
        Code::Unavailable => b"UNAVAILABLE",
        Code::Throttled => b"THROTTLED",
        Code::Capability(c) => {
            out.put_slice(b"CAPABILITY ");
            put_joined(out, c.iter(), |o, a| o.put_slice(a));
            return;
        }
        Code::PermanentFlags(f) => {
            out.put_slice(b"PERMANENTFLAGS ");
            put_flags(out, f.iter());
            return;
        }
        Code::UidNext(n) => return out.put_slice(format!("UIDNEXT {n}").as_bytes()),
        Code::UidValidity(n) => return out.put_slice(format!("UIDVALIDITY {n}").as_bytes()),
        Code::Unseen(n) => return out.put_slice(format!("UNSEEN {n}").as_bytes()),
        Code::HighestModSeq(n) => return out.put_slice(format!("HIGHESTMODSEQ {n}").as_bytes()),
        Code::AppendUid { uid_validity, uids } => {
            out.put_slice(format!("APPENDUID {uid_validity} ").as_bytes());
            out.put_slice(uids.raw());
            return;
        }
        Code::CopyUid {
            uid_validity,
            source,
            dest,
        } => {
            out.put_slice(format!("COPYUID {uid_validity} ").as_bytes());
            out.put_slice(source.raw());
            out.put_u8(b' ');
            out.put_slice(dest.raw());
            return;
        }
        Code::Other { name, arg } => {
            out.put_slice(name);
            if let Some(a) = arg {
                out.put_u8(b' ');
                out.put_slice(a);
            }
            return;
        }
    };
    out.put_slice(simple);
}

fn put_status(out: &mut BytesMut, s: &StatusResponse<'_>) {
    match s.tag {
        Some(t) => out.put_slice(t),
        None => out.put_u8(b'*'),
    }
    out.put_u8(b' ');
    out.put_slice(s.kind.as_str().as_bytes());
    if let Some(c) = &s.code {
        out.put_slice(b" [");
        put_code(out, c);
        out.put_u8(b']');
    }
    if !s.text.is_empty() {
        out.put_u8(b' ');
        out.put_slice(s.text);
    }
    out.put_slice(b"\r\n");
}

fn status_attr_name<'a>(a: &StatusAttr<'a>) -> &'a [u8] {
    match a {
        StatusAttr::Messages => b"MESSAGES",
        StatusAttr::Recent => b"RECENT",
        StatusAttr::UidNext => b"UIDNEXT",
        StatusAttr::UidValidity => b"UIDVALIDITY",
        StatusAttr::Unseen => b"UNSEEN",
        StatusAttr::HighestModSeq => b"HIGHESTMODSEQ",
        StatusAttr::Size => b"SIZE",
        StatusAttr::AppendLimit => b"APPENDLIMIT",
        StatusAttr::Deleted => b"DELETED",
        StatusAttr::Other(n) => n,
    }
}

fn put_fetch_item(out: &mut BytesMut, item: FetchItem<'_>) {
    match item {
        FetchItem::Uid(u) => out.put_slice(format!("UID {u}").as_bytes()),
        FetchItem::Flags(f) => {
            out.put_slice(b"FLAGS ");
            put_flags(out, f.iter());
        }
        FetchItem::InternalDate(d) => {
            out.put_slice(b"INTERNALDATE \"");
            out.put_slice(d);
            out.put_u8(b'"');
        }
        FetchItem::Rfc822Size(n) => out.put_slice(format!("RFC822.SIZE {n}").as_bytes()),
        FetchItem::Body { section, data } => {
            put_section(out, b"BODY", &section);
            out.put_u8(b' ');
            put_nstring(out, &data);
        }
        FetchItem::Binary { section, data } => {
            put_section(out, b"BINARY", &section);
            out.put_u8(b' ');
            match data {
                Some(IString::Literal(b)) => {
                    out.put_slice(format!("~{{{}}}\r\n", b.len()).as_bytes());
                    out.put_slice(b);
                }
                other => put_nstring(out, &other),
            }
        }
        FetchItem::BinarySize { section, size } => {
            put_section(
                out,
                b"BINARY.SIZE",
                &Section {
                    spec: section,
                    origin: None,
                },
            );
            out.put_slice(format!(" {size}").as_bytes());
        }
        FetchItem::Rfc822 { name, data } => {
            out.put_slice(name);
            out.put_u8(b' ');
            put_nstring(out, &data);
        }
        FetchItem::ModSeq(m) => out.put_slice(format!("MODSEQ ({m})").as_bytes()),
        FetchItem::EmailId(id) => {
            out.put_slice(b"EMAILID (");
            out.put_slice(id);
            out.put_u8(b')');
        }
        FetchItem::ThreadId(None) => out.put_slice(b"THREADID NIL"),
        FetchItem::ThreadId(Some(id)) => {
            out.put_slice(b"THREADID (");
            out.put_slice(id);
            out.put_u8(b')');
        }
        FetchItem::GmMsgId(n) => out.put_slice(format!("X-GM-MSGID {n}").as_bytes()),
        FetchItem::GmThrId(n) => out.put_slice(format!("X-GM-THRID {n}").as_bytes()),
        FetchItem::GmLabels(l) => {
            out.put_slice(b"X-GM-LABELS (");
            put_joined(out, l.iter(), |o, s| put_istring(o, &s));
            out.put_u8(b')');
        }
        FetchItem::Envelope(raw) => {
            out.put_slice(b"ENVELOPE ");
            out.put_slice(raw);
        }
        FetchItem::BodyStructure(raw) => {
            out.put_slice(b"BODYSTRUCTURE ");
            out.put_slice(raw);
        }
        FetchItem::Other { name, value } => {
            out.put_slice(name);
            out.put_u8(b' ');
            out.put_slice(value);
        }
    }
}

fn put_data(out: &mut BytesMut, d: &Data<'_>) {
    out.put_slice(b"* ");
    match d {
        Data::Capability(c) | Data::Enabled(c) => {
            out.put_slice(if matches!(d, Data::Capability(_)) {
                b"CAPABILITY"
            } else {
                b"ENABLED"
            });
            for a in c.iter() {
                out.put_u8(b' ');
                out.put_slice(a);
            }
        }
        Data::List(l) | Data::Lsub(l) => {
            out.put_slice(if matches!(d, Data::List(_)) {
                b"LIST "
            } else {
                b"LSUB "
            });
            put_flags(out, l.attributes.iter());
            out.put_u8(b' ');
            put_delimiter(out, l.delimiter);
            out.put_u8(b' ');
            put_istring(out, &l.mailbox.0);
            if !l.extended.is_empty() {
                out.put_slice(b" (");
                put_joined(out, l.extended.iter(), |o, (t, v)| {
                    put_istring(o, &t);
                    o.put_u8(b' ');
                    o.put_slice(v);
                });
                out.put_u8(b')');
            }
        }
        Data::Status(s) => {
            out.put_slice(b"STATUS ");
            put_istring(out, &s.mailbox.0);
            out.put_slice(b" (");
            put_joined(out, s.items.iter(), |o, i| {
                o.put_slice(status_attr_name(&i.attr));
                match i.value {
                    Some(v) => o.put_slice(format!(" {v}").as_bytes()),
                    None => o.put_slice(b" NIL"),
                }
            });
            out.put_u8(b')');
        }
        Data::Flags(f) => {
            out.put_slice(b"FLAGS ");
            put_flags(out, f.iter());
        }
        Data::Exists(n) => out.put_slice(format!("{n} EXISTS").as_bytes()),
        Data::Recent(n) => out.put_slice(format!("{n} RECENT").as_bytes()),
        Data::Expunge(n) => out.put_slice(format!("{n} EXPUNGE").as_bytes()),
        Data::Vanished { earlier, uids } => {
            out.put_slice(if *earlier {
                b"VANISHED (EARLIER) "
            } else {
                b"VANISHED "
            });
            out.put_slice(uids.raw());
        }
        Data::Fetch(f) => {
            out.put_slice(format!("{} FETCH (", f.seq).as_bytes());
            put_joined(out, f.attrs.iter(), put_fetch_item);
            out.put_u8(b')');
        }
        Data::Search(s) => {
            out.put_slice(b"SEARCH");
            for n in s.nums.iter() {
                out.put_slice(format!(" {n}").as_bytes());
            }
            if let Some(m) = s.modseq {
                out.put_slice(format!(" (MODSEQ {m})").as_bytes());
            }
        }
        Data::Esearch(e) => {
            out.put_slice(b"ESEARCH");
            if let Some(t) = &e.tag {
                out.put_slice(b" (TAG ");
                put_istring(out, t);
                out.put_u8(b')');
            }
            if e.uid {
                out.put_slice(b" UID");
            }
            for i in e.items.iter() {
                out.put_u8(b' ');
                out.put_slice(i.name);
                out.put_u8(b' ');
                out.put_slice(i.value);
            }
        }
        Data::Namespace(n) => {
            out.put_slice(b"NAMESPACE");
            for class in [&n.personal, &n.other_users, &n.shared] {
                out.put_u8(b' ');
                match class {
                    None => out.put_slice(b"NIL"),
                    Some(list) => {
                        out.put_u8(b'(');
                        for d in list.iter() {
                            out.put_u8(b'(');
                            put_istring(out, &d.prefix);
                            out.put_u8(b' ');
                            put_delimiter(out, d.delimiter);
                            out.put_u8(b')');
                        }
                        out.put_u8(b')');
                    }
                }
            }
        }
        Data::Id(None) => out.put_slice(b"ID NIL"),
        Data::Id(Some(p)) => {
            out.put_slice(b"ID (");
            put_joined(out, p.iter(), |o, (k, v)| {
                put_istring(o, &k);
                o.put_u8(b' ');
                put_nstring(o, &v);
            });
            out.put_u8(b')');
        }
        Data::Other { name, rest } => {
            out.put_slice(name);
            out.put_slice(rest);
        }
    }
    out.put_slice(b"\r\n");
}

/// Appends the canonical encoding of `response` to `out`.
///
/// Lists are written with single spaces; strings, raw spans (ENVELOPE, BODYSTRUCTURE,
/// unknown codes and data) and literals are written exactly as they were received.
pub fn encode_response(response: &Response<'_>, out: &mut BytesMut) {
    match response {
        Response::Status(s) => put_status(out, s),
        Response::Data(d) => put_data(out, d),
        Response::Continuation(c) => {
            out.put_slice(b"+ ");
            out.put_slice(c.text);
            out.put_slice(b"\r\n");
        }
    }
}

fn check_text(what: &'static str, text: &str) -> Result<()> {
    if text.contains(['\r', '\n', '\0']) {
        return Err(Error::InvalidInput {
            what,
            reason: "it contains a line break or NUL byte",
        });
    }
    Ok(())
}

/// A status line: `tag|* OK|NO|BAD|BYE|PREAUTH [code] text` CRLF.
pub fn status_line(
    tag: Option<&str>,
    kind: StatusKind,
    code: Option<&Code<'_>>,
    text: &str,
) -> Result<Bytes> {
    check_text("a status text", text)?;
    if let Some(t) = tag {
        if t.is_empty()
            || !t
                .bytes()
                .all(|b| b.is_ascii() && crate::syntax::is_astring_char(b) && b != b'+')
        {
            return Err(Error::InvalidInput {
                what: "a response tag",
                reason: "tags are non-empty atoms without '+'",
            });
        }
        if matches!(kind, StatusKind::Bye | StatusKind::PreAuth) {
            return Err(Error::InvalidInput {
                what: "a tagged response",
                reason: "BYE and PREAUTH are never tagged",
            });
        }
    }
    if text.is_empty() || text.starts_with('[') && code.is_none() {
        return Err(Error::InvalidInput {
            what: "a status text",
            reason: "it must be non-empty and must not start with '['",
        });
    }
    let mut out = BytesMut::with_capacity(64 + text.len());
    put_status(
        &mut out,
        &StatusResponse {
            tag: tag.map(str::as_bytes),
            kind,
            code: code.copied(),
            text: text.as_bytes(),
        },
    );
    Ok(out.freeze())
}

/// `* CAPABILITY cap...` CRLF.
pub fn capability_line(caps: &[&str]) -> Result<Bytes> {
    let mut out = BytesMut::from(&b"* CAPABILITY"[..]);
    for c in caps {
        if c.is_empty() || !c.bytes().all(|b| b.is_ascii() && is_atom_char(b)) {
            return Err(Error::InvalidInput {
                what: "a capability",
                reason: "capabilities are atoms",
            });
        }
        out.put_u8(b' ');
        out.put_slice(c.as_bytes());
    }
    out.put_slice(b"\r\n");
    Ok(out.freeze())
}

/// `+ text` CRLF (a continuation request; `text` may be base64 for SASL).
pub fn continuation_line(text: &str) -> Result<Bytes> {
    check_text("a continuation text", text)?;
    Ok(Bytes::from(format!("+ {text}\r\n")))
}

/// `* ID (...)` or `* ID NIL` CRLF (RFC 2971).
pub fn id_line(params: Option<&[(&str, Option<&str>)]>) -> Result<Bytes> {
    let mut out = BytesMut::from(&b"* ID "[..]);
    let Some(params) = params else {
        out.put_slice(b"NIL\r\n");
        return Ok(out.freeze());
    };
    out.put_u8(b'(');
    for (k, (field, value)) in params.iter().enumerate() {
        if k > 0 {
            out.put_u8(b' ');
        }
        put_quoted("an ID field", &mut out, field)?;
        out.put_u8(b' ');
        match value {
            Some(v) => put_quoted("an ID value", &mut out, v)?,
            None => out.put_slice(b"NIL"),
        }
    }
    out.put_slice(b")\r\n");
    Ok(out.freeze())
}

fn put_quoted(what: &'static str, out: &mut BytesMut, s: &str) -> Result<()> {
    check_text(what, s)?;
    out.put_u8(b'"');
    for b in s.bytes() {
        if b == b'"' || b == b'\\' {
            out.put_u8(b'\\');
        }
        out.put_u8(b);
    }
    out.put_u8(b'"');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_response;

    fn canonical(frame: &[u8]) -> Vec<u8> {
        let r = parse_response(frame).unwrap();
        let mut out = BytesMut::new();
        encode_response(&r, &mut out);
        out.to_vec()
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(
            canonical(b"* OK [HIGHESTMODSEQ 5]\r\n"),
            b"* OK [HIGHESTMODSEQ 5]\r\n"
        );
        assert_eq!(
            canonical(b"[COPYUID 124 10 233]\r\n"),
            b"* OK [COPYUID 124 10 233]\r\n"
        );
        assert_eq!(
            canonical(b"* CAPABILITY IMAP4rev1  IDLE \r\n"),
            b"* CAPABILITY IMAP4rev1 IDLE\r\n"
        );
        assert_eq!(
            canonical(b"* LIST (\\Sent\\HasNoChildren) \"/\" Sent\r\n"),
            b"* LIST (\\Sent \\HasNoChildren) \"/\" Sent\r\n"
        );
        assert_eq!(
            canonical(b"* 1 FETCH (UID 7 FLAGS (\\Seen) BODY[] {3}\r\nabc BINARY[] {1}\r\nx)\r\n"),
            b"* 1 FETCH (UID 7 FLAGS (\\Seen) BODY[] {3}\r\nabc BINARY[] ~{1}\r\nx)\r\n"
        );
        assert_eq!(
            canonical(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"),
            b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
        );
        assert_eq!(canonical(b"+\r\n"), b"+ \r\n");
    }

    #[test]
    fn proxy_lines() {
        let caps = crate::Capabilities::parse(b"IMAP4rev1 STARTTLS").unwrap();
        assert_eq!(
            &status_line(
                None,
                StatusKind::Ok,
                Some(&Code::Capability(caps)),
                "imapmirror ready"
            )
            .unwrap()[..],
            b"* OK [CAPABILITY IMAP4rev1 STARTTLS] imapmirror ready\r\n"
        );
        assert_eq!(
            &status_line(Some("a1"), StatusKind::No, None, "no").unwrap()[..],
            b"a1 NO no\r\n"
        );
        assert!(status_line(Some("a1"), StatusKind::Bye, None, "x").is_err());
        assert!(status_line(None, StatusKind::Ok, None, "a\r\nb").is_err());
        assert!(status_line(None, StatusKind::Ok, None, "[ALERT] x").is_err());
        assert_eq!(
            &capability_line(&["IMAP4rev1", "ID"]).unwrap()[..],
            b"* CAPABILITY IMAP4rev1 ID\r\n"
        );
        assert!(capability_line(&["a b"]).is_err());
        assert_eq!(&continuation_line("").unwrap()[..], b"+ \r\n");
        assert_eq!(
            &id_line(Some(&[("name", Some("im\"m"))])).unwrap()[..],
            b"* ID (\"name\" \"im\\\"m\")\r\n"
        );
        assert_eq!(&id_line(None).unwrap()[..], b"* ID NIL\r\n");
    }
}
