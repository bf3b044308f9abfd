//! Through the proxy vs direct to Dovecot, in the same run: bulk FETCH throughput,
//! pipelined APPEND throughput, NOOP round-trip latency, and the memory an idle relayed
//! session costs the proxy.
//!
//! `cargo bench -p imapmirror-proxy --bench proxy_vs_direct` (needs Debian's dovecot-imapd).
//! Plain TCP on both legs, so the ratio measures the proxy and not TLS. Dovecot runs with
//! `mail_fsync = never` so that its disk does not hide the proxy's cost.

#![forbid(unsafe_code)]

#[path = "../tests/proxy_harness/mod.rs"]
mod proxy_harness;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imapmirror_proxy::{FileRoutes, RouteSource};
use proxy_harness::{Harness, HarnessOptions};
use support::{FolderPath, InternalDate, SeedMessage};

const USER: &str = "bench@example.test";
const PW: &str = "bench-pw";
const FETCH_MESSAGES: usize = 2000;
const MESSAGE_SIZE: usize = 32 * 1024;
const APPENDS: usize = 400;
const NOOPS: usize = 3000;
const IDLE_SESSIONS: usize = 400;

/// A blocking raw client that reads whole responses by scanning for the tagged line.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut r = Raw {
            s,
            buf: Vec::with_capacity(1 << 20),
        };
        r.read_until(b"\r\n");
        r
    }

    /// Reads until `needle` appears at the end of what was read; returns bytes read.
    fn read_until(&mut self, needle: &[u8]) -> usize {
        // Responses start at a line start, so a tagged line first in the buffer matches too.
        self.buf.clear();
        self.buf.extend_from_slice(b"\r\n");
        let mut total = 0;
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            let n = self.s.read(&mut chunk).expect("read");
            assert!(n > 0, "connection closed");
            total += n;
            // Keep only a tail: enough to find the needle across reads.
            self.buf.extend_from_slice(&chunk[..n]);
            if self.buf.len() > 4096 {
                let cut = self.buf.len() - 4096;
                self.buf.drain(..cut);
            }
            if self.buf.windows(needle.len()).any(|w| w == needle) {
                return total;
            }
        }
    }

    fn cmd(&mut self, tag: &str, line: &str) -> usize {
        self.s
            .write_all(format!("{tag} {line}\r\n").as_bytes())
            .expect("write");
        self.read_until(format!("\r\n{tag} OK").as_bytes())
    }
}

fn seed_inbox(h: &Harness) {
    let date = InternalDate::new(1_700_000_000, 0);
    let messages = (0..FETCH_MESSAGES).map(|k| {
        let mut bytes = format!("Subject: bench {k}\r\nMessage-ID: <b{k}@x>\r\n\r\n").into_bytes();
        while bytes.len() < MESSAGE_SIZE {
            bytes.extend_from_slice(
                format!("line {k} {} lorem ipsum dolor sit amet\r\n", bytes.len()).as_bytes(),
            );
        }
        SeedMessage {
            folder: FolderPath::inbox(),
            bytes,
            flags: vec![],
            internal_date: date,
        }
    });
    h.source
        .seed(USER, &[], messages)
        .unwrap_or_else(|e| panic!("{e}"));
}

fn login(addr: SocketAddr) -> Raw {
    let mut r = Raw::connect(addr);
    r.cmd("l", &format!("LOGIN {USER} {PW}"));
    r
}

fn fetch_mb_s(addr: SocketAddr) -> f64 {
    let mut r = login(addr);
    r.cmd("s", "SELECT INBOX");
    let t = Instant::now();
    let bytes = r.cmd("f", "UID FETCH 1:* BODY.PEEK[]");
    bytes as f64 / t.elapsed().as_secs_f64() / 1e6
}

fn append_msgs_s(addr: SocketAddr, round: usize) -> f64 {
    let mut r = login(addr);
    let folder = format!("Append{round}");
    r.cmd("c", &format!("CREATE {folder}"));
    let body = vec![b'x'; 4000];
    let mut out = Vec::new();
    for k in 0..APPENDS {
        out.extend_from_slice(
            format!("a{k} APPEND {folder} {{{}+}}\r\n", body.len() + 2).as_bytes(),
        );
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\r\n\r\n");
    }
    let t = Instant::now();
    r.s.write_all(&out).expect("write");
    r.read_until(format!("a{} OK", APPENDS - 1).as_bytes());
    APPENDS as f64 / t.elapsed().as_secs_f64()
}

fn noop_us(addr: SocketAddr) -> (f64, f64) {
    let mut r = login(addr);
    let mut samples = Vec::with_capacity(NOOPS);
    for k in 0..NOOPS {
        let t = Instant::now();
        r.cmd(&format!("n{k}"), "NOOP");
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    (samples[NOOPS / 2], samples[NOOPS * 99 / 100])
}

/// A logged-in session that holds no client-side heap, so the RSS delta is the proxy's.
fn idle_login(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(format!("l LOGIN {USER} {PW}\r\n").as_bytes())
        .expect("write");
    let mut buf = [0u8; 4096];
    let mut tail = [0u8; 8];
    loop {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed during login");
        for &b in &buf[..n] {
            tail.rotate_left(1);
            tail[7] = b;
            if &tail[2..] == b"\r\nl OK" {
                return s;
            }
        }
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let routes = dir.path().join("routes");
    std::fs::write(&routes, "").expect("write");
    let file = Arc::new(FileRoutes::open(&routes).expect("routes"));
    let h = Harness::start(HarnessOptions {
        users: vec![(USER.into(), PW.into())],
        dovecot_extra: vec![
            "mail_fsync = never".into(),
            "default_process_limit = 1200\ndefault_client_limit = 5000\nservice imap-login {\n  service_count = 0\n  client_limit = 1000\n}\nservice imap {\n  process_limit = 1200\n}".into(),
        ],
        extra_sources: vec![file as Arc<dyn RouteSource>],
        configure: Box::new(|c| c.allow_plaintext = true),
        worker_threads: 2,
        ..HarnessOptions::default()
    });
    std::fs::write(
        &routes,
        format!("* 127.0.0.1:{} none\n", h.source.plain_addr().port()),
    )
    .expect("write");
    std::thread::sleep(Duration::from_millis(600));
    seed_inbox(&h);
    let direct = h.source.plain_addr();
    let proxy = h.plain_addr;

    // Rounds alternate direct and proxy so that drift (caches, other load) hits both.
    const ROUNDS: usize = 5;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut fd, mut fp, mut ad, mut ap) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        fd.push(fetch_mb_s(direct));
        fp.push(fetch_mb_s(proxy));
        ad.push(append_msgs_s(direct, 2 * round));
        ap.push(append_msgs_s(proxy, 2 * round + 1));
    }
    let fetch = (median(fd), median(fp));
    let append = (median(ad), median(ap));
    let noop = (noop_us(direct), noop_us(proxy));

    let before = rss_kib();
    let idle: Vec<TcpStream> = (0..IDLE_SESSIONS).map(|_| idle_login(proxy)).collect();
    // Past the relay's quiet period, so idle sessions have given their buffers back.
    std::thread::sleep(Duration::from_millis(1500));
    let after = rss_kib();
    let per_session = (after.saturating_sub(before)) as f64 / IDLE_SESSIONS as f64;
    drop(idle);

    println!("proxy vs direct to Dovecot 2.3 (loopback, plain TCP both legs, mail_fsync=never)");
    println!(
        "bulk UID FETCH {FETCH_MESSAGES} x {} KiB (median of {ROUNDS}):  direct {:8.1} MB/s   proxy {:8.1} MB/s   ratio {:.2}",
        MESSAGE_SIZE / 1024,
        fetch.0,
        fetch.1,
        fetch.1 / fetch.0
    );
    println!(
        "pipelined APPEND {APPENDS} x 4 KB (median of {ROUNDS}):     direct {:8.0} msg/s  proxy {:8.0} msg/s  ratio {:.2}",
        append.0,
        append.1,
        append.1 / append.0
    );
    println!(
        "NOOP round trip (median):        direct {:8.1} us     proxy {:8.1} us     added {:.1} us",
        noop.0.0,
        noop.1.0,
        noop.1.0 - noop.0.0
    );
    println!(
        "NOOP round trip (p99):           direct {:8.1} us     proxy {:8.1} us",
        noop.0.1, noop.1.1
    );
    println!(
        "memory per idle relayed session: {per_session:.1} KiB (RSS delta over {IDLE_SESSIONS} sessions)"
    );
}
