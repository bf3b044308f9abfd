//! The demo behind `scripts/demo` (README command 1): a real migration between two private
//! Dovecot servers on 127.0.0.1, run through the `imapmirror` binary exactly as an
//! administrator would — the seed document's steps 2–6 — and checked by the test kit's
//! verifier.
//!
//! 1. start a Maildir++ source (separator `.`) and a LAYOUT=fs target (separator `/`),
//!    both with TLS from a private CA, and seed three users with realistic mail;
//! 2. write the migration file (EmailAddress, UserName, Password);
//! 3. add the two endpoints (the target opened with Dovecot master-user credentials);
//! 4. add a batch that leaves out the Junk folder and start it with `--wait`;
//! 5. add new mail on the source, rename one user's folder there, and run an incremental
//!    pass (it copies the new mail and renames the folder on the target);
//! 6. show the batch status, its users and the report;
//! 7. cut-over through `imapmirror proxy`: alice logs in through it and lands on the old
//!    server; `batch complete` runs the final pass, her open session gets `* BYE`, and her
//!    next login lands on the new one. Then the batch is removed.
//!
//! Everything lives in temporary directories that are removed at the end, also after
//! Ctrl-C. The binary is `$IMAPMIRROR_BIN`, else `imapmirror` on the PATH.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use support::{
    Corpus, CorpusSpec, Dovecot, FolderPath, ImapClient, KitError, Layout, MASTER_PASSWORD,
    MASTER_USER, Security, SeedMessage, Verifier, separator_mapping, verify_users,
};

/// Dovecot refuses keywords over 50 bytes by default; the corpus has a longer one.
const LONG_KEYWORDS: &str = "mail_max_keyword_length = 200";
const USERS: [(&str, &str); 3] = [
    ("alice@example.test", "alice-Secret-1"),
    ("bob@example.test", "bob-Secret-2"),
    ("carol@example.test", "carol-Secret-3"),
];
const MESSAGES_PER_USER: usize = 250;

fn main() -> ExitCode {
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(interrupted.clone());
    match run(&interrupted) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C reaches the `imapmirror` child too (same terminal), which stops and exits; the
/// demo then returns an error and its servers and directories are dropped — cleaned up —
/// instead of the process dying with them left behind.
fn watch_ctrl_c(flag: Arc<AtomicBool>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        eprintln!(
            "demo: cannot watch for Ctrl-C; an interrupted demo may leave its servers running"
        );
        return;
    };
    // Register now, on this thread, so that the handler is in place before any step runs.
    let signal = runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    });
    let Ok(mut signal) = signal else {
        eprintln!(
            "demo: cannot watch for Ctrl-C; an interrupted demo may leave its servers running"
        );
        return;
    };
    std::thread::spawn(move || {
        runtime.block_on(signal.recv());
        flag.store(true, Ordering::SeqCst);
        eprintln!("\ndemo: interrupted; cleaning up");
    });
}

fn check(interrupted: &AtomicBool) -> Result<(), KitError> {
    if interrupted.load(Ordering::SeqCst) {
        Err(KitError::Usage("interrupted by Ctrl-C".to_owned()))
    } else {
        Ok(())
    }
}

struct Admin {
    bin: PathBuf,
    state: PathBuf,
}

impl Admin {
    /// Runs `imapmirror ARGS` with its output on the terminal, as the user would see it.
    fn run(&self, args: &[&str], interrupted: &AtomicBool) -> Result<(), KitError> {
        check(interrupted)?;
        println!("\n$ imapmirror {}", args.join(" "));
        let status = Command::new(&self.bin)
            .args(args)
            .env("IMAPMIRROR_STATE_DIR", &self.state)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| KitError::Command {
                command: format!("{} {}", self.bin.display(), args.join(" ")),
                detail: format!(
                    "{e} (build it with `cargo build -p imapmirror`, or set IMAPMIRROR_BIN)"
                ),
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(KitError::Command {
                command: format!("imapmirror {}", args.join(" ")),
                detail: format!("exited with {status}"),
            })
        }
    }
}

fn run(interrupted: &AtomicBool) -> Result<(), KitError> {
    let bin = std::env::var_os("IMAPMIRROR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("imapmirror"));
    let work = tempfile::tempdir()
        .map_err(|e| KitError::file("create a temp dir in", std::env::temp_dir(), e))?;

    println!("Step 1: two private Dovecot servers on 127.0.0.1, and three users with mail.");
    let mut source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus);
    let mut target = Dovecot::builder()
        .label("target")
        .layout(Layout::Fs)
        .extra_config(LONG_KEYWORDS);
    for (user, password) in USERS {
        source = source.user(user, password);
        target = target.user(user, password);
    }
    let source = source.start()?;
    let target = target.start()?;
    for server in [&source, &target] {
        println!(
            "  {:<6} separator '{}', IMAP+STARTTLS {}, IMAPS {}",
            server.label(),
            server.separator(),
            server.plain_addr(),
            server.tls_addr()
        );
    }
    for (i, (user, _)) in USERS.iter().enumerate() {
        check(interrupted)?;
        let spec = CorpusSpec {
            sizes: support::SizeProfile::REALISTIC,
            ..CorpusSpec::small(2026 + i as u64).with_messages(MESSAGES_PER_USER)
        };
        let corpus = Corpus::generate(spec);
        let report = source.seed(user, corpus.folders(), corpus.messages())?;
        println!(
            "  seeded {user}: {} folders, {} messages, {:.1} MB",
            report.folders,
            report.messages,
            report.bytes as f64 / 1e6
        );
    }

    println!("\nStep 2: the migration file.");
    let csv = work.path().join("users.csv");
    let mut text = String::from("EmailAddress,UserName,Password\n");
    for (user, password) in USERS {
        text.push_str(&format!("{user},{user},{password}\n"));
    }
    write(&csv, text.as_bytes())?;
    println!(
        "  {} ({} rows; passwords stay in the file and the state directory only)",
        csv.display(),
        USERS.len()
    );

    let admin = Admin {
        bin,
        state: work.path().join("state"),
    };
    let master_pw = work.path().join("master.pw");
    write(&master_pw, MASTER_PASSWORD.as_bytes())?;
    let ca = source.ca_file().display().to_string();
    let target_ca = target.ca_file().display().to_string();
    let (source_port, target_port) = (
        source.plain_addr().port().to_string(),
        target.tls_addr().port().to_string(),
    );

    println!("\nStep 3: the endpoints (each is tested: TLS, capabilities, what they mean).");
    admin.run(
        &[
            "endpoint",
            "add",
            "old-server",
            "--host",
            "127.0.0.1",
            "--port",
            &source_port,
            "--security",
            "starttls",
            "--ca-file",
            &ca,
            "--max-concurrent-migrations",
            "2",
        ],
        interrupted,
    )?;
    admin.run(
        &[
            "endpoint",
            "add",
            "new-server",
            "--host",
            "127.0.0.1",
            "--port",
            &target_port,
            "--security",
            "ssl",
            "--ca-file",
            &target_ca,
            "--admin-user",
            MASTER_USER,
            "--admin-password-file",
            &master_pw.display().to_string(),
            "--admin-format",
            "dovecot",
            "--test-user",
            USERS[0].0,
        ],
        interrupted,
    )?;
    admin.run(&["endpoint", "list"], interrupted)?;

    println!("\nStep 4: a batch without the Junk folder, started in the foreground.");
    admin.run(
        &[
            "batch",
            "add",
            "wave-1",
            "--csv",
            &csv.display().to_string(),
            "--source",
            "old-server",
            "--target",
            "new-server",
            "--exclude",
            "Junk",
        ],
        interrupted,
    )?;
    admin.run(&["batch", "start", "wave-1", "--wait"], interrupted)?;
    verify(&source, &target)?;

    println!(
        "\nStep 5: new mail arrives on the old server and a folder is renamed; an incremental pass copies just the mail and renames the folder on the new server too."
    );
    let fresh = Corpus::generate(CorpusSpec::small(99).with_messages(7));
    let messages: Vec<SeedMessage> = fresh
        .messages()
        .map(|mut m| {
            m.folder = FolderPath::new(&["INBOX"]);
            m
        })
        .collect();
    source.append_messages(USERS[0].0, messages)?;
    println!("  7 new messages in {}'s INBOX", USERS[0].0);
    let mut bob = source.connect_master(USERS[1].0)?;
    bob.run(
        "RENAME",
        &[support::imap_client::Arg::Raw("RENAME Projects Work")],
    )?;
    bob.logout()?;
    println!(
        "  {} renames his folder Projects (and its subfolders) to Work",
        USERS[1].0
    );
    admin.run(&["batch", "sync", "wave-1", "--wait"], interrupted)?;
    verify(&source, &target)?;

    println!("\nStep 6: status, users and the report.");
    admin.run(&["batch", "status", "wave-1"], interrupted)?;
    admin.run(&["batch", "users", "wave-1"], interrupted)?;
    admin.run(
        &["batch", "report", "wave-1", "--format", "csv"],
        interrupted,
    )?;

    println!(
        "\nStep 7: cut-over through the proxy: users keep one server name, and move at `batch complete`."
    );
    let proxy = Proxy::start(&admin, work.path())?;
    let (alice, alice_pw) = USERS[0];
    let mut session = proxy.login(alice, alice_pw)?;
    println!(
        "  {alice} logs in through the proxy at {}: folder separator '{}', so the old server",
        proxy.addr,
        separator_seen(&mut session)?
    );
    admin.run(&["batch", "complete", "wave-1"], interrupted)?;
    match wait_for_bye(&mut session) {
        Some(text) => println!("  the proxy closed her open session to the old server ({text})"),
        None => println!("  (her open session ended)"),
    }
    let mut session = proxy.login(alice, alice_pw)?;
    println!(
        "  she logs in again, same name: folder separator '{}', so the new server",
        separator_seen(&mut session)?
    );
    let _ = session.logout();
    drop(proxy);
    verify(&source, &target)?;
    admin.run(&["batch", "remove", "wave-1"], interrupted)?;

    println!("\nDone: stopping both servers and removing the demo's files.");
    Ok(())
}

/// The kit's exact verifier: same folders (but Junk), messages, bytes, flags and dates.
fn verify(source: &Dovecot, target: &Dovecot) -> Result<(), KitError> {
    let verifier = Verifier::new().with_folder_map(|name, s, t| {
        if name == "Junk" {
            None
        } else {
            separator_mapping(name, s, t)
        }
    });
    for (user, _) in USERS {
        let report = verify_users(source, user, target, user, &verifier)?;
        if report.is_equal() {
            println!(
                "  verifier: {user} identical on both servers ({} folders, {} messages compared byte for byte)",
                report.folders_compared, report.messages_compared
            );
        } else {
            for d in report.differences.iter().take(5) {
                println!("  - {d}");
            }
            return Err(KitError::Usage(format!(
                "{user} differs between the servers in {} way(s)",
                report.differences.len()
            )));
        }
    }
    Ok(())
}

/// `imapmirror proxy` on a free loopback port, plain IMAP (the demo's clients are local);
/// stopped when dropped.
struct Proxy {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Proxy {
    fn start(admin: &Admin, work: &Path) -> Result<Proxy, KitError> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| KitError::Usage(format!("no free port for the proxy: {e}")))?;
        let log_path = work.join("proxy.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| KitError::file("create", log_path.clone(), e))?;
        let listen = addr.to_string();
        let args = ["proxy", "--listen", &listen, "--allow-plaintext"];
        println!("\n$ imapmirror {} &", args.join(" "));
        let child = Command::new(&admin.bin)
            .args(args)
            .env("IMAPMIRROR_STATE_DIR", &admin.state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| KitError::Command {
                command: format!("{} proxy", admin.bin.display()),
                detail: e.to_string(),
            })?;
        let mut proxy = Proxy { child, addr };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("proxy ready") {
                return Ok(proxy);
            }
            if std::time::Instant::now() > deadline || matches!(proxy.child.try_wait(), Ok(Some(_)))
            {
                return Err(KitError::Command {
                    command: "imapmirror proxy".to_owned(),
                    detail: format!("did not start:\n{text}"),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn login(&self, user: &str, password: &str) -> Result<ImapClient, KitError> {
        let mut c = ImapClient::connect(
            self.addr,
            &Security::Plain,
            std::time::Duration::from_secs(10),
        )?;
        c.login(user, password)?;
        Ok(c)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM: the proxy closes its sessions and exits 0.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The hierarchy separator the server behind the session announces: `.` on the demo's
/// old server, `/` on the new one.
fn separator_seen(session: &mut ImapClient) -> Result<char, KitError> {
    let entries = session.list("", "")?;
    Ok(entries.first().and_then(|e| e.separator).unwrap_or('?'))
}

/// Waits (up to 15 s) for the proxy to close a session at cut-over; the BYE's text.
fn wait_for_bye(session: &mut ImapClient) -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if let Err(e) = session.noop() {
            return Some(e.to_string());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    None
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), KitError> {
    std::fs::write(path, bytes).map_err(|e| KitError::file("write", path.to_path_buf(), e))
}
