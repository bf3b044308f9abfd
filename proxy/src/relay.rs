//! The relay after login: bytes copied both ways without parsing, byte counts, an idle
//! timeout, half-close handled (a side that finishes sending is shut down on the other
//! side while the other direction keeps flowing), and the proxy's own reasons to end a
//! session (cut-over, shutdown).
//!
//! Each direction holds a buffer only while bytes flow: it is allocated when the source
//! turns readable and freed once the session has been quiet for [`BUFFER_RELEASE_AFTER`].
//! An idle session (most of them: mail clients sit in IDLE) then costs no relay buffer,
//! while a bulk FETCH moves in large chunks with few system calls and no reallocation.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;

use crate::response_boundary::ResponseBoundary;
use crate::server_response::status;
use crate::session_registry::Kick;
use crate::transport::{Activity, BackendStream, ClientStream, Metered};

/// Why a relay ended.
#[derive(Debug)]
pub(crate) enum RelayEnd {
    /// Both sides closed (the usual end: LOGOUT).
    Closed,
    /// No byte moved for the idle timeout.
    IdleTimeout,
    /// The proxy closed the session.
    Kicked(Kick),
    /// A socket failed.
    Failed(io::Error),
}

impl std::fmt::Display for RelayEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayEnd::Closed => f.write_str("closed"),
            RelayEnd::IdleTimeout => f.write_str("idle timeout"),
            RelayEnd::Kicked(Kick::RouteChanged) => f.write_str("cut-over: route changed"),
            RelayEnd::Kicked(Kick::Shutdown) => f.write_str("proxy shutdown"),
            RelayEnd::Failed(e) => write!(f, "I/O error: {e}"),
        }
    }
}

/// What a relay moved and how it ended.
#[derive(Debug)]
pub(crate) struct RelayReport {
    /// Bytes from the client to the backend.
    pub(crate) client_to_backend: u64,
    /// Bytes from the backend to the client.
    pub(crate) backend_to_client: u64,
    pub(crate) end: RelayEnd,
}

/// The text clients see when their session is closed by a cut-over.
pub(crate) const CUT_OVER_TEXT: &str = "Your mailbox has moved to a new server: please reconnect.";

/// Relays until both sides close, the session idles out or is kicked.
pub(crate) async fn relay(
    client: ClientStream,
    backend: BackendStream,
    buffer: usize,
    idle_timeout: Duration,
    kick: oneshot::Receiver<Kick>,
) -> RelayReport {
    let activity = Activity::new();
    let mut client = Metered::new(client, &activity);
    let mut backend = Metered::new(backend, &activity);
    let kicked = async {
        match kick.await {
            Ok(k) => k,
            // The registry dropped the sender: nothing will ever kick this session.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::pin!(kicked);
    let mut both = BothWays::new();
    both.b_to_a.boundary = Some(ResponseBoundary::default());
    let end = {
        let copy = poll_fn(|cx| both.poll(cx, &mut client, &mut backend, buffer));
        tokio::pin!(copy);
        loop {
            let idle_at = tokio::time::Instant::from_std(activity.last() + idle_timeout);
            tokio::select! {
                r = &mut copy => break match r {
                    Ok(_) => RelayEnd::Closed,
                    Err(e) => RelayEnd::Failed(e),
                },
                k = &mut kicked => break RelayEnd::Kicked(k),
                () = tokio::time::sleep_until(idle_at) => {
                    if activity.last() + idle_timeout <= std::time::Instant::now() {
                        break RelayEnd::IdleTimeout;
                    }
                }
            }
        }
    };
    let bye = match &end {
        RelayEnd::Kicked(Kick::RouteChanged) => {
            Some(status(None, "BYE", Some("UNAVAILABLE"), CUT_OVER_TEXT))
        }
        RelayEnd::Kicked(Kick::Shutdown) => Some(status(
            None,
            "BYE",
            Some("UNAVAILABLE"),
            "The proxy is shutting down: please reconnect.",
        )),
        RelayEnd::IdleTimeout => Some(status(None, "BYE", None, "Disconnected for inactivity.")),
        RelayEnd::Closed | RelayEnd::Failed(_) => None,
    };
    // A cut-over or shutdown BYE goes out between two responses, never inside one: the
    // client gets the rest of the response in flight first (its requests are no longer
    // relayed), or, if that takes too long, a closed connection and no BYE.
    let bye = match (bye, &end) {
        (Some(line), RelayEnd::Kicked(_)) => {
            both.b_to_a.until_boundary = true;
            let drained = tokio::time::timeout(
                DRAIN_BEFORE_BYE,
                poll_fn(|cx| {
                    both.b_to_a
                        .poll_copy(cx, Pin::new(&mut backend), Pin::new(&mut client), buffer)
                }),
            )
            .await;
            match drained {
                Ok(Ok(())) if both.b_to_a.reached_boundary() => Some(line),
                _ => {
                    tracing::debug!(
                        "closing without BYE: the response in flight did not end in time"
                    );
                    None
                }
            }
        }
        (bye, _) => bye,
    };
    if let Some(line) = bye {
        // Best effort and bounded: a client that does not read must not hold us.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            client.inner.write_all(&line).await?;
            client.inner.shutdown().await
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), backend.inner.shutdown()).await;
    }
    RelayReport {
        client_to_backend: client.bytes_read,
        backend_to_client: backend.bytes_read,
        end,
    }
}

/// How long a kicked session may take to finish the response in flight before its BYE.
const DRAIN_BEFORE_BYE: Duration = Duration::from_secs(10);

/// How long a session must be quiet before its relay buffers are freed.
pub(crate) const BUFFER_RELEASE_AFTER: Duration = Duration::from_millis(500);

/// One direction of the copy.
struct Direction {
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    /// The source reached EOF.
    read_done: bool,
    /// Bytes written since the last flush.
    need_flush: bool,
    /// The destination was shut down: this direction is finished.
    done: bool,
    /// Reads that returned data, to notice activity.
    reads: u64,
    /// Response boundaries of what was written (the server-to-client direction only).
    boundary: Option<ResponseBoundary>,
    /// Copy only up to the next response boundary, then finish (cut-over).
    until_boundary: bool,
}

impl Direction {
    fn new() -> Self {
        Direction {
            buf: None,
            start: 0,
            end: 0,
            read_done: false,
            need_flush: false,
            done: false,
            reads: 0,
            boundary: None,
            until_boundary: false,
        }
    }

    /// In `until_boundary` mode: the destination has whole responses only.
    fn reached_boundary(&self) -> bool {
        self.until_boundary && self.boundary.is_some_and(|b| b.at_boundary())
    }

    /// Frees the buffer if it holds nothing still to be written.
    fn release(&mut self) {
        if self.start == self.end {
            self.buf = None;
        }
    }

    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
        size: usize,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.reached_boundary() {
                if self.need_flush {
                    ready!(writer.as_mut().poll_flush(cx))?;
                    self.need_flush = false;
                }
                return Poll::Ready(Ok(()));
            }
            if self.start == self.end && !self.read_done {
                let buf = self
                    .buf
                    .get_or_insert_with(|| vec![0u8; size].into_boxed_slice());
                let mut rb = ReadBuf::new(buf);
                match reader.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            self.read_done = true;
                        } else {
                            self.start = 0;
                            self.end = n;
                            self.reads += 1;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // Nothing to send for now: push out what the destination may
                        // still hold (TLS records), and wait.
                        if self.need_flush {
                            ready!(writer.as_mut().poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.start < self.end && !self.reached_boundary() {
                let Some(buf) = &self.buf else {
                    return Poll::Ready(Err(io::Error::other("relay buffer lost")));
                };
                let mut upto = self.end;
                if self.until_boundary
                    && let Some(k) = self
                        .boundary
                        .and_then(|b| b.bytes_to_boundary(&buf[self.start..self.end]))
                {
                    upto = self.start + k;
                }
                let n = ready!(writer.as_mut().poll_write(cx, &buf[self.start..upto]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                if let Some(b) = &mut self.boundary {
                    b.feed(&buf[self.start..self.start + n]);
                }
                self.start += n;
                self.need_flush = true;
            }
            if self.reached_boundary() {
                continue;
            }
            if self.read_done {
                self.buf = None;
                ready!(writer.as_mut().poll_shutdown(cx))?;
                self.done = true;
            }
        }
    }
}

/// Both directions of a copy and the timer that frees their buffers when quiet.
struct BothWays {
    a_to_b: Direction,
    b_to_a: Direction,
    release: Pin<Box<tokio::time::Sleep>>,
    /// The read count at which the release timer was last armed; None once released.
    armed_at: Option<u64>,
}

impl BothWays {
    fn new() -> Self {
        BothWays {
            a_to_b: Direction::new(),
            b_to_a: Direction::new(),
            release: Box::pin(tokio::time::sleep(BUFFER_RELEASE_AFTER)),
            armed_at: Some(0),
        }
    }

    fn poll<A, B>(
        &mut self,
        cx: &mut Context<'_>,
        a: &mut A,
        b: &mut B,
        size: usize,
    ) -> Poll<io::Result<()>>
    where
        A: AsyncRead + AsyncWrite + Unpin + ?Sized,
        B: AsyncRead + AsyncWrite + Unpin + ?Sized,
    {
        let up = self
            .a_to_b
            .poll_copy(cx, Pin::new(&mut *a), Pin::new(&mut *b), size)?;
        let down = self
            .b_to_a
            .poll_copy(cx, Pin::new(&mut *b), Pin::new(&mut *a), size)?;
        if up.is_ready() && down.is_ready() {
            return Poll::Ready(Ok(()));
        }
        let reads = self.a_to_b.reads + self.b_to_a.reads;
        if self.armed_at != Some(reads) && self.buffers_held() > 0 {
            self.release
                .as_mut()
                .reset(tokio::time::Instant::now() + BUFFER_RELEASE_AFTER);
            self.armed_at = Some(reads);
        }
        if self.armed_at.is_some() && self.release.as_mut().poll(cx).is_ready() {
            self.a_to_b.release();
            self.b_to_a.release();
            self.armed_at = None;
        }
        Poll::Pending
    }

    fn buffers_held(&self) -> usize {
        usize::from(self.a_to_b.buf.is_some()) + usize::from(self.b_to_a.buf.is_some())
    }
}

/// Copies both ways until both sources reached EOF (each destination is shut down when
/// its source ends), or an error. `size` is the chunk size while bytes flow. (The relay
/// polls its own [`BothWays`], to finish a response after a kick.)
#[cfg(test)]
async fn copy_both_ways<A, B>(a: &mut A, b: &mut B, size: usize) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut both = BothWays::new();
    poll_fn(|cx| both.poll(cx, a, b, size)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn copies_both_ways_and_handles_half_close() {
        let (mut client, mut proxy_client_side) = tokio::io::duplex(1024);
        let (mut proxy_backend_side, mut backend) = tokio::io::duplex(1024);
        let relay = tokio::spawn(async move {
            copy_both_ways(&mut proxy_client_side, &mut proxy_backend_side, 4096).await
        });
        let big: Vec<u8> = (0..200_000u32).map(|k| (k % 251) as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            backend.write_all(&sent).await.unwrap();
            // The backend closes its side: the client must see EOF after all bytes...
            backend.shutdown().await.unwrap();
            // ...while the other direction still flows.
            let mut got = Vec::new();
            backend.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, big);
        client.write_all(b"after half-close").await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"after half-close");
        relay.await.unwrap().unwrap();
    }

    /// A kick in the middle of a FETCH literal: the client gets the rest of that response
    /// and nothing of the next one, so the BYE that follows cannot land inside a message.
    #[tokio::test]
    async fn a_kick_waits_for_the_end_of_the_response_in_flight() {
        let (mut client, mut a) = tokio::io::duplex(1 << 16);
        let (mut b, mut backend) = tokio::io::duplex(1 << 16);
        let mut both = BothWays::new();
        both.b_to_a.boundary = Some(ResponseBoundary::default());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        backend
            .write_all(b"* 1 FETCH (UID 7 BODY[] {10}\r\n01234")
            .await
            .unwrap();
        assert!(both.poll(&mut cx, &mut a, &mut b, 4096).is_pending());
        // Kicked now: only the rest of the response may still reach the client.
        both.b_to_a.until_boundary = true;
        backend
            .write_all(b"56789)\r\n* 2 EXISTS\r\n")
            .await
            .unwrap();
        let drained = poll_fn(|cx| {
            both.b_to_a
                .poll_copy(cx, Pin::new(&mut b), Pin::new(&mut a), 4096)
        });
        tokio::time::timeout(Duration::from_secs(5), drained)
            .await
            .expect("the response ends")
            .unwrap();
        assert!(both.b_to_a.reached_boundary());
        drop(a);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"* 1 FETCH (UID 7 BODY[] {10}\r\n0123456789)\r\n");
    }

    #[tokio::test]
    async fn quiet_sessions_give_their_buffers_back() {
        let (mut client, mut a) = tokio::io::duplex(64);
        let (mut b, mut backend) = tokio::io::duplex(64);
        let mut both = BothWays::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert_eq!(both.buffers_held(), 0);
        client.write_all(b"a NOOP\r\n").await.unwrap();
        assert!(both.poll(&mut cx, &mut a, &mut b, 65536).is_pending());
        assert_eq!(both.buffers_held(), 2, "kept while the session is active");
        let mut got = [0u8; 8];
        backend.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"a NOOP\r\n");
        tokio::time::sleep(BUFFER_RELEASE_AFTER + Duration::from_millis(100)).await;
        assert!(both.poll(&mut cx, &mut a, &mut b, 65536).is_pending());
        assert_eq!(both.buffers_held(), 0, "freed after the quiet period");
        // Traffic brings them back, and the copy still ends cleanly.
        backend.write_all(b"* OK\r\n").await.unwrap();
        assert!(both.poll(&mut cx, &mut a, &mut b, 65536).is_pending());
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        drop((client, backend));
        assert!(matches!(
            both.poll(&mut cx, &mut a, &mut b, 65536),
            Poll::Ready(Ok(()))
        ));
    }
}
