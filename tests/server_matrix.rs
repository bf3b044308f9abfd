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
use support::message_flag::Flag;
use support::{
    Corpus, CorpusSpec, Courier, Cyrus, Dovecot, Endpoint, FolderPath, KitError, Layout,
    MailboxSnapshot, Verifier,
};

const USER: &str = "alice@example.test";
const PASSWORD: &str = "Alice-pw-7q";
/// The account on the target that receives the source's mail through plain APPENDs.
const PROBE: &str = "probe@example.test";
const PROBE_PASSWORD: &str = "Probe-pw-3x";
/// Dovecot refuses keywords over 50 bytes by default; the corpus has a longer one.
const LONG_KEYWORDS: &str = "mail_max_keyword_length = 200";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Dovecot,
    Cyrus,
    Courier,
}

enum Server {
    Dovecot(Dovecot),
    Cyrus(Cyrus),
    Courier(Courier),
}

impl Server {
    /// A server of `family` with the user and the probe account. The Dovecot source is
    /// Maildir++ (`.`), the Dovecot target `LAYOUT=fs` (`/`), so names are always mapped.
    fn start(family: Family, label: &str) -> Server {
        let started = match family {
            Family::Dovecot => Dovecot::builder()
                .label(label)
                .layout(if label == "source" {
                    Layout::MaildirPlusPlus
                } else {
                    Layout::Fs
                })
                .user(USER, PASSWORD)
                .user(PROBE, PROBE_PASSWORD)
                .extra_config(LONG_KEYWORDS)
                .start()
                .map(Server::Dovecot),
            Family::Cyrus => Cyrus::builder()
                .label(label)
                .user(USER, PASSWORD)
                .user(PROBE, PROBE_PASSWORD)
                .start()
                .map(Server::Cyrus),
            // Debian's `IMAP_EMPTYTRASH=Trash:7` purges Trash messages whose file is older
            // than a week at every login, and a migrated message keeps its old date: a
            // Courier target would delete migrated Trash mail at the user's next login
            // (README's server table says so). The admin switches it off for the move.
            Family::Courier => Courier::builder()
                .label(label)
                .user(USER, PASSWORD)
                .user(PROBE, PROBE_PASSWORD)
                .extra_config("IMAP_EMPTYTRASH=")
                .start()
                .map(Server::Courier),
        };
        started.unwrap_or_else(|e| panic!("the {label} {family:?} server starts: {e}"))
    }

    fn family(&self) -> Family {
        match self {
            Server::Dovecot(_) => Family::Dovecot,
            Server::Cyrus(_) => Family::Cyrus,
            Server::Courier(_) => Family::Courier,
        }
    }

    /// `user`'s own login over the plain port.
    fn user_endpoint(&self, user: &str) -> Endpoint {
        match self {
            Server::Dovecot(s) => s.user_endpoint(user),
            Server::Cyrus(s) => s.user_endpoint(user),
            Server::Courier(s) => s.user_endpoint(user),
        }
        .expect("a kit user")
    }

    fn connect(&self, user: &str) -> ImapClient {
        self.user_endpoint(user)
            .connect()
            .unwrap_or_else(|e| panic!("{user} logs in to the {:?} server: {e}", self.family()))
    }

    fn separator(&self) -> char {
        match self {
            Server::Dovecot(s) => s.separator(),
            Server::Cyrus(s) => s.separator(),
            Server::Courier(s) => s.separator(),
        }
    }

    /// The personal namespace's prefix (`INBOX.` on Cyrus in Debian's namespace and on
    /// Courier).
    fn prefix(&self) -> String {
        match self {
            Server::Dovecot(_) => String::new(),
            Server::Cyrus(s) => s.namespace().personal_prefix().to_owned(),
            Server::Courier(_) => "INBOX.".to_owned(),
        }
    }

    /// The full name of a personal folder, as imapmirror's folder plan joins it: INBOX's
    /// children under an `INBOX.` prefix are not prefixed twice.
    fn name_of(&self, path: &FolderPath) -> String {
        let sep = self.separator().to_string();
        let prefix = self.prefix();
        if path.is_inbox() {
            return "INBOX".to_owned();
        }
        if path.0.first().is_some_and(|c| c == "INBOX")
            && prefix.eq_ignore_ascii_case(&format!("INBOX{sep}"))
        {
            return path.0.join(&sep);
        }
        format!("{prefix}{}", path.0.join(&sep))
    }

    /// The path of a personal folder's full name: the prefix stripped, split at the
    /// separator.
    fn path_of(&self, name: &str) -> FolderPath {
        if name.eq_ignore_ascii_case("INBOX") {
            return FolderPath::inbox();
        }
        let prefix = self.prefix();
        let rest = match name.get(..prefix.len()) {
            Some(head) if !prefix.is_empty() && head.eq_ignore_ascii_case(&prefix) => {
                &name[prefix.len()..]
            }
            _ => name,
        };
        FolderPath::parse(rest, Some(self.separator()))
    }

    /// Adds the server as endpoint `name`: Dovecot with its master user, Cyrus with its
    /// SASL admin (AUTHENTICATE PLAIN, authzid = the user), Courier without an admin (it
    /// has no login as another user): its mailboxes open with the migration file's
    /// credentials.
    fn add_endpoint(&self, cli: &Cli, name: &str) {
        match self {
            Server::Dovecot(s) => cli.add_dovecot_endpoint(name, s, "dovecot", &[]),
            Server::Cyrus(s) => {
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
            Server::Courier(s) => {
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

    fn has_admin(&self) -> bool {
        !matches!(self, Server::Courier(_))
    }
}

/// One source message as the source server stores it.
struct Stored {
    folder: String,
    bytes: Vec<u8>,
    flags: Vec<Flag>,
    date: support::InternalDate,
}

/// What the source server accepted of a corpus, through APPEND.
struct Seeded {
    messages: usize,
    refused: usize,
}

/// Appends `corpus` into `user`'s mailbox on `server`, folder by folder; what the server
/// refuses (a folder name, a message) is simply not part of the source.
fn seed(server: &Server, user: &str, corpora: &[&Corpus]) -> Seeded {
    let mut client = server.connect(user);
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
fn create_with_parents(client: &mut ImapClient, server: &Server, path: &FolderPath) -> bool {
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
fn read_all(server: &Server, user: &str) -> Vec<Stored> {
    let mut client = server.connect(user);
    let mut all = Vec::new();
    let list = client.list("", "*").expect("LIST");
    for entry in list {
        if !entry.is_selectable() {
            continue;
        }
        let status = client.examine(&entry.name).expect("EXAMINE");
        if status.exists == 0 {
            continue;
        }
        for m in client.fetch_all().expect("FETCH") {
            all.push(Stored {
                folder: entry.name.clone(),
                bytes: m.body.expect("BODY[]"),
                flags: m
                    .flags
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|f| Flag::from_imap(f))
                    .collect(),
                date: m.internal_date.expect("INTERNALDATE"),
            });
        }
    }
    client.logout().expect("logout");
    all
}

/// The source's selectable folders, parents first.
fn folder_names(server: &Server, user: &str) -> Vec<String> {
    let mut client = server.connect(user);
    let mut names: Vec<String> = client
        .list("", "*")
        .expect("LIST")
        .into_iter()
        .filter(|e| e.is_selectable())
        .map(|e| e.name)
        .collect();
    names.sort_by_key(|n| (n.matches(server.separator()).count(), n.clone()));
    client.logout().expect("logout");
    names
}

/// What the target refused the probe.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Refusals {
    /// Messages refused by APPEND into a folder the target holds.
    messages: usize,
    /// Folders the target would not create (their messages are not counted above:
    /// imapmirror reports the folder, not each message).
    folders: usize,
    /// Messages refused with their keywords and taken without them (a target's cap on
    /// keywords per folder): imapmirror copies them so, and says so in the report.
    without_keywords: usize,
}

/// Appends `messages` (read from the source) to the probe account on `target`, under
/// the names imapmirror maps them to; returns what the target refused.
fn probe(source: &Server, target: &Server, folders: &[String], messages: &[Stored]) -> Refusals {
    let mut client = target.connect(PROBE);
    // Folders made by an earlier probe are there already (Courier answers a CREATE of an
    // existing folder like any other refusal).
    let mut created: BTreeMap<String, bool> = client
        .list("", "*")
        .expect("LIST")
        .into_iter()
        .map(|e| (e.name, true))
        .collect();
    let mut refused = Refusals::default();
    for name in folders {
        let path = source.path_of(name);
        if path.is_inbox() {
            continue;
        }
        // Only the folder itself, as imapmirror creates it: a parent the source does not
        // hold as a folder is the server's business (hierarchy only).
        let target_name = target.name_of(&path);
        if created.contains_key(&target_name) {
            continue;
        }
        let ok = match client.create(&target_name) {
            Ok(()) => true,
            Err(KitError::Refused { ref text, .. })
                if text.to_ascii_lowercase().contains("exist") =>
            {
                true
            }
            Err(KitError::Refused { .. }) => false,
            Err(e) => panic!("probe CREATE {target_name:?}: {e}"),
        };
        if !ok {
            refused.folders += 1;
        }
        created.insert(target_name, ok);
    }
    for m in messages {
        let target_name = target.name_of(&source.path_of(&m.folder));
        if created.get(&target_name) == Some(&false) {
            continue;
        }
        match client.append(&target_name, &m.flags, Some(m.date), &m.bytes) {
            Ok(_) => {}
            Err(KitError::Refused { .. })
                if m.flags.iter().any(|f| matches!(f, Flag::Keyword(_))) =>
            {
                let system: Vec<Flag> = m
                    .flags
                    .iter()
                    .filter(|f| !matches!(f, Flag::Keyword(_)))
                    .cloned()
                    .collect();
                match client.append(&target_name, &system, Some(m.date), &m.bytes) {
                    Ok(_) => refused.without_keywords += 1,
                    Err(KitError::Refused { .. }) => refused.messages += 1,
                    Err(e) => panic!("probe APPEND to {target_name:?}: {e}"),
                }
            }
            Err(KitError::Refused { .. }) => refused.messages += 1,
            Err(e) => panic!("probe APPEND to {target_name:?}: {e}"),
        }
    }
    client.logout().expect("logout");
    refused
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

fn migration_row(source: &Server, target: &Server, login: SourceLogin) -> (String, Vec<u8>) {
    let mut header = vec!["EmailAddress", "UserName", "Password"];
    let root;
    let mut row = match (login, source) {
        (SourceLogin::UserRoot, Server::Courier(courier)) => {
            root = courier.shared_root(USER);
            header.push("UserRoot");
            let (admin, admin_password) = courier.admin();
            vec![USER, admin, admin_password, root.as_str()]
        }
        (SourceLogin::UserRoot, _) => panic!("UserRoot is tested on Courier"),
        (SourceLogin::Direct, _) => vec![USER, USER, PASSWORD],
    };
    if !target.has_admin() {
        header.extend(["TargetUserName", "TargetPassword"]);
        row.extend([USER, PASSWORD]);
    }
    let text = format!("{}\r\n{}\r\n", header.join(","), row.join(","));
    ("users.csv".to_owned(), text.into_bytes())
}

/// The migrated account must read back exactly like the probe account.
fn assert_same_as_probe(target: &Server, pass: &str) {
    let probe = MailboxSnapshot::read(&target.user_endpoint(PROBE)).expect("read the probe");
    let migrated = MailboxSnapshot::read(&target.user_endpoint(USER)).expect("read the user");
    let report = Verifier::new()
        .with_folder_map(|name, _, _| Some(name.to_owned()))
        .compare_snapshots(&probe, &migrated);
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
    let source = Server::start(source_family, "source");
    let target = Server::start(target_family, "target");
    let generated = Corpus::generate(CorpusSpec::small(12));
    let realistic = Corpus::generate(CorpusSpec::realistic(34).with_messages(120));
    let seeded = seed(&source, USER, &[&generated, &realistic]);
    assert!(
        seeded.messages > 300,
        "the source stored only {} messages ({} refused)",
        seeded.messages,
        seeded.refused
    );

    let cli = Cli::new();
    source.add_endpoint(&cli, "src");
    target.add_endpoint(&cli, "dst");
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
    let now = read_all(&source, USER);
    assert!(now.len() > before, "the second seeding added mail");
    let added: Vec<Stored> = new_messages(stored, now);
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

/// The messages of `after` that `before` does not hold (as a multiset per folder).
fn new_messages(before: Vec<Stored>, after: Vec<Stored>) -> Vec<Stored> {
    let mut seen: BTreeMap<(String, Vec<u8>), usize> = BTreeMap::new();
    for m in before {
        *seen.entry((m.folder, m.bytes)).or_default() += 1;
    }
    after
        .into_iter()
        .filter(
            |m| match seen.get_mut(&(m.folder.clone(), m.bytes.clone())) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            },
        )
        .collect()
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
