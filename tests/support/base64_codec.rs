//! Base64 (RFC 4648) for SASL PLAIN, MIME attachments and encoded-words, plus the modified
//! alphabet of mUTF-7 (RFC 3501 §5.1.3). The kit keeps its own so that it trusts no code
//! under test and needs no extra dependency.

pub const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// mUTF-7 uses ',' where standard base64 uses '/'.
pub const MODIFIED: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Encodes with `=` padding (standard alphabet).
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    encode_into(input, STANDARD, true, &mut out);
    out
}

/// Encodes `input` with `alphabet`, appending to `out`; `pad` adds `=` to a multiple of 4.
pub fn encode_into(input: &[u8], alphabet: &[u8; 64], pad: bool, out: &mut String) {
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..4 {
            if i < symbols {
                let index = ((n >> (18 - 6 * i)) & 0x3f) as usize;
                out.push(char::from(alphabet[index]));
            } else if pad {
                out.push('=');
            }
        }
    }
}

/// Encodes with line breaks every 76 characters, as MIME bodies are written.
pub fn encode_mime_lines(input: &[u8], line_ending: &str) -> String {
    let mut out = String::with_capacity(input.len() * 4 / 3 + input.len() / 38 + 4);
    // 57 input bytes make exactly one 76-character line.
    for line in input.chunks(57) {
        encode_into(line, STANDARD, true, &mut out);
        out.push_str(line_ending);
    }
    out
}

/// Decodes `input` written in `alphabet`; padding is accepted only when `allow_pad`.
/// Returns None on any character outside the alphabet or on non-zero trailing bits.
pub fn decode(input: &[u8], alphabet: &[u8; 64], allow_pad: bool) -> Option<Vec<u8>> {
    let mut body = input;
    if allow_pad {
        while let [rest @ .., b'='] = body {
            body = rest;
        }
        if input.len() - body.len() > 2 {
            return None;
        }
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in body {
        let value = alphabet.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    // Leftover bits must be a partial symbol that is all zero, never a whole extra symbol.
    if bits >= 6 || acc & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(encode(plain), encoded);
            assert_eq!(
                decode(encoded.as_bytes(), STANDARD, true).as_deref(),
                Some(plain)
            );
        }
    }

    #[test]
    fn rejects_foreign_characters_and_dirty_tail() {
        assert_eq!(decode(b"Zm9v!", STANDARD, true), None);
        // "Zh" leaves non-zero bits after the single decoded byte.
        assert_eq!(decode(b"Zh", STANDARD, false), None);
    }

    #[test]
    fn mime_lines_are_76_wide() {
        let text = encode_mime_lines(&[7u8; 200], "\r\n");
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[..3].iter().all(|l| l.len() == 76));
    }
}
