//! The tokio driver of one client connection: TLS, the pre-auth machine over the socket,
//! routing and backend login, then the relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use imapmirror_protocol::{CommandDecoder, CommandDecoderConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use tracing::Instrument;

use crate::backend_connection::{BackendConnection, LoginOutcome};
use crate::backend_endpoint::{BackendLogin, admin_login};
use crate::backend_pool::BackendPool;
use crate::context::ProxyContext;
use crate::error::ProxyError;
use crate::login_retry;
use crate::pre_auth::{ClientLogin, PreAuth, PreAuthAction, PreAuthSettings};
use crate::proxy_config::ListenerMode;
use crate::proxy_metrics::{self, LoginResult};
use crate::relay::{RelayEnd, relay};
use crate::route_source::{LoginPolicy, Route};
use crate::server_response::status;
use crate::session_registry::Kick;
use crate::transport::ClientStream;

/// A client that logged in: what the relay needs.
struct Authenticated {
    client: ClientStream,
    /// Bytes the client sent after its login command (pipelined); they go to the backend.
    client_leftover: BytesMut,
    backend: BackendConnection,
    login: String,
    route: Route,
}

/// How the pre-auth phase ended without a login.
enum PreAuthEnd {
    /// The client logged out, closed, or was disconnected by a limit.
    Closed(&'static str),
    /// The client's socket failed.
    Io(std::io::Error),
}

impl From<std::io::Error> for PreAuthEnd {
    fn from(e: std::io::Error) -> Self {
        PreAuthEnd::Io(e)
    }
}

/// Serves one accepted connection to its end.
pub(crate) async fn serve(
    ctx: Arc<ProxyContext>,
    tcp: TcpStream,
    peer: SocketAddr,
    mode: ListenerMode,
) {
    let span = tracing::info_span!("session", client = %peer);
    async move {
        let _ = tcp.set_nodelay(true);
        let deadline = tokio::time::Instant::now() + ctx.config.limits.pre_auth_timeout;
        let authenticated = match pre_auth(&ctx, tcp, peer, mode, deadline).await {
            Ok(a) => a,
            Err(PreAuthEnd::Closed(why)) => {
                tracing::debug!(reason = why, "closed before login");
                return;
            }
            Err(PreAuthEnd::Io(e)) => {
                tracing::debug!(error = %e, "client connection failed before login");
                return;
            }
        };
        relay_session(&ctx, authenticated).await;
    }
    .instrument(span)
    .await;
}

async fn write(client: &mut ClientStream, bytes: &[u8]) -> std::io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await
}

fn decoder(ctx: &ProxyContext, machine: &PreAuth) -> CommandDecoder {
    let l = &ctx.config.limits;
    let max_literal = l.max_literal as u64;
    CommandDecoder::new(CommandDecoderConfig {
        max_command: l.max_line + l.max_literal,
        max_line: l.max_line,
        max_non_sync_literal: if machine.literal_plus() {
            max_literal
        } else {
            max_literal.min(4096)
        },
    })
}

async fn pre_auth(
    ctx: &Arc<ProxyContext>,
    tcp: TcpStream,
    peer: SocketAddr,
    mode: ListenerMode,
    deadline: tokio::time::Instant,
) -> Result<Authenticated, PreAuthEnd> {
    let mut client = match mode {
        ListenerMode::Plain => ClientStream::Plain(tcp),
        ListenerMode::ImplicitTls => {
            let Some(identity) = &ctx.identity else {
                return Err(PreAuthEnd::Closed("TLS listener without identity"));
            };
            let handshake = identity.acceptor().accept(tcp);
            match tokio::time::timeout_at(deadline, handshake).await {
                Ok(Ok(tls)) => ClientStream::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "client TLS handshake failed");
                    return Err(PreAuthEnd::Closed("TLS handshake failed"));
                }
                Err(_) => return Err(PreAuthEnd::Closed("TLS handshake timed out")),
            }
        }
    };
    let mut machine = PreAuth::new(PreAuthSettings {
        tls_active: client.is_tls(),
        starttls_available: ctx.identity.is_some(),
        allow_plaintext: ctx.config.allow_plaintext,
        backend_capabilities: ctx.pools.common_capabilities(),
        max_bad_commands: ctx.config.limits.max_bad_commands,
    });
    let mut decoder = decoder(ctx, &machine);
    let mut buf = BytesMut::with_capacity(IDLE_BUFFER);
    let mut grown = false;
    write(&mut client, &machine.greeting()).await?;
    loop {
        loop {
            let actions = match decoder.decode(&mut buf) {
                Ok(Some(frame)) => machine.handle_frame(&frame),
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(error = %e, "client sent an oversized or malformed command before login");
                    machine.handle_limit_exceeded("a command line or literal")
                }
            };
            for action in actions {
                match action {
                    PreAuthAction::Send(bytes) => write(&mut client, &bytes).await?,
                    PreAuthAction::Close => {
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(2),
                            client.shutdown(),
                        )
                        .await;
                        return Err(PreAuthEnd::Closed("logout or limit"));
                    }
                    PreAuthAction::StartTls => {
                        if !buf.is_empty() {
                            // Commands pipelined after STARTTLS would be executed as if
                            // they came over TLS (CVE-2011-0411).
                            return Err(PreAuthEnd::Closed("data pipelined after STARTTLS"));
                        }
                        let (ClientStream::Plain(tcp), Some(identity)) = (client, &ctx.identity)
                        else {
                            return Err(PreAuthEnd::Closed("STARTTLS in an impossible state"));
                        };
                        match tokio::time::timeout_at(deadline, identity.acceptor().accept(tcp))
                            .await
                        {
                            Ok(Ok(tls)) => client = ClientStream::Tls(Box::new(tls)),
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "client STARTTLS handshake failed");
                                return Err(PreAuthEnd::Closed("STARTTLS handshake failed"));
                            }
                            Err(_) => {
                                return Err(PreAuthEnd::Closed("STARTTLS handshake timed out"));
                            }
                        }
                        machine.tls_started();
                        decoder = self::decoder(ctx, &machine);
                    }
                    PreAuthAction::Login(login) => {
                        match tokio::time::timeout_at(
                            deadline,
                            attempt_login(ctx, &mut client, peer, &machine, login),
                        )
                        .await
                        {
                            Err(_) => {
                                let _ = write(
                                    &mut client,
                                    &status(None, "BYE", None, "Login timed out."),
                                )
                                .await;
                                return Err(PreAuthEnd::Closed("login timed out"));
                            }
                            Ok(Err(e)) => return Err(PreAuthEnd::Io(e)),
                            Ok(Ok(Some((backend, login, route)))) => {
                                return Ok(Authenticated {
                                    client,
                                    client_leftover: buf,
                                    backend,
                                    login,
                                    route,
                                });
                            }
                            Ok(Ok(None)) => machine.login_refused(),
                        }
                    }
                }
            }
        }
        release_if_drained(&mut buf, &mut grown);
        match tokio::time::timeout_at(deadline, client.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return Err(PreAuthEnd::Closed("client closed the connection")),
            Ok(Ok(_)) => grown |= buf.capacity() > IDLE_BUFFER,
            Ok(Err(e)) => return Err(PreAuthEnd::Io(e)),
            Err(_) => {
                let _ = write(
                    &mut client,
                    &status(
                        None,
                        "BYE",
                        None,
                        "Disconnected for inactivity before login.",
                    ),
                )
                .await;
                return Err(PreAuthEnd::Closed("pre-auth timeout"));
            }
        }
    }
}

/// The pre-login read buffer while the client sends short commands. A long line (up to
/// [`crate::Limits::max_line`], 64 KiB) grows it; [`release_if_drained`] gives that
/// memory back once the line is consumed, so 10,000 idle sessions stay small.
const IDLE_BUFFER: usize = 1024;

/// Replaces a grown, empty buffer by a small one. The decoder splits frames off the
/// buffer, so its capacity alone cannot tell that it still holds a large allocation:
/// `grown` records that it was enlarged since the last release.
fn release_if_drained(buf: &mut BytesMut, grown: &mut bool) {
    if *grown && buf.is_empty() {
        *buf = BytesMut::with_capacity(IDLE_BUFFER);
        *grown = false;
    }
}

/// The client's `x-proxy-ttl`, if it sent one in ID.
fn client_proxy_ttl(machine: &PreAuth) -> Option<u32> {
    machine
        .client_id()
        .iter()
        .find(|(k, _)| k == "x-proxy-ttl")
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| v.trim().parse().ok())
}

/// Routes and logs in. `Ok(None)`: refused (the client was answered and may retry).
async fn attempt_login(
    ctx: &Arc<ProxyContext>,
    client: &mut ClientStream,
    peer: SocketAddr,
    machine: &PreAuth,
    request: ClientLogin,
) -> std::io::Result<Option<(BackendConnection, String, Route)>> {
    let tag = request.tag.as_str();
    let no = |code: &str, text: &str| status(Some(tag), "NO", Some(code), text);
    if let Err(wait) = ctx.throttle.check(peer.ip(), Instant::now()) {
        tracing::warn!("login refused: too many failed logins from this address");
        let text = format!(
            "Too many failed logins from your address; try again in {} s.",
            wait.as_secs().max(1)
        );
        proxy_metrics::login(LoginResult::Throttled);
        write(client, &no("UNAVAILABLE", &text)).await?;
        return Ok(None);
    }
    let Ok(login) = std::str::from_utf8(request.credentials.mailbox_user()).map(str::to_owned)
    else {
        ctx.throttle.failed(peer.ip(), Instant::now());
        proxy_metrics::login(LoginResult::Refused);
        write(
            client,
            &no("AUTHENTICATIONFAILED", "Authentication failed."),
        )
        .await?;
        return Ok(None);
    };
    // The client's self-description (RFC 2971 ID), for support questions.
    let client_name = machine
        .client_id()
        .iter()
        .find(|(k, _)| k == "name")
        .and_then(|(_, v)| v.clone())
        .unwrap_or_default();
    let span = tracing::info_span!("login", user = %login, client_name = %client_name);
    async move {
        let ttl = match client_proxy_ttl(machine) {
            Some(t) if t <= 1 => {
                tracing::warn!(client_ttl = t, "login refused: proxy loop (x-proxy-ttl exhausted)");
                proxy_metrics::login(LoginResult::ProxyLoop);
                write(client, &no("UNAVAILABLE", "Proxy loop detected: check the proxy's routes.")).await?;
                return Ok(None);
            }
            Some(t) => (t - 1).min(ctx.config.id_forwarding.proxy_ttl),
            None => ctx.config.id_forwarding.proxy_ttl,
        };
        let route = match ctx.routes.resolve(&login) {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::info!("login refused: no route for this user and no default backend");
                ctx.throttle.failed(peer.ip(), Instant::now());
                proxy_metrics::login(LoginResult::NoRoute);
                write(client, &no("AUTHENTICATIONFAILED", "Authentication failed.")).await?;
                return Ok(None);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot look up the route");
                proxy_metrics::login(LoginResult::Unavailable);
                write(client, &no("UNAVAILABLE", "Routing is unavailable right now; try again later.")).await?;
                return Ok(None);
            }
        };
        tracing::info!(route = %route.origin, backend = %route.backend.label(), "routing login");
        proxy_metrics::routed(&route);
        let credentials = match &route.login {
            LoginPolicy::PassThrough => request.credentials.clone(),
            LoginPolicy::Admin { verify_with } => {
                match verify_credentials(ctx, verify_with, tag, &request.credentials).await {
                    Ok(None) => {}
                    Ok(Some(refusal)) => {
                        if refusal.judged_credentials {
                            ctx.throttle.failed(peer.ip(), Instant::now());
                            proxy_metrics::login(LoginResult::Refused);
                        } else {
                            proxy_metrics::login(LoginResult::Unavailable);
                        }
                        for line in refusal.lines {
                            write(client, &line).await?;
                        }
                        return Ok(None);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot verify the user's credentials on the source");
                        proxy_metrics::login(LoginResult::Unavailable);
                        write(client, &no("UNAVAILABLE", "The mail server is unavailable right now; try again later.")).await?;
                        return Ok(None);
                    }
                }
                match admin_login(&route.backend, &login) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot build the admin login");
                        proxy_metrics::login(LoginResult::Unavailable);
                        write(client, &no("UNAVAILABLE", "The mail server is unavailable right now; try again later.")).await?;
                        return Ok(None);
                    }
                }
            }
        };
        match backend_login(ctx, &route, tag, &credentials, peer, ttl).await {
            Ok((conn, LoginOutcome::Accepted(lines))) => {
                for line in &lines {
                    write(client, line).await?;
                }
                ctx.throttle.succeeded(peer.ip());
                proxy_metrics::login(LoginResult::Accepted);
                tracing::info!(backend = %route.backend.label(), "login accepted");
                Ok(Some((conn, login, route)))
            }
            Ok((_, LoginOutcome::Refused(lines))) => {
                if login_retry::is_transient_refusal(&lines) {
                    tracing::warn!(backend = %route.backend.label(), "backend still unavailable for login after retries");
                    proxy_metrics::login(LoginResult::Unavailable);
                } else {
                    ctx.throttle.failed(peer.ip(), Instant::now());
                    proxy_metrics::login(LoginResult::Refused);
                    tracing::info!(backend = %route.backend.label(), "login refused by the backend");
                }
                for line in &lines {
                    write(client, line).await?;
                }
                Ok(None)
            }
            Ok((_, LoginOutcome::NotSent(line))) => {
                tracing::info!(backend = %route.backend.label(), "login not sent: the backend cannot act for another user");
                proxy_metrics::login(LoginResult::Unavailable);
                write(client, &line).await?;
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(backend = %route.backend.label(), error = %e, "backend unavailable for login");
                proxy_metrics::login(LoginResult::Unavailable);
                write(client, &no("UNAVAILABLE", "The mail server is unavailable right now; try again later.")).await?;
                Ok(None)
            }
        }
    }
    .instrument(span)
    .await
}

/// Logs in on the route's backend: a pooled connection that turns out to be stale is
/// replaced by a fresh one once, and a login refused with `NO [UNAVAILABLE]` is retried
/// (see [`login_retry`]).
async fn backend_login(
    ctx: &ProxyContext,
    route: &Route,
    tag: &str,
    credentials: &BackendLogin,
    peer: SocketAddr,
    ttl: u32,
) -> Result<(BackendConnection, LoginOutcome), ProxyError> {
    let pool = ctx.pools.pool(&route.backend)?;
    let forward_id = ctx.config.id_forwarding.enabled.then(|| {
        [
            ("x-originating-ip", peer.ip().to_string()),
            ("x-originating-port", peer.port().to_string()),
            ("x-proxy-ttl", ttl.to_string()),
        ]
    });
    let (result, _) = login_retry::with_retries(
        &login_retry::BACKOFF,
        || login_once(&pool, tag, credentials, forward_id.as_ref()),
        |(_, outcome)| matches!(outcome, LoginOutcome::Refused(lines) if login_retry::is_transient_refusal(lines)),
    )
    .await?;
    Ok(result)
}

/// One login on a connection of `pool`, with the forwarded ID first if asked; a pooled
/// connection the backend closed meanwhile is replaced by a new one once.
async fn login_once(
    pool: &BackendPool,
    tag: &str,
    credentials: &BackendLogin,
    forward_id: Option<&[(&str, String); 3]>,
) -> Result<(BackendConnection, LoginOutcome), ProxyError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut conn = pool.checkout().await?;
        let result = async {
            if let Some(fields) = forward_id
                && !conn.send_id(fields).await?
            {
                tracing::debug!(backend = %conn.endpoint().label(), "backend refused the forwarded ID");
            }
            conn.login(tag, credentials).await
        }
        .await;
        match result {
            Ok(outcome) => return Ok((conn, outcome)),
            Err(ProxyError::BackendUnavailable { .. }) if attempt == 1 => {
                tracing::debug!("pooled backend connection was stale; retrying on a new one");
            }
            Err(e) => return Err(e),
        }
    }
}

/// A refusal of the client's credentials by the server that verifies them.
struct VerifyRefusal {
    /// The lines to forward.
    lines: Vec<Bytes>,
    /// False when the credentials were not judged (the server was unavailable, or the
    /// login could not be sent): the login throttle does not count it.
    judged_credentials: bool,
}

/// Checks the client's own credentials by a real login on `verify_with`; `Some` is the
/// refusal to forward.
async fn verify_credentials(
    ctx: &ProxyContext,
    verify_with: &Arc<crate::backend_endpoint::BackendEndpoint>,
    tag: &str,
    credentials: &BackendLogin,
) -> Result<Option<VerifyRefusal>, ProxyError> {
    let pool = ctx.pools.pool(verify_with)?;
    let ((conn, outcome), _) = login_retry::with_retries(
        &login_retry::BACKOFF,
        || login_once(&pool, tag, credentials, None),
        |(_, outcome)| matches!(outcome, LoginOutcome::Refused(lines) if login_retry::is_transient_refusal(lines)),
    )
    .await?;
    match outcome {
        LoginOutcome::Accepted(_) => {
            conn.logout().await;
            Ok(None)
        }
        LoginOutcome::Refused(lines) => Ok(Some(VerifyRefusal {
            judged_credentials: !login_retry::is_transient_refusal(&lines),
            lines,
        })),
        LoginOutcome::NotSent(line) => Ok(Some(VerifyRefusal {
            lines: vec![line],
            judged_credentials: false,
        })),
    }
}

async fn relay_session(ctx: &Arc<ProxyContext>, a: Authenticated) {
    let Authenticated {
        mut client,
        client_leftover,
        backend,
        login,
        route,
    } = a;
    let backend_label = route.backend.label();
    let key = route.backend.key();
    let (_guard, kick) = ctx.registry.register(&login, key.clone());
    let _open = OpenSession::new(proxy_metrics::sessions_open(&route.backend.name));
    // A cut-over between the route lookup and the registration would be missed by the
    // sweep; check once more now that the session is visible to it.
    let moved = !matches!(ctx.routes.resolve(&login), Ok(Some(r)) if r.backend.key() == key);
    let (mut backend, backend_leftover) = backend.into_parts();
    let mut primed = async {
        if !backend_leftover.is_empty() {
            write(&mut client, &backend_leftover).await?;
        }
        if !client_leftover.is_empty() {
            backend.write_all(&client_leftover).await?;
            backend.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    }
    .await;
    if moved && primed.is_ok() {
        let _ = write(
            &mut client,
            &status(
                None,
                "BYE",
                Some("UNAVAILABLE"),
                crate::relay::CUT_OVER_TEXT,
            ),
        )
        .await;
        primed = Err(std::io::Error::other("route changed during login"));
    }
    // The login-time buffers are not needed any more; idle sessions stay small.
    drop((backend_leftover, client_leftover));
    if let Err(e) = primed {
        tracing::info!(user = %login, backend = %backend_label, error = %e, "session closed right after login");
        return;
    }
    let limits = &ctx.config.limits;
    let report = relay(
        client,
        backend,
        limits.relay_buffer,
        limits.idle_timeout,
        kick,
    )
    .await;
    let level_warn = matches!(report.end, RelayEnd::Failed(_));
    if level_warn {
        tracing::warn!(user = %login, backend = %backend_label, bytes_from_client = report.client_to_backend, bytes_to_client = report.backend_to_client, end = %report.end, "session closed");
    } else {
        tracing::info!(user = %login, backend = %backend_label, bytes_from_client = report.client_to_backend, bytes_to_client = report.backend_to_client, end = %report.end, "session closed");
    }
    let moved = matches!(report.end, RelayEnd::Kicked(Kick::RouteChanged));
    if moved {
        tracing::info!(user = %login, "session moved by cut-over");
    }
    proxy_metrics::session_ended(report.client_to_backend, report.backend_to_client, moved);
}

/// A relayed session in `imapmirror_proxy_sessions_open`, whichever way it ends.
struct OpenSession(metrics::Gauge);

impl OpenSession {
    fn new(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        OpenSession(gauge)
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_grows_the_buffer_and_draining_it_shrinks_it_back() {
        let mut buf = BytesMut::with_capacity(IDLE_BUFFER);
        let mut grown = false;
        buf.extend_from_slice(&[b'x'; 40 * 1024]);
        grown |= buf.capacity() > IDLE_BUFFER;
        // Half consumed: the rest of the line is still needed.
        let _first = buf.split_to(20 * 1024);
        release_if_drained(&mut buf, &mut grown);
        assert_eq!(buf.len(), 20 * 1024);
        let _rest = buf.split_to(buf.len());
        release_if_drained(&mut buf, &mut grown);
        assert_eq!(buf.capacity(), IDLE_BUFFER);
        assert!(!grown);
    }
}
