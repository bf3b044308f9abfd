//! A small blocking IMAP client for tests: plain, STARTTLS or implicit TLS; LOGIN and
//! AUTHENTICATE PLAIN; CAPABILITY, LIST, SELECT/EXAMINE, UID FETCH, APPEND, CREATE, LOGOUT.
//!
//! Every read has a timeout so that a test never hangs on a silent server, and a server's
//! garbage is a `KitError::Protocol`, never a panic.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::base64_codec;
use super::imap_response::{Piece, Response, Status, Token, literal_announcement, parse_response};
use super::internal_date::InternalDate;
use super::kit_error::KitError;
use super::message_flag::Flag;
use super::mutf7;
use super::tls_material::SERVER_NAME;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longer lines than this are taken for a runaway server.
const MAX_LINE: usize = 16 << 20;
/// Literals above this are refused rather than allocated (a peer's garbage size).
const MAX_LITERAL: u64 = 1 << 30;

#[derive(Clone)]
pub enum Security {
    Plain,
    /// Plain connection upgraded with STARTTLS; the certificate must chain to these roots.
    StartTls(Arc<RootCertStore>),
    /// Implicit TLS from the first byte (the `imaps` port).
    Tls(Arc<RootCertStore>),
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Security::Plain => "Plain",
            Security::StartTls(_) => "StartTls",
            Security::Tls(_) => "Tls",
        })
    }
}

/// How to log in. Debug never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `LOGIN user password`; for a master login `user` is `"user*master"`.
    Login { user: String, password: String },
    /// `AUTHENTICATE PLAIN` with an optional authorization identity (the user to act as).
    Plain {
        authzid: Option<String>,
        authcid: String,
        password: String,
    },
}

impl Credentials {
    pub fn login(user: &str, password: &str) -> Self {
        Credentials::Login {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// Dovecot's master-user LOGIN form: `LOGIN "user*master" master-password`.
    pub fn master_login(user: &str, master: &str, master_password: &str) -> Self {
        Credentials::Login {
            user: format!("{user}*{master}"),
            password: master_password.to_owned(),
        }
    }

    /// `AUTHENTICATE PLAIN` as `master`, acting for `user`.
    pub fn master_plain(user: &str, master: &str, master_password: &str) -> Self {
        Credentials::Plain {
            authzid: Some(user.to_owned()),
            authcid: master.to_owned(),
            password: master_password.to_owned(),
        }
    }

    /// Who logs in, for messages (no password).
    pub fn describe(&self) -> String {
        match self {
            Credentials::Login { user, .. } => format!("LOGIN {user}"),
            Credentials::Plain {
                authzid: Some(z),
                authcid,
                ..
            } => format!("AUTHENTICATE PLAIN {authcid} for {z}"),
            Credentials::Plain { authcid, .. } => format!("AUTHENTICATE PLAIN {authcid}"),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({})", self.describe())
    }
}

/// Where and how to reach one user's mail.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// A label for reports: "source", "target", "dovecot-fs".
    pub label: String,
    pub addr: SocketAddr,
    pub security: Security,
    pub credentials: Credentials,
    pub timeout: Duration,
}

impl Endpoint {
    /// Connects and logs in.
    pub fn connect(&self) -> Result<ImapClient, KitError> {
        let mut client = ImapClient::connect(self.addr, &self.security, self.timeout)?;
        client.authenticate(&self.credentials)?;
        Ok(client)
    }
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Closed,
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
            Transport::Closed => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
            Transport::Closed => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
            Transport::Closed => Ok(()),
        }
    }
}

/// A tagged reply's status, response code and text.
type TaggedReply = (Status, Option<Vec<Token>>, String);

/// A command argument.
pub enum Arg<'a> {
    /// Sent verbatim: atoms, sequence sets, parenthesised flag lists.
    Raw(&'a str),
    /// An astring: quoted when that is possible, otherwise a literal.
    Str(&'a [u8]),
    /// Always a literal (message bodies).
    Literal(&'a [u8]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub attributes: Vec<String>,
    pub separator: Option<char>,
    /// The name as sent (modified UTF-7 unless UTF8=ACCEPT is on).
    pub wire_name: Vec<u8>,
    /// The name decoded to Unicode.
    pub name: String,
}

impl ListEntry {
    /// False for `\Noselect` and `\NonExistent` entries (parents that hold no messages).
    pub fn is_selectable(&self) -> bool {
        !self.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxStatus {
    pub exists: u32,
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub highest_modseq: Option<u64>,
    pub read_only: bool,
}

/// One FETCH response, with whichever items it carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchedMessage {
    pub seq: u32,
    pub uid: Option<u32>,
    /// Flags as sent, `\Recent` included (the verifier drops it).
    pub flags: Option<Vec<String>>,
    pub internal_date: Option<InternalDate>,
    pub size: Option<u64>,
    /// `BODY[]` / `BODY.PEEK[]` as served.
    pub body: Option<Vec<u8>>,
}

/// The APPENDUID response code (RFC 4315).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendUid {
    pub uidvalidity: u32,
    pub uid: u32,
}

pub struct ImapClient {
    transport: Transport,
    server: String,
    buf: Vec<u8>,
    start: usize,
    next_tag: u32,
    capabilities: Vec<String>,
    timeout: Duration,
}

impl ImapClient {
    /// Connects, reads the greeting and (for `StartTls`) upgrades the connection.
    /// Does not log in.
    pub fn connect(
        addr: SocketAddr,
        security: &Security,
        timeout: Duration,
    ) -> Result<Self, KitError> {
        let server = addr.to_string();
        let io_err = |action: &str, source| KitError::Io {
            server: server.clone(),
            action: action.to_owned(),
            source,
        };
        let tcp =
            TcpStream::connect_timeout(&addr, timeout).map_err(|e| io_err("connecting", e))?;
        tcp.set_read_timeout(Some(timeout))
            .and_then(|()| tcp.set_write_timeout(Some(timeout)))
            .and_then(|()| tcp.set_nodelay(true))
            .map_err(|e| io_err("setting socket options", e))?;
        let transport = match security {
            Security::Tls(roots) => tls_handshake(tcp, roots, &server)?,
            Security::Plain | Security::StartTls(_) => Transport::Plain(tcp),
        };
        let mut client = ImapClient {
            transport,
            server,
            buf: Vec::with_capacity(64 << 10),
            start: 0,
            next_tag: 1,
            capabilities: Vec::new(),
            timeout,
        };
        match client.read_response("the greeting")? {
            Response::Status {
                tag: None,
                status: Status::Ok | Status::Preauth,
                code,
                ..
            } => client.take_capabilities(code.as_deref()),
            Response::Status {
                status: Status::Bye,
                text,
                ..
            } => {
                return Err(KitError::Refused {
                    server: client.server.clone(),
                    command: "connection".to_owned(),
                    status: "BYE".to_owned(),
                    text,
                });
            }
            other => {
                return Err(client.protocol_error("greeting is not * OK", &format!("{other:?}")));
            }
        }
        if let Security::StartTls(roots) = security {
            client.starttls(roots)?;
        }
        if client.capabilities.is_empty() {
            client.capability()?;
        }
        Ok(client)
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.transport, Transport::Tls(_))
    }

    /// Capabilities as last announced (upper-cased).
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    fn take_capabilities(&mut self, code: Option<&[Token]>) {
        if let Some([first, rest @ ..]) = code
            && first.is_atom("CAPABILITY")
        {
            self.capabilities = rest
                .iter()
                .filter_map(Token::atom)
                .map(str::to_ascii_uppercase)
                .collect();
        }
    }

    pub fn capability(&mut self) -> Result<Vec<String>, KitError> {
        let (untagged, _) = self.run("CAPABILITY", &[Arg::Raw("CAPABILITY")])?;
        for response in untagged {
            if let Response::Data { tokens } = response
                && tokens.first().is_some_and(|t| t.is_atom("CAPABILITY"))
            {
                self.capabilities = tokens[1..]
                    .iter()
                    .filter_map(Token::atom)
                    .map(str::to_ascii_uppercase)
                    .collect();
            }
        }
        Ok(self.capabilities.clone())
    }

    fn starttls(&mut self, roots: &Arc<RootCertStore>) -> Result<(), KitError> {
        self.run("STARTTLS", &[Arg::Raw("STARTTLS")])?;
        // Bytes after the OK would have been injected before the handshake (CVE-2011-0411
        // class); a correct server sends none.
        if self.start < self.buf.len() {
            return Err(self.protocol_error(
                "data after STARTTLS OK, before the TLS handshake",
                &String::from_utf8_lossy(&self.buf[self.start..]),
            ));
        }
        let Transport::Plain(tcp) = std::mem::replace(&mut self.transport, Transport::Closed)
        else {
            return Err(KitError::Usage(format!(
                "STARTTLS on {} requested on a connection that is already TLS",
                self.server
            )));
        };
        self.transport = tls_handshake(tcp, roots, &self.server)?;
        // RFC 3501 §6.2.1: capabilities from before STARTTLS must be forgotten.
        self.capabilities.clear();
        self.capability()?;
        Ok(())
    }

    /// Logs in as the credentials say.
    pub fn authenticate(&mut self, credentials: &Credentials) -> Result<(), KitError> {
        match credentials {
            Credentials::Login { user, password } => self.login(user, password),
            Credentials::Plain {
                authzid,
                authcid,
                password,
            } => self.authenticate_plain(authzid.as_deref(), authcid, password),
        }
    }

    pub fn login(&mut self, user: &str, password: &str) -> Result<(), KitError> {
        let description = format!("LOGIN {user} <password>");
        let args = [
            Arg::Raw("LOGIN"),
            Arg::Str(user.as_bytes()),
            Arg::Str(password.as_bytes()),
        ];
        let (_, code) = self.run(&description, &args)?;
        self.after_login(code)
    }

    /// SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`, with SASL-IR when offered.
    pub fn authenticate_plain(
        &mut self,
        authzid: Option<&str>,
        authcid: &str,
        password: &str,
    ) -> Result<(), KitError> {
        let mut message = Vec::new();
        message.extend_from_slice(authzid.unwrap_or("").as_bytes());
        message.push(0);
        message.extend_from_slice(authcid.as_bytes());
        message.push(0);
        message.extend_from_slice(password.as_bytes());
        let encoded = base64_codec::encode(&message);
        let description = format!(
            "AUTHENTICATE PLAIN {authcid} for {} <password>",
            authzid.unwrap_or(authcid)
        );
        let code = if self.has_capability("SASL-IR") {
            let (_, code) = self.run(
                &description,
                &[Arg::Raw("AUTHENTICATE PLAIN"), Arg::Raw(&encoded)],
            )?;
            code
        } else {
            let tag = self.send(&description, &[Arg::Raw("AUTHENTICATE PLAIN")])?;
            match self.read_until_continuation_or_tagged(&tag, &description)? {
                None => {}
                Some(_) => {
                    return Err(self.protocol_error(
                        "AUTHENTICATE completed without asking for the SASL response",
                        &description,
                    ));
                }
            }
            self.write_all(format!("{encoded}\r\n").as_bytes(), &description)?;
            let (_, code) = self.finish(&tag, &description)?;
            code
        };
        self.after_login(code)
    }

    fn after_login(&mut self, code: Option<Vec<Token>>) -> Result<(), KitError> {
        match code {
            Some(code) if code.first().is_some_and(|t| t.is_atom("CAPABILITY")) => {
                self.take_capabilities(Some(&code));
                Ok(())
            }
            // Capabilities may change at login and the server did not say how.
            _ => self.capability().map(|_| ()),
        }
    }

    /// `LIST reference pattern` with Unicode names.
    pub fn list(&mut self, reference: &str, pattern: &str) -> Result<Vec<ListEntry>, KitError> {
        let reference = mutf7::encode(reference);
        let pattern = mutf7::encode(pattern);
        let (untagged, _) = self.run(
            "LIST",
            &[
                Arg::Raw("LIST"),
                Arg::Str(reference.as_bytes()),
                Arg::Str(pattern.as_bytes()),
            ],
        )?;
        let mut entries = Vec::new();
        for response in untagged {
            let Response::Data { tokens } = response else {
                continue;
            };
            if !tokens.first().is_some_and(|t| t.is_atom("LIST")) {
                continue;
            }
            entries.push(self.list_entry(&tokens)?);
        }
        Ok(entries)
    }

    /// `LSUB "" "*"`: the names of subscribed folders.
    pub fn subscribed(&mut self) -> Result<Vec<String>, KitError> {
        let (untagged, _) = self.run("LSUB", &[Arg::Raw("LSUB"), Arg::Str(b""), Arg::Str(b"*")])?;
        let mut names = Vec::new();
        for response in untagged {
            if let Response::Data { tokens } = response
                && tokens.first().is_some_and(|t| t.is_atom("LSUB"))
            {
                names.push(self.list_entry(&tokens)?.name);
            }
        }
        Ok(names)
    }

    fn list_entry(&self, tokens: &[Token]) -> Result<ListEntry, KitError> {
        let shape = || {
            self.protocol_error(
                "LIST response is not (attributes) separator name",
                &format!("{tokens:?}"),
            )
        };
        let [_, attributes, separator, name, ..] = tokens else {
            return Err(shape());
        };
        let attributes = attributes
            .list()
            .ok_or_else(shape)?
            .iter()
            .map(|t| t.atom().map(str::to_owned).ok_or_else(shape))
            .collect::<Result<Vec<_>, _>>()?;
        let separator = if separator.is_nil() {
            None
        } else {
            match separator.string_bytes() {
                Some([b]) if b.is_ascii() => Some(char::from(*b)),
                _ => return Err(shape()),
            }
        };
        let wire_name = name.string_bytes().ok_or_else(shape)?.to_vec();
        let name = if wire_name.eq_ignore_ascii_case(b"INBOX") {
            "INBOX".to_owned()
        } else {
            mutf7::decode(&wire_name).map_err(|e| {
                self.protocol_error(
                    &format!("mailbox name is not modified UTF-7: {e}"),
                    &String::from_utf8_lossy(&wire_name),
                )
            })?
        };
        Ok(ListEntry {
            attributes,
            separator,
            wire_name,
            name,
        })
    }

    pub fn select(&mut self, mailbox: &str) -> Result<MailboxStatus, KitError> {
        self.open_mailbox("SELECT", mailbox)
    }

    /// Read-only open: fetching never sets `\Seen` nor clears `\Recent` for others.
    pub fn examine(&mut self, mailbox: &str) -> Result<MailboxStatus, KitError> {
        self.open_mailbox("EXAMINE", mailbox)
    }

    fn open_mailbox(&mut self, verb: &str, mailbox: &str) -> Result<MailboxStatus, KitError> {
        let wire = mutf7::encode(mailbox);
        let (untagged, code) = self.run(
            &format!("{verb} {mailbox:?}"),
            &[Arg::Raw(verb), Arg::Str(wire.as_bytes())],
        )?;
        let mut status = MailboxStatus {
            read_only: code
                .as_deref()
                .and_then(<[Token]>::first)
                .is_some_and(|t| t.is_atom("READ-ONLY")),
            ..MailboxStatus::default()
        };
        for response in untagged {
            match response {
                Response::Data { tokens } => {
                    if let [n, word] = tokens.as_slice()
                        && word.is_atom("EXISTS")
                    {
                        status.exists =
                            n.number()
                                .and_then(|n| u32::try_from(n).ok())
                                .ok_or_else(|| {
                                    self.protocol_error("bad EXISTS count", &format!("{n:?}"))
                                })?;
                    }
                }
                Response::Status {
                    code: Some(code), ..
                } => {
                    let number = code.get(1).and_then(Token::number);
                    match code.first() {
                        Some(t) if t.is_atom("UIDVALIDITY") => {
                            status.uidvalidity = number.and_then(|n| u32::try_from(n).ok());
                        }
                        Some(t) if t.is_atom("UIDNEXT") => {
                            status.uidnext = number.and_then(|n| u32::try_from(n).ok());
                        }
                        Some(t) if t.is_atom("HIGHESTMODSEQ") => status.highest_modseq = number,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(status)
    }

    /// `UID FETCH set items`, handing each FETCH response to `each` as it arrives, so a
    /// large mailbox never sits in memory at once.
    pub fn uid_fetch_each(
        &mut self,
        set: &str,
        items: &str,
        mut each: impl FnMut(FetchedMessage) -> Result<(), KitError>,
    ) -> Result<(), KitError> {
        let description = format!("UID FETCH {set} {items}");
        let tag = self.send(
            &description,
            &[Arg::Raw("UID FETCH"), Arg::Raw(set), Arg::Raw(items)],
        )?;
        loop {
            match self.read_response(&description)? {
                Response::Data { tokens } if tokens.get(1).is_some_and(|t| t.is_atom("FETCH")) => {
                    each(self.fetched_message(&tokens)?)?;
                }
                Response::Status { tag: Some(t), .. } if t != tag => {
                    return Err(self.protocol_error("reply with a tag never sent", &t));
                }
                Response::Status {
                    tag: Some(_),
                    status,
                    code,
                    text,
                } => {
                    return if status == Status::Ok {
                        Ok(())
                    } else {
                        Err(self.refused(&description, status, code.as_deref(), text))
                    };
                }
                _ => {}
            }
        }
    }

    /// All of `UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])` in memory.
    pub fn fetch_all(&mut self) -> Result<Vec<FetchedMessage>, KitError> {
        let mut all = Vec::new();
        self.uid_fetch_each("1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])", |m| {
            all.push(m);
            Ok(())
        })?;
        Ok(all)
    }

    fn fetched_message(&self, tokens: &[Token]) -> Result<FetchedMessage, KitError> {
        let shape = |why: &str| self.protocol_error(why, &format!("{tokens:?}"));
        let seq = tokens
            .first()
            .and_then(Token::number)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| shape("FETCH without a sequence number"))?;
        let items = tokens
            .get(2)
            .and_then(Token::list)
            .ok_or_else(|| shape("FETCH without an item list"))?;
        if items.len() % 2 != 0 {
            return Err(shape("FETCH item without a value"));
        }
        let mut message = FetchedMessage {
            seq,
            ..FetchedMessage::default()
        };
        for pair in items.chunks(2) {
            let (name, value) = (&pair[0], &pair[1]);
            let name = name
                .atom()
                .ok_or_else(|| shape("FETCH item name is not an atom"))?
                .to_ascii_uppercase();
            match name.as_str() {
                "UID" => {
                    message.uid = Some(
                        value
                            .number()
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| shape("bad UID"))?,
                    );
                }
                "FLAGS" => {
                    let flags = value.list().ok_or_else(|| shape("FLAGS is not a list"))?;
                    message.flags = Some(
                        flags
                            .iter()
                            .map(|f| f.atom().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| shape("a flag is not an atom"))?,
                    );
                }
                "INTERNALDATE" => {
                    let text = value
                        .string_bytes()
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .ok_or_else(|| shape("INTERNALDATE is not a string"))?;
                    message.internal_date = Some(
                        InternalDate::parse_imap(text)
                            .ok_or_else(|| shape("INTERNALDATE is not a date-time"))?,
                    );
                }
                "RFC822.SIZE" => {
                    message.size = Some(value.number().ok_or_else(|| shape("bad RFC822.SIZE"))?);
                }
                "BODY[]" | "RFC822" => {
                    message.body = value.string_bytes().map(<[u8]>::to_vec);
                }
                _ => {}
            }
        }
        Ok(message)
    }

    /// `APPEND mailbox (flags) "date" {literal}`; returns APPENDUID when the server sends it.
    pub fn append(
        &mut self,
        mailbox: &str,
        flags: &[Flag],
        date: Option<InternalDate>,
        message: &[u8],
    ) -> Result<Option<AppendUid>, KitError> {
        let wire = mutf7::encode(mailbox);
        let flag_list = format!(
            "({})",
            flags
                .iter()
                .map(Flag::to_imap)
                .collect::<Vec<_>>()
                .join(" ")
        );
        let date_text = date.map(|d| format!("\"{}\"", d.to_imap()));
        let mut args = vec![
            Arg::Raw("APPEND"),
            Arg::Str(wire.as_bytes()),
            Arg::Raw(&flag_list),
        ];
        if let Some(d) = &date_text {
            args.push(Arg::Raw(d));
        }
        args.push(Arg::Literal(message));
        let (_, code) = self.run(&format!("APPEND to {mailbox:?}"), &args)?;
        Ok(match code.as_deref() {
            Some([word, validity, uid, ..]) if word.is_atom("APPENDUID") => {
                let number = |t: &Token| t.number().and_then(|n| u32::try_from(n).ok());
                match (number(validity), number(uid)) {
                    (Some(uidvalidity), Some(uid)) => Some(AppendUid { uidvalidity, uid }),
                    _ => {
                        return Err(self.protocol_error(
                            "APPENDUID with numbers that are not 32-bit UIDs",
                            &format!("{code:?}"),
                        ));
                    }
                }
            }
            _ => None,
        })
    }

    pub fn create(&mut self, mailbox: &str) -> Result<(), KitError> {
        let wire = mutf7::encode(mailbox);
        self.run(
            &format!("CREATE {mailbox:?}"),
            &[Arg::Raw("CREATE"), Arg::Str(wire.as_bytes())],
        )
        .map(|_| ())
    }

    pub fn noop(&mut self) -> Result<(), KitError> {
        self.run("NOOP", &[Arg::Raw("NOOP")]).map(|_| ())
    }

    pub fn logout(mut self) -> Result<(), KitError> {
        self.run("LOGOUT", &[Arg::Raw("LOGOUT")]).map(|_| ())
    }

    /// Runs any command; returns the untagged responses and the tagged OK's response code.
    pub fn run(
        &mut self,
        description: &str,
        args: &[Arg<'_>],
    ) -> Result<(Vec<Response>, Option<Vec<Token>>), KitError> {
        let tag = self.send(description, args)?;
        self.finish(&tag, description)
    }

    fn finish(
        &mut self,
        tag: &str,
        description: &str,
    ) -> Result<(Vec<Response>, Option<Vec<Token>>), KitError> {
        let mut untagged = Vec::new();
        loop {
            match self.read_response(description)? {
                Response::Status {
                    tag: Some(t),
                    status,
                    code,
                    text,
                } => {
                    if t != tag {
                        return Err(self.protocol_error("reply with a tag never sent", &t));
                    }
                    return if status == Status::Ok {
                        Ok((untagged, code))
                    } else {
                        Err(self.refused(description, status, code.as_deref(), text))
                    };
                }
                Response::Continuation { text } => {
                    return Err(self.protocol_error("unexpected continuation request", &text));
                }
                other => untagged.push(other),
            }
        }
    }

    /// Sends a command, waiting for continuations before synchronizing literals.
    fn send(&mut self, description: &str, args: &[Arg<'_>]) -> Result<String, KitError> {
        let tag = format!("k{}", self.next_tag);
        self.next_tag += 1;
        let literal_plus = self.has_capability("LITERAL+");
        let mut out: Vec<u8> = Vec::with_capacity(256);
        out.extend_from_slice(tag.as_bytes());
        for arg in args {
            out.push(b' ');
            let literal = match arg {
                Arg::Raw(text) => {
                    out.extend_from_slice(text.as_bytes());
                    None
                }
                Arg::Str(bytes) if can_quote(bytes) => {
                    out.push(b'"');
                    for &b in *bytes {
                        if b == b'"' || b == b'\\' {
                            out.push(b'\\');
                        }
                        out.push(b);
                    }
                    out.push(b'"');
                    None
                }
                Arg::Str(bytes) | Arg::Literal(bytes) => Some(*bytes),
            };
            if let Some(bytes) = literal {
                if literal_plus {
                    out.extend_from_slice(format!("{{{}+}}\r\n", bytes.len()).as_bytes());
                } else {
                    out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                    self.write_all(&out, description)?;
                    out.clear();
                    if let Some((status, code, text)) =
                        self.read_until_continuation_or_tagged(&tag, description)?
                    {
                        return Err(self.refused(description, status, code.as_deref(), text));
                    }
                }
                out.extend_from_slice(bytes);
            }
        }
        out.extend_from_slice(b"\r\n");
        self.write_all(&out, description)?;
        Ok(tag)
    }

    /// Waits for `+`; Some(status) when the command was answered instead.
    fn read_until_continuation_or_tagged(
        &mut self,
        tag: &str,
        description: &str,
    ) -> Result<Option<TaggedReply>, KitError> {
        loop {
            match self.read_response(description)? {
                Response::Continuation { .. } => return Ok(None),
                Response::Status {
                    tag: Some(t),
                    status,
                    code,
                    text,
                } if t == tag => return Ok(Some((status, code, text))),
                _ => {}
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8], description: &str) -> Result<(), KitError> {
        self.transport
            .write_all(bytes)
            .and_then(|()| self.transport.flush())
            .map_err(|e| self.io_error(e, &format!("sending {description}")))
    }

    /// Reads one whole response: its lines and the literals they announce.
    pub fn read_response(&mut self, waiting_for: &str) -> Result<Response, KitError> {
        let mut pieces = Vec::new();
        loop {
            let line = self.read_line(waiting_for)?;
            let announced = literal_announcement(&line)
                .map_err(|e| self.protocol_error(&e, &String::from_utf8_lossy(&line)))?;
            pieces.push(Piece::Line(line));
            let Some(size) = announced else { break };
            if size > MAX_LITERAL {
                return Err(self.protocol_error(
                    &format!("literal of {size} bytes is larger than the kit accepts"),
                    waiting_for,
                ));
            }
            let literal = self.read_exact(size as usize, waiting_for)?;
            pieces.push(Piece::Literal(literal));
        }
        parse_response(&pieces).map_err(|e| {
            let excerpt = match pieces.first() {
                Some(Piece::Line(l)) => {
                    String::from_utf8_lossy(&l[..l.len().min(300)]).into_owned()
                }
                _ => String::new(),
            };
            self.protocol_error(&e, &excerpt)
        })
    }

    fn read_line(&mut self, waiting_for: &str) -> Result<Vec<u8>, KitError> {
        // Offset from `start` already searched, so a long line is scanned once.
        let mut scanned = 0;
        loop {
            let unread = &self.buf[self.start..];
            if let Some(offset) = unread[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + offset;
                if end == 0 || unread[end - 1] != b'\r' {
                    let line = String::from_utf8_lossy(&unread[..end]).into_owned();
                    return Err(self.protocol_error("line ends in a bare LF, not CRLF", &line));
                }
                let line = unread[..end - 1].to_vec();
                self.start += end + 1;
                return Ok(line);
            }
            scanned = unread.len();
            if scanned > MAX_LINE {
                return Err(self.protocol_error("line longer than 16 MiB", waiting_for));
            }
            self.fill(waiting_for)?;
        }
    }

    fn read_exact(&mut self, size: usize, waiting_for: &str) -> Result<Vec<u8>, KitError> {
        let mut out = vec![0u8; size];
        let buffered = (self.buf.len() - self.start).min(size);
        out[..buffered].copy_from_slice(&self.buf[self.start..self.start + buffered]);
        self.start += buffered;
        let mut filled = buffered;
        while filled < size {
            match self.transport.read(&mut out[filled..]) {
                Ok(0) => {
                    return Err(KitError::Closed {
                        server: self.server.clone(),
                        waiting_for: format!("the rest of a literal during {waiting_for}"),
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(e, waiting_for)),
            }
        }
        Ok(out)
    }

    fn fill(&mut self, waiting_for: &str) -> Result<(), KitError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + (64 << 10), 0);
        loop {
            match self.transport.read(&mut self.buf[old..]) {
                Ok(0) => {
                    self.buf.truncate(old);
                    return Err(KitError::Closed {
                        server: self.server.clone(),
                        waiting_for: waiting_for.to_owned(),
                    });
                }
                Ok(n) => {
                    self.buf.truncate(old + n);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(self.read_error(e, waiting_for));
                }
            }
        }
    }

    fn read_error(&self, e: std::io::Error, waiting_for: &str) -> KitError {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => KitError::Timeout {
                server: self.server.clone(),
                seconds: self.timeout.as_secs(),
                waiting_for: waiting_for.to_owned(),
            },
            _ => self.io_error(e, &format!("waiting for {waiting_for}")),
        }
    }

    fn io_error(&self, source: std::io::Error, action: &str) -> KitError {
        // rustls reports certificate problems as InvalidData wrapping its own error.
        if source.kind() == std::io::ErrorKind::InvalidData {
            return KitError::Tls {
                server: self.server.clone(),
                action: action.to_owned(),
                detail: source.to_string(),
            };
        }
        KitError::Io {
            server: self.server.clone(),
            action: action.to_owned(),
            source,
        }
    }

    fn protocol_error(&self, detail: &str, excerpt: &str) -> KitError {
        KitError::Protocol {
            server: self.server.clone(),
            detail: detail.to_owned(),
            excerpt: excerpt.chars().take(300).collect(),
        }
    }

    fn refused(
        &self,
        command: &str,
        status: Status,
        code: Option<&[Token]>,
        text: String,
    ) -> KitError {
        // The code (`[TRYCREATE]`, `[AUTHENTICATIONFAILED]`) is often what a test checks.
        let text = match code {
            Some(code) => format!("[{}] {text}", render_tokens(code)),
            None => text,
        };
        KitError::Refused {
            server: self.server.clone(),
            command: command.to_owned(),
            status: status.to_string(),
            text,
        }
    }
}

/// Tokens back to text, for messages.
fn render_tokens(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(|t| match t {
            Token::Atom(b) | Token::Quoted(b) | Token::Literal(b) => {
                String::from_utf8_lossy(b).into_owned()
            }
            Token::List(items) => format!("({})", render_tokens(items)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A quoted string may not hold CR, LF, NUL or 8-bit bytes (RFC 3501 §4.3).
fn can_quote(bytes: &[u8]) -> bool {
    bytes.len() < 1000
        && bytes
            .iter()
            .all(|&b| (0x01..=0x7f).contains(&b) && b != b'\r' && b != b'\n')
}

fn tls_handshake(
    mut tcp: TcpStream,
    roots: &Arc<RootCertStore>,
    server: &str,
) -> Result<Transport, KitError> {
    let tls_error = |detail: String| KitError::Tls {
        server: server.to_owned(),
        action: "the TLS handshake".to_owned(),
        detail,
    };
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?
            .with_root_certificates(Arc::clone(roots))
            .with_no_client_auth();
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| tls_error(e.to_string()))?;
    let mut connection =
        ClientConnection::new(Arc::new(config), name).map_err(|e| tls_error(e.to_string()))?;
    // Finish the handshake now, so an untrusted certificate fails here and not at a read.
    while connection.is_handshaking() {
        connection
            .complete_io(&mut tcp)
            .map_err(|e| tls_error(e.to_string()))?;
    }
    Ok(Transport::Tls(Box::new(StreamOwned::new(connection, tcp))))
}
