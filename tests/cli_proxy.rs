//! `imapmirror proxy` as an administrator runs it beside a migration: users log in through
//! it and land on the source; after `batch complete` (run by `serve`, which then owns the
//! state directory) their open sessions are closed with BYE and new logins land on the
//! target. Also: a route file overrides the batches, unknown users get NO or the default
//! backend, and a bad default backend is refused with exit 2.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cli_harness::{Cli, migration_file};
use support::tls_material::{openssl_self_signed, openssl_x509};
use support::{
    Corpus, CorpusSpec, Courier, Credentials, Cyrus, Dovecot, ImapClient, KitError, Layout,
    Security, TlsMode,
};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const STRANGER: &str = "stranger@example.test";
const MESSAGES: usize = 20;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A free loopback port (bound and released: good enough for a test machine).
fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    probe.local_addr().expect("addr")
}

struct ProxyProcess {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl ProxyProcess {
    fn start(cli: &Cli, name: &str, extra: &[&str]) -> ProxyProcess {
        let addr = free_addr();
        let log = cli.files.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("proxy log");
        let listen = addr.to_string();
        let mut args = vec!["proxy", "--listen", &listen, "--allow-plaintext"];
        args.extend_from_slice(extra);
        let mut child = cli
            .command(&args)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("proxy starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("proxy ready") {
                break;
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("proxy exited with {status} at start:\n{text}");
            }
            assert!(Instant::now() < deadline, "proxy did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
        ProxyProcess { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn login(&self, user: &str) -> Result<ImapClient, KitError> {
        let mut c = ImapClient::connect(self.addr, &Security::Plain, TIMEOUT)?;
        c.login(user, "pw")?;
        Ok(c)
    }

    /// Messages in INBOX of `user` as seen through the proxy.
    fn inbox_count(&self, user: &str) -> u32 {
        let mut c = self
            .login(user)
            .unwrap_or_else(|e| panic!("{user} logs in through the proxy: {e}\n{}", self.log()));
        let n = c.examine("INBOX").expect("examine").exists;
        let _ = c.logout();
        n
    }

    /// Like [`Self::inbox_count`] while a cut-over may be under way: a session that logged
    /// in on the old route just before the proxy noticed the move is closed with
    /// `BYE [UNAVAILABLE]` (the proxy's promise: reconnect), which is `None` here.
    fn inbox_count_during_cut_over(&self, user: &str) -> Option<u32> {
        let mut c = self
            .login(user)
            .unwrap_or_else(|e| panic!("{user} logs in through the proxy: {e}\n{}", self.log()));
        match c.examine("INBOX") {
            Ok(selected) => {
                let _ = c.logout();
                Some(selected.exists)
            }
            Err(KitError::Closed { .. }) => None,
            Err(e) => panic!("examine through the proxy: {e}\n{}", self.log()),
        }
    }

    fn stop(mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Source with mail for alice and bob; target with one message of its own in each INBOX,
/// so that "which server am I on" is the INBOX count.
fn servers() -> (Dovecot, Dovecot) {
    let source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus)
        .user(ALICE, "pw")
        .user(BOB, "pw")
        .start()
        .expect("source starts");
    let target = Dovecot::builder()
        .label("target")
        .layout(Layout::Fs)
        .extra_config("mail_max_keyword_length = 200")
        .user(ALICE, "pw")
        .user(BOB, "pw")
        .user(STRANGER, "pw")
        .start()
        .expect("target starts");
    for (i, user) in [ALICE, BOB].into_iter().enumerate() {
        let corpus = Corpus::generate(CorpusSpec::small(70 + i as u64).with_messages(MESSAGES));
        source
            .seed(user, corpus.folders(), corpus.messages())
            .expect("seed");
        // `Endpoint::connect` logs in.
        let mut c = target
            .user_endpoint(user)
            .and_then(|e| e.connect())
            .expect("target");
        c.append(
            "INBOX",
            &[],
            None,
            b"From: admin@example.test\r\nSubject: already on the target\r\n\r\nhello\r\n",
        )
        .expect("append");
        let _ = c.logout();
    }
    (source, target)
}

fn inbox_on(server: &Dovecot, user: &str) -> u32 {
    let mut c = server
        .user_endpoint(user)
        .and_then(|e| e.connect())
        .expect("connect and log in");
    let n = c.examine("INBOX").expect("examine").exists;
    let _ = c.logout();
    n
}

/// A state directory with both servers as endpoints and batch b1 of alice and bob.
fn cli_with_batch(source: &Dovecot, target: &Dovecot) -> Cli {
    let cli = Cli::new();
    cli.add_dovecot_endpoint("src", source, "dovecot", &[]);
    cli.add_dovecot_endpoint("tgt", target, "dovecot", &[]);
    let csv = cli.file(
        "users.csv",
        &migration_file(&[(ALICE, ALICE, ""), (BOB, BOB, "")]),
    );
    cli.ok(&[
        "batch", "add", "b1", "--csv", &csv, "--source", "src", "--target", "tgt",
    ]);
    cli
}

#[test]
fn proxy_routes_by_batch_state_and_moves_users_at_complete() {
    let (source, target) = servers();
    let on_source = inbox_on(&source, ALICE);
    let target_before = inbox_on(&target, ALICE);
    assert_eq!(target_before, 1);

    let cli = cli_with_batch(&source, &target);

    // No process owns the state directory: the proxy reads it itself, briefly.
    let proxy = ProxyProcess::start(&cli, "proxy", &[]);
    assert_eq!(
        proxy.inbox_count(ALICE),
        on_source,
        "before complete: source"
    );
    // An unknown user, with no default backend, is refused.
    let stranger = ImapClient::connect(proxy.addr, &Security::Plain, TIMEOUT)
        .expect("connect")
        .login(STRANGER, "pw");
    assert!(stranger.is_err(), "unknown users get NO");
    // The proxy does not hold the directory: commands still work.
    cli.ok(&["batch", "status", "b1"]);

    // A session that stays open across the cut-over.
    let mut open_session = proxy.login(ALICE).expect("login");
    open_session.select("INBOX").expect("select");

    // serve owns the directory from now on; the proxy asks it over the control socket.
    let mut serve = cli.start_serve(&[]);
    cli.ok(&["batch", "start", "b1"]);
    cli.wait_for("b1", Duration::from_secs(120), |s| s["status"] == "Synced");
    assert_eq!(
        proxy.inbox_count(BOB),
        inbox_on(&source, BOB),
        "still the source"
    );
    cli.ok(&["batch", "complete", "b1"]);
    cli.wait_for("b1", Duration::from_secs(120), |s| {
        s["status"] == "Completed"
    });

    // The open session is closed by the proxy with BYE within a few polls.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if open_session.noop().is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session to the source was not closed at cut-over:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // New logins land on the target: its own message plus everything migrated.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = proxy.inbox_count(ALICE);
        if n == on_source + target_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice still sees {n} messages, not the target's {}:\n{}",
            on_source + target_before,
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(proxy.stop(), Some(0), "SIGTERM ends the proxy with exit 0");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
}

#[test]
fn route_file_overrides_batches_and_default_backend_takes_the_rest() {
    let (source, target) = servers();
    let cli = cli_with_batch(&source, &target);
    // Bob is sent to the target ahead of his batch (a pilot user).
    let routes = cli.file(
        "routes.txt",
        format!("# pilot\n{BOB} {} none\n", target.plain_addr()).as_bytes(),
    );
    let proxy = ProxyProcess::start(
        &cli,
        "proxy",
        &["--route-file", &routes, "--default-backend", "tgt"],
    );
    assert_eq!(
        proxy.inbox_count(ALICE),
        inbox_on(&source, ALICE),
        "batch route"
    );
    assert_eq!(
        proxy.inbox_count(BOB),
        1,
        "the route file wins over the batch"
    );
    assert_eq!(
        proxy.inbox_count(STRANGER),
        0,
        "unknown users: the default backend"
    );
    // No serve: `batch complete` runs in the foreground, then lets go of the directory;
    // the proxy notices the change on its own read and moves alice.
    let on_source = inbox_on(&source, ALICE);
    cli.ok(&["batch", "complete", "b1"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while proxy.inbox_count_during_cut_over(ALICE) != Some(on_source + 1) {
        assert!(
            Instant::now() < deadline,
            "alice was not moved to the target:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(proxy.stop(), Some(0));

    let bad = cli.fails(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--allow-plaintext",
            "--default-backend",
            "nosuch",
        ],
        2,
    );
    assert!(
        bad.contains("nosuch") && bad.contains("endpoint"),
        "names the endpoint: {bad}"
    );
    let no_tls = cli.fails(&["proxy", "--listen", "127.0.0.1:0"], 2);
    assert!(no_tls.contains("--tls-cert"), "{no_tls}");
}

/// Adds an endpoint by its flags, without the login test (`--no-test`): the tests below
/// judge logins through the proxy.
fn add_endpoint(cli: &Cli, name: &str, addr: SocketAddr, security: &str, extra: &[&str]) {
    let host = addr.ip().to_string();
    let port = addr.port().to_string();
    let mut args = vec![
        "endpoint",
        "add",
        name,
        "--host",
        &host,
        "--port",
        &port,
        "--security",
        security,
        "--no-test",
    ];
    args.extend_from_slice(extra);
    cli.ok(&args);
}

/// Logs in through the proxy with `credentials` and counts INBOX.
fn inbox_through(proxy: &ProxyProcess, credentials: &Credentials) -> Result<u32, KitError> {
    let mut c = ImapClient::connect(proxy.addr, &Security::Plain, TIMEOUT)?;
    c.authenticate(credentials)?;
    let n = c.examine("INBOX")?.exists;
    let _ = c.logout();
    Ok(n)
}

fn one_message(client: &mut ImapClient, subject: &str) {
    let message = format!("From: admin@example.test\r\nSubject: {subject}\r\n\r\nhello\r\n");
    client
        .append("INBOX", &[], None, message.as_bytes())
        .expect("append");
}

/// The proxy in front of Cyrus 3.6 over STARTTLS (its private CA): LOGIN, AUTHENTICATE
/// PLAIN, and AUTHENTICATE PLAIN with an authzid — Cyrus's admin, one of its
/// `proxyservers`, acting for a user opens that user's mailbox; a user who is not a proxy
/// server cannot.
#[test]
fn proxy_in_front_of_cyrus_logs_in_with_login_plain_and_authzid() {
    let cyrus = Cyrus::builder()
        .label("cyrus")
        .user(ALICE, "alice-pw")
        .user(BOB, "bob-pw")
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut alice = cyrus
        .user_endpoint(ALICE)
        .and_then(|e| e.connect())
        .expect("alice on Cyrus");
    one_message(&mut alice, "alice's own");
    let _ = alice.logout();
    let (admin, admin_pw) = cyrus.admin();
    let cli = Cli::new();
    let ca = cyrus.ca_file().display().to_string();
    let admin_pw_file = cli.file("cyrus.pw", format!("{admin_pw}\n").as_bytes());
    add_endpoint(
        &cli,
        "cyrus",
        cyrus.plain_addr(),
        "starttls",
        &[
            "--ca-file",
            &ca,
            "--admin-user",
            admin,
            "--admin-password-file",
            &admin_pw_file,
            "--admin-format",
            "sasl",
        ],
    );
    let proxy = ProxyProcess::start(&cli, "proxy-cyrus", &["--default-backend", "cyrus"]);
    let through = |credentials: Credentials| {
        inbox_through(&proxy, &credentials)
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", proxy.log(), cyrus.log_tail(20)))
    };
    assert_eq!(through(Credentials::login(ALICE, "alice-pw")), 1);
    assert_eq!(through(Credentials::login(BOB, "bob-pw")), 0);
    let plain = |authzid: Option<&str>, authcid: &str, password: &str| Credentials::Plain {
        authzid: authzid.map(str::to_owned),
        authcid: authcid.to_owned(),
        password: password.to_owned(),
    };
    assert_eq!(through(plain(None, ALICE, "alice-pw")), 1);
    // The proxy routes by the authzid and passes it on; Cyrus lets its proxy server act.
    assert_eq!(through(plain(Some(ALICE), admin, admin_pw)), 1);
    assert_eq!(through(plain(Some(BOB), admin, admin_pw)), 0);
    // Bob is no proxy server: Cyrus refuses, and the proxy says so.
    let refused = inbox_through(&proxy, &plain(Some(ALICE), BOB, "bob-pw"));
    assert!(
        matches!(refused, Err(KitError::Refused { .. })),
        "{refused:?}"
    );
    assert!(
        proxy.log().contains("login refused by the backend"),
        "{}",
        proxy.log()
    );
    assert_eq!(proxy.stop(), Some(0));
}

/// The proxy in front of Courier-IMAP 5.0, over STARTTLS and over implicit TLS: LOGIN and
/// AUTHENTICATE PLAIN work. Courier ignores an authzid that is not the authcid and opens
/// the authcid's mailbox (checked directly below); the proxy, which routed by the authzid,
/// refuses such a login with NO [CANNOT] instead of opening the wrong mailbox.
#[test]
fn proxy_in_front_of_courier_over_starttls_and_tls() {
    let courier = Courier::builder()
        .label("courier")
        .user(ALICE, "alice-pw")
        .user(BOB, "bob-pw")
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut alice = courier.connect_user(ALICE).expect("alice on Courier");
    one_message(&mut alice, "alice's own");
    let _ = alice.logout();
    let plain = |authzid: Option<&str>, authcid: &str, password: &str| Credentials::Plain {
        authzid: authzid.map(str::to_owned),
        authcid: authcid.to_owned(),
        password: password.to_owned(),
    };
    // The quirk itself: asked for Bob's mailbox with Alice's credentials, Courier opens
    // Alice's.
    let mut direct = courier
        .endpoint(TlsMode::StartTls, plain(Some(BOB), ALICE, "alice-pw"))
        .connect()
        .expect("Courier accepts a foreign authzid");
    assert_eq!(direct.examine("INBOX").expect("examine").exists, 1);
    let _ = direct.logout();

    let cli = Cli::new();
    let ca = courier.ca_file().display().to_string();
    add_endpoint(
        &cli,
        "courier-starttls",
        courier.plain_addr(),
        "starttls",
        &["--ca-file", &ca],
    );
    add_endpoint(
        &cli,
        "courier-tls",
        courier.tls_addr(),
        "ssl",
        &["--ca-file", &ca],
    );
    for endpoint in ["courier-starttls", "courier-tls"] {
        let proxy = ProxyProcess::start(&cli, endpoint, &["--default-backend", endpoint]);
        let through = |credentials: Credentials| {
            inbox_through(&proxy, &credentials).unwrap_or_else(|e| {
                panic!("{endpoint}: {e}\n{}\n{}", proxy.log(), courier.log_tail(20))
            })
        };
        assert_eq!(
            through(Credentials::login(ALICE, "alice-pw")),
            1,
            "{endpoint}"
        );
        assert_eq!(through(Credentials::login(BOB, "bob-pw")), 0, "{endpoint}");
        assert_eq!(through(plain(None, ALICE, "alice-pw")), 1, "{endpoint}");
        assert_eq!(
            through(plain(Some(ALICE), ALICE, "alice-pw")),
            1,
            "{endpoint}"
        );
        let refused = inbox_through(&proxy, &plain(Some(BOB), ALICE, "alice-pw"));
        let Err(KitError::Refused { text, .. }) = &refused else {
            panic!("{endpoint}: a foreign authzid must be refused: {refused:?}");
        };
        assert!(
            text.contains("CANNOT") && text.contains("Courier"),
            "{endpoint}: {text}"
        );
        assert_eq!(proxy.stop(), Some(0));
    }
}

/// An endpoint stored with `--pin-cert` (an old server's `openssl req -x509` certificate,
/// `CA:TRUE`, for another name) is reached through the proxy with that pin: the login
/// works; an endpoint pinned to another certificate is refused, its digest in the log.
#[test]
fn proxy_honours_a_pinned_backend_certificate() {
    let cli = Cli::new();
    let dir = cli.files.path();
    let (cert, key) = openssl_self_signed(dir, "old", "oldmail.example.test").expect("openssl");
    let (other, _) = openssl_self_signed(dir, "other", "oldmail.example.test").expect("openssl");
    let server = Dovecot::builder()
        .label("pinned")
        .user(ALICE, "pw")
        .extra_config(&format!(
            "ssl_cert = <{}\nssl_key = <{}",
            cert.display(),
            key.display()
        ))
        .start()
        .expect("Dovecot starts with the self-signed certificate");
    let fingerprint = openssl_x509(&cert, &["-fingerprint", "-sha256"]).expect("fingerprint");
    let hex = fingerprint
        .trim()
        .rsplit_once('=')
        .map(|(_, h)| h.replace(':', "").to_ascii_lowercase())
        .expect("a fingerprint line");
    let cert = cert.display().to_string();
    let other = other.display().to_string();
    add_endpoint(
        &cli,
        "old",
        server.tls_addr(),
        "ssl",
        &["--pin-cert", &cert],
    );
    let by_digest = format!("sha256:{hex}");
    add_endpoint(
        &cli,
        "old-starttls",
        server.plain_addr(),
        "starttls",
        &["--pin-cert", &by_digest],
    );
    add_endpoint(
        &cli,
        "wrong",
        server.tls_addr(),
        "ssl",
        &["--pin-cert", &other],
    );
    for endpoint in ["old", "old-starttls"] {
        let proxy = ProxyProcess::start(&cli, endpoint, &["--default-backend", endpoint]);
        let n = inbox_through(&proxy, &Credentials::login(ALICE, "pw"))
            .unwrap_or_else(|e| panic!("{endpoint}: {e}\n{}", proxy.log()));
        assert_eq!(n, 0);
        assert_eq!(proxy.stop(), Some(0));
    }
    let proxy = ProxyProcess::start(&cli, "wrong", &["--default-backend", "wrong"]);
    let refused = inbox_through(&proxy, &Credentials::login(ALICE, "pw"));
    let Err(KitError::Refused { text, .. }) = &refused else {
        panic!("another pinned certificate must be refused: {refused:?}");
    };
    assert!(text.contains("UNAVAILABLE"), "{text}");
    assert!(
        proxy.log().contains(&hex) && proxy.log().contains("is not the pinned one"),
        "{}",
        proxy.log()
    );
    assert_eq!(proxy.stop(), Some(0));
}
