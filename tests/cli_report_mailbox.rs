//! Reports into a mailbox (`batch add --report-mailbox`): after every pass the batch
//! report arrives in that address's INBOX on the target, as a MIME message a mail client
//! reads — the subject and summary say how the pass went, and the attached CSV is, byte for
//! byte, what `batch report --format csv` prints. A second pass delivers a second report.
//! A report mailbox the target refuses fails the delivery, which `batch status` shows,
//! and not the pass. `--report-mailbox` given again sends copies to other addresses (as
//! Exchange sends copies of its reports to other users), each delivered on its own.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use cli_harness::{Cli, migration_file};
use mail_parser::{MessageParser, MimeHeaders};
use support::{Corpus, CorpusSpec, Dovecot, Layout, Verifier, separator_mapping, verify_users};

const ALICE: (&str, &str) = ("alice@example.test", "Alice-pw-1");
const BOB: (&str, &str) = ("bob@example.test", "Bob-pw-2");
const CAROL: (&str, &str) = ("carol@example.test", "Carol-pw-3");
/// Not a user of the source: the row that fails.
const GHOST: &str = "ghost@example.test";
/// The report mailbox: a user of the target only.
const REPORTS: (&str, &str) = ("reports@example.test", "Reports-pw-4");

fn servers() -> (Dovecot, Dovecot) {
    let mut source = Dovecot::builder()
        .label("report-source")
        .layout(Layout::MaildirPlusPlus);
    let mut target = Dovecot::builder()
        .label("report-target")
        .layout(Layout::Fs)
        .extra_config("mail_max_keyword_length = 200");
    for (user, pw) in [ALICE, BOB, CAROL] {
        source = source.user(user, pw);
        target = target.user(user, pw);
    }
    target = target.user(REPORTS.0, REPORTS.1).user(GHOST, "Ghost-pw");
    (
        source.start().expect("source starts"),
        target.start().expect("target starts"),
    )
}

/// Every message in `user`'s INBOX on `server`, oldest first.
fn inbox(server: &Dovecot, user: &str) -> Vec<Vec<u8>> {
    let mut client = server
        .connect_master(user)
        .expect("log in to the report mailbox");
    client.examine("INBOX").expect("examine INBOX");
    let messages = client.fetch_all().expect("fetch INBOX");
    client.logout().expect("logout");
    messages
        .into_iter()
        .map(|m| m.body.expect("BODY[] fetched"))
        .collect()
}

/// Checks one delivered report against the batch as the CLI shows it now.
fn check_report(
    cli: &Cli,
    raw: &[u8],
    to: &str,
    (batch, pass): (&str, u64),
    (synced, failed): (u64, u64),
) {
    let message = MessageParser::default()
        .parse(raw)
        .expect("the report parses as a message");
    assert_eq!(
        message.subject(),
        Some(
            format!(
                "imapmirror: batch {batch} pass {pass} \u{2014} {synced} synced, {failed} failed"
            )
            .as_str()
        )
    );
    let from = message.from().and_then(|a| a.first()).expect("a From");
    assert!(
        from.address().is_some_and(|a| a.starts_with("imapmirror@")),
        "{from:?}"
    );
    assert_eq!(
        message
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some(to)
    );
    assert!(message.date().is_some() && message.message_id().is_some());
    let status = cli.status(batch);
    let text = message.body_text(0).expect("a text part");
    for needle in [
        format!(
            "Batch {batch}, pass {pass}: {}",
            status["status"].as_str().expect("status")
        ),
        format!("  synced     {synced}"),
        format!("  failed     {failed}"),
        format!(
            "Messages copied: {} (",
            status["items_synced"].as_u64().expect("items")
        ),
        format!(
            "Skipped items: {}",
            status["items_skipped"].as_u64().expect("skipped")
        ),
    ] {
        assert!(
            text.contains(&needle),
            "{needle:?} not in the summary:\n{text}"
        );
    }
    assert_eq!(message.attachment_count(), 1);
    let csv = message.attachment(0).expect("the CSV");
    assert_eq!(
        csv.attachment_name(),
        Some(format!("{batch}-report.csv").as_str())
    );
    let printed = cli.ok(&["batch", "report", batch, "--format", "csv"]);
    assert_eq!(
        csv.contents(),
        printed.as_bytes(),
        "the attachment is what `batch report --format csv` prints"
    );
}

#[test]
fn every_pass_delivers_its_report_into_the_mailbox_and_a_refused_one_fails_nothing() {
    let (source, target) = servers();
    for (i, (user, _)) in [ALICE, BOB, CAROL].into_iter().enumerate() {
        let corpus = Corpus::generate(CorpusSpec::small(400 + i as u64).with_messages(12));
        source
            .seed(user, corpus.folders(), corpus.messages())
            .expect("seed");
    }
    let cli = Cli::new();
    cli.add_dovecot_endpoint("src", &source, "dovecot", &[]);
    cli.add_dovecot_endpoint("tgt", &target, "dovecot", &[]);

    let csv = cli.file(
        "users.csv",
        &migration_file(&[
            (ALICE.0, ALICE.0, ALICE.1),
            (BOB.0, BOB.0, BOB.1),
            (GHOST, GHOST, "Ghost-pw"),
        ]),
    );
    // A report mailbox needs a way in; an address that is no login name is refused.
    let bad = cli.fails(
        &[
            "batch",
            "add",
            "b",
            "--csv",
            &csv,
            "--source",
            "src",
            "--target",
            "tgt",
            "--report-mailbox",
            "a b@example.test",
        ],
        2,
    );
    assert!(bad.contains("report mailbox"), "{bad}");
    cli.ok(&[
        "batch",
        "add",
        "b",
        "--csv",
        &csv,
        "--source",
        "src",
        "--target",
        "tgt",
        "--report-mailbox",
        REPORTS.0,
    ]);
    let status = cli.status("b");
    assert_eq!(status["report_mailbox"], REPORTS.0, "{status:#}");
    assert!(inbox(&target, REPORTS.0).is_empty());

    // Pass 1: Alice and Bob migrate, the ghost fails (exit 1: a failed mailbox).
    let run = cli.run(&["batch", "start", "b", "--wait"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    for (user, _) in [ALICE, BOB] {
        verify_users(
            &source,
            user,
            &target,
            user,
            &Verifier::new().with_folder_map(separator_mapping),
        )
        .expect("verifier reads both sides")
        .assert_equal();
    }
    let delivered = inbox(&target, REPORTS.0);
    assert_eq!(delivered.len(), 1, "one report after one pass");
    check_report(&cli, &delivered[0], REPORTS.0, ("b", 1), (2, 1));
    let message = MessageParser::default()
        .parse(&delivered[0])
        .expect("parses");
    let text = message.body_text(0).expect("text");
    assert!(text.contains(&format!("  {GHOST}: ")), "{text}");
    let status = cli.status("b");
    assert!(status["report_delivered"].is_string(), "{status:#}");
    assert!(status["report_delivery_error"].is_null(), "{status:#}");

    // Pass 2: new mail for Alice; a second report, for pass 2.
    let more = Corpus::generate(CorpusSpec::small(499).with_messages(4));
    source
        .append_messages(ALICE.0, more.messages())
        .expect("new mail");
    let run = cli.run(&["batch", "sync", "b", "--wait"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    verify_users(
        &source,
        ALICE.0,
        &target,
        ALICE.0,
        &Verifier::new().with_folder_map(separator_mapping),
    )
    .expect("verifier reads both sides")
    .assert_equal();
    let delivered = inbox(&target, REPORTS.0);
    assert_eq!(delivered.len(), 2, "a second report after the second pass");
    check_report(&cli, &delivered[1], REPORTS.0, ("b", 2), (2, 1));

    // A report mailbox the target refuses (no such user), with a copy to the reports
    // mailbox: the pass succeeds, the failed delivery is in `batch status`, and the copy
    // arrives all the same. An address given twice is refused.
    let csv = cli.file("carol.csv", &migration_file(&[(CAROL.0, CAROL.0, CAROL.1)]));
    let add_c = |addresses: &[&str]| {
        let mut args = vec![
            "batch", "add", "c", "--csv", &csv, "--source", "src", "--target", "tgt",
        ];
        for a in addresses {
            args.extend(["--report-mailbox", a]);
        }
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let twice = add_c(&["nobody@example.test", REPORTS.0, "Reports@example.test"]);
    let twice: Vec<&str> = twice.iter().map(String::as_str).collect();
    let err = cli.fails(&twice, 2);
    assert!(err.contains("given twice"), "{err}");
    let add = add_c(&["nobody@example.test", REPORTS.0]);
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    cli.ok(&add);
    let run = cli.run(&["batch", "start", "c", "--wait"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    verify_users(
        &source,
        CAROL.0,
        &target,
        CAROL.0,
        &Verifier::new().with_folder_map(separator_mapping),
    )
    .expect("verifier reads both sides")
    .assert_equal();
    let status = cli.status("c");
    assert_eq!(status["status"], "Synced", "{status:#}");
    let error = status["report_delivery_error"]
        .as_str()
        .unwrap_or_else(|| panic!("the failed delivery is recorded: {status:#}"));
    assert!(error.contains("nobody@example.test"), "{error}");
    assert!(status["report_delivered"].is_null(), "{status:#}");
    let text = cli.ok(&["batch", "status", "c"]);
    assert!(
        text.contains("report mailbox: nobody@example.test (the last delivery failed:"),
        "{text}"
    );
    assert!(
        run.stderr
            .contains("the batch report could not be delivered"),
        "{}",
        run.stderr
    );
    let delivered = inbox(&target, REPORTS.0);
    assert_eq!(
        delivered.len(),
        3,
        "batch b's two reports and the copy of c's"
    );
    check_report(&cli, &delivered[2], REPORTS.0, ("c", 1), (1, 0));
    assert_eq!(
        status["report_copies"][0]["address"], REPORTS.0,
        "{status:#}"
    );
    assert!(
        status["report_copies"][0]["delivered"].is_string(),
        "{status:#}"
    );
    assert!(
        status["report_copies"][0]["delivery_error"].is_null(),
        "{status:#}"
    );
    assert!(
        text.contains(&format!("report copy: {} (last delivered ", REPORTS.0)),
        "{text}"
    );
}
