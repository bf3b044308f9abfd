//! The proxy in front of real Dovecot servers: routing by batch state, cut-over, both TLS
//! modes, both login forms, limits, garbage, a backend that is down, IDLE.
//!
//! Run with `cargo test -p imapmirror-proxy --test routing` (Dovecot from Debian's
//! dovecot-imapd must be installed; see TESTING.md).

#![forbid(unsafe_code)]

mod proxy_harness;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use imapmirror_proxy::{FileRoutes, RouteSource};
use imapmirror_storage::BatchStatus;
use proxy_harness::{Harness, HarnessOptions, RawClient, reached};
use support::Credentials;

fn plaintext_allowed() -> HarnessOptions {
    HarnessOptions {
        configure: Box::new(|c| c.allow_plaintext = true),
        ..HarnessOptions::default()
    }
}

#[test]
fn routes_by_batch_state_and_cut_over_closes_old_sessions() {
    let h = Harness::start(plaintext_allowed());
    let (user, pw) = h.user();
    // By EmailAddress, over STARTTLS with LOGIN: the source while the batch syncs.
    let mut before = h
        .proxy(false, Credentials::login(user, pw))
        .connect()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(before.is_tls());
    assert_eq!(reached(&mut before), "source");
    // By the source UserName too (any case).
    let refused = h
        .proxy(true, Credentials::login("LEGACY-alice", pw))
        .connect();
    // Dovecot does not know "legacy-alice": the proxy routed it to the source, which refused.
    assert!(format!("{:?}", refused.err()).contains("AUTHENTICATIONFAILED"));

    // A raw session idling on the source must be told to go when the batch completes.
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(format!("a LOGIN {user} {pw}\r\n").as_bytes());
    let ok = raw.until_tagged("a");
    assert!(ok.last().is_some_and(|l| l.starts_with("a OK")), "{ok:?}");
    raw.send(b"b SELECT INBOX\r\n");
    raw.until_tagged("b");

    h.set_status(BatchStatus::Completed);
    let started = Instant::now();
    let bye = raw.line();
    assert!(bye.starts_with("* BYE [UNAVAILABLE]"), "{bye}");
    assert!(raw.at_eof());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut-over took {:?}",
        started.elapsed()
    );
    // The kit session on the source was closed too.
    assert!(
        before.noop().is_err(),
        "the old session survived the cut-over"
    );

    // Reconnecting lands on the target, over implicit TLS with AUTHENTICATE PLAIN + SASL-IR.
    let mut after = h
        .proxy(
            true,
            Credentials::Plain {
                authzid: None,
                authcid: user.into(),
                password: pw.into(),
            },
        )
        .connect()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(after.has_capability("SASL-IR"));
    assert_eq!(reached(&mut after), "target");
    after.logout().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn pre_auth_capabilities_and_logindisabled() {
    let h = Harness::start(HarnessOptions::default());
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(b"c CAPABILITY\r\n");
    let lines = raw.until_tagged("c");
    let caps = &lines[0];
    assert!(
        caps.contains("STARTTLS") && caps.contains("LOGINDISABLED"),
        "{caps}"
    );
    assert!(!caps.contains("AUTH="), "{caps}");
    // Nothing the backends do not offer (Dovecot offers IDLE, ID, SASL-IR, LITERAL+...).
    let offered = direct_capabilities(&h);
    for cap in caps.trim_start_matches("* CAPABILITY ").split(' ') {
        let known = ["IMAP4rev1", "STARTTLS", "LOGINDISABLED"].contains(&cap)
            || offered.iter().any(|c| c.eq_ignore_ascii_case(cap));
        assert!(known, "{cap} is promised but not offered by the backends");
    }
    raw.send(b"l LOGIN alice@example.test alice-pw\r\n");
    let no = raw.line();
    assert!(no.starts_with("l NO [PRIVACYREQUIRED]"), "{no}");
    // AUTHENTICATE PLAIN with a continuation, over STARTTLS, through the kit client.
    let mut c = support::ImapClient::connect(
        h.plain_addr,
        &support::Security::StartTls(h.tls.root_store()),
        Duration::from_secs(15),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.has_capability("AUTH=PLAIN") && !c.has_capability("LOGINDISABLED"));
    c.authenticate_plain(None, "alice@example.test", "alice-pw")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reached(&mut c), "source");
}

fn direct_capabilities(h: &Harness) -> Vec<String> {
    let c = support::ImapClient::connect(
        h.source.plain_addr(),
        &support::Security::Plain,
        Duration::from_secs(15),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    c.capabilities().to_vec()
}

#[test]
fn authenticate_plain_continuation_on_the_raw_wire() {
    let h = Harness::start(plaintext_allowed());
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(b"a AUTHENTICATE PLAIN\r\n");
    assert_eq!(raw.line(), "+ ");
    // "\0alice@example.test\0alice-pw"
    let b64 = support::base64_codec::encode(b"\0alice@example.test\0alice-pw");
    raw.send(format!("{b64}\r\n").as_bytes());
    let lines = raw.until_tagged("a");
    let last = lines.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("a OK [CAPABILITY "),
        "the backend's OK with its capabilities: {last}"
    );
    // Post-login commands are relayed untouched, pipelined ones included.
    raw.send(b"b NOOP\r\nc LIST \"\" OnSource\r\n");
    raw.until_tagged("b");
    let list = raw.until_tagged("c");
    assert!(list.iter().any(|l| l.contains("OnSource")), "{list:?}");
    raw.send(b"d LOGOUT\r\n");
    let bye = raw.until_tagged("d");
    assert!(bye[0].starts_with("* BYE"), "{bye:?}");
    assert!(raw.at_eof());
}

#[test]
fn garbage_oversized_lines_and_literals() {
    let h = Harness::start(HarnessOptions {
        configure: Box::new(|c| {
            c.allow_plaintext = true;
            c.limits.max_line = 1024;
            c.limits.max_literal = 512;
            c.limits.max_bad_commands = 3;
        }),
        ..HarnessOptions::default()
    });
    // Commands not allowed before login, binary junk: BAD, then BYE after three.
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(b"a SELECT INBOX\r\n");
    assert!(raw.line().starts_with("a BAD "));
    raw.send(b"\x00\xff\xfe garbage\r\n");
    assert!(raw.line().starts_with("* BAD "));
    raw.send(b"b FETCH 1:* BODY[]\r\n");
    assert!(raw.line().starts_with("b BAD "));
    assert_eq!(raw.line(), "* BYE Too many invalid IMAP commands.");
    assert!(raw.at_eof());

    // An endless line: BYE once over the limit, not a growing buffer.
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(&[b'x'; 4096]);
    assert!(raw.line().starts_with("* BYE Too long"));
    assert!(raw.at_eof());

    // A literal over the limit: refused before the client sends it.
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(b"l LOGIN {100000}\r\n");
    assert!(raw.line().starts_with("* BYE Too long"));
    assert!(raw.at_eof());

    // A literal within the limit is accepted with a continuation.
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(b"l LOGIN {18}\r\n");
    assert_eq!(raw.line(), "+ Ready for literal data");
    raw.send(b"alice@example.test alice-pw\r\n");
    let lines = raw.until_tagged("l");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("l OK")),
        "{lines:?}"
    );
}

#[test]
fn unknown_user_and_throttling() {
    let h = Harness::start(HarnessOptions {
        configure: Box::new(|c| {
            c.allow_plaintext = true;
            c.limits.max_failed_logins = 3;
        }),
        ..HarnessOptions::default()
    });
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(b"a LOGIN nobody@example.test pw\r\n");
    assert_eq!(
        raw.line(),
        "a NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    raw.send(b"b LOGIN alice@example.test wrong\r\n");
    let refused = raw.until_tagged("b");
    assert!(
        refused
            .last()
            .is_some_and(|l| l.starts_with("b NO [AUTHENTICATIONFAILED]")),
        "{refused:?}"
    );
    raw.send(b"c LOGIN alice@example.test wrong-again\r\n");
    raw.until_tagged("c");
    // Third failure reached: the right password is refused too, without a backend.
    raw.send(b"d LOGIN alice@example.test alice-pw\r\n");
    let throttled = raw.line();
    assert!(
        throttled.starts_with("d NO [UNAVAILABLE] Too many failed logins"),
        "{throttled}"
    );
}

#[test]
fn backend_down_answers_unavailable() {
    // One backend refuses connections (its port is closed), one accepts and never greets.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes");
    std::fs::write(
        &path,
        format!("refused@example.test 127.0.0.1:{closed_port} none\nsilent@example.test 127.0.0.1:{silent_port} none\n"),
    )
    .expect("write");
    let file = Arc::new(FileRoutes::open(&path).expect("route file"));
    let h = Harness::start(HarnessOptions {
        extra_sources: vec![file as Arc<dyn RouteSource>],
        configure: Box::new(|c| {
            c.allow_plaintext = true;
            c.pool.io_timeout = Duration::from_secs(2);
        }),
        ..HarnessOptions::default()
    });
    for (user, within) in [
        ("refused", Duration::from_secs(2)),
        ("silent", Duration::from_secs(6)),
    ] {
        let mut raw = RawClient::connect(h.plain_addr);
        let started = Instant::now();
        raw.send(format!("a LOGIN {user}@example.test pw\r\n").as_bytes());
        let no = raw.line();
        assert_eq!(
            no,
            "a NO [UNAVAILABLE] The mail server is unavailable right now; try again later."
        );
        assert!(
            started.elapsed() < within,
            "{user}: {:?}",
            started.elapsed()
        );
        // The client may retry on the same connection.
        raw.send(b"b NOOP\r\n");
        assert_eq!(raw.line(), "b OK NOOP completed.");
    }
    drop(silent);
}

#[test]
fn route_file_overrides_the_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes");
    // The harness's servers are not known yet; route to a placeholder and rewrite below.
    std::fs::write(&path, "# empty\n").expect("write");
    let file = Arc::new(FileRoutes::open(&path).expect("route file"));
    let h = Harness::start(HarnessOptions {
        extra_sources: vec![file.clone() as Arc<dyn RouteSource>],
        configure: Box::new(|c| c.allow_plaintext = true),
        ..HarnessOptions::default()
    });
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(b"a LOGIN alice@example.test alice-pw\r\n");
    raw.until_tagged("a");
    std::fs::write(
        &path,
        format!(
            "@example.test 127.0.0.1:{} none\n",
            h.target.plain_addr().port()
        ),
    )
    .expect("write");
    // The file changed: the session on the source is moved like a cut-over.
    let bye = raw.line();
    assert!(bye.starts_with("* BYE [UNAVAILABLE]"), "{bye}");
    let mut c = h
        .proxy(false, Credentials::login("alice@example.test", "alice-pw"))
        .connect()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reached(&mut c), "target");
}

#[test]
fn idle_works_through_the_proxy() {
    let h = Harness::start(plaintext_allowed());
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(b"a LOGIN alice@example.test alice-pw\r\nb SELECT INBOX\r\n");
    raw.until_tagged("a");
    raw.until_tagged("b");
    raw.send(b"c IDLE\r\n");
    assert!(raw.line().starts_with("+ "));
    // Mail arrives on the source by another way in.
    let mut direct = h
        .source
        .user_endpoint("alice@example.test")
        .unwrap_or_else(|e| panic!("{e}"))
        .connect()
        .unwrap_or_else(|e| panic!("{e}"));
    direct
        .append("INBOX", &[], None, b"Subject: idle\r\n\r\nhello\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let exists = raw.line();
    assert!(
        exists.ends_with("EXISTS"),
        "IDLE did not report the new message: {exists}"
    );
    raw.send(b"DONE\r\n");
    let done = raw.until_tagged("c");
    assert!(
        done.last().is_some_and(|l| l.starts_with("c OK")),
        "{done:?}"
    );
}

#[test]
fn admin_credentials_on_the_target_after_verifying_on_the_source() {
    let h = Harness::start(HarnessOptions {
        admin_on_target: true,
        target_password: Some("only-the-admin-knows".into()),
        configure: Box::new(|c| c.allow_plaintext = true),
        ..HarnessOptions::default()
    });
    // The user's password differs on the target: only the admin login can open it there.
    h.set_status(BatchStatus::Completed);
    let (user, pw) = h.user();
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(b"a LOGIN alice@example.test not-her-password\r\n");
    let refused = raw.until_tagged("a");
    assert!(
        refused.last().is_some_and(|l| l.starts_with("a NO")),
        "the source must refuse a wrong password: {refused:?}"
    );
    let mut c = h
        .proxy(true, Credentials::login(user, pw))
        .connect()
        .unwrap_or_else(|e| panic!("{e}"));
    // Her source password opened the target: only the admin login can have done that.
    assert_eq!(reached(&mut c), "target");
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_sessions() {
    let h = Harness::start(HarnessOptions::default());
    let (user, pw) = h.user();
    let mut old = h
        .proxy(true, Credentials::login(user, pw))
        .connect()
        .unwrap_or_else(|e| panic!("{e}"));
    // A new certificate from a new CA replaces the files, then SIGHUP.
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = support::tls_material::TlsMaterial::generate(dir.path(), "proxy-renewed")
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&fresh.server_cert_file, &h.tls.server_cert_file).expect("copy cert");
    std::fs::copy(&fresh.server_key_file, &h.tls.server_key_file).expect("copy key");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = support::ImapClient::connect(
            h.tls_addr,
            &support::Security::Tls(fresh.root_store()),
            Duration::from_secs(5),
        );
        match attempt {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("the new certificate is not served: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    // The session made with the old certificate is still alive.
    old.noop()
        .unwrap_or_else(|e| panic!("the old session was dropped by the reload: {e}"));
}

#[test]
fn id_forwarding_names_the_real_client_and_stops_loops() {
    let h = Harness::start(HarnessOptions {
        dovecot_extra: vec![
            "login_trusted_networks = 127.0.0.0/8".into(),
            "login_log_format_elements = user=<%u> rip=%r rport=%{rport}".into(),
        ],
        configure: Box::new(|c| {
            c.allow_plaintext = true;
            c.id_forwarding.enabled = true;
        }),
        ..HarnessOptions::default()
    });
    let mut raw = RawClient::connect(h.plain_addr);
    let port = raw.local_port();
    raw.send(b"a LOGIN alice@example.test alice-pw\r\n");
    let ok = raw.until_tagged("a");
    assert!(ok.last().is_some_and(|l| l.starts_with("a OK")), "{ok:?}");
    let log = std::fs::read_to_string(h.source.log_path()).unwrap_or_default();
    assert!(
        log.contains(&format!(
            "user=<alice@example.test>, rip=127.0.0.1, rport={port}"
        )),
        "Dovecot did not see the client's own port {port}: {log}"
    );
    // A client that already went through too many proxies is refused.
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(b"i ID (\"x-proxy-ttl\" \"1\")\r\n");
    raw.until_tagged("i");
    raw.send(b"a LOGIN alice@example.test alice-pw\r\n");
    assert!(
        raw.line()
            .starts_with("a NO [UNAVAILABLE] Proxy loop detected")
    );
}

#[test]
fn connection_limit_and_pre_auth_timeout() {
    let h = Harness::start(HarnessOptions {
        configure: Box::new(|c| {
            c.allow_plaintext = true;
            c.limits.max_connections = 1;
            c.limits.pre_auth_timeout = Duration::from_secs(1);
        }),
        ..HarnessOptions::default()
    });
    let mut first = RawClient::connect(h.plain_addr);
    // The only slot is taken: the next client is told so and closed.
    let mut second =
        std::io::BufReader::new(std::net::TcpStream::connect(h.plain_addr).expect("connect"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut second, &mut line).expect("read");
    assert_eq!(
        line,
        "* BYE [UNAVAILABLE] Too many connections; try again later.\r\n"
    );
    // The first never logs in: it is dropped after the pre-auth timeout.
    let started = Instant::now();
    assert_eq!(
        first.line(),
        "* BYE Disconnected for inactivity before login."
    );
    assert!(first.at_eof());
    assert!(started.elapsed() < Duration::from_secs(3));
    // Its slot is free again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c =
            std::io::BufReader::new(std::net::TcpStream::connect(h.plain_addr).expect("connect"));
        let mut greeting = String::new();
        std::io::BufRead::read_line(&mut c, &mut greeting).expect("read");
        if greeting.starts_with("* OK ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never released: {greeting}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An `ID` line like the one Dovecot's imaptest sends in its `id` test (about 31 KB: 30
/// fields, each value the 1024 octets RFC 2971 allows), before login.
fn imaptest_like_id(tag: &str) -> Vec<u8> {
    let mut line = format!("{tag} ID (").into_bytes();
    for k in 0..30 {
        if k > 0 {
            line.push(b' ');
        }
        let value: String = (0..1024)
            .map(|i| char::from(b'a' + ((i + k) % 26) as u8))
            .collect();
        line.extend_from_slice(format!("\"x-imaptest-{k:02}\" \"{value}\"").as_bytes());
    }
    line.extend_from_slice(b")\r\n");
    line
}

/// The tagged answer to a long ID, and whether LOGIN then works on the same connection.
fn long_id_then_login(addr: std::net::SocketAddr) -> (String, String) {
    let mut raw = RawClient::connect(addr);
    raw.send(&imaptest_like_id("i"));
    let id = raw.until_tagged("i");
    let tagged = id.last().cloned().unwrap_or_default();
    raw.send(b"l LOGIN alice@example.test alice-pw\r\n");
    let login = raw.until_tagged("l").last().cloned().unwrap_or_default();
    (tagged, login)
}

#[test]
fn a_31_kb_pre_auth_id_is_answered_like_dovecot_does() {
    let h = Harness::start(plaintext_allowed());
    let line = imaptest_like_id("i");
    assert!(
        line.len() > 31_000 && line.len() < 64 * 1024,
        "{}",
        line.len()
    );
    let (direct_id, direct_login) = long_id_then_login(h.source.plain_addr());
    let (proxied_id, proxied_login) = long_id_then_login(h.plain_addr);
    // Dovecot accepts it; the proxy must answer no worse, and stay usable.
    assert!(direct_id.starts_with("i OK"), "Dovecot: {direct_id}");
    assert!(proxied_id.starts_with("i OK"), "proxy: {proxied_id}");
    assert!(direct_login.starts_with("l OK"), "Dovecot: {direct_login}");
    assert!(proxied_login.starts_with("l OK"), "proxy: {proxied_login}");
    // Beyond the line limit the proxy still closes, as Dovecot's imap-login does.
    let mut raw = RawClient::connect(h.plain_addr);
    raw.send(b"x ID (\"name\" \"");
    raw.send(&vec![b'n'; 65 * 1024]);
    assert!(raw.line().starts_with("* BYE Too long"));
    assert!(raw.at_eof());
}
