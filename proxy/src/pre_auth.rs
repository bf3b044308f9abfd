//! The pre-authentication loop, without I/O: fed command frames, it emits the bytes to
//! write and the actions for the driver (upgrade to TLS, log in, close).
//!
//! Order of calls: [`PreAuth::greeting`] once; then for every frame the command decoder
//! yields, [`PreAuth::handle_frame`] (or [`PreAuth::handle_limit_exceeded`] when the
//! decoder refused an oversized line or literal); perform the returned actions in order.
//! After [`PreAuthAction::StartTls`] the driver upgrades the transport and calls
//! [`PreAuth::tls_started`]; after [`PreAuthAction::Login`] it routes and logs in, then
//! calls [`PreAuth::login_refused`] (the client may try again) or stops using the machine.
//!
//! Only CAPABILITY, NOOP, LOGOUT, STARTTLS, ID, LOGIN and AUTHENTICATE PLAIN (with SASL-IR
//! or a continuation) are served; anything else is answered with BAD, and a client that
//! keeps sending garbage is disconnected.

use bytes::Bytes;
use imapmirror_protocol::{
    AuthenticateLine, CommandFrame, CommandKind, parse_authenticate_line, parse_command,
};

use crate::backend_endpoint::{BackendLogin, SecretBytes};
use crate::server_response::{capability_line, leading_tag, status};

/// Capabilities a backend announces before login that are about the login itself or the
/// transport; the proxy decides those on its own.
const PROXY_OWNED: &[&str] = &["STARTTLS", "LOGINDISABLED", "LOGIN-REFERRALS", "IMAP4REV1"];

/// What the machine needs to know about the connection and the backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreAuthSettings {
    /// The connection is already TLS (implicit TLS listener).
    pub tls_active: bool,
    /// STARTTLS can be offered (a certificate is configured).
    pub starttls_available: bool,
    /// LOGIN/AUTHENTICATE are allowed without TLS.
    pub allow_plaintext: bool,
    /// The capabilities every backend offers before login (upper-case); `None` while no
    /// backend has been reached, then only IMAP4rev1 is promised.
    pub backend_capabilities: Option<Vec<String>>,
    /// After this many invalid commands the client is disconnected.
    pub max_bad_commands: u32,
}

/// A login the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLogin {
    /// The client's tag, to answer with.
    pub tag: String,
    /// The credentials as the client gave them.
    pub credentials: BackendLogin,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreAuthAction {
    /// Write these bytes to the client.
    Send(Bytes),
    /// The `OK` to STARTTLS was queued: flush, then run the TLS handshake; any byte the
    /// client sent after STARTTLS and before the handshake must be discarded with the
    /// connection (CVE-2011-0411).
    StartTls,
    /// Route and log in to the backend, answer the client with the result.
    Login(ClientLogin),
    /// Flush and close the connection.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Ready,
    /// `+` was sent for AUTHENTICATE PLAIN; the next line is the SASL response.
    AwaitingSasl {
        tag: String,
    },
    /// A login is with the driver.
    LoggingIn,
    Closed,
}

/// The pre-authentication state of one client connection.
#[derive(Debug)]
pub struct PreAuth {
    settings: PreAuthSettings,
    state: State,
    bad_commands: u32,
    client_id: Vec<(String, Option<String>)>,
}

impl PreAuth {
    /// A machine for a new connection.
    pub fn new(settings: PreAuthSettings) -> Self {
        PreAuth {
            settings,
            state: State::Ready,
            bad_commands: 0,
            client_id: Vec::new(),
        }
    }

    /// The greeting, with the capabilities (clients then need no CAPABILITY round trip).
    pub fn greeting(&self) -> Bytes {
        let code = format!("CAPABILITY {}", self.capabilities().join(" "));
        status(None, "OK", Some(&code), "imapmirror proxy ready.")
    }

    /// Whether LOGIN and AUTHENTICATE are allowed now.
    pub fn login_allowed(&self) -> bool {
        self.settings.tls_active || self.settings.allow_plaintext
    }

    /// The capabilities announced now: what every backend offers (minus what concerns the
    /// login and transport), and the proxy's own STARTTLS / AUTH=PLAIN / LOGINDISABLED.
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps = vec!["IMAP4rev1".to_owned()];
        if let Some(backend) = &self.settings.backend_capabilities {
            caps.extend(
                backend
                    .iter()
                    .filter(|c| {
                        let up = c.to_ascii_uppercase();
                        !PROXY_OWNED.contains(&up.as_str()) && !up.starts_with("AUTH=")
                    })
                    .cloned(),
            );
        }
        if !self.settings.tls_active && self.settings.starttls_available {
            caps.push("STARTTLS".to_owned());
        }
        if self.login_allowed() {
            caps.push("AUTH=PLAIN".to_owned());
        } else {
            caps.push("LOGINDISABLED".to_owned());
        }
        caps
    }

    /// True when LITERAL+ is announced, so the decoder must accept non-synchronizing
    /// literals up to its command limit (else only LITERAL-'s 4096 bytes).
    pub fn literal_plus(&self) -> bool {
        self.capabilities()
            .iter()
            .any(|c| c.eq_ignore_ascii_case("LITERAL+"))
    }

    /// The client's ID fields (RFC 2971), for logs; names are lower-cased.
    pub fn client_id(&self) -> &[(String, Option<String>)] {
        &self.client_id
    }

    /// True once the connection is to be closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The TLS handshake after STARTTLS succeeded.
    pub fn tls_started(&mut self) {
        self.settings.tls_active = true;
    }

    /// The backend refused the login (the driver has answered the client); the client
    /// may try again.
    pub fn login_refused(&mut self) {
        if self.state == State::LoggingIn {
            self.state = State::Ready;
        }
    }

    /// The command decoder refused a line or literal over the limits: the connection
    /// cannot be resynchronized, so it is closed (as Dovecot's imap-login does).
    pub fn handle_limit_exceeded(&mut self, what: &str) -> Vec<PreAuthAction> {
        self.state = State::Closed;
        vec![
            PreAuthAction::Send(status(
                None,
                "BYE",
                None,
                &format!("Too long: {what} is over the proxy's limit."),
            )),
            PreAuthAction::Close,
        ]
    }

    /// One frame from the command decoder.
    pub fn handle_frame(&mut self, frame: &CommandFrame) -> Vec<PreAuthAction> {
        match frame {
            CommandFrame::NeedContinuation { .. } => {
                // The decoder already checked the literal against the limits.
                vec![PreAuthAction::Send(Bytes::from_static(
                    b"+ Ready for literal data\r\n",
                ))]
            }
            CommandFrame::Whole(bytes) => match std::mem::replace(&mut self.state, State::Ready) {
                State::AwaitingSasl { tag } => self.sasl_response(&tag, bytes),
                State::Ready => self.command(bytes),
                other @ (State::LoggingIn | State::Closed) => {
                    // Pipelined after a LOGIN: the driver forwards these to the backend
                    // once logged in, so the machine never sees them then.
                    self.state = other;
                    Vec::new()
                }
            },
        }
    }

    fn bad(&mut self, tag: Option<&str>, text: &str) -> Vec<PreAuthAction> {
        self.bad_commands += 1;
        let mut out = vec![PreAuthAction::Send(status(tag, "BAD", None, text))];
        if self.bad_commands >= self.settings.max_bad_commands {
            self.state = State::Closed;
            out.push(PreAuthAction::Send(status(
                None,
                "BYE",
                None,
                "Too many invalid IMAP commands.",
            )));
            out.push(PreAuthAction::Close);
        }
        out
    }

    fn command(&mut self, frame: &[u8]) -> Vec<PreAuthAction> {
        let cmd = match parse_command(frame) {
            Ok(c) => c,
            Err(_) => {
                let tag = leading_tag(frame).map(str::to_owned);
                return self.bad(tag.as_deref(), "Error in IMAP command: invalid syntax.");
            }
        };
        let Some(tag) = std::str::from_utf8(cmd.tag).ok().map(str::to_owned) else {
            return self.bad(None, "Error in IMAP command: invalid tag.");
        };
        let t = Some(tag.as_str());
        let send = |b: Bytes| PreAuthAction::Send(b);
        match cmd.kind {
            CommandKind::Capability => vec![
                send(capability_line(&self.capabilities())),
                send(status(t, "OK", None, "Capability completed.")),
            ],
            CommandKind::Noop => vec![send(status(t, "OK", None, "NOOP completed."))],
            CommandKind::Logout => {
                self.state = State::Closed;
                vec![
                    send(status(None, "BYE", None, "Logging out.")),
                    send(status(t, "OK", None, "Logout completed.")),
                    PreAuthAction::Close,
                ]
            }
            CommandKind::StartTls => {
                if self.settings.tls_active {
                    self.bad(t, "TLS is already active.")
                } else if !self.settings.starttls_available {
                    self.bad(t, "STARTTLS is not available on this port.")
                } else {
                    vec![
                        send(status(t, "OK", None, "Begin TLS negotiation now.")),
                        PreAuthAction::StartTls,
                    ]
                }
            }
            CommandKind::Id(params) => {
                self.client_id = params
                    .map(|p| {
                        client_id_fields(
                            p.iter()
                                .map(|(k, v)| (k.to_bytes(), v.map(|v| v.to_bytes()))),
                        )
                    })
                    .unwrap_or_default();
                vec![
                    send(Bytes::from_static(b"* ID (\"name\" \"imapmirror\")\r\n")),
                    send(status(t, "OK", None, "ID completed.")),
                ]
            }
            CommandKind::Login { username, password } => {
                if let Some(refusal) = self.refuse_plaintext(t) {
                    return refusal;
                }
                self.state = State::LoggingIn;
                vec![PreAuthAction::Login(ClientLogin {
                    tag,
                    credentials: BackendLogin::Login {
                        user: username.to_bytes().into_owned(),
                        password: SecretBytes::new(password.to_bytes().into_owned()),
                    },
                })]
            }
            CommandKind::Authenticate {
                mechanism,
                initial_response,
            } => {
                if !mechanism.eq_ignore_ascii_case(b"PLAIN") {
                    return vec![send(status(
                        t,
                        "NO",
                        Some("CANNOT"),
                        "Unsupported authentication mechanism.",
                    ))];
                }
                if let Some(refusal) = self.refuse_plaintext(t) {
                    return refusal;
                }
                match initial_response {
                    Some(b"=") => self.plain(tag, b""),
                    Some(ir) => self.sasl_response(&tag, &[ir, b"\r\n"].concat()),
                    None => {
                        self.state = State::AwaitingSasl { tag };
                        vec![send(Bytes::from_static(b"+ \r\n"))]
                    }
                }
            }
            CommandKind::Enable(_) => self.bad(t, "ENABLE is only valid after login."),
            _ => self.bad(t, "Command not allowed before login: log in first."),
        }
    }

    fn refuse_plaintext(&mut self, tag: Option<&str>) -> Option<Vec<PreAuthAction>> {
        (!self.login_allowed()).then(|| {
            vec![PreAuthAction::Send(status(
                tag,
                "NO",
                Some("PRIVACYREQUIRED"),
                "Plaintext authentication is disallowed on non-secure connections: use STARTTLS or the TLS port.",
            ))]
        })
    }

    fn sasl_response(&mut self, tag: &str, line: &[u8]) -> Vec<PreAuthAction> {
        match parse_authenticate_line(line) {
            Ok(AuthenticateLine::Cancel) => vec![PreAuthAction::Send(status(
                Some(tag),
                "BAD",
                None,
                "Authentication aborted by client.",
            ))],
            Ok(resp @ AuthenticateLine::Response(_)) => match resp.decode() {
                Some(Ok(decoded)) => {
                    let decoded = SecretBytes::new(decoded);
                    self.plain(tag.to_owned(), decoded.expose())
                }
                _ => self.bad(Some(tag), "Invalid base64 data in the SASL response."),
            },
            Err(_) => self.bad(Some(tag), "Invalid SASL response line."),
        }
    }

    /// `[authzid] NUL authcid NUL passwd` (RFC 4616).
    fn plain(&mut self, tag: String, message: &[u8]) -> Vec<PreAuthAction> {
        let mut parts = message.splitn(3, |&b| b == 0);
        let (Some(authzid), Some(authcid), Some(password)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return vec![PreAuthAction::Send(status(
                Some(&tag),
                "NO",
                Some("AUTHENTICATIONFAILED"),
                "Invalid PLAIN message: expected authzid NUL authcid NUL password.",
            ))];
        };
        if authcid.is_empty() || password.contains(&0) {
            return vec![PreAuthAction::Send(status(
                Some(&tag),
                "NO",
                Some("AUTHENTICATIONFAILED"),
                "Invalid PLAIN message: empty user name or NUL in the password.",
            ))];
        }
        self.state = State::LoggingIn;
        vec![PreAuthAction::Login(ClientLogin {
            tag,
            credentials: BackendLogin::Plain {
                authzid: authzid.to_vec(),
                authcid: authcid.to_vec(),
                password: SecretBytes::new(password.to_vec()),
            },
        })]
    }
}

/// RFC 2971's limits on what a client may send in ID: at most 30 pairs, a field name of
/// at most 30 octets, a value of at most 1024 octets.
const ID_MAX_PAIRS: usize = 30;
const ID_MAX_FIELD: usize = 30;
const ID_MAX_VALUE: usize = 1024;

/// The ID fields the proxy keeps (for logs and `x-proxy-ttl`), within RFC 2971's limits.
/// A client over them is answered OK all the same, as Dovecot does: ID is informational
/// and imaptest's `id` test sends 30 values of 1 KiB and more; what is over is dropped
/// (pairs after the 30th, fields whose name is too long) or cut (values), so a client
/// cannot make a session hold more than about 31 KiB of ID.
fn client_id_fields<K, V>(
    pairs: impl Iterator<Item = (K, Option<V>)>,
) -> Vec<(String, Option<String>)>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    pairs
        .filter(|(k, _)| k.as_ref().len() <= ID_MAX_FIELD)
        .take(ID_MAX_PAIRS)
        .map(|(k, v)| {
            let value = v.map(|v| {
                let v = v.as_ref();
                let mut text =
                    String::from_utf8_lossy(&v[..v.len().min(ID_MAX_VALUE)]).into_owned();
                // A cut inside a UTF-8 sequence leaves U+FFFD (3 octets); keep the bound.
                while text.len() > ID_MAX_VALUE {
                    text.pop();
                }
                text
            });
            (String::from_utf8_lossy(k.as_ref()).to_lowercase(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use imapmirror_protocol::{CommandDecoder, CommandDecoderConfig};
    use tokio_util::codec::Decoder;

    fn settings(tls: bool, plaintext: bool) -> PreAuthSettings {
        PreAuthSettings {
            tls_active: tls,
            starttls_available: true,
            allow_plaintext: plaintext,
            backend_capabilities: Some(
                [
                    "IMAP4rev1",
                    "SASL-IR",
                    "ID",
                    "LITERAL+",
                    "STARTTLS",
                    "AUTH=PLAIN",
                    "AUTH=LOGIN",
                    "LOGIN-REFERRALS",
                    "IDLE",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ),
            max_bad_commands: 3,
        }
    }

    /// Feeds raw client bytes through the real command decoder and the machine; returns
    /// everything written and the non-Send actions.
    fn feed(m: &mut PreAuth, input: &[u8]) -> (String, Vec<PreAuthAction>) {
        let mut decoder = CommandDecoder::new(CommandDecoderConfig::default());
        let mut buf = bytes::BytesMut::from(input);
        let mut written = String::new();
        let mut actions = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    for a in m.handle_frame(&frame) {
                        match a {
                            PreAuthAction::Send(b) => {
                                written.push_str(&String::from_utf8_lossy(&b))
                            }
                            other => actions.push(other),
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    for a in m.handle_limit_exceeded("a command line") {
                        match a {
                            PreAuthAction::Send(b) => {
                                written.push_str(&String::from_utf8_lossy(&b))
                            }
                            other => actions.push(other),
                        }
                    }
                    break;
                }
            }
        }
        (written, actions)
    }

    #[test]
    fn capabilities_before_tls_disable_login() {
        let m = PreAuth::new(settings(false, false));
        let g = String::from_utf8(m.greeting().to_vec()).unwrap();
        assert!(
            g.starts_with(
                "* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ IDLE STARTTLS LOGINDISABLED]"
            ),
            "{g}"
        );
        assert!(!g.contains("AUTH="));
        assert!(!g.contains("LOGIN-REFERRALS"));
        let m = PreAuth::new(settings(true, false));
        let caps = m.capabilities();
        assert!(caps.contains(&"AUTH=PLAIN".to_string()));
        assert!(
            !caps.contains(&"STARTTLS".to_string()) && !caps.contains(&"LOGINDISABLED".to_string())
        );
        let mut s = settings(false, false);
        s.backend_capabilities = None;
        assert_eq!(
            PreAuth::new(s).capabilities(),
            ["IMAP4rev1", "STARTTLS", "LOGINDISABLED"]
        );
    }

    #[test]
    fn capability_noop_id_logout() {
        let mut m = PreAuth::new(settings(false, false));
        let (out, actions) = feed(
            &mut m,
            b"a CAPABILITY\r\nb NOOP\r\nc ID (\"name\" \"Thunderbird\" \"version\" NIL)\r\nd LOGOUT\r\n",
        );
        assert!(
            out.contains("* CAPABILITY IMAP4rev1 ")
                && out.contains("a OK Capability completed.\r\n")
        );
        assert!(out.contains("b OK NOOP completed.\r\n"));
        assert!(out.contains("* ID (\"name\" \"imapmirror\")\r\nc OK ID completed.\r\n"));
        assert!(out.ends_with("* BYE Logging out.\r\nd OK Logout completed.\r\n"));
        assert_eq!(actions, [PreAuthAction::Close]);
        assert_eq!(
            m.client_id()[0],
            ("name".to_string(), Some("Thunderbird".to_string()))
        );
        assert!(m.is_closed());
    }

    #[test]
    fn login_needs_tls_unless_plaintext_is_allowed() {
        let mut m = PreAuth::new(settings(false, false));
        let (out, actions) = feed(
            &mut m,
            b"a LOGIN user pw\r\nb AUTHENTICATE PLAIN AHUAcA==\r\n",
        );
        assert!(out.starts_with("a NO [PRIVACYREQUIRED]"), "{out}");
        assert!(out.contains("b NO [PRIVACYREQUIRED]"));
        assert!(actions.is_empty());
        let mut m = PreAuth::new(settings(false, true));
        let (out, actions) = feed(&mut m, b"a LOGIN \"user@x\" {2}\r\npw\r\n");
        assert_eq!(out, "+ Ready for literal data\r\n");
        let [PreAuthAction::Login(l)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(l.tag, "a");
        assert_eq!(l.credentials.mailbox_user(), b"user@x");
        assert_eq!(l.credentials.plain_message().expose(), b"\0user@x\0pw");
    }

    #[test]
    fn starttls_then_login() {
        let mut m = PreAuth::new(settings(false, false));
        let (out, actions) = feed(&mut m, b"s STARTTLS\r\n");
        assert_eq!(out, "s OK Begin TLS negotiation now.\r\n");
        assert_eq!(actions, [PreAuthAction::StartTls]);
        m.tls_started();
        assert!(m.capabilities().contains(&"AUTH=PLAIN".to_string()));
        let (out, _) = feed(&mut m, b"t STARTTLS\r\n");
        assert_eq!(out, "t BAD TLS is already active.\r\n");
        let (_, actions) = feed(&mut m, b"l LOGIN u p\r\n");
        assert!(matches!(actions.as_slice(), [PreAuthAction::Login(_)]));
        let mut s = settings(false, true);
        s.starttls_available = false;
        let mut m = PreAuth::new(s);
        assert!(!m.capabilities().contains(&"STARTTLS".to_string()));
        let (out, actions) = feed(&mut m, b"s STARTTLS\r\n");
        assert!(out.starts_with("s BAD") && actions.is_empty());
    }

    #[test]
    fn authenticate_plain_with_sasl_ir_and_with_continuation() {
        let mut m = PreAuth::new(settings(true, false));
        // authzid "admin-for", authcid "u", password "p w"
        let (_, actions) = feed(&mut m, b"a AUTHENTICATE PLAIN dXNlcgB1AHAgdw==\r\n");
        let [PreAuthAction::Login(l)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(l.credentials.mailbox_user(), b"user");
        assert_eq!(l.credentials.plain_message().expose(), b"user\0u\0p w");
        m.login_refused();
        let (out, actions) = feed(&mut m, b"b AUTHENTICATE plain\r\nAHUAcA==\r\n");
        assert_eq!(out, "+ \r\n");
        let [PreAuthAction::Login(l)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(
            (l.tag.as_str(), l.credentials.mailbox_user()),
            ("b", &b"u"[..])
        );
        m.login_refused();
        let (out, _) = feed(&mut m, b"c AUTHENTICATE PLAIN\r\n*\r\n");
        assert_eq!(out, "+ \r\nc BAD Authentication aborted by client.\r\n");
        let (out, _) = feed(&mut m, b"d AUTHENTICATE CRAM-MD5\r\n");
        assert!(out.starts_with("d NO [CANNOT]"));
        let (out, _) = feed(&mut m, b"e AUTHENTICATE PLAIN =\r\n");
        assert!(out.starts_with("e NO [AUTHENTICATIONFAILED]"), "{out}");
        let (out, _) = feed(&mut m, b"f AUTHENTICATE PLAIN AGZvbw==\r\n");
        assert!(
            out.starts_with("f NO [AUTHENTICATIONFAILED]"),
            "no password: {out}"
        );
    }

    #[test]
    fn garbage_is_bad_and_persistent_garbage_closes() {
        let mut m = PreAuth::new(settings(true, false));
        let (out, actions) = feed(
            &mut m,
            b"a SELECT INBOX\r\n\x00\x01\x02 junk\r\nb ENABLE IDLE\r\n",
        );
        assert!(
            out.starts_with("a BAD Command not allowed before login"),
            "{out}"
        );
        assert!(out.contains("* BAD Error in IMAP command"));
        assert!(out.contains("b BAD ENABLE is only valid after login."));
        assert!(out.ends_with("* BYE Too many invalid IMAP commands.\r\n"));
        assert_eq!(actions, [PreAuthAction::Close]);
        let mut m = PreAuth::new(settings(true, false));
        let (out, _) = feed(&mut m, b"x AUTHENTICATE PLAIN\r\nnot base64!\r\n");
        assert!(
            out.ends_with("x BAD Invalid SASL response line.\r\n"),
            "{out}"
        );
    }

    #[test]
    fn oversized_line_closes_with_bye() {
        let mut m = PreAuth::new(settings(true, false));
        let mut long = b"a LOGIN ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 10_000));
        let (out, actions) = feed(&mut m, &long);
        assert!(out.starts_with("* BYE Too long"), "{out}");
        assert_eq!(actions, [PreAuthAction::Close]);
    }

    #[test]
    fn a_31_kib_id_is_answered_and_kept_within_rfc_2971() {
        let mut m = PreAuth::new(settings(true, false));
        // imaptest-like: 31 pairs of 1 KiB values, one field name over 30 octets, one
        // value over 1024 octets.
        let mut line = b"i ID (".to_vec();
        line.extend_from_slice(format!("\"{}\" \"v\"", "f".repeat(31)).as_bytes());
        for k in 0..31 {
            let value = if k == 0 {
                "é".repeat(600)
            } else {
                "v".repeat(1000)
            };
            line.extend_from_slice(format!(" \"field{k}\" \"{value}\"").as_bytes());
        }
        line.extend_from_slice(b")\r\n");
        assert!(line.len() > 30_000);
        let mut decoder = CommandDecoder::new(CommandDecoderConfig {
            max_command: 72 * 1024,
            max_line: 64 * 1024,
            max_non_sync_literal: 4096,
        });
        let mut buf = bytes::BytesMut::from(&line[..]);
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        let out: Vec<_> = m.handle_frame(&frame);
        assert_eq!(
            out.last(),
            Some(&PreAuthAction::Send(status(
                Some("i"),
                "OK",
                None,
                "ID completed."
            )))
        );
        let id = m.client_id();
        assert_eq!(id.len(), 30);
        assert_eq!(id[0].0, "field0");
        assert!(
            id.iter()
                .all(|(k, v)| k.len() <= 30 && v.as_ref().is_some_and(|v| v.len() <= 1024))
        );
        assert!(id[0].1.as_ref().is_some_and(|v| v.starts_with('é')));
    }

    #[test]
    fn passwords_never_show_in_debug() {
        let mut m = PreAuth::new(settings(true, false));
        let (_, actions) = feed(&mut m, b"a LOGIN user sekrit-pw\r\n");
        assert!(!format!("{actions:?}").contains("sekrit-pw"));
    }
}
