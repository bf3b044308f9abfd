//! INTERNALDATE values (`date-time` of RFC 3501 section 9).

use std::fmt;

use crate::error::{Error, Excerpt, Result};

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A message's internal date: `dd-Mon-yyyy hh:mm:ss +zzzz`, kept with its zone so that
/// APPEND gives the target the very instant and offset the source had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InternalDate {
    /// Year, e.g. 2024.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day of month, 1–31.
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Second, 0–60 (leap second).
    pub second: u8,
    /// Offset from UTC in minutes, e.g. -420 for `-0700`.
    pub zone_minutes: i16,
}

impl InternalDate {
    /// Parses `date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone
    /// DQUOTE` without the quotes (as [`crate::FetchItem::InternalDate`] holds it).
    ///
    /// # Quirks
    /// The day may be one digit without the leading space, and month names are matched
    /// case-insensitively.
    pub fn parse(raw: &[u8]) -> Result<Self> {
        let bad = || Error::Malformed {
            what: "INTERNALDATE",
            offset: 0,
            excerpt: Excerpt::new(raw),
        };
        let s = raw.strip_prefix(b" ").unwrap_or(raw);
        let dash = s.iter().position(|&b| b == b'-').ok_or_else(bad)?;
        let day = digits(&s[..dash], 1, 2).ok_or_else(bad)?;
        let rest = &s[dash + 1..];
        if rest.len() < 4 || rest[3] != b'-' {
            return Err(bad());
        }
        let month = MONTHS
            .iter()
            .position(|m| rest[..3].eq_ignore_ascii_case(&m[..]))
            .ok_or_else(bad)? as u8
            + 1;
        let rest = &rest[4..];
        // "yyyy hh:mm:ss +zzzz"
        if rest.len() != 19
            || rest[4] != b' '
            || rest[7] != b':'
            || rest[10] != b':'
            || rest[13] != b' '
        {
            return Err(bad());
        }
        let year = digits(&rest[..4], 4, 4).ok_or_else(bad)?;
        let hour = digits(&rest[5..7], 2, 2).ok_or_else(bad)?;
        let minute = digits(&rest[8..10], 2, 2).ok_or_else(bad)?;
        let second = digits(&rest[11..13], 2, 2).ok_or_else(bad)?;
        let sign = match rest[14] {
            b'+' => 1i16,
            b'-' => -1i16,
            _ => return Err(bad()),
        };
        let zh = digits(&rest[15..17], 2, 2).ok_or_else(bad)?;
        let zm = digits(&rest[17..19], 2, 2).ok_or_else(bad)?;
        let d = InternalDate {
            year: year as u16,
            month,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            zone_minutes: sign * (zh as i16 * 60 + zm as i16),
        };
        let valid = (1..=31).contains(&d.day)
            && d.hour < 24
            && d.minute < 60
            && d.second <= 60
            && zm < 60
            && zh < 24;
        if valid { Ok(d) } else { Err(bad()) }
    }
}

fn digits(s: &[u8], min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |v, &d| v * 10 + u32::from(d - b'0')))
}

impl fmt::Display for InternalDate {
    /// The canonical wire form without quotes: `02-Jul-2024 09:05:00 +0200`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let month = MONTHS
            .get(usize::from(self.month.saturating_sub(1)))
            .map_or("Jan", |m| std::str::from_utf8(&m[..]).unwrap_or("Jan"));
        let sign = if self.zone_minutes < 0 { '-' } else { '+' };
        let z = self.zone_minutes.unsigned_abs();
        write!(
            f,
            "{:02}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}",
            self.day,
            month,
            self.year,
            self.hour,
            self.minute,
            self.second,
            sign,
            z / 60,
            z % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let d = InternalDate::parse(b"17-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(
            (d.year, d.month, d.day, d.zone_minutes),
            (1996, 7, 17, -420)
        );
        assert_eq!(d.to_string(), "17-Jul-1996 02:44:25 -0700");
        let d = InternalDate::parse(b" 2-jan-2024 00:00:00 +0530").unwrap();
        assert_eq!(d.to_string(), "02-Jan-2024 00:00:00 +0530");
        assert_eq!(
            InternalDate::parse(b"2-Jan-2024 00:00:00 +0000")
                .unwrap()
                .day,
            2
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b""[..],
            b"32-Jan-2024 00:00:00 +0000",
            b"01-Foo-2024 00:00:00 +0000",
            b"01-Jan-2024 24:00:00 +0000",
            b"01-Jan-2024 00:00:00 0000",
            b"01-Jan-2024 00:00:00 +0000 ",
        ] {
            assert!(
                InternalDate::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
