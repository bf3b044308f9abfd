//! An APPEND whose message bodies the caller writes piece by piece, so that a message
//! can flow from a source FETCH to the target without being held in memory whole.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::command::{AppendMessage, Command, LiteralBody, MailboxName};
use crate::command_encoder::Segment;
use crate::error::{Error, Result};

use super::client_state::CommandKind;
use super::command_tag::CommandTag;
use super::session::{Session, mailbox_label};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Starts an APPEND whose bodies (some or all [`LiteralBody::Streamed`]) the caller
    /// writes piece by piece, e.g. straight from a source's [`FetchStream`](super::FetchStream) chunks.
    pub async fn start_append<'s>(
        &'s mut self,
        mailbox: MailboxName<'_>,
        messages: &[AppendMessage<'_>],
    ) -> Result<AppendUpload<'s, S>> {
        self.check_usable()?;
        self.make_room().await?;
        let label = format!("APPEND {}", mailbox_label(&mailbox));
        let command = Command::Append { mailbox, messages };
        let state = self.state();
        let encoded = state
            .encoder()
            .encode(&state.upcoming_tag().wire(), &command)?;
        let tag = self.state_mut().begin(CommandKind::Simple, label);
        let streamed: u64 = messages
            .iter()
            .filter_map(|m| match m.body {
                LiteralBody::Streamed { len } => Some(len),
                LiteralBody::Bytes(_) => None,
            })
            .sum();
        AppendUpload::begin(self, tag, encoded.segments, streamed).await
    }
}

const MID_COMMAND: &str = "an APPEND upload was dropped in the middle of a message; the connection cannot be reused, open a new session";

/// An APPEND in progress. Write each streamed body with [`AppendUpload::write_chunk`]
/// until [`AppendUpload::body_remaining`] is 0 for every body, then call
/// [`AppendUpload::finish`] to get the tag whose completion carries the APPENDUID.
#[derive(Debug)]
pub struct AppendUpload<'s, S: AsyncRead + AsyncWrite + Unpin> {
    session: &'s mut Session<S>,
    tag: CommandTag,
    segments: std::vec::IntoIter<Segment>,
    body_remaining: u64,
    streamed_left: u64,
    done: bool,
}

impl<'s, S: AsyncRead + AsyncWrite + Unpin> AppendUpload<'s, S> {
    pub(crate) async fn begin(
        session: &'s mut Session<S>,
        tag: CommandTag,
        segments: Vec<Segment>,
        streamed_total: u64,
    ) -> Result<Self> {
        // Until the command is fully written, no other command may use the connection.
        session.set_broken(Some(MID_COMMAND));
        let mut upload = AppendUpload {
            session,
            tag,
            segments: segments.into_iter(),
            body_remaining: 0,
            streamed_left: streamed_total,
            done: false,
        };
        upload.advance().await?;
        Ok(upload)
    }

    /// The command's tag.
    pub fn tag(&self) -> CommandTag {
        self.tag
    }

    /// Bytes the current streamed body still needs (0 when none is being written).
    pub fn body_remaining(&self) -> u64 {
        self.body_remaining
    }

    /// Bytes of all streamed bodies still to write.
    pub fn streamed_remaining(&self) -> u64 {
        self.streamed_left
    }

    /// Writes segments until the next streamed body or the end of the command.
    async fn advance(&mut self) -> Result<()> {
        while self.body_remaining == 0 {
            let Some(segment) = self.segments.next() else {
                self.done = true;
                self.session.flush().await?;
                self.session.set_broken(None);
                return Ok(());
            };
            match segment {
                Segment::Data(b) => self.session.write_bytes(b).await?,
                Segment::AwaitContinuation => {
                    if let Err(e) = self.session.wait_continuation(self.tag).await {
                        // A refused literal ends the command (RFC 3501 7.5): the
                        // connection is consistent again, only this APPEND failed.
                        if matches!(e, Error::Refused { .. } | Error::Backoff { .. }) {
                            self.session.set_broken(None);
                            self.done = true;
                        }
                        return Err(e);
                    }
                }
                Segment::StreamedBody { len } => self.body_remaining = len,
            }
        }
        Ok(())
    }

    /// Writes the next piece of the current body. More bytes than the body's announced
    /// length is refused before anything is written.
    pub async fn write_chunk(&mut self, chunk: Bytes) -> Result<()> {
        if self.done {
            return Err(Error::Misuse(
                "a body chunk after the APPEND was complete or refused",
            ));
        }
        let len = chunk.len() as u64;
        if len > self.body_remaining {
            return Err(Error::InvalidInput {
                what: "a message body chunk",
                reason: "it holds more bytes than the length announced for the message",
            });
        }
        self.session.write_bytes(chunk).await?;
        self.body_remaining -= len;
        self.streamed_left -= len;
        if self.body_remaining == 0 {
            self.advance().await?;
        }
        Ok(())
    }

    /// Ends the upload after every body was written; returns the tag to wait for.
    pub async fn finish(self) -> Result<CommandTag> {
        if !self.done || self.body_remaining > 0 {
            return Err(Error::InvalidInput {
                what: "an APPEND upload",
                reason: "it was finished before every announced body byte was written",
            });
        }
        self.session.flush().await?;
        Ok(self.tag)
    }
}
