//! What the Cyrus and Courier instances share: where scripts/install-mail-servers unpacked
//! them, a process tree in its own PID and mount namespaces that dies whole, and a private
//! `/dev/log` whose messages land in the instance's log file.
//!
//! Both servers are built to be the one system-wide service: Cyrus logs only to syslog and
//! Courier's daemons read fixed paths (`/etc/courier`, `/run/courier`). Each instance
//! therefore runs under `unshare --pid --fork --kill-child --mount`: bind mounts in its mount
//! namespace give it its own `/etc/courier`, `/run/courier` and `/dev` (with `/dev/log` a
//! socket of the test's), and killing the `unshare` process kills the namespace's first
//! process, whereupon the kernel kills every other process in it. Nothing can outlive the
//! instance, and nothing outside it is touched. This needs root (CI runs as root).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::kit_error::KitError;
use super::process_table::{self, ProcessId};

/// Where scripts/install-mail-servers unpacks `cyrus-imapd` and `courier-imap`.
pub const KIT_PREFIX_ENV: &str = "IMAPMIRROR_KIT_PREFIX";
pub const DEFAULT_KIT_PREFIX: &str = "/opt/imapmirror-kit";

/// How long a killed namespace may take to disappear.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The prefix holding `cyrus/` and `courier/`.
pub fn kit_prefix() -> PathBuf {
    std::env::var_os(KIT_PREFIX_ENV)
        .map_or_else(|| PathBuf::from(DEFAULT_KIT_PREFIX), PathBuf::from)
}

/// `path` if it is a file, else an error telling to run scripts/install-mail-servers.
pub(crate) fn installed(path: &Path) -> Result<PathBuf, KitError> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(KitError::Environment {
            what: format!("{} does not exist", path.display()),
            remedy: "run scripts/install-mail-servers as root (scripts/install-deps runs it)"
                .to_owned(),
        })
    }
}

/// True when this process runs as root; the namespaces and bind mounts need it.
pub(crate) fn require_root(server: &str) -> Result<(), KitError> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self")
        .map_err(|e| KitError::file("read the owner of", "/proc/self", e))?;
    if me.uid() == 0 {
        Ok(())
    } else {
        Err(KitError::Environment {
            what: format!(
                "a private {server} instance runs in its own mount and PID namespaces, which needs root"
            ),
            remedy: "run the tests as root (as CI does)".to_owned(),
        })
    }
}

/// A path as one single-quoted shell word.
pub(crate) fn sh_quote(path: &Path) -> String {
    sh_word(&path.to_string_lossy())
}

pub(crate) fn sh_word(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Shell lines that replace `/dev` in the current mount namespace by `dev_dir`, which gets
/// the usual device nodes (bind-mounted from the real `/dev`) and a `log` symlink to
/// `syslog_socket`. Run them inside the instance's namespace only.
pub(crate) fn private_dev_script(dev_dir: &Path, syslog_socket: &Path) -> String {
    let dev = sh_quote(dev_dir);
    format!(
        "# A private /dev whose log is the test's syslog socket.
for n in null zero full random urandom tty; do
  if [ -e /dev/$n ]; then : > {dev}/$n; mount --bind /dev/$n {dev}/$n; fi
done
ln -sfn /proc/self/fd {dev}/fd
ln -sfn /proc/self/fd/0 {dev}/stdin
ln -sfn /proc/self/fd/1 {dev}/stdout
ln -sfn /proc/self/fd/2 {dev}/stderr
mkdir -p {dev}/shm
ln -sfn {socket} {dev}/log
mount --rbind {dev} /dev
",
        socket = sh_quote(syslog_socket),
    )
}

/// The process tree of one instance, in its own PID and mount namespaces.
pub(crate) struct Sandbox {
    child: Option<Child>,
    root: Option<ProcessId>,
}

impl Sandbox {
    /// Runs `/bin/sh script` as the first process of new PID and mount namespaces, with
    /// stdin closed and stdout and stderr appended to `output`.
    pub(crate) fn spawn(script: &Path, output: &Path) -> Result<Sandbox, KitError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(output)
            .map_err(|e| KitError::file("open", output, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| KitError::file("open", output, e))?;
        let child = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
            ])
            .arg(script)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| KitError::Environment {
                what: format!("could not run unshare (util-linux): {e}"),
                remedy: "install util-linux".to_owned(),
            })?;
        Ok(Sandbox {
            root: ProcessId::of(child.id()),
            child: Some(child),
        })
    }

    /// The exit status once the namespace has ended by itself.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// `unshare` and every process in the namespace, as running now.
    pub(crate) fn processes(&self) -> Vec<ProcessId> {
        match &self.root {
            Some(root) if root.is_running() => process_table::family(root.pid),
            _ => Vec::new(),
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.root.is_some_and(|p| p.is_running())
    }

    /// Kills the namespace (SIGKILL to `unshare`, whose child then gets SIGKILL, and with it
    /// every process of the namespace) and waits until none of its processes is left.
    /// Err names the processes still there.
    pub(crate) fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let family = process_table::family(child.id());
        let _ = child.kill();
        let _ = child.wait();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let running: Vec<ProcessId> = family
                .iter()
                .copied()
                .filter(ProcessId::is_running)
                .collect();
            if running.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "processes still running {} s after the namespace was killed: {}",
                    STOP_TIMEOUT.as_secs(),
                    running
                        .iter()
                        .map(|p| format!("{} ({})", p.pid, p.command_line()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("imapmirror test kit: {e}");
        }
    }
}

/// A syslog socket (`/dev/log` inside an instance) whose messages are appended, one a line,
/// to a log file, by a thread that ends when the sink is dropped.
pub(crate) struct SyslogSink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SyslogSink {
    pub(crate) fn start(socket: &Path, log: &Path) -> Result<SyslogSink, KitError> {
        let _ = std::fs::remove_file(socket);
        let receiver = UnixDatagram::bind(socket).map_err(|e| KitError::file("bind", socket, e))?;
        // Server processes run as their own users (cyrus, courier).
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| KitError::file("set permissions of", socket, e))?;
        receiver
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| KitError::file("set a timeout on", socket, e))?;
        let mut file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| KitError::file("open", log, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_seen = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("kit-syslog".to_owned())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                // Drain what is queued even after the stop request, then end.
                loop {
                    match receiver.recv(&mut buf) {
                        Ok(n) => {
                            let line = strip_syslog_priority(&buf[..n]);
                            let _ = file.write_all(line);
                            if !line.ends_with(b"\n") {
                                let _ = file.write_all(b"\n");
                            }
                        }
                        Err(_) if stop_seen.load(Ordering::Relaxed) => break,
                        Err(_) => {}
                    }
                }
            })
            .map_err(|e| KitError::file("start a thread for", socket, e))?;
        Ok(SyslogSink {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `<30>Dec  4 18:03:53 tag[1]: text` without the `<30>`.
fn strip_syslog_priority(message: &[u8]) -> &[u8] {
    if message.first() == Some(&b'<')
        && let Some(end) = message.iter().take(5).position(|&b| b == b'>')
    {
        return &message[end + 1..];
    }
    message
}

/// The last `lines` lines of a log file ("" when it does not exist).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The length of a file now (0 when it does not exist), to read what is written after.
pub(crate) fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// What was appended to a log file after it was `offset` bytes long.
pub(crate) fn log_since(path: &Path, offset: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    String::from_utf8_lossy(&text[start..]).into_owned()
}

/// Why an instance did not start, and whether trying other ports may help.
pub(crate) struct StartFailure {
    pub(crate) error: Box<KitError>,
    pub(crate) port_taken: bool,
}

/// What a server logs when a port it was given is taken meanwhile.
pub(crate) fn says_port_taken(log: &str) -> bool {
    log.contains("Address already in use")
}

/// Runs a command to completion with `input` on its stdin; Err with its stderr on failure.
pub(crate) fn run_with_input(command: &mut Command, input: &[u8]) -> Result<Vec<u8>, KitError> {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| KitError::Command {
            command: description.clone(),
            detail: e.to_string(),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let output = child.wait_with_output().map_err(|e| KitError::Command {
        command: description.clone(),
        detail: e.to_string(),
    })?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(KitError::Command {
            command: description,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_survive_quotes() {
        assert_eq!(sh_word("a b"), "'a b'");
        assert_eq!(sh_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn syslog_priority_is_dropped() {
        assert_eq!(strip_syslog_priority(b"<30>Dec 4 x: y"), b"Dec 4 x: y");
        assert_eq!(strip_syslog_priority(b"plain"), b"plain");
    }
}
