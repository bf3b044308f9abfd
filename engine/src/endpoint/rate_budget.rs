//! An endpoint's rate budget (`endpoint add --max-rate`): the most messages and bytes per
//! second this process moves through the endpoint, shared by every connection to it.
//!
//! The stored rate is the endpoint's whole allowance (what the target tenant accepts in
//! all, e.g. Microsoft's ~10–14 GB/h per 20 concurrent IMAP migrations). A batch split
//! over N processes (`batch add --shard I/N`, each with its own state directory) gives
//! each process a budget of rate ÷ N, so that the N shards together stay within it with
//! no coordinator ([`RateShare`]).
//!
//! The budget is a token bucket per unit (messages, bytes), filled at the rate up to one
//! second's worth ([`BURST`]). A taker reserves its tokens at once, even into debt, and
//! waits until the debt is paid: takers are served in the order they came, a message
//! larger than the burst still passes (after the time its size takes at the rate), and
//! nothing can wait for tokens that never come. Waiting is not an error and not a server's
//! throttling: it shows in `imapmirror_rate_limit_waits_total{endpoint}` and
//! `imapmirror_rate_limit_wait_seconds_total{endpoint}`.
//!
//! The text form of a rate (`50msg/s`, `3MB/s`, `10GB/h`) is parsed and printed here.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use imapmirror_storage::{MaxRate, RatePeriod, RateUnit};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::Error;

/// How much a bucket holds when full, in seconds of its rate: the rate holds over any
/// window of a few seconds, which is far finer than any quota (Microsoft's is per hour).
pub const BURST: Duration = Duration::from_secs(1);

/// Byte suffixes, largest first: the text form of a stored amount uses the largest that
/// divides it exactly.
const BYTE_UNITS: [(&str, u64); 7] = [
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("KiB", 1 << 10),
    ("KB", 1_000),
    ("B", 1),
];

/// The examples every refusal names.
const EXAMPLES: &str = "for example --max-rate 50msg/s, --max-rate 3MB/s or --max-rate 10GB/h";

/// A `--max-rate` value that is not a rate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--max-rate `{text}` {problem}; {EXAMPLES}")]
pub struct InvalidRate {
    pub text: String,
    pub problem: &'static str,
}

/// A rate as `--max-rate` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateArg(pub MaxRate);

impl FromStr for RateArg {
    type Err = InvalidRate;

    fn from_str(text: &str) -> Result<RateArg, InvalidRate> {
        parse_max_rate(text).map(RateArg)
    }
}

/// Parses `AMOUNT UNIT / PERIOD` without spaces: AMOUNT a number (decimals allowed when
/// the result is a whole number of messages or bytes), UNIT `msg` or one of `B`, `KB`,
/// `MB`, `GB` (powers of 1000) and `KiB`, `MiB`, `GiB` (powers of 1024), PERIOD `s`,
/// `min` or `h`. Units are case-sensitive: `Mb` would be megabits, which we do not guess.
pub fn parse_max_rate(text: &str) -> Result<MaxRate, InvalidRate> {
    let fail = |problem| InvalidRate {
        text: text.to_owned(),
        problem,
    };
    let (quantity, period) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| fail("has no period (`/s`, `/min` or `/h`)"))?;
    let per = match period {
        "s" => RatePeriod::Second,
        "min" => RatePeriod::Minute,
        "h" => RatePeriod::Hour,
        _ => return Err(fail("has a period other than `/s`, `/min` or `/h`")),
    };
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| fail("has no unit (`msg`, `B`, `KB`, `MB`, `GB`, `KiB`, `MiB`, `GiB`)"))?;
    let (number, suffix) = quantity.split_at(split);
    let (unit, multiplier) = match suffix {
        "msg" => (RateUnit::Messages, 1),
        _ => match BYTE_UNITS.iter().find(|(name, _)| *name == suffix) {
            Some((_, m)) => (RateUnit::Bytes, *m),
            None => {
                return Err(fail(
                    "has a unit other than `msg`, `B`, `KB`, `MB`, `GB`, `KiB`, `MiB` or `GiB`",
                ));
            }
        },
    };
    let amount = scaled(number, multiplier).ok_or_else(|| match unit {
        RateUnit::Messages => fail(
            "is not a whole number of messages above 0 (a slower rate can be given per minute or per hour)",
        ),
        RateUnit::Bytes => fail("is not a whole number of bytes above 0"),
    })?;
    Ok(MaxRate { amount, unit, per })
}

/// `number × multiplier` when it is a whole number above 0, computed exactly.
fn scaled(number: &str, multiplier: u64) -> Option<u64> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.len() > 9 || fraction.contains('.') {
        return None;
    }
    if number.ends_with('.') {
        return None;
    }
    let digits: u128 = format!("{whole}{fraction}").parse().ok()?;
    let divisor = 10u128.pow(fraction.len() as u32);
    let product = digits.checked_mul(u128::from(multiplier))?;
    if product % divisor != 0 {
        return None;
    }
    u64::try_from(product / divisor).ok().filter(|n| *n > 0)
}

/// The suffix a stored amount is printed with, and its size.
fn suffix_of(rate: &MaxRate) -> (&'static str, u64) {
    match rate.unit {
        RateUnit::Messages => ("msg", 1),
        RateUnit::Bytes => BYTE_UNITS
            .iter()
            .copied()
            .find(|(_, m)| rate.amount.is_multiple_of(*m))
            .unwrap_or(("B", 1)),
    }
}

fn period_text(per: RatePeriod) -> &'static str {
    match per {
        RatePeriod::Second => "s",
        RatePeriod::Minute => "min",
        RatePeriod::Hour => "h",
    }
}

/// A stored rate's text form, which [`parse_max_rate`] reads back to the same rate.
pub fn rate_text(rate: &MaxRate) -> String {
    let (suffix, size) = suffix_of(rate);
    format!("{}{suffix}/{}", rate.amount / size, period_text(rate.per))
}

/// A rate divided `by` ways, in the stored rate's own unit and period, to two decimals
/// (`10GB/h` by 4 is `2.5GB/h`).
fn divided_text(rate: &MaxRate, by: u32) -> String {
    let (suffix, size) = suffix_of(rate);
    let value = rate.amount as f64 / size as f64 / f64::from(by.max(1));
    let number = format!("{value:.2}");
    let number = number.trim_end_matches('0').trim_end_matches('.');
    format!("{number}{suffix}/{}", period_text(rate.per))
}

/// Refuses two rates of one unit (`--max-rate` given twice for messages), and a rate of 0
/// (which the parser refuses too, but a request may come from elsewhere).
pub fn check_max_rates(rates: &[MaxRate]) -> Result<(), Error> {
    if rates.iter().any(|r| r.amount == 0) {
        return Err(Error::InvalidSetting {
            problem: format!("--max-rate must be above 0; {EXAMPLES}"),
        });
    }
    for unit in [RateUnit::Messages, RateUnit::Bytes] {
        let given: Vec<String> = rates
            .iter()
            .filter(|r| r.unit == unit)
            .map(rate_text)
            .collect();
        if given.len() > 1 {
            return Err(Error::InvalidSetting {
                problem: format!(
                    "--max-rate was given {} {} rates ({}); give at most one message rate and one byte rate, {EXAMPLES}",
                    given.len(),
                    match unit {
                        RateUnit::Messages => "message",
                        RateUnit::Bytes => "byte",
                    },
                    given.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// What one process may move through an endpoint: its whole rate divided by the shard
/// count (see [`imapmirror_storage::Database::endpoint_shard_count`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateShare {
    /// The endpoint's whole rates, as stored (`10GB/h`).
    pub max_rate: Vec<String>,
    /// The processes they are divided between: the strictest shard count of the batches
    /// in this state directory that use the endpoint (1 when none is sharded).
    pub shard_count: u32,
    /// This process's share, in the same units (`2.5GB/h`).
    pub per_process: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<f64>,
}

impl RateShare {
    /// The share of one of `shard_count` processes, or `None` when the endpoint has no rate.
    pub fn of(max_rate: &[MaxRate], shard_count: u32) -> Option<RateShare> {
        if max_rate.is_empty() {
            return None;
        }
        let n = shard_count.max(1);
        let per_second = |unit| {
            max_rate
                .iter()
                .filter(|r| r.unit == unit)
                .map(|r| r.per_second() / f64::from(n))
                .reduce(f64::min)
        };
        Some(RateShare {
            max_rate: max_rate.iter().map(rate_text).collect(),
            shard_count: n,
            per_process: max_rate.iter().map(|r| divided_text(r, n)).collect(),
            messages_per_second: per_second(RateUnit::Messages),
            bytes_per_second: per_second(RateUnit::Bytes),
        })
    }
}

impl fmt::Display for RateShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shard_count > 1 {
            write!(
                f,
                "{} in all, {} in this process (one of {} shards)",
                self.max_rate.join(" and "),
                self.per_process.join(" and "),
                self.shard_count
            )
        } else {
            write!(f, "{}", self.max_rate.join(" and "))
        }
    }
}

/// One unit's bucket. `level` goes below 0 while takers wait for their reservations.
#[derive(Debug)]
struct Bucket {
    /// Tokens per second.
    rate: f64,
    /// The most `level` holds.
    burst: f64,
    level: f64,
    /// When `level` was last brought up to date.
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Bucket {
        let burst = burst_of(rate);
        Bucket {
            rate,
            burst,
            level: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.rate).min(self.burst);
        self.at = now;
    }

    /// Takes `n` tokens now, into debt if need be; returns how long until the debt is paid.
    fn reserve(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        self.level -= n;
        if self.level >= 0.0 {
            Duration::ZERO
        } else {
            // Far beyond any run (a byte an hour against terabytes of debt): wait "forever".
            Duration::try_from_secs_f64(-self.level / self.rate).unwrap_or(Duration::MAX)
        }
    }

    /// A new rate from now on; what was taken so far stays taken.
    fn retune(&mut self, rate: f64, now: Instant) {
        self.refill(now);
        self.rate = rate;
        self.burst = burst_of(rate);
        self.level = self.level.min(self.burst);
    }
}

/// One second of `rate`, and at least one whole message or byte.
fn burst_of(rate: f64) -> f64 {
    (rate * BURST.as_secs_f64()).max(1.0)
}

#[derive(Debug, Default)]
struct Buckets {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
}

/// The rate budget of one endpoint in this process; share it (in an `Arc`) between every
/// pool and connection of the endpoint, whichever side they are on.
#[derive(Debug)]
pub struct RateBudget {
    endpoint: String,
    buckets: Mutex<Buckets>,
    /// Time takers spent waiting, in nanoseconds.
    waited_ns: AtomicU64,
}

impl RateBudget {
    /// A budget without limits until [`RateBudget::set_share`] gives it some.
    pub fn unlimited(endpoint: &str) -> RateBudget {
        RateBudget {
            endpoint: endpoint.to_owned(),
            buckets: Mutex::default(),
            waited_ns: AtomicU64::new(0),
        }
    }

    /// Applies this process's share (`None`: no limit). A bucket that had a rate keeps
    /// what was taken from it, so changing the rate never lets a burst through.
    pub fn set_share(&self, share: Option<&RateShare>) {
        let now = Instant::now();
        let mut buckets = self.lock();
        let set = |bucket: &mut Option<Bucket>, rate: Option<f64>| match (bucket.as_mut(), rate) {
            (_, None) => *bucket = None,
            (Some(b), Some(r)) => b.retune(r, now),
            (None, Some(r)) => *bucket = Some(Bucket::new(r, now)),
        };
        let valid = |r: Option<f64>| r.filter(|r| r.is_finite() && *r > 0.0);
        set(
            &mut buckets.messages,
            valid(share.and_then(|s| s.messages_per_second)),
        );
        set(
            &mut buckets.bytes,
            valid(share.and_then(|s| s.bytes_per_second)),
        );
        if share.is_some() {
            // The series exists from the first scrape, at 0 until a wait.
            crate::migration_metrics::rate_limit_series(&self.endpoint);
        }
    }

    /// Whether a limit is set.
    pub fn is_limited(&self) -> bool {
        let b = self.lock();
        b.messages.is_some() || b.bytes.is_some()
    }

    /// Reserves `messages` and `bytes` and returns how long until they are paid for.
    fn reserve(&self, messages: u64, bytes: u64) -> Duration {
        let now = Instant::now();
        let mut buckets = self.lock();
        let m = buckets
            .messages
            .as_mut()
            .map_or(Duration::ZERO, |b| b.reserve(messages as f64, now));
        let b = buckets
            .bytes
            .as_mut()
            .map_or(Duration::ZERO, |b| b.reserve(bytes as f64, now));
        m.max(b)
    }

    /// Waits until `messages` messages of `bytes` bytes in all may go through. Returns
    /// how long it waited. A taker dropped while waiting (a stopped pass) keeps its
    /// reservation: the budget errs on the side of the tenant's limit.
    pub async fn take(&self, messages: u64, bytes: u64) -> Duration {
        let wait = self.reserve(messages, bytes);
        if wait.is_zero() {
            return wait;
        }
        tokio::time::sleep(wait).await;
        let ns = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        let total = self
            .waited_ns
            .fetch_add(ns, Ordering::Relaxed)
            .saturating_add(ns);
        crate::migration_metrics::rate_limit_wait(&self.endpoint, total);
        wait
    }

    /// Time takers have waited so far in this process.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // Every update leaves the buckets consistent; a poisoned lock is still usable.
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Takes a copy step's messages and bytes from both ends' budgets at once (once when
/// source and target are the same endpoint): the step waits for the slower of the two.
pub(crate) async fn take_both(
    source: &RateBudget,
    target: &RateBudget,
    messages: u64,
    bytes: u64,
) -> Duration {
    if std::ptr::eq(source, target) {
        return source.take(messages, bytes).await;
    }
    let (a, b) = tokio::join!(source.take(messages, bytes), target.take(messages, bytes));
    a.max(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> MaxRate {
        parse_max_rate(text).expect(text)
    }

    #[test]
    fn rates_are_parsed_with_their_units() {
        let r = rate("50msg/s");
        assert_eq!(
            (r.amount, r.unit, r.per),
            (50, RateUnit::Messages, RatePeriod::Second)
        );
        assert_eq!(rate("3MB/s").amount, 3_000_000);
        assert_eq!(rate("3MiB/s").amount, 3 << 20);
        let r = rate("10GB/h");
        assert_eq!((r.amount, r.unit), (10_000_000_000, RateUnit::Bytes));
        assert_eq!(r.per, RatePeriod::Hour);
        assert_eq!(rate("2.5GB/h").amount, 2_500_000_000);
        assert_eq!(rate("600msg/min").per, RatePeriod::Minute);
        assert_eq!(rate(" 1KiB/s ").amount, 1024);
        assert_eq!(rate("512B/s").amount, 512);
        assert!((rate("36GB/h").per_second() - 10_000_000.0).abs() < 1e-6);
    }

    #[test]
    fn anything_else_is_refused_with_the_flag_and_an_example() {
        for bad in [
            "",
            "50",
            "50msg",
            "msg/s",
            "0msg/s",
            "0GB/h",
            "2.5msg/s",
            "5Mb/s",
            "5mb/s",
            "5MB/d",
            "5MB/m",
            "5 MB/s",
            "-5MB/s",
            "1.5B/s",
            "1..5MB/s",
            "5.MB/s",
            ".5MB/s",
            "5MB/s/s",
            "99999999999999999999GB/s",
        ] {
            let err = parse_max_rate(bad).expect_err(bad);
            let text = err.to_string();
            assert!(text.starts_with("--max-rate `"), "{text}");
            assert!(text.contains("10GB/h"), "{text}");
        }
        assert!(
            parse_max_rate("2.5msg/s")
                .expect_err("half a message")
                .to_string()
                .contains("per minute"),
        );
    }

    #[test]
    fn text_forms_read_back_to_the_same_rate() {
        for text in [
            "50msg/s",
            "3MB/s",
            "10GB/h",
            "3MiB/s",
            "1000KiB/min",
            "512B/s",
            "7KB/h",
        ] {
            assert_eq!(rate_text(&rate(text)), text);
        }
        // Printed with the largest exact suffix.
        assert_eq!(rate_text(&rate("2500MB/h")), "2500MB/h");
        assert_eq!(rate_text(&rate("1024MiB/s")), "1GiB/s");
        let r = rate("2.5GB/h");
        assert_eq!(parse_max_rate(&rate_text(&r)), Ok(r));
    }

    #[test]
    fn two_rates_of_one_unit_are_refused() {
        assert!(check_max_rates(&[rate("50msg/s"), rate("10GB/h")]).is_ok());
        let err = check_max_rates(&[rate("50msg/s"), rate("10msg/s")]).expect_err("twice");
        assert_eq!(err.fault(), crate::Fault::UserInput);
        assert!(err.to_string().contains("--max-rate"), "{err}");
        let zero = MaxRate {
            amount: 0,
            ..rate("1MB/s")
        };
        let err = check_max_rates(&[zero]).expect_err("zero");
        assert_eq!(err.fault(), crate::Fault::UserInput);
    }

    #[test]
    fn the_shard_count_divides_the_rate() {
        assert_eq!(RateShare::of(&[], 4), None);
        let share = RateShare::of(&[rate("10GB/h"), rate("40msg/s")], 4).expect("a share");
        assert_eq!(share.shard_count, 4);
        assert_eq!(share.per_process, ["2.5GB/h", "10msg/s"]);
        assert_eq!(share.messages_per_second, Some(10.0));
        let bytes = share.bytes_per_second.expect("bytes");
        assert!((bytes - 10_000_000_000.0 / 3600.0 / 4.0).abs() < 1e-6);
        assert_eq!(
            share.to_string(),
            "10GB/h and 40msg/s in all, 2.5GB/h and 10msg/s in this process (one of 4 shards)"
        );
        let whole = RateShare::of(&[rate("50msg/s")], 0).expect("a share");
        assert_eq!(whole.shard_count, 1);
        assert_eq!(whole.to_string(), "50msg/s");
        assert_eq!(
            RateShare::of(&[rate("50msg/s")], 3)
                .expect("a share")
                .per_process,
            ["16.67msg/s"]
        );
    }

    fn limited(messages: Option<f64>, bytes: Option<f64>) -> RateBudget {
        let budget = RateBudget::unlimited("ep");
        budget.set_share(Some(&RateShare {
            max_rate: Vec::new(),
            shard_count: 1,
            per_process: Vec::new(),
            messages_per_second: messages,
            bytes_per_second: bytes,
        }));
        budget
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_rate_nothing_waits() {
        let budget = RateBudget::unlimited("ep");
        let start = Instant::now();
        for _ in 0..10_000 {
            budget.take(1, 1 << 30).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(!budget.is_limited());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_lets_one_burst_through_then_keeps_the_rate() {
        let budget = limited(Some(10.0), None);
        let start = Instant::now();
        // A second's worth passes at once.
        for _ in 0..10 {
            assert_eq!(budget.take(1, 0).await, Duration::ZERO);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The next waits a tenth of a second.
        budget.take(1, 0).await;
        let after_one = start.elapsed();
        assert!(after_one >= Duration::from_millis(99), "{after_one:?}");
        // 1,000 messages at 10/s: the burst plus 99 s, never less.
        for _ in 11..1_000 {
            budget.take(1, 0).await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!((98.99..=99.1).contains(&elapsed), "{elapsed}");
        assert!(budget.waited() > Duration::from_secs(98));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_takers_share_one_rate() {
        let budget = std::sync::Arc::new(limited(None, Some(1_000_000.0)));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        // Eight connections, 50 messages of 100 kB each: 40 MB at 1 MB/s.
        for _ in 0..8 {
            let budget = budget.clone();
            tasks.spawn(async move {
                for _ in 0..50 {
                    budget.take(1, 100_000).await;
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.expect("a taker");
        }
        // Less the one second of burst, whatever the interleaving.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((38.99..=39.1).contains(&elapsed), "{elapsed}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_long_run_rate_is_never_exceeded() {
        // At every moment, what passed is at most one burst plus the rate times the time.
        let budget = limited(Some(5.0), Some(50_000.0));
        let start = Instant::now();
        let (mut messages, mut bytes) = (0u64, 0u64);
        for i in 0..500u64 {
            let size = 1_000 + (i * 7_919) % 20_000;
            budget.take(1, size).await;
            messages += 1;
            bytes += size;
            let t = start.elapsed().as_secs_f64();
            assert!(messages as f64 <= 5.0 + 5.0 * t + 1e-6, "{messages} at {t}");
            assert!(
                bytes as f64 <= 50_000.0 + 50_000.0 * t + 1e-3,
                "{bytes} at {t}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_larger_than_the_burst_still_passes() {
        // 1 kB/s, a 10 kB message: it waits out its debt (9 s past the burst), no more.
        let budget = limited(None, Some(1_000.0));
        let start = Instant::now();
        let waited = tokio::time::timeout(Duration::from_secs(60), budget.take(1, 10_000))
            .await
            .expect("it passes");
        assert_eq!(waited, Duration::from_secs(9));
        assert_eq!(start.elapsed(), Duration::from_secs(9));
        // The bucket is empty afterwards: the next small one waits its own share only.
        budget.take(1, 500).await;
        assert_eq!(start.elapsed(), Duration::from_millis(9_500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_share_applies_from_now_and_lifting_it_frees_the_waiters() {
        let budget = limited(Some(1.0), None);
        budget.take(1, 0).await;
        // A stricter share (a second batch sharded more ways): an empty bucket stays empty.
        budget.set_share(Some(&RateShare {
            max_rate: Vec::new(),
            shard_count: 2,
            per_process: Vec::new(),
            messages_per_second: Some(0.5),
            bytes_per_second: None,
        }));
        let start = Instant::now();
        budget.take(1, 0).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        budget.set_share(None);
        assert!(!budget.is_limited());
        assert_eq!(budget.take(1_000, 1 << 40).await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn both_ends_are_charged_and_the_slower_sets_the_pace() {
        let source = limited(Some(100.0), None);
        let target = limited(None, Some(10_000.0));
        let start = Instant::now();
        for _ in 0..20 {
            take_both(&source, &target, 1, 1_000).await;
        }
        // 20 kB at 10 kB/s, less a second of burst; the message rate alone would allow it at once.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // One endpoint on both sides is charged once.
        let same = limited(Some(1.0), None);
        let start = Instant::now();
        take_both(&same, &same, 1, 0).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
