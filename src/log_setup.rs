//! Log lines on stderr, as text or JSON (`--log-format`), at the level `-v`/`-q` choose
//! (or `IMAPMIRROR_LOG` with tracing's filter syntax, e.g. `imapmirror_engine=debug`).

use tracing_subscriber::EnvFilter;

use crate::cli_args::LogFormat;

/// Installs the subscriber. `base` is the level without `-v`/`-q`: `warn` for commands,
/// `info` for `serve`, whose log is its output.
pub fn init(format: LogFormat, verbose: u8, quiet: bool, base: tracing::Level) {
    let level = if quiet {
        tracing::Level::ERROR
    } else {
        match (base, verbose) {
            (b, 0) => b,
            (tracing::Level::WARN, 1) | (tracing::Level::ERROR, 1) => tracing::Level::INFO,
            (_, 1) | (_, 2) => tracing::Level::DEBUG,
            _ => tracing::Level::TRACE,
        }
    };
    let filter = EnvFilter::try_from_env("IMAPMIRROR_LOG")
        .unwrap_or_else(|_| EnvFilter::new(level.as_str().to_ascii_lowercase()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Its fallback report of a failed write is an eprintln!, which panics on a
        // closed stderr (`2>&1 | head`).
        .log_internal_errors(false);
    // A second subscriber (tests calling twice) is not an error worth reporting.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
