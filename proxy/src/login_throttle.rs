//! Per-IP failed-login throttling: after `max_failures` refused logins from one address
//! within `window`, further logins from it are refused without asking a backend until
//! the window has passed since its last failure. A success clears the address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Entries kept before old ones are swept, so that many addresses cannot grow the map
/// without bound.
const SWEEP_ABOVE: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// The failed-login record of every client address.
#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    by_ip: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginThrottle {
    /// `max_failures` = 0 disables throttling.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginThrottle {
            max_failures,
            window,
            by_ip: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when `ip` must wait before trying again.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let map = self.by_ip.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&ip) {
            Some(f) if f.count >= self.max_failures => {
                let until = f.last + self.window;
                if until > now {
                    Err(until - now)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Records a refused login.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let mut map = self.by_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > SWEEP_ABOVE {
            let window = self.window;
            map.retain(|_, f| now.saturating_duration_since(f.last) < window);
        }
        let entry = map.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(entry.last) >= self.window {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// Records a successful login: the address starts afresh.
    pub fn succeeded(&self, ip: IpAddr) {
        self.by_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_failures_until_the_window_passes() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for k in 0..3 {
            assert!(t.check(ip, t0).is_ok(), "attempt {k}");
            t.failed(ip, t0);
        }
        assert_eq!(
            t.check(ip, t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(50))
        );
        assert!(t.check(other, t0).is_ok());
        assert!(t.check(ip, t0 + Duration::from_secs(60)).is_ok());
        // A failure after the window starts a new count.
        t.failed(ip, t0 + Duration::from_secs(61));
        assert!(t.check(ip, t0 + Duration::from_secs(62)).is_ok());
        t.failed(ip, t0);
        t.succeeded(ip);
        assert!(t.check(ip, t0).is_ok());
    }

    #[test]
    fn zero_disables() {
        let t = LoginThrottle::new(0, Duration::from_secs(60));
        let ip: IpAddr = "::1".parse().unwrap();
        for _ in 0..100 {
            t.failed(ip, Instant::now());
        }
        assert!(t.check(ip, Instant::now()).is_ok());
    }
}
