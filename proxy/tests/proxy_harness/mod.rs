//! A proxy in front of two real Dovecot servers (source over implicit TLS, target over
//! STARTTLS, both verified against their CA), routed by a real state directory with one
//! batch, plus a raw line client for the cases the kit's client is too polite for.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use imapmirror_proxy::{
    BatchRoutes, ListenerConfig, ListenerMode, Proxy, ProxyConfig, RouteSource, RouteTable,
    TlsFiles,
};
use imapmirror_storage::{
    BatchSettings, BatchStatus, EndpointSettings, MigrationRow, NewMailbox, Secret,
    Security as StoreSecurity, Store,
};

use crate::support::imap_client::DEFAULT_TIMEOUT;
use crate::support::tls_material::TlsMaterial;
use crate::support::{Credentials, Dovecot, Endpoint, FolderPath, Security, SeedFolder};

pub const BATCH: &str = "wave1";

pub struct Harness {
    pub source: Dovecot,
    pub target: Dovecot,
    pub store: Store,
    pub tls: TlsMaterial,
    pub plain_addr: SocketAddr,
    pub tls_addr: SocketAddr,
    pub users: Vec<(String, String)>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<(), imapmirror_proxy::ProxyError>>>,
    _dir: tempfile::TempDir,
}

pub struct HarnessOptions {
    pub users: Vec<(String, String)>,
    pub dovecot_extra: Vec<String>,
    pub extra_sources: Vec<Arc<dyn RouteSource>>,
    pub configure: Box<dyn FnOnce(&mut ProxyConfig)>,
    pub worker_threads: usize,
    /// Give the target endpoint the kit's master user (Dovecot admin format) and route
    /// completed users there with it.
    pub admin_on_target: bool,
    /// Every user's password on the target, when it must differ from the source's.
    pub target_password: Option<String>,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        HarnessOptions {
            users: vec![("alice@example.test".into(), "alice-pw".into())],
            dovecot_extra: Vec::new(),
            extra_sources: Vec::new(),
            configure: Box::new(|_| {}),
            worker_threads: 2,
            admin_on_target: false,
            target_password: None,
        }
    }
}

fn endpoint_settings(
    name: &str,
    host: &str,
    port: u16,
    security: StoreSecurity,
    ca: PathBuf,
) -> EndpointSettings {
    EndpointSettings {
        ca_file: Some(ca),
        ..EndpointSettings::new(name, host, port, security)
    }
}

impl Harness {
    pub fn start(options: HarnessOptions) -> Harness {
        let build = |label: &str| {
            let mut b = Dovecot::builder().label(label).max_userip_connections(1000);
            for (u, p) in &options.users {
                let p = match (&options.target_password, label) {
                    (Some(other), "target") => other,
                    _ => p,
                };
                b = b.user(u, p);
            }
            for extra in &options.dovecot_extra {
                b = b.extra_config(extra);
            }
            b.start().unwrap_or_else(|e| panic!("{e}"))
        };
        let source = build("source");
        let target = build("target");
        // A folder on each side tells a test which server it reached.
        for (user, _) in &options.users {
            for (server, folder) in [(&source, "OnSource"), (&target, "OnTarget")] {
                server
                    .seed(
                        user,
                        &[SeedFolder {
                            path: FolderPath::new(&[folder]),
                            subscribed: true,
                        }],
                        [],
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("state")).expect("state store");
        let source_settings = endpoint_settings(
            "source",
            "127.0.0.1",
            source.tls_addr().port(),
            StoreSecurity::Ssl,
            source.ca_file().to_path_buf(),
        );
        let mut target_settings = endpoint_settings(
            "target",
            "localhost",
            target.plain_addr().port(),
            StoreSecurity::Starttls,
            target.ca_file().to_path_buf(),
        );
        let admin_password = options.admin_on_target.then(|| {
            let (master, master_pw) = target.master();
            target_settings.admin_user = Some(master.to_owned());
            target_settings.admin_format = Some(imapmirror_storage::AdminFormat::Dovecot);
            Secret::new(master_pw)
        });

        let rows: Vec<NewMailbox> = options
            .users
            .iter()
            .map(|(u, p)| NewMailbox {
                row: MigrationRow {
                    email_address: u.clone(),
                    user_name: format!("legacy-{}", u.split('@').next().unwrap_or(u)),
                    user_root: None,
                    target_user_name: None,
                },
                password: Secret::new(p.clone()),
                target_password: None,
                refresh_token: None,
            })
            .collect();
        store
            .call(move |db| {
                db.add_endpoint(&source_settings, None)?;
                db.add_endpoint(&target_settings, admin_password.as_ref())?;
                db.create_batch(&BatchSettings::new(BATCH, "source", "target"), &rows)?;
                db.set_batch_status(BATCH, BatchStatus::Syncing)?;
                Ok(())
            })
            .expect("endpoints and batch");

        let tls = TlsMaterial::generate(dir.path(), "proxy").unwrap_or_else(|e| panic!("{e}"));
        let mut config = ProxyConfig::new(vec![
            ListenerConfig {
                addr: "127.0.0.1:0".parse().expect("addr"),
                mode: ListenerMode::Plain,
            },
            ListenerConfig {
                addr: "127.0.0.1:0".parse().expect("addr"),
                mode: ListenerMode::ImplicitTls,
            },
        ]);
        config.tls = Some(TlsFiles {
            cert: tls.server_cert_file.clone(),
            key: tls.server_key_file.clone(),
        });
        config.route_poll_interval = Duration::from_millis(200);
        (options.configure)(&mut config);

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.worker_threads)
            .enable_all()
            .build()
            .expect("runtime");
        let mut sources = options.extra_sources;
        sources.push(Arc::new(
            BatchRoutes::from_store(store.clone(), options.admin_on_target).expect("store routes"),
        ));
        let routes = RouteTable::new(sources, None);
        let proxy = runtime
            .block_on(Proxy::bind(config, routes))
            .unwrap_or_else(|e| panic!("{e}"));
        let addrs = proxy.local_addrs();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = runtime.spawn(proxy.run(async move {
            let _ = stopped.await;
        }));
        Harness {
            source,
            target,
            store,
            tls,
            plain_addr: addrs[0],
            tls_addr: addrs[1],
            users: options.users,
            runtime: Some(runtime),
            stop: Some(stop),
            served: Some(served),
            _dir: dir,
        }
    }

    pub fn user(&self) -> (&str, &str) {
        (&self.users[0].0, &self.users[0].1)
    }

    /// The proxy as a kit endpoint: STARTTLS on the plain port, or the TLS port.
    pub fn proxy(&self, implicit_tls: bool, credentials: Credentials) -> Endpoint {
        let (addr, security) = if implicit_tls {
            (self.tls_addr, Security::Tls(self.tls.root_store()))
        } else {
            (self.plain_addr, Security::StartTls(self.tls.root_store()))
        };
        Endpoint {
            label: "proxy".into(),
            addr,
            security,
            credentials,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn set_status(&self, status: BatchStatus) {
        self.store
            .call(move |db| db.set_batch_status(BATCH, status).map(drop))
            .expect("batch status");
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().expect("runtime").block_on(f)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let (Some(rt), Some(served)) = (self.runtime.take(), self.served.take()) {
            let _ =
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), served).await });
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// Which server a logged-in client reached, by the marker folders.
pub fn reached(client: &mut crate::support::ImapClient) -> &'static str {
    let names: Vec<String> = client
        .list("", "*")
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|e| e.name)
        .collect();
    match (
        names.iter().any(|n| n == "OnSource"),
        names.iter().any(|n| n == "OnTarget"),
    ) {
        (true, false) => "source",
        (false, true) => "target",
        other => panic!("reached neither or both servers: {other:?} {names:?}"),
    }
}

/// A line-level client over plain TCP, for garbage and for watching unsolicited lines.
pub struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let s = TcpStream::connect(addr).expect("connect to the proxy");
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let writer = s.try_clone().expect("clone");
        let mut c = RawClient {
            reader: BufReader::new(s),
            writer,
        };
        let greeting = c.line();
        assert!(greeting.starts_with("* OK "), "{greeting}");
        c
    }

    /// The client's own port, as the proxy sees it.
    pub fn local_port(&self) -> u16 {
        self.writer.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to the proxy");
    }

    /// The next line, without CRLF; empty at EOF.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(_) => line.trim_end_matches(['\r', '\n']).to_owned(),
            Err(e) => panic!("reading from the proxy: {e}"),
        }
    }

    /// Lines up to and including the one tagged `tag`.
    pub fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            assert!(
                !l.is_empty(),
                "connection closed before {tag} completed: {lines:?}"
            );
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    /// True once the proxy closed the connection (EOF).
    pub fn at_eof(&mut self) -> bool {
        let mut rest = String::new();
        matches!(self.reader.read_line(&mut rest), Ok(0))
    }
}
