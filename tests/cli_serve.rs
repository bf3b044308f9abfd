//! `imapmirror serve` as an administrator runs it: commands reach it over the control
//! socket; killed with SIGKILL mid-batch and started again, it finishes the batch with
//! every mailbox identical and no message twice; SIGTERM makes it stop cleanly (exit 0)
//! with the work in flight journaled and queued for the next start.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::process::Child;
use std::time::{Duration, Instant};

use cli_harness::{Cli, migration_file};
use support::{Corpus, CorpusSpec, Dovecot, Layout, verify_users};

const USERS: usize = 8;
const MESSAGES: usize = 300;
const LONG_KEYWORDS: &str = "mail_max_keyword_length = 200";

fn user(i: usize) -> String {
    format!("member{i}@example.test")
}

fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} failed");
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
fn serve_resumes_after_a_kill_and_stops_cleanly_on_sigterm() {
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
        let corpus = Corpus::generate(CorpusSpec::small(50 + i as u64).with_messages(MESSAGES));
        source
            .seed(&user(i), corpus.folders(), corpus.messages())
            .expect("seed");
    }
    let cli = Cli::new();
    cli.add_dovecot_endpoint(
        "src",
        &source,
        "dovecot",
        &["--max-concurrent-migrations", "2"],
    );
    cli.add_dovecot_endpoint("tgt", &target, "dovecot", &[]);
    let rows: Vec<(String, String)> = (0..USERS).map(|i| (user(i), user(i))).collect();
    let rows: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str(), ""))
        .collect();
    let csv = cli.file("users.csv", &migration_file(&rows));
    cli.ok(&[
        "batch", "add", "b1", "--csv", &csv, "--source", "src", "--target", "tgt",
    ]);

    // First serve: start the batch through it, kill it once some mailboxes are done.
    let mut serve = cli.start_serve(&[]);
    let started = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = cli.run(&["batch", "start", "b1"]);
            if r.code == 0 {
                break r.stdout;
            }
            assert!(
                Instant::now() < deadline,
                "batch start failed: {}",
                r.stderr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(started.contains("serve"), "{started}");
    // A second serve on the same state directory is refused.
    let second = cli.fails(&["serve"], 2);
    assert!(second.contains("already owned"), "{second}");
    cli.wait_for("b1", Duration::from_secs(120), |s| {
        s["mailboxes_synced"].as_u64().unwrap_or(0) >= 2 || s["status"] == "Synced"
    });
    signal(&serve, "KILL");
    let _ = wait_exit(&mut serve, Duration::from_secs(10));
    let after_kill = cli.status("b1");
    assert_eq!(after_kill["status"], "Syncing", "{after_kill:#}");

    // Second serve: resumes; SIGTERM while it works ends it with exit 0.
    let mut serve = cli.start_serve(&[]);
    // Let it get into a pass (mail moving again) before the signal.
    std::thread::sleep(Duration::from_millis(1500));
    signal(&serve, "TERM");
    let code = wait_exit(&mut serve, Duration::from_secs(60));
    assert_eq!(
        code,
        Some(0),
        "serve exits 0 on SIGTERM; log:\n{}",
        cli.serve_log()
    );
    let after_term = cli.status("b1");
    assert_eq!(
        after_term["mailboxes_syncing"], 0,
        "nothing left mid-pass: {after_term:#}"
    );
    assert!(
        !cli.state_dir().join("control.sock").exists(),
        "socket removed on exit"
    );

    // Third serve: finishes the batch, and shows its status over HTTP too.
    let http = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr")
    };
    let token = cli.file("http-token", b"t0ken-for-the-status-pages\n");
    let mut serve = cli.start_serve(&["--http", &http.to_string(), "--http-token-file", &token]);
    let done = cli.wait_for("b1", Duration::from_secs(240), |s| {
        s["status"] == "Synced" || s["status"] == "Failed"
    });
    assert_eq!(done["status"], "Synced", "{done:#}\n{}", cli.serve_log());
    assert_eq!(done["mailboxes_synced"], USERS);
    for i in 0..USERS {
        // Equal multisets of message hashes: nothing lost, nothing appended twice.
        verify_users(
            &source,
            &user(i),
            &target,
            &user(i),
            &support::Verifier::new(),
        )
        .expect("verifier")
        .assert_equal();
    }
    let users = cli.json(&["batch", "users", "b1", "--json"]);
    let total: u64 = users
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["items_synced"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        total,
        (USERS * MESSAGES) as u64,
        "the uid map counts every message once"
    );
    // Probes need no token; everything that names mailboxes does.
    assert!(http_get(http, "/healthz", None).starts_with("ok"));
    let refused = http_request(http, "/batches/b1", None);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let bearer = Some("Bearer t0ken-for-the-status-pages");
    let body = http_get(http, "/batches/b1", bearer);
    let over_http: serde_json::Value = serde_json::from_str(&body).expect("JSON over HTTP");
    assert_eq!(over_http["status"], "Synced", "{body}");
    // The status pages: the batch on the overview, every mailbox with its count on the
    // batch's page, as `batch users --json` has them.
    let overview = http_get(http, "/", bearer);
    assert!(overview.contains("href=\"/batch/b1\""), "{overview}");
    assert!(overview.contains(">Synced<"), "{overview}");
    let page = http_get(http, "/batch/b1", bearer);
    for u in users.as_array().expect("array") {
        let email = u["email"].as_str().expect("email");
        let row = page
            .lines()
            .find(|l| l.starts_with(&format!("<tr id=\"{email}\">")))
            .unwrap_or_else(|| panic!("a row for {email} in {page}"));
        assert!(
            row.contains(&format!("<td class=\"num\">{}</td>", u["items_synced"])),
            "{email}'s count in {row}"
        );
        assert!(row.contains(">Synced<"), "{row}");
    }
    let csv = http_get(http, "/batches/b1/report.csv", bearer);
    assert!(csv.starts_with("Record,Batch,"), "{csv}");
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("mailbox,")).count(),
        USERS
    );
    signal(&serve, "TERM");
    assert_eq!(wait_exit(&mut serve, Duration::from_secs(30)), Some(0));
}

/// A bare HTTP/1.1 GET, with an Authorization header if given; returns the response.
fn http_request(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to --http");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// A GET that must succeed; returns the body.
fn http_get(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> String {
    let response = http_request(addr, path, auth);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

#[test]
fn serve_runs_an_incremental_pass_every_sync_interval() {
    let source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus)
        .user(&user(0), "pw")
        .start()
        .expect("source starts");
    let target = Dovecot::builder()
        .label("target")
        .layout(Layout::Fs)
        .extra_config(LONG_KEYWORDS)
        .user(&user(0), "pw")
        .start()
        .expect("target starts");
    let corpus = Corpus::generate(CorpusSpec::small(5).with_messages(40));
    source
        .seed(&user(0), corpus.folders(), corpus.messages())
        .expect("seed");
    let cli = Cli::new();
    cli.add_dovecot_endpoint("src", &source, "dovecot", &[]);
    cli.add_dovecot_endpoint("tgt", &target, "sasl", &[]);
    let csv = cli.file("users.csv", &migration_file(&[(&user(0), &user(0), "pw")]));
    let mut serve = cli.start_serve(&[]);
    // `--start` while serve runs: the add goes over the socket and the scheduler runs it.
    let out = cli.ok(&[
        "batch",
        "add",
        "b1",
        "--csv",
        &csv,
        "--source",
        "src",
        "--target",
        "tgt",
        "--sync-interval",
        "2s",
        "--start",
    ]);
    assert!(out.contains("runs it now"), "{out}");
    cli.wait_for("b1", Duration::from_secs(60), |s| s["status"] == "Synced");

    let fresh = Corpus::generate(CorpusSpec::small(6).with_messages(3));
    let messages: Vec<support::SeedMessage> = fresh
        .messages()
        .map(|mut m| {
            m.folder = support::FolderPath::new(&["INBOX"]);
            m
        })
        .collect();
    source
        .append_messages(&user(0), messages)
        .expect("new mail");
    // No command: the next pass comes by itself, one interval after the last.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let users = cli.json(&["batch", "users", "b1", "--json"]);
        if users[0]["last_pass_items"] == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no incremental pass came: {users:#}\n{}",
            cli.serve_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    verify_users(
        &source,
        &user(0),
        &target,
        &user(0),
        &support::Verifier::new(),
    )
    .expect("verifier")
    .assert_equal();

    // Stop, sync and remove go through the socket to the running serve.
    let out = cli.ok(&["batch", "stop", "b1"]);
    assert!(out.contains("stopped"), "{out}");
    assert_eq!(cli.status("b1")["status"], "Stopped");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        cli.status("b1")["status"],
        "Stopped",
        "no pass after a stop"
    );
    cli.ok(&["batch", "sync", "b1"]);
    cli.wait_for("b1", Duration::from_secs(60), |s| s["status"] == "Synced");
    // Passes come every 2 s; removal holds the batch so none starts under it.
    cli.ok(&["batch", "remove", "b1"]);
    cli.fails(&["batch", "users", "b1"], 2);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!cli.serve_log().contains("ERROR"), "{}", cli.serve_log());
    signal(&serve, "TERM");
    assert_eq!(wait_exit(&mut serve, Duration::from_secs(30)), Some(0));
}
