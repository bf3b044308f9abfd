//! `imapmirror proxy`: the routing proxy in front of a migration.
//!
//! The proxy runs beside `serve` and the batch commands, so it must not own the state
//! directory. It routes from a snapshot of the batches ([`StateDirSnapshots`]), refreshed
//! every second: read from the store when no process holds it (the lock is held for the
//! few milliseconds of the read), else asked of the owner over its control socket. A poll
//! that finds the directory briefly held by a short command keeps the previous routes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use imapmirror_engine::control::request::{Reply, Request};
use imapmirror_engine::control::socket::{self as control_socket, socket_path};
use imapmirror_proxy::{
    BatchRoutes, FileRoutes, IdForwarding, ListenerConfig, ListenerMode, ProxyConfig, ProxyError,
    RouteSource, RouteTable, SnapshotSource, TlsFiles,
};
use imapmirror_storage::{RoutingSnapshot, Store, StoreError};

use crate::cli_args::ProxyArgs;
use crate::exit_status::BadRequest;

/// How long the first snapshot waits for a short command to release the directory.
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(10);
/// The longest an owner may take to answer a snapshot request.
const OWNER_TIMEOUT: Duration = Duration::from_secs(5);

/// A read from a free store is skipped while its files are as this proxy left them, but
/// not for longer than this (a change that kept every size and time is still seen).
const UNCHANGED_RECHECK: Duration = Duration::from_secs(30);

/// Snapshots of a state directory that another process may own.
pub struct StateDirSnapshots {
    dir: PathBuf,
    with_secrets: bool,
    /// The database files as the last read of a free store left them, and when.
    last_read: Mutex<Option<(FilesSignature, Instant)>>,
}

/// Names, sizes and modification times of the database files: opening sled rewrites
/// them (and fsyncs), so a poll first checks whether anyone else touched them.
type FilesSignature = Vec<(std::ffi::OsString, u64, Option<std::time::SystemTime>)>;

fn files_signature(dir: &Path) -> FilesSignature {
    let mut files: FilesSignature = std::fs::read_dir(dir.join("db"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.file_name(), meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

impl StateDirSnapshots {
    pub fn new(dir: &Path, with_secrets: bool) -> Self {
        StateDirSnapshots {
            dir: dir.to_path_buf(),
            with_secrets,
            last_read: Mutex::new(None),
        }
    }

    /// True when the store is free and untouched since this proxy last read it.
    fn untouched_since_last_read(&self) -> bool {
        let last = self
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*last {
            Some((signature, at)) => {
                at.elapsed() < UNCHANGED_RECHECK && *signature == files_signature(&self.dir)
            }
            None => false,
        }
    }

    fn error(&self, detail: impl ToString) -> ProxyError {
        ProxyError::RouteSource {
            from: self.describe(),
            detail: detail.to_string(),
        }
    }

    /// One attempt; `Ok(Err(pid))` when a process (pid as the lock file names it) holds the directory without answering
    /// on a control socket (a short command: try again shortly).
    fn try_load(
        &self,
        known: Option<&str>,
    ) -> Result<Result<Option<RoutingSnapshot>, String>, ProxyError> {
        if known.is_some() && self.untouched_since_last_read() {
            return Ok(Ok(None));
        }
        match Store::open(&self.dir) {
            Ok(store) => {
                tracing::debug!(dir = %self.dir.display(), "reading the routes from the store");
                let known = known.map(str::to_owned);
                let with_secrets = self.with_secrets;
                // Called from blocking threads (`spawn_blocking`), never from the reactor.
                let snapshot = store
                    .call(move |db| {
                        let version = db.routing_version()?;
                        if known.as_deref() == Some(version.as_str()) {
                            return Ok(None);
                        }
                        db.routing_snapshot(with_secrets).map(Some)
                    })
                    .map_err(|e| self.error(e));
                // Dropping the store releases the lock for `serve` and the commands.
                drop(store);
                *self
                    .last_read
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some((files_signature(&self.dir), Instant::now()));
                Ok(Ok(snapshot?))
            }
            Err(StoreError::Locked { pid, .. }) => {
                if !socket_path(&self.dir).exists() {
                    return Ok(Err(pid));
                }
                let request = Request::RoutingSnapshot {
                    known_version: known.map(str::to_owned),
                    with_secrets: self.with_secrets,
                };
                match control_socket::send_blocking(&self.dir, &request, OWNER_TIMEOUT) {
                    Ok(Reply::RoutingSnapshot { snapshot }) => Ok(Ok(snapshot)),
                    Ok(_) => Err(self.error(
                        "its owner answered with an unexpected reply; run the same imapmirror version for the proxy and for serve",
                    )),
                    // A socket left by a process that is exiting: like a short command.
                    Err(imapmirror_engine::Error::ControlSocket { .. }) => Ok(Err(pid)),
                    Err(e) => Err(self.error(e)),
                }
            }
            Err(e) => Err(self.error(e)),
        }
    }
}

impl SnapshotSource for StateDirSnapshots {
    fn describe(&self) -> String {
        format!("the state directory {}", self.dir.display())
    }

    fn load(&self, known: Option<&str>) -> Result<Option<RoutingSnapshot>, ProxyError> {
        let deadline = Instant::now() + FIRST_LOAD_WAIT;
        loop {
            match self.try_load(known)? {
                Ok(snapshot) => return Ok(snapshot),
                // Later polls keep the routes they have and try again in a second.
                Err(_) if known.is_some() => return Ok(None),
                Err(pid) if Instant::now() >= deadline => {
                    return Err(self.error(format!(
                        "process {pid} holds it and does not answer on {}; wait for that command to finish, or stop it",
                        socket_path(&self.dir).display()
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// The proxy's configuration from its flags.
fn config(args: &ProxyArgs) -> ProxyConfig {
    let listeners = args
        .listen
        .iter()
        .map(|&addr| ListenerConfig {
            addr,
            mode: ListenerMode::Plain,
        })
        .chain(args.listen_tls.iter().map(|&addr| ListenerConfig {
            addr,
            mode: ListenerMode::ImplicitTls,
        }))
        .collect();
    let mut config = ProxyConfig::new(listeners);
    config.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    config.allow_plaintext = args.allow_plaintext;
    config.limits.max_connections = args.max_connections;
    config.id_forwarding = IdForwarding {
        enabled: args.forward_id,
        ..IdForwarding::default()
    };
    config
}

/// Routes: the route file first (it adds to and overrides the batches), then the batches
/// of the state directory, then the default backend.
fn routes(dir: &Path, args: &ProxyArgs) -> anyhow::Result<RouteTable> {
    let batches = BatchRoutes::new(
        Box::new(StateDirSnapshots::new(dir, args.target_admin_login)),
        args.target_admin_login,
    )?;
    let default = match &args.default_backend {
        None => None,
        Some(name) => Some(batches.endpoint(name).ok_or_else(|| {
            anyhow!(BadRequest(format!(
                "The default backend {name} is not an endpoint of the state directory {}: add it with `imapmirror endpoint add {name} ...`, or name one that `imapmirror endpoint list` shows.",
                dir.display()
            )))
        })?),
    };
    let mut sources: Vec<Arc<dyn RouteSource>> = Vec::new();
    if let Some(path) = &args.route_file {
        sources.push(Arc::new(FileRoutes::open(path)?));
    }
    sources.push(Arc::new(batches));
    Ok(RouteTable::new(
        sources,
        default.map(|backend| (*backend).clone()),
    ))
}

/// `imapmirror proxy`: serves until SIGINT or SIGTERM, then closes sessions with
/// `* BYE [UNAVAILABLE]` and exits 0.
pub async fn run(dir: &Path, args: ProxyArgs) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind| {
        signal(kind).map_err(|e| {
            anyhow!(
                "Listening for SIGINT and SIGTERM failed ({e}); check the process's signal limits."
            )
        })
    };
    let mut interrupt = listen(SignalKind::interrupt())?;
    let mut terminate = listen(SignalKind::terminate())?;
    let config = config(&args);
    config.validate()?;
    // The recorder goes in before the first session; the address is bound now, so that
    // a taken one fails the command at once.
    let stop_http = imapmirror_engine::CancellationToken::new();
    let http_task = match args.http {
        Some(addr) => Some(
            crate::metrics_export::serve_proxy_metrics(
                addr,
                crate::metrics_export::recorder()?,
                stop_http.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let dir_owned = dir.to_path_buf();
    // The first snapshot may wait for a short command to let go of the directory.
    let routes = tokio::task::spawn_blocking(move || routes(&dir_owned, &args))
        .await
        .map_err(|e| anyhow!("The route loader stopped unexpectedly ({e}); this is a bug in imapmirror, please report it."))??;
    let proxy = imapmirror_proxy::Proxy::bind(config, routes).await?;
    for addr in proxy.local_addrs() {
        tracing::info!(address = %addr, "proxy ready");
    }
    proxy
        .run(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("stopping: closing proxied sessions");
        })
        .await?;
    stop_http.cancel();
    if let Some(task) = http_task {
        let _ = task.await;
    }
    Ok(ExitCode::SUCCESS)
}
