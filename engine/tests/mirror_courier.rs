//! The engine against a real Courier-IMAP 5.0 target: its cap on connections from one
//! address (`MAXPERIP`, Debian: 20) is learnt from the connection it closes unanswered,
//! and the pass keeps under it instead of failing.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use imapmirror_engine::endpoint::credentials::Secret;
use imapmirror_engine::pass::copy_plan::GroupLimits;
use imapmirror_engine::pass::report::FolderSkipReason;
use imapmirror_engine::{
    CancellationToken, EndpointConfig, EndpointPool, JobOptions, LoginMethod, MailboxJob, PassKind,
    PassSummary, ReconnectPolicy, Role,
};
use imapmirror_protocol::client::{Security, SessionConfig, TlsOptions, TlsSettings};
use imapmirror_storage::{BatchSettings, EndpointSettings, MigrationRow, NewMailbox, Store};
use support::{
    Corpus, CorpusSpec, Courier, DEFAULT_USER, Dovecot, Layout, MASTER_PASSWORD, MASTER_USER,
};

const USER_PASSWORD: &str = "Courier-user-pw-8";

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

#[test]
fn a_connection_cap_is_learnt_and_kept_under() {
    let source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus)
        .start()
        .expect("source Dovecot starts");
    // Three connections from one address: fewer than the 4 folders the job syncs at once.
    let target = Courier::builder()
        .label("target")
        .user(DEFAULT_USER, USER_PASSWORD)
        .extra_config("IMAP_EMPTYTRASH=")
        .max_per_ip(3)
        .start()
        .expect("target Courier starts");
    // Enough new mail for all four connection pairs (one per 250 new messages).
    let corpus = Corpus::generate(CorpusSpec::small(31).with_messages(800));
    source
        .seed(DEFAULT_USER, corpus.folders(), corpus.messages())
        .expect("seeding the source");
    let state = tempfile::tempdir().expect("state dir");
    let store = Store::open(state.path()).expect("store opens");
    let mailbox = store
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
                    target_user_name: Some(DEFAULT_USER.into()),
                },
                password: imapmirror_storage::Secret::new("unused"),
                target_password: None,
                refresh_token: None,
            }];
            let batch = db.create_batch(&settings, &rows)?;
            Ok(db.mailboxes(batch.id)?[0].id)
        })
        .expect("batch");
    let job = MailboxJob {
        mailbox,
        email: DEFAULT_USER.into(),
        batch: "b1".into(),
        source: pool(source.plain_addr(), Role::Source),
        target: pool(target.plain_addr(), Role::Target),
        source_login: LoginMethod::Login {
            user: format!("{DEFAULT_USER}*{MASTER_USER}"),
            password: Secret::new(MASTER_PASSWORD),
        },
        target_login: LoginMethod::Login {
            user: DEFAULT_USER.into(),
            password: Secret::new(USER_PASSWORD),
        },
        options: JobOptions {
            connections: 4,
            ..options()
        },
    };
    let first = run(&job, &store, PassKind::Initial);
    assert!(
        target
            .log_tail(400)
            .contains("Maximum connection limit reached"),
        "the test reached Courier's cap:\n{}",
        target.log_tail(40)
    );
    // The pool learnt the cap: it keeps no more slots than Courier allows.
    assert!(
        job.target.available() <= 3,
        "{} target slots left",
        job.target.available()
    );
    // Only folders Courier will not create (a name outside the BMP) are left out.
    assert!(
        first
            .folders_skipped
            .iter()
            .all(|f| f.reason == FolderSkipReason::TargetRefusedCreate),
        "{first:?}"
    );
    let mut c = target
        .user_endpoint(DEFAULT_USER)
        .expect("kit user")
        .connect()
        .expect("target login");
    let mut on_target = 0u64;
    for entry in c.list("", "*").expect("LIST") {
        if entry.is_selectable() {
            on_target += u64::from(c.examine(&entry.name).expect("EXAMINE").exists);
        }
    }
    c.logout().expect("logout");
    assert_eq!(on_target, first.copied, "{first:?}");
    // Everything but the messages of the folders Courier would not create.
    let in_skipped = corpus
        .messages()
        .filter(|m| {
            let name = m.folder.join('.');
            first.folders_skipped.iter().any(|f| f.folder == name)
        })
        .count();
    assert_eq!(
        first.copied,
        (corpus.len() - in_skipped) as u64,
        "{first:?}"
    );
    // Nothing is left for the next pass, and it opens no folder: Courier has no
    // LIST-STATUS, so the target's STATUS answers (asked all at once) tell it so.
    let second = run(&job, &store, PassKind::Incremental);
    assert_eq!(second.copied, 0, "{second:?}");
    assert_eq!(
        second.folders_unchanged,
        second.folders - second.folders_skipped.len(),
        "{second:?}"
    );
    assert_eq!(second.target_commands.selects, 0, "{second:?}");
    assert_eq!(second.source_commands.selects, 0, "{second:?}");
}
