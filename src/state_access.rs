//! Where the state directory is, and how a command reaches it: by opening the store
//! itself, or — when a long-lived owner (`serve`, a foreground pass) holds the lock — by
//! sending its request over that owner's control socket. Either way the request runs
//! through the engine's one set of handlers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use imapmirror_engine::batch::notification::Notifier;
use imapmirror_engine::batch::runner::{BatchRuntime, RunnerOptions};
use imapmirror_engine::control::request::{Control, Reply, Request};
use imapmirror_engine::control::socket::{self as control_socket, socket_path};
use imapmirror_storage::{Store, StoreError};

use crate::exit_status::BadRequest;

/// `--state-dir`, else `$IMAPMIRROR_STATE_DIR`, else `$XDG_STATE_HOME/imapmirror`, else
/// `~/.local/state/imapmirror` (empty variables count as unset).
pub fn resolve(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os("IMAPMIRROR_STATE_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        let xdg = PathBuf::from(xdg);
        // The XDG spec says relative values are invalid and must be ignored.
        if xdg.is_absolute() {
            return Ok(xdg.join("imapmirror"));
        }
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/imapmirror")),
        None => Err(anyhow!(BadRequest(
            "No state directory is set and $HOME is empty: pass --state-dir DIR or set IMAPMIRROR_STATE_DIR."
                .to_owned()
        ))),
    }
}

/// A way to the state directory.
pub enum StateAccess {
    /// This process owns the store.
    Local(Arc<Control>),
    /// Another process owns it; requests go over its socket.
    Remote(PathBuf),
}

/// How long a command waits for a short-lived owner (another command) to let go.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens the store, or finds the owner's control socket.
pub async fn open(dir: &Path, notifier: Option<Notifier>) -> anyhow::Result<StateAccess> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match Store::open(dir) {
            Ok(store) => {
                let runtime =
                    Arc::new(BatchRuntime::new(store, RunnerOptions::default(), notifier));
                return Ok(StateAccess::Local(Arc::new(Control::new(runtime, None))));
            }
            Err(StoreError::Locked { pid, .. }) => {
                if socket_path(dir).exists()
                    && let Ok(Reply::Pong { .. }) = control_socket::send(dir, &Request::Ping).await
                {
                    return Ok(StateAccess::Remote(dir.to_path_buf()));
                }
                if Instant::now() >= deadline {
                    return Err(anyhow!(
                        "The state directory {} is in use by process {pid}, which does not answer on {}: wait for that command to finish, or stop it and retry.",
                        dir.display(),
                        socket_path(dir).display()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(imapmirror_engine::Error::State {
                    action: format!("opening the state directory {}", dir.display()),
                    source: e,
                }
                .into());
            }
        }
    }
}

impl StateAccess {
    /// Runs a request here or in the owning process.
    pub async fn execute(&self, request: Request) -> Result<Reply, imapmirror_engine::Error> {
        match self {
            StateAccess::Local(control) => control.execute(request).await,
            StateAccess::Remote(dir) => control_socket::send(dir, &request).await,
        }
    }

    /// Flushes a local store so that what this command did is on disk before it exits.
    pub async fn flush(&self) -> anyhow::Result<()> {
        if let StateAccess::Local(control) = self {
            control.runtime().store().flush().await.map_err(|source| {
                imapmirror_engine::Error::State {
                    action: "saving the state directory".to_owned(),
                    source,
                }
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_directory_wins() {
        let dir = resolve(Some(PathBuf::from("/srv/imapmirror"))).expect("resolves");
        assert_eq!(dir, PathBuf::from("/srv/imapmirror"));
    }
}
