//! TLS on both sides: the proxy's own certificate for clients (reloadable on SIGHUP
//! without dropping sessions) and verified client configurations for backends.
//!
//! The `ring` provider is passed explicitly, so the proxy works whether or not the
//! process installed a default provider.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use imapmirror_protocol::client::{CertificatePin, TlsOptions, TlsSettings};

use crate::backend_endpoint::BackendEndpoint;
use crate::error::ProxyError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, ProxyError> {
    std::fs::read(path).map_err(|e| ProxyError::TlsFile {
        what,
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let pem = read_file(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProxyError::TlsFile {
            what,
            path: path.to_path_buf(),
            detail: format!("invalid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(ProxyError::TlsFile {
            what,
            path: path.to_path_buf(),
            detail: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// The proxy's certificate and key for clients, swapped atomically on reload: handshakes
/// started after a reload use the new identity, established sessions keep theirs.
pub struct ServerIdentity {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerIdentity {
    /// Loads the certificate chain and private key (PEM files).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, ProxyError> {
        let config = Self::build(cert_path, key_path)?;
        Ok(ServerIdentity {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(config),
        })
    }

    fn build(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, ProxyError> {
        let certs = certificates("certificate", cert_path)?;
        let key_pem = read_file("private key", key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| ProxyError::TlsFile {
            what: "private key",
            path: key_path.to_path_buf(),
            detail: format!("no usable private key: {e}"),
        })?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxyError::Config(format!("TLS protocol versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ProxyError::TlsFile {
                what: "certificate",
                path: cert_path.to_path_buf(),
                detail: format!("does not match the key {}: {e}", key_path.display()),
            })?;
        Ok(Arc::new(config))
    }

    /// Re-reads both files; on failure the previous identity stays in force.
    pub fn reload(&self) -> Result<(), ProxyError> {
        let config = Self::build(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// An acceptor with the current identity.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// The client configuration to reach `endpoint`: its pinned certificate, else its CA
/// file, else the webpki and system roots; `insecure_skip_verify` accepts any certificate
/// (tests only, logged).
pub fn backend_client_config(endpoint: &BackendEndpoint) -> Result<Arc<ClientConfig>, ProxyError> {
    if let Some(pin) = &endpoint.pinned_certificate {
        return pinned_client_config(endpoint, pin);
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Config(format!("TLS protocol versions: {e}")))?;
    let config = if endpoint.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match &endpoint.ca_file {
            Some(path) => {
                for cert in certificates("CA", path)? {
                    roots.add(cert).map_err(|e| ProxyError::TlsFile {
                        what: "CA",
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                }
            }
            None => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                // System roots add private CAs an administrator installed; a failure to
                // read some of them leaves the webpki roots.
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The pin's own verifier, the one `endpoint add --pin-cert` and migrations use: the
/// backend must present exactly that certificate and sign the handshake with its key;
/// name, chain, `CA:TRUE` and dates are what the pin replaces.
fn pinned_client_config(
    endpoint: &BackendEndpoint,
    pin: &str,
) -> Result<Arc<ClientConfig>, ProxyError> {
    let bad = |detail: String| {
        ProxyError::Config(format!(
            "the backend {} has a pinned certificate the proxy cannot use ({detail}); pin it again with `imapmirror endpoint add --pin-cert`",
            endpoint.label()
        ))
    };
    let pin: CertificatePin = pin.parse().map_err(|e| bad(format!("{e}")))?;
    let settings = TlsSettings::new(&TlsOptions {
        webpki_roots: false,
        system_roots: false,
        ca_file: None,
        insecure_skip_verify: endpoint.insecure_skip_verify,
        pinned_certificate: Some(pin),
    })
    .map_err(|e| bad(format!("{e}")))?;
    Ok(Arc::clone(settings.config()))
}

/// The server name to verify a backend's certificate against.
pub fn backend_server_name(endpoint: &BackendEndpoint) -> Result<ServerName<'static>, ProxyError> {
    ServerName::try_from(endpoint.host.clone()).map_err(|e| {
        ProxyError::Config(format!(
            "the backend {} has a host name that TLS cannot verify ({e})",
            endpoint.label()
        ))
    })
}

/// For `insecure_skip_verify` endpoints: signatures are still checked, the chain is not.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend_endpoint::BackendSecurity;

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = ServerIdentity::load(&dir.path().join("nope.pem"), &empty)
            .err()
            .unwrap();
        assert!(e.to_string().contains("nope.pem") && e.is_user_input());
        let e = ServerIdentity::load(&empty, &empty).err().unwrap();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        let mut ep = BackendEndpoint::new("t", "localhost", 993, BackendSecurity::Tls);
        ep.ca_file = Some(empty.clone());
        assert!(backend_client_config(&ep).is_err());
        ep.ca_file = None;
        assert!(backend_client_config(&ep).is_ok());
        assert!(backend_server_name(&ep).is_ok());
    }
}
