//! Microsoft 365 / Exchange Online as target and as source, through the kit's
//! Exchange-like relay (tests/support/exchange_like.rs) in front of a Dovecot: Exchange's
//! capabilities (no MULTIAPPEND, CONDSTORE, SPECIAL-USE, ...), its folder names, 3 %
//! of the commands throttled with a suggested back-off and a connection drop every ~30
//! commands. Each migration must be exact — every message once, with the bytes, flags
//! and INTERNALDATE Dovecot stores for a plain APPEND (the probe, as in
//! tests/server_matrix.rs) — although it is interrupted dozens of times.

#![forbid(unsafe_code)]

mod cli_harness;
mod support;

use std::sync::atomic::Ordering;

use cli_harness::Cli;
use support::exchange_like::{EXCHANGE_FOLDERS, ExchangeLike, ExchangeLikeConfig};
use support::{
    Corpus, CorpusSpec, Family, FamilyServer, FolderPath, MASTER_PASSWORD, MASTER_USER,
    MailboxSnapshot, Verifier, append_probe, read_stored, selectable_folders,
};

const USER: &str = "alice@example.test";
const PASSWORD: &str = "Alice-pw-7q";
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

/// Exchange's hostile side: 3 % throttled (a short suggested back-off, to keep the test
/// quick), a drop every 30 commands.
fn hostile() -> ExchangeLikeConfig {
    ExchangeLikeConfig {
        throttle_per_mille: 30,
        backoff_ms: 150,
        drop_every: Some(30),
        ..ExchangeLikeConfig::polite()
    }
}

/// The Exchange name of a corpus folder: its special-use folders as Exchange calls them.
fn exchange_name(path: &FolderPath) -> Vec<String> {
    let mut parts = path.0.clone();
    if let Some(first) = parts.first_mut() {
        let renamed = match first.as_str() {
            "Sent" => "Sent Items",
            "Trash" => "Deleted Items",
            "Junk" => "Junk Email",
            _ => first.as_str(),
        };
        *first = renamed.to_owned();
    }
    parts
}

/// Appends the corpus into `USER` on `server`, folders named by `name`.
fn seed(server: &FamilyServer, corpus: &Corpus, exchange_names: bool) -> usize {
    let mut client = server.connect(USER).expect("log in to seed");
    let sep = server.separator().to_string();
    let name = |path: &FolderPath| {
        if path.is_inbox() {
            "INBOX".to_owned()
        } else if exchange_names {
            exchange_name(path).join(&sep)
        } else {
            server.name_of(path)
        }
    };
    for folder in corpus.folders() {
        if !folder.path.is_inbox() {
            let _ = client.create(&name(&folder.path));
        }
    }
    let mut stored = 0;
    for m in corpus.messages() {
        if client
            .append(&name(&m.folder), &m.flags, Some(m.internal_date), &m.bytes)
            .is_ok()
        {
            stored += 1;
        }
    }
    client.logout().expect("logout");
    stored
}

/// The relay (or the Dovecot itself) as endpoint `name`, the master user acting as the
/// user.
fn add_endpoint(cli: &Cli, name: &str, port: u16) {
    let pw = cli.file(
        &format!("{name}.pw"),
        format!("{MASTER_PASSWORD}\n").as_bytes(),
    );
    let port = port.to_string();
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
        MASTER_USER,
        "--admin-password-file",
        &pw,
        "--admin-format",
        "dovecot",
    ]);
}

fn migrate(cli: &Cli, source_port: u16, target_port: u16) {
    add_endpoint(cli, "src", source_port);
    add_endpoint(cli, "dst", target_port);
    let csv = cli.file(
        "users.csv",
        format!("EmailAddress,UserName,Password\r\n{USER},{USER},{PASSWORD}\r\n").as_bytes(),
    );
    cli.ok(&[
        "batch", "add", "m365", "--csv", &csv, "--source", "src", "--target", "dst",
    ]);
    let run = cli.run(&["batch", "start", "m365", "--wait"]);
    if std::env::var_os("EXCHANGE_TEST_LOG").is_some() {
        eprintln!("{}{}", run.stdout, run.stderr);
    }
    assert!(
        run.code == 0,
        "the pass failed:\n{}{}",
        run.stdout,
        run.stderr
    );
}

/// Probe: what Dovecot stores for plain APPENDs of the source's messages.
fn probe(source: &FamilyServer, target: &FamilyServer) -> MailboxSnapshot {
    let folders = selectable_folders(source, USER).expect("source folders");
    let stored = read_stored(source, USER).expect("source messages");
    let refused = append_probe(source, target, PROBE, &folders, &stored).expect("probe");
    assert_eq!(refused.messages, 0, "Dovecot takes the whole corpus");
    target
        .user_endpoint(PROBE)
        .and_then(|e| MailboxSnapshot::read(&e))
        .expect("read the probe")
}

#[test]
fn dovecot_to_exchange_online_through_throttling_and_drops() {
    let source = start("source");
    let target = start("exchange");
    let corpus = Corpus::generate(CorpusSpec::small(13));
    let seeded = seed(&source, &corpus, false);
    assert!(seeded >= 290, "the source holds {seeded} messages");
    // A Microsoft 365 mailbox comes with its folders.
    let mut client = target.connect(USER).expect("target login");
    for name in EXCHANGE_FOLDERS {
        client.create(name).expect("create an Exchange folder");
    }
    client.logout().expect("logout");
    let relay = ExchangeLike::start(target.plain_addr(), hostile()).expect("relay starts");

    let cli = Cli::new();
    migrate(&cli, source.plain_addr().port(), relay.addr().port());
    let stats = relay.stats();
    let (throttled, dropped) = (
        stats.throttled.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed),
    );
    assert!(
        throttled > 0 && dropped > 0,
        "the relay interfered (throttled {throttled}, dropped {dropped})"
    );
    assert_eq!(
        stats.refused.load(Ordering::Relaxed),
        0,
        "nothing Exchange lacks was used"
    );

    let expected = probe(&source, &target);
    let migrated = target
        .user_endpoint(USER)
        .and_then(|e| MailboxSnapshot::read(&e))
        .expect("read the migrated mailbox");
    // The source's Sent, Trash and Junk land in Exchange's own folders, by name.
    let report = Verifier::new()
        .with_folder_map(|name, _, _| {
            let mut parts: Vec<String> = name.split('/').map(str::to_owned).collect();
            if let Some(first) = parts.first_mut() {
                *first = match first.as_str() {
                    "Sent" => "Sent Items".to_owned(),
                    "Trash" => "Deleted Items".to_owned(),
                    "Junk" => "Junk Email".to_owned(),
                    other => other.to_owned(),
                };
            }
            Some(parts.join("/"))
        })
        .compare_snapshots(&expected, &migrated);
    assert!(
        report.is_equal(),
        "the migrated mailbox differs from plain APPENDs (throttled {throttled}, dropped \
         {dropped}):\n{report}"
    );
}

/// What a migration into the Exchange-like target cost: the relay's connections and
/// throttled commands, and the seconds the report says the pass waited out throttling.
struct ExchangeRun {
    connections: u64,
    throttled: u64,
    reported_throttle_wait: f64,
}

/// Migrates the corpus of `seed` into a fresh Exchange-like target behind a relay with
/// `config` and checks the result exact.
fn migrate_into_exchange(seed: u64, config: ExchangeLikeConfig) -> ExchangeRun {
    let source = start("source");
    let target = start("exchange");
    let corpus = Corpus::generate(CorpusSpec::small(seed));
    let seeded = seed_corpus(&source, &corpus);
    assert!(seeded >= 290, "the source holds {seeded} messages");
    let mut client = target.connect(USER).expect("target login");
    for name in EXCHANGE_FOLDERS {
        client.create(name).expect("create an Exchange folder");
    }
    client.logout().expect("logout");
    let relay = ExchangeLike::start(target.plain_addr(), config).expect("relay starts");
    let cli = Cli::new();
    migrate(&cli, source.plain_addr().port(), relay.addr().port());
    let stats = relay.stats();
    let expected = probe(&source, &target);
    let migrated = target
        .user_endpoint(USER)
        .and_then(|e| MailboxSnapshot::read(&e))
        .expect("read the migrated mailbox");
    let report = Verifier::new()
        .with_folder_map(|name, _, _| Some(exchange_name_of(name)))
        .compare_snapshots(&expected, &migrated);
    assert!(report.is_equal(), "the migrated mailbox differs:\n{report}");
    let users = cli.json(&["batch", "users", "m365", "--json"]);
    ExchangeRun {
        connections: stats.connections.load(Ordering::Relaxed),
        throttled: stats.throttled.load(Ordering::Relaxed),
        reported_throttle_wait: users[0]["last_pass_throttle_wait_seconds"]
            .as_f64()
            .unwrap_or_else(|| panic!("no throttle wait in {users:#}")),
    }
}

fn seed_corpus(server: &FamilyServer, corpus: &Corpus) -> usize {
    seed(server, corpus, false)
}

/// A source folder's name as the migration names it on an Exchange target.
fn exchange_name_of(name: &str) -> String {
    let mut parts: Vec<String> = name.split('/').map(str::to_owned).collect();
    if let Some(first) = parts.first_mut() {
        *first = match first.as_str() {
            "Sent" => "Sent Items".to_owned(),
            "Trash" => "Deleted Items".to_owned(),
            "Junk" => "Junk Email".to_owned(),
            other => other.to_owned(),
        };
    }
    parts.join("/")
}

/// Exchange's throttling answer to an APPEND means "wait and send it again": the
/// message is sent again on the same connection after the suggested back-off, so a
/// throttled migration opens exactly the connections of an unthrottled one, and every
/// message is there once.
#[test]
fn throttled_appends_are_sent_again_on_the_same_connection() {
    let polite = migrate_into_exchange(17, ExchangeLikeConfig::polite());
    assert_eq!(polite.throttled, 0);
    assert_eq!(polite.reported_throttle_wait, 0.0);
    let run = migrate_into_exchange(
        17,
        ExchangeLikeConfig {
            throttle_per_mille: 60,
            backoff_ms: 40,
            ..ExchangeLikeConfig::polite()
        },
    );
    let throttled = run.throttled;
    assert!(throttled >= 10, "the relay throttled {throttled} commands");
    assert_eq!(
        run.connections, polite.connections,
        "throttling ({throttled} commands) cost no reconnect"
    );
    // Every throttled command was waited out for its 40 ms (an APPEND group refused
    // whole waits once for all its messages), and the report says so.
    assert!(
        run.reported_throttle_wait >= 0.04,
        "{} s reported for {throttled} throttled commands",
        run.reported_throttle_wait
    );
}

#[test]
fn exchange_online_to_dovecot_through_throttling_and_drops() {
    let source = start("exchange");
    let target = start("target");
    let corpus = Corpus::generate(CorpusSpec::small(31));
    let seeded = seed(&source, &corpus, true);
    assert!(seeded >= 290, "the source holds {seeded} messages");
    let relay = ExchangeLike::start(source.plain_addr(), hostile()).expect("relay starts");

    let cli = Cli::new();
    migrate(&cli, relay.addr().port(), target.plain_addr().port());
    let stats = relay.stats();
    let (throttled, dropped) = (
        stats.throttled.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed),
    );
    assert!(
        throttled > 0 && dropped > 0,
        "the relay interfered (throttled {throttled}, dropped {dropped})"
    );
    let expected = probe(&source, &target);
    let migrated = target
        .user_endpoint(USER)
        .and_then(|e| MailboxSnapshot::read(&e))
        .expect("read the migrated mailbox");
    let report = Verifier::new()
        .with_folder_map(|name, _, _| Some(name.to_owned()))
        .compare_snapshots(&expected, &migrated);
    assert!(
        report.is_equal(),
        "the migrated mailbox differs from plain APPENDs (throttled {throttled}, dropped \
         {dropped}):\n{report}"
    );
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
fn exchange_like_relay_shows_exchanges_face() {
    use std::io::BufRead;
    let server = start("exchange");
    let mut client = server.connect(USER).expect("login");
    client.create("Sent Items").expect("create");
    client.logout().expect("logout");
    let relay = ExchangeLike::start(
        server.plain_addr(),
        ExchangeLikeConfig {
            size_limit: 10,
            ..ExchangeLikeConfig::polite()
        },
    )
    .expect("relay starts");
    let mut stream = std::net::TcpStream::connect(relay.addr()).expect("connect");
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    let mut greeting = String::new();
    reader.read_line(&mut greeting).expect("greeting");
    assert!(
        greeting.starts_with("* OK The Microsoft Exchange IMAP4 service is ready."),
        "{greeting}"
    );
    let login = format!("a LOGIN \"{USER}\" \"{PASSWORD}\"\r\n");
    let answer = exchange(&mut stream, &mut reader, "a", login.as_bytes());
    assert!(answer.last().unwrap().starts_with("a OK"), "{answer:?}");
    let caps = exchange(&mut stream, &mut reader, "b", b"b CAPABILITY\r\n");
    assert_eq!(
        caps[0].trim_end(),
        "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+"
    );
    // What Exchange lacks is refused even when used anyway.
    let condstore = exchange(
        &mut stream,
        &mut reader,
        "c",
        b"c SELECT INBOX (CONDSTORE)\r\n",
    );
    assert!(condstore[0].starts_with("c BAD"), "{condstore:?}");
    let multi = exchange(
        &mut stream,
        &mut reader,
        "d",
        b"d APPEND INBOX {3+}\r\nabc {3+}\r\nabc\r\n",
    );
    assert!(multi[0].starts_with("d BAD"), "{multi:?}");
    // Over the size limit: refused before it reaches the store.
    let big = exchange(
        &mut stream,
        &mut reader,
        "e",
        b"e APPEND INBOX {20+}\r\nSubject: x\r\n\r\n123456\r\n",
    );
    assert!(big[0].starts_with("e NO"), "{big:?}");
    // A synchronizing literal is acknowledged by the relay and goes through.
    use std::io::Write;
    stream.write_all(b"f APPEND INBOX {8}\r\n").expect("send");
    let mut plus = String::new();
    reader.read_line(&mut plus).expect("continuation");
    assert!(plus.starts_with('+'), "{plus}");
    let ok = exchange(&mut stream, &mut reader, "f", b"a: b\r\n\r\n\r\n");
    assert!(ok.last().unwrap().starts_with("f OK"), "{ok:?}");
    // Folders by name only, no special-use attributes.
    let list = exchange(&mut stream, &mut reader, "g", b"g LIST \"\" \"*\"\r\n");
    assert!(list.iter().any(|l| l.contains("Sent Items")), "{list:?}");
    assert!(!list.iter().any(|l| l.contains("\\Sent")), "{list:?}");
    assert_eq!(relay.stats().refused.load(Ordering::Relaxed), 2);
    assert_eq!(relay.stats().too_large.load(Ordering::Relaxed), 1);
}

/// A message of about `size` bytes (CRLF lines of base64-like text), with `subject`.
fn sized_message(subject: &str, size: usize, salt: u64) -> Vec<u8> {
    let head = format!(
        "From: Big Sender <big@example.net>\r\nTo: {USER}\r\nSubject: {subject}\r\n\
         Date: Tue, 3 Mar 2026 10:00:00 +0000\r\nMessage-ID: <size-{salt}@example.net>\r\n\
         MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    );
    const LINE: usize = 76;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(size + LINE + 2);
    out.extend_from_slice(head.as_bytes());
    let mut rng = support::SplitMix64::new(salt);
    while out.len() + LINE + 2 <= size {
        let word = rng.next_u64();
        for i in 0..LINE {
            out.push(ALPHABET[((word >> ((i % 10) * 6)) as usize + i) % 64]);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Exchange Online refuses messages over 35 MB (its default maximum message size) and
/// does not announce it: a message over it in the source is skipped before upload, with
/// the reason in the batch report; one just under it is copied byte for byte, and the
/// rest of the folder is exact. The big messages are written once into the source's
/// Maildir, one at a time, and travel streamed (the engine's large-message path).
#[test]
fn a_message_over_exchanges_size_limit_is_skipped_and_reported_one_under_it_is_copied() {
    use support::exchange_like::EXCHANGE_SIZE_LIMIT;
    use support::{Flag, InternalDate, SeedFolder, SeedMessage};
    let source = start("source");
    let target = start("exchange");
    let FamilyServer::Dovecot(dovecot) = &source else {
        panic!("the source is a Dovecot");
    };
    let limit = EXCHANGE_SIZE_LIMIT as usize;
    let inbox = || SeedFolder {
        path: FolderPath::inbox(),
        subscribed: true,
    };
    let date = InternalDate::new(1_772_532_000, 60);
    let one = |bytes: Vec<u8>, flags: Vec<Flag>| SeedMessage {
        folder: FolderPath::inbox(),
        bytes,
        flags,
        internal_date: date,
    };
    // Small mail around the big ones, so that "the rest of the folder" means something.
    let small: Vec<SeedMessage> = (0..6)
        .map(|i| {
            one(
                sized_message(&format!("small {i}"), 2_000 + i * 700, i as u64),
                vec![Flag::Seen],
            )
        })
        .collect();
    dovecot
        .seed(USER, &[inbox()], small)
        .expect("seed small mail");
    dovecot
        .seed(
            USER,
            &[inbox()],
            [one(
                sized_message("over the limit", limit + 64 * 1024, 100),
                vec![],
            )],
        )
        .expect("seed the message over the limit");
    dovecot
        .seed(
            USER,
            &[inbox()],
            [one(
                sized_message("just under the limit", limit - 16 * 1024, 200),
                vec![Flag::Flagged],
            )],
        )
        .expect("seed the message under the limit");
    let more: Vec<SeedMessage> = (6..9)
        .map(|i| {
            one(
                sized_message(&format!("small {i}"), 3_000 + i * 500, i as u64),
                vec![],
            )
        })
        .collect();
    dovecot
        .seed(USER, &[inbox()], more)
        .expect("seed more small mail");

    let relay = ExchangeLike::start(target.plain_addr(), ExchangeLikeConfig::polite())
        .expect("relay starts");
    let cli = Cli::new();
    migrate(&cli, source.plain_addr().port(), relay.addr().port());
    assert_eq!(
        relay.stats().too_large.load(Ordering::Relaxed),
        0,
        "the message over the limit was never sent"
    );

    let report = cli.json(&["batch", "report", "m365", "--format", "json"]);
    let skipped = report["skipped"].as_array().expect("skipped items");
    assert_eq!(skipped.len(), 1, "{report:#}");
    let item = &skipped[0];
    assert_eq!(item["reason"], "too large", "{item:#}");
    assert_eq!(item["subject"], "over the limit", "{item:#}");
    assert!(
        item["size"]
            .as_u64()
            .is_some_and(|s| s > EXCHANGE_SIZE_LIMIT),
        "{item:#}"
    );
    assert_eq!(report["batch"]["items_skipped"], 1, "{report:#}");

    // The target holds exactly the source's INBOX but the message over the limit.
    let mut expected = source
        .user_endpoint(USER)
        .and_then(|e| MailboxSnapshot::read(&e))
        .expect("read the source");
    let mut left_out = 0;
    for folder in &mut expected.folders {
        let before = folder.messages.len();
        folder.messages.retain(|m| m.size <= limit);
        left_out += before - folder.messages.len();
    }
    assert_eq!(left_out, 1, "one source message is over the limit");
    let migrated = target
        .user_endpoint(USER)
        .and_then(|e| MailboxSnapshot::read(&e))
        .expect("read the migrated mailbox");
    assert!(
        migrated
            .folders
            .iter()
            .flat_map(|f| &f.messages)
            .any(|m| m.subject == "just under the limit" && m.size > limit - 32 * 1024),
        "the message just under the limit is there"
    );
    let report = Verifier::new()
        .with_folder_map(|name, _, _| Some(exchange_name_of(name)))
        .compare_snapshots(&expected, &migrated);
    assert!(report.is_equal(), "the migrated mailbox differs:\n{report}");
}

/// A connection Exchange drops while a new mailbox's folders are planned (its CREATEs
/// on the target) is retried on new connections like a drop while copying, instead of
/// failing the mailbox's pass.
#[test]
fn a_drop_while_the_folders_are_planned_is_retried() {
    let source = start("source");
    let target = start("exchange");
    let corpus = Corpus::generate(CorpusSpec::small(23).with_messages(60));
    let seeded = seed_corpus(&source, &corpus);
    assert!(seeded >= 50, "the source holds {seeded} messages");
    let mut client = target.connect(USER).expect("target login");
    for name in EXCHANGE_FOLDERS {
        client.create(name).expect("create an Exchange folder");
    }
    client.logout().expect("logout");
    let relay = ExchangeLike::start(
        target.plain_addr(),
        ExchangeLikeConfig {
            drop_once_on: Some("CREATE"),
            ..ExchangeLikeConfig::polite()
        },
    )
    .expect("relay starts");
    let cli = Cli::new();
    migrate(&cli, source.plain_addr().port(), relay.addr().port());
    assert!(
        relay.stats().dropped_once.load(Ordering::Relaxed),
        "the relay dropped the connection at a CREATE"
    );
    assert_eq!(relay.stats().dropped.load(Ordering::Relaxed), 1);
    let expected = probe(&source, &target);
    let migrated = target
        .user_endpoint(USER)
        .and_then(|e| MailboxSnapshot::read(&e))
        .expect("read the migrated mailbox");
    let report = Verifier::new()
        .with_folder_map(|name, _, _| Some(exchange_name_of(name)))
        .compare_snapshots(&expected, &migrated);
    assert!(report.is_equal(), "the migrated mailbox differs:\n{report}");
}
