//! TLS client settings: rustls with the ring provider, certificates verified against the
//! webpki roots, the system's roots and an optional CA file, or one pinned certificate;
//! an insecure mode only when asked for explicitly.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};

use super::certificate_pin::{CertificatePin, PinMismatch, PinnedCertificateVerifier};

/// Where trust comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust the Mozilla roots compiled in (webpki-roots).
    pub webpki_roots: bool,
    /// Trust the operating system's roots.
    pub system_roots: bool,
    /// Also trust the CA certificates in this PEM file (`--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification entirely (`--insecure-skip-verify`). The handshake
    /// is still encrypted, but anyone in the path can read the passwords.
    pub insecure_skip_verify: bool,
    /// Trust exactly this certificate and no root (`--pin-cert`); verification stays on.
    pub pinned_certificate: Option<CertificatePin>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            webpki_roots: true,
            system_roots: true,
            ca_file: None,
            insecure_skip_verify: false,
            pinned_certificate: None,
        }
    }
}

/// How a server's certificate is checked, so that reports say what was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateCheck {
    /// Against trusted roots (webpki, system, CA file): chain, name, dates.
    Roots,
    /// Equal to the pinned certificate; the handshake signature checked with its key.
    Pinned(CertificatePin),
    /// Not checked at all (`--insecure-skip-verify`).
    Off,
}

/// A built rustls client configuration; cheap to clone, build it once per endpoint
/// (loading the system roots reads many files).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    config: Arc<ClientConfig>,
    check: CertificateCheck,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(e: rustls::Error) -> Error {
    Error::Tls {
        server: "(any server: the TLS configuration)".to_owned(),
        reason: e.to_string(),
    }
}

impl TlsSettings {
    /// Builds the configuration for `options`.
    pub fn new(options: &TlsOptions) -> Result<Self> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        if let (true, Some(pin)) = (options.insecure_skip_verify, options.pinned_certificate) {
            return Err(Error::CertificatePin {
                given: pin.to_string(),
                reason: "a pin keeps verification on and cannot go with insecure mode; choose one"
                    .to_owned(),
            });
        }
        if options.insecure_skip_verify {
            tracing::warn!("TLS certificate verification is off (insecure mode was asked for)");
            let verifier = AcceptAnyCertificate {
                algorithms: provider().signature_verification_algorithms,
            };
            let config = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            return Ok(TlsSettings {
                config: Arc::new(config),
                check: CertificateCheck::Off,
            });
        }
        if let Some(pin) = options.pinned_certificate {
            // The pin replaces every root: a CA-issued certificate for the same name is
            // refused too, which is what pinning one certificate means.
            let verifier = PinnedCertificateVerifier {
                pin,
                algorithms: provider().signature_verification_algorithms,
            };
            let config = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            return Ok(TlsSettings {
                config: Arc::new(config),
                check: CertificateCheck::Pinned(pin),
            });
        }
        let mut roots = RootCertStore::empty();
        if options.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if options.system_roots {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "a system root certificate could not be loaded");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system root certificates");
        }
        if let Some(path) = &options.ca_file {
            let bad = |reason: String| Error::CaFile {
                path: path.clone(),
                reason,
            };
            let mut count = 0usize;
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
                count += 1;
            }
            if count == 0 {
                return Err(bad("it holds no PEM certificate".to_owned()));
            }
        }
        if roots.is_empty() {
            return Err(Error::Tls {
                server: "(any server: the TLS configuration)".to_owned(),
                reason: "no trusted root certificate is configured".to_owned(),
            });
        }
        let config = builder.with_root_certificates(roots).with_no_client_auth();
        Ok(TlsSettings {
            config: Arc::new(config),
            check: CertificateCheck::Roots,
        })
    }

    /// Settings from a configuration built elsewhere (assumed to verify against roots).
    pub fn from_config(config: Arc<ClientConfig>) -> Self {
        TlsSettings {
            config,
            check: CertificateCheck::Roots,
        }
    }

    /// How these settings check a server's certificate.
    pub fn certificate_check(&self) -> CertificateCheck {
        self.check
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(Arc::clone(&self.config))
    }
}

/// The name to verify the certificate against: a DNS name, or an IP address.
pub(crate) fn server_name(host: &str, server: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).map_err(|_| Error::Tls {
        server: server.to_owned(),
        reason: format!("{host:?} is neither a DNS name nor an IP address"),
    })
}

/// The error for a failed handshake, in words an administrator can act on. Two rustls
/// errors get their own: a pin mismatch (both digests named), and a self-signed `CA:TRUE`
/// certificate offered as the server's own, which a CA file can never make acceptable.
pub(crate) fn handshake_failure(server: &str, error: &rustls::Error) -> Error {
    let refused = |reason: String| Error::CertificateRefused {
        server: server.to_owned(),
        reason,
    };
    if let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = error {
        if let Some(mismatch) = other.0.downcast_ref::<PinMismatch>() {
            return refused(mismatch.to_string());
        }
        // webpki's `CaUsedAsEndEntity` reaches us only as rustls's opaque "other" error.
        if other.0.to_string().contains("CaUsedAsEndEntity") {
            return refused("the server presents a CA certificate (CA:TRUE, as `openssl req -x509` makes) as its own, which no CA file can make trusted; pin that certificate instead with --pin-cert FILE (or sha256:HEX), which keeps verification on".to_owned());
        }
    }
    Error::Tls {
        server: server.to_owned(),
        reason: error.to_string(),
    }
}

/// Why a handshake failed, in the words of [`handshake_failure`], for a caller that names
/// the server in its own error (the proxy's backend connections).
pub fn handshake_failure_reason(error: &rustls::Error) -> String {
    match handshake_failure("", error) {
        Error::CertificateRefused { reason, .. } | Error::Tls { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Accepts any certificate but still checks the handshake signatures, so the session is
/// at least bound to the key the server presented.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

    #[test]
    fn missing_ca_file_is_bad_user_input_naming_the_file() {
        let options = TlsOptions {
            ca_file: Some(PathBuf::from("/nonexistent/imapmirror-ca.pem")),
            system_roots: false,
            ..TlsOptions::default()
        };
        let err = TlsSettings::new(&options).unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/imapmirror-ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("imapmirror-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("empty.pem");
        std::fs::write(&path, b"not a certificate\n").expect("write");
        let options = TlsOptions {
            ca_file: Some(path.clone()),
            system_roots: false,
            ..TlsOptions::default()
        };
        let err = TlsSettings::new(&options).unwrap_err();
        assert!(matches!(err, Error::CaFile { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn webpki_roots_alone_build_and_insecure_mode_builds() {
        let verified = TlsSettings::new(&TlsOptions {
            system_roots: false,
            ..TlsOptions::default()
        });
        assert!(verified.is_ok());
        let insecure = TlsSettings::new(&TlsOptions {
            insecure_skip_verify: true,
            ..TlsOptions::default()
        });
        assert!(insecure.is_ok());
        let none = TlsSettings::new(&TlsOptions {
            webpki_roots: false,
            system_roots: false,
            ..TlsOptions::default()
        });
        assert!(matches!(none, Err(Error::Tls { .. })));
    }

    /// A self-signed `CA:TRUE` certificate, as `openssl req -x509` makes, and its key.
    fn self_signed_ca_cert(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        (params.self_signed(&key).expect("cert"), key)
    }

    /// A TLS handshake in memory against a server presenting `cert`.
    async fn handshake(
        client: &TlsSettings,
        cert: &rcgen::Certificate,
        key: &rcgen::KeyPair,
    ) -> std::result::Result<(), String> {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::server::{ClientHello, ResolvesServerCert};
        use rustls::sign::CertifiedKey;

        // A resolver rather than `with_single_cert`, which refuses a key that does not
        // match the certificate: one case here is a server without the pinned key.
        #[derive(Debug)]
        struct Fixed(Arc<CertifiedKey>);
        impl ResolvesServerCert for Fixed {
            fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
                Some(Arc::clone(&self.0))
            }
        }
        let signing_key = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::try_from(key.serialize_der()).expect("key der"))
            .expect("signing key");
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing_key);
        let server_config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(certified))));
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let server = tokio::spawn(async move { acceptor.accept(server_io).await.map(|_| ()) });
        let name = server_name("old.example", "old.example:993").expect("name");
        let result = client.connector().connect(name, client_io).await;
        let _ = server.await;
        result.map(|_| ()).map_err(|e| {
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls) => handshake_failure("old.example:993", tls).to_string(),
                None => e.to_string(),
            }
        })
    }

    #[tokio::test]
    async fn a_pinned_self_signed_ca_certificate_is_accepted_and_no_other() {
        let (cert, key) = self_signed_ca_cert("old.example");
        let pin = CertificatePin::of_der(cert.der());
        let pinned = TlsSettings::new(&TlsOptions {
            pinned_certificate: Some(pin),
            ..TlsOptions::default()
        })
        .expect("settings");
        assert_eq!(pinned.certificate_check(), CertificateCheck::Pinned(pin));
        handshake(&pinned, &cert, &key)
            .await
            .expect("the pinned certificate is accepted");

        // Another certificate for the same name is refused, both digests named.
        let (other, other_key) = self_signed_ca_cert("old.example");
        let err = handshake(&pinned, &other, &other_key)
            .await
            .expect_err("another certificate is refused");
        assert!(err.contains("is not the pinned one"), "{err}");
        assert!(err.contains(&pin.to_string()), "{err}");
        assert!(
            err.contains(&CertificatePin::of_der(other.der()).to_string()),
            "{err}"
        );

        // A server that shows the pinned certificate without its key cannot sign the
        // handshake: the signature check stays on.
        let err = handshake(&pinned, &cert, &other_key)
            .await
            .expect_err("the pinned certificate with a wrong key is refused");
        assert!(err.contains("BadSignature"), "{err}");
    }

    #[tokio::test]
    async fn a_ca_file_with_the_self_signed_certificate_suggests_pinning() {
        let (cert, key) = self_signed_ca_cert("old.example");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("server.pem");
        std::fs::write(&path, cert.pem()).expect("write");
        let via_ca = TlsSettings::new(&TlsOptions {
            ca_file: Some(path),
            webpki_roots: false,
            system_roots: false,
            ..TlsOptions::default()
        })
        .expect("settings");
        assert_eq!(via_ca.certificate_check(), CertificateCheck::Roots);
        let err = handshake(&via_ca, &cert, &key)
            .await
            .expect_err("webpki refuses a CA certificate as the server's own");
        assert!(
            err.contains("CA:TRUE") && err.contains("--pin-cert"),
            "{err}"
        );
    }

    #[test]
    fn a_pin_does_not_go_with_insecure_mode() {
        let err = TlsSettings::new(&TlsOptions {
            pinned_certificate: Some(CertificatePin::of_der(b"x")),
            insecure_skip_verify: true,
            ..TlsOptions::default()
        })
        .expect_err("refused");
        assert!(err.is_invalid_input(), "{err}");
        let insecure = TlsSettings::new(&TlsOptions {
            insecure_skip_verify: true,
            ..TlsOptions::default()
        })
        .expect("insecure builds");
        assert_eq!(insecure.certificate_check(), CertificateCheck::Off);
    }

    #[test]
    fn server_names_accept_hosts_and_ips() {
        assert!(server_name("imap.example.test", "s").is_ok());
        assert!(server_name("127.0.0.1", "s").is_ok());
        assert!(server_name("bad host name!", "s").is_err());
    }
}
