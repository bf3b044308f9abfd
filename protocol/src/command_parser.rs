//! Client commands, parsed for the proxy's pre-authentication loop (RFC 3501 / RFC 9051
//! `command`): CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE (with SASL-IR),
//! ID and ENABLE in full; any other command by name with its raw arguments.

use crate::error::{Error, Result};
use crate::response_parser::grammar::id_pair;
use crate::syntax::{
    self, PResult, astring, atom, crlf, fail, imap_tag, nil, paren_list, sp0, sp1,
};
use crate::types::{Capabilities, IString, IdParams};
use bytes::{BufMut, BytesMut};

/// A parsed client command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedCommand<'a> {
    /// The tag to answer with.
    pub tag: &'a [u8],
    /// The command.
    pub kind: CommandKind<'a>,
}

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandKind<'a> {
    /// `CAPABILITY`
    Capability,
    /// `NOOP`
    Noop,
    /// `LOGOUT`
    Logout,
    /// `STARTTLS`
    StartTls,
    /// `LOGIN userid password`
    Login {
        /// The user name as sent.
        username: IString<'a>,
        /// The password as sent.
        password: IString<'a>,
    },
    /// `AUTHENTICATE mechanism [initial-response]`
    Authenticate {
        /// The SASL mechanism name, e.g. `PLAIN`.
        mechanism: &'a [u8],
        /// SASL-IR (RFC 4959): base64 data, or `=` for an empty response.
        initial_response: Option<&'a [u8]>,
    },
    /// `ID (...)` / `ID NIL`
    Id(Option<IdParams<'a>>),
    /// `ENABLE cap...`
    Enable(Capabilities<'a>),
    /// Any other command: its name and everything after it (without the final CRLF).
    Other {
        /// The command name as sent.
        name: &'a [u8],
        /// The raw arguments, starting with the separating space, literals included.
        rest: &'a [u8],
    },
}

/// One line of an AUTHENTICATE exchange from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthenticateLine<'a> {
    /// `*`: the client abandons the exchange.
    Cancel,
    /// Base64 data (possibly empty).
    Response(&'a [u8]),
}

impl AuthenticateLine<'_> {
    /// The decoded bytes of a response; `None` for a cancellation.
    pub fn decode(&self) -> Option<Result<Vec<u8>>> {
        match self {
            AuthenticateLine::Cancel => None,
            AuthenticateLine::Response(b) => Some(crate::sasl::base64_decode(b)),
        }
    }
}

/// Parses one complete command frame (a [`crate::CommandFrame::Whole`]).
pub fn parse_command(frame: &[u8]) -> Result<ParsedCommand<'_>> {
    match command(frame) {
        Ok(([], c)) => Ok(c),
        Ok((rest, _)) => Err(Error::malformed("command", frame, rest)),
        Err(_) if !frame.ends_with(b"\n") => Err(Error::Incomplete { what: "command" }),
        Err(e) => Err(Error::malformed(
            "command",
            frame,
            syntax::err_input(&e, frame),
        )),
    }
}

/// Parses a client line sent during AUTHENTICATE: `base64 CRLF` or `"*" CRLF`.
pub fn parse_authenticate_line(line: &[u8]) -> Result<AuthenticateLine<'_>> {
    let body = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .ok_or(Error::Incomplete {
            what: "AUTHENTICATE response line",
        })?;
    if body == b"*" {
        return Ok(AuthenticateLine::Cancel);
    }
    if let Some(k) = body
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='))
    {
        return Err(Error::malformed(
            "AUTHENTICATE response line",
            line,
            &line[k..],
        ));
    }
    Ok(AuthenticateLine::Response(body))
}

fn is_base64_or_eq(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
}

/// `command = tag SP (command-any / command-auth / command-nonauth / command-select) CRLF`
fn command(i: &[u8]) -> PResult<'_, ParsedCommand<'_>> {
    let (r, t) = imap_tag(i)?;
    let (r, _) = sp1(r)?;
    let (after, name) = atom(r)?;
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    let end = |r| -> PResult<'_, ()> { crlf(sp0(r)) };
    let (r, kind) = if is(b"CAPABILITY") {
        (end(after)?.0, CommandKind::Capability)
    } else if is(b"NOOP") {
        (end(after)?.0, CommandKind::Noop)
    } else if is(b"LOGOUT") {
        (end(after)?.0, CommandKind::Logout)
    } else if is(b"STARTTLS") {
        (end(after)?.0, CommandKind::StartTls)
    } else if is(b"LOGIN") {
        // `login = "LOGIN" SP userid SP password`
        let (r, _) = sp1(after)?;
        let (r, username) = astring(r)?;
        let (r, _) = sp1(r)?;
        let (r, password) = astring(r)?;
        (end(r)?.0, CommandKind::Login { username, password })
    } else if is(b"AUTHENTICATE") {
        // `authenticate = "AUTHENTICATE" SP auth-type [SP (base64 / "=")]` (RFC 4959)
        let (r, _) = sp1(after)?;
        let (r, mechanism) = atom(r)?;
        let (r, ir) = match sp1(r) {
            Ok((r2, _)) if r2.first().copied().is_some_and(is_base64_or_eq) => {
                let n = r2.iter().take_while(|&&b| is_base64_or_eq(b)).count();
                (&r2[n..], Some(&r2[..n]))
            }
            _ => (r, None),
        };
        (
            end(r)?.0,
            CommandKind::Authenticate {
                mechanism,
                initial_response: ir,
            },
        )
    } else if is(b"ID") {
        // `id = "ID" SP id-params-list`
        let (r, _) = sp1(after)?;
        let (r, params) = match nil(r) {
            Ok((r, ())) => (r, None),
            Err(_) => {
                let (r, span) = paren_list(r, id_pair, 0)?;
                (r, Some(IdParams::from_validated(span)))
            }
        };
        (end(r)?.0, CommandKind::Id(params))
    } else if is(b"ENABLE") {
        // `enable = "ENABLE" 1*(SP capability)`
        let mut r = after;
        let start = after;
        loop {
            let s = sp0(r);
            match atom(s) {
                Ok((a, _)) if s.len() < r.len() => r = a,
                _ => break,
            }
        }
        if r.len() == start.len() {
            return fail(r);
        }
        let span = &start[..start.len() - r.len()];
        (
            end(r)?.0,
            CommandKind::Enable(Capabilities::from_validated(span)),
        )
    } else {
        let body_end = i.len()
            - if i.ends_with(b"\r\n") {
                2
            } else if i.ends_with(b"\n") {
                1
            } else {
                return fail(&i[i.len()..]);
            };
        let rest_start = i.len() - after.len();
        if rest_start > body_end {
            return fail(after);
        }
        let rest = &i[rest_start..body_end];
        if !rest.is_empty() && rest[0] != b' ' {
            return fail(after);
        }
        (&i[i.len()..], CommandKind::Other { name, rest })
    };
    Ok((r, ParsedCommand { tag: t, kind }))
}

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

/// Appends the canonical encoding of a parsed command (single spaces, upper-case names,
/// strings and literals as received). The proxy uses it to forward a command verbatim
/// in meaning; literals are written synchronizing, as the client sent them or not.
pub fn encode_parsed_command(cmd: &ParsedCommand<'_>, out: &mut BytesMut) {
    out.put_slice(cmd.tag);
    out.put_u8(b' ');
    match &cmd.kind {
        CommandKind::Capability => out.put_slice(b"CAPABILITY"),
        CommandKind::Noop => out.put_slice(b"NOOP"),
        CommandKind::Logout => out.put_slice(b"LOGOUT"),
        CommandKind::StartTls => out.put_slice(b"STARTTLS"),
        CommandKind::Login { username, password } => {
            out.put_slice(b"LOGIN ");
            put_istring(out, username);
            out.put_u8(b' ');
            put_istring(out, password);
        }
        CommandKind::Authenticate {
            mechanism,
            initial_response,
        } => {
            out.put_slice(b"AUTHENTICATE ");
            out.put_slice(mechanism);
            if let Some(ir) = initial_response {
                out.put_u8(b' ');
                out.put_slice(ir);
            }
        }
        CommandKind::Id(None) => out.put_slice(b"ID NIL"),
        CommandKind::Id(Some(p)) => {
            out.put_slice(b"ID (");
            for (k, (f, v)) in p.iter().enumerate() {
                if k > 0 {
                    out.put_u8(b' ');
                }
                put_istring(out, &f);
                out.put_u8(b' ');
                match v {
                    Some(v) => put_istring(out, &v),
                    None => out.put_slice(b"NIL"),
                }
            }
            out.put_u8(b')');
        }
        CommandKind::Enable(c) => {
            out.put_slice(b"ENABLE");
            for a in c.iter() {
                out.put_u8(b' ');
                out.put_slice(a);
            }
        }
        CommandKind::Other { name, rest } => {
            out.put_slice(name);
            out.put_slice(rest);
        }
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(frame: &[u8]) -> CommandKind<'_> {
        match parse_command(frame) {
            Ok(c) => c.kind,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn simple_commands() {
        let c = parse_command(b"a001 capability\r\n").unwrap();
        assert_eq!((c.tag, c.kind), (&b"a001"[..], CommandKind::Capability));
        assert_eq!(kind(b"a NOOP\r\n"), CommandKind::Noop);
        assert_eq!(kind(b"a LOGOUT \r\n"), CommandKind::Logout);
        assert_eq!(kind(b"a StartTLS\r\n"), CommandKind::StartTls);
        assert!(
            parse_command(b"a NOOPX y\r\n").is_ok(),
            "an unknown command is Other"
        );
        assert!(parse_command(b"a NOOP x\r\n").is_err());
        assert!(matches!(
            parse_command(b"a NOOP"),
            Err(Error::Incomplete { .. })
        ));
        assert!(parse_command(b"+a NOOP\r\n").is_err());
    }

    #[test]
    fn login_forms() {
        let CommandKind::Login { username, password } =
            kind(b"a1 LOGIN fred \"my \\\"pw\\\"\"\r\n")
        else {
            panic!()
        };
        assert_eq!(username.to_bytes().as_ref(), b"fred");
        assert_eq!(password.to_bytes().as_ref(), b"my \"pw\"");
        let CommandKind::Login { username, password } =
            kind(b"a1 LOGIN {4}\r\nfred {3+}\r\np w\r\n")
        else {
            panic!()
        };
        assert_eq!(
            (username.raw(), password.raw()),
            (&b"fred"[..], &b"p w"[..])
        );
        assert!(parse_command(b"a1 LOGIN fred\r\n").is_err());
    }

    #[test]
    fn authenticate_with_and_without_sasl_ir() {
        assert_eq!(
            kind(b"a AUTHENTICATE PLAIN\r\n"),
            CommandKind::Authenticate {
                mechanism: b"PLAIN",
                initial_response: None
            }
        );
        assert_eq!(
            kind(b"a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\n"),
            CommandKind::Authenticate {
                mechanism: b"PLAIN",
                initial_response: Some(b"AHVzZXIAcGFzcw==")
            }
        );
        assert_eq!(
            kind(b"a AUTHENTICATE XOAUTH2 =\r\n"),
            CommandKind::Authenticate {
                mechanism: b"XOAUTH2",
                initial_response: Some(b"=")
            }
        );
        assert!(parse_command(b"a AUTHENTICATE PLAIN ab!c\r\n").is_err());
        assert_eq!(
            parse_authenticate_line(b"*\r\n").unwrap(),
            AuthenticateLine::Cancel
        );
        let l = parse_authenticate_line(b"AHVzZXIAcGFzcw==\r\n").unwrap();
        assert_eq!(l.decode().unwrap().unwrap(), b"\0user\0pass");
        assert_eq!(
            parse_authenticate_line(b"\r\n").unwrap(),
            AuthenticateLine::Response(b"")
        );
        assert!(parse_authenticate_line(b"a b\r\n").is_err());
        assert!(parse_authenticate_line(b"abc").is_err());
    }

    #[test]
    fn id_and_enable() {
        let CommandKind::Id(Some(p)) = kind(b"a ID (\"name\" \"Thunderbird\" \"version\" NIL)\r\n")
        else {
            panic!()
        };
        assert_eq!(p.iter().count(), 2);
        assert_eq!(kind(b"a ID NIL\r\n"), CommandKind::Id(None));
        let CommandKind::Enable(c) = kind(b"a ENABLE CONDSTORE QRESYNC\r\n") else {
            panic!()
        };
        assert!(c.contains("qresync"));
        assert!(parse_command(b"a ENABLE\r\n").is_err());
    }

    #[test]
    fn other_commands_keep_raw_arguments() {
        assert_eq!(
            kind(b"a SELECT INBOX\r\n"),
            CommandKind::Other {
                name: b"SELECT",
                rest: b" INBOX"
            }
        );
        assert_eq!(
            kind(b"a APPEND x {2}\r\nab\r\n"),
            CommandKind::Other {
                name: b"APPEND",
                rest: b" x {2}\r\nab"
            }
        );
    }

    #[test]
    fn canonical_encoding_reparses() {
        for frame in [
            &b"a1 login fred \"pw\"\r\n"[..],
            b"a2 LOGIN {4}\r\nfred {2+}\r\npw\r\n",
            b"a3 AUTHENTICATE PLAIN =\r\n",
            b"a4 ID (\"name\" NIL)\r\n",
            b"a5 ENABLE  UTF8=ACCEPT \r\n",
            b"a6 SELECT INBOX\r\n",
        ] {
            let c = parse_command(frame).unwrap();
            let mut out = BytesMut::new();
            encode_parsed_command(&c, &mut out);
            let c2 = parse_command(&out).unwrap();
            let mut out2 = BytesMut::new();
            encode_parsed_command(&c2, &mut out2);
            assert_eq!(out, out2);
        }
    }
}
