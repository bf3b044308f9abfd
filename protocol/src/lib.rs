//! The IMAP wire format for imapmirror: a zero-copy, streaming response parser, a client
//! command parser (for the proxy), encoders for both directions, and an async client
//! session. The crate holds no migration policy.
//!
//! # Reading server responses
//! [`ResponseDecoder`] is a `tokio_util::codec::Decoder` (use it with `FramedRead`) that
//! splits the byte stream into [`Frame`]s without copying and within the limits of its
//! [`DecoderConfig`]:
//! - [`Frame::Whole`]: a complete response → [`parse_response`] (the greeting:
//!   [`parse_greeting`]) → [`Response`].
//! - A literal over `stream_threshold` is streamed: [`Frame::Head`] (→ [`parse_fetch_head`]:
//!   sequence number, the attributes before it, and which attribute is streamed), then
//!   [`Frame::LiteralChunk`]s (the body, byte-exact, `remaining == 0` on the last), then
//!   [`Frame::Tail`] (→ [`parse_fetch_tail`]: more attributes, possibly another streamed one).
//! - [`ResponseDecoder::high_water_mark`] reports the most bytes the connection buffered.
//!
//! Parsed values borrow from the frame, and lists (FETCH attributes, flags, capabilities,
//! LIST attributes, STATUS items) are validated once and iterated lazily, so the FETCH path
//! allocates nothing. Literal bodies are `&[u8]` slices of the frame: keep one without
//! copying with `Bytes::slice_ref(&frame, body)`. Server quirks are accepted and named in
//! the parsers' "Quirks" sections; everything else is an [`Error::Malformed`] naming the
//! offending byte.
//!
//! # Writing commands
//! [`CommandEncoder::encode`] turns a [`Command`] into an [`EncodedCommand`]: write its
//! [`Segment`]s in order. [`Segment::AwaitContinuation`] means: flush and wait for the
//! server's `+` (a tagged NO/BAD instead ends the command); [`Segment::StreamedBody`] means:
//! write exactly that many body bytes yourself, e.g. the [`Frame::LiteralChunk`]s of a
//! source FETCH. [`EncoderOptions`] says whether LITERAL+ / LITERAL- and UTF8=ACCEPT are in
//! force; never log an `EncodedCommand` whose `contains_secret` is set.
//!
//! # The proxy's side
//! [`CommandDecoder`] frames client commands and says when to send `+` for a synchronizing
//! literal; [`parse_command`] / [`parse_authenticate_line`] parse the pre-authentication
//! commands; [`status_line`], [`capability_line`], [`continuation_line`], [`id_line`] and
//! [`encode_response`] write responses.
//!
//! # Names and dates
//! [`mutf7`] converts mailbox names both ways ([`Mailbox::decode`] picks UTF-8 under
//! UTF8=ACCEPT); [`InternalDate`] parses and formats INTERNALDATE; [`sasl`] builds SASL
//! payloads.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod admin_login;
pub mod client;
mod command;
mod command_encoder;
mod command_parser;
mod error;
mod framing;
#[doc(hidden)]
pub mod fuzz_checks;
mod internal_date;
mod lazy_values;
mod literal_mode;
pub mod mutf7;
mod response_encoder;
mod response_parser;
pub mod sasl;
mod syntax;
mod types;

pub use command::{
    AppendMessage, Command, FetchAttr, ListCommand, LiteralBody, MailboxName, SaslAuth, StoreMode,
};
pub use command_encoder::{CommandEncoder, EncodedCommand, EncoderOptions, Segment};
pub use command_parser::{
    AuthenticateLine, CommandKind, ParsedCommand, encode_parsed_command, parse_authenticate_line,
    parse_command,
};
pub use error::{Error, Excerpt, Result};
pub use framing::{
    CommandDecoder, CommandDecoderConfig, CommandFrame, DecoderConfig, Frame, LiteralAnnouncement,
    ResponseDecoder, trailing_literal,
};
pub use internal_date::InternalDate;
pub use lazy_values::Items;
pub use literal_mode::LiteralMode;
pub use response_encoder::{
    capability_line, continuation_line, encode_response, id_line, put_code, status_line,
};
pub use response_parser::{parse_fetch_head, parse_fetch_tail, parse_greeting, parse_response};
pub use types::*;
