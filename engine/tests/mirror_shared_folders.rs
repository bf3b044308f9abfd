//! Whose folders a mailbox is, against real servers: a Courier `UserRoot` read through the
//! admin's virtual shared folders (the root is INBOX, its children the folders), a
//! `UserRoot` that matches nothing, and Cyrus's shared folders and other users' trees,
//! which are skipped and reported unless included by name. The kit's verifier judges the
//! copies; the target is Dovecot (LAYOUT=fs, `/`).
//!
//! Run as root, after scripts/install-mail-servers: `cargo test -p imapmirror-engine
//! --test mirror_shared_folders`.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use imapmirror_engine::endpoint::credentials::Secret;
use imapmirror_engine::pass::folder_plan::Exclusion;
use imapmirror_engine::pass::report::{FolderSkipReason, SkippedFolder};
use imapmirror_engine::{
    CancellationToken, EndpointConfig, EndpointPool, Error, JobOptions, LoginMethod, MailboxJob,
    PassKind, PassSummary, ReconnectPolicy, Role,
};
use imapmirror_protocol::client::{Security, SessionConfig, TlsOptions, TlsSettings};
use imapmirror_storage::{
    BatchSettings, EndpointSettings, MailboxId, MailboxStatus, MigrationRow, NewMailbox, Store,
};
use support::imap_client::Arg;
use support::message_flag::Flag;
use support::{
    Courier, Cyrus, CyrusNamespace, Dovecot, ImapClient, InternalDate, Layout, MASTER_PASSWORD,
    MASTER_USER, Verifier,
};

const ALICE: &str = "alice@example.test";
const ALICE_PW: &str = "alice pw";
const BOB: &str = "bob@example.test";
const BOB_PW: &str = "bob-pw";

fn message(folder: &str, n: usize) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.test>\r\n\
         To: Alice <alice@example.test>\r\n\
         Subject: {folder} #{n}\r\n\
         Date: Tue, 02 Jan 2024 10:00:00 +0100\r\n\
         Message-ID: <{n}.{}@kit.example.test>\r\n\
         \r\n\
         Message {n} of {folder}.\r\n",
        folder.replace(' ', "_")
    )
    .into_bytes()
}

/// Appends `count` messages with varied flags, keywords and dates.
fn fill(client: &mut ImapClient, folder: &str, count: usize) {
    for n in 0..count {
        let mut flags = Vec::new();
        if n % 2 == 0 {
            flags.push(Flag::Seen);
        }
        if n % 3 == 0 {
            flags.push(Flag::Flagged);
        }
        if n % 4 == 1 {
            flags.push(Flag::Keyword("$Label1".to_owned()));
        }
        let date =
            InternalDate::from_civil(2023, 1 + (n % 12) as u32, 1 + n as u32 % 28, (9, 30, 0), 60)
                .expect("a date");
        client
            .append(folder, &flags, Some(date), &message(folder, n))
            .unwrap_or_else(|e| panic!("APPEND to {folder}: {e}"));
    }
}

/// `SETACL mailbox who rights` (RFC 4314).
fn set_acl(client: &mut ImapClient, mailbox: &str, who: &str, rights: &str) {
    client
        .run(
            "SETACL",
            &[
                Arg::Raw("SETACL"),
                Arg::Str(mailbox.as_bytes()),
                Arg::Str(who.as_bytes()),
                Arg::Raw(rights),
            ],
        )
        .unwrap_or_else(|e| panic!("SETACL {mailbox} {who}: {e}"));
}

fn endpoint_settings(name: &str, addr: std::net::SocketAddr) -> EndpointSettings {
    EndpointSettings::new(
        name,
        addr.ip().to_string(),
        addr.port(),
        imapmirror_storage::Security::None,
    )
}

/// A state directory with one batch of one mailbox whose row has `user_root`.
fn register(
    source: std::net::SocketAddr,
    target: std::net::SocketAddr,
    email: &str,
    user_root: Option<&str>,
) -> (tempfile::TempDir, Store, MailboxId) {
    let state = tempfile::tempdir().expect("state dir");
    let store = Store::open(state.path()).expect("store opens");
    for settings in [
        endpoint_settings("src", source),
        endpoint_settings("tgt", target),
    ] {
        store
            .call(move |db| db.add_endpoint(&settings, None))
            .expect("endpoint");
    }
    let settings = BatchSettings::new("b1", "src", "tgt");
    let rows = vec![NewMailbox {
        row: MigrationRow {
            email_address: email.into(),
            user_name: email.into(),
            user_root: user_root.map(str::to_owned),
            target_user_name: None,
        },
        password: imapmirror_storage::Secret::new("unused"),
        target_password: None,
        refresh_token: None,
    }];
    let batch = store
        .call(move |db| db.create_batch(&settings, &rows))
        .expect("batch");
    let mailbox = store
        .call(move |db| db.mailboxes(batch.id))
        .expect("mailboxes")[0]
        .id;
    (state, store, mailbox)
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

fn dovecot_master(user: &str) -> LoginMethod {
    LoginMethod::Login {
        user: format!("{user}*{MASTER_USER}"),
        password: Secret::new(MASTER_PASSWORD),
    }
}

fn try_run(job: &MailboxJob, store: &Store) -> Result<PassSummary, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cancel = CancellationToken::new();
    rt.block_on(job.run_pass(store, PassKind::Initial, &cancel, &|_| {}))
}

fn dovecot_target() -> Dovecot {
    Dovecot::builder()
        .label("target")
        .layout(Layout::Fs)
        .user(ALICE, ALICE_PW)
        .start()
        .expect("target Dovecot starts")
}

/// `INBOX.a.b` as the Courier user sees it → `a/b` on the Dovecot target.
fn courier_to_dovecot(name: &str, _source: Option<char>, _target: Option<char>) -> Option<String> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Some("INBOX".to_owned());
    }
    Some(name.strip_prefix("INBOX.")?.replace('.', "/"))
}

#[test]
fn courier_user_root_is_the_inbox_and_its_children_the_folders() {
    let courier = Courier::builder()
        .label("source")
        .user(ALICE, ALICE_PW)
        .user(BOB, BOB_PW)
        .start()
        .expect("Courier starts");
    let target = dovecot_target();
    let mut alice = courier.connect_user(ALICE).expect("alice logs in");
    for folder in ["INBOX.Work", "INBOX.Work.2024", "INBOX.Sent"] {
        alice.create(folder).expect("CREATE");
    }
    fill(&mut alice, "INBOX", 12);
    fill(&mut alice, "INBOX.Work", 7);
    fill(&mut alice, "INBOX.Work.2024", 5);
    fill(&mut alice, "INBOX.Sent", 3);
    alice.logout().expect("logout");
    // Bob's mail is beside Alice's under #shared.; none of it is hers.
    let mut bob = courier.connect_user(BOB).expect("bob logs in");
    fill(&mut bob, "INBOX", 4);
    bob.logout().expect("logout");

    let root = courier.shared_root(ALICE);
    let (_state, store, mailbox) = register(
        courier.plain_addr(),
        target.plain_addr(),
        ALICE,
        Some(&root),
    );
    let (admin, admin_pw) = courier.admin();
    let job = MailboxJob {
        mailbox,
        email: ALICE.into(),
        batch: "b1".into(),
        source: pool(courier.plain_addr(), Role::Source),
        target: pool(target.plain_addr(), Role::Target),
        source_login: LoginMethod::Login {
            user: admin.to_owned(),
            password: Secret::new(admin_pw),
        },
        target_login: dovecot_master(ALICE),
        options: JobOptions {
            user_root: Some(root.clone()),
            ..JobOptions::default()
        },
    };
    let first = try_run(&job, &store).unwrap_or_else(|e| panic!("the pass fails: {e}"));
    assert_eq!(first.copied, 12 + 7 + 5 + 3, "{first:?}");
    assert_eq!(first.folders, 4, "{first:?}");
    assert!(first.folders_skipped.is_empty(), "{first:?}");
    Verifier::new()
        .with_folder_map(courier_to_dovecot)
        .compare(
            &courier.user_endpoint(ALICE).expect("alice"),
            &target.master_endpoint(ALICE).expect("target"),
        )
        .expect("verifier runs")
        .assert_equal();

    // A second pass copies nothing again: the root listing is stable. (Courier has no
    // CONDSTORE, so each folder is still opened to compare flags.)
    let second = try_run(&job, &store).unwrap_or_else(|e| panic!("the pass fails: {e}"));
    assert_eq!((second.folders, second.copied), (4, 0), "{second:?}");
}

#[test]
fn courier_user_root_that_matches_nothing_fails_the_mailbox() {
    let courier = Courier::builder()
        .label("source")
        .user(ALICE, ALICE_PW)
        .start()
        .expect("Courier starts");
    let target = dovecot_target();
    let wrong = "#shared.alicia@example test";
    let (_state, store, mailbox) = register(
        courier.plain_addr(),
        target.plain_addr(),
        ALICE,
        Some(wrong),
    );
    let (admin, admin_pw) = courier.admin();
    let job = MailboxJob {
        mailbox,
        email: ALICE.into(),
        batch: "b1".into(),
        source: pool(courier.plain_addr(), Role::Source),
        target: pool(target.plain_addr(), Role::Target),
        source_login: LoginMethod::Login {
            user: admin.to_owned(),
            password: Secret::new(admin_pw),
        },
        target_login: dovecot_master(ALICE),
        options: JobOptions {
            user_root: Some(wrong.into()),
            ..JobOptions::default()
        },
    };
    let e = try_run(&job, &store).expect_err("a UserRoot matching nothing must fail");
    let text = e.to_string();
    assert!(matches!(e, Error::UserRootMatchesNothing { .. }), "{e:?}");
    for part in [
        format!("`{wrong}`"),
        format!("LIST \"\" \"{wrong}\" and LIST \"\" \"{wrong}.*\""),
        courier.plain_addr().to_string(),
    ] {
        assert!(text.contains(&part), "{part:?} not in: {text}");
    }
    let record = store
        .call(move |db| db.mailbox(mailbox))
        .expect("mailbox record");
    assert_eq!(record.status, MailboxStatus::Failed);
    assert_eq!(record.last_error.as_deref(), Some(text.as_str()));
    eprintln!("{text}");
}

/// Cyrus (Unix separators, altnamespace): a shared folder and Bob's folder, both visible
/// to Alice, besides her own.
#[test]
fn cyrus_shared_and_other_users_folders_are_skipped_unless_included() {
    let cyrus = Cyrus::builder()
        .label("source")
        .namespace(CyrusNamespace::UnixAlt)
        .user(ALICE, ALICE_PW)
        .user(BOB, BOB_PW)
        .start()
        .expect("Cyrus starts");
    let target = dovecot_target();

    // The admin makes a shared folder of Alice's domain, readable by her.
    let mut admin = cyrus.admin_endpoint().connect().expect("admin logs in");
    let shared = "Announcements@example.test";
    admin.create(shared).expect("CREATE shared folder");
    for (who, rights) in [(ALICE, "lrs"), (cyrus.admin().0, "lrswipkxtecda")] {
        set_acl(&mut admin, shared, who, rights);
    }
    fill(&mut admin, shared, 3);
    admin.logout().expect("logout");
    // Bob shares his Projects folder (and its subfolder) with Alice.
    let mut bob = cyrus
        .user_endpoint(BOB)
        .expect("bob")
        .connect()
        .expect("bob logs in");
    for folder in ["Projects", "Projects/2024"] {
        bob.create(folder).expect("CREATE");
        set_acl(&mut bob, folder, ALICE, "lrs");
    }
    fill(&mut bob, "Projects", 4);
    fill(&mut bob, "Projects/2024", 2);
    bob.logout().expect("logout");
    // Alice's own folders.
    let mut alice = cyrus.connect_master(ALICE).expect("alice");
    alice.create("Work").expect("CREATE");
    fill(&mut alice, "INBOX", 6);
    fill(&mut alice, "Work", 5);
    let seen: Vec<String> = alice
        .list("", "*")
        .expect("LIST")
        .into_iter()
        .map(|e| e.name)
        .collect();
    alice.logout().expect("logout");
    let shared_name = "Shared Folders/Announcements";
    let bob_projects = "Other Users/bob/Projects";
    let bob_2024 = "Other Users/bob/Projects/2024";
    for name in [shared_name, bob_projects, bob_2024, "Work"] {
        assert!(seen.iter().any(|n| n == name), "{name} not in {seen:?}");
    }

    let (_state, store, mailbox) = register(cyrus.plain_addr(), target.plain_addr(), ALICE, None);
    let (admin, admin_pw) = cyrus.admin();
    let job = |inclusions: Vec<Exclusion>| MailboxJob {
        mailbox,
        email: ALICE.into(),
        batch: "b1".into(),
        source: pool(cyrus.plain_addr(), Role::Source),
        target: pool(target.plain_addr(), Role::Target),
        source_login: LoginMethod::AuthenticatePlain {
            authzid: ALICE.into(),
            authcid: admin.into(),
            password: Secret::new(admin_pw),
        },
        target_login: dovecot_master(ALICE),
        options: JobOptions {
            inclusions,
            ..JobOptions::default()
        },
    };
    let foreign =
        |name: &str| name.starts_with("Shared Folders") || name.starts_with("Other Users");
    let compare = |map_foreign: bool| {
        Verifier::new()
            .with_folder_map(move |name, source, target| {
                if foreign(name) && !map_foreign {
                    return None;
                }
                support::separator_mapping(name, source, target)
            })
            .compare(
                &cyrus.master_endpoint(ALICE).expect("alice"),
                &target.master_endpoint(ALICE).expect("target"),
            )
            .expect("verifier runs")
    };

    // By default: Alice's own mail only; the others' folders reported, not copied.
    let first = try_run(&job(vec![]), &store).unwrap_or_else(|e| panic!("the pass fails: {e}"));
    assert_eq!(first.copied, 6 + 5, "{first:?}");
    let skipped = |folder: &str| SkippedFolder {
        folder: folder.to_owned(),
        reason: FolderSkipReason::OutsidePersonalNamespace,
        detail: None,
    };
    assert_eq!(
        first.folders_skipped,
        vec![
            skipped(bob_projects),
            skipped(bob_2024),
            skipped(shared_name)
        ],
        "{first:?}"
    );
    compare(false).assert_equal();
    let history = store
        .call(move |db| db.pass_history(mailbox))
        .expect("history");
    let recorded: Vec<&str> = history[0]
        .folders_skipped
        .iter()
        .map(|f| f.folder.as_str())
        .collect();
    assert_eq!(recorded, [bob_projects, bob_2024, shared_name]);

    // The same again, nothing changed: the quick check ends the pass after the source's
    // listing, and its record repeats the folders the full pass left out.
    let again = try_run(&job(vec![]), &store).unwrap_or_else(|e| panic!("the pass fails: {e}"));
    assert_eq!(again.target_commands.logins, 0, "{again:?}");
    assert_eq!(again.copied, 0, "{again:?}");
    let history = store
        .call(move |db| db.pass_history(mailbox))
        .expect("history");
    let repeated: Vec<&str> = history
        .last()
        .expect("a pass")
        .folders_skipped
        .iter()
        .map(|f| f.folder.as_str())
        .collect();
    assert_eq!(
        repeated,
        [bob_projects, bob_2024, shared_name],
        "{history:#?}"
    );

    // Included by name: copied under their full names, with their subfolders.
    let included = vec![
        Exclusion::parse_inclusion(shared_name).expect("a name"),
        Exclusion::parse_inclusion(bob_projects).expect("a name"),
    ];
    let second = try_run(&job(included), &store).unwrap_or_else(|e| panic!("the pass fails: {e}"));
    assert_eq!(second.copied, 3 + 4 + 2, "{second:?}");
    assert!(second.folders_skipped.is_empty(), "{second:?}");
    compare(true).assert_equal();
}
