//! The end-to-end migration against the test kit: imapmirror's own binary migrates one
//! generated mailbox from a Maildir++ Dovecot into a `LAYOUT=fs` Dovecot, both private kit
//! instances at the default `mail_fsync = optimized`, plain IMAP on 127.0.0.1.
//!
//! `cargo bench --bench migration` (`MIGRATION_BENCH_MESSAGES`, 2,154 by default: the
//! corpus size of BENCHMARKS.md's Cyrus and Courier tables). Two benches:
//! - `migration_initial_pass`: each iteration gets a fresh source seeded with the same
//!   realistic corpus (seed 2026), a fresh target and a fresh state directory; the setup
//!   commands (`endpoint add`, `batch add`) are not timed, `imapmirror batch start bench
//!   --wait` is. The kit's exact verifier checks the target after every pass, untimed;
//! - `migration_no_change_pass`: `imapmirror batch sync bench --wait` on one migrated pair.
//!
//! It needs the kit's Dovecot (scripts/install-deps); without it the bench says so and
//! skips. The mbsync comparison stays in examples/bench_migration.rs
//! (`scripts/bench-migration`), which also measures peak RSS and the +1 % pass.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use support::{
    Corpus, CorpusSpec, DOVECOT_LONG_KEYWORDS, Dovecot, KitError, Layout, MASTER_PASSWORD,
    MASTER_USER, Verifier, verify_users,
};

const USER: &str = "bench@example.test";
const PASSWORD: &str = "bench-Secret-1";
const SEED: u64 = 2026;
const BIN: &str = env!("CARGO_BIN_EXE_imapmirror");

/// A fresh source holding the corpus, a fresh target, and a state directory with the
/// endpoints and the one-mailbox batch already added.
struct Pair {
    source: Dovecot,
    target: Dovecot,
    work: tempfile::TempDir,
}

impl Pair {
    fn start(corpus: &Corpus) -> Result<Pair, KitError> {
        let source = Dovecot::builder()
            .label("source")
            .layout(Layout::MaildirPlusPlus)
            .extra_config(DOVECOT_LONG_KEYWORDS)
            .user(USER, PASSWORD)
            .start()?;
        source.seed(USER, corpus.folders(), corpus.messages())?;
        let target = Dovecot::builder()
            .label("target")
            .layout(Layout::Fs)
            .extra_config(DOVECOT_LONG_KEYWORDS)
            .user(USER, PASSWORD)
            .start()?;
        let work = tempfile::tempdir()
            .map_err(|e| KitError::file("create a temp dir in", std::env::temp_dir(), e))?;
        let pair = Pair {
            source,
            target,
            work,
        };
        let csv = pair.path("users.csv");
        let admin_pw = pair.path("target-admin.pw");
        write(
            &csv,
            format!("EmailAddress,UserName,Password\n{USER},{USER},{PASSWORD}\n").as_bytes(),
        )?;
        write(&admin_pw, MASTER_PASSWORD.as_bytes())?;
        let (sp, tp) = (
            pair.source.plain_addr().port().to_string(),
            pair.target.plain_addr().port().to_string(),
        );
        let endpoint = |name: &'static str, port: &str| {
            [
                "endpoint",
                "add",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--security",
                "none",
                "--no-test",
            ]
            .map(str::to_owned)
            .to_vec()
        };
        let mut target_args = endpoint("dst", &tp);
        target_args.extend(
            [
                "--admin-user",
                MASTER_USER,
                "--admin-password-file",
                &admin_pw.display().to_string(),
                "--admin-format",
                "dovecot",
            ]
            .map(str::to_owned),
        );
        let batch_args = [
            "batch",
            "add",
            "bench",
            "--csv",
            &csv.display().to_string(),
            "--source",
            "src",
            "--target",
            "dst",
        ]
        .map(str::to_owned)
        .to_vec();
        for args in [endpoint("src", &sp), target_args, batch_args] {
            pair.imapmirror(&args, &format!("setup-{}", args[1]))?;
        }
        Ok(pair)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Runs imapmirror on this pair's state directory; returns its wall time. Its output
    /// goes to a log in the work directory, whose tail is the error if it fails.
    fn imapmirror(&self, args: &[String], label: &str) -> Result<Duration, KitError> {
        let log = self.path(&format!("{label}.log"));
        let out =
            std::fs::File::create(&log).map_err(|e| KitError::file("create", log.clone(), e))?;
        let err = out
            .try_clone()
            .map_err(|e| KitError::file("reopen", log.clone(), e))?;
        let started = Instant::now();
        let status = Command::new(BIN)
            .args(args)
            .env("IMAPMIRROR_STATE_DIR", self.path("state"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| KitError::Command {
                command: format!("{BIN} {}", args.join(" ")),
                detail: e.to_string(),
            })?;
        let took = started.elapsed();
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(KitError::Command {
                command: format!("imapmirror {}", args.join(" ")),
                detail: format!("exited with {status}:\n{}", tail.join("\n")),
            });
        }
        Ok(took)
    }

    /// One `batch start|sync bench --wait`, timed; the target is then verified, untimed.
    fn pass(&self, verb: &str) -> Duration {
        let args = ["batch", verb, "bench", "--wait"].map(str::to_owned);
        let took = self
            .imapmirror(&args, &format!("batch-{verb}"))
            .unwrap_or_else(|e| panic!("imapmirror batch {verb}: {e}"));
        let report = verify_users(&self.source, USER, &self.target, USER, &Verifier::new())
            .unwrap_or_else(|e| panic!("verifying the target: {e}"));
        assert!(
            report.is_equal(),
            "imapmirror's target differs from the source after `batch {verb}`:\n{report}"
        );
        took
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), KitError> {
    std::fs::write(path, bytes).map_err(|e| KitError::file("write", path.to_path_buf(), e))
}

/// Whether the kit can start a Dovecot here; the reason why not otherwise.
fn kit_available() -> Result<(), KitError> {
    Dovecot::builder().label("probe").start().map(drop)
}

fn main() {
    // `cargo test --benches` runs benches with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    match kit_available() {
        Ok(()) => {}
        Err(e @ KitError::Environment { .. }) => {
            println!("benches/migration: skipped, the kit cannot start Dovecot here: {e}");
            return;
        }
        Err(e) => panic!("benches/migration: starting the kit's Dovecot failed: {e}"),
    }
    let messages = std::env::var("MIGRATION_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(if quick { 100 } else { 2_154 });
    let corpus = Corpus::generate(CorpusSpec::realistic(SEED).with_messages(messages));
    println!(
        "migration: {messages} realistic messages (seed {SEED}), Dovecot Maildir++ -> \
         Dovecot LAYOUT=fs, plain IMAP on 127.0.0.1; binary {BIN}"
    );

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("migration_initial_pass");
    group.throughput(Throughput::Elements(messages as u64));
    // An iteration is seconds long (fresh servers, seeding, the pass): one per sample.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("dovecot_to_dovecot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pair = Pair::start(&corpus)
                    .unwrap_or_else(|e| panic!("starting and seeding the servers: {e}"));
                total += pair.pass("start");
            }
            total
        })
    });
    group.finish();

    let mut group = c.benchmark_group("migration_no_change_pass");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    // Started and migrated once, on first use: criterion calls the closure for every sample.
    let mut migrated: Option<Pair> = None;
    group.bench_function("dovecot_to_dovecot", |b| {
        let pair = migrated.get_or_insert_with(|| {
            let pair = Pair::start(&corpus)
                .unwrap_or_else(|e| panic!("starting and seeding the servers: {e}"));
            pair.pass("start");
            pair
        });
        b.iter_custom(|iters| (0..iters).map(|_| pair.pass("sync")).sum())
    });
    group.finish();
    c.final_summary();
}
