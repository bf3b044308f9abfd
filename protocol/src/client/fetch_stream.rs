//! The output of one UID FETCH, read message by message as it arrives.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};

use crate::command::{Command, FetchAttr};

use super::client_state::{CommandKind, Event};
use super::command_tag::CommandTag;
use super::fetched_message::{BodyPart, FetchEvent, FetchedMessage};
use super::session::Session;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// UID FETCH: sends the command and returns the stream of its messages. One FETCH or
    /// STORE at a time; other pipelined commands may be in flight.
    pub async fn uid_fetch<'s>(
        &'s mut self,
        uids: &str,
        attrs: &[FetchAttr<'_>],
        changed_since: Option<u64>,
        vanished: bool,
    ) -> Result<FetchStream<'s, S>> {
        if self
            .state()
            .has_pending(|k| matches!(k, CommandKind::Fetch { .. } | CommandKind::Store))
        {
            return Err(Error::Misuse(
                "UID FETCH while another FETCH or STORE is in flight",
            ));
        }
        let label = format!(
            "UID FETCH {uids} in {}",
            self.state()
                .selected()
                .map(|m| format!("{:?}", String::from_utf8_lossy(&m.wire_name)))
                .unwrap_or_default()
        );
        let command = Command::UidFetch {
            uids,
            attrs,
            changed_since,
            vanished,
        };
        let tag = self
            .send(CommandKind::Fetch { deliver: true }, label, &command)
            .await?;
        Ok(FetchStream::new(self, tag))
    }
}

/// The messages of a UID FETCH in flight. Call [`FetchStream::next`] until it returns
/// `Ok(None)` (the tagged OK arrived). Dropping the stream early is safe: the rest of the
/// output is read and discarded by the session's next command.
#[derive(Debug)]
pub struct FetchStream<'s, S: AsyncRead + AsyncWrite + Unpin> {
    session: &'s mut Session<S>,
    tag: CommandTag,
    finished: bool,
}

impl<'s, S: AsyncRead + AsyncWrite + Unpin> FetchStream<'s, S> {
    pub(crate) fn new(session: &'s mut Session<S>, tag: CommandTag) -> Self {
        FetchStream {
            session,
            tag,
            finished: false,
        }
    }

    /// The FETCH command's tag.
    pub fn tag(&self) -> CommandTag {
        self.tag
    }

    /// The next piece of output: a whole message, or the start, chunks and end of a
    /// streamed one. `Ok(None)` after the tagged OK; a NO/BAD is the error.
    pub async fn next(&mut self) -> Result<Option<FetchEvent>> {
        if self.finished {
            return Ok(None);
        }
        loop {
            let event = match self.session.next_event("reading UID FETCH output").await {
                Ok(e) => e,
                Err(e) => {
                    self.finished = true;
                    return Err(e);
                }
            };
            match event {
                Event::Fetch(f) => return Ok(Some(f)),
                Event::Completed(t) if t == self.tag => {
                    self.finished = true;
                    let Some(c) = self.session.state_mut().take_completion(t) else {
                        return Err(Error::Misuse("a completion vanished"));
                    };
                    let server = self.session.server().to_owned();
                    c.into_result(&server, self.session.config().default_backoff)?;
                    return Ok(None);
                }
                Event::Completed(_) => continue,
                Event::Continuation(text) => {
                    self.finished = true;
                    return Err(self
                        .session
                        .violation("a continuation request during UID FETCH", &text));
                }
                Event::Bye(e) => {
                    self.finished = true;
                    return Err(e);
                }
            }
        }
    }

    /// The next message with its streamed body (if any) gathered into one buffer. This
    /// copies large bodies; the migration's hot path uses [`FetchStream::next`] instead.
    pub async fn next_message(&mut self) -> Result<Option<FetchedMessage>> {
        let mut streamed: Option<(String, Option<u32>, BytesMut)> = None;
        let mut gathered: Vec<BodyPart> = Vec::new();
        loop {
            match self.next().await? {
                None => {
                    return match streamed {
                        Some(_) => Err(Error::Misuse("FETCH ended inside a streamed message")),
                        None => Ok(None),
                    };
                }
                Some(FetchEvent::Message(m)) => return Ok(Some(m)),
                Some(FetchEvent::StreamStart {
                    section,
                    origin,
                    len,
                    ..
                }) => {
                    if let Some((section, origin, buf)) = streamed.take() {
                        gathered.push(BodyPart {
                            section,
                            origin,
                            data: Some(buf.freeze()),
                        });
                    }
                    let capacity = usize::try_from(len)
                        .unwrap_or(usize::MAX)
                        .min(64 * 1024 * 1024);
                    streamed = Some((section, origin, BytesMut::with_capacity(capacity)));
                }
                Some(FetchEvent::Chunk { bytes, .. }) => match &mut streamed {
                    Some((_, _, buf)) => buf.extend_from_slice(&bytes),
                    None => {
                        return Err(Error::Misuse(
                            "a body chunk arrived outside a streamed message",
                        ));
                    }
                },
                Some(FetchEvent::StreamEnd(mut m)) => {
                    if let Some((section, origin, buf)) = streamed.take() {
                        gathered.push(BodyPart {
                            section,
                            origin,
                            data: Some(buf.freeze()),
                        });
                    }
                    m.parts.extend(gathered);
                    return Ok(Some(m));
                }
            }
        }
    }

    /// Reads the whole output into memory (tests and small folders only).
    pub async fn collect_messages(mut self) -> Result<Vec<FetchedMessage>> {
        let mut out = Vec::new();
        while let Some(m) = self.next_message().await? {
            out.push(m);
        }
        Ok(out)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Drop for FetchStream<'_, S> {
    fn drop(&mut self) {
        if !self.finished {
            self.session.state_mut().stop_delivering(self.tag);
        }
    }
}
