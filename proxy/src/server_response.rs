//! Lines the proxy itself writes to clients: status responses, capabilities, `+`.

use bytes::Bytes;

/// A status response line; `tag` `None` writes `*`. The text and code are the proxy's own
/// constants or backend names, never client bytes (the tag is checked by [`is_tag`]).
pub(crate) fn status(tag: Option<&str>, kind: &str, code: Option<&str>, text: &str) -> Bytes {
    let mut line = String::with_capacity(32 + text.len());
    line.push_str(tag.unwrap_or("*"));
    line.push(' ');
    line.push_str(kind);
    line.push(' ');
    if let Some(code) = code {
        line.push('[');
        line.push_str(code);
        line.push_str("] ");
    }
    // A CR or LF inside would end the line early and let the rest pose as a response.
    line.extend(
        text.chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
    );
    line.push_str("\r\n");
    Bytes::from(line)
}

/// `* CAPABILITY ...`.
pub(crate) fn capability_line(caps: &[String]) -> Bytes {
    Bytes::from(format!("* CAPABILITY {}\r\n", caps.join(" ")))
}

/// `tag = 1*<any ASTRING-CHAR except "+">` (RFC 3501), bounded so a garbage line cannot
/// make the proxy echo kilobytes.
pub(crate) fn is_tag(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes.iter().all(|&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        })
}

/// The tag at the start of a (possibly malformed) command line, if it is one.
pub(crate) fn leading_tag(line: &[u8]) -> Option<&str> {
    let end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let tag = &line[..end];
    if is_tag(tag) {
        std::str::from_utf8(tag).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            &status(Some("a1"), "NO", Some("UNAVAILABLE"), "Down.\r\n* OK x")[..],
            b"a1 NO [UNAVAILABLE] Down.  * OK x\r\n"
        );
        assert_eq!(&status(None, "BYE", None, "Bye.")[..], b"* BYE Bye.\r\n");
        assert_eq!(
            &capability_line(&["IMAP4rev1".into(), "ID".into()])[..],
            b"* CAPABILITY IMAP4rev1 ID\r\n"
        );
    }

    #[test]
    fn tags() {
        assert_eq!(leading_tag(b"a01 LOGIN x"), Some("a01"));
        assert_eq!(leading_tag(b"a01\r\n"), Some("a01"));
        assert_eq!(leading_tag(b"+x LOGIN"), None);
        assert_eq!(leading_tag(b"\x00\x01 x"), None);
        assert_eq!(leading_tag(b""), None);
        assert_eq!(leading_tag(&[b'a'; 65]), None);
        assert!(is_tag(b"A.1]"));
    }
}
