//! Session tests over an in-memory pipe with a scripted server: every wait, literal and
//! routing rule without sockets.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::task::JoinHandle;

use super::*;
use crate::client::{Credentials, FetchEvent, ResponseCode};
use crate::command::{FetchAttr, LiteralBody};
use crate::types::StatusKind;

const SERVER: &str = "scripted.test:143";

/// One scripted exchange: the command must contain `expect`; then `reply` is written.
struct Step {
    expect: &'static str,
    reply: Vec<u8>,
}

fn step(expect: &'static str, reply: impl AsRef<[u8]>) -> Step {
    Step {
        expect,
        reply: reply.as_ref().to_vec(),
    }
}

/// Reads one command (with its literals, answering `+` to synchronizing ones).
async fn read_command(r: &mut BufReader<DuplexStream>) -> Option<Vec<u8>> {
    let mut command = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        command.extend_from_slice(&line);
        let trimmed = line.strip_suffix(b"\r\n").unwrap_or(&line);
        let Some(open) = trimmed.iter().rposition(|&b| b == b'{') else {
            return Some(command);
        };
        if trimmed.last() != Some(&b'}') {
            return Some(command);
        }
        let inner = &trimmed[open + 1..trimmed.len() - 1];
        let (digits, sync) = match inner.strip_suffix(b"+") {
            Some(d) => (d, false),
            None => (inner, true),
        };
        let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
        if sync {
            r.get_mut().write_all(b"+ go ahead\r\n").await.ok()?;
        }
        let mut body = vec![0; n];
        r.read_exact(&mut body).await.ok()?;
        command.extend_from_slice(&body);
    }
}

/// A server that greets, then answers each command with its step's reply, and returns
/// every command it read.
fn serve(greeting: &'static [u8], steps: Vec<Step>) -> (DuplexStream, JoinHandle<Vec<Vec<u8>>>) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let handle = tokio::spawn(async move {
        let mut r = BufReader::new(server);
        let mut seen = Vec::new();
        if r.get_mut().write_all(greeting).await.is_err() {
            return seen;
        }
        for s in steps {
            let Some(cmd) = read_command(&mut r).await else {
                break;
            };
            assert!(
                String::from_utf8_lossy(&cmd).contains(s.expect),
                "expected {:?}, got {:?}",
                s.expect,
                String::from_utf8_lossy(&cmd)
            );
            seen.push(cmd);
            if r.get_mut().write_all(&s.reply).await.is_err() {
                break;
            }
        }
        // Keep the pipe open until the client is done.
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest).await;
        seen
    });
    (client, handle)
}

fn config() -> SessionConfig {
    SessionConfig {
        response_timeout: Duration::from_secs(5),
        decoder: DecoderConfig {
            stream_threshold: 64,
            max_chunk: 32,
            max_buffered: 4096,
            ..DecoderConfig::default()
        },
        read_size: 512,
        ..SessionConfig::default()
    }
}

const GREETING: &[u8] =
    b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS] ready\r\n";

#[tokio::test]
async fn login_select_fetch_streamed_and_logout() {
    let body: Vec<u8> = (0..5000u32)
        .map(|i| b"abcdefghij\r\n"[(i % 12) as usize])
        .collect();
    let mut fetch_reply = format!(
        "* 1 FETCH (UID 7 RFC822.SIZE {} BODY[] {{{}}}\r\n",
        body.len(),
        body.len()
    )
    .into_bytes();
    fetch_reply.extend_from_slice(&body);
    fetch_reply.extend_from_slice(b" FLAGS (\\Seen $Junk))\r\n* 2 FETCH (UID 9 FLAGS () BODY[] {5}\r\nsmall)\r\nA4 OK Fetch done\r\n");
    let (io, server) = serve(
        GREETING,
        vec![
            step(
                "A1 LOGIN",
                "A1 OK [CAPABILITY IMAP4rev1 UIDPLUS CONDSTORE] Logged in\r\n",
            ),
            step(
                "A2 SELECT",
                "* 2 EXISTS\r\n* OK [UIDVALIDITY 42] ok\r\n* OK [UIDNEXT 10] ok\r\nA2 OK [READ-WRITE] done\r\n",
            ),
            step("A3 NOOP", "* 3 EXISTS\r\nA3 OK done\r\n"),
            step("A4 UID FETCH 1:* (UID FLAGS BODY.PEEK[])", fetch_reply),
            step("A5 LOGOUT", "* BYE bye\r\nA5 OK done\r\n"),
        ],
    );
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    s.authenticate(&Credentials::Login {
        username: "u".into(),
        password: "p w".into(),
    })
    .await
    .expect("login");
    assert!(
        s.capabilities().contains("CONDSTORE"),
        "capabilities come from the OK's code"
    );
    let m = s
        .select(MailboxName::Unicode("INBOX"), false)
        .await
        .expect("select");
    assert_eq!(
        (m.exists, m.uid_validity, m.uid_next),
        (2, Some(42), Some(10))
    );
    s.noop().await.expect("noop");
    assert_eq!(s.selected().map(|m| m.exists), Some(3));

    let mut fetch = s
        .uid_fetch(
            "1:*",
            &[FetchAttr::Uid, FetchAttr::Flags, FetchAttr::BodyPeek("")],
            None,
            false,
        )
        .await
        .expect("fetch sent");
    let mut streamed = Vec::new();
    let mut chunks = 0;
    let mut ends = Vec::new();
    while let Some(event) = fetch.next().await.expect("fetch output") {
        match event {
            FetchEvent::StreamStart { meta, len, .. } => {
                assert_eq!((meta.uid, len), (Some(7), body.len() as u64));
            }
            FetchEvent::Chunk { bytes, .. } => {
                chunks += 1;
                streamed.extend_from_slice(&bytes);
            }
            FetchEvent::StreamEnd(m) => ends.push(m),
            FetchEvent::Message(m) => {
                assert_eq!(
                    (m.meta.uid, m.body().map(|b| &b[..])),
                    (Some(9), Some(&b"small"[..]))
                );
            }
        }
    }
    drop(fetch);
    assert_eq!(streamed, body, "streamed body is byte-exact");
    assert!(chunks > 10, "the body came in pieces, not buffered whole");
    assert!(ends[0].meta.flags.is_some());
    assert!(
        s.buffer_high_water_mark() <= 4096 + 512,
        "buffer stayed under the cap: {}",
        s.buffer_high_water_mark()
    );
    s.logout().await.expect("logout");
    let seen = server.await.expect("server task");
    assert_eq!(seen[0], b"A1 LOGIN u \"p w\"\r\n");
}

#[tokio::test]
async fn pipelined_appends_match_completions_out_of_order() {
    let greeting: &[u8] = b"* PREAUTH [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] hi\r\n";
    let mut steps = Vec::new();
    for _ in 0..9 {
        steps.push(step("APPEND", ""));
    }
    // The tenth APPEND triggers every answer, in reverse order, with untagged noise.
    let mut replies = Vec::new();
    for n in (1..=10u32).rev() {
        replies.extend_from_slice(
            format!("* {n} EXISTS\r\nA{n} OK [APPENDUID 5 {}] done\r\n", 100 + n).as_bytes(),
        );
    }
    steps.push(step("A10 APPEND", replies));
    let (io, server) = serve(greeting, steps);
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    let mut tags = Vec::new();
    for n in 0..10u8 {
        let body = Bytes::from(vec![b'a' + n; 10 + usize::from(n)]);
        let msg = AppendMessage {
            flags: &[Flag::Seen],
            internal_date: None,
            body: LiteralBody::Bytes(body),
        };
        tags.push(
            s.send_append(MailboxName::Unicode("INBOX"), &[msg])
                .await
                .expect("sent"),
        );
    }
    assert_eq!(s.state().pending_count(), 10);
    let mut uid_of = std::collections::HashMap::new();
    for _ in 0..10 {
        let c = s.next_completion().await.expect("completion");
        uid_of.insert(c.tag, c.append_uid().expect("APPENDUID").1[0]);
    }
    for (k, tag) in tags.iter().enumerate() {
        assert_eq!(
            uid_of[tag],
            101 + k as u32,
            "tag {tag} got the UID of its own message"
        );
    }
    assert!(
        s.next_completion().await.is_err(),
        "nothing pending is misuse, not a hang"
    );
    drop(s);
    let seen = server.await.expect("server");
    assert!(
        seen[3].ends_with(b"{13+}\r\nddddddddddddd\r\n"),
        "{:?}",
        String::from_utf8_lossy(&seen[3])
    );
}

#[tokio::test]
async fn refused_synchronizing_literal_leaves_the_session_usable() {
    let (client, server_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let mut r = BufReader::new(server_io);
        r.get_mut()
            .write_all(b"* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n")
            .await
            .expect("greet");
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).await.expect("append line");
        assert!(
            line.ends_with(b"{3}\r\n"),
            "{:?}",
            String::from_utf8_lossy(&line)
        );
        r.get_mut()
            .write_all(b"A1 NO [TRYCREATE] Mailbox doesn't exist: Nope\r\n")
            .await
            .expect("no");
        line.clear();
        r.read_until(b'\n', &mut line).await.expect("noop line");
        assert_eq!(line, b"A2 NOOP\r\n", "the refused literal was not sent");
        r.get_mut().write_all(b"A2 OK done\r\n").await.expect("ok");
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest).await;
    });
    let mut s = Session::start(client, SERVER, config())
        .await
        .expect("greeting");
    let msg = AppendMessage {
        flags: &[],
        internal_date: None,
        body: LiteralBody::Bytes(Bytes::from_static(b"abc")),
    };
    let err = s
        .append(MailboxName::Unicode("Nope"), &[msg])
        .await
        .unwrap_err();
    match &err {
        Error::Refused {
            status: StatusKind::No,
            command,
            ..
        } => {
            assert_eq!(command, "APPEND \"Nope\"");
            assert_eq!(err.refusal_code(), Some(&ResponseCode::TryCreate));
        }
        other => panic!("{other}"),
    }
    s.noop().await.expect("session still usable");
    drop(s);
    server.await.expect("server");
}

#[tokio::test]
async fn silence_is_a_timeout_naming_the_server() {
    let (io, _server) = serve(GREETING, vec![step("A1 NOOP", "")]);
    let cfg = SessionConfig {
        response_timeout: Duration::from_millis(200),
        ..config()
    };
    let mut s = Session::start(io, SERVER, cfg).await.expect("greeting");
    let started = std::time::Instant::now();
    let err = s.noop().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.to_string().contains(SERVER));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(s.noop().await.is_err(), "a timed-out session is not reused");
}

#[tokio::test]
async fn bye_and_dropped_connection_are_typed_errors() {
    let (io, _server) = serve(
        GREETING,
        vec![step("A1 NOOP", "* BYE Server shutting down\r\n")],
    );
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    let err = s.noop().await.unwrap_err();
    assert!(matches!(err, Error::Bye { .. }), "{err}");

    let (client, server_io) = tokio::io::duplex(1024);
    let server = tokio::spawn(async move {
        let mut server_io = server_io;
        server_io.write_all(GREETING).await.expect("greet");
        let mut buf = [0u8; 64];
        let _ = server_io.read(&mut buf).await;
        // Hang up mid-response.
        server_io
            .write_all(b"* 1 FETCH (UID 1 BODY[] {100}\r\nonly a part")
            .await
            .expect("partial");
    });
    let mut s = Session::start(client, SERVER, config())
        .await
        .expect("greeting");
    let err = s.noop().await.unwrap_err();
    assert!(matches!(err, Error::ConnectionClosed { .. }), "{err}");
    assert!(err.is_peer_fault());
    server.await.expect("server");
}

#[tokio::test]
async fn too_many_connections_and_throttling_are_backoff() {
    let (io, _s) = serve(
        b"* BYE Too many simultaneous connections. (Failure)\r\n",
        vec![],
    );
    let err = Session::start(io, SERVER, config()).await.unwrap_err();
    assert!(matches!(err, Error::Backoff { .. }), "{err}");

    let (io, _s) = serve(
        GREETING,
        vec![step(
            "A1 SELECT",
            "A1 NO Request is throttled. Suggested Backoff Time: 300000 milliseconds\r\n",
        )],
    );
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    // Five minutes is longer than a connection waits: the caller's to schedule.
    match s.select(MailboxName::Unicode("INBOX"), false).await {
        Err(Error::Backoff { delay, .. }) => assert_eq!(delay, Duration::from_secs(300)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn throttled_command_is_sent_again_after_the_suggested_back_off() {
    let throttled = "NO Request is throttled. Suggested Backoff Time: 40 milliseconds\r\n";
    let (io, server) = serve(
        GREETING,
        vec![
            step("A1 CREATE", format!("A1 {throttled}")),
            step("A2 CREATE", format!("A2 {throttled}")),
            step("A3 CREATE", "A3 OK CREATE completed.\r\n"),
        ],
    );
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    let started = std::time::Instant::now();
    s.create(MailboxName::Unicode("Sent Items"), &[])
        .await
        .expect("created on the third try");
    assert!(
        started.elapsed() >= Duration::from_millis(80),
        "waited as asked"
    );
    assert_eq!(s.throttle_waited(), (2, Duration::from_millis(80)));
    drop(s);
    let seen = server.await.expect("server");
    assert_eq!(seen.len(), 3, "the same command, three times");
}

#[tokio::test]
async fn xoauth2_failure_challenge_is_answered_and_reported() {
    let (io, server) = serve(
        GREETING,
        vec![
            step("A1 AUTHENTICATE XOAUTH2 ", "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
            step(
                "\r\n",
                "A1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n",
            ),
        ],
    );
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    let creds = Credentials::XOAuth2 {
        user: "u@example.test".into(),
        access_token: "tok".into(),
    };
    let err = s.authenticate(&creds).await.unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    assert!(
        !err.to_string().contains("tok"),
        "no secret in the message: {err}"
    );
    drop(s);
    let seen = server.await.expect("server");
    assert_eq!(
        seen[1], b"\r\n",
        "XOAUTH2's error challenge gets an empty response"
    );
}

#[tokio::test]
async fn plain_with_authzid_uses_sasl_ir() {
    let (io, server) = serve(
        GREETING,
        vec![step(
            "A1 AUTHENTICATE PLAIN ",
            "A1 OK [CAPABILITY IMAP4rev1 MOVE] ok\r\n",
        )],
    );
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    let creds = Credentials::Plain {
        authzid: "user".into(),
        authcid: "admin".into(),
        password: "pw".into(),
    };
    s.authenticate(&creds).await.expect("login");
    assert_eq!(s.state().phase(), crate::client::Phase::Authenticated);
    drop(s);
    let seen = server.await.expect("server");
    let expected = format!(
        "A1 AUTHENTICATE PLAIN {}\r\n",
        crate::sasl::base64_encode(b"user\0admin\0pw")
    );
    assert_eq!(seen[0], expected.as_bytes());
}

#[tokio::test]
async fn missing_auth_mechanism_is_refused_before_sending() {
    let (io, _s) = serve(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n", vec![]);
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    let creds = Credentials::OAuthBearer {
        user: "u".into(),
        access_token: "t".into(),
    };
    let err = s.authenticate(&creds).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::MissingCapability {
                capability: "AUTH=OAUTHBEARER",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn streamed_append_upload_writes_exact_bytes() {
    let greeting: &[u8] = b"* PREAUTH [CAPABILITY IMAP4rev1 UIDPLUS] hi\r\n";
    let (io, server) = serve(
        greeting,
        vec![step("A1 APPEND", "A1 OK [APPENDUID 9 3:4] done\r\n")],
    );
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    let first = b"From: a\r\n\r\nfirst body\r\n";
    let second = b"From: b\r\n\r\nsecond\r\n";
    let msgs = [
        AppendMessage {
            flags: &[Flag::Seen],
            internal_date: None,
            body: LiteralBody::Streamed {
                len: first.len() as u64,
            },
        },
        AppendMessage {
            flags: &[],
            internal_date: None,
            body: LiteralBody::Streamed {
                len: second.len() as u64,
            },
        },
    ];
    let mut up = s
        .start_append(MailboxName::Unicode("INBOX"), &msgs)
        .await
        .expect("started");
    assert_eq!(up.body_remaining(), first.len() as u64);
    assert!(
        up.write_chunk(Bytes::from(vec![0; 1000])).await.is_err(),
        "over-long chunk refused"
    );
    for piece in first.chunks(5).chain(second.chunks(7)) {
        up.write_chunk(Bytes::copy_from_slice(piece))
            .await
            .expect("chunk");
    }
    let tag = up.finish().await.expect("finished");
    let c = s.wait(tag).await.expect("completion");
    assert_eq!(c.append_uid(), Some((9, vec![3, 4])));
    drop(s);
    let seen = server.await.expect("server");
    let mut expected = format!("A1 APPEND INBOX (\\Seen) {{{}}}\r\n", first.len()).into_bytes();
    expected.extend_from_slice(first);
    expected.extend_from_slice(format!(" {{{}}}\r\n", second.len()).as_bytes());
    expected.extend_from_slice(second);
    expected.extend_from_slice(b"\r\n");
    assert_eq!(
        String::from_utf8_lossy(&seen[0]),
        String::from_utf8_lossy(&expected)
    );
}

#[tokio::test]
async fn abandoned_upload_poisons_the_session() {
    let greeting: &[u8] = b"* PREAUTH [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n";
    let (io, _server) = serve(greeting, vec![]);
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    let msgs = [AppendMessage {
        flags: &[],
        internal_date: None,
        body: LiteralBody::Streamed { len: 10 },
    }];
    let mut up = s
        .start_append(MailboxName::Unicode("INBOX"), &msgs)
        .await
        .expect("started");
    up.write_chunk(Bytes::from_static(b"12345"))
        .await
        .expect("chunk");
    drop(up);
    assert!(matches!(s.noop().await, Err(Error::Misuse(_))));
}

#[tokio::test]
async fn starttls_never_falls_back_and_rejects_injected_bytes() {
    let (io, _s) = serve(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n", vec![]);
    let s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    let tls = crate::client::TlsSettings::new(&crate::client::TlsOptions {
        system_roots: false,
        ..Default::default()
    })
    .expect("tls settings");
    let err = s.starttls(&tls, "scripted.test").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::MissingCapability {
                capability: "STARTTLS",
                ..
            }
        ),
        "{err}"
    );

    let (io, _s) = serve(
        b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n",
        vec![step(
            "A1 STARTTLS",
            "A1 OK Begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n",
        )],
    );
    let s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    let err = s.starttls(&tls, "scripted.test").await.unwrap_err();
    assert!(matches!(err, Error::PeerViolation { .. }), "{err}");
}

#[tokio::test]
async fn dropped_fetch_stream_output_is_drained_by_the_next_command() {
    let (io, _s) = serve(
        b"* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n",
        vec![
            step("A1 EXAMINE", "* 2 EXISTS\r\nA1 OK [READ-ONLY] done\r\n"),
            step(
                "A2 UID FETCH",
                "* 1 FETCH (UID 1 BODY[] {3}\r\nabc)\r\n* 2 FETCH (UID 2 BODY[] {3}\r\ndef)\r\nA2 OK done\r\n",
            ),
            step("A3 NOOP", "A3 OK done\r\n"),
        ],
    );
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    let m = s
        .examine(MailboxName::Unicode("INBOX"), false)
        .await
        .expect("examine");
    assert!(m.read_only);
    let mut fetch = s
        .uid_fetch("1:*", &[FetchAttr::BodyPeek("")], None, false)
        .await
        .expect("fetch");
    let first = fetch
        .next_message()
        .await
        .expect("first")
        .expect("a message");
    assert_eq!(first.body().map(|b| &b[..]), Some(&b"abc"[..]));
    drop(fetch);
    s.noop()
        .await
        .expect("the rest of the FETCH is discarded, NOOP completes");
}

#[tokio::test]
async fn uid_expunge_lets_pipelined_commands_finish_and_returns_what_went() {
    let (io, server) = serve(
        b"* PREAUTH [CAPABILITY IMAP4rev1 UIDPLUS LITERAL+] hi\r\n",
        vec![
            step(
                "A1 SELECT",
                "* 5 EXISTS\r\n* OK [UIDVALIDITY 3] ok\r\nA1 OK [READ-WRITE] done\r\n",
            ),
            step("A2 APPEND", "* 6 EXISTS\r\nA2 OK [APPENDUID 3 9] done\r\n"),
            step(
                "A3 UID EXPUNGE 2:3,5",
                "* 2 EXPUNGE\r\n* 2 EXPUNGE\r\n* 3 EXPUNGE\r\nA3 OK done\r\n",
            ),
        ],
    );
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    s.select(MailboxName::Unicode("INBOX"), false)
        .await
        .expect("select");
    let append = s
        .send_append(
            MailboxName::Unicode("INBOX"),
            &[AppendMessage {
                flags: &[],
                internal_date: None,
                body: LiteralBody::Bytes(Bytes::from_static(b"x\r\n")),
            }],
        )
        .await
        .expect("append sent");
    let gone = s.uid_expunge("2:3,5").await.expect("uid expunge");
    assert_eq!(gone.expunged, vec![2, 2, 3]);
    assert_eq!(gone.count(), 3);
    assert_eq!(s.selected().map(|m| m.exists), Some(3));
    // The APPEND's completion, read while UID EXPUNGE waited its turn, is still there.
    let c = s.wait(append).await.expect("append completion kept");
    assert_eq!(c.append_uid(), Some((3, vec![9])));
    drop(s);
    let seen = server.await.expect("server task");
    assert_eq!(seen.len(), 3);
}

#[tokio::test]
async fn uid_expunge_without_uidplus_sends_nothing_and_expunge_reports_all() {
    let (io, server) = serve(
        b"* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n",
        vec![
            step(
                "A1 SELECT",
                "* 3 EXISTS\r\n* OK [UIDVALIDITY 3] ok\r\nA1 OK [READ-WRITE] done\r\n",
            ),
            step("A2 EXPUNGE", "* 1 EXPUNGE\r\nA2 OK done\r\n"),
        ],
    );
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    s.select(MailboxName::Unicode("INBOX"), false)
        .await
        .expect("select");
    let err = s.uid_expunge("1").await.expect_err("no UIDPLUS");
    assert!(
        matches!(
            err,
            Error::MissingCapability {
                capability: "UIDPLUS",
                ..
            }
        ),
        "{err}"
    );
    let gone = s.expunge().await.expect("plain expunge");
    assert_eq!(gone.expunged, vec![1]);
    drop(s);
    let seen = server.await.expect("server task");
    assert_eq!(seen.len(), 2, "UID EXPUNGE never went out");
}

#[tokio::test]
async fn a_streamed_partial_body_keeps_its_origin_when_gathered() {
    let prefix: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    let mut reply =
        b"* 1 FETCH (UID 4 RFC822.SIZE 5000 BODY[HEADER.FIELDS (SUBJECT)] {14}\r\nSubject: x\r\n\r\n BODY[]<0> {100}\r\n"
            .to_vec();
    reply.extend_from_slice(&prefix);
    reply.extend_from_slice(b")\r\nA2 OK done\r\n");
    let (io, _server) = serve(
        b"* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n",
        vec![
            step("A1 EXAMINE", "* 1 EXISTS\r\nA1 OK [READ-ONLY] done\r\n"),
            step(
                "A2 UID FETCH 4 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[]<0.100>)",
                reply,
            ),
        ],
    );
    let mut s = Session::start(io, SERVER, config())
        .await
        .expect("greeting");
    s.examine(MailboxName::Unicode("INBOX"), false)
        .await
        .expect("examine");
    let attrs = [
        FetchAttr::Uid,
        FetchAttr::Rfc822Size,
        FetchAttr::BodyPeek("HEADER.FIELDS (SUBJECT)"),
        FetchAttr::BodyPeekPartial {
            section: "",
            offset: 0,
            len: 100,
        },
    ];
    let mut fetch = s.uid_fetch("4", &attrs, None, false).await.expect("fetch");
    let m = fetch
        .next_message()
        .await
        .expect("output")
        .expect("a message");
    assert_eq!(m.meta.size, Some(5000));
    assert_eq!(m.section("", Some(0)).map(|b| &b[..]), Some(&prefix[..]));
    assert!(m.body().is_none(), "100 of 5000 bytes are not the message");
    assert_eq!(
        m.header_fields().map(|b| &b[..]),
        Some(&b"Subject: x\r\n\r\n"[..])
    );
    assert!(fetch.next_message().await.expect("end").is_none());
}

#[tokio::test]
async fn the_last_words_of_a_server_that_hung_up_are_read_after_a_failed_write() {
    // Exchange Online drops a connection so: the APPEND in flight is answered "not
    // connected", then BYE, then the socket closes; the next write fails.
    let greeting: &[u8] = b"* PREAUTH [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] hi\r\n";
    let (client, server_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let mut server_io = BufReader::new(server_io);
        server_io
            .get_mut()
            .write_all(greeting)
            .await
            .expect("greet");
        let _ = read_command(&mut server_io).await;
        server_io
            .get_mut()
            .write_all(
                b"A1 BAD User is authenticated but not connected.\r\n* BYE Connection closed. 14\r\n",
            )
            .await
            .expect("goodbye");
    });
    let mut s = Session::start(client, SERVER, config())
        .await
        .expect("greeting");
    let msg = |body: &'static [u8]| AppendMessage {
        flags: &[],
        internal_date: None,
        body: LiteralBody::Bytes(Bytes::from_static(body)),
    };
    s.send_append(
        MailboxName::Unicode("INBOX"),
        &[msg(b"a: b\r\n\r\none\r\n")],
    )
    .await
    .expect("sent");
    s.flush().await.expect("flushed");
    server.await.expect("server");
    let second = s
        .send_append(
            MailboxName::Unicode("INBOX"),
            &[msg(b"a: b\r\n\r\ntwo\r\n")],
        )
        .await;
    let failed = match second {
        Err(e) => Some(e),
        Ok(_) => s.flush().await.err(),
    };
    assert!(matches!(failed, Some(Error::Network { .. })), "{failed:?}");
    // Without reading, the first APPEND's fate is unknown.
    assert_eq!(
        s.state().unanswered_commands(),
        crate::client::UnansweredCommands::Unknown
    );
    s.read_last_words(Duration::from_millis(200)).await;
    // The server answered it "not connected" and closed: nothing can still be stored.
    assert!(s.state().closed_by_server());
    assert_eq!(
        s.state().unanswered_commands(),
        crate::client::UnansweredCommands::None
    );
    assert!(s.noop().await.is_err(), "the session stays unusable");
}
