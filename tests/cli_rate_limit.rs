//! `endpoint add --max-rate` through the installed binary against two real Dovecot servers:
//! the rate is stored and shown whole and divided by the shard count of the batch that
//! uses the endpoint (`--shard 0/4`: a quarter per process), refused with exit 2 when it
//! is not a rate, and a real batch migrated under the budget by `serve` stays exact
//! while its copy steps wait for the budget (counted in `/metrics`, no timing asserted).

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cli_harness::{Cli, migration_file};
use support::{Corpus, CorpusSpec, Dovecot, Layout, Verifier, separator_mapping, verify_users};

/// Rows of the migration file; `--shard 0/4` keeps about a quarter of them.
const USERS: usize = 8;
const MESSAGES: usize = 30;
/// The target's whole rate and this process's quarter of it: 10 messages per second, a
/// bucket of 10 (one second's worth).
const TARGET_RATE: &str = "40msg/s";
const PER_PROCESS_MESSAGES: f64 = 10.0;

fn user(i: usize) -> String {
    format!("rate{i:02}@example.test")
}

fn password(i: usize) -> String {
    format!("Pw-{i:02}-r8Qs!y")
}

fn servers() -> (Dovecot, Dovecot) {
    let mut source = Dovecot::builder()
        .label("rate-source")
        .layout(Layout::MaildirPlusPlus);
    let mut target = Dovecot::builder()
        .label("rate-target")
        .layout(Layout::Fs)
        .extra_config("mail_max_keyword_length = 200");
    for i in 0..USERS {
        source = source.user(&user(i), &password(i));
        target = target.user(&user(i), &password(i));
    }
    (
        source.start().expect("source Dovecot starts"),
        target.start().expect("target Dovecot starts"),
    )
}

fn endpoint<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .and_then(|l| l.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no endpoint {name} in {list:#}"))
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// `GET /metrics` of `serve --http`.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to --http");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    body.to_owned()
}

/// The value of `name{endpoint="..."}` in a text exposition.
fn endpoint_sample(text: &str, name: &str, endpoint: &str) -> Option<f64> {
    let series = format!("{name}{{endpoint=\"{endpoint}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn the_max_rate_is_divided_by_the_shard_count_and_a_batch_stays_exact_under_it() {
    let (source, target) = servers();
    let cli = Cli::new();

    // Not a rate, or two message rates: exit 2, one sentence naming the flag and an example.
    for bad in ["50", "5mb/s", "0msg/s", "2.5msg/s", "3MB/d"] {
        let err = cli.fails(
            &[
                "endpoint",
                "add",
                "x",
                "--host",
                "127.0.0.1",
                "--no-test",
                "--max-rate",
                bad,
            ],
            2,
        );
        assert!(
            err.contains("--max-rate") && err.contains("10GB/h"),
            "{bad}: {err}"
        );
    }
    let err = cli.fails(
        &[
            "endpoint",
            "add",
            "x",
            "--host",
            "127.0.0.1",
            "--no-test",
            "--max-rate",
            "50msg/s",
            "--max-rate",
            "10msg/s",
        ],
        2,
    );
    assert!(err.contains("at most one message rate"), "{err}");
    assert!(cli.json(&["endpoint", "list", "--json"]) == serde_json::json!([]));

    // The source: a byte rate; the target: a message rate and a byte rate.
    cli.add_dovecot_endpoint("src", &source, "dovecot", &["--max-rate", "4MB/s"]);
    let out = {
        let pw = cli.file(
            "tgt.pw",
            format!("{}\n", support::MASTER_PASSWORD).as_bytes(),
        );
        let port = target.plain_addr().port().to_string();
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
            support::MASTER_USER,
            "--admin-password-file",
            &pw,
            "--admin-format",
            "dovecot",
            "--max-rate",
            "10GB/h",
            "--max-rate",
            TARGET_RATE,
        ])
    };
    assert!(out.contains("at most 10GB/h and 40msg/s"), "{out}");

    // Unsharded so far: each process may use the whole rate.
    let list = cli.json(&["endpoint", "list", "--json"]);
    let tgt = endpoint(&list, "tgt");
    assert_eq!(tgt["rate_budget"]["shard_count"], 1, "{tgt:#}");
    assert_eq!(
        tgt["rate_budget"]["max_rate"],
        serde_json::json!(["10GB/h", "40msg/s"])
    );
    assert_eq!(tgt["rate_budget"]["messages_per_second"], 40.0);
    // Stored as given, unit and period apart.
    assert_eq!(
        tgt["max_rate"][1],
        serde_json::json!({"amount": 40, "unit": "messages", "per": "second"})
    );
    assert!(endpoint(&list, "src")["rate_budget"]["messages_per_second"].is_null());

    // Shard 0 of 4: this process keeps to a quarter of each rate.
    let rows: Vec<(String, String, String)> = (0..USERS)
        .map(|i| (user(i), user(i), password(i)))
        .collect();
    let rows: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let csv = cli.file("users.csv", &migration_file(&rows));
    cli.ok(&[
        "batch", "add", "b", "--csv", &csv, "--source", "src", "--target", "tgt", "--shard", "0/4",
    ]);
    let list = cli.json(&["endpoint", "list", "--json"]);
    let share = &endpoint(&list, "tgt")["rate_budget"];
    assert_eq!(share["shard_count"], 4, "{share:#}");
    assert_eq!(
        share["per_process"],
        serde_json::json!(["2.5GB/h", "10msg/s"])
    );
    assert_eq!(share["messages_per_second"], PER_PROCESS_MESSAGES);
    let bytes = share["bytes_per_second"].as_f64().expect("a byte rate");
    assert!((bytes - 10e9 / 3600.0 / 4.0).abs() < 1e-3, "{share:#}");
    let src_share = &endpoint(&list, "src")["rate_budget"];
    assert_eq!(src_share["per_process"], serde_json::json!(["1MB/s"]));
    let table = cli.ok(&["endpoint", "list"]);
    assert!(
        table.contains("2.5GB/h, 10msg/s (10GB/h, 40msg/s over 4 shards)"),
        "{table}"
    );
    let test = cli.ok(&["endpoint", "test", "tgt"]);
    assert!(
        test.contains(
            "Rate budget (--max-rate): at most 10GB/h and 40msg/s in all, 2.5GB/h and 10msg/s in this process (one of 4 shards)."
        ),
        "{test}"
    );
    let probe = cli.json(&["endpoint", "test", "tgt", "--json"]);
    assert_eq!(probe["rate_budget"]["shard_count"], 4, "{probe:#}");

    // The mailboxes of this shard, each with a folder of more new messages than the
    // target's bucket holds: the step that copies it must wait for the budget.
    let users = cli.json(&["batch", "users", "b", "--json"]);
    let shard_users: Vec<String> = users
        .as_array()
        .expect("an array")
        .iter()
        .map(|u| u["email"].as_str().expect("email").to_owned())
        .collect();
    assert!(
        !shard_users.is_empty() && shard_users.len() < USERS,
        "{shard_users:?}"
    );
    let corpus = Corpus::generate(CorpusSpec::small(4242).with_messages(MESSAGES));
    let largest_folder = corpus
        .folders()
        .iter()
        .map(|f| corpus.messages().filter(|m| m.folder == f.path).count())
        .max()
        .unwrap_or(0);
    assert!(
        largest_folder as f64 > PER_PROCESS_MESSAGES,
        "the corpus needs a folder of more than {PER_PROCESS_MESSAGES} messages: {largest_folder}"
    );
    for u in &shard_users {
        source
            .seed(u, corpus.folders(), corpus.messages())
            .expect("seed");
    }

    // `serve` runs the batch: every mailbox exact, and copy steps waited for the budget.
    let http = free_addr();
    let _serve = Serve(cli.start_serve(&["--http", &http.to_string()]));
    cli.ok(&["batch", "start", "b"]);
    let status = cli.wait_for("b", Duration::from_secs(120), |s| {
        s["status"] == "Synced" || s["status"] == "Failed"
    });
    assert_eq!(status["status"], "Synced", "{status:#}");
    assert_eq!(status["mailboxes_failed"], 0, "{status:#}");
    assert_eq!(
        status["items_synced"],
        (MESSAGES * shard_users.len()) as u64,
        "{status:#}"
    );
    let verifier = Verifier::new().with_folder_map(separator_mapping);
    for u in &shard_users {
        verify_users(&source, u, &target, u, &verifier)
            .expect("verifier reads both sides")
            .assert_equal();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(http);
        if endpoint_sample(&text, "imapmirror_rate_limit_waits_total", "tgt").is_some()
            || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let waits = endpoint_sample(&text, "imapmirror_rate_limit_waits_total", "tgt")
        .unwrap_or_else(|| panic!("no rate-limit waits of tgt in:\n{text}"));
    assert!(
        waits >= 1.0,
        "the target's budget never made a step wait:\n{text}"
    );
    assert!(
        endpoint_sample(&text, "imapmirror_rate_limit_wait_seconds_total", "tgt").is_some(),
        "{text}"
    );

    // The report says how long each mailbox's pass waited for the budget: a mailbox whose
    // folder holds more than a second's worth of messages waited, and no server throttled.
    let users = cli.json(&["batch", "users", "b", "--json"]);
    let waited: Vec<f64> = users
        .as_array()
        .expect("an array")
        .iter()
        .map(|u| {
            assert_eq!(u["last_pass_throttle_wait_seconds"], 0.0, "{u:#}");
            u["last_pass_rate_limit_wait_seconds"]
                .as_f64()
                .unwrap_or_else(|| panic!("no rate-limit wait in {u:#}"))
        })
        .collect();
    assert!(waited.iter().any(|w| *w > 0.0), "{users:#}");
    let csv = cli.ok(&["batch", "report", "b"]);
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let header = rows.headers().expect("a header").clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} in {header:?}"))
    };
    let (wait, record) = (column("LastPassRateLimitWaitSeconds"), column("Record"));
    let csv_waits: Vec<f64> = rows
        .records()
        .map(|r| r.expect("a row"))
        .filter(|r| &r[record] == "mailbox")
        .map(|r| r[wait].parse().expect("seconds"))
        .collect();
    assert_eq!(csv_waits.len(), shard_users.len(), "{csv}");
    assert!(csv_waits.iter().any(|w| *w > 0.0), "{csv}");

    // A changed rate replaces the stored one; without the flag the limit is lifted.
    cli.ok(&[
        "endpoint",
        "add",
        "src",
        "--if-exists",
        "update",
        "--host",
        "127.0.0.1",
        "--port",
        &source.plain_addr().port().to_string(),
        "--security",
        "none",
        "--no-test",
    ]);
    let list = cli.json(&["endpoint", "list", "--json"]);
    let src = endpoint(&list, "src");
    assert!(src.get("rate_budget").is_none(), "{src:#}");
    assert!(src.get("max_rate").is_none(), "{src:#}");
}
