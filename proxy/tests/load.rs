//! 500 concurrent sessions through the proxy, each appending a message of its own and
//! fetching it back byte for byte, all logged in at the same time. Bounded in time.
//!
//! Run with `cargo test -p imapmirror-proxy --test load` (needs Debian's dovecot-imapd).

#![forbid(unsafe_code)]

mod proxy_harness;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use proxy_harness::{Harness, HarnessOptions};
use support::Credentials;

const SESSIONS: usize = 500;
const USERS: usize = 20;

/// Enough Dovecot processes and connections for 500 sessions from one address.
const DOVECOT_LIMITS: &str = "default_process_limit = 1200
default_client_limit = 5000
service imap-login {
  service_count = 0
  client_limit = 1000
  process_min_avail = 2
}
service imap {
  process_limit = 1200
}";

fn message(k: usize) -> Vec<u8> {
    let mut m = format!(
        "From: load@example.test\r\nSubject: session {k}\r\nMessage-ID: <load-{k}@example.test>\r\n\r\n"
    )
    .into_bytes();
    for line in 0..(20 + k % 50) {
        m.extend_from_slice(format!("session {k} line {line}: the quick brown fox\r\n").as_bytes());
    }
    m
}

#[test]
fn five_hundred_concurrent_sessions_fetch_and_append_correctly() {
    let users: Vec<(String, String)> = (0..USERS)
        .map(|u| (format!("load{u}@example.test"), format!("pw-{u}")))
        .collect();
    let h = Arc::new(Harness::start(HarnessOptions {
        users,
        dovecot_extra: vec![DOVECOT_LIMITS.to_owned()],
        configure: Box::new(|c| c.pool.warm_connections = 4),
        ..HarnessOptions::default()
    }));
    let started = Instant::now();
    let logged_in = Arc::new(Barrier::new(SESSIONS));
    let worked = Arc::new(Barrier::new(SESSIONS));
    let threads: Vec<_> = (0..SESSIONS)
        .map(|k| {
            let h = Arc::clone(&h);
            let (logged_in, worked) = (Arc::clone(&logged_in), Arc::clone(&worked));
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || -> Result<(), String> {
                    let (user, pw) = &h.users[k % USERS];
                    let endpoint = h.proxy(k % 2 == 0, Credentials::login(user, pw));
                    (|| {
                        let mut c = endpoint
                            .connect()
                            .map_err(|e| format!("session {k}: {e}"))?;
                        logged_in.wait();
                        c.select("INBOX").map_err(|e| format!("session {k}: {e}"))?;
                        let body = message(k);
                        let uid = c
                            .append("INBOX", &[], None, &body)
                            .map_err(|e| format!("session {k}: {e}"))?
                            .ok_or_else(|| format!("session {k}: no APPENDUID"))?;
                        let mut fetched = Vec::new();
                        c.uid_fetch_each(&uid.uid.to_string(), "(UID BODY.PEEK[])", |m| {
                            fetched.push(m.body.unwrap_or_default());
                            Ok(())
                        })
                        .map_err(|e| format!("session {k}: {e}"))?;
                        if fetched != [body] {
                            return Err(format!(
                                "session {k}: fetched bytes differ from the appended message"
                            ));
                        }
                        worked.wait();
                        c.logout().map_err(|e| format!("session {k}: {e}"))
                    })()
                })
                .expect("spawn a session thread")
        })
        .collect();
    let mut failures = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a session thread panicked".to_owned()),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} sessions failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    eprintln!("{SESSIONS} concurrent proxied sessions in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(120), "too slow: {elapsed:?}");
    // Every message arrived once on the source, where the batch routes.
    let total: u32 = (0..USERS)
        .map(|u| {
            let mut c = h
                .source
                .user_endpoint(&h.users[u].0)
                .and_then(|e| e.connect())
                .unwrap_or_else(|e| panic!("{e}"));
            c.select("INBOX").unwrap_or_else(|e| panic!("{e}")).exists
        })
        .sum();
    assert_eq!(total as usize, SESSIONS);
}
