//! What a backend server does with a login that the proxy must know before sending it,
//! each quirk named after its server and told from the greeting.

use crate::backend_endpoint::BackendLogin;

/// The quirks of one backend connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BackendQuirks {
    /// Courier-IMAP has no proxy authorization: `AUTHENTICATE PLAIN` with an authzid
    /// other than the authcid succeeds and opens the *authcid's* mailbox, the authzid
    /// silently ignored (Courier 5.0, Debian 12, in the kit).
    pub(crate) courier_ignores_authzid: bool,
}

impl BackendQuirks {
    /// Tells the quirks from the greeting's text and the capabilities it announced.
    pub(crate) fn detect(greeting_text: &[u8], capabilities: &[String]) -> Self {
        let text = String::from_utf8_lossy(greeting_text).to_ascii_lowercase();
        // Courier's default greeting is "Courier-IMAP ready. Copyright 1998-...";
        // ACL2=UNION is Courier's draft ACL extension, which no other server announces,
        // and stays when an administrator rewrote the greeting.
        let courier = text.contains("courier")
            || capabilities
                .iter()
                .any(|c| c.eq_ignore_ascii_case("ACL2=UNION"));
        BackendQuirks {
            courier_ignores_authzid: courier,
        }
    }

    /// Why `login` must not be sent to this backend, if it must not.
    ///
    /// The proxy routes a PLAIN login by its authzid (the mailbox asked for). Courier
    /// would open the authcid's mailbox instead: the client would believe it is in one
    /// mailbox while it reads and changes another, and an admin acting for a user would
    /// land in the admin's own. A clear NO is safer than that, so the login is refused
    /// before it is sent.
    pub(crate) fn refusal(&self, login: &BackendLogin) -> Option<&'static str> {
        match login {
            BackendLogin::Plain {
                authzid, authcid, ..
            } if self.courier_ignores_authzid
                && !authzid.is_empty()
                && !authzid.eq_ignore_ascii_case(authcid) =>
            {
                Some(
                    "This mail server (Courier) cannot log in as another user: log in with that user's own name and password, without an authorization identity.",
                )
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend_endpoint::SecretBytes;

    // Debian's Courier-IMAP 5.0 and Cyrus 3.6 in the kit, on their plain ports.
    const COURIER: &[u8] = b"Courier-IMAP ready. Copyright 1998-2018 Double Precision, Inc.  See COPYING for distribution information.";
    const CYRUS: &[u8] = b"localhost Cyrus IMAP 3.6.1-Debian-3.6.1-4+deb12u5 server ready";

    fn plain(authzid: &str, authcid: &str) -> BackendLogin {
        BackendLogin::Plain {
            authzid: authzid.as_bytes().to_vec(),
            authcid: authcid.as_bytes().to_vec(),
            password: SecretBytes::new(b"pw".to_vec()),
        }
    }

    #[test]
    fn courier_refuses_a_foreign_authzid_and_nothing_else() {
        let courier = BackendQuirks::detect(COURIER, &[]);
        assert!(courier.courier_ignores_authzid);
        assert!(courier.refusal(&plain("bob@x", "admin")).is_some());
        assert!(courier.refusal(&plain("", "alice@x")).is_none());
        assert!(courier.refusal(&plain("Alice@x", "alice@x")).is_none());
        let login = BackendLogin::Login {
            user: b"alice@x".to_vec(),
            password: SecretBytes::new(b"pw".to_vec()),
        };
        assert!(courier.refusal(&login).is_none());
        let renamed = BackendQuirks::detect(b"Mail ready.", &["ACL2=UNION".to_owned()]);
        assert!(renamed.courier_ignores_authzid);
        let cyrus = BackendQuirks::detect(CYRUS, &["AUTH=PLAIN".to_owned()]);
        assert_eq!(cyrus, BackendQuirks::default());
        assert!(cyrus.refusal(&plain("bob@x", "admin")).is_none());
    }
}
