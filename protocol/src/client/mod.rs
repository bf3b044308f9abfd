//! The async IMAP client session.
//!
//! - [`ClientState`] (sans I/O): tags, continuations, capabilities, the selected mailbox,
//!   and the routing of untagged responses to the command that waits for them.
//! - [`Session`]: the state driven over any `AsyncRead + AsyncWrite` (plain TCP, rustls,
//!   after STARTTLS), with a timeout on every wait.
//! - [`connect`]: TCP, implicit TLS or STARTTLS (never a silent plaintext fallback),
//!   greeting and capabilities, using [`TlsSettings`] (webpki + system roots, a CA file,
//!   or an explicit insecure mode).

mod capability_set;
mod client_state;
mod command_tag;
mod completion;
mod expunge_outcome;
mod fetched_message;
mod mailbox_info;
mod response_code;
mod search_result;
mod uid_ranges;

pub use capability_set::CapabilitySet;
pub use client_state::{ClientState, CommandKind, Event, Phase, UnansweredCommands};
pub use command_tag::CommandTag;
pub use completion::{CommandData, Completion};
pub use expunge_outcome::ExpungeOutcome;
pub use fetched_message::{
    BodyPart, FetchEvent, FetchedMessage, FlagUpdate, MessageFlags, MessageMeta,
};
pub use mailbox_info::{ListEntry, MailboxStatus, NamespaceEntry, Namespaces, SelectedMailbox};
pub use response_code::ResponseCode;
pub use search_result::SearchResult;
pub use uid_ranges::UidRanges;

mod append_upload;
mod authentication;
mod certificate_pin;
mod connect;
mod fetch_stream;
mod session;
mod tls;

pub use append_upload::AppendUpload;
pub use authentication::{Credentials, Secret};
pub use certificate_pin::{CertificatePin, SHA256_PREFIX};
pub use connect::{ConnectOptions, ImapStream, Security, connect};
pub use fetch_stream::FetchStream;
pub use session::{Session, SessionConfig, StoreOutcome};
pub use tls::{CertificateCheck, TlsOptions, TlsSettings, handshake_failure_reason};
