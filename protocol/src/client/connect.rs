//! Opening a session: TCP, then implicit TLS, STARTTLS or plaintext, the greeting and
//! the capabilities.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::error::{Error, Result};

use super::session::{Session, SessionConfig};
use super::tls::{TlsSettings, handshake_failure, server_name};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (port 993, `--security ssl`).
    Implicit,
    /// Plain TCP upgraded with STARTTLS; a server without STARTTLS is an error, never a
    /// silent plaintext session.
    StartTls,
    /// No TLS (`--security none`): loopback and tests.
    None,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Protection.
    pub security: Security,
    /// Trust settings (unused with [`Security::None`]).
    pub tls: TlsSettings,
    /// The longest wait for the TCP connection and for the TLS handshake.
    pub connect_timeout: Duration,
    /// The session's limits.
    pub session: SessionConfig,
}

impl ConnectOptions {
    /// `host:port`, as errors name the server.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A TCP stream, with or without TLS.
#[derive(Debug)]
pub enum ImapStream {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS (implicit or after STARTTLS).
    Tls(Box<TlsStream<TcpStream>>),
}

impl ImapStream {
    /// True when the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, ImapStream::Tls(_))
    }
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ImapStream::Plain(s) => s.is_write_vectored(),
            ImapStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

async fn tls_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    tls: &TlsSettings,
    host: &str,
    server: &str,
    limit: Duration,
) -> Result<TlsStream<S>> {
    let name = server_name(host, server)?;
    match tokio::time::timeout(limit, tls.connector().connect(name, stream)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            // tokio-rustls reports rustls errors (bad certificate, ...) inside io::Error.
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls_error) => Err(handshake_failure(server, tls_error)),
                None => Err(Error::Tls {
                    server: server.to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        Err(_) => Err(Error::Timeout {
            server: server.to_owned(),
            during: "the TLS handshake",
            waited: limit,
        }),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Upgrades with STARTTLS: requires the capability (no plaintext fallback), refuses
    /// bytes the server sent after its OK, verifies the certificate for `host`, then
    /// asks for the capabilities again over TLS.
    pub async fn starttls(
        mut self,
        tls: &TlsSettings,
        host: &str,
    ) -> Result<Session<TlsStream<S>>> {
        self.starttls_exchange().await?;
        let server = self.server().to_owned();
        let limit = self.config().response_timeout;
        let (stream, _, state, config) = self.into_parts();
        let stream = tls_handshake(stream, tls, host, &server, limit).await?;
        let mut session = Session::from_parts(stream, state, config);
        session.refresh_capabilities_if_stale().await?;
        Ok(session)
    }
}

/// Connects as `options` say and returns a session that has read the greeting and knows
/// the server's capabilities (over TLS when TLS is used), ready to log in.
pub async fn connect(options: &ConnectOptions) -> Result<Session<ImapStream>> {
    let server = options.server();
    let tcp = match tokio::time::timeout(
        options.connect_timeout,
        TcpStream::connect((options.host.as_str(), options.port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(Error::Network {
                server,
                during: "connecting",
                source: e,
            });
        }
        Err(_) => {
            return Err(Error::Timeout {
                server,
                during: "connecting",
                waited: options.connect_timeout,
            });
        }
    };
    // Pipelined small commands should not wait for Nagle's algorithm.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(server = %server, error = %e, "TCP_NODELAY not set");
    }
    let mut session = match options.security {
        Security::Implicit => {
            let tls = tls_handshake(
                tcp,
                &options.tls,
                &options.host,
                &server,
                options.connect_timeout,
            )
            .await?;
            Session::start(ImapStream::Tls(Box::new(tls)), server, options.session).await?
        }
        Security::StartTls => {
            let plain = Session::start(tcp, server, options.session).await?;
            plain
                .starttls(&options.tls, &options.host)
                .await?
                .map_stream(|s| ImapStream::Tls(Box::new(s)))
        }
        Security::None => Session::start(ImapStream::Plain(tcp), server, options.session).await?,
    };
    session.refresh_capabilities_if_stale().await?;
    Ok(session)
}
