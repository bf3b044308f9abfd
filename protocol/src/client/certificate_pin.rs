//! Trusting exactly one server certificate, named by the SHA-256 of its DER encoding.
//!
//! Old servers often present a self-signed certificate made with `openssl req -x509`,
//! which marks it `CA:TRUE`. A CA file cannot vouch for such a certificate as the
//! server's own (webpki refuses a CA certificate as an end entity, `CaUsedAsEndEntity`),
//! which pushes administrators to turn verification off. A pin keeps verification on:
//! the server must present that very certificate and prove, by signing the handshake,
//! that it holds the certificate's private key.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

use crate::error::{Error, Result};

/// The prefix of a pin written as text: `sha256:` and 64 hex digits.
pub const SHA256_PREFIX: &str = "sha256:";

/// One pinned certificate: the SHA-256 of its DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertificatePin {
    sha256: [u8; 32],
}

impl CertificatePin {
    /// The pin of the certificate whose DER encoding is `der`.
    pub fn of_der(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.as_ref());
        CertificatePin { sha256 }
    }

    /// The pin of the one certificate in the PEM file `path` (the server's own, as
    /// `openssl s_client -showcerts` or the server's configuration holds it). A file of
    /// several certificates is refused: which one to trust would be a guess.
    pub fn from_pem_file(path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::CertificatePin {
            given: path.display().to_string(),
            reason,
        };
        let mut certs = Vec::new();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
            certs.push(cert.map_err(|e| bad(e.to_string()))?);
        }
        match certs.as_slice() {
            [one] => Ok(Self::of_der(one)),
            [] => Err(bad("the file holds no PEM certificate".to_owned())),
            more => Err(bad(format!(
                "the file holds {} certificates and a pin names one; keep only the server's own certificate (the first the server sends)",
                more.len()
            ))),
        }
    }

    /// Parses `sha256:` and 64 hex digits; colons between the bytes are allowed, as
    /// `openssl x509 -noout -fingerprint -sha256` prints them.
    pub fn parse_sha256(text: &str) -> Result<Self> {
        let bad = |reason: &str| Error::CertificatePin {
            given: text.to_owned(),
            reason: reason.to_owned(),
        };
        let hex = text
            .get(..SHA256_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(SHA256_PREFIX))
            .map(|_| &text[SHA256_PREFIX.len()..])
            .ok_or_else(|| bad("it does not start with sha256:"))?;
        let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
        if digits.len() != 64 {
            return Err(bad("a SHA-256 has 64 hex digits"));
        }
        let mut sha256 = [0u8; 32];
        for (byte, pair) in sha256.iter_mut().zip(digits.chunks(2)) {
            let text = std::str::from_utf8(pair).map_err(|_| bad("not a hex digit"))?;
            *byte = u8::from_str_radix(text, 16).map_err(|_| bad("not a hex digit"))?;
        }
        Ok(CertificatePin { sha256 })
    }

    /// True when `der` is the pinned certificate.
    pub fn matches(&self, der: &[u8]) -> bool {
        Self::of_der(der) == *self
    }

    /// The digest, 64 lower-case hex digits.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for CertificatePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHA256_PREFIX}{}", self.sha256_hex())
    }
}

impl fmt::Debug for CertificatePin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificatePin({self})")
    }
}

impl FromStr for CertificatePin {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse_sha256(s)
    }
}

/// The server presented a certificate other than the pinned one.
#[derive(Debug)]
pub(crate) struct PinMismatch {
    pub(crate) pinned: CertificatePin,
    pub(crate) presented: CertificatePin,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's certificate ({}) is not the pinned one ({}); if the server's certificate was replaced, check the new one and pin it",
            self.presented, self.pinned
        )
    }
}

impl std::error::Error for PinMismatch {}

/// Accepts the pinned certificate and nothing else.
///
/// What it checks: the end-entity certificate the server presents must have the pinned
/// SHA-256 (its whole DER encoding, so subject, key, validity and extensions are all
/// fixed), and the handshake signature must verify with that certificate's public key,
/// with the provider's supported algorithms — the server proves it holds the key.
/// What it does not check, for the pinned certificate only: the host name, the issuer
/// chain (the intermediates sent are ignored), `CA:TRUE`, key usage and the validity
/// dates. Old servers' certificates fail exactly these, and the pin replaces them.
#[derive(Debug)]
pub(crate) struct PinnedCertificateVerifier {
    pub(crate) pin: CertificatePin,
    pub(crate) algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificateVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let presented = CertificatePin::of_der(end_entity);
        if presented == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    pinned: self.pin,
                    presented,
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_digest_round_trips_with_or_without_colons() {
        let pin = CertificatePin::parse_sha256(&format!("sha256:{EMPTY_SHA256}")).expect("pin");
        assert_eq!(pin, CertificatePin::of_der(b""));
        assert_eq!(pin.to_string(), format!("sha256:{EMPTY_SHA256}"));
        // As `openssl x509 -fingerprint -sha256` prints it, upper case with colons.
        let openssl: Vec<String> = EMPTY_SHA256
            .to_ascii_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let colons = format!("SHA256:{}", openssl.join(":"));
        assert_eq!(CertificatePin::parse_sha256(&colons).expect("pin"), pin);
        assert!(pin.matches(b""));
        assert!(!pin.matches(b"x"));
    }

    #[test]
    fn bad_digests_are_bad_input() {
        for bad in [
            "md5:00",
            "sha256:abc",
            &format!("sha256:{}", "zz".repeat(32)),
            &format!("sha256:{EMPTY_SHA256}00"),
        ] {
            let err = CertificatePin::parse_sha256(bad).expect_err(bad);
            assert!(err.is_invalid_input(), "{err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn a_pem_file_must_hold_exactly_one_certificate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["old.example".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let one = dir.path().join("one.pem");
        std::fs::write(&one, cert.pem()).expect("write");
        let pin = CertificatePin::from_pem_file(&one).expect("pin");
        assert!(pin.matches(cert.der()));

        let two = dir.path().join("two.pem");
        std::fs::write(&two, format!("{}{}", cert.pem(), cert.pem())).expect("write");
        let err = CertificatePin::from_pem_file(&two).expect_err("two");
        assert!(err.to_string().contains("2 certificates"), "{err}");
        let none = dir.path().join("none.pem");
        std::fs::write(&none, "nothing here\n").expect("write");
        let err = CertificatePin::from_pem_file(&none).expect_err("none");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let err =
            CertificatePin::from_pem_file(&dir.path().join("missing.pem")).expect_err("missing");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
