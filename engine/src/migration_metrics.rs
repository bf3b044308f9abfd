//! The migration's Prometheus metrics: their names, what they mean, and the functions the
//! engine records them with. Recorded through the `metrics` facade, a no-op until a
//! process installs a recorder (`serve --http` does, `src/metrics_export.rs`), so a
//! `batch start --wait` or a test pays nothing for them.
//!
//! Two sources, on purpose:
//! - **Totals of a batch** (messages, bytes, skipped items, mailboxes per state) are the
//!   store's, set by [`record_batch`] from the summary `batch status` prints
//!   (`BatchSummary::stored_totals`) each time the metrics are scraped (`serve`'s
//!   `/metrics` handler reads it first). A copy group's messages reach the store's counters
//!   in the same atomic write as its uid map ([`imapmirror_storage::Database::commit`]), so
//!   the store already holds what a running pass copied so far, groups recovered after a
//!   crash by reconciliation included. Adding live increments from the pass's events on top
//!   of stored totals would count the running pass twice; counting only increments would
//!   start from zero after a restart and miss what reconciliation recovered. Reading the
//!   store instead makes the counters equal the report at every scrape and start from the
//!   stored totals after a restart, with nothing to seed or reconcile. `Counter::absolute`
//!   keeps the highest value set (it is a `fetch_max`), so a total that goes down — a
//!   skipped message copied after all, a folder erased from the source — holds the
//!   counter where it was until the store's total passes it again, and Prometheus never
//!   sees a counter go backwards (which it would take for a restart). After a clean
//!   stop the next process starts exactly where the last one ended; after a crash, the
//!   store may hold a few groups less than the dead process showed (sled's last unflushed
//!   writes, redone by the journal's reconciliation), which Prometheus reads as a counter
//!   reset, as for any crashed target.
//! - **Events only this process sees** (errors, throttling waits, open connections, pass
//!   durations) are recorded where they happen. They are not in the store, so they start
//!   from zero with the process, as Prometheus expects of a restarted target.

use std::time::Duration;

use crate::error::{Error, FailureKind};

/// Messages copied to the target (`{batch}`): the report's `items_synced`.
pub const MESSAGES_COPIED: &str = "imapmirror_messages_copied_total";
/// Their bytes (`{batch}`): the report's `bytes_synced`.
pub const BYTES_COPIED: &str = "imapmirror_bytes_copied_total";
/// Messages left behind on the source (`{batch}`): the report's `items_skipped`.
pub const ITEMS_SKIPPED: &str = "imapmirror_items_skipped_total";
/// Failures by kind (`{batch, kind}`): every folder attempt and login retried, and every
/// mailbox pass that failed.
pub const ERRORS: &str = "imapmirror_errors_total";
/// Waits because a server asked us to slow down (`{batch}`).
pub const THROTTLE_WAITS: &str = "imapmirror_throttle_waits_total";
/// Their time (`{batch}`).
pub const THROTTLE_WAIT_SECONDS: &str = "imapmirror_throttle_wait_seconds_total";
/// Copy steps that waited for an endpoint's rate budget (`{endpoint}`, `--max-rate`):
/// our own pacing, not a server's throttling.
pub const RATE_LIMIT_WAITS: &str = "imapmirror_rate_limit_waits_total";
/// Their time (`{endpoint}`).
pub const RATE_LIMIT_WAIT_SECONDS: &str = "imapmirror_rate_limit_wait_seconds_total";
/// Connections open now (`{endpoint, role}`).
pub const CONNECTIONS_OPEN: &str = "imapmirror_connections_open";
/// How long one mailbox's pass took (`{batch, kind}`), a histogram; passes that
/// succeeded (a failed one is in [`ERRORS`], a stopped one ends early).
pub const PASS_DURATION: &str = "imapmirror_pass_duration_seconds";
/// Mailboxes of a batch per state (`{batch, state}`).
pub const MAILBOXES: &str = "imapmirror_mailboxes";

/// Upper bounds of the pass-duration buckets: a pass over an unchanged mailbox takes
/// under a second, an initial pass over a large one hours.
pub const PASS_DURATION_BUCKETS: [f64; 14] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

/// The mailbox states, as `batch users` prints them.
pub const MAILBOX_STATES: [&str; 6] = [
    "Queued",
    "Syncing",
    "Synced",
    "Failed",
    "Stopped",
    "Completed",
];

/// Gives every metric its help text; call once after installing a recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        MESSAGES_COPIED,
        Unit::Count,
        "Messages copied to the target, as the batch report counts them."
    );
    describe_counter!(
        BYTES_COPIED,
        Unit::Bytes,
        "Bytes of the messages copied to the target, as the batch report counts them."
    );
    describe_counter!(
        ITEMS_SKIPPED,
        Unit::Count,
        "Messages left behind on the source (too large, refused by the target, unreadable), as the batch report counts them."
    );
    describe_counter!(
        ERRORS,
        Unit::Count,
        "Failures by kind: folder attempts and logins retried, and mailbox passes that failed."
    );
    describe_counter!(
        THROTTLE_WAITS,
        Unit::Count,
        "Waits because a server asked to slow down or capped the connections."
    );
    describe_counter!(
        THROTTLE_WAIT_SECONDS,
        Unit::Seconds,
        "Time spent in those waits."
    );
    describe_counter!(
        RATE_LIMIT_WAITS,
        Unit::Count,
        "Copy steps that waited for the endpoint's rate budget (--max-rate divided by the shard count)."
    );
    describe_counter!(
        RATE_LIMIT_WAIT_SECONDS,
        Unit::Seconds,
        "Time spent waiting for the endpoint's rate budget (--max-rate divided by the shard count)."
    );
    describe_gauge!(
        CONNECTIONS_OPEN,
        Unit::Count,
        "IMAP connections open now, per endpoint and side."
    );
    describe_histogram!(
        PASS_DURATION,
        Unit::Seconds,
        "Duration of one mailbox's pass that succeeded, by kind of pass."
    );
    describe_gauge!(
        MAILBOXES,
        Unit::Count,
        "Mailboxes of the batch in each state."
    );
}

/// A batch's totals as the store holds them (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredTotals {
    pub messages: u64,
    pub bytes: u64,
    pub skipped: u64,
    /// Mailboxes in each of [`MAILBOX_STATES`], each mailbox in one.
    pub mailboxes: [u64; 6],
}

/// Sets a batch's store-derived metrics, and starts its event counters at zero so that
/// every series exists from the first scrape (a query over a missing series shows
/// nothing instead of 0).
pub fn record_batch(batch: &str, totals: &StoredTotals) {
    let batch = batch.to_owned();
    metrics::counter!(MESSAGES_COPIED, "batch" => batch.clone()).absolute(totals.messages);
    metrics::counter!(BYTES_COPIED, "batch" => batch.clone()).absolute(totals.bytes);
    metrics::counter!(ITEMS_SKIPPED, "batch" => batch.clone()).absolute(totals.skipped);
    // A stop on request is not a failure: never counted, so no series.
    for kind in FailureKind::ALL
        .into_iter()
        .filter(|k| *k != FailureKind::Stopped)
    {
        metrics::counter!(ERRORS, "batch" => batch.clone(), "kind" => kind.as_str()).increment(0);
    }
    metrics::counter!(THROTTLE_WAITS, "batch" => batch.clone()).increment(0);
    metrics::counter!(THROTTLE_WAIT_SECONDS, "batch" => batch.clone()).increment(0);
    for (state, count) in MAILBOX_STATES.iter().zip(totals.mailboxes) {
        metrics::gauge!(MAILBOXES, "batch" => batch.clone(), "state" => *state).set(count as f64);
    }
}

/// Counts a failure of `batch`'s work (a retried attempt or a failed pass).
pub(crate) fn error(batch: &str, e: &Error) {
    if e.failure_kind() == FailureKind::Stopped {
        return;
    }
    metrics::counter!(ERRORS, "batch" => batch.to_owned(), "kind" => e.failure_kind().as_str())
        .increment(1);
}

/// Counts a failure the wire reported, before it became an engine error.
pub(crate) fn imap_error(batch: &str, e: &imapmirror_protocol::Error) {
    metrics::counter!(ERRORS, "batch" => batch.to_owned(), "kind" => FailureKind::of_imap(e).as_str())
        .increment(1);
}

/// Counts a wait of `waited` because a server of `batch` asked us to slow down.
pub(crate) fn throttle_wait(batch: &str, waited: Duration) {
    throttle_waits(batch, 1, waited);
}

/// Counts `count` waits of `waited` in all because a server of `batch` asked us to slow
/// down (the back-offs a session waited out before sending a command again).
pub(crate) fn throttle_waits(batch: &str, count: u64, waited: Duration) {
    metrics::counter!(THROTTLE_WAITS, "batch" => batch.to_owned()).increment(count);
    // The facade's counters hold integers: the time is added up here in nanoseconds and
    // the counter shows its whole seconds, so that many sub-second back-offs still add up
    // instead of each rounding to zero.
    let mut waited_ns = THROTTLE_NANOS.lock().unwrap_or_else(|p| p.into_inner());
    let total = waited_ns.entry(batch.to_owned()).or_default();
    *total = total.saturating_add(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
    metrics::counter!(THROTTLE_WAIT_SECONDS, "batch" => batch.to_owned())
        .absolute(*total / 1_000_000_000);
}

/// Throttling time per batch in this process, in nanoseconds.
static THROTTLE_NANOS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, u64>>,
> = std::sync::LazyLock::new(Default::default);

/// Starts `endpoint`'s rate-budget series at zero once it has a budget.
pub(crate) fn rate_limit_series(endpoint: &str) {
    metrics::counter!(RATE_LIMIT_WAITS, "endpoint" => endpoint.to_owned()).increment(0);
    metrics::counter!(RATE_LIMIT_WAIT_SECONDS, "endpoint" => endpoint.to_owned()).increment(0);
}

/// Counts a wait for `endpoint`'s rate budget; `total_ns` is what this process has waited
/// for it in all (kept by the budget, so sub-second waits add up; the counter shows
/// whole seconds).
pub(crate) fn rate_limit_wait(endpoint: &str, total_ns: u64) {
    metrics::counter!(RATE_LIMIT_WAITS, "endpoint" => endpoint.to_owned()).increment(1);
    metrics::counter!(RATE_LIMIT_WAIT_SECONDS, "endpoint" => endpoint.to_owned())
        .absolute(total_ns / 1_000_000_000);
}

/// Records the duration of a mailbox's pass that succeeded; `kind` is `initial`,
/// `incremental` or `final`.
pub(crate) fn pass_finished(batch: &str, kind: &'static str, took: Duration) {
    metrics::histogram!(PASS_DURATION, "batch" => batch.to_owned(), "kind" => kind)
        .record(took.as_secs_f64());
}

/// The gauge of the connections open to `endpoint` on `role`'s side.
pub(crate) fn connections_open(endpoint: &str, role: &'static str) -> metrics::Gauge {
    metrics::gauge!(CONNECTIONS_OPEN, "endpoint" => endpoint.to_owned(), "role" => role)
}
