//! Drives the built `imapmirror` binary the way an administrator does: one state
//! directory per test, commands with arguments and environment, exit codes, stdout, stderr.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Dovecot, MASTER_PASSWORD, MASTER_USER};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imapmirror"))
}

/// One state directory and a scratch directory for files (migration files, passwords).
pub struct Cli {
    pub state: tempfile::TempDir,
    pub files: tempfile::TempDir,
}

/// What a command did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Cli {
    pub fn new() -> Cli {
        Cli {
            state: tempfile::tempdir().expect("state dir"),
            files: tempfile::tempdir().expect("files dir"),
        }
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// A command with the state directory set and no terminal.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("IMAPMIRROR_STATE_DIR", self.state.path())
            .env_remove("IMAPMIRROR_ADMIN_PASSWORD")
            .env_remove("IMAPMIRROR_LOG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("imapmirror runs"))
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code,
            0,
            "`imapmirror {}` failed with {}:\nstdout: {}\nstderr: {}",
            args.join(" "),
            r.code,
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// Runs a command that must exit with `code`; returns its stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code,
            code,
            "`imapmirror {}` exited {} instead of {code}:\nstdout: {}\nstderr: {}",
            args.join(" "),
            r.code,
            r.stdout,
            r.stderr
        );
        r.stderr
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}): {out}", args.join(" ")))
    }

    /// Writes a scratch file (0600) and returns its path.
    pub fn file(&self, name: &str, contents: &[u8]) -> String {
        let path = self.files.path().join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path.display().to_string()
    }

    /// Adds a kit Dovecot as an endpoint with its master user (`format`), plain IMAP.
    pub fn add_dovecot_endpoint(&self, name: &str, server: &Dovecot, format: &str, extra: &[&str]) {
        let pw = self.file(
            &format!("{name}.pw"),
            format!("{MASTER_PASSWORD}\n").as_bytes(),
        );
        let port = server.plain_addr().port().to_string();
        let mut args = vec![
            "endpoint",
            "add",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--security",
            "none",
            "--admin-user",
            MASTER_USER,
            "--admin-password-file",
            &pw,
            "--admin-format",
            format,
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// Starts `imapmirror serve` in the background (its log goes to a file).
    pub fn spawn_serve(&self, extra: &[&str]) -> Child {
        let log = std::fs::File::create(self.files.path().join("serve.log")).expect("serve log");
        let mut args = vec!["serve"];
        args.extend_from_slice(extra);
        self.command(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("serve starts")
    }

    /// Starts `serve` and waits until it answers on its control socket.
    pub fn start_serve(&self, extra: &[&str]) -> Child {
        let mut child = self.spawn_serve(extra);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.serve_log().contains("serving") {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("serve exited with {status} at start:\n{}", self.serve_log());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start:\n{}",
                self.serve_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(self.files.path().join("serve.log")).unwrap_or_default()
    }

    /// The status JSON of a batch.
    pub fn status(&self, batch: &str) -> serde_json::Value {
        self.json(&["batch", "status", batch, "--json"])
    }

    /// Polls the batch status until `done` says so or `limit` passes.
    pub fn wait_for(
        &self,
        batch: &str,
        limit: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.status(batch);
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "batch {batch} did not get there within {limit:?}: {status:#}\nserve log:\n{}",
                self.serve_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every file under the state directory whose bytes contain `needle`.
    pub fn state_files_containing(&self, needle: &[u8]) -> Vec<PathBuf> {
        let mut hits = Vec::new();
        let mut stack = vec![self.state.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read state dir").flatten() {
                let path = entry.path();
                let meta = std::fs::symlink_metadata(&path).expect("metadata");
                if meta.is_dir() {
                    stack.push(path);
                } else if meta.is_file() {
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        hits.push(path);
                    }
                }
            }
        }
        hits
    }
}

/// A migration file: header and one row per (email, user name, password).
pub fn migration_file(rows: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut text = String::from("EmailAddress,UserName,Password\r\n");
    for (email, user, password) in rows {
        text.push_str(&format!("{email},{user},{password}\r\n"));
    }
    text.into_bytes()
}

/// Samples `doveadm who` on each server every 50 ms while `run` runs; returns what `run`
/// returned and, per server, the largest number of distinct users logged in at once.
pub fn max_concurrent_users<T>(servers: &[&Dovecot], run: impl FnOnce() -> T) -> (T, Vec<usize>) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let configs: Vec<PathBuf> = servers
        .iter()
        .map(|s| s.config_path().to_path_buf())
        .collect();
    let flag = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut max = vec![0usize; configs.len()];
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            for (i, config) in configs.iter().enumerate() {
                let out = Command::new("doveadm")
                    .arg("-c")
                    .arg(config)
                    .args(["who", "-1"])
                    .stdin(Stdio::null())
                    .output();
                if let Ok(out) = out {
                    let text = String::from_utf8_lossy(&out.stdout);
                    let users: std::collections::BTreeSet<&str> = text
                        .lines()
                        .filter(|l| l.contains('@'))
                        .filter_map(|l| l.split_whitespace().next())
                        .collect();
                    max[i] = max[i].max(users.len());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        max
    });
    let result = run();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let max = sampler.join().expect("sampler");
    (result, max)
}
