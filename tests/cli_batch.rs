//! A batch end to end through the installed binary against two real Dovecot servers:
//! 20 users × 200 messages, the per-endpoint concurrency limits observed on the servers,
//! every mailbox identical by the kit's verifier, an incremental pass, the report, the
//! webhook, and `remove` leaving no password behind. The two admin formats that Dovecot
//! speaks (dovecot on the source, sasl on the target) open every mailbox.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use cli_harness::{Cli, max_concurrent_users, migration_file};
use support::{
    Corpus, CorpusSpec, Dovecot, Layout, SeedMessage, Verifier, separator_mapping, verify_users,
};

const USERS: usize = 20;
const MESSAGES: usize = 200;
/// Dovecot refuses keywords over 50 bytes by default; the corpus has a longer one.
const LONG_KEYWORDS: &str = "mail_max_keyword_length = 200";

fn user(i: usize) -> String {
    format!("user{i:02}@example.test")
}

fn password(i: usize) -> String {
    format!("Pw-{i:02}-q7Zr!x")
}

fn servers() -> (Dovecot, Dovecot) {
    let mut source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus);
    let mut target = Dovecot::builder()
        .label("target")
        .layout(Layout::Fs)
        .extra_config(LONG_KEYWORDS);
    for i in 0..USERS {
        source = source.user(&user(i), &password(i));
        target = target.user(&user(i), &password(i));
    }
    (
        source.start().expect("source Dovecot starts"),
        target.start().expect("target Dovecot starts"),
    )
}

/// Everything but the excluded `Junk` is expected on the target.
fn verifier() -> Verifier {
    Verifier::new().with_folder_map(|name, s, t| {
        if name == "Junk" || name.starts_with("Junk.") {
            None
        } else {
            separator_mapping(name, s, t)
        }
    })
}

/// A one-shot HTTP server that keeps the bodies it is sent.
fn webhook() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let Ok(n) = stream.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .and_then(|v| v.trim().parse::<usize>().ok())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(
                            String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned(),
                        );
                    }
                }
            };
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
            if let Some(body) = body {
                let _ = tx.send(body);
            }
        }
    });
    (url, rx)
}

#[test]
fn twenty_users_migrate_within_the_limits_identical_and_remove_leaves_no_password() {
    let (source, target) = servers();
    let corpora: Vec<Corpus> = (0..USERS)
        .map(|i| Corpus::generate(CorpusSpec::small(1000 + i as u64).with_messages(MESSAGES)))
        .collect();
    for (i, corpus) in corpora.iter().enumerate() {
        source
            .seed(&user(i), corpus.folders(), corpus.messages())
            .expect("seeding the source");
    }

    let cli = Cli::new();
    cli.add_dovecot_endpoint(
        "src",
        &source,
        "dovecot",
        &["--max-concurrent-migrations", "3"],
    );
    cli.add_dovecot_endpoint(
        "tgt",
        &target,
        "sasl",
        &["--max-concurrent-migrations", "5"],
    );
    // Both admin formats log in to a real mailbox.
    for ep in ["src", "tgt"] {
        let out = cli.ok(&["endpoint", "test", ep, "--user", &user(0)]);
        assert!(out.contains("succeeded"), "{out}");
    }

    let rows: Vec<(String, String, String)> = (0..USERS)
        .map(|i| (user(i), user(i), password(i)))
        .collect();
    let rows: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let csv = cli.file("users.csv", &migration_file(&rows));
    let (hook, bodies) = webhook();
    let out = cli.ok(&[
        "batch",
        "add",
        "wave-1",
        "--csv",
        &csv,
        "--source",
        "src",
        "--target",
        "tgt",
        "--exclude",
        "Junk",
        "--notify-url",
        &hook,
    ]);
    assert!(out.contains("20 mailboxes will be migrated"), "{out}");
    // Webhook URLs carry tokens: stored sealed, like the passwords.
    assert_eq!(
        cli.state_files_containing(hook.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );

    let (run, max) = max_concurrent_users(&[&source, &target], || {
        cli.run(&["batch", "start", "wave-1", "--wait"])
    });
    assert_eq!(
        run.code, 0,
        "start --wait failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(
        max[0] <= 3,
        "source saw {} users at once, the limit is 3",
        max[0]
    );
    assert!(
        max[1] <= 3,
        "target saw {} users at once, only 3 may migrate",
        max[1]
    );
    assert!(
        max[0] >= 2,
        "mailboxes ran one at a time (max {}); the slots allow 3",
        max[0]
    );

    for i in 0..USERS {
        verify_users(&source, &user(i), &target, &user(i), &verifier())
            .expect("verifier reads both sides")
            .assert_equal();
    }
    let status = cli.status("wave-1");
    assert_eq!(status["status"], "Synced", "{status:#}");
    assert_eq!(status["mailboxes_total"], USERS);
    assert_eq!(status["mailboxes_synced"], USERS);
    assert_eq!(status["mailboxes_failed"], 0);
    let expected: usize = corpora
        .iter()
        .map(|c| {
            c.messages()
                .filter(|m| m.folder.join('.') != "Junk")
                .count()
        })
        .sum();
    assert_eq!(status["items_synced"], expected, "{status:#}");
    for field in ["last_sync_started", "last_sync_finished"] {
        assert!(status[field].is_string(), "{field}: {status:#}");
    }

    let notified: serde_json::Value = serde_json::from_str(
        &bodies
            .recv_timeout(Duration::from_secs(30))
            .expect("the webhook is called"),
    )
    .expect("the webhook body is JSON");
    assert_eq!(notified["event"], "pass_finished");
    assert_eq!(notified["batch"]["name"], "wave-1");
    assert_eq!(notified["batch"]["mailboxes_synced"], USERS);

    // New mail on the source: an incremental pass copies it, and only it.
    let fresh = Corpus::generate(CorpusSpec::small(7).with_messages(5));
    let new_messages: Vec<SeedMessage> = fresh
        .messages()
        .map(|mut m| {
            m.folder = support::FolderPath::new(&["INBOX"]);
            m
        })
        .collect();
    source
        .append_messages(&user(3), new_messages)
        .expect("new mail");
    let out = cli.ok(&["batch", "sync", "wave-1", "--wait"]);
    assert!(out.contains("Synced"), "{out}");
    verify_users(&source, &user(3), &target, &user(3), &verifier())
        .expect("verifier")
        .assert_equal();
    let users = cli.json(&["batch", "users", "wave-1", "--json"]);
    let users = users.as_array().expect("an array");
    assert_eq!(users.len(), USERS);
    for u in users {
        assert_eq!(u["status"], "Synced", "{u:#}");
        assert!(u["error"].is_null(), "{u:#}");
        let copied_now = if u["email"] == user(3) { 5 } else { 0 };
        assert_eq!(u["last_pass_items"], copied_now, "{u:#}");
        for field in [
            "folders",
            "items_synced",
            "items_skipped",
            "bytes_synced",
            "last_sync_finished",
        ] {
            assert!(!u[field].is_null(), "{field}: {u:#}");
        }
    }

    let report_path = cli.files.path().join("report.csv");
    cli.ok(&[
        "batch",
        "report",
        "wave-1",
        "--format",
        "csv",
        "--output",
        &report_path.display().to_string(),
    ]);
    let report = std::fs::read_to_string(&report_path).expect("report written");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("mailbox,")).count(),
        USERS,
        "{report}"
    );
    let json_report = cli.json(&["batch", "report", "wave-1", "--format", "json"]);
    assert_eq!(
        json_report["mailboxes"].as_array().map(Vec::len),
        Some(USERS)
    );

    // Cut-over: a final pass, then Completed; the webhook says so.
    let out = cli.ok(&["batch", "complete", "wave-1"]);
    assert!(out.contains("Completed"), "{out}");
    let users = cli.json(&["batch", "users", "wave-1", "--json"]);
    assert!(
        users
            .as_array()
            .expect("array")
            .iter()
            .all(|u| u["status"] == "Completed"),
        "{users:#}"
    );
    let events: Vec<serde_json::Value> = bodies
        .try_iter()
        .chain(bodies.recv_timeout(Duration::from_secs(30)))
        .filter_map(|b| serde_json::from_str(&b).ok())
        .collect();
    assert!(
        events.iter().any(|e| e["event"] == "batch_completed"),
        "{events:#?}"
    );
    cli.fails(&["batch", "start", "wave-1"], 2);

    // The passwords are in the store (sealed) until the batch is removed, then nowhere.
    cli.ok(&["batch", "remove", "wave-1"]);
    for i in 0..USERS {
        let hits = cli.state_files_containing(password(i).as_bytes());
        assert!(hits.is_empty(), "password of {} found in {hits:?}", user(i));
    }
    cli.fails(&["batch", "status", "wave-1"], 2);
}

#[test]
fn messages_over_the_size_limit_are_skipped_and_reported() {
    let source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus)
        .user(&user(0), &password(0))
        .start()
        .expect("source starts");
    let target = Dovecot::builder()
        .label("target")
        .layout(Layout::Fs)
        .extra_config(LONG_KEYWORDS)
        .user(&user(0), &password(0))
        .start()
        .expect("target starts");
    let corpus = Corpus::generate(CorpusSpec::small(77).with_messages(80));
    source
        .seed(&user(0), corpus.folders(), corpus.messages())
        .expect("seed");
    let limit = 3_000usize;
    let too_large = corpus.messages().filter(|m| m.bytes.len() > limit).count();
    assert!(too_large > 0, "the corpus has messages over {limit} bytes");

    let cli = Cli::new();
    cli.add_dovecot_endpoint("src", &source, "dovecot", &[]);
    cli.add_dovecot_endpoint("tgt", &target, "dovecot", &[]);
    let csv = cli.file(
        "users.csv",
        &migration_file(&[(&user(0), &user(0), &password(0))]),
    );
    cli.ok(&[
        "batch",
        "add",
        "big",
        "--csv",
        &csv,
        "--source",
        "src",
        "--target",
        "tgt",
        "--max-message-size",
        &limit.to_string(),
    ]);
    let r = cli.run(&["batch", "start", "big", "--wait"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report = cli.json(&["batch", "report", "big", "--format", "json"]);
    let skipped = report["skipped"].as_array().expect("skipped items");
    assert_eq!(skipped.len(), too_large, "{report:#}");
    for item in skipped {
        assert_eq!(item["reason"], "too large", "{item:#}");
        assert!(
            item["size"].as_u64().unwrap_or(0) > limit as u64,
            "{item:#}"
        );
        for field in ["email", "folder", "date"] {
            assert!(item[field].is_string(), "{field}: {item:#}");
        }
        // Read from the message's header fields (mail-parser), so the owner can find it.
        for field in ["subject", "from", "sent"] {
            assert!(item[field].is_string(), "{field}: {item:#}");
        }
        assert!(
            item["from"]
                .as_str()
                .is_some_and(|f| f.ends_with("@example.net>")),
            "{item:#}"
        );
    }
    assert_eq!(report["batch"]["items_skipped"], too_large);
    assert_eq!(report["mailboxes"][0]["items_skipped"], too_large);
    let csv_report = cli.ok(&["batch", "report", "big"]);
    assert_eq!(
        csv_report
            .lines()
            .filter(|l| l.starts_with("skipped,") && l.contains("too large"))
            .count(),
        too_large,
        "{csv_report}"
    );
}

#[test]
fn a_folder_renamed_on_the_source_is_renamed_on_the_target_and_reported() {
    let (source, target) = servers();
    let corpus = Corpus::generate(CorpusSpec::small(78).with_messages(60));
    source
        .seed(&user(0), corpus.folders(), corpus.messages())
        .expect("seed");
    let cli = Cli::new();
    cli.add_dovecot_endpoint("src", &source, "dovecot", &[]);
    cli.add_dovecot_endpoint("tgt", &target, "dovecot", &[]);
    let csv = cli.file(
        "users.csv",
        &migration_file(&[(&user(0), &user(0), &password(0))]),
    );
    cli.ok(&[
        "batch", "add", "moves", "--csv", &csv, "--source", "src", "--target", "tgt",
    ]);
    cli.ok(&["batch", "start", "moves", "--wait"]);
    let mut c = source.connect_master(&user(0)).expect("source client");
    c.run(
        "RENAME",
        &[support::imap_client::Arg::Raw("RENAME Projects Work")],
    )
    .expect("RENAME");
    c.logout().expect("logout");

    let r = cli.run(&["batch", "sync", "moves", "--wait"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("renamed as on the source"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let users = cli.json(&["batch", "users", "moves", "--json"]);
    let renamed = &users[0]["folders_renamed"];
    assert_eq!(renamed[0]["from"], "Projects", "{users:#}");
    assert_eq!(renamed[0]["to"], "Work", "{users:#}");
    assert_eq!(
        users[0]["last_pass_items"], 0,
        "nothing copied again: {users:#}"
    );
    let report = cli.ok(&["batch", "report", "moves"]);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("renamed_folder,") && l.contains(",Work,")),
        "{report}"
    );
    let all_folders = Verifier::new().with_folder_map(separator_mapping);
    verify_users(&source, &user(0), &target, &user(0), &all_folders)
        .expect("verifier reads both sides")
        .assert_equal();
}
