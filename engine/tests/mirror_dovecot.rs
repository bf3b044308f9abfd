//! The engine against real Dovecot: source Maildir++ (`.`), target LAYOUT=fs (`/`), the
//! kit's corpus with its awkward cases, and the kit's verifier as the judge.

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
    BatchSettings, EndpointSettings, FolderId, FolderState, JournalEntry, MailboxId, MailboxRecord,
    MigrationRow, NewMailbox, PassRecord, SkipReason, SkippedRecord, Store, UidMapEntry,
};
use support::{Corpus, CorpusSpec, DEFAULT_USER, Dovecot, Layout, MASTER_PASSWORD, MASTER_USER};

/// Two Dovecot instances, a state directory and a job between them.
struct Harness {
    source: Dovecot,
    target: Dovecot,
    _state: tempfile::TempDir,
    store: Store,
    mailbox: MailboxId,
    corpus: Corpus,
}

fn endpoint_settings(name: &str, addr: std::net::SocketAddr) -> EndpointSettings {
    EndpointSettings::new(
        name,
        addr.ip().to_string(),
        addr.port(),
        imapmirror_storage::Security::None,
    )
}

/// Dovecot refuses keywords over 50 bytes on APPEND by default; the corpus has a longer
/// one. A target that can hold every source keyword is configured like this.
const LONG_KEYWORDS: &str = "mail_max_keyword_length = 200";

fn start(messages: usize, seed: u64) -> Harness {
    start_with(messages, seed, Some(LONG_KEYWORDS))
}

fn start_with(messages: usize, seed: u64, target_config: Option<&str>) -> Harness {
    let source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus)
        .start()
        .expect("source Dovecot starts");
    let mut target = Dovecot::builder().label("target").layout(Layout::Fs);
    if let Some(config) = target_config {
        target = target.extra_config(config);
    }
    let target = target.start().expect("target Dovecot starts");
    let corpus = Corpus::generate(CorpusSpec::small(seed).with_messages(messages));
    source
        .seed(DEFAULT_USER, corpus.folders(), corpus.messages())
        .expect("seeding the source");
    let state = tempfile::tempdir().expect("state dir");
    let store = Store::open(state.path()).expect("store opens");
    let mailbox = register(&store, &source, &target);
    Harness {
        source,
        target,
        _state: state,
        store,
        mailbox,
        corpus,
    }
}

fn register(store: &Store, source: &Dovecot, target: &Dovecot) -> MailboxId {
    add_endpoint(store, endpoint_settings("src", source.plain_addr())).expect("source endpoint");
    add_endpoint(store, endpoint_settings("tgt", target.plain_addr())).expect("target endpoint");
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
    let batch = store
        .call(move |db| db.create_batch(&settings, &rows))
        .expect("batch");
    mailboxes(store, batch.id)[0].id
}

// ---- the state store, from a test's own thread ----
//
// Every test drives its passes from its plain test thread, each pass on a runtime of its
// own entered only inside `block_on`: between passes the tests reach the storage thread
// with the blocking `Store::call`. Never from a progress callback or a future: `call`
// panics on a runtime thread.

fn add_endpoint(
    store: &Store,
    settings: EndpointSettings,
) -> imapmirror_storage::Result<imapmirror_storage::EndpointRecord> {
    store.call(move |db| db.add_endpoint(&settings, None))
}

fn mailboxes(store: &Store, batch: imapmirror_storage::BatchId) -> Vec<MailboxRecord> {
    store
        .call(move |db| db.mailboxes(batch))
        .expect("mailboxes")
}

fn pending(store: &Store, mailbox: MailboxId) -> Vec<JournalEntry> {
    store.call(move |db| db.pending(mailbox)).expect("journal")
}

fn skipped_items(store: &Store, mailbox: MailboxId) -> Vec<SkippedRecord> {
    store
        .call(move |db| db.skipped_items(mailbox))
        .expect("skipped items")
}

fn mailbox_record(store: &Store, mailbox: MailboxId) -> MailboxRecord {
    store.call(move |db| db.mailbox(mailbox)).expect("mailbox")
}

fn pass_history(store: &Store, mailbox: MailboxId) -> Vec<PassRecord> {
    store
        .call(move |db| db.pass_history(mailbox))
        .expect("history")
}

fn find_folder(store: &Store, mailbox: MailboxId, source_name: &str) -> Option<FolderId> {
    let name = source_name.to_owned();
    store
        .call(move |db| db.find_folder(mailbox, &name))
        .expect("store")
}

fn folder_state(store: &Store, folder: FolderId) -> FolderState {
    store
        .call(move |db| db.folder_state(folder))
        .expect("folder state")
}

/// How many entries the uid map of `folder` holds (iterated inside the job).
fn mapped_count(store: &Store, folder: FolderId) -> usize {
    store
        .call(move |db| Ok(db.uid_map_range(folder, ..)?.count()))
        .expect("uid map")
}

fn uid_map_get(store: &Store, folder: FolderId, source_uid: u32) -> Option<UidMapEntry> {
    store
        .call(move |db| db.uid_map_get(folder, source_uid))
        .expect("uid map")
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
            response_timeout: Duration::from_secs(20),
            // A server asking for a pause without naming one is waited for this long.
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

fn master_login() -> LoginMethod {
    LoginMethod::Login {
        user: format!("{DEFAULT_USER}*{MASTER_USER}"),
        password: Secret::new(MASTER_PASSWORD),
    }
}

fn job_between(
    h: &Harness,
    source: std::net::SocketAddr,
    target: std::net::SocketAddr,
    options: JobOptions,
) -> MailboxJob {
    MailboxJob {
        mailbox: h.mailbox,
        email: DEFAULT_USER.into(),
        batch: "b1".into(),
        source: pool(source, Role::Source),
        target: pool(target, Role::Target),
        source_login: master_login(),
        target_login: master_login(),
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
        // Loopback Dovecot commits a group in milliseconds; 2 s is a wide margin.
        crash_settle: Duration::from_secs(2),
        ..JobOptions::default()
    }
}

fn run(job: &MailboxJob, store: &Store, kind: PassKind) -> PassSummary {
    try_run(job, store, kind).unwrap_or_else(|e| panic!("the pass fails: {e}"))
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

fn assert_identical(h: &Harness) {
    support::verify_user(&h.source, &h.target, DEFAULT_USER)
        .expect("verifier runs")
        .assert_equal();
}

fn selectable_folders(h: &Harness) -> usize {
    h.corpus.folders().len()
}

/// `job` with no quick check: every pass lists the target too.
fn looking_at_the_target(job: &MailboxJob) -> MailboxJob {
    MailboxJob {
        options: JobOptions {
            target_recheck: Duration::ZERO,
            ..job.options.clone()
        },
        ..job.clone()
    }
}

#[test]
fn full_pass_then_nothing_then_new_mail_and_flags() {
    let h = start(300, 11);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    let started = std::time::Instant::now();
    let first = run(&job, &h.store, PassKind::Initial);
    eprintln!(
        "full pass: {} messages, {} bytes in {:?} over 3 connection pairs",
        first.copied,
        first.bytes,
        started.elapsed()
    );
    assert_eq!(first.copied as usize, h.corpus.len(), "{first:?}");
    assert_identical(&h);
    // Subscriptions are mirrored (names mapped from `.` to `/`).
    let subscribed = |server: &Dovecot| {
        let mut c = server.connect_master(DEFAULT_USER).expect("client");
        let names = c.subscribed().expect("LSUB");
        c.logout().expect("logout");
        names
    };
    let on_target = subscribed(&h.target);
    for name in subscribed(&h.source) {
        let mapped = support::separator_mapping(&name, Some('.'), Some('/')).expect("mappable");
        assert!(
            on_target
                .iter()
                .any(|t| t == &mapped || (t.eq_ignore_ascii_case("INBOX") && mapped == "INBOX")),
            "{mapped} is subscribed on the target: {on_target:?}"
        );
    }

    // Nothing changed: one LIST-STATUS on the source, no SELECT, no FETCH, no APPEND, and
    // the target not even logged in to (the quick check: it was seen by the last pass).
    let second = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(second.copied, 0, "{second:?}");
    assert_eq!(second.folders_unchanged, second.folders, "{second:?}");
    assert_eq!(second.folders, selectable_folders(&h), "{second:?}");
    assert_eq!(second.source_commands.content_commands(), 0, "{second:?}");
    assert_eq!(second.target_commands.content_commands(), 0, "{second:?}");
    assert_eq!(second.target_commands.connects, 0, "{second:?}");
    assert_eq!(second.target_commands.logins, 0, "{second:?}");
    // Without the quick check the same pass lists the target too, and still finds nothing.
    let full = looking_at_the_target(&job);
    let checked = run(&full, &h.store, PassKind::Incremental);
    assert_eq!(checked.copied, 0, "{checked:?}");
    assert_eq!(checked.folders_unchanged, checked.folders, "{checked:?}");
    assert_eq!(checked.target_commands.logins, 1, "{checked:?}");
    assert_eq!(checked.target_commands.content_commands(), 0, "{checked:?}");
    assert!(
        second.source_commands.lists + second.source_commands.statuses
            <= 1 + selectable_folders(&h) as u64,
        "at most one round trip per folder: {second:?}"
    );

    // +1 % new mail in two folders and a flag change on an old message.
    let mut client = h
        .source
        .connect_master(DEFAULT_USER)
        .expect("source client");
    let extra = 3;
    for i in 0..extra {
        let body = format!(
            "From: new@example.test\r\nSubject: new mail {i}\r\nMessage-ID: <new{i}@example.test>\r\n\r\nhello {i}\r\n"
        );
        let folder = if i % 2 == 0 { "INBOX" } else { "Archive.2019" };
        client
            .append(folder, &[], None, body.as_bytes())
            .expect("append new mail");
    }
    client.select("INBOX").expect("select");
    client
        .run(
            "flag change",
            &[support::imap_client::Arg::Raw(
                "UID STORE 1 +FLAGS ($Junk \\Flagged)",
            )],
        )
        .expect("store flags");
    client.logout().expect("logout");

    let third = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(third.copied, extra, "{third:?}");
    assert!(third.flags_updated >= 1, "{third:?}");
    assert_identical(&h);
    // The two no-change passes are one history entry: the quick one repeats the full one.
    let history = pass_history(&h.store, h.mailbox);
    assert_eq!(history.len(), 3, "{history:#?}");
}

#[test]
fn a_quick_no_change_pass_with_an_excluded_folder_and_the_final_pass_after_it() {
    let h = start(120, 31);
    let job = job_between(
        &h,
        h.source.plain_addr(),
        h.target.plain_addr(),
        JobOptions {
            exclusions: vec![imapmirror_engine::pass::folder_plan::Exclusion::Name(
                "Junk".into(),
            )],
            ..options()
        },
    );
    let first = run(&job, &h.store, PassKind::Initial);
    assert_eq!(first.folders, selectable_folders(&h) - 1, "{first:?}");
    // Nothing changed on the source: the excluded folder (no stored state) is left out by
    // the same plan again, and the target is not logged in to.
    let quick = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(quick.target_commands.logins, 0, "{quick:?}");
    assert_eq!(quick.copied, 0, "{quick:?}");
    assert_eq!(quick.folders_unchanged, first.folders, "{quick:?}");
    // Another exclusion is another plan: the target is looked at.
    let other = MailboxJob {
        options: JobOptions {
            exclusions: Vec::new(),
            ..job.options.clone()
        },
        ..job.clone()
    };
    let wider = run(&other, &h.store, PassKind::Incremental);
    assert_eq!(wider.target_commands.logins, 1, "{wider:?}");
    assert!(wider.copied > 0, "Junk is copied now: {wider:?}");
    // The final pass before cut-over always looks at the target.
    let last = run(&other, &h.store, PassKind::Final);
    assert_eq!(last.target_commands.logins, 1, "{last:?}");
    assert_eq!(last.copied, 0, "{last:?}");
    assert_identical(&h);
}

/// Source folders by whether they ever held a message: (never used, used), by UIDNEXT.
fn folders_by_use(server: &Dovecot) -> (Vec<String>, Vec<String>) {
    let mut c = server.connect_master(DEFAULT_USER).expect("client");
    let (mut never, mut used) = (Vec::new(), Vec::new());
    for entry in c.list("", "*").expect("LIST") {
        if !entry.is_selectable() {
            continue;
        }
        let status = c.examine(&entry.name).expect("examine");
        if status.uidnext == Some(1) {
            never.push(entry.name);
        } else {
            used.push(entry.name);
        }
    }
    c.logout().expect("logout");
    (never, used)
}

/// A first pass over many small mailboxes is mostly folders nobody ever filed mail in:
/// those are created and subscribed on the target and recorded, but opened on neither
/// side. Mail that arrives in one later is copied like any other, and a folder that was
/// emptied (UIDNEXT past 1) is opened and read as before.
#[test]
fn folders_the_source_never_used_are_created_but_not_opened() {
    let h = start(40, 53);
    let mut c = h
        .source
        .connect_master(DEFAULT_USER)
        .expect("source client");
    for name in ["Never", "Never.Used"] {
        c.create(name).expect("create a folder");
    }
    c.create("Emptied").expect("create a folder");
    c.append("Emptied", &[], None, b"Subject: gone\r\n\r\nsoon\r\n")
        .expect("append");
    c.select("Emptied").expect("select");
    c.run(
        "delete",
        &[support::imap_client::Arg::Raw(
            "UID STORE 1:* +FLAGS (\\Deleted)",
        )],
    )
    .expect("store");
    c.run("expunge", &[support::imap_client::Arg::Raw("EXPUNGE")])
        .expect("expunge");
    c.logout().expect("logout");
    let (never, used) = folders_by_use(&h.source);
    for name in ["Never", "Never.Used"] {
        assert!(never.iter().any(|n| n == name), "{name} in {never:?}");
    }
    assert!(used.iter().any(|n| n == "Emptied"), "{used:?}");

    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    let first = run(&job, &h.store, PassKind::Initial);
    assert_eq!(first.copied as usize, h.corpus.len(), "{first:?}");
    assert_eq!(first.folders, never.len() + used.len(), "{first:?}");
    // One EXAMINE per folder that ever held mail, a SELECT of the target for each that
    // holds mail now (not for the emptied one); none for the others.
    assert_eq!(
        first.source_commands.selects,
        used.len() as u64,
        "{first:?}"
    );
    assert_eq!(
        first.target_commands.selects,
        used.len() as u64 - 1,
        "{first:?}"
    );
    assert_identical(&h);
    let on_target = target_folder_names(&h);
    for name in ["Never", "Never/Used", "Emptied"] {
        assert!(
            on_target.iter().any(|n| n == name),
            "{name} in {on_target:?}"
        );
    }
    let never_state = folder_state(
        &h.store,
        find_folder(&h.store, h.mailbox, "Never.Used").expect("recorded"),
    );
    assert_eq!(never_state.marks.target_name.as_deref(), Some("Never/Used"));
    assert!(
        never_state.marks.source_uidvalidity.is_some(),
        "{never_state:?}"
    );
    // The emptied folder: everything below its UIDNEXT (2) is settled, the target
    // untouched but named.
    let emptied = folder_state(
        &h.store,
        find_folder(&h.store, h.mailbox, "Emptied").expect("recorded"),
    );
    assert_eq!(emptied.marks.highest_copied_uid, 1, "{emptied:?}");
    assert_eq!(emptied.marks.target_name.as_deref(), Some("Emptied"));
    assert_eq!(emptied.counters.messages, 0, "{emptied:?}");

    // What the first pass recorded is what the next finds unchanged, quick or full.
    let quick = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(quick.target_commands.logins, 0, "{quick:?}");
    assert_eq!(quick.folders_unchanged, quick.folders, "{quick:?}");
    let full = looking_at_the_target(&job);
    let checked = run(&full, &h.store, PassKind::Incremental);
    assert_eq!(checked.target_commands.logins, 1, "{checked:?}");
    assert_eq!(checked.folders_unchanged, checked.folders, "{checked:?}");
    assert_eq!(checked.target_commands.selects, 0, "{checked:?}");

    // The first mail in a never-used folder: selected, copied, and exact.
    let mut c = h
        .source
        .connect_master(DEFAULT_USER)
        .expect("source client");
    c.append(
        "Never.Used",
        &[support::Flag::Seen],
        None,
        b"From: a@example.test\r\nSubject: first\r\n\r\nat last\r\n",
    )
    .expect("append");
    c.append(
        "Emptied",
        &[support::Flag::Flagged],
        None,
        b"From: b@example.test\r\nSubject: back\r\n\r\nagain\r\n",
    )
    .expect("append");
    c.logout().expect("logout");
    let third = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(third.copied, 2, "{third:?}");
    assert_eq!(third.target_commands.selects, 2, "{third:?}");
    assert_identical(&h);
    let state = folder_state(
        &h.store,
        find_folder(&h.store, h.mailbox, "Never.Used").expect("recorded"),
    );
    assert!(state.marks.target_uidvalidity.is_some(), "{state:?}");
    assert_eq!(state.counters.messages, 1, "{state:?}");
}

/// A folder listed as empty is examined on the source alone; when the EXAMINE finds mail
/// after all (a STATUS that miscounts, or mail that came in between), the target is
/// opened and the folder copied as usual: nothing is lost to the shortcut.
#[test]
fn folders_listed_empty_but_holding_mail_are_copied_whole() {
    let h = start(60, 61);
    let source = relay(
        h.source.plain_addr(),
        Faults {
            status_says_empty: true,
            ..Faults::default()
        },
    );
    let job = job_between(&h, source.addr, h.target.plain_addr(), options());
    let first = run(&job, &h.store, PassKind::Initial);
    assert_eq!(first.copied as usize, h.corpus.len(), "{first:?}");
    let (_, used) = folders_by_use(&h.source);
    assert_eq!(
        first.source_commands.selects,
        used.len() as u64,
        "{first:?}"
    );
    assert_eq!(
        first.target_commands.selects,
        used.len() as u64,
        "{first:?}"
    );
    assert_identical(&h);
    let again = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(again.copied, 0, "{again:?}");
    assert_identical(&h);
}

/// The messages of `folder` as the kit reads them (bytes, flags, dates).
fn messages_of(server: &Dovecot, folder: &str) -> Vec<support::imap_client::FetchedMessage> {
    let mut c = server.connect_master(DEFAULT_USER).expect("client");
    c.examine(folder).expect("examine");
    let all = c.fetch_all().expect("fetch all");
    c.logout().expect("logout");
    all
}

fn flags_of(m: &support::imap_client::FetchedMessage) -> Vec<support::Flag> {
    m.flags
        .iter()
        .flatten()
        .filter_map(|f| support::Flag::from_imap(f))
        .filter(|f| f.to_imap() != "\\Recent")
        .collect()
}

#[test]
fn target_folder_recreated_gets_no_duplicates() {
    let h = start(150, 12);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    run(&job, &h.store, PassKind::Initial);
    assert_identical(&h);
    // Delete and recreate the target's "Sent" (a new UIDVALIDITY) and put three of its
    // messages back by hand, without their flags.
    let sent = messages_of(&h.source, "Sent");
    assert!(sent.len() > 3, "the corpus fills Sent");
    let mut t = h
        .target
        .connect_master(DEFAULT_USER)
        .expect("target client");
    t.run("delete", &[support::imap_client::Arg::Raw("DELETE Sent")])
        .expect("delete Sent");
    t.create("Sent").expect("recreate Sent");
    for m in &sent[..3] {
        t.append(
            "Sent",
            &[],
            m.internal_date,
            m.body.as_deref().expect("body"),
        )
        .expect("append back");
    }
    t.logout().expect("logout");
    // Within the recheck interval a pass whose source shows nothing new does not look at
    // the target (the quick check's trade-off): the recreated folder is found by the
    // first pass after the interval, or by the final pass, which always looks.
    let quick = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(quick.target_commands.logins, 0, "{quick:?}");
    assert_eq!(quick.copied, 0, "{quick:?}");
    let job = MailboxJob {
        options: JobOptions {
            target_recheck: Duration::from_millis(1),
            ..job.options.clone()
        },
        ..job
    };
    std::thread::sleep(Duration::from_millis(5));
    let summary = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(summary.copied as usize, sent.len() - 3, "{summary:?}");
    assert!(summary.reconciled >= 3, "{summary:?}");
    assert_identical(&h);
    let again = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(again.copied, 0, "{again:?}");
    assert_identical(&h);
}

#[test]
fn source_folder_recreated_is_rebuilt_by_fingerprint_not_copied_again() {
    let h = start(150, 18);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    run(&job, &h.store, PassKind::Initial);
    assert_identical(&h);
    // The source folder gets a new UIDVALIDITY with the very same messages.
    let folder = "Archive.2019";
    let before = messages_of(&h.source, folder);
    assert!(!before.is_empty());
    let mut s = h
        .source
        .connect_master(DEFAULT_USER)
        .expect("source client");
    s.run(
        "delete",
        &[support::imap_client::Arg::Raw("DELETE Archive.2019")],
    )
    .expect("delete");
    s.create(folder).expect("recreate");
    for m in &before {
        s.append(
            folder,
            &flags_of(m),
            m.internal_date,
            m.body.as_deref().expect("body"),
        )
        .expect("append back");
    }
    s.logout().expect("logout");
    let summary = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(summary.copied, 0, "nothing is copied twice: {summary:?}");
    assert_eq!(summary.reconciled as usize, before.len(), "{summary:?}");
    assert_identical(&h);
}

/// A message of about `size` bytes of base64-looking lines: over every buffer and
/// threshold.
fn big_message(size: usize, seed: u64) -> Vec<u8> {
    let mut body = format!(
        "From: big@example.test\r\nSubject: big one {seed}\r\nMessage-ID: <big{seed}@example.test>\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    let mut rng = support::SplitMix64::new(seed);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    while body.len() < size {
        for _ in 0..76 {
            body.push(ALPHABET[rng.below(64) as usize]);
        }
        body.extend_from_slice(b"\r\n");
    }
    body
}

#[test]
fn a_large_message_streams_through_bounded_buffers() {
    let h = start(20, 19);
    let body = big_message(24 * 1024 * 1024, 7);
    let mut c = h.source.connect_master(DEFAULT_USER).expect("client");
    c.append("INBOX", &[support::Flag::Seen], None, &body)
        .expect("append big");
    c.logout().expect("logout");
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    let started = std::time::Instant::now();
    let summary = run(&job, &h.store, PassKind::Initial);
    let elapsed = started.elapsed();
    assert_eq!(summary.copied as usize, h.corpus.len() + 1, "{summary:?}");
    assert_identical(&h);
    let limit = 2 * 1024 * 1024;
    assert!(
        summary.source_commands.peak_buffer < limit && summary.target_commands.peak_buffer < limit,
        "buffers stay small whatever the message size: {summary:?}"
    );
    eprintln!(
        "large message: {} bytes in {elapsed:?}, peak read buffer source {} / target {} bytes",
        summary.bytes, summary.source_commands.peak_buffer, summary.target_commands.peak_buffer
    );
}

#[test]
fn oversized_messages_are_skipped_with_reason() {
    let h = start(150, 13);
    let mut opts = options();
    opts.max_message_size = Some(30_000);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), opts);
    let summary = run(&job, &h.store, PassKind::Initial);
    let skipped = skipped_items(&h.store, h.mailbox);
    assert!(!skipped.is_empty(), "the corpus has attachments over 30 KB");
    assert_eq!(summary.skipped as usize, skipped.len());
    for s in &skipped {
        assert_eq!(s.item.reason, SkipReason::TooLarge);
        assert!(s.item.size.is_some_and(|n| n > 30_000));
        assert!(
            s.item
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("maximum message size")),
            "{:?}",
            s.item
        );
    }
    assert_eq!(summary.copied as usize + skipped.len(), h.corpus.len());
    // A second pass does not try them again, nor count them twice.
    let again = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(again.copied + again.skipped, 0, "{again:?}");
    assert_eq!(skipped_items(&h.store, h.mailbox).len(), skipped.len());
}

#[test]
fn a_keyword_the_target_refuses_costs_the_keyword_not_the_message() {
    // This target keeps Dovecot's default 50-byte keyword limit: it refuses every message
    // carrying the corpus's long keyword, with its own words; each is sent once more
    // without its keywords, copied, and reported.
    let h = start_with(200, 14, None);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    let summary = run(&job, &h.store, PassKind::Initial);
    assert_eq!(summary.copied as usize, h.corpus.len(), "{summary:?}");
    assert_eq!(summary.skipped, 0, "{summary:?}");
    let records = skipped_items(&h.store, h.mailbox);
    assert!(
        !records.is_empty(),
        "the corpus has long keywords: {summary:?}"
    );
    assert_eq!(records.len() as u64, summary.keywords_dropped);
    for s in &records {
        assert_eq!(s.item.reason, SkipReason::KeywordsDropped);
        assert!(
            s.item
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("copied without keywords")
                    && d.contains("Keyword length too long")),
            "{:?}",
            s.item
        );
    }
    let record = mailbox_record(&h.store, h.mailbox);
    assert_eq!(record.status, imapmirror_storage::MailboxStatus::Synced);
    // Not bad items: even a limit of 0 lets the mailbox through.
    let h = start_with(60, 14, None);
    let mut opts = options();
    opts.bad_item_limit = 0;
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), opts);
    let summary = run(&job, &h.store, PassKind::Initial);
    assert_eq!(summary.copied as usize, h.corpus.len(), "{summary:?}");
}

// ---- kill -9 at random instants, resumed each time ----

const KILL_CHILD: &str = "IMAPMIRROR_ENGINE_KILL_CHILD";

/// Not a test of its own: the body a child process runs when the kill test re-executes
/// this binary (one pass, then exit). Without the variable it returns at once.
#[test]
fn kill_child_entry() {
    let Ok(spec) = std::env::var(KILL_CHILD) else {
        return;
    };
    let mut parts = spec.split('|');
    let (Some(state), Some(src), Some(tgt)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("bad child spec {spec}");
    };
    let store = Store::open(std::path::Path::new(state)).expect("child opens the store");
    let batch = store.call(|db| db.batch("b1")).expect("batch");
    let mailbox = mailboxes(&store, batch.id)[0].id;
    let job = MailboxJob {
        mailbox,
        email: DEFAULT_USER.into(),
        batch: "b1".into(),
        source: pool(src.parse().expect("addr"), Role::Source),
        target: pool(tgt.parse().expect("addr"), Role::Target),
        source_login: master_login(),
        target_login: master_login(),
        options: options(),
    };
    // The parent kills this process at a random instant; finishing is fine too.
    let _ = try_run(&job, &store, PassKind::Initial);
}

#[test]
fn kill_nine_at_random_instants_then_resume() {
    let kills: usize = std::env::var("IMAPMIRROR_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let h = start(600, 15);
    let state_path = h._state.path().to_path_buf();
    let Harness {
        source,
        target,
        _state,
        store,
        mailbox,
        corpus,
    } = h;
    // The child owns the state directory while it runs.
    drop(store);
    let exe = std::env::current_exe().expect("test binary");
    let spec = format!(
        "{}|{}|{}",
        state_path.display(),
        source.plain_addr(),
        target.plain_addr()
    );
    let seed = std::env::var("IMAPMIRROR_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = support::SplitMix64::new(seed);
    let mut killed = 0;
    for n in 0..kills {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "kill_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KILL_CHILD, &spec)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("child starts");
        // A child that finds a group of a killed one missing on the target waits the
        // settle time (2 s) from its start before looking again: every fifth child lives
        // past it, so reconciles run, and are killed, inside the loop too.
        let wait = if n % 5 == 4 {
            rng.range(2300, 3500)
        } else {
            rng.range(30, 900)
        };
        std::thread::sleep(Duration::from_millis(wait));
        let status = std::process::Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .expect("kill runs");
        if status.success() {
            killed += 1;
        }
        child.wait().expect("child reaped");
    }
    assert!(
        killed >= kills / 2,
        "most children were killed mid-pass ({killed}/{kills})"
    );
    let store = Store::open(&state_path).expect("store reopens after kill -9");
    let h = Harness {
        source,
        target,
        _state,
        store,
        mailbox,
        corpus,
    };
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    run(&job, &h.store, PassKind::Initial);
    assert!(pending(&h.store, h.mailbox).is_empty());
    assert_identical(&h);
    let again = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(again.copied, 0, "{again:?}");
}

// ---- a relay that cuts connections mid-literal or answers for the server ----

/// What the relay does to the connections it carries.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Cut, once, the connection that carries the first literal byte from a server after
    /// N bytes (counted over all connections): inside a FETCH literal on a source.
    cut_downstream_after: Option<usize>,
    /// Cut, once, the connection that carries the first literal byte from the client after
    /// N bytes (counted over all connections): inside an APPEND literal on a target.
    cut_upstream_after: Option<usize>,
    /// Answer the first connection's greeting with `* BYE Too many connections`.
    bye_first_greeting: bool,
    /// Answer this many EXAMINE/SELECT commands with `NO [THROTTLED]` and a back-off hint.
    throttle_selects: usize,
    /// Remove `[APPENDUID ...]` from tagged OKs: a target without UIDPLUS.
    strip_appenduid: bool,
    /// Answer every STATUS with `MESSAGES 0`: a server whose STATUS miscounts, or mail
    /// that arrives between the listing and the EXAMINE.
    status_says_empty: bool,
    /// Once: hold the first APPEND command the client sends, in full, for `.0`; then
    /// close the client's side (it sees the connection drop while awaiting the answer)
    /// and hand the command to the server `.1` later. The server commits an APPEND the
    /// client never hears of, after the client gave up: a slow link that broke.
    late_append: Option<(Duration, Duration)>,
}

/// Collects one command from the client's stream: its lines and the literals they
/// announce, up to the end of a line that announces none.
#[derive(Default)]
struct CommandCollector {
    bytes: Vec<u8>,
    line: Vec<u8>,
    literal_left: usize,
}

impl CommandCollector {
    /// Feeds bytes; once the command is complete, returns what followed it.
    fn feed(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        let mut i = 0;
        while i < chunk.len() {
            if self.literal_left > 0 {
                let take = self.literal_left.min(chunk.len() - i);
                self.bytes.extend_from_slice(&chunk[i..i + take]);
                self.literal_left -= take;
                i += take;
                continue;
            }
            let b = chunk[i];
            self.bytes.push(b);
            i += 1;
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
            match support::imap_response::literal_announcement(line) {
                Ok(Some(n)) => self.literal_left = n as usize,
                _ => return Some(chunk[i..].to_vec()),
            }
            self.line.clear();
        }
        None
    }
}

/// Removes the APPENDUID code from a response line, keeping every other byte.
/// An untagged STATUS line with its MESSAGES count set to 0; any other line as it is.
fn status_without_messages(line: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(line);
    if !text.starts_with("* STATUS ") {
        return line.to_vec();
    }
    let Some(at) = text.find("MESSAGES ") else {
        return line.to_vec();
    };
    let digits = at + "MESSAGES ".len();
    let end = text[digits..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(text.len(), |n| digits + n);
    format!("{}0{}", &text[..digits], &text[end..]).into_bytes()
}

fn without_appenduid(line: &[u8]) -> Vec<u8> {
    let needle = b"[APPENDUID ";
    let Some(at) = line.windows(needle.len()).position(|w| w == needle) else {
        return line.to_vec();
    };
    let Some(close) = line[at..].iter().position(|&b| b == b']') else {
        return line.to_vec();
    };
    let mut end = at + close + 1;
    if line.get(end) == Some(&b' ') {
        end += 1;
    }
    let mut out = line[..at].to_vec();
    out.extend_from_slice(&line[end..]);
    out
}

/// Follows an IMAP byte stream (lines and the literals they announce) to tell which bytes
/// are literal content, so that a cut can be placed inside a literal for sure.
#[derive(Default)]
struct LiteralTracker {
    remaining: u64,
    /// The end of the current line (enough to see a `{N}` announcement).
    line_tail: Vec<u8>,
}

impl LiteralTracker {
    /// Feeds the next bytes; returns the ranges of `bytes` that are literal content.
    fn feed(&mut self, bytes: &[u8]) -> Vec<(usize, usize)> {
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if self.remaining > 0 {
                let take = (self.remaining as usize).min(bytes.len() - i);
                ranges.push((i, i + take));
                i += take;
                self.remaining -= take as u64;
                continue;
            }
            match bytes[i..].iter().position(|&b| b == b'\n') {
                Some(p) => {
                    self.line_tail.extend_from_slice(&bytes[i..i + p + 1]);
                    i += p + 1;
                    let line = self
                        .line_tail
                        .strip_suffix(b"\r\n")
                        .unwrap_or(&self.line_tail);
                    self.remaining = support::imap_response::literal_announcement(line)
                        .ok()
                        .flatten()
                        .unwrap_or(0);
                    self.line_tail.clear();
                }
                None => {
                    self.line_tail.extend_from_slice(&bytes[i..]);
                    let keep = self.line_tail.len().saturating_sub(32);
                    self.line_tail.drain(..keep);
                    i = bytes.len();
                }
            }
        }
        ranges
    }
}

/// Where to cut a chunk that starts at stream offset `start`: strictly inside a literal,
/// at or after stream offset `limit`.
fn cut_point(ranges: &[(usize, usize)], start: usize, limit: usize) -> Option<usize> {
    ranges.iter().find_map(|&(a, b)| {
        let at = a.max(limit.saturating_sub(start)) + 1;
        (at < b).then_some(at)
    })
}

struct Relay {
    addr: std::net::SocketAddr,
    /// Bytes the server sent through the relay, over all connections.
    downstream: Arc<std::sync::atomic::AtomicUsize>,
    cuts: Arc<std::sync::atomic::AtomicUsize>,
    throttled: Arc<std::sync::atomic::AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

fn relay(upstream: std::net::SocketAddr, faults: Faults) -> Relay {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("relay runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("relay binds");
    let addr = listener.local_addr().expect("relay address");
    let cuts = Arc::new(AtomicUsize::new(0));
    let throttled = Arc::new(AtomicUsize::new(0));
    let (c2, t2) = (cuts.clone(), throttled.clone());
    let down_total = Arc::new(AtomicUsize::new(0));
    let downstream = down_total.clone();
    let up_total = Arc::new(AtomicUsize::new(0));
    runtime.spawn(async move {
        let mut n = 0usize;
        while let Ok((mut client, _)) = listener.accept().await {
            n += 1;
            let first = n == 1;
            let (cuts, throttled) = (c2.clone(), t2.clone());
            let (down_total, up_total) = (down_total.clone(), up_total.clone());
            tokio::spawn(async move {
                if first && faults.bye_first_greeting {
                    let _ = client.write_all(b"* BYE Too many connections from this IP\r\n").await;
                    return;
                }
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { return };
                let (mut cr, cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let cw = Arc::new(tokio::sync::Mutex::new(cw));
                let cw_down = cw.clone();
                let cuts_down = cuts.clone();
                let down = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut pending_line: Vec<u8> = Vec::new();
                    let mut down_literals = LiteralTracker::default();
                    loop {
                        let Ok(k) = sr.read(&mut buf).await else { return };
                        if k == 0 { return; }
                        if faults.strip_appenduid || faults.status_says_empty {
                            down_total.fetch_add(k, Ordering::SeqCst);
                            pending_line.extend_from_slice(&buf[..k]);
                            let mut out = Vec::new();
                            while let Some(end) = pending_line.windows(2).position(|w| w == b"\r\n") {
                                let one: Vec<u8> = pending_line.drain(..end + 2).collect();
                                let one = if faults.status_says_empty { status_without_messages(&one) } else { one };
                                out.extend(if faults.strip_appenduid { without_appenduid(&one) } else { one });
                            }
                            if cw_down.lock().await.write_all(&out).await.is_err() { return; }
                            continue;
                        }
                        let total = down_total.fetch_add(k, Ordering::SeqCst);
                        let literals = down_literals.feed(&buf[..k]);
                        if let Some(limit) = faults.cut_downstream_after
                            && total + k > limit
                            && let Some(cut) = cut_point(&literals, total, limit)
                            && cuts_down.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst).is_ok()
                        {
                            let _ = cw_down.lock().await.write_all(&buf[..cut]).await;
                            return;
                        }
                        if cw_down.lock().await.write_all(&buf[..k]).await.is_err() { return; }
                    }
                };
                let up = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut line = Vec::new();
                    let mut up_literals = LiteralTracker::default();
                    loop {
                        let Ok(k) = cr.read(&mut buf).await else { return };
                        if k == 0 { return; }
                        if let Some((hold, deliver)) = faults.late_append {
                            // Forward line by line until the first APPEND; collect it whole.
                            line.extend_from_slice(&buf[..k]);
                            while let Some(end) = line.windows(2).position(|w| w == b"\r\n") {
                                let head = String::from_utf8_lossy(&line[..end]).to_ascii_uppercase();
                                if !head.contains(" APPEND ") || cuts.load(Ordering::SeqCst) > 0 {
                                    let one: Vec<u8> = line.drain(..end + 2).collect();
                                    if sw.write_all(&one).await.is_err() { return; }
                                    continue;
                                }
                                cuts.fetch_add(1, Ordering::SeqCst);
                                let mut command = CommandCollector::default();
                                let mut rest = command.feed(&std::mem::take(&mut line));
                                while rest.is_none() {
                                    let Ok(k) = cr.read(&mut buf).await else { return };
                                    if k == 0 { return; }
                                    rest = command.feed(&buf[..k]);
                                }
                                tokio::time::sleep(hold).await;
                                let _ = cw.lock().await.shutdown().await;
                                let held = command.bytes;
                                tokio::spawn(async move {
                                    tokio::time::sleep(deliver).await;
                                    let _ = sw.write_all(&held).await;
                                    // Keep the session open while the server commits.
                                    tokio::time::sleep(Duration::from_secs(3)).await;
                                });
                                return;
                            }
                            continue;
                        }
                        let total = up_total.fetch_add(k, Ordering::SeqCst);
                        let literals = up_literals.feed(&buf[..k]);
                        if let Some(limit) = faults.cut_upstream_after
                            && total + k > limit
                            && let Some(cut) = cut_point(&literals, total, limit)
                            && cuts.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst).is_ok()
                        {
                            let _ = sw.write_all(&buf[..cut]).await;
                            return;
                        }
                        if faults.throttle_selects == 0 {
                            if sw.write_all(&buf[..k]).await.is_err() { return; }
                            continue;
                        }
                        // Line by line, so that a SELECT can be answered here.
                        line.extend_from_slice(&buf[..k]);
                        while let Some(end) = line.windows(2).position(|w| w == b"\r\n") {
                            let one: Vec<u8> = line.drain(..end + 2).collect();
                            let text = String::from_utf8_lossy(&one).to_ascii_uppercase();
                            let is_select = text.contains(" EXAMINE ") || text.contains(" SELECT ");
                            if is_select && throttled.load(Ordering::SeqCst) < faults.throttle_selects {
                                throttled.fetch_add(1, Ordering::SeqCst);
                                let tag = text.split(' ').next().unwrap_or("*").to_owned();
                                let reply = format!("{tag} NO [THROTTLED] Request is throttled. Suggested Backoff Time: 200 milliseconds\r\n");
                                let _ = cw.lock().await.write_all(reply.as_bytes()).await;
                                continue;
                            }
                            if sw.write_all(&one).await.is_err() { return; }
                        }
                    }
                };
                tokio::select! { () = down => {}, () = up => {} }
            });
        }
    });
    Relay {
        addr,
        downstream,
        cuts,
        throttled,
        _runtime: runtime,
    }
}

#[test]
fn connections_cut_mid_literal_on_both_sides_lose_and_double_nothing() {
    let h = start(300, 16);
    let source = relay(
        h.source.plain_addr(),
        Faults {
            cut_downstream_after: Some(120_000),
            ..Faults::default()
        },
    );
    let target = relay(
        h.target.plain_addr(),
        Faults {
            cut_upstream_after: Some(300_000),
            ..Faults::default()
        },
    );
    let mut opts = options();
    opts.connections = 1;
    let job = job_between(&h, source.addr, target.addr, opts);
    let summary = run(&job, &h.store, PassKind::Initial);
    use std::sync::atomic::Ordering;
    assert_eq!(
        source.cuts.load(Ordering::SeqCst),
        1,
        "the source relay cut once"
    );
    assert_eq!(
        target.cuts.load(Ordering::SeqCst),
        1,
        "the target relay cut once"
    );
    assert!(summary.retries >= 2, "{summary:?}");
    assert!(pending(&h.store, h.mailbox).is_empty());
    assert_identical(&h);
}

#[test]
fn throttling_and_too_many_connections_are_waited_out() {
    let h = start(120, 17);
    let source = relay(
        h.source.plain_addr(),
        Faults {
            throttle_selects: 2,
            bye_first_greeting: true,
            ..Faults::default()
        },
    );
    let target = relay(
        h.target.plain_addr(),
        Faults {
            throttle_selects: 1,
            ..Faults::default()
        },
    );
    let job = job_between(&h, source.addr, target.addr, options());
    let summary = run(&job, &h.store, PassKind::Initial);
    use std::sync::atomic::Ordering;
    assert_eq!(source.throttled.load(Ordering::SeqCst), 2);
    assert_eq!(target.throttled.load(Ordering::SeqCst), 1);
    // A throttled SELECT is sent again on its connection after the suggested back-off:
    // no folder had to start over on new connections.
    assert_eq!(summary.retries, 0, "{summary:?}");
    assert!(
        summary.source_commands.connects >= 2,
        "the BYE was retried: {summary:?}"
    );
    // The three suggested back-offs of 200 ms were waited out, and the pass says so (the
    // BYE's reconnect waits too, which the bound below allows for).
    assert!(
        summary.throttle_wait >= Duration::from_millis(600),
        "{summary:?}"
    );
    assert_eq!(summary.rate_limit_wait, Duration::ZERO, "{summary:?}");
    let recorded = pass_history(&h.store, h.mailbox);
    let last = recorded.last().expect("a recorded pass");
    assert_eq!(
        u128::from(last.throttle_wait_ms),
        summary.throttle_wait.as_millis(),
        "{last:?}"
    );
    assert_identical(&h);
}

#[test]
fn a_target_without_uidplus_and_multiappend_is_reconciled_by_fingerprint() {
    // The target announces neither UIDPLUS nor MULTIAPPEND, and the relay removes the
    // APPENDUID codes Dovecot sends anyway: every group is found by fingerprint.
    let caps = "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ NAMESPACE CONDSTORE LIST-EXTENDED LIST-STATUS SPECIAL-USE";
    let h = start_with(120, 20, Some(&format!("{LONG_KEYWORDS}\n{caps}")));
    let target = relay(
        h.target.plain_addr(),
        Faults {
            strip_appenduid: true,
            ..Faults::default()
        },
    );
    let job = job_between(&h, h.source.plain_addr(), target.addr, options());
    let summary = run(&job, &h.store, PassKind::Initial);
    assert_eq!(summary.copied as usize, h.corpus.len(), "{summary:?}");
    assert_eq!(
        summary.target_commands.appends as usize,
        h.corpus.len(),
        "one APPEND per message without MULTIAPPEND: {summary:?}"
    );
    assert_eq!(
        summary.reconciled as usize,
        h.corpus.len(),
        "found by fingerprint: {summary:?}"
    );
    assert_identical(&h);
    let again = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(again.copied, 0, "{again:?}");
}

#[test]
fn an_append_the_server_commits_after_the_connection_broke_is_found_not_sent_again() {
    // The first group's APPEND reaches the server 3 s after it began, and the link breaks
    // before the answer; the server gets the last bytes and commits 0.5 s after this side
    // dropped the connection. The settle time (2 s) counted from the group's begin would
    // be over by then, and the reconcile would miss the commit and append the group
    // twice; counted from the drop, the reconcile sees the commit.
    let h = start(60, 23);
    let target = relay(
        h.target.plain_addr(),
        Faults {
            late_append: Some((Duration::from_secs(3), Duration::from_millis(500))),
            ..Faults::default()
        },
    );
    let mut opts = options();
    opts.connections = 1;
    let job = job_between(&h, h.source.plain_addr(), target.addr, opts);
    let summary = run(&job, &h.store, PassKind::Initial);
    use std::sync::atomic::Ordering;
    assert_eq!(
        target.cuts.load(Ordering::SeqCst),
        1,
        "the relay held one APPEND"
    );
    assert!(summary.retries >= 1, "{summary:?}");
    assert!(
        summary.reconciled >= 1,
        "the late commit was found: {summary:?}"
    );
    assert!(pending(&h.store, h.mailbox).is_empty());
    assert_identical(&h);
}

#[test]
fn appenduid_is_removed_from_a_line_without_touching_the_rest() {
    assert_eq!(
        without_appenduid(b"A7 OK [APPENDUID 1700 5:9] Append completed.\r\n"),
        b"A7 OK Append completed.\r\n".to_vec()
    );
    assert_eq!(
        without_appenduid(b"* 1 FETCH (UID 3)\r\n"),
        b"* 1 FETCH (UID 3)\r\n".to_vec()
    );
}

/// Messages of `folder` on `server` and how many carry `\Deleted`.
fn count_with_deleted(server: &Dovecot, folder: &str) -> (usize, usize) {
    let all = messages_of(server, folder);
    let deleted = all
        .iter()
        .filter(|m| {
            m.flags
                .iter()
                .flatten()
                .any(|f| f.eq_ignore_ascii_case("\\Deleted"))
        })
        .count();
    (all.len(), deleted)
}

#[test]
fn source_deletions_stay_on_the_target_unless_mirrored() {
    let h = start(100, 21);
    let keep = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    run(&keep, &h.store, PassKind::Initial);
    let (before, deleted_before) = count_with_deleted(&h.target, "INBOX");
    let source_before = messages_of(&h.source, "INBOX");
    let victim = source_before
        .iter()
        .find(|m| {
            !m.flags
                .iter()
                .flatten()
                .any(|f| f.eq_ignore_ascii_case("\\Deleted"))
        })
        .and_then(|m| m.uid)
        .expect("a message not yet flagged deleted");
    let mut s = h
        .source
        .connect_master(DEFAULT_USER)
        .expect("source client");
    s.select("INBOX").expect("select");
    let store = format!("UID STORE {victim} +FLAGS.SILENT (\\Deleted)");
    s.run("delete one", &[support::imap_client::Arg::Raw(&store)])
        .expect("flag");
    s.run("expunge", &[support::imap_client::Arg::Raw("EXPUNGE")])
        .expect("expunge");
    s.logout().expect("logout");
    // EXPUNGE also removes the corpus's messages already flagged \Deleted.
    let expunged = (source_before.len() - messages_of(&h.source, "INBOX").len()) as u64;
    assert!(expunged >= 1);

    // Default: as Exchange does, the target keeps what the source deleted.
    let summary = run(&keep, &h.store, PassKind::Incremental);
    assert_eq!(summary.deleted, 0, "{summary:?}");
    assert_eq!(
        count_with_deleted(&h.target, "INBOX"),
        (before, deleted_before)
    );

    // Mirrored: the target's copies are expunged (UID EXPUNGE, Dovecot has UIDPLUS) and
    // forgotten by the map; the source expunged every \Deleted message of the corpus,
    // so the target's INBOX now holds exactly what the source's does.
    let mut opts = options();
    opts.mirror_deletions = true;
    let mirror = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), opts);
    let summary = run(&mirror, &h.store, PassKind::Incremental);
    assert_eq!(summary.deleted, expunged, "{summary:?}");
    assert_eq!(
        count_with_deleted(&h.target, "INBOX"),
        (
            before - expunged as usize,
            deleted_before + 1 - expunged as usize
        )
    );
    assert_identical(&h);
    let again = run(&mirror, &h.store, PassKind::Incremental);
    assert_eq!(again.deleted + again.copied, 0, "{again:?}");
}

// ---- deletion mirroring: UID EXPUNGE of our copies only (item: UIDPLUS expunge) ----

/// Deletes `uid` on `server`'s `folder` with UID EXPUNGE, leaving other `\Deleted`
/// messages in place.
fn uid_expunge_one(server: &Dovecot, folder: &str, uid: u32) {
    let mut c = server.connect_master(DEFAULT_USER).expect("client");
    c.select(folder).expect("select");
    let store = format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)");
    c.run("flag", &[support::imap_client::Arg::Raw(&store)])
        .expect("flag");
    let expunge = format!("UID EXPUNGE {uid}");
    c.run("uid expunge", &[support::imap_client::Arg::Raw(&expunge)])
        .expect("uid expunge");
    c.logout().expect("logout");
}

fn has_deleted_flag(m: &support::imap_client::FetchedMessage) -> bool {
    m.flags
        .iter()
        .flatten()
        .any(|f| f.eq_ignore_ascii_case("\\Deleted"))
}

/// A source message of INBOX without `\Deleted` other than `not`, and its target UID.
fn unflagged_pair(h: &Harness, folder: imapmirror_storage::FolderId, not: &[u32]) -> (u32, u32) {
    messages_of(&h.source, "INBOX")
        .iter()
        .filter(|m| !has_deleted_flag(m))
        .filter_map(|m| m.uid)
        .filter(|u| !not.contains(u))
        .find_map(|u| uid_map_get(&h.store, folder, u).map(|e| (u, e.target_uid)))
        .expect("an unflagged, copied message")
}

#[test]
fn mirrored_deletions_expunge_only_our_copies_and_spare_the_users_deleted() {
    let h = start(80, 41);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    run(&job, &h.store, PassKind::Initial);
    let inbox = find_folder(&h.store, h.mailbox, "INBOX").expect("INBOX is known");
    let (victim, victim_copy) = unflagged_pair(&h, inbox, &[]);
    let (_, users_pick) = unflagged_pair(&h, inbox, &[victim]);
    let target_before = messages_of(&h.target, "INBOX");
    let flagged_before: Vec<u32> = target_before
        .iter()
        .filter(|m| has_deleted_flag(m))
        .filter_map(|m| m.uid)
        .collect();
    assert!(
        !flagged_before.is_empty(),
        "the corpus copies some \\Deleted messages: they must survive too"
    );

    // On the target the user flags one message \Deleted and keeps it; on the source one
    // message is deleted (UID EXPUNGE, so the corpus's \Deleted ones stay there too).
    let mut t = h
        .target
        .connect_master(DEFAULT_USER)
        .expect("target client");
    t.select("INBOX").expect("select");
    let store = format!("UID STORE {users_pick} +FLAGS.SILENT (\\Deleted)");
    t.run("user flags", &[support::imap_client::Arg::Raw(&store)])
        .expect("flag");
    t.logout().expect("logout");
    uid_expunge_one(&h.source, "INBOX", victim);

    // Off: nothing leaves the target.
    let summary = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(summary.deleted, 0, "{summary:?}");
    let after_off = messages_of(&h.target, "INBOX");
    assert_eq!(after_off.len(), target_before.len());
    assert!(after_off.iter().any(|m| m.uid == Some(victim_copy)));

    // On: exactly the victim's copy goes.
    let mut opts = options();
    opts.mirror_deletions = true;
    let mirror = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), opts);
    let summary = run(&mirror, &h.store, PassKind::Incremental);
    assert_eq!(summary.deleted, 1, "{summary:?}");
    let after = messages_of(&h.target, "INBOX");
    assert_eq!(after.len(), target_before.len() - 1);
    assert!(
        !after.iter().any(|m| m.uid == Some(victim_copy)),
        "the source's deletion is mirrored"
    );
    let kept = after
        .iter()
        .find(|m| m.uid == Some(users_pick))
        .expect("the user's \\Deleted message is not expunged");
    assert!(has_deleted_flag(kept), "and keeps its flag");
    for uid in &flagged_before {
        assert!(
            after.iter().any(|m| m.uid == Some(*uid)),
            "copied \\Deleted message {uid} stays"
        );
    }
    assert_eq!(
        uid_map_get(&h.store, inbox, victim),
        None,
        "the map forgets the deleted message"
    );
    let again = run(&mirror, &h.store, PassKind::Incremental);
    assert_eq!(again.deleted + again.copied, 0, "{again:?}");
}

#[test]
fn without_uidplus_mirrored_deletions_stay_flagged_deleted() {
    // The target announces no UIDPLUS (and the relay strips the APPENDUID codes Dovecot
    // sends anyway): mirroring a deletion may only flag the copy, never EXPUNGE.
    let caps = "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ NAMESPACE CONDSTORE LIST-EXTENDED LIST-STATUS SPECIAL-USE MULTIAPPEND";
    let h = start_with(40, 42, Some(&format!("{LONG_KEYWORDS}\n{caps}")));
    let target = relay(
        h.target.plain_addr(),
        Faults {
            strip_appenduid: true,
            ..Faults::default()
        },
    );
    let mut opts = options();
    opts.mirror_deletions = true;
    let job = job_between(&h, h.source.plain_addr(), target.addr, opts);
    run(&job, &h.store, PassKind::Initial);
    let inbox = find_folder(&h.store, h.mailbox, "INBOX").expect("INBOX is known");
    let (victim, victim_copy) = unflagged_pair(&h, inbox, &[]);
    let before = messages_of(&h.target, "INBOX").len();
    uid_expunge_one(&h.source, "INBOX", victim);
    let summary = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(summary.deleted, 1, "{summary:?}");
    let after = messages_of(&h.target, "INBOX");
    assert_eq!(after.len(), before, "nothing is expunged without UIDPLUS");
    let copy = after
        .iter()
        .find(|m| m.uid == Some(victim_copy))
        .expect("the copy stays");
    assert!(has_deleted_flag(copy), "flagged \\Deleted instead");
}

// ---- skipped items: subject of too-large messages, mailbox-wide bad-item limit ----

#[test]
fn too_large_items_are_recorded_with_subject_from_and_date() {
    let h = start(30, 43);
    let mut c = h.source.connect_master(DEFAULT_USER).expect("client");
    let mut big = big_message(300_000, 9);
    // A folded, encoded Subject in place of the plain one.
    let plain = b"Subject: big one 9\r\n".to_vec();
    let at = big
        .windows(plain.len())
        .position(|w| w == plain)
        .expect("subject line");
    big.splice(
        at..at + plain.len(),
        b"Subject: =?UTF-8?Q?gro=C3=9F?=\r\n attachment\r\nDate: Sun, 14 Mar 2021 09:26:53 +0100\r\n"
            .iter()
            .copied(),
    );
    let big_uid = c
        .append("INBOX", &[], None, &big)
        .expect("append big")
        .expect("APPENDUID")
        .uid;
    let huge_uid = c
        .append("INBOX", &[], None, &big_message(2_000_000, 10))
        .expect("append huge")
        .expect("APPENDUID")
        .uid;
    c.logout().expect("logout");
    let mut opts = options();
    opts.max_message_size = Some(250_000);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), opts);
    let summary = run(&job, &h.store, PassKind::Initial);
    let skipped = skipped_items(&h.store, h.mailbox);
    let record = |uid: u32| {
        skipped
            .iter()
            .find(|s| s.folder_name == "INBOX" && s.item.source_uid == Some(uid))
            .unwrap_or_else(|| panic!("UID {uid} is skipped: {skipped:?}"))
    };
    let r = record(big_uid);
    assert_eq!(r.item.reason, SkipReason::TooLarge);
    // Unfolded, trimmed, and the RFC 2047 word decoded for the report.
    assert_eq!(r.item.subject.as_deref(), Some("groß attachment"));
    assert_eq!(r.item.from.as_deref(), Some("big@example.test"));
    assert_eq!(
        r.item.sent.map(|t| t.unix_millis()),
        Some(1_615_710_413_000),
        "the Date field, as an instant"
    );
    assert!(r.item.internal_date.is_some(), "{:?}", r.item);
    let r = record(huge_uid);
    assert_eq!(r.item.subject.as_deref(), Some("big one 10"));
    assert_eq!(r.item.sent, None, "no Date field");
    assert!(r.item.internal_date.is_some(), "{:?}", r.item);
    // Every too-large record of the corpus has its subject too (all corpus messages
    // carry one).
    for s in &skipped {
        assert!(s.item.subject.is_some(), "{:?}", s.item);
    }
    assert_eq!(summary.skipped as usize, skipped.len(), "{summary:?}");
}

// ---- UIDVALIDITY rebuild reads 64 KiB per message, not whole bodies ----

#[test]
fn a_rebuild_of_large_messages_reads_only_their_first_64_kib() {
    let h = start(10, 44);
    let date = support::InternalDate::new(1_615_710_413, 60);
    let bodies: Vec<Vec<u8>> = (0..4).map(|k| big_message(1_500_000, 50 + k)).collect();
    // Two byte-identical messages too: the rebuild pairs them once each.
    let mut bodies = bodies;
    bodies.push(bodies[0].clone());
    let seed_folder = |fresh: bool| {
        let mut c = h.source.connect_master(DEFAULT_USER).expect("client");
        if fresh {
            c.run("delete", &[support::imap_client::Arg::Raw("DELETE Big")])
                .expect("delete");
        }
        c.create("Big").expect("create");
        for b in &bodies {
            c.append("Big", &[support::Flag::Seen], Some(date), b)
                .expect("append big");
        }
        c.logout().expect("logout");
    };
    seed_folder(false);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    run(&job, &h.store, PassKind::Initial);
    assert_identical(&h);

    // The source folder comes back with a new UIDVALIDITY and the very same messages.
    seed_folder(true);
    let source = relay(h.source.plain_addr(), Faults::default());
    let target = relay(h.target.plain_addr(), Faults::default());
    let job = job_between(&h, source.addr, target.addr, options());
    let summary = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(summary.copied, 0, "nothing is copied twice: {summary:?}");
    assert_eq!(summary.reconciled as usize, bodies.len(), "{summary:?}");
    use std::sync::atomic::Ordering;
    let read = source.downstream.load(Ordering::SeqCst) + target.downstream.load(Ordering::SeqCst);
    let whole: usize = 2 * bodies.iter().map(Vec::len).sum::<usize>();
    eprintln!("rebuild read {read} bytes from both servers; whole bodies would be {whole}");
    assert!(
        read < 2 * bodies.len() * 64 * 1024 + 200_000,
        "only prefixes were read: {read} bytes of {whole}"
    );
    assert_identical(&h);
    let again = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(again.copied, 0, "{again:?}");
}

#[test]
fn cuts_in_the_middle_of_streamed_messages_resume_from_the_journal() {
    let h = start(20, 22);
    let mut c = h.source.connect_master(DEFAULT_USER).expect("client");
    for seed in [1, 2] {
        c.append("INBOX", &[], None, &big_message(12 * 1024 * 1024, seed))
            .expect("append big");
    }
    c.logout().expect("logout");
    // Cut the source inside the first big FETCH literal, the target inside the
    // second big APPEND literal.
    let source = relay(
        h.source.plain_addr(),
        Faults {
            cut_downstream_after: Some(6_000_000),
            ..Faults::default()
        },
    );
    let target = relay(
        h.target.plain_addr(),
        Faults {
            cut_upstream_after: Some(20_000_000),
            ..Faults::default()
        },
    );
    let mut opts = options();
    opts.connections = 1;
    let job = job_between(&h, source.addr, target.addr, opts);
    let summary = run(&job, &h.store, PassKind::Initial);
    use std::sync::atomic::Ordering;
    assert_eq!(source.cuts.load(Ordering::SeqCst), 1);
    assert_eq!(target.cuts.load(Ordering::SeqCst), 1);
    assert!(summary.retries >= 2, "{summary:?}");
    assert!(pending(&h.store, h.mailbox).is_empty());
    assert_identical(&h);
}

#[test]
fn two_mailboxes_share_endpoint_pools_with_a_connection_limit() {
    const ALICE: &str = "alice@example.test";
    const BOB: &str = "bob@example.test";
    let source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus)
        .user(ALICE, "a")
        .user(BOB, "b")
        .start()
        .expect("source starts");
    let target = Dovecot::builder()
        .label("target")
        .layout(Layout::Fs)
        .user(ALICE, "a")
        .user(BOB, "b")
        .extra_config(LONG_KEYWORDS)
        .start()
        .expect("target starts");
    for (user, seed) in [(ALICE, 31), (BOB, 32)] {
        let corpus = Corpus::generate(CorpusSpec::small(seed).with_messages(120));
        source
            .seed(user, corpus.folders(), corpus.messages())
            .expect("seed");
    }
    let state = tempfile::tempdir().expect("state dir");
    let store = Store::open(state.path()).expect("store");
    add_endpoint(&store, endpoint_settings("src", source.plain_addr())).expect("endpoint");
    add_endpoint(&store, endpoint_settings("tgt", target.plain_addr())).expect("endpoint");
    let row = |email: &str| NewMailbox {
        row: MigrationRow {
            email_address: email.into(),
            user_name: email.into(),
            user_root: None,
            target_user_name: None,
        },
        password: imapmirror_storage::Secret::new("unused"),
        target_password: None,
        refresh_token: None,
    };
    let settings = BatchSettings::new("b2", "src", "tgt");
    let rows = vec![row(ALICE), row(BOB)];
    let batch = store
        .call(move |db| db.create_batch(&settings, &rows))
        .expect("batch");
    // Two connections per endpoint for both jobs together, each job asking for three.
    let limited = |addr, role| {
        let p = pool(addr, role);
        let mut config = p.config().clone();
        config.max_connections = 2;
        Arc::new(EndpointPool::new(config, role).expect("pool"))
    };
    let src_pool = limited(source.plain_addr(), Role::Source);
    let tgt_pool = limited(target.plain_addr(), Role::Target);
    let login = |user: &str| LoginMethod::Login {
        user: format!("{user}*{MASTER_USER}"),
        password: Secret::new(MASTER_PASSWORD),
    };
    let jobs: Vec<MailboxJob> = mailboxes(&store, batch.id)
        .into_iter()
        .map(|m| MailboxJob {
            mailbox: m.id,
            email: m.row.email_address.clone(),
            batch: "b2".into(),
            source: src_pool.clone(),
            target: tgt_pool.clone(),
            source_login: login(&m.row.email_address),
            target_login: login(&m.row.email_address),
            options: options(),
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cancel = CancellationToken::new();
    let results = rt.block_on(futures::future::join_all(
        jobs.iter()
            .map(|j| j.run_pass(&store, PassKind::Initial, &cancel, &|_| {})),
    ));
    for r in results {
        let summary = r.unwrap_or_else(|e| panic!("a pass fails: {e}"));
        assert_eq!(summary.copied, 120, "{summary:?}");
    }
    assert_eq!(src_pool.available(), 2, "every slot is given back");
    assert_eq!(tgt_pool.available(), 2);
    for user in [ALICE, BOB] {
        support::verify_user(&source, &target, user)
            .expect("verifier")
            .assert_equal();
    }
}

/// Figures, not a check: `IMAPMIRROR_BENCH_MESSAGES=N [IMAPMIRROR_BENCH_PROFILE=small]
/// cargo test -p imapmirror-engine --test mirror_dovecot -- --ignored --nocapture throughput`.
#[test]
#[ignore = "a measurement; run it on purpose"]
fn throughput_with_realistic_messages() {
    let messages: usize = std::env::var("IMAPMIRROR_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    for connections in [1usize, 4] {
        let source = Dovecot::builder()
            .label("source")
            .layout(Layout::MaildirPlusPlus)
            .start()
            .expect("source");
        let target = Dovecot::builder()
            .label("target")
            .layout(Layout::Fs)
            .extra_config(LONG_KEYWORDS)
            .start()
            .expect("target");
        let spec = match std::env::var("IMAPMIRROR_BENCH_PROFILE").as_deref() {
            Ok("small") => CorpusSpec::small(41),
            _ => CorpusSpec::realistic(41),
        };
        let corpus = Corpus::generate(spec.with_messages(messages));
        source
            .seed(DEFAULT_USER, corpus.folders(), corpus.messages())
            .expect("seed");
        let state = tempfile::tempdir().expect("state");
        let store = Store::open(state.path()).expect("store");
        let mailbox = register(&store, &source, &target);
        let mut opts = options();
        opts.connections = connections;
        opts.groups = GroupLimits::default();
        let job = MailboxJob {
            mailbox,
            email: DEFAULT_USER.into(),
            batch: "b1".into(),
            source: pool(source.plain_addr(), Role::Source),
            target: pool(target.plain_addr(), Role::Target),
            source_login: master_login(),
            target_login: master_login(),
            options: opts,
        };
        let started = std::time::Instant::now();
        let s = run(&job, &store, PassKind::Initial);
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{connections} connection pair(s): {} messages, {:.1} MB in {secs:.2} s = {:.0} msg/s, {:.1} MB/s; peak read buffer {} B",
            s.copied,
            s.bytes as f64 / 1e6,
            s.copied as f64 / secs,
            s.bytes as f64 / 1e6 / secs,
            s.source_commands
                .peak_buffer
                .max(s.target_commands.peak_buffer)
        );
        let started = std::time::Instant::now();
        let again = run(&job, &store, PassKind::Incremental);
        eprintln!(
            "  unchanged pass: {:?}, {} content commands",
            started.elapsed(),
            again.source_commands.content_commands() + again.target_commands.content_commands()
        );
    }
}

#[test]
fn a_stopped_pass_settles_its_groups_and_resumes() {
    let h = start(300, 23);
    let mut opts = options();
    opts.connections = 1;
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), opts);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    // Stop as soon as the first group reached the target.
    let progress = move |p: imapmirror_engine::Progress| {
        if matches!(p, imapmirror_engine::Progress::Copied { .. }) {
            stopper.cancel();
        }
    };
    let err = rt
        .block_on(job.run_pass(&h.store, PassKind::Initial, &cancel, &progress))
        .expect_err("the pass stops");
    assert!(
        matches!(err, imapmirror_engine::Error::Stopped { .. }),
        "{err}"
    );
    assert_eq!(
        mailbox_record(&h.store, h.mailbox).status,
        imapmirror_storage::MailboxStatus::Stopped
    );
    assert!(
        pending(&h.store, h.mailbox).is_empty(),
        "groups in flight were settled before stopping"
    );
    let mailbox = h.mailbox;
    let copied_before = h
        .store
        .call(move |db| db.mailbox_counters(mailbox))
        .expect("counters")
        .messages;
    assert!(copied_before > 0 && (copied_before as usize) < h.corpus.len());
    let rest = run(&job, &h.store, PassKind::Initial);
    assert_eq!(
        rest.copied + copied_before,
        h.corpus.len() as u64,
        "{rest:?}"
    );
    assert_identical(&h);
}

#[test]
fn the_relay_cuts_inside_literals_only() {
    let mut t = LiteralTracker::default();
    let stream = b"* 1 FETCH (UID 5 BODY[] {10}\r\n0123456789)\r\nA1 OK done\r\n";
    let (head, tail) = stream.split_at(20);
    assert!(t.feed(head).is_empty());
    let ranges = t.feed(tail);
    let start = head.len();
    assert_eq!(ranges.len(), 1);
    let (a, b) = ranges[0];
    assert_eq!(&tail[a..b], b"0123456789");
    // A limit before the literal cuts just inside it; one in its last byte cannot cut.
    assert_eq!(cut_point(&ranges, start, 0), Some(a + 1));
    assert_eq!(cut_point(&ranges, start, start + b - 1), None);
    assert_eq!(cut_point(&ranges, start, start + a + 4), Some(a + 5));
}

/// Runs a pass with `progress` watching it (a hook into the pass at a known point).
fn try_run_watched(
    job: &MailboxJob,
    store: &Store,
    kind: PassKind,
    progress: &(dyn Fn(imapmirror_engine::Progress) + Send + Sync),
) -> Result<PassSummary, imapmirror_engine::Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cancel = CancellationToken::new();
    rt.block_on(job.run_pass(store, kind, &cancel, progress))
}

/// Sends one raw command to the source as the test user (DELETE, RENAME).
fn on_source(h: &Harness, command: &str) {
    let mut c = h
        .source
        .connect_master(DEFAULT_USER)
        .expect("source client");
    c.run(command, &[support::imap_client::Arg::Raw(command)])
        .unwrap_or_else(|e| panic!("{command}: {e}"));
    c.logout().expect("logout");
}

/// A watcher that runs `action` once, when the pass starts work on the source folder
/// `folder`: after both LISTs, just before its SELECT/EXAMINE.
fn when_folder_starts<'a>(
    folder: &'a str,
    action: impl Fn() + Send + Sync + 'a,
) -> impl Fn(imapmirror_engine::Progress) + Send + Sync + 'a {
    let fired = std::sync::atomic::AtomicBool::new(false);
    move |p| {
        if let imapmirror_engine::Progress::FolderStarted { folder: f } = &p
            && f == folder
            && !fired.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            action();
        }
    }
}

fn skipped_as_vanished(folder: &str) -> Vec<imapmirror_engine::pass::report::SkippedFolder> {
    vec![imapmirror_engine::pass::report::SkippedFolder {
        folder: folder.into(),
        reason: imapmirror_engine::pass::report::FolderSkipReason::VanishedFromSource,
        detail: None,
    }]
}

#[test]
fn a_source_folder_deleted_between_list_and_select_is_skipped_and_the_pass_ends_synced() {
    let h = start(150, 41);
    let folder = "Archive.2019";
    let saved = messages_of(&h.source, folder);
    assert!(!saved.is_empty(), "the corpus puts mail in {folder}");
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    let delete = when_folder_starts(folder, || on_source(&h, "DELETE Archive.2019"));
    let first = try_run_watched(&job, &h.store, PassKind::Initial, &delete)
        .unwrap_or_else(|e| panic!("a vanished folder does not fail the pass: {e}"));
    assert_eq!(
        first.folders_skipped,
        skipped_as_vanished(folder),
        "{first:?}"
    );
    assert_eq!(
        first.copied as usize,
        h.corpus.len() - saved.len(),
        "every other folder is copied: {first:?}"
    );
    assert_eq!(
        mailbox_record(&h.store, h.mailbox).status,
        imapmirror_storage::MailboxStatus::Synced
    );
    // The pass history says so, for `batch report`.
    let history = pass_history(&h.store, h.mailbox);
    let recorded = &history.last().expect("a pass").folders_skipped;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].folder, folder);
    assert!(recorded[0].reason.contains("vanished"), "{recorded:?}");
    // The target folder (created before the deletion) is left alone, not deleted.
    let mut t = h
        .target
        .connect_master(DEFAULT_USER)
        .expect("target client");
    assert!(
        t.list("", "Archive/2019")
            .expect("LIST")
            .iter()
            .any(|e| e.is_selectable()),
        "the target folder stays"
    );
    t.logout().expect("logout");

    // The folder comes back (a restore): the next pass copies it and nothing else.
    let mut s = h
        .source
        .connect_master(DEFAULT_USER)
        .expect("source client");
    s.create(folder).expect("recreate");
    for m in &saved {
        s.append(
            folder,
            &flags_of(m),
            m.internal_date,
            m.body.as_deref().expect("body"),
        )
        .expect("append back");
    }
    s.logout().expect("logout");
    let second = run(&job, &h.store, PassKind::Incremental);
    assert!(second.folders_skipped.is_empty(), "{second:?}");
    assert_eq!(second.copied as usize, saved.len(), "{second:?}");
    assert_identical(&h);
}

#[test]
fn a_folder_renamed_away_mid_pass_keeps_its_state_and_resumes_when_it_is_back() {
    let h = start(150, 42);
    let folder = "Archive.2019";
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    run(&job, &h.store, PassKind::Initial);
    assert_identical(&h);
    let id =
        find_folder(&h.store, h.mailbox, folder).expect("the folder is known after the first pass");
    let before = folder_state(&h.store, id);
    let mapped = mapped_count(&h.store, id);
    assert!(mapped > 0);

    // New mail makes the folder worth opening; a rename takes it away after the LIST.
    let extra = big_message(4_000, 42);
    let mut s = h
        .source
        .connect_master(DEFAULT_USER)
        .expect("source client");
    s.append(folder, &[], None, &extra).expect("append");
    s.logout().expect("logout");
    let rename = when_folder_starts(folder, || {
        on_source(&h, "RENAME Archive.2019 Archive.2019-moving")
    });
    let second = try_run_watched(&job, &h.store, PassKind::Incremental, &rename)
        .unwrap_or_else(|e| panic!("a vanished folder does not fail the pass: {e}"));
    assert_eq!(
        second.folders_skipped,
        skipped_as_vanished(folder),
        "{second:?}"
    );
    assert_eq!(second.copied, 0, "{second:?}");
    assert_eq!(
        mailbox_record(&h.store, h.mailbox).status,
        imapmirror_storage::MailboxStatus::Synced
    );
    // Its stored state is untouched: same folder record, same marks, same map.
    assert_eq!(find_folder(&h.store, h.mailbox, folder), Some(id));
    let after = folder_state(&h.store, id);
    assert_eq!(after.marks, before.marks);
    assert_eq!(mapped_count(&h.store, id), mapped);
    assert!(
        !messages_of(&h.target, "Archive/2019").is_empty(),
        "the target folder keeps its messages"
    );

    // The rename is undone (same UIDVALIDITY): only the new message is copied, by the
    // stored state, with no rebuild and no duplicate.
    on_source(&h, "RENAME Archive.2019-moving Archive.2019");
    let third = run(&job, &h.store, PassKind::Incremental);
    assert!(third.folders_skipped.is_empty(), "{third:?}");
    assert_eq!(third.copied, 1, "{third:?}");
    assert_eq!(third.reconciled, 0, "{third:?}");
    assert_identical(&h);
}

fn target_folder_names(h: &Harness) -> Vec<String> {
    let mut c = h
        .target
        .connect_master(DEFAULT_USER)
        .expect("target client");
    let mut names: Vec<String> = c
        .list("", "*")
        .expect("LIST")
        .into_iter()
        .map(|e| e.name)
        .collect();
    c.logout().expect("logout");
    names.sort();
    names
}

#[test]
fn a_source_folder_renamed_between_passes_is_renamed_on_the_target_not_copied_again() {
    let h = start(150, 43);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    run(&job, &h.store, PassKind::Initial);
    let parent = find_folder(&h.store, h.mailbox, "Projects").expect("Projects is known");
    let child =
        find_folder(&h.store, h.mailbox, "Projects.Q1 Plan").expect("Projects.Q1 Plan is known");
    let child_before = folder_state(&h.store, child);
    assert!(folder_state(&h.store, parent).counters.messages > 0);
    assert!(child_before.counters.messages > 0);

    // The user renames the parent on the source; its subfolder moves with it (same
    // UIDVALIDITY, same UIDs).
    on_source(&h, "RENAME Projects Work");
    let second = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(second.copied, 0, "nothing is copied again: {second:?}");
    let renamed: Vec<(&str, &str)> = second
        .folders_renamed
        .iter()
        .map(|r| (r.from.as_str(), r.to.as_str()))
        .collect();
    assert_eq!(
        renamed,
        [("Projects", "Work"), ("Projects.Q1 Plan", "Work.Q1 Plan")]
    );
    let last = pass_history(&h.store, h.mailbox).pop().expect("a pass");
    assert_eq!(last.folders_renamed.len(), 2, "{last:?}");
    assert_eq!(second.target_commands.appends, 0, "{second:?}");
    assert_eq!(second.target_commands.creates, 0, "{second:?}");
    let names = target_folder_names(&h);
    assert!(
        names.iter().any(|n| n == "Work") && names.iter().any(|n| n == "Work/Q1 Plan"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("Projects")),
        "the old target folders are renamed, not left beside: {names:?}"
    );
    assert_identical(&h);
    // The state moved with the names: same records, same map.
    assert_eq!(find_folder(&h.store, h.mailbox, "Work"), Some(parent));
    assert_eq!(
        find_folder(&h.store, h.mailbox, "Work.Q1 Plan"),
        Some(child)
    );
    assert!(find_folder(&h.store, h.mailbox, "Projects").is_none());
    let child_after = folder_state(&h.store, child);
    assert_eq!(child_after.counters, child_before.counters);
    assert_eq!(
        child_after.marks.target_name.as_deref(),
        Some("Work/Q1 Plan")
    );

    // New mail in the renamed folder: only it is copied, above the kept watermark.
    let mut s = h
        .source
        .connect_master(DEFAULT_USER)
        .expect("source client");
    s.append("Work.Q1 Plan", &[], None, &big_message(3_000, 43))
        .expect("append");
    s.logout().expect("logout");
    let third = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(third.copied, 1, "{third:?}");
    assert_identical(&h);
}

#[test]
fn a_renamed_parent_whose_subfolder_moved_back_is_copied_and_the_subfolder_kept() {
    let h = start(150, 45);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    run(&job, &h.store, PassKind::Initial);
    let child_count = messages_of(&h.target, "Projects/Q1 Plan").len();
    assert!(child_count > 0);
    // The parent moves; its subfolder is moved back to the old place. Dovecot then lists
    // `Projects` as a parent without mail, so it is not taken for gone; a server that
    // lists no such parent meets `has_children_left_behind` (unit-tested): either way
    // the subfolder's target must stay where its source is.
    on_source(&h, "RENAME Projects Work");
    on_source(&h, "RENAME \"Work.Q1 Plan\" \"Projects.Q1 Plan\"");
    let second = run(&job, &h.store, PassKind::Incremental);
    let names = target_folder_names(&h);
    assert!(
        names.iter().any(|n| n == "Projects/Q1 Plan"),
        "the subfolder stays where its source is: {names:?}"
    );
    assert_eq!(
        messages_of(&h.target, "Projects/Q1 Plan").len(),
        child_count
    );
    assert!(
        second.copied > 0,
        "Work is copied as a new folder: {second:?}"
    );
    assert_eq!(
        messages_of(&h.target, "Work").len(),
        messages_of(&h.source, "Work").len()
    );
    // As before renames were followed: the old target folder stays beside the copy.
    assert!(names.iter().any(|n| n == "Projects"), "{names:?}");
    let third = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(third.copied, 0, "{third:?}");
}

#[test]
fn a_crash_between_recording_a_rename_and_the_target_rename_refills_without_duplicates() {
    let h = start(150, 46);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    run(&job, &h.store, PassKind::Initial);
    on_source(&h, "RENAME Projects Work");
    // What a pass killed right after recording the renames, before its RENAME on the
    // target, leaves: the state under the new names, the target as it was.
    for (old, new, target) in [
        ("Projects", "Work", "Work"),
        ("Projects.Q1 Plan", "Work.Q1 Plan", "Work/Q1 Plan"),
    ] {
        let id = find_folder(&h.store, h.mailbox, old).expect("known");
        h.store
            .call(move |db| db.rename_folder(id, new, target))
            .expect("rename");
    }
    let second = run(&job, &h.store, PassKind::Incremental);
    assert!(second.copied > 0, "{second:?}");
    for folder in ["Work", "Work.Q1 Plan"] {
        let target = folder.replace('.', "/");
        assert_eq!(
            messages_of(&h.target, &target).len(),
            messages_of(&h.source, folder).len(),
            "{folder}: refilled once, no duplicate"
        );
    }
    let third = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(third.copied, 0, "{third:?}");
}

#[test]
fn a_folder_with_the_same_uidvalidity_but_other_messages_is_not_taken_for_a_rename() {
    let h = start(150, 44);
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), options());
    run(&job, &h.store, PassKind::Initial);
    // Projects is deleted and Fresh, with other mail, appears. Dovecot gives Fresh a new
    // UIDVALIDITY; a server that reuses values could give it Projects' old one, which
    // is what the store is made to say here: only the content check stands between
    // the two folders and a wrong rename.
    on_source(&h, "DELETE \"Projects.Q1 Plan\"");
    on_source(&h, "DELETE Projects");
    on_source(&h, "CREATE Fresh");
    let mut s = h
        .source
        .connect_master(DEFAULT_USER)
        .expect("source client");
    s.append("Fresh", &[], None, &big_message(2_000, 44))
        .expect("append");
    let fresh = s.examine("Fresh").expect("examine");
    s.logout().expect("logout");
    let projects = find_folder(&h.store, h.mailbox, "Projects").expect("Projects is known");
    let uidvalidity = fresh.uidvalidity;
    h.store
        .call(move |db| db.update_folder_marks(projects, |m| m.source_uidvalidity = uidvalidity))
        .expect("marks");

    let second = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(
        second.copied, 1,
        "Fresh is copied as a new folder: {second:?}"
    );
    let names = target_folder_names(&h);
    assert!(names.iter().any(|n| n == "Projects"), "{names:?}");
    assert!(names.iter().any(|n| n == "Fresh"), "{names:?}");
    assert_eq!(
        find_folder(&h.store, h.mailbox, "Projects"),
        Some(projects),
        "the old folder's state stays where it was"
    );
}

#[test]
fn a_source_folder_deleted_while_its_messages_are_copied_fails_nothing() {
    let h = start(400, 43);
    // The fullest folder that can be deleted, so that it takes several groups.
    let (path, count) = h
        .corpus
        .folder_counts()
        .into_iter()
        .filter(|(p, _)| !p.is_inbox())
        .max_by_key(|(_, n)| *n)
        .expect("a folder besides INBOX");
    let folder = path.join('.');
    let mut opts = options();
    opts.connections = 1;
    assert!(
        count > opts.groups.max_messages,
        "{folder} has {count} messages"
    );
    let job = job_between(&h, h.source.plain_addr(), h.target.plain_addr(), opts);
    let fired = std::sync::atomic::AtomicBool::new(false);
    let delete = |p: imapmirror_engine::Progress| {
        if let imapmirror_engine::Progress::Copied { folder: f, .. } = &p
            && *f == folder
            && !fired.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            on_source(&h, &format!("DELETE {folder}"));
        }
    };
    let first = try_run_watched(&job, &h.store, PassKind::Initial, &delete)
        .unwrap_or_else(|e| panic!("a vanished folder does not fail the pass: {e}"));
    // Dovecot may still serve the open folder to the session reading it (the copy then
    // completes) or end that session (the retry then finds the folder gone and skips it):
    // either way the pass completes, and nothing is lost or doubled.
    assert!(
        first.folders_skipped.is_empty() || first.folders_skipped == skipped_as_vanished(&folder),
        "{first:?}"
    );
    assert_eq!(
        mailbox_record(&h.store, h.mailbox).status,
        imapmirror_storage::MailboxStatus::Synced
    );
    assert!(
        pending(&h.store, h.mailbox).is_empty(),
        "no group is left pending"
    );
    let id = find_folder(&h.store, h.mailbox, &folder).expect("the folder was registered");
    let mapped = mapped_count(&h.store, id);
    let target_folder = path.join('/');
    assert_eq!(
        messages_of(&h.target, &target_folder).len(),
        mapped,
        "what reached the target is mapped, once"
    );
    assert!(mapped > 0, "{mapped} of {count}");

    // The next pass no longer lists the folder: it completes, and the folder's state and
    // target copy stay for the day it comes back.
    let second = run(&job, &h.store, PassKind::Incremental);
    assert_eq!(second.copied, 0, "{second:?}");
    assert_eq!(
        mailbox_record(&h.store, h.mailbox).status,
        imapmirror_storage::MailboxStatus::Synced
    );
    assert_eq!(find_folder(&h.store, h.mailbox, &folder), Some(id));
    assert_eq!(mapped_count(&h.store, id), mapped);
    assert_eq!(messages_of(&h.target, &target_folder).len(), mapped);
}
