//! Where a login is routed: pluggable sources of routes, layered into a [`RouteTable`].
//!
//! A source answers "which backend does this login go to" and says when its answers may
//! have changed ([`RouteSource::refresh`]); the proxy polls it (every second by default)
//! and closes sessions whose route moved — that is the cut-over. Two sources exist:
//! [`BatchRoutes`] (the batches of a state directory, from snapshots of a
//! [`SnapshotSource`]) and [`crate::FileRoutes`] (a static route file).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use imapmirror_storage::{BatchId, BatchStatus, RoutedBatch, RoutingSnapshot, Store};

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

/// Where [`BatchRoutes`] gets its snapshots: the store itself when this process owns it,
/// or (in the binary) the state directory, read when free or asked of its owner.
pub trait SnapshotSource: Send + Sync {
    /// A short description for logs.
    fn describe(&self) -> String;

    /// A snapshot newer than the `known` version; `Ok(None)` when `known` is current, or
    /// when the source cannot be read right now and the caller should keep what it has.
    fn load(&self, known: Option<&str>) -> Result<Option<RoutingSnapshot>, ProxyError>;
}

/// A store owned by this process (tests, or a proxy run inside the owner).
pub struct OwnedStore {
    store: Store,
    with_secrets: bool,
}

impl OwnedStore {
    /// Snapshots of `store`, with the endpoints' admin passwords when `with_secrets`.
    pub fn new(store: Store, with_secrets: bool) -> Self {
        OwnedStore {
            store,
            with_secrets,
        }
    }
}

impl SnapshotSource for OwnedStore {
    fn describe(&self) -> String {
        format!("the state directory {}", self.store.path().display())
    }

    fn load(&self, known: Option<&str>) -> Result<Option<RoutingSnapshot>, ProxyError> {
        // Called from blocking threads (`spawn_blocking`), never from the reactor.
        let known = known.map(str::to_owned);
        let with_secrets = self.with_secrets;
        let snapshot = self
            .store
            .call(move |db| {
                let version = db.routing_version()?;
                if known.as_deref() == Some(version.as_str()) {
                    return Ok(None);
                }
                db.routing_snapshot(with_secrets).map(Some)
            })
            .map_err(ProxyError::store("read the routes"))?;
        Ok(snapshot)
    }
}

/// Routes from the batches of a state directory: a user found in a batch (by EmailAddress
/// or source UserName) goes to the batch's source endpoint until the batch is Completed,
/// then to its target.
///
/// Lookups answer from memory (a [`RoutingSnapshot`] compiled into a map); only
/// [`RouteSource::refresh`] reaches the store, so a proxy never holds the state directory
/// that `serve` and the batch commands need.
pub struct BatchRoutes {
    source: Box<dyn SnapshotSource>,
    admin_on_target: bool,
    compiled: RwLock<Option<Arc<Compiled>>>,
}

/// A snapshot made ready for lookups.
struct Compiled {
    version: String,
    /// Lower-cased login to the index of its newest batch in `batches`.
    by_login: HashMap<String, usize>,
    batches: Vec<RoutedBatch>,
    endpoints: HashMap<String, Arc<BackendEndpoint>>,
}

impl Compiled {
    fn new(snapshot: RoutingSnapshot) -> Self {
        let RoutingSnapshot {
            version,
            batches,
            logins,
            endpoints,
        } = snapshot;
        let index: HashMap<BatchId, usize> =
            batches.iter().enumerate().map(|(i, b)| (b.id, i)).collect();
        let mut by_login: HashMap<String, usize> = HashMap::with_capacity(logins.len());
        for l in logins {
            let Some(&i) = index.get(&l.batch) else {
                continue;
            };
            // Newest batch first: a user moved twice follows the latest migration.
            let newer = |j: usize| {
                (batches[i].created, batches[i].id) > (batches[j].created, batches[j].id)
            };
            by_login
                .entry(l.login)
                .and_modify(|j| {
                    if newer(*j) {
                        *j = i;
                    }
                })
                .or_insert(i);
        }
        let endpoints = endpoints
            .into_iter()
            .map(|e| {
                let backend = BackendEndpoint::from_settings(&e.settings, e.admin_password);
                (e.settings.name, Arc::new(backend))
            })
            .collect();
        Compiled {
            version,
            by_login,
            batches,
            endpoints,
        }
    }

    fn endpoint(&self, name: &str, batch: &str) -> Result<Arc<BackendEndpoint>, ProxyError> {
        self.endpoints
            .get(name)
            .cloned()
            .ok_or_else(|| ProxyError::UnknownEndpoint {
                endpoint: name.to_owned(),
                used_by: format!("batch {batch}"),
            })
    }
}

impl BatchRoutes {
    /// Routes from `source`, loaded once now. With `admin_on_target`, users routed to a
    /// target log in there with the target endpoint's admin credentials, after their own
    /// credentials were accepted by the source server (the source must then hand out
    /// secrets).
    pub fn new(source: Box<dyn SnapshotSource>, admin_on_target: bool) -> Result<Self, ProxyError> {
        let routes = BatchRoutes {
            source,
            admin_on_target,
            compiled: RwLock::new(None),
        };
        routes.refresh()?;
        Ok(routes)
    }

    /// Routes from a store this process owns.
    pub fn from_store(store: Store, admin_on_target: bool) -> Result<Self, ProxyError> {
        Self::new(
            Box::new(OwnedStore::new(store, admin_on_target)),
            admin_on_target,
        )
    }

    /// A stored endpoint as a backend (for `--default-backend`), as of the last refresh.
    pub fn endpoint(&self, name: &str) -> Option<Arc<BackendEndpoint>> {
        self.compiled()?.endpoints.get(name).cloned()
    }

    fn compiled(&self) -> Option<Arc<Compiled>> {
        self.compiled
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl RouteSource for BatchRoutes {
    fn describe(&self) -> String {
        format!("batches of {}", self.source.describe())
    }

    fn lookup(&self, login: &str) -> Result<Option<Route>, ProxyError> {
        let Some(c) = self.compiled() else {
            return Ok(None);
        };
        let Some(&i) = c.by_login.get(&login.trim().to_lowercase()) else {
            return Ok(None);
        };
        let b = &c.batches[i];
        let completed = b.status == BatchStatus::Completed;
        let (side, backend) = if completed {
            (
                MigrationSide::Target,
                c.endpoint(&b.target_endpoint, &b.name)?,
            )
        } else {
            (
                MigrationSide::Source,
                c.endpoint(&b.source_endpoint, &b.name)?,
            )
        };
        let login = if completed && self.admin_on_target && backend.admin.is_some() {
            LoginPolicy::Admin {
                verify_with: c.endpoint(&b.source_endpoint, &b.name)?,
            }
        } else {
            LoginPolicy::PassThrough
        };
        Ok(Some(Route {
            backend,
            origin: RouteOrigin::Batch {
                name: b.name.clone(),
                side,
            },
            login,
        }))
    }

    fn refresh(&self) -> Result<bool, ProxyError> {
        let known = self.compiled().map(|c| c.version.clone());
        let Some(snapshot) = self.source.load(known.as_deref())? else {
            return Ok(false);
        };
        let compiled = Arc::new(Compiled::new(snapshot));
        *self
            .compiled
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(compiled);
        Ok(true)
    }

    fn backends(&self) -> Result<Vec<Arc<BackendEndpoint>>, ProxyError> {
        let Some(c) = self.compiled() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for b in &c.batches {
            let name = if b.status == BatchStatus::Completed {
                &b.target_endpoint
            } else {
                &b.source_endpoint
            };
            out.push(c.endpoint(name, &b.name)?);
        }
        Ok(out)
    }
}
