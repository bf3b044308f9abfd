//! The engine against a real Cyrus 3.6 target (Debian's defaults): what Cyrus refuses
//! costs that message and a line in the report, never the mailbox; its cap on keywords
//! per folder costs the keywords, never the message; and its refusal of APPENDLIMIT as a
//! STATUS item (which it announces) is never asked of it.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use imapmirror_engine::endpoint::credentials::Secret;
use imapmirror_engine::pass::copy_plan::GroupLimits;
use imapmirror_engine::{
    CancellationToken, EndpointConfig, EndpointPool, JobOptions, LoginMethod, MailboxJob, PassKind,
    PassSummary, ReconnectPolicy, Role,
};
use imapmirror_protocol::client::{Security, SessionConfig, TlsOptions, TlsSettings};
use imapmirror_storage::{
    BatchSettings, EndpointSettings, MailboxId, MigrationRow, NewMailbox, SkipReason,
    SkippedRecord, Store,
};
use support::message_flag::Flag;
use support::{
    Corpus, CorpusSpec, Cyrus, DEFAULT_USER, Dovecot, Layout, MASTER_PASSWORD, MASTER_USER,
};

const USER_PASSWORD: &str = "Cyrus-user-pw-5";

struct Harness {
    source: Dovecot,
    target: Cyrus,
    _state: tempfile::TempDir,
    store: Store,
    mailbox: MailboxId,
}

fn start() -> Harness {
    let source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus)
        .start()
        .expect("source Dovecot starts");
    let target = Cyrus::builder()
        .label("target")
        .user(DEFAULT_USER, USER_PASSWORD)
        .start()
        .expect("target Cyrus starts");
    let state = tempfile::tempdir().expect("state dir");
    let store = Store::open(state.path()).expect("store opens");
    let mailbox = register(&store);
    Harness {
        source,
        target,
        _state: state,
        store,
        mailbox,
    }
}

fn register(store: &Store) -> MailboxId {
    store
        .call(move |db| {
            for name in ["src", "tgt"] {
                db.add_endpoint(
                    &EndpointSettings::new(
                        name,
                        String::from("127.0.0.1"),
                        143,
                        imapmirror_storage::Security::None,
                    ),
                    None,
                )?;
            }
            let settings = BatchSettings::new("b1", "src", "tgt");
            let rows = vec![NewMailbox {
                row: MigrationRow {
                    email_address: DEFAULT_USER.into(),
                    user_name: DEFAULT_USER.into(),
                    user_root: None,
                    target_user_name: None,
                },
                password: imapmirror_storage::Secret::new("unused"),
                target_password: None,
                refresh_token: None,
            }];
            let batch = db.create_batch(&settings, &rows)?;
            Ok(db.mailboxes(batch.id)?[0].id)
        })
        .expect("batch")
}

fn pool(addr: std::net::SocketAddr, role: Role) -> Arc<EndpointPool> {
    let tls = TlsSettings::new(&TlsOptions {
        webpki_roots: true,
        system_roots: false,
        ca_file: None,
        insecure_skip_verify: false,
        pinned_certificate: None,
    })
    .expect("tls settings");
    let config = EndpointConfig {
        name: role.as_str().into(),
        host: addr.ip().to_string(),
        port: addr.port(),
        security: Security::None,
        tls,
        connect_timeout: Duration::from_secs(5),
        session: SessionConfig {
            response_timeout: Duration::from_secs(30),
            default_backoff: Duration::from_millis(300),
            ..SessionConfig::default()
        },
        max_connections: 8,
        reconnect: ReconnectPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
            max_retries: 6,
        },
        access_token: None,
        token_command: None,
        oauth_grant: None,
    };
    Arc::new(EndpointPool::new(config, role).expect("pool"))
}

fn job(h: &Harness, options: JobOptions) -> MailboxJob {
    let (admin, admin_password) = h.target.admin();
    MailboxJob {
        mailbox: h.mailbox,
        email: DEFAULT_USER.into(),
        batch: "b1".into(),
        source: pool(h.source.plain_addr(), Role::Source),
        target: pool(h.target.plain_addr(), Role::Target),
        source_login: LoginMethod::Login {
            user: format!("{DEFAULT_USER}*{MASTER_USER}"),
            password: Secret::new(MASTER_PASSWORD),
        },
        // Cyrus's SASL admin acting as the user, as `--admin-format sasl` logs in.
        target_login: LoginMethod::AuthenticatePlain {
            authzid: DEFAULT_USER.into(),
            authcid: admin.into(),
            password: Secret::new(admin_password),
        },
        options,
    }
}

fn options() -> JobOptions {
    JobOptions {
        connections: 3,
        folder_retry: ReconnectPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
            max_retries: 10,
        },
        groups: GroupLimits {
            max_messages: 25,
            ..GroupLimits::default()
        },
        crash_settle: Duration::from_secs(2),
        ..JobOptions::default()
    }
}

fn try_run(
    job: &MailboxJob,
    store: &Store,
    kind: PassKind,
) -> Result<PassSummary, imapmirror_engine::Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cancel = CancellationToken::new();
    rt.block_on(job.run_pass(store, kind, &cancel, &|_| {}))
}

fn run(job: &MailboxJob, store: &Store, kind: PassKind) -> PassSummary {
    try_run(job, store, kind).unwrap_or_else(|e| panic!("the pass fails: {e}"))
}

fn skipped_items(store: &Store, mailbox: MailboxId) -> Vec<SkippedRecord> {
    store
        .call(move |db| db.skipped_items(mailbox))
        .expect("skipped items")
}

/// Messages in each of the user's folders on the target.
fn target_counts(h: &Harness) -> usize {
    let mut c = h
        .target
        .user_endpoint(DEFAULT_USER)
        .expect("kit user")
        .connect()
        .expect("target login");
    let mut n = 0;
    for entry in c.list("", "*").expect("LIST") {
        if entry.is_selectable() {
            n += c.examine(&entry.name).expect("EXAMINE").exists as usize;
        }
    }
    c.logout().expect("logout");
    n
}

/// Messages Cyrus refuses and Dovecot stores as they are: a first header line without a
/// colon (`NO Message contains invalid header`), put into `folder` of the source.
fn seed_invalid_headers(h: &Harness, folder: &str, n: usize) {
    let mut c = h.source.connect_master(DEFAULT_USER).expect("source login");
    for i in 0..n {
        let body = format!(
            "This line is no header field {i}\r\nSubject: broken {i}\r\nMessage-ID: <broken{i}@example.test>\r\n\r\nbody {i}\r\n"
        );
        c.append(folder, &[Flag::Seen], None, body.as_bytes())
            .expect("APPEND to the source");
    }
    c.logout().expect("logout");
}

#[test]
fn refused_messages_are_reported_and_the_pass_goes_on() {
    let h = start();
    // The kit's awkward corpus (a Dovecot source serves bare LF as CRLF and NUL as 0x80,
    // which Cyrus takes) and messages whose header Cyrus refuses.
    let corpus = Corpus::generate(CorpusSpec::small(21).with_messages(160));
    h.source
        .seed(DEFAULT_USER, corpus.folders(), corpus.messages())
        .expect("seeding the source");
    seed_invalid_headers(&h, "INBOX", 7);
    let job = job(&h, options());
    let first = run(&job, &h.store, PassKind::Initial);
    let skipped = skipped_items(&h.store, h.mailbox);
    let refused: Vec<&SkippedRecord> = skipped
        .iter()
        .filter(|s| s.item.reason == SkipReason::RejectedByTarget)
        .collect();
    assert!(
        !refused.is_empty(),
        "Cyrus refuses some of the corpus: {first:?}"
    );
    for s in &refused {
        let text = s.item.detail.as_deref().unwrap_or_default();
        assert!(
            text.contains("Message contains") || text.contains("invalid header"),
            "the report keeps Cyrus's words: {text}"
        );
        assert!(s.item.source_uid.is_some() && s.item.size.is_some());
    }
    assert_eq!(first.skipped as usize, refused.len(), "{first:?}");
    assert_eq!(
        first.copied as usize + refused.len(),
        corpus.len() + 7,
        "every message is copied or reported: {first:?}"
    );
    assert_eq!(target_counts(&h), first.copied as usize);
    // The next pass has nothing to do: refused messages are not tried again.
    let second = run(&job, &h.store, PassKind::Incremental);
    assert_eq!((second.copied, second.skipped), (0, 0), "{second:?}");
    assert_eq!(skipped_items(&h.store, h.mailbox).len(), skipped.len());
}

#[test]
fn the_bad_item_limit_fails_the_mailbox_after_settling_what_is_in_flight() {
    let h = start();
    let corpus = Corpus::generate(CorpusSpec::small(21).with_messages(160));
    h.source
        .seed(DEFAULT_USER, corpus.folders(), corpus.messages())
        .expect("seeding the source");
    seed_invalid_headers(&h, "INBOX", 7);
    let mut opts = options();
    opts.bad_item_limit = 0;
    let job = job(&h, opts);
    let err = try_run(&job, &h.store, PassKind::Initial).expect_err("over the bad-item limit");
    let text = err.to_string();
    assert!(text.contains("bad-item limit of 0"), "{text}");
    // Every group sent was settled: nothing is left for the next pass to reconcile.
    let mailbox = h.mailbox;
    let pending = h
        .store
        .call(move |db| db.pending(mailbox))
        .expect("journal");
    assert!(pending.is_empty(), "{pending:?}");
    // Without the limit the next pass copies the rest and reports the refusals.
    let job = self::job(&h, options());
    let rest = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(rest.reconciled, 0, "{rest:?}");
    let refused = skipped_items(&h.store, h.mailbox).len();
    assert_eq!(target_counts(&h) + refused, corpus.len() + 7);
}

#[test]
fn the_keyword_cap_costs_the_keywords_not_the_message() {
    let h = start();
    // 110 messages in one folder, each with a keyword of its own: Cyrus takes 100
    // distinct keywords per folder and refuses the message that would add the 101st.
    let mut c = h.source.connect_master(DEFAULT_USER).expect("source login");
    for i in 0..110 {
        let body = format!(
            "From: tagger@example.test\r\nSubject: tagged {i}\r\nMessage-ID: <tag{i}@example.test>\r\n\r\nkeyword {i}\r\n"
        );
        c.append(
            "INBOX",
            &[Flag::Seen, Flag::Keyword(format!("Project{i:03}"))],
            None,
            body.as_bytes(),
        )
        .expect("APPEND to the source");
    }
    c.logout().expect("logout");
    let job = job(&h, options());
    let first = run(&job, &h.store, PassKind::Initial);
    assert_eq!((first.copied, first.skipped), (110, 0), "{first:?}");
    assert!(first.keywords_dropped >= 10, "{first:?}");
    let records = skipped_items(&h.store, h.mailbox);
    assert_eq!(records.len() as u64, first.keywords_dropped);
    for r in &records {
        assert_eq!(r.item.reason, SkipReason::KeywordsDropped);
        let detail = r.item.detail.as_deref().unwrap_or_default();
        assert!(
            detail.contains("copied without keywords Project")
                && detail.contains("Too many user flags"),
            "{detail}"
        );
    }
    // The mailbox has no bad items: the counters say nothing was skipped.
    let mailbox = h.mailbox;
    let counters = h
        .store
        .call(move |db| db.mailbox_counters(mailbox))
        .expect("counters");
    assert_eq!((counters.messages, counters.skipped), (110, 0));
    // On the target: every message, the system flag kept even where keywords went.
    let mut t = h
        .target
        .user_endpoint(DEFAULT_USER)
        .expect("kit user")
        .connect()
        .expect("target login");
    assert_eq!(t.examine("INBOX").expect("EXAMINE").exists, 110);
    let fetched = t.fetch_all().expect("FETCH");
    assert!(fetched.iter().all(|m| {
        m.flags
            .as_ref()
            .is_some_and(|f| f.iter().any(|x| x.eq_ignore_ascii_case("\\Seen")))
    }));
    t.logout().expect("logout");
    // And the next pass neither copies again nor offers the keywords again.
    let second = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(
        (second.copied, second.keywords_dropped, second.flags_updated),
        (0, 0, 0),
        "{second:?}"
    );

    // A flag change that brings one more keyword: Cyrus refuses the STORE for it; the
    // system flag still lands, the keyword is reported, the folder is not failed.
    let mut c = h.source.connect_master(DEFAULT_USER).expect("source login");
    c.select("INBOX").expect("select");
    c.run(
        "store",
        &[support::imap_client::Arg::Raw(
            "UID STORE 1 +FLAGS (\\Flagged Later001)",
        )],
    )
    .expect("STORE on the source");
    c.logout().expect("logout");
    let third = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(
        (third.flags_updated, third.keywords_dropped),
        (1, 1),
        "{third:?}"
    );
    let mut t = h
        .target
        .user_endpoint(DEFAULT_USER)
        .expect("kit user")
        .connect()
        .expect("target login");
    t.examine("INBOX").expect("EXAMINE");
    let first_message = t
        .fetch_all()
        .expect("FETCH")
        .into_iter()
        .find(|m| {
            m.body
                .as_deref()
                .is_some_and(|b| b.ends_with(b"keyword 0\r\n"))
        })
        .expect("the first tagged message");
    // The new system flag landed and the keyword the target held before stayed.
    let flags = first_message.flags.unwrap_or_default();
    assert!(
        flags.iter().any(|f| f.eq_ignore_ascii_case("\\Flagged"))
            && flags.iter().any(|f| f == "Project000"),
        "{flags:?}"
    );
    t.logout().expect("logout");
    let records = skipped_items(&h.store, h.mailbox);
    assert!(
        records
            .iter()
            .any(|r| r.item.detail.as_deref().is_some_and(|d| d
                .contains("flags updated without keywords")
                && d.contains("Later001"))),
        "{records:?}"
    );
}

/// Copies source message `uid` of `folder` within the folder (a new UID, the same
/// bytes): one more message the target will refuse.
fn duplicate_on_source(h: &Harness, folder: &str, uid: u32) {
    let mut c = h.source.connect_master(DEFAULT_USER).expect("client");
    c.select(folder).expect("select");
    let copy = format!("UID COPY {uid} {folder}");
    c.run("copy", &[support::imap_client::Arg::Raw(&copy)])
        .expect("copy");
    c.logout().expect("logout");
}

#[test]
fn the_bad_item_limit_counts_the_mailbox_across_passes() {
    let h = start();
    let corpus = Corpus::generate(CorpusSpec::small(21).with_messages(120));
    h.source
        .seed(DEFAULT_USER, corpus.folders(), corpus.messages())
        .expect("seeding the source");
    seed_invalid_headers(&h, "INBOX", 7);
    let job = job(&h, options());
    run(&job, &h.store, PassKind::Initial);
    let skipped = skipped_items(&h.store, h.mailbox);
    let first = skipped.len() as u64;
    assert!(first >= 1, "Cyrus refuses some of the corpus");
    let refused = skipped
        .iter()
        .find(|s| s.folder_name.is_ascii() && !s.folder_name.contains(' '))
        .expect("a refused message in a plainly named folder");
    let (folder, uid) = (
        refused.folder_name.clone(),
        refused.item.source_uid.expect("a message"),
    );

    // One new refusal in this pass: the mailbox now has first + 1 distinct bad items,
    // which a limit of first + 1 allows (the first pass's are not counted again).
    duplicate_on_source(&h, &folder, uid);
    let mut opts = options();
    opts.bad_item_limit = first + 1;
    let job = self::job(&h, opts);
    let summary = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(summary.skipped, 1, "{summary:?}");
    assert_eq!(skipped_items(&h.store, h.mailbox).len() as u64, first + 1);

    // Another single refusal: one in this pass, under any per-pass limit, but the
    // mailbox's total of first + 2 is over the limit, as Exchange's BadItemLimit counts.
    duplicate_on_source(&h, &folder, uid);
    let err = try_run(&job, &h.store, PassKind::Incremental).expect_err("over the limit");
    let text = err.to_string();
    assert!(
        text.contains(&format!("refused {} messages", first + 2))
            && text.contains(&format!("bad-item limit of {}", first + 1)),
        "{text}"
    );
}
