//! `--sync-interval` values: `24h`, `30m`, `1d12h`, `90s`, `1w`, or plain seconds.

use std::time::Duration;

/// Parses a duration of one or more `<number><unit>` parts (units `w`, `d`, `h`, `m`,
/// `s`), or a bare number of seconds. Zero is refused: a pass every 0 s would never rest.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
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
    if total == 0 {
        return Err(format!(
            "`{text}` is zero: give a sync interval of at least 1s"
        ));
    }
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
}
