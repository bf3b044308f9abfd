//! Backend servers the proxy routes to, and the logins it sends them.

use std::fmt;
use std::path::PathBuf;

use imapmirror_protocol::admin_login::{
    AdminFormat, AdminIdentity, DOVECOT_DEFAULT_SEPARATOR, admin_identity,
};
use imapmirror_storage::{
    AdminFormat as StoredFormat, EndpointRecord, EndpointSettings, Secret, Security,
};

use crate::error::ProxyError;

/// How the proxy secures its connection to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendSecurity {
    /// Implicit TLS (port 993).
    Tls,
    /// A plain connection upgraded with STARTTLS; never a silent plaintext fallback.
    StartTls,
    /// No TLS (loopback and tests).
    Plain,
}

impl BackendSecurity {
    /// The name used in the route file and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendSecurity::Tls => "ssl",
            BackendSecurity::StartTls => "starttls",
            BackendSecurity::Plain => "none",
        }
    }

    /// Parses `ssl`, `tls`, `starttls` or `none`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "ssl" | "tls" => Some(BackendSecurity::Tls),
            "starttls" => Some(BackendSecurity::StartTls),
            "none" | "plain" => Some(BackendSecurity::Plain),
            _ => None,
        }
    }
}

impl From<Security> for BackendSecurity {
    fn from(s: Security) -> Self {
        match s {
            Security::Ssl => BackendSecurity::Tls,
            Security::Starttls => BackendSecurity::StartTls,
            Security::None => BackendSecurity::Plain,
        }
    }
}

/// An endpoint's admin (master) credentials, to open a user's mailbox without the user's
/// password on that server.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminCredentials {
    /// The admin user.
    pub user: String,
    /// The admin password.
    pub password: Secret,
    /// How the admin and the user are combined into one login.
    pub format: AdminFormat,
}

impl fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AdminCredentials({} as {:?}, ***)",
            self.user, self.format
        )
    }
}

/// A backend IMAP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendEndpoint {
    /// The endpoint's name (from the state directory), or `host:port` for route-file
    /// entries.
    pub name: String,
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How the connection is secured.
    pub security: BackendSecurity,
    /// A PEM file of CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (tests, never production).
    pub insecure_skip_verify: bool,
    /// Trust exactly this certificate, `sha256:` and its digest (`endpoint add
    /// --pin-cert`): verification stays on, and neither a CA file nor a root is used.
    pub pinned_certificate: Option<String>,
    /// Admin credentials, if the endpoint has them.
    pub admin: Option<AdminCredentials>,
}

impl BackendEndpoint {
    /// A backend with no admin credentials and the system's CA roots.
    pub fn new(name: &str, host: &str, port: u16, security: BackendSecurity) -> Self {
        BackendEndpoint {
            name: name.to_owned(),
            host: host.to_owned(),
            port,
            security,
            ca_file: None,
            insecure_skip_verify: false,
            pinned_certificate: None,
            admin: None,
        }
    }

    /// A backend from a stored endpoint and its admin password (if any).
    pub fn from_record(record: &EndpointRecord, admin_password: Option<Secret>) -> Self {
        Self::from_settings(&record.settings, admin_password)
    }

    /// A backend from an endpoint's settings and its admin password (if any).
    pub fn from_settings(s: &EndpointSettings, admin_password: Option<Secret>) -> Self {
        let admin = match (&s.admin_user, admin_password) {
            (Some(user), Some(password)) => Some(AdminCredentials {
                user: user.clone(),
                password,
                format: match s.admin_format.unwrap_or(StoredFormat::Dovecot) {
                    StoredFormat::Dovecot => AdminFormat::Dovecot {
                        separator: s.admin_separator.unwrap_or(DOVECOT_DEFAULT_SEPARATOR),
                    },
                    StoredFormat::Sasl => AdminFormat::Sasl,
                    StoredFormat::Exchange => AdminFormat::Exchange,
                    StoredFormat::Mirapoint => AdminFormat::Mirapoint,
                },
            }),
            _ => None,
        };
        BackendEndpoint {
            name: s.name.clone(),
            host: s.host.clone(),
            port: s.port,
            security: s.security.into(),
            ca_file: s.ca_file.clone(),
            insecure_skip_verify: s.insecure_skip_verify,
            pinned_certificate: s.pinned_certificate.clone(),
            admin,
        }
    }

    /// `name (host:port)`, for logs and messages.
    pub fn label(&self) -> String {
        if self.name == self.address() {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.address())
        }
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// What identifies the server a connection goes to: two routes with the same key
    /// reach the same mailbox server the same way (used to share pools and to decide
    /// whether a session must move at cut-over).
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}",
            self.name,
            self.address(),
            self.security.as_str(),
            self.ca_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            self.insecure_skip_verify,
            self.pinned_certificate.as_deref().unwrap_or_default()
        )
    }
}

/// A password (or other secret bytes) that never prints itself and is zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    /// The secret, for the one place that sends it to a server.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// The login the proxy sends a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendLogin {
    /// `LOGIN user password`.
    Login {
        /// The user name.
        user: Vec<u8>,
        /// The password.
        password: SecretBytes,
    },
    /// `AUTHENTICATE PLAIN` (RFC 4616).
    Plain {
        /// The user to act as, empty for `authcid` itself.
        authzid: Vec<u8>,
        /// Whose password it is.
        authcid: Vec<u8>,
        /// The password.
        password: SecretBytes,
    },
}

impl BackendLogin {
    /// The user whose mailbox is opened: the name routes are looked up by.
    pub fn mailbox_user(&self) -> &[u8] {
        match self {
            BackendLogin::Login { user, .. } => user,
            BackendLogin::Plain {
                authzid, authcid, ..
            } => {
                if authzid.is_empty() {
                    authcid
                } else {
                    authzid
                }
            }
        }
    }

    /// `authzid NUL authcid NUL password` for PLAIN; a LOGIN is sent as PLAIN when the
    /// backend refuses LOGIN (LOGINDISABLED).
    pub fn plain_message(&self) -> SecretBytes {
        let (authzid, authcid, password): (&[u8], &[u8], &[u8]) = match self {
            BackendLogin::Login { user, password } => (b"", user, password.expose()),
            BackendLogin::Plain {
                authzid,
                authcid,
                password,
            } => (authzid, authcid, password.expose()),
        };
        let mut v = Vec::with_capacity(authzid.len() + authcid.len() + password.len() + 2);
        v.extend_from_slice(authzid);
        v.push(0);
        v.extend_from_slice(authcid);
        v.push(0);
        v.extend_from_slice(password);
        SecretBytes(v)
    }
}

/// Builds the login that opens `user`'s mailbox on `endpoint` with its admin credentials
/// (the syntax of each format, and the names it refuses, are the protocol crate's).
pub fn admin_login(endpoint: &BackendEndpoint, user: &str) -> Result<BackendLogin, ProxyError> {
    let refuse = |reason: String| ProxyError::AdminLogin {
        endpoint: endpoint.name.clone(),
        user: user.to_owned(),
        reason,
    };
    let Some(admin) = &endpoint.admin else {
        return Err(refuse(
            "the endpoint has no admin user and password".to_owned(),
        ));
    };
    let password = SecretBytes(admin.password.expose().as_bytes().to_vec());
    match admin_identity(admin.format, &admin.user, user).map_err(|e| refuse(e.to_string()))? {
        AdminIdentity::Login { user } => Ok(BackendLogin::Login {
            user: user.into_bytes(),
            password,
        }),
        AdminIdentity::Plain { authzid, authcid } => Ok(BackendLogin::Plain {
            authzid: authzid.into_bytes(),
            authcid: authcid.into_bytes(),
            password,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_admin(format: AdminFormat, user: &str) -> BackendEndpoint {
        let mut e = BackendEndpoint::new("target", "imap.example", 993, BackendSecurity::Tls);
        e.admin = Some(AdminCredentials {
            user: user.into(),
            password: Secret::new("pw"),
            format,
        });
        e
    }

    #[test]
    fn admin_formats() {
        let got = admin_login(&with_admin(AdminFormat::DOVECOT, "mailadmin"), "a@x").unwrap();
        assert_eq!(
            got,
            BackendLogin::Login {
                user: b"a@x*mailadmin".to_vec(),
                password: SecretBytes(b"pw".to_vec())
            }
        );
        let got = admin_login(&with_admin(AdminFormat::Sasl, "mailadmin"), "a@x").unwrap();
        assert_eq!(got.mailbox_user(), b"a@x");
        assert_eq!(got.plain_message().expose(), b"a@x\0mailadmin\0pw");
        let got = admin_login(&with_admin(AdminFormat::Exchange, "CONTOSO\\adm"), "al").unwrap();
        assert_eq!(got.mailbox_user(), b"CONTOSO/adm/al");
        assert!(admin_login(&with_admin(AdminFormat::Exchange, "adm"), "al").is_err());
        let got = admin_login(&with_admin(AdminFormat::Mirapoint, "adm"), "a@x").unwrap();
        assert_eq!(got.mailbox_user(), b"#a@x#adm#");
        assert!(admin_login(&with_admin(AdminFormat::DOVECOT, "adm"), "a*b").is_err());
        let percent = AdminFormat::Dovecot { separator: '%' };
        let got = admin_login(&with_admin(percent, "adm"), "a*b").unwrap();
        assert_eq!(got.mailbox_user(), b"a*b%adm");
        let none = BackendEndpoint::new("t", "h", 1, BackendSecurity::Plain);
        assert!(admin_login(&none, "a").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let l = BackendLogin::Login {
            user: b"u".to_vec(),
            password: SecretBytes(b"hunter2".to_vec()),
        };
        assert!(!format!("{l:?}").contains("hunter2"));
        let a = with_admin(AdminFormat::Sasl, "adm");
        let shown = format!("{a:?}");
        assert!(shown.contains("***") && !shown.contains("\"pw\""));
        assert_eq!(
            BackendEndpoint::new("h:1", "h", 1, BackendSecurity::Plain).label(),
            "h:1"
        );
        assert_eq!(a.label(), "target (imap.example:993)");
    }
}
