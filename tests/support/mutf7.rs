//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3).
//!
//! Printable US-ASCII except `&` stands for itself, `&` is written `&-`, and every other run
//! of characters is UTF-16BE in modified base64 between `&` and `-`.

use super::base64_codec::{self, MODIFIED};

/// Encodes a Unicode mailbox name for the wire.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

fn is_direct(c: char) -> bool {
    ('\u{20}'..='\u{7e}').contains(&c)
}

fn flush(pending: &mut Vec<u16>, out: &mut String) {
    if pending.is_empty() {
        return;
    }
    let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    base64_codec::encode_into(&bytes, MODIFIED, false, out);
    out.push('-');
    pending.clear();
}

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutf7Error(pub String);

impl std::fmt::Display for Mutf7Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decodes a wire mailbox name; strict, so that a server's sloppy encoding is noticed.
pub fn decode(wire: &[u8]) -> Result<String, Mutf7Error> {
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    while i < wire.len() {
        let b = wire[i];
        if b == b'&' {
            let end = wire[i + 1..]
                .iter()
                .position(|&c| c == b'-')
                .map(|p| i + 1 + p)
                .ok_or_else(|| Mutf7Error(format!("'&' at byte {i} is never closed by '-'")))?;
            let chunk = &wire[i + 1..end];
            if chunk.is_empty() {
                out.push('&');
            } else {
                decode_chunk(chunk, i, &mut out)?;
            }
            i = end + 1;
        } else if (0x20..=0x7e).contains(&b) {
            out.push(char::from(b));
            i += 1;
        } else {
            return Err(Mutf7Error(format!(
                "byte 0x{b:02x} at {i} is not printable US-ASCII"
            )));
        }
    }
    Ok(out)
}

fn decode_chunk(chunk: &[u8], at: usize, out: &mut String) -> Result<(), Mutf7Error> {
    let bytes = base64_codec::decode(chunk, MODIFIED, false)
        .ok_or_else(|| Mutf7Error(format!("bad modified base64 after '&' at byte {at}")))?;
    if bytes.len() % 2 != 0 {
        return Err(Mutf7Error(format!(
            "odd number of UTF-16 bytes after '&' at byte {at}"
        )));
    }
    let units = bytes.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
    for c in char::decode_utf16(units) {
        let c =
            c.map_err(|_| Mutf7Error(format!("unpaired UTF-16 surrogate after '&' at byte {at}")))?;
        // RFC 3501: characters that can be written directly must not be encoded.
        if is_direct(c) {
            return Err(Mutf7Error(format!(
                "printable ASCII {c:?} needlessly encoded after '&' at byte {at}"
            )));
        }
        out.push(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example_round_trips() {
        // The example of RFC 3501 §5.1.3.
        let name = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        let wire = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        assert_eq!(encode(name), wire);
        assert_eq!(decode(wire.as_bytes()).as_deref(), Ok(name));
    }

    #[test]
    fn ampersand_and_non_bmp() {
        assert_eq!(encode("R&D"), "R&-D");
        assert_eq!(decode(b"R&-D").as_deref(), Ok("R&D"));
        let emoji = "Mail \u{1F4E7}";
        assert_eq!(decode(encode(emoji).as_bytes()).as_deref(), Ok(emoji));
        // What Dovecot wrote on disk for "Ünïcode" in the layout experiment.
        assert_eq!(encode("\u{dc}n\u{ef}code"), "&ANw-n&AO8-code");
    }

    #[test]
    fn strict_decoding() {
        assert!(decode(b"&U,BTFw").is_err(), "unterminated");
        assert!(decode(b"&AGE-").is_err(), "'a' must not be encoded");
        assert!(decode("caf\u{e9}".as_bytes()).is_err(), "raw 8-bit");
        assert!(decode(b"&2D0-").is_err(), "lone surrogate");
    }
}
