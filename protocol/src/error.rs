//! The crate's one public error type.
//!
//! Variants separate who is at fault, because each has a different remedy: the peer sent
//! something that is not IMAP (`Malformed`, `LimitExceeded`, `UnexpectedEof`), the caller
//! asked to send something that cannot be put on the wire (`InvalidInput`, usually bad user
//! input such as a mailbox name with a NUL byte), or the caller used the API out of order
//! (`Misuse`, a bug of ours). nom's error types never leave the crate.

use std::fmt;

/// Everything that can go wrong while decoding, parsing or encoding IMAP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ends before the item is complete. Parse functions return this only when
    /// handed a partial frame; the frame decoders never hand out partial frames.
    #[error("the IMAP data ends before the {what} is complete; read more bytes before parsing")]
    Incomplete {
        /// What was being parsed.
        what: &'static str,
    },
    /// The peer sent bytes that are not valid IMAP here, even allowing for known quirks.
    #[error(
        "the IMAP peer sent a malformed {what} at byte {offset} ({excerpt}); \
         the peer does not speak valid IMAP here: report it together with this excerpt"
    )]
    Malformed {
        /// What was being parsed, e.g. "FETCH response".
        what: &'static str,
        /// Offset of the offending byte within the frame.
        offset: usize,
        /// The offending bytes, escaped and truncated.
        excerpt: Excerpt,
    },
    /// The peer announced or sent more than this connection may buffer, or more than the
    /// protocol allows; nothing was allocated for it.
    #[error(
        "the IMAP peer sent {what} of {actual} bytes, over the limit of {limit} bytes; \
         raise the limit in the decoder configuration or skip the item"
    )]
    LimitExceeded {
        /// What exceeded the limit, e.g. "a response line".
        what: &'static str,
        /// The configured or protocol limit.
        limit: u64,
        /// What the peer sent or announced (a lower bound when it is still arriving).
        actual: u64,
    },
    /// The connection ended in the middle of a frame.
    #[error("the IMAP connection closed in the middle of {what}; reconnect and retry the command")]
    UnexpectedEof {
        /// What was being received.
        what: &'static str,
    },
    /// A value given to an encoder cannot be represented on the wire.
    #[error("cannot send {what} over IMAP: {reason}")]
    InvalidInput {
        /// Which argument, e.g. "a flag".
        what: &'static str,
        /// Why, as a short clause.
        reason: &'static str,
    },
    /// The API was called out of order (a bug in the calling code, not the peer's fault).
    #[error("imapmirror-protocol was used out of order: {0}; this is a bug in imapmirror")]
    Misuse(&'static str),
    /// Reading from the transport failed (only produced through the tokio-util `Decoder`
    /// plumbing, which requires `From<std::io::Error>`).
    #[error("I/O error on the IMAP connection: {0}")]
    Io(#[from] std::io::Error),

    // The variants below come from the client session (`crate::client`); each names the
    // server, because a migration talks to two of them at once.
    /// The server answered a command with NO or BAD.
    #[error(
        "the IMAP server {server} refused {command} with {status}{}: {text:?}; \
         check the command's arguments and the account's rights on that server",
        code.as_ref().map(|c| format!(" [{c}]")).unwrap_or_default()
    )]
    Refused {
        /// `host:port` of the server.
        server: String,
        /// The command and its main argument, e.g. `SELECT "Sent"` (never a secret).
        command: String,
        /// `NO` or `BAD`.
        status: crate::types::StatusKind,
        /// The response code, if the server gave one (boxed to keep `Error` small).
        code: Option<Box<crate::client::ResponseCode>>,
        /// The server's text.
        text: String,
    },
    /// The server asks the client to slow down or come back later (`[THROTTLED]`,
    /// `[UNAVAILABLE]`, "Suggested Backoff Time", a BYE for too many connections).
    #[error(
        "the IMAP server {server} asked to back off for {} s during {command} ({text:?}); \
         wait that long, then retry with fewer connections",
        delay.as_secs_f64()
    )]
    Backoff {
        /// `host:port` of the server.
        server: String,
        /// The command that was refused, or `connection` for a BYE.
        command: String,
        /// How long to wait: the server's suggestion, or the configured default.
        delay: std::time::Duration,
        /// The server's text.
        text: String,
    },
    /// The server closed the session with an untagged BYE.
    #[error("the IMAP server {server} ended the session with BYE ({text:?}); reconnect and retry")]
    Bye {
        /// `host:port` of the server.
        server: String,
        /// The server's text.
        text: String,
    },
    /// The connection ended without a BYE.
    #[error("the IMAP server {server} dropped the connection while {during}; reconnect and retry")]
    ConnectionClosed {
        /// `host:port` of the server.
        server: String,
        /// What the client was doing.
        during: &'static str,
    },
    /// The server sent nothing for longer than the configured response timeout.
    #[error(
        "the IMAP server {server} sent nothing for {} s while {during}; \
         check that the server is up, or raise the response timeout",
        waited.as_secs_f64()
    )]
    Timeout {
        /// `host:port` of the server.
        server: String,
        /// What the client was waiting for.
        during: &'static str,
        /// How long it waited without progress.
        waited: std::time::Duration,
    },
    /// Reading from or writing to the server's socket failed.
    #[error(
        "network error with the IMAP server {server} while {during}: {source}; check the address and the network"
    )]
    Network {
        /// `host:port` of the server.
        server: String,
        /// What the client was doing.
        during: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed or TLS could not be set up.
    #[error(
        "TLS with the IMAP server {server} failed: {reason}; check the server's certificate \
         and name, give its CA with --ca-file, or pin the server's own certificate with --pin-cert"
    )]
    Tls {
        /// `host:port` of the server.
        server: String,
        /// Why, from rustls.
        reason: String,
    },
    /// The server's certificate is one our trust settings can never accept as they are:
    /// not the pinned one, or a CA certificate offered as the server's own. The reason
    /// says what to do.
    #[error("TLS with the IMAP server {server} failed: {reason}")]
    CertificateRefused {
        /// `host:port` of the server.
        server: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The server lacks a capability the requested operation needs.
    #[error(
        "the IMAP server {server} does not offer {capability}, which {needed_for} needs; choose another method or security mode"
    )]
    MissingCapability {
        /// `host:port` of the server.
        server: String,
        /// The capability, e.g. `STARTTLS` or `AUTH=PLAIN`.
        capability: &'static str,
        /// What needed it, e.g. "the starttls security mode".
        needed_for: &'static str,
    },
    /// The server sent well-formed IMAP that breaks the protocol's rules here (an unknown
    /// tag, a continuation nobody asked for, bytes after STARTTLS's OK).
    #[error(
        "the IMAP server {server} broke the protocol: {what} ({excerpt}); report it with this excerpt"
    )]
    PeerViolation {
        /// `host:port` of the server.
        server: String,
        /// What was wrong.
        what: &'static str,
        /// The offending bytes, escaped and truncated.
        excerpt: Excerpt,
    },
    /// A CA file given by the user cannot be used.
    #[error("cannot use the CA file {path}: {reason}; give a readable PEM file of CA certificates", path = path.display())]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// A certificate to pin (a PEM file or `sha256:HEX`) cannot be used.
    #[error(
        "cannot pin the certificate {given}: {reason}; give the server's own certificate as a PEM file, or sha256: and the 64 hex digits of its SHA-256"
    )]
    CertificatePin {
        /// What the user gave (a path or the digest text).
        given: String,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// True when the peer is at fault (garbage, over a limit, hung up mid-frame).
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            Error::Malformed { .. }
                | Error::LimitExceeded { .. }
                | Error::UnexpectedEof { .. }
                | Error::PeerViolation { .. }
                | Error::ConnectionClosed { .. }
        )
    }

    /// True when the caller supplied a value that cannot be encoded (usually user input).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidInput { .. } | Error::CaFile { .. } | Error::CertificatePin { .. }
        )
    }

    pub(crate) fn malformed(what: &'static str, frame: &[u8], at: &[u8]) -> Self {
        let offset = offset_in(frame, at);
        Error::Malformed {
            what,
            offset,
            excerpt: Excerpt::new(frame.get(offset..).unwrap_or_default()),
        }
    }
}

impl Error {
    /// The response code of a refusal (`TRYCREATE`, `OVERQUOTA`, `TOOBIG`, ...).
    pub fn refusal_code(&self) -> Option<&crate::client::ResponseCode> {
        match self {
            Error::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// How long to wait before retrying, when the server asked for a pause.
    pub fn backoff_delay(&self) -> Option<std::time::Duration> {
        match self {
            Error::Backoff { delay, .. } => Some(*delay),
            _ => None,
        }
    }

    /// True for failures that a new connection, later, may not meet again: time-outs,
    /// dropped connections, BYE, network errors and back-off requests.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::ConnectionClosed { .. }
                | Error::Bye { .. }
                | Error::Network { .. }
                | Error::Backoff { .. }
        )
    }
}

/// Offset of `at` (a suffix slice of `frame`) within `frame`, computed from lengths so that
/// no pointer arithmetic is needed.
pub(crate) fn offset_in(frame: &[u8], at: &[u8]) -> usize {
    frame.len().saturating_sub(at.len())
}

/// Up to [`Excerpt::MAX`] bytes of peer input, escaped for display in one log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Excerpt(String);

impl Excerpt {
    /// How many input bytes an excerpt shows at most.
    pub const MAX: usize = 48;

    /// Escapes the first [`Excerpt::MAX`] bytes of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let shown = &bytes[..bytes.len().min(Self::MAX)];
        let mut s = String::with_capacity(shown.len() + 8);
        s.push('"');
        for &b in shown {
            s.extend(std::ascii::escape_default(b).map(char::from));
        }
        s.push('"');
        if bytes.len() > Self::MAX {
            s.push_str("...");
        }
        Excerpt(s)
    }

    /// The escaped text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_escapes_and_truncates() {
        let long = [b'a'; 60];
        let e = Excerpt::new(&long);
        assert!(e.as_str().ends_with("\"..."));
        assert_eq!(Excerpt::new(b"a\r\n\x00").as_str(), "\"a\\r\\n\\x00\"");
    }

    #[test]
    fn malformed_names_offset_and_bytes() {
        let frame = b"* 1 FETCH (UID x)\r\n";
        let err = Error::malformed("FETCH response", frame, &frame[15..]);
        let msg = err.to_string();
        assert!(msg.contains("byte 15"), "{msg}");
        assert!(msg.contains("\"x)\\r\\n\""), "{msg}");
        assert!(err.is_peer_fault());
        assert!(!err.is_invalid_input());
    }
}
