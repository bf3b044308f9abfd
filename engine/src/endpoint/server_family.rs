//! Which IMAP server software an endpoint runs, told from what it says about itself: the
//! ID response (RFC 2971), the greeting, and capabilities only one family announces.
//! `endpoint test` names it, so an administrator knows which of the servers' known
//! quirks apply.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A server family the migration knows something particular about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFamily {
    Dovecot,
    Cyrus,
    Courier,
    Gmail,
    #[serde(rename = "Microsoft Exchange")]
    Exchange,
    #[serde(rename = "unknown")]
    Unknown,
}

impl fmt::Display for ServerFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerFamily::Dovecot => "Dovecot",
            ServerFamily::Cyrus => "Cyrus",
            ServerFamily::Courier => "Courier",
            ServerFamily::Gmail => "Gmail",
            ServerFamily::Exchange => "Microsoft Exchange",
            ServerFamily::Unknown => "unknown",
        })
    }
}

/// The family a server's own words name, if any.
fn named_in(text: &str) -> Option<ServerFamily> {
    let lower = text.to_ascii_lowercase();
    let has = |needle: &str| lower.contains(needle);
    if has("dovecot") {
        Some(ServerFamily::Dovecot)
    } else if has("cyrus") {
        Some(ServerFamily::Cyrus)
    } else if has("courier") {
        Some(ServerFamily::Courier)
    } else if has("gimap") || has("google") {
        Some(ServerFamily::Gmail)
    } else if has("microsoft exchange") || has("microsoft.exchange") {
        Some(ServerFamily::Exchange)
    } else {
        None
    }
}

/// Tells the family from the ID response's fields (`id`: name, value), the greeting's
/// text and the capabilities, in that order: ID names the software on purpose, a
/// greeting is often left at its default but may be rewritten by the administrator
/// (Dovecot's `login_greeting`), and a capability is the last resort.
pub fn detect(
    greeting: &str,
    id: &[(String, Option<String>)],
    capabilities: &[String],
) -> ServerFamily {
    let from_id = ["name", "vendor"].iter().find_map(|field| {
        id.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(field))
            .find_map(|(_, v)| v.as_deref().and_then(named_in))
    });
    if let Some(family) = from_id.or_else(|| named_in(greeting)) {
        return family;
    }
    let has = |name: &str| capabilities.iter().any(|c| c.eq_ignore_ascii_case(name));
    if has("X-GM-EXT-1") {
        // Gmail's own extension (labels, thread ids); nobody else announces it.
        ServerFamily::Gmail
    } else if has("ACL2=UNION") {
        // Courier's draft ACL extension, in its greeting; no other server announces it.
        ServerFamily::Courier
    } else if has("X-REPLICATION") || has("X-SIEVE-MAILBOX") {
        // Cyrus's replication and sieve-mailbox extensions (after login).
        ServerFamily::Cyrus
    } else {
        ServerFamily::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Debian's Cyrus 3.6 in the kit, on its plain port.
    const CYRUS_GREETING: &str = "localhost Cyrus IMAP 3.6.1-Debian-3.6.1-4+deb12u5 server ready";
    const CYRUS_PRE_LOGIN: &str = "IMAP4rev1 LITERAL+ ID ENABLE STARTTLS AUTH=SCRAM-SHA-512 AUTH=SCRAM-SHA-384 AUTH=SCRAM-SHA-256 AUTH=SCRAM-SHA-224 AUTH=SCRAM-SHA-1 AUTH=DIGEST-MD5 AUTH=CRAM-MD5 AUTH=NTLM AUTH=PLAIN AUTH=LOGIN SASL-IR";
    const CYRUS_POST_LOGIN: &str = "IMAP4rev1 LITERAL+ ID ENABLE ACL BINARY CATENATE CHILDREN CONDSTORE LIST-STATUS MOVE MULTIAPPEND NAMESPACE QRESYNC SPECIAL-USE UIDPLUS X-REPLICATION X-SIEVE-MAILBOX XLIST LOGINDISABLED COMPRESS=DEFLATE IDLE APPENDLIMIT=4294967295";
    // Debian's Courier-IMAP 5.0 in the kit, on its plain port.
    const COURIER_GREETING: &str = "Courier-IMAP ready. Copyright 1998-2019 Double Precision, Inc.  See COPYING for distribution information.";
    const COURIER_PRE_STARTTLS: &str = "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION STARTTLS ENABLE UTF8=ACCEPT";

    fn caps(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn id(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect()
    }

    #[test]
    fn dovecot_by_its_default_greeting_and_by_id_when_the_greeting_is_rewritten() {
        // Debian's Dovecot 2.3 (the kit's), greeting and ID as it answers them.
        let pre = caps(
            "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN",
        );
        assert_eq!(
            detect("Dovecot (Debian) ready.", &[], &pre),
            ServerFamily::Dovecot
        );
        assert_eq!(
            detect("IMAP server ready.", &id(&[("name", "Dovecot")]), &pre),
            ServerFamily::Dovecot
        );
    }

    #[test]
    fn cyrus_by_greeting_and_by_id() {
        // Debian's Cyrus 3.6 in the kit; ID as Cyrus answers it.
        let pre = caps(CYRUS_PRE_LOGIN);
        assert_eq!(detect(CYRUS_GREETING, &[], &pre), ServerFamily::Cyrus);
        let cyrus_id = id(&[
            ("name", "Cyrus IMAPD"),
            ("version", "3.6.1-Debian-3.6.1-4+deb12u5"),
            ("vendor", "Project Cyrus"),
        ]);
        assert_eq!(detect("server ready", &cyrus_id, &pre), ServerFamily::Cyrus);
        // A rewritten greeting and no ID: its extensions after login still tell.
        assert_eq!(
            detect("IMAP ready", &[], &caps(CYRUS_POST_LOGIN)),
            ServerFamily::Cyrus
        );
    }

    #[test]
    fn courier_by_its_greeting() {
        // Debian's Courier-IMAP 5.0 in the kit (it has no ID).
        assert_eq!(
            detect(COURIER_GREETING, &[], &caps(COURIER_PRE_STARTTLS)),
            ServerFamily::Courier
        );
        assert_eq!(
            detect("IMAP ready", &[], &caps(COURIER_PRE_STARTTLS)),
            ServerFamily::Courier
        );
    }

    #[test]
    fn gmail_by_greeting_id_or_its_extension() {
        // From an imapsync transcript against imap.gmail.com.
        let pre = caps(
            "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 XYZZY SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER AUTH=XOAUTH",
        );
        assert_eq!(
            detect(
                "Gimap ready for requests from 51.154.214.166 u21mb183888216edq",
                &[],
                &pre
            ),
            ServerFamily::Gmail
        );
        let gimap_id = id(&[
            ("name", "GImap"),
            ("vendor", "Google, Inc."),
            ("support-url", "https://support.google.com/mail"),
        ]);
        assert_eq!(detect("ready", &gimap_id, &[]), ServerFamily::Gmail);
        assert_eq!(detect("ready", &[], &pre), ServerFamily::Gmail);
    }

    #[test]
    fn exchange_and_office_365_by_greeting_or_id() {
        // From an imapflow transcript against Microsoft 365 (issue #392).
        let pre = caps(
            "IMAP4 IMAP4rev1 AUTH=XOAUTH2 LOGINDISABLED SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+",
        );
        assert_eq!(
            detect(
                "The Microsoft Exchange IMAP4 service is ready. [TQBOADIAUABSADAAMQBDAEEAMAAwADAANwA=]",
                &[],
                &pre
            ),
            ServerFamily::Exchange
        );
        let exchange_id = id(&[
            ("name", "Microsoft.Exchange.Imap4.Imap4Server"),
            ("version", "15.20"),
        ]);
        assert_eq!(detect("ready", &exchange_id, &pre), ServerFamily::Exchange);
        assert_eq!(ServerFamily::Exchange.to_string(), "Microsoft Exchange");
    }

    #[test]
    fn an_anonymous_server_is_unknown() {
        assert_eq!(
            detect(
                "IMAP4rev1 server ready",
                &[("name".to_owned(), None)],
                &caps("IMAP4rev1 AUTH=PLAIN")
            ),
            ServerFamily::Unknown
        );
    }
}
