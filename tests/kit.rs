//! Tests of the real-Dovecot test kit itself: servers start and stop cleanly, every login
//! form works over every transport, seeding stores exactly what was asked, and the
//! verifier both passes equal mail and names each difference in altered mail.
//!
//! Run with `cargo test --test kit`. Dovecot (Debian's dovecot-imapd) must be installed,
//! and as root the system user `vmail` must exist (scripts/install-deps).

#![forbid(unsafe_code)]

mod support;

use std::collections::BTreeSet;

use support::imap_client::DEFAULT_TIMEOUT;
use support::mailbox_verifier::{FolderSnapshot, MessageFacts};
use support::*;

/// Runs a test body, turning a kit error into a panic that reads as one sentence.
fn run(body: impl FnOnce() -> Result<(), KitError>) {
    if let Err(e) = body() {
        panic!("{e}");
    }
}

const ALICE: &str = "alice@example.test";
const ALICE_PW: &str = "alice pw";
const BOB: &str = "bob@example.test";
const BOB_PW: &str = "bob-pw";

fn two_user_server(label: &str, layout: Layout) -> Result<Dovecot, KitError> {
    Dovecot::builder()
        .label(label)
        .layout(layout)
        .user(ALICE, ALICE_PW)
        .user(BOB, BOB_PW)
        .start()
}

/// Folder names the user sees, via LIST.
fn folder_names(client: &mut ImapClient) -> Result<BTreeSet<String>, KitError> {
    Ok(client.list("", "*")?.into_iter().map(|e| e.name).collect())
}

/// Every login form over every transport on one server, and refusals of wrong passwords.
fn check_logins(server: &Dovecot) -> Result<(), KitError> {
    // Bob owns a folder Alice lacks, so we can tell whose mail a master login reads.
    server.seed(
        BOB,
        &[SeedFolder {
            path: FolderPath::new(&["Only Bob"]),
            subscribed: false,
        }],
        [],
    )?;
    let (master, master_pw) = server.master();
    for mode in [TlsMode::None, TlsMode::StartTls, TlsMode::Implicit] {
        let logins = [
            (Credentials::login(BOB, BOB_PW), "own password"),
            (
                Credentials::master_login(BOB, master, master_pw),
                "LOGIN user*master",
            ),
            (
                Credentials::master_plain(BOB, master, master_pw),
                "PLAIN authzid",
            ),
        ];
        for (credentials, how) in logins {
            let mut client = server.endpoint(mode, credentials).connect()?;
            assert_eq!(
                client.is_tls(),
                mode != TlsMode::None,
                "{} {mode:?} {how}",
                server.label()
            );
            let entries = client.list("", "*")?;
            assert!(
                entries.iter().any(|e| e.name == "Only Bob"),
                "{} {mode:?} {how}: Bob's folder not listed: {entries:?}",
                server.label()
            );
            assert!(
                entries
                    .iter()
                    .all(|e| e.separator == Some(server.separator())),
                "{}: separator {:?} expected in {entries:?}",
                server.label(),
                server.separator()
            );
            client.logout()?;
        }

        // The master user acting for Alice sees Alice's mail, not Bob's.
        let mut alice = server
            .endpoint(mode, Credentials::master_plain(ALICE, master, master_pw))
            .connect()?;
        assert!(!folder_names(&mut alice)?.contains("Only Bob"));
        alice.logout()?;

        for wrong in [
            Credentials::login(BOB, "not the password"),
            Credentials::master_login(BOB, master, "not the password"),
            Credentials::master_plain(BOB, master, "not the password"),
        ] {
            let error = server
                .endpoint(mode, wrong.clone())
                .connect()
                .err()
                .unwrap_or_else(|| panic!("{mode:?} {wrong:?} was accepted"));
            assert!(error.is_refusal(), "{mode:?} {wrong:?}: {error}");
            assert!(
                error.to_string().contains("AUTHENTICATIONFAILED"),
                "{error}"
            );
        }
    }
    let plain = ImapClient::connect(server.plain_addr(), &Security::Plain, DEFAULT_TIMEOUT)?;
    assert!(plain.has_capability("STARTTLS"));
    Ok(())
}

#[test]
fn every_login_form_over_every_transport_on_both_layouts() {
    run(|| {
        let maildir = two_user_server("maildir++", Layout::MaildirPlusPlus)?;
        let fs = two_user_server("fs", Layout::Fs)?;
        std::thread::scope(|scope| {
            let checks = [&maildir, &fs].map(|server| scope.spawn(move || check_logins(server)));
            for check in checks {
                match check.join() {
                    Ok(result) => result?,
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok::<(), KitError>(())
        })?;

        // The certificate is checked: one instance's CA does not vouch for the other.
        for (mode, addr) in [
            (TlsMode::Implicit, fs.tls_addr()),
            (TlsMode::StartTls, fs.plain_addr()),
        ] {
            let security = match mode {
                TlsMode::Implicit => Security::Tls(maildir.root_store()),
                _ => Security::StartTls(maildir.root_store()),
            };
            let error = ImapClient::connect(addr, &security, DEFAULT_TIMEOUT)
                .err()
                .unwrap_or_else(|| panic!("{mode:?} trusted a certificate from a foreign CA"));
            assert!(error.is_tls(), "{mode:?}: {error}");
        }
        let ca = std::fs::read_to_string(maildir.ca_file())
            .map_err(|e| KitError::file("read", maildir.ca_file(), e))?;
        assert_eq!(ca, maildir.ca_pem());
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        Ok(())
    });
}

/// What the corpus should look like when served: Dovecot turns stored bare LF into CRLF.
fn expected_snapshot(corpus: &Corpus, separator: char) -> MailboxSnapshot {
    let mut folders: Vec<FolderSnapshot> = corpus
        .folders()
        .iter()
        .map(|f| FolderSnapshot {
            name: f.path.join(separator),
            separator: Some(separator),
            selectable: true,
            uidvalidity: None,
            messages: Vec::new(),
        })
        .collect();
    for (uid, message) in corpus.messages().enumerate() {
        let served = crlf(&message.bytes);
        let flags: Vec<String> = message.flags.iter().map(Flag::to_imap).collect();
        let facts = MessageFacts::from_bytes(uid as u32, &served, &flags, message.internal_date);
        let name = message.folder.join(separator);
        if let Some(folder) = folders.iter_mut().find(|f| f.name == name) {
            folder.messages.push(facts);
        }
    }
    MailboxSnapshot {
        label: "corpus".to_owned(),
        server: "generator".to_owned(),
        login: String::new(),
        folders,
    }
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 20);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[test]
fn seeded_corpus_is_served_exactly_and_verifies_across_layouts() {
    run(|| {
        let maildir = Dovecot::builder()
            .label("source")
            .layout(Layout::MaildirPlusPlus)
            .start()?;
        let fs = Dovecot::builder()
            .label("target")
            .layout(Layout::Fs)
            .start()?;
        let corpus = Corpus::generate(CorpusSpec::small(0x5eed));
        for server in [&maildir, &fs] {
            let report = server.seed(DEFAULT_USER, corpus.folders(), corpus.messages())?;
            assert_eq!(report.messages, corpus.len());
        }

        // Seeding stored exactly the corpus: bytes, flags with keywords, INTERNALDATEs.
        let snapshot = MailboxSnapshot::read(&maildir.master_endpoint(DEFAULT_USER)?)?;
        assert_eq!(snapshot.message_count(), corpus.len());
        let expected = expected_snapshot(&corpus, '.');
        let against_corpus = Verifier::new().compare_snapshots(&expected, &snapshot);
        against_corpus.assert_equal();

        // Names travel as modified UTF-7 and come back as the Unicode the corpus used.
        let mut client = maildir.connect_master(DEFAULT_USER)?;
        let entries = client.list("", "*")?;
        let rd = entries
            .iter()
            .find(|e| e.name == "R&D")
            .map(|e| e.wire_name.clone());
        assert_eq!(rd.as_deref(), Some(&b"R&-D"[..]));
        assert!(entries.iter().any(|e| e.name == "Deep.Er.Est 😀"));
        let subscribed: BTreeSet<String> = client.subscribed()?.into_iter().collect();
        let expected: BTreeSet<String> = corpus
            .folders()
            .iter()
            .filter(|f| f.subscribed)
            .map(|f| f.path.join('.'))
            .collect();
        assert_eq!(subscribed, expected);
        client.logout()?;

        // The verifier passes a server against itself, and across layouts by separator.
        verify_user(&maildir, &maildir, DEFAULT_USER)?.assert_equal();
        let across = verify_user(&maildir, &fs, DEFAULT_USER)?;
        across.assert_equal();
        assert_eq!(across.messages_compared, corpus.len());
        assert_eq!(across.folders_compared, corpus.folders().len());
        verify_user(&fs, &maildir, DEFAULT_USER)?.assert_equal();
        Ok(())
    });
}

#[test]
fn altered_copy_is_reported_difference_by_difference() {
    run(|| {
        let source = Dovecot::builder().label("source").start()?;
        let target = Dovecot::builder()
            .label("target")
            .layout(Layout::Fs)
            .start()?;
        let corpus = Corpus::generate(CorpusSpec::small(99).with_messages(120));
        source.seed(DEFAULT_USER, corpus.folders(), corpus.messages())?;

        let in_folder = |name: &[&str]| {
            let path = FolderPath::new(name);
            (20..corpus.len()).find(|&i| corpus.message(i).folder == path)
        };
        let (Some(changed_byte), Some(changed_flag), Some(dropped)) = (
            in_folder(&["INBOX"]),
            in_folder(&["Sent"]),
            in_folder(&["Archive", "2024"]),
        ) else {
            return Err(KitError::Usage(
                "corpus lacks a folder the test needs".to_owned(),
            ));
        };
        let original = corpus.message(changed_byte);
        let dropped_message = corpus.message(dropped);
        let flagged_before = corpus.message(changed_flag).flags.contains(&Flag::Flagged);

        let altered = corpus.messages().enumerate().filter_map(|(i, mut m)| {
            if i == dropped {
                return None;
            }
            if i == changed_byte {
                let last = m.bytes.len() - 3;
                m.bytes[last] ^= 0x20;
            }
            if i == changed_flag {
                if flagged_before {
                    m.flags.retain(|f| *f != Flag::Flagged);
                } else {
                    m.flags.push(Flag::Flagged);
                }
            }
            Some(m)
        });
        target.seed(DEFAULT_USER, corpus.folders(), altered)?;

        let report = verify_user(&source, &target, DEFAULT_USER)?;
        let text = report.to_string();
        assert!(!report.is_equal());
        // One byte: the original is missing and a stranger is extra. One flag: flags
        // differ. One dropped: the count differs and the message is missing.
        assert_eq!(report.differences.len(), 5, "{text}");
        let original_facts =
            MessageFacts::from_bytes(0, &crlf(&original.bytes), &[], original.internal_date);
        let dropped_facts = MessageFacts::from_bytes(
            0,
            &crlf(&dropped_message.bytes),
            &[],
            dropped_message.internal_date,
        );
        let missing: Vec<&Difference> = report
            .differences
            .iter()
            .filter(|d| matches!(d, Difference::MessageMissing { .. }))
            .collect();
        assert_eq!(missing.len(), 2, "{text}");
        for facts in [&original_facts, &dropped_facts] {
            let hex = &facts.sha256_hex()[..16];
            assert_eq!(
                report.mentioning(hex).len(),
                1,
                "sha {hex} not named once:\n{text}"
            );
            assert!(
                text.contains(&format!("Subject {:?}", facts.subject)),
                "{text}"
            );
        }
        assert_eq!(
            report
                .differences
                .iter()
                .filter(|d| matches!(d, Difference::MessageExtra { .. }))
                .count(),
            1,
            "{text}"
        );
        let flag_change = if flagged_before {
            "{-\\Flagged}"
        } else {
            "{+\\Flagged}"
        };
        assert!(
            text.contains(&format!("flags differ {flag_change}")),
            "{text}"
        );
        assert!(
            text.contains("folder \"Archive.2024\": count differs"),
            "count difference not named:\n{text}"
        );

        // assert_equal panics with the explanation.
        let panic = std::panic::catch_unwind(|| report.assert_equal())
            .err()
            .and_then(|p| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(
            panic.contains("count differs") && panic.contains("flags differ"),
            "{panic}"
        );
        Ok(())
    });
}

#[test]
fn append_over_imap_adds_mail_to_a_running_server() {
    run(|| {
        let server = Dovecot::builder().layout(Layout::Fs).start()?;
        let corpus = Corpus::generate(CorpusSpec::small(5).with_messages(30));
        server.seed(DEFAULT_USER, corpus.folders(), corpus.messages())?;
        let before = MailboxSnapshot::read(&server.master_endpoint(DEFAULT_USER)?)?;

        let date = InternalDate::from_civil(2021, 6, 30, (8, 15, 0), -210)
            .ok_or_else(|| KitError::Usage("bad date".to_owned()))?;
        let new_folder = FolderPath::new(&["Added Later", "Ünïcode"]);
        let new_mail = vec![
            SeedMessage {
                folder: FolderPath::inbox(),
                bytes: b"Subject: appended\r\nMessage-ID: <a@x>\r\n\r\nhello\r\n".to_vec(),
                flags: vec![Flag::Seen, Flag::Keyword("$label1".to_owned())],
                internal_date: date,
            },
            SeedMessage {
                folder: new_folder.clone(),
                bytes: b"Subject: into a new folder\r\n\r\n8-bit \xe9\r\n".to_vec(),
                flags: vec![],
                internal_date: date,
            },
        ];
        let uids = server.append_messages(DEFAULT_USER, new_mail.clone())?;
        assert!(
            uids.iter().all(Option::is_some),
            "APPENDUID expected: {uids:?}"
        );

        let after = MailboxSnapshot::read(&server.master_endpoint(DEFAULT_USER)?)?;
        assert_eq!(after.message_count(), before.message_count() + 2);
        let inbox = after
            .folder("INBOX")
            .map(|f| f.messages.clone())
            .unwrap_or_default();
        let appended = inbox
            .iter()
            .find(|m| m.subject == "appended")
            .ok_or_else(|| KitError::Usage("appended message not found".to_owned()))?;
        assert_eq!(
            appended.flags,
            BTreeSet::from(["\\Seen".to_owned(), "$label1".to_owned()])
        );
        assert!(appended.internal_date.same_instant(&date));
        let folder = after
            .folder(&new_folder.join('/'))
            .map(|f| f.messages.len());
        assert_eq!(folder, Some(1));
        Ok(())
    });
}

#[test]
fn each_layout_refuses_the_other_separator_unless_escaped() {
    // Found by experiment with Dovecot 2.3.19: a Maildir++ ('.') server refuses '/' in a
    // name ("Name must not have '/' characters") unless the listescape plugin is loaded,
    // which stores it as "\2f"; an fs-layout ('/') server accepts '.' in a name, but
    // refuses the names cur, new and tmp, since its INBOX is the Maildir root.
    run(|| {
        let maildir = Dovecot::start(Layout::MaildirPlusPlus)?;
        let fs = Dovecot::start(Layout::Fs)?;
        let escaped = Dovecot::builder()
            .extra_config("mail_plugins = $mail_plugins listescape\nplugin {\n  listescape_char = \"\\\\\"\n}")
            .start()?;

        let mut client = maildir.connect_master(DEFAULT_USER)?;
        let refused = client.create("x/y").err();
        assert!(
            refused.as_ref().is_some_and(KitError::is_refusal),
            "{refused:?}"
        );
        client.logout()?;

        let mut client = fs.connect_master(DEFAULT_USER)?;
        client.create("v1.2 Release")?;
        let refused = client.create("cur").err();
        assert!(
            refused.as_ref().is_some_and(KitError::is_refusal),
            "{refused:?}"
        );
        assert!(folder_names(&mut client)?.contains("v1.2 Release"));
        client.logout()?;

        let mut client = escaped.connect_master(DEFAULT_USER)?;
        client.create("x/y")?;
        assert!(folder_names(&mut client)?.contains("x/y"));
        client.logout()?;

        // The kit's seeder says so up front instead of leaving it to Dovecot.
        let dotted = Corpus::generate(
            CorpusSpec::small(1)
                .with_messages(20)
                .with_dotted_names(true),
        );
        let error = maildir
            .seed(DEFAULT_USER, dotted.folders(), dotted.messages())
            .err();
        assert!(
            error
                .as_ref()
                .is_some_and(|e| e.to_string().contains("separator")),
            "{error:?}"
        );
        fs.seed(DEFAULT_USER, dotted.folders(), dotted.messages())?;
        Ok(())
    });
}

#[test]
fn no_dovecot_process_survives_drop_or_panic() {
    run(|| {
        let server = Dovecot::start(Layout::MaildirPlusPlus)?;
        let processes = server.processes();
        assert!(
            processes.len() >= 3,
            "master and children expected: {processes:?}"
        );
        let dir = server.dir().to_path_buf();
        drop(server);
        let survivors: Vec<_> = processes.iter().filter(|p| p.is_running()).collect();
        assert!(
            survivors.is_empty(),
            "still running after drop: {survivors:?}"
        );
        assert!(!dir.exists(), "{} left behind", dir.display());

        // A test that panics with a server up still stops it, by unwinding.
        let (sender, receiver) = std::sync::mpsc::channel();
        let outcome = std::thread::spawn(move || {
            let server = match Dovecot::start(Layout::Fs) {
                Ok(s) => s,
                Err(e) => {
                    let _ = sender.send(Err(e));
                    return;
                }
            };
            let _ = sender.send(Ok(server.processes()));
            panic!("deliberate panic with a Dovecot instance up");
        })
        .join();
        assert!(outcome.is_err(), "the thread should have panicked");
        let processes = receiver
            .recv()
            .map_err(|_| KitError::Usage("the panicking thread sent nothing".to_owned()))??;
        assert!(!processes.is_empty());
        let survivors: Vec<_> = processes.iter().filter(|p| p.is_running()).collect();
        assert!(
            survivors.is_empty(),
            "still running after a panic: {survivors:?}"
        );
        Ok(())
    });
}

/// Not a pass/fail test: measures seeding 10,000 realistic messages (~900 MB).
/// `cargo test --release --test kit -- --ignored --nocapture seed_10k`
#[test]
#[ignore = "a measurement: ~900 MB of mail, run by hand"]
fn seed_10k_realistic_messages_timing() {
    run(|| {
        let server = Dovecot::start(Layout::MaildirPlusPlus)?;
        let corpus = Corpus::generate(CorpusSpec::realistic(2024));
        let started = std::time::Instant::now();
        let generated: usize = corpus.messages().map(|m| m.bytes.len()).sum();
        let generation = started.elapsed();
        let started = std::time::Instant::now();
        let report = server.seed(DEFAULT_USER, corpus.folders(), corpus.messages())?;
        eprintln!(
            "generating the corpus alone: {:.1} s for {:.0} MB; seeding {} messages, {:.0} MB: \
             {:.1} s (generate + write {:.1} s, doveadm force-resync {:.1} s)",
            generation.as_secs_f64(),
            generated as f64 / 1e6,
            report.messages,
            report.bytes as f64 / 1e6,
            started.elapsed().as_secs_f64(),
            report.write_time.as_secs_f64(),
            report.index_time.as_secs_f64()
        );
        let started = std::time::Instant::now();
        let snapshot = MailboxSnapshot::read(&server.master_endpoint(DEFAULT_USER)?)?;
        eprintln!(
            "verifier snapshot (UID FETCH BODY.PEEK[] + SHA-256 of {} messages): {:.1} s",
            snapshot.message_count(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    });
}
