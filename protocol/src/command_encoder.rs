//! Encodes the engine's commands as segments to write, with the points where the writer
//! must wait for the server's continuation request (`+`) and where it streams a body.
//!
//! An APPEND of a 50 MB message is thus: the command head up to `{N}` CRLF, then (for a
//! synchronizing literal) a wait for `+`, then the body written by the caller in chunks,
//! then the rest. With LITERAL+ there is no wait, so APPENDs can be pipelined.

use bytes::{BufMut, Bytes, BytesMut};

use crate::command::*;
use crate::error::{Error, Result};
use crate::literal_mode::LiteralMode;
use crate::sasl;
use crate::syntax::{is_astring_char, is_atom_char};
use crate::types::{Flag, MailboxAttr, StatusAttr};

/// One step of writing a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Bytes to write as they are.
    Data(Bytes),
    /// Flush, then read responses until a continuation request (`+`) arrives before
    /// writing the next segment. A tagged NO/BAD for this command instead means the
    /// server refused: write nothing more of it.
    AwaitContinuation,
    /// Write exactly `len` bytes of the message body now (the caller's own chunks), then
    /// go on with the next segment.
    StreamedBody {
        /// How many bytes.
        len: u64,
    },
}

/// A command ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedCommand {
    /// The segments, in order.
    pub segments: Vec<Segment>,
    /// True when the bytes hold a password or token: never log them.
    pub contains_secret: bool,
}

impl EncodedCommand {
    /// All bytes in one buffer, ignoring the waits; `None` when a body is streamed.
    /// Meant for tests and logs of commands without literals.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        for s in &self.segments {
            match s {
                Segment::Data(b) => v.extend_from_slice(b),
                Segment::AwaitContinuation => {}
                Segment::StreamedBody { .. } => return None,
            }
        }
        Some(v)
    }

    /// How many continuation requests the writer will wait for.
    pub fn continuation_waits(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::AwaitContinuation))
            .count()
    }
}

/// What the server offers that changes how commands are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncoderOptions {
    /// Which literals may skip the wait for `+`.
    pub literal_mode: LiteralMode,
    /// UTF8=ACCEPT is enabled (RFC 6855): mailbox names go out as UTF-8 quoted strings.
    pub utf8_accept: bool,
}

/// Encodes commands; holds only the options, so it is cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommandEncoder {
    /// The options in force.
    pub options: EncoderOptions,
}

struct Out {
    segments: Vec<Segment>,
    buf: BytesMut,
    mode: LiteralMode,
}

impl Out {
    fn put(&mut self, b: &[u8]) {
        self.buf.put_slice(b);
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.segments.push(Segment::Data(self.buf.split().freeze()));
        }
    }

    fn literal_head(&mut self, len: u64) {
        let non_sync = self.mode.non_sync(len);
        self.put(b"{");
        self.put(len.to_string().as_bytes());
        self.put(if non_sync { b"+}\r\n" } else { b"}\r\n" });
        if !non_sync {
            self.flush();
            self.segments.push(Segment::AwaitContinuation);
        }
    }

    fn body(&mut self, body: &LiteralBody) {
        self.literal_head(body.len());
        self.flush();
        match body {
            LiteralBody::Bytes(b) => {
                if !b.is_empty() {
                    self.segments.push(Segment::Data(b.clone()));
                }
            }
            LiteralBody::Streamed { len } => {
                self.segments.push(Segment::StreamedBody { len: *len })
            }
        }
    }

    fn finish(mut self) -> Vec<Segment> {
        self.put(b"\r\n");
        self.flush();
        self.segments
    }
}

fn invalid(what: &'static str, reason: &'static str) -> Error {
    Error::InvalidInput { what, reason }
}

/// Writes `s` as an `astring`: an atom when possible, else a quoted string, else a
/// literal. `allow_atom` is false where an atom could read as NIL.
fn write_string(
    out: &mut Out,
    what: &'static str,
    s: &[u8],
    utf8: bool,
    allow_atom: bool,
) -> Result<()> {
    if s.contains(&0) {
        return Err(invalid(
            what,
            "it contains a NUL byte, which IMAP cannot carry in a string",
        ));
    }
    if allow_atom && !s.is_empty() && s.iter().all(|&b| b.is_ascii() && is_astring_char(b)) {
        out.put(s);
        return Ok(());
    }
    let quotable = s
        .iter()
        .all(|&b| b != b'\r' && b != b'\n' && (b.is_ascii() || utf8))
        && (s.is_ascii() || std::str::from_utf8(s).is_ok());
    if quotable && s.len() <= 1024 {
        out.put(b"\"");
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.put(b"\\");
            }
            out.put(&[b]);
        }
        out.put(b"\"");
        return Ok(());
    }
    out.literal_head(s.len() as u64);
    out.put(s);
    Ok(())
}

fn mailbox_bytes(name: &MailboxName<'_>, utf8: bool) -> Vec<u8> {
    match name {
        MailboxName::Wire(w) => w.to_vec(),
        MailboxName::Unicode(u) if utf8 => u.as_bytes().to_vec(),
        MailboxName::Unicode(u) => crate::mutf7::encode(u).into_bytes(),
    }
}

fn write_mailbox(out: &mut Out, name: &MailboxName<'_>, utf8: bool) -> Result<()> {
    let b = mailbox_bytes(name, utf8);
    write_string(out, "a mailbox name", &b, utf8, true)
}

/// `list-mailbox = 1*list-char / string`: wildcards stay unquoted when possible.
fn write_pattern(out: &mut Out, name: &MailboxName<'_>, utf8: bool) -> Result<()> {
    let b = mailbox_bytes(name, utf8);
    if !b.is_empty()
        && b.iter()
            .all(|&c| c.is_ascii() && (is_astring_char(c) || c == b'%' || c == b'*'))
    {
        out.put(&b);
        return Ok(());
    }
    write_string(out, "a LIST pattern", &b, utf8, false)
}

fn check_atom(what: &'static str, s: &[u8]) -> Result<()> {
    if s.is_empty() || !s.iter().all(|&b| b.is_ascii() && is_atom_char(b)) {
        return Err(invalid(
            what,
            "it is empty or holds a space, bracket, quote or other special character",
        ));
    }
    Ok(())
}

fn write_flags(out: &mut Out, flags: &[Flag<'_>]) -> Result<()> {
    out.put(b"(");
    for (k, f) in flags.iter().enumerate() {
        match f {
            Flag::Recent => {
                return Err(invalid(
                    "a flag",
                    "\\Recent is set by the server and cannot be stored",
                ));
            }
            Flag::MayCreate => return Err(invalid("a flag", "\\* is not a flag")),
            Flag::Keyword(k) => check_atom("a keyword", k)?,
            Flag::Extension(e) => check_atom("a flag", e)?,
            _ => {}
        }
        if k > 0 {
            out.put(b" ");
        }
        out.put(&f.to_wire());
    }
    out.put(b")");
    Ok(())
}

/// `sequence-set` (RFC 3501): `(nz-number / "*") [":" (nz-number / "*")]`, comma-separated.
fn check_sequence_set(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.split(',').all(|range| {
            let mut parts = range.split(':');
            let valid = |p: &str| {
                p == "*" || (p.parse::<u32>().is_ok_and(|n| n > 0) && !p.starts_with('+'))
            };
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), None, _) => valid(a),
                (Some(a), Some(b), None) => valid(a) && valid(b),
                _ => false,
            }
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "a UID set",
            "it is not a sequence set such as 1:* or 4,7:9",
        ))
    }
}

fn check_text(what: &'static str, s: &str) -> Result<()> {
    if s.is_empty() || !s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'{') {
        return Err(invalid(
            what,
            "it must be non-empty printable ASCII without literals",
        ));
    }
    Ok(())
}

fn check_section(s: &str) -> Result<()> {
    if !s
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b']' && b != b'[')
    {
        return Err(invalid(
            "a body section",
            "it must be printable ASCII without brackets",
        ));
    }
    Ok(())
}

fn status_attr_name<'a>(a: &StatusAttr<'a>) -> Result<&'a [u8]> {
    Ok(match a {
        StatusAttr::Messages => b"MESSAGES",
        StatusAttr::Recent => b"RECENT",
        StatusAttr::UidNext => b"UIDNEXT",
        StatusAttr::UidValidity => b"UIDVALIDITY",
        StatusAttr::Unseen => b"UNSEEN",
        StatusAttr::HighestModSeq => b"HIGHESTMODSEQ",
        StatusAttr::Size => b"SIZE",
        StatusAttr::AppendLimit => b"APPENDLIMIT",
        StatusAttr::Deleted => b"DELETED",
        StatusAttr::Other(n) => {
            check_atom("a STATUS attribute", n)?;
            n
        }
    })
}

fn write_status_attrs(out: &mut Out, attrs: &[StatusAttr<'_>]) -> Result<()> {
    out.put(b"(");
    for (k, a) in attrs.iter().enumerate() {
        if k > 0 {
            out.put(b" ");
        }
        out.put(status_attr_name(a)?);
    }
    out.put(b")");
    Ok(())
}

fn mailbox_attr_name(a: &MailboxAttr<'_>) -> Result<Vec<u8>> {
    let name: &[u8] = match a {
        MailboxAttr::All => b"\\All",
        MailboxAttr::Archive => b"\\Archive",
        MailboxAttr::Drafts => b"\\Drafts",
        MailboxAttr::Flagged => b"\\Flagged",
        MailboxAttr::Junk => b"\\Junk",
        MailboxAttr::Sent => b"\\Sent",
        MailboxAttr::Trash => b"\\Trash",
        MailboxAttr::Important => b"\\Important",
        MailboxAttr::Other(Flag::Extension(e)) => {
            check_atom("a special-use attribute", e)?;
            let mut v = b"\\".to_vec();
            v.extend_from_slice(e);
            return Ok(v);
        }
        _ => {
            return Err(invalid(
                "a special-use attribute",
                "only special-use attributes can be given to CREATE",
            ));
        }
    };
    Ok(name.to_vec())
}

fn fetch_attr(out: &mut Out, a: &FetchAttr<'_>) -> Result<()> {
    let simple: &[u8] = match a {
        FetchAttr::Uid => b"UID",
        FetchAttr::Flags => b"FLAGS",
        FetchAttr::InternalDate => b"INTERNALDATE",
        FetchAttr::Rfc822Size => b"RFC822.SIZE",
        FetchAttr::Envelope => b"ENVELOPE",
        FetchAttr::BodyStructure => b"BODYSTRUCTURE",
        FetchAttr::ModSeq => b"MODSEQ",
        FetchAttr::EmailId => b"EMAILID",
        FetchAttr::ThreadId => b"THREADID",
        FetchAttr::GmMsgId => b"X-GM-MSGID",
        FetchAttr::GmThrId => b"X-GM-THRID",
        FetchAttr::GmLabels => b"X-GM-LABELS",
        FetchAttr::BodyPeek(s) | FetchAttr::Body(s) | FetchAttr::BinaryPeek(s) => {
            check_section(s)?;
            out.put(match a {
                FetchAttr::BodyPeek(_) => b"BODY.PEEK[",
                FetchAttr::Body(_) => b"BODY[",
                _ => b"BINARY.PEEK[",
            });
            out.put(s.as_bytes());
            out.put(b"]");
            return Ok(());
        }
        FetchAttr::BodyPeekPartial {
            section,
            offset,
            len,
        } => {
            check_section(section)?;
            if *len == 0 {
                return Err(invalid(
                    "a partial fetch",
                    "its length must be at least 1 (RFC 3501 nz-number)",
                ));
            }
            out.put(b"BODY.PEEK[");
            out.put(section.as_bytes());
            out.put(format!("]<{offset}.{len}>").as_bytes());
            return Ok(());
        }
    };
    out.put(simple);
    Ok(())
}

impl CommandEncoder {
    /// An encoder with the given options.
    pub fn new(options: EncoderOptions) -> Self {
        CommandEncoder { options }
    }

    /// `DONE` CRLF, which ends IDLE (RFC 2177).
    pub fn done() -> Bytes {
        Bytes::from_static(b"DONE\r\n")
    }

    /// One SASL response line: base64 of `data` and CRLF (an empty response is an empty
    /// line, as XOAUTH2's error step needs).
    pub fn sasl_response(data: &[u8]) -> Bytes {
        let mut s = sasl::base64_encode(data).into_bytes();
        s.extend_from_slice(b"\r\n");
        Bytes::from(s)
    }

    /// `*` CRLF: abandons an AUTHENTICATE exchange.
    pub fn sasl_cancel() -> Bytes {
        Bytes::from_static(b"*\r\n")
    }

    /// Encodes `command` with `tag` (`1*<ASTRING-CHAR except "+">`).
    pub fn encode(&self, tag: &str, command: &Command<'_>) -> Result<EncodedCommand> {
        if tag.is_empty()
            || !tag
                .bytes()
                .all(|b| b.is_ascii() && is_astring_char(b) && b != b'+')
        {
            return Err(invalid(
                "a command tag",
                "tags are non-empty atoms without '+'",
            ));
        }
        let utf8 = self.options.utf8_accept;
        let mut out = Out {
            segments: Vec::with_capacity(2),
            buf: BytesMut::with_capacity(128),
            mode: self.options.literal_mode,
        };
        out.put(tag.as_bytes());
        out.put(b" ");
        let mut contains_secret = false;
        match command {
            Command::Capability => out.put(b"CAPABILITY"),
            Command::Noop => out.put(b"NOOP"),
            Command::Logout => out.put(b"LOGOUT"),
            Command::StartTls => out.put(b"STARTTLS"),
            Command::Namespace => out.put(b"NAMESPACE"),
            Command::Idle => out.put(b"IDLE"),
            Command::Expunge => out.put(b"EXPUNGE"),
            Command::UidExpunge(uids) => {
                check_sequence_set(uids)?;
                out.put(b"UID EXPUNGE ");
                out.put(uids.as_bytes());
            }
            Command::Login { username, password } => {
                contains_secret = true;
                out.put(b"LOGIN ");
                write_string(&mut out, "a user name", username.as_bytes(), true, true)?;
                out.put(b" ");
                write_string(&mut out, "a password", password.as_bytes(), true, true)?;
            }
            Command::Authenticate { auth, sasl_ir } => {
                return self.authenticate(out, auth, *sasl_ir);
            }
            Command::Enable(caps) => {
                if caps.is_empty() {
                    return Err(invalid("ENABLE", "it needs at least one capability"));
                }
                out.put(b"ENABLE");
                for c in *caps {
                    check_atom("a capability", c.as_bytes())?;
                    out.put(b" ");
                    out.put(c.as_bytes());
                }
            }
            Command::Id(params) => {
                out.put(b"ID ");
                match params {
                    None => out.put(b"NIL"),
                    Some(params) => {
                        out.put(b"(");
                        for (k, (field, value)) in params.iter().enumerate() {
                            if field.len() > 30 {
                                return Err(invalid(
                                    "an ID field",
                                    "field names are at most 30 bytes (RFC 2971)",
                                ));
                            }
                            if k > 0 {
                                out.put(b" ");
                            }
                            write_string(&mut out, "an ID field", field.as_bytes(), true, false)?;
                            out.put(b" ");
                            match value {
                                None => out.put(b"NIL"),
                                Some(v) if v.len() > 1024 => {
                                    return Err(invalid(
                                        "an ID value",
                                        "values are at most 1024 bytes (RFC 2971)",
                                    ));
                                }
                                Some(v) => write_string(
                                    &mut out,
                                    "an ID value",
                                    v.as_bytes(),
                                    true,
                                    false,
                                )?,
                            }
                        }
                        out.put(b")");
                    }
                }
            }
            Command::List(l) => {
                out.put(b"LIST ");
                if l.select_special_use {
                    out.put(b"(SPECIAL-USE) ");
                }
                write_string(
                    &mut out,
                    "a LIST reference",
                    &mailbox_bytes(&l.reference, utf8),
                    utf8,
                    true,
                )?;
                out.put(b" ");
                write_pattern(&mut out, &l.pattern, utf8)?;
                let mut opts: Vec<&[u8]> = Vec::new();
                if l.return_special_use {
                    opts.push(b"SPECIAL-USE");
                }
                if l.return_subscribed {
                    opts.push(b"SUBSCRIBED");
                }
                if !opts.is_empty() || !l.return_status.is_empty() {
                    out.put(b" RETURN (");
                    out.put(&opts.join(&b" "[..]));
                    if !l.return_status.is_empty() {
                        if !opts.is_empty() {
                            out.put(b" ");
                        }
                        out.put(b"STATUS ");
                        write_status_attrs(&mut out, l.return_status)?;
                    }
                    out.put(b")");
                }
            }
            Command::Lsub { reference, pattern } => {
                out.put(b"LSUB ");
                write_string(
                    &mut out,
                    "an LSUB reference",
                    &mailbox_bytes(reference, utf8),
                    utf8,
                    true,
                )?;
                out.put(b" ");
                write_pattern(&mut out, pattern, utf8)?;
            }
            Command::Status { mailbox, attrs } => {
                if attrs.is_empty() {
                    return Err(invalid("STATUS", "it needs at least one attribute"));
                }
                out.put(b"STATUS ");
                write_mailbox(&mut out, mailbox, utf8)?;
                out.put(b" ");
                write_status_attrs(&mut out, attrs)?;
            }
            Command::Select { mailbox, condstore } | Command::Examine { mailbox, condstore } => {
                out.put(if matches!(command, Command::Select { .. }) {
                    b"SELECT "
                } else {
                    b"EXAMINE "
                });
                write_mailbox(&mut out, mailbox, utf8)?;
                if *condstore {
                    out.put(b" (CONDSTORE)");
                }
            }
            Command::UidFetch {
                uids,
                attrs,
                changed_since,
                vanished,
            } => {
                check_sequence_set(uids)?;
                if attrs.is_empty() {
                    return Err(invalid("UID FETCH", "it needs at least one attribute"));
                }
                if *vanished && changed_since.is_none() {
                    return Err(invalid(
                        "UID FETCH",
                        "VANISHED needs CHANGEDSINCE (RFC 7162)",
                    ));
                }
                out.put(b"UID FETCH ");
                out.put(uids.as_bytes());
                out.put(b" (");
                for (k, a) in attrs.iter().enumerate() {
                    if k > 0 {
                        out.put(b" ");
                    }
                    fetch_attr(&mut out, a)?;
                }
                out.put(b")");
                if let Some(m) = changed_since {
                    out.put(format!(" (CHANGEDSINCE {m}").as_bytes());
                    if *vanished {
                        out.put(b" VANISHED");
                    }
                    out.put(b")");
                }
            }
            Command::UidSearch {
                return_options,
                criteria,
            } => {
                check_text("search criteria", criteria)?;
                out.put(b"UID SEARCH ");
                if !return_options.is_empty() {
                    out.put(b"RETURN (");
                    for (k, o) in return_options.iter().enumerate() {
                        check_atom("an ESEARCH return option", o.as_bytes())?;
                        if k > 0 {
                            out.put(b" ");
                        }
                        out.put(o.as_bytes());
                    }
                    out.put(b") ");
                }
                out.put(criteria.as_bytes());
            }
            Command::UidStore {
                uids,
                mode,
                silent,
                flags,
                unchanged_since,
            } => {
                check_sequence_set(uids)?;
                out.put(b"UID STORE ");
                out.put(uids.as_bytes());
                if let Some(m) = unchanged_since {
                    out.put(format!(" (UNCHANGEDSINCE {m})").as_bytes());
                }
                out.put(match mode {
                    StoreMode::Replace => b" FLAGS",
                    StoreMode::Add => b" +FLAGS",
                    StoreMode::Remove => b" -FLAGS",
                });
                if *silent {
                    out.put(b".SILENT");
                }
                out.put(b" ");
                write_flags(&mut out, flags)?;
            }
            Command::Create {
                mailbox,
                special_use,
            } => {
                out.put(b"CREATE ");
                write_mailbox(&mut out, mailbox, utf8)?;
                if !special_use.is_empty() {
                    out.put(b" (USE (");
                    for (k, a) in special_use.iter().enumerate() {
                        if k > 0 {
                            out.put(b" ");
                        }
                        out.put(&mailbox_attr_name(a)?);
                    }
                    out.put(b"))");
                }
            }
            Command::Rename { from, to } => {
                out.put(b"RENAME ");
                write_mailbox(&mut out, from, utf8)?;
                out.put(b" ");
                write_mailbox(&mut out, to, utf8)?;
            }
            Command::Delete { mailbox } => {
                out.put(b"DELETE ");
                write_mailbox(&mut out, mailbox, utf8)?;
            }
            Command::Subscribe { mailbox } => {
                out.put(b"SUBSCRIBE ");
                write_mailbox(&mut out, mailbox, utf8)?;
            }
            Command::Append { mailbox, messages } => {
                if messages.is_empty() {
                    return Err(invalid("APPEND", "it needs at least one message"));
                }
                out.put(b"APPEND ");
                write_mailbox(&mut out, mailbox, utf8)?;
                for m in *messages {
                    out.put(b" ");
                    if !m.flags.is_empty() {
                        write_flags(&mut out, m.flags)?;
                        out.put(b" ");
                    }
                    if let Some(d) = &m.internal_date {
                        out.put(format!("\"{d}\" ").as_bytes());
                    }
                    out.body(&m.body);
                }
            }
        }
        Ok(EncodedCommand {
            segments: out.finish(),
            contains_secret,
        })
    }

    fn authenticate(
        &self,
        mut out: Out,
        auth: &SaslAuth<'_>,
        sasl_ir: bool,
    ) -> Result<EncodedCommand> {
        let (mech, first): (&[u8], Vec<u8>) = match auth {
            SaslAuth::Plain {
                authzid,
                authcid,
                password,
            } => (b"PLAIN", sasl::plain(authzid, authcid, password)?),
            SaslAuth::XOAuth2 { user, access_token } => {
                (b"XOAUTH2", sasl::xoauth2(user, access_token)?)
            }
            SaslAuth::OAuthBearer {
                user,
                host,
                port,
                access_token,
            } => (
                b"OAUTHBEARER",
                sasl::oauthbearer(user, host, *port, access_token)?,
            ),
            SaslAuth::Login { username, password } => {
                for (what, s) in [("a user name", username), ("a password", password)] {
                    if s.contains(['\r', '\n']) {
                        return Err(invalid(what, "it contains a line break"));
                    }
                }
                out.put(b"AUTHENTICATE LOGIN\r\n");
                out.flush();
                for step in [username, password] {
                    out.segments.push(Segment::AwaitContinuation);
                    out.segments
                        .push(Segment::Data(Self::sasl_response(step.as_bytes())));
                }
                return Ok(EncodedCommand {
                    segments: out.segments,
                    contains_secret: true,
                });
            }
        };
        out.put(b"AUTHENTICATE ");
        out.put(mech);
        if sasl_ir {
            out.put(b" ");
            if first.is_empty() {
                out.put(b"=");
            } else {
                out.put(sasl::base64_encode(&first).as_bytes());
            }
            out.put(b"\r\n");
            out.flush();
        } else {
            out.put(b"\r\n");
            out.flush();
            out.segments.push(Segment::AwaitContinuation);
            out.segments
                .push(Segment::Data(Self::sasl_response(&first)));
        }
        Ok(EncodedCommand {
            segments: out.segments,
            contains_secret: true,
        })
    }
}

#[cfg(test)]
mod tests;
