//! A private certificate authority and a server certificate for `localhost` / `127.0.0.1`,
//! generated per Dovecot instance so a test can trust exactly that server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use super::kit_error::KitError;

/// The name the server certificate is issued for; clients connect with it.
pub const SERVER_NAME: &str = "localhost";

pub struct TlsMaterial {
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub ca_file: PathBuf,
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
}

impl TlsMaterial {
    /// Generates a CA and a server certificate signed by it, and writes the PEM files into
    /// `dir` (the key readable by its owner only; Dovecot reads it as root or as that owner).
    pub fn generate(dir: &Path, label: &str) -> Result<Self, KitError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        let mut ca_name = DistinguishedName::new();
        ca_name.push(DnType::CommonName, format!("imapmirror test CA {label}"));
        ca_params.distinguished_name = ca_name;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server_params =
            CertificateParams::new(vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()])?;
        let mut server_name = DistinguishedName::new();
        server_name.push(DnType::CommonName, SERVER_NAME);
        server_params.distinguished_name = server_name;
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let material = TlsMaterial {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            ca_file: dir.join("ca.pem"),
            server_cert_file: dir.join("server-cert.pem"),
            server_key_file: dir.join("server-key.pem"),
        };
        write_file(&material.ca_file, &material.ca_pem, 0o644)?;
        write_file(&material.server_cert_file, &material.server_cert_pem, 0o644)?;
        write_file(&material.server_key_file, &material.server_key_pem, 0o600)?;
        Ok(material)
    }

    /// A root store that trusts this instance's CA and nothing else.
    pub fn root_store(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        // A certificate rcgen just produced always parses; should it not, the store stays
        // empty and every handshake fails loudly with "unknown issuer".
        let _ = roots.add(self.ca_der.clone());
        Arc::new(roots)
    }
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), KitError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).map_err(|e| KitError::file("write", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| KitError::file("set permissions of", path, e))
}

/// A self-signed certificate made the way old servers' administrators made theirs:
/// `openssl req -x509`, which marks it `CA:TRUE` (OpenSSL's `v3_ca` section). Returns the
/// certificate and key files written into `dir` as `NAME.pem` and `NAME.key`.
pub fn openssl_self_signed(
    dir: &Path,
    name: &str,
    common_name: &str,
) -> Result<(PathBuf, PathBuf), KitError> {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let args = [
        "req".to_owned(),
        "-x509".to_owned(),
        "-newkey".to_owned(),
        "rsa:2048".to_owned(),
        "-nodes".to_owned(),
        "-days".to_owned(),
        "3650".to_owned(),
        "-subj".to_owned(),
        format!("/CN={common_name}"),
        "-keyout".to_owned(),
        key.display().to_string(),
        "-out".to_owned(),
        cert.display().to_string(),
    ];
    let output = std::process::Command::new("openssl")
        .args(&args)
        .output()
        .map_err(|e| KitError::Command {
            command: format!("openssl {}", args.join(" ")),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(KitError::Command {
            command: format!("openssl {}", args.join(" ")),
            detail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok((cert, key))
}

/// What `openssl x509 -noout ARGS -in FILE` prints (`-text`, `-fingerprint -sha256`).
pub fn openssl_x509(cert: &Path, args: &[&str]) -> Result<String, KitError> {
    let output = std::process::Command::new("openssl")
        .arg("x509")
        .arg("-noout")
        .args(args)
        .arg("-in")
        .arg(cert)
        .output()
        .map_err(|e| KitError::Command {
            command: format!("openssl x509 {}", args.join(" ")),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(KitError::Command {
            command: format!("openssl x509 {}", args.join(" ")),
            detail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
