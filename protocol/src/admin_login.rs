//! Admin ("master user") logins: how a server lets an administrator open a user's mailbox
//! with the administrator's password, in each server family's own syntax.
//!
//! The migration engine (to copy mail) and the proxy (to log users in to a target whose
//! passwords differ) both build these logins; this module is the one place that knows the
//! syntaxes and refuses names that would make the combined form ambiguous (Dovecot splits
//! `user*admin` at the first separator, Exchange at `/`, Mirapoint at `#`) or that IMAP
//! cannot carry (NUL, CR, LF) — instead of logging in to the wrong mailbox. It handles names
//! only: the password is always the administrator's, unchanged.

use std::fmt;
use std::str::FromStr;

/// The separator Dovecot uses between user and master user unless configured otherwise
/// (`auth_master_user_separator = *`, as in the Exchange Online guide).
pub const DOVECOT_DEFAULT_SEPARATOR: char = '*';

/// How a server combines a user and an admin into one login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminFormat {
    /// `LOGIN "user*admin" adminpassword`; Dovecot's `auth_master_user_separator`.
    Dovecot {
        /// The character between user and admin, `*` by default.
        separator: char,
    },
    /// `AUTHENTICATE PLAIN` with authorization identity = user and authentication identity
    /// = admin (RFC 4616); Dovecot, Cyrus and most SASL servers accept it.
    Sasl,
    /// `LOGIN "Domain/Admin/User" adminpassword`, the Exchange IMAP form
    /// `Domain/Admin_UserName/User_UserName`; the admin user is given as `Domain/Admin`.
    Exchange,
    /// `LOGIN "#user@domain#admin#" adminpassword`, Mirapoint Message Server.
    Mirapoint,
}

impl AdminFormat {
    /// The name used on the command line (`--admin-format`), without a separator.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dovecot { .. } => "dovecot",
            Self::Sasl => "sasl",
            Self::Exchange => "exchange",
            Self::Mirapoint => "mirapoint",
        }
    }

    /// Dovecot with its default separator.
    pub const DOVECOT: AdminFormat = AdminFormat::Dovecot {
        separator: DOVECOT_DEFAULT_SEPARATOR,
    };
}

impl fmt::Display for AdminFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dovecot { separator } if *separator != DOVECOT_DEFAULT_SEPARATOR => {
                write!(f, "dovecot:{separator}")
            }
            other => f.write_str(other.name()),
        }
    }
}

/// A `--admin-format` value that names no format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the admin format `{0}` is unknown: use dovecot, dovecot:SEPARATOR (one character, e.g. dovecot:%), sasl, exchange or mirapoint"
)]
pub struct UnknownAdminFormat(pub String);

impl FromStr for AdminFormat {
    type Err = UnknownAdminFormat;

    /// Parses `dovecot`, `dovecot:SEP` (one character, e.g. `dovecot:%`), `sasl`, `exchange`
    /// or `mirapoint`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, UnknownAdminFormat> {
        let lower = s.trim().to_ascii_lowercase();
        let unknown = || UnknownAdminFormat(s.to_owned());
        match lower.as_str() {
            "dovecot" => Ok(Self::DOVECOT),
            "sasl" => Ok(Self::Sasl),
            "exchange" => Ok(Self::Exchange),
            "mirapoint" => Ok(Self::Mirapoint),
            other => {
                let sep = other.strip_prefix("dovecot:").ok_or_else(unknown)?;
                let mut chars = sep.chars();
                match (chars.next(), chars.next()) {
                    (Some(separator), None)
                        if !separator.is_whitespace() && !separator.is_control() =>
                    {
                        Ok(Self::Dovecot { separator })
                    }
                    _ => Err(unknown()),
                }
            }
        }
    }
}

/// Who to log in as, to open a user's mailbox with the admin's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminIdentity {
    /// `LOGIN user adminpassword` with a combined user name.
    Login {
        /// The combined name (`user*admin`, `Domain/Admin/user`, `#user#admin#`).
        user: String,
    },
    /// `AUTHENTICATE PLAIN` acting as `authzid`, authenticated as `authcid`.
    Plain {
        /// The user whose mailbox opens.
        authzid: String,
        /// The admin.
        authcid: String,
    },
}

/// Why no admin login can be built for a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminLoginError {
    /// The user or admin name is empty.
    #[error("the {format} admin format needs a non-empty {role}")]
    Empty {
        /// `--admin-format` name.
        format: &'static str,
        /// "user" or "admin user".
        role: &'static str,
    },
    /// A name holds the format's separator, NUL, CR or LF.
    #[error("the {format} admin format cannot carry the {role} `{name}` because it contains {}", character.escape_debug())]
    Ambiguous {
        /// `--admin-format` name.
        format: &'static str,
        /// "user" or "admin user".
        role: &'static str,
        /// The name (control characters escaped).
        name: String,
        /// The offending character.
        character: char,
    },
    /// An Exchange admin written without its domain.
    #[error("the exchange admin format needs the admin user as `Domain/Admin`, not `{admin}`")]
    ExchangeAdminWithoutDomain {
        /// The admin user as given.
        admin: String,
    },
}

/// The identity that opens `user`'s mailbox through `admin_user` in `format`.
pub fn admin_identity(
    format: AdminFormat,
    admin_user: &str,
    user: &str,
) -> Result<AdminIdentity, AdminLoginError> {
    check_name(format, "admin user", admin_user)?;
    check_name(format, "user", user)?;
    let forbid = |name: &str, role: &'static str, c: char| {
        if name.contains(c) {
            Err(AdminLoginError::Ambiguous {
                format: format.name(),
                role,
                name: name.to_owned(),
                character: c,
            })
        } else {
            Ok(())
        }
    };
    match format {
        AdminFormat::Dovecot { separator } => {
            forbid(user, "user", separator)?;
            Ok(AdminIdentity::Login {
                user: format!("{user}{separator}{admin_user}"),
            })
        }
        AdminFormat::Sasl => Ok(AdminIdentity::Plain {
            authzid: user.to_owned(),
            authcid: admin_user.to_owned(),
        }),
        AdminFormat::Exchange => {
            // Windows admins write DOMAIN\admin; Exchange's IMAP login wants slashes.
            let admin = admin_user.replace('\\', "/");
            match admin.split_once('/') {
                Some((domain, name))
                    if !domain.is_empty() && !name.is_empty() && !name.contains('/') => {}
                _ => {
                    return Err(AdminLoginError::ExchangeAdminWithoutDomain {
                        admin: admin_user.to_owned(),
                    });
                }
            }
            forbid(user, "user", '/')?;
            forbid(user, "user", '\\')?;
            Ok(AdminIdentity::Login {
                user: format!("{admin}/{user}"),
            })
        }
        AdminFormat::Mirapoint => {
            forbid(user, "user", '#')?;
            forbid(admin_user, "admin user", '#')?;
            Ok(AdminIdentity::Login {
                user: format!("#{user}#{admin_user}#"),
            })
        }
    }
}

fn check_name(format: AdminFormat, role: &'static str, name: &str) -> Result<(), AdminLoginError> {
    if name.is_empty() {
        return Err(AdminLoginError::Empty {
            format: format.name(),
            role,
        });
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '\0' | '\r' | '\n')) {
        return Err(AdminLoginError::Ambiguous {
            format: format.name(),
            role,
            name: name.escape_debug().to_string(),
            character: c,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(format: &str, admin: &str, user: &str) -> Result<AdminIdentity, AdminLoginError> {
        admin_identity(format.parse().expect("format"), admin, user)
    }

    fn combined(user: &str) -> Result<AdminIdentity, AdminLoginError> {
        Ok(AdminIdentity::Login {
            user: user.to_owned(),
        })
    }

    #[test]
    fn each_format_builds_its_servers_syntax() {
        assert_eq!(
            login("dovecot", "mailadmin", "alberta@contoso.com"),
            combined("alberta@contoso.com*mailadmin")
        );
        assert_eq!(
            login("dovecot:%", "mailadmin", "a*b@x"),
            combined("a*b@x%mailadmin")
        );
        assert_eq!(
            login("sasl", "mailadmin", "alberta"),
            Ok(AdminIdentity::Plain {
                authzid: "alberta".into(),
                authcid: "mailadmin".into()
            })
        );
        assert_eq!(
            login("exchange", "CONTOSO\\mailadmin", "alberta"),
            combined("CONTOSO/mailadmin/alberta")
        );
        assert_eq!(
            login("mirapoint", "mailadmin", "alberta@contoso.com"),
            combined("#alberta@contoso.com#mailadmin#")
        );
    }

    #[test]
    fn ambiguous_or_unsendable_names_are_refused() {
        assert!(matches!(
            login("dovecot", "adm", "a*b"),
            Err(AdminLoginError::Ambiguous { character: '*', .. })
        ));
        assert!(matches!(
            login("exchange", "mailadmin", "a"),
            Err(AdminLoginError::ExchangeAdminWithoutDomain { .. })
        ));
        assert!(matches!(
            login("exchange", "D/adm", "a/b"),
            Err(AdminLoginError::Ambiguous { character: '/', .. })
        ));
        assert!(matches!(
            login("mirapoint", "ad#m", "a"),
            Err(AdminLoginError::Ambiguous { character: '#', .. })
        ));
        assert!(matches!(
            login("sasl", "adm", "a\r\nb"),
            Err(AdminLoginError::Ambiguous {
                character: '\r',
                ..
            })
        ));
        assert!(matches!(
            login("sasl", "", "a"),
            Err(AdminLoginError::Empty {
                role: "admin user",
                ..
            })
        ));
    }

    #[test]
    fn formats_parse_and_print_back() {
        for text in ["dovecot", "dovecot:%", "sasl", "exchange", "mirapoint"] {
            let f: AdminFormat = text.parse().expect("parses");
            assert_eq!(f.to_string(), text);
        }
        assert_eq!("DOVECOT:*".parse(), Ok(AdminFormat::DOVECOT));
        for bad in ["", "dovecot:", "dovecot:ab", "dovecot: ", "cyrus"] {
            assert!(bad.parse::<AdminFormat>().is_err(), "{bad:?}");
        }
    }
}
