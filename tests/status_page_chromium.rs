//! The status pages of `serve --http` in a real browser: headless Chromium (Debian's
//! `chromium`, installed by scripts/install-deps) loads the overview and the batch page
//! while a real batch runs between the kit's Dovecots and after it finished; the DOM
//! shows every mailbox with its state and the counts `batch users --json` gives, and a
//! phone-sized screenshot renders (`IMAPMIRROR_SCREENSHOT_TO=docs/status-page.png`
//! keeps it for the README).

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cli_harness::{Cli, migration_file};
use support::{Corpus, CorpusSpec, Dovecot, Layout};

const USERS: usize = 6;
const MESSAGES: usize = 150;

fn user(i: usize) -> String {
    format!("page{i}@example.test")
}

/// Headless Chromium with a profile of its own; root needs `--no-sandbox`.
fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let binary = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Chromium is missing: run scripts/install-deps (it installs Debian's chromium)");
    let output = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn dump_dom(profile: &Path, url: &str) -> String {
    String::from_utf8(chromium(profile, &["--dump-dom", url]).stdout).expect("UTF-8 DOM")
}

#[test]
fn the_status_pages_render_in_chromium_while_a_batch_runs_and_after() {
    let mut source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus);
    let mut target = Dovecot::builder().label("target").layout(Layout::Fs);
    for i in 0..USERS {
        source = source.user(&user(i), "pw");
        target = target.user(&user(i), "pw");
    }
    let source = source.start().expect("source starts");
    let target = target.start().expect("target starts");
    for i in 0..USERS {
        let corpus = Corpus::generate(CorpusSpec::small(300 + i as u64).with_messages(MESSAGES));
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
    let rows: Vec<String> = (0..USERS).map(user).collect();
    let rows: Vec<(&str, &str, &str)> = rows.iter().map(|u| (u.as_str(), u.as_str(), "")).collect();
    let csv = cli.file("users.csv", &migration_file(&rows));
    cli.ok(&[
        "batch", "add", "wave-1", "--csv", &csv, "--source", "src", "--target", "tgt",
    ]);
    let http = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr")
    };
    let mut serve = cli.start_serve(&["--http", &http.port().to_string()]);
    let profile = tempfile::tempdir().expect("profile dir");
    let base = format!("http://{http}");
    // The page answers before any pass: wait for serve to listen.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(http).is_err() {
        assert!(Instant::now() < deadline, "serve --http never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    cli.ok(&["batch", "start", "wave-1"]);

    // While it runs: the page loads and shows the batch and its mailboxes.
    let running = dump_dom(profile.path(), &format!("{base}/batch/wave-1"));
    assert!(running.contains("<h1>wave-1"), "{running}");
    for i in 0..USERS {
        assert!(
            running.contains(&format!("id=\"{}\"", user(i))),
            "{running}"
        );
    }

    let done = cli.wait_for("wave-1", Duration::from_secs(240), |s| {
        s["status"] == "Synced" || s["status"] == "Failed"
    });
    assert_eq!(done["status"], "Synced", "{done:#}\n{}", cli.serve_log());

    let overview = dump_dom(profile.path(), &format!("{base}/"));
    assert!(overview.contains("href=\"/batch/wave-1\""), "{overview}");
    assert!(
        overview.contains(&format!(
            "{USERS} <span class=\"s s-Synced\">Synced</span> of {USERS}"
        )),
        "{overview}"
    );
    let page = dump_dom(profile.path(), &format!("{base}/batch/wave-1"));
    let users = cli.json(&["batch", "users", "wave-1", "--json"]);
    for u in users.as_array().expect("array") {
        let email = u["email"].as_str().expect("email");
        let row_start = page
            .find(&format!("<tr id=\"{email}\">"))
            .unwrap_or_else(|| panic!("a row for {email} in {page}"));
        let row = &page[row_start..row_start + page[row_start..].find("</tr>").expect("row end")];
        assert!(row.contains(">Synced<"), "{row}");
        assert!(
            row.contains(&format!("<td class=\"num\">{}</td>", u["items_synced"])),
            "{email}'s count as batch users --json has it: {row}"
        );
        assert!(u["items_synced"].as_u64().unwrap_or(0) > 0, "{u}");
    }

    // A phone-sized screenshot renders.
    let shot = profile.path().join("status-page.png");
    chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=412,915",
            &format!("{base}/batch/wave-1"),
        ],
    );
    let png = std::fs::read(&shot).expect("a screenshot file");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
        "a PNG with something in it"
    );
    if let Some(keep) = std::env::var_os("IMAPMIRROR_SCREENSHOT_TO") {
        let keep = PathBuf::from(keep);
        std::fs::write(&keep, &png).expect("keep the screenshot");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
}
