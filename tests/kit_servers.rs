//! Tests of the kit's other real servers, Cyrus IMAP 3.6 and Courier-IMAP 5.0: each starts
//! privately on 127.0.0.1, serves its users over LOGIN (and Cyrus its sasl admin acting for a
//! user with AUTHENTICATE PLAIN) on the plain, STARTTLS and implicit-TLS ways in, stores an
//! APPENDed message byte for byte, lists folders with its own separator, and stops with
//! nothing left running. The awkward-mail checks pin down what TESTING.md says each server
//! does with mail it does not like, so the kit documents reality.
//!
//! Run with `cargo test --test kit_servers`, as root, after scripts/install-mail-servers
//! (scripts/install-deps runs it).

#![forbid(unsafe_code)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use support::imap_client::{Arg, DEFAULT_TIMEOUT, FetchedMessage};
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

/// A well-formed message: CRLF line ends, a final CRLF, ASCII only.
fn plain_message(subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.test>\r\n\
         To: Bob <bob@example.test>\r\n\
         Subject: {subject}\r\n\
         Date: Tue, 02 Jan 2024 10:00:00 +0100\r\n\
         Message-ID: <{subject}@kit.example.test>\r\n\
         \r\n\
         Hello from the kit.\r\n"
    )
    .into_bytes()
}

fn date() -> InternalDate {
    InternalDate::from_civil(2024, 1, 2, (10, 0, 0), 60).expect("a valid date")
}

/// Selects `folder` and fetches its only message.
fn only_message(client: &mut ImapClient, folder: &str) -> Result<FetchedMessage, KitError> {
    client.select(folder)?;
    let mut all = client.fetch_all()?;
    assert_eq!(all.len(), 1, "{folder}: one message expected");
    Ok(all.remove(0))
}

/// APPENDs `message` with a keyword and a date to `folder` and fetches it back: the same
/// bytes, the flags and the instant.
fn append_and_fetch_exact(
    client: &mut ImapClient,
    folder: &str,
    message: &[u8],
) -> Result<(), KitError> {
    let flags = [Flag::Seen, Flag::Keyword("$KitLabel".to_owned())];
    let appended = client.append(folder, &flags, Some(date()), message)?;
    assert!(appended.is_some(), "{folder}: APPENDUID expected (UIDPLUS)");
    let fetched = only_message(client, folder)?;
    assert_eq!(
        fetched.body.as_deref(),
        Some(message),
        "{folder}: the message came back changed"
    );
    let served: BTreeSet<String> = fetched.flags.unwrap_or_default().into_iter().collect();
    for flag in ["\\Seen", "$KitLabel"] {
        assert!(served.contains(flag), "{folder}: {flag} not in {served:?}");
    }
    assert!(
        fetched
            .internal_date
            .is_some_and(|d| d.same_instant(&date())),
        "{folder}: INTERNALDATE {:?}",
        fetched.internal_date
    );
    Ok(())
}

/// Appends `message` to a fresh folder and returns what the server serves back, or the
/// server's refusal text.
fn stored_as(
    client: &mut ImapClient,
    folder: &str,
    message: &[u8],
) -> Result<Result<Vec<u8>, String>, KitError> {
    client.create(folder)?;
    match client.append(folder, &[], None, message) {
        Ok(_) => {}
        Err(KitError::Refused { status, text, .. }) => return Ok(Err(format!("{status} {text}"))),
        Err(e) => return Err(e),
    }
    Ok(Ok(only_message(client, folder)?.body.unwrap_or_default()))
}

fn names(entries: &[support::imap_client::ListEntry]) -> BTreeSet<String> {
    entries.iter().map(|e| e.name.clone()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Processes whose command line mentions `needle`, as `pgrep -f` would find them.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {}", cmdline.trim()));
        }
    }
    found
}

/// After a stop: none of `processes` runs, nothing mentions the instance, the dir is gone.
fn assert_nothing_left(processes: &[ProcessId], instance: &str, dir: &Path) {
    let survivors: Vec<_> = processes.iter().filter(|p| p.is_running()).collect();
    assert!(survivors.is_empty(), "still running: {survivors:?}");
    let named = processes_mentioning(instance);
    assert!(named.is_empty(), "still running: {named:?}");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn cyrus_serves_users_admin_and_tls_in_debians_namespace() {
    run(|| {
        let mut cyrus = Cyrus::builder()
            .label("cyrus")
            .user(ALICE, ALICE_PW)
            .user(BOB, BOB_PW)
            .start()?;
        assert_eq!(cyrus.separator(), '.');

        // Before login: STARTTLS, SASL PLAIN (with SASL-IR) and LOGIN over the plain port.
        let greeting = ImapClient::connect(cyrus.plain_addr(), &Security::Plain, DEFAULT_TIMEOUT)?;
        for capability in ["STARTTLS", "AUTH=PLAIN", "SASL-IR", "LITERAL+"] {
            assert!(
                greeting.has_capability(capability),
                "{capability} not offered: {:?}",
                greeting.capabilities()
            );
        }
        assert!(!greeting.has_capability("LOGINDISABLED"));
        drop(greeting);

        let mut alice = cyrus.user_endpoint(ALICE)?.connect()?;
        // After login Cyrus announces UIDPLUS and MULTIAPPEND, and adds LOGINDISABLED.
        for capability in ["UIDPLUS", "MULTIAPPEND", "LOGINDISABLED"] {
            assert!(
                alice.has_capability(capability),
                "{capability} not announced after login: {:?}",
                alice.capabilities()
            );
        }
        let kit_folder = cyrus.personal_folder(&["Kit"]);
        assert_eq!(kit_folder, "INBOX.Kit");
        alice.create(&kit_folder)?;
        let entries = alice.list("", "*")?;
        assert_eq!(names(&entries), set(&["INBOX", "INBOX.Kit"]));
        assert!(
            entries.iter().all(|e| e.separator == Some('.')),
            "{entries:?}"
        );
        append_and_fetch_exact(&mut alice, "INBOX", &plain_message("cyrus-inbox"))?;
        append_and_fetch_exact(&mut alice, &kit_folder, &plain_message("cyrus-kit"))?;
        alice.logout()?;

        // The sasl admin acting for Alice (AUTHENTICATE PLAIN, authzid = Alice) is Alice.
        let (admin, admin_pw) = cyrus.admin();
        for mode in [TlsMode::None, TlsMode::StartTls, TlsMode::Implicit] {
            let mut proxied = cyrus
                .endpoint(mode, Credentials::master_plain(ALICE, admin, admin_pw))
                .connect()?;
            assert_eq!(proxied.is_tls(), mode != TlsMode::None);
            assert_eq!(names(&proxied.list("", "*")?), set(&["INBOX", "INBOX.Kit"]));
            let message = only_message(&mut proxied, "INBOX")?;
            assert_eq!(message.body, Some(plain_message("cyrus-inbox")));
            proxied.logout()?;

            // Bob's own LOGIN over each transport sees only his empty INBOX.
            let mut bob = cyrus
                .endpoint(mode, Credentials::login(BOB, BOB_PW))
                .connect()?;
            assert_eq!(names(&bob.list("", "*")?), set(&["INBOX"]));
            assert_eq!(bob.select("INBOX")?.exists, 0);
            bob.logout()?;
        }

        // The admin as itself sees every user's tree, under `user.`.
        let mut admin_client = cyrus.admin_endpoint().connect()?;
        let all = names(&admin_client.list("", "*")?);
        for mailbox in [
            cyrus.admin_mailbox(ALICE, ""),
            cyrus.admin_mailbox(ALICE, "Kit"),
            cyrus.admin_mailbox(BOB, ""),
        ] {
            assert!(all.contains(&mailbox), "{mailbox} not in {all:?}");
        }
        assert_eq!(
            cyrus.admin_mailbox(ALICE, "Kit"),
            "user.alice.Kit@example.test"
        );
        admin_client.logout()?;

        let processes = cyrus.processes();
        assert!(
            processes.len() >= 3,
            "unshare, sh and master expected: {processes:?}"
        );
        let instance = cyrus.instance_name().to_owned();
        let dir = cyrus.dir().to_path_buf();
        assert!(
            std::fs::read_to_string(cyrus.log_path())
                .unwrap_or_default()
                .contains("User logged in"),
            "Cyrus's syslog should be captured in {}",
            cyrus.log_path().display()
        );
        cyrus.stop()?;
        assert!(!cyrus.is_running());
        drop(cyrus);
        assert_nothing_left(&processes, &instance, &dir);
        Ok(())
    });
}

#[test]
fn cyrus_unix_namespace_has_folders_beside_inbox() {
    run(|| {
        let cyrus = Cyrus::builder()
            .label("cyrus-unix")
            .namespace(CyrusNamespace::UnixAlt)
            .munge8bit(false)
            .start()?;
        assert_eq!(cyrus.separator(), '/');
        let mut client = cyrus.user_endpoint(CYRUS_DEFAULT_USER)?.connect()?;
        assert_eq!(cyrus.personal_folder(&["Kit", "Sub"]), "Kit/Sub");
        client.create("Kit")?;
        client.create("Kit/Sub")?;
        let entries = client.list("", "*")?;
        assert_eq!(names(&entries), set(&["INBOX", "Kit", "Kit/Sub"]));
        assert!(
            entries.iter().all(|e| e.separator == Some('/')),
            "{entries:?}"
        );
        append_and_fetch_exact(&mut client, "Kit/Sub", &plain_message("cyrus-unix"))?;

        // `munge8bit: no` keeps raw 8-bit header bytes.
        let eight_bit = b"Subject: caf\xe9 \xe8\r\nFrom: a@example.test\r\n\r\nbody \xe9\r\n";
        assert_eq!(
            stored_as(&mut client, "EightBit", eight_bit)?,
            Ok(eight_bit.to_vec())
        );
        client.logout()?;

        let mut proxied = cyrus.connect_master(CYRUS_DEFAULT_USER)?;
        assert_eq!(
            names(&proxied.list("", "*")?),
            set(&["INBOX", "Kit", "Kit/Sub", "EightBit"])
        );
        proxied.logout()?;
        let mut admin = cyrus.admin_endpoint().connect()?;
        let mailbox = cyrus.admin_mailbox(CYRUS_DEFAULT_USER, "Kit/Sub");
        assert_eq!(mailbox, "user/user/Kit/Sub@example.test");
        assert!(names(&admin.list("", "*")?).contains(&mailbox));
        admin.logout()?;
        Ok(())
    });
}

/// TESTING.md's awkward-mail table, Cyrus column (Debian defaults).
#[test]
fn cyrus_awkward_mail_is_as_testing_md_says() {
    run(|| {
        let cyrus = Cyrus::builder().label("cyrus-awkward").start()?;
        let mut client = cyrus.user_endpoint(CYRUS_DEFAULT_USER)?.connect()?;

        let bare_lf = b"Subject: bare LF\nFrom: a@example.test\n\nbody\n";
        let refused = stored_as(&mut client, "INBOX.BareLf", bare_lf)?;
        assert_eq!(refused, Err("NO Message contains bare newlines".to_owned()));

        let nul = b"Subject: NUL\r\nFrom: a@example.test\r\n\r\nbo\0dy\r\n";
        let refused = stored_as(&mut client, "INBOX.Nul", nul)?;
        assert_eq!(
            refused,
            Err("NO Message contains NUL characters".to_owned())
        );

        // munge8bit (on by default): each raw 8-bit header byte becomes `X`; the body keeps them.
        let eight_bit = b"Subject: caf\xe9 \xe8\r\nFrom: a@example.test\r\n\r\nbody \xe9\r\n";
        let stored = stored_as(&mut client, "INBOX.EightBit", eight_bit)?;
        assert_eq!(
            stored,
            Ok(b"Subject: cafX X\r\nFrom: a@example.test\r\n\r\nbody \xe9\r\n".to_vec())
        );

        let no_final_crlf = b"Subject: no final CRLF\r\nFrom: a@example.test\r\n\r\nbody";
        let stored = stored_as(&mut client, "INBOX.NoFinalCrlf", no_final_crlf)?;
        assert_eq!(stored, Ok(no_final_crlf.to_vec()));

        let bare_cr = b"Subject: bare CR\r\nFrom: a@example.test\r\n\r\nbo\rdy\r\n";
        let stored = stored_as(&mut client, "INBOX.BareCr", bare_cr)?;
        assert_eq!(stored, Ok(bare_cr.to_vec()));

        // APPENDLIMIT is announced, but refused as a STATUS item.
        assert!(
            client
                .capabilities()
                .iter()
                .any(|c| c.starts_with("APPENDLIMIT=")),
            "{:?}",
            client.capabilities()
        );
        let status = client.run(
            "STATUS with APPENDLIMIT",
            &[Arg::Raw("STATUS INBOX (MESSAGES APPENDLIMIT)")],
        );
        match status {
            Err(KitError::Refused { status, text, .. }) => {
                assert_eq!(status, "BAD");
                assert!(text.contains("Invalid Status attributes"), "{text}");
            }
            other => panic!("STATUS (APPENDLIMIT) should be BAD: {other:?}"),
        }
        client.logout()?;
        Ok(())
    });
}

#[test]
fn courier_serves_users_admin_and_tls() {
    run(|| {
        let mut courier = Courier::builder()
            .label("courier")
            .user(ALICE, ALICE_PW)
            .user(BOB, BOB_PW)
            .start()?;
        assert_eq!(courier.separator(), '.');

        // Debian's Courier: STARTTLS on the plain port, AUTH=PLAIN only after it, and neither
        // LITERAL+ nor MULTIAPPEND.
        let greeting =
            ImapClient::connect(courier.plain_addr(), &Security::Plain, DEFAULT_TIMEOUT)?;
        assert!(
            greeting.has_capability("STARTTLS"),
            "{:?}",
            greeting.capabilities()
        );
        for absent in ["AUTH=PLAIN", "LITERAL+", "MULTIAPPEND", "LOGINDISABLED"] {
            assert!(
                !greeting.has_capability(absent),
                "{absent}: {:?}",
                greeting.capabilities()
            );
        }
        drop(greeting);

        let mut alice = courier.user_endpoint(ALICE)?.connect()?;
        let kit_folder = courier.personal_folder(&["Kit"]);
        assert_eq!(kit_folder, "INBOX.Kit");
        alice.create(&kit_folder)?;
        let entries = alice.list("", "*")?;
        assert_eq!(names(&entries), set(&["INBOX", "INBOX.Kit"]));
        assert!(
            entries.iter().all(|e| e.separator == Some('.')),
            "{entries:?}"
        );
        append_and_fetch_exact(&mut alice, "INBOX", &plain_message("courier-inbox"))?;
        append_and_fetch_exact(&mut alice, &kit_folder, &plain_message("courier-kit"))?;
        alice.logout()?;

        for mode in [TlsMode::None, TlsMode::StartTls, TlsMode::Implicit] {
            let mut bob = courier
                .endpoint(mode, Credentials::login(BOB, BOB_PW))
                .connect()?;
            assert_eq!(bob.is_tls(), mode != TlsMode::None);
            assert_eq!(names(&bob.list("", "*")?), set(&["INBOX"]));
            assert_eq!(bob.select("INBOX")?.exists, 0);
            bob.logout()?;
        }
        // Over TLS, SASL PLAIN works too (Courier has no authzid: a user logs in as itself).
        let mut plain = courier
            .endpoint(
                TlsMode::Implicit,
                Credentials::Plain {
                    authzid: None,
                    authcid: ALICE.to_owned(),
                    password: ALICE_PW.to_owned(),
                },
            )
            .connect()?;
        assert_eq!(
            only_message(&mut plain, "INBOX")?.body,
            Some(plain_message("courier-inbox"))
        );
        plain.logout()?;

        // The admin (group administrators) sees Alice only under #shared., not in LIST "*".
        let mut admin = courier.admin_endpoint().connect()?;
        assert_eq!(names(&admin.list("", "*")?), set(&["INBOX"]));
        let root = courier.shared_root(ALICE);
        assert_eq!(root, "#shared.alice@example test");
        let shared = names(&admin.list("", "#shared.*")?);
        for name in [
            root.clone(),
            format!("{root}.Kit"),
            courier.shared_root(BOB),
        ] {
            assert!(shared.contains(&name), "{name} not in {shared:?}");
        }
        assert_eq!(
            names(&admin.list(&format!("{root}."), "*")?),
            set(&[&format!("{root}.Kit")])
        );
        let message = only_message(&mut admin, &root)?;
        assert_eq!(message.body, Some(plain_message("courier-inbox")));
        admin.logout()?;

        let processes = courier.processes();
        assert!(
            processes.len() >= 5,
            "unshare, sh, authdaemond and two couriertcpd expected: {processes:?}"
        );
        let instance = courier.instance_name().to_owned();
        let dir = courier.dir().to_path_buf();
        assert!(
            courier
                .log_tail(50)
                .contains("LOGIN, user=alice@example.test"),
            "Courier's log: {}",
            courier.log_tail(50)
        );
        courier.stop()?;
        assert!(!courier.is_running());
        drop(courier);
        assert_nothing_left(&processes, &instance, &dir);
        Ok(())
    });
}

/// TESTING.md's awkward-mail table, Courier column (Debian defaults).
#[test]
fn courier_awkward_mail_is_as_testing_md_says() {
    run(|| {
        let courier = Courier::builder().label("courier-awkward").start()?;
        let mut client = courier.connect_user(COURIER_DEFAULT_USER)?;

        let no_final_crlf = b"Subject: no final CRLF\r\nFrom: a@example.test\r\n\r\nbody";
        let stored = stored_as(&mut client, "INBOX.NoFinalCrlf", no_final_crlf)?;
        assert_eq!(stored, Ok([&no_final_crlf[..], b"\r\n"].concat()));

        let bare_cr = b"Subject: bare CR\r\nFrom: a@example.test\r\n\r\nbo\rdy\r\n";
        let stored = stored_as(&mut client, "INBOX.BareCr", bare_cr)?;
        assert_eq!(
            stored,
            Ok(b"Subject: bare CR\r\nFrom: a@example.test\r\n\r\nbody\r\n".to_vec())
        );

        let bare_lf = b"Subject: bare LF\nFrom: a@example.test\n\nbody\n";
        let stored = stored_as(&mut client, "INBOX.BareLf", bare_lf)?;
        assert_eq!(
            stored,
            Ok(b"Subject: bare LF\r\nFrom: a@example.test\r\n\r\nbody\r\n".to_vec())
        );

        let nul = b"Subject: NUL\r\nFrom: a@example.test\r\n\r\nbo\0dy\r\n";
        assert_eq!(stored_as(&mut client, "INBOX.Nul", nul)?, Ok(nul.to_vec()));

        let eight_bit = b"Subject: caf\xe9 \xe8\r\nFrom: a@example.test\r\n\r\nbody \xe9\r\n";
        let stored = stored_as(&mut client, "INBOX.EightBit", eight_bit)?;
        assert_eq!(stored, Ok(eight_bit.to_vec()));
        client.logout()?;
        Ok(())
    });
}

/// Courier's couriertcpd allows MAXPERIP connections from one IP (Debian: 20) per port; the
/// next is closed before the greeting and the log says so.
#[test]
fn courier_closes_connections_beyond_max_per_ip() {
    run(|| {
        let courier = Courier::builder()
            .label("courier-maxperip")
            .max_per_ip(3)
            .start()?;
        let connect = || {
            ImapClient::connect(
                courier.plain_addr(),
                &Security::Plain,
                std::time::Duration::from_secs(5),
            )
        };
        let open: Vec<ImapClient> = (0..3).map(|_| connect()).collect::<Result<_, _>>()?;
        match connect() {
            Err(KitError::Closed { .. }) => {}
            Err(other) => panic!("a 4th connection should be closed unanswered: {other}"),
            Ok(_) => panic!("a 4th connection was accepted beyond MAXPERIP=3"),
        }
        let alert = "ALERT: Maximum connection limit reached for ::ffff:127.0.0.1";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !courier.log_tail(20).contains(alert) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            courier.log_tail(20).contains(alert),
            "{}",
            courier.log_tail(20)
        );
        drop(open);
        Ok(())
    });
}

#[test]
fn no_cyrus_or_courier_process_survives_a_panic() {
    run(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        let outcome = std::thread::spawn(move || {
            let cyrus = Cyrus::builder().label("cyrus-panic").start();
            let courier = Courier::builder().label("courier-panic").start();
            let _ = sender.send(match (&cyrus, &courier) {
                (Ok(cyrus), Ok(courier)) => Ok((
                    cyrus.processes(),
                    cyrus.instance_name().to_owned(),
                    cyrus.dir().to_path_buf(),
                    courier.processes(),
                    courier.instance_name().to_owned(),
                    courier.dir().to_path_buf(),
                )),
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            });
            panic!("deliberate panic with Cyrus and Courier instances up");
        })
        .join();
        assert!(outcome.is_err(), "the thread should have panicked");
        let (cyrus_processes, cyrus_name, cyrus_dir, courier_processes, courier_name, courier_dir) =
            receiver
                .recv()
                .map_err(|_| KitError::Usage("the panicking thread sent nothing".to_owned()))?
                .map_err(KitError::Usage)?;
        assert!(!cyrus_processes.is_empty() && !courier_processes.is_empty());
        assert_nothing_left(&cyrus_processes, &cyrus_name, &cyrus_dir);
        assert_nothing_left(&courier_processes, &courier_name, &courier_dir);
        Ok(())
    });
}
