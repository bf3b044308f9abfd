//! The control socket: how CLI commands reach the process that owns a state directory.
//!
//! The store allows one process per state directory. The owner (`serve`, a foreground
//! `--wait` pass) listens on `STATE_DIR/control.sock` (0600, inside the
//! 0700 state directory); every other command that finds the directory locked sends its
//! request there instead of failing. The protocol is JSON lines: one [`Request`] per line,
//! answered by one line `{"ok": Reply}` or `{"error": {"message", "fault"}}`. Requests
//! may carry passwords (a new batch's rows), which is why nothing but the owner can
//! reach the socket and why requests are never logged.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::control::request::{Control, Reply, Request, WireError};
use crate::error::Error;

/// The socket's file name inside the state directory.
pub const SOCKET_NAME: &str = "control.sock";

/// A 50,000-row migration file as JSON stays well below this.
const MAX_LINE: u64 = 64 * 1024 * 1024;

/// Where the socket of `state_dir` is.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Ok(Box<Reply>),
    Error(WireError),
}

fn socket_err(path: &Path, action: &'static str, detail: impl ToString) -> Error {
    Error::ControlSocket {
        path: path.display().to_string(),
        action,
        detail: detail.to_string(),
    }
}

/// Binds the socket of a state directory this process owns (any file left there by a
/// process that died is stale: the caller holds the directory's lock).
pub fn bind(state_dir: &Path) -> Result<UnixListener, Error> {
    let path = socket_path(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(socket_err(&path, "removing a stale socket", e)),
    }
    let listener = UnixListener::bind(&path).map_err(|e| socket_err(&path, "listening", e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| socket_err(&path, "restricting its permissions", e))?;
    Ok(listener)
}

/// Answers requests until `stop` is cancelled, then removes the socket file. Each
/// connection is served on its own task, so a long request (a test, a stop) does not
/// hold up a `status`.
pub async fn serve(listener: UnixListener, control: Arc<Control>, stop: CancellationToken) {
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let control = control.clone();
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(stream, &control, &stop).await {
                            tracing::debug!(error = %e, "a control connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a control connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            () = stop.cancelled() => break,
        }
    }
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
}

async fn serve_connection(
    stream: UnixStream,
    control: &Control,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_LINE));
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::select! {
            n = reader.read_line(&mut line) => n?,
            () = stop.cancelled() => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let answer = match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(request) => match control.execute(request).await {
                Ok(reply) => Answer::Ok(Box::new(reply)),
                Err(e) => Answer::Error(WireError::from(&e)),
            },
            Err(e) => Answer::Error(WireError {
                message: format!(
                    "The control socket received a request it cannot read ({e}): use the same imapmirror version for the command as for the running process."
                ),
                fault: "user_input".to_owned(),
            }),
        };
        let mut out = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
        out.push(b'\n');
        write.write_all(&out).await?;
        write.flush().await?;
        // Stop reading once the budget for lines is spent; the client reconnects.
        reader.get_mut().set_limit(MAX_LINE);
    }
}

/// Sends one request to the owner of `state_dir` and returns its reply (an error reply
/// becomes [`Error::Relayed`] with the owner's message and fault).
pub async fn send(state_dir: &Path, request: &Request) -> Result<Reply, Error> {
    let path = socket_path(state_dir);
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|e| socket_err(&path, "connecting", e))?;
    let (read, mut write) = stream.into_split();
    let mut out =
        serde_json::to_vec(request).map_err(|e| socket_err(&path, "encoding a request", e))?;
    out.push(b'\n');
    write
        .write_all(&out)
        .await
        .map_err(|e| socket_err(&path, "sending a request", e))?;
    let mut reader = BufReader::new(read.take(MAX_LINE));
    let mut line = String::new();
    let n = reader
        .read_line(&mut line)
        .await
        .map_err(|e| socket_err(&path, "reading the reply", e))?;
    reply_from_line(&path, &line, n)
}

/// The owner's answer line (`n` bytes read; 0 means it hung up).
fn reply_from_line(path: &Path, line: &str, n: usize) -> Result<Reply, Error> {
    if n == 0 {
        return Err(socket_err(
            path,
            "reading the reply",
            "the owning process closed the connection (it may be shutting down)",
        ));
    }
    match serde_json::from_str::<Answer>(line.trim_end())
        .map_err(|e| socket_err(path, "decoding the reply", e))?
    {
        Answer::Ok(reply) => Ok(*reply),
        Answer::Error(e) => Err(Error::from(e)),
    }
}

/// [`send`] for a caller on a plain thread (the proxy's route refresh runs on tokio's
/// blocking pool, where a nested runtime would panic). `timeout` bounds each read and
/// write, so an owner that hangs cannot hold the caller.
pub fn send_blocking(
    state_dir: &Path,
    request: &Request,
    timeout: std::time::Duration,
) -> Result<Reply, Error> {
    use std::io::{BufRead, Read, Write};
    let path = socket_path(state_dir);
    let stream = std::os::unix::net::UnixStream::connect(&path)
        .map_err(|e| socket_err(&path, "connecting", e))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| socket_err(&path, "setting a timeout", e))?;
    let mut out =
        serde_json::to_vec(request).map_err(|e| socket_err(&path, "encoding a request", e))?;
    out.push(b'\n');
    (&stream)
        .write_all(&out)
        .map_err(|e| socket_err(&path, "sending a request", e))?;
    let mut reader = std::io::BufReader::new((&stream).take(MAX_LINE));
    let mut line = String::new();
    let n = reader
        .read_line(&mut line)
        .map_err(|e| socket_err(&path, "reading the reply", e))?;
    reply_from_line(&path, &line, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::runner::{BatchRuntime, RunnerOptions};

    #[tokio::test]
    async fn requests_round_trip_through_the_socket() {
        let dir = tempfile::tempdir().expect("dir");
        let store = imapmirror_storage::Store::open(dir.path()).expect("store");
        let runtime = Arc::new(BatchRuntime::new(store, RunnerOptions::default(), None));
        let control = Arc::new(Control::new(runtime, None));
        let listener = bind(dir.path()).expect("bind");
        let mode = std::fs::metadata(socket_path(dir.path()))
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, control, stop.clone()));

        match send(dir.path(), &Request::Ping).await.expect("ping") {
            Reply::Pong { pid, scheduler, .. } => {
                assert_eq!(pid, std::process::id());
                assert!(!scheduler);
            }
            other => panic!("unexpected reply {other:?}"),
        }
        let err = send(
            dir.path(),
            &Request::BatchUsers {
                name: "nope".into(),
            },
        )
        .await
        .expect_err("unknown batch");
        assert_eq!(err.fault(), crate::Fault::UserInput);
        assert!(err.to_string().contains("\"nope\""), "{err}");

        stop.cancel();
        server.await.expect("server ends");
        assert!(
            !socket_path(dir.path()).exists(),
            "socket removed on shutdown"
        );
    }
}
