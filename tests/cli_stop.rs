//! Stopping a foreground pass whatever is in flight: `batch start --wait` is sent SIGTERM
//! while the target has stopped answering in the middle of APPENDs (a relay in front of it
//! freezes), so no pass can reach a safe point by itself. The process must still end
//! within 10 s, its output must have kept a progress line going while nothing moved, and
//! the next `batch start --wait` must leave every mailbox identical — no message lost, none
//! appended twice (the frozen APPENDs may or may not have reached the target).

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cli_harness::{Cli, migration_file};
use support::{
    Corpus, CorpusSpec, Dovecot, Layout, MASTER_PASSWORD, MASTER_USER, Verifier, separator_mapping,
    verify_users,
};

const USERS: usize = 4;
const MESSAGES: usize = 300;
/// Dovecot refuses keywords over 50 bytes by default; the corpus has a longer one.
const LONG_KEYWORDS: &str = "mail_max_keyword_length = 200";
/// What the issue asks of a stop: within 10 s, whatever is in flight.
const STOP_WITHIN: Duration = Duration::from_secs(10);

fn user(i: usize) -> String {
    format!("stop{i}@example.test")
}

/// A TCP relay to `upstream` that can freeze: once frozen, the connections open at that
/// moment never pass another byte from the server to the client (a server that hangs
/// mid-command); connections opened after `thaw` work normally.
struct FreezingRelay {
    port: u16,
    frozen: Arc<AtomicBool>,
    /// Bytes relayed from clients to the server (APPENDs are most of them).
    uploaded: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
}

impl FreezingRelay {
    fn start(upstream: std::net::SocketAddr) -> FreezingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let frozen = Arc::new(AtomicBool::new(false));
        let uploaded = Arc::new(AtomicU64::new(0));
        let generation = Arc::new(AtomicU64::new(0));
        let (f, u, g) = (frozen.clone(), uploaded.clone(), generation.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let born = g.load(Ordering::SeqCst);
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                let up = u.clone();
                std::thread::spawn(move || {
                    pipe(client, server, |n| {
                        up.fetch_add(n as u64, Ordering::Relaxed);
                        true
                    })
                });
                let (frozen, generation) = (f.clone(), g.clone());
                std::thread::spawn(move || {
                    pipe(s2, c2, |_| {
                        !(frozen.load(Ordering::SeqCst)
                            || generation.load(Ordering::SeqCst) != born)
                    })
                });
            }
        });
        FreezingRelay {
            port,
            frozen,
            uploaded,
            generation,
        }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Frozen connections stay frozen; new ones work.
    fn thaw(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.frozen.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` while `pass(n)` says to forward; afterwards reads and drops.
fn pipe(mut from: TcpStream, mut to: TcpStream, mut pass: impl FnMut(usize) -> bool) {
    let mut buf = [0u8; 16 * 1024];
    let mut forwarding = true;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        forwarding = forwarding && pass(n);
        if forwarding && to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn sigterm_ends_a_pass_stuck_on_the_target_within_ten_seconds_and_the_next_start_is_exact() {
    let mut source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus);
    let mut target = Dovecot::builder()
        .label("target")
        .layout(Layout::Fs)
        .extra_config(LONG_KEYWORDS);
    for i in 0..USERS {
        source = source.user(&user(i), "pw");
        target = target.user(&user(i), "pw");
    }
    let source = source.start().expect("source starts");
    let target = target.start().expect("target starts");
    for i in 0..USERS {
        let corpus = Corpus::generate(CorpusSpec::small(900 + i as u64).with_messages(MESSAGES));
        source
            .seed(&user(i), corpus.folders(), corpus.messages())
            .expect("seed");
    }
    let relay = FreezingRelay::start(target.plain_addr());

    let cli = Cli::new();
    cli.add_dovecot_endpoint("src", &source, "dovecot", &[]);
    let pw = cli.file("tgt.pw", format!("{MASTER_PASSWORD}\n").as_bytes());
    let port = relay.port.to_string();
    cli.ok(&[
        "endpoint",
        "add",
        "tgt",
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
        "dovecot",
    ]);
    let rows: Vec<(String, String)> = (0..USERS).map(|i| (user(i), user(i))).collect();
    let rows: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str(), ""))
        .collect();
    let csv = cli.file("users.csv", &migration_file(&rows));
    cli.ok(&[
        "batch", "add", "b1", "--csv", &csv, "--source", "src", "--target", "tgt",
    ]);

    let stderr_path = cli.files.path().join("start.stderr");
    let mut child = cli
        .command(&["batch", "start", "b1", "--wait"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("batch start runs");
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    // Freeze the target once mail is flowing into it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while relay.uploaded.load(Ordering::Relaxed) < 256 * 1024 {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the pass ended before the target was frozen:\n{}",
            stderr()
        );
        assert!(
            Instant::now() < deadline,
            "no mail reached the target:\n{}",
            stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    relay.freeze();
    let before_freeze = stderr().len();
    std::thread::sleep(Duration::from_secs(7));
    let during_freeze = stderr()[before_freeze..].to_owned();
    assert!(
        during_freeze.contains("mailboxes done"),
        "no progress line in 7 s while the target hung:\n{}",
        stderr()
    );

    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let code = wait_exit(&mut child, STOP_WITHIN);
    let took = signalled.elapsed();
    if code.is_none() {
        let _ = child.kill();
        panic!(
            "batch start --wait still ran {took:?} after SIGTERM:\n{}",
            stderr()
        );
    }
    let log = stderr();
    assert_ne!(code, Some(0), "a stopped pass is not a success:\n{log}");
    assert!(
        log.contains("resumes it exactly"),
        "the exit says how to resume:\n{log}"
    );

    // The next start resumes: every mailbox identical, nothing twice.
    relay.thaw();
    let out = cli.ok(&["batch", "start", "b1", "--wait"]);
    assert!(out.contains("Synced"), "{out}");
    let verifier = Verifier::new().with_folder_map(separator_mapping);
    for i in 0..USERS {
        verify_users(&source, &user(i), &target, &user(i), &verifier)
            .expect("verifier")
            .assert_equal();
    }
}
