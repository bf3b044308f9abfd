//! TLS client settings: rustls with the ring provider, certificates verified against the
//! webpki roots, the system's roots and an optional CA file; an insecure mode only when
//! asked for explicitly.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};

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
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            webpki_roots: true,
            system_roots: true,
            ca_file: None,
            insecure_skip_verify: false,
        }
    }
}

/// A built rustls client configuration; cheap to clone, build it once per endpoint
/// (loading the system roots reads many files).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    config: Arc<ClientConfig>,
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
        })
    }

    /// Settings from a configuration built elsewhere.
    pub fn from_config(config: Arc<ClientConfig>) -> Self {
        TlsSettings { config }
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

    #[test]
    fn server_names_accept_hosts_and_ips() {
        assert!(server_name("imap.example.test", "s").is_ok());
        assert!(server_name("127.0.0.1", "s").is_ok());
        assert!(server_name("bad host name!", "s").is_err());
    }
}
