//! Modified UTF-7 mailbox names (RFC 3501 section 5.1.3), both ways.
//!
//! Decoding is strict, so that `encode(decode(b)) == b` whenever `decode(b)` succeeds: a
//! server's name maps to exactly one Unicode name and back to the same bytes.

use crate::error::{Error, Excerpt, Result};
use crate::types::Mailbox;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Encodes a Unicode mailbox name as modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush_run(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_run(&mut run, &mut out);
    out
}

fn flush_run(run: &mut Vec<u16>, out: &mut String) {
    if run.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for unit in run.drain(..) {
        bits = (bits << 16) | u32::from(unit);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(ALPHABET[((bits >> nbits) & 0x3f) as usize]));
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(char::from(
            ALPHABET[((bits << (6 - nbits)) & 0x3f) as usize],
        ));
    }
    out.push('-');
}

fn sextet(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == b).map(|p| p as u32)
}

/// Decodes a modified UTF-7 mailbox name.
///
/// Rejects (as [`Error::Malformed`]) bytes outside printable ASCII, unterminated or
/// non-canonical shifts (encoded printable ASCII, leftover bits, two shifts in a row) and
/// broken UTF-16.
pub fn decode(wire: &[u8]) -> Result<String> {
    let bad = |at: usize| Error::Malformed {
        what: "modified UTF-7 mailbox name",
        offset: at,
        excerpt: Excerpt::new(wire),
    };
    let mut out = String::with_capacity(wire.len());
    let mut k = 0;
    let mut after_shift = false;
    while k < wire.len() {
        let b = wire[k];
        if !(0x20..=0x7e).contains(&b) {
            return Err(bad(k));
        }
        if b != b'&' {
            out.push(char::from(b));
            k += 1;
            after_shift = false;
            continue;
        }
        let start = k;
        k += 1;
        let end = wire[k..]
            .iter()
            .position(|&c| c == b'-')
            .map(|p| k + p)
            .ok_or(bad(start))?;
        if end == k {
            out.push('&');
            k = end + 1;
            after_shift = false;
            continue;
        }
        if after_shift {
            return Err(bad(start));
        }
        let mut units: Vec<u16> = Vec::with_capacity((end - k) * 6 / 16);
        let mut bits: u32 = 0;
        let mut nbits = 0;
        for (j, &c) in wire[k..end].iter().enumerate() {
            let v = sextet(c).ok_or(bad(k + j))?;
            bits = (bits << 6) | v;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push(((bits >> nbits) & 0xffff) as u16);
                bits &= (1 << nbits) - 1;
            }
        }
        // Canonical encodings leave fewer than 6 zero bits over.
        if nbits >= 6 || bits != 0 || units.is_empty() {
            return Err(bad(start));
        }
        for c in char::decode_utf16(units.iter().copied()) {
            let c = c.map_err(|_| bad(start))?;
            if (' '..='~').contains(&c) {
                return Err(bad(start));
            }
            out.push(c);
        }
        k = end + 1;
        after_shift = true;
    }
    Ok(out)
}

// A server's name decoded here rather than in `types.rs`, so that the borrowed types stay
// below the error type.
impl Mailbox<'_> {
    /// The name as Unicode: UTF-8 when `utf8_enabled` (UTF8=ACCEPT is on), modified
    /// UTF-7 otherwise (RFC 3501 section 5.1.3).
    ///
    /// # Quirks
    /// Without UTF8=ACCEPT, a name that is not valid modified UTF-7 but is valid UTF-8 is
    /// returned as UTF-8 (servers that send raw 8-bit names). Otherwise it is an error.
    pub fn decode(&self, utf8_enabled: bool) -> Result<String> {
        let wire = self.wire();
        if utf8_enabled {
            return String::from_utf8(wire.into_owned()).map_err(|e| Error::Malformed {
                what: "UTF-8 mailbox name",
                offset: e.utf8_error().valid_up_to(),
                excerpt: Excerpt::new(e.as_bytes()),
            });
        }
        match crate::mutf7::decode(&wire) {
            Ok(s) => Ok(s),
            Err(e) => match std::str::from_utf8(&wire) {
                Ok(s) if !wire.is_ascii() => Ok(s.to_owned()),
                _ => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        let name = "~peter/mail/台北/日本語";
        let wire = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        assert_eq!(encode(name), wire);
        assert_eq!(decode(wire.as_bytes()).unwrap(), name);
    }

    #[test]
    fn ampersand_and_umlauts() {
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(decode(b"Entw&APw-rfe").unwrap(), "Entwürfe");
        assert_eq!(decode(b"&-&-").unwrap(), "&&");
        assert_eq!(encode("😀"), "&2D3eAA-");
        assert_eq!(decode(b"&2D3eAA-").unwrap(), "😀");
    }

    #[test]
    fn rejects_non_canonical_and_garbage() {
        assert!(decode(b"&AGE-").is_err(), "encoded printable ASCII 'a'");
        assert!(decode(b"&APw-&APw-").is_err(), "two shifts in a row");
        assert!(decode(b"&APw").is_err(), "unterminated");
        assert!(decode(b"&APx-").is_err(), "leftover bits");
        assert!(decode("ü".as_bytes()).is_err(), "raw 8-bit");
        assert!(decode(b"&2D0-").is_err(), "lone surrogate");
        assert!(decode(b"a\tb").is_err());
    }

    #[test]
    fn round_trips() {
        for s in [
            "",
            "INBOX",
            "a&b",
            "Σ",
            "日本語 & Co.",
            "x\u{1}y",
            "\u{ffff}",
        ] {
            let w = encode(s);
            assert_eq!(decode(w.as_bytes()).unwrap(), s, "{w}");
        }
    }
}
