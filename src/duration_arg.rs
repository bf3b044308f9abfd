//! Duration arguments (`--sync-interval`, `--target-recheck`, …): `24h`, `30m`, `1d12h`,
//! `90s`, `1w`, or plain seconds.

use std::time::Duration;

/// Parses a duration of one or more `<number><unit>` parts (units `w`, `d`, `h`, `m`,
/// `s`), or a bare number of seconds. Zero is refused: this is for intervals, and a pass
/// every 0 s would never rest.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration_or_zero(text)?;
    if d.is_zero() {
        return Err(format!("`{text}` is zero: give a duration of at least 1s"));
    }
    Ok(d)
}

/// [`parse_duration`] that also takes zero, for settings where 0 means "never trust,
/// always look" (`--target-recheck 0`).
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let usage = || {
        format!(
            "`{text}` is not a duration: write it like 24h, 30m, 1d12h, 90s or a number of seconds"
        )
    };
    if t.is_empty() {
        return Err(usage());
    }
    let total = if t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>().map_err(|_| usage())?
    } else {
        let mut total: u64 = 0;
        let mut number = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = match c.to_ascii_lowercase() {
                'w' => 7 * 86_400,
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return Err(usage()),
            };
            let n: u64 = number.parse().map_err(|_| usage())?;
            number.clear();
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(usage)?;
        }
        if !number.is_empty() {
            return Err(usage());
        }
        total
    };
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations_parse() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("2H30M"), Ok(Duration::from_secs(9_000)));
    }

    #[test]
    fn nonsense_and_zero_are_refused() {
        for bad in ["", "h", "3x", "5h3", "0s", "0", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zero_is_taken_where_it_means_always() {
        assert_eq!(parse_duration_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration_or_zero("6h"),
            Ok(Duration::from_secs(21_600))
        );
        for bad in ["", "h", "3x", "5h3"] {
            assert!(parse_duration_or_zero(bad).is_err(), "{bad:?}");
        }
    }
}
