//! The end-to-end benchmark behind `scripts/bench-migration`: imapmirror against mbsync
//! (Debian's isync), migrating one generated mailbox from Dovecot into Dovecot, Cyrus 3.6
//! or Courier-IMAP 5.0, interleaved.
//!
//! Usage: `BENCH_TARGET=dovecot|cyrus|courier bench_migration [MESSAGES=10000] [ROUNDS=3]
//! [NO_CHANGE_RUNS=5]` (target Dovecot unless said). The binary is `$IMAPMIRROR_BIN`,
//! else `imapmirror` on the PATH; `mbsync` and `/usr/bin/time` must be on the machine.
//!
//! Every run (each round, imapmirror then mbsync) gets a FRESH Maildir++ Dovecot source
//! seeded with the same realistic corpus (same seed) and a FRESH target (Dovecot
//! `LAYOUT=fs`; both Dovecots at the default `mail_fsync = optimized`); fresh sources are
//! needed anyway because the +1% phase adds mail to the source. Both tools talk plain IMAP
//! on the loopback port (no TLS) and open the same accounts: the user's own login on the
//! source; on the target, imapmirror logs in as the admin acting for the user where the
//! server has one (Dovecot's master user `user*mailadmin`, Cyrus's SASL admin with the user
//! as authzid) and as the user on Courier (no such login there), while mbsync logs in as
//! `user*mailadmin` on Dovecot and as the user on Cyrus and Courier.
//!
//! Phases per run: the initial copy, NO_CHANGE_RUNS no-change reruns (each a row: a
//! no-change pass takes tens of milliseconds, so one sample per round is mostly noise on
//! a shared machine), then +1% new messages appended to the source's INBOX and a rerun. Wall time is measured around the tool's process; peak
//! RSS is that process's max RSS as reported by GNU `/usr/bin/time -f %M` (getrusage of the
//! child). After the initial and +1% phases the kit's exact verifier judges the target:
//! imapmirror must be exact (else the bench fails); mbsync's differences are counted by
//! kind and reported. On Dovecot "exact" is identical to the source. Cyrus and Courier
//! normalise some mail and refuse some messages and folder names, so there it is identical
//! to the probe (tests/support/append_probe.rs): before the timed runs a separate source and
//! target of the same kinds are started, the source's mail is appended message by message
//! into a probe account on the target, before and after the +1% mail, and each run's
//! migrated mailbox is compared with those two snapshots.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use support::{
    Corpus, CorpusSpec, DOVECOT_LONG_KEYWORDS, Dovecot, Family, FamilyServer, FolderPath, KitError,
    Layout, MASTER_PASSWORD, MASTER_USER, MailboxSnapshot, Refusals, SeedMessage, Verifier,
    VerifyReport, append_probe, compare_with_probe, new_messages, read_stored, selectable_folders,
    verify_users,
};

const USER: &str = "bench@example.test";
const PASSWORD: &str = "bench-Secret-1";
/// The account on a probe target that receives the source's mail through plain APPENDs.
const PROBE: &str = "probe@example.test";
const PROBE_PASSWORD: &str = "probe-Secret-2";
const SEED: u64 = 2026;
const TIME: &str = "/usr/bin/time";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Tool {
    Imapmirror,
    Mbsync,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Imapmirror => "imapmirror",
            Tool::Mbsync => "mbsync",
        }
    }
}

const PHASES: [&str; 3] = ["initial", "no-change", "+1%"];

struct Row {
    tool: Tool,
    round: usize,
    phase: &'static str,
    wall: f64,
    messages: usize,
    bytes: u64,
    rss_kb: u64,
    verdict: String,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_migration: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg(index: usize, default: usize) -> Result<usize, KitError> {
    match std::env::args().nth(index) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| KitError::Usage(format!("expected a positive number, got {text:?}"))),
    }
}

/// `BENCH_TARGET`, Dovecot when unset.
fn target_family() -> Result<Family, KitError> {
    match std::env::var("BENCH_TARGET") {
        Err(std::env::VarError::NotPresent) => Ok(Family::Dovecot),
        Ok(name) if name.is_empty() => Ok(Family::Dovecot),
        Ok(name) => Family::parse(&name).ok_or_else(|| {
            KitError::Usage(format!(
                "BENCH_TARGET={name:?} is not a target; use dovecot, cyrus or courier"
            ))
        }),
        Err(e) => Err(KitError::Usage(format!("BENCH_TARGET is unreadable: {e}"))),
    }
}

fn run() -> Result<(), KitError> {
    let family = target_family()?;
    let messages = arg(1, 10_000)?;
    let rounds = arg(2, 3)?;
    let no_change_runs = arg(3, 5)?;
    let bin = std::env::var_os("IMAPMIRROR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("imapmirror"));
    if !Path::new(TIME).exists() {
        return Err(KitError::Usage(format!(
            "{TIME} missing (apt-get install time)"
        )));
    }
    let corpus = Corpus::generate(CorpusSpec::realistic(SEED).with_messages(messages));
    let extra = (messages / 100).max(1);
    let fresh = Corpus::generate(CorpusSpec::realistic(SEED + 1).with_messages(extra));
    let extra_messages: Vec<SeedMessage> = fresh
        .messages()
        .map(|mut m| {
            m.folder = FolderPath::new(&["INBOX"]);
            m
        })
        .collect();
    let extra_bytes: u64 = extra_messages.iter().map(|m| m.bytes.len() as u64).sum();
    let target_kind = match family {
        Family::Dovecot => "Dovecot LAYOUT=fs, mail_fsync=optimized",
        Family::Cyrus => "Cyrus 3.6",
        Family::Courier => "Courier-IMAP 5.0",
    };
    println!(
        "bench: {messages} realistic messages (seed {SEED}), +{extra} for the incremental phase, {rounds} round(s), \
         {no_change_runs} no-change run(s) per round; \
         Dovecot Maildir++ -> {target_kind}, plain IMAP on 127.0.0.1"
    );
    let judge = Judge::for_target(family, &corpus, &extra_messages)?;

    let mut rows = Vec::new();
    for round in 1..=rounds {
        for tool in [Tool::Imapmirror, Tool::Mbsync] {
            let run = Run::start(round, tool, family, &corpus)?;
            let seeded = run.seeded;
            // initial
            let (wall, rss) = run.invoke(&bin, tool, "initial")?;
            let verdict = judge.verdict(&run, tool, Phase::Initial)?;
            rows.push(Row {
                tool,
                round,
                phase: PHASES[0],
                wall,
                messages: seeded.0,
                bytes: seeded.1,
                rss_kb: rss,
                verdict,
            });
            print_row(rows.last().expect("pushed"));
            for _ in 0..no_change_runs {
                let (wall, rss) = run.invoke(&bin, tool, "no-change")?;
                rows.push(Row {
                    tool,
                    round,
                    phase: PHASES[1],
                    wall,
                    messages: 0,
                    bytes: 0,
                    rss_kb: rss,
                    verdict: "-".to_owned(),
                });
                print_row(rows.last().expect("pushed"));
            }
            // +1%
            run.source
                .append_messages(USER, extra_messages.iter().cloned())?;
            let (wall, rss) = run.invoke(&bin, tool, "plus1")?;
            let verdict = judge.verdict(&run, tool, Phase::PlusOne)?;
            rows.push(Row {
                tool,
                round,
                phase: PHASES[2],
                wall,
                messages: extra,
                bytes: extra_bytes,
                rss_kb: rss,
                verdict,
            });
            print_row(rows.last().expect("pushed"));
        }
    }
    print_summary(&rows);
    Ok(())
}

/// A fresh Maildir++ Dovecot source holding `corpus` (seeded straight into its Maildir).
fn seeded_source(corpus: &Corpus) -> Result<(Dovecot, support::SeedReport), KitError> {
    let source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus)
        .extra_config(DOVECOT_LONG_KEYWORDS)
        .user(USER, PASSWORD)
        .start()?;
    let report = source.seed(USER, corpus.folders(), corpus.messages())?;
    Ok((source, report))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Initial,
    PlusOne,
}

/// What a migrated mailbox must equal after each judged phase.
enum Judge {
    /// Dovecot stores every message as sent: the target must equal the run's source.
    Source,
    /// Cyrus and Courier: the target must equal the probe account's snapshot after the
    /// same phase.
    Probe {
        initial: MailboxSnapshot,
        plus_one: MailboxSnapshot,
    },
}

impl Judge {
    fn for_target(
        family: Family,
        corpus: &Corpus,
        extra_messages: &[SeedMessage],
    ) -> Result<Judge, KitError> {
        if family == Family::Dovecot {
            return Ok(Judge::Source);
        }
        let started = Instant::now();
        let (source, _) = seeded_source(corpus)?;
        let source = FamilyServer::Dovecot(source);
        let target = FamilyServer::start(family, "probe", &[(PROBE, PROBE_PASSWORD)])?;
        let folders = selectable_folders(&source, USER)?;
        let before = read_stored(&source, USER)?;
        let refused = append_probe(&source, &target, PROBE, &folders, &before)?;
        let initial = MailboxSnapshot::read(&target.user_endpoint(PROBE)?)?;
        describe_probe("initial", before.len(), &refused, &initial);
        if let FamilyServer::Dovecot(dovecot) = &source {
            dovecot.append_messages(USER, extra_messages.iter().cloned())?;
        }
        let after = read_stored(&source, USER)?;
        let added = new_messages(before, after);
        let refused = append_probe(&source, &target, PROBE, &folders, &added)?;
        let plus_one = MailboxSnapshot::read(&target.user_endpoint(PROBE)?)?;
        describe_probe("+1%", added.len(), &refused, &plus_one);
        println!(
            "probe: {:.1} s (not part of any timing)",
            started.elapsed().as_secs_f64()
        );
        Ok(Judge::Probe { initial, plus_one })
    }

    /// The verdict on `run`'s target after `phase`; an inexact imapmirror fails the bench.
    fn verdict(&self, run: &Run, tool: Tool, phase: Phase) -> Result<String, KitError> {
        let (report, against) = match (self, &run.target) {
            (Judge::Source, FamilyServer::Dovecot(target)) => (
                verify_users(&run.source, USER, target, USER, &Verifier::new())?,
                "the source",
            ),
            (Judge::Source, _) => {
                return Err(KitError::Usage(
                    "only a Dovecot target is judged against the source".to_owned(),
                ));
            }
            (Judge::Probe { initial, plus_one }, target) => {
                let expected = match phase {
                    Phase::Initial => initial,
                    Phase::PlusOne => plus_one,
                };
                (
                    compare_with_probe(expected, target, USER)?,
                    "what the target stores for plain APPENDs (the probe)",
                )
            }
        };
        let exact = match self {
            Judge::Source => "identical",
            Judge::Probe { .. } => "as probe",
        };
        summarise(&report, tool, exact, against)
    }
}

fn describe_probe(phase: &str, appended: usize, refused: &Refusals, snapshot: &MailboxSnapshot) {
    println!(
        "probe {phase}: {appended} source messages appended; the target refused {} message(s) \
         and {} folder(s), took {} without keywords; the probe account holds {} messages in {} folders",
        refused.messages,
        refused.folders,
        refused.without_keywords,
        snapshot.message_count(),
        snapshot.folders.iter().filter(|f| f.selectable).count()
    );
}

/// "identical (N msgs)" / "as probe (N msgs)", or the differences counted by kind; an
/// inexact imapmirror target fails the bench.
fn summarise(
    report: &VerifyReport,
    tool: Tool,
    exact: &str,
    against: &str,
) -> Result<String, KitError> {
    if report.is_equal() {
        return Ok(format!("{exact} ({} msgs)", report.messages_compared));
    }
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for d in &report.differences {
        let debug = format!("{d:?}");
        let kind = debug
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("?")
            .to_owned();
        *kinds.entry(kind).or_default() += 1;
    }
    let summary = kinds
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(",");
    for d in report.differences.iter().take(3) {
        eprintln!("  {} difference: {d}", tool.name());
    }
    if tool == Tool::Imapmirror {
        return Err(KitError::Usage(format!(
            "imapmirror's target differs from {against}: {} difference(s): {summary}\n{report}",
            report.differences.len()
        )));
    }
    Ok(format!("{} diffs: {summary}", report.differences.len()))
}

/// One tool's run: fresh servers, a work dir, and the tool's configuration.
struct Run {
    source: Dovecot,
    target: FamilyServer,
    work: tempfile::TempDir,
    seeded: (usize, u64),
}

impl Run {
    fn start(round: usize, tool: Tool, family: Family, corpus: &Corpus) -> Result<Run, KitError> {
        let (source, report) = seeded_source(corpus)?;
        let target = FamilyServer::start(family, "target", &[(USER, PASSWORD)])?;
        eprintln!(
            "[round {round} {}] seeded {} folders, {} messages, {:.1} MB",
            tool.name(),
            report.folders,
            report.messages,
            report.bytes as f64 / 1e6
        );
        let work = tempfile::tempdir()
            .map_err(|e| KitError::file("create a temp dir in", std::env::temp_dir(), e))?;
        let run = Run {
            source,
            target,
            work,
            seeded: (report.messages, report.bytes),
        };
        match tool {
            Tool::Imapmirror => run.setup_imapmirror_files()?,
            Tool::Mbsync => run.setup_mbsync_files()?,
        }
        Ok(run)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// The migration file, and the target admin's password file where there is an admin;
    /// on Courier the file carries the user's own target login instead.
    fn setup_imapmirror_files(&self) -> Result<(), KitError> {
        let csv = match self.target.admin_login() {
            Some((_, password, _)) => {
                write(&self.path("target-admin.pw"), password.as_bytes())?;
                format!("EmailAddress,UserName,Password\n{USER},{USER},{PASSWORD}\n")
            }
            None => format!(
                "EmailAddress,UserName,Password,TargetUserName,TargetPassword\n\
                 {USER},{USER},{PASSWORD},{USER},{PASSWORD}\n"
            ),
        };
        write(&self.path("users.csv"), csv.as_bytes())
    }

    /// mbsync opens the target as Dovecot's master user for the user, and as the user on
    /// Cyrus and Courier (the same account imapmirror opens).
    fn setup_mbsync_files(&self) -> Result<(), KitError> {
        let (target_user, target_password) = match self.target.family() {
            Family::Dovecot => (format!("{USER}*{MASTER_USER}"), MASTER_PASSWORD),
            Family::Cyrus | Family::Courier => (USER.to_owned(), PASSWORD),
        };
        let state = self.path("mbsync-state");
        std::fs::create_dir_all(&state).map_err(|e| KitError::file("create", state.clone(), e))?;
        let rc = format!(
            "IMAPAccount source\nHost 127.0.0.1\nPort {sp}\nUser {USER}\nPass {PASSWORD}\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore source\nAccount source\n\n\
             IMAPAccount target\nHost 127.0.0.1\nPort {tp}\nUser {target_user}\nPass {target_password}\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore target\nAccount target\n\n\
             Channel migrate\nFar :source:\nNear :target:\nPatterns *\nSync Pull\nCreate Near\nRemove None\nExpunge None\n\
             CopyArrivalDate yes\nSyncState {state}/\n",
            sp = self.source.plain_addr().port(),
            tp = self.target.plain_addr().port(),
            state = state.display(),
        );
        write(&self.path("mbsyncrc"), rc.as_bytes())
    }

    /// Runs every command of one phase under `/usr/bin/time`; returns (wall s, peak RSS kB of
    /// the command that does the copying).
    fn invoke(&self, bin: &Path, tool: Tool, phase: &str) -> Result<(f64, u64), KitError> {
        match tool {
            Tool::Imapmirror => {
                let state = self.path("state").display().to_string();
                if phase == "initial" {
                    let source_port = self.source.plain_addr().port().to_string();
                    let target_port = self.target.plain_addr().port().to_string();
                    let admin_pw = self.path("target-admin.pw").display().to_string();
                    let csv = self.path("users.csv").display().to_string();
                    let mut target = vec![
                        "endpoint",
                        "add",
                        "dst",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        &target_port,
                        "--security",
                        "none",
                        "--no-test",
                    ];
                    if let Some((admin, _, format)) = self.target.admin_login() {
                        target.extend([
                            "--admin-user",
                            admin,
                            "--admin-password-file",
                            &admin_pw,
                            "--admin-format",
                            format,
                        ]);
                    }
                    let setup: [Vec<&str>; 3] = [
                        vec![
                            "endpoint",
                            "add",
                            "src",
                            "--host",
                            "127.0.0.1",
                            "--port",
                            &source_port,
                            "--security",
                            "none",
                            "--no-test",
                        ],
                        target,
                        vec![
                            "batch", "add", "bench", "--csv", &csv, "--source", "src", "--target",
                            "dst",
                        ],
                    ];
                    for args in setup {
                        let mut cmd = Command::new(bin);
                        cmd.args(&args).env("IMAPMIRROR_STATE_DIR", &state);
                        self.timed(cmd, &format!("imapmirror-setup-{}", args[1]))?;
                    }
                }
                let verb = if phase == "initial" { "start" } else { "sync" };
                let mut cmd = Command::new(bin);
                cmd.args(["batch", verb, "bench", "--wait"])
                    .env("IMAPMIRROR_STATE_DIR", &state);
                self.timed(cmd, &format!("imapmirror-{phase}"))
            }
            Tool::Mbsync => {
                let mut cmd = Command::new("mbsync");
                cmd.arg("-a").arg("-c").arg(self.path("mbsyncrc"));
                self.timed(cmd, &format!("mbsync-{phase}"))
            }
        }
    }

    /// Runs `cmd` under `/usr/bin/time -f "%M"`, output to a log in the work dir. imapmirror
    /// must succeed; mbsync's exit status is reported but not fatal (the verifier judges).
    fn timed(&self, cmd: Command, label: &str) -> Result<(f64, u64), KitError> {
        let log = self.path(&format!("{label}.log"));
        let rss_file = self.path(&format!("{label}.rss"));
        let out =
            std::fs::File::create(&log).map_err(|e| KitError::file("create", log.clone(), e))?;
        let err = out
            .try_clone()
            .map_err(|e| KitError::file("reopen", log.clone(), e))?;
        let mut timed = Command::new(TIME);
        timed
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let start = Instant::now();
        let status = timed.status().map_err(|e| KitError::Command {
            command: format!("{TIME} {label}"),
            detail: e.to_string(),
        })?;
        let wall = start.elapsed().as_secs_f64();
        let rss_text = std::fs::read_to_string(&rss_file).unwrap_or_default();
        // On failure GNU time writes "Command exited with non-zero status N" first.
        let rss_kb = rss_text
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .next_back()
            .unwrap_or(0);
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            if label.starts_with("imapmirror") {
                return Err(KitError::Command {
                    command: label.to_owned(),
                    detail: format!("exited with {status}:\n{}", tail.join("\n")),
                });
            }
            eprintln!(
                "[{label}] exited with {status} (not fatal):\n{}",
                tail.join("\n")
            );
        }
        Ok((wall, rss_kb))
    }
}

fn rate(n: f64, wall: f64) -> String {
    if n > 0.0 && wall > 0.0 {
        format!("{:.1}", n / wall)
    } else {
        "-".to_owned()
    }
}

fn print_row(r: &Row) {
    println!(
        "{:<10} {:>5} {:<9} {:>8.3} {:>8} {:>7} {:>8.1}  {}",
        r.tool.name(),
        r.round,
        r.phase,
        r.wall,
        rate(r.messages as f64, r.wall),
        rate(r.bytes as f64 / 1e6, r.wall),
        r.rss_kb as f64 / 1024.0,
        r.verdict
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn print_summary(rows: &[Row]) {
    println!();
    println!(
        "{:<10} {:>5} {:<9} {:>8} {:>8} {:>7} {:>8}  verifier",
        "tool", "round", "phase", "wall s", "msg/s", "MB/s", "RSS MB"
    );
    for r in rows {
        print_row(r);
    }
    println!("\nmedians (peak RSS MB from /usr/bin/time %M), and imapmirror/mbsync ratios:");
    println!(
        "{:<9} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8}",
        "phase", "im wall s", "mb wall s", "wall x", "im RSS MB", "mb RSS MB", "RSS x"
    );
    for phase in PHASES {
        let pick = |tool: Tool, f: &dyn Fn(&Row) -> f64| {
            median(
                rows.iter()
                    .filter(|r| r.tool == tool && r.phase == phase)
                    .map(f)
                    .collect(),
            )
        };
        let wall = |r: &Row| r.wall;
        let rss = |r: &Row| r.rss_kb as f64 / 1024.0;
        let (iw, mw) = (pick(Tool::Imapmirror, &wall), pick(Tool::Mbsync, &wall));
        let (ir, mr) = (pick(Tool::Imapmirror, &rss), pick(Tool::Mbsync, &rss));
        println!(
            "{:<9} {:>10.3} {:>10.3} {:>8.2} {:>10.1} {:>10.1} {:>8.2}",
            phase,
            iw,
            mw,
            iw / mw,
            ir,
            mr,
            ir / mr
        );
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), KitError> {
    std::fs::write(path, bytes).map_err(|e| KitError::file("write", path.to_path_buf(), e))
}
