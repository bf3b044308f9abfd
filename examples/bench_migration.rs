//! The end-to-end benchmark behind `scripts/bench-migration`: imapmirror against mbsync
//! (Debian's isync), migrating one generated mailbox Dovecot → Dovecot, interleaved.
//!
//! Usage: `bench_migration [MESSAGES=10000] [ROUNDS=3] [NO_CHANGE_RUNS=5]`. The binary is `$IMAPMIRROR_BIN`,
//! else `imapmirror` on the PATH; `mbsync` and `/usr/bin/time` must be on the machine.
//!
//! Every run (each round, imapmirror then mbsync) gets a FRESH Maildir++ source seeded with
//! the same realistic corpus (same seed) and a FRESH LAYOUT=fs target, both at Dovecot's
//! default `mail_fsync = optimized`; fresh sources are needed anyway because the +1% phase
//! adds mail to the source. Both tools talk plain IMAP on the loopback port (no TLS): they
//! log in to the source as the user and to the target as `user*mailadmin` (master user).
//!
//! Phases per run: the initial copy, NO_CHANGE_RUNS no-change reruns (each a row: a
//! no-change pass takes tens of milliseconds, so one sample per round is mostly noise on
//! a shared machine), then +1% new messages appended to the source's INBOX and a rerun. Wall time is measured around the tool's process; peak
//! RSS is that process's max RSS as reported by GNU `/usr/bin/time -f %M` (getrusage of the
//! child). After the initial and +1% phases the kit's exact verifier compares target with
//! source: imapmirror must be identical (else the bench fails); mbsync's differences are
//! counted by kind and reported.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use support::{
    Corpus, CorpusSpec, Dovecot, FolderPath, KitError, Layout, MASTER_PASSWORD, MASTER_USER,
    SeedMessage, Verifier, verify_users,
};

/// Dovecot refuses keywords over 50 bytes by default; the corpus has a longer one.
const LONG_KEYWORDS: &str = "mail_max_keyword_length = 200";
const USER: &str = "bench@example.test";
const PASSWORD: &str = "bench-Secret-1";
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

fn run() -> Result<(), KitError> {
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
    println!(
        "bench: {messages} realistic messages (seed {SEED}), +{extra} for the incremental phase, {rounds} round(s), \
         {no_change_runs} no-change run(s) per round; \
         Dovecot Maildir++ -> LAYOUT=fs, mail_fsync=optimized, plain IMAP on 127.0.0.1"
    );

    let mut rows = Vec::new();
    for round in 1..=rounds {
        for tool in [Tool::Imapmirror, Tool::Mbsync] {
            let run = Run::start(round, tool, &corpus)?;
            let seeded = run.seeded;
            // initial
            let (wall, rss) = run.invoke(&bin, tool, "initial")?;
            let verdict = run.verify(tool)?;
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
            let verdict = run.verify(tool)?;
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

/// One tool's run: fresh servers, a work dir, and the tool's configuration.
struct Run {
    source: Dovecot,
    target: Dovecot,
    work: tempfile::TempDir,
    seeded: (usize, u64),
}

impl Run {
    fn start(round: usize, tool: Tool, corpus: &Corpus) -> Result<Run, KitError> {
        let source = Dovecot::builder()
            .label("source")
            .layout(Layout::MaildirPlusPlus)
            .extra_config(LONG_KEYWORDS)
            .user(USER, PASSWORD)
            .start()?;
        let target = Dovecot::builder()
            .label("target")
            .layout(Layout::Fs)
            .extra_config(LONG_KEYWORDS)
            .user(USER, PASSWORD)
            .start()?;
        let report = source.seed(USER, corpus.folders(), corpus.messages())?;
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

    fn setup_imapmirror_files(&self) -> Result<(), KitError> {
        write(
            &self.path("users.csv"),
            format!("EmailAddress,UserName,Password\n{USER},{USER},{PASSWORD}\n").as_bytes(),
        )?;
        write(&self.path("master.pw"), MASTER_PASSWORD.as_bytes())
    }

    fn setup_mbsync_files(&self) -> Result<(), KitError> {
        let state = self.path("mbsync-state");
        std::fs::create_dir_all(&state).map_err(|e| KitError::file("create", state.clone(), e))?;
        let rc = format!(
            "IMAPAccount source\nHost 127.0.0.1\nPort {sp}\nUser {USER}\nPass {PASSWORD}\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore source\nAccount source\n\n\
             IMAPAccount target\nHost 127.0.0.1\nPort {tp}\nUser {USER}*{MASTER_USER}\nPass {MASTER_PASSWORD}\nSSLType None\nAuthMechs LOGIN\n\n\
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
                    let master_pw = self.path("master.pw").display().to_string();
                    let csv = self.path("users.csv").display().to_string();
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
                        vec![
                            "endpoint",
                            "add",
                            "dst",
                            "--host",
                            "127.0.0.1",
                            "--port",
                            &target_port,
                            "--security",
                            "none",
                            "--admin-user",
                            MASTER_USER,
                            "--admin-password-file",
                            &master_pw,
                            "--admin-format",
                            "dovecot",
                            "--no-test",
                        ],
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

    /// The kit's exact verifier; a non-identical imapmirror target fails the bench.
    fn verify(&self, tool: Tool) -> Result<String, KitError> {
        let report = verify_users(&self.source, USER, &self.target, USER, &Verifier::new())?;
        if report.is_equal() {
            return Ok(format!("identical ({} msgs)", report.messages_compared));
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
                "imapmirror's target differs from the source: {} difference(s): {summary}",
                report.differences.len()
            )));
        }
        Ok(format!("{} diffs: {summary}", report.differences.len()))
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
