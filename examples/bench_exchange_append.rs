//! The fast path without MULTIAPPEND (Exchange Online has none): one generated mailbox
//! migrated from a Maildir++ Dovecot into a fresh `LAYOUT=fs` Dovecot, directly (the
//! target announces MULTIAPPEND and LITERAL+) and through the kit's Exchange-like relay
//! with throttling and drops off (tests/support/exchange_like.rs: Exchange's capabilities,
//! so no MULTIAPPEND: pipelined single APPENDs with LITERAL+), interleaved, each run on a
//! fresh source and target and judged exact by the kit's verifier.
//!
//! Usage: `IMAPMIRROR_BIN=target/release/imapmirror bench_exchange_append [MESSAGES=5000]
//! [ROUNDS=3]`; prints each run and the medians.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use support::exchange_like::{ExchangeLike, ExchangeLikeConfig};
use support::{
    Corpus, CorpusSpec, DOVECOT_LONG_KEYWORDS, Dovecot, KitError, Layout, MASTER_PASSWORD,
    MASTER_USER, verify_user,
};

const USER: &str = "bench@example.test";
const PASSWORD: &str = "bench-Secret-1";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_exchange_append: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn run() -> Result<(), KitError> {
    let messages = arg(1, 5000);
    let rounds = arg(2, 3);
    let bin = std::env::var("IMAPMIRROR_BIN").unwrap_or_else(|_| "imapmirror".to_owned());
    let corpus = Corpus::generate(CorpusSpec::realistic(2026).with_messages(messages));
    let mut times: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let modes = [
        (Mode::Direct, "Dovecot direct (MULTIAPPEND)"),
        (Mode::RelayDovecotCaps, "relay, Dovecot caps (MULTIAPPEND)"),
        (Mode::RelayExchange, "relay, Exchange caps (no MULTIAPPEND)"),
    ];
    for round in 1..=rounds {
        for (i, (mode, label)) in modes.into_iter().enumerate() {
            let secs = one_run(&bin, &corpus, mode)?;
            println!(
                "round {round} {label:38} {secs:7.2} s  {:7.0} msg/s",
                messages as f64 / secs
            );
            times[i].push(secs);
        }
    }
    let m: Vec<f64> = times.iter().map(|t| median(t.clone())).collect();
    println!(
        "medians of {rounds}: direct {:.2} s, relay with MULTIAPPEND {:.2} s, relay without \
         {:.2} s (without/with through the relay {:.2})",
        m[0],
        m[1],
        m[2],
        m[2] / m[1]
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Direct,
    RelayDovecotCaps,
    RelayExchange,
}

fn one_run(bin: &str, corpus: &Corpus, mode: Mode) -> Result<f64, KitError> {
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
    let config = ExchangeLikeConfig {
        dovecot_capabilities: mode == Mode::RelayDovecotCaps,
        ..ExchangeLikeConfig::polite()
    };
    let relay = ExchangeLike::start(target.plain_addr(), config)
        .map_err(|e| fail(format!("the relay: {e}")))?;
    let target_port = if mode != Mode::Direct {
        relay.addr().port()
    } else {
        target.plain_addr().port()
    };
    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let path = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(path("admin.pw"), MASTER_PASSWORD).map_err(|e| fail(e.to_string()))?;
    std::fs::write(
        path("users.csv"),
        format!("EmailAddress,UserName,Password\n{USER},{USER},{PASSWORD}\n"),
    )
    .map_err(|e| fail(e.to_string()))?;
    let (sp, tp, pw, csv) = (
        source.plain_addr().port().to_string(),
        target_port.to_string(),
        path("admin.pw"),
        path("users.csv"),
    );
    let state = path("state");
    let cli = |args: &[&str]| -> Result<(), KitError> {
        let out = Command::new(bin)
            .args(args)
            .env("IMAPMIRROR_STATE_DIR", &state)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| fail(format!("{bin}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(fail(format!(
                "{args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    };
    for args in [
        vec![
            "endpoint",
            "add",
            "src",
            "--host",
            "127.0.0.1",
            "--port",
            &sp,
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
            &tp,
            "--security",
            "none",
            "--no-test",
            "--admin-user",
            MASTER_USER,
            "--admin-password-file",
            &pw,
            "--admin-format",
            "dovecot",
        ],
        vec![
            "batch", "add", "b", "--csv", &csv, "--source", "src", "--target", "dst",
        ],
    ] {
        cli(&args)?;
    }
    let started = Instant::now();
    cli(&["batch", "start", "b", "--wait"])?;
    let secs = started.elapsed().as_secs_f64();
    let report = verify_user(&source, &target, USER)?;
    if !report.is_equal() {
        return Err(fail("the migrated mailbox is not exact"));
    }
    Ok(secs)
}

fn fail(what: impl Into<String>) -> KitError {
    KitError::Environment {
        what: what.into(),
        remedy: "see the message".into(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
