//! The one error type of the test kit.
//!
//! Variants are grouped by whose fault it is, because the remedy differs: a server that
//! misbehaved (`Protocol`, `Refused`, `Timeout`, `Closed`), this machine or the kit itself
//! (`Environment`, `Dovecot`, `Server`, `File`, `Command`, `Certificate`, `Io`, `Tls`), and a
//! test that asked for something impossible (`Usage`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KitError {
    /// The server sent bytes that are not IMAP as the kit understands it (the peer's fault).
    #[error("server {server} sent a response the kit cannot parse ({detail}): {excerpt}")]
    Protocol {
        server: String,
        detail: String,
        excerpt: String,
    },

    /// The server answered a command with NO or BAD, or greeted with BYE.
    #[error("server {server} refused `{command}` with {status} {text}")]
    Refused {
        server: String,
        command: String,
        status: String,
        text: String,
    },

    /// The server did not answer within the read timeout; it may be hung or overloaded.
    #[error(
        "server {server} sent nothing for {seconds} s while the kit waited for {waiting_for}; check its log"
    )]
    Timeout {
        server: String,
        seconds: u64,
        waiting_for: String,
    },

    /// The server closed the connection before answering.
    #[error("server {server} closed the connection while the kit waited for {waiting_for}")]
    Closed { server: String, waiting_for: String },

    /// Reading from or writing to a server failed below IMAP.
    #[error("I/O with server {server} failed while {action}: {source}")]
    Io {
        server: String,
        action: String,
        #[source]
        source: std::io::Error,
    },

    /// The TLS handshake or TLS configuration failed (certificate not trusted, bad name...).
    #[error("TLS with server {server} failed while {action}: {detail}")]
    Tls {
        server: String,
        action: String,
        detail: String,
    },

    /// Something this machine lacks (a binary, a system user) — install or create it.
    #[error("{what}; {remedy}")]
    Environment { what: String, remedy: String },

    /// A private Dovecot instance could not be started, stopped or driven.
    #[error(
        "Dovecot instance {instance} failed to {action}: {detail}\n--- end of {log_path} ---\n{log_tail}"
    )]
    Dovecot {
        instance: String,
        action: String,
        detail: String,
        log_path: PathBuf,
        log_tail: String,
    },

    /// A private Cyrus or Courier instance could not be started, stopped or driven.
    /// `instance` names the server too: "Cyrus instance imapmirror-kit-1-cyrus0 (source)".
    #[error("{instance} failed to {action}: {detail}\n--- end of {log_path} ---\n{log_tail}")]
    Server {
        instance: String,
        action: String,
        detail: String,
        log_path: PathBuf,
        log_tail: String,
    },

    /// A file operation of the kit failed.
    #[error("could not {action} {path}: {source}")]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An external command (doveadm, kill, getent) failed.
    #[error("command `{command}` failed: {detail}")]
    Command { command: String, detail: String },

    /// Generating the test certificate authority or server certificate failed.
    #[error("could not generate the test TLS certificates: {0}")]
    Certificate(#[from] rcgen::Error),

    /// The test asked the kit for something impossible (bad folder name, unknown user...).
    #[error("{0}")]
    Usage(String),
}

impl KitError {
    pub(crate) fn file(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        KitError::File {
            action,
            path: path.into(),
            source,
        }
    }

    /// True when the server refused with NO/BAD (for tests that expect a refusal).
    pub fn is_refusal(&self) -> bool {
        matches!(self, KitError::Refused { .. })
    }

    /// True when a TLS handshake failed (for tests that expect an untrusted certificate).
    pub fn is_tls(&self) -> bool {
        matches!(self, KitError::Tls { .. })
    }
}
