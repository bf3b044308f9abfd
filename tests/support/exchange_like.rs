//! An Exchange-like server: a relay in front of one of the kit's Dovecots that behaves
//! as Exchange Online does in public transcripts (imapsync's and imapflow's Office 365
//! logs, MailKit issues):
//!
//! - the greeting `* OK The Microsoft Exchange IMAP4 service is ready. [...]` and exactly
//!   Exchange's capabilities; what Dovecot offers beyond them (MULTIAPPEND, CONDSTORE,
//!   SPECIAL-USE, LIST-EXTENDED, LIST-STATUS, ESEARCH, ENABLE, ...) is hidden, and a
//!   client that uses it anyway gets `BAD Command Argument Error. 11`;
//! - `ID` answers as `Microsoft.Exchange.Imap4.Imap4Server`;
//! - LIST shows no special-use attributes (the folders are `Sent Items`, `Deleted
//!   Items`, `Junk Email`, `Drafts`, `Archive` by name only);
//! - throttling: a seeded fraction of the commands after login is answered `NO Request
//!   is throttled. Suggested Backoff Time: N milliseconds` and not executed;
//! - every N commands after login the connection drops as Exchange's do: `BAD User is
//!   authenticated but not connected.`, `* BYE Connection closed. 14`, close;
//! - an APPEND over the size limit (35 MB, not announced) is refused with NO (the words
//!   are ours: no public transcript we found shows Exchange's own for this case).
//!
//! Client commands are parsed (tags, synchronizing literals, which the relay itself
//! acknowledges with `+`, and LITERAL+ `{n+}`), so that a refused command's literals are
//! consumed and never reach Dovecot. Blocking threads, one pair per connection.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::corpus::SplitMix64;

/// Exchange Online's capabilities, before and after login.
pub const EXCHANGE_CAPABILITIES: &str = "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+";

/// Exchange Online's greeting (the bracketed part is a base64 server name).
pub const EXCHANGE_GREETING: &str =
    "* OK The Microsoft Exchange IMAP4 service is ready. [TQBOADIAUABSADAAMQBDAEEAMAAwADAANwA=]";

/// Exchange Online's default maximum message size.
pub const EXCHANGE_SIZE_LIMIT: u64 = 35 * 1024 * 1024;

/// The special-use folders of an Exchange mailbox, by name only.
pub const EXCHANGE_FOLDERS: [&str; 5] = [
    "Sent Items",
    "Deleted Items",
    "Junk Email",
    "Drafts",
    "Archive",
];

/// How the relay misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeLikeConfig {
    /// Commands after login answered "Request is throttled", per thousand.
    pub throttle_per_mille: u32,
    /// The back-off the throttling answer suggests.
    pub backoff_ms: u64,
    /// Drop the connection at every `n`th command after login.
    pub drop_every: Option<u32>,
    /// APPENDs of larger messages are refused.
    pub size_limit: u64,
    /// Seed of the throttling choices (mixed with the connection's ordinal).
    pub seed: u64,
    /// Keep Dovecot's face: its greeting, capabilities, MULTIAPPEND and extensions (a
    /// control for benchmarks: the relay's own cost without Exchange's missing
    /// extensions; or Exchange's drops and throttling in front of a plain Dovecot).
    pub dovecot_capabilities: bool,
    /// Every connection after the first waits this long before the server's greeting
    /// reaches it: reconnects come late, e.g. after an OAuth token has expired.
    pub delay_reconnects: Option<std::time::Duration>,
    /// Drop the connection (as `drop_every` does) at the first command with this verb
    /// after login, once for the whole relay: e.g. `CREATE`, in a new mailbox's folder
    /// plan.
    pub drop_once_on: Option<&'static str>,
}

impl ExchangeLikeConfig {
    /// Exchange's face only: no throttling, no drops (MULTIAPPEND etc. still hidden).
    pub fn polite() -> Self {
        ExchangeLikeConfig {
            throttle_per_mille: 0,
            backoff_ms: 0,
            drop_every: None,
            size_limit: EXCHANGE_SIZE_LIMIT,
            seed: 13,
            dovecot_capabilities: false,
            delay_reconnects: None,
            drop_once_on: None,
        }
    }
}

/// What the relay did, for the tests' assertions.
#[derive(Debug, Default)]
pub struct ExchangeLikeStats {
    pub connections: AtomicU64,
    pub throttled: AtomicU64,
    pub dropped: AtomicU64,
    pub refused: AtomicU64,
    pub too_large: AtomicU64,
    /// Set once `drop_once_on` has dropped its connection.
    pub dropped_once: AtomicBool,
}

/// A running relay; stops accepting when dropped.
pub struct ExchangeLike {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<ExchangeLikeStats>,
}

impl ExchangeLike {
    /// Listens on 127.0.0.1 and relays every connection to `upstream` (a Dovecot's plain
    /// port).
    pub fn start(upstream: SocketAddr, config: ExchangeLikeConfig) -> io::Result<ExchangeLike> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ExchangeLikeStats::default());
        let (stop2, stats2) = (stop.clone(), stats.clone());
        std::thread::spawn(move || {
            let mut ordinal = 0u64;
            for client in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                ordinal += 1;
                stats2.connections.fetch_add(1, Ordering::Relaxed);
                let stats = stats2.clone();
                let seed = config.seed ^ ordinal.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let delay = config.delay_reconnects.filter(|_| ordinal > 1);
                std::thread::spawn(move || {
                    if let Some(delay) = delay {
                        std::thread::sleep(delay);
                    }
                    let _ = relay(client, upstream, config, seed, &stats);
                });
            }
        });
        Ok(ExchangeLike { addr, stop, stats })
    }

    /// Where clients connect (plain, no TLS).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &ExchangeLikeStats {
        &self.stats
    }
}

impl Drop for ExchangeLike {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One command as the client sent it: the text of its lines (literal contents left out)
/// and the whole bytes to forward, with synchronizing literals made non-synchronizing.
pub(crate) struct ClientCommand {
    pub(crate) text: String,
    pub(crate) forward: Vec<u8>,
    pub(crate) literal_sizes: Vec<u64>,
    /// Sizes of the literals the client sent without waiting (`{n+}`).
    pub(crate) nonsync_sizes: Vec<u64>,
}

/// Reads one line ending in CRLF, with any literals it announces.
pub(crate) fn read_command(
    reader: &mut impl BufRead,
    client_out: &Mutex<TcpStream>,
) -> io::Result<Option<ClientCommand>> {
    let mut cmd = ClientCommand {
        text: String::new(),
        forward: Vec::new(),
        literal_sizes: Vec::new(),
        nonsync_sizes: Vec::new(),
    };
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        let Some((size, plus, open)) = literal_at_end(&line) else {
            cmd.text.push_str(&String::from_utf8_lossy(&line));
            cmd.forward.extend_from_slice(&line);
            return Ok(Some(cmd));
        };
        cmd.text.push_str(&String::from_utf8_lossy(&line[..open]));
        cmd.forward.extend_from_slice(&line[..open]);
        cmd.forward
            .extend_from_slice(format!("{{{size}+}}\r\n").as_bytes());
        if plus {
            cmd.nonsync_sizes.push(size);
        } else {
            lock(client_out).write_all(b"+ Ready for additional command text.\r\n")?;
        }
        let mut body = vec![0u8; size as usize];
        reader.read_exact(&mut body)?;
        cmd.forward.extend_from_slice(&body);
        cmd.literal_sizes.push(size);
    }
}

/// `{n}` or `{n+}` at the end of a line: size, LITERAL+, where the brace opens.
pub(crate) fn literal_at_end(line: &[u8]) -> Option<(u64, bool, usize)> {
    let body = line.strip_suffix(b"\r\n")?.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let inner = &body[open + 1..];
    let (digits, plus) = match inner.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (inner, false),
    };
    let size = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((size, plus, open))
}

pub(crate) fn lock(m: &Mutex<TcpStream>) -> std::sync::MutexGuard<'_, TcpStream> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the relay does with one client command.
enum Verdict {
    Forward,
    Answer(String),
    Drop,
}

/// Extensions Exchange does not have; a command naming one is refused.
const UNSUPPORTED_WORDS: [&str; 9] = [
    "CONDSTORE",
    "CHANGEDSINCE",
    "MODSEQ",
    "RETURN (",
    "APPENDLIMIT",
    "SPECIAL-USE",
    "QRESYNC",
    "SAVEDATE",
    "X-GM-",
];
const UNSUPPORTED_VERBS: [&str; 10] = [
    "ENABLE",
    "COMPRESS",
    "GETQUOTA",
    "GETQUOTAROOT",
    "SETQUOTA",
    "GETMETADATA",
    "SETMETADATA",
    "NOTIFY",
    "SORT",
    "THREAD",
];

fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    config: ExchangeLikeConfig,
    seed: u64,
    stats: &ExchangeLikeStats,
) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    let client_out = Arc::new(Mutex::new(client.try_clone()?));
    let mut server_in = BufReader::new(server.try_clone()?);
    let mut server_out = server.try_clone()?;
    let (c2, s2, cl2) = (client_out.clone(), server.try_clone()?, client.try_clone()?);
    // Server to client: rewrite what shows Dovecot.
    std::thread::spawn(move || {
        let mut first = true;
        while let Ok(Some(resp)) = read_response(&mut server_in) {
            let out = if config.dovecot_capabilities {
                resp.into_iter()
                    .flat_map(|(l, b)| [l, b])
                    .flatten()
                    .collect()
            } else {
                rewrite(resp, first)
            };
            first = false;
            if lock(&c2).write_all(&out).is_err() {
                break;
            }
        }
        let _ = cl2.shutdown(Shutdown::Both);
        let _ = s2.shutdown(Shutdown::Both);
    });
    let mut reader = BufReader::new(client.try_clone()?);
    let mut rng = SplitMix64::new(seed);
    let mut authenticated = false;
    let mut count = 0u32;
    while let Some(cmd) = read_command(&mut reader, &client_out)? {
        let mut words = cmd.text.split_ascii_whitespace();
        let tag = words.next().unwrap_or("*").to_owned();
        let mut verb = words.next().unwrap_or("").to_ascii_uppercase();
        if verb == "UID" {
            verb = words.next().unwrap_or("").to_ascii_uppercase();
        }
        let verdict = judge(
            &cmd,
            &tag,
            &verb,
            authenticated,
            &mut count,
            &mut rng,
            &config,
        );
        let verdict = match config.drop_once_on {
            Some(once)
                if authenticated
                    && verb.eq_ignore_ascii_case(once)
                    && !stats.dropped_once.swap(true, Ordering::Relaxed) =>
            {
                Verdict::Drop
            }
            _ => verdict,
        };
        if verb == "LOGIN" || verb == "AUTHENTICATE" {
            authenticated = true;
        }
        match verdict {
            Verdict::Forward => server_out.write_all(&cmd.forward)?,
            Verdict::Answer(text) => {
                let counter = if text.contains("throttled") {
                    &stats.throttled
                } else if text.starts_with("NO") {
                    &stats.too_large
                } else {
                    &stats.refused
                };
                counter.fetch_add(1, Ordering::Relaxed);
                lock(&client_out).write_all(format!("{tag} {text}\r\n").as_bytes())?;
            }
            Verdict::Drop => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                let _ = lock(&client_out).write_all(
                    format!(
                        "{tag} BAD User is authenticated but not connected.\r\n* BYE Connection closed. 14\r\n"
                    )
                    .as_bytes(),
                );
                break;
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    Ok(())
}

fn judge(
    cmd: &ClientCommand,
    tag: &str,
    verb: &str,
    authenticated: bool,
    count: &mut u32,
    rng: &mut SplitMix64,
    config: &ExchangeLikeConfig,
) -> Verdict {
    // IDLE's DONE is no command.
    if tag.eq_ignore_ascii_case("DONE") {
        return Verdict::Forward;
    }
    let exchange = !config.dovecot_capabilities;
    let upper = cmd.text.to_ascii_uppercase();
    if exchange
        && (UNSUPPORTED_VERBS.contains(&verb)
            || UNSUPPORTED_WORDS.iter().any(|w| upper.contains(w)))
    {
        return Verdict::Answer("BAD Command Argument Error. 11".to_owned());
    }
    // MULTIAPPEND: more than one message in one APPEND.
    if exchange && verb == "APPEND" && cmd.literal_sizes.len() > 1 {
        return Verdict::Answer("BAD Command Argument Error. 11".to_owned());
    }
    if !authenticated || matches!(verb, "LOGOUT" | "CAPABILITY" | "NOOP" | "IDLE") {
        return Verdict::Forward;
    }
    *count += 1;
    if config
        .drop_every
        .is_some_and(|n| n > 0 && (*count).is_multiple_of(n))
    {
        return Verdict::Drop;
    }
    if config.throttle_per_mille > 0 && rng.next_u64() % 1000 < u64::from(config.throttle_per_mille)
    {
        return Verdict::Answer(format!(
            "NO Request is throttled. Suggested Backoff Time: {} milliseconds",
            config.backoff_ms
        ));
    }
    if exchange && verb == "APPEND" && cmd.literal_sizes.iter().any(|&s| s > config.size_limit) {
        return Verdict::Answer(
            "NO [LIMIT] Message size exceeds the maximum allowed size.".to_owned(),
        );
    }
    Verdict::Forward
}

/// One server response as lines, each with the literal it announces (empty if none).
pub(crate) type Response = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads one server response.
pub(crate) fn read_response(reader: &mut impl BufRead) -> io::Result<Option<Response>> {
    let mut parts = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        match literal_at_end(&line) {
            Some((size, _, _)) => {
                let mut body = vec![0u8; size as usize];
                reader.read_exact(&mut body)?;
                parts.push((line, body));
            }
            None => {
                parts.push((line, Vec::new()));
                return Ok(Some(parts));
            }
        }
    }
}

/// Exchange's face on one Dovecot response.
fn rewrite(parts: Response, greeting: bool) -> Vec<u8> {
    if greeting {
        return format!("{EXCHANGE_GREETING}\r\n").into_bytes();
    }
    let mut out = Vec::new();
    for (i, (line, literal)) in parts.into_iter().enumerate() {
        let text = String::from_utf8_lossy(&line).into_owned();
        let line = if i > 0 {
            line
        } else if text.starts_with("* CAPABILITY ") {
            format!("* CAPABILITY {EXCHANGE_CAPABILITIES}\r\n").into_bytes()
        } else if text.starts_with("* ID ") {
            b"* ID (\"name\" \"Microsoft.Exchange.Imap4.Imap4Server\" \"version\" \"15.20\")\r\n"
                .to_vec()
        } else if text.starts_with("* OK [HIGHESTMODSEQ") || text.starts_with("* OK [NOMODSEQ") {
            continue;
        } else if text.starts_with("* LIST (") || text.starts_with("* LSUB (") {
            strip_special_use(&text).into_bytes()
        } else if let Some(start) = text.find("[CAPABILITY ") {
            // Exchange puts no capabilities in its LOGIN answer.
            match text[start..].find("] ") {
                Some(end) => format!("{}{}", &text[..start], &text[start + end + 2..]).into_bytes(),
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

fn strip_special_use(text: &str) -> String {
    let Some(close) = text.find(')') else {
        return text.to_owned();
    };
    let open = text.find('(').unwrap_or(0);
    let attrs: Vec<&str> = text[open + 1..close]
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
        .collect();
    format!("{}({}{}", &text[..open], attrs.join(" "), &text[close..])
}
