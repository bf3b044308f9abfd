//! The routing IMAP proxy of imapmirror: users keep one server name while their mailbox
//! moves, and are sent to the source or the target by the state of their migration.
//!
//! ```text
//! client ─TLS/STARTTLS─▶ pre-auth (pre_auth.rs, sans-IO) ─▶ route (RouteTable) ─▶
//! backend connection from a warm pool (TLS, verified) ─▶ backend login ─▶ relay
//! ```
//!
//! The CLI builds a [`ProxyConfig`] and a [`RouteTable`] ([`BatchRoutes`] for the batches
//! of a state directory, [`FileRoutes`] for a route file, a default backend) and calls
//! [`run`]. Routes are polled every [`ProxyConfig::route_poll_interval`]; a session whose
//! route moved (its batch became Completed) is closed with `* BYE [UNAVAILABLE]` so the
//! client reconnects and lands on the target. SIGHUP reloads the certificate without
//! dropping sessions.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod backend_connection;
mod backend_endpoint;
mod backend_pool;
mod backend_quirks;
mod client_session;
mod context;
mod error;
#[doc(hidden)]
pub mod fuzz_checks;
mod login_retry;
mod login_throttle;
mod pre_auth;
mod proxy_config;
pub mod proxy_metrics;
mod relay;
mod response_boundary;
mod route_file;
mod route_source;
mod server_response;
mod session_registry;
mod tls_config;
mod transport;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use backend_endpoint::{
    AdminCredentials, BackendEndpoint, BackendLogin, BackendSecurity, SecretBytes, admin_login,
};
pub use backend_pool::PoolSettings;
pub use error::ProxyError;
pub use login_throttle::LoginThrottle;
pub use pre_auth::{ClientLogin, PreAuth, PreAuthAction, PreAuthSettings};
pub use proxy_config::{IdForwarding, Limits, ListenerConfig, ListenerMode, ProxyConfig, TlsFiles};
pub use route_file::{FileRoutes, RouteFileTable};
pub use route_source::{
    BatchRoutes, LoginPolicy, MigrationSide, OwnedStore, Route, RouteOrigin, RouteSource,
    RouteTable, SnapshotSource,
};
pub use tls_config::ServerIdentity;

use context::ProxyContext;
use session_registry::{Kick, SessionRegistry};

/// A proxy whose sockets are bound; [`Proxy::run`] serves them.
pub struct Proxy {
    ctx: Arc<ProxyContext>,
    listeners: Vec<(TcpListener, ListenerMode)>,
}

impl Proxy {
    /// Checks the configuration, loads the certificate, binds every listener and starts
    /// warming the backend pools (a backend that is down is logged, not fatal).
    pub async fn bind(config: ProxyConfig, routes: RouteTable) -> Result<Proxy, ProxyError> {
        config.validate()?;
        let identity = match &config.tls {
            Some(files) => Some(Arc::new(ServerIdentity::load(&files.cert, &files.key)?)),
            None => None,
        };
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let listener = TcpListener::bind(l.addr)
                .await
                .map_err(|source| ProxyError::Bind {
                    addr: l.addr,
                    source,
                })?;
            listeners.push((listener, l.mode));
        }
        let ctx = Arc::new(ProxyContext {
            pools: backend_pool::BackendPools::new(config.pool),
            throttle: LoginThrottle::new(
                config.limits.max_failed_logins,
                config.limits.failed_login_window,
            ),
            routes: Arc::new(routes),
            identity,
            registry: Arc::new(SessionRegistry::default()),
            config,
        });
        warm_pools(&ctx).await?;
        for d in ctx.routes.describe() {
            tracing::info!(source = %d, "routes");
        }
        Ok(Proxy { ctx, listeners })
    }

    /// The bound addresses, in the order of [`ProxyConfig::listeners`].
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes; then stops accepting, closes live sessions with
    /// `* BYE [UNAVAILABLE]` and waits up to [`ProxyConfig::shutdown_grace`] for them.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ProxyError> {
        let ctx = self.ctx;
        let max = ctx.config.limits.max_connections;
        let slots = Arc::new(Semaphore::new(max));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for (listener, mode) in self.listeners {
            let addr = listener.local_addr().ok();
            tracing::info!(address = ?addr, mode = ?mode, "listening");
            tasks.push(tokio::spawn(accept_loop(
                Arc::clone(&ctx),
                listener,
                mode,
                Arc::clone(&slots),
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(watch_routes(
            Arc::clone(&ctx),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(reload_on_sighup(
            Arc::clone(&ctx),
            stop_rx.clone(),
        )));
        shutdown.await;
        tracing::info!(sessions = ctx.registry.len(), "proxy shutting down");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        ctx.registry.kick_all(Kick::Shutdown);
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        let drained =
            tokio::time::timeout(ctx.config.shutdown_grace, slots.acquire_many(all)).await;
        if drained.is_err() {
            tracing::warn!("some sessions did not close within the shutdown grace period");
        }
        ctx.pools.close();
        Ok(())
    }
}

/// Binds, serves until `shutdown`, and cleans up: the library entry point of
/// `imapmirror proxy`.
pub async fn run(
    config: ProxyConfig,
    routes: RouteTable,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ProxyError> {
    Proxy::bind(config, routes).await?.run(shutdown).await
}

/// Opens the pools of every known backend and waits (bounded) for their first
/// connection, so that the first clients see the backends' capabilities.
async fn warm_pools(ctx: &Arc<ProxyContext>) -> Result<(), ProxyError> {
    let backends = ctx.routes.backends()?;
    let mut waits = Vec::new();
    for b in backends {
        let pool = ctx.pools.pool(&b)?;
        let timeout = ctx.config.pool.io_timeout;
        waits.push(tokio::spawn(async move {
            match tokio::time::timeout(timeout, pool.fill()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(backend = %b.label(), error = %e, "backend not reachable at start-up"),
                Err(_) => tracing::warn!(backend = %b.label(), "backend slow to answer at start-up"),
            }
        }));
    }
    for w in waits {
        let _ = w.await;
    }
    Ok(())
}

async fn accept_loop(
    ctx: Arc<ProxyContext>,
    listener: TcpListener,
    mode: ListenerMode,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                let ctx = Arc::clone(&ctx);
                tokio::spawn(async move {
                    client_session::serve(ctx, tcp, peer, mode).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tracing::warn!(client = %peer, "connection refused: maximum number of connections reached");
                tokio::spawn(refuse_connection(tcp, mode));
            }
        }
    }
}

async fn refuse_connection(mut tcp: tokio::net::TcpStream, mode: ListenerMode) {
    use tokio::io::AsyncWriteExt;
    // On a TLS port the client expects a handshake; a plain BYE would read as garbage,
    // so the connection is simply closed there.
    if mode == ListenerMode::Plain {
        let line = server_response::status(
            None,
            "BYE",
            Some("UNAVAILABLE"),
            "Too many connections; try again later.",
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&line)).await;
    }
}

async fn watch_routes(ctx: Arc<ProxyContext>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(ctx.config.route_poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let c = Arc::clone(&ctx);
        // The store answers synchronously (sled); keep it off the reactor threads.
        let swept = tokio::task::spawn_blocking(move || -> Result<Option<usize>, ProxyError> {
            if c.routes.refresh()? {
                let backends = c.routes.backends()?;
                for b in &backends {
                    c.pools.pool(b)?;
                }
                let closed = c.pools.retain(&backends);
                if closed > 0 {
                    tracing::info!(
                        pools = closed,
                        "closed the pools of backends no route leads to"
                    );
                }
                Ok(Some(c.registry.sweep(&c.routes)))
            } else {
                Ok(None)
            }
        })
        .await;
        match swept {
            Ok(Ok(Some(n))) => tracing::info!(sessions_closed = n, "routes changed"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot refresh routes; keeping the previous ones")
            }
            Err(e) => tracing::error!(error = %e, "route refresh task failed"),
        }
    }
}

async fn reload_on_sighup(ctx: Arc<ProxyContext>, mut stop: watch::Receiver<bool>) {
    let Some(identity) = ctx.identity.clone() else {
        return;
    };
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; certificate reload is off");
            return;
        }
    };
    loop {
        tokio::select! {
            got = hup.recv() => if got.is_none() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        match identity.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate reload failed; keeping the previous one")
            }
        }
    }
}
