//! Frame decoders: find where a response (or command) ends in a byte stream.
//!
//! A frame is a line plus the literals it announces (RFC 3501 section 4.3): a line that
//! ends in `{N}` CRLF continues after N more bytes. The decoders split frames off the
//! `BytesMut` as `Bytes` without copying, remember how far they have scanned (so a large
//! frame arriving in small reads costs linear time), and never allocate on the peer's
//! say-so: every size the peer announces is checked against a limit first.
//!
//! [`ResponseDecoder`] streams literals over a threshold: it emits the frame's head up to
//! the literal, then the literal in chunks, then the rest as a tail frame, so one
//! connection's memory stays bounded whatever the message size (the way Dovecot's
//! `imap-parser.c` hands a literal's size back to its caller instead of buffering it).

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::error::{Error, Result};

/// Limits and thresholds of a [`ResponseDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Literals longer than this are streamed as [`Frame::LiteralChunk`]s instead of being
    /// buffered inside a [`Frame::Whole`].
    pub stream_threshold: u64,
    /// The most bytes of one frame (line plus buffered literals) the decoder keeps in the
    /// buffer before giving up with [`Error::LimitExceeded`].
    pub max_buffered: usize,
    /// The longest line (without literals) accepted.
    pub max_line: usize,
    /// The largest literal a peer may announce at all (streamed or not). IMAP4rev1's
    /// `number` is 32-bit, so the default is `u32::MAX`.
    pub max_literal: u64,
    /// The largest chunk handed out while streaming; chunks are never copied, so this only
    /// bounds how much one chunk may hold of what was already read.
    pub max_chunk: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            stream_threshold: 256 * 1024,
            max_buffered: 8 * 1024 * 1024,
            max_line: 1024 * 1024,
            max_literal: u64::from(u32::MAX),
            max_chunk: 256 * 1024,
        }
    }
}

/// One piece of the server's response stream.
///
/// A response is either one `Whole` frame, or a `Head`, its literal's `LiteralChunk`s,
/// and a `Tail` (which may itself announce another streamed literal, followed by more
/// chunks and another `Tail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete response: the line(s) and every literal it announced, each no longer
    /// than the stream threshold. Parse with [`crate::parse_response`].
    Whole(Bytes),
    /// The start of a response whose next literal is streamed: every byte up to and
    /// including `{N}` CRLF. Parse with [`crate::parse_fetch_head`].
    Head {
        /// The bytes.
        bytes: Bytes,
        /// N, the literal's announced length.
        literal_len: u64,
    },
    /// A piece of the streamed literal, byte-exact and in order.
    LiteralChunk {
        /// The bytes.
        bytes: Bytes,
        /// Bytes of the literal still to come after this chunk.
        remaining: u64,
    },
    /// What follows a streamed literal, up to the end of the response or up to the next
    /// streamed literal. Parse with [`crate::parse_fetch_tail`].
    Tail {
        /// The bytes.
        bytes: Bytes,
        /// The next streamed literal's length, when this tail ends with one.
        literal_len: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for the end of a line at or after `scanned`; the frame so far starts at
    /// offset 0 of the buffer, the current line at `line_start`.
    Scanning {
        scanned: usize,
        line_start: usize,
        tail: bool,
    },
    /// Inside a buffered literal that starts at offset `start` and ends at `end`.
    InLiteral {
        start: usize,
        end: usize,
        tail: bool,
    },
    /// Streaming a literal with `remaining` bytes still to come.
    Streaming { remaining: u64 },
}

/// The announced literal at the end of a line: `{N}`, `{N+}` or `~{N}` before CRLF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteralAnnouncement {
    /// N.
    pub len: u64,
    /// True for `{N+}` (LITERAL+ / LITERAL-): the client will not wait for `+`.
    pub non_sync: bool,
}

/// Finds the literal announced at the end of `line` (which excludes CRLF).
///
/// Returns `Ok(None)` when the line does not end in `}` or the braces do not hold a
/// number: such a line is then simply a line (text may end in `}`).
///
/// Note: IMAP's grammar is ambiguous here: free text that happens to end in `{5}` reads
/// as a literal announcement. Every implementation (imap-codec's fragmentizer, Dovecot)
/// resolves it the same way.
pub fn trailing_literal(line: &[u8]) -> Result<Option<LiteralAnnouncement>> {
    let Some(inner) = line.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open) = inner.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let mut digits = &inner[open + 1..];
    let non_sync = digits.last() == Some(&b'+');
    if non_sync {
        digits = &digits[..digits.len() - 1];
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    let mut len: u64 = 0;
    for &d in digits {
        len = match len
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
        {
            Some(v) => v,
            None => {
                return Err(Error::LimitExceeded {
                    what: "a literal announcement",
                    limit: u64::MAX,
                    actual: u64::MAX,
                });
            }
        };
    }
    Ok(Some(LiteralAnnouncement { len, non_sync }))
}

/// Index of the first LF in `hay`, eight bytes at a time (the decoder's hottest loop; a
/// plain byte loop costs as much as parsing the line).
fn find_lf(hay: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const LFS: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let x = word ^ LFS;
        // Sets the high bit of each zero byte of `x`; the lowest one is exact.
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(base + (zero.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| base + p)
}

/// The line ending at `lf` (the offset of its LF) without CR/LF.
fn line_before(buf: &[u8], line_start: usize, lf: usize) -> &[u8] {
    let end = if lf > line_start && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    &buf[line_start..end]
}

/// Splits server responses into [`Frame`]s; a `tokio_util::codec::Decoder`.
///
/// Use it with `FramedRead`, or call [`Decoder::decode`] directly on a `BytesMut` you
/// fill yourself (then call `decode` until it returns `Ok(None)` after every read).
///
/// # Quirks
/// NUL bytes before a response are skipped (servers that pad their output with NULs);
/// a bare LF ends a line like CRLF.
#[derive(Debug, Clone)]
pub struct ResponseDecoder {
    config: DecoderConfig,
    state: State,
    high_water: usize,
}

impl Default for ResponseDecoder {
    fn default() -> Self {
        Self::new(DecoderConfig::default())
    }
}

impl ResponseDecoder {
    /// A decoder with the given limits.
    pub fn new(config: DecoderConfig) -> Self {
        ResponseDecoder {
            config,
            state: State::Scanning {
                scanned: 0,
                line_start: 0,
                tail: false,
            },
            high_water: 0,
        }
    }

    /// The limits in use.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The most bytes the buffer held when `decode` was called: what this connection
    /// buffered at its peak (the decoder itself copies nothing out of the buffer).
    pub fn high_water_mark(&self) -> usize {
        self.high_water
    }

    /// True between a [`Frame::Head`] and the [`Frame::Tail`] that ends the response (or
    /// in the middle of a frame): the stream is not at a response boundary.
    pub fn in_frame(&self) -> bool {
        !matches!(
            self.state,
            State::Scanning {
                scanned: 0,
                line_start: 0,
                tail: false
            }
        )
    }

    fn over_buffer(&self, actual: usize) -> Error {
        Error::LimitExceeded {
            what: "a response buffered in memory",
            limit: self.config.max_buffered as u64,
            actual: actual as u64,
        }
    }
}

impl Decoder for ResponseDecoder {
    type Item = Frame;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>> {
        self.high_water = self.high_water.max(src.len());
        loop {
            match self.state {
                State::Streaming { remaining } => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(src.len())
                        .min(self.config.max_chunk.max(1));
                    let bytes = src.split_to(n).freeze();
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::Scanning {
                            scanned: 0,
                            line_start: 0,
                            tail: true,
                        }
                    } else {
                        State::Streaming { remaining }
                    };
                    return Ok(Some(Frame::LiteralChunk { bytes, remaining }));
                }
                State::InLiteral { end, tail, .. } => {
                    if src.len() < end {
                        // The size was checked against max_buffered, so reserving is bounded.
                        src.reserve(end - src.len());
                        return Ok(None);
                    }
                    self.state = State::Scanning {
                        scanned: end,
                        line_start: end,
                        tail,
                    };
                }
                State::Scanning {
                    scanned,
                    line_start,
                    tail,
                } => {
                    if scanned == 0 && !tail {
                        // Quirk: NUL padding between responses.
                        let nuls = src.iter().take_while(|&&b| b == 0).count();
                        if nuls > 0 {
                            let _ = src.split_to(nuls);
                        }
                    }
                    let Some(pos) = find_lf(&src[scanned..]) else {
                        if src.len() - line_start > self.config.max_line {
                            return Err(Error::LimitExceeded {
                                what: "a response line",
                                limit: self.config.max_line as u64,
                                actual: (src.len() - line_start) as u64,
                            });
                        }
                        if src.len() > self.config.max_buffered {
                            return Err(self.over_buffer(src.len()));
                        }
                        self.state = State::Scanning {
                            scanned: src.len(),
                            line_start,
                            tail,
                        };
                        return Ok(None);
                    };
                    let lf = scanned + pos;
                    // Checked here as well as while waiting, so that the verdict does not
                    // depend on how the bytes were split into reads.
                    if lf >= self.config.max_buffered {
                        return Err(self.over_buffer(lf + 1));
                    }
                    if lf - line_start > self.config.max_line {
                        return Err(Error::LimitExceeded {
                            what: "a response line",
                            limit: self.config.max_line as u64,
                            actual: (lf - line_start) as u64,
                        });
                    }
                    let line = line_before(src, line_start, lf);
                    match trailing_literal(line)? {
                        Some(lit) => {
                            if lit.len > self.config.max_literal {
                                return Err(Error::LimitExceeded {
                                    what: "a literal",
                                    limit: self.config.max_literal,
                                    actual: lit.len,
                                });
                            }
                            if lit.len > self.config.stream_threshold {
                                let bytes = src.split_to(lf + 1).freeze();
                                self.state = State::Streaming { remaining: lit.len };
                                return Ok(Some(if tail {
                                    Frame::Tail {
                                        bytes,
                                        literal_len: Some(lit.len),
                                    }
                                } else {
                                    Frame::Head {
                                        bytes,
                                        literal_len: lit.len,
                                    }
                                }));
                            }
                            let end = (lf as u64 + 1).saturating_add(lit.len);
                            if end > self.config.max_buffered as u64 {
                                return Err(
                                    self.over_buffer(usize::try_from(end).unwrap_or(usize::MAX))
                                );
                            }
                            // `end` fits in usize: it is at most max_buffered.
                            self.state = State::InLiteral {
                                start: lf + 1,
                                end: end as usize,
                                tail,
                            };
                        }
                        None => {
                            let bytes = src.split_to(lf + 1).freeze();
                            self.state = State::Scanning {
                                scanned: 0,
                                line_start: 0,
                                tail: false,
                            };
                            return Ok(Some(if tail {
                                Frame::Tail {
                                    bytes,
                                    literal_len: None,
                                }
                            } else {
                                Frame::Whole(bytes)
                            }));
                        }
                    }
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        let idle = !self.in_frame() && src.iter().all(|&b| b == 0);
        if idle {
            src.clear();
            Ok(None)
        } else {
            Err(Error::UnexpectedEof {
                what: "a server response",
            })
        }
    }
}

/// Limits of a [`CommandDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandDecoderConfig {
    /// The most bytes of one command (lines plus literals) buffered.
    pub max_command: usize,
    /// The longest line accepted.
    pub max_line: usize,
    /// The largest non-synchronizing literal accepted: 4096 under LITERAL- (RFC 7888),
    /// `max_command` under LITERAL+; 0 when neither is advertised.
    pub max_non_sync_literal: u64,
}

impl Default for CommandDecoderConfig {
    fn default() -> Self {
        CommandDecoderConfig {
            max_command: 64 * 1024,
            max_line: 8 * 1024,
            max_non_sync_literal: 4096,
        }
    }
}

/// What the proxy's command decoder hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandFrame {
    /// A complete command (or a SASL continuation line): parse it with
    /// [`crate::parse_command`] or [`crate::parse_authenticate_line`].
    Whole(Bytes),
    /// The client announced a synchronizing literal and waits: write a continuation
    /// request (`+ ...`) now, or reject the command (then call
    /// [`CommandDecoder::reject_pending_literal`]).
    NeedContinuation {
        /// The announced length (already checked against the limits).
        literal_len: u64,
    },
}

/// Splits client commands into frames, for the proxy's pre-authentication loop.
///
/// Commands are buffered whole (they are small before login); a synchronizing literal
/// yields [`CommandFrame::NeedContinuation`] so the server side can send `+`, as RFC 3501
/// section 7.5 requires before the client sends the literal.
///
/// After an error (a line or literal over the limits) the stream cannot be resynchronized
/// — the rest of the oversized line may hold anything, a literal included — so the caller
/// closes the connection, as Dovecot's imap-login does; the decoder is not reused.
#[derive(Debug, Clone)]
pub struct CommandDecoder {
    config: CommandDecoderConfig,
    state: State,
}

impl Default for CommandDecoder {
    fn default() -> Self {
        Self::new(CommandDecoderConfig::default())
    }
}

impl CommandDecoder {
    /// A decoder with the given limits.
    pub fn new(config: CommandDecoderConfig) -> Self {
        CommandDecoder {
            config,
            state: State::Scanning {
                scanned: 0,
                line_start: 0,
                tail: false,
            },
        }
    }

    /// Changes the non-synchronizing literal limit (after STARTTLS or a capability change).
    pub fn set_max_non_sync_literal(&mut self, max: u64) {
        self.config.max_non_sync_literal = max;
    }

    /// After the server refused a synchronizing literal (tagged BAD/NO instead of `+`),
    /// drops the partial command: the client will not send the literal (RFC 3501 7.5).
    pub fn reject_pending_literal(&mut self, src: &mut BytesMut) {
        if let State::InLiteral { start, .. } = self.state {
            let _ = src.split_to(start.min(src.len()));
            self.state = State::Scanning {
                scanned: 0,
                line_start: 0,
                tail: false,
            };
        }
    }

    fn limit(&self, what: &'static str, limit: usize, actual: u64) -> Error {
        Error::LimitExceeded {
            what,
            limit: limit as u64,
            actual,
        }
    }
}

impl Decoder for CommandDecoder {
    type Item = CommandFrame;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<CommandFrame>> {
        loop {
            match self.state {
                State::Streaming { .. } => {
                    return Err(Error::Misuse("the command decoder never streams literals"));
                }
                State::InLiteral { end, tail, .. } => {
                    if src.len() < end {
                        return Ok(None);
                    }
                    self.state = State::Scanning {
                        scanned: end,
                        line_start: end,
                        tail,
                    };
                }
                State::Scanning {
                    scanned,
                    line_start,
                    tail,
                } => {
                    let Some(pos) = find_lf(&src[scanned..]) else {
                        if src.len() - line_start > self.config.max_line {
                            return Err(self.limit(
                                "a command line",
                                self.config.max_line,
                                (src.len() - line_start) as u64,
                            ));
                        }
                        self.state = State::Scanning {
                            scanned: src.len(),
                            line_start,
                            tail,
                        };
                        return Ok(None);
                    };
                    let lf = scanned + pos;
                    if lf >= self.config.max_command {
                        self.state = State::Scanning {
                            scanned: 0,
                            line_start: 0,
                            tail: false,
                        };
                        return Err(self.limit(
                            "a command with its literals",
                            self.config.max_command,
                            lf as u64 + 1,
                        ));
                    }
                    if lf - line_start > self.config.max_line {
                        return Err(self.limit(
                            "a command line",
                            self.config.max_line,
                            (lf - line_start) as u64,
                        ));
                    }
                    let line = line_before(src, line_start, lf);
                    match trailing_literal(line)? {
                        Some(lit) => {
                            let end = (lf as u64 + 1).saturating_add(lit.len);
                            if end > self.config.max_command as u64 {
                                self.state = State::Scanning {
                                    scanned: 0,
                                    line_start: 0,
                                    tail: false,
                                };
                                return Err(self.limit(
                                    "a command with its literals",
                                    self.config.max_command,
                                    end,
                                ));
                            }
                            if lit.non_sync && lit.len > self.config.max_non_sync_literal {
                                self.state = State::Scanning {
                                    scanned: 0,
                                    line_start: 0,
                                    tail: false,
                                };
                                return Err(Error::LimitExceeded {
                                    what: "a non-synchronizing literal",
                                    limit: self.config.max_non_sync_literal,
                                    actual: lit.len,
                                });
                            }
                            self.state = State::InLiteral {
                                start: lf + 1,
                                end: end as usize,
                                tail,
                            };
                            if !lit.non_sync {
                                return Ok(Some(CommandFrame::NeedContinuation {
                                    literal_len: lit.len,
                                }));
                            }
                        }
                        None => {
                            let bytes = src.split_to(lf + 1).freeze();
                            self.state = State::Scanning {
                                scanned: 0,
                                line_start: 0,
                                tail: false,
                            };
                            return Ok(Some(CommandFrame::Whole(bytes)));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
