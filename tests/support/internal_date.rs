//! INTERNALDATE values: an instant plus the zone offset it was written in.
//!
//! Dovecot's Maildir keeps only the instant (the file's mtime) and serves it in the server's
//! own zone, so the verifier compares instants; the offset matters only for what is sent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InternalDate {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix: i64,
    /// Zone offset east of UTC, in minutes.
    pub offset_minutes: i32,
}

impl InternalDate {
    pub fn new(unix: i64, offset_minutes: i32) -> Self {
        InternalDate {
            unix,
            offset_minutes,
        }
    }

    /// Same instant, regardless of the zone it is written in.
    pub fn same_instant(&self, other: &InternalDate) -> bool {
        self.unix == other.unix
    }

    /// Builds a date from local civil time in the given zone.
    pub fn from_civil(
        year: i32,
        month: u32,
        day: u32,
        hms: (u32, u32, u32),
        offset_minutes: i32,
    ) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let (h, m, s) = hms;
        if h > 23 || m > 59 || s > 60 {
            return None;
        }
        let local = days_from_civil(year, month, day) * 86_400
            + i64::from(h) * 3600
            + i64::from(m) * 60
            + i64::from(s);
        Some(InternalDate::new(
            local - i64::from(offset_minutes) * 60,
            offset_minutes,
        ))
    }

    fn local_parts(self) -> (i32, u32, u32, u32, u32, u32, usize) {
        let local = self.unix + i64::from(self.offset_minutes) * 60;
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (y, mo, d) = civil_from_days(days);
        let weekday = days.rem_euclid(7) as usize;
        (
            y,
            mo,
            d,
            (secs / 3600) as u32,
            (secs / 60 % 60) as u32,
            (secs % 60) as u32,
            weekday,
        )
    }

    fn zone(self) -> String {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let abs = self.offset_minutes.unsigned_abs();
        format!("{sign}{:02}{:02}", abs / 60, abs % 60)
    }

    /// IMAP date-time as used by APPEND and INTERNALDATE: `"01-Jan-2020 10:00:00 +0100"`
    /// (without the quotes).
    pub fn to_imap(self) -> String {
        let (y, mo, d, h, mi, s, _) = self.local_parts();
        format!(
            "{d:02}-{}-{y:04} {h:02}:{mi:02}:{s:02} {}",
            MONTHS[(mo - 1) as usize],
            self.zone()
        )
    }

    /// RFC 5322 date for a Date: header: `Wed, 1 Jan 2020 10:00:00 +0100`.
    pub fn to_rfc5322(self) -> String {
        let (y, mo, d, h, mi, s, wd) = self.local_parts();
        format!(
            "{}, {d} {} {y:04} {h:02}:{mi:02}:{s:02} {}",
            WEEKDAYS[wd],
            MONTHS[(mo - 1) as usize],
            self.zone()
        )
    }

    /// Parses IMAP date-time; the day may be space-padded (`" 1-Jan-2020 ..."`).
    pub fn parse_imap(text: &str) -> Option<Self> {
        let text = text.trim_start();
        let (date, rest) = text.split_once(' ')?;
        let (time, zone) = rest.split_once(' ')?;
        let mut date_parts = date.split('-');
        let day: u32 = date_parts.next()?.parse().ok()?;
        let month_name = date_parts.next()?;
        let year: i32 = date_parts.next()?.parse().ok()?;
        if date_parts.next().is_some() {
            return None;
        }
        let month = MONTHS
            .iter()
            .position(|m| m.eq_ignore_ascii_case(month_name))? as u32
            + 1;
        let mut time_parts = time.split(':').map(|p| p.parse::<u32>().ok());
        let hms = (
            time_parts.next()??,
            time_parts.next()??,
            time_parts.next()??,
        );
        if time_parts.next().is_some() {
            return None;
        }
        let zone = zone.trim_end();
        let (sign, digits) = match zone.as_bytes().first()? {
            b'+' => (1, &zone[1..]),
            b'-' => (-1, &zone[1..]),
            _ => return None,
        };
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let zh: i32 = digits[..2].parse().ok()?;
        let zm: i32 = digits[2..].parse().ok()?;
        InternalDate::from_civil(year, month, day, hms, sign * (zh * 60 + zm))
    }

    /// The instant as a SystemTime, for a Maildir file's mtime.
    pub fn to_system_time(self) -> SystemTime {
        if self.unix >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.unix as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(self.unix.unsigned_abs())
        }
    }
}

impl std::fmt::Display for InternalDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_imap())
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian calendar).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_with_zone() {
        let d = InternalDate::from_civil(2003, 7, 1, (10, 52, 37), 120).expect("valid date");
        assert_eq!(d.unix, 1_057_049_557);
        assert_eq!(d.to_imap(), "01-Jul-2003 10:52:37 +0200");
        assert_eq!(d.to_rfc5322(), "Tue, 1 Jul 2003 10:52:37 +0200");
        assert_eq!(
            InternalDate::parse_imap(" 1-Jul-2003 10:52:37 +0200"),
            Some(d)
        );
        let west = InternalDate::parse_imap("01-Jul-2003 05:22:37 -0330").expect("parses");
        assert!(west.same_instant(&d));
        assert_eq!(west.to_imap(), "01-Jul-2003 05:22:37 -0330");
    }

    #[test]
    fn calendar_edges() {
        for days in [-1, 0, 59, 60, 365, 10_957, 11_016, 20_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert!(InternalDate::from_civil(2023, 2, 29, (0, 0, 0), 0).is_none());
        assert!(InternalDate::from_civil(2024, 2, 29, (0, 0, 0), 0).is_some());
        assert!(InternalDate::parse_imap("32-Jan-2020 00:00:00 +0000").is_none());
        assert!(InternalDate::parse_imap("01-Foo-2020 00:00:00 +0000").is_none());
        assert!(InternalDate::parse_imap("01-Jan-2020 00:00:00 0000").is_none());
    }
}
