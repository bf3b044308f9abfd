//! `batch start --dry-run` and `batch estimate` through the binary against two real
//! Dovecot servers: the dry run writes nothing (the target's folders, counts, UIDNEXT and
//! HIGHESTMODSEQ over IMAP, the batch's status, users and pass history in the store), it
//! names every folder mapping and the counts the real pass then copies; the estimate
//! counts what the dry run counts, deletes its scratch folders and prints its ratio to the
//! measured pass (a figure for BENCHMARKS.md, not asserted: a time in a test fails on a
//! loaded machine); after
//! the pass a dry run finds everything migrated and the estimate uses the batch's history.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use cli_harness::{Cli, migration_file};
use support::imap_client::Arg;
use support::{Corpus, CorpusSpec, Dovecot, Layout, separator_mapping};

const USERS: usize = 6;
/// Enough for a pass of several seconds: the estimate is given in whole seconds, and a
/// 2-second pass made its ratio a matter of rounding.
const MESSAGES: usize = 4000;
/// Messages larger than this are skipped (the corpus has attachments up to 120 KB).
const MAX_MESSAGE_SIZE: u64 = 100_000;
/// Dovecot refuses keywords over 50 bytes by default; the corpus has a longer one.
const LONG_KEYWORDS: &str = "mail_max_keyword_length = 200";
const SCRATCH: &str = "imapmirror-estimate-";

fn user(i: usize) -> String {
    format!("plan{i:02}@example.test")
}

fn password(i: usize) -> String {
    format!("Pw-{i:02}-k3Lm!x")
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

/// Every folder of `user` on `server` with its STATUS line (MESSAGES, UIDNEXT,
/// UIDVALIDITY, HIGHESTMODSEQ) as the server says it; STATUS opens nothing.
fn folders(server: &Dovecot, user: &str) -> BTreeMap<String, String> {
    let mut client = server.connect_master(user).expect("master login");
    let mut out = BTreeMap::new();
    for entry in client.list("", "*").expect("LIST") {
        if !entry.is_selectable() {
            out.insert(entry.name.clone(), "\\Noselect".to_owned());
            continue;
        }
        let (untagged, _) = client
            .run(
                "STATUS",
                &[
                    Arg::Raw("STATUS"),
                    Arg::Str(&entry.wire_name),
                    Arg::Raw("(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"),
                ],
            )
            .expect("STATUS");
        out.insert(entry.name.clone(), format!("{untagged:?}"));
    }
    client.logout().expect("LOGOUT");
    out
}

/// Messages in a target folder, over IMAP.
fn messages_in(server: &Dovecot, user: &str, folder: &str) -> u64 {
    let mut client = server.connect_master(user).expect("master login");
    let n = client.examine(folder).expect("EXAMINE").exists;
    client.logout().expect("LOGOUT");
    u64::from(n)
}

fn as_u64(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn dry_run_and_estimate_predict_the_pass_and_write_nothing() {
    let (source, target) = servers();
    for i in 0..USERS {
        let corpus = Corpus::generate(CorpusSpec::small(4200 + i as u64).with_messages(MESSAGES));
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
    cli.add_dovecot_endpoint("tgt", &target, "dovecot", &[]);
    let rows: Vec<(String, String, String)> = (0..USERS)
        .map(|i| (user(i), user(i), password(i)))
        .collect();
    let rows: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let csv = cli.file("users.csv", &migration_file(&rows));
    let limit = MAX_MESSAGE_SIZE.to_string();
    cli.ok(&[
        "batch",
        "add",
        "plan-1",
        "--csv",
        &csv,
        "--source",
        "src",
        "--target",
        "tgt",
        "--exclude",
        "Junk",
        "--max-message-size",
        &limit,
    ]);

    // A batch that does not exist, or --json without --dry-run, is a bad request.
    cli.fails(&["batch", "start", "nope", "--dry-run"], 2);
    cli.fails(&["batch", "estimate", "nope"], 2);
    cli.fails(&["batch", "start", "plan-1", "--json"], 2);

    // ---- The dry run writes nothing.
    let target_before: Vec<BTreeMap<String, String>> =
        (0..USERS).map(|i| folders(&target, &user(i))).collect();
    let status_before = cli.status("plan-1");
    let users_before = cli.json(&["batch", "users", "plan-1", "--json"]);
    let plan = cli.json(&["batch", "start", "plan-1", "--dry-run", "--json"]);
    let text = cli.ok(&["batch", "start", "plan-1", "--dry-run"]);
    for (i, before) in target_before.iter().enumerate() {
        assert_eq!(
            &folders(&target, &user(i)),
            before,
            "the dry run changed the target of {}",
            user(i)
        );
    }
    assert_eq!(cli.status("plan-1"), status_before);
    let users_after = cli.json(&["batch", "users", "plan-1", "--json"]);
    assert_eq!(users_after, users_before);
    for u in users_after.as_array().expect("users") {
        assert_eq!(u["status"], "Queued", "{u:#}");
        assert!(
            u["last_sync_finished"].is_null(),
            "a pass was recorded: {u:#}"
        );
    }
    let report = cli.json(&["batch", "report", "plan-1", "--format", "json"]);
    assert_eq!(report["skipped"], serde_json::json!([]), "{report:#}");

    // It names every folder mapping and leaves Junk out, saying why.
    assert_eq!(plan["batch"], "plan-1");
    assert!(
        plan["failed"].as_array().expect("failed").is_empty(),
        "{plan:#}"
    );
    let mailboxes = plan["mailboxes"].as_array().expect("mailboxes");
    assert_eq!(mailboxes.len(), USERS);
    for (i, m) in mailboxes.iter().enumerate() {
        assert_eq!(m["email"], user(i));
        let source_folders: Vec<String> = folders(&source, &user(i))
            .into_iter()
            .filter(|(_, status)| status != "\\Noselect")
            .map(|(name, _)| name)
            .collect();
        let rows = m["folders"].as_array().expect("folder rows");
        for name in &source_folders {
            if name == "Junk" {
                assert!(
                    rows.iter().all(|r| r["source"] != "Junk"),
                    "Junk is planned: {m:#}"
                );
                let skipped = m["skipped_folders"].as_array().expect("skipped folders");
                assert!(
                    skipped.iter().any(|s| s["folder"] == "Junk"
                        && s["reason"]
                            .as_str()
                            .is_some_and(|r| r.contains("--exclude Junk"))),
                    "{m:#}"
                );
                continue;
            }
            let row = rows
                .iter()
                .find(|r| r["source"] == name.as_str())
                .unwrap_or_else(|| panic!("no row for {name}: {m:#}"));
            let expected = separator_mapping(name, Some('.'), Some('/')).expect("mapped");
            assert_eq!(row["target"], expected.as_str(), "{row:#}");
            assert_eq!(row["state"], "new", "{row:#}");
            assert_eq!(row["already_migrated"], 0, "{row:#}");
            assert!(
                text.contains(&format!("→ {expected}")),
                "the text names {name} → {expected}:\n{text}"
            );
        }
    }
    let would_copy = as_u64(&plan["messages"]);
    let too_large = as_u64(&plan["too_large"]);
    assert!(would_copy > 0 && too_large > 0, "{plan:#}");

    // ---- The estimate: what the dry run counts, and its scratch folders are gone.
    let estimate = cli.json(&["batch", "estimate", "plan-1", "--json"]);
    let text = cli.ok(&["batch", "estimate", "plan-1"]);
    assert!(
        text.contains("Estimated duration:") && text.contains("sample copy"),
        "{text}"
    );
    assert_eq!(estimate["basis"], "sample", "{estimate:#}");
    assert_eq!(estimate["messages"], plan["messages"], "{estimate:#}");
    assert_eq!(estimate["bytes"], plan["bytes"], "{estimate:#}");
    assert_eq!(estimate["concurrency"], 3, "{estimate:#}");
    assert!(as_u64(&estimate["sample"]["messages"]) > 0, "{estimate:#}");
    assert_eq!(
        estimate["mailboxes"].as_array().map(Vec::len),
        Some(USERS),
        "{estimate:#}"
    );
    for i in 0..USERS {
        let now = folders(&target, &user(i));
        assert!(
            now.keys().all(|name| !name.contains(SCRATCH)),
            "a scratch folder is left on the target of {}: {now:#?}",
            user(i)
        );
    }
    assert_eq!(cli.status("plan-1"), status_before);

    // ---- The real pass, timed.
    let started = Instant::now();
    cli.ok(&["batch", "start", "plan-1", "--wait"]);
    let measured = started.elapsed().as_secs_f64();
    let predicted = as_u64(&estimate["estimated_seconds"]) as f64;
    let ratio = predicted / measured;
    eprintln!(
        "estimate {predicted} s (model {:#}), measured pass {measured:.1} s, ratio {ratio:.2}",
        estimate["model"]
    );
    // A prediction at all: every rate the sample measured is a positive number.
    assert!(predicted >= 1.0, "{estimate:#}");
    for rate in [
        "per_mailbox_seconds",
        "open_folder_seconds",
        "stream_bytes_per_second",
    ] {
        assert!(
            estimate["model"][rate].as_f64().is_some_and(|v| v > 0.0),
            "the sample measured no {rate}: {estimate:#}"
        );
    }

    // The would-copy counts are what the pass copied; the too-large ones were skipped.
    let report = cli.json(&["batch", "report", "plan-1", "--format", "json"]);
    let skipped = report["skipped"].as_array().expect("skipped items");
    for (i, m) in mailboxes.iter().enumerate() {
        for row in m["folders"].as_array().expect("rows") {
            let folder = row["source"].as_str().expect("source name");
            let refused = skipped
                .iter()
                .filter(|s| s["email"] == user(i) && s["folder"] == folder)
                .filter(|s| s["reason"] != "too large" && !s["copied"].as_bool().unwrap_or(false))
                .count() as u64;
            let on_target = messages_in(&target, &user(i), row["target"].as_str().expect("target"));
            assert_eq!(
                on_target + refused,
                as_u64(&row["messages"]),
                "{folder} of {}: {row:#}",
                user(i)
            );
        }
    }
    let too_large_reported = skipped
        .iter()
        .filter(|s| {
            s["detail"]
                .as_str()
                .is_some_and(|d| d.contains("maximum message size"))
        })
        .count() as u64;
    assert_eq!(too_large_reported, too_large, "{report:#}");

    // ---- After the pass: everything is migrated, and the estimate reads the history.
    let after = cli.json(&["batch", "start", "plan-1", "--dry-run", "--json"]);
    assert_eq!(after["messages"], 0, "{after:#}");
    assert_eq!(after["bytes"], 0, "{after:#}");
    for m in after["mailboxes"].as_array().expect("mailboxes") {
        for row in m["folders"].as_array().expect("rows") {
            assert_eq!(row["state"], "unchanged", "{row:#}");
            assert_eq!(row["create"], false, "{row:#}");
        }
    }
    let copied = as_u64(&cli.status("plan-1")["items_synced"]);
    assert_eq!(as_u64(&after["already_migrated"]), copied, "{after:#}");
    let text = cli.ok(&["batch", "start", "plan-1", "--dry-run"]);
    assert!(text.contains("A pass would copy 0 messages"), "{text}");
    let again = cli.json(&["batch", "estimate", "plan-1", "--json"]);
    assert_eq!(again["basis"], "history", "{again:#}");
    assert_eq!(again["messages"], 0, "{again:#}");
    assert!(again.get("sample").is_none(), "{again:#}");
}
