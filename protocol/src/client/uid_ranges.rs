//! Owned UID sets (APPENDUID, COPYUID, MODIFIED, ESEARCH ALL), kept as ranges so that
//! `1:100000` costs one pair, not a hundred thousand numbers.

use std::fmt;

use crate::types::UidSet;

/// Inclusive UID ranges in the order the server sent them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UidRanges(Vec<(u32, u32)>);

impl UidRanges {
    /// The ranges of a parsed set.
    pub fn from_set(set: &UidSet<'_>) -> Self {
        UidRanges(set.ranges().collect())
    }

    /// Parses `1:3,7` (no `*`); `None` unless the whole input is such a set.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(raw).ok()?;
        let number = |s: &str| -> Option<u32> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok().filter(|&n| n > 0)
        };
        let mut out = Vec::new();
        for part in text.split(',') {
            let range = match part.split_once(':') {
                Some((a, b)) => {
                    let (a, b) = (number(a)?, number(b)?);
                    (a.min(b), a.max(b))
                }
                None => {
                    let n = number(part)?;
                    (n, n)
                }
            };
            out.push(range);
        }
        Some(UidRanges(out))
    }

    /// Appends the ranges of another set (several `* VANISHED` responses to one command).
    pub(crate) fn extend_from_set(&mut self, set: &UidSet<'_>) {
        self.0.extend(set.ranges());
    }

    /// Every UID, in order sent.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().flat_map(|&(a, b)| a..=b)
    }

    /// The ranges.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.0
    }

    /// How many UIDs.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|&(a, b)| u64::from(b - a) + 1).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for UidRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, &(a, b)) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}:{b}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sets_and_rejects_garbage() {
        let r = UidRanges::parse(b"1:3,7,9:8").expect("valid set");
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![1, 2, 3, 7, 8, 9]);
        assert_eq!(r.len(), 6);
        assert_eq!(r.to_string(), "1:3,7,8:9");
        for bad in [&b""[..], b"0", b"1:*", b"1,,2", b"x", b"4294967296"] {
            assert_eq!(UidRanges::parse(bad), None, "{bad:?}");
        }
    }
}
