//! The proxy's Prometheus metrics: names, meanings, and the functions the sessions record
//! them with, through the `metrics` facade (a no-op until the process installs a
//! recorder: `imapmirror proxy --http` does). All of them are this process's own counts
//! and start from zero with it; the proxy keeps no state of its own.

use crate::route_source::{MigrationSide, Route, RouteOrigin};

/// Relayed sessions open now (`{backend}`).
pub const SESSIONS_OPEN: &str = "imapmirror_proxy_sessions_open";
/// Logins by how they ended (`{outcome}`, see [`LoginResult`]).
pub const LOGINS: &str = "imapmirror_proxy_logins_total";
/// Logins routed, by backend and by what routed them (`{backend, via}`).
pub const ROUTES: &str = "imapmirror_proxy_routes_total";
/// Bytes relayed after login (`{direction}`), added when a session ends.
pub const RELAYED_BYTES: &str = "imapmirror_proxy_relayed_bytes_total";
/// Sessions closed because their user's route moved (cut-over).
pub const SESSIONS_MOVED: &str = "imapmirror_proxy_sessions_moved_total";

/// How a login ended, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    /// The backend accepted it: a session is relayed.
    Accepted,
    /// The backend (or the source verifying the credentials) refused them.
    Refused,
    /// Refused by the proxy's throttle of failed logins from one address.
    Throttled,
    /// No route for the login and no default backend.
    NoRoute,
    /// The routes or the backend could not be reached, or could not act for the user.
    Unavailable,
    /// The client's `x-proxy-ttl` was used up: a proxy loop.
    ProxyLoop,
}

impl LoginResult {
    const ALL: [LoginResult; 6] = [
        LoginResult::Accepted,
        LoginResult::Refused,
        LoginResult::Throttled,
        LoginResult::NoRoute,
        LoginResult::Unavailable,
        LoginResult::ProxyLoop,
    ];

    fn as_str(self) -> &'static str {
        match self {
            LoginResult::Accepted => "accepted",
            LoginResult::Refused => "refused",
            LoginResult::Throttled => "throttled",
            LoginResult::NoRoute => "no_route",
            LoginResult::Unavailable => "unavailable",
            LoginResult::ProxyLoop => "proxy_loop",
        }
    }
}

/// Gives every metric its help text and starts the login outcomes at zero (so a rate
/// of refusals exists before the first refusal); call once after installing a recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_gauge!(
        SESSIONS_OPEN,
        Unit::Count,
        "Proxied sessions open now, per backend."
    );
    describe_counter!(LOGINS, Unit::Count, "Logins through the proxy by outcome.");
    describe_counter!(
        ROUTES,
        Unit::Count,
        "Logins routed, per backend and by what routed them (a batch's source or target side, the route file, the default backend)."
    );
    describe_counter!(
        RELAYED_BYTES,
        Unit::Bytes,
        "Bytes relayed between clients and backends after login, counted when a session ends."
    );
    describe_counter!(
        SESSIONS_MOVED,
        Unit::Count,
        "Sessions closed because their user's route moved (cut-over)."
    );
    for outcome in LoginResult::ALL {
        metrics::counter!(LOGINS, "outcome" => outcome.as_str()).increment(0);
    }
    metrics::counter!(SESSIONS_MOVED).increment(0);
    for direction in ["client_to_backend", "backend_to_client"] {
        metrics::counter!(RELAYED_BYTES, "direction" => direction).increment(0);
    }
}

pub(crate) fn login(outcome: LoginResult) {
    metrics::counter!(LOGINS, "outcome" => outcome.as_str()).increment(1);
}

pub(crate) fn routed(route: &Route) {
    let via = match &route.origin {
        RouteOrigin::Batch {
            side: MigrationSide::Source,
            ..
        } => "batch_source",
        RouteOrigin::Batch {
            side: MigrationSide::Target,
            ..
        } => "batch_target",
        RouteOrigin::File { .. } => "route_file",
        RouteOrigin::Default => "default",
    };
    metrics::counter!(ROUTES, "backend" => route.backend.name.clone(), "via" => via).increment(1);
}

/// The gauge of the sessions open to `backend` (an endpoint's name).
pub(crate) fn sessions_open(backend: &str) -> metrics::Gauge {
    metrics::gauge!(SESSIONS_OPEN, "backend" => backend.to_owned())
}

pub(crate) fn session_ended(client_to_backend: u64, backend_to_client: u64, moved: bool) {
    metrics::counter!(RELAYED_BYTES, "direction" => "client_to_backend")
        .increment(client_to_backend);
    metrics::counter!(RELAYED_BYTES, "direction" => "backend_to_client")
        .increment(backend_to_client);
    if moved {
        metrics::counter!(SESSIONS_MOVED).increment(1);
    }
}
