//! A Gmail-like server: a relay in front of one of the kit's Dovecots (`LAYOUT=fs`,
//! separator `/`) that behaves as imap.gmail.com does in public transcripts (MailKit
//! issues #394 and #1396, aioimaplib logs in home-assistant #155699, ha-email-sensor #16)
//! and Google's IMAP extensions page (developers.google.com/gmail/imap/imap-extensions):
//!
//! - the greeting `* OK Gimap ready for requests from 127.0.0.1 ...`, Gmail's
//!   capabilities before login (`... X-GM-EXT-1 XYZZY SASL-IR AUTH=XOAUTH2 AUTH=PLAIN ...`)
//!   and after (`... X-GM-EXT-1 UIDPLUS COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH
//!   UTF8=ACCEPT LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE APPENDLIMIT=35651584`): no
//!   MULTIAPPEND (an APPEND of several messages is refused with BAD), LITERAL- (a
//!   non-synchronizing literal over 4096 bytes is refused with BAD, as RFC 7888 lets the
//!   server), APPENDLIMIT enforced;
//! - labels are folders under `/`; `[Gmail]` is `\Noselect`; its system folders carry
//!   Gmail's attributes (All Mail `\All`, Sent Mail `\Sent`, Drafts `\Drafts`, Spam
//!   `\Junk`, Trash `\Trash`, Starred `\Flagged`, Important `\Important`);
//! - `X-GM-MSGID`, `X-GM-THRID` and `X-GM-LABELS` in FETCH, answered from the account's
//!   side table: one message is one X-GM-MSGID in every folder it shows in; All Mail holds
//!   every message but those in Spam and Trash; X-GM-LABELS lists `\Inbox`, `\Sent`,
//!   `\Draft`, `\Starred`, `\Important` and the user labels (what the extensions page
//!   documents). The kit seeds the account through [`GmailLike::seed`], which APPENDs each
//!   message into every folder it shows in and records each copy's UID;
//! - `NO [THROTTLED]` on chosen commands after login, `NO [OVERQUOTA] Account exceeded
//!   command or bandwidth limits.` on chosen APPENDs (Gmail's words for [OVERQUOTA] are
//!   from ha-email-sensor #16; it also sends `OK Success [THROTTLED]`, which needs nothing
//!   of a client; the NO [THROTTLED] text is ours);
//! - optionally no `X-GM-EXT-1` at all ([`GmailLikeConfig::without_gm_ext`]): the
//!   capability is not announced and a FETCH of an X-GM item is refused with BAD;
//! - APPENDs into All Mail are counted (Gmail accepts them: imapsync users map an archive
//!   folder onto `[Gmail]/All Mail`), so a test can say none were made.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::exchange_like::{lock, read_command, read_response};
use super::imap_client::{Arg, ImapClient};
use super::internal_date::InternalDate;
use super::kit_error::KitError;
use super::message_flag::Flag;

/// Gmail's greeting (the last word is a server id).
pub const GMAIL_GREETING: &str = "* OK Gimap ready for requests from 127.0.0.1 x2mb241876667wmk";

/// Gmail's capabilities before login.
pub const GMAIL_CAPABILITIES_BEFORE_LOGIN: &str = "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 XYZZY SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER AUTH=XOAUTH";

/// Gmail's capabilities after login.
pub const GMAIL_CAPABILITIES: &str = "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE APPENDLIMIT=35651584";

/// Gmail's APPENDLIMIT.
pub const GMAIL_APPEND_LIMIT: u64 = 35_651_584;

/// The largest non-synchronizing literal LITERAL- allows (RFC 7888).
const LITERAL_MINUS_MAX: u64 = 4096;

pub const ALL_MAIL: &str = "[Gmail]/All Mail";
pub const SENT_MAIL: &str = "[Gmail]/Sent Mail";
pub const DRAFTS: &str = "[Gmail]/Drafts";
pub const SPAM: &str = "[Gmail]/Spam";
pub const TRASH: &str = "[Gmail]/Trash";
pub const STARRED: &str = "[Gmail]/Starred";
pub const IMPORTANT: &str = "[Gmail]/Important";

/// Gmail's system folders and their attributes.
pub const GMAIL_SYSTEM_FOLDERS: [(&str, &str); 7] = [
    (ALL_MAIL, "\\All"),
    (DRAFTS, "\\Drafts"),
    (IMPORTANT, "\\Important"),
    (SENT_MAIL, "\\Sent"),
    (SPAM, "\\Junk"),
    (STARRED, "\\Flagged"),
    (TRASH, "\\Trash"),
];

/// Where a message lives apart from its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bin {
    /// In All Mail (and its labels).
    AllMail,
    /// In Spam only.
    Spam,
    /// In Trash only.
    Trash,
}

/// One Gmail message: its bytes and its labels.
#[derive(Debug, Clone)]
pub struct GmailMessage {
    pub bytes: Vec<u8>,
    pub internal_date: InternalDate,
    /// `\Seen`, `\Answered`, keywords; `\Flagged` follows `\Starred`.
    pub flags: Vec<Flag>,
    /// `\Inbox`, `\Sent`, `\Draft`, `\Starred`, `\Important`, user labels (`Work/2024`).
    pub labels: Vec<String>,
    pub bin: Bin,
}

/// The folders a message with these labels shows in.
pub fn folders_of(labels: &[String], bin: Bin) -> Vec<String> {
    match bin {
        Bin::Spam => return vec![SPAM.to_owned()],
        Bin::Trash => return vec![TRASH.to_owned()],
        Bin::AllMail => {}
    }
    let mut out = vec![ALL_MAIL.to_owned()];
    for l in labels {
        out.push(
            match l.as_str() {
                "\\Inbox" => "INBOX",
                "\\Sent" => SENT_MAIL,
                "\\Draft" => DRAFTS,
                "\\Starred" => STARRED,
                "\\Important" => IMPORTANT,
                user => user,
            }
            .to_owned(),
        );
    }
    out
}

/// The account's side table: which message each folder's UID is, and its labels.
#[derive(Debug, Default)]
pub struct GmailAccount {
    /// (folder, UID) → X-GM-MSGID.
    copies: BTreeMap<(String, u32), u64>,
    /// X-GM-MSGID → (labels, X-GM-THRID).
    messages: HashMap<u64, (Vec<String>, u64)>,
}

impl GmailAccount {
    /// The X-GM items of the message at `uid` in `folder`.
    fn items(&self, folder: &str, uid: u32) -> Option<String> {
        let msgid = self.copies.get(&(folder.to_owned(), uid))?;
        let (labels, thrid) = self.messages.get(msgid)?;
        let labels: Vec<String> = labels
            .iter()
            .map(|l| {
                if l.starts_with('\\') {
                    l.clone()
                } else {
                    format!("\"{}\"", l.replace('\\', "\\\\").replace('"', "\\\""))
                }
            })
            .collect();
        Some(format!(
            "X-GM-THRID {thrid} X-GM-MSGID {msgid} X-GM-LABELS ({})",
            labels.join(" ")
        ))
    }
}

/// How the relay misbehaves.
#[derive(Debug, Clone, Default)]
pub struct GmailLikeConfig {
    /// Answer every `n`th command after login (over all connections) `NO [THROTTLED]`.
    pub throttle_every: Option<u64>,
    /// At most this many throttled answers (0: no bound).
    pub max_throttled: u64,
    /// Answer the first `n` APPENDs `NO [OVERQUOTA]`.
    pub overquota_appends: u64,
    /// Announce no `X-GM-EXT-1` (an account or proxy that hides Google's extensions):
    /// no X-GM item tells a label, and a client must tell archived mail by its bytes.
    pub without_gm_ext: bool,
}

impl GmailLikeConfig {
    /// Gmail without `X-GM-EXT-1` in its capabilities.
    pub fn without_gm_ext() -> GmailLikeConfig {
        GmailLikeConfig {
            without_gm_ext: true,
            ..GmailLikeConfig::default()
        }
    }
}

/// `caps` without `X-GM-EXT-1` when the relay hides it.
fn announced(caps: &str, config: &GmailLikeConfig) -> String {
    if config.without_gm_ext {
        caps.replace(" X-GM-EXT-1", "")
    } else {
        caps.to_owned()
    }
}

/// What the relay did, for the tests' assertions.
#[derive(Debug, Default)]
pub struct GmailLikeStats {
    pub connections: AtomicU64,
    pub commands: AtomicU64,
    pub throttled: AtomicU64,
    pub overquota: AtomicU64,
    pub appends: AtomicU64,
    pub appends_to_all_mail: AtomicU64,
    /// Commands refused for what Gmail lacks (MULTIAPPEND, long LITERAL-).
    pub refused: AtomicU64,
    pub gm_fetches: AtomicU64,
}

/// A running relay; stops accepting when dropped.
pub struct GmailLike {
    addr: SocketAddr,
    upstream: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<GmailLikeStats>,
    account: Arc<Mutex<GmailAccount>>,
    next_msgid: AtomicU64,
}

impl GmailLike {
    /// Listens on 127.0.0.1 and relays every connection to `upstream` (a Dovecot's plain
    /// port, `LAYOUT=fs`).
    pub fn start(upstream: SocketAddr, config: GmailLikeConfig) -> io::Result<GmailLike> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(GmailLikeStats::default());
        let account = Arc::new(Mutex::new(GmailAccount::default()));
        let counter = Arc::new(AtomicU64::new(0));
        let appends = Arc::new(AtomicU64::new(0));
        let (stop2, stats2, account2) = (stop.clone(), stats.clone(), account.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                stats2.connections.fetch_add(1, Ordering::Relaxed);
                let shared = Shared {
                    stats: stats2.clone(),
                    account: account2.clone(),
                    counter: counter.clone(),
                    appends: appends.clone(),
                    config: config.clone(),
                };
                std::thread::spawn(move || {
                    let _ = relay(client, upstream, &shared);
                });
            }
        });
        Ok(GmailLike {
            addr,
            upstream,
            stop,
            stats,
            account,
            next_msgid: AtomicU64::new(1_278_455_344_230_334_865),
        })
    }

    /// Where clients connect (plain, no TLS).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &GmailLikeStats {
        &self.stats
    }

    /// Creates Gmail's system folders and `labels` on the Dovecot behind (through
    /// `client`, logged in there as the user).
    pub fn create_folders(client: &mut ImapClient, labels: &[&str]) -> Result<(), KitError> {
        for (name, _) in GMAIL_SYSTEM_FOLDERS {
            client.create(name)?;
        }
        for label in labels {
            client.create(label)?;
        }
        Ok(())
    }

    /// Stores `messages` on the Dovecot behind (through `client`, logged in there as the
    /// user): each into every folder it shows in, the side table told each copy's UID.
    /// Returns the X-GM-MSGID of each message, in order.
    pub fn seed(
        &self,
        client: &mut ImapClient,
        messages: &[GmailMessage],
    ) -> Result<Vec<u64>, KitError> {
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            let msgid = self.next_msgid.fetch_add(7919, Ordering::Relaxed);
            let mut flags = m.flags.clone();
            if m.labels.iter().any(|l| l == "\\Starred") && !flags.contains(&Flag::Flagged) {
                flags.push(Flag::Flagged);
            }
            let mut copies = Vec::new();
            for folder in folders_of(&m.labels, m.bin) {
                let uid = client
                    .append(&folder, &flags, Some(m.internal_date), &m.bytes)?
                    .ok_or_else(|| KitError::Command {
                        command: format!("APPEND to {folder:?} (seeding the Gmail-like account)"),
                        detail: "Dovecot sent no APPENDUID".into(),
                    })?
                    .uid;
                copies.push((folder, uid));
            }
            let mut account = self.account.lock().unwrap_or_else(|e| e.into_inner());
            for c in copies {
                account.copies.insert(c, msgid);
            }
            account
                .messages
                .insert(msgid, (m.labels.clone(), msgid ^ 0x55));
            ids.push(msgid);
        }
        Ok(ids)
    }

    /// Archives a message as Gmail's Archive button does: its `\Inbox` label goes, and
    /// with it its copy in INBOX (expunged on the Dovecot behind through `client`).
    pub fn archive(&self, client: &mut ImapClient, msgid: u64) -> Result<(), KitError> {
        let uid = {
            let mut account = self.account.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((labels, _)) = account.messages.get_mut(&msgid) {
                labels.retain(|l| l != "\\Inbox");
            }
            let uid = account
                .copies
                .iter()
                .find(|((f, _), id)| f == "INBOX" && **id == msgid)
                .map(|((_, u), _)| *u);
            if let Some(u) = uid {
                account.copies.remove(&("INBOX".to_owned(), u));
            }
            uid
        };
        let Some(uid) = uid else {
            return Ok(());
        };
        client.select("INBOX")?;
        let set = uid.to_string();
        client.run(
            "UID STORE",
            &[
                Arg::Raw("UID STORE"),
                Arg::Raw(&set),
                Arg::Raw("+FLAGS.SILENT (\\Deleted)"),
            ],
        )?;
        client.run("UID EXPUNGE", &[Arg::Raw("UID EXPUNGE"), Arg::Raw(&set)])?;
        Ok(())
    }

    /// The Dovecot behind.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }
}

impl Drop for GmailLike {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

struct Shared {
    stats: Arc<GmailLikeStats>,
    account: Arc<Mutex<GmailAccount>>,
    /// Commands after login, over all connections (for `throttle_every`).
    counter: Arc<AtomicU64>,
    appends: Arc<AtomicU64>,
    config: GmailLikeConfig,
}

/// What the client side tells the server side of one connection.
#[derive(Default)]
struct Conversation {
    /// The folder SELECTed or EXAMINEd last.
    selected: String,
    /// Tags of FETCH commands that asked for X-GM items.
    gm_tags: Vec<String>,
    /// Tags of LOGIN/AUTHENTICATE commands (their OK gets Gmail's capabilities).
    login_tags: Vec<String>,
    authenticated: bool,
}

fn relay(client: TcpStream, upstream: SocketAddr, shared: &Shared) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    let client_out = Arc::new(Mutex::new(client.try_clone()?));
    let mut server_in = BufReader::new(server.try_clone()?);
    let mut server_out = server.try_clone()?;
    let talk = Arc::new(Mutex::new(Conversation::default()));
    let (c2, s2, cl2, talk2, account, config) = (
        client_out.clone(),
        server.try_clone()?,
        client.try_clone()?,
        talk.clone(),
        shared.account.clone(),
        shared.config.clone(),
    );
    std::thread::spawn(move || {
        let mut first = true;
        while let Ok(Some(resp)) = read_response(&mut server_in) {
            let out = rewrite(resp, first, &talk2, &account, &config);
            first = false;
            if lock(&c2).write_all(&out).is_err() {
                break;
            }
        }
        let _ = cl2.shutdown(Shutdown::Both);
        let _ = s2.shutdown(Shutdown::Both);
    });
    let mut reader = BufReader::new(client.try_clone()?);
    while let Some(cmd) = read_command(&mut reader, &client_out)? {
        let mut words = cmd.text.split_ascii_whitespace();
        let tag = words.next().unwrap_or("*").to_owned();
        let mut verb = words.next().unwrap_or("").to_ascii_uppercase();
        if verb == "UID" {
            verb = words.next().unwrap_or("").to_ascii_uppercase();
        }
        let answer = judge(&cmd, &verb, &talk, shared);
        if let Some(text) = answer {
            lock(&client_out).write_all(format!("{tag} {text}\r\n").as_bytes())?;
            continue;
        }
        let mut forward = cmd.forward;
        {
            let mut t = talk.lock().unwrap_or_else(|e| e.into_inner());
            match verb.as_str() {
                "LOGIN" | "AUTHENTICATE" => {
                    t.login_tags.push(tag.clone());
                    t.authenticated = true;
                }
                "SELECT" | "EXAMINE" => t.selected = mailbox_argument(&cmd.text),
                "FETCH" if cmd.text.to_ascii_uppercase().contains("X-GM-") => {
                    shared.stats.gm_fetches.fetch_add(1, Ordering::Relaxed);
                    t.gm_tags.push(tag.clone());
                    forward = strip_gm_items(&cmd.text).into_bytes();
                }
                "APPEND" => {
                    shared.stats.appends.fetch_add(1, Ordering::Relaxed);
                    if mailbox_argument(&cmd.text).eq_ignore_ascii_case(ALL_MAIL) {
                        shared
                            .stats
                            .appends_to_all_mail
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {}
            }
        }
        server_out.write_all(&forward)?;
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    Ok(())
}

/// Gmail's own answer to a command, if it does not reach Dovecot.
fn judge(
    cmd: &super::exchange_like::ClientCommand,
    verb: &str,
    talk: &Mutex<Conversation>,
    shared: &Shared,
) -> Option<String> {
    let refuse = |why: &str| {
        shared.stats.refused.fetch_add(1, Ordering::Relaxed);
        Some(format!("BAD {why}"))
    };
    let literal_sizes = &cmd.literal_sizes;
    if verb == "APPEND" && literal_sizes.len() > 1 {
        return refuse("Could not parse command");
    }
    // LITERAL-: the client may not send a literal over 4096 bytes without waiting.
    if cmd.nonsync_sizes.iter().any(|&n| n > LITERAL_MINUS_MAX) {
        return refuse("[TOOBIG] Literal too big for LITERAL-");
    }
    // Without X-GM-EXT-1 Gmail knows no X-GM item.
    if shared.config.without_gm_ext
        && verb == "FETCH"
        && cmd.text.to_ascii_uppercase().contains("X-GM-")
    {
        return refuse("Could not parse command");
    }
    let authenticated = talk.lock().unwrap_or_else(|e| e.into_inner()).authenticated;
    if !authenticated || matches!(verb, "LOGOUT" | "CAPABILITY" | "NOOP" | "IDLE" | "DONE") {
        return None;
    }
    let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
    shared.stats.commands.fetch_add(1, Ordering::Relaxed);
    if shared
        .config
        .throttle_every
        .is_some_and(|every| every > 0 && n.is_multiple_of(every))
        && (shared.config.max_throttled == 0
            || shared.stats.throttled.load(Ordering::Relaxed) < shared.config.max_throttled)
    {
        shared.stats.throttled.fetch_add(1, Ordering::Relaxed);
        return Some(
            "NO [THROTTLED] Account exceeded command or bandwidth limits. (Failure)".into(),
        );
    }
    if verb == "APPEND" {
        if literal_sizes.iter().any(|&s| s > GMAIL_APPEND_LIMIT) {
            return Some("NO [TOOBIG] Message too large. (Failure)".into());
        }
        let k = shared.appends.fetch_add(1, Ordering::Relaxed);
        if k < shared.config.overquota_appends {
            shared.stats.overquota.fetch_add(1, Ordering::Relaxed);
            return Some(
                "NO [OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)".into(),
            );
        }
    }
    None
}

/// The mailbox named right after the verb (quoted or an atom), as sent.
fn mailbox_argument(text: &str) -> String {
    let mut rest = text;
    // Skip tag, [UID], verb.
    for _ in 0..2 {
        rest = rest.trim_start();
        rest = rest.split_once(' ').map_or("", |(_, r)| r);
    }
    let rest = rest.trim_start();
    if let Some(q) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                '"' => break,
                c => out.push(c),
            }
        }
        out
    } else {
        rest.split_ascii_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches(['\r', '\n'])
            .to_owned()
    }
}

/// The FETCH command without its X-GM items (Dovecot knows none), UID kept.
fn strip_gm_items(text: &str) -> String {
    let mut out = text.to_owned();
    for item in ["X-GM-MSGID", "X-GM-THRID", "X-GM-LABELS"] {
        loop {
            let upper = out.to_ascii_uppercase();
            let Some(at) = upper.find(item) else { break };
            let end = at + item.len();
            let (start, end) = if out[end..].starts_with(' ') {
                (at, end + 1)
            } else if at > 0 && out[..at].ends_with(' ') {
                (at - 1, end)
            } else {
                (at, end)
            };
            out.replace_range(start..end, "");
        }
    }
    let upper = out.to_ascii_uppercase();
    if !upper.contains("UID")
        && let Some(open) = out.find('(')
    {
        out.insert_str(open + 1, "UID ");
    }
    out.replace("()", "(UID)")
}

/// Gmail's face on one Dovecot response.
fn rewrite(
    parts: super::exchange_like::Response,
    greeting: bool,
    talk: &Mutex<Conversation>,
    account: &Mutex<GmailAccount>,
    config: &GmailLikeConfig,
) -> Vec<u8> {
    if greeting {
        return format!("{GMAIL_GREETING}\r\n").into_bytes();
    }
    let mut out = Vec::new();
    for (i, (line, literal)) in parts.into_iter().enumerate() {
        let text = String::from_utf8_lossy(&line).into_owned();
        let line = if i > 0 {
            line
        } else if text.starts_with("* CAPABILITY ") {
            let authenticated = talk.lock().unwrap_or_else(|e| e.into_inner()).authenticated;
            let caps = if authenticated {
                GMAIL_CAPABILITIES
            } else {
                GMAIL_CAPABILITIES_BEFORE_LOGIN
            };
            format!("* CAPABILITY {}\r\n", announced(caps, config)).into_bytes()
        } else if text.starts_with("* ID ") {
            b"* ID (\"name\" \"GImap\" \"vendor\" \"Google, Inc.\" \"support-url\" \"https://support.google.com/mail\")\r\n".to_vec()
        } else if text.starts_with("* LIST (") || text.starts_with("* LSUB (") {
            gmail_attributes(&text).into_bytes()
        } else if text.starts_with("* ") && text.contains(" FETCH (") {
            with_gm_items(&text, talk, account).into_bytes()
        } else if !text.starts_with('*') && !text.starts_with('+') {
            // A tagged completion: Gmail's capabilities after login, X-GM requests done.
            let tag = text.split(' ').next().unwrap_or("").to_owned();
            let mut t = talk.lock().unwrap_or_else(|e| e.into_inner());
            t.gm_tags.retain(|g| *g != tag);
            let login = t.login_tags.contains(&tag);
            t.login_tags.retain(|g| *g != tag);
            drop(t);
            match text.find("[CAPABILITY ") {
                Some(start) => match text[start..].find(']') {
                    Some(end) => {
                        let replaced = if login {
                            format!("[CAPABILITY {}]", announced(GMAIL_CAPABILITIES, config))
                        } else {
                            String::new()
                        };
                        format!("{}{replaced}{}", &text[..start], &text[start + end + 1..])
                            .into_bytes()
                    }
                    None => line,
                },
                None => line,
            }
        } else {
            line
        };
        out.extend_from_slice(&line);
        out.extend_from_slice(&literal);
    }
    out
}

/// A LIST line with Gmail's attributes: `[Gmail]` is `\Noselect`, system folders carry
/// their use, Dovecot's own special-use attributes go.
fn gmail_attributes(text: &str) -> String {
    let (Some(open), Some(close)) = (text.find('('), text.find(')')) else {
        return text.to_owned();
    };
    // `) "/" NAME`: the name follows the delimiter (always `"/"` here, NIL for none).
    let after = text[close + 1..].trim_start();
    let after = after
        .strip_prefix("\"/\"")
        .or_else(|| after.strip_prefix("NIL"))
        .unwrap_or(after);
    let name = after.trim().trim_matches('"').to_owned();
    let mut attrs: Vec<String> = text[open + 1..close]
        .split_ascii_whitespace()
        .filter(|a| {
            !matches!(
                a.to_ascii_lowercase().as_str(),
                "\\sent"
                    | "\\trash"
                    | "\\junk"
                    | "\\drafts"
                    | "\\archive"
                    | "\\all"
                    | "\\flagged"
                    | "\\important"
            )
        })
        .map(str::to_owned)
        .collect();
    if name == "[Gmail]" {
        attrs.retain(|a| {
            !a.eq_ignore_ascii_case("\\Noselect") && !a.eq_ignore_ascii_case("\\NonExistent")
        });
        attrs.insert(0, "\\Noselect".to_owned());
    }
    if let Some((_, use_)) = GMAIL_SYSTEM_FOLDERS.iter().find(|(n, _)| *n == name) {
        attrs.push((*use_).to_owned());
    }
    format!("{}({}{}", &text[..open], attrs.join(" "), &text[close..])
}

/// A FETCH line with the X-GM items of its message when the command asked for them.
fn with_gm_items(text: &str, talk: &Mutex<Conversation>, account: &Mutex<GmailAccount>) -> String {
    let t = talk.lock().unwrap_or_else(|e| e.into_inner());
    if t.gm_tags.is_empty() {
        return text.to_owned();
    }
    let upper = text.to_ascii_uppercase();
    let Some(uid) = upper
        .find("UID ")
        .and_then(|at| {
            text[at + 4..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .map(str::to_owned)
        })
        .and_then(|d| d.parse::<u32>().ok())
    else {
        return text.to_owned();
    };
    let folder = t.selected.clone();
    drop(t);
    let items = account
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .items(&folder, uid)
        // A message the kit did not seed (appended through the relay): its folder's
        // label, an id of its own.
        .unwrap_or_else(|| {
            let label = match folder.as_str() {
                "INBOX" => "\\Inbox".to_owned(),
                ALL_MAIL => String::new(),
                SENT_MAIL => "\\Sent".to_owned(),
                other => format!("\"{other}\""),
            };
            let id = 0x7000_0000_0000_0000u64 + u64::from(uid);
            format!("X-GM-THRID {id} X-GM-MSGID {id} X-GM-LABELS ({label})")
        });
    match text.find(" FETCH (") {
        Some(at) => {
            let insert = at + " FETCH (".len();
            format!("{}{items} {}", &text[..insert], &text[insert..])
        }
        None => text.to_owned(),
    }
}
