//! `endpoint add/test/list/remove` against a real Dovecot: TLS (STARTTLS and implicit,
//! verified against the server's CA, or one pinned self-signed certificate), the
//! capability notes, both admin formats Dovecot speaks, and the exit codes of a refused
//! login (1 for `test`, 2 for `add`) and of an unreachable or untrusted server (1). Against
//! real Cyrus and Courier: login methods judged before login, the list after login apart,
//! the server family named.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use cli_harness::Cli;
use support::tls_material::{openssl_self_signed, openssl_x509};
use support::{
    CYRUS_ADMIN, CYRUS_ADMIN_PASSWORD, CYRUS_DEFAULT_USER, Corpus, CorpusSpec, Courier, Cyrus,
    DEFAULT_PASSWORD, DEFAULT_USER, Dovecot, Layout, MASTER_PASSWORD, MASTER_USER, Verifier,
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

/// An old server's certificate, self-signed with `openssl req -x509` (so `CA:TRUE`) for a
/// name that is not the one connected to: `--ca-file` with it fails and says to pin it;
/// `--pin-cert` (the file or its SHA-256) connects with verification on, and a batch uses
/// the stored pin; another certificate is refused; `--insecure-skip-verify` is reported as
/// not verified.
#[test]
fn a_self_signed_certificate_is_pinned_with_verification_on() {
    let cli = Cli::new();
    let dir = cli.files.path();
    let (cert, key) = openssl_self_signed(dir, "old", "oldmail.example.test").expect("openssl");
    let text = openssl_x509(&cert, &["-text"]).expect("openssl x509");
    assert!(
        text.contains("CA:TRUE"),
        "openssl req -x509 marks it CA:TRUE:\n{text}"
    );
    let (other, _) = openssl_self_signed(dir, "other", "oldmail.example.test").expect("openssl");
    let server = Dovecot::builder()
        .label("pinned")
        .extra_config(&format!(
            "ssl_cert = <{}\nssl_key = <{}",
            cert.display(),
            key.display()
        ))
        .start()
        .expect("Dovecot starts with the self-signed certificate");
    let imaps = server.tls_addr().port().to_string();
    let starttls = server.plain_addr().port().to_string();
    let good = cli.file("good.pw", format!("{MASTER_PASSWORD}\n").as_bytes());
    let cert = cert.display().to_string();
    let other = other.display().to_string();
    let add = |name: &str, port: &str, security: &str, trust: &[&str]| {
        let mut args = vec![
            "endpoint",
            "add",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--security",
            security,
            "--admin-user",
            MASTER_USER,
            "--admin-password-file",
            &good,
            "--admin-format",
            "dovecot",
            "--test-user",
            DEFAULT_USER,
        ];
        args.extend_from_slice(trust);
        cli.run(&args)
    };

    // The CA file way fails (webpki: CaUsedAsEndEntity) and points at pinning.
    let via_ca = add("viaca", &imaps, "ssl", &["--ca-file", &cert]);
    assert_eq!(via_ca.code, 1, "{}\n{}", via_ca.stdout, via_ca.stderr);
    assert!(
        via_ca.stderr.contains("CA:TRUE") && via_ca.stderr.contains("--pin-cert"),
        "{}",
        via_ca.stderr
    );
    assert!(
        !via_ca.stderr.contains("give its CA with --ca-file"),
        "no advice to do what just failed: {}",
        via_ca.stderr
    );

    // Pinned by file, over implicit TLS and over STARTTLS: connected, logged in.
    let pinned = add("pinned", &imaps, "ssl", &["--pin-cert", &cert]);
    assert_eq!(pinned.code, 0, "{}\n{}", pinned.stdout, pinned.stderr);
    let fingerprint = openssl_x509(std::path::Path::new(&cert), &["-fingerprint", "-sha256"])
        .expect("fingerprint");
    // `sha256 Fingerprint=AB:CD:...` (OpenSSL 3) or `SHA256 Fingerprint=...`.
    let hex = fingerprint
        .trim()
        .rsplit_once('=')
        .map(|(_, h)| h.to_owned())
        .expect("a fingerprint line");
    let pin = format!("sha256:{}", hex.replace(':', "").to_ascii_lowercase());
    assert!(
        pinned
            .stdout
            .contains(&format!("the certificate is the pinned one ({pin})")),
        "{}",
        pinned.stdout
    );
    assert!(pinned.stdout.contains("succeeded"), "{}", pinned.stdout);
    assert!(
        !pinned.stdout.contains("verified against"),
        "{}",
        pinned.stdout
    );
    let by_digest = add(
        "bydigest",
        &starttls,
        "starttls",
        &["--pin-cert", &format!("sha256:{hex}")],
    );
    assert_eq!(
        by_digest.code, 0,
        "{}\n{}",
        by_digest.stdout, by_digest.stderr
    );
    let json = cli.json(&[
        "endpoint",
        "test",
        "bydigest",
        "--user",
        DEFAULT_USER,
        "--json",
    ]);
    assert_eq!(json["certificate"]["check"], "pinned", "{json:#}");
    assert_eq!(json["certificate"]["pin"], pin.as_str(), "{json:#}");
    assert_eq!(json["server_family"], "Dovecot", "{json:#}");
    let list = cli.json(&["endpoint", "list", "--json"]);
    let stored = list
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == "pinned"))
        .unwrap_or_else(|| panic!("pinned is listed: {list:#}"));
    assert_eq!(stored["pinned_certificate"], pin.as_str(), "{stored:#}");

    // Another certificate pinned: refused, both digests named, exit 1.
    let wrong = add("wrong", &imaps, "ssl", &["--pin-cert", &other]);
    assert_eq!(wrong.code, 1, "{}\n{}", wrong.stdout, wrong.stderr);
    assert!(
        wrong.stderr.contains("is not the pinned one") && wrong.stderr.contains(&pin),
        "{}",
        wrong.stderr
    );
    // A pin does not go with the CA file or with insecure mode; a bad digest is exit 2.
    cli.fails(
        &[
            "endpoint",
            "add",
            "x",
            "--host",
            "h",
            "--pin-cert",
            &cert,
            "--ca-file",
            &cert,
        ],
        2,
    );
    cli.fails(
        &[
            "endpoint",
            "add",
            "x",
            "--host",
            "h",
            "--pin-cert",
            &cert,
            "--insecure-skip-verify",
        ],
        2,
    );
    let bad = cli.fails(
        &[
            "endpoint",
            "add",
            "x",
            "--host",
            "h",
            "--pin-cert",
            "sha256:12ab",
        ],
        2,
    );
    assert!(bad.contains("64 hex digits"), "{bad}");

    // Verification off is never reported as verified.
    let insecure = add("insecure", &imaps, "ssl", &["--insecure-skip-verify"]);
    assert_eq!(insecure.code, 0, "{}\n{}", insecure.stdout, insecure.stderr);
    assert!(
        insecure.stdout.contains("NOT verified"),
        "{}",
        insecure.stdout
    );
    assert!(
        !insecure.stdout.contains("certificate verified"),
        "{}",
        insecure.stdout
    );
    let json = cli.json(&["endpoint", "test", "insecure", "--json"]);
    assert_eq!(json["certificate"]["check"], "not_verified", "{json:#}");

    // A batch reads through the stored pin.
    let corpus = Corpus::generate(CorpusSpec::small(61).with_messages(30));
    server
        .seed(DEFAULT_USER, corpus.folders(), corpus.messages())
        .expect("seed");
    let target = Dovecot::builder()
        .label("pinned-target")
        .layout(Layout::Fs)
        .extra_config("mail_max_keyword_length = 200")
        .start()
        .expect("target starts");
    cli.add_dovecot_endpoint("tgt", &target, "dovecot", &[]);
    let csv = cli.file(
        "users.csv",
        format!(
            "EmailAddress,UserName,Password\n{DEFAULT_USER},{DEFAULT_USER},{DEFAULT_PASSWORD}\n"
        )
        .as_bytes(),
    );
    cli.ok(&[
        "batch", "add", "b", "--csv", &csv, "--source", "pinned", "--target", "tgt",
    ]);
    cli.ok(&["batch", "start", "b", "--wait"]);
    verify_users(
        &server,
        DEFAULT_USER,
        &target,
        DEFAULT_USER,
        &Verifier::new().with_folder_map(separator_mapping),
    )
    .expect("verifier reads both sides")
    .assert_equal();
}

/// Cyrus 3.6 offers LOGIN and AUTH=PLAIN before login and adds LOGINDISABLED after a
/// login: the test judges the first list and reports the second apart.
#[test]
fn cyrus_logins_are_judged_before_login() {
    let server = Cyrus::builder()
        .label("probe")
        .start()
        .expect("Cyrus starts");
    let cli = Cli::new();
    let pw = cli.file("admin.pw", format!("{CYRUS_ADMIN_PASSWORD}\n").as_bytes());
    let port = server.plain_addr().port().to_string();
    let ca = server.ca_file().display().to_string();
    cli.ok(&[
        "endpoint",
        "add",
        "cyrus",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--security",
        "starttls",
        "--ca-file",
        &ca,
        "--admin-user",
        CYRUS_ADMIN,
        "--admin-password-file",
        &pw,
        "--admin-format",
        "sasl",
        "--no-test",
    ]);
    let out = cli.ok(&["endpoint", "test", "cyrus", "--user", CYRUS_DEFAULT_USER]);
    assert!(out.contains("Server: Cyrus"), "{out}");
    assert!(out.contains("succeeded"), "{out}");
    assert!(
        out.contains("certificate verified against the trusted roots"),
        "{out}"
    );
    assert!(!out.contains("LOGINDISABLED —"), "{out}");
    assert!(!out.contains("no AUTH=PLAIN"), "{out}");
    assert!(
        out.contains("login methods offered before login (after STARTTLS): LOGIN,"),
        "{out}"
    );
    let json = cli.json(&[
        "endpoint",
        "test",
        "cyrus",
        "--user",
        CYRUS_DEFAULT_USER,
        "--json",
    ]);
    assert_eq!(json["server_family"], "Cyrus", "{json:#}");
    let list = |key: &str| -> Vec<String> {
        json[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is a list: {json:#}"))
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect()
    };
    let pre = list("capabilities");
    let post = list("capabilities_after_login");
    assert!(pre.iter().any(|c| c == "AUTH=PLAIN"), "{pre:?}");
    assert!(!pre.iter().any(|c| c == "LOGINDISABLED"), "{pre:?}");
    assert!(post.iter().any(|c| c == "LOGINDISABLED"), "{post:?}");
    assert!(post.iter().any(|c| c == "UIDPLUS"), "{post:?}");
    // Cyrus answers ID with its name and version.
    let id = serde_json::to_string(&json["server_id"]).expect("json");
    assert!(id.contains("Cyrus IMAPD"), "{id}");
    // The session notes come from the list after login.
    let notes = serde_json::to_string(&json["notes"]).expect("json");
    assert!(notes.contains("MULTIAPPEND — many messages"), "{notes}");
}

/// Courier 5.0 offers no AUTH=PLAIN before STARTTLS and offers it after: over STARTTLS
/// the sasl admin format is fine; over plaintext the test says to use STARTTLS.
#[test]
fn courier_offers_auth_plain_only_after_starttls() {
    let server = Courier::builder()
        .label("probe")
        .start()
        .expect("Courier starts");
    let cli = Cli::new();
    let pw = cli.file("admin.pw", b"whatever\n");
    let port = server.plain_addr().port().to_string();
    let ca = server.ca_file().display().to_string();
    let add = |name: &str, trust: &[&str]| {
        let mut args = vec![
            "endpoint",
            "add",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--admin-user",
            "mailadmin",
            "--admin-password-file",
            &pw,
            "--admin-format",
            "sasl",
        ];
        args.extend_from_slice(trust);
        cli.ok(&args)
    };
    let out = add("tls", &["--security", "starttls", "--ca-file", &ca]);
    assert!(out.contains("Server: Courier"), "{out}");
    assert!(out.contains("Capabilities before STARTTLS:"), "{out}");
    assert!(!out.contains("no AUTH=PLAIN"), "{out}");
    let json = cli.json(&["endpoint", "test", "tls", "--json"]);
    assert_eq!(json["server_family"], "Courier", "{json:#}");
    let has = |key: &str, cap: &str| {
        json[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is a list: {json:#}"))
            .iter()
            .any(|c| c == cap)
    };
    assert!(
        !has("capabilities_before_starttls", "AUTH=PLAIN"),
        "{json:#}"
    );
    assert!(has("capabilities", "AUTH=PLAIN"), "{json:#}");

    let out = add("plain", &["--security", "none"]);
    assert!(
        out.contains("no AUTH=PLAIN — the sasl admin format needs it before STARTTLS: use --security starttls"),
        "{out}"
    );
    assert!(out.contains("without TLS"), "{out}");
}

/// `endpoint add --provider`: stored with the endpoint, and `endpoint test` prints the
/// profile and what it changes; without it the detected family decides (Dovecot: generic).
#[test]
fn the_provider_profile_is_chosen_or_detected_and_printed() {
    let server = Dovecot::builder()
        .label("provider")
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
        ];
        args.extend_from_slice(extra);
        cli.run(&args)
    };
    let gmail = add("asgmail", &["--provider", "gmail"]);
    assert_eq!(gmail.code, 0, "{}\n{}", gmail.stdout, gmail.stderr);
    assert!(
        gmail.stdout.contains("Provider profile: Gmail."),
        "{}",
        gmail.stdout
    );
    assert!(
        gmail.stdout.contains("15 simultaneous connections"),
        "{}",
        gmail.stdout
    );
    assert!(gmail.stdout.contains("35651584 bytes"), "{}", gmail.stdout);
    assert!(gmail.stdout.contains("X-GM-MSGID"), "{}", gmail.stdout);
    let list = cli.json(&["endpoint", "list", "--json"]);
    let stored = list
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == "asgmail"))
        .unwrap_or_else(|| panic!("asgmail is listed: {list:#}"));
    assert_eq!(stored["provider"], "gmail", "{stored:#}");
    let json = cli.json(&["endpoint", "test", "asgmail", "--json"]);
    assert_eq!(json["server_family"], "Dovecot", "{json:#}");
    assert_eq!(json["provider"], "gmail", "{json:#}");

    let auto = add("auto", &[]);
    assert_eq!(auto.code, 0, "{}\n{}", auto.stdout, auto.stderr);
    assert!(
        auto.stdout.contains("Provider profile: generic."),
        "{}",
        auto.stdout
    );
    let json = cli.json(&["endpoint", "test", "auto", "--json"]);
    assert_eq!(json["provider"], "generic", "{json:#}");
    let bad = cli.fails(
        &["endpoint", "add", "x", "--host", "h", "--provider", "yahoo"],
        2,
    );
    assert!(bad.contains("gmail"), "{bad}");
}
