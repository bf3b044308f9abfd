//! What `imapmirror proxy` is told: listeners, TLS files, limits, ID forwarding.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::backend_pool::PoolSettings;
use crate::error::ProxyError;

/// How a listener talks to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerMode {
    /// Plain IMAP; STARTTLS is offered when a certificate is configured.
    Plain,
    /// TLS from the first byte (port 993).
    ImplicitTls,
}

/// One listening address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The address (port 0 picks a free port; see [`crate::Proxy::local_addrs`]).
    pub addr: SocketAddr,
    /// Plain (with STARTTLS) or implicit TLS.
    pub mode: ListenerMode,
}

/// The proxy's certificate chain and key, PEM files; re-read on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// Limits that protect the proxy from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest time from connect to a completed login.
    pub pre_auth_timeout: Duration,
    /// The longest command line before login. Dovecot's imap-login accepts 64 KiB lines
    /// and clients use them: imaptest's `id` test sends a 31 KB `ID`. The session's read
    /// buffer grows to it for that one line and shrinks back afterwards.
    pub max_line: usize,
    /// The largest literal before login (a LOGIN argument): user names and passwords are
    /// short, so literals stay small while lines may be long.
    pub max_literal: usize,
    /// The most client connections at once; more are greeted with BYE.
    pub max_connections: usize,
    /// Refused logins from one IP before it must wait (0: no throttling).
    pub max_failed_logins: u32,
    /// How long an IP that reached `max_failed_logins` waits.
    pub failed_login_window: Duration,
    /// Invalid commands before login after which the client is disconnected.
    pub max_bad_commands: u32,
    /// A relayed session with no byte either way for this long is closed. IMAP clients
    /// re-issue IDLE within 29 minutes (RFC 2177), so keep this above 30 minutes.
    pub idle_timeout: Duration,
    /// The relay chunk per direction while bytes flow; an idle direction holds none.
    pub relay_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pre_auth_timeout: Duration::from_secs(60),
            max_line: 64 * 1024,
            max_literal: 8 * 1024,
            max_connections: 10_000,
            max_failed_logins: 10,
            failed_login_window: Duration::from_secs(60),
            max_bad_commands: 10,
            idle_timeout: Duration::from_secs(31 * 60),
            relay_buffer: 64 * 1024,
        }
    }
}

/// ID (RFC 2971) fields sent to backends before login, so they log and rate-limit by the
/// real client (Dovecot honours them from `login_trusted_networks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdForwarding {
    /// Send `x-originating-ip`, `x-originating-port` and `x-proxy-ttl`.
    pub enabled: bool,
    /// The `x-proxy-ttl` sent (lowered to the client's own minus one when it sent one);
    /// a client arriving with TTL 1 or less is refused as a proxy loop.
    pub proxy_ttl: u32,
}

impl Default for IdForwarding {
    fn default() -> Self {
        IdForwarding {
            enabled: false,
            proxy_ttl: 5,
        }
    }
}

/// Everything the proxy needs besides its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Where to listen (at least one).
    pub listeners: Vec<ListenerConfig>,
    /// The certificate for implicit TLS and STARTTLS; required by implicit-TLS listeners.
    pub tls: Option<TlsFiles>,
    /// Allow LOGIN/AUTHENTICATE without TLS (loopback and tests only).
    pub allow_plaintext: bool,
    /// Limits.
    pub limits: Limits,
    /// ID forwarding to backends.
    pub id_forwarding: IdForwarding,
    /// Warm backend connections.
    pub pool: PoolSettings,
    /// How often routes are re-checked for cut-over.
    pub route_poll_interval: Duration,
    /// How long sessions get to close at shutdown.
    pub shutdown_grace: Duration,
}

impl ProxyConfig {
    /// A configuration with default limits for these listeners.
    pub fn new(listeners: Vec<ListenerConfig>) -> Self {
        ProxyConfig {
            listeners,
            tls: None,
            allow_plaintext: false,
            limits: Limits::default(),
            id_forwarding: IdForwarding::default(),
            pool: PoolSettings::default(),
            route_poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
        }
    }

    /// Checks the configuration before anything is opened.
    pub fn validate(&self) -> Result<(), ProxyError> {
        if self.listeners.is_empty() {
            return Err(ProxyError::Config(
                "no listener: give at least one --listen or --listen-tls address".into(),
            ));
        }
        if self.tls.is_none()
            && self
                .listeners
                .iter()
                .any(|l| l.mode == ListenerMode::ImplicitTls)
        {
            return Err(ProxyError::Config(
                "a TLS listener needs --tls-cert and --tls-key".into(),
            ));
        }
        if self.tls.is_none() && !self.allow_plaintext {
            return Err(ProxyError::Config(
                "without a certificate no client could log in: give --tls-cert and --tls-key, or --allow-plaintext for loopback tests".into(),
            ));
        }
        let l = &self.limits;
        if l.max_line < 64
            || l.max_connections == 0
            || l.relay_buffer < 512
            || l.max_bad_commands == 0
        {
            return Err(ProxyError::Config(
                "limits too small: max_line >= 64, max_connections >= 1, relay_buffer >= 512, max_bad_commands >= 1".into(),
            ));
        }
        if self.route_poll_interval.is_zero()
            || l.pre_auth_timeout.is_zero()
            || l.idle_timeout.is_zero()
        {
            return Err(ProxyError::Config(
                "timeouts and the route poll interval must be above zero".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(mode: ListenerMode) -> ListenerConfig {
        ListenerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            mode,
        }
    }

    #[test]
    fn validation() {
        assert!(ProxyConfig::new(vec![]).validate().is_err());
        let mut c = ProxyConfig::new(vec![listener(ListenerMode::Plain)]);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("--allow-plaintext")
        );
        c.allow_plaintext = true;
        assert!(c.validate().is_ok());
        c.listeners.push(listener(ListenerMode::ImplicitTls));
        assert!(c.validate().unwrap_err().to_string().contains("--tls-cert"));
        c.tls = Some(TlsFiles {
            cert: "c".into(),
            key: "k".into(),
        });
        assert!(c.validate().is_ok());
        c.limits.max_connections = 0;
        assert!(c.validate().is_err());
    }
}
