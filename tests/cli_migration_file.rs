//! `batch add` refuses every bad migration file with exit code 2 and a sentence naming the
//! failed check (and the line), before anything is stored; a good file is counted.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use cli_harness::Cli;

fn cli_with_endpoints() -> Cli {
    let cli = Cli::new();
    for (name, port) in [("src", "1143"), ("tgt", "1144")] {
        cli.ok(&[
            "endpoint",
            "add",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--security",
            "none",
            "--no-test",
        ]);
    }
    cli
}

/// `batch add` of `contents` must fail with exit 2 and a message containing each of `expected`.
fn rejected(cli: &Cli, contents: &[u8], expected: &[&str]) {
    let path = cli.file("bad.csv", contents);
    let stderr = cli.fails(
        &[
            "batch", "add", "b", "--csv", &path, "--source", "src", "--target", "tgt",
        ],
        2,
    );
    for needle in expected {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
    assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
    // Nothing was stored.
    let out = cli.ok(&["batch", "status"]);
    assert!(out.contains("No batches yet"), "{out}");
}

#[test]
fn each_check_rejects_its_file_with_exit_2() {
    let cli = cli_with_endpoints();
    rejected(&cli, b"", &["is empty"]);
    rejected(&cli, b"   \r\n", &["is empty"]);
    rejected(
        &cli,
        b"EmailAddress;UserName;Password\na@example.test;a;pw\n",
        &["line 1", "not comma-separated"],
    );
    rejected(
        &cli,
        b"EmailAddress,UserName\na@example.test,a\n",
        &["no `Password` column"],
    );
    rejected(
        &cli,
        b"EmailAddress,UserName,Password\na@example.test,a,pw\nb@example.test,b\n",
        &["Line 3", "has 2 columns but the header has 3"],
    );
    rejected(
        &cli,
        b"EmailAddress,UserName,Password\na@example.test,a,pw\nA@Example.test,a2,pw\n",
        &["already appears on line 2"],
    );
    rejected(
        &cli,
        b"EmailAddress,UserName,Password\nnot-an-address,a,pw\n",
        &["line 2", "is not an address"],
    );

    let mut many = String::from("EmailAddress,UserName,Password\n");
    for i in 0..50_001 {
        many.push_str(&format!("u{i}@example.test,u{i},p\n"));
    }
    rejected(
        &cli,
        many.as_bytes(),
        &["more than 50000 mailbox rows", "line 50002"],
    );

    let mut large = String::from("EmailAddress,UserName,Password\n");
    let filler = "x".repeat(1000);
    let mut i = 0;
    while large.len() <= 10 * 1024 * 1024 {
        large.push_str(&format!("u{i}@example.test,u{i},{filler}\n"));
        i += 1;
    }
    rejected(
        &cli,
        large.as_bytes(),
        &["more than the 10485760 bytes allowed"],
    );
}

#[test]
fn a_good_file_is_counted_and_wrong_requests_exit_2() {
    let cli = cli_with_endpoints();
    let path = cli.file(
        "good.csv",
        b"EmailAddress,UserName,Password,TargetPassword\r\na@example.test,a,pw-a,t-a\r\nb@example.test,b,\"p,w\",t-b\r\n",
    );
    let out = cli.ok(&[
        "batch", "add", "wave-1", "--csv", &path, "--source", "src", "--target", "tgt",
    ]);
    assert!(
        out.contains("2 mailboxes will be migrated from src to tgt"),
        "{out}"
    );
    // The same name twice, an unknown endpoint, a bad name, a missing file: the request is wrong.
    let again = cli.fails(
        &[
            "batch", "add", "wave-1", "--csv", &path, "--source", "src", "--target", "tgt",
        ],
        2,
    );
    assert!(again.contains("already exists"), "{again}");
    let unknown = cli.fails(
        &[
            "batch", "add", "w2", "--csv", &path, "--source", "nope", "--target", "tgt",
        ],
        2,
    );
    assert!(unknown.contains("\"nope\" does not exist"), "{unknown}");
    cli.fails(
        &[
            "batch", "add", "bad name", "--csv", &path, "--source", "src", "--target", "tgt",
        ],
        2,
    );
    cli.fails(
        &[
            "batch",
            "add",
            "w3",
            "--csv",
            "/nonexistent.csv",
            "--source",
            "src",
            "--target",
            "tgt",
        ],
        2,
    );
    // Without target passwords or admin credentials on the target, no row can log in there.
    let no_target = cli.file(
        "nt.csv",
        b"EmailAddress,UserName,Password\nc@example.test,c,pw\n",
    );
    let stderr = cli.fails(
        &[
            "batch", "add", "w4", "--csv", &no_target, "--source", "src", "--target", "tgt",
        ],
        2,
    );
    assert!(stderr.contains("line 2"), "{stderr}");
    // A sync interval that is no duration.
    cli.fails(
        &[
            "batch",
            "add",
            "w5",
            "--csv",
            &path,
            "--source",
            "src",
            "--target",
            "tgt",
            "--sync-interval",
            "soon",
        ],
        2,
    );
    // A target recheck that is no duration.
    cli.fails(
        &[
            "batch",
            "add",
            "w6",
            "--csv",
            &path,
            "--source",
            "src",
            "--target",
            "tgt",
            "--target-recheck",
            "twice a day",
        ],
        2,
    );
    // Endpoint removal is refused while the batch uses it.
    let in_use = cli.fails(&["endpoint", "remove", "src"], 2);
    assert!(in_use.contains("wave-1"), "{in_use}");
    // The batch cannot be completed while it is merely marked to start.
    cli.ok(&["batch", "start", "wave-1"]);
    let busy = cli.fails(&["batch", "complete", "wave-1"], 2);
    assert!(busy.contains("Batch wave-1 is Syncing"), "{busy}");
    cli.ok(&["batch", "stop", "wave-1"]);
    cli.ok(&["batch", "remove", "wave-1"]);
    cli.ok(&["endpoint", "remove", "src"]);
}

/// Without a NAME the batch is named after its migration file, as Exchange names a new
/// batch; a file whose name cannot be a batch name is refused with exit 2, nothing stored.
#[test]
fn a_batch_without_a_name_takes_its_files_name() {
    let cli = cli_with_endpoints();
    let rows = b"EmailAddress,UserName,Password,TargetPassword\r\na@example.test,a,pw-a,t-a\r\n";
    let path = cli.file("Wave_7-east.csv", rows);
    let out = cli.ok(&[
        "batch", "add", "--csv", &path, "--source", "src", "--target", "tgt",
    ]);
    assert!(out.contains("Wave_7-east"), "{out}");
    let status = cli.json(&["batch", "status", "Wave_7-east", "--json"]);
    assert_eq!(status["mailboxes_total"], 1, "{status:#}");
    let spaced = cli.file("wave 8.csv", rows);
    let err = cli.fails(
        &[
            "batch", "add", "--csv", &spaced, "--source", "src", "--target", "tgt",
        ],
        2,
    );
    assert!(
        err.contains("`wave 8`") && err.contains("give the batch a NAME"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    let list = cli.json(&["batch", "status", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list:#}");
}

/// `--shard I/N` splits one file over N workers, each with its own state directory: every
/// row lands in exactly one shard (the file checks still cover the whole file on every
/// worker), and the shard comes from `IMAPMIRROR_SHARD` too (for indexed jobs).
#[test]
fn shards_split_a_file_without_overlap() {
    let mut text = String::from("EmailAddress,UserName,Password,TargetPassword\n");
    for i in 0..40 {
        text.push_str(&format!("user{i}@example.test,user{i},pw{i},tpw{i}\n"));
    }
    let mut seen = std::collections::BTreeMap::new();
    for index in 0..4 {
        let cli = cli_with_endpoints();
        let csv = cli.file("users.csv", text.as_bytes());
        let shard = format!("{index}/4");
        let mut command = cli.command(&[
            "batch", "add", "b", "--csv", &csv, "--source", "src", "--target", "tgt",
        ]);
        // Half the workers take the shard from the environment.
        if index % 2 == 0 {
            command.args(["--shard", &shard]);
        } else {
            command.env("IMAPMIRROR_SHARD", &shard);
        }
        let out = command.output().expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("(shard {shard}: "))
                && stdout.contains("of the file's 40 rows"),
            "{stdout}"
        );
        let users = cli.json(&["batch", "users", "b", "--json"]);
        for u in users.as_array().expect("array") {
            let email = u["email"].as_str().expect("email").to_owned();
            assert!(
                seen.insert(email.clone(), index).is_none(),
                "{email} in two shards"
            );
        }
    }
    assert_eq!(seen.len(), 40, "every row in some shard");

    let cli = cli_with_endpoints();
    let csv = cli.file("users.csv", text.as_bytes());
    let bad = cli.fails(
        &[
            "batch", "add", "b", "--csv", &csv, "--source", "src", "--target", "tgt", "--shard",
            "4/4",
        ],
        2,
    );
    assert!(bad.contains("INDEX/COUNT"), "{bad}");
}

/// `--include` names a shared or another user's folder to copy: a special use is refused
/// (exit 2, one sentence naming the value), a name or glob is stored and shown.
#[test]
fn include_takes_folder_names_and_refuses_special_uses() {
    let cli = cli_with_endpoints();
    let path = cli.file(
        "good.csv",
        b"EmailAddress,UserName,Password,TargetPassword\r\na@example.test,a,pw-a,t-a\r\n",
    );
    let add = |name: &str, include: &str| {
        vec![
            "batch".to_owned(),
            "add".to_owned(),
            name.to_owned(),
            "--csv".to_owned(),
            path.clone(),
            "--source".to_owned(),
            "src".to_owned(),
            "--target".to_owned(),
            "tgt".to_owned(),
            "--include".to_owned(),
            include.to_owned(),
        ]
    };
    let args = add("w1", "\\Sent");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stderr = cli.fails(&args, 2);
    // The value as written, escaped like every name in an error sentence.
    assert!(stderr.contains("`\\\\Sent`"), "{stderr}");
    assert!(stderr.contains("--include"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
    let out = cli.ok(&["batch", "status"]);
    assert!(out.contains("No batches yet"), "{out}");

    let args = add("w2", "Shared Folders/News*");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli.ok(&args);
    let status = cli.status("w2");
    assert_eq!(
        status["included_folders"],
        serde_json::json!(["Shared Folders/News*"]),
        "{status:#}"
    );
    let text = cli.ok(&["batch", "status", "w2"]);
    assert!(
        text.contains("included folders: Shared Folders/News*"),
        "{text}"
    );
}

/// `--target-recheck` is stored with the batch, shown by `batch status` (text and JSON),
/// absent from the JSON while the engine's default applies, and changed by `--if-exists
/// update`; `0` makes every pass look at the target.
#[test]
fn target_recheck_is_stored_shown_and_updated() {
    let cli = cli_with_endpoints();
    let path = cli.file(
        "good.csv",
        b"EmailAddress,UserName,Password,TargetPassword\r\na@example.test,a,pw-a,t-a\r\n",
    );
    let add = |extra: &[&str]| {
        let mut args = vec![
            "batch", "add", "w1", "--csv", &path, "--source", "src", "--target", "tgt",
        ];
        args.extend_from_slice(extra);
        cli.ok(&args);
    };
    add(&[]);
    let status = cli.status("w1");
    assert!(status.get("target_recheck_secs").is_none(), "{status:#}");
    let text = cli.ok(&["batch", "status", "w1"]);
    assert!(
        text.contains("leaves the target alone for 12 h after the last look (the default;"),
        "{text}"
    );

    add(&["--if-exists", "update", "--target-recheck", "6h"]);
    assert_eq!(
        cli.status("w1")["target_recheck_secs"],
        serde_json::json!(21_600)
    );
    let text = cli.ok(&["batch", "status", "w1"]);
    assert!(
        text.contains("for 6 h after the last look (set by `batch add --target-recheck`)"),
        "{text}"
    );

    add(&["--if-exists", "update", "--target-recheck", "0s"]);
    assert_eq!(
        cli.status("w1")["target_recheck_secs"],
        serde_json::json!(0)
    );
    let text = cli.ok(&["batch", "status", "w1"]);
    assert!(text.contains("every pass looks at the target"), "{text}");
}
