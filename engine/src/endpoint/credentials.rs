//! How a mailbox is opened: admin ("master user") credential formats, and the rules that pick
//! a [`LoginMethod`] for a migration-file row on the source and on the target.
//!
//! Two ways of using admin credentials both work, on either side:
//! - the migration file's `UserName` already holds the combined form (`alberta*mailadmin`,
//!   `#alberta@contoso.com#mailadmin#`, ...) with the admin's password in `Password`, as the
//!   Exchange Online IMAP migration guide describes: the row is used as it is;
//! - the endpoint holds the admin credentials and their [`AdminFormat`], and the login is built
//!   for each row by [`admin_login`].
//!
//! Everything here is pure: no I/O, and no password ever reaches a `Debug`, `Display` or error.

use imapmirror_protocol::admin_login::{AdminIdentity, AdminLoginError, admin_identity};
use imapmirror_protocol::client::{self, Credentials};

use crate::error::Error;
use crate::migration_file::MailboxRow;

// Defined below the error type, which must not know this file; re-exported here, where
// callers have always found it.
pub use crate::secret::Secret;
pub use imapmirror_protocol::admin_login::{AdminFormat, DOVECOT_DEFAULT_SEPARATOR};

/// How to authenticate one IMAP session. The protocol crate turns it into `LOGIN`,
/// `AUTHENTICATE PLAIN` or `AUTHENTICATE XOAUTH2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginMethod {
    /// `LOGIN user password` (or `AUTHENTICATE PLAIN` with an empty authorization identity,
    /// which servers treat alike).
    Login { user: String, password: Secret },
    /// `AUTHENTICATE PLAIN` acting as `authzid`, authenticated as `authcid`.
    AuthenticatePlain {
        authzid: String,
        authcid: String,
        password: Secret,
    },
    /// `AUTHENTICATE XOAUTH2` for `user`; the engine fetches the token from the endpoint's
    /// OAuth configuration, which this pure module knows nothing of; with the row's
    /// refresh token (`RefreshToken`) when the file gives one.
    XOAuth2 {
        user: String,
        refresh_token: Option<Secret>,
    },
}

impl LoginMethod {
    /// The identity whose mailbox this login opens, for logs and reports.
    pub fn mailbox_user(&self) -> &str {
        match self {
            Self::Login { user, .. } | Self::XOAuth2 { user, .. } => user,
            Self::AuthenticatePlain { authzid, .. } => authzid,
        }
    }

    /// The protocol crate's credentials for this login; `None` for XOAUTH2 without a
    /// token (the caller gets one from the endpoint's token command, or reports it missing).
    pub fn to_wire(&self, access_token: Option<client::Secret>) -> Option<Credentials> {
        Some(match self {
            Self::Login { user, password } => Credentials::Login {
                username: user.clone(),
                password: client::Secret::new(password.expose()),
            },
            Self::AuthenticatePlain {
                authzid,
                authcid,
                password,
            } => Credentials::Plain {
                authzid: authzid.clone(),
                authcid: authcid.clone(),
                password: client::Secret::new(password.expose()),
            },
            Self::XOAuth2 { user, .. } => Credentials::XOAuth2 {
                user: user.clone(),
                access_token: access_token?,
            },
        })
    }
}

/// An endpoint's admin credentials and the format that combines them with a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCredentials {
    pub format: AdminFormat,
    pub user: String,
    pub password: Secret,
}

/// What an endpoint offers for opening mailboxes, as far as choosing a login goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointAccess {
    /// The endpoint's name, for error messages.
    pub name: String,
    /// Admin credentials (`--admin-user`, `--admin-password-file`, `--admin-format`).
    pub admin: Option<AdminCredentials>,
    /// The endpoint authenticates with XOAUTH2 (`--auth xoauth2`).
    pub xoauth2: bool,
}

/// Builds the login that opens `user`'s mailbox with admin credentials in `format`.
///
/// Rejects a user or admin name that would make the combined form ambiguous (Dovecot splits
/// `user*admin` at the first separator, Exchange at `/`, Mirapoint at `#`) or that IMAP cannot
/// carry (NUL, CR, LF), instead of logging in to the wrong mailbox.
pub fn admin_login(
    format: AdminFormat,
    admin_user: &str,
    admin_password: &Secret,
    user: &str,
) -> Result<LoginMethod, Error> {
    let password = admin_password.clone();
    Ok(match admin_identity(format, admin_user, user)? {
        AdminIdentity::Login { user } => LoginMethod::Login { user, password },
        AdminIdentity::Plain { authzid, authcid } => LoginMethod::AuthenticatePlain {
            authzid,
            authcid,
            password,
        },
    })
}

impl From<AdminLoginError> for Error {
    fn from(e: AdminLoginError) -> Self {
        match e {
            AdminLoginError::Empty { format, role } => Error::EmptyLoginName { format, role },
            AdminLoginError::Ambiguous {
                format,
                role,
                name,
                character,
            } => Error::AmbiguousLoginName {
                format,
                role,
                name,
                character,
            },
            AdminLoginError::ExchangeAdminWithoutDomain { admin } => {
                Error::ExchangeAdminWithoutDomain { admin }
            }
        }
    }
}

/// The login for a row's mailbox on the source endpoint:
/// 1. the endpoint's admin credentials in its format for the row's `UserName`;
/// 2. else XOAUTH2 for `UserName` when the endpoint uses it;
/// 3. else `UserName` and `Password` as written (which may already be a combined admin form).
pub fn source_login(row: &MailboxRow, source: &EndpointAccess) -> Result<LoginMethod, Error> {
    if let Some(admin) = &source.admin {
        return admin_login(admin.format, &admin.user, &admin.password, &row.user_name)
            .map_err(|e| for_row(e, row));
    }
    if source.xoauth2 {
        return Ok(LoginMethod::XOAuth2 {
            user: row.user_name.clone(),
            refresh_token: row.refresh_token.clone(),
        });
    }
    if row.password.is_empty() {
        return Err(Error::NoSourcePassword {
            line: row.line,
            email: row.email.clone(),
            endpoint: source.name.clone(),
        });
    }
    Ok(LoginMethod::Login {
        user: row.user_name.clone(),
        password: row.password.clone(),
    })
}

/// The login for a row's mailbox on the target endpoint (CLI.md, "How a target mailbox is
/// opened"):
/// 1. `TargetUserName` and `TargetPassword` when the row has both;
/// 2. `TargetPassword` alone logs in as `EmailAddress`;
/// 3. else the endpoint's admin credentials in its format, for `TargetUserName` if the row
///    names one, otherwise for `EmailAddress`;
/// 4. else XOAUTH2 for that same user when the endpoint uses it;
/// 5. else there is no way in, which is the user's to fix.
pub fn target_login(row: &MailboxRow, target: &EndpointAccess) -> Result<LoginMethod, Error> {
    let user = row.target_user_name.as_deref().unwrap_or(&row.email);
    if let Some(password) = &row.target_password {
        return Ok(LoginMethod::Login {
            user: user.to_owned(),
            password: password.clone(),
        });
    }
    if let Some(admin) = &target.admin {
        return admin_login(admin.format, &admin.user, &admin.password, user)
            .map_err(|e| for_row(e, row));
    }
    if target.xoauth2 {
        return Ok(LoginMethod::XOAuth2 {
            user: user.to_owned(),
            // The file's refresh token is the source mailbox's.
            refresh_token: None,
        });
    }
    Err(Error::NoTargetLogin {
        line: row.line,
        email: row.email.clone(),
        endpoint: target.name.clone(),
    })
}

/// Adds the migration-file row a credential error is about.
fn for_row(problem: Error, row: &MailboxRow) -> Error {
    Error::RowLogin {
        line: row.line,
        email: row.email.clone(),
        problem: Box::new(problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw() -> Secret {
        Secret::new("P@ssw0rd")
    }

    fn login(user: &str) -> LoginMethod {
        LoginMethod::Login {
            user: user.to_owned(),
            password: pw(),
        }
    }

    fn row() -> MailboxRow {
        MailboxRow {
            line: 2,
            email: "alberta@contoso.com".into(),
            user_name: "alberta".into(),
            password: Secret::new("userpw"),
            user_root: None,
            target_user_name: None,
            target_password: None,
            refresh_token: None,
        }
    }

    fn endpoint(admin: Option<AdminFormat>, xoauth2: bool) -> EndpointAccess {
        EndpointAccess {
            name: "target".into(),
            admin: admin.map(|format| AdminCredentials {
                format,
                user: if format == AdminFormat::Exchange {
                    "CONTOSO/mailadmin".into()
                } else {
                    "mailadmin".into()
                },
                password: pw(),
            }),
            xoauth2,
        }
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        let m = LoginMethod::Login {
            user: "u".into(),
            password: s.clone(),
        };
        assert!(!format!("{m:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn dovecot_format_is_user_star_admin() {
        let fmt = AdminFormat::Dovecot { separator: '*' };
        let got = admin_login(fmt, "mailadmin", &pw(), "alberta@contoso.com");
        assert_eq!(got.ok(), Some(login("alberta@contoso.com*mailadmin")));
    }

    #[test]
    fn dovecot_separator_is_configurable() {
        let fmt: AdminFormat = "dovecot:%".parse().expect("valid format");
        assert_eq!(fmt, AdminFormat::Dovecot { separator: '%' });
        let got = admin_login(fmt, "mailadmin", &pw(), "alberta");
        assert_eq!(got.ok(), Some(login("alberta%mailadmin")));
    }

    #[test]
    fn dovecot_rejects_user_containing_separator() {
        let fmt = AdminFormat::Dovecot { separator: '*' };
        let err = admin_login(fmt, "mailadmin", &pw(), "al*berta").expect_err("ambiguous");
        assert!(matches!(
            err,
            Error::AmbiguousLoginName { character: '*', .. }
        ));
        assert!(!err.to_string().contains("P@ssw0rd"));
    }

    #[test]
    fn sasl_format_is_authenticate_plain() {
        let got = admin_login(AdminFormat::Sasl, "mailadmin", &pw(), "alberta@contoso.com");
        assert_eq!(
            got.ok(),
            Some(LoginMethod::AuthenticatePlain {
                authzid: "alberta@contoso.com".into(),
                authcid: "mailadmin".into(),
                password: pw(),
            })
        );
    }

    #[test]
    fn exchange_format_is_domain_admin_user() {
        let got = admin_login(AdminFormat::Exchange, "CONTOSO/mailadmin", &pw(), "alberta");
        assert_eq!(got.ok(), Some(login("CONTOSO/mailadmin/alberta")));
        let got = admin_login(
            AdminFormat::Exchange,
            "CONTOSO\\mailadmin",
            &pw(),
            "alberta",
        );
        assert_eq!(got.ok(), Some(login("CONTOSO/mailadmin/alberta")));
    }

    #[test]
    fn exchange_requires_domain_in_admin_user() {
        for admin in ["mailadmin", "/mailadmin", "CONTOSO/", "a/b/c"] {
            let err =
                admin_login(AdminFormat::Exchange, admin, &pw(), "alberta").expect_err("no domain");
            assert!(
                matches!(err, Error::ExchangeAdminWithoutDomain { .. }),
                "{admin}"
            );
        }
        let err = admin_login(AdminFormat::Exchange, "C/admin", &pw(), "al/berta")
            .expect_err("slash in user");
        assert!(matches!(
            err,
            Error::AmbiguousLoginName { character: '/', .. }
        ));
    }

    #[test]
    fn mirapoint_format_is_hash_user_hash_admin_hash() {
        let got = admin_login(
            AdminFormat::Mirapoint,
            "mailadmin",
            &pw(),
            "alberta@contoso.com",
        );
        assert_eq!(got.ok(), Some(login("#alberta@contoso.com#mailadmin#")));
        let err = admin_login(AdminFormat::Mirapoint, "mail#admin", &pw(), "a@b.c")
            .expect_err("hash in admin");
        assert!(matches!(
            err,
            Error::AmbiguousLoginName { character: '#', .. }
        ));
    }

    #[test]
    fn empty_names_and_line_breaks_are_rejected() {
        let fmt = AdminFormat::Sasl;
        assert!(matches!(
            admin_login(fmt, "", &pw(), "u"),
            Err(Error::EmptyLoginName { .. })
        ));
        assert!(matches!(
            admin_login(fmt, "admin", &pw(), "u\r\nA1 DELETE INBOX"),
            Err(Error::AmbiguousLoginName { .. })
        ));
    }

    #[test]
    fn admin_format_parses_cli_names() {
        for (s, f) in [
            ("dovecot", AdminFormat::Dovecot { separator: '*' }),
            ("SASL", AdminFormat::Sasl),
            ("exchange", AdminFormat::Exchange),
            ("mirapoint", AdminFormat::Mirapoint),
        ] {
            assert_eq!(s.parse::<AdminFormat>().ok(), Some(f));
            assert_eq!(f.to_string().parse::<AdminFormat>().ok(), Some(f));
        }
        for bad in ["", "imap", "dovecot:", "dovecot:ab", "dovecot: "] {
            assert!(bad.parse::<AdminFormat>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn source_uses_row_as_written_without_admin() {
        // The seed's "combined form in UserName, admin password in Password" case.
        let mut r = row();
        r.user_name = "alberta*mailadmin".into();
        let got = source_login(&r, &endpoint(None, false));
        assert_eq!(
            got.ok(),
            Some(LoginMethod::Login {
                user: "alberta*mailadmin".into(),
                password: Secret::new("userpw"),
            })
        );
    }

    #[test]
    fn source_builds_admin_login_from_endpoint() {
        let ep = endpoint(Some(AdminFormat::Dovecot { separator: '*' }), false);
        assert_eq!(
            source_login(&row(), &ep).ok(),
            Some(login("alberta*mailadmin"))
        );
    }

    #[test]
    fn source_admin_error_names_the_row() {
        let mut r = row();
        r.user_name = "alberta*mailadmin".into();
        let ep = endpoint(Some(AdminFormat::Dovecot { separator: '*' }), false);
        let err = source_login(&r, &ep).expect_err("double combination");
        let msg = err.to_string();
        assert!(
            msg.contains("line 2") && msg.contains("alberta@contoso.com"),
            "{msg}"
        );
    }

    #[test]
    fn source_without_password_or_admin_is_an_error() {
        let mut r = row();
        r.password = Secret::default();
        let err = source_login(&r, &endpoint(None, false)).expect_err("no password");
        assert!(matches!(err, Error::NoSourcePassword { line: 2, .. }));
        let got = source_login(&r, &endpoint(None, true));
        assert_eq!(
            got.ok(),
            Some(LoginMethod::XOAuth2 {
                user: "alberta".into(),
                refresh_token: None,
            })
        );
    }

    #[test]
    fn target_prefers_row_credentials() {
        let mut r = row();
        r.target_user_name = Some("alberta.greene".into());
        r.target_password = Some(Secret::new("newpw"));
        let ep = endpoint(Some(AdminFormat::Sasl), true);
        assert_eq!(
            target_login(&r, &ep).ok(),
            Some(LoginMethod::Login {
                user: "alberta.greene".into(),
                password: Secret::new("newpw"),
            })
        );
        r.target_user_name = None;
        assert_eq!(
            target_login(&r, &ep).ok(),
            Some(LoginMethod::Login {
                user: "alberta@contoso.com".into(),
                password: Secret::new("newpw"),
            })
        );
    }

    #[test]
    fn target_falls_back_to_admin_for_email_address() {
        let ep = endpoint(Some(AdminFormat::Sasl), true);
        assert_eq!(
            target_login(&row(), &ep).ok(),
            Some(LoginMethod::AuthenticatePlain {
                authzid: "alberta@contoso.com".into(),
                authcid: "mailadmin".into(),
                password: pw(),
            })
        );
        let mut r = row();
        r.target_user_name = Some("agreene".into());
        let ep = endpoint(Some(AdminFormat::Exchange), false);
        assert_eq!(
            target_login(&r, &ep).ok(),
            Some(login("CONTOSO/mailadmin/agreene"))
        );
    }

    #[test]
    fn target_falls_back_to_xoauth2_then_fails() {
        assert_eq!(
            target_login(&row(), &endpoint(None, true)).ok(),
            Some(LoginMethod::XOAuth2 {
                user: "alberta@contoso.com".into(),
                refresh_token: None,
            })
        );
        let err = target_login(&row(), &endpoint(None, false)).expect_err("no way in");
        assert!(matches!(err, Error::NoTargetLogin { line: 2, .. }));
        assert!(err.to_string().contains("TargetPassword"));
    }
}
