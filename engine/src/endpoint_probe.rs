//! `endpoint test` (Exchange's Test-MigrationServerAvailability): connect, negotiate TLS,
//! read CAPABILITY, optionally log in, and say what the capabilities mean for a migration.

use imapmirror_protocol::Error as ImapError;
use imapmirror_protocol::client::{self, ConnectOptions, SessionConfig};
use imapmirror_storage::{self as storage, EndpointRecord, Security};
use serde::{Deserialize, Serialize};

use crate::credentials::{LoginMethod, Secret, admin_login};
use crate::endpoint_connection::{CONNECT_TIMEOUT, admin_format, security, tls_settings};
use crate::error::Error;

/// What a test of an endpoint found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub endpoint: String,
    /// `host:port`.
    pub server: String,
    /// `implicit TLS`, `STARTTLS` or `none`.
    pub security: String,
    /// Whether the session ended up encrypted.
    pub tls: bool,
    /// The capabilities announced (after TLS, before login).
    pub capabilities: Vec<String>,
    pub login: LoginCheck,
    /// What the capabilities mean for a migration, one sentence each.
    pub notes: Vec<String>,
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
    let capabilities: Vec<String> = session.capabilities().iter().map(str::to_owned).collect();

    // The login to try, if the endpoint and the request give enough for one.
    let attempt = match (&s.admin_user, s.admin_format, admin_password, as_user) {
        (Some(admin), Some(format), Some(password), Some(user)) => {
            let format = admin_format(format, s.admin_separator);
            Some((user, admin_login(format, admin, password, user)?, None))
        }
        (None, _, _, Some(user)) if s.auth == storage::AuthMechanism::Xoauth2 => {
            let Some(command) = &s.oauth_token_command else {
                return Err(Error::MissingAccessToken {
                    role: "test",
                    user: user.to_owned(),
                });
            };
            let token = crate::oauth_token::fetch_token(&s.name, command, user).await?;
            let method = LoginMethod::XOAuth2 {
                user: user.to_owned(),
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
    // After a login the server may announce more (Dovecot does); report those.
    let capabilities = if logged_in {
        let after: Vec<String> = session.capabilities().iter().map(str::to_owned).collect();
        if after.is_empty() {
            capabilities
        } else {
            after
        }
    } else {
        capabilities
    };
    if tokio::time::timeout(std::time::Duration::from_secs(5), session.logout())
        .await
        .is_err()
    {
        tracing::debug!(%server, "LOGOUT after the endpoint test timed out");
    }
    let notes = capability_notes(&capabilities, record, logged_in);
    Ok(ProbeReport {
        endpoint: s.name.clone(),
        server,
        security: match s.security {
            Security::Ssl => "implicit TLS",
            Security::Starttls => "STARTTLS",
            Security::None => "none",
        }
        .to_owned(),
        tls,
        capabilities,
        login,
        notes,
    })
}

fn is_tls(security: Security) -> bool {
    // `connect` fails rather than fall back to plaintext, so a session exists only with
    // the protection that was asked for.
    !matches!(security, Security::None)
}

/// What a server's capabilities mean for a migration, as an administrator reads it.
/// `after_login`: whether the list is the one announced after logging in (servers such
/// as Dovecot announce UIDPLUS, MULTIAPPEND or CONDSTORE only then).
pub fn capability_notes(
    capabilities: &[String],
    record: &EndpointRecord,
    after_login: bool,
) -> Vec<String> {
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
    if has("LOGINDISABLED") {
        notes.push("LOGINDISABLED — the server refuses passwords on this connection: use --security ssl or starttls".to_owned());
    }
    if record.settings.auth == imapmirror_storage::AuthMechanism::Xoauth2 && !has("AUTH=XOAUTH2") {
        notes.push("no AUTH=XOAUTH2 — this endpoint is set to --auth xoauth2 but the server does not offer it".to_owned());
    }
    if record.settings.admin_format == Some(imapmirror_storage::AdminFormat::Sasl)
        && !has("AUTH=PLAIN")
    {
        notes.push(
            "no AUTH=PLAIN — the sasl admin format needs it: use another --admin-format".to_owned(),
        );
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use imapmirror_storage::{EndpointSettings, Timestamp};

    fn record() -> EndpointRecord {
        EndpointRecord {
            settings: EndpointSettings {
                admin_format: Some(imapmirror_storage::AdminFormat::Sasl),
                ..EndpointSettings::new("src", "127.0.0.1", 143, Security::None)
            },
            has_admin_password: false,
            created: Timestamp::from_unix_millis(0),
        }
    }

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn a_bare_server_gets_the_slow_path_notes() {
        let notes = capability_notes(&caps(&["IMAP4rev1"]), &record(), true);
        let text = notes.join("\n");
        assert!(
            text.contains("no UIDPLUS — duplicates prevented by fingerprints, slower"),
            "{text}"
        );
        assert!(text.contains("no MULTIAPPEND"), "{text}");
        assert!(text.contains("no CONDSTORE"), "{text}");
        assert!(text.contains("no AUTH=PLAIN"), "{text}");
        assert!(!text.contains("before login"), "{text}");
        let before = capability_notes(&caps(&["IMAP4rev1"]), &record(), false).join("\n");
        assert!(before.contains("before login"), "{before}");
    }

    #[test]
    fn a_rich_server_gets_the_fast_path_notes() {
        let notes = capability_notes(
            &caps(&[
                "IMAP4rev1",
                "UIDPLUS",
                "MULTIAPPEND",
                "CONDSTORE",
                "APPENDLIMIT=35651584",
                "LITERAL+",
                "AUTH=PLAIN",
                "LIST-STATUS",
                "SPECIAL-USE",
            ]),
            &record(),
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

    #[test]
    fn a_refused_login_fails_the_test() {
        let mut report = ProbeReport {
            endpoint: "src".into(),
            server: "127.0.0.1:143".into(),
            security: "none".into(),
            tls: false,
            capabilities: vec![],
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
