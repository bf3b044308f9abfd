//! The static route file: routes that add to or override the state directory's.
//!
//! # Format
//!
//! UTF-8 text, one route per line; blank lines and everything after `#` are ignored.
//! Fields are separated by spaces or tabs:
//!
//! ```text
//! # login                 host:port               security   options
//! alice@example.com       imap.new.example:993    ssl
//! @example.org            10.0.0.7:143            starttls   ca-file=/etc/imapmirror/ca.pem
//! *                       imap.old.example:993    ssl
//! ```
//!
//! - login: a login name (any case), `@domain` for every login ending in that domain, or
//!   `*` for everyone. An exact name beats a domain, a domain beats `*`; a login listed
//!   twice is an error.
//! - host:port: an IPv6 address is written in brackets, `[::1]:993`.
//! - security: `ssl` (implicit TLS), `starttls`, or `none`.
//! - options: `ca-file=PATH` (trust these CAs instead of the system's),
//!   `pin-cert=sha256:HEX` (trust exactly the certificate with that SHA-256, as
//!   `endpoint add --pin-cert` does), `insecure-skip-verify` (tests only).
//!
//! The file is re-read when it changes (checked at every route refresh, once a second);
//! a file that no longer parses is reported and the previous routes stay in force. A
//! route that changes closes the sessions it carried, like a cut-over.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::backend_endpoint::{BackendEndpoint, BackendSecurity};
use crate::error::ProxyError;
use crate::route_source::{LoginPolicy, Route, RouteOrigin, RouteSource};

/// A parsed route file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteFileTable {
    exact: HashMap<String, (usize, Arc<BackendEndpoint>)>,
    domains: HashMap<String, (usize, Arc<BackendEndpoint>)>,
    everyone: Option<(usize, Arc<BackendEndpoint>)>,
}

impl RouteFileTable {
    /// Parses the text of a route file; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ProxyError> {
        let mut table = RouteFileTable::default();
        for (k, raw) in text.lines().enumerate() {
            let line = k + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let err = |reason: String| ProxyError::RouteFileLine {
                path: path.to_path_buf(),
                line,
                reason,
            };
            let mut fields = content.split_whitespace();
            let (Some(login), Some(address), Some(security)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(err(
                    "a route needs a login, a host:port and a security".into()
                ));
            };
            let (host, port) = split_host_port(address)
                .ok_or_else(|| err(format!("{address:?} is not host:port")))?;
            let security = BackendSecurity::parse(security).ok_or_else(|| {
                err(format!(
                    "security {security:?} is not one of ssl, starttls, none"
                ))
            })?;
            let mut backend = BackendEndpoint::new(address, host, port, security);
            for option in fields {
                if let Some(ca) = option.strip_prefix("ca-file=") {
                    if ca.is_empty() {
                        return Err(err("ca-file= needs a path".into()));
                    }
                    backend.ca_file = Some(PathBuf::from(ca));
                } else if let Some(pin) = option.strip_prefix("pin-cert=") {
                    let pin: imapmirror_protocol::client::CertificatePin =
                        pin.parse().map_err(|e| err(format!("{e}")))?;
                    backend.pinned_certificate = Some(pin.to_string());
                } else if option == "insecure-skip-verify" {
                    backend.insecure_skip_verify = true;
                } else {
                    return Err(err(format!("unknown option {option:?}")));
                }
            }
            let backend = Arc::new(backend);
            let login = login.to_lowercase();
            let slot = if login == "*" {
                if let Some((first, _)) = &table.everyone {
                    return Err(err(format!("`*` is already routed on line {first}")));
                }
                table.everyone = Some((line, backend));
                continue;
            } else if let Some(domain) = login.strip_prefix('@') {
                if domain.is_empty() || domain.contains('@') {
                    return Err(err(format!("{login:?} is not @domain")));
                }
                &mut table.domains
            } else {
                &mut table.exact
            };
            let key = login.strip_prefix('@').unwrap_or(&login).to_owned();
            if let Some((first, _)) = slot.get(&key) {
                return Err(err(format!("{login} is already routed on line {first}")));
            }
            slot.insert(key, (line, backend));
        }
        Ok(table)
    }

    /// The route of a login: exact name, then its domain, then `*`.
    pub fn lookup(&self, login: &str) -> Option<Route> {
        let login = login.trim().to_lowercase();
        let found = self.exact.get(&login).or_else(|| {
            login
                .rsplit_once('@')
                .and_then(|(_, domain)| self.domains.get(domain))
                .or(self.everyone.as_ref())
        })?;
        Some(Route {
            backend: Arc::clone(&found.1),
            origin: RouteOrigin::File { line: found.0 },
            login: LoginPolicy::PassThrough,
        })
    }

    /// Every backend named in the file.
    pub fn backends(&self) -> Vec<Arc<BackendEndpoint>> {
        let mut seen: HashMap<String, Arc<BackendEndpoint>> = HashMap::new();
        for (_, b) in self
            .exact
            .values()
            .chain(self.domains.values())
            .chain(self.everyone.iter())
        {
            seen.entry(b.key()).or_insert_with(|| Arc::clone(b));
        }
        seen.into_values().collect()
    }
}

fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        (host, port)
    } else {
        let (host, port) = address.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    (!host.is_empty()).then_some((host, port))
}

/// Routes from a route file, re-read when it changes.
pub struct FileRoutes {
    path: PathBuf,
    state: Mutex<(String, Arc<RouteFileTable>)>,
}

impl FileRoutes {
    /// Reads and parses the file; fails if it cannot be read or parsed.
    pub fn open(path: &Path) -> Result<Self, ProxyError> {
        let text = read(path)?;
        let table = RouteFileTable::parse(path, &text)?;
        Ok(FileRoutes {
            path: path.to_path_buf(),
            state: Mutex::new((text, Arc::new(table))),
        })
    }

    fn table(&self) -> Arc<RouteFileTable> {
        Arc::clone(&self.state.lock().unwrap_or_else(PoisonError::into_inner).1)
    }
}

fn read(path: &Path) -> Result<String, ProxyError> {
    std::fs::read_to_string(path).map_err(|source| ProxyError::RouteFileRead {
        path: path.to_path_buf(),
        source,
    })
}

impl RouteSource for FileRoutes {
    fn describe(&self) -> String {
        format!("route file {}", self.path.display())
    }

    fn lookup(&self, login: &str) -> Result<Option<Route>, ProxyError> {
        Ok(self.table().lookup(login))
    }

    fn refresh(&self) -> Result<bool, ProxyError> {
        let text = read(&self.path)?;
        if self.state.lock().unwrap_or_else(PoisonError::into_inner).0 == text {
            return Ok(false);
        }
        // A broken edit keeps the previous routes: the error is reported, nothing moves.
        let table = RouteFileTable::parse(&self.path, &text)?;
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = (text, Arc::new(table));
        Ok(true)
    }

    fn backends(&self) -> Result<Vec<Arc<BackendEndpoint>>, ProxyError> {
        Ok(self.table().backends())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RouteFileTable, ProxyError> {
        RouteFileTable::parse(Path::new("routes.txt"), text)
    }

    #[test]
    fn exact_beats_domain_beats_everyone() {
        let t = parse(
            "# comment\n\
             Alice@Example.com  new.example:993 ssl   # trailing comment\n\
             @example.com  [::1]:143 starttls ca-file=/tmp/ca.pem\n\
             \n\
             *  old.example:143 none insecure-skip-verify\n",
        )
        .unwrap();
        let r = t.lookup("alice@EXAMPLE.com").unwrap();
        assert_eq!(r.backend.host, "new.example");
        assert_eq!(r.backend.security, BackendSecurity::Tls);
        assert_eq!(r.origin, RouteOrigin::File { line: 2 });
        let r = t.lookup("bob@example.com").unwrap();
        assert_eq!((r.backend.host.as_str(), r.backend.port), ("::1", 143));
        assert_eq!(r.backend.ca_file.as_deref(), Some(Path::new("/tmp/ca.pem")));
        let r = t.lookup("carol@elsewhere.org").unwrap();
        assert!(r.backend.insecure_skip_verify);
        assert_eq!(r.origin, RouteOrigin::File { line: 5 });
        assert_eq!(t.backends().len(), 3);
    }

    #[test]
    fn without_catch_all_unknown_logins_have_no_route() {
        let t = parse("a@x h:1 none\n").unwrap();
        assert!(t.lookup("b@x").is_none());
        assert!(parse("").unwrap().lookup("a").is_none());
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, needle) in [
            ("a@x h:1\n", "needs a login"),
            ("a@x h none\n", "not host:port"),
            ("a@x h:0 none\n", "not host:port"),
            ("a@x ::1:5 none\n", "not host:port"),
            ("a@x h:1 tls13\n", "security"),
            ("a@x h:1 none fast\n", "unknown option"),
            ("a@x h:1 none\nA@X h:2 none\n", "already routed on line 1"),
            ("* h:1 none\n* h:2 none\n", "already routed on line 1"),
            ("@ h:1 none\n", "not @domain"),
            ("a@x h:1 ssl pin-cert=sha256:12ab\n", "64 hex digits"),
        ] {
            let e = parse(text).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(needle), "{text:?}: {msg}");
            assert!(msg.contains("routes.txt"), "{msg}");
            assert!(e.is_user_input());
        }
    }

    #[test]
    fn a_pinned_certificate_is_kept_in_its_canonical_form() {
        let hex = "AB".repeat(32);
        let table = parse(&format!("a@x h:993 ssl pin-cert=SHA256:{hex}\n")).unwrap();
        let backend = table.lookup("a@x").unwrap().backend;
        let pin = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(backend.pinned_certificate.as_deref(), Some(pin.as_str()));
        assert!(backend.key().contains(&pin));
    }

    #[test]
    fn file_source_reloads_changes_and_keeps_routes_on_a_broken_edit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes");
        std::fs::write(&path, "a@x old:143 none\n").unwrap();
        let source = FileRoutes::open(&path).unwrap();
        assert!(!source.refresh().unwrap());
        std::fs::write(&path, "a@x new:143 none\n").unwrap();
        assert!(source.refresh().unwrap());
        assert_eq!(source.lookup("a@x").unwrap().unwrap().backend.host, "new");
        std::fs::write(&path, "a@x broken\n").unwrap();
        assert!(source.refresh().is_err());
        assert_eq!(source.lookup("a@x").unwrap().unwrap().backend.host, "new");
        assert!(FileRoutes::open(&dir.path().join("missing")).is_err());
    }
}
