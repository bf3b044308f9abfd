//! The crate's one error type.
//!
//! Variants are grouped by whose fault it is, because the remedy differs: bad user input
//! (configuration, certificate files, the route file), a backend server that is down or
//! misbehaves (the peer's fault), the state store, and our own bugs. A client that sends
//! garbage is not an error of the proxy: it is answered with `BAD`/`BYE` and logged.

use std::net::SocketAddr;
use std::path::PathBuf;

use imapmirror_storage::StoreError;

/// Everything that can go wrong in the proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    // --- bad user input -------------------------------------------------------------
    /// The configuration is inconsistent (e.g. a TLS listener without a certificate).
    #[error("the proxy configuration is invalid: {0}")]
    Config(String),

    /// A certificate, key or CA file could not be read or holds nothing usable.
    #[error(
        "cannot use the TLS {what} file {path}: {detail}; check the path, its permissions and that it holds PEM data"
    )]
    TlsFile {
        /// "certificate", "private key" or "CA".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },

    /// The route file could not be read.
    #[error("cannot read the route file {path}: {source}; check the path and its permissions")]
    RouteFileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A line of the route file is wrong.
    #[error(
        "the route file {path}, line {line}: {reason}; expected `LOGIN HOST:PORT ssl|starttls|none [ca-file=PEM | pin-cert=sha256:HEX] [insecure-skip-verify]`"
    )]
    RouteFileLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A route names an endpoint the state directory does not have.
    #[error(
        "the endpoint {endpoint} used by {used_by} does not exist in the state directory; add it with `imapmirror endpoint add` or fix the reference"
    )]
    UnknownEndpoint {
        /// The endpoint name.
        endpoint: String,
        /// Who refers to it (a batch, the default backend).
        used_by: String,
    },

    /// Admin credentials cannot be combined with this user name in the endpoint's format.
    #[error("cannot build the admin login of endpoint {endpoint} for user {user:?}: {reason}")]
    AdminLogin {
        /// The endpoint.
        endpoint: String,
        /// The user to act for.
        user: String,
        /// Why, as a short clause.
        reason: String,
    },

    /// A listening socket could not be opened.
    #[error(
        "cannot listen on {addr}: {source}; pick a free address or run with the rights to bind it"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    // --- the backend's fault --------------------------------------------------------
    /// The backend cannot be reached, refused the connection, timed out or greeted with BYE.
    #[error(
        "the backend IMAP server {server} is unavailable ({detail}); check that it runs and is reachable from the proxy"
    )]
    BackendUnavailable {
        /// `name (host:port)`.
        server: String,
        /// What happened.
        detail: String,
    },

    /// The backend's TLS handshake failed (certificate not trusted, wrong name...).
    #[error(
        "TLS with the backend IMAP server {server} failed: {detail}; check its certificate, or the endpoint's --ca-file or --pin-cert"
    )]
    BackendTls {
        /// `name (host:port)`.
        server: String,
        /// The TLS error.
        detail: String,
    },

    /// The backend sent something that is not the IMAP the proxy expects.
    #[error(
        "the backend IMAP server {server} sent an unexpected response ({detail}); check the server, or report it with this text"
    )]
    BackendProtocol {
        /// `name (host:port)`.
        server: String,
        /// What was wrong.
        detail: String,
    },

    // --- the state store ------------------------------------------------------------
    /// The state store failed.
    #[error("the state store failed while the proxy tried to {action}: {source}")]
    Store {
        /// What the proxy was doing.
        action: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },

    /// The owner of the state directory could not be asked for routes.
    #[error("cannot read the routes from {from}: {detail}")]
    RouteSource {
        /// Where the routes come from ("the state directory /var/lib/imapmirror").
        from: String,
        /// What went wrong.
        detail: String,
    },

    // --- ours -----------------------------------------------------------------------
    /// An invariant of the proxy broke.
    #[error("internal error in the proxy: {0}; this is a bug in imapmirror, please report it")]
    Internal(&'static str),
}

impl ProxyError {
    /// True when the user's input (configuration, files) is to blame.
    pub fn is_user_input(&self) -> bool {
        matches!(
            self,
            ProxyError::Config(_)
                | ProxyError::TlsFile { .. }
                | ProxyError::RouteFileRead { .. }
                | ProxyError::RouteFileLine { .. }
                | ProxyError::UnknownEndpoint { .. }
                | ProxyError::AdminLogin { .. }
                | ProxyError::Bind { .. }
        )
    }

    /// True when a backend server is to blame.
    pub fn is_backend_fault(&self) -> bool {
        matches!(
            self,
            ProxyError::BackendUnavailable { .. }
                | ProxyError::BackendTls { .. }
                | ProxyError::BackendProtocol { .. }
        )
    }

    pub(crate) fn store(action: &'static str) -> impl FnOnce(StoreError) -> ProxyError {
        move |source| ProxyError::Store { action, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_classified_and_messages_name_the_server() {
        let e = ProxyError::BackendUnavailable {
            server: "source (imap.example:993)".into(),
            detail: "connection refused".into(),
        };
        assert!(e.is_backend_fault() && !e.is_user_input());
        assert!(e.to_string().contains("source (imap.example:993)"));
        let e = ProxyError::Config("x".into());
        assert!(e.is_user_input() && !e.is_backend_fault());
        assert!(!ProxyError::Internal("y").is_user_input());
    }
}
