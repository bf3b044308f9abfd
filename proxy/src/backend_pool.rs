//! Warm pools of backend connections: per endpoint, a few connections that are already
//! connected, greeted and TLS-ready (never logged in), so a client's login does not wait
//! for a TCP and TLS handshake.
//!
//! A background task per pool keeps it at its size, retires connections before the
//! backend's pre-login timeout would close them, and backs off while the backend is
//! down. The capabilities the backends announce before login are remembered here, to
//! bound what the proxy promises clients before login.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::sync::Notify;

use crate::backend_connection::BackendConnection;
use crate::backend_endpoint::{BackendEndpoint, BackendSecurity};
use crate::error::ProxyError;
use crate::tls_config::backend_client_config;

/// Sizes and timeouts of the pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Idle connections kept per endpoint (0 disables warming).
    pub warm_connections: usize,
    /// A pooled connection older than this is replaced: servers close idle pre-login
    /// connections (Dovecot after a few minutes).
    pub max_idle_age: Duration,
    /// The longest wait for a connect, a handshake or a backend's answer.
    pub io_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            warm_connections: 2,
            max_idle_age: Duration::from_secs(60),
            io_timeout: Duration::from_secs(10),
        }
    }
}

/// The pool of one endpoint.
pub(crate) struct BackendPool {
    endpoint: Arc<BackendEndpoint>,
    tls: Option<Arc<ClientConfig>>,
    settings: PoolSettings,
    idle: Mutex<VecDeque<BackendConnection>>,
    capabilities: Mutex<Option<Vec<String>>>,
    wake: Notify,
    closed: AtomicBool,
}

impl BackendPool {
    fn new(endpoint: Arc<BackendEndpoint>, settings: PoolSettings) -> Result<Self, ProxyError> {
        let tls = match endpoint.security {
            BackendSecurity::Plain => None,
            BackendSecurity::Tls | BackendSecurity::StartTls => {
                Some(backend_client_config(&endpoint)?)
            }
        };
        Ok(BackendPool {
            endpoint,
            tls,
            settings,
            idle: Mutex::new(VecDeque::new()),
            capabilities: Mutex::new(None),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        })
    }

    async fn connect(&self) -> Result<BackendConnection, ProxyError> {
        let conn = BackendConnection::connect(
            Arc::clone(&self.endpoint),
            self.tls.clone(),
            self.settings.io_timeout,
        )
        .await?;
        *self
            .capabilities
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(conn.capabilities().to_vec());
        Ok(conn)
    }

    /// A ready connection: a pooled one if a fresh one is there, else a new one.
    pub(crate) async fn checkout(&self) -> Result<BackendConnection, ProxyError> {
        loop {
            let pooled = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(mut conn) = pooled else { break };
            self.wake.notify_one();
            if conn.established().elapsed() < self.settings.max_idle_age
                && conn.is_idle_and_open().await
            {
                return Ok(conn);
            }
        }
        self.wake.notify_one();
        self.connect().await
    }

    /// The capabilities the backend announced before login, once it was reached.
    pub(crate) fn capabilities(&self) -> Option<Vec<String>> {
        self.capabilities
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fills the pool once; returns the first error (for start-up warming).
    pub(crate) async fn fill(&self) -> Result<(), ProxyError> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|c| c.established().elapsed() < self.settings.max_idle_age);
        while self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            < self.settings.warm_connections
        {
            let conn = self.connect().await?;
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(conn);
        }
        Ok(())
    }

    /// Keeps the pool filled until [`BackendPools::close`].
    async fn keep_warm(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(500);
        while !self.closed.load(Ordering::Relaxed) {
            match self.fill().await {
                Ok(()) => backoff = Duration::from_millis(500),
                Err(e) => {
                    tracing::warn!(backend = %self.endpoint.label(), error = %e, "cannot warm the backend pool");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
            // Woken by a checkout; else look again when the oldest connection ages out.
            let recheck = (self.settings.max_idle_age / 4).max(Duration::from_millis(250));
            let _ = tokio::time::timeout(recheck, self.wake.notified()).await;
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// The pools of every endpoint, created on first use.
pub(crate) struct BackendPools {
    settings: PoolSettings,
    pools: Mutex<HashMap<String, Arc<BackendPool>>>,
}

impl BackendPools {
    pub(crate) fn new(settings: PoolSettings) -> Self {
        BackendPools {
            settings,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The pool of `endpoint`, created (and its warming task started) if needed.
    pub(crate) fn pool(
        &self,
        endpoint: &Arc<BackendEndpoint>,
    ) -> Result<Arc<BackendPool>, ProxyError> {
        let key = endpoint.key();
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = pools.get(&key) {
            return Ok(Arc::clone(p));
        }
        let pool = Arc::new(BackendPool::new(Arc::clone(endpoint), self.settings)?);
        if self.settings.warm_connections > 0 {
            tokio::spawn(Arc::clone(&pool).keep_warm());
        }
        pools.insert(key, Arc::clone(&pool));
        Ok(pool)
    }

    /// The capabilities every reached backend offers before login (case-insensitive
    /// intersection, in the first backend's order); `None` before any was reached.
    pub(crate) fn common_capabilities(&self) -> Option<Vec<String>> {
        let pools: Vec<_> = self
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        intersect(pools.iter().filter_map(|p| p.capabilities()))
    }

    /// Closes the pools of backends no route leads to any more (a source after cut-over),
    /// so the proxy stops holding warm connections there; sessions already relayed keep
    /// theirs. Returns how many pools were closed.
    pub(crate) fn retain(&self, routed: &[Arc<BackendEndpoint>]) -> usize {
        let keep: std::collections::HashSet<String> = routed.iter().map(|b| b.key()).collect();
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        let before = pools.len();
        pools.retain(|key, pool| {
            let routed = keep.contains(key);
            if !routed {
                pool.closed.store(true, Ordering::Relaxed);
                pool.wake.notify_one();
            }
            routed
        });
        before - pools.len()
    }

    /// Stops the warming tasks and drops idle connections.
    pub(crate) fn close(&self) {
        for pool in self
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            pool.closed.store(true, Ordering::Relaxed);
            pool.wake.notify_one();
        }
    }
}

fn intersect(mut lists: impl Iterator<Item = Vec<String>>) -> Option<Vec<String>> {
    let mut common = lists.next()?;
    for other in lists {
        common.retain(|c| other.iter().any(|o| o.eq_ignore_ascii_case(c)));
    }
    Some(common)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_of_unrouted_backends_are_closed() {
        let pools = BackendPools::new(PoolSettings {
            warm_connections: 0,
            ..PoolSettings::default()
        });
        let source = Arc::new(BackendEndpoint::new(
            "src",
            "127.0.0.1",
            1,
            BackendSecurity::Plain,
        ));
        let target = Arc::new(BackendEndpoint::new(
            "tgt",
            "127.0.0.1",
            2,
            BackendSecurity::Plain,
        ));
        let old = pools.pool(&source).expect("pool");
        pools.pool(&target).expect("pool");
        assert_eq!(pools.retain(&[Arc::clone(&source), Arc::clone(&target)]), 0);
        // Cut-over: only the target is routed to now.
        assert_eq!(pools.retain(&[Arc::clone(&target)]), 1);
        assert!(old.closed.load(Ordering::Relaxed));
        assert_eq!(pools.pools.lock().expect("lock").len(), 1);
        // A route back to the source opens a fresh pool.
        let again = pools.pool(&source).expect("pool");
        assert!(!again.closed.load(Ordering::Relaxed));
    }

    #[test]
    fn intersection_keeps_what_everyone_offers() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(intersect(std::iter::empty()), None);
        assert_eq!(
            intersect(
                [
                    v(&["IMAP4REV1", "IDLE", "SASL-IR"]),
                    v(&["idle", "IMAP4REV1"])
                ]
                .into_iter()
            ),
            Some(v(&["IMAP4REV1", "IDLE"]))
        );
    }

    #[tokio::test]
    async fn checkout_of_a_down_backend_fails_fast() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let pools = BackendPools::new(PoolSettings {
            warm_connections: 0,
            ..PoolSettings::default()
        });
        let ep = Arc::new(BackendEndpoint::new(
            "down",
            "127.0.0.1",
            port,
            BackendSecurity::Plain,
        ));
        let pool = pools.pool(&ep).unwrap();
        let started = std::time::Instant::now();
        assert!(pool.checkout().await.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(pools.common_capabilities().is_none());
        pools.close();
    }
}
