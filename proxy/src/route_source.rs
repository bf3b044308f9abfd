//! Where a login is routed: pluggable sources of routes, layered into a [`RouteTable`].
//!
//! A source answers "which backend does this login go to" and says when its answers may
//! have changed ([`RouteSource::refresh`]); the proxy polls it (every second by default)
//! and closes sessions whose route moved — that is the cut-over. Two sources exist:
//! [`StoreRoutes`] (the batches of a state directory, for a proxy running in the process
//! that owns the store) and [`crate::FileRoutes`] (a static route file).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use imapmirror_storage::{BatchId, BatchStatus, Store, Timestamp};

use crate::backend_endpoint::BackendEndpoint;
use crate::error::ProxyError;

/// Which side of a migration a route points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationSide {
    /// The old server: the batch is not Completed yet.
    Source,
    /// The new server: the batch is Completed.
    Target,
}

/// Why a login goes where it goes (for logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOrigin {
    /// A migration batch in the state directory.
    Batch {
        /// The batch's name.
        name: String,
        /// Source or target, by the batch's status.
        side: MigrationSide,
    },
    /// A line of the route file.
    File {
        /// 1-based line number.
        line: usize,
    },
    /// The default backend.
    Default,
}

impl std::fmt::Display for RouteOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteOrigin::Batch { name, side } => write!(
                f,
                "batch {name} ({})",
                match side {
                    MigrationSide::Source => "source",
                    MigrationSide::Target => "target",
                }
            ),
            RouteOrigin::File { line } => write!(f, "route file line {line}"),
            RouteOrigin::Default => f.write_str("default backend"),
        }
    }
}

/// How the proxy logs in to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginPolicy {
    /// The client's credentials, as given.
    PassThrough,
    /// The backend endpoint's admin credentials in its admin format, for a target where
    /// the user's password differs. The client's own credentials are first checked by a
    /// real login on `verify_with` (the source server), so no one gets in without them.
    Admin {
        /// Where the client's credentials are verified.
        verify_with: Arc<BackendEndpoint>,
    },
}

/// Where one login goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The backend server.
    pub backend: Arc<BackendEndpoint>,
    /// Why.
    pub origin: RouteOrigin,
    /// With which credentials.
    pub login: LoginPolicy,
}

/// A source of routes. Implementations are cheap to query: the proxy asks on every login
/// and, after a change, once per live session.
pub trait RouteSource: Send + Sync {
    /// A short description for logs ("state directory /var/lib/imapmirror").
    fn describe(&self) -> String;

    /// The route of a login (any case), or `None` if this source does not know it.
    fn lookup(&self, login: &str) -> Result<Option<Route>, ProxyError>;

    /// Re-reads the source's state; true when routes may have changed since the last call.
    fn refresh(&self) -> Result<bool, ProxyError>;

    /// Every backend this source can route to (to warm pools and to bound the pre-login
    /// capabilities).
    fn backends(&self) -> Result<Vec<Arc<BackendEndpoint>>, ProxyError>;
}

/// Sources asked in order, then a default backend.
pub struct RouteTable {
    sources: Vec<Arc<dyn RouteSource>>,
    default: Option<Arc<BackendEndpoint>>,
}

impl RouteTable {
    /// Routes from `sources` (the first that knows a login wins), else `default`, else
    /// none (the login is refused).
    pub fn new(sources: Vec<Arc<dyn RouteSource>>, default: Option<BackendEndpoint>) -> Self {
        RouteTable {
            sources,
            default: default.map(Arc::new),
        }
    }

    /// The route of a login, or `None` when it has none (answered with NO).
    pub fn resolve(&self, login: &str) -> Result<Option<Route>, ProxyError> {
        for source in &self.sources {
            if let Some(route) = source.lookup(login)? {
                return Ok(Some(route));
            }
        }
        Ok(self.default.as_ref().map(|backend| Route {
            backend: Arc::clone(backend),
            origin: RouteOrigin::Default,
            login: LoginPolicy::PassThrough,
        }))
    }

    /// Refreshes every source; true when any may have changed.
    pub fn refresh(&self) -> Result<bool, ProxyError> {
        let mut changed = false;
        for source in &self.sources {
            changed |= source.refresh()?;
        }
        Ok(changed)
    }

    /// Every backend any source or the default can route to, once each.
    pub fn backends(&self) -> Result<Vec<Arc<BackendEndpoint>>, ProxyError> {
        let mut seen = HashMap::new();
        for source in &self.sources {
            for b in source.backends()? {
                seen.entry(b.key()).or_insert(b);
            }
        }
        if let Some(d) = &self.default {
            seen.entry(d.key()).or_insert_with(|| Arc::clone(d));
        }
        let mut all: Vec<_> = seen.into_values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Descriptions of the sources, for the start-up log.
    pub fn describe(&self) -> Vec<String> {
        let mut d: Vec<String> = self.sources.iter().map(|s| s.describe()).collect();
        if let Some(b) = &self.default {
            d.push(format!("default backend {}", b.label()));
        }
        d
    }
}

/// Routes from the batches of a state directory: a user found in a batch (by EmailAddress
/// or source UserName) goes to the batch's source endpoint until the batch is Completed,
/// then to its target.
pub struct StoreRoutes {
    store: Store,
    admin_on_target: bool,
    state: Mutex<StoreSnapshot>,
}

#[derive(Default)]
struct StoreSnapshot {
    /// Batch id, status and last change, to notice a status change cheaply.
    batches: Vec<(BatchId, BatchStatus, Timestamp)>,
    /// Endpoint settings as last read, to notice an edited endpoint.
    endpoints_seen: Vec<String>,
    endpoints: HashMap<String, Arc<BackendEndpoint>>,
}

impl StoreRoutes {
    /// Routes from `store`. With `admin_on_target`, users routed to a target log in there
    /// with the target endpoint's admin credentials, after their own credentials were
    /// accepted by the source server.
    pub fn new(store: Store, admin_on_target: bool) -> Result<Self, ProxyError> {
        let routes = StoreRoutes {
            store,
            admin_on_target,
            state: Mutex::new(StoreSnapshot::default()),
        };
        routes.refresh()?;
        Ok(routes)
    }

    fn endpoint(&self, name: &str, used_by: &str) -> Result<Arc<BackendEndpoint>, ProxyError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = state.endpoints.get(name) {
            return Ok(Arc::clone(e));
        }
        let record = self
            .store
            .endpoint(name)
            .map_err(ProxyError::store("read an endpoint"))?
            .ok_or_else(|| ProxyError::UnknownEndpoint {
                endpoint: name.to_owned(),
                used_by: used_by.to_owned(),
            })?;
        let password = if record.has_admin_password {
            self.store
                .endpoint_admin_password(name)
                .map_err(ProxyError::store("read an endpoint's admin password"))?
        } else {
            None
        };
        let endpoint = Arc::new(BackendEndpoint::from_record(&record, password));
        state
            .endpoints
            .insert(name.to_owned(), Arc::clone(&endpoint));
        Ok(endpoint)
    }
}

impl RouteSource for StoreRoutes {
    fn describe(&self) -> String {
        format!(
            "batches of the state directory {}",
            self.store.path().display()
        )
    }

    fn lookup(&self, login: &str) -> Result<Option<Route>, ProxyError> {
        let routes = self
            .store
            .login_routes(login)
            .map_err(ProxyError::store("look up a login"))?;
        // Newest batch first: a user moved twice follows the latest migration.
        let Some(r) = routes.into_iter().next() else {
            return Ok(None);
        };
        let used_by = format!("batch {}", r.batch_name);
        let completed = r.batch_status == BatchStatus::Completed;
        let (side, backend) = if completed {
            (
                MigrationSide::Target,
                self.endpoint(&r.target_endpoint, &used_by)?,
            )
        } else {
            (
                MigrationSide::Source,
                self.endpoint(&r.source_endpoint, &used_by)?,
            )
        };
        let login = if completed && self.admin_on_target && backend.admin.is_some() {
            LoginPolicy::Admin {
                verify_with: self.endpoint(&r.source_endpoint, &used_by)?,
            }
        } else {
            LoginPolicy::PassThrough
        };
        Ok(Some(Route {
            backend,
            origin: RouteOrigin::Batch {
                name: r.batch_name,
                side,
            },
            login,
        }))
    }

    fn refresh(&self) -> Result<bool, ProxyError> {
        let batches: Vec<_> = self
            .store
            .batches()
            .map_err(ProxyError::store("list batches"))?
            .into_iter()
            .map(|b| (b.id, b.status, b.status_changed))
            .collect();
        let endpoints: Vec<String> = self
            .store
            .endpoints()
            .map_err(ProxyError::store("list endpoints"))?
            .into_iter()
            .map(|e| format!("{:?}|{}", e.settings, e.has_admin_password))
            .collect();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = state.batches != batches || state.endpoints_seen != endpoints;
        if state.endpoints_seen != endpoints {
            state.endpoints.clear();
            state.endpoints_seen = endpoints;
        }
        state.batches = batches;
        Ok(changed)
    }

    fn backends(&self) -> Result<Vec<Arc<BackendEndpoint>>, ProxyError> {
        let mut out = Vec::new();
        for b in self
            .store
            .batches()
            .map_err(ProxyError::store("list batches"))?
        {
            let used_by = format!("batch {}", b.settings.name);
            let name = if b.status == BatchStatus::Completed {
                &b.settings.target_endpoint
            } else {
                &b.settings.source_endpoint
            };
            out.push(self.endpoint(name, &used_by)?);
        }
        Ok(out)
    }
}
