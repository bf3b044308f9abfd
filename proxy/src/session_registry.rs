//! The live relayed sessions, so that a cut-over (a route that changed) or a shutdown can
//! close the sessions it concerns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::route_source::RouteTable;

/// Why a session is being closed by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kick {
    /// The user's route moved (cut-over); the text goes into `* BYE [UNAVAILABLE]`.
    RouteChanged,
    /// The proxy is shutting down.
    Shutdown,
}

struct LiveSession {
    login: String,
    backend_key: String,
    kick: Option<oneshot::Sender<Kick>>,
}

/// Every relayed session.
#[derive(Default)]
pub(crate) struct SessionRegistry {
    next_id: AtomicU64,
    sessions: Mutex<HashMap<u64, LiveSession>>,
}

/// Removes its session from the registry when dropped.
pub(crate) struct SessionGuard {
    registry: Arc<SessionRegistry>,
    id: u64,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.registry
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl SessionRegistry {
    /// Registers a session of `login` relayed to the backend with `backend_key`.
    pub(crate) fn register(
        self: &Arc<Self>,
        login: &str,
        backend_key: String,
    ) -> (SessionGuard, oneshot::Receiver<Kick>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                LiveSession {
                    login: login.to_owned(),
                    backend_key,
                    kick: Some(tx),
                },
            );
        (
            SessionGuard {
                registry: Arc::clone(self),
                id,
            },
            rx,
        )
    }

    /// The number of live sessions.
    pub(crate) fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Re-resolves every session's login and closes those whose backend changed (or that
    /// have no route any more). Returns how many were closed.
    pub(crate) fn sweep(&self, routes: &RouteTable) -> usize {
        let logins: Vec<(u64, String, String)> = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, s)| s.kick.is_some())
            .map(|(id, s)| (*id, s.login.clone(), s.backend_key.clone()))
            .collect();
        // Many sessions share a login (several devices, several folders).
        let mut resolved: HashMap<String, Option<String>> = HashMap::new();
        let mut moved = Vec::new();
        for (id, login, key) in logins {
            let now = match resolved.get(&login) {
                Some(k) => k.clone(),
                None => match routes.resolve(&login) {
                    Ok(route) => {
                        let k = route.map(|r| r.backend.key());
                        resolved.insert(login.clone(), k.clone());
                        k
                    }
                    Err(e) => {
                        // A store hiccup must not close everyone; try at the next sweep.
                        tracing::warn!(error = %e, "cannot re-check routes for cut-over");
                        return 0;
                    }
                },
            };
            if now.as_deref() != Some(key.as_str()) {
                moved.push(id);
            }
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let mut closed = 0;
        for id in moved {
            if let Some(tx) = sessions.get_mut(&id).and_then(|s| s.kick.take()) {
                closed += usize::from(tx.send(Kick::RouteChanged).is_ok());
            }
        }
        closed
    }

    /// Asks every session to close.
    pub(crate) fn kick_all(&self, kick: Kick) {
        for s in self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values_mut()
        {
            if let Some(tx) = s.kick.take() {
                let _ = tx.send(kick.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route_file::FileRoutes;
    use crate::route_source::RouteSource;

    #[test]
    fn sweep_closes_only_sessions_whose_route_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes");
        std::fs::write(&path, "a@x old:143 none\nb@x old:143 none\n").unwrap();
        let file = Arc::new(FileRoutes::open(&path).unwrap());
        let routes = RouteTable::new(vec![file.clone() as Arc<dyn RouteSource>], None);
        let old_key = routes.resolve("a@x").unwrap().unwrap().backend.key();
        let registry = Arc::new(SessionRegistry::default());
        let (_ga, mut a) = registry.register("a@x", old_key.clone());
        let (_gb, mut b) = registry.register("b@x", old_key.clone());
        assert_eq!(registry.sweep(&routes), 0);
        std::fs::write(&path, "a@x new:143 none\nb@x old:143 none\n").unwrap();
        assert!(file.refresh().unwrap());
        assert_eq!(registry.sweep(&routes), 1);
        assert_eq!(a.try_recv(), Ok(Kick::RouteChanged));
        assert!(b.try_recv().is_err());
        assert_eq!(registry.sweep(&routes), 0, "a session is kicked once");
        drop(_ga);
        assert_eq!(registry.len(), 1);
        registry.kick_all(Kick::Shutdown);
        assert_eq!(b.try_recv(), Ok(Kick::Shutdown));
    }
}
