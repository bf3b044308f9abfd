//! One connection to a backend before login: TCP, TLS as the endpoint says (verified),
//! the greeting and the capabilities; then the login the proxy sends for its client.
//!
//! Responses are read with the protocol crate's frame decoder; every wait has a timeout,
//! and a backend that sends garbage is a [`ProxyError::BackendProtocol`], never a panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use imapmirror_protocol::{
    Code, Data, DecoderConfig, Frame, Response, ResponseDecoder, StatusKind, parse_response,
};
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use crate::backend_endpoint::{BackendEndpoint, BackendLogin, BackendSecurity, SecretBytes};
use crate::backend_quirks::BackendQuirks;
use crate::error::ProxyError;
use crate::server_response::status;
use crate::tls_config::backend_server_name;
use crate::transport::BackendStream;

/// Responses before login are small; anything bigger is not a login exchange.
const DECODER: DecoderConfig = DecoderConfig {
    stream_threshold: 64 * 1024,
    max_buffered: 256 * 1024,
    max_line: 64 * 1024,
    max_literal: 64 * 1024,
    max_chunk: 64 * 1024,
};

/// What the backend answered to the login.
#[derive(Debug)]
pub(crate) enum LoginOutcome {
    /// Logged in: the untagged lines, the post-login CAPABILITY and the tagged OK, in the
    /// order to write them to the client.
    Accepted(Vec<Bytes>),
    /// Refused: the lines to write to the client (the tagged NO or BAD last).
    Refused(Vec<Bytes>),
    /// Not sent: this backend cannot do what the login asks (see
    /// [`BackendQuirks::refusal`]); the proxy's own tagged NO to write to the client.
    NotSent(Bytes),
}

/// A connected, greeted, TLS-ready backend connection that has not logged in.
pub(crate) struct BackendConnection {
    endpoint: Arc<BackendEndpoint>,
    stream: BackendStream,
    buf: BytesMut,
    decoder: ResponseDecoder,
    capabilities: Vec<String>,
    quirks: BackendQuirks,
    established: Instant,
    io_timeout: Duration,
}

impl BackendConnection {
    /// Connects, secures and reads the greeting and capabilities.
    pub(crate) async fn connect(
        endpoint: Arc<BackendEndpoint>,
        tls: Option<Arc<ClientConfig>>,
        io_timeout: Duration,
    ) -> Result<Self, ProxyError> {
        let server = endpoint.label();
        let unavailable = |detail: String| ProxyError::BackendUnavailable {
            server: server.clone(),
            detail,
        };
        let tcp = tokio::time::timeout(
            io_timeout,
            TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
        )
        .await
        .map_err(|_| {
            unavailable(format!(
                "no TCP connection within {} s",
                io_timeout.as_secs()
            ))
        })?
        .map_err(|e| unavailable(format!("cannot connect: {e}")))?;
        tcp.set_nodelay(true)
            .map_err(|e| unavailable(format!("cannot set TCP_NODELAY: {e}")))?;
        let mut conn = BackendConnection {
            endpoint: Arc::clone(&endpoint),
            stream: BackendStream::Plain(tcp),
            buf: BytesMut::with_capacity(4096),
            decoder: ResponseDecoder::new(DECODER),
            capabilities: Vec::new(),
            quirks: BackendQuirks::default(),
            established: Instant::now(),
            io_timeout,
        };
        if endpoint.security == BackendSecurity::Tls {
            conn = conn.start_tls(tls.as_ref()).await?;
        }
        let greeting = conn.read_frame("the greeting").await?;
        match parse_response(&greeting) {
            Ok(Response::Status(s)) if s.tag.is_none() && s.kind == StatusKind::Ok => {
                conn.capabilities = code_capabilities(s.code.as_ref()).unwrap_or_default();
                conn.quirks = BackendQuirks::detect(s.text, &conn.capabilities);
            }
            Ok(Response::Status(s)) if s.kind == StatusKind::Bye => {
                return Err(unavailable(format!(
                    "it greeted with BYE: {}",
                    String::from_utf8_lossy(s.text)
                )));
            }
            _ => {
                return Err(conn.protocol(format!(
                    "a greeting that is not `* OK`: {}",
                    excerpt(&greeting)
                )));
            }
        }
        if endpoint.security == BackendSecurity::StartTls {
            let (_, tagged) = conn
                .command(b"imapmirror-tls STARTTLS\r\n", "imapmirror-tls")
                .await?;
            if status_kind(&tagged) != Some(StatusKind::Ok) {
                return Err(conn.protocol(format!("STARTTLS refused: {}", excerpt(&tagged))));
            }
            // Bytes before the handshake would be injected plaintext (CVE-2011-0411).
            if !conn.buf.is_empty() {
                return Err(conn.protocol("data after the STARTTLS OK, before TLS".into()));
            }
            conn = conn.start_tls(tls.as_ref()).await?;
            conn.capabilities.clear();
        }
        if conn.capabilities.is_empty() {
            conn.refresh_capabilities().await?;
        }
        Ok(conn)
    }

    async fn start_tls(mut self, tls: Option<&Arc<ClientConfig>>) -> Result<Self, ProxyError> {
        let Some(config) = tls else {
            return Err(ProxyError::Internal(
                "TLS backend without a TLS client configuration",
            ));
        };
        let name = backend_server_name(&self.endpoint)?;
        let tcp = match self.stream {
            BackendStream::Plain(tcp) => tcp,
            BackendStream::Tls(_) => {
                return Err(ProxyError::Internal(
                    "TLS started twice on a backend connection",
                ));
            }
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
        let tls = tokio::time::timeout(self.io_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| ProxyError::BackendUnavailable {
                server: self.endpoint.label(),
                detail: "the TLS handshake did not finish in time".into(),
            })?
            .map_err(|e| ProxyError::BackendTls {
                server: self.endpoint.label(),
                // tokio-rustls wraps rustls's error (untrusted, pin mismatch...) in io::Error.
                detail: e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .map(imapmirror_protocol::client::handshake_failure_reason)
                    .unwrap_or_else(|| e.to_string()),
            })?;
        self.stream = BackendStream::Tls(Box::new(tls));
        Ok(self)
    }

    /// The backend this connection goes to.
    pub(crate) fn endpoint(&self) -> &Arc<BackendEndpoint> {
        &self.endpoint
    }

    /// The capabilities announced before login (upper-case).
    pub(crate) fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// When the connection was opened.
    pub(crate) fn established(&self) -> Instant {
        self.established
    }

    fn has(&self, cap: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(cap))
    }

    fn protocol(&self, detail: String) -> ProxyError {
        ProxyError::BackendProtocol {
            server: self.endpoint.label(),
            detail,
        }
    }

    /// False when the server has closed the connection or said something (a BYE for
    /// inactivity) while it sat in the pool.
    pub(crate) async fn is_idle_and_open(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 64];
        // A read that is not ready at once means the socket is quiet and open.
        tokio::time::timeout(Duration::ZERO, self.stream.read(&mut probe))
            .await
            .is_err()
    }

    async fn read_frame(&mut self, waiting_for: &str) -> Result<Bytes, ProxyError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Frame::Whole(b))) => return Ok(b),
                Ok(Some(_)) => {
                    return Err(self.protocol(format!("a literal over 64 KiB in {waiting_for}")));
                }
                Ok(None) => {}
                Err(e) => return Err(self.protocol(format!("{e} in {waiting_for}"))),
            }
            let n = tokio::time::timeout(self.io_timeout, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| ProxyError::BackendUnavailable {
                    server: self.endpoint.label(),
                    detail: format!(
                        "no answer within {} s while the proxy waited for {waiting_for}",
                        self.io_timeout.as_secs()
                    ),
                })?
                .map_err(|e| ProxyError::BackendUnavailable {
                    server: self.endpoint.label(),
                    detail: format!("reading {waiting_for} failed: {e}"),
                })?;
            if n == 0 {
                return Err(ProxyError::BackendUnavailable {
                    server: self.endpoint.label(),
                    detail: format!(
                        "it closed the connection while the proxy waited for {waiting_for}"
                    ),
                });
            }
        }
    }

    async fn write(&mut self, bytes: &[u8], what: &str) -> Result<(), ProxyError> {
        let io = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(self.io_timeout, io)
            .await
            .map_err(|_| ProxyError::BackendUnavailable {
                server: self.endpoint.label(),
                detail: format!(
                    "it did not take {what} within {} s",
                    self.io_timeout.as_secs()
                ),
            })?
            .map_err(|e| ProxyError::BackendUnavailable {
                server: self.endpoint.label(),
                detail: format!("sending {what} failed: {e}"),
            })
    }

    /// Sends a command line and reads until its tagged completion: (untagged, tagged).
    async fn command(&mut self, line: &[u8], tag: &str) -> Result<(Vec<Bytes>, Bytes), ProxyError> {
        let name = line
            .split(|&b| b == b' ')
            .nth(1)
            .map(|n| String::from_utf8_lossy(n).trim().to_owned())
            .unwrap_or_default();
        self.write(line, &name).await?;
        self.read_completion(tag, &name).await
    }

    async fn read_completion(
        &mut self,
        tag: &str,
        what: &str,
    ) -> Result<(Vec<Bytes>, Bytes), ProxyError> {
        let mut untagged = Vec::new();
        loop {
            let frame = self.read_frame(&format!("the answer to {what}")).await?;
            match parse_response(&frame) {
                Ok(Response::Status(s)) if s.tag == Some(tag.as_bytes()) => {
                    return Ok((untagged, frame));
                }
                Ok(Response::Status(s)) if s.tag.is_some() => {
                    return Err(self.protocol(format!(
                        "a reply with a tag never sent: {}",
                        excerpt(&frame)
                    )));
                }
                Ok(Response::Status(s)) if s.kind == StatusKind::Bye => {
                    return Err(ProxyError::BackendUnavailable {
                        server: self.endpoint.label(),
                        detail: format!("it said BYE: {}", String::from_utf8_lossy(s.text)),
                    });
                }
                Ok(Response::Continuation(_)) => {
                    return Err(self.protocol(format!("an unexpected `+` during {what}")));
                }
                Ok(_) => untagged.push(frame),
                Err(e) => return Err(self.protocol(format!("{e}"))),
            }
        }
    }

    async fn refresh_capabilities(&mut self) -> Result<(), ProxyError> {
        let (untagged, tagged) = self
            .command(b"imapmirror-cap CAPABILITY\r\n", "imapmirror-cap")
            .await?;
        if status_kind(&tagged) != Some(StatusKind::Ok) {
            return Err(self.protocol(format!("CAPABILITY refused: {}", excerpt(&tagged))));
        }
        for frame in &untagged {
            if let Ok(Response::Data(Data::Capability(c))) = parse_response(frame) {
                self.capabilities = c
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
                    .collect();
            }
        }
        Ok(())
    }

    /// Sends `ID (...)` (RFC 2971) with the proxy's forwarding fields; a backend that
    /// refuses it is logged by the caller, not fatal.
    pub(crate) async fn send_id(&mut self, fields: &[(&str, String)]) -> Result<bool, ProxyError> {
        let mut line = b"imapmirror-id ID (".to_vec();
        for (k, (name, value)) in fields.iter().enumerate() {
            if k > 0 {
                line.push(b' ');
            }
            push_quoted(&mut line, name.as_bytes());
            line.push(b' ');
            push_quoted(&mut line, value.as_bytes());
        }
        line.extend_from_slice(b")\r\n");
        let (_, tagged) = self.command(&line, "imapmirror-id").await?;
        Ok(status_kind(&tagged) == Some(StatusKind::Ok))
    }

    /// Logs in with `login`, answering under the client's `tag` so that the backend's
    /// completion can be forwarded byte for byte.
    pub(crate) async fn login(
        &mut self,
        tag: &str,
        login: &BackendLogin,
    ) -> Result<LoginOutcome, ProxyError> {
        if let Some(reason) = self.quirks.refusal(login) {
            return Ok(LoginOutcome::NotSent(status(
                Some(tag),
                "NO",
                Some("CANNOT"),
                reason,
            )));
        }
        let use_login = matches!(login, BackendLogin::Login { .. }) && !self.has("LOGINDISABLED");
        if use_login {
            let BackendLogin::Login { user, password } = login else {
                return Err(ProxyError::Internal("LOGIN chosen for a PLAIN login"));
            };
            let mut line = SecretBytes::new(format!("{tag} LOGIN ").into_bytes());
            self.push_astring(&mut line, user, tag).await?;
            push_raw(&mut line, b" ");
            self.push_astring(&mut line, password.expose(), tag).await?;
            push_raw(&mut line, b"\r\n");
            self.write(line.expose(), "LOGIN").await?;
        } else {
            if !self.has("AUTH=PLAIN") {
                return Err(self.protocol("neither LOGIN nor AUTHENTICATE PLAIN is offered".into()));
            }
            let encoded = SecretBytes::new(
                imapmirror_protocol::sasl::base64_encode(login.plain_message().expose())
                    .into_bytes(),
            );
            if self.has("SASL-IR") {
                let mut line = SecretBytes::new(format!("{tag} AUTHENTICATE PLAIN ").into_bytes());
                push_raw(&mut line, encoded.expose());
                push_raw(&mut line, b"\r\n");
                self.write(line.expose(), "AUTHENTICATE").await?;
            } else {
                self.write(
                    format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes(),
                    "AUTHENTICATE",
                )
                .await?;
                if let Some(refusal) = self.await_continuation(tag).await? {
                    return Ok(LoginOutcome::Refused(vec![refusal]));
                }
                let mut line = SecretBytes::new(Vec::new());
                push_raw(&mut line, encoded.expose());
                push_raw(&mut line, b"\r\n");
                self.write(line.expose(), "the SASL response").await?;
            }
        }
        let (mut lines, tagged) = self.read_completion(tag, "the login").await?;
        match status_kind(&tagged) {
            Some(StatusKind::Ok) => {
                let has_caps = matches!(parse_response(&tagged), Ok(Response::Status(s)) if code_capabilities(s.code.as_ref()).is_some())
                    || lines.iter().any(|f| {
                        matches!(parse_response(f), Ok(Response::Data(Data::Capability(_))))
                    });
                if !has_caps {
                    // Clients must learn the post-login capabilities; ask on their behalf.
                    let (untagged, done) = self
                        .command(b"imapmirror-cap CAPABILITY\r\n", "imapmirror-cap")
                        .await?;
                    if status_kind(&done) == Some(StatusKind::Ok) {
                        lines.extend(untagged);
                    }
                }
                lines.push(tagged);
                Ok(LoginOutcome::Accepted(lines))
            }
            _ => {
                lines.push(tagged);
                Ok(LoginOutcome::Refused(lines))
            }
        }
    }

    /// Waits for `+`; returns the tagged refusal instead if the command was answered.
    async fn await_continuation(&mut self, tag: &str) -> Result<Option<Bytes>, ProxyError> {
        loop {
            let frame = self.read_frame("a continuation request").await?;
            match parse_response(&frame) {
                Ok(Response::Continuation(_)) => return Ok(None),
                Ok(Response::Status(s)) if s.tag == Some(tag.as_bytes()) => return Ok(Some(frame)),
                Ok(Response::Status(s)) if s.tag.is_some() => {
                    return Err(self.protocol(format!(
                        "a reply with a tag never sent: {}",
                        excerpt(&frame)
                    )));
                }
                Ok(_) => {}
                Err(e) => return Err(self.protocol(format!("{e}"))),
            }
        }
    }

    /// Appends an astring: quoted when it can be, else a literal (non-synchronizing under
    /// LITERAL+, else synchronizing: the line so far is sent and `+` awaited).
    async fn push_astring(
        &mut self,
        line: &mut SecretBytes,
        value: &[u8],
        tag: &str,
    ) -> Result<(), ProxyError> {
        let quotable = value.len() <= 1024 && value.iter().all(|&b| (0x20..0x7f).contains(&b));
        if quotable {
            push_quoted_secret(line, value);
            return Ok(());
        }
        if self.has("LITERAL+") {
            push_raw(line, format!("{{{}+}}\r\n", value.len()).as_bytes());
        } else {
            push_raw(line, format!("{{{}}}\r\n", value.len()).as_bytes());
            self.write(line.expose(), "LOGIN").await?;
            *line = SecretBytes::new(Vec::new());
            if let Some(refusal) = self.await_continuation(tag).await? {
                return Err(self.protocol(format!("a literal was refused: {}", excerpt(&refusal))));
            }
        }
        push_raw(line, value);
        Ok(())
    }

    /// Sends LOGOUT and drops the connection (after a verification login).
    pub(crate) async fn logout(mut self) {
        let _ = self
            .command(b"imapmirror-bye LOGOUT\r\n", "imapmirror-bye")
            .await;
        let _ = self.stream.shutdown().await;
    }

    /// The stream and any bytes read past the login's completion (forward them first).
    pub(crate) fn into_parts(self) -> (BackendStream, BytesMut) {
        (self.stream, self.buf)
    }
}

fn push_raw(line: &mut SecretBytes, bytes: &[u8]) {
    let mut v = line.expose().to_vec();
    v.extend_from_slice(bytes);
    *line = SecretBytes::new(v);
}

fn push_quoted_secret(line: &mut SecretBytes, value: &[u8]) {
    let mut v = line.expose().to_vec();
    push_quoted(&mut v, value);
    *line = SecretBytes::new(v);
}

fn push_quoted(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        // CR and LF cannot be quoted; they never reach here from ID values we build.
        if b != b'\r' && b != b'\n' {
            out.push(b);
        }
    }
    out.push(b'"');
}

fn status_kind(frame: &[u8]) -> Option<StatusKind> {
    match parse_response(frame) {
        Ok(Response::Status(s)) => Some(s.kind),
        _ => None,
    }
}

fn code_capabilities(code: Option<&Code<'_>>) -> Option<Vec<String>> {
    match code {
        Some(Code::Capability(c)) => Some(
            c.iter()
                .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
                .collect(),
        ),
        _ => None,
    }
}

fn excerpt(frame: &[u8]) -> String {
    let cut = &frame[..frame.len().min(200)];
    String::from_utf8_lossy(cut)
        .trim_end()
        .escape_debug()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::TcpListener;

    /// A scripted backend on 127.0.0.1: greets with `greeting`, then answers each line it
    /// reads with the next entry of `answers` (`{tag}` is replaced by the line's tag).
    async fn scripted(
        greeting: &'static str,
        answers: Vec<&'static str>,
    ) -> (Arc<BackendEndpoint>, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let (r, mut w) = sock.into_split();
            let mut r = tokio::io::BufReader::new(r);
            w.write_all(greeting.as_bytes()).await.unwrap();
            let mut seen = Vec::new();
            let mut tag = String::new();
            for answer in answers {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                // A SASL response line has no tag: answer under the command's.
                if let Some((t, _)) = line.split_once(' ') {
                    tag = t.to_string();
                }
                seen.push(line);
                w.write_all(answer.replace("{tag}", &tag).as_bytes())
                    .await
                    .unwrap();
            }
            seen
        });
        let ep = BackendEndpoint::new("scripted", "127.0.0.1", port, BackendSecurity::Plain);
        (Arc::new(ep), task)
    }

    fn login(user: &str, pw: &str) -> BackendLogin {
        BackendLogin::Login {
            user: user.as_bytes().to_vec(),
            password: SecretBytes::new(pw.as_bytes().to_vec()),
        }
    }

    #[tokio::test]
    async fn login_without_capability_code_asks_for_capabilities() {
        let (ep, task) = scripted(
            "* OK ready\r\n",
            vec![
                "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n",
                "* OK [ALERT] hello\r\n{tag} OK Logged in\r\n",
                "* CAPABILITY IMAP4rev1 IDLE\r\n{tag} OK done\r\n",
            ],
        )
        .await;
        let mut c = BackendConnection::connect(ep, None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(c.capabilities(), ["IMAP4REV1", "AUTH=PLAIN"]);
        let LoginOutcome::Accepted(lines) = c.login("a1", &login("u", "p \"q\"")).await.unwrap()
        else {
            panic!("refused")
        };
        let text: Vec<_> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        assert_eq!(
            text,
            [
                "* OK [ALERT] hello\r\n",
                "* CAPABILITY IMAP4rev1 IDLE\r\n",
                "a1 OK Logged in\r\n"
            ]
        );
        let seen = task.await.unwrap();
        assert_eq!(seen[1], "a1 LOGIN \"u\" \"p \\\"q\\\"\"\r\n");
    }

    #[tokio::test]
    async fn logindisabled_backend_gets_plain_with_continuation() {
        let (ep, task) = scripted(
            "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN] hi\r\n",
            vec![
                "+ \r\n",
                "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
            ],
        )
        .await;
        let mut c = BackendConnection::connect(ep, None, Duration::from_secs(5))
            .await
            .unwrap();
        let LoginOutcome::Refused(lines) = c.login("t", &login("u", "p")).await.unwrap() else {
            panic!("accepted")
        };
        assert_eq!(
            &lines[0][..],
            b"t NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        );
        let seen = task.await.unwrap();
        assert_eq!(seen, ["t AUTHENTICATE PLAIN\r\n", "AHUAcA==\r\n"]);
    }

    #[tokio::test]
    async fn garbage_and_bye_are_typed_errors() {
        let (ep, _task) = scripted("HELLO THERE\r\n", vec![]).await;
        let e = BackendConnection::connect(ep, None, Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ProxyError::BackendProtocol { .. }), "{e}");
        let (ep, _task) = scripted("* BYE too many connections\r\n", vec![]).await;
        let e = BackendConnection::connect(ep, None, Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ProxyError::BackendUnavailable { .. }), "{e}");
        assert!(e.to_string().contains("too many connections"));
        let (ep, task) = scripted(
            "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n",
            vec!["zz OK wrong tag\r\n"],
        )
        .await;
        let mut c = BackendConnection::connect(ep, None, Duration::from_secs(5))
            .await
            .unwrap();
        let e = c.login("a", &login("u", "p")).await.err().unwrap();
        assert!(e.to_string().contains("tag never sent"), "{e}");
        drop(task);
    }

    #[tokio::test]
    async fn a_closed_port_is_unavailable_not_a_hang() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let ep = Arc::new(BackendEndpoint::new(
            "down",
            "127.0.0.1",
            port,
            BackendSecurity::Plain,
        ));
        let e = BackendConnection::connect(ep, None, Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, ProxyError::BackendUnavailable { .. }));
        assert!(e.to_string().contains("down (127.0.0.1:"), "{e}");
    }

    #[tokio::test]
    async fn literal_user_names_follow_literal_plus() {
        let (ep, task) = scripted(
            "* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] hi\r\n",
            vec!["{tag} OK [CAPABILITY IMAP4rev1] in\r\n"],
        )
        .await;
        let mut c = BackendConnection::connect(ep, None, Duration::from_secs(5))
            .await
            .unwrap();
        let outcome = c.login("a", &login("us\u{e9}r", "p")).await.unwrap();
        assert!(matches!(outcome, LoginOutcome::Accepted(ref l) if l.len() == 1));
        let seen = task.await.unwrap();
        assert_eq!(seen[0], "a LOGIN {5+}\r\n");
    }
}
