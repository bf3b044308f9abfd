//! The interim demo behind `scripts/demo`: two private Dovecot servers on 127.0.0.1, the
//! source seeded with the test kit's corpus of awkward mail, and a side-by-side account of
//! what each server holds, read back over IMAP.
//!
//! It migrates nothing yet: the engine and batch issues turn it into a real migration run
//! through the `imapmirror` binary. Until then it shows the two servers a migration will
//! run between, and the verifier's verdict on them (different, as they should be).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::ExitCode;

use support::{
    Corpus, CorpusSpec, DEFAULT_USER, Dovecot, KitError, Layout, MailboxSnapshot, verify_user,
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), KitError> {
    println!("Starting two private Dovecot servers on 127.0.0.1 ...");
    let source = Dovecot::builder()
        .label("source")
        .layout(Layout::MaildirPlusPlus)
        .start()?;
    let target = Dovecot::builder().label("target").layout(Layout::Fs).start()?;
    for server in [&source, &target] {
        println!(
            "  {:<6} {} layout, separator '{}', IMAP+STARTTLS {}, IMAPS {}",
            server.label(),
            layout_name(server.layout()),
            server.separator(),
            server.plain_addr(),
            server.tls_addr(),
        );
    }

    let corpus = Corpus::generate(CorpusSpec::small(2026));
    println!(
        "\nSeeding {} messages for {DEFAULT_USER} into the source ...",
        corpus.len()
    );
    let report = source.seed(DEFAULT_USER, corpus.folders(), corpus.messages())?;
    println!(
        "  {} folders, {} messages, {} bytes: files written in {:.2?}, indexed in {:.2?}",
        report.folders, report.messages, report.bytes, report.write_time, report.index_time
    );

    for server in [&source, &target] {
        let snapshot = MailboxSnapshot::read(&server.master_endpoint(DEFAULT_USER)?)?;
        print_snapshot(server.label(), &snapshot);
    }

    let verdict = verify_user(&source, &target, DEFAULT_USER)?;
    println!(
        "\nVerifier, source against target: {} difference(s) — nothing has been migrated yet.",
        verdict.differences.len()
    );
    for difference in verdict.differences.iter().take(5) {
        println!("  - {difference}");
    }
    if verdict.differences.len() > 5 {
        println!("  ... and {} more", verdict.differences.len() - 5);
    }
    println!("\nStopping both servers.");
    Ok(())
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::MaildirPlusPlus => "Maildir++",
        Layout::Fs => "LAYOUT=fs",
    }
}

fn print_snapshot(label: &str, snapshot: &MailboxSnapshot) {
    println!(
        "\n{label}: {} folder(s), {} message(s) for {}",
        snapshot.folders.len(),
        snapshot.message_count(),
        snapshot.login
    );
    println!(
        "  {:<34} {:>8} {:>10}  flags and keywords",
        "folder", "messages", "bytes"
    );
    for folder in &snapshot.folders {
        let bytes: usize = folder.messages.iter().map(|m| m.size).sum();
        let mut flags: BTreeMap<&str, usize> = BTreeMap::new();
        for message in &folder.messages {
            for flag in &message.flags {
                *flags.entry(flag).or_default() += 1;
            }
        }
        let flags = flags
            .iter()
            .map(|(flag, n)| format!("{flag}×{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let name = if folder.selectable {
            folder.name.clone()
        } else {
            format!("{} (\\Noselect)", folder.name)
        };
        println!(
            "  {name:<34} {:>8} {bytes:>10}  {flags}",
            folder.messages.len()
        );
    }
}
