//! The fleet report (`batch report NAME --merge SOURCE...`) as an administrator of a sharded
//! migration runs it: three shards (`batch add --shard I/3`), each with its own state
//! directory, migrated against the kit's Dovecots and served by its own `serve --http`
//! (one behind a token). Merged over HTTP, from the state directories and from both at
//! once, the report holds every mailbox of the migration file exactly once with the shard
//! that holds it, and its totals are the sums of the shards' own reports; a dead URL is
//! named and makes the exit code 1; a shard not given is warned about; reports that are not
//! shards of one file are refused with exit code 2.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Child;
use std::time::{Duration, Instant};

use cli_harness::{Cli, Run, migration_file};
use support::{Corpus, CorpusSpec, Dovecot, Layout};

const USERS: usize = 12;
const MESSAGES: usize = 8;
const SHARDS: u32 = 3;
const BATCH: &str = "fleet";
/// Messages larger than this are skipped, so the shards have skipped items to merge.
const MAX_SIZE: &str = "2500";
const TOKEN: &str = "fleet-token-5b1e";

fn user(i: usize) -> String {
    format!("fleet-user{i:02}@example.test")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One shard: its state directory (through `Cli`), its `serve --http` while it runs.
struct Shard {
    index: u32,
    cli: Cli,
    url: String,
    serve: Option<Child>,
}

impl Shard {
    fn dir(&self) -> String {
        self.cli.state_dir().display().to_string()
    }

    /// The shard's own report (`batch report --format json`).
    fn report(&self) -> serde_json::Value {
        self.cli
            .json(&["batch", "report", BATCH, "--format", "json"])
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.serve.take() {
            let status = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success());
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().expect("try_wait").is_none() {
                assert!(Instant::now() < deadline, "serve did not stop");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        if let Some(mut child) = self.serve.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `imapmirror batch report BATCH --merge SOURCES... EXTRA...` from a scratch state
/// directory of its own (the fleet report needs none).
fn merge(cli: &Cli, sources: &[&str], extra: &[&str]) -> Run {
    let mut args = vec!["batch", "report", BATCH, "--merge"];
    args.extend_from_slice(sources);
    args.extend_from_slice(extra);
    cli.run(&args)
}

fn merge_json(cli: &Cli, sources: &[&str], extra: &[&str]) -> (Run, serde_json::Value) {
    let mut extra = extra.to_vec();
    extra.extend_from_slice(&["--format", "json"]);
    let run = merge(cli, sources, &extra);
    let json = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}), exit {}:\nstdout: {}\nstderr: {}",
            run.code, run.stdout, run.stderr
        )
    });
    (run, json)
}

fn emails(report: &serde_json::Value) -> Vec<String> {
    report["mailboxes"]
        .as_array()
        .expect("mailboxes")
        .iter()
        .map(|m| m["email"].as_str().expect("email").to_owned())
        .collect()
}

fn number(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The sum of `field` of the shards' own batch summaries.
fn sum(reports: &[serde_json::Value], field: &str) -> u64 {
    reports.iter().map(|r| number(&r["batch"][field])).sum()
}

/// What a merged report must show when all `shards` answered.
fn assert_whole(merged: &serde_json::Value, shards: &[Shard], own: &[serde_json::Value]) {
    let all: Vec<String> = (0..USERS).map(user).collect();
    let got = emails(merged);
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted, "mailboxes sorted by address");
    assert_eq!(got, all, "every mailbox of the file, once");
    // Each mailbox with the shard whose own report holds it.
    let holder: BTreeMap<String, u32> = shards
        .iter()
        .zip(own)
        .flat_map(|(s, r)| emails(r).into_iter().map(move |e| (e, s.index)))
        .collect();
    for m in merged["mailboxes"].as_array().expect("mailboxes") {
        let email = m["email"].as_str().expect("email");
        assert_eq!(number(&m["shard"]) as u32, holder[email], "{m:#}");
    }
    assert_eq!(number(&merged["shard_count"]), u64::from(SHARDS));
    assert_eq!(merged["missing_shards"], serde_json::json!([]));
    assert_eq!(merged["shards_not_given"], serde_json::json!([]));
    let b = &merged["batch"];
    assert_eq!(b["name"], BATCH);
    assert_eq!(number(&b["mailboxes_total"]), USERS as u64);
    for field in [
        "mailboxes_total",
        "mailboxes_synced",
        "items_synced",
        "items_skipped",
        "bytes_synced",
    ] {
        assert_eq!(number(&b[field]), sum(own, field), "{field}: {b:#}");
    }
    let per_mailbox: u64 = merged["mailboxes"]
        .as_array()
        .expect("mailboxes")
        .iter()
        .map(|m| number(&m["items_synced"]))
        .sum();
    assert_eq!(per_mailbox, number(&b["items_synced"]));
    let skipped: usize = own
        .iter()
        .map(|r| r["skipped"].as_array().expect("skipped").len())
        .sum();
    assert_eq!(
        merged["skipped"].as_array().expect("skipped").len(),
        skipped
    );
    let shard_rows: Vec<u64> = merged["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| number(&s["shard"]))
        .collect();
    assert_eq!(shard_rows, [0, 1, 2]);
}

#[test]
fn the_shards_reports_merge_over_http_and_from_state_directories() {
    let users: Vec<String> = (0..USERS).map(user).collect();
    let mut source = Dovecot::builder()
        .label("fleet-source")
        .layout(Layout::MaildirPlusPlus);
    let mut target = Dovecot::builder().label("fleet-target").layout(Layout::Fs);
    for u in &users {
        source = source.user(u, "pw");
        target = target.user(u, "pw");
    }
    let source = source.start().expect("source starts");
    let target = target.start().expect("target starts");
    let mut total_messages = 0u64;
    for (i, u) in users.iter().enumerate() {
        let corpus = Corpus::generate(CorpusSpec::small(700 + i as u64).with_messages(MESSAGES));
        total_messages += corpus.messages().count() as u64;
        source
            .seed(u, corpus.folders(), corpus.messages())
            .expect("seed");
    }
    let rows: Vec<(&str, &str, &str)> =
        users.iter().map(|u| (u.as_str(), u.as_str(), "")).collect();
    let csv = migration_file(&rows);

    // Each shard as its pod would set it up: endpoints, its share of the file, a pass,
    // then `serve --http` (shard 1 behind a token).
    let mut shards: Vec<Shard> = (0..SHARDS)
        .map(|index| {
            let cli = Cli::new();
            cli.add_dovecot_endpoint("src", &source, "dovecot", &[]);
            cli.add_dovecot_endpoint("tgt", &target, "dovecot", &[]);
            let file = cli.file("users.csv", &csv);
            let shard = format!("{index}/{SHARDS}");
            cli.ok(&[
                "batch",
                "add",
                BATCH,
                "--csv",
                &file,
                "--source",
                "src",
                "--target",
                "tgt",
                "--shard",
                &shard,
                "--max-message-size",
                MAX_SIZE,
            ]);
            cli.ok(&["batch", "start", BATCH, "--wait"]);
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let token = cli.file("http.token", format!("{TOKEN}\n").as_bytes());
            let mut args = vec!["--http", addr.as_str()];
            if index == 1 {
                args.extend_from_slice(&["--http-token-file", token.as_str()]);
            }
            let serve = cli.start_serve(&args);
            Shard {
                index,
                cli,
                url: format!("http://{addr}"),
                serve: Some(serve),
            }
        })
        .collect();
    let own: Vec<serde_json::Value> = shards.iter().map(Shard::report).collect();
    for (s, r) in shards.iter().zip(&own) {
        assert_eq!(
            r["shard"],
            serde_json::json!({"index": s.index, "count": SHARDS}),
            "a shard's own report says which shard it is"
        );
        assert!(!emails(r).is_empty(), "shard {} got no mailbox", s.index);
    }
    assert!(
        sum(&own, "items_skipped") > 0,
        "messages over {MAX_SIZE} bytes are skipped: {own:#?}"
    );
    assert_eq!(
        sum(&own, "items_synced") + sum(&own, "items_skipped"),
        total_messages,
        "every message copied or skipped"
    );

    let admin = Cli::new();
    let token_file = admin.file("token", format!("{TOKEN}\n").as_bytes());
    let urls: Vec<&str> = shards.iter().map(|s| s.url.as_str()).collect();

    // Over HTTP, all three (given out of order), with the token.
    let (run, over_http) = merge_json(
        &admin,
        &[urls[2], urls[0], urls[1]],
        &["--http-token-file", &token_file],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("no report"), "{}", run.stderr);
    assert_whole(&over_http, &shards, &own);
    let sources: Vec<&str> = over_http["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["source"].as_str().expect("source"))
        .collect();
    assert_eq!(sources, urls);

    // The same as CSV: a single report's columns and a Shard column; a totals row, a row
    // per shard, a row per mailbox.
    let run = merge(&admin, &urls, &["--http-token-file", &token_file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let single = shards[0]
        .cli
        .ok(&["batch", "report", BATCH, "--format", "csv"]);
    let single_header = single.lines().next().expect("a header");
    let mut reader = csv::Reader::from_reader(run.stdout.as_bytes());
    let header = reader.headers().expect("header").clone();
    assert_eq!(
        header.iter().collect::<Vec<_>>().join(","),
        format!("{single_header},Shard")
    );
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let of = |kind: &str| -> Vec<&csv::StringRecord> {
        records
            .iter()
            .filter(|r| &r[col("Record")] == kind)
            .collect()
    };
    let totals = of("batch");
    assert_eq!(totals.len(), 1);
    assert_eq!(
        totals[0][col("ItemsSynced")].parse::<u64>().expect("count"),
        sum(&own, "items_synced")
    );
    assert_eq!(
        &totals[0][col("Detail")],
        format!("totals of 3 of 3 shards, {USERS} mailboxes")
    );
    let shard_rows: Vec<(&str, &str)> = of("shard")
        .iter()
        .map(|r| {
            (
                r.get(col("Shard")).unwrap_or(""),
                r.get(col("Detail")).unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        shard_rows,
        [("0/3", urls[0]), ("1/3", urls[1]), ("2/3", urls[2])]
    );
    let mailbox_rows: Vec<(String, String)> = of("mailbox")
        .iter()
        .map(|r| {
            (
                r[col("EmailAddress")].to_owned(),
                r[col("Shard")].to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = over_http["mailboxes"]
        .as_array()
        .expect("mailboxes")
        .iter()
        .map(|m| {
            (
                m["email"].as_str().expect("email").to_owned(),
                format!("{}/3", m["shard"]),
            )
        })
        .collect();
    assert_eq!(mailbox_rows, expected);
    assert_eq!(
        of("skipped").len(),
        over_http["skipped"].as_array().expect("skipped").len()
    );
    assert!(of("missing_shard").is_empty());

    // Without the token, the token shard asks for it: named, exit 1, the others merged.
    let (run, partial) = merge_json(&admin, &urls, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "no report from {}: asks for a token (HTTP 401)",
            urls[1]
        )),
        "{}",
        run.stderr
    );
    assert_eq!(partial["missing_shards"][0]["source"], urls[1]);
    assert_eq!(partial["shards_not_given"], serde_json::json!([1]));
    // A wrong token is told apart.
    let wrong = admin.file("wrong-token", b"not-the-token\n");
    let run = merge(&admin, &urls, &["--http-token-file", &wrong]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("refused the token"), "{}", run.stderr);

    // A dead shard (a closed port): named with its reason, exit 1, the rest merged.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (run, partial) = merge_json(
        &admin,
        &[urls[0], urls[1], &dead],
        &["--http-token-file", &token_file],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("no report from {dead}: cannot be reached")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("shard 2/3 is not in the report"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("1 of 3 sources did not answer"),
        "{}",
        run.stderr
    );
    assert_eq!(partial["missing_shards"].as_array().map(Vec::len), Some(1));
    assert_eq!(partial["missing_shards"][0]["source"], dead.as_str());
    assert!(
        partial["missing_shards"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Connection refused")),
        "{partial:#}"
    );
    assert_eq!(partial["shards_not_given"], serde_json::json!([2]));
    let answered: BTreeSet<String> = own[..2].iter().flat_map(emails).collect();
    assert_eq!(
        emails(&partial).into_iter().collect::<BTreeSet<_>>(),
        answered
    );
    assert_eq!(
        number(&partial["batch"]["items_synced"]),
        sum(&own[..2], "items_synced")
    );

    // All given sources answer but one shard is not given: a warning, exit 0.
    let run = merge(&admin, &[urls[0], urls[2]], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("shard 1/3 not given: the report covers 2 of 3 shards"),
        "{}",
        run.stderr
    );

    // A state directory whose serve is running (read through its control socket) beside
    // URLs.
    let dir0 = shards[0].dir();
    let (run, mixed) = merge_json(
        &admin,
        &[&dir0, urls[1], urls[2]],
        &["--http-token-file", &token_file],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_whole(&mixed, &shards, &own);

    // The volumes of stopped pods: the state directories alone.
    for s in &mut shards {
        s.stop();
    }
    let dirs: Vec<String> = shards.iter().map(Shard::dir).collect();
    let dir_refs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    let (run, from_dirs) = merge_json(&admin, &dir_refs, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_whole(&from_dirs, &shards, &own);
    assert_eq!(from_dirs["mailboxes"], over_http["mailboxes"]);
    assert_eq!(from_dirs["skipped"], over_http["skipped"]);
    assert_eq!(from_dirs["batch"], over_http["batch"]);

    // Into a file, readable by its owner only.
    let out = admin.files.path().join("fleet.csv");
    let out_arg = out.display().to_string();
    let run = merge(&admin, &dir_refs, &["--output", &out_arg]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "Fleet report of batch {BATCH} written to {out_arg} (3 shards, {USERS} mailboxes"
        )),
        "{}",
        run.stderr
    );
    let written = std::fs::read_to_string(&out).expect("the report file");
    assert!(written.starts_with("Record,Batch,"), "{written}");
    assert!(
        written
            .lines()
            .next()
            .is_some_and(|h| h.ends_with(",Shard"))
    );
    let mode = std::fs::metadata(&out)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A directory that is no state directory is named, not created.
    let empty = admin.files.path().join("not-a-state-dir");
    std::fs::create_dir(&empty).expect("mkdir");
    let empty = empty.display().to_string();
    let run = merge(
        &admin,
        &[dir_refs[0], dir_refs[1], dir_refs[2], &empty],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("is not an imapmirror state directory"),
        "{}",
        run.stderr
    );
    assert!(
        std::fs::read_dir(&empty).expect("dir").next().is_none(),
        "nothing written into it"
    );

    // Refused with exit 2: a shard given twice (a copy of its volume) ...
    let copy = admin.files.path().join("shard-0-copy");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&dirs[0])
        .arg(&copy)
        .status()
        .expect("cp runs");
    assert!(status.success());
    let copy = copy.display().to_string();
    let stderr = admin.fails(
        &[
            "batch", "report", BATCH, "--merge", &dirs[0], &copy, &dirs[1], &dirs[2],
        ],
        2,
    );
    assert!(stderr.contains("shard 0/3 is given twice"), "{stderr}");
    // ... the same source twice ...
    let stderr = admin.fails(
        &["batch", "report", BATCH, "--merge", &dirs[0], &dirs[0]],
        2,
    );
    assert!(stderr.contains("is given twice"), "{stderr}");

    // ... a shard of another count ...
    let other_count = Cli::new();
    other_count.add_dovecot_endpoint("src", &source, "dovecot", &[]);
    other_count.add_dovecot_endpoint("tgt", &target, "dovecot", &[]);
    let file = other_count.file("users.csv", &csv);
    other_count.ok(&[
        "batch", "add", BATCH, "--csv", &file, "--source", "src", "--target", "tgt", "--shard",
        "1/2",
    ]);
    let stderr = admin.fails(
        &[
            "batch",
            "report",
            BATCH,
            "--merge",
            &dirs[0],
            &other_count.state_dir().display().to_string(),
        ],
        2,
    );
    assert!(
        stderr.contains("every shard must be added with the same --shard count"),
        "{stderr}"
    );

    // ... and batches without shards that share a mailbox.
    let halves: Vec<Cli> = [&rows[..7], &rows[6..]]
        .iter()
        .map(|part| {
            let cli = Cli::new();
            cli.add_dovecot_endpoint("src", &source, "dovecot", &[]);
            cli.add_dovecot_endpoint("tgt", &target, "dovecot", &[]);
            let file = cli.file("users.csv", &migration_file(part));
            cli.ok(&[
                "batch", "add", BATCH, "--csv", &file, "--source", "src", "--target", "tgt",
            ]);
            cli
        })
        .collect();
    let half_dirs: Vec<String> = halves
        .iter()
        .map(|c| c.state_dir().display().to_string())
        .collect();
    let stderr = admin.fails(
        &[
            "batch",
            "report",
            BATCH,
            "--merge",
            &half_dirs[0],
            &half_dirs[1],
        ],
        2,
    );
    assert!(
        stderr.contains(&format!("the mailbox {} is in", user(6))),
        "{stderr}"
    );
}
