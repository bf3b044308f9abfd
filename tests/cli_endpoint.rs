//! `endpoint add/test/list/remove` against a real Dovecot: TLS (STARTTLS and implicit,
//! verified against the server's CA), the capability notes, both admin formats Dovecot
//! speaks, and the exit codes of a refused login (1 for `test`, 2 for `add`) and of an
//! unreachable or untrusted server (1).

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use cli_harness::Cli;
use support::{DEFAULT_USER, Dovecot, Layout, MASTER_PASSWORD, MASTER_USER};

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
