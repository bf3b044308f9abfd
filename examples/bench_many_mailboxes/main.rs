//! The many-mailbox load proof behind `scripts/bench-many-mailboxes`: one batch of many
//! mailboxes through the `imapmirror` binary at its default settings, run again and again,
//! each run bounded in time so that a hang is caught, recorded with the process's thread
//! states, killed, and counted, and every finished run checked exact by the test kit's
//! verifier. Dovecot's own dsync (`doveadm backup` through the imapc driver) is the peer,
//! and isync's mbsync the other; where each run's CPU time went, process by process, is
//! measured with BSD process accounting (cpu_accounting.rs).
//!
//! Usage: `bench_many_mailboxes [RUNS=30] [SMALL_USERS=1000]`. The binary is
//! `$IMAPMIRROR_BIN`, else `imapmirror` on the PATH; `/usr/bin/time`, `doveadm`, `xargs`,
//! `du` and (for the fsync count) `strace` must be on the machine; `gdb` and `ss` are used
//! for hang dumps when present. Knobs, all optional (environment):
//! `BENCH_MAILBOXES` (100) and `BENCH_MESSAGES` (100) for phase A, `BENCH_TIMEOUT` (300,
//! seconds per phase-A run; phase B gets 300 + 0.5 per mailbox), `BENCH_STALL` (60: seconds
//! without any CPU time or I/O of the imapmirror process that also make a hang; 0: only the
//! timeout), `BENCH_DSYNC_RUNS` (3), `BENCH_MBSYNC_RUNS` (1), `BENCH_PLAIN_RUNS` (3), `BENCH_STRACE` (1: the run under strace; 0: none),
//! `BENCH_DOVECOT_CONFIG` (lines added to every server's configuration, `\n` for a
//! newline),
//! `BENCH_NO_CHANGE` (10),
//! `BENCH_EMPTIED` (source folders of phase B to leave emptied, comma-separated, e.g.
//! `Trash,Junk`: each gets a copy of the user's INBOX, then is expunged, as a user's Trash
//! is after "empty trash"; default none),
//! `BENCH_OUT` (where logs and hang dumps go; default
//! `target/bench-many-mailboxes/<unix time>`).
//!
//! Servers: a Maildir++ source (separator `.`) and a LAYOUT=fs target (separator `/`, a
//! master user), both Dovecot 2.3 at the default `mail_fsync = optimized`, TLS from a
//! private CA on their IMAPS ports, process limits raised so that Dovecot itself never
//! drops a connection (`MANY_USERS_CONFIG`). Every mailbox is seeded with the kit's
//! realistic corpus (its own seed per mailbox) by writing Maildir files directly.
//!
//! Phase A ("100 × 100"): RUNS runs of `batch start NAME --wait`, each on a fresh state
//! directory and a fresh target, over TLS (`--security ssl --ca-file`); the first
//! BENCH_DSYNC_RUNS of them are each followed by dsync into a fresh target, the first
//! BENCH_MBSYNC_RUNS by mbsync (`xargs -P4 mbsync CHANNEL`, one channel a user), and the first
//! BENCH_PLAIN_RUNS by the same run over plain IMAP (what TLS costs; ratios are taken
//! against these paired TLS runs, since a shared machine drifts over a long bench); then
//! one run under `strace -f -c` (fsyncs; its wall time is not counted). Phase B
//! ("1,000 × 5"): SMALL_USERS mailboxes × 5 messages, one initial pass, BENCH_NO_CHANGE
//! `batch sync NAME --wait` passes with nothing new (the state directory is measured after
//! each), one more through `serve --http` holding the batch (its peak RSS and the status
//! views' times: `ServeCheck`), then dsync's initial copy.
//!
//! Measured per run: wall seconds around the command; peak RSS and bytes written to
//! storage from GNU time (`%M`, and `%O` × 512: the kernel's `write_bytes` of the process,
//! i.e. bytes it dirtied in the page cache or wrote directly, counted up to its exit —
//! polling `/proc/PID/io` would miss the last writes); the state directory with `du -sb`.
//! A run still going after the timeout, or whose process has used no CPU time and moved
//! no byte (`/proc/PID/stat` utime+stime, `/proc/PID/io` rchar+wchar) for BENCH_STALL
//! seconds, is a HANG: its `/proc/PID/status`, each thread's state, wchan, syscall and
//! kernel stack, its sockets (`ss`), a `gdb` backtrace of every thread (when gdb is
//! installed), `batch status --json` through its control socket and its log tail are
//! written to `hang-*.txt`; then it is killed with SIGKILL and the next run starts. The
//! exit status is 1 if any imapmirror run hung or failed or any mailbox it copied is not
//! exact.

mod cpu_accounting;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cpu_accounting::{Accounting, CpuUse, Window};
use support::tls_material::SERVER_NAME;
use support::{
    Corpus, CorpusSpec, Dovecot, KitError, Layout, MANY_USERS_CONFIG, MASTER_PASSWORD, MASTER_USER,
    SeedMessage, Verifier, process_table, verify_users,
};

/// Dovecot refuses keywords over 50 bytes by default; the corpus has a longer one.
const LONG_KEYWORDS: &str = "mail_max_keyword_length = 200";
const TIME: &str = "/usr/bin/time";
const GDB: &str = "/usr/bin/gdb";
const SEED: u64 = 7_100;
const BATCH: &str = "bench";
const SMALL_MESSAGES: usize = 5;
/// dsync's and mbsync's processes at once, as an admin would script them.
const PEER_PARALLEL: &str = "4";
const VERIFY_THREADS: usize = 2;
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench_many_mailboxes: {e}");
            ExitCode::from(2)
        }
    }
}

struct Config {
    runs: usize,
    small_users: usize,
    mailboxes: usize,
    messages: usize,
    timeout: Duration,
    stall: Option<Duration>,
    dsync_runs: usize,
    plain_runs: usize,
    no_change: usize,
    out: PathBuf,
    bin: PathBuf,
    /// `bin` resolved, to recognise its process.
    exe: PathBuf,
    /// Process accounting, for where each run's CPU time went (None: not root, no accton).
    accounting: Option<Accounting>,
    mbsync_runs: usize,
    /// One more phase-A run under `strace -f -c`, counting fsyncs.
    strace_run: bool,
}

impl Config {
    /// A CPU window over one run talking to `servers` (label, Dovecot).
    fn cpu_window(&self, servers: &[(&str, &Dovecot)]) -> Option<Window> {
        let masters: Vec<(&str, u32)> = servers
            .iter()
            .filter_map(|(label, d)| Some((*label, d.master_pid()?)))
            .collect();
        self.accounting.as_ref().map(|a| a.open(&masters))
    }
}

fn positive(text: &str, what: &str) -> Result<usize, KitError> {
    text.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| KitError::Usage(format!("{what}: expected a positive number, got {text:?}")))
}

fn arg(index: usize, default: usize, what: &str) -> Result<usize, KitError> {
    match std::env::args().nth(index) {
        None => Ok(default),
        Some(text) => positive(&text, what),
    }
}

fn env_number(name: &str, default: usize, zero_ok: bool) -> Result<usize, KitError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) if zero_ok && text == "0" => Ok(0),
        Ok(text) => positive(&text, name),
    }
}

fn config() -> Result<Config, KitError> {
    let bin = std::env::var_os("IMAPMIRROR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("imapmirror"));
    for tool in [TIME, "/usr/bin/xargs", "/usr/bin/du"] {
        if !Path::new(tool).exists() {
            return Err(KitError::Usage(format!(
                "{tool} missing (scripts/install-deps --bench)"
            )));
        }
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let out = std::env::var_os("BENCH_OUT").map_or_else(
        || PathBuf::from(format!("target/bench-many-mailboxes/{stamp}")),
        PathBuf::from,
    );
    std::fs::create_dir_all(&out).map_err(|e| KitError::file("create", &out, e))?;
    let out = std::fs::canonicalize(&out).map_err(|e| KitError::file("resolve", &out, e))?;
    Ok(Config {
        runs: arg(1, 30, "RUNS")?,
        small_users: arg(2, 1000, "SMALL_USERS")?,
        mailboxes: env_number("BENCH_MAILBOXES", 100, false)?,
        messages: env_number("BENCH_MESSAGES", 100, false)?,
        timeout: Duration::from_secs(env_number("BENCH_TIMEOUT", 300, false)? as u64),
        stall: match env_number("BENCH_STALL", 60, true)? {
            0 => None,
            n => Some(Duration::from_secs(n as u64)),
        },
        dsync_runs: env_number("BENCH_DSYNC_RUNS", 3, true)?,
        plain_runs: env_number("BENCH_PLAIN_RUNS", 3, true)?,
        no_change: env_number("BENCH_NO_CHANGE", 10, true)?,
        mbsync_runs: env_number("BENCH_MBSYNC_RUNS", 1, true)?,
        strace_run: env_number("BENCH_STRACE", 1, true)? > 0,
        accounting: match Accounting::start(&out) {
            Ok(a) => Some(a),
            Err(why) => {
                println!("no CPU figures by process: {why}");
                None
            }
        },
        out,
        exe: resolve_program(&bin),
        bin,
    })
}

fn user_name(phase: &str, i: usize) -> String {
    format!("{phase}{i:04}@example.test")
}

fn password(i: usize) -> String {
    format!("Pw-{i:04}-k3Vq")
}

/// A Dovecot of the bench: many users, long keywords, raised process limits.
/// `BENCH_DOVECOT_CONFIG`, when set, is appended to every server's configuration (e.g.
/// Dovecot's high-performance login mode, to see what a tuned server changes).
fn server(label: &str, layout: Layout, users: &[String]) -> Result<Dovecot, KitError> {
    let tuning = std::env::var("BENCH_DOVECOT_CONFIG").unwrap_or_default();
    Dovecot::builder()
        .label(label)
        .layout(layout)
        .extra_config(LONG_KEYWORDS)
        .extra_config(MANY_USERS_CONFIG)
        .extra_config(&tuning.replace("\\n", "\n"))
        .users(
            users
                .iter()
                .enumerate()
                .map(|(i, u)| (u.clone(), password(i))),
        )
        .start()
}

fn run() -> Result<bool, KitError> {
    let cfg = config()?;
    println!(
        "bench-many-mailboxes: phase A {} mailboxes × {} realistic messages, {} run(s) over TLS + 1 under strace, \
         dsync after each of the first {}, the same over plain IMAP after each of the first {}; phase B {} mailboxes × {SMALL_MESSAGES}, {} no-change pass(es); \
         Dovecot Maildir++ -> LAYOUT=fs, mail_fsync=optimized, imapmirror at default settings. Logs: {}",
        cfg.mailboxes,
        cfg.messages,
        cfg.runs,
        cfg.dsync_runs.min(cfg.runs),
        cfg.plain_runs.min(cfg.runs),
        cfg.small_users,
        cfg.no_change,
        cfg.out.display()
    );
    let a = phase_a(&cfg)?;
    let b = phase_b(&cfg)?;
    let summary = summary(&cfg, &a, &b);
    println!("\n{summary}");
    let path = cfg.out.join("summary.md");
    std::fs::write(&path, &summary).map_err(|e| KitError::file("write", &path, e))?;
    let ok = a.all_ok() && b.all_ok();
    if !ok {
        println!(
            "FAILED: a run hung or failed, or a mailbox was not exact; dumps and logs in {}",
            cfg.out.display()
        );
    }
    Ok(ok)
}

// ---------------------------------------------------------------------------------------
// Running a command under GNU time, bounded in time

/// How one watched command ended.
#[derive(Debug, Clone, Default)]
struct Watched {
    wall: f64,
    rss_kb: u64,
    /// `%O` × 512: the process's write_bytes at exit.
    written: u64,
    status: Option<ExitStatus>,
    /// Set when the timeout struck: a one-line summary of the thread states.
    hang: Option<String>,
    dump: Option<PathBuf>,
    /// Where the CPU time of the run went, when process accounting is on.
    cpu: Option<CpuUse>,
    /// GNU time's pid and the name of the program it ran: the root of the run's process
    /// tree, for the CPU accounting.
    root: Option<(u32, String)>,
}

impl Watched {
    /// Closes `window` over this run's process tree.
    fn account(&mut self, window: Option<Window>) {
        if let (Some(window), Some((pid, name))) = (window, &self.root) {
            self.cpu = Some(window.close(*pid, name));
        }
    }
}

impl Watched {
    fn ok(&self) -> bool {
        self.hang.is_none() && self.status.is_some_and(|s| s.success())
    }

    fn verdict(&self) -> String {
        match (&self.hang, self.status) {
            (Some(_), _) => "HANG".to_owned(),
            (None, Some(s)) if s.success() => "ok".to_owned(),
            (None, Some(s)) => format!("FAILED ({s})"),
            (None, None) => "FAILED (no status)".to_owned(),
        }
    }
}

/// What to do when the timeout strikes.
struct OnTimeout<'a> {
    /// The process to dump and kill: the last descendant running this executable.
    exe: &'a Path,
    /// Also a hang: this long without any CPU time or I/O (read or written bytes, sockets
    /// included) of that process, i.e. deadlocked rather than slow.
    stall: Option<Duration>,
    dump: Option<DumpContext<'a>>,
}

struct DumpContext<'a> {
    file: PathBuf,
    bin: &'a Path,
    state_dir: &'a Path,
    log: &'a Path,
}

/// Runs `program args` under `/usr/bin/time -f "%e %M %O"`, output to `log`, for at most
/// `timeout`.
fn watched(
    program: &Path,
    args: &[String],
    envs: &[(&str, &Path)],
    stdin: Option<&Path>,
    log: &Path,
    timeout: Duration,
    on_timeout: &OnTimeout<'_>,
) -> Result<Watched, KitError> {
    let time_file = log.with_extension("time");
    let out = std::fs::File::create(log).map_err(|e| KitError::file("create", log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| KitError::file("reopen", log, e))?;
    let mut cmd = Command::new(TIME);
    cmd.arg("-f")
        .arg("%e %M %O")
        .arg("-o")
        .arg(&time_file)
        .arg(program)
        .args(args)
        .stdout(out)
        .stderr(err);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    match stdin {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| KitError::file("open", path, e))?;
            cmd.stdin(file);
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| KitError::Command {
        command: format!("{TIME} {}", program.display()),
        detail: e.to_string(),
    })?;
    let deadline = start + timeout;
    let mut result = Watched {
        root: Some((
            child.id(),
            program
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        )),
        ..Watched::default()
    };
    // (pid, last CPU + I/O reading, when it last changed)
    let mut progress: Option<(u32, u64, Instant)> = None;
    let mut next_sample = start;
    let mut reason = format!("still running after {} s", timeout.as_secs());
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| KitError::Command {
            command: format!("wait for {}", program.display()),
            detail: e.to_string(),
        })? {
            break Some(status);
        }
        let now = Instant::now();
        if now >= deadline {
            break None;
        }
        if let Some(stall) = on_timeout.stall
            && now >= next_sample
        {
            next_sample = now + Duration::from_secs(1);
            match progress {
                None => {
                    progress = process_table::family(child.id())
                        .into_iter()
                        .find(|p| runs(p.pid, on_timeout.exe))
                        .and_then(|p| Some((p.pid, activity(p.pid)?, now)));
                }
                Some((pid, last, since)) => match activity(pid) {
                    Some(value) if value != last => progress = Some((pid, value, now)),
                    Some(_) if now.duration_since(since) >= stall => {
                        reason = format!("no CPU time and no I/O for {} s", stall.as_secs());
                        break None;
                    }
                    _ => {}
                },
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    result.wall = start.elapsed().as_secs_f64();
    match status {
        Some(status) => result.status = Some(status),
        None => {
            let target = process_table::family(child.id())
                .into_iter()
                .filter(|p| runs(p.pid, on_timeout.exe))
                .map(|p| p.pid)
                .next_back();
            let summary = match (target, &on_timeout.dump) {
                (Some(pid), Some(ctx)) => {
                    let summary = dump_process(pid, ctx);
                    result.dump = Some(ctx.file.clone());
                    summary
                }
                (Some(pid), None) => format!("pid {pid} killed"),
                (None, _) => format!("no {} process found", on_timeout.exe.display()),
            };
            result.hang = Some(format!("{reason}; {summary}"));
            // A dumped (hung) process first, alone, so that a tracer above it (strace) still
            // writes its summary and GNU time still reports its peak RSS; then everything
            // else this run started below GNU time, listed before any is killed (parents
            // first, so nothing new is spawned and no orphan escapes the list).
            let kill = |pid: u32| {
                let _ = Command::new("kill")
                    .args(["-s", "KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            };
            let wait_exit = |child: &mut Child, seconds: u64| {
                let until = Instant::now() + Duration::from_secs(seconds);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
            };
            if let (Some(pid), Some(_)) = (target, &on_timeout.dump) {
                kill(pid);
                wait_exit(&mut child, 10);
            }
            let mut family = process_table::family(child.id());
            family.retain(|p| p.pid != child.id());
            for p in family {
                kill(p.pid);
            }
            wait_exit(&mut child, 5);
            let _ = child.kill();
            result.status = child.wait().ok();
        }
    }
    let text = std::fs::read_to_string(&time_file).unwrap_or_default();
    // On failure GNU time writes "Command exited with non-zero status N" first.
    if let Some(line) = text.lines().rev().find(|l| {
        l.split_whitespace().count() == 3 && l.split_whitespace().all(|f| f.parse::<f64>().is_ok())
    }) {
        let f: Vec<&str> = line.split_whitespace().collect();
        result.rss_kb = f[1].parse().unwrap_or(0);
        result.written = f[2].parse::<u64>().unwrap_or(0) * 512;
    }
    Ok(result)
}

/// A number that changes whenever the process uses CPU or moves bytes: utime + stime
/// (clock ticks) + rchar + wchar (bytes through read and write calls, sockets included).
fn activity(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15.
    let cpu: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let bytes: u64 = io
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k, "rchar" | "wchar").then(|| v.trim().parse::<u64>().ok())?
        })
        .sum();
    Some(cpu.wrapping_add(bytes))
}

/// True if `pid` runs `exe` (an absolute path; a binary replaced on disk since the process
/// started still counts).
fn runs(pid: u32, exe: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|link| {
        let link = link.to_string_lossy();
        link.strip_suffix(" (deleted)").unwrap_or(&link) == exe.to_string_lossy()
    })
}

/// `program` as an absolute path without symlinks, looked up on PATH when it is a bare name.
fn resolve_program(program: &Path) -> PathBuf {
    let found = if program.components().count() > 1 {
        Some(program.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
    };
    found
        .and_then(|p| std::fs::canonicalize(p).ok())
        .unwrap_or_else(|| program.to_path_buf())
}

/// Runs a short diagnostic command for at most `timeout`; its output, or why there is none.
fn bounded_output(mut cmd: Command, timeout: Duration) -> String {
    let file = match tempfile::NamedTempFile::new() {
        Ok(f) => f,
        Err(e) => return format!("(no temp file: {e})"),
    };
    let (Ok(out), Ok(err)) = (file.reopen(), file.reopen()) else {
        return "(cannot reopen the temp file)".to_owned();
    };
    let child: std::io::Result<Child> = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return format!("(could not run: {e})"),
    };
    let deadline = Instant::now() + timeout;
    let mut note = String::new();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                note = format!("\n(killed after {} s)", timeout.as_secs());
                break;
            }
        }
    }
    std::fs::read_to_string(file.path()).unwrap_or_default() + &note
}

/// Writes everything that tells where a hung process waits; returns a one-line summary
/// (threads by state and wchan).
fn dump_process(pid: u32, ctx: &DumpContext<'_>) -> String {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| format!("({e})"));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# hang dump of pid {pid}\n## cmdline\n{}\n## /proc/{pid}/status\n{}",
        read(&proc_dir.join("cmdline")).replace('\0', " "),
        read(&proc_dir.join("status"))
    );
    let mut tids: Vec<u32> = std::fs::read_dir(proc_dir.join("task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    let _ = writeln!(out, "## threads ({})", tids.len());
    for tid in &tids {
        let task = proc_dir.join("task").join(tid.to_string());
        let name = read(&task.join("comm")).trim().to_owned();
        let stat = read(&task.join("stat"));
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        let wchan = read(&task.join("wchan")).trim().to_owned();
        let syscall = read(&task.join("syscall")).trim().to_owned();
        let stack = read(&task.join("stack"));
        *histogram
            .entry(format!(
                "{state} {}",
                if wchan.is_empty() || wchan == "0" {
                    "-"
                } else {
                    &wchan
                }
            ))
            .or_default() += 1;
        let _ = writeln!(
            out,
            "### tid {tid} {name}: state {state}, wchan {wchan}, syscall {syscall}\n{}",
            stack.trim_end()
        );
    }
    let fds: Vec<String> = std::fs::read_dir(proc_dir.join("fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|t| t.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for fd in &fds {
        let kind = fd.split(':').next().unwrap_or("?");
        let kind = if kind.starts_with('/') { "file" } else { kind };
        *kinds.entry(kind.to_owned()).or_default() += 1;
    }
    let _ = writeln!(out, "## open fds ({}): {kinds:?}", fds.len());
    for fd in fds.iter().filter(|f| f.starts_with('/')) {
        let _ = writeln!(out, "{fd}");
    }
    let mut ss = Command::new("ss");
    ss.args(["-tanpi"]);
    let sockets = bounded_output(ss, Duration::from_secs(10));
    let needle = format!("pid={pid},");
    let lines: Vec<&str> = sockets.lines().collect();
    let _ = writeln!(out, "## TCP sockets of pid {pid} (ss -tanpi)");
    for (i, line) in lines.iter().enumerate() {
        if line.contains(&needle) {
            let _ = writeln!(out, "{line}");
            if let Some(next) = lines.get(i + 1).filter(|l| l.starts_with(['\t', ' '])) {
                let _ = writeln!(out, "{next}");
            }
        }
    }
    let mut stacks = String::new();
    if Path::new(GDB).exists() {
        let mut gdb = Command::new(GDB);
        gdb.args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-nx",
            "-ex",
            "set pagination off",
            "-ex",
            "thread apply all bt",
        ]);
        let text = bounded_output(gdb, Duration::from_secs(90));
        stacks = gdb_summary(&text);
        let _ = writeln!(out, "## gdb: thread apply all bt\n{text}");
    } else {
        let _ = writeln!(out, "## gdb not installed: no user-space stacks");
    }
    for verb in ["status", "users"] {
        let mut status = Command::new(ctx.bin);
        status
            .args(["batch", verb, BATCH, "--json"])
            .env("IMAPMIRROR_STATE_DIR", ctx.state_dir);
        let _ = writeln!(
            out,
            "## imapmirror batch {verb} {BATCH} --json (through the hung process's control socket)\n{}",
            bounded_output(status, Duration::from_secs(10))
        );
    }
    let log = std::fs::read_to_string(ctx.log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(60).collect();
    let _ = writeln!(
        out,
        "## log tail\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    if let Err(e) = std::fs::write(&ctx.file, &out) {
        eprintln!("could not write {}: {e}", ctx.file.display());
    }
    let threads = histogram
        .iter()
        .map(|(k, n)| format!("{n}× {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    if stacks.is_empty() {
        format!("{} threads: {threads}", tids.len())
    } else {
        format!("{} threads: {threads}; where (gdb): {stacks}", tids.len())
    }
}

/// Where the threads of a gdb `thread apply all bt` wait, on one line: per thread its kind
/// (name without digits), its first two frames that are not the parking machinery
/// (futex, parking_lot, std) and its innermost frame in this workspace's crates, counted.
fn gdb_summary(text: &str) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut threads: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Thread ") {
            // Thread 3 (Thread 0x7f... (LWP 3344) "tokio-rt-worker"):
            let name = rest.split('"').nth(1).unwrap_or("?");
            let kind: String = name.chars().filter(|c| !c.is_ascii_digit()).collect();
            threads.push((kind.trim_end_matches('-').to_owned(), Vec::new()));
        } else if line.starts_with('#')
            && let Some((_, frames)) = threads.last_mut()
            && let Some(frame) = gdb_frame(line)
        {
            frames.push(frame);
        }
    }
    for (kind, frames) in &threads {
        let mut shown: Vec<String> = Vec::new();
        let mut last_name = "";
        for (name, path) in frames.iter().filter(|(_, path)| !parking_machinery(path)) {
            if shown.len() == 2 {
                break;
            }
            if name != last_name {
                shown.push(format!("{name} ({path})"));
                last_name = name;
            }
        }
        if let Some((name, path)) = frames.iter().find(|(_, path)| {
            ["storage/src/", "engine/src/", "proxy/src/", "protocol/src/"]
                .iter()
                .any(|p| path.starts_with(p))
        }) {
            let own = format!("{name} ({path})");
            if !shown.contains(&own) {
                shown.push(format!("… {own}"));
            }
        }
        *counts
            .entry(format!("[{kind}] {}", shown.join(" <- ")))
            .or_default() += 1;
    }
    let mut by_count: Vec<(String, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    by_count
        .iter()
        .map(|(k, n)| format!("{n}× {k}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// `#8  0x000055a9f9b902ec in name<generics> () at path:line` as (name, short path:line).
fn gdb_frame(line: &str) -> Option<(String, String)> {
    let (head, location) = line.rsplit_once(" at ")?;
    let head = head.split_once(' ')?.1.trim_start();
    let head = match head.split_once(" in ") {
        Some((addr, rest)) if addr.starts_with("0x") => rest,
        _ => head,
    };
    let mut name = String::new();
    let mut depth = 0usize;
    for c in head.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => name.push(c),
            _ => {}
        }
    }
    let name = name.split(" (").next().unwrap_or("").trim().to_owned();
    let short = location
        .rsplit_once("index.crates.io-")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or(location, |(_, rest)| rest);
    Some((name, short.to_owned()))
}

/// Frames that only say "this thread is parked": the futex, parking_lot, std.
fn parking_machinery(path: &str) -> bool {
    [
        "parking_lot",
        "lock_api",
        "sysdeps",
        "nptl",
        "/rustc/",
        "library/std",
        "library/core",
        "library/alloc",
    ]
    .iter()
    .any(|b| path.contains(b))
        || [
            "src/thread_parker",
            "src/raw_rwlock.rs",
            "src/raw_mutex.rs",
            "src/condvar.rs",
            "src/parking_lot.rs",
            "src/word_lock.rs",
        ]
        .iter()
        .any(|b| path.starts_with(b))
}

fn du_bytes(dir: &Path) -> u64 {
    Command::new("du")
        .arg("-sb")
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Verifying many mailboxes

#[derive(Debug, Clone, Default)]
struct Verdict {
    exact: usize,
    not_exact: usize,
    messages: usize,
    /// Differences by kind (the variant name of the kit's `Difference`), and verifier errors.
    kinds: BTreeMap<String, usize>,
    examples: Vec<String>,
}

impl Verdict {
    fn all_exact(&self) -> bool {
        self.not_exact == 0
    }

    fn describe(&self) -> String {
        if self.all_exact() {
            return format!("all {} exact ({} msgs)", self.exact, self.messages);
        }
        let kinds = self
            .kinds
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "{} of {} NOT exact: {kinds}",
            self.not_exact,
            self.exact + self.not_exact
        )
    }
}

fn verify_all(source: &Dovecot, target: &Dovecot, users: &[String]) -> Verdict {
    let next = AtomicUsize::new(0);
    let verdict = Mutex::new(Verdict::default());
    let verifier = Verifier::new();
    std::thread::scope(|scope| {
        for _ in 0..VERIFY_THREADS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(user) = users.get(i) else { break };
                    let report = verify_users(source, user, target, user, &verifier);
                    let mut v = verdict.lock().unwrap_or_else(|p| p.into_inner());
                    match report {
                        Ok(r) if r.is_equal() => {
                            v.exact += 1;
                            v.messages += r.messages_compared;
                        }
                        Ok(r) => {
                            v.not_exact += 1;
                            v.messages += r.messages_compared;
                            for d in &r.differences {
                                let debug = format!("{d:?}");
                                let kind = debug
                                    .split(|c: char| !c.is_alphanumeric())
                                    .next()
                                    .unwrap_or("?")
                                    .to_owned();
                                *v.kinds.entry(kind).or_default() += 1;
                                if v.examples.len() < 5 {
                                    v.examples.push(format!("{user}: {d}"));
                                }
                            }
                        }
                        Err(e) => {
                            v.not_exact += 1;
                            *v.kinds.entry("VerifierError".to_owned()).or_default() += 1;
                            if v.examples.len() < 5 {
                                v.examples.push(format!("{user}: {e}"));
                            }
                        }
                    }
                }
            });
        }
    });
    verdict.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Lines Dovecot logged since `offset` that say it refused or dropped something.
fn server_trouble(server: &Dovecot, offset: u64) -> usize {
    let text = std::fs::read(server.log_path()).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(offset as usize..).unwrap_or_default());
    text.lines()
        .filter(|l| {
            l.contains("process_limit")
                || l.contains("client_limit")
                || l.contains("Panic:")
                || l.contains("Fatal:")
                || l.contains("Maximum number of connections")
        })
        .count()
}

fn log_len(server: &Dovecot) -> u64 {
    std::fs::metadata(server.log_path()).map_or(0, |m| m.len())
}

// ---------------------------------------------------------------------------------------
// One imapmirror run: fresh target, fresh state directory, setup, the pass(es)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tls,
    Plain,
}

#[derive(Debug, Clone)]
struct Pass {
    label: String,
    watched: Watched,
    state_bytes: u64,
}

#[derive(Debug, Clone)]
struct ImapmirrorRun {
    label: String,
    transport: Transport,
    initial: Pass,
    no_change: Vec<Pass>,
    verdict: Option<Verdict>,
    fsyncs: Option<BTreeMap<String, u64>>,
    server_trouble: usize,
    /// `serve` holding the batch through one more no-change pass (phase B).
    serve: Option<ServeCheck>,
}

/// `serve --http` holding a batch: one `batch sync --wait` that it runs (the command only
/// follows it), the status views read meanwhile, and serve's peak RSS (`VmHWM`).
#[derive(Debug, Clone, Default)]
struct ServeCheck {
    pass: Watched,
    /// (path, seconds for the whole body, curl's `time_total`; None: no 200).
    views: Vec<(String, Option<f64>)>,
    peak_rss_kb: Option<u64>,
}

impl ImapmirrorRun {
    fn ok(&self) -> bool {
        self.initial.watched.ok()
            && self.no_change.iter().all(|p| p.watched.ok())
            && self.serve.as_ref().is_none_or(|s| s.pass.ok())
            && self.verdict.as_ref().is_some_and(Verdict::all_exact)
    }
}

struct RunSpec<'a> {
    label: String,
    transport: Transport,
    strace: bool,
    no_change: usize,
    /// After the no-change passes, one more through `serve --http` ([`ServeCheck`]).
    serve: bool,
    timeout: Duration,
    source: &'a Dovecot,
    users: &'a [String],
}

fn imapmirror_run(cfg: &Config, spec: &RunSpec<'_>) -> Result<ImapmirrorRun, KitError> {
    let target = server("target", Layout::Fs, spec.users)?;
    let work = tempfile::tempdir()
        .map_err(|e| KitError::file("create a temp dir in", std::env::temp_dir(), e))?;
    let state = work.path().join("state");
    let csv = work.path().join("users.csv");
    let mut rows = String::from("EmailAddress,UserName,Password\n");
    for (i, u) in spec.users.iter().enumerate() {
        let _ = writeln!(rows, "{u},{u},{}", password(i));
    }
    write(&csv, rows.as_bytes())?;
    let master_pw = work.path().join("master.pw");
    write(&master_pw, format!("{MASTER_PASSWORD}\n").as_bytes())?;
    let source = spec.source;
    let source_log = log_len(source);

    let endpoint = |name: &str, server: &Dovecot, admin: bool| -> Vec<String> {
        let (port, security) = match spec.transport {
            Transport::Tls => (server.tls_addr().port(), "ssl"),
            Transport::Plain => (server.plain_addr().port(), "none"),
        };
        let mut args: Vec<String> = [
            "endpoint",
            "add",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--security",
            security,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if spec.transport == Transport::Tls {
            args.push("--ca-file".to_owned());
            args.push(server.ca_file().display().to_string());
        }
        if admin {
            for a in [
                "--admin-user",
                MASTER_USER,
                "--admin-password-file",
                &master_pw.display().to_string(),
                "--admin-format",
                "dovecot",
            ] {
                args.push(a.to_owned());
            }
        }
        args
    };
    let setup = [
        endpoint("src", source, false),
        endpoint("dst", &target, true),
        [
            "batch",
            "add",
            BATCH,
            "--csv",
            &csv.display().to_string(),
            "--source",
            "src",
            "--target",
            "dst",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
    ];
    let envs = [("IMAPMIRROR_STATE_DIR", state.as_path())];
    for (i, args) in setup.iter().enumerate() {
        let log = cfg.out.join(format!("{}-setup-{i}.log", spec.label));
        let w = watched(
            &cfg.bin,
            args,
            &envs,
            None,
            &log,
            SETUP_TIMEOUT,
            &OnTimeout {
                exe: &cfg.exe,
                stall: None,
                dump: None,
            },
        )?;
        if w.ok() {
            let _ = std::fs::remove_file(&log);
            let _ = std::fs::remove_file(log.with_extension("time"));
        } else {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(KitError::Command {
                command: format!("imapmirror {}", args.join(" ")),
                detail: format!("{}: {}", w.verdict(), text.trim()),
            });
        }
    }

    let pass = |verb: &str, label: String, strace: bool| -> Result<Pass, KitError> {
        let log = cfg.out.join(format!("{label}.log"));
        let mut args: Vec<String> = ["batch", verb, BATCH, "--wait"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let (program, timeout) = if strace {
            let mut traced: Vec<String> = [
                "-f",
                "-c",
                "-e",
                "trace=fsync,fdatasync,sync_file_range,syncfs,msync",
                "-o",
                &cfg.out
                    .join(format!("{label}.strace"))
                    .display()
                    .to_string(),
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            traced.push(cfg.bin.display().to_string());
            traced.append(&mut args);
            args = traced;
            (PathBuf::from("strace"), spec.timeout * 3)
        } else {
            (cfg.bin.clone(), spec.timeout)
        };
        let window = cfg.cpu_window(&[("source", source), ("target", &target)]);
        let mut w = watched(
            &program,
            &args,
            &envs,
            None,
            &log,
            timeout,
            &OnTimeout {
                exe: &cfg.exe,
                stall: cfg.stall,
                dump: Some(DumpContext {
                    file: cfg.out.join(format!("hang-{label}.txt")),
                    bin: &cfg.bin,
                    state_dir: &state,
                    log: &log,
                }),
            },
        )?;
        w.account(window);
        Ok(Pass {
            label,
            watched: w,
            state_bytes: du_bytes(&state),
        })
    };

    let initial = pass("start", spec.label.clone(), spec.strace)?;
    print_pass(&initial, spec.users.len());
    let fsyncs = spec
        .strace
        .then(|| strace_counts(&cfg.out.join(format!("{}.strace", spec.label))));
    let mut run = ImapmirrorRun {
        label: spec.label.clone(),
        transport: spec.transport,
        initial,
        no_change: Vec::new(),
        verdict: None,
        fsyncs,
        server_trouble: 0,
        serve: None,
    };
    if !run.initial.watched.ok() {
        report_failure(&run.initial);
        run.server_trouble = server_trouble(source, source_log) + server_trouble(&target, 0);
        return Ok(run);
    }
    let started = Instant::now();
    let verdict = verify_all(source, &target, spec.users);
    println!(
        "    verifier: {} ({:.1} s)",
        verdict.describe(),
        started.elapsed().as_secs_f64()
    );
    for e in &verdict.examples {
        println!("      {e}");
    }
    run.verdict = Some(verdict);
    for n in 1..=spec.no_change {
        let p = pass("sync", format!("{}-nochange-{n:02}", spec.label), false)?;
        print_pass(&p, 0);
        let failed = !p.watched.ok();
        if failed {
            report_failure(&p);
        }
        run.no_change.push(p);
        if failed {
            break;
        }
    }
    if spec.serve && run.no_change.iter().all(|p| p.watched.ok()) {
        let check = serve_check(cfg, &envs, &state, &spec.label)?;
        println!("  {}-serve  {}", spec.label, check.describe());
        run.serve = Some(check);
    }
    run.server_trouble = server_trouble(source, source_log) + server_trouble(&target, 0);
    if run.server_trouble > 0 {
        println!(
            "    Dovecot logged {} limit/fatal line(s) during this run (see its logs)",
            run.server_trouble
        );
    }
    Ok(run)
}

/// Starts `serve --http` on the state directory, runs `batch sync NAME --wait` through it
/// (a no-change pass that serve runs), reads the status views, and stops serve with
/// SIGTERM. What item 2 of issue 15 asks of `serve` holding a 1,000-mailbox batch.
fn serve_check(
    cfg: &Config,
    envs: &[(&str, &Path)],
    state: &Path,
    label: &str,
) -> Result<ServeCheck, KitError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| KitError::Command {
            command: "bind 127.0.0.1:0".to_owned(),
            detail: e.to_string(),
        })?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let log = cfg.out.join(format!("{label}-serve.log"));
    let out = std::fs::File::create(&log).map_err(|e| KitError::file("create", &log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| KitError::file("reopen", &log, e))?;
    let mut serve = Command::new(&cfg.bin)
        .args(["serve", "--http", &format!("127.0.0.1:{port}")])
        .env("IMAPMIRROR_STATE_DIR", state)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| KitError::Command {
            command: format!("{} serve", cfg.bin.display()),
            detail: e.to_string(),
        })?;
    let pid = serve.id();
    let mut check = ServeCheck::default();
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let ready = loop {
        if http_get(&format!("{base}/healthz")).is_some() {
            break true;
        }
        if Instant::now() > deadline || matches!(serve.try_wait(), Ok(Some(_))) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let result = if ready {
        let pass_log = cfg.out.join(format!("{label}-serve-pass.log"));
        let args: Vec<String> = ["batch", "sync", BATCH, "--wait"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        watched(
            &cfg.bin,
            &args,
            envs,
            None,
            &pass_log,
            SETUP_TIMEOUT * 5,
            &OnTimeout {
                exe: &cfg.exe,
                stall: None,
                dump: None,
            },
        )
        .map(|pass| {
            check.pass = pass;
            for path in [
                format!("/batches/{BATCH}"),
                format!("/batches/{BATCH}/users"),
                format!("/batch/{BATCH}"),
                "/metrics".to_owned(),
            ] {
                let took = http_get(&format!("{base}{path}"));
                check.views.push((path, took));
            }
            check.peak_rss_kb = peak_rss_kb(pid);
        })
    } else {
        Err(KitError::Command {
            command: format!("{} serve --http 127.0.0.1:{port}", cfg.bin.display()),
            detail: format!("not answering /healthz; see {}", log.display()),
        })
    };
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let stopped = Instant::now();
    while stopped.elapsed() < SETUP_TIMEOUT {
        if matches!(serve.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if matches!(serve.try_wait(), Ok(None)) {
        let _ = serve.kill();
        let _ = serve.wait();
    }
    result.map(|()| check)
}

/// Seconds for a GET of `url` with its whole body (curl's `time_total`), when it answers
/// 200.
fn http_get(url: &str) -> Option<f64> {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total}",
            url,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (code, took) = text.trim().split_once(' ')?;
    (code == "200").then(|| took.parse().ok()).flatten()
}

/// `VmHWM` of a running process, in KiB.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl ServeCheck {
    fn describe(&self) -> String {
        let views: Vec<String> = self
            .views
            .iter()
            .map(|(path, took)| match took {
                Some(t) => format!("{path} {t:.2} s"),
                None => format!("{path} FAILED"),
            })
            .collect();
        format!(
            "no-change pass run by serve {:.2} s {}; serve peak RSS {}; {}",
            self.pass.wall,
            self.pass.verdict(),
            self.peak_rss_kb
                .map_or("–".to_owned(), |k| format!("{:.1} MB", k as f64 / 1024.0)),
            views.join(", ")
        )
    }
}

fn print_pass(p: &Pass, mailboxes: usize) {
    let per = if mailboxes > 0 {
        format!(" ({:.3} s/mailbox)", p.watched.wall / mailboxes as f64)
    } else {
        String::new()
    };
    println!(
        "  {:<24} {:>8.2} s{per}  RSS {:>6.1} MB  written {:>7.1} MB  state {:>6.2} MB  {}",
        p.label,
        p.watched.wall,
        p.watched.rss_kb as f64 / 1024.0,
        p.watched.written as f64 / 1e6,
        p.state_bytes as f64 / 1e6,
        p.watched.verdict()
    );
    print_cpu(&p.watched);
    if let Some(dump) = &p.watched.dump {
        println!("    hang dump: {}", dump.display());
    }
    if let Some(hang) = &p.watched.hang {
        println!("    {hang}");
    }
}

fn print_cpu(w: &Watched) {
    if let Some(cpu) = &w.cpu {
        println!(
            "    cpu: {}; the machine {:.0} % busy over 2 cores × {:.1} s",
            cpu.describe(),
            cpu.machine.unwrap_or_else(|| cpu.total()) / (2.0 * w.wall) * 100.0,
            w.wall
        );
    }
}

fn report_failure(p: &Pass) {
    if p.watched.hang.is_none() {
        println!("    {} did not succeed; see {}.log", p.label, p.label);
    }
}

/// `strace -c`'s table: calls per syscall.
fn strace_counts(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 5
            && f[0].parse::<f64>().is_ok()
            && let (Ok(calls), Some(name)) = (f[3].parse::<u64>(), f.last())
            && *name != "total"
        {
            counts.insert((*name).to_owned(), calls);
        }
    }
    counts
}

// ---------------------------------------------------------------------------------------
// dsync: doveadm backup through imapc, 4 users at once

#[derive(Debug, Clone)]
struct PeerRun {
    label: String,
    watched: Watched,
    verdict: Option<Verdict>,
}

/// The peer: Dovecot's dsync run on the target's configuration, reading the source over
/// IMAPS with the master user (imapc), four users at once with xargs as an admin would:
/// `xargs -P4 -I{} doveadm -c dsync.conf backup -R -u {} imapc: < users`.
fn dsync_run(
    cfg: &Config,
    label: String,
    source: &Dovecot,
    users: &[String],
    timeout: Duration,
) -> Result<PeerRun, KitError> {
    let target = server("target-dsync", Layout::Fs, users)?;
    let conf = target.dir().join("dsync-imapc.conf");
    let text = format!(
        "!include {target_conf}
# dsync's imapc side: the source over IMAPS, each user opened by the master user
imapc_host = 127.0.0.1
imapc_port = {port}
imapc_ssl = imaps
ssl_client_ca_file = {ca}
imapc_master_user = {MASTER_USER}
imapc_password = {MASTER_PASSWORD}
imapc_features = rfc822.size fetch-headers
mail_prefetch_count = 20
",
        target_conf = target.config_path().display(),
        port = source.tls_addr().port(),
        ca = source.ca_file().display(),
    );
    write(&conf, text.as_bytes())?;
    let list = target.dir().join("dsync.users");
    write(&list, users.join("\n").as_bytes())?;
    let args: Vec<String> = [
        "-P",
        PEER_PARALLEL,
        "-I{}",
        "/usr/bin/doveadm",
        "-c",
        &conf.display().to_string(),
        "backup",
        "-R",
        "-u",
        "{}",
        "imapc:",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let log = cfg.out.join(format!("{label}.log"));
    let doveadm = resolve_program(Path::new("/usr/bin/doveadm"));
    let peer = Peer {
        label,
        tool: &doveadm,
        args: &args,
        list: &list,
        log: &log,
        timeout,
    };
    run_peer(cfg, peer, source, &target, users)
}

/// One peer's run: `xargs ARGS < LIST` watched (its CPU by process included), printed,
/// then the target checked by the verifier.
struct Peer<'a> {
    label: String,
    /// The program xargs runs, to recognise its processes.
    tool: &'a Path,
    args: &'a [String],
    list: &'a Path,
    log: &'a Path,
    timeout: Duration,
}

fn run_peer(
    cfg: &Config,
    peer: Peer<'_>,
    source: &Dovecot,
    target: &Dovecot,
    users: &[String],
) -> Result<PeerRun, KitError> {
    let window = cfg.cpu_window(&[("source", source), ("target", target)]);
    let mut w = watched(
        Path::new("/usr/bin/xargs"),
        peer.args,
        &[],
        Some(peer.list),
        peer.log,
        peer.timeout,
        &OnTimeout {
            exe: peer.tool,
            stall: None,
            dump: None,
        },
    )?;
    w.account(window);
    let name = peer
        .tool
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    println!(
        "  {:<24} {:>8.2} s ({:.3} s/mailbox)  RSS {:>6.1} MB (largest {name})  {}",
        peer.label,
        w.wall,
        w.wall / users.len() as f64,
        w.rss_kb as f64 / 1024.0,
        w.verdict()
    );
    print_cpu(&w);
    // A peer may exit non-zero when one user had trouble (mbsync does); the verifier
    // still says what arrived, so it is the judge.
    let verdict = if w.hang.is_none() {
        let v = verify_all(source, target, users);
        println!("    verifier: {}", v.describe());
        for e in v.examples.iter().take(3) {
            println!("      {e}");
        }
        Some(v)
    } else {
        None
    };
    Ok(PeerRun {
        label: peer.label,
        watched: w,
        verdict,
    })
}

// ---------------------------------------------------------------------------------------
// mbsync: one process per user, 4 at once

/// The other peer: isync's mbsync, one channel per user in one configuration, four users
/// at once with xargs (`xargs -P4 -I{} mbsync -c mbsyncrc {}`), over IMAPS on both sides:
/// the user's own login on the source, Dovecot's master user on the target, as imapmirror
/// logs in. mbsync is never exact (it adds an `X-TUID:` header to every message it
/// copies); the verifier's differences are reported, not judged.
fn mbsync_run(
    cfg: &Config,
    label: String,
    source: &Dovecot,
    users: &[String],
    timeout: Duration,
) -> Result<PeerRun, KitError> {
    let target = server("target-mbsync", Layout::Fs, users)?;
    let state = target.dir().join("mbsync-state");
    let mut rc = String::new();
    let mut channels = Vec::with_capacity(users.len());
    for (i, user) in users.iter().enumerate() {
        let channel = format!("u{i:04}");
        let channel_state = state.join(&channel);
        std::fs::create_dir_all(&channel_state)
            .map_err(|e| KitError::file("create", &channel_state, e))?;
        let _ = write!(
            rc,
            "IMAPAccount s{channel}\nHost {SERVER_NAME}\nPort {sp}\nUser {user}\nPass {pw}\n\
             SSLType IMAPS\nCertificateFile {sca}\nAuthMechs LOGIN\n\n\
             IMAPStore s{channel}\nAccount s{channel}\n\n\
             IMAPAccount t{channel}\nHost {SERVER_NAME}\nPort {tp}\nUser {user}*{MASTER_USER}\n\
             Pass {MASTER_PASSWORD}\nSSLType IMAPS\nCertificateFile {tca}\nAuthMechs LOGIN\n\n\
             IMAPStore t{channel}\nAccount t{channel}\n\n\
             Channel {channel}\nFar :s{channel}:\nNear :t{channel}:\nPatterns *\nSync Pull\n\
             Create Near\nRemove None\nExpunge None\nCopyArrivalDate yes\nSyncState {st}/\n\n",
            sp = source.tls_addr().port(),
            pw = password(i),
            sca = source.ca_file().display(),
            tp = target.tls_addr().port(),
            tca = target.ca_file().display(),
            st = channel_state.display(),
        );
        channels.push(channel);
    }
    let conf = target.dir().join("mbsyncrc");
    write(&conf, rc.as_bytes())?;
    let list = target.dir().join("mbsync.channels");
    write(&list, channels.join("\n").as_bytes())?;
    let mbsync = resolve_program(Path::new("mbsync"));
    let args: Vec<String> = vec![
        "-P".to_owned(),
        PEER_PARALLEL.to_owned(),
        "-I{}".to_owned(),
        mbsync.display().to_string(),
        "-q".to_owned(),
        "-c".to_owned(),
        conf.display().to_string(),
        "{}".to_owned(),
    ];
    let log = cfg.out.join(format!("{label}.log"));
    let peer = Peer {
        label,
        tool: &mbsync,
        args: &args,
        list: &list,
        log: &log,
        timeout,
    };
    run_peer(cfg, peer, source, &target, users)
}

// ---------------------------------------------------------------------------------------
// The phases

struct PhaseA {
    mailboxes: usize,
    messages: usize,
    bytes: u64,
    runs: Vec<ImapmirrorRun>,
    /// Over plain IMAP, each right after the TLS run of the same number.
    plain: Vec<ImapmirrorRun>,
    straced: Option<ImapmirrorRun>,
    dsync: Vec<PeerRun>,
    mbsync: Vec<PeerRun>,
}

impl PhaseA {
    fn all_ok(&self) -> bool {
        self.runs
            .iter()
            .chain(&self.plain)
            .chain(&self.straced)
            .all(ImapmirrorRun::ok)
    }
}

struct PhaseB {
    mailboxes: usize,
    messages: usize,
    bytes: u64,
    run: ImapmirrorRun,
    dsync: PeerRun,
}

impl PhaseB {
    fn all_ok(&self) -> bool {
        self.run.ok()
    }
}

fn seed(
    label: &str,
    users: &[String],
    messages: usize,
    seed_base: u64,
) -> Result<(Dovecot, usize, u64), KitError> {
    let source = server(label, Layout::MaildirPlusPlus, users)?;
    let spec = |i: usize| CorpusSpec::realistic(seed_base + i as u64).with_messages(messages);
    let folders = Corpus::generate(spec(0)).folders().to_vec();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let report = source.seed_many(&names, &folders, |i, _| -> Vec<SeedMessage> {
        Corpus::generate(spec(i)).messages().collect()
    })?;
    println!(
        "seeded {}: {} mailboxes × {} folders, {} messages, {:.1} MB (files {:.1} s, force-resync {:.1} s)",
        label,
        report.users,
        report.folders_per_user,
        report.messages,
        report.bytes as f64 / 1e6,
        (report.write_time).as_secs_f64(),
        report.index_time.as_secs_f64()
    );
    Ok((source, report.messages, report.bytes))
}

fn phase_a(cfg: &Config) -> Result<PhaseA, KitError> {
    println!(
        "\n== phase A: {} mailboxes × {} messages",
        cfg.mailboxes, cfg.messages
    );
    let users: Vec<String> = (0..cfg.mailboxes).map(|i| user_name("a", i)).collect();
    let (source, messages, bytes) = seed("source-a", &users, cfg.messages, SEED)?;
    let spec = |label: String, transport: Transport, strace: bool| RunSpec {
        label,
        transport,
        strace,
        no_change: 0,
        serve: false,
        timeout: cfg.timeout,
        source: &source,
        users: &users,
    };
    let mut a = PhaseA {
        mailboxes: users.len(),
        messages,
        bytes,
        runs: Vec::new(),
        plain: Vec::new(),
        straced: None,
        dsync: Vec::new(),
        mbsync: Vec::new(),
    };
    for r in 1..=cfg.runs {
        let run = imapmirror_run(cfg, &spec(format!("A-run-{r:02}"), Transport::Tls, false))?;
        a.runs.push(run);
        if r <= cfg.dsync_runs {
            a.dsync.push(dsync_run(
                cfg,
                format!("A-dsync-{r:02}"),
                &source,
                &users,
                cfg.timeout * 3,
            )?);
        }
        if r <= cfg.mbsync_runs {
            a.mbsync.push(mbsync_run(
                cfg,
                format!("A-mbsync-{r:02}"),
                &source,
                &users,
                cfg.timeout * 3,
            )?);
        }
        if r <= cfg.plain_runs {
            a.plain.push(imapmirror_run(
                cfg,
                &spec(format!("A-plain-{r:02}"), Transport::Plain, false),
            )?);
        }
    }
    if cfg.strace_run {
        a.straced = Some(imapmirror_run(
            cfg,
            &spec("A-strace".to_owned(), Transport::Tls, true),
        )?);
    }
    if let Some(counts) = a.straced.as_ref().and_then(|r| r.fsyncs.as_ref()) {
        println!("    strace -f -c: {counts:?}");
    }
    Ok(a)
}

/// `BENCH_EMPTIED`: leaves each named folder of every user emptied (UIDs given out, no
/// message left), the shape a real mailbox's Trash and Junk have; every user's INBOX is
/// copied there and expunged, one doveadm call each for all users.
fn empty_folders(source: &Dovecot) -> Result<(), KitError> {
    let folders = std::env::var("BENCH_EMPTIED").unwrap_or_default();
    for folder in folders.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        source.doveadm(&["copy", "-A", folder, "mailbox", "INBOX", "all"])?;
        source.doveadm(&["expunge", "-A", "mailbox", folder, "all"])?;
        println!("emptied {folder} of every mailbox (INBOX copied there, then expunged)");
    }
    Ok(())
}

fn phase_b(cfg: &Config) -> Result<PhaseB, KitError> {
    println!(
        "\n== phase B: {} mailboxes × {SMALL_MESSAGES} messages",
        cfg.small_users
    );
    let users: Vec<String> = (0..cfg.small_users).map(|i| user_name("b", i)).collect();
    let (source, messages, bytes) = seed("source-b", &users, SMALL_MESSAGES, SEED + 100_000)?;
    empty_folders(&source)?;
    let timeout = Duration::from_secs(300 + cfg.small_users as u64 / 2);
    let run = imapmirror_run(
        cfg,
        &RunSpec {
            label: "B-initial".to_owned(),
            transport: Transport::Tls,
            strace: false,
            no_change: cfg.no_change,
            serve: cfg.no_change > 0,
            timeout,
            source: &source,
            users: &users,
        },
    )?;
    let dsync = dsync_run(cfg, "B-dsync".to_owned(), &source, &users, timeout * 3)?;
    Ok(PhaseB {
        mailboxes: users.len(),
        messages,
        bytes,
        run,
        dsync,
    })
}

// ---------------------------------------------------------------------------------------
// The summary

#[derive(Debug, Clone, Copy)]
struct Stats {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn stats(mut v: Vec<f64>) -> Option<Stats> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stats {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

fn cell(s: Option<Stats>, decimals: usize) -> String {
    match s {
        None => "–".to_owned(),
        Some(s) if s.n == 1 => format!("{:.*}", decimals, s.median),
        Some(s) => format!(
            "{:.*} ({:.*}–{:.*})",
            decimals, s.median, decimals, s.min, decimals, s.max
        ),
    }
}

fn summary(cfg: &Config, a: &PhaseA, b: &PhaseB) -> String {
    let mut o = String::new();
    let finished: Vec<&ImapmirrorRun> = a.runs.iter().filter(|r| r.initial.watched.ok()).collect();
    let hung: Vec<&ImapmirrorRun> = a
        .runs
        .iter()
        .chain(&a.plain)
        .chain(&a.straced)
        .chain([&b.run])
        .filter(|r| {
            r.initial.watched.hang.is_some() || r.no_change.iter().any(|p| p.watched.hang.is_some())
        })
        .collect();
    let failed = a
        .runs
        .iter()
        .chain(&a.plain)
        .chain(&a.straced)
        .chain([&b.run])
        .filter(|r| !r.ok())
        .count();
    let not_exact: usize = a
        .runs
        .iter()
        .chain(&a.plain)
        .chain(&a.straced)
        .chain([&b.run])
        .filter_map(|r| r.verdict.as_ref())
        .map(|v| v.not_exact)
        .sum();
    let wall = |r: &&ImapmirrorRun| r.initial.watched.wall;
    let im_wall = stats(finished.iter().map(wall).collect());
    let per_mailbox = stats(
        finished
            .iter()
            .map(|r| r.initial.watched.wall / a.mailboxes as f64)
            .collect(),
    );
    let rss = stats(
        finished
            .iter()
            .map(|r| r.initial.watched.rss_kb as f64 / 1024.0)
            .collect(),
    );
    let written = stats(
        finished
            .iter()
            .map(|r| r.initial.watched.written as f64 / 1e6)
            .collect(),
    );
    let state = stats(
        finished
            .iter()
            .map(|r| r.initial.state_bytes as f64 / 1e6)
            .collect(),
    );
    let dsync_ok: Vec<&PeerRun> = a.dsync.iter().filter(|d| d.watched.ok()).collect();
    let ds_wall = stats(dsync_ok.iter().map(|d| d.watched.wall).collect());
    let ds_per = stats(
        dsync_ok
            .iter()
            .map(|d| d.watched.wall / a.mailboxes as f64)
            .collect(),
    );
    let ds_rss = stats(
        dsync_ok
            .iter()
            .map(|d| d.watched.rss_kb as f64 / 1024.0)
            .collect(),
    );
    let ratio = |x: Option<Stats>, y: Option<Stats>| match (x, y) {
        (Some(x), Some(y)) if y.median > 0.0 => format!("{:.2}×", x.median / y.median),
        _ => "–".to_owned(),
    };
    let peer_verdicts = |runs: &[&PeerRun]| {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        let mut exact = 0;
        let mut total = 0;
        for v in runs.iter().filter_map(|d| d.verdict.as_ref()) {
            exact += v.exact;
            total += v.exact + v.not_exact;
            for (k, n) in &v.kinds {
                *kinds.entry(k.clone()).or_default() += n;
            }
        }
        let kinds = kinds
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(", ");
        if kinds.is_empty() {
            format!("{exact} of {total} mailboxes exact")
        } else {
            format!("{exact} of {total} mailboxes exact; differences: {kinds}")
        }
    };

    let _ = writeln!(
        o,
        "### Many mailboxes: phase A, {} mailboxes × {} messages ({} messages, {:.0} MB), TLS\n",
        a.mailboxes,
        cfg.messages,
        a.messages,
        a.bytes as f64 / 1e6
    );
    let _ = writeln!(
        o,
        "`scripts/bench-many-mailboxes {} {}` — one batch, `batch start --wait` at default settings, \
         fresh target and state directory per run; median (min–max) over the {} run(s) that finished; \
         dsync = `xargs -P4 doveadm backup -R -u USER imapc:` over IMAPS.\n",
        cfg.runs,
        cfg.small_users,
        finished.len()
    );
    let _ = writeln!(o, "| figure | imapmirror | dsync | imapmirror / dsync |");
    let _ = writeln!(o, "|---|---|---|---|");
    let _ = writeln!(
        o,
        "| runs | {} (hung: {}; hung, failed or not exact: {}) | {} | |",
        a.runs.len(),
        a.runs
            .iter()
            .filter(|r| r.initial.watched.hang.is_some())
            .count(),
        a.runs.iter().filter(|r| !r.ok()).count(),
        a.dsync.len()
    );
    let paired = stats(
        a.runs
            .iter()
            .take(a.dsync.len())
            .filter(|r| r.initial.watched.ok())
            .map(|r| r.initial.watched.wall)
            .collect(),
    );
    let _ = writeln!(
        o,
        "| wall, s | {} | {} | {} (TLS runs 1–{}, each just before a dsync run: {}; all runs: {}) |",
        cell(im_wall, 2),
        cell(ds_wall, 2),
        ratio(paired, ds_wall),
        a.dsync.len(),
        cell(paired, 2),
        ratio(im_wall, ds_wall)
    );
    let _ = writeln!(
        o,
        "| per mailbox (wall / {}), s | {} | {} | |",
        a.mailboxes,
        cell(per_mailbox, 3),
        cell(ds_per, 3)
    );
    let _ = writeln!(
        o,
        "| peak RSS, MB | {} | {} (largest doveadm) | |",
        cell(rss, 1),
        cell(ds_rss, 1)
    );
    let _ = writeln!(
        o,
        "| written to storage by the process (%O × 512), MB | {} (its state; the mail is written by the target Dovecot) | {} (mail and indexes: doveadm writes the target's Maildirs itself) | |",
        cell(written, 1),
        cell(
            stats(
                dsync_ok
                    .iter()
                    .map(|d| d.watched.written as f64 / 1e6)
                    .collect()
            ),
            1
        )
    );
    let _ = writeln!(
        o,
        "| state directory after the run, MB | {} | | |",
        cell(state, 2)
    );
    if !a.plain.is_empty() {
        // Paired with the TLS runs of the same numbers, which ran just before them: a
        // shared machine drifts over a long bench, and the ratio should not.
        let n = a.plain.len();
        let plain = stats(
            a.plain
                .iter()
                .filter(|r| r.initial.watched.ok())
                .map(|r| r.initial.watched.wall)
                .collect(),
        );
        let tls = stats(
            a.runs
                .iter()
                .take(n)
                .filter(|r| r.initial.watched.ok())
                .map(|r| r.initial.watched.wall)
                .collect(),
        );
        let cost = match (tls, plain) {
            (Some(t), Some(p)) if p.median > 0.0 => {
                format!("TLS costs {:+.0} %", (t.median / p.median - 1.0) * 100.0)
            }
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            o,
            "| plain IMAP, after TLS runs 1–{n}, wall s | {} ({} of {n} ok; those TLS runs: {}) | | {cost} |",
            cell(plain, 2),
            a.plain.iter().filter(|r| r.initial.watched.ok()).count(),
            cell(tls, 2)
        );
    }
    if let Some(s) = &a.straced {
        let counts = s
            .fsyncs
            .as_ref()
            .map(|c| {
                c.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let total: u64 = s.fsyncs.as_ref().map_or(0, |c| c.values().sum());
        let _ = writeln!(
            o,
            "| fsync-family calls, one run under strace -f -c | {total} ({counts}; {:.1} per mailbox) | | |",
            total as f64 / a.mailboxes as f64
        );
    }
    let a_verdicts: Vec<&Verdict> = a.runs.iter().filter_map(|r| r.verdict.as_ref()).collect();
    let _ = writeln!(
        o,
        "| verifier | {} of {} mailboxes exact | {} | |",
        a_verdicts.iter().map(|v| v.exact).sum::<usize>(),
        a_verdicts
            .iter()
            .map(|v| v.exact + v.not_exact)
            .sum::<usize>(),
        peer_verdicts(&a.dsync.iter().collect::<Vec<_>>())
    );
    if !a.mbsync.is_empty() {
        let mbsync_ok: Vec<&PeerRun> = a.mbsync.iter().filter(|d| d.verdict.is_some()).collect();
        let mb_wall = stats(mbsync_ok.iter().map(|d| d.watched.wall).collect());
        let paired = stats(
            a.runs
                .iter()
                .take(a.mbsync.len())
                .filter(|r| r.initial.watched.ok())
                .map(|r| r.initial.watched.wall)
                .collect(),
        );
        let _ = writeln!(
            o,
            "\n| figure | imapmirror (TLS runs 1–{n}) | mbsync (`xargs -P4 mbsync CHANNEL`, IMAPS both sides) | imapmirror / mbsync |\n|---|---|---|---|",
            n = a.mbsync.len()
        );
        let _ = writeln!(
            o,
            "| wall, s | {} | {} (exit status: {}) | {} |",
            cell(paired, 2),
            cell(mb_wall, 2),
            a.mbsync
                .iter()
                .map(|d| d.watched.verdict())
                .collect::<Vec<_>>()
                .join(", "),
            ratio(paired, mb_wall)
        );
        let _ = writeln!(
            o,
            "| verifier | | {} (mbsync adds an X-TUID header to every message) | |",
            peer_verdicts(&mbsync_ok)
        );
    }
    cpu_table(&mut o, a);

    let _ = writeln!(
        o,
        "\n### Many mailboxes: phase B, {} mailboxes × {SMALL_MESSAGES} messages ({} messages, {:.1} MB), TLS\n",
        b.mailboxes,
        b.messages,
        b.bytes as f64 / 1e6
    );
    let _ = writeln!(o, "| figure | imapmirror | dsync | imapmirror / dsync |");
    let _ = writeln!(o, "|---|---|---|---|");
    let bw = &b.run.initial.watched;
    let dw = &b.dsync.watched;
    let _ = writeln!(
        o,
        "| initial copy, wall s | {:.2} ({}) | {:.2} ({}) | {} |",
        bw.wall,
        bw.verdict(),
        dw.wall,
        dw.verdict(),
        if bw.ok() && dw.ok() {
            format!("{:.2}×", bw.wall / dw.wall)
        } else {
            "–".to_owned()
        }
    );
    let _ = writeln!(
        o,
        "| per mailbox, s | {:.3} | {:.3} | |",
        bw.wall / b.mailboxes as f64,
        dw.wall / b.mailboxes as f64
    );
    let _ = writeln!(
        o,
        "| peak RSS, MB | {:.1} | {:.1} (largest doveadm) | |",
        bw.rss_kb as f64 / 1024.0,
        dw.rss_kb as f64 / 1024.0
    );
    let _ = writeln!(
        o,
        "| written to storage by the process, MB | {:.1} | {:.1} (mail and indexes) | |",
        bw.written as f64 / 1e6,
        dw.written as f64 / 1e6
    );
    let _ = writeln!(
        o,
        "| state directory after the initial pass, MB | {:.2} | | |",
        b.run.initial.state_bytes as f64 / 1e6
    );
    let nc = &b.run.no_change;
    let nc_ok: Vec<&Pass> = nc.iter().filter(|p| p.watched.ok()).collect();
    let _ = writeln!(
        o,
        "| no-change pass ({} of {}), wall s | {} | | |",
        nc_ok.len(),
        cfg.no_change,
        cell(stats(nc_ok.iter().map(|p| p.watched.wall).collect()), 2)
    );
    let _ = writeln!(
        o,
        "| no-change pass, per mailbox, ms | {} | | |",
        cell(
            stats(
                nc_ok
                    .iter()
                    .map(|p| p.watched.wall * 1000.0 / b.mailboxes as f64)
                    .collect()
            ),
            2
        )
    );
    let _ = writeln!(
        o,
        "| no-change pass, peak RSS MB | {} | | |",
        cell(
            stats(
                nc_ok
                    .iter()
                    .map(|p| p.watched.rss_kb as f64 / 1024.0)
                    .collect()
            ),
            1
        )
    );
    let sizes: Vec<String> = nc
        .iter()
        .map(|p| format!("{:.2}", p.state_bytes as f64 / 1e6))
        .collect();
    let growth = match (nc.first(), nc.last()) {
        (Some(first), Some(last)) => last.state_bytes as i64 - first.state_bytes as i64,
        _ => 0,
    };
    let _ = writeln!(
        o,
        "| state directory after each no-change pass, MB | {} (last − first: {:+.3} MB) | | |",
        sizes.join(", "),
        growth as f64 / 1e6
    );
    if let Some(serve) = &b.run.serve {
        let _ = writeln!(
            o,
            "| `serve --http` holding the batch: a no-change pass it runs, s; its peak RSS, MB | {:.2} ({}); {} | | |",
            serve.pass.wall,
            serve.pass.verdict(),
            serve
                .peak_rss_kb
                .map_or("–".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
        );
        for (path, took) in &serve.views {
            let _ = writeln!(
                o,
                "| `GET {path}` from serve, s | {} | | |",
                took.map_or("FAILED".to_owned(), |t| format!("{t:.2}"))
            );
        }
    }
    let _ = writeln!(
        o,
        "| verifier | {} | {} | |",
        b.run
            .verdict
            .as_ref()
            .map_or("not run".to_owned(), Verdict::describe),
        peer_verdicts(&[&b.dsync])
    );

    let _ = writeln!(
        o,
        "\nimapmirror runs that hung: {} (timeout {} s in phase A{}); runs not ok: {failed}; mailboxes not exact: {not_exact}.",
        hung.len(),
        cfg.timeout.as_secs(),
        cfg.stall.map_or(String::new(), |s| format!(
            ", or {} s without CPU or I/O",
            s.as_secs()
        ))
    );
    for r in &hung {
        for p in std::iter::once(&r.initial).chain(&r.no_change) {
            if let Some(h) = &p.watched.hang {
                let _ = writeln!(
                    o,
                    "- {}: {h}; dump {}",
                    p.label,
                    p.watched
                        .dump
                        .as_ref()
                        .map_or("–".to_owned(), |d| d.display().to_string())
                );
            }
        }
    }
    let _ = writeln!(o, "\nPer-run walls (phase A, s):");
    let walls: Vec<String> = a
        .runs
        .iter()
        .map(|r| {
            if r.initial.watched.hang.is_some() {
                "HANG".to_owned()
            } else {
                format!("{:.2}", r.initial.watched.wall)
            }
        })
        .collect();
    let _ = writeln!(o, "{}", walls.join(", "));
    let transports: Vec<String> = a
        .runs
        .iter()
        .chain(&a.plain)
        .filter(|r| r.server_trouble > 0)
        .map(|r| format!("{} ({:?}): {}", r.label, r.transport, r.server_trouble))
        .collect();
    if !transports.is_empty() {
        let _ = writeln!(
            o,
            "\nRuns during which Dovecot logged limit or fatal lines: {}",
            transports.join("; ")
        );
    }
    let _ = writeln!(
        o,
        "\ndsync runs: {}",
        a.dsync
            .iter()
            .chain([&b.dsync])
            .map(|d| format!(
                "{} {:.2} s {}",
                d.label,
                d.watched.wall,
                d.watched.verdict()
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    o
}

/// Where phase A's CPU time went: core-seconds by process for each tool, the median over
/// its runs of each row, then the sum and what was left idle of 2 cores × wall.
fn cpu_table(o: &mut String, a: &PhaseA) {
    let columns: Vec<(&str, Vec<&Watched>)> = <[(&str, Vec<&Watched>); 4]>::into_iter([
        (
            "imapmirror, TLS",
            a.runs.iter().map(|r| &r.initial.watched).collect(),
        ),
        (
            "imapmirror, plain IMAP",
            a.plain.iter().map(|r| &r.initial.watched).collect(),
        ),
        ("dsync", a.dsync.iter().map(|d| &d.watched).collect()),
        ("mbsync", a.mbsync.iter().map(|d| &d.watched).collect()),
    ])
    .map(|(name, runs)| {
        let with_cpu: Vec<&Watched> = runs
            .into_iter()
            .filter(|w| w.ok() && w.cpu.is_some())
            .collect();
        (name, with_cpu)
    })
    .filter(|(_, runs)| !runs.is_empty())
    .collect();
    if columns.is_empty() {
        return;
    }
    let mut rows: Vec<(String, String)> = columns
        .iter()
        .flat_map(|(_, runs)| runs.iter())
        .filter_map(|w| w.cpu.as_ref())
        .flat_map(|c| {
            c.by_process
                .iter()
                .filter(|(_, s)| **s >= 0.05)
                .map(|(k, _)| k.clone())
        })
        .collect();
    rows.sort();
    rows.dedup();
    let median_of = |runs: &[&Watched], f: &dyn Fn(&Watched) -> f64| {
        stats(runs.iter().map(|w| f(w)).collect()).map_or(0.0, |s| s.median)
    };
    // A row only where some tool's median is worth a digit.
    rows.retain(|(role, command)| {
        columns.iter().any(|(_, runs)| {
            median_of(runs, &|w: &Watched| {
                w.cpu.as_ref().map_or(0.0, |c| c.of(role, Some(command)))
            }) >= 0.05
        })
    });
    let _ = writeln!(
        o,
        "\nCPU by process, core-seconds (median of the runs; by command from BSD process accounting, by role exactly from what the parents reaped; see cpu_accounting.rs):\n"
    );
    let header: Vec<String> = columns
        .iter()
        .map(|(name, runs)| format!("{name} ({} runs)", runs.len()))
        .collect();
    let _ = writeln!(o, "| process | {} |", header.join(" | "));
    let _ = writeln!(o, "|---|{}", "---|".repeat(columns.len()));
    let line = |label: &str, f: &dyn Fn(&Watched) -> f64| -> String {
        let cells: Vec<String> = columns
            .iter()
            // + 0.0: the median of no time at all prints as 0.0, not -0.0.
            .map(|(_, runs)| format!("{:.1}", median_of(runs, f) + 0.0))
            .collect();
        format!("| {label} | {} |", cells.join(" | "))
    };
    for (role, command) in &rows {
        let cpu_of = |w: &Watched| w.cpu.as_ref().map_or(0.0, |c| c.of(role, Some(command)));
        let _ = writeln!(o, "{}", line(&format!("{role} {command}"), &cpu_of));
    }
    let total = |w: &Watched| w.cpu.as_ref().map_or(0.0, CpuUse::total);
    let _ = writeln!(
        o,
        "{}",
        line(
            "all processes above (the accounting file: 10 ms a process at most lost)",
            &total
        )
    );
    // Each role exactly (what the parents reaped), the split above being within it.
    let mut roles: Vec<String> = columns
        .iter()
        .flat_map(|(_, runs)| runs.iter())
        .filter_map(|w| w.cpu.as_ref())
        .flat_map(|c| c.roles.keys().cloned())
        .collect();
    roles.sort();
    roles.dedup();
    for role in &roles {
        let exact = |w: &Watched| w.cpu.as_ref().map_or(0.0, |c| c.role(role));
        let _ = writeln!(
            o,
            "{}",
            line(&format!("{role}, all its processes (exact)"), &exact)
        );
    }
    let exact = |w: &Watched| w.cpu.as_ref().map_or(0.0, CpuUse::roles_total);
    let machine = |w: &Watched| w.cpu.as_ref().and_then(|c| c.machine).unwrap_or(0.0);
    let _ = writeln!(o, "{}", line("**all processes (exact)**", &exact));
    let _ = writeln!(
        o,
        "{}",
        line("all CPUs busy (/proc/stat), core-s", &machine)
    );
    let _ = writeln!(
        o,
        "{}",
        line(
            "of which in no process (softirq, kernel threads, other programs)",
            &|w: &Watched| (machine(w) - exact(w)).max(0.0)
        )
    );
    let _ = writeln!(o, "{}", line("wall, s", &|w: &Watched| w.wall));
    let _ = writeln!(
        o,
        "{}",
        line("idle of 2 cores × wall", &|w: &Watched| (2.0 * w.wall
            - machine(w))
        .max(0.0))
    );
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), KitError> {
    std::fs::write(path, bytes).map_err(|e| KitError::file("write", path.to_path_buf(), e))
}
