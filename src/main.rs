//! `imapmirror`: the command line. Argument parsing, progress display and output formats
//! only; the work is done by the engine and proxy crates.
#![forbid(unsafe_code)]

/// `print!` that ends the process quietly when stdout is a closed pipe (`... | head`)
/// instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => { $crate::text_output::emit(&format!($($arg)*)) };
}

/// `println!`, likewise.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::text_output::emit(&format!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` that never panics (a closed stderr loses the line, nothing else).
macro_rules! note {
    ($($arg:tt)*) => { $crate::text_output::note(&format!($($arg)*)) };
}

mod cli_args;
mod commands;
mod duration_arg;
mod exit_status;
mod live_progress;
mod log_setup;
mod metrics_export;
mod plan_command;
mod progress_display;
mod proxy_command;
mod state_access;
mod status_http;
mod status_page;
mod text_output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli_args::{Cli, Command};

fn main() -> ExitCode {
    // Usage errors exit with 2, as CLI.md wants (clap's own convention).
    let cli = Cli::parse();
    // Both TLS users (IMAP, webhooks) bring their own provider; this covers any library
    // that asks rustls for the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base = match cli.command {
        Command::Serve(_) | Command::Proxy(_) => tracing::Level::INFO,
        _ => tracing::Level::WARN,
    };
    log_setup::init(cli.log_format, cli.verbose, cli.quiet, base);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            note!(
                "imapmirror: The async runtime could not start ({e}); check the process limits (threads, file descriptors)."
            );
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Passes in flight were stopped by now; do not wait for stray tasks.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            note!("imapmirror: {}", exit_status::sentence(&e));
            ExitCode::from(exit_status::code(&e) as u8)
        }
    }
}
