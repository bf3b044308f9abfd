//! `endpoint add/test/list/remove` against a real Dovecot: TLS (STARTTLS and implicit,
//! verified against the server's CA), the capability notes, both admin formats Dovecot
//! speaks, and the exit codes of a refused login (1 for `test`, 2 for `add`) and of an
//! unreachable or untrusted server (1).

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use cli_harness::Cli;
use support::{
    Corpus, CorpusSpec, DEFAULT_USER, Dovecot, Layout, MASTER_PASSWORD, MASTER_USER, Verifier,
    separator_mapping, verify_users,
};

#[test]
fn endpoints_are_tested_over_tls_with_both_admin_formats() {
    let server = Dovecot::start(Layout::MaildirPlusPlus).expect("Dovecot starts");
    let cli = Cli::new();
    let ca = server.ca_file().display().to_string();
    let starttls = server.plain_addr().port().to_string();
    let imaps = server.tls_addr().port().to_string();
    let good = cli.file("good.pw", format!("{MASTER_PASSWORD}\n").as_bytes());
    let bad = cli.file("bad.pw", b"not-the-password\n");

    // STARTTLS + dovecot admin format, logging in as a real mailbox during the test.
    let out = cli.ok(&[
        "endpoint",
        "add",
        "a",
        "--host",
        "127.0.0.1",
        "--port",
        &starttls,
        "--security",
        "starttls",
        "--ca-file",
        &ca,
        "--admin-user",
        MASTER_USER,
        "--admin-password-file",
        &good,
        "--admin-format",
        "dovecot",
        "--test-user",
        DEFAULT_USER,
    ]);
    assert!(out.contains("TLS negotiated"), "{out}");
    assert!(out.contains("succeeded"), "{out}");
    // After login Dovecot announces UIDPLUS and CONDSTORE: the cheap paths.
    assert!(
        out.contains("CONDSTORE present — flag deltas are cheap"),
        "{out}"
    );

    // Implicit TLS + sasl admin format.
    cli.ok(&[
        "endpoint",
        "add",
        "b",
        "--host",
        "127.0.0.1",
        "--port",
        &imaps,
        "--security",
        "ssl",
        "--ca-file",
        &ca,
        "--admin-user",
        MASTER_USER,
        "--admin-password-file",
        &good,
        "--admin-format",
        "sasl",
    ]);
    let out = cli.ok(&["endpoint", "test", "b", "--user", DEFAULT_USER]);
    assert!(
        out.contains("implicit TLS") && out.contains("succeeded"),
        "{out}"
    );
    let json = cli.json(&["endpoint", "test", "b", "--user", DEFAULT_USER, "--json"]);
    assert_eq!(json["login"]["result"], "succeeded", "{json:#}");

    // A wrong admin password: refused at add (exit 2, nothing stored) ...
    let refused = cli.fails(
        &[
            "endpoint",
            "add",
            "c",
            "--host",
            "127.0.0.1",
            "--port",
            &starttls,
            "--security",
            "starttls",
            "--ca-file",
            &ca,
            "--admin-user",
            MASTER_USER,
            "--admin-password-file",
            &bad,
            "--admin-format",
            "sasl",
            "--test-user",
            DEFAULT_USER,
        ],
        2,
    );
    assert!(refused.contains("refused the login"), "{refused}");
    assert!(
        !refused.contains("not-the-password"),
        "no password in messages: {refused}"
    );
    // ... and reported by `test` (exit 1) when it was added untested.
    cli.ok(&[
        "endpoint",
        "add",
        "c",
        "--host",
        "127.0.0.1",
        "--port",
        &starttls,
        "--security",
        "starttls",
        "--ca-file",
        &ca,
        "--admin-user",
        MASTER_USER,
        "--admin-password-file",
        &bad,
        "--admin-format",
        "sasl",
        "--no-test",
    ]);
    let r = cli.run(&["endpoint", "test", "c", "--user", DEFAULT_USER]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("REFUSED"), "{}", r.stdout);

    // An untrusted certificate and a closed port: the work ran and failed, exit 1.
    let untrusted = cli.fails(
        &[
            "endpoint",
            "add",
            "d",
            "--host",
            "127.0.0.1",
            "--port",
            &imaps,
            "--security",
            "ssl",
        ],
        1,
    );
    assert!(untrusted.contains("127.0.0.1"), "{untrusted}");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port().to_string()
    };
    cli.fails(
        &[
            "endpoint",
            "add",
            "e",
            "--host",
            "127.0.0.1",
            "--port",
            &closed,
            "--security",
            "none",
        ],
        1,
    );

    let list = cli.json(&["endpoint", "list", "--json"]);
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let text = serde_json::to_string(&list).expect("json");
    assert!(
        !text.contains(MASTER_PASSWORD) && !text.contains("not-the-password"),
        "{text}"
    );
    cli.ok(&["endpoint", "remove", "c"]);
    cli.fails(&["endpoint", "remove", "c"], 2);
}

/// `--admin-format dovecot:SEP` for a Dovecot whose `auth_master_user_separator` is not
/// `*`: stored with the endpoint, used for the test login, shown by `endpoint list`.
#[test]
fn dovecot_admin_format_takes_the_servers_separator() {
    let server = Dovecot::builder()
        .label("percent")
        .extra_config("auth_master_user_separator = %")
        .start()
        .expect("Dovecot starts");
    let cli = Cli::new();
    let good = cli.file("good.pw", format!("{MASTER_PASSWORD}\n").as_bytes());
    let port = server.plain_addr().port().to_string();
    let add = |name: &str, format: &str| {
        cli.run(&[
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
            &good,
            "--admin-format",
            format,
            "--test-user",
            DEFAULT_USER,
        ])
    };
    // With the default `*` the server sees one user name `user*admin` and refuses it.
    let star = add("star", "dovecot");
    assert_eq!(star.code, 2, "{}\n{}", star.stdout, star.stderr);
    let percent = add("pct", "dovecot:%");
    // (Also stored: how many folders of a mailbox move at once on this server.)
    cli.ok(&[
        "endpoint",
        "add",
        "slow",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--security",
        "none",
        "--connections-per-mailbox",
        "2",
        "--no-test",
    ]);
    let list = cli.json(&["endpoint", "list", "--json"]);
    let slow = list
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == "slow"))
        .unwrap_or_else(|| panic!("slow is listed: {list:#}"));
    assert_eq!(slow["connections_per_mailbox"], 2, "{slow:#}");
    assert_eq!(percent.code, 0, "{}\n{}", percent.stdout, percent.stderr);
    assert!(percent.stdout.contains("succeeded"), "{}", percent.stdout);
    let list = cli.ok(&["endpoint", "list"]);
    assert!(list.contains("(dovecot:%)"), "{list}");
    let out = cli.ok(&["endpoint", "test", "pct", "--user", DEFAULT_USER]);
    assert!(out.contains("succeeded"), "{out}");
    let bad = cli.fails(
        &[
            "endpoint",
            "add",
            "x",
            "--host",
            "h",
            "--admin-user",
            "a",
            "--admin-format",
            "dovecot:ab",
        ],
        2,
    );
    assert!(bad.contains("dovecot:SEPARATOR"), "{bad}");
}

/// `--auth xoauth2 --oauth-token-command`: the command is run for the user and its token
/// logs in with AUTHENTICATE XOAUTH2. (Dovecot 2.3 checks an XOAUTH2 token with the
/// passdb like a password, so the kit user's password serves as its token here.)
#[test]
fn xoauth2_logins_take_their_token_from_the_command() {
    let server = Dovecot::builder()
        .label("oauth")
        .extra_config("auth_mechanisms = plain login xoauth2")
        .user("oauth@example.test", "tok-oauth@example.test")
        .start()
        .expect("Dovecot starts");
    let cli = Cli::new();
    let port = server.plain_addr().port().to_string();
    let add = |name: &str, extra: &[&str]| {
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
            "--auth",
            "xoauth2",
            "--no-test",
        ];
        args.extend_from_slice(extra);
        cli.run(&args)
    };
    let missing = add("none", &[]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("--oauth-token-command"),
        "{}",
        missing.stderr
    );
    let ok = add(
        "good",
        &[
            "--oauth-token-command",
            "echo \"tok-$IMAPMIRROR_OAUTH_USER\"",
        ],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let out = cli.ok(&["endpoint", "test", "good", "--user", "oauth@example.test"]);
    assert!(out.contains("succeeded"), "{out}");
    // A token the server does not accept: the login is refused (exit 1).
    add("wrong", &["--oauth-token-command", "echo not-the-token"]);
    let r = cli.run(&["endpoint", "test", "wrong", "--user", "oauth@example.test"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    // A failing command: its own words, exit 2.
    add(
        "broken",
        &[
            "--oauth-token-command",
            "echo 'consent missing' >&2; exit 1",
        ],
    );
    let broken = cli.fails(
        &["endpoint", "test", "broken", "--user", "oauth@example.test"],
        2,
    );
    assert!(broken.contains("consent missing"), "{broken}");

    // A whole migration whose source logs in with XOAUTH2 (no password in the file).
    let corpus = Corpus::generate(CorpusSpec::small(31).with_messages(40));
    server
        .seed("oauth@example.test", corpus.folders(), corpus.messages())
        .expect("seed");
    let target = Dovecot::builder()
        .label("oauth-target")
        .layout(Layout::Fs)
        .extra_config("mail_max_keyword_length = 200")
        .user("oauth@example.test", "target-pw")
        .start()
        .expect("target starts");
    cli.add_dovecot_endpoint("tgt", &target, "dovecot", &[]);
    let csv = cli.file(
        "users.csv",
        b"EmailAddress,UserName,Password\noauth@example.test,oauth@example.test,\n",
    );
    cli.ok(&[
        "batch", "add", "b", "--csv", &csv, "--source", "good", "--target", "tgt",
    ]);
    cli.ok(&["batch", "start", "b", "--wait"]);
    verify_users(
        &server,
        "oauth@example.test",
        &target,
        "oauth@example.test",
        &Verifier::new().with_folder_map(separator_mapping),
    )
    .expect("verifier reads both sides")
    .assert_equal();
}
