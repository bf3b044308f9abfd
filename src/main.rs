//! `imapmirror`: the command line. Argument parsing, progress display and output formats
//! only; the work is done by the engine and proxy crates.

use clap::Parser;

/// Mirror mailboxes from one IMAP server to another: batches, incremental passes,
/// byte-exact, resumable.
#[derive(Debug, Parser)]
#[command(name = "imapmirror", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
