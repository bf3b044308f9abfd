//! The async session: [`ClientState`] driven over a byte stream, with a timeout on every
//! wait and explicit pipelining.
//!
//! Two ways to run a command: the awaited helpers (`select`, `append`, ...) send it and
//! wait for its completion; the `send_*` forms return a [`CommandTag`] at once, so many
//! commands can be in flight, and [`Session::next_completion`] / [`Session::wait`] match
//! completions to tags later. Untagged data that arrives meanwhile is routed by the state
//! to the command it belongs to.
//!
//! The two commands that hand out a view borrowing the session, `start_append` and
//! `uid_fetch`, live beside that view (`append_upload.rs`, `fetch_stream.rs`): the views
//! drive the session, so the session must not know them.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Decoder;

use crate::command::{AppendMessage, Command, ListCommand, MailboxName, SaslAuth, StoreMode};
use crate::command_encoder::Segment;
use crate::error::{Error, Excerpt, Result};
use crate::framing::{DecoderConfig, Frame, ResponseDecoder};
use crate::types::{Flag, MailboxAttr, StatusAttr};

use super::authentication::Credentials;
use super::capability_set::CapabilitySet;
use super::client_state::{ClientState, CommandKind, Event, Phase};
use super::command_tag::CommandTag;
use super::completion::{CommandData, Completion};
use super::expunge_outcome::ExpungeOutcome;
use super::fetched_message::FlagUpdate;
use super::mailbox_info::{ListEntry, MailboxStatus, Namespaces, SelectedMailbox};
use super::response_code::ResponseCode;
use super::search_result::SearchResult;

/// Limits and timeouts of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// The longest wait for any progress from the server (a response, a chunk of a
    /// literal) or for the socket to take bytes. A slow large literal is fine as long as
    /// bytes keep coming.
    pub response_timeout: Duration,
    /// The frame decoder's limits; `decoder.max_buffered` caps what one connection buffers.
    pub decoder: DecoderConfig,
    /// The most commands in flight; `send_*` reads completions before sending more, so
    /// the server never blocks on a full socket while we write.
    pub max_in_flight: usize,
    /// The delay to report when the server asks for a pause without naming one.
    pub default_backoff: Duration,
    /// How many bytes to ask the socket for per read.
    pub read_size: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            response_timeout: Duration::from_secs(60),
            decoder: DecoderConfig::default(),
            max_in_flight: 64,
            default_backoff: Duration::from_secs(60),
            read_size: 64 * 1024,
        }
    }
}

/// How often one command is sent again after a suggested back-off ([`Session::run`]).
const THROTTLE_RETRIES: u32 = 5;
/// The longest suggested back-off waited out on the connection; a longer one is the
/// caller's to schedule (it may rather reconnect later).
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// Writes above this size go to the socket directly instead of through the write buffer.
const DIRECT_WRITE: usize = 16 * 1024;
/// The most bytes written under one timeout, so that a slow but moving upload of a big
/// message does not time out.
const WRITE_SLICE: usize = 256 * 1024;

/// A printable, quoted form of a mailbox name for messages.
pub(crate) fn mailbox_label(name: &MailboxName<'_>) -> String {
    match name {
        MailboxName::Unicode(s) => format!("{s:?}"),
        MailboxName::Wire(w) => format!("{:?}", String::from_utf8_lossy(w)),
    }
}

fn mailbox_wire(name: &MailboxName<'_>, utf8: bool) -> Vec<u8> {
    match name {
        MailboxName::Wire(w) => w.to_vec(),
        MailboxName::Unicode(u) if utf8 => u.as_bytes().to_vec(),
        MailboxName::Unicode(u) => crate::mutf7::encode(u).into_bytes(),
    }
}

/// An IMAP client session over `S` (see the module documentation).
#[derive(Debug)]
pub struct Session<S> {
    stream: S,
    read_buf: BytesMut,
    write_buf: BytesMut,
    decoder: ResponseDecoder,
    state: ClientState,
    config: SessionConfig,
    /// Set while the write side is in the middle of a command (an unfinished APPEND
    /// upload), or after a failure that leaves the connection unusable.
    broken: Option<&'static str>,
    /// Back-offs the server suggested and this session waited out before sending a
    /// command again: how many, and how long in all ([`Session::throttle_waited`]).
    throttle_waits: u32,
    throttle_waited: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Reads the greeting from `stream` (already connected, TLS done if any). `server`
    /// (`host:port`) names the peer in errors.
    pub async fn start(
        stream: S,
        server: impl Into<String>,
        config: SessionConfig,
    ) -> Result<Self> {
        let mut session = Session::resume(
            stream,
            ClientState::new(server, config.default_backoff),
            config,
        );
        let frame = session.read_frame("waiting for the greeting").await?;
        let Frame::Whole(bytes) = frame else {
            return Err(
                session.violation("a greeting with a literal over the stream threshold", &[])
            );
        };
        session.state.handle_greeting(&bytes)?;
        Ok(session)
    }

    fn resume(stream: S, state: ClientState, config: SessionConfig) -> Self {
        Session {
            stream,
            read_buf: BytesMut::with_capacity(config.read_size),
            write_buf: BytesMut::with_capacity(DIRECT_WRITE),
            decoder: ResponseDecoder::new(config.decoder),
            state,
            config,
            broken: None,
            throttle_waits: 0,
            throttle_waited: Duration::ZERO,
        }
    }

    /// The protocol state (capabilities, phase, pending commands).
    pub fn state(&self) -> &ClientState {
        &self.state
    }

    /// The server's capabilities as last announced.
    pub fn capabilities(&self) -> &CapabilitySet {
        self.state.capabilities()
    }

    /// The selected mailbox, kept current by EXISTS/EXPUNGE.
    pub fn selected(&self) -> Option<&SelectedMailbox> {
        self.state.selected()
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        self.state.server()
    }

    /// The limits in use.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The most bytes this connection's read buffer held at once (the decoder's own
    /// accounting): stays under `decoder.max_buffered` plus one read, whatever the
    /// message sizes.
    pub fn buffer_high_water_mark(&self) -> usize {
        self.decoder.high_water_mark()
    }

    /// The back-offs this session waited out because the server refused a command with
    /// a suggested wait (then sent it again): how many, and how long in all. A caller
    /// that reports where its time went reads them when it is done with the session.
    pub fn throttle_waited(&self) -> (u32, Duration) {
        (self.throttle_waits, self.throttle_waited)
    }

    /// A "slow down" the server sent in an untagged NO/BAD since the last call.
    pub fn take_throttle_hint(&mut self) -> Option<Duration> {
        self.state.take_throttle_hint()
    }

    /// Gives the stream back (e.g. to shut it down); pending commands are forgotten.
    pub fn into_stream(self) -> S {
        self.stream
    }

    pub(crate) fn violation(&self, what: &'static str, bytes: &[u8]) -> Error {
        Error::PeerViolation {
            server: self.server().to_owned(),
            what,
            excerpt: Excerpt::new(bytes),
        }
    }

    fn network(&self, during: &'static str, source: std::io::Error) -> Error {
        Error::Network {
            server: self.server().to_owned(),
            during,
            source,
        }
    }

    fn timeout(&self, during: &'static str) -> Error {
        Error::Timeout {
            server: self.server().to_owned(),
            during,
            waited: self.config.response_timeout,
        }
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        match self.broken {
            Some(why) => Err(Error::Misuse(why)),
            None if self.state.closed_by_server() || self.state.phase() == Phase::LoggedOut => {
                Err(Error::ConnectionClosed {
                    server: self.server().to_owned(),
                    during: "sending a command after LOGOUT or BYE",
                })
            }
            None => Ok(()),
        }
    }

    // ---- reading ----

    /// The next frame, reading as needed; each read has its own timeout.
    async fn read_frame(&mut self, during: &'static str) -> Result<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.read_buf)? {
                return Ok(frame);
            }
            self.read_buf.reserve(self.config.read_size);
            let read = tokio::time::timeout(
                self.config.response_timeout,
                self.stream.read_buf(&mut self.read_buf),
            )
            .await;
            let n = match read {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    self.broken = Some("the connection failed earlier; open a new session");
                    return Err(self.network(during, e));
                }
                Err(_) => {
                    self.broken = Some("a response timed out earlier; open a new session");
                    return Err(self.timeout(during));
                }
            };
            if n == 0 {
                self.broken = Some("the server closed the connection earlier; open a new session");
                return match self.decoder.decode_eof(&mut self.read_buf) {
                    Ok(Some(frame)) => Ok(frame),
                    Ok(None) | Err(Error::UnexpectedEof { .. }) => Err(Error::ConnectionClosed {
                        server: self.server().to_owned(),
                        during,
                    }),
                    Err(e) => Err(e),
                };
            }
        }
    }

    /// After writing to the server failed (it had closed the connection: a broken pipe),
    /// reads for at most `within` what it sent before closing — answers, its BYE — into
    /// the state, so that [`ClientState::unanswered_commands`] knows whether the server
    /// ended the session itself and which commands it answered. Nothing is returned:
    /// anything that goes wrong here just ends the reading; the session stays unusable.
    pub async fn read_last_words(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            loop {
                match self.decoder.decode(&mut self.read_buf) {
                    Ok(Some(frame)) => {
                        if self.state.handle_frame(frame).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            self.read_buf.reserve(self.config.read_size);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.read_buf)).await
            {
                Ok(Ok(n)) if n > 0 => continue,
                _ => {
                    if let Ok(Some(frame)) = self.decoder.decode_eof(&mut self.read_buf) {
                        let _ = self.state.handle_frame(frame);
                    }
                    self.broken
                        .get_or_insert("the connection failed earlier; open a new session");
                    return;
                }
            }
        }
    }

    /// The next event that needs attention; untagged data is absorbed by the state.
    pub(crate) async fn next_event(&mut self, during: &'static str) -> Result<Event> {
        loop {
            let handled = match self.read_frame(during).await {
                Ok(frame) => self.state.handle_frame(frame),
                Err(e) => Err(e),
            };
            let handled = match handled {
                Ok(h) => h,
                Err(e) => {
                    // After garbage the frame boundaries and the pending commands can no
                    // longer be trusted.
                    if e.is_peer_fault() && self.broken.is_none() {
                        self.broken =
                            Some("the server sent invalid IMAP earlier; open a new session");
                    }
                    return Err(e);
                }
            };
            match handled {
                None => continue,
                Some(Event::Bye(err)) => {
                    // During LOGOUT the BYE is expected; the tagged OK follows.
                    if self.state.has_pending(|k| *k == CommandKind::Logout) {
                        continue;
                    }
                    self.broken = Some("the server ended the session with BYE; open a new session");
                    return Err(err);
                }
                Some(event) => return Ok(event),
            }
        }
    }

    // ---- writing ----

    pub(crate) async fn write_bytes(&mut self, bytes: Bytes) -> Result<()> {
        let r = self.write_bytes_inner(bytes).await;
        self.poison_on_error(r)
    }

    /// A failed or timed-out write may have sent part of a command: the connection is
    /// unusable from then on.
    fn poison_on_error<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() && self.broken.is_none() {
            self.broken = Some("writing to the server failed earlier; open a new session");
        }
        r
    }

    async fn write_bytes_inner(&mut self, bytes: Bytes) -> Result<()> {
        if bytes.len() < DIRECT_WRITE {
            self.write_buf.extend_from_slice(&bytes);
            if self.write_buf.len() < DIRECT_WRITE {
                return Ok(());
            }
            return self.drain_write_buf().await;
        }
        self.drain_write_buf().await?;
        for piece in bytes.chunks(WRITE_SLICE) {
            let fut = self.stream.write_all(piece);
            match tokio::time::timeout(self.config.response_timeout, fut).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(self.network("writing to the server", e)),
                Err(_) => return Err(self.timeout("writing to the server")),
            }
        }
        Ok(())
    }

    async fn drain_write_buf(&mut self) -> Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let buf = self.write_buf.split().freeze();
        for piece in buf.chunks(WRITE_SLICE) {
            let fut = self.stream.write_all(piece);
            match tokio::time::timeout(self.config.response_timeout, fut).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(self.network("writing to the server", e)),
                Err(_) => return Err(self.timeout("writing to the server")),
            }
        }
        Ok(())
    }

    pub(crate) async fn flush(&mut self) -> Result<()> {
        let r = self.flush_inner().await;
        self.poison_on_error(r)
    }

    async fn flush_inner(&mut self) -> Result<()> {
        self.drain_write_buf().await?;
        let fut = self.stream.flush();
        match tokio::time::timeout(self.config.response_timeout, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.network("flushing to the server", e)),
            Err(_) => Err(self.timeout("flushing to the server")),
        }
    }

    /// Flushes and reads until the server says `+` for `tag`. A completion of `tag`
    /// instead (NO/BAD) ends the command: that is the error returned.
    pub(crate) async fn wait_continuation(&mut self, tag: CommandTag) -> Result<Bytes> {
        self.state.expect_continuation(tag)?;
        self.flush().await?;
        loop {
            match self
                .next_event("waiting for a continuation request")
                .await?
            {
                Event::Continuation(text) => return Ok(text),
                Event::Completed(t) if t == tag => {
                    let Some(c) = self.state.take_completion(tag) else {
                        return Err(Error::Misuse("a completion vanished"));
                    };
                    if c.is_ok() {
                        return Err(self.violation(
                            "OK instead of a continuation request for a literal",
                            c.text.as_bytes(),
                        ));
                    }
                    return Err(self.refusal(c));
                }
                _ => continue,
            }
        }
    }

    fn refusal(&self, c: Completion) -> Error {
        match c.into_result(self.server(), self.config.default_backoff) {
            Err(e) => e,
            Ok(_) => Error::Misuse("an OK completion was reported as a refusal"),
        }
    }

    /// Waits until fewer than `max_in_flight` commands are pending.
    pub(crate) async fn make_room(&mut self) -> Result<()> {
        while self.state.pending_count() >= self.config.max_in_flight.max(1) {
            match self
                .next_event("waiting for pipelined commands to complete")
                .await?
            {
                Event::Continuation(_) => {
                    return Err(self
                        .violation("a continuation request while no command waits for one", &[]));
                }
                _ => continue,
            }
        }
        Ok(())
    }

    /// Encodes, registers and writes `command` (waiting for `+` where a synchronizing
    /// literal needs it) and returns its tag without waiting for the completion.
    pub async fn send(
        &mut self,
        kind: CommandKind,
        label: String,
        command: &Command<'_>,
    ) -> Result<CommandTag> {
        self.check_usable()?;
        self.make_room().await?;
        // Encode before registering, so that bad input leaves no pending command behind.
        let encoded = self
            .state
            .encoder()
            .encode(&self.state.upcoming_tag().wire(), command)?;
        if encoded
            .segments
            .iter()
            .any(|s| matches!(s, Segment::StreamedBody { .. }))
        {
            return Err(Error::Misuse("a streamed body needs Session::start_append"));
        }
        let tag = self.state.begin(kind, label);
        self.write_segments(tag, encoded.segments).await?;
        self.flush().await?;
        Ok(tag)
    }

    async fn write_segments(&mut self, tag: CommandTag, segments: Vec<Segment>) -> Result<()> {
        for segment in segments {
            match segment {
                Segment::Data(b) => self.write_bytes(b).await?,
                Segment::AwaitContinuation => {
                    self.wait_continuation(tag).await?;
                }
                Segment::StreamedBody { .. } => {
                    return Err(Error::Misuse("a streamed body needs Session::start_append"));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn state_mut(&mut self) -> &mut ClientState {
        &mut self.state
    }

    pub(crate) fn set_broken(&mut self, why: Option<&'static str>) {
        self.broken = why;
    }

    /// Waits for the completion of `tag` (OK, NO or BAD alike), routing everything else.
    pub async fn wait(&mut self, tag: CommandTag) -> Result<Completion> {
        loop {
            if let Some(c) = self.state.take_completion(tag) {
                return Ok(c);
            }
            if !self.state.is_pending(tag) {
                return Err(Error::Misuse(
                    "waited for a tag that is not pending (already taken?)",
                ));
            }
            self.read_completion_progress().await?;
        }
    }

    /// Reads until `tag` has completed, leaving its completion for [`Session::wait`].
    pub async fn settle(&mut self, tag: CommandTag) -> Result<()> {
        while self.state.is_pending(tag) {
            self.read_completion_progress().await?;
        }
        Ok(())
    }

    /// Flushes what is queued and routes the next response while completions are awaited;
    /// a continuation request then is the server's fault, since no command waits for one.
    async fn read_completion_progress(&mut self) -> Result<()> {
        self.flush().await?;
        match self.next_event("waiting for a command to complete").await? {
            Event::Continuation(text) => Err(self.violation(
                "a continuation request while no command waits for one",
                &text,
            )),
            _ => Ok(()),
        }
    }

    /// The next completion of any pipelined command, oldest arrived first.
    pub async fn next_completion(&mut self) -> Result<Completion> {
        loop {
            if let Some(c) = self.state.pop_completion() {
                return Ok(c);
            }
            if self.state.pending_count() == 0 {
                return Err(Error::Misuse(
                    "asked for a completion while no command is pending",
                ));
            }
            self.read_completion_progress().await?;
        }
    }

    /// Sends `command`, waits, and turns NO/BAD into errors. A command the server
    /// refused with a suggested back-off (Exchange Online's `NO Request is throttled.
    /// Suggested Backoff Time: N milliseconds`) was not executed: it is sent again on
    /// this connection after that wait, a few times, rather than failing the work that
    /// needed it; a longer wait, or throttling that goes on, is the caller's error.
    async fn run(
        &mut self,
        kind: CommandKind,
        label: String,
        command: &Command<'_>,
    ) -> Result<Completion> {
        let mut throttled = 0u32;
        loop {
            let tag = self.send(kind.clone(), label.clone(), command).await?;
            let c = self.wait(tag).await?;
            match c.backoff_hint {
                Some(wait)
                    if !c.is_ok() && throttled < THROTTLE_RETRIES && wait <= MAX_THROTTLE_WAIT =>
                {
                    throttled += 1;
                    tracing::debug!(server = %self.server(), command = %label, wait_ms = wait.as_millis() as u64, "throttled; retrying the command after the suggested back-off");
                    tokio::time::sleep(wait).await;
                    self.throttle_waits += 1;
                    self.throttle_waited = self.throttle_waited.saturating_add(wait);
                }
                _ => return c.into_result(self.server(), self.config.default_backoff),
            }
        }
    }

    // ---- commands ----

    /// CAPABILITY: asks again and returns the fresh set.
    pub async fn capability(&mut self) -> Result<&CapabilitySet> {
        self.run(
            CommandKind::Capability,
            "CAPABILITY".into(),
            &Command::Capability,
        )
        .await?;
        Ok(self.state.capabilities())
    }

    /// Asks for the capabilities only when they are not known (greeting or login code).
    pub async fn refresh_capabilities_if_stale(&mut self) -> Result<()> {
        if self.state.capabilities_stale() {
            self.capability().await?;
        }
        Ok(())
    }

    /// NOOP (also collects pending untagged updates such as EXISTS).
    pub async fn noop(&mut self) -> Result<()> {
        self.run(CommandKind::Simple, "NOOP".into(), &Command::Noop)
            .await
            .map(drop)
    }

    /// LOGOUT, then closes the write side. A connection the server already dropped after
    /// its BYE counts as logged out.
    pub async fn logout(&mut self) -> Result<()> {
        if self.state.phase() == Phase::LoggedOut {
            return Ok(());
        }
        let tag = self
            .send(CommandKind::Logout, "LOGOUT".into(), &Command::Logout)
            .await?;
        match self.wait(tag).await {
            Ok(_) | Err(Error::ConnectionClosed { .. }) => {}
            Err(e) => return Err(e),
        }
        // Best effort: the session is over whether or not the shutdown is acknowledged.
        let _ = tokio::time::timeout(self.config.response_timeout, self.stream.shutdown()).await;
        Ok(())
    }

    /// Logs in with `credentials`, then refreshes the capabilities if the OK did not carry
    /// them. SASL-IR is used when offered.
    pub async fn authenticate(&mut self, credentials: &Credentials) -> Result<()> {
        if self.state.phase() != Phase::NotAuthenticated {
            return Err(Error::Misuse("logging in twice on one session"));
        }
        self.refresh_capabilities_if_stale().await?;
        let caps = self.state.capabilities();
        let label = match credentials.mechanism() {
            None => format!("LOGIN {:?}", credentials.user()),
            Some(m) => format!("AUTHENTICATE {m} {:?}", credentials.user()),
        };
        match credentials.required_capability() {
            None if caps.contains("LOGINDISABLED") => {
                return Err(Error::MissingCapability {
                    server: self.server().to_owned(),
                    capability: "LOGIN (it announces LOGINDISABLED: use TLS or STARTTLS)",
                    needed_for: "password login",
                });
            }
            Some(cap) if !caps.has_auth(cap.trim_start_matches("AUTH=")) => {
                return Err(Error::MissingCapability {
                    server: self.server().to_owned(),
                    capability: cap,
                    needed_for: "the chosen login method",
                });
            }
            _ => {}
        }
        let sasl_ir = caps.contains("SASL-IR");
        let server_port = self
            .server()
            .rsplit_once(':')
            .map(|(h, p)| (h.to_owned(), p.parse::<u16>().unwrap_or(143)));
        let (host, port) = server_port.unwrap_or_else(|| (self.server().to_owned(), 143));
        let command = match credentials {
            Credentials::Login { username, password } => Command::Login {
                username,
                password: password.expose(),
            },
            Credentials::Plain {
                authzid,
                authcid,
                password,
            } => Command::Authenticate {
                auth: SaslAuth::Plain {
                    authzid,
                    authcid,
                    password: password.expose(),
                },
                sasl_ir,
            },
            Credentials::SaslLogin { username, password } => Command::Authenticate {
                auth: SaslAuth::Login {
                    username,
                    password: password.expose(),
                },
                sasl_ir: false,
            },
            Credentials::XOAuth2 { user, access_token } => Command::Authenticate {
                auth: SaslAuth::XOAuth2 {
                    user,
                    access_token: access_token.expose(),
                },
                sasl_ir,
            },
            Credentials::OAuthBearer { user, access_token } => Command::Authenticate {
                auth: SaslAuth::OAuthBearer {
                    user,
                    host: &host,
                    port,
                    access_token: access_token.expose(),
                },
                sasl_ir,
            },
        };
        let kind = if credentials.mechanism().is_some() {
            CommandKind::Authenticate
        } else {
            CommandKind::Login
        };
        self.check_usable()?;
        self.make_room().await?;
        // Passwords are in these bytes: they go to the socket and nowhere else.
        let encoded = self
            .state
            .encoder()
            .encode(&self.state.upcoming_tag().wire(), &command)?;
        let tag = self.state.begin(kind, label);
        for segment in encoded.segments {
            match segment {
                Segment::Data(b) => self.write_bytes(b).await?,
                Segment::AwaitContinuation => {
                    self.wait_continuation(tag).await?;
                }
                Segment::StreamedBody { .. } => {
                    return Err(Error::Misuse("AUTHENTICATE has no streamed body"));
                }
            }
        }
        self.flush().await?;
        let completion = loop {
            if let Some(c) = self.state.take_completion(tag) {
                break c;
            }
            match self.next_event("waiting for the login to complete").await? {
                Event::Continuation(_) => {
                    // A challenge after our last step carries the failure details: answer
                    // as the mechanism requires, and the tagged NO follows.
                    self.write_bytes(Bytes::from_static(credentials.challenge_reply()))
                        .await?;
                    self.flush().await?;
                }
                _ => continue,
            }
        };
        completion.into_result(self.server(), self.config.default_backoff)?;
        self.refresh_capabilities_if_stale().await
    }

    /// ENABLE (RFC 5161): returns what the server enabled.
    pub async fn enable(&mut self, extensions: &[&str]) -> Result<Vec<String>> {
        let label = format!("ENABLE {}", extensions.join(" "));
        let c = self
            .run(CommandKind::Enable, label, &Command::Enable(extensions))
            .await?;
        match c.data {
            CommandData::Enabled(v) => Ok(v),
            _ => Ok(Vec::new()),
        }
    }

    /// ID (RFC 2971): sends ours, returns the server's (`None` for NIL).
    pub async fn id(
        &mut self,
        ours: Option<&[(&str, Option<&str>)]>,
    ) -> Result<Option<Vec<(String, Option<String>)>>> {
        let c = self
            .run(CommandKind::Id, "ID".into(), &Command::Id(ours))
            .await?;
        match c.data {
            CommandData::Id(v) => Ok(v),
            _ => Ok(None),
        }
    }

    /// NAMESPACE (RFC 2342).
    pub async fn namespace(&mut self) -> Result<Namespaces> {
        let c = self
            .run(
                CommandKind::Namespace,
                "NAMESPACE".into(),
                &Command::Namespace,
            )
            .await?;
        match c.data {
            CommandData::Namespace(Some(ns)) => Ok(ns),
            _ => Err(self.violation(
                "NAMESPACE completed without a NAMESPACE response",
                c.text.as_bytes(),
            )),
        }
    }

    /// LIST with the given options; STATUS values (LIST-STATUS) are attached to entries.
    pub async fn list(&mut self, list: &ListCommand<'_>) -> Result<Vec<ListEntry>> {
        let label = format!("LIST {}", mailbox_label(&list.pattern));
        let c = self
            .run(CommandKind::List, label, &Command::List(*list))
            .await?;
        match c.data {
            CommandData::List(v) => Ok(v),
            _ => Ok(Vec::new()),
        }
    }

    /// STATUS of one mailbox.
    pub async fn status(
        &mut self,
        mailbox: MailboxName<'_>,
        attrs: &[StatusAttr<'_>],
    ) -> Result<MailboxStatus> {
        let label = format!("STATUS {}", mailbox_label(&mailbox));
        let c = self
            .run(
                CommandKind::Status,
                label,
                &Command::Status { mailbox, attrs },
            )
            .await?;
        match c.data {
            CommandData::Status(mut v) if !v.is_empty() => Ok(v.remove(0).1),
            _ => Err(self.violation(
                "STATUS completed without a STATUS response",
                c.text.as_bytes(),
            )),
        }
    }

    async fn open_mailbox(
        &mut self,
        mailbox: MailboxName<'_>,
        condstore: bool,
        read_only: bool,
    ) -> Result<SelectedMailbox> {
        // Responses of commands still in flight must not be taken for the new mailbox's.
        while self.state.pending_count() > 0 {
            self.next_event("waiting for pipelined commands before SELECT")
                .await?;
        }
        let wire_name = mailbox_wire(&mailbox, self.state.enabled().contains("UTF8=ACCEPT"));
        let label = format!(
            "{} {}",
            if read_only { "EXAMINE" } else { "SELECT" },
            mailbox_label(&mailbox)
        );
        let command = if read_only {
            Command::Examine { mailbox, condstore }
        } else {
            Command::Select { mailbox, condstore }
        };
        self.run(
            CommandKind::Select {
                wire_name,
                read_only,
            },
            label,
            &command,
        )
        .await?;
        self.state
            .selected()
            .cloned()
            .ok_or(Error::Misuse("SELECT succeeded but no mailbox is selected"))
    }

    /// SELECT (read-write); `condstore` asks for CONDSTORE in the same step.
    pub async fn select(
        &mut self,
        mailbox: MailboxName<'_>,
        condstore: bool,
    ) -> Result<SelectedMailbox> {
        self.open_mailbox(mailbox, condstore, false).await
    }

    /// EXAMINE (read-only SELECT): the source side of a migration.
    pub async fn examine(
        &mut self,
        mailbox: MailboxName<'_>,
        condstore: bool,
    ) -> Result<SelectedMailbox> {
        self.open_mailbox(mailbox, condstore, true).await
    }

    /// UID SEARCH; `return_options` non-empty uses ESEARCH.
    pub async fn uid_search(
        &mut self,
        return_options: &[&str],
        criteria: &str,
    ) -> Result<SearchResult> {
        let c = self
            .run(
                CommandKind::Search,
                "UID SEARCH".into(),
                &Command::UidSearch {
                    return_options,
                    criteria,
                },
            )
            .await?;
        match c.data {
            CommandData::Search(r) => Ok(r),
            _ => Ok(SearchResult::default()),
        }
    }

    /// UID STORE; with `unchanged_since`, UIDs the server skipped come back in
    /// [`StoreOutcome::modified`].
    pub async fn uid_store(
        &mut self,
        uids: &str,
        mode: StoreMode,
        silent: bool,
        flags: &[Flag<'_>],
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome> {
        if self
            .state
            .has_pending(|k| matches!(k, CommandKind::Fetch { .. } | CommandKind::Store))
        {
            return Err(Error::Misuse(
                "UID STORE while another FETCH or STORE is in flight",
            ));
        }
        let label = format!("UID STORE {uids}");
        let command = Command::UidStore {
            uids,
            mode,
            silent,
            flags,
            unchanged_since,
        };
        let c = self.run(CommandKind::Store, label, &command).await?;
        let modified = match &c.code {
            Some(ResponseCode::Modified(r)) => r.iter().collect(),
            _ => Vec::new(),
        };
        let updates = match c.data {
            CommandData::FlagUpdates(v) => v,
            _ => Vec::new(),
        };
        Ok(StoreOutcome { modified, updates })
    }

    /// Runs EXPUNGE or UID EXPUNGE once nothing else is in flight, so that every untagged
    /// EXPUNGE/VANISHED that arrives belongs to it.
    async fn run_expunge(
        &mut self,
        label: String,
        command: &Command<'_>,
    ) -> Result<ExpungeOutcome> {
        // Completions that arrive meanwhile stay queued for their callers' `wait`.
        while self.state.pending_count() > 0 {
            self.read_completion_progress().await?;
        }
        let c = self.run(CommandKind::Expunge, label, command).await?;
        match c.data {
            CommandData::Expunged(e) => Ok(e),
            _ => Ok(ExpungeOutcome::default()),
        }
    }

    /// EXPUNGE: removes **every** message of the selected mailbox flagged `\Deleted`,
    /// also those another client flagged and meant to keep for now. A migration wants
    /// [`Session::uid_expunge`]; this is for servers without UIDPLUS where the caller
    /// owns the whole mailbox.
    pub async fn expunge(&mut self) -> Result<ExpungeOutcome> {
        self.run_expunge("EXPUNGE".into(), &Command::Expunge).await
    }

    /// UID EXPUNGE (RFC 4315): removes only those of `uids` flagged `\Deleted`. Fails
    /// with [`Error::MissingCapability`] before sending anything when the server does not
    /// announce UIDPLUS, so that it never degrades to a plain EXPUNGE.
    pub async fn uid_expunge(&mut self, uids: &str) -> Result<ExpungeOutcome> {
        self.refresh_capabilities_if_stale().await?;
        if !self.state.capabilities().contains("UIDPLUS") {
            return Err(Error::MissingCapability {
                server: self.server().to_owned(),
                capability: "UIDPLUS",
                needed_for: "UID EXPUNGE",
            });
        }
        self.run_expunge(format!("UID EXPUNGE {uids}"), &Command::UidExpunge(uids))
            .await
    }

    /// CREATE, optionally with SPECIAL-USE attributes (CREATE-SPECIAL-USE).
    pub async fn create(
        &mut self,
        mailbox: MailboxName<'_>,
        special_use: &[MailboxAttr<'_>],
    ) -> Result<()> {
        let label = format!("CREATE {}", mailbox_label(&mailbox));
        self.run(
            CommandKind::Simple,
            label,
            &Command::Create {
                mailbox,
                special_use,
            },
        )
        .await
        .map(drop)
    }

    /// RENAME: `from` and the folders under it get the name `to`. A server creates the
    /// superiors `to` needs (RFC 3501 6.3.5).
    pub async fn rename(&mut self, from: MailboxName<'_>, to: MailboxName<'_>) -> Result<()> {
        let label = format!("RENAME {} {}", mailbox_label(&from), mailbox_label(&to));
        self.run(CommandKind::Simple, label, &Command::Rename { from, to })
            .await
            .map(drop)
    }

    /// DELETE: removes the folder and its messages (RFC 3501 6.3.4).
    pub async fn delete(&mut self, mailbox: MailboxName<'_>) -> Result<()> {
        let label = format!("DELETE {}", mailbox_label(&mailbox));
        self.run(CommandKind::Simple, label, &Command::Delete { mailbox })
            .await
            .map(drop)
    }

    /// SUBSCRIBE.
    pub async fn subscribe(&mut self, mailbox: MailboxName<'_>) -> Result<()> {
        let label = format!("SUBSCRIBE {}", mailbox_label(&mailbox));
        self.run(CommandKind::Simple, label, &Command::Subscribe { mailbox })
            .await
            .map(drop)
    }

    /// Sends an APPEND (one message) or MULTIAPPEND (several) whose bodies are in memory,
    /// without waiting for its completion: pipeline as many as needed, then match
    /// completions with [`Session::next_completion`] or [`Session::wait`]. Without
    /// LITERAL+ this waits for each literal's `+`, still without waiting for completions.
    pub async fn send_append(
        &mut self,
        mailbox: MailboxName<'_>,
        messages: &[AppendMessage<'_>],
    ) -> Result<CommandTag> {
        let label = format!("APPEND {}", mailbox_label(&mailbox));
        self.send(
            CommandKind::Simple,
            label,
            &Command::Append { mailbox, messages },
        )
        .await
    }

    /// APPEND and wait: returns the APPENDUID (UIDVALIDITY and UIDs) when the server
    /// has UIDPLUS.
    pub async fn append(
        &mut self,
        mailbox: MailboxName<'_>,
        messages: &[AppendMessage<'_>],
    ) -> Result<Option<(u32, Vec<u32>)>> {
        let tag = self.send_append(mailbox, messages).await?;
        let c = self
            .wait(tag)
            .await?
            .into_result(self.server(), self.config.default_backoff)?;
        Ok(c.append_uid())
    }

    /// Replaces the transport, keeping the protocol state (STARTTLS).
    pub(crate) fn into_parts(self) -> (S, BytesMut, ClientState, SessionConfig) {
        (self.stream, self.read_buf, self.state, self.config)
    }

    /// Runs STARTTLS up to the server's OK and checks that nothing was sent after it
    /// (bytes injected before the handshake would otherwise be read as if protected).
    pub(crate) async fn starttls_exchange(&mut self) -> Result<()> {
        self.refresh_capabilities_if_stale().await?;
        if !self.state.capabilities().contains("STARTTLS") {
            return Err(Error::MissingCapability {
                server: self.server().to_owned(),
                capability: "STARTTLS",
                needed_for: "the starttls security mode (no plaintext fallback)",
            });
        }
        if self.state.pending_count() > 0 {
            return Err(Error::Misuse("STARTTLS while other commands are in flight"));
        }
        self.run(CommandKind::StartTls, "STARTTLS".into(), &Command::StartTls)
            .await?;
        if !self.read_buf.is_empty() || self.decoder.in_frame() {
            let excerpt = self.read_buf.to_vec();
            return Err(self.violation(
                "bytes after STARTTLS's OK, before the TLS handshake",
                &excerpt,
            ));
        }
        Ok(())
    }

    /// Wraps a new stream around an existing state (after a TLS upgrade).
    pub(crate) fn from_parts(stream: S, state: ClientState, config: SessionConfig) -> Self {
        Session::resume(stream, state, config)
    }

    /// Changes the stream type (e.g. into [`super::ImapStream`]), keeping everything else.
    pub fn map_stream<T: AsyncRead + AsyncWrite + Unpin>(
        self,
        f: impl FnOnce(S) -> T,
    ) -> Session<T> {
        Session {
            stream: f(self.stream),
            read_buf: self.read_buf,
            write_buf: self.write_buf,
            decoder: self.decoder,
            state: self.state,
            config: self.config,
            broken: self.broken,
            throttle_waits: self.throttle_waits,
            throttle_waited: self.throttle_waited,
        }
    }
}

/// What UID STORE reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// UIDs a conditional STORE did not change (`[MODIFIED ...]`).
    pub modified: Vec<u32>,
    /// The flags the server reported back (empty with `.SILENT`).
    pub updates: Vec<FlagUpdate>,
}

#[cfg(test)]
mod tests;
