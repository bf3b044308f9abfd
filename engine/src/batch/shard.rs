//! Splitting a batch over several machines: each worker adds the same migration file with
//! its own `--shard INDEX/COUNT` and state directory, and keeps the rows whose
//! EmailAddress hashes to its index. No coordinator is needed, so the same binary runs as
//! an indexed job under an existing scheduler (a Kubernetes Indexed Job sets
//! `JOB_COMPLETION_INDEX`; `IMAPMIRROR_SHARD=$(JOB_COMPLETION_INDEX)/8`).
//!
//! The hash is FNV-1a (64-bit) of the trimmed, lower-cased address, fixed here for good:
//! workers of different imapmirror versions must agree on which shard owns a mailbox, or
//! a mailbox would be migrated twice or not at all.

use std::fmt;
use std::str::FromStr;

/// One shard of `count`, `index` counted from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Shard `index` (from 0) of `count`; `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// Whether the mailbox of `email` belongs to this shard.
    pub fn owns(&self, email: &str) -> bool {
        shard_of(email, self.count) == self.index
    }
}

impl From<Shard> for imapmirror_storage::BatchShard {
    fn from(s: Shard) -> Self {
        imapmirror_storage::BatchShard {
            index: s.index,
            count: s.count,
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A `--shard` value that is not `INDEX/COUNT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the shard `{0}` is not INDEX/COUNT with 0 <= INDEX < COUNT (for example 0/4 ... 3/4 for four workers)"
)]
pub struct InvalidShard(pub String);

impl FromStr for Shard {
    type Err = InvalidShard;

    fn from_str(s: &str) -> Result<Shard, InvalidShard> {
        let invalid = || InvalidShard(s.to_owned());
        let (index, count) = s.trim().split_once('/').ok_or_else(invalid)?;
        let index = index.trim().parse().map_err(|_| invalid())?;
        let count = count.trim().parse().map_err(|_| invalid())?;
        Shard::new(index, count).ok_or_else(invalid)
    }
}

/// The shard (of `count`) that owns `email`.
fn shard_of(email: &str, count: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in email.trim().to_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    (h % u64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("1/4".parse(), Ok(Shard { index: 1, count: 4 }));
        assert_eq!(
            " 0 / 1 ".parse::<Shard>().map(|s| s.to_string()),
            Ok("0/1".into())
        );
        for bad in ["4/4", "1", "a/b", "-1/4", "0/0", "1/4/5", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_address_has_exactly_one_shard() {
        let shards: Vec<Shard> = (0..5).map(|i| Shard::new(i, 5).expect("shard")).collect();
        let mut sizes = [0usize; 5];
        for n in 0..5000 {
            let email = format!("user{n}@example.test");
            let owners: Vec<u32> = shards
                .iter()
                .filter(|s| s.owns(&email))
                .map(|s| s.index)
                .collect();
            assert_eq!(owners.len(), 1, "{email}: {owners:?}");
            sizes[owners[0] as usize] += 1;
        }
        // A fair split: each shard within 10 % of 1000.
        assert!(
            sizes.iter().all(|&n| (900..=1100).contains(&n)),
            "{sizes:?}"
        );
        let one = Shard::new(3, 5).expect("shard");
        assert_eq!(
            one.owns("Anna@Example.TEST "),
            one.owns("anna@example.test")
        );
    }

    /// The hash is part of the on-the-wire contract between workers: it must never change.
    #[test]
    fn the_hash_is_fixed() {
        assert_eq!(
            shard_of("", 1 << 31),
            (0xcbf2_9ce4_8422_2325u64 % (1 << 31)) as u32
        );
        assert_eq!(
            shard_of("a", u32::MAX),
            (0xaf63_dc4c_8601_ec8cu64 % u64::from(u32::MAX)) as u32
        );
    }
}
