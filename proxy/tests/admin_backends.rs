//! The admin login after cut-over (`--target-admin-login`) to the kit's other servers: the
//! client's password is checked on a Dovecot source, then the proxy opens the user's
//! mailbox on the target with the target endpoint's admin in the SASL format
//! (`AUTHENTICATE PLAIN`, authzid = the user). Cyrus lets its `proxyservers` do that;
//! Courier would ignore the authzid and open the admin's own mailbox, so the proxy refuses.
//!
//! Run with `cargo test -p imapmirror-proxy --test admin_backends`, as root (the kit's
//! Cyrus and Courier run in their own namespaces).

#![forbid(unsafe_code)]

#[path = "../../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use imapmirror_protocol::admin_login::AdminFormat;
use imapmirror_proxy::{
    AdminCredentials, BackendEndpoint, BackendSecurity, ListenerConfig, ListenerMode, LoginPolicy,
    Proxy, ProxyConfig, ProxyError, Route, RouteOrigin, RouteSource, RouteTable,
};
use imapmirror_storage::Secret;
use support::{Courier, Cyrus, Dovecot, ImapClient, KitError, Security};

const ALICE: &str = "alice@example.test";
const SOURCE_PW: &str = "alice-source-pw";

/// Every login goes to `target` with its admin, after a check on `source`.
struct AdminRoutes {
    source: Arc<BackendEndpoint>,
    target: Arc<BackendEndpoint>,
}

impl RouteSource for AdminRoutes {
    fn describe(&self) -> String {
        "admin routes of the test".into()
    }

    fn lookup(&self, _login: &str) -> Result<Option<Route>, ProxyError> {
        Ok(Some(Route {
            backend: Arc::clone(&self.target),
            origin: RouteOrigin::Default,
            login: LoginPolicy::Admin {
                verify_with: Arc::clone(&self.source),
            },
        }))
    }

    fn refresh(&self) -> Result<bool, ProxyError> {
        Ok(false)
    }

    fn backends(&self) -> Result<Vec<Arc<BackendEndpoint>>, ProxyError> {
        Ok(vec![Arc::clone(&self.source), Arc::clone(&self.target)])
    }
}

/// A STARTTLS backend with the kit's CA and a SASL-format admin.
fn sasl_admin_target(
    name: &str,
    port: u16,
    ca: &std::path::Path,
    admin: (&str, &str),
) -> BackendEndpoint {
    let mut target = BackendEndpoint::new(name, "127.0.0.1", port, BackendSecurity::StartTls);
    target.ca_file = Some(ca.to_path_buf());
    target.admin = Some(AdminCredentials {
        user: admin.0.to_owned(),
        password: Secret::new(admin.1),
        format: AdminFormat::Sasl,
    });
    target
}

/// Serves a proxy in front of `routes` and runs `body` against its plain address.
fn with_proxy(routes: AdminRoutes, body: impl FnOnce(std::net::SocketAddr)) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = ProxyConfig::new(vec![ListenerConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        mode: ListenerMode::Plain,
    }]);
    config.allow_plaintext = true;
    let proxy = runtime
        .block_on(Proxy::bind(
            config,
            RouteTable::new(vec![Arc::new(routes)], None),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = proxy.local_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = runtime.spawn(proxy.run(async move {
        let _ = stopped.await;
    }));
    body(addr);
    let _ = stop.send(());
    let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), served).await });
}

fn login_through(addr: std::net::SocketAddr, password: &str) -> Result<ImapClient, KitError> {
    let mut c = ImapClient::connect(addr, &Security::Plain, Duration::from_secs(15))?;
    c.login(ALICE, password)?;
    Ok(c)
}

fn source() -> (Dovecot, Arc<BackendEndpoint>) {
    let dovecot = Dovecot::builder()
        .label("source")
        .user(ALICE, SOURCE_PW)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let endpoint = BackendEndpoint::new(
        "source",
        "127.0.0.1",
        dovecot.plain_addr().port(),
        BackendSecurity::Plain,
    );
    (dovecot, Arc::new(endpoint))
}

#[test]
fn cyrus_target_opens_the_users_mailbox_with_its_proxy_server_admin() {
    let (_dovecot, source) = source();
    let cyrus = Cyrus::builder()
        .label("target")
        .user(ALICE, "a password only Cyrus knows")
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut direct = cyrus
        .user_endpoint(ALICE)
        .and_then(|e| e.connect())
        .unwrap_or_else(|e| panic!("{e}"));
    direct
        .append(
            "INBOX",
            &[],
            None,
            b"From: a@example.test\r\nSubject: on Cyrus\r\n\r\nhi\r\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = direct.logout();
    let target = sasl_admin_target(
        "cyrus",
        cyrus.plain_addr().port(),
        cyrus.ca_file(),
        cyrus.admin(),
    );
    let routes = AdminRoutes {
        source,
        target: Arc::new(target),
    };
    with_proxy(routes, |addr| {
        let mut c = login_through(addr, SOURCE_PW)
            .unwrap_or_else(|e| panic!("{e}\n{}", cyrus.log_tail(20)));
        assert_eq!(c.examine("INBOX").expect("examine").exists, 1);
        let _ = c.logout();
        // The source judges the password.
        let refused = login_through(addr, "not her password");
        assert!(
            matches!(&refused, Err(KitError::Refused { text, .. }) if text.contains("AUTHENTICATIONFAILED")),
            "{:?}",
            refused.err()
        );
    });
}

#[test]
fn courier_target_refuses_the_admin_acting_for_a_user() {
    let (_dovecot, source) = source();
    let courier = Courier::builder()
        .label("target")
        .user(ALICE, "a password only Courier knows")
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let target = sasl_admin_target(
        "courier",
        courier.plain_addr().port(),
        courier.ca_file(),
        courier.admin(),
    );
    let routes = AdminRoutes {
        source,
        target: Arc::new(target),
    };
    with_proxy(routes, |addr| {
        // Courier would log the admin in to the admin's own mailbox: refused instead.
        let refused = login_through(addr, SOURCE_PW);
        let Err(KitError::Refused { text, .. }) = &refused else {
            panic!(
                "the admin login to Courier must be refused: {:?}",
                refused.is_ok()
            );
        };
        assert!(
            text.contains("CANNOT") && text.contains("Courier"),
            "{text}"
        );
    });
}
