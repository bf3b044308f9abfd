//! `endpoint test` (Exchange's Test-MigrationServerAvailability): connect, negotiate TLS,
//! read CAPABILITY, ask ID, optionally log in, and say what the capabilities mean for a
//! migration.
//!
//! Login methods are judged by the capabilities announced before login (over TLS when
//! TLS is used): those are what a login meets. The list after login is reported apart and
//! judged only for what a session can do — Cyrus adds LOGINDISABLED to it, which says
//! nothing about logging in.

use imapmirror_protocol::Error as ImapError;
use imapmirror_protocol::client::{self, CertificateCheck, ConnectOptions, SessionConfig};
use imapmirror_storage::{self as storage, EndpointRecord, Security};
use serde::{Deserialize, Serialize};

use crate::endpoint::connection::{CONNECT_TIMEOUT, admin_format, security, tls_settings};
use crate::endpoint::credentials::{LoginMethod, Secret, admin_login};
use crate::endpoint::provider_profile::Provider;
use crate::endpoint::server_family::{self, ServerFamily};

fn generic_provider() -> Provider {
    Provider::Generic
}
use crate::error::Error;

/// What a test of an endpoint found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub endpoint: String,
    /// `host:port`.
    pub server: String,
    /// `implicit TLS`, `STARTTLS` or `none`.
    pub security: String,
    /// Whether the session ended up encrypted.
    pub tls: bool,
    /// How the server's certificate was checked.
    pub certificate: CertificateStatus,
    /// The server software, as its ID, greeting and capabilities tell.
    pub server_family: ServerFamily,
    /// The provider profile in use: the endpoint's `--provider`, else the detected one.
    #[serde(default = "generic_provider")]
    pub provider: Provider,
    /// What the provider profile changes, one sentence each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_notes: Vec<String>,
    /// The greeting's text.
    pub greeting: String,
    /// The server's ID response (RFC 2971), when it offers ID: field, value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_id: Vec<(String, Option<String>)>,
    /// With STARTTLS: the capabilities announced in plaintext, before the upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities_before_starttls: Option<Vec<String>>,
    /// The capabilities announced before login (after TLS): login methods are judged
    /// by these.
    pub capabilities: Vec<String>,
    /// The capabilities announced after a successful login (many servers add UIDPLUS,
    /// MULTIAPPEND, CONDSTORE then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities_after_login: Option<Vec<String>>,
    pub login: LoginCheck,
    /// How the login was made: `the admin credentials`, `an OAuth token from microsoft`
    /// (the provider, never the token), `an OAuth token from the token command`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub login_with: String,
    /// What the capabilities mean for a migration, one sentence each.
    pub notes: Vec<String>,
    /// The endpoint's `--max-rate` and this process's share of it (set by the caller,
    /// which knows the batches that divide it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_budget: Option<Box<crate::endpoint::rate_budget::RateShare>>,
}

/// How the server's certificate was checked; a report never claims a verification that
/// was turned off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum CertificateStatus {
    /// No TLS, so no certificate.
    NoTls,
    /// Verified against the trusted roots (chain, host name, dates).
    Verified,
    /// The pinned certificate, its key proven by the handshake signature.
    Pinned { pin: String },
    /// Not checked (`--insecure-skip-verify`).
    NotVerified,
}

/// Whether a login was tried and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum LoginCheck {
    /// No admin credentials, or no mailbox to act for: why, in a sentence.
    NotTried {
        reason: String,
    },
    Succeeded {
        user: String,
    },
    Refused {
        user: String,
        text: String,
    },
}

impl ProbeReport {
    /// True when the test found nothing wrong (a refused login is a failure).
    pub fn passed(&self) -> bool {
        !matches!(self.login, LoginCheck::Refused { .. })
    }
}

/// Tests `record`. With admin credentials (`admin_password`) and a mailbox to act for
/// (`as_user`), also logs in as that mailbox through the admin format. A failure to
/// connect is an error; a refused login is reported in [`ProbeReport::login`].
pub async fn probe(
    record: &EndpointRecord,
    admin_password: Option<&Secret>,
    as_user: Option<&str>,
) -> Result<ProbeReport, Error> {
    let s = &record.settings;
    let options = ConnectOptions {
        host: s.host.clone(),
        port: s.port,
        security: security(s),
        tls: tls_settings(s)?,
        connect_timeout: CONNECT_TIMEOUT,
        session: SessionConfig::default(),
    };
    let server = options.server();
    let endpoint_err = |action: String| {
        let endpoint = s.name.clone();
        move |source| Error::Endpoint {
            endpoint,
            action,
            source: Box::new(source),
        }
    };
    let mut session = client::connect(&options)
        .await
        .map_err(endpoint_err(format!("connecting to {server} for a test")))?;
    let tls = is_tls(s.security);
    let certificate = match (tls, options.tls.certificate_check()) {
        (false, _) => CertificateStatus::NoTls,
        (true, CertificateCheck::Roots) => CertificateStatus::Verified,
        (true, CertificateCheck::Pinned(pin)) => CertificateStatus::Pinned {
            pin: pin.to_string(),
        },
        (true, CertificateCheck::Off) => CertificateStatus::NotVerified,
    };
    let names = |set: &client::CapabilitySet| set.iter().map(str::to_owned).collect::<Vec<_>>();
    let greeting = session.state().greeting_text().to_owned();
    let capabilities_before_starttls = session.state().capabilities_before_starttls().map(names);
    let capabilities = names(session.capabilities());
    let server_id = if session.capabilities().contains("ID") {
        let ours = [
            ("name", Some("imapmirror")),
            ("version", Some(env!("CARGO_PKG_VERSION"))),
        ];
        match session.id(Some(&ours)).await {
            Ok(fields) => fields.unwrap_or_default(),
            // An ID the server refuses only costs the report its software version.
            Err(ImapError::Refused { .. }) => Vec::new(),
            Err(e) => return Err(endpoint_err(format!("asking {server} for its ID"))(e)),
        }
    } else {
        Vec::new()
    };

    // The login to try, if the endpoint and the request give enough for one.
    let attempt = match (&s.admin_user, s.admin_format, admin_password, as_user) {
        (Some(admin), Some(format), Some(password), Some(user)) => {
            let format = admin_format(format, s.admin_separator);
            Some((user, admin_login(format, admin, password, user)?, None))
        }
        (None, _, _, Some(user)) if s.auth == storage::AuthMechanism::Xoauth2 => {
            let token = match (&s.oauth_token_command, &s.oauth) {
                (Some(command), _) => {
                    crate::endpoint::oauth_token::fetch_token(&s.name, command, user).await?
                }
                (None, Some(oauth)) => {
                    crate::endpoint::oauth::TokenGrant::new(&s.name, oauth)?
                        .token(user, None)
                        .await?
                }
                (None, None) => {
                    return Err(Error::MissingAccessToken {
                        role: "test",
                        user: user.to_owned(),
                    });
                }
            };
            let method = LoginMethod::XOAuth2 {
                user: user.to_owned(),
                refresh_token: None,
            };
            Some((user, method, Some(client::Secret::new(token.expose()))))
        }
        _ => None,
    };
    let attempt = attempt
        .map(|(user, method, token)| {
            let missing = || Error::MissingAccessToken {
                role: "test",
                user: user.to_owned(),
            };
            Ok::<_, Error>((user, method.to_wire(token).ok_or_else(missing)?))
        })
        .transpose()?;
    let login = match (attempt, &s.admin_user, as_user) {
        (Some((user, credentials)), _, _) => match session.authenticate(&credentials).await {
            Ok(()) => LoginCheck::Succeeded {
                user: user.to_owned(),
            },
            Err(ImapError::Refused { text, .. }) => LoginCheck::Refused {
                user: user.to_owned(),
                text,
            },
            Err(e) => {
                return Err(endpoint_err(format!("logging in as {user} on {server}"))(e));
            }
        },
        (None, Some(_), None) if admin_password.is_some() && s.admin_format.is_some() => LoginCheck::NotTried {
            reason: "no mailbox to act for yet: `imapmirror endpoint test NAME --user ADDRESS` tests the admin credentials"
                .to_owned(),
        },
        (None, None, None) if s.auth == storage::AuthMechanism::Xoauth2 => LoginCheck::NotTried {
            reason: "no mailbox to act for yet: `imapmirror endpoint test NAME --user ADDRESS` runs the token command and logs in with XOAUTH2".to_owned(),
        },
        _ => LoginCheck::NotTried {
            reason: "the endpoint has no admin credentials; mailboxes log in with the migration file's passwords".to_owned(),
        },
    };
    let logged_in = matches!(login, LoginCheck::Succeeded { .. });
    // After a login the server may announce more (Dovecot, Cyrus do); reported apart.
    let capabilities_after_login = if logged_in {
        Some(names(session.capabilities())).filter(|after| !after.is_empty())
    } else {
        None
    };
    if tokio::time::timeout(std::time::Duration::from_secs(5), session.logout())
        .await
        .is_err()
    {
        tracing::debug!(%server, "LOGOUT after the endpoint test timed out");
    }
    let mut notes = login_notes(
        &capabilities,
        capabilities_before_starttls.as_deref(),
        record,
    );
    notes.extend(capability_notes(
        capabilities_after_login.as_deref().unwrap_or(&capabilities),
        capabilities_after_login.is_some(),
    ));
    let server_family = server_family::detect(
        &greeting,
        &server_id,
        capabilities_after_login.as_deref().unwrap_or(&capabilities),
    );
    let login_with = match (&s.oauth_token_command, &s.oauth) {
        _ if s.admin_user.is_some() => "the admin credentials".to_owned(),
        (Some(_), _) => "an OAuth token from the token command".to_owned(),
        (None, Some(o)) => format!("an OAuth token from {}", o.provider.as_str()),
        (None, None) => String::new(),
    };
    let provider = Provider::resolve(s.provider, server_family);
    let provider_notes = provider.profile().notes();
    Ok(ProbeReport {
        login_with,
        rate_budget: None,
        endpoint: s.name.clone(),
        server,
        security: match s.security {
            Security::Ssl => "implicit TLS",
            Security::Starttls => "STARTTLS",
            Security::None => "none",
        }
        .to_owned(),
        tls,
        certificate,
        server_family,
        provider,
        provider_notes,
        greeting,
        server_id,
        capabilities_before_starttls,
        capabilities,
        capabilities_after_login,
        login,
        notes,
    })
}

fn is_tls(security: Security) -> bool {
    // `connect` fails rather than fall back to plaintext, so a session exists only with
    // the protection that was asked for.
    !matches!(security, Security::None)
}

/// Whether mailboxes can log in, judged by the capabilities before login (`pre_login`,
/// after STARTTLS when it is used) and, with STARTTLS, the plaintext ones
/// (`before_starttls`).
pub fn login_notes(
    pre_login: &[String],
    before_starttls: Option<&[String]>,
    record: &EndpointRecord,
) -> Vec<String> {
    let has = |name: &str| pre_login.iter().any(|c| c.eq_ignore_ascii_case(name));
    let settings = &record.settings;
    let plaintext = settings.security == Security::None;
    // Over plaintext, a server that offers STARTTLS may hold its password methods back
    // until TLS (Courier offers no AUTH=PLAIN before it; many set LOGINDISABLED).
    let after_starttls = if plaintext && has("STARTTLS") {
        " before STARTTLS: use --security starttls (the server offers it)"
    } else {
        ""
    };
    let mut notes = Vec::new();
    let mut methods: Vec<String> = Vec::new();
    if !has("LOGINDISABLED") {
        methods.push("LOGIN".to_owned());
    }
    methods.extend(pre_login.iter().filter_map(|c| {
        let (name, mechanism) = c.split_once('=')?;
        name.eq_ignore_ascii_case("AUTH")
            .then(|| format!("AUTHENTICATE {mechanism}"))
    }));
    notes.push(if methods.is_empty() {
        "login methods offered before login: none".to_owned()
    } else {
        format!(
            "login methods offered before login{}: {}",
            if before_starttls.is_some() {
                " (after STARTTLS)"
            } else {
                ""
            },
            methods.join(", ")
        )
    });
    if let Some(plain) = before_starttls {
        let plain_has = |name: &str| plain.iter().any(|c| c.eq_ignore_ascii_case(name));
        if has("AUTH=PLAIN") && !plain_has("AUTH=PLAIN") {
            notes.push(
                "AUTH=PLAIN is offered only after STARTTLS — as it should be, passwords travel encrypted"
                    .to_owned(),
            );
        }
    }
    if has("LOGINDISABLED") {
        notes.push(if plaintext {
            format!(
                "LOGINDISABLED — the server refuses passwords on this connection{}",
                if after_starttls.is_empty() {
                    ": use --security ssl or starttls"
                } else {
                    after_starttls
                }
            )
        } else {
            "LOGINDISABLED even over TLS — the server refuses the LOGIN command: only AUTHENTICATE works (--admin-format sasl needs AUTH=PLAIN, --auth xoauth2 needs AUTH=XOAUTH2)".to_owned()
        });
    }
    if settings.auth == imapmirror_storage::AuthMechanism::Xoauth2 && !has("AUTH=XOAUTH2") {
        notes.push(format!(
            "no AUTH=XOAUTH2 — this endpoint is set to --auth xoauth2 but the server does not offer it{after_starttls}"
        ));
    }
    if settings.admin_format == Some(imapmirror_storage::AdminFormat::Sasl) && !has("AUTH=PLAIN") {
        notes.push(if after_starttls.is_empty() {
            "no AUTH=PLAIN — the sasl admin format needs it: use another --admin-format".to_owned()
        } else {
            format!("no AUTH=PLAIN — the sasl admin format needs it{after_starttls}")
        });
    }
    notes
}

/// What a server's capabilities mean for a migration, as an administrator reads it.
/// `after_login`: whether the list is the one announced after logging in (servers such
/// as Dovecot announce UIDPLUS, MULTIAPPEND or CONDSTORE only then).
pub fn capability_notes(capabilities: &[String], after_login: bool) -> Vec<String> {
    let has = |name: &str| capabilities.iter().any(|c| c.eq_ignore_ascii_case(name));
    let mut notes = Vec::new();
    let rich = has("UIDPLUS") && has("CONDSTORE");
    if !after_login && !rich {
        notes.push(
            "these are the capabilities before login; many servers announce more after it — `imapmirror endpoint test NAME --user ADDRESS` shows those"
                .to_owned(),
        );
    }
    if !has("IMAP4rev1") && !has("IMAP4rev2") {
        notes.push("no IMAP4rev1 in CAPABILITY — the server may not be an IMAP server".to_owned());
    }
    notes.push(if has("UIDPLUS") {
        "UIDPLUS — each appended message is recorded by the UID the target gives it".to_owned()
    } else {
        "no UIDPLUS — duplicates prevented by fingerprints, slower (as a target)".to_owned()
    });
    notes.push(if has("MULTIAPPEND") {
        "MULTIAPPEND — many messages per APPEND command, fewer commits on the target".to_owned()
    } else {
        "no MULTIAPPEND — one APPEND per message, slower (as a target)".to_owned()
    });
    if has("LITERAL+") {
        notes.push(
            "LITERAL+ — messages are sent without waiting for the server between them".to_owned(),
        );
    } else if has("LITERAL-") {
        notes.push(
            "LITERAL- — messages up to 4 KiB are sent without waiting for the server".to_owned(),
        );
    }
    if let Some(limit) = capabilities.iter().find_map(|c| {
        let (name, value) = c.split_once('=')?;
        name.eq_ignore_ascii_case("APPENDLIMIT").then_some(value)
    }) {
        notes.push(format!(
            "APPENDLIMIT {limit} — larger messages are skipped as too large and listed in the report"
        ));
    }
    notes.push(if has("CONDSTORE") || has("QRESYNC") {
        "CONDSTORE present — flag deltas are cheap".to_owned()
    } else {
        "no CONDSTORE — flag changes are found by reading every message's flags each pass"
            .to_owned()
    });
    notes.push(if has("LIST-STATUS") {
        "LIST-STATUS — one command per pass shows which folders changed".to_owned()
    } else {
        "no LIST-STATUS — one STATUS command per folder each pass".to_owned()
    });
    notes.push(if has("SPECIAL-USE") {
        "SPECIAL-USE — Sent, Drafts, Trash and Junk are matched by attribute".to_owned()
    } else {
        "no SPECIAL-USE — Sent, Drafts, Trash and Junk are matched by well-known names".to_owned()
    });
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use imapmirror_storage::{AdminFormat, EndpointSettings, Timestamp};

    fn record(security: Security) -> EndpointRecord {
        EndpointRecord {
            settings: EndpointSettings {
                admin_format: Some(AdminFormat::Sasl),
                ..EndpointSettings::new("src", "127.0.0.1", 143, security)
            },
            has_admin_password: false,
            created: Timestamp::from_unix_millis(0),
        }
    }

    fn caps(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_bare_server_gets_the_slow_path_notes() {
        let text = capability_notes(&caps("IMAP4rev1"), true).join("\n");
        assert!(
            text.contains("no UIDPLUS — duplicates prevented by fingerprints, slower"),
            "{text}"
        );
        assert!(text.contains("no MULTIAPPEND"), "{text}");
        assert!(text.contains("no CONDSTORE"), "{text}");
        assert!(!text.contains("before login"), "{text}");
        let before = capability_notes(&caps("IMAP4rev1"), false).join("\n");
        assert!(before.contains("before login"), "{before}");
        let login = login_notes(&caps("IMAP4rev1"), None, &record(Security::Ssl)).join("\n");
        assert!(
            login.contains("no AUTH=PLAIN — the sasl admin format needs it"),
            "{login}"
        );
        assert!(
            login.contains("login methods offered before login: LOGIN"),
            "{login}"
        );
    }

    #[test]
    fn a_rich_server_gets_the_fast_path_notes() {
        let notes = capability_notes(
            &caps(
                "IMAP4rev1 UIDPLUS MULTIAPPEND CONDSTORE APPENDLIMIT=35651584 LITERAL+ AUTH=PLAIN LIST-STATUS SPECIAL-USE",
            ),
            true,
        );
        let text = notes.join("\n");
        assert!(
            text.contains("CONDSTORE present — flag deltas are cheap"),
            "{text}"
        );
        assert!(text.contains("APPENDLIMIT 35651584"), "{text}");
        assert!(!text.contains("no "), "{text}");
    }

    /// Cyrus 3.6 announces LOGINDISABLED after a login (the kit's transcript): the login
    /// methods are judged before it, where Cyrus offers LOGIN and AUTH=PLAIN.
    #[test]
    fn cyrus_logindisabled_after_login_is_no_login_problem() {
        let pre = caps(
            "IMAP4rev1 LITERAL+ ID ENABLE STARTTLS AUTH=SCRAM-SHA-256 AUTH=DIGEST-MD5 AUTH=CRAM-MD5 AUTH=NTLM AUTH=PLAIN AUTH=LOGIN SASL-IR",
        );
        let post = caps(
            "IMAP4rev1 LITERAL+ ID ENABLE ACL CONDSTORE LIST-STATUS MULTIAPPEND SPECIAL-USE UIDPLUS XLIST LOGINDISABLED IDLE APPENDLIMIT=4294967295",
        );
        let login = login_notes(&pre, None, &record(Security::None)).join("\n");
        assert!(!login.contains("LOGINDISABLED"), "{login}");
        assert!(!login.contains("no AUTH=PLAIN"), "{login}");
        assert!(
            login.contains("LOGIN, AUTHENTICATE SCRAM-SHA-256")
                && login.contains("AUTHENTICATE PLAIN"),
            "{login}"
        );
        let session = capability_notes(&post, true).join("\n");
        assert!(!session.contains("LOGINDISABLED"), "{session}");
        assert!(session.contains("MULTIAPPEND — many messages"), "{session}");
    }

    /// Courier 5.0 offers no AUTH=PLAIN before STARTTLS and offers it after.
    #[test]
    fn courier_offers_auth_plain_only_after_starttls() {
        let plaintext = caps(
            "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION STARTTLS ENABLE UTF8=ACCEPT",
        );
        let over_tls = caps(
            "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION ENABLE UTF8=ACCEPT AUTH=PLAIN",
        );
        let none = login_notes(&plaintext, None, &record(Security::None)).join("\n");
        assert!(
            none.contains("no AUTH=PLAIN — the sasl admin format needs it before STARTTLS: use --security starttls"),
            "{none}"
        );
        let starttls =
            login_notes(&over_tls, Some(&plaintext), &record(Security::Starttls)).join("\n");
        assert!(!starttls.contains("no AUTH=PLAIN"), "{starttls}");
        assert!(starttls.contains("only after STARTTLS"), "{starttls}");
        assert!(
            starttls.contains("before login (after STARTTLS): LOGIN, AUTHENTICATE PLAIN"),
            "{starttls}"
        );
    }

    /// Microsoft 365 announces LOGINDISABLED over implicit TLS (imapflow's transcript).
    #[test]
    fn logindisabled_over_tls_means_authenticate_only() {
        let pre = caps(
            "IMAP4 IMAP4rev1 AUTH=XOAUTH2 LOGINDISABLED SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+",
        );
        let text = login_notes(&pre, None, &record(Security::Ssl)).join("\n");
        assert!(text.contains("LOGINDISABLED even over TLS"), "{text}");
        assert!(
            text.contains("login methods offered before login: AUTHENTICATE XOAUTH2"),
            "{text}"
        );
        let plain = login_notes(
            &caps("IMAP4rev1 LOGINDISABLED STARTTLS"),
            None,
            &record(Security::None),
        )
        .join("\n");
        assert!(
            plain.contains("before STARTTLS: use --security starttls"),
            "{plain}"
        );
    }

    #[test]
    fn a_refused_login_fails_the_test() {
        let mut report = ProbeReport {
            login_with: String::new(),
            rate_budget: None,
            endpoint: "src".into(),
            server: "127.0.0.1:143".into(),
            security: "none".into(),
            tls: false,
            certificate: CertificateStatus::NoTls,
            server_family: ServerFamily::Unknown,
            provider: Provider::Generic,
            provider_notes: Vec::new(),
            greeting: "ready".into(),
            server_id: vec![],
            capabilities_before_starttls: None,
            capabilities: vec![],
            capabilities_after_login: None,
            login: LoginCheck::Refused {
                user: "a@b".into(),
                text: "Authentication failed.".into(),
            },
            notes: vec![],
        };
        assert!(!report.passed());
        report.login = LoginCheck::Succeeded { user: "a@b".into() };
        assert!(report.passed());
    }
}
