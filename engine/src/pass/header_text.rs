//! Header text for people: RFC 2047 encoded-words decoded, so that the subjects in skipped
//! item reports read as the mail client shows them (`Größe`, not `=?UTF-8?Q?Gr=C3=B6=C3=9Fe?=`).
//!
//! For reports only — never for anything copied: messages move byte for byte. Decoding is
//! lenient the way mail clients are: a malformed or unknown-charset word stays as it was
//! sent, and nothing here fails.

use imapmirror_protocol::sasl::base64_decode;

/// `raw` (an unfolded header value) with its encoded-words decoded.
pub fn decode_encoded_words(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    // Decoded bytes of adjacent words in one charset are joined before conversion: senders
    // split a multi-byte character across two words more often than the RFC allows.
    let mut pending: Option<(&'static encoding_rs::Encoding, Vec<u8>)> = None;
    // Whitespace seen since the last encoded-word; dropped if another word follows
    // (RFC 2047 section 6.2).
    let mut gap = String::new();
    let mut rest = raw;
    while !rest.is_empty() {
        if let Some((word, len)) = EncodedWord::parse(rest) {
            // Whitespace between text and a word is kept; between two words, dropped.
            if pending.is_none() {
                out.push_str(&gap);
            }
            match &mut pending {
                Some((enc, bytes)) if *enc == word.encoding => bytes.extend(word.bytes),
                _ => {
                    flush(&mut out, &mut pending);
                    pending = Some((word.encoding, word.bytes));
                }
            }
            gap.clear();
            rest = &rest[len..];
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        if c == ' ' || c == '\t' {
            gap.push(c);
        } else {
            flush(&mut out, &mut pending);
            out.push_str(&gap);
            gap.clear();
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    flush(&mut out, &mut pending);
    out.push_str(&gap);
    out
}

fn flush(out: &mut String, pending: &mut Option<(&'static encoding_rs::Encoding, Vec<u8>)>) {
    if let Some((encoding, bytes)) = pending.take() {
        let (text, _, _) = encoding.decode(&bytes);
        out.push_str(&text);
    }
}

/// One `=?charset?B|Q?text?=` word, decoded to bytes in its charset.
struct EncodedWord {
    encoding: &'static encoding_rs::Encoding,
    bytes: Vec<u8>,
}

impl EncodedWord {
    /// The word at the start of `s` and its length, if `s` starts with a valid one.
    fn parse(s: &str) -> Option<(EncodedWord, usize)> {
        let body = s.strip_prefix("=?")?;
        let (charset, body) = body.split_once('?')?;
        let (kind, body) = body.split_once('?')?;
        let end = body.find("?=")?;
        let text = &body[..end];
        if text.contains([' ', '\t']) {
            return None;
        }
        // RFC 2231 allows `charset*language`.
        let charset = charset.split('*').next()?;
        let encoding = encoding_rs::Encoding::for_label(charset.trim().as_bytes())?;
        let bytes = match kind {
            "B" | "b" => base64_decode(text.as_bytes()).ok()?,
            "Q" | "q" => q_decode(text)?,
            _ => return None,
        };
        let len = 2 + charset_len(s) + 1 + kind.len() + 1 + end + 2;
        Some((EncodedWord { encoding, bytes }, len))
    }
}

/// The length of the charset field as written (before any `*language`).
fn charset_len(s: &str) -> usize {
    s[2..].find('?').unwrap_or(0)
}

/// The "Q" encoding: `_` is a space, `=XX` a byte.
fn q_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'_' => out.push(b' '),
            b'=' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            _ => out.push(b),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2047_examples() {
        // RFC 2047 section 8.
        assert_eq!(decode_encoded_words("(=?ISO-8859-1?Q?a?=)"), "(a)");
        assert_eq!(decode_encoded_words("(=?ISO-8859-1?Q?a?= b)"), "(a b)");
        assert_eq!(
            decode_encoded_words("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)"),
            "(ab)"
        );
        assert_eq!(
            decode_encoded_words("(=?ISO-8859-1?Q?a?=  \t =?ISO-8859-1?Q?b?=)"),
            "(ab)"
        );
        assert_eq!(decode_encoded_words("(=?ISO-8859-1?Q?a_b?=)"), "(a b)");
        assert_eq!(
            decode_encoded_words("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)"),
            "(a b)"
        );
    }

    #[test]
    fn common_forms() {
        assert_eq!(
            decode_encoded_words("=?UTF-8?Q?Gr=C3=B6=C3=9Fe?= attachment"),
            "Größe attachment"
        );
        assert_eq!(decode_encoded_words("=?utf-8?B?w6TDtsO8?="), "äöü");
        // One character split over two words.
        assert_eq!(
            decode_encoded_words("=?UTF-8?B?w6Q=?= =?UTF-8?B?w7Y=?="),
            "äö"
        );
        assert_eq!(
            decode_encoded_words("=?windows-1252?Q?=80_price?="),
            "€ price"
        );
        assert_eq!(decode_encoded_words("=?UTF-8*en?Q?hi?="), "hi");
    }

    #[test]
    fn anything_else_stays_as_sent() {
        for raw in [
            "plain subject",
            "=?UTF-8?X?abc?=",
            "=?no-such-charset?Q?abc?=",
            "=?UTF-8?Q?unterminated",
            "=?UTF-8?B?not base64?=",
            "=?UTF-8?Q?bad=ZZhex?=",
            "a =? b ?= c",
            "",
        ] {
            assert_eq!(decode_encoded_words(raw), raw, "{raw:?}");
        }
        assert_eq!(
            decode_encoded_words("Re:  =?UTF-8?Q?x?=  tail"),
            "Re:  x  tail"
        );
    }
}
