//! What every session of one proxy shares.

use std::sync::Arc;

use crate::backend_pool::BackendPools;
use crate::login_throttle::LoginThrottle;
use crate::proxy_config::ProxyConfig;
use crate::route_source::RouteTable;
use crate::session_registry::SessionRegistry;
use crate::tls_config::ServerIdentity;

pub(crate) struct ProxyContext {
    pub(crate) config: ProxyConfig,
    pub(crate) routes: Arc<RouteTable>,
    pub(crate) pools: BackendPools,
    pub(crate) identity: Option<Arc<ServerIdentity>>,
    pub(crate) throttle: LoginThrottle,
    pub(crate) registry: Arc<SessionRegistry>,
}
