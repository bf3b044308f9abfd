//! Gmail as source and as target, through the kit's Gmail-like relay
//! (tests/support/gmail_like.rs) in front of a Dovecot: Gmail's greeting and
//! capabilities, labels as folders under `/`, `[Gmail]` system folders with their
//! attributes, X-GM-MSGID / X-GM-LABELS answered from the account's side table,
//! `[THROTTLED]` and `[OVERQUOTA]` answers.
//!
//! As a source the target must hold each message once per label it has (INBOX and user
//! labels as folders, system folders on the target's own), archived mail (in All Mail only)
//! in `Archive`, nothing from All Mail, Starred or Important as a folder, `\Flagged` on
//! starred messages, every byte as Gmail holds it; a second pass copies nothing, and a
//! message archived between passes is in `Archive` after the next one, once.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use cli_harness::Cli;
use support::gmail_like::{
    ALL_MAIL, Bin, DRAFTS, GmailLike, GmailLikeConfig, GmailMessage, IMPORTANT, SENT_MAIL, SPAM,
    STARRED, TRASH,
};
use support::{
    Corpus, CorpusSpec, Family, FamilyServer, Flag, InternalDate, MASTER_PASSWORD, MASTER_USER,
    MailboxSnapshot, Verifier, append_probe, read_stored, selectable_folders,
};

const USER: &str = "gina@example.test";
const PASSWORD: &str = "Gina-pw-5k";
const PROBE: &str = "probe@example.test";
const PROBE_PASSWORD: &str = "Probe-pw-3x";

fn start(label: &str) -> FamilyServer {
    FamilyServer::start(
        Family::Dovecot,
        label,
        &[(USER, PASSWORD), (PROBE, PROBE_PASSWORD)],
    )
    .unwrap_or_else(|e| panic!("the {label} Dovecot starts: {e}"))
}

fn add_endpoint(cli: &Cli, name: &str, port: u16, extra: &[&str]) {
    let pw = cli.file(
        &format!("{name}.pw"),
        format!("{MASTER_PASSWORD}\n").as_bytes(),
    );
    let port = port.to_string();
    let mut args = vec![
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
        MASTER_USER,
        "--admin-password-file",
        &pw,
        "--admin-format",
        "dovecot",
    ];
    args.extend_from_slice(extra);
    cli.ok(&args);
}

fn add_batch(cli: &Cli, extra: &[&str]) {
    let csv = cli.file(
        "users.csv",
        format!("EmailAddress,UserName,Password\r\n{USER},{USER},{PASSWORD}\r\n").as_bytes(),
    );
    let mut args = vec![
        "batch", "add", "gm", "--csv", &csv, "--source", "src", "--target", "dst",
    ];
    args.extend_from_slice(extra);
    cli.ok(&args);
}

fn pass(cli: &Cli, verb: &str) {
    let run = cli.run(&["batch", verb, "gm", "--wait"]);
    if std::env::var_os("GMAIL_TEST_LOG").is_some() {
        eprintln!("{}{}", run.stdout, run.stderr);
    }
    assert!(
        run.code == 0,
        "the pass failed:\n{}{}",
        run.stdout,
        run.stderr
    );
}

/// A message of the test account: distinct bytes unless `twin_of` is given.
fn message(n: usize, labels: &[&str], bin: Bin, with_message_id: bool) -> GmailMessage {
    let date = InternalDate::parse_imap(&format!(
        "{:02}-Nov-2025 09:{:02}:00 +0000",
        1 + n % 28,
        n % 60
    ))
    .expect("a valid date");
    let id = if with_message_id {
        format!("Message-ID: <m{n}@gmail-like.test>\r\n")
    } else {
        String::new()
    };
    let bytes = format!(
        "From: sender{n} <s{n}@example.org>\r\nTo: {USER}\r\nSubject: Gmail message {n}\r\nDate: {}\r\n{id}\r\nBody of message {n}.\r\n",
        date.to_rfc5322()
    );
    GmailMessage {
        bytes: bytes.into_bytes(),
        internal_date: date,
        flags: if n.is_multiple_of(3) {
            vec![Flag::Seen]
        } else {
            vec![]
        },
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        bin,
    }
}

/// 80 distinct messages (two of them byte-identical twins of others, three without a
/// Message-ID): INBOX, two labels with one message in both, Sent, Drafts, starred and
/// important ones, archived mail (some starred or important), Spam and Trash.
fn account() -> Vec<GmailMessage> {
    let mut m = Vec::new();
    for n in 0..30 {
        let mut labels = vec!["\\Inbox"];
        if n % 5 == 0 {
            labels.push("\\Starred");
        }
        if n % 4 == 0 {
            labels.push("\\Important");
        }
        if n % 10 == 3 {
            labels.push("Work");
        }
        m.push(message(n, &labels, Bin::AllMail, n != 7));
    }
    for n in 30..40 {
        m.push(message(n, &["Work"], Bin::AllMail, n != 35));
    }
    for n in 40..46 {
        let labels: &[&str] = if n == 42 {
            &["Family", "Work"]
        } else {
            &["Family"]
        };
        m.push(message(n, labels, Bin::AllMail, true));
    }
    for n in 46..54 {
        m.push(message(n, &["\\Sent"], Bin::AllMail, true));
    }
    for n in 54..57 {
        m.push(message(n, &["\\Draft"], Bin::AllMail, true));
    }
    for n in 57..70 {
        let labels: &[&str] = match n % 4 {
            0 => &["\\Starred"],
            1 => &["\\Important"],
            _ => &[],
        };
        m.push(message(n, labels, Bin::AllMail, n != 65));
    }
    for n in 70..74 {
        m.push(message(n, &[], Bin::Spam, true));
    }
    for n in 74..78 {
        m.push(message(n, &[], Bin::Trash, true));
    }
    // Exact duplicates: two Gmail messages with the bytes of others (an INBOX one and
    // an archived one); Gmail keeps them apart, so must the target.
    let mut twin = m[12].clone();
    twin.labels = vec!["\\Inbox".to_owned()];
    m.push(twin);
    let mut twin = m[60].clone();
    twin.labels = Vec::new();
    m.push(twin);
    m
}

/// The target folder each Gmail folder's messages must be in.
fn target_folder(gmail_folder: &str) -> Option<&'static str> {
    Some(match gmail_folder {
        "INBOX" => "INBOX",
        "Work" => "Work",
        "Family" => "Family",
        SENT_MAIL => "[Gmail]/Sent Mail",
        DRAFTS => "[Gmail]/Drafts",
        SPAM => "[Gmail]/Spam",
        TRASH => "[Gmail]/Trash",
        ALL_MAIL | STARRED | IMPORTANT => return None,
        other => panic!("unexpected Gmail folder {other}"),
    })
}

/// Folder → sorted (SHA-256, flags) of its messages.
type Contents = BTreeMap<String, Vec<(String, Vec<String>)>>;

fn contents(snapshot: &MailboxSnapshot) -> Contents {
    let mut out = Contents::new();
    for f in snapshot.folders.iter().filter(|f| f.selectable) {
        let mut v: Vec<(String, Vec<String>)> = f
            .messages
            .iter()
            .map(|m| (m.sha256_hex(), m.flags.iter().cloned().collect()))
            .collect();
        v.sort();
        if !v.is_empty() {
            out.insert(f.name.clone(), v);
        }
    }
    out
}

/// What the target must hold for `messages`: each once per label folder, archived ones
/// in `Archive`, with their flags (`\Flagged` for starred ones).
fn expected(messages: &[GmailMessage]) -> Contents {
    let mut out = Contents::new();
    for m in messages {
        let mut flags: Vec<String> = m.flags.iter().map(Flag::to_imap).collect();
        if m.labels.iter().any(|l| l == "\\Starred") {
            flags.push("\\Flagged".to_owned());
        }
        flags.sort();
        let facts = support::mailbox_verifier::MessageFacts::from_bytes(
            0,
            &m.bytes,
            &flags,
            m.internal_date,
        );
        let entry = (facts.sha256_hex(), facts.flags.iter().cloned().collect());
        let folders = support::gmail_like::folders_of(&m.labels, m.bin);
        let mut targets: Vec<&str> = folders.iter().filter_map(|f| target_folder(f)).collect();
        if m.bin == Bin::AllMail
            && m.labels
                .iter()
                .all(|l| l == "\\Starred" || l == "\\Important")
        {
            targets.push("Archive");
        }
        for t in targets {
            out.entry(t.to_owned()).or_default().push(entry.clone());
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn read_target(target: &FamilyServer) -> MailboxSnapshot {
    target
        .user_endpoint(USER)
        .and_then(|e| MailboxSnapshot::read(&e))
        .expect("read the migrated mailbox")
}

/// The test account of [`account`] in a Gmail-like relay (`config`) in front of a
/// Dovecot, endpoints `src` (the relay, told Gmail by `endpoint test`) and `dst` (another
/// Dovecot), batch `gm`, and the relay's seeding connection kept for changes between
/// passes.
struct GmailSource {
    _gmail: FamilyServer,
    target: FamilyServer,
    relay: GmailLike,
    direct: support::imap_client::ImapClient,
    ids: Vec<u64>,
    messages: Vec<GmailMessage>,
    cli: Cli,
}

impl GmailSource {
    fn start(config: GmailLikeConfig) -> GmailSource {
        let gmail = start("gmail");
        let target = start("target");
        let relay = GmailLike::start(gmail.plain_addr(), config).expect("relay");
        let messages = account();
        assert_eq!(messages.len(), 80);
        let mut direct = gmail.connect(USER).expect("log in to seed");
        GmailLike::create_folders(&mut direct, &["Work", "Family"]).expect("folders");
        let ids = relay.seed(&mut direct, &messages).expect("seed");
        let cli = Cli::new();
        add_endpoint(&cli, "src", relay.addr().port(), &[]);
        add_endpoint(&cli, "dst", target.plain_addr().port(), &[]);
        // `endpoint test` tells Gmail from its greeting and capabilities.
        let tested = cli.ok(&["endpoint", "test", "src"]);
        assert!(tested.contains("Gmail"), "{tested}");
        add_batch(&cli, &[]);
        GmailSource {
            _gmail: gmail,
            target,
            relay,
            direct,
            ids,
            messages,
            cli,
        }
    }

    /// Asserts that the target holds what the account's messages say, and returns it.
    fn assert_target_as_expected(&self, what: &str) -> Contents {
        let got = contents(&read_target(&self.target));
        let want = expected(&self.messages);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "target folders {what}"
        );
        for (folder, v) in &want {
            assert_eq!(got.get(folder), Some(v), "folder {folder} {what}");
        }
        got
    }

    /// Archives message `n` in Gmail (its INBOX label removed) between passes.
    fn archive(&mut self, n: usize) {
        self.relay
            .archive(&mut self.direct, self.ids[n])
            .expect("archive a message");
        self.messages[n].labels.retain(|l| l != "\\Inbox");
    }
}

/// 80 messages: 30 in INBOX (3 also in Work), 10 in Work, 6 in Family (1 also in Work), 8
/// Sent, 3 Drafts, 13 + 1 archived, 4 Spam, 4 Trash, 1 more in INBOX: one copy a label.
const COPIES_ONE_A_LABEL: usize = 31 + 3 + 10 + 6 + 1 + 8 + 3 + 14 + 4 + 4;

#[test]
fn gmail_source_each_message_once_per_label_archived_mail_in_archive() {
    let mut gmail = GmailSource::start(GmailLikeConfig::default());
    pass(&gmail.cli, "start");
    assert!(
        gmail.relay.stats().gm_fetches.load(Ordering::Relaxed) > 0,
        "X-GM-LABELS was asked"
    );
    let got = gmail.assert_target_as_expected("after the first pass");
    // Nothing of All Mail, Starred or Important became a folder.
    for f in &read_target(&gmail.target).folders {
        assert!(
            !f.name.contains("All Mail")
                && !f.name.contains("Starred")
                && !f.name.contains("Important"),
            "{} on the target",
            f.name
        );
    }
    let copies: usize = got.values().map(Vec::len).sum();
    assert_eq!(copies, COPIES_ONE_A_LABEL, "each message once per label");

    // A second pass copies nothing.
    pass(&gmail.cli, "sync");
    assert_eq!(
        contents(&read_target(&gmail.target)),
        got,
        "the second pass changed nothing"
    );

    // A message archived in Gmail between passes: in Archive after the next pass, and
    // in no other folder (it has no label left).
    gmail.archive(4); // \Inbox \Important
    pass(&gmail.cli, "sync");
    gmail.assert_target_as_expected("after the archived message moved to Archive");
}

#[test]
fn gmail_source_without_gm_ext_tells_archived_mail_by_exact_bytes() {
    // The account of the test above (labels, a message in two labels, archived-only
    // mail, exact duplicate pairs, messages without Message-ID) behind a Gmail that does
    // not announce X-GM-EXT-1: no X-GM-LABELS says what is archived, the bytes must.
    let mut gmail = GmailSource::start(GmailLikeConfig::without_gm_ext());
    pass(&gmail.cli, "start");
    let stats = gmail.relay.stats();
    assert_eq!(
        stats.gm_fetches.load(Ordering::Relaxed),
        0,
        "no X-GM item asked"
    );
    assert_eq!(stats.refused.load(Ordering::Relaxed), 0);

    // Each message once per label, archived-only ones once in Archive, none twice.
    let got = gmail.assert_target_as_expected("after the first pass");
    let copies: usize = got.values().map(Vec::len).sum();
    assert_eq!(copies, COPIES_ONE_A_LABEL);

    // A second pass copies nothing.
    pass(&gmail.cli, "sync");
    assert_eq!(
        contents(&read_target(&gmail.target)),
        got,
        "the second pass"
    );

    // Archived in Gmail between passes (out of INBOX, its only label folder; still in
    // All Mail): moved to Archive by the next pass, its INBOX copy gone from the target.
    gmail.archive(4); // \Inbox \Important
    pass(&gmail.cli, "sync");
    let after = gmail.assert_target_as_expected("moved to Archive, once");
    // And the pass after that has nothing more to do.
    pass(&gmail.cli, "sync");
    assert_eq!(contents(&read_target(&gmail.target)), after);
}

#[test]
fn gmail_target_labels_become_folders_nothing_in_all_mail_throttling_waited_out() {
    let source = start("source");
    let gmail = start("gmail");
    let corpus = Corpus::generate(CorpusSpec::small(17));
    let mut client = source.connect(USER).expect("log in to seed");
    for folder in corpus.folders() {
        if !folder.path.is_inbox() {
            let _ = client.create(&source.name_of(&folder.path));
        }
    }
    for m in corpus.messages() {
        let _ = client.append(
            &source.name_of(&m.folder),
            &m.flags,
            Some(m.internal_date),
            &m.bytes,
        );
    }
    client.logout().expect("logout");
    let mut direct = gmail.connect(USER).expect("gmail login");
    GmailLike::create_folders(&mut direct, &[]).expect("system folders");
    direct.logout().expect("logout");
    let relay = GmailLike::start(
        gmail.plain_addr(),
        // Gmail's THROTTLED carries no suggested wait: each costs the default back-off
        // (60 s), so two are enough to show the wait repeats.
        GmailLikeConfig {
            throttle_every: Some(40),
            max_throttled: 2,
            ..GmailLikeConfig::default()
        },
    )
    .expect("relay");

    let cli = Cli::new();
    add_endpoint(&cli, "src", source.plain_addr().port(), &[]);
    add_endpoint(&cli, "dst", relay.addr().port(), &["--provider", "gmail"]);
    add_batch(&cli, &[]);
    pass(&cli, "start");
    let stats = relay.stats();
    assert!(
        stats.throttled.load(Ordering::Relaxed) > 0,
        "the relay throttled"
    );
    assert_eq!(stats.appends_to_all_mail.load(Ordering::Relaxed), 0);
    assert_eq!(
        stats.refused.load(Ordering::Relaxed),
        0,
        "no MULTIAPPEND, LITERAL- kept"
    );

    // Exact: what plain APPENDs store, folder by folder, the source's special folders in
    // Gmail's.
    let folders = selectable_folders(&source, USER).expect("source folders");
    let stored = read_stored(&source, USER).expect("source messages");
    let refused = append_probe(&source, &gmail, PROBE, &folders, &stored).expect("probe");
    assert_eq!(refused.messages, 0);
    let expected = gmail
        .user_endpoint(PROBE)
        .and_then(|e| MailboxSnapshot::read(&e))
        .expect("read the probe");
    let mut migrated = gmail
        .user_endpoint(USER)
        .and_then(|e| MailboxSnapshot::read(&e))
        .expect("read the migrated mailbox");
    let all_mail = migrated
        .folders
        .iter()
        .find(|f| f.name == ALL_MAIL)
        .map_or(0, |f| f.messages.len());
    assert_eq!(all_mail, 0, "nothing appended to All Mail");
    migrated
        .folders
        .retain(|f| ![ALL_MAIL, STARRED, IMPORTANT].contains(&f.name.as_str()));
    let report = Verifier::new()
        .with_folder_map(|name, _, _| {
            Some(match name {
                "Sent" => SENT_MAIL.to_owned(),
                "Drafts" => DRAFTS.to_owned(),
                "Trash" => TRASH.to_owned(),
                "Junk" => SPAM.to_owned(),
                other => other.replace('.', "/"),
            })
        })
        .compare_snapshots(&expected, &migrated);
    assert!(report.is_equal(), "{report}");
}

#[test]
fn gmail_overquota_fails_the_pass_with_the_reason_and_the_next_pass_resumes() {
    let source = start("source");
    let gmail = start("gmail");
    let mut client = source.connect(USER).expect("log in to seed");
    for n in 0..20 {
        let m = message(n, &[], Bin::AllMail, true);
        client
            .append("INBOX", &m.flags, Some(m.internal_date), &m.bytes)
            .expect("seed");
    }
    client.logout().expect("logout");
    let mut direct = gmail.connect(USER).expect("gmail login");
    GmailLike::create_folders(&mut direct, &[]).expect("system folders");
    direct.logout().expect("logout");
    let relay = GmailLike::start(
        gmail.plain_addr(),
        GmailLikeConfig {
            overquota_appends: 1,
            ..GmailLikeConfig::default()
        },
    )
    .expect("relay");
    let cli = Cli::new();
    add_endpoint(&cli, "src", source.plain_addr().port(), &[]);
    add_endpoint(&cli, "dst", relay.addr().port(), &[]);
    add_batch(&cli, &[]);
    let run = cli.run(&["batch", "start", "gm", "--wait"]);
    assert_eq!(run.code, 1, "the pass fails:\n{}{}", run.stdout, run.stderr);
    let users = cli.json(&["batch", "users", "gm", "--json"]);
    let error = users[0]["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("OVERQUOTA"),
        "the reason is reported: {error}"
    );
    // The next pass resumes and completes.
    pass(&cli, "start");
    let inbox = |server: &FamilyServer| {
        let snapshot = server
            .user_endpoint(USER)
            .and_then(|e| MailboxSnapshot::read(&e))
            .expect("read a mailbox");
        contents(&snapshot).remove("INBOX").unwrap_or_default()
    };
    let want = inbox(&source);
    assert_eq!(want.len(), 20);
    assert_eq!(inbox(&gmail), want, "INBOX exact after the resumed pass");
    assert_eq!(relay.stats().overquota.load(Ordering::Relaxed), 1);
}

#[test]
fn gmail_archive_folder_named_by_the_admin() {
    let gmail = start("gmail");
    let target = start("target");
    let relay = GmailLike::start(gmail.plain_addr(), GmailLikeConfig::default()).expect("relay");
    let messages = vec![
        message(1, &["\\Inbox"], Bin::AllMail, true),
        message(2, &[], Bin::AllMail, true),
        message(3, &["\\Starred"], Bin::AllMail, false),
    ];
    let mut direct = gmail.connect(USER).expect("log in to seed");
    GmailLike::create_folders(&mut direct, &[]).expect("folders");
    relay.seed(&mut direct, &messages).expect("seed");
    direct.logout().expect("logout");
    let cli = Cli::new();
    add_endpoint(&cli, "src", relay.addr().port(), &["--provider", "gmail"]);
    add_endpoint(&cli, "dst", target.plain_addr().port(), &[]);
    add_batch(&cli, &["--gmail-archive-folder", "Old/Gmail archive"]);
    pass(&cli, "start");
    let got = contents(&read_target(&target));
    let mut want = expected(&messages);
    let archived = want.remove("Archive").expect("archived mail");
    want.insert("Old/Gmail archive".to_owned(), archived);
    assert_eq!(got, want);
}

/// Sends `command` (raw bytes, CRLF included) and reads up to its tagged answer.
fn exchange(
    stream: &mut std::net::TcpStream,
    reader: &mut impl std::io::BufRead,
    tag: &str,
    command: &[u8],
) -> Vec<String> {
    use std::io::Write;
    stream.write_all(command).expect("send");
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).expect("read") > 0, "closed");
        let done = line.starts_with(&format!("{tag} "));
        lines.push(line);
        if done {
            return lines;
        }
    }
}

#[test]
fn gmail_like_relay_shows_gmails_face() {
    use std::io::BufRead;
    let server = start("gmail");
    let relay = GmailLike::start(server.plain_addr(), GmailLikeConfig::default()).expect("relay");
    let mut direct = server.connect(USER).expect("login");
    GmailLike::create_folders(&mut direct, &["Work"]).expect("folders");
    let ids = relay
        .seed(
            &mut direct,
            &[
                message(1, &["\\Inbox", "Work"], Bin::AllMail, true),
                message(2, &[], Bin::AllMail, true),
                message(3, &[], Bin::Trash, true),
            ],
        )
        .expect("seed");
    direct.logout().expect("logout");

    let mut stream = std::net::TcpStream::connect(relay.addr()).expect("connect");
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    let mut greeting = String::new();
    reader.read_line(&mut greeting).expect("greeting");
    assert!(
        greeting.starts_with("* OK Gimap ready for requests from 127.0.0.1"),
        "{greeting}"
    );
    let caps = exchange(&mut stream, &mut reader, "a", b"a CAPABILITY\r\n");
    assert!(caps[0].contains("X-GM-EXT-1 XYZZY SASL-IR"), "{caps:?}");
    let login = format!("b LOGIN \"{USER}\" \"{PASSWORD}\"\r\n");
    let answer = exchange(&mut stream, &mut reader, "b", login.as_bytes());
    assert!(answer.last().unwrap().starts_with("b OK"), "{answer:?}");
    let caps = exchange(&mut stream, &mut reader, "c", b"c CAPABILITY\r\n");
    assert_eq!(
        caps[0].trim_end(),
        format!("* CAPABILITY {}", support::gmail_like::GMAIL_CAPABILITIES)
    );
    assert!(!caps[0].contains("MULTIAPPEND") && caps[0].contains("LITERAL- "));
    // `[Gmail]` is \Noselect; its folders carry Gmail's attributes.
    let list = exchange(&mut stream, &mut reader, "d", b"d LIST \"\" \"*\"\r\n");
    let line_of = |name: &str| {
        list.iter()
            .find(|l| {
                l.trim_end().ends_with(&format!("\"{name}\""))
                    || l.trim_end().ends_with(&format!(" {name}"))
            })
            .cloned()
            .unwrap_or_else(|| panic!("{name} listed: {list:?}"))
    };
    assert!(line_of("[Gmail]").contains("\\Noselect"), "{list:?}");
    for (name, attr) in support::gmail_like::GMAIL_SYSTEM_FOLDERS {
        assert!(line_of(name).contains(attr), "{name}: {list:?}");
        assert!(line_of(name).contains("\"/\""), "{name}: {list:?}");
    }
    // One message, one X-GM-MSGID in INBOX, in its label and in All Mail; its labels.
    let id = ids[0].to_string();
    for (tag, folder) in [("e", "INBOX"), ("g", "Work")] {
        exchange(
            &mut stream,
            &mut reader,
            tag,
            format!("{tag} EXAMINE \"{folder}\"\r\n").as_bytes(),
        );
        let f = exchange(
            &mut stream,
            &mut reader,
            "f",
            b"f UID FETCH 1:* (UID X-GM-MSGID X-GM-LABELS)\r\n",
        );
        assert!(
            f[0].contains(&format!("X-GM-MSGID {id} ")),
            "{folder}: {f:?}"
        );
        assert!(
            f[0].contains("X-GM-LABELS (\\Inbox \"Work\")"),
            "{folder}: {f:?}"
        );
    }
    exchange(
        &mut stream,
        &mut reader,
        "h",
        b"h EXAMINE \"[Gmail]/All Mail\"\r\n",
    );
    let all = exchange(
        &mut stream,
        &mut reader,
        "i",
        b"i FETCH 1:* (X-GM-MSGID X-GM-THRID X-GM-LABELS)\r\n",
    );
    let fetched: Vec<&String> = all.iter().filter(|l| l.contains(" FETCH (")).collect();
    assert_eq!(fetched.len(), 2, "All Mail holds all but Trash: {all:?}");
    assert!(fetched[0].contains(&format!("X-GM-MSGID {id} ")), "{all:?}");
    assert!(
        fetched[1].contains(&format!("X-GM-MSGID {} ", ids[1])),
        "{all:?}"
    );
    assert!(
        fetched[1].contains("X-GM-LABELS ()"),
        "archived: no label: {all:?}"
    );
    // No MULTIAPPEND; LITERAL- allows no longer non-synchronizing literal than 4096.
    let multi = exchange(
        &mut stream,
        &mut reader,
        "j",
        b"j APPEND INBOX {3+}\r\nabc {3+}\r\nabc\r\n",
    );
    assert!(multi[0].starts_with("j BAD"), "{multi:?}");
    let mut long = b"k APPEND INBOX {5000+}\r\n".to_vec();
    long.extend(std::iter::repeat_n(b'a', 5000));
    long.extend_from_slice(b"\r\n");
    let refused = exchange(&mut stream, &mut reader, "k", &long);
    assert!(refused[0].starts_with("k BAD"), "{refused:?}");
    assert_eq!(relay.stats().refused.load(Ordering::Relaxed), 2);
}

#[test]
fn the_endpoints_stored_provider_is_what_the_pass_follows() {
    // A Gmail-like server added with `--provider generic`: the administrator said it is
    // not Gmail, so All Mail and Starred are copied as the folders they appear to be.
    let gmail = start("gmail");
    let target = start("target");
    let relay = GmailLike::start(gmail.plain_addr(), GmailLikeConfig::default()).expect("relay");
    let messages = vec![
        message(1, &["\\Inbox", "\\Starred"], Bin::AllMail, true),
        message(2, &[], Bin::AllMail, true),
    ];
    let mut direct = gmail.connect(USER).expect("log in to seed");
    GmailLike::create_folders(&mut direct, &[]).expect("folders");
    relay.seed(&mut direct, &messages).expect("seed");
    direct.logout().expect("logout");
    let cli = Cli::new();
    add_endpoint(&cli, "src", relay.addr().port(), &["--provider", "generic"]);
    add_endpoint(&cli, "dst", target.plain_addr().port(), &[]);
    add_batch(&cli, &[]);
    pass(&cli, "start");
    let got = contents(&read_target(&target));
    let count = |needle: &str| {
        got.iter()
            .filter(|(name, _)| name.contains(needle))
            .map(|(_, v)| v.len())
            .sum::<usize>()
    };
    assert_eq!(count("All Mail"), 2, "{got:?}");
    assert_eq!(count("Starred"), 1, "{got:?}");
    assert!(!got.contains_key("Archive"), "{got:?}");
}
