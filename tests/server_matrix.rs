//! The server matrix: a mailbox moved through the installed binary between every pair of
//! the server families the test kit runs (Dovecot 2.3, Cyrus 3.6, Courier-IMAP 5.0), then
//! an incremental pass, each judged exact.
//!
//! "Exact" on a server that normalises mail (Cyrus munges raw 8-bit header bytes, Courier
//! adds a final CRLF and drops bare CRs, each refuses some messages and folder names)
//! means: identical to what that same server stores for a plain APPEND of the source's
//! bytes, flags and INTERNALDATE. So every test appends the source mailbox, message by
//! message, into a second account on the target (the probe), and the migrated account
//! must then read back exactly like the probe: same folders, same message bytes, flags and
//! dates; what the target refused for the probe is what the migration reports as skipped,
//! and nothing else is missing.
//!
//! Each source holds the kit's generated corpus (the awkward cases of TESTING.md) and a
//! realistic one (MIME attachments, encoded words, sizes up to megabytes), as the source
//! server itself stored them through APPEND.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::collections::BTreeMap;

use cli_harness::Cli;
use support::imap_client::ImapClient;
use support::{
    Corpus, CorpusSpec, Family, FamilyServer, FolderPath, KitError, MailboxSnapshot, StoredMessage,
    append_probe, compare_with_probe, new_messages, read_stored, selectable_folders,
};

const USER: &str = "alice@example.test";
const PASSWORD: &str = "Alice-pw-7q";
/// The account on the target that receives the source's mail through plain APPENDs.
const PROBE: &str = "probe@example.test";
const PROBE_PASSWORD: &str = "Probe-pw-3x";

/// A server of `family` with the user and the probe account (see `FamilyServer::start`
/// for each family's layout and settings).
fn start(family: Family, label: &str) -> FamilyServer {
    FamilyServer::start(family, label, &[(USER, PASSWORD), (PROBE, PROBE_PASSWORD)])
        .unwrap_or_else(|e| panic!("the {label} {family:?} server starts: {e}"))
}

fn connect(server: &FamilyServer, user: &str) -> ImapClient {
    server
        .connect(user)
        .unwrap_or_else(|e| panic!("{user} logs in to the {:?} server: {e}", server.family()))
}

/// Adds the server as endpoint `name`: Dovecot with its master user, Cyrus with its
/// SASL admin (AUTHENTICATE PLAIN, authzid = the user), Courier without an admin (it
/// has no login as another user): its mailboxes open with the migration file's
/// credentials.
fn add_endpoint(server: &FamilyServer, cli: &Cli, name: &str) {
    match server {
        FamilyServer::Dovecot(s) => cli.add_dovecot_endpoint(name, s, "dovecot", &[]),
        FamilyServer::Cyrus(s) => {
            let (admin, admin_password) = s.admin();
            let pw = cli.file(
                &format!("{name}.pw"),
                format!("{admin_password}\n").as_bytes(),
            );
            let port = s.plain_addr().port().to_string();
            cli.ok(&[
                "endpoint",
                "add",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--security",
                "none",
                "--admin-user",
                admin,
                "--admin-password-file",
                &pw,
                "--admin-format",
                "sasl",
            ]);
        }
        FamilyServer::Courier(s) => {
            let port = s.plain_addr().port().to_string();
            cli.ok(&[
                "endpoint",
                "add",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--security",
                "none",
            ]);
        }
    }
}

/// What the source server accepted of a corpus, through APPEND.
struct Seeded {
    messages: usize,
    refused: usize,
}

/// Appends `corpus` into `user`'s mailbox on `server`, folder by folder; what the server
/// refuses (a folder name, a message) is simply not part of the source.
fn seed(server: &FamilyServer, user: &str, corpora: &[&Corpus]) -> Seeded {
    let mut client = connect(server, user);
    let mut created: BTreeMap<String, bool> = BTreeMap::new();
    let mut seeded = Seeded {
        messages: 0,
        refused: 0,
    };
    for corpus in corpora {
        for folder in corpus.folders() {
            let name = server.name_of(&folder.path);
            if !folder.path.is_inbox() && !created.contains_key(&name) {
                let ok = create_with_parents(&mut client, server, &folder.path);
                created.insert(name, ok);
            }
        }
        for message in corpus.messages() {
            let name = server.name_of(&message.folder);
            if created.get(&name) == Some(&false) {
                seeded.refused += 1;
                continue;
            }
            match client.append(
                &name,
                &message.flags,
                Some(message.internal_date),
                &message.bytes,
            ) {
                Ok(_) => seeded.messages += 1,
                Err(KitError::Refused { .. }) => seeded.refused += 1,
                Err(e) => panic!("seeding {name:?} on the source: {e}"),
            }
        }
    }
    client.logout().expect("logout");
    seeded
}

/// CREATE `path` and its missing parents; false when the server refuses a name.
fn create_with_parents(client: &mut ImapClient, server: &FamilyServer, path: &FolderPath) -> bool {
    for depth in 1..=path.0.len() {
        let partial = FolderPath(path.0[..depth].to_vec());
        if partial.is_inbox() {
            continue;
        }
        match client.create(&server.name_of(&partial)) {
            Ok(()) => {}
            // Already there (a parent created before, or a server's own folder).
            Err(KitError::Refused { ref text, .. })
                if text.to_ascii_lowercase().contains("exist") => {}
            Err(KitError::Refused { .. }) => return false,
            Err(e) => panic!("CREATE on {:?}: {e}", server.family()),
        }
    }
    true
}

/// Every message of `user`'s mailbox on `server`, folder by folder.
fn read_all(server: &FamilyServer, user: &str) -> Vec<StoredMessage> {
    read_stored(server, user).unwrap_or_else(|e| {
        panic!(
            "reading {user}'s mail on the {:?} server: {e}",
            server.family()
        )
    })
}

/// The source's selectable folders, parents first.
fn folder_names(server: &FamilyServer, user: &str) -> Vec<String> {
    selectable_folders(server, user).unwrap_or_else(|e| {
        panic!(
            "listing {user}'s folders on the {:?} server: {e}",
            server.family()
        )
    })
}

/// Appends `messages` (read from the source) to the probe account on `target`, under
/// the names imapmirror maps them to; returns what the target refused.
fn probe(
    source: &FamilyServer,
    target: &FamilyServer,
    folders: &[String],
    messages: &[StoredMessage],
) -> support::Refusals {
    append_probe(source, target, PROBE, folders, messages)
        .unwrap_or_else(|e| panic!("the probe on the {:?} target: {e}", target.family()))
}

/// How the source mailbox is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceLogin {
    /// The endpoint's admin acting as the user, or the user's own password (Courier).
    Direct,
    /// Courier's admin reading the user's mail as virtual shared folders: `UserRoot`
    /// `#shared.<user>`, as the user's document describes.
    UserRoot,
}

fn migration_row(
    source: &FamilyServer,
    target: &FamilyServer,
    login: SourceLogin,
) -> (String, Vec<u8>) {
    let mut header = vec!["EmailAddress", "UserName", "Password"];
    let root;
    let mut row = match (login, source) {
        (SourceLogin::UserRoot, FamilyServer::Courier(courier)) => {
            root = courier.shared_root(USER);
            header.push("UserRoot");
            let (admin, admin_password) = courier.admin();
            vec![USER, admin, admin_password, root.as_str()]
        }
        (SourceLogin::UserRoot, _) => panic!("UserRoot is tested on Courier"),
        (SourceLogin::Direct, _) => vec![USER, USER, PASSWORD],
    };
    if target.admin_login().is_none() {
        header.extend(["TargetUserName", "TargetPassword"]);
        row.extend([USER, PASSWORD]);
    }
    let text = format!("{}\r\n{}\r\n", header.join(","), row.join(","));
    ("users.csv".to_owned(), text.into_bytes())
}

/// The migrated account must read back exactly like the probe account.
fn assert_same_as_probe(target: &FamilyServer, pass: &str) {
    let probe = target
        .user_endpoint(PROBE)
        .and_then(|endpoint| MailboxSnapshot::read(&endpoint))
        .expect("read the probe");
    let report = compare_with_probe(&probe, target, USER).expect("read the user");
    assert!(
        report.is_equal(),
        "{pass}: the migrated mailbox on {:?} differs from what the server stores for plain \
         APPENDs:\n{report}",
        target.family()
    );
}

fn items_skipped(cli: &Cli) -> u64 {
    cli.status("matrix")["items_skipped"]
        .as_u64()
        .expect("items_skipped")
}

/// Report rows of messages copied without their keywords.
fn copied_without_keywords(cli: &Cli) -> usize {
    let report = cli.json(&["batch", "report", "matrix", "--format", "json"]);
    report["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .filter(|s| s["copied"].as_bool() == Some(true))
        .count()
}

/// Folders the last pass reported as refused by the target.
fn folders_refused(cli: &Cli) -> usize {
    let users = cli.json(&["batch", "users", "matrix", "--json"]);
    users[0]["folders_skipped"]
        .as_array()
        .expect("folders_skipped")
        .iter()
        .filter(|f| {
            f["reason"]
                .as_str()
                .is_some_and(|r| r.contains("refused to create"))
        })
        .count()
}

/// The whole pair: seed, migrate, compare; add mail, sync, compare.
fn pair(source_family: Family, target_family: Family, login: SourceLogin) {
    let source = start(source_family, "source");
    let target = start(target_family, "target");
    let generated = Corpus::generate(CorpusSpec::small(12));
    let realistic = Corpus::generate(CorpusSpec::realistic(34).with_messages(120));
    let seeded = seed(&source, USER, &[&generated, &realistic]);
    assert!(
        seeded.messages > 300,
        "the source stored only {} messages ({} refused)",
        seeded.messages,
        seeded.refused
    );
    // A folder nobody ever filed mail in (UIDNEXT 1): created on the target without being
    // opened on either side, and its first message copied by the next pass.
    let never_used = FolderPath::new(&["Never used"]);
    let mut client = connect(&source, USER);
    assert!(create_with_parents(&mut client, &source, &never_used));
    client.logout().expect("logout");

    let cli = Cli::new();
    add_endpoint(&source, &cli, "src");
    add_endpoint(&target, &cli, "dst");
    let (file, contents) = migration_row(&source, &target, login);
    let csv = cli.file(&file, &contents);
    cli.ok(&[
        "batch", "add", "matrix", "--csv", &csv, "--source", "src", "--target", "dst",
    ]);
    let run = cli.run(&["batch", "start", "matrix", "--wait"]);
    let folders = folder_names(&source, USER);
    let stored = read_all(&source, USER);
    let refused = probe(&source, &target, &folders, &stored);
    assert!(
        run.code == 0,
        "{source_family:?} -> {target_family:?}: the initial pass failed:\n{}{}",
        run.stdout,
        run.stderr
    );
    assert_same_as_probe(&target, "initial pass");
    let on_target = folder_names(&target, USER);
    assert!(
        on_target.contains(&target.name_of(&never_used)),
        "{source_family:?} -> {target_family:?}: the never-used folder is on the target: {on_target:?}"
    );
    assert_eq!(
        items_skipped(&cli),
        refused.messages as u64,
        "the pass reports as skipped exactly what the target refuses for a plain APPEND"
    );
    assert_eq!(
        folders_refused(&cli),
        refused.folders,
        "the folders the target will not create are reported"
    );
    assert_eq!(copied_without_keywords(&cli), refused.without_keywords);

    // New mail on the source, then an incremental pass.
    let more = Corpus::generate(CorpusSpec::small(56).with_messages(40));
    let before = stored.len();
    seed(&source, USER, &[&more]);
    let mut client = connect(&source, USER);
    client
        .append(
            &source.name_of(&never_used),
            &[],
            None,
            b"From: first@example.test\r\nSubject: the first one here\r\n\r\nat last\r\n",
        )
        .expect("append into the never-used folder");
    client.logout().expect("logout");
    let now = read_all(&source, USER);
    assert!(now.len() > before, "the second seeding added mail");
    let added: Vec<StoredMessage> = new_messages(stored, now);
    let folders = folder_names(&source, USER);
    let refused_more = probe(&source, &target, &folders, &added);
    let run = cli.run(&["batch", "sync", "matrix", "--wait"]);
    assert!(
        run.code == 0,
        "{source_family:?} -> {target_family:?}: the incremental pass failed:\n{}{}",
        run.stdout,
        run.stderr
    );
    assert_same_as_probe(&target, "incremental pass");
    assert_eq!(
        items_skipped(&cli),
        (refused.messages + refused_more.messages) as u64
    );
    assert_eq!(folders_refused(&cli), refused_more.folders);
    assert_eq!(
        copied_without_keywords(&cli),
        refused.without_keywords + refused_more.without_keywords
    );
}

#[test]
fn dovecot_to_cyrus() {
    pair(Family::Dovecot, Family::Cyrus, SourceLogin::Direct);
}

#[test]
fn cyrus_to_dovecot() {
    pair(Family::Cyrus, Family::Dovecot, SourceLogin::Direct);
}

#[test]
fn dovecot_to_courier() {
    pair(Family::Dovecot, Family::Courier, SourceLogin::Direct);
}

#[test]
fn courier_to_cyrus() {
    pair(Family::Courier, Family::Cyrus, SourceLogin::Direct);
}

#[test]
fn cyrus_to_courier() {
    pair(Family::Cyrus, Family::Courier, SourceLogin::Direct);
}

#[test]
fn courier_through_user_root_to_dovecot() {
    pair(Family::Courier, Family::Dovecot, SourceLogin::UserRoot);
}
