//! Prometheus metrics as a monitoring system scrapes them: `serve --http` and `proxy
//! --http` answer `/metrics` with text `promtool check metrics` accepts; a batch's counters
//! equal its report after a real migration between two kit Dovecots, a pass resumed after
//! a SIGKILL included (nothing counted twice), and start from the stored totals when
//! `serve` starts again; a login through the proxy is counted; and the Grafana dashboard
//! (deploy/grafana) asks only for metrics the two processes emit. Behind the kit's
//! Exchange-like relay, throttling answers and dropped connections are counted by kind.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli_harness::{Cli, migration_file};
use support::{Corpus, CorpusSpec, Dovecot, ImapClient, Layout, Security};

const LONG_KEYWORDS: &str = "mail_max_keyword_length = 200";
/// Messages above this size are skipped: the small corpus has a few attachments of
/// 20–120 KB among 0.3–4 KB messages.
const MAX_MESSAGE_SIZE: &str = "10000";

fn user(i: usize) -> String {
    format!("metered{i}@example.test")
}

fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    probe.local_addr().expect("addr")
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} failed");
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A `serve` that a failed assertion does not leave running.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `GET /metrics`: the body, after checking the status and the content type.
fn scrape(addr: SocketAddr) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to --http");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "the text exposition format: {head}"
    );
    body.to_owned()
}

/// `promtool check metrics` (Debian's `prometheus` package, installed by
/// scripts/install-deps) must accept `text`.
fn promtool_accepts(text: &str, what: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed: it checks the /metrics text and comes with Debian's `prometheus` package; run scripts/install-deps as root (or apt-get install -y prometheus)"
        ),
        Err(e) => panic!("promtool could not be started: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics refused the {what} metrics:\n{}{}\n--- the text:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One sample line: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// The samples of a text exposition (our exporter's output: no escaped quotes in values).
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let value: f64 = value.parse().expect("a numeric value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                let labels = inner
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        out.push((name, labels, value));
    }
    out
}

/// The value of the sample `name` whose labels include `labels`, if exactly one has them.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples(text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .collect();
    match matching.as_slice() {
        [one] => Some(*one),
        [] => None,
        more => panic!("{} samples of {name} with {labels:?}: {more:?}", more.len()),
    }
}

fn counter(text: &str, name: &str, batch: &str) -> u64 {
    value(text, name, &[("batch", batch)])
        .unwrap_or_else(|| panic!("no {name}{{batch={batch}}} in:\n{text}")) as u64
}

fn servers(users: usize, messages: usize, seed: u64) -> (Dovecot, Dovecot) {
    let mut source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus);
    let mut target = Dovecot::builder()
        .label("target")
        .layout(Layout::Fs)
        .extra_config(LONG_KEYWORDS);
    for i in 0..users {
        source = source.user(&user(i), "pw");
        target = target.user(&user(i), "pw");
    }
    let source = source.start().expect("source starts");
    let target = target.start().expect("target starts");
    for i in 0..users {
        let corpus = Corpus::generate(CorpusSpec::small(seed + i as u64).with_messages(messages));
        source
            .seed(&user(i), corpus.folders(), corpus.messages())
            .expect("seed");
    }
    (source, target)
}

/// Endpoints `src` (one initial pass at a time, so a kill finds work in flight) and
/// `tgt`, and batch `b1` of every user with the size limit.
fn cli_with_batch(source: &Dovecot, target: &Dovecot, users: usize) -> Cli {
    let cli = Cli::new();
    cli.add_dovecot_endpoint(
        "src",
        source,
        "dovecot",
        &["--max-concurrent-migrations", "1"],
    );
    cli.add_dovecot_endpoint("tgt", target, "dovecot", &[]);
    let rows: Vec<String> = (0..users).map(user).collect();
    let rows: Vec<(&str, &str, &str)> = rows.iter().map(|u| (u.as_str(), u.as_str(), "")).collect();
    let csv = cli.file("users.csv", &migration_file(&rows));
    cli.ok(&[
        "batch",
        "add",
        "b1",
        "--csv",
        &csv,
        "--source",
        "src",
        "--target",
        "tgt",
        "--max-message-size",
        MAX_MESSAGE_SIZE,
    ]);
    cli
}

/// Sends a command to the `serve` that just started (its socket may not answer yet).
fn through_serve(cli: &Cli, args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = cli.run(args);
        if r.code == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{args:?} failed: {}", r.stderr);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_counters_equal_the_report_and_start_from_the_stored_totals_after_a_restart() {
    const USERS: usize = 4;
    const MESSAGES: usize = 150;
    let (source, target) = servers(USERS, MESSAGES, 140);
    let cli = cli_with_batch(&source, &target, USERS);

    // Before any pass: the batch's series exist, at zero, every mailbox queued or created.
    let http = free_addr();
    let mut serve = Serve(cli.start_serve(&["--http", &http.to_string()]));
    let fresh = scrape(http);
    promtool_accepts(&fresh, "fresh serve");
    assert_eq!(counter(&fresh, "imapmirror_messages_copied_total", "b1"), 0);
    let mailboxes: f64 = samples(&fresh)
        .iter()
        .filter(|(n, l, _)| n == "imapmirror_mailboxes" && l["batch"] == "b1")
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(
        mailboxes as usize, USERS,
        "every mailbox in one state:\n{fresh}"
    );
    for kind in ["throttled", "connection_lost", "refused", "auth"] {
        assert_eq!(
            value(
                &fresh,
                "imapmirror_errors_total",
                &[("batch", "b1"), ("kind", kind)]
            ),
            Some(0.0),
            "errors of kind {kind} start at zero:\n{fresh}"
        );
    }

    // Killed mid-batch: what the store holds then is where the next serve starts.
    through_serve(&cli, &["batch", "start", "b1"]);
    cli.wait_for("b1", Duration::from_secs(120), |s| {
        s["mailboxes_synced"].as_u64().unwrap_or(0) >= 1
    });
    let mid_pass = scrape(http);
    let copied_mid = counter(&mid_pass, "imapmirror_messages_copied_total", "b1");
    assert!(copied_mid > 0, "a running batch's copies show:\n{mid_pass}");
    signal(&serve.0, "KILL");
    let _ = wait_exit(&mut serve.0, Duration::from_secs(10));
    // The store may hold less than the killed process showed: sled's last unflushed
    // writes die with it, and the journal has the next pass reconcile those groups.
    let at_kill = cli.status("b1");
    let stored_at_kill = at_kill["items_synced"].as_u64().expect("items_synced");
    assert_eq!(
        at_kill["status"], "Syncing",
        "killed mid-batch: {at_kill:#}"
    );

    let http = free_addr();
    let mut serve = Serve(cli.start_serve(&["--http", &http.to_string()]));
    let restarted = scrape(http);
    assert!(
        counter(&restarted, "imapmirror_messages_copied_total", "b1") >= stored_at_kill,
        "after a restart the counter starts from the stored {stored_at_kill}, not zero:\n{restarted}"
    );
    let done = cli.wait_for("b1", Duration::from_secs(240), |s| {
        s["status"] == "Synced" || s["status"] == "Failed"
    });
    assert_eq!(done["status"], "Synced", "{done:#}\n{}", cli.serve_log());
    let finished = scrape(http);
    promtool_accepts(&finished, "serve after a batch");
    let copied = counter(&finished, "imapmirror_messages_copied_total", "b1");
    let bytes = counter(&finished, "imapmirror_bytes_copied_total", "b1");
    let skipped = counter(&finished, "imapmirror_items_skipped_total", "b1");
    assert_eq!(
        copied,
        done["items_synced"].as_u64().expect("items"),
        "{finished}"
    );
    assert_eq!(
        bytes,
        done["bytes_synced"].as_u64().expect("bytes"),
        "{finished}"
    );
    assert_eq!(
        skipped,
        done["items_skipped"].as_u64().expect("skipped"),
        "{finished}"
    );
    assert!(
        skipped > 0,
        "the size limit skipped some messages:\n{finished}"
    );
    // The resumed pass reconciled what the killed one had in flight: every message of the
    // source is copied or skipped, once.
    assert_eq!(copied + skipped, (USERS * MESSAGES) as u64, "{done:#}");
    let report = cli.json(&["batch", "report", "b1", "--format", "json"]);
    assert_eq!(report["batch"]["items_synced"].as_u64(), Some(copied));
    assert_eq!(
        report["skipped"]
            .as_array()
            .expect("skipped items")
            .iter()
            .filter(|i| i["reason"] == "too large")
            .count() as u64,
        skipped
    );
    assert_eq!(
        value(
            &finished,
            "imapmirror_mailboxes",
            &[("batch", "b1"), ("state", "Synced")]
        ),
        Some(USERS as f64)
    );
    // Passes that ran in this process, each timed once.
    let passes = value(
        &finished,
        "imapmirror_pass_duration_seconds_count",
        &[("batch", "b1"), ("kind", "initial")],
    )
    .unwrap_or_else(|| panic!("pass durations recorded:\n{finished}"));
    assert!(passes >= 1.0 && passes <= USERS as f64, "{finished}");
    assert!(
        value(
            &finished,
            "imapmirror_connections_open",
            &[("endpoint", "src"), ("role", "source")]
        )
        .is_some(),
        "{finished}"
    );

    // Stopped and started again with nothing to do: the stored totals from the start.
    signal(&serve.0, "TERM");
    assert_eq!(wait_exit(&mut serve.0, Duration::from_secs(60)), Some(0));
    let http = free_addr();
    let mut serve = Serve(cli.start_serve(&["--http", &http.to_string()]));
    let again = scrape(http);
    promtool_accepts(&again, "restarted serve");
    assert_eq!(
        counter(&again, "imapmirror_messages_copied_total", "b1"),
        copied
    );
    assert_eq!(
        counter(&again, "imapmirror_bytes_copied_total", "b1"),
        bytes
    );
    assert_eq!(
        counter(&again, "imapmirror_items_skipped_total", "b1"),
        skipped
    );
    assert_eq!(
        value(
            &again,
            "imapmirror_pass_duration_seconds_count",
            &[("batch", "b1"), ("kind", "initial")]
        ),
        None,
        "no pass ran in the new process:\n{again}"
    );
    signal(&serve.0, "TERM");
    assert_eq!(wait_exit(&mut serve.0, Duration::from_secs(60)), Some(0));
}

struct ProxyProcess {
    child: Child,
    imap: SocketAddr,
    http: SocketAddr,
    log: std::path::PathBuf,
}

impl ProxyProcess {
    fn start(cli: &Cli) -> ProxyProcess {
        let (imap, http) = (free_addr(), free_addr());
        let log = cli.files.path().join("proxy.log");
        let file = std::fs::File::create(&log).expect("proxy log");
        let mut child = cli
            .command(&[
                "proxy",
                "--listen",
                &imap.to_string(),
                "--allow-plaintext",
                "--http",
                &http.to_string(),
            ])
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
        ProxyProcess {
            child,
            imap,
            http,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Scrapes `addr` until `ready` holds (what a session or a pass records lands a moment
/// after the client sees its end).
fn scrape_until(addr: SocketAddr, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(addr);
        if ready(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never showed:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every metric name an expression of the dashboard names.
fn dashboard_metric_names(dashboard: &serde_json::Value, exprs: &mut Vec<String>) {
    match dashboard {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(e)) => exprs.push(e.clone()),
                    _ => dashboard_metric_names(v, exprs),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                dashboard_metric_names(v, exprs);
            }
        }
        _ => {}
    }
}

fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("imapmirror_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_proxy_counts_logins_and_the_dashboard_uses_only_emitted_metrics() {
    const USERS: usize = 2;
    let (source, target) = servers(USERS, 30, 160);
    let cli = cli_with_batch(&source, &target, USERS);
    cli.ok(&["batch", "start", "b1", "--wait"]);

    // An incremental pass in serve, so that its pass durations and connections show.
    let serve_http = free_addr();
    let mut serve = Serve(cli.start_serve(&["--http", &serve_http.to_string()]));
    through_serve(&cli, &["batch", "sync", "b1"]);
    let serve_text = scrape_until(serve_http, "the incremental passes", |t| {
        value(
            t,
            "imapmirror_pass_duration_seconds_count",
            &[("batch", "b1"), ("kind", "incremental")],
        ) == Some(USERS as f64)
    });
    promtool_accepts(&serve_text, "serve");

    // One login accepted, one refused, through the proxy beside serve.
    let proxy = ProxyProcess::start(&cli);
    let before = scrape(proxy.http);
    promtool_accepts(&before, "fresh proxy");
    assert_eq!(
        value(
            &before,
            "imapmirror_proxy_logins_total",
            &[("outcome", "accepted")]
        ),
        Some(0.0)
    );
    let mut client = ImapClient::connect(proxy.imap, &Security::Plain, Duration::from_secs(10))
        .expect("connect");
    client
        .login(&user(0), "pw")
        .unwrap_or_else(|e| panic!("login through the proxy: {e}\n{}", proxy.log()));
    let open = scrape(proxy.http);
    assert_eq!(
        value(
            &open,
            "imapmirror_proxy_sessions_open",
            &[("backend", "src")]
        ),
        Some(1.0),
        "{open}"
    );
    let inbox = client.examine("INBOX").expect("examine");
    assert!(inbox.exists > 0);
    client.logout().expect("logout");
    let mut wrong = ImapClient::connect(proxy.imap, &Security::Plain, Duration::from_secs(10))
        .expect("connect");
    assert!(wrong.login(&user(1), "not-the-password").is_err());
    let proxy_text = scrape_until(proxy.http, "the end of the session", |t| {
        value(t, "imapmirror_proxy_sessions_open", &[("backend", "src")]) == Some(0.0)
            && value(
                t,
                "imapmirror_proxy_logins_total",
                &[("outcome", "refused")],
            ) == Some(1.0)
    });
    promtool_accepts(&proxy_text, "proxy");
    assert_eq!(
        value(
            &proxy_text,
            "imapmirror_proxy_logins_total",
            &[("outcome", "accepted")]
        ),
        Some(1.0),
        "{proxy_text}"
    );
    assert_eq!(
        value(
            &proxy_text,
            "imapmirror_proxy_routes_total",
            &[("backend", "src"), ("via", "batch_source")]
        ),
        Some(2.0),
        "both logins routed to the source by the batch:\n{proxy_text}"
    );
    assert!(
        value(
            &proxy_text,
            "imapmirror_proxy_relayed_bytes_total",
            &[("direction", "backend_to_client")]
        )
        .is_some_and(|b| b > 0.0),
        "{proxy_text}"
    );

    // The dashboard asks for these names and no other.
    let emitted: BTreeSet<String> = samples(&serve_text)
        .into_iter()
        .chain(samples(&proxy_text))
        .map(|(name, _, _)| name)
        .collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/grafana/imapmirror-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard file"))
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_metric_names(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard's queries: {exprs:?}");
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = names_in(expr);
        assert!(
            !names.is_empty(),
            "`{expr}` asks for none of imapmirror's metrics"
        );
        for name in names {
            assert!(
                emitted.contains(&name),
                "the dashboard's `{expr}` asks for {name}, which neither serve nor the proxy emits; they emit {emitted:?}"
            );
            used.insert(name);
        }
    }
    for wanted in [
        "imapmirror_messages_copied_total",
        "imapmirror_bytes_copied_total",
        "imapmirror_items_skipped_total",
        "imapmirror_errors_total",
        "imapmirror_throttle_waits_total",
        "imapmirror_connections_open",
        "imapmirror_pass_duration_seconds_bucket",
        "imapmirror_mailboxes",
        "imapmirror_proxy_sessions_open",
        "imapmirror_proxy_logins_total",
    ] {
        assert!(used.contains(wanted), "the dashboard shows {wanted}");
    }
    let batch_variable = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .any(|v| v["name"] == "batch");
    assert!(batch_variable, "a templated batch variable");
    drop(proxy);
    signal(&serve.0, "TERM");
    assert_eq!(wait_exit(&mut serve.0, Duration::from_secs(60)), Some(0));
}

#[test]
fn throttling_and_dropped_connections_are_counted_by_kind() {
    use std::sync::atomic::Ordering;
    use support::exchange_like::{ExchangeLike, ExchangeLikeConfig};
    const USERS: usize = 1;
    const MESSAGES: usize = 80;
    let (source, target) = servers(USERS, MESSAGES, 180);
    // The kit's Exchange-like relay in front of the target: 5 % of the commands throttled
    // with a short suggested back-off, a connection dropped every 60 commands.
    let relay = ExchangeLike::start(
        target.plain_addr(),
        ExchangeLikeConfig {
            throttle_per_mille: 50,
            backoff_ms: 150,
            drop_every: Some(60),
            ..ExchangeLikeConfig::polite()
        },
    )
    .expect("relay starts");
    let cli = Cli::new();
    cli.add_dovecot_endpoint("src", &source, "dovecot", &[]);
    let pw = cli.file(
        "relay.pw",
        format!("{}\n", support::MASTER_PASSWORD).as_bytes(),
    );
    let port = relay.addr().port().to_string();
    cli.ok(&[
        "endpoint",
        "add",
        "m365",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--security",
        "none",
        "--admin-user",
        support::MASTER_USER,
        "--admin-password-file",
        &pw,
        "--admin-format",
        "dovecot",
    ]);
    let csv = cli.file("users.csv", &migration_file(&[(&user(0), &user(0), "")]));
    cli.ok(&[
        "batch", "add", "b1", "--csv", &csv, "--source", "src", "--target", "m365",
    ]);
    let http = free_addr();
    let mut serve = Serve(cli.start_serve(&["--http", &http.to_string()]));
    through_serve(&cli, &["batch", "start", "b1"]);
    let done = cli.wait_for("b1", Duration::from_secs(240), |s| {
        s["status"] == "Synced" || s["status"] == "Failed"
    });
    assert_eq!(done["status"], "Synced", "{done:#}\n{}", cli.serve_log());
    let text = scrape(http);
    promtool_accepts(&text, "serve after a throttled batch");
    let stats = relay.stats();
    let (throttled, dropped) = (
        stats.throttled.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed),
    );
    assert!(throttled > 0 && dropped > 0, "the relay interfered");
    let errors = |kind: &str| {
        value(
            &text,
            "imapmirror_errors_total",
            &[("batch", "b1"), ("kind", kind)],
        )
        .unwrap_or_else(|| panic!("errors of kind {kind} in:\n{text}")) as u64
    };
    // Every throttling answer was retried after a wait, and counted once: a throttled
    // APPEND is sent again on its connection (a wait, no error), another command that
    // ends its attempt is an error and a wait.
    assert!(
        errors("throttled") <= throttled,
        "{throttled} throttled by the relay:\n{text}"
    );
    assert!(
        errors("connection_lost") >= 1 && errors("connection_lost") <= dropped,
        "{dropped} connections dropped by the relay:\n{text}"
    );
    assert_eq!(errors("auth"), 0, "{text}");
    let waits = counter(&text, "imapmirror_throttle_waits_total", "b1");
    assert!(
        waits >= 1 && waits >= errors("throttled") && waits <= throttled,
        "at most one wait per throttling answer ({throttled}):\n{text}"
    );
    // Waits of at least the suggested 150 ms each, added up.
    let waited = counter(&text, "imapmirror_throttle_wait_seconds_total", "b1");
    assert!(waited >= waits * 150 / 1000, "{text}");
    // Throttled or not, the counters are the report's.
    assert_eq!(
        counter(&text, "imapmirror_messages_copied_total", "b1"),
        done["items_synced"].as_u64().expect("items")
    );
    signal(&serve.0, "TERM");
    assert_eq!(wait_exit(&mut serve.0, Duration::from_secs(60)), Some(0));
}
