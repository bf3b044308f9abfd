//! Credentials and the SASL exchanges of LOGIN and AUTHENTICATE.

use std::fmt;

/// A password or access token: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret, for encoding on the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// How to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// The LOGIN command. Dovecot's master-user form `user*admin` is just a user name here.
    Login {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// AUTHENTICATE PLAIN (RFC 4616); with `authzid` set, `authcid`'s password logs in as
    /// `authzid` (master users, Exchange's impersonation).
    Plain {
        /// The user to act as; empty for `authcid` itself.
        authzid: String,
        /// The user whose password this is.
        authcid: String,
        /// The password.
        password: Secret,
    },
    /// AUTHENTICATE LOGIN.
    SaslLogin {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// AUTHENTICATE XOAUTH2 (Google, Microsoft 365).
    XOAuth2 {
        /// The mailbox address.
        user: String,
        /// An OAuth 2.0 access token.
        access_token: Secret,
    },
    /// AUTHENTICATE OAUTHBEARER (RFC 7628); host and port are the session's.
    OAuthBearer {
        /// The mailbox address.
        user: String,
        /// An OAuth 2.0 access token.
        access_token: Secret,
    },
}

impl Credentials {
    /// The SASL mechanism, or `None` for the LOGIN command.
    pub fn mechanism(&self) -> Option<&'static str> {
        match self {
            Credentials::Login { .. } => None,
            Credentials::Plain { .. } => Some("PLAIN"),
            Credentials::SaslLogin { .. } => Some("LOGIN"),
            Credentials::XOAuth2 { .. } => Some("XOAUTH2"),
            Credentials::OAuthBearer { .. } => Some("OAUTHBEARER"),
        }
    }

    /// The capability the server must announce for these credentials.
    pub(crate) fn required_capability(&self) -> Option<&'static str> {
        match self {
            Credentials::Login { .. } => None,
            Credentials::Plain { .. } => Some("AUTH=PLAIN"),
            Credentials::SaslLogin { .. } => Some("AUTH=LOGIN"),
            Credentials::XOAuth2 { .. } => Some("AUTH=XOAUTH2"),
            Credentials::OAuthBearer { .. } => Some("AUTH=OAUTHBEARER"),
        }
    }

    /// Who logs in, for messages (no secret).
    pub fn user(&self) -> &str {
        match self {
            Credentials::Login { username, .. } | Credentials::SaslLogin { username, .. } => {
                username
            }
            Credentials::Plain {
                authzid, authcid, ..
            } if authzid.is_empty() => authcid,
            Credentials::Plain { authzid, .. } => authzid,
            Credentials::XOAuth2 { user, .. } | Credentials::OAuthBearer { user, .. } => user,
        }
    }

    /// The line to answer a server challenge that arrives after the client's last step:
    /// the failure details of XOAUTH2 want an empty response, OAUTHBEARER a `%x01`
    /// (RFC 7628 section 3.2.3); anything else is cancelled with `*`.
    pub(crate) fn challenge_reply(&self) -> &'static [u8] {
        match self {
            Credentials::XOAuth2 { .. } => b"\r\n",
            Credentials::OAuthBearer { .. } => b"AQ==\r\n",
            _ => b"*\r\n",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credentials::Plain {
            authzid: "user".into(),
            authcid: "admin".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(c.user(), "user");
        assert_eq!(c.required_capability(), Some("AUTH=PLAIN"));
    }

    #[test]
    fn challenge_replies_follow_the_mechanism() {
        let x = Credentials::XOAuth2 {
            user: "u".into(),
            access_token: "t".into(),
        };
        assert_eq!(x.challenge_reply(), b"\r\n");
        let o = Credentials::OAuthBearer {
            user: "u".into(),
            access_token: "t".into(),
        };
        assert_eq!(
            crate::sasl::base64_decode(
                o.challenge_reply()
                    .strip_suffix(b"\r\n")
                    .unwrap_or_default()
            )
            .ok(),
            Some(vec![1])
        );
    }
}
