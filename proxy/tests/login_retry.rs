//! A backend login answered `NO [UNAVAILABLE]` (Dovecot's auth-process race under load:
//! "Internal error occurred") is retried on a fresh backend connection before the client
//! sees it, and such refusals do not count against the client in the login throttle.
//!
//! The backend is scripted (a tokio listener in this file): real Dovecot cannot be made to
//! lose that race on demand.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use imapmirror_proxy::{
    BackendEndpoint, BackendSecurity, ListenerConfig, ListenerMode, Proxy, ProxyConfig, RouteTable,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const DOVECOT_RACE: &str =
    "NO [UNAVAILABLE] Internal error occurred. Refer to server log for more information.";

/// What the scripted backend saw: one entry per LOGIN, the connection it came on.
#[derive(Default)]
struct Script {
    /// How many LOGINs (counted over all connections) are answered with the race.
    unavailable: usize,
    logins: Mutex<Vec<usize>>,
}

async fn serve_backend(listener: TcpListener, script: Arc<Script>) {
    let mut connection = 0;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        connection += 1;
        tokio::spawn(backend_connection(tcp, connection, Arc::clone(&script)));
    }
}

async fn backend_connection(tcp: TcpStream, id: usize, script: Arc<Script>) {
    let (read, mut write) = tcp.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write
        .write_all(b"* OK [CAPABILITY IMAP4rev1 ID AUTH=PLAIN] scripted backend ready.\r\n")
        .await;
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.splitn(3, ' ');
        let (tag, verb, rest) = (
            words.next().unwrap_or("*"),
            words.next().unwrap_or("").to_ascii_uppercase(),
            words.next().unwrap_or(""),
        );
        let answer = match verb.as_str() {
            "LOGIN" => {
                let n = {
                    let mut logins = script.logins.lock().unwrap();
                    logins.push(id);
                    logins.len()
                };
                if n <= script.unavailable {
                    format!("{tag} {DOVECOT_RACE}\r\n")
                } else if rest.contains("wrong") {
                    format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
                } else {
                    format!("{tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
                }
            }
            "CAPABILITY" => format!("* CAPABILITY IMAP4rev1 ID AUTH=PLAIN\r\n{tag} OK done\r\n"),
            "LOGOUT" => format!("* BYE bye\r\n{tag} OK done\r\n"),
            _ => format!("{tag} OK done\r\n"),
        };
        if write.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A proxy whose every login goes to a scripted backend; returns its address.
async fn start(script: Arc<Script>, max_failed_logins: u32) -> SocketAddr {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = backend.local_addr().unwrap().port();
    tokio::spawn(serve_backend(backend, script));
    let mut config = ProxyConfig::new(vec![ListenerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        mode: ListenerMode::Plain,
    }]);
    config.allow_plaintext = true;
    config.limits.max_failed_logins = max_failed_logins;
    let routes = RouteTable::new(
        Vec::new(),
        Some(BackendEndpoint::new(
            "scripted",
            "127.0.0.1",
            port,
            BackendSecurity::Plain,
        )),
    );
    let proxy = Proxy::bind(config, routes).await.unwrap();
    let addr = proxy.local_addrs()[0];
    tokio::spawn(proxy.run(std::future::pending()));
    addr
}

/// A client on the proxy: sends one command, returns the tagged answer.
struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = lines.next_line().await.unwrap().unwrap();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        Client { lines, write }
    }

    async fn command(&mut self, tag: &str, command: &str) -> String {
        self.write
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await
            .unwrap();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
                .await
                .expect("the proxy answers within 10 s")
                .unwrap()
                .expect("the proxy keeps the connection open");
            if line.starts_with(&format!("{tag} ")) {
                return line;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_once_is_retried_on_a_fresh_connection() {
    let script = Arc::new(Script {
        unavailable: 1,
        ..Script::default()
    });
    let addr = start(Arc::clone(&script), 10).await;
    let mut client = Client::connect(addr).await;
    let started = Instant::now();
    let answer = client.command("a", "LOGIN alice pw").await;
    assert!(
        answer.starts_with("a OK"),
        "the client never sees the race: {answer}"
    );
    assert!(started.elapsed() >= Duration::from_millis(100));
    let logins = script.logins.lock().unwrap().clone();
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert_ne!(
        logins[0], logins[1],
        "the retry used the refused connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn still_unavailable_after_two_retries_is_shown_and_not_throttled() {
    let script = Arc::new(Script {
        unavailable: 3,
        ..Script::default()
    });
    // One failed login would already make the throttle refuse the next.
    let addr = start(Arc::clone(&script), 1).await;
    let mut client = Client::connect(addr).await;
    let started = Instant::now();
    let answer = client.command("a", "LOGIN alice pw").await;
    assert_eq!(answer, format!("a {DOVECOT_RACE}"));
    // 100 ms, then 200 ms: the client waits for both before it is told.
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(script.logins.lock().unwrap().len(), 3);
    // Not the client's failure: its next login reaches the backend and succeeds.
    let answer = client.command("b", "LOGIN alice pw").await;
    assert!(answer.starts_with("b OK"), "{answer}");
    assert_eq!(script.logins.lock().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_not_retried_and_counts() {
    let script = Arc::new(Script::default());
    let addr = start(Arc::clone(&script), 1).await;
    let mut client = Client::connect(addr).await;
    let answer = client.command("a", "LOGIN alice wrong").await;
    assert!(
        answer.starts_with("a NO [AUTHENTICATIONFAILED]"),
        "{answer}"
    );
    assert_eq!(script.logins.lock().unwrap().len(), 1);
    let answer = client.command("b", "LOGIN alice pw").await;
    assert!(
        answer.starts_with("b NO [UNAVAILABLE] Too many failed logins"),
        "{answer}"
    );
    assert_eq!(script.logins.lock().unwrap().len(), 1);
}
