//! When to try again after a connection failed or a server asked us to slow down:
//! exponential back-off with jitter, never shorter than the server's own hint.

use std::time::Duration;

/// Retry settings for one kind of work (a connection, a folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// The first delay.
    pub initial: Duration,
    /// No computed delay exceeds this (a server hint may).
    pub max: Duration,
    /// Attempts after the first before giving up.
    pub max_retries: u32,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            max_retries: 8,
        }
    }
}

impl ReconnectPolicy {
    /// The delay before retry number `attempt` (1-based), given a server hint and a
    /// random value in `0..=u64::MAX` for jitter. Full jitter in the upper half: between
    /// half and all of the exponential step, so that many clients thrown off together
    /// do not come back together, yet every client does wait.
    pub fn delay(&self, attempt: u32, hint: Option<Duration>, random: u64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let step = self
            .initial
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max);
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if nanos == 0 { 0 } else { random % (nanos + 1) };
        let computed = half + Duration::from_nanos(jitter);
        match hint {
            Some(h) => computed.max(h),
            None => computed,
        }
    }

    /// True while another attempt is allowed.
    pub fn allows(&self, attempt: u32) -> bool {
        attempt <= self.max_retries
    }
}

/// The attempts of one piece of work under a [`ReconnectPolicy`], counted since the last
/// attempt that made progress: a reconnect after which messages were copied starts the
/// count and the back-off afresh, so a server that drops connections every few hundred
/// commands (Exchange Online) slows a long folder down but never fails it; the work
/// fails only after `max_retries` attempts in a row that copied nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryBudget {
    attempt: u32,
}

impl RetryBudget {
    /// Records a failed attempt, `progressed` when it got work done before failing;
    /// the number of the retry to make (1-based, for [`ReconnectPolicy::delay`]), or
    /// `None` when the policy allows no more.
    pub fn failed(&mut self, policy: &ReconnectPolicy, progressed: bool) -> Option<u32> {
        if progressed {
            self.attempt = 0;
        }
        self.attempt = self.attempt.saturating_add(1);
        policy.allows(self.attempt).then_some(self.attempt)
    }
}

/// A small non-cryptographic generator for jitter (SplitMix64), seeded per use from the
/// clock and a counter so that concurrent jobs differ.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// A generator seeded from the clock, the process id and `salt`.
    pub fn seeded(salt: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Jitter(nanos ^ (u64::from(std::process::id()) << 32) ^ salt.rotate_left(17))
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_bounds_and_honours_hints() {
        let p = ReconnectPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_retries: 3,
        };
        for (attempt, step_ms) in [(1u32, 100u64), (2, 200), (3, 400), (4, 800), (9, 2000)] {
            for r in [0, 1, u64::MAX / 3, u64::MAX] {
                let d = p.delay(attempt, None, r);
                assert!(d >= Duration::from_millis(step_ms / 2), "{attempt}: {d:?}");
                assert!(d <= Duration::from_millis(step_ms), "{attempt}: {d:?}");
            }
        }
        let hinted = p.delay(1, Some(Duration::from_secs(30)), 7);
        assert_eq!(hinted, Duration::from_secs(30), "a server's hint wins");
        assert!(p.allows(3) && !p.allows(4));
    }

    #[test]
    fn progress_resets_the_budget_and_the_back_off() {
        let p = ReconnectPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(60),
            max_retries: 3,
        };
        let mut budget = RetryBudget::default();
        // Forty drops, each after some messages were copied: never exhausted, and the
        // back-off stays at its first step.
        for _ in 0..40 {
            let attempt = budget.failed(&p, true).expect("progress keeps it going");
            assert_eq!(attempt, 1);
            assert!(p.delay(attempt, None, u64::MAX) <= Duration::from_millis(100));
        }
        // Then three attempts in a row that copy nothing are retried, the fourth is not.
        assert_eq!(budget.failed(&p, false), Some(2));
        assert_eq!(budget.failed(&p, false), Some(3));
        assert_eq!(budget.failed(&p, false), None);
        // Without progress from the start: max_retries retries, then none.
        let mut fresh = RetryBudget::default();
        let allowed: Vec<_> = (0..5).map(|_| fresh.failed(&p, false)).collect();
        assert_eq!(allowed, [Some(1), Some(2), Some(3), None, None]);
    }

    #[test]
    fn jitter_varies() {
        let mut j = Jitter::seeded(1);
        let a = j.next_u64();
        let b = j.next_u64();
        assert_ne!(a, b);
    }
}
