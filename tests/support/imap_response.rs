//! A generic IMAP response tokenizer (RFC 3501 §7, §9), independent of the code under test.
//!
//! A response arrives as pieces: lines (without CRLF) and the literals that the line before
//! announced with `{n}`. The tokenizer turns the pieces into atoms, quoted strings,
//! literals and parenthesised lists, which is all a verifier needs to read FETCH, LIST,
//! SELECT and status responses.

/// One piece of a response as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A line without its CRLF; ends with `{n}` when a literal follows.
    Line(Vec<u8>),
    Literal(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An atom, number, flag (`\Seen`) or section name with brackets (`BODY[]`). NIL too.
    Atom(Vec<u8>),
    /// A quoted string with its escapes resolved.
    Quoted(Vec<u8>),
    Literal(Vec<u8>),
    List(Vec<Token>),
}

impl Token {
    /// The atom's text, if this is an atom.
    pub fn atom(&self) -> Option<&str> {
        match self {
            Token::Atom(a) => std::str::from_utf8(a).ok(),
            _ => None,
        }
    }

    pub fn is_atom(&self, word: &str) -> bool {
        self.atom().is_some_and(|a| a.eq_ignore_ascii_case(word))
    }

    pub fn is_nil(&self) -> bool {
        self.is_atom("NIL")
    }

    /// The bytes of a string (quoted or literal) or of an astring atom; None for lists and NIL.
    pub fn string_bytes(&self) -> Option<&[u8]> {
        match self {
            Token::Quoted(b) | Token::Literal(b) => Some(b),
            Token::Atom(_) if self.is_nil() => None,
            Token::Atom(a) => Some(a),
            Token::List(_) => None,
        }
    }

    pub fn list(&self) -> Option<&[Token]> {
        match self {
            Token::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn number(&self) -> Option<u64> {
        self.atom()?.parse().ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

impl Status {
    fn from_word(word: &[u8]) -> Option<Status> {
        Some(match word.to_ascii_uppercase().as_slice() {
            b"OK" => Status::Ok,
            b"NO" => Status::No,
            b"BAD" => Status::Bad,
            b"BYE" => Status::Bye,
            b"PREAUTH" => Status::Preauth,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
            Status::Preauth => "PREAUTH",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `+ text`: the server waits for a literal or SASL data.
    Continuation { text: String },
    /// A status response, tagged or untagged (`* OK [UIDVALIDITY 3] ...`).
    Status {
        tag: Option<String>,
        status: Status,
        /// The response code between brackets, tokenized (`[APPENDUID 38505 3955]`).
        code: Option<Vec<Token>>,
        text: String,
    },
    /// Untagged data: `* 3 FETCH (...)`, `* LIST (...) "/" INBOX`, `* CAPABILITY ...`.
    Data { tokens: Vec<Token> },
}

/// If a line announces a literal (`... {123}` or `... {123+}`), its size.
/// Err when the braces are there but the number is not.
pub fn literal_announcement(line: &[u8]) -> Result<Option<u64>, String> {
    let Some(inner) = line.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open) = inner.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        // A line ending in '}' without a literal is possible in resp-text; only a brace
        // group that looks numeric but is not counts as garbage.
        if digits.iter().all(|b| b.is_ascii_digit() || *b == b'-') && !digits.is_empty() {
            return Err(format!(
                "bad literal size {{{}}}",
                String::from_utf8_lossy(digits)
            ));
        }
        return Ok(None);
    }
    let text = std::str::from_utf8(digits).map_err(|e| e.to_string())?;
    text.parse::<u64>()
        .map(Some)
        .map_err(|e| format!("bad literal size {{{text}}}: {e}"))
}

/// Turns the pieces of one response into a Response.
pub fn parse_response(pieces: &[Piece]) -> Result<Response, String> {
    let Some(Piece::Line(first)) = pieces.first() else {
        return Err("response does not start with a line".to_owned());
    };
    if let Some(rest) = first.strip_prefix(b"+") {
        let text = rest.strip_prefix(b" ").unwrap_or(rest);
        return Ok(Response::Continuation {
            text: String::from_utf8_lossy(text).into_owned(),
        });
    }
    let space = first
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| "response has no space after its tag".to_owned())?;
    let tag = &first[..space];
    let after_tag = &first[space + 1..];
    let word_end = after_tag
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(after_tag.len());
    let word = &after_tag[..word_end];
    let status = Status::from_word(word);

    if tag == b"*" {
        if let Some(status) = status {
            return parse_status(None, status, &after_tag[word_end..]);
        }
        let mut rest = vec![Piece::Line(after_tag.to_vec())];
        rest.extend_from_slice(&pieces[1..]);
        let tokens = Tokenizer::new(&rest).tokens_until(None)?;
        return Ok(Response::Data { tokens });
    }

    if tag.is_empty() || !tag.iter().all(|&b| b.is_ascii_graphic() && b != b'+') {
        return Err("response tag is not a valid tag".to_owned());
    }
    match status {
        Some(status @ (Status::Ok | Status::No | Status::Bad)) => parse_status(
            Some(String::from_utf8_lossy(tag).into_owned()),
            status,
            &after_tag[word_end..],
        ),
        _ => Err("tagged response is not OK, NO or BAD".to_owned()),
    }
}

fn parse_status(tag: Option<String>, status: Status, rest: &[u8]) -> Result<Response, String> {
    // Dovecot may omit resp-text entirely; tolerate a missing space too.
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let (code, text) = if let Some(inner) = rest.strip_prefix(b"[") {
        let close = matching_bracket(inner).ok_or("response code '[' is never closed")?;
        let code_pieces = [Piece::Line(inner[..close].to_vec())];
        let code = Tokenizer::new(&code_pieces).tokens_until(None)?;
        let after = &inner[close + 1..];
        (Some(code), after.strip_prefix(b" ").unwrap_or(after))
    } else {
        (None, rest)
    };
    Ok(Response::Status {
        tag,
        status,
        code,
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

fn matching_bracket(bytes: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_quote {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_quote = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_quote = true,
            b'[' => depth += 1,
            b']' if depth == 0 => return Some(i),
            b']' => depth -= 1,
            _ => {}
        }
    }
    None
}

struct Tokenizer<'a> {
    pieces: &'a [Piece],
    piece: usize,
    pos: usize,
}

impl<'a> Tokenizer<'a> {
    fn new(pieces: &'a [Piece]) -> Self {
        Tokenizer {
            pieces,
            piece: 0,
            pos: 0,
        }
    }

    fn line(&self) -> Option<&'a [u8]> {
        match self.pieces.get(self.piece) {
            Some(Piece::Line(l)) => Some(l),
            _ => None,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.line().and_then(|l| l.get(self.pos).copied())
    }

    fn tokens_until(&mut self, closing: Option<u8>) -> Result<Vec<Token>, String> {
        let mut tokens = Vec::new();
        loop {
            while self.peek() == Some(b' ') {
                self.pos += 1;
            }
            let Some(b) = self.peek() else {
                if closing.is_some() {
                    return Err("a '(' list is never closed".to_owned());
                }
                if self.piece + 1 < self.pieces.len() {
                    return Err("a literal follows a line that did not announce it".to_owned());
                }
                return Ok(tokens);
            };
            match b {
                b'(' => {
                    self.pos += 1;
                    tokens.push(Token::List(self.tokens_until(Some(b')'))?));
                }
                b')' => {
                    if closing != Some(b')') {
                        return Err("unbalanced ')'".to_owned());
                    }
                    self.pos += 1;
                    return Ok(tokens);
                }
                b'"' => tokens.push(self.quoted()?),
                b'{' => tokens.push(self.literal()?),
                _ => tokens.push(self.atom()?),
            }
        }
    }

    fn quoted(&mut self) -> Result<Token, String> {
        let line = self.line().unwrap_or_default();
        let mut out = Vec::new();
        let mut i = self.pos + 1;
        while i < line.len() {
            match line[i] {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(Token::Quoted(out));
                }
                b'\\' => {
                    let escaped = *line.get(i + 1).ok_or("quoted string ends after '\\'")?;
                    out.push(escaped);
                    i += 2;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        Err("quoted string is never closed".to_owned())
    }

    fn literal(&mut self) -> Result<Token, String> {
        let line = self.line().unwrap_or_default();
        // The announcement must be the whole rest of the line: `{digits}` or `{digits+}`.
        let rest = &line[self.pos..];
        let inner = rest
            .strip_prefix(b"{")
            .and_then(|r| r.strip_suffix(b"}"))
            .ok_or("'{' that is not a literal announcement at the end of the line")?;
        let digits = inner.strip_suffix(b"+").unwrap_or(inner);
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err("literal announcement without a valid size".to_owned());
        }
        let size: u64 = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or("literal size out of range")?;
        match self.pieces.get(self.piece + 1) {
            Some(Piece::Literal(bytes)) if bytes.len() as u64 == size => {
                self.piece += 2;
                self.pos = 0;
                if !matches!(self.pieces.get(self.piece), Some(Piece::Line(_))) {
                    return Err("no line follows a literal".to_owned());
                }
                Ok(Token::Literal(bytes.clone()))
            }
            _ => Err(format!("literal of {size} bytes is missing")),
        }
    }

    fn atom(&mut self) -> Result<Token, String> {
        let line = self.line().unwrap_or_default();
        let start = self.pos;
        let mut depth = 0usize;
        let mut i = start;
        while i < line.len() {
            let b = line[i];
            if b < 0x20 || b == 0x7f {
                return Err(format!("control byte 0x{b:02x} in an atom"));
            }
            match b {
                b'[' => depth += 1,
                b']' if depth > 0 => depth -= 1,
                b' ' | b'(' | b')' if depth == 0 => break,
                b'"' | b'{' if depth == 0 => {
                    return Err(format!("'{}' inside an atom", char::from(b)));
                }
                _ => {}
            }
            i += 1;
        }
        if depth != 0 {
            return Err("'[' in an atom is never closed".to_owned());
        }
        self.pos = i;
        Ok(Token::Atom(line[start..i].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Piece {
        Piece::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn fetch_with_literal() {
        let pieces = [
            line(
                "* 12 FETCH (UID 7 FLAGS (\\Seen $Forwarded) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" BODY[] {5}",
            ),
            Piece::Literal(b"ab\r\nc".to_vec()),
            line(")"),
        ];
        let Response::Data { tokens } = parse_response(&pieces).expect("parses") else {
            panic!("not data");
        };
        assert_eq!(tokens[0].number(), Some(12));
        assert!(tokens[1].is_atom("fetch"));
        let items = tokens[2].list().expect("list");
        assert_eq!(items[3].list().map(<[Token]>::len), Some(2));
        assert_eq!(
            items[5].string_bytes(),
            Some(&b"17-Jul-1996 02:44:25 -0700"[..])
        );
        assert!(items[6].is_atom("BODY[]"));
        assert_eq!(items[7], Token::Literal(b"ab\r\nc".to_vec()));
    }

    #[test]
    fn status_with_code_and_quirks() {
        let r = parse_response(&[line("a3 OK [APPENDUID 38505 3955] APPEND completed")])
            .expect("parses");
        let Response::Status {
            tag, status, code, ..
        } = r
        else {
            panic!("not status");
        };
        assert_eq!(tag.as_deref(), Some("a3"));
        assert_eq!(status, Status::Ok);
        let code = code.expect("code");
        assert!(code[0].is_atom("APPENDUID"));
        assert_eq!(code[2].number(), Some(3955));

        // Dovecot may send no resp-text at all.
        assert!(matches!(
            parse_response(&[line("* OK [PERMANENTFLAGS (\\Seen \\*)]")]),
            Ok(Response::Status { code: Some(_), .. })
        ));
        assert!(matches!(
            parse_response(&[line("+ ")]),
            Ok(Response::Continuation { .. })
        ));
    }

    #[test]
    fn list_with_escapes_and_section_atoms() {
        let pieces = [line(r#"* LIST (\HasNoChildren) "." "a \"q\" \\ b""#)];
        let Ok(Response::Data { tokens }) = parse_response(&pieces) else {
            panic!("no data");
        };
        assert_eq!(tokens[3].string_bytes(), Some(&br#"a "q" \ b"#[..]));
        let pieces = [line("* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] NIL)")];
        let Ok(Response::Data { tokens }) = parse_response(&pieces) else {
            panic!("no data");
        };
        let items = tokens[2].list().expect("list");
        assert!(items[0].is_atom("BODY[HEADER.FIELDS (SUBJECT)]"));
        assert!(items[1].is_nil());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "*",
            "* 1 FETCH (UID 1",
            "* 1 FETCH UID 1)",
            "a1 MAYBE done",
            "* 1 FETCH (BODY[] {5}",
            "* 1 FETCH (X \"open",
            "* X a\u{1}b",
        ] {
            assert!(parse_response(&[line(bad)]).is_err(), "{bad:?} accepted");
        }
        // A literal whose length does not match its announcement.
        let pieces = [
            line("* 1 FETCH (BODY[] {5}"),
            Piece::Literal(b"abc".to_vec()),
            line(")"),
        ];
        assert!(parse_response(&pieces).is_err());
    }

    #[test]
    fn literal_announcements() {
        assert_eq!(
            literal_announcement(b"* 1 FETCH (BODY[] {42}"),
            Ok(Some(42))
        );
        assert_eq!(literal_announcement(b"a APPEND x {7+}"), Ok(Some(7)));
        assert_eq!(literal_announcement(b"* OK done"), Ok(None));
        assert_eq!(literal_announcement(b"* OK {not a literal}"), Ok(None));
        assert!(literal_announcement(b"* 1 FETCH (BODY[] {-1}").is_err());
        assert!(literal_announcement(b"* X {99999999999999999999}").is_err());
    }
}
