//! The client's protocol state without I/O: which tags wait, who waits for a
//! continuation request, what the server offers, which mailbox is selected, and where each
//! untagged response belongs.
//!
//! Order of use: [`ClientState::handle_greeting`] once; then for each command
//! [`ClientState::begin`] before writing it; feed every frame the decoder yields to
//! [`ClientState::handle_frame`] and act on the [`Event`] it returns; collect results with
//! [`ClientState::take_completion`]. The session in `session.rs` does exactly this over a
//! socket; the tests below do it over byte strings.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Excerpt, Result};
use crate::framing::Frame;
use crate::response_parser::{parse_fetch_head, parse_fetch_tail, parse_greeting, parse_response};
use crate::types::{Code, Data, Response, StatusKind, StatusResponse};
use crate::{CommandEncoder, EncoderOptions};

use super::capability_set::CapabilitySet;
use super::command_tag::CommandTag;
use super::completion::{CommandData, Completion};
use super::expunge_outcome::ExpungeOutcome;
use super::fetched_message::{
    BodyPart, FetchEvent, FetchedMessage, FlagUpdate, MessageMeta, streamed_section,
};
use super::mailbox_info::{ListEntry, MailboxStatus, Namespaces, SelectedMailbox};
use super::search_result::SearchResult;

/// Distinct server notices a session remembers having logged; beyond this, new ones are
/// still logged, only not remembered (a hostile server cannot grow the list).
const MAX_NOTICES_REMEMBERED: usize = 16;

/// Where the session stands (RFC 3501 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before LOGIN/AUTHENTICATE.
    NotAuthenticated,
    /// Logged in, no mailbox selected.
    Authenticated,
    /// A mailbox is selected.
    Selected,
    /// LOGOUT sent or BYE received.
    LoggedOut,
}

/// What kind of command waits, which decides where untagged data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandKind {
    /// Anything without untagged data of its own (NOOP, CREATE, SUBSCRIBE, APPEND...).
    Simple,
    /// CAPABILITY
    Capability,
    /// LOGIN
    Login,
    /// AUTHENTICATE (continuations may be server challenges).
    Authenticate,
    /// STARTTLS
    StartTls,
    /// LOGOUT
    Logout,
    /// ENABLE
    Enable,
    /// ID
    Id,
    /// NAMESPACE
    Namespace,
    /// LIST or LSUB (with `* STATUS` for LIST-STATUS).
    List,
    /// STATUS
    Status,
    /// SELECT or EXAMINE of the mailbox with these wire bytes.
    Select {
        /// The name as sent.
        wire_name: Vec<u8>,
        /// EXAMINE.
        read_only: bool,
    },
    /// UID SEARCH
    Search,
    /// UID STORE (collects untagged FETCH flag updates).
    Store,
    /// EXPUNGE or UID EXPUNGE (collects untagged EXPUNGE and VANISHED).
    Expunge,
    /// UID FETCH; `deliver` is false once the caller stopped listening.
    Fetch {
        /// Hand FETCH data out as events (true) or drop it (false).
        deliver: bool,
    },
}

#[derive(Debug)]
struct PendingCommand {
    tag: CommandTag,
    label: String,
    kind: CommandKind,
    data: CommandData,
}

/// One thing the caller must act on after a frame.
#[derive(Debug)]
pub enum Event {
    /// The command with this tag completed; take its [`Completion`].
    Completed(CommandTag),
    /// A continuation request (`+ text`): the literal or SASL step may go out.
    Continuation(Bytes),
    /// UID FETCH output for the command that is listening.
    Fetch(FetchEvent),
    /// Untagged BYE: the server is closing the connection. Already turned into the error
    /// to report ([`Error::Bye`] or [`Error::Backoff`]).
    Bye(Error),
}

/// What a session given up leaves undecided: whether the server may still carry out a
/// command it was sent (an APPEND it read in full may be committed after the link is
/// gone), so that whoever reads the mailbox next knows whether to let it settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnansweredCommands {
    /// Nothing can still happen: every command was answered, or the server answered a
    /// command that the session is lost and said BYE (Exchange Online's `BAD User is
    /// authenticated but not connected.` then `* BYE Connection closed. 14`) and every
    /// unanswered command was sent after that one — a server works through a
    /// connection's commands in order and starts none after it has closed.
    None,
    /// The server said BYE, and commands sent before its last answer, or the one it may
    /// have been working on, are unanswered: the server ended the session itself, but
    /// its back end may still complete what it had already taken.
    AfterBye,
    /// The link broke (or was given up) with commands unanswered and no word from the
    /// server: anything it had read may still be carried out.
    Unknown,
}

#[derive(Debug)]
struct StreamingMessage {
    deliver: bool,
    meta: MessageMeta,
    parts: Vec<BodyPart>,
}

/// The sans-I/O client state; see the module documentation for the order of calls.
#[derive(Debug)]
pub struct ClientState {
    server: String,
    default_backoff: Duration,
    next_tag: u32,
    pending: VecDeque<PendingCommand>,
    completed: VecDeque<Completion>,
    capabilities: CapabilitySet,
    capabilities_stale: bool,
    enabled: CapabilitySet,
    phase: Phase,
    selected: Option<SelectedMailbox>,
    selecting: Option<SelectedMailbox>,
    awaiting_continuation: Option<CommandTag>,
    streaming: Option<StreamingMessage>,
    throttle_hint: Option<Duration>,
    closed_by_server: bool,
    /// The latest tagged answer, and whether it said the session is lost (Exchange).
    last_answer: Option<(CommandTag, bool)>,
    /// The command answered "session lost" right before the server's BYE, if any.
    lost_before_bye: Option<CommandTag>,
    /// The greeting's human-readable text: it often names the server software.
    greeting_text: String,
    /// Server notices already logged at warning level in this session.
    notices_logged: Vec<String>,
    /// What the server announced in plaintext before STARTTLS (RFC 3501 6.2.1 makes the
    /// client forget it; a report of what changed with TLS still wants it).
    plaintext_capabilities: Option<CapabilitySet>,
}

/// A BYE that asks the client to come back later (too many connections, UNAVAILABLE)
/// becomes a back-off; any other BYE is a plain BYE.
pub(crate) fn bye_error(server: &str, s: &StatusResponse<'_>, default_backoff: Duration) -> Error {
    let text = String::from_utf8_lossy(s.text).into_owned();
    let lower = text.to_ascii_lowercase();
    let too_many = [
        "too many",
        "maximum number of connections",
        "connection limit",
        "try again later",
    ]
    .iter()
    .any(|needle| lower.contains(needle));
    if too_many || s.is_throttled() || matches!(s.code, Some(Code::Unavailable)) {
        return Error::Backoff {
            server: server.to_owned(),
            command: "connection".to_owned(),
            delay: s.backoff_hint().unwrap_or(default_backoff),
            text,
        };
    }
    Error::Bye {
        server: server.to_owned(),
        text,
    }
}

impl ClientState {
    /// A fresh state for a connection to `server` (`host:port`, for error messages);
    /// `default_backoff` is the delay reported when the server asks for a pause but
    /// names no duration.
    pub fn new(server: impl Into<String>, default_backoff: Duration) -> Self {
        ClientState {
            server: server.into(),
            default_backoff,
            next_tag: 1,
            pending: VecDeque::new(),
            completed: VecDeque::new(),
            capabilities: CapabilitySet::default(),
            capabilities_stale: true,
            enabled: CapabilitySet::default(),
            phase: Phase::NotAuthenticated,
            selected: None,
            selecting: None,
            awaiting_continuation: None,
            streaming: None,
            throttle_hint: None,
            closed_by_server: false,
            last_answer: None,
            lost_before_bye: None,
            greeting_text: String::new(),
            notices_logged: Vec::new(),
            plaintext_capabilities: None,
        }
    }

    /// The server this state talks to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The capabilities last announced.
    pub fn capabilities(&self) -> &CapabilitySet {
        &self.capabilities
    }

    /// The greeting's text (`Dovecot ready.`), without its response code.
    pub fn greeting_text(&self) -> &str {
        &self.greeting_text
    }

    /// The capabilities announced before STARTTLS, if the session was upgraded with it
    /// and they were known then.
    pub fn capabilities_before_starttls(&self) -> Option<&CapabilitySet> {
        self.plaintext_capabilities.as_ref()
    }

    /// True when the capabilities must be asked for again (after STARTTLS, or a login
    /// whose OK did not list them).
    pub fn capabilities_stale(&self) -> bool {
        self.capabilities_stale
    }

    /// Extensions turned on with ENABLE.
    pub fn enabled(&self) -> &CapabilitySet {
        &self.enabled
    }

    /// The session phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The selected mailbox.
    pub fn selected(&self) -> Option<&SelectedMailbox> {
        self.selected.as_ref()
    }

    /// Commands sent and not completed.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// True while `tag` waits for its completion.
    pub fn is_pending(&self, tag: CommandTag) -> bool {
        self.pending.iter().any(|p| p.tag == tag)
    }

    /// True when a command of a kind matching `pred` waits.
    pub fn has_pending(&self, pred: impl Fn(&CommandKind) -> bool) -> bool {
        self.pending.iter().any(|p| pred(&p.kind))
    }

    /// The last "slow down" an untagged NO/BAD asked for; cleared when read.
    pub fn take_throttle_hint(&mut self) -> Option<Duration> {
        self.throttle_hint.take()
    }

    /// True after an untagged BYE.
    pub fn closed_by_server(&self) -> bool {
        self.closed_by_server
    }

    /// Whether the server may still carry out a command of this session if the session
    /// is given up now ([`UnansweredCommands`]).
    pub fn unanswered_commands(&self) -> UnansweredCommands {
        if self.pending.is_empty() {
            return UnansweredCommands::None;
        }
        if !self.closed_by_server {
            return UnansweredCommands::Unknown;
        }
        match self.lost_before_bye {
            Some(last) if self.pending.iter().all(|p| p.tag > last) => UnansweredCommands::None,
            _ => UnansweredCommands::AfterBye,
        }
    }

    /// True while the decoder is between a streamed body's head and its tail.
    pub fn in_streamed_message(&self) -> bool {
        self.streaming.is_some()
    }

    /// How to encode commands for this server right now.
    pub fn encoder(&self) -> CommandEncoder {
        CommandEncoder::new(EncoderOptions {
            literal_mode: self.capabilities.literal_mode(),
            utf8_accept: self.enabled.contains("UTF8=ACCEPT"),
        })
    }

    /// Reads the greeting. PREAUTH starts authenticated; BYE is an error.
    pub fn handle_greeting(&mut self, frame: &[u8]) -> Result<()> {
        let s = parse_greeting(frame)?;
        self.greeting_text = String::from_utf8_lossy(s.text).into_owned();
        if let Some(Code::Capability(list)) = s.code {
            self.set_capabilities(CapabilitySet::from_list(list));
        }
        match s.kind {
            StatusKind::PreAuth => self.phase = Phase::Authenticated,
            StatusKind::Bye => {
                self.closed_by_server = true;
                self.phase = Phase::LoggedOut;
                return Err(bye_error(&self.server, &s, self.default_backoff));
            }
            _ => {}
        }
        Ok(())
    }

    /// The tag the next [`ClientState::begin`] will hand out (to encode before
    /// registering, so that an encoding error leaves nothing pending).
    pub fn upcoming_tag(&self) -> CommandTag {
        CommandTag(self.next_tag)
    }

    /// Registers a command about to be written and returns its tag. `label` names it in
    /// messages (command and mailbox, never a secret).
    pub fn begin(&mut self, kind: CommandKind, label: impl Into<String>) -> CommandTag {
        let tag = CommandTag(self.next_tag);
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        if let CommandKind::Select {
            wire_name,
            read_only,
        } = &kind
        {
            // RFC 3501 6.3.1: a SELECT deselects the current mailbox at once.
            self.selected = None;
            self.selecting = Some(SelectedMailbox {
                wire_name: wire_name.clone(),
                read_only: *read_only,
                ..SelectedMailbox::default()
            });
            if self.phase == Phase::Selected {
                self.phase = Phase::Authenticated;
            }
        }
        let data = match kind {
            CommandKind::Enable => CommandData::Enabled(Vec::new()),
            CommandKind::List => CommandData::List(Vec::new()),
            CommandKind::Status => CommandData::Status(Vec::new()),
            CommandKind::Search => CommandData::Search(SearchResult::default()),
            CommandKind::Namespace => CommandData::Namespace(None),
            CommandKind::Id => CommandData::Id(None),
            CommandKind::Store => CommandData::FlagUpdates(Vec::new()),
            CommandKind::Expunge => CommandData::Expunged(ExpungeOutcome::default()),
            _ => CommandData::None,
        };
        self.pending.push_back(PendingCommand {
            tag,
            label: label.into(),
            kind,
            data,
        });
        tag
    }

    /// The command `tag` has written up to a synchronizing literal or SASL step and
    /// waits for `+`.
    pub fn expect_continuation(&mut self, tag: CommandTag) -> Result<()> {
        if let Some(other) = self.awaiting_continuation
            && other != tag
        {
            return Err(Error::Misuse(
                "two commands wait for a continuation request at once",
            ));
        }
        self.awaiting_continuation = Some(tag);
        Ok(())
    }

    /// The caller stopped reading the FETCH output of `tag`: drop its data from now on.
    pub fn stop_delivering(&mut self, tag: CommandTag) {
        for p in self.pending.iter_mut().filter(|p| p.tag == tag) {
            if let CommandKind::Fetch { deliver } = &mut p.kind {
                *deliver = false;
            }
        }
        if let Some(s) = &mut self.streaming {
            s.deliver = false;
        }
    }

    /// Removes and returns the completion of `tag`, if it arrived.
    pub fn take_completion(&mut self, tag: CommandTag) -> Option<Completion> {
        let at = self.completed.iter().position(|c| c.tag == tag)?;
        self.completed.remove(at)
    }

    /// Removes and returns the oldest arrived completion.
    pub fn pop_completion(&mut self) -> Option<Completion> {
        self.completed.pop_front()
    }

    /// Completions arrived and not taken yet.
    pub fn completed_count(&self) -> usize {
        self.completed.len()
    }

    /// After STARTTLS's OK: forget what was learned in plaintext (RFC 3501 6.2.1).
    pub fn reset_after_starttls(&mut self) {
        if !self.capabilities_stale && !self.capabilities.is_empty() {
            self.plaintext_capabilities = Some(std::mem::take(&mut self.capabilities));
        }
        self.capabilities.clear();
        self.capabilities_stale = true;
    }

    /// Replaces the capabilities (from CAPABILITY data or a code).
    pub fn set_capabilities(&mut self, caps: CapabilitySet) {
        self.capabilities = caps;
        self.capabilities_stale = false;
    }

    fn violation(&self, what: &'static str, bytes: &[u8]) -> Error {
        Error::PeerViolation {
            server: self.server.clone(),
            what,
            excerpt: Excerpt::new(bytes),
        }
    }

    fn fetch_listener(&self) -> Option<bool> {
        self.pending.iter().find_map(|p| match p.kind {
            CommandKind::Fetch { deliver } => Some(deliver),
            _ => None,
        })
    }

    fn pending_data(&mut self, pred: impl Fn(&CommandKind) -> bool) -> Option<&mut CommandData> {
        self.pending
            .iter_mut()
            .find(|p| pred(&p.kind))
            .map(|p| &mut p.data)
    }

    fn mailbox_mut(&mut self) -> Option<&mut SelectedMailbox> {
        match self.selecting.as_mut() {
            Some(m) => Some(m),
            None => self.selected.as_mut(),
        }
    }

    /// Feeds one frame from the decoder. `Ok(None)` means the frame was absorbed
    /// (untagged data stored where it belongs).
    pub fn handle_frame(&mut self, frame: Frame) -> Result<Option<Event>> {
        match frame {
            Frame::Whole(bytes) => self.handle_whole(bytes),
            Frame::Head { bytes, .. } => {
                let head = parse_fetch_head(&bytes)?;
                let deliver = self.fetch_listener().unwrap_or(false);
                let mut meta = MessageMeta {
                    seq: head.seq,
                    ..MessageMeta::default()
                };
                let mut parts = Vec::new();
                meta.absorb(head.attrs, &bytes, &mut parts)?;
                let (section, origin) = streamed_section(&head.streamed.kind);
                let len = head.streamed.len;
                let event = deliver.then(|| {
                    Event::Fetch(FetchEvent::StreamStart {
                        meta: meta.clone(),
                        section,
                        origin,
                        len,
                    })
                });
                self.streaming = Some(StreamingMessage {
                    deliver,
                    meta,
                    parts,
                });
                Ok(event)
            }
            Frame::LiteralChunk { bytes, remaining } => match &self.streaming {
                Some(s) if s.deliver => {
                    Ok(Some(Event::Fetch(FetchEvent::Chunk { bytes, remaining })))
                }
                Some(_) => Ok(None),
                None => Err(Error::Misuse(
                    "a literal chunk arrived outside a streamed message",
                )),
            },
            Frame::Tail { bytes, .. } => {
                let tail = parse_fetch_tail(&bytes)?;
                let Some(mut s) = self.streaming.take() else {
                    return Err(Error::Misuse(
                        "a response tail arrived outside a streamed message",
                    ));
                };
                s.meta.absorb(tail.attrs, &bytes, &mut s.parts)?;
                if let Some(next) = tail.streamed {
                    let (section, origin) = streamed_section(&next.kind);
                    let event = s.deliver.then(|| {
                        Event::Fetch(FetchEvent::StreamStart {
                            meta: s.meta.clone(),
                            section,
                            origin,
                            len: next.len,
                        })
                    });
                    self.streaming = Some(s);
                    return Ok(event);
                }
                Ok(s.deliver.then(|| {
                    Event::Fetch(FetchEvent::StreamEnd(FetchedMessage {
                        meta: s.meta,
                        parts: s.parts,
                    }))
                }))
            }
        }
    }

    fn handle_whole(&mut self, bytes: Bytes) -> Result<Option<Event>> {
        let response = parse_response(&bytes)?;
        match response {
            Response::Continuation(c) => {
                let authenticating = self.has_pending(|k| *k == CommandKind::Authenticate);
                if self.awaiting_continuation.take().is_some() || authenticating {
                    Ok(Some(Event::Continuation(bytes.slice_ref(c.text))))
                } else {
                    Err(self.violation(
                        "a continuation request while no command waits for one",
                        &bytes,
                    ))
                }
            }
            Response::Status(s) if s.tag.is_some() => self.handle_tagged(&bytes, &s),
            Response::Status(s) => Ok(self.handle_untagged_status(&s)),
            Response::Data(d) => self.handle_data(&bytes, d),
        }
    }

    fn handle_untagged_status(&mut self, s: &StatusResponse<'_>) -> Option<Event> {
        if s.kind == StatusKind::Bye {
            if !self.closed_by_server {
                self.lost_before_bye = match self.last_answer {
                    Some((tag, true)) => Some(tag),
                    _ => None,
                };
            }
            self.closed_by_server = true;
            self.phase = Phase::LoggedOut;
            return Some(Event::Bye(bye_error(&self.server, s, self.default_backoff)));
        }
        if matches!(s.kind, StatusKind::No | StatusKind::Bad) && s.is_throttled() {
            self.throttle_hint = Some(s.backoff_hint().unwrap_or(self.default_backoff));
        }
        if let Some(code) = &s.code {
            self.apply_code(code);
        }
        if matches!(s.code, Some(Code::Alert)) || matches!(s.kind, StatusKind::No | StatusKind::Bad)
        {
            // Once per session and text: Courier repeats its ALERT about 8-bit headers
            // after every such APPEND, hundreds of times in one folder.
            let text = String::from_utf8_lossy(s.text);
            if self.notices_logged.iter().any(|t| *t == text) {
                tracing::debug!(server = %self.server, status = s.kind.as_str(), text = %text, "IMAP server notice (again)");
            } else {
                tracing::warn!(server = %self.server, status = s.kind.as_str(), text = %text, "IMAP server notice");
                if self.notices_logged.len() < MAX_NOTICES_REMEMBERED {
                    self.notices_logged.push(text.into_owned());
                }
            }
        }
        None
    }

    fn apply_code(&mut self, code: &Code<'_>) {
        if let Code::Capability(list) = code {
            self.set_capabilities(CapabilitySet::from_list(*list));
            return;
        }
        let Some(m) = self.mailbox_mut() else { return };
        match *code {
            Code::UidValidity(v) => m.uid_validity = Some(v),
            Code::UidNext(v) => m.uid_next = Some(v),
            Code::Unseen(v) => m.unseen = Some(v),
            Code::HighestModSeq(v) => m.highest_modseq = Some(v),
            Code::NoModSeq => m.no_modseq = true,
            Code::PermanentFlags(f) => {
                m.permanent_flags = Some(String::from_utf8_lossy(f.raw()).into_owned())
            }
            _ => {}
        }
    }

    fn handle_tagged(&mut self, bytes: &Bytes, s: &StatusResponse<'_>) -> Result<Option<Event>> {
        let raw_tag = s.tag.unwrap_or_default();
        let at = CommandTag::from_wire(raw_tag)
            .and_then(|tag| self.pending.iter().position(|p| p.tag == tag));
        let Some(at) = at else {
            return Err(self.violation(
                "a tagged response for a command this client did not send",
                bytes,
            ));
        };
        let Some(cmd) = self.pending.remove(at) else {
            return Err(Error::Misuse("a pending command vanished"));
        };
        if self.awaiting_continuation == Some(cmd.tag) {
            self.awaiting_continuation = None;
        }
        if let Some(code) = &s.code {
            self.apply_code(code);
        }
        let ok = s.kind == StatusKind::Ok;
        self.last_answer = Some((
            cmd.tag,
            !ok && super::completion::says_session_lost(&String::from_utf8_lossy(s.text)),
        ));
        match &cmd.kind {
            CommandKind::Login | CommandKind::Authenticate if ok => {
                self.phase = Phase::Authenticated;
                // RFC 3501 6.2.3: capabilities may change at login; only a code in the
                // OK tells us the new ones.
                if !matches!(s.code, Some(Code::Capability(_))) {
                    self.capabilities_stale = true;
                }
            }
            CommandKind::StartTls if ok => self.reset_after_starttls(),
            CommandKind::Logout => self.phase = Phase::LoggedOut,
            CommandKind::Select { .. } => {
                let selecting = self.selecting.take();
                if ok {
                    let mut m = selecting.unwrap_or_default();
                    match s.code {
                        Some(Code::ReadOnly) => m.read_only = true,
                        Some(Code::ReadWrite) => m.read_only = false,
                        _ => {}
                    }
                    self.selected = Some(m);
                    self.phase = Phase::Selected;
                } else {
                    self.selected = None;
                    if self.phase == Phase::Selected {
                        self.phase = Phase::Authenticated;
                    }
                }
            }
            _ => {}
        }
        let completion = Completion::from_status(cmd.tag, cmd.label, s, cmd.data);
        self.completed.push_back(completion);
        Ok(Some(Event::Completed(cmd.tag)))
    }

    fn handle_data(&mut self, bytes: &Bytes, d: Data<'_>) -> Result<Option<Event>> {
        match d {
            Data::Capability(list) => self.set_capabilities(CapabilitySet::from_list(list)),
            Data::Enabled(list) => {
                let mut names = Vec::new();
                for c in list.iter() {
                    let name = String::from_utf8_lossy(c).into_owned();
                    self.enabled.insert(&name);
                    names.push(name);
                }
                if let Some(CommandData::Enabled(v)) =
                    self.pending_data(|k| *k == CommandKind::Enable)
                {
                    v.extend(names);
                }
            }
            Data::List(l) | Data::Lsub(l) => {
                if let Some(CommandData::List(v)) = self.pending_data(|k| *k == CommandKind::List) {
                    v.push(ListEntry::from_list(&l));
                }
            }
            Data::Status(st) => {
                let wire = st.mailbox.wire();
                let status = MailboxStatus::from_data(&st);
                if let Some(CommandData::List(v)) = self.pending_data(|k| *k == CommandKind::List) {
                    if let Some(e) = v.iter_mut().rev().find(|e| e.wire_name[..] == wire[..]) {
                        e.status = Some(status);
                    }
                } else if let Some(CommandData::Status(v)) =
                    self.pending_data(|k| *k == CommandKind::Status)
                {
                    v.push((wire.into_owned(), status));
                }
            }
            Data::Flags(f) => {
                if let Some(m) = self.mailbox_mut() {
                    m.flags = String::from_utf8_lossy(f.raw()).into_owned();
                }
            }
            Data::Exists(n) => {
                if let Some(m) = self.mailbox_mut() {
                    m.exists = n;
                }
            }
            Data::Recent(n) => {
                if let Some(m) = self.mailbox_mut() {
                    m.recent = n;
                }
            }
            Data::Expunge(n) => {
                if let Some(m) = self.selected.as_mut() {
                    m.exists = m.exists.saturating_sub(1);
                }
                // Outside EXPUNGE (another client's expunge, reported during NOOP or after
                // a UID command) there is nobody to tell beyond the count above.
                if let Some(CommandData::Expunged(e)) =
                    self.pending_data(|k| *k == CommandKind::Expunge)
                {
                    e.expunged.push(n);
                }
            }
            Data::Vanished {
                earlier: false,
                uids,
            } => {
                if let Some(m) = self.selected.as_mut() {
                    m.exists = m
                        .exists
                        .saturating_sub(u32::try_from(uids.count()).unwrap_or(u32::MAX));
                }
                // With QRESYNC enabled the server reports expunges as VANISHED (RFC 7162
                // 3.2.10), never as `* n EXPUNGE`.
                if let Some(CommandData::Expunged(e)) =
                    self.pending_data(|k| *k == CommandKind::Expunge)
                {
                    e.vanished.extend_from_set(&uids);
                }
            }
            Data::Fetch(f) => {
                if let Some(deliver) = self.fetch_listener() {
                    if !deliver {
                        return Ok(None);
                    }
                    let mut meta = MessageMeta {
                        seq: f.seq,
                        ..MessageMeta::default()
                    };
                    let mut parts = Vec::new();
                    meta.absorb(f.attrs, bytes, &mut parts)?;
                    return Ok(Some(Event::Fetch(FetchEvent::Message(FetchedMessage {
                        meta,
                        parts,
                    }))));
                }
                if let Some(CommandData::FlagUpdates(v)) =
                    self.pending_data(|k| *k == CommandKind::Store)
                {
                    let mut meta = MessageMeta {
                        seq: f.seq,
                        ..MessageMeta::default()
                    };
                    meta.absorb(f.attrs, bytes, &mut Vec::new())?;
                    v.push(FlagUpdate {
                        seq: meta.seq,
                        uid: meta.uid,
                        flags: meta.flags,
                        modseq: meta.modseq,
                    });
                }
                // Otherwise an unsolicited flag change by another client: the next
                // incremental pass picks it up through CHANGEDSINCE.
            }
            Data::Search(s) => {
                if let Some(CommandData::Search(r)) =
                    self.pending_data(|k| *k == CommandKind::Search)
                {
                    r.add_search(&s);
                }
            }
            Data::Esearch(e) => {
                if let Some(CommandData::Search(r)) =
                    self.pending_data(|k| *k == CommandKind::Search)
                {
                    r.add_esearch(&e);
                }
            }
            Data::Namespace(n) => {
                if let Some(CommandData::Namespace(v)) =
                    self.pending_data(|k| *k == CommandKind::Namespace)
                {
                    *v = Some(Namespaces::from_data(&n));
                }
            }
            Data::Id(params) => {
                if let Some(CommandData::Id(v)) = self.pending_data(|k| *k == CommandKind::Id) {
                    *v = params.map(|p| {
                        p.iter()
                            .map(|(k, v)| {
                                (
                                    String::from_utf8_lossy(&k.to_bytes()).into_owned(),
                                    v.map(|v| String::from_utf8_lossy(&v.to_bytes()).into_owned()),
                                )
                            })
                            .collect()
                    });
                }
            }
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
