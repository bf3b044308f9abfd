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
use support::{Corpus, CorpusSpec, Dovecot, ImapClient, KitError, Layout, Security};

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
