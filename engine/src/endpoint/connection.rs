//! From a stored endpoint to what the protocol crate connects with: security mode, TLS
//! trust, the pool configuration of a batch's passes, and the admin credentials that
//! choose each row's login.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use imapmirror_protocol::client::{
    CertificatePin, Security, SessionConfig, TlsOptions, TlsSettings,
};
use imapmirror_storage::{self as storage, Database, EndpointRecord};

use crate::endpoint::credentials::{
    AdminCredentials, AdminFormat, DOVECOT_DEFAULT_SEPARATOR, EndpointAccess,
};
use crate::endpoint::pool::EndpointConfig;
use crate::endpoint::reconnect_policy::ReconnectPolicy;
use crate::error::Error;

/// How long a TCP connect plus TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The protocol crate's security mode for a stored one.
pub fn security(settings: &storage::EndpointSettings) -> Security {
    match settings.security {
        storage::Security::Ssl => Security::Implicit,
        storage::Security::Starttls => Security::StartTls,
        storage::Security::None => Security::None,
    }
}

/// Builds the TLS trust of an endpoint (system and webpki roots, plus `--ca-file`; or
/// only the pinned certificate).
pub fn tls_settings(settings: &storage::EndpointSettings) -> Result<TlsSettings, Error> {
    let load_err = |source| Error::Endpoint {
        endpoint: settings.name.clone(),
        action: "loading the TLS trust settings".to_owned(),
        source: Box::new(source),
    };
    let pinned_certificate = settings
        .pinned_certificate
        .as_deref()
        .map(str::parse::<CertificatePin>)
        .transpose()
        .map_err(load_err)?;
    let options = TlsOptions {
        webpki_roots: true,
        // Loading the system store reads and parses every file in /etc/ssl/certs, about
        // 10 ms, a tenth of an unchanged pass: a private CA file or a pin replaces it,
        // and a plain-text endpoint never uses it (its settings are built but not used).
        system_roots: settings.ca_file.is_none()
            && pinned_certificate.is_none()
            && !matches!(settings.security, storage::Security::None),
        ca_file: settings.ca_file.clone(),
        insecure_skip_verify: settings.insecure_skip_verify,
        pinned_certificate,
    };
    let built = if options == TlsOptions::default() {
        system_trust()
    } else {
        TlsSettings::new(&options)
    };
    built.map_err(load_err)
}

/// The default trust (webpki and system roots), loaded once per process and shared by
/// every endpoint that uses it: a batch's two pools would otherwise read the system
/// store twice. A changed system store is seen after a restart, as pools are cached too.
fn system_trust() -> Result<TlsSettings, imapmirror_protocol::Error> {
    static LOADED: Mutex<Option<TlsSettings>> = Mutex::new(None);
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(settings) = loaded.as_ref() {
        return Ok(settings.clone());
    }
    let settings = TlsSettings::new(&TlsOptions::default())?;
    *loaded = Some(settings.clone());
    Ok(settings)
}

/// The pool configuration for passes over `record`, allowing `max_connections` at once.
pub fn pool_config(
    record: &EndpointRecord,
    max_connections: usize,
    reconnect: ReconnectPolicy,
) -> Result<EndpointConfig, Error> {
    let s = &record.settings;
    Ok(EndpointConfig {
        name: s.name.clone(),
        host: s.host.clone(),
        port: s.port,
        security: security(s),
        tls: tls_settings(s)?,
        connect_timeout: CONNECT_TIMEOUT,
        session: SessionConfig::default(),
        max_connections: max_connections.max(1),
        reconnect,
        access_token: None,
        token_command: s.oauth_token_command.clone(),
        oauth_grant: match &s.oauth {
            Some(o) => Some(crate::endpoint::oauth::TokenGrant::new(&s.name, o)?),
            None => None,
        },
    })
}

/// The admin format of stored settings (Dovecot's separator is `*` unless stored).
pub fn admin_format(format: storage::AdminFormat, separator: Option<char>) -> AdminFormat {
    match format {
        storage::AdminFormat::Dovecot => AdminFormat::Dovecot {
            separator: separator.unwrap_or(DOVECOT_DEFAULT_SEPARATOR),
        },
        storage::AdminFormat::Sasl => AdminFormat::Sasl,
        storage::AdminFormat::Exchange => AdminFormat::Exchange,
        storage::AdminFormat::Mirapoint => AdminFormat::Mirapoint,
    }
}

/// What an endpoint offers for opening mailboxes: its admin credentials (decrypted from
/// the store) and whether it uses XOAUTH2. Runs inside a storage job.
pub fn endpoint_access(db: &Database, record: &EndpointRecord) -> Result<EndpointAccess, Error> {
    let s = &record.settings;
    let admin = match (&s.admin_user, s.admin_format) {
        (Some(user), Some(format)) if record.has_admin_password => {
            let password = db
                .endpoint_admin_password(&s.name)
                .map_err(|source| Error::State {
                    action: format!("reading the admin password of endpoint {}", s.name),
                    source,
                })?
                .ok_or_else(|| Error::InvalidSetting {
                    problem: format!(
                        "endpoint {} has an admin user but no stored admin password; remove and add it again with --admin-password-file",
                        s.name
                    ),
                })?;
            Some(AdminCredentials {
                format: admin_format(format, s.admin_separator),
                user: user.clone(),
                password: crate::endpoint::credentials::Secret::new(password.expose()),
            })
        }
        _ => None,
    };
    Ok(EndpointAccess {
        name: s.name.clone(),
        admin,
        xoauth2: s.auth == storage::AuthMechanism::Xoauth2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> storage::EndpointSettings {
        storage::EndpointSettings::new("src", "127.0.0.1", 143, storage::Security::Starttls)
    }

    #[test]
    fn security_modes_map_one_to_one() {
        let mut s = settings();
        assert_eq!(security(&s), Security::StartTls);
        s.security = storage::Security::Ssl;
        assert_eq!(security(&s), Security::Implicit);
        s.security = storage::Security::None;
        assert_eq!(security(&s), Security::None);
    }

    #[test]
    fn stored_dovecot_format_uses_the_default_separator() {
        assert_eq!(
            admin_format(storage::AdminFormat::Dovecot, None),
            AdminFormat::Dovecot { separator: '*' }
        );
        assert_eq!(
            admin_format(storage::AdminFormat::Dovecot, Some('%')),
            AdminFormat::Dovecot { separator: '%' }
        );
        assert_eq!(
            admin_format(storage::AdminFormat::Sasl, None),
            AdminFormat::Sasl
        );
    }

    #[test]
    fn a_missing_ca_file_is_reported_with_the_endpoint() {
        let mut s = settings();
        s.ca_file = Some("/nonexistent/ca.pem".into());
        let err = tls_settings(&s).expect_err("missing CA file");
        assert!(err.to_string().contains("endpoint src"), "{err}");
    }

    #[test]
    fn a_stored_pin_is_the_only_trust() {
        let mut s = settings();
        let pin = CertificatePin::of_der(b"the server's certificate");
        s.pinned_certificate = Some(pin.to_string());
        let built = tls_settings(&s).expect("pinned settings");
        assert_eq!(
            built.certificate_check(),
            imapmirror_protocol::client::CertificateCheck::Pinned(pin)
        );
        // A record edited by hand into nonsense names the endpoint.
        s.pinned_certificate = Some("sha256:nope".to_owned());
        let err = tls_settings(&s).expect_err("bad stored pin");
        assert!(err.to_string().contains("endpoint src"), "{err}");
    }
}
