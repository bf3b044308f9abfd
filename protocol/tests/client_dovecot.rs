//! The client session against real Dovecot instances started by the test kit: security
//! modes, login forms, LIST/STATUS/SELECT, byte-exact UID FETCH of a seeded corpus,
//! pipelined APPEND, MULTIAPPEND, and a 40 MB message under a small buffer cap.
#![forbid(unsafe_code)]

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use imapmirror_protocol::client::{
    ConnectOptions, Credentials, FetchEvent, ImapStream, Security, Session, SessionConfig,
    TlsOptions, TlsSettings, connect,
};
use imapmirror_protocol::{
    AppendMessage, DecoderConfig, Error, FetchAttr, Flag, InternalDate, ListCommand, LiteralBody,
    MailboxAttr, MailboxName, StatusAttr, StoreMode,
};
use support::{
    Corpus, CorpusSpec, DEFAULT_PASSWORD, DEFAULT_USER, Dovecot, FolderPath, Layout,
    MASTER_PASSWORD, MASTER_USER, SeedFolder, SeedMessage,
};

fn tls_with_ca(dovecot: &Dovecot) -> TlsSettings {
    let options = TlsOptions {
        webpki_roots: false,
        system_roots: false,
        ca_file: Some(dovecot.ca_file().to_path_buf()),
        insecure_skip_verify: false,
        pinned_certificate: None,
    };
    TlsSettings::new(&options).expect("the kit's CA file loads")
}

fn options(
    dovecot: &Dovecot,
    security: Security,
    tls: TlsSettings,
    session: SessionConfig,
) -> ConnectOptions {
    let addr = match security {
        Security::Implicit => dovecot.tls_addr(),
        _ => dovecot.plain_addr(),
    };
    ConnectOptions {
        host: addr.ip().to_string(),
        port: addr.port(),
        security,
        tls,
        connect_timeout: Duration::from_secs(10),
        session,
    }
}

async fn user_session(dovecot: &Dovecot, session: SessionConfig) -> Session<ImapStream> {
    let opts = options(dovecot, Security::None, tls_with_ca(dovecot), session);
    let mut s = connect(&opts).await.expect("connect");
    s.authenticate(&Credentials::Login {
        username: DEFAULT_USER.into(),
        password: DEFAULT_PASSWORD.into(),
    })
    .await
    .expect("login");
    s
}

fn login_forms() -> Vec<Credentials> {
    vec![
        Credentials::Login {
            username: DEFAULT_USER.into(),
            password: DEFAULT_PASSWORD.into(),
        },
        Credentials::Login {
            username: format!("{DEFAULT_USER}*{MASTER_USER}"),
            password: MASTER_PASSWORD.into(),
        },
        Credentials::Plain {
            authzid: DEFAULT_USER.into(),
            authcid: MASTER_USER.into(),
            password: MASTER_PASSWORD.into(),
        },
        Credentials::SaslLogin {
            username: DEFAULT_USER.into(),
            password: DEFAULT_PASSWORD.into(),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_modes_login_forms_and_capabilities() {
    let dovecot = Dovecot::start(Layout::MaildirPlusPlus).expect("dovecot starts");
    for security in [Security::None, Security::StartTls, Security::Implicit] {
        for credentials in login_forms() {
            let opts = options(
                &dovecot,
                security,
                tls_with_ca(&dovecot),
                SessionConfig::default(),
            );
            let mut s = connect(&opts)
                .await
                .unwrap_or_else(|e| panic!("{security:?}: {e}"));
            assert!(s.capabilities().contains("IMAP4rev1"), "{security:?}");
            if security == Security::StartTls {
                assert!(
                    !s.capabilities().contains("STARTTLS"),
                    "capabilities were refreshed over TLS"
                );
            }
            s.authenticate(&credentials)
                .await
                .unwrap_or_else(|e| panic!("{security:?} {credentials:?}: {e}"));
            // Dovecot announces more after login (e.g. CONDSTORE, UIDPLUS).
            assert!(
                s.capabilities().contains("UIDPLUS"),
                "post-login capabilities: {:?}",
                s.capabilities()
            );
            let inbox = s
                .examine(MailboxName::Unicode("INBOX"), false)
                .await
                .expect("examine");
            assert!(inbox.uid_validity.is_some());
            s.logout().await.expect("logout");
        }
    }

    // A wrong password is a refusal naming the server, without the password.
    let opts = options(
        &dovecot,
        Security::None,
        tls_with_ca(&dovecot),
        SessionConfig::default(),
    );
    let mut s = connect(&opts).await.expect("connect");
    let err = s
        .authenticate(&Credentials::Login {
            username: DEFAULT_USER.into(),
            password: "wrong-pw-xyz".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    assert!(
        err.to_string().contains(&dovecot.plain_addr().to_string()),
        "{err}"
    );
    assert!(!err.to_string().contains("wrong-pw-xyz"), "{err}");

    // Verification is on by default: without the kit's CA the handshake fails.
    let webpki_only = TlsSettings::new(&TlsOptions {
        system_roots: false,
        ..TlsOptions::default()
    })
    .expect("settings");
    let err = connect(&options(
        &dovecot,
        Security::Implicit,
        webpki_only.clone(),
        SessionConfig::default(),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
    let err = connect(&options(
        &dovecot,
        Security::StartTls,
        webpki_only,
        SessionConfig::default(),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
    // ... and the explicit insecure mode connects anyway.
    let insecure = TlsSettings::new(&TlsOptions {
        insecure_skip_verify: true,
        ..TlsOptions::default()
    })
    .expect("settings");
    let mut s = connect(&options(
        &dovecot,
        Security::Implicit,
        insecure,
        SessionConfig::default(),
    ))
    .await
    .expect("insecure");
    s.logout().await.expect("logout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_status_select_and_byte_exact_fetch_of_a_seeded_corpus() {
    let dovecot = Dovecot::start(Layout::MaildirPlusPlus).expect("dovecot starts");
    let corpus = Corpus::generate(CorpusSpec::small(7));
    dovecot
        .seed(DEFAULT_USER, corpus.folders(), corpus.messages())
        .expect("seeded");
    let sep = dovecot.separator();

    // Expected: per folder, the multiset of message bytes with flags and dates.
    let mut expected: HashMap<String, Vec<(Vec<u8>, String)>> = HashMap::new();
    for m in corpus.messages() {
        expected
            .entry(m.folder.join(sep))
            .or_default()
            .push((m.bytes.clone(), m.internal_date.to_imap()));
    }

    let endpoint = dovecot.user_endpoint(DEFAULT_USER).expect("endpoint");
    let snapshot = tokio::task::block_in_place(|| support::MailboxSnapshot::read(&endpoint))
        .expect("the kit reads the mailbox");
    let mut s = user_session(&dovecot, SessionConfig::default()).await;
    let enabled = s.enable(&["CONDSTORE"]).await.expect("enable");
    assert_eq!(enabled, vec!["CONDSTORE".to_owned()]);
    let server_id = s
        .id(Some(&[("name", Some("imapmirror-test"))]))
        .await
        .expect("id");
    assert!(server_id.is_some_and(|p| p.iter().any(|(k, _)| k.eq_ignore_ascii_case("name"))));
    let ns = s.namespace().await.expect("namespace");
    assert_eq!(ns.personal[0].delimiter, Some(sep as u8));

    let list = ListCommand {
        reference: MailboxName::Unicode(""),
        pattern: MailboxName::Unicode("*"),
        select_special_use: false,
        return_special_use: true,
        return_subscribed: true,
        return_status: &[
            StatusAttr::Messages,
            StatusAttr::UidNext,
            StatusAttr::UidValidity,
        ],
    };
    let entries = s.list(&list).await.expect("list");
    let mut total = 0usize;
    for entry in entries.iter().filter(|e| e.is_selectable()) {
        let name = entry.name(false).expect("mUTF-7 name");
        let want = expected.get(&name).map(Vec::len).unwrap_or(0);
        let listed = entry
            .status
            .and_then(|st| st.messages)
            .expect("LIST-STATUS values");
        assert_eq!(listed as usize, want, "LIST-STATUS of {name}");
        let status = s
            .status(
                entry.mailbox_name(),
                &[StatusAttr::Messages, StatusAttr::HighestModSeq],
            )
            .await
            .expect("status");
        assert_eq!(status.messages, Some(listed));

        let selected = s.select(entry.mailbox_name(), true).await.expect("select");
        assert_eq!(selected.exists as usize, want, "EXISTS of {name}");
        assert!(
            selected.highest_modseq.is_some(),
            "CONDSTORE gives HIGHESTMODSEQ"
        );
        if want == 0 {
            continue;
        }
        let attrs = [
            FetchAttr::Uid,
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::Rfc822Size,
            FetchAttr::BodyPeek(""),
        ];
        let fetched = s
            .uid_fetch("1:*", &attrs, None, false)
            .await
            .expect("fetch")
            .collect_messages()
            .await
            .expect("messages");
        // The yardstick: the kit's own client, reading the same folder independently.
        let theirs = snapshot
            .folder(&name)
            .unwrap_or_else(|| panic!("the kit lists {name}"));
        let mut by_uid: HashMap<u32, &support::mailbox_verifier::MessageFacts> =
            theirs.messages.iter().map(|f| (f.uid, f)).collect();
        let mut got = Vec::new();
        for m in &fetched {
            let body = m.body().expect("BODY[]");
            assert_eq!(
                m.meta.size,
                Some(body.len() as u64),
                "RFC822.SIZE matches the bytes"
            );
            let uid = m.meta.uid.expect("UID");
            let flags: Vec<String> = m
                .meta
                .flags
                .as_ref()
                .expect("FLAGS")
                .storable()
                .iter()
                .map(|f| String::from_utf8_lossy(&f.to_wire()).into_owned())
                .collect();
            let date = support::InternalDate::parse_imap(
                &m.meta.internal_date.expect("INTERNALDATE").to_string(),
            )
            .expect("date");
            let ours = support::mailbox_verifier::MessageFacts::from_bytes(uid, body, &flags, date);
            let kit = by_uid
                .remove(&uid)
                .unwrap_or_else(|| panic!("UID {uid} of {name} known to the kit"));
            assert_eq!(ours.sha256, kit.sha256, "bytes of UID {uid} in {name}");
            assert_eq!(ours.flags, kit.flags, "flags of UID {uid} in {name}");
            assert!(
                ours.internal_date.same_instant(&kit.internal_date),
                "date of UID {uid} in {name}"
            );
            got.push(body.clone());
        }
        assert!(by_uid.is_empty(), "every message of {name} was fetched");
        // Against the seed itself: identical bytes, except that Dovecot serves a stored
        // bare LF as CRLF.
        let mut want: Vec<Vec<u8>> = expected[&name].iter().map(|(b, _)| served_as(b)).collect();
        let mut got: Vec<Vec<u8>> = got.iter().map(|b| b.to_vec()).collect();
        want.sort();
        got.sort();
        assert!(got == want, "UID FETCH of {name} matches the seeded bytes");
        total += got.len();
    }
    assert_eq!(total, corpus.len(), "every seeded message was fetched");
    let special: Vec<_> = entries.iter().filter_map(|e| e.special_use()).collect();
    assert!(special.is_empty() || special.iter().all(MailboxAttr::is_special_use));
    s.logout().await.expect("logout");
}

/// The bytes Dovecot serves for a stored message: a bare LF becomes CRLF.
fn served_as(stored: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len() + 64);
    for (k, &b) in stored.iter().enumerate() {
        if b == b'\n' && (k == 0 || stored[k - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn test_message(n: usize) -> Bytes {
    Bytes::from(format!(
        "From: sender{n}@example.test\r\nTo: user@example.test\r\nSubject: pipelined {n}\r\nMessage-ID: <p{n}@example.test>\r\n\r\nBody of message {n}.\r\n"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_appends_multiappend_search_and_store() {
    let dovecot = Dovecot::start(Layout::Fs).expect("dovecot starts");
    let mut s = user_session(&dovecot, SessionConfig::default()).await;
    s.create(MailboxName::Unicode("Pipelined/Target"), &[])
        .await
        .expect("create");
    s.subscribe(MailboxName::Unicode("Pipelined/Target"))
        .await
        .expect("subscribe");
    let target = MailboxName::Unicode("Pipelined/Target");
    let date = InternalDate::parse(b"14-Mar-2021 09:26:53 +0100").expect("date");
    let flags = [Flag::Seen, Flag::Keyword(b"$Forwarded")];

    let started = Instant::now();
    let mut tags = Vec::with_capacity(1000);
    for n in 0..1000 {
        let msg = AppendMessage {
            flags: &flags,
            internal_date: Some(date),
            body: LiteralBody::Bytes(test_message(n)),
        };
        tags.push(s.send_append(target, &[msg]).await.expect("append sent"));
    }
    let mut uid_of_tag = HashMap::new();
    for _ in 0..1000 {
        let c = s.next_completion().await.expect("completion");
        assert!(c.is_ok(), "{c:?}");
        let (_, uids) = c.append_uid().expect("APPENDUID");
        uid_of_tag.insert(c.tag, uids[0]);
    }
    let pipelined = started.elapsed();
    let mut uids: Vec<u32> = tags.iter().map(|t| uid_of_tag[t]).collect();
    assert!(
        uids.windows(2).all(|w| w[0] < w[1]),
        "UIDs follow the order the APPENDs were sent"
    );
    uids.dedup();
    assert_eq!(uids.len(), 1000);

    let batch: Vec<AppendMessage<'_>> = (1000..1100)
        .map(|n| AppendMessage {
            flags: &[],
            internal_date: Some(date),
            body: LiteralBody::Bytes(test_message(n)),
        })
        .collect();
    let started = Instant::now();
    let (_, multi_uids) = s
        .append(target, &batch)
        .await
        .expect("multiappend")
        .expect("APPENDUID");
    let multi = started.elapsed();
    assert_eq!(multi_uids.len(), 100);
    eprintln!(
        "1000 pipelined APPENDs: {:.0} msg/s; MULTIAPPEND of 100: {:.0} msg/s",
        1000.0 / pipelined.as_secs_f64(),
        100.0 / multi.as_secs_f64()
    );

    let status = s
        .status(target, &[StatusAttr::Messages])
        .await
        .expect("status");
    assert_eq!(status.messages, Some(1100));
    let selected = s.select(target, true).await.expect("select");
    assert_eq!(selected.exists, 1100);
    let all = s.uid_search(&[], "ALL").await.expect("search");
    assert_eq!(all.uids.len(), 1100);
    let seen = s.uid_search(&["COUNT"], "SEEN").await.expect("esearch");
    assert_eq!(seen.count, Some(1000));

    // Every pipelined message arrived byte-exact, with its flags and date.
    let first = uids[0];
    let fetched = s
        .uid_fetch(
            &format!("{first}:{}", first + 9),
            &[
                FetchAttr::Uid,
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::BodyPeek(""),
            ],
            None,
            false,
        )
        .await
        .expect("fetch")
        .collect_messages()
        .await
        .expect("messages");
    for (k, m) in fetched.iter().enumerate() {
        assert_eq!(m.body(), Some(&test_message(k)));
        // Maildir keeps the instant, not the zone: Dovecot answers in UTC.
        let instant =
            |d: InternalDate| support::InternalDate::parse_imap(&d.to_string()).map(|d| d.unix);
        assert_eq!(m.meta.internal_date.and_then(instant), instant(date));
        assert!(
            m.meta
                .flags
                .as_ref()
                .is_some_and(|f| f.list().contains(&Flag::Keyword(b"$Forwarded")))
        );
    }

    // Conditional STORE: a stale UNCHANGEDSINCE is reported, not applied.
    let modseq = s
        .selected()
        .and_then(|m| m.highest_modseq)
        .expect("HIGHESTMODSEQ");
    let uid = first.to_string();
    let done = s
        .uid_store(&uid, StoreMode::Add, false, &[Flag::Flagged], Some(modseq))
        .await
        .expect("store");
    assert!(done.modified.is_empty());
    assert!(done.updates.iter().any(|u| u.uid == Some(first)));
    let stale = s
        .uid_store(&uid, StoreMode::Remove, true, &[Flag::Seen], Some(1))
        .await
        .expect("store");
    assert_eq!(stale.modified, vec![first]);

    // A refusal names the folder; TRYCREATE is typed.
    let msg = AppendMessage {
        flags: &[],
        internal_date: None,
        body: LiteralBody::Bytes(test_message(0)),
    };
    let err = s
        .append(MailboxName::Unicode("Does/Not/Exist"), &[msg])
        .await
        .unwrap_err();
    assert_eq!(
        err.refusal_code(),
        Some(&imapmirror_protocol::client::ResponseCode::TryCreate),
        "{err}"
    );
    assert!(err.to_string().contains("Does/Not/Exist"), "{err}");
    s.noop().await.expect("still usable");
    s.logout().await.expect("logout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_megabyte_message_streams_within_the_buffer_cap() {
    const SIZE: usize = 40 * 1024 * 1024;
    const CAP: usize = 1024 * 1024;
    let dovecot = Dovecot::start(Layout::MaildirPlusPlus).expect("dovecot starts");
    let mut bytes = b"From: big@example.test\r\nSubject: forty megabytes\r\n\r\n".to_vec();
    let mut k = 0u32;
    while bytes.len() < SIZE {
        bytes.extend_from_slice(
            format!("line {k:08} of the big message, with some filler text\r\n").as_bytes(),
        );
        k += 1;
    }
    bytes.truncate(SIZE - 2);
    bytes.extend_from_slice(b"\r\n");
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let big = FolderPath::new(&["Big"]);
    let seed = SeedMessage {
        folder: big.clone(),
        bytes,
        flags: vec![],
        internal_date: support::InternalDate::new(1_600_000_000, 120),
    };
    dovecot
        .seed(
            DEFAULT_USER,
            &[SeedFolder {
                path: big,
                subscribed: false,
            }],
            [seed],
        )
        .expect("seeded");

    let config = SessionConfig {
        decoder: DecoderConfig {
            max_buffered: CAP,
            stream_threshold: 256 * 1024,
            ..DecoderConfig::default()
        },
        ..SessionConfig::default()
    };
    let mut source = user_session(&dovecot, config).await;
    let mut target = user_session(&dovecot, config).await;
    target
        .create(MailboxName::Unicode("Copy"), &[])
        .await
        .expect("create");
    source
        .examine(MailboxName::Unicode("Big"), false)
        .await
        .expect("examine");

    // Source chunks go straight into the target's APPEND: no whole-message buffer.
    let attrs = [
        FetchAttr::Uid,
        FetchAttr::InternalDate,
        FetchAttr::BodyPeek(""),
    ];
    let mut fetch = source
        .uid_fetch("1:*", &attrs, None, false)
        .await
        .expect("fetch");
    let mut upload = None;
    let mut copied = 0u64;
    let mut pieces = 0usize;
    let mut tag = None;
    while let Some(event) = fetch.next().await.expect("fetch output") {
        match event {
            FetchEvent::StreamStart { meta, len, .. } => {
                let date = meta.internal_date;
                let msgs = [AppendMessage {
                    flags: &[],
                    internal_date: date,
                    body: LiteralBody::Streamed { len },
                }];
                upload = Some(
                    target
                        .start_append(MailboxName::Unicode("Copy"), &msgs)
                        .await
                        .expect("append started"),
                );
            }
            FetchEvent::Chunk { bytes, .. } => {
                copied += bytes.len() as u64;
                pieces += 1;
                upload
                    .as_mut()
                    .expect("upload started")
                    .write_chunk(bytes)
                    .await
                    .expect("chunk written");
            }
            FetchEvent::StreamEnd(_) => {
                tag = Some(
                    upload
                        .take()
                        .expect("upload")
                        .finish()
                        .await
                        .expect("finish"),
                );
            }
            FetchEvent::Message(m) => {
                panic!("a 40 MB body must be streamed, got it whole: {:?}", m.meta)
            }
        }
    }
    drop(fetch);
    assert_eq!(copied, SIZE as u64);
    let done = target
        .wait(tag.expect("APPEND sent"))
        .await
        .expect("completion");
    assert!(done.is_ok(), "{done:?}");
    eprintln!(
        "40 MB streamed in {pieces} chunks; source buffer peak {} B, target buffer peak {} B (cap {CAP} B)",
        source.buffer_high_water_mark(),
        target.buffer_high_water_mark()
    );
    let slack = config.read_size;
    assert!(
        source.buffer_high_water_mark() <= CAP + slack,
        "source peak {}",
        source.buffer_high_water_mark()
    );
    assert!(
        target.buffer_high_water_mark() <= CAP + slack,
        "target peak {}",
        target.buffer_high_water_mark()
    );

    // The copy is byte-exact.
    target
        .examine(MailboxName::Unicode("Copy"), false)
        .await
        .expect("examine copy");
    let mut fetch = target
        .uid_fetch("1:*", &[FetchAttr::BodyPeek("")], None, false)
        .await
        .expect("fetch copy");
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut len = 0usize;
    while let Some(event) = fetch.next().await.expect("copy output") {
        if let FetchEvent::Chunk { bytes, .. } = event {
            len += bytes.len();
            ctx.update(&bytes);
        }
    }
    drop(fetch);
    assert_eq!(len, SIZE);
    assert_eq!(
        ctx.finish().as_ref(),
        digest.as_ref(),
        "SHA-256 of the copy equals the original"
    );
    source.logout().await.expect("logout");
    target.logout().await.expect("logout");
}

/// A message with a Date and a folded, encoded Subject, padded to `size` bytes.
fn dated_message(n: usize, size: usize) -> Bytes {
    let mut m = format!(
        "From: sender{n}@example.test\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\n number {n}\r\nDate: Sun, 14 Mar 2021 09:26:53 +0100\r\nMessage-ID: <d{n}@example.test>\r\n\r\n"
    )
    .into_bytes();
    let mut k = 0u32;
    while m.len() < size {
        m.extend_from_slice(format!("line {k:08} of message {n}\r\n").as_bytes());
        k += 1;
    }
    Bytes::from(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_expunge_expunge_vanished_and_partial_fetches() {
    let dovecot = Dovecot::start(Layout::Fs).expect("dovecot starts");
    let mut s = user_session(&dovecot, SessionConfig::default()).await;
    assert!(s.capabilities().contains("UIDPLUS"), "Dovecot has UIDPLUS");
    let folder = MailboxName::Unicode("Expunge");
    s.create(folder, &[]).await.expect("create");
    let bodies: Vec<Bytes> = (0..8)
        .map(|n| dated_message(n, if n == 0 { 200_000 } else { 300 }))
        .collect();
    let messages: Vec<AppendMessage<'_>> = bodies
        .iter()
        .map(|b| AppendMessage {
            flags: &[],
            internal_date: None,
            body: LiteralBody::Bytes(b.clone()),
        })
        .collect();
    let (_, uids) = s
        .append(folder, &messages)
        .await
        .expect("multiappend")
        .expect("APPENDUID");
    s.select(folder, false).await.expect("select");

    // Partial fetches: the header fields and the first 64 KiB, without setting \Seen.
    let attrs = [
        FetchAttr::Uid,
        FetchAttr::Flags,
        FetchAttr::Rfc822Size,
        FetchAttr::BodyPeek("HEADER.FIELDS (DATE SUBJECT)"),
        FetchAttr::BodyPeekPartial {
            section: "",
            offset: 0,
            len: 65536,
        },
    ];
    let set = format!("{}:{}", uids[0], uids[1]);
    let fetched = s
        .uid_fetch(&set, &attrs, None, false)
        .await
        .expect("fetch")
        .collect_messages()
        .await
        .expect("messages");
    assert_eq!(fetched.len(), 2);
    for (m, body) in fetched.iter().zip(&bodies) {
        assert_eq!(m.meta.size, Some(body.len() as u64), "RFC822.SIZE is exact");
        let prefix = m.section("", Some(0)).expect("BODY[]<0>");
        assert_eq!(
            &prefix[..],
            &body[..body.len().min(65536)],
            "byte-exact prefix"
        );
        assert!(
            m.body().is_none(),
            "a partial is never taken for the whole message"
        );
        let headers = m.header_fields().expect("BODY[HEADER.FIELDS ...]");
        let text = String::from_utf8_lossy(headers);
        assert!(
            text.contains("Subject: =?UTF-8?Q?caf=C3=A9?=\r\n number")
                && text.contains("Date: Sun, 14 Mar 2021 09:26:53 +0100\r\n")
                && !text.contains("From:")
                && text.ends_with("\r\n\r\n"),
            "{text:?}"
        );
        assert!(
            m.meta
                .flags
                .as_ref()
                .is_some_and(|f| !f.list().contains(&Flag::Seen)),
            "PEEK leaves \\Seen alone"
        );
    }
    let part = fetched[0].parts.iter().find(|p| p.origin.is_none());
    eprintln!(
        "Dovecot echoes the header section as {:?}",
        part.map(|p| p.section.as_str())
    );

    // UID EXPUNGE removes only the UIDs named, not every \Deleted message.
    let (a, b, user_kept) = (uids[2], uids[3], uids[4]);
    s.uid_store(
        &format!("{a}:{user_kept}"),
        StoreMode::Add,
        true,
        &[Flag::Deleted],
        None,
    )
    .await
    .expect("flag deleted");
    let exists = s.selected().map(|m| m.exists).expect("selected");
    let gone = s
        .uid_expunge(&format!("{a},{b},{}", uids[7]))
        .await
        .expect("uid expunge");
    assert_eq!(gone.count(), 2, "{gone:?}: the unflagged UID stays");
    assert!(gone.vanished.is_empty());
    // Dovecot reports the higher one first (`4, 3`); others go upwards (`3, 3`).
    assert!(
        gone.expunged.iter().all(|n| (3..=4).contains(n)),
        "{gone:?}"
    );
    assert_eq!(s.selected().map(|m| m.exists), Some(exists - 2));
    let left = s.uid_search(&[], "ALL").await.expect("search");
    assert!(left.uids.contains(&user_kept) && left.uids.contains(&uids[7]));
    assert!(!left.uids.contains(&a) && !left.uids.contains(&b));
    // Nothing to remove is a success with nothing reported.
    let none = s.uid_expunge(&a.to_string()).await.expect("again");
    assert_eq!(none.count(), 0);

    // Plain EXPUNGE takes every \Deleted message, the kept one too.
    let gone = s.expunge().await.expect("expunge");
    assert_eq!(gone.count(), 1, "{gone:?}");
    s.logout().await.expect("logout");

    // With QRESYNC enabled the same removal is reported as VANISHED.
    let mut q = user_session(&dovecot, SessionConfig::default()).await;
    q.enable(&["QRESYNC"]).await.expect("enable QRESYNC");
    q.select(folder, true).await.expect("select");
    let victim = uids[5];
    q.uid_store(
        &victim.to_string(),
        StoreMode::Add,
        true,
        &[Flag::Deleted],
        None,
    )
    .await
    .expect("flag");
    let gone = q
        .uid_expunge(&victim.to_string())
        .await
        .expect("uid expunge");
    assert!(gone.expunged.is_empty(), "{gone:?}");
    assert_eq!(gone.vanished.iter().collect::<Vec<_>>(), vec![victim]);
    q.logout().await.expect("logout");
}
