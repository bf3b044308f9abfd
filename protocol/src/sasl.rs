//! SASL payloads for AUTHENTICATE (RFC 4616 PLAIN, LOGIN, Google's XOAUTH2, RFC 7628
//! OAUTHBEARER) and the base64 they travel in.

use crate::error::{Error, Result};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 section 4), as IMAP's AUTHENTICATE uses.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * k)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; surrounding whitespace is not accepted.
pub fn base64_decode(text: &[u8]) -> Result<Vec<u8>> {
    let bad = || Error::Malformed {
        what: "base64 data",
        offset: 0,
        excerpt: crate::Excerpt::new(text),
    };
    if !text.len().is_multiple_of(4) {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (ci, chunk) in text.chunks(4).enumerate() {
        let last = ci + 1 == text.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(bad());
        }
        let mut n: u32 = 0;
        for &c in &chunk[..4 - pad] {
            let v = B64.iter().position(|&a| a == c).ok_or_else(bad)? as u32;
            n = (n << 6) | v;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

fn no_nul(what: &'static str, s: &str) -> Result<()> {
    if s.contains('\0') {
        Err(Error::InvalidInput {
            what,
            reason: "it contains a NUL byte, which SASL uses as a separator",
        })
    } else {
        Ok(())
    }
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL password`. `authzid` is the user to act as
/// (for master-user / admin logins), empty to act as `authcid`.
pub fn plain(authzid: &str, authcid: &str, password: &str) -> Result<Vec<u8>> {
    no_nul("a SASL authorization identity", authzid)?;
    no_nul("a SASL user name", authcid)?;
    no_nul("a password", password)?;
    let mut v = Vec::with_capacity(authzid.len() + authcid.len() + password.len() + 2);
    v.extend_from_slice(authzid.as_bytes());
    v.push(0);
    v.extend_from_slice(authcid.as_bytes());
    v.push(0);
    v.extend_from_slice(password.as_bytes());
    Ok(v)
}

/// XOAUTH2 (Google, Microsoft): `user=U ^A auth=Bearer T ^A ^A`.
pub fn xoauth2(user: &str, access_token: &str) -> Result<Vec<u8>> {
    if user.contains('\x01') || access_token.contains('\x01') {
        return Err(Error::InvalidInput {
            what: "an XOAUTH2 credential",
            reason: "it contains a ^A byte",
        });
    }
    Ok(format!("user={user}\x01auth=Bearer {access_token}\x01\x01").into_bytes())
}

/// OAUTHBEARER (RFC 7628): `n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A`.
pub fn oauthbearer(user: &str, host: &str, port: u16, access_token: &str) -> Result<Vec<u8>> {
    if [user, host, access_token]
        .iter()
        .any(|s| s.contains('\x01'))
    {
        return Err(Error::InvalidInput {
            what: "an OAUTHBEARER credential",
            reason: "it contains a ^A byte",
        });
    }
    // RFC 5801 saslname: "," and "=" are escaped as =2C and =3D.
    let user = user.replace('=', "=3D").replace(',', "=2C");
    Ok(
        format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {access_token}\x01\x01")
            .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), plain.as_bytes());
        }
        assert!(base64_decode(b"Zg=").is_err());
        assert!(base64_decode(b"Z===").is_err());
        assert!(base64_decode(b"Zg==Zg==").is_err());
        assert!(base64_decode(b"Z!==").is_err());
    }

    #[test]
    fn mechanisms() {
        assert_eq!(
            plain("user@example.test", "mailadmin", "pw").unwrap(),
            b"user@example.test\0mailadmin\0pw"
        );
        assert!(plain("", "a\0b", "pw").is_err());
        assert_eq!(
            xoauth2("u@x", "tok").unwrap(),
            b"user=u@x\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(
            oauthbearer("a,b=c", "imap.example", 993, "t").unwrap(),
            b"n,a=a=2Cb=3Dc,\x01host=imap.example\x01port=993\x01auth=Bearer t\x01\x01"
        );
    }
}
